# Credentials never reach a log (SPEC §6), with the suite at LogLevel
# trace8: httpd dumps the request line (trace5) and the request headers
# (trace4), and the access log has the request line.  Requests here take
# the less travelled ways in: a request line sent in pieces, one longer than
# LimitRequestLine, pipelined requests, blank lines first, a repeated
# access_token, a path spelled with %-escapes or a double slash.
use strict;
use warnings FATAL => 'all';

use Apache::Test;
use Apache::TestUtil;
use Apache::TestRequest ();
use MIME::Base64 ();
use Time::HiRes ();
use lib 't/lib';
use TB qw(post_json decode db_counts batch_url admin basic raw_http);

my $T_DIR = Apache::Test::vars('t_dir');

sub made_up {
    my $s = join '', map { ('A'..'Z', 'a'..'z', 0..9)[rand 62] } 1 .. 40;
    open my $fh, '>>', "$T_DIR/db/secrets.txt" or die "secrets.txt: $!";
    print $fh "$s\n";
    close $fh;
    return $s;
}

# What a log line could hold of a secret: itself, or its base64 inside a
# Basic header, at any of the three alignments.
sub needles {
    my $s = shift;
    my @n = ($s);
    for my $k (0 .. 2) {
        my $c = substr($s, $k);
        $c = substr($c, 0, length($c) - length($c) % 3);
        push @n, MIME::Base64::encode_base64($c, '') if length $c >= 12;
    }
    return @n;
}

sub logs_text {
    my $text = '';
    opendir my $d, "$T_DIR/logs" or die "t/logs: $!";
    for my $f (sort readdir $d) {
        next unless -f "$T_DIR/logs/$f";
        open my $fh, '<:raw', "$T_DIR/logs/$f" or die "$f: $!";
        local $/;
        $text .= <$fh> // '';
    }
    return $text;
}

sub found_in_logs {
    my $logs = logs_text();
    return scalar grep { index($logs, $_) >= 0 } map { needles($_) } @_;
}

# The access log is written after the answer: wait for a request's marker.
sub wait_logged {
    my @markers = @_;
    my $deadline = Time::HiRes::time() + 5;
    while (Time::HiRes::time() < $deadline) {
        my $logs = logs_text();
        return 1 unless grep { index($logs, $_) < 0 } @markers;
        Time::HiRes::sleep(0.05);
    }
    return 0;
}

sub status_of { my ($line) = $_[0] =~ m{^HTTP/1\.\d (\d{3})}; return $line // 'none' }

plan tests => 31;

my $P = 'auth-redact';
my $priv = admin('project', 'create', $P, '--key', 'private');
my $pub  = admin('key', 'create', $P, 'public');
my $pub2 = admin('key', 'create', $P, 'public');
my @setup = ($priv, $pub, $pub2,
    map { admin('key', 'grant', $_->{key_id}, 'events') } $pub, $pub2);
ok t_cmp(join(',', map { $_->{status} } @setup), join(',', (0) x @setup),
         'keys created');

my $cfg  = Apache::Test::config()->{vars};
my $host = "$cfg->{servername}:$cfg->{port}";
my $path = batch_url($P, 'batch', '/keys');
my $body = TB::json()->encode({ commands => [ { name => 'customers/events',
    data => { customer_ids => { registered => 'redact' }, event_type => 'r' } } ] });
my $basic = basic($priv->{key_id}, $priv->{secret});
my ($tok, $tok2) = ($pub->{key}, $pub2->{key});

sub raw_post {
    my ($target, %h) = @_;
    my $extra = join '', map { "$_: $h{$_}\r\n" } sort keys %h;
    return "POST $target HTTP/1.1\r\nHost: $host\r\n"
        . "Content-Type: application/json\r\nContent-Length: "
        . length($body) . "\r\n$extra\r\n$body";
}

# 1. The ordinary ways, to show the lines are logged, and redacted.
my $r = post_json("$path?m=redact1&access_token=$tok", $body);
ok t_cmp($r->code, 200, 'access_token accepted');
$r = post_json("$path?m=redact2", $body, Authorization => $basic);
ok t_cmp($r->code, 200, 'Basic accepted');
ok t_cmp(wait_logged('m=redact1&access_token=redacted', 'm=redact2'), 1,
         'both requests in the access log, the token as "redacted"');
my $logs = logs_text();
ok t_cmp($logs, qr/Request received from client: POST \S*m=redact1&access_token=redacted /,
         'trace5 request line logged, redacted');
# line by line: as one /m match over the whole log, Perl looks for the
# fixed text afresh from every line start, which took minutes on 40 MB
ok t_cmp(scalar(grep { /^\S.*\] +Authorization: redacted$/ } split /\n/, $logs),
         qr/^[1-9]/, 'trace4 request headers logged, Authorization redacted');

# 2. The request line in pieces, split inside the name and the token.
my $out = raw_http(pieces => [ "POST $path?m=redact3&acc", \0.2,
    'ess_token=' . substr($tok, 0, 17), \0.2,
    substr(raw_post(substr($tok, 17), Connection => 'close'), 5) ]);
