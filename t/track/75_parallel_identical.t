# The same batch sent by several clients at once (an SDK retrying a
# request that timed out while the first is still running): events of
# customers that already exist, so PostgreSQL records them on its
# set-based path where batches run side by side.  Every event must be
# stored once whatever the timing; with command_ids, every command_id
# once.  Also: two different batches of different customers sent at
# once are both stored in full.
use strict;
use warnings FATAL => 'all';

use Apache::Test;
use Apache::TestUtil;
use IO::Handle ();
use POSIX ();
use Time::HiRes ();
use lib 't/lib';
use TB qw(db db_clear json decode ev hostport_of post_at);

plan tests => 9;

my $P       = 'identical';
my $PATH    = "/track/v2/projects/$P/batch";
my $CLIENTS = 8;
my $ROUNDS  = 6;

db_clear();

sub batch {
    my ($round, $with_cid, $who) = @_;
    my @cmds;
    for my $k (0 .. 9) {
        my $cust = $who + $k % 5;
        push @cmds, ev({ registered => "same-$cust", cookie => "same-ck-$cust" },
                       'same', timestamp => 1_600_000_000 + $round * 100 + $k,
                       properties => { round => $round, k => $k },
                       $with_cid ? (command_id => "same-$who-$round-$k") : ());
    }
    return json()->encode({ commands => \@cmds });
}

# The customers exist before the race.
my $hp = hostport_of();
my $r = post_at($hp, $PATH, batch(-1, 0, 0));
ok t_cmp($r->{status}, 200, 'the customers were created');
$r = post_at($hp, $PATH, batch(-1, 0, 100));
ok t_cmp($r->{status}, 200, 'the second set of customers was created');

# $CLIENTS processes post $code->($client, $round) for every round, each
# round starting at one moment; returns the statuses.
sub race {
    my ($code) = @_;
    my (@pids, @pipes, @status);
    my $start = Time::HiRes::time() + 0.5;
    for my $c (0 .. $CLIENTS - 1) {
        pipe(my $rd, my $wr) or die "pipe: $!";
        my $pid = fork // die "fork: $!";
        if (!$pid) {
            close $rd;
            $wr->autoflush(1);
            for my $round (0 .. $ROUNDS - 1) {
                my $wait = $start + $round * 0.4 - Time::HiRes::time();
                Time::HiRes::sleep($wait) if $wait > 0;
                my $res = post_at(hostport_of(), $PATH, $code->($c, $round));
                print $wr "$res->{status}\n";
            }
            close $wr;
            POSIX::_exit(0);
        }
        close $wr;
        push @pids, $pid;
        push @pipes, $rd;
    }
    for my $rd (@pipes) { while (<$rd>) { chomp; push @status, $_ } close $rd }
    waitpid $_, 0 for @pids;
    return @status;
}

sub count_rows {
    my ($sql, @bind) = @_;
    my $dbh = db();
    my $rows = $dbh->selectall_arrayref($sql, undef, @bind);
    $dbh->disconnect;
    return $rows;
}

# 1. identical events, no command_id: dedup by identical event
my @st = race(sub { batch($_[1], 0, 0) });
ok t_cmp(join(',', grep { $_ ne '200' } @st), '', 'identical batches: every answer 200');
my $twice = count_rows("SELECT properties, count(*) FROM tb_events
                         WHERE project = ? AND event_type = 'same'
                         GROUP BY customer_id, timestamp, properties
                        HAVING count(*) > 1", $P);
ok t_cmp(scalar(@$twice), 0, 'identical batches: no event stored twice');
my ($n) = @{ count_rows("SELECT count(*) FROM tb_events WHERE project = ?
                          AND event_type = 'same' AND timestamp >= 1600000000", $P)->[0] };
ok t_cmp($n, $ROUNDS * 10, 'identical batches: every event stored once');

# 2. the same command_ids from every client
@st = race(sub { batch($_[1] + 50, 1, 0) });
ok t_cmp(join(',', grep { $_ ne '200' } @st), '', 'same command_ids: every answer 200');
my $dup = count_rows("SELECT command_id, count(*) FROM tb_events
                       WHERE project = ? AND command_id LIKE 'same-0-%'
                       GROUP BY command_id HAVING count(*) > 1", $P);
ok t_cmp(scalar(@$dup), 0, 'same command_ids: none stored twice');
($n) = @{ count_rows("SELECT count(*) FROM tb_events WHERE project = ?
                       AND command_id LIKE 'same-0-%'", $P)->[0] };
ok t_cmp($n, $ROUNDS * 10, 'same command_ids: every one stored');

# 3. different customers side by side: all stored
@st = race(sub { batch($_[1] + 80 + $_[0] * 10, 1, $_[0] % 2 ? 100 : 0) });
($n) = @{ count_rows("SELECT count(*) FROM tb_events WHERE project = ?
                       AND timestamp >= ? ", $P, 1_600_000_000 + 8000)->[0] };
ok t_cmp($n, scalar(grep { $_ eq '200' } @st) * 10,
         'different batches at once: every acknowledged event stored');
