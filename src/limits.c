/*
 * limits.c
 *		Deciding at login whether a role may connect under the policies of
 *		the role and of its groups, and acting on the answer: admit, refuse,
 *		evict the user's longest-idle connection, or admit and warn.
 *
 * The authentication hook calls connmgr_enforce_limits() for every
 * successful non-superuser, non-replication login.  All catalog work (the
 * role's groups, their policies) is done first, without any lock of ours;
 * then shmem.c checks every limit and counts the connection under one lock.
 *
 * Precedence: a per_member limit on the login role itself replaces the
 * inherited ones; otherwise the smallest per_member among its groups
 * applies.  Every total limit of the role and of its groups applies.
 *
 * Groups are followed through grants that pass on privileges, but not
 * through grants WITH ADMIN OPTION: an instructor administers the student
 * group, and is neither limited by it nor counted in its total.
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
#include "utils/acl.h"
#include "utils/fmgroids.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/relcache.h"
#include "utils/resowner.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"

#include "connmgr.h"

typedef struct LoginLimits
{
	Oid			user;
	Oid		   *roles;			/* user first, then its inherited groups */
	int			nroles;
	ConnmgrCheck *checks;
	Oid		   *sources;		/* the role whose policy set each check */
	ConnmgrOnLimit *actions;	/* what each check's policy does at the limit */
	int			nchecks;
} LoginLimits;

static char *
role_name(Oid roleid)
{
	char	   *name = GetUserNameFromId(roleid, true);

	return name ? name : "?";
}

static void
add_check(LoginLimits *limits, Oid roleid, bool own, int limit,
		  Oid source, ConnmgrOnLimit action)
{
	int			i = limits->nchecks++;

	limits->checks[i].roleid = roleid;
	limits->checks[i].own = own;
	limits->checks[i].limit = limit;
	limits->checks[i].blocking = action != ON_LIMIT_LOG;
	limits->sources[i] = source;
	limits->actions[i] = action;
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
					 errhint("Replace it with connmgr.set_connection_limit() or remove it with connmgr.drop_connection_limit().")));
			return false;
		case POLICY_NONE:
			break;
	}
	return false;
}

/* Fill limits from the catalogs: the user's groups and their policies. */
static void
gather_limits(LoginLimits *limits)
{
	List	   *groups = connmgr_roles_containing(limits->user,
												  ROLES_INHERITED | ROLES_ENROLLED);
	int			n = list_length(groups) + 1;
	ConnmgrPolicy policy;
	ConnmgrPolicy per_member = {-1, -1, ON_LIMIT_REJECT};
	Oid			per_member_source = InvalidOid;

	limits->roles = palloc(sizeof(Oid) * n);
	limits->checks = palloc0(sizeof(ConnmgrCheck) * (n + 1));
	limits->sources = palloc(sizeof(Oid) * (n + 1));
	limits->actions = palloc(sizeof(ConnmgrOnLimit) * (n + 1));
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
		if (policy.total >= 0)
			add_check(limits, role, false, policy.total, role, policy.on_limit);
		if (policy.per_member < 0)
			continue;
		/* The role's own per_member wins; else the smallest inherited one. */
		if (i == 0 || (per_member_source != limits->user &&
					   (per_member.per_member < 0 ||
						policy.per_member < per_member.per_member)))
		{
			per_member = policy;
			per_member_source = role;
		}
	}
	if (per_member.per_member >= 0)
		add_check(limits, limits->user, true, per_member.per_member,
				  per_member_source, per_member.on_limit);
}

static const char *
connections(int n)
{
	return n == 1 ? "connection" : "connections";
}

/* The facts about one reached limit, as a DETAIL sentence. */
static char *
describe_check(const LoginLimits *limits, int i)
{
	const ConnmgrCheck *check = &limits->checks[i];

	if (!check->own)
		return psprintf("Role \"%s\" and its members have %d %s; the limit is %d.",
						role_name(check->roleid), check->current,
						connections(check->current), check->limit);
	if (limits->sources[i] == limits->user)
		return psprintf("Role \"%s\" has %d %s; its limit is %d.",
						role_name(check->roleid), check->current,
						connections(check->current), check->limit);
	return psprintf("Role \"%s\" has %d %s; the limit for members of \"%s\" is %d.",
					role_name(check->roleid), check->current,
					connections(check->current),
					role_name(limits->sources[i]), check->limit);
}

