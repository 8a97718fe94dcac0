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
 * libFuzzer harness over the httpd-free core: body -> tb_batch_parse ->
 * tb_answer_batch / tb_answer_error, the way tb_handler drives it.
 *
 * Input layout: 4 control bytes, then the request body.
 *
 *   h[0] bits 0-1  route: 0 batch, 1 customers, 2 customers/events, 3 batch
 *        bits 2-3  limits: 0-1 the defaults (50 commands, 800 KB, 16 KB,
 *                  128), 2 small ones taken from h[1], 3 all at 1; with 1
 *                  the first read buffer is 16 << (h1 & 7) bytes instead of
 *                  the handler's 8192, so that its doubling realloc runs on
 *                  the short bodies fuzzed here
 *        bit  4    configured ids: 0 the defaults (registered hard, cookie
 *                  soft), 1 a TrackBatchCustomerId set (email, registered,
 *                  phone.number, x-y_z)
 *        bit  5    the client declared a Content-Length (sizes the first
 *                  read buffer, as in tb_read_body)
 *        bits 6-7  receipt time: 1700000000.25, 0.5, 1e9+0.123456, 4102444800
 *   h[1]           small limits: commands 1 + (h1 & 3), name length
 *                  1 + ((h1 >> 2) & 7), value size 1 + (h1 >> 5) * 8,
 *                  command size 16 << ((h1 >> 3) & 7); the body limit is
 *                  commands x command size, as TrackBatchMaxBody's default
 *   h[2], h[3]     where the body is split into buckets: piece lengths are
 *                  drawn from 0 .. 2^(h2 % 17) by an xorshift seeded with
 *                  h2 and h3 (h2 >= 0xF0: every piece is 1 byte)
 *
 * For every input the body is read twice through a copy of tb_read_body's
 * buffering (malloc, doubling realloc, per-bucket limit check, NUL), once as
 * one bucket and once in the pieces above, parsed and answered in a fresh
 * pool each time, and the two answers must be byte-identical.  Each answer
 * is checked: the whole-request texts are the documented ones, a batch has
 * 1..max_commands commands (one for a single route), every answer is strict
 * JSON (our scanner and json-c agree on it) with exactly one result per
 * command matching the record, and valid records hold what the store needs.
 * Differential: whenever tb_json_scan accepts the body, json-c 0.16 with
 * JSON_TOKENER_STRICT must parse it fully, with only finite numbers.
 *
 * Known findings: TB_FUZZ_KNOWN in the environment, a list of the names
 * below, tolerates them so that a run can look past a finding that is not
 * fixed yet (each saved under tests/fuzz/crashes/):
 *   lead308  tb_scan_number's exact check for numbers whose leading digit
 *            has decimal exponent 308 formats "e%lld" with apr_psprintf,
 *            which has no %lld: strtod reads the digits alone, so 1.8e308
 *            .. 9.99e308 pass the scanner (json-c reads them as inf).
 *   depth32  a single-route body nested exactly 32 deep (SPEC §2 allows
 *            32) passes the scanner, but tb_batch_parse parses the whole
 *            body with json_tokener_new_ex(TB_JSON_MAX_DEPTH), and json-c's
 *            max_depth D takes only D - 1 levels of non-empty containers:
 *            400 Invalid JSON, "json-c refused what the scanner accepted".
 *
 * Pool memory: with TB_FUZZ_POOL_SHIM (the default) apr_palloc is
 * interposed so that every pool allocation is its own malloc block freed by
 * a pool cleanup: ASan then sees overruns of pool buffers (tb_sb_t, copies,
 * arrays), as APR's pool-debug build would show them.  apr_psprintf still
 * writes into real pool blocks.
 */

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <assert.h>
#include <dlfcn.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <apr_general.h>
#include <apr_pools.h>
#include <apr_strings.h>
#include <apr_tables.h>
#include <json-c/json.h>

#include "tb_batch.h"
#include "tb_json.h"

#ifndef TB_FUZZ_POOL_SHIM
#define TB_FUZZ_POOL_SHIM 1
#endif

