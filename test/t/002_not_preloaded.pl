# Without shared_preload_libraries, CREATE EXTENSION and every function
# refuse to run, with a hint that says what to put in postgresql.conf.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('not_preloaded');
$node->init;
$node->start;

my ($ret, $out, $err) = $node->psql('postgres', 'CREATE EXTENSION connmgr',
	extra_params => [ '-v', 'VERBOSITY=verbose' ]);
isnt($ret, 0, 'CREATE EXTENSION fails when connmgr is not preloaded');
like($err, qr/ERROR:  55000: connmgr must be loaded via shared_preload_libraries/,
	'with a clear error and SQLSTATE 55000');
like($err,
	qr/HINT:  Add connmgr to shared_preload_libraries in postgresql.conf, for example shared_preload_libraries = 'connmgr', and restart the server\./,
	'and a hint that says what to configure');
is($node->safe_psql('postgres',
		"SELECT count(*) FROM pg_namespace WHERE nspname = 'connmgr'"),
	'0', 'nothing is left behind');

# Installed while preloaded, then the setting is lost: every function
# refuses with the same error instead of misbehaving.
$node->append_conf('postgresql.conf', "shared_preload_libraries = 'connmgr'");
$node->restart;
$node->safe_psql('postgres', 'CREATE EXTENSION connmgr');
$node->adjust_conf('postgresql.conf', 'shared_preload_libraries', "''");
$node->restart;

for my $call ("SELECT * FROM connmgr.listUserConnections('postgres')",
	'SELECT connmgr.killConnection(1)',
	"SELECT * FROM connmgr.killUserConnections('postgres')",
	"SELECT connmgr.set_connection_limit('postgres', 1)",
	"SELECT connmgr.drop_connection_limit('postgres')",
	'SELECT * FROM connmgr.connection_limits')
{
	($ret, $out, $err) = $node->psql('postgres', $call,
		extra_params => [ '-v', 'VERBOSITY=verbose' ]);
	like($err, qr/ERROR:  55000: connmgr must be loaded via shared_preload_libraries/,
		"$call fails without preload");
}

$node->stop;
done_testing();
