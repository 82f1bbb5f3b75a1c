/* connmgr install script, version 1.0 */

\echo Use "CREATE EXTENSION connmgr" to load this file. \quit

-- The extension creates and owns its schemas: CREATE EXTENSION fails if a
-- schema of that name already exists (someone could have filled it with
-- look-alike functions), and DROP EXTENSION removes them.  connmgr holds
-- the API; connmgr_internal the functions behind its views.
CREATE SCHEMA connmgr;
CREATE SCHEMA connmgr_internal;
COMMENT ON SCHEMA connmgr IS
    'connmgr: list, terminate and limit connections';
COMMENT ON SCHEMA connmgr_internal IS
    'connmgr: the functions behind the views of schema connmgr; not an API';

-- connmgr's functions only work when the library is preloaded: refuse to
-- install anywhere else, with a hint that says how to fix it.
CREATE FUNCTION connmgr_internal.check_preload() RETURNS void
    AS 'MODULE_PATHNAME', 'connmgr_check_preload'
    LANGUAGE C STRICT;
SELECT connmgr_internal.check_preload();
DROP FUNCTION connmgr_internal.check_preload();

-- Every caller may run the API; the C code decides per target connection
-- and per role what the caller may see, terminate and change.
GRANT USAGE ON SCHEMA connmgr TO PUBLIC;
GRANT USAGE ON SCHEMA connmgr_internal TO PUBLIC;

-- ClassDB-compatible API.  STRICT: a NULL name gives no rows, as in ClassDB.
CREATE FUNCTION connmgr.listUserConnections(userName VARCHAR(63))
    RETURNS TABLE (userName VARCHAR(63),
                   pid INT,
                   applicationName VARCHAR(63),
                   clientAddress INET,
                   connectionStartTime TIMESTAMPTZ,
                   lastQueryStartTime TIMESTAMPTZ)
    AS 'MODULE_PATHNAME', 'connmgr_list_user_connections'
    LANGUAGE C VOLATILE STRICT;

CREATE FUNCTION connmgr.killConnection(pid INT)
    RETURNS BOOLEAN
    AS 'MODULE_PATHNAME', 'connmgr_kill_connection'
    LANGUAGE C VOLATILE STRICT;

CREATE FUNCTION connmgr.killUserConnections(userName VARCHAR(63))
    RETURNS TABLE (pid INT, success BOOLEAN)
    AS 'MODULE_PATHNAME', 'connmgr_kill_user_connections'
    LANGUAGE C VOLATILE STRICT;

-- Text overloads: a quoted literal resolves to these (text is the
-- preferred string type); names are read like SQL identifiers.
CREATE FUNCTION connmgr.listUserConnections(userName TEXT)
    RETURNS TABLE (userName VARCHAR(63),
                   pid INT,
                   applicationName VARCHAR(63),
                   clientAddress INET,
                   connectionStartTime TIMESTAMPTZ,
                   lastQueryStartTime TIMESTAMPTZ)
    AS 'MODULE_PATHNAME', 'connmgr_list_user_connections'
    LANGUAGE C VOLATILE STRICT;

CREATE FUNCTION connmgr.killUserConnections(userName TEXT)
    RETURNS TABLE (pid INT, success BOOLEAN)
    AS 'MODULE_PATHNAME', 'connmgr_kill_user_connections'
    LANGUAGE C VOLATILE STRICT;

-- Name overloads: a value of type name (current_user, pg_roles.rolname) is
-- a role name already and is taken exactly, never folded.
CREATE FUNCTION connmgr.listUserConnections(userName NAME)
    RETURNS TABLE (userName VARCHAR(63),
                   pid INT,
                   applicationName VARCHAR(63),
                   clientAddress INET,
                   connectionStartTime TIMESTAMPTZ,
                   lastQueryStartTime TIMESTAMPTZ)
    AS 'MODULE_PATHNAME', 'connmgr_list_user_connections'
    LANGUAGE C VOLATILE STRICT;

CREATE FUNCTION connmgr.killUserConnections(userName NAME)
    RETURNS TABLE (pid INT, success BOOLEAN)
    AS 'MODULE_PATHNAME', 'connmgr_kill_user_connections'
    LANGUAGE C VOLATILE STRICT;

