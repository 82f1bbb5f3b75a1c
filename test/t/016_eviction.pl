# evict_idle evicts only what helps and logs exactly what it does:
# - connections that do not count toward the blocking total (opened before
#   the user was enrolled in the group) are not evicted for nothing;
# - a victim that does not exit (stopped) gets a quarter of
#   connmgr.terminate_timeout, then the next idle connection is evicted too
#   and the login is admitted;
# - a storm of logins at the limit logs one line per victim, each victim
#   once, each naming the login that evicted it.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use ConnmgrTest;

my $node = connmgr_node('eviction',
	"connmgr.evict_min_idle = '1s'\nmax_connections = 40\n");
$node->safe_psql('postgres', q{
	CREATE ROLE cs101 NOLOGIN;
	CREATE ROLE stu1 LOGIN;
	CREATE ROLE stu2 LOGIN IN ROLE cs101;
	CREATE ROLE stu3 LOGIN IN ROLE cs101;
	SELECT connmgr.set_connection_limit('cs101', total => 2, on_limit => 'evict_idle');
	CREATE ROLE lab NOLOGIN;
	CREATE ROLE lab1 LOGIN IN ROLE lab;
	SELECT connmgr.set_connection_limit('lab', per_member => 2, on_limit => 'evict_idle');
	CREATE ROLE crowd NOLOGIN;
	CREATE ROLE crowd1 LOGIN IN ROLE crowd;
	SELECT connmgr.set_connection_limit('crowd', per_member => 10, on_limit => 'evict_idle');
});

# The eviction lines logged since $offset: [victim pid, login pid] each.
sub evictions
{
	my ($offset, $user) = @_;
	my $log = slurp_file($node->logfile, $offset);
	my @ev;
	push @ev, [ $1, $2 ] while $log =~
	  /LOG:  evicting idle connection (\d+) of role "$user" to admit a login of process (\d+)$/mg;
	return @ev;
}

# Item 6: stu1's connections opened before it joined cs101 do not count
# toward cs101's total; ending them would free nothing.
my @early = open_sessions($node, 'stu1', 2);
my $stu2 = open_session($node, 'stu2');
my $stu3 = open_session($node, 'stu3');
wait_for_count($node, 'cs101', 2);
$node->safe_psql('postgres', 'GRANT cs101 TO stu1');
wait_idle($node, $_) for @early;

my $offset = -s $node->logfile;
$node->connect_fails('dbname=postgres user=stu1',
	'enrolled while connected: a login at the total is refused',
	expected_stderr => qr/DETAIL:  Role "cs101" and its members have 2 connections; the limit is 2\. No connection of role "stu1" that counts toward it has been idle for 1000 ms or more, so none was evicted\./);
ok(backend_alive($node, $early[0]{pid}) && backend_alive($node, $early[1]{pid}),
	'neither idle connection outside the total was evicted');
is(scalar(evictions($offset, 'stu1')), 0, 'no eviction was logged');

# Positive control: a stu1 connection opened after the grant counts toward
# cs101 and is evicted for the next stu1 login.
close_sessions($node, @early, $stu2);
wait_for_count($node, 'cs101', 1);
my $counted = open_session($node, 'stu1', app => 'counted');
wait_for_count($node, 'cs101', 2);
wait_idle($node, $counted);
$offset = -s $node->logfile;
$node->connect_ok('dbname=postgres user=stu1',
	'a login at the total evicts the connection that counts toward it');
ok(!backend_alive($node, $counted->{pid}), 'the counted idle connection is gone');
ok(backend_alive($node, $stu3->{pid}), "another member's connection is untouched");
my @ev = evictions($offset, 'stu1');
is_deeply([ map { $_->[0] } @ev ], [ $counted->{pid} ], 'exactly that eviction is logged');
close_sessions($node, $stu3);
$counted->quit;

# Item 7: a victim that cannot exit (stopped) does not take the whole
# terminate_timeout: after a quarter of it the next idle one goes too.
my $stuck = open_session($node, 'lab1', app => 'older');
my $next = open_session($node, 'lab1', app => 'newer');
wait_idle($node, $_) for ($stuck, $next);
$offset = -s $node->logfile;
kill 'STOP', $stuck->{pid} or die "could not stop backend $stuck->{pid}";
$node->connect_ok('dbname=postgres user=lab1',
	'a login whose first victim is stuck is admitted by evicting the next');
kill 'CONT', $stuck->{pid};
ok( $node->poll_query_until('postgres',
		"SELECT count(*) = 0 FROM pg_stat_activity WHERE pid = $stuck->{pid}"),
	'the stuck victim exits once continued');
ok(!backend_alive($node, $next->{pid}), 'the second victim is gone');
@ev = evictions($offset, 'lab1');
is_deeply([ map { $_->[0] } @ev ], [ $stuck->{pid}, $next->{pid} ],
	'both evictions are logged, the longest idle first');
ok(@ev == 2 && $ev[0][1] == $ev[1][1], 'both by the same login');
ok( $node->log_contains(
		qr/evicting idle connection $stuck->{pid} of role "lab1" to admit a login of process \d+\n.*DETAIL:  The connection [0-9a-f]+\.[0-9a-f]+ to database "postgres" from client \(none\) had been idle since \d{4}-\d\d-\d\d [\d:.]+[+-]\d\d(:\d\d)?(\s\S+)?; the login came from client \[local\]\./,
		$offset),
	'the eviction DETAIL says since when and from which client');
$_->quit for ($stuck, $next);

# Item 9: ten logins at the limit at once, ten idle connections: all ten
# go, and the log names each victim exactly once, each time with one of the
# new logins.  (Not necessarily one victim per login: a login whose freed
# slot was taken by a newcomer evicts the next one.)
my @old = open_sessions($node, 'crowd1', 10);
wait_idle($node, $_) for @old;
my %old = map { $_->{pid} => 1 } @old;
$offset = -s $node->logfile;
my ($gate, $runs, $err) = gated_logins($node, 'crowd1', 10, 9);
my @runs = @$runs;
my @err = @$err;
my %new = map { $_ => 1 } split /\n/, $node->safe_psql('postgres',
	"SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND NOT granted");
is( $node->safe_psql('postgres',
		'SELECT count(*) FROM pg_stat_activity WHERE pid IN ('
		  . join(',', keys %old) . ')'),
	'0', 'all ten idle connections were evicted');
@ev = evictions($offset, 'crowd1');
is(scalar(@ev), 10, 'exactly ten eviction lines are logged');
my %victims;
$victims{ $_->[0] }++ for @ev;
is_deeply(\%victims, { map { $_ => 1 } keys %old }, 'each old connection is logged exactly once');
is_deeply([ grep { !$new{ $_->[1] } } @ev ], [],
	'each line names one of the new logins');
$gate->query_safe('SELECT pg_advisory_unlock(9)');
$gate->quit;
$_->finish for @runs;
is(join(',', map { $_->result(0) } @runs), '0,0,0,0,0,0,0,0,0,0',
	'all ten concurrent logins were admitted')
  or diag(join('', map { $_ // '' } @err));
$_->quit for @old;

$node->stop;
done_testing();
