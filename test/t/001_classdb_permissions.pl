# The permission matrix of the ClassDB-compatible functions, with real
# logins: who may see and terminate whose connections.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use ConnmgrTest;

my $node = connmgr_node('permissions', "wal_level = replica\nmax_wal_senders = 4\n");
$node->safe_psql('postgres', q{
	CREATE ROLE student NOLOGIN;
	CREATE ROLE stu1 LOGIN IN ROLE student;
	CREATE ROLE stu2 LOGIN IN ROLE student;
	CREATE ROLE instructor LOGIN;
	CREATE ROLE instructor2 LOGIN;
	GRANT student TO instructor, instructor2 WITH ADMIN OPTION;
	CREATE ROLE signaler LOGIN IN ROLE pg_signal_backend;
	CREATE ROLE watcher LOGIN IN ROLE pg_read_all_stats;
	CREATE ROLE dba LOGIN SUPERUSER;
});

# caller => { target => expected killConnection() result } (ConnmgrTest's
# permission_matrix: 'f-hidden' means false because the caller may not even
# see the target; 'f-denied' that it sees it but may not terminate it).
my %matrix = permission_matrix();

for my $caller (sort keys %matrix)
{
	for my $target (sort keys %{ $matrix{$caller} })
	{
		my $expect = $matrix{$caller}{$target};
		my $victim = open_session($node, $target);
		my $pid = $victim->{pid};

		my ($ret, $seen) = sql_as($node, $caller,
			"SELECT count(*) FROM connmgr.listUserConnections('$target') WHERE pid = $pid");
		is($seen, $expect eq 'f-hidden' ? '0' : '1',
			"$caller " . ($expect eq 'f-hidden' ? 'does not see' : 'sees') . " $target");

		my ($ret2, $out, $err) = sql_as($node, $caller,
			"SELECT connmgr.killConnection($pid)");
		if ($expect eq 't')
		{
			is($out, 't', "$caller terminates $target");
			ok(!backend_alive($node, $pid), "$target\'s session is gone when $caller\'s kill returns");
		}
		else
		{
			is($out, 'f', "$caller may not terminate $target");
			like($err,
				$expect eq 'f-hidden'
				? qr/WARNING:  42704: no connection with process ID $pid/
				: qr/WARNING:  42501: permission denied to terminate connection $pid/,
				"$caller gets the right warning for $target");
			ok(backend_alive($node, $pid), "$target\'s session survives $caller");
		}
		$victim->quit;
	}
}

# The privileges of the target role are enough, as for pg_terminate_backend:
# a member of stu2 (here a teaching assistant) may end stu2's sessions.
$node->safe_psql('postgres', 'CREATE ROLE ta LOGIN IN ROLE stu2');
my $ta_target = open_session($node, 'stu2');
my (undef, $ta_out) = sql_as($node, 'ta', "SELECT connmgr.killConnection($ta_target->{pid})");
is($ta_out, 't', 'a role with the privileges of the target role may terminate it');
$ta_target->quit;

# Nested groups: an instructor of "student" manages members of cs101, a
# group inside student.
$node->safe_psql('postgres',
	'CREATE ROLE cs101 NOLOGIN IN ROLE student; CREATE ROLE stu4 LOGIN IN ROLE cs101');
my $nested = open_session($node, 'stu4');
my (undef, $nested_out) = sql_as($node, 'instructor', "SELECT connmgr.killConnection($nested->{pid})");
is($nested_out, 't', 'an instructor manages members of nested groups');
$nested->quit;

# An instructor cannot reach administrators by changing memberships: not a
# DBA with CREATEROLE they add to the class, and not a co-instructor whose
# ADMIN OPTION on this class they revoke (who still administers another).
$node->safe_psql('postgres', q{
	CREATE ROLE dba2 LOGIN CREATEROLE;
	CREATE ROLE other_class NOLOGIN;
	GRANT other_class TO instructor2 WITH ADMIN OPTION;
});
sql_as($node, 'instructor', 'GRANT student TO dba2');
sql_as($node, 'instructor', 'REVOKE ADMIN OPTION FOR student FROM instructor2');
is($node->safe_psql('postgres',
		"SELECT count(*) FROM pg_auth_members WHERE member = 'dba2'::regrole AND roleid = 'student'::regrole"),
	'1', 'the instructor did add the DBA to the class');
for my $admin ('dba2', 'instructor2')
{
	my $victim = open_session($node, $admin);
	my (undef, $out, $err) = sql_as($node, 'instructor',
		"SELECT connmgr.killConnection($victim->{pid})");
	is($out, 'f', "the instructor may not terminate $admin after changing memberships");
	ok(backend_alive($node, $victim->{pid}), "$admin\'s session survives");
	$victim->quit;
}

# Co-administrators: instructor3 holds ADMIN OPTION on student too, so the
# instructor sees none of its sessions even by name.
$node->safe_psql('postgres', 'CREATE ROLE instructor3 LOGIN; GRANT student TO instructor3 WITH ADMIN OPTION');
my $co = open_session($node, 'instructor3');
my (undef, $count) = sql_as($node, 'instructor',
	"SELECT count(*) FROM connmgr.killUserConnections('instructor3')");
is($count, '0', 'killUserConnections of a co-administrator targets nothing');
ok(backend_alive($node, $co->{pid}), 'the co-administrator keeps its session');
$co->quit;

