/*
 * policy.c
 *		The policy store: connection-limit policies kept as security labels
 *		on roles (provider "connmgr") in the shared catalog pg_shseclabel.
 *
 * Why labels: the authentication hook runs before a database is selected,
 * when only shared catalogs can be read, and PostgreSQL keeps pg_shseclabel
 * and its index readable then for this kind of use.  Being a catalog, the
 * store is cluster-wide, transactional (a policy applies to the next login
 * after its transaction commits), crash-safe, replicated to hot standbys,
 * and written out by pg_dumpall as SECURITY LABEL FOR connmgr ON ROLE.
 *
 * Label text: comma-separated key=value pairs, for example
 *		per_member=5,total=60,on_limit=evict_idle
 * per_member and total are optional non-negative integers (at least one
 * is present, or an idle timeout); on_limit is reject, evict_idle, log or
 * wait; with wait, wait_timeout (milliseconds) and max_waiting may follow;
 * idle_timeout and idle_in_transaction_timeout are in milliseconds.  Keys
 * and values are case-insensitive.  A
 * label has at most CONNMGR_MAX_LABEL_LEN bytes, so PostgreSQL always
 * stores it inline and uncompressed: reading a TOASTed value would need a
 * relation that cannot be opened before a database is selected, and the
 * FATAL error that follows would lock every member out.  A label stored
 * out of line or compressed anyway (written behind connmgr's back) is
 * treated as damaged and never detoasted.
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/skey.h"
#include "access/table.h"
#include "access/xact.h"
#include "catalog/indexing.h"
#include "catalog/objectaddress.h"
#include "catalog/pg_authid.h"
#include "catalog/pg_shseclabel.h"
#include "commands/seclabel.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/rel.h"
#include "utils/relcache.h"

#include "connmgr.h"

#define CONNMGR_LABEL_PROVIDER "connmgr"
#define CONNMGR_MAX_LABEL_LEN 256

static const char *const on_limit_names[] = {
	[ON_LIMIT_REJECT] = "reject",
	[ON_LIMIT_EVICT_IDLE] = "evict_idle",
	[ON_LIMIT_LOG] = "log",
	[ON_LIMIT_WAIT] = "wait",
};

const char *
connmgr_on_limit_name(ConnmgrOnLimit on_limit)
{
	return on_limit_names[on_limit];
}

bool
connmgr_on_limit_from_name(const char *name, ConnmgrOnLimit *on_limit)
{
	for (int i = 0; i < (int) lengthof(on_limit_names); i++)
	{
		if (pg_strcasecmp(name, on_limit_names[i]) == 0)
		{
			*on_limit = (ConnmgrOnLimit) i;
			return true;
		}
	}
	return false;
}

/* The label text of a policy, as stored. */
char *
connmgr_policy_text(const ConnmgrPolicy *policy)
{
	StringInfoData buf;

	initStringInfo(&buf);
	if (policy->per_member >= 0)
		appendStringInfo(&buf, "per_member=%d,", policy->per_member);
	if (policy->total >= 0)
		appendStringInfo(&buf, "total=%d,", policy->total);
	appendStringInfo(&buf, "on_limit=%s", connmgr_on_limit_name(policy->on_limit));
	if (policy->wait_timeout_ms >= 0)
		appendStringInfo(&buf, ",wait_timeout=%d", policy->wait_timeout_ms);
	if (policy->max_waiting >= 0)
		appendStringInfo(&buf, ",max_waiting=%d", policy->max_waiting);
	if (policy->idle_timeout_ms >= 0)
		appendStringInfo(&buf, ",idle_timeout=%d", policy->idle_timeout_ms);
	if (policy->idle_in_xact_timeout_ms >= 0)
		appendStringInfo(&buf, ",idle_in_transaction_timeout=%d",
						 policy->idle_in_xact_timeout_ms);
	return buf.data;
}

/* A non-negative decimal integer that fits in an int, or -1. */
static int
parse_limit(const char *value)
{
	long		result = 0;

	if (*value == '\0')
		return -1;
	for (const char *p = value; *p; p++)
	{
		if (*p < '0' || *p > '9')
			return -1;
		result = result * 10 + (*p - '0');
		if (result > PG_INT32_MAX)
			return -1;
	}
	return (int) result;
}

/*
 * Parse a label into *policy.  Returns NULL for a well-formed policy, else
 * a sentence saying what is wrong.  Never raises an error.
 */
