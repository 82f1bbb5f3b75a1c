# kill_client_connections() and what a victim is told:
# - every address form (address, address:port, [v6]:port, v6, CIDR) picks
#   exactly the TCP connections from there, never a Unix-socket one; dry
#   runs end nothing; non-addresses, signed or blank ports, a CIDR with a
#   port and NULL are 'Invalid address';
# - a million addresses take memory for the addresses and the connections
#   found, not for addresses times max_connections;
# - only connections the caller may see are listed, and the caller's own
#   is never ended;
# - the client of an ended connection gets a DETAIL naming who ended it and
#   why (kill_connection, killConnection, kill_client_connections,
#   eviction), unlike after a plain pg_terminate_backend();
# - a client library (psycopg2) gets that DETAIL in its error message
#   (psycopg2 keeps only libpq's last error, so its pgcode and diag do not
#   carry the FATAL's fields; its message text does);
# - the server log names actor, connection id and reason, once per victim.
use strict;
use warnings;

use FindBin;
use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use ConnmgrTest;

my $node = connmgr_node('addr',
	"listen_addresses = '127.0.0.1,::1'\nlog_error_verbosity = verbose\nconnmgr.evict_min_idle = '1s'\n");
$node->safe_psql('postgres', q{
	CREATE ROLE student NOLOGIN;
	CREATE ROLE stu1 LOGIN IN ROLE student;
	CREATE ROLE stu2 LOGIN IN ROLE student;
	CREATE ROLE instructor LOGIN;
	GRANT student TO instructor WITH ADMIN OPTION;
	CREATE ROLE monitor LOGIN IN ROLE pg_read_all_stats;
	CREATE ROLE lab NOLOGIN;
	CREATE ROLE lab1 LOGIN IN ROLE lab;
	SELECT connmgr.set_connection_limit('lab', per_member => 1, on_limit => 'evict_idle');
});
my $su = $node->safe_psql('postgres', 'SELECT current_user');

# An idle psql session of $user over TCP from $host, named $name in result
# rows; knows its pid, client port and connection id.
sub tcp_session
{
	my ($name, $user, $host) = @_;
	my $s = $node->background_psql('postgres', on_error_stop => 0,
		extra_params => [ '-d', $node->connstr('postgres') . " host=$host user=$user" ]);
	$s->{name} = $name;
	$s->{pid} = $s->query_safe('SELECT pg_backend_pid()');
	($s->{port}, $s->{id}) = split /\|/, $node->safe_psql('postgres',
		"SELECT client_port, connection_id FROM connmgr.connections WHERE pid = $s->{pid}");
	return $s;
}

# Result rows (address|connection|username|message), sorted, with the
# sessions' connection ids replaced by their names.
sub named_rows
{
	my ($out, @sessions) = @_;
	$out =~ s/\Q$_->{id}\E/$_->{name}/g for @sessions;
	return join("\n", sort split /\n/, $out);
}

my $kill = 'SELECT address, connection_id, username, message FROM connmgr.kill_client_connections';

sub kill_rows
{
	my ($args, @sessions) = @_;
	return named_rows($node->safe_psql('postgres', "$kill($args)"), @sessions);
}

# Are all the sessions alive ($expect true) or all gone?
sub alive
{
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	my ($test_name, $expect, @sessions) = @_;
	is(join(',', map { backend_alive($node, $_->{pid}) ? 1 : 0 } @sessions),
		join(',', (($expect ? 1 : 0) x @sessions)), $test_name);
}

# The client of $s was told "administrator command" with exactly $detail.
sub told
{
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	my ($s, $detail, $test_name) = @_;
	like(last_words($s),
		qr/FATAL:  terminating connection due to administrator command\nDETAIL:  \Q$detail\E\n/,
		$test_name);
}

# 1. Every address form, dry run first.
my $va = tcp_session('A', 'stu1', '127.0.0.1');
my $vb = tcp_session('B', 'stu2', '127.0.0.1');
my $vc = tcp_session('C', 'stu1', '::1');
my $u = open_session($node, 'stu1');
is($node->safe_psql('postgres', "SELECT client_addr FROM pg_stat_activity WHERE pid = $vc->{pid}"),
	'::1', 'a session over IPv6 loopback');
