/*
 * terminate.c
 *		The one path that ends connections: decide, log, tell the victim,
 *		signal, wait until gone.
 *
 * connmgr_kill() takes a batch of connections (by pid, or by connection id
 * when the start time must match too) and decides each as a value, as
 * PostgreSQL's signal_backend() does: own connection, not found (or not
 * visible to the caller), not a client, denied, would terminate (a dry
 * run), terminated, already gone, timed out.  The SQL functions turn the
 * outcomes into WARNINGs (ClassDB API) or result rows (admin API).
 * Eviction uses connmgr_end_connection(), the same logging, note and
 * signal, with a wait loop of its own (limits.c).
 *
 * Just before signalling, each target is looked up again in a fresh
 * backend snapshot: one that has exited meanwhile (or whose pid now
 * belongs to a different backend) is not signalled and counts as gone.
 * Before the signal, who ends the connection and why is written into the
 * target's slot in shared memory (shmem.c), matched on pid and start time;
 * the victim's emit_log_hook adds it as the DETAIL of its own "terminating
 * connection due to administrator command", so the client learns who ended
 * it and why.  When the note says an idle timeout expired, the hook also
 * makes that FATAL PostgreSQL's own for its idle timeouts (SQLSTATE and
 * message), which drivers and poolers treat differently from a kill.  A
 * plain pg_terminate_backend() leaves no note, and the message is
 * PostgreSQL's own.
 *
 * A connection is gone once its process no longer exists (kill(pid, 0)
 * fails with ESRCH), by which time it has left the proc array and the
 * postmaster has reaped it, so a killed user can log in again at once.
 * The wait is bounded by connmgr.terminate_timeout and can be cancelled.
 * No lock is held while waiting.
 */
#include "postgres.h"

#include <signal.h>

#include "commands/dbcommands.h"
#include "libpq/libpq-be.h"
#include "mb/pg_wchar.h"
#include "pgstat.h"
#include "storage/latch.h"
#include "utils/acl.h"
#include "utils/elog.h"
#include "utils/hsearch.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "connmgr.h"

static const char *
or_none(const char *s)
{
	return (s != NULL && s[0] != '\0') ? s : "(none)";
}

static const char *
my_client(void)
{
	return MyProcPort ? or_none(MyProcPort->remote_host) : "(none)";
}

/* The reason, ending with a full stop unless it ends a sentence itself. */
static const char *
as_sentence_end(const char *reason)
{
	char		last = reason[0] ? reason[strlen(reason) - 1] : '.';

	return (last == '.' || last == '!' || last == '?') ? reason : psprintf("%s.", reason);
}

/* The reason as a DETAIL sentence of its own. */
static const char *
reason_sentence(const char *reason)
{
	if (reason == NULL || reason[0] == '\0')
		return _("No reason was given.");
	return psprintf(_("The reason given: %s"), as_sentence_end(reason));
}

/* Log a termination at LOG: the actor, the target, the reason. */
static void
log_ending(const PgBackendStatus *be, ConnmgrEndingKind kind, const char *reason)
{
	const char *target_role = or_none(GetUserNameFromId(be->st_userid, true));
	const char *database = or_none(get_database_name(be->st_databaseid));
	const char *client = or_none(connmgr_client_addr_text(be));
	const char *id = connmgr_connection_id(be);

	if (connmgr_ending_is_expiry(kind))
		ereport(LOG,
				(errcode(ERRCODE_SUCCESSFUL_COMPLETION),
				 errmsg("ending connection %d of role \"%s\": %s",
						be->st_procpid, target_role, reason),
				 errdetail("The connection %s is to database \"%s\" from client %s with application name \"%s\".",
						   id, database, client, be->st_appname)));
	else if (kind == ENDING_EVICTION)
		ereport(LOG,
				(errcode(ERRCODE_SUCCESSFUL_COMPLETION),
				 errmsg("evicting idle connection %d of role \"%s\" to admit a login of process %d",
						be->st_procpid, target_role, MyProcPid),
				 errdetail("The connection %s to database \"%s\" from client %s had been idle since %s; the login came from client %s.",
						   id, database, client,
						   timestamptz_to_str(be->st_state_start_timestamp),
						   my_client())));
	else
		ereport(LOG,
				(errcode(ERRCODE_SUCCESSFUL_COMPLETION),
				 errmsg("terminating connection %d of role \"%s\" at the request of role \"%s\"",
						be->st_procpid, target_role,
						or_none(GetUserNameFromId(GetUserId(), true))),
				 errdetail("The connection %s is to database \"%s\" from client %s with application name \"%s\". "
						   "The request came from process %d, client %s. %s",
						   id, database, client, be->st_appname, MyProcPid,
						   my_client(), reason_sentence(reason))));
}

/*
 * Send SIGTERM to the backend, and to its process group where it has one.
 * False if the process no longer exists.
 */