static const char *
policy_problem(const char *label, ConnmgrPolicy *policy)
{
	char	   *copy = pstrdup(label);
	char	   *saveptr = NULL;
	bool		seen_on_limit = false;
	const char *problem = NULL;

	policy->per_member = -1;
	policy->total = -1;
	policy->on_limit = ON_LIMIT_REJECT;
	policy->wait_timeout_ms = -1;
	policy->max_waiting = -1;
	policy->idle_timeout_ms = -1;
	policy->idle_in_xact_timeout_ms = -1;
	if (strlen(label) > CONNMGR_MAX_LABEL_LEN)
		return psprintf(_("The label has %zu bytes; a policy label has at most %d."),
						strlen(label), CONNMGR_MAX_LABEL_LEN);

	for (char *item = strtok_r(copy, ",", &saveptr);
		 item != NULL && problem == NULL;
		 item = strtok_r(NULL, ",", &saveptr))
	{
		char	   *value = strchr(item, '=');

		if (value == NULL)
		{
			problem = _("Each item must have the form key=value.");
			break;
		}
		*value++ = '\0';
		if (pg_strcasecmp(item, "per_member") == 0 && policy->per_member < 0)
		{
			if ((policy->per_member = parse_limit(value)) < 0)
				problem = _("per_member must be a non-negative integer.");
		}
		else if (pg_strcasecmp(item, "total") == 0 && policy->total < 0)
		{
			if ((policy->total = parse_limit(value)) < 0)
				problem = _("total must be a non-negative integer.");
		}
		else if (pg_strcasecmp(item, "on_limit") == 0 && !seen_on_limit)
		{
			if (!connmgr_on_limit_from_name(value, &policy->on_limit))
				problem = _("on_limit must be reject, evict_idle, log or wait.");
			seen_on_limit = true;
		}
		else if (pg_strcasecmp(item, "wait_timeout") == 0 && policy->wait_timeout_ms < 0)
		{
			if ((policy->wait_timeout_ms = parse_limit(value)) <= 0)
				problem = _("wait_timeout must be a positive number of milliseconds.");
		}
		else if (pg_strcasecmp(item, "max_waiting") == 0 && policy->max_waiting < 0)
		{
			if ((policy->max_waiting = parse_limit(value)) <= 0)
				problem = _("max_waiting must be a positive integer.");
		}
		else if (pg_strcasecmp(item, "idle_timeout") == 0 && policy->idle_timeout_ms < 0)
		{
			if ((policy->idle_timeout_ms = parse_limit(value)) <= 0)
				problem = _("idle_timeout must be a positive number of milliseconds.");
		}
		else if (pg_strcasecmp(item, "idle_in_transaction_timeout") == 0 &&
				 policy->idle_in_xact_timeout_ms < 0)
		{
			if ((policy->idle_in_xact_timeout_ms = parse_limit(value)) <= 0)
				problem = _("idle_in_transaction_timeout must be a positive number of milliseconds.");
		}
		else
			problem = _("Only per_member, total, on_limit, wait_timeout, max_waiting, idle_timeout and idle_in_transaction_timeout are allowed, each at most once.");
	}
	pfree(copy);
	if (problem == NULL && policy->on_limit != ON_LIMIT_WAIT &&
		(policy->wait_timeout_ms >= 0 || policy->max_waiting >= 0))
		problem = _("wait_timeout and max_waiting are for on_limit wait only.");
	if (problem == NULL && policy->per_member < 0 && policy->total < 0 &&
		policy->idle_timeout_ms < 0 && policy->idle_in_xact_timeout_ms < 0)
		problem = _("At least one of per_member, total, idle_timeout and idle_in_transaction_timeout must be given.");
	return problem;
}

/* Parse a label; raises an error for anything but a well-formed policy. */
static void
parse_policy_or_error(const char *label, ConnmgrPolicy *policy)
{
	const char *problem = policy_problem(label, policy);

	if (problem != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid connmgr policy label \"%s\"",
						strlen(label) > CONNMGR_MAX_LABEL_LEN ? "..." : label),
				 errdetail("%s", problem),
				 errhint("A label looks like \"per_member=5,total=60,on_limit=reject\"; "
						 "use connmgr.set_connection_limit() to write one.")));
}

/* Scan keys for "a label of ours on a role", from keys[first] on. */
static void
init_role_label_keys(ScanKeyData *keys, int first)
{
	ScanKeyInit(&keys[first], Anum_pg_shseclabel_classoid, BTEqualStrategyNumber,
				F_OIDEQ, ObjectIdGetDatum(AuthIdRelationId));
	ScanKeyInit(&keys[first + 1], Anum_pg_shseclabel_provider, BTEqualStrategyNumber,
				F_TEXTEQ, CStringGetTextDatum(CONNMGR_LABEL_PROVIDER));
}

/*
 * Parse a label datum into *policy; returns NULL or the problem, as
 * policy_problem() does.  A label that PostgreSQL stored out of line or
 * compressed is damaged (a policy is always short) and is not detoasted:
 * during authentication that would fail.
 */
static const char *
parse_label_datum(Datum label, ConnmgrPolicy *policy)
{
	struct varlena *raw = (struct varlena *) DatumGetPointer(label);

	if (VARATT_IS_EXTERNAL(raw) || VARATT_IS_COMPRESSED(raw))
		return _("The label is too long to be a policy; it was not read.");
	return policy_problem(TextDatumGetCString(label), policy);
}

/*
 * Look up the policy of roleid: POLICY_NONE, POLICY_VALID (in *policy), or
 * POLICY_INVALID with *problem saying why.  Never raises an error for a
 * damaged label, so one bad policy cannot take the others down with it.
 *
 * Safe during authentication: it reads only pg_shseclabel, never its TOAST
 * table, and uses its index only once the shared relcache entries are
 * loaded (a heap scan otherwise, as the catalog caches do then).
 */
