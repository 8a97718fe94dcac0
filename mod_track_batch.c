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
 * mod_track_batch: Bloomreach Engagement Tracking API v2 on Apache httpd.
 *
 *   <Location /track>
 *       SetHandler track-batch
 *   </Location>
 *
 * One request: route and method -> Content-Type -> body (capped while
 * read) -> tb_batch_parse (strict JSON, per-command validation, no httpd)
 * -> tb_store_write (one transaction through mod_dbd, on SQLite shared with
 * the child's other waiting batches) -> answer.
 */

#include "apr_atomic.h"
#include "apr_crypto.h"
#include "apr_dbd.h"
#include "apr_lib.h"
#include "apr_optional.h"
#include "apr_global_mutex.h"
#include "apr_shm.h"
#include "apr_strings.h"
#include "apr_thread_mutex.h"

#include "httpd.h"
#include "http_config.h"
#include "http_core.h"
#include "http_log.h"
#include "http_protocol.h"
#include "http_request.h"
#include "mod_dbd.h"
#include "util_filter.h"
#include "util_mutex.h"

#include "tb_auth.h"
#include "tb_batch.h"
#include "tb_rate.h"
#include "tb_store.h"

module AP_MODULE_DECLARE_DATA track_batch_module;

/* Our own log tags: AHnnnnn numbers belong to httpd's modules. */
#define TBLOGNO(n) "TB" #n ": "

#define TB_HANDLER "track-batch"
#define TB_UNSET (-1)

/* Bloomreach's documented limits (SPEC §4). */
#define TB_DEF_MAX_COMMANDS      50
#define TB_DEF_MAX_COMMAND_SIZE  (800 * 1024)
#define TB_DEF_MAX_VALUE_SIZE    (16 * 1024)
#define TB_DEF_MAX_NAME_LEN      128
#define TB_DEF_BUSY_TIMEOUT_MS   5000
#define TB_DEF_RETRY_AFTER       5
#define TB_DEF_KEY_CACHE_TTL     30      /* seconds a revoked key may live on */
#define TB_DEF_DEDUP_WINDOW      86400   /* seconds a command_id is remembered */
#define TB_KEY_CACHE_MAX         10000

#define TB_RATE_SLOTS            65536   /* 512 KiB of shared memory */
#define TB_CORS_MAX_AGE          "3600"

#define TB_REALM "Bloomreach Tracking API"
#define TB_REDACT_FILTER "TRACK_BATCH_REDACT"
#define TB_REDACTED "redacted"
/* The SQLite writers' mutex, as named in the Mutex directive. */
#define TB_WRITE_MUTEX "track-batch-write"

/* Project tokens: 1-64 of [A-Za-z0-9_-] (SPEC §1). */
#define TB_MAX_TOKEN 64

typedef struct {
    int max_commands;               /* TrackBatchMaxCommands */
    apr_off_t max_command_size;     /* TrackBatchMaxCommandSize */
    apr_off_t max_value_size;       /* TrackBatchMaxValueSize */
    apr_off_t max_name_len;         /* TrackBatchMaxNameLength */
    apr_off_t max_body;             /* TrackBatchMaxBody */
    apr_array_header_t *id_types;   /* TrackBatchCustomerId, of tb_id_type */
    apr_off_t busy_timeout;         /* TrackBatchBusyTimeout, ms */
    int retry_after;                /* TrackBatchRetryAfter, seconds */
    int auth;                       /* TrackBatchAuth: 1 keys required */
    apr_array_header_t *cors;       /* TrackBatchCorsOrigin: const char * */
    int addr_limit;                 /* TrackBatchRateLimit address: requests */
    int addr_period;                /* ... per this many seconds */
    int key_limit;                  /* TrackBatchRateLimit key */
    int key_period;
    apr_off_t dedup_window;         /* TrackBatchDedupWindow, seconds */
} tb_dir_conf;

/* Per server and child: while the database cannot be reached or does not
 * answer, one request at a time asks mod_dbd for a connection (tb_open).
 * Also which engine mod_dbd's connections are, once one was seen: SQLite's
 * writers queue without a connection (tb_record). */
typedef struct {
    apr_thread_mutex_t *probe;      /* held by the request asking */
    volatile apr_uint32_t failing;  /* the last request found it so */
    volatile apr_uint32_t engine;   /* TB_ENGINE_* */
} tb_dbd_gate;

#define TB_ENGINE_UNKNOWN 0
#define TB_ENGINE_SQLITE  1
#define TB_ENGINE_PGSQL   2

typedef struct {
    ap_dbd_t *(*dbd_open)(apr_pool_t *, server_rec *);  /* mod_dbd's, */
    void (*dbd_close)(server_rec *, ap_dbd_t *);        /* found at startup */
    tb_dbd_gate *gate;                        /* per child, from child_init */
    apr_array_header_t *default_ids;          /* registered hard, cookie soft */
    apr_off_t key_cache_ttl;                  /* TrackBatchKeyCacheTTL, s */
    tb_keycache *keys;                        /* per child, from child_init */
    int rate_used;                            /* a TrackBatchRateLimit exists */
    tb_rate_table *rates;                     /* shared by all children */
    apr_global_mutex_t *writers;              /* SQLite writers, all children */
    tb_writeq *queue;                         /* per child: its writers */
} tb_server_conf;

/* Credentials taken off a request before httpd logs it (trace4 dumps the
 * headers, trace5 the request line): see tb_pre_read_request. */
typedef struct {
    char *authorization;            /* the Authorization header */
    char *query_token;              /* ?access_token= */
    int line_done;                  /* the request line went by */
} tb_req_creds;

/* The routes under /track/v2/projects/{token}/ (SPEC §1). */
typedef struct {
    const char *path;
    int method;              /* M_POST or M_GET */
    int body;                /* tb_body_kind, or -1 for no body */
    const char *allow;
} tb_route;

static const tb_route tb_routes[] = {
    { "batch",            M_POST, TB_BODY_BATCH,    "POST, OPTIONS" },
    { "customers",        M_POST, TB_BODY_CUSTOMER, "POST, OPTIONS" },
    { "customers/events", M_POST, TB_BODY_EVENT,    "POST, OPTIONS" },
    { "system/time",      M_GET,  -1,               "GET, HEAD, OPTIONS" },
};

#define TB_ROUTES_PREFIX "/track/v2/projects/"

/*--------------------------------------------------------------------------*/
/* Configuration                                                            */

static void *tb_create_dir_conf(apr_pool_t *p, char *dir)
{
    tb_dir_conf *c = apr_pcalloc(p, sizeof(*c));

    c->max_commands = TB_UNSET;
    c->max_command_size = TB_UNSET;
    c->max_value_size = TB_UNSET;
    c->max_name_len = TB_UNSET;
    c->max_body = TB_UNSET;
    c->busy_timeout = TB_UNSET;
    c->retry_after = TB_UNSET;
    c->auth = TB_UNSET;
    c->addr_limit = TB_UNSET;
    c->addr_period = TB_UNSET;
    c->key_limit = TB_UNSET;
    c->key_period = TB_UNSET;
    c->dedup_window = TB_UNSET;
    return c;
}

#define TB_MERGE(f) c->f = add->f != TB_UNSET ? add->f : base->f

static void *tb_merge_dir_conf(apr_pool_t *p, void *basev, void *addv)
{
    tb_dir_conf *base = basev, *add = addv;
    tb_dir_conf *c = apr_pcalloc(p, sizeof(*c));

    TB_MERGE(max_commands);
    TB_MERGE(max_command_size);
    TB_MERGE(max_value_size);
    TB_MERGE(max_name_len);
    TB_MERGE(max_body);
    TB_MERGE(busy_timeout);
    TB_MERGE(retry_after);
    TB_MERGE(auth);
    TB_MERGE(addr_limit);
    TB_MERGE(addr_period);
    TB_MERGE(key_limit);
    TB_MERGE(key_period);
    TB_MERGE(dedup_window);
    c->cors = add->cors ? add->cors : base->cors;
    c->id_types = add->id_types ? add->id_types : base->id_types;
    return c;
}

static void *tb_create_server_conf(apr_pool_t *p, server_rec *s)
{
    tb_server_conf *sc = apr_pcalloc(p, sizeof(*sc));
    tb_id_type *t;

    sc->default_ids = apr_array_make(p, 2, sizeof(tb_id_type));
    t = apr_array_push(sc->default_ids);
    t->name = "registered";
    t->hard = 1;
    t = apr_array_push(sc->default_ids);
    t->name = "cookie";
    t->hard = 0;
    sc->key_cache_ttl = TB_UNSET;
    return sc;
}

static void *tb_merge_server_conf(apr_pool_t *p, void *basev, void *addv)
{
    tb_server_conf *base = basev, *add = addv;
    tb_server_conf *c = apr_pmemdup(p, add, sizeof(*c));

    c->key_cache_ttl = add->key_cache_ttl != TB_UNSET ? add->key_cache_ttl
                                                      : base->key_cache_ttl;
    return c;
}

/* Effective values: a directive, else the default. */
static int tb_max_commands(const tb_dir_conf *c)
{
    return c->max_commands != TB_UNSET ? c->max_commands : TB_DEF_MAX_COMMANDS;
}

static apr_off_t tb_max_command_size(const tb_dir_conf *c)
{
    return c->max_command_size != TB_UNSET ? c->max_command_size
                                           : TB_DEF_MAX_COMMAND_SIZE;
}

static apr_off_t tb_max_body(const tb_dir_conf *c)
{
    return c->max_body != TB_UNSET ? c->max_body
               : (apr_off_t)tb_max_commands(c) * tb_max_command_size(c);
}

static apr_interval_time_t tb_busy_timeout(const tb_dir_conf *c)
{
    return apr_time_from_msec(c->busy_timeout != TB_UNSET ? c->busy_timeout
                                                          : TB_DEF_BUSY_TIMEOUT_MS);
}

/* Parse a whole decimal number within [lo, hi]; the message names the
 * directive, so it always matches what the admin typed. */
static const char *tb_parse_num(cmd_parms *cmd, const char *arg,
                                apr_off_t lo, apr_off_t hi, apr_off_t *out)
{
    char *end;
    apr_off_t v;

    if (apr_strtoff(&v, arg, &end, 10) != APR_SUCCESS || *end || end == arg
        || v < lo || v > hi) {
        return apr_psprintf(cmd->pool, "%s: '%s' is not a whole number from %"
                            APR_OFF_T_FMT " to %" APR_OFF_T_FMT,
                            cmd->cmd->name, arg, lo, hi);
    }
    *out = v;
    return NULL;
}

/* Limits are bounded so that every size fits an int. */
static const char *tb_set_size(cmd_parms *cmd, void *dconf, const char *arg)
{
    apr_off_t *field = (apr_off_t *)((char *)dconf + (apr_size_t)cmd->info);
    return tb_parse_num(cmd, arg, 1, APR_INT32_MAX - 1, field);
}

static const char *tb_set_max_commands(cmd_parms *cmd, void *dconf,
                                       const char *arg)
{
    tb_dir_conf *c = dconf;
    apr_off_t v;
    const char *err = tb_parse_num(cmd, arg, 1, 100000, &v);

    if (!err) {
        c->max_commands = (int)v;
    }
    return err;
}

static const char *tb_set_busy_timeout(cmd_parms *cmd, void *dconf,
                                       const char *arg)
{
    tb_dir_conf *c = dconf;
    return tb_parse_num(cmd, arg, 0, 600000, &c->busy_timeout);
}

static const char *tb_set_retry_after(cmd_parms *cmd, void *dconf,
                                      const char *arg)
{
    tb_dir_conf *c = dconf;
    apr_off_t v;
    const char *err = tb_parse_num(cmd, arg, 1, 86400, &v);

    if (!err) {
        c->retry_after = (int)v;
    }
    return err;
}

/* TrackBatchCustomerId name hard|soft; the first one in a context replaces
 * the defaults there. */
static const char *tb_set_customer_id(cmd_parms *cmd, void *dconf,
                                      const char *name, const char *kind)
{
    tb_dir_conf *c = dconf;
    tb_id_type *t;
    const char *ch;
    int i;

    if (!*name || strlen(name) > TB_DEF_MAX_NAME_LEN) {
        return apr_psprintf(cmd->pool, "%s: id name must be 1 to %d bytes",
                            cmd->cmd->name, TB_DEF_MAX_NAME_LEN);
    }
    for (ch = name; *ch; ch++) {
        if (!apr_isalnum(*ch) && *ch != '_' && *ch != '-' && *ch != '.') {
            return apr_psprintf(cmd->pool, "%s: id name '%s' may hold only "
                                "letters, digits, '_', '-' and '.'",
                                cmd->cmd->name, name);
        }
    }
    if (strcasecmp(kind, "hard") && strcasecmp(kind, "soft")) {
        return apr_psprintf(cmd->pool, "%s: '%s' must be 'hard' or 'soft'",
                            cmd->cmd->name, kind);
    }
    if (!c->id_types) {
        c->id_types = apr_array_make(cmd->pool, 4, sizeof(tb_id_type));
    }
    for (i = 0; i < c->id_types->nelts; i++) {
        if (!strcmp(APR_ARRAY_IDX(c->id_types, i, tb_id_type).name, name)) {
            return apr_psprintf(cmd->pool, "%s: id '%s' is configured twice",
                                cmd->cmd->name, name);
        }
    }
    t = apr_array_push(c->id_types);
    t->name = apr_pstrdup(cmd->pool, name);
    t->hard = !strcasecmp(kind, "hard");
    return NULL;
}

static const char *tb_set_dedup_window(cmd_parms *cmd, void *dconf,
                                       const char *arg)
{
    tb_dir_conf *c = dconf;
    return tb_parse_num(cmd, arg, 0, 90 * 86400, &c->dedup_window);
}

static const char *tb_set_auth(cmd_parms *cmd, void *dconf, int on)
{
    ((tb_dir_conf *)dconf)->auth = on;
    return NULL;
}

static const char *tb_set_key_cache_ttl(cmd_parms *cmd, void *dummy,
                                        const char *arg)
{
    tb_server_conf *sc = ap_get_module_config(cmd->server->module_config,
                                              &track_batch_module);
    const char *err = ap_check_cmd_context(cmd, NOT_IN_DIR_CONTEXT);

    return err ? err : tb_parse_num(cmd, arg, 0, 3600, &sc->key_cache_ttl);
}

/* TrackBatchCorsOrigin https://shop.example [...] | * */
static const char *tb_set_cors(cmd_parms *cmd, void *dconf, const char *arg)
{
    tb_dir_conf *c = dconf;
    const char *host;

    if (strcmp(arg, "*")) {
        host = !strncmp(arg, "https://", 8) ? arg + 8
             : !strncmp(arg, "http://", 7) ? arg + 7 : NULL;
        if (!host || !*host || strchr(host, '/')) {
            return apr_psprintf(cmd->pool, "%s: '%s' is not an origin "
                                "(scheme://host[:port]) or *",
                                cmd->cmd->name, arg);
        }
    }
    if (!c->cors) {
        c->cors = apr_array_make(cmd->pool, 2, sizeof(const char *));
    }
    APR_ARRAY_PUSH(c->cors, const char *) = apr_pstrdup(cmd->pool, arg);
    return NULL;
}

/* TrackBatchRateLimit address|key REQUESTS SECONDS */
static const char *tb_set_rate(cmd_parms *cmd, void *dconf, const char *what,
                               const char *requests, const char *seconds)
{
    tb_dir_conf *c = dconf;
    tb_server_conf *sc = ap_get_module_config(cmd->server->module_config,
                                              &track_batch_module);
    apr_off_t n, per;
    const char *err = tb_parse_num(cmd, requests, 1, 100000000, &n);

    if (!err) {
        err = tb_parse_num(cmd, seconds, 1, 86400, &per);
    }
    if (err) {
        return err;
    }
    if (!strcasecmp(what, "address")) {
        c->addr_limit = (int)n;
        c->addr_period = (int)per;
    }
    else if (!strcasecmp(what, "key")) {
        c->key_limit = (int)n;
        c->key_period = (int)per;
    }
    else {
        return apr_psprintf(cmd->pool, "%s: '%s' must be 'address' or 'key'",
                            cmd->cmd->name, what);
    }
    sc->rate_used = 1;
    return NULL;
}

static const command_rec tb_cmds[] = {
    AP_INIT_TAKE1("TrackBatchMaxCommands", tb_set_max_commands, NULL,
                  ACCESS_CONF, "Most commands in one batch (default 50)"),
    AP_INIT_TAKE1("TrackBatchMaxCommandSize", tb_set_size,
                  (void *)APR_OFFSETOF(tb_dir_conf, max_command_size),
                  ACCESS_CONF, "A command's JSON text must be smaller than "
                  "this many bytes (default 819200)"),
    AP_INIT_TAKE1("TrackBatchMaxValueSize", tb_set_size,
                  (void *)APR_OFFSETOF(tb_dir_conf, max_value_size),
                  ACCESS_CONF, "A serialised property value must be smaller "
                  "than this many bytes (default 16384)"),
    AP_INIT_TAKE1("TrackBatchMaxNameLength", tb_set_size,
                  (void *)APR_OFFSETOF(tb_dir_conf, max_name_len),
                  ACCESS_CONF, "Longest property or event name in bytes "
                  "(default 128)"),
    AP_INIT_TAKE1("TrackBatchMaxBody", tb_set_size,
                  (void *)APR_OFFSETOF(tb_dir_conf, max_body),
                  ACCESS_CONF, "Largest request body in bytes (default: "
                  "max commands x max command size)"),
    AP_INIT_TAKE2("TrackBatchCustomerId", tb_set_customer_id, NULL,
                  ACCESS_CONF, "A customer id name and 'hard' or 'soft' "
                  "(default: registered hard, cookie soft)"),
    AP_INIT_TAKE1("TrackBatchBusyTimeout", tb_set_busy_timeout, NULL,
                  ACCESS_CONF, "Milliseconds to wait for the SQLite write "
                  "lock, or for PostgreSQL's answers to a request, before "
                  "answering 503 (default 5000)"),
    AP_INIT_TAKE1("TrackBatchRetryAfter", tb_set_retry_after, NULL,
                  ACCESS_CONF, "Seconds sent in Retry-After with 503 "
                  "(default 5)"),
    AP_INIT_FLAG("TrackBatchAuth", tb_set_auth, NULL, ACCESS_CONF,
                 "On (default): every request needs an access key; Off: "
                 "open, for trusted networks only"),
    AP_INIT_TAKE1("TrackBatchKeyCacheTTL", tb_set_key_cache_ttl, NULL,
                  RSRC_CONF, "Seconds a looked-up key is trusted before it "
                  "is read again; a revoked key works at most this long "
                  "(default 30, 0 = no cache)"),
    AP_INIT_TAKE1("TrackBatchDedupWindow", tb_set_dedup_window, NULL,
                  ACCESS_CONF, "Seconds a command_id is remembered: a retry "
                  "with the same id and key within it is not recorded twice "
                  "(default 86400)"),
    AP_INIT_ITERATE("TrackBatchCorsOrigin", tb_set_cors, NULL, ACCESS_CONF,
                    "Origins allowed to call from a browser "
                    "(scheme://host[:port]), or *"),
    AP_INIT_TAKE3("TrackBatchRateLimit", tb_set_rate, NULL, ACCESS_CONF,
                  "'address' or 'key', then at most REQUESTS per SECONDS, "
                  "counted across all children; over it, 429"),
    { NULL }
};

/*--------------------------------------------------------------------------*/
/* Answers                                                                  */

static int tb_reply(request_rec *r, int status, const char *body,
                    apr_size_t len)
{
    r->status = status;
    ap_set_content_type(r, "application/json");
    apr_table_setn(r->headers_out, "Cache-Control", "no-store");
    ap_set_content_length(r, len);
    if (!r->header_only) {
        ap_rwrite(body, (int)len, r);
    }
    return OK;
}

/* A whole-request failure: {"success": false, "errors": [text]}. */
static int tb_reply_error(request_rec *r, int status, const char *text)
{
    apr_size_t len;
    const char *body = tb_answer_error(r->pool, text, &len);

    return tb_reply(r, status, body, len);
}

/* Refused before its body was read: close the connection rather than let
 * httpd drain a body we will not use (up to LimitRequestBody). */
static int tb_refuse_unread(request_rec *r, int status, const char *text)
{
    if (apr_table_get(r->headers_in, "Content-Length")
        || apr_table_get(r->headers_in, "Transfer-Encoding")) {
        r->connection->keepalive = AP_CONN_CLOSE;
    }
    return tb_reply_error(r, status, text);
}

static int tb_unauthorized(request_rec *r, const char *text)
{
    apr_table_add(r->headers_out, "WWW-Authenticate",
                  "Basic realm=\"" TB_REALM "\", charset=\"UTF-8\"");
    apr_table_add(r->headers_out, "WWW-Authenticate",
                  "Token realm=\"" TB_REALM "\"");
    return tb_refuse_unread(r, HTTP_UNAUTHORIZED, text);
}

static int tb_unavailable(request_rec *r, const tb_dir_conf *conf)
{
    apr_table_setn(r->headers_out, "Retry-After",
                   apr_itoa(r->pool, conf->retry_after != TB_UNSET
                                     ? conf->retry_after : TB_DEF_RETRY_AFTER));
    return tb_reply_error(r, HTTP_SERVICE_UNAVAILABLE,
                          "The database could not record the request; "
                          "retry later.");
}

/*--------------------------------------------------------------------------*/
/* Request                                                                  */

/* Find the route and project token in the path; NULL when unknown.  What
 * comes before /track/v2/projects/ must lie within the <Location> path
 * (/api for <Location /api>, nothing for <Location /track>), so a route
 * cannot be smuggled deeper into the location. */
static const tb_route *tb_find_route(request_rec *r, const char **project)
{
    /* core keeps the path of the innermost section that applied; only
     * core's config is made for every section (ours only for sections
     * holding one of our directives) */
    const core_dir_config *core = ap_get_core_module_config(r->per_dir_config);
    const char *location = core->d;
    const char *at = strstr(r->uri, TB_ROUTES_PREFIX);
    const char *tok, *slash;
    apr_size_t i, n;

    if (!at) {
        return NULL;
    }
    n = at - r->uri;
    if (core->r) {
        /* <LocationMatch>: the pattern already chose the paths */
    }
    else if (n > 0 && (!location || strncmp(r->uri, location, n)
                       || (location[n] && location[n] != '/'))) {
        return NULL;
    }
    tok = at + sizeof(TB_ROUTES_PREFIX) - 1;
    slash = strchr(tok, '/');
    if (!slash) {
        return NULL;
    }
    n = slash - tok;
    if (n == 0 || n > TB_MAX_TOKEN) {
        return NULL;
    }
    for (i = 0; i < n; i++) {
        if (!apr_isalnum(tok[i]) && tok[i] != '_' && tok[i] != '-') {
            return NULL;
        }
    }
    for (i = 0; i < sizeof(tb_routes) / sizeof(tb_routes[0]); i++) {
        if (!strcmp(slash + 1, tb_routes[i].path)) {
            *project = apr_pstrmemdup(r->pool, tok, n);
            return &tb_routes[i];
        }
    }
    return NULL;
}

/* application/json or text/plain (sendBeacon), any parameters. */
static int tb_content_type_ok(request_rec *r)
{
    const char *ct = apr_table_get(r->headers_in, "Content-Type");
    apr_size_t n;

    if (!ct) {
        return 0;
    }
    n = strcspn(ct, "; \t");
    return (n == 16 && !strncasecmp(ct, "application/json", n))
           || (n == 10 && !strncasecmp(ct, "text/plain", n));
}

static apr_status_t tb_free_cleanup(void *buf)
{
    free(buf);
    return APR_SUCCESS;
}

/* The canonical brigade loop, capped while reading (never trusting
 * Content-Length for the size).  malloc/realloc rather than the pool: a
 * growing pool buffer would leave every smaller copy behind. */
static int tb_read_body(request_rec *r, apr_off_t limit, char **body,
                        apr_size_t *len)
{
    apr_bucket_brigade *bb;
    const char *cl = apr_table_get(r->headers_in, "Content-Length");
    apr_size_t cap = 8192, have = 0;
    char *buf;
    int seen_eos = 0;

    if (cl) {
        apr_off_t declared;
        char *end;
        /* refuse a declared oversize at once; a valid smaller length only
         * sizes the first buffer, the count below still rules */
        if (apr_strtoff(&declared, cl, &end, 10) == APR_SUCCESS && !*end) {
            if (declared > limit) {
                return HTTP_REQUEST_ENTITY_TOO_LARGE;
            }
            if (declared > 0) {
                /* a declared length sizes the first buffer, up to 1 MiB: a
                 * client that declares much and sends little holds little */
                cap = (apr_size_t)(declared < 1024 * 1024 ? declared + 1
                                                          : 1024 * 1024);
            }
        }
    }
    buf = malloc(cap);
    if (!buf) {
        return HTTP_INTERNAL_SERVER_ERROR;
    }
    apr_pool_cleanup_register(r->pool, buf, tb_free_cleanup,
                              apr_pool_cleanup_null);

    bb = apr_brigade_create(r->pool, r->connection->bucket_alloc);
    do {
        apr_bucket *b;
        apr_status_t rv = ap_get_brigade(r->input_filters, bb,
                                         AP_MODE_READBYTES, APR_BLOCK_READ,
                                         65536);
        if (rv != APR_SUCCESS) {
            apr_brigade_destroy(bb);
            return ap_map_http_request_error(rv, HTTP_BAD_REQUEST);
        }
        for (b = APR_BRIGADE_FIRST(bb); b != APR_BRIGADE_SENTINEL(bb);
             b = APR_BUCKET_NEXT(b)) {
            const char *data;
            apr_size_t n;

            if (APR_BUCKET_IS_EOS(b)) {
                seen_eos = 1;
                break;
            }
            if (APR_BUCKET_IS_METADATA(b)) {
                continue;
            }
            rv = apr_bucket_read(b, &data, &n, APR_BLOCK_READ);
            if (rv != APR_SUCCESS) {
                apr_brigade_destroy(bb);
                return ap_map_http_request_error(rv, HTTP_BAD_REQUEST);
            }
            if ((apr_off_t)(have + n) > limit) {
                apr_brigade_destroy(bb);
                return HTTP_REQUEST_ENTITY_TOO_LARGE;
            }
            if (have + n + 1 > cap) {
                char *nb;
                while (have + n + 1 > cap) {
                    cap *= 2;
                }
                apr_pool_cleanup_kill(r->pool, buf, tb_free_cleanup);
                nb = realloc(buf, cap);
                if (!nb) {
                    free(buf);
                    apr_brigade_destroy(bb);
                    return HTTP_INTERNAL_SERVER_ERROR;
                }
                buf = nb;
                apr_pool_cleanup_register(r->pool, buf, tb_free_cleanup,
                                          apr_pool_cleanup_null);
            }
            memcpy(buf + have, data, n);
            have += n;
        }
        apr_brigade_cleanup(bb);
    } while (!seen_eos);
    apr_brigade_destroy(bb);

    buf[have] = '\0';
    *body = buf;
    *len = have;
    return OK;
}

static double tb_seconds(apr_time_t t)
{
    return (double)t / APR_USEC_PER_SEC;
}

/* One use of a mod_dbd connection, from tb_open to tb_close.  Requests
 * hold one only while they use it, never while they wait in the SQLite
 * writers' queue: a child's few connections (one suffices) serve all of
 * its threads, and no thread waits for a connection that a queued thread
 * holds. */
typedef struct {
    request_rec *r;
    const tb_dir_conf *conf;
    const tb_server_conf *sconf;
    ap_dbd_t *dbd;
    tb_store *store;
    apr_time_t opened;
    apr_interval_time_t spent;      /* by the request's earlier uses */
} tb_conn;

/* One per request, in its pool (its cleanup outlives the caller). */
static tb_conn *tb_conn_make(request_rec *r, const tb_dir_conf *conf,
                             const tb_server_conf *sconf)
{
    tb_conn *c = apr_pcalloc(r->pool, sizeof(*c));

    c->r = r;
    c->conf = conf;
    c->sconf = sconf;
    return c;
}

/* After each use of the database: failing while it cannot be reached or
 * does not answer, not once it answers (an error is an answer).  An
 * open alone proves nothing: mod_dbd hands out idle connections to a
 * server that may have stopped. */
static void tb_gate_learn(const tb_server_conf *sconf, const tb_store *store,
                          const char *why)
{
    if (sconf->gate) {
        apr_atomic_set32(&sconf->gate->failing,
                         why && (!store || tb_store_unanswered(store)));
    }
}

/* A request that ends while it holds a connection gives it back. */
static apr_status_t tb_conn_cleanup(void *data)
{
    tb_conn *c = data;

    if (c->dbd) {
        c->sconf->dbd_close(c->r->server, c->dbd);
        c->dbd = NULL;
    }
    return APR_SUCCESS;
}

/* What is left of TrackBatchBusyTimeout for the request's look-ups and,
 * on PostgreSQL, its write: one wait in all. */
static apr_interval_time_t tb_conn_wait(const tb_conn *c)
{
    apr_interval_time_t left = tb_busy_timeout(c->conf) - c->spent;

    return left > 0 ? left : 0;
}

static void tb_close(tb_conn *c, const char *why)
{
    if (c->dbd) {
        c->spent += apr_time_now() - c->opened;
        tb_gate_learn(c->sconf, c->store, why);
        apr_pool_cleanup_run(c->r->pool, c, tb_conn_cleanup);
    }
    c->store = NULL;
}

/* A connection from mod_dbd and its store state, waiting at most @a wait
 * for the database during setup and look-ups. */
static const char *tb_open(tb_conn *c, apr_interval_time_t wait)
{
    tb_dbd_gate *gate = c->sconf->gate;
    const char *why;
    int asking = 0;

    /* mod_dbd makes a new connection while it holds its pool's lock: with
     * the server unreachable, the requests of a child that need one would
     * each wait out the connect_timeout of those before them.  While the
     * database fails (tb_gate_learn), one request at a time asks; the
     * others are answered 503 at once. */
    if (gate && apr_atomic_read32(&gate->failing)) {
        if (apr_thread_mutex_trylock(gate->probe) != APR_SUCCESS) {
            return "no database connection: another request of this "
                   "process is trying to get one";
        }
        asking = 1;
    }
    c->opened = apr_time_now();
    c->dbd = c->sconf->dbd_open(c->r->pool, c->r->server);
    if (asking) {
        apr_thread_mutex_unlock(gate->probe);
    }
    if (!c->dbd) {
        why = "no database connection from mod_dbd (see its DBDriver / "
              "DBDParams)";
        tb_gate_learn(c->sconf, NULL, why);
        return why;
    }
    apr_pool_cleanup_register(c->r->pool, c, tb_conn_cleanup,
                              apr_pool_cleanup_null);
    why = tb_store_attach(c->dbd->pool, c->dbd->driver, c->dbd->handle, wait,
                          &c->store);
    if (why) {
        c->store = NULL;
        tb_close(c, why);
        return why;
    }
    tb_store_set_writers(c->store, c->sconf->writers);
    if (gate) {
        apr_atomic_set32(&gate->engine, tb_store_is_pg(c->store)
                                        ? TB_ENGINE_PGSQL : TB_ENGINE_SQLITE);
    }
    return NULL;
}

/* The SQLite writers' queue gets the writer's connection through these. */
static const char *tb_source_open(void *baton, apr_interval_time_t wait,
                                  tb_store **out)
{
    tb_conn *c = baton;
    const char *why = tb_open(c, wait);

    *out = c->store;
    return why;
}

static void tb_source_close(void *baton, tb_store *s, const char *what)
{
    tb_close(baton, what);
}

/* Record the valid commands of a batch; NULL, or why not (the answer is
 * then 503).  On SQLite the batch waits in the child's queue of writers
 * without a connection (tb_writeq_write); on PostgreSQL every request
 * writes through a connection of its own. */
static const char *tb_record(tb_conn *c, const char *project,
                             const tb_key *key, tb_batch *batch,
                             double received)
{
    request_rec *r = c->r;
    const tb_dir_conf *conf = c->conf;
    const tb_server_conf *sconf = c->sconf;
    tb_store_source src;
    const char *why;
    double window = (double)(conf->dedup_window != TB_UNSET
                             ? conf->dedup_window : TB_DEF_DEDUP_WINDOW);
    int queued = sconf->queue && sconf->gate;

    if (!queued || apr_atomic_read32(&sconf->gate->engine)
                   != TB_ENGINE_SQLITE) {
        apr_interval_time_t left = tb_conn_wait(c);

        why = tb_open(c, left);
        if (why) {
            return why;
        }
        if (tb_store_is_pg(c->store) || !queued) {
            /* SQLite: the whole wait for the write lock */
            why = tb_store_write(c->store, r->pool, project,
                                 key ? key->key_id : NULL, batch, received,
                                 window, tb_store_is_pg(c->store)
                                         ? left : tb_busy_timeout(conf));
            tb_close(c, why);
            return why;
        }
        /* SQLite, just learnt: the queue's writer opens its own */
        tb_close(c, NULL);
    }
    src.open = tb_source_open;
    src.close = tb_source_close;
    src.baton = c;
    return tb_writeq_write(sconf->queue, &src, r->pool, project,
                           key ? key->key_id : NULL, batch, received, window,
                           tb_busy_timeout(conf));
}

/*--------------------------------------------------------------------------*/
/* Keeping credentials out of the logs                                      */

/* Does the path look like one of ours?  Decided before the location walk,
 * so by the path alone. */
static int tb_our_path(const char *path)
{
    return path && strstr(path, TB_ROUTES_PREFIX) != NULL;
}

/* Is a raw request path (%-escaped, slashes unmerged) one of ours?  When
 * it cannot be decoded, say yes: redacting too much is the safe side. */
static int tb_our_request_path(apr_pool_t *p, const char *raw, apr_size_t n)
{
    char *path = apr_pstrmemdup(p, raw, n);

    if (ap_unescape_url(path) != OK) {
        return 1;
    }
    ap_no2slash(path);
    return tb_our_path(path);
}

static tb_req_creds *tb_creds(request_rec *r)
{
    tb_req_creds *rc = ap_get_module_config(r->request_config,
                                            &track_batch_module);
    if (!rc) {
        rc = apr_pcalloc(r->pool, sizeof(*rc));
        ap_set_module_config(r->request_config, &track_batch_module, rc);
    }
    return rc;
}

/* Rewrite every access_token=VALUE in the query part of a request line
 * to access_token=redacted, keeping the first value. */
static char *tb_redact_line(apr_pool_t *p, const char *line, apr_size_t len,
                            char **token, apr_size_t *outlen)
{
    static const char name[] = "access_token=";
    const char *q = memchr(line, '?', len), *end = line + len, *at;
    const char *path = memchr(line, ' ', len);
    char *out, *o;

    if (!q || !path || path > q) {
        return NULL;
    }
    /* only our paths: other applications' access_token stays theirs */
    if (!tb_our_request_path(p, path + 1, q - path - 1)) {
        return NULL;
    }
    out = o = apr_palloc(p, len + 1);
    memcpy(o, line, q - line);
    o += q - line;
    at = q;
    while (at < end) {
        const char *v;
        apr_size_t n, k;

        if ((*at == '?' || *at == '&') && (apr_size_t)(end - at) > sizeof(name) - 1
            && !memcmp(at + 1, name, sizeof(name) - 1)) {
            v = at + sizeof(name);
            /* the line is not NUL-terminated: bound the scan by its end */
            for (n = 0; v + n < end && !strchr("& \t\r\n#", v[n]); n++) {
            }
            if (!*token) {
                *token = apr_pstrmemdup(p, v, n);
            }
            memcpy(o, at, sizeof(name));
            o += sizeof(name);
            /* never longer than the value it replaces */
            k = n < sizeof(TB_REDACTED) - 1 ? n : sizeof(TB_REDACTED) - 1;
            memcpy(o, TB_REDACTED, k);
            o += k;
            at = v + n;
            continue;
        }
        *o++ = *at++;
    }
    *outlen = o - out;
    return out;
}

/* Input filter on the request line only: httpd logs the line at trace5
 * before any hook runs, and %r logs it again, so the token must be gone
 * before httpd reads it.  Removes itself after the first line. */
static apr_status_t tb_redact_filter(ap_filter_t *f, apr_bucket_brigade *bb,
                                     ap_input_mode_t mode,
                                     apr_read_type_e block,
                                     apr_off_t readbytes)
{
    tb_req_creds *rc = f->ctx;
    apr_status_t rv = ap_get_brigade(f->next, bb, mode, block, readbytes);
    char *line, *redacted;
    apr_size_t len, newlen;

    if (rv != APR_SUCCESS || mode != AP_MODE_GETLINE || rc->line_done) {
        return rv;
    }
    rv = apr_brigade_pflatten(bb, &line, &len, f->r->pool);
    if (rv != APR_SUCCESS) {
        return rv;
    }
    if (len == 0 || (len <= 2 && line[len - 1] == '\n')) {
        return APR_SUCCESS;              /* blank lines before a request */
    }
    rc->line_done = 1;
    ap_remove_input_filter(f);
    redacted = tb_redact_line(f->r->pool, line, len, &rc->query_token,
                              &newlen);
    if (redacted && rc->query_token) {
        apr_brigade_cleanup(bb);
        APR_BRIGADE_INSERT_TAIL(bb, apr_bucket_pool_create(
            redacted, newlen, f->r->pool, f->c->bucket_alloc));
    }
    return APR_SUCCESS;
}

static void tb_pre_read_request(request_rec *r, conn_rec *c)
{
    ap_add_input_filter(TB_REDACT_FILTER, tb_creds(r), r, c);
}

/* Take Authorization off our requests before httpd dumps the headers
 * (trace4); the handler reads it from the request config. */
static int tb_post_read_request(request_rec *r)
{
    const char *auth;

    /* r->uri is not yet decoded nor its slashes merged (the handler sees
     * it so later) */
    if (!tb_our_request_path(r->pool, r->uri, strlen(r->uri))) {
        return DECLINED;
    }
    auth = apr_table_get(r->headers_in, "Authorization");
    if (auth) {
        tb_req_creds *rc = tb_creds(r);
        rc->authorization = apr_pstrdup(r->pool, auth);
        /* the header's own copy lives in this request's pool: wipe it */
        apr_crypto_memzero((char *)auth, strlen(auth));
        apr_table_setn(r->headers_in, "Authorization", TB_REDACTED);
    }
    return DECLINED;
}

/*--------------------------------------------------------------------------*/
/* Authentication                                                           */

/* For tb_authenticate: an answer was written, there is no key. */
static const tb_key *tb_answered(int status)
{
    (void)status;
    return NULL;
}

/* The request's key, or NULL when an answer (401/403/404/503) has been
 * written instead. */
static const tb_key *tb_authenticate(tb_conn *c, const char *project)
{
    request_rec *r = c->r;
    const tb_dir_conf *conf = c->conf;
    const tb_server_conf *sconf = c->sconf;
    tb_req_creds *rc = tb_creds(r);
    const char *query = rc->query_token;
    const char *why;
    char lookup[TB_DIGEST_HEX + 1];
    const char *cache_key;
    tb_cred cred;
    tb_key *key = NULL;
    int exists;

    if (!query && r->args) {
        /* the request line did not pass our filter (HTTP/2): parse here */
        char *copy = apr_pstrdup(r->pool, r->args), *last, *pair;
        for (pair = apr_strtok(copy, "&", &last); pair;
             pair = apr_strtok(NULL, "&", &last)) {
            if (!strncmp(pair, "access_token=", 13)) {
                query = pair + 13;
                break;
            }
        }
    }
    tb_cred_parse(r->pool, rc->authorization
                  ? rc->authorization
                  : apr_table_get(r->headers_in, "Authorization"),
                  query, &cred);
    if (rc->authorization) {
        apr_crypto_memzero(rc->authorization, strlen(rc->authorization));
    }
    if (rc->query_token) {
        apr_crypto_memzero(rc->query_token, strlen(rc->query_token));
    }

    if (cred.kind == TB_CRED_NONE) {
        ap_log_rerror(APLOG_MARK, APLOG_INFO, 0, r, TBLOGNO(00010)
                      "no credentials");
        return tb_answered(tb_unauthorized(r, "Authentication required: send "
                                              "an access key."));
    }
    if (cred.kind == TB_CRED_MALFORMED) {
        ap_log_rerror(APLOG_MARK, APLOG_INFO, 0, r, TBLOGNO(00011)
                      "malformed credentials");
        return tb_answered(tb_unauthorized(r, "Malformed credentials."));
    }

    if (cred.kind == TB_CRED_PUBLIC) {
        tb_sha256_hex(cred.key, strlen(cred.key), lookup);
    }
    else {
        apr_cpystrn(lookup, cred.key, sizeof(lookup));
    }
    /* one cache for both kinds: keep a key id from ever matching a
     * public key's digest */
    cache_key = apr_pstrcat(r->pool, cred.kind == TB_CRED_PUBLIC ? "pub:"
                                                               : "priv:",
                            lookup, NULL);
    if (cred.kind == TB_CRED_PRIVATE && strlen(cred.key) > TB_DIGEST_HEX) {
        key = NULL;                      /* no such id can exist */
    }
    else if (sconf->keys) {
        key = tb_keycache_get(sconf->keys, r->pool, cache_key);
    }
    if (!key && !(cred.kind == TB_CRED_PRIVATE
                  && strlen(cred.key) > TB_DIGEST_HEX)) {
        why = tb_open(c, tb_conn_wait(c));
        if (!why) {
            why = tb_store_find_key(c->store, r->pool,
                                    cred.kind == TB_CRED_PUBLIC, lookup, &key);
            tb_close(c, why);
        }
        if (why) {
            tb_cred_wipe(&cred);
            ap_log_rerror(APLOG_MARK, APLOG_ERR, 0, r, TBLOGNO(00012)
                          "looking up an access key failed: %s", why);
            return tb_answered(tb_unavailable(r, conf));
        }
        if (key && sconf->keys) {
            tb_keycache_put(sconf->keys, cache_key, key);
        }
    }
    if (!key || key->disabled) {
        tb_cred_wipe(&cred);
        ap_log_rerror(APLOG_MARK, APLOG_INFO, 0, r, TBLOGNO(00013)
                      "%s", !key ? "unknown access key"
                                 : apr_psprintf(r->pool, "key %s is disabled",
                                                key->key_id));
        return tb_answered(tb_unauthorized(r, "Access key not found"));
    }
    if (cred.kind == TB_CRED_PRIVATE
        && !tb_secret_ok(key, cred.secret, cred.secret_len,
                         tb_seconds(apr_time_now()))) {
        tb_cred_wipe(&cred);
        ap_log_rerror(APLOG_MARK, APLOG_INFO, 0, r, TBLOGNO(00014)
                      "wrong secret for key %s", key->key_id);
        return tb_answered(tb_refuse_unread(r, HTTP_FORBIDDEN,
                                            "Invalid secret"));
    }
    tb_cred_wipe(&cred);

    if (strcmp(key->project, project)) {
        why = tb_open(c, tb_conn_wait(c));
        if (!why) {
            why = tb_store_project_exists(c->store, r->pool, project,
                                          &exists);
            tb_close(c, why);
        }
        if (why) {
            ap_log_rerror(APLOG_MARK, APLOG_ERR, 0, r, TBLOGNO(00015)
                          "looking up a project failed: %s", why);
            return tb_answered(tb_unavailable(r, conf));
        }
        ap_log_rerror(APLOG_MARK, APLOG_INFO, 0, r, TBLOGNO(00016)
                      "key %s belongs to another project than '%s'",
                      key->key_id, project);
        if (!exists) {
            return tb_answered(tb_refuse_unread(r, HTTP_NOT_FOUND,
                               "The requested URL was not found on the "
                               "server."));
        }
        return tb_answered(tb_refuse_unread(r, HTTP_FORBIDDEN,
                           "Access key is not valid for this project."));
    }
    return key;
}

/*--------------------------------------------------------------------------*/
/* CORS and rate limits                                                     */

/* Mark the answer readable by the request's Origin when it is allowed;
 * never with credentials (keys travel in headers, not cookies).  Returns
 * whether it was. */
static int tb_cors(request_rec *r, const tb_dir_conf *conf)
{
    const char *origin = apr_table_get(r->headers_in, "Origin");
    int i;

    if (!conf->cors) {
        return 0;
    }
    apr_table_mergen(r->headers_out, "Vary", "Origin");
    if (!origin) {
        return 0;
    }
    for (i = 0; i < conf->cors->nelts; i++) {
        const char *allowed = APR_ARRAY_IDX(conf->cors, i, const char *);
        if (!strcmp(allowed, "*") || !strcasecmp(allowed, origin)) {
            apr_table_set(r->headers_out, "Access-Control-Allow-Origin",
                          strcmp(allowed, "*") ? origin : "*");
            /* scripts may read when to retry after a 429 or 503 */
            apr_table_setn(r->headers_out, "Access-Control-Expose-Headers",
                           "Retry-After");
            return 1;
        }
    }
    return 0;
}

/* Count this request against a limit; 1 when over it and answered 429. */
static int tb_over_limit(request_rec *r, const tb_server_conf *sconf,
                         const char *what, const char *who, int limit,
                         int period)
{
    apr_time_t now = apr_time_sec(apr_time_now());
    const core_dir_config *core;
    const char *id;
    apr_uint32_t n;

    if (limit == TB_UNSET || !sconf->rates) {
        return 0;
    }
    /* counted per location: each <Location>'s limit has its own counts */
    core = ap_get_core_module_config(r->per_dir_config);
    id = apr_psprintf(r->pool, "%s/%d/%s/%s", what, period,
                      core->d ? core->d : "", who);
    n = tb_rate_hit(sconf->rates, id, strlen(id),
                    (apr_uint32_t)(now / period));
    if (n <= (apr_uint32_t)limit) {
        return 0;
    }
    ap_log_rerror(APLOG_MARK, APLOG_INFO, 0, r, TBLOGNO(00018)
                  "over the rate limit of %d requests per %d s per %s",
                  limit, period, what);
    apr_table_setn(r->headers_out, "Retry-After",
                   apr_itoa(r->pool, (int)(period - now % period)));
    tb_refuse_unread(r, HTTP_TOO_MANY_REQUESTS, apr_psprintf(r->pool,
                     "Too many requests: at most %d per %d seconds per %s.",
                     limit, period, what));
    return 1;
}

static int tb_handler(request_rec *r)
{
    const tb_dir_conf *conf;
    const tb_server_conf *sconf;
    const tb_route *route;
    const char *project = NULL, *text, *why, *answer;
    tb_limits lim;
    tb_batch batch;
    const tb_key *key = NULL;
    tb_conn *db;
    apr_off_t limit;
    apr_size_t len = 0;
    char *body = NULL;
    double received, now;
    int status, cors;

    if (!r->handler || strcmp(r->handler, TB_HANDLER)) {
        return DECLINED;
    }
    conf = ap_get_module_config(r->per_dir_config, &track_batch_module);
    sconf = ap_get_module_config(r->server->module_config,
                                 &track_batch_module);
    received = tb_seconds(r->request_time);
    db = tb_conn_make(r, conf, sconf);

    /* browsers can read every answer of an allowed origin, a 404 too */
    cors = tb_cors(r, conf);
    route = tb_find_route(r, &project);
    if (!route) {
        return tb_refuse_unread(r, HTTP_NOT_FOUND, "The requested URL was not "
                              "found on the server.");
    }
    /* a preflight carries no credentials: answered before any check */
    if (r->method_number == M_OPTIONS) {
        apr_table_setn(r->headers_out, "Allow", route->allow);
        if (cors) {
            apr_table_setn(r->headers_out, "Access-Control-Allow-Methods",
                           route->allow);
            apr_table_setn(r->headers_out, "Access-Control-Allow-Headers",
                           "Authorization, Content-Type, Content-Encoding");
            apr_table_setn(r->headers_out, "Access-Control-Max-Age",
                           TB_CORS_MAX_AGE);
        }
        r->status = HTTP_NO_CONTENT;
        return OK;
    }
    if (tb_over_limit(r, sconf, "address", r->useragent_ip, conf->addr_limit,
                      conf->addr_period)) {
        return OK;
    }
    if (r->method_number != route->method) {
        apr_table_setn(r->headers_out, "Allow", route->allow);
        return tb_refuse_unread(r, HTTP_METHOD_NOT_ALLOWED, "The method is not "
                              "allowed for the requested URL.");
    }
    if (conf->auth != 0) {
        key = tb_authenticate(db, project);
        if (!key) {
            return OK;                   /* refused, answer written */
        }
        if (tb_over_limit(r, sconf, "key", key->key_id, conf->key_limit,
                          conf->key_period)) {
            return OK;
        }
    }
    if (route->body < 0) {
        answer = tb_answer_time(r->pool, tb_seconds(apr_time_now()), &len);
        return tb_reply(r, HTTP_OK, answer, len);
    }
    if (!tb_content_type_ok(r)) {
        ap_log_rerror(APLOG_MARK, APLOG_INFO, 0, r, TBLOGNO(00001)
                      "Content-Type '%s' refused",
                      apr_table_get(r->headers_in, "Content-Type"));
        return tb_refuse_unread(r, HTTP_UNSUPPORTED_MEDIA_TYPE,
                              "Content-Type must be application/json or "
                              "text/plain.");
    }

    /* Name the limit that will actually stop the body: ours, or core's
     * LimitRequestBody when that is lower. */
    limit = tb_max_body(conf);
    if (ap_get_limit_req_body(r) && ap_get_limit_req_body(r) < limit) {
        limit = ap_get_limit_req_body(r);
    }
    status = tb_read_body(r, limit, &body, &len);
    if (status == HTTP_REQUEST_ENTITY_TOO_LARGE
        || status == HTTP_REQUEST_TIME_OUT) {
        /* the rest of the body is not worth reading */
        r->connection->keepalive = AP_CONN_CLOSE;
    }
    if (status == HTTP_REQUEST_ENTITY_TOO_LARGE) {
        ap_log_rerror(APLOG_MARK, APLOG_INFO, 0, r, TBLOGNO(00002)
                      "request body over %" APR_OFF_T_FMT " bytes", limit);
        return tb_reply_error(r, status, apr_psprintf(r->pool,
                              "Request body is larger than %" APR_OFF_T_FMT
                              " bytes.", limit));
    }
    if (status == HTTP_REQUEST_TIME_OUT) {
        ap_log_rerror(APLOG_MARK, APLOG_INFO, 0, r, TBLOGNO(00003)
                      "request body timed out");
        return tb_reply_error(r, status, "Request body was not received in "
                              "time.");
    }
    if (status == AP_FILTER_ERROR) {
        return status;           /* a filter has answered already */
    }
    if (status != OK) {
        ap_log_rerror(APLOG_MARK, APLOG_INFO, 0, r, TBLOGNO(00004)
                      "reading the request body failed (%d)", status);
        return tb_reply_error(r, status == HTTP_INTERNAL_SERVER_ERROR
                              ? status : HTTP_BAD_REQUEST,
                              "The request body could not be read.");
    }

    lim.max_commands = tb_max_commands(conf);
    lim.max_command_size = (apr_size_t)tb_max_command_size(conf);
    lim.max_value_size = conf->max_value_size != TB_UNSET
                         ? (apr_size_t)conf->max_value_size
                         : TB_DEF_MAX_VALUE_SIZE;
    lim.max_name_len = conf->max_name_len != TB_UNSET
                       ? (apr_size_t)conf->max_name_len : TB_DEF_MAX_NAME_LEN;
    lim.id_types = conf->id_types ? conf->id_types : sconf->default_ids;

    /* the properties texts are written over the body, which is parsed
     * already: a large batch is not held twice while it is recorded.  The
     * body is freed with the request. */
    text = tb_batch_parse_in_place(r->pool, body, len,
                                   (tb_body_kind)route->body, &lim, received,
                                   &batch, &why);
    if (text) {
        ap_log_rerror(APLOG_MARK, APLOG_INFO, 0, r, TBLOGNO(00005)
                      "request refused: %s%s%s", text, why ? ": " : "",
                      why ? why : "");
        return tb_reply_error(r, HTTP_BAD_REQUEST, text);
    }

    if (key) {
        tb_authorize(r->pool, &batch, key);
    }
    if (batch.n_valid > 0) {
        why = tb_record(db, project, key, &batch, received);
        if (why) {
            ap_log_rerror(APLOG_MARK, APLOG_ERR, 0, r, TBLOGNO(00007)
                          "recording %d command(s) for project '%s' failed: "
                          "%s", batch.n_valid, project, why);
            return tb_unavailable(r, conf);
        }
    }

    now = tb_seconds(apr_time_now());
    answer = tb_answer_batch(r->pool, &batch, received, now, now, &len);
    if (APLOGrtrace1(r)) {
        int i, kept = 0, again = 0;
        for (i = 0; i < batch.commands->nelts; i++) {
            const tb_command *c = &APR_ARRAY_IDX(batch.commands, i, tb_command);
            if (c->kind == TB_CMD_CUSTOMER || c->kind == TB_CMD_EVENT) {
                *(c->duplicate ? &again : &kept) += 1;
            }
        }
        ap_log_rerror(APLOG_MARK, APLOG_TRACE1, 0, r, TBLOGNO(00008)
                      "project '%s': %d command(s), %d recorded, %d recorded "
                      "before (retry or identical event)", project,
                      batch.commands->nelts, kept, again);
    }
    return tb_reply(r, HTTP_OK, answer, len);
}

/*--------------------------------------------------------------------------*/
/* Hooks                                                                    */

static int tb_pre_config(apr_pool_t *pconf, apr_pool_t *plog,
                         apr_pool_t *ptemp)
{
    /* a timed lock, so a writer waits no longer than TrackBatchBusyTimeout */
    return ap_mutex_register(pconf, TB_WRITE_MUTEX, NULL,
                             APR_LOCK_DEFAULT_TIMED, 0) == APR_SUCCESS
           ? OK : HTTP_INTERNAL_SERVER_ERROR;
}

static int tb_post_config(apr_pool_t *pconf, apr_pool_t *plog,
                          apr_pool_t *ptemp, server_rec *s)
{
    ap_dbd_t *(*dbd_open)(apr_pool_t *, server_rec *)
        = APR_RETRIEVE_OPTIONAL_FN(ap_dbd_open);
    void (*dbd_close)(server_rec *, ap_dbd_t *)
        = APR_RETRIEVE_OPTIONAL_FN(ap_dbd_close);
    apr_global_mutex_t *writers;
    const char *mech;
    apr_status_t rv;
    server_rec *sv;
    int rate_used = 0;

    if (!dbd_open || !dbd_close) {
        ap_log_error(APLOG_MARK, APLOG_CRIT, 0, s, TBLOGNO(00009)
                     "mod_track_batch needs mod_dbd: add "
                     "'LoadModule dbd_module .../mod_dbd.so'");
        return HTTP_INTERNAL_SERVER_ERROR;
    }
    /* SQLite lets one writer in at a time; the writers of every child
     * queue on this mutex rather than poll the database's lock */
    rv = ap_global_mutex_create(&writers, NULL, TB_WRITE_MUTEX, NULL, s,
                                pconf, 0);
    if (rv != APR_SUCCESS) {
        ap_log_error(APLOG_MARK, APLOG_CRIT, rv, s, TBLOGNO(00020)
                     "cannot create the SQLite writers' mutex (Mutex "
                     TB_WRITE_MUTEX ")");
        return HTTP_INTERNAL_SERVER_ERROR;
    }
    /* 'Mutex file:... default' (a common line) makes this fcntl, on which
     * APR can only emulate a timed lock by polling in naps: a newcomer
     * overtakes writers that wait, and the slowest answers under load
     * took seconds (README, Performance). */
    mech = apr_global_mutex_name(writers);
    if ((!strcmp(mech, "fcntl") || !strcmp(mech, "flock"))
        && ap_state_query(AP_SQ_MAIN_STATE) != AP_SQ_MS_CREATE_PRE_CONFIG) {
        ap_log_error(APLOG_MARK, APLOG_NOTICE, 0, s, TBLOGNO(00022)
                     "Mutex " TB_WRITE_MUTEX " uses %s, which can only poll "
                     "for a timed lock, so SQLite writers may wait out of "
                     "turn; 'Mutex pthread " TB_WRITE_MUTEX "' lets them "
                     "queue", mech);
    }
    for (sv = s; sv; sv = sv->next) {
        tb_server_conf *sc = ap_get_module_config(sv->module_config,
                                                  &track_batch_module);

        /* httpd gives a virtual host with no TrackBatch* directive of its
         * own the main server's record, but mod_dbd's database is set per
         * server: the writers' queue and the gate made from the record in
         * child_init must be the host's own, or a writer would take another
         * host's batches into its database. */
        if (sv != s && sc == ap_get_module_config(s->module_config,
                                                  &track_batch_module)) {
            sc = apr_pmemdup(pconf, sc, sizeof(*sc));
            ap_set_module_config(sv->module_config, &track_batch_module, sc);
        }
        sc->dbd_open = dbd_open;
        sc->dbd_close = dbd_close;
        sc->writers = writers;
        rate_used |= sc->rate_used;
    }

    /* Rate counters: anonymous shared memory made here, in the parent, is
     * inherited by every child; it lives until the next restart. */
    if (rate_used) {
        apr_shm_t *shm;
        apr_uint64_t seed;
        tb_rate_table *rates;

        rv = apr_shm_create(&shm, tb_rate_size(TB_RATE_SLOTS), NULL, pconf);
        if (rv == APR_SUCCESS) {
            rv = apr_generate_random_bytes((unsigned char *)&seed,
                                           sizeof(seed));
        }
        if (rv != APR_SUCCESS) {
            ap_log_error(APLOG_MARK, APLOG_CRIT, rv, s, TBLOGNO(00019)
                         "no shared memory for TrackBatchRateLimit");
            return HTTP_INTERNAL_SERVER_ERROR;
        }
        rates = tb_rate_init(apr_shm_baseaddr_get(shm), TB_RATE_SLOTS, seed);
        for (sv = s; sv; sv = sv->next) {
            tb_server_conf *sc = ap_get_module_config(sv->module_config,
                                                      &track_batch_module);
            sc->rates = rates;
        }
    }
    return OK;
}

/* One key cache and one connection gate per server and child process,
 * shared by its threads. */
static void tb_child_init(apr_pool_t *pchild, server_rec *s)
{
    tb_server_conf *main = ap_get_module_config(s->module_config,
                                                &track_batch_module);
    apr_global_mutex_t *writers = main->writers;
    server_rec *sv;

    if (writers) {
        apr_status_t rv = apr_global_mutex_child_init(
            &writers, apr_global_mutex_lockfile(writers), pchild);
        if (rv != APR_SUCCESS) {
            ap_log_error(APLOG_MARK, APLOG_ERR, rv, s, TBLOGNO(00021)
                         "cannot attach to the SQLite writers' mutex: this "
                         "process orders its writes by SQLite's lock alone");
            writers = NULL;
        }
    }

    for (sv = s; sv; sv = sv->next) {
        tb_server_conf *sc = ap_get_module_config(sv->module_config,
                                                  &track_batch_module);
        apr_off_t ttl = sc->key_cache_ttl != TB_UNSET ? sc->key_cache_ttl
                                                      : TB_DEF_KEY_CACHE_TTL;
        apr_status_t rv = APR_SUCCESS;

        sc->writers = writers;
        /* per server: mod_dbd's database is set per server */
        if (tb_writeq_create(pchild, &sc->queue) != APR_SUCCESS) {
            ap_log_error(APLOG_MARK, APLOG_WARNING, 0, sv, TBLOGNO(00023)
                         "no queue of SQLite writers in this process: each "
                         "batch will be committed by itself");
        }
        /* without a mutex every request asks mod_dbd, as without the gate */
        sc->gate = apr_pcalloc(pchild, sizeof(*sc->gate));
        if (apr_thread_mutex_create(&sc->gate->probe,
                                    APR_THREAD_MUTEX_DEFAULT, pchild)) {
            sc->gate = NULL;
        }
        sc->keys = NULL;
        if (ttl > 0) {
            rv = tb_keycache_create(pchild, apr_time_from_sec(ttl),
                                    TB_KEY_CACHE_MAX, &sc->keys);
        }
        if (rv != APR_SUCCESS) {
            ap_log_error(APLOG_MARK, APLOG_ERR, rv, sv, TBLOGNO(00017)
                         "no key cache in this process: every request "
                         "will look its key up");
        }
    }
}

static void tb_register_hooks(apr_pool_t *p)
{
    ap_hook_pre_config(tb_pre_config, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_post_config(tb_post_config, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_child_init(tb_child_init, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_pre_read_request(tb_pre_read_request, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_post_read_request(tb_post_read_request, NULL, NULL,
                              APR_HOOK_REALLY_FIRST);
    ap_hook_handler(tb_handler, NULL, NULL, APR_HOOK_MIDDLE);
    ap_register_input_filter(TB_REDACT_FILTER, tb_redact_filter, NULL,
                             AP_FTYPE_PROTOCOL);
}

AP_DECLARE_MODULE(track_batch) = {
    STANDARD20_MODULE_STUFF,
    tb_create_dir_conf,         /* create per-directory config */
    tb_merge_dir_conf,          /* merge per-directory config */
    tb_create_server_conf,      /* create per-server config */
    tb_merge_server_conf,       /* merge per-server config */
    tb_cmds,                    /* directives */
    tb_register_hooks,          /* register hooks */
    AP_MODULE_FLAG_NONE         /* flags */
};
