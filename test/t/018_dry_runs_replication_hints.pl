# With real logins: log-only policies (dry runs) never weaken an enforced
# limit; logical replication connections (replication=database) are counted
# and limited while physical ones are exempt; the HINT of a refusal fits its
# cause (own connections, a limit of 0, a group total used by others) and
# names no connmgr function; a policy on a superuser has no effect.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use ConnmgrTest;

my $node = connmgr_node('dry_runs',
	"log_error_verbosity = verbose\nwal_level = logical\nmax_wal_senders = 8\n");
$node->safe_psql('postgres', q{
	CREATE ROLE student NOLOGIN;
	CREATE ROLE cs101 NOLOGIN IN ROLE student;
	CREATE ROLE stu2 LOGIN IN ROLE cs101;
	CREATE ROLE stu3 LOGIN IN ROLE cs101;
	CREATE ROLE stu4 LOGIN IN ROLE cs101;
	CREATE ROLE repl LOGIN REPLICATION;
	CREATE ROLE boss LOGIN SUPERUSER;
});

sub set_limit
{
	my ($args) = @_;
	$node->safe_psql('postgres', "SELECT connmgr.set_connection_limit($args)");
}

sub drop_limits
{
	$node->safe_psql('postgres',
		'SELECT count(connmgr.drop_connection_limit(role_name)) FROM connmgr.connection_limits');
}

my $hint_close = 'Close connections you no longer use, or ask your instructor or database administrator to end them.';
my $hint_zero = 'This limit allows no connections at all. Ask your instructor or database administrator if you need to connect.';
my $hint_others = 'Other members of role "cs101" are using all of its connections. Try again later, or ask your instructor or database administrator to raise the limit.';
my $client_messages = '';

