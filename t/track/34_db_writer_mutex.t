# Writers queued on the cross-process mutex (Mutex track-batch-write) past
# their deadline.  SQLite lets one writer in at a time and the module's
# writers, of every child, queue on that mutex rather than poll SQLite's
# lock.  Here another process holds SQLite's write lock throughout; one
# request on /track (TrackBatchBusyTimeout 5 s by default) takes the mutex
# and waits for SQLite; requests on /small (300 ms, Retry-After 7) sent
# meanwhile wait on the mutex, and give up at their own deadline: 503 with
# Retry-After and nothing of them kept (SPEC §2: "locked past its
# timeout"), logged as "the database is busy: other writers held it until
# the deadline".  The writer holding the mutex gives up at its deadline
# too.  Once the lock is gone a batch is recorded at once.
#
# A connection the server has not used yet sets the schema up first, and
# that waits for SQLite's lock outside the mutex (t/track/30_db_locked.t
# shows it): every child of the server records a batch before the lock
# is taken, and the /small requests come in two waves (a child the MPM
# starts meanwhile has not set the schema up).
use strict;
use warnings FATAL => 'all';

use Apache::Test;
use Apache::TestUtil;
use POSIX ();
use Time::HiRes ();
use lib 't/lib';
use TB qw(db db_counts db_project_rows no_rows batch_url json results_text
          error_body_re hostport_of post_json
          log_from parent_pid);

my $J    = json();
my $TEXT = 'The database could not record the request; retry later.';
my $BUSY = 'the database is busy: other writers held it until the deadline';
my $WAVES    = 2;   # of /small requests, a second apart
my $PER_WAVE = 3;

# SQLite's write lock; the PostgreSQL run has no such lock to hold
plan tests => 14 + 5 * $WAVES * $PER_WAVE,
    skip_reason('SQLite locking (this run records into PostgreSQL)')
    if TB::engine() eq 'pgsql';
plan tests => 14 + 5 * $WAVES * $PER_WAVE unless TB::engine() eq 'pgsql';

# One customers command and one event for "$tag" (soft id: cookie on
# /track, email_id on /small), with command_ids of its own.
sub batch_for   { return TB::tag_batch($_[0], $_[1], 'mutex-test') }
sub results_for { return TB::tag_results($_[0]) }
sub rows_for    { return TB::tag_rows($_[0], $_[1], 'mutex-test') }

# Requests in flight at once, on connections of their own (TB.pm).
my $HP = hostport_of();
sub start   { return TB::start_request($HP, @_) }
sub answers { return TB::read_answers(@_) }

# Why the server failed to record each project's batch (TB00007), from
# the error log since byte $off.
sub failures {
    my ($off) = @_;
    my (%why, $text);
    $text = log_from($off);
    while ($text =~ /TB00007: recording \d+ command\(s\) for project '([^']+)' failed: ([^\n]*)/g) {
        push @{ $why{$1} }, $2;
    }
    return \%why;
}

# The three answers the user sees from a 503, and no more of them.
sub is_503 {
    my ($r, $retry_after, $name) = @_;
    ok t_cmp($r->{status}, 503, "$name: 503");
    ok t_cmp($r->{headers}{'retry-after'} // '-', $retry_after,
             "$name: Retry-After $retry_after");
    ok t_cmp($r->{headers}{'content-type'} // '-', qr{^application/json},
             "$name: JSON");
    ok t_cmp($r->{body}, error_body_re($TEXT), "$name: text");
}

#----------------------------------------------------------------------
# Every child of the server puts its connections to use (each sets the
# schema up once) before the lock is taken.  First with SQLite locked for
# 1.3 s, so that requests are in flight when the MPM counts its idle
# workers and starts the children it wants; then in rounds, unlocked,
# until each child the server has now recorded a batch.
my $logs = Apache::Test::vars('t_logs');

