# Rate limit per client address (issue 6), counted across all httpd
# children: /limited has TrackBatchRateLimit address 5 10.  Five requests
# pass, the sixth gets 429 with Retry-After and records nothing, whichever
# children served them; another address is not affected; after Retry-After
# seconds the address may send five again.  Locations without the
# directive are not limited.
#
# Each request goes on its own connection while the previous one is held
# open, so under prefork (one connection per child at a time) consecutive
# requests are served by different children; logs/pid_log (%P, see
# t/conf/extra.conf.in) shows which.  If a per-process count were used, no
# child would have seen five requests and the sixth would pass.
use strict;
use warnings FATAL => 'all';

use Apache::Test;
use Apache::TestUtil;
use Time::HiRes ();
use lib 't/lib';
use TB qw(db db_counts db_clear json);
use TBClient;

plan tests => 38;

my $LIMIT  = 5;
my $PERIOD = 10;
my $TEXT   = 'Too many requests: at most 5 per 10 seconds per address.';
my $cfg    = Apache::Test::config();
my $port   = $cfg->{vars}->{port};
my $mpm    = $cfg->{server}->{mpm} || '';
my $path   = '/limited/track/v2/projects/rl-addr';
my %JSONCT = ('Content-Type' => 'application/json');

sub yes { my ($cond, $name) = @_; return t_cmp($cond ? 1 : 0, 1, $name) }
sub window { int(Time::HiRes::time() / $PERIOD) }
# sleep into the first moments of the next window
sub next_window {
    my $now = Time::HiRes::time();
    Time::HiRes::sleep(($now - $now % $PERIOD) + $PERIOD - $now + 0.1);
}
sub event_body {
    my $id = shift;
    return json()->encode({ customer_ids => { registered => $id },
                            event_type => 'rl', timestamp => undef,
                            properties => undef });
}
my $dbh = db();
sub ids_recorded {
    my $like = shift;
    return [ map { $_->[0] } @{ $dbh->selectall_arrayref(
        "SELECT i.id_value FROM tb_events e
           JOIN tb_customer_ids i ON i.customer_id = e.customer_id
          WHERE e.project = 'rl-addr' AND i.id_value LIKE ? ORDER BY e.id",
        undef, $like) } ];
}
# PIDs that served this run's requests, by request number (logs/pid_log)
sub pids_of_run {
    my ($run, $want) = @_;
    my %pid;
    for (1 .. 50) {                  # the log line follows the answer
        %pid = ();
        if (open my $fh, '<', "$cfg->{vars}->{t_logs}/pid_log") {
            while (<$fh>) {
                $pid{$2} = $1 if /^(\d+) .*[?&]run=\Q$run\E&n=(\d+)/;
            }
        }
        last if keys %pid >= $want;
        Time::HiRes::sleep(0.1);
    }
    return \%pid;
}

# Requests 1..$n, each on a new connection while the previous one is still
# open; returns the answers and closes everything.
sub burst {
    my ($run, $n, $first_id) = @_;
    my (@res, $held);
    for my $i (1 .. $n) {
        my $c = TBClient::Conn->new(port => $port);
        push @res, $c->request('POST', "$path/customers/events?run=$run&n=$i",
                               \%JSONCT, event_body("$first_id-$i"));
        $held->done if $held;
        $held = $c;
    }
    $held->done if $held;
    return \@res;
}

# ---- off by default ------------------------------------------------------
db_clear();
my $c = TBClient::Conn->new(port => $port);
my @codes;
for my $i (1 .. 4 * $LIMIT) {
    push @codes, $c->request('POST', '/track/track/v2/projects/rl-addr/customers/events',
                             \%JSONCT, event_body("free-$i"))->{status};
}
$c->done;
ok t_cmp(join(',', @codes), join(',', (200) x (4 * $LIMIT)),
         'no TrackBatchRateLimit: 20 requests in a row, all 200');
ok t_cmp(scalar @{ ids_recorded('free-%') }, 4 * $LIMIT, '... all recorded');

