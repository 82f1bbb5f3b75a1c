--
-- ClassDB-compatible API: listUserConnections, killConnection,
-- killUserConnections.  Other sessions are opened with dblink, so this runs
-- in one psql session; several real logins are covered by test/t/ too.
--
-- Warnings name process IDs, which change from run to run: show SQLSTATEs.
\set VERBOSITY sqlstate
CREATE EXTENSION connmgr;
CREATE EXTENSION dblink;

CREATE ROLE regress_instructor LOGIN;
CREATE ROLE regress_student NOLOGIN;
CREATE ROLE regress_stu1 LOGIN IN ROLE regress_student;
CREATE ROLE regress_stu2 LOGIN IN ROLE regress_student;
CREATE ROLE "REGRESS_STU1" LOGIN;
GRANT regress_student TO regress_instructor WITH ADMIN OPTION;

-- Inputs that name nobody: no rows, no error.
SELECT count(*) FROM connmgr.listUserConnections(NULL);
SELECT count(*) FROM connmgr.listUserConnections('');
SELECT count(*) FROM connmgr.listUserConnections('""');
SELECT count(*) FROM connmgr.listUserConnections('regress_nobody');
SELECT count(*) FROM connmgr.listUserConnections(repeat('x', 64));
SELECT count(*) FROM connmgr.listUserConnections(repeat('x', 10000));
SELECT count(*) FROM connmgr.listUserConnections('x''; DROP TABLE pg_class; --');
SELECT count(*) FROM connmgr.listUserConnections('"unterminated');
SELECT count(*) FROM connmgr.killUserConnections(NULL);
SELECT count(*) FROM connmgr.killUserConnections('');
SELECT count(*) FROM connmgr.killUserConnections('regress_nobody');

-- killConnection on things that are not someone else's connection.
SELECT connmgr.killConnection(NULL);
SELECT connmgr.killConnection(0);
SELECT connmgr.killConnection(-1);
SELECT connmgr.killConnection(2147483647);
SELECT connmgr.killConnection(pg_backend_pid());
SELECT connmgr.killConnection(pid) FROM pg_stat_activity
  WHERE backend_type = 'checkpointer';
SELECT connmgr.killConnection(split_part(pg_read_file('postmaster.pid'), E'\n', 1)::int);
-- ... and this session survived all of it.
SELECT 'still here' AS survived;

-- Own sessions: listed, but killUserConnections(current_user) spares the
-- caller: no row for it, nothing terminated.  (Background workers running
-- as this superuser, if any, get a false row with a warning.)
SELECT count(*) FROM connmgr.listUserConnections(current_user);
SET client_min_messages = error;
SELECT count(*) FILTER (WHERE pid = pg_backend_pid()) AS own_rows,
       count(*) FILTER (WHERE success) AS terminated
  FROM connmgr.killUserConnections(current_user);
RESET client_min_messages;

-- Two sessions of regress_stu1, in two databases, and one of "REGRESS_STU1".
CREATE DATABASE regress_connmgr_other;
SELECT dblink_connect('stu1_a', 'dbname=' || current_database() || ' user=regress_stu1 application_name=app_a');
SELECT dblink_connect('stu1_b', 'dbname=regress_connmgr_other user=regress_stu1 application_name=app_b');
SELECT dblink_connect('upper', 'dbname=' || current_database() || ' user=REGRESS_STU1');
SELECT dblink_connect('stu2', 'dbname=' || current_database() || ' user=regress_stu2');

-- One row per session across both databases, oldest first, with the
-- ClassDB columns; over a Unix socket clientAddress is NULL, and no query
-- has run yet in these sessions.
SELECT userName, applicationName, clientAddress, lastQueryStartTime,
       connectionStartTime <= now() AS started
  FROM connmgr.listUserConnections('regress_stu1');
SELECT pid = (SELECT pid FROM pg_stat_activity WHERE application_name = 'app_a') AS first_is_oldest
  FROM connmgr.listUserConnections('regress_stu1') LIMIT 1;
SELECT pg_typeof(userName), pg_typeof(pid), pg_typeof(applicationName),
       pg_typeof(clientAddress), pg_typeof(connectionStartTime),
       pg_typeof(lastQueryStartTime)
  FROM connmgr.listUserConnections('regress_stu1') LIMIT 1;

