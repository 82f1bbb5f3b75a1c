/*
 * connmgr.c
 *		Module entry point: _PG_init, the GUCs, and the preload check.
 *
 * connmgr must be listed in shared_preload_libraries: later parts hook into
 * client authentication and keep state in shared memory, which is only
 * possible from the postmaster.  Loaded any other way, _PG_init does
 * nothing and every SQL-callable function refuses to run with a hint that
 * says how to fix the configuration.
 */
#include "postgres.h"

#include "fmgr.h"
#include "miscadmin.h"
#include "utils/guc.h"

#include "connmgr.h"

PG_MODULE_MAGIC;

/* How long the kill functions wait for a terminated connection to exit. */
int			connmgr_terminate_timeout_ms = 5000;

static bool connmgr_preloaded = false;

void		_PG_init(void);

static void
define_gucs(void)
{
	DefineCustomIntVariable("connmgr.terminate_timeout",
							"How long the kill functions wait for a terminated connection to exit.",
							"A kill reports success only once the connection has exited; "
							"after this long it reports failure instead.",
							&connmgr_terminate_timeout_ms,
							5000,
							0,
							300000,
							PGC_USERSET,
							GUC_UNIT_MS,
							NULL, NULL, NULL);

#if PG_VERSION_NUM >= 150000
	MarkGUCPrefixReserved("connmgr");
#else
	EmitWarningsOnPlaceholders("connmgr");
#endif
}

void
_PG_init(void)
{
	if (!process_shared_preload_libraries_in_progress)
		return;

	connmgr_preloaded = true;
	define_gucs();
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
