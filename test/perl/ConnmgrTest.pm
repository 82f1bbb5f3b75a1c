# Helpers shared by connmgr's TAP tests: a node with connmgr preloaded,
# idle sessions of a given role, and checks on whether a backend still runs.
package ConnmgrTest;

use strict;
use warnings;

use Exporter 'import';
use File::Spec;
use IPC::Run;
use Time::HiRes;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

our @EXPORT = qw(connmgr_node open_session open_sessions close_sessions
  backend_alive sql_as wait_for_count gated_logins wait_idle start_busy
  poll_session
  last_words find_program permission_matrix);

# The same query output from a background session on every release's test
# harness.  PostgreSQL 16.2's (a BackgroundPsql that does not number its
# queries yet) returns the output with the newline that ends it, and for a
# query that prints nothing, its own separator line; later harnesses (17's,
# Debian's 15.20) remove both.  With such a harness, remove them here.
{
	no warnings 'redefine';
	my $query = \&PostgreSQL::Test::BackgroundPsql::query;
	*PostgreSQL::Test::BackgroundPsql::query = sub {
		my ($session) = @_;
		my ($output, $ret) = $query->(@_);
		if (!exists $session->{query_cnt})
		{
			$output =~ s/\Abackground_psql: QUERY_SEPARATOR\n?\z//;
			$output =~ s/\n\z//;
		}
		return wantarray ? ($output, $ret) : $output;
	};
}