/* Failures abort with the reason, so libFuzzer saves the input. */
#define CHECK(cond, ...) do {                                             \
        if (!(cond)) {                                                    \
            fprintf(stderr, "fuzz_batch: check failed at %s:%d: %s\n",    \
                    __FILE__, __LINE__, #cond);                           \
            fprintf(stderr, "fuzz_batch: " __VA_ARGS__);                  \
            fputc('\n', stderr);                                          \
            abort();                                                      \
        }                                                                 \
    } while (0)

/*--------------------------------------------------------------------------*/
/* apr_palloc as malloc blocks                                              */

#if TB_FUZZ_POOL_SHIM
typedef void *(*tb_palloc_fn)(apr_pool_t *, apr_size_t);
static tb_palloc_fn real_palloc;
static __thread int in_shim;

static apr_status_t shim_free(void *m)
{
    free(m);
    return APR_SUCCESS;
}

void *apr_palloc(apr_pool_t *p, apr_size_t size)
{
    void *m;

    if (!real_palloc) {
        real_palloc = (tb_palloc_fn)dlsym(RTLD_NEXT, "apr_palloc");
        if (!real_palloc) {
            abort();
        }
    }
    if (in_shim) {
        return real_palloc(p, size);
    }
    m = malloc(size ? size : 1);
    if (!m) {
        abort();
    }
    in_shim = 1;
    apr_pool_cleanup_register(p, m, shim_free, apr_pool_cleanup_null);
    in_shim = 0;
    return m;
}
#endif

/*--------------------------------------------------------------------------*/
/* Set-up                                                                   */

static apr_pool_t *g_pool;
static int g_known_lead308, g_known_depth32;

/* json-c's max_depth D accepts D - 1 levels of non-empty containers (D
 * only when the innermost is empty), so the grammar checks below give it
 * one more than the 32 levels SPEC §2 allows. */
#define JSONC_DEPTH (TB_JSON_MAX_DEPTH + 1)
static apr_array_header_t *g_default_ids, *g_custom_ids;

static void add_id(apr_array_header_t *a, const char *name, int hard)
{
    tb_id_type *t = apr_array_push(a);
    t->name = name;
    t->hard = hard;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    if (apr_initialize() != APR_SUCCESS) {
        abort();
    }
    atexit(apr_terminate);
    {
        const char *k = getenv("TB_FUZZ_KNOWN");
        g_known_lead308 = k && strstr(k, "lead308") != NULL;
        g_known_depth32 = k && strstr(k, "depth32") != NULL;
    }
    apr_pool_create(&g_pool, NULL);
    g_default_ids = apr_array_make(g_pool, 2, sizeof(tb_id_type));
    add_id(g_default_ids, "registered", 1);
    add_id(g_default_ids, "cookie", 0);
    g_custom_ids = apr_array_make(g_pool, 4, sizeof(tb_id_type));
    add_id(g_custom_ids, "email", 1);
    add_id(g_custom_ids, "registered", 0);
    add_id(g_custom_ids, "phone.number", 0);
    add_id(g_custom_ids, "x-y_z", 1);
    return 0;
}

typedef struct {
    tb_body_kind kind;
    tb_limits lim;
    apr_size_t body_limit;
    apr_size_t first_cap;
    int declare_length;
    double now;
    unsigned split_bits;
    uint32_t split_seed;
} fuzz_conf;

