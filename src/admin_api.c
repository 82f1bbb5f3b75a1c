/*
 * admin_api.c
 *		Connection administration beyond ClassDB, in the spirit of Neo4j's
 *		dbms.listConnections / dbms.killConnections and MongoDB's
 *		dropConnections: the rows of the connections view, kills of a list
 *		of connection ids with one result row per element, kills by client
 *		address, and dry runs.
 *
 * Permission rules are those of the ClassDB functions (permissions.c), per
 * target connection; the kills go through terminate.c's one path.
 */
#include "postgres.h"

#include <sys/socket.h>
#include <netinet/in.h>

#include "catalog/pg_type.h"
#include "commands/dbcommands.h"
#include "funcapi.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/inet.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "connmgr.h"
#include "compat.h"

PG_FUNCTION_INFO_V1(connmgr_connection_rows);
PG_FUNCTION_INFO_V1(connmgr_kill_connections);
PG_FUNCTION_INFO_V1(connmgr_kill_client_connections);

/* Whether the caller may see each role, asked once per role. */
typedef struct VisibleRoles
{
	List	   *seen;
	List	   *hidden;
} VisibleRoles;

static bool
may_see(VisibleRoles *cache, Oid role)
{
	if (list_member_oid(cache->seen, role))
		return true;
	if (list_member_oid(cache->hidden, role))
		return false;
	if (connmgr_may_see(GetUserId(), role))
	{
		cache->seen = lappend_oid(cache->seen, role);
		return true;
	}
	cache->hidden = lappend_oid(cache->hidden, role);
	return false;
}

/* A client connection of a role the caller may see. */
static bool
visible_connection(VisibleRoles *cache, const PgBackendStatus *be)
{
	return be != NULL && connmgr_is_client_connection(be) &&
		OidIsValid(be->st_userid) && may_see(cache, be->st_userid);
}

static const char *
state_name(BackendState state)
{
	switch (state)
	{
		case STATE_RUNNING:
			return "running";
		case STATE_IDLE:
			return "idle";
		case STATE_IDLEINTRANSACTION:
			return "idle in transaction";
		case STATE_IDLEINTRANSACTION_ABORTED:
			return "idle in transaction (aborted)";
		case STATE_FASTPATH:
			return "fastpath function call";
		case STATE_DISABLED:
			return "disabled";
#if CONNMGR_HAVE_STATE_STARTING
		case STATE_STARTING:
			return "starting";
#endif
		case STATE_UNDEFINED:
			break;
	}
	return NULL;
}

static void
put_address(const SockAddr *addr, Datum *values, bool *nulls, int at)
{
	int			port;
	const char *host = connmgr_sockaddr_host(addr, &port);

	nulls[at] = nulls[at + 1] = (host == NULL);
	if (host == NULL)
		return;
	values[at] = DirectFunctionCall1(inet_in, CStringGetDatum(host));
	values[at + 1] = Int32GetDatum(port);
}

static Datum
timestamp_or_null(TimestampTz ts, bool *isnull)
{
	*isnull = (ts == 0);
	return TimestampTzGetDatum(ts);
}

/* Order server addresses by pid. */
static int
compare_pids(const void *a, const void *b)
{
	int			pa = ((const ConnmgrServerAddr *) a)->pid;
	int			pb = ((const ConnmgrServerAddr *) b)->pid;

	return (pa > pb) - (pa < pb);
}

#define CONNECTION_COLUMNS 15

/* One row of connmgr.connections. */
static void
put_connection(Tuplestorestate *store, TupleDesc tupdesc, const PgBackendStatus *be,
			   const ConnmgrServerAddr *servers, int nservers)
{
	Datum		values[CONNECTION_COLUMNS];
	bool		nulls[CONNECTION_COLUMNS] = {false};
	const char *user = GetUserNameFromId(be->st_userid, true);
	const char *database = get_database_name(be->st_databaseid);
	const char *state = connmgr_is_waiting(be) ? "waiting" : state_name(be->st_state);
	ConnmgrServerAddr key;
	const ConnmgrServerAddr *server;
	bool		tcp = be->st_clientaddr.addr.ss_family == AF_INET ||
		be->st_clientaddr.addr.ss_family == AF_INET6;

	values[0] = CStringGetTextDatum(connmgr_connection_id(be));
	values[1] = Int32GetDatum(be->st_procpid);
	nulls[2] = user == NULL;
	if (user)
		values[2] = DirectFunctionCall1(namein, CStringGetDatum(user));
	nulls[3] = database == NULL;
	if (database)
		values[3] = DirectFunctionCall1(namein, CStringGetDatum(database));
	values[4] = CStringGetTextDatum(be->st_appname);
	put_address(&be->st_clientaddr, values, nulls, 5);
	nulls[7] = nulls[8] = true;
	key.pid = be->st_procpid;
	server = bsearch(&key, servers, nservers, sizeof(ConnmgrServerAddr), compare_pids);
	if (server != NULL && server->started == be->st_proc_start_timestamp)
		put_address(&server->addr, values, nulls, 7);
	values[9] = CStringGetTextDatum(tcp ? "tcp" : "unix");
	values[10] = BoolGetDatum(be->st_ssl);
	values[11] = timestamp_or_null(be->st_proc_start_timestamp, &nulls[11]);
	values[12] = timestamp_or_null(be->st_activity_start_timestamp, &nulls[12]);
	nulls[13] = state == NULL;
	if (state)
		values[13] = CStringGetTextDatum(state);
	values[14] = timestamp_or_null(be->st_state_start_timestamp, &nulls[14]);
	tuplestore_putvalues(store, tupdesc, values, nulls);
}

