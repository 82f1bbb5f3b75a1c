/*
 * backends.c
 *		The server's current backends, as pg_stat_activity sees them.
 *
 * All reads go through the backend status snapshot that pgstat takes once
 * per transaction (no ProcArrayLock).  The entries returned here stay valid
 * until connmgr_refresh_backends() or the end of the transaction.
 *
 * A backend's identity is its pid and its start time: the pid alone is
 * reused by the operating system.  Its connection id is what %c in
 * log_line_prefix writes for it: the start time in seconds since the Unix
 * epoch and the pid, both in hex, joined by a dot ("6578a1b2.3f9c").
 */
#include "postgres.h"

#include <sys/socket.h>
#include <netdb.h>

#include "common/ip.h"
#include "utils/timestamp.h"
#include "pgstat.h"
#include "storage/procarray.h"
#include "utils/memutils.h"
#include "utils/wait_event.h"
#include "utils/builtins.h"

#include "connmgr.h"
#include "compat.h"

int
connmgr_backend_count(void)
{
	return pgstat_fetch_stat_numbackends();
}

/* index runs from 1 to connmgr_backend_count() */
PgBackendStatus *
connmgr_backend_at(int index)
{
	LocalPgBackendStatus *local = connmgr_local_beentry(index);

	return local ? &local->backendStatus : NULL;
}

