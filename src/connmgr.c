/*
 * connmgr.c
 *		Module entry point: _PG_init, the GUCs, and the preload check.
 *
 * connmgr must be listed in shared_preload_libraries: it hooks into client
 * authentication of every backend and keeps counters in shared memory,
 * which only the postmaster can set up; its security label provider must
 * be known to every backend too.  Loaded any other way, _PG_init does
 * nothing and every SQL-callable function refuses to run with a hint that
 * says how to fix the configuration.
 */
#include "postgres.h"

#include <limits.h>

#include "fmgr.h"
#include "miscadmin.h"
#include "postmaster/postmaster.h"
#include "utils/guc.h"

#include "connmgr.h"

PG_MODULE_MAGIC;

/* GUCs; see README.md, "Configuration" */
int			connmgr_terminate_timeout_ms = 5000;
bool		connmgr_enabled = true;
int			connmgr_evict_min_idle_ms = 60000;
int			connmgr_max_tracked_roles = 10000;
int			connmgr_max_role_stats = 1000;
int			connmgr_event_log_size = 500;
int			connmgr_warning_pct = 80;
int			connmgr_critical_pct = 95;
int			connmgr_login_cache_size = 256;
int			connmgr_limit_grace_ms = 50;
int			connmgr_wait_timeout_ms = 10000;
int			connmgr_max_waiting = 50;
int			connmgr_max_waiting_per_user = 10;
int			connmgr_wait_reserve = 5;
int			connmgr_idle_check_interval_ms = 10000;

static bool connmgr_preloaded = false;

void		_PG_init(void);

static void
define_gucs(void)
{
	DefineCustomBoolVariable("connmgr.enabled",
							 "Enforces connection-limit policies at login.",
							 "When off, logins are still counted but no policy refuses or evicts anything.",
							 &connmgr_enabled,
							 true,
							 PGC_SIGHUP,
							 0,
							 NULL, NULL, NULL);

	DefineCustomIntVariable("connmgr.evict_min_idle",
							"How long a connection must have been idle before evict_idle may end it.",
							NULL,
							&connmgr_evict_min_idle_ms,
							60000,
							0,
							INT_MAX,
							PGC_SIGHUP,
							GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomIntVariable("connmgr.max_tracked_roles",
							"How many roles the shared connection counters can hold at once.",
							"Each connected role and each of its groups takes one entry.",
							&connmgr_max_tracked_roles,
							10000,
							100,
							1000000,
							PGC_POSTMASTER,
							0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("connmgr.terminate_timeout",
							"How long a terminated connection is waited for before giving up.",
							"A kill reports success only once the connection has exited; "
							"after this long it reports failure instead.  Eviction waits as long.",
							&connmgr_terminate_timeout_ms,
							5000,
							0,
							300000,
							PGC_USERSET,
							GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomIntVariable("connmgr.max_role_stats",
							"How many role names the connection statistics can hold at once.",
							"When full, further roles' counters are not kept; the server totals still count them.",
							&connmgr_max_role_stats,
							1000,
							100,
							1000000,
							PGC_POSTMASTER,
							0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("connmgr.event_log_size",
							"How many connection events the event log keeps.",
							"The oldest events are overwritten; 0 turns the event log off.",
							&connmgr_event_log_size,
							500,
							0,
							1000000,
							PGC_POSTMASTER,
							0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("connmgr.warning_pct",
							"Usage of a connection limit, in percent, from which role_activity reports warning.",
							NULL,
							&connmgr_warning_pct,
							80,
							1,
							100,
							PGC_SIGHUP,
							0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("connmgr.critical_pct",
							"Usage of a connection limit, in percent, from which role_activity reports critical.",
							NULL,
							&connmgr_critical_pct,
							95,
							1,
							100,
							PGC_SIGHUP,
							0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("connmgr.limit_grace",
							"How long a login at a limit waits for a slot that is being released.",
							"A client that closes a connection and opens the next at once would otherwise "
							"be refused while the old connection is still exiting.  0 refuses at once.",
							&connmgr_limit_grace_ms,
							50,
							0,
							10000,
							PGC_SIGHUP,
							GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomIntVariable("connmgr.wait_timeout",
							"How long a login waits for a slot under a policy with on_limit wait.",
							"A policy's own wait_timeout overrides it.  Waiting ends before authentication_timeout in any case.",
							&connmgr_wait_timeout_ms,
							10000,
							1,
							600000,
							PGC_SIGHUP,
							GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomIntVariable("connmgr.max_waiting",
							"How many logins may wait for a slot of one limit with on_limit wait.",
							"A policy's own max_waiting overrides it.  Each waiting login holds a backend.",
							&connmgr_max_waiting,
							50,
							1,
							10000,
							PGC_SIGHUP,
							0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("connmgr.max_waiting_per_user",
							"How many logins of one role may wait for connection slots at once.",
							"Each waiting login holds a backend.",
							&connmgr_max_waiting_per_user,
							10,
							1,
							10000,
							PGC_SIGHUP,
							0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("connmgr.wait_reserve",
							"Connection slots that waiting logins leave free for other logins.",
							"Counted on top of the slots PostgreSQL reserves for superusers (and, from PostgreSQL 16, for reserved_connections).  A login does not wait when no more slots than these are free, and the last login to start waiting gives up when other logins take them.",
							&connmgr_wait_reserve,
							5,
							0,
							MAX_BACKENDS,
							PGC_SIGHUP,
							0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("connmgr.idle_check_interval",
							"How often the idle worker looks for connections past their idle timeouts.",
							NULL,
							&connmgr_idle_check_interval_ms,
							10000,
							100,
							3600000,
							PGC_SIGHUP,
							GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomIntVariable("connmgr.login_cache_size",
							"Shared memory for the cache of what logins need.",
							"A login whose answer is cached reads no catalog; 0 turns the cache off.",
							&connmgr_login_cache_size,
							256,
							0,
							1024 * 1024,
							PGC_POSTMASTER,
							GUC_UNIT_KB,
							NULL, NULL, NULL);

	MarkGUCPrefixReserved("connmgr");
}

void
_PG_init(void)
{
	if (!process_shared_preload_libraries_in_progress)
		return;

	connmgr_preloaded = true;
	define_gucs();
	connmgr_install_shmem_hooks();
	connmgr_install_hooks();
	connmgr_cache_register_callbacks();
	connmgr_register_idle_worker();
	connmgr_register_label_provider();
}

/*
 * Raise an error unless the library was loaded through
 * shared_preload_libraries.  Every SQL-callable function starts with this.
 */
void
connmgr_require_preload(void)
{
	if (!connmgr_preloaded)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("connmgr must be loaded via shared_preload_libraries"),
				 errhint("Add connmgr to shared_preload_libraries in postgresql.conf, "
						 "for example shared_preload_libraries = 'connmgr', "
						 "and restart the server.")));
}

PG_FUNCTION_INFO_V1(connmgr_check_preload);

/*
 * SQL-callable form of the preload check, used by the install script so
 * that CREATE EXTENSION fails where the functions could not work.
 */
Datum
connmgr_check_preload(PG_FUNCTION_ARGS)
{
	connmgr_require_preload();
	PG_RETURN_VOID();
}
