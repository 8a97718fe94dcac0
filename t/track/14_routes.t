# Routes, methods and Content-Type (SPEC §1, §2, §3): 404 for unknown
# routes and bad project tokens, 405 with Allow, 415, the accepted media
# types, GET system/time, and the single routes customers and
# customers/events answering one result object.
use strict;
use warnings FATAL => 'all';

use Apache::Test;
use Apache::TestUtil;
use lib 't/lib';
use TB qw(db db_clear batch_url rows batch_body res_ok res_err error_body
          check_request raw_request norm_times CHECKS_PER_REQUEST);

my $C = CHECKS_PER_REQUEST;

my $E_404 = 'The requested URL was not found on the server.';
my $E_405 = 'The method is not allowed for the requested URL.';
my $E_415 = 'Content-Type must be application/json or text/plain.';
my @JSON  = ('Content-Type' => 'application/json');

my $EVENT = '{"commands": [{"name": "customers/events", "data": {"customer_ids": '
          . '{"registered": "r1"}, "event_type": "e"}}]}';
my $one   = rows(customers => 1, ids => 1, events => 1);
my $P     = '/track/v2/projects';

# [label, method, url, body, [headers], status, answer, rows, Allow]
my @cases;

# --- 404: unknown routes and bad project tokens
for my $url ("$P/p/unknown", "$P/p/Batch", "$P/p/batch/", "$P/p/batch/x",
             "$P/p/batch.json", "$P/p/customers/", "$P/p/customers/event",
             "$P/p/customers/events/x", "$P/p/system", "$P/p/system/time/x",
             "$P/p", "$P/p/", "$P/", $P, '/track/v1/projects/p/batch',
             '/track/v2/project/p/batch', '/track/v2/projects/p/batch/batch',
             '/track', '/track/', '/track/batch',
             # routes are under /track/v2/projects/{token}/, not anywhere
             # further down the location
             "/track/zzz$P/p/batch",
             # tokens: 1-64 of [A-Za-z0-9_-]
             "$P//batch", "$P/" . ('t' x 65) . '/batch', "$P/a.b/batch",
             "$P/a~b/batch", "$P/a%20b/batch", "$P/a+b/batch", "$P/a\@b/batch",
             "$P/a%2Eb/batch", "$P/caf%C3%A9/batch", "$P/a:b/batch", "$P/./batch",
             "/small$P/" . ('t' x 65) . '/batch') {
    push @cases, ["POST $url", 'POST', $url, $EVENT, [@JSON], 404,
                  error_body($E_404), rows()];
}
push @cases,
    ["GET $P/p/unknown", 'GET', "$P/p/unknown", undef, [], 404, error_body($E_404), rows()],
    ["GET $P/a.b/system/time", 'GET', "$P/a.b/system/time", undef, [], 404,
     error_body($E_404), rows()],
    ["GET $P/" . ('t' x 65) . '/system/time', 'GET', "$P/" . ('t' x 65) . '/system/time',
     undef, [], 404, error_body($E_404), rows()];

# --- good tokens
for my $tok ('t' x 64, 'A', '0', '_', '-', 'Ab-9_z',
             join('', 'a' .. 'z', 'A' .. 'Z', '0' .. '9', '_', '-')) {
    push @cases, ["POST token '$tok'", 'POST', "$P/$tok/batch", $EVENT, [@JSON], 200,
                  batch_body(res_ok()), $one, undef, $tok];
}

# --- 405 with Allow
my $ALLOW_POST = 'POST, OPTIONS';
my $ALLOW_GET  = 'GET, HEAD, OPTIONS';
for my $m ('GET', 'PUT', 'DELETE', 'PATCH') {
    push @cases, ["$m batch", $m, "$P/p/batch", $m eq 'GET' || $m eq 'DELETE' ? undef : $EVENT,
                  [@JSON], 405, error_body($E_405), rows(), $ALLOW_POST];
}
push @cases,
    ['HEAD batch', 'HEAD', "$P/p/batch", undef, [], 405, '', rows(), $ALLOW_POST],
    ['GET customers', 'GET', "$P/p/customers", undef, [], 405, error_body($E_405), rows(), $ALLOW_POST],
    ['GET customers/events', 'GET', "$P/p/customers/events", undef, [], 405,
     error_body($E_405), rows(), $ALLOW_POST],
    ['PUT customers/events', 'PUT', "$P/p/customers/events",
     '{"customer_ids": {"registered": "r1"}, "event_type": "e"}', [@JSON], 405,
     error_body($E_405), rows(), $ALLOW_POST],
    ['POST system/time', 'POST', "$P/p/system/time", '{}', [@JSON], 405,
     error_body($E_405), rows(), $ALLOW_GET],
    ['DELETE system/time', 'DELETE', "$P/p/system/time", undef, [], 405,
     error_body($E_405), rows(), $ALLOW_GET],
    ['GET batch on /small', 'GET', "/small$P/p/batch", undef, [], 405,
     error_body($E_405), rows(), $ALLOW_POST];

