# Failed logins cannot flush the event log: with connmgr.event_log_size =
# 20, twice that many failed logins, under made-up role names and with a
# real role's wrong password, leave a termination and every other event in
# place.  The failed logins are kept apart, in a tenth of the entries, and
# the newest of them are listed with the rest, oldest first.  All checks
# run in one session, so that looking adds no events.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use ConnmgrTest;

my $node = connmgr_node('failed_logins', "connmgr.event_log_size = 20\n");
$node->safe_psql('postgres', q{
	CREATE ROLE stu1 LOGIN;
	CREATE ROLE pwuser LOGIN PASSWORD 'secret';
});
my $hba = $node->data_dir . '/pg_hba.conf';
my $hba_lines = slurp_file($hba);
open my $fh, '>', $hba or die "could not write $hba: $!";
print $fh "local all pwuser scram-sha-256\n$hba_lines";
close $fh;
$node->reload;

my $mon = $node->background_psql('postgres');
my $su = $mon->query_safe('SELECT current_user');
my $events = "SELECT string_agg(concat_ws('|', event, username, reason), ',') FROM connmgr.connection_events";

# Poll in the monitoring session (a backend updates the counters and
# events as it exits, a moment after its client has seen the end).
sub wait_until
{
	my ($sql, $expected) = @_;
	return poll_session($mon, $sql, $expected);
}

# A backend logs its disconnect before it leaves pg_stat_activity: once
# only the monitoring session is left, the events so far are complete.
my $others = "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()";
wait_until($others, '0') eq '0' or die 'the setup sessions did not exit';
my $victim = open_session($node, 'stu1');
is($mon->query_safe("SELECT message FROM connmgr.kill_connection('$victim->{pid}', 'lab closes')"),
	'Connection found', 'a session is terminated');
last_words($victim);
wait_until($others, '0') eq '0' or die 'the victim did not exit';
my $before = $mon->query_safe($events);
like($before, qr/^connect\|$su,.*,connect\|stu1,terminate\|stu1\|lab closes,disconnect\|stu1$/,
	'the event log holds the termination');

# Odd logins under made-up names, even ones as pwuser with a wrong password.
my @unexpected;
for my $i (1 .. 40)
{
	local $ENV{PGPASSWORD} = 'wrong';
	my $user = $i % 2 ? "ghost$i" : 'pwuser';
	my ($ret, $out, $err) = sql_as($node, $user, 'SELECT 1');
	push @unexpected, "$user: $err"
	  unless $ret != 0
	  && $err =~ /role "$user" does not exist|password authentication failed for user "$user"/;
}
is(join("\n", @unexpected), '', '40 logins fail: made-up names and wrong passwords');
is(wait_until('SELECT auth_failed FROM connmgr.server_activity', '40'), '40',
	'all 40 are counted');

is($mon->query_safe($events), "$before,auth_failed|ghost39,auth_failed|pwuser",
	'the termination and the events before it are all still there, '
	  . 'and the newest failed logins are listed after them');

$mon->quit;
$node->stop;
done_testing();
