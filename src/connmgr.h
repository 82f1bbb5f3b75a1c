/*
 * connmgr.h
 *		Declarations shared by the files of connmgr.
 *
 * Each .c file owns one concern; this header lists what each one offers the
 * others.  See README.md, "Where things live".
 */
#ifndef CONNMGR_H
#define CONNMGR_H

#include "postgres.h"

#include "miscadmin.h"
#if PG_VERSION_NUM >= 140000
#include "utils/backend_status.h"
#else
#include "pgstat.h"
#endif

/* connmgr.c: module entry point, GUCs */
extern int	connmgr_terminate_timeout_ms;
extern void connmgr_require_preload(void);

/* backends.c: the current backends, as pg_stat_activity sees them */
extern int	connmgr_backend_count(void);
extern PgBackendStatus *connmgr_backend_at(int index);
extern PgBackendStatus *connmgr_find_backend(int pid);
extern bool connmgr_is_client_connection(const PgBackendStatus *be);
extern Datum connmgr_client_addr_datum(const PgBackendStatus *be, bool *isnull);
extern const char *connmgr_client_addr_text(const PgBackendStatus *be);
extern void connmgr_refresh_backends(void);

/* permissions.c: who may see and terminate whose connections */
extern bool connmgr_may_terminate(Oid caller, Oid target, bool walsender);
extern bool connmgr_may_see(Oid caller, Oid target);
extern List *connmgr_roles_containing(Oid roleid, bool inherited_only);

/* terminate.c: ending connections and waiting until they are gone */
extern bool connmgr_terminate_connections(PgBackendStatus **targets, int ntargets,
										  bool *gone);

#endif							/* CONNMGR_H */
