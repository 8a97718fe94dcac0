# The body limit (TrackBatchMaxBody 4096 on /small): 4096 bytes are read,
# 4097 are refused with 413 whatever the framing, the connection is closed
# and nothing sent after the refused body runs.  Requests refused before
# their body is read (415, 404, 405) never run a request hidden in it.
use strict;
use warnings FATAL => 'all';

use Apache::Test;
use Apache::TestUtil;
use lib 't/lib';
use TB qw(db_clear batch_url json http_conn http_request chunked
          parse_responses db_project_rows no_rows results_text error_body_re);

my $J = json();
my $LIMIT = 4096;
my $TOO_LARGE = "Request body is larger than $LIMIT bytes.";

sub rows_ok {
    my ($project, $want, $name) = @_;
    return ok t_cmp($J->encode(db_project_rows($project)), $J->encode($want), $name);
}

# A valid /small batch of exactly $size bytes: padded with blanks before
# the final brace, or inside an ignored top-level "sdk" key.
my $core = '"commands": [{"name": "customers/events", "command_id": "e1", "data": '
    . '{"customer_ids": {"registered": "lim@example.com"}, "event_type": "pad", '
    . '"timestamp": 1700000000, "properties": {"n": 1}}}, '
    . '{"name": "customers", "command_id": "u1", "data": {"customer_ids": '
    . '{"registered": "lim@example.com", "email_id": "lim@example.com"}, '
    . '"update_timestamp": 1700000000, "properties": {"plan": "gold"}}}]';
sub body_of {
    my ($size, $how) = @_;
    my $b;
    if ($how eq 'sdk') {
        my $bare = qq({"sdk": "", $core});
        $b = qq({"sdk": ") . ('x' x ($size - length $bare)) . qq(", $core});
    }
    else {
        my $bare = "{$core}";
        $b = "{$core" . (' ' x ($size - length $bare)) . '}';
    }
    die "body is " . length($b) . " bytes, not $size" unless length $b == $size;
    return $b;
}

my $results = '[{"success": true, "command_id": "e1"}, {"success": true, "command_id": "u1"}]';
my $who = 'email_id=lim@example.com,registered=lim@example.com';
my $rows = {
    customers => 1,
    ids => [ "email_id|lim\@example.com|0|$who", "registered|lim\@example.com|1|$who" ],
    events => [ qq($who|pad|1700000000.000000|{"n":1}|e1) ],
    updates => [ qq($who|{"plan":"gold"}|1700000000.000000|u1) ],
    properties => [ qq($who|plan|"gold"|1700000000.000000) ],
};

# A complete request for $project, to hide in or pipeline after a body;
# padded to exactly $size bytes when asked.  It would be recorded if run.
sub hidden_request {
    my ($project, $size, $close) = @_;
    my $path = batch_url($project, 'batch', '/small');
    my @close = $close ? (Connection => 'close') : ();
    my $req = http_request('POST', $path, "{$core}",
                           'Content-Type' => 'application/json', @close);
    if ($size) {
        # the padding lengthens Content-Length too: settle in two steps
        my $pad = $size - length $req;
        for (1 .. 2) {
            $req = http_request('POST', $path, "{$core" . (' ' x $pad) . '}',
                                'Content-Type' => 'application/json', @close);
            $pad += $size - length $req;
        }
        die "hidden request is " . length($req) . " bytes" unless length $req == $size;
    }
    return $req;
}

sub head {
    my ($path, @h) = @_;
    return http_request('POST', $path, undef, @h);
}

my @json = ('Content-Type' => 'application/json');
my @te   = ('Transfer-Encoding' => 'chunked');

plan tests => 4 * 4        # 4096 bytes accepted, 4 ways
            + 7 * 4        # 4097 bytes refused, 4 ways
            + 6            # control: a pipelined request after a read body runs
            + 7 * 2        # 413 with a second request hidden in the body
            + 5 * 5;       # 415 / 404 / 405 with a request in the body

#----------------------------------------------------------------------
# At the limit: read and recorded.

