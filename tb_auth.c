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

#include <string.h>

#include <apr_crypto.h>
#include <apr_hash.h>
#include <apr_lib.h>
#include <apr_strings.h>
#include <apr_thread_mutex.h>
#include <openssl/evp.h>

#include "tb_auth.h"

/*--------------------------------------------------------------------------*/
/* Credentials                                                              */

/* Keys, key ids and public tokens: [A-Za-z0-9_-], 1 to TB_MAX_CRED. */
static int tb_key_chars_ok(const char *s, apr_size_t n)
{
    apr_size_t i;

    if (n == 0 || n > TB_MAX_CRED) {
        return 0;
    }
    for (i = 0; i < n; i++) {
        if (!apr_isalnum(s[i]) && s[i] != '_' && s[i] != '-') {
            return 0;
        }
    }
    return 1;
}

static int tb_b64_value(unsigned char c)
{
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
}

/* Strict base64 (RFC 4648, padded): apr_base64_decode accepts anything,
 * so a truncated header would decode to a shorter, different credential. */
static char *tb_b64_decode(apr_pool_t *p, const char *s, apr_size_t n,
                           apr_size_t *outlen)
{
    char *out;
    apr_size_t i, o = 0;

    if (n == 0 || n % 4 || n > 4 * (2 * TB_MAX_CRED + 1) / 3 + 4) {
        return NULL;
    }
    out = apr_palloc(p, n / 4 * 3 + 1);
    for (i = 0; i < n; i += 4) {
        int v[4], k, pad = 0;
        for (k = 0; k < 4; k++) {
            if (s[i + k] == '=' && i + 4 == n && k >= 2) {
                v[k] = 0;
                pad++;
            }
            else if (pad || (v[k] = tb_b64_value((unsigned char)s[i + k])) < 0) {
                return NULL;
            }
        }
        out[o++] = (char)((v[0] << 2) | (v[1] >> 4));
        if (pad < 2) out[o++] = (char)(((v[1] & 0xF) << 4) | (v[2] >> 2));
        if (pad < 1) out[o++] = (char)(((v[2] & 0x3) << 6) | v[3]);
    }
    out[o] = '\0';
    *outlen = o;
    return out;
}

tb_cred_kind tb_cred_parse(apr_pool_t *p, const char *authorization,
                           const char *query_token, tb_cred *out)
{
    memset(out, 0, sizeof(*out));

    if (authorization) {
        const char *v = authorization;
        apr_size_t scheme = strcspn(v, " \t");
        const char *arg = v + scheme;
        apr_size_t n;

        while (*arg == ' ' || *arg == '\t') {
            arg++;
        }
        n = strlen(arg);
        while (n && (arg[n - 1] == ' ' || arg[n - 1] == '\t')) {
            n--;
        }
        if (scheme == 5 && !strncasecmp(v, "Token", 5)) {
            if (!tb_key_chars_ok(arg, n)) {
                return out->kind = TB_CRED_MALFORMED;
            }
            out->key = apr_pstrmemdup(p, arg, n);
            return out->kind = TB_CRED_PUBLIC;
        }
        if (scheme == 5 && !strncasecmp(v, "Basic", 5)) {
            apr_size_t dlen;
            char *dec = tb_b64_decode(p, arg, n, &dlen);
            char *colon = dec ? memchr(dec, ':', dlen) : NULL;

            if (!colon || !tb_key_chars_ok(dec, colon - dec)
                || colon + 1 == dec + dlen
                || memchr(dec, '\0', dlen)) {
                if (dec) {
                    apr_crypto_memzero(dec, dlen);
                }
                return out->kind = TB_CRED_MALFORMED;
            }
            *colon = '\0';
            out->key = dec;
            out->secret = colon + 1;
            out->secret_len = dlen - (colon + 1 - dec);
            return out->kind = TB_CRED_PRIVATE;
        }
        return out->kind = TB_CRED_MALFORMED;
    }
    if (query_token) {
        if (!tb_key_chars_ok(query_token, strlen(query_token))) {
            return out->kind = TB_CRED_MALFORMED;
        }
        out->key = apr_pstrdup(p, query_token);
        return out->kind = TB_CRED_PUBLIC;
    }
    return out->kind = TB_CRED_NONE;
}

void tb_cred_wipe(tb_cred *c)
{
    if (c->secret) {
        apr_crypto_memzero(c->secret, c->secret_len);
    }
    if (c->key) {
        apr_crypto_memzero(c->key, strlen(c->key));
    }
}

