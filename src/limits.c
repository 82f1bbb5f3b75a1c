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
 * Groups are those whose privileges the role inherits (has_privs_of_role).
 *
 * Fail safe: if the policies cannot be read, the login is admitted and the
 * problem logged; nobody is locked out by a broken policy store.
 */
#include "postgres.h"

#include <signal.h>

#include "access/xact.h"
#include "utils/acl.h"
#include "utils/memutils.h"
#include "utils/resowner.h"
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

static void
add_check(LoginLimits *limits, Oid roleid, bool own, int limit,
		  Oid source, ConnmgrOnLimit action)
{
	int			i = limits->nchecks++;

	limits->checks[i].roleid = roleid;
	limits->checks[i].own = own;
	limits->checks[i].limit = limit;
	limits->checks[i].blocking = connmgr_enabled && action != ON_LIMIT_LOG;
	limits->sources[i] = source;
	limits->actions[i] = action;
}

/* Fill limits from the catalogs: the user's groups and their policies. */
static void
gather_limits(LoginLimits *limits)
{
	List	   *groups = connmgr_roles_containing(limits->user, true);
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

		if (!connmgr_read_policy(role, &policy))
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

/*
 * gather_limits() in a subtransaction: on any error, log it and fall back
 * to counting the user alone, with no limit.
 */
static void
gather_limits_failsafe(LoginLimits *limits)
{
	MemoryContext oldcontext = CurrentMemoryContext;
	ResourceOwner oldowner = CurrentResourceOwner;

	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(oldcontext);
	PG_TRY();
	{
		gather_limits(limits);
		ReleaseCurrentSubTransaction();
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(oldcontext);
		edata = CopyErrorData();
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();

		limits->roles = palloc(sizeof(Oid));
		limits->roles[0] = limits->user;
		limits->nroles = 1;
		limits->nchecks = 0;
		ereport(WARNING,
				(errcode(edata->sqlerrcode),
				 errmsg("connmgr could not read the connection limits of role \"%s\"; admitting the login",
						GetUserNameFromId(limits->user, true)),
				 errdetail("%s", edata->message)));
		FreeErrorData(edata);
	}
	PG_END_TRY();
	MemoryContextSwitchTo(oldcontext);
	CurrentResourceOwner = oldowner;
}

static char *
role_name(Oid roleid)
{
	char	   *name = GetUserNameFromId(roleid, true);

	return name ? name : "?";
}

/* The facts about one reached limit, as a DETAIL sentence. */
static char *
describe_check(const LoginLimits *limits, int i)
{
	const ConnmgrCheck *check = &limits->checks[i];

	if (!check->own)
		return psprintf("Role \"%s\" and its members have %d connections; the limit is %d.",
						role_name(check->roleid), check->current, check->limit);
	if (limits->sources[i] == limits->user)
		return psprintf("Role \"%s\" has %d connections; its limit is %d.",
						role_name(check->roleid), check->current, check->limit);
	return psprintf("Role \"%s\" has %d connections; the limit for members of \"%s\" is %d.",
					role_name(check->roleid), check->current,
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
	int			i = first_reached(limits, true);

	ereport(FATAL,
			(errcode(ERRCODE_TOO_MANY_CONNECTIONS),
			 errmsg("too many connections for role \"%s\"", role_name(limits->user)),
			 errdetail("%s%s", describe_check(limits, i), extra_detail),
			 errhint("Close connections you no longer use, or ask your instructor or "
					 "database administrator to end them (connmgr.killUserConnections).")));
}

/* Log-only policies whose limit was reached: admit, with a WARNING. */
static void
warn_log_only(const LoginLimits *limits)
{
	for (int i = 0; i < limits->nchecks; i++)
	{
		if (!limits->checks[i].reached || limits->checks[i].blocking ||
			!connmgr_enabled)
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
 * The user's client connection that has been idle longest, for at least
 * connmgr.evict_min_idle; NULL if there is none.  Connections busy in a
 * query or idle inside a transaction are never chosen.
 */
static PgBackendStatus *
longest_idle_connection(Oid user)
{
	TimestampTz now = GetCurrentTimestamp();
	PgBackendStatus *victim = NULL;
	int			n;

	connmgr_refresh_backends();
	n = connmgr_backend_count();
	for (int i = 1; i <= n; i++)
	{
		PgBackendStatus *be = connmgr_backend_at(i);

		if (be == NULL || be->st_userid != user ||
			be->st_backendType != B_BACKEND || be->st_state != STATE_IDLE ||
			!TimestampDifferenceExceeds(be->st_state_start_timestamp, now,
										connmgr_evict_min_idle_ms))
			continue;
		if (victim == NULL ||
			be->st_state_start_timestamp < victim->st_state_start_timestamp)
			victim = be;
	}
	return victim;
}

/* Terminate the victim and wait until it is gone; true if it is. */
static bool
evict(const LoginLimits *limits, PgBackendStatus *victim)
{
	int			pid = victim->st_procpid;
	bool		gone;

	ereport(LOG,
			(errmsg("connmgr: evicting idle connection %d of role \"%s\" to admit a new login",
					pid, role_name(limits->user)),
			 errdetail("The connection had been idle since %s. %s",
					   timestamptz_to_str(victim->st_state_start_timestamp),
					   describe_check(limits, first_reached(limits, true)))));
	connmgr_signal_and_wait(&pid, &gone, 1);
	return gone;
}

void
connmgr_enforce_limits(Oid user)
{
	LoginLimits limits = {.user = user};
	ConnmgrClaimResult result;
	PgBackendStatus *victim;

	gather_limits_failsafe(&limits);
	result = connmgr_claim(user, limits.roles, limits.nroles,
						   limits.checks, limits.nchecks);
	if (result == CLAIM_BLOCKED && !must_reject(&limits))
	{
		victim = longest_idle_connection(user);
		if (victim == NULL)
			reject(&limits,
				   psprintf(" No connection of role \"%s\" has been idle for %d ms or more, so none was evicted.",
							role_name(user), connmgr_evict_min_idle_ms));
		if (evict(&limits, victim))
			result = connmgr_claim(user, limits.roles, limits.nroles,
								   limits.checks, limits.nchecks);
	}
	if (result == CLAIM_BLOCKED)
		reject(&limits, "");
	if (result == CLAIM_NOT_COUNTED)
		ereport(WARNING,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("connmgr could not count a connection of role \"%s\"",
						role_name(user)),
				 errdetail("The shared table of role counters is full."),
				 errhint("Raise connmgr.max_tracked_roles.")));
	warn_log_only(&limits);
}
