/*
 * hooks.c
 *		The hooks connmgr installs into PostgreSQL; each chains to the hook
 *		installed before it, then hands its one job to the file that owns
 *		it.
 *
 * ClientAuthentication_hook: a successful authentication of a role that may
 * log in is registered in shared memory, so that the connection has an
 * identity and can be told why connmgr ends it (shmem.c); then, except for
 * superusers and physical replication connections, the connection limits
 * are applied (limits.c: client backends, and logical replication
 * connections, which can run ordinary SQL too); an admitted login is
 * counted and logged as an event (stats.c).
 *
 * ProcessUtility_hook: COMMIT PREPARED marks its transaction, so that the
 * login cache learns of the prepared transaction's changes once they are
 * visible (cache.c).
 *
 * emit_log_hook, on the FATAL that ends a backend: "terminating connection
 * due to administrator command" gets the DETAIL of who ended the
 * connection and why, and becomes PostgreSQL's own FATAL for an idle
 * timeout when one expired (terminate.c); "too many connections" (53300), by
 * connmgr or by PostgreSQL's own limits, counts as a refusal, and a failed
 * authentication (class 28: wrong password, no pg_hba.conf entry, no such
 * role) as auth_failed (stats.c).
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/pg_authid.h"
#include "libpq/auth.h"
#include "libpq/libpq-be.h"
#include "replication/walsender.h"
#include "storage/proc.h"
#include "tcop/utility.h"
#include "utils/elog.h"
#include "utils/syscache.h"

#include "connmgr.h"

static ClientAuthentication_hook_type prev_client_auth_hook = NULL;
static emit_log_hook_type prev_emit_log_hook = NULL;
static ProcessUtility_hook_type prev_process_utility_hook = NULL;

/*
 * The role a client authenticated as: InvalidOid if there is no such role.
 * *can_login tells whether it may log in (PostgreSQL refuses a NOLOGIN
 * role right after authentication), *super whether it is a superuser.
 */
static Oid
login_role(const char *name, bool *can_login, bool *super)
{
	HeapTuple	tuple = SearchSysCache1(AUTHNAME, CStringGetDatum(name));
	Oid			role = InvalidOid;

	*can_login = *super = false;
	if (HeapTupleIsValid(tuple))
	{
		Form_pg_authid form = (Form_pg_authid) GETSTRUCT(tuple);

		role = form->oid;
		*can_login = form->rolcanlogin;
		*super = form->rolsuper;
		ReleaseSysCache(tuple);
	}
	return role;
}

static void
connmgr_client_auth(Port *port, int status)
{
	Oid			user;
	bool		can_login;
	bool		super;

	if (prev_client_auth_hook)
		prev_client_auth_hook(port, status);

	user = login_role(port->user_name, &can_login, &super);
	connmgr_stats_remember_login(port, OidIsValid(user));
	if (status != STATUS_OK || !OidIsValid(user) || !can_login)
		return;					/* PostgreSQL refuses it next */
	connmgr_register_backend(&port->laddr);
	connmgr_prepare_text_conversion();
	if (!super && !(am_walsender && !am_db_walsender))
		connmgr_enforce_limits(user, port->database_name);
	connmgr_login_admitted();
}

/*
 * Count a refusal or failed authentication, reported by a FATAL during
 * startup.  One that comes before authentication (PostgreSQL's "too many
 * clients already", before the backend has a PGPROC) is remembered here,
 * without knowing whether its user name is a role: no catalog can be read.
 */
static void
count_failed_login(ConnmgrStat what, ConnmgrEventKind event)
{
	if (MyProcPort == NULL)
		return;
	if (!connmgr_stats_login_known())
		connmgr_stats_remember_login(MyProcPort, false);
	connmgr_stats_count(what);
	connmgr_stats_event(event, NULL);
}

static void
connmgr_emit_log(ErrorData *edata)
{
	if (prev_emit_log_hook)
		prev_emit_log_hook(edata);
	if (edata->elevel != FATAL)
		return;
	if (edata->sqlerrcode == ERRCODE_ADMIN_SHUTDOWN)
		connmgr_tell_victim(edata);
	else if (edata->sqlerrcode == ERRCODE_TOO_MANY_CONNECTIONS)
		count_failed_login(STAT_REJECTED, EVENT_REJECT);
	else if (ERRCODE_TO_CATEGORY(edata->sqlerrcode) ==
			 ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION)
		count_failed_login(STAT_AUTH_FAILED, EVENT_AUTH_FAILED);
}

static bool
is_commit_prepared(const Node *stmt)
{
	return IsA(stmt, TransactionStmt) &&
		((const TransactionStmt *) stmt)->kind == TRANS_STMT_COMMIT_PREPARED;
}

static void
connmgr_process_utility(PlannedStmt *pstmt, const char *queryString,
						bool readOnlyTree, ProcessUtilityContext context,
						ParamListInfo params, QueryEnvironment *queryEnv,
						DestReceiver *dest, QueryCompletion *qc)
{
	if (is_commit_prepared(pstmt->utilityStmt))
		connmgr_cache_note_commit_prepared();
	if (prev_process_utility_hook)
		prev_process_utility_hook(pstmt, queryString, readOnlyTree, context,
								  params, queryEnv, dest, qc);
	else
		standard_ProcessUtility(pstmt, queryString, readOnlyTree, context,
								params, queryEnv, dest, qc);
}

/* Called from _PG_init. */
void
connmgr_install_hooks(void)
{
	prev_client_auth_hook = ClientAuthentication_hook;
	ClientAuthentication_hook = connmgr_client_auth;
	prev_emit_log_hook = emit_log_hook;
	emit_log_hook = connmgr_emit_log;
	prev_process_utility_hook = ProcessUtility_hook;
	ProcessUtility_hook = connmgr_process_utility;
}
