/*
 * limits_api.c
 *		The SQL-callable policy functions: set_connection_limit,
 *		drop_connection_limit, export_policies, and the rows of the
 *		connection_limits view.
 *
 * Who may change a role's policy is decided in permissions.c (what
 * PostgreSQL requires to ALTER the role).  The view shows a
 * policy to those who may change it, to members and administrators of the
 * role, and to members of pg_read_all_stats.
 */
#include "postgres.h"

#include "catalog/pg_authid.h"
#include "tcop/utility.h"
#include "utils/acl.h"
#include "postmaster/postmaster.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"

#include "connmgr.h"

PG_FUNCTION_INFO_V1(connmgr_set_connection_limit);
PG_FUNCTION_INFO_V1(connmgr_drop_connection_limit);
PG_FUNCTION_INFO_V1(connmgr_connection_limit_rows);
PG_FUNCTION_INFO_V1(connmgr_export_policies);

/*
 * The role named by argument argno (read as names.c says), checked for
 * permission to manage it.  Policies are catalog entries: writing them
 * needs a writable transaction.
 */
static Oid
managed_role_arg(FunctionCallInfo fcinfo, int argno, const char *cmdname,
				 const char **name)
{
	Oid			role;

	PreventCommandDuringRecovery(cmdname);
	PreventCommandIfReadOnly(cmdname);
	role = connmgr_role_arg(fcinfo, argno, name);
	connmgr_check_may_manage_policy(role, *name);
	return role;
}

/* Say so when a new policy replaces a different one. */
static void
notice_replaced(Oid role, const char *name, const ConnmgrPolicy *new_policy)
{
	ConnmgrPolicy old;
	const char *problem;
	char	   *new_text = connmgr_policy_text(new_policy);

	switch (connmgr_lookup_policy(role, &old, &problem))
	{
		case POLICY_VALID:
			if (strcmp(connmgr_policy_text(&old), new_text) != 0)
				ereport(NOTICE,
						(errcode(ERRCODE_SUCCESSFUL_COMPLETION),
						 errmsg("replacing the connection limit policy of role \"%s\"", name),
						 errdetail("The policy was \"%s\" and is now \"%s\"; limits that are not given are removed.",
								   connmgr_policy_text(&old), new_text)));
			break;
		case POLICY_INVALID:
			ereport(NOTICE,
					(errcode(ERRCODE_SUCCESSFUL_COMPLETION),
					 errmsg("replacing the damaged connection limit policy of role \"%s\"", name),
					 errdetail("The policy is now \"%s\".", new_text)));
			break;
		case POLICY_NONE:
			break;
	}
}

/* A limit argument: NULL means none (-1); negative values are refused. */
static int
limit_arg(FunctionCallInfo fcinfo, int argno)
{
	int			limit;

	if (PG_ARGISNULL(argno))
		return -1;
	limit = PG_GETARG_INT32(argno);
	if (limit < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 argno == 1 ? errmsg("per_member must not be negative") :
				 errmsg("total must not be negative"),
				 errhint("Use 0 to keep the role's members from connecting at all, or NULL for no limit.")));
	return limit;
}

/* An interval argument in milliseconds (months of 30 days). */
static int64
interval_ms(FunctionCallInfo fcinfo, int argno)
{
	Interval   *value = PG_GETARG_INTERVAL_P(argno);

	return (value->time + (int64) value->day * USECS_PER_DAY +
			(int64) value->month * DAYS_PER_MONTH * USECS_PER_DAY) / 1000;
}

/* An interval argument in milliseconds (positive, below 2^31), or -1 for NULL. */
static int
interval_ms_arg(FunctionCallInfo fcinfo, int argno)
{
	int64		ms;

	if (PG_ARGISNULL(argno))
		return -1;
	ms = interval_ms(fcinfo, argno);
	if (ms <= 0 || ms > PG_INT32_MAX)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 argno == 6 ? errmsg("idle_timeout must be positive and less than 24 days") :
				 errmsg("idle_in_transaction_timeout must be positive and less than 24 days")));
	return (int) ms;
}

