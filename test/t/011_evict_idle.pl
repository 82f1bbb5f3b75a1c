# on_limit = 'evict_idle': a login at the limit ends the user's longest-idle
# connection (idle for at least connmgr.evict_min_idle) and is admitted;
# connections busy in a query or idle in a transaction are never evicted.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use ConnmgrTest;

my $node = connmgr_node('evict', "connmgr.evict_min_idle = '1s'\n");
$node->safe_psql('postgres', q{
	CREATE ROLE student NOLOGIN;
	CREATE ROLE stu1 LOGIN IN ROLE student;
	SELECT connmgr.set_connection_limit('student', per_member => 2, on_limit => 'evict_idle');
});

my $idle = open_session($node, 'stu1', app => 'stray');
my $busy = open_session($node, 'stu1', app => 'busy');
start_busy($node, $busy);
wait_idle($node, $idle);

my $offset = -s $node->logfile;
$node->connect_ok('dbname=postgres user=stu1',
	'a login at the limit is admitted by evicting an idle session');
ok(!backend_alive($node, $idle->{pid}), 'the stray idle session is gone');
ok(backend_alive($node, $busy->{pid}), 'the session busy in a query is not evicted');
ok( $node->log_contains(
		qr/evicting idle connection $idle->{pid} of role "stu1" to admit a login of process \d+/,
		$offset),
	'the eviction is logged');
wait_for_count($node, 'student', 1);

sub set_min_idle
{
	my ($value) = @_;
	$node->safe_psql('postgres', "ALTER SYSTEM SET connmgr.evict_min_idle = '$value'");
	$node->reload;
	$node->poll_query_until('postgres', 'SHOW connmgr.evict_min_idle', $value)
	  or die "connmgr.evict_min_idle did not become $value";
}

# Now: one busy session, plus one that has not been idle long enough (an
# hour here, so that a slow machine cannot make it old enough).
set_min_idle('1h');
my $fresh = open_session($node, 'stu1', app => 'fresh');
$node->connect_fails('dbname=postgres user=stu1',
	'no session idle long enough: the login is refused',
	expected_stderr => qr/DETAIL:  Role "stu1" has 2 connections; the limit for members of "student" is 2\. None of them has been idle for 3600000 ms or more, so none was evicted\./);
ok(backend_alive($node, $fresh->{pid}) && backend_alive($node, $busy->{pid}),
	'both sessions survive the refused login');

# Idle inside a transaction is not idle: never evicted.
set_min_idle('1s');
$fresh->query_safe('BEGIN');
wait_idle($node, $fresh);
is($node->safe_psql('postgres', "SELECT state FROM pg_stat_activity WHERE pid = $fresh->{pid}"),
	'idle in transaction', 'the session is idle in a transaction');
$node->connect_fails('dbname=postgres user=stu1',
	'a session idle in a transaction is not evicted',
	expected_stderr => qr/too many connections for role "stu1"/);
ok(backend_alive($node, $fresh->{pid}), 'the transaction survives');

# Once it is plain idle for long enough, it is the one that goes.
$fresh->query_safe('COMMIT');
wait_idle($node, $fresh);
$node->connect_ok('dbname=postgres user=stu1', 'admitted after evicting the now-idle session');
wait_for_count($node, 'student', 1);
ok(!backend_alive($node, $fresh->{pid}), 'the formerly fresh session was evicted');
ok(backend_alive($node, $busy->{pid}), 'the busy session still runs');

# No eviction for a login that PostgreSQL refuses anyway.
my $stray = open_session($node, 'stu1', app => 'stray2');
wait_idle($node, $stray);
$node->connect_fails('dbname=no_such_db user=stu1',
	'a login to a missing database at the limit is refused',
	expected_stderr => qr/too many connections for role "stu1"/);
ok(backend_alive($node, $stray->{pid}), 'and evicts nobody for it');

# With no time to wait for a victim (connmgr.terminate_timeout = 0), nobody
# is evicted for nothing: the login is refused and the idle session stays.
$node->safe_psql('postgres', 'ALTER SYSTEM SET connmgr.terminate_timeout = 0');
$node->reload;
$node->poll_query_until('postgres', 'SHOW connmgr.terminate_timeout', '0')
  or die 'connmgr.terminate_timeout did not become 0';
$node->connect_fails('dbname=postgres user=stu1',
	'with terminate_timeout 0 the login is refused',
	expected_stderr => qr/too many connections for role "stu1"/);
ok(backend_alive($node, $stray->{pid}), 'and the idle session is not terminated');
$node->safe_psql('postgres', 'ALTER SYSTEM RESET connmgr.terminate_timeout');
$node->reload;

$node->safe_psql('postgres', "SELECT pg_cancel_backend($busy->{pid})");
close_sessions($node, $busy, $stray);

# Two logins at the limit at the same moment, two idle sessions: each
# login evicts one and both are admitted (if both picked the same victim,
# the loser moves on to the next candidate).
my @idle = open_sessions($node, 'stu1', 2);
wait_idle($node, $_) for @idle;
my ($gate, $runs, $err) = gated_logins($node, 'stu1', 2, 7);
my @runs = @$runs;
ok(!backend_alive($node, $idle[0]{pid}) && !backend_alive($node, $idle[1]{pid}),
	'both idle sessions were evicted');
$gate->query_safe('SELECT pg_advisory_unlock(7)');
$gate->quit;
$_->finish for @runs;
is(join(',', map { $_->result(0) } @runs), '0,0', 'both concurrent logins were admitted');
$_->quit for @idle;
$_->quit for ($idle, $fresh);
$node->stop;
done_testing();
