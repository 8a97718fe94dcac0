# Limits at the bound and one over (SPEC §4, §2), with the small limits of
# <Location /small> (3 commands, command 2048, value 64, names 16, body
# 4096) and the defaults on /track (50 commands, command 819200, value
# 16384, names 128).  Each breach is answered with a text naming the
# limit, and only what was accepted is recorded.
use strict;
use warnings FATAL => 'all';

use Apache::Test;
use Apache::TestUtil;
use lib 't/lib';
use TB qw(post_json db db_clear batch_url rows batch_body res_ok res_err
          error_body check_request raw_request CHECKS_PER_REQUEST);

my $C = CHECKS_PER_REQUEST;

sub e_size   { "Command size must be smaller than $_[0] bytes." }
sub e_value  { "Value of property '$_[0]' must be smaller than $_[1] bytes." }
sub e_pname  { "Property names must be 1 to $_[0] bytes long." }
sub e_etlen  { "Field 'event_type' must be at most $_[0] bytes long." }
sub e_many   { "Too many commands: at most $_[0] commands per batch." }
sub e_body   { "Request body is larger than $_[0] bytes." }

sub ev { qq[{"name": "customers/events", "data": {"customer_ids": {"registered": "$_[0]"}, ]
         . qq["event_type": "e"$_[1]}}] }
sub batch { '{"commands": [' . join(', ', @_) . ']}' }

# JSON text of exactly $len bytes: $head, properties "p0000": "vvv" (values
# of at most $chunk characters), $tail.
sub sized {
    my ($len, $chunk, $head, $tail) = @_;
    my @props;
    for (;;) {
        my $text = $head . join(', ', @props) . $tail;
        my $left = $len - length $text;
        my $over = 11 + (@props ? 2 : 0);          # "p0000": "" and ", "
        die "sized(): overshoot" if $left < 0;
        last if $left == 0;
        if ($left < $over) {                          # pad inside the text
            $head .= ' ' x $left;
            next;
        }
        my $n = $left - $over > $chunk ? $chunk : $left - $over;
        push @props, sprintf('"p%04d": "%s"', scalar @props, 'v' x $n);
    }
    my $text = $head . join(', ', @props) . $tail;
    die 'sized(): ' . length($text) . " != $len" unless length $text == $len;
    return $text;
}
sub sized_command {
    my ($len, $chunk) = @_;
    return sized($len, $chunk, '{"name": "customers/events", "data": {"customer_ids": '
                 . '{"registered": "big"}, "event_type": "big", "properties": {', '}}}');
}
sub sized_data {
    my ($len, $chunk) = @_;
    return sized($len, $chunk, '{"customer_ids": {"registered": "big"}, '
                 . '"event_type": "big", "properties": {', '}}');
}

my @cases;     # [label, url, body, status, body, rows]
my $other = ev('other', '');
my $two   = rows(customers => 2, ids => 2, events => 2);
my $one   = rows(customers => 1, ids => 1, events => 1);

# --- commands per batch
for ([ '/small', 3 ], [ '', 50 ]) {
    my ($prefix, $max) = @$_;
    my $where = $prefix || '/track';
    push @cases,
        ["$where: $max commands", batch_url('proj-lim', 'batch', $prefix),
         batch(map { ev("c$_", '') } 1 .. $max), 200,
         batch_body((res_ok()) x $max),
         rows(customers => $max, ids => $max, events => $max)],
        ["$where: " . ($max + 1) . ' commands', batch_url('proj-lim', 'batch', $prefix),
         batch(map { ev("c$_", '') } 1 .. $max + 1), 400, error_body(e_many($max)), rows()],
        ["$where: " . ($max + 1) . ' system/time commands', batch_url('proj-lim', 'batch', $prefix),
         batch(('{"name": "system/time"}') x ($max + 1)), 400, error_body(e_many($max)), rows()];
}

