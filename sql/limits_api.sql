--
-- Connection-limit policies: set_connection_limit, drop_connection_limit,
-- the connection_limits view and the security label provider.  Logins
-- under the policies are tested in test/t/.
--
\set VERBOSITY sqlstate
CREATE EXTENSION connmgr;

CREATE ROLE regress_student NOLOGIN;
CREATE ROLE regress_stu1 LOGIN IN ROLE regress_student;
CREATE ROLE regress_creator CREATEROLE LOGIN;
CREATE ROLE regress_plain LOGIN;
CREATE ROLE regress_super SUPERUSER;

-- Set, read back, replace, drop.
SELECT connmgr.set_connection_limit('regress_student', per_member => 5);
SELECT role_name, per_member, max_member_connections, total, total_connections, on_limit
  FROM connmgr.connection_limits;
SELECT label FROM pg_seclabels WHERE provider = 'connmgr';
SELECT connmgr.set_connection_limit('regress_student', 3, 60, 'evict_idle');
SELECT label FROM pg_seclabels WHERE provider = 'connmgr';
SELECT connmgr.set_connection_limit('regress_stu1', total => 0, on_limit => 'log');
SELECT role_name, per_member, total, on_limit FROM connmgr.connection_limits ORDER BY role_name;
SELECT connmgr.drop_connection_limit('regress_stu1');
SELECT connmgr.drop_connection_limit('regress_stu1');
SELECT role_name FROM connmgr.connection_limits;

