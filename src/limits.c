/*
 * limits.c
 *		Deciding at login whether a role may connect under the policies of
 *		the role and of its groups, and acting on the answer: admit, refuse,
 *		evict idle connections of the user, or admit and warn.
 *
 * The authentication hook calls connmgr_enforce_limits() for every
 * successful login of a non-superuser, except physical replication.  The
 * role's groups and their policies come from the login cache (cache.c) or,
 * failing that, from the catalogs, without any lock of ours; then shmem.c
 * checks every limit and counts the connection under one lock.
 *
 * Precedence: among the policies that enforce (reject, evict_idle), a
 * per_member limit on the login role itself replaces the inherited ones;
 * otherwise the smallest per_member among its groups applies.  Every total
 * of the role and of its groups applies.  A log-only policy never weakens
 * an enforced limit: each of its limits is a dry-run check of its own that
 * only logs.  Group policies do not apply to administrators and fellows of
 * the group's instructors (permissions.c).
 *
 * Groups are followed through grants that pass on privileges, but not
 * through grants WITH ADMIN OPTION: an instructor administers the student
 * group, and is neither limited by it nor counted in its total.
 *
 * When several limits are reached, reject wins over wait, and wait over
 * evict_idle.  A login that waits queues for a slot of the limit (shmem.c
 * keeps the queue first come first served) and claims again whenever a
 * counted connection ends.
 *
 * Eviction ends only connections whose exit frees every limit that blocks
 * the login (shmem.c knows what each connection was charged for), reserves
 * each victim for one login, logs each victim once, and gives a victim
 * that is slow to exit a quarter of connmgr.terminate_timeout before the
 * next one is tried too.
 *
 * Fail safe: a damaged policy is skipped with a WARNING (the others still
 * apply); if anything else fails, the login is admitted, counted for the
 * user alone, and the problem logged.  WARNINGs go to the server log only:
 * during authentication PostgreSQL sends the client nothing below ERROR.
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/xact.h"
#include "catalog/indexing.h"
#include "catalog/pg_database.h"
#include "libpq/libpq-be.h"
#include "pgstat.h"
#include "postmaster/postmaster.h"
#include "storage/latch.h"
#include "utils/acl.h"
#include "utils/fmgroids.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/relcache.h"
#include "utils/resowner.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"

#include "connmgr.h"
#include "compat.h"

typedef struct LoginLimits
{
	Oid			user;
	int			idle_ms;		/* the idle timeout that applies, or -1 */
	Oid			idle_source;
	int			in_xact_ms;		/* idle in a transaction, or -1 */
	Oid			in_xact_source;
	Oid		   *roles;			/* user first, then its inherited groups */
	int			nroles;
	ConnmgrCheck *checks;
	int			nchecks;
} LoginLimits;

static char *
role_name(Oid roleid)
{
	char	   *name = GetUserNameFromId(roleid, true);

	return name ? name : "?";
}

/* A check of the counter of limits->roles[role_index]. */
static void
add_check(LoginLimits *limits, int role_index, bool own, int limit,
		  Oid source, const ConnmgrPolicy *policy)
{
	ConnmgrCheck *check = &limits->checks[limits->nchecks++];

	check->roleid = limits->roles[role_index];
	check->role_index = role_index;
	check->own = own;
	check->limit = limit;
	check->source = source;
	check->action = policy->on_limit;
	check->blocking = policy->on_limit != ON_LIMIT_LOG;
	check->wait_timeout_ms = policy->wait_timeout_ms;
	check->max_waiting = policy->max_waiting;
}

/* The policy of role, or false (with a WARNING if it is damaged). */
static bool
usable_policy(Oid role, ConnmgrPolicy *policy)
{
	const char *problem;

	switch (connmgr_lookup_policy(role, policy, &problem))
	{
		case POLICY_VALID:
			return true;
		case POLICY_INVALID:
			ereport(WARNING,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("ignoring the damaged connection limit policy of role \"%s\"",
							role_name(role)),
					 errdetail("%s", problem),
					 errhint("Replace it with connmgr.set_connection_limit() or remove it with SECURITY LABEL FOR connmgr ON ROLE ... IS NULL.")));
			return false;
		case POLICY_NONE:
			break;
	}
	return false;
}

