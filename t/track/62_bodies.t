# Request bodies beyond plain application/json (issue 6):
#  - gzip (Content-Encoding: gzip) through mod_deflate's input filter, set
#    up in /gzip as the shipped conf/track_batch.conf does, with the
#    inflated size capped by the module's own TrackBatchMaxBody (4096
#    there): a gzip bomb far smaller than the cap on the wire gets the
#    module's 413 and records nothing;
#  - text/plain bodies (navigator.sendBeacon) parsed as JSON.
use strict;
use warnings FATAL => 'all';

use Apache::Test;
use Apache::TestUtil;
use Apache::TestRequest ();
use IO::Compress::Gzip qw(gzip $GzipError);
use lib 't/lib';
use TB qw(post_raw decode db db_counts db_clear batch_url raw_http json);

plan tests => 62;

db_clear();
my $CAP = 4096;
my $TOO_LARGE = qr/^\{"success": false, "errors": \["Request body is larger than 4096 bytes\."\]\}\n?$/;

sub yes { my ($cond, $name) = @_; return t_cmp($cond ? 1 : 0, 1, $name) }
sub counts { my $n = db_counts(); join ' ', map { "$_=$n->{$_}" } sort keys %$n }
sub gz { my $in = shift; my $out; gzip(\$in => \$out) or die $GzipError; $out }
sub post_gz {
    my ($url, $plain, %h) = @_;
    return post_raw($url, gz($plain), 'Content-Type' => 'application/json',
                    'Content-Encoding' => 'gzip', %h);
}
my $dbh = db();
sub events_for {
    my $id = shift;
    return $dbh->selectall_arrayref(
        "SELECT e.event_type, e.properties FROM tb_events e
           JOIN tb_customer_ids i ON i.customer_id = e.customer_id
          WHERE i.id_value = ? ORDER BY e.id", undef, $id);
}
# A batch of one event whose JSON text is exactly $size bytes, padded with
# whitespace after the object (strict JSON allows it).
sub batch_of_size {
    my ($size, $id) = @_;
    my $text = json()->encode({ commands => [ { name => 'customers/events',
        data => { customer_ids => { registered => $id }, event_type => 'sized' } } ] });
    die "too small a size" if length $text > $size;
    return $text . (' ' x ($size - length $text));
}

# ---- the shipped configuration is what /gzip mirrors --------------------
my $top = Apache::Test::config()->{vars}->{top_dir};
open my $fh, '<', "$top/conf/track_batch.conf" or die "conf/track_batch.conf: $!";
my $shipped = do { local $/; <$fh> };
close $fh;
my ($loc) = $shipped =~ m{<Location /track>(.*?)</Location>}s;
ok yes($loc && $loc =~ /^\s*SetInputFilter\s+DEFLATE\s*$/m,
       'conf/track_batch.conf: SetInputFilter DEFLATE in <Location /track>');
ok yes($loc && $loc =~ /^\s*DeflateInflateRatioLimit\s+2000\s*$/m,
       'conf/track_batch.conf: DeflateInflateRatioLimit 2000 there too');
open $fh, '<', "$top/t/conf/extra.conf.in" or die "extra.conf.in: $!";
my $extra = do { local $/; <$fh> };
close $fh;
my ($gz_loc) = $extra =~ m{<Location /gzip>(.*?)</Location>}s;
ok yes($gz_loc && $gz_loc =~ /^\s*SetInputFilter\s+DEFLATE\s*$/m
       && $gz_loc =~ /^\s*DeflateInflateRatioLimit\s+2000\s*$/m
       && $gz_loc =~ /^\s*TrackBatchMaxBody\s+$CAP\s*$/m,
       'the test location /gzip uses the same settings, with a 4096-byte cap');

# ---- gzip accepted and recorded ------------------------------------------
my $batch = json()->encode({ commands => [
    { name => 'customers', command_id => 'c1',
      data => { customer_ids => { registered => 'gz@example.com' },
                properties => { city => 'Brno' } } },
    { name => 'customers/events',
      data => { customer_ids => { registered => 'gz@example.com' },
                event_type => 'purchase', timestamp => 1700000000,
                properties => { total => 12.5, items => [1, 2, 3] } } } ] });
my $gzb = gz($batch);
ok yes(length($gzb) != length($batch) && substr($gzb, 0, 2) eq "\x1f\x8b",
       'the body on the wire is gzip');
my $r = post_gz(batch_url('gz-project', 'batch', '/gzip'), $batch);
ok t_cmp($r->code, 200, 'gzip batch: 200');
my $a = decode($r->content);
ok t_cmp(json()->encode($a->{results}),
         '[{"command_id":"c1","success":true},{"success":true}]',
         'gzip batch: both commands succeed');
my $ev = events_for('gz@example.com');
ok t_cmp(scalar @$ev, 1, 'gzip batch: event recorded');
ok t_cmp(json()->encode(decode($ev->[0][1])), '{"items":[1,2,3],"total":12.5}',
         'gzip batch: event properties as sent');
my ($city) = $dbh->selectrow_array(
    "SELECT p.value FROM tb_customer_properties p
       JOIN tb_customer_ids i ON i.customer_id = p.customer_id
      WHERE i.id_value = 'gz\@example.com' AND p.name = 'city'");
ok t_cmp($city, '"Brno"', 'gzip batch: customer property recorded');

$r = post_gz(batch_url('gz-project', 'customers/events', '/gzip'),
             json()->encode({ customer_ids => { registered => 'gz@example.com' },
                              event_type => 'single', properties => undef,
                              timestamp => undef }));
ok t_cmp($r->code, 200, 'gzip single event: 200');
ok t_cmp($r->content, qr/^\{"success": true\}\n?$/, 'gzip single event: success');
$r = post_gz(batch_url('gz-project', 'customers', '/gzip'),
             json()->encode({ customer_ids => { registered => 'gz@example.com' },
                              properties => { tier => 'gold' } }));
ok t_cmp($r->code, 200, 'gzip customers: 200');
ok t_cmp($r->content, qr/^\{"success": true\}\n?$/, 'gzip customers: success');
ok t_cmp(scalar @{ events_for('gz@example.com') }, 2, 'gzip single event recorded');
my ($nupd) = $dbh->selectrow_array(
    "SELECT count(*) FROM tb_customer_updates WHERE project = 'gz-project'");
ok t_cmp($nupd, 2, 'both gzip customers commands recorded');

# the same location takes plain bodies too
$r = TB::post_json(batch_url('gz-project', 'customers/events', '/gzip'),
                   { customer_ids => { registered => 'plain@example.com' },
                     event_type => 'plain' });
ok t_cmp($r->code, 200, 'uncompressed body where gzip is enabled: 200');
ok t_cmp(scalar @{ events_for('plain@example.com') }, 1, '... recorded');

# the inflated size decides, at the byte: exactly the cap is fine
my $exact = batch_of_size($CAP, 'exact@example.com');
ok t_cmp(length $exact, $CAP, 'a batch of exactly 4096 bytes');
$r = post_gz(batch_url('gz-project', 'batch', '/gzip'), $exact);
ok t_cmp($r->code, 200, 'gzip inflating to exactly the cap: 200');
ok t_cmp(scalar @{ events_for('exact@example.com') }, 1, '... recorded');

# ---- gzip bombs: the module's own cap on the inflated size ------------------
my $n0 = counts();

my $one_over = batch_of_size($CAP + 1, 'over@example.com');
$r = post_gz(batch_url('gz-project', 'batch', '/gzip'), $one_over);
ok t_cmp($r->code, 413, 'gzip inflating to the cap + 1: 413');
ok t_cmp($r->content, $TOO_LARGE, '... the module\'s text naming the limit');
ok t_cmp($r->header('Content-Type'), qr{^application/json}, '... as JSON');

# A bomb: a property value of a megabyte of one letter, about a kilobyte
# on the wire (deflate tops out near 1:1032, under the ratio limit of 2000).
my $bomb_text = json()->encode({ commands => [ { name => 'customers/events',
    data => { customer_ids => { registered => 'bomb@example.com' },
              event_type => 'bomb', properties => { pad => 'A' x 1_000_000 } } } ] });
my $bomb = gz($bomb_text);
ok yes(length($bomb) < $CAP, 'the bomb is under the cap on the wire ('
       . length($bomb) . ' bytes)');
ok yes(length($bomb_text) > 200 * $CAP, 'and inflates far beyond it ('
       . length($bomb_text) . ' bytes)');
$r = post_raw(batch_url('gz-project', 'batch', '/gzip'), $bomb,
              'Content-Type' => 'application/json', 'Content-Encoding' => 'gzip');
ok t_cmp($r->code, 413, 'gzip bomb: 413');
ok t_cmp($r->content, $TOO_LARGE, 'gzip bomb: the module\'s text naming the limit');

$r = post_raw(batch_url('gz-project', 'customers/events', '/gzip'),
              gz(json()->encode({ customer_ids => { registered => 'bomb@example.com' },
                                  event_type => 'bomb',
                                  properties => { pad => ' ' x 100_000 } })),
              'Content-Type' => 'application/json', 'Content-Encoding' => 'gzip');
ok t_cmp($r->code, 413, 'gzip bomb on a single route: 413');
ok t_cmp($r->content, $TOO_LARGE, '... same text');

# Chunked, so no Content-Length announces anything: the count while reading
# is what stops it.
my $port = Apache::Test::config()->{vars}->{port};
my $chunks = '';
for (my $i = 0; $i < length $bomb; $i += 256) {
    my $piece = substr($bomb, $i, 256);
    $chunks .= sprintf("%x\r\n", length $piece) . $piece . "\r\n";
}
my $raw = raw_http(pieces => [
    "POST /gzip/track/v2/projects/gz-project/batch HTTP/1.1\r\n"
    . "Host: localhost:$port\r\nContent-Type: application/json\r\n"
    . "Content-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n"
    . "Connection: close\r\n\r\n" . $chunks . "0\r\n\r\n" ]);
ok t_cmp($raw, qr{^HTTP/1\.1 413 }, 'chunked gzip bomb: 413');
my ($raw_body) = $raw =~ /\r\n\r\n(.*)\z/s;
ok t_cmp($raw_body, $TOO_LARGE, '... the module\'s text');

# an oversized plain body on the same location, for comparison
$r = post_raw(batch_url('gz-project', 'batch', '/gzip'), $one_over,
              'Content-Type' => 'application/json');
ok t_cmp($r->code, 413, 'plain body of the cap + 1: 413 as well');
ok t_cmp($r->content, $TOO_LARGE, '... same text');

# what is not gzip, but says so
$r = post_raw(batch_url('gz-project', 'batch', '/gzip'), $batch,
              'Content-Type' => 'application/json', 'Content-Encoding' => 'gzip');
ok t_cmp($r->code, 400, 'Content-Encoding: gzip on a body that is not gzip: 400');
ok t_cmp($r->content, qr/^\{"success": false, "errors": \["The request body could not be read\."\]\}\n?$/,
         '... "The request body could not be read."');
# a gzip stream cut short
$r = post_raw(batch_url('gz-project', 'batch', '/gzip'), substr($gzb, 0, length($gzb) - 12),
              'Content-Type' => 'application/json', 'Content-Encoding' => 'gzip');
ok yes($r->code == 400, 'a truncated gzip body: 400 (got ' . $r->code . ')');

ok t_cmp(counts(), $n0, 'nothing recorded by any refused gzip body');
ok t_cmp(scalar @{ events_for('bomb@example.com') } + scalar @{ events_for('over@example.com') },
         0, 'no bomb events in the database');

# ---- text/plain ----------------------------------------------------------
for my $ct ('text/plain', 'text/plain;charset=UTF-8', 'TEXT/PLAIN; charset=utf-8') {
    my $id = "beacon-$ct";
    $id =~ s/\W+/-/g;
    $r = post_raw(batch_url('plain-project', 'customers/events', '/track'),
                  json()->encode({ customer_ids => { cookie => $id },
                                   event_type => 'beacon', properties => { ct => $ct } }),
                  'Content-Type' => $ct);
    ok t_cmp($r->code, 200, "Content-Type $ct: 200");
    ok t_cmp($r->content, qr/^\{"success": true\}\n?$/, "Content-Type $ct: success");
    ok t_cmp(scalar @{ events_for($id) }, 1, "Content-Type $ct: recorded");
}
$r = post_raw(batch_url('plain-project', 'batch', '/track'),
              json()->encode({ commands => [
                  { name => 'customers', data => { customer_ids => { cookie => 'beacon-batch' },
                                                   properties => { seen => JSON::PP::true() } } },
                  { name => 'customers/events', data => { customer_ids => { cookie => 'beacon-batch' },
                                                          event_type => 'beacon' } } ] }),
              'Content-Type' => 'text/plain;charset=UTF-8');
ok t_cmp($r->code, 200, 'text/plain batch: 200');
ok t_cmp(json()->encode(decode($r->content)->{results}),
         '[{"success":true},{"success":true}]', 'text/plain batch: both succeed');
ok t_cmp(scalar @{ events_for('beacon-batch') }, 1, 'text/plain batch: event recorded');
my ($seen) = $dbh->selectrow_array(
    "SELECT p.value FROM tb_customer_properties p
       JOIN tb_customer_ids i ON i.customer_id = p.customer_id
      WHERE i.id_value = 'beacon-batch' AND p.name = 'seen'");
ok t_cmp($seen, 'true', 'text/plain batch: property recorded');

# text/plain is parsed as strictly as JSON
my $n1 = counts();
$r = post_raw(batch_url('plain-project', 'customers/events', '/track'),
              "{'customer_ids': {'cookie': 'x'}, 'event_type': 'beacon'}",
              'Content-Type' => 'text/plain');
ok t_cmp($r->code, 400, 'text/plain that is not JSON: 400');
ok t_cmp($r->content, qr/"Invalid JSON"/, '... Invalid JSON');

for my $ct ('text/html', 'application/x-www-form-urlencoded', 'text/plainx',
            'multipart/form-data; boundary=x') {
    $r = post_raw(batch_url('plain-project', 'customers/events', '/track'),
                  '{"customer_ids": {"cookie": "x"}, "event_type": "beacon"}',
                  'Content-Type' => $ct);
    ok t_cmp($r->code, 415, "Content-Type $ct: 415");
}
# (LWP would add a Content-Type of its own: a raw request)
my $nobody_ct = '{"customer_ids": {"cookie": "x"}, "event_type": "beacon"}';
$raw = raw_http(pieces => [
    "POST /track/track/v2/projects/plain-project/customers/events HTTP/1.1\r\n"
    . "Host: localhost:$port\r\nContent-Length: " . length($nobody_ct)
    . "\r\nConnection: close\r\n\r\n$nobody_ct" ]);
ok t_cmp($raw, qr{^HTTP/1\.1 415 }, 'no Content-Type: 415');
ok t_cmp($raw, qr/"Content-Type must be application\/json or text\/plain\."/,
         '... its text');
ok t_cmp(counts(), $n1, 'nothing recorded by the refused bodies');

# gzip and text/plain together
$r = post_raw(batch_url('gz-project', 'customers/events', '/gzip'),
              gz(json()->encode({ customer_ids => { cookie => 'gz-beacon' },
                                  event_type => 'beacon' })),
              'Content-Type' => 'text/plain', 'Content-Encoding' => 'gzip');
ok t_cmp($r->code, 200, 'gzip text/plain: 200');
ok t_cmp(scalar @{ events_for('gz-beacon') }, 1, 'gzip text/plain: recorded');
