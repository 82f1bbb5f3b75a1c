# Waiting logins cannot lock the server out (issue N1) and wait only for a
# limit whose release can admit them (N2).
#
# N1: two students at their limit start 60 more logins each, with
# on_limit wait.  Each waiting login holds a backend, so waiting stops
# where the server's free slots are down to PostgreSQL's reserve plus
# connmgr.wait_reserve: the rest are refused with a DETAIL saying why they
# did not wait, and the superuser, the instructor and an unrelated role
# still log in.  The waiting logins are listed in connmgr.connections to
# the instructor (not to the unrelated role) and ended by it.
# connmgr.max_waiting_per_user bounds one role's waiting logins.
#
# N2: per_member 2 and total 4, on_limit wait.  A member at her own limit
# who logs in again waits for her own connections, not at the head of the
# total's queue: when a slot of the total frees, the member behind her who
# can use it gets it.
use strict;
use warnings;

use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use ConnmgrTest;

my $node = connmgr_node('wait_bounds',
	"max_connections = 60\nauthentication_timeout = 600s\n"
	  . "connmgr.max_waiting_per_user = 100\nconnmgr.max_waiting = 200\n");
$node->safe_psql('postgres', q{
	CREATE ROLE student NOLOGIN;
	CREATE ROLE alice LOGIN IN ROLE student;
	CREATE ROLE bob LOGIN IN ROLE student;
	CREATE ROLE instructor LOGIN;
	GRANT student TO instructor WITH ADMIN OPTION;
	CREATE ROLE app LOGIN;
	SELECT connmgr.set_connection_limit('student', per_member => 3, on_limit => 'wait',
	                                    wait_timeout => '590s');
});

sub start_login
{
	my ($user, $out, $err) = @_;
	return IPC::Run::start(
		[ $node->installed_command('psql'), '-XAtq', '-d',
		  $node->connstr('postgres') . " user=$user", '-c', 'SELECT 1' ],
		'<', \undef, '>', $out, '2>', $err);
}

sub waiting_count
{
	my ($users, $as) = @_;
	return $node->safe_psql('postgres', qq{
		SET ROLE $as;
		SELECT count(*) FROM connmgr.connections
		 WHERE username IN ($users) AND state = 'waiting'});
}

my @held = (open_sessions($node, 'alice', 3), open_sessions($node, 'bob', 3));
my (@runs, @out, @err);
for my $i (0 .. 119)
{
	push @runs, start_login($i % 2 ? 'bob' : 'alice', \$out[$i], \$err[$i]);
}
# Settled: every one of the 120 logins waits, or has ended.
$node->poll_query_until('postgres', q{
	SELECT count(*) FILTER (WHERE state = 'waiting')
	     + (SELECT coalesce(sum(rejected), 0) FROM connmgr.role_activity
	         WHERE role_name IN ('alice', 'bob')) = 120
	  FROM connmgr.connections WHERE username IN ('alice', 'bob')})
  or die 'the 120 logins did not settle';
my $waiting = waiting_count("'alice', 'bob'", 'postgres');
cmp_ok($waiting, '>', 0, "some logins wait ($waiting)");
cmp_ok($waiting, '<', 120, 'not all of them');
like(slurp_file($node->logfile),
	qr/FATAL:  too many connections for role "(alice|bob)"\n[^\n]*DETAIL:  The login did not wait for a connection slot of role "\1": the server's free connection slots are down to the 8 that waiting logins leave for others\./,
	'the others are refused with 53300, saying why they did not wait');

is($node->safe_psql('postgres', 'SELECT 1'), '1', 'the superuser still logs in');
is($node->safe_psql('postgres', 'SELECT current_user', extra_params => [ '-U', 'instructor' ]),
	'instructor', 'the instructor still logs in');
is($node->safe_psql('postgres', 'SELECT current_user', extra_params => [ '-U', 'app' ]),
	'app', 'an unrelated role still logs in');