static int
first_reached(const LoginLimits *limits, bool blocking)
{
	for (int i = 0; i < limits->nchecks; i++)
		if (limits->checks[i].reached && limits->checks[i].blocking == blocking)
			return i;
	return -1;
}

static void
reject(const LoginLimits *limits, const char *extra_detail)
{
	ereport(FATAL,
			(errcode(ERRCODE_TOO_MANY_CONNECTIONS),
			 errmsg("too many connections for role \"%s\"", role_name(limits->user)),
			 errdetail("%s%s", describe_check(limits, first_reached(limits, true)),
					   extra_detail),
			 errhint("Close connections you no longer use, or ask your instructor or "
					 "database administrator to end them (connmgr.killUserConnections).")));
}

/* Log-only policies whose limit was reached: admitted, with a WARNING. */
static void
warn_log_only(const LoginLimits *limits)
{
	for (int i = 0; i < limits->nchecks; i++)
	{
		if (!limits->checks[i].reached || limits->checks[i].blocking)
			continue;
		ereport(WARNING,
				(errcode(ERRCODE_TOO_MANY_CONNECTIONS),
				 errmsg("too many connections for role \"%s\"", role_name(limits->user)),
				 errdetail("%s The login was admitted because the policy of role \"%s\" only logs (on_limit = log).",
						   describe_check(limits, i), role_name(limits->sources[i]))));
	}
}

/* Does any reached blocking limit say reject rather than evict_idle? */
static bool
must_reject(const LoginLimits *limits)
{
	for (int i = 0; i < limits->nchecks; i++)
		if (limits->checks[i].reached && limits->checks[i].blocking &&
			limits->actions[i] == ON_LIMIT_REJECT)
			return true;
	return false;
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
	bool		db_ok = false;
	Relation	rel;
	ScanKeyData key;
	SysScanDesc scan;

	tuple = SearchSysCache1(AUTHOID, ObjectIdGetDatum(user));
	if (HeapTupleIsValid(tuple))
	{
		can_login = ((Form_pg_authid) GETSTRUCT(tuple))->rolcanlogin;
		ReleaseSysCache(tuple);
	}
	if (!can_login || database == NULL)
		return false;

	ScanKeyInit(&key, Anum_pg_database_datname, BTEqualStrategyNumber,
				F_NAMEEQ, CStringGetDatum(database));
	rel = table_open(DatabaseRelationId, AccessShareLock);
	scan = systable_beginscan(rel, DatabaseNameIndexId,
							  criticalSharedRelcachesBuilt, NULL, 1, &key);
	tuple = systable_getnext(scan);
	if (HeapTupleIsValid(tuple))
		db_ok = ((Form_pg_database) GETSTRUCT(tuple))->datallowconn;
	systable_endscan(scan);
	table_close(rel, AccessShareLock);
	return db_ok;
}

/*
 * The user's client connection that has been idle longest, for at least
 * connmgr.evict_min_idle, and is not in tried.  Connections busy in a query
 * or idle inside a transaction are never chosen.
 */
