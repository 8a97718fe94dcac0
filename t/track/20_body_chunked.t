# Request bodies: Content-Length and chunked give the same answer and the
# same rows; multi-byte UTF-8 split across chunks (and reads) at every byte
# offset inside every character is answered and stored byte for byte.
use strict;
use warnings FATAL => 'all';

use Apache::Test;
use Apache::TestUtil;
use Encode ();
use lib 't/lib';
use TB qw(post_json decode db db_clear raw_http batch_url json
          http_request chunked parse_responses db_project_rows results_text);

my $J = json();

# Compare two structures as canonical JSON text (clear diagnostics).
sub same {
    my ($got, $want, $name) = @_;
    return ok t_cmp($J->encode($got), $J->encode($want), $name);
}

# One request over a raw socket; returns the one response (or {}).
sub raw_post {
    my ($path, $body_pieces, %h) = @_;
    my @r = parse_responses(raw_http(pieces => $body_pieces, timeout => 15));
    return @r == 1 ? $r[0] : { status => 'responses: ' . scalar(@r) };
}

sub head_chunked {
    my ($path) = @_;
    return http_request('POST', $path, undef,
                        'Content-Type' => 'application/json',
                        'Transfer-Encoding' => 'chunked',
                        'Connection' => 'close');
}

#----------------------------------------------------------------------
# 1. The same batch, Content-Length and chunked.

my $ascii_project = 'body-cl-chunked';
my $ascii = <<'JSON';
{"commands": [
  {"name": "customers", "command_id": "c1", "data": {
     "customer_ids": {"registered": "alice@example.com", "cookie": "ck-alice"},
     "update_timestamp": 1700000000.125,
     "properties": {"first_name": "Alice", "age": 31, "tags": ["a", "b"],
                    "vip": true, "nothing": null}}},
  {"name": "customers/events", "command_id": 2, "data": {
     "customer_ids": {"registered": "alice@example.com"},
     "event_type": "purchase", "timestamp": 1700000001.5,
     "properties": {"total_price": 12.50, "items": [{"sku": "X-1", "qty": 2}]}}},
  {"name": "customers/events", "command_id": "bad-1", "data": {
     "customer_ids": {"registered": "bob@example.com"}, "event_type": ""}},
  {"name": "customers", "data": {"customer_ids": {}}},
  {"name": "customers/events", "data": {
     "customer_ids": {"cookie": "ck-carol"}, "event_type": "view",
     "timestamp": 1700000002, "properties": null}}
]}
JSON

my $ascii_results = '[{"success": true, "command_id": "c1"}, '
    . '{"success": true, "command_id": 2}, '
    . q({"success": false, "errors": ["Field 'event_type' is required."], "command_id": "bad-1"}, )
    . '{"success": false, "errors": ["At least one id should be specified."]}, '
    . '{"success": true}]';

my $alice = 'cookie=ck-alice,registered=alice@example.com';
my $ascii_rows = {
    customers => 2,
    ids => [ sort "cookie|ck-alice|0|$alice",
                  "registered|alice\@example.com|1|$alice",
                  'cookie|ck-carol|0|cookie=ck-carol' ],
    events => [ sort
        qq($alice|purchase|1700000001.500000|{"total_price":12.50,"items":[{"sku":"X-1","qty":2}]}|2),
        'cookie=ck-carol|view|1700000002.000000|{}|NULL' ],
    updates => [
        qq($alice|{"first_name":"Alice","age":31,"tags":["a","b"],"vip":true,"nothing":null}|1700000000.125000|c1) ],
    properties => [ sort
        qq($alice|first_name|"Alice"|1700000000.125000),
        qq($alice|age|31|1700000000.125000),
        qq($alice|tags|["a","b"]|1700000000.125000),
        qq($alice|vip|true|1700000000.125000),
        qq($alice|nothing|null|1700000000.125000) ],
};

