# The connection administration API with real logins and real grants:
# connmgr.connections (stable connection ids equal to the log's %c, the
# connector, addresses and state, who sees which rows) and
# connmgr.kill_connections / kill_connection (stale ids refused, bare pids,
# one row per element in order with duplicates signalled once, dry runs
# that signal nothing, and the ClassDB permission matrix, applied to
# kill_connection, kill_connections' dry run, kill_client_connections (dry
# run and real) and the view).
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use ConnmgrTest;

my $node = connmgr_node('admin_api',
	"log_line_prefix = '%m [%c] '\nlog_connections = on\nlisten_addresses = '127.0.0.1'\n");
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

# The connection id of a backend, as the view shows it to a superuser.
sub conn_id
{
	my ($pid) = @_;
	return $node->safe_psql('postgres',
		"SELECT connection_id FROM connmgr.connections WHERE pid = $pid");
}

# The rows (connection_id|username|message) of kill_connections($array_sql,
# 'r', $dry) run by $caller in a new session.
sub kill_rows
{
	my ($caller, $array_sql, $dry) = @_;
	my (undef, $out) = sql_as($node, $caller,
		"SELECT * FROM connmgr.kill_connections($array_sql, 'r', " . ($dry ? 'true' : 'false') . ')');
	return $out;
}

# The "terminating connection <pid> of role" lines logged since $offset.
sub ending_lines
{
	my ($pid, $offset) = @_;
	return scalar grep { /terminating connection $pid of role/ }
	  split /\n/, slurp_file($node->logfile, $offset);
}

# An idle session of $user over TCP from 127.0.0.1; ->{pid}, ->{port} (its
# client port) and ->{id} (its connection id).
sub tcp_session
{
	my ($user) = @_;
	my $s = $node->background_psql('postgres', on_error_stop => 0,
		extra_params => [ '-d', $node->connstr('postgres') . " host=127.0.0.1 user=$user" ]);
	$s->{pid} = $s->query_safe('SELECT pg_backend_pid()');
	($s->{port}, $s->{id}) = split /\|/, $node->safe_psql('postgres',
		"SELECT client_port, connection_id FROM connmgr.connections WHERE pid = $s->{pid}");
	return $s;
}

# The rows (address|connection_id|username|message) of
# kill_client_connections($array_sql, dry_run => $dry) run by $caller in a
# new session.
sub kill_client_rows
{
	my ($caller, $array_sql, $dry) = @_;
	my (undef, $out) = sql_as($node, $caller,
		"SELECT * FROM connmgr.kill_client_connections($array_sql, dry_run => "
		  . ($dry ? 'true' : 'false') . ')');
	return $out;
}

sub is_gone
{
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	my ($pid, $name) = @_;
	ok(!backend_alive($node, $pid), $name);
}

sub is_alive
{
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	my ($pid, $name) = @_;
	ok(backend_alive($node, $pid), $name);
}

# 1. Ids are stable and equal the log's %c for the session.
my $s = open_session($node, 'stu1');
my $id = conn_id($s->{pid});
like($id, qr/^[0-9a-f]+\.[0-9a-f]+$/, 'a connection id is two hex numbers joined by a dot');
is(conn_id($s->{pid}), $id, 'the id is the same on a second read of the view');
is($node->safe_psql('postgres',
		"SELECT to_hex(floor(extract(epoch FROM backend_start))::bigint) || '.' || to_hex(pid) FROM pg_stat_activity WHERE pid = $s->{pid}"),
	$id, 'the id is the start second and pid of pg_stat_activity, in hex');
my %logged = map { $_ => 1 } grep { /\.(\w+)$/ && hex($1) == $s->{pid} }
  (slurp_file($node->logfile) =~ /\[([0-9a-f]+\.[0-9a-f]+)\]/g);
is_deeply([ keys %logged ], [$id], "the log's %c for the session's pid is its connection id");
ok($node->log_contains(qr/\[\Q$id\E\] LOG:  connection authorized: user=stu1/),
	'and the connection authorized line carries it');
close_sessions($node, $s);

# 6. The view's columns: TCP and Unix-socket connections, states, and an
# unprivileged role sees only its own rows.
my $tcp = $node->background_psql('postgres', on_error_stop => 0,
	extra_params => [ '-d', $node->connstr('postgres') . ' host=127.0.0.1 user=stu1 application_name=tcpapp' ]);