static void read_conf(const uint8_t *h, fuzz_conf *fc)
{
    static const double nows[4] = { 1700000000.25, 0.5, 1000000000.123456,
                                    4102444800.0 };
    int mode = (h[0] >> 2) & 3;

    memset(fc, 0, sizeof(*fc));
    fc->kind = (h[0] & 3) == 1 ? TB_BODY_CUSTOMER
             : (h[0] & 3) == 2 ? TB_BODY_EVENT : TB_BODY_BATCH;
    if (mode < 2) {
        fc->lim.max_commands = 50;
        fc->lim.max_command_size = 800 * 1024;
        fc->lim.max_value_size = 16 * 1024;
        fc->lim.max_name_len = 128;
    }
    else if (mode == 2) {
        fc->lim.max_commands = 1 + (h[1] & 3);
        fc->lim.max_name_len = 1 + ((h[1] >> 2) & 7);
        fc->lim.max_value_size = 1 + (apr_size_t)(h[1] >> 5) * 8;
        fc->lim.max_command_size = (apr_size_t)16 << ((h[1] >> 3) & 7);
    }
    else {
        fc->lim.max_commands = 1;
        fc->lim.max_name_len = 1;
        fc->lim.max_value_size = 1;
        fc->lim.max_command_size = 1;
    }
    fc->first_cap = mode == 1 ? (apr_size_t)16 << (h[1] & 7) : 8192;
    fc->lim.id_types = (h[0] & 0x10) ? g_custom_ids : g_default_ids;
    fc->body_limit = (apr_size_t)fc->lim.max_commands
                     * fc->lim.max_command_size;
    fc->declare_length = (h[0] & 0x20) != 0;
    fc->now = nows[h[0] >> 6];
    fc->split_bits = h[2] >= 0xF0 ? 0 : h[2] % 17;
    fc->split_seed = ((uint32_t)h[2] << 24 | (uint32_t)h[3] << 8 | 0x5bu)
                     ^ 0x9e3779b9u;
}

/*--------------------------------------------------------------------------*/
/* The reading path (tb_read_body without httpd)                            */

static apr_status_t read_free(void *buf)
{
    free(buf);
    return APR_SUCCESS;
}

/* Feed @a pieces bucket lengths (summing to len) into the handler's
 * buffer.  Returns 200 with the body and its length set, or 413. */
static int read_body(apr_pool_t *p, const fuzz_conf *fc, const uint8_t *data,
                     apr_size_t len, const apr_size_t *pieces,
                     apr_size_t npieces, char **body, apr_size_t *blen)
{
    apr_size_t cap = fc->first_cap, have = 0, i;
    char *buf;

    if (fc->declare_length) {
        if (len > fc->body_limit) {
            return 413;
        }
        if (len > 0) {
            cap = len + 1;
        }
    }
    buf = malloc(cap);
    CHECK(buf, "out of memory");
    apr_pool_cleanup_register(p, buf, read_free, apr_pool_cleanup_null);
    for (i = 0; i < npieces; i++) {
        apr_size_t n = pieces[i];
        if (have + n > fc->body_limit) {
            return 413;
        }
        if (have + n + 1 > cap) {
            char *nb;
            while (have + n + 1 > cap) {
                cap *= 2;
            }
            apr_pool_cleanup_kill(p, buf, read_free);
            nb = realloc(buf, cap);
            CHECK(nb, "out of memory");
            buf = nb;
            apr_pool_cleanup_register(p, buf, read_free,
                                      apr_pool_cleanup_null);
        }
        memcpy(buf + have, data + have, n);
        have += n;
    }
    CHECK(have == len, "pieces sum to %zu, not %zu", (size_t)have,
          (size_t)len);
    buf[have] = '\0';
    *body = buf;
    *blen = have;
    return 200;
}

/*--------------------------------------------------------------------------*/
/* Checks                                                                   */

/* Strict JSON by both parsers; returns the json-c tree (caller puts it). */
static struct json_object *parse_strict(apr_pool_t *p, const char *text,
                                        apr_size_t len, const char *what)
{
    tb_json_scan_t scan;
    struct json_tokener *tok;
    struct json_object *o;
    const char *why = tb_json_scan(p, text, len, 0, &scan);
    char *z;

    CHECK(!why, "%s is not strict JSON (%s): %.*s", what, why, (int)len, text);
    z = malloc(len + 1);
    CHECK(z, "out of memory");
    memcpy(z, text, len);
    z[len] = '\0';
    tok = json_tokener_new_ex(JSONC_DEPTH);
    CHECK(tok, "out of memory");
    json_tokener_set_flags(tok, JSON_TOKENER_STRICT);
    o = json_tokener_parse_ex(tok, z, (int)len + 1);
    CHECK(json_tokener_get_error(tok) == json_tokener_success,
          "json-c refuses %s (%s): %s", what,
          json_tokener_error_desc(json_tokener_get_error(tok)), z);
    CHECK(json_tokener_get_parse_end(tok) == len,
          "json-c stops %s at %zu of %zu", what,
          json_tokener_get_parse_end(tok), (size_t)len);
    json_tokener_free(tok);
    free(z);
    return o;
}

