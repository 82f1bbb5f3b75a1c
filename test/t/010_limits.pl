# Connection-limit policies enforced at login, with real logins: per_member
# through direct and nested groups, total across members, precedence, 0,
# superuser exemption, log mode, connmgr.enabled, and cluster-wide scope.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use ConnmgrTest;

my $node = connmgr_node('limits', "log_error_verbosity = verbose\n");
$node->safe_psql('postgres', q{
	CREATE ROLE student NOLOGIN;
	CREATE ROLE cs101 NOLOGIN IN ROLE student;
	CREATE ROLE stu1 LOGIN IN ROLE student;
	CREATE ROLE stu2 LOGIN IN ROLE cs101;
	CREATE ROLE stu3 LOGIN IN ROLE cs101;
	CREATE DATABASE other;
});

sub set_limit
{
	my ($args) = @_;
	$node->safe_psql('postgres', "SELECT connmgr.set_connection_limit($args)");
}

my $hint_close = 'Close connections you no longer use, or ask your instructor or database administrator to end them.';
my $hint_zero = 'This limit allows no connections at all. Ask your instructor or database administrator if you need to connect.';

# Login of $user must fail with connmgr's message, $detail and $hint (by
# default the one for a user who holds connections).
sub login_refused
{
	my ($user, $detail, $name, $db, $hint) = @_;
	$db //= 'postgres';
	$hint //= $hint_close;
	my $offset = -s $node->logfile;
	$node->connect_fails("dbname=$db user=$user", $name,
		expected_stderr => qr/FATAL:  too many connections for role "$user"\nDETAIL:  \Q$detail\E\nHINT:  \Q$hint\E/);
	ok($node->log_contains(qr/FATAL:  53300: too many connections for role "$user"/, $offset),
		"$name: SQLSTATE 53300");
}

