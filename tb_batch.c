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
 * Validation of commands (SPEC §3, §4) and the answer text.  Batch and
 * single routes share every function below the body-level entry point.
 */

#include <locale.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <wctype.h>

#include <apr_strings.h>

#include "tb_auth.h"
#include "tb_batch.h"
#include "tb_json.h"

/* How far ahead of the receipt time a timestamp may be (SPEC §4). */
#define TB_MAX_FUTURE 86400.0

/* Longest client-supplied name quoted back in an error text. */
#define TB_ECHO_MAX 128

static void tb_error(apr_pool_t *p, tb_command *c, const char *text)
{
    if (!c->errors) {
        c->errors = apr_array_make(p, 2, sizeof(const char *));
    }
    APR_ARRAY_PUSH(c->errors, const char *) = text;
}

/* Quote a client-supplied name in an error text, when short enough. */
static const char *tb_quote(apr_pool_t *p, const char *fmt, const char *name,
                            const char *fmt_long)
{
    if (strlen(name) > TB_ECHO_MAX) {
        return fmt_long;
    }
    return apr_psprintf(p, fmt, name);
}

/* Is there a letter or digit beyond ASCII?  Classified by the C library's
 * Unicode tables (C.UTF-8, a thread-safe locale object); when that locale
 * is missing, any non-ASCII character counts. */
static int tb_has_unicode_alnum(const unsigned char *c)
{
    locale_t loc = newlocale(LC_CTYPE_MASK, "C.UTF-8", (locale_t)0);
    int found = 0;

    while (*c && !found) {
        unsigned cp;
        int n, i;

        if (*c < 0x80)      { c++; continue; }
        else if (*c < 0xE0) { cp = *c & 0x1F; n = 1; }
        else if (*c < 0xF0) { cp = *c & 0x0F; n = 2; }
        else                { cp = *c & 0x07; n = 3; }
        for (i = 1; i <= n && c[i]; i++) {
            cp = (cp << 6) | (c[i] & 0x3F);
        }
        c += i;
        found = loc ? iswalnum_l((wint_t)cp, loc) != 0 : 1;
    }
    if (loc) {
        freelocale(loc);
    }
    return found;
}

/* A usable id value has a letter or digit and is not a JS placeholder.
 * The text is valid UTF-8 (the scanner saw to it). */
static int tb_usable_id(const char *s)
{
    const unsigned char *c;
    int non_ascii = 0;

    if (!strcasecmp(s, "null") || !strcasecmp(s, "undefined")) {
        return 0;
    }
    for (c = (const unsigned char *)s; *c; c++) {
        if ((*c >= '0' && *c <= '9') || (*c >= 'a' && *c <= 'z')
            || (*c >= 'A' && *c <= 'Z')) {
            return 1;
        }
        non_ascii |= *c >= 0x80;
    }
    return non_ascii && tb_has_unicode_alnum((const unsigned char *)s);
}

static void tb_check_ids(apr_pool_t *p, const tb_jv *data,
                         const tb_limits *lim, tb_command *c)
{
    const tb_jv *ids = tb_jv_get(data, "customer_ids");
    const tb_jv *v;
    int i;

    if (!ids || ids->type != TB_JSON_OBJECT) {
        tb_error(p, c, "Field 'customer_ids' is required.");
        return;
    }
    if (ids->len == 0) {
        tb_error(p, c, "At least one id should be specified.");
        return;
    }
    c->ids = apr_array_make(p, (int)ids->len, sizeof(tb_id));
    for (v = ids->first; v; v = v->next) {
        const tb_id_type *type = NULL;
        const char *name = v->key;

        for (i = 0; i < lim->id_types->nelts; i++) {
            const tb_id_type *t = &APR_ARRAY_IDX(lim->id_types, i, tb_id_type);
            if (!strcmp(t->name, name)) {
                type = t;
                break;
            }
        }
        if (!type) {
            tb_error(p, c, tb_quote(p, "Unknown customer id '%s'.", name,
                                    "Unknown customer id."));
            continue;
        }
        if (v->type == TB_JSON_NULL) {
            continue;
        }
        if (v->type != TB_JSON_STRING) {
            tb_error(p, c, apr_psprintf(p, "Value of customer id '%s' must "
                                        "be a string.", name));
            continue;
        }
        if (!tb_usable_id(v->str)) {
            continue;
        }
        {
            tb_id *id = apr_array_push(c->ids);
            id->name = type->name;
            id->value = apr_pstrmemdup(p, v->str, v->len);
            id->hard = type->hard;
        }
    }
    if (c->ids->nelts == 0) {
        tb_error(p, c, "At least one valid id should be specified");
    }
}

