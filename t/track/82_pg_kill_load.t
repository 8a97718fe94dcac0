# PostgreSQL killed (kill -9 of the postmaster) in the middle of a
# 60-second load, kept down a second, then started again as it was started
# (postmaster.opts).  Four clients send batches of 10 events with
# command_ids never sent before, and do not retry.  Every command answered
# success: true is in tb_events exactly once, nothing of a batch answered
# 503 is kept, during the outage every answer is 503 with Retry-After and
# the exact JSON text (never 200 for unstored data, never 500), no answer
# takes longer than the busy timeout plus connect_timeout plus 1.5 s, and
# within 10 s after the server is back at least 99% of the requests
# succeed.
use strict;
use warnings FATAL => 'all';

use Apache::Test;
use Apache::TestUtil;
use lib 't/lib';
use TB qw(batch_url pg_kill9_start pg_load pg_load_checks PG_LOAD_CHECKS);

my $N = 1 + PG_LOAD_CHECKS;
# availability and timing thresholds: not for the sanitizer run, where
# ASan slows every request (these files run in the plain runs)
plan tests => $N, skip_reason('PostgreSQL crashes (this run records into SQLite)')
    if TB::engine() ne 'pgsql';
plan tests => $N, skip_reason('timing thresholds under ASan')
    if TB::engine() eq 'pgsql' && $ENV{TB_SANITIZED};
plan tests => $N if TB::engine() eq 'pgsql' && !$ENV{TB_SANITIZED};

my $project = 'pg-kill-load';
my $res = pg_load(tag => 'kl', path => batch_url($project), clients => 4,
                  events => 10, before => 20, after => 38,
                  fault => sub { pg_kill9_start(1) });
ok t_cmp($res->{fault}[0], 0, 'kill -9 of the postmaster, then pg_ctl start succeeded');
pg_load_checks(res => $res, project => $project, tag => 'kl',
               name => 'kill -9 under load');