# ---- the limit, across children --------------------------------------------
my ($res, $over, $over_get, $other, $run, $w, $attempt);
for $attempt (1 .. 3) {
    next_window();
    db_clear();
    $w   = window();
    $run = "a$$" . int(rand 1e6);
    $res = burst($run, $LIMIT, 'ok');
    my $c6 = TBClient::Conn->new(port => $port);
    $over = $c6->request('POST', "$path/customers/events?run=$run&n=" . ($LIMIT + 1),
                         \%JSONCT, event_body('over-1'));
    $c6->done;
    my $c7 = TBClient::Conn->new(port => $port);
    $over_get = $c7->request('GET', "$path/system/time?run=$run&n=" . ($LIMIT + 2));
    $c7->done;
    # another client address, same window
    my $c8 = TBClient::Conn->new(port => $port, local => '127.0.0.2');
    $other = $c8->request('POST', "$path/customers/events?run=$run&n=" . ($LIMIT + 3),
                          \%JSONCT, event_body('other-addr'));
    $c8->done;
    last if window() == $w;
    t_debug("attempt $attempt crossed a window boundary; again");
}
ok t_cmp(window(), $w, 'the burst fitted in one window');

for my $i (1 .. $LIMIT) {
    ok t_cmp($res->[$i - 1]{status}, 200, "request $i of $LIMIT: 200");
}
ok t_cmp(scalar(grep { $_->{body} =~ /^\{"success": true\}\n?$/ } @$res), $LIMIT,
         'each of them: success');
ok t_cmp($over->{status}, 429, 'request 6: 429');
ok t_cmp($over->{body}, qr/^\{"success": false, "errors": \["\Q$TEXT\E"\]\}\n?$/,
         '429: the limit named');