/* Properties of either command: each name checked and each value
 * serialised as json-c prints it, into one object text in @a tmp, each
 * property listed with its value pointing into that text.  The text
 * moves to its place (tb_place_props) once the command is valid. */
static void tb_check_props(apr_pool_t *p, apr_pool_t *tmp, const tb_jv *data,
                           const tb_limits *lim, tb_command *c)
{
    const tb_jv *props = tb_jv_get(data, "properties");
    const tb_jv *v;
    tb_sb_t sb;
    apr_size_t *at;
    int i, nerr = c->errors ? c->errors->nelts : 0;

    c->props = apr_array_make(p, props && props->type == TB_JSON_OBJECT
                                 ? (int)props->len : 0, sizeof(tb_prop));
    if (!props) {
        c->properties = "{}";
        return;
    }
    if (props->type != TB_JSON_OBJECT) {
        tb_error(p, c, "Field 'properties' must be an object.");
        return;
    }
    /* offsets first: the text may move while it grows */
    at = apr_palloc(tmp, (props->len + 1) * sizeof(*at));
    tb_sb_init(&sb, tmp, 256);
    tb_sb_add(&sb, "{", 1);
    for (v = props->first; v; v = v->next) {
        apr_size_t nlen = strlen(v->key), mark = sb.len, start;
        tb_prop *prop;

        if (nlen == 0 || nlen > lim->max_name_len) {
            tb_error(p, c, apr_psprintf(p, "Property names must be 1 to %"
                                        APR_SIZE_T_FMT " bytes long.",
                                        lim->max_name_len));
            continue;
        }
        if (c->props->nelts) {
            tb_sb_add(&sb, ",", 1);
        }
        tb_sb_add_jstr(&sb, v->key, nlen);
        tb_sb_add(&sb, ":", 1);
        start = sb.len;
        tb_sb_add_jv(&sb, v);
        if (sb.len - start >= lim->max_value_size) {
            tb_error(p, c, apr_psprintf(p, "Value of property '%s' must be "
                                        "smaller than %" APR_SIZE_T_FMT
                                        " bytes.", v->key,
                                        lim->max_value_size));
            sb.len = mark;
            continue;
        }
        at[c->props->nelts] = start;
        prop = apr_array_push(c->props);
        prop->name = apr_pstrmemdup(p, v->key, nlen);
        prop->value_len = sb.len - start;
    }
    if ((c->errors ? c->errors->nelts : 0) != nerr) {
        return;
    }
    tb_sb_add(&sb, "}", 1);
    c->properties = tb_sb_str(&sb);
    for (i = 0; i < c->props->nelts; i++) {
        APR_ARRAY_IDX(c->props, i, tb_prop).value = sb.buf + at[i];
    }
}

/* Move a valid command's properties text out of the scratch pool: over
 * the command's own bytes @a room when it fits (its compact text is
 * almost never longer than the command), else into @a p, at its exact
 * size.  The command's tree is not read after this. */
static void tb_place_props(apr_pool_t *p, char *room, apr_size_t room_len,
                           tb_command *c)
{
    const char *from = c->properties;
    apr_size_t n = strlen(from);
    char *to;
    int i;

    if (!c->props->nelts) {
        c->properties = "{}";
        return;
    }
    to = room && n + 1 <= room_len ? room : apr_palloc(p, n + 1);
    memmove(to, from, n + 1);
    c->properties = to;
    for (i = 0; i < c->props->nelts; i++) {
        tb_prop *prop = &APR_ARRAY_IDX(c->props, i, tb_prop);
        prop->value = to + (prop->value - from);
    }
}

static int tb_prop_cmp(const void *a, const void *b)
{
    return strcmp(((const tb_prop *)a)->name, ((const tb_prop *)b)->name);
}

