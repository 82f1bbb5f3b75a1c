/*
 * terminate.c
 *		Ending connections: log who asked, signal, wait until they are gone.
 *
 * The caller has already decided that the targets may be terminated.  A
 * connection counts as gone once its process has left the proc array, so
 * that a killed user can log in again at once (PostgreSQL's own per-role
 * connection limits count the proc array).  The wait is bounded by
 * connmgr.terminate_timeout and can be cancelled.
 */
#include "postgres.h"

#include <signal.h>

#include "commands/dbcommands.h"
#include "libpq/libpq-be.h"
#include "pgstat.h"
#include "storage/latch.h"
#include "storage/procarray.h"
#include "utils/acl.h"
#include "utils/timestamp.h"

#include "connmgr.h"

static const char *
or_none(const char *s)
{
	return (s != NULL && s[0] != '\0') ? s : "(none)";
}

static void
log_termination(const PgBackendStatus *be)
{
	const char *target_role = GetUserNameFromId(be->st_userid, true);
	const char *database = get_database_name(be->st_databaseid);
	const char *requester = GetUserNameFromId(GetUserId(), true);

	ereport(LOG,
			(errmsg("connmgr: terminating connection %d of role \"%s\" at the request of role \"%s\"",
					be->st_procpid, or_none(target_role), or_none(requester)),
			 errdetail("The connection is to database \"%s\" from client %s with application name \"%s\". "
					   "The request came from process %d, client %s.",
					   or_none(database),
					   or_none(connmgr_client_addr_text(be)),
					   be->st_appname,
					   MyProcPid,
					   MyProcPort ? or_none(MyProcPort->remote_host) : "(none)")));
}

/* Send SIGTERM to the backend, and to its process group where it has one. */
static bool
send_sigterm(int pid)
{
#ifdef HAVE_SETSID
	return kill(-pid, SIGTERM) == 0;
#else
	return kill(pid, SIGTERM) == 0;
#endif
}

static bool
all_gone(int *pids, bool *gone, int n)
{
	bool		result = true;

	for (int i = 0; i < n; i++)
	{
		if (!gone[i] && BackendPidGetProc(pids[i]) == NULL)
			gone[i] = true;
		result &= gone[i];
	}
	return result;
}

/* Wait, at most connmgr.terminate_timeout, until every pid has exited. */
static void
wait_until_gone(int *pids, bool *gone, int n)
{
	TimestampTz start = GetCurrentTimestamp();

	while (!all_gone(pids, gone, n))
	{
		if (TimestampDifferenceExceeds(start, GetCurrentTimestamp(),
									   connmgr_terminate_timeout_ms))
			break;
		(void) WaitLatch(MyLatch,
						 WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 10L, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
	}
}

/*
 * Send SIGTERM to every pid, then wait for all of them together.  gone[i]
 * tells whether pids[i] has exited.  Logs nothing: callers say why.
 */
void
connmgr_signal_and_wait(int *pids, bool *gone, int n)
{
	for (int i = 0; i < n; i++)
		gone[i] = !send_sigterm(pids[i]) && errno == ESRCH;
	wait_until_gone(pids, gone, n);
}

/*
 * Terminate every target on behalf of the current user and wait for all of
 * them together.  gone[i] tells whether targets[i] has exited; a WARNING
 * names each one that has not.
 */
void
connmgr_terminate_connections(PgBackendStatus **targets, int ntargets, bool *gone)
{
	int		   *pids = palloc(sizeof(int) * Max(ntargets, 1));

	for (int i = 0; i < ntargets; i++)
	{
		pids[i] = targets[i]->st_procpid;
		log_termination(targets[i]);
	}
	connmgr_signal_and_wait(pids, gone, ntargets);

	for (int i = 0; i < ntargets; i++)
	{
		if (!gone[i])
			ereport(WARNING,
					(errcode(ERRCODE_OBJECT_IN_USE),
					 errmsg("connection %d did not exit within %d ms",
							pids[i], connmgr_terminate_timeout_ms),
					 errhint("Raise connmgr.terminate_timeout to wait longer.")));
	}
	pfree(pids);
}
