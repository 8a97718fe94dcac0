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
 * @file tb_json.h
 * @brief Strict RFC 8259 scanner and small JSON writing helpers.
 *
 * json-c 0.16 accepts things the contract forbids (NaN, 1e400, saturated
 * integers, NUL in keys, lone surrogates, raw control characters) and
 * cannot validate UTF-8 split across reads.  The scanner checks the whole
 * body once, without building a tree, and records where each element of
 * the top-level "commands" array lies, so that each command is then
 * parsed on its own (tb_json_parse) and peak memory stays near the body
 * size.
 */

#ifndef TB_JSON_H
#define TB_JSON_H

#include <apr_pools.h>
#include <apr_tables.h>

/** Deepest nesting of objects and arrays accepted (SPEC §2). */
#define TB_JSON_MAX_DEPTH 32

typedef enum {
    TB_JSON_NONE = 0,
    TB_JSON_NULL,
    TB_JSON_BOOL,
    TB_JSON_NUMBER,
    TB_JSON_STRING,
    TB_JSON_ARRAY,
    TB_JSON_OBJECT
} tb_json_type;

/** Where one value lies in the scanned text. */
typedef struct {
    apr_size_t start;      /* offset of its first byte */
    apr_size_t len;        /* length of its text */
    tb_json_type type;
    apr_size_t members;    /* object members inside it, at any depth */
    apr_size_t id_start;   /* commands: its "command_id" value, when */
    apr_size_t id_len;     /* id_type is not TB_JSON_NONE, so a command */
    tb_json_type id_type;  /* too large to parse can still be named */
} tb_json_span;

/** What the scanner learnt about a body. */
typedef struct {
    tb_json_type top;           /* type of the top-level value */
    apr_size_t top_members;     /* object members in the whole text */
    int has_commands;           /* top-level object has "commands" */
    tb_json_span commands;      /* its value */
    apr_array_header_t *items;  /* tb_json_span of the first max_items elements */
    apr_size_t n_items;         /* number of elements, all counted */
} tb_json_scan_t;

/**
 * Check that @a text is one strict RFC 8259 value and nothing else.
 * Rejects invalid UTF-8 (overlong, surrogates, > U+10FFFF), a BOM, raw
 * control characters, NUL and lone surrogates in \\u escapes, numbers that
 * overflow a double, integer literals outside the 64-bit range (json-c would
 * saturate them), nesting deeper than TB_JSON_MAX_DEPTH, and duplicate keys
 * in the top-level object.
 * @param p pool for the result
 * @param text the bytes; need not be NUL-terminated
 * @param len their number
 * @param max_items record at most this many "commands" elements (the rest
 *        are checked and counted only, so a hostile array costs no memory)
 * @param out filled on success
 * @return NULL on success, else a short reason for the log (not for clients)
 */
const char *tb_json_scan(apr_pool_t *p, const char *text, apr_size_t len,
                         apr_size_t max_items, tb_json_scan_t *out);

/** A JSON value built in a pool by tb_json_parse.  Children are listed
 * in text order; a container knows how many it has. */
typedef struct tb_jv tb_jv;
struct tb_jv {
    tb_json_type type;
    int is_int;           /* numbers: an integer literal (json-c's int) */
    int truth;            /* booleans */
    apr_size_t len;       /* strings, numbers: bytes of str;
                             arrays, objects: children */
    const char *str;      /* strings: decoded, NUL-terminated, in the pool;
                             numbers: the literal, within the parsed text
                             (not terminated) */
    const char *key;      /* a member: its decoded name, NUL-terminated */
    tb_jv *first;         /* arrays, objects: the first child */
    tb_jv *next;          /* the next child of the same container */
};

/**
 * Parse one value with the scanner's rules (tb_json_scan), building it in
 * @a p, with duplicate keys refused in every object.  A request's commands
 * are parsed one at a time into a pool cleared between them: no malloc
 * per value, as json-c would make, and nothing left for the C library's
 * per-thread caches to keep.
 * @param text the bytes (need not be NUL-terminated); number literals
 *        point into them, so they must outlive the tree
 * @return NULL and *out, else a short reason for the log
 */
const char *tb_json_parse(apr_pool_t *p, const char *text, apr_size_t len,
                          tb_jv **out);

/** The member @a key of the object @a obj, or NULL when it is absent or
 * JSON null (the same to every optional field). */
const tb_jv *tb_jv_get(const tb_jv *obj, const char *key);

/** A number's value, as json-c reads it (correctly rounded, any locale).
 * @param p pool for a scratch copy of the literal */
double tb_jv_number(apr_pool_t *p, const tb_jv *v);

/** A string builder in a pool: grows by doubling. */
typedef struct {
    apr_pool_t *pool;
    char *buf;
    apr_size_t len;
    apr_size_t cap;
} tb_sb_t;

void tb_sb_init(tb_sb_t *sb, apr_pool_t *p, apr_size_t hint);
/** A builder writing into @a buf (@a cap bytes) first; it moves into
 * @a p only if it outgrows them. */
void tb_sb_init_at(tb_sb_t *sb, apr_pool_t *p, char *buf, apr_size_t cap);
void tb_sb_add(tb_sb_t *sb, const char *s, apr_size_t n);
void tb_sb_adds(tb_sb_t *sb, const char *s);
/** Length of @a s written by tb_sb_add_jstr, quotes included. */
apr_size_t tb_jstr_len(const char *s, apr_size_t n);
/** Append @a s as a quoted JSON string (input is valid UTF-8). */
void tb_sb_add_jstr(tb_sb_t *sb, const char *s, apr_size_t n);
/**
 * Format a finite double so that it reads back exactly and is a JSON
 * number (17 significant digits, '.' whatever the locale).  APR's own %g
 * writes "2.e+6", which is not JSON.
 * @return @a buf, which must hold 32 bytes
 */
char *tb_format_double(char *buf, double v);

/** Append @a v as compact JSON, byte for byte as json-c 0.16 prints the
 * same value (JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE),
 * so stored properties do not change with the parser. */
void tb_sb_add_jv(tb_sb_t *sb, const tb_jv *v);

/** Append a Unix time in seconds with microseconds. */
void tb_sb_add_time(tb_sb_t *sb, double t);
/** NUL-terminate and return the text. */
const char *tb_sb_str(tb_sb_t *sb);

#endif /* TB_JSON_H */