my $forms = "'127.0.0.1', '127.0.0.1:$va->{port}', '[::1]:$vc->{port}', '::1', "
  . "'127.0.0.0/8', '::1/128', '0.0.0.0/0', '::/0', '10.9.8.7', "
  . "'nonsense', '300.1.1.1', '[::1', '127.0.0.1:0', NULL, "
  . "'127.0.0.1:+$va->{port}', '127.0.0.1:-1', '127.0.0.1:', '127.0.0.1: $va->{port}', "
  . "'[::1]: $vc->{port}', '127.0.0.0/8:$va->{port}', '[::1/128]:$vc->{port}'";
my $expected = named_rows(join("\n",
	'127.0.0.1|A|stu1|Would terminate', '127.0.0.1|B|stu2|Would terminate',
	"127.0.0.1:$va->{port}|A|stu1|Would terminate",
	"[::1]:$vc->{port}|C|stu1|Would terminate", '::1|C|stu1|Would terminate',
	'127.0.0.0/8|A|stu1|Would terminate', '127.0.0.0/8|B|stu2|Would terminate',
	'::1/128|C|stu1|Would terminate',
	'0.0.0.0/0|A|stu1|Would terminate', '0.0.0.0/0|B|stu2|Would terminate',
	'::/0|C|stu1|Would terminate',
	'10.9.8.7|||No connection found from this address',
	'nonsense|||Invalid address', '300.1.1.1|||Invalid address',
	'[::1|||Invalid address', '127.0.0.1:0|||Invalid address', '|||Invalid address',
	"127.0.0.1:+$va->{port}|||Invalid address", '127.0.0.1:-1|||Invalid address',
	'127.0.0.1:|||Invalid address', "127.0.0.1: $va->{port}|||Invalid address",
	"[::1]: $vc->{port}|||Invalid address", "127.0.0.0/8:$va->{port}|||Invalid address",
	"[::1/128]:$vc->{port}|||Invalid address"));
is(kill_rows("ARRAY[$forms], dry_run => true", $va, $vb, $vc), $expected,
	'dry run: each address form matches exactly its TCP sessions');
alive('dry run: every session survives', 1, $va, $vb, $vc, $u);

is(kill_rows("ARRAY['127.0.0.1:$va->{port}', '[::1]:$vc->{port}']", $va, $vc),
	"127.0.0.1:$va->{port}|A|stu1|Connection found\n[::1]:$vc->{port}|C|stu1|Connection found",
	'address:port and [v6]:port end just those sessions');
alive('they are gone', 0, $va, $vc);
alive('the other sessions survive', 1, $vb, $u);
last_words($_) for $va, $vc;

# Overlapping elements: one kill per connection, logged once.
my $va2 = tcp_session('A2', 'stu1', '127.0.0.1');
my $vc2 = tcp_session('C2', 'stu1', '::1');
my $offset = -s $node->logfile;
is(kill_rows("ARRAY['127.0.0.0/8', '::1/128', '127.0.0.1:$va2->{port}']", $va2, $vb, $vc2),
	named_rows(join("\n",
		'127.0.0.0/8|A2|stu1|Connection found', '127.0.0.0/8|B|stu2|Connection found',
		'::1/128|C2|stu1|Connection found',
		"127.0.0.1:$va2->{port}|A2|stu1|Connection found")),
	'CIDRs end the sessions in the range, a repeated one is found twice');
alive('the sessions in the ranges are gone', 0, $va2, $vb, $vc2);
my $times = () = slurp_file($node->logfile, $offset) =~ /terminating connection $va2->{pid} of role/g;
is($times, 1, 'a connection matched by two elements is ended and logged once');
last_words($_) for $va2, $vb, $vc2;

