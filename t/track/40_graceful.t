# A graceful restart (config re-read) keeps every setting, keeps serving and
# recording, and does not grow the parent process.
use strict;
use warnings FATAL => 'all';

use Apache::Test;
use Apache::TestUtil;
use Apache::TestRequest ();
use lib 't/lib';
use TB qw(parent_pid post_json decode db_counts db_clear batch_url);

my $rounds = 3;
plan tests => 2 + $rounds * 5 + 2;

my $vars = Apache::Test::config()->{vars};


sub rss_kb {
    my $pid = shift;
    open my $fh, '<', "/proc/$pid/status" or return 0;
    while (<$fh>) { return $1 if /^VmRSS:\s+(\d+)/ }
    return 0;
}

sub event { my $n = shift;
    return { name => 'customers/events',
             data => { customer_ids => { registered => "g$n" },
                       event_type => 'graceful', properties => { n => $n } } } }

# The settings in force: /small allows 3 commands, /track 50.
sub settings_ok {
    my $tag = shift;
    my $r = post_json(batch_url('grace', 'batch', '/small'),
                      { commands => [ map { event($_) } 1 .. 4 ] });
    ok t_cmp($r->content,
             qq({"success": false, "errors": ["Too many commands: at most 3 commands per batch."]}\n),
             "$tag: /small keeps TrackBatchMaxCommands 3");
    $r = post_json(batch_url('grace', 'batch', '/small'),
                   { commands => [ map { event($_) } 1 .. 3 ] });
    ok t_cmp($r->code, 200, "$tag: /small takes 3");
}

db_clear();
settings_ok('before');

my $pid = parent_pid();
my $rss_first;
for my $round (1 .. $rounds) {
    kill 'USR1', $pid or die "cannot signal $pid: $!";
    # wait for the new generation to answer
    my $up = 0;
    for (1 .. 100) {
        select(undef, undef, undef, 0.1);
        my $r = Apache::TestRequest::GET('/track/v2/projects/grace/system/time');
        if ($r->code == 200) { $up = 1; last }
    }
    ok $up;
    ok t_cmp(parent_pid(), $pid, "round $round: same parent after graceful");
    settings_ok("round $round");
    my $r = post_json(batch_url('grace'), { commands => [ map { event($_) } 1 .. 50 ] });
    my $a = decode($r->content);
    ok t_cmp(scalar(grep { $_->{success} } @{ $a->{results} || [] }), 50,
             "round $round: /track takes 50");
    $rss_first = rss_kb($pid) if $round == 1;
}

# every success above was recorded: (3 + 50) per round, plus 3 before
my $n = db_counts();
ok t_cmp($n->{tb_events}, 3 + $rounds * 53, 'all acknowledged events recorded');
my $growth = rss_kb($pid) - $rss_first;
t_debug("parent RSS growth over " . ($rounds - 1) . " gracefuls: $growth kB");
# ASan's own allocator grows the parent; leaks there are LeakSanitizer's
# and valgrind's to find
if ($ENV{TB_SANITIZED}) {
    skip('RSS growth is not meaningful under ASan', 1);
}
else {
    ok $growth < 512;
}