/* Bloomreach drops an event identical to one recorded: same customer,
 * type, timestamp (full precision) and property values.  The key covers
 * all but the customer, properties in name order; consent events are
 * never deduplicated. */
static void tb_dedup_key(apr_pool_t *p, tb_command *c)
{
    tb_prop *sorted;
    tb_sha256_t *h;
    char hex[TB_DIGEST_HEX + 1];
    char num[32];
    const char *t;
    int i;

    /* without a timestamp every event of a batch has the same receipt
     * time: they are distinct events, not copies */
    if (!c->time_given || !strcmp(c->event_type, "consent")) {
        return;
    }
    h = tb_sha256_start(p);
    if (!h) {
        /* never record an event that could not be checked */
        tb_error(p, c, "The event could not be checked for duplicates.");
        c->kind = TB_CMD_INVALID;
        return;
    }
    /* one spare slot: never a zero-size allocation */
    sorted = apr_palloc(p, (c->props->nelts + 1) * sizeof(tb_prop));
    memcpy(sorted, c->props->elts, c->props->nelts * sizeof(tb_prop));
    qsort(sorted, c->props->nelts, sizeof(tb_prop), tb_prop_cmp);
    /* hashed piece by piece: a joined copy of the values would cost as
     * much as the properties again, in the pool for the whole request */
    tb_sha256_add(h, c->event_type, strlen(c->event_type) + 1);
    t = tb_format_double(num, c->time);
    tb_sha256_add(h, t, strlen(t) + 1);
    for (i = 0; i < c->props->nelts; i++) {
        tb_sha256_add(h, sorted[i].name, strlen(sorted[i].name) + 1);
        tb_sha256_add(h, sorted[i].value, sorted[i].value_len);
        tb_sha256_add(h, "", 1);
    }
    tb_sha256_end_hex(h, hex);
    c->dedup_key = apr_pstrdup(p, hex);
}

/* "timestamp" / "update_timestamp", or "age" seconds ago, or now. */
static void tb_check_time(apr_pool_t *p, apr_pool_t *tmp, const tb_jv *data,
                          const char *field, double now, tb_command *c)
{
    const tb_jv *v = tb_jv_get(data, field);
    const tb_jv *age = tb_jv_get(data, "age");
    const char *used = field;
    double t = now;

    if (v) {
        c->time_given = 1;
        if (v->type == TB_JSON_NUMBER) {
            t = tb_jv_number(tmp, v);
        }
        else if (v->type != TB_JSON_STRING
                 || tb_parse_iso8601(v->str, v->len, &t)) {
            tb_error(p, c, apr_psprintf(p, "Field '%s' must be Unix time in "
                                        "seconds or an ISO-8601 date-time.",
                                        field));
            return;
        }
    }
    else if (age) {
        double ago = 0;

        used = "age";
        if (age->type != TB_JSON_NUMBER
            || (ago = tb_jv_number(tmp, age)) < 0) {
            tb_error(p, c, "Field 'age' must be a number of seconds, "
                           "0 or more.");
            return;
        }
        t = now - ago;
    }
    if (!(t >= 0 && t <= now + TB_MAX_FUTURE)) {
        tb_error(p, c, apr_psprintf(p, "Field '%s' is out of range: expected "
                                    "Unix time in seconds, at most 24 hours "
                                    "ahead; were milliseconds sent?", used));
        return;
    }
    c->time = t;
}

/* After a command's checks: a valid one's properties to their place, an
 * invalid one's dropped with the scratch pool. */
static void tb_finish(apr_pool_t *p, char *room, apr_size_t room_len,
                      tb_command *c, tb_cmd_kind kind)
{
    c->kind = c->errors ? TB_CMD_INVALID : kind;
    if (c->kind == TB_CMD_INVALID) {
        c->properties = NULL;
        if (c->props) {
            apr_array_clear(c->props);
        }
        return;
    }
    tb_place_props(p, room, room_len, c);
}

