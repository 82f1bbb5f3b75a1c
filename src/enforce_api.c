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
 * any total.  The excess is taken only from connections the limit applies
 * to: those of administrators and fellows count toward a group's total, as
 * at login, but the group's limits do not apply to them (permissions.c),
 * so they are never ended for it.  The kills go through terminate.c's one
 * path: the permission rules of the kill functions per target, logging,
 * and the victim told which limit it was over.  Connections the caller may
 * not see get no row; those it sees but may not end get 'Permission
 * denied'.  When a limit is still exceeded afterwards, a NOTICE says by how
 * many connections and why, to a caller who may see that role's count in
 * role_activity.
 */
#include "postgres.h"

#include "lib/stringinfo.h"
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
	bool		exempt;			/* group policies do not apply to its user */
	Oid			over;			/* the limit's role it is ended for, or 0 */
	bool		ended;			/* ended (in a dry run: would be) */
} Candidate;

/* A limit to bring connections under: a user's per_member, or a total. */
typedef struct Limit
{
	Oid			role;			/* the user, or the role with the total */
	bool		per_member;
	int			limit;
} Limit;

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

/* Does c count toward the limit (as the counters count it)? */
static bool
counts_toward(const Candidate *c, const Limit *limit)
{
	return limit->per_member ? c->counted.user == limit->role :
		charged_for(&c->counted, limit->role);
}

/*
 * Does the limit apply to c, so that c may be ended for it?  A user's
 * per_member always does; a total applies to the connections of its own
 * role and to those of members that group policies apply to.
 */
static bool
limit_applies(const Candidate *c, const Limit *limit)
{
	return limit->per_member || c->counted.user == limit->role || !c->exempt;
}

/* Are group policies off for the user of c[i]?  Asked once per user. */
static bool
exempt_from_groups(const Candidate *c, int i)
{
	for (int j = 0; j < i; j++)
		if (c[j].counted.user == c[i].counted.user)
			return c[j].exempt;
	return !connmgr_group_policies_apply(c[i].counted.user);
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
	/* catalog reads: after the backend entries are no longer needed */
	for (int i = 0; i < *n; i++)
		result[i].exempt = exempt_from_groups(result, i);
	qsort(result, *n, sizeof(Candidate), compare_candidates);
	return result;
}

/*
 * Mark as ended for the limit the connections beyond it, among those not
 * chosen yet that count toward it, taking them from the front of the order
 * and only from those it applies to.
 */
