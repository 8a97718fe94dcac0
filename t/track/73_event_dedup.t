# Identical events are recorded once (issue: "Idempotent retries";
# reference §6): same customer, event type, timestamp (full precision)
# and property values - the order of the properties does not matter -
# answered success: true and not recorded again, within one batch or
# across batches, for 90 days.  Anything different is another event:
# a microsecond, another customer, type, value or value type, one more
# property.  Consent events are never deduplicated.  Events without a
# timestamp take their receipt time and are each recorded, whether sent
# in one batch or in two.
use strict;
use warnings FATAL => 'all';

use Apache::Test;
use Apache::TestUtil;
use lib 't/lib';
use TB qw(db db_clear batch_url json ev cu send_batch customer_of);

plan tests => 18;

sub is_ { my ($got, $want, $name) = @_; ok t_cmp($got, $want, $name) }

db_clear();
my $dbh = db();
my $P   = 'dedup';
my $U   = batch_url($P);
my $res;

sub n_events {
    my ($type, $who) = @_;
    my $sql = 'SELECT count(*) FROM tb_events e WHERE e.project = ?
                  AND e.event_type = ?';
    my @bind = ($P, $type);
    if ($who) {
        $sql .= ' AND e.customer_id = ?';
        push @bind, customer_of($P, registered => $who);
    }
    my ($n) = $dbh->selectrow_array($sql, undef, @bind);
    return $n;
}

# A batch body written by hand, so the order of properties is ours.
sub raw_batch {
    return '{"commands": [' . join(', ', map {
        my ($who, $type, $ts, $props, $cid) = @$_;
        '{"name": "customers/events", '
        . (defined $cid ? "\"command_id\": \"$cid\", " : '')
        . "\"data\": {\"customer_ids\": {\"registered\": \"$who\"}, "
        . "\"event_type\": \"$type\", "
        . (defined $ts ? "\"timestamp\": $ts, " : '')
        . "\"properties\": $props}}"
    } @_) . ']}';
}

my $PROPS1 = '{"price": 12.5, "sku": "A-1", "qty": 2, "tags": ["x", "y"], '
           . '"meta": {"k": "v"}, "gift": false, "note": null}';
my $PROPS2 = '{"note": null, "gift": false, "meta": {"k": "v"}, '
           . '"tags": ["x", "y"], "qty": 2, "sku": "A-1", "price": 12.5}';
my $TS = '1700000000.123456';

# ---------------------------------------------------------------------
# Identical events: across batches, in one batch, with command_ids.
(undef, $res) = send_batch($U, raw_batch([ 'dd', 'purchase', $TS, $PROPS1 ]));
is_($res, 'ok', 'first event recorded');
(undef, $res) = send_batch($U, raw_batch([ 'dd', 'purchase', $TS, $PROPS2 ]));
is_($res, 'ok', 'identical event, properties in another order: success');
is_(n_events('purchase', 'dd'), 1, 'identical event in a later batch: recorded once');

(undef, $res) = send_batch($U, raw_batch(
    [ 'dd', 'view', $TS, $PROPS2 ], [ 'dd', 'view', $TS, $PROPS1 ],
    [ 'dd', 'view', $TS, $PROPS1, 'v-cid' ]));
is_($res, 'ok | ok | ok #v-cid', 'three identical events in one batch: success');
is_(n_events('view', 'dd'), 1, 'identical events in one batch: recorded once');

# The same customer named by another of its ids is the same customer.
send_batch($U, [ ev({ registered => 'dd', cookie => 'dd-cookie' }, 'link',
                    timestamp => 1) ]);
(undef, $res) = send_batch($U, '{"commands": [{"name": "customers/events", '
    . '"data": {"customer_ids": {"cookie": "dd-cookie"}, "event_type": '
    . "\"purchase\", \"timestamp\": $TS, \"properties\": $PROPS2}}]}");
is_(join(',', $res, n_events('purchase', 'dd')), 'ok,1',
    'identical event for the same customer by its cookie: recorded once');