# --- command size: smaller than the limit, in bytes as sent
for ([ '/small', 2048, 50 ], [ '', 819200, 16000 ]) {
    my ($prefix, $max, $chunk) = @$_;
    my $where = $prefix || '/track';
    push @cases,
        ["$where: command of " . ($max - 1) . ' bytes', batch_url('proj-lim', 'batch', $prefix),
         batch(sized_command($max - 1, $chunk), $other), 200,
         batch_body(res_ok(), res_ok()), $two],
        ["$where: command of $max bytes", batch_url('proj-lim', 'batch', $prefix),
         batch(sized_command($max, $chunk), $other), 200,
         batch_body(res_err([e_size($max)]), res_ok()), $one],
        ["$where: command of $max bytes, not even an object", batch_url('proj-lim', 'batch', $prefix),
         batch($other, '"' . 'q' x ($max - 2) . '"'), 200,
         batch_body(res_ok(), res_err([e_size($max)])), $one];
}
# the single routes: the body is the command's data
push @cases,
    ['/small customers/events: body of 2047 bytes',
     batch_url('proj-lim', 'customers/events', '/small'), sized_data(2047, 50), 200,
     res_ok() . "\n", $one],
    ['/small customers/events: body of 2048 bytes',
     batch_url('proj-lim', 'customers/events', '/small'), sized_data(2048, 50), 200,
     res_err([e_size(2048)]) . "\n", rows()],
    ['/small customers: body of 2048 bytes',
     batch_url('proj-lim', 'customers', '/small'),
     sized(2048, 50, '{"customer_ids": {"registered": "big"}, "properties": {', '}}'), 200,
     res_err([e_size(2048)]) . "\n", rows()];

