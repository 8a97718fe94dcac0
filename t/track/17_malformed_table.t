# The malformed-input table of issue 5, the part the other tables do not
# hold: hostile sizes (nesting 100 000 deep, 10 MB strings, 100 000 keys,
# 100 000 commands) and a wrong JSON type for every field the module
# reads, on the batch route and the single routes.  (Numbers, NaN,
# Infinity, 2^64, duplicate keys, \u0000, surrogates, invalid and overlong
# UTF-8, BOM, trailing garbage, comments, depth 33: 12_invalid_json.t;
# top level and "commands" wrong: 15_whole_request.t; 51 commands and
# every other limit: 13_limits.t; per-command texts next to a valid
# command: 11_command_errors.t.)
#
# Each case gets its exact status and text, writes no row, and the server
# then records a valid batch.  A few hostile but valid bodies (100 000
# properties, 100 000 ignored keys, a 10 MB ignored string) are accepted
# and stored whole.
use strict;
use warnings FATAL => 'all';

use Apache::Test;
use Apache::TestUtil;
use JSON::PP ();
use lib 't/lib';
use TB qw(post_json db db_clear batch_url rows batch_body res_ok res_err
          error_body jstr check_request CHECKS_PER_REQUEST);

my $C = CHECKS_PER_REQUEST;

# The module's texts (README "Routes and answers").
my $INVALID    = 'Invalid JSON';
my $NOT_OBJECT = 'Request body must be a JSON object.';
my $NOT_ARRAY  = "Field 'commands' must be an array.";
my $E_IDS      = "Field 'customer_ids' is required.";
my $E_VALID    = 'At least one valid id should be specified';
my $E_ET       = "Field 'event_type' is required.";
my $E_PROPS    = "Field 'properties' must be an object.";
my $E_DATA     = "Field 'data' is required.";
my $E_DATA_OBJ = "Field 'data' must be an object.";
my $E_NAME     = "Field 'name' is required.";
my $E_CMD      = 'Command must be a JSON object.';
my $E_CID      = "Field 'command_id' must be a string or an integer.";
my $E_AGE      = "Field 'age' must be a number of seconds, 0 or more.";
my $E_SIZE     = 'Command size must be smaller than 819200 bytes.';
sub e_time   { "Field '$_[0]' must be Unix time in seconds or an ISO-8601 date-time." }
sub e_id_str { "Value of customer id '$_[0]' must be a string." }
sub e_id     { "Unknown customer id '$_[0]'." }
sub e_many   { "Too many commands: at most $_[0] commands per batch." }

my $IDS = '"customer_ids": {"registered": "m1"}';
my $EV  = qq[$IDS, "event_type": "e"];
sub ev    { qq[{"name": "customers/events", "data": {$_[0]}}] }
sub cu    { qq[{"name": "customers", "data": {$_[0]}}] }
sub batch { '{"commands": [' . join(', ', @_) . ']}' }
sub with_value { batch(ev(qq[$EV, "properties": {"p": $_[0]}])) }

my $BIG = 10 * 1024 * 1024;            # 10 MB
my $N   = 100_000;
# $N distinct three-character keys: 100 000 members fit in a command
# smaller than 819 200 bytes ("abc":0, is 8 bytes)
my @A = ('A' .. 'Z', 'a' .. 'z', '0' .. '9', '_', '-');
my @KEYS = map { $A[$_ >> 12] . $A[($_ >> 6) & 63] . $A[$_ & 63] } 0 .. $N - 1;
sub members { join ',', map { qq["$_":$_[0]] } @KEYS }
my $MEMBERS = members('0');

# [label, url, body, status, answer (exact; times as T)]
my @cases;
my $U = batch_url('proj-mal');
sub whole { my ($label, $body, $status, $text, $url) = @_;
            push @cases, [$label, $url || $U, $body, $status, error_body($text)] }
sub one   { my ($label, $cmd, $errors, $cid) = @_;
            push @cases, [$label, $U, batch($cmd), 200, batch_body(res_err($errors, $cid))] }
sub route { my ($label, $route, $body, $errors) = @_;
            push @cases, ["$route: $label", batch_url('proj-mal', $route), $body, 200,
                          res_err($errors) . "\n"] }

