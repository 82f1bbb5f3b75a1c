/*
 * stats_api.c
 *		The monitoring views: role_activity, server_activity,
 *		connection_events, and reset_stats().
 *
 * Visibility follows the other functions: a caller sees the rows of roles
 * whose connections it may see (permissions.c: its own, its class as an
 * instructor, all with pg_read_all_stats or pg_monitor), of groups whose
 * policies it may see, and rows of role names that name no role (failed
 * logins) only with pg_read_all_stats.
 */
#include "postgres.h"

#include <math.h>

#include "catalog/pg_authid.h"
#include "libpq/libpq-be.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/inet.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"

#include "connmgr.h"
#include "compat.h"

PG_FUNCTION_INFO_V1(connmgr_role_activity_rows);
PG_FUNCTION_INFO_V1(connmgr_server_activity_rows);
PG_FUNCTION_INFO_V1(connmgr_connection_event_rows);
PG_FUNCTION_INFO_V1(connmgr_reset_stats);

/* The connections of a role (or of a group's members), by state. */
typedef struct StateCounts
{
	int			running;
	int			idle;
	int			idle_in_transaction;
	int			current;
} StateCounts;

/* One row of role_activity being built. */
typedef struct ActivityRow
{
	NameData	name;
	Oid			roleid;			/* InvalidOid: no such role (now) */
	const ConnmgrRoleStats *stats;	/* NULL: none kept */
	int			total_limit;	/* the role's policy total, or -1 */
	StateCounts counts;
} ActivityRow;

/* A name kept in shared memory, as a value of type name here. */
static Datum
shared_name_datum(const char *name)
{
	return DirectFunctionCall1(namein, CStringGetDatum(connmgr_from_shared_text(name)));
}

static bool
is_stats_reader(Oid caller)
{
	return has_privs_of_role(caller, ROLE_PG_READ_ALL_STATS);
}

static void
count_state(StateCounts *counts, BackendState state)
{
	counts->current++;
	if (state == STATE_RUNNING || state == STATE_FASTPATH)
		counts->running++;
	else if (state == STATE_IDLE)
		counts->idle++;
	else if (state == STATE_IDLEINTRANSACTION || state == STATE_IDLEINTRANSACTION_ABORTED)
		counts->idle_in_transaction++;
}

/* The row for roleid or name in rows[0 .. *n), added if missing. */
static ActivityRow *
row_for(ActivityRow *rows, int *n, Oid roleid, const char *name)
{
	for (int i = 0; i < *n; i++)
		if ((OidIsValid(roleid) && rows[i].roleid == roleid) ||
			strcmp(NameStr(rows[i].name), name) == 0)
			return &rows[i];
	memset(&rows[*n], 0, sizeof(ActivityRow));
	namestrcpy(&rows[*n].name, name);
	rows[*n].roleid = roleid;
	rows[*n].total_limit = -1;
	return &rows[(*n)++];
}

/*
 * The connections of every client backend counted by state: for its own
 * role, and for each group with a total policy that it counts toward.
 */
static void
count_connections(ActivityRow *rows, int nrows)
{
	int			n = connmgr_backend_count();

	for (int i = 1; i <= n; i++)
	{
		PgBackendStatus *be = connmgr_backend_at(i);
		List	   *groups = NIL;
		bool		groups_known = false;

		if (be == NULL || !connmgr_is_client_connection(be) || !OidIsValid(be->st_userid))
			continue;
		for (int r = 0; r < nrows; r++)
		{
			if (rows[r].roleid == be->st_userid)
				count_state(&rows[r].counts, be->st_state);
			else if (rows[r].total_limit >= 0 && OidIsValid(rows[r].roleid))
			{
				if (!groups_known)
					groups = connmgr_roles_containing(be->st_userid,
													  ROLES_INHERITED | ROLES_ENROLLED);
				groups_known = true;
				if (list_member_oid(groups, rows[r].roleid))
					count_state(&rows[r].counts, be->st_state);
			}
		}
	}
}

