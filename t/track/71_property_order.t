# Customer properties converge per property by update time whatever order
# the updates arrive in (issue: "Identity", convergence).  Four customers
# commands for one customer:
#   C1 {a: "one",   b: "apple",  e: "early"}  update_timestamp 1000
#   C2 {a: "two",   c: "cherry"}              update_timestamp now + 600
#   C3 {a: "three", b: "banana"}              update_timestamp 1000
#   C4 {c: "date",  e: "late"}                no update_timestamp: receipt
# must end, in every one of the 24 orders, as
#   a = "two" (C2, latest), b = "banana" (C1 and C3 tie at 1000: the
#   greater value wins), c = "cherry" (C2's time is after C4's receipt),
#   e = "late" (C4's receipt time is after 1000)
# with each property's updated_at the winning time (e: C4's receipt
# time, as its tb_customer_updates row holds it).  Every order is sent
# once as one batch and once as four batches, each to a customer of its
# own.  Then: times differing by a microsecond are told apart.
use strict;
use warnings FATAL => 'all';

use Apache::Test;
use Apache::TestUtil;
use Time::HiRes ();
use lib 't/lib';
use TB qw(db db_clear batch_url cu send_batch customer_of customers_in
          profile props_line);

plan tests => 12;

sub is_ { my ($got, $want, $name) = @_; ok t_cmp($got, $want, $name) }

db_clear();
my $dbh = db();
my $P   = 'prop-order';
my $URL = batch_url($P);
my $T   = int(time()) + 600;

my @C = (
    [ { a => 'one', b => 'apple', e => 'early' }, update_timestamp => 1000 ],
    [ { a => 'two', c => 'cherry' },              update_timestamp => $T ],
    [ { a => 'three', b => 'banana' },            update_timestamp => 1000 ],
    [ { c => 'date', e => 'late' } ],
);
my $WANT = sprintf 'a="two"@%.6f;b="banana"@1000.000000;c="cherry"@%.6f;'
                   . 'e="late"@RECEIPT', $T, $T;

sub permutations {
    my @items = @_;
    return [] unless @items;
    my @out;
    for my $i (0 .. $#items) {
        my @rest = @items;
        my ($x) = splice @rest, $i, 1;
        push @out, [ $x, @$_ ] for permutations(@rest);
    }
    return @out;
}
my @PERMS = permutations(0 .. 3);

sub cmd { my ($who, $i) = @_; cu({ registered => $who }, @{ $C[$i] }) }

# The state of each customer: its properties as a line (e's time shown as
# RECEIPT when it equals C4's receipt time), its update count.
sub check {
    my ($mode, @who) = @_;
    my (%lines, @updates, $bad);
    for my $who (@who) {
        my $cid = customer_of($P, registered => $who);
        my $p = profile($cid);
        my ($receipt) = $dbh->selectrow_array(
            'SELECT received_at FROM tb_customer_updates
              WHERE customer_id = ? AND update_time = received_at',
            undef, $cid);
        my $e = $p->{props}{e};
        my $as = $e && defined $receipt && abs($e->[1] - $receipt) < 1e-6
                 ? 'RECEIPT' : undef;
        push @{ $lines{ props_line($p->{props}, $as ? (e => $as) : ()) } },
             $who;
        push @updates, $p->{updates};
    }
    my @distinct = sort keys %lines;
    is_(join("\n", @distinct), $WANT,
        "$mode: all " . scalar(@who) . ' orders end in the same state');
    if (@distinct > 1) {
        print "# $_: @{ $lines{$_} }\n" for @distinct;
    }
    is_(join(',', grep { $_ != 4 } @updates), '',
        "$mode: every update kept as sent (4 per customer)");
}

# One batch per order.
{
    my (@who, @res);
    for my $n (0 .. $#PERMS) {
        my $who = "wb-$n-" . join '', @{ $PERMS[$n] };
        push @who, $who;
        my (undef, $res) = send_batch($URL,
            [ map { cmd($who, $_) } @{ $PERMS[$n] } ]);
        push @res, $res;
    }
    is_(join(',', grep { $_ ne 'ok | ok | ok | ok' } @res), '',
        'one batch per order: every command recorded');
    is_(customers_in($P), 24, 'one batch per order: one profile per customer');
    check('one batch per order', @who);
}

# Each command in a batch of its own, the batches in each order.
{
    my (@who, @res);
    for my $n (0 .. $#PERMS) {
        my $who = "xb-$n-" . join '', @{ $PERMS[$n] };
        push @who, $who;
        for my $i (@{ $PERMS[$n] }) {
            my (undef, $res) = send_batch($URL, [ cmd($who, $i) ]);
            push @res, $res;
        }
    }
    is_(join(',', grep { $_ ne 'ok' } @res), '',
        'a batch per command: every command recorded');
    is_(customers_in($P), 48, 'a batch per command: one profile per customer');
    check('a batch per command', @who);
}

# The receipt time is the request's: a later batch without
# update_timestamp overrides an explicit time just before it.
{
    my $now = Time::HiRes::time();
    my (undef, $r1) = send_batch($URL, [
        cu({ registered => 'rt' }, { r => 'explicit' },
           update_timestamp => $now - 5) ]);
    my (undef, $r2) = send_batch($URL, [ cu({ registered => 'rt' },
                                            { r => 'receipt' }) ]);
    my (undef, $r3) = send_batch($URL, [
        cu({ registered => 'rt' }, { r => 'too-old' },
           update_timestamp => $now - 10) ]);
    my $p = profile(customer_of($P, registered => 'rt'))->{props};
    is_("$r1 $r2 $r3 $p->{r}[0]", 'ok ok ok receipt',
        'receipt time: beats an earlier explicit time, not overridden by one');
    ok t_cmp(abs($p->{r}[1] - $now) < 5 ? 1 : 0, 1,
             'receipt time: updated_at is the time of the request');
}

# Full precision: a microsecond later wins although its value is smaller,
# in both orders, within one batch and across batches.
{
    my @u = ([ { p => 'zzz' }, update_timestamp => 1000.5 ],
             [ { p => 'aaa' }, update_timestamp => 1000.500001 ]);
    my @lines;
    for my $order ([0, 1], [1, 0]) {
        my $who = "us-one-@$order";
        send_batch($URL, [ map { cu({ registered => $who }, @{ $u[$_] }) }
                           @$order ]);
        push @lines, props_line(profile(customer_of($P, registered => $who))
                                ->{props});
        $who = "us-two-@$order";
        send_batch($URL, [ cu({ registered => $who }, @{ $u[$_] }) ])
            for @$order;
        push @lines, props_line(profile(customer_of($P, registered => $who))
                                ->{props});
    }
    is_(join(' ', @lines), join(' ', ('p="aaa"@1000.500001') x 4),
        'a microsecond later wins, in every order');
}

# Equal times and an ISO-8601 update_timestamp naming the same instant:
# the greater value wins, in both orders.
{
    my @u = ([ { q => 'pear' },  update_timestamp => 86400 ],
             [ { q => 'plum' },  update_timestamp => '1970-01-02T00:00:00Z' ]);
    my @lines;
    for my $order ([0, 1], [1, 0]) {
        my $who = "iso-@$order";
        send_batch($URL, [ cu({ registered => $who }, @{ $u[$_] }) ])
            for @$order;
        push @lines, props_line(profile(customer_of($P, registered => $who))
                                ->{props});
    }
    is_(join(' ', @lines), join(' ', ('q="plum"@86400.000000') x 2),
        'equal instants (number and ISO-8601): the greater value, any order');
}
