# PostgreSQL restarted (`pg_ctl -m fast restart`) in the middle of a load:
# four clients send batches of 10 events with command_ids never sent
# before, and do not retry.  Every command answered success: true is in
# tb_events exactly once, nothing of a batch answered 503 is kept (neither
# its events nor its command_ids, which would make a retry look like a
# duplicate), every answer is 200 or 503 with Retry-After and the exact
# JSON text (never 500), and within 10 s after the server is back at least
# 99% of the requests succeed.
use strict;
use warnings FATAL => 'all';

use Apache::Test;
use Apache::TestUtil;
use lib 't/lib';
use TB qw(batch_url pg_restart pg_load pg_load_checks PG_LOAD_CHECKS);

my $N = 1 + PG_LOAD_CHECKS;
# availability and timing thresholds: not for the sanitizer run, where
# ASan slows every request (these files run in the plain runs)
plan tests => $N, skip_reason('PostgreSQL restarts (this run records into SQLite)')
    if TB::engine() ne 'pgsql';
plan tests => $N, skip_reason('timing thresholds under ASan')
    if TB::engine() eq 'pgsql' && $ENV{TB_SANITIZED};
plan tests => $N if TB::engine() eq 'pgsql' && !$ENV{TB_SANITIZED};

my $project = 'pg-restart-load';
my $res = pg_load(tag => 'rl', path => batch_url($project), clients => 4,
                  events => 10, before => 3, after => 10.5,
                  fault => sub { pg_restart() });
ok t_cmp($res->{fault}[0], 0, 'pg_ctl restart succeeded during the load');
pg_load_checks(res => $res, project => $project, tag => 'rl',
               name => 'restart under load');
