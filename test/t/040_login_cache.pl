# The login cache is never stale: after each kind of change that can alter
# a login's answer, the next login (whose answer was cached just before)
# is judged by the new rules.  Each case first logs in once so that the
# user's answer is cached, checks that a second login is judged by the old
# rules from the cache, makes the change, and logs in again.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use ConnmgrTest;

my $node = connmgr_node('cache', "log_min_messages = warning\n", allows_streaming => 1);
$node->safe_psql('postgres', q{
	CREATE ROLE student NOLOGIN;
	CREATE ROLE cs101 NOLOGIN;
	CREATE ROLE stu LOGIN IN ROLE student;
	CREATE ROLE admin_group NOLOGIN CREATEROLE;
	CREATE DATABASE other;
});
$node->safe_psql('other', 'CREATE EXTENSION connmgr');

sub login_ok
{
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	my ($user, $name, $node_) = @_;
	($node_ // $node)->connect_ok("dbname=postgres user=$user", $name);
}

sub login_refused
{
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	my ($user, $name, $node_) = @_;
	($node_ // $node)->connect_fails("dbname=postgres user=$user", $name,
		expected_stderr => qr/too many connections for role "$user"/);
}

sub sql
{
	my ($sql, $db) = @_;
	$node->safe_psql($db // 'postgres', $sql);
}

# Warm the cache for $user (two logins: the first fills it, the second
# is answered from it) expecting $ok, then run $change and expect the
# opposite.
sub after_change
{
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	my ($user, $ok, $change, $what, $db) = @_;
	for my $round (1 .. 2)
	{
		$ok ? login_ok($user, "$what: admitted before (login $round)")
		  : login_refused($user, "$what: refused before (login $round)");
	}
	sql($change, $db);
	$ok ? login_refused($user, "$what: refused right after the commit")
	  : login_ok($user, "$what: admitted right after the commit");
}

after_change('stu', 1, "SELECT connmgr.set_connection_limit('student', per_member => 0)",
	'set_connection_limit on a group');
after_change('stu', 0, "SELECT connmgr.drop_connection_limit('student')",
	'drop_connection_limit');
after_change('stu', 1, "SECURITY LABEL FOR connmgr ON ROLE student IS 'total=0,on_limit=reject'",
	'SECURITY LABEL FOR connmgr (as a restore writes it)');
after_change('stu', 0, "SECURITY LABEL FOR connmgr ON ROLE student IS 'total=0,on_limit=log'",
	'a label that turns the policy into a dry run');
sql("SELECT connmgr.drop_connection_limit('student')");

after_change('stu', 1, "SELECT connmgr.set_connection_limit('student', per_member => 0)",
	'a change made in another database', 'other');
after_change('stu', 0, 'REVOKE student FROM stu', 'REVOKE of the limited group');

# A GRANT of a group makes the cached user newly limited.
sql("SELECT connmgr.set_connection_limit('cs101', per_member => 0)");
after_change('stu', 1, 'GRANT cs101 TO stu', 'GRANT of a limited group');
# Inheritance: on PostgreSQL 15 the member's INHERIT attribute decides for
# all its grants; from 16 on each grant carries its own INHERIT option, and
# ALTER ROLE ... NOINHERIT only sets the default for later grants.
if ($node->pg_version >= 16)
{
	after_change('stu', 0, 'GRANT cs101 TO stu WITH INHERIT FALSE',
		'GRANT ... WITH INHERIT FALSE (16+)');
	after_change('stu', 1, 'GRANT cs101 TO stu WITH INHERIT TRUE',
		'GRANT ... WITH INHERIT TRUE (16+)');
	sql('ALTER ROLE stu NOINHERIT');
	login_refused('stu', 'ALTER ROLE ... NOINHERIT leaves an existing grant inheriting (16+)');
	sql('ALTER ROLE stu INHERIT');
}
else
{
	after_change('stu', 0, 'ALTER ROLE stu NOINHERIT', 'ALTER ROLE ... NOINHERIT');
	after_change('stu', 1, 'ALTER ROLE stu INHERIT', 'ALTER ROLE ... INHERIT');
}
after_change('stu', 0, 'ALTER ROLE stu SUPERUSER', 'ALTER ROLE ... SUPERUSER');
after_change('stu', 1, 'ALTER ROLE stu NOSUPERUSER', 'ALTER ROLE ... NOSUPERUSER');

# Becoming an administrator through a group exempts from group policies.
after_change('stu', 0, 'GRANT admin_group TO stu', 'GRANT of a CREATEROLE group');
after_change('stu', 1, 'REVOKE admin_group FROM stu', 'REVOKE of it');

# A rename: the policy stays with the role; the next login uses the new name.
sql("SELECT connmgr.drop_connection_limit('cs101'); SELECT connmgr.set_connection_limit('stu', per_member => 0)");
login_refused('stu', 'a policy on the login role itself');
sql('ALTER ROLE stu RENAME TO stu_renamed');
login_refused('stu_renamed', 'the renamed role keeps its policy');
sql('ALTER ROLE stu_renamed RENAME TO stu');
sql("SELECT connmgr.drop_connection_limit('stu')");

# DROP ROLE of a limited group drops its policy with it.
sql('CREATE ROLE doomed NOLOGIN; GRANT doomed TO stu');
sql("SELECT connmgr.set_connection_limit('doomed', per_member => 0)");
after_change('stu', 0, 'REVOKE doomed FROM stu; DROP ROLE doomed', 'DROP ROLE of the limited group');

# CREATE ROLE ... IN ROLE: a new login role in a limited group is limited
# at its first login.
sql("SELECT connmgr.set_connection_limit('student', per_member => 0)");
sql('CREATE ROLE newcomer LOGIN IN ROLE student');
login_refused('newcomer', 'CREATE ROLE ... IN ROLE a limited group');
sql("SELECT connmgr.drop_connection_limit('student')");

# connmgr.enabled (a reload) is part of the cached answer.
sql("SELECT connmgr.set_connection_limit('stu', per_member => 0)");
login_refused('stu', 'limited while enabled');
sql('ALTER SYSTEM SET connmgr.enabled = off');
$node->reload;
$node->poll_query_until('postgres', 'SHOW connmgr.enabled', 'off')
  or die 'connmgr.enabled did not become off';
login_ok('stu', 'admitted right after connmgr.enabled = off');
sql('ALTER SYSTEM RESET connmgr.enabled');
$node->reload;
$node->poll_query_until('postgres', 'SHOW connmgr.enabled', 'on')
  or die 'connmgr.enabled did not become on';
login_refused('stu', 'refused again right after it is back on');
sql("SELECT connmgr.drop_connection_limit('stu')");

# A hot standby: its cache follows changes replayed from the primary.
$node->backup('base');
my $standby = PostgreSQL::Test::Cluster->new('cache_standby');
$standby->init_from_backup($node, 'base', has_streaming => 1);
$standby->start;
sql('GRANT student TO stu');
$node->wait_for_catchup($standby);
login_ok('stu', 'on the standby: admitted (login 1)', $standby);
login_ok('stu', 'on the standby: admitted (login 2)', $standby);
sql("SELECT connmgr.set_connection_limit('student', per_member => 0)");
$node->wait_for_catchup($standby);
login_refused('stu', 'on the standby: refused once the policy is replayed', $standby);
sql('REVOKE student FROM stu');
$node->wait_for_catchup($standby);
login_ok('stu', 'on the standby: admitted once the REVOKE is replayed', $standby);
$standby->stop;

$node->stop;
done_testing();
