# CORS (issue 6): a preflight is answered 204 without credentials, even
# where keys are required; Access-Control-Allow-Origin only for the
# origins TrackBatchCorsOrigin allows (or * when configured so), on
# preflights and on actual answers, errors included;
# Access-Control-Allow-Credentials never.
#   /cors      TrackBatchCorsOrigin https://shop.example http://localhost:8080
#   /cors-any  TrackBatchCorsOrigin *
#   /keys      no TrackBatchCorsOrigin
# All three require keys.
use strict;
use warnings FATAL => 'all';

use Apache::Test;
use Apache::TestUtil;
use Apache::TestRequest ();
use HTTP::Request ();
use lib 't/lib';
use TB qw(db db_counts db_clear admin basic json);

plan tests => 95;

db_clear();
my $port = Apache::Test::config()->{vars}->{port};
my $host = "http://127.0.0.1:$port";
my $SHOP = 'https://shop.example';
my $DEV  = 'http://localhost:8080';

sub yes { my ($cond, $name) = @_; return t_cmp($cond ? 1 : 0, 1, $name) }
sub counts { my $n = db_counts(); join ' ', map { "$_=$n->{$_}" } sort keys %$n }
sub req {
    my ($method, $path, %h) = @_;
    my $content = delete $h{content};
    my $r = HTTP::Request->new($method => "$host$path", [ %h ]);
    if (defined $content) {
        $r->content($content);
        $r->header('Content-Length' => length $content);
    }
    return Apache::TestRequest::user_agent(reset => 1, keep_alive => 0)
        ->request($r);
}
sub has_token {
    my ($header, $token) = @_;
    return defined $header
        && grep { lc $_ eq lc $token } split /\s*,\s*/, $header;
}

my $p = admin('project', 'create', 'cors-shop', '--key', 'private');
ok t_cmp($p->{status}, 0, 'project and private key');
my $pub = admin('key', 'create', 'cors-shop', 'public');
admin('key', 'grant', $pub->{key_id}, 'events', 'beacon');
ok yes($pub->{key}, 'public key for the sendBeacon case');
my $auth = basic($p->{key_id}, $p->{secret});
my $event = json()->encode({ customer_ids => { registered => 'web@example.com' },
                             event_type => 'view', properties => { page => '/' } });
my $n0 = counts();

# ---- preflights --------------------------------------------------------
my %ask = (batch => 'POST', customers => 'POST',
           'customers/events' => 'POST', 'system/time' => 'GET');
