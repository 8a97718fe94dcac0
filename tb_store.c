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
 * Recording.  Statements are prepared once per connection (not per
 * request, not at config time: the schema must exist before SQLite will
 * prepare against it, and the module creates it on first use).  All
 * values are bound; no SQL text is ever built from request data.
 */

#include <stdlib.h>
#include <string.h>

#include <apr_hash.h>
#include <apr_strings.h>
#include <sqlite3.h>

#include "tb_auth.h"
#include "tb_json.h"
#include "tb_store.h"

extern const char tb_schema_sqlite[];

#define TB_STORE_KEY "track_batch:store"

typedef enum {
    TB_FIND_ID,
    TB_NEW_CUSTOMER,
    TB_ADD_ID,
    TB_ADD_EVENT,
    TB_ADD_UPDATE,
    TB_SET_PROPERTY,
    TB_KEY_BY_ID,
    TB_KEY_BY_TOKEN,
    TB_KEY_PERMS,
    TB_FIND_PROJECT,
    TB_NSTMT
} tb_stmt;

/* SQLite statements; %s are apr_dbd bound parameters. */
static const char *const tb_sql_sqlite[TB_NSTMT] = {
    "SELECT customer_id FROM tb_customer_ids"
    " WHERE project = %s AND id_name = %s AND id_value = %s",

    "INSERT INTO tb_customers (project, created_at) VALUES (%s, %s)"
    " RETURNING id",

    "INSERT INTO tb_customer_ids (project, id_name, id_value, customer_id,"
    " hard) VALUES (%s, %s, %s, %s, %s)",

    "INSERT INTO tb_events (project, customer_id, event_type, timestamp,"
    " properties, received_at, command_id)"
    " VALUES (%s, %s, %s, %s, %s, %s, %s)",

    "INSERT INTO tb_customer_updates (project, customer_id, properties,"
    " update_time, received_at, command_id) VALUES (%s, %s, %s, %s, %s, %s)",

    /* last writer by update time wins; a tie goes to the later command */
    "INSERT INTO tb_customer_properties (customer_id, name, value, updated_at)"
    " VALUES (%s, %s, %s, %s)"
    " ON CONFLICT (customer_id, name) DO UPDATE"
    " SET value = excluded.value, updated_at = excluded.updated_at"
    " WHERE excluded.updated_at >= tb_customer_properties.updated_at",

    "SELECT key_id, project, kind, secret_digest, old_digest, old_until,"
    " disabled FROM tb_keys WHERE key_id = %s AND kind = 'private'",

    "SELECT key_id, project, kind, secret_digest, old_digest, old_until,"
    " disabled FROM tb_keys WHERE token_digest = %s AND kind = 'public'",

    "SELECT what, name FROM tb_key_permissions WHERE key_id = %s",

    "SELECT token FROM tb_projects WHERE token = %s"
};

struct tb_store {
    apr_pool_t *pool;           /* the connection's */
    const apr_dbd_driver_t *driver;
    apr_dbd_t *handle;
    apr_dbd_prepared_t *stmt[TB_NSTMT];
    apr_time_t deadline;        /* SQLite: give up waiting for the lock */
};

/* apr_dbd's sqlite3 driver sets no busy timeout; this handler waits up to
 * the request's deadline, in short sleeps so a lock freed early is taken
 * early. */
static int tb_sqlite_busy(void *arg, int count)
{
    tb_store *s = arg;
    apr_time_t now = apr_time_now();
    apr_interval_time_t nap = apr_time_from_msec(count < 5 ? 1 << count : 20);

    if (now >= s->deadline) {
        return 0;
    }
    apr_sleep(nap < s->deadline - now ? nap : s->deadline - now);
    return 1;
}

static const char *tb_dbd_error(tb_store *s, apr_pool_t *p, const char *what,
                                int rv)
{
    const char *msg = apr_dbd_error(s->driver, s->handle, rv);
    return apr_psprintf(p, "%s: %s (%d)", what, msg ? msg : "?", rv);
}

/* Run a schema file: statements end with ';' at the end of a line.  Done
 * one by one because apr_dbd_query trips over a trailing comment. */
static const char *tb_run_schema(tb_store *s, apr_pool_t *p, const char *sql)
{
    char *copy = apr_pstrdup(p, sql), *stmt = copy, *end;
    int nrows, rv;

    while ((end = strstr(stmt, ";\n")) != NULL) {
        const char *c;
        end[1] = '\0';
        /* skip chunks holding only blanks and comments */
        for (c = stmt; *c; c++) {
            if (*c == '-' && c[1] == '-') {
                c = strchr(c, '\n');
                if (!c) {
                    break;
                }
            }
            else if (*c != ' ' && *c != '\n' && *c != '\t') {
                break;
            }
        }
        if (c && *c) {
            rv = apr_dbd_query(s->driver, s->handle, &nrows, stmt);
            if (rv) {
                return tb_dbd_error(s, p, "creating the schema", rv);
            }
        }
        stmt = end + 2;
    }
    return NULL;
}

