/* Licensed to the Apache Software Foundation (ASF) under one or more
 * contributor license agreements.  See the NOTICE file distributed with
 * this work for additional information regarding copyright ownership.
 * The ASF licenses this file to You under the Apache License, Version 2.0
 * (the "License"); you may not use this file except in compliance with
 * the License.  You may obtain a copy of the License at
 *
 *     http://www.apache.org/licenses/LICENSE-2.0
 *
 * Unless required by applicable law or agreed to in writing, software
 * distributed under the License is distributed on an "AS IS" BASIS,
 * WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
 * See the License for the specific language governing permissions and
 * limitations under the License.
 */

/*
 * Unit tests of tb_auth.c (Check): credentials of every scheme, casing and
 * malformation; SHA-256 digests; the secret check with rotation grace;
 * per-command permissions on a parsed batch; the per-process key cache.
 */

#include <check.h>
#include <stdlib.h>
#include <string.h>

#include <apr_general.h>
#include <apr_pools.h>
#include <apr_strings.h>
#include <apr_tables.h>
#include <apr_time.h>

#include "tb_auth.h"
#include "tb_batch.h"

static apr_pool_t *pool;

static void setup(void)
{
    ck_assert_int_eq(apr_pool_create(&pool, NULL), APR_SUCCESS);
}

static void teardown(void)
{
    apr_pool_destroy(pool);
}

/*--------------------------------------------------------------------------*/
/* Helpers                                                                  */