# --- property values: the serialised value must be smaller than the limit
my @values = (
    # [label, value as sent, accepted?]  (limit 64 on /small)
    ['63-byte string',                  '"' . 'v' x 61 . '"', 1],
    ['64-byte string',                  '"' . 'v' x 62 . '"', 0],
    ['escapes sent, 63 bytes stored',   '"' . '\u0041' x 61 . '"', 1],
    ['2-byte characters, 64 bytes',     '"' . "\xc3\xa9" x 31 . '"', 0],
    ['2-byte characters, 62 bytes',     '"' . "\xc3\xa9" x 30 . '"', 1],
    ['newlines serialise as \n, 64 bytes', '"' . '\n' x 31 . '"', 0],
    ['slashes are not escaped, 63 bytes', '"' . '/' x 61 . '"', 1],
    ['object of 63 bytes',              '{"k": "' . 'x' x 55 . '"}', 1],
    ['object of 64 bytes',              '{"k": "' . 'x' x 56 . '"}', 0],
    ['array of 63 bytes',               '[' . join(', ', (1) x 31) . ']', 1],
    ['array of 64 bytes',               '[' . join(', ', (1) x 30) . ', 10]', 0],
    ['number of 63 bytes',              '0.' . '1' x 61, 1],
    ['number of 64 bytes',              '0.' . '1' x 62, 0],
);
for my $v (@values) {
    my ($label, $value, $ok) = @$v;
    push @cases,
        ["/small event property, $label", batch_url('proj-lim', 'batch', '/small'),
         batch(ev('val', qq[, "properties": {"v": $value}]), $other), 200,
         batch_body($ok ? res_ok() : res_err([e_value('v', 64)]), res_ok()),
         $ok ? $two : $one];
}
push @cases,
    ['/small customer property of 64 bytes', batch_url('proj-lim', 'batch', '/small'),
     batch(qq[{"name": "customers", "data": {"customer_ids": {"registered": "cv"}, ]
           . qq["properties": {"ok": 1, "w": "] . 'w' x 62 . '"}}}', $other), 200,
     batch_body(res_err([e_value('w', 64)]), res_ok()), $one],
    ['/small customer property of 63 bytes', batch_url('proj-lim', 'batch', '/small'),
     batch(qq[{"name": "customers", "data": {"customer_ids": {"registered": "cv"}, ]
           . qq["properties": {"ok": 1, "w": "] . 'w' x 61 . '"}}}', $other), 200,
     batch_body(res_ok(), res_ok()),
     rows(customers => 2, ids => 2, events => 1, updates => 1, properties => 2)],
    ['/track property of 16383 bytes', batch_url('proj-lim'),
     batch(ev('val', qq[, "properties": {"v": "] . 'v' x 16381 . '"}'), $other), 200,
     batch_body(res_ok(), res_ok()), $two],
    ['/track property of 16384 bytes', batch_url('proj-lim'),
     batch(ev('val', qq[, "properties": {"v": "] . 'v' x 16382 . '"}'), $other), 200,
     batch_body(res_err([e_value('v', 16384)]), res_ok()), $one],
    ['/track customer property of 16384 bytes', batch_url('proj-lim'),
     batch(qq[{"name": "customers", "data": {"customer_ids": {"registered": "cv"}, ]
           . qq["properties": {"w": {"k": "] . 'w' x 16376 . '"}}}}', $other), 200,
     batch_body(res_err([e_value('w', 16384)]), res_ok()), $one];

# --- names: property names and event types, in bytes
for ([ '/small', 16 ], [ '', 128 ]) {
    my ($prefix, $max) = @$_;
    my $where = $prefix || '/track';
    my $url = batch_url('proj-lim', 'batch', $prefix);
    my $at  = 'n' x $max;
    my $over = 'n' x ($max + 1);
    my $wide = "\xc3\xa9" x ($max / 2);       # $max bytes, $max/2 characters
    push @cases,
        ["$where: property name of $max bytes", $url,
         batch(ev('nm', qq[, "properties": {"$at": 1}]), $other), 200,
         batch_body(res_ok(), res_ok()), $two],
        ["$where: property name of " . ($max + 1) . ' bytes', $url,
         batch(ev('nm', qq[, "properties": {"$over": 1}]), $other), 200,
         batch_body(res_err([e_pname($max)]), res_ok()), $one],
        ["$where: property name of $max bytes in 2-byte characters", $url,
         batch(ev('nm', qq[, "properties": {"$wide": 1}]), $other), 200,
         batch_body(res_ok(), res_ok()), $two],
        ["$where: property name of " . ($max + 1) . ' bytes in 2-byte characters', $url,
         batch(ev('nm', qq[, "properties": {"${wide}a": 1}]), $other), 200,
         batch_body(res_err([e_pname($max)]), res_ok()), $one],
        ["$where: customer property name of " . ($max + 1) . ' bytes', $url,
         batch(qq[{"name": "customers", "data": {"customer_ids": {"registered": "nm"}, ]
               . qq["properties": {"$over": 1}}}], $other), 200,
         batch_body(res_err([e_pname($max)]), res_ok()), $one],
        ["$where: event_type of $max bytes", $url,
         batch(qq[{"name": "customers/events", "data": {"customer_ids": {"registered": "nm"}, ]
               . qq["event_type": "$wide"}}], $other), 200,
         batch_body(res_ok(), res_ok()), $two],
        ["$where: event_type of " . ($max + 1) . ' bytes', $url,
         batch(qq[{"name": "customers/events", "data": {"customer_ids": {"registered": "nm"}, ]
               . qq["event_type": "$over"}}], $other), 200,
         batch_body(res_err([e_etlen($max)]), res_ok()), $one];
}

# --- the whole body on /small: 4096 bytes
my $small = batch(ev('body', ''));
my $b4096 = $small . ' ' x (4096 - length $small);
push @cases,
    ['/small: body of 4096 bytes', batch_url('proj-lim', 'batch', '/small'),
     $b4096, 200, batch_body(res_ok()), $one],
    ['/small: body of 4097 bytes', batch_url('proj-lim', 'batch', '/small'),
     "$b4096 ", 413, error_body(e_body(4096)), rows()];

plan tests => @cases * $C + 2 * $C + 2;

for my $case (@cases) {
    my ($label, $url, $body, $status, $want, $rows) = @$case;
    db_clear();
    my $r = post_json($url, $body);
    check_request(res => $r, name => $label, status => $status,
                  body => $want, rows => $rows,
                  raw_body => $status != 200);
}

# a chunked body is counted as it arrives
for my $len (4096, 4097) {
    db_clear();
    my $body = $small . ' ' x ($len - length $small);
    my $r = raw_request('POST', batch_url('proj-lim', 'batch', '/small'),
                        sprintf("%x\r\n%s\r\n0\r\n\r\n", $len, $body),
                        'Content-Type' => 'application/json',
                        'Transfer-Encoding' => 'chunked');
    check_request(res => $r, name => "/small: chunked body of $len bytes",
                  status => $len > 4096 ? 413 : 200,
                  body => $len > 4096 ? error_body(e_body(4096)) : batch_body(res_ok()),
                  rows => $len > 4096 ? rows() : $one);
}

# the stored value of the biggest accepted property is whole
db_clear();
post_json(batch_url('proj-lim'), batch(ev('val', qq[, "properties": {"v": "] . 'v' x 16381 . '"}')));
my $p = db()->selectrow_array('SELECT properties FROM tb_events');
ok t_cmp(length($p // ''), length('{"v":""}') + 16381, 'a 16383-byte value is stored whole');
my $big = sized_command(819199, 16000);
post_json(batch_url('proj-lim'), batch($big));
my $want = JSON::PP->new->canonical(1)->encode(
    JSON::PP->new->decode($big)->{data}{properties});
ok t_cmp(scalar db()->selectrow_array(
             "SELECT properties FROM tb_events WHERE event_type = 'big'") eq $want
         ? 'same' : 'differs', 'same',
         'the 819199-byte command is stored whole');
db_clear();