/* A statement returning nothing useful, rows or not (PRAGMA returns one
 * row, which apr_dbd_query counts as a failure). */
static const char *tb_pragma(tb_store *s, apr_pool_t *p, const char *sql)
{
    apr_dbd_results_t *res = NULL;
    apr_dbd_row_t *row;
    int rv = apr_dbd_select(s->driver, p, s->handle, &res, sql, 1);

    if (rv) {
        return tb_dbd_error(s, p, sql, rv);
    }
    while (apr_dbd_get_row(s->driver, p, res, &row, -1) == 0) {
    }
    return NULL;
}

/* Statements live in the connection's pool, made once per connection. */
static const char *tb_prepare(tb_store *s, apr_pool_t *tmp)
{
    int i, rv;

    for (i = 0; i < TB_NSTMT; i++) {
        rv = apr_dbd_prepare(s->driver, s->pool, s->handle, tb_sql_sqlite[i],
                             apr_psprintf(tmp, "track_batch_%d", i),
                             &s->stmt[i]);
        if (rv) {
            return tb_dbd_error(s, tmp, "preparing a statement", rv);
        }
    }
    return NULL;
}

static void tb_set_deadline(tb_store *s, apr_interval_time_t wait)
{
    s->deadline = apr_time_now() + wait;
}

const char *tb_store_attach(apr_pool_t *conn_pool,
                            const apr_dbd_driver_t *driver, apr_dbd_t *handle,
                            apr_interval_time_t wait, tb_store **out)
{
    tb_store *s = NULL;
    apr_pool_t *tmp;
    const char *err = NULL;

    apr_pool_userdata_get((void **)&s, TB_STORE_KEY, conn_pool);
    if (s && s->handle == handle) {
        *out = s;
        return NULL;
    }
    if (strcmp(apr_dbd_name(driver), "sqlite3")) {
        return apr_psprintf(conn_pool, "DBDriver %s is not supported yet; "
                            "use sqlite3", apr_dbd_name(driver));
    }

    s = apr_pcalloc(conn_pool, sizeof(*s));
    s->pool = conn_pool;
    s->driver = driver;
    s->handle = handle;
    tb_set_deadline(s, wait);
    sqlite3_busy_handler(apr_dbd_native_handle(driver, handle),
                         tb_sqlite_busy, s);

    apr_pool_create(&tmp, conn_pool);
    /* WAL: readers never block the writer; FULL: a commit is on disk
     * before the client hears success, in WAL mode too. */
    err = tb_pragma(s, tmp, "PRAGMA journal_mode=WAL");
    if (!err) {
        err = tb_pragma(s, tmp, "PRAGMA synchronous=FULL");
    }
    if (!err) {
        err = tb_pragma(s, tmp, "PRAGMA foreign_keys=ON");
    }
    if (!err) {
        err = tb_run_schema(s, tmp, tb_schema_sqlite);
    }
    if (!err) {
        err = tb_prepare(s, tmp);
    }
    if (err) {
        err = apr_pstrdup(conn_pool, err);
    }
    else {
        apr_pool_userdata_set(s, TB_STORE_KEY, apr_pool_cleanup_null,
                              conn_pool);
        *out = s;
    }
    apr_pool_destroy(tmp);
    return err;
}

static const char *tb_num(apr_pool_t *p, double v)
{
    /* 17 significant digits: the double comes back exactly */
    return apr_psprintf(p, "%.17g", v);
}

/* The profile of a command's ids: the oldest profile any of them already
 * names, else a new one; ids not yet known are attached to it.  Merging
 * profiles that two ids name differently is not done here yet. */
