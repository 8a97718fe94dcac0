# Authentication through real httpd (SPEC §2, §6): every refusal with its
# exact status, text and WWW-Authenticate, and nothing recorded; every way
# of sending a good key accepted and recorded.
use strict;
use warnings FATAL => 'all';

use Apache::Test;
use Apache::TestUtil;
use Apache::TestRequest ();
use HTTP::Request ();
use MIME::Base64 ();
use lib 't/lib';
use TB qw(post_json decode db_counts db_clear batch_url admin basic);

my $T_DIR = Apache::Test::vars('t_dir');

# Credentials made up here are logged in secrets.txt too: 99_no_secrets.t
# checks that none of them reached a log either.
sub made_up {
    my $s = join '', map { ('A'..'Z', 'a'..'z', 0..9)[rand 62] } 1 .. 40;
    open my $fh, '>>', "$T_DIR/db/secrets.txt" or die "secrets.txt: $!";
    print $fh "$s\n";
    close $fh;
    return $s;
}

sub rows { my $n = db_counts(); my $t = 0; $t += $_ for values %$n; return $t }

sub error_body { return qq({"success": false, "errors": ["$_[0]"]}\n) }

my $NEED   = 'Authentication required: send an access key.';
my $BAD    = 'Malformed credentials.';
my $NOKEY  = 'Access key not found';
my $SECRET = 'Invalid secret';
my $OTHER  = 'Access key is not valid for this project.';
my $NOTFOUND = 'The requested URL was not found on the server.';

db_clear();
my $P  = 'auth-matrix';
my $P2 = 'auth-matrix-other';
my $priv  = admin('project', 'create', $P, '--key', 'private');
my $pub   = admin('key', 'create', $P, 'public');
my $opriv = admin('project', 'create', $P2, '--key', 'private');
my $opub  = admin('key', 'create', $P2, 'public');
my $dpriv = admin('key', 'create', $P, 'private');
my $dpub  = admin('key', 'create', $P, 'public');
my @setup = ($priv, $pub, $opriv, $opub, $dpriv, $dpub);
for my $k ($pub, $opub, $dpriv, $dpub) {
    push @setup, admin('key', 'grant', $k->{key_id}, $_) for qw(events customers);
}
push @setup, admin('key', 'disable', $_->{key_id}) for $dpriv, $dpub;

my $url     = batch_url($P, 'batch', '/keys');
my $nowhere = batch_url('auth-matrix-no-such-project', 'batch', '/keys');
my $batch = { commands => [ { name => 'customers/events', data => {
    customer_ids => { registered => 'matrix@example.com' },
    event_type => 'matrix' } } ] };

my ($id, $sec) = ($priv->{key_id}, $priv->{secret});
my $good_basic = basic($id, $sec);     # 20 + 1 + 40 bytes: ends in "=="
my $b64 = substr($good_basic, 6);
my $unknown_tok = made_up();
my $unknown_sec = made_up();
my $wrong_sec   = made_up();

