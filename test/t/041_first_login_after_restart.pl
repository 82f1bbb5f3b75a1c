# The first logins after a server start run before any backend has rebuilt
# the relcache init file of the shared catalogs (the startup process
# removes it), so only a few critical indexes may be used while they
# authenticate.  A limited user must still be judged, and let in, when it
# is the first to log in: reading a catalog through another index there
# is a FATAL that no subtransaction can catch, and every further login
# would fail the same way until a superuser happened to connect.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use ConnmgrTest;

my $node = connmgr_node('restart', "autovacuum = off\n");
$node->safe_psql('postgres', q{
	CREATE ROLE student NOLOGIN;
	CREATE ROLE stu LOGIN IN ROLE student;
	CREATE ROLE teacher LOGIN;
	GRANT student TO teacher WITH ADMIN OPTION;
	SELECT connmgr.set_connection_limit('student', per_member => 1);
});

sub first_logins
{
	my ($what) = @_;
	$node->restart;
	ok(!-e $node->data_dir . '/global/pg_internal.init',
		"$what: no login has rebuilt the shared relcache init file yet");
	$node->connect_ok('dbname=postgres user=stu', "$what: the first login is admitted");
	$node->connect_ok('dbname=postgres user=stu', "$what: so is the next one");
}

first_logins('a group policy');

# The limit still holds for the first login after a start.
$node->restart;
my $held = open_session($node, 'stu');
$node->connect_fails('dbname=postgres user=stu', 'the first logins are counted',
	expected_stderr => qr/too many connections for role "stu"/);
close_sessions($held);

$node->safe_psql('postgres', q{
	SELECT connmgr.drop_connection_limit('student');
	SELECT connmgr.set_connection_limit('stu', per_member => 1);
});
first_logins("the user's own policy");

done_testing();