static const char *tb_resolve(tb_store *s, apr_pool_t *p, apr_hash_t *seen,
                              const char *project, const tb_command *c,
                              const char *now, const char **cid, int *rv)
{
    const char **found = apr_pcalloc(p, c->ids->nelts * sizeof(char *));
    const char *best = NULL;
    int i;

    for (i = 0; i < c->ids->nelts; i++) {
        const tb_id *id = &APR_ARRAY_IDX(c->ids, i, tb_id);
        const char *key = apr_pstrcat(p, id->name, "=", id->value, NULL);
        apr_dbd_results_t *res = NULL;
        apr_dbd_row_t *row;

        found[i] = apr_hash_get(seen, key, APR_HASH_KEY_STRING);
        if (!found[i]) {
            *rv = apr_dbd_pvselect(s->driver, p, s->handle, &res,
                                   s->stmt[TB_FIND_ID], 1, project,
                                   id->name, id->value);
            if (*rv) {
                return "looking up a customer id";
            }
            while (apr_dbd_get_row(s->driver, p, res, &row, -1) == 0) {
                found[i] = apr_pstrdup(p, apr_dbd_get_entry(s->driver, row,
                                                            0));
            }
        }
        if (found[i] && (!best || apr_atoi64(found[i]) < apr_atoi64(best))) {
            best = found[i];
        }
    }
    if (!best) {
        apr_dbd_results_t *res = NULL;
        apr_dbd_row_t *row;

        *rv = apr_dbd_pvselect(s->driver, p, s->handle, &res,
                               s->stmt[TB_NEW_CUSTOMER], 1, project, now);
        if (*rv) {
            return "creating a customer";
        }
        while (apr_dbd_get_row(s->driver, p, res, &row, -1) == 0) {
            best = apr_pstrdup(p, apr_dbd_get_entry(s->driver, row, 0));
        }
        if (!best) {
            *rv = -1;
            return "creating a customer returned no id";
        }
    }
    for (i = 0; i < c->ids->nelts; i++) {
        const tb_id *id = &APR_ARRAY_IDX(c->ids, i, tb_id);
        int nrows;

        if (!found[i]) {
            *rv = apr_dbd_pvquery(s->driver, p, s->handle, &nrows,
                                  s->stmt[TB_ADD_ID], project, id->name,
                                  id->value, best, id->hard ? "1" : "0");
            if (*rv) {
                return "adding a customer id";
            }
        }
        apr_hash_set(seen, apr_pstrcat(p, id->name, "=", id->value, NULL),
                     APR_HASH_KEY_STRING, best);
    }
    *cid = best;
    return NULL;
}

static const char *tb_write_command(tb_store *s, apr_pool_t *p,
                                    apr_hash_t *seen, const char *project,
                                    const tb_command *c, const char *now,
                                    int *rv)
{
    const char *cid, *when, *what;
    int i, nrows;

    what = tb_resolve(s, p, seen, project, c, now, &cid, rv);
    if (what) {
        return what;
    }
    when = tb_num(p, c->time);
    if (c->kind == TB_CMD_EVENT) {
        *rv = apr_dbd_pvquery(s->driver, p, s->handle, &nrows,
                              s->stmt[TB_ADD_EVENT], project, cid,
                              c->event_type, when, c->properties, now,
                              c->command_id);
        return *rv ? "adding an event" : NULL;
    }
    *rv = apr_dbd_pvquery(s->driver, p, s->handle, &nrows,
                          s->stmt[TB_ADD_UPDATE], project, cid,
                          c->properties, when, now, c->command_id);
    if (*rv) {
        return "adding a customer update";
    }
    for (i = 0; i < c->props->nelts; i++) {
        const tb_prop *prop = &APR_ARRAY_IDX(c->props, i, tb_prop);
        *rv = apr_dbd_pvquery(s->driver, p, s->handle, &nrows,
                              s->stmt[TB_SET_PROPERTY], cid, prop->name,
                              prop->value, when);
        if (*rv) {
            return "setting a customer property";
        }
    }
    return NULL;
}

/* One attempt; *rv says why it failed. */
/* The transaction is run on the native SQLite handle, not through
 * apr_dbd_transaction_*: the driver retries a busy BEGIN 16 times 100 ms
 * apart on top of any busy handler, so a configured wait could not be
 * kept.  BEGIN IMMEDIATE takes the write lock up front (waiting in
 * tb_sqlite_busy until the deadline); the statements inside then never
 * meet a busy database.  *errp is the SQLite result code of a failure. */
static const char *tb_write_once(tb_store *s, apr_pool_t *p,
                                 const char *project, const tb_batch *batch,
                                 double received, int *errp)
{
    sqlite3 *db = apr_dbd_native_handle(s->driver, s->handle);
    apr_hash_t *seen = apr_hash_make(p);
    const char *now = tb_num(p, received), *what = NULL;
    int i, rv = 0;

    *errp = sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL);
    if (*errp != SQLITE_OK) {
        return apr_psprintf(p, "starting a transaction: %s (%d)",
                            sqlite3_errmsg(db), *errp);
    }
    for (i = 0; i < batch->commands->nelts && !what; i++) {
        const tb_command *c = &APR_ARRAY_IDX(batch->commands, i, tb_command);
        if (c->kind == TB_CMD_CUSTOMER || c->kind == TB_CMD_EVENT) {
            what = tb_write_command(s, p, seen, project, c, now, &rv);
        }
    }
    if (what) {
        /* the statement's own code: SQLITE_SCHEMA shows here, the step
         * having returned a bare SQLITE_ERROR */
        *errp = sqlite3_errcode(db);
        what = tb_dbd_error(s, p, what, rv);
        sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
        return what;
    }
    *errp = sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
    if (*errp != SQLITE_OK) {
        /* a failed COMMIT leaves SQLite inside the transaction, and the
         * next request on this pooled connection could not BEGIN */
        what = apr_psprintf(p, "committing: %s (%d)", sqlite3_errmsg(db),
                            *errp);
        sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
        return what;
    }
    return NULL;
}