# --- nesting 100 000 deep (the limit is 32)
my $deep_a = '[' x $N . ']' x $N;
my $deep_o = '{"a":' x $N . '1' . '}' x $N;
whole('depth 100 000: arrays in a property', with_value($deep_a), 400, $INVALID);
whole('depth 100 000: objects in a property', with_value($deep_o), 400, $INVALID);
whole('depth 100 000: never closed', with_value('[' x $N), 400, $INVALID);
whole('depth 100 000: in an ignored top-level key', qq[{"sdk": $deep_a, "commands": [${\ ev($EV)}]}], 400, $INVALID);
whole('depth 100 000: the whole body', $deep_a, 400, $INVALID);
whole('depth 100 000: a command', batch($deep_a), 400, $INVALID);
whole('depth 100 000: on customers/events', qq[{$EV, "properties": {"p": $deep_o}}], 400,
      $INVALID, batch_url('proj-mal', 'customers/events'));

# --- 10 MB strings
my $s10 = 'x' x $BIG;
one('10 MB string: a property value', ev(qq[$EV, "properties": {"p": "$s10"}]), [$E_SIZE]);
one('10 MB string: the command name', qq[{"name": "$s10", "data": {$EV}}], [$E_SIZE]);
one('10 MB string: a command_id, echoed', qq[{"name": "customers", "command_id": "$s10", "data": {$IDS}}],
    [$E_SIZE], jstr($s10));
# a command too large to parse: its command_id is still named, or refused
one('10 MB command, command_id an integer: echoed as json-c reads it',
    qq[{"command_id": -0, "name": "customers", "data": {"p": "$s10"}}], [$E_SIZE], '0');
one('10 MB command, command_id an object with a key twice',
    qq[{"command_id": {"a": 1, "a": 2}, "name": "customers", "data": {"p": "$s10"}}],
    [$E_CID, $E_SIZE]);
one('10 MB string: a customer id', ev(qq["customer_ids": {"registered": "$s10"}, "event_type": "e"]), [$E_SIZE]);
whole('10 MB string: unterminated', with_value('"' . $s10), 400, $INVALID);
whole('10 MB string: a raw control character at its end', with_value(qq["$s10\x01"]), 400, $INVALID);
whole('10 MB string: invalid UTF-8 at its end', with_value(qq["$s10\xc3("]), 400, $INVALID);
whole('10 MB string: a lone surrogate at its end', with_value(qq["$s10\\ud800"]), 400, $INVALID);
whole('10 MB string: \u0000 at its end', with_value(qq["$s10\\u0000"]), 400, $INVALID);
whole('10 MB string: the whole body', qq["$s10"], 400, $NOT_OBJECT);
whole('10 MB string: "commands"', qq[{"commands": "$s10"}], 400, $NOT_ARRAY);
route('10 MB string as a property value', 'customers', qq[{$IDS, "properties": {"p": "$s10"}}], [$E_SIZE]);
route('10 MB string as the event type', 'customers/events', qq[{$IDS, "event_type": "$s10"}], [$E_SIZE]);

# --- 100 000 keys
whole('100 000 properties, the last a duplicate', with_value('0, ' . members('0') . ', "AAA": 1'),
      400, $INVALID);
whole('100 000 properties of a customer, the last a duplicate',
      batch(cu(qq[$IDS, "properties": {$MEMBERS, "AAB": 2}])), 400, $INVALID);
whole('100 000 members of data, the last a duplicate',
      batch(qq[{"name": "customers/events", "data": {$MEMBERS, $EV, "AAC": 3}}]), 400, $INVALID);
whole('100 000 top-level keys, the last a duplicate',
      '{' . $MEMBERS . ', "commands": [' . ev($EV) . '], "AAD": 4}', 400, $INVALID);
whole('100 000 properties, one of them \u0000', with_value('0, ' . members('0') . ', "a\u0000": 1'),
      400, $INVALID);
one('100 000 unknown customer id names, each named',
    ev(qq["customer_ids": {$MEMBERS}, "event_type": "e"]), [(map { e_id($_) } @KEYS), $E_VALID]);
route('100 000 unknown customer id names', 'customers',
      qq[{"customer_ids": {$MEMBERS}}], [(map { e_id($_) } @KEYS), $E_VALID]);

