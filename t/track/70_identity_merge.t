# Customer identity and Bloomreach's merge rules (issue: "Identity").
# /ident (t/conf/identity.conf.in) has registered and member_id as hard
# ids, cookie and email_id as soft ids, so one command can name ids of
# several types.  Each case uses a project of its own and reads the
# database afterwards (portable SQL only, through TB::db()):
#   - two soft ids on two anonymous profiles: merged into the oldest
#     (lowest internal id, whichever id the command names first), events
#     and updates re-pointed, properties combined by update time, the
#     other profile deleted, a "merge" event {"merged_customer_id": N};
#   - a hard id and a soft id of an anonymous profile: the profile is
#     taken over (no merge); an anonymous profile older than the one the
#     hard id names: the identified one merges into it;
#   - a soft id on a profile holding another value of the command's hard
#     id: the soft id moves to the command's profile (new or existing),
#     the other profile's events stay;
#   - hard ids of different names on two profiles: merged, no clash;
#   - three profiles: merged into the oldest, one merge event each;
#   - two profiles holding different values of one hard id: the command
#     fails with the exact text, nothing of it is recorded (no ids, no
#     event, no update, no command_id), a retry fails the same way, and
#     the other commands of the batch are recorded.
use strict;
use warnings FATAL => 'all';

use Apache::Test;
use Apache::TestUtil;
use Time::HiRes ();
use lib 't/lib';
use TB qw(db db_clear batch_url json ev cu send_batch customer_of
          customers_in profile props_line db_project_rows);

plan tests => 81;

sub is_ { my ($got, $want, $name) = @_; ok t_cmp($got, $want, $name) }
sub yes { my ($cond, $name) = @_; ok t_cmp($cond ? 1 : 0, 1, $name) }

sub url { batch_url($_[0], 'batch', '/ident') }
my $CLASH = "Customer ids belong to customers with different values of "
          . "hard id '%s'; they are not merged.";

db_clear();
my $dbh = db();
my ($r, $res);

# A merge event as profile() lists it.
sub merge_ev { 'merge|' . json()->encode({ merged_customer_id => 0 + $_[0] }) }
sub evl { my ($type, $props) = @_; "$type|" . json()->encode($props || {}) }

# ---------------------------------------------------------------------
# 1. Two soft ids on two anonymous profiles merge into the oldest.
{
    my $P = 'merge-soft';
    (undef, $res) = send_batch(url($P), [
        ev({ cookie => 'ms-cookie' }, 'view', timestamp => 1000,
           properties => { page => 'home' }),
        cu({ cookie => 'ms-cookie' }, { x => 'A-x', y => 'A-y' },
           update_timestamp => 1000) ]);
    is_($res, 'ok | ok', 'soft merge: anonymous profile A (cookie)');
    (undef, $res) = send_batch(url($P), [
        ev({ email_id => 'ms@example.com' }, 'signup', timestamp => 2000,
           properties => { plan => 'basic' }),
        cu({ email_id => 'ms@example.com' }, { x => 'B-x', z => 'B-z' },
           update_timestamp => 2000),
        cu({ email_id => 'ms@example.com' }, { y => 'B-y' },
           update_timestamp => 500) ]);
    is_($res, 'ok | ok | ok', 'soft merge: anonymous profile B (email_id)');
    my $A = customer_of($P, cookie => 'ms-cookie');
    my $B = customer_of($P, email_id => 'ms@example.com');
    yes($A && $B && $A < $B, 'soft merge: two profiles, A the older');

    # B's id first: the oldest profile wins, not the first id named
    my $t0 = Time::HiRes::time();
    (undef, $res) = send_batch(url($P), '{"commands": [{"name": '
        . '"customers/events", "data": {"customer_ids": {"email_id": '
        . '"ms@example.com", "cookie": "ms-cookie"}, "event_type": "login",'
        . ' "timestamp": 3000}}]}');
    my $t1 = Time::HiRes::time();
    is_($res, 'ok', 'soft merge: a command naming both ids succeeds');
    is_(customers_in($P), 1, 'soft merge: one profile left');
    is_(customer_of($P, email_id => 'ms@example.com'), $A,
        'soft merge: email_id now names the oldest profile');
    is_(customer_of($P, cookie => 'ms-cookie'), $A,
        'soft merge: cookie still names the oldest profile');
    my $a = profile($A);
    my $b = profile($B);
    is_($a->{ids}, 'cookie=ms-cookie,email_id=ms@example.com',
        'soft merge: both ids on the destination');
    is_(join(' ; ', @{ $a->{events} }),
        join(' ; ', sort(evl('view', { page => 'home' }),
                         evl('signup', { plan => 'basic' }),
                         evl('login'), merge_ev($B))),
        "soft merge: B's events re-pointed, the command's event and a "
        . 'merge event naming B on A');
    is_($a->{updates}, 3, "soft merge: B's two updates re-pointed to A");
    is_(props_line($a->{props}),
        'x="B-x"@2000.000000;y="A-y"@1000.000000;z="B-z"@2000.000000',
        'soft merge: properties combined, the later update time wins each');
    my ($m) = grep { $_->[0] eq 'merge' } @{ $a->{events_full} };
    yes($m && $m->[1] >= int($t0) - 1 && $m->[1] <= $t1 + 1,
        'soft merge: the merge event is timed at receipt');
    is_(join(',', $b->{exists}, $b->{ids}, scalar @{ $b->{events} },
             $b->{updates}, scalar keys %{ $b->{props} }),
        '0,,0,0,0', 'soft merge: B deleted, nothing points to it');
    my ($orphans) = $dbh->selectrow_array(
        'SELECT count(*) FROM tb_customer_properties WHERE customer_id = ?',
        undef, $B);
    is_($orphans, 0, "soft merge: B's properties removed");

    # the merged profile is found by either id from now on
    (undef, $res) = send_batch(url($P), [
        ev({ cookie => 'ms-cookie' }, 'view', timestamp => 4000),
        ev({ email_id => 'ms@example.com' }, 'view', timestamp => 4001) ]);
    is_($res, 'ok | ok', 'soft merge: later commands by either id');
    is_(customers_in($P) . ' ' . scalar(@{ profile($A)->{events} }), '1 6',
        'soft merge: both recorded on the merged profile, no new merge');
}

