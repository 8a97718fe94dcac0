# Keys change under a running server (SPEC §6, TrackBatchKeyCacheTTL 1):
# a rotated secret works inside its grace period and not after it; a
# disabled key, a revoked permission and a new grant all show within the
# cache TTL.  Every change is made first, then one wait covers them all.
use strict;
use warnings FATAL => 'all';

use Apache::Test;
use Apache::TestUtil;
use Apache::TestRequest ();
use Time::HiRes ();
use LWP::UserAgent ();
use HTTP::Request ();
use lib 't/lib';
use TB qw(post_json decode db_counts db_clear batch_url admin basic);

my $EV = 'Not authorized to add event of specified type';

sub rows { my $n = db_counts(); my $t = 0; $t += $_ for values %$n; return $t }

sub error_body { return qq({"success": false, "errors": ["$_[0]"]}\n) }

sub event { return { name => 'customers/events', data => {
    customer_ids => { registered => 'rot@example.com' }, event_type => $_[0] } } }

my $P = 'auth-rotate';
my $url = batch_url($P, 'batch', '/keys');

# One event of the given type; returns the answer.
sub send_event {
    my ($type, %h) = @_;
    my $u = delete $h{url} || $url;
    return post_json($u, { commands => [ event($type) ] }, %h);
}

sub result_text {
    my $r = shift;
    my $a = decode($r->content);
    return $r->code . ' ' . $r->content unless $a && $a->{results};
    my $x = $a->{results}[0];
    return $r->code . ' ' . ($x->{success} ? 'ok' : join(' + ', @{ $x->{errors} }));
}

plan tests => 43;

db_clear();
my $a     = admin('project', 'create', $P, '--key', 'private');
my $b     = admin('key', 'create', $P, 'private');
my $dis   = admin('key', 'create', $P, 'public');
my $dpriv = admin('key', 'create', $P, 'private');
my $perm  = admin('key', 'create', $P, 'public');
my $late  = admin('key', 'create', $P, 'public');
my $named = admin('key', 'create', $P, 'public');
my $ka    = admin('key', 'create', $P, 'public');
my @setup = ($a, $b, $dis, $dpriv, $perm, $late, $named, $ka,
    (map { admin('key', 'grant', $_->{key_id}, 'events') }
     $b, $dis, $dpriv, $perm, $ka),
    admin('key', 'grant', $named->{key_id}, 'events', 'purchase', 'view'));
ok t_cmp(join(',', map { $_->{status} } @setup), join(',', (0) x @setup),
         'keys created');

my %basic_old = (A => basic($a->{key_id}, $a->{secret}),
                 B => basic($b->{key_id}, $b->{secret}));

# Before any change: every credential works (and is now cached).
ok t_cmp(result_text(send_event('x', Authorization => $basic_old{A})), '200 ok',
         'A works before rotation');
ok t_cmp(result_text(send_event('x', Authorization => $basic_old{B})), '200 ok',
         'B works before rotation');
ok t_cmp(result_text(send_event('x', Authorization => "Token $dis->{key}")),
         '200 ok', 'public key works before it is disabled');
ok t_cmp(result_text(send_event('x', url => "$url?access_token=$dis->{key}")),
         '200 ok', 'the same key as access_token');
ok t_cmp(result_text(send_event('x', Authorization =>
                                basic($dpriv->{key_id}, $dpriv->{secret}))),
         '200 ok', 'private key works before it is disabled');
ok t_cmp(result_text(send_event('x', Authorization => "Token $perm->{key}")),
         '200 ok', 'event permission works before it is revoked');
ok t_cmp(result_text(send_event('x', Authorization => "Token $late->{key}")),
         "200 $EV", 'a key without permission is refused before the grant');
ok t_cmp(result_text(send_event('view', Authorization => "Token $named->{key}")),
         '200 ok', 'named event type works before it is revoked');

# The key cache: on one keep-alive connection (one process), a key disabled
# in the database a moment ago is still taken from the cache, so the
# request did not look the key up again.
my $r;
my $ua = LWP::UserAgent->new(keep_alive => 1, timeout => 10);
my $ka_req = HTTP::Request->new(POST => Apache::TestRequest::resolve_url($url),
    [ 'Content-Type' => 'application/json', Authorization => "Token $ka->{key}" ],
    TB::json()->encode({ commands => [ event('ka') ] }));
my $t0 = Time::HiRes::time();
ok t_cmp(result_text($ua->request($ka_req)), '200 ok', 'keep-alive key works');
my $ka_off = admin('key', 'disable', $ka->{key_id});
$r = $ua->request($ka_req);
my $took = Time::HiRes::time() - $t0;
ok t_cmp($ka_off->{status} == 0
         && ($took >= 0.9 || result_text($r) eq '200 ok') ? 1 : 0, 1,
         "a key disabled ${\ sprintf '%.3f', $took} s after its first use is "
         . 'still served from the cache (no lookup per request)');

