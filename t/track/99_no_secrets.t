# Runs last: every key and secret the suite used (t/db/secrets.txt, written
# by TB::admin and by the tests that make credentials up) is searched for
# in every file under t/logs, as itself and as base64 inside a Basic
# header at any alignment.  The suite runs at LogLevel trace8 (extra.conf),
# so httpd has logged request lines and headers: 0 hits allowed.  With no
# secrets to look for, or logs that show no trace8 logging, the test fails:
# it must be able to fail.
use strict;
use warnings FATAL => 'all';

use Apache::Test;
use Apache::TestUtil;
use Apache::TestRequest ();
use MIME::Base64 ();
use Time::HiRes ();

my $T_DIR = Apache::Test::vars('t_dir');
my $SECRETS = "$T_DIR/db/secrets.txt";

my @secrets;
if (open my $fh, '<', $SECRETS) {
    my %seen;
    @secrets = grep { length && !$seen{$_}++ } map { s/\s+\z//r } <$fh>;
}

# The last answers of the previous tests may not be in the access log yet:
# send one more request and wait until it is.
my $marker = 'no-secrets-' . $$ . '-' . int(rand(1e9));
Apache::TestRequest::GET("/index.html?m=$marker");
my $deadline = Time::HiRes::time() + 5;
until (Time::HiRes::time() > $deadline) {
    open my $fh, '<', "$T_DIR/logs/access_log" or last;
    last if grep { index($_, $marker) >= 0 } <$fh>;
    Time::HiRes::sleep(0.1);
}
Time::HiRes::sleep(0.2);

my @files;
if (opendir my $d, "$T_DIR/logs") {
    @files = sort grep { -f "$T_DIR/logs/$_" } readdir $d;
}

plan tests => 5 + @files;

ok t_cmp(scalar(@secrets) > 0 ? 1 : 0, 1,
         scalar(@secrets) . " secrets and keys to look for in $SECRETS");
ok t_cmp(scalar(grep { length($_) < 16 } @secrets), 0,
         'every secret is long enough to be searched for without false hits');
ok t_cmp(join(',', grep { /^(error_log|access_log)$/ } @files),
         'access_log,error_log', 'both logs present');

my %text;
for my $f (@files) {
    open my $fh, '<:raw', "$T_DIR/logs/$f" or die "$f: $!";
    local $/;
    $text{$f} = <$fh> // '';
}
# The logs must show what trace8 logs: without it 0 hits proves nothing.
ok t_cmp($text{error_log} // '', qr/\[core:trace5\].*Request received from client: /,
         'error_log holds trace5 request lines (LogLevel trace8 in effect)');
ok t_cmp($text{error_log} // '', qr/\[http:trace4\].*\s+Authorization: /,
         'error_log holds trace4 request headers');

# Each secret, and its base64 at the three alignments it can have inside
# base64("key_id:secret").
my %owner;
for my $s (@secrets) {
    $owner{$s} = $s;
    for my $k (0 .. 2) {
        my $c = substr($s, $k);
        $c = substr($c, 0, length($c) - length($c) % 3);
        $owner{ MIME::Base64::encode_base64($c, '') } = $s if length $c >= 12;
    }
}
my $alt = join '|', map { quotemeta } sort { length $b <=> length $a } keys %owner;
my $re = @secrets ? qr/($alt)/ : qr/(?!)/;

for my $f (@files) {
    my (%hit, $n);
    my $line = 1;
    for (split /\n/, $text{$f}) {
        while (/$re/g) {
            $n++;
            my $s = $owner{$1};
            $hit{$s} //= "line $line";
        }
        $line++;
    }
    # name the secret by its first characters only
    print STDERR "# $f: secret " . substr($_, 0, 6) . "... first at $hit{$_}\n"
        for sort keys %hit;
    ok t_cmp($n // 0, 0, "$f: no secret or key of secrets.txt");
}