/* The shortest idle timeouts of the policies that apply win. */
static void
note_idle_timeouts(LoginLimits *limits, Oid role, const ConnmgrPolicy *policy)
{
	if (policy->idle_timeout_ms > 0 &&
		(limits->idle_ms < 0 || policy->idle_timeout_ms < limits->idle_ms))
	{
		limits->idle_ms = policy->idle_timeout_ms;
		limits->idle_source = role;
	}
	if (policy->idle_in_xact_timeout_ms > 0 &&
		(limits->in_xact_ms < 0 || policy->idle_in_xact_timeout_ms < limits->in_xact_ms))
	{
		limits->in_xact_ms = policy->idle_in_xact_timeout_ms;
		limits->in_xact_source = role;
	}
}

/* Fill limits from the catalogs: the user's groups and their policies. */
static void
gather_limits(LoginLimits *limits)
{
	List	   *groups = connmgr_roles_containing(limits->user,
												  ROLES_INHERITED | ROLES_ENROLLED);
	int			n = list_length(groups) + 1;
	ConnmgrPolicy policy;
	int			group_policies = -1;	/* do they apply?  -1: not asked yet */
	ConnmgrPolicy per_member = {.per_member = -1};	/* the enforced one */
	Oid			per_member_source = InvalidOid;

	limits->roles = palloc(sizeof(Oid) * n);
	limits->checks = palloc0(sizeof(ConnmgrCheck) * (2 * n + 1));
	limits->idle_ms = limits->in_xact_ms = -1;
	limits->roles[0] = limits->user;
	for (int i = 1; i < n; i++)
		limits->roles[i] = list_nth_oid(groups, i - 1);
	limits->nroles = n;

	if (!connmgr_enabled)
		return;					/* count only: no policy applies */

	for (int i = 0; i < n; i++)
	{
		Oid			role = limits->roles[i];

		if (!usable_policy(role, &policy))
			continue;
		if (i > 0 && group_policies < 0)
			group_policies = connmgr_group_policies_apply(limits->user);
		if (i > 0 && !group_policies)
			continue;
		note_idle_timeouts(limits, role, &policy);
		if (policy.total >= 0)
			add_check(limits, i, false, policy.total, role, &policy);
		if (policy.per_member < 0)
			continue;
		if (policy.on_limit == ON_LIMIT_LOG)
			add_check(limits, 0, true, policy.per_member, role, &policy);
		/* The role's own per_member wins; else the smallest inherited one. */
		else if (i == 0 || (per_member_source != limits->user &&
							(per_member.per_member < 0 ||
							 policy.per_member < per_member.per_member)))
		{
			per_member = policy;
			per_member_source = role;
		}
	}
	if (per_member.per_member >= 0)
		add_check(limits, 0, true, per_member.per_member,
				  per_member_source, &per_member);
}

/*
 * The DETAIL of a reached limit: its facts, and for an evict_idle login
 * that found no connection to evict, that fact too.
 */
static int
errdetail_limit(const LoginLimits *limits, const ConnmgrCheck *check,
				bool none_evictable)
{
	int			n = check->current;
	const char *user = role_name(limits->user);

	if (!check->own && none_evictable)
		return errdetail_plural("Role \"%s\" and its members have %d connection; the limit is %d. No connection of role \"%s\" that counts toward it has been idle for %d ms or more, so none was evicted.",
								"Role \"%s\" and its members have %d connections; the limit is %d. No connection of role \"%s\" that counts toward it has been idle for %d ms or more, so none was evicted.",
								n, role_name(check->roleid), n, check->limit,
								user, connmgr_evict_min_idle_ms);
	if (!check->own)
		return errdetail_plural("Role \"%s\" and its members have %d connection; the limit is %d.",
								"Role \"%s\" and its members have %d connections; the limit is %d.",
								n, role_name(check->roleid), n, check->limit);
	if (check->source == limits->user && none_evictable)
		return errdetail_plural("Role \"%s\" has %d connection; its limit is %d. None of them has been idle for %d ms or more, so none was evicted.",
								"Role \"%s\" has %d connections; its limit is %d. None of them has been idle for %d ms or more, so none was evicted.",
								n, user, n, check->limit, connmgr_evict_min_idle_ms);
	if (check->source == limits->user)
		return errdetail_plural("Role \"%s\" has %d connection; its limit is %d.",
								"Role \"%s\" has %d connections; its limit is %d.",
								n, user, n, check->limit);
	if (none_evictable)
		return errdetail_plural("Role \"%s\" has %d connection; the limit for members of \"%s\" is %d. None of them has been idle for %d ms or more, so none was evicted.",
								"Role \"%s\" has %d connections; the limit for members of \"%s\" is %d. None of them has been idle for %d ms or more, so none was evicted.",
								n, user, n, role_name(check->source), check->limit,
								connmgr_evict_min_idle_ms);
	return errdetail_plural("Role \"%s\" has %d connection; the limit for members of \"%s\" is %d.",
							"Role \"%s\" has %d connections; the limit for members of \"%s\" is %d.",
							n, user, n, role_name(check->source), check->limit);
}

