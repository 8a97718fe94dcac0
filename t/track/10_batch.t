# A valid mixed batch through the real server (SPEC §3, §4, §5): results
# in input order, command_id echoed as sent, the exact answer text, and
# the rows each command leaves; last writer wins for properties; extra
# top-level keys are ignored.
use strict;
use warnings FATAL => 'all';

use Apache::Test;
use Apache::TestUtil;
use lib 't/lib';
use TB qw(post_json decode db db_clear batch_url rows db_rows batch_body
          res_ok res_err res_time check_request CHECKS_PER_REQUEST);

my $C = CHECKS_PER_REQUEST;
plan tests => 5 * $C + 3 + 12 + 3 + 2;

# ------------------------------------------------------------------------
# 1. A mixed batch: customers, customers/events and system/time for three
#    customers, with string, integer and empty command_ids.

db_clear();

my $mixed = <<'JSON';
{"commands": [
  {"name": "customers", "command_id": "c-0",
   "data": {"customer_ids": {"registered": "alice@example.com", "cookie": "ck-alice"},
            "properties": {"first_name": "Alice", "age": 30, "tags": ["a", "b"],
                           "address": {"city": "Brno", "zip": null}, "vip": true},
            "update_timestamp": 1700000000}},
  {"name": "customers/events", "command_id": 7,
   "data": {"customer_ids": {"cookie": "ck-alice"},
            "event_type": "page_visit", "timestamp": 1700000100.25,
            "properties": {"url": "https://shop.example/a/b", "n": 1}}},
  {"name": "system/time", "command_id": "t"},
  {"name": "customers/events",
   "data": {"customer_ids": {"registered": "bob@example.com"},
            "event_type": "purchase", "timestamp": "2024-03-04T15:06:07.5Z",
            "properties": {"total": 12.50, "items": [{"sku": "A-1", "q": 2}]}}},
  {"name": "customers", "command_id": -3,
   "data": {"customer_ids": {"registered": "bob@example.com"},
            "properties": {"first_name": "Bob"}}},
  {"name": "customers/events",
   "data": {"customer_ids": {"registered": "alice@example.com", "cookie": "ck-alice-2"},
            "event_type": "login"}},
  {"name": "customers/events", "command_id": "",
   "data": {"customer_ids": {"registered": "carol"}, "event_type": "signup",
            "age": 10, "properties": null}},
  {"name": "system/time"},
  {"name": "customers", "command_id": 9223372036854775807,
   "data": {"customer_ids": {"cookie": "ck-dave"}, "properties": {}}},
  {"name": "customers/events", "command_id": "a\"b/\u00e9",
   "data": {"customer_ids": {"registered": "bob@example.com"},
            "event_type": "view", "timestamp": "2024-03-04T16:06:07+01:00"}}
]}
JSON