static bool
send_terminate(int pid)
{
#ifdef HAVE_SETSID
	return !(kill(-pid, SIGTERM) != 0 && errno == ESRCH);
#else
	return !(kill(pid, SIGTERM) != 0 && errno == ESRCH);
#endif
}

/* Has the process exited (and been reaped)? */
bool
connmgr_has_exited(int pid)
{
	return kill(pid, 0) != 0 && errno == ESRCH;
}

/*
 * End the connection be (from a fresh snapshot) on behalf of the current
 * user: log it, note who and why for the victim, and signal it.  False if
 * it had already exited.  The caller waits, if it wants to.
 */
bool
connmgr_end_connection(const PgBackendStatus *be, ConnmgrEndingKind kind,
					   const char *reason)
{
	ConnmgrTarget target = connmgr_target_of(be);
	ConnmgrEnding ending;
	const char *actor = connmgr_ending_is_expiry(kind) ? "connmgr" :
		GetUserNameFromId(kind == ENDING_EVICTION ? be->st_userid : GetUserId(), true);

	memset(&ending, 0, sizeof(ending));
	ending.kind = kind;
	connmgr_to_shared_text(ending.actor, or_none(actor), NAMEDATALEN, true);
	connmgr_to_shared_text(ending.reason, reason, CONNMGR_REASON_LEN, true);

	log_ending(be, kind, reason);
	(void) connmgr_note_ending(&target, &ending);
	return send_terminate(be->st_procpid);
}

/* The backend the request names: the same pid, and start time if given. */
static PgBackendStatus *
find_requested(const ConnmgrKill *kill)
{
	PgBackendStatus *be = connmgr_find_backend(kill->pid);

	if (be != NULL && kill->by_id && !connmgr_started_in_second(be, kill->start_seconds))
		return NULL;
	if (be != NULL && kill->started != 0 && be->st_proc_start_timestamp != kill->started)
		return NULL;
	return be;
}

/* Decide one request against the current snapshot, as a value. */
static ConnmgrKillOutcome
decide(ConnmgrKill *kill, bool dry_run)
{
	Oid			caller = GetUserId();
	PgBackendStatus *be = find_requested(kill);

	/*
	 * System processes (no role) are visible to all, as in pg_stat_activity;
	 * a client still logging in (no role yet, PostgreSQL 18) is not.
	 */
	if (be == NULL ||
		((OidIsValid(be->st_userid) || connmgr_is_client_connection(be)) &&
		 !connmgr_may_see(caller, be->st_userid)))
		return KILL_NOT_FOUND;
	kill->target = connmgr_target_of(be);
	kill->connection_id = connmgr_connection_id(be);
	kill->backend_type = be->st_backendType;
	if (be->st_procpid == MyProcPid)
		return KILL_OWN;
	if (!connmgr_is_client_connection(be))
		return KILL_NOT_CLIENT;
	if (!connmgr_may_terminate(caller, be->st_userid))
		return KILL_DENIED;
	return dry_run ? KILL_WOULD_TERMINATE : KILL_TERMINATED;
}

/* A backend's identity, as a hash key. */
typedef struct TargetKey
{
	int			pid;
	TimestampTz started;
} TargetKey;

typedef struct TargetFirst
{
	TargetKey	key;
	int			first;
} TargetFirst;

/*
 * For each request that ends a connection, the index of the first request
 * for the same backend (itself, if none came before); -1 for the others.
 */