my $apath = batch_url($ascii_project);
my @ascii_ways = (
    [ 'Content-Length (LWP)' => sub {
        my $r = post_json($apath, $ascii);
        return { status => $r->code, body => $r->content };
    } ],
    [ 'Content-Length (raw socket)' => sub {
        raw_post($apath, [ http_request('POST', $apath, $ascii,
                               'Content-Type' => 'application/json',
                               'Connection' => 'close') ]);
    } ],
    [ 'chunked, one chunk' => sub {
        raw_post($apath, [ head_chunked($apath) . chunked($ascii) ]);
    } ],
    [ 'chunked, one byte a chunk' => sub {
        raw_post($apath, [ head_chunked($apath) . chunked(split //, $ascii) ]);
    } ],
    [ 'chunked, uneven chunks in separate reads, extensions, trailer' => sub {
        my @pieces = (head_chunked($apath));
        my ($at, $i) = (0, 0);
        my @sizes = (1, 2, 3, 5, 8, 13, 21, 34, 55, 89, 144, 233);
        while ($at < length $ascii) {
            my $n = $sizes[$i++ % @sizes];
            my $part = substr($ascii, $at, $n);
            $at += length $part;
            push @pieces, sprintf("%x;ext=%d\r\n%s\r\n", length $part, $i, $part),
                          \0.02;
        }
        push @pieces, "0\r\nX-Trailer: yes\r\n\r\n";
        raw_post($apath, \@pieces);
    } ],
);

#----------------------------------------------------------------------
# 2. Multi-byte UTF-8: 2-, 3- and 4-byte characters in ids, event types,
# property names and values, and command ids.

my $utf8_project = 'body-utf8';
my $utf8_text = <<'JSON';
{"commands": [
  {"name": "customers/events", "command_id": "ev-ß-€-😀", "data": {
     "customer_ids": {"registered": "zoë-€uro-😀@example.com"},
     "event_type": "kauf-ä-₿-𝄞", "timestamp": 1700000000.5,
     "properties": {"größe": "ñ-€-😀", "emoji": "🎉🎉", "mixed": ["é", "中文", "𐍈"]}}},
  {"name": "customers", "command_id": 7, "data": {
     "customer_ids": {"registered": "zoë-€uro-😀@example.com", "cookie": "ćookie-日本-🍪"},
     "update_timestamp": 1700000001.25,
     "properties": {"näme": "Zoë", "city": "東京", "pet": "🐈"}}},
  {"name": "customers/events", "command_id": "bad-ü", "data": {
     "customer_ids": {"registered": "zoë"}, "event_type": ""}}
]}
JSON
# bytes, exactly as sent; everything expected below is bytes too
my $utf8 = Encode::encode('UTF-8', Encode::decode('UTF-8', $utf8_text));
sub b { Encode::encode('UTF-8', Encode::decode('UTF-8', $_[0])) }

my $utf8_results = b('[{"success": true, "command_id": "ev-ß-€-😀"}, '
    . '{"success": true, "command_id": 7}, '
    . q({"success": false, "errors": ["Field 'event_type' is required."], "command_id": "bad-ü"}]));

my $zoe = b('cookie=ćookie-日本-🍪,registered=zoë-€uro-😀@example.com');
my $utf8_rows = {
    customers => 1,
    ids => [ sort { $a cmp $b } b("cookie|ćookie-日本-🍪|0|") . $zoe,
                  b('registered|zoë-€uro-😀@example.com|1|') . $zoe ],
    events => [ $zoe . b(q(|kauf-ä-₿-𝄞|1700000000.500000|{"größe":"ñ-€-😀","emoji":"🎉🎉","mixed":["é","中文","𐍈"]}|ev-ß-€-😀)) ],
    updates => [ $zoe . b(q(|{"näme":"Zoë","city":"東京","pet":"🐈"}|1700000001.250000|7)) ],
    properties => [ sort { $a cmp $b } $zoe . b(q(|näme|"Zoë"|1700000001.250000)),
                         $zoe . b(q(|city|"東京"|1700000001.250000)),
                         $zoe . b(q(|pet|"🐈"|1700000001.250000)) ],
};

# Every multi-byte character: [offset, length in bytes].
my @chars;
for (my $i = 0; $i < length $utf8; $i++) {
    my $c = ord substr($utf8, $i, 1);
    next if $c < 0xC0;
    my $n = $c >= 0xF0 ? 4 : $c >= 0xE0 ? 3 : 2;
    push @chars, [ $i, $n ];
    $i += $n - 1;
}
my %by_len;
$by_len{ $_->[1] }++ for @chars;
my @splits = map { my ($at, $n) = @$_; map { $at + $_ } 1 .. $n - 1 } @chars;

my $upath = batch_url($utf8_project);

plan tests => 2                      # the ASCII batch is what we think
            + 3 * @ascii_ways        # each way: status, results, rows
            + 3                      # the UTF-8 body has 2/3/4-byte chars
            + 3 + 3                  # UTF-8 by Content-Length; hex checks
            + 2 * @splits            # one split point per request
            + 3 + 3;                 # all split at once, two ways

ok t_cmp(scalar @{ decode($ascii)->{commands} }, 5, 'ASCII batch is JSON');
ok t_cmp(scalar(grep { /[^\x00-\x7f]/ } $ascii), 0, 'ASCII batch is ASCII');

for my $way (@ascii_ways) {
    my ($name, $send) = @$way;
    db_clear();
    my $r = $send->();
    ok t_cmp($r->{status}, 200, "$name: 200");
    ok t_cmp(results_text($r->{body}), $ascii_results, "$name: results");
    same(db_project_rows($ascii_project), $ascii_rows,
         "$name: rows are exactly the successful commands");
}

ok t_cmp($by_len{2} && $by_len{3} && $by_len{4} ? 1 : 0, 1,
         "UTF-8 batch has 2-, 3- and 4-byte characters "
         . "($by_len{2}/$by_len{3}/$by_len{4})");
ok t_cmp(scalar(@splits), $by_len{2} + 2 * $by_len{3} + 3 * $by_len{4},
         'one split point per inner byte offset');
ok t_cmp(scalar(@{ decode($utf8)->{commands} }), 3, 'UTF-8 batch is JSON');

{
    db_clear();
    my $r = post_json($upath, $utf8);
    ok t_cmp($r->code, 200, 'UTF-8 batch by Content-Length: 200');
    ok t_cmp(results_text($r->content), $utf8_results,
             'UTF-8 batch by Content-Length: results');
    same(db_project_rows($utf8_project), $utf8_rows,
         'UTF-8 batch by Content-Length: rows, byte for byte');

    # the same in hex, straight from SQL, so no driver decoding is involved
    my $dbh = db();
    my $hex = TB::engine() eq 'pgsql'
            ? sub { "upper(encode(convert_to($_[0], 'UTF8'), 'hex'))" }
            : sub { "hex($_[0])" };
    my ($et, $props, $cmd) = $dbh->selectrow_array(
        "SELECT @{[ $hex->('event_type') ]}, @{[ $hex->('properties') ]},
                @{[ $hex->('command_id') ]}
           FROM tb_events WHERE project = ?", undef, $utf8_project);
    ok t_cmp($et, uc unpack('H*', b('kauf-ä-₿-𝄞')), 'event_type bytes (hex)');
    ok t_cmp($props, uc unpack('H*', b('{"größe":"ñ-€-😀","emoji":"🎉🎉","mixed":["é","中文","𐍈"]}')),
             'event properties bytes (hex)');
    my ($id) = $dbh->selectrow_array(
        "SELECT @{[ $hex->('id_value') ]} FROM tb_customer_ids
          WHERE project = ? AND id_name = 'cookie'", undef, $utf8_project);
    ok t_cmp($id, uc unpack('H*', b('ćookie-日本-🍪')), 'cookie id bytes (hex)');
}

# Every split point inside every character: two chunks, a pause between
# them, so the server reads them separately.
for my $at (@splits) {
    db_clear();
    my $r = raw_post($upath, [ head_chunked($upath),
                               chunked(substr($utf8, 0, $at)) =~ s/0\r\n\r\n\z//r,
                               \0.03,
                               chunked(substr($utf8, $at)) ]);
    my $lead = ord substr($utf8, $at - 1, 1);
    ok t_cmp($r->{status} . ' ' . (results_text($r->{body}) // $r->{body} // ''),
             "200 $utf8_results", "split at byte $at: 200, same results");
    same(db_project_rows($utf8_project), $utf8_rows, "split at byte $at: same rows");
}

# Every byte of every multi-byte character in a chunk of its own.
{
    my @pieces = (head_chunked($upath));
    my $from = 0;
    for my $c (@chars) {
        my ($at, $n) = @$c;
        push @pieces, chunked(substr($utf8, $from, $at - $from)) =~ s/0\r\n\r\n\z//r
            if $at > $from;
        for my $k (0 .. $n - 1) {
            push @pieces, \0.005, sprintf("1\r\n%s\r\n", substr($utf8, $at + $k, 1));
        }
        $from = $at + $n;
    }
    push @pieces, chunked(substr($utf8, $from));
    db_clear();
    my $r = raw_post($upath, \@pieces);
    ok t_cmp($r->{status}, 200, 'every byte its own chunk: 200');
    ok t_cmp(results_text($r->{body}), $utf8_results,
             'every byte its own chunk: same results');
    same(db_project_rows($utf8_project), $utf8_rows, 'every byte its own chunk: same rows');
}

# One chunk, but the bytes arrive in separate reads split inside every
# character.
{
    my $whole = head_chunked($upath) . chunked($utf8);
    my $base = index($whole, "\r\n\r\n") + 4;
    $base = index($whole, "\r\n", $base) + 2;         # past the chunk size
    my @pieces;
    my $from = 0;
    for my $at (map { $_->[0] + 1 } @chars) {
        push @pieces, substr($whole, $from, $base + $at - $from), \0.005;
        $from = $base + $at;
    }
    push @pieces, substr($whole, $from);
    db_clear();
    my $r = raw_post($upath, \@pieces);
    ok t_cmp($r->{status}, 200, 'one chunk split inside characters: 200');
    ok t_cmp(results_text($r->{body}), $utf8_results,
             'one chunk split inside characters: same results');
    same(db_project_rows($utf8_project), $utf8_rows,
         'one chunk split inside characters: same rows');
}
