# The per-role counters (src/counters.c) stay exact while connections of
# users in overlapping groups come and go in any order.  An entry leaves
# the table as its counts reach zero and the entries after it in its probe
# run move back; an entry lost or left behind by that would show here as
# a wrong total for some group.  The smallest connmgr.max_tracked_roles
# keeps the table small and crowded.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use ConnmgrTest;

my $groups = 80;
my $users = 6;
my $node = connmgr_node('counters', "connmgr.max_tracked_roles = 100\n");

# User m<k> belongs to every group c<g> with g divisible by k: m1 to all 80,
# m6 to 13; with every user connected, 86 roles are counted.
my %member_of;
my $setup = '';
for my $g (1 .. $groups)
{
	$setup .= "CREATE ROLE c$g NOLOGIN;\n";
	$setup .= "SELECT connmgr.set_connection_limit('c$g', total => 1000);\n";
}
for my $k (1 .. $users)
{
	$setup .= "CREATE ROLE m$k LOGIN;\n";
	for my $g (grep { $_ % $k == 0 } 1 .. $groups)
	{
		$setup .= "GRANT c$g TO m$k;\n";
		$member_of{$k}{$g} = 1;
	}
}
$node->safe_psql('postgres', $setup);

# What connection_limits must show for the sessions open now.
sub expected_totals
{
	my ($open) = @_;
	my @totals;
	for my $g (sort { "c$a" cmp "c$b" } 1 .. $groups)
	{
		my $n = grep { $member_of{ $_->{user} }{$g} } @$open;
		push @totals, "c$g=$n";
	}
	return join(',', @totals);
}

my $totals_query = q{
	SELECT string_agg(role_name || '=' || total_connections, ',' ORDER BY role_name::text)
	  FROM connmgr.connection_limits};

# A fixed sequence that opens and closes sessions of all six users, in an
# order unrelated to how they were opened; with at most three open at a
# time, groups keep dropping to zero, and their entries leave the table.
my @open;
my $seed = 7;
for my $step (1 .. 60)
{
	$seed = ($seed * 1103515245 + 12345) % 2147483648;
	if (@open < 3 && ($seed % 5 < 3 || !@open))
	{
		my $k = 1 + ($seed >> 8) % $users;
		my $session = open_session($node, "m$k");
		$session->{user} = $k;
		push @open, $session;
	}
	else
	{
		my ($gone) = splice(@open, ($seed >> 8) % @open, 1);
		close_sessions($node, $gone);
	}
	my $want = expected_totals(\@open);
	my $got = $node->safe_psql('postgres', $totals_query);
	is($got, $want, "step $step: every group's total is exact (" . scalar(@open) . ' open)');
}
close_sessions($node, @open);
is($node->safe_psql('postgres', $totals_query), expected_totals([]),
	'with every session closed, every total is back at 0');
is($node->safe_psql('postgres',
		"SELECT count(*) FROM connmgr.connection_limits WHERE total_connections <> 0"),
	'0', 'no counter is left behind');

done_testing();
