/*
 * compat.h
 *		The differences between the PostgreSQL releases connmgr supports
 *		(15 to 18), in one place.  Other files use these names and never
 *		test PG_VERSION_NUM themselves.
 */
#ifndef CONNMGR_COMPAT_H
#define CONNMGR_COMPAT_H

#if PG_VERSION_NUM < 150000
#error "connmgr requires PostgreSQL 15 or later"
#endif

#include "postmaster/postmaster.h"
#include "storage/proc.h"

/* This backend's index among the PGPROC entries (0 .. MaxBackends - 1). */
#if PG_VERSION_NUM >= 170000
#define CONNMGR_MY_PROC_INDEX	MyProcNumber
#else
#define CONNMGR_MY_PROC_INDEX	(MyProc->pgprocno)
#endif

/* The backend status entry at index 1 .. pgstat_fetch_stat_numbackends(). */
#if PG_VERSION_NUM >= 160000
#define connmgr_local_beentry(i)	pgstat_get_local_beentry_by_index(i)
#else
#define connmgr_local_beentry(i)	pgstat_fetch_stat_local_beentry(i)
#endif

/* Connection slots that max_connections keeps from ordinary roles. */
#if PG_VERSION_NUM >= 160000
#define CONNMGR_RESERVED_CONNECTIONS (SuperuserReservedConnections + ReservedConnections)
#else
#define CONNMGR_RESERVED_CONNECTIONS ReservedBackends
#endif

/*
 * PostgreSQL 18 reports a backend that is still starting up (authenticating)
 * in its own state, STATE_STARTING ("starting" in pg_stat_activity).
 */
#if PG_VERSION_NUM >= 180000
#define CONNMGR_HAVE_STATE_STARTING 1
#else
#define CONNMGR_HAVE_STATE_STARTING 0
#endif

/*
 * Role administration.  From PostgreSQL 16 on, a membership grant carries
 * its own INHERIT option (before, the member's rolinherit decided for all
 * its grants), and altering a role takes CREATEROLE plus ADMIN OPTION on it
 * (before, CREATEROLE alone, and superuser for replication roles).
 */
#if PG_VERSION_NUM >= 160000
#define CONNMGR_GRANTS_HAVE_INHERIT_OPTION	true
#define CONNMGR_ALTER_ROLE_NEEDS_ADMIN		true
#define connmgr_grant_inherit_option(grant) ((grant)->inherit_option)
#else
#define CONNMGR_GRANTS_HAVE_INHERIT_OPTION	false
#define CONNMGR_ALTER_ROLE_NEEDS_ADMIN		false
#define connmgr_grant_inherit_option(grant) true
#endif

/* Are more than n backend slots (PGPROCs of ordinary backends) free? */
static inline bool
connmgr_more_free_procs_than(int n)
{
#if PG_VERSION_NUM >= 160000
	int			nfree;

	return HaveNFreeProcs(n + 1, &nfree);
#else
	return HaveNFreeProcs(n + 1);
#endif
}

#endif							/* CONNMGR_COMPAT_H */