# ---------------------------------------------------------------------
# 2. A hard id and the soft id of an anonymous profile: taken over.
{
    my $P = 'merge-takeover';
    (undef, $res) = send_batch(url($P), [
        ev({ cookie => 'to-cookie' }, 'view', timestamp => 1000),
        cu({ cookie => 'to-cookie' }, { color => 'red' },
           update_timestamp => 1000) ]);
    is_($res, 'ok | ok', 'take-over: anonymous profile');
    my $A = customer_of($P, cookie => 'to-cookie');
    (undef, $res) = send_batch(url($P), [
        ev({ registered => 'to-user', cookie => 'to-cookie' }, 'login',
           timestamp => 2000) ]);
    is_($res, 'ok', 'take-over: registered id with the cookie');
    is_(customers_in($P), 1, 'take-over: still one profile');
    is_(customer_of($P, registered => 'to-user'), $A,
        'take-over: the hard id joins the anonymous profile');
    my $a = profile($A);
    is_($a->{ids}, 'cookie=to-cookie,registered=to-user',
        'take-over: both ids on it');
    is_(join(' ; ', @{ $a->{events} }),
        join(' ; ', sort(evl('view'), evl('login'))),
        'take-over: its events kept, no merge event');
    is_(props_line($a->{props}), 'color="red"@1000.000000',
        'take-over: its properties kept');
    (undef, $res) = send_batch(url($P), [
        cu({ registered => 'to-user' }, { color => 'blue' },
           update_timestamp => 2000) ]);
    is_(props_line(profile($A)->{props}) . ' ' . customers_in($P),
        'color="blue"@2000.000000 1',
        'take-over: the registered id alone finds it');
}

# 2b. An anonymous profile older than the identified one: the identified
# profile merges into it (the oldest), with a merge event.
{
    my $P = 'merge-login';
    send_batch(url($P), [ ev({ cookie => 'li-cookie' }, 'view',
                             timestamp => 1000) ]);
    send_batch(url($P), [ ev({ registered => 'li-user' }, 'purchase',
                             timestamp => 1500),
                          cu({ registered => 'li-user' }, { vip => 1 },
                             update_timestamp => 1500) ]);
    my $A = customer_of($P, cookie => 'li-cookie');
    my $R = customer_of($P, registered => 'li-user');
    yes($A && $R && $A < $R, 'login: anonymous profile older than R');
    (undef, $res) = send_batch(url($P), [
        ev({ registered => 'li-user', cookie => 'li-cookie' }, 'login',
           timestamp => 2000) ]);
    is_($res, 'ok', 'login: command with both ids');
    my $a = profile($A);
    is_(customers_in($P) . ' ' . $a->{ids},
        '1 cookie=li-cookie,registered=li-user',
        'login: merged into the anonymous (oldest) profile');
    is_(join(' ; ', @{ $a->{events} }),
        join(' ; ', sort(evl('view'), evl('purchase'), evl('login'),
                         merge_ev($R))),
        'login: events of both, and a merge event naming R');
    is_(props_line($a->{props}) . " updates=$a->{updates}",
        'vip=1@1500.000000 updates=1', "login: R's properties and update moved");
}