# ---------------------------------------------------------------------
# Anything different: recorded.
{
    my @variants = (
        [ 'dd',    'purchase', '1700000000.123457', $PROPS1 ],   # 1 us later
        [ 'dd-2',  'purchase', $TS, $PROPS1 ],                   # customer
        [ 'dd',    'purchase2', $TS, $PROPS1 ],                  # type
        [ 'dd',    'purchase', $TS, $PROPS1 =~ s/"A-1"/"A-2"/r ],  # value
        [ 'dd',    'purchase', $TS, $PROPS1 =~ s/"qty": 2/"qty": "2"/r ], # type of a value
        [ 'dd',    'purchase', $TS, $PROPS1 =~ s/\}\z/, "extra": 1}/r ], # more
        [ 'dd',    'purchase', $TS, '{}' ],                       # fewer
    );
    (undef, $res) = send_batch($U, raw_batch(@variants));
    is_($res, join(' | ', ('ok') x 7), 'seven near-identical events: success');
    my ($n) = $dbh->selectrow_array(
        "SELECT count(*) FROM tb_events WHERE project = ?
            AND event_type IN ('purchase', 'purchase2')", undef, $P);
    is_($n, 8, 'seven near-identical events: each recorded');
    (undef, $res) = send_batch($U, raw_batch(@variants));
    ($n) = $dbh->selectrow_array(
        "SELECT count(*) FROM tb_events WHERE project = ?
            AND event_type IN ('purchase', 'purchase2')", undef, $P);
    is_(join(',', $res, $n), join(' | ', ('ok') x 7) . ',8',
        'the seven sent again: each now a duplicate');
}

# ---------------------------------------------------------------------
# Consent events are never deduplicated.
{
    my $c = '{"category": "newsletter", "action": "accept", "valid_until": '
          . '"unlimited"}';
    (undef, $res) = send_batch($U, raw_batch([ 'dd', 'consent', $TS, $c ],
                                             [ 'dd', 'consent', $TS, $c ]));
    is_($res, 'ok | ok', 'two identical consents in one batch: success');
    (undef, $res) = send_batch($U, raw_batch([ 'dd', 'consent', $TS, $c ]));
    is_($res, 'ok', 'the consent again in a later batch: success');
    is_(n_events('consent', 'dd'), 3, 'identical consents: each recorded');
}

# ---------------------------------------------------------------------
# No timestamp: each event has its receipt time and is recorded.
{
    (undef, $res) = send_batch($U, raw_batch([ 'nt', 'tap', undef, '{"n": 1}' ]));
    my (undef, $res2) = send_batch($U, raw_batch([ 'nt', 'tap', undef,
                                                   '{"n": 1}' ]));
    is_(join(',', $res, $res2, n_events('tap', 'nt')), 'ok,ok,2',
        'no timestamp, two batches: both recorded');
    (undef, $res) = send_batch($U, raw_batch([ 'nt', 'tap2', undef, '{"n": 1}' ],
                                             [ 'nt', 'tap2', undef, '{"n": 1}' ],
                                             [ 'nt', 'tap2', undef, '{"n": 1}' ]));
    is_(join(',', $res, n_events('tap2', 'nt')), 'ok | ok | ok,3',
        'no timestamp, three in one batch: each recorded');
}

# ---------------------------------------------------------------------
# Memory: 90 days of receipt.  The recorded event is made older by hand.
{
    my $body = raw_batch([ 'old', 'memo', '1000.5', '{"a": 1}' ]);
    send_batch($U, $body);
    my $age = sub {
        my $days = shift;
        $dbh->do("UPDATE tb_events SET received_at = received_at - ?
                   WHERE project = ? AND event_type = 'memo'",
                 undef, $days * 86400, $P);
    };
    $age->(89);
    (undef, $res) = send_batch($U, $body);
    is_(join(',', $res, n_events('memo', 'old')), 'ok,1',
        'an identical event received 89 days ago: still a duplicate');
    $age->(2);
    (undef, $res) = send_batch($U, $body);
    is_(join(',', $res, n_events('memo', 'old')), 'ok,2',
        'received 91 days ago: forgotten, recorded again');
    (undef, $res) = send_batch($U, $body);
    is_(join(',', $res, n_events('memo', 'old')), 'ok,2',
        'and the new one is remembered');
}

# ---------------------------------------------------------------------
# Customers commands are not events: the same update twice is kept twice
# (the property keeps its value).
{
    my @c = (cu({ registered => 'up' }, { x => 1 }, update_timestamp => 5));
    send_batch($U, [ @c ]);
    send_batch($U, [ @c ]);
    my ($n) = $dbh->selectrow_array(
        'SELECT count(*) FROM tb_customer_updates WHERE project = ?
            AND customer_id = ?', undef, $P, customer_of($P, registered => 'up'));
    is_($n, 2, 'identical customer updates: both kept as sent');
}
