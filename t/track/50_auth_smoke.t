use strict;
use warnings FATAL => 'all';
use Apache::Test;
use Apache::TestUtil;
use lib 't/lib';
use TB qw(post_json decode db_counts db_clear batch_url admin basic);

# A made-up secret is listed in secrets.txt like the real ones, for
# 99_no_secrets.t; a short word would also match the module's log texts.
my $wrong = join '', map { ('A'..'Z', 'a'..'z', 0..9)[rand 62] } 1 .. 40;
{
    my $f = Apache::Test::vars('t_dir') . '/db/secrets.txt';
    open my $fh, '>>', $f or die "$f: $!";
    print $fh "$wrong\n";
}

plan tests => 8;
db_clear();
my $p = admin('project', 'create', 'auth-smoke', '--key', 'private');
ok t_cmp($p->{status}, 0, 'admin created a project and key');
my $batch = { commands => [ { name => 'customers/events',
    data => { customer_ids => { registered => 'a' }, event_type => 'x' } } ] };
my $url = batch_url('auth-smoke', 'batch', '/keys');
my $r = post_json($url, $batch);
ok t_cmp($r->code, 401);
ok t_cmp($r->header('WWW-Authenticate'), qr/Basic realm=/);
$r = post_json($url, $batch, Authorization => basic($p->{key_id}, $p->{secret}));
ok t_cmp($r->code, 200);
ok t_cmp(db_counts()->{tb_events}, 1);
$r = post_json($url, $batch, Authorization => basic($p->{key_id}, $wrong));
ok t_cmp($r->code, 403);
my $pub = admin('key', 'create', 'auth-smoke', 'public');
admin('key', 'grant', $pub->{key_id}, 'events', 'x');
$r = post_json("$url?access_token=$pub->{key}", $batch);
ok t_cmp($r->content, qr/"success": true\}\]/);
$r = post_json($url, $batch, Authorization => "Token $pub->{key}");
ok t_cmp($r->code, 200);