static void tb_hex(const unsigned char *md, unsigned int mdlen, char *hex)
{
    static const char digits[] = "0123456789abcdef";
    unsigned int i;

    for (i = 0; i < mdlen && i < TB_DIGEST_HEX / 2; i++) {
        hex[2 * i] = digits[md[i] >> 4];
        hex[2 * i + 1] = digits[md[i] & 0xF];
    }
    hex[TB_DIGEST_HEX] = '\0';
}

void tb_sha256_hex(const void *data, apr_size_t len, char *hex)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;

    EVP_Digest(data, len, md, &mdlen, EVP_sha256(), NULL);
    tb_hex(md, mdlen, hex);
    apr_crypto_memzero(md, sizeof(md));
}

struct tb_sha256_t {
    EVP_MD_CTX *ctx;
    apr_pool_t *pool;
};

static apr_status_t tb_sha256_cleanup(void *h)
{
    EVP_MD_CTX_free(((tb_sha256_t *)h)->ctx);
    return APR_SUCCESS;
}

tb_sha256_t *tb_sha256_start(apr_pool_t *p)
{
    tb_sha256_t *h = apr_palloc(p, sizeof(*h));

    h->pool = p;
    h->ctx = EVP_MD_CTX_new();
    if (!h->ctx || !EVP_DigestInit_ex(h->ctx, EVP_sha256(), NULL)) {
        EVP_MD_CTX_free(h->ctx);
        return NULL;
    }
    apr_pool_cleanup_register(p, h, tb_sha256_cleanup, apr_pool_cleanup_null);
    return h;
}

void tb_sha256_add(tb_sha256_t *h, const void *data, apr_size_t len)
{
    EVP_DigestUpdate(h->ctx, data, len);
}

void tb_sha256_end_hex(tb_sha256_t *h, char *hex)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;

    EVP_DigestFinal_ex(h->ctx, md, &mdlen);
    tb_hex(md, mdlen, hex);
    apr_crypto_memzero(md, sizeof(md));
    /* one per event: not kept until the pool goes */
    apr_pool_cleanup_run(h->pool, h, tb_sha256_cleanup);
}

int tb_secret_ok(const tb_key *k, const char *secret, apr_size_t len,
                 double now)
{
    char hex[TB_DIGEST_HEX + 1];
    int ok;

    tb_sha256_hex(secret, len, hex);
    ok = strlen(k->digest) == TB_DIGEST_HEX
         && apr_crypto_equals(hex, k->digest, TB_DIGEST_HEX);
    /* both compared whatever the first gave: no early exit to time */
    ok |= strlen(k->old_digest) == TB_DIGEST_HEX && now < k->old_until
          && apr_crypto_equals(hex, k->old_digest, TB_DIGEST_HEX);
    apr_crypto_memzero(hex, sizeof(hex));
    return ok;
}

/*--------------------------------------------------------------------------*/
/* Permissions                                                              */

static int tb_allowed(const apr_array_header_t *names, const char *name)
{
    int i;

    for (i = 0; names && i < names->nelts; i++) {
        if (!strcmp(APR_ARRAY_IDX(names, i, const char *), name)) {
            return 1;
        }
    }
    return 0;
}

static void tb_deny(apr_pool_t *p, tb_batch *batch, tb_command *c,
                    const char *text)
{
    c->kind = TB_CMD_INVALID;
    c->errors = apr_array_make(p, 1, sizeof(const char *));
    APR_ARRAY_PUSH(c->errors, const char *) = text;
    batch->n_valid--;
}

void tb_authorize(apr_pool_t *p, tb_batch *batch, const tb_key *k)
{
    int i, j;

    for (i = 0; i < batch->commands->nelts; i++) {
        tb_command *c = &APR_ARRAY_IDX(batch->commands, i, tb_command);

        if (c->kind == TB_CMD_EVENT && !k->events_all
            && !tb_allowed(k->events, c->event_type)) {
            tb_deny(p, batch, c, TB_ERR_NOT_AUTH_EVENTS);
        }
        else if (c->kind == TB_CMD_CUSTOMER && !k->customers_all) {
            int ok = k->customers && k->customers->nelts > 0;
            for (j = 0; ok && j < c->props->nelts; j++) {
                ok = tb_allowed(k->customers,
                                APR_ARRAY_IDX(c->props, j, tb_prop).name);
            }
            if (!ok) {
                tb_deny(p, batch, c, TB_ERR_NOT_AUTH_CUSTOMERS);
            }
        }
    }
}

/*--------------------------------------------------------------------------*/
/* Key cache                                                                */