COMMENT ON FUNCTION connmgr.listUserConnections(VARCHAR) IS
    'client connections of a user that the caller may see, oldest first (ClassDB-compatible)';
COMMENT ON FUNCTION connmgr.killConnection(INT) IS
    'terminate one connection and wait until it is gone (ClassDB-compatible)';
COMMENT ON FUNCTION connmgr.killUserConnections(VARCHAR) IS
    'terminate every connection of a user the caller may terminate, one row each (ClassDB-compatible)';
COMMENT ON FUNCTION connmgr.listUserConnections(TEXT) IS
    'listUserConnections for text arguments, read like SQL identifiers';
COMMENT ON FUNCTION connmgr.killUserConnections(TEXT) IS
    'killUserConnections for text arguments, read like SQL identifiers';
COMMENT ON FUNCTION connmgr.listUserConnections(NAME) IS
    'listUserConnections for role names of type name such as current_user, taken exactly';
COMMENT ON FUNCTION connmgr.killUserConnections(NAME) IS
    'killUserConnections for role names of type name such as current_user, taken exactly';

-- Connection-limit policies, stored as security labels on roles (provider
-- "connmgr") and enforced by the library at login.  Permission checks are
-- in C: PostgreSQL's own rules for who may ALTER the role.  Role names are
-- read like SQL identifiers, as by the ClassDB functions.
CREATE FUNCTION connmgr.set_connection_limit(role_name text,
                                             per_member integer DEFAULT NULL,
                                             total integer DEFAULT NULL,
                                             on_limit text DEFAULT 'reject',
                                             wait_timeout interval DEFAULT NULL,
                                             max_waiting integer DEFAULT NULL,
                                             idle_timeout interval DEFAULT NULL,
                                             idle_in_transaction_timeout interval DEFAULT NULL)
    RETURNS void
    AS 'MODULE_PATHNAME', 'connmgr_set_connection_limit'
    LANGUAGE C VOLATILE;

CREATE FUNCTION connmgr.drop_connection_limit(role_name text)
    RETURNS boolean
    AS 'MODULE_PATHNAME', 'connmgr_drop_connection_limit'
    LANGUAGE C VOLATILE;

-- The same for a value of type name (pg_roles.rolname,
-- connection_limits.role_name): taken exactly, never folded.
CREATE FUNCTION connmgr.set_connection_limit(role_name name,
                                             per_member integer DEFAULT NULL,
                                             total integer DEFAULT NULL,
                                             on_limit text DEFAULT 'reject',
                                             wait_timeout interval DEFAULT NULL,
                                             max_waiting integer DEFAULT NULL,
                                             idle_timeout interval DEFAULT NULL,
                                             idle_in_transaction_timeout interval DEFAULT NULL)
    RETURNS void
    AS 'MODULE_PATHNAME', 'connmgr_set_connection_limit'
    LANGUAGE C VOLATILE;

CREATE FUNCTION connmgr.drop_connection_limit(role_name name)
    RETURNS boolean
    AS 'MODULE_PATHNAME', 'connmgr_drop_connection_limit'
    LANGUAGE C VOLATILE;

CREATE FUNCTION connmgr.export_policies()
    RETURNS SETOF text
    AS 'MODULE_PATHNAME', 'connmgr_export_policies'
    LANGUAGE C VOLATILE STRICT;
REVOKE EXECUTE ON FUNCTION connmgr.export_policies() FROM PUBLIC;

CREATE FUNCTION connmgr_internal.connection_limit_rows(
        OUT role_name name,
        OUT per_member integer,
        OUT max_member_connections integer,
        OUT total integer,
        OUT total_connections integer,
        OUT on_limit text,
        OUT applies boolean)
    RETURNS SETOF record
    AS 'MODULE_PATHNAME', 'connmgr_connection_limit_rows'
    LANGUAGE C VOLATILE;

-- Rows are filtered in C: a caller sees the policies it may change, those
-- of roles it belongs to or administers, or all with pg_read_all_stats.
CREATE VIEW connmgr.connection_limits AS
    SELECT * FROM connmgr_internal.connection_limit_rows();
