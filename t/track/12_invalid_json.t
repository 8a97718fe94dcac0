# Strict JSON (SPEC §2): each malformed body is refused as a whole with
# 400 {"success": false, "errors": ["Invalid JSON"]}, records nothing, and
# the server answers the next valid request.  Bodies that are valid RFC
# 8259 text, however unusual, are accepted.
use strict;
use warnings FATAL => 'all';

use Apache::Test;
use Apache::TestUtil;
use lib 't/lib';
use TB qw(post_json post_raw db db_clear batch_url rows batch_body res_ok error_body
          check_request CHECKS_PER_REQUEST);

my $C = CHECKS_PER_REQUEST;

# A valid batch with one event whose property "p" holds $v (JSON text).
sub with_value {
    my ($v, $key) = @_;
    $key //= 'p';
    return '{"commands": [{"name": "customers/events", "data": {"customer_ids": '
         . '{"registered": "j"}, "event_type": "e", "properties": {"'
         . $key . '": ' . $v . '}}}]}';
}
my $VALID = with_value('1');
my $CMD   = '{"name": "customers/events", "data": {"customer_ids": {"registered": "j"}, "event_type": "e"}}';

# A body nested $n levels deep in all (the top-level object is level 1):
# top {, commands [, command {, data {, properties {, then arrays.
sub depth_body {
    my $n = shift;
    my $k = $n - 5;
    return with_value('[' x $k . ']' x $k);
}
sub depth_extra {      # the same through an ignored top-level key
    my $n = shift;
    my $k = $n - 1;
    return '{"sdk": ' . '[' x $k . ']' x $k . ', "commands": [' . $CMD . ']}';
}

