# What a kill's result means: true only once the connection is gone (so the
# user can log in again at once), false after connmgr.terminate_timeout,
# and connections are found on every database of the cluster.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use ConnmgrTest;

my $node = connmgr_node('kill_semantics', "listen_addresses = '127.0.0.1'\n");
$node->safe_psql('postgres', q{
	CREATE ROLE student NOLOGIN;
	CREATE ROLE stu1 LOGIN IN ROLE student;
	CREATE ROLE instructor LOGIN;
	GRANT student TO instructor WITH ADMIN OPTION;
	CREATE DATABASE other;
});

# One row per session, across two databases, oldest first.
my $a = open_session($node, 'stu1', db => 'postgres', app => 'first');
my $b = open_session($node, 'stu1', db => 'other', app => 'second');
my (undef, $out) = sql_as($node, 'instructor',
	"SELECT applicationName, pid FROM connmgr.listUserConnections('stu1')");
is($out, "first|$a->{pid}\nsecond|$b->{pid}",
	'both sessions are listed, from both databases, oldest first');
(undef, $out) = sql_as($node, 'instructor',
	"SELECT count(*) FILTER (WHERE success) FROM connmgr.killUserConnections('stu1')");
is($out, '2', 'killUserConnections ends the sessions in both databases');
ok(!backend_alive($node, $a->{pid}) && !backend_alive($node, $b->{pid}),
	'both are gone');
$_->quit for ($a, $b);

# Over TCP, clientAddress is the client's address, and the log names the
# requester's client too.
my $tcp = "host=127.0.0.1 port=" . $node->port . " dbname=postgres";
my $remote = $node->background_psql('postgres', on_error_stop => 0,
	extra_params => [ '-d', "$tcp user=stu1" ]);
my $remote_pid = $remote->query_safe('SELECT pg_backend_pid()');
(undef, $out) = sql_as($node, 'instructor',
	"SELECT clientAddress FROM connmgr.listUserConnections('stu1')");
is($out, '127.0.0.1', 'clientAddress is set for a TCP connection');
my $log_offset = -s $node->logfile;
my ($tcp_ret, $tcp_out, $tcp_err);
my $killer = $node->background_psql('postgres', on_error_stop => 0,
	extra_params => [ '-d', "$tcp user=instructor" ]);
is($killer->query_safe("SELECT connmgr.killConnection($remote_pid)"), 't',
	'the instructor kills it over TCP');
ok( $node->log_contains(
		qr/from client 127\.0\.0\.1 with application name .*The request came from process \d+, client 127\.0\.0\.1\./,
		$log_offset),
	'the log names both clients');
$killer->quit;
$remote->quit;

# A student at PostgreSQL's own connection limit can log in again as soon
# as the kill has returned true.
$node->safe_psql('postgres', 'ALTER ROLE stu1 CONNECTION LIMIT 1');
my $stray = open_session($node, 'stu1');
$node->connect_fails('dbname=postgres user=stu1',
	'the student is at the limit',
	expected_stderr => qr/too many connections for role "stu1"/);
(undef, $out) = sql_as($node, 'instructor',
	"SELECT connmgr.killConnection($stray->{pid})");
is($out, 't', 'the instructor kills the stray session');
$node->connect_ok('dbname=postgres user=stu1',
	'the killed student can reconnect at once');
$stray->quit;
$node->safe_psql('postgres', 'ALTER ROLE stu1 CONNECTION LIMIT -1');

# A backend that cannot act on SIGTERM in time (stopped with SIGSTOP here)
# gives false and a warning after connmgr.terminate_timeout.
my $frozen = open_session($node, 'stu1');
kill 'STOP', $frozen->{pid};
my ($ret, $err);
($ret, $out, $err) = sql_as($node, 'instructor',
	"SET connmgr.terminate_timeout = '200ms'; SELECT connmgr.killConnection($frozen->{pid})");
is($out, 'f', 'a connection that does not exit in time gives false');
like($err, qr/WARNING:  55006: connection $frozen->{pid} did not exit within 200 ms/,
	'with a warning that names the timeout');
kill 'CONT', $frozen->{pid};
$node->poll_query_until('postgres',
	"SELECT count(*) = 0 FROM pg_stat_activity WHERE pid = $frozen->{pid}")
  or die 'the resumed backend did not exit';
pass('the resumed backend then acts on the pending termination');
$frozen->quit;

# Bad values for the GUC are refused.
($ret, $out, $err) = sql_as($node, 'instructor',
	"SET connmgr.terminate_timeout = -1");
like($err, qr/22023: -1 ms is outside the valid range for parameter "connmgr.terminate_timeout"/,
	'a negative terminate_timeout is refused');

$node->stop;
done_testing();