/*
 * The HINT of a refusal: what this user can do about it.  Closing
 * connections helps only if some of the user's count toward the limit.
 */
static int
errhint_refusal(const LoginLimits *limits, const ConnmgrCheck *check)
{
	if (check->limit == 0)
		return errhint("This limit allows no connections at all. Ask your instructor or database administrator if you need to connect.");
	if (check->own || connmgr_holds_connection_in(limits->user, check->roleid))
		return errhint("Close connections you no longer use, or ask your instructor or database administrator to end them.");
	return errhint("Other members of role \"%s\" are using all of its connections. Try again later, or ask your instructor or database administrator to raise the limit.",
				   role_name(check->roleid));
}

static const ConnmgrCheck *
first_reached(const LoginLimits *limits, bool blocking)
{
	for (int i = 0; i < limits->nchecks; i++)
		if (limits->checks[i].reached && limits->checks[i].blocking == blocking)
			return &limits->checks[i];
	return NULL;
}

static void
reject(const LoginLimits *limits, bool none_evictable)
{
	const ConnmgrCheck *check = first_reached(limits, true);

	ereport(FATAL,
			(errcode(ERRCODE_TOO_MANY_CONNECTIONS),
			 errmsg("too many connections for role \"%s\"", role_name(limits->user)),
			 errdetail_limit(limits, check, none_evictable),
			 errhint_refusal(limits, check)));
}

/* Log-only policies whose limit was reached: admitted, with a WARNING. */
static void
warn_log_only(const LoginLimits *limits)
{
	for (int i = 0; i < limits->nchecks; i++)
	{
		const ConnmgrCheck *check = &limits->checks[i];

		if (!check->reached || check->blocking)
			continue;
		ereport(WARNING,
				(errcode(ERRCODE_TOO_MANY_CONNECTIONS),
				 errmsg("login of role \"%s\" admitted over the connection limit of role \"%s\", which only logs",
						role_name(limits->user), role_name(check->source)),
				 errdetail_limit(limits, check, false)));
	}
}

/*
 * The reached limit whose policy says wait, when none says reject: the
 * login's own per_member limit before any total, since only its own
 * connections' release can admit a login at its own limit, and it must
 * not hold a place in the queue of a total that a freed slot of that
 * total cannot give it.
 */
static const ConnmgrCheck *
wait_check(const LoginLimits *limits)
{
	const ConnmgrCheck *result = NULL;

	for (int i = 0; i < limits->nchecks; i++)
	{
		const ConnmgrCheck *check = &limits->checks[i];

		if (!check->reached || !check->blocking)
			continue;
		if (check->action == ON_LIMIT_REJECT)
			return NULL;
		if (check->action == ON_LIMIT_WAIT &&
			(result == NULL || (check->own && !result->own)))
			result = check;
	}
	return result;
}

/* Does any reached blocking limit say reject rather than evict_idle? */
static bool
must_reject(const LoginLimits *limits)
{
	for (int i = 0; i < limits->nchecks; i++)
		if (limits->checks[i].reached && limits->checks[i].blocking &&
			limits->checks[i].action == ON_LIMIT_REJECT)
			return true;
	return false;
}

static ConnmgrClaimResult
claim(LoginLimits *limits)
{
	return connmgr_claim(limits->user, limits->roles, limits->nroles,
						 limits->checks, limits->nchecks);
}