static int *
first_requests(const ConnmgrKill *kills, int n)
{
	HASHCTL		ctl;
	HTAB	   *seen;
	int		   *first = palloc(sizeof(int) * Max(n, 1));

	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = sizeof(TargetKey);
	ctl.entrysize = sizeof(TargetFirst);
	ctl.hcxt = CurrentMemoryContext;
	seen = hash_create("connmgr kill targets", Max(n, 16), &ctl,
					   HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	for (int i = 0; i < n; i++)
	{
		TargetKey	key;
		TargetFirst *entry;
		bool		found;

		first[i] = -1;
		if (kills[i].outcome != KILL_TERMINATED)
			continue;
		memset(&key, 0, sizeof(key));
		key.pid = kills[i].target.pid;
		key.started = kills[i].target.started;
		entry = hash_search(seen, &key, HASH_ENTER, &found);
		if (!found)
			entry->first = i;
		first[i] = entry->first;
	}
	hash_destroy(seen);
	return first;
}

/* Wait, at most timeout_ms, until every signalled target has exited. */
static void
wait_until_gone(ConnmgrKill *kills, int n, int timeout_ms)
{
	TimestampTz start = GetCurrentTimestamp();

	for (;;)
	{
		bool		waiting = false;

		for (int i = 0; i < n; i++)
		{
			if (kills[i].outcome != KILL_TIMED_OUT)
				continue;
			if (connmgr_has_exited(kills[i].target.pid))
				kills[i].outcome = KILL_TERMINATED;
			else
				waiting = true;
		}
		if (!waiting ||
			TimestampDifferenceExceeds(start, GetCurrentTimestamp(), timeout_ms))
			return;
		(void) WaitLatch(MyLatch,
						 WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 10L, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
	}
}

/*
 * Decide every request, then (unless dry_run) end all the connections that
 * may be ended, each once however often it was requested, and wait for all
 * of them together, at most connmgr.terminate_timeout.  Sets each
 * request's outcome.  Refreshes the backend snapshot: status entries the
 * caller holds are invalid afterwards.
 */
void
connmgr_kill(ConnmgrKill *kills, int n, const char *reason, bool dry_run)
{
	int		   *first;

	connmgr_refresh_backends();
	for (int i = 0; i < n; i++)
	{
		CHECK_FOR_INTERRUPTS();
		kills[i].outcome = decide(&kills[i], dry_run);
	}
	if (dry_run)
		return;

	first = first_requests(kills, n);
	connmgr_refresh_backends();
	for (int i = 0; i < n; i++)
	{
		PgBackendStatus *be;

		CHECK_FOR_INTERRUPTS();
		if (first[i] != i)
			continue;
		be = connmgr_find_backend(kills[i].target.pid);
		if (!connmgr_same_backend(be, &kills[i].target) ||
			!connmgr_end_connection(be, ENDING_KILL, reason))
			kills[i].outcome = KILL_ALREADY_GONE;
		else
			kills[i].outcome = KILL_TIMED_OUT;	/* until it has gone */
	}
	wait_until_gone(kills, n, connmgr_terminate_timeout_ms);

	for (int i = 0; i < n; i++)
		if (first[i] >= 0 && first[i] != i)
			kills[i].outcome = kills[first[i]].outcome;
}

/* The message of a kill's outcome, as in the result rows of the admin API. */
char *
connmgr_kill_message(const ConnmgrKill *kill)
{
	switch (kill->outcome)
	{
		case KILL_TERMINATED:
		case KILL_ALREADY_GONE:
			return "Connection found";
		case KILL_NOT_FOUND:
			return "No connection found with this id";
		case KILL_DENIED:
			return "Permission denied";
		case KILL_OWN:
			return "Cannot terminate your own connection";
		case KILL_NOT_CLIENT:
			return "Not a client connection";
		case KILL_WOULD_TERMINATE:
			return "Would terminate";
		case KILL_TIMED_OUT:
			return psprintf("Did not exit within %d ms", connmgr_terminate_timeout_ms);
	}
	return NULL;
}

/*
 * The DETAIL that tells a client why connmgr ended its connection (the
 * note may come from a database of another encoding).
 */
static char *
ending_detail(const ConnmgrEnding *ending)
{
	char	   *actor = connmgr_from_shared_text(ending->actor);

	if (ending->kind == ENDING_EVICTION)
		return psprintf(_("Your connection was idle, so it was ended to admit a new login of role \"%s\" at its connection limit."),
						actor);
	if (connmgr_ending_is_expiry(ending->kind))
		return psprintf(_("Your connection was ended because it was %s."),
						connmgr_from_shared_text(ending->reason));
	if (ending->reason[0] == '\0')
		return psprintf(_("Your connection was ended by role \"%s\"."), actor);
	return psprintf(_("Your connection was ended by role \"%s\": %s"),
					actor, as_sentence_end(connmgr_from_shared_text(ending->reason)));
}

/*
 * Make the FATAL of an expired idle timeout the one PostgreSQL sends for
 * its own idle_session_timeout or idle_in_transaction_session_timeout: the
 * same SQLSTATE, and the same message in PostgreSQL's translation.
 */
static void
report_as_timeout(ErrorData *edata, ConnmgrEndingKind kind)
{
	const char *message;

	if (kind == ENDING_IDLE_IN_XACT_TIMEOUT)
	{
		edata->sqlerrcode = ERRCODE_IDLE_IN_TRANSACTION_SESSION_TIMEOUT;
		message = gettext_noop("terminating connection due to idle-in-transaction timeout");
	}
	else
	{
		edata->sqlerrcode = ERRCODE_IDLE_SESSION_TIMEOUT;
		message = gettext_noop("terminating connection due to idle-session timeout");
	}
	edata->message_id = message;
	edata->message = MemoryContextStrdup(ErrorContext,
										 dgettext(PG_TEXTDOMAIN("postgres"), message));
}

/*
 * From emit_log_hook: when this backend reports "terminating connection due
 * to administrator command" and connmgr noted who ended it, add that as
 * the DETAIL, for the client and the server log alike; an idle timeout is
 * reported as PostgreSQL reports its own.
 */
void
connmgr_tell_victim(ErrorData *edata)
{
	ConnmgrEnding ending;

	if (edata->detail != NULL || !connmgr_my_ending(&ending))
		return;
	if (connmgr_ending_is_expiry(ending.kind))
		report_as_timeout(edata, ending.kind);
	edata->detail = MemoryContextStrdup(ErrorContext, ending_detail(&ending));
}
