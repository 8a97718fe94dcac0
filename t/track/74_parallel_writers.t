# Parallel writers (issue: "Concurrency"): 8 client processes each send
# 20 batches at once, every batch touching the same 4 customers, on
# connections of their own (so several httpd children / threads serve
# them).  Each batch has, per customer:
#   - a customers command setting "s" (shared by all clients) with an
#     update_timestamp that is distinct across all 160 batches and
#     shuffled, so the winning one arrives at no particular moment;
#   - a customers command setting "p<client>" (one per client) with
#     distinct update_timestamps, rising for odd clients, falling for
#     even ones (the first batch must win there);
#   - an event with a command_id of its own.
# The ids vary: registered only, cookie only, or both (the last batch of
# every client: both), so profiles are created by one id or the other
# and merged while other clients write.  A batch answered 503 (busy) is
# sent again as it was; command_ids keep that idempotent.
# Then: one profile per customer holding both its ids, each property the
# value of its greatest update_timestamp, every acknowledged event there
# exactly once, every update kept, and no trace of a merged-away profile.
use strict;
use warnings FATAL => 'all';

use Apache::Test;
use Apache::TestUtil;
use IO::Handle ();
use POSIX ();
use Time::HiRes ();
use lib 't/lib';
use TB qw(db db_clear json decode ev cu hostport_of post_at customer_of
          customers_in profile);

plan tests => 17;

sub is_ { my ($got, $want, $name) = @_; ok t_cmp($got, $want, $name) }

my $P        = 'parallel';
my $PATH     = "/track/v2/projects/$P/batch";
my $CLIENTS  = 8;
my $BATCHES  = 20;
my $CUST     = 4;
my $N        = $CLIENTS * $BATCHES;

db_clear();
my $dbh = db();

# update_timestamp of "s" for client c, batch b, customer k: a bijection
# of c * BATCHES + b onto 0 .. N-1 (37 and 160 are coprime), shifted per
# customer so each has its winner elsewhere.
sub s_time { my ($c, $b, $k) = @_; 1_000_000 + (($c * $BATCHES + $b) * 37 + $k * 11) % $N }
sub p_time { my ($c, $b) = @_; 2_000_000 + ($c % 2 ? $b : $BATCHES - $b) }

sub ids_for {
    my ($c, $b, $k) = @_;
    my $which = $b == $BATCHES - 1 ? 2 : ($c + $b + $k) % 3;
    return { $which != 1 ? (registered => "par-$k") : (),
             $which != 0 ? (cookie => "par-ck-$k") : () };
}

sub batch_for {
    my ($c, $b) = @_;
    my @cmds;
    for my $k (0 .. $CUST - 1) {
        my $ids = ids_for($c, $b, $k);
        push @cmds,
            cu($ids, { s => "c$c-b$b" }, update_timestamp => s_time($c, $b, $k),
               command_id => "s-$c-$b-$k"),
            cu($ids, { "p$c" => $b }, update_timestamp => p_time($c, $b),
               command_id => "p-$c-$b-$k"),
            ev($ids, 'par', timestamp => 1_500_000 + $c * 1000 + $b,
               properties => { c => $c, b => $b, k => $k },
               command_id => "e-$c-$b-$k");
    }
    return json()->encode({ commands => \@cmds });
}

