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

/**
 * @file tb_auth.h
 * @brief Access keys: credentials, digests, permissions, a key cache.
 * No httpd here.
 *
 * Public access: "Authorization: Token <key>" or "?access_token=<key>";
 * the key is found by its SHA-256.  Private access: "Authorization: Basic
 * base64(key_id:secret)"; the key is found by its id and the SHA-256 of
 * the secret compared in constant time.  Plaintext is wiped after use.
 */

#ifndef TB_AUTH_H
#define TB_AUTH_H

#include <apr_pools.h>
#include <apr_tables.h>
#include <apr_time.h>

#include "tb_batch.h"

#define TB_DIGEST_HEX 64      /* SHA-256 as lowercase hex */

/** Longest key id, public key or secret accepted. */
#define TB_MAX_CRED 256

typedef enum {
    TB_CRED_NONE,             /* nothing sent */
    TB_CRED_MALFORMED,        /* sent, but not a credential */
    TB_CRED_PUBLIC,           /* key */
    TB_CRED_PRIVATE           /* key id + secret */
} tb_cred_kind;

typedef struct {
    tb_cred_kind kind;
    char *key;                /* public key, or private key id */
    char *secret;             /* private only */
    apr_size_t secret_len;
} tb_cred;

/** A key as stored, with its permissions. */
typedef struct tb_key {
    const char *key_id;
    const char *project;
    int is_public;
    int disabled;
    char digest[TB_DIGEST_HEX + 1];       /* private: current secret */
    char old_digest[TB_DIGEST_HEX + 1];   /* private: before rotation, or "" */
    double old_until;                     /* old secret valid until */
    int customers_all;                    /* may set any property */
    int events_all;                       /* may add any event type */
    apr_array_header_t *customers;        /* const char *: allowed properties */
    apr_array_header_t *events;           /* const char *: allowed types */
} tb_key;

#define TB_ERR_NOT_AUTH_CUSTOMERS "Not authorized to update specified customer properties"
#define TB_ERR_NOT_AUTH_EVENTS    "Not authorized to add event of specified type"

/**
 * Read the credentials of a request.
 * @param authorization the Authorization header, or NULL
 * @param query_token the access_token query value, or NULL
 * The returned strings are copies in @a p; wipe them with tb_cred_wipe.
 */
tb_cred_kind tb_cred_parse(apr_pool_t *p, const char *authorization,
                           const char *query_token, tb_cred *out);

/** Overwrite the plaintext held by @a c. */
void tb_cred_wipe(tb_cred *c);

/** SHA-256 of @a data as lowercase hex into @a hex (65 bytes). */
void tb_sha256_hex(const void *data, apr_size_t len, char *hex);

/** The same digest fed piece by piece, so large input need not be copied
 * into one buffer first.  Freed with @a p. */
typedef struct tb_sha256_t tb_sha256_t;

/** @return a fresh digest, or NULL when out of memory */
tb_sha256_t *tb_sha256_start(apr_pool_t *p);
void tb_sha256_add(tb_sha256_t *h, const void *data, apr_size_t len);
/** Finish: lowercase hex into @a hex (65 bytes); @a h is spent. */
void tb_sha256_end_hex(tb_sha256_t *h, char *hex);

/**
 * Check a private key's secret: the current digest, or the previous one
 * until its grace period ends.  Constant time in the secret.
 * @return 1 when it matches
 */
int tb_secret_ok(const tb_key *k, const char *secret, apr_size_t len,
                 double now);

/**
 * Fail, one by one, the valid commands the key may not run (SPEC §6).
 * A customers command needs the key to allow each of its properties, an
 * event its event type.
 */
void tb_authorize(apr_pool_t *p, tb_batch *batch, const tb_key *k);

/** A per-process cache of keys by lookup string, shared by threads. */
typedef struct tb_keycache tb_keycache;

/**
 * @param p lives as long as the cache (a child process's pool)
 * @param ttl how long an entry is trusted
 * @param max entries kept at most
 */
apr_status_t tb_keycache_create(apr_pool_t *p, apr_interval_time_t ttl,
                                int max, tb_keycache **out);

/** A fresh copy in @a p of the cached key, or NULL when absent or stale. */
tb_key *tb_keycache_get(tb_keycache *c, apr_pool_t *p, const char *lookup);

/** Remember @a k (copied) under @a lookup. */
void tb_keycache_put(tb_keycache *c, const char *lookup, const tb_key *k);

/** Deep copy of a key into @a p. */
tb_key *tb_key_copy(apr_pool_t *p, const tb_key *k);

#endif /* TB_AUTH_H */