static int jstr_eq(struct json_object *o, const char *s)
{
    return json_object_is_type(o, json_type_string)
           && (size_t)json_object_get_string_len(o) == strlen(s)
           && !memcmp(json_object_get_string(o), s, strlen(s));
}

static int is_num(struct json_object *o)
{
    return json_object_is_type(o, json_type_double)
           || json_object_is_type(o, json_type_int);
}

static struct json_object *member(struct json_object *o, const char *k)
{
    struct json_object *v = NULL;
    return json_object_object_get_ex(o, k, &v) ? v : NULL;
}

/* One result object against its record (SPEC §3). */
static void check_result(struct json_object *r, const tb_command *c)
{
    struct json_object *ok, *errs, *cid;
    int keys = 1, i;

    CHECK(json_object_is_type(r, json_type_object), "result not an object");
    ok = member(r, "success");
    CHECK(ok && json_object_is_type(ok, json_type_boolean),
          "result without a boolean success");
    CHECK(json_object_get_boolean(ok) == (c->kind != TB_CMD_INVALID),
          "success %d for kind %d", json_object_get_boolean(ok), c->kind);
    errs = member(r, "errors");
    if (c->kind == TB_CMD_INVALID) {
        CHECK(errs && json_object_is_type(errs, json_type_array),
              "failed result without errors");
        CHECK((int)json_object_array_length(errs) == c->errors->nelts,
              "%zu errors answered, %d recorded",
              json_object_array_length(errs), c->errors->nelts);
        for (i = 0; i < c->errors->nelts; i++) {
            CHECK(jstr_eq(json_object_array_get_idx(errs, i),
                          APR_ARRAY_IDX(c->errors, i, const char *)),
                  "error %d differs from its record", i);
        }
        keys++;
    }
    else {
        CHECK(!errs, "successful result with errors");
    }
    if (c->kind == TB_CMD_TIME) {
        CHECK(is_num(member(r, "time")), "system/time result without time");
        keys++;
    }
    cid = member(r, "command_id");
    CHECK(!!cid == !!c->command_id_json, "command_id echo mismatch");
    if (cid) {
        CHECK(json_object_is_type(cid, json_type_string)
              || json_object_is_type(cid, json_type_int),
              "command_id echoed as type %d", json_object_get_type(cid));
        keys++;
    }
    CHECK(json_object_object_length(r) == keys, "result has %d keys, not %d",
          json_object_object_length(r), keys);
}

/* A usable id value (SPEC §4). */
static int usable_id(const char *s)
{
    if (!strcasecmp(s, "null") || !strcasecmp(s, "undefined")) {
        return 0;
    }
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if ((ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'z')
            || (ch >= 'A' && ch <= 'Z') || ch >= 0x80) {
            return 1;
        }
    }
    return 0;
}

