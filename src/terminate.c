/*
 * terminate.c
 *		Ending connections: log who asked, signal, wait until they are gone.
 *
 * The caller has already decided that the targets may be terminated.  Just
 * before signalling, each target is looked up again in a fresh backend
 * snapshot: one that has exited meanwhile (or whose pid now belongs to a
 * different backend) is not signalled and counts as gone.  A connection is
 * gone once its process no longer exists (kill(pid, 0) fails with ESRCH),
 * by which time it has left the proc array and the postmaster has reaped
 * it, so a killed user can log in again at once.  The wait is bounded by
 * connmgr.terminate_timeout and can be cancelled.  No lock is taken.
 */
#include "postgres.h"

#include <signal.h>

#include "commands/dbcommands.h"
#include "libpq/libpq-be.h"
#include "pgstat.h"
#include "storage/latch.h"
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
			(errmsg("terminating connection %d of role \"%s\" at the request of role \"%s\"",
					be->st_procpid, or_none(target_role), or_none(requester)),
			 errdetail("The connection is to database \"%s\" from client %s with application name \"%s\". "
					   "The request came from process %d, client %s.",
					   or_none(database),
					   or_none(connmgr_client_addr_text(be)),
					   be->st_appname,
					   MyProcPid,
					   MyProcPort ? or_none(MyProcPort->remote_host) : "(none)")));
}

/*
 * Send SIGTERM to the backend, and to its process group where it has one.
 * False if the process no longer exists.
 */
bool
connmgr_send_terminate(int pid)
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

static bool
all_gone(const int *pids, bool *gone, int n)
{
	bool		result = true;

	for (int i = 0; i < n; i++)
	{
		if (!gone[i] && connmgr_has_exited(pids[i]))
			gone[i] = true;
		result &= gone[i];
	}
	return result;
}

/* Wait, at most timeout_ms, until every pid has exited. */
static void
wait_until_gone(const int *pids, bool *gone, int n, int timeout_ms)
{
	TimestampTz start = GetCurrentTimestamp();

	while (!all_gone(pids, gone, n))
	{
		if (TimestampDifferenceExceeds(start, GetCurrentTimestamp(), timeout_ms))
			break;
		(void) WaitLatch(MyLatch,
						 WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 10L, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
	}
}

/*
 * Send SIGTERM to each pid whose gone[i] is false, then wait for all of
 * them together, at most timeout_ms; gone[i] tells whether pids[i] has
 * exited.  Logs nothing: callers say why.
 */
void
connmgr_signal_and_wait(const int *pids, bool *gone, int n, int timeout_ms)
{
	for (int i = 0; i < n; i++)
		if (!gone[i] && !connmgr_send_terminate(pids[i]))
			gone[i] = true;
	wait_until_gone(pids, gone, n, timeout_ms);
}

/*
 * The backend the caller chose is still there: same pid, same role, same
 * start time.  'be' comes from a fresh snapshot.
 */
bool
connmgr_same_backend(const PgBackendStatus *be, const ConnmgrTarget *target)
{
	return be != NULL && be->st_procpid == target->pid &&
		be->st_userid == target->userid &&
		be->st_proc_start_timestamp == target->started;
}

ConnmgrTarget
connmgr_target_of(const PgBackendStatus *be)
{
	ConnmgrTarget target = {be->st_procpid, be->st_userid,
	be->st_proc_start_timestamp};

	return target;
}

/*
 * Terminate every target on behalf of the current user and wait for all of
 * them together.  gone[i] tells whether targets[i] has exited; a WARNING
 * names each one that has not.  Refreshes the backend snapshot: status
 * entries the caller holds are invalid afterwards.
 */
void
connmgr_terminate_connections(const ConnmgrTarget *targets, int ntargets, bool *gone)
{
	int		   *pids = palloc(sizeof(int) * Max(ntargets, 1));

	connmgr_refresh_backends();
	for (int i = 0; i < ntargets; i++)
	{
		PgBackendStatus *be = connmgr_find_backend(targets[i].pid);

		pids[i] = targets[i].pid;
		gone[i] = !connmgr_same_backend(be, &targets[i]);
		if (!gone[i])
			log_termination(be);
	}
	connmgr_signal_and_wait(pids, gone, ntargets, connmgr_terminate_timeout_ms);

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