sub login_ok
{
	my ($user, $name, $db) = @_;
	$node->connect_ok('dbname=' . ($db // 'postgres') . " user=$user", $name);
}

# per_member through a direct membership.
set_limit("'student', per_member => 2");
my @s = open_sessions($node, 'stu1', 2);
login_refused('stu1',
	'Role "stu1" has 2 connections; the limit for members of "student" is 2.',
	'per_member of a direct group');

# ... and through a nested one (stu2 -> cs101 -> student).
my @n = open_sessions($node, 'stu2', 2);
login_refused('stu2',
	'Role "stu2" has 2 connections; the limit for members of "student" is 2.',
	'per_member of a nested group');
close_sessions($node, @s, @n);

# The limit applies to logins to every database, wherever it was set.
$node->safe_psql('other', 'CREATE EXTENSION connmgr');
$node->safe_psql('other',
	"SELECT connmgr.set_connection_limit('student', per_member => 1)");
@s = open_sessions($node, 'stu1', 1, db => 'postgres');
login_refused('stu1',
	'Role "stu1" has 1 connection; the limit for members of "student" is 1.',
	'a limit set in another database applies', 'postgres');
login_refused('stu1',
	'Role "stu1" has 1 connection; the limit for members of "student" is 1.',
	'connections to all databases count together', 'other');
close_sessions($node, @s);
$node->safe_psql('postgres', "SELECT connmgr.drop_connection_limit('student')");

# total across all members of a group.
set_limit("'cs101', total => 3");
@s = (open_sessions($node, 'stu2', 2), open_session($node, 'stu3'));
login_refused('stu3',
	'Role "cs101" and its members have 3 connections; the limit is 3.',
	'total counts every member');
login_ok('stu1', 'a role outside the group is not affected');
close_sessions($node, $s[0]);
login_ok('stu3', 'a freed slot can be used by another member');
close_sessions($node, @s[ 1 .. 2 ]);
$node->safe_psql('postgres', "SELECT connmgr.drop_connection_limit('cs101')");

# Precedence: the login role's own per_member replaces inherited ones ...
set_limit("'student', per_member => 1");
set_limit("'stu1', per_member => 3");
@s = open_sessions($node, 'stu1', 3);
login_refused('stu1', 'Role "stu1" has 3 connections; its limit is 3.',
	"the role's own per_member wins over its group's");
close_sessions($node, @s);

# ... otherwise the smallest inherited per_member applies ...
set_limit("'cs101', per_member => 2");
@s = open_sessions($node, 'stu2', 1);
login_refused('stu2',
	'Role "stu2" has 1 connection; the limit for members of "student" is 1.',
	'the smallest inherited per_member applies');
close_sessions($node, @s);

# ... and every total of every group applies on top.
set_limit("'student', per_member => 5, total => 2");
set_limit("'cs101', per_member => 5, total => 10");
@s = (open_session($node, 'stu1'), open_session($node, 'stu2'));
login_refused('stu3',
	'Role "student" and its members have 2 connections; the limit is 2.',
	'a total of an outer group applies to nested members', undef,
	'Other members of role "student" are using all of its connections. Try again later, or ask your instructor or database administrator to raise the limit.');
close_sessions($node, @s);
$node->safe_psql('postgres', q{
	SELECT connmgr.drop_connection_limit(r) FROM unnest(ARRAY['student', 'cs101', 'stu1']::name[]) r});

# A limit of 0: nobody concerned may connect.
set_limit("'stu3', per_member => 0");
login_refused('stu3', 'Role "stu3" has 0 connections; its limit is 0.',
	'per_member 0 keeps the role out', undef, $hint_zero);
set_limit("'cs101', total => 0");
login_refused('stu2', 'Role "cs101" and its members have 0 connections; the limit is 0.',
	'total 0 keeps every member out', undef, $hint_zero);
$node->safe_psql('postgres', q{
	SELECT connmgr.drop_connection_limit('stu3'), connmgr.drop_connection_limit('cs101')});
login_ok('stu3', 'dropping the policy lets the role in again');

# Superusers are exempt, even as members of a group that allows nobody.
$node->safe_psql('postgres', 'CREATE ROLE dba LOGIN SUPERUSER IN ROLE student');
set_limit("'student', per_member => 0, total => 0");
login_ok('dba', 'a superuser member logs in despite a limit of 0');
login_refused('stu1', 'Role "student" and its members have 0 connections; the limit is 0.',
	'while the students cannot', undef, $hint_zero);
$node->safe_psql('postgres', "SELECT connmgr.drop_connection_limit('student')");

# NOINHERIT roles do not inherit their groups' limits, as with privileges.
$node->safe_psql('postgres', 'CREATE ROLE loner LOGIN NOINHERIT IN ROLE student');
set_limit("'student', per_member => 0");
login_ok('loner', 'a NOINHERIT member is not bound by its group\'s limit');
$node->safe_psql('postgres', "SELECT connmgr.drop_connection_limit('student')");

# on_limit = 'log': admitted, with a WARNING in the server log.
set_limit("'stu1', per_member => 1, on_limit => 'log'");
@s = open_sessions($node, 'stu1', 1);
my $offset = -s $node->logfile;
login_ok('stu1', 'log mode admits a login over the limit');
ok( $node->log_contains(
		qr/WARNING:  53300: login of role "stu1" admitted over the connection limit of role "stu1", which only logs\n.*DETAIL:  Role "stu1" has 1 connection; its limit is 1\./,
		$offset),
	'log mode logs a WARNING that names the policy');
close_sessions($node, @s);

# connmgr.enabled = off (reload, no restart) stops enforcement.
set_limit("'stu1', per_member => 1");
wait_for_count($node, 'stu1', 0);
@s = open_sessions($node, 'stu1', 1);
$node->safe_psql('postgres', 'ALTER SYSTEM SET connmgr.enabled = off');
$node->reload;
login_ok('stu1', 'with connmgr.enabled off, the limit is not enforced');
my @extra = open_sessions($node, 'stu1', 1);
$node->safe_psql('postgres', 'ALTER SYSTEM RESET connmgr.enabled');
$node->reload;
wait_for_count($node, 'stu1', 2);
login_refused('stu1', 'Role "stu1" has 2 connections; its limit is 1.',
	'back on: sessions opened while off were counted too');
close_sessions($node, @s, @extra);
login_ok('stu1', 'and the role is admitted again once below its limit');
$node->safe_psql('postgres', "SELECT connmgr.drop_connection_limit('stu1')");

# The view shows each policy with the counts against it.
set_limit("'student', per_member => 4, total => 9, on_limit => 'evict_idle'");
@s = (open_sessions($node, 'stu1', 2), open_session($node, 'stu2'));
wait_for_count($node, 'student', 3);
is( $node->safe_psql('postgres',
		"SELECT per_member, max_member_connections, total, total_connections, on_limit FROM connmgr.connection_limits WHERE role_name = 'student'"),
	'4|2|9|3|evict_idle',
	'connection_limits shows limits and current counts');
close_sessions($node, @s);

# An instructor holds ADMIN OPTION on the class: administering a group is
# not belonging to it, so the class's limits do not apply to the
# instructor and the instructor's connections do not count in its total.
$node->safe_psql('postgres', q{
	CREATE ROLE instructor LOGIN;
	GRANT student TO instructor WITH ADMIN OPTION;
	SELECT connmgr.set_connection_limit('student', per_member => 1, total => 2);
});
my @teacher = open_sessions($node, 'instructor', 3);
pass('the instructor holds 3 connections despite per_member 1 of the class');
@s = (open_session($node, 'stu1'), open_session($node, 'stu2'));
is($node->safe_psql('postgres',
		"SELECT total_connections FROM connmgr.connection_limits WHERE role_name = 'student'"),
	'2', "the class's total counts the students only");
close_sessions($node, @teacher, @s);
$node->safe_psql('postgres', "SELECT connmgr.drop_connection_limit('student')");

# Fail safe: a damaged policy (here a label corrupted by a direct catalog
# update, bypassing validation) is skipped with a WARNING; the other
# policies still apply, and nobody is locked out by the damaged one.
$node->safe_psql('postgres', q{
	SELECT connmgr.set_connection_limit('student', per_member => 0);
	SELECT connmgr.set_connection_limit('cs101', total => 0);
	SET allow_system_table_mods = on;
	UPDATE pg_shseclabel SET label = 'per_member=oops'
	 WHERE provider = 'connmgr' AND objoid = 'student'::regrole});
$offset = -s $node->logfile;
login_ok('stu1', 'a damaged policy does not lock members out');
ok( $node->log_contains(
		qr/WARNING:  22023: ignoring the damaged connection limit policy of role "student"\n.*DETAIL:  per_member must be a non-negative integer\./,
		$offset),
	'and the damage is logged');
login_refused('stu2', 'Role "cs101" and its members have 0 connections; the limit is 0.',
	'the other policies of the user still apply', undef, $hint_zero);
my ($rows, $view_err);
$node->psql('postgres', 'SELECT role_name FROM connmgr.connection_limits',
	stdout => \$rows, stderr => \$view_err);
is($rows, 'cs101', 'connection_limits still lists the intact policies');
like($view_err, qr/the connection limit policy of role "student" is damaged/,
	'and warns about the damaged one');
$node->safe_psql('postgres',
	"SELECT connmgr.drop_connection_limit('student'), connmgr.drop_connection_limit('cs101')");
login_ok('stu2', 'drop_connection_limit removes even a damaged policy');

# connmgr.max_tracked_roles caps the shared counter table: a login that
# would need more entries is admitted uncounted, with a WARNING.
$node->append_conf('postgresql.conf', 'connmgr.max_tracked_roles = 100');
$node->restart;
$node->safe_psql('postgres', q{
	CREATE ROLE joiner LOGIN;
	SELECT format('CREATE ROLE club%s NOLOGIN; GRANT club%s TO joiner', i, i)
	  FROM generate_series(1, 120) i
	\gexec
	SELECT connmgr.set_connection_limit('joiner', per_member => 5);
});
$offset = -s $node->logfile;
login_ok('joiner', 'a login needing more counter entries than the cap is admitted');
ok( $node->log_contains(
		qr/WARNING:  53400: could not count a connection of role "joiner"/, $offset),
	'uncounted, with a WARNING that names the role');
@s = open_sessions($node, 'stu1', 1);
$node->safe_psql('postgres', "SELECT connmgr.set_connection_limit('stu1', per_member => 1)");
is($node->safe_psql('postgres',
		"SELECT total_connections FROM connmgr.connection_limits WHERE role_name = 'stu1'"),
	'1', 'a login within the cap is counted, even from before its policy existed');
close_sessions($node, @s);

# Role names are read like SQL identifiers by every function: 'STU1' is
# stu1 for set_connection_limit as for listUserConnections, and a name
# longer than 63 bytes is refused instead of being truncated onto the role
# whose name is its first 63 bytes.
my $long = 'x' x 63;
$node->safe_psql('postgres', qq{CREATE ROLE "$long" LOGIN});
my ($ret, $out, $err) = sql_as($node, undef,
	"SELECT connmgr.set_connection_limit('${long}y', per_member => 0)");
like($err, qr/ERROR:  42622: role name "x{63}\.\.\." is too long/,
	'a 64-byte role name is refused with 42622');
login_ok($long, 'and the role with the truncated name is not limited');
is($node->safe_psql('postgres',
		"SELECT count(*) FROM pg_seclabels WHERE provider = 'connmgr' AND objname = '$long'"),
	'0', 'no policy was written on the role with the truncated name');

@s = open_sessions($node, 'stu1', 1);
($ret, $out, $err) = sql_as($node, undef,
	"SELECT connmgr.set_connection_limit('STU1', per_member => 1, on_limit => 'REJECT')");
is($ret, 0, "set_connection_limit('STU1', on_limit => 'REJECT') is accepted");
login_refused('stu1', 'Role "stu1" has 1 connection; its limit is 1.',
	"a policy set as 'STU1' applies to stu1");
is($node->safe_psql('postgres',
		"SELECT count(*) FROM connmgr.listUserConnections('STU1')"),
	'1', "listUserConnections('STU1') finds the same role");

# Replacing a policy is visible to the client that does it.
($ret, $out, $err) = sql_as($node, undef,
	"SELECT connmgr.set_connection_limit('stu1', per_member => 1, total => 5); "
	  . "SELECT connmgr.set_connection_limit('stu1', per_member => 2, on_limit => 'evict_idle')");
like($err,
	qr/NOTICE:  00000: replacing the connection limit policy of role "stu1"\n(?:.*\n)?DETAIL:  The policy was "per_member=1,total=5,on_limit=reject" and is now "per_member=2,on_limit=evict_idle"; limits that are not given are removed\./,
	'replacing a policy shows the old and the new one');
close_sessions($node, @s);
$node->safe_psql('postgres', "SELECT connmgr.drop_connection_limit('stu1')");

$node->stop;
done_testing();
