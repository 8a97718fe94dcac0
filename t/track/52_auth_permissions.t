# Per-command permissions (SPEC §6): a batch needs only the permissions its
# commands use; a command without permission fails alone with Bloomreach's
# text while the others are recorded.  Event-type and property limits.
use strict;
use warnings FATAL => 'all';

use Apache::Test;
use Apache::TestUtil;
use lib 't/lib';
use TB qw(post_json decode db db_counts db_clear batch_url admin basic);

my $CUST = 'Not authorized to update specified customer properties';
my $EV   = 'Not authorized to add event of specified type';

sub rows { my $n = db_counts(); my $t = 0; $t += $_ for values %$n; return $t }

sub event {
    my ($type, $who, %extra) = @_;
    return { name => 'customers/events', %extra, data => {
        customer_ids => { registered => $who || 'perm@example.com' },
        event_type => $type, properties => { n => 1 } } };
}

sub customer {
    my ($props, $who, %extra) = @_;
    return { name => 'customers', %extra, data => {
        customer_ids => { registered => $who || 'perm@example.com' },
        properties => $props } };
}

# Each result as text: "ok", "ok time", or its errors joined by " + ";
# with " #id" when a command_id came back.
sub results {
    my $r = shift;
    my $a = decode($r->content) or return 'not JSON: ' . $r->content;
    return 'no results: ' . $r->content unless ref $a->{results} eq 'ARRAY';
    return [ map {
        ($_->{success} ? (exists $_->{time} ? 'ok time' : 'ok')
                       : join(' + ', @{ $_->{errors} || [] }))
        . (exists $_->{command_id} ? " #$_->{command_id}" : '')
    } @{ $a->{results} } ];
}

# Events of one type recorded for one customer (by registered id).
sub events_of {
    my ($type, $who) = @_;
    my ($n) = db()->selectrow_array(
        'SELECT count(*) FROM tb_events e JOIN tb_customer_ids i'
        . ' ON i.customer_id = e.customer_id WHERE e.project = ?'
        . ' AND i.id_value = ? AND e.event_type = ?',
        undef, 'auth-perms', $who, $type);
    return $n;
}

plan tests => 44;

db_clear();
my $P = 'auth-perms';
my $all   = admin('project', 'create', $P, '--key', 'private');
my $ev    = admin('key', 'create', $P, 'public');
my $typ   = admin('key', 'create', $P, 'public');
my $props = admin('key', 'create', $P, 'public');
my $none  = admin('key', 'create', $P, 'public');
my $named = admin('key', 'create', $P, 'private');
my @setup = ($all, $ev, $typ, $props, $none, $named,
    admin('key', 'grant', $ev->{key_id}, 'events'),
    admin('key', 'grant', $typ->{key_id}, 'events', 'purchase', 'cart_update'),
    admin('key', 'grant', $props->{key_id}, 'customers', 'first_name', 'email'),
    admin('key', 'grant', $named->{key_id}, 'events', 'purchase'),
    admin('key', 'grant', $named->{key_id}, 'customers', 'first_name'));
ok t_cmp(join(',', map { $_->{status} } @setup), join(',', (0) x @setup),
         'keys with limited permissions created');

my $url = batch_url($P, 'batch', '/keys');
my ($r, $before, $n);

# A public key with only the event permission sends a mixed batch.
$before = db_counts();
$r = post_json($url, { commands => [
    customer({ first_name => 'Ann' }, undef, command_id => 'c1'),
    event('purchase', undef, command_id => 2),
    { name => 'system/time' },
    event('view'),
    customer({}),
    customer(undef, undef, command_id => 'c6') ] },
    Authorization => "Token $ev->{key}");
ok t_cmp($r->code, 200, 'events-only key, mixed batch: 200');
ok t_cmp(decode($r->content)->{success}, JSON::PP::true(),
         'events-only key, mixed batch: the batch succeeds');
ok t_cmp(join(' | ', @{ results($r) }),
         join(' | ', "$CUST #c1", 'ok #2', 'ok time', 'ok', $CUST, "$CUST #c6"),
         'events-only key: customer updates refused one by one, events kept');
