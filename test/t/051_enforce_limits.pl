# connmgr.enforce_limits(): after a limit is lowered, bring the connections
# over it back under it now: exactly the excess, idle longest first, then
# idle in a transaction, never a running query unless include_active says
# so; a dry run ends nothing; the kill functions' permission rules apply;
# the victims are told which limit they were over; administrators and
# fellows count toward a group's total but are never ended for it, and a
# caller who cannot bring a limit back under it is told so.
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

close_sessions($node, grep { backend_alive($node, $_->{pid}) } (@s1, @s2, $busy[0]));

# Administrators and fellows count toward a group's total, as at login, but
# the group's limits do not apply to them: no run of enforce_limits ends
# them for it, and a caller who cannot bring a limit back under it is told
# how many connections remain over it and why.  Here a CREATEROLE DBA
# enrolled in the class has the two longest idle connections.
$node->safe_psql('postgres', q{
	SELECT connmgr.drop_connection_limit('student');
	CREATE ROLE dba LOGIN CREATEROLE;
	GRANT student TO dba;
	CREATE ROLE watcher LOGIN IN ROLE pg_read_all_stats;
});
my @dba = open_sessions($node, 'dba', 2);
my @stu = (open_sessions($node, 'stu1', 2), open_session($node, 'stu2'));
my $running = open_session($node, 'stu1');
start_busy($node, $running);
$node->safe_psql('postgres', "SELECT connmgr.set_connection_limit('student', total => 4)");
($ret, $out, $err) = sql_as($node, undef, "$rows FROM connmgr.enforce_limits('student')");
is($out, 'stu1|student|Connection found,stu1|student|Connection found',
	"a superuser's run ends two of the class's six connections");
is(alive_of(@dba, @stu, $running), '1,1,0,0,1,1',
	"the students idle longest, not the administrator's connections idle longer");
unlike($err, qr/NOTICE/, 'with the class back at its total, nothing is left to tell');

my $remaining = qr/Role "student" and its members have 3 connections left; the limit is 1\. 2 are connections of administrators or fellows, which count toward the total but to which the limit does not apply\./;
$node->safe_psql('postgres', "SELECT connmgr.set_connection_limit('student', total => 1)");
($ret, $out, $err) = sql_as($node, 'instructor', "$rows FROM connmgr.enforce_limits(dry_run => true)");
is($out, 'stu2|student|Would terminate', "the instructor's dry run names the idle student");
like($err,
	qr/NOTICE:  53300: 2 connections would remain over the connection limit of role "student"\nDETAIL:  $remaining 1 is running a query; include_active => true ends such connections too\./,
	'and says that two connections would remain over the total, and why');
($ret, $out, $err) = sql_as($node, 'instructor', "$rows FROM connmgr.enforce_limits()");
is($out, 'stu2|student|Connection found', 'the instructor ends the student it may end');
is(alive_of(@dba, $stu[2], $running), '1,1,0,1', 'not the administrator, nor the running query');
like($err,
	qr/NOTICE:  53300: 2 connections remain over the connection limit of role "student"\nDETAIL:  $remaining 1 is running a query; include_active => true ends such connections too\./,
	'and is told that two connections remain over the total, and why');

($ret, $out, $err) = sql_as($node, 'watcher', "$rows FROM connmgr.enforce_limits(include_active => true)");
is($out, 'stu1|student|Permission denied', 'a watcher may see the running query but not end it');
like($err,
	qr/NOTICE:  53300: 2 connections remain over the connection limit of role "student"\nDETAIL:  $remaining 1 is a connection you may not end\./,
	'and is told so');

($ret, $out, $err) = sql_as($node, undef,
	"$rows FROM connmgr.enforce_limits('student', include_active => true)");
is($out, 'stu1|student|Connection found', 'with include_active a superuser ends the running query');
is(alive_of(@dba), '1,1', 'but never the administrator, not even to reach the limit');
like($err,
	qr/NOTICE:  53300: 1 connection remains over the connection limit of role "student"\nDETAIL:  Role "student" and its members have 2 connections left; the limit is 1\. 2 are connections of administrators or fellows, which count toward the total but to which the limit does not apply\.\n/,
	'and is told why the class remains over its total');

close_sessions($node, @dba);
$node->stop;
done_testing();
