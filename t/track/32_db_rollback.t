# A transaction that fails part-way, or at COMMIT: 503 with Retry-After and
# nothing of the request kept -- not the new customer, ids, updates,
# properties or events written before the failure, and no change to rows
# that existed -- then the same connections record normally.
# <VirtualHost tb_faults> has a database of its own, created here with
# triggers that fail on request before the server first opens it.
use strict;
use warnings FATAL => 'all';

use Apache::Test;
use Apache::TestUtil;
use Time::HiRes ();
use lib 't/lib';
use TB qw(batch_url json hostport_of post_at db_file db_create db_project_rows no_rows
          results_text error_body_re);

my $J = json();
my $TEXT = 'The database could not record the request; retry later.';
my $HP = hostport_of('tb_faults');
my $dir = Apache::Test::vars('t_dir') . '/db/faults';
my $file = "$dir/track.sqlite";

sub same {
    my ($got, $want, $name) = @_;
    return ok t_cmp($J->encode($got), $J->encode($want), $name);
}
sub rows { db_project_rows($_[0], db_file($file)) }

# Fault injection, all inside the server's own transaction:
#  - an event of type "explode": the INSERT fails;
#  - a customer property named "explode": its upsert fails;
#  - a property whose stored value is overwritten with "explode": the
#    UPDATE branch of the upsert fails;
#  - an event of type "fail-at-commit": a deferred foreign key is broken,
#    so every statement succeeds and COMMIT fails;
#  - an event of type "rollback-all": SQLite rolls the whole transaction
#    back by itself, as after a full disk or an I/O error.
mkdir $dir unless -d $dir;
unlink $file, "$file-wal", "$file-shm", "$file-journal";
{
    my $dbh = db_create($file);
    $dbh->do($_) for split /;\n/, <<'SQL';
CREATE TRIGGER tb_test_explode BEFORE INSERT ON tb_events
  WHEN NEW.event_type = 'explode'
  BEGIN SELECT RAISE(ABORT, 'injected fault: event'); END;
CREATE TRIGGER tb_test_explode_prop BEFORE INSERT ON tb_customer_properties
  WHEN NEW.name = 'explode'
  BEGIN SELECT RAISE(ABORT, 'injected fault: property'); END;
CREATE TRIGGER tb_test_explode_update BEFORE UPDATE ON tb_customer_properties
  WHEN NEW.value = '"explode"'
  BEGIN SELECT RAISE(ABORT, 'injected fault: property update'); END;
CREATE TRIGGER tb_test_rollback_all BEFORE INSERT ON tb_events
  WHEN NEW.event_type = 'rollback-all'
  BEGIN SELECT RAISE(ROLLBACK, 'injected fault: whole transaction'); END;
CREATE TABLE tb_test_parent (id INTEGER PRIMARY KEY);
CREATE TABLE tb_test_child (parent INTEGER
  REFERENCES tb_test_parent (id) DEFERRABLE INITIALLY DEFERRED);
CREATE TRIGGER tb_test_fail_at_commit AFTER INSERT ON tb_events
  WHEN NEW.event_type = 'fail-at-commit'
  BEGIN INSERT INTO tb_test_child VALUES (-1); END
SQL
    $dbh->disconnect;
}

sub cmd_customer {
    my ($id, $props, $ts, $cid, $more_ids) = @_;
    $more_ids //= "";
    return qq({"name": "customers", "command_id": "$cid", "data": {"customer_ids": )
         . qq({"registered": "$id"$more_ids}, "update_timestamp": $ts, "properties": $props}});
}
sub cmd_event {
    my ($id, $type, $cid) = @_;
    return qq({"name": "customers/events", "command_id": "$cid", "data": {"customer_ids": )
         . qq({"registered": "$id"}, "event_type": "$type", "timestamp": 1700000100}});
}
sub batch { '{"commands": [' . join(', ', @_) . ']}' }
sub ok_results { '[' . join(', ', map { qq({"success": true, "command_id": "$_"}) } @_) . ']' }

