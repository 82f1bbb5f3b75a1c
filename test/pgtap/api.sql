-- The SQL surface of connmgr: schema, functions, signatures, result
-- columns and who may call them.
BEGIN;
SELECT plan(24);

SELECT has_schema('connmgr');
SELECT has_extension('connmgr');
SELECT schema_privs_are('connmgr', 'public', ARRAY['USAGE'],
  'everybody may use the connmgr schema');

-- listUserConnections(VARCHAR) RETURNS TABLE (...)
SELECT has_function('connmgr', 'listuserconnections', ARRAY['character varying']);
SELECT function_returns('connmgr', 'listuserconnections', ARRAY['character varying'], 'setof record');
SELECT is(
  (SELECT array_agg(format('%s %s', n, format_type(t, NULL)) ORDER BY o)
     FROM pg_proc p,
          unnest(p.proargnames, p.proallargtypes, p.proargmodes)
            WITH ORDINALITY AS a(n, t, m, o)
    WHERE p.oid = 'connmgr.listuserconnections(varchar)'::regprocedure AND m = 't'),
  ARRAY['username character varying', 'pid integer',
        'applicationname character varying', 'clientaddress inet',
        'connectionstarttime timestamp with time zone',
        'lastquerystarttime timestamp with time zone'],
  'listUserConnections returns the ClassDB columns');
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
SELECT is(
  (SELECT array_agg(format('%s %s', n, format_type(t, NULL)) ORDER BY o)
     FROM pg_proc p,
          unnest(p.proargnames, p.proallargtypes, p.proargmodes)
            WITH ORDINALITY AS a(n, t, m, o)
    WHERE p.oid = 'connmgr.killuserconnections(varchar)'::regprocedure AND m = 't'),
  ARRAY['pid integer', 'success boolean'],
  'killUserConnections returns (pid, success)');
SELECT isnt_definer('connmgr', 'killuserconnections', ARRAY['character varying']);

-- Every role may call the API: the C code decides per target connection.
CREATE ROLE pgtap_nobody LOGIN;
SELECT function_privs_are('connmgr', 'listuserconnections', ARRAY['character varying'],
  'pgtap_nobody', ARRAY['EXECUTE']);
SELECT function_privs_are('connmgr', 'killconnection', ARRAY['integer'],
  'pgtap_nobody', ARRAY['EXECUTE']);
SELECT function_privs_are('connmgr', 'killuserconnections', ARRAY['character varying'],
  'pgtap_nobody', ARRAY['EXECUTE']);

-- Text overloads, so that current_user (type name) can be passed.
SELECT has_function('connmgr', 'listuserconnections', ARRAY['text']);
SELECT has_function('connmgr', 'killuserconnections', ARRAY['text']);

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
