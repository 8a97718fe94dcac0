# A virtual host with a database of its own (DBDriver/DBDParams) and no
# TrackBatch* directive shares the main server's settings, not its
# database: every batch lands in the database of the host it was sent to,
# one at a time and with both hosts written at once (a child's writers
# are grouped per host), whichever engine the main server uses.
use strict;
use warnings FATAL => 'all';

use Apache::Test;
use Apache::TestUtil;
use POSIX ();
use Time::HiRes ();
use lib 't/lib';
use TB qw(db hostport_of post_at results_text db_file db_create);

my $CLIENTS = 4;        # two per host
my $BATCHES = 25;       # per client
my $EVENTS  = 10;       # per batch

plan tests => 8;

my $main = hostport_of();
my $other = hostport_of('tb_otherdb');
my $dir = Apache::Test::vars('t_dir') . '/db/other';
mkdir $dir unless -d $dir;
my $file = "$dir/track.sqlite";
db_create($file)->disconnect unless -e $file;

sub batch {
    my ($tag, $n) = @_;
    return '{"commands": ['
         . join(', ', map { qq({"name": "customers/events", "data": {"customer_ids": )
                          . qq({"registered": "$tag-$_"}, "event_type": "vhost", )
                          . qq("properties": {"i": $_}}}) } 1 .. $n)
         . ']}';
}
my $ok1 = '[' . join(', ', ('{"success": true}') x 1) . ']';
my $okN = '[' . join(', ', ('{"success": true}') x $EVENTS) . ']';

sub events_in {
    my ($dbh, $project) = @_;
    my ($n) = $dbh->selectrow_array(
        'SELECT count(*) FROM tb_events WHERE project = ?', undef, $project);
    return $n;
}

# The other host first: a child that has written there then serves the
# main server's next request.
my $r = post_at($other, '/track/v2/projects/vh-other-1/batch', batch('o', 1));
ok t_cmp("$r->{status} " . (results_text($r->{body}) // $r->{body}), "200 $ok1",
         'the other host records a batch');
for my $i (1 .. 3) {
    $r = post_at($main, '/track/v2/projects/vh-main-1/batch', batch("m$i", 1));
    last unless $r->{status} eq '200';
}
ok t_cmp("$r->{status} " . (results_text($r->{body}) // $r->{body}), "200 $ok1",
         'then the main server records its batches');

my $maindb = db();
my $otherdb = db_file($file);
ok t_cmp(join(',', events_in($maindb, 'vh-main-1'), events_in($maindb, 'vh-other-1')),
         '3,0', "the main server's database has its batches only");
ok t_cmp(join(',', events_in($otherdb, 'vh-other-1'), events_in($otherdb, 'vh-main-1')),
         '1,0', "the other host's database has its batch only");

# Both hosts at once, from client processes started at one moment.
my $start = Time::HiRes::time() + 1;
my @pids;
for my $c (0 .. $CLIENTS - 1) {
    my $pid = fork;
    die "fork: $!" unless defined $pid;
    if (!$pid) {
        my ($hp, $project) = $c % 2 ? ($other, 'vh-other-2') : ($main, 'vh-main-2');
        my $wait = $start - Time::HiRes::time();
        Time::HiRes::sleep($wait) if $wait > 0;
        my $bad = 0;
        for my $b (1 .. $BATCHES) {
            my $a = post_at($hp, "/track/v2/projects/$project/batch",
                            batch("c$c-b$b", $EVENTS));
            $bad++ unless $a->{status} eq '200'
                          && (results_text($a->{body}) // '') eq $okN;
        }
        POSIX::_exit($bad ? 1 : 0);   # no END blocks of the test harness
    }
    push @pids, $pid;
}
my $failed = 0;
for (@pids) { waitpid $_, 0; $failed++ if $? }
ok t_cmp($failed, 0, 'every batch to either host answered all success');

my $each = 2 * $BATCHES * $EVENTS;
ok t_cmp(events_in($maindb, 'vh-main-2'), $each,
         "the main server's database has all of its batches");
ok t_cmp(events_in($otherdb, 'vh-other-2'), $each,
         "the other host's database has all of its batches");
ok t_cmp(events_in($maindb, 'vh-other-2') + events_in($otherdb, 'vh-main-2'), 0,
         "and neither has the other's");
