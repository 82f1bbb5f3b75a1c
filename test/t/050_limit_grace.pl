# connmgr.limit_grace: a client that reconnects at exactly its limit (it
# closes a connection and opens the next before the old backend has
# exited) is admitted, because a login at the limit waits a moment for a
# slot that is being released; with the grace turned off it is refused.
# pgbench -C opens a new connection for every transaction; each creates a
# temporary table, as many applications do, whose cleanup at disconnect
# keeps the old backend (and its slot) a few milliseconds longer.
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
my $script = $node->basedir . '/select1.sql';
PostgreSQL::Test::Utils::append_to_file($script,
	"CREATE TEMP TABLE scratch (x int);\nINSERT INTO scratch VALUES (1);\n");

# pgbench with 3 clients, each reconnecting per transaction, for $seconds.
sub pgbench_at_limit
{
	my ($seconds) = @_;
	my ($out, $err) = ('', '');
	my $ok = IPC::Run::run(
		[ $node->installed_command('pgbench'), '-n', '-C', '-c', '3', '-T', $seconds,
		  '-f', $script, '-h', $node->host, '-p', $node->port, '-U', 'pool', 'postgres' ],
		'<', \undef, '>', \$out, '2>', \$err);
	my ($processed) = $out =~ /number of transactions actually processed: (\d+)/;
	return ($ok, $processed // 0, $err);
}

sub set_grace
{
	my ($value) = @_;
	$node->safe_psql('postgres', "ALTER SYSTEM SET connmgr.limit_grace = '$value'");
	$node->reload;
	$node->poll_query_until('postgres', 'SHOW connmgr.limit_grace', $value)
	  or die "connmgr.limit_grace did not become $value";
}

is($node->safe_psql('postgres', 'SHOW connmgr.limit_grace'), '50ms', 'the default grace is 50 ms');
my ($ok, $processed, $err) = pgbench_at_limit(10);
ok($ok, 'pgbench -C -c 3 at a limit of 3 runs 10 s with the default grace');
unlike($err, qr/too many connections/, 'without one refusal');
cmp_ok($processed, '>', 100, "and gets work done ($processed logins)");

set_grace('0');
($ok, $processed, $err) = pgbench_at_limit(10);
ok(!$ok, 'with the grace turned off, pgbench fails');
like($err, qr/FATAL:  too many connections for role "pool"/,
	'because its reconnections are refused');

$node->stop;
done_testing();
