# `apachectl graceful` (SIGUSR1 to the parent) three times during ~20 s of
# load loses nothing acknowledged.  Clients send batches of events with
# command_ids never sent before: some on one connection per request, some
# on connections kept open across requests, as SDKs do.
#
# What is acceptable, and why:
# - A graceful restart is not a fault: the old children finish what they
#   have accepted and the listening sockets never close, so every request
#   that reached the server is answered 200, every command success: true.
#   A 503 would say the database failed, which a restart must not cause;
#   none is accepted.
# - A kept-open connection idle between two requests may be closed by an
#   old child just as the client sends its next request on it (HTTP's
#   keep-alive race, RFC 9112 §9.3.1).  The client sees a reset or an end
#   of file without any answer, and sends the batch again, same
#   command_ids, on a new connection, as a client should; the command_ids
#   make that safe even had the first sending been recorded.  Such resets
#   are counted and allowed only on reused connections, only without any
#   byte of an answer, and only when the resend is answered 200.  A request
#   on a new connection must never go unanswered.
# Checked in the database: every command answered success: true is in
# tb_events exactly once, nothing else of the load is, tb_command_log holds
# exactly the acknowledged command_ids; the server keeps serving after.
use strict;
use warnings FATAL => 'all';

use Apache::Test;
use Apache::TestUtil;
use Time::HiRes ();
use lib 't/lib';
use TB qw(parent_pid log_from post_json decode batch_url batch_body res_ok norm_times load_run
          load_rows);

plan tests => 15;

my $cfg  = Apache::Test::config();
my $vars = $cfg->{vars};
my $mpm  = $cfg->{server}->{mpm} || '';
my $log  = "$vars->{t_logs}/error_log";


my $project = 'graceful-load';
my $tag     = 'gl';
my $rounds  = 3;
# prefork has 3 children here (Apache::Test's MaxClients), each holding one
# connection at a time: fewer clients there, or the kept-open connections
# would starve the others
my ($clients, $keepalive) = $mpm eq 'prefork' ? (3, 1) : (6, 3);

# One batch first, so the load starts on a database whose schema is set up
# (run alone on a new PostgreSQL database, connections setting it up at
# once under load are 42_schema_upgrade_load.t's subject, not this one's).
my $warm = post_json(batch_url($project), { commands => [
    { name => 'customers/events', data => { customer_ids => { registered => 'warm' },
                                            event_type => 'warm' } } ] });
die 'warm-up batch: ' . $warm->content unless $warm->code == 200;

my $pid = parent_pid();
my $log_start = -s $log;
my @restarts;
my $res = load_run(
    tag => $tag, path => batch_url($project), clients => $clients,
    keepalive => $keepalive, retry => 3, events => 10,
    before => 4, after => 4,
    fault => sub {
        for my $k (1 .. $rounds) {
            my $off = -s $log;
            my $t = Time::HiRes::time();
            kill 'USR1', $pid or die "cannot signal $pid: $!";
            my $back;
            while (Time::HiRes::time() < $t + 30) {
                if (log_from($off) =~ /resuming normal operations/) {
                    $back = Time::HiRes::time();
                    last;
                }
                Time::HiRes::sleep(0.05);
            }
            push @restarts, [$t, $back];
            Time::HiRes::sleep(4) if $k < $rounds;
        }
        return scalar @restarts;
    });

my @rec = @{ $res->{records} };
# the last sending of each batch decides its fate
my %final;
for (sort { $a->{attempt} <=> $b->{attempt} } @rec) {
    $final{"$_->{client}-$_->{seq}"} = $_;
}
my @final  = values %final;
my @resets = grep { $_->{status} eq 'none' } @rec;
my %st;
$st{ $_->{status} }++ for @rec;
my $max = 0;
for (@rec) { $max = $_->{t1} - $_->{t0} if $_->{t1} - $_->{t0} > $max }
printf "# %s, %d clients (%d keep-alive): %d requests (%s), %d batches; "
     . "%d kept-open connections opened; %d resets on them; slowest answer %.2f s; "
     . "restarts at +%s s\n",
    $mpm, $clients, $keepalive, scalar @rec,
    join(' ', map { "$_=$st{$_}" } sort keys %st), scalar @final,
    scalar(grep { $_->{keepalive} && !$_->{reused} } @rec), scalar @resets, $max,
    join(', ', map { sprintf '%.1f', $_->[0] - $rec[0]{t0} } @restarts);

