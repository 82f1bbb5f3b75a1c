-- The SQL surface of connmgr: schema, functions, signatures, result
-- columns and who may call them.
BEGIN;
SELECT plan(77);

-- The result columns (name and type) of a set-returning function.
CREATE FUNCTION pg_temp.result_columns(f regprocedure) RETURNS text[]
LANGUAGE sql AS $$
  SELECT array_agg(format('%s %s', n, format_type(t, NULL)) ORDER BY o)
    FROM pg_proc p,
         unnest(p.proargnames, p.proallargtypes, p.proargmodes)
           WITH ORDINALITY AS a(n, t, m, o)
   WHERE p.oid = f AND m = 't'
$$;

SELECT has_schema('connmgr');
SELECT has_extension('connmgr');
-- The extension owns its schemas, so DROP EXTENSION removes them.
SELECT is(
  (SELECT array_agg(n.nspname::text ORDER BY n.nspname)
     FROM pg_depend d JOIN pg_namespace n ON d.objid = n.oid
    WHERE d.classid = 'pg_namespace'::regclass AND d.deptype = 'e'
      AND d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'connmgr')),
  ARRAY['connmgr', 'connmgr_internal'],
  'schemas connmgr and connmgr_internal are members of the extension');
SELECT schema_privs_are('connmgr', 'public', ARRAY['USAGE'],
  'everybody may use the connmgr schema');

-- listUserConnections(VARCHAR) RETURNS TABLE (...)
SELECT has_function('connmgr', 'listuserconnections', ARRAY['character varying']);
SELECT function_returns('connmgr', 'listuserconnections', ARRAY['character varying'], 'setof record');
SELECT is(pg_temp.result_columns(f),
  ARRAY['username character varying', 'pid integer',
        'applicationname character varying', 'clientaddress inet',
        'connectionstarttime timestamp with time zone',
        'lastquerystarttime timestamp with time zone'],
  format('%s returns the ClassDB columns', f))
  FROM unnest(ARRAY['connmgr.listuserconnections(varchar)',
                    'connmgr.listuserconnections(text)']::regprocedure[]) AS f;
SELECT volatility_is('connmgr', 'listuserconnections', ARRAY['character varying'], 'volatile');
SELECT is(
  (SELECT array_agg(DISTINCT proisstrict) FROM pg_proc
    WHERE pronamespace = 'connmgr'::regnamespace
      AND proname IN ('listuserconnections', 'killuserconnections')),
  ARRAY[true], 'the name-taking ClassDB functions are strict: NULL gives no rows');
SELECT isnt_definer('connmgr', 'listuserconnections', ARRAY['character varying']);

-- killConnection(INT) RETURNS BOOLEAN, strict
SELECT has_function('connmgr', 'killconnection', ARRAY['integer']);
SELECT function_returns('connmgr', 'killconnection', ARRAY['integer'], 'boolean');
SELECT is_strict('connmgr', 'killconnection', ARRAY['integer']);
SELECT isnt_definer('connmgr', 'killconnection', ARRAY['integer']);

-- killUserConnections(VARCHAR) RETURNS TABLE (pid INT, success BOOLEAN)
SELECT has_function('connmgr', 'killuserconnections', ARRAY['character varying']);
SELECT function_returns('connmgr', 'killuserconnections', ARRAY['character varying'], 'setof record');
SELECT is(pg_temp.result_columns(f), ARRAY['pid integer', 'success boolean'],
  format('%s returns (pid, success)', f))
  FROM unnest(ARRAY['connmgr.killuserconnections(varchar)',
                    'connmgr.killuserconnections(text)']::regprocedure[]) AS f;
SELECT isnt_definer('connmgr', 'killuserconnections', ARRAY['character varying']);

-- Every role may call the API: the C code decides per target connection.
CREATE ROLE pgtap_nobody LOGIN;
SELECT function_privs_are('connmgr', 'listuserconnections', ARRAY['character varying'],
  'pgtap_nobody', ARRAY['EXECUTE']);