my $va3 = tcp_session('A3', 'stu1', '127.0.0.1');
my $vc3 = tcp_session('C3', 'stu1', '::1');
is(kill_rows("ARRAY['127.0.0.1', '::1'], 'lab closed!'", $va3, $vc3),
	"127.0.0.1|A3|stu1|Connection found\n::1|C3|stu1|Connection found",
	'a bare address ends all its sessions');
told($va3, qq{Your connection was ended by role "$su": lab closed!},
	'kill_client_connections: the victim is told who and why, no extra full stop');
last_words($vc3);
is(kill_rows("ARRAY['127.0.0.1', '::1', '0.0.0.0/0']"),
	"0.0.0.0/0|||No connection found from this address\n"
	  . "127.0.0.1|||No connection found from this address\n"
	  . "::1|||No connection found from this address",
	'nothing left from the loopback: the Unix-socket session never matches');
alive('the Unix-socket session survives it all', 1, $u);
$u->quit;

# A million addresses, one of which has a session: its row, and a row for
# each of the others, within a few hundred megabytes of the backend's
# memory (its peak resident size, where /proc tells it).
my $va4 = tcp_session('A4', 'stu1', '127.0.0.1');
my ($mret, $mout, $merr) = sql_as($node, undef, q{
	SELECT string_agg(concat_ws('|', address, connection_id, message, n), ',' ORDER BY n)
	  FROM (SELECT address, connection_id, message, count(*) AS n
	          FROM connmgr.kill_client_connections(ARRAY(
	                 SELECT CASE WHEN i = 500000 THEN '127.0.0.1' ELSE '10.9.8.7' END
	                   FROM generate_series(1, 1000000) i ORDER BY i))
	         GROUP BY 1, 2, 3) r;
	SELECT substring(pg_read_file('/proc/self/status') FROM 'VmHWM:\s*(\d+) kB')
	 WHERE (pg_stat_file('/proc/self/status', true)).modification IS NOT NULL;
});
my ($rows, $peak_kb) = split /\n/, $mout // '';
is(named_rows($rows // '', $va4),
	'127.0.0.1|A4|Connection found|1,10.9.8.7|No connection found from this address|999999',
	'a million addresses: the one session is found, the others have a row each')
  or diag($merr);
alive('and the session is gone', 0, $va4);
last_words($va4);
SKIP:
{
	skip 'no /proc/self/status to read the peak memory from', 1 unless $mret == 0 && $peak_kb;
	cmp_ok($peak_kb, '<', 512 * 1024, "the backend's peak memory stays below 512 MB");
}

# 2. Permissions: a student sees and ends only its own sessions, never the
# one it calls from; a pg_read_all_stats member sees all, may end none.
my $other = tcp_session('X', 'stu2', '127.0.0.1');
my $mine = tcp_session('Y', 'stu1', '127.0.0.1');
my $caller = tcp_session('Z', 'stu1', '127.0.0.1');
is(named_rows(scalar $caller->query("$kill(ARRAY['127.0.0.1'])"), $mine, $caller),
	"127.0.0.1|Y|stu1|Connection found\n127.0.0.1|Z|stu1|Cannot terminate your own connection",
	'a student ends its other session, not its own, and does not see the other user\'s');
alive('the student\'s other session is gone', 0, $mine);
alive('the other user\'s and the caller\'s sessions survive', 1, $other, $caller);
my (undef, $out) = sql_as($node, 'monitor', "$kill(ARRAY['127.0.0.1'])");
is(named_rows($out, $other, $caller),
	"127.0.0.1|X|stu2|Permission denied\n127.0.0.1|Z|stu1|Permission denied",
	'seeing is not ending: Permission denied');
alive('both survive', 1, $other, $caller);
last_words($mine);
$_->quit for $other, $caller;

# 3. What the victim is told, and 5. what the log says.
my $v = tcp_session('V', 'stu1', '127.0.0.1');
$offset = -s $node->logfile;
(undef, $out) = sql_as($node, 'instructor',
	"SELECT message FROM connmgr.kill_connection('$v->{id}', 'exam starts, please reconnect')");
is($out, 'Connection found', 'the instructor kills by connection id with a reason');
told($v, 'Your connection was ended by role "instructor": exam starts, please reconnect.',
	'kill_connection with a reason: the victim is told who and why');
ok( $node->log_contains(
		qr/LOG:  00000: terminating connection $v->{pid} of role "stu1" at the request of role "instructor"\n.*DETAIL:  The connection \Q$v->{id}\E is to database "postgres" from client 127\.0\.0\.1 with application name "[^"]*"\. The request came from process \d+, client \[local\]\. The reason given: exam starts, please reconnect\./,
		$offset),
	'the log names the actor, the connection id and the reason');
