# What an admin sees when the configuration is wrong: httpd refuses to
# start and says which directive and why (a bad value, a directive in the
# wrong context, mod_dbd not loaded), and a writers' mutex that cannot
# queue writers fairly (Mutex fcntl/flock) draws a notice at startup.
#
# Each case is a small httpd configuration of its own, run with this
# suite's httpd, MPM and module (TB_SO): 'httpd -t' for what the parser
# checks, a real start (and stop) for what post_config checks.
use strict;
use warnings FATAL => 'all';

use Apache::Test;
use Apache::TestUtil;
use File::Path ();
use IO::Socket::INET ();
use Time::HiRes ();

my $vars  = Apache::Test::vars();
my $httpd = $vars->{httpd};
my $so    = $ENV{TB_SO} or die "TB_SO must name the module under test\n";
my $dir   = "$vars->{t_logs}/startup";

# The MPM and the modules the suite loads (t/setup/httpd-MPM.conf), with
# or without mod_dbd.
my @modules = do {
    open my $fh, '<', $vars->{httpd_conf} or die "$vars->{httpd_conf}: $!";
    grep { /^\s*LoadModule\s/ } <$fh>;
};
my @no_dbd = grep { !/\bdbd_module\b/ } @modules;
die "no LoadModule lines in $vars->{httpd_conf}\n" unless @modules;

# Parser errors: [directive line, where, text the error must hold]
my @bad = (
    ['TrackBatchMaxCommands 0', 'location',
     "TrackBatchMaxCommands: '0' is not a whole number from 1 to 100000"],
    ['TrackBatchMaxCommands 5x', 'location',
     "TrackBatchMaxCommands: '5x' is not a whole number from 1 to 100000"],
    ['TrackBatchBusyTimeout -1', 'location',
     "TrackBatchBusyTimeout: '-1' is not a whole number from 0 to 600000"],
    ['TrackBatchRetryAfter 86401', 'location',
     "TrackBatchRetryAfter: '86401' is not a whole number from 1 to 86400"],
    ['TrackBatchDedupWindow 7776001', 'location',
     "TrackBatchDedupWindow: '7776001' is not a whole number from 0 to "
     . "7776000"],
    ['TrackBatchCustomerId registered maybe', 'location',
     "TrackBatchCustomerId: 'maybe' must be 'hard' or 'soft'"],
    ['TrackBatchCustomerId "e mail" soft', 'location',
     "TrackBatchCustomerId: id name 'e mail' may hold only letters, digits, "
     . "'_', '-' and '.'"],
    ["TrackBatchCustomerId registered hard\n    "
     . 'TrackBatchCustomerId registered soft', 'location',
     "TrackBatchCustomerId: id 'registered' is configured twice"],
    ['TrackBatchCorsOrigin example.com', 'location',
     "TrackBatchCorsOrigin: 'example.com' is not an origin "
     . '(scheme://host[:port]) or *'],
    ['TrackBatchRateLimit everyone 10 60', 'location',
     "TrackBatchRateLimit: 'everyone' must be 'address' or 'key'"],
    ['TrackBatchRateLimit address 10 0', 'location',
     "TrackBatchRateLimit: '0' is not a whole number from 1 to 86400"],
    ['TrackBatchKeyCacheTTL 3601', 'server',
     "TrackBatchKeyCacheTTL: '3601' is not a whole number from 0 to 3600"],
    ['TrackBatchKeyCacheTTL 5', 'location',
     'TrackBatchKeyCacheTTL not allowed in <Location> context'],
);

plan tests => 2 * @bad + 2 + 2 + 3 + 3;

File::Path::rmtree($dir);
File::Path::mkpath("$dir/run");

my $n = 0;
sub free_port {
    my $s = IO::Socket::INET->new(Listen => 1, LocalAddr => '127.0.0.1',
                                  LocalPort => 0) or die "listen: $!";
    return $s->sockport;
}