# One client: sends its batches, reports one JSON line per batch.
sub client {
    my ($c, $out) = @_;
    my $hp = hostport_of();
    for my $b (0 .. $BATCHES - 1) {
        my $body = batch_for($c, $b);
        my ($r, $tries) = (undef, 0);
        while ($tries++ < 20) {
            $r = post_at($hp, $PATH, $body);
            last unless $r->{status} eq '503' || $r->{status} eq 'none';
            Time::HiRes::sleep(0.2);
        }
        my $a = decode($r->{body} // '');
        my @ok = ref $a eq 'HASH' && ref $a->{results} eq 'ARRAY'
                 ? map { $_->{success} ? 1 : 0 } @{ $a->{results} } : ();
        print $out json()->encode({ c => $c, b => $b, status => $r->{status},
                                    tries => $tries, ok => \@ok }), "\n";
    }
}

# Run $code->($client, $out_handle) in CLIENTS processes started at one
# moment; returns the JSON lines they printed, decoded.
sub run_clients {
    my ($code) = @_;
    my $start = Time::HiRes::time() + 1;
    my (@pids, @pipes, @reports);
    for my $c (0 .. $CLIENTS - 1) {
        pipe(my $rd, my $wr) or die "pipe: $!";
        my $pid = fork;
        die "fork: $!" unless defined $pid;
        if (!$pid) {
            close $rd;
            $wr->autoflush(1);
            my $wait = $start - Time::HiRes::time();
            Time::HiRes::sleep($wait) if $wait > 0;
            eval { $code->($c, $wr); 1 }
                or print $wr json()->encode({ c => $c, error => "$@" }), "\n";
            close $wr;
            POSIX::_exit(0);          # no END blocks of the test harness
        }
        close $wr;
        push @pids, $pid;
        push @pipes, $rd;
    }
    for my $rd (@pipes) {
        while (my $line = <$rd>) { push @reports, decode($line) }
        close $rd;
    }
    waitpid $_, 0 for @pids;
    return @reports;
}

my @reports = run_clients(\&client);

# ---------------------------------------------------------------------
my @errors = grep { $_->{error} } @reports;
is_(join(' ', map { $_->{error} } @errors), '', 'clients ran without error');
is_(scalar(grep { !$_->{error} } @reports), $N, "all $N batches reported");
is_(join(',', sort { $a cmp $b } map { $_->{status} } grep { $_->{status} ne '200' }
              @reports), '', 'every batch answered 200 (503s sent again)');
my $retried = grep { ($_->{tries} || 0) > 1 } @reports;
print "# batches sent more than once after 503: $retried\n";

my (%acked_events, $acked_cmds);
for my $r (grep { $_->{ok} } @reports) {
    my @ok = @{ $r->{ok} };
    $acked_cmds += grep { $_ } @ok;
    for my $k (0 .. $CUST - 1) {
        $acked_events{"e-$r->{c}-$r->{b}-$k"} = 1 if $ok[$k * 3 + 2];
    }
}
is_($acked_cmds, $N * $CUST * 3, 'every command answered success');

# one profile per customer, holding both of its ids
my @bad;
for my $k (0 .. $CUST - 1) {
    my $r = customer_of($P, registered => "par-$k");
    my $c = customer_of($P, cookie => "par-ck-$k");
    push @bad, "par-$k: registered on " . ($r // 'none') . ', cookie on '
               . ($c // 'none') unless defined $r && defined $c && $r == $c;
}
is_(join('; ', @bad), '', 'each customer: both ids on one profile');
is_(customers_in($P), $CUST, "$CUST profiles in all: none created twice");
my ($nids) = $dbh->selectrow_array(
    'SELECT count(*) FROM tb_customer_ids WHERE project = ?', undef, $P);
is_($nids, 2 * $CUST, 'two id rows per customer, none more');

# no lost update: each property holds its greatest update_timestamp
my @lost;
for my $k (0 .. $CUST - 1) {
    my $props = profile(customer_of($P, registered => "par-$k"))->{props};
    my ($best) = sort { s_time(@$b, $k) <=> s_time(@$a, $k) }
                 map { my $c = $_; map { [ $c, $_ ] } 0 .. $BATCHES - 1 }
                 0 .. $CLIENTS - 1;
    my $want = "c$best->[0]-b$best->[1]@" . s_time(@$best, $k);
    my $got = $props->{s} ? "$props->{s}[0]@" . (0 + $props->{s}[1]) : 'none';
    push @lost, "par-$k s: got $got, want $want" if $got ne $want;
    for my $c (0 .. $CLIENTS - 1) {
        my $b = $c % 2 ? $BATCHES - 1 : 0;
        $want = "$b@" . p_time($c, $b);
        $got = $props->{"p$c"} ? "$props->{\"p$c\"}[0]@"
                                 . (0 + $props->{"p$c"}[1]) : 'none';
        push @lost, "par-$k p$c: got $got, want $want" if $got ne $want;
    }
    my @extra = grep { !/^(?:s|p\d+)$/ } keys %$props;
    push @lost, "par-$k: unexpected @extra" if @extra;
}
is_(join('; ', @lost), '', 'no lost update: every property holds the value '
                           . 'of its greatest update_timestamp');

# events: every acknowledged one exactly once, nothing else but merges
my $ev = $dbh->selectall_arrayref(
    "SELECT command_id, customer_id FROM tb_events
      WHERE project = ? AND event_type = 'par'", undef, $P);
my %seen;
$seen{ $_->[0] // 'NULL' }++ for @$ev;
is_(scalar(@$ev), scalar(keys %acked_events),
    'events recorded = events acknowledged (' . scalar(keys %acked_events) . ')');
is_(join(',', grep { $seen{$_} != 1 || !$acked_events{$_} } sort keys %seen),
    '', 'each acknowledged event recorded exactly once');
my ($other) = $dbh->selectrow_array(
    "SELECT count(*) FROM tb_events WHERE project = ?
        AND event_type NOT IN ('par', 'merge')", undef, $P);
my ($updates) = $dbh->selectrow_array(
    'SELECT count(*) FROM tb_customer_updates WHERE project = ?', undef, $P);
is_("$other $updates", '0 ' . $N * $CUST * 2,
    'every update kept once, no other event');

# merges: each names a profile that is gone; nothing points to one
my $merged = $dbh->selectall_arrayref(
    "SELECT properties FROM tb_events WHERE project = ? AND event_type = 'merge'",
    undef, $P);
my @gone = map { decode($_->[0])->{merged_customer_id} } @$merged;
print "# merge events: " . scalar(@gone) . "\n";
my @left;
for my $g (@gone) {
    my $p = profile($g);
    push @left, $g if $p->{exists} || $p->{ids} ne '' || @{ $p->{events} }
                      || $p->{updates} || %{ $p->{props} };
}
is_(join(',', @left), '', 'merged-away profiles left no rows behind');
my ($dangling) = $dbh->selectrow_array(
    'SELECT count(*) FROM tb_events e WHERE e.project = ? AND NOT EXISTS
       (SELECT 1 FROM tb_customers c WHERE c.id = e.customer_id)', undef, $P);
is_($dangling, 0, 'every event belongs to an existing profile');

# the command_ids: one log row each
my ($logged) = $dbh->selectrow_array(
    'SELECT count(*) FROM tb_command_log WHERE project = ?', undef, $P);
is_($logged, $N * $CUST * 3, 'every command_id logged once');

# which httpd processes served the batches: several, or the test did not
# test what it says (logs/pid_log, "%P %a %>s %m %U")
{
    my $log = Apache::Test::vars('t_logs') . '/pid_log';
    my %pids;
    for (1 .. 20) {
        %pids = ();
        if (open my $fh, '<', $log) {
            while (<$fh>) {
                my ($pid, undef, undef, undef, $url) = split ' ';
                $pids{$pid}++ if $url && $url eq $PATH;
            }
        }
        my $n = 0;
        $n += $_ for values %pids;
        last if $n >= $N;
        Time::HiRes::sleep(0.1);
    }
    print "# batches per httpd process: "
          . join(', ', map { "$_: $pids{$_}" } sort keys %pids) . "\n";
    ok t_cmp(scalar(keys %pids) >= 2 ? 1 : 0, 1,
             'the batches were served by several httpd processes');
}

# ---------------------------------------------------------------------
# The same command_ids from every client at once (a retry storm): each
# command recorded once, every answer success.  The events carry no
# timestamp, so only their command_ids make them duplicates.
{
    my $body = json()->encode({ commands => [ map {
        ev({ registered => "storm-$_" }, 'storm', command_id => "storm-$_") }
        0 .. 9 ] });
    my @r = run_clients(sub {
        my ($c, $out) = @_;
        for (1 .. 3) {
            my $r = post_at(hostport_of(), $PATH, $body);
            my $a = decode($r->{body} // '');
            my $ok = ref $a eq 'HASH' && ref $a->{results} eq 'ARRAY'
                     ? grep { $_->{success} } @{ $a->{results} } : 0;
            print $out json()->encode({ status => $r->{status}, ok => $ok }), "\n";
        }
    });
    is_(join(',', map { $_->{error} // "$_->{status}/$_->{ok}" } @r),
        join(',', ('200/10') x ($CLIENTS * 3)),
        'retry storm: every answer 200 with 10 successes');
    my ($n) = $dbh->selectrow_array(
        "SELECT count(*) FROM tb_events WHERE project = ? AND event_type = 'storm'",
        undef, $P);
    my ($c) = $dbh->selectrow_array(
        "SELECT count(*) FROM tb_customer_ids WHERE project = ?
            AND id_value LIKE 'storm-%'", undef, $P);
    is_("$n $c", '10 10', 'retry storm: each command recorded once, one id each');
}
