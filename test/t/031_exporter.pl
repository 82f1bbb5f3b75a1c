# monitoring/queries.yaml with the real Prometheus PostgreSQL exporter: a
# node with roles at known levels of their limits (critical, warning, ok, a
# group total), a refused login, a terminated connection and failed logins
# (one role name that is not valid UTF-8, one cut in the middle of a
# character); the exporter runs as a child process against the node's Unix
# socket and its /metrics must show the connmgr series with the expected
# values, and keep running.  Skipped when the exporter (Debian package
# prometheus-postgres-exporter) is not installed.
use strict;
use warnings;

use FindBin;
use HTTP::Tiny;
use IPC::Run;
use Time::HiRes qw(sleep time);

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use ConnmgrTest;

my $exporter_bin = find_program('prometheus-postgres-exporter');
plan skip_all =>
  'prometheus-postgres-exporter is not installed (Debian package prometheus-postgres-exporter)'
  unless defined $exporter_bin;

# The tree root from this file, wherever prove runs.
my $monitoring = "$FindBin::RealBin/../../monitoring";
my $queries_file = "$monitoring/queries.yaml";

# The exporter, killed at the end whatever happens (END blocks run before
# the cluster module's, which stops the node).
my $exporter;
END
{
	local $?;
	eval { $exporter->kill_kill } if defined $exporter;
}

# Whether the exporter still runs (IPC::Run notices an exit only on pumping).
sub exporter_running
{
	eval { $exporter->pump_nb };
	return $exporter->pumpable;
}

my $node = connmgr_node('exporter');
my $superuser = $node->safe_psql('postgres', 'SELECT current_user');
$node->safe_psql('postgres', q{
	CREATE ROLE student NOLOGIN;
	CREATE ROLE lab NOLOGIN;
	CREATE ROLE stu1 LOGIN IN ROLE student;
	CREATE ROLE stu2 LOGIN IN ROLE student, lab;
	CREATE ROLE ta1 LOGIN CONNECTION LIMIT 5;
	CREATE ROLE connmgr_exporter LOGIN IN ROLE pg_monitor;
	SELECT connmgr.set_connection_limit('student', per_member => 2);
	SELECT connmgr.set_connection_limit('lab', total => 10);
});

# stu1 at its limit of 2 (100%: critical), and one more login refused.
my @stu1 = open_sessions($node, 'stu1', 2);
$node->connect_fails('dbname=postgres user=stu1', 'stu1 is refused a third connection',
	expected_stderr => qr/too many connections for role "stu1"/);

# ta1 at 4 of its rolconnlimit of 5 (80%: warning).
my @ta1 = open_sessions($node, 'ta1', 4);

# stu2: one connection kept (50% of 2: ok; 1 of lab's total of 10), one
# terminated through connmgr.
my @stu2 = open_sessions($node, 'stu2', 2);
$node->safe_psql('postgres', "SELECT connmgr.killConnection($stu2[1]{pid})");
$node->poll_query_until('postgres',
	"SELECT current = 1 AND closed = 1 FROM connmgr.role_activity WHERE role_name = 'stu2'")
  or die 'the terminated connection of stu2 was not counted';

# Failed logins (trust authentication: for role names that do not exist).
# Role names are bytes: one is not UTF-8, one is cut by PostgreSQL at 63
# bytes in the middle of a two-byte letter.  All three are counted in the
# one row of names that are no role, labelled (no such role).
my $bad_name = "bad\xff";
my $long_name = "\xc3\xa9" x 32;
for my $name ('nobody', $bad_name, $long_name)
{
	$node->connect_fails("dbname=postgres user=$name",
		'login as role name ' . unpack('H*', $name) . ' fails');
}
my %failed_label = ('(no such role)' => 1);
$node->poll_query_until('postgres',
	'SELECT auth_failed = 3 AND rejected = 1 FROM connmgr.server_activity')
  or die 'the failed logins were not counted';

# The monitoring role of queries.yaml's instructions sees every row of the
# views: its queries give it the same role names as the superuser.
my %queries = read_queries($queries_file);
is_deeply([ sort keys %queries ], [qw(connmgr connmgr_role connmgr_server)],
	'queries.yaml has the namespaces connmgr, connmgr_role and connmgr_server');
for my $ns (qw(connmgr_role connmgr))
{
	my $names = "SELECT string_agg(role_name, ',' ORDER BY role_name) FROM ($queries{$ns}) q";
	my ($ret, $as_monitor, $err) = sql_as($node, 'connmgr_exporter', $names);
	is($ret, 0, "$ns query runs as connmgr_exporter") or diag($err);
	is($as_monitor, $node->safe_psql('postgres', $names),
		"$ns: connmgr_exporter (pg_monitor) sees the same roles as a superuser");
}
my ($ret, $out, $err) = sql_as($node, 'connmgr_exporter', $queries{connmgr_server});
is($ret, 0, 'connmgr_server query runs as connmgr_exporter') or diag($err);