$n = db_counts();
ok t_cmp($n->{tb_events}, $before->{tb_events} + 2, 'both events recorded');
ok t_cmp($n->{tb_customer_updates}, 0, 'no customer update recorded');
ok t_cmp($n->{tb_customer_properties}, 0, 'no customer property recorded');

# The same key: a batch of events only needs nothing more.
$r = post_json($url, { commands => [ event('purchase'), event('other') ] },
               Authorization => "token $ev->{key}");
ok t_cmp(join(' | ', @{ results($r) }), 'ok | ok', 'events-only key, events');

# Event types: purchase and cart_update only, names exact.
$before = db_counts();
$r = post_json("$url?access_token=$typ->{key}", { commands => [
    event('purchase', 'bob'), event('view', 'bob', command_id => 'v'),
    event('Purchase', 'bob'), event('purchase ', 'bob'),
    event('cart_update', 'bob'), customer({ first_name => 'Bob' }, 'bob') ] });
ok t_cmp($r->code, 200, 'event-type key: 200');
ok t_cmp(join(' | ', @{ results($r) }),
         join(' | ', 'ok', "$EV #v", $EV, $EV, 'ok', $CUST),
         'event-type key: other types and customer updates refused');
ok t_cmp(db_counts()->{tb_events}, $before->{tb_events} + 2,
         'event-type key: two events recorded');
ok t_cmp(join(',', map { events_of($_, 'bob') }
                   'purchase', 'cart_update', 'view', 'Purchase', 'purchase '),
         '1,1,0,0,0', 'event-type key: only the allowed types recorded');
ok t_cmp(db_counts()->{tb_customer_updates}, 0,
         'event-type key: no customer update');

# Properties: first_name and email only; every property must be allowed.
$before = db_counts();
$r = post_json($url, { commands => [
    customer({ first_name => 'Cy', email => 'cy@example.com' }, 'cy'),
    customer({ first_name => 'Cy', last_name => 'Press' }, 'cy'),
    customer({ last_name => 'Press' }, 'cy', command_id => 'ln'),
    customer({ First_name => 'Cy' }, 'cy'),
    event('purchase', 'cy') ] },
    Authorization => "TOKEN $props->{key}");
ok t_cmp($r->code, 200, 'property key: 200');
ok t_cmp(join(' | ', @{ results($r) }),
         join(' | ', 'ok', $CUST, "$CUST #ln", $CUST, $EV),
         'property key: updates with another property refused whole');
$n = db_counts();
ok t_cmp($n->{tb_customer_updates}, $before->{tb_customer_updates} + 1,
         'property key: one update recorded');
ok t_cmp($n->{tb_events}, $before->{tb_events}, 'property key: no event');
my $names = db()->selectcol_arrayref(
    'SELECT p.name FROM tb_customer_properties p JOIN tb_customer_ids i'
    . ' ON i.customer_id = p.customer_id WHERE i.project = ? AND'
    . ' i.id_value = ? ORDER BY p.name', undef, $P, 'cy');
ok t_cmp(join(',', @$names), 'email,first_name',
         'property key: only the allowed properties stored');
my ($leaked) = db()->selectrow_array(
    "SELECT count(*) FROM tb_customer_updates WHERE properties LIKE '%Press%'");
ok t_cmp($leaked, 0, 'property key: no refused update stored');

# A key without permissions: every write refused, nothing recorded,
# system/time still answered.
$before = rows();
$r = post_json($url, { commands => [ event('purchase'),
    customer({ first_name => 'Dee' }), { name => 'system/time' } ] },
    Authorization => "Token $none->{key}");
ok t_cmp($r->code, 200, 'key without permissions: 200');
ok t_cmp(join(' | ', @{ results($r) }), join(' | ', $EV, $CUST, 'ok time'),
         'key without permissions: writes refused');
ok t_cmp(rows(), $before, 'key without permissions: nothing recorded');
$r = post_json($url, { commands => [ { name => 'system/time' } ] },
               Authorization => "Token $none->{key}");
ok t_cmp(join(' | ', @{ results($r) }), 'ok time',
         'system/time needs no permission');

# A command that fails validation keeps its own errors.
$r = post_json($url, { commands => [
    { name => 'customers/events', data => { event_type => 'view' } },
    { name => 'customers/events', data => {
        customer_ids => { registered => 'x' } } } ] },
    Authorization => "Token $typ->{key}");