my $before = time;
my $r = post_json(batch_url('proj-a'), $mixed);
check_request(res => $r, name => 'mixed batch', status => 200,
    body => batch_body(res_ok('"c-0"'), res_ok('7'), res_time('"t"'), res_ok(),
                       res_ok('-3'), res_ok(), res_ok('""'), res_time(),
                       res_ok('9223372036854775807'),
                       res_ok(qq{"a\\"b/\xc3\xa9"})),
    # alice, bob, carol, dave; ids: alice x3, bob, carol, ck-dave;
    # events: page_visit, purchase, login, signup, view; updates: alice,
    # bob, dave; properties: alice 5, bob 1
    rows => rows(customers => 4, ids => 6, events => 5, updates => 3,
                 properties => 6));

my $ans = decode($r->content);
my $after = time;
ok $ans && $ans->{start_time} <= $ans->{end_time}
   && $ans->{start_time} >= $before - 1 && $ans->{end_time} <= $after + 1;
ok t_cmp(abs($ans->{results}[2]{time} - $ans->{end_time}) < 5, 1,
         'system/time answers the current time');
ok t_cmp($r->content, qr/"time": \d+\.\d{6}, "command_id": "t"/,
         'time with microseconds');

my $dbh = db();

# events of a customer, found through any of its ids
my $events_of = sub {
    my ($name, $value) = @_;
    return $dbh->selectall_arrayref(
        "SELECT e.event_type, e.timestamp, e.properties, e.command_id,
                e.received_at, e.project
           FROM tb_events e
           JOIN tb_customer_ids i ON i.customer_id = e.customer_id
          WHERE i.project = 'proj-a' AND i.id_name = ? AND i.id_value = ?
          ORDER BY e.timestamp", undef, $name, $value);
};
my $alice = $events_of->('cookie', 'ck-alice-2');
ok t_cmp(join(',', map { $_->[0] } @$alice), 'page_visit,login',
         "alice's events, through the cookie added later");
ok t_cmp("$alice->[0][1]|$alice->[0][2]|$alice->[0][3]|$alice->[0][5]",
         '1700000100.25|{"url":"https://shop.example/a/b","n":1}|7|proj-a',
         'event row: timestamp kept with its fraction, properties, command_id');
ok t_cmp(defined $alice->[1][3] ? 'command_id' : 'NULL', 'NULL',
         'no command_id stored when none was sent');
ok t_cmp(abs($alice->[1][1] - $alice->[1][4]) < 1e-6 ? 1 : 0, 1,
         'absent timestamp = receipt time');

my $bob = $events_of->('registered', 'bob@example.com');
ok t_cmp(join('|', map { "$_->[0]\@$_->[1]" } @$bob),
         'view@1709564767|purchase@1709564767.5',
         'ISO-8601 timestamps, with offset and with fraction');
ok t_cmp($bob->[1][2], '{"total":12.50,"items":[{"sku":"A-1","q":2}]}',
         'event properties stored as sent');
ok t_cmp($bob->[0][3], qq{a"b/\xc3\xa9}, 'string command_id stored decoded');

my $carol = $events_of->('registered', 'carol');
ok t_cmp(sprintf('%.6f', $carol->[0][4] - $carol->[0][1]) . "|$carol->[0][2]|"
         . $carol->[0][3], '10.000000|{}|', 'age: receipt time - age; '
         . 'null properties stored as {}; empty command_id kept');

my $props = $dbh->selectall_arrayref(
    "SELECT i.id_value, p.name, p.value, p.updated_at
       FROM tb_customer_properties p
       JOIN tb_customer_ids i ON i.customer_id = p.customer_id
      WHERE i.project = 'proj-a' AND i.id_name = 'registered'
      ORDER BY i.id_value, p.name");
ok t_cmp(join(' ', map { "$_->[0]:$_->[1]=$_->[2]" } @$props),
         'alice@example.com:address={"city":"Brno","zip":null} '
         . 'alice@example.com:age=30 alice@example.com:first_name="Alice" '
         . 'alice@example.com:tags=["a","b"] alice@example.com:vip=true '
         . 'bob@example.com:first_name="Bob"',
         'current properties, each value as JSON');
ok t_cmp($props->[0][3], 1700000000, 'update_timestamp kept per property');

my $ids = $dbh->selectall_arrayref(
    "SELECT i.id_name, i.id_value, i.hard, i.customer_id
       FROM tb_customer_ids i WHERE i.project = 'proj-a'
      ORDER BY i.customer_id, i.id_name, i.id_value");
my %by_cust;
push @{ $by_cust{ $_->[3] } }, "$_->[0]=$_->[1]" . ($_->[2] ? '(hard)' : '')
    for @$ids;
ok t_cmp(join(' | ', map { join ',', @{ $by_cust{$_} } } sort { $a <=> $b } keys %by_cust),
         'cookie=ck-alice,cookie=ck-alice-2,registered=alice@example.com(hard) | '
         . 'registered=bob@example.com(hard) | registered=carol(hard) | '
         . 'cookie=ck-dave',
         'customer ids mapping: one profile per person, hard/soft kept');
my $upd = $dbh->selectall_arrayref(
    "SELECT command_id, properties FROM tb_customer_updates ORDER BY id");
ok t_cmp(join(' | ', map { ($_->[0] // 'NULL') . " $_->[1]" } @$upd),
         'c-0 {"first_name":"Alice","age":30,"tags":["a","b"],'
         . '"address":{"city":"Brno","zip":null},"vip":true} | '
         . '-3 {"first_name":"Bob"} | 9223372036854775807 {}',
         'customer updates, one row per command, command_id as text');

# ------------------------------------------------------------------------
# 2. Last writer wins by update_timestamp; a tie goes to the later command.

db_clear();
my $cust = sub {
    my ($props, $ts) = @_;
    return qq[{"name": "customers", "data": {"customer_ids": {"registered": "lww"}, ]
         . qq["properties": $props] . (defined $ts ? qq[, "update_timestamp": $ts] : '')
         . '}}';
};
$r = post_json(batch_url('proj-b'), '{"commands": ['
    . join(', ', $cust->('{"plan": "gold"}', 1600000200),
                 $cust->('{"plan": "silver", "color": "blue"}', 1600000100),
                 $cust->('{"color": "green"}', 1600000100)) . ']}');
check_request(res => $r, name => 'last writer wins, one batch', status => 200,
    body => batch_body(res_ok(), res_ok(), res_ok()),
    rows => rows(customers => 1, ids => 1, updates => 3, properties => 2));

my $current = sub {
    my $h = $dbh->selectall_arrayref(
        "SELECT name, value FROM tb_customer_properties ORDER BY name");
    return join ' ', map { "$_->[0]=$_->[1]" } @$h;
};
ok t_cmp($current->(), 'color="green" plan="gold"',
         'older update loses; tie goes to the later command');

$r = post_json(batch_url('proj-b'), '{"commands": ['
    . $cust->('{"plan": "platinum"}', '"2020-09-13T12:29:10Z"') . ']}');
check_request(res => $r, name => 'older update in a later request',
    status => 200, body => batch_body(res_ok()),
    rows => rows(customers => 1, ids => 1, updates => 4, properties => 2));
ok t_cmp($current->(), 'color="green" plan="gold"',
         'an older update_timestamp does not overwrite');

$r = post_json(batch_url('proj-b'), '{"commands": ['
    . $cust->('{"plan": "bronze"}', undef) . ']}');
check_request(res => $r, name => 'update without timestamp', status => 200,
    body => batch_body(res_ok()),
    rows => rows(customers => 1, ids => 1, updates => 5, properties => 2));
ok t_cmp($current->(), 'color="green" plan="bronze"',
         'no update_timestamp = receipt time, newest');

# ------------------------------------------------------------------------
# 3. Extra top-level keys next to "commands" are ignored (SPEC §2).

db_clear();
$r = post_json(batch_url('proj-c'), <<'JSON');
{"sdk": "python", "sdk_version": "4.1.0",
 "commands": [{"name": "customers/events",
               "data": {"customer_ids": {"registered": "sdk"}, "event_type": "e"}},
              {"name": "system/time"}],
 "magento_version": "2.4.6", "other": {"nested": [1, 2.5, {"x": null}], "t": true}}
JSON
check_request(res => $r, name => 'extra top-level keys', status => 200,
    body => batch_body(res_ok(), res_time()),
    rows => rows(customers => 1, ids => 1, events => 1));
ok t_cmp(scalar $dbh->selectrow_array('SELECT event_type FROM tb_events'), 'e',
         'the command next to extra keys is recorded');
ok t_cmp(scalar $dbh->selectrow_array(
             "SELECT count(*) FROM tb_events WHERE project = 'proj-c'"), 1,
         'recorded under the project of the URL');
db_clear();