# [name, url, headers, status, text]
my @refused = (
    [ 'no credentials', $url, {}, 401, $NEED ],
    [ 'empty Authorization', $url, { Authorization => '' }, 401, $BAD ],
    [ 'Token without a key', $url, { Authorization => 'Token' }, 401, $BAD ],
    [ 'Token with two words', $url,
      { Authorization => "Token $pub->{key} x" }, 401, $BAD ],
    [ 'Token with a bad character', $url,
      { Authorization => "Token $pub->{key}!" }, 401, $BAD ],
    [ 'unknown scheme Bearer', $url,
      { Authorization => "Bearer $pub->{key}" }, 401, $BAD ],
    [ 'scheme glued to the key', $url,
      { Authorization => "Token:$pub->{key}" }, 401, $BAD ],
    [ 'Basic without a value', $url, { Authorization => 'Basic' }, 401, $BAD ],
    [ 'Basic not base64', $url,
      { Authorization => 'Basic !!' . substr($b64, 2) }, 401, $BAD ],
    [ 'Basic without a colon', $url, { Authorization => 'Basic '
      . MIME::Base64::encode_base64("$id$sec", '') }, 401, $BAD ],
    [ 'Basic with an empty secret', $url,
      { Authorization => basic($id, '') }, 401, $BAD ],
    [ 'Basic with an empty key id', $url,
      { Authorization => basic('', $sec) }, 401, $BAD ],
    [ 'Basic, base64 without its padding', $url,
      { Authorization => 'Basic ' . substr($b64, 0, -2) }, 401, $BAD ],
    [ 'Basic, base64 cut by one character', $url,
      { Authorization => 'Basic ' . substr($b64, 0, -1) }, 401, $BAD ],
    [ 'Basic, base64 cut by three characters', $url,
      { Authorization => 'Basic ' . substr($b64, 0, -3) }, 401, $BAD ],
    [ 'empty access_token', "$url?access_token=", {}, 401, $BAD ],
    [ 'access_token with a bad character', "$url?access_token=$pub->{key}.x",
      {}, 401, $BAD ],
    [ 'unknown Token', $url, { Authorization => "Token $unknown_tok" },
      401, $NOKEY ],
    [ 'unknown access_token', "$url?access_token=$unknown_tok", {},
      401, $NOKEY ],
    [ 'unknown Basic key id', $url,
      { Authorization => basic('NoSuchKeyId000000000', $unknown_sec) },
      401, $NOKEY ],
    [ 'a public key id with Basic', $url,
      { Authorization => basic($pub->{key_id}, $pub->{key}) }, 401, $NOKEY ],
    [ 'a private secret as a Token', $url,
      { Authorization => "Token $sec" }, 401, $NOKEY ],
    [ 'disabled private key', $url,
      { Authorization => basic($dpriv->{key_id}, $dpriv->{secret}) },
      401, $NOKEY ],
    [ 'disabled public key (Token)', $url,
      { Authorization => "Token $dpub->{key}" }, 401, $NOKEY ],
    [ 'disabled public key (access_token)', "$url?access_token=$dpub->{key}",
      {}, 401, $NOKEY ],
    [ 'unknown key, unknown project', $nowhere,
      { Authorization => "Token $unknown_tok" }, 401, $NOKEY ],
    [ 'no credentials, unknown project', $nowhere, {}, 401, $NEED ],
    [ 'wrong secret', $url, { Authorization => basic($id, $wrong_sec) },
      403, $SECRET ],
    [ 'secret with one more character', $url,
      { Authorization => basic($id, "${sec}x") }, 403, $SECRET ],
    [ 'base64 cut by a whole group (a shorter secret)', $url,
      { Authorization => 'Basic ' . substr($b64, 0, -4) }, 403, $SECRET ],
    [ 'another key\'s secret', $url,
      { Authorization => basic($id, $opriv->{secret}) }, 403, $SECRET ],
    [ 'private key of another project', $url,
      { Authorization => basic($opriv->{key_id}, $opriv->{secret}) },
      403, $OTHER ],
    [ 'public key of another project (Token)', $url,
      { Authorization => "Token $opub->{key}" }, 403, $OTHER ],
    [ 'public key of another project (access_token)',
      "$url?access_token=$opub->{key}", {}, 403, $OTHER ],
    [ 'good private key, unknown project', $nowhere,
      { Authorization => $good_basic }, 404, $NOTFOUND ],
    [ 'good public key, unknown project', "$nowhere?access_token=$pub->{key}",
      {}, 404, $NOTFOUND ],
);

