# The README's examples run as written: every ```sql block of README.md,
# in order, in one psql session per block on a fresh cluster with connmgr,
# stopping at the first error.  Blocks build on the ones before them (the
# roles are created where the README sets up a class).
use strict;
use warnings;

use FindBin;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use ConnmgrTest;

# The tree root from this file, wherever prove runs (PostgreSQL 17 and later
# no longer set TESTDIR for installcheck).
my $readme = slurp_file("$FindBin::RealBin/../../README.md");
my @blocks = $readme =~ /^```sql\n(.*?)^```$/msg;
cmp_ok(scalar(@blocks), '>=', 5, 'the README has SQL examples');

# connmgr_node creates the extension; the README's first block does that.
my $node = PostgreSQL::Test::Cluster->new('readme');
$node->init;
$node->append_conf('postgresql.conf', "shared_preload_libraries = 'connmgr'\n");
$node->start;

my $n = 0;
for my $sql (@blocks)
{
	$n++;
	my ($first) = $sql =~ /^(?:--[^\n]*\n)*([^\n]*)/;
	my ($ret, $out, $err) = sql_as($node, undef, "\\set ON_ERROR_STOP 1\n$sql");
	is($ret, 0, "README SQL block $n runs ($first)") or diag($err);
	unlike($err // '', qr/ERROR:/, "README SQL block $n raises no error");
}

is($node->safe_psql('postgres',
		"SELECT count(*) FROM pg_seclabels WHERE provider = 'connmgr'"),
	'0', 'the README\'s last example removed every policy');

$node->stop;
done_testing();
