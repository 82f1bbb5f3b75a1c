/*
 * classdb_api.c
 *		The ClassDB-compatible SQL functions: listUserConnections,
 *		killConnection, killUserConnections.
 *
 * Names, arguments and result columns follow ClassDB, so its documented
 * queries work with the schema name changed.  Unlike ClassDB, every target
 * connection is checked against the rules in permissions.c, rows the
 * caller may not see are left out, a kill reports success only once the
 * connection is gone, and the caller's own connection is never terminated.
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"
#include "utils/tuplestore.h"

#include "connmgr.h"

PG_FUNCTION_INFO_V1(connmgr_list_user_connections);
PG_FUNCTION_INFO_V1(connmgr_kill_connection);
PG_FUNCTION_INFO_V1(connmgr_kill_user_connections);

static int
compare_by_start_time(const void *a, const void *b)
{
	const PgBackendStatus *x = *(PgBackendStatus *const *) a;
	const PgBackendStatus *y = *(PgBackendStatus *const *) b;

	if (x->st_proc_start_timestamp != y->st_proc_start_timestamp)
		return x->st_proc_start_timestamp < y->st_proc_start_timestamp ? -1 : 1;
	return x->st_procpid - y->st_procpid;
}

/*
 * The processes of roleid that the caller may see, oldest first: only its
 * client connections when clients_only is set, else background workers
 * running as roleid too.  Returns the count; *result is a palloc'd array.
 */
static int
visible_processes_of(Oid roleid, bool clients_only, PgBackendStatus ***result)
{
	Oid			caller = GetUserId();
	int			n = connmgr_backend_count();
	int			count = 0;
	PgBackendStatus **found = palloc(sizeof(PgBackendStatus *) * Max(n, 1));

	for (int i = 1; i <= n && OidIsValid(roleid); i++)
	{
		PgBackendStatus *be = connmgr_backend_at(i);

		if (be == NULL || be->st_userid != roleid ||
			(clients_only && !connmgr_is_client_connection(be)) ||
			!connmgr_may_see(caller, be->st_userid))
			continue;
		found[count++] = be;
	}
	qsort(found, count, sizeof(PgBackendStatus *), compare_by_start_time);
	*result = found;
	return count;
}

static Datum
timestamp_or_null(TimestampTz ts, bool *isnull)
{
	*isnull = (ts == 0);
	return TimestampTzGetDatum(ts);
}

Datum
connmgr_list_user_connections(PG_FUNCTION_ARGS)
{
	TupleDesc	tupdesc;
	Tuplestorestate *store;
	PgBackendStatus **conns;
	int			n;

	connmgr_require_preload();
	store = connmgr_begin_result_set(fcinfo, &tupdesc);
	connmgr_refresh_backends();
	n = visible_processes_of(connmgr_classdb_role_arg(fcinfo, 0), true, &conns);

	for (int i = 0; i < n; i++)
	{
		PgBackendStatus *be = conns[i];
		Datum		values[6];
		bool		nulls[6] = {false};
		const char *user = GetUserNameFromId(be->st_userid, true);

		values[0] = CStringGetTextDatum(user ? user : "");
		values[1] = Int32GetDatum(be->st_procpid);
		values[2] = CStringGetTextDatum(be->st_appname);
		values[3] = connmgr_client_addr_datum(be, &nulls[3]);
		values[4] = timestamp_or_null(be->st_proc_start_timestamp, &nulls[4]);
		values[5] = timestamp_or_null(be->st_activity_start_timestamp, &nulls[5]);
		tuplestore_putvalues(store, tupdesc, values, nulls);
	}
	return (Datum) 0;
}

/*
 * Why the caller may not terminate this connection, as a WARNING; or
 * nothing (true) if it may.  A connection the caller may not see is
 * reported exactly like one that does not exist.
 */