# 2c. A soft id on a profile holding a hard id of another name: no clash,
# the command's new hard id joins that profile.
{
    my $P = 'merge-othername';
    send_batch(url($P), [ ev({ member_id => 'on-m', cookie => 'on-cookie' },
                             'view', timestamp => 1000) ]);
    my $M = customer_of($P, member_id => 'on-m');
    (undef, $res) = send_batch(url($P), [
        ev({ registered => 'on-u', cookie => 'on-cookie' }, 'login',
           timestamp => 2000) ]);
    is_($res, 'ok', 'other hard name: command succeeds');
    is_(customers_in($P) . ' ' . profile($M)->{ids},
        '1 cookie=on-cookie,member_id=on-m,registered=on-u',
        'other hard name: registered id joins the member_id profile');
}

# ---------------------------------------------------------------------
# 3. A soft id on a profile with another value of the command's hard id
# moves to the command's profile; that profile keeps its events.
{
    my $P = 'merge-move';
    (undef, $res) = send_batch(url($P), [
        cu({ registered => 'mv-u1', cookie => 'mv-shared' }, { name => 'U1' },
           update_timestamp => 1000),
        ev({ registered => 'mv-u1', cookie => 'mv-shared' }, 'view',
           timestamp => 1000) ]);
    is_($res, 'ok | ok', 'move: profile of mv-u1 with the cookie');
    my $P1 = customer_of($P, registered => 'mv-u1');
    (undef, $res) = send_batch(url($P), [
        ev({ registered => 'mv-u2', cookie => 'mv-shared' }, 'login',
           timestamp => 2000) ]);
    is_($res, 'ok', 'move: command for mv-u2 with the same cookie succeeds');
    my $P2 = customer_of($P, registered => 'mv-u2');
    is_(customers_in($P), 2, 'move: two profiles, not merged');
    yes($P2 && $P2 != $P1, 'move: mv-u2 has a new profile of its own');
    is_(customer_of($P, cookie => 'mv-shared'), $P2,
        "move: the cookie moved to mv-u2's profile");
    my $p1 = profile($P1);
    my $p2 = profile($P2);
    is_($p1->{ids}, 'registered=mv-u1', 'move: mv-u1 keeps its hard id only');
    is_(join(' ; ', @{ $p1->{events} }) . " updates=$p1->{updates} "
        . props_line($p1->{props}),
        evl('view') . ' updates=1 name="U1"@1000.000000',
        "move: mv-u1's event, update and properties stay");
    is_(join(' ; ', @{ $p2->{events} }) . ' ' . $p2->{ids},
        evl('login') . ' cookie=mv-shared,registered=mv-u2',
        "move: the command's event on mv-u2's profile, no merge event");
    my ($merges) = $dbh->selectrow_array(
        "SELECT count(*) FROM tb_events WHERE project = ? AND event_type = 'merge'",
        undef, $P);
    is_($merges, 0, 'move: no merge event in the project');
}

# 3b. The command's profile exists and is the older one: the soft id
# moves to it all the same.
{
    my $P = 'merge-move-old';
    send_batch(url($P), [ ev({ registered => 'mo-u2' }, 'view',
                             timestamp => 1000) ]);
    send_batch(url($P), [ ev({ registered => 'mo-u1', cookie => 'mo-shared' },
                             'view', timestamp => 1100) ]);
    my $Q  = customer_of($P, registered => 'mo-u2');
    my $P1 = customer_of($P, registered => 'mo-u1');
    yes($Q && $P1 && $Q < $P1, "move to older: mo-u2's profile is the older");
    (undef, $res) = send_batch(url($P), [
        ev({ registered => 'mo-u2', cookie => 'mo-shared' }, 'login',
           timestamp => 2000) ]);
    is_($res, 'ok', 'move to older: command succeeds');
    is_(customers_in($P) . ' ' . customer_of($P, cookie => 'mo-shared'),
        "2 $Q", "move to older: the cookie moved to mo-u2's profile");
    is_(join(' ; ', @{ profile($P1)->{events} }) . ' ' . profile($P1)->{ids},
        evl('view') . ' registered=mo-u1', "move to older: mo-u1's event stays");
    is_(join(' ; ', @{ profile($Q)->{events} }),
        join(' ; ', sort(evl('view'), evl('login'))),
        "move to older: mo-u2's profile has its event and the command's");
    # the cookie alone now finds mo-u2
    send_batch(url($P), [ ev({ cookie => 'mo-shared' }, 'view2',
                             timestamp => 3000) ]);
    is_(scalar @{ profile($Q)->{events} }, 3,
        'move to older: the cookie alone finds mo-u2 afterwards');
}

