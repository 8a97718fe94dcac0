# The SQLite WAL stays bounded under concurrent writers.  SQLite starts
# the WAL over only once a checkpoint has copied all of it.  The module
# leaves the checkpoint to SQLite, inside the COMMIT that fills 1000
# pages, under the writers' mutex; a checkpoint run by the module after
# letting the mutex go (an earlier version) raced the other writers,
# never got there, and the -wal file grew without bound (700 MB after
# ~12,000 batches at 16 connections).
#
# Here about 8 clients (3 under prefork, which has 3 children), on
# connections kept open as SDKs do, send batches of 50 events (5
# customers each, nested properties, command_ids never sent before) at
# once, for at least 64 MB of WAL in all: the WAL is due for a checkpoint
# many times over.  Meanwhile the test samples the -wal file's size and
# the wal-index (-shm: how many frames the WAL holds, and its salt, which
# changes each time the WAL starts over).  Then: every answer 200 with
# every command success: true; every event stored, exactly as many as
# sent; the load wrote 64+ MB of WAL; the WAL started over again and
# again; and the -wal file never grew past 16 MB.
use strict;
use warnings FATAL => 'all';

use Apache::Test;
use Apache::TestUtil;
use POSIX ();
use Time::HiRes ();
use lib 't/lib';
use TB qw(db db_connect batch_url json hostport_of ka_post post_json results_text);

# the -wal file of the SQLite database; the PostgreSQL run has none
plan tests => 7, skip_reason('the SQLite WAL (this run records into PostgreSQL)')
    if TB::engine() eq 'pgsql';
plan tests => 7 unless TB::engine() eq 'pgsql';

my $cfg     = Apache::Test::config();
my $vars    = $cfg->{vars};
my $mpm     = $cfg->{server}->{mpm} || '';
my $project = 'wal-bounded';
my $path    = batch_url($project);
my $EVENTS  = 50;                   # per batch
my $CUST    = 5;                    # customers per client (and per batch)
# prefork: 3 children here (Apache::Test's MaxClients), each serving one
# connection at a time; more kept-open connections would only queue
my $CLIENTS = $mpm eq 'prefork' ? 3 : 8;
my $WANT_MB = 64;                   # WAL written in all, at least
my $MAX_MB  = 16;                   # the -wal file, at most
my $RUN_MAX = 40;                   # seconds: clients stop then, done or not
my $db      = "$vars->{t_dir}/db/track.sqlite";
my $wal     = "$db-wal";
my $shm     = "$db-shm";

# One batch first: the schema is set up and the database is in WAL mode
# before the load (and before the WAL is started empty, below).
{
    my $r = post_json($path, { commands => [ {
        name => 'customers/events',
        data => { customer_ids => { registered => 'wal-warm' }, event_type => 'warm' } } ] });
    die 'warm-up batch: ' . $r->code . ' ' . $r->content unless $r->code == 200;
}
my $dbh = db();
my ($mode) = $dbh->selectrow_array('PRAGMA journal_mode');
my ($page) = $dbh->selectrow_array('PRAGMA page_size');
# the WAL, from earlier tests, copied in and cut to nothing: the load
# starts from an empty -wal file
my @ck = $dbh->selectrow_array('PRAGMA wal_checkpoint(TRUNCATE)');
my ($ev0) = $dbh->selectrow_array(
    'SELECT count(*) FROM tb_events WHERE project = ?', undef, $project);
$dbh->disconnect;
my $wal0 = -s $wal // 0;