static void
choose_excess(Candidate *c, int n, const Limit *limit, bool include_active)
{
	int			count = 0;

	for (int i = 0; i < n; i++)
		if (c[i].over == InvalidOid && counts_toward(&c[i], limit))
			count++;
	for (int i = 0; i < n && count > limit->limit; i++)
	{
		if (c[i].over != InvalidOid || !counts_toward(&c[i], limit) ||
			!limit_applies(&c[i], limit))
			continue;
		if (c[i].rank == 2 && !include_active)
			break;				/* only running connections are left */
		c[i].over = limit->role;
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

static Limit *
new_limit(Oid role, bool per_member, int value)
{
	Limit	   *limit = palloc(sizeof(Limit));

	limit->role = role;
	limit->per_member = per_member;
	limit->limit = value;
	return limit;
}

/*
 * May the caller learn how many connections count toward the limit?  As
 * role_activity shows that role's row: to whoever may see its connections
 * and, for a total, whoever may see its policy.
 */
static bool
may_see_count(const Limit *limit)
{
	return connmgr_may_see(GetUserId(), limit->role) ||
		(!limit->per_member && connmgr_may_see_policy(GetUserId(), limit->role));
}

/* Append a sentence to a DETAIL being built. */
static void
add_sentence(StringInfo detail, const char *sentence)
{
	if (detail->len > 0)
		appendStringInfoChar(detail, ' ');
	appendStringInfoString(detail, sentence);
}

/*
 * If the connections left after the kills still exceed the limit, tell
 * the caller how many remain over it and why they were not ended.
 */
static void
report_remaining(const Candidate *c, int n, const Limit *limit,
				 bool dry_run, bool include_active)
{
	int			left = 0;
	int			exempt = 0;
	int			running = 0;
	int			not_ended = 0;
	int			over;
	const char *role;
	StringInfoData detail;

	for (int i = 0; i < n; i++)
	{
		if (c[i].ended || !counts_toward(&c[i], limit))
			continue;
		left++;
		if (!limit_applies(&c[i], limit))
			exempt++;
		else if (c[i].over != InvalidOid)
			not_ended++;		/* chosen, but the caller may not end it */
		else if (c[i].rank == 2 && !include_active)
			running++;
	}
	over = left - limit->limit;
	if (over <= 0 || !may_see_count(limit))
		return;

	role = GetUserNameFromId(limit->role, true);
	role = role ? role : "?";
	initStringInfo(&detail);
	if (limit->per_member)
		add_sentence(&detail, psprintf(ngettext("Role \"%s\" has %d connection left; its limit is %d.",
												"Role \"%s\" has %d connections left; its limit is %d.",
												left),
									   role, left, limit->limit));
	else
		add_sentence(&detail, psprintf(ngettext("Role \"%s\" and its members have %d connection left; the limit is %d.",
												"Role \"%s\" and its members have %d connections left; the limit is %d.",
												left),
									   role, left, limit->limit));
	if (exempt > 0)
		add_sentence(&detail, psprintf(ngettext("%d is a connection of an administrator or fellow, which counts toward the total but to which the limit does not apply.",
												"%d are connections of administrators or fellows, which count toward the total but to which the limit does not apply.",
												exempt),
									   exempt));
	if (running > 0)
		add_sentence(&detail, psprintf(ngettext("%d is running a query; include_active => true ends such connections too.",
												"%d are running a query; include_active => true ends such connections too.",
												running),
									   running));
	if (not_ended > 0)
		add_sentence(&detail, psprintf(ngettext("%d is a connection you may not end.",
												"%d are connections you may not end.",
												not_ended),
									   not_ended));
	if (dry_run)
		ereport(NOTICE,
				(errcode(ERRCODE_TOO_MANY_CONNECTIONS),
				 errmsg_plural("%d connection would remain over the connection limit of role \"%s\"",
							   "%d connections would remain over the connection limit of role \"%s\"",
							   over, over, role),
				 errdetail_internal("%s", detail.data)));
	else
		ereport(NOTICE,
				(errcode(ERRCODE_TOO_MANY_CONNECTIONS),
				 errmsg_plural("%d connection remains over the connection limit of role \"%s\"",
							   "%d connections remain over the connection limit of role \"%s\"",
							   over, over, role),
				 errdetail_internal("%s", detail.data)));
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
	List	   *limits = NIL;
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
			limits = lappend(limits, new_limit(user, true, limit));
	}

	/* Each group over its total. */
	foreach(lc, connmgr_all_policies())
	{
		ConnmgrRolePolicy *policy = lfirst(lc);

		if (policy->problem == NULL && policy->policy.total >= 0 &&
			policy->policy.on_limit != ON_LIMIT_LOG &&
			(!OidIsValid(target) || policy->roleid == target))
			limits = lappend(limits, new_limit(policy->roleid, false,
											   policy->policy.total));
	}
	foreach(lc, limits)
		choose_excess(c, n, lfirst(lc), include_active);

	/* End them, one batch per limit, each with its reason. */
	for (int i = 0; i < n; i++)
	{
		Oid			over = c[i].over;
		const char *role = GetUserNameFromId(over, true);
		ConnmgrKill *kills = palloc0(sizeof(ConnmgrKill) * n);
		int		   *chosen = palloc(sizeof(int) * n);
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
			chosen[nkills++] = j;
		}
		connmgr_kill(kills, nkills,
					 psprintf(_("over the connection limit of role \"%s\""), role ? role : "?"),
					 dry_run);
		for (int k = 0; k < nkills; k++)
		{
			c[chosen[k]].ended = kills[k].outcome == KILL_TERMINATED ||
				kills[k].outcome == KILL_ALREADY_GONE ||
				kills[k].outcome == KILL_TIMED_OUT ||
				kills[k].outcome == KILL_WOULD_TERMINATE;
			if (kills[k].outcome != KILL_NOT_FOUND) /* the caller may not see it */
				put_row(store, tupdesc, &kills[k], role);
		}
	}

	foreach(lc, limits)
		report_remaining(c, n, lfirst(lc), dry_run, include_active);
	return (Datum) 0;
}