# --- 100 000 commands (the limit is 50)
whole('100 000 commands', batch((ev($EV)) x $N), 400, e_many(50));
whole('100 000 system/time commands', batch(('{"name": "system/time"}') x $N), 400, e_many(50));
whole('100 000 empty objects as commands', batch(('{}') x $N), 400, e_many(50));
whole('100 000 commands, the last malformed', batch((ev($EV)) x ($N - 1), '{"name": }'), 400, $INVALID);

# --- a wrong JSON type for every field
my %T = (string => '"x"', integer => '7', float => '2.5', true => 'true',
         false => 'false', null => 'null', array => '[]', object => '{}');
my @TYPES = qw(string integer float true false null array object);
# field => [how a value X is sent, { type => errors }, route]
# (types not listed are valid there, or another case's subject)
my @fields = (
    ['commands', sub { qq[{"commands": $_[0]}] },
     { map { $_ => 'whole' } qw(string integer float true false null object) }],
    ['a command', sub { batch($_[0]) },
     { map { $_ => [$E_CMD] } qw(string integer float true false null array) }],
    ['name', sub { batch(qq[{"name": $_[0], "data": {$EV}}]) },
     { map { $_ => [$E_NAME] } qw(integer float true false null array object) }],
    ['data of an event', sub { batch(qq[{"name": "customers/events", "data": $_[0]}]) },
     { null => [$E_DATA], map { $_ => [$E_DATA_OBJ] } qw(string integer float true false array) }],
    ['data of a customer update', sub { batch(qq[{"name": "customers", "data": $_[0]}]) },
     { null => [$E_DATA], map { $_ => [$E_DATA_OBJ] } qw(string integer float true false array) }],
    ['command_id of an event', sub { batch(qq[{"name": "customers/events", "command_id": $_[0], "data": {$EV}}]) },
     { map { $_ => [$E_CID] } qw(float true false array object) }],
    ['command_id of a customer update', sub { batch(qq[{"name": "customers", "command_id": $_[0], "data": {$IDS}}]) },
     { map { $_ => [$E_CID] } qw(float true false array object) }],
    ['customer_ids of an event', sub { batch(ev(qq["customer_ids": $_[0], "event_type": "e"])) },
     { map { $_ => [$E_IDS] } qw(string integer float true false null array) }],
    ['customer_ids of a customer update', sub { batch(cu(qq["customer_ids": $_[0]])) },
     { map { $_ => [$E_IDS] } qw(string integer float true false null array) }],
    ['a hard id value', sub { batch(ev(qq["customer_ids": {"registered": $_[0]}, "event_type": "e"])) },
     { null => [$E_VALID], map { $_ => [e_id_str('registered'), $E_VALID] } qw(integer float true false array object) }],
    ['a soft id value', sub { batch(cu(qq["customer_ids": {"cookie": $_[0]}])) },
     { null => [$E_VALID], map { $_ => [e_id_str('cookie'), $E_VALID] } qw(integer float true false array object) }],
    ['event_type', sub { batch(ev(qq[$IDS, "event_type": $_[0]])) },
     { map { $_ => [$E_ET] } qw(integer float true false null array object) }],
    ['properties of an event', sub { batch(ev(qq[$EV, "properties": $_[0]])) },
     { map { $_ => [$E_PROPS] } qw(string integer float true false array) }],
    ['properties of a customer update', sub { batch(cu(qq[$IDS, "properties": $_[0]])) },
     { map { $_ => [$E_PROPS] } qw(string integer float true false array) }],
    ['timestamp', sub { batch(ev(qq[$EV, "timestamp": $_[0]])) },
     { map { $_ => [e_time('timestamp')] } qw(string true false array object) }],
    ['update_timestamp', sub { batch(cu(qq[$IDS, "update_timestamp": $_[0]])) },
     { map { $_ => [e_time('update_timestamp')] } qw(string true false array object) }],
    ['age of an event', sub { batch(ev(qq[$EV, "age": $_[0]])) },
     { map { $_ => [$E_AGE] } qw(string true false array object) }],
    ['age of a customer update', sub { batch(cu(qq[$IDS, "age": $_[0]])) },
     { map { $_ => [$E_AGE] } qw(string true false array object) }],
    ['event_type', sub { qq[{$IDS, "event_type": $_[0]}] },
     { map { $_ => [$E_ET] } qw(integer float true false null array object) }, 'customers/events'],
    ['customer_ids', sub { qq[{"customer_ids": $_[0], "event_type": "e"}] },
     { map { $_ => [$E_IDS] } qw(string integer float true false null array) }, 'customers/events'],
    ['properties', sub { qq[{$IDS, "properties": $_[0]}] },
     { map { $_ => [$E_PROPS] } qw(string integer float true false array) }, 'customers'],
    ['timestamp', sub { qq[{$EV, "timestamp": $_[0]}] },
     { map { $_ => [e_time('timestamp')] } qw(string true false array object) }, 'customers/events'],
    ['the body', sub { $_[0] },
     { map { $_ => 'not object' } qw(string integer float true false null array) }, 'customers'],
);
my $n_types = 0;
for my $f (@fields) {
    my ($field, $make, $want, $route) = @$f;
    for my $type (grep { $want->{$_} } @TYPES) {
        my $label = "$field: $type";
        my $body  = $make->($T{$type});
        $n_types++;
        if ($want->{$type} eq 'whole') {
            whole($label, $body, 400, $NOT_ARRAY);
        }
        elsif ($want->{$type} eq 'not object') {
            whole("$route: $label", $body, 400, $NOT_OBJECT, batch_url('proj-mal', $route));
        }
        elsif ($route) {
            route($label, $route, $body, $want->{$type});
        }
        else {
            push @cases, [$label, $U, $body, 200, batch_body(res_err($want->{$type}))];
        }
    }
}

