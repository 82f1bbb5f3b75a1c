/*
 * enforce_api.c
 *		connmgr.enforce_limits(): bring the connections that exceed the
 *		current limits back under them now, for instance after a limit was
 *		lowered.
 *
 * For each login role over its per_member limit (as logins resolve it) and
 * each group over its total, the excess connections are ended: those idle
 * longest first, then those idle in a transaction, and connections running
 * a query only when include_active says so.  A connection counts toward a
 * group's total as the counters do (the groups it was charged for when it
 * logged in); one ended for its role's per_member no longer counts toward
 * any total.  The kills go through terminate.c's one path: the permission
 * rules of the kill functions per target, logging, and the victim told
 * which limit it was over.  Connections the caller may not see get no
 * row; those it sees but may not end get 'Permission denied'.
 */
#include "postgres.h"

#include "utils/acl.h"
#include "utils/builtins.h"

#include "connmgr.h"

PG_FUNCTION_INFO_V1(connmgr_enforce_limits_now);

/* A counted connection, as a candidate to end. */
typedef struct Candidate
{
	ConnmgrCounted counted;
	int			rank;			/* 0 idle, 1 idle in transaction, 2 other */
	TimestampTz since;			/* in that state since */
	Oid			over;			/* the limit's role it is ended for, or 0 */
} Candidate;

static int
state_rank(BackendState state)
{
	if (state == STATE_IDLE)
		return 0;
	if (state == STATE_IDLEINTRANSACTION || state == STATE_IDLEINTRANSACTION_ABORTED)
		return 1;
	return 2;
}

/* Longest idle first, then idle in transaction, then the others. */
static int
compare_candidates(const void *a, const void *b)
{
	const Candidate *x = a;
	const Candidate *y = b;

	if (x->rank != y->rank)
		return x->rank - y->rank;
	if (x->since != y->since)
		return x->since < y->since ? -1 : 1;
	return x->counted.pid - y->counted.pid;
}

static bool
charged_for(const ConnmgrCounted *c, Oid role)
{
	for (int i = 0; i < c->nroles; i++)
		if (c->roles[i] == role)
			return true;
	return false;
}

/* The counted connections, with their states, in the order to end them. */
static Candidate *
candidates(int *n)
{
	ConnmgrCounted *counted = palloc(sizeof(ConnmgrCounted) * MaxBackends);
	Candidate  *result = palloc0(sizeof(Candidate) * Max(MaxBackends, 1));
	int			ncounted = connmgr_counted_connections(counted);

	*n = 0;
	connmgr_refresh_backends();
	for (int i = 0; i < ncounted; i++)
	{
		PgBackendStatus *be = connmgr_find_backend(counted[i].pid);

		if (be == NULL || be->st_proc_start_timestamp != counted[i].started)
			continue;
		result[*n].counted = counted[i];
		result[*n].rank = state_rank(be->st_state);
		result[*n].since = be->st_state_start_timestamp;
		(*n)++;
	}
	qsort(result, *n, sizeof(Candidate), compare_candidates);
	return result;
}

/*
 * Mark as ended for 'over' the connections beyond limit among those not
 * chosen yet that are user's (or, with user invalid, charged for group),
 * taking them from the front of the order.
 */
static void
choose_excess(Candidate *c, int n, Oid user, Oid group, int limit, Oid over,
			  bool include_active)
{
	int			count = 0;

	for (int i = 0; i < n; i++)
		if (c[i].over == InvalidOid &&
			(OidIsValid(user) ? c[i].counted.user == user : charged_for(&c[i].counted, group)))
			count++;
	for (int i = 0; i < n && count > limit; i++)
	{
		if (c[i].over != InvalidOid ||
			!(OidIsValid(user) ? c[i].counted.user == user : charged_for(&c[i].counted, group)))
			continue;
		if (c[i].rank == 2 && !include_active)
			break;				/* only running connections are left */
		c[i].over = over;
		count--;
	}
}