ok t_cmp($res->{clients_ok}, 1, 'every load client ran to the end');
ok t_cmp(join(' ', map { defined $_->[1] ? 'back' : 'not back' } @restarts),
         join(' ', ('back') x $rounds),
         "$rounds graceful restarts, each resuming normal operations");
ok t_cmp(parent_pid(), $pid, 'the same parent process throughout');

# the load ran across every restart: answers before the first, between
# each two, and after the last
my @edges = (0, (map { $_->[0] } @restarts), 9e9);
my @served;
for my $i (0 .. $#edges - 1) {
    push @served, scalar grep { $_->{status} eq '200' && $_->{t0} >= $edges[$i]
                                && $_->{t0} < $edges[$i + 1] } @rec;
}
ok t_cmp(join(' ', map { $_ > 0 ? 'served' : 'none' } @served),
         join(' ', ('served') x ($rounds + 1)),
         'batches were recorded before, between and after the restarts ('
         . join('/', @served) . ')');

ok t_cmp(join(' ', map { "$_->{status}" . ($_->{body} ? " [$_->{body}]" : '') }
                   grep { $_->{status} ne '200' } @final),
         '', 'every batch was answered 200 in the end (never 503, never 500)');
ok t_cmp(scalar(grep { $_->{status} eq '200' && !$_->{all_ok} } @rec), 0,
         'every 200 answers each command success: true, in order');
ok t_cmp(join(' ', map { "client $_->{client} batch $_->{seq}: $_->{error}" }
                   grep { !$_->{reused} } @resets),
         '', 'no request on a new connection went unanswered');
ok t_cmp(join(' ', map { "client $_->{client} batch $_->{seq}: $_->{partial} bytes" }
                   grep { $_->{partial} } @resets),
         '', 'no answer was cut off');
ok t_cmp(join(' ', map { "client $_->{client} batch $_->{seq}" }
                   grep { $_->{status} eq 'none' && $final{"$_->{client}-$_->{seq}"}{status} ne '200' }
                   @resets),
         '', 'each batch whose kept-open connection was reset was resent and answered 200 ('
         . scalar(@resets) . ' resets)');
ok t_cmp(scalar(grep { $_->{keepalive} && $_->{reused} && $_->{status} eq '200' } @rec) > 50
         ? 'yes' : 'no', 'yes', 'kept-open connections carried many requests');

my ($ev, $cl) = load_rows($project, $tag);
my %acked  = map { $_ => 1 } map { @{ $_->{cids} } } grep { $_->{status} eq '200' } @final;
my %failed = map { $_ => 1 } map { @{ $_->{cids} } } grep { $_->{status} ne '200' } @final;
my $few = sub { @_ ? scalar(@_) . ": @_[0 .. ($#_ < 4 ? $#_ : 4)]" : '' };
ok t_cmp($few->(sort grep { !$ev->{$_} } keys %acked), '',
         'every command answered success is in tb_events');
ok t_cmp($few->(sort grep { ($ev->{$_} || 0) > 1 } keys %acked), '',
         '... exactly once, resent batches included');
ok t_cmp($few->((sort grep { $ev->{$_} } keys %failed),
                (sort grep { !$acked{$_} && !$failed{$_} } keys %$ev),
                (sort grep { !$acked{$_} } keys %$cl),
                (sort grep { ($cl->{$_} || 0) != 1 } keys %acked)),
         '', 'nothing else recorded; tb_command_log holds exactly the acknowledged commands');

# still serving, and no child died
my $r = post_json(batch_url($project), { commands => [
    { name => 'customers/events', command_id => "$tag-after",
      data => { customer_ids => { registered => 'after' }, event_type => 'after' } } ] });
ok t_cmp(norm_times($r->content), batch_body(res_ok('"gl-after"')),
         'a batch after the restarts is recorded');
my @crashes = grep { /exit signal|Segmentation fault|AH00052/ } split /\n/, log_from($log_start);
ok t_cmp(join("\n", @crashes), '', 'no child process crashed');