/*
 * The database of that name (InvalidOid if none) and whether it allows
 * connections.  pg_database is shared, so it can be read during
 * authentication.
 */
static Oid
database_named(const char *database, bool *allows_connections)
{
	Oid			result = InvalidOid;
	HeapTuple	tuple;
	Relation	rel;
	ScanKeyData key;
	SysScanDesc scan;

	*allows_connections = false;
	if (database == NULL)
		return InvalidOid;
	ScanKeyInit(&key, Anum_pg_database_datname, BTEqualStrategyNumber,
				F_NAMEEQ, CStringGetDatum(database));
	rel = table_open(DatabaseRelationId, AccessShareLock);
	scan = systable_beginscan(rel, DatabaseNameIndexId,
							  criticalSharedRelcachesBuilt, NULL, 1, &key);
	tuple = systable_getnext(scan);
	if (HeapTupleIsValid(tuple))
	{
		result = ((Form_pg_database) GETSTRUCT(tuple))->oid;
		*allows_connections = ((Form_pg_database) GETSTRUCT(tuple))->datallowconn;
	}
	systable_endscan(scan);
	table_close(rel, AccessShareLock);
	return result;
}

/*
 * Will PostgreSQL let this login through once we admit it?  Evicting
 * someone's session for a login that then fails for an unknown database,
 * a database that allows no connections or a NOLOGIN role would be for
 * nothing.  Reads only shared catalogs, as is possible during
 * authentication.
 */
static bool
login_can_proceed(Oid user, const char *database)
{
	HeapTuple	tuple;
	bool		can_login = false;
	bool		db_ok;

	tuple = SearchSysCache1(AUTHOID, ObjectIdGetDatum(user));
	if (HeapTupleIsValid(tuple))
	{
		can_login = ((Form_pg_authid) GETSTRUCT(tuple))->rolcanlogin;
		ReleaseSysCache(tuple);
	}
	if (!can_login)
		return false;
	(void) database_named(database, &db_ok);
	return db_ok;
}

/* Is be a plain idle client connection of user, idle since before cutoff? */
static bool
evictable(const PgBackendStatus *be, Oid user, TimestampTz cutoff)
{
	return be != NULL && be->st_userid == user &&
		be->st_backendType == B_BACKEND && be->st_state == STATE_IDLE &&
		be->st_state_start_timestamp <= cutoff;
}

/*
 * The user's connection that has been idle longest (at least
 * connmgr.evict_min_idle), not busy in a query nor idle in a transaction,
 * and not in tried.
 */
static bool
longest_idle(Oid user, List *tried, ConnmgrTarget *victim)
{
	TimestampTz cutoff = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
													 -connmgr_evict_min_idle_ms);
	PgBackendStatus *best = NULL;
	int			n;

	connmgr_refresh_backends();
	n = connmgr_backend_count();
	for (int i = 1; i <= n; i++)
	{
		PgBackendStatus *be = connmgr_backend_at(i);

		if (!evictable(be, user, cutoff) || list_member_int(tried, be->st_procpid))
			continue;
		if (best == NULL ||
			be->st_state_start_timestamp < best->st_state_start_timestamp)
			best = be;
	}
	if (best == NULL)
		return false;
	*victim = connmgr_target_of(best);
	return true;
}

/*
 * Choose the next victim, reserve it, check once more that it is still the
 * same idle connection, then end it (log, note, signal).  Returns its pid,
 * or 0 if no connection is left whose exit would free the blocking limits.
 * Interrupts are held from reserving to signalling, so that a victim is
 * never left reserved but unsignalled by a login that died in between; an
 * error there is caught by connmgr_enforce_limits(), which spares it.
 */
