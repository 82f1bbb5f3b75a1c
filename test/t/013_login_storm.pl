# Exactness under concurrency: 100 simultaneous logins against a group
# whose total limit is 5.  Admitted sessions stay connected (blocked on an
# advisory lock the test holds) until every attempt has finished, so the
# number of live sessions only grows: its peak is checked while sampling
# during the storm and at the end, and exactly 5 must have been admitted.
use strict;
use warnings;

use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use ConnmgrTest;

my $limit = 5;
my $attempts = 100;

my $node = connmgr_node('storm', "max_connections = 150\n");
$node->safe_psql('postgres', q{
	CREATE ROLE class NOLOGIN;
	SELECT format('CREATE ROLE s%s LOGIN IN ROLE class', i) FROM generate_series(1, 10) i
	\gexec
	SELECT connmgr.set_connection_limit('class', total => 5);
});

my $gate = $node->background_psql('postgres');
$gate->query_safe('SELECT pg_advisory_lock(42)');

my $live_sql =
  "SELECT count(*) FROM pg_stat_activity WHERE usename ~ '^s[0-9]+\$'";
my $psql = $node->installed_command('psql');
my (@runs, @out, @err);
for my $i (0 .. $attempts - 1)
{
	my $user = 's' . ($i % 10 + 1);
	push @runs,
	  IPC::Run::start(
		[ $psql, '-XAtq', '-d', $node->connstr('postgres') . " user=$user",
		  '-c', 'SELECT pg_advisory_lock_shared(42)' ],
		'<', \undef, '>', \$out[$i], '2>', \$err[$i]);
}

# Sample the number of live sessions until every attempt has either been
# refused (its psql exited) or been admitted and is waiting at the gate.
my $peak = 0;
my $deadline = time + $PostgreSQL::Test::Utils::timeout_default;
while (1)
{
	$_->pump_nb for grep { $_->pumpable } @runs;
	my $finished = grep { !$_->pumpable } @runs;
	my ($live, $waiting) = split /\|/,
	  $node->safe_psql('postgres',
		"SELECT ($live_sql), (SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted)");
	$peak = $live if $live > $peak;
	last if $finished + $waiting == $attempts;
	die 'the login storm did not settle' if time > $deadline;
}

cmp_ok($peak, '<=', $limit, "live sessions never exceeded the limit (peak $peak)");
is($node->safe_psql('postgres', $live_sql), $limit, 'exactly the limit is connected');

$gate->query_safe('SELECT pg_advisory_unlock(42)');
$gate->quit;
$_->finish for @runs;

my $admitted = grep { $_ == 0 } map { $_->result(0) } @runs;
is($admitted, $limit, "$limit of $attempts concurrent logins were admitted");
my $refused = grep {
	defined && /FATAL:  too many connections for role "s[0-9]+"\nDETAIL:  Role "class" and its members have 5 connections; the limit is 5\./
} @err;
is($refused, $attempts - $limit, 'every other login was refused with the limit message');

$node->poll_query_until('postgres', "SELECT ($live_sql) = 0")
  or die 'admitted sessions did not exit';
is($node->safe_psql('postgres',
		"SELECT total_connections FROM connmgr.connection_limits WHERE role_name = 'class'"),
	'0', 'every slot was given back');

$node->stop;
done_testing();
