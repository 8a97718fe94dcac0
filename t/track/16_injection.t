# Hostile text is data (SPEC §5: parameters are bound, never pasted into
# SQL): quotes, backslashes, printf conversions, SQL fragments, escaped
# control characters, 2-, 3- and 4-byte UTF-8 raw and as \u escapes, each
# sent as a customer id value, an event type, property names and values
# (flat and nested), a command_id, and customer property names and values.
# Every command is answered as it would be for plain text, and the
# database holds exactly the bytes sent: ids, event types and command_ids
# byte for byte, properties as JSON text that decodes to exactly what was
# sent.  A retry of each batch is recognised by its command_ids (looked up
# by those bytes) and records nothing.  Afterwards every table is still
# there and another project's rows are untouched.  Runs on both engines.
use strict;
use warnings FATAL => 'all';

use Apache::Test;
use Apache::TestUtil;
use JSON::PP ();
use lib 't/lib';
use TB qw(post_json db db_clear db_counts batch_url batch_body res_ok res_err
          jstr norm_times customer_of db_project_rows);

my $E_VALID = 'At least one valid id should be specified';

# [label, the text as written inside a JSON string, the bytes it means]
my @cases = (
    ['single quotes',        q{it's O'Brien''},            q{it's O'Brien''}],
    ['double quotes',        q{say \"hi\" \"\"},           q{say "hi" ""}],
    ['backslashes',          q{C:\\\\temp\\\\new \\\\\\\\ end\\\\},
                                                           q{C:\\temp\\new \\\\ end\\}],
    ['printf conversions',   q{%s%n%d %x %p %% %1$s %.9999d %*s %hhn},
                                                           q{%s%n%d %x %p %% %1$s %.9999d %*s %hhn}],
    ['SQL: quote, DROP TABLE', q{'); DROP TABLE tb_events; --},
                                                           q{'); DROP TABLE tb_events; --}],
    ['SQL: " OR 1=1',        q{\" OR 1=1 --},              q{" OR 1=1 --}],
    ['SQL: backslash-quote', q{\\\\'; DELETE FROM tb_customers WHERE '1'='1},
                                                           q{\\'; DELETE FROM tb_customers WHERE '1'='1}],
    ['SQL: UNION, comment',  q{x'/**/UNION SELECT key_id, secret_digest FROM tb_keys;--},
                                                           q{x'/**/UNION SELECT key_id, secret_digest FROM tb_keys;--}],
    ['PostgreSQL quoting',   q{$$; DROP TABLE tb_events; $$ $fn$ E'\\\\x41' ::text; COMMIT;},
                                                           q{$$; DROP TABLE tb_events; $$ $fn$ E'\\x41' ::text; COMMIT;}],
    ['escaped control characters', q{a\n\r\t\b\f\u0001\u001f\u007fz},
                                                           "a\n\r\t\b\f\x01\x1f\x7fz"],
    ['JSON syntax in a string', q{{\"k\": [1, \"v\"]}, \"x\": null},
                                                           q{{"k": [1, "v"]}, "x": null}],
    ['\/ and \u escapes of ASCII', q{\/path\u0041\u0027\u0022\u005c},
                                                           q{/pathA'"\\}],
    ['a literal backslash-u', q{\\\\u0000 \\\\ud800 \\\\n},
                                                           q{\\u0000 \\ud800 \\n}],
    ['2-byte UTF-8',         "\xc3\xa9 \xc3\xb1 \xc3\x9f \xc3\xbf \xce\xa9",
                                                           "\xc3\xa9 \xc3\xb1 \xc3\x9f \xc3\xbf \xce\xa9"],
    ['3-byte UTF-8, BOM and U+FFFD inside', "\xe6\x97\xa5\xe6\x9c\xac \xe2\x82\xac \xef\xbb\xbf \xef\xbf\xbd",
                                                           "\xe6\x97\xa5\xe6\x9c\xac \xe2\x82\xac \xef\xbb\xbf \xef\xbf\xbd"],
    ['4-byte UTF-8: emoji, U+10FFFF', "emoji \xf0\x9f\x98\x80 \xf0\x9d\x84\x9e \xf4\x8f\xbf\xbf",
                                                           "emoji \xf0\x9f\x98\x80 \xf0\x9d\x84\x9e \xf4\x8f\xbf\xbf"],
    ['\u escapes of 2-, 3- and 4-byte characters',
                             q{u\u00e9\u20ac\u2028\u2029\ud83d\ude00\udbff\udfff},
                             "u\xc3\xa9\xe2\x82\xac\xe2\x80\xa8\xe2\x80\xa9\xf0\x9f\x98\x80\xf4\x8f\xbf\xbf"],
    # (a backslash before u0000, not a NUL: strict JSON refuses \u0000
    # anywhere, see 12_invalid_json.t)
    ['all of it',            q{\u00e7'\"%s\\\\} . "\xf0\x9f\x98\x80" . q{;-- \\\\u0000x},
                             "\xc3\xa7'\"%s\\\xf0\x9f\x98\x80;-- \\u0000x"],
);

my $J = JSON::PP->new->utf8->canonical(1)->allow_nonref(1);
# Bytes to characters and back (Perl's lax utf8: Encode's strict UTF-8
# refuses noncharacters such as U+10FFFF, which JSON allows).
sub chars { my $s = shift; utf8::decode($s) or die "not UTF-8\n"; return $s }
sub bytes_of { my $s = shift; utf8::encode($s); return $s }

# One batch for a text: an event and a customer update carrying it
# everywhere, and an event whose id *name* is the text (refused: it is
# not a configured id, and the refusal quotes it).
sub batch_for {
    my ($j) = @_;
    return '{"commands": ['
        . qq[{"name": "customers/events", "command_id": "$j|e", "data": {]
        . qq["customer_ids": {"registered": "$j", "cookie": "c$j"}, "event_type": "$j", ]
        . qq["timestamp": 1700000000.5, "properties": {"$j": "$j", ]
        . qq["nested": {"$j": ["$j", {"k$j": "$j"}, 1, true, null]}, "plain": 1}}}, ]
        . qq[{"name": "customers", "command_id": "$j|c", "data": {]
        . qq["customer_ids": {"registered": "$j"}, "update_timestamp": 1700000001, ]
        . qq["properties": {"$j": "$j", "n:$j": {"deep": ["$j", {"$j": "$j"}]}}}}, ]
        . qq[{"name": "customers/events", "command_id": "$j|x", "data": {]
        . qq["customer_ids": {"$j": "v"}, "event_type": "e"}}]
        . ']}';
}

# What the event's and the update's properties mean, as Perl data.
sub event_props {
    my $c = chars($_[0]);
    return { $c => $c, nested => { $c => [$c, { "k$c" => $c }, 1, JSON::PP::true, undef] },
             plain => 1 };
}
sub update_props {
    my $c = chars($_[0]);
    return { $c => $c, "n:$c" => { deep => [$c, { $c => $c }] } };
}
sub same_json {
    my ($text, $want) = @_;
    my $got = eval { $J->decode($text) };
    return 'not JSON: ' . ($text // 'NULL') unless $@ eq '' && defined $got;
    return $J->encode($got) eq $J->encode($want) ? 'same' : "differs: $text";
}

# The table must say what JSON says: decode each batch and compare.
for my $case (@cases) {
    my ($label, $j, $b) = @$case;
    my $d = $J->decode(batch_for($j));
    my $id = $d->{commands}[0]{data}{customer_ids}{registered};
    die "case '$label': the JSON text means another string\n"
        unless bytes_of($id) eq $b;
}

my $checks = 11;
plan tests => @cases * $checks + 4;

db_clear();
my $dbh = db();
my $P = 'inj-proj';

# Another project's rows, which nothing below may touch.
my $S = 'inj-sentinel';
my $r = post_json(batch_url($S), { commands => [
    { name => 'customers', command_id => 'sentinel-c',
      data => { customer_ids => { registered => 'sentinel' },
                properties => { name => 'Sentinel', n => 1 } } },
    { name => 'customers/events', command_id => 'sentinel-e',
      data => { customer_ids => { registered => 'sentinel' }, event_type => 'keep',
                timestamp => 1600000000, properties => { a => "b'c" } } } ] });
die "sentinel batch: " . $r->content unless $r->code == 200 && $r->content =~ /"success": true, "command_id": "sentinel-e"/;
my $sentinel = db_project_rows($S, $dbh);

for my $case (@cases) {
    my ($label, $j, $b) = @$case;
    my $body = batch_for($j);
    $r = post_json(batch_url($P), $body);
    my $want = batch_body(res_ok(jstr("$b|e")), res_ok(jstr("$b|c")),
                          res_err(["Unknown customer id '$b'.", $E_VALID], jstr("$b|x")));
    ok t_cmp($r->code, 200, "$label: status");
    ok t_cmp(norm_times($r->content), $want,
             "$label: both commands succeed, the third is refused quoting the name as sent");

    # ids, byte for byte: both name the one profile, which holds just them
    my $cust = customer_of($P, registered => $b, $dbh);
    my $cust2 = customer_of($P, cookie => "c$b", $dbh);
    ok t_cmp(defined $cust && defined $cust2 && $cust == $cust2 ? 'one profile' : 'not found',
             'one profile', "$label: the ids find their profile by their exact bytes");
    my $ids = $dbh->selectall_arrayref(
        'SELECT id_name, id_value FROM tb_customer_ids WHERE customer_id = ?
          ORDER BY id_name', undef, $cust // -1);
    ok t_cmp(join("\n", map { "$_->[0]=$_->[1]" } @$ids),
             "cookie=c$b\nregistered=$b", "$label: id values stored byte for byte");

    # the event
    my $ev = $dbh->selectall_arrayref(
        'SELECT event_type, command_id, timestamp, properties FROM tb_events
          WHERE customer_id = ?', undef, $cust // -1);
    ok t_cmp(scalar(@$ev) == 1 ? join("\n", $ev->[0][0], $ev->[0][1], $ev->[0][2]) : scalar(@$ev) . ' events',
             "$b\n$b|e\n1700000000.5", "$label: event_type and command_id stored byte for byte");
    ok t_cmp(same_json($ev->[0] && $ev->[0][3], event_props($b)), 'same',
             "$label: event properties decode to exactly what was sent");

    # the customer update: as sent, and the current properties
    my $up = $dbh->selectall_arrayref(
        'SELECT command_id, properties FROM tb_customer_updates WHERE customer_id = ?',
        undef, $cust // -1);
    ok t_cmp(scalar(@$up) == 1 ? $up->[0][0] . "\n" . same_json($up->[0][1], update_props($b))
                               : scalar(@$up) . ' updates',
             "$b|c\nsame", "$label: the update's command_id byte for byte, its properties as sent");
    my $props = $dbh->selectall_arrayref(
        'SELECT name, value FROM tb_customer_properties WHERE customer_id = ?',
        undef, $cust // -1);
    my %pv = map { $_->[0] => $_->[1] } @$props;
    ok t_cmp(join("\n", sort keys %pv), join("\n", sort $b, "n:$b"),
             "$label: customer property names stored byte for byte");
    my $want_p = update_props($b);
    my $c = chars($b);
    ok t_cmp(join("\n", same_json($pv{$b}, $want_p->{$c}), same_json($pv{"n:$b"}, $want_p->{"n:$c"}),
                  (eval { bytes_of($J->decode($pv{$b})) } // '') eq $b ? 'bytes' : 'other bytes'),
             "same\nsame\nbytes", "$label: customer property values are the values sent");

    # command_ids: the two recorded ones, not the refused one
    my $log = $dbh->selectcol_arrayref(
        'SELECT command_id FROM tb_command_log WHERE project = ? AND command_id IN (?, ?, ?)
          ORDER BY command_id', undef, $P, "$b|e", "$b|c", "$b|x");
    ok t_cmp(join("\n", sort @$log), join("\n", sort "$b|e", "$b|c"),
             "$label: tb_command_log holds the two command_ids, byte for byte");

    # a retry: found by those bytes, answered the same, nothing recorded
    my $before = db_counts();
    my $again = post_json(batch_url($P), $body);
    ok t_cmp(join("\n", $again->code, norm_times($again->content) // '',
                  $J->encode(db_counts())),
             join("\n", 200, $want, $J->encode($before)),
             "$label: a retry is answered the same and records nothing");
}

# Every table is still there, and holds what it should.
my @tables = qw(tb_customers tb_customer_ids tb_events tb_customer_updates
                tb_customer_properties tb_command_log tb_projects tb_keys
                tb_key_permissions);
my %n;
for my $t (@tables) {
    my ($c) = eval { $dbh->selectrow_array("SELECT count(*) FROM $t") };
    $n{$t} = defined $c ? $c : 'missing';
}
ok t_cmp(join(' ', map { $n{$_} eq 'missing' ? "$_ missing" : () } @tables), '',
         'every table still exists');
my $k = @cases;
ok t_cmp(join(' ', map { "$_=$n{$_}" } qw(tb_customers tb_customer_ids tb_events
                                          tb_customer_updates tb_customer_properties
                                          tb_command_log)),
         join(' ', 'tb_customers=' . ($k + 1), 'tb_customer_ids=' . (2 * $k + 1),
              'tb_events=' . ($k + 1), 'tb_customer_updates=' . ($k + 1),
              'tb_customer_properties=' . (2 * $k + 2),
              'tb_command_log=' . (2 * $k + 2)),
         'exactly the rows sent: one profile, two ids, an event, an update '
         . 'and two properties per text');
ok t_cmp($J->encode(db_project_rows($S, $dbh)), $J->encode($sentinel),
         "another project's rows are untouched");

# and the server still records plain requests
$r = post_json(batch_url($P), { commands => [
    { name => 'customers/events', data => { customer_ids => { registered => 'after' },
                                            event_type => 'after' } } ] });
ok t_cmp(norm_times($r->content), batch_body(res_ok()), 'a plain batch afterwards is recorded');
db_clear();
