# A body that arrives too slowly: 408 with mod_track_batch's JSON text,
# nothing recorded.  The <VirtualHost tb_slowbody> of extra.conf.in gives
# mod_reqtimeout 2 seconds for a body; everything else keeps its defaults.
use strict;
use warnings FATAL => 'all';

use Apache::Test;
use Apache::TestUtil;
use lib 't/lib';
use TB qw(db_clear batch_url json hostport_of http_conn http_request chunked
          parse_responses db_project_rows no_rows results_text error_body_re);

my $J = json();
my $SLOW = hostport_of('tb_slowbody');
my $TEXT = 'Request body was not received in time.';

sub rows_ok {
    my ($project, $want, $name) = @_;
    return ok t_cmp($J->encode(db_project_rows($project)), $J->encode($want), $name);
}

my $body = '{"commands": [{"name": "customers/events", "command_id": "slow", '
    . '"data": {"customer_ids": {"registered": "slow@example.com"}, '
    . '"event_type": "trickle", "timestamp": 1700000000, "properties": {"k": "v"}}}]}';
my $results = '[{"success": true, "command_id": "slow"}]';
my $rows = {
    customers => 1,
    ids => [ 'registered|slow@example.com|1|registered=slow@example.com' ],
    events => [ 'registered=slow@example.com|trickle|1700000000.000000|{"k":"v"}|slow' ],
    updates => [], properties => [],
};

sub head {
    my ($path, @h) = @_;
    return http_request('POST', $path, undef, Host => $SLOW,
                        'Content-Type' => 'application/json', @h);
}

my $half = int(length($body) / 2);
my @cases = (
    [ 'Content-Length, half the body then silence' => 'slow-cl-stall', sub {
        [ head($_[0], 'Content-Length' => length $body) . substr($body, 0, $half) ] } ],
    [ 'chunked, half a chunk then silence' => 'slow-ch-stall', sub {
        [ head($_[0], 'Transfer-Encoding' => 'chunked')
          . sprintf("%x\r\n", length $body) . substr($body, 0, $half) ] } ],
    [ 'chunked, whole chunks but no last chunk' => 'slow-ch-nolast', sub {
        [ head($_[0], 'Transfer-Encoding' => 'chunked')
          . chunked($body) =~ s/0\r\n\r\n\z//r ] } ],
    [ 'chunked, silence inside a chunk-size line' => 'slow-ch-sizeline', sub {
        [ head($_[0], 'Transfer-Encoding' => 'chunked')
          . chunked(substr($body, 0, $half)) =~ s/0\r\n\r\n\z//r . '1' ] } ],
    [ 'Content-Length, trickled a byte every 0.4 s' => 'slow-cl-trickle', sub {
        [ head($_[0], 'Content-Length' => length $body),
          map { ($_, \0.4) } split //, $body ] } ],
    [ 'chunked, trickled a chunk every 0.4 s' => 'slow-ch-trickle', sub {
        [ head($_[0], 'Transfer-Encoding' => 'chunked'),
          map { (sprintf("1\r\n%s\r\n", $_), \0.4) } split //, $body ] } ],
);

plan tests => 7 * @cases + 4;

db_clear();
for my $case (@cases) {
    my ($name, $project, $pieces) = @$case;
    my $path = batch_url($project);
    my $c = http_conn(hostport => $SLOW, pieces => $pieces->($path),
                      stop_on_reply => 1, timeout => 30);
    my @r = parse_responses($c->{raw});
    ok t_cmp(join(',', map { $_->{status} } @r), '408', "$name: one answer, 408");
    ok t_cmp($r[0]{body}, error_body_re($TEXT), "$name: text");
    ok t_cmp($r[0]{headers}{'content-type'}, qr{^application/json}, "$name: JSON");
    ok t_cmp($c->{eof}, 1, "$name: connection closed");
    # 2 s allowed; generous bounds, the point is that it is neither at
    # once nor never
    ok t_cmp($c->{elapsed} > 1.5 && $c->{elapsed} < 25 ? 'in time' : $c->{elapsed},
             'in time', "$name: answered after the 2 s allowed, not much later");
    rows_ok($project, no_rows(), "$name: nothing recorded");
    my $again = http_conn(hostport => $SLOW, pieces => [
        head(batch_url("$project-again"), 'Content-Length' => length $body,
             Connection => 'close') . $body ]);
    my @a = parse_responses($again->{raw});
    ok t_cmp(join(',', map { $_->{status} } @a) . ' '
             . (results_text($a[0]{body} // '') // ''),
             "200 $results", "$name: a prompt request next is served");
}

# A body sent promptly in pieces within the 2 s is fine on that server.
{
    my $path = batch_url('slow-but-in-time');
    my $c = http_conn(hostport => $SLOW, pieces => [
        head($path, 'Transfer-Encoding' => 'chunked', Connection => 'close'),
        \0.3, chunked(substr($body, 0, 10)) =~ s/0\r\n\r\n\z//r,
        \0.3, chunked(substr($body, 10)) ]);
    my @r = parse_responses($c->{raw});
    ok t_cmp(scalar @r, 1, 'in time: one answer');
    ok t_cmp($r[0]{status}, 200, 'in time: 200');
    ok t_cmp(results_text($r[0]{body}), $results, 'in time: results');
    rows_ok('slow-but-in-time', $rows, 'in time: recorded');
}
