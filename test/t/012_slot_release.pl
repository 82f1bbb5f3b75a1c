# Every counted connection gives its slot back on every exit path, so the
# role can use its full limit again afterwards; restarts and crash
# restarts keep the policies and start from clean counters.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use ConnmgrTest;

my $node = connmgr_node('release', "restart_after_crash = on\n");
$node->safe_psql('postgres', q{
	CREATE ROLE stu1 LOGIN;
	SELECT connmgr.set_connection_limit('stu1', per_member => 2);
});

# The role can hold exactly its limit of 2 again: two logins work, a third
# is refused.
sub full_limit_usable
{
	my ($after) = @_;
	wait_for_count($node, 'stu1', 0);
	my @s = open_sessions($node, 'stu1', 2);
	$node->connect_fails('dbname=postgres user=stu1',
		"after $after: a third login is refused",
		expected_stderr => qr/too many connections for role "stu1"/);
	close_sessions($node, @s);
	pass("after $after: the full limit of 2 is usable");
}

full_limit_usable('start');

# Normal disconnect.
close_sessions($node, open_sessions($node, 'stu1', 2));
full_limit_usable('normal disconnects');

# FATAL later in startup, after the hook counted the login.
$node->connect_fails('dbname=no_such_db user=stu1', 'login to a missing database fails',
	expected_stderr => qr/database "no_such_db" does not exist/) for 1 .. 3;
full_limit_usable('FATAL for an unknown database');

$node->safe_psql('postgres', 'ALTER ROLE stu1 CONNECTION LIMIT 1');
my @s = open_sessions($node, 'stu1', 1);
$node->connect_fails('dbname=postgres user=stu1', 'PostgreSQL\'s own limit refuses the login',
	expected_stderr => qr/too many connections for role "stu1"$/) for 1 .. 3;
close_sessions($node, @s);
$node->safe_psql('postgres', 'ALTER ROLE stu1 CONNECTION LIMIT -1');
full_limit_usable('FATAL from rolconnlimit');

$node->safe_psql('postgres', 'ALTER ROLE stu1 NOLOGIN');
$node->connect_fails('dbname=postgres user=stu1', 'a NOLOGIN role is refused',
	expected_stderr => qr/not permitted to log in/) for 1 .. 3;
$node->safe_psql('postgres', 'ALTER ROLE stu1 LOGIN');
full_limit_usable('FATAL for NOLOGIN');

# pg_terminate_backend.
@s = open_sessions($node, 'stu1', 2);
$node->safe_psql('postgres',
	"SELECT pg_terminate_backend($_->{pid}, 10000) FROM (SELECT 1) x") for @s;
$_->quit for @s;
full_limit_usable('pg_terminate_backend');

# The client vanishes without saying goodbye.
@s = open_sessions($node, 'stu1', 2);
$_->{run}->kill_kill for @s;
$node->poll_query_until('postgres',
	"SELECT count(*) = 0 FROM pg_stat_activity WHERE usename = 'stu1'")
  or die 'backends of vanished clients did not exit';
full_limit_usable('clients vanishing');

# Restart: the policy survives and the counters start at zero.
@s = open_sessions($node, 'stu1', 2);
$node->restart;
$_->quit for @s;
full_limit_usable('a restart');

# Crash restart (a backend killed with SIGKILL): shared memory is rebuilt,
# counters start at zero, and the policy is still there.
@s = open_sessions($node, 'stu1', 2);
my $crash_offset = -s $node->logfile;
kill 'KILL', $s[0]{pid};
$node->wait_for_log(qr/all server processes terminated; reinitializing/, $crash_offset);
$node->wait_for_log(qr/database system is ready to accept connections/, $crash_offset);
pass('the server went through a crash restart');
$_->quit for @s;
$node->poll_query_until('postgres',
	"SELECT count(*) = 0 FROM pg_stat_activity WHERE usename = 'stu1'")
  or die 'sessions did not go away in the crash restart';
full_limit_usable('a crash restart');
is($node->safe_psql('postgres',
		"SELECT per_member, total_connections FROM connmgr.connection_limits WHERE role_name = 'stu1'"),
	'2|0', 'the policy survived and nothing is counted after the crash');

$node->stop;
done_testing();
