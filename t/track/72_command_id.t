# Idempotent retries by command_id (issue: "Idempotent retries"): a
# command retried with the same command_id under the same key (same
# project) is answered success: true, with its command_id, and recorded
# once - even when the retry is not an identical event (no timestamp, so
# another receipt time).  Under another key of the project, or in another
# project, the same command_id is a new command.  command_ids are
# remembered for TrackBatchDedupWindow seconds (/shortmemory: 2) and no
# shorter on locations with the default window.  A command refused by
# validation leaves no command_id behind.
use strict;
use warnings FATAL => 'all';

use Apache::Test;
use Apache::TestUtil;
use lib 't/lib';
use TB qw(db db_clear batch_url admin basic ev cu send_batch customer_of
          profile props_line);

plan tests => 25;

sub is_ { my ($got, $want, $name) = @_; ok t_cmp($got, $want, $name) }

db_clear();
my $dbh = db();
my $res;

# Events of a type in a project; command_ids the project has logged.
sub n_events {
    my ($project, $type) = @_;
    my ($n) = $dbh->selectrow_array(
        'SELECT count(*) FROM tb_events WHERE project = ? AND event_type = ?',
        undef, $project, $type);
    return $n;
}
sub n_updates {
    my ($project) = @_;
    my ($n) = $dbh->selectrow_array(
        'SELECT count(*) FROM tb_customer_updates WHERE project = ?',
        undef, $project);
    return $n;
}
sub logged {
    my ($project, $cid) = @_;
    my ($n) = $dbh->selectrow_array(
        'SELECT count(*) FROM tb_command_log WHERE project = ? AND command_id = ?',
        undef, $project, $cid);
    return $n;
}

# ---------------------------------------------------------------------
# Open location (/track): retries in later batches, within one batch.
{
    my $P = 'cid-open';
    my $U = batch_url($P);
    my @batch = (
        ev({ registered => 'co' }, 'buy', properties => { sku => 'A1' },
           command_id => 'co-ev'),
        cu({ registered => 'co' }, { level => 1 }, command_id => 'co-cu'),
        ev({ registered => 'co' }, 'buy', properties => { sku => 'B2' },
           command_id => 42),
        ev({ registered => 'co' }, 'ping') );
    (undef, $res) = send_batch($U, [ @batch ]);
    is_($res, 'ok #co-ev | ok #co-cu | ok #42 | ok', 'first send: recorded');
    is_(join(',', n_events($P, 'buy'), n_updates($P), n_events($P, 'ping')),
        '2,1,1', 'first send: two events, one update, one ping');

    # the same commands again (receipt time differs: not identical events)
    (undef, $res) = send_batch($U, [ @batch ]);
    is_($res, 'ok #co-ev | ok #co-cu | ok #42 | ok',
        'retry: every command answered success with its command_id');
    is_(join(',', n_events($P, 'buy'), n_updates($P), n_events($P, 'ping')),
        '2,1,2', 'retry: commands with a command_id not recorded again, '
        . 'the one without is');

    # a retry of a customers command whose update time would now win:
    # still not applied
    (undef, $res) = send_batch($U, [
        cu({ registered => 'co' }, { level => 1 }, command_id => 'co-cu',
           update_timestamp => time() + 60) ]);
    my $p = profile(customer_of($P, registered => 'co'));
    is_("$res " . join(',', $p->{updates}, $p->{props}{level}[1] < time() + 30
                            ? 'receipt' : 'retried'),
        'ok #co-cu 1,receipt', 'retry of an update: not applied again');

    # the same command_id twice in one batch, beside a new one
    (undef, $res) = send_batch($U, [
        ev({ registered => 'co' }, 'twice', command_id => 'co-twice'),
        ev({ registered => 'co' }, 'twice', command_id => 'co-twice'),
        ev({ registered => 'co' }, 'once', command_id => 'co-once') ]);
    is_($res, 'ok #co-twice | ok #co-twice | ok #co-once',
        'one batch: a repeated command_id answered success');
    is_(join(',', n_events($P, 'twice'), n_events($P, 'once')), '1,1',
        'one batch: recorded once');
}