# The server's live children (from /proc).
sub children {
    my $parent = parent_pid();
    my @kids;
    opendir my $d, '/proc' or die "/proc: $!";
    for my $pid (grep { /^\d+$/ } readdir $d) {
        open my $fh, '<', "/proc/$pid/stat" or next;
        my ($state, $ppid) = (<$fh> // '') =~ /\) (\S) (\d+) / or next;
        push @kids, $pid if $ppid == $parent && $state ne 'Z';
    }
    return sort { $a <=> $b } @kids;
}
# The children that answered a warm-up batch 200 (logs/pid_log, "%P %a
# %>s %m %U%q": see t/conf/extra.conf.in).
sub warmed {
    my %pid;
    open my $fh, '<', "$logs/pid_log" or return \%pid;
    while (<$fh>) {
        $pid{$1} = 1 if m{^(\d+) \S+ 200 POST /track/v2/projects/mutex-warm-};
    }
    return \%pid;
}
{
    my $h = TB::sqlite_lock_holder(undef, undef, 'ROLLBACK');
    my @c = map { start(batch_url("mutex-warm-0-$_"), batch_for("warm-0-$_")) } 1 .. 6;
    Time::HiRes::sleep(1.3);
    my $ok = TB::sqlite_lock_release($h);
    my @r = answers(@c);
    my ($round, @cold) = (0);
    do {
        $round++;
        push @r, answers(map { start(batch_url("mutex-warm-$round-$_"),
                                     batch_for("warm-$round-$_")) } 1 .. 6);
        Time::HiRes::sleep(0.05);       # the log line follows the answer
        my $w = warmed();
        @cold = grep { !$w->{$_} } children();
    } while (@cold && $round < 40);
    t_debug("warm-up: $round round(s), children: @{[ children() ]}");
    ok t_cmp(join(' ', map { $_->{status} } @r), join(' ', (200) x @r),
             'warm-up: every batch recorded');
    ok t_cmp("@cold", '', 'warm-up: every child of the server recorded a batch');
    ok t_cmp($ok, 1, 'warm-up: lock holder ended cleanly');
    ok t_cmp(lc((db()->selectrow_array('PRAGMA journal_mode'))[0]), 'wal',
             'the database is in WAL mode');
}

#----------------------------------------------------------------------
# The lock held from outside; a 5-second writer holds the mutex; /small
# writers queue behind it and give up at 300 ms.
my $before = db_counts();
my $off    = -s "$logs/error_log";
my $h      = TB::sqlite_lock_holder(undef, undef, 'ROLLBACK');
my $t0     = Time::HiRes::time();
my $holder = start(batch_url('mutex-holder'), batch_for('holder'));
my (@waves, @projects);
for my $wave (1 .. $WAVES) {
    # the writer on /track took the mutex and waits for SQLite
    Time::HiRes::sleep($wave == 1 ? 0.5 : 1);
    my @tags = map { "queued-$wave-$_" } 1 .. $PER_WAVE;
    push @projects, map { "mutex-$_" } @tags;
    push @waves, [ answers(map { start(batch_url("mutex-$_", 'batch', '/small'),
                                      batch_for($_, 'email_id')) } @tags) ];
}
my ($hr) = answers($holder);
my $all = Time::HiRes::time() - $t0;
my $after = db_counts();
my $ok = TB::sqlite_lock_release($h);
my $why = failures($off);
{
    my %pid;
    if (open my $fh, '<', "$logs/pid_log") {
        while (<$fh>) { $pid{$2} = $1 if m{^(\d+) .* /(?:small/)?track/v2/projects/([^/]+)/} }
    }
    t_debug("$_ (pid " . ($pid{$_} // '?') . '): '
            . join(' / ', @{ $why->{$_} || ['no TB00007'] })) for 'mutex-holder', @projects;
}
t_debug(sprintf 'locked phase: %.2f s', $all);

# What each client saw: the exact 503 of SPEC §2, at its own deadline.
my $i = 0;
for my $wave (@waves) {
    for my $r (@$wave) {
        my $name = "queued writer $projects[$i++]";
        is_503($r, 7, $name);
        # 300 ms; not held until the writer in front of it gives up (5 s)
        ok t_cmp($r->{elapsed} =~ /^[\d.]+$/ && $r->{elapsed} >= 0.25
                 && $r->{elapsed} < 2.5 ? 'at its deadline' : $r->{elapsed},
                 'at its deadline', "$name: answered after its 300 ms");
    }
}
is_503($hr, 5, 'writer holding the mutex');

# The mutex, not SQLite's lock, turned them away: at least one request
# was refused for waiting on the other writers past its deadline.
my @busy = grep { grep { $_ eq $BUSY } @{ $why->{$_} || [] } } @projects;
ok t_cmp(scalar(@busy) >= 1 ? 'yes' : join(' | ', map { @$_ } values %$why),
         'yes', 'error log: a request gave up waiting for the other writers (mutex deadline)');

# Nothing of any of them kept, nothing at all written.
ok t_cmp($J->encode([ map { db_project_rows($_) } 'mutex-holder', @projects ]),
         $J->encode([ map { no_rows() } 'mutex-holder', @projects ]),
         'nothing of the refused batches kept');
ok t_cmp($J->encode($after), $J->encode($before), 'no row written while locked');
ok t_cmp($ok, 1, 'lock holder ended cleanly');

#----------------------------------------------------------------------
# The lock gone: a batch on /small is recorded at once.
{
    my $r = post_json(batch_url('mutex-after', 'batch', '/small'),
                      batch_for('after', 'email_id'));
    ok t_cmp($r->code . ' ' . (results_text($r->content) // $r->content),
             '200 ' . results_for('after'), 'lock gone: 200');
    ok t_cmp($J->encode(db_project_rows('mutex-after')),
             $J->encode(rows_for('after', 'email_id')), 'lock gone: recorded');
}