# --- Content-Type
for my $ct (undef, 'application/x-www-form-urlencoded', 'multipart/form-data; boundary=x',
            'application/jsonx', 'application/json-patch+json', 'text/json',
            'application/javascript', 'text/plainx', 'text/html', 'application/xml',
            'application', '') {
    my $label = defined $ct ? "Content-Type '$ct'" : 'no Content-Type';
    for my $route ('batch', 'customers/events') {
        push @cases, ["$label, $route", 'POST', "$P/p/$route",
                      $route eq 'batch' ? $EVENT
                          : '{"customer_ids": {"registered": "r1"}, "event_type": "e"}',
                      [defined $ct ? ('Content-Type' => $ct) : ()], 415,
                      error_body($E_415), rows()];
    }
}
for my $ct ('application/json; charset=utf-8', 'application/json;charset=UTF-8',
            'APPLICATION/JSON', 'Application/Json; charset="utf-8"', 'text/plain',
            'text/plain;charset=UTF-8', 'text/plain; charset=utf-8', 'Text/Plain',
            'application/json ; charset=utf-8') {
    push @cases, ["Content-Type '$ct' accepted", 'POST', "$P/p/batch", $EVENT,
                  ['Content-Type' => $ct], 200, batch_body(res_ok()), $one];
}

# --- system/time
push @cases,
    ['GET system/time', 'GET', "$P/p/system/time", undef, [], 200,
     qq[{"success": true, "time": T}\n], rows()],
    ['GET system/time with a query string', 'GET', "$P/p/system/time?x=1", undef, [], 200,
     qq[{"success": true, "time": T}\n], rows()],
    ['GET system/time on /small', 'GET', "/small$P/p/system/time", undef, [], 200,
     qq[{"success": true, "time": T}\n], rows()],
    ['HEAD system/time', 'HEAD', "$P/p/system/time", undef, [], 200, '', rows()];

