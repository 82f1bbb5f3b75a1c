/*
 * permissions.c
 *		Who may see and who may terminate whose connections, who may change
 *		connection-limit policies, and the role-membership walks they need.
 *
 * Terminating, decided per target connection with PostgreSQL's own role
 * functions (never a SECURITY DEFINER shortcut):
 *	- only superusers may terminate superusers' connections;
 *	- everyone may terminate their own connections;
 *	- a role with the privileges of the target role may terminate it, as
 *	  with pg_terminate_backend();
 *	- members of pg_signal_backend may terminate any other connection;
 *	- a role holding ADMIN OPTION on a group (a NOLOGIN role), an
 *	  instructor, may terminate the connections of that group's members,
 *	  except administrators and the instructor's fellows (below); roles
 *	  that can open replication connections are administrators;
 *	- an administrator is a role that has SUPERUSER, CREATEROLE or
 *	  REPLICATION, or holds ADMIN OPTION on any role, itself or through any
 *	  role it belongs to, or is a member of pg_signal_backend (every kind
 *	  of grant counts);
 *	- a fellow of an instructor belongs to a group that the instructor
 *	  belongs to without ADMIN OPTION, that is not predefined, and that is
 *	  neither one of the instructor's classes nor contains one, as
 *	  co-instructors sharing a "teachers" group do;
 *	- whoever may terminate a connection may see it, and so may superusers
 *	  and members of pg_read_all_stats.
 *
 * The same two definitions keep group policies off administrators and off
 * fellows of the instructors of any of their groups
 * (connmgr_group_policies_apply), so
 * that whoever may enrol a role in a group cannot deny logins to a role it
 * may not terminate.
 *
 * Changing a role's policy takes what PostgreSQL requires to ALTER the
 * role: nobody may for the reserved pg_* roles; superuser for superuser
 * roles (and, before PostgreSQL 16, for replication roles); otherwise
 * CREATEROLE, plus ADMIN OPTION on the role from PostgreSQL 16 on.
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/skey.h"
#include "access/table.h"
#include "access/transam.h"
#include "catalog/catalog.h"
#include "catalog/pg_auth_members.h"
#include "catalog/pg_authid.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/catcache.h"
#include "utils/fmgroids.h"
#include "utils/rel.h"
#include "utils/relcache.h"
#include "utils/syscache.h"

#include "connmgr.h"
#include "compat.h"

static bool
role_flag(Oid roleid, bool inherit)
{
	HeapTuple	tuple = SearchSysCache1(AUTHOID, ObjectIdGetDatum(roleid));
	bool		result = false;

	if (HeapTupleIsValid(tuple))
	{
		Form_pg_authid role = (Form_pg_authid) GETSTRUCT(tuple);

		result = inherit ? role->rolinherit : role->rolcanlogin;
		ReleaseSysCache(tuple);
	}
	return result;
}

/*
 * A role created by initdb (the predefined pg_* roles and the bootstrap
 * superuser) rather than by a user.
 */
static bool
is_predefined_role(Oid roleid)
{
	return roleid < FirstNormalObjectId;
}

/* A group role, as opposed to a login role. */
static bool
is_group(Oid roleid)
{
	return !role_flag(roleid, false);
}

/*
 * Add to *roles every role that 'member' is directly granted.  With
 * ROLES_INHERITED, skip grants that do not pass on privileges; with
 * ROLES_ENROLLED, skip grants WITH ADMIN OPTION (administering a group is
 * not belonging to it).
 */
static void
add_direct_groups(Oid member, int flags, List **roles)
{
	CatCList   *grants;

	if ((flags & ROLES_INHERITED) && !CONNMGR_GRANTS_HAVE_INHERIT_OPTION &&
		!role_flag(member, true))
		return;

	grants = SearchSysCacheList1(AUTHMEMMEMROLE, ObjectIdGetDatum(member));
	for (int i = 0; i < grants->n_members; i++)
	{
		Form_pg_auth_members grant =
			(Form_pg_auth_members) GETSTRUCT(&grants->members[i]->tuple);

		if ((flags & ROLES_INHERITED) && !connmgr_grant_inherit_option(grant))
			continue;
		if ((flags & ROLES_ENROLLED) && grant->admin_option)
			continue;
		*roles = list_append_unique_oid(*roles, grant->roleid);
	}
	ReleaseSysCacheList(grants);
}

/*
 * Every role that roleid is a member of, directly or through nested groups,
 * not including roleid itself, following only the grants that flags
 * allow.  Reads only shared catalogs, so it works during authentication.
 */
List *
connmgr_roles_containing(Oid roleid, int flags)
{
	List	   *roles = NIL;

	add_direct_groups(roleid, flags, &roles);
	for (int i = 0; i < list_length(roles); i++)
		add_direct_groups(list_nth_oid(roles, i), flags, &roles);

	return list_delete_oid(roles, roleid);
}

