# connmgr.enforce_limits(): after a limit is lowered, bring the connections
# over it back under it now: exactly the excess, idle longest first, then
# idle in a transaction, never a running query unless include_active says
# so; a dry run ends nothing; the kill functions' permission rules apply;
# the victims are told which limit they were over.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use ConnmgrTest;

my $node = connmgr_node('enforce');
$node->safe_psql('postgres', q{
	CREATE ROLE student NOLOGIN;
	CREATE ROLE stu1 LOGIN IN ROLE student;
	CREATE ROLE stu2 LOGIN IN ROLE student;
	CREATE ROLE instructor LOGIN;
	GRANT student TO instructor WITH ADMIN OPTION;
	SELECT connmgr.set_connection_limit('stu1', per_member => 5);
});

sub alive_of
{
	my (@sessions) = @_;
	return join(',', map { backend_alive($node, $_->{pid}) ? 1 : 0 } @sessions);
}

# Five sessions: two idle (the older first), one idle in a transaction,
# two running a query.
my @idle = open_sessions($node, 'stu1', 2);
my $in_xact = open_session($node, 'stu1');
$in_xact->query_safe('BEGIN');
my @busy = open_sessions($node, 'stu1', 2);
start_busy($node, $_) for @busy;
my @all = (@idle, $in_xact, @busy);

$node->safe_psql('postgres', "SELECT connmgr.set_connection_limit('stu1', per_member => 2)");
my $rows = "SELECT string_agg(username || '|' || limit_role || '|' || message, ',' ORDER BY connection_id)";
my ($ret, $out, $err) = sql_as($node, 'instructor',
	"$rows FROM connmgr.enforce_limits('stu1', dry_run => true)");
is($out, join(',', ('stu1|stu1|Would terminate') x 3), 'a dry run names the three over the limit');
is(alive_of(@all), '1,1,1,1,1', 'and ends nothing');

($ret, $out, $err) = sql_as($node, 'instructor', "$rows FROM connmgr.enforce_limits('stu1')");
is($out, join(',', ('stu1|stu1|Connection found') x 3), 'enforce_limits ends exactly the excess');
is(alive_of(@all), '0,0,0,1,1', 'the idle ones first, then the one idle in a transaction; not the running ones');

# Told why.
like(last_words($idle[0]),
	qr/DETAIL:  Your connection was ended by role "instructor": over the connection limit of role "stu1"\./,
	'the victim is told which limit it was over');

# Running queries only with include_active.
$node->safe_psql('postgres', "SELECT connmgr.set_connection_limit('stu1', per_member => 1)");
($ret, $out) = sql_as($node, 'instructor', "SELECT count(*) FROM connmgr.enforce_limits('stu1')");
is($out, '0', 'only running connections are over the limit: none is ended');
($ret, $out) = sql_as($node, 'instructor',
	"SELECT count(*) FROM connmgr.enforce_limits('stu1', include_active => true)");
is($out, '1', 'with include_active one of them is');
is(alive_of(@busy), '0,1', 'the one running longest');
$node->safe_psql('postgres', "SELECT pg_cancel_backend($busy[1]{pid})");
$_->quit for ($busy[1]);
$node->safe_psql('postgres', "SELECT connmgr.drop_connection_limit('stu1')");

# A group total, all policies at once, and the permission rules: the
# excess is the class's longest idle connections, stu1's; stu2 may not see
# them, so its call ends nothing and shows nothing; the instructor's ends
# them.
my @s1 = open_sessions($node, 'stu1', 2);
my @s2 = open_sessions($node, 'stu2', 2);
$node->safe_psql('postgres', "SELECT connmgr.set_connection_limit('student', total => 2)");
($ret, $out) = sql_as($node, 'stu2', "$rows FROM connmgr.enforce_limits()");
is($out, '', 'a student sees no row for connections it may not see');
is(alive_of(@s1, @s2), '1,1,1,1', 'and ends none of them');
($ret, $out) = sql_as($node, 'instructor', "$rows FROM connmgr.enforce_limits()");
is($out, 'stu1|student|Connection found,stu1|student|Connection found',
	'the instructor ends the excess over the total');
is(alive_of(@s1, @s2), '0,0,1,1', 'the longest idle, leaving the class at its total of 2');
($ret, $out) = sql_as($node, 'instructor', "SELECT count(*) FROM connmgr.enforce_limits()");
is($out, '0', 'at the limit, nothing more is ended');

$_->quit for grep { backend_alive($node, $_->{pid}) } (@s1, @s2, $busy[0]);
$node->stop;
done_testing();