# ---------------------------------------------------------------------
# Keys: the same command_id under another key of the project is another
# command; under the same key, a retry.
{
    my $P  = 'cid-keys';
    my $k1 = admin('project', 'create', $P, '--key', 'private');
    my $k2 = admin('key', 'create', $P, 'private');
    my @setup = ($k1, $k2,
                 map { admin('key', 'grant', $k2->{key_id}, $_) }
                     qw(events customers));
    is_(join(',', map { $_->{status} } @setup), '0,0,0,0',
        'keys: a project with two private keys');
    my $U  = batch_url($P, 'batch', '/keys');
    my @a1 = (Authorization => basic($k1->{key_id}, $k1->{secret}));
    my @a2 = (Authorization => basic($k2->{key_id}, $k2->{secret}));
    my @cmds = (ev({ registered => 'ck' }, 'keyed', command_id => 'k-1'),
                cu({ registered => 'ck' }, { k => 1 }, command_id => 'k-2'));
    my @got;
    push @got, (send_batch($U, [ @cmds ], @a1))[1];
    push @got, (send_batch($U, [ @cmds ], @a1))[1];
    is_(join(' / ', @got), 'ok #k-1 | ok #k-2 / ok #k-1 | ok #k-2',
        'keys: key 1 twice, answered success both times');
    is_(join(',', n_events($P, 'keyed'), n_updates($P)), '1,1',
        'keys: recorded once under key 1');
    (undef, $res) = send_batch($U, [ @cmds ], @a2);
    is_($res, 'ok #k-1 | ok #k-2', 'keys: key 2, same command_ids');
    is_(join(',', n_events($P, 'keyed'), n_updates($P)), '2,2',
        'keys: recorded again under key 2');
    (undef, $res) = send_batch($U, [ @cmds ], @a2);
    is_(join(',', $res, n_events($P, 'keyed'), n_updates($P)),
        'ok #k-1 | ok #k-2,2,2', 'keys: key 2 retried, not recorded again');
    my $keys = $dbh->selectcol_arrayref(
        'SELECT key_id FROM tb_command_log WHERE project = ? AND command_id = ?
          ORDER BY key_id', undef, $P, 'k-1');
    is_(join(',', @$keys), join(',', sort $k1->{key_id}, $k2->{key_id}),
        'keys: the command_id logged once per key');
}

# ---------------------------------------------------------------------
# Another project: the same command_id is a new command there.
{
    (undef, $res) = send_batch(batch_url('cid-other'), [
        ev({ registered => 'co' }, 'buy', properties => { sku => 'A1' },
           command_id => 'co-ev') ]);
    is_(join(',', $res, n_events('cid-other', 'buy'), n_events('cid-open', 'buy')),
        'ok #co-ev,1,2', 'another project: recorded there, once');
}

# ---------------------------------------------------------------------
# A command refused by validation is not remembered: sent again valid,
# with the same command_id, it is recorded.
{
    my $P = 'cid-invalid';
    (undef, $res) = send_batch(batch_url($P), [
        { name => 'customers/events', command_id => 'inv-1',
          data => { customer_ids => { registered => 'ci' } } } ]);
    is_($res, "Field 'event_type' is required. #inv-1",
        'invalid command refused');
    is_(logged($P, 'inv-1'), 0, 'invalid command: command_id not logged');
    (undef, $res) = send_batch(batch_url($P), [
        ev({ registered => 'ci' }, 'fixed', command_id => 'inv-1') ]);
    is_(join(',', $res, n_events($P, 'fixed')), 'ok #inv-1,1',
        'invalid command fixed and resent: recorded');
}

# ---------------------------------------------------------------------
# TrackBatchDedupWindow: /shortmemory forgets command_ids after 2 s;
# /track (the default, a day) must still remember them then, even after
# /shortmemory has written.
{
    my $W = 'cid-window';
    my $X = 'cid-cross';
    my $short = batch_url($W, 'batch', '/shortmemory');
    my @w = (ev({ registered => 'cw' }, 'win', command_id => 'w-1'));
    my @x = (ev({ registered => 'cx' }, 'cross', command_id => 'x-1'));
    my @got;
    push @got, (send_batch($short, [ @w ]))[1];
    push @got, (send_batch($short, [ @w ]))[1];
    push @got, (send_batch(batch_url($X), [ @x ]))[1];
    is_(join(',', @got, n_events($W, 'win'), n_events($X, 'cross')),
        'ok #w-1,ok #w-1,ok #x-1,1,1',
        'window: a retry within 2 s is not recorded again');
    sleep 3;
    (undef, $res) = send_batch($short, [ @w ]);
    is_(join(',', $res, n_events($W, 'win')), 'ok #w-1,2',
        'window: after 2 s the command_id is forgotten, recorded again');
    is_(logged($W, 'w-1'), 1, 'window: and remembered anew');
    (undef, $res) = send_batch(batch_url($X), [ @x ]);
    is_(join(',', $res, n_events($X, 'cross')), 'ok #x-1,1',
        "window: /track's day-long memory is not cut short by /shortmemory");
    my $before = n_events($X, 'cross');
    (undef, $res) = send_batch(batch_url($X), [ @x ]);
    is_(join(',', $res, n_events($X, 'cross') - $before), 'ok #x-1,0',
        'window: /track remembers it afterwards (no further record)');
}

# ---------------------------------------------------------------------
# The answer of a retry is the answer of the first send, field by field.
{
    my $U = batch_url('cid-answer');
    my $cmds = [ ev({ registered => 'ca' }, 'a', command_id => 'ans') ];
    my ($r1) = send_batch($U, $cmds);
    my ($r2) = send_batch($U, $cmds);
    my $strip = sub {
        my $t = shift;
        $t =~ s/"(start_time|end_time)": [0-9.]+/"$1": T/g;
        return $t;
    };
    is_($strip->($r2->content), $strip->($r1->content),
        'retry answered exactly as the first send');
    is_(join(',', $r1->code, $r2->code), '200,200', 'both 200');
}