my $tcp_pid = $tcp->{pid} = $tcp->query_safe('SELECT pg_backend_pid()');
my $unix = open_session($node, 'stu2', app => 'unixapp');
my $cols = 'username, database, application_name, connector, client_address, client_port > 0, server_address, server_port, ssl, state';
is($node->safe_psql('postgres', "SELECT $cols FROM connmgr.connections WHERE pid = $tcp_pid"),
	'stu1|postgres|tcpapp|tcp|127.0.0.1|t|127.0.0.1|' . $node->port . '|f|idle',
	'a TCP connection: tcp, both addresses and ports, idle');
is($node->safe_psql('postgres', "SELECT $cols FROM connmgr.connections WHERE pid = $unix->{pid}"),
	'stu2|postgres|unixapp|unix|||||f|idle',
	'a Unix-socket connection: unix, no addresses');
is($node->safe_psql('postgres',
		"SELECT state, connect_time = (SELECT backend_start FROM pg_stat_activity WHERE pid = pg_backend_pid()) FROM connmgr.connections WHERE pid = pg_backend_pid()"),
	'running|t', 'the querying session is running, connect_time is its backend_start');
my $own = open_session($node, 'stu1');
is($own->query_safe("SELECT string_agg(pid::text, ',' ORDER BY pid) FROM connmgr.connections"),
	join(',', sort { $a <=> $b } ($tcp_pid, $own->{pid})),
	'stu1 sees exactly its own two connections');
close_sessions($node, $tcp, $unix, $own);

# 2. A stale id (right pid, wrong start second) is refused; the real id and
# a bare pid work.
$s = open_session($node, 'stu1');
$id = conn_id($s->{pid});
my ($secs, $hexpid) = split /\./, $id;
my $stale = sprintf('%x.%s', hex($secs) - 1, $hexpid);
is(kill_rows('instructor', "ARRAY['$stale']"), "$stale||No connection found with this id",
	'a stale id is not found');
is_alive($s->{pid}, 'and the session survives');
is(kill_rows('instructor', "ARRAY['$id']"), "$id|stu1|Connection found", 'the real id ends it');
is_gone($s->{pid}, 'the session is gone');
$s->quit;
$s = open_session($node, 'stu1');
my (undef, $out) = sql_as($node, 'instructor', "SELECT * FROM connmgr.kill_connection('$s->{pid}')");
is($out, "$s->{pid}|stu1|Connection found", 'kill_connection by a bare pid ends it');
is_gone($s->{pid}, 'that session is gone');
$s->quit;

# 3. Per-item rows, in order, for a mixed list from an instructor.
my $inst = open_session($node, 'instructor');
my $own_id = $inst->query_safe('SELECT connection_id FROM connmgr.connections WHERE pid = pg_backend_pid()');
my $stu = open_session($node, 'stu1');
my $su = open_session($node, 'dba');
my ($stu_id, $su_id) = (conn_id($stu->{pid}), conn_id($su->{pid}));
my $offset = -s $node->logfile;
is($inst->query_safe(
		"SELECT * FROM connmgr.kill_connections(ARRAY['$own_id', 'ffff.1', '$su_id', '$stu_id', 'garbage', '$stu_id'])"),
	join("\n", "$own_id|instructor|Cannot terminate your own connection",
		'ffff.1||No connection found with this id',
		"$su_id||No connection found with this id",
		"$stu_id|stu1|Connection found",
		'garbage||Invalid connection id',
		"$stu_id|stu1|Connection found"),
	'one row per element, in order, duplicates included');
is_gone($stu->{pid}, "the student's session is gone");
is_alive($su->{pid}, "the superuser's session survives");
is(ending_lines($stu->{pid}, $offset), 1, 'the duplicate was signalled once');
my $kept = open_session($node, 'stu1');
my $kept_id = conn_id($kept->{pid});
is(kill_rows('watcher', "ARRAY['$kept_id']"), "$kept_id|stu1|Permission denied",
	'pg_read_all_stats sees a student but may not end it');
is_alive($kept->{pid}, 'the student survives the watcher');
$stu->quit;

# 4. Dry runs signal nothing.
my $other = open_session($node, 'stu2');
my $av = $node->safe_psql('postgres',
	"SELECT pid FROM pg_stat_activity WHERE backend_type = 'autovacuum launcher'");