/*
 * The wait_timeout argument in milliseconds, or -1 for NULL (the
 * default).  It must be positive and end before authentication_timeout.
 */
static int
wait_timeout_arg(FunctionCallInfo fcinfo, int argno)
{
	int64		ms;

	if (PG_ARGISNULL(argno))
		return -1;
	ms = interval_ms(fcinfo, argno);
	if (ms <= 0 || ms >= (int64) AuthenticationTimeout * 1000)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("wait_timeout must be positive and shorter than authentication_timeout"),
				 errdetail("A waiting login holds its connection until it is admitted; authentication_timeout is %d s.",
						   AuthenticationTimeout)));
	return (int) ms;
}

Datum
connmgr_set_connection_limit(PG_FUNCTION_ARGS)
{
	Oid			role;
	const char *name;
	ConnmgrPolicy policy;
	char	   *on_limit;

	connmgr_require_preload();
	role = managed_role_arg(fcinfo, 0, "connmgr.set_connection_limit()", &name);
	policy.per_member = limit_arg(fcinfo, 1);
	policy.total = limit_arg(fcinfo, 2);
	if (PG_ARGISNULL(3))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("on_limit must not be null"),
				 errhint("Use 'reject', 'evict_idle', 'log' or 'wait'.")));
	on_limit = text_to_cstring(PG_GETARG_TEXT_PP(3));
	if (!connmgr_on_limit_from_name(on_limit, &policy.on_limit))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid value for parameter \"on_limit\": \"%s\"", on_limit),
				 errhint("Use 'reject', 'evict_idle', 'log' or 'wait'.")));
	policy.wait_timeout_ms = wait_timeout_arg(fcinfo, 4);
	policy.idle_timeout_ms = interval_ms_arg(fcinfo, 6);
	policy.idle_in_xact_timeout_ms = interval_ms_arg(fcinfo, 7);
	policy.max_waiting = PG_ARGISNULL(5) ? -1 : PG_GETARG_INT32(5);
	if (!PG_ARGISNULL(5) && policy.max_waiting <= 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("max_waiting must be positive")));
	if (policy.on_limit != ON_LIMIT_WAIT &&
		(policy.wait_timeout_ms >= 0 || policy.max_waiting >= 0))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("wait_timeout and max_waiting are for on_limit 'wait' only")));
	if (policy.per_member < 0 && policy.total < 0 &&
		policy.idle_timeout_ms < 0 && policy.idle_in_xact_timeout_ms < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("a connection limit needs per_member, total or an idle timeout"),
				 errhint("To remove a role's limit, use connmgr.drop_connection_limit().")));

	notice_replaced(role, name, &policy);
	connmgr_write_policy(role, &policy);
	PG_RETURN_VOID();
}

Datum
connmgr_drop_connection_limit(PG_FUNCTION_ARGS)
{
	Oid			role;
	const char *name;
	bool		existed;

	connmgr_require_preload();
	role = managed_role_arg(fcinfo, 0, "connmgr.drop_connection_limit()", &name);
	existed = connmgr_has_policy(role);
	if (existed)
		connmgr_write_policy(role, NULL);
	PG_RETURN_BOOL(existed);
}

/* A counted login role and the groups it belongs to, as for its limits. */
typedef struct CountedRole
{
	Oid			roleid;
	int			own;
	List	   *groups;
} CountedRole;

/* The roles with connections of their own, each with its groups, once. */
static CountedRole *
counted_roles(const ConnmgrCounter *counters, int ncounters, int *n)
{
	CountedRole *roles = palloc(sizeof(CountedRole) * Max(ncounters, 1));

	*n = 0;
	for (int i = 0; i < ncounters; i++)
	{
		if (counters[i].own <= 0)
			continue;
		roles[*n].roleid = counters[i].roleid;
		roles[*n].own = counters[i].own;
		roles[*n].groups = connmgr_roles_containing(counters[i].roleid,
													ROLES_INHERITED | ROLES_ENROLLED);
		(*n)++;
	}
	return roles;
}

