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
#include <json-c/json.h>

#include "tb_auth.h"
#include "tb_batch.h"
#include "tb_json.h"

/* How far ahead of the receipt time a timestamp may be (SPEC §4). */
#define TB_MAX_FUTURE 86400.0

#define TB_PRINT_FLAGS (JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE)

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

static apr_status_t tb_tokener_cleanup(void *tok)
{
    json_tokener_free(tok);
    return APR_SUCCESS;
}

/* Count object members in a tree and refuse non-finite numbers: the
 * scanner counted members in the text, so fewer here means json-c folded
 * duplicate keys. */
static apr_size_t tb_tree_check(struct json_object *o, int *bad)
{
    apr_size_t n = 0;

    switch (json_object_get_type(o)) {
    case json_type_double:
        if (!isfinite(json_object_get_double(o))) {
            *bad = 1;
        }
        break;
    case json_type_object: {
        json_object_object_foreach(o, k, v) {
            (void)k;
            n += 1 + tb_tree_check(v, bad);
        }
        break;
    }
    case json_type_array: {
        size_t i, len = json_object_array_length(o);
        for (i = 0; i < len; i++) {
            n += tb_tree_check(json_object_array_get_idx(o, i), bad);
        }
        break;
    }
    default:
        break;
    }
    return n;
}

/* Absent and JSON null mean the same to every optional field: the Python
 * SDK sends null for what it does not know. */
static struct json_object *tb_get(struct json_object *o, const char *key)
{
    struct json_object *v = NULL;

    if (!json_object_object_get_ex(o, key, &v)) {
        return NULL;
    }
    return v;
}