sub utf16le { my $s = shift; join '', map { "$_\0" } split //, $s }

my @invalid = (
    # numbers
    ['NaN',                      with_value('NaN')],
    ['Infinity',                 with_value('Infinity')],
    ['-Infinity',                with_value('-Infinity')],
    ['nan',                      with_value('nan')],
    ['1e400',                    with_value('1e400')],
    ['-1e400',                   with_value('-1e400')],
    ['1.7976931348623159e308 (rounds to infinity)', with_value('1.7976931348623159e308')],
    ['0.1e310',                  with_value('0.1e310')],
    ['2^64 as an integer',       with_value('18446744073709551616')],
    ['-2^63 - 1',                with_value('-9223372036854775809')],
    ['30-digit integer',         with_value('123456789012345678901234567890')],
    ['leading zero',             with_value('01')],
    ['leading plus',             with_value('+1')],
    ['no integer part',          with_value('.5')],
    ['no fraction digits',       with_value('1.')],
    ['no exponent digits',       with_value('1e')],
    ['hexadecimal',              with_value('0x10')],
    ['minus alone',              with_value('-')],
    # duplicate keys
    ['duplicate "commands"',     '{"commands": [' . $CMD . '], "commands": [' . $CMD . ']}'],
    ['duplicate top-level key',  '{"sdk": "a", "commands": [' . $CMD . '], "sdk": "b"}'],
    ['duplicate top-level key, escaped', '{"commands": [' . $CMD . '], "comm\u0061nds": []}'],
    ['duplicate key in a command', '{"commands": [{"name": "customers", "name": "customers/events", '
                                   . '"data": {"customer_ids": {"registered": "j"}, "event_type": "e"}}]}'],
    ['duplicate key in data',    '{"commands": [{"name": "customers/events", "data": {"customer_ids": '
                                 . '{"registered": "j"}, "event_type": "e", "event_type": "f"}}]}'],
    ['duplicate customer id',    '{"commands": [{"name": "customers/events", "data": {"customer_ids": '
                                 . '{"registered": "j", "registered": "k"}, "event_type": "e"}}]}'],
    ['duplicate property',       with_value('1, "p": 2')],
    ['duplicate key, nested',    with_value('{"a": 1, "b": {"c": 1, "c": 1}}')],
    ['duplicate key, escaped, in a command', with_value('{"a": 1, "\u0061": 2}')],
    ['duplicate key in a second command', '{"commands": [' . $CMD . ', {"name": "system/time", '
                                          . '"command_id": 1, "command_id": 2}]}'],
    # NUL
    ['\u0000 in a property name', with_value('1', 'a\u0000b')],
    ['\u0000 in a value',        with_value('"a\u0000"')],
    ['\u0000 in a top-level key', '{"sdk\u0000": 1, "commands": [' . $CMD . ']}'],
    ['\u0000 in a customer id',  '{"commands": [{"name": "customers/events", "data": {"customer_ids": '
                                 . '{"registered": "j\u0000k"}, "event_type": "e"}}]}'],
    ['\u0000 in the command name', '{"commands": [{"name": "system/time\u0000"}]}'],
    # surrogates
    ['lone high surrogate',      with_value('"\ud800"')],
    ['lone low surrogate',       with_value('"\udc00"')],
    ['high surrogate, then a letter', with_value('"\ud800\u0041"')],
    ['high surrogate, then text', with_value('"\ud83dxx"')],
    ['surrogates reversed',      with_value('"\ude00\ud83d"')],
    ['two high surrogates',      with_value('"\ud83d\ud83d"')],
    ['lone surrogate in a key',  with_value('1', '\udfff')],
    # UTF-8
    ['byte 0xFF',                with_value(qq{"a\xffb"})],
    ['lone continuation byte',   with_value(qq{"\x80"})],
    ['truncated 2-byte sequence', with_value(qq{"\xc3"})],
    ['truncated 4-byte sequence', with_value(qq{"\xf0\x9f\x98"})],
    ['overlong "/"',             with_value(qq{"\xc0\xaf"})],
    ['overlong NUL',             with_value(qq{"\xc0\x80"})],
    ['overlong 3-byte',          with_value(qq{"\xe0\x80\xaf"})],
    ['overlong 4-byte',          with_value(qq{"\xf0\x80\x80\xaf"})],
    ['UTF-8 encoded surrogate',  with_value(qq{"\xed\xa0\x80"})],
    ['above U+10FFFF',           with_value(qq{"\xf4\x90\x80\x80"})],
    ['5-byte sequence',          with_value(qq{"\xf8\x88\x80\x80\x80"})],
    ['Latin-1 byte in a key',    with_value('1', "caf\xe9")],
    ['UTF-8 byte outside a string', with_value("\xc3\xa9")],
    ['byte order mark',          "\xef\xbb\xbf$VALID"],
    ['UTF-16LE with BOM',        "\xff\xfe" . utf16le($VALID)],
    # structure
    ['trailing garbage',         "${VALID}x"],
    ['a second value',           "$VALID {}"],
    ['trailing NUL byte',        "$VALID\0"],
    ['trailing comma after the value', "$VALID,"],
    ['block comment',            "/* batch */ $VALID"],
    ['line comment',             with_value("1 // one\n")],
    ['trailing comma in commands', '{"commands": [' . $CMD . ',]}'],
    ['trailing comma in an object', with_value('{"a": 1,}')],
    ['trailing comma at top level', '{"commands": [' . $CMD . '],}'],
    ['single-quoted key',        "{'commands': [$CMD]}"],
    ['single-quoted string',     with_value("'x'")],
    ['unquoted key',             '{commands: [' . $CMD . ']}'],
    ['missing colon',            '{"commands" [' . $CMD . ']}'],
    ['missing comma',            with_value('{"a": 1 "b": 2}')],
    ['depth 33',                 depth_body(33)],
    ['depth 33 in an ignored key', depth_extra(33)],
    ['empty body',               ''],
    ['whitespace only',          " \r\n\t "],
    ['unterminated string',      with_value('"abc')],
    ['unterminated string at the end', '{"commands": [' . $CMD . '], "sdk": "abc'],
    ['truncated body',           substr($VALID, 0, -2)],
    ['raw tab in a string',      with_value(qq{"a\tb"})],
    ['raw newline in a string',  with_value(qq{"a\nb"})],
    ['raw control byte in a key', with_value('1', "a\x01")],
    ['bad escape \x',            with_value('"\x41"')],
    ['bad \u escape',            with_value('"\u12G4"')],
    ['short \u escape',          with_value('"\u12"')],
    ['True',                     with_value('True')],
    ['nul',                      with_value('nul')],
    ['undefined',                with_value('undefined')],
    ['form feed as whitespace',  "{\f\"commands\": [$CMD]}"],
    ['no-break space as whitespace', "{\xc2\xa0\"commands\": [$CMD]}"],
);

# Valid RFC 8259 text, accepted: [label, body, property value as stored]
my @valid = (
    ['depth 32',                 depth_body(32), undef],
    ['depth 32 in an ignored key', depth_extra(32), undef],
    ['escaped surrogate pair',   with_value('"\ud83d\ude00"'), qq{"\xf0\x9f\x98\x80"}],
    ['raw 4-byte UTF-8, U+10FFFF', with_value(qq{"\xf0\x9f\x98\x80\xf4\x8f\xbf\xbf"}),
                                 qq{"\xf0\x9f\x98\x80\xf4\x8f\xbf\xbf"}],
    ['every escape',             with_value('"\"\\\\\/\b\f\n\r\t\u0001\u001f\u00e9\uFFFD"'),
                                 qq{"\\"\\\\/\\b\\f\\n\\r\\t\\u0001\\u001f\xc3\xa9\xef\xbf\xbd"}],
    ['DEL byte',                 with_value(qq{"a\x7fb"}), qq{"a\x7fb"}],
    ['2^64 - 1',                 with_value('18446744073709551615'), '18446744073709551615'],
    ['-2^63',                    with_value('-9223372036854775808'), '-9223372036854775808'],
    ['largest double',           with_value('1.7976931348623157e308'), undef],
    ['largest double, negative', with_value('-1.7976931348623157E+308'), undef],
    ['tiny double',              with_value('1e-400'), undef],
    ['-0',                       with_value('-0'), undef],
    ['zero with exponent',       with_value('0.0e0'), undef],
    ['escaped "commands" key',   '{"comm\u0061nds": [' . $CMD . ']}', undef],
    ['every kind of whitespace', " \t\r\n{ \t\r\n\"commands\" \t\r\n: \t\r\n[ \t\r\n$CMD \t\r\n] \t\r\n} \t\r\n", undef],
    ['text/plain body, JSON within', $VALID, '1', 'text/plain'],
);

plan tests => @invalid * 2 * $C + @valid * ($C + 1) + 1;

for my $case (@invalid) {
    my ($label, $body) = @$case;
    db_clear();
    check_request(res => post_json(batch_url('proj-json'), $body),
                  name => $label, status => 400, raw_body => 1,
                  body => error_body('Invalid JSON'), rows => rows());
    check_request(res => post_json(batch_url('proj-json'), $VALID),
                  name => "$label: then a valid batch", status => 200,
                  body => batch_body(res_ok()),
                  rows => rows(customers => 1, ids => 1, events => 1));
}

my $dbh = db();
for my $case (@valid) {
    my ($label, $body, $stored, $ct) = @$case;
    db_clear();
    my $r = $ct ? post_raw(batch_url('proj-json'), $body, 'Content-Type' => $ct)
                : post_json(batch_url('proj-json'), $body);
    check_request(res => $r,
                  name => $label, status => 200,
                  body => batch_body(res_ok()),
                  rows => rows(customers => 1, ids => 1, events => 1));
    my $props = $dbh->selectrow_array('SELECT properties FROM tb_events');
    if (defined $stored) {
        ok t_cmp($props, qq[{"p":$stored}], "$label: stored as JSON");
    }
    else {
        ok t_cmp(defined $props && $props =~ /^\{/ ? 1 : 0, 1,
                 "$label: properties stored");
    }
}
db_clear();

# No child died on any of it.
my $log = Apache::Test::vars('t_logs') . '/error_log';
open my $fh, '<', $log or die "$log: $!";
my @crashes = grep { /exit signal|Segmentation fault|AH00052/ } <$fh>;
ok t_cmp(scalar @crashes, 0, 'no child process crashed');
