# A graceful restart onto a schema the database does not hold yet (a
# module upgrade; the same happens on a new database), under load: every
# new connection of the new children finds the schema out of date at once
# while others keep recording.  The schema must be set up once, and no
# request may fail for it: every answer 200, every acknowledged command in
# tb_events exactly once.
#
# On PostgreSQL this failed before tb_pg_schema() (tb_store.c) re-read the
# digest under its advisory lock and wrote it in the same transaction:
# every connection that had found the digest out of date ran the whole
# schema again, one after another, and the DDL (CREATE INDEX IF NOT EXISTS
# takes a SHARE lock on its table even when the index exists) deadlocked
# with batches ("deadlock detected": 503).  Now the DDL runs once, and
# batches hold the same lock shared, so it never interleaves with one.
# SQLite runs the schema on each new connection inside BEGIN IMMEDIATE,
# behind the same write lock as every batch: no race.
use strict;
use warnings FATAL => 'all';

use Apache::Test;
use Apache::TestUtil;
use Time::HiRes ();
use lib 't/lib';
use TB qw(parent_pid log_from db db_connect post_json batch_url load_run load_rows);

my $pg = TB::engine() eq 'pgsql';
plan tests => 7;

my $vars = Apache::Test::config()->{vars};
my $log  = "$vars->{t_logs}/error_log";

my $project = 'schema-upgrade';
my $tag     = 'su';
post_json(batch_url($project), { commands => [
    { name => 'customers/events', data => { customer_ids => { registered => 'warm' },
                                            event_type => 'warm' } } ] });

my $pid = parent_pid();
my $log_start = -s $log;
my $res = load_run(
    tag => $tag, path => batch_url($project), clients => 6, events => 10,
    before => 2, after => 6,
    fault => sub {
        # forget the schema's version, as a database set up by an older
        # module holds another one (SQLite keeps none: it always runs its
        # idempotent schema on a new connection)
        # (db_connect: db() would run the schema itself, in the middle of
        # the load)
        db_connect()->do('DELETE FROM tb_schema_version') if $pg;
        my $off = -s $log;
        kill 'USR1', $pid or die "cannot signal $pid: $!";
        my $t = Time::HiRes::time();
        while (Time::HiRes::time() < $t + 30) {
            return 1 if log_from($off) =~ /resuming normal operations/;
            Time::HiRes::sleep(0.05);
        }
        return 0;
    });

my @rec = @{ $res->{records} };
my %st;
$st{ $_->{status} }++ for @rec;
printf "# %d requests (%s)\n", scalar @rec, join(' ', map { "$_=$st{$_}" } sort keys %st);
my @why = log_from($log_start) =~ /TB00007: [^\n]*?failed, nothing kept: ([^\n]{0,120})/g;
printf "# %d batches failed, first: %s\n", scalar @why, $why[0] if @why;

ok t_cmp($res->{clients_ok}, 1, 'every load client ran to the end');
ok t_cmp($res->{fault}, 1, 'the graceful restart resumed normal operations');
ok t_cmp(scalar(grep { $_->{status} eq '200' && $_->{t0} > $res->{t_back} } @rec) > 20
         ? 'yes' : 'no', 'yes', 'the new children recorded batches');
ok t_cmp(join(' ', map { "$_=$st{$_}" } sort keys %st), '200=' . scalar(@rec),
         'every answer 200: setting the schema up failed no request');

my ($ev, $cl) = load_rows($project, $tag);
my %acked  = map { $_ => 1 } map { @{ $_->{cids} } } grep { $_->{status} eq '200' } @rec;
my %failed = map { $_ => 1 } map { @{ $_->{cids} } } grep { $_->{status} ne '200' } @rec;
my $few = sub { @_ ? scalar(@_) . ": @_[0 .. ($#_ < 4 ? $#_ : 4)]" : '' };
ok t_cmp(scalar(@why), 0, 'no batch failed to record');
ok t_cmp($few->((sort grep { !$ev->{$_} || $ev->{$_} > 1 } keys %acked),
                (sort grep { !$acked{$_} } keys %$ev),
                (sort grep { !$acked{$_} } keys %$cl)),
         '', 'every command answered success is in tb_events exactly once; nothing else is');
my ($digests) = db()->selectrow_array('SELECT count(*) FROM tb_schema_version') if $pg;
ok t_cmp($pg ? $digests : 1, 1, 'one schema version recorded');