# (A login that takes one of the slots waiting logins leave free makes the
# last waiting login give up, so the number may have shrunk since.)
is($node->safe_psql('postgres', q{
	SET ROLE instructor;
	SELECT count(*) > 0, bool_and(username IN ('alice', 'bob'))
	  FROM connmgr.connections WHERE state = 'waiting'}),
	't|t', "the instructor sees its students' waiting logins");
is(waiting_count("'alice', 'bob'", 'app'), '0', 'an unrelated role sees none of them');

# The instructor ends alice's waiting logins.
my $ended = $node->safe_psql('postgres', q{
	SET ROLE instructor;
	SELECT count(*) FILTER (WHERE k.message = 'Connection found'), count(*)
	  FROM connmgr.kill_connections(ARRAY(
	         SELECT connection_id FROM connmgr.connections
	          WHERE username = 'alice' AND state = 'waiting')) k});
my ($terminated, $asked) = split /\|/, $ended;
cmp_ok($asked, '>', 0, "alice had waiting logins ($asked)");
is($terminated, $asked, 'the instructor ended each of them');
$node->poll_query_until('postgres', q{
	SELECT count(*) = 0 FROM connmgr.connections WHERE username = 'alice' AND state = 'waiting'})
  or die "alice's waiting logins did not go";
pass("alice's waiting logins are gone");

# One role's waiting logins are bounded by connmgr.max_waiting_per_user.
$node->safe_psql('postgres', 'ALTER SYSTEM SET connmgr.max_waiting_per_user = 2');
$node->reload;
$node->poll_query_until('postgres', 'SHOW connmgr.max_waiting_per_user', '2')
  or die 'connmgr.max_waiting_per_user did not change';
$node->connect_fails('dbname=postgres user=bob', 'a role with many waiting logins may not add one',
	expected_stderr => qr/FATAL:  too many logins of role "bob" waiting for a connection slot\nDETAIL:  \d+ logins of role "bob" are already waiting; at most 2 may wait/);

# Clean up: end bob's waiting logins and the held sessions.
$node->safe_psql('postgres', q{
	SELECT count(*) FROM connmgr.kill_connections(ARRAY(
	  SELECT connection_id FROM connmgr.connections WHERE state = 'waiting'))});
close_sessions($node, @held);
$_->finish for @runs;
$node->poll_query_until('postgres',
	"SELECT count(*) = 0 FROM pg_stat_activity WHERE usename IN ('alice', 'bob')")
  or die 'the logins did not end';

# N2.
$node->safe_psql('postgres', q{
	CREATE ROLE team NOLOGIN;
	CREATE ROLE al LOGIN IN ROLE team;
	CREATE ROLE carl LOGIN IN ROLE team;
	CREATE ROLE dee LOGIN IN ROLE team;
	SELECT connmgr.set_connection_limit('team', per_member => 2, total => 4,
	                                    on_limit => 'wait', wait_timeout => '120s');
});
my @al = open_sessions($node, 'al', 2);
my @dee = open_sessions($node, 'dee', 2);
my ($al_out, $al_err, $carl_out, $carl_err) = ('', '', '', '');
my $al_login = start_login('al', \$al_out, \$al_err);
$node->poll_query_until('postgres',
	"SELECT count(*) = 1 FROM connmgr.connections WHERE username = 'al' AND state = 'waiting'")
  or die 'al did not wait';
my $carl_login = start_login('carl', \$carl_out, \$carl_err);
$node->poll_query_until('postgres',
	"SELECT count(*) = 1 FROM connmgr.connections WHERE username = 'carl' AND state = 'waiting'")
  or die 'carl did not wait';

close_sessions($node, $dee[0]);
$carl_login->finish;
is("$carl_out|$carl_err", "1\n|",
	'a freed slot of the total goes to the member who can use it, not to one at her own limit');
is($node->safe_psql('postgres',
	"SELECT count(*) FROM connmgr.connections WHERE username = 'al' AND state = 'waiting'"),
	'1', 'who still waits for her own connections');
close_sessions($node, $al[0]);
$al_login->finish;
is("$al_out|$al_err", "1\n|", 'and gets in when one of them ends');
close_sessions($node, $al[1], $dee[1]);

$node->stop;
done_testing();
