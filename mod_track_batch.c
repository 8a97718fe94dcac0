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
 * -> tb_store_write (one transaction through mod_dbd) -> answer.
 */

#include "apr_dbd.h"
#include "apr_lib.h"
#include "apr_optional.h"
#include "apr_strings.h"

#include "httpd.h"
#include "http_config.h"
#include "http_core.h"
#include "http_log.h"
#include "http_protocol.h"
#include "http_request.h"
#include "mod_dbd.h"

#include "tb_batch.h"
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
} tb_dir_conf;

typedef struct {
    ap_dbd_t *(*dbd_acquire)(request_rec *);  /* mod_dbd, found at startup */
    apr_array_header_t *default_ids;          /* registered hard, cookie soft */
} tb_server_conf;

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
    return sc;
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

/* Limits are bounded so that every size fits json-c's int lengths. */
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
                  "lock before answering 503 (default 5000)"),
    AP_INIT_TAKE1("TrackBatchRetryAfter", tb_set_retry_after, NULL,
                  ACCESS_CONF, "Seconds sent in Retry-After with 503 "
                  "(default 5)"),
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

/* Find the route and project token in the path; NULL when unknown. */
static const tb_route *tb_find_route(request_rec *r, const char **project)
{
    const char *at = strstr(r->uri, TB_ROUTES_PREFIX);
    const char *tok, *slash;
    apr_size_t i, n;

    if (!at) {
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
                cap = (apr_size_t)declared + 1;
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

static int tb_handler(request_rec *r)
{
    const tb_dir_conf *conf;
    const tb_server_conf *sconf;
    const tb_route *route;
    const char *project = NULL, *text, *why, *answer;
    tb_limits lim;
    tb_batch batch;
    tb_store *store;
    ap_dbd_t *dbd;
    apr_off_t limit;
    apr_size_t len = 0;
    char *body = NULL;
    double received, now;
    int status;

    if (!r->handler || strcmp(r->handler, TB_HANDLER)) {
        return DECLINED;
    }
    conf = ap_get_module_config(r->per_dir_config, &track_batch_module);
    sconf = ap_get_module_config(r->server->module_config,
                                 &track_batch_module);
    received = tb_seconds(r->request_time);

    route = tb_find_route(r, &project);
    if (!route) {
        return tb_refuse_unread(r, HTTP_NOT_FOUND, "The requested URL was not "
                              "found on the server.");
    }
    if (r->method_number == M_OPTIONS) {
        apr_table_setn(r->headers_out, "Allow", route->allow);
        r->status = HTTP_NO_CONTENT;
        return OK;
    }
    if (r->method_number != route->method) {
        apr_table_setn(r->headers_out, "Allow", route->allow);
        return tb_refuse_unread(r, HTTP_METHOD_NOT_ALLOWED, "The method is not "
                              "allowed for the requested URL.");
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

    text = tb_batch_parse(r->pool, body, len, (tb_body_kind)route->body,
                          &lim, received, &batch, &why);
    if (text) {
        ap_log_rerror(APLOG_MARK, APLOG_INFO, 0, r, TBLOGNO(00005)
                      "request refused: %s%s%s", text, why ? ": " : "",
                      why ? why : "");
        return tb_reply_error(r, HTTP_BAD_REQUEST, text);
    }

    if (batch.n_valid > 0) {
        dbd = sconf->dbd_acquire(r);
        if (!dbd) {
            ap_log_rerror(APLOG_MARK, APLOG_ERR, 0, r, TBLOGNO(00006)
                          "no database connection from mod_dbd "
                          "(see its DBDriver / DBDParams)");
            return tb_unavailable(r, conf);
        }
        why = tb_store_attach(dbd->pool, dbd->driver, dbd->handle,
                              tb_busy_timeout(conf), &store);
        if (!why) {
            why = tb_store_write(store, r->pool, project, &batch, received,
                                 tb_busy_timeout(conf));
        }
        if (why) {
            ap_log_rerror(APLOG_MARK, APLOG_ERR, 0, r, TBLOGNO(00007)
                          "recording %d command(s) for project '%s' failed, "
                          "nothing kept: %s", batch.n_valid, project, why);
            return tb_unavailable(r, conf);
        }
    }

    now = tb_seconds(apr_time_now());
    answer = tb_answer_batch(r->pool, &batch, received, now, now, &len);
    ap_log_rerror(APLOG_MARK, APLOG_TRACE1, 0, r, TBLOGNO(00008)
                  "project '%s': %d of %d command(s) recorded", project,
                  batch.n_valid, batch.commands->nelts);
    return tb_reply(r, HTTP_OK, answer, len);
}

/*--------------------------------------------------------------------------*/
/* Hooks                                                                    */

static int tb_post_config(apr_pool_t *pconf, apr_pool_t *plog,
                          apr_pool_t *ptemp, server_rec *s)
{
    ap_dbd_t *(*acquire)(request_rec *) = APR_RETRIEVE_OPTIONAL_FN(ap_dbd_acquire);
    server_rec *sv;

    if (!acquire) {
        ap_log_error(APLOG_MARK, APLOG_CRIT, 0, s, TBLOGNO(00009)
                     "mod_track_batch needs mod_dbd: add "
                     "'LoadModule dbd_module .../mod_dbd.so'");
        return HTTP_INTERNAL_SERVER_ERROR;
    }
    for (sv = s; sv; sv = sv->next) {
        tb_server_conf *sc = ap_get_module_config(sv->module_config,
                                                  &track_batch_module);
        sc->dbd_acquire = acquire;
    }
    return OK;
}

static void tb_register_hooks(apr_pool_t *p)
{
    ap_hook_post_config(tb_post_config, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_handler(tb_handler, NULL, NULL, APR_HOOK_MIDDLE);
}

AP_DECLARE_MODULE(track_batch) = {
    STANDARD20_MODULE_STUFF,
    tb_create_dir_conf,         /* create per-directory config */
    tb_merge_dir_conf,          /* merge per-directory config */
    tb_create_server_conf,      /* create per-server config */
    NULL,                       /* merge per-server config */
    tb_cmds,                    /* directives */
    tb_register_hooks,          /* register hooks */
    AP_MODULE_FLAG_NONE         /* flags */
};
