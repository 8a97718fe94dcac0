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
# lines as a hash (plus 'out' and 'status').
sub admin {
    my @args = @_;
    my $bin = $ENV{TB_ADMIN} or die "TB_ADMIN is not set (use t/run-suite)";
    my $db  = db_path();
    my $out = qx{"$bin" -p "$db" @{[ map { "'$_'" } @args ]} 2>/dev/null};
    my %h = (out => $out, status => $? >> 8);
    for (split /\n/, $out) { $h{$1} = $2 if /^(\w+)=(.*)$/ }
    return \%h;
}

sub basic {
    my ($id, $secret) = @_;
    require MIME::Base64;
    return 'Basic ' . MIME::Base64::encode_base64("$id:$secret", '');
}

push @EXPORT_OK, qw(admin basic);
# ------------------------------------------------------------------------
# Added for the request-level validation tests (t/track/1*.t): exact answer
# texts, row counts as one comparable line, and one check per request.

use Apache::TestUtil ();
use Test ();

push @EXPORT_OK, qw(jstr norm_times rows db_rows error_body batch_body
                    res_ok res_err res_time check_request raw_request
                    CHECKS_PER_REQUEST);

# A string as the module quotes it (tb_sb_add_jstr): only '"', '\' and
# control characters are escaped, '/' and non-ASCII bytes are not.
sub jstr {
    my $s = shift;
    my %e = ('"' => '\\"', '\\' => '\\\\', "\n" => '\\n', "\r" => '\\r',
             "\t" => '\\t', "\b" => '\\b', "\f" => '\\f');
    $s =~ s{(["\\\x00-\x1f])}{$e{$1} // sprintf('\\u%04x', ord $1)}ge;
    return qq{"$s"};
}

# Every time value ("time", "start_time", "end_time") replaced by T, so
# an answer can be compared as text.
sub norm_times {
    my $t = shift;
    return undef unless defined $t;
    $t =~ s/("(?:time|start_time|end_time)": )\d+\.\d{6}(?=[,}])/${1}T/g;
    return $t;
}

my @ROWS = (customers  => 'tb_customers',
            ids        => 'tb_customer_ids',
            events     => 'tb_events',
            updates    => 'tb_customer_updates',
            properties => 'tb_customer_properties');

# Expected row counts as one line: rows(events => 1, ids => 1, ...);
# tables not named hold no rows.
sub rows {
    my %e = @_;
    my @out;
    for (my $i = 0; $i < @ROWS; $i += 2) {
        push @out, "$ROWS[$i]=" . ($e{ $ROWS[$i] } || 0);
        delete $e{ $ROWS[$i] };
    }
    die "rows(): unknown table(s) @{[ keys %e ]}" if %e;
    return join ' ', @out;
}

# The row counts the database holds now, as rows() writes them.
sub db_rows {
    my $n = db_counts();
    my %h;
    for (my $i = 0; $i < @ROWS; $i += 2) {
        $h{ $ROWS[$i] } = $n->{ $ROWS[ $i + 1 ] };
    }
    return rows(%h);
}

# {"success": false, "errors": ["text"]} as the module writes it.
sub error_body {
    return '{"success": false, "errors": [' . join(', ', map { jstr($_) } @_)
           . "]}\n";
}

# One result of a batch answer (times as T).  $cid is the command_id as
# the answer should hold it, as JSON text: '"abc"' or '42'.
sub _cid { defined $_[0] ? ', "command_id": ' . $_[0] : '' }
sub res_ok   { '{"success": true' . _cid($_[0]) . '}' }
sub res_time { '{"success": true, "time": T' . _cid($_[0]) . '}' }
sub res_err  {
    my ($errors, $cid) = @_;
    return '{"success": false, "errors": ['
           . join(', ', map { jstr($_) } @$errors) . ']' . _cid($cid) . '}';
}

# The whole batch answer for these results (times as T).
sub batch_body {
    return '{"results": [' . join(', ', @_)
           . '], "start_time": T, "end_time": T, "success": true}' . "\n";
}

use constant CHECKS_PER_REQUEST => 4;

# Check one answer: status, JSON Content-Type, exact body (times as T
# unless raw_body), and the row counts the database holds afterwards.
# Runs CHECKS_PER_REQUEST tests.  The answer is an HTTP::Response or a
# hash from raw_request().  With TB_SHOW=1 in the environment a body that
# differs is printed as got/want comment lines.
sub check_request {
    my (%a) = @_;
    my $r = $a{res};
    my ($code, $ct, $body) = ref $r eq 'HASH'
        ? ($r->{code}, $r->{headers}{'content-type'}, $r->{body})
        : ($r->code, scalar $r->header('Content-Type'), $r->content);
    my $name = $a{name} || 'request';
    $body = norm_times($body) unless $a{raw_body};
    Test::ok(Apache::TestUtil::t_cmp($code, $a{status}, "$name: status"));
    Test::ok(Apache::TestUtil::t_cmp($ct, 'application/json',
                                     "$name: Content-Type"));
    Test::ok(Apache::TestUtil::t_cmp($body, $a{body}, "$name: body"));
    Test::ok(Apache::TestUtil::t_cmp(db_rows(), $a{rows}, "$name: rows"));
    if (($ENV{TB_SHOW} || 0) && ($body // '') ne $a{body}) {
        print "# $name\n#   got:  $body#   want: $a{body}";
    }
    return $r;
}

# A request written byte for byte over a socket (for what LWP would not
# send, e.g. a POST without Content-Type).  Returns {code, headers (lower-
# cased names), body}.
sub raw_request {
    my ($method, $url, $body, @headers) = @_;
    my $cfg = Apache::Test::config();
    my $req = "$method $url HTTP/1.1\r\n"
            . "Host: $cfg->{vars}->{servername}:$cfg->{vars}->{port}\r\n"
            . "Connection: close\r\n";
    while (my ($k, $v) = splice @headers, 0, 2) {
        $req .= "$k: $v\r\n";
    }
    # a caller sending Transfer-Encoding gives the body already encoded
    $req .= 'Content-Length: ' . length($body) . "\r\n"
        if defined $body && $req !~ /^Transfer-Encoding:/mi;
    $req .= "\r\n" . ($body // '');
    my $out = raw_http(pieces => [$req]);
    my ($head, $rest) = split /\r\n\r\n/, $out, 2;
    my %res = (headers => {}, body => $rest);
    my @lines = split /\r\n/, $head // '';
    ($res{code}) = (shift(@lines) // '') =~ m{^HTTP/1\.\d (\d{3})};
    for (@lines) {
        my ($k, $v) = /^([^:]+):\s*(.*)$/ or next;
        $res{headers}{ lc $k } = $v;
    }
    return \%res;
}

1;