static int
evict_next(const LoginLimits *limits, List **tried)
{
	ConnmgrTarget victim;

	while (longest_idle(limits->user, *tried, &victim))
	{
		TimestampTz cutoff = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
														 -connmgr_evict_min_idle_ms);
		PgBackendStatus *be;

		*tried = lappend_int(*tried, victim.pid);
		HOLD_INTERRUPTS();
		if (!connmgr_reserve_victim(victim.pid, limits->checks, limits->nchecks))
		{
			RESUME_INTERRUPTS();
			continue;
		}
		connmgr_refresh_backends();
		be = connmgr_find_backend(victim.pid);
		if (!connmgr_same_backend(be, &victim) ||
			!evictable(be, limits->user, cutoff))
		{
			connmgr_spare_victim(victim.pid);
			RESUME_INTERRUPTS();
			continue;
		}
		(void) connmgr_end_connection(be, ENDING_EVICTION, NULL);
		RESUME_INTERRUPTS();
		return victim.pid;		/* waited for even if it had just exited */
	}
	return 0;
}

/* Forget the victims that have exited; true if any had. */
static bool
forget_exited(List **victims)
{
	int			before = list_length(*victims);
	List	   *alive = NIL;
	ListCell   *lc;

	foreach(lc, *victims)
	{
		if (!connmgr_has_exited(lfirst_int(lc)))
			alive = lappend_int(alive, lfirst_int(lc));
	}
	*victims = alive;
	return list_length(alive) < before;
}

/*
 * Evict idle connections of the user until the login can be counted, no
 * candidate is left, a limit whose policy says reject is reached, or
 * connmgr.terminate_timeout has passed.  Each victim is waited for at most
 * a quarter of the timeout before the next is signalled as well; whichever
 * exits first lets the login in, and so does a slot another connection
 * frees meanwhile (the claim is retried every 100 ms).  A concurrent login may take the slot an
 * eviction freed: then the next candidate is tried.  *evicted tells
 * whether any connection was signalled.
 */
static ConnmgrClaimResult
evict_until_admitted(LoginLimits *limits, bool *evicted)
{
	TimestampTz start = GetCurrentTimestamp();
	TimestampTz deadline = TimestampTzPlusMilliseconds(start, connmgr_terminate_timeout_ms);
	int			share_ms = Max(connmgr_terminate_timeout_ms / 4, 1);
	TimestampTz next_victim_at = start;
	TimestampTz next_claim_at = TimestampTzPlusMilliseconds(start, 100);
	ConnmgrClaimResult result = CLAIM_BLOCKED;
	List	   *tried = NIL;
	List	   *victims = NIL;

	*evicted = false;
	while (GetCurrentTimestamp() < deadline)
	{
		if (GetCurrentTimestamp() >= next_victim_at)
		{
			int			pid = evict_next(limits, &tried);

			if (pid != 0)
			{
				victims = lappend_int(victims, pid);
				*evicted = true;
			}
			else if (victims == NIL)
				break;			/* nobody to evict, nobody to wait for */
			next_victim_at = pid != 0 ?
				TimestampTzPlusMilliseconds(GetCurrentTimestamp(), share_ms) : deadline;
		}
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 10L, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
		if (!forget_exited(&victims) && GetCurrentTimestamp() < next_claim_at)
			continue;
		next_claim_at = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), 100);
		result = claim(limits);
		if (result != CLAIM_BLOCKED || must_reject(limits))
			break;				/* admitted, or a reject policy now decides */
		next_victim_at = GetCurrentTimestamp();	/* the slot went elsewhere */
	}
	return result;
}

/* Is a reached blocking limit 0, so that no slot can ever free up? */
static bool
limit_is_zero(const LoginLimits *limits)
{
	for (int i = 0; i < limits->nchecks; i++)
		if (limits->checks[i].reached && limits->checks[i].blocking &&
			limits->checks[i].limit == 0)
			return true;
	return false;
}

/*
 * How long a login may wait for a slot at most: it must give up well
 * before authentication_timeout ends it.
 */
static int
longest_wait_ms(void)
{
	return Max(AuthenticationTimeout * 1000 - 1000, 1);
}

/*
 * May a login wait for a slot now?  Not when the server's free backend
 * slots are down to those PostgreSQL reserves plus connmgr.wait_reserve:
 * a waiting login holds a backend, and logins that wait must never be what
 * keeps others out.
 */
static bool
room_to_wait(void)
{
	return connmgr_more_free_procs_than(CONNMGR_RESERVED_CONNECTIONS + connmgr_wait_reserve);
}