/* Does any of member's own grants carry ADMIN OPTION? */
static bool
has_admin_grant(Oid member)
{
	CatCList   *grants = SearchSysCacheList1(AUTHMEMMEMROLE, ObjectIdGetDatum(member));
	bool		result = false;

	for (int i = 0; i < grants->n_members && !result; i++)
		result = ((Form_pg_auth_members)
				  GETSTRUCT(&grants->members[i]->tuple))->admin_option;
	ReleaseSysCacheList(grants);
	return result;
}

/* Does the role have SUPERUSER, CREATEROLE or REPLICATION? */
static bool
has_administrator_attribute(Oid roleid)
{
	HeapTuple	tuple = SearchSysCache1(AUTHOID, ObjectIdGetDatum(roleid));
	bool		result = false;

	if (HeapTupleIsValid(tuple))
	{
		Form_pg_authid role = (Form_pg_authid) GETSTRUCT(tuple);

		result = role->rolsuper || role->rolcreaterole || role->rolreplication;
		ReleaseSysCache(tuple);
	}
	return result;
}

/*
 * Is role, a member of groups (every kind of grant), an administrator: does
 * it, or any role it belongs to, have SUPERUSER, CREATEROLE or REPLICATION,
 * hold ADMIN OPTION on a role, or is it a member of pg_signal_backend?
 * Memberships count whether or not they pass on privileges: a NOINHERIT
 * member can still SET ROLE.
 */
static bool
is_administrator(Oid role, List *groups)
{
	ListCell   *lc;

	if (has_administrator_attribute(role) || has_admin_grant(role) ||
		list_member_oid(groups, ROLE_PG_SIGNAL_BACKEND))
		return true;
	foreach(lc, groups)
	{
		if (has_administrator_attribute(lfirst_oid(lc)) ||
			has_admin_grant(lfirst_oid(lc)))
			return true;
	}
	return false;
}

/*
 * The groups that role holds ADMIN OPTION on, itself or through the groups
 * it belongs to (role_groups, every kind of grant), and every group that
 * contains one of them.
 */
static List *
classes_and_their_groups(Oid role, List *role_groups)
{
	List	   *holders = lcons_oid(role, list_copy(role_groups));
	List	   *result = NIL;
	ListCell   *lc;

	foreach(lc, holders)
	{
		CatCList   *grants = SearchSysCacheList1(AUTHMEMMEMROLE,
												 ObjectIdGetDatum(lfirst_oid(lc)));

		for (int i = 0; i < grants->n_members; i++)
		{
			Form_pg_auth_members grant =
				(Form_pg_auth_members) GETSTRUCT(&grants->members[i]->tuple);

			if (grant->admin_option && !list_member_oid(result, grant->roleid))
				result = list_concat(lappend_oid(result, grant->roleid),
									 connmgr_roles_containing(grant->roleid, ROLES_ALL));
		}
		ReleaseSysCacheList(grants);
	}
	return result;
}

/*
 * Is target (a member of target_groups) a fellow of instructor: does it
 * belong to a group that the instructor belongs to without ADMIN OPTION,
 * that is not predefined, and that is neither one of the instructor's
 * classes nor a group containing one (so an "all users" group above the
 * classes makes nobody a fellow)?  The instructor cannot change such a
 * group's members, so no REVOKE of a fellow's ADMIN OPTION makes the
 * fellow a managed member.
 */
static bool
is_fellow(Oid instructor, List *target_groups)
{
	List	   *mine = connmgr_roles_containing(instructor, ROLES_ENROLLED);
	List	   *classes = NIL;
	bool		classes_known = false;
	ListCell   *lc;

	foreach(lc, mine)
	{
		Oid			group = lfirst_oid(lc);

		if (!list_member_oid(target_groups, group) || is_predefined_role(group))
			continue;
		if (!classes_known)
		{
			classes = classes_and_their_groups(instructor,
											   connmgr_roles_containing(instructor, ROLES_ALL));
			classes_known = true;
		}
		if (!list_member_oid(classes, group))
			return true;
	}
	return false;
}

/* Does caller administer a group that target, a managed member, belongs to? */
static bool
instructs(Oid caller, Oid target)
{
	List	   *groups = connmgr_roles_containing(target, ROLES_ALL);
	ListCell   *lc;

	if (is_administrator(target, groups) || is_fellow(caller, groups))
		return false;
	foreach(lc, groups)
	{
		Oid			group = lfirst_oid(lc);

		if (group != caller && is_group(group) && is_admin_of_role(caller, group))
			return true;
	}
	return false;
}

/*
 * The roles granted role WITH ADMIN OPTION.  This runs while a login
 * authenticates, when the first logins after a server start may use only
 * the critical shared indexes (the syscache of pg_auth_members by role is
 * not one of them: reading its index then is a FATAL), so it scans the
 * catalog itself, through the index only once that is safe.
 */
