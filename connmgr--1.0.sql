/* connmgr install script, version 1.0 */

\echo Use "CREATE EXTENSION connmgr" to load this file. \quit

-- connmgr's functions only work when the library is preloaded: refuse to
-- install anywhere else, with a hint that says how to fix it.
CREATE FUNCTION connmgr.check_preload() RETURNS void
    AS 'MODULE_PATHNAME', 'connmgr_check_preload'
    LANGUAGE C STRICT;
SELECT connmgr.check_preload();
DROP FUNCTION connmgr.check_preload();

-- ClassDB-compatible API.  Every caller may run these; the C code decides
-- per target connection what the caller may see and terminate.
GRANT USAGE ON SCHEMA connmgr TO PUBLIC;

CREATE FUNCTION connmgr.listUserConnections(userName VARCHAR(63))
    RETURNS TABLE (userName VARCHAR(63),
                   pid INT,
                   applicationName VARCHAR(63),
                   clientAddress INET,
                   connectionStartTime TIMESTAMPTZ,
                   lastQueryStartTime TIMESTAMPTZ)
    AS 'MODULE_PATHNAME', 'connmgr_list_user_connections'
    LANGUAGE C VOLATILE;

CREATE FUNCTION connmgr.killConnection(pid INT)
    RETURNS BOOLEAN
    AS 'MODULE_PATHNAME', 'connmgr_kill_connection'
    LANGUAGE C VOLATILE STRICT;

CREATE FUNCTION connmgr.killUserConnections(userName VARCHAR(63))
    RETURNS TABLE (pid INT, success BOOLEAN)
    AS 'MODULE_PATHNAME', 'connmgr_kill_user_connections'
    LANGUAGE C VOLATILE;

-- Text overloads: current_user and session_user are of type name, which
-- PostgreSQL casts to text but not implicitly to VARCHAR.  A quoted literal
-- resolves to the text overload too (text is the preferred string type).
CREATE FUNCTION connmgr.listUserConnections(userName TEXT)
    RETURNS TABLE (userName VARCHAR(63),
                   pid INT,
                   applicationName VARCHAR(63),
                   clientAddress INET,
                   connectionStartTime TIMESTAMPTZ,
                   lastQueryStartTime TIMESTAMPTZ)
    AS 'MODULE_PATHNAME', 'connmgr_list_user_connections'
    LANGUAGE C VOLATILE;

CREATE FUNCTION connmgr.killUserConnections(userName TEXT)
    RETURNS TABLE (pid INT, success BOOLEAN)
    AS 'MODULE_PATHNAME', 'connmgr_kill_user_connections'
    LANGUAGE C VOLATILE;

COMMENT ON FUNCTION connmgr.listUserConnections(VARCHAR) IS
    'client connections of a user that the caller may see, oldest first (ClassDB-compatible)';
COMMENT ON FUNCTION connmgr.killConnection(INT) IS
    'terminate one connection and wait until it is gone (ClassDB-compatible)';
COMMENT ON FUNCTION connmgr.killUserConnections(VARCHAR) IS
    'terminate every connection of a user the caller may terminate, one row each (ClassDB-compatible)';
COMMENT ON FUNCTION connmgr.listUserConnections(TEXT) IS
    'listUserConnections for text and name arguments such as current_user';
COMMENT ON FUNCTION connmgr.killUserConnections(TEXT) IS
    'killUserConnections for text and name arguments such as current_user';

-- Connection-limit policies, stored as security labels on roles (provider
-- "connmgr") and enforced by the library at login.  Permission checks are
-- in C: PostgreSQL's own rules for who may ALTER the role.
CREATE FUNCTION connmgr.set_connection_limit(role_name name,
                                             per_member integer DEFAULT NULL,
                                             total integer DEFAULT NULL,
                                             on_limit text DEFAULT 'reject')
    RETURNS void
    AS 'MODULE_PATHNAME', 'connmgr_set_connection_limit'
    LANGUAGE C VOLATILE;

CREATE FUNCTION connmgr.drop_connection_limit(role_name name)
    RETURNS boolean
    AS 'MODULE_PATHNAME', 'connmgr_drop_connection_limit'
    LANGUAGE C VOLATILE;

CREATE FUNCTION connmgr.connection_limit_rows(
        OUT role_name name,
        OUT per_member integer,
        OUT max_member_connections integer,
        OUT total integer,
        OUT total_connections integer,
        OUT on_limit text)
    RETURNS SETOF record
    AS 'MODULE_PATHNAME', 'connmgr_connection_limit_rows'
    LANGUAGE C VOLATILE;

-- Rows are filtered in C: a caller sees the policies it may change, those
-- of roles it belongs to or administers, or all with pg_read_all_stats.
CREATE VIEW connmgr.connection_limits AS
    SELECT * FROM connmgr.connection_limit_rows();
GRANT SELECT ON connmgr.connection_limits TO PUBLIC;

COMMENT ON FUNCTION connmgr.set_connection_limit(name, integer, integer, text) IS
    'create or replace the connection-limit policy of a role';
COMMENT ON FUNCTION connmgr.drop_connection_limit(name) IS
    'remove the connection-limit policy of a role; false if it had none';
COMMENT ON VIEW connmgr.connection_limits IS
    'connection-limit policies with the current counts against them';
