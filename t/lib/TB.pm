package TB;
# Helpers for the mod_track_batch Apache::Test suite: requests, JSON, and
# direct reads of the SQLite database the server writes.
use strict;
use warnings FATAL => 'all';

use Exporter 'import';
use DBI;
use JSON::PP ();
use Apache::Test ();
use Apache::TestRequest ();

our @EXPORT_OK = qw(post_json post_raw decode db db_counts db_clear
                    raw_http batch_url json);

my $JSON = JSON::PP->new->canonical(1)->allow_nonref(1);

sub json   { $JSON }
sub decode { my $t = shift; my $v = eval { $JSON->decode($t) }; return $v }

sub batch_url {
    my ($project, $route, $prefix) = @_;
    $route  ||= 'batch';
    $prefix ||= '';
    return "$prefix/track/v2/projects/$project/$route";
}

# POST a Perl structure (or a string, sent as is) as application/json.
sub post_json {
    my ($url, $body, %headers) = @_;
    $body = $JSON->encode($body) if ref $body;
    return Apache::TestRequest::POST($url,
        'Content-Type' => 'application/json', %headers, content => $body);
}

sub post_raw {
    my ($url, $body, %headers) = @_;
    return Apache::TestRequest::POST($url, %headers, content => $body);
}

sub db_path {
    my $vars = Apache::Test::config()->{vars};
    return "$vars->{t_dir}/db/track.sqlite";
}

sub db {
    my $dbh = DBI->connect('dbi:SQLite:dbname=' . db_path(), '', '',
                           { RaiseError => 1, AutoCommit => 1,
                             sqlite_unicode => 0 });
    $dbh->sqlite_busy_timeout(10000);
    # the shipped schema file must be valid SQL, and idempotent
    open my $fh, '<', Apache::Test::config()->{vars}->{top_dir} . '/schema/sqlite.sql'
        or die "schema/sqlite.sql: $!";
    my $sql = do { local $/; <$fh> };
    $dbh->do($_) for grep { /\S/ } map { s/--[^\n]*//gr } split /;\n/, $sql;
    return $dbh;
}

my @TABLES = qw(tb_events tb_customer_updates tb_customer_properties
                tb_customer_ids tb_customers);

# Row counts of every table, as a hash.
sub db_counts {
    my $dbh = db();
    my %n;
    for my $t (@TABLES) {
        ($n{$t}) = $dbh->selectrow_array("SELECT count(*) FROM $t");
    }
    return \%n;
}

sub db_clear {
    my $dbh = db();
    $dbh->do("DELETE FROM $_") for @TABLES;
}

# Send bytes over a plain socket and return everything the server says
# until it closes (or the timeout passes).  Pieces may be given with
# pauses between them.
sub raw_http {
    my (%a) = @_;
    require IO::Socket::INET;
    my $cfg  = Apache::Test::config();
    my $sock = IO::Socket::INET->new(PeerAddr => $cfg->{vars}->{servername},
                                     PeerPort => $cfg->{vars}->{port},
                                     Timeout  => 10) or die "connect: $!";
    $sock->autoflush(1);
    for my $piece (@{ $a{pieces} }) {
        if (ref $piece) { select(undef, undef, undef, $$piece); next }
        print $sock $piece;
    }
    shutdown($sock, 1) if $a{half_close};
    my $out = '';
    my $deadline = time + ($a{timeout} || 10);
    while (time < $deadline) {
        my $rin = '';
        vec($rin, fileno($sock), 1) = 1;
        last unless select($rin, undef, undef, 1);
        my $n = sysread($sock, my $buf, 65536);
        last unless $n;
        $out .= $buf;
    }
    close $sock;
    return $out;
}

1;

package TB;

# Run track-batch-admin against the test database; returns its key=value
# lines as a hash (plus 'out' and 'status').  Keys and secrets it prints
# are appended to t/db/secrets.txt, one per line.
sub admin {
    my @args = @_;
    my $bin = $ENV{TB_ADMIN} or die "TB_ADMIN is not set (use t/run-suite)";
    my $db  = db_path();
    my $out = qx{"$bin" -p "$db" @{[ map { "'$_'" } @args ]} 2>/dev/null};
    my %h = (out => $out, status => $? >> 8);
    for (split /\n/, $out) { $h{$1} = $2 if /^(\w+)=(.*)$/ }
    # every key and secret handed out, for t/track/99_no_secrets.t
    my @cred = grep { defined && length } @h{qw(key secret)};
    if (@cred) {
        my $file = Apache::Test::config()->{vars}->{t_dir} . '/db/secrets.txt';
        open my $fh, '>>', $file or die "$file: $!";
        print $fh "$_\n" for @cred;
        close $fh or die "$file: $!";
    }
    return \%h;
}

sub basic {
    my ($id, $secret) = @_;
    require MIME::Base64;
    return 'Basic ' . MIME::Base64::encode_base64("$id:$secret", '');
}

push @EXPORT_OK, qw(admin basic);

1;