static void tb_check_event(apr_pool_t *p, apr_pool_t *tmp, const tb_jv *data,
                           const tb_limits *lim, double now, char *room,
                           apr_size_t room_len, tb_command *c)
{
    const tb_jv *type = tb_jv_get(data, "event_type");

    tb_check_ids(p, data, lim, c);
    if (!type || type->type != TB_JSON_STRING || type->len == 0) {
        tb_error(p, c, "Field 'event_type' is required.");
    }
    else if (type->len > lim->max_name_len) {
        tb_error(p, c, apr_psprintf(p, "Field 'event_type' must be at most %"
                                    APR_SIZE_T_FMT " bytes long.",
                                    lim->max_name_len));
    }
    else {
        c->event_type = apr_pstrmemdup(p, type->str, type->len);
    }
    tb_check_props(p, tmp, data, lim, c);
    tb_check_time(p, tmp, data, "timestamp", now, c);
    tb_finish(p, room, room_len, c, TB_CMD_EVENT);
    if (c->kind == TB_CMD_EVENT) {
        tb_dedup_key(p, c);
    }
}

static void tb_check_customer(apr_pool_t *p, apr_pool_t *tmp,
                              const tb_jv *data, const tb_limits *lim,
                              double now, char *room, apr_size_t room_len,
                              tb_command *c)
{
    tb_check_ids(p, data, lim, c);
    tb_check_props(p, tmp, data, lim, c);
    tb_check_time(p, tmp, data, "update_timestamp", now, c);
    tb_finish(p, room, room_len, c, TB_CMD_CUSTOMER);
}

/* Keep a command's id for storing and for echoing in its result. */
static void tb_set_command_id(apr_pool_t *p, const tb_jv *id, tb_command *c)
{
    tb_sb_t sb;

    if (!id) {
        return;
    }
    if (id->type == TB_JSON_STRING) {
        c->command_id = apr_pstrmemdup(p, id->str, id->len);
        tb_sb_init(&sb, p, id->len + 3);
        tb_sb_add_jstr(&sb, c->command_id, id->len);
        c->command_id_json = tb_sb_str(&sb);
    }
    else if (id->type == TB_JSON_NUMBER && id->is_int) {
        tb_sb_init(&sb, p, id->len + 1);
        tb_sb_add_jv(&sb, id);
        c->command_id = tb_sb_str(&sb);
        c->command_id_json = c->command_id;
    }
    else {
        tb_error(p, c, "Field 'command_id' must be a string or an integer.");
    }
}

/* The id of a command too large to parse whole: the scanner found where
 * its value lies and of what type it is.  Only a string or a number is
 * parsed (a few bytes, or an integer's digits); any other type is the
 * error it would be in a parsed command, without building its tree. */
static void tb_command_id_of_span(apr_pool_t *p, apr_pool_t *tmp,
                                  const char *body, const tb_json_span *sp,
                                  tb_command *c)
{
    tb_jv *id;

    switch (sp->id_type) {
    case TB_JSON_NONE:
    case TB_JSON_NULL:
        return;
    case TB_JSON_STRING:
    case TB_JSON_NUMBER:
        if (!tb_json_parse(tmp, body + sp->id_start, sp->id_len, &id)) {
            tb_set_command_id(p, id, c);
        }
        return;
    default:
        tb_error(p, c, "Field 'command_id' must be a string or an integer.");
    }
}

/* One element of "commands". */
static void tb_check_command(apr_pool_t *p, apr_pool_t *tmp, const tb_jv *cmd,
                             const tb_limits *lim, double now, char *room,
                             apr_size_t room_len, tb_command *c)
{
    const tb_jv *name = tb_jv_get(cmd, "name");
    const tb_jv *data = tb_jv_get(cmd, "data");
    const char *n;

    tb_set_command_id(p, tb_jv_get(cmd, "command_id"), c);
    if (!name || name->type != TB_JSON_STRING) {
        tb_error(p, c, "Field 'name' is required.");
        return;
    }
    n = name->str;
    if (!strcmp(n, "system/time")) {
        c->kind = c->errors ? TB_CMD_INVALID : TB_CMD_TIME;
        return;
    }
    if (strcmp(n, "customers") && strcmp(n, "customers/events")) {
        tb_error(p, c, tb_quote(p, "Unknown command name '%s'.", n,
                                "Unknown command name."));
        return;
    }
    if (!data) {
        tb_error(p, c, "Field 'data' is required.");
        return;
    }
    if (data->type != TB_JSON_OBJECT) {
        tb_error(p, c, "Field 'data' must be an object.");
        return;
    }
    if (!strcmp(n, "customers")) {
        tb_check_customer(p, tmp, data, lim, now, room, room_len, c);
    }
    else {
        tb_check_event(p, tmp, data, lim, now, room, room_len, c);
    }
}