Datum
connmgr_connection_rows(PG_FUNCTION_ARGS)
{
	TupleDesc	tupdesc;
	Tuplestorestate *store;
	VisibleRoles cache = {NIL, NIL};
	ConnmgrServerAddr *servers;
	int			nservers;
	int			n;

	connmgr_require_preload();
	store = connmgr_begin_result_set(fcinfo, &tupdesc);
	servers = palloc(sizeof(ConnmgrServerAddr) * MaxBackends);
	nservers = connmgr_server_addresses(servers);
	qsort(servers, nservers, sizeof(ConnmgrServerAddr), compare_pids);
	connmgr_refresh_backends();
	n = connmgr_backend_count();
	for (int i = 1; i <= n; i++)
	{
		PgBackendStatus *be = connmgr_backend_at(i);

		if (visible_connection(&cache, be))
			put_connection(store, tupdesc, be, servers, nservers);
	}
	/* logins waiting for a slot; PostgreSQL 18 lists them without a user */
	n = connmgr_waiting_count();
	for (int i = 1; i <= n; i++)
	{
		PgBackendStatus *be = connmgr_waiting_at(i);

		if (visible_connection(&cache, be))
			put_connection(store, tupdesc, be, servers, nservers);
	}
	return (Datum) 0;
}

/* The optional reason argument, or NULL. */
static const char *
reason_arg(FunctionCallInfo fcinfo, int argno)
{
	return PG_ARGISNULL(argno) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(argno));
}

static bool
dry_run_arg(FunctionCallInfo fcinfo, int argno)
{
	if (PG_ARGISNULL(argno))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("dry_run must not be null")));
	return PG_GETARG_BOOL(argno);
}

/* The elements of a text[] argument (NULL elements as NULL); n = 0 for NULL. */
static void
text_array_arg(FunctionCallInfo fcinfo, int argno, Datum **elems, bool **nulls, int *n)
{
	*n = 0;
	if (PG_ARGISNULL(argno))
		return;
	deconstruct_array(PG_GETARG_ARRAYTYPE_P(argno), TEXTOID, -1, false,
					  TYPALIGN_INT, elems, nulls, n);
}

/*
 * The arguments kill_connections and kill_client_connections share: (items
 * text[], reason text, dry_run boolean); also starts their result set.
 */
typedef struct BatchKillArgs
{
	Datum	   *items;
	bool	   *item_nulls;
	int			n;
	const char *reason;
	bool		dry_run;
	TupleDesc	tupdesc;
	Tuplestorestate *store;
} BatchKillArgs;

static void
batch_kill_args(FunctionCallInfo fcinfo, BatchKillArgs *args)
{
	connmgr_require_preload();
	args->dry_run = dry_run_arg(fcinfo, 2);
	args->store = connmgr_begin_result_set(fcinfo, &args->tupdesc);
	text_array_arg(fcinfo, 0, &args->items, &args->item_nulls, &args->n);
	args->reason = reason_arg(fcinfo, 1);
}

/* The user of a kill's target as a name Datum; *isnull if none is known. */
static Datum
target_user(const ConnmgrKill *kill, bool *isnull)
{
	const char *user = kill && kill->connection_id ?
		GetUserNameFromId(kill->target.userid, true) : NULL;

	*isnull = user == NULL;
	return user ? DirectFunctionCall1(namein, CStringGetDatum(user)) : (Datum) 0;
}

/* A kill request for a connection id or a bare (decimal) pid; false if neither. */
static bool
parse_kill_request(const char *id, ConnmgrKill *kill)
{
	char	   *end;
	long		pid;

	memset(kill, 0, sizeof(*kill));
	if (connmgr_parse_connection_id(id, &kill->pid, &kill->start_seconds))
	{
		kill->by_id = true;
		return true;
	}
	if (id[0] < '0' || id[0] > '9')
		return false;
	errno = 0;
	pid = strtol(id, &end, 10);
	if (*end != '\0' || errno != 0 || pid <= 0 || pid > PG_INT32_MAX)
		return false;
	kill->pid = (int) pid;
	return true;
}

