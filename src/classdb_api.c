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
 * The client connections of roleid that the caller may see, oldest first;
 * never a background process running as roleid (a parallel worker, the
 * logical replication launcher, connmgr's idle worker).  Returns the
 * count; *result is a palloc'd array.
 */
static int
visible_connections_of(Oid roleid, PgBackendStatus ***result)
{
	Oid			caller = GetUserId();
	int			n = connmgr_backend_count();
	int			count = 0;
	PgBackendStatus **found = palloc(sizeof(PgBackendStatus *) * Max(n, 1));

	for (int i = 1; i <= n && OidIsValid(roleid); i++)
	{
		PgBackendStatus *be = connmgr_backend_at(i);

		if (be == NULL || be->st_userid != roleid ||
			!connmgr_is_client_connection(be) ||
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
	n = visible_connections_of(connmgr_classdb_role_arg(fcinfo, 0), &conns);

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
 * Report a kill's outcome as ClassDB's API does: true once the connection
 * is gone, otherwise false with a WARNING that says why.  A connection the
 * caller may not see is reported exactly like one that does not exist.
 */
static bool
report_outcome(const ConnmgrKill *kill)
{
	switch (kill->outcome)
	{
		case KILL_TERMINATED:
		case KILL_ALREADY_GONE:
			return true;
		case KILL_OWN:
			ereport(WARNING,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("cannot terminate your own connection"),
					 errhint("Use pg_terminate_backend(pg_backend_pid()) if you really mean it.")));
			break;
		case KILL_NOT_FOUND:
			ereport(WARNING,
					(errcode(ERRCODE_UNDEFINED_OBJECT),
					 errmsg("no connection with process ID %d", kill->pid)));
			break;
		case KILL_NOT_CLIENT:
			ereport(WARNING,
					(errcode(ERRCODE_WRONG_OBJECT_TYPE),
					 errmsg("process %d is not a client connection", kill->pid),
					 errdetail("It is a %s process.", GetBackendTypeDesc(kill->backend_type))));
			break;
		case KILL_DENIED:
			ereport(WARNING,
					(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
					 errmsg("permission denied to terminate connection %d", kill->pid),
					 errdetail("Only superusers may terminate superusers' connections; "
							   "others need the privileges of the connection's role, "
							   "membership in pg_signal_backend, or ADMIN OPTION on a group "
							   "the role belongs to.")));
			break;
		case KILL_TIMED_OUT:
			ereport(WARNING,
					(errcode(ERRCODE_OBJECT_IN_USE),
					 errmsg("connection %d did not exit within %d ms",
							kill->pid, connmgr_terminate_timeout_ms),
					 errhint("Raise connmgr.terminate_timeout to wait longer.")));
			break;
		case KILL_WOULD_TERMINATE:
			elog(ERROR, "unexpected dry-run outcome");
	}
	return false;
}

Datum
connmgr_kill_connection(PG_FUNCTION_ARGS)
{
	ConnmgrKill kill = {.pid = PG_GETARG_INT32(0)};

	connmgr_require_preload();
	connmgr_kill(&kill, 1, NULL, false);
	PG_RETURN_BOOL(report_outcome(&kill));
}

Datum
connmgr_kill_user_connections(PG_FUNCTION_ARGS)
{
	TupleDesc	tupdesc;
	Tuplestorestate *store;
	PgBackendStatus **conns;
	ConnmgrKill *kills;
	int			n;
	int			nkills = 0;

	connmgr_require_preload();
	store = connmgr_begin_result_set(fcinfo, &tupdesc);
	connmgr_refresh_backends();
	n = visible_connections_of(connmgr_classdb_role_arg(fcinfo, 0), &conns);
	kills = palloc0(sizeof(ConnmgrKill) * Max(n, 1));

	/* One row per connection but the caller's own. */
	for (int i = 0; i < n; i++)
	{
		if (conns[i]->st_procpid == MyProcPid)
			continue;
		kills[nkills].pid = conns[i]->st_procpid;
		kills[nkills].started = conns[i]->st_proc_start_timestamp;
		nkills++;
	}
	connmgr_kill(kills, nkills, NULL, false);

	for (int i = 0; i < nkills; i++)
	{
		Datum		values[2];
		bool		nulls[2] = {false};

		values[0] = Int32GetDatum(kills[i].pid);
		values[1] = BoolGetDatum(report_outcome(&kills[i]));
		tuplestore_putvalues(store, tupdesc, values, nulls);
	}
	return (Datum) 0;
}