# --- single routes: one result object
my $CU  = "$P/p/customers";
my $EV  = "$P/p/customers/events";
push @cases,
    ['POST customers', 'POST', $CU,
     '{"customer_ids": {"registered": "s1", "cookie": "k1"}, "properties": {"a": 1, "b": "x"}, '
     . '"update_timestamp": 1700000000}', [@JSON], 200, res_ok() . "\n",
     rows(customers => 1, ids => 2, updates => 1, properties => 2)],
    ['POST customers, no properties', 'POST', $CU, '{"customer_ids": {"registered": "s1"}}',
     [@JSON], 200, res_ok() . "\n", rows(customers => 1, ids => 1, updates => 1)],
    ['POST customers, errors', 'POST', $CU,
     '{"customer_ids": {}, "properties": [], "update_timestamp": -1}', [@JSON], 200,
     res_err(["At least one id should be specified.", "Field 'properties' must be an object.",
              "Field 'update_timestamp' is out of range: expected Unix time in seconds, "
              . "at most 24 hours ahead; were milliseconds sent?"]) . "\n", rows()],
    ['POST customers/events', 'POST', $EV,
     '{"customer_ids": {"registered": "s1"}, "event_type": "view", "timestamp": 1700000000, '
     . '"properties": {"url": "/a"}}', [@JSON], 200, res_ok() . "\n", $one],
    ['POST customers/events, text/plain', 'POST', $EV,
     '{"customer_ids": {"registered": "s1"}, "event_type": "view"}',
     ['Content-Type' => 'text/plain;charset=UTF-8'], 200, res_ok() . "\n", $one],
    ['POST customers/events, whitespace around', 'POST', $EV,
     " \r\n{\"customer_ids\": {\"registered\": \"s1\"}, \"event_type\": \"view\"}\r\n \n",
     [@JSON], 200, res_ok() . "\n", $one],
    ['POST customers/events, errors', 'POST', $EV, '{"event_type": "", "properties": 1}',
     [@JSON], 200, res_err(["Field 'customer_ids' is required.",
                            "Field 'event_type' is required.",
                            "Field 'properties' must be an object."]) . "\n", rows()],
    ['POST customers/events, a batch sent to it', 'POST', $EV, $EVENT, [@JSON], 200,
     res_err(["Field 'customer_ids' is required.", "Field 'event_type' is required."]) . "\n",
     rows()],
    ['POST customers/events on /small, cookie unknown there', 'POST', "/small$EV",
     '{"customer_ids": {"cookie": "k1", "email_id": "a@b.c"}, "event_type": "view"}', [@JSON],
     200, res_err(["Unknown customer id 'cookie'."]) . "\n", rows()],
    ['POST customers/events on /small, email_id', 'POST', "/small$EV",
     '{"customer_ids": {"email_id": "a@b.c"}, "event_type": "view"}', [@JSON],
     200, res_ok() . "\n", $one],
    ['POST customers, invalid JSON', 'POST', $CU, '{"customer_ids": {"registered": "s1"}',
     [@JSON], 400, error_body('Invalid JSON'), rows()],
    ['POST customers, duplicate key', 'POST', $CU,
     '{"customer_ids": {"registered": "s1"}, "customer_ids": {"registered": "s2"}}',
     [@JSON], 400, error_body('Invalid JSON'), rows()],
    ['POST customers/events, NaN', 'POST', $EV,
     '{"customer_ids": {"registered": "s1"}, "event_type": "e", "properties": {"n": NaN}}',
     [@JSON], 400, error_body('Invalid JSON'), rows()],
    ['POST customers/events, depth 33', 'POST', $EV,
     '{"customer_ids": {"registered": "s1"}, "event_type": "e", "properties": {"n": '
     . '[' x 31 . ']' x 31 . '}}', [@JSON], 400, error_body('Invalid JSON'), rows()],
    ['POST customers/events, depth 32', 'POST', $EV,
     '{"customer_ids": {"registered": "s1"}, "event_type": "e", "properties": {"n": '
     . '[' x 30 . ']' x 30 . '}}', [@JSON], 200, res_ok() . "\n", $one],
    ['POST customers, top level an array', 'POST', $CU, '[{"customer_ids": {"registered": "s1"}}]',
     [@JSON], 400, error_body('Request body must be a JSON object.'), rows()],
    ['POST customers, empty body', 'POST', $CU, '', [@JSON], 400,
     error_body('Invalid JSON'), rows()];

plan tests => @cases * $C + (grep { defined $_->[8] } @cases)
              + (grep { defined $_->[9] } @cases) + 3;

my $dbh = db();
for my $case (@cases) {
    my ($label, $method, $url, $body, $headers, $status, $answer, $rows, $allow,
        $project) = @$case;
    db_clear();
    my $r = raw_request($method, $url, $body, @$headers);
    check_request(res => $r, name => $label, status => $status,
                  body => $answer, rows => $rows);
    if (defined $allow) {
        ok t_cmp($r->{headers}{allow}, $allow, "$label: Allow");
    }
    if (defined $project) {
        ok t_cmp(scalar $dbh->selectrow_array('SELECT project FROM tb_events'),
                 $project, "$label: recorded under its project");
    }
}

# system/time is the server's clock, with microseconds
my $before = time;
my $r = raw_request('GET', "$P/p/system/time", undef);
ok t_cmp($r->{body}, qr/^\{"success": true, "time": \d+\.\d{6}\}\n\z/, 'time format');
my ($t) = $r->{body} =~ /"time": ([\d.]+)/;
ok t_cmp(defined $t && $t >= $before - 1 && $t <= time + 1 ? 1 : 0, 1,
         'time is now');
ok t_cmp($r->{headers}{'cache-control'}, 'no-store', 'answers are not cached');
db_clear();