/* What a valid record must hold for the store. */
static void check_record(apr_pool_t *p, const fuzz_conf *fc,
                         const tb_command *c)
{
    int i, j;

    if (c->kind == TB_CMD_INVALID) {
        CHECK(c->errors && c->errors->nelts > 0, "invalid without errors");
        for (i = 0; i < c->errors->nelts; i++) {
            CHECK(APR_ARRAY_IDX(c->errors, i, const char *),
                  "NULL error text");
        }
    }
    else {
        CHECK(!c->errors, "valid record with errors");
    }
    if (c->command_id_json) {
        struct json_object *o = parse_strict(p, c->command_id_json,
                                             strlen(c->command_id_json),
                                             "command_id");
        CHECK(c->command_id, "command_id_json without command_id");
        CHECK(json_object_is_type(o, json_type_string)
              || json_object_is_type(o, json_type_int),
              "command_id of type %d", json_object_get_type(o));
        if (json_object_is_type(o, json_type_string)) {
            CHECK(jstr_eq(o, c->command_id), "command_id text differs");
        }
        json_object_put(o);
    }
    if (c->kind == TB_CMD_TIME) {
        CHECK(fc->kind == TB_BODY_BATCH, "system/time on a single route");
        return;
    }
    if (c->kind != TB_CMD_CUSTOMER && c->kind != TB_CMD_EVENT) {
        return;
    }
    CHECK(fc->kind == TB_BODY_BATCH
          || (fc->kind == TB_BODY_CUSTOMER) == (c->kind == TB_CMD_CUSTOMER),
          "route %d gave command kind %d", fc->kind, c->kind);
    CHECK(isfinite(c->time) && c->time >= 0 && c->time <= fc->now + 86400.0,
          "time %f out of range", c->time);
    CHECK(c->ids && c->ids->nelts > 0, "valid record without ids");
    for (i = 0; i < c->ids->nelts; i++) {
        const tb_id *id = &APR_ARRAY_IDX(c->ids, i, tb_id);
        int known = 0;
        CHECK(id->name && id->value, "id without name or value");
        CHECK(usable_id(id->value), "unusable id value '%s'", id->value);
        for (j = 0; j < fc->lim.id_types->nelts; j++) {
            const tb_id_type *t = &APR_ARRAY_IDX(fc->lim.id_types, j,
                                                 tb_id_type);
            if (!strcmp(t->name, id->name)) {
                CHECK(t->hard == id->hard, "id '%s' hardness", id->name);
                known = 1;
            }
        }
        CHECK(known, "unconfigured id '%s' kept", id->name);
    }
    CHECK(c->properties, "valid record without properties");
    {
        struct json_object *o = parse_strict(p, c->properties,
                                             strlen(c->properties),
                                             "properties");
        CHECK(json_object_is_type(o, json_type_object),
              "properties not an object");
        if (c->kind == TB_CMD_CUSTOMER) {
            CHECK(c->props, "customer without props");
            CHECK(json_object_object_length(o) == c->props->nelts,
                  "properties has %d members, props %d",
                  json_object_object_length(o), c->props->nelts);
        }
        json_object_put(o);
    }
    if (c->kind == TB_CMD_EVENT) {
        apr_size_t n;
        CHECK(c->event_type, "event without event_type");
        n = strlen(c->event_type);
        CHECK(n >= 1 && n <= fc->lim.max_name_len, "event_type length %zu",
              (size_t)n);
        return;
    }
    for (i = 0; i < c->props->nelts; i++) {
        const tb_prop *pr = &APR_ARRAY_IDX(c->props, i, tb_prop);
        apr_size_t n = strlen(pr->name), v = pr->value_len;
        struct json_object *o;
        /* a value is a slice of the command's properties text */
        CHECK(pr->value > c->properties
              && pr->value + v < c->properties + strlen(c->properties),
              "property value outside the properties text");
        CHECK(n >= 1 && n <= fc->lim.max_name_len, "property name length %zu",
              (size_t)n);
        CHECK(v < fc->lim.max_value_size, "property value length %zu",
              (size_t)v);
        o = parse_strict(p, pr->value, v, "property value");
        json_object_put(o);
    }
}

static int is_whole_request_text(const char *t, const fuzz_conf *fc,
                                 apr_pool_t *p)
{
    if (!strcmp(t, TB_ERR_INVALID_JSON) || !strcmp(t, TB_ERR_NOT_OBJECT)) {
        return 1;
    }
    if (fc->kind != TB_BODY_BATCH) {
        return 0;
    }
    return !strcmp(t, TB_ERR_NO_COMMANDS) || !strcmp(t, TB_ERR_NOT_ARRAY)
           || !strcmp(t, TB_ERR_EMPTY)
           || !strcmp(t, apr_psprintf(p, "Too many commands: at most %d "
                                      "commands per batch.",
                                      fc->lim.max_commands));
}