static bool
choose_victim(Oid user, List *tried, ConnmgrTarget *victim)
{
	TimestampTz now = GetCurrentTimestamp();
	PgBackendStatus *best = NULL;
	int			n;

	connmgr_refresh_backends();
	n = connmgr_backend_count();
	for (int i = 1; i <= n; i++)
	{
		PgBackendStatus *be = connmgr_backend_at(i);

		if (be == NULL || be->st_userid != user ||
			be->st_backendType != B_BACKEND || be->st_state != STATE_IDLE ||
			list_member_int(tried, be->st_procpid) ||
			!TimestampDifferenceExceeds(be->st_state_start_timestamp, now,
										connmgr_evict_min_idle_ms))
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
 * Terminate the victim and wait, at most timeout_ms, until it is gone.
 * Checked once more just before the signal: a victim that has started a
 * query meanwhile is spared.
 */
static void
evict(const LoginLimits *limits, const ConnmgrTarget *victim, int timeout_ms)
{
	PgBackendStatus *be;
	bool		gone = false;

	connmgr_refresh_backends();
	be = connmgr_find_backend(victim->pid);
	if (!connmgr_same_backend(be, victim) || be->st_state != STATE_IDLE)
		return;

	ereport(LOG,
			(errmsg("evicting idle connection %d of role \"%s\" to admit a new login",
					victim->pid, role_name(limits->user)),
			 errdetail("The connection had been idle since %s. %s",
					   timestamptz_to_str(be->st_state_start_timestamp),
					   describe_check(limits, first_reached(limits, true)))));
	connmgr_signal_and_wait(&victim->pid, &gone, 1, timeout_ms);
}

/*
 * Evict idle connections of the user, longest-idle first, until the login
 * can be counted, there is no candidate left, a limit whose policy says
 * reject is reached, or connmgr.terminate_timeout has passed.  A
 * concurrent login may take the slot an eviction freed, or pick the same
 * victim: then the next candidate is tried.
 */
static ConnmgrClaimResult
evict_until_admitted(LoginLimits *limits, bool *found_candidate)
{
	TimestampTz deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
													   connmgr_terminate_timeout_ms);
	ConnmgrClaimResult result = CLAIM_BLOCKED;
	List	   *tried = NIL;
	ConnmgrTarget victim;

	*found_candidate = false;
	while (choose_victim(limits->user, tried, &victim))
	{
		TimestampTz now = GetCurrentTimestamp();

		*found_candidate = true;
		if (now >= deadline)
			break;				/* no time to wait for a victim: spare it */
		tried = lappend_int(tried, victim.pid);
		evict(limits, &victim, (int) ((deadline - now) / 1000));
		result = connmgr_claim(limits->user, limits->roles, limits->nroles,
							   limits->checks, limits->nchecks);
		if (result != CLAIM_BLOCKED || must_reject(limits))
			break;				/* admitted, or a reject policy now decides */
	}
	return result;
}

/* The whole login check; errors are caught by connmgr_enforce_limits(). */
static void
enforce(LoginLimits *limits, const char *database)
{
	ConnmgrClaimResult result;
	bool		found_candidate = true;

	gather_limits(limits);
	result = connmgr_claim(limits->user, limits->roles, limits->nroles,
						   limits->checks, limits->nchecks);
	if (result == CLAIM_BLOCKED && !must_reject(limits) &&
		login_can_proceed(limits->user, database))
		result = evict_until_admitted(limits, &found_candidate);

	if (result == CLAIM_BLOCKED)
		reject(limits, found_candidate ? "" :
			   psprintf(" No connection of role \"%s\" has been idle for %d ms or more, so none was evicted.",
						role_name(limits->user), connmgr_evict_min_idle_ms));
	if (result == CLAIM_NOT_COUNTED)
		ereport(WARNING,
				(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
				 errmsg("could not count a connection of role \"%s\"",
						role_name(limits->user)),
				 errdetail("The shared table of role counters is full; the login was admitted uncounted."),
				 errhint("Raise connmgr.max_tracked_roles.")));
	warn_log_only(limits);
}

/*
 * Apply the connection limits to a login, in a subtransaction: if anything
 * fails (the catalogs cannot be read, say), log it and admit the login,
 * counted for the user alone.  Refusals are FATAL and end the backend.
 */
void
connmgr_enforce_limits(Oid user, const char *database)
{
	LoginLimits limits = {.user = user};
	MemoryContext oldcontext = CurrentMemoryContext;
	ResourceOwner oldowner = CurrentResourceOwner;

	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(oldcontext);
	PG_TRY();
	{
		enforce(&limits, database);
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
