# Rate limit per access key (issue 6), counted across all httpd children:
# /limited-key requires keys and has TrackBatchRateLimit key 3 3.  Three
# requests of a key pass, the fourth gets 429 with Retry-After and records
# nothing; another key of the same project (same client address) is not
# affected; a request without a key is refused as such, not counted; after
# Retry-After seconds the key works again.  Requests are spread over
# children as in 63_rate_address.t.  The calls are made as the Python
# SDK makes them (Basic auth, null for absent fields).
use strict;
use warnings FATAL => 'all';

use Apache::Test;
use Apache::TestUtil;
use Time::HiRes ();
use lib 't/lib';
use TB qw(db db_counts db_clear admin basic json);
use TBClient;

plan tests => 29;

my $LIMIT  = 3;
my $PERIOD = 3;
my $TEXT   = 'Too many requests: at most 3 per 3 seconds per key.';
my $cfg    = Apache::Test::config();
my $port   = $cfg->{vars}->{port};
my $mpm    = $cfg->{server}->{mpm} || '';
my $path   = '/limited-key/track/v2/projects/rl-key';

sub yes { my ($cond, $name) = @_; return t_cmp($cond ? 1 : 0, 1, $name) }
sub window { int(Time::HiRes::time() / $PERIOD) }
sub next_window {
    my $now = Time::HiRes::time();
    Time::HiRes::sleep(($now - $now % $PERIOD) + $PERIOD - $now + 0.05);
}

my $A = admin('project', 'create', 'rl-key', '--key', 'private');
ok t_cmp($A->{status}, 0, 'project rl-key with key A');
my $B = admin('key', 'create', 'rl-key', 'private');
my $g = admin('key', 'grant', $B->{key_id}, 'events');
ok yes($B->{key_id} && $B->{secret} && $g->{status} == 0, 'key B, allowed events');