GRANT SELECT ON connmgr.connection_limits TO PUBLIC;

COMMENT ON FUNCTION connmgr.set_connection_limit(text, integer, integer, text, interval, integer, interval, interval) IS
    'create or replace the connection-limit policy of a role';
COMMENT ON FUNCTION connmgr.drop_connection_limit(text) IS
    'remove the connection-limit policy of a role; false if it had none';
COMMENT ON FUNCTION connmgr.set_connection_limit(name, integer, integer, text, interval, integer, interval, interval) IS
    'set_connection_limit for a role name of type name, taken exactly';
COMMENT ON FUNCTION connmgr.drop_connection_limit(name) IS
    'drop_connection_limit for a role name of type name, taken exactly';
COMMENT ON FUNCTION connmgr.export_policies() IS
    'every policy as the SECURITY LABEL statement pg_dumpall writes for it (superusers only)';
COMMENT ON FUNCTION connmgr_internal.connection_limit_rows() IS
    'internal: the rows of connmgr.connection_limits';
COMMENT ON VIEW connmgr.connection_limits IS
    'connection-limit policies with the current counts against them';
COMMENT ON COLUMN connmgr.connection_limits.role_name IS
    'the role the policy is set on';
COMMENT ON COLUMN connmgr.connection_limits.per_member IS
    'most connections each login role inheriting from the role may hold; NULL: none';
COMMENT ON COLUMN connmgr.connection_limits.max_member_connections IS
    'most connections any one login role inheriting from the role holds now';
COMMENT ON COLUMN connmgr.connection_limits.total IS
    'most connections the role and its members may hold together; NULL: none';
COMMENT ON COLUMN connmgr.connection_limits.total_connections IS
    'connections the role and its members hold now';
COMMENT ON COLUMN connmgr.connection_limits.on_limit IS
    'what a login at the limit gets: reject, evict_idle or log';
COMMENT ON COLUMN connmgr.connection_limits.applies IS
    'false for a policy on a superuser, which is never limited';