/*
 * kill_connections(ids text[], reason text, dry_run boolean): one row per
 * element, in order, duplicates included.  kill_connection(id, reason) is
 * the same function called with a one-element array.
 */
Datum
connmgr_kill_connections(PG_FUNCTION_ARGS)
{
	BatchKillArgs args;
	bool	   *valid;
	ConnmgrKill *kills;
	int			nkills = 0;

	batch_kill_args(fcinfo, &args);
	valid = palloc(sizeof(bool) * Max(args.n, 1));
	kills = palloc0(sizeof(ConnmgrKill) * Max(args.n, 1));

	for (int i = 0; i < args.n; i++)
	{
		valid[i] = !args.item_nulls[i] &&
			parse_kill_request(TextDatumGetCString(args.items[i]), &kills[nkills]);
		if (valid[i])
			nkills++;
	}
	connmgr_kill(kills, nkills, args.reason, args.dry_run);

	for (int i = 0, k = 0; i < args.n; i++)
	{
		Datum		values[3];
		bool		nulls[3] = {false};
		ConnmgrKill *kill = valid[i] ? &kills[k++] : NULL;

		nulls[0] = args.item_nulls[i];
		values[0] = args.item_nulls[i] ? (Datum) 0 : args.items[i];
		values[1] = target_user(kill, &nulls[1]);
		values[2] = CStringGetTextDatum(kill ? connmgr_kill_message(kill) : "Invalid connection id");
		tuplestore_putvalues(args.store, args.tupdesc, values, nulls);
	}
	return (Datum) 0;
}

/* A client address pattern: an address with an optional port, or a CIDR. */
typedef struct AddressPattern
{
	int			family;			/* PGSQL_AF_INET or PGSQL_AF_INET6 */
	unsigned char bytes[16];
	int			bits;			/* prefix length that must match */
	int			port;			/* 0: any */
} AddressPattern;

/* A port: 1 to 65535 in decimal digits only (no sign, no blanks). */
static bool
parse_port(const char *text, int *port)
{
	size_t		digits = strspn(text, "0123456789");

	if (digits == 0 || digits > 5 || text[digits] != '\0')
		return false;
	*port = atoi(text);
	return *port >= 1 && *port <= 65535;
}

/*
 * Parse '10.1.2.3', '10.1.2.3:54321', '::1', '[::1]:5000' or a CIDR such
 * as '10.1.2.0/24' (a CIDR takes no port).  False for anything else.
 */
static bool
parse_address_pattern(const char *text, AddressPattern *pattern)
{
	char	   *host = pstrdup(text);
	char	   *port = NULL;
	char	   *colon = strrchr(host, ':');

	memset(pattern, 0, sizeof(*pattern));
	if (host[0] == '[')
	{
		char	   *close = strchr(host, ']');

		if (close == NULL || (close[1] != '\0' && close[1] != ':'))
			return false;
		*close = '\0';
		port = close[1] == ':' ? close + 2 : NULL;
		host++;
	}
	else if (colon != NULL && strchr(host, ':') == colon)
	{
		*colon = '\0';			/* one colon: IPv4 with a port */
		port = colon + 1;
	}
	if (port != NULL &&
		(strchr(host, '/') != NULL || !parse_port(port, &pattern->port)))
		return false;
	pattern->family = strchr(host, ':') ? PGSQL_AF_INET6 : PGSQL_AF_INET;
	pattern->bits = pg_inet_net_pton(pattern->family, host, pattern->bytes, -1);
	return pattern->bits >= 0;
}

/* Does the client address of be match the pattern? */
static bool
address_matches(const PgBackendStatus *be, const AddressPattern *pattern)
{
	const struct sockaddr_storage *addr = &be->st_clientaddr.addr;
	const unsigned char *bytes;
	int			port;
	int			whole = pattern->bits / 8;
	int			rest = pattern->bits % 8;

	if (pattern->family == PGSQL_AF_INET && addr->ss_family == AF_INET)
	{
		bytes = (const unsigned char *) &((const struct sockaddr_in *) addr)->sin_addr;
		port = ntohs(((const struct sockaddr_in *) addr)->sin_port);
	}
	else if (pattern->family == PGSQL_AF_INET6 && addr->ss_family == AF_INET6)
	{
		bytes = (const unsigned char *) &((const struct sockaddr_in6 *) addr)->sin6_addr;
		port = ntohs(((const struct sockaddr_in6 *) addr)->sin6_port);
	}
	else
		return false;
	if (pattern->port != 0 && pattern->port != port)
		return false;
	if (memcmp(bytes, pattern->bytes, whole) != 0)
		return false;
	return rest == 0 ||
		((bytes[whole] ^ pattern->bytes[whole]) & (0xFF << (8 - rest)) & 0xFF) == 0;
}