ok( $node->log_contains(
		qr/FATAL:  57P01: terminating connection due to administrator command\n.*DETAIL:  Your connection was ended by role "instructor": exam starts, please reconnect\./,
		$offset),
	'the victim\'s FATAL in the log has the same DETAIL');

$v = tcp_session('V', 'stu1', '127.0.0.1');
$offset = -s $node->logfile;
sql_as($node, 'instructor', "SELECT * FROM connmgr.kill_connection('$v->{id}')");
told($v, 'Your connection was ended by role "instructor".', 'kill_connection without a reason');
ok( $node->log_contains(
		qr/terminating connection $v->{pid} of role "stu1" at the request of role "instructor"\n.*DETAIL:  The connection \Q$v->{id}\E .* No reason was given\./,
		$offset),
	'the log says no reason was given');

$v = tcp_session('V', 'stu1', '127.0.0.1');
sql_as($node, 'instructor', "SELECT connmgr.killConnection($v->{pid})");
told($v, 'Your connection was ended by role "instructor".', 'killConnection (no reason)');

$v = tcp_session('V', 'lab1', '127.0.0.1');
$node->poll_query_until('postgres',
	"SELECT now() - state_change > interval '1.2s' FROM pg_stat_activity WHERE pid = $v->{pid}")
  or die 'session did not become idle';
$node->connect_ok('dbname=postgres user=lab1', 'a login at the limit evicts the idle session');
told($v, 'Your connection was idle, so it was ended to admit a new login of role "lab1" at its connection limit.',
	'the evicted client is told why');

$v = tcp_session('V', 'stu1', '127.0.0.1');
$node->safe_psql('postgres', "SELECT pg_terminate_backend($v->{pid}, 60000)");
my $words = last_words($v);
like($words, qr/FATAL:  terminating connection due to administrator command\n/,
	'pg_terminate_backend: PostgreSQL\'s FATAL');
unlike($words, qr/DETAIL/, 'and no DETAIL');

# 4. A client library's view.
SKIP:
{
	skip 'python3 with psycopg2 is not available (python3 -c "import psycopg2" fails)', 3
	  unless eval { IPC::Run::run([ 'python3', '-c', 'import psycopg2' ], '>', \my $o, '2>', \my $e) };
	my ($in, $pyout, $pyerr) = ('', '', '');
	my $py = IPC::Run::start(
		[ 'python3', "$FindBin::RealBin/../clients/victim.py",
		  $node->connstr('postgres') . ' host=::1 user=stu1' ],
		'<', \$in, '>', \$pyout, '2>', \$pyerr,
		IPC::Run::timeout($PostgreSQL::Test::Utils::timeout_default));
	$py->pump until $pyout =~ /^(\d+)\n/;
	my $pid = $1;
	my (undef, $res) = sql_as($node, 'instructor',
		"SELECT message FROM connmgr.kill_connection('$pid', 'server maintenance')");
	is($res, 'Connection found', 'the instructor kills the psycopg2 client by pid');
	$in .= "go\n";
	$py->finish;
	like($pyout, qr/^error: (OperationalError|AdminShutdown)$/m, 'psycopg2 raises an OperationalError')
	  or diag("stdout:\n$pyout\nstderr:\n$pyerr");
	like($pyout,
		qr/^text: FATAL:  terminating connection due to administrator command\ntext: DETAIL:  Your connection was ended by role "instructor": server maintenance\.$/m,
		'whose message has the FATAL and the DETAIL with actor and reason');
}

$node->stop;
done_testing();
