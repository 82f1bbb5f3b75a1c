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
    LANGUAGE C VOLATILE STRICT;

CREATE FUNCTION connmgr.killUserConnections(userName TEXT)
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
    'listUserConnections for text and name arguments such as current_user';
COMMENT ON FUNCTION connmgr.killUserConnections(TEXT) IS
    'killUserConnections for text and name arguments such as current_user';

-- Connection-limit policies, stored as security labels on roles (provider
-- "connmgr") and enforced by the library at login.  Permission checks are
-- in C: PostgreSQL's own rules for who may ALTER the role.  Role names are
-- read like SQL identifiers, as by the ClassDB functions.
CREATE FUNCTION connmgr.set_connection_limit(role_name text,
                                             per_member integer DEFAULT NULL,
                                             total integer DEFAULT NULL,
                                             on_limit text DEFAULT 'reject')
    RETURNS void
    AS 'MODULE_PATHNAME', 'connmgr_set_connection_limit'
    LANGUAGE C VOLATILE;

CREATE FUNCTION connmgr.drop_connection_limit(role_name text)
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

COMMENT ON FUNCTION connmgr.set_connection_limit(text, integer, integer, text) IS
    'create or replace the connection-limit policy of a role';
COMMENT ON FUNCTION connmgr.drop_connection_limit(text) IS
    'remove the connection-limit policy of a role; false if it had none';
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