# the Python SDK's add_event body, sent on a connection of our choosing
sub event {
    my ($conn, $key, $id, $run, $n) = @_;
    my %h = ('Content-Type' => 'application/json');
    $h{Authorization} = basic($key->{key_id}, $key->{secret}) if $key;
    return $conn->request('POST', "$path/customers/events?run=$run&n=$n", \%h,
        TBClient::dumps(TBClient::odict(
            customer_ids => TBClient::odict(registered => $id),
            timestamp => undef, properties => undef, event_type => 'rl')));
}
my $dbh = db();
sub ids_recorded {
    my $like = shift;
    return [ map { $_->[0] } @{ $dbh->selectall_arrayref(
        "SELECT i.id_value FROM tb_events e
           JOIN tb_customer_ids i ON i.customer_id = e.customer_id
          WHERE e.project = 'rl-key' AND i.id_value LIKE ? ORDER BY e.id",
        undef, $like) } ];
}
sub pids_of_run {
    my ($run, $want) = @_;
    my %pid;
    for (1 .. 50) {
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

# ---- off by default: /keys has no TrackBatchRateLimit ---------------------
{
    my $c = TBClient::Conn->new(port => $port);
    my @codes = map {
        $c->request('GET', '/keys/track/v2/projects/rl-key/system/time',
                    { Authorization => basic($A->{key_id}, $A->{secret}) })->{status}
    } 1 .. 4 * $LIMIT;
    $c->done;
    ok t_cmp(join(',', @codes), join(',', (200) x (4 * $LIMIT)),
             'no TrackBatchRateLimit: key A, 12 requests in a row, all 200');
}

my ($res, $over, $time_over, $other, $anon, $run, $w);
for my $attempt (1 .. 4) {
    next_window();
    db_clear();
    $w   = window();
    $run = "k$$" . int(rand 1e6);
    my $held;
    $res = [];
    for my $i (1 .. $LIMIT) {           # overlapping connections
        my $c = TBClient::Conn->new(port => $port);
        push @$res, event($c, $A, "a-$i", $run, $i);
        $held->done if $held;
        $held = $c;
    }
    $held->done;
    my $c = TBClient::Conn->new(port => $port);
    $over = event($c, $A, 'a-over', $run, $LIMIT + 1);
    $c->done;
    $c = TBClient::Conn->new(port => $port);
    $time_over = $c->request('GET', "$path/system/time?run=$run&n=" . ($LIMIT + 2),
                             { Authorization => basic($A->{key_id}, $A->{secret}) });
    $c->done;
    $c = TBClient::Conn->new(port => $port);
    $other = event($c, $B, 'b-1', $run, $LIMIT + 3);
    $c->done;
    $c = TBClient::Conn->new(port => $port);
    $anon = event($c, undef, 'anon', $run, $LIMIT + 4);
    $c->done;
    last if window() == $w;
    t_debug("attempt $attempt crossed a window boundary; again");
}
ok t_cmp(window(), $w, 'the burst fitted in one window');

for my $i (1 .. $LIMIT) {
    ok t_cmp($res->[$i - 1]{status}, 200, "key A, request $i of $LIMIT: 200");
}
ok t_cmp(scalar(grep { $_->{body} =~ /^\{"success": true\}\n?$/ } @$res), $LIMIT,
         'each of them: success');
ok t_cmp($over->{status}, 429, 'key A, request 4: 429');
ok t_cmp($over->{body}, qr/^\{"success": false, "errors": \["\Q$TEXT\E"\]\}\n?$/,
         '429: the limit named');
my $ra = $over->{headers}{'retry-after'};
ok yes(defined $ra && $ra =~ /^\d+$/ && $ra >= 1 && $ra <= $PERIOD,
       '429: Retry-After in whole seconds, at most the window (' . ($ra // 'none') . ')');
ok t_cmp($time_over->{status}, 429, 'key A, GET system/time: 429 too');
ok t_cmp($other->{status}, 200, 'key B, same address, same window: 200');
ok t_cmp($anon->{status}, 401, 'no key: 401, not 429');
ok t_cmp(join(',', @{ ids_recorded('a-%') }), 'a-1,a-2,a-3',
         'key A: the three accepted events recorded, not the refused one');
ok t_cmp(scalar @{ ids_recorded('b-%') }, 1, 'key B: recorded');
ok t_cmp(scalar @{ ids_recorded('anon') }, 0, 'no key: nothing recorded');

my $pid = pids_of_run($run, $LIMIT + 4);
my @served = map { $pid->{$_} // '?' } 1 .. $LIMIT + 1;
my %distinct = map { $_ => 1 } grep { $_ ne '?' } @served;
t_debug("$mpm: key A's requests 1..4 served by pids @served");
ok t_cmp(scalar(keys %$pid), $LIMIT + 4, 'pid_log names the child of every request');
ok yes($mpm ne 'prefork' || keys %distinct > 1,
       "key A's requests served by " . scalar(keys %distinct) . " child(ren) (@served)");

# ---- recovery, through the SDK-style client -----------------------------
Time::HiRes::sleep(($ra // $PERIOD) + 0.05);
ok yes(window() != $w, 'Retry-After led into the next window');
my $client = TBClient->new('rl-key', $A->{key_id}, $A->{secret},
                           url => "http://127.0.0.1:$port/limited-key");
my $ok = eval { $client->add_event({ registered => 'a-again' }, 'rl') };
ok t_cmp($client->last_response->code, 200, 'key A after Retry-After: 200');
ok yes($ok, 'the SDK reads success');
ok t_cmp(scalar @{ ids_recorded('a-again') }, 1, '... recorded');

# and the client sees the 429 as the SDK would: an exception naming it
my ($w2, @outcome);
for my $attempt (1 .. 4) {
    next_window();
    $w2 = window();
    @outcome = ();
    for my $i (1 .. $LIMIT + 1) {
        my $r = eval { $client->get_system_time };
        push @outcome, { time => $r, err => $@, code => $client->last_response->code };
    }
    last if window() == $w2;
}
ok t_cmp(join(',', map { $_->{code} } @outcome), '200,200,200,429',
         'SDK-style client: three times, then 429');
ok yes(defined $outcome[0]{time} && $outcome[0]{time} > 0, '... reading the time');
my $err = $outcome[-1]{err};
ok yes(ref $err && ref $err eq 'TBClient::APIException', '... then an exception');
ok t_cmp(ref $err ? "$err" : '', $TEXT, '... with the limit\'s text');
ok t_cmp(ref $err ? $err->response->header('Retry-After') : undef, qr/^[1-3]$/,
         '... and Retry-After');

my ($n) = $dbh->selectrow_array("SELECT count(*) FROM tb_events WHERE project = 'rl-key'");
ok t_cmp($n, 5, 'events in all: three of A, one of B, one after recovery');
