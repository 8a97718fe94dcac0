# The seed document's example batch, answered and recorded.
use strict;
use warnings FATAL => 'all';

use Apache::Test;
use Apache::TestUtil;
use lib 't/lib';
use TB qw(post_json decode db db_counts db_clear batch_url);

plan tests => 14;

db_clear();

my $seed = <<'JSON';
{
    "commands": [
        {"name": "system/time"},
        {
        "name": "customers",
        "command_id": "abc",
        "data": {
            "customer_ids": {
                "registered": "marian.galik@exponea.com"
            },
            "properties": {
                "first_name": "Marian",
                "last_name": "Galik"
            }
        }
    },
    {
        "name": "customers/events",
        "data": {
            "customer_ids": {
            "registered": "marian.galik@exponea.com"
        },
            "event_type": "purchase",
            "timestamp": 123456.78,
            "properties": {
            "total_price": 1234.50,
            "voucher_code": "KA54-548C-TEST"
            }
        }
    }
    ]
}
JSON

my $before = time;
my $r = post_json(batch_url('seed-project'), $seed);
ok t_cmp($r->code, 200, 'seed batch answered 200');
ok t_cmp($r->header('Content-Type'), qr{^application/json}, 'JSON answer');
my $a = decode($r->content);
ok $a && ref $a->{results} eq 'ARRAY';
ok t_cmp(scalar @{ $a->{results} }, 3, 'one result per command');
ok t_cmp($a->{success}, JSON::PP::true(), 'batch success');
ok t_cmp($a->{results}[0]{success}, JSON::PP::true(), 'system/time ok');
ok abs($a->{results}[0]{time} - $before) < 60;
ok t_cmp($a->{results}[1]{command_id}, 'abc', 'command_id echoed');
ok !exists $a->{results}[2]{command_id};
ok $a->{start_time} <= $a->{end_time};
ok t_cmp($r->content, qr/"start_time": \d+\.\d{6},/, 'microseconds');

my $dbh = db();
my $ev = $dbh->selectall_arrayref(
    "SELECT e.event_type, e.timestamp, e.properties FROM tb_events e
       JOIN tb_customer_ids i ON i.customer_id = e.customer_id
      WHERE i.project = 'seed-project' AND i.id_name = 'registered'
        AND i.id_value = 'marian.galik\@exponea.com'");
ok t_cmp(scalar @$ev, 1, 'event stored for the customer');
ok t_cmp($ev->[0][2], '{"total_price":1234.50,"voucher_code":"KA54-548C-TEST"}',
         'properties stored as sent');
my $props = $dbh->selectall_hashref(
    "SELECT p.name, p.value FROM tb_customer_properties p
       JOIN tb_customer_ids i ON i.customer_id = p.customer_id
      WHERE i.project = 'seed-project' AND i.id_value = 'marian.galik\@exponea.com'",
    'name');
ok t_cmp(join(',', map { "$_=$props->{$_}{value}" } sort keys %$props),
         'first_name="Marian",last_name="Galik"', 'properties current');
