# on_limit => 'wait': at the limit a login waits for a slot, first come
# first served, and is admitted as soon as one frees: 60 logins against a
# limit of 10, each holding its connection for 1 s, all get in, in the
# order they arrived, never more than 10 at once.  A waiter whose client
# goes away leaves no trace; a full queue and the wait timeout refuse.
use strict;
use warnings;

use IPC::Run;
use Time::HiRes qw(usleep);
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use ConnmgrTest;

my $node = connmgr_node('wait', "max_connections = 100\nconnmgr.event_log_size = 1000\n");
$node->safe_psql('postgres', q{
	CREATE ROLE waiter LOGIN;
	SELECT connmgr.set_connection_limit('waiter', per_member => 10, on_limit => 'wait',
	                                    wait_timeout => '30s');
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

# 60 logins, arriving 20 ms apart, each holding its connection for 1 s.
my (@runs, @out, @err);
for my $i (0 .. 59)
{
	push @runs, start_login('SELECT pg_sleep(1)', \$out[$i], \$err[$i]);
	usleep(20_000);
}
$_->finish for @runs;
is(join(',', map { $_->result(0) } @runs), join(',', ('0') x 60), 'all 60 logins got in');
is(join('', map { $_ // '' } @err), '', 'none was refused');

# From the event log: admitted (connect) in the order their backends
# started, and never more than 10 connected at once.
$node->poll_query_until('postgres',
	"SELECT count(*) = 60 FROM connmgr.connection_events WHERE username = 'waiter' AND event = 'disconnect'")
  or die 'the logins did not all end';
my $started_order = $node->safe_psql('postgres', q{
	WITH c AS (
	  SELECT pid, event_time, row_number() OVER (ORDER BY event_time) AS admitted
	    FROM connmgr.connection_events WHERE username = 'waiter' AND event = 'connect'),
	d AS (
	  SELECT pid, event_time - duration AS started FROM connmgr.connection_events
	   WHERE username = 'waiter' AND event = 'disconnect'),
	o AS (SELECT admitted, row_number() OVER (ORDER BY d.started) AS arrived
	        FROM c JOIN d USING (pid))
	SELECT count(*) FROM o WHERE admitted > 10 AND abs(admitted - arrived) > 1});
is($started_order, '0', 'the waiting logins were admitted in the order they arrived');
is($node->safe_psql('postgres', q{
	SELECT max(n) FROM (
	  SELECT sum(CASE event WHEN 'connect' THEN 1 ELSE -1 END)
	           OVER (ORDER BY event_time, CASE event WHEN 'disconnect' THEN 0 ELSE 1 END) AS n
	    FROM connmgr.connection_events
	   WHERE username = 'waiter' AND event IN ('connect', 'disconnect')) t}),
	'10', 'never more than 10 connected at once');

# A waiter whose client goes away leaves no trace: with one place in the
# queue, a later login can still take it and gets the freed slot.
$node->safe_psql('postgres', q{
	SELECT connmgr.set_connection_limit('waiter', per_member => 1, on_limit => 'wait',
	                                    wait_timeout => '20s', max_waiting => 1)});
my ($o1, $e1, $o2, $e2, $o3, $e3);
my $holder = start_login('SELECT pg_sleep(3)', \$o1, \$e1);
$node->poll_query_until('postgres',
	"SELECT count(*) = 1 FROM pg_stat_activity WHERE usename = 'waiter' AND state = 'active'")
  or die 'the holder did not log in';
my $vanishing = start_login('SELECT 1', \$o2, \$e2);
usleep(300_000);				# it is waiting for the holder's slot
$vanishing->kill_kill;
usleep(300_000);
my $next = start_login('SELECT 42', \$o3, \$e3);
$next->finish;
$holder->finish;
is($o3, "42\n", 'after a waiter vanished, the next login took the queue place and got in');
is($e3, '', 'without a refusal');

# The queue bound and the wait timeout refuse, each with its DETAIL.
$node->safe_psql('postgres', q{
	SELECT connmgr.set_connection_limit('waiter', per_member => 1, on_limit => 'wait',
	                                    wait_timeout => '1s', max_waiting => 1)});
$holder = start_login('SELECT pg_sleep(4)', \$o1, \$e1);
$node->poll_query_until('postgres',
	"SELECT count(*) = 1 FROM pg_stat_activity WHERE usename = 'waiter' AND state = 'active'")
  or die 'the holder did not log in';
my $queued = start_login('SELECT 1', \$o2, \$e2);
usleep(200_000);
$node->connect_fails('dbname=postgres user=waiter', 'a full queue refuses',
	expected_stderr => qr/FATAL:  too many logins waiting for a connection slot of role "waiter"\nDETAIL:  1 login is already waiting; at most 1 may wait\./);
$queued->finish;
like($e2, qr/FATAL:  too many connections for role "waiter" after waiting \d+ ms\nDETAIL:  Role "waiter" has 1 connection; its limit is 1\./,
	'the wait timeout refuses, saying how long the login waited');
$holder->finish;

$node->stop;
done_testing();
