# Whole-request 400s other than Invalid JSON (SPEC §2): top level not an
# object, "commands" missing, not an array, or empty.  Each records
# nothing, even when valid commands sit in the body, and the server
# answers the next valid request.  (Too many commands: 13_limits.t.)
use strict;
use warnings FATAL => 'all';

use Apache::Test;
use Apache::TestUtil;
use lib 't/lib';
use TB qw(post_json post_raw db_clear batch_url rows batch_body res_ok
          error_body check_request CHECKS_PER_REQUEST);

my $C = CHECKS_PER_REQUEST;

my $NOT_OBJECT = 'Request body must be a JSON object.';
my $MISSING    = "Field 'commands' is required.";
my $NOT_ARRAY  = "Field 'commands' must be an array.";
my $EMPTY      = "Field 'commands' must contain at least one command.";

my $CMD   = '{"name": "customers/events", "data": {"customer_ids": {"registered": "w1"}, '
          . '"event_type": "e"}}';
my $VALID = qq[{"commands": [$CMD]}];

# [label, body, text, location prefix, Content-Type]
my @cases = (
    (map { ["top level $_->[0]", $_->[1], $NOT_OBJECT] }
        ['[]', '[]'], ['array of commands', "[$CMD]"], ['array holding a batch', "[$VALID]"],
        ['string', '"commands"'], ['integer', '42'], ['number', '-1.5e3'],
        ['null', 'null'], ['true', 'true'], ['false', 'false'],
        ['array with whitespace', " \n[ ]\n "]),
    (map { ["commands missing: $_->[0]", $_->[1], $MISSING] }
        ['{}', '{}'], ['{ }', " {\n} "], ['only sdk keys', '{"sdk": "python", "sdk_version": "4"}'],
        ['"Commands"', qq[{"Commands": [$CMD]}]], ['"command"', qq[{"command": [$CMD]}]],
        ['"commands " with a space', qq[{"commands ": [$CMD]}]],
        ['a bare command', $CMD], ['data only', qq[{"data": $CMD}]]),
    (map { ["commands $_->[0]", $_->[1], $NOT_ARRAY] }
        ['{}', '{"commands": {}}'], ['null', '{"commands": null}'],
        ['a string', '{"commands": "[]"}'], ['a number', '{"commands": 1}'],
        ['true', '{"commands": true}'], ['one command, not in an array', qq[{"commands": $CMD}]],
        ['an object of commands', qq[{"commands": {"0": $CMD}}]]),
    (map { ["commands $_->[0]", $_->[1], $EMPTY] }
        ['[]', '{"commands": []}'], ['[ ] with whitespace', "{\"commands\": [ \r\n\t ]}"],
        ['[] next to sdk keys', '{"sdk": "js", "commands": [], "sdk_version": "1"}']),
    ['/small: top level an array', "[$CMD]", $NOT_OBJECT, '/small'],
    ['/small: commands missing', '{}', $MISSING, '/small'],
    ['/small: commands empty', '{"commands": []}', $EMPTY, '/small'],
    ['text/plain: commands not an array', '{"commands": "x"}', $NOT_ARRAY, '', 'text/plain'],
);

plan tests => @cases * 2 * $C;

for my $case (@cases) {
    my ($label, $body, $text, $prefix, $ct) = @$case;
    db_clear();
    my $url = batch_url('proj-400', 'batch', $prefix);
    my $r = $ct ? post_raw($url, $body, 'Content-Type' => $ct) : post_json($url, $body);
    check_request(res => $r, name => $label, status => 400, raw_body => 1,
                  body => error_body($text), rows => rows());
    check_request(res => post_json($url, $VALID), name => "$label: then a valid batch",
                  status => 200, body => batch_body(res_ok()),
                  rows => rows(customers => 1, ids => 1, events => 1));
}
db_clear();