ok t_cmp(status_of($out), 200, 'request line sent in pieces: 200');

# 3. Blank lines before the request line; then two pipelined requests.
$out = raw_http(pieces => [ "\r\n\r\n" . raw_post("$path?m=redact4&access_token=$tok")
    . raw_post("$path?m=redact5&access_token=$tok2", Connection => 'close') ]);
my @codes = $out =~ m{^HTTP/1\.1 (\d{3})}mg;
ok t_cmp("@codes", '200 200', 'blank lines first, then two pipelined requests');

# 4. access_token twice: the first is used, both are hidden.
my $unused = made_up();
$r = post_json("$path?access_token=$tok&m=redact6&access_token=$unused", $body);
ok t_cmp($r->code, 200, 'access_token twice: the first one counts');

# 5. Longer than LimitRequestLine, the token across httpd's 8 KB read.
my $head = "POST $path?m=redact7&p=";
my $pad = 'x' x (8192 - length($head) - length('&access_token=') - 8);
$out = raw_http(pieces => [ "$head$pad&access_token=$tok HTTP/1.1\r\n"
    . "Host: $host\r\nContent-Length: 0\r\nConnection: close\r\n\r\n" ]);
ok t_cmp(status_of($out), 414, 'request line over LimitRequestLine: 414');

# 6. access_token on a URL that is not the module's belongs to whatever
# serves that URL (OAuth's own query parameter): passed on untouched, so
# it is in the access log as sent.  Not one of our keys.
my $foreign = join '', map { ('A'..'Z', 'a'..'z', 0..9)[rand 62] } 1 .. 40;
$r = Apache::TestRequest::GET("/index.html?m=redact8&access_token=$foreign");
ok t_cmp($r->code, 200, 'access_token on another URL');

ok t_cmp(wait_logged(map { "m=redact$_" } 3 .. 8), 1,
         'every request so far is in the access log');
ok t_cmp(found_in_logs($tok), 0, 'public key (access_token, pieces, pipelined) not in any log');
ok t_cmp(found_in_logs($tok2), 0, 'second public key not in any log');
ok t_cmp(found_in_logs($unused), 0, 'repeated access_token not in any log');
ok t_cmp(found_in_logs(substr($tok, 8)), 0, 'no piece of the token cut at 8 KB in any log');
ok t_cmp(found_in_logs($priv->{secret}), 0, 'secret not in any log');
ok t_cmp(found_in_logs($foreign) > 0 ? 1 : 0, 1,
         "another URL's access_token is left as sent");

# 7. The same credentials on paths httpd normalises before the handler
# sees them: %-escapes and a double slash still reach the module, which
# authenticates with the header, so the header must be hidden there too.
my ($s3, $t3, $t4);
{
    my $p3 = admin('key', 'create', $P, 'private');
    my $k3 = admin('key', 'create', $P, 'public');
    my $k4 = admin('key', 'create', $P, 'public');
    admin('key', 'grant', $_->{key_id}, 'events') for $p3, $k3, $k4;
    ($s3, $t3, $t4) = ($p3->{secret}, $k3->{key}, $k4->{key});
    my $before = db_counts()->{tb_events};
    $r = post_json("/keys/track/v2/pr%6Fjects/$P/batch?m=redact9", $body,
                   Authorization => basic($p3->{key_id}, $s3));
    ok t_cmp($r->code, 200, '%-escaped path with Basic: served by the module');
    $r = post_json("/keys/track/v2/pr%6Fjects/$P/batch?m=redact10", $body,
                   Authorization => "Token $t3");
    ok t_cmp($r->code, 200, '%-escaped path with Token: served by the module');
    $r = post_json("/keys/track/v2//projects/$P/batch?m=redact11", $body,
                   Authorization => "Token $t4");
    ok t_cmp($r->code, 200, 'double slash with Token: served by the module');
    ok t_cmp(db_counts()->{tb_events}, $before + 3, 'and recorded');
    ok t_cmp(wait_logged(map { "m=redact$_" } 9 .. 11), 1, 'logged');
}
ok t_cmp(found_in_logs($s3), 0, '%-escaped path: Basic secret not in any log');
ok t_cmp(found_in_logs($t3), 0, '%-escaped path: Token key not in any log');
ok t_cmp(found_in_logs($t4), 0, 'double slash: Token key not in any log');

# 8. Refused credentials are kept out of the logs as well.
my ($bad_tok, $bad_sec) = (made_up(), made_up());
$r = post_json("$path?m=redact12", $body, Authorization => "Token $bad_tok");
ok t_cmp($r->code, 401, 'unknown Token refused');
$r = post_json("$path?m=redact13", $body,
               Authorization => basic($priv->{key_id}, $bad_sec));
ok t_cmp($r->code, 403, 'wrong secret refused');
$r = post_json("$path?m=redact14&access_token=$bad_tok.x", $body);
ok t_cmp($r->code, 401, 'malformed access_token refused');
ok t_cmp(wait_logged(map { "m=redact$_" } 12 .. 14), 1, 'logged');
ok t_cmp(found_in_logs($bad_tok, $bad_sec), 0,
         'refused token and secret not in any log');
