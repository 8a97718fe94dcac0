package TBClient;
# A small tracking client written the way the official (deprecated) Python
# SDK, exponea-python-sdk, calls the Tracking API, so the suite talks to the
# module as that SDK's users do:
#
#   - every request carries HTTP Basic auth (username = key id, password =
#     secret), like requests' HTTPBasicAuth;
#   - a POST body is json.dumps(payload) with Content-Type
#     application/json: keys in insertion order, ", " and ": " separators,
#     everything beyond ASCII as \uXXXX escapes (surrogate pairs above
#     U+FFFF);
#   - add_event always sends "timestamp" and "properties", null when the
#     caller gave none; update_customer_properties sends customer_ids and
#     properties only;
#   - an answer counts as success only if the status is 200 AND the body's
#     "success" is true; anything else raises TBClient::APIException with
#     the body's "error" / "errors" (list or dict) or the raw text; a body
#     that is not JSON raises with the raw text;
#   - get_system_time returns "time", the single routes return "success",
#     batch_commands returns per result its "time" when it has one, else
#     its "success".
#
#   my $c = TBClient->new($project_token, $key_id, $secret,
#                         url => 'http://127.0.0.1:8529/keys');
#   my $t  = $c->get_system_time;
#   my $ok = $c->add_event({registered => 'a@b'}, 'purchase');
#   my $r  = $c->batch_commands([$c->get_system_time(batch => 1), ...]);
#   $c->last_response;      # the HTTP::Response of the last call
use strict;
use warnings FATAL => 'all';

use B ();
use JSON::PP ();
use LWP::UserAgent ();
use HTTP::Request ();
use MIME::Base64 ();

sub new {
    my ($class, $project_token, $username, $password, %opt) = @_;
    my $self = bless {
        project_token   => $project_token,
        username        => defined $username ? $username : '',
        password        => defined $password ? $password : '',
        url             => $opt{url} || 'https://api.exponea.com',
        request_timeout => $opt{request_timeout} || 10,
    }, $class;
    $self->{endpoint_base} = "/track/v2/projects/$project_token";
    $self->{ua} = LWP::UserAgent->new(timeout => $self->{request_timeout},
                                      keep_alive => 0);
    return $self;
}

sub last_response { $_[0]{last_response} }

# An ordered JSON object, as a Python dict literal keeps its key order.
sub odict { return bless [@_], 'TBClient::Ordered' }

# ---- json.dumps(payload), Python's defaults ----------------------------

sub _str {
    my $s = shift;
    utf8::decode($s) unless utf8::is_utf8($s);   # bytes taken as UTF-8
    my $out = '"';
    for my $ch (split //, $s) {
        my $o = ord $ch;
        if    ($ch eq '"')  { $out .= '\\"' }
        elsif ($ch eq '\\') { $out .= '\\\\' }
        elsif ($ch eq "\n") { $out .= '\\n' }
        elsif ($ch eq "\r") { $out .= '\\r' }
        elsif ($ch eq "\t") { $out .= '\\t' }
        elsif ($ch eq "\b") { $out .= '\\b' }
        elsif ($ch eq "\f") { $out .= '\\f' }
        elsif ($o < 0x20 || ($o >= 0x7f && $o <= 0xffff)) {
            $out .= sprintf '\\u%04x', $o;
        }
        elsif ($o > 0xffff) {
            my $v = $o - 0x10000;
            $out .= sprintf '\\u%04x\\u%04x', 0xd800 | ($v >> 10),
                                              0xdc00 | ($v & 0x3ff);
        }
        else { $out .= $ch }
    }
    return "$out\"";
}

sub dumps {
    my $v = shift;
    return 'null' unless defined $v;
    if (ref $v eq 'TBClient::Ordered') {
        my @kv = @$v;
        my @parts;
        while (@kv) {
            my ($k, $val) = splice @kv, 0, 2;
            push @parts, _str($k) . ': ' . dumps($val);
        }
        return '{' . join(', ', @parts) . '}';
    }
    if (ref $v eq 'HASH') {
        return '{' . join(', ', map { _str($_) . ': ' . dumps($v->{$_}) }
                                sort keys %$v) . '}';
    }
    if (ref $v eq 'ARRAY') {
        return '[' . join(', ', map { dumps($_) } @$v) . ']';
    }
    if (JSON::PP::is_bool($v)) {
        return $v ? 'true' : 'false';
    }
    die "TBClient::dumps: cannot encode " . ref($v) . "\n" if ref $v;
    # numbers stay numbers (Python int/float), strings stay strings
    my $flags = B::svref_2object(\$v)->FLAGS;
    if (($flags & (B::SVp_IOK() | B::SVp_NOK())) && !($flags & B::SVp_POK())) {
        return $v;
    }
    return _str($v);
}

# ---- Exponea.request ---------------------------------------------------

sub request {
    my ($self, $method, $path, $payload) = @_;
    my $req = HTTP::Request->new($method => $self->{url} . $path);
    $req->header(Authorization => 'Basic ' . MIME::Base64::encode_base64(
        "$self->{username}:$self->{password}", ''));
    if (defined $payload) {           # requests: json=None sends no body
        my $body = dumps($payload);
        $req->header('Content-Type' => 'application/json');
        $req->content($body);
        $req->header('Content-Length' => length $body);
    }
    my $res = $self->{ua}->request($req);
    $self->{last_response} = $res;
    if ($res->header('Client-Warning')
        && $res->header('Client-Warning') eq 'Internal response') {
        TBClient::APIException->throw('Request failed: ' . $res->message,
                                      $res);
    }
    my $result = eval { JSON::PP->new->allow_nonref(1)->decode($res->content) };
    TBClient::APIException->throw($res->content, $res)
        unless defined $result && ref $result eq 'HASH';
    return $result if $res->code == 200 && $result->{success};
    if (defined $result->{error}) {
        TBClient::APIException->throw($result->{error}, $res);
    }
    if (my $errors = $result->{errors}) {
        TBClient::APIException->throw($errors, $res) if ref $errors eq 'ARRAY'
                                                        && @$errors;
        TBClient::APIException->throw([values %$errors], $res)
            if ref $errors eq 'HASH' && %$errors;
    }
    TBClient::APIException->throw($res->content, $res);
}