# ---------------------------------------------------------------------
# 4. Hard ids of different names on two profiles: they do not clash, so
# the profiles merge into the oldest.
{
    my $P = 'merge-hard';
    send_batch(url($P), [
        cu({ registered => 'mh-u' }, { tier => 'gold', since => 2019 },
           update_timestamp => 1000),
        ev({ registered => 'mh-u' }, 'purchase', timestamp => 1000) ]);
    send_batch(url($P), [
        cu({ member_id => 'mh-m' }, { tier => 'silver' },
           update_timestamp => 2000),
        ev({ member_id => 'mh-m' }, 'visit', timestamp => 2000) ]);
    my $U = customer_of($P, registered => 'mh-u');
    my $M = customer_of($P, member_id => 'mh-m');
    yes($U && $M && $U < $M, 'hard names: two profiles, registered older');
    (undef, $res) = send_batch(url($P), '{"commands": [{"name": '
        . '"customers/events", "data": {"customer_ids": {"member_id": '
        . '"mh-m", "registered": "mh-u"}, "event_type": "link", '
        . '"timestamp": 3000}, "command_id": "link-1"}]}');
    is_($res, 'ok #link-1', 'hard names: command naming both succeeds');
    my $u = profile($U);
    is_(customers_in($P) . ' ' . $u->{ids},
        '1 member_id=mh-m,registered=mh-u',
        'hard names: one profile, the oldest, with both hard ids');
    is_(join(' ; ', @{ $u->{events} }),
        join(' ; ', sort(evl('purchase'), evl('visit'), evl('link'),
                         merge_ev($M))),
        'hard names: events re-pointed and a merge event naming the other');
    is_(props_line($u->{props}) . " updates=$u->{updates}",
        'since=2019@1000.000000;tier="silver"@2000.000000 updates=2',
        'hard names: properties combined by update time, updates moved');
    is_(profile($M)->{exists}, 0, 'hard names: the newer profile deleted');
    (undef, $res) = send_batch(url($P), [
        ev({ registered => 'mh-u', member_id => 'mh-m' }, 'again',
           timestamp => 4000) ]);
    is_($res . ' ' . customers_in($P) . ' '
        . scalar(grep { /^merge/ } @{ profile($U)->{events} }), 'ok 1 1',
        'hard names: naming both again is no new merge');
}

# 4b. Three profiles named by one command: all merge into the oldest.
{
    my $P = 'merge-three';
    send_batch(url($P), [ ev({ cookie => 'm3-c' }, 'e1', timestamp => 1) ]);
    send_batch(url($P), [ ev({ email_id => 'm3@e' }, 'e2', timestamp => 2) ]);
    send_batch(url($P), [ ev({ registered => 'm3-u' }, 'e3', timestamp => 3) ]);
    my @c = map { customer_of($P, @$_) }
            [cookie => 'm3-c'], [email_id => 'm3@e'], [registered => 'm3-u'];
    yes($c[0] < $c[1] && $c[1] < $c[2], 'three: profiles in creation order');
    (undef, $res) = send_batch(url($P), [
        ev({ registered => 'm3-u', email_id => 'm3@e', cookie => 'm3-c' },
           'e4', timestamp => 4) ]);
    is_($res, 'ok', 'three: command naming all three succeeds');
    my $p = profile($c[0]);
    is_(customers_in($P) . ' ' . $p->{ids},
        '1 cookie=m3-c,email_id=m3@e,registered=m3-u',
        'three: one profile, the oldest, holds every id');
    my @merged = sort { $a <=> $b } map { $_->[2]{merged_customer_id} }
                 grep { $_->[0] eq 'merge' } @{ $p->{events_full} };
    is_("@merged", "$c[1] $c[2]", 'three: one merge event per profile merged');
    is_(join(',', sort grep { !/^merge/ } map { (split /\|/)[0] }
                  @{ $p->{events} }), 'e1,e2,e3,e4',
        'three: every event on the oldest profile');
}