/*
 * The tightest limit on a login role's connections, and which it is:
 * connmgr's per_member, PostgreSQL's rolconnlimit, or what max_connections
 * leaves ordinary roles (all of it, for a superuser).
 */
static int
effective_limit(Oid roleid, const char **source)
{
	int			limit = MaxConnections - CONNMGR_RESERVED_CONNECTIONS;
	int			per_member = connmgr_enforced_per_member(roleid);
	HeapTuple	tuple = SearchSysCache1(AUTHOID, ObjectIdGetDatum(roleid));

	*source = "max_connections";
	if (HeapTupleIsValid(tuple))
	{
		Form_pg_authid role = (Form_pg_authid) GETSTRUCT(tuple);

		if (role->rolsuper)
		{
			/* neither connmgr nor rolconnlimit applies, nor the reserve */
			per_member = -1;
			limit = MaxConnections;
		}
		else if (role->rolconnlimit >= 0 && role->rolconnlimit < limit)
		{
			limit = role->rolconnlimit;
			*source = "rolconnlimit";
		}
		ReleaseSysCache(tuple);
	}
	if (per_member >= 0 && per_member < limit)
	{
		limit = per_member;
		*source = "per_member";
	}
	return limit;
}

static const char *
usage_status(int current, int limit)
{
	if (limit <= 0)
		return current > 0 ? "critical" : "ok";
	if (100.0 * current / limit >= connmgr_critical_pct)
		return "critical";
	if (100.0 * current / limit >= connmgr_warning_pct)
		return "warning";
	return "ok";
}

static void
put_usage(int current, int limit, Datum *values, bool *nulls, int at)
{
	nulls[at] = limit <= 0;
	if (limit > 0)
		values[at] = Float8GetDatum(round(1000.0 * current / limit) / 10.0);
	values[at + 1] = CStringGetTextDatum(usage_status(current, limit));
}

static bool
may_see_row(Oid caller, const ActivityRow *row)
{
	if (!OidIsValid(row->roleid))
		return is_stats_reader(caller);
	return connmgr_may_see(caller, row->roleid) ||
		(row->total_limit >= 0 && connmgr_may_see_policy(caller, row->roleid));
}

#define ROLE_ACTIVITY_COLUMNS 17

static void
put_activity_row(Tuplestorestate *store, TupleDesc tupdesc, const ActivityRow *row)
{
	Datum		values[ROLE_ACTIVITY_COLUMNS];
	bool		nulls[ROLE_ACTIVITY_COLUMNS] = {false};
	ConnmgrRoleStats none = {0};
	const ConnmgrRoleStats *s = row->stats ? row->stats : &none;
	const char *source = "total";
	int			limit = row->total_limit;

	nulls[0] = NameStr(row->name)[0] == '\0';	/* names that are no role */
	values[0] = shared_name_datum(NameStr(row->name));
	values[1] = Int32GetDatum(row->counts.running);
	values[2] = Int32GetDatum(row->counts.idle);
	values[3] = Int32GetDatum(row->counts.idle_in_transaction);
	values[4] = Int32GetDatum(row->counts.current);
	values[5] = Int64GetDatum(s->opened);
	values[6] = Int64GetDatum(s->closed);
	values[7] = Int64GetDatum(s->rejected);
	values[8] = Int64GetDatum(s->evicted);
	values[9] = Int64GetDatum(s->terminated);
	values[10] = Int64GetDatum(s->auth_failed);
	values[11] = TimestampTzGetDatum(s->last_connect);
	nulls[11] = s->last_connect == 0;
	values[12] = TimestampTzGetDatum(s->last_reject);
	nulls[12] = s->last_reject == 0;
	if (limit < 0 && OidIsValid(row->roleid))
		limit = effective_limit(row->roleid, &source);
	nulls[13] = nulls[14] = limit < 0;
	values[13] = Int32GetDatum(limit);
	values[14] = CStringGetTextDatum(source);
	put_usage(row->counts.current, limit, values, nulls, 15);
	if (limit < 0)
		nulls[15] = nulls[16] = true;
	tuplestore_putvalues(store, tupdesc, values, nulls);
}