ok t_cmp($over->{headers}{'content-type'}, qr{^application/json}, '429: JSON');
my $ra = $over->{headers}{'retry-after'};
ok yes(defined $ra && $ra =~ /^\d+$/ && $ra >= 1 && $ra <= $PERIOD,
       '429: Retry-After in whole seconds, at most the window ('
       . ($ra // 'none') . ')');
ok t_cmp($over_get->{status}, 429, 'request 7 (GET system/time): 429 too');
ok t_cmp($over_get->{headers}{'retry-after'}, qr/^\d+$/, '... with Retry-After');

ok t_cmp(join(',', @{ ids_recorded('ok-%') }),
         join(',', map { "ok-$_" } 1 .. $LIMIT), 'the five accepted events recorded');
ok t_cmp(scalar @{ ids_recorded('over-%') }, 0, 'the refused one not');

ok t_cmp($other->{status}, 200, 'another client address (127.0.0.2), same window: 200');
ok t_cmp(scalar @{ ids_recorded('other-addr') }, 1, '... recorded');

my $pid = pids_of_run($run, $LIMIT + 3);
ok t_cmp(scalar(keys %$pid), $LIMIT + 3, 'pid_log names the child of every request');
my %distinct = map { $pid->{$_} => 1 } grep { $_ <= $LIMIT + 1 } keys %$pid;
my @served = map { $pid->{$_} // '?' } 1 .. $LIMIT + 1;
t_debug("$mpm: requests 1..6 served by pids @served");
if ($mpm eq 'prefork') {
    ok yes(keys %distinct > 1,
           'prefork: the counted requests were served by ' . scalar(keys %distinct)
           . " children (@served); the limit held across them");
}
else {
    # threads of one or more children: nothing to force, the total counts
    ok yes(keys %distinct >= 1, "$mpm: served by " . scalar(keys %distinct)
           . " child(ren) (@served); the limit held after exactly $LIMIT");
}
ok yes($pid->{1} && $pid->{2} && $pid->{1} != $pid->{2} || $mpm ne 'prefork',
       'prefork: consecutive requests on overlapping connections, different children');

# ---- recovery: after Retry-After, a fresh window ------------------------
my $slept_from = Time::HiRes::time();
Time::HiRes::sleep(($ra // $PERIOD) + 0.1);
ok yes(window() != $w, 'Retry-After led into the next window');
my $run2 = "b$$" . int(rand 1e6);
my $again = burst($run2, $LIMIT, 'again');
my $c9 = TBClient::Conn->new(port => $port);
my $over2 = $c9->request('POST', "$path/customers/events?run=$run2&n=" . ($LIMIT + 1),
                         \%JSONCT, event_body('over-2'));
$c9->done;
my $same = window() == int($slept_from / $PERIOD) + 1;
for my $i (1 .. $LIMIT) {
    ok t_cmp($again->[$i - 1]{status}, 200, "after recovery, request $i: 200");
}
ok yes($same, 'the second burst fitted in the next window');
ok t_cmp($over2->{status}, 429, 'after recovery, request 6: 429 again');
ok t_cmp(join(',', @{ ids_recorded('again-%') }),
         join(',', map { "again-$_" } 1 .. $LIMIT), 'after recovery: five recorded');
ok t_cmp(scalar @{ ids_recorded('over-%') }, 0, 'no refused event recorded');

my $pid2 = pids_of_run($run2, $LIMIT + 1);
my %d2 = map { $_ => 1 } values %$pid2;
t_debug("$mpm: second burst served by pids " . join(' ', map { $pid2->{$_} // '?' } 1 .. $LIMIT + 1));
ok yes($mpm ne 'prefork' || keys %d2 > 1,
       "second burst: " . scalar(keys %d2) . " child(ren)");

my $n = db_counts();
ok t_cmp($n->{tb_events}, 2 * $LIMIT + 1, 'events in all: 5 + 1 other address + 5');

# ---- simultaneous: 20 clients at once, exactly 5 get through ---------------
# (the counter is updated atomically by every child and thread at once)
my $CLIENTS = 20;
my (%status, $w3, $run3);
for my $attempt (1 .. 3) {
    next_window();
    db_clear();
    $w3 = window();
    $run3 = "c$$" . int(rand 1e6);
    my @kids;
    for my $i (1 .. $CLIENTS) {
        pipe(my $rd, my $wr) or die "pipe: $!";
        my $kid = fork;
        die "fork: $!" unless defined $kid;
        if (!$kid) {
            close $rd;
            my $st = eval {
                my $cc = TBClient::Conn->new(port => $port);
                my $x = $cc->request('POST', "$path/customers/events?run=$run3&n=$i",
                                     \%JSONCT, event_body("sim-$i"));
                $cc->done;
                $x->{status};
            } || 'error';
            print $wr $st;
            close $wr;
            require POSIX;
            POSIX::_exit(0);
        }
        close $wr;
        push @kids, [ $kid, $rd ];
    }
    %status = ();
    for (@kids) {
        my ($kid, $rd) = @$_;
        my $st = do { local $/; <$rd> };
        close $rd;
        waitpid $kid, 0;
        $status{$st}++;
    }
    last if window() == $w3;
    t_debug("attempt $attempt crossed a window boundary; again");
}
ok t_cmp(window(), $w3, 'the simultaneous requests fitted in one window');
ok t_cmp(join(' ', map { "$_=$status{$_}" } sort keys %status),
         "200=$LIMIT 429=" . ($CLIENTS - $LIMIT),
         "$CLIENTS simultaneous clients: exactly $LIMIT answered 200, the rest 429");
ok t_cmp(scalar @{ ids_recorded('sim-%') }, $LIMIT, "exactly $LIMIT recorded");
my $pid3 = pids_of_run($run3, $CLIENTS);
my %d3 = map { $_ => 1 } values %$pid3;
t_debug("$mpm: simultaneous requests served by " . scalar(keys %d3) . ' children: '
        . join(' ', sort keys %d3));
ok yes($mpm ne 'prefork' || keys %d3 > 1,
       'simultaneous requests: served by ' . scalar(keys %d3) . ' child(ren)');