$offset = -s $node->logfile;
is($inst->query_safe(
		"SELECT * FROM connmgr.kill_connections(ARRAY['$kept_id', '$other->{pid}', '$su_id', '$own_id', 'garbage', NULL], 'r', true)"),
	join("\n", "$kept_id|stu1|Would terminate",
		"$other->{pid}|stu2|Would terminate",
		"$su_id||No connection found with this id",
		"$own_id|instructor|Cannot terminate your own connection",
		'garbage||Invalid connection id',
		'||Invalid connection id'),
	'an instructor\'s dry run: would terminate, with the refusals');
is(kill_rows('watcher', "ARRAY['$kept_id', '$su_id']", 1),
	"$kept_id|stu1|Permission denied\n$su_id|dba|Permission denied",
	'a watcher\'s dry run is denied');
is(kill_rows('dba', "ARRAY['$av', '$su_id']", 1),
	"$av||Not a client connection\n$su_id|dba|Would terminate",
	'a superuser\'s dry run: the autovacuum launcher is not a client connection');
is_alive($_, "session $_ survives the dry runs") for ($kept->{pid}, $other->{pid}, $su->{pid});
is(ending_lines('\d+', $offset), 0, 'no termination was logged');
close_sessions($node, $inst, $kept, $other, $su);

# 5. The permission matrix (ConnmgrTest's, as in 001): 't' ends it,
# 'f-hidden' does not see it, 'f-denied' sees it but may not end it.  For
# each pair: the view, a dry run of kill_connections and kill_connection on
# a Unix-socket session; then kill_client_connections by the client
# address:port of a TCP session of the target, dry run and real (the
# caller's own session is a Unix-socket one, never from that address).
my %matrix = permission_matrix();
my %message = (
	't' => 'Connection found',
	'f-hidden' => 'No connection found with this id',
	'f-denied' => 'Permission denied');
my %would = (%message, 't' => 'Would terminate');
for my $caller (sort keys %matrix)
{
	for my $target (sort keys %{ $matrix{$caller} })
	{
		my $expect = $matrix{$caller}{$target};
		my $victim = open_session($node, $target);
		my $vid = conn_id($victim->{pid});
		my (undef, $seen) = sql_as($node, $caller,
			"SELECT count(*) FROM connmgr.connections WHERE connection_id = '$vid'");
		is($seen, $expect eq 'f-hidden' ? '0' : '1',
			"$caller " . ($expect eq 'f-hidden' ? 'does not see' : 'sees') . " $target");
		my $user = $expect eq 'f-hidden' ? '' : $target;
		is(kill_rows($caller, "ARRAY['$vid']", 1), "$vid|$user|$would{$expect}",
			"kill_connections dry run by $caller of $target: $would{$expect}");
		is_alive($victim->{pid}, "$target\'s session survives the dry run");
		my (undef, $msg) = sql_as($node, $caller,
			"SELECT message FROM connmgr.kill_connection('$vid')");
		is($msg, $message{$expect}, "kill_connection by $caller of $target: $message{$expect}");
		if ($expect eq 't')
		{
			is_gone($victim->{pid}, "$target\'s session is gone");
			$victim->quit;
		}
		else
		{
			is_alive($victim->{pid}, "$target\'s session survives $caller");
			close_sessions($node, $victim);
		}

		my $tv = tcp_session($target);
		my $address = "127.0.0.1:$tv->{port}";
		my $row = sub {
			my ($text) = @_;
			return $expect eq 'f-hidden'
			  ? "$address|||No connection found from this address"
			  : "$address|$tv->{id}|$target|$text";
		};
		is(kill_client_rows($caller, "ARRAY['$address']", 1), $row->($would{$expect}),
			"kill_client_connections dry run by $caller of $target over TCP: "
			  . ($expect eq 'f-hidden' ? 'no connection found' : $would{$expect}));
		is_alive($tv->{pid}, "$target\'s TCP session survives the dry run");
		is(kill_client_rows($caller, "ARRAY['$address']", 0), $row->($message{$expect}),
			"kill_client_connections by $caller of $target over TCP: "
			  . ($expect eq 'f-hidden' ? 'no connection found' : $message{$expect}));
		if ($expect eq 't')
		{
			is_gone($tv->{pid}, "$target\'s TCP session is gone");
			$tv->quit;
		}
		else
		{
			is_alive($tv->{pid}, "$target\'s TCP session survives $caller");
			close_sessions($node, $tv);
		}
	}
}

$node->stop;
done_testing();
