# idle_timeout and idle_in_transaction_timeout in a policy: the idle
# worker ends a member's connection idle longer than the timeout, not one
# running a query, nor one of a role without the policy; the victim is
# told why, and the ending is logged and counted.  Users cannot SET it away.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use ConnmgrTest;

my $node = connmgr_node('idle', "connmgr.idle_check_interval = 200\nlog_error_verbosity = verbose\n");
$node->safe_psql('postgres', q{
	CREATE ROLE student NOLOGIN;
	CREATE ROLE stu1 LOGIN IN ROLE student;
	CREATE ROLE other LOGIN;
});
ok($node->poll_query_until('postgres',
		"SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'connmgr idle worker'"),
	'the idle worker runs');

my $idle = open_session($node, 'stu1');
$idle->query_safe('SET idle_session_timeout = 0');	# a user's SET changes nothing
my $busy = open_session($node, 'stu1');
start_busy($node, $busy, 8);
my $outsider = open_session($node, 'other');
my $in_xact = open_session($node, 'stu1');
$in_xact->query_safe('BEGIN');
$node->safe_psql('postgres', q{
	SELECT connmgr.set_connection_limit('student', idle_timeout => '2s',
	                                    idle_in_transaction_timeout => '6s')});

$node->poll_query_until('postgres',
	"SELECT count(*) = 0 FROM pg_stat_activity WHERE pid = $idle->{pid}")
  or die 'the idle connection was not ended';
pass("the member's idle connection is ended after its idle_timeout");
ok(backend_alive($node, $busy->{pid}), 'the one running a query is not');
ok(backend_alive($node, $in_xact->{pid}), 'nor, before its own longer timeout, the one idle in a transaction');
$node->poll_query_until('postgres',
	"SELECT count(*) = 0 FROM pg_stat_activity WHERE pid = $in_xact->{pid}")
  or die 'the connection idle in a transaction was not ended';
pass('which is ended after its idle_in_transaction_timeout');
ok(backend_alive($node, $outsider->{pid}), 'a role without the policy keeps its idle connection');

like(last_words($idle),
	qr/DETAIL:  Your connection was ended because it was idle for longer than 2000 ms, the idle_timeout of role "student"\./,
	'the victim is told why');
ok($node->log_contains(qr/ending connection $idle->{pid} of role "stu1": idle for longer than 2000 ms/),
	'the ending is logged');
$node->poll_query_until('postgres',
	"SELECT terminated FROM connmgr.role_activity WHERE role_name = 'stu1'", '2')
  or die 'the endings were not counted';
pass('and counted');

# A busy connection that then sits idle is ended too.
$node->poll_query_until('postgres',
	"SELECT count(*) = 0 FROM pg_stat_activity WHERE pid = $busy->{pid}")
  or die 'the formerly busy connection was not ended once idle';
pass('the busy connection is ended once it has been idle long enough');
ok(backend_alive($node, $outsider->{pid}), 'the outsider still keeps its connection');

$outsider->quit;
$node->stop;
done_testing();