static void
refuse_no_room_to_wait(const LoginLimits *limits)
{
	const ConnmgrCheck *check = first_reached(limits, true);

	ereport(FATAL,
			(errcode(ERRCODE_TOO_MANY_CONNECTIONS),
			 errmsg("too many connections for role \"%s\"", role_name(limits->user)),
			 errdetail("The login did not wait for a connection slot of role \"%s\": the server's free connection slots are down to the %d that waiting logins leave for others.",
					   role_name(check->roleid),
					   CONNMGR_RESERVED_CONNECTIONS + connmgr_wait_reserve),
			 errhint("Try again later.")));
}

/* This login as the views show it while it waits for a slot of role. */
static ConnmgrWaitingLogin
waiting_login(const LoginLimits *limits, const char *database, Oid role)
{
	ConnmgrWaitingLogin who = {0};
	bool		allows_connections;

	who.pid = MyProcPid;
	who.started = MyStartTimestamp;
	who.user = limits->user;
	who.database = database_named(database, &allows_connections);
	who.role = role;
	who.since = GetCurrentTimestamp();
	if (MyProcPort != NULL)
	{
		who.client_addr = MyProcPort->raddr;
		if (MyProcPort->application_name != NULL)	/* ASCII already */
			strlcpy(who.application_name, MyProcPort->application_name,
					NAMEDATALEN);
	}
	return who;
}

/*
 * Is a connection that counts toward a reached blocking limit on its way
 * out (backends.c tells)?  counted has room for MaxBackends.
 */
static bool
blocker_leaving(const LoginLimits *limits, ConnmgrCounted *counted)
{
	int			n = connmgr_counted_connections(counted);

	connmgr_refresh_backends();
	for (int i = 0; i < n; i++)
	{
		bool		blocks = false;

		for (int c = 0; c < limits->nchecks && !blocks; c++)
		{
			const ConnmgrCheck *check = &limits->checks[c];

			if (!check->reached || !check->blocking)
				continue;
			for (int r = 0; r < counted[i].nroles && !blocks; r++)
				blocks = counted[i].roles[r] == check->roleid;
		}
		if (blocks && connmgr_backend_leaving(counted[i].pid, counted[i].started))
			return true;
	}
	return false;
}

/* How often a login in its grace looks again for connections leaving. */
#define GRACE_POLL_MS 10

/*
 * The grace: a client that closes a connection and opens the next at once
 * (a pool at its limit, pgbench -C) arrives while its old backend is still
 * on its way out.  Wait while a connection that counts toward the reached
 * limit is leaving (up to authentication_timeout), and for connmgr.
 * limit_grace in any case, for an old backend that has not yet read its
 * client's goodbye; claim again whenever a counted connection ends.  How
 * long the old backend takes to go does not matter, only that it goes.
 */
static ConnmgrClaimResult
claim_within_grace(LoginLimits *limits, const char *database)
{
	TimestampTz start = GetCurrentTimestamp();
	TimestampTz grace_end = TimestampTzPlusMilliseconds(start, connmgr_limit_grace_ms);
	TimestampTz deadline = TimestampTzPlusMilliseconds(start, longest_wait_ms());
	ConnmgrCounted *counted = palloc(sizeof(ConnmgrCounted) * MaxBackends);
	ConnmgrClaimResult result = CLAIM_BLOCKED;
	bool		shown = false;
	int			unused;

	while (result == CLAIM_BLOCKED && !limit_is_zero(limits))
	{
		TimestampTz now = GetCurrentTimestamp();

		if (now >= deadline || (now >= grace_end && !blocker_leaving(limits, counted)))
			break;
		if (!shown)
		{
			ConnmgrWaitingLogin who;

			if (!room_to_wait())
				break;
			who = waiting_login(limits, database, first_reached(limits, true)->roleid);
			(void) connmgr_start_waiting(&who, false, 0, 0, &unused);
			shown = true;
		}
		connmgr_wait_for_release(Min(GRACE_POLL_MS,
									 TimestampDifferenceMilliseconds(now, deadline)));
		result = claim(limits);
	}
	if (shown)
		connmgr_stop_waiting();
	pfree(counted);
	return result;
}

/* How often a waiting login looks again at the server's free slots. */
#define WAIT_POLL_MS 100

