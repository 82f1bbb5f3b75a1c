# Administrators and fellows, with real logins and real GRANTs: what an
# instructor (ADMIN OPTION on a class) can do to the roles it may not
# manage by changing memberships.  A co-instructor it demoted (a fellow
# through a shared "teachers" group), a DBA with
# CREATEROLE, a member of pg_signal_backend (also NOINHERIT) it enrolled in
# the class: it can neither terminate them nor lock them out with the
# class's connection limit.  Its students stay manageable and limited,
# also inside a parent group, and a role's own policy binds even an
# administrator.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use ConnmgrTest;

my $node = connmgr_node('administrators', "log_error_verbosity = verbose\n");
$node->safe_psql('postgres', q{
	CREATE ROLE student NOLOGIN;
	CREATE ROLE teachers NOLOGIN;
	CREATE ROLE stu1 LOGIN IN ROLE student;
	CREATE ROLE instr1 LOGIN IN ROLE teachers;
	CREATE ROLE instr2 LOGIN IN ROLE teachers;
	GRANT student TO instr1 WITH ADMIN OPTION;
	CREATE ROLE instructor LOGIN;
	GRANT student TO instructor WITH ADMIN OPTION;
});
# From PostgreSQL 16 on, a role revokes only the grants it made itself.
my $pg16 = $node->pg_version >= 16;

# $caller's killConnection of $victim's session returns $expect: with 't'
# the session is gone, with 'f' the caller is told that no such connection
# exists (42704) and the session survives.
sub kill_as
{
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	my ($caller, $victim, $expect, $name) = @_;
	my $pid = $victim->{pid};
	my (undef, $out, $err) = sql_as($node, $caller, "SELECT connmgr.killConnection($pid)");
	is($out, $expect, "$name: killConnection returns $expect");
	if ($expect eq 't')
	{
		ok(!backend_alive($node, $pid), "$name: the session is gone");
	}
	else
	{
		like($err, qr/WARNING:  42704: no connection with process ID $pid\b/,
			"$name: warning 42704, as for a missing connection");
		ok(backend_alive($node, $pid), "$name: the session survives");
	}
}

# $caller runs $sql (a GRANT or REVOKE) and it succeeds.
sub run_ok
{
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	my ($caller, $sql, $name) = @_;
	my ($ret, undef, $err) = sql_as($node, $caller, $sql);
	is($ret, 0, $name) or diag($err);
}

sub login_ok
{
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	my ($user, $name) = @_;
	$node->connect_ok("dbname=postgres user=$user", $name);
}

# The login of $user is refused with 53300.
sub login_refused
{
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	my ($user, $name) = @_;
	my $offset = -s $node->logfile;
	$node->connect_fails("dbname=postgres user=$user", $name,
		expected_stderr => qr/FATAL:  too many connections for role "$user"/);
	ok($node->log_contains(qr/FATAL:  53300: too many connections for role "$user"/, $offset),
		"$name: SQLSTATE 53300");
}

sub set_limit
{
	$node->safe_psql('postgres', "SELECT connmgr.set_connection_limit($_[0])");
}

sub drop_limit
{
	$node->safe_psql('postgres', "SELECT connmgr.drop_connection_limit('$_[0]')");
}

# 1. Demoting a co-instructor: instr1 and instr2 both belong to "teachers"
# and administer "student".  On PostgreSQL 15 instr1 may revoke instr2's
# ADMIN OPTION whoever granted it; from 16 on only if instr1 granted it
# itself (a DBA's grant it cannot revoke).  Either way instr2 is left a
# plain member of the class and stays instr1's fellow, out of reach of
# kills and of the class's limit.
# Does $member's grant of student carry ADMIN OPTION ('t' or 'f')?
sub admin_option_on_student
{
	my ($member) = @_;
	return $node->safe_psql('postgres', qq{
		SELECT admin_option FROM pg_auth_members
		 WHERE roleid = 'student'::regrole AND member = '$member'::regrole});
}

if ($pg16)
{
	run_ok('instr1', 'GRANT student TO instr2 WITH ADMIN OPTION',
		'instr1 makes instr2 a co-instructor');
	run_ok('instr1', 'REVOKE ADMIN OPTION FOR student FROM instructor',
		'instr1 tries to revoke the ADMIN OPTION a DBA granted');
	is(admin_option_on_student('instructor'), 't',
		'PostgreSQL 16+ keeps the ADMIN OPTION a DBA granted');
}
else
{
	$node->safe_psql('postgres', 'GRANT student TO instr2 WITH ADMIN OPTION');
}
run_ok('instr1', 'REVOKE ADMIN OPTION FOR student FROM instr2',
	'an instructor revokes a co-instructor\'s ADMIN OPTION');
is(admin_option_on_student('instr2'), 'f', 'instr2 is now a plain member of student');
my $co = open_session($node, 'instr2');
my (undef, $seen) = sql_as($node, 'instr1',
	"SELECT count(*) FROM connmgr.listUserConnections('instr2')");
is($seen, '0', 'instr1 does not see the demoted co-instructor\'s connections');
kill_as('instr1', $co, 'f', 'instr1 ends the demoted co-instructor');
my $stu = open_session($node, 'stu1');
(undef, $seen) = sql_as($node, 'instr1',
	"SELECT count(*) FROM connmgr.listUserConnections('stu1')");
is($seen, '1', 'instr1 still sees a student');
kill_as('instr1', $stu, 't', 'instr1 ends a student');
close_sessions($node, $co, $stu);

set_limit("'student', per_member => 0");
login_ok('instr2', 'the demoted co-instructor logs in despite the class limit of 0');
login_refused('stu1', 'a student is refused by the class limit of 0');

