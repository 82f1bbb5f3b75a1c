# Installing into schemas nobody else controls: a role with CREATE on the
# database cannot squat schema connmgr (or connmgr_internal) with
# look-alike functions before the DBA's CREATE EXTENSION, which refuses
# existing schemas (42P06) and installs nothing; the schemas the extension
# creates belong to its installer and to the extension, the squatter cannot
# add objects to them, and DROP EXTENSION removes them.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use ConnmgrTest;

# Not connmgr_node: it would create the extension before the squatter.
my $node = PostgreSQL::Test::Cluster->new('install_schema');
$node->init;
$node->append_conf('postgresql.conf', "shared_preload_libraries = 'connmgr'\n");
$node->start;
$node->safe_psql('postgres', q{
	CREATE ROLE student LOGIN;
	GRANT CREATE ON DATABASE postgres TO student;
});

my $nothing_installed = q{
	SELECT (SELECT count(*) FROM pg_extension WHERE extname = 'connmgr')
	    || '|' || (SELECT count(*) FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
	               WHERE n.nspname IN ('connmgr', 'connmgr_internal')
	                 AND pg_get_userbyid(p.proowner) <> 'student')};

# CREATE EXTENSION must fail with 42P06 on the squatted $schema and leave
# nothing of the extension behind.
sub create_extension_refused
{
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	my ($schema, $name) = @_;
	my ($ret, $out, $err) = sql_as($node, undef, 'CREATE EXTENSION connmgr');
	isnt($ret, 0, "$name: CREATE EXTENSION fails");
	like($err, qr/ERROR:  42P06: schema "$schema" already exists/,
		"$name: SQLSTATE 42P06, schema \"$schema\" already exists");
	is($node->safe_psql('postgres', $nothing_installed), '0|0',
		"$name: nothing of the extension is installed");
}

# The student squats schema connmgr with a look-alike of the ClassDB API.
my ($ret, $out, $err) = sql_as($node, 'student', q{
	CREATE SCHEMA connmgr;
	CREATE FUNCTION connmgr.listUserConnections(text) RETURNS SETOF text
	    LANGUAGE sql AS $$ SELECT 'gotcha'::text $$;
});
is($ret, 0, 'a role with CREATE on the database can create schema connmgr')
  or diag($err);
create_extension_refused('connmgr', 'squatted schema connmgr');
is($node->safe_psql('postgres', q{
	SELECT pg_get_userbyid(n.nspowner) || ':' || count(p.oid)
	FROM pg_namespace n LEFT JOIN pg_proc p ON p.pronamespace = n.oid
	WHERE n.nspname = 'connmgr' GROUP BY n.nspowner}),
	'student:1', "the squatter's schema and function are left as they were");

# The same for the schema of the functions behind the views.
$node->safe_psql('postgres', 'DROP SCHEMA connmgr CASCADE');
($ret, $out, $err) = sql_as($node, 'student', q{
	CREATE SCHEMA connmgr_internal;
	CREATE FUNCTION connmgr_internal.connection_limit_rows() RETURNS SETOF record
	    LANGUAGE sql AS $$ SELECT NULL::record WHERE false $$;
});
is($ret, 0, 'the student can create schema connmgr_internal') or diag($err);
create_extension_refused('connmgr_internal', 'squatted schema connmgr_internal');
is($node->safe_psql('postgres',
		"SELECT count(*) FROM pg_namespace WHERE nspname = 'connmgr'"),
	'0', 'the failed CREATE EXTENSION left no schema connmgr behind');

# Once the DBA has removed the squatter's schema, CREATE EXTENSION works.
$node->safe_psql('postgres', 'DROP SCHEMA connmgr_internal CASCADE');
($ret, $out, $err) = sql_as($node, undef, 'CREATE EXTENSION connmgr');
is($ret, 0, 'CREATE EXTENSION succeeds once the schemas are gone') or diag($err);

is($node->safe_psql('postgres', q{
	SELECT string_agg(n.nspname || ':' || (n.nspowner = e.extowner)
	                  || ':' || (n.nspowner = (SELECT oid FROM pg_roles WHERE rolname = current_user))
	                  || ':' || rolsuper, ',' ORDER BY n.nspname)
	FROM pg_namespace n, pg_extension e, pg_roles r
	WHERE n.nspname IN ('connmgr', 'connmgr_internal')
	  AND e.extname = 'connmgr' AND r.oid = n.nspowner}),
	'connmgr:true:true:true,connmgr_internal:true:true:true',
	'both schemas are owned by the superuser who created the extension');
is($node->safe_psql('postgres', q{
	SELECT string_agg(n.nspname, ',' ORDER BY n.nspname)
	FROM pg_depend d
	JOIN pg_namespace n ON d.classid = 'pg_namespace'::regclass AND d.objid = n.oid
	JOIN pg_extension e ON d.refclassid = 'pg_extension'::regclass AND d.refobjid = e.oid
	WHERE e.extname = 'connmgr' AND d.deptype = 'e'}),
	'connmgr,connmgr_internal', 'both schemas are members of the extension');

for my $schema ('connmgr', 'connmgr_internal')
{
	($ret, $out, $err) = sql_as($node, 'student',
		"CREATE FUNCTION $schema.x() RETURNS int LANGUAGE sql AS \$\$ SELECT 1 \$\$");
	isnt($ret, 0, "the student cannot create functions in schema $schema");
	like($err, qr/ERROR:  42501: permission denied for schema $schema/,
		"SQLSTATE 42501 for CREATE FUNCTION $schema.x()");
}
($ret, $out, $err) = sql_as($node, 'student',
	"SELECT count(*) FROM connmgr.listUserConnections('student')");
is("$ret|$out", '0|1', 'the student can still use the real API');

# DROP EXTENSION removes both schemas, not only their contents.
$node->safe_psql('postgres', 'DROP EXTENSION connmgr');
is($node->safe_psql('postgres', q{
	SELECT count(*) FROM pg_namespace WHERE nspname IN ('connmgr', 'connmgr_internal')}),
	'0', 'DROP EXTENSION removes schemas connmgr and connmgr_internal');
is($node->safe_psql('postgres',
		"SELECT count(*) FROM pg_extension WHERE extname = 'connmgr'"),
	'0', 'and the extension is gone');

# And it can be installed again afterwards.
$node->safe_psql('postgres', 'CREATE EXTENSION connmgr');
is($node->safe_psql('postgres', q{
	SELECT count(*) FROM pg_namespace WHERE nspname IN ('connmgr', 'connmgr_internal')}),
	'2', 'CREATE EXTENSION after DROP EXTENSION creates both schemas again');

$node->stop;
done_testing();
