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
 * Strict JSON scanner.  Recursive descent over the raw bytes; the depth is
 * capped before each descent, so the C stack is bounded by
 * TB_JSON_MAX_DEPTH frames whatever the input.
 */

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <apr_hash.h>
#include <apr_strings.h>

#include "tb_json.h"

typedef struct {
    const unsigned char *s;
    apr_size_t len;
    apr_size_t pos;
    apr_size_t members;
    apr_pool_t *pool;
    const char *err;
    int escapes;            /* the last string scanned had a backslash */
} tb_scanner;

/* Objects with more members than this find duplicate keys by a hash. */
#define TB_JSON_LINEAR_KEYS 16

static int tb_scan_value(tb_scanner *sc, int depth, tb_json_type *type,
                         tb_jv *node);

static int tb_fail(tb_scanner *sc, const char *why)
{
    if (!sc->err) {
        sc->err = apr_psprintf(sc->pool, "%s at byte %" APR_SIZE_T_FMT,
                               why, sc->pos);
    }
    return -1;
}

static void tb_skip_ws(tb_scanner *sc)
{
    while (sc->pos < sc->len) {
        unsigned char c = sc->s[sc->pos];
        if (c != ' ' && c != '\t' && c != '\n' && c != '\r') {
            break;
        }
        sc->pos++;
    }
}

static int tb_hex4(tb_scanner *sc, unsigned *cp)
{
    unsigned v = 0;
    int i;

    if (sc->len - sc->pos < 4) {
        return tb_fail(sc, "truncated \\u escape");
    }
    for (i = 0; i < 4; i++) {
        unsigned char c = sc->s[sc->pos++];
        v <<= 4;
        if (c >= '0' && c <= '9')      v |= c - '0';
        else if (c >= 'a' && c <= 'f') v |= c - 'a' + 10;
        else if (c >= 'A' && c <= 'F') v |= c - 'A' + 10;
        else return tb_fail(sc, "bad \\u escape");
    }
    *cp = v;
    return 0;
}

