# The login cache is never stale on any commit path: after COMMIT PREPARED,
# and after a commit that waited for a synchronous standby (in this
# database or in another one, and of DROP OWNED, which changes memberships
# without a role statement), the next login is judged by the new rules.
#
# Each case lets logins fill the cache while the change is not yet visible
# (prepared, or waiting for the standby's acknowledgement): those logins
# are judged by the old rules, as they must be.  The server is quiet
# otherwise: no autovacuum, no logical replication launcher, an idle worker
# that wakes once an hour, so nothing else reads the invalidation queue
# between the commit and the next login.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use ConnmgrTest;

my $node = connmgr_node(
	'commit_paths', q{
max_prepared_transactions = 10
autovacuum = off
max_logical_replication_workers = 0
connmgr.idle_check_interval = '1h'
log_min_messages = warning
}, allows_streaming => 1);
$node->safe_psql('postgres', q{
	CREATE ROLE student NOLOGIN;
	CREATE ROLE alice LOGIN IN ROLE student;
	CREATE ROLE bob LOGIN IN ROLE student;
	CREATE DATABASE other;
});

sub login_ok
{
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	my ($user, $name) = @_;
	$node->connect_ok("dbname=postgres user=$user", $name);
}

sub login_refused
{
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	my ($user, $name) = @_;
	$node->connect_fails("dbname=postgres user=$user", $name,
		expected_stderr => qr/too many connections for role "$user"/);
}

# Two logins of $user by the rules in force ($ok: admitted), the second
# answered from the cache.
sub twice
{
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	my ($user, $ok, $what) = @_;
	for my $round (1 .. 2)
	{
		$ok ? login_ok($user, "$what (login $round)")
		  : login_refused($user, "$what (login $round)");
	}
}

# COMMIT PREPARED: the prepared transaction's changes become visible in the
# session that commits it, which need not be the one that prepared it.
twice('alice', 1, 'before a prepared policy');
$node->safe_psql('postgres', q{
	BEGIN;
	SELECT connmgr.set_connection_limit('student', per_member => 0);
	PREPARE TRANSACTION 'limit';
});
twice('alice', 1, 'a prepared policy is not in force');
$node->safe_psql('postgres', "COMMIT PREPARED 'limit'");
login_refused('alice', 'the next login after COMMIT PREPARED of a policy is refused');

twice('bob', 0, 'before a prepared REVOKE');
$node->safe_psql('postgres', q{
	BEGIN;
	REVOKE student FROM bob;
	PREPARE TRANSACTION 'revoke';
});
twice('bob', 0, 'a prepared REVOKE is not in force');
$node->safe_psql('postgres', "COMMIT PREPARED 'revoke'");
login_ok('bob', 'the next login after COMMIT PREPARED of a REVOKE is admitted');

# A synchronous standby.
$node->backup('base');
my $standby = PostgreSQL::Test::Cluster->new('commit_paths_standby');
$standby->init_from_backup($node, 'base', has_streaming => 1);
$standby->start;
$node->safe_psql('postgres',
	"ALTER SYSTEM SET synchronous_standby_names = 'commit_paths_standby'");
$node->reload;
$node->poll_query_until('postgres',
	"SELECT sync_state FROM pg_stat_replication WHERE application_name = 'commit_paths_standby'",
	'sync')
  or die 'the standby did not become synchronous';

# Run $change in database $db with the standby stopped, so that its commit
# waits for the standby; meanwhile $user is judged by the old rules ($ok);
# once the standby is back and the commit has returned, by the new ones.
sub while_commit_waits
{
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	my ($db, $change, $user, $ok, $what) = @_;
	twice($user, $ok, "$what: before");
	$standby->stop;
	my $session = $node->background_psql($db);
	my $pid = $session->query_safe('SELECT pg_backend_pid()');
	$session->{stdin} .= "$change;\n\\echo committed\n";
	$session->{run}->pump_nb;
	$node->poll_query_until('postgres',
		"SELECT wait_event = 'SyncRep' FROM pg_stat_activity WHERE pid = $pid")
	  or die "the commit of $what did not wait for the standby";
	twice($user, $ok, "$what: not in force while its commit waits for the standby");
	$standby->start;
	$session->query_until(qr/committed/, '');
	$ok ? login_refused($user, "$what: the next login after the commit is refused")
	  : login_ok($user, "$what: the next login after the commit is admitted");
	$session->quit;
}

while_commit_waits('postgres', "SELECT connmgr.drop_connection_limit('student')",
	'alice', 0, 'drop_connection_limit');
while_commit_waits('postgres', "SELECT connmgr.set_connection_limit('student', per_member => 0)",
	'alice', 1, 'set_connection_limit');
while_commit_waits('other', 'GRANT student TO bob',
	'bob', 1, 'a GRANT in another database');
# Memberships also change without a role statement: from PostgreSQL 16 on,
# DROP OWNED drops the grants its role made.
if ($node->pg_version >= 16)
{
	$node->safe_psql('postgres', q{
		CREATE ROLE teacher;
		GRANT student TO teacher WITH ADMIN OPTION;
		CREATE ROLE carol LOGIN;
		SET ROLE teacher;
		GRANT student TO carol;
		RESET ROLE;
	});
	while_commit_waits('postgres', 'DROP OWNED BY teacher',
		'carol', 0, 'DROP OWNED BY the grantor of a membership');
}
# A database without the extension: the label provider is there.
while_commit_waits('other', 'SECURITY LABEL FOR connmgr ON ROLE student IS NULL',
	'alice', 0, 'a policy removed in another database');

$standby->stop;
$node->stop;
done_testing();
