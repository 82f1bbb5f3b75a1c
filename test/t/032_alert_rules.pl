# The Prometheus alerting rules of monitoring/: promtool accepts them, and
# their unit tests (monitoring/alerts_test.yml) pass.  Each alert must have
# a test in which it fires and one in which it stays silent.  Skipped when
# promtool (Debian package prometheus) is not installed.
use strict;
use warnings;

use FindBin;
use PostgreSQL::Test::Utils;
use Test::More;
use ConnmgrTest;

my $promtool = find_program('promtool');
plan skip_all => 'promtool is not installed (Debian package prometheus)'
  unless defined $promtool;

# The tree root from this file, wherever prove runs.
my $monitoring = "$FindBin::RealBin/../../monitoring";
my $rules = "$monitoring/alerts.yml";
my $tests = "$monitoring/alerts_test.yml";

my @alerts = slurp_file($rules) =~ /^\s*- alert: (\w+)\s*$/mg;
cmp_ok(scalar(@alerts), '>=', 8, 'alerts.yml defines the alerts');

command_like([ $promtool, 'check', 'rules', $rules ],
	qr/SUCCESS: ${\ scalar(@alerts)} rules found/,
	'promtool check rules accepts alerts.yml');

command_ok([ $promtool, 'test', 'rules', $tests ],
	'promtool test rules: the unit tests of the alerts pass');
command_like([ $promtool, 'test', 'rules', $tests ],
	qr/^\s*SUCCESS\s*$/m, 'promtool test rules reports SUCCESS');

# Every alert has a case that fires it and one that must stay silent
# (promtool only checks the cases that are there).
my $test_text = slurp_file($tests);
for my $alert (@alerts)
{
	like($test_text,
		qr/alertname: \Q$alert\E\n\s*exp_alerts:\n\s*- exp_labels/,
		"alerts_test.yml has a case where $alert fires");
	like($test_text,
		qr/alertname: \Q$alert\E(?:,\s*|\n\s*)exp_alerts: \[\]/,
		"alerts_test.yml has a case where $alert stays silent");
}

done_testing();