/*
 * on_limit wait: queue for a slot of the limit, first come first served,
 * and claim again whenever a counted connection ends, until admitted or
 * the policy's wait_timeout has passed.  The login waits in the queue of
 * the limit whose release can admit it (wait_check()), moving when that
 * changes, with its place in line.  A full queue, too many waiting logins
 * of the user, no room to wait, or the timeout refuses the login; when
 * other logins take the slots waiting logins leave free, the last login to
 * start waiting gives up.
 */
static ConnmgrClaimResult
wait_for_slot(LoginLimits *limits, const char *database, const ConnmgrCheck *check)
{
	int			timeout_ms = Min(check->wait_timeout_ms > 0 ?
								 check->wait_timeout_ms : connmgr_wait_timeout_ms,
								 longest_wait_ms());
	int			max_waiting = check->max_waiting > 0 ?
		check->max_waiting : connmgr_max_waiting;
	TimestampTz start = GetCurrentTimestamp();
	TimestampTz deadline = TimestampTzPlusMilliseconds(start, timeout_ms);
	ConnmgrClaimResult result = CLAIM_BLOCKED;
	ConnmgrWaitingLogin who;
	int			waiting;

	if (!room_to_wait())
		refuse_no_room_to_wait(limits);
	who = waiting_login(limits, database, check->roleid);
	switch (connmgr_start_waiting(&who, true, max_waiting,
								  connmgr_max_waiting_per_user, &waiting))
	{
		case WAIT_STARTED:
			break;
		case WAIT_QUEUE_FULL:
			ereport(FATAL,
					(errcode(ERRCODE_TOO_MANY_CONNECTIONS),
					 errmsg("too many logins waiting for a connection slot of role \"%s\"",
							role_name(check->roleid)),
					 errdetail_plural("%d login is already waiting; at most %d may wait.",
									  "%d logins are already waiting; at most %d may wait.",
									  waiting, waiting, max_waiting),
					 errhint("Try again later.")));
			break;
		case WAIT_USER_FULL:
			ereport(FATAL,
					(errcode(ERRCODE_TOO_MANY_CONNECTIONS),
					 errmsg("too many logins of role \"%s\" waiting for a connection slot",
							role_name(limits->user)),
					 errdetail_plural("%d login of role \"%s\" is already waiting; at most %d may wait (connmgr.max_waiting_per_user).",
									  "%d logins of role \"%s\" are already waiting; at most %d may wait (connmgr.max_waiting_per_user).",
									  waiting, waiting, role_name(limits->user),
									  connmgr_max_waiting_per_user),
					 errhint("Try again later.")));
			break;
	}
	while (result == CLAIM_BLOCKED)
	{
		long		remaining = TimestampDifferenceMilliseconds(GetCurrentTimestamp(),
																deadline);

		if (remaining <= 0)
			break;
		connmgr_wait_for_release(Min(remaining, WAIT_POLL_MS));
		if (!room_to_wait() && connmgr_last_in_line())
		{
			connmgr_stop_waiting();
			refuse_no_room_to_wait(limits);
		}
		result = claim(limits);
		if (result == CLAIM_BLOCKED)
		{
			check = wait_check(limits);
			if (check == NULL)
				break;			/* a reject policy decides now */
			connmgr_wait_in(check->roleid);
		}
	}
	connmgr_stop_waiting();
	if (result == CLAIM_BLOCKED && wait_check(limits) != NULL)
		ereport(FATAL,
				(errcode(ERRCODE_TOO_MANY_CONNECTIONS),
				 errmsg("too many connections for role \"%s\" after waiting %ld ms",
						role_name(limits->user),
						(long) TimestampDifferenceMilliseconds(start, GetCurrentTimestamp())),
				 errdetail_limit(limits, first_reached(limits, true), false),
				 errhint_refusal(limits, first_reached(limits, true))));
	return result;
}

/*
 * Act on a claim's result: wait out the grace, evict, refuse, or warn.
 * Errors are caught by connmgr_enforce_limits().
 */
