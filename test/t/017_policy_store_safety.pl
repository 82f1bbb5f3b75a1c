# The policy store's safety: long labels are refused, and a label stored out
# of line or compressed behind connmgr's back (which cannot be read before
# a database is selected) is skipped with a WARNING instead of locking its
# members out; a roles-only dump restored without the preload loses the
# policies until they are re-applied as documented, and export_policies()
# shows that they are back; DROP EXTENSION leaves limits in force, and the
# documented SQL removes them all without the extension.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use ConnmgrTest;

my $node = connmgr_node('source', "log_error_verbosity = verbose\n");
$node->safe_psql('postgres', q{
	CREATE ROLE student NOLOGIN;
	CREATE ROLE cs101 NOLOGIN IN ROLE student;
	CREATE ROLE "Lab 7" NOLOGIN;
	CREATE ROLE stu1 LOGIN IN ROLE cs101;
	CREATE ROLE auditor LOGIN;
	GRANT EXECUTE ON FUNCTION connmgr.export_policies() TO auditor;
});

# Item 3 (a): SECURITY LABEL refuses labels longer than 256 bytes.
my ($ret, $out, $err) = sql_as($node, undef,
	"SECURITY LABEL FOR connmgr ON ROLE student IS 'per_member=5" . (',' x 300000) . "'");
like($err, qr/ERROR:  22023: invalid connmgr policy label "\.\.\."\nDETAIL:  The label has 300012 bytes; a policy label has at most 256\./,
	'a 300,000-byte label is refused with 22023');
my $zeros = 'per_member=' . ('0' x 244);
($ret, $out, $err) = sql_as($node, undef, "SECURITY LABEL FOR connmgr ON ROLE student IS '${zeros}05'");
like($err, qr/ERROR:  22023: .*\nDETAIL:  The label has 257 bytes; a policy label has at most 256\./,
	'a 257-byte label is refused');
($ret, $out, $err) = sql_as($node, undef, "SECURITY LABEL FOR connmgr ON ROLE student IS '${zeros}5'");
is($ret, 0, 'a well-formed 256-byte label is accepted') or diag($err);
is($node->safe_psql('postgres', "SELECT per_member FROM connmgr.connection_limits WHERE role_name = 'student'"),
	'5', 'and read as per_member 5');

# Item 3 (b): labels written behind connmgr's back, too long to be kept
# inline and uncompressed.  cs101's intact total of 1 must still apply.
$node->safe_psql('postgres', "SELECT connmgr.set_connection_limit('cs101', total => 1)");
my $toast = $node->safe_psql('postgres',
	"SELECT reltoastrelid::regclass FROM pg_class WHERE oid = 'pg_shseclabel'::regclass");
my $student_label = "FROM pg_shseclabel WHERE provider = 'connmgr' AND objoid = 'student'::regrole";

# Wait until stu1's closed sessions no longer count for cs101.
# poll_query_until wants no stderr: keep connection_limits' WARNING out.
sub settle
{
	local $ENV{PGOPTIONS} = '-c client_min_messages=error';
	wait_for_count($node, 'cs101', 0);
}

sub damaged_label
{
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	my ($name, $label, $storage) = @_;
	$node->safe_psql('postgres', "SELECT connmgr.set_connection_limit('student', per_member => 0)");
	is($node->safe_psql('postgres', qq{
		SET allow_system_table_mods = on;
		WITH u AS (UPDATE pg_shseclabel SET label = $label
		           WHERE provider = 'connmgr' AND objoid = 'student'::regrole RETURNING 1)
		SELECT count(*) FROM u}), '1', "$name: label rewritten in pg_shseclabel");
	is($node->safe_psql('postgres', qq{
		SELECT octet_length(label) > 2000, pg_column_compression(label) IS NOT NULL,
		       (SELECT count(*) > 0 FROM $toast) $student_label}),
		$storage, "$name: stored as expected (long|compressed|out of line)");

	my $offset = -s $node->logfile;
	$node->connect_ok('dbname=postgres user=stu1', "$name: stu1 can log in");
	ok($node->log_contains(
			qr/WARNING:  22023: ignoring the damaged connection limit policy of role "student"\n.*DETAIL:  The label is too long to be a policy; it was not read\./,
			$offset),
		"$name: the login logs a WARNING about the damaged policy");
	settle();
	my $s = open_session($node, 'stu1');
	$node->connect_fails('dbname=postgres user=stu1', "$name: the intact policy of cs101 still applies",
		expected_stderr => qr/Role "cs101" and its members have 1 connection; the limit is 1\./);
	close_sessions($node, $s);
	settle();

	($ret, $out, $err) = sql_as($node, undef,
		'SELECT string_agg(role_name, \',\') FROM connmgr.connection_limits');
	is($out, 'cs101', "$name: connection_limits leaves the damaged policy out");
	like($err, qr/WARNING:  22023: the connection limit policy of role "student" is damaged/,
		"$name: with a WARNING");
	is($node->safe_psql('postgres', "SELECT connmgr.drop_connection_limit('student')"),
		't', "$name: drop_connection_limit removes it");
	is($node->safe_psql('postgres', "SELECT count(*) $student_label"), '0',
		"$name: the label is gone");
}

damaged_label('300,000 commas', q{'per_member=5' || repeat(',', 300000)}, 't|t|t');
damaged_label('6,415 incompressible bytes',
	q{'per_member=0,x=' || (SELECT string_agg(md5(i::text), '') FROM generate_series(1, 200) i)},
	't|f|t');
damaged_label('3,012 bytes compressed inline', q{'per_member=5' || repeat(',', 3000)}, 't|t|f');