static List *
admins_of(Oid role)
{
	Relation	rel = table_open(AuthMemRelationId, AccessShareLock);
	ScanKeyData key;
	SysScanDesc scan;
	HeapTuple	tuple;
	List	   *admins = NIL;

	ScanKeyInit(&key, Anum_pg_auth_members_roleid, BTEqualStrategyNumber,
				F_OIDEQ, ObjectIdGetDatum(role));
	scan = systable_beginscan(rel, AuthMemRoleMemIndexId,
							  criticalSharedRelcachesBuilt, NULL, 1, &key);
	while (HeapTupleIsValid(tuple = systable_getnext(scan)))
	{
		Form_pg_auth_members grant = (Form_pg_auth_members) GETSTRUCT(tuple);

		if (grant->admin_option)
			admins = lappend_oid(admins, grant->member);
	}
	systable_endscan(scan);
	table_close(rel, AccessShareLock);
	return admins;
}

/*
 * Do group policies apply to user?  Not to an administrator, nor to a
 * fellow of a role holding ADMIN OPTION on any group the user belongs to:
 * a role that may enrol others in a group (and so in every group that
 * contains it) must not be able to deny logins to roles it may not
 * terminate.  The user's own policy applies regardless.
 */
bool
connmgr_group_policies_apply(Oid user)
{
	List	   *groups = connmgr_roles_containing(user, ROLES_ALL);
	ListCell   *lc;

	if (is_administrator(user, groups))
		return false;
	foreach(lc, groups)
	{
		List	   *admins = admins_of(lfirst_oid(lc));
		ListCell   *admin;

		foreach(admin, admins)
			if (lfirst_oid(admin) != user && is_fellow(lfirst_oid(admin), groups))
				return false;
		list_free(admins);
	}
	return true;
}

bool
connmgr_may_terminate(Oid caller, Oid target)
{
	if (superuser_arg(caller))
		return true;
	if (!OidIsValid(target) || superuser_arg(target))
		return false;
	if (caller == target || has_privs_of_role(caller, target))
		return true;
	if (has_privs_of_role(caller, ROLE_PG_SIGNAL_BACKEND))
		return true;
	return instructs(caller, target);
}

bool
connmgr_may_see(Oid caller, Oid target)
{
	return has_privs_of_role(caller, ROLE_PG_READ_ALL_STATS) ||
		connmgr_may_terminate(caller, target);
}

/*
 * May caller see the policy of target: those it may change, those of roles
 * it belongs to or administers, or all with pg_read_all_stats?
 */
bool
connmgr_may_see_policy(Oid caller, Oid target)
{
	return has_privs_of_role(caller, ROLE_PG_READ_ALL_STATS) ||
		has_privs_of_role(caller, target) ||
		is_admin_of_role(caller, target) ||
		connmgr_may_manage_policy(caller, target);
}

bool
connmgr_may_manage_policy(Oid caller, Oid target)
{
	HeapTuple	tuple = SearchSysCache1(AUTHOID, ObjectIdGetDatum(target));
	Form_pg_authid role;
	bool		result;

	if (!HeapTupleIsValid(tuple))
		return false;
	role = (Form_pg_authid) GETSTRUCT(tuple);
	if (IsReservedName(NameStr(role->rolname)))
		result = false;
	else if (role->rolsuper)
		result = superuser_arg(caller);
	else if (CONNMGR_ALTER_ROLE_NEEDS_ADMIN)
		result = has_createrole_privilege(caller) && is_admin_of_role(caller, target);
	else if (role->rolreplication)
		result = superuser_arg(caller);
	else
		result = has_createrole_privilege(caller);
	ReleaseSysCache(tuple);
	return result;
}

/* The DETAIL of a refused policy change: PostgreSQL's rule for ALTER ROLE. */
static int
errdetail_may_manage_policy(const char *name)
{
	if (CONNMGR_ALTER_ROLE_NEEDS_ADMIN)
		return errdetail("Only roles with the CREATEROLE attribute and ADMIN OPTION on role \"%s\" may change its connection limit; for superuser roles, only superusers.",
						 name);
	return errdetail("Only roles with the CREATEROLE attribute may change connection limits; for superuser and replication roles, only superusers.");
}

/* Raise the error that says why the current user may not change it. */
void
connmgr_check_may_manage_policy(Oid target, const char *name)
{
	if (IsReservedName(name))
		ereport(ERROR,
				(errcode(ERRCODE_RESERVED_NAME),
				 errmsg("role \"%s\" is reserved", name),
				 errdetail("Connection limits cannot be set on reserved roles, "
						   "just as reserved roles cannot be altered.")));
	if (!connmgr_may_manage_policy(GetUserId(), target))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied to change the connection limit of role \"%s\"", name),
				 errdetail_may_manage_policy(name)));
}