-- Bad input: each gets a defined error with its SQLSTATE; nothing changes.
-- (A role whose name is the first 63 bytes of a longer one: a long name
-- must be refused, never truncated onto this role.)
SELECT format('CREATE ROLE %I', repeat('x', 63)) \gexec
CREATE FUNCTION pg_temp.outcome(call text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE call;
    RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
    RETURN SQLSTATE || ': ' || SQLERRM;
END $$;
SELECT call, pg_temp.outcome(call) FROM (VALUES
    ($$SELECT connmgr.set_connection_limit(NULL, 1)$$),
    ($$SELECT connmgr.set_connection_limit('regress_nobody', 1)$$),
    ($$SELECT connmgr.set_connection_limit('regress_student', -1)$$),
    ($$SELECT connmgr.set_connection_limit('regress_student', total => -5)$$),
    ($$SELECT connmgr.set_connection_limit('regress_student', 1, on_limit => 'kick')$$),
    ($$SELECT connmgr.set_connection_limit('regress_student', 1, on_limit => 'kick ')$$),
    ($$SELECT connmgr.set_connection_limit('regress_student', 1, on_limit => NULL)$$),
    ($$SELECT connmgr.set_connection_limit('regress_student')$$),
    ($$SELECT connmgr.set_connection_limit(repeat('x', 100), 1)$$),
    ($$SELECT connmgr.set_connection_limit(repeat('x', 63) || 'y', 1)$$),
    ($$SELECT connmgr.set_connection_limit('', 1)$$),
    ($$SELECT connmgr.set_connection_limit('""', 1)$$),
    ($$SELECT connmgr.drop_connection_limit(repeat('x', 100))$$),
    ($$SELECT connmgr.set_connection_limit('x"; DROP ROLE regress_stu1; --', 1)$$),
    ($$SELECT connmgr.set_connection_limit('regress_student', 1, on_limit => 'wait', wait_timeout => '0s')$$),
    ($$SELECT connmgr.set_connection_limit('regress_student', 1, on_limit => 'wait', wait_timeout => '1 hour')$$),
    ($$SELECT connmgr.set_connection_limit('regress_student', 1, on_limit => 'wait', max_waiting => 0)$$),
    ($$SELECT connmgr.set_connection_limit('regress_student', 1, wait_timeout => '1s')$$),
    ($$SECURITY LABEL FOR connmgr ON ROLE regress_student IS 'per_member=1,on_limit=reject,max_waiting=3'$$),
    ($$SELECT connmgr.drop_connection_limit(NULL)$$),
    ($$SELECT connmgr.drop_connection_limit('regress_nobody')$$)
  ) AS t(call);
SELECT count(*) AS labels_on_truncated_name FROM pg_seclabels WHERE provider = 'connmgr' AND objname = repeat('x', 63);
SELECT format('DROP ROLE %I', repeat('x', 63)) \gexec
-- The hints tell what to do instead.
\set VERBOSITY default
SELECT connmgr.set_connection_limit('regress_student', -1);
SELECT connmgr.set_connection_limit('regress_student', 1, on_limit => 'kick');
SELECT connmgr.set_connection_limit('regress_student');
\set VERBOSITY sqlstate
SELECT label FROM pg_seclabels WHERE provider = 'connmgr';

-- Who may change policies: PostgreSQL's rules for ALTER ROLE.
SET ROLE regress_plain;
SELECT connmgr.set_connection_limit('regress_student', 1);
SELECT connmgr.drop_connection_limit('regress_student');
SET ROLE regress_creator;
SELECT connmgr.set_connection_limit('regress_super', 1);
SELECT connmgr.set_connection_limit('pg_monitor', 0);
-- Reserved roles are for nobody.  SECURITY LABEL is first checked by
-- PostgreSQL, which from 16 on refuses a CREATEROLE role without ADMIN
-- OPTION on the role (42501) before connmgr can (42939, as on 15).
SELECT pg_temp.outcome($$SECURITY LABEL FOR connmgr ON ROLE pg_monitor IS 'per_member=0,on_limit=reject'$$)
    ~ '^(42501|42939):' AS refused;
RESET ROLE;
-- With ADMIN OPTION on it, and as a superuser, PostgreSQL lets it through
-- on every release and connmgr refuses it.
GRANT pg_monitor TO regress_creator WITH ADMIN OPTION;
SET ROLE regress_creator;
SECURITY LABEL FOR connmgr ON ROLE pg_monitor IS 'per_member=0,on_limit=reject';
RESET ROLE;
REVOKE pg_monitor FROM regress_creator;
SECURITY LABEL FOR connmgr ON ROLE pg_monitor IS 'per_member=0,on_limit=reject';
SELECT count(*) FROM pg_seclabels WHERE provider = 'connmgr' AND objname = 'pg_monitor';
-- Replication roles, like superusers, are for superusers (before
-- PostgreSQL 16; from 16 on regress_creator would need ADMIN OPTION on
-- regress_repl), and reserved roles for nobody, as with ALTER ROLE.
CREATE ROLE regress_repl LOGIN REPLICATION;
SET ROLE regress_creator;
SELECT connmgr.set_connection_limit('regress_repl', 1);
SECURITY LABEL FOR connmgr ON ROLE regress_repl IS 'per_member=0,on_limit=reject';
RESET ROLE;
DROP ROLE regress_repl;
\set VERBOSITY default
SELECT connmgr.set_connection_limit('pg_monitor', 1);
\set VERBOSITY sqlstate

-- Who may see them: not an unrelated role; a member of the group does.
SET ROLE regress_plain;
SELECT count(*) FROM connmgr.connection_limits;
SET ROLE regress_stu1;
SELECT role_name FROM connmgr.connection_limits;
RESET ROLE;

-- SECURITY LABEL FOR connmgr (what pg_dumpall writes) is validated too.
SECURITY LABEL FOR connmgr ON ROLE regress_stu1 IS 'per_member=2,on_limit=reject';
SELECT role_name, per_member, total, on_limit FROM connmgr.connection_limits
  WHERE role_name = 'regress_stu1';
SECURITY LABEL FOR connmgr ON ROLE regress_stu1 IS NULL;
\set VERBOSITY default
SECURITY LABEL FOR connmgr ON ROLE regress_stu1 IS 'garbage';
SECURITY LABEL FOR connmgr ON ROLE regress_stu1 IS 'per_member=2,per_member=3,on_limit=reject';
SECURITY LABEL FOR connmgr ON ROLE regress_stu1 IS 'per_member=-2,on_limit=reject';
SECURITY LABEL FOR connmgr ON ROLE regress_stu1 IS 'per_member=99999999999,on_limit=reject';
SECURITY LABEL FOR connmgr ON ROLE regress_stu1 IS 'on_limit=log';
SECURITY LABEL FOR connmgr ON ROLE regress_stu1 IS 'total=1,on_limit=nope';
CREATE TABLE regress_t (x int);
SECURITY LABEL FOR connmgr ON TABLE regress_t IS 'total=1,on_limit=reject';
DROP TABLE regress_t;
\set VERBOSITY sqlstate

-- A label is at most 256 bytes, so PostgreSQL never stores it out of line
-- (which the login check could not read): longer ones are refused.
SELECT 'per_member=5' || repeat(',', 300) AS long_label \gset
\set VERBOSITY default
SECURITY LABEL FOR connmgr ON ROLE regress_stu1 IS :'long_label';
SELECT pg_temp.outcome($$SECURITY LABEL FOR connmgr ON ROLE regress_stu1 IS $$ ||
                       quote_literal('per_member=5' || repeat(',', 300000)));
SELECT count(*) FROM pg_seclabels WHERE provider = 'connmgr' AND objname = 'regress_stu1';
\set VERBOSITY sqlstate

-- Role names are read like SQL identifiers, everywhere in the API: folded
-- unless double-quoted.  on_limit values are case-insensitive.
CREATE ROLE "Regress_Mixed" LOGIN;
SELECT connmgr.set_connection_limit('REGRESS_STU1', 2, on_limit => 'EVICT_IDLE');
SELECT role_name, per_member, on_limit FROM connmgr.connection_limits
  WHERE role_name = 'regress_stu1';
SELECT connmgr.set_connection_limit('"Regress_Mixed"', 1);
SELECT role_name FROM connmgr.connection_limits WHERE role_name = 'Regress_Mixed';
\set VERBOSITY default
SELECT connmgr.set_connection_limit('Regress_Mixed', 1);
\set VERBOSITY sqlstate
SELECT connmgr.drop_connection_limit('"Regress_Mixed"');
DROP ROLE "Regress_Mixed";

-- A value of type name (pg_roles.rolname, connection_limits.role_name) is
-- taken exactly: dropping the policies listed in the view drops those, and
-- never a role whose name differs only in case.
CREATE ROLE "Regress_Case" LOGIN;
CREATE ROLE regress_case LOGIN;
SELECT connmgr.set_connection_limit('"Regress_Case"', per_member => 0);
SELECT connmgr.set_connection_limit('regress_case', per_member => 5);
SELECT connmgr.drop_connection_limit(role_name) FROM connmgr.connection_limits
  WHERE role_name = 'Regress_Case';
SELECT role_name, per_member FROM connmgr.connection_limits WHERE role_name ILIKE 'regress_case';
SELECT connmgr.set_connection_limit(rolname, total => 3) FROM pg_roles
  WHERE rolname ILIKE 'regress_case' ORDER BY rolname;
SELECT role_name, per_member, total FROM connmgr.connection_limits
  WHERE role_name ILIKE 'regress_case' ORDER BY role_name;
-- Two strings naming one role in one statement: the second replaces the first.
SELECT connmgr.set_connection_limit(r, per_member => n) FROM (VALUES ('REGRESS_CASE', 1), ('regress_case', 2)) v(r, n);
SELECT role_name, per_member FROM connmgr.connection_limits WHERE role_name = 'regress_case';
SELECT connmgr.drop_connection_limit(role_name) FROM connmgr.connection_limits
  WHERE role_name ILIKE 'regress_case';
DROP ROLE "Regress_Case", regress_case;

-- Replacing a policy says what it was: unspecified limits are removed.
\set VERBOSITY default
SELECT connmgr.set_connection_limit('regress_stu1', per_member => 3, total => 60);
SELECT connmgr.set_connection_limit('regress_stu1', per_member => 3, on_limit => 'evict_idle');
SELECT connmgr.set_connection_limit('regress_stu1', per_member => 3, on_limit => 'evict_idle');
SELECT connmgr.drop_connection_limit('regress_stu1');

-- on_limit wait, with and without its own wait_timeout and max_waiting.
SELECT connmgr.set_connection_limit('regress_stu1', per_member => 2, on_limit => 'WAIT');
SELECT connmgr.set_connection_limit('regress_stu1', per_member => 2, on_limit => 'wait',
                                    wait_timeout => '2.5s', max_waiting => 7);
SELECT label FROM pg_seclabels WHERE provider = 'connmgr' AND objname = 'regress_stu1';
SELECT connmgr.drop_connection_limit('regress_stu1');

-- A policy on a superuser is kept (a restore may bring one) but never
-- applies: a NOTICE says so and the view marks it.
SELECT connmgr.set_connection_limit('regress_super', 1);
SECURITY LABEL FOR connmgr ON ROLE regress_super IS 'per_member=2,on_limit=reject';
\set VERBOSITY sqlstate
SELECT role_name, per_member, applies FROM connmgr.connection_limits
  WHERE role_name = 'regress_super';

-- export_policies: every policy as the statement pg_dumpall writes, for
-- superusers only.
SELECT connmgr.set_connection_limit('regress_stu1', total => 4, on_limit => 'log');
SELECT * FROM connmgr.export_policies();
SET ROLE regress_plain;
SELECT * FROM connmgr.export_policies();
RESET ROLE;
SELECT connmgr.drop_connection_limit('regress_stu1'), connmgr.drop_connection_limit('regress_super');

-- Dropping a role drops its policy with it.
CREATE ROLE regress_temp;
SELECT connmgr.set_connection_limit('regress_temp', 1);
DROP ROLE regress_temp;
SELECT role_name FROM connmgr.connection_limits;

SELECT connmgr.drop_connection_limit('regress_student');
DROP ROLE regress_student, regress_stu1, regress_creator, regress_plain, regress_super;
DROP EXTENSION connmgr;