static void tb_put_utf8(tb_sb_t *out, unsigned cp)
{
    char b[4];
    apr_size_t n;

    if (cp < 0x80) {
        b[0] = (char)cp; n = 1;
    }
    else if (cp < 0x800) {
        b[0] = (char)(0xC0 | (cp >> 6));
        b[1] = (char)(0x80 | (cp & 0x3F)); n = 2;
    }
    else if (cp < 0x10000) {
        b[0] = (char)(0xE0 | (cp >> 12));
        b[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        b[2] = (char)(0x80 | (cp & 0x3F)); n = 3;
    }
    else {
        b[0] = (char)(0xF0 | (cp >> 18));
        b[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
        b[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
        b[3] = (char)(0x80 | (cp & 0x3F)); n = 4;
    }
    tb_sb_add(out, b, n);
}

/* Length of the valid UTF-8 sequence starting at s[0] (a byte >= 0x80),
 * or 0 when it is invalid or truncated (RFC 3629 table). */
static apr_size_t tb_utf8_len(const unsigned char *s, apr_size_t avail)
{
    unsigned char c = s[0];
    unsigned char lo = 0x80, hi = 0xBF;
    apr_size_t n, i;

    if (c >= 0xC2 && c <= 0xDF)      n = 2;
    else if (c == 0xE0)              { n = 3; lo = 0xA0; }
    else if (c >= 0xE1 && c <= 0xEC) n = 3;
    else if (c == 0xED)              { n = 3; hi = 0x9F; }   /* no surrogates */
    else if (c >= 0xEE && c <= 0xEF) n = 3;
    else if (c == 0xF0)              { n = 4; lo = 0x90; }
    else if (c >= 0xF1 && c <= 0xF3) n = 4;
    else if (c == 0xF4)              { n = 4; hi = 0x8F; }   /* <= U+10FFFF */
    else return 0;

    if (avail < n) {
        return 0;
    }
    if (s[1] < lo || s[1] > hi) {
        return 0;
    }
    for (i = 2; i < n; i++) {
        if (s[i] < 0x80 || s[i] > 0xBF) {
            return 0;
        }
    }
    return n;
}

/* Scan a string starting at its opening quote.  When @a out is given the
 * decoded value is appended to it (used for top-level keys only). */
static int tb_scan_string(tb_scanner *sc, tb_sb_t *out)
{
    sc->escapes = 0;
    sc->pos++;                                   /* opening quote */
    while (sc->pos < sc->len) {
        unsigned char c = sc->s[sc->pos];

        if (c == '"') {
            sc->pos++;
            return 0;
        }
        if (c < 0x20) {
            return tb_fail(sc, "control character in string");
        }
        if (c == '\\') {
            unsigned cp;
            char e;

            sc->escapes = 1;
            if (++sc->pos >= sc->len) {
                break;
            }
            e = (char)sc->s[sc->pos++];
            switch (e) {
            case '"': case '\\': case '/':
                cp = (unsigned char)e; break;
            case 'b': cp = '\b'; break;
            case 'f': cp = '\f'; break;
            case 'n': cp = '\n'; break;
            case 'r': cp = '\r'; break;
            case 't': cp = '\t'; break;
            case 'u':
                if (tb_hex4(sc, &cp)) {
                    return -1;
                }
                if (cp == 0) {
                    /* json-c would cut keys here; apr_dbd binds by strlen */
                    return tb_fail(sc, "\\u0000 in string");
                }
                if (cp >= 0xDC00 && cp <= 0xDFFF) {
                    return tb_fail(sc, "lone low surrogate");
                }
                if (cp >= 0xD800 && cp <= 0xDBFF) {
                    unsigned lo;
                    if (sc->len - sc->pos < 6 || sc->s[sc->pos] != '\\'
                        || sc->s[sc->pos + 1] != 'u') {
                        return tb_fail(sc, "lone high surrogate");
                    }
                    sc->pos += 2;
                    if (tb_hex4(sc, &lo)) {
                        return -1;
                    }
                    if (lo < 0xDC00 || lo > 0xDFFF) {
                        return tb_fail(sc, "lone high surrogate");
                    }
                    cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                }
                break;
            default:
                return tb_fail(sc, "bad escape");
            }
            if (out) {
                tb_put_utf8(out, cp);
            }
            continue;
        }
        if (c < 0x80) {
            if (out) {
                tb_sb_add(out, (const char *)&sc->s[sc->pos], 1);
            }
            sc->pos++;
        }
        else {
            apr_size_t n = tb_utf8_len(&sc->s[sc->pos], sc->len - sc->pos);
            if (n == 0) {
                return tb_fail(sc, "invalid UTF-8");
            }
            if (out) {
                tb_sb_add(out, (const char *)&sc->s[sc->pos], n);
            }
            sc->pos += n;
        }
    }
    return tb_fail(sc, "unterminated string");
}

/* Compare a run of decimal digits with the decimal text of a bound of the
 * same length: > 0 when the digits are larger. */
static int tb_digits_cmp(const unsigned char *d, const char *bound)
{
    return memcmp(d, bound, strlen(bound));
}

/* The value of a valid number literal: strtod of its digits and an
 * exponent, no decimal point, so that every locale reads it alike
 * (json-c switches locales for each parse instead). */
static double tb_literal_value(apr_pool_t *p, const char *lit,
                               apr_size_t len)
{
    const char *c = lit, *end = lit + len;
    long long exp = 0;
    apr_size_t frac = 0;
    int in_frac = 0, exp_neg = 0;
    char e[32];
    tb_sb_t d;

    tb_sb_init(&d, p, len + sizeof(e));
    for (; c < end && *c != 'e' && *c != 'E'; c++) {
        if (*c == '.') {
            in_frac = 1;
            continue;
        }
        frac += in_frac;
        tb_sb_add(&d, c, 1);
    }
    if (c < end) {
        c++;
        if (*c == '+' || *c == '-') {
            exp_neg = *c++ == '-';
        }
        for (; c < end; c++) {
            if (exp < 1000000000LL) {      /* only the sign of huge ones
                                              matters */
                exp = exp * 10 + (*c - '0');
            }
        }
    }
    apr_snprintf(e, sizeof(e), "e%" APR_INT64_T_FMT,
                 (apr_int64_t)((exp_neg ? -exp : exp) - (long long)frac));
    tb_sb_adds(&d, e);
    return strtod(tb_sb_str(&d), NULL);
}

/* @a is_int: set to whether the literal is an integer (json-c's int). */
static int tb_scan_number(tb_scanner *sc, int *is_int)
{
    const unsigned char *s = sc->s;
    apr_size_t start = sc->pos, int_start, int_end, frac_start = 0,
               frac_end = 0, i, first_nz, ndig;
    int neg = 0, has_frac = 0, has_exp = 0, exp_neg = 0;
    long long exp = 0, lead;

    if (s[sc->pos] == '-') {
        neg = 1;
        sc->pos++;
    }
    int_start = sc->pos;
    if (sc->pos >= sc->len || s[sc->pos] < '0' || s[sc->pos] > '9') {
        return tb_fail(sc, "bad number");
    }
    if (s[sc->pos] == '0') {
        sc->pos++;
    }
    else {
        while (sc->pos < sc->len && s[sc->pos] >= '0' && s[sc->pos] <= '9') {
            sc->pos++;
        }
    }
    int_end = sc->pos;
    if (sc->pos < sc->len && s[sc->pos] == '.') {
        has_frac = 1;
        frac_start = ++sc->pos;
        while (sc->pos < sc->len && s[sc->pos] >= '0' && s[sc->pos] <= '9') {
            sc->pos++;
        }
        frac_end = sc->pos;
        if (frac_end == frac_start) {
            return tb_fail(sc, "bad number");
        }
    }
    if (sc->pos < sc->len && (s[sc->pos] == 'e' || s[sc->pos] == 'E')) {
        apr_size_t exp_start;
        has_exp = 1;
        sc->pos++;
        if (sc->pos < sc->len && (s[sc->pos] == '+' || s[sc->pos] == '-')) {
            exp_neg = s[sc->pos] == '-';
            sc->pos++;
        }
        exp_start = sc->pos;
        while (sc->pos < sc->len && s[sc->pos] >= '0' && s[sc->pos] <= '9') {
            if (exp < 1000000000LL) {          /* saturate: only the sign
                                                  of huge exponents matters */
                exp = exp * 10 + (s[sc->pos] - '0');
            }
            sc->pos++;
        }
        if (sc->pos == exp_start) {
            return tb_fail(sc, "bad number");
        }
        if (exp_neg) {
            exp = -exp;
        }
    }

    *is_int = !has_frac && !has_exp;
    if (*is_int) {
        /* json-c 0.16 saturates integers outside int64/uint64 silently */
        apr_size_t n = int_end - int_start;
        if (neg ? (n > 19 || (n == 19 && tb_digits_cmp(s + int_start,
                                         "9223372036854775808") > 0))
                : (n > 20 || (n == 20 && tb_digits_cmp(s + int_start,
                                         "18446744073709551615") > 0))) {
            return tb_fail(sc, "integer out of 64-bit range");
        }
        return 0;
    }

    /* Decimal exponent of the leading significant digit decides overflow;
     * only the narrow band around 1e308 needs an exact conversion. */
    ndig = (int_end - int_start) + (has_frac ? frac_end - frac_start : 0);
    first_nz = ndig;
    for (i = 0; i < ndig; i++) {
        apr_size_t at = i < int_end - int_start ? int_start + i
                                                : frac_start + i - (int_end - int_start);
        if (s[at] != '0') {
            first_nz = i;
            break;
        }
    }
    if (first_nz == ndig) {
        return 0;                                /* zero */
    }
    lead = (long long)(int_end - int_start) - 1 - (long long)first_nz + exp;
    if (lead >= 309) {
        return tb_fail(sc, "number overflows a double");
    }
    if (lead == 308 && isinf(tb_literal_value(sc->pool, (const char *)s + start,
                                              sc->pos - start))) {
        return tb_fail(sc, "number overflows a double");
    }
    return 0;
}

/* After a member or an element: 1 when another follows, 0 at the closing
 * bracket (consumed), -1 on anything else. */
static int tb_next(tb_scanner *sc, char close)
{
    tb_skip_ws(sc);
    if (sc->pos < sc->len && sc->s[sc->pos] == ',') {
        sc->pos++;
        return 1;
    }
    if (sc->pos < sc->len && sc->s[sc->pos] == close) {
        sc->pos++;
        return 0;
    }
    return tb_fail(sc, close == '}' ? "expected ',' or '}'"
                                    : "expected ',' or ']'");
}

static int tb_scan_literal(tb_scanner *sc, const char *word)
{
    apr_size_t n = strlen(word);
    if (sc->len - sc->pos < n || memcmp(sc->s + sc->pos, word, n)) {
        return tb_fail(sc, "invalid token");
    }
    sc->pos += n;
    return 0;
}

/* The decoded text of the string just scanned, from @a start (its
 * opening quote) to sc->pos, NUL-terminated in the pool: a copy of its
 * bytes unless it had escapes. */
static const char *tb_string_text(tb_scanner *sc, apr_size_t start,
                                  apr_size_t *len)
{
    apr_size_t n = sc->pos - start - 2;
    apr_size_t end = sc->pos;
    tb_sb_t out;

    if (!sc->escapes) {
        *len = n;
        return apr_pstrmemdup(sc->pool, (const char *)sc->s + start + 1, n);
    }
    /* decoded again, now that it is known to be valid: never longer */
    tb_sb_init(&out, sc->pool, n + 1);
    sc->pos = start;
    tb_scan_string(sc, &out);
    sc->pos = end;
    *len = out.len;
    return tb_sb_str(&out);
}

/* Has the object @a obj a member @a key already?  @a seen, once made,
 * holds every key. */
static int tb_key_seen(tb_scanner *sc, const tb_jv *obj, apr_hash_t **seen,
                       const char *key, apr_size_t klen)
{
    const tb_jv *m;

    if (!*seen && obj->len < TB_JSON_LINEAR_KEYS) {
        for (m = obj->first; m; m = m->next) {
            if (!strcmp(m->key, key)) {
                return 1;
            }
        }
        return 0;
    }
    if (!*seen) {
        *seen = apr_hash_make(sc->pool);
        for (m = obj->first; m; m = m->next) {
            apr_hash_set(*seen, m->key, APR_HASH_KEY_STRING, "");
        }
    }
    if (apr_hash_get(*seen, key, klen)) {
        return 1;
    }
    apr_hash_set(*seen, key, klen, "");
    return 0;
}

/* A new child of @a parent, last in text order. */
static tb_jv *tb_child(tb_scanner *sc, tb_jv *parent, tb_jv **last)
{
    tb_jv *v = apr_pcalloc(sc->pool, sizeof(*v));

    if (*last) {
        (*last)->next = v;
    }
    else {
        parent->first = v;
    }
    *last = v;
    parent->len++;
    return v;
}

/* @a cmd, when given, receives where the object's "command_id" value is:
 * keys are decoded at this level only, for elements of "commands".  With
 * @a node, the object is built there, and a key given twice is refused
 * (json-c would keep the last silently). */
static int tb_scan_object(tb_scanner *sc, int depth, tb_json_span *cmd,
                          tb_jv *node)
{
    apr_hash_t *seen = NULL;
    tb_jv *last = NULL;
    int rc;

    sc->pos++;                                   /* '{' */
    tb_skip_ws(sc);
    if (sc->pos < sc->len && sc->s[sc->pos] == '}') {
        sc->pos++;
        return 0;
    }
    for (;;) {
        tb_json_type t;
        apr_size_t start;
        tb_jv *member = NULL;
        int is_id = 0;

        tb_skip_ws(sc);
        if (sc->pos >= sc->len || sc->s[sc->pos] != '"') {
            return tb_fail(sc, "expected a key");
        }
        start = sc->pos;
        if (node) {
            apr_size_t klen;
            const char *key;

            if (tb_scan_string(sc, NULL)) {
                return -1;
            }
            key = tb_string_text(sc, start, &klen);
            if (tb_key_seen(sc, node, &seen, key, klen)) {
                return tb_fail(sc, "duplicate key");
            }
            member = tb_child(sc, node, &last);
            member->key = key;
            is_id = cmd && klen == 10 && !memcmp(key, "command_id", 10);
        }
        else if (cmd) {
            tb_sb_t key;
            tb_sb_init(&key, sc->pool, 16);
            if (tb_scan_string(sc, &key)) {
                return -1;
            }
            is_id = key.len == 10 && !memcmp(key.buf, "command_id", 10);
        }
        else if (tb_scan_string(sc, NULL)) {
            return -1;
        }
        tb_skip_ws(sc);
        if (sc->pos >= sc->len || sc->s[sc->pos] != ':') {
            return tb_fail(sc, "expected ':'");
        }
        sc->pos++;
        sc->members++;
        tb_skip_ws(sc);
        start = sc->pos;
        if (tb_scan_value(sc, depth, &t, member)) {
            return -1;
        }
        if (is_id) {
            cmd->id_start = start;
            cmd->id_len = sc->pos - start;
            cmd->id_type = t;
            is_id = 0;
        }
        if ((rc = tb_next(sc, '}')) <= 0) {
            return rc;
        }
    }
}

/* Scan an array; when @a items is given record each element's span, up to
 * @a max_items of them, and count them all in @a count.  With @a node,
 * the array is built there. */
static int tb_scan_array(tb_scanner *sc, int depth, apr_array_header_t *items,
                         apr_size_t max_items, apr_size_t *count, tb_jv *node)
{
    tb_jv *last = NULL;
    int rc;

    sc->pos++;                                   /* '[' */
    tb_skip_ws(sc);
    if (sc->pos < sc->len && sc->s[sc->pos] == ']') {
        sc->pos++;
        return 0;
    }
    for (;;) {
        tb_json_span span;
        apr_size_t before;

        tb_skip_ws(sc);
        memset(&span, 0, sizeof(span));
        span.start = sc->pos;
        before = sc->members;
        if (items && sc->pos < sc->len && sc->s[sc->pos] == '{') {
            span.type = TB_JSON_OBJECT;
            if (depth + 1 > TB_JSON_MAX_DEPTH) {
                return tb_fail(sc, "nesting too deep");
            }
            if (tb_scan_object(sc, depth + 1, &span, NULL)) {
                return -1;
            }
        }
        else if (tb_scan_value(sc, depth, &span.type,
                               node ? tb_child(sc, node, &last) : NULL)) {
            return -1;
        }
        if (items) {
            if (++*count <= max_items) {
                span.len = sc->pos - span.start;
                span.members = sc->members - before;
                *(tb_json_span *)apr_array_push(items) = span;
            }
        }
        if ((rc = tb_next(sc, ']')) <= 0) {
            return rc;
        }
    }
}

/* @a depth is the number of containers around the value.  With @a node,
 * the value is built there. */
static int tb_scan_value(tb_scanner *sc, int depth, tb_json_type *type,
                         tb_jv *node)
{
    apr_size_t start;
    int rc;

    tb_skip_ws(sc);
    if (sc->pos >= sc->len) {
        return tb_fail(sc, "unexpected end");
    }
    start = sc->pos;
    switch (sc->s[sc->pos]) {
    case '{':
        *type = TB_JSON_OBJECT;
        if (depth + 1 > TB_JSON_MAX_DEPTH) {
            return tb_fail(sc, "nesting too deep");
        }
        rc = tb_scan_object(sc, depth + 1, NULL, node);
        break;
    case '[':
        *type = TB_JSON_ARRAY;
        if (depth + 1 > TB_JSON_MAX_DEPTH) {
            return tb_fail(sc, "nesting too deep");
        }
        rc = tb_scan_array(sc, depth + 1, NULL, 0, NULL, node);
        break;
    case '"':
        *type = TB_JSON_STRING;
        rc = tb_scan_string(sc, NULL);
        if (rc == 0 && node) {
            node->str = tb_string_text(sc, start, &node->len);
        }
        break;
    case 't':
        *type = TB_JSON_BOOL;
        rc = tb_scan_literal(sc, "true");
        if (node) {
            node->truth = 1;
        }
        break;
    case 'f':
        *type = TB_JSON_BOOL;
        rc = tb_scan_literal(sc, "false");
        break;
    case 'n':
        *type = TB_JSON_NULL;
        rc = tb_scan_literal(sc, "null");
        break;
    default: {
        int is_int = 0;

        *type = TB_JSON_NUMBER;
        rc = tb_scan_number(sc, &is_int);
        if (rc == 0 && node) {
            /* the literal stays in the text: numbers are read back only
             * before the caller writes over it */
            node->str = (const char *)sc->s + start;
            node->len = sc->pos - start;
            node->is_int = is_int;
        }
        break;
    }
    }
    if (node) {
        node->type = *type;
    }
    return rc;
}

/* The top-level object: keys are decoded to find "commands" and to refuse
 * duplicates, which json-c would silently collapse to the last. */
static int tb_scan_top(tb_scanner *sc, tb_json_scan_t *out,
                       apr_size_t max_items)
{
    apr_hash_t *seen = apr_hash_make(sc->pool);
    int rc;

    sc->pos++;                                   /* '{' */
    tb_skip_ws(sc);
    if (sc->pos < sc->len && sc->s[sc->pos] == '}') {
        sc->pos++;
        return 0;
    }
    for (;;) {
        tb_sb_t key;
        tb_json_span span;
        apr_size_t before;

        tb_skip_ws(sc);
        if (sc->pos >= sc->len || sc->s[sc->pos] != '"') {
            return tb_fail(sc, "expected a key");
        }
        tb_sb_init(&key, sc->pool, 16);
        if (tb_scan_string(sc, &key)) {
            return -1;
        }
        if (apr_hash_get(seen, key.buf, key.len)) {
            return tb_fail(sc, "duplicate key");
        }
        apr_hash_set(seen, key.buf, key.len, "");
        tb_skip_ws(sc);
        if (sc->pos >= sc->len || sc->s[sc->pos] != ':') {
            return tb_fail(sc, "expected ':'");
        }
        sc->pos++;
        sc->members++;
        tb_skip_ws(sc);
        span.start = sc->pos;
        before = sc->members;
        if (key.len == 8 && !memcmp(key.buf, "commands", 8)
            && sc->pos < sc->len && sc->s[sc->pos] == '[') {
            span.type = TB_JSON_ARRAY;
            out->items = apr_array_make(sc->pool, 64, sizeof(tb_json_span));
            if (tb_scan_array(sc, 2, out->items, max_items, &out->n_items,
                              NULL)) {
                return -1;
            }
        }
        else if (tb_scan_value(sc, 1, &span.type, NULL)) {
            return -1;
        }
        if (key.len == 8 && !memcmp(key.buf, "commands", 8)) {
            span.len = sc->pos - span.start;
            span.members = sc->members - before;
            out->has_commands = 1;
            out->commands = span;
        }
        if ((rc = tb_next(sc, '}')) <= 0) {
            return rc;
        }
    }
}

const char *tb_json_scan(apr_pool_t *p, const char *text, apr_size_t len,
                         apr_size_t max_items, tb_json_scan_t *out)
{
    tb_scanner sc;
    int rc;

    memset(out, 0, sizeof(*out));
    memset(&sc, 0, sizeof(sc));
    sc.s = (const unsigned char *)text;
    sc.len = len;
    sc.pool = p;

    tb_skip_ws(&sc);
    if (sc.pos < len && sc.s[sc.pos] == '{') {
        out->top = TB_JSON_OBJECT;
        rc = tb_scan_top(&sc, out, max_items);
    }
    else {
        rc = tb_scan_value(&sc, 0, &out->top, NULL);
    }
    if (rc == 0) {
        tb_skip_ws(&sc);
        if (sc.pos != len) {
            rc = tb_fail(&sc, "trailing characters");
        }
    }
    out->top_members = sc.members;
    return rc ? sc.err : NULL;
}

const char *tb_json_parse(apr_pool_t *p, const char *text, apr_size_t len,
                          tb_jv **out)
{
    tb_scanner sc;
    tb_jv *root = apr_pcalloc(p, sizeof(*root));
    tb_json_type type;
    int rc;

    memset(&sc, 0, sizeof(sc));
    sc.s = (const unsigned char *)text;
    sc.len = len;
    sc.pool = p;
    rc = tb_scan_value(&sc, 0, &type, root);
    if (rc == 0) {
        tb_skip_ws(&sc);
        if (sc.pos != len) {
            rc = tb_fail(&sc, "trailing characters");
        }
    }
    *out = rc ? NULL : root;
    return rc ? sc.err : NULL;
}

const tb_jv *tb_jv_get(const tb_jv *obj, const char *key)
{
    const tb_jv *m;

    for (m = obj->first; m; m = m->next) {
        if (!strcmp(m->key, key)) {
            return m->type == TB_JSON_NULL ? NULL : m;
        }
    }
    return NULL;
}

double tb_jv_number(apr_pool_t *p, const tb_jv *v)
{
    double val = tb_literal_value(p, v->str, v->len);

    /* "-0" is json-c's integer 0, not a negative zero */
    return v->is_int && val == 0 ? 0.0 : val;
}

void tb_sb_add_jv(tb_sb_t *sb, const tb_jv *v)
{
    const tb_jv *m;

    switch (v->type) {
    case TB_JSON_BOOL:
        tb_sb_adds(sb, v->truth ? "true" : "false");
        break;
    case TB_JSON_NUMBER:
        /* as json-c prints it: integers by value, so "-0" is 0; others as
         * written */
        if (v->is_int && v->len == 2 && v->str[0] == '-' && v->str[1] == '0') {
            tb_sb_add(sb, "0", 1);
        }
        else {
            tb_sb_add(sb, v->str, v->len);
        }
        break;
    case TB_JSON_STRING:
        tb_sb_add_jstr(sb, v->str, v->len);
        break;
    case TB_JSON_ARRAY:
    case TB_JSON_OBJECT:
        tb_sb_add(sb, v->type == TB_JSON_OBJECT ? "{" : "[", 1);
        for (m = v->first; m; m = m->next) {
            if (m != v->first) {
                tb_sb_add(sb, ",", 1);
            }
            if (v->type == TB_JSON_OBJECT) {
                tb_sb_add_jstr(sb, m->key, strlen(m->key));
                tb_sb_add(sb, ":", 1);
            }
            tb_sb_add_jv(sb, m);
        }
        tb_sb_add(sb, v->type == TB_JSON_OBJECT ? "}" : "]", 1);
        break;
    default:
        tb_sb_add(sb, "null", 4);
        break;
    }
}

/* ------------------------------------------------------------------ */
/* Writing                                                             */

void tb_sb_init(tb_sb_t *sb, apr_pool_t *p, apr_size_t hint)
{
    sb->pool = p;
    sb->cap = hint < 16 ? 16 : hint;
    sb->buf = apr_palloc(p, sb->cap);
    sb->len = 0;
}

void tb_sb_init_at(tb_sb_t *sb, apr_pool_t *p, char *buf, apr_size_t cap)
{
    sb->pool = p;
    sb->buf = buf;
    sb->cap = cap;
    sb->len = 0;
}

static void tb_sb_grow(tb_sb_t *sb, apr_size_t need)
{
    apr_size_t cap = sb->cap;
    char *nb;

    while (cap - sb->len < need) {
        cap *= 2;
    }
    nb = apr_palloc(sb->pool, cap);
    memcpy(nb, sb->buf, sb->len);
    sb->buf = nb;
    sb->cap = cap;
}

void tb_sb_add(tb_sb_t *sb, const char *s, apr_size_t n)
{
    if (sb->cap - sb->len < n + 1) {
        tb_sb_grow(sb, n + 1);
    }
    memcpy(sb->buf + sb->len, s, n);
    sb->len += n;
}

void tb_sb_adds(tb_sb_t *sb, const char *s)
{
    tb_sb_add(sb, s, strlen(s));
}

apr_size_t tb_jstr_len(const char *s, apr_size_t n)
{
    apr_size_t i, len = n + 2;

    for (i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\' || c == '\n' || c == '\r' || c == '\t'
            || c == '\b' || c == '\f') {
            len += 1;
        }
        else if (c < 0x20) {
            len += 5;
        }
    }
    return len;
}

void tb_sb_add_jstr(tb_sb_t *sb, const char *s, apr_size_t n)
{
    static const char hex[] = "0123456789abcdef";
    apr_size_t i, run = 0;

    tb_sb_add(sb, "\"", 1);
    for (i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        char esc[6];
        apr_size_t elen = 2;

        if (c >= 0x20 && c != '"' && c != '\\') {
            continue;
        }
        tb_sb_add(sb, s + run, i - run);
        run = i + 1;
        esc[0] = '\\';
        switch (c) {
        case '"':  esc[1] = '"';  break;
        case '\\': esc[1] = '\\'; break;
        case '\n': esc[1] = 'n';  break;
        case '\r': esc[1] = 'r';  break;
        case '\t': esc[1] = 't';  break;
        case '\b': esc[1] = 'b';  break;
        case '\f': esc[1] = 'f';  break;
        default:
            esc[1] = 'u'; esc[2] = '0'; esc[3] = '0';
            esc[4] = hex[c >> 4]; esc[5] = hex[c & 0xF];
            elen = 6;
        }
        tb_sb_add(sb, esc, elen);
    }
    tb_sb_add(sb, s + run, n - run);
    tb_sb_add(sb, "\"", 1);
}

char *tb_format_double(char *buf, double v)
{
    char *c;

    snprintf(buf, 32, "%.17g", v);
    /* a locale may have set another decimal separator: the number has no
     * other punctuation, so put '.' back */
    for (c = buf; *c; c++) {
        if (*c == ',') {
            *c = '.';
        }
    }
    return buf;
}

void tb_sb_add_time(tb_sb_t *sb, double t)
{
    char b[64];
    /* apr_snprintf formats floats itself, so the locale cannot change '.' */
    apr_size_t n = apr_snprintf(b, sizeof(b), "%.6f", t);
    tb_sb_add(sb, b, n);
}

const char *tb_sb_str(tb_sb_t *sb)
{
    if (sb->cap == sb->len) {
        tb_sb_grow(sb, 1);
    }
    sb->buf[sb->len] = '\0';
    return sb->buf;
}