SELECT function_privs_are('connmgr', 'killconnection', ARRAY['integer'],
  'pgtap_nobody', ARRAY['EXECUTE']);
SELECT function_privs_are('connmgr', 'killuserconnections', ARRAY['character varying'],
  'pgtap_nobody', ARRAY['EXECUTE']);

-- Parameter names, so that named notation works as with ClassDB.
SELECT is(
  (SELECT array_agg(pg_get_function_identity_arguments(oid)
                    ORDER BY pg_get_function_identity_arguments(oid))
     FROM pg_proc WHERE pronamespace = 'connmgr'::regnamespace
      AND proname IN ('listuserconnections', 'killuserconnections', 'killconnection')),
  ARRAY['pid integer', 'username character varying', 'username character varying',
        'username name', 'username name', 'username text', 'username text'],
  'the ClassDB functions name their parameters pid and userName');
SELECT is((SELECT count(*)::int FROM connmgr.listUserConnections(userName => 'nobody')), 0,
  'listUserConnections accepts userName => ...');

-- Text overloads, so that current_user (type name) can be passed.
SELECT has_function('connmgr', 'listuserconnections', ARRAY['text']);
SELECT has_function('connmgr', 'killuserconnections', ARRAY['text']);

-- Connection-limit policies.
-- Role names are text (read like identifiers), so long names are refused
-- instead of being truncated to another role's name.
SELECT has_function('connmgr', 'set_connection_limit', ARRAY['text', 'integer', 'integer', 'text', 'interval', 'integer', 'interval', 'interval']);
SELECT function_returns('connmgr', 'set_connection_limit', ARRAY['text', 'integer', 'integer', 'text', 'interval', 'integer', 'interval', 'interval'], 'void');
SELECT is(
  (SELECT pg_get_function_arguments('connmgr.set_connection_limit(text, integer, integer, text, interval, integer, interval, interval)'::regprocedure)),
  'role_name text, per_member integer DEFAULT NULL::integer, total integer DEFAULT NULL::integer, on_limit text DEFAULT ''reject''::text, wait_timeout interval DEFAULT NULL::interval, max_waiting integer DEFAULT NULL::integer, idle_timeout interval DEFAULT NULL::interval, idle_in_transaction_timeout interval DEFAULT NULL::interval',
  'set_connection_limit has the documented parameters and defaults');
SELECT has_function('connmgr', 'drop_connection_limit', ARRAY['text']);
SELECT function_returns('connmgr', 'drop_connection_limit', ARRAY['text'], 'boolean');
SELECT has_function('connmgr', 'set_connection_limit', ARRAY['name', 'integer', 'integer', 'text', 'interval', 'integer', 'interval', 'interval'],
  'a name overload takes catalog names (rolname, role_name) exactly');
SELECT throws_ok(
  format($$SELECT connmgr.set_connection_limit(%L, 1)$$, repeat('x', 64)),
  '42622', NULL,
  'a quoted literal resolves to the text overload, which refuses long names');
SELECT has_function('connmgr', 'export_policies', ARRAY[]::text[]);
SELECT function_returns('connmgr', 'export_policies', ARRAY[]::text[], 'setof text');
SELECT function_privs_are('connmgr', 'export_policies', ARRAY[]::text[],
  'pgtap_nobody', ARRAY[]::text[], 'export_policies is not for PUBLIC');
SELECT has_view('connmgr', 'connection_limits', 'the connection_limits view exists');
SELECT columns_are('connmgr', 'connection_limits',
  ARRAY['role_name', 'per_member', 'max_member_connections', 'total', 'total_connections', 'on_limit', 'applies']);
