/*
 * backends.c
 *		The server's current backends, as pg_stat_activity sees them.
 *
 * All reads go through the backend status snapshot that pgstat takes once
 * per transaction (no ProcArrayLock).  The entries returned here stay valid
 * until connmgr_refresh_backends() or the end of the transaction.
 */
#include "postgres.h"

#include <sys/socket.h>
#include <netdb.h>

#include "common/ip.h"
#include "pgstat.h"
#include "utils/builtins.h"

#include "connmgr.h"
#include "compat.h"

int
connmgr_backend_count(void)
{
	return pgstat_fetch_stat_numbackends();
}

/* index runs from 1 to connmgr_backend_count() */
PgBackendStatus *
connmgr_backend_at(int index)
{
	LocalPgBackendStatus *local = connmgr_local_beentry(index);

	return local ? &local->backendStatus : NULL;
}

/* The backend with this pid, or NULL if there is none (pid <= 0 included). */
PgBackendStatus *
connmgr_find_backend(int pid)
{
	int			n = connmgr_backend_count();

	if (pid <= 0)
		return NULL;
	for (int i = 1; i <= n; i++)
	{
		PgBackendStatus *be = connmgr_backend_at(i);

		if (be != NULL && be->st_procpid == pid)
			return be;
	}
	return NULL;
}

/*
 * Drop the backend status snapshot so that the next read sees the backends
 * as they are now.  This leaves the transaction's cumulative statistics
 * snapshot alone.
 */
void
connmgr_refresh_backends(void)
{
	pgstat_clear_backend_activity_snapshot();
}

/*
 * A client connection is a regular backend or a walsender: something a
 * client opened and that terminating ends.  Background workers, autovacuum
 * and auxiliary processes are not.
 */
bool
connmgr_is_client_connection(const PgBackendStatus *be)
{
	return be->st_backendType == B_BACKEND ||
		be->st_backendType == B_WAL_SENDER;
}

/*
 * The client's IP address as text, or NULL for Unix-socket connections and
 * backends without a client.  Any IPv6 zone suffix is dropped, since inet
 * cannot hold it.
 */
const char *
connmgr_client_addr_text(const PgBackendStatus *be)
{
	const SockAddr *addr = &be->st_clientaddr;
	char		host[NI_MAXHOST];
	char	   *zone;

	if (addr->addr.ss_family != AF_INET && addr->addr.ss_family != AF_INET6)
		return NULL;
	if (pg_getnameinfo_all(&addr->addr, addr->salen, host, sizeof(host),
						   NULL, 0, NI_NUMERICHOST | NI_NUMERICSERV) != 0)
		return NULL;
	zone = strchr(host, '%');
	if (zone != NULL)
		*zone = '\0';
	return pstrdup(host);
}

Datum
connmgr_client_addr_datum(const PgBackendStatus *be, bool *isnull)
{
	const char *host = connmgr_client_addr_text(be);

	*isnull = (host == NULL);
	if (host == NULL)
		return (Datum) 0;
	return DirectFunctionCall1(inet_in, CStringGetDatum(host));
}