/* The answer text, checked, with its HTTP status. */
typedef struct {
    int status;
    const char *text;
    apr_size_t len;
} answer_t;

static void check_error_answer(apr_pool_t *p, const answer_t *a,
                               const char *text)
{
    struct json_object *o, *errs;

    CHECK(a->len > 0 && a->text[a->len - 1] == '\n', "answer without \\n");
    o = parse_strict(p, a->text, a->len, "error answer");
    CHECK(json_object_is_type(o, json_type_object)
          && json_object_object_length(o) == 2, "error answer shape");
    CHECK(json_object_is_type(member(o, "success"), json_type_boolean)
          && !json_object_get_boolean(member(o, "success")),
          "error answer success");
    errs = member(o, "errors");
    CHECK(json_object_is_type(errs, json_type_array)
          && json_object_array_length(errs) == 1
          && jstr_eq(json_object_array_get_idx(errs, 0), text),
          "error answer errors");
    json_object_put(o);
}

/* Deepest nesting of containers in a text the scanner accepted. */
static int nesting(const char *s, apr_size_t len)
{
    apr_size_t i;
    int d = 0, max = 0, in_str = 0;

    for (i = 0; i < len; i++) {
        if (in_str) {
            if (s[i] == '\\') {
                i++;
            }
            else if (s[i] == '"') {
                in_str = 0;
            }
        }
        else if (s[i] == '"') {
            in_str = 1;
        }
        else if (s[i] == '[' || s[i] == '{') {
            if (++d > max) {
                max = d;
            }
        }
        else if (s[i] == ']' || s[i] == '}') {
            d--;
        }
    }
    return max;
}

/* Parse, validate and answer one buffered body, as tb_handler does. */
static void run_parse(apr_pool_t *p, const fuzz_conf *fc, char *body,
                      apr_size_t len, const tb_json_scan_t *scan,
                      const char *scan_why, answer_t *a)
{
    tb_batch batch;
    const char *why = NULL, *text;
    int i, n_valid = 0;

    /* in place, as the handler: the body copy is ours to overwrite */
    text = tb_batch_parse_in_place(p, body, len, fc->kind, &fc->lim, fc->now,
                                   &batch, &why);
    if (text) {
        CHECK(is_whole_request_text(text, fc, p),
              "unexpected whole-request text '%s'", text);
        if (scan_why) {
            CHECK(!strcmp(text, TB_ERR_INVALID_JSON),
                  "scanner refused (%s) but answer is '%s'", scan_why, text);
        }
        if (!strcmp(text, TB_ERR_INVALID_JSON) && !scan_why) {
            /* the one refusal behind an accepted scan: a key given twice
             * in a command ("duplicate key at byte N"), which the body's
             * scan checks at the top level only */
            CHECK(why && (!strncmp(why, "duplicate key", 13)
                          || !strcmp(why, "non-finite number")
                          || (g_known_depth32 && fc->kind != TB_BODY_BATCH
                              && !strcmp(why, "json-c refused what the "
                                         "scanner accepted")
                              && nesting(body, len) == TB_JSON_MAX_DEPTH)),
                  "Invalid JSON after an accepted scan: %s",
                  why ? why : "(no reason)");
        }
        a->status = 400;
        a->text = tb_answer_error(p, text, &a->len);
        check_error_answer(p, a, text);
        return;
    }
    CHECK(!scan_why, "scanner refused (%s) but the body was parsed",
          scan_why);
    CHECK(batch.kind == fc->kind, "batch kind");
    CHECK(batch.commands && batch.commands->nelts >= 1,
          "no commands in a parsed batch");
    if (fc->kind == TB_BODY_BATCH) {
        CHECK(batch.commands->nelts <= fc->lim.max_commands,
              "%d commands over the limit %d", batch.commands->nelts,
              fc->lim.max_commands);
        CHECK((apr_size_t)batch.commands->nelts == scan->n_items,
              "%d commands, %zu elements", batch.commands->nelts,
              (size_t)scan->n_items);
    }
    else {
        CHECK(batch.commands->nelts == 1, "%d commands on a single route",
              batch.commands->nelts);
    }
    for (i = 0; i < batch.commands->nelts; i++) {
        const tb_command *c = &APR_ARRAY_IDX(batch.commands, i, tb_command);
        check_record(p, fc, c);
        n_valid += c->kind == TB_CMD_CUSTOMER || c->kind == TB_CMD_EVENT;
    }
    CHECK(n_valid == batch.n_valid, "n_valid %d, counted %d", batch.n_valid,
          n_valid);

    a->status = 200;
    a->text = tb_answer_batch(p, &batch, fc->now, fc->now + 0.5,
                              fc->now + 0.5, &a->len);
    CHECK(a->len > 0 && a->text[a->len - 1] == '\n', "answer without \\n");
    CHECK(strlen(a->text) == a->len, "answer length");
    {
        struct json_object *o = parse_strict(p, a->text, a->len, "answer");
        if (fc->kind == TB_BODY_BATCH) {
            struct json_object *res = member(o, "results");
            CHECK(json_object_is_type(o, json_type_object)
                  && json_object_object_length(o) == 4, "answer shape");
            CHECK(res && json_object_is_type(res, json_type_array),
                  "answer without results");
            CHECK((int)json_object_array_length(res)
                  == batch.commands->nelts, "%zu results for %d commands",
                  json_object_array_length(res), batch.commands->nelts);
            for (i = 0; i < batch.commands->nelts; i++) {
                check_result(json_object_array_get_idx(res, i),
                             &APR_ARRAY_IDX(batch.commands, i, tb_command));
            }
            CHECK(is_num(member(o, "start_time"))
                  && is_num(member(o, "end_time")), "answer times");
            CHECK(json_object_get_boolean(member(o, "success")),
                  "answer success");
        }
        else {
            check_result(o, &APR_ARRAY_IDX(batch.commands, 0, tb_command));
        }
        json_object_put(o);
    }
}

