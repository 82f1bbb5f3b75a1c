# The policy store: a policy applies to the next login after its
# transaction commits (not before, no reload), is visible and enforced on a
# hot standby, and survives pg_dumpall + restore into another cluster.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use ConnmgrTest;

my $primary = connmgr_node('primary', '', allows_streaming => 1);
$primary->safe_psql('postgres', q{
	CREATE ROLE student NOLOGIN;
	CREATE ROLE stu1 LOGIN IN ROLE student;
});

# Uncommitted: no effect yet.  Committed: the next login sees it.
my $dba = $primary->background_psql('postgres');
$dba->query_safe('BEGIN');
$dba->query_safe("SELECT connmgr.set_connection_limit('student', per_member => 0)");
$primary->connect_ok('dbname=postgres user=stu1',
	'a policy set in an open transaction does not apply yet');
$dba->query_safe('COMMIT');
$primary->connect_fails('dbname=postgres user=stu1',
	'it applies to the next login after commit, without a reload',
	expected_stderr => qr/too many connections for role "stu1"/);
$dba->query_safe('BEGIN');
$dba->query_safe("SELECT connmgr.drop_connection_limit('student')");
$dba->query_safe('ROLLBACK');
$primary->connect_fails('dbname=postgres user=stu1',
	'a rolled-back drop leaves the policy in force',
	expected_stderr => qr/too many connections for role "stu1"/);
$dba->quit;

# Hot standby: the policy is replicated, visible and enforced there.
$primary->safe_psql('postgres',
	"SELECT connmgr.set_connection_limit('student', per_member => 1, on_limit => 'reject')");
$primary->backup('base');
my $standby = PostgreSQL::Test::Cluster->new('standby');
$standby->init_from_backup($primary, 'base', has_streaming => 1);
$standby->start;
$primary->safe_psql('postgres',
	"SELECT connmgr.set_connection_limit('student', per_member => 1, total => 7)");
$primary->wait_for_catchup($standby);
is($standby->safe_psql('postgres',
		"SELECT per_member, total FROM connmgr.connection_limits WHERE role_name = 'student'"),
	'1|7', 'the standby sees the latest policy');
my $s = open_session($standby, 'stu1');
$standby->connect_fails('dbname=postgres user=stu1',
	'the standby enforces it',
	expected_stderr => qr/Role "stu1" has 1 connection; the limit for members of "student" is 1\./);
$s->quit;
my ($ret, $out, $err) = sql_as($standby, undef,
	"SELECT connmgr.set_connection_limit('student', per_member => 3)");
like($err, qr/25006: cannot execute connmgr.set_connection_limit\(\) during recovery/,
	'policies cannot be changed on the standby');
$standby->stop;

# pg_dumpall writes the policy as SECURITY LABEL FOR connmgr; restoring
# into another cluster with connmgr preloaded brings it back in force.
my $dump = $primary->basedir . '/roles.sql';
$primary->command_ok(
	[ 'pg_dumpall', '--roles-only', '-f', $dump, '-d', $primary->connstr('postgres') ],
	'pg_dumpall --roles-only');
like(slurp_file($dump),
	qr/SECURITY LABEL FOR connmgr ON ROLE student IS 'per_member=1,total=7,on_limit=reject';/,
	'the dump carries the policy as a security label');
my $restored = connmgr_node('restored');
$restored->command_ok(
	[ 'psql', '-X', '-q', '-d', $restored->connstr('postgres'), '-f', $dump ],
	'restore the roles');
is($restored->safe_psql('postgres',
		"SELECT per_member, total, on_limit FROM connmgr.connection_limits WHERE role_name = 'student'"),
	'1|7|reject', 'the restored cluster has the policy');
$s = open_session($restored, 'stu1');
$restored->connect_fails('dbname=postgres user=stu1',
	'and enforces it',
	expected_stderr => qr/too many connections for role "stu1"/);
$s->quit;

$restored->stop;
$primary->stop;
done_testing();
