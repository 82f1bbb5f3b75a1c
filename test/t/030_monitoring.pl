# The monitoring views with real sessions: connmgr.role_activity,
# connmgr.server_activity and connmgr.connection_events count logins that
# open, sit idle, run, close, are refused (by connmgr's per_member and by
# PostgreSQL's own CONNECTION LIMIT), are evicted, terminated, fail
# authentication or die by FATAL during startup; the usage status
# thresholds and their reload; a group row for a total; who sees which rows
# and events; reset_stats(); and a crash restart that starts from empty
# counters.  All checks run in one superuser session, so that looking adds
# no logins to what is counted.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use ConnmgrTest;

my $node = connmgr_node('monitoring',
	"max_connections = 30\nconnmgr.evict_min_idle = 0\nrestart_after_crash = on\n");
$node->safe_psql('postgres', q{
	CREATE ROLE student NOLOGIN;
	CREATE ROLE stu1 LOGIN IN ROLE student;
	CREATE ROLE stu2 LOGIN IN ROLE student;
	CREATE ROLE instructor LOGIN;
	GRANT student TO instructor WITH ADMIN OPTION;
	CREATE ROLE watcher LOGIN IN ROLE pg_read_all_stats;
	CREATE ROLE evgroup NOLOGIN;
	CREATE ROLE evu LOGIN IN ROLE evgroup;
	CREATE ROLE capped LOGIN CONNECTION LIMIT 1;
	CREATE ROLE pwuser LOGIN PASSWORD 'secret';
	SELECT connmgr.set_connection_limit('student', per_member => 5, total => 8);
	SELECT connmgr.set_connection_limit('evgroup', per_member => 1, on_limit => 'evict_idle');
});
my $hba = $node->data_dir . '/pg_hba.conf';
my $hba_lines = slurp_file($hba);
open my $fh, '>', $hba or die "could not write $hba: $!";
print $fh "local all pwuser scram-sha-256\n$hba_lines";
close $fh;
$node->reload;

my $mon = $node->background_psql('postgres');
$mon->set_query_timer_restart;	# each poll may take up to the timeout
my $su = $mon->query_safe('SELECT current_user');
my $mon_pid = $mon->query_safe('SELECT pg_backend_pid()');

# Poll in the monitoring session (a backend updates the counters and
# events as it exits, a moment after its client has seen the end).
sub wait_until
{
	my ($sql, $expected) = @_;
	return poll_session($mon, $sql, $expected);
}

sub poll_is
{
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	my ($sql, $expected, $name) = @_;
	is(wait_until($sql, $expected), $expected, $name);
}

my $counters = "concat_ws('/', opened, closed, rejected, evicted, terminated, auth_failed)";

# role_activity of $role as "opened/closed/rejected/evicted/terminated/
# auth_failed running|idle|idle_in_transaction|current|effective_limit|
# limit_source|usage_pct|status" (NULL columns left out).
sub role_is
{
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	my ($role, $expected, $name) = @_;
	poll_is("SELECT $counters || ' ' || concat_ws('|', running, idle, idle_in_transaction, current, effective_limit, limit_source, usage_pct, status) FROM connmgr.role_activity WHERE role_name = '$role'",
		$expected, "$name ($role)");
}

sub server_is
{
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	my ($expected, $name) = @_;
	poll_is("SELECT $counters FROM connmgr.server_activity", $expected, "$name: server totals");
}