# [name, url, headers]: each records the batch's one event
my @accepted = (
    [ 'Basic', $url, { Authorization => $good_basic } ],
    [ 'basic', $url, { Authorization => "basic $b64" } ],
    [ 'BASIC', $url, { Authorization => "BASIC $b64" } ],
    [ 'bAsIc, spaces around', $url, { Authorization => "bAsIc   $b64  " } ],
    [ 'Token', $url, { Authorization => "Token $pub->{key}" } ],
    [ 'token', $url, { Authorization => "token $pub->{key}" } ],
    [ 'TOKEN', $url, { Authorization => "TOKEN $pub->{key}" } ],
    [ 'access_token', "$url?access_token=$pub->{key}", {} ],
    [ 'access_token after another parameter',
      "$url?sdk=web&access_token=$pub->{key}&v=1", {} ],
    [ 'Token of the other project', batch_url($P2, 'batch', '/keys'),
      { Authorization => "Token $opub->{key}" } ],
);

plan tests => 1 + 5 * @refused + 3 * @accepted + 8;

ok t_cmp(join(',', map { $_->{status} } @setup), join(',', (0) x @setup),
         'track-batch-admin set up projects and keys');

for my $c (@refused) {
    my ($name, $u, $h, $status, $text) = @$c;
    my $before = rows();
    my $r = post_json($u, $batch, %$h);
    ok t_cmp($r->code, $status, "$name: status");
    ok t_cmp($r->content, error_body($text), "$name: text");
    ok t_cmp($r->header('Content-Type'), qr{^application/json}, "$name: JSON");
    my @ch = $r->header('WWW-Authenticate');
    if ($status == 401) {
        ok t_cmp(join(' | ', sort @ch),
                 'Basic realm="Bloomreach Tracking API", charset="UTF-8" | '
                 . 'Token realm="Bloomreach Tracking API"',
                 "$name: WWW-Authenticate");
    }
    else {
        ok t_cmp(scalar @ch, 0, "$name: no WWW-Authenticate on $status");
    }
    ok t_cmp(rows(), $before, "$name: nothing recorded");
}

for my $c (@accepted) {
    my ($name, $u, $h) = @$c;
    my $before = db_counts()->{tb_events};
    my $r = post_json($u, $batch, %$h);
    ok t_cmp($r->code, 200, "$name: status");
    my $a = decode($r->content);
    ok t_cmp($a && $a->{results}[0]{success}, JSON::PP::true(),
             "$name: command recorded");
    ok t_cmp(db_counts()->{tb_events}, $before + 1, "$name: one event row");
}

# The single routes and system/time need keys too; a preflight does not.
my $before = db_counts()->{tb_events};
my $r = post_json(batch_url($P, 'customers/events', '/keys'),
                  $batch->{commands}[0]{data});
ok t_cmp($r->code, 401, 'single event route without a key');
ok t_cmp(db_counts()->{tb_events}, $before,
         'single event route without a key: nothing recorded');
$r = post_json(batch_url($P, 'customers/events', '/keys'),
               $batch->{commands}[0]{data}, Authorization => $good_basic);
ok t_cmp($r->content, qq({"success": true}\n), 'single event route with a key');
ok t_cmp(db_counts()->{tb_events}, $before + 1,
         'single event route with a key: recorded');
$r = Apache::TestRequest::GET(batch_url($P, 'system/time', '/keys'));
ok t_cmp($r->code . ' ' . $r->content, '401 ' . error_body($NEED),
         'system/time without a key');
$r = Apache::TestRequest::GET(batch_url($P, 'system/time', '/keys')
                              . "?access_token=$pub->{key}");
ok t_cmp($r->content, qr/^\{"success": true, "time": \d+\.\d+\}/,
         'system/time with access_token');
$r = Apache::TestRequest::user_agent()->request(HTTP::Request->new(
    OPTIONS => Apache::TestRequest::resolve_url($url)));
ok t_cmp($r->code, 204, 'OPTIONS preflight needs no key');
$r = Apache::TestRequest::user_agent()->request(HTTP::Request->new(
    OPTIONS => Apache::TestRequest::resolve_url($url),
    [ Authorization => "Token $unknown_tok" ]));
ok t_cmp($r->code, 204, 'OPTIONS preflight ignores a bad key');