/* Read (one way or the other), parse, answer. */
static void run_request(apr_pool_t *parent, const fuzz_conf *fc,
                        const uint8_t *data, apr_size_t len,
                        const apr_size_t *pieces, apr_size_t npieces,
                        const tb_json_scan_t *scan, const char *scan_why,
                        answer_t *a, char **copy)
{
    apr_pool_t *p;
    char *body = NULL;
    apr_size_t blen = 0;

    apr_pool_create(&p, parent);
    a->status = read_body(p, fc, data, len, pieces, npieces, &body, &blen);
    if (a->status == 413) {
        const char *text = apr_psprintf(p, "Request body is larger than %"
                                        APR_SIZE_T_FMT " bytes.",
                                        fc->body_limit);
        a->text = tb_answer_error(p, text, &a->len);
        check_error_answer(p, a, text);
    }
    else {
        CHECK(blen == len && !memcmp(body, data, len), "body copy differs");
        run_parse(p, fc, body, blen, scan, scan_why, a);
    }
    *copy = malloc(a->len + 1);
    CHECK(*copy, "out of memory");
    memcpy(*copy, a->text, a->len + 1);
    a->text = *copy;
    apr_pool_destroy(p);
}

/*--------------------------------------------------------------------------*/
/* Differential: what the scanner accepts, json-c 0.16 STRICT accepts       */

static int all_finite(struct json_object *o)
{
    switch (json_object_get_type(o)) {
    case json_type_double:
        return isfinite(json_object_get_double(o));
    case json_type_object: {
        json_object_object_foreach(o, k, v) {
            (void)k;
            if (!all_finite(v)) {
                return 0;
            }
        }
        return 1;
    }
    case json_type_array: {
        size_t i, n = json_object_array_length(o);
        for (i = 0; i < n; i++) {
            if (!all_finite(json_object_array_get_idx(o, i))) {
                return 0;
            }
        }
        return 1;
    }
    default:
        return 1;
    }
}