SELECT col_type_is('connmgr', 'connection_limits', 'applies', 'boolean', 'applies is boolean');
SELECT col_type_is('connmgr', 'connection_limits', 'role_name', 'name', 'role_name is name');
SELECT col_type_is('connmgr', 'connection_limits', 'per_member', 'integer', 'per_member is integer');
SELECT col_type_is('connmgr', 'connection_limits', 'total', 'integer', 'total is integer');
SELECT col_type_is('connmgr', 'connection_limits', 'on_limit', 'text', 'on_limit is text');
SELECT table_privs_are('connmgr', 'connection_limits', 'pgtap_nobody', ARRAY['SELECT'],
  'everybody may query connection_limits (rows are filtered per caller)');

-- The administration API (Neo4j / MongoDB style).
SELECT has_view('connmgr', 'connections', 'the connections view exists');
SELECT columns_are('connmgr', 'connections',
  ARRAY['connection_id', 'pid', 'username', 'database', 'application_name',
        'client_address', 'client_port', 'server_address', 'server_port',
        'connector', 'ssl', 'connect_time', 'last_query_start', 'state', 'state_since']);
SELECT col_type_is('connmgr', 'connections', 'connection_id', 'text', 'connection_id is text');
SELECT col_type_is('connmgr', 'connections', 'client_address', 'inet', 'client_address is inet');
SELECT table_privs_are('connmgr', 'connections', 'pgtap_nobody', ARRAY['SELECT'],
  'everybody may query connections (rows are filtered per caller)');
SELECT is(
  (SELECT pg_get_function_arguments('connmgr.kill_connections(text[], text, boolean)'::regprocedure)),
  'ids text[], reason text DEFAULT NULL::text, dry_run boolean DEFAULT false',
  'kill_connections has the documented parameters');
SELECT is(pg_temp.result_columns('connmgr.kill_connections(text[], text, boolean)'),
  ARRAY['connection_id text', 'username name', 'message text'],
  'kill_connections returns (connection_id, username, message)');
SELECT is(pg_temp.result_columns('connmgr.kill_connection(text, text)'),
  ARRAY['connection_id text', 'username name', 'message text'],
  'kill_connection returns (connection_id, username, message)');
SELECT is(
  (SELECT pg_get_function_arguments('connmgr.kill_client_connections(text[], text, boolean)'::regprocedure)),
  'addresses text[], reason text DEFAULT NULL::text, dry_run boolean DEFAULT false',
  'kill_client_connections has the documented parameters');
SELECT is(pg_temp.result_columns('connmgr.kill_client_connections(text[], text, boolean)'),
  ARRAY['address text', 'connection_id text', 'username name', 'message text'],
  'kill_client_connections returns (address, connection_id, username, message)');
SELECT function_privs_are('connmgr', 'kill_connections', ARRAY['text[]', 'text', 'boolean'],
  'pgtap_nobody', ARRAY['EXECUTE']);
SELECT is((SELECT connection_id FROM connmgr.connections WHERE pid = pg_backend_pid()),
  (SELECT to_hex(floor(extract(epoch FROM backend_start))::bigint) || '.' || to_hex(pid)
     FROM pg_stat_activity WHERE pid = pg_backend_pid()),
  'a connection id is the backend start time and pid in hex, as %c writes them');
SELECT is((SELECT array_agg(message) FROM connmgr.kill_connections(
             ARRAY[NULL, '', 'x', '12.', '.12', '-5', '0', 'g1.1', '1.2.3'])),
  ARRAY['Invalid connection id', 'Invalid connection id', 'Invalid connection id',
        'Invalid connection id', 'Invalid connection id', 'Invalid connection id',
        'Invalid connection id', 'Invalid connection id', 'Invalid connection id'],
  'malformed ids each get their own row');
SELECT is((SELECT count(*)::int FROM connmgr.kill_connections(NULL)), 0,
  'kill_connections(NULL) gives no rows');
SELECT throws_ok($$SELECT * FROM connmgr.kill_connections(ARRAY['1'], NULL, NULL)$$,
  '22004', 'dry_run must not be null', 'a NULL dry_run is refused');