static bool
check_kill_target(int pid, PgBackendStatus *be)
{
	Oid			caller = GetUserId();

	if (pid == MyProcPid)
	{
		ereport(WARNING,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("cannot terminate your own connection"),
				 errhint("Use pg_terminate_backend(pg_backend_pid()) if you really mean it.")));
		return false;
	}
	/*
	 * System processes (no role) are visible to all, as in pg_stat_activity;
	 * a client still logging in (no role yet, PostgreSQL 18) is not.
	 */
	if (be == NULL ||
		((OidIsValid(be->st_userid) || connmgr_is_client_connection(be)) &&
		 !connmgr_may_see(caller, be->st_userid)))
	{
		ereport(WARNING,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("no connection with process ID %d", pid)));
		return false;
	}
	if (!connmgr_is_client_connection(be))
	{
		ereport(WARNING,
				(errcode(ERRCODE_WRONG_OBJECT_TYPE),
				 errmsg("process %d is not a client connection", pid),
				 errdetail("It is a %s process.", GetBackendTypeDesc(be->st_backendType))));
		return false;
	}
	if (!connmgr_may_terminate(caller, be->st_userid,
							   be->st_backendType == B_WAL_SENDER))
	{
		ereport(WARNING,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied to terminate connection %d", pid),
				 errdetail("Only superusers may terminate superusers' connections; "
						   "others need the privileges of the connection's role, "
						   "membership in pg_signal_backend, or (except for replication "
						   "connections) ADMIN OPTION on a group the role belongs to.")));
		return false;
	}
	return true;
}

Datum
connmgr_kill_connection(PG_FUNCTION_ARGS)
{
	int			pid;
	PgBackendStatus *be;
	ConnmgrTarget target;
	bool		gone;

	connmgr_require_preload();
	if (PG_ARGISNULL(0))
		PG_RETURN_NULL();
	pid = PG_GETARG_INT32(0);
	connmgr_refresh_backends();
	be = connmgr_find_backend(pid);

	if (!check_kill_target(pid, be))
		PG_RETURN_BOOL(false);
	target = connmgr_target_of(be);
	connmgr_terminate_connections(&target, 1, &gone);
	PG_RETURN_BOOL(gone);
}

Datum
connmgr_kill_user_connections(PG_FUNCTION_ARGS)
{
	TupleDesc	tupdesc;
	Tuplestorestate *store;
	PgBackendStatus **procs;
	int		   *pids;
	ConnmgrTarget *targets;
	bool	   *allowed;
	bool	   *gone;
	int			n;
	int			nrows = 0;
	int			ntargets = 0;

	connmgr_require_preload();
	store = connmgr_begin_result_set(fcinfo, &tupdesc);
	connmgr_refresh_backends();
	n = visible_processes_of(connmgr_classdb_role_arg(fcinfo, 0), false, &procs);
	pids = palloc(sizeof(int) * Max(n, 1));
	targets = palloc(sizeof(ConnmgrTarget) * Max(n, 1));
	allowed = palloc(sizeof(bool) * Max(n, 1));
	gone = palloc(sizeof(bool) * Max(n, 1));

	/* One row per process but the caller's own, decided before signalling. */
	for (int i = 0; i < n; i++)
	{
		if (procs[i]->st_procpid == MyProcPid)
			continue;
		pids[nrows] = procs[i]->st_procpid;
		allowed[nrows] = check_kill_target(pids[nrows], procs[i]);
		if (allowed[nrows])
			targets[ntargets++] = connmgr_target_of(procs[i]);
		nrows++;
	}
	connmgr_terminate_connections(targets, ntargets, gone);

	for (int i = 0, t = 0; i < nrows; i++)
	{
		Datum		values[2];
		bool		nulls[2] = {false};

		values[0] = Int32GetDatum(pids[i]);
		values[1] = BoolGetDatum(allowed[i] && gone[t]);
		if (allowed[i])
			t++;
		tuplestore_putvalues(store, tupdesc, values, nulls);
	}
	return (Datum) 0;
}