# The events after the first $seen (filtered by $where), oldest first, as
# event|username|actor|reason|has a duration.
my $seen = 0;
sub events_sql
{
	my ($where) = @_;
	return "SELECT string_agg(concat_ws('|', event, username, actor, reason, duration IS NOT NULL), ',' ORDER BY n) FROM (SELECT *, row_number() OVER () AS n FROM connmgr.connection_events) e WHERE n > $seen AND "
	  . ($where // 'true');
}

sub events_are
{
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	my ($expected, $name) = @_;
	poll_is(events_sql(), join(',', @$expected), "$name: events");
	$seen += @$expected;
}

# A session of $user whose queries each get the full timeout, so that a
# failed poll elsewhere reports its mismatch instead of timing it out.
sub session
{
	my $s = open_session($node, @_);
	$s->set_query_timer_restart;
	return $s;
}

sub quit_wait
{
	my ($s) = @_;
	$s->quit;
	wait_until("SELECT count(*) FROM pg_stat_activity WHERE pid = $s->{pid}", '0') eq '0'
	  or die "session $s->{pid} did not exit";
}

sub set_pct
{
	my ($name, $value) = @_;
	$mon->query_safe("ALTER SYSTEM SET connmgr.$name = $value");
	$node->reload;
	wait_until("SHOW connmgr.$name", $value) eq $value
	  or die "connmgr.$name did not become $value";
}

# Start from zero, once the backend that created the roles has exited.
wait_until("SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'", '1') eq '1'
  or die 'the setup session did not exit';
$mon->query_safe('SELECT connmgr.reset_stats()');
server_is('0/0/0/0/0/0', 'after reset_stats');
events_are([], 'after reset_stats');
poll_is("SELECT string_agg(role_name, ',' ORDER BY role_name) FROM connmgr.role_activity",
	"$su,student", 'rows: the connected superuser and the group with a total');
role_is($su, '0/0/0/0/0/0 1|0|0|1|30|max_connections|3.3|ok', 'a superuser has a row too, against all of max_connections');
role_is('student', '0/0/0/0/0/0 0|0|0|0|8|total|0|ok', 'the group row');

# Open, idle, idle in a transaction, run; 3 of per_member 5 is 60 %: ok.
my ($txn, $busy, $idle) = map { session('stu1') } 1 .. 3;
$txn->query_safe('BEGIN');
$busy->{stdin} .= "SELECT pg_sleep(300);\n";
$busy->{run}->pump_nb;
role_is('stu1', '3/0/0/0/0/0 1|1|1|3|5|per_member|60|ok', 'three sessions by state, 60 %');
server_is('3/0/0/0/0/0', 'three logins');
events_are([ ('connect|stu1|f') x 3 ], 'three logins');
is($mon->query_safe("SELECT connection_id FROM connmgr.connection_events WHERE pid = $idle->{pid}"),
	$mon->query_safe("SELECT connection_id FROM connmgr.connections WHERE pid = $idle->{pid}"),
	'the connect event carries the connection id of connmgr.connections');

# 4 is 80 %: warning; 5 is 100 %: critical; a sixth is refused by connmgr.
my $fourth = session('stu1');
role_is('stu1', '4/0/0/0/0/0 1|2|1|4|5|per_member|80|warning', 'four sessions, 80 %');
my $fifth = session('stu1');
role_is('stu1', '5/0/0/0/0/0 1|3|1|5|5|per_member|100|critical', 'five sessions, 100 %');
role_is('student', '0/0/0/0/0/0 1|3|1|5|8|total|62.5|ok', "the group row counts its members' sessions");
$node->connect_fails('dbname=postgres user=stu1', 'a sixth login of stu1 is refused by connmgr',
	expected_stderr => qr/too many connections for role "stu1"/);
role_is('stu1', '5/0/1/0/0/0 1|3|1|5|5|per_member|100|critical', "connmgr's refusal is rejected, not opened");
is($mon->query_safe("SELECT last_connect IS NOT NULL AND last_reject IS NOT NULL FROM connmgr.role_activity WHERE role_name = 'stu1'"),
	't', 'last_connect and last_reject are set');
quit_wait($fourth);
quit_wait($fifth);
role_is('stu1', '5/2/1/0/0/0 1|1|1|3|5|per_member|60|ok', 'two sessions closed');
server_is('5/2/1/0/0/0', 'after the refusal and two closes');
events_are([ ('connect|stu1|f') x 2, 'reject|stu1|f', ('disconnect|stu1|t') x 2 ],
	'connects, a reject, disconnects with a duration');

# The thresholds are reloadable.
set_pct('warning_pct', 50);
role_is('stu1', '5/2/1/0/0/0 1|1|1|3|5|per_member|60|warning', 'warning_pct 50: 60 % is a warning');
set_pct('critical_pct', 60);
role_is('stu1', '5/2/1/0/0/0 1|1|1|3|5|per_member|60|critical', 'critical_pct 60: 60 % is critical');
set_pct('warning_pct', 80);
set_pct('critical_pct', 95);
$mon->query_safe("SELECT pg_cancel_backend($busy->{pid})");
role_is('stu1', '5/2/1/0/0/0 0|2|1|3|5|per_member|60|ok', 'defaults again; the cancelled session is idle');

# Terminated by an instructor with a reason.
my $inst = session('instructor');
my $s2 = session('stu2');
role_is('student', '0/0/0/0/0/0 0|3|1|4|8|total|50|ok', 'the group row counts stu2 as well');
is($inst->query_safe("SELECT message FROM connmgr.kill_connection('$s2->{pid}', 'exam over')"),
	'Connection found', 'the instructor terminates the stu2 session');
role_is('stu2', '1/1/0/0/1/0 0|0|0|0|5|per_member|0|ok', 'a terminated session is closed and terminated');
server_is('7/3/1/0/1/0', 'after the termination');
events_are(
	[ 'connect|instructor|f', 'connect|stu2|f', 'terminate|stu2|instructor|exam over|f', 'disconnect|stu2|t' ],
	'the termination names its actor and reason');
$s2->quit;

# Evicted by a login at the limit (evict_idle).
my $victim = session('evu');
$node->connect_ok('dbname=postgres user=evu', 'a login of evu at its limit evicts the idle session');
role_is('evu', '2/2/0/1/0/0 0|0|0|0|1|per_member|0|ok', 'the victim is closed and evicted');
server_is('9/5/1/1/1/0', 'after the eviction');
poll_is(events_sql("pid = $victim->{pid}"), 'connect|evu|f,evict|evu|evu|f,disconnect|evu|t',
	"the victim's events: connect, evict by evu, disconnect");
poll_is(events_sql("pid <> $victim->{pid}"), 'connect|evu|f,disconnect|evu|t',
	"the evicting login's events");
$seen += 5;
$victim->quit;

# PostgreSQL's own CONNECTION LIMIT refuses a login connmgr has admitted.
my $capped = session('capped');
$node->connect_fails('dbname=postgres user=capped', "rolconnlimit refuses a second login of capped",
	expected_stderr => qr/too many connections for role "capped"/);
role_is('capped', '2/1/1/0/0/0 0|1|0|1|1|rolconnlimit|100|critical',
	'admitted by connmgr, refused by PostgreSQL: opened, closed and rejected');
server_is('11/6/2/1/1/0', "after PostgreSQL's refusal");
events_are([ 'connect|capped|f', 'connect|capped|f', 'reject|capped|f', 'disconnect|capped|t' ],
	"PostgreSQL's refusal");

# A FATAL during startup after admission: a database that does not exist.
$node->connect_fails('dbname=no_such_db user=stu1', 'a login to a missing database fails',
	expected_stderr => qr/database "no_such_db" does not exist/);
role_is('stu1', '6/3/1/0/0/0 0|2|1|3|5|per_member|60|ok', 'opened and closed go up together, current does not');
server_is('12/7/2/1/1/0', 'after the missing database');
events_are([ 'connect|stu1|f', 'disconnect|stu1|t' ], 'the missing database');
is($mon->query_safe("SELECT string_agg(database, ',') FROM connmgr.connection_events WHERE event IN ('connect', 'disconnect') AND database <> 'postgres'"),
	'no_such_db,no_such_db', 'both events name the database asked for');

# Failed authentications: a wrong password, a role that does not exist.
$node->connect_fails('dbname=postgres user=pwuser password=wrong', 'a wrong password fails',
	expected_stderr => qr/password authentication failed for user "pwuser"/);
$node->connect_fails('dbname=postgres user=ghost', 'a role that does not exist fails',
	expected_stderr => qr/role "ghost" does not exist/);
role_is('pwuser', '0/0/0/0/0/1 0|0|0|0|27|max_connections|0|ok', 'a wrong password is auth_failed');
poll_is("SELECT $counters || ' ' || concat_ws('|', running, idle, idle_in_transaction, current, effective_limit) FROM connmgr.role_activity WHERE role_name IS NULL",
	'0/0/0/0/0/1 0|0|0|0', 'names that are no role share one row (role_name NULL), without a limit');
server_is('12/7/2/1/1/2', 'after the failed authentications');
events_are([ 'auth_failed|pwuser|f', 'auth_failed|ghost|f' ], 'the failed authentications');
poll_is('SELECT concat_ws(\'|\', max_connections, reserved_connections, current, available, usage_pct, status, net_growth_15m, net_growth_1h, round(opens_per_minute_15m * 15)) FROM connmgr.server_activity',
	'30|3|6|21|22.2|ok|5|5|12', 'server usage of the 27 ordinary slots, net growth and opens');

# Who sees what.
my $watcher = session('watcher');
my $names = "SELECT string_agg(role_name, ',' ORDER BY role_name) FROM connmgr.role_activity";
my $users = "SELECT string_agg(DISTINCT username, ',' ORDER BY username) FROM connmgr.connection_events";
is($idle->query_safe($names), 'stu1,student', 'a student sees its own row and its group\'s');
is($idle->query_safe($users), 'stu1', 'a student sees only its own events');
is($inst->query_safe($names), 'instructor,stu1,stu2,student', 'an instructor sees the class');
is($inst->query_safe($users), 'instructor,stu1,stu2', "an instructor sees the class's events");
my @all = qw(capped evu instructor pwuser stu1 stu2 watcher);
is($watcher->query_safe($names), join(',', sort(@all, 'student', $su)), 'pg_read_all_stats sees every row');
is($watcher->query_safe($users), join(',', sort(@all, 'ghost')),
	'and every event, with the name tried for the nonexistent role');
is($watcher->query_safe("SELECT $counters FROM connmgr.role_activity WHERE role_name IS NULL"),
	'0/0/0/0/0/1', "including the row of names that are no role");
is($inst->query_safe("SELECT count(*) FROM connmgr.role_activity WHERE role_name IS NULL"),
	'0', 'which an instructor does not see');

# reset_stats(): not for PUBLIC; for a role granted EXECUTE.
$idle->query("\\set VERBOSITY verbose\nSELECT connmgr.reset_stats()");
like($idle->{stderr}, qr/42501: permission denied for function reset_stats/, 'a student may not reset');
server_is('13/7/2/1/1/2', 'nothing was reset');
$mon->query_safe('GRANT EXECUTE ON FUNCTION connmgr.reset_stats() TO watcher');
$watcher->query_safe('SELECT connmgr.reset_stats()');
$seen = 0;
server_is('0/0/0/0/0/0', 'after a reset by a role granted EXECUTE');
events_are([], 'after a reset by a role granted EXECUTE');
poll_is("SELECT string_agg(role_name || ' ' || $counters, ',' ORDER BY role_name) FROM connmgr.role_activity",
	join(',', map { "$_ 0/0/0/0/0/0" } sort('capped', 'instructor', $su, 'stu1', 'student', 'watcher')),
	'only the connected roles and the group remain, at zero');

# A crash restart starts again from zero: only the login that looks counts.
$_->quit for ($txn, $busy, $idle, $inst, $capped, $watcher);
my $offset = -s $node->logfile;
kill 'KILL', $mon_pid;
$node->wait_for_log(qr/all server processes terminated; reinitializing/, $offset);
$node->wait_for_log(qr/database system is ready to accept connections/, $offset);
$mon->quit;
is($node->safe_psql('postgres',
		"SELECT $counters FROM connmgr.server_activity;
		 SELECT string_agg(concat_ws('|', event, username), ',') FROM connmgr.connection_events;
		 SELECT string_agg(role_name || ' ' || $counters, ',' ORDER BY role_name) FROM connmgr.role_activity"),
	"1/0/0/0/0/0\nconnect|$su\n$su 1/0/0/0/0/0,student 0/0/0/0/0/0",
	'after a crash restart: only the new connection is counted');

$node->stop;
done_testing();