/* Does a limit on role concern the target of the call (all if invalid)? */
static bool
concerns(Oid target, Oid role, const Candidate *c, int n)
{
	if (!OidIsValid(target) || role == target)
		return true;
	for (int i = 0; i < n; i++)
		if (c[i].counted.user == role && charged_for(&c[i].counted, target))
			return true;
	return false;
}

/* One result row: the connection, its role, the limit's role, the outcome. */
static void
put_row(Tuplestorestate *store, TupleDesc tupdesc, const ConnmgrKill *kill,
		const char *limit_role)
{
	Datum		values[4];
	bool		nulls[4] = {false};
	const char *user = GetUserNameFromId(kill->target.userid, true);

	nulls[0] = kill->connection_id == NULL;
	if (!nulls[0])
		values[0] = CStringGetTextDatum(kill->connection_id);
	nulls[1] = user == NULL || kill->connection_id == NULL;
	if (!nulls[1])
		values[1] = DirectFunctionCall1(namein, CStringGetDatum(user));
	nulls[2] = limit_role == NULL;
	if (limit_role)
		values[2] = DirectFunctionCall1(namein, CStringGetDatum(limit_role));
	values[3] = CStringGetTextDatum(connmgr_kill_message(kill));
	tuplestore_putvalues(store, tupdesc, values, nulls);
}

Datum
connmgr_enforce_limits_now(PG_FUNCTION_ARGS)
{
	TupleDesc	tupdesc;
	Tuplestorestate *store;
	Oid			target = InvalidOid;
	const char *name;
	bool		dry_run;
	bool		include_active;
	Candidate  *c;
	int			n;
	List	   *users = NIL;
	List	   *done = NIL;
	ListCell   *lc;

	connmgr_require_preload();
	if (!PG_ARGISNULL(0))
		target = connmgr_role_arg(fcinfo, 0, &name);
	if (PG_ARGISNULL(1) || PG_ARGISNULL(2))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("dry_run and include_active must not be null")));
	dry_run = PG_GETARG_BOOL(1);
	include_active = PG_GETARG_BOOL(2);
	store = connmgr_begin_result_set(fcinfo, &tupdesc);
	c = candidates(&n);

	/* Each login role over its per_member limit. */
	for (int i = 0; i < n; i++)
		users = list_append_unique_oid(users, c[i].counted.user);
	foreach(lc, users)
	{
		Oid			user = lfirst_oid(lc);
		int			limit;

		if (!concerns(target, user, c, n))
			continue;
		limit = connmgr_enforced_per_member(user);
		if (limit >= 0)
			choose_excess(c, n, user, InvalidOid, limit, user, include_active);
	}

	/* Each group over its total. */
	foreach(lc, connmgr_all_policies())
	{
		ConnmgrRolePolicy *policy = lfirst(lc);

		if (policy->problem == NULL && policy->policy.total >= 0 &&
			policy->policy.on_limit != ON_LIMIT_LOG &&
			(!OidIsValid(target) || policy->roleid == target))
			choose_excess(c, n, InvalidOid, policy->roleid, policy->policy.total,
						  policy->roleid, include_active);
	}

	/* End them, one batch per limit, each with its reason. */
	for (int i = 0; i < n; i++)
	{
		Oid			over = c[i].over;
		const char *role = GetUserNameFromId(over, true);
		ConnmgrKill *kills = palloc0(sizeof(ConnmgrKill) * n);
		int			nkills = 0;

		if (!OidIsValid(over) || list_member_oid(done, over))
			continue;
		done = lappend_oid(done, over);
		for (int j = i; j < n; j++)
		{
			if (c[j].over != over)
				continue;
			kills[nkills].pid = c[j].counted.pid;
			kills[nkills].started = c[j].counted.started;
			nkills++;
		}
		connmgr_kill(kills, nkills,
					 psprintf(_("over the connection limit of role \"%s\""), role ? role : "?"),
					 dry_run);
		for (int k = 0; k < nkills; k++)
			if (kills[k].outcome != KILL_NOT_FOUND)	/* the caller may not see it */
				put_row(store, tupdesc, &kills[k], role);
	}
	return (Datum) 0;
}
