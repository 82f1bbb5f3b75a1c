# The idle worker on a new cluster.  Until a backend connects to a database,
# there is no shared relation cache file (global/pg_internal.init), and the
# worker, which connects to no database, reads the shared catalogs as
# logins then do, without their indexes.  It neither exits nor is restarted
# meanwhile (no "exited with exit code 1" lines in the log), and that same
# process enforces idle timeouts once logins come.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);
use ConnmgrTest;

my $node = PostgreSQL::Test::Cluster->new('new_cluster');
$node->init;
# DEBUG5 logs every transaction start and commit, the worker's rounds among
# them; %b tells the worker's lines.
$node->append_conf('postgresql.conf', q{
shared_preload_libraries = 'connmgr'
connmgr.idle_check_interval = 100
log_line_prefix = '%m [%p] %b '
log_min_messages = debug5
});
my $relcache_file = $node->data_dir . '/global/pg_internal.init';
ok(!-e $relcache_file, 'a new cluster has no shared relation cache file');
$node->start;

# The log's lines that say the worker exited.
sub exits
{
	my ($text) = @_;
	return join('', $text =~ /^(.*background worker "connmgr idle worker" \(PID \d+\) exited with exit code 1\n)/mg);
}

# Wait, without logging in, until one worker process has committed four
# transactions (one while starting, then one per round), or a worker has
# exited.
my ($worker, $log);
for (my $waited = 0; $waited < 10 * $PostgreSQL::Test::Utils::timeout_default; $waited++)
{
	$log = slurp_file($node->logfile);
	my %rounds;
	$rounds{$1}++
	  while $log =~ /\[(\d+)\] connmgr idle worker DEBUG:  CommitTransaction/g;
	($worker) = grep { $rounds{$_} >= 4 } keys %rounds;
	last if defined $worker || exits($log) ne '';
	usleep(100_000);
}
is(exits($log), '', 'the worker does not exit while there is no shared relation cache file');
ok(defined $worker, 'it checks round after round in one process');
ok(!-e $relcache_file, 'all before any login: there is still no shared relation cache file');

$node->append_conf('postgresql.conf', "log_min_messages = warning\n");
$node->reload;

# Logins come: the same worker enforces an idle timeout.
$node->safe_psql('postgres', q{
	CREATE EXTENSION connmgr;
	CREATE ROLE student NOLOGIN;
	CREATE ROLE stu1 LOGIN IN ROLE student;
	SELECT connmgr.set_connection_limit('student', idle_timeout => '1s');
});
my $idle = open_session($node, 'stu1');
$node->poll_query_until('postgres',
	"SELECT count(*) = 0 FROM pg_stat_activity WHERE pid = $idle->{pid}")
  or die 'the idle connection was not ended';
ok($node->log_contains(
		qr/\[$worker\] connmgr idle worker LOG:  ending connection $idle->{pid} of role "stu1": idle for longer than 1000 ms/),
	'the worker started before the file existed ends the idle connection');
is($node->safe_psql('postgres',
		"SELECT pid FROM pg_stat_activity WHERE backend_type = 'connmgr idle worker'"),
	$worker, 'and is still the same process');
is(exits(slurp_file($node->logfile)), '', 'no worker has exited');

$node->stop;
done_testing();