sub refused_ok {
    my ($r, $name) = @_;
    ok t_cmp($r->{status} . ' ' . ($r->{headers}{'retry-after'} // '-'), '503 5',
             "$name: 503 with Retry-After");
    ok t_cmp($r->{body}, error_body_re($TEXT), "$name: text");
}
sub served_ok {
    my ($r, $want, $name) = @_;
    ok t_cmp($r->{status} . ' ' . (results_text($r->{body}) // $r->{body}),
             "200 $want", "$name: 200, results");
}

plan tests => 3 + 6 + 4 + 4 + 3 + 6 + 4 + 3;

my $a_rows = sub {
    my ($who, @extra) = @_;
    return {
        customers => 1,
        ids => [ "registered|$who|1|registered=$who" ],
        events => [ "registered=$who|ok|1700000100.000000|{}|e1" ],
        updates => [ qq(registered=$who|{"p":1,"q":"a"}|1700000000.000000|u1) ],
        properties => [ qq(registered=$who|p|1|1700000000.000000),
                        qq(registered=$who|q|"a"|1700000000.000000) ],
    };
};

# A customer that exists before the faults.
{
    my $r = post_at($HP, batch_url('rb-existing'),
                    batch(cmd_customer('old', '{"p": 1, "q": "a"}', 1700000000, 'u1'),
                          cmd_event('old', 'ok', 'e1')));
    served_ok($r, ok_results('u1', 'e1'), 'a customer recorded before');
    same(rows('rb-existing'), $a_rows->('old'), 'its rows');
    ok t_cmp(lc((db_file($file)->selectrow_array('PRAGMA journal_mode'))[0]), 'wal',
             'the server set WAL mode');
}
my $existing = rows('rb-existing');

# The last command fails: everything before it, a new customer, its ids,
# its update, properties and a first event, is rolled back.
{
    my $b = batch(cmd_customer('new1', '{"p": 1, "q": "a"}', 1700000000, 'u1'),
                  cmd_event('new1', 'ok', 'e1'),
                  cmd_event('new1', 'explode', 'e2'));
    my $r = post_at($HP, batch_url('rb-late'), $b);
    refused_ok($r, 'fault in the last command');
    same(rows('rb-late'), no_rows(), 'fault in the last command: nothing kept');
    my ($n) = db_file($file)->selectrow_array(
        "SELECT count(*) FROM tb_customers WHERE project = 'rb-late'");
    ok t_cmp($n, 0, 'fault in the last command: not even the customer row');
    $r = post_at($HP, batch_url('rb-late'),
                 batch(cmd_customer('new1', '{"p": 1, "q": "a"}', 1700000000, 'u1'),
                       cmd_event('new1', 'ok', 'e1')));
    served_ok($r, ok_results('u1', 'e1'), 'without the fault');
    same(rows('rb-late'), $a_rows->('new1'), 'without the fault: recorded');
}

# Changes to an existing customer are rolled back too: a property update
# (upsert), a new id attached, an update row, then the fault.
{
    my $b = batch(cmd_customer('old', '{"p": 2, "q": "b"}', 1700000050, 'u2',
                               ', "cookie": "old-cookie"'),
                  cmd_event('old', 'ok', 'e2'),
                  cmd_customer('old', '{"explode": true}', 1700000060, 'u3'));
    my $r = post_at($HP, batch_url('rb-existing'), $b);
    refused_ok($r, 'fault after changing an existing customer');
    same(rows('rb-existing'), $existing,
         'fault after changing an existing customer: its rows as they were');
    ok t_cmp(scalar @{ db_file($file)->selectall_arrayref(
                 "SELECT 1 FROM tb_customer_ids WHERE id_value = 'old-cookie'") }, 0,
             'fault after changing an existing customer: no new id');
}

# The UPDATE branch of the property upsert fails.
{
    my $b = batch(cmd_event('old', 'ok', 'e3'),
                  cmd_customer('old', '{"q": "explode"}', 1700000070, 'u4'));
    my $r = post_at($HP, batch_url('rb-existing'), $b);
    refused_ok($r, 'fault in a property update');
    same(rows('rb-existing'), $existing, 'fault in a property update: rows as they were');
    my ($q) = db_file($file)->selectrow_array(
        "SELECT value FROM tb_customer_properties WHERE name = 'q'
            AND customer_id = (SELECT customer_id FROM tb_customer_ids
                                WHERE project = 'rb-existing' AND id_value = 'old')");
    ok t_cmp($q, '"a"', 'fault in a property update: the value is unchanged');
}

# COMMIT fails (every statement succeeded): nothing kept.
{
    my $b = batch(cmd_customer('new2', '{"p": 1, "q": "a"}', 1700000000, 'u1'),
                  cmd_event('new2', 'fail-at-commit', 'e1'));
    my $r = post_at($HP, batch_url('rb-commit'), $b);
    refused_ok($r, 'COMMIT fails');
    same(rows('rb-commit'), no_rows(), 'COMMIT fails: nothing kept');
}

# After a failed COMMIT the database connections are usable.  httpd closes
# a connection after a 503, so the next batches come on new connections;
# there are few server processes, each with its pooled database
# connection(s), and every one of six batches must be recorded.
{
    my $fail = batch(cmd_customer('new3', '{"p": 1}', 1700000000, 'u1'),
                     cmd_event('new3', 'fail-at-commit', 'e1'));
    my $r = post_at($HP, batch_url('rb-commit-2'), $fail);
    refused_ok($r, 'COMMIT fails again');
    my @got;
    for my $i (1 .. 6) {
        my $r = post_at($HP, batch_url("rb-next-$i"),
                        batch(cmd_customer("next$i", '{"p": 1, "q": "a"}', 1700000000, 'u1'),
                              cmd_event("next$i", 'ok', 'e1')));
        push @got, $r->{status} . ' ' . (results_text($r->{body}) // $r->{body});
    }
    ok t_cmp(join("\n", @got), join("\n", ('200 ' . ok_results('u1', 'e1')) x 6),
             'six batches after the failed COMMITs: all 200');
    same(rows('rb-commit-2'), no_rows(), 'the failed COMMIT kept nothing');
    same([ map { rows("rb-next-$_") } 1 .. 6 ],
         [ map { $a_rows->("next$_") } 1 .. 6 ], 'the six after it are recorded');
    same(rows('rb-existing'), $existing, 'and the customer from before is untouched');
}

# $n batches sent at once while another process holds SQLite's write lock,
# so they queue up together; batch $i is named "$tag$i" (project
# "rb-$tag-$i") and, when $faulty->($i), ends with an event of type
# $fault.  The lock goes after a second.  Returns whether the holder ended
# cleanly, then the answers in order.
sub queued_behind_lock {
    my ($tag, $n, $fault, $faulty) = @_;
    my $h = TB::sqlite_lock_holder($file, undef, 'ROLLBACK');
    my @c = map {
        TB::start_request($HP, batch_url("rb-$tag-$_"),
            batch(cmd_customer("$tag$_", '{"p": 1, "q": "a"}', 1700000000, 'u1'),
                  cmd_event("$tag$_", 'ok', 'e1'),
                  $faulty->($_) ? cmd_event("$tag$_", $fault, 'e2') : ()))
    } 1 .. $n;
    Time::HiRes::sleep(1);
    my $released = TB::sqlite_lock_release($h);
    return ($released, TB::read_answers(@c));
}

# Batches that wait for the database at the same time are committed
# together (one transaction, one sync of the log), and each keeps its own
# outcome.  Another process holds SQLite's write lock while nine batches
# arrive, each on a connection of its own, so they queue up together;
# every third fails in its last command.  Once the lock is free the six
# others are recorded in full and the three refused with nothing kept,
# whichever batches they were committed with.  (Under prefork each
# process writes one batch at a time, so there the batches are committed
# one by one; the outcome must be the same.)
{
    my $faulty = sub { $_[0] % 3 == 0 };
    my ($released, @r) = queued_behind_lock('group', 9, 'explode', $faulty);
    ok t_cmp($released, 1, 'batches committed together: the lock holder ended cleanly');
    ok t_cmp(join(' ', map { $_->{status} } @r),
             join(' ', map { $faulty->($_) ? 503 : 200 } 1 .. 9),
             'batches committed together: the faulty ones 503, the others 200');
    ok t_cmp(join("\n", map { $faulty->($_) ? ($r[$_ - 1]{body} =~ error_body_re($TEXT) ? 'refused' : $r[$_ - 1]{body})
                                            : (results_text($r[$_ - 1]{body}) // $r[$_ - 1]{body}) } 1 .. 9),
             join("\n", map { $faulty->($_) ? 'refused' : ok_results('u1', 'e1') } 1 .. 9),
             'batches committed together: each its own answer');
    same([ map { rows("rb-group-$_") } 1 .. 9 ],
         [ map { $faulty->($_) ? no_rows() : $a_rows->("group$_") } 1 .. 9 ],
         'batches committed together: the six recorded in full, nothing of the three');
}

# An error after which SQLite rolls the whole transaction back by itself
# undoes the batches written before it in the same group, and the batches
# after it must not be kept behind the group's back: every batch answered
# 503 has nothing kept, every one answered 200 is kept in full.
# Twelve batches queued behind a held lock, every other one faulty: which
# process takes which is the MPM's choice, so faulty batches are many, for
# some group to hold a batch after one (the case that went wrong).
{
    my $faulty = sub { $_[0] % 2 == 0 };
    my ($released, @r) = queued_behind_lock('all', 12, 'rollback-all', $faulty);
    ok t_cmp($released, 1, 'whole transaction rolled back: the lock holder ended cleanly');
    ok t_cmp(join(' ', map { $r[$_ - 1]{status} } grep { $faulty->($_) } 1 .. 12),
             join(' ', (503) x 6), 'whole transaction rolled back: the faulty batches 503');
    same([ map { rows("rb-all-$_") } 1 .. 12 ],
         [ map { $r[$_ - 1]{status} eq '200' ? $a_rows->("all$_") : no_rows() } 1 .. 12 ],
         'whole transaction rolled back: each batch kept in full if and only if answered 200');
}
