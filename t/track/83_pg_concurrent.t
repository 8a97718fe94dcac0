# The baseline of the restart and crash tests: the same load (four
# clients, batches of 10 events with command_ids never sent before), with
# PostgreSQL up all along.  Nothing fails, so every answer is 200 and every
# command is in tb_events (and tb_command_log) exactly once.  Under load
# mod_dbd opens connections as it needs them, and each new one is set up
# while the others record batches: that must not fail a request either.
use strict;
use warnings FATAL => 'all';

use Apache::Test;
use Apache::TestUtil;
use lib 't/lib';
use TB qw(batch_url post_at hostport_of load_batch pg_load load_rows);

my $N = 5;
# availability and timing thresholds: not for the sanitizer run, where
# ASan slows every request (these files run in the plain runs)
plan tests => $N, skip_reason('PostgreSQL under load (this run records into SQLite)')
    if TB::engine() ne 'pgsql';
plan tests => $N, skip_reason('timing thresholds under ASan')
    if TB::engine() eq 'pgsql' && $ENV{TB_SANITIZED};
plan tests => $N if TB::engine() eq 'pgsql' && !$ENV{TB_SANITIZED};

my $project = 'pg-concurrent';
# the schema is in place before the load (a first batch, alone)
my ($body) = load_batch('cw', 0, 1, 1);
ok t_cmp(post_at(hostport_of(), batch_url($project), $body)->{status}, 200,
         'a first batch, alone: 200');

my $res = pg_load(tag => 'cc', path => batch_url($project), clients => 4,
                  events => 10, before => 0, after => 5, fault => sub { [0] });
my @r = @{ $res->{records} };
my %st;
$st{ $_->{status} }++ for @r;
my $summary = join ' ', map { "$_=$st{$_}" } sort keys %st;
my $max = 0;
for (@r) { $max = $_->{t1} - $_->{t0} if $_->{t1} - $_->{t0} > $max }
printf "# %d requests (%s); slowest answer %.2f s\n", scalar @r, $summary, $max;

ok t_cmp($res->{clients_ok}, 1, 'every load client ran to the end');
ok t_cmp($summary, qr/\A200=\d+\z/, 'every answer 200');
ok t_cmp(scalar(grep { $_->{status} eq '200' && !$_->{all_ok} } @r), 0,
         'every 200 answers each command success: true, in order');
my ($ev, $log) = load_rows($project, 'cc');
my @sent = map { @{ $_->{cids} } } grep { $_->{status} eq '200' } @r;
my %want = map { $_ => 1 } @sent;
ok t_cmp(join(' ', map { "$_=$ev->{$_}/" . ($log->{$_} // 0) } sort grep {
             ($ev->{$_} // 0) != 1 || ($log->{$_} // 0) != 1 || !$want{$_} }
             keys %want, keys %$ev, keys %$log),
         '', 'every command of a 200 batch once in tb_events and tb_command_log, nothing else');