/* @a room is NULL or @a body itself, writable: a command's text, once
 * parsed and checked, is not read again */
static const char *tb_parse(apr_pool_t *p, const char *body, char *room,
                            apr_size_t len, tb_body_kind kind,
                            const tb_limits *lim, double now, tb_batch *batch,
                            const char **log_reason)
{
    tb_json_scan_t scan;
    apr_pool_t *tmp;
    const char *why;
    const char *size_error;
    int i;

    memset(batch, 0, sizeof(*batch));
    batch->kind = kind;
    *log_reason = NULL;

    why = tb_json_scan(p, body, len, (apr_size_t)lim->max_commands, &scan);
    if (why) {
        *log_reason = why;
        return TB_ERR_INVALID_JSON;
    }
    if (scan.top != TB_JSON_OBJECT) {
        return TB_ERR_NOT_OBJECT;
    }

    if (kind == TB_BODY_BATCH) {
        if (!scan.has_commands) {
            return TB_ERR_NO_COMMANDS;
        }
        if (scan.commands.type != TB_JSON_ARRAY) {
            return TB_ERR_NOT_ARRAY;
        }
        if (scan.n_items == 0) {
            return TB_ERR_EMPTY;
        }
        if (scan.n_items > (apr_size_t)lim->max_commands) {
            return apr_psprintf(p, "Too many commands: at most %d commands "
                                "per batch.", lim->max_commands);
        }
    }

    /* one command's tree at a time, cleared before the next: peak memory
     * follows the largest command, not the batch */
    if (apr_pool_create(&tmp, p) != APR_SUCCESS) {
        *log_reason = "out of memory for a scratch pool";
        return TB_ERR_INVALID_JSON;
    }
    apr_pool_tag(tmp, "tb_command_tree");

    size_error = apr_psprintf(p, "Command size must be smaller than %"
                              APR_SIZE_T_FMT " bytes.", lim->max_command_size);

    if (kind != TB_BODY_BATCH) {
        tb_command *c;
        tb_jv *data;

        batch->commands = apr_array_make(p, 1, sizeof(tb_command));
        c = apr_array_push(batch->commands);
        memset(c, 0, sizeof(*c));
        if (len >= lim->max_command_size) {
            tb_error(p, c, size_error);
            apr_pool_destroy(tmp);
            return NULL;
        }
        if ((why = tb_json_parse(tmp, body, len, &data)) != NULL) {
            /* the reason is in the scratch pool, about to go */
            *log_reason = apr_pstrdup(p, why);
            apr_pool_destroy(tmp);
            return TB_ERR_INVALID_JSON;
        }
        if (kind == TB_BODY_CUSTOMER) {
            tb_check_customer(p, tmp, data, lim, now, room, len, c);
        }
        else {
            tb_check_event(p, tmp, data, lim, now, room, len, c);
        }
        apr_pool_destroy(tmp);
        batch->n_valid = c->kind != TB_CMD_INVALID;
        return NULL;
    }

    batch->commands = apr_array_make(p, scan.items->nelts, sizeof(tb_command));
    for (i = 0; i < scan.items->nelts; i++) {
        const tb_json_span *sp = &APR_ARRAY_IDX(scan.items, i, tb_json_span);
        tb_command *c = apr_array_push(batch->commands);
        tb_jv *cmd;

        memset(c, 0, sizeof(*c));
        apr_pool_clear(tmp);
        if (sp->len >= lim->max_command_size) {
            tb_command_id_of_span(p, tmp, body, sp, c);
            tb_error(p, c, size_error);
            continue;
        }
        if (sp->type != TB_JSON_OBJECT) {
            tb_error(p, c, "Command must be a JSON object.");
            continue;
        }
        if ((why = tb_json_parse(tmp, body + sp->start, sp->len, &cmd))
            != NULL) {
            *log_reason = apr_pstrdup(p, why);
            apr_pool_destroy(tmp);
            return TB_ERR_INVALID_JSON;
        }
        tb_check_command(p, tmp, cmd, lim, now, room ? room + sp->start : NULL,
                         sp->len, c);
        if (c->kind == TB_CMD_CUSTOMER || c->kind == TB_CMD_EVENT) {
            batch->n_valid++;
        }
    }
    apr_pool_destroy(tmp);
    return NULL;
}

