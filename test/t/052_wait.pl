# on_limit => 'wait': at the limit a login waits for a slot, first come
# first served, and is admitted as soon as one frees.  50 logins queue
# behind 10 held connections, one after another (each is seen waiting in
# connmgr.connections before the next starts); when the held ones close,
# every waiter gets in, in the order it arrived, and never more than 10
# are connected at once.  A waiter whose client goes away leaves no trace;
# a full queue and the wait timeout refuse.  Nothing here depends on how
# fast the machine is: arrivals are serialized, and the timeouts are far
# away except where the timeout itself is tested.
use strict;
use warnings;

use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use ConnmgrTest;

my $node = connmgr_node('wait',
	"max_connections = 100\nconnmgr.event_log_size = 1000\n"
	  . "authentication_timeout = 600s\nconnmgr.max_waiting_per_user = 60\n");
$node->safe_psql('postgres', q{
	CREATE ROLE waiter LOGIN;
	SELECT connmgr.set_connection_limit('waiter', per_member => 10, on_limit => 'wait',
	                                    wait_timeout => '590s');
	SELECT connmgr.reset_stats();
});

sub start_login
{
	my ($sql, $out, $err) = @_;
	return IPC::Run::start(
		[ $node->installed_command('psql'), '-XAtq', '-d',
		  $node->connstr('postgres') . ' user=waiter', '-c', $sql ],
		'<', \undef, '>', $out, '2>', $err);
}

# The pids of waiter's logins waiting for a slot, oldest first.
sub waiting_pids
{
	return split /\n/, $node->safe_psql('postgres', q{
		SELECT pid FROM connmgr.connections
		 WHERE username = 'waiter' AND state = 'waiting' ORDER BY state_since});
}

# Start a login and wait until it is seen waiting; returns (run, pid).
sub queue_login
{
	my ($sql, $out, $err) = @_;
	my %before = map { $_ => 1 } waiting_pids();
	my $run = start_login($sql, $out, $err);
	my $n = keys(%before) + 1;
	$node->poll_query_until('postgres', qq{
		SELECT count(*) = $n FROM connmgr.connections
		 WHERE username = 'waiter' AND state = 'waiting'})
	  or die 'the login did not start waiting';
	my ($pid) = grep { !$before{$_} } waiting_pids();
	return ($run, $pid);
}

my @held = open_sessions($node, 'waiter', 10);
my (@runs, @pids, @out, @err);
for my $i (0 .. 49)
{
	my ($run, $pid) = queue_login('SELECT 1', \$out[$i], \$err[$i]);
	push @runs, $run;
	push @pids, $pid;
}
is(scalar(waiting_pids()), 50, '50 logins wait behind the 10 held connections');
is($node->safe_psql('postgres', q{
	SELECT count(*) FROM connmgr.connections c JOIN pg_roles r ON r.rolname = c.username
	 WHERE c.username = 'waiter' AND c.state = 'waiting'
	   AND c.database = 'postgres' AND c.connect_time <= c.state_since}),
	'50', 'each waiting login is listed with its user, database and since when it waits');

close_sessions($node, @held);
$_->finish for @runs;
is(join(',', map { $_->result(0) } @runs), join(',', ('0') x 50), 'all 50 waiting logins got in');
is(join('', map { $_ // '' } @err), '', 'none was refused');

$node->poll_query_until('postgres',
	"SELECT count(*) = 60 FROM connmgr.connection_events WHERE username = 'waiter' AND event = 'disconnect'")
  or die 'the logins did not all end';
my @admitted = split /\n/, $node->safe_psql('postgres', q{
	SELECT pid FROM connmgr.connection_events
	 WHERE username = 'waiter' AND event = 'connect' ORDER BY event_time OFFSET 10});
is(join(',', @admitted), join(',', @pids), 'the waiting logins were admitted in the order they arrived');
cmp_ok($node->safe_psql('postgres', q{
	SELECT max(n) FROM (
	  SELECT sum(CASE event WHEN 'connect' THEN 1 ELSE -1 END)
	           OVER (ORDER BY event_time, CASE event WHEN 'disconnect' THEN 0 ELSE 1 END) AS n
	    FROM connmgr.connection_events
	   WHERE username = 'waiter' AND event IN ('connect', 'disconnect')) t}),
	'<=', 10, 'never more than 10 connected at once');

# A waiter whose client goes away leaves no trace: with one place in the
# queue, a later login can still take it and gets the freed slot.
$node->safe_psql('postgres', q{
	SELECT connmgr.set_connection_limit('waiter', per_member => 1, on_limit => 'wait',
	                                    wait_timeout => '590s', max_waiting => 1)});
my ($holder) = open_sessions($node, 'waiter', 1);
my ($o2, $e2, $o3, $e3);
my ($vanishing) = queue_login('SELECT 1', \$o2, \$e2);
$vanishing->kill_kill;
$node->poll_query_until('postgres',
	"SELECT count(*) = 0 FROM connmgr.connections WHERE username = 'waiter' AND state = 'waiting'")
  or die 'the vanished waiter is still listed';
my ($next) = queue_login('SELECT 42', \$o3, \$e3);
close_sessions($node, $holder);
$next->finish;
is($o3, "42\n", 'after a waiter vanished, the next login took the queue place and got in');
is($e3, '', 'without a refusal');

# The queue bound and the wait timeout refuse, each with its DETAIL.  The
# timeout is the feature here: the refusal comes no sooner than it.
($holder) = open_sessions($node, 'waiter', 1);
my ($queued) = queue_login('SELECT 1', \$o2, \$e2);
$node->connect_fails('dbname=postgres user=waiter', 'a full queue refuses',
	expected_stderr => qr/FATAL:  too many logins waiting for a connection slot of role "waiter"\nDETAIL:  1 login is already waiting; at most 1 may wait\./);
$queued->kill_kill;
$node->poll_query_until('postgres',
	"SELECT count(*) = 0 FROM connmgr.connections WHERE username = 'waiter' AND state = 'waiting'")
  or die 'the waiter did not go';
$node->safe_psql('postgres', q{
	SELECT connmgr.set_connection_limit('waiter', per_member => 1, on_limit => 'wait',
	                                    wait_timeout => '1s', max_waiting => 1)});
$node->connect_fails('dbname=postgres user=waiter', 'the wait timeout refuses',
	expected_stderr => qr/FATAL:  too many connections for role "waiter" after waiting (\d+) ms\nDETAIL:  Role "waiter" has 1 connection; its limit is 1\./);
my ($waited) = slurp_file($node->logfile) =~ /too many connections for role "waiter" after waiting (\d+) ms/;
cmp_ok($waited, '>=', 1000, "saying how long the login waited ($waited ms), no less than the timeout");
close_sessions($node, $holder);

$node->stop;
done_testing();