# ---------------------------------------------------------------------
# Each client's batch, encoded once: timestamps and command_ids are
# placeholders, filled in per batch (an event identical to one stored,
# same customer, type, timestamp and properties, would not be stored
# again; a command_id seen before would be a retry).
my @TYPES = qw(view_item view_category cart_update checkout session_ping);
sub template {
    my ($c) = @_;
    my @cmds;
    for my $i (0 .. $EVENTS - 1) {
        my $k = $i % $CUST;
        my $sku = sprintf 'SKU-%05d', ($c * 7919 + $i * 104729) % 100000;
        push @cmds, {
            name       => 'customers/events',
            command_id => "wal-$c-\@S\@-$i",
            data       => {
                customer_ids => { registered => "wal-$c-$k\@shop.example",
                                  cookie     => "ck-wal-$c-$k" },
                event_type   => $TYPES[$i % @TYPES],
                timestamp    => "\@T$i\@",
                properties   => {
                    page    => { url => "https://shop.example/p/$sku?ref=home&pos=$i",
                                 title => "Product $sku | Shop Example",
                                 referrer => 'https://search.example/?q=' . lc $sku },
                    product => { sku => $sku, price => 10 + ($i * 37 % 9000) / 100,
                                 currency => 'EUR', in_stock => JSON::PP::true(),
                                 tags => [ 'cat-' . ($i % 12), 'brand-' . ($c % 4), 'sale' ],
                                 dims => { w => 10 + $i, h => 20, d => 3.5 } },
                    cart    => { items => 1 + $i % 4, value => 25 + $i },
                    session => "sess-$c-$k",
                    device  => { os => 'Android 14', app => '3.2.1', locale => 'de-DE' },
                },
            },
        };
    }
    return json()->encode({ commands => \@cmds });
}
# batch $seq of client $c: its own timestamps (distinct across the whole
# load) and command_ids
sub fill {
    my ($tpl, $c, $seq) = @_;
    my $base = 1_700_000_000 + $c * 100_000 + $seq;
    (my $body = $tpl) =~ s/\@S\@/$seq/g;
    $body =~ s/"\@T(\d+)\@"/sprintf('%d.%02d', $base, $1)/ge;
    return $body;
}
sub expected_results {
    my ($c, $seq) = @_;
    return '[' . join(', ', map { qq({"success": true, "command_id": "wal-$c-$seq-$_"}) }
                            0 .. $EVENTS - 1) . ']';
}