-- Monitoring views, readable by everyone (rows filtered per caller), and
-- a reset that is not for PUBLIC, as pg_stat_statements_reset.
SELECT has_view('connmgr', v, format('the %s view exists', v))
  FROM unnest(ARRAY['role_activity', 'server_activity', 'connection_events']) AS v;
SELECT columns_are('connmgr', 'role_activity',
  ARRAY['role_name', 'running', 'idle', 'idle_in_transaction', 'current',
        'opened', 'closed', 'rejected', 'evicted', 'terminated', 'auth_failed',
        'last_connect', 'last_reject', 'effective_limit', 'limit_source',
        'usage_pct', 'status']);
SELECT columns_are('connmgr', 'connection_events',
  ARRAY['event_time', 'event', 'connection_id', 'pid', 'username', 'database',
        'application_name', 'client_address', 'actor', 'reason', 'duration']);
SELECT table_privs_are('connmgr', v, 'pgtap_nobody', ARRAY['SELECT'],
  format('everybody may query %s', v))
  FROM unnest(ARRAY['role_activity', 'server_activity', 'connection_events']) AS v;
SELECT function_privs_are('connmgr', 'reset_stats', ARRAY[]::text[],
  'pgtap_nobody', ARRAY[]::text[], 'reset_stats is not for PUBLIC');
SELECT is((SELECT count(*)::int FROM connmgr.server_activity), 1,
  'server_activity has one row');

-- No SECURITY DEFINER functions anywhere in the extension.
SELECT is(
  (SELECT count(*)::int FROM pg_proc p
     JOIN pg_depend d ON d.classid = 'pg_proc'::regclass AND d.objid = p.oid
     JOIN pg_extension e ON d.refobjid = e.oid AND e.extname = 'connmgr'
    WHERE p.prosecdef),
  0, 'connmgr has no SECURITY DEFINER functions');

-- The API is documented in the catalog: every function, view and view
-- column of schema connmgr has a comment; helpers live in connmgr_internal.
SELECT is(
  (SELECT array_agg(p.oid::regprocedure::text) FROM pg_proc p
    WHERE p.pronamespace IN ('connmgr'::regnamespace, 'connmgr_internal'::regnamespace)
      AND obj_description(p.oid, 'pg_proc') IS NULL),
  NULL, 'every function has a comment');
SELECT is(
  (SELECT array_agg(c.relname::text || '.' || a.attname) FROM pg_class c
     JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0
    WHERE c.relnamespace = 'connmgr'::regnamespace
      AND col_description(c.oid, a.attnum) IS NULL),
  NULL, 'every view column has a comment');
SELECT is(
  (SELECT array_agg(c.relname::text) FROM pg_class c
    WHERE c.relnamespace = 'connmgr'::regnamespace
      AND obj_description(c.oid, 'pg_class') IS NULL),
  NULL, 'every view has a comment');
SELECT is(
  (SELECT array_agg(proname::text ORDER BY proname) FROM pg_proc
    WHERE pronamespace = 'connmgr'::regnamespace),
  ARRAY['drop_connection_limit', 'drop_connection_limit', 'enforce_limits',
        'enforce_limits', 'export_policies',
        'kill_client_connections', 'kill_connection', 'kill_connections',
        'killconnection', 'killuserconnections', 'killuserconnections',
        'killuserconnections', 'listuserconnections', 'listuserconnections',
        'listuserconnections', 'reset_stats', 'set_connection_limit',
        'set_connection_limit'],
  'schema connmgr holds the API functions only');

-- An unprivileged role sees nothing of other users.
SET ROLE pgtap_nobody;
SELECT is((SELECT count(*)::int FROM connmgr.listUserConnections('postgres')), 0,
  'an unprivileged role does not see the superuser''s connections');
SELECT is(connmgr.killConnection(NULL), NULL, 'killConnection(NULL) is NULL');
RESET ROLE;

SELECT * FROM finish();
ROLLBACK;
