# connmgr.limit_grace: a client that reconnects at exactly its limit (it
# closes a connection and opens the next before the old backend has
# exited) is admitted: a login at the limit waits for a connection of the
# limit that is on its way out, however long that one takes to go.
#
# The old backend is held on its way out deterministically: it created a
# temporary table, whose cleanup at exit waits for a lock another session
# holds on it.  With the grace off, the reconnection is refused; with the
# default grace of 50 ms it waits (seen in connmgr.connections, for far
# longer than 50 ms) until the old backend has gone, then gets in.
# Finally pgbench -C at its limit, as a pool does it, is never refused.
use strict;
use warnings;

use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use ConnmgrTest;

my $node = connmgr_node('grace');
$node->safe_psql('postgres', q{
	CREATE ROLE pool LOGIN;
	SELECT connmgr.set_connection_limit('pool', per_member => 3);
});

sub set_grace
{
	my ($value) = @_;
	$node->safe_psql('postgres', "ALTER SYSTEM SET connmgr.limit_grace = '$value'");
	$node->reload;
	$node->poll_query_until('postgres', 'SHOW connmgr.limit_grace', $value)
	  or die "connmgr.limit_grace did not become $value";
}

# Three connections of pool; one of them closes and is held on its way
# out, still counted.  Returns the session holding it back, and the other two.
sub one_leaving
{
	my @stay = open_sessions($node, 'pool', 2);
	my ($leaving) = open_sessions($node, 'pool', 1);
	$leaving->query_safe('CREATE TEMP TABLE scratch (x int)');
	my $schema = $node->safe_psql('postgres', qq{
		SELECT n.nspname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		 WHERE c.relname = 'scratch' AND n.nspname LIKE 'pg_temp_%'});
	my $blocker = $node->background_psql('postgres');
	$blocker->query_safe("BEGIN; LOCK TABLE $schema.scratch IN ACCESS SHARE MODE");
	$leaving->quit;
	$node->poll_query_until('postgres', qq{
		SELECT wait_event_type = 'Lock' FROM pg_stat_activity WHERE pid = $leaving->{pid}})
	  or die 'the closed connection is not held on its way out';
	wait_for_count($node, 'pool', 3);
	return ($blocker, $leaving, @stay);
}

sub let_go
{
	my ($blocker, $leaving) = @_;
	$blocker->query_safe('COMMIT');
	$blocker->quit;
	$node->poll_query_until('postgres',
		"SELECT count(*) = 0 FROM pg_stat_activity WHERE pid = $leaving->{pid}")
	  or die 'the closed connection did not go';
}

is($node->safe_psql('postgres', 'SHOW connmgr.limit_grace'), '50ms', 'the default grace is 50 ms');

set_grace('0');
my ($blocker, $leaving, @stay) = one_leaving();
$node->connect_fails('dbname=postgres user=pool',
	'with the grace off, a reconnection while the old connection is on its way out is refused',
	expected_stderr => qr/FATAL:  too many connections for role "pool"/);
let_go($blocker, $leaving);
close_sessions($node, @stay);

set_grace('50ms');
($blocker, $leaving, @stay) = one_leaving();
my ($out, $err) = ('', '');
my $login = IPC::Run::start(
	[ $node->installed_command('psql'), '-XAtq', '-d',
	  $node->connstr('postgres') . ' user=pool', '-c', 'SELECT 42' ],
	'<', \undef, '>', \$out, '2>', \$err);
ok($node->poll_query_until('postgres', q{
	SELECT count(*) = 1 FROM connmgr.connections
	 WHERE username = 'pool' AND state = 'waiting' AND now() - state_since > interval '1s'}),
	'with the grace, the reconnection waits for the old connection, far beyond the 50 ms');
let_go($blocker, $leaving);
$login->finish;
is($out, "42\n", 'and gets in once the old connection has gone');
is($err, '', 'without a refusal');
close_sessions($node, @stay);

# A pool at its limit, reconnecting for every transaction: pgbench -C.
# Each transaction creates a temporary table, whose cleanup keeps the old
# backend a little longer, as many applications do.
my $script = $node->basedir . '/temp_table.sql';
append_to_file($script, "CREATE TEMP TABLE scratch (x int);\nINSERT INTO scratch VALUES (1);\n");
my ($bench_out, $bench_err) = ('', '');
my $ok = IPC::Run::run(
	[ $node->installed_command('pgbench'), '-n', '-C', '-c', '3', '-t', '30',
	  '-f', $script, '-h', $node->host, '-p', $node->port, '-U', 'pool', 'postgres' ],
	'<', \undef, '>', \$bench_out, '2>', \$bench_err);
ok($ok, 'pgbench -C -c 3 at a limit of 3 runs all its transactions');
unlike($bench_err, qr/too many connections/, 'without one refusal');
like($bench_out, qr/number of transactions actually processed: 90\/90/, 'every reconnection got in');

$node->stop;
done_testing();