# Item 11: export_policies() and a roles-only dump.
$node->safe_psql('postgres', q{
	SELECT connmgr.set_connection_limit('student', per_member => 3, total => 60);
	SELECT connmgr.set_connection_limit('cs101', total => 25, on_limit => 'log');
	SELECT connmgr.set_connection_limit('"Lab 7"', per_member => 1);
});
my $exported = $node->safe_psql('postgres', 'SELECT * FROM connmgr.export_policies()');
is($exported, join("\n",
		q{SECURITY LABEL FOR connmgr ON ROLE "Lab 7" IS 'per_member=1,on_limit=reject';},
		q{SECURITY LABEL FOR connmgr ON ROLE cs101 IS 'total=25,on_limit=log';},
		q{SECURITY LABEL FOR connmgr ON ROLE student IS 'per_member=3,total=60,on_limit=reject';}),
	'export_policies() returns the SECURITY LABEL statements, sorted');
($ret, $out, $err) = sql_as($node, 'stu1', 'SELECT * FROM connmgr.export_policies()');
like($err, qr/ERROR:  42501: permission denied for function export_policies/,
	'export_policies() is not executable by PUBLIC (42501)');
($ret, $out, $err) = sql_as($node, 'auditor', 'SELECT * FROM connmgr.export_policies()');
like($err, qr/ERROR:  42501: permission denied to export connection limit policies/,
	'a non-superuser granted EXECUTE is still refused (42501)');

my $dump = $node->basedir . '/roles.sql';
$node->command_ok(
	[ 'pg_dumpall', '--roles-only', '-f', $dump, '-d', $node->connstr('postgres') ],
	'pg_dumpall --roles-only');
my @policy_lines = grep { /^SECURITY LABEL FOR connmgr/ } split /\n/, slurp_file($dump);
is(scalar @policy_lines, 3, 'the dump has the three policies');

# Restored into a cluster without the preload, the labels are refused.
my $restored = PostgreSQL::Test::Cluster->new('restored');
$restored->init;
$restored->start;
($ret, $out, $err) = $restored->psql('postgres', slurp_file($dump), on_error_stop => 0);
my @refused = $err =~ /ERROR:  security label provider "connmgr" is not loaded/g;
is(scalar @refused, 3, 'without the preload each SECURITY LABEL line fails');
is($restored->safe_psql('postgres',
		q{SELECT (SELECT count(*) FROM pg_roles WHERE rolname IN ('student', 'cs101', 'Lab 7', 'stu1'))
		     || '|' || (SELECT count(*) FROM pg_shseclabel)}),
	'4|0', 'the roles are restored, no label is stored');

# The documented recovery: preload, restart, re-apply only the policy lines.
$restored->append_conf('postgresql.conf', "shared_preload_libraries = 'connmgr'\n");
$restored->restart;
my $policies = $restored->basedir . '/policies.sql';
append_to_file($policies, join("\n", @policy_lines) . "\n");
$restored->command_ok(
	[ 'psql', '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-d', $restored->connstr('postgres'), '-f', $policies ],
	'the policy lines of the dump apply once connmgr is preloaded');
$restored->safe_psql('postgres', 'CREATE EXTENSION connmgr');
is($restored->safe_psql('postgres', 'SELECT * FROM connmgr.export_policies()'),
	$exported, 'export_policies() on the restored cluster equals the source');
my @s = open_sessions($restored, 'stu1', 3);
$restored->connect_fails('dbname=postgres user=stu1', 'the restored per_member limit is enforced',
	expected_stderr => qr/Role "stu1" has 3 connections; the limit for members of "student" is 3\./);
close_sessions($restored, @s);
wait_for_count($restored, 'student', 0);

# Item 18: DROP EXTENSION (in every database) leaves the limits in force.
$restored->safe_psql('postgres', 'CREATE DATABASE other');
$restored->safe_psql('other', 'CREATE EXTENSION connmgr');
$restored->safe_psql('postgres', "SELECT connmgr.set_connection_limit('student', per_member => 0)");
$restored->safe_psql($_, 'DROP EXTENSION connmgr') for ('postgres', 'other');

# stu1's login must be refused with a hint that names no connmgr function.
sub refused_without_extension
{
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	my ($name, $hint) = @_;
	my ($r, $o, $e) = $restored->psql('postgres', 'SELECT 1', extra_params => [ '-U', 'stu1' ]);
	like($e, qr/FATAL:  too many connections for role "stu1"\nDETAIL:  .*\nHINT:  \Q$hint\E/,
		"$name: stu1 is still refused after DROP EXTENSION");
	unlike($e, qr/connmgr\./, "$name: the refusal mentions no connmgr function");
}

refused_without_extension('per_member 0',
	'This limit allows no connections at all. Ask your instructor or database administrator if you need to connect.');
($ret, $out, $err) = sql_as($restored, undef,
	q{SECURITY LABEL FOR connmgr ON ROLE student IS 'per_member=1'});
is($ret, 0, 'SECURITY LABEL FOR connmgr works without the extension') or diag($err);
my $s = open_session($restored, 'stu1');
refused_without_extension('per_member 1',
	'Close connections you no longer use, or ask your instructor or database administrator to end them.');

# The documented removal of every limit, with the extension absent.
($ret, $out, $err) = sql_as($restored, undef, q{
SELECT format('SECURITY LABEL FOR connmgr ON ROLE %s IS NULL', objname)
FROM pg_seclabels WHERE provider = 'connmgr' AND objtype = 'role' \gexec
});
is($ret, 0, 'the documented \gexec removes the policies without the extension') or diag($err);
is($restored->safe_psql('postgres', "SELECT count(*) FROM pg_seclabels WHERE provider = 'connmgr'"),
	'0', 'no connmgr label is left');
$restored->connect_ok('dbname=postgres user=stu1', 'stu1 logs in again');
$s->quit;

$restored->stop;
$node->stop;
done_testing();