# The changes.  B gets a one-second grace period and is used at once.
my $b2 = admin('key', 'rotate', $b->{key_id}, '--grace', '1');
$r = send_event('x', Authorization => $basic_old{B});
ok t_cmp($b2->{status}, 0, 'B rotated with --grace 1');
ok t_cmp(result_text($r), '200 ok', 'B: old secret works inside its grace period');
my $a2 = admin('key', 'rotate', $a->{key_id});
my @changes = ($a2,
    admin('key', 'disable', $dis->{key_id}),
    admin('key', 'disable', $dpriv->{key_id}),
    admin('key', 'revoke', $perm->{key_id}, 'events'),
    admin('key', 'grant', $late->{key_id}, 'events'),
    admin('key', 'revoke', $named->{key_id}, 'events', 'view'));
ok t_cmp(join(',', map { $_->{status} } @changes), join(',', (0) x @changes),
         'rotated, disabled, revoked and granted');
ok t_cmp($b2->{secret} ne $b->{secret} && $a2->{secret} ne $a->{secret}
         && length($b2->{secret}) >= 32 && $b2->{key_id} eq $b->{key_id}, 1,
         'rotation prints a new secret for the same key id');

# One wait: B's grace (1 s) and the key cache TTL (1 s), with a margin.
Time::HiRes::sleep(1.4);

my $before = rows();
$r = send_event('x', Authorization => $basic_old{B});
ok t_cmp($r->code, 403, 'B: old secret after its grace period: 403');
ok t_cmp($r->content, error_body('Invalid secret'),
         'B: old secret after its grace period: text');
ok t_cmp(rows(), $before, 'B: old secret: nothing recorded');
ok t_cmp(result_text(send_event('x', Authorization =>
                                basic($b->{key_id}, $b2->{secret}))),
         '200 ok', 'B: new secret works');

ok t_cmp(result_text(send_event('x', Authorization => $basic_old{A})), '200 ok',
         'A: old secret still works inside the default grace period');
ok t_cmp(result_text(send_event('x', Authorization =>
                                basic($a->{key_id}, $a2->{secret}))),
         '200 ok', 'A: new secret works');

$before = rows();
$r = send_event('x', Authorization => "Token $dis->{key}");
ok t_cmp($r->code, 401, 'disabled public key: 401 within the TTL');
ok t_cmp($r->content, error_body('Access key not found'), 'disabled public key: text');
ok t_cmp(scalar(() = $r->header('WWW-Authenticate')), 2,
         'disabled public key: WWW-Authenticate');
$r = send_event('x', url => "$url?access_token=$dis->{key}");
ok t_cmp($r->code, 401, 'disabled public key as access_token: 401');
ok t_cmp($r->content, error_body('Access key not found'),
         'disabled public key as access_token: text');
$r = send_event('x', Authorization => basic($dpriv->{key_id}, $dpriv->{secret}));
ok t_cmp($r->code, 401, 'disabled private key: 401 within the TTL');
ok t_cmp($r->content, error_body('Access key not found'), 'disabled private key: text');
$r = $ua->request($ka_req);
ok t_cmp(result_text($r), '401 ' . error_body('Access key not found'),
         'the cached key is refused once the TTL has passed');
ok t_cmp(rows(), $before, 'disabled keys: nothing recorded');

$r = send_event('x', Authorization => "Token $perm->{key}");
ok t_cmp(result_text($r), "200 $EV", 'revoked event permission refused within the TTL');
ok t_cmp(rows(), $before, 'revoked permission: nothing recorded');
ok t_cmp(result_text(send_event('view', Authorization => "Token $named->{key}")),
         "200 $EV", 'revoked event type refused within the TTL');
ok t_cmp(result_text(send_event('purchase', Authorization => "Token $named->{key}")),
         '200 ok', 'the event type still granted works');
ok t_cmp(result_text(send_event('x', Authorization => "Token $late->{key}")),
         '200 ok', 'a new grant works within the TTL');

# key list: the state, and no secret or key in it.
my $list = admin('key', 'list', $P);
ok t_cmp($list->{status}, 0, 'key list');
my %line = map { /^(\S+)\s/ ? ($1 => $_) : () } split /\n/, $list->{out};
ok t_cmp($line{ $a->{key_id} }, qr/\(previous secret still accepted\)/,
         'key list: A still accepts its previous secret');
ok t_cmp($line{ $b->{key_id} } !~ /previous secret/ ? 1 : 0, 1,
         'key list: B no longer does');
ok t_cmp($line{ $dis->{key_id} }, qr/\bdisabled\b/, 'key list: disabled key');
ok t_cmp($line{ $perm->{key_id} }, qr/\(none\)/, 'key list: revoked permissions');
ok t_cmp($line{ $named->{key_id} }, qr/events:purchase(?!.*events:view)/,
         'key list: named grant left');
my @creds = grep { defined } map { @$_{qw(key secret)} }
    $a, $a2, $b, $b2, $dis, $dpriv, $perm, $late, $named, $ka;
ok t_cmp(scalar(grep { index($list->{out}, $_) >= 0 } @creds), 0,
         'key list shows no secret or key');
ok t_cmp(scalar(@creds), 10, 'every credential checked');