# ---- Tracking ----------------------------------------------------------

sub get_system_time {
    my ($self, %o) = @_;
    return odict(name => 'system/time') if $o{batch};
    my $r = $self->request('GET', "$self->{endpoint_base}/system/time");
    return $r->{time};
}

sub update_customer_properties {
    my ($self, $customer_ids, $properties, %o) = @_;
    my $payload = odict(customer_ids => $customer_ids,
                        properties   => $properties);
    return odict(name => 'customers', data => $payload) if $o{batch};
    return $self->request('POST', "$self->{endpoint_base}/customers",
                          $payload)->{success};
}

sub add_event {
    my ($self, $customer_ids, $event_type, %o) = @_;
    my $payload = odict(customer_ids => $customer_ids,
                        timestamp    => $o{timestamp},
                        properties   => $o{properties},
                        event_type   => $event_type);
    return odict(name => 'customers/events', data => $payload) if $o{batch};
    return $self->request('POST', "$self->{endpoint_base}/customers/events",
                          $payload)->{success};
}

sub batch_commands {
    my ($self, $commands) = @_;
    my $r = $self->request('POST', "$self->{endpoint_base}/batch",
                           odict(commands => $commands));
    # the SDK: res.get('time') or res['success'], by position
    return [ map { $_->{time} ? $_->{time} : $_->{success} }
             @{ $r->{results} } ];
}

package TBClient::APIException;
use overload '""' => sub { my $m = $_[0]{message};
                           ref $m ? join('; ', @$m) : $m }, fallback => 1;

sub throw {
    my ($class, $message, $res) = @_;
    die bless { message => $message, response => $res }, $class;
}
sub message  { $_[0]{message} }
sub response { $_[0]{response} }
sub status   { $_[0]{response} ? $_[0]{response}->code : undef }

1;

package TBClient::Conn;
# One HTTP/1.1 connection held open between requests (keep-alive), from a
# chosen local address if asked: under prefork a child serves one
# connection at a time, so requests on connections held open at the same
# time are served by different children.
#
#   my $c = TBClient::Conn->new(port => $port, local => '127.0.0.2');
#   my $res = $c->request('POST', $path, { 'Content-Type' => ... }, $body);
#   $res->{status}, $res->{headers}{'retry-after'}, $res->{body}
#   $c->done;
use IO::Socket::INET ();

sub new {
    my ($class, %a) = @_;
    my $sock = IO::Socket::INET->new(PeerAddr => $a{host} || '127.0.0.1',
                                     PeerPort => $a{port},
                                     ($a{local} ? (LocalAddr => $a{local}) : ()),
                                     Proto => 'tcp', Timeout => 10)
        or die "connect: $!";
    $sock->autoflush(1);
    return bless { sock => $sock, port => $a{port}, buf => '' }, $class;
}

sub _fill {
    my ($self, $deadline) = @_;
    my $rin = '';
    vec($rin, fileno($self->{sock}), 1) = 1;
    my $left = $deadline - time;
    return 0 if $left <= 0 || !select(my $rout = $rin, undef, undef, $left);
    my $n = sysread($self->{sock}, my $chunk, 65536);
    return 0 unless $n;
    $self->{buf} .= $chunk;
    return 1;
}

# Send one request; returns {status, headers (lower-case names), body,
# closed (the server said Connection: close)}.
sub request {
    my ($self, $method, $path, $headers, $body) = @_;
    $headers ||= {};
    my $req = "$method $path HTTP/1.1\r\nHost: localhost:$self->{port}\r\n";
    $req .= "$_: $headers->{$_}\r\n" for sort keys %$headers;
    $req .= 'Content-Length: ' . length($body) . "\r\n" if defined $body;
    $req .= "\r\n" . (defined $body ? $body : '');
    print { $self->{sock} } $req or die "send: $!";
    my $deadline = time + 15;
    while ($self->{buf} !~ /\r\n\r\n/) {
        $self->_fill($deadline) or die "no answer to $method $path\n";
    }
    $self->{buf} =~ s/\A(.*?)\r\n\r\n//s;
    my ($status_line, @lines) = split /\r\n/, $1;
    my ($status) = $status_line =~ m{^HTTP/1\.\d (\d{3})} or die "bad answer\n";
    my %h;
    for (@lines) {
        my ($k, $v) = /^([^:]+):\s*(.*)$/ or next;
        $h{lc $k} = exists $h{lc $k} ? "$h{lc $k}, $v" : $v;
    }
    my $len = $h{'content-length'} || 0;
    $len = 0 if $status == 204 || $status == 304 || $method eq 'HEAD';
    while (length $self->{buf} < $len) {
        $self->_fill($deadline) or die "short answer to $method $path\n";
    }
    my $content = substr($self->{buf}, 0, $len, '');
    return { status => $status, headers => \%h, body => $content,
             closed => (($h{connection} || '') =~ /close/i) ? 1 : 0 };
}

sub done { my $self = shift; CORE::close($self->{sock}) if $self->{sock}; delete $self->{sock} }

1;