# 2. Locking DBAs out: the instructor enrols a CREATEROLE DBA in the class,
# and pg_signal_backend itself (so its members inherit the class's
# limit).  Administrators are not bound by a group's policy ...
$node->safe_psql('postgres', q{
	CREATE ROLE dba LOGIN CREATEROLE;
	CREATE ROLE ops LOGIN IN ROLE pg_signal_backend;
});
run_ok('instructor', 'GRANT student TO dba', 'the instructor enrols the CREATEROLE DBA');
run_ok('instructor', 'GRANT student TO pg_signal_backend',
	'the instructor enrols pg_signal_backend');
is( $node->safe_psql('postgres', q{
		SELECT count(*) FROM pg_auth_members WHERE roleid = 'student'::regrole
		   AND member IN ('dba'::regrole, 'pg_signal_backend'::regrole)}),
	'2', 'both are members of the class now');
login_ok('dba', 'the CREATEROLE DBA logs in despite the class limit of 0');
login_ok('ops', 'a member of pg_signal_backend logs in despite the class limit of 0');
login_refused('stu1', 'the class limit still refuses the student');

# ... but a role's own policy binds an administrator too.
set_limit("'dba', per_member => 0");
login_refused('dba', 'the DBA\'s own policy of 0 refuses the DBA');
drop_limit('dba');
login_ok('dba', 'the DBA logs in again once its own policy is dropped');

# 3. A NOINHERIT member of pg_signal_backend is an administrator too: it
# may SET ROLE pg_signal_backend whenever it likes.
$node->safe_psql('postgres',
	'CREATE ROLE dba3 LOGIN NOINHERIT; GRANT pg_signal_backend TO dba3');
run_ok('instructor', 'GRANT student TO dba3', 'the instructor enrols the NOINHERIT DBA');
my $d3 = open_session($node, 'dba3');
kill_as('instructor', $d3, 'f', 'the instructor ends the NOINHERIT DBA');
close_sessions($node, $d3);
login_ok('dba3', 'the NOINHERIT DBA logs in despite the class limit of 0');
drop_limit('student');

$stu = open_session($node, 'stu1');
my (undef, $out) = sql_as($node, 'dba3', "SELECT connmgr.killConnection($stu->{pid})");
is($out, 'f', 'without SET ROLE the NOINHERIT DBA may not end a student');
ok(backend_alive($node, $stu->{pid}), 'so the student\'s session survives');
my $ret;
($ret, $out) = sql_as($node, 'dba3',
	"SET ROLE pg_signal_backend; SELECT connmgr.killConnection($stu->{pid})");
is($ret, 0, 'the NOINHERIT DBA may SET ROLE pg_signal_backend');
is($out, 't', 'and then ends the student\'s session');
ok(!backend_alive($node, $stu->{pid}), 'which is gone');
close_sessions($node, $stu);

# 3b. Administrators through a group: a member of a superuser role (it may
# SET ROLE to it), of a CREATEROLE group, and a REPLICATION role, each
# enrolled by the instructor, are neither killed nor locked out by it.
$node->safe_psql('postgres', q{
	CREATE ROLE rootish NOLOGIN SUPERUSER;
	CREATE ROLE dba5 LOGIN IN ROLE rootish;
	CREATE ROLE creators NOLOGIN CREATEROLE;
	CREATE ROLE dba6 LOGIN IN ROLE creators;
	CREATE ROLE repl LOGIN REPLICATION;
});
set_limit("'student', per_member => 0");
for my $admin ('dba5', 'dba6', 'repl')
{
	run_ok('instructor', "GRANT student TO $admin", "the instructor enrols $admin");
	login_ok($admin, "$admin logs in despite the class limit of 0");
}
drop_limit('student');
for my $admin ('dba5', 'dba6', 'repl')
{
	my $session = open_session($node, $admin);
	kill_as('instructor', $session, 'f', "the instructor ends $admin");
	close_sessions($node, $session);
}

# 4. A group that contains the class, which the instructor does not belong
# to, makes no student a fellow of the instructor.
$node->safe_psql('postgres',
	'CREATE ROLE university NOLOGIN; GRANT university TO student');
$stu = open_session($node, 'stu1');
kill_as('instructor', $stu, 't',
	'the instructor ends a student of a class inside a parent group');
close_sessions($node, $stu);
set_limit("'student', per_member => 0");
login_refused('stu1', 'the class limit still refuses a student inside a parent group');
drop_limit('student');

# 5. Nor does an "all users" group that contains the class and the
# instructors' group: it is not a group of fellows.
$node->safe_psql('postgres', q{
	CREATE ROLE everyone NOLOGIN;
	GRANT everyone TO student, teachers;
});
$stu = open_session($node, 'stu1');
kill_as('instr1', $stu, 't',
	'an instructor ends a student who shares an "all users" group with it');
close_sessions($node, $stu);
set_limit("'student', per_member => 0");
login_refused('stu1', 'the class limit still refuses a student in the "all users" group');
drop_limit('student');

# 6. A policy on an outer group: instr1 administers cs101, a class inside
# student, and enrols its fellow instr3 there.  student's policy reaches
# instr3 only through cs101, so it must not apply.
$node->safe_psql('postgres', q{
	CREATE ROLE cs101 NOLOGIN IN ROLE student;
	CREATE ROLE instr3 LOGIN IN ROLE teachers;
	GRANT cs101 TO instr1 WITH ADMIN OPTION;
	CREATE ROLE stu4 LOGIN IN ROLE cs101;
});
set_limit("'student', per_member => 0");
run_ok('instr1', 'GRANT cs101 TO instr3', 'instr1 enrols its fellow in cs101');
login_ok('instr3', 'the fellow is not locked out by the outer group\'s policy');
login_refused('stu4', 'a student of cs101 is');
drop_limit('student');

$node->stop;
done_testing();