# Start the exporter on a free loopback port.
my $port = PostgreSQL::Test::Cluster::get_free_port();
my $exporter_log = "$PostgreSQL::Test::Utils::log_path/031_exporter_postgres_exporter.log";
{
	local $ENV{DATA_SOURCE_NAME} = join(' ',
		'host=' . $node->host, 'port=' . $node->port,
		"user=$superuser", 'dbname=postgres', 'sslmode=disable');
	my @cmd = ($exporter_bin, "--extend.query-path=$queries_file",
		'--disable-default-metrics', '--disable-settings-metrics',
		"--web.listen-address=127.0.0.1:$port");
	note("starting: DATA_SOURCE_NAME='$ENV{DATA_SOURCE_NAME}' @cmd");
	$exporter = IPC::Run::start(\@cmd, '<', \undef, '>', $exporter_log, '2>&1');
}

# Straight to the loopback address, whatever proxy the environment names.
my $http = HTTP::Tiny->new(timeout => 10, proxy => undef, http_proxy => undef);
my $url = "http://127.0.0.1:$port/metrics";

# Scrape until $ok->(\%metrics) holds; bounded by the usual test timeout.
# Returns the last scrape (parsed) and its text.
sub scrape_until
{
	my ($what, $ok) = @_;
	my $deadline = time + $PostgreSQL::Test::Utils::timeout_default;
	my ($metrics, $text);
	while (time < $deadline)
	{
		die "the exporter exited:\n" . slurp_file($exporter_log)
		  unless exporter_running();
		my $res = $http->get($url);
		if ($res->{success})
		{
			$text = $res->{content};
			$metrics = parse_metrics($text);
			return ($metrics, $text) if $ok->($metrics);
		}
		sleep 0.25;
	}
	diag("exporter log:\n" . slurp_file($exporter_log));
	diag("last scrape:\n" . ($text // '(none)'));
	die "timed out waiting for $what at $url";
}

my ($m, $text) = scrape_until('connmgr series',
	sub { defined $_[0]{connmgr_server_current}{''} });
pass('the exporter serves connmgr series');

# Once the exporter's own connections are settled, the view's totals agree
# with one another: client connections = logins admitted minus closed (all
# within the hour), and = the sum over login roles.
($m, $text) = scrape_until('consistent totals', sub {
	my ($m) = @_;
	my $roles = $m->{connmgr_role_current} // {};
	my $sum = 0;
	$sum += $roles->{$_} for grep { $_ ne 'lab' } keys %$roles;
	my $current = $m->{connmgr_server_current}{''};
	return defined $current && $current == $sum
	  && $current == $m->{connmgr_server_net_growth_1h}{''};
});
pass('server current = sum over login roles = net growth over the hour');

# Exporter health.
is($m->{pg_up}{''}, 1, 'pg_up is 1');
is($m->{pg_exporter_last_scrape_error}{''}, 0, 'the last scrape had no error');
my ($load_error) = values %{ $m->{pg_exporter_user_queries_load_error} // {} };
is($load_error, 0, 'queries.yaml loaded without error');
my $server_label = $node->host . ':' . $node->port;
like($text, qr/^connmgr_server_current\{server="\Q$server_label\E"\} \d+$/m,
	'series carry the label server="<socket directory>:<port>"');

# Types from the usage: of each column.
like($text, qr/^# TYPE connmgr_role_opened counter$/m, 'connmgr_role_opened is a counter');
like($text, qr/^# TYPE connmgr_role_current gauge$/m, 'connmgr_role_current is a gauge');
like($text, qr/^# TYPE connmgr_role_status gauge$/m, 'connmgr_role_status is a gauge');
like($text, qr/^# TYPE connmgr_server_rejected counter$/m, 'connmgr_server_rejected is a counter');

# Per role: $expected{role}{metric suffix} = value.
my %expected = (
	stu1 => {
		current => 2, idle => 2, running => 0, idle_in_transaction => 0,
		opened => 2, closed => 0, rejected => 1, evicted => 0, terminated => 0,
		auth_failed => 0, effective_limit => 2, usage_pct => 100, status => 2 },
	ta1 => {
		current => 4, idle => 4, opened => 4, rejected => 0,
		effective_limit => 5, usage_pct => 80, status => 1 },
	stu2 => {
		current => 1, opened => 2, closed => 1, terminated => 1,
		effective_limit => 2, usage_pct => 50, status => 0 },
	lab => {
		current => 1, opened => 0,
		effective_limit => 10, usage_pct => 10, status => 0 },
	'(no such role)' => { auth_failed => 3, current => 0, opened => 0 });
for my $role (sort keys %expected)
{
	for my $metric (sort keys %{ $expected{$role} })
	{
		is($m->{"connmgr_role_$metric"}{$role}, $expected{$role}{$metric},
			"connmgr_role_${metric}{role_name=\"$role\"} $expected{$role}{$metric}");
	}
}

# Role names that are no role have counters but no limit series, and no
# label is outside ASCII (the exporter would exit on one that is not UTF-8).
for my $label (sort keys %failed_label)
{
	ok(!exists $m->{connmgr_role_status}{$label}
		  && !exists $m->{connmgr_role_effective_limit}{$label}
		  && !exists $m->{connmgr_role_usage_pct}{$label},
		"no limit series for role name $label");
}
ok(!grep({ /[^\x00-\x7f]/ } map { keys %$_ } values %$m),
	'no label value outside ASCII in this scrape');

# The server.
my $max_connections = $node->safe_psql('postgres', 'SHOW max_connections');
my $reserved = $node->safe_psql('postgres', 'SHOW superuser_reserved_connections');
my %server = (
	max_connections => $max_connections,
	reserved_connections => $reserved,
	available => $max_connections - $reserved - $m->{connmgr_server_current}{''},
	rejected => 1, auth_failed => 3, terminated => 1, evicted => 0, status => 0);
for my $metric (sort keys %server)
{
	is($m->{"connmgr_server_$metric"}{''}, $server{$metric},
		"connmgr_server_$metric $server{$metric}");
}
cmp_ok($m->{connmgr_server_current}{''}, '>=', 7,
	'connmgr_server_current counts the 7 sessions and the exporter\'s');
cmp_ok($m->{connmgr_server_opened}{''}, '>=', 8, 'connmgr_server_opened counts the logins');
cmp_ok($m->{connmgr_server_opens_per_minute_1m}{''}, '>', 0,
	'connmgr_server_opens_per_minute_1m sees the recent logins');
for my $metric (qw(closed usage_pct opens_per_minute_5m opens_per_minute_15m
	net_growth_15m stats_reset_timestamp_seconds))
{
	ok(defined $m->{"connmgr_server_$metric"}{''}, "connmgr_server_$metric is exported");
}

# Every metric the alerting rules use is exported.
my %used = map { $_ => 1 } slurp_file("$monitoring/alerts.yml") =~ /\b((?:connmgr|pg)_\w+)\b(?!\*)/g;
for my $metric (sort keys %used)
{
	ok(exists $m->{$metric}, "$metric (used by alerts.yml) is exported");
}

# Still alive after the scrapes (it exits on a label that is not UTF-8).
ok(exporter_running(), 'the exporter is still running');
$exporter->kill_kill;
close_sessions($node, @stu1, @ta1, $stu2[0]);
$node->stop;

done_testing();

# namespace => query, from the "query: |" blocks of a custom-queries file.
sub read_queries
{
	my ($file) = @_;
	my (%queries, $ns, $indent);
	for my $line (split /\n/, slurp_file($file))
	{
		if (defined $indent)
		{
			if ($line !~ /\S/ || ($line =~ /^(\s*)/ && length($1) > $indent))
			{
				$queries{$ns} .= "$line\n";
				next;
			}
			undef $indent;
		}
		if ($line =~ /^([A-Za-z_]\w*):\s*$/)
		{
			$ns = $1;
		}
		elsif (defined $ns && $line =~ /^(\s+)query: \|\s*$/)
		{
			$indent = length($1);
			$queries{$ns} = '';
		}
	}
	return %queries;
}

# The text format as {metric name}{role_name label, or ''} = value.
sub parse_metrics
{
	my ($text) = @_;
	my %metrics;
	for my $line (split /\n/, $text)
	{
		next if $line =~ /^#/ || $line !~ /\S/;
		my ($name, $labels, $value) =
		  $line =~ /^([A-Za-z_:][A-Za-z0-9_:]*)(?:\{(.*)\})? (\S+)$/
		  or next;
		my %label;
		while (($labels // '') =~ /(\w+)="((?:[^"\\]|\\.)*)"/g)
		{
			my ($key, $val) = ($1, $2);
			$val =~ s/\\(.)/$1 eq 'n' ? "\n" : $1/ge;
			$label{$key} = $val;
		}
		$metrics{$name}{ $label{role_name} // '' } = $value;
	}
	return \%metrics;
}
