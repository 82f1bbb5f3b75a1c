# idle_timeout and idle_in_transaction_timeout in a policy: the idle
# worker ends a member's connection idle longer than the timeout, never
# before it, not one running a query, nor one of a role without the policy;
# the victim gets PostgreSQL's own SQLSTATE and message for an idle timeout
# and is told why, and the ending is logged, and counted as closed but not
# as terminated (nobody killed it).  Users cannot SET it away.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use ConnmgrTest;

my $node = connmgr_node('idle', "connmgr.idle_check_interval = 200\nlog_error_verbosity = verbose\n");
$node->safe_psql('postgres', q{
	CREATE ROLE student NOLOGIN;
	CREATE ROLE stu1 LOGIN IN ROLE student;
	CREATE ROLE other LOGIN;
});
ok($node->poll_query_until('postgres',
		"SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'connmgr idle worker'"),
	'the idle worker runs');

# Since when the session has been in its current state, as the worker sees it.
sub state_since
{
	my ($session) = @_;
	return $node->safe_psql('postgres',
		"SELECT state_change FROM pg_stat_activity WHERE pid = $session->{pid}");
}

# Wait until the session is gone; then, was it ended at least $interval
# after $since?  (The event is logged as its backend exits.)
sub ended_after
{
	my ($session, $since, $interval) = @_;
	$node->poll_query_until('postgres',
		"SELECT count(*) = 0 FROM pg_stat_activity WHERE pid = $session->{pid}")
	  or die "session $session->{pid} was not ended";
	return $node->safe_psql('postgres', qq{
		SELECT event_time - '$since'::timestamptz >= interval '$interval'
		  FROM connmgr.connection_events
		 WHERE pid = $session->{pid} AND event = 'terminate'}) eq 't';
}

my $idle = open_session($node, 'stu1');
$idle->query_safe('SET idle_session_timeout = 0');	# a user's SET changes nothing
my $idle_since = state_since($idle);
# A query that runs until the lock is released.
my $lock = $node->background_psql('postgres');
$lock->query_safe('SELECT pg_advisory_lock(53)');
my $busy = open_session($node, 'stu1');
$busy->{stdin} .= "SELECT pg_advisory_lock(53);\n";
$busy->{run}->pump_nb;
$node->poll_query_until('postgres',
	"SELECT wait_event_type = 'Lock' FROM pg_stat_activity WHERE pid = $busy->{pid}")
  or die 'the busy session did not start its query';
my $outsider = open_session($node, 'other');
my $in_xact = open_session($node, 'stu1');
$in_xact->query_safe('BEGIN');
my $in_xact_since = state_since($in_xact);
$node->safe_psql('postgres', q{
	SELECT connmgr.set_connection_limit('student', idle_timeout => '2s',
	                                    idle_in_transaction_timeout => '6s')});

ok(ended_after($idle, $idle_since, '2s'),
	"the member's idle connection is ended, not before its idle_timeout");
ok(ended_after($in_xact, $in_xact_since, '6s'),
	'the one idle in a transaction is ended, not before its longer idle_in_transaction_timeout');
ok(backend_alive($node, $busy->{pid}), 'the one running a query is not, even past both timeouts');
ok(backend_alive($node, $outsider->{pid}), 'a role without the policy keeps its idle connection');

# What the clients hear: PostgreSQL's own FATAL for its idle timeouts
# (SQLSTATE and message, as drivers and poolers know them), with connmgr's
# DETAIL saying which policy.
$_->{stdin} .= "\\set VERBOSITY verbose\n" for ($idle, $in_xact);
like(last_words($idle),
	qr/FATAL:  57P05: terminating connection due to idle-session timeout\nDETAIL:  Your connection was ended because it was idle for longer than 2000 ms, the idle_timeout of role "student"\./,
	'the idle victim gets 57P05 and is told why');
like(last_words($in_xact),
	qr/FATAL:  25P03: terminating connection due to idle-in-transaction timeout\nDETAIL:  Your connection was ended because it was idle in a transaction for longer than 6000 ms, the idle_in_transaction_timeout of role "student"\./,
	'the one idle in a transaction gets 25P03 and is told why');
ok($node->log_contains(qr/ending connection $idle->{pid} of role "stu1": idle for longer than 2000 ms/),
	'the ending is logged');
# Expirations are not kills: counted as closed, never as terminated.
sub stu1_count
{
	my ($column) = @_;
	return $node->safe_psql('postgres',
		"SELECT $column FROM connmgr.role_activity WHERE role_name = 'stu1'");
}
$node->poll_query_until('postgres',
	"SELECT closed FROM connmgr.role_activity WHERE role_name = 'stu1'", '2')
  or die 'the endings were not counted as closed';
is(stu1_count('terminated'), '0', 'the endings are counted as closed, not as terminated');

# The busy connection, once its query is over and it sits idle, is ended
# too, not before its idle_timeout.
my $released = $lock->query_safe('SELECT clock_timestamp() FROM pg_advisory_unlock(53)');
ok(ended_after($busy, $released, '2s'),
	'the busy connection is ended once it has been idle for its idle_timeout');
ok(backend_alive($node, $outsider->{pid}), 'the outsider still keeps its connection');
$node->poll_query_until('postgres',
	"SELECT closed FROM connmgr.role_activity WHERE role_name = 'stu1'", '3')
  or die 'the third ending was not counted as closed';
is(stu1_count('terminated'), '0', 'nor is it counted as terminated');

$lock->quit;
$outsider->quit;
$node->stop;
done_testing();
