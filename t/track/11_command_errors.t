# Per-command validation (SPEC §3, §4) through the real server.  Every
# case sends one invalid command next to a valid one: the batch answers
# 200, the invalid command fails alone with all of its errors (exact
# texts), command_id is echoed when valid, and only the valid command is
# recorded.  A second table checks what must be accepted, and how its
# time is stored.
use strict;
use warnings FATAL => 'all';

use Apache::Test;
use Apache::TestUtil;
use lib 't/lib';
use TB qw(post_json db db_clear batch_url rows batch_body res_ok res_err
          check_request CHECKS_PER_REQUEST);

my $C = CHECKS_PER_REQUEST;

# The module's texts (tb_batch.c).
my $E_IDS      = "Field 'customer_ids' is required.";
my $E_NO_ID    = "At least one id should be specified.";
my $E_VALID    = "At least one valid id should be specified";
my $E_ET       = "Field 'event_type' is required.";
my $E_PROPS    = "Field 'properties' must be an object.";
my $E_DATA     = "Field 'data' is required.";
my $E_DATA_OBJ = "Field 'data' must be an object.";
my $E_NAME     = "Field 'name' is required.";
my $E_CMD      = "Command must be a JSON object.";
my $E_CID      = "Field 'command_id' must be a string or an integer.";
my $E_AGE      = "Field 'age' must be a number of seconds, 0 or more.";
sub e_range    { "Field '$_[0]' is out of range: expected Unix time in "
                 . "seconds, at most 24 hours ahead; were milliseconds sent?" }
sub e_time     { "Field '$_[0]' must be Unix time in seconds or an ISO-8601 "
                 . "date-time." }
sub e_pname    { "Property names must be 1 to $_[0] bytes long." }
sub e_pvalue   { "Value of property '$_[0]' must be smaller than $_[1] bytes." }
sub e_etlen    { "Field 'event_type' must be at most $_[0] bytes long." }
sub e_id_name  { "Unknown customer id '$_[0]'." }
sub e_id_str   { "Value of customer id '$_[0]' must be a string." }
sub e_cmd_name { "Unknown command name '$_[0]'." }

# Command texts.  $data is the inside of "data": {...}.
sub ev  { qq[{"name": "customers/events", "data": {$_[0]}}] }
sub cu  { qq[{"name": "customers", "data": {$_[0]}}] }
sub evc { qq[{"name": "customers/events", "command_id": $_[0], "data": {$_[1]}}] }
my $ID  = '"customer_ids": {"registered": "u1"}';
my $OK  = qq[$ID, "event_type": "e"];

my $now    = time;
my $future = $now + 86400 + 3600;     # more than 24 h ahead
my $x129   = 'x' x 129;
my $x128   = 'y' x 128;