for my $route (sort keys %ask) {
    my $r = req('OPTIONS', "/cors/track/v2/projects/cors-shop/$route",
                Origin => $SHOP,
                'Access-Control-Request-Method' => $ask{$route},
                'Access-Control-Request-Headers' => 'authorization,content-type');
    ok t_cmp($r->code, 204, "preflight $route: 204 without credentials");
    ok t_cmp($r->header('Access-Control-Allow-Origin'), $SHOP,
             "preflight $route: the allowed origin echoed");
    ok yes(has_token($r->header('Access-Control-Allow-Methods'), $ask{$route}),
           "preflight $route: $ask{$route} allowed ("
           . ($r->header('Access-Control-Allow-Methods') // 'none') . ')');
    my $h = $r->header('Access-Control-Allow-Headers');
    ok yes(has_token($h, 'Authorization') && has_token($h, 'Content-Type'),
           "preflight $route: Authorization and Content-Type allowed ("
           . ($h // 'none') . ')');
    ok t_cmp($r->header('Access-Control-Allow-Credentials'), undef,
             "preflight $route: no Access-Control-Allow-Credentials");
    ok yes(has_token($r->header('Vary'), 'Origin'),
           "preflight $route: Vary: Origin");
    ok t_cmp($r->content, '', "preflight $route: no body");
}

my $r = req('OPTIONS', '/cors/track/v2/projects/cors-shop/customers/events',
            Origin => $DEV, 'Access-Control-Request-Method' => 'POST');
ok t_cmp($r->code, 204, 'preflight from the second allowed origin: 204');
ok t_cmp($r->header('Access-Control-Allow-Origin'), $DEV,
         '... that origin echoed');

$r = req('OPTIONS', '/cors/track/v2/projects/cors-shop/customers/events',
         Origin => 'https://evil.example',
         'Access-Control-Request-Method' => 'POST',
         'Access-Control-Request-Headers' => 'authorization,content-type');
ok t_cmp($r->code, 204, 'preflight from a disallowed origin: still 204');
ok t_cmp($r->header('Access-Control-Allow-Origin'), undef,
         '... without Access-Control-Allow-Origin');
ok t_cmp($r->header('Access-Control-Allow-Methods'), undef,
         '... without Access-Control-Allow-Methods');
ok t_cmp($r->header('Access-Control-Allow-Credentials'), undef,
         '... without Access-Control-Allow-Credentials');

for my $o ('https://shop.example.evil.com', 'http://shop.example',
           'https://shop.example:8443', 'https://xshop.example', 'null') {
    $r = req('OPTIONS', '/cors/track/v2/projects/cors-shop/batch',
             Origin => $o, 'Access-Control-Request-Method' => 'POST');
    ok t_cmp($r->header('Access-Control-Allow-Origin'), undef,
             "look-alike origin $o: not allowed");
}

$r = req('OPTIONS', '/cors/track/v2/projects/cors-shop/batch');
ok t_cmp($r->code, 204, 'OPTIONS without Origin: 204');
ok yes(has_token($r->header('Allow'), 'POST') && has_token($r->header('Allow'), 'OPTIONS'),
       'OPTIONS without Origin: Allow lists POST and OPTIONS');
ok t_cmp($r->header('Access-Control-Allow-Origin'), undef,
         'OPTIONS without Origin: no Access-Control-Allow-Origin');

$r = req('OPTIONS', '/keys/track/v2/projects/cors-shop/batch', Origin => $SHOP,
         'Access-Control-Request-Method' => 'POST');
ok t_cmp($r->code, 204, 'preflight where no origin is configured: 204');
ok t_cmp($r->header('Access-Control-Allow-Origin'), undef,
         '... and no Access-Control-Allow-Origin');

$r = req('OPTIONS', '/cors-any/track/v2/projects/cors-shop/customers',
         Origin => 'https://anyone.example',
         'Access-Control-Request-Method' => 'POST',
         'Access-Control-Request-Headers' => 'authorization,content-type');
ok t_cmp($r->code, 204, 'preflight, * configured: 204');
ok t_cmp($r->header('Access-Control-Allow-Origin'), '*', '... ACAO *');
ok t_cmp($r->header('Access-Control-Allow-Credentials'), undef,
         '... never * with credentials');
ok yes(has_token($r->header('Access-Control-Allow-Headers'), 'Authorization'),
       '... Authorization allowed explicitly (a * would not cover it)');

# a preflight with a broken Authorization is still no authentication matter
$r = req('OPTIONS', '/cors/track/v2/projects/cors-shop/batch', Origin => $SHOP,
         Authorization => 'Basic !!!', 'Access-Control-Request-Method' => 'POST');
ok t_cmp($r->code, 204, 'preflight carrying junk credentials: 204');

ok t_cmp(counts(), $n0, 'preflights record nothing');

# ---- actual requests -----------------------------------------------------
my $ev_url = '/cors/track/v2/projects/cors-shop/customers/events';
$r = req('POST', $ev_url, Origin => $SHOP, Authorization => $auth,
         'Content-Type' => 'application/json', content => $event);
ok t_cmp($r->code, 200, 'POST from the allowed origin: 200');
ok t_cmp($r->content, qr/^\{"success": true\}$/, '... recorded');
ok t_cmp($r->header('Access-Control-Allow-Origin'), $SHOP, '... ACAO echoed');
ok t_cmp($r->header('Access-Control-Allow-Credentials'), undef, '... no ACAC');
ok yes(has_token($r->header('Vary'), 'Origin'), '... Vary: Origin');
ok t_cmp(db_counts()->{tb_events}, 1, 'one event in the database');

$r = req('POST', $ev_url, Origin => $DEV, Authorization => $auth,
         'Content-Type' => 'application/json', content => $event);
ok t_cmp($r->code, 200, 'POST from the second allowed origin: 200');
ok t_cmp($r->header('Access-Control-Allow-Origin'), $DEV, '... that origin echoed');

my $n1 = counts();
$r = req('POST', $ev_url, Origin => $SHOP,
         'Content-Type' => 'application/json', content => $event);
ok t_cmp($r->code, 401, 'POST without a key from the allowed origin: 401');
ok t_cmp($r->header('Access-Control-Allow-Origin'), $SHOP,
         '... readable by the page: ACAO on the 401');
ok t_cmp($r->header('Access-Control-Allow-Credentials'), undef, '... no ACAC');
ok t_cmp($r->header('WWW-Authenticate'), qr/^(Basic|Token) /,
         '... WWW-Authenticate');
ok t_cmp(json()->decode($r->content)->{errors}[0],
         'Authentication required: send an access key.', '... its text');

$r = req('POST', $ev_url, Origin => $SHOP, Authorization => basic($p->{key_id}, 'nope'),
         'Content-Type' => 'application/json', content => $event);
ok t_cmp($r->code, 403, 'POST with a wrong secret from the allowed origin: 403');
ok t_cmp($r->header('Access-Control-Allow-Origin'), $SHOP, '... ACAO on the 403');

$r = req('POST', $ev_url, Origin => $SHOP, Authorization => $auth,
         'Content-Type' => 'application/xml', content => '<x/>');
ok t_cmp($r->code, 415, 'wrong Content-Type from the allowed origin: 415');
ok t_cmp($r->header('Access-Control-Allow-Origin'), $SHOP, '... ACAO on the 415');
ok t_cmp(counts(), $n1, 'nothing recorded by the refused requests');

# (whether the server records it is not CORS's business: browsers enforce
# CORS; this one uses its own customer so the tallies below skip it)
$r = req('POST', $ev_url, Origin => 'https://evil.example', Authorization => $auth,
         'Content-Type' => 'application/json',
         content => json()->encode({ customer_ids => { registered => 'evil@example.com' },
                                     event_type => 'view' }));
ok t_cmp($r->header('Access-Control-Allow-Origin'), undef,
         'POST from a disallowed origin: no ACAO');
ok t_cmp($r->header('Access-Control-Allow-Credentials'), undef, '... no ACAC');
ok yes(has_token($r->header('Vary'), 'Origin'),
       '... Vary: Origin (the answer depends on it)');

$r = req('POST', $ev_url, Authorization => $auth,
         'Content-Type' => 'application/json', content => $event);
ok t_cmp($r->code, 200, 'POST without Origin (a server client): 200');
ok t_cmp($r->header('Access-Control-Allow-Origin'), undef, '... no ACAO');

$r = req('GET', '/cors/track/v2/projects/cors-shop/system/time',
         Origin => $SHOP, Authorization => $auth);
ok t_cmp($r->code, 200, 'GET system/time from the allowed origin: 200');
ok t_cmp($r->header('Access-Control-Allow-Origin'), $SHOP, '... ACAO');
ok t_cmp($r->content, qr/^\{"success": true, "time": \d+\.\d+\}$/, '... the time');

# navigator.sendBeacon: text/plain, no custom headers, the public key in the
# query (a "simple" request: no preflight)
my $before_beacon = db_counts()->{tb_events};
$r = req('POST', "/cors/track/v2/projects/cors-shop/customers/events?access_token=$pub->{key}",
         Origin => $SHOP, 'Content-Type' => 'text/plain;charset=UTF-8',
         content => json()->encode({ customer_ids => { cookie => 'beacon-1' },
                                     event_type => 'beacon' }));
ok t_cmp($r->code, 200, 'sendBeacon-style text/plain POST: 200');
ok t_cmp($r->content, qr/^\{"success": true\}$/, '... success');
ok t_cmp($r->header('Access-Control-Allow-Origin'), $SHOP, '... ACAO');
ok t_cmp(db_counts()->{tb_events}, $before_beacon + 1, '... recorded');

# the batch route, from the browser
$r = req('POST', '/cors/track/v2/projects/cors-shop/batch', Origin => $SHOP,
         Authorization => $auth, 'Content-Type' => 'application/json',
         content => json()->encode({ commands => [
             { name => 'customers', data => { customer_ids => { registered => 'web@example.com' },
                                              properties => { plan => 'gold' } } } ] }));
ok t_cmp($r->code, 200, 'batch from the allowed origin: 200');
ok t_cmp($r->header('Access-Control-Allow-Origin'), $SHOP, '... ACAO');
ok t_cmp($r->content, qr/"results": \[\{"success": true\}\]/, '... recorded');

# ---- * configured ----------------------------------------------------------
$r = req('POST', '/cors-any/track/v2/projects/cors-shop/customers/events',
         Origin => 'https://anyone.example', Authorization => $auth,
         'Content-Type' => 'application/json', content => $event);
ok t_cmp($r->code, 200, '* configured: POST with a key: 200');
ok t_cmp($r->header('Access-Control-Allow-Origin'), '*', '... ACAO *');
ok t_cmp($r->header('Access-Control-Allow-Credentials'), undef,
         '... and never Access-Control-Allow-Credentials with it');
ok t_cmp($r->content, qr/^\{"success": true\}$/, '... recorded');

$r = req('POST', '/cors-any/track/v2/projects/cors-shop/customers/events',
         Origin => 'https://anyone.example',
         'Content-Type' => 'application/json', content => $event);
ok t_cmp($r->code, 401, '* configured: POST without a key: 401');
ok t_cmp($r->header('Access-Control-Allow-Origin'), '*', '... ACAO * on the 401');
ok t_cmp($r->header('Access-Control-Allow-Credentials'), undef, '... no ACAC');

# ---- the database ----------------------------------------------------------
my $dbh = db();
my $rows = $dbh->selectall_arrayref(
    "SELECT e.event_type, i.id_value FROM tb_events e
       JOIN tb_customer_ids i ON i.customer_id = e.customer_id
      WHERE e.project = 'cors-shop' AND i.id_value <> 'evil\@example.com'
      ORDER BY e.id");
ok t_cmp(join(',', map { "$_->[0]:$_->[1]" } @$rows),
         join(',', ('view:web@example.com') x 3, 'beacon:beacon-1',
                   'view:web@example.com'),
         'recorded: the accepted POSTs, in order (two allowed origins, '
         . 'no Origin, the beacon, *)');
my ($upd) = $dbh->selectrow_array(
    "SELECT count(*) FROM tb_customer_updates WHERE project = 'cors-shop'");
ok t_cmp($upd, 1, 'the browser batch recorded its customers command');
my ($others) = $dbh->selectrow_array(
    "SELECT count(*) FROM tb_events e
       JOIN tb_customer_ids i ON i.customer_id = e.customer_id
      WHERE i.id_value <> 'evil\@example.com'");
ok t_cmp($others, 5, 'five events in all: none from the refused requests');