# A configuration: the modules (mod_dbd and the DBD lines unless dbd =>
# 0), one server on a free port, the module's location, and the lines
# given as server => and location =>.
sub conf {
    my (%o) = @_;
    my $name = 'c' . ++$n;
    my $port = free_port();
    my $loc  = $o{location} // '';
    my $srv  = $o{server} // '';
    my $dbd  = $o{dbd} // 1;
    my $mods = join '', $dbd ? @modules : @no_dbd;
    my $dbd_lines = $dbd
        ? qq{DBDriver sqlite3\nDBDParams "$dir/$name.sqlite"} : '';
    my $text = <<"EOF";
ServerRoot "$dir"
ServerName 127.0.0.1
Listen 127.0.0.1:$port
PidFile "$dir/$name.pid"
DefaultRuntimeDir "$dir/run"
ErrorLog "$dir/$name.log"
LogLevel warn
TypesConfig /dev/null
$mods
LoadModule track_batch_module "$so"
StartServers 1
$dbd_lines
$srv
<Location /track>
    SetHandler track-batch
    $loc
</Location>
EOF
    t_write_file("$dir/$name.conf", $text);
    return ("$dir/$name.conf", "$dir/$name.log", "$dir/$name.pid", $port);
}

sub run_httpd {
    my @cmd = @_;
    my $out = qx{@cmd 2>&1};
    return ($? >> 8, $out // '');
}

sub slurp {
    my $f = shift;
    open my $fh, '<', $f or return '';
    local $/;
    return <$fh>;
}

# 'httpd -t': refused, naming the directive and why
for my $case (@bad) {
    my ($line, $where, $want) = @$case;
    my ($conf) = conf($where => $line);
    my ($rc, $out) = run_httpd($httpd, '-t', '-f', $conf);
    ok t_cmp($rc, qr/^[1-9]/, "httpd -t refuses '$line' ($where)");
    ok t_cmp(index($out, $want) >= 0 ? $want : $out, $want,
             "... and says why");
}

# the same configuration with valid values passes
{
    my ($conf) = conf(location => "TrackBatchMaxCommands 100000\n"
                      . "    TrackBatchRateLimit address 10 60\n"
                      . "    TrackBatchCustomerId email_id soft",
                      server => 'TrackBatchKeyCacheTTL 0');
    my ($rc, $out) = run_httpd($httpd, '-t', '-f', $conf);
    ok t_cmp($rc, 0, 'httpd -t accepts the valid values');
    ok t_cmp($out, qr/Syntax OK/, '... Syntax OK');
}

# mod_dbd missing: the parser cannot tell (DBDriver is then unknown, so
# leave it out); post_config refuses to start and says what to load
{
    my ($conf, $log) = conf(dbd => 0);
    my ($rc, $out) = run_httpd($httpd, '-f', $conf, '-k', 'start');
    my $said = $out . slurp($log);
    ok t_cmp($rc, qr/^[1-9]/, 'without mod_dbd httpd does not start');
    ok t_cmp($said, qr/TB00009: mod_track_batch needs mod_dbd: add 'LoadModule dbd_module/,
             '... and names the module to load');
}

# Start, wait until it accepts connections, stop; the log.
sub start_and_stop {
    my (%o) = @_;
    my ($conf, $log, $pid, $port) = conf(%o);
    my ($rc, $out) = run_httpd($httpd, '-f', $conf, '-k', 'start');
    my $up = 0;
    for (1 .. 100) {
        my $s = IO::Socket::INET->new(PeerAddr => "127.0.0.1:$port",
                                      Timeout => 1);
        if ($s) { $up = 1; close $s; last }
        Time::HiRes::sleep(0.1);
    }
    run_httpd($httpd, '-f', $conf, '-k', 'stop');
    for (1 .. 100) { last unless -e $pid; Time::HiRes::sleep(0.1) }
    return ($rc, $up, slurp($log));
}

# Mutex fcntl: it starts, with a notice naming the fix
{
    my ($rc, $up, $log) = start_and_stop(
        server => "Mutex fcntl:$dir/run track-batch-write",
        location => 'TrackBatchAuth Off');
    ok t_cmp($rc, 0, 'Mutex fcntl: httpd starts');
    ok $up;
    ok t_cmp($log, qr/TB00022: Mutex track-batch-write uses fcntl, which can only poll for a timed lock.*'Mutex pthread track-batch-write' lets them queue/,
             '... with a notice naming the mechanism and the fix');
}

# Mutex pthread (conf/track_batch.conf): no notice
{
    my ($rc, $up, $log) = start_and_stop(
        server => 'Mutex pthread track-batch-write',
        location => 'TrackBatchAuth Off');
    ok t_cmp($rc, 0, 'Mutex pthread: httpd starts');
    ok $up;
    ok t_cmp($log =~ /TB00022/ ? 'notice' : 'none', 'none',
             '... without the notice');
}
