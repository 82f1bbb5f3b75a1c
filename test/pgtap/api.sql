-- The SQL surface of connmgr: schema, functions, signatures, result
-- columns and who may call them.
BEGIN;
SELECT plan(51);

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
        'username text', 'username text'],
  'the ClassDB functions name their parameters pid and userName');
SELECT is((SELECT count(*)::int FROM connmgr.listUserConnections(userName => 'nobody')), 0,
  'listUserConnections accepts userName => ...');

-- Text overloads, so that current_user (type name) can be passed.
SELECT has_function('connmgr', 'listuserconnections', ARRAY['text']);
SELECT has_function('connmgr', 'killuserconnections', ARRAY['text']);

-- Connection-limit policies.
-- Role names are text (read like identifiers), so long names are refused
-- instead of being truncated to another role's name.
SELECT has_function('connmgr', 'set_connection_limit', ARRAY['text', 'integer', 'integer', 'text']);
SELECT function_returns('connmgr', 'set_connection_limit', ARRAY['text', 'integer', 'integer', 'text'], 'void');
SELECT is(
  (SELECT pg_get_function_arguments('connmgr.set_connection_limit(text, integer, integer, text)'::regprocedure)),
  'role_name text, per_member integer DEFAULT NULL::integer, total integer DEFAULT NULL::integer, on_limit text DEFAULT ''reject''::text',
  'set_connection_limit has the documented parameters and defaults');
SELECT has_function('connmgr', 'drop_connection_limit', ARRAY['text']);
SELECT function_returns('connmgr', 'drop_connection_limit', ARRAY['text'], 'boolean');
SELECT hasnt_function('connmgr', 'set_connection_limit', ARRAY['name', 'integer', 'integer', 'text'],
  'no name-typed overload that would truncate long names');
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
  ARRAY['drop_connection_limit', 'export_policies', 'killconnection',
        'killuserconnections', 'killuserconnections', 'listuserconnections',
        'listuserconnections', 'set_connection_limit'],
  'schema connmgr holds the API functions only');

-- An unprivileged role sees nothing of other users.
SET ROLE pgtap_nobody;
SELECT is((SELECT count(*)::int FROM connmgr.listUserConnections('postgres')), 0,
  'an unprivileged role does not see the superuser''s connections');
SELECT is(connmgr.killConnection(NULL), NULL, 'killConnection(NULL) is NULL');
RESET ROLE;

SELECT * FROM finish();
ROLLBACK;