Datum
connmgr_role_activity_rows(PG_FUNCTION_ARGS)
{
	TupleDesc	tupdesc;
	Tuplestorestate *store;
	ConnmgrRoleStats totals;
	NameData   *names = palloc(sizeof(NameData) * connmgr_max_role_stats);
	ConnmgrRoleStats *stats = palloc(sizeof(ConnmgrRoleStats) * connmgr_max_role_stats);
	List	   *policies;
	ActivityRow *rows;
	int			nstats;
	int			nrows = 0;
	int			nbackends;
	ListCell   *lc;

	connmgr_require_preload();
	store = connmgr_begin_result_set(fcinfo, &tupdesc);
	nstats = connmgr_stats_roles(&totals, names, stats);
	policies = connmgr_all_policies();
	connmgr_refresh_backends();
	nbackends = connmgr_backend_count();
	rows = palloc(sizeof(ActivityRow) * (nstats + nbackends + list_length(policies) + 1));

	for (int i = 0; i < nstats; i++)
		row_for(rows, &nrows, get_role_oid(NameStr(names[i]), true),
				NameStr(names[i]))->stats = &stats[i];
	foreach(lc, policies)
	{
		ConnmgrRolePolicy *policy = lfirst(lc);
		char	   *name = GetUserNameFromId(policy->roleid, true);

		if (name != NULL && policy->problem == NULL && policy->policy.total >= 0)
			row_for(rows, &nrows, policy->roleid, name)->total_limit = policy->policy.total;
	}
	for (int i = 1; i <= nbackends; i++)
	{
		PgBackendStatus *be = connmgr_backend_at(i);
		char	   *name;

		if (be == NULL || !connmgr_is_client_connection(be) || !OidIsValid(be->st_userid))
			continue;
		name = GetUserNameFromId(be->st_userid, true);
		if (name != NULL)
			row_for(rows, &nrows, be->st_userid, name);
	}
	count_connections(rows, nrows);

	for (int i = 0; i < nrows; i++)
		if (may_see_row(GetUserId(), &rows[i]))
			put_activity_row(store, tupdesc, &rows[i]);
	return (Datum) 0;
}

Datum
connmgr_server_activity_rows(PG_FUNCTION_ARGS)
{
	TupleDesc	tupdesc;
	Tuplestorestate *store;
	ConnmgrRoleStats totals = {0};
	NameData   *names = palloc(sizeof(NameData) * connmgr_max_role_stats);
	ConnmgrRoleStats *stats = palloc(sizeof(ConnmgrRoleStats) * connmgr_max_role_stats);
	Datum		values[20];
	bool		nulls[20] = {false};
	int			usable = MaxConnections - CONNMGR_RESERVED_CONNECTIONS;
	int			current = 0;
	int			n;
	static const int churn_minutes[] = {1, 5, 15};

	connmgr_require_preload();
	store = connmgr_begin_result_set(fcinfo, &tupdesc);
	(void) connmgr_stats_roles(&totals, names, stats);
	connmgr_refresh_backends();
	n = connmgr_backend_count();
	for (int i = 1; i <= n; i++)
	{
		PgBackendStatus *be = connmgr_backend_at(i);

		if (be != NULL && be->st_backendType == B_BACKEND)
			current++;
	}

	values[0] = Int32GetDatum(MaxConnections);
	values[1] = Int32GetDatum(CONNMGR_RESERVED_CONNECTIONS);
	values[2] = Int32GetDatum(current);
	values[3] = Int32GetDatum(Max(usable - current, 0));
	put_usage(current, usable, values, nulls, 4);
	values[6] = Int64GetDatum(totals.opened);
	values[7] = Int64GetDatum(totals.closed);
	values[8] = Int64GetDatum(totals.rejected);
	values[9] = Int64GetDatum(totals.evicted);
	values[10] = Int64GetDatum(totals.terminated);
	values[11] = Int64GetDatum(totals.auth_failed);
	for (int i = 0; i < 3; i++)
	{
		int64		opened;
		int64		net;

		connmgr_stats_churn(churn_minutes[i] * 60, &opened, &net);
		values[12 + i] = Float8GetDatum((double) opened / churn_minutes[i]);
	}
	for (int i = 0; i < 2; i++)
	{
		int64		opened;
		int64		net;

		connmgr_stats_churn(i == 0 ? 15 * 60 : 60 * 60, &opened, &net);
		values[15 + i] = Int64GetDatum(net);
	}
	values[17] = TimestampTzGetDatum(connmgr_stats_reset_time());
	tuplestore_putvalues(store, tupdesc, values, nulls);
	return (Datum) 0;
}