const char *tb_store_write(tb_store *s, apr_pool_t *p, const char *project,
                           const tb_batch *batch, double received,
                           apr_interval_time_t wait)
{
    const char *what;
    int err = 0;

    if (batch->n_valid == 0) {
        return NULL;
    }
    tb_set_deadline(s, wait);
    what = tb_write_once(s, p, project, batch, received, &err);
    if (what && err == SQLITE_SCHEMA) {
        /* another connection changed the schema (an admin's index, say):
         * apr_dbd's legacy sqlite3_prepare never re-prepares by itself */
        what = tb_prepare(s, p);
        if (!what) {
            what = tb_write_once(s, p, project, batch, received, &err);
        }
    }
    return what;
}

/*--------------------------------------------------------------------------*/
/* Keys                                                                     */

static void tb_copy_digest(char *dst, const char *src)
{
    apr_cpystrn(dst, src && strlen(src) == TB_DIGEST_HEX ? src : "",
                TB_DIGEST_HEX + 1);
}

const char *tb_store_find_key(tb_store *s, apr_pool_t *p, int is_public,
                              const char *lookup, tb_key **out)
{
    apr_dbd_results_t *res = NULL;
    apr_dbd_row_t *row;
    tb_key *k = NULL;
    int rv;

    *out = NULL;
    rv = apr_dbd_pvselect(s->driver, p, s->handle, &res,
                          s->stmt[is_public ? TB_KEY_BY_TOKEN : TB_KEY_BY_ID],
                          1, lookup);
    if (rv) {
        return tb_dbd_error(s, p, "looking up a key", rv);
    }
    while (apr_dbd_get_row(s->driver, p, res, &row, -1) == 0) {
        const char *until = apr_dbd_get_entry(s->driver, row, 5);
        const char *disabled = apr_dbd_get_entry(s->driver, row, 6);

        k = apr_pcalloc(p, sizeof(*k));
        k->key_id = apr_pstrdup(p, apr_dbd_get_entry(s->driver, row, 0));
        k->project = apr_pstrdup(p, apr_dbd_get_entry(s->driver, row, 1));
        k->is_public = is_public;
        tb_copy_digest(k->digest, apr_dbd_get_entry(s->driver, row, 3));
        tb_copy_digest(k->old_digest, apr_dbd_get_entry(s->driver, row, 4));
        k->old_until = until ? strtod(until, NULL) : 0;
        k->disabled = disabled && strcmp(disabled, "0") != 0;
    }
    if (!k) {
        return NULL;
    }

    res = NULL;
    rv = apr_dbd_pvselect(s->driver, p, s->handle, &res, s->stmt[TB_KEY_PERMS],
                          1, k->key_id);
    if (rv) {
        return tb_dbd_error(s, p, "reading a key's permissions", rv);
    }
    k->customers = apr_array_make(p, 4, sizeof(const char *));
    k->events = apr_array_make(p, 4, sizeof(const char *));
    while (apr_dbd_get_row(s->driver, p, res, &row, -1) == 0) {
        const char *what = apr_dbd_get_entry(s->driver, row, 0);
        const char *name = apr_pstrdup(p, apr_dbd_get_entry(s->driver, row, 1));
        int events = !strcmp(what, "events");

        if (!strcmp(name, "*")) {
            *(events ? &k->events_all : &k->customers_all) = 1;
        }
        else {
            APR_ARRAY_PUSH(events ? k->events : k->customers, const char *) = name;
        }
    }
    *out = k;
    return NULL;
}

const char *tb_store_project_exists(tb_store *s, apr_pool_t *p,
                                    const char *project, int *exists)
{
    apr_dbd_results_t *res = NULL;
    apr_dbd_row_t *row;
    int rv = apr_dbd_pvselect(s->driver, p, s->handle, &res,
                              s->stmt[TB_FIND_PROJECT], 1, project);

    *exists = 0;
    if (rv) {
        return tb_dbd_error(s, p, "looking up a project", rv);
    }
    while (apr_dbd_get_row(s->driver, p, res, &row, -1) == 0) {
        *exists = 1;
    }
    return NULL;
}