ConnmgrPolicyStatus
connmgr_lookup_policy(Oid roleid, ConnmgrPolicy *policy, const char **problem)
{
	Relation	rel;
	ScanKeyData keys[3];
	SysScanDesc scan;
	HeapTuple	tuple;
	ConnmgrPolicyStatus status = POLICY_NONE;

	ScanKeyInit(&keys[0], Anum_pg_shseclabel_objoid, BTEqualStrategyNumber,
				F_OIDEQ, ObjectIdGetDatum(roleid));
	init_role_label_keys(keys, 1);

	rel = table_open(SharedSecLabelRelationId, AccessShareLock);
	scan = systable_beginscan(rel, SharedSecLabelObjectIndexId,
							  criticalSharedRelcachesBuilt, NULL, 3, keys);
	tuple = systable_getnext(scan);
	if (HeapTupleIsValid(tuple))
	{
		bool		isnull;
		Datum		label = heap_getattr(tuple, Anum_pg_shseclabel_label,
										 RelationGetDescr(rel), &isnull);

		if (!isnull)
		{
			*problem = parse_label_datum(label, policy);
			status = *problem ? POLICY_INVALID : POLICY_VALID;
		}
	}
	systable_endscan(scan);
	table_close(rel, AccessShareLock);
	return status;
}

/* Does roleid have a policy?  True even for one that does not parse. */
bool
connmgr_has_policy(Oid roleid)
{
	ConnmgrPolicy policy;
	const char *problem;

	return connmgr_lookup_policy(roleid, &policy, &problem) != POLICY_NONE;
}

/*
 * Every policy, in no particular order, read in one scan: a list of
 * palloc'd ConnmgrRolePolicy, each parsed as connmgr_lookup_policy() does.
 */
List *
connmgr_all_policies(void)
{
	Relation	rel;
	ScanKeyData keys[2];
	SysScanDesc scan;
	HeapTuple	tuple;
	List	   *policies = NIL;

	init_role_label_keys(keys, 0);

	rel = table_open(SharedSecLabelRelationId, AccessShareLock);
	scan = systable_beginscan(rel, InvalidOid, false, NULL, 2, keys);
	while (HeapTupleIsValid(tuple = systable_getnext(scan)))
	{
		ConnmgrRolePolicy *entry = palloc(sizeof(ConnmgrRolePolicy));
		bool		isnull;
		Datum		label = heap_getattr(tuple, Anum_pg_shseclabel_label,
										 RelationGetDescr(rel), &isnull);

		if (isnull)
			continue;
		entry->roleid = ((Form_pg_shseclabel) GETSTRUCT(tuple))->objoid;
		entry->problem = parse_label_datum(label, &entry->policy);
		policies = lappend(policies, entry);
	}
	systable_endscan(scan);
	table_close(rel, AccessShareLock);
	return policies;
}

/* Superusers are never limited: say so when one is given a policy. */
static void
notice_if_superuser(Oid roleid)
{
	if (superuser_arg(roleid))
		ereport(NOTICE,
				(errcode(ERRCODE_WARNING),
				 errmsg("role \"%s\" is a superuser, so its connection limit policy has no effect",
						GetUserNameFromId(roleid, false)),
				 errdetail("Superusers are never limited; connmgr.connection_limits shows the policy with applies = false.")));
}

/* Store (or with NULL, remove) the policy of roleid. */
void
connmgr_write_policy(Oid roleid, const ConnmgrPolicy *policy)
{
	ObjectAddress address;

	if (policy != NULL)
		notice_if_superuser(roleid);
	connmgr_cache_note_policy_change(roleid);

	ObjectAddressSet(address, AuthIdRelationId, roleid);
	SetSecurityLabel(&address, CONNMGR_LABEL_PROVIDER,
					 policy ? connmgr_policy_text(policy) : NULL);
	/* let a later call of the same statement see (and replace) it */
	CommandCounterIncrement();
}

/*
 * Label provider hook: SECURITY LABEL FOR connmgr (as pg_dumpall writes it)
 * accepts only well-formed policies, only on roles, and only from those who
 * may change the role's policy with set_connection_limit (PostgreSQL's own
 * check for labels is looser: it lets CREATEROLE roles label reserved and
 * replication roles).
 */
static void
check_policy_label(const ObjectAddress *object, const char *label)
{
	if (object->classId != AuthIdRelationId)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("connmgr security labels can only be set on roles")));
	connmgr_check_may_manage_policy(object->objectId,
									GetUserNameFromId(object->objectId, false));
	connmgr_cache_note_policy_change(object->objectId);
	if (label != NULL)
	{
		ConnmgrPolicy policy;

		parse_policy_or_error(label, &policy);
		notice_if_superuser(object->objectId);
	}
}

void
connmgr_register_label_provider(void)
{
	register_label_provider(CONNMGR_LABEL_PROVIDER, check_policy_label);
}