# A started node with connmgr preloaded and the extension created in
# database "postgres".  Extra postgresql.conf lines and options for
# PostgreSQL::Test::Cluster::init (e.g. allows_streaming) may be given.
sub connmgr_node
{
	my ($name, $extra_conf, %init) = @_;
	my $node = PostgreSQL::Test::Cluster->new($name);
	$node->init(%init);
	$node->append_conf('postgresql.conf',
		"shared_preload_libraries = 'connmgr'\n" . ($extra_conf // ''));
	$node->start;
	$node->safe_psql('postgres', 'CREATE EXTENSION connmgr');
	return $node;
}

# An idle session of $user (in database $opts{db}, default "postgres",
# with application_name $opts{app}); ->{pid} is its backend pid.
sub open_session
{
	my ($node, $user, %opts) = @_;
	local $ENV{PGAPPNAME} = $opts{app} // 'connmgr_test';
	my $session = $node->background_psql(
		$opts{db} // 'postgres',
		on_error_stop => 0,
		extra_params => [ '-U', $user ],
		(defined $opts{replication} ? (replication => $opts{replication}) : ()));
	$session->{pid} =
	  $opts{replication}
	  ? $node->safe_psql('postgres',
		"SELECT max(pid) FROM pg_stat_activity WHERE usename = '$user' AND backend_type = 'walsender'")
	  : $session->query_safe('SELECT pg_backend_pid()');
	return $session;
}

# $n idle sessions of $user; dies if any cannot log in.
sub open_sessions
{
	my ($node, $user, $n, %opts) = @_;
	return map { open_session($node, $user, %opts) } 1 .. $n;
}

# Quit the sessions and wait until their backends have exited, so that
# their connections no longer count anywhere.
sub close_sessions
{
	my ($node, @sessions) = @_;
	return unless @sessions;
	$_->quit for @sessions;
	my $pids = join(',', map { $_->{pid} } @sessions);
	$node->poll_query_until('postgres',
		"SELECT count(*) = 0 FROM pg_stat_activity WHERE pid IN ($pids)")
	  or die "sessions $pids did not exit";
}

# Wait until connmgr counts $n connections for $role and its members (the
# role must have a policy): a backend gives its slot back as it exits,
# which can be a moment after its client has seen the end.
sub wait_for_count
{
	my ($node, $role, $n) = @_;
	$node->poll_query_until('postgres',
		"SELECT total_connections FROM connmgr.connection_limits WHERE role_name = '$role'",
		$n)
	  or die "connmgr did not settle at $n connections for $role";
}

# Run $sql in the background session $session until it returns $expected
# (or time runs out); returns the last result.  For polling from one
# session that stays connected, e.g. to watch the event log without
# logging events of its own.
sub poll_session
{
	my ($session, $sql, $expected) = @_;
	my $got;
	for (1 .. 10 * $PostgreSQL::Test::Utils::timeout_default)
	{
		$got = $session->query_safe($sql);
		last if $got eq $expected;
		Time::HiRes::usleep(100_000);
	}
	return $got;
}

# $n logins of $user at the same moment: each runs psql, logs in and waits
# for a shared advisory lock $lock that a gate session holds exclusively.
# Returns once all $n are logged in and waiting, as ($gate, \@runs, \@err):
# release with $gate->query_safe("SELECT pg_advisory_unlock($lock)"), then
# $_->finish for @$runs; ->result(0) is each psql's exit code.
sub gated_logins
{
	my ($node, $user, $n, $lock) = @_;
	my $gate = $node->background_psql('postgres');
	$gate->query_safe("SELECT pg_advisory_lock($lock)");
	my (@runs, @err);
	for my $i (0 .. $n - 1)
	{
		push @runs,
		  IPC::Run::start(
			[ $node->installed_command('psql'), '-XAtq', '-d',
			  $node->connstr('postgres') . " user=$user",
			  '-c', "SELECT pg_advisory_lock_shared($lock)" ],
			'<', \undef, '>', \my $out, '2>', \$err[$i]);
	}
	$node->poll_query_until('postgres',
		"SELECT count(*) = $n FROM pg_locks WHERE locktype = 'advisory' AND NOT granted")
	  or die 'the concurrent logins did not get in';
	return ($gate, \@runs, \@err);
}

# Wait until the session has been idle for 1.2 s (longer than the
# connmgr.evict_min_idle of 1 s the eviction tests use).
sub wait_idle
{
	my ($node, $session) = @_;
	$node->poll_query_until('postgres',
		"SELECT now() - state_change > interval '1.2s' FROM pg_stat_activity WHERE pid = $session->{pid}")
	  or die "session $session->{pid} did not become idle";
}

# Start a query of $seconds (default 300) in the session and wait until it
# runs.
sub start_busy
{
	my ($node, $session, $seconds) = @_;
	$session->{stdin} .= 'SELECT pg_sleep(' . ($seconds // 300) . ");\n";
	$session->{run}->pump_nb;
	$node->poll_query_until('postgres',
		"SELECT state = 'active' FROM pg_stat_activity WHERE pid = $session->{pid}")
	  or die "session $session->{pid} did not become busy";
}

# What the client of a session hears when it sends its next query after its
# connection was ended; the session is over afterwards.
sub last_words
{
	my ($session) = @_;
	$session->{stdin} .= "SELECT 1;\n";
	eval { $session->{run}->finish };
	return $session->{stderr};
}

# The program's path if it is in PATH, else undef.
sub find_program
{
	my ($name) = @_;
	for my $dir (File::Spec->path)
	{
		my $path = File::Spec->catfile($dir, $name);
		return $path if -f $path && -x $path;
	}
	return undef;
}

sub backend_alive
{
	my ($node, $pid) = @_;
	return $node->safe_psql('postgres',
		"SELECT count(*) FROM pg_stat_activity WHERE pid = $pid") eq '1';
}

# Run $sql as $user (undef: the cluster's superuser) in a new session with
# verbose messages (SQLSTATEs in stderr); returns (exit code, stdout, stderr).
sub sql_as
{
	my ($node, $user, $sql, $db) = @_;
	my ($stdout, $stderr);
	my $ret = $node->psql(
		$db // 'postgres', $sql,
		stdout => \$stdout,
		stderr => \$stderr,
		extra_params =>
		  [ (defined $user ? ('-U', $user) : ()), '-v', 'VERBOSITY=verbose' ]);
	return ($ret, $stdout, $stderr);
}

# Who may end whose connection, for the roles student (a NOLOGIN group),
# its members stu1 and stu2, instructor and instructor2 (ADMIN OPTION on
# student), signaler (pg_signal_backend), watcher (pg_read_all_stats) and
# dba (superuser): caller => { target => expected }.  't' ends it,
# 'f-hidden' means the caller may not even see the target, 'f-denied' that
# it sees it but may not end it.  Every API that ends connections follows it.
sub permission_matrix
{
	return (
		stu1 => {
			stu1 => 't', stu2 => 'f-hidden', instructor2 => 'f-hidden',
			signaler => 'f-hidden', dba => 'f-hidden'
		},
		instructor => {
			stu1 => 't', stu2 => 't', instructor2 => 'f-hidden',
			signaler => 'f-hidden', dba => 'f-hidden', instructor => 't'
		},
		signaler => {
			stu1 => 't', instructor2 => 't', watcher => 't',
			dba => 'f-hidden'
		},
		watcher => { stu1 => 'f-denied', dba => 'f-denied' },
		dba => { stu1 => 't', instructor2 => 't', signaler => 't', dba => 't' },
	);
}

1;
