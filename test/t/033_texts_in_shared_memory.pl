# Texts that connmgr keeps in shared memory stay valid wherever they are
# read: a kill reason cut in the middle of a multibyte letter, a reason
# given in a LATIN1 database for a victim in a UTF8 one and the other way
# round (converted, '?' only for what LATIN1 lacks), host names with
# log_hostname on; and a NOLOGIN role's refused login is no opened
# connection.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use ConnmgrTest;

my $node = connmgr_node('texts',
	"listen_addresses = '127.0.0.1'\nlog_error_verbosity = verbose\n",
	extra => [ '--encoding=UTF8', '--locale=C' ]);
$node->safe_psql('postgres', q{
	CREATE ROLE stu1 LOGIN;
	CREATE ROLE ghost_nologin NOLOGIN;
	CREATE DATABASE latin TEMPLATE template0 ENCODING 'LATIN1' LC_COLLATE 'C' LC_CTYPE 'C';
});
$node->safe_psql('latin', 'CREATE EXTENSION connmgr');

# A reason of 100 two-byte letters is kept cut at a letter boundary: the
# event log stays readable and the victim's DETAIL is valid UTF-8.
my $victim = open_session($node, 'stu1');
my ($ret, $out, $err) = sql_as($node, undef,
	"SELECT message FROM connmgr.kill_connection('$victim->{pid}', repeat(U&'\\00e9', 100))");
is($out, 'Connection found', 'a kill with a long multibyte reason');
$node->poll_query_until('postgres',
	"SELECT count(*) = 1 FROM connmgr.connection_events WHERE event = 'terminate'")
  or die 'no terminate event';
is($node->safe_psql('postgres',
		"SELECT length(reason) > 0 AND reason ~ ('^' || U&'\\00e9' || '+\$') FROM connmgr.connection_events WHERE event = 'terminate'"),
	't', 'the event log keeps the reason cut at a letter boundary');
($ret, $out, $err) = sql_as($node, undef,
	"COPY (SELECT * FROM connmgr.connection_events) TO STDOUT");
is($ret, 0, 'the whole event log can be read and copied') or diag($err);

# A reason given in a LATIN1 database reaches a victim in a UTF8 one as
# valid text; the LATIN1 database shows the event log too.
$victim = open_session($node, 'stu1');
$victim->query_safe('SELECT 1');
($ret, $out, $err) = sql_as($node, undef,
	"SELECT message FROM connmgr.kill_connection('$victim->{pid}', 'caf' || chr(233) || ' ferm' || chr(233))",
	'latin');
is($out, 'Connection found', 'a kill from a LATIN1 database with a non-ASCII reason');
like(last_words($victim),
	qr/DETAIL:  Your connection was ended by role "\S+": caf\x{c3}\x{a9} ferm\x{c3}\x{a9}\./,
	'the victim in the UTF8 database reads the reason in UTF-8');
unlike($victim->{stderr}, qr/invalid byte sequence/, 'with no encoding error');
($ret, $out, $err) = sql_as($node, undef,
	"SELECT reason FROM connmgr.connection_events WHERE event = 'terminate' ORDER BY event_time DESC LIMIT 1",
	'latin');
is($ret, 0, 'the LATIN1 database reads the event log') or diag($err);
like($out, qr/^caf. ferm.$/, 'and shows the reason with what it can show');

# A reason given in the UTF8 database reaches a victim in the LATIN1 one
# converted: what LATIN1 has arrives as it is, each letter it lacks as '?'.
{
	local $ENV{PGCLIENTENCODING} = 'UTF8';
	$victim = open_session($node, 'stu1', db => 'latin');
	($ret, $out, $err) = sql_as($node, undef,
		"SELECT message FROM connmgr.kill_connection('$victim->{pid}', U&'\\65E5\\672C\\8A9E \\00E9')");
	is($out, 'Connection found', 'a kill from the UTF8 database of a victim in the LATIN1 one');
	like(last_words($victim),
		qr/DETAIL:  Your connection was ended by role "\S+": \?\?\? \x{c3}\x{a9}\./,
		'the victim reads the reason in its encoding: the Japanese as ???, the e acute as itself');
	$node->poll_query_until('postgres',
		"SELECT count(*) = 3 FROM connmgr.connection_events WHERE event = 'terminate'")
	  or die 'no third terminate event';
	($ret, $out, $err) = sql_as($node, undef,
		"SELECT reason FROM connmgr.connection_events WHERE event = 'terminate' ORDER BY event_time DESC LIMIT 1",
		'latin');
	is($out, "??? \x{c3}\x{a9}", 'and so does the LATIN1 database\'s event log');
}

# log_hostname: the event log records the client's address, not its name.
$node->append_conf('postgresql.conf', "log_hostname = on\n");
$node->reload;
$node->poll_query_until('postgres', 'SHOW log_hostname', 'on') or die;
$node->connect_ok($node->connstr('postgres') . ' host=127.0.0.1 user=stu1',
	'a TCP login with log_hostname on');
is($node->safe_psql('postgres',
		"SELECT client_address FROM connmgr.connection_events WHERE username = 'stu1' AND event = 'connect' AND client_address IS NOT NULL ORDER BY event_time DESC LIMIT 1"),
	'127.0.0.1', 'connection_events shows the address, and stays readable');

# A NOLOGIN role is refused by PostgreSQL right after authentication: a
# failed login, never an opened connection.
$node->connect_fails('dbname=postgres user=ghost_nologin', 'a NOLOGIN role cannot log in',
	expected_stderr => qr/is not permitted to log in/);
$node->poll_query_until('postgres',
	"SELECT concat_ws('/', opened, closed, auth_failed) FROM connmgr.role_activity WHERE role_name = 'ghost_nologin'",
	'0/0/1')
  or die 'the NOLOGIN role was counted wrong';
pass('a NOLOGIN login counts as auth_failed only');
is($node->safe_psql('postgres',
		"SELECT string_agg(event, ',') FROM connmgr.connection_events WHERE username = 'ghost_nologin'"),
	'auth_failed', 'and its only event is auth_failed');

$node->stop;
done_testing();
