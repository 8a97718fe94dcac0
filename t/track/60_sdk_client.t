# Every route, called the way the official Python SDK calls it (TBClient):
# Basic auth, null for absent optional fields, success only when HTTP 200
# and "success": true, reading "success", "results" and "time".  Each
# recorded command is read back from the database; refused ones leave none.
use strict;
use warnings FATAL => 'all';

use Apache::Test;
use Apache::TestUtil;
use Time::HiRes ();
use lib 't/lib';
use TB qw(db db_counts db_clear admin json);
use TBClient;

plan tests => 74;

db_clear();
my $port = Apache::Test::config()->{vars}->{port};
my $base = "http://127.0.0.1:$port/keys";

my $p = admin('project', 'create', 'sdk-shop', '--key', 'private');
ok t_cmp($p->{status}, 0, 'project sdk-shop and a private key created');
my $other = admin('project', 'create', 'sdk-other', '--key', 'private');
ok t_cmp($other->{status}, 0, 'a second project with its own key');

my $c = TBClient->new('sdk-shop', $p->{key_id}, $p->{secret}, url => $base);
my $T = JSON::PP::true();
my $F = JSON::PP::false();

# Test.pm's ok(a, b) compares a with b: a named truth check goes through t_cmp.
sub yes { my ($cond, $name) = @_; return t_cmp($cond ? 1 : 0, 1, $name) }
sub counts { my $n = db_counts(); join ' ', map { "$_=$n->{$_}" } sort keys %$n }
sub raises (&) {
    my $code = shift;
    my $e = eval { $code->(); undef } || $@;
    return ref $e && ref $e eq 'TBClient::APIException' ? $e : undef;
}
my $dbh = db();
sub props_of {
    my ($project, $id) = @_;
    my $rows = $dbh->selectall_arrayref(
        "SELECT p.name, p.value FROM tb_customer_properties p
           JOIN tb_customer_ids i ON i.customer_id = p.customer_id
          WHERE i.project = ? AND i.id_name = 'registered' AND i.id_value = ?",
        undef, $project, $id);
    # the stored JSON text is UTF-8 (the database is read as bytes)
    return { map { my $v = $_->[1]; utf8::decode($v); $_->[0] => TB::decode($v) }
             @$rows };
}
sub events_of {
    my ($project, $id) = @_;
    return $dbh->selectall_arrayref(
        "SELECT e.event_type, e.timestamp, e.properties, e.received_at
           FROM tb_events e
           JOIN tb_customer_ids i ON i.customer_id = e.customer_id
          WHERE e.project = ? AND i.id_name = 'registered' AND i.id_value = ?
          ORDER BY e.id", { Slice => {} }, $project, $id);
}

# ---- GET system/time -------------------------------------------------
my $before = Time::HiRes::time();
my $t = $c->get_system_time;
my $after = Time::HiRes::time();
my $res = $c->last_response;
ok t_cmp($res->code, 200, 'system/time: 200');
ok t_cmp($res->header('Content-Type'), qr{^application/json}, 'JSON answer');
ok yes(!defined $res->request->header('Content-Type') && !length $res->request->content,
       'the SDK sends GET without a body');
ok t_cmp($res->request->header('Authorization'), qr/^Basic /, 'Basic auth sent');
ok yes(defined $t && $t =~ /^\d+\.\d+$/,
       "time is a float ($t)");
ok yes($t >= $before - 1 && $t <= $after + 1,
       'time is now');

# ---- POST customers --------------------------------------------------
my %props = (first_name => 'Ada', city => "Z\x{fc}rich", score => 42,
             tags => ['a', 'b'], mood => "\x{1F600}");
my $ok = $c->update_customer_properties({ registered => 'ada@example.com' },
                                        \%props);
$res = $c->last_response;
ok t_cmp($res->code, 200, 'customers: 200');
ok yes($ok && JSON::PP::is_bool($ok) && $ok,
       'customers: success true');
ok t_cmp($res->content, qr/^\{"success": true\}$/, 'one result object, nothing else');
ok t_cmp($res->request->content, qr/"city": "Z\\u00fcrich"/,
         'sent as Python json.dumps does (\\u escapes)');
ok t_cmp($res->request->content, qr/"mood": "\\ud83d\\ude00"/,
         'astral character sent as a surrogate pair');
my $got = props_of('sdk-shop', 'ada@example.com');
ok t_cmp($got->{first_name}, 'Ada', 'property recorded');
ok t_cmp($got->{city}, "Z\x{fc}rich", 'escaped text recorded as the character');
ok t_cmp($got->{mood}, "\x{1F600}", 'surrogate pair recorded as one character');
ok t_cmp($got->{score}, 42, 'number recorded as a number');
ok t_cmp(json()->encode($got->{tags}), '["a","b"]', 'array property recorded');
my ($nupd) = $dbh->selectrow_array(
    "SELECT count(*) FROM tb_customer_updates WHERE project = 'sdk-shop'");
ok t_cmp($nupd, 1, 'one customer update row');

# {} properties are allowed
$ok = $c->update_customer_properties({ registered => 'ada@example.com' }, {});
ok t_cmp($c->last_response->code, 200, 'customers with {} properties: 200');
ok yes($ok,
       'customers with {} properties: success');
($nupd) = $dbh->selectrow_array(
    "SELECT count(*) FROM tb_customer_updates WHERE project = 'sdk-shop'");
ok t_cmp($nupd, 2, 'recorded as a second update');

# ---- POST customers/events -------------------------------------------
$before = Time::HiRes::time();
$ok = $c->add_event({ registered => 'ada@example.com' }, 'page_view');
$after = Time::HiRes::time();
$res = $c->last_response;
ok t_cmp($res->code, 200, 'customers/events: 200');
ok yes($ok,
       'customers/events: success');
ok t_cmp($res->request->content,
         '{"customer_ids": {"registered": "ada@example.com"}, '
         . '"timestamp": null, "properties": null, "event_type": "page_view"}',
         'the SDK sends timestamp and properties as null');
my $ev = events_of('sdk-shop', 'ada@example.com');
ok t_cmp(scalar @$ev, 1, 'one event recorded');
ok t_cmp($ev->[0]{event_type}, 'page_view', 'event type recorded');
ok yes($ev->[0]{timestamp} >= $before - 1 && $ev->[0]{timestamp} <= $after + 1,
       'timestamp null: the receipt time');
ok t_cmp($ev->[0]{properties}, '{}', 'properties null: recorded as {}');

$ok = $c->add_event({ registered => 'ada@example.com', cookie => 'ck-1' },
                    'purchase', properties => { total_price => 1234.5,
                                                voucher_code => 'KA54' },
                    timestamp => 1700000000.25);
ok t_cmp($c->last_response->code, 200, 'event with properties and timestamp: 200');
ok yes($ok,
       'event with properties and timestamp: success');
$ev = events_of('sdk-shop', 'ada@example.com');
ok t_cmp(scalar @$ev, 2, 'second event recorded');
ok t_cmp($ev->[1]{timestamp}, 1700000000.25, 'timestamp kept with its fraction');
ok t_cmp(json()->encode(TB::decode($ev->[1]{properties})),
         '{"total_price":1234.5,"voucher_code":"KA54"}', 'properties recorded');
my ($cookie_owner) = $dbh->selectrow_array(
    "SELECT count(*) FROM tb_customer_ids a JOIN tb_customer_ids b
        ON a.customer_id = b.customer_id
     WHERE a.project = 'sdk-shop' AND a.id_name = 'registered'
       AND a.id_value = 'ada\@example.com'
       AND b.id_name = 'cookie' AND b.id_value = 'ck-1'");
ok t_cmp($cookie_owner, 1, 'second id attached to the same customer');

# ---- POST batch --------------------------------------------------------
$before = Time::HiRes::time();
my $out = $c->batch_commands([
    $c->get_system_time(batch => 1),
    $c->update_customer_properties({ registered => 'bob@example.com' },
                                   { first_name => 'Bob' }, batch => 1),
    $c->add_event({ registered => 'bob@example.com' }, 'signup', batch => 1),
]);
$after = Time::HiRes::time();
$res = $c->last_response;
ok t_cmp($res->code, 200, 'batch: 200');
my $raw = TB::decode($res->content);
ok t_cmp(scalar @{ $raw->{results} }, 3, 'batch: one result per command');
ok yes($raw->{start_time} <= $raw->{end_time},
       'start_time <= end_time');
ok t_cmp(scalar @$out, 3, 'the SDK reads three results');
ok yes($out->[0] >= $before - 1 && $out->[0] <= $after + 1,
       'first result: the time');
ok yes(JSON::PP::is_bool($out->[1]) && $out->[1],
       'second result: success');
ok yes(JSON::PP::is_bool($out->[2]) && $out->[2],
       'third result: success');
ok t_cmp(props_of('sdk-shop', 'bob@example.com')->{first_name}, 'Bob',
         'batch customers command recorded');
$ev = events_of('sdk-shop', 'bob@example.com');
ok t_cmp(scalar(@$ev) . ' ' . ($ev->[0]{event_type} // ''), '1 signup',
         'batch event recorded');

# a batch whose only command is invalid: the batch succeeds, the result not
my $n0 = counts();
$out = $c->batch_commands([
    $c->add_event({ registered => 'carol@example.com' }, '', batch => 1),
]);
ok t_cmp($c->last_response->code, 200, 'batch with a bad command: 200');
ok yes(JSON::PP::is_bool($out->[0]) && !$out->[0],
       'the SDK reads success false');
ok t_cmp(TB::decode($c->last_response->content)->{results}[0]{errors}[0],
         "Field 'event_type' is required.", 'the command names its error');
ok t_cmp(counts(), $n0, 'nothing recorded for the bad command');

# ---- refusals the SDK turns into exceptions ------------------------------
my $e = raises { $c->add_event({ registered => 'carol@example.com' }, '') };
ok yes($e,
       'single route, invalid command: the SDK raises');
ok t_cmp($e && $e->status, 200, '... on HTTP 200');
ok t_cmp($e ? "$e" : '', "Field 'event_type' is required.", '... with the errors list');
ok t_cmp(counts(), $n0, '... and nothing is recorded');

$e = raises { $c->update_customer_properties({}, { a => 1 }) };
ok t_cmp($e ? "$e" : '', 'At least one id should be specified.',
         'customers without ids: the SDK raises with the text');
ok t_cmp($e && $e->status, 200, '... on HTTP 200');
ok t_cmp(counts(), $n0, '... and nothing is recorded');

my $bad = TBClient->new('sdk-shop', $p->{key_id}, 'not-the-secret', url => $base);
for my $call ([ 'get_system_time' ],
              [ 'add_event', { registered => 'eve@example.com' }, 'x' ]) {
    my ($m, @a) = @$call;
    $e = raises { $bad->$m(@a) };
    ok t_cmp($e && $e->status, 403, "$m with a wrong secret: 403");
    ok t_cmp($e ? "$e" : '', 'Invalid secret', '... Invalid secret');
}
ok t_cmp(counts(), $n0, 'nothing recorded with a wrong secret');

my $nokey = TBClient->new('sdk-shop', 'no-such-key', 'x', url => $base);
$e = raises { $nokey->update_customer_properties({ registered => 'eve' }, { a => 1 }) };
ok t_cmp($e && $e->status, 401, 'unknown key: 401');
ok t_cmp($e ? "$e" : '', 'Access key not found', '... Access key not found');
ok t_cmp($e && $e->response->header('WWW-Authenticate'), qr/Basic/, '... WWW-Authenticate');

my $elsewhere = TBClient->new('sdk-other', $p->{key_id}, $p->{secret}, url => $base);
$e = raises { $elsewhere->add_event({ registered => 'eve' }, 'x') };
ok t_cmp($e && $e->status, 403, 'key of another project: 403');
ok t_cmp($e ? "$e" : '', 'Access key is not valid for this project.', '... its text');

my $ghost = TBClient->new('no-such-project', $p->{key_id}, $p->{secret}, url => $base);
$e = raises { $ghost->get_system_time };
ok t_cmp($e && $e->status, 404, 'project that does not exist: 404');
ok t_cmp($e ? "$e" : '', 'The requested URL was not found on the server.', '... its text');

my $bare = TBClient->new('sdk-shop', '', '', url => $base);   # HTTPBasicAuth('', '')
$e = raises { $bare->add_event({ registered => 'eve' }, 'x') };
ok yes($e && ($e->status == 401),
       'empty Basic credentials: 401');
ok t_cmp(counts(), $n0, 'nothing recorded by any refused call');

# The other project's own key still works there: the refusals above were
# about the key, not the route.
my $oc = TBClient->new('sdk-other', $other->{key_id}, $other->{secret}, url => $base);
ok yes($oc->add_event({ registered => 'olga@example.com' }, 'x'),
       'other project, own key: success');
ok t_cmp(scalar @{ events_of('sdk-other', 'olga@example.com') }, 1,
         'recorded under the other project');
ok t_cmp(scalar @{ events_of('sdk-shop', 'olga@example.com') }, 0,
         'and not under sdk-shop');

# Final tally of every command recorded above.
my $n = db_counts();
ok t_cmp($n->{tb_events}, 4, 'events: page_view, purchase, signup, other project');
ok t_cmp($n->{tb_customer_updates}, 3, 'customer updates: two for Ada, one for Bob');
