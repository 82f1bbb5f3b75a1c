-- The SQL surface of connmgr: schema, functions, signatures, result
-- columns and who may call them.
BEGIN;
SELECT plan(40);

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
        'username text', 'username text'],
  'the ClassDB functions name their parameters pid and userName');
SELECT is((SELECT count(*)::int FROM connmgr.listUserConnections(userName => 'nobody')), 0,
  'listUserConnections accepts userName => ...');

-- Text overloads, so that current_user (type name) can be passed.
SELECT has_function('connmgr', 'listuserconnections', ARRAY['text']);
SELECT has_function('connmgr', 'killuserconnections', ARRAY['text']);

-- Connection-limit policies.
SELECT has_function('connmgr', 'set_connection_limit', ARRAY['name', 'integer', 'integer', 'text']);
SELECT function_returns('connmgr', 'set_connection_limit', ARRAY['name', 'integer', 'integer', 'text'], 'void');
SELECT is(
  (SELECT pg_get_function_arguments('connmgr.set_connection_limit(name, integer, integer, text)'::regprocedure)),
  'role_name name, per_member integer DEFAULT NULL::integer, total integer DEFAULT NULL::integer, on_limit text DEFAULT ''reject''::text',
  'set_connection_limit has the documented parameters and defaults');
SELECT has_function('connmgr', 'drop_connection_limit', ARRAY['name']);
SELECT function_returns('connmgr', 'drop_connection_limit', ARRAY['name'], 'boolean');
SELECT has_view('connmgr', 'connection_limits', 'the connection_limits view exists');
SELECT columns_are('connmgr', 'connection_limits',
  ARRAY['role_name', 'per_member', 'max_member_connections', 'total', 'total_connections', 'on_limit']);
SELECT col_type_is('connmgr', 'connection_limits', 'role_name', 'name', 'role_name is name');
SELECT col_type_is('connmgr', 'connection_limits', 'per_member', 'integer', 'per_member is integer');
SELECT col_type_is('connmgr', 'connection_limits', 'total', 'integer', 'total is integer');
SELECT col_type_is('connmgr', 'connection_limits', 'on_limit', 'text', 'on_limit is text');
SELECT table_privs_are('connmgr', 'connection_limits', 'pgtap_nobody', ARRAY['SELECT'],
  'everybody may query connection_limits (rows are filtered per caller)');

-- No SECURITY DEFINER functions anywhere in the extension.
SELECT is(
  (SELECT count(*)::int FROM pg_proc p
     JOIN pg_depend d ON d.classid = 'pg_proc'::regclass AND d.objid = p.oid
     JOIN pg_extension e ON d.refobjid = e.oid AND e.extname = 'connmgr'
    WHERE p.prosecdef),
  0, 'connmgr has no SECURITY DEFINER functions');

-- An unprivileged role sees nothing of other users.
SET ROLE pgtap_nobody;
SELECT is((SELECT count(*)::int FROM connmgr.listUserConnections('postgres')), 0,
  'an unprivileged role does not see the superuser''s connections');
SELECT is(connmgr.killConnection(NULL), NULL, 'killConnection(NULL) is NULL');
RESET ROLE;

SELECT * FROM finish();
ROLLBACK;
