/*
 * idle.c
 *		The idle worker: a background worker, started with the server, that
 *		ends connections idle longer than the idle_timeout (or idle in a
 *		transaction longer than the idle_in_transaction_timeout) of the
 *		policies that apply to their role.
 *
 * Unlike PostgreSQL's idle_session_timeout, users cannot change it with
 * SET, and it applies per role, by the same precedence as the limits
 * (limits.c): the shortest timeout of the policies that apply wins.
 *
 * Every connmgr.idle_check_interval the worker reads the policies (one
 * scan of pg_shseclabel); when none has an idle timeout it goes back to
 * sleep, so that it costs nothing then.  Otherwise it resolves the
 * timeouts of each role with connections and ends, through terminate.c's
 * one path, the plain client connections past them: logged, counted and
 * the victim told, like an eviction.  It reads only shared catalogs and
 * connects to no database.
 *
 * It runs from the server's start, also in a new cluster: until some
 * backend has connected to a database, there is no shared relation cache
 * file, and a process without a database cannot use the shared catalogs'
 * indexes.  The worker then reads them as authentication does at that
 * point (the catalog caches of roles, memberships and databases fall back
 * to heap scans, and connmgr's own scans use the indexes only once
 * criticalSharedRelcachesBuilt), for as long as the process lives.  So it
 * never has to exit and be restarted to wait for the file.
 */
#include "postgres.h"

#include "access/xact.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/latch.h"
#include "tcop/tcopprot.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "connmgr.h"

PGDLLEXPORT void connmgr_idle_worker_main(Datum arg);

/* Does any intact policy have an idle timeout? */
static bool
any_idle_timeout(void)
{
	ListCell   *lc;

	foreach(lc, connmgr_all_policies())
	{
		ConnmgrRolePolicy *entry = lfirst(lc);

		if (entry->problem == NULL &&
			(entry->policy.idle_timeout_ms > 0 || entry->policy.idle_in_xact_timeout_ms > 0))
			return true;
	}
	return false;
}

static const char *
role_name_or_none(Oid role)
{
	const char *name = GetUserNameFromId(role, true);

	return name ? name : "?";
}

/* Has be been in its idle state longer than ms? */
static bool
idle_for(const PgBackendStatus *be, int ms, TimestampTz now)
{
	return ms > 0 && TimestampDifferenceExceeds(be->st_state_start_timestamp, now, ms);
}

/* A role's idle timeouts, resolved once per round. */
typedef struct RoleTimeouts
{
	Oid			role;
	bool		super;
	int			idle_ms;
	Oid			idle_source;
	int			in_xact_ms;
	Oid			in_xact_source;
} RoleTimeouts;

/* The timeouts of role, from known (n of them) or resolved and added. */
static const RoleTimeouts *
timeouts_of(Oid role, RoleTimeouts *known, int *n)
{
	RoleTimeouts *t;

	for (int i = 0; i < *n; i++)
		if (known[i].role == role)
			return &known[i];
	t = &known[(*n)++];
	t->role = role;
	t->super = superuser_arg(role);
	if (!t->super)
		connmgr_idle_timeouts(role, &t->idle_ms, &t->idle_source,
							  &t->in_xact_ms, &t->in_xact_source);
	return t;
}

/* End the client connections past the idle timeouts of their roles. */
static void
end_idle_connections(void)
{
	TimestampTz now = GetCurrentTimestamp();
	RoleTimeouts *known;
	int			nknown = 0;
	int			n;

	connmgr_refresh_backends();
	n = connmgr_backend_count();
	known = palloc(sizeof(RoleTimeouts) * Max(n, 1));
	for (int i = 1; i <= n; i++)
	{
		PgBackendStatus *be = connmgr_backend_at(i);
		const RoleTimeouts *t;
		bool		in_xact;

		if (be == NULL || be->st_backendType != B_BACKEND || !OidIsValid(be->st_userid))
			continue;
		in_xact = be->st_state == STATE_IDLEINTRANSACTION ||
			be->st_state == STATE_IDLEINTRANSACTION_ABORTED;
		if (be->st_state != STATE_IDLE && !in_xact)
			continue;
		t = timeouts_of(be->st_userid, known, &nknown);
		if (t->super ||
			(in_xact ? !idle_for(be, t->in_xact_ms, now) : !idle_for(be, t->idle_ms, now)))
			continue;
		(void) connmgr_end_connection(be,
									  in_xact ? ENDING_IDLE_IN_XACT_TIMEOUT : ENDING_IDLE_TIMEOUT,
									  psprintf(in_xact ?
											   _("idle in a transaction for longer than %d ms, the idle_in_transaction_timeout of role \"%s\"") :
											   _("idle for longer than %d ms, the idle_timeout of role \"%s\""),
											   in_xact ? t->in_xact_ms : t->idle_ms,
											   role_name_or_none(in_xact ? t->in_xact_source : t->idle_source)));
	}
}

/* One round: in a transaction of its own, for the catalog reads. */
static void
check_once(void)
{
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	PushActiveSnapshot(GetTransactionSnapshot());
	pgstat_report_activity(STATE_RUNNING, "connmgr: checking idle timeouts");
	if (any_idle_timeout())
		end_idle_connections();
	PopActiveSnapshot();
	CommitTransactionCommand();
	pgstat_report_activity(STATE_IDLE, NULL);
}

void
connmgr_idle_worker_main(Datum arg)
{
	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();
	BackgroundWorkerInitializeConnection(NULL, NULL, 0);

	for (;;)
	{
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 connmgr_idle_check_interval_ms, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}
		check_once();
	}
}

/* Called from _PG_init: start the worker with the server. */
void
connmgr_register_idle_worker(void)
{
	BackgroundWorker worker;

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = 1;
	snprintf(worker.bgw_library_name, BGW_MAXLEN, "connmgr");
	snprintf(worker.bgw_function_name, BGW_MAXLEN, "connmgr_idle_worker_main");
	snprintf(worker.bgw_name, BGW_MAXLEN, "connmgr idle worker");
	snprintf(worker.bgw_type, BGW_MAXLEN, "connmgr idle worker");
	RegisterBackgroundWorker(&worker);
}