const char *tb_batch_parse(apr_pool_t *p, const char *body, apr_size_t len,
                           tb_body_kind kind, const tb_limits *lim, double now,
                           tb_batch *batch, const char **log_reason)
{
    return tb_parse(p, body, NULL, len, kind, lim, now, batch, log_reason);
}

const char *tb_batch_parse_in_place(apr_pool_t *p, char *body, apr_size_t len,
                                    tb_body_kind kind, const tb_limits *lim,
                                    double now, tb_batch *batch,
                                    const char **log_reason)
{
    return tb_parse(p, body, body, len, kind, lim, now, batch, log_reason);
}

/* ------------------------------------------------------------------ */
/* Answers                                                             */

static void tb_add_result(tb_sb_t *sb, const tb_command *c, double now)
{
    int i;

    if (c->kind == TB_CMD_INVALID) {
        tb_sb_adds(sb, "{\"success\": false, \"errors\": [");
        for (i = 0; i < c->errors->nelts; i++) {
            const char *e = APR_ARRAY_IDX(c->errors, i, const char *);
            if (i) {
                tb_sb_add(sb, ", ", 2);
            }
            tb_sb_add_jstr(sb, e, strlen(e));
        }
        tb_sb_add(sb, "]", 1);
    }
    else if (c->kind == TB_CMD_TIME) {
        tb_sb_adds(sb, "{\"success\": true, \"time\": ");
        tb_sb_add_time(sb, now);
    }
    else {
        tb_sb_adds(sb, "{\"success\": true");
    }
    if (c->command_id_json) {
        tb_sb_adds(sb, ", \"command_id\": ");
        tb_sb_adds(sb, c->command_id_json);
    }
    tb_sb_add(sb, "}", 1);
}

const char *tb_answer_batch(apr_pool_t *p, const tb_batch *batch,
                            double start, double end, double now,
                            apr_size_t *len)
{
    tb_sb_t sb;
    int i;

    tb_sb_init(&sb, p, 64 + 48 * batch->commands->nelts);
    if (batch->kind != TB_BODY_BATCH) {
        tb_add_result(&sb, &APR_ARRAY_IDX(batch->commands, 0, tb_command), now);
    }
    else {
        tb_sb_adds(&sb, "{\"results\": [");
        for (i = 0; i < batch->commands->nelts; i++) {
            if (i) {
                tb_sb_add(&sb, ", ", 2);
            }
            tb_add_result(&sb, &APR_ARRAY_IDX(batch->commands, i, tb_command),
                          now);
        }
        tb_sb_adds(&sb, "], \"start_time\": ");
        tb_sb_add_time(&sb, start);
        tb_sb_adds(&sb, ", \"end_time\": ");
        tb_sb_add_time(&sb, end);
        tb_sb_adds(&sb, ", \"success\": true}");
    }
    tb_sb_add(&sb, "\n", 1);
    *len = sb.len;
    return tb_sb_str(&sb);
}

const char *tb_answer_time(apr_pool_t *p, double now, apr_size_t *len)
{
    tb_sb_t sb;

    tb_sb_init(&sb, p, 64);
    tb_sb_adds(&sb, "{\"success\": true, \"time\": ");
    tb_sb_add_time(&sb, now);
    tb_sb_adds(&sb, "}\n");
    *len = sb.len;
    return tb_sb_str(&sb);
}

const char *tb_answer_error(apr_pool_t *p, const char *text, apr_size_t *len)
{
    tb_sb_t sb;

    tb_sb_init(&sb, p, 64 + strlen(text));
    tb_sb_adds(&sb, "{\"success\": false, \"errors\": [");
    tb_sb_add_jstr(&sb, text, strlen(text));
    tb_sb_adds(&sb, "]}\n");
    *len = sb.len;
    return tb_sb_str(&sb);
}
