# A database the server cannot write: 503 with Retry-After, nothing
# recorded; once it can write again, the same server records normally.
#  - <VirtualHost tb_unwritable>: its database lies in a directory the
#    server user may not write (created so here), so it cannot be created;
#  - <VirtualHost tb_readonly>: an existing database made read-only here
#    (the file, then the file and its directory), and restored.
use strict;
use warnings FATAL => 'all';

use Apache::Test;
use Apache::TestUtil;
use lib 't/lib';
use TB qw(post_json db_clear batch_url json hostport_of post_at db_file
          db_create db_project_rows no_rows results_text error_body_re);

my $J = json();
my $TEXT = 'The database could not record the request; retry later.';
my $T = Apache::Test::vars('t_dir');

sub same {
    my ($got, $want, $name) = @_;
    return ok t_cmp($J->encode($got), $J->encode($want), $name);
}

# A batch recording one event and one property update for "$tag" (soft
# id: cookie on /track, email_id on /small), plus an invalid command.
sub batch_for {
    my ($tag, $soft) = @_;
    return TB::tag_batch($tag, $soft, 'ro-test',
        '{"name": "customers/events", "data": {"customer_ids": {"registered": "x"}}}');
}
sub results_for {
    return TB::tag_results($_[0], q({"success": false, "errors": ["Field 'event_type' is required."]}));
}
sub rows_for { return TB::tag_rows($_[0], $_[1], 'ro-test') }

# Refused: 503, Retry-After, the text, JSON.
sub refused_ok {
    my ($r, $retry, $name) = @_;
    ok t_cmp($r->{status}, 503, "$name: 503");
    ok t_cmp($r->{headers}{'retry-after'}, $retry, "$name: Retry-After $retry");
    ok t_cmp($r->{body}, error_body_re($TEXT), "$name: text");
    ok t_cmp($r->{headers}{'content-type'}, qr{^application/json}, "$name: JSON");
}
sub served_ok {
    my ($r, $tag, $name) = @_;
    ok t_cmp($r->{status} . ' ' . (results_text($r->{body}) // $r->{body}),
             '200 ' . results_for($tag), "$name: 200, results");
}

plan tests => 1 + 4 + 4 + 1 + 2 + 2 + 1     # directory not writable
            + 3                             # read-only: before
            + 2 * (4 + 1 + 1 + 1 + 1);      # read-only: two ways

db_clear();

#----------------------------------------------------------------------
# The database cannot be created: its directory is not writable.
{
    my $hp   = hostport_of('tb_unwritable');
    my $dir  = "$T/db/unwritable";
    my $file = "$dir/track.sqlite";
    mkdir $dir unless -d $dir;
    chmod 0555, $dir or die "chmod $dir: $!";
    ok t_cmp((-w $dir ? 'writable' : 'not writable'), 'not writable',
             'the directory is not writable by this user (the server\'s)');

    refused_ok(post_at($hp, batch_url('unwritable'), batch_for('uw1')), 5,
               'unwritable directory, /track');
    refused_ok(post_at($hp, batch_url('unwritable', 'batch', '/small'),
                       batch_for('uw2', 'email_id')), 7,
               'unwritable directory, /small');
    ok t_cmp((-e $file ? 'created' : 'absent'), 'absent', 'no database file appeared');

    # the main server is not affected
    my $r = post_json(batch_url('main-during-fault'), batch_for('main1'));
    served_ok({ status => $r->code, body => $r->content }, 'main1',
              'main server meanwhile');
    same(db_project_rows('main-during-fault'), rows_for('main1'), 'main server meanwhile: recorded');

    # writable again: the same virtual host now records
    chmod 0755, $dir or die "chmod $dir: $!";
    served_ok(post_at($hp, batch_url('unwritable'), batch_for('uw3')), 'uw3',
              'directory writable again');
    same(db_project_rows('unwritable', db_file($file)), rows_for('uw3'),
         'directory writable again: only that batch recorded');
    my ($n) = db_file($file)->selectrow_array('SELECT count(*) FROM tb_events');
    ok t_cmp($n, 1, 'directory writable again: one event in all, none of the refused');
}

#----------------------------------------------------------------------
# An existing database made read-only, then restored.
{
    my $hp   = hostport_of('tb_readonly');
    my $dir  = "$T/db/readonly";
    my $file = "$dir/track.sqlite";
    mkdir $dir unless -d $dir;
    db_create($file)->disconnect;
    served_ok(post_at($hp, batch_url('ro-before'), batch_for('before')), 'before',
              'read-only test database works');
    same(db_project_rows('ro-before', db_file($file)), rows_for('before'), 'recorded');
    ok t_cmp((-e $file && !-e "$file-wal") ? 1 : 0, 1,
             'the server closed its connection (one per request)');

    my @ways = (
        [ 'database file read-only' => sub {
              chmod $_[0] ? 0444 : 0644, grep { -e } $file, "$file-wal", "$file-shm";
          } ],
        [ 'database file and directory read-only' => sub {
              chmod $_[0] ? 0444 : 0644, grep { -e } $file, "$file-wal", "$file-shm";
              chmod $_[0] ? 0555 : 0755, $dir;
          } ],
    );
    my $i = 0;
    for my $way (@ways) {
        my ($name, $set) = @$way;
        my $project = 'ro-' . ++$i;
        $set->(1);
        my $ro = (-w $file) ? 'writable' : 'read-only';
        my $r = post_at($hp, batch_url($project), batch_for("ro$i"));
        $set->(0);
        refused_ok($r, 5, $name);
        ok t_cmp($ro, 'read-only', "$name: it was so for this user (the server's)");
        same(db_project_rows($project, db_file($file)), no_rows(), "$name: nothing recorded");
        served_ok(post_at($hp, batch_url($project), batch_for("ro$i")), "ro$i",
                  "$name, restored");
        same(db_project_rows($project, db_file($file)), rows_for("ro$i"),
             "$name, restored: recorded");
    }
}