# ---------------------------------------------------------------------
# 5. Two profiles holding different values of one hard id: the command
# fails with the exact text and leaves nothing; the rest of the batch is
# recorded.
{
    my $P = 'merge-clash';
    (undef, $res) = send_batch(url($P), [
        ev({ registered => 'cl-a' }, 'view', timestamp => 1000),
        ev({ registered => 'cl-b', member_id => 'cl-m' }, 'view',
           timestamp => 1000),
        cu({ registered => 'cl-b', member_id => 'cl-m' }, { who => 'b' },
           update_timestamp => 1000) ]);
    is_($res, 'ok | ok | ok', 'clash: profiles cl-a and cl-b/cl-m');
    my $A = customer_of($P, registered => 'cl-a');
    my $B = customer_of($P, registered => 'cl-b');
    my $before = db_project_rows($P);

    my $text = sprintf $CLASH, 'registered';
    ($r, $res) = send_batch(url($P), [
        ev({ registered => 'cl-other' }, 'first', timestamp => 1500,
           command_id => 'cl-first'),
        ev({ registered => 'cl-a', member_id => 'cl-m',
             cookie => 'cl-new-cookie' }, 'bad', timestamp => 2000,
           properties => { n => 1 }, command_id => 'cl-bad'),
        cu({ member_id => 'cl-m', registered => 'cl-a',
             email_id => 'cl@new' }, { who => 'merged?' },
           update_timestamp => 3000, command_id => 'cl-bad-2'),
        cu({ registered => 'cl-a' }, { p => 1 }, update_timestamp => 1500,
           command_id => 'cl-after') ]);
    is_($r->code, 200, 'clash: the batch is answered 200');
    is_($res, "ok #cl-first | $text #cl-bad | $text #cl-bad-2 | ok #cl-after",
        'clash: the two commands fail with the exact text, the others succeed');
    is_(customers_in($P), 3, 'clash: profiles not merged (cl-a, cl-b, cl-other)');
    is_(customer_of($P, member_id => 'cl-m'), $B, 'clash: cl-m stays on cl-b');
    is_(join(',', map { defined customer_of($P, @$_) ? 'found' : 'none' }
                  [cookie => 'cl-new-cookie'], [email_id => 'cl@new']),
        'none,none', "clash: the failed commands' new soft ids not created");
    is_(join(' ; ', @{ profile($A)->{events} }) . ' '
        . props_line(profile($A)->{props}),
        evl('view') . ' p=1@1500.000000',
        "clash: cl-a has its event and the batch's valid update only");
    is_(join(' ; ', @{ profile($B)->{events} }) . ' '
        . props_line(profile($B)->{props}),
        evl('view') . ' who="b"@1000.000000', 'clash: cl-b unchanged');
    my ($bad) = $dbh->selectrow_array(
        "SELECT count(*) FROM tb_events WHERE project = ?
            AND event_type IN ('bad', 'merge')", undef, $P);
    is_($bad, 0, 'clash: neither the event nor a merge event recorded');
    my $logged = $dbh->selectcol_arrayref(
        'SELECT command_id FROM tb_command_log WHERE project = ?
          ORDER BY command_id', undef, $P);
    is_("@$logged", 'cl-after cl-first',
        'clash: the failed command_ids are not remembered as recorded');
    my $after = db_project_rows($P);
    is_(scalar @{ $after->{events} }, @{ $before->{events} } + 1,
        'clash: one event more (the valid one)');
    is_(scalar @{ $after->{updates} }, @{ $before->{updates} } + 1,
        'clash: one update more (the valid one)');

    # A retry of the failed command fails again: it was not recorded, so
    # it must not be acknowledged as a duplicate.
    ($r, $res) = send_batch(url($P), [
        ev({ registered => 'cl-a', member_id => 'cl-m',
             cookie => 'cl-new-cookie' }, 'bad', timestamp => 2000,
           properties => { n => 1 }, command_id => 'cl-bad') ]);
    is_($res, "$text #cl-bad", 'clash: a retry of the failed command fails again');
    ($bad) = $dbh->selectrow_array(
        "SELECT count(*) FROM tb_events WHERE project = ? AND event_type = 'bad'",
        undef, $P);
    is_($bad, 0, 'clash: the retry records nothing either');

    # the command's only profile already holds another value of a hard id
    # it names (tb_identify: "a hard id the profile holds with another
    # value: the command fails")
    send_batch(url($P), [ ev({ registered => 'cl-c', member_id => 'cl-m3' },
                             'view', timestamp => 1000) ]);
    my $C = customer_of($P, registered => 'cl-c');
    ($r, $res) = send_batch(url($P), [
        ev({ registered => 'cl-c', member_id => 'cl-m4' }, 'bad',
           timestamp => 2000) ]);
    is_($res, sprintf($CLASH, 'member_id'),
        'clash: a second member_id for one profile fails');
    is_(join(',', profile($C)->{ids}, customer_of($P, member_id => 'cl-m4')
                                      // 'none'),
        'member_id=cl-m3,registered=cl-c,none',
        'clash: the second member_id not attached');
}

# ---------------------------------------------------------------------
# 6. The same rules on the default ids (/track: registered hard, cookie
# soft): take-over, merge of an identified profile into an older
# anonymous one, and a cookie moving between two registered users.
{
    my $P = 'merge-default';
    my $T = batch_url($P);
    send_batch($T, [ ev({ cookie => 'd-c1' }, 'view', timestamp => 1) ]);
    send_batch($T, [ ev({ registered => 'd-u1', cookie => 'd-c1' }, 'login',
                        timestamp => 2) ]);
    my $U1 = customer_of($P, registered => 'd-u1');
    is_(customers_in($P) . ' ' . profile($U1)->{ids},
        '1 cookie=d-c1,registered=d-u1', 'default ids: take-over');
    send_batch($T, [ ev({ registered => 'd-u2', cookie => 'd-c1' }, 'login',
                        timestamp => 3) ]);
    my $U2 = customer_of($P, registered => 'd-u2');
    is_(customers_in($P) . ' ' . customer_of($P, cookie => 'd-c1'), "2 $U2",
        'default ids: cookie moves to the other registered user');
    is_(join(',', map { (split /\|/)[0] } @{ profile($U1)->{events} }),
        'login,view', "default ids: d-u1's events stay");
    send_batch($T, [ ev({ cookie => 'd-c3' }, 'view', timestamp => 4) ]);
    send_batch($T, [ ev({ registered => 'd-u3' }, 'view', timestamp => 5) ]);
    my $C3 = customer_of($P, cookie => 'd-c3');
    my $U3 = customer_of($P, registered => 'd-u3');
    send_batch($T, [ ev({ registered => 'd-u3', cookie => 'd-c3' }, 'login',
                        timestamp => 6) ]);
    is_(customers_in($P) . ' ' . customer_of($P, registered => 'd-u3') . ' '
        . join(',', sort map { (split /\|/)[0] } @{ profile($C3)->{events} }),
        "3 $C3 login,merge,view,view",
        'default ids: identified profile merged into the older anonymous one');
}

# ---------------------------------------------------------------------
# 7. Unknown ids: one new profile per command's ids, reused afterwards.
{
    my $P = 'ident-new';
    (undef, $res) = send_batch(url($P), [
        ev({ registered => 'n-u', cookie => 'n-c', email_id => 'n@e',
             member_id => 'n-m' }, 'first', timestamp => 1),
        ev({ registered => 'n-u' }, 'second', timestamp => 2),
        ev({ email_id => 'n@e' }, 'third', timestamp => 3) ]);
    is_($res, 'ok | ok | ok', 'new ids: batch recorded');
    my $N = customer_of($P, registered => 'n-u');
    is_(customers_in($P) . ' ' . profile($N)->{ids} . ' '
        . scalar(@{ profile($N)->{events} }),
        '1 cookie=n-c,email_id=n@e,member_id=n-m,registered=n-u 3',
        'new ids: one profile created with all four ids, found again by each');
    my %hard = map { $_->[0] => $_->[1] } @{ $dbh->selectall_arrayref(
        'SELECT id_name, hard FROM tb_customer_ids WHERE project = ?',
        undef, $P) };
    is_(join(',', map { "$_=" . ($hard{$_} ? 'hard' : 'soft') } sort keys %hard),
        'cookie=soft,email_id=soft,member_id=hard,registered=hard',
        'new ids: hard and soft as configured');
}