static const char b64chars[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* Standard padded base64 of n bytes (independent of the code under test). */
static char *b64(const char *s, apr_size_t n)
{
    char *out = apr_palloc(pool, (n + 2) / 3 * 4 + 1), *o = out;
    apr_size_t i;

    for (i = 0; i < n; i += 3) {
        unsigned v = (unsigned char)s[i] << 16;
        if (i + 1 < n) v |= (unsigned char)s[i + 1] << 8;
        if (i + 2 < n) v |= (unsigned char)s[i + 2];
        *o++ = b64chars[(v >> 18) & 63];
        *o++ = b64chars[(v >> 12) & 63];
        *o++ = i + 1 < n ? b64chars[(v >> 6) & 63] : '=';
        *o++ = i + 2 < n ? b64chars[v & 63] : '=';
    }
    *o = '\0';
    return out;
}

static const char *basic_of(const char *plain)
{
    return apr_pstrcat(pool, "Basic ", b64(plain, strlen(plain)), NULL);
}

static tb_cred_kind parse(const char *authz, const char *query, tb_cred *c)
{
    return tb_cred_parse(pool, authz, query, c);
}

static tb_cred_kind kind_of(const char *authz, const char *query)
{
    tb_cred c;
    return parse(authz, query, &c);
}

static char *repeat(char ch, int n)
{
    char *s = apr_palloc(pool, n + 1);
    memset(s, ch, n);
    s[n] = '\0';
    return s;
}

/*--------------------------------------------------------------------------*/
/* tb_cred_parse                                                            */

START_TEST(cred_none)
{
    tb_cred c;

    ck_assert_int_eq(parse(NULL, NULL, &c), TB_CRED_NONE);
    ck_assert_int_eq(c.kind, TB_CRED_NONE);
    ck_assert_ptr_null(c.key);
    ck_assert_ptr_null(c.secret);
}
END_TEST

START_TEST(cred_token_casings)
{
    static const char *schemes[] = { "Token", "token", "TOKEN", "tOkEn" };
    int i;

    for (i = 0; i < 4; i++) {
        tb_cred c;
        const char *h = apr_pstrcat(pool, schemes[i], " Ab-9_z", NULL);
        ck_assert_int_eq(parse(h, NULL, &c), TB_CRED_PUBLIC);
        ck_assert_int_eq(c.kind, TB_CRED_PUBLIC);
        ck_assert_str_eq(c.key, "Ab-9_z");
        ck_assert_ptr_null(c.secret);
    }
}
END_TEST

START_TEST(cred_token_whitespace)
{
    tb_cred c;

    ck_assert_int_eq(parse("Token \t  abc \t ", NULL, &c), TB_CRED_PUBLIC);
    ck_assert_str_eq(c.key, "abc");
    ck_assert_int_eq(parse("Token\tabc", NULL, &c), TB_CRED_PUBLIC);
    ck_assert_str_eq(c.key, "abc");
}
END_TEST

START_TEST(cred_token_length)
{
    tb_cred c;
    char *max = repeat('k', TB_MAX_CRED);

    ck_assert_int_eq(parse(apr_pstrcat(pool, "Token ", max, NULL), NULL, &c),
                     TB_CRED_PUBLIC);
    ck_assert_uint_eq(strlen(c.key), TB_MAX_CRED);
    ck_assert_int_eq(kind_of(apr_pstrcat(pool, "Token ", max, "k", NULL),
                             NULL), TB_CRED_MALFORMED);
}
END_TEST

START_TEST(cred_token_malformed)
{
    static const char *bad[] = {
        "Token", "Token ", "Token \t ", "Token a b", "Token a.b",
        "Token a!b", "Token abc=", "Token a:b", "Token \"abc\"",
        "Tokens abc", "Toke abc", "Token,abc", "Bearer abc", "abc", "",
        " Token abc", "Token a\xc3\xa9", NULL
    };
    int i;

    for (i = 0; bad[i]; i++) {
        tb_cred c;
        ck_assert_msg(parse(bad[i], NULL, &c) == TB_CRED_MALFORMED,
                      "'%s' should be malformed", bad[i]);
        ck_assert_int_eq(c.kind, TB_CRED_MALFORMED);
    }
}
END_TEST

START_TEST(cred_query)
{
    tb_cred c;

    ck_assert_int_eq(parse(NULL, "Qk-3_x", &c), TB_CRED_PUBLIC);
    ck_assert_str_eq(c.key, "Qk-3_x");
    ck_assert_ptr_null(c.secret);
    ck_assert_int_eq(kind_of(NULL, ""), TB_CRED_MALFORMED);
    ck_assert_int_eq(kind_of(NULL, "a b"), TB_CRED_MALFORMED);
    ck_assert_int_eq(kind_of(NULL, "a%20b"), TB_CRED_MALFORMED);
    ck_assert_int_eq(kind_of(NULL, "a.b"), TB_CRED_MALFORMED);
    ck_assert_int_eq(kind_of(NULL, repeat('q', TB_MAX_CRED)), TB_CRED_PUBLIC);
    ck_assert_int_eq(kind_of(NULL, repeat('q', TB_MAX_CRED + 1)),
                     TB_CRED_MALFORMED);
}
END_TEST

START_TEST(cred_header_wins_over_query)
{
    tb_cred c;

    ck_assert_int_eq(parse("Token fromheader", "fromquery", &c),
                     TB_CRED_PUBLIC);
    ck_assert_str_eq(c.key, "fromheader");
    /* a broken header is not rescued by a good query token */
    ck_assert_int_eq(kind_of("Bearer x", "fromquery"), TB_CRED_MALFORMED);
    ck_assert_int_eq(kind_of("Token", "fromquery"), TB_CRED_MALFORMED);
}
END_TEST

START_TEST(cred_basic_casings)
{
    static const char *schemes[] = { "Basic", "basic", "BASIC", "bAsIc" };
    const char *enc = b64("key-ID_1:s3cr et", 16);
    int i;

    for (i = 0; i < 4; i++) {
        tb_cred c;
        const char *h = apr_pstrcat(pool, schemes[i], " ", enc, NULL);
        ck_assert_int_eq(parse(h, NULL, &c), TB_CRED_PRIVATE);
        ck_assert_int_eq(c.kind, TB_CRED_PRIVATE);
        ck_assert_str_eq(c.key, "key-ID_1");
        ck_assert_uint_eq(c.secret_len, 7);
        ck_assert_int_eq(memcmp(c.secret, "s3cr et", 7), 0);
    }
}
END_TEST

START_TEST(cred_basic_padding_variants)
{
    /* 0, 1 and 2 padding characters all decode exactly */
    static const char *plain[] = { "id:abc", "id:abcd", "id:abcde" };
    int i;

    for (i = 0; i < 3; i++) {
        tb_cred c;
        ck_assert_int_eq(parse(basic_of(plain[i]), NULL, &c), TB_CRED_PRIVATE);
        ck_assert_str_eq(c.key, "id");
        ck_assert_uint_eq(c.secret_len, strlen(plain[i]) - 3);
        ck_assert_int_eq(memcmp(c.secret, plain[i] + 3, c.secret_len), 0);
    }
}
END_TEST

START_TEST(cred_basic_secret_with_colon_and_bytes)
{
    tb_cred c;
    static const char plain[] = "kid:a:b\xff z";

    /* the first colon splits; the secret may hold any byte but NUL */
    ck_assert_int_eq(parse(basic_of(plain), NULL, &c), TB_CRED_PRIVATE);
    ck_assert_str_eq(c.key, "kid");
    ck_assert_uint_eq(c.secret_len, strlen(plain) - 4);
    ck_assert_int_eq(memcmp(c.secret, "a:b\xff z", c.secret_len), 0);
    ck_assert_int_eq(parse(apr_pstrcat(pool, "Basic   ",
                                       b64(plain, strlen(plain)), " \t",
                                       NULL), NULL, &c), TB_CRED_PRIVATE);
    ck_assert_str_eq(c.key, "kid");
}
END_TEST

START_TEST(cred_basic_malformed)
{
    static const char nul[] = "id:se\0cret";
    const char *bad[] = {
        "Basic", "Basic ", "Basic \t",
        basic_of("idsecret"),                  /* no colon */
        basic_of(":secret"),                   /* no key id */
        basic_of("id:"),                       /* no secret */
        basic_of("i d:secret"),                /* id outside [A-Za-z0-9_-] */
        basic_of("id.x:secret"),
        apr_pstrcat(pool, "Basic ", b64(nul, sizeof(nul) - 1), NULL),
        apr_pstrcat(pool, "Basic ", b64("\0id:secret", 10), NULL),
        "Basic !!!!", "Basic aWQ6c2VjcmV0 x",   /* junk after the value */
        "Basic aWQ6c2Vj-mV0", "Basic aWQ6c2Vj_mV0",  /* base64url alphabet */
        "Basics aWQ6c2VjcmV0", "Basi aWQ6c2VjcmV0", "Digest aWQ6c2VjcmV0",
        apr_pstrcat(pool, "Basic ",
                    b64(apr_pstrcat(pool, repeat('i', TB_MAX_CRED + 1), ":s",
                                    NULL), TB_MAX_CRED + 3), NULL),
        NULL
    };
    int i;

    for (i = 0; bad[i]; i++) {
        tb_cred c;
        ck_assert_msg(parse(bad[i], NULL, &c) == TB_CRED_MALFORMED,
                      "'%s' should be malformed", bad[i]);
        ck_assert_ptr_null(c.secret);
    }
}
END_TEST

START_TEST(cred_basic_truncated_base64)
{
    /* "id:secret!" is 10 bytes: base64 "aWQ6c2VjcmV0IQ==" */
    const char *full = b64("id:secret!", 10);
    apr_size_t n = strlen(full), cut;

    ck_assert_str_eq(full, "aWQ6c2VjcmV0IQ==");
    ck_assert_int_eq(kind_of(apr_pstrcat(pool, "Basic ", full, NULL), NULL),
                     TB_CRED_PRIVATE);
    /* every cut that leaves a length not a multiple of 4, or drops padding */
    for (cut = 1; cut < n; cut++) {
        const char *h = apr_pstrcat(pool, "Basic ",
                                    apr_pstrmemdup(pool, full, n - cut), NULL);
        if ((n - cut) % 4 == 0) {
            continue;
        }
        ck_assert_msg(kind_of(h, NULL) == TB_CRED_MALFORMED,
                      "'%s' should be malformed", h);
    }
    /* padding missing, short, or in the middle */
    ck_assert_int_eq(kind_of("Basic aWQ6c2VjcmV0IQ", NULL), TB_CRED_MALFORMED);
    ck_assert_int_eq(kind_of("Basic aWQ6c2VjcmV0IQ=", NULL), TB_CRED_MALFORMED);
    ck_assert_int_eq(kind_of("Basic aWQ6c2Vj=mV0IQ==", NULL),
                     TB_CRED_MALFORMED);
    ck_assert_int_eq(kind_of("Basic aWQ6c2VjcmV0I===", NULL),
                     TB_CRED_MALFORMED);
    ck_assert_int_eq(kind_of("Basic ====", NULL), TB_CRED_MALFORMED);
    ck_assert_int_eq(kind_of("Basic aWQ6c2VjcmV0IQ==aWQ6", NULL),
                     TB_CRED_MALFORMED);
}
END_TEST

START_TEST(cred_basic_too_long)
{
    /* a key id of TB_MAX_CRED and a long secret still parse */
    const char *plain = apr_pstrcat(pool, repeat('i', TB_MAX_CRED), ":",
                                    repeat('s', TB_MAX_CRED), NULL);
    const char *huge = apr_pstrcat(pool, "id:", repeat('s', 4 * TB_MAX_CRED),
                                   NULL);
    tb_cred c;

    ck_assert_int_eq(parse(basic_of(plain), NULL, &c), TB_CRED_PRIVATE);
    ck_assert_uint_eq(strlen(c.key), TB_MAX_CRED);
    ck_assert_uint_eq(c.secret_len, TB_MAX_CRED);
    /* a header far over any credential is refused, not decoded */
    ck_assert_int_eq(kind_of(basic_of(huge), NULL), TB_CRED_MALFORMED);
}
END_TEST

START_TEST(cred_copies_and_wipe)
{
    char header[] = "Basic aWQ6c2VjcmV0";        /* id:secret */
    char token[] = "Token tok123";
    tb_cred c, t;
    char *secret, *key;
    apr_size_t i;

    ck_assert_int_eq(parse(header, NULL, &c), TB_CRED_PRIVATE);
    ck_assert_int_eq(parse(token, NULL, &t), TB_CRED_PUBLIC);
    /* copies: the caller may wipe its header at once */
    ck_assert_ptr_ne(t.key, token + 6);
    memset(header, 'x', sizeof(header) - 1);
    memset(token, 'x', sizeof(token) - 1);
    ck_assert_str_eq(c.key, "id");
    ck_assert_int_eq(memcmp(c.secret, "secret", 6), 0);
    ck_assert_str_eq(t.key, "tok123");

    secret = c.secret;
    key = c.key;
    tb_cred_wipe(&c);
    for (i = 0; i < 6; i++) {
        ck_assert_int_eq(secret[i], 0);
    }
    ck_assert_int_eq(key[0], 0);
    ck_assert_int_eq(key[1], 0);
    key = t.key;
    tb_cred_wipe(&t);
    for (i = 0; i < 6; i++) {
        ck_assert_int_eq(key[i], 0);
    }
    /* wiping nothing is harmless */
    memset(&c, 0, sizeof(c));
    tb_cred_wipe(&c);
}
END_TEST

/*--------------------------------------------------------------------------*/
/* Digests and secrets                                                      */

START_TEST(sha256_vectors)
{
    char hex[TB_DIGEST_HEX + 1];

    tb_sha256_hex("", 0, hex);
    ck_assert_str_eq(hex, "e3b0c44298fc1c149afbf4c8996fb924"
                          "27ae41e4649b934ca495991b7852b855");
    tb_sha256_hex("abc", 3, hex);
    ck_assert_str_eq(hex, "ba7816bf8f01cfea414140de5dae2223"
                          "b00361a396177a9cb410ff61f20015ad");
    tb_sha256_hex("a\0b", 3, hex);        /* length, not NUL, ends the data */
    ck_assert_str_ne(hex, "ca978112ca1bbdcafac231b39a23dc4d"
                          "a786eff8147c4e72b9807785afee48bb");
    ck_assert_uint_eq(strlen(hex), TB_DIGEST_HEX);
}
END_TEST

/* fed in pieces (the event dedup key), the digest of the whole */
START_TEST(sha256_pieces)
{
    char hex[TB_DIGEST_HEX + 1], whole[TB_DIGEST_HEX + 1];
    tb_sha256_t *h = tb_sha256_start(pool);

    ck_assert_ptr_nonnull(h);
    tb_sha256_add(h, "a", 1);
    tb_sha256_add(h, "", 0);
    tb_sha256_add(h, "bc", 2);
    tb_sha256_end_hex(h, hex);
    ck_assert_str_eq(hex, "ba7816bf8f01cfea414140de5dae2223"
                          "b00361a396177a9cb410ff61f20015ad");
    h = tb_sha256_start(pool);
    tb_sha256_add(h, "a\0b\0", 4);
    tb_sha256_end_hex(h, hex);
    tb_sha256_hex("a\0b\0", 4, whole);
    ck_assert_str_eq(hex, whole);
}
END_TEST

static tb_key *key_with(const char *secret, const char *old, double until)
{
    tb_key *k = apr_pcalloc(pool, sizeof(*k));

    k->key_id = "kid";
    k->project = "p";
    if (secret) {
        tb_sha256_hex(secret, strlen(secret), k->digest);
    }
    if (old) {
        tb_sha256_hex(old, strlen(old), k->old_digest);
    }
    k->old_until = until;
    return k;
}

START_TEST(secret_current)
{
    tb_key *k = key_with("s3cret-current", NULL, 0);

    ck_assert_int_eq(tb_secret_ok(k, "s3cret-current", 14, 1000), 1);
    ck_assert_int_eq(tb_secret_ok(k, "s3cret-curren", 13, 1000), 0);
    ck_assert_int_eq(tb_secret_ok(k, "s3cret-currentX", 15, 1000), 0);
    ck_assert_int_eq(tb_secret_ok(k, "S3cret-current", 14, 1000), 0);
    ck_assert_int_eq(tb_secret_ok(k, "", 0, 1000), 0);
    /* the length given counts, not a NUL */
    ck_assert_int_eq(tb_secret_ok(k, "s3cret-current\0x", 16, 1000), 0);
}
END_TEST

START_TEST(secret_rotation_grace)
{
    tb_key *k = key_with("new-secret", "old-secret", 2000.5);

    /* inside the grace period: both */
    ck_assert_int_eq(tb_secret_ok(k, "new-secret", 10, 1000), 1);
    ck_assert_int_eq(tb_secret_ok(k, "old-secret", 10, 1000), 1);
    ck_assert_int_eq(tb_secret_ok(k, "old-secret", 10, 2000.4), 1);
    ck_assert_int_eq(tb_secret_ok(k, "other", 5, 1000), 0);
    /* at and after its end: only the new one */
    ck_assert_int_eq(tb_secret_ok(k, "old-secret", 10, 2000.5), 0);
    ck_assert_int_eq(tb_secret_ok(k, "old-secret", 10, 5000), 0);
    ck_assert_int_eq(tb_secret_ok(k, "new-secret", 10, 5000), 1);
}
END_TEST

START_TEST(secret_no_digest)
{
    /* a public key has no secret digest: nothing matches, not even "" */
    tb_key *k = key_with(NULL, NULL, 0);
    tb_key *bad = key_with("x", NULL, 0);

    ck_assert_int_eq(tb_secret_ok(k, "", 0, 1000), 0);
    ck_assert_int_eq(tb_secret_ok(k, "anything", 8, 1000), 0);
    /* an expired old digest alone does not help */
    k = key_with(NULL, "old", 10);
    ck_assert_int_eq(tb_secret_ok(k, "old", 3, 1000), 0);
    /* a stored digest of the wrong length never matches its prefix */
    bad->digest[10] = '\0';
    ck_assert_int_eq(tb_secret_ok(bad, "x", 1, 1000), 0);
}
END_TEST

/*--------------------------------------------------------------------------*/
/* tb_authorize                                                             */

static const char mixed_batch[] =
    "{\"commands\": ["
    "{\"name\": \"customers/events\", \"data\": {\"customer_ids\": "
    "{\"registered\": \"a\"}, \"event_type\": \"purchase\"}},"               /* 0 */
    "{\"name\": \"customers/events\", \"data\": {\"customer_ids\": "
    "{\"registered\": \"a\"}, \"event_type\": \"view\"}},"                   /* 1 */
    "{\"name\": \"customers\", \"command_id\": 7, \"data\": "
    "{\"customer_ids\": {\"registered\": \"a\"}, "
    "\"properties\": {\"first_name\": \"A\"}}},"                             /* 2 */
    "{\"name\": \"customers\", \"data\": {\"customer_ids\": "
    "{\"registered\": \"a\"}, "
    "\"properties\": {\"first_name\": \"A\", \"last_name\": \"B\"}}},"       /* 3 */
    "{\"name\": \"system/time\"},"                                           /* 4 */
    "{\"name\": \"customers/events\", \"data\": {\"customer_ids\": "
    "{\"registered\": \"a\"}}},"                                             /* 5 */
    "{\"name\": \"customers\", \"data\": {\"customer_ids\": "
    "{\"registered\": \"a\"}, \"properties\": {}}}"                          /* 6 */
    "]}";

static void parse_batch(tb_batch *b)
{
    tb_limits lim;
    apr_array_header_t *ids = apr_array_make(pool, 2, sizeof(tb_id_type));
    tb_id_type *t;
    const char *why = NULL, *err;

    t = apr_array_push(ids);
    t->name = "registered";
    t->hard = 1;
    t = apr_array_push(ids);
    t->name = "cookie";
    t->hard = 0;
    lim.max_commands = 50;
    lim.max_command_size = 819200;
    lim.max_value_size = 16384;
    lim.max_name_len = 128;
    lim.id_types = ids;
    err = tb_batch_parse(pool, mixed_batch, strlen(mixed_batch),
                         TB_BODY_BATCH, &lim, 1700000000.0, b, &why);
    ck_assert_msg(err == NULL, "batch refused: %s", err ? err : "");
    ck_assert_int_eq(b->commands->nelts, 7);
    /* 0-3 and 6 valid, 4 is system/time, 5 lacks its event type */
    ck_assert_int_eq(b->n_valid, 5);
}

static tb_command *cmd(tb_batch *b, int i)
{
    return &APR_ARRAY_IDX(b->commands, i, tb_command);
}

static void assert_denied(tb_batch *b, int i, const char *text)
{
    tb_command *c = cmd(b, i);

    ck_assert_msg(c->kind == TB_CMD_INVALID, "command %d not denied", i);
    ck_assert_ptr_nonnull(c->errors);
    ck_assert_int_eq(c->errors->nelts, 1);
    ck_assert_str_eq(APR_ARRAY_IDX(c->errors, 0, const char *), text);
}

static void assert_kept(tb_batch *b, int i, tb_cmd_kind kind)
{
    ck_assert_msg(cmd(b, i)->kind == kind, "command %d: kind %d, not %d", i,
                  cmd(b, i)->kind, kind);
    ck_assert_ptr_null(cmd(b, i)->errors);
}

static apr_array_header_t *names(const char *a, const char *b)
{
    apr_array_header_t *n = apr_array_make(pool, 2, sizeof(const char *));

    if (a) APR_ARRAY_PUSH(n, const char *) = a;
    if (b) APR_ARRAY_PUSH(n, const char *) = b;
    return n;
}

/* The invalid command keeps its own validation error, whatever the key. */
static void assert_invalid_untouched(tb_batch *b)
{
    tb_command *c = cmd(b, 5);

    ck_assert_int_eq(c->kind, TB_CMD_INVALID);
    ck_assert_int_eq(c->errors->nelts, 1);
    ck_assert_str_eq(APR_ARRAY_IDX(c->errors, 0, const char *),
                     "Field 'event_type' is required.");
}

START_TEST(authorize_all)
{
    tb_batch b;
    tb_key k;

    parse_batch(&b);
    memset(&k, 0, sizeof(k));
    k.customers_all = k.events_all = 1;
    tb_authorize(pool, &b, &k);
    ck_assert_int_eq(b.n_valid, 5);
    assert_kept(&b, 0, TB_CMD_EVENT);
    assert_kept(&b, 1, TB_CMD_EVENT);
    assert_kept(&b, 2, TB_CMD_CUSTOMER);
    assert_kept(&b, 3, TB_CMD_CUSTOMER);
    assert_kept(&b, 4, TB_CMD_TIME);
    assert_kept(&b, 6, TB_CMD_CUSTOMER);
    assert_invalid_untouched(&b);
}
END_TEST

static void authorize_none_with(apr_array_header_t *cust,
                                apr_array_header_t *ev)
{
    tb_batch b;
    tb_key k;

    parse_batch(&b);
    memset(&k, 0, sizeof(k));
    k.customers = cust;
    k.events = ev;
    tb_authorize(pool, &b, &k);
    ck_assert_int_eq(b.n_valid, 0);
    assert_denied(&b, 0, TB_ERR_NOT_AUTH_EVENTS);
    assert_denied(&b, 1, TB_ERR_NOT_AUTH_EVENTS);
    assert_denied(&b, 2, TB_ERR_NOT_AUTH_CUSTOMERS);
    assert_denied(&b, 3, TB_ERR_NOT_AUTH_CUSTOMERS);
    assert_kept(&b, 4, TB_CMD_TIME);
    assert_denied(&b, 6, TB_ERR_NOT_AUTH_CUSTOMERS);
    assert_invalid_untouched(&b);
    /* the command id survives a refusal (SPEC §3) */
    ck_assert_ptr_nonnull(cmd(&b, 2)->command_id_json);
    ck_assert_str_eq(cmd(&b, 2)->command_id_json, "7");
}

START_TEST(authorize_none)
{
    authorize_none_with(NULL, NULL);
    authorize_none_with(names(NULL, NULL), names(NULL, NULL));
}
END_TEST

START_TEST(authorize_texts)
{
    ck_assert_str_eq(TB_ERR_NOT_AUTH_CUSTOMERS,
                     "Not authorized to update specified customer properties");
    ck_assert_str_eq(TB_ERR_NOT_AUTH_EVENTS,
                     "Not authorized to add event of specified type");
}
END_TEST

START_TEST(authorize_named)
{
    tb_batch b;
    tb_key k;

    parse_batch(&b);
    memset(&k, 0, sizeof(k));
    k.events = names("purchase", NULL);
    k.customers = names("email", "first_name");
    tb_authorize(pool, &b, &k);
    assert_kept(&b, 0, TB_CMD_EVENT);
    assert_denied(&b, 1, TB_ERR_NOT_AUTH_EVENTS);
    assert_kept(&b, 2, TB_CMD_CUSTOMER);          /* first_name only */
    assert_denied(&b, 3, TB_ERR_NOT_AUTH_CUSTOMERS);   /* + last_name */
    assert_kept(&b, 4, TB_CMD_TIME);
    assert_invalid_untouched(&b);
    ck_assert_int_eq(b.n_valid, 3);
}
END_TEST

START_TEST(authorize_events_only)
{
    tb_batch b;
    tb_key k;

    parse_batch(&b);
    memset(&k, 0, sizeof(k));
    k.events_all = 1;
    k.customers = names(NULL, NULL);
    tb_authorize(pool, &b, &k);
    assert_kept(&b, 0, TB_CMD_EVENT);
    assert_kept(&b, 1, TB_CMD_EVENT);
    assert_denied(&b, 2, TB_ERR_NOT_AUTH_CUSTOMERS);
    assert_denied(&b, 3, TB_ERR_NOT_AUTH_CUSTOMERS);
    assert_denied(&b, 6, TB_ERR_NOT_AUTH_CUSTOMERS);
    ck_assert_int_eq(b.n_valid, 2);
}
END_TEST

START_TEST(authorize_names_exact)
{
    tb_batch b;
    tb_key k;

    /* names match exactly: no case folding, no prefixes */
    parse_batch(&b);
    memset(&k, 0, sizeof(k));
    k.events = names("Purchase", "purchas");
    k.customers = names("First_name", "first_nam");
    tb_authorize(pool, &b, &k);
    assert_denied(&b, 0, TB_ERR_NOT_AUTH_EVENTS);
    assert_denied(&b, 1, TB_ERR_NOT_AUTH_EVENTS);
    assert_denied(&b, 2, TB_ERR_NOT_AUTH_CUSTOMERS);
    assert_denied(&b, 3, TB_ERR_NOT_AUTH_CUSTOMERS);
    ck_assert_int_eq(b.n_valid, 1);               /* command 6: {} */
}
END_TEST

/*--------------------------------------------------------------------------*/
/* Key cache                                                                */

static tb_key *cache_key(const char *id)
{
    tb_key *k = key_with("cached-secret", "old-secret", 123.25);

    k->key_id = apr_pstrdup(pool, id);
    k->project = "proj";
    k->is_public = 0;
    k->disabled = 1;
    k->events_all = 1;
    k->customers = names("first_name", "email");
    k->events = names(NULL, NULL);
    return k;
}

START_TEST(keycache_roundtrip)
{
    tb_keycache *c;
    tb_key *k = cache_key("k1"), *got;
    apr_pool_t *p2;

    ck_assert_int_eq(tb_keycache_create(pool, apr_time_from_sec(60), 10, &c),
                     APR_SUCCESS);
    ck_assert_ptr_null(tb_keycache_get(c, pool, "k1"));
    tb_keycache_put(c, "k1", k);
    /* the cache holds its own copy */
    k->key_id = "changed";
    k->customers = NULL;
    memset(k->digest, 'x', TB_DIGEST_HEX);

    apr_pool_create(&p2, pool);
    got = tb_keycache_get(c, p2, "k1");
    ck_assert_ptr_nonnull(got);
    ck_assert_str_eq(got->key_id, "k1");
    ck_assert_str_eq(got->project, "proj");
    ck_assert_int_eq(got->disabled, 1);
    ck_assert_int_eq(got->events_all, 1);
    ck_assert_int_eq(got->customers_all, 0);
    ck_assert(got->old_until == 123.25);
    ck_assert_int_eq(tb_secret_ok(got, "cached-secret", 13, 100), 1);
    ck_assert_int_eq(tb_secret_ok(got, "old-secret", 10, 100), 1);
    ck_assert_int_eq(got->customers->nelts, 2);
    ck_assert_str_eq(APR_ARRAY_IDX(got->customers, 1, const char *), "email");
    ck_assert_int_eq(got->events->nelts, 0);
    /* each get is a fresh copy: changing it does not change the cache */
    got->disabled = 0;
    APR_ARRAY_IDX(got->customers, 0, const char *) = "other";
    apr_pool_destroy(p2);
    got = tb_keycache_get(c, pool, "k1");
    ck_assert_int_eq(got->disabled, 1);
    ck_assert_str_eq(APR_ARRAY_IDX(got->customers, 0, const char *),
                     "first_name");
    /* other lookups miss */
    ck_assert_ptr_null(tb_keycache_get(c, pool, "k2"));
    ck_assert_ptr_null(tb_keycache_get(c, pool, "k"));
}
END_TEST

START_TEST(keycache_replace)
{
    tb_keycache *c;
    tb_key *k = cache_key("k1");

    ck_assert_int_eq(tb_keycache_create(pool, apr_time_from_sec(60), 10, &c),
                     APR_SUCCESS);
    tb_keycache_put(c, "k1", k);
    k->disabled = 0;
    tb_keycache_put(c, "k1", k);
    ck_assert_int_eq(tb_keycache_get(c, pool, "k1")->disabled, 0);
}
END_TEST

START_TEST(keycache_ttl)
{
    tb_keycache *c;
    tb_key *k = cache_key("k1");

    /* margins of 200 ms either side of the 500 ms TTL */
    ck_assert_int_eq(tb_keycache_create(pool, apr_time_from_msec(500), 10,
                                        &c), APR_SUCCESS);
    tb_keycache_put(c, "k1", k);
    ck_assert_ptr_nonnull(tb_keycache_get(c, pool, "k1"));
    apr_sleep(apr_time_from_msec(300));
    tb_keycache_put(c, "k2", cache_key("k2"));
    ck_assert_ptr_nonnull(tb_keycache_get(c, pool, "k1"));
    apr_sleep(apr_time_from_msec(300));
    /* k1 is 600 ms old: stale; k2 300 ms: fresh */
    ck_assert_ptr_null(tb_keycache_get(c, pool, "k1"));
    ck_assert_ptr_nonnull(tb_keycache_get(c, pool, "k2"));
    apr_sleep(apr_time_from_msec(300));
    ck_assert_ptr_null(tb_keycache_get(c, pool, "k2"));
    /* a stale entry stays gone; a new put is fresh again */
    ck_assert_ptr_null(tb_keycache_get(c, pool, "k1"));
    tb_keycache_put(c, "k1", k);
    ck_assert_ptr_nonnull(tb_keycache_get(c, pool, "k1"));
}
END_TEST

START_TEST(keycache_ttl_zero)
{
    tb_keycache *c;

    ck_assert_int_eq(tb_keycache_create(pool, 0, 10, &c), APR_SUCCESS);
    tb_keycache_put(c, "k1", cache_key("k1"));
    ck_assert_ptr_null(tb_keycache_get(c, pool, "k1"));
}
END_TEST

START_TEST(keycache_max_entries_reset)
{
    tb_keycache *c;
    char id[16];
    int i;

    ck_assert_int_eq(tb_keycache_create(pool, apr_time_from_sec(60), 3, &c),
                     APR_SUCCESS);
    for (i = 0; i < 3; i++) {
        apr_snprintf(id, sizeof(id), "k%d", i);
        tb_keycache_put(c, id, cache_key(id));
    }
    /* replacing a present entry does not count as a new one */
    tb_keycache_put(c, "k2", cache_key("k2"));
    for (i = 0; i < 3; i++) {
        apr_snprintf(id, sizeof(id), "k%d", i);
        ck_assert_msg(tb_keycache_get(c, pool, id) != NULL, "%s missing", id);
    }
    /* the fourth empties the cache and is then the only entry */
    tb_keycache_put(c, "k3", cache_key("k3"));
    for (i = 0; i < 3; i++) {
        apr_snprintf(id, sizeof(id), "k%d", i);
        ck_assert_msg(tb_keycache_get(c, pool, id) == NULL, "%s kept", id);
    }
    ck_assert_str_eq(tb_keycache_get(c, pool, "k3")->key_id, "k3");
    /* and it fills again up to the maximum */
    tb_keycache_put(c, "k4", cache_key("k4"));
    tb_keycache_put(c, "k5", cache_key("k5"));
    ck_assert_ptr_nonnull(tb_keycache_get(c, pool, "k3"));
    ck_assert_ptr_nonnull(tb_keycache_get(c, pool, "k4"));
    ck_assert_ptr_nonnull(tb_keycache_get(c, pool, "k5"));
}
END_TEST

START_TEST(keycache_many_resets)
{
    tb_keycache *c;
    char id[16];
    int i;

    /* many cycles of filling and emptying: no crash, last entries kept */
    ck_assert_int_eq(tb_keycache_create(pool, apr_time_from_sec(60), 8, &c),
                     APR_SUCCESS);
    for (i = 0; i < 1000; i++) {
        apr_snprintf(id, sizeof(id), "k%d", i);
        tb_keycache_put(c, id, cache_key(id));
    }
    ck_assert_ptr_nonnull(tb_keycache_get(c, pool, "k999"));
    ck_assert_ptr_null(tb_keycache_get(c, pool, "k0"));
}
END_TEST

START_TEST(key_copy_deep)
{
    tb_key *k = cache_key("orig"), *c;
    apr_pool_t *p2;

    apr_pool_create(&p2, pool);
    c = tb_key_copy(p2, k);
    ck_assert_ptr_ne(c, k);
    ck_assert_ptr_ne(c->key_id, k->key_id);
    ck_assert_ptr_ne(c->customers, k->customers);
    ck_assert_ptr_ne(APR_ARRAY_IDX(c->customers, 0, const char *),
                     APR_ARRAY_IDX(k->customers, 0, const char *));
    ck_assert_str_eq(c->digest, k->digest);
    ck_assert_str_eq(c->old_digest, k->old_digest);
    k->events = NULL;
    c = tb_key_copy(p2, k);
    ck_assert_ptr_null(c->events);
    apr_pool_destroy(p2);
}
END_TEST

/*--------------------------------------------------------------------------*/

static Suite *auth_suite(void)
{
    Suite *s = suite_create("tb_auth");
    TCase *tc;

    tc = tcase_create("credentials");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, cred_none);
    tcase_add_test(tc, cred_token_casings);
    tcase_add_test(tc, cred_token_whitespace);
    tcase_add_test(tc, cred_token_length);
    tcase_add_test(tc, cred_token_malformed);
    tcase_add_test(tc, cred_query);
    tcase_add_test(tc, cred_header_wins_over_query);
    tcase_add_test(tc, cred_basic_casings);
    tcase_add_test(tc, cred_basic_padding_variants);
    tcase_add_test(tc, cred_basic_secret_with_colon_and_bytes);
    tcase_add_test(tc, cred_basic_malformed);
    tcase_add_test(tc, cred_basic_truncated_base64);
    tcase_add_test(tc, cred_basic_too_long);
    tcase_add_test(tc, cred_copies_and_wipe);
    suite_add_tcase(s, tc);

    tc = tcase_create("secrets");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, sha256_vectors);
    tcase_add_test(tc, sha256_pieces);
    tcase_add_test(tc, secret_current);
    tcase_add_test(tc, secret_rotation_grace);
    tcase_add_test(tc, secret_no_digest);
    suite_add_tcase(s, tc);

    tc = tcase_create("permissions");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, authorize_texts);
    tcase_add_test(tc, authorize_all);
    tcase_add_test(tc, authorize_none);
    tcase_add_test(tc, authorize_named);
    tcase_add_test(tc, authorize_events_only);
    tcase_add_test(tc, authorize_names_exact);
    suite_add_tcase(s, tc);

    tc = tcase_create("keycache");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, keycache_roundtrip);
    tcase_add_test(tc, keycache_replace);
    tcase_add_test(tc, keycache_ttl);
    tcase_add_test(tc, keycache_ttl_zero);
    tcase_add_test(tc, keycache_max_entries_reset);
    tcase_add_test(tc, keycache_many_resets);
    tcase_add_test(tc, key_copy_deep);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr;
    int failed;

    apr_initialize();
    sr = srunner_create(auth_suite());
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    apr_terminate();
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