# Hostile but valid: [label, body, rows, check of what is stored]
my $dbh;
my @accepted = (
    ['100 000 properties of an event', with_value('0, ' . members('1')),
     rows(customers => 1, ids => 1, events => 1),
     sub { my $p = JSON::PP->new->decode(scalar $dbh->selectrow_array('SELECT properties FROM tb_events'));
           return scalar(keys %$p) == $N + 1 && $p->{AAA} == 1 && $p->{p} == 0 ? 'stored whole'
                  : 'keys: ' . scalar(keys %$p) }],
    ['100 000 properties of a customer', batch(cu(qq[$IDS, "properties": {$MEMBERS}])),
     rows(customers => 1, ids => 1, updates => 1, properties => $N),
     sub { my ($n, $min, $max) = $dbh->selectrow_array(
               'SELECT count(*), min(name), max(name) FROM tb_customer_properties WHERE value = ?',
               undef, '0');
           return "$n $min $max" }, join(' ', $N, (sort @KEYS)[0, -1])],
    ['100 000 ignored top-level keys', '{' . $MEMBERS . ', "commands": [' . ev($EV) . ']}',
     rows(customers => 1, ids => 1, events => 1), undef],
    ['a 10 MB string in an ignored top-level key', qq[{"sdk": "$s10", "commands": [${\ ev($EV)}]}],
     rows(customers => 1, ids => 1, events => 1), undef],
);

plan tests => @cases * 2 * $C + @accepted * ($C + 1) + 1;
t_debug(scalar(@cases) . " malformed cases, $n_types of them wrong types");

my $VALID = batch(ev($EV));
for my $case (@cases) {
    my ($label, $url, $body, $status, $want) = @$case;
    db_clear();
    check_request(res => post_json($url, $body), name => $label, status => $status,
                  body => $want, raw_body => $status != 200, rows => rows());
    check_request(res => post_json($U, $VALID), name => "$label: then a valid batch",
                  status => 200, body => batch_body(res_ok()),
                  rows => rows(customers => 1, ids => 1, events => 1));
}

$dbh = db();
for my $case (@accepted) {
    my ($label, $body, $rows, $check, $want) = @$case;
    db_clear();
    check_request(res => post_json($U, $body), name => $label, status => 200,
                  body => batch_body(res_ok()), rows => $rows);
    if ($check) {
        ok t_cmp($check->(), $want // 'stored whole', "$label: stored");
    }
    else {
        ok t_cmp(scalar $dbh->selectrow_array('SELECT event_type FROM tb_events'), 'e',
                 "$label: the event is stored");
    }
}
db_clear();

# No child died on any of it.
my $log = Apache::Test::vars('t_logs') . '/error_log';
open my $fh, '<', $log or die "$log: $!";
my @crashes = grep { /exit signal|Segmentation fault|AH00052/ } <$fh>;
ok t_cmp(scalar @crashes, 0, 'no child process crashed');