static int tb_is_number(struct json_object *v)
{
    return json_object_is_type(v, json_type_int)
           || json_object_is_type(v, json_type_double);
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

static void tb_check_ids(apr_pool_t *p, struct json_object *data,
                         const tb_limits *lim, tb_command *c)
{
    struct json_object *ids = tb_get(data, "customer_ids");
    int i;

    if (!ids || !json_object_is_type(ids, json_type_object)) {
        tb_error(p, c, "Field 'customer_ids' is required.");
        return;
    }
    if (json_object_object_length(ids) == 0) {
        tb_error(p, c, "At least one id should be specified.");
        return;
    }
    c->ids = apr_array_make(p, json_object_object_length(ids), sizeof(tb_id));
    json_object_object_foreach(ids, name, v) {
        const tb_id_type *type = NULL;

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
        if (v && !json_object_is_type(v, json_type_string)) {
            tb_error(p, c, apr_psprintf(p, "Value of customer id '%s' must "
                                        "be a string.", name));
            continue;
        }
        if (!v || !tb_usable_id(json_object_get_string(v))) {
            continue;
        }
        {
            tb_id *id = apr_array_push(c->ids);
            id->name = type->name;
            id->value = apr_pstrmemdup(p, json_object_get_string(v),
                                       json_object_get_string_len(v));
            id->hard = type->hard;
        }
    }
    if (c->ids->nelts == 0) {
        tb_error(p, c, "At least one valid id should be specified");
    }
}

/* Validate a property name and serialise its value.  Returns the value
 * text (owned by json-c until the tree is freed), or NULL on error. */
static const char *tb_check_prop(apr_pool_t *p, const char *name,
                                 struct json_object *v, const tb_limits *lim,
                                 tb_command *c, size_t *vlen)
{
    apr_size_t nlen = strlen(name);
    const char *text;

    if (nlen == 0 || nlen > lim->max_name_len) {
        tb_error(p, c, apr_psprintf(p, "Property names must be 1 to %"
                                    APR_SIZE_T_FMT " bytes long.",
                                    lim->max_name_len));
        return NULL;
    }
    text = json_object_to_json_string_length(v, TB_PRINT_FLAGS, vlen);
    if (!text) {
        /* json-c out of memory: never drop a property silently */
        tb_error(p, c, apr_psprintf(p, "Value of property '%s' could not be "
                                    "read.", name));
        return NULL;
    }
    if (*vlen >= lim->max_value_size) {
        tb_error(p, c, apr_psprintf(p, "Value of property '%s' must be "
                                    "smaller than %" APR_SIZE_T_FMT " bytes.",
                                    name, lim->max_value_size));
        return NULL;
    }
    return text;
}

/* Properties of either command: each checked and serialised, then joined
 * into one object text of the exact size (a growing buffer would leave
 * its smaller copies in the pool: up to twice a large command).  Each
 * property is also listed, its value pointing into that text.  With
 * @a room (the command's own body text, parsed already), the text is
 * written there when it fits, rather than copied into the pool. */
static void tb_check_props(apr_pool_t *p, struct json_object *data,
                           const tb_limits *lim, char *room,
                           apr_size_t room_len, tb_command *c)
{
    struct json_object *props = tb_get(data, "properties");
    const char **texts;
    tb_sb_t sb;
    apr_size_t total = 2;
    int i, n = 0, nerr = c->errors ? c->errors->nelts : 0;

    c->props = apr_array_make(p, props && json_object_is_type(props,
                              json_type_object)
                              ? json_object_object_length(props) : 0,
                              sizeof(tb_prop));
    if (!props || json_object_is_type(props, json_type_null)) {
        c->properties = "{}";
        return;
    }
    if (!json_object_is_type(props, json_type_object)) {
        tb_error(p, c, "Field 'properties' must be an object.");
        return;
    }
    /* the serialisations stay with their json-c values until the tree is
     * freed, after this function */
    texts = apr_palloc(p, (c->props->nalloc + 1) * sizeof(char *));
    json_object_object_foreach(props, name, v) {
        size_t vlen;
        const char *text = tb_check_prop(p, name, v, lim, c, &vlen);
        tb_prop *prop;

        if (!text) {
            continue;
        }
        prop = apr_array_push(c->props);
        prop->name = apr_pstrdup(p, name);
        prop->value_len = vlen;
        texts[n++] = text;
        total += (n > 1) + tb_jstr_len(name, strlen(name)) + 1 + vlen;
    }
    if ((c->errors ? c->errors->nelts : 0) != nerr) {
        return;
    }
    if (room && total + 1 <= room_len) {
        tb_sb_init_at(&sb, p, room, total + 1);
    }
    else {
        tb_sb_init(&sb, p, total + 1);
    }
    tb_sb_add(&sb, "{", 1);
    for (i = 0; i < n; i++) {
        tb_prop *prop = &APR_ARRAY_IDX(c->props, i, tb_prop);
        if (i) {
            tb_sb_add(&sb, ",", 1);
        }
        tb_sb_add_jstr(&sb, prop->name, strlen(prop->name));
        tb_sb_add(&sb, ":", 1);
        prop->value = sb.buf + sb.len;        /* the buffer never moves */
        tb_sb_add(&sb, texts[i], prop->value_len);
    }
    tb_sb_add(&sb, "}", 1);
    c->properties = tb_sb_str(&sb);
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
static void tb_check_time(apr_pool_t *p, struct json_object *data,
                          const char *field, double now, tb_command *c)
{
    struct json_object *v = tb_get(data, field);
    struct json_object *age = tb_get(data, "age");
    const char *used = field;
    double t = now;

    if (v && !json_object_is_type(v, json_type_null)) {
        c->time_given = 1;
        if (tb_is_number(v)) {
            t = json_object_get_double(v);
        }
        else if (!json_object_is_type(v, json_type_string)
                 || tb_parse_iso8601(json_object_get_string(v),
                                     json_object_get_string_len(v), &t)) {
            tb_error(p, c, apr_psprintf(p, "Field '%s' must be Unix time in "
                                        "seconds or an ISO-8601 date-time.",
                                        field));
            return;
        }
    }
    else if (age && !json_object_is_type(age, json_type_null)) {
        used = "age";
        if (!tb_is_number(age) || json_object_get_double(age) < 0) {
            tb_error(p, c, "Field 'age' must be a number of seconds, "
                           "0 or more.");
            return;
        }
        t = now - json_object_get_double(age);
    }
    if (!(t >= 0 && t <= now + TB_MAX_FUTURE)) {
        tb_error(p, c, apr_psprintf(p, "Field '%s' is out of range: expected "
                                    "Unix time in seconds, at most 24 hours "
                                    "ahead; were milliseconds sent?", used));
        return;
    }
    c->time = t;
}

static void tb_check_event(apr_pool_t *p, struct json_object *data,
                           const tb_limits *lim, double now, char *room,
                           apr_size_t room_len, tb_command *c)
{
    struct json_object *type = tb_get(data, "event_type");

    tb_check_ids(p, data, lim, c);
    if (!type || !json_object_is_type(type, json_type_string)
        || json_object_get_string_len(type) == 0) {
        tb_error(p, c, "Field 'event_type' is required.");
    }
    else if ((apr_size_t)json_object_get_string_len(type) > lim->max_name_len) {
        tb_error(p, c, apr_psprintf(p, "Field 'event_type' must be at most %"
                                    APR_SIZE_T_FMT " bytes long.",
                                    lim->max_name_len));
    }
    else {
        c->event_type = apr_pstrmemdup(p, json_object_get_string(type),
                                       json_object_get_string_len(type));
    }
    tb_check_props(p, data, lim, room, room_len, c);
    tb_check_time(p, data, "timestamp", now, c);
    c->kind = c->errors ? TB_CMD_INVALID : TB_CMD_EVENT;
    if (c->kind == TB_CMD_EVENT) {
        tb_dedup_key(p, c);
    }
}

static void tb_check_customer(apr_pool_t *p, struct json_object *data,
                              const tb_limits *lim, double now, char *room,
                              apr_size_t room_len, tb_command *c)
{
    tb_check_ids(p, data, lim, c);
    tb_check_props(p, data, lim, room, room_len, c);
    tb_check_time(p, data, "update_timestamp", now, c);
    c->kind = c->errors ? TB_CMD_INVALID : TB_CMD_CUSTOMER;
}

/* Keep a command's id for storing and for echoing in its result. */
static void tb_set_command_id(apr_pool_t *p, struct json_object *id,
                              tb_command *c)
{
    if (!id || json_object_is_type(id, json_type_null)) {
        return;
    }
    if (json_object_is_type(id, json_type_string)) {
        tb_sb_t sb;
        apr_size_t n = json_object_get_string_len(id);
        c->command_id = apr_pstrmemdup(p, json_object_get_string(id), n);
        tb_sb_init(&sb, p, n + 3);
        tb_sb_add_jstr(&sb, c->command_id, n);
        c->command_id_json = tb_sb_str(&sb);
    }
    else if (json_object_is_type(id, json_type_int)) {
        c->command_id = apr_pstrdup(p, json_object_to_json_string_ext(
                                            id, TB_PRINT_FLAGS));
        c->command_id_json = c->command_id;
    }
    else {
        tb_error(p, c, "Field 'command_id' must be a string or an integer.");
    }
}

/* The id of a command too large to parse whole: the scanner found where
 * its value lies; a scalar needs the terminating NUL to end in json-c. */
static void tb_command_id_of_span(apr_pool_t *p, struct json_tokener *tok,
                                  const char *body, const tb_json_span *sp,
                                  tb_command *c)
{
    struct json_object *id;
    char *text;

    if (sp->id_type == TB_JSON_NONE) {
        return;
    }
    text = apr_pstrmemdup(p, body + sp->id_start, sp->id_len);
    json_tokener_reset(tok);
    id = json_tokener_parse_ex(tok, text, (int)sp->id_len + 1);
    if (id) {
        tb_set_command_id(p, id, c);
        json_object_put(id);
    }
}

/* One element of "commands". */
static void tb_check_command(apr_pool_t *p, struct json_object *cmd,
                             const tb_limits *lim, double now, char *room,
                             apr_size_t room_len, tb_command *c)
{
    struct json_object *name = tb_get(cmd, "name");
    struct json_object *data = tb_get(cmd, "data");
    const char *n;

    tb_set_command_id(p, tb_get(cmd, "command_id"), c);
    if (!name || !json_object_is_type(name, json_type_string)) {
        tb_error(p, c, "Field 'name' is required.");
        return;
    }
    n = json_object_get_string(name);
    if (!strcmp(n, "system/time")) {
        c->kind = c->errors ? TB_CMD_INVALID : TB_CMD_TIME;
        return;
    }
    if (strcmp(n, "customers") && strcmp(n, "customers/events")) {
        tb_error(p, c, tb_quote(p, "Unknown command name '%s'.", n,
                                "Unknown command name."));
        return;
    }
    if (!data || json_object_is_type(data, json_type_null)) {
        tb_error(p, c, "Field 'data' is required.");
        return;
    }
    if (!json_object_is_type(data, json_type_object)) {
        tb_error(p, c, "Field 'data' must be an object.");
        return;
    }
    if (!strcmp(n, "customers")) {
        tb_check_customer(p, data, lim, now, room, room_len, c);
    }
    else {
        tb_check_event(p, data, lim, now, room, room_len, c);
    }
}

/* Parse one object's text with json-c and hold it to the scanner's count. */
static struct json_object *tb_parse_one(struct json_tokener *tok,
                                        const char *text, apr_size_t len,
                                        apr_size_t members,
                                        const char **why)
{
    struct json_object *o;
    int bad = 0;

    json_tokener_reset(tok);
    o = json_tokener_parse_ex(tok, text, (int)len);
    if (!o || json_tokener_get_error(tok) != json_tokener_success) {
        *why = "json-c refused what the scanner accepted";
        json_object_put(o);
        return NULL;
    }
    if (tb_tree_check(o, &bad) != members) {
        *why = "duplicate key";
        json_object_put(o);
        return NULL;
    }
    if (bad) {
        *why = "non-finite number";
        json_object_put(o);
        return NULL;
    }
    return o;
}

/* @a room is NULL or @a body itself, writable: a command's text, once
 * parsed by json-c, is not read again */
static const char *tb_parse(apr_pool_t *p, const char *body, char *room,
                            apr_size_t len, tb_body_kind kind,
                            const tb_limits *lim, double now, tb_batch *batch,
                            const char **log_reason)
{
    tb_json_scan_t scan;
    struct json_tokener *tok;
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

    /* json-c counts the value inside the deepest container as one more
     * level; the scanner has already enforced the real limit */
    tok = json_tokener_new_ex(TB_JSON_MAX_DEPTH + 1);
    if (!tok) {
        *log_reason = "out of memory for the JSON tokener";
        return TB_ERR_INVALID_JSON;
    }
    apr_pool_cleanup_register(p, tok, tb_tokener_cleanup,
                              apr_pool_cleanup_null);
    json_tokener_set_flags(tok, JSON_TOKENER_STRICT);

    size_error = apr_psprintf(p, "Command size must be smaller than %"
                              APR_SIZE_T_FMT " bytes.", lim->max_command_size);

    if (kind != TB_BODY_BATCH) {
        tb_command *c;
        struct json_object *data;

        batch->commands = apr_array_make(p, 1, sizeof(tb_command));
        c = apr_array_push(batch->commands);
        memset(c, 0, sizeof(*c));
        if (len >= lim->max_command_size) {
            tb_error(p, c, size_error);
            return NULL;
        }
        data = tb_parse_one(tok, body, len, scan.top_members, log_reason);
        if (!data) {
            return TB_ERR_INVALID_JSON;
        }
        if (kind == TB_BODY_CUSTOMER) {
            tb_check_customer(p, data, lim, now, room, len, c);
        }
        else {
            tb_check_event(p, data, lim, now, room, len, c);
        }
        json_object_put(data);
        batch->n_valid = c->kind != TB_CMD_INVALID;
        return NULL;
    }

    batch->commands = apr_array_make(p, scan.items->nelts, sizeof(tb_command));
    for (i = 0; i < scan.items->nelts; i++) {
        const tb_json_span *sp = &APR_ARRAY_IDX(scan.items, i, tb_json_span);
        tb_command *c = apr_array_push(batch->commands);
        struct json_object *cmd;

        memset(c, 0, sizeof(*c));
        if (sp->len >= lim->max_command_size) {
            tb_command_id_of_span(p, tok, body, sp, c);
            tb_error(p, c, size_error);
            continue;
        }
        if (sp->type != TB_JSON_OBJECT) {
            tb_error(p, c, "Command must be a JSON object.");
            continue;
        }
        cmd = tb_parse_one(tok, body + sp->start, sp->len, sp->members,
                           log_reason);
        if (!cmd) {
            return TB_ERR_INVALID_JSON;
        }
        /* validate, keep the plain record, free the tree at once */
        tb_check_command(p, cmd, lim, now, room ? room + sp->start : NULL,
                         sp->len, c);
        json_object_put(cmd);
        if (c->kind == TB_CMD_CUSTOMER || c->kind == TB_CMD_EVENT) {
            batch->n_valid++;
        }
    }
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