# Login of $user must fail with exactly connmgr's FATAL, $detail and $hint
# (nothing after the HINT), with SQLSTATE 53300 in the server log.  $extra
# is appended to the connection string (e.g. " replication=database").
sub login_refused
{
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	my ($user, $detail, $hint, $name, $extra) = @_;
	my $offset = -s $node->logfile;
	my ($ret, $stdout, $stderr) = $node->psql('postgres', undef,
		extra_params => ['-w'],
		connstr => "dbname=postgres user=$user" . ($extra // ''));
	isnt($ret, 0, $name);
	like($stderr,
		qr/failed: FATAL:  too many connections for role "$user"\nDETAIL:  \Q$detail\E\nHINT:  \Q$hint\E\z/,
		"$name: FATAL, DETAIL and HINT");
	ok($node->log_contains(qr/FATAL:  53300: too many connections for role "$user"/, $offset),
		"$name: SQLSTATE 53300");
	$client_messages .= "$stderr\n";
}

sub login_ok
{
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	my ($user, $name, %params) = @_;
	$node->connect_ok("dbname=postgres user=$user", $name, %params);
}

sub count_of
{
	my ($role) = @_;
	return $node->safe_psql('postgres',
		"SELECT total_connections FROM connmgr.connection_limits WHERE role_name = '$role'");
}

# Item 4: a log-only per_member of cs101 (2) does not lift student's
# enforced 3; reaching it only logs.
set_limit("'student', per_member => 3");
set_limit("'cs101', per_member => 2, on_limit => 'log'");
my @s = open_sessions($node, 'stu2', 2);
my $offset = -s $node->logfile;
push @s, open_session($node, 'stu2');
pass('the third login of stu2 is admitted over the log-only limit of cs101');
ok( $node->log_contains(
		qr/WARNING:  53300: login of role "stu2" admitted over the connection limit of role "cs101", which only logs\n.*DETAIL:  Role "stu2" has 2 connections; the limit for members of "cs101" is 2\./,
		$offset),
	'the dry run logs a WARNING naming cs101');
login_refused('stu2',
	'Role "stu2" has 3 connections; the limit for members of "student" is 3.',
	$hint_close, 'a log-only per_member of a group does not weaken an enforced one');
close_sessions($node, @s);

# The role's own log-only per_member does not lift the inherited enforced
# one either, though an own enforced per_member would.
$node->safe_psql('postgres', "SELECT connmgr.drop_connection_limit('cs101')");
set_limit("'stu2', per_member => 6, on_limit => 'log'");
@s = open_sessions($node, 'stu2', 3);
login_refused('stu2',
	'Role "stu2" has 3 connections; the limit for members of "student" is 3.',
	$hint_close, "the role's own log-only per_member does not lift its group's");
close_sessions($node, @s);

# A dry run of the role's own that is reached logs with the own DETAIL.
set_limit("'stu2', per_member => 1, on_limit => 'log'");
@s = open_sessions($node, 'stu2', 1);
$offset = -s $node->logfile;
push @s, open_session($node, 'stu2');
ok( $node->log_contains(
		qr/WARNING:  53300: login of role "stu2" admitted over the connection limit of role "stu2", which only logs\n.*DETAIL:  Role "stu2" has 1 connection; its limit is 1\./,
		$offset),
	"the role's own dry run logs a WARNING naming the role");
close_sessions($node, @s);
drop_limits();

# Item 13: the HINT fits the refusal.  A total reached while the user holds
# connections: close some.
set_limit("'cs101', total => 2");
@s = (open_session($node, 'stu2'), open_session($node, 'stu3'));
login_refused('stu2', 'Role "cs101" and its members have 2 connections; the limit is 2.',
	$hint_close, 'a total reached while the user holds connections');
# ... reached by other members while the user holds none: wait, or ask.
login_refused('stu4', 'Role "cs101" and its members have 2 connections; the limit is 2.',
	$hint_others, 'a group total reached by other members');
close_sessions($node, @s);
drop_limits();

# ... and by other members while the user's own connections do not count
# toward it (opened before the user was enrolled): closing them frees
# nothing, so the HINT says to wait.
$node->safe_psql('postgres', 'CREATE ROLE stu5 LOGIN');
set_limit("'cs101', total => 1");
@s = (open_session($node, 'stu5'), open_session($node, 'stu3'));
$node->safe_psql('postgres', 'GRANT cs101 TO stu5');
login_refused('stu5', 'Role "cs101" and its members have 1 connection; the limit is 1.',
	$hint_others, 'a total reached by others while the user\'s connections do not count');
close_sessions($node, @s);
drop_limits();

# A limit of 0, inherited per_member or total: no connections at all, even
# when the user holds some opened before the limit was set.
set_limit("'student', per_member => 0");
login_refused('stu4', 'Role "stu4" has 0 connections; the limit for members of "student" is 0.',
	$hint_zero, 'an inherited per_member of 0');
$node->safe_psql('postgres', "SELECT connmgr.drop_connection_limit('student')");
@s = open_sessions($node, 'stu2', 1);
set_limit("'student', per_member => 0");
login_refused('stu2', 'Role "stu2" has 1 connection; the limit for members of "student" is 0.',
	$hint_zero, 'a per_member of 0 while the user holds a connection');
close_sessions($node, @s);
drop_limits();
set_limit("'cs101', total => 0");
login_refused('stu4', 'Role "cs101" and its members have 0 connections; the limit is 0.',
	$hint_zero, 'a total of 0');
drop_limits();

# Item 12: a logical replication connection is counted and limited; a
# physical one is neither.
set_limit("'repl', per_member => 1");
my $walsender = open_session($node, 'repl', replication => 'database');
wait_for_count($node, 'repl', 1);
is(count_of('repl'), '1', 'a replication=database connection is counted');
login_refused('repl', 'Role "repl" has 1 connection; its limit is 1.',
	$hint_close, 'it blocks a regular login at the limit');
login_refused('repl', 'Role "repl" has 1 connection; its limit is 1.',
	$hint_close, 'and a second replication=database connection',
	' replication=database');
$node->connect_ok('dbname=postgres user=repl replication=true',
	'a physical replication connection is exempt at the limit',
	sql => 'IDENTIFY_SYSTEM',
	expected_stdout => qr/^\d+\|1\|/);
my $physical = open_session($node, 'repl', replication => 'true');
is(count_of('repl'), '1', 'a physical walsender is not counted');
close_sessions($node, $walsender);
wait_for_count($node, 'repl', 0);
login_ok('repl', 'with the logical walsender gone, a regular login is admitted');
my $regular = open_session($node, 'repl');
login_refused('repl', 'Role "repl" has 1 connection; its limit is 1.',
	$hint_close, 'a regular session blocks a replication=database connection',
	' replication=database');
close_sessions($node, $regular, $physical);
drop_limits();

# Refusal HINTs point to people, never to a connmgr function.
unlike($client_messages, qr/HINT:[^\n]*connmgr/,
	'no HINT the clients received names a connmgr function');
ok(!$node->log_contains(qr/HINT:  [^\n]*connmgr/),
	'no HINT in the server log names a connmgr function');

# Item 14: a policy on a superuser has no effect, and says so.
my ($ret, $out, $err) = sql_as($node, undef,
	"SELECT connmgr.set_connection_limit('boss', per_member => 0)");
is($ret, 0, 'a policy can be set on a superuser');
like($err,
	qr/NOTICE:  01000: role "boss" is a superuser, so its connection limit policy has no effect/,
	'with a NOTICE that it has no effect');
is( $node->safe_psql('postgres',
		"SELECT per_member, applies FROM connmgr.connection_limits WHERE role_name = 'boss'"),
	'0|f', 'connection_limits shows that it does not apply');
login_ok('boss', 'the superuser still logs in');

$node->stop;
done_testing();