static void differential(const uint8_t *body, apr_size_t len)
{
    struct json_tokener *tok;
    struct json_object *o;
    char *z;
    enum json_tokener_error err;

    if (len > INT32_MAX - 1) {
        return;
    }
    z = malloc(len + 1);
    CHECK(z, "out of memory");
    memcpy(z, body, len);
    z[len] = '\0';
    tok = json_tokener_new_ex(JSONC_DEPTH);
    CHECK(tok, "out of memory");
    json_tokener_set_flags(tok, JSON_TOKENER_STRICT);
    o = json_tokener_parse_ex(tok, z, (int)len + 1);
    err = json_tokener_get_error(tok);
    CHECK(err == json_tokener_success,
          "differential: scanner accepts, json-c STRICT refuses (%s at %zu)",
          json_tokener_error_desc(err), json_tokener_get_parse_end(tok));
    CHECK(json_tokener_get_parse_end(tok) == len,
          "differential: json-c stops at %zu of %zu",
          json_tokener_get_parse_end(tok), (size_t)len);
    CHECK(g_known_lead308 || all_finite(o),
          "differential: scanner accepts a number json-c reads as non-finite");
    json_object_put(o);
    json_tokener_free(tok);
    free(z);
}

/*--------------------------------------------------------------------------*/

static uint32_t xorshift(uint32_t *s)
{
    uint32_t x = *s;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    return *s = x;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_conf fc;
    apr_pool_t *p;
    const uint8_t *body;
    apr_size_t len, *pieces, npieces = 0, done = 0, whole[1];
    tb_json_scan_t scan;
    const char *scan_why;
    answer_t a1, a2;
    char *c1, *c2;
    double t;

    if (size < 4) {
        return 0;
    }
    read_conf(data, &fc);
    body = data + 4;
    len = size - 4;

    apr_pool_create(&p, g_pool);

    /* one scan of the exact bytes (no NUL after them: ASan sees overreads) */
    scan_why = tb_json_scan(p, (const char *)body, len,
                            (apr_size_t)fc.lim.max_commands, &scan);
    if (!scan_why) {
        differential(body, len);
    }

    /* the system/time answer (GET), and the timestamp parser on the raw
     * bytes too */
    {
        apr_size_t tlen;
        const char *tt = tb_answer_time(p, fc.now, &tlen);
        struct json_object *o = parse_strict(p, tt, tlen, "time answer");
        CHECK(is_num(member(o, "time"))
              && json_object_get_boolean(member(o, "success")),
              "time answer: %s", tt);
        json_object_put(o);
    }
    if (tb_parse_iso8601((const char *)body, len, &t) == 0) {
        CHECK(isfinite(t), "ISO-8601 gave a non-finite time");
    }

    /* whole: one bucket */
    whole[0] = len;
    run_request(p, &fc, body, len, whole, 1, &scan, scan_why, &a1, &c1);

    /* split at the chosen boundaries, empty buckets included */
    pieces = malloc((2 * len + 2) * sizeof(*pieces));
    CHECK(pieces, "out of memory");
    {
        uint32_t s = fc.split_seed ? fc.split_seed : 1;
        apr_size_t maxp = (apr_size_t)1 << fc.split_bits;
        while (done < len && npieces < 2 * len + 1) {
            apr_size_t n = fc.split_bits == 0 ? 1
                         : (xorshift(&s) % 8 == 0 ? 0
                            : 1 + xorshift(&s) % maxp);
            if (n > len - done) {
                n = len - done;
            }
            pieces[npieces++] = n;
            done += n;
        }
        if (done < len) {
            pieces[npieces++] = len - done;
        }
    }
    run_request(p, &fc, body, len, pieces, npieces, &scan, scan_why, &a2,
                &c2);
    free(pieces);

    CHECK(a1.status == a2.status && a1.len == a2.len
          && !memcmp(a1.text, a2.text, a1.len),
          "split answer differs:\nwhole (%d): %s\nsplit (%d): %s", a1.status,
          a1.text, a2.status, a2.text);
    free(c1);
    free(c2);
    apr_pool_destroy(p);
    return 0;
}