/* The client connections the caller may see; returns how many. */
static int
visible_connections(PgBackendStatus ***result)
{
	VisibleRoles cache = {NIL, NIL};
	int			n = connmgr_backend_count();
	int			count = 0;
	PgBackendStatus **found = palloc(sizeof(PgBackendStatus *) * Max(n, 1));

	for (int i = 1; i <= n; i++)
	{
		PgBackendStatus *be = connmgr_backend_at(i);

		if (visible_connection(&cache, be))
			found[count++] = be;
	}
	*result = found;
	return count;
}

/* Kill requests, grown as they are found. */
typedef struct KillList
{
	ConnmgrKill *kills;
	int			n;
	int			room;
} KillList;

/*
 * Add a kill request to list for every connection of conns from the
 * pattern's address; returns how many.
 */
static int
connections_from(const AddressPattern *pattern, PgBackendStatus **conns, int nconns,
				 KillList *list)
{
	int			found = 0;

	for (int i = 0; i < nconns; i++)
	{
		ConnmgrKill *kill;

		if (!address_matches(conns[i], pattern))
			continue;
		if (list->n == list->room)
		{
			list->room *= 2;
			list->kills = repalloc(list->kills, sizeof(ConnmgrKill) * list->room);
		}
		kill = &list->kills[list->n++];
		memset(kill, 0, sizeof(ConnmgrKill));
		kill->pid = conns[i]->st_procpid;
		kill->started = conns[i]->st_proc_start_timestamp;
		found++;
	}
	return found;
}

/*
 * kill_client_connections(addresses text[], reason text, dry_run boolean):
 * for each element, one row per connection from that address that the
 * caller may see, or one row saying that there is none or that the element
 * is not an address.  Memory grows with the elements and the connections
 * found, not with elements times max_connections: what one element needs
 * to be parsed, and its rows, are freed before the next.
 */
Datum
connmgr_kill_client_connections(PG_FUNCTION_ARGS)
{
	BatchKillArgs args;
	int		   *first;			/* each element's first kill, -1: invalid */
	int		   *count;			/* and how many it has */
	KillList	list = {NULL, 0, 16};
	PgBackendStatus **conns;
	int			nconns;
	MemoryContext element_cxt;
	MemoryContext old_cxt;

	batch_kill_args(fcinfo, &args);
	first = palloc(sizeof(int) * Max(args.n, 1));
	count = palloc0(sizeof(int) * Max(args.n, 1));
	list.kills = palloc(sizeof(ConnmgrKill) * list.room);
	element_cxt = AllocSetContextCreate(CurrentMemoryContext, "connmgr address element",
										ALLOCSET_SMALL_SIZES);

	connmgr_refresh_backends();
	nconns = visible_connections(&conns);
	for (int i = 0; i < args.n; i++)
	{
		AddressPattern pattern;
		bool		valid;

		CHECK_FOR_INTERRUPTS();
		old_cxt = MemoryContextSwitchTo(element_cxt);
		valid = !args.item_nulls[i] &&
			parse_address_pattern(TextDatumGetCString(args.items[i]), &pattern);
		MemoryContextSwitchTo(old_cxt);
		MemoryContextReset(element_cxt);
		first[i] = valid ? list.n : -1;
		if (valid)
			count[i] = connections_from(&pattern, conns, nconns, &list);
	}
	connmgr_kill(list.kills, list.n, args.reason, args.dry_run);

	for (int i = 0; i < args.n; i++)
	{
		CHECK_FOR_INTERRUPTS();
		old_cxt = MemoryContextSwitchTo(element_cxt);
		for (int k = 0; k < Max(count[i], 1); k++)
		{
			Datum		values[4];
			bool		nulls[4] = {false};
			ConnmgrKill *kill = count[i] > 0 ? &list.kills[first[i] + k] : NULL;

			nulls[0] = args.item_nulls[i];
			values[0] = args.item_nulls[i] ? (Datum) 0 : args.items[i];
			nulls[1] = kill == NULL || kill->connection_id == NULL;
			if (!nulls[1])
				values[1] = CStringGetTextDatum(kill->connection_id);
			values[2] = target_user(kill, &nulls[2]);
			values[3] = CStringGetTextDatum(kill ? connmgr_kill_message(kill) :
											first[i] < 0 ? "Invalid address" :
											"No connection found from this address");
			tuplestore_putvalues(args.store, args.tupdesc, values, nulls);
		}
		MemoryContextSwitchTo(old_cxt);
		MemoryContextReset(element_cxt);
	}
	return (Datum) 0;
}