# A superuser's session in the middle of a list of kills does not stop the
# others: it alone reports false, with a warning.
my @s = (open_session($node, 'stu1'), open_session($node, 'dba'),
	open_session($node, 'stu2'));
my ($ret, $out, $err) = sql_as($node, 'instructor',
	"SELECT connmgr.killConnection(p) FROM unnest(ARRAY[$s[0]{pid}, $s[1]{pid}, $s[2]{pid}]) WITH ORDINALITY AS t(p, n) ORDER BY n");
is($out, "t\nf\nt", 'kills around a superuser target proceed');
ok(!backend_alive($node, $s[0]{pid}) && !backend_alive($node, $s[2]{pid}),
	'both student sessions are gone');
ok(backend_alive($node, $s[1]{pid}), 'the superuser session survives');
like($err, qr/no connection with process ID $s[1]{pid}/,
	'the superuser target gets a warning');
$_->quit for @s;

# A student with the REPLICATION attribute is an administrator (its
# logical replication connections are infrastructure): the instructor
# targets none of its connections, regular or walsender; a member of
# pg_signal_backend ends them both, one row each.
$node->safe_psql('postgres', 'CREATE ROLE stu3 LOGIN REPLICATION IN ROLE student');
my $regular = open_session($node, 'stu3');
my $walsender = open_session($node, 'stu3', replication => 'database');
($ret, $out, $err) = sql_as($node, 'instructor',
	"SELECT count(*) FROM connmgr.killUserConnections('stu3')");
is($out, '0', 'the instructor targets no connection of a REPLICATION role');
ok(backend_alive($node, $walsender->{pid}) && backend_alive($node, $regular->{pid}),
	'both of its connections survive');
($ret, $out, $err) = sql_as($node, 'signaler',
	"SELECT pid, success FROM connmgr.killUserConnections('stu3') ORDER BY pid");
my %rows = map { split /\|/ } split /\n/, $out;
is($rows{ $regular->{pid} }, 't', 'pg_signal_backend ends the regular session');
is($rows{ $walsender->{pid} }, 't', 'and the walsender');
ok(!backend_alive($node, $regular->{pid}) && !backend_alive($node, $walsender->{pid}),
	'both are gone');
$_->quit for ($regular, $walsender);
$walsender = open_session($node, 'stu3', replication => 'database');
# stu3 itself may end its own walsender.
(undef, $out) = sql_as($node, 'stu3', "SELECT connmgr.killConnection($walsender->{pid})");
is($out, 't', 'a role may terminate its own walsender');
$_->quit for ($regular, $walsender);

# The caller's own connection is never terminated.
my $own = open_session($node, 'stu1');
my $self_kill = $own->query('SELECT connmgr.killConnection(pg_backend_pid())');
is($self_kill, 'f', 'killConnection(pg_backend_pid()) is false');
like($own->{stderr}, qr/cannot terminate your own connection/, 'with a warning');
$own->{stderr} = '';
is($own->query_safe('SELECT 1'), '1', 'and the session still works');
my $other = open_session($node, 'stu1');
my $result = $own->query_safe(
	'SELECT string_agg(pid::text || success::text, \',\') FROM connmgr.killUserConnections(current_user)');
is($result, "$other->{pid}true",
	"killUserConnections(current_user) ends the caller's other session only");
ok(!backend_alive($node, $other->{pid}), 'the other session is gone');
is($own->query_safe('SELECT 1'), '1', 'the calling session still works');
$_->quit for ($own, $other);

# Every termination is logged with who asked and which connection.
my $logged = open_session($node, 'stu2', app => 'pgadmin_stray');
my $offset = -s $node->logfile;
sql_as($node, 'instructor', "SELECT connmgr.killConnection($logged->{pid})");
ok( $node->log_contains(
		qr/terminating connection $logged->{pid} of role "stu2" at the request of role "instructor"/,
		$offset),
	'the termination is logged with target and requester');
ok( $node->log_contains(
		qr/database "postgres" from client \(none\) with application name "pgadmin_stray"/,
		$offset),
	'the log names database, client and application');
$logged->quit;

# ClassDB's functions are about connections: a superuser's own name lists
# and ends its client sessions, never the background processes that run as
# it (the logical replication launcher, connmgr's idle worker).
$node->poll_query_until('postgres',
	"SELECT count(*) >= 2 FROM pg_stat_activity WHERE usename = current_user AND backend_type IN ('logical replication launcher', 'connmgr idle worker')")
  or die 'the background processes did not start';
my $su_session = $node->background_psql('postgres');
my $su_pid = $su_session->query_safe('SELECT pg_backend_pid()');
my ($ret, $listed) = sql_as($node, undef,
	"SELECT string_agg(a.backend_type, ',' ORDER BY a.backend_type) FROM connmgr.listUserConnections(current_user) l JOIN pg_stat_activity a USING (pid)");
is($listed, 'client backend,client backend',
	"listUserConnections(current_user) lists a superuser's two sessions only");
my ($killed, $warnings);
($ret, $killed, $warnings) = sql_as($node, undef,
	'SELECT string_agg(pid::text || success::text, \',\') FROM connmgr.killUserConnections(current_user)');
is($killed, "${su_pid}true", "killUserConnections(current_user) ends the superuser's other session only");
unlike($warnings, qr/WARNING/, 'with no WARNING about background processes');
$su_session->quit;

$node->stop;
done_testing();
