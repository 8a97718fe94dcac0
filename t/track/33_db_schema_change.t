# The database's schema changes while the server runs: a person adds an
# index for their own queries (SPEC §5: the data is for plain SQL), then
# drops it.  The database stays reachable, unlocked and writable, so
# every batch must still be recorded (SPEC §2 allows 503 only when the
# database is unreachable, locked past its timeout, or the commit failed),
# and in any case the rows must match the answers.
# Runs against <VirtualHost tb_faults> (a database of its own, persistent
# connections), so that whatever happens here cannot reach the main
# database the other tests use.
use strict;
use warnings FATAL => 'all';

use Apache::Test;
use Apache::TestUtil;
use lib 't/lib';
use TB qw(batch_url json hostport_of post_at db_file db_create db_project_rows no_rows
          results_text);

my $J = json();
my $HP = hostport_of('tb_faults');
my $dir = Apache::Test::vars('t_dir') . '/db/faults';
my $file = "$dir/track.sqlite";
my $N = 6;     # batches per step: enough to meet every server process

# created here when 32_db_rollback.t has not run first
unless (-e $file) {
    mkdir $dir unless -d $dir;
    db_create($file)->disconnect;
}

sub batch_for {
    my ($tag) = @_;
    return qq({"commands": [{"name": "customers/events", "command_id": "e", "data": )
         . qq({"customer_ids": {"registered": "$tag"}, "event_type": "schema", )
         . qq("timestamp": 1700000000}}]});
}
my $RESULTS = '[{"success": true, "command_id": "e"}]';
sub rows_for {
    my ($tag) = @_;
    return { customers => 1, ids => [ "registered|$tag|1|registered=$tag" ],
             events => [ "registered=$tag|schema|1700000000.000000|{}|e" ],
             updates => [], properties => [] };
}

# $N batches; the statuses, and whether the rows match the answers.
sub step {
    my ($name) = @_;
    my (@status, @mismatch);
    for my $i (1 .. $N) {
        my $project = "schema-$name-$i";
        my $r = post_at($HP, batch_url($project), batch_for("$name$i"));
        my $ok = $r->{status} eq '200'
                 && (results_text($r->{body}) // '') eq $RESULTS;
        push @status, $ok ? 200 : $r->{status};
        my $got = $J->encode(db_project_rows($project, db_file($file)));
        push @mismatch, "$project: $r->{status}, rows $got"
            if $got ne $J->encode($ok ? rows_for("$name$i") : no_rows());
    }
    ok t_cmp(join(',', @status), join(',', (200) x $N), "$name: every batch recorded");
    ok t_cmp(join("\n", @mismatch), '', "$name: rows match the answers");
}

plan tests => 2 * 3;

step('before');
db_file($file)->do('CREATE INDEX tb_admin_events_type ON tb_events (event_type)');
step('after-create-index');
db_file($file)->do('DROP INDEX tb_admin_events_type');
step('after-drop-index');
