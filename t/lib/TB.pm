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

our @EXPORT_OK = qw(engine post_json post_raw decode db db_connect db_counts db_clear
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

# Which engine the server under test records into (t/run-suite sets it).
sub engine { return ($ENV{TB_DBD_DRIVER} || 'sqlite3') eq 'pgsql' ? 'pgsql' : 'sqlite' }

sub db {
    my $dbh = db_connect();
    # the shipped schema file must be valid SQL, and idempotent
    my $file = engine() eq 'pgsql' ? 'pgsql.sql' : 'sqlite.sql';
    open my $fh, '<', Apache::Test::config()->{vars}->{top_dir} . "/schema/$file"
        or die "schema/$file: $!";
    my $sql = do { local $/; <$fh> };
    if (engine() eq 'pgsql') {
        local $dbh->{PrintWarn} = 0;
        $dbh->do('SELECT pg_advisory_lock(7462626174)');
        $dbh->do($sql);
        $dbh->do('SELECT pg_advisory_unlock(7462626174)');
    }
    else {
        $dbh->do($_) for grep { /\S/ } map { s/--[^\n]*//gr } split /;\n/, $sql;
    }
    return $dbh;
}

# A handle on the database under test, without running the schema file
# (db() runs it: DDL that a test must not mix into a load of its own).
sub db_connect {
    my $dbh;
    if (engine() eq 'pgsql') {
        my %p = map { split /=/, $_, 2 } split ' ', $ENV{TB_DBD_PARAMS};
        my $user = delete $p{user} || '';
        delete $p{$_} for qw(connect_timeout options keepalives);
        $dbh = DBI->connect('dbi:Pg:' . join(';', map { "$_=$p{$_}" } sort keys %p),
                            $user, '', { RaiseError => 1, AutoCommit => 1,
                                         PrintWarn => 0, pg_enable_utf8 => 0 });
    }
    else {
        $dbh = DBI->connect('dbi:SQLite:dbname=' . db_path(), '', '',
                            { RaiseError => 1, AutoCommit => 1,
                              sqlite_unicode => 0 });
        $dbh->sqlite_busy_timeout(10000);
    }
    return $dbh;
}

my @TABLES = qw(tb_command_log tb_events tb_customer_updates tb_customer_properties
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
    my $db  = engine() eq 'pgsql' ? $ENV{TB_DBD_PARAMS} : db_path();
    my $out = qx{"$bin" -d @{[ engine() eq 'pgsql' ? 'pgsql' : 'sqlite3' ]} -p "$db" @{[ map { "'$_'" } @args ]} 2>/dev/null};
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
# ---------------------------------------------------------------------
# Helpers added for the body, limit, timeout and database-fault tests
# (t/track/2*.t, t/track/3*.t).  Nothing above is changed.

# "host:port" of a <VirtualHost name> from extra.conf.in, or of the main
# server when no name is given.
sub hostport_of {
    my $name = shift;
    my $cfg  = Apache::Test::config();
    return join ':', $cfg->{vars}->{servername}, $cfg->{vars}->{port}
        unless $name;
    my $hp = $cfg->{vhosts}->{$name}->{hostport}
        or die "no <VirtualHost $name> in the test configuration\n";
    return $hp;
}

# Like raw_http, but reads until the server closes the connection (or
# `timeout` seconds in all pass), however long the server is silent, and
# says how it ended:
#   { raw => bytes, eof => 1 if the server closed, elapsed => seconds,
#     write_error => first failed write (the server closed early) }
# Options: hostport (default: main server), pieces (strings, or \seconds
# to pause), timeout (default 20), half_close, stop_on_reply (during a
# pause, stop sending once the server has said something: for trickling).
sub http_conn {
    my (%a) = @_;
    require IO::Socket::INET;
    require Time::HiRes;
    my $hp = $a{hostport} || hostport_of();
    my $t0 = Time::HiRes::time();
    my $sock = IO::Socket::INET->new(PeerAddr => $hp, Timeout => 10)
        or die "connect $hp: $!";
    $sock->autoflush(1);
    local $SIG{PIPE} = 'IGNORE';
    my %res = (raw => '', eof => 0);
    for my $piece (@{ $a{pieces} || [] }) {
        if (ref $piece) {
            if ($a{stop_on_reply}) {
                my $rin = '';
                vec($rin, fileno($sock), 1) = 1;
                if (select(my $rout = $rin, undef, undef, $$piece)) {
                    $res{stopped} = 1;
                    last;
                }
            }
            else {
                Time::HiRes::sleep($$piece);
            }
            next;
        }
        my $off = 0;
        while ($off < length $piece) {
            my $n = syswrite($sock, $piece, length($piece) - $off, $off);
            if (!defined $n) { $res{write_error} = "$!"; last }
            $off += $n;
        }
        last if $res{write_error};
    }
    shutdown($sock, 1) if $a{half_close} && !$res{write_error};
    my $deadline = $t0 + ($a{timeout} || 20);
    while ((my $left = $deadline - Time::HiRes::time()) > 0) {
        my $rin = '';
        vec($rin, fileno($sock), 1) = 1;
        next unless select(my $rout = $rin, undef, undef, $left);
        my $n = sysread($sock, my $buf, 65536);
        if (!$n) { $res{eof} = 1; $res{read_error} = "$!" unless defined $n; last }
        $res{raw} .= $buf;
    }
    $res{elapsed} = Time::HiRes::time() - $t0;
    close $sock;
    return \%res;
}

# Split what a server sent into its responses:
#   ({ status => 200, reason => 'OK', headers => { lc name => value },
#      body => bytes }, ...)
# Bodies are delimited by Content-Length (or chunked coding); anything
# unparsable ends the list, and is returned under `rest` of the last one.
sub parse_responses {
    my ($raw) = @_;
    my @out;
    while (length $raw) {
        last unless $raw =~ s{\AHTTP/1\.[01] (\d{3}) ?([^\r\n]*)\r\n((?:[^\r\n]+\r\n)*)\r\n}{}s;
        my %r = (status => $1, reason => $2, headers => {});
        for (split /\r\n/, $3) {
            my ($k, $v) = /\A([^:]+):\s*(.*)\z/ or next;
            $r{headers}{lc $k} = $v;
        }
        if (defined(my $cl = $r{headers}{'content-length'})) {
            $r{body} = substr($raw, 0, $cl, '');
        }
        elsif (($r{headers}{'transfer-encoding'} || '') =~ /chunked/i) {
            $r{body} = '';
            while ($raw =~ s/\A([0-9a-fA-F]+)[^\r\n]*\r\n//) {
                my $n = hex $1;
                $r{body} .= substr($raw, 0, $n, '');
                $raw =~ s/\A\r\n//;
                if ($n == 0) { $raw =~ s/\A(?:[^\r\n]+\r\n)*\r\n//; last }
            }
        }
        else {
            $r{body} = $raw;
            $raw = '';
        }
        push @out, \%r;
    }
    $out[-1]{rest} = $raw if @out && length $raw;
    return @out;
}

# A raw HTTP/1.1 request.  $body undef: no body.  Headers are pairs, sent
# in order; Host is added unless given; Content-Length is added for a body
# unless Content-Length or Transfer-Encoding is among the headers.
sub http_request {
    my ($method, $path, $body, @h) = @_;
    my %seen;
    for (my $i = 0; $i < @h; $i += 2) { $seen{lc $h[$i]} = 1 }
    unshift @h, Host => hostport_of() unless $seen{host};
    push @h, 'Content-Length' => length $body
        if defined $body && !$seen{'content-length'}
           && !$seen{'transfer-encoding'};
    my $head = "$method $path HTTP/1.1\r\n";
    for (my $i = 0; $i < @h; $i += 2) { $head .= "$h[$i]: $h[$i + 1]\r\n" }
    return $head . "\r\n" . (defined $body ? $body : '');
}

# POST a body (application/json) to a server by "host:port" (see
# hostport_of) on a connection of its own; returns the first response of
# parse_responses, with `count` (responses seen) and `elapsed` added.
sub post_at {
    my ($hostport, $path, $body, @h) = @_;
    my $c = http_conn(hostport => $hostport, timeout => 30, pieces => [
        http_request('POST', $path, $body, Host => $hostport,
                     'Content-Type' => 'application/json',
                     Connection => 'close', @h) ]);
    my @r = parse_responses($c->{raw});
    my $r = $r[0] || { status => 'none', headers => {}, body => '' };
    $r->{count} = @r;
    $r->{elapsed} = $c->{elapsed};
    return $r;
}

# Chunked coding of the given pieces, each one chunk, with the last chunk.
sub chunked {
    return join('', map { sprintf("%x\r\n%s\r\n", length $_, $_) }
                    grep { length } @_) . "0\r\n\r\n";
}

# A DBI handle on another SQLite file (a <VirtualHost>'s own database),
# bytes in and out, without running the schema.
sub db_file {
    my ($path) = @_;
    my $dbh = DBI->connect("dbi:SQLite:dbname=$path", '', '',
                           { RaiseError => 1, AutoCommit => 1,
                             sqlite_unicode => 0 });
    $dbh->sqlite_busy_timeout(10000);
    return $dbh;
}

# Create a SQLite file with the shipped schema, as an admin would with
# `sqlite3 FILE < schema/sqlite.sql` (rollback journal, not WAL); returns
# a handle on it.
sub db_create {
    my ($path) = @_;
    my $dbh = db_file($path);
    open my $fh, '<', Apache::Test::config()->{vars}->{top_dir} . '/schema/sqlite.sql'
        or die "schema/sqlite.sql: $!";
    my $sql = do { local $/; <$fh> };
    $dbh->do($_) for grep { /\S/ } map { s/--[^\n]*//gr } split /;\n/, $sql;
    return $dbh;
}

# Everything recorded for one project, as sorted lines of text that do not
# depend on row ids or receipt times: a customer is named by its ids
# ("cookie=x,registered=y").  Times are printed with 6 decimals.
# Returns { events => [...], updates => [...], properties => [...],
#           ids => [...], customers => N }.
sub db_project_rows {
    my ($project, $dbh) = @_;
    $dbh ||= db();
    my $ids = $dbh->selectall_arrayref(
        'SELECT customer_id, id_name, id_value, hard FROM tb_customer_ids
          WHERE project = ? ORDER BY id_name, id_value', undef, $project);
    my %who;
    push @{ $who{$_->[0]} }, "$_->[1]=$_->[2]" for @$ids;
    my $label = sub {
        my $c = shift;
        return $who{$c} ? join(',', sort @{ $who{$c} }) : "customer-without-ids#$c";
    };
    my $t = sub { defined $_[0] ? sprintf('%.6f', $_[0]) : 'NULL' };
    my $s = sub { defined $_[0] ? $_[0] : 'NULL' };
    my %out;
    $out{ids} = [ sort map { join '|', $_->[1], $_->[2], $_->[3],
                             $label->($_->[0]) } @$ids ];
    $out{events} = [ sort map {
        join '|', $label->($_->[0]), $_->[1], $t->($_->[2]), $_->[3],
                  $s->($_->[4]) }
        @{ $dbh->selectall_arrayref(
            'SELECT customer_id, event_type, timestamp, properties, command_id
               FROM tb_events WHERE project = ?', undef, $project) } ];
    $out{updates} = [ sort map {
        join '|', $label->($_->[0]), $_->[1], $t->($_->[2]), $s->($_->[3]) }
        @{ $dbh->selectall_arrayref(
            'SELECT customer_id, properties, update_time, command_id
               FROM tb_customer_updates WHERE project = ?', undef, $project) } ];
    $out{properties} = [ sort map {
        join '|', $label->($_->[0]), $_->[1], $_->[2], $t->($_->[3]) }
        @{ $dbh->selectall_arrayref(
            'SELECT p.customer_id, p.name, p.value, p.updated_at
               FROM tb_customer_properties p
               JOIN tb_customers c ON c.id = p.customer_id
              WHERE c.project = ?', undef, $project) } ];
    ($out{customers}) = $dbh->selectrow_array(
        'SELECT count(*) FROM tb_customers WHERE project = ?', undef, $project);
    return \%out;
}

# The same, empty: what a project with nothing recorded looks like.
sub no_rows {
    return { events => [], updates => [], properties => [], ids => [],
             customers => 0 };
}

# The "results" array of a batch answer as text, exactly as the server
# wrote it (times elsewhere in the answer differ from request to request).
sub results_text {
    my ($body) = @_;
    return undef unless defined $body;
    return $body =~ /\A\{"results": (\[.*\]), "start_time": / ? $1 : undef;
}

# The whole-request error answer for a text, as a pattern matching it
# exactly (a final newline allowed).
sub error_body_re {
    my ($text) = @_;
    return qr/\A\Q{"success": false, "errors": ["$text"]}\E\n?\z/;
}

push @TB::EXPORT_OK, qw(hostport_of http_conn parse_responses http_request
                        post_at chunked db_file db_create db_project_rows no_rows
                        results_text error_body_re);
# ---------------------------------------------------------------------
# Helpers added for the identity, convergence and deduplication tests
# (t/track/7*.t).  Nothing above is changed.  Database reads use only
# portable SQL through db(), so they hold for SQLite and PostgreSQL alike;
# values and times are compared in Perl (JSON decoded, times as numbers).

package TB;

# A customers/events command: ids (a hash), event type, then more fields
# of "data" (timestamp, properties) and of the command (command_id).
sub ev {
    my ($ids, $type, %a) = @_;
    my %cmd = (name => 'customers/events');
    $cmd{command_id} = delete $a{command_id} if exists $a{command_id};
    $cmd{data} = { customer_ids => $ids, event_type => $type, %a };
    return \%cmd;
}

# A customers command: ids, properties, then more fields as for ev().
sub cu {
    my ($ids, $props, %a) = @_;
    my %cmd = (name => 'customers');
    $cmd{command_id} = delete $a{command_id} if exists $a{command_id};
    $cmd{data} = { customer_ids => $ids, properties => $props, %a };
    return \%cmd;
}

# POST a batch (an array of commands, or a body string sent as is) and
# return the answer with its results as one line of text: each result is
# "ok" or its errors joined by " + ", with " #command_id" when one came
# back; results joined by " | ".  Anything but a 200 batch answer gives
# "HTTP <code>: <body>".
sub send_batch {
    my ($url, $cmds, @h) = @_;
    my $r = post_json($url, ref $cmds eq 'ARRAY' ? { commands => $cmds }
                                                  : $cmds, @h);
    return ($r, results_line($r->code, $r->content));
}

sub results_line {
    my ($code, $body) = @_;
    my $a = $code == 200 ? decode($body) : undef;
    return "HTTP $code: " . ($body // '')
        unless $a && ref $a->{results} eq 'ARRAY';
    return join ' | ', map {
        ($_->{success} ? 'ok' : join(' + ', @{ $_->{errors} || [] }))
        . (exists $_->{command_id} ? " #$_->{command_id}" : '')
    } @{ $a->{results} };
}

# The profile an id names now, or undef.
sub customer_of {
    my ($project, $name, $value, $dbh) = @_;
    $dbh ||= db();
    my ($c) = $dbh->selectrow_array(
        'SELECT customer_id FROM tb_customer_ids
          WHERE project = ? AND id_name = ? AND id_value = ?',
        undef, $project, $name, $value);
    return $c;
}

# How many profiles a project has.
sub customers_in {
    my ($project, $dbh) = @_;
    $dbh ||= db();
    my ($n) = $dbh->selectrow_array(
        'SELECT count(*) FROM tb_customers WHERE project = ?', undef, $project);
    return $n;
}

# One profile as plain data:
#   exists  => 1 if its tb_customers row is there
#   ids     => "name=value,..." sorted ("" when none)
#   events  => [ "type|properties" ... ] sorted, properties re-encoded
#              canonically (the timestamp is left out; see events_full)
#   events_full => [ [type, timestamp, properties (decoded), command_id] ]
#   updates => number of tb_customer_updates rows
#   props   => { name => [ value (decoded), updated_at ] }
sub profile {
    my ($cid, $dbh) = @_;
    $dbh ||= db();
    my %p;
    ($p{exists}) = $dbh->selectrow_array(
        'SELECT count(*) FROM tb_customers WHERE id = ?', undef, $cid);
    $p{ids} = join ',', sort map { "$_->[0]=$_->[1]" } @{ $dbh->selectall_arrayref(
        'SELECT id_name, id_value FROM tb_customer_ids WHERE customer_id = ?',
        undef, $cid) };
    my $ev = $dbh->selectall_arrayref(
        'SELECT event_type, timestamp, properties, command_id FROM tb_events
          WHERE customer_id = ? ORDER BY id', undef, $cid);
    $p{events_full} = [ map { [ $_->[0], $_->[1], decode($_->[2]), $_->[3] ] } @$ev ];
    $p{events} = [ sort map { "$_->[0]|" . $JSON->encode($_->[2]) }
                   @{ $p{events_full} } ];
    ($p{updates}) = $dbh->selectrow_array(
        'SELECT count(*) FROM tb_customer_updates WHERE customer_id = ?',
        undef, $cid);
    $p{props} = { map { $_->[0] => [ decode($_->[1]), $_->[2] ] }
                  @{ $dbh->selectall_arrayref(
                      'SELECT name, value, updated_at FROM tb_customer_properties
                        WHERE customer_id = ?', undef, $cid) } };
    return \%p;
}

# A profile's properties as one line, "a=<json>@<time>;b=..." sorted by
# name; times with 6 decimals, or the word given in %as for a name
# (to hide a receipt time, say).
sub props_line {
    my ($props, %as) = @_;
    return join ';', map {
        "$_=" . $JSON->encode($props->{$_}[0]) . '@'
        . ($as{$_} // sprintf('%.6f', $props->{$_}[1]))
    } sort keys %$props;
}

push @TB::EXPORT_OK, qw(ev cu send_batch results_line customer_of
                        customers_in profile props_line);
# Helpers added for the PostgreSQL restart and crash tests (t/track/8*.t).
# Nothing above is changed.  They act on the throwaway cluster t/run-suite
# starts (TB_PG_BIN, TB_PG_DATA), which belongs to the test user.

# Run pg_ctl with these arguments; its output goes to $TB_PG_DATA/../pg_ctl.log.
# Returns its exit status (0: done).
sub pg_ctl {
    my @args = @_;
    require POSIX;
    my $bin  = $ENV{TB_PG_BIN}  or die "TB_PG_BIN is not set (use t/run-suite)";
    my $data = $ENV{TB_PG_DATA} or die "TB_PG_DATA is not set (use t/run-suite)";
    my $log  = "$data/../pg_ctl.log";
    my $pid = fork // die "fork: $!";
    if (!$pid) {
        open STDIN, '<', '/dev/null';
        open STDOUT, '>>', $log or POSIX::_exit(127);
        open STDERR, '>&', \*STDOUT;
        { exec "$bin/pg_ctl", "-D", $data, @args }
        POSIX::_exit(127);
    }
    waitpid $pid, 0;
    return $? >> 8;
}

# The PostgreSQL server's connections from others than this process
# (the test server's pooled connections, mostly).
sub pg_client_conns {
    my $dbh = db();
    my ($n) = $dbh->selectrow_array(
        "SELECT count(*) FROM pg_stat_activity
          WHERE backend_type = 'client backend' AND datname = current_database()
            AND pid <> pg_backend_pid()");
    $dbh->disconnect;
    return $n;
}

# `pg_ctl -m fast restart -w`: returns [exit status, seconds taken].
sub pg_restart {
    require Time::HiRes;
    my $t0 = Time::HiRes::time();
    my $rc = pg_ctl('-m', 'fast', '-w', '-t', '60', 'restart');
    return [$rc, Time::HiRes::time() - $t0];
}

sub _pid_alive {
    my $pid = shift;
    open my $fh, '<', "/proc/$pid/stat" or return 0;
    my $stat = <$fh> // '';
    # a zombie has died already
    return $stat =~ /\)\s+Z\s/ ? 0 : 1;
}

# kill -9 of the postmaster (its pid from postmaster.pid); waits until it
# is gone, keeps the server down for $down more seconds, then starts it
# as it was started (postmaster.opts), retrying while the old backends,
# orphaned, still hold its shared memory.  Returns [exit status of the
# last pg_ctl start, seconds from the kill until the server is back,
# the pid killed].
sub pg_kill9_start {
    my ($down) = @_;
    require Time::HiRes;
    my $data = $ENV{TB_PG_DATA} or die "TB_PG_DATA is not set (use t/run-suite)";
    open my $fh, '<', "$data/postmaster.pid" or die "$data/postmaster.pid: $!";
    chomp(my $pid = <$fh> // '');
    close $fh;
    die "postmaster.pid: no pid" unless $pid =~ /^\d+$/;
    # postgres "-D" "DIR" "-p" "5432" ...: all but the program and -D DIR
    open $fh, '<', "$data/postmaster.opts" or die "$data/postmaster.opts: $!";
    my $opts = do { local $/; <$fh> };
    close $fh;
    my @w = $opts =~ /"((?:[^"\\]|\\.)*)"/g;
    my @keep;
    for (my $i = 0; $i < @w; $i++) {
        if ($w[$i] eq '-D') { $i++; next }
        push @keep, $w[$i];
    }
    my $o = join ' ', map { my $x = $_; $x =~ s/'/'\\''/g; "'$x'" } @keep;

    my $t0 = Time::HiRes::time();
    kill 'KILL', $pid or die "kill -9 $pid: $!";
    Time::HiRes::sleep(0.02) while _pid_alive($pid) && Time::HiRes::time() < $t0 + 10;
    Time::HiRes::sleep($down) if $down;
    my $rc;
    do {
        $rc = pg_ctl('-w', '-t', '30', '-l', "$data/../log", '-o', $o, 'start');
        Time::HiRes::sleep(0.2) if $rc;
    } while ($rc && Time::HiRes::time() < $t0 + 30);
    return [$rc, Time::HiRes::time() - $t0, $pid];
}

# The cluster's processes: the postmaster (postmaster.pid) and its
# children (backends, checkpointer, ...), from /proc.
sub _pg_pids {
    my $data = $ENV{TB_PG_DATA} or die "TB_PG_DATA is not set (use t/run-suite)";
    open my $fh, '<', "$data/postmaster.pid" or die "$data/postmaster.pid: $!";
    chomp(my $pid = <$fh> // '');
    close $fh;
    die "postmaster.pid: no pid" unless $pid =~ /^\d+$/;
    my @kids;
    for my $stat (glob '/proc/[0-9]*/stat') {
        open my $s, '<', $stat or next;
        my $line = <$s> // '';
        # "pid (comm) state ppid ...": comm may hold spaces and parentheses
        push @kids, $1 if $line =~ /^(\d+) \(.*\) \S+ (\d+) / && $2 == $pid;
    }
    return ($pid, @kids);
}

# SIGSTOP of every process of the cluster for $seconds, then SIGCONT: a
# server that hangs with its sockets open, whose kernel still takes what
# clients send, so no client ever sees an error, a reset or a keepalive
# fail.  The postmaster stops first, so it forks no child that would be
# missed; stopping is repeated until no process is new.  Returns [number of
# processes stopped, seconds from the first stop until they run again].
sub pg_freeze {
    my ($seconds) = @_;
    require Time::HiRes;
    my $t0 = Time::HiRes::time();
    my %stopped;
    for (1 .. 5) {
        my @new = grep { !$stopped{$_} } _pg_pids();
        last unless @new;
        kill 'STOP', @new;
        $stopped{$_} = 1 for @new;
    }
    my $left = $t0 + $seconds - Time::HiRes::time();
    Time::HiRes::sleep($left) if $left > 0;
    kill 'CONT', keys %stopped;
    return [scalar(keys %stopped), Time::HiRes::time() - $t0];
}

# The longest a request may take with PostgreSQL frozen or gone: the
# location's TrackBatchBusyTimeout (ms, default 5000) for the answers,
# connect_timeout of the suite's DBDParams to connect, and 1.5 s of slack
# for everything else.
sub pg_max_wait {
    my ($busy_ms) = @_;
    my ($connect) = ($ENV{TB_DBD_PARAMS} // '') =~ /\bconnect_timeout=(\d+)/;
    die "no connect_timeout in TB_DBD_PARAMS" unless $connect;
    # libpq waits at least 2 s
    return ($busy_ms // 5000) / 1000 + ($connect < 2 ? 2 : $connect) + 1.5;
}

# The 503 the module answers when the database cannot record a request.
use constant UNAVAILABLE_BODY =>
    qq({"success": false, "errors": ["The database could not record the request; retry later."]}\n);

# A batch of $n events, one customer per client, command_ids
# "$tag-$client-$seq-$i" (never sent twice); returns (body, [cids]).
sub load_batch {
    my ($tag, $client, $seq, $n) = @_;
    my @cids = map { "$tag-$client-$seq-$_" } 1 .. $n;
    # events differ (identical events of a customer are recorded once)
    my $body = json()->encode({ commands => [ map { {
        name => 'customers/events', command_id => "$tag-$client-$seq-$_",
        data => { customer_ids => { registered => "$tag-client-$client" },
                  event_type => 'load', timestamp => 1700000000 + $seq + $_ / 100,
                  properties => { seq => $seq, i => $_ } } } } 1 .. $n ] });
    return ($body, \@cids);
}

# One answer summed up: status, Retry-After, Content-Type, whether the body
# is exactly the 503 text, and for a 200 the command_ids answered
# success: true (and whether every command of the batch was).
sub load_record {
    my ($r, $cids) = @_;
    my %rec = (status => $r->{status}, ra => $r->{headers}{'retry-after'},
               ct => $r->{headers}{'content-type'}, cids => $cids);
    if ($r->{status} eq '200') {
        my $v = decode($r->{body});
        my @res = $v && ref $v->{results} eq 'ARRAY' ? @{ $v->{results} } : ();
        $rec{ok_cids} = [ map { $_->{command_id} }
                          grep { ref $_ eq 'HASH' && $_->{success}
                                 && JSON::PP::is_bool($_->{success}) }
                          @res ];
        $rec{all_ok} = (@res == @$cids && @{ $rec{ok_cids} } == @$cids
                        && join("\0", @{ $rec{ok_cids} }) eq join("\0", @$cids)
                        && ($v->{success} ? 1 : 0)) ? 1 : 0;
    }
    elsif ($r->{status} eq '503') {
        $rec{text_ok} = ($r->{body} // '') eq UNAVAILABLE_BODY ? 1 : 0;
    }
    else {
        $rec{body} = substr($r->{body} // '', 0, 300);
    }
    return \%rec;
}

# Load with a fault in the middle.  $a{clients} forked clients each send
# batches of $a{events} events (unique command_ids, never retried) to
# $a{path}, with the headers $a{headers} (a list of pairs, optional), one
# connection per request, one request at a time; a 503 is followed by a
# pause of $a{pause_503} s (default 0.05), not by a retry.
# After $a{before} s the parent runs $a{fault}->(), which returns once the
# server is back; the load goes on $a{after} s more.  Returns
# { records => [ {client, seq, t0, t1, status, ra, ct, cids, ok_cids,
#   all_ok, text_ok, body}... ], t_fault, t_back, fault => what it returned }.
# (pg_load is the name the PostgreSQL fault tests use; nothing in it is
# specific to PostgreSQL.)  Two more options, off by default:
#   keepalive => K   the first K clients keep their connection open across
#                    requests, as SDKs do (a new one when the server closes
#                    it); the others use one connection per request
#   retry => N       a request answered nothing at all (status "none": the
#                    connection failed before a status line) is sent again,
#                    the same batch with the same command_ids, on a new
#                    connection, up to N times
# and more fields in each record: attempt (1 for the first sending of a
# batch), reused (1 if sent on a kept-open connection that had already
# carried a request), partial (bytes of an answer cut off), error.
sub pg_load { return load_run(@_) }

sub load_run {
    my (%a) = @_;
    require Time::HiRes;
    require POSIX;
    my $dir = Apache::Test::config()->{vars}->{t_dir} . '/db';
    my $hp  = hostport_of();
    my $stop = "$dir/load-$a{tag}.stop";
    unlink $stop;
    my $hard_end = Time::HiRes::time() + $a{before} + $a{after} + 60;
    my @kids;
    for my $c (1 .. $a{clients}) {
        my $file = "$dir/load-$a{tag}-$c.jsonl";
        my $pid = fork // die "fork: $!";
        if (!$pid) {
            my $ok = eval {
                open my $out, '>', $file or die "$file: $!";
                $out->autoflush(1);
                my $seq = 0;
                my $ka = $c <= ($a{keepalive} || 0) ? {} : undef;
                while (!-e $stop && Time::HiRes::time() < $hard_end) {
                    $seq++;
                    my ($body, $cids) = load_batch($a{tag}, $c, $seq, $a{events});
                    my ($r, $attempt) = (undef, 0);
                    my @h = @{ $a{headers} || [] };
                    do {
                        $attempt++;
                        my $t0 = Time::HiRes::time();
                        $r = $ka ? ka_post($ka, $hp, $a{path}, $body, @h)
                                 : post_at($hp, $a{path}, $body, @h);
                        my $rec = load_record($r, $cids);
                        @$rec{qw(client seq t0 t1 attempt reused partial error)} =
                            ($c, $seq, $t0, Time::HiRes::time(), $attempt,
                             $r->{reused} ? 1 : 0, $r->{partial} || 0, $r->{error});
                        $rec->{keepalive} = 1 if $ka;
                        print $out json()->encode($rec), "\n";
                    } while ($r->{status} eq 'none' && $attempt <= ($a{retry} || 0));
                    Time::HiRes::sleep($a{pause_503} // 0.05)
                        if $r->{status} ne '200';
                }
                close $ka->{sock} if $ka && $ka->{sock};
                close $out or die "$file: $!";
                1;
            };
            print STDERR "# load client $c: $@" unless $ok;
            POSIX::_exit($ok ? 0 : 1);
        }
        push @kids, [$pid, $file];
    }
    Time::HiRes::sleep($a{before});
    my $t_fault = Time::HiRes::time();
    my $what = $a{fault}->();
    my $t_back = Time::HiRes::time();
    Time::HiRes::sleep($a{after});
    open my $fh, '>', $stop or die "$stop: $!";
    close $fh;
    my @records;
    my $clients_ok = 1;
    for my $k (@kids) {
        waitpid $k->[0], 0;
        $clients_ok = 0 if $?;
        open my $in, '<', $k->[1] or die "$k->[1]: $!";
        push @records, map { json()->decode($_) } <$in>;
    }
    unlink $stop;
    return { records => [ sort { $a->{t0} <=> $b->{t0} } @records ],
             t_fault => $t_fault, t_back => $t_back, fault => $what,
             clients_ok => $clients_ok };
}

# POST on a connection kept open across requests (HTTP/1.1 keep-alive),
# the way SDKs send.  $st holds the connection between calls ({} at
# first); headers as for post_at.  Returns what post_at returns, plus
# reused => 1 when the connection had carried a request before; a
# connection that fails before a whole answer arrives gives status "none"
# with error (and partial => the bytes of an answer cut off), and is
# dropped.  A "Connection: close" answer drops it too.
sub ka_post {
    my ($st, $hp, $path, $body, @h) = @_;
    require IO::Socket::INET;
    require Time::HiRes;
    local $SIG{PIPE} = 'IGNORE';
    my $t0 = Time::HiRes::time();
    my $fail = sub {
        my ($why, $partial) = @_;
        my $reused = $st->{n} ? 1 : 0;
        close $st->{sock} if $st->{sock};
        %$st = ();
        return { status => 'none', headers => {}, body => '', error => $why,
                 reused => $reused, partial => $partial || 0,
                 elapsed => Time::HiRes::time() - $t0 };
    };
    if (!$st->{sock}) {
        $st->{sock} = IO::Socket::INET->new(PeerAddr => $hp, Timeout => 10)
            or return $fail->("connect: $!");
        $st->{n} = 0;
    }
    my $sock = $st->{sock};
    my $req = http_request('POST', $path, $body, Host => $hp,
                           'Content-Type' => 'application/json', @h);
    my $off = 0;
    while ($off < length $req) {
        my $n = syswrite($sock, $req, length($req) - $off, $off);
        return $fail->("write: $!") unless defined $n;
        $off += $n;
    }
    my $buf = '';
    my $deadline = $t0 + 30;
    for (;;) {
        if ($buf =~ /\A(HTTP\/1\.[01] \d{3}[^\r\n]*\r\n(?:[^\r\n]+\r\n)*\r\n)/) {
            my $hlen = length $1;
            my $head = $1;
            my $done;
            if ($head =~ /^Content-Length:\s*(\d+)\r$/mi) {
                $done = length($buf) >= $hlen + $1;
            }
            elsif ($head =~ /^Transfer-Encoding:\s*chunked\r$/mi) {
                $done = $buf =~ /\r\n0\r\n(?:[^\r\n]+\r\n)*\r\n\z/;
            }
            if ($done) {
                my ($r) = parse_responses($buf);
                $r->{count} = 1;
                $r->{reused} = $st->{n} ? 1 : 0;
                $r->{elapsed} = Time::HiRes::time() - $t0;
                $st->{n}++;
                if (($r->{headers}{connection} || '') =~ /close/i
                    || $head =~ /\AHTTP\/1\.0/) {
                    close $sock;
                    %$st = ();
                }
                return $r;
            }
        }
        my $left = $deadline - Time::HiRes::time();
        return $fail->('timeout', length $buf) if $left <= 0;
        my $rin = '';
        vec($rin, fileno($sock), 1) = 1;
        next unless select(my $rout = $rin, undef, undef, $left);
        my $n = sysread($sock, my $chunk, 65536);
        return $fail->(defined $n ? 'closed' : "read: $!", length $buf) unless $n;
        $buf .= $chunk;
    }
}

# command_id => number of rows, in tb_events and in tb_command_log, for the
# events a load test sent (command_ids starting "$tag-").
sub load_rows {
    my ($project, $tag) = @_;
    my $dbh = db();
    my %ev = map { $_->[0] => $_->[1] } @{ $dbh->selectall_arrayref(
        "SELECT command_id, count(*) FROM tb_events
          WHERE project = ? AND command_id LIKE ? GROUP BY command_id",
        undef, $project, "$tag-%") };
    my %log = map { $_->[0] => $_->[1] } @{ $dbh->selectall_arrayref(
        "SELECT command_id, count(*) FROM tb_command_log
          WHERE project = ? AND command_id LIKE ? GROUP BY command_id",
        undef, $project, "$tag-%") };
    $dbh->disconnect;
    return (\%ev, \%log);
}

use constant PG_LOAD_CHECKS => 14;

# The checks of a load with a fault (PG_LOAD_CHECKS tests).  Options:
# project, tag, res (from pg_load), name, busy_ms (the location's
# TrackBatchBusyTimeout, default 5000: no answer may take longer than
# pg_max_wait of it), lost_answers (the server froze rather than died: a
# batch answered 503 may have been committed after the module stopped
# waiting, so it must be kept whole or not at all, instead of not at all).
sub pg_load_checks {
    my (%a) = @_;
    my $res  = $a{res};
    my $name = $a{name};
    my @r    = @{ $res->{records} };
    my $t    = sub { &Apache::TestUtil::t_cmp(@_) };
    my %st;
    $st{ $_->{status} }++ for @r;
    my $summary = join ' ', map { "$_=$st{$_}" } sort keys %st;
    my @after = grep { $_->{t0} >= $res->{t_back} && $_->{t0} < $res->{t_back} + 10 } @r;
    my $after_ok = grep { $_->{status} eq '200' } @after;
    my @late_fail = grep { $_->{status} ne '200' } @after;
    my $max = 0;
    for (@r) { $max = $_->{t1} - $_->{t0} if $_->{t1} - $_->{t0} > $max }
    printf "# %s: %d requests (%s); fault at +%.2f s, server back after %.2f s; "
         . "%d requests in the 10 s after, %d failed; slowest answer %.2f s\n",
        $name, scalar @r, $summary, $res->{t_fault} - ($r[0] ? $r[0]{t0} : 0),
        $res->{t_back} - $res->{t_fault}, scalar @after, scalar @late_fail, $max;

    Test::ok($t->($res->{clients_ok}, 1, "$name: every load client ran to the end"));
    Test::ok($t->(scalar(grep { $_->{status} eq '200' && $_->{t1} < $res->{t_fault} } @r) > 0
                  ? 'yes' : 'no', 'yes', "$name: batches were recorded before the fault"));
    Test::ok($t->(join(' ', map { "$_->{status}" . ($_->{body} ? " [$_->{body}]" : '') }
                            grep { $_->{status} !~ /^(?:200|503)\z/ } @r),
                  '', "$name: every answer is 200 or 503 (never 500, never none)"));
    Test::ok($t->(scalar(grep { $_->{status} eq '503' } @r) > 0 ? 'yes' : "no ($summary)",
                  'yes', "$name: the outage was seen (some answers 503)"));
    Test::ok($t->(join(' ', map { $_->{ra} // 'none' } grep { $_->{status} eq '503'
                        && ($_->{ra} // '') ne '5' } @r),
                  '', "$name: every 503 has Retry-After: 5"));
    Test::ok($t->(scalar(grep { $_->{status} eq '503'
                        && !($_->{text_ok} && ($_->{ct} // '') =~ m{^application/json}) } @r),
                  0, "$name: every 503 says so in JSON, in the exact text"));
    Test::ok($t->(scalar(grep { $_->{status} eq '200' && !$_->{all_ok} } @r),
                  0, "$name: every 200 answers each command success: true, in order"));
    my $limit = pg_max_wait($a{busy_ms});
    Test::ok($t->(join(' ', map { sprintf '%.2f s', $_->{t1} - $_->{t0} }
                            grep { $_->{t1} - $_->{t0} > $limit } @r),
                  '', sprintf('%s: no answer took longer than %.1f s', $name, $limit)));

    my ($ev, $log) = load_rows($a{project}, $a{tag});
    my %acked = map { $_ => 1 } map { @{ $_->{cids} } } grep { $_->{status} eq '200' } @r;
    my %failed = map { $_ => 1 } map { @{ $_->{cids} } } grep { $_->{status} ne '200' } @r;
    my @missing = sort grep { !$ev->{$_} } keys %acked;
    my @twice   = sort grep { ($ev->{$_} || 0) > 1 } keys %acked;
    my @kept    = sort grep { $ev->{$_} } keys %failed;
    my $kept_name = "$name: no command of a 503 batch is in tb_events";
    if ($a{lost_answers}) {
        # a batch the server committed after the module gave up: whole,
        # once, and its command_ids logged as if acknowledged
        my @whole = grep { my $b = $_; !grep { ($ev->{$_} || 0) != 1 } @{ $b->{cids} } }
                    grep { $_->{status} ne '200' } @r;
        $acked{$_} = 1 for map { @{ $_->{cids} } } @whole;
        my %whole = map { $_ => 1 } map { @{ $_->{cids} } } @whole;
        @kept = grep { !$whole{$_} } @kept;
        $kept_name = "$name: a 503 batch is in tb_events whole (committed, "
                   . 'answer lost) or not at all';
        printf "# %s: %d batch(es) answered 503 were committed after the module stopped waiting\n",
            $name, scalar @whole;
    }
    my @unknown = sort grep { !$acked{$_} && !$failed{$_} } keys %$ev;
    my @log_bad = sort grep { !$acked{$_} } keys %$log;
    my @log_missing = sort grep { ($log->{$_} || 0) != 1 } keys %acked;
    my $few = sub { @_ ? scalar(@_) . ": @_[0 .. ($#_ < 4 ? $#_ : 4)]" : '' };
    Test::ok($t->($few->(@missing), '', "$name: every command answered success is in tb_events"));
    Test::ok($t->($few->(@twice), '', "$name: ... exactly once"));
    Test::ok($t->($few->(@kept), '', $kept_name));
    Test::ok($t->($few->(@unknown, @log_bad, @log_missing), '',
                  "$name: nothing else recorded; tb_command_log holds exactly the acknowledged commands"));
    Test::ok($t->(scalar(@after) >= 50 ? 'yes' : 'no (' . scalar(@after) . ')', 'yes',
                  "$name: requests went on after the server was back"));
    Test::ok($t->(@after && $after_ok >= 0.99 * @after ? 'yes'
                  : sprintf('no: %d of %d', $after_ok, scalar @after), 'yes',
                  "$name: at least 99% success within 10 s after the server is back"));
    return;
}

push @TB::EXPORT_OK, qw(pg_ctl pg_client_conns pg_restart pg_kill9_start
                        pg_freeze pg_max_wait
                        load_batch load_record pg_load load_run ka_post
                        load_rows pg_load_checks UNAVAILABLE_BODY
                        PG_LOAD_CHECKS);

# The test server's parent process (graceful restarts signal it).
sub parent_pid {
    my $logs = Apache::Test::config()->{vars}->{t_logs};
    open my $fh, '<', "$logs/httpd.pid" or die "pid file: $!";
    chomp(my $pid = <$fh>);
    return $pid;
}

# The test server's error log from byte $off on.
sub log_from {
    my $off = shift;
    my $log = Apache::Test::config()->{vars}->{t_logs} . '/error_log';
    open my $fh, '<', $log or die "$log: $!";
    seek $fh, $off, 0;
    local $/;
    return <$fh> // '';
}

push @TB::EXPORT_OK, qw(parent_pid log_from);

# Requests in flight at once: start_request() writes one POST on a
# connection of its own (to host:port $hp) and returns at once;
# read_answers() reads them all until the server closes each, and returns
# them as parse_responses does, with `elapsed` (from sending to the end of
# the answer).
sub start_request {
    my ($hp, $path, $body) = @_;
    require IO::Socket::INET;
    require Time::HiRes;
    my $sock = IO::Socket::INET->new(PeerAddr => $hp, Timeout => 10)
        or die "connect $hp: $!";
    my $req = http_request('POST', $path, $body, Host => $hp,
                           'Content-Type' => 'application/json',
                           Connection => 'close');
    local $SIG{PIPE} = 'IGNORE';
    for (my $off = 0; $off < length $req;) {
        my $n = syswrite($sock, $req, length($req) - $off, $off);
        die "send: $!" unless defined $n;
        $off += $n;
    }
    return { sock => $sock, t0 => Time::HiRes::time(), raw => '' };
}
sub read_answers {
    my @c = @_;
    require IO::Select;
    require Time::HiRes;
    my %by = map { fileno($_->{sock}) => $_ } @c;
    my $sel = IO::Select->new(map { $_->{sock} } @c);
    my $deadline = Time::HiRes::time() + 30;
    while ($sel->count && (my $left = $deadline - Time::HiRes::time()) > 0) {
        for my $s ($sel->can_read($left)) {
            my $c = $by{ fileno $s };
            my $n = sysread($s, my $buf, 65536);
            if ($n) { $c->{raw} .= $buf; next }
            $c->{elapsed} = Time::HiRes::time() - $c->{t0};
            $sel->remove($s);
            close $s;
        }
    }
    return map {
        my @r = parse_responses($_->{raw});
        my $r = $r[0] || { status => 'none', headers => {}, body => $_->{raw} };
        $r->{elapsed} = $_->{elapsed} // 'no end';
        $r;
    } @c;
}

# Another process takes SQLite's write lock (BEGIN IMMEDIATE), says so,
# holds it for $hold seconds (or until told by sqlite_lock_release, when
# $hold is undef), then runs @sql and ends its transaction with $end
# (ROLLBACK or COMMIT).  $file: another database than the server's.
sub sqlite_lock_holder {
    my ($file, $hold, $end, @sql) = @_;
    require POSIX;
    require Time::HiRes;
    pipe(my $ready_r, my $ready_w) or die "pipe: $!";
    pipe(my $go_r, my $go_w) or die "pipe: $!";
    my $pid = fork // die "fork: $!";
    if (!$pid) {
        close $ready_r; close $go_w;
        my $ok = eval {
            my $dbh = $file ? db_file($file) : db_connect();
            $dbh->do('BEGIN IMMEDIATE');
            $dbh->do($_) for @sql;
            syswrite $ready_w, "locked\n";
            if (defined $hold) { Time::HiRes::sleep($hold) }
            else { sysread $go_r, my $buf, 1 }
            $dbh->do($end);
            $dbh->disconnect;
            1;
        };
        syswrite $ready_w, "failed: $@\n" unless $ok;
        POSIX::_exit($ok ? 0 : 1);
    }
    close $ready_w; close $go_r;
    my $line = <$ready_r>;
    die "lock holder: " . ($line // 'no answer') unless ($line // '') eq "locked\n";
    return { pid => $pid, go => $go_w, ready => $ready_r };
}

# Tells the holder to end its transaction; true when it ended cleanly.
sub sqlite_lock_release {
    my ($h) = @_;
    syswrite $h->{go}, "x";
    close $h->{go};
    waitpid $h->{pid}, 0;
    return $? == 0;
}

# A batch for "$tag": a customers command (ids registered=$tag and
# $soft=s-$tag, property tag) and one $event_type event, command_ids
# u-$tag and e-$tag, then @extra commands (JSON texts) as given.
sub tag_batch {
    my ($tag, $soft, $event_type, @extra) = @_;
    $soft ||= 'cookie';
    return '{"commands": ['
        . join(', ',
               qq({"name": "customers", "command_id": "u-$tag", "data": {"customer_ids": )
               . qq({"registered": "$tag", "$soft": "s-$tag"}, "update_timestamp": 1700000000, )
               . qq("properties": {"tag": "$tag"}}}),
               qq({"name": "customers/events", "command_id": "e-$tag", "data": {"customer_ids": )
               . qq({"registered": "$tag"}, "event_type": "$event_type", "timestamp": 1700000001}}),
               @extra)
        . ']}';
}

# tag_batch's answer: its two successes, then @extra results (JSON texts).
sub tag_results {
    my ($tag, @extra) = @_;
    return '[' . join(', ', qq({"success": true, "command_id": "u-$tag"}),
                      qq({"success": true, "command_id": "e-$tag"}), @extra) . ']';
}

# The rows tag_batch records, as db_project_rows reads them.
sub tag_rows {
    my ($tag, $soft, $event_type) = @_;
    $soft ||= 'cookie';
    my $who = join ',', sort "registered=$tag", "$soft=s-$tag";
    return {
        customers  => 1,
        ids        => [ sort "registered|$tag|1|$who", "$soft|s-$tag|0|$who" ],
        events     => [ "$who|$event_type|1700000001.000000|{}|e-$tag" ],
        updates    => [ qq($who|{"tag":"$tag"}|1700000000.000000|u-$tag) ],
        properties => [ qq($who|tag|"$tag"|1700000000.000000) ],
    };
}

1;