static const char *
event_name(ConnmgrEventKind kind)
{
	switch (kind)
	{
		case EVENT_CONNECT:
			return "connect";
		case EVENT_DISCONNECT:
			return "disconnect";
		case EVENT_REJECT:
			return "reject";
		case EVENT_EVICT:
			return "evict";
		case EVENT_TERMINATE:
			return "terminate";
		case EVENT_AUTH_FAILED:
			return "auth_failed";
	}
	return NULL;
}

/* May the caller see events of this role name? */
static bool
may_see_events_of(Oid caller, const char *name)
{
	Oid			role = get_role_oid(name, true);

	if (!OidIsValid(role))
		return is_stats_reader(caller);
	return connmgr_may_see(caller, role);
}

#define EVENT_COLUMNS 11

Datum
connmgr_connection_event_rows(PG_FUNCTION_ARGS)
{
	TupleDesc	tupdesc;
	Tuplestorestate *store;
	ConnmgrEvent *events = palloc(sizeof(ConnmgrEvent) * Max(connmgr_event_log_size, 1));
	int			n;

	connmgr_require_preload();
	store = connmgr_begin_result_set(fcinfo, &tupdesc);
	n = connmgr_stats_events(events);
	for (int i = 0; i < n; i++)
	{
		const ConnmgrEvent *e = &events[i];
		Datum		values[EVENT_COLUMNS];
		bool		nulls[EVENT_COLUMNS] = {false};
		bool		has_ending = e->kind == EVENT_EVICT || e->kind == EVENT_TERMINATE;

		if (!may_see_events_of(GetUserId(), NameStr(e->username)))
			continue;
		values[0] = TimestampTzGetDatum(e->time);
		values[1] = CStringGetTextDatum(event_name(e->kind));
		values[2] = CStringGetTextDatum(psprintf("%lx.%x",
												 (long) timestamptz_to_time_t(e->started),
												 e->pid));
		values[3] = Int32GetDatum(e->pid);
		values[4] = shared_name_datum(NameStr(e->username));
		values[5] = shared_name_datum(NameStr(e->database));
		nulls[5] = NameStr(e->database)[0] == '\0';
		values[6] = CStringGetTextDatum(connmgr_from_shared_text(e->application_name));
		nulls[7] = e->client[0] == '\0';
		if (!nulls[7])
			values[7] = DirectFunctionCall1(inet_in, CStringGetDatum(e->client));
		nulls[8] = !has_ending;
		values[8] = shared_name_datum(NameStr(e->actor));
		nulls[9] = !has_ending || e->reason[0] == '\0';
		values[9] = CStringGetTextDatum(connmgr_from_shared_text(e->reason));
		nulls[10] = e->kind != EVENT_DISCONNECT;
		values[10] = DirectFunctionCall2(timestamp_mi,
										 TimestampTzGetDatum(e->time),
										 TimestampTzGetDatum(e->started));
		tuplestore_putvalues(store, tupdesc, values, nulls);
	}
	return (Datum) 0;
}

Datum
connmgr_reset_stats(PG_FUNCTION_ARGS)
{
	connmgr_require_preload();
	connmgr_stats_reset();
	PG_RETURN_VOID();
}