/* The most connections held by one login role that is role or its member. */
static int
max_member_connections(Oid role, const CountedRole *roles, int nroles)
{
	int			max = 0;

	for (int i = 0; i < nroles; i++)
	{
		if (roles[i].own > max &&
			(roles[i].roleid == role || list_member_oid(roles[i].groups, role)))
			max = roles[i].own;
	}
	return max;
}

static int
total_connections(Oid role, const ConnmgrCounter *counters, int ncounters)
{
	for (int i = 0; i < ncounters; i++)
		if (counters[i].roleid == role)
			return counters[i].total;
	return 0;
}

Datum
connmgr_connection_limit_rows(PG_FUNCTION_ARGS)
{
	TupleDesc	tupdesc;
	Tuplestorestate *store;
	ConnmgrCounter *counters;
	int			ncounters;
	CountedRole *roles;
	int			nroles;
	ListCell   *lc;

	connmgr_require_preload();
	store = connmgr_begin_result_set(fcinfo, &tupdesc);
	counters = palloc(sizeof(ConnmgrCounter) * connmgr_max_tracked_roles);
	ncounters = connmgr_counter_snapshot(counters);
	roles = counted_roles(counters, ncounters, &nroles);

	foreach(lc, connmgr_all_policies())
	{
		ConnmgrRolePolicy *entry = lfirst(lc);
		Oid			role = entry->roleid;
		const ConnmgrPolicy *policy = &entry->policy;
		char	   *name = GetUserNameFromId(role, true);
		Datum		values[7];
		bool		nulls[7] = {false};

		if (name == NULL || !connmgr_may_see_policy(GetUserId(), role))
			continue;
		if (entry->problem != NULL)
		{
			ereport(WARNING,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("the connection limit policy of role \"%s\" is damaged", name),
					 errdetail("%s", entry->problem),
					 errhint("Replace it with connmgr.set_connection_limit() or remove it with connmgr.drop_connection_limit().")));
			continue;
		}
		values[0] = DirectFunctionCall1(namein, CStringGetDatum(name));
		values[1] = Int32GetDatum(policy->per_member);
		nulls[1] = policy->per_member < 0;
		values[2] = Int32GetDatum(max_member_connections(role, roles, nroles));
		values[3] = Int32GetDatum(policy->total);
		nulls[3] = policy->total < 0;
		values[4] = Int32GetDatum(total_connections(role, counters, ncounters));
		values[5] = CStringGetTextDatum(connmgr_on_limit_name(policy->on_limit));
		values[6] = BoolGetDatum(!superuser_arg(role));
		tuplestore_putvalues(store, tupdesc, values, nulls);
	}
	return (Datum) 0;
}

static int
compare_strings(const ListCell *a, const ListCell *b)
{
	return strcmp(lfirst(a), lfirst(b));
}

/*
 * Every intact policy as the SECURITY LABEL statement that pg_dumpall
 * writes for it, sorted: to keep beside a dump, and to compare after a
 * restore.  Superusers only, as it lists every role's policy.
 */
Datum
connmgr_export_policies(PG_FUNCTION_ARGS)
{
	TupleDesc	tupdesc;
	Tuplestorestate *store;
	List	   *statements = NIL;
	ListCell   *lc;

	connmgr_require_preload();
	if (!superuser())
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied to export connection limit policies"),
				 errdetail("Only superusers may export every role's policy.")));
	store = connmgr_begin_result_set(fcinfo, &tupdesc);
	foreach(lc, connmgr_all_policies())
	{
		ConnmgrRolePolicy *entry = lfirst(lc);
		char	   *name = GetUserNameFromId(entry->roleid, true);

		if (name == NULL || entry->problem != NULL)
			continue;
		statements = lappend(statements,
							 psprintf("SECURITY LABEL FOR connmgr ON ROLE %s IS %s;",
									  quote_identifier(name),
									  quote_literal_cstr(connmgr_policy_text(&entry->policy))));
	}
	list_sort(statements, compare_strings);
	foreach(lc, statements)
	{
		Datum		value = CStringGetTextDatum(lfirst(lc));
		bool		isnull = false;

		tuplestore_putvalues(store, tupdesc, &value, &isnull);
	}
	return (Datum) 0;
}