-- After a query, lastQueryStartTime is set.
SELECT * FROM dblink('stu1_a', 'SELECT 1') AS t(x int);
SELECT applicationName, lastQueryStartTime IS NOT NULL AS has_query_start
  FROM connmgr.listUserConnections('regress_stu1');

-- Name folding: unquoted names fold to lower case, quoted keep their case.
SELECT count(*) FROM connmgr.listUserConnections('REGRESS_STU1');
SELECT count(*) FROM connmgr.listUserConnections('Regress_Stu1');
SELECT count(*) FROM connmgr.listUserConnections('"REGRESS_STU1"');
SELECT userName FROM connmgr.listUserConnections('"REGRESS_STU1"');
SELECT count(*) FROM connmgr.listUserConnections('"regress_stu1"');

-- ClassDB's documented query works with the schema name changed.
SELECT userName, COUNT(*) connections
  FROM connmgr.listUserConnections('regress_stu1')
  GROUP BY userName;

-- Visibility: a student sees only their own sessions; the instructor, who
-- holds ADMIN OPTION on regress_student, sees the students'.
SET ROLE regress_stu2;
SELECT count(*) FROM connmgr.listUserConnections('regress_stu1');
SELECT count(*) FROM connmgr.listUserConnections('regress_stu2');
SELECT count(*) FROM connmgr.killUserConnections('regress_stu1');
SELECT connmgr.killConnection(pid) FROM pg_stat_activity WHERE application_name = 'app_a';
SET ROLE regress_instructor;
SELECT count(*) FROM connmgr.listUserConnections('regress_stu1');
SELECT count(*) FROM connmgr.listUserConnections('"REGRESS_STU1"');
RESET ROLE;

-- The instructor kills one session of regress_stu1 by pid: it is gone
-- when the function returns.
SET ROLE regress_instructor;
SELECT connmgr.killConnection(pid) FROM pg_stat_activity WHERE application_name = 'app_a';
RESET ROLE;
SELECT count(*) FROM pg_stat_activity WHERE application_name = 'app_a';
SELECT applicationName FROM connmgr.listUserConnections('regress_stu1');

-- killUserConnections: one row per connection, all gone afterwards.
SELECT success FROM connmgr.killUserConnections('regress_stu1');
SELECT count(*) FROM pg_stat_activity WHERE usename = 'regress_stu1';
SELECT count(*) FROM connmgr.listUserConnections('regress_stu1');

-- A student cleans up their own stray sessions: killUserConnections run
-- by regress_stu2 ends its other session and reports none for its own.
SELECT dblink_connect('stu2_other', 'dbname=' || current_database() || ' user=regress_stu2');
SELECT * FROM dblink('stu2',
  'SELECT pid = pg_backend_pid(), success FROM connmgr.killUserConnections(''regress_stu2'')')
  AS t(own boolean, success boolean);
SELECT count(*) FROM pg_stat_activity WHERE usename = 'regress_stu2';

-- Inside one transaction, each call sees the connections as they are now,
-- not as they were at the transaction's first call.
BEGIN;
SELECT count(*) FROM connmgr.listUserConnections('regress_stu2');
SELECT dblink_connect('stu2_late', 'dbname=' || current_database() || ' user=regress_stu2');
SELECT count(*) FROM connmgr.listUserConnections('regress_stu2');
SELECT success FROM connmgr.killUserConnections('regress_stu2');
SELECT count(*) FROM connmgr.listUserConnections('regress_stu2');
COMMIT;
SELECT dblink_disconnect('stu2_late');
SELECT dblink_connect('stu2_again', 'dbname=' || current_database() || ' user=regress_stu2');

-- A kill of a connection that has already gone reports false.
SELECT pid AS stu2_pid FROM pg_stat_activity WHERE usename = 'regress_stu2' \gset
SELECT connmgr.killConnection(:stu2_pid);
SELECT connmgr.killConnection(:stu2_pid);

SELECT dblink_disconnect('stu1_a');
SELECT dblink_disconnect('stu1_b');
SELECT dblink_disconnect('stu2');
SELECT dblink_disconnect('stu2_other');
SELECT dblink_disconnect('stu2_again');
SELECT dblink_disconnect('upper');

DROP DATABASE regress_connmgr_other;
DROP ROLE regress_instructor, regress_stu1, regress_stu2, "REGRESS_STU1", regress_student;
DROP EXTENSION dblink;
DROP EXTENSION connmgr;
