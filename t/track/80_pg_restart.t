# PostgreSQL restarted between two batches (`pg_ctl -m fast restart`):
# no statement is prepared on the server, so no pooled connection is left
# failing with "prepared statement does not exist".  A pooled connection
# the restart broke is found broken by the first request that uses it
# (503, Retry-After, nothing kept), and mod_dbd's check of the connection
# (PQreset) brings it back before the next: at most as many requests as
# there were pooled connections get 503, and a few seconds after the
# restart every request is recorded (200).  Once on an open location, once
# on /keys, where the key lookup is the first statement of the request.
use strict;
use warnings FATAL => 'all';

use Apache::Test;
use Apache::TestUtil;
use Time::HiRes ();
use lib 't/lib';
use TB qw(db batch_url admin basic post_at hostport_of pg_restart
          pg_client_conns load_batch UNAVAILABLE_BODY);

my $N = 10 + 9;
# availability and timing thresholds: not for the sanitizer run, where
# ASan slows every request (these files run in the plain runs)
plan tests => $N, skip_reason('PostgreSQL restarts (this run records into SQLite)')
    if TB::engine() ne 'pgsql';
plan tests => $N, skip_reason('timing thresholds under ASan')
    if TB::engine() eq 'pgsql' && $ENV{TB_SANITIZED};
plan tests => $N if TB::engine() eq 'pgsql' && !$ENV{TB_SANITIZED};

my $HP = hostport_of();
my $SETTLE = 3;     # seconds after the restart by which every request is 200
my $RUN    = 5;     # seconds of requests after the restart

# One batch of 3 events with command_ids "$tag-0-$seq-1..3".
sub send_batch {
    my ($path, $tag, $seq, @h) = @_;
    my ($body, $cids) = load_batch($tag, 0, $seq, 3);
    my $t0 = Time::HiRes::time();
    my $r = post_at($HP, $path, $body, @h);
    return { %$r, cids => $cids, t0 => $t0 };
}

# command_id => rows, in tb_events and in tb_command_log
sub rows_of {
    my ($project) = @_;
    my $dbh = db();
    my @out;
    for my $t (qw(tb_events tb_command_log)) {
        push @out, { map { $_->[0] => $_->[1] } @{ $dbh->selectall_arrayref(
            "SELECT command_id, count(*) FROM $t WHERE project = ?
              GROUP BY command_id", undef, $project) } };
    }
    $dbh->disconnect;
    return @out;
}

# Every command of a 200 batch once, nothing of the others: as text.
sub want_rows {
    my @ok = sort map { @{ $_->{cids} } } grep { $_->{status} eq '200' } @_;
    return join ' ', map { "$_=1" } @ok;
}
sub have_rows {
    my ($h) = @_;
    return join ' ', map { "$_=$h->{$_}" } sort keys %$h;
}

# Restart, then requests one after another for $RUN seconds; checks.
# Runs 7 tests.
sub across_restart {
    my (%a) = @_;
    my $name = $a{name};
    # a child the MPM starts after the batches above opens its connection
    # at once: count them once that is done (it checks once a second)
    Time::HiRes::sleep(1.5);
    my $pooled = pg_client_conns();
    my $rs = pg_restart();
    ok t_cmp($rs->[0], 0, "$name: pg_ctl restart succeeded");
    my $t_back = Time::HiRes::time();
    Time::HiRes::sleep($a{wait}) if $a{wait};
    my @r;
    my $seq = 100;
    while (Time::HiRes::time() < $t_back + $RUN) {
        push @r, send_batch($a{path}, $a{tag}, ++$seq, @{ $a{headers} || [] });
        Time::HiRes::sleep(0.05);
    }
    my @fail = grep { $_->{status} ne '200' } @r;
    my @late = grep { $_->{t0} >= $t_back + $SETTLE } @r;
    printf "# %s: %d pooled connections; restart took %.2f s; %d requests after it: %s\n",
        $name, $pooled, $rs->[1], scalar @r,
        join(' ', map { sprintf '%s@+%.2f', $_->{status}, $_->{t0} - $t_back } @fail)
            || 'all 200';

    ok t_cmp(join(' ', map { $_->{status} } grep { $_->{status} !~ /^(?:200|503)\z/ } @r),
             '', "$name: every answer 200 or 503 (never 500)");
    ok t_cmp(scalar(@fail) <= $pooled ? 'yes' : scalar(@fail) . " 503s, $pooled pooled connections",
             'yes', "$name: at most one 503 per pooled connection the restart broke");
    ok t_cmp(join(' ', map { ($_->{headers}{'retry-after'} // 'none') . ' '
                             . ($_->{headers}{'content-type'} // 'none') . ' '
                             . ($_->{body} eq UNAVAILABLE_BODY ? 'text' : $_->{body}) } @fail),
             join(' ', map { '5 application/json text' } @fail),
             "$name: every 503 has Retry-After: 5 and the exact JSON text");
    ok t_cmp((@late >= 10 ? 'yes' : 'no: ' . scalar(@late) . ' requests')
             . ' ' . join(' ', map { $_->{status} } grep { $_->{status} ne '200' } @late),
             'yes ', "$name: every request $SETTLE s or more after the restart answered 200");
    my ($ev, $log) = rows_of($a{project});
    ok t_cmp(have_rows($ev), want_rows(@{ $a{before} }, @r),
             "$name: tb_events holds every command of the 200 batches once, nothing of the 503s");
    ok t_cmp(have_rows($log), want_rows(@{ $a{before} }, @r),
             "$name: tb_command_log likewise");
}

#----------------------------------------------------------------------
# An open location.
{
    my $project = 'pg-restart-open';
    my $path = batch_url($project);
    my @before = map { send_batch($path, 'ro', $_) } 1 .. 3;
    ok t_cmp(join(' ', map { $_->{status} } @before), '200 200 200',
             'open: batches before the restart: 200');
    my ($ev) = rows_of($project);
    ok t_cmp(have_rows($ev), want_rows(@before), 'open: ... recorded');
    ok t_cmp(pg_client_conns() >= 1 ? 'yes' : 'no', 'yes',
             'open: the test server holds pooled connections to PostgreSQL');
    across_restart(name => 'open', project => $project, path => $path,
                   tag => 'ro', before => \@before);
}

#----------------------------------------------------------------------
# /keys: the key is looked up in the database (its cache lives 1 s, so
# the first request after the restart asks the database).
{
    my $project = 'pg-restart-keys';
    my $p = admin('project', 'create', $project, '--key', 'private');
    ok t_cmp($p->{status}, 0, 'keys: admin created a project and key');
    my @auth = (Authorization => basic($p->{key_id} // '', $p->{secret} // ''));
    my $path = batch_url($project, 'batch', '/keys');
    my @before = map { send_batch($path, 'rk', $_, @auth) } 1 .. 3;
    ok t_cmp(join(' ', map { $_->{status} } @before), '200 200 200',
             'keys: batches before the restart: 200');
    across_restart(name => 'keys', project => $project, path => $path,
                   tag => 'rk', before => \@before, headers => \@auth,
                   wait => 1.2);
}