my @at_limit = (
    [ 'Content-Length, blank padding' => 'limit-cl-blank',
      sub { [ head($_[0], @json, 'Content-Length' => $LIMIT, Connection => 'close')
              . body_of($LIMIT, 'blank') ] } ],
    [ 'Content-Length, ignored top-level key' => 'limit-cl-sdk',
      sub { [ head($_[0], @json, 'Content-Length' => $LIMIT, Connection => 'close')
              . body_of($LIMIT, 'sdk') ] } ],
    [ 'chunked, 1000-byte chunks' => 'limit-ch-blank',
      sub { my $b = body_of($LIMIT, 'blank');
            [ head($_[0], @json, @te, Connection => 'close')
              . chunked(unpack '(a1000)*', $b) ] } ],
    [ 'chunked, one chunk in reads, ignored key' => 'limit-ch-sdk',
      sub { my $c = chunked(body_of($LIMIT, 'sdk'));
            [ head($_[0], @json, @te, Connection => 'close'),
              substr($c, 0, 2000), \0.05, substr($c, 2000) ] } ],
);
db_clear();
for my $case (@at_limit) {
    my ($name, $project, $pieces) = @$case;
    my $path = batch_url($project, 'batch', '/small');
    my $c = http_conn(pieces => $pieces->($path), timeout => 15);
    my @r = parse_responses($c->{raw});
    ok t_cmp(scalar @r, 1, "$LIMIT bytes, $name: one response");
    ok t_cmp($r[0]{status}, 200, "$LIMIT bytes, $name: 200");
    ok t_cmp(results_text($r[0]{body}), $results, "$LIMIT bytes, $name: results");
    rows_ok($project, $rows, "$LIMIT bytes, $name: rows");
}

#----------------------------------------------------------------------
# One over: refused as a whole, connection closed, nothing recorded.  A
# request pipelined after the body must not run either.

my $over = $LIMIT + 1;
my @over_limit = (
    [ 'Content-Length' => 'limit-cl-over',
      sub { [ head($_[0], @json, 'Content-Length' => $over) . body_of($over, 'blank'),
              hidden_request("after-$_[1]", 0, 1) ] } ],
    [ 'Content-Length, ignored key, body in reads' => 'limit-cl-over-sdk',
      sub { my $b = body_of($over, 'sdk');
            [ head($_[0], @json, 'Content-Length' => $over) . substr($b, 0, 100),
              \0.05, substr($b, 100), hidden_request("after-$_[1]", 0, 1) ] } ],
    [ 'chunked, 1000-byte chunks' => 'limit-ch-over',
      sub { my $b = body_of($over, 'blank');
            [ head($_[0], @json, @te) . chunked(unpack '(a1000)*', $b),
              hidden_request("after-$_[1]", 0, 1) ] } ],
    [ 'chunked, 4096 then 1 byte in separate reads' => 'limit-ch-over-split',
      sub { my $b = body_of($over, 'sdk');
            [ head($_[0], @json, @te) . sprintf("%x\r\n%s\r\n", $LIMIT, substr($b, 0, $LIMIT)),
              \0.1, chunked(substr($b, $LIMIT)),
              hidden_request("after-$_[1]", 0, 1) ] } ],
);
for my $case (@over_limit) {
    my ($name, $project, $pieces) = @$case;
    my $path = batch_url($project, 'batch', '/small');
    my $c = http_conn(pieces => $pieces->($path, $project), timeout => 15);
    my @r = parse_responses($c->{raw});
    ok t_cmp(scalar @r, 1, "$over bytes, $name: one response, nothing after it");
    ok t_cmp($r[0]{status}, 413, "$over bytes, $name: 413");
    ok t_cmp($r[0]{body}, error_body_re($TOO_LARGE), "$over bytes, $name: text names $LIMIT");
    ok t_cmp($r[0]{headers}{'content-type'}, qr{^application/json},
             "$over bytes, $name: JSON");
    ok t_cmp(($r[0]{headers}{connection} || '') . ($c->{eof} ? ', closed' : ', open'),
             qr/^close, closed$/i, "$over bytes, $name: connection closed");
    rows_ok($project, no_rows(), "$over bytes, $name: nothing recorded");
    rows_ok("after-$project", no_rows(), "$over bytes, $name: the pipelined request did not run");
}

#----------------------------------------------------------------------
# Control: after a body that was read (4096 bytes), a pipelined request
# does run -- so the checks above can see a request that ran.