static void
act_on_claim(LoginLimits *limits, const char *database, ConnmgrClaimResult result)
{
	bool		evicted = false;
	bool		tried_eviction = false;

	if (result == CLAIM_BLOCKED && wait_check(limits) != NULL)
		result = wait_for_slot(limits, database, wait_check(limits));
	if (result == CLAIM_BLOCKED && connmgr_limit_grace_ms > 0)
		result = claim_within_grace(limits, database);
	if (result == CLAIM_BLOCKED && !must_reject(limits) &&
		connmgr_terminate_timeout_ms > 0 &&
		login_can_proceed(limits->user, database))
	{
		tried_eviction = true;
		result = evict_until_admitted(limits, &evicted);
	}

	if (result == CLAIM_BLOCKED)
		reject(limits, tried_eviction && !evicted);
	if (result == CLAIM_NOT_COUNTED)
		ereport(WARNING,
				(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
				 errmsg("could not count a connection of role \"%s\"",
						role_name(limits->user)),
				 errdetail("The shared table of role counters is full; the login was admitted uncounted."),
				 errhint("Raise connmgr.max_tracked_roles.")));
	warn_log_only(limits);
}

/* Is there anything to do after a claim with this result? */
static bool
claim_needs_action(const LoginLimits *limits, ConnmgrClaimResult result)
{
	return result != CLAIM_ADMITTED || first_reached(limits, false) != NULL;
}

/*
 * The per_member limit enforced for user's logins (as gather_limits()
 * decides it, from the catalogs), or -1 for none.  For the views.
 */
int
connmgr_enforced_per_member(Oid user)
{
	LoginLimits limits = {.user = user};

	gather_limits(&limits);
	for (int i = 0; i < limits.nchecks; i++)
		if (limits.checks[i].own && limits.checks[i].blocking)
			return limits.checks[i].limit;
	return -1;
}

/*
 * The idle timeouts that apply to user's connections (the shortest of the
 * policies that apply, as for limits), -1 for none, and whose they are.
 * For the idle worker.
 */
void
connmgr_idle_timeouts(Oid user, int *idle_ms, Oid *idle_source,
					  int *in_xact_ms, Oid *in_xact_source)
{
	LoginLimits limits = {.user = user};

	gather_limits(&limits);
	*idle_ms = limits.idle_ms;
	*idle_source = limits.idle_source;
	*in_xact_ms = limits.in_xact_ms;
	*in_xact_source = limits.in_xact_source;
}

/*
 * Apply the connection limits to a login.  With the answer in the login
 * cache (cache.c), the claim reads no catalog; otherwise the user's groups
 * and policies are read from the catalogs and cached.  Everything beyond
 * an admitting claim runs in a subtransaction: if anything fails (the
 * catalogs cannot be read, say), the failure is logged and the login
 * admitted, counted for the user alone.  Refusals are FATAL and end the
 * backend.
 */
void
connmgr_enforce_limits(Oid user, const char *database)
{
	LoginLimits limits = {.user = user};
	uint64		generation = connmgr_cache_generation();
	bool		cached;
	ConnmgrClaimResult result = CLAIM_BLOCKED;
	MemoryContext oldcontext = CurrentMemoryContext;
	ResourceOwner oldowner = CurrentResourceOwner;

	cached = connmgr_cache_lookup(user, generation, connmgr_enabled,
								  &limits.roles, &limits.nroles,
								  &limits.checks, &limits.nchecks);
	if (cached)
	{
		result = claim(&limits);
		if (!claim_needs_action(&limits, result))
			return;
	}

	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(oldcontext);
	PG_TRY();
	{
		if (!cached)
		{
			gather_limits(&limits);
			connmgr_cache_store(user, generation, connmgr_enabled,
								limits.roles, limits.nroles,
								limits.checks, limits.nchecks);
			result = claim(&limits);
		}
		act_on_claim(&limits, database, result);
		ReleaseCurrentSubTransaction();
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(oldcontext);
		edata = CopyErrorData();
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();

		/* A no-op if the failure came after the connection was counted. */
		connmgr_spare_victims();
		(void) connmgr_claim(user, &user, 1, NULL, 0);
		ereport(WARNING,
				(errcode(edata->sqlerrcode),
				 errmsg("could not apply the connection limits of role \"%s\": %s",
						role_name(user), edata->message),
				 errdetail("The login was admitted without connection limits.")));
		FreeErrorData(edata);
	}
	PG_END_TRY();
	MemoryContextSwitchTo(oldcontext);
	CurrentResourceOwner = oldowner;
}