-- Connection administration beyond ClassDB (Neo4j's listConnections and
-- killConnections, MongoDB's dropConnections).  The same per-connection
-- permission rules as the ClassDB functions, decided in C.
CREATE FUNCTION connmgr_internal.connection_rows(
        OUT connection_id text,
        OUT pid integer,
        OUT username name,
        OUT database name,
        OUT application_name text,
        OUT client_address inet,
        OUT client_port integer,
        OUT server_address inet,
        OUT server_port integer,
        OUT connector text,
        OUT ssl boolean,
        OUT connect_time timestamptz,
        OUT last_query_start timestamptz,
        OUT state text,
        OUT state_since timestamptz)
    RETURNS SETOF record
    AS 'MODULE_PATHNAME', 'connmgr_connection_rows'
    LANGUAGE C VOLATILE;

CREATE VIEW connmgr.connections AS
    SELECT * FROM connmgr_internal.connection_rows();
GRANT SELECT ON connmgr.connections TO PUBLIC;

CREATE FUNCTION connmgr.kill_connections(ids text[],
                                         reason text DEFAULT NULL,
                                         dry_run boolean DEFAULT false)
    RETURNS TABLE (connection_id text, username name, message text)
    AS 'MODULE_PATHNAME', 'connmgr_kill_connections'
    LANGUAGE C VOLATILE;

CREATE FUNCTION connmgr.kill_connection(id text, reason text DEFAULT NULL)
    RETURNS TABLE (connection_id text, username name, message text)
    LANGUAGE sql VOLATILE
    RETURN (SELECT k FROM connmgr.kill_connections(ARRAY[id], reason) k);

CREATE FUNCTION connmgr.kill_client_connections(addresses text[],
                                                reason text DEFAULT NULL,
                                                dry_run boolean DEFAULT false)
    RETURNS TABLE (address text, connection_id text, username name, message text)
    AS 'MODULE_PATHNAME', 'connmgr_kill_client_connections'
    LANGUAGE C VOLATILE;

COMMENT ON FUNCTION connmgr_internal.connection_rows() IS
    'internal: the rows of connmgr.connections';
COMMENT ON VIEW connmgr.connections IS
    'client connections the caller may see, with stable connection ids';
COMMENT ON COLUMN connmgr.connections.connection_id IS
    'the session id as %c in log_line_prefix writes it: start time and pid in hex; never names a later session that reuses the pid';
COMMENT ON COLUMN connmgr.connections.pid IS 'the backend process id';
COMMENT ON COLUMN connmgr.connections.username IS 'the role logged in';
COMMENT ON COLUMN connmgr.connections.database IS 'the database connected to; NULL for a physical replication connection';
COMMENT ON COLUMN connmgr.connections.application_name IS 'the application name the client gave (its user agent)';
COMMENT ON COLUMN connmgr.connections.client_address IS 'the client''s IP address; NULL for Unix-socket connections';
COMMENT ON COLUMN connmgr.connections.client_port IS 'the client''s TCP port; NULL for Unix-socket connections';
COMMENT ON COLUMN connmgr.connections.server_address IS 'the server address the client connected to; NULL for Unix sockets';
COMMENT ON COLUMN connmgr.connections.server_port IS 'the server port the client connected to; NULL for Unix sockets';
COMMENT ON COLUMN connmgr.connections.connector IS 'tcp or unix';
COMMENT ON COLUMN connmgr.connections.ssl IS 'whether the connection uses SSL';
COMMENT ON COLUMN connmgr.connections.connect_time IS 'when the connection was opened';
COMMENT ON COLUMN connmgr.connections.last_query_start IS 'when its last query started; NULL before the first';
COMMENT ON COLUMN connmgr.connections.state IS 'running, idle, idle in transaction, idle in transaction (aborted), fastpath function call or disabled';
COMMENT ON COLUMN connmgr.connections.state_since IS 'when the connection entered its state';
COMMENT ON FUNCTION connmgr.kill_connections(text[], text, boolean) IS
    'terminate connections by connection id or pid, one result row per element, in order';
COMMENT ON FUNCTION connmgr.kill_connection(text, text) IS
    'terminate one connection by connection id or pid';
COMMENT ON FUNCTION connmgr.kill_client_connections(text[], text, boolean) IS
    'terminate the connections from client addresses (address, address:port, [v6]:port or CIDR)';

-- Monitoring: per-role activity and counters, the server's, and the event
-- log.  Rows are filtered in C by the same rules as the other functions.
CREATE FUNCTION connmgr_internal.role_activity_rows(
        OUT role_name name,
        OUT running integer,
        OUT idle integer,
        OUT idle_in_transaction integer,
        OUT current integer,
        OUT opened bigint,
        OUT closed bigint,
        OUT rejected bigint,
        OUT evicted bigint,
        OUT terminated bigint,
        OUT auth_failed bigint,
        OUT last_connect timestamptz,
        OUT last_reject timestamptz,
        OUT effective_limit integer,
        OUT limit_source text,
        OUT usage_pct double precision,
        OUT status text)
    RETURNS SETOF record
    AS 'MODULE_PATHNAME', 'connmgr_role_activity_rows'
    LANGUAGE C VOLATILE;

CREATE FUNCTION connmgr_internal.server_activity_rows(
        OUT max_connections integer,
        OUT reserved_connections integer,
        OUT current integer,
        OUT available integer,
        OUT usage_pct double precision,
        OUT status text,
        OUT opened bigint,
        OUT closed bigint,
        OUT rejected bigint,
        OUT evicted bigint,
        OUT terminated bigint,
        OUT auth_failed bigint,
        OUT opens_per_minute_1m double precision,
        OUT opens_per_minute_5m double precision,
        OUT opens_per_minute_15m double precision,
        OUT net_growth_15m bigint,
        OUT net_growth_1h bigint,
        OUT stats_reset timestamptz)
    RETURNS SETOF record
    AS 'MODULE_PATHNAME', 'connmgr_server_activity_rows'
    LANGUAGE C VOLATILE;

CREATE FUNCTION connmgr_internal.connection_event_rows(
        OUT event_time timestamptz,
        OUT event text,
        OUT connection_id text,
        OUT pid integer,
        OUT username name,
        OUT database name,
        OUT application_name text,
        OUT client_address inet,
        OUT actor name,
        OUT reason text,
        OUT duration interval)
    RETURNS SETOF record
    AS 'MODULE_PATHNAME', 'connmgr_connection_event_rows'
    LANGUAGE C VOLATILE;

CREATE FUNCTION connmgr.reset_stats() RETURNS void
    AS 'MODULE_PATHNAME', 'connmgr_reset_stats'
    LANGUAGE C VOLATILE;
REVOKE EXECUTE ON FUNCTION connmgr.reset_stats() FROM PUBLIC;

CREATE VIEW connmgr.role_activity AS
    SELECT * FROM connmgr_internal.role_activity_rows();
CREATE VIEW connmgr.server_activity AS
    SELECT * FROM connmgr_internal.server_activity_rows();
CREATE VIEW connmgr.connection_events AS
    SELECT * FROM connmgr_internal.connection_event_rows();
GRANT SELECT ON connmgr.role_activity, connmgr.server_activity,
    connmgr.connection_events TO PUBLIC;

COMMENT ON FUNCTION connmgr_internal.role_activity_rows() IS
    'internal: the rows of connmgr.role_activity';
COMMENT ON FUNCTION connmgr_internal.server_activity_rows() IS
    'internal: the rows of connmgr.server_activity';
COMMENT ON FUNCTION connmgr_internal.connection_event_rows() IS
    'internal: the rows of connmgr.connection_events';
COMMENT ON FUNCTION connmgr.reset_stats() IS
    'forget all connection counters and events (not for PUBLIC)';

COMMENT ON VIEW connmgr.role_activity IS
    'per role: connections by state, counters since the last reset, and usage of the tightest limit';
COMMENT ON COLUMN connmgr.role_activity.role_name IS 'the role (or a role name that failed to log in)';
COMMENT ON COLUMN connmgr.role_activity.running IS 'connections running a query now (for a group with a total: its members'')';
COMMENT ON COLUMN connmgr.role_activity.idle IS 'connections idle now';
COMMENT ON COLUMN connmgr.role_activity.idle_in_transaction IS 'connections idle inside a transaction now';
COMMENT ON COLUMN connmgr.role_activity.current IS 'connections now';
COMMENT ON COLUMN connmgr.role_activity.opened IS 'logins admitted since the last reset';
COMMENT ON COLUMN connmgr.role_activity.closed IS 'admitted connections that have ended';
COMMENT ON COLUMN connmgr.role_activity.rejected IS 'logins refused with too many connections, by connmgr or by PostgreSQL''s own limits';
COMMENT ON COLUMN connmgr.role_activity.evicted IS 'connections ended by evict_idle to admit another login';
COMMENT ON COLUMN connmgr.role_activity.terminated IS 'connections ended through connmgr''s kill functions';
COMMENT ON COLUMN connmgr.role_activity.auth_failed IS 'failed authentication attempts for this role name';
COMMENT ON COLUMN connmgr.role_activity.last_connect IS 'when a login was last admitted';
COMMENT ON COLUMN connmgr.role_activity.last_reject IS 'when a login was last refused';
COMMENT ON COLUMN connmgr.role_activity.effective_limit IS 'the tightest limit: per_member, rolconnlimit, what max_connections leaves, or a group''s total';
COMMENT ON COLUMN connmgr.role_activity.limit_source IS 'which limit that is: per_member, rolconnlimit, max_connections or total';
COMMENT ON COLUMN connmgr.role_activity.usage_pct IS 'current as a percentage of effective_limit';
COMMENT ON COLUMN connmgr.role_activity.status IS 'ok, warning (from connmgr.warning_pct) or critical (from connmgr.critical_pct)';

COMMENT ON VIEW connmgr.server_activity IS
    'the server''s connections against max_connections, totals, churn and leak signals';
COMMENT ON COLUMN connmgr.server_activity.max_connections IS 'max_connections';
COMMENT ON COLUMN connmgr.server_activity.reserved_connections IS 'slots kept from ordinary roles (superuser_reserved_connections and reserved_connections)';
COMMENT ON COLUMN connmgr.server_activity.current IS 'client connections now (replication connections have slots of their own)';
COMMENT ON COLUMN connmgr.server_activity.available IS 'slots left for ordinary roles';
COMMENT ON COLUMN connmgr.server_activity.usage_pct IS 'current as a percentage of the slots for ordinary roles';
COMMENT ON COLUMN connmgr.server_activity.status IS 'ok, warning or critical, as in role_activity';
COMMENT ON COLUMN connmgr.server_activity.opened IS 'logins admitted since the last reset';
COMMENT ON COLUMN connmgr.server_activity.closed IS 'admitted connections that have ended';
COMMENT ON COLUMN connmgr.server_activity.rejected IS 'logins refused with too many connections';
COMMENT ON COLUMN connmgr.server_activity.evicted IS 'connections evicted by evict_idle';
COMMENT ON COLUMN connmgr.server_activity.terminated IS 'connections ended through connmgr';
COMMENT ON COLUMN connmgr.server_activity.auth_failed IS 'failed authentication attempts';
COMMENT ON COLUMN connmgr.server_activity.opens_per_minute_1m IS 'admitted logins per minute over the last minute (churn)';
COMMENT ON COLUMN connmgr.server_activity.opens_per_minute_5m IS 'admitted logins per minute over the last 5 minutes';
COMMENT ON COLUMN connmgr.server_activity.opens_per_minute_15m IS 'admitted logins per minute over the last 15 minutes';
COMMENT ON COLUMN connmgr.server_activity.net_growth_15m IS 'opened minus closed over the last 15 minutes (leak signal)';
COMMENT ON COLUMN connmgr.server_activity.net_growth_1h IS 'opened minus closed over the last hour (leak signal)';
COMMENT ON COLUMN connmgr.server_activity.stats_reset IS 'when the counters were last reset, or the server started';

COMMENT ON VIEW connmgr.connection_events IS
    'recent connection events, oldest first (a ring of connmgr.event_log_size)';
COMMENT ON COLUMN connmgr.connection_events.event_time IS 'when it happened';
COMMENT ON COLUMN connmgr.connection_events.event IS 'connect, disconnect, reject, evict, terminate or auth_failed';
COMMENT ON COLUMN connmgr.connection_events.connection_id IS 'the session id, as in connmgr.connections and %c of log_line_prefix';
COMMENT ON COLUMN connmgr.connection_events.pid IS 'the backend process id';
COMMENT ON COLUMN connmgr.connection_events.username IS 'the role name the client logged in (or tried to) as';
COMMENT ON COLUMN connmgr.connection_events.database IS 'the database asked for';
COMMENT ON COLUMN connmgr.connection_events.application_name IS 'the application name the client gave';
COMMENT ON COLUMN connmgr.connection_events.client_address IS 'the client''s IP address; NULL for Unix sockets';
COMMENT ON COLUMN connmgr.connection_events.actor IS 'for terminate and evict: the role that ended it';
COMMENT ON COLUMN connmgr.connection_events.reason IS 'for terminate: the reason given';
COMMENT ON COLUMN connmgr.connection_events.duration IS 'for disconnect: how long the session lasted';

-- Bring connections over the current limits back under them now (after a
-- limit was lowered, say): the role's policy's limits, or all of them.
CREATE FUNCTION connmgr.enforce_limits(role_name text DEFAULT NULL,
                                       dry_run boolean DEFAULT false,
                                       include_active boolean DEFAULT false)
    RETURNS TABLE (connection_id text, username name, limit_role name, message text)
    AS 'MODULE_PATHNAME', 'connmgr_enforce_limits_now'
    LANGUAGE C VOLATILE;

CREATE FUNCTION connmgr.enforce_limits(role_name name,
                                       dry_run boolean DEFAULT false,
                                       include_active boolean DEFAULT false)
    RETURNS TABLE (connection_id text, username name, limit_role name, message text)
    AS 'MODULE_PATHNAME', 'connmgr_enforce_limits_now'
    LANGUAGE C VOLATILE;

COMMENT ON FUNCTION connmgr.enforce_limits(text, boolean, boolean) IS
    'end the connections over the current limits (of a role''s policy, or all): idle longest first';
COMMENT ON FUNCTION connmgr.enforce_limits(name, boolean, boolean) IS
    'enforce_limits for a role name of type name, taken exactly';