# The WAL as the wal-index (-shm) says it is: [salt (changes each time
# the WAL starts over), frames in it]; undef when it cannot be read, or
# was read while a writer changed it (the header's two copies differ, as
# SQLite itself checks).  Native byte order.
sub wal_index {
    open my $fh, '<:raw', $shm or return;
    my $n = sysread($fh, my $h, 96);
    return unless ($n // 0) == 96 && substr($h, 0, 48) eq substr($h, 48, 48);
    my ($frames, $s1, $s2) = (unpack('L', substr($h, 16, 4)),
                              unpack('L L', substr($h, 32, 8)));
    return ["$s1/$s2", $frames];
}

# ---------------------------------------------------------------------
# The load: $CLIENTS forked clients, each on a connection kept open
# (a new one when the server closes it), until the parent says stop or
# $RUN_MAX passes.  Each writes a one-line summary to a file of its own.
my $dir   = "$vars->{t_dir}/db";
my $stop  = "$dir/wal-bounded.stop";
unlink $stop;
my $t_start = Time::HiRes::time();
my $hard_end = $t_start + $RUN_MAX;
my $hp = hostport_of();
my @kids;
for my $c (1 .. $CLIENTS) {
    my $file = "$dir/wal-bounded-$c.json";
    unlink $file;
    my $pid = fork // die "fork: $!";
    if (!$pid) {
        my %sum = (client => $c, batches => 0, ok => 0, events => 0, bad => []);
        my $ok = eval {
            my $tpl = template($c);
            my $ka = {};
            my $seq = 0;
            while (!-e $stop && Time::HiRes::time() < $hard_end) {
                $seq++;
                my $r = ka_post($ka, $hp, $path, fill($tpl, $c, $seq));
                $sum{batches}++;
                my $res = results_text($r->{body});
                if ($r->{status} eq '200' && defined $res
                    && $res eq expected_results($c, $seq)
                    && $r->{body} =~ /"success": true\}\n?\z/) {
                    $sum{ok}++;
                    $sum{events} += $EVENTS;
                }
                elsif (@{ $sum{bad} } < 3) {
                    push @{ $sum{bad} }, "batch $seq: $r->{status} "
                        . ($r->{error} // substr($r->{body} // '', 0, 200));
                }
            }
            close $ka->{sock} if $ka->{sock};
            1;
        };
        $sum{error} = "$@" unless $ok;
        if (open my $out, '>', $file) {
            print $out json()->encode(\%sum);
            close $out;
        }
        POSIX::_exit(0);            # no END blocks of the test harness
    }
    push @kids, [$pid, $file];
}

# Meanwhile: the -wal file's size and the wal-index, every 10 ms.  The
# load stops once the frames seen add up to $WANT_MB (or at $RUN_MAX).
my ($wal_max, $samples, $restarts, $written) = ($wal0, 0, 0, 0);
my ($salt, $frames_max) = ('', 0);
my (%per_sec, @timeline);
my $frame = $page + 24;
my $running = @kids;
my $stopped;
while ($running) {
    my $size = -s $wal // 0;
    $wal_max = $size if $size > $wal_max;
    $samples++;
    my $sec = int(Time::HiRes::time() - $t_start);
    $per_sec{$sec} = $size if $size > ($per_sec{$sec} // -1);
    if (my $w = wal_index()) {
        if ($w->[0] ne $salt) {
            $restarts++ if $salt ne '';
            $written += $frames_max * $frame;
            ($salt, $frames_max) = ($w->[0], 0);
        }
        $frames_max = $w->[1] if $w->[1] > $frames_max;
    }
    if (!$stopped && $written + $frames_max * $frame >= $WANT_MB * 1024 * 1024) {
        open my $fh, '>', $stop or die "$stop: $!";
        close $fh;
        $stopped = Time::HiRes::time();
    }
    $running = grep { waitpid($_->[0], POSIX::WNOHANG()) == 0 } @kids
        if $samples % 10 == 0;
    Time::HiRes::sleep(0.01);
}
waitpid($_->[0], 0) for @kids;
my $t_load = Time::HiRes::time() - $t_start;
$written += $frames_max * $frame;
{
    my $size = -s $wal // 0;
    $wal_max = $size if $size > $wal_max;
}
unlink $stop;

my @sum = map {
    my $s;
    if (open my $in, '<', $_->[1]) { local $/; $s = eval { json()->decode(<$in>) } }
    $s || { client => '?', error => "no summary in $_->[1]", batches => 0,
            ok => 0, events => 0, bad => [] };
} @kids;
my ($batches, $ok, $sent) = (0, 0, 0);
for (@sum) { $batches += $_->{batches}; $ok += $_->{ok}; $sent += $_->{events} }
my $mb = sub { sprintf '%.1f MB', $_[0] / 1024 / 1024 };

$dbh = db_connect();
my ($ev1) = $dbh->selectrow_array(
    'SELECT count(*) FROM tb_events WHERE project = ?', undef, $project);
$dbh->disconnect;

printf "# %s, %d clients: %d batches (%d events) in %.1f s; WAL written >= %s, "
     . "started over %d times; -wal file: %s before, at most %s (%d samples), "
     . "%s at the end; journal_mode %s, page size %d, checkpoint before: %s\n",
    $mpm, $CLIENTS, $batches, $batches * $EVENTS, $t_load, $mb->($written),
    $restarts, $mb->($wal0), $mb->($wal_max), $samples, $mb->(-s $wal // 0),
    $mode, $page, join('/', @ck);
print "# -wal file per second: "
    . join(' ', map { "$_:" . $mb->($per_sec{$_}) =~ s/ MB//r } sort { $a <=> $b } keys %per_sec)
    . " (MB)\n";

ok t_cmp(join(' ', map { "client $_->{client}: $_->{error}" } grep { $_->{error} } @sum),
         '', 'every load client ran to the end');
ok t_cmp(join(' | ', map { @{ $_->{bad} } } @sum), '',
         "every answer 200, every command success: true ($ok of $batches batches)");
ok t_cmp($ev1 - $ev0, $sent, "every event sent is stored, once ($sent)");
ok t_cmp($batches > 0 && $ok == $batches ? 'yes' : "no ($ok of $batches)", 'yes',
         'each batch was acknowledged');
ok t_cmp($written >= $WANT_MB * 1024 * 1024 ? 'yes' : 'no: ' . $mb->($written), 'yes',
         "the load wrote at least $WANT_MB MB of WAL");
ok t_cmp($restarts >= 3 ? 'yes' : "no: $restarts", 'yes',
         'the WAL started over again and again');
ok t_cmp($wal_max <= $MAX_MB * 1024 * 1024 ? 'yes' : 'no: ' . $mb->($wal_max), 'yes',
         "the -wal file never grew past $MAX_MB MB");