my $res = results($r);
ok t_cmp($res->[0], qr/^Field 'customer_ids' is required\.$/,
         'validation error kept over a missing permission');
ok t_cmp($res->[1], qr/^Field 'event_type' is required\.$/,
         'missing event_type reported, not a permission error');

# A private key with named permissions, over Basic.
$before = db_counts();
$r = post_json($url, { commands => [ event('purchase', 'eve'), event('view', 'eve'),
    customer({ first_name => 'Eve' }, 'eve'), customer({ email => 'e@x' }, 'eve') ] },
    Authorization => basic($named->{key_id}, $named->{secret}));
ok t_cmp(join(' | ', @{ results($r) }), join(' | ', 'ok', $EV, 'ok', $CUST),
         'private key with named permissions');
$n = db_counts();
ok t_cmp($n->{tb_events}, $before->{tb_events} + 1, 'private named: one event');
ok t_cmp($n->{tb_customer_updates}, $before->{tb_customer_updates} + 1,
         'private named: one update');

# A key with every permission: everything recorded.
$before = db_counts();
$r = post_json($url, { commands => [ event('view', 'fay'), event('anything', 'fay'),
    customer({ last_name => 'Fay', x => 1 }, 'fay') ] },
    Authorization => basic($all->{key_id}, $all->{secret}));
ok t_cmp(join(' | ', @{ results($r) }), 'ok | ok | ok', 'key with every permission');
$n = db_counts();
ok t_cmp($n->{tb_events}, $before->{tb_events} + 2, 'every permission: events');
ok t_cmp($n->{tb_customer_updates}, $before->{tb_customer_updates} + 1,
         'every permission: update');

# The single routes answer the one result, 200, and record nothing refused.
$before = rows();
$r = post_json(batch_url($P, 'customers', '/keys'),
               customer({ first_name => 'Gus' })->{data},
               Authorization => "Token $ev->{key}");
ok t_cmp($r->code, 200, 'single customers route, events-only key: 200');
ok t_cmp($r->content, qq({"success": false, "errors": ["$CUST"]}\n),
         'single customers route, events-only key: refused');
ok t_cmp(rows(), $before, 'single customers route refused: nothing recorded');
$r = post_json(batch_url($P, 'customers/events', '/keys'),
               event('view')->{data}, Authorization => "Token $typ->{key}");
ok t_cmp($r->code, 200, 'single event route, other type: 200');
ok t_cmp($r->content, qq({"success": false, "errors": ["$EV"]}\n),
         'single event route, other type: refused');
ok t_cmp(rows(), $before, 'single event route refused: nothing recorded');
$r = post_json(batch_url($P, 'customers/events', '/keys'),
               event('purchase')->{data}, Authorization => "Token $typ->{key}");
ok t_cmp($r->content, qq({"success": true}\n), 'single event route, allowed type');
$r = post_json(batch_url($P, 'customers', '/keys'),
               customer({ email => 'g@x' }, 'gus')->{data},
               Authorization => "Token $props->{key}");
ok t_cmp($r->content, qq({"success": true}\n), 'single customers route, allowed');

# Grants are per key: the events-only key's neighbours are unaffected.
$r = post_json($url, { commands => [ customer({ first_name => 'Hal' }, 'hal') ] },
               Authorization => "Token $props->{key}");
ok t_cmp(join(' | ', @{ results($r) }), 'ok', 'property key still allowed');
$r = post_json($url, { commands => [ customer({ first_name => 'Hal' }, 'hal') ] },
               Authorization => "Token $ev->{key}");
ok t_cmp(join(' | ', @{ results($r) }), $CUST, 'events-only key still refused');

# Permissions of one project's key do not reach another project.
my $q = admin('project', 'create', 'auth-perms-q');
ok t_cmp($q->{status}, 0, 'second project');
$before = rows();
$r = post_json(batch_url('auth-perms-q', 'batch', '/keys'),
               { commands => [ event('purchase') ] },
               Authorization => "Token $ev->{key}");
ok t_cmp($r->code, 403, 'a key with permissions, another project: 403');
ok t_cmp(rows(), $before, 'another project: nothing recorded');
