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
 * @file tb_batch.h
 * @brief Request body -> validated commands -> answer text.  No httpd here.
 *
 * A body is scanned strictly once (tb_json.h), then each command is parsed
 * by json-c on its own, validated, reduced to a plain tb_command in the
 * request pool, and its json-c tree freed.  The store never sees json-c.
 */

#ifndef TB_BATCH_H
#define TB_BATCH_H

#include <apr_pools.h>
#include <apr_tables.h>

/** What a route's body holds. */
typedef enum {
    TB_BODY_BATCH,        /* {"commands": [...]} */
    TB_BODY_CUSTOMER,     /* the data of one "customers" command */
    TB_BODY_EVENT         /* the data of one "customers/events" command */
} tb_body_kind;

typedef enum {
    TB_CMD_INVALID = 0,   /* failed validation: see errors */
    TB_CMD_TIME,          /* system/time */
    TB_CMD_CUSTOMER,      /* customers: update properties */
    TB_CMD_EVENT          /* customers/events: add event */
} tb_cmd_kind;

/** A configured customer id name. */
typedef struct {
    const char *name;
    int hard;             /* 1 hard id, 0 soft id */
} tb_id_type;

/** Limits and settings the validator needs; filled from directives. */
typedef struct {
    int max_commands;               /* commands per batch */
    apr_size_t max_command_size;    /* a command's JSON text is smaller */
    apr_size_t max_value_size;      /* a serialised property value is smaller */
    apr_size_t max_name_len;        /* property / event names, bytes */
    const apr_array_header_t *id_types;   /* of tb_id_type */
} tb_limits;

/** One customer id of a command, ready to store. */
typedef struct {
    const char *name;
    const char *value;
    int hard;
} tb_id;

/** One property of a command. */
typedef struct {
    const char *name;
    const char *value;    /* serialised JSON, within the command's
                             properties text: not NUL-terminated */
    apr_size_t value_len;
} tb_prop;

/** One command, validated; everything lives in the request pool. */
typedef struct {
    tb_cmd_kind kind;
    const char *command_id;       /* as text, for storing; NULL if absent */
    const char *command_id_json;  /* as JSON, for the answer; NULL if absent */
    apr_array_header_t *errors;   /* const char *; NULL when valid */
    apr_array_header_t *ids;      /* tb_id, usable values only */
    const char *event_type;
    double time;                  /* event timestamp / update time */
    int time_given;               /* from "timestamp"/"update_timestamp",
                                     not the receipt time or "age" */
    const char *properties;       /* the properties object as JSON text,
                                     in the pool or (in place) the body */
    apr_array_header_t *props;    /* tb_prop, one per property */
    const char *dedup_key;        /* events: identifies an identical event
                                     (Bloomreach's rule); NULL for consent
                                     and for events without a timestamp */
    int duplicate;                /* the store found it recorded already */
} tb_command;

/** A parsed request. */
typedef struct {
    tb_body_kind kind;
    apr_array_header_t *commands; /* tb_command, in input order */
    int n_valid;                  /* commands to record */
} tb_batch;

/** Whole-request failures, answered 400 with their text. */
#define TB_ERR_INVALID_JSON  "Invalid JSON"
#define TB_ERR_NOT_OBJECT    "Request body must be a JSON object."
#define TB_ERR_NO_COMMANDS   "Field 'commands' is required."
#define TB_ERR_NOT_ARRAY     "Field 'commands' must be an array."
#define TB_ERR_EMPTY         "Field 'commands' must contain at least one command."

/**
 * Parse and validate a body.
 * @param p request pool; all results live here
 * @param body the bytes (need not be NUL-terminated)
 * @param len their number
 * @param kind what the route expects
 * @param lim limits and id configuration
 * @param now receipt time, Unix seconds
 * @param batch filled on success
 * @param log_reason on failure, why (for the log only)
 * @return NULL on success, else the client text of a whole-request 400
 */
const char *tb_batch_parse(apr_pool_t *p, const char *body, apr_size_t len,
                           tb_body_kind kind, const tb_limits *lim, double now,
                           tb_batch *batch, const char **log_reason);

/**
 * tb_batch_parse, storing each command's properties text over that
 * command's own bytes of @a body when it fits (the compact text of a part
 * of a command is almost never longer than the command), instead of
 * copying it into @a p: a large batch then costs its body once, not twice.
 * @a body is overwritten and must outlive @a batch.
 */
const char *tb_batch_parse_in_place(apr_pool_t *p, char *body, apr_size_t len,
                                    tb_body_kind kind, const tb_limits *lim,
                                    double now, tb_batch *batch,
                                    const char **log_reason);

/** The batch answer (SPEC §3), or for a single route its one result. */
const char *tb_answer_batch(apr_pool_t *p, const tb_batch *batch,
                            double start, double end, double now,
                            apr_size_t *len);

/** {"success": true, "time": now} */
const char *tb_answer_time(apr_pool_t *p, double now, apr_size_t *len);

/** {"success": false, "errors": [text]} */
const char *tb_answer_error(apr_pool_t *p, const char *text, apr_size_t *len);

/**
 * Parse a timestamp field value given as text: ISO-8601 date-time
 * ("2024-03-04T15:06:07.5Z", offset "+01:00"/"+0100", no zone = UTC,
 * date only = midnight UTC).
 * @return 0 and *t in Unix seconds, or -1
 */
int tb_parse_iso8601(const char *s, apr_size_t len, double *t);

#endif /* TB_BATCH_H */