# [label, bad command, [errors], command_id as echoed (JSON) or undef,
#  location prefix]
my @bad = (
    # customer_ids
    ['customer_ids missing',        ev('"event_type": "e"'), [$E_IDS]],
    ['customer_ids null',           ev('"customer_ids": null, "event_type": "e"'), [$E_IDS]],
    ['customer_ids array',          ev('"customer_ids": ["u1"], "event_type": "e"'), [$E_IDS]],
    ['customer_ids string',         ev('"customer_ids": "u1", "event_type": "e"'), [$E_IDS]],
    ['customer_ids missing (customers)', cu('"properties": {"a": 1}'), [$E_IDS]],
    ['customer_ids empty',          ev('"customer_ids": {}, "event_type": "e"'), [$E_NO_ID]],
    ['customer_ids empty (customers)', cu('"customer_ids": {}'), [$E_NO_ID]],
    (map { ["id value " . $_->[0], ev(qq["customer_ids": {"registered": $_->[1]}, "event_type": "e"]),
            [$E_VALID]] }
         ['""', '""'], ['"null"', '"null"'], ['"undefined"', '"undefined"'],
         ['"---"', '"---"'], ['" "', '" "'], ['"@._-+ /"', '"@._-+ /"'],
         ['JSON null', 'null'],
         # SPEC §4: a usable value has at least one letter or digit;
         # non-ASCII punctuation and spaces are neither
         ['em dashes', '"\u2014\u2014"'], ['no-break space', '"\u00a0"']),
    ['all ids unusable',            ev('"customer_ids": {"registered": "", "cookie": "undefined"}, "event_type": "e"'),
                                    [$E_VALID]],
    ['unusable ids (customers)',    cu('"customer_ids": {"cookie": "null"}, "properties": {"a": 1}'), [$E_VALID]],
    ['unknown id name',             ev('"customer_ids": {"email": "a@b.c"}, "event_type": "e"'),
                                    [e_id_name('email'), $E_VALID]],
    ['unknown id next to a valid one', ev('"customer_ids": {"registered": "u1", "email": "a@b.c"}, "event_type": "e"'),
                                    [e_id_name('email')]],
    ['two unknown id names',        ev('"customer_ids": {"phone": "1", "Registered": "u1"}, "event_type": "e"'),
                                    [e_id_name('phone'), e_id_name('Registered'), $E_VALID]],
    ['unknown id name, 128 bytes',  ev(qq["customer_ids": {"$x128": "v"}, "event_type": "e"]),
                                    [e_id_name($x128), $E_VALID]],
    ['unknown id name, 129 bytes, not echoed', ev(qq["customer_ids": {"$x129": "v"}, "event_type": "e"]),
                                    ['Unknown customer id.', $E_VALID]],
    ['id name quoted as sent',      ev('"customer_ids": {"a\"b": "v"}, "event_type": "e"'),
                                    [e_id_name('a"b'), $E_VALID]],
    ['cookie is not configured on /small', ev('"customer_ids": {"cookie": "c1"}, "event_type": "e"'),
                                    [e_id_name('cookie'), $E_VALID], undef, '/small'],
    (map { ["id value $_", ev(qq["customer_ids": {"registered": $_}, "event_type": "e"]),
            [e_id_str('registered'), $E_VALID]] } '123', 'true', '{}', '["u1"]', '1.5'),
    ['non-string id next to a usable one', ev('"customer_ids": {"registered": 5, "cookie": "c1"}, "event_type": "e"'),
                                    [e_id_str('registered')]],

    # event_type
    ['event_type missing',          ev($ID), [$E_ET]],
    (map { ["event_type $_", ev(qq[$ID, "event_type": $_]), [$E_ET]] }
         '""', 'null', '5', '["e"]', '{"e": 1}', 'true'),
    ['event_type 129 bytes',        ev(qq[$ID, "event_type": "$x129"]), [e_etlen(128)]],
    ['event_type 17 bytes on /small', ev(qq[$ID, "event_type": "abcdefghijklmnopq"]), [e_etlen(16)],
                                    undef, '/small'],

    # properties
    (map { ["event properties $_", ev(qq[$OK, "properties": $_]), [$E_PROPS]] }
         '[]', '[{"a": 1}]', '"a=1"', '5', 'true'),
    (map { ["customer properties $_", cu(qq[$ID, "properties": $_]), [$E_PROPS]] }
         '[]', '"a"', 'false'),
    ['property name empty',         ev(qq[$OK, "properties": {"": 1}]), [e_pname(128)]],
    ['property name 129 bytes',     ev(qq[$OK, "properties": {"$x129": 1}]), [e_pname(128)]],
    ['customer property name empty', cu(qq[$ID, "properties": {"": "v"}]), [e_pname(128)]],
    ['customer property name 129 bytes', cu(qq[$ID, "properties": {"a": 1, "$x129": 2}]), [e_pname(128)]],
    ['property value too large',    ev(qq[$OK, "properties": {"big": "] . ('v' x 16382) . '"}'),
                                    [e_pvalue('big', 16384)]],
    ['customer property value too large', cu(qq[$ID, "properties": {"big": ] . '['
                                       . join(',', ('"abcdefg"') x 1639) . ']}'),
                                    [e_pvalue('big', 16384)]],
    ['every bad property reported', ev(qq[$OK, "properties": {"": 1, "fine": 2, "$x129": 3, "big": "] . ('v' x 20000) . '"}'),
                                    [e_pname(128), e_pname(128), e_pvalue('big', 16384)]],

    # data
    ['data missing',                '{"name": "customers/events"}', [$E_DATA]],
    ['data null',                   '{"name": "customers", "data": null}', [$E_DATA]],
    (map { ["data $_", qq[{"name": "customers/events", "data": $_}], [$E_DATA_OBJ]] }
         '[]', '"x"', '1', 'true'),
    ['data array (customers)',      '{"name": "customers", "data": [{"customer_ids": {"registered": "u1"}}]}', [$E_DATA_OBJ]],

    # name
    ['name missing',                qq[{"data": {$OK}}], [$E_NAME]],
    (map { ["name $_", qq[{"name": $_, "data": {$OK}}], [$E_NAME]] }
         'null', '5', '["customers"]', '{}'),
    ['name unknown',                qq[{"name": "customers/update", "data": {$OK}}], [e_cmd_name('customers/update')]],
    ['name is case-sensitive',      qq[{"name": "Customers", "data": {$OK}}], [e_cmd_name('Customers')]],
    ['name empty',                  qq[{"name": "", "data": {$OK}}], [e_cmd_name('')]],
    ['name 129 bytes, not echoed',  qq[{"name": "$x129"}], ['Unknown command name.']],
    ['unknown name with command_id', qq[{"name": "track", "command_id": "k1"}], [e_cmd_name('track')], '"k1"'],

    # the command itself
    (map { ["command $_", $_, [$E_CMD]] }
         '"customers"', '42', 'null', 'true', '[]', qq{[{"name": "customers/events", "data": {$OK}}]}),

    # command_id
    (map { ["command_id $_", evc($_, $OK), [$E_CID]] }
         '1.5', '1.0', '1e3', 'true', '[]', '{}', '["a"]'),
    ['command_id wrong on system/time', '{"name": "system/time", "command_id": 0.5}', [$E_CID]],
    ['command_id wrong and name missing', '{"command_id": false}', [$E_CID, $E_NAME]],
    ['command_id echoed on failure (string)', evc('"e-1"', $ID), [$E_ET], '"e-1"'],
    ['command_id echoed on failure (integer)', evc('-12', '"event_type": "e"'), [$E_IDS], '-12'],

    # timestamps
    (map { ["timestamp $_", ev(qq[$OK, "timestamp": $_]), [e_time('timestamp')]] }
         '"yesterday"', '"1700000000"', '""', 'true', '{}', '[1700000000]',
         '"2024-02-30T00:00:00Z"', '"2024-03-04T25:00:00Z"', '"2024-03-04T15:06:07+2500"',
         '"2024-03-04T15:06:07 UTC"'),
    (map { ["timestamp $_", ev(qq[$OK, "timestamp": $_]), [e_range('timestamp')]] }
         '-1', '-0.000001', '1700000000000', '1.7e12', $future, '"2999-01-01T00:00:00Z"',
         '"1970-01-01T00:00:00+01:00"',
         # SPEC §4: a negative time is out of range, however it is written
         '"1969-12-31T23:59:59Z"'),
    (map { ["update_timestamp $_", cu(qq[$ID, "properties": {"a": 1}, "update_timestamp": $_]),
            [e_range('update_timestamp')]] } '-5', '1700000000000', $future),
    (map { ["update_timestamp $_", cu(qq[$ID, "update_timestamp": $_]), [e_time('update_timestamp')]] }
         '"soon"', 'false'),
    (map { ["age $_", ev(qq[$OK, "age": $_]), [$E_AGE]] } '-1', '"10"', 'true', '[]'),
    ['age null timestamp, negative age', ev(qq[$OK, "timestamp": null, "age": -3]), [$E_AGE]],
    ['age in milliseconds',         ev(qq[$OK, "age": ] . ($now * 1000)), [e_range('age')]],

    # all errors of one command, in order
    ['every error of an event',
     '{"name": "customers/events", "command_id": 1.5, "data": {"customer_ids": {}, '
     . '"event_type": "", "properties": [], "timestamp": -1}}',
     [$E_CID, $E_NO_ID, $E_ET, $E_PROPS, e_range('timestamp')]],
    ['every error of a customer update',
     '{"name": "customers", "command_id": "all", "data": {"customer_ids": {"email": "x", "registered": ""}, '
     . qq["properties": {"": 1, "ok": 2, "big": "] . ('z' x 16383) . '"}, "update_timestamp": "x"}}',
     [e_id_name('email'), $E_VALID, e_pname(128), e_pvalue('big', 16384),
      e_time('update_timestamp')], '"all"'],
    ['every error on /small',
     qq[{"name": "customers/events", "data": {"customer_ids": {"registered": 1}, "event_type": "abcdefghijklmnopqr", ]
     . qq["properties": {"abcdefghijklmnopq": 1, "v": "] . ('w' x 63) . '"}, "age": -1}}',
     [e_id_str('registered'), $E_VALID, e_etlen(16), e_pname(16), e_pvalue('v', 64), $E_AGE],
     undef, '/small'],
);

# [label, data of an accepted event, where its timestamp should be:
#  a number, or ['received', offset]]
my @good = (
    ['timestamp integer',            '"timestamp": 1700000000', 1700000000],
    ['timestamp 0',                  '"timestamp": 0', 0],
    ['timestamp with microseconds',  '"timestamp": 1700000000.123456', 1700000000.123456],
    ['timestamp exponent',           '"timestamp": 1.7E9', 1700000000],
    ['timestamp null',               '"timestamp": null', ['received', 0]],
    ['timestamp absent',             '"properties": {}', ['received', 0]],
    ['timestamp 23 h ahead',         '"timestamp": ' . ($now + 23 * 3600), $now + 23 * 3600],
    ['ISO-8601 Z',                   '"timestamp": "2024-03-04T15:06:07Z"', 1709564767],
    ['ISO-8601 fraction',            '"timestamp": "2024-03-04T15:06:07.25Z"', 1709564767.25],
    ['ISO-8601 offset',              '"timestamp": "2024-03-04T17:06:07+02:00"', 1709564767],
    ['ISO-8601 negative offset',     '"timestamp": "2024-03-04T10:06:07-05:00"', 1709564767],
    ['ISO-8601 offset hhmm',         '"timestamp": "2024-03-04T16:36:07+0130"', 1709564767],
    ['ISO-8601 no zone = UTC',       '"timestamp": "2024-03-04T15:06:07"', 1709564767],
    ['ISO-8601 date only',           '"timestamp": "2024-03-04"', 1709510400],
    ['ISO-8601 leap day',            '"timestamp": "2024-02-29T00:00:00Z"', 1709164800],
    ['ISO-8601 epoch',               '"timestamp": "1970-01-01T00:00:00Z"', 0],
    # the same instant as the epoch, written with a negative offset
    ['ISO-8601 epoch, offset -01:00', '"timestamp": "1969-12-31T23:00:00-01:00"', 0],
    ['age',                          '"age": 10.5', ['received', -10.5]],
    ['age 0',                        '"age": 0', ['received', 0]],
    ['timestamp null, age',          '"timestamp": null, "age": 60', ['received', -60]],
    ['properties null',              '"properties": null', ['received', 0]],
    ['property name 128 bytes',      qq["properties": {"$x128": 1}], ['received', 0]],
    ['property value 16383 bytes',   '"properties": {"v": "' . ('v' x 16381) . '"}', ['received', 0]],
    ['event_type 128 bytes',         undef, ['received', 0], qq["customer_ids": {"registered": "g"}, "event_type": "$x128"]],
    (map { ["usable id $_->[0]", undef, ['received', 0],
            qq["customer_ids": {"registered": $_->[1]}, "event_type": "e"]] }
         ['"0"', '"0"'], ['"a"', '"a"'], ['" x "', '" x "'], ['"-1"', '"-1"'],
         ['"\u00e9"', '"\u00e9"'], ['"NULLABLE"', '"NULLABLE"']),
    ['an unusable id next to a usable one', undef, ['received', 0],
     '"customer_ids": {"registered": "", "cookie": "c1"}, "event_type": "e"'],
);

plan tests => @bad * ($C + 0) + @good * ($C + 1) + 1;

my $i = 0;
for my $case (@bad) {
    my ($label, $cmd, $errors, $cid, $prefix) = @$case;
    db_clear();
    $i++;
    my $good = ev(qq["customer_ids": {"registered": "good-$i"}, "event_type": "good"]);
    # alternate the order, so "input order" is checked both ways
    my @cmds = $i % 2 ? ($good, $cmd) : ($cmd, $good);
    my @res  = $i % 2 ? (res_ok(), res_err($errors, $cid))
                      : (res_err($errors, $cid), res_ok());
    my $r = post_json(batch_url('proj-err', 'batch', $prefix),
                      '{"commands": [' . join(', ', @cmds) . ']}');
    check_request(res => $r, name => $label, status => 200,
                  body => batch_body(@res),
                  rows => rows(customers => 1, ids => 1, events => 1));
}

my $dbh = db();
for my $case (@good) {
    my ($label, $extra, $want, $data) = @$case;
    db_clear();
    $data //= qq[$OK, $extra];
    my $r = post_json(batch_url('proj-ok'),
                      '{"commands": [' . ev($data) . ']}');
    check_request(res => $r, name => $label, status => 200,
                  body => batch_body(res_ok()),
                  rows => rows(customers => 1, ids => 1, events => 1));
    my ($ts, $recv) = $dbh->selectrow_array(
        'SELECT timestamp, received_at FROM tb_events');
    if (ref $want) {
        ok t_cmp(defined $ts && abs($ts - ($recv + $want->[1])) < 1e-6 ? 'ok' : $ts,
                 'ok', "$label: timestamp = receipt time $want->[1]");
    }
    else {
        ok t_cmp(defined $ts && abs($ts - $want) < 1e-6 ? 'ok' : $ts, 'ok',
                 "$label: timestamp $want");
    }
}

# update_timestamp as ISO-8601 is the update time of each property
db_clear();
post_json(batch_url('proj-ok'), '{"commands": ['
    . cu(qq[$ID, "properties": {"a": 1}, "update_timestamp": "2024-03-04T15:06:07.5Z"])
    . ']}');
ok t_cmp(scalar $dbh->selectrow_array(
             'SELECT updated_at FROM tb_customer_properties'), 1709564767.5,
         'update_timestamp as ISO-8601');
db_clear();