static apr_array_header_t *tb_names_copy(apr_pool_t *p,
                                         const apr_array_header_t *a)
{
    apr_array_header_t *c;
    int i;

    if (!a) {
        return NULL;
    }
    c = apr_array_make(p, a->nelts, sizeof(const char *));
    for (i = 0; i < a->nelts; i++) {
        APR_ARRAY_PUSH(c, const char *) =
            apr_pstrdup(p, APR_ARRAY_IDX(a, i, const char *));
    }
    return c;
}

tb_key *tb_key_copy(apr_pool_t *p, const tb_key *k)
{
    tb_key *c = apr_pmemdup(p, k, sizeof(*k));

    c->key_id = apr_pstrdup(p, k->key_id);
    c->project = apr_pstrdup(p, k->project);
    c->customers = tb_names_copy(p, k->customers);
    c->events = tb_names_copy(p, k->events);
    return c;
}

typedef struct {
    apr_pool_t *pool;       /* the entry's own; destroyed on eviction */
    const char *lookup;
    apr_time_t expires;
    tb_key *key;
} tb_cache_entry;

/* Pools: root (its own allocator) > table (the hash) > one per entry.
 * Every pool operation happens under the mutex, so threads never race on
 * them; emptying the cache is destroying the table pool. */
struct tb_keycache {
    apr_thread_mutex_t *mutex;
    apr_pool_t *root;
    apr_pool_t *table;
    apr_hash_t *entries;
    apr_interval_time_t ttl;
    int max;
};

apr_status_t tb_keycache_create(apr_pool_t *p, apr_interval_time_t ttl,
                                int max, tb_keycache **out)
{
    tb_keycache *c = apr_pcalloc(p, sizeof(*c));
    apr_allocator_t *alloc;
    apr_status_t rv;

    rv = apr_thread_mutex_create(&c->mutex, APR_THREAD_MUTEX_DEFAULT, p);
    if (rv == APR_SUCCESS) {
        rv = apr_allocator_create(&alloc);
    }
    if (rv == APR_SUCCESS) {
        rv = apr_pool_create_ex(&c->root, p, NULL, alloc);
        if (rv == APR_SUCCESS) {
            apr_allocator_owner_set(alloc, c->root);
        }
        else {
            apr_allocator_destroy(alloc);
        }
    }
    if (rv != APR_SUCCESS) {
        return rv;
    }
    apr_pool_create(&c->table, c->root);
    c->entries = apr_hash_make(c->table);
    c->ttl = ttl;
    c->max = max;
    *out = c;
    return APR_SUCCESS;
}

static void tb_cache_drop(tb_keycache *c, tb_cache_entry *e)
{
    apr_hash_set(c->entries, e->lookup, APR_HASH_KEY_STRING, NULL);
    apr_pool_destroy(e->pool);
}

tb_key *tb_keycache_get(tb_keycache *c, apr_pool_t *p, const char *lookup)
{
    tb_cache_entry *e;
    tb_key *k = NULL;

    if (c->ttl <= 0) {
        return NULL;
    }
    apr_thread_mutex_lock(c->mutex);
    e = apr_hash_get(c->entries, lookup, APR_HASH_KEY_STRING);
    if (e && apr_time_now() >= e->expires) {
        tb_cache_drop(c, e);
        e = NULL;
    }
    if (e) {
        k = tb_key_copy(p, e->key);
    }
    apr_thread_mutex_unlock(c->mutex);
    return k;
}

void tb_keycache_put(tb_keycache *c, const char *lookup, const tb_key *k)
{
    tb_cache_entry *e;
    apr_pool_t *ep;

    if (c->ttl <= 0) {
        return;
    }
    apr_thread_mutex_lock(c->mutex);
    e = apr_hash_get(c->entries, lookup, APR_HASH_KEY_STRING);
    if (e) {
        tb_cache_drop(c, e);
    }
    if ((int)apr_hash_count(c->entries) >= c->max) {
        /* full: start again rather than track recency; a miss costs one
         * indexed lookup */
        apr_pool_destroy(c->table);
        apr_pool_create(&c->table, c->root);
        c->entries = apr_hash_make(c->table);
    }
    if (apr_pool_create(&ep, c->table) == APR_SUCCESS) {
        e = apr_palloc(ep, sizeof(*e));
        e->pool = ep;
        e->lookup = apr_pstrdup(ep, lookup);
        e->expires = apr_time_now() + c->ttl;
        e->key = tb_key_copy(ep, k);
        apr_hash_set(c->entries, e->lookup, APR_HASH_KEY_STRING, e);
    }
    apr_thread_mutex_unlock(c->mutex);
}