static int
hexval_or_minus_one(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/*
 * The backend with this pid, or NULL if there is none (pid <= 0 included).
 * A login waiting for a connection slot is found as such.
 */
PgBackendStatus *
connmgr_find_backend(int pid)
{
	int			n = connmgr_waiting_count();

	if (pid <= 0)
		return NULL;
	for (int i = 1; i <= n; i++)
		if (connmgr_waiting_at(i)->st_procpid == pid)
			return connmgr_waiting_at(i);
	n = connmgr_backend_count();
	for (int i = 1; i <= n; i++)
	{
		PgBackendStatus *be = connmgr_backend_at(i);

		if (be != NULL && be->st_procpid == pid)
			return be;
	}
	return NULL;
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

/* The connection id of be, as %c in log_line_prefix writes it. */
char *
connmgr_connection_id(const PgBackendStatus *be)
{
	return psprintf("%lx.%x",
					(long) timestamptz_to_time_t(be->st_proc_start_timestamp),
					be->st_procpid);
}

/* Did be start in that second (of a connection id)? */
bool
connmgr_started_in_second(const PgBackendStatus *be, long start_seconds)
{
	return (long) timestamptz_to_time_t(be->st_proc_start_timestamp) == start_seconds;
}

/* A non-empty run of hex digits that fits in a long, or false. */
static bool
parse_hex(const char *s, size_t len, long *value)
{
	*value = 0;
	if (len == 0 || len > 15)
		return false;
	for (size_t i = 0; i < len; i++)
	{
		int			digit = hexval_or_minus_one(s[i]);

		if (digit < 0)
			return false;
		*value = *value * 16 + digit;
	}
	return true;
}

/*
 * Parse a connection id ("<start seconds>.<pid>", both in hex) into its
 * parts.  False for anything else.
 */
bool
connmgr_parse_connection_id(const char *id, int *pid, long *start_seconds)
{
	const char *dot = strchr(id, '.');
	long		pid_value;

	if (dot == NULL ||
		!parse_hex(id, dot - id, start_seconds) ||
		!parse_hex(dot + 1, strlen(dot + 1), &pid_value) ||
		pid_value <= 0 || pid_value > PG_INT32_MAX)
		return false;
	*pid = (int) pid_value;
	return true;
}

/*
 * Logins waiting for a connection slot (shmem.c) hold a backend but are
 * not in pg_stat_activity yet (from PostgreSQL 18 they are, as "starting",
 * without their user).  They are shown as backends of their own, state
 * "waiting" (st_state STATE_UNDEFINED, told apart by connmgr_is_waiting()),
 * from a snapshot taken once until the next refresh.
 */
static PgBackendStatus *waiting = NULL;
static int	nwaiting = -1;			/* -1: no snapshot taken */

static void
forget_waiting(void)
{
	if (waiting != NULL)
		pfree(waiting);
	waiting = NULL;
	nwaiting = -1;
}

/* A backend status entry that shows a waiting login. */
static void
fill_waiting_entry(PgBackendStatus *be, char *appname, const ConnmgrWaitingLogin *login)
{
	memset(be, 0, sizeof(*be));
	be->st_procpid = login->pid;
	be->st_backendType = B_BACKEND;
	be->st_proc_start_timestamp = login->started;
	be->st_state_start_timestamp = login->since;
	be->st_state = STATE_UNDEFINED;
	be->st_databaseid = login->database;
	be->st_userid = login->user;
	be->st_clientaddr = login->client_addr;
	strlcpy(appname, login->application_name, NAMEDATALEN);
	be->st_appname = appname;
}

static void
take_waiting_snapshot(void)
{
	ConnmgrWaitingLogin *logins = palloc(sizeof(ConnmgrWaitingLogin) * MaxBackends);
	int			n = connmgr_waiting_logins(logins);

	char	   *appnames;

	/* one allocation: the entries, then their application names */
	waiting = MemoryContextAlloc(TopMemoryContext,
								 (sizeof(PgBackendStatus) + NAMEDATALEN) * Max(n, 1));
	appnames = (char *) (waiting + Max(n, 1));
	for (int i = 0; i < n; i++)
		fill_waiting_entry(&waiting[i], appnames + i * NAMEDATALEN, &logins[i]);
	nwaiting = n;
	pfree(logins);
}

/* How many logins wait for a connection slot (index them from 1). */
int
connmgr_waiting_count(void)
{
	if (nwaiting < 0)
		take_waiting_snapshot();
	return nwaiting;
}

PgBackendStatus *
connmgr_waiting_at(int index)
{
	return index >= 1 && index <= connmgr_waiting_count() ? &waiting[index - 1] : NULL;
}

/* Does be show a login waiting for a connection slot? */
bool
connmgr_is_waiting(const PgBackendStatus *be)
{
	return waiting != NULL && be >= waiting && be < waiting + Max(nwaiting, 0);
}

/*
 * Is the backend pid (started then) on its way out?  While an idle
 * backend waits for its client it reads from the socket (wait event
 * ClientRead); an idle backend doing anything else has read its client's
 * goodbye, or the end of its connection, and is exiting (cleaning up its
 * temporary tables, say), or is about to run a query and show as running.
 * A backend no longer in pg_stat_activity, or another one under its pid,
 * has left.
 */
bool
connmgr_backend_leaving(int pid, TimestampTz started)
{
	PgBackendStatus *be = connmgr_find_backend(pid);
	PGPROC	   *proc;

	if (be == NULL || be->st_proc_start_timestamp != started)
		return true;
	if (be->st_state != STATE_IDLE)
		return false;
	proc = BackendPidGetProc(pid);
	return proc == NULL || proc->wait_event_info != WAIT_EVENT_CLIENT_READ;
}

/*
 * Drop the backend status snapshot so that the next read sees the backends
 * as they are now.  This leaves the transaction's cumulative statistics
 * snapshot alone.
 */
void
connmgr_refresh_backends(void)
{
	pgstat_clear_backend_activity_snapshot();
	forget_waiting();
}

/*
 * A client connection is a regular backend or a walsender: something a
 * client opened and that terminating ends.  Background workers, autovacuum
 * and auxiliary processes are not.
 */
bool
connmgr_is_client_connection(const PgBackendStatus *be)
{
	return be->st_backendType == B_BACKEND ||
		be->st_backendType == B_WAL_SENDER;
}

/*
 * The IP address of addr as text (and its port, if port is not NULL), or
 * NULL for Unix sockets and backends without a client.  Any IPv6 zone
 * suffix is dropped, since inet cannot hold it.
 */
const char *
connmgr_sockaddr_host(const SockAddr *addr, int *port)
{
	char		host[NI_MAXHOST];
	char		service[NI_MAXSERV];
	char	   *zone;

	if (addr->addr.ss_family != AF_INET && addr->addr.ss_family != AF_INET6)
		return NULL;
	if (pg_getnameinfo_all(&addr->addr, addr->salen, host, sizeof(host),
						   service, sizeof(service),
						   NI_NUMERICHOST | NI_NUMERICSERV) != 0)
		return NULL;
	zone = strchr(host, '%');
	if (zone != NULL)
		*zone = '\0';
	if (port != NULL)
		*port = atoi(service);
	return pstrdup(host);
}

/* The client's IP address as text, or NULL (Unix socket, no client). */
const char *
connmgr_client_addr_text(const PgBackendStatus *be)
{
	return connmgr_sockaddr_host(&be->st_clientaddr, NULL);
}

Datum
connmgr_client_addr_datum(const PgBackendStatus *be, bool *isnull)
{
	const char *host = connmgr_client_addr_text(be);

	*isnull = (host == NULL);
	if (host == NULL)
		return (Datum) 0;
	return DirectFunctionCall1(inet_in, CStringGetDatum(host));
}
