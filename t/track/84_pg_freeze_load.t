# PostgreSQL frozen (SIGSTOP of the postmaster and every backend) for 30 s
# in the middle of a 60-second load, then let go (SIGCONT).  A frozen
# server keeps its sockets open and its kernel takes what is sent, so no
# error, reset or keepalive failure ever comes: only the module's deadline
# (TrackBatchBusyTimeout 3000 in <Location /freeze>) ends a wait, and
# libpq's connect_timeout a connection attempt.  Four clients send batches
# of 10 events with command_ids never sent before, with a key (its lookups
# wait on the server too), and do not retry.  Every command answered
# success: true is in tb_events exactly once; during the freeze every
# answer is 503 with Retry-After and the exact JSON text (never 200 for
# unstored data, never 500); no answer takes longer than the busy timeout
# plus connect_timeout plus 1.5 s; within 10 s after the server runs again
# at least 99% of the requests succeed.  A batch the server committed
# after the module stopped waiting (its answer lost) is kept whole; every
# batch answered 503, sent again with the same command_ids, is then
# answered success: true and recorded once.
use strict;
use warnings FATAL => 'all';

use Apache::Test;
use Apache::TestUtil;
use lib 't/lib';
use TB qw(admin basic batch_url hostport_of post_at load_batch load_record
          load_rows pg_freeze pg_load pg_load_checks PG_LOAD_CHECKS);

my $N = 4 + PG_LOAD_CHECKS;
# availability and timing thresholds: not for the sanitizer run, where
# ASan slows every request (these files run in the plain runs)
plan tests => $N, skip_reason('PostgreSQL frozen (this run records into SQLite)')
    if TB::engine() ne 'pgsql';
plan tests => $N, skip_reason('timing thresholds under ASan')
    if TB::engine() eq 'pgsql' && $ENV{TB_SANITIZED};
plan tests => $N if TB::engine() eq 'pgsql' && !$ENV{TB_SANITIZED};

my $project = 'pg-freeze-load';
my $k = admin('project', 'create', $project, '--key', 'private');
ok t_cmp($k->{status}, 0, 'admin created the project and its key');
my @auth = (Authorization => basic($k->{key_id}, $k->{secret}));
my $path = batch_url($project, 'batch', '/freeze');

my $res = pg_load(tag => 'fl', path => $path, headers => \@auth,
                  clients => 4, events => 10, before => 15, after => 15,
                  fault => sub { pg_freeze(30) });
ok t_cmp($res->{fault}[0] >= 2 && $res->{fault}[1] >= 30 ? 'yes' : "no (@{ $res->{fault} })",
         'yes', 'the postmaster and its children were stopped for 30 s, then continued');
pg_load_checks(res => $res, project => $project, tag => 'fl',
               name => 'frozen under load', busy_ms => 3000,
               lost_answers => 1);

# A client retries what was answered 503: the same batches, the same
# command_ids.  Those the server committed anyway are acknowledged as
# retries; none is recorded twice.
my @again = grep { $_->{status} ne '200' } @{ $res->{records} };
my $hp = hostport_of();
my @bad;
for my $rec (@again) {
    my ($body) = load_batch('fl', $rec->{client}, $rec->{seq}, scalar @{ $rec->{cids} });
    my $r = load_record(post_at($hp, $path, $body, @auth), $rec->{cids});
    push @bad, "$rec->{client}-$rec->{seq}: $r->{status}" unless $r->{status} eq '200' && $r->{all_ok};
}
print "# retried ", scalar @again, " batch(es) answered 503\n";
ok t_cmp(join(' ', @bad), '', 'every batch answered 503, sent again, is answered success: true');
my ($ev) = load_rows($project, 'fl');
my @sent = map { @{ $_->{cids} } } @{ $res->{records} };
ok t_cmp(join(' ', grep { ($ev->{$_} || 0) != 1 } @sent), '',
         'after the retries every command of the load is in tb_events exactly once');