{
    my $path = batch_url('pipeline-first', 'batch', '/small');
    my $c = http_conn(pieces => [ head($path, @json, 'Content-Length' => $LIMIT)
                                  . body_of($LIMIT, 'blank')
                                  . hidden_request('pipeline-second', 0, 1) ],
                      timeout => 15);
    my @r = parse_responses($c->{raw});
    ok t_cmp(scalar @r, 2, 'control: two pipelined requests, two responses');
    ok t_cmp(join(',', map { $_->{status} } @r), '200,200', 'control: both 200');
    ok t_cmp(results_text($r[0]{body}), $results, 'control: first results');
    ok t_cmp(results_text($r[1]{body} // ''), $results, 'control: second results');
    rows_ok('pipeline-first', $rows, 'control: first recorded');
    rows_ok('pipeline-second', $rows, 'control: second recorded');
}

#----------------------------------------------------------------------
# A whole request hidden in an oversized body: it never runs.

{
    my $path = batch_url('smuggle-413-cl', 'batch', '/small');
    my $c = http_conn(pieces => [
        head($path, @json, 'Content-Length' => $over)
        . hidden_request('smuggled-413-cl', $over, 0)
        . hidden_request('smuggled-413-cl-after', 0, 1) ], timeout => 15);
    my @r = parse_responses($c->{raw});
    ok t_cmp(join(',', map { $_->{status} } @r), '413',
             'Content-Length body holding a request: only the 413');
    ok t_cmp($r[0]{body}, error_body_re($TOO_LARGE), '... with its text');
    ok t_cmp($c->{eof}, 1, '... and the connection closed');
    rows_ok('smuggled-413-cl', no_rows(), '... the hidden request did not run');
    rows_ok('smuggled-413-cl-after', no_rows(), '... nor the one after the body');
    rows_ok('smuggle-413-cl', no_rows(), '... nor the outer one');
    # the server is fine afterwards
    my $ok = http_conn(pieces => [ hidden_request('after-smuggle-413', 0, 1) ]);
    ok t_cmp(join(',', map { $_->{status} } parse_responses($ok->{raw})), '200',
             '... and the next connection is served');
}
{
    my $path = batch_url('smuggle-413-ch', 'batch', '/small');
    # the hidden request inside chunk data, then the body goes on
    my $hidden = hidden_request('smuggled-413-ch', 0, 0);
    my $c = http_conn(pieces => [
        head($path, @json, @te) . chunked($hidden, ' ' x ($over - length $hidden)),
        hidden_request('smuggled-413-ch-after', 0, 1) ], timeout => 15);
    my @r = parse_responses($c->{raw});
    ok t_cmp(join(',', map { $_->{status} } @r), '413',
             'chunked body holding a request: only the 413');
    ok t_cmp($r[0]{body}, error_body_re($TOO_LARGE), '... with its text');
    ok t_cmp($c->{eof}, 1, '... and the connection closed');
    rows_ok('smuggled-413-ch', no_rows(), '... the hidden request did not run');
    rows_ok('smuggled-413-ch-after', no_rows(), '... nor the one after the body');
    rows_ok('smuggle-413-ch', no_rows(), '... nor the outer one');
    my $ok = http_conn(pieces => [ hidden_request('after-smuggle-413-ch', 0, 1) ]);
    ok t_cmp(join(',', map { $_->{status} } parse_responses($ok->{raw})), '200',
             '... and the next connection is served');
}

#----------------------------------------------------------------------
# Refused before the body is read: the request in the body never runs.

my @refused = (
    [ '415, Content-Length' => 415, 'Content-Type must be application/json or text/plain.',
      batch_url('smuggle-415', 'batch', '/small'), 'smuggled-415',
      sub { my $h = hidden_request($_[1], 0, 1);
            head($_[0], 'Content-Type' => 'application/xml',
                 'Content-Length' => length $h) . $h } ],
    [ '415, chunked' => 415, 'Content-Type must be application/json or text/plain.',
      batch_url('smuggle-415-ch', 'batch', '/small'), 'smuggled-415-ch',
      sub { head($_[0], 'Content-Type' => 'application/x-www-form-urlencoded', @te)
            . chunked(hidden_request($_[1], 0, 1)) } ],
    [ '415, no Content-Type' => 415, 'Content-Type must be application/json or text/plain.',
      batch_url('smuggle-415-none', 'batch', '/small'), 'smuggled-415-none',
      sub { my $h = hidden_request($_[1], 0, 1);
            head($_[0], 'Content-Length' => length $h) . $h } ],
    [ '404, unknown route' => 404, 'The requested URL was not found on the server.',
      batch_url('smuggle-404', 'nope', '/small'), 'smuggled-404',
      sub { my $h = hidden_request($_[1], 0, 1);
            head($_[0], @json, 'Content-Length' => length $h) . $h } ],
    [ '405, PUT' => 405, 'The method is not allowed for the requested URL.',
      batch_url('smuggle-405', 'batch', '/small'), 'smuggled-405',
      sub { my $h = hidden_request($_[1], 0, 1);
            http_request('PUT', $_[0], undef, @json, 'Content-Length' => length $h)
            . $h } ],
);
for my $case (@refused) {
    my ($name, $status, $text, $path, $hidden_project, $make) = @$case;
    my $c = http_conn(pieces => [ $make->($path, $hidden_project) ], timeout => 15);
    my @r = parse_responses($c->{raw});
    ok t_cmp(join(',', map { $_->{status} } @r), $status,
             "$name: only the $status, nothing for the hidden request");
    ok t_cmp($r[0]{body}, error_body_re($text), "$name: text");
    ok t_cmp($r[0]{headers}{'content-type'}, qr{^application/json}, "$name: JSON");
    rows_ok($hidden_project, no_rows(), "$name: the hidden request did not run");
    ok t_cmp($c->{eof}, 1, "$name: the connection ended");
}
