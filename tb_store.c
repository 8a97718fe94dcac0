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

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <apr_hash.h>
#include <apr_strings.h>
#include <apr_thread_cond.h>
#include <apr_thread_mutex.h>
#include <apr_thread_proc.h>
#include <libpq-fe.h>
#include <sqlite3.h>

#include "tb_auth.h"
#include "tb_json.h"
#include "tb_store.h"

extern const char tb_schema_sqlite[];
extern const char tb_schema_pgsql[];

#define TB_STORE_KEY "track_batch:store"

/* Bloomreach remembers events for deduplication for 90 days. */
#define TB_EVENT_DEDUP_WINDOW (90.0 * 86400)

typedef enum {
    TB_FIND_ID,
    TB_NEW_CUSTOMER,
    TB_ADD_ID,
    TB_MOVE_ID,
    TB_HARD_IDS,
    TB_MERGE_IDS,
    TB_MERGE_EVENTS,
    TB_MERGE_UPDATES,
    TB_MERGE_PROPS,
    TB_DROP_PROPS,
    TB_DROP_CUSTOMER,
    TB_ADD_EVENT,
    TB_FIND_EVENT,
    TB_ADD_UPDATE,
    TB_SET_PROPERTY,
    TB_FIND_COMMAND,
    TB_LOG_COMMAND,
    TB_PURGE_LOG,
    TB_RECORD_BATCH,
    TB_KEY_BY_ID,
    TB_KEY_BY_TOKEN,
    TB_KEY_PERMS,
    TB_FIND_PROJECT,
    TB_NSTMT
} tb_stmt;

/* Properties converge whatever order commands arrive in: the later update
 * time wins, and on equal times the greater value, so every order of the
 * same updates ends in the same state. */
#define TB_NEWER_PROPERTY \
    " WHERE excluded.updated_at > tb_customer_properties.updated_at" \
    " OR (excluded.updated_at = tb_customer_properties.updated_at" \
    " AND excluded.value > tb_customer_properties.value)"

/* SQLite statements; %s are apr_dbd bound parameters. */
static const char *const tb_sql_sqlite[TB_NSTMT] = {
    "SELECT customer_id FROM tb_customer_ids"
    " WHERE project = %s AND id_name = %s AND id_value = %s",

    "INSERT INTO tb_customers (project, created_at) VALUES (%s, %s)"
    " RETURNING id",

    "INSERT INTO tb_customer_ids (project, id_name, id_value, customer_id,"
    " hard) VALUES (%s, %s, %s, %s, %s)",

    "UPDATE tb_customer_ids SET customer_id = %s"
    " WHERE project = %s AND id_name = %s AND id_value = %s",

    /* in name order: a clash names the same id as PostgreSQL's path */
    "SELECT id_name, id_value FROM tb_customer_ids"
    " WHERE customer_id = %s AND hard = 1 ORDER BY id_name",

    "UPDATE tb_customer_ids SET customer_id = %s WHERE customer_id = %s",

    "UPDATE tb_events SET customer_id = %s WHERE customer_id = %s",

    "UPDATE tb_customer_updates SET customer_id = %s WHERE customer_id = %s",

    "INSERT INTO tb_customer_properties (customer_id, name, value, updated_at)"
    " SELECT CAST(%s AS INTEGER), name, value, updated_at"
    " FROM tb_customer_properties WHERE customer_id = %s"
    " ON CONFLICT (customer_id, name) DO UPDATE"
    " SET value = excluded.value, updated_at = excluded.updated_at"
    TB_NEWER_PROPERTY,

    "DELETE FROM tb_customer_properties WHERE customer_id = %s",

    "DELETE FROM tb_customers WHERE id = %s",

    "INSERT INTO tb_events (project, customer_id, event_type, timestamp,"
    " properties, received_at, command_id, dedup_key)"
    " VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",

    /* the dedup key covers the timestamp: tb_events_customer finds it */
    "SELECT id FROM tb_events WHERE customer_id = %s AND timestamp = %s"
    " AND dedup_key = %s AND received_at >= %s LIMIT 1",

    "INSERT INTO tb_customer_updates (project, customer_id, properties,"
    " update_time, received_at, command_id) VALUES (%s, %s, %s, %s, %s, %s)",

    "INSERT INTO tb_customer_properties (customer_id, name, value, updated_at)"
    " VALUES (%s, %s, %s, %s)"
    " ON CONFLICT (customer_id, name) DO UPDATE"
    " SET value = excluded.value, updated_at = excluded.updated_at"
    TB_NEWER_PROPERTY,

    "SELECT command_id FROM tb_command_log"
    " WHERE project = %s AND key_id = %s AND command_id = %s"
    " AND expires_at > %s",

    /* a row expired but not yet purged is simply renewed */
    "INSERT INTO tb_command_log (project, key_id, command_id, received_at,"
    " expires_at) VALUES (%s, %s, %s, %s, %s)"
    " ON CONFLICT (project, key_id, command_id) DO UPDATE"
    " SET received_at = excluded.received_at, expires_at = excluded.expires_at",

    "DELETE FROM tb_command_log WHERE expires_at <= %s",

    NULL,                                   /* PostgreSQL only */

    "SELECT key_id, project, kind, secret_digest, old_digest, old_until,"
    " disabled FROM tb_keys WHERE key_id = %s AND kind = 'private'",

    "SELECT key_id, project, kind, secret_digest, old_digest, old_until,"
    " disabled FROM tb_keys WHERE token_digest = %s AND kind = 'public'",

    "SELECT what, name FROM tb_key_permissions WHERE key_id = %s",

    "SELECT token FROM tb_projects WHERE token = %s"
};

/* PostgreSQL: a batch is one call of tb_record_batch() (schema/pgsql.sql);
 * the key lookups are the same SQL as above.  None is prepared on the
 * server (unnamed statements, tb_pg_exec), so a restarted server loses
 * nothing a pooled connection relies on. */
static const char *tb_sql_pgsql(int i)
{
    switch (i) {
    case TB_RECORD_BATCH:
        return "SELECT tb_record_batch(%s, %s, CAST(%s AS DOUBLE PRECISION),"
               " CAST(%s AS DOUBLE PRECISION), CAST(%s AS JSON),"
               " CAST(%s AS TEXT[]))";
    case TB_KEY_BY_ID:
    case TB_KEY_BY_TOKEN:
    case TB_KEY_PERMS:
    case TB_FIND_PROJECT:
        return tb_sql_sqlite[i];
    default:
        return NULL;
    }
}

/* SQLite: a batch waiting in its process's queue of writers. */
typedef struct tb_write_req tb_write_req;
struct tb_write_req {
    tb_write_req *next;
    apr_pool_t *p;              /* its request's pool */
    const char *project;
    const char *key_id;
    tb_batch *batch;
    double received;
    double dedup_window;
    apr_time_t deadline;        /* it gives up waiting for its turn then */
    enum { TB_W_QUEUED, TB_W_TAKEN, TB_W_DONE } state;
    const char *what;           /* once done: NULL, or why it failed */
    struct tb_cmd_state *saved; /* its commands before they were written */
};

/* SQLite: the writers of one process (and one server's database).  The
 * first to find no writer at work becomes the writer: it gets a
 * connection, and once it holds the writers' mutex it takes every batch
 * queued by then, its own among them, and commits them together.  A
 * commit's sync of the log is most of the time a batch holds the
 * database, so under load one sync serves many batches; alone, a batch is
 * written as it would be by itself.  Only the writer holds a connection:
 * the others wait without one, so one connection per process serves all
 * of its threads, and a group is not cut short by the size of mod_dbd's
 * pool. */
struct tb_writeq {
    apr_thread_mutex_t *lock;
    apr_thread_cond_t *changed; /* a group was written, or a writer quit */
    tb_write_req *head;
    tb_write_req **tail;
    int writing;                /* a thread is the writer */
    struct tb_ckpt *ckpt;       /* copies the WAL into the database */
};

/* SQLite: a process's checkpointer.  Copying the WAL into the database
 * in the COMMIT that fills it (SQLite's own way) holds every writer for
 * 10-20 ms, the slowest answers at a steady load.  The commits ask for it
 * early instead (tb_wal_hook) and this thread copies on a connection of
 * its own, while writers go on; the WAL starts over at the first write
 * after a copy that caught up.  Under a load that never pauses it cannot
 * catch up, so a COMMIT that finds TB_CKPT_FULL pages still finishes the
 * copy under the writers' mutex, as SQLite would, and the WAL stays
 * bounded. */
#define TB_CKPT_SOON 250            /* pages: the thread's turn */
#define TB_CKPT_FULL 1000           /* pages: SQLite's own default */

typedef struct tb_ckpt {
    apr_pool_t *pool;           /* the thread's and the file name's */
    apr_thread_mutex_t *lock;
    apr_thread_cond_t *wake;    /* the thread's: a copy is due, or stop */
    apr_thread_cond_t *done;    /* a copy ended (tb_writeq_checkpoints) */
    apr_thread_t *thread;       /* started by the first commit that asks */
    const char *path;           /* the database, from that commit */
    int due;
    int running;                /* a copy is under way */
    int stop;
    int failed;                 /* no thread: COMMITs copy, as SQLite's */
    unsigned passes;            /* copies run, for the tests */
} tb_ckpt;

struct tb_store {
    int pg;                     /* PostgreSQL, else SQLite */
    apr_pool_t *pool;           /* the connection's */
    const apr_dbd_driver_t *driver;
    apr_dbd_t *handle;
    apr_dbd_prepared_t *stmt[TB_NSTMT];     /* SQLite */
    const char *pg_sql[TB_NSTMT];           /* PostgreSQL: $n parameters */
    apr_time_t deadline;        /* give up waiting for the lock / server */
    apr_interval_time_t waited; /* PostgreSQL: this request's waits so far */
    unsigned moves;             /* SQLite: merges and moved ids, counted */
    apr_global_mutex_t *writers;    /* SQLite: one writer at a time */
    int unanswered;             /* PostgreSQL: the last statement got no
                                 * answer (timed out, link lost) */
};

/* Another connection holds what was asked for: worth asking again. */
static int tb_sqlite_busy_rc(int rc)
{
    return (rc & 0xFF) == SQLITE_BUSY || (rc & 0xFF) == SQLITE_LOCKED;
}

/* apr_dbd's sqlite3 driver sets no busy timeout; this handler waits up to
 * the request's deadline, in short sleeps so a lock freed early is taken
 * early. */
static int tb_sqlite_busy(void *arg, int count)
{
    tb_store *s = arg;
    apr_time_t now = apr_time_now();
    /* short naps: a writer's commit takes a few ms, and a lock freed
     * early should be taken early */
    apr_interval_time_t nap = count < 3 ? 250 << count : 2000;

    if (now >= s->deadline) {
        return 0;
    }
    apr_sleep(nap < s->deadline - now ? nap : s->deadline - now);
    return 1;
}

static const char *tb_dbd_error(tb_store *s, apr_pool_t *p, const char *what,
                                int rv)
{
    const char *msg = s->pg && rv == APR_TIMEUP
                      ? "no answer within TrackBatchBusyTimeout, connection "
                        "closed"
                      : apr_dbd_error(s->driver, s->handle, rv);
    return apr_psprintf(p, "%s: %s (%d)", what, msg ? msg : "?", rv);
}

/* SQLite setup (pragmas, schema) straight on the native handle: apr_dbd
 * would hold its process-wide mutex while our busy handler waits, and a
 * thread of the same child that holds the write lock needs that mutex to
 * finish (a stall until the deadline). */
static const char *tb_sqlite_exec(tb_store *s, apr_pool_t *p, const char *what,
                                  const char *sql)
{
    sqlite3 *db = apr_dbd_native_handle(s->driver, s->handle);
    int rc = sqlite3_exec(db, sql, NULL, NULL, NULL);

    if (rc != SQLITE_OK) {
        const char *err = apr_psprintf(p, "%s: %s (%d)", what,
                                       sqlite3_errmsg(db), rc);
        sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
        return err;
    }
    return NULL;
}

/* apr_dbd's %s parameters as PostgreSQL's $1, $2, ... */
static const char *tb_pg_params(apr_pool_t *p, const char *sql)
{
    tb_sb_t sb;
    char num[16];
    int n = 0;

    tb_sb_init(&sb, p, strlen(sql) + 16);
    for (; *sql; sql++) {
        if (sql[0] == '%' && sql[1] == 's') {
            apr_snprintf(num, sizeof(num), "$%d", ++n);
            tb_sb_adds(&sb, num);
            sql++;
        }
        else {
            tb_sb_add(&sb, sql, 1);
        }
    }
    return tb_sb_str(&sb);
}

/* Statements live in the connection's pool, made once per connection:
 * SQLite's prepared through apr_dbd, PostgreSQL's as text for tb_pg_exec
 * (nothing to prepare on the server). */
static const char *tb_prepare(tb_store *s, apr_pool_t *tmp)
{
    int i, rv;

    for (i = 0; i < TB_NSTMT; i++) {
        if (s->pg && tb_sql_pgsql(i)) {
            s->pg_sql[i] = tb_pg_params(s->pool, tb_sql_pgsql(i));
        }
        if (s->pg || !tb_sql_sqlite[i]) {
            continue;
        }
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

/* Switch the file to WAL (it stays so).  Changing the journal mode takes
 * an exclusive lock for which SQLite calls no busy handler: retry here,
 * within the deadline, while another process writes. */
static const char *tb_wal(tb_store *s, apr_pool_t *tmp)
{
    sqlite3 *db = apr_dbd_native_handle(s->driver, s->handle);
    const char *err;

    for (;;) {
        int rc = sqlite3_exec(db, "PRAGMA journal_mode=WAL", NULL, NULL, NULL);
        if (rc == SQLITE_OK) {
            return NULL;
        }
        err = apr_psprintf(tmp, "PRAGMA journal_mode=WAL: %s (%d)",
                           sqlite3_errmsg(db), rc);
        if (!tb_sqlite_busy_rc(rc)) {
            return err;
        }
        if (apr_time_now() >= s->deadline) {
            return err;
        }
        apr_sleep(apr_time_from_msec(10));
    }
}

/*--------------------------------------------------------------------------*/
/* PostgreSQL within a deadline                                             */

/* apr_dbd's pgsql driver waits in PQexecParams for as long as the server
 * takes, and a frozen server (SIGSTOP, a hung host whose kernel still
 * acknowledges) takes forever: keepalives see a live peer, and
 * statement_timeout needs a server that runs.  So statements go through
 * libpq's asynchronous calls on the native handle, and no wait for the
 * server outlasts the deadline. */

/* Wait for @a events on the connection's socket: the events seen, 0 once
 * the deadline has passed, -1 on an error. */
static int tb_pg_poll(PGconn *conn, short events, apr_time_t deadline)
{
    struct pollfd pfd;
    int rc;

    pfd.fd = PQsocket(conn);
    pfd.events = events;
    if (pfd.fd < 0) {
        return -1;
    }
    do {
        apr_interval_time_t left = deadline - apr_time_now();
        if (left <= 0) {
            return 0;
        }
        pfd.revents = 0;
        rc = poll(&pfd, 1, (int)((left + 999) / 1000));
    } while (rc < 0 && errno == EINTR);
    return rc > 0 ? pfd.revents : rc;
}

/* A connection left mid-statement must never be used again: closed under
 * libpq, which then reads it as CONNECTION_BAD, so mod_dbd's check at the
 * next acquire (or tb_pg_revive) reconnects.  A server that committed
 * before it froze loses only its answer: the client retries after the
 * 503 with the same command_ids, which tb_command_log acknowledges
 * instead of recording them twice. */
static void tb_pg_abandon(PGconn *conn)
{
    int i;

    shutdown(PQsocket(conn), SHUT_RDWR);
    /* what the server sent is read first, then the end; libpq's socket
     * is non-blocking, so no read waits */
    for (i = 0; i < 8 && PQstatus(conn) == CONNECTION_OK; i++) {
        PQconsumeInput(conn);
    }
}

/* Whether a failure of tb_pg_exec (status @a rv) left a connection that
 * cannot go on: no answer in time, or the link lost. */
static int tb_pg_gone(tb_store *s, int rv)
{
    return rv == APR_TIMEUP
           || PQstatus(apr_dbd_native_handle(s->driver, s->handle))
              != CONNECTION_OK;
}

/* Run @a sql with @a nargs text parameters ($1...), or without any a
 * script of several statements, until s->deadline.  The first @a ncols
 * columns of every row go to *out as strings in @a p (NULL as "").
 * *rv is 0, the status of the result that failed, or APR_TIMEUP when
 * the deadline passed (the connection is abandoned then). */
static const char *tb_pg_exec(tb_store *s, apr_pool_t *p, const char *what,
                              const char *sql, int nargs,
                              const char *const *args,
                              apr_array_header_t **out, int ncols, int *rv)
{
    PGconn *conn = apr_dbd_native_handle(s->driver, s->handle);
    apr_time_t start = apr_time_now();
    PGresult *res;
    int ev = 1, flush, r, c, failed = 0;

    *out = apr_array_make(p, 4, sizeof(const char *));
    if (start >= s->deadline) {
        s->unanswered = 1;              /* nothing sent: the link is fine */
        *rv = APR_TIMEUP;
        return what;
    }
    /* non-blocking, so a large batch waits in poll() for a full socket
     * too, not in send() */
    if (PQsetnonblocking(conn, 1)
        || !(nargs ? PQsendQueryParams(conn, sql, nargs, NULL, args, NULL,
                                       NULL, 0)
                   : PQsendQuery(conn, sql))) {
        /* a lost link, or a statement an earlier request left running:
         * reconnect before the next use */
        failed = PGRES_FATAL_ERROR;
        ev = -1;
    }
    /* the server may answer (an error) before it has read everything */
    while (ev > 0 && (flush = PQflush(conn)) != 0) {
        ev = flush < 0 ? -1 : tb_pg_poll(conn, POLLIN | POLLOUT, s->deadline);
        if (ev > 0 && (ev & POLLIN)) {
            PQconsumeInput(conn);
        }
    }
    while (ev > 0) {
        /* a lost link turns PQisBusy false; PQgetResult then says why */
        while (ev > 0 && PQisBusy(conn)) {
            ev = tb_pg_poll(conn, POLLIN, s->deadline);
            if (ev > 0) {
                PQconsumeInput(conn);
            }
        }
        if (ev <= 0 || !(res = PQgetResult(conn))) {
            break;
        }
        switch (PQresultStatus(res)) {
        case PGRES_TUPLES_OK:
            for (r = 0; r < PQntuples(res); r++) {
                for (c = 0; c < ncols; c++) {
                    APR_ARRAY_PUSH(*out, const char *) = apr_pstrdup(p,
                        c < PQnfields(res) ? PQgetvalue(res, r, c) : "");
                }
            }
            break;
        case PGRES_COMMAND_OK:
        case PGRES_EMPTY_QUERY:
            break;
        default:
            failed = failed ? failed : (int)PQresultStatus(res);
        }
        PQclear(res);
    }
    if (ev <= 0) {
        tb_pg_abandon(conn);
        failed = ev == 0 ? APR_TIMEUP : failed ? failed : PGRES_FATAL_ERROR;
    }
    PQsetnonblocking(conn, 0);
    s->waited += apr_time_now() - start;
    /* a server's error leaves the link fine: that is an answer */
    s->unanswered = failed && tb_pg_gone(s, failed);
    *rv = failed;
    return failed ? what : NULL;
}

/* Whether the one-column query @a sql returns the value @a want; *what is
 * set when it failed. */
static int tb_pg_returns(tb_store *s, apr_pool_t *tmp, const char *sql,
                         const char *want, const char **what, int *rv)
{
    apr_array_header_t *rows;
    int i;

    *what = tb_pg_exec(s, tmp, "reading the schema version", sql, 0, NULL,
                       &rows, 1, rv);
    for (i = 0; !*what && i < rows->nelts; i++) {
        if (!strcmp(APR_ARRAY_IDX(rows, i, const char *), want)) {
            return 1;
        }
    }
    return 0;
}

/* PostgreSQL: the schema file, run once per version (its digest). */
static const char *tb_pg_schema(tb_store *s, apr_pool_t *tmp)
{
    char digest[TB_DIGEST_HEX + 1];
    const char *what;
    apr_array_header_t *rows;
    int rv;

    tb_sha256_hex(tb_schema_pgsql, strlen(tb_schema_pgsql), digest);
    /* (fails on a new database, which has no table yet) */
    if (tb_pg_returns(s, tmp, "SELECT digest FROM tb_schema_version", digest,
                      &what, &rv)) {
        return NULL;
    }
    if (what && tb_pg_gone(s, rv)) {
        return tb_dbd_error(s, tmp, what, rv);
    }
    /* Under the lock, in one transaction: the first connection to get it
     * runs the file and writes its digest; the others, when they get it,
     * find the digest current and run nothing (each running the DDL in
     * turn stalled the load).  Batches hold the same lock shared
     * (tb_record_batch), so the DDL never interleaves with one. */
    what = tb_pg_exec(s, tmp, "creating the schema",
                      "BEGIN; SELECT pg_advisory_xact_lock(7462626174)", 0,
                      NULL, &rows, 0, &rv);
    /* (a new database has no tb_schema_version yet: reading it would
     * abort the transaction) */
    if (!what
        && !(tb_pg_returns(s, tmp, "SELECT CASE WHEN to_regclass("
                           "'tb_schema_version') IS NULL THEN 'no'"
                           " ELSE 'yes' END", "yes", &what, &rv)
             && tb_pg_returns(s, tmp, "SELECT digest FROM tb_schema_version",
                              digest, &what, &rv))
        && !what) {
        what = tb_pg_exec(s, tmp, "creating the schema",
                          apr_pstrcat(tmp, tb_schema_pgsql,
                                      "\nDELETE FROM tb_schema_version;"
                                      "\nINSERT INTO tb_schema_version"
                                      " (digest) VALUES ('", digest, "');",
                                      NULL),
                          0, NULL, &rows, 0, &rv);
    }
    if (!what) {
        what = tb_pg_exec(s, tmp, "creating the schema", "COMMIT", 0, NULL,
                          &rows, 0, &rv);
        return what ? tb_dbd_error(s, tmp, what, rv) : NULL;
    }
    what = tb_dbd_error(s, tmp, what, rv);
    /* a connection left inside the transaction must not be used again */
    if (!tb_pg_gone(s, rv)
        && tb_pg_exec(s, tmp, "rolling back", "ROLLBACK", 0, NULL, &rows, 0,
                      &rv)) {
        tb_pg_abandon(apr_dbd_native_handle(s->driver, s->handle));
    }
    return what;
}

/* A pooled connection whose server restarted still says it is fine until
 * a statement fails on it: mod_dbd's check cannot see it, and one real
 * request would get a 503 at whatever later time it lands there.  Read
 * what the server sent while idle (its "terminating connection" and the
 * close), and have apr_dbd reconnect (PQreset) when the link is gone. */
static void tb_pg_revive(tb_store *s, apr_pool_t *p)
{
    PGconn *conn = apr_dbd_native_handle(s->driver, s->handle);
    int i, alive = 1;

    /* the first read may only fetch the server's goodbye message; the
     * close itself shows on the next one (a live, idle link reads nothing
     * and stays fine) */
    for (i = 0; i < 2 && alive; i++) {
        alive = PQconsumeInput(conn) && PQstatus(conn) == CONNECTION_OK;
    }
    if (!alive) {
        apr_dbd_check_conn(s->driver, p, s->handle);
    }
}

const char *tb_store_attach(apr_pool_t *conn_pool,
                            const apr_dbd_driver_t *driver, apr_dbd_t *handle,
                            apr_interval_time_t wait, tb_store **out)
{
    tb_store *s = NULL;
    apr_pool_t *tmp;
    const char *err = NULL;
    const char *name = apr_dbd_name(driver);

    apr_pool_userdata_get((void **)&s, TB_STORE_KEY, conn_pool);
    if (s && s->handle == handle) {
        if (s->pg) {
            tb_pg_revive(s, conn_pool);
        }
        /* the request's waits start once it is connected */
        tb_set_deadline(s, wait);
        s->waited = 0;
        *out = s;
        return NULL;
    }
    if (strcmp(name, "sqlite3") && strcmp(name, "pgsql")) {
        return apr_psprintf(conn_pool, "DBDriver %s is not supported: use "
                            "sqlite3 or pgsql", name);
    }

    s = apr_pcalloc(conn_pool, sizeof(*s));
    s->pool = conn_pool;
    s->driver = driver;
    s->handle = handle;
    s->pg = !strcmp(name, "pgsql");
    apr_pool_create(&tmp, conn_pool);

    tb_set_deadline(s, wait);
    if (s->pg) {
        err = tb_pg_schema(s, tmp);
    }
    else {
        sqlite3_busy_handler(apr_dbd_native_handle(driver, handle),
                             tb_sqlite_busy, s);
        /* WAL: readers never block the writer; FULL: a commit is on disk
         * before the client hears success, in WAL mode too.  A writers'
         * queue moves checkpoints to its own thread (tb_wal_hook); other
         * writes keep SQLite's own. */
        err = tb_wal(s, tmp);
        if (!err) {
            err = tb_sqlite_exec(s, tmp, "setting up the connection",
                                 "PRAGMA synchronous=FULL; "
                                 "PRAGMA foreign_keys=ON");
        }
        if (!err) {
            /* one writer sets the schema up at a time */
            err = tb_sqlite_exec(s, tmp, "creating the schema",
                                 apr_pstrcat(tmp, "BEGIN IMMEDIATE;\n",
                                             tb_schema_sqlite, "\nCOMMIT;",
                                             NULL));
        }
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
    char buf[32];
    return apr_pstrdup(p, tb_format_double(buf, v));
}

static const char *tb_query(tb_store *s, apr_pool_t *p, tb_stmt st, int *rv,
                            const char *what, int nargs, ...)
{
    const char *args[8];
    int i, nrows;
    va_list ap;

    va_start(ap, nargs);
    for (i = 0; i < nargs; i++) {
        args[i] = va_arg(ap, const char *);
    }
    va_end(ap);
    *rv = apr_dbd_pquery(s->driver, p, s->handle, &nrows, s->stmt[st], nargs,
                         args);
    return *rv ? what : NULL;
}

/* First column of every row, as strings in @a p. */
static const char *tb_select(tb_store *s, apr_pool_t *p, tb_stmt st, int *rv,
                             const char *what, apr_array_header_t **out,
                             int ncols, int nargs, ...)
{
    const char *args[8];
    apr_dbd_results_t *res = NULL;
    apr_dbd_row_t *row = NULL;   /* pgsql reads it as the cursor */
    int i;
    va_list ap;

    va_start(ap, nargs);
    for (i = 0; i < nargs; i++) {
        args[i] = va_arg(ap, const char *);
    }
    va_end(ap);
    if (s->pg) {
        return tb_pg_exec(s, p, what, s->pg_sql[st], nargs, args, out, ncols,
                          rv);
    }
    *rv = apr_dbd_pselect(s->driver, p, s->handle, &res, s->stmt[st], 1,
                          nargs, args);
    if (*rv) {
        return what;
    }
    *out = apr_array_make(p, 4, sizeof(const char *));
    while (apr_dbd_get_row(s->driver, p, res, &row, -1) == 0) {
        for (i = 0; i < ncols; i++) {
            const char *v = apr_dbd_get_entry(s->driver, row, i);
            APR_ARRAY_PUSH(*out, const char *) = apr_pstrdup(p, v ? v : "");
        }
    }
    return NULL;
}

static apr_int64_t tb_id_num(const char *cid)
{
    return apr_atoi64(cid);
}

/* The hard ids of a profile, name -> value. */
static const char *tb_hard_ids(tb_store *s, apr_pool_t *p, const char *cid,
                               apr_table_t **out, int *rv)
{
    apr_array_header_t *rows;
    const char *what = tb_select(s, p, TB_HARD_IDS, rv, "reading hard ids",
                                 &rows, 2, 1, cid);
    int i;

    if (what) {
        return what;
    }
    *out = apr_table_make(p, 4);
    for (i = 0; i + 1 < rows->nelts; i += 2) {
        apr_table_setn(*out, APR_ARRAY_IDX(rows, i, const char *),
                       APR_ARRAY_IDX(rows, i + 1, const char *));
    }
    return NULL;
}

/* Two profiles holding different values of one hard id never merge. */
static int tb_clash_fn(void *rec, const char *name, const char *value)
{
    void **ctx = rec;
    const char *other = apr_table_get((apr_table_t *)ctx[0], name);
    if (other && strcmp(other, value)) {
        ctx[1] = (void *)name;
        return 0;
    }
    return 1;
}

static const char *tb_clash(apr_table_t *a, apr_table_t *b)
{
    void *ctx[2] = { b, NULL };
    apr_table_do(tb_clash_fn, ctx, a, NULL);
    return ctx[1];
}

/* A command whose ids name customers that may not merge fails alone. */
static void tb_conflict(apr_pool_t *p, tb_command *c, const char *hard_id)
{
    c->kind = TB_CMD_INVALID;
    c->errors = apr_array_make(p, 1, sizeof(const char *));
    APR_ARRAY_PUSH(c->errors, const char *) = apr_psprintf(p,
        "Customer ids belong to customers with different values of hard id "
        "'%s'; they are not merged.", hard_id);
}

/* Fold profile @a src into @a dst: ids, events and updates re-pointed,
 * properties combined by update time, a "merge" event on @a dst. */
static const char *tb_merge(tb_store *s, apr_pool_t *p, const char *project,
                            const char *dst, const char *src, const char *now,
                            apr_table_t *dst_hard, apr_table_t *src_hard,
                            int *rv)
{
    const char *what;

    if ((what = tb_query(s, p, TB_MERGE_IDS, rv, "merging ids", 2, dst, src))
        || (what = tb_query(s, p, TB_MERGE_EVENTS, rv, "merging events", 2,
                            dst, src))
        || (what = tb_query(s, p, TB_MERGE_UPDATES, rv, "merging updates", 2,
                            dst, src))
        || (what = tb_query(s, p, TB_MERGE_PROPS, rv, "merging properties",
                            2, dst, src))
        || (what = tb_query(s, p, TB_DROP_PROPS, rv, "merging properties", 1,
                            src))
        || (what = tb_query(s, p, TB_DROP_CUSTOMER, rv, "merging customers",
                            1, src))
        || (what = tb_query(s, p, TB_ADD_EVENT, rv, "recording a merge", 8,
                            project, dst, "merge", now,
                            apr_psprintf(p, "{\"merged_customer_id\":%s}", src),
                            now, NULL, NULL))) {
        return what;
    }
    if (dst_hard && src_hard) {
        apr_table_overlap(dst_hard, src_hard, APR_OVERLAP_TABLES_SET);
    }
    s->moves++;
    return NULL;
}

/* Bring id @a i's profile into the command's: it becomes the target when
 * there is none yet, else the two merge into the older one and every id
 * on the merged-away profile now names the survivor. */
static const char *tb_join(tb_store *s, apr_pool_t *p, const char *project,
                           const char *now, int n, const char **found,
                           apr_table_t **hard, int i, const char **target,
                           apr_table_t **target_hard, int *rv)
{
    const char *dst, *src, *what;
    apr_table_t *dh, *sh;
    int j;

    if (!*target) {
        *target = found[i];
        *target_hard = hard[i];
        return NULL;
    }
    if (!strcmp(*target, found[i])) {
        return NULL;
    }
    dst = tb_id_num(found[i]) < tb_id_num(*target) ? found[i] : *target;
    src = dst == *target ? found[i] : *target;
    dh = dst == *target ? *target_hard : hard[i];
    sh = dst == *target ? hard[i] : *target_hard;
    if ((what = tb_merge(s, p, project, dst, src, now, dh, sh, rv))) {
        return what;
    }
    for (j = 0; j < n; j++) {
        if (found[j] && !strcmp(found[j], src)) {
            found[j] = dst;
            hard[j] = dh;
        }
    }
    *target = dst;
    *target_hard = dh;
    return NULL;
}

/* The profile a command's ids name (README, "Customer identity"):
 *  - profiles named by its hard ids merge into the oldest, unless two of
 *    them hold different values of one hard id: the command fails;
 *  - a hard id the profile holds with another value: the command fails;
 *  - a soft id on a profile with a clashing hard id moves to this one;
 *    a soft id on any other profile merges it, into the oldest;
 *  - no profile yet: a new one.  Unknown ids are attached to the result.
 * *conflict is set instead of *cid when the command must fail. */
static const char *tb_identify(tb_store *s, apr_pool_t *p, const char *project,
                               const tb_command *c, const char *now,
                               const char **cid, const char **conflict,
                               int *rv)
{
    int n = c->ids->nelts, i, j;
    const char **found = apr_pcalloc(p, n * sizeof(char *));
    apr_table_t **hard = apr_pcalloc(p, n * sizeof(apr_table_t *));
    apr_table_t *mine = apr_table_make(p, 4);     /* the command's hard ids */
    apr_table_t *target_hard = NULL;
    const char *target = NULL, *what, *clash;
    apr_array_header_t *rows;

    *cid = NULL;
    *conflict = NULL;
    for (i = 0; i < n; i++) {
        const tb_id *id = &APR_ARRAY_IDX(c->ids, i, tb_id);
        if ((what = tb_select(s, p, TB_FIND_ID, rv, "looking up a customer id",
                              &rows, 1, 3, project, id->name, id->value))) {
            return what;
        }
        found[i] = rows->nelts ? APR_ARRAY_IDX(rows, 0, const char *) : NULL;
        if (found[i] && (what = tb_hard_ids(s, p, found[i], &hard[i], rv))) {
            return what;
        }
        if (id->hard) {
            apr_table_setn(mine, id->name, id->value);
        }
    }

    /* hard ids first: their profiles must agree, then merge */
    for (i = 0; i < n; i++) {
        const tb_id *id = &APR_ARRAY_IDX(c->ids, i, tb_id);
        if (!id->hard || !found[i]) {
            continue;
        }
        if ((clash = tb_clash(hard[i], mine))) {
            *conflict = clash;
            return NULL;
        }
        for (j = 0; j < i; j++) {
            const tb_id *o = &APR_ARRAY_IDX(c->ids, j, tb_id);
            if (o->hard && found[j] && strcmp(found[j], found[i])
                && (clash = tb_clash(hard[i], hard[j]))) {
                *conflict = clash;
                return NULL;
            }
        }
    }
    for (i = 0; i < n; i++) {
        const tb_id *id = &APR_ARRAY_IDX(c->ids, i, tb_id);
        if (!id->hard || !found[i]) {
            continue;
        }
        if ((what = tb_join(s, p, project, now, n, found, hard, i, &target,
                            &target_hard, rv))) {
            return what;
        }
    }

    /* soft ids: clash -> the id moves here; else the profiles merge */
    for (i = 0; i < n; i++) {
        const tb_id *id = &APR_ARRAY_IDX(c->ids, i, tb_id);
        apr_table_t *want;

        if (id->hard || !found[i] || (target && !strcmp(found[i], target))) {
            continue;
        }
        want = apr_table_overlay(p, mine, target_hard ? target_hard
                                                      : apr_table_make(p, 1));
        if (tb_clash(hard[i], want)) {
            found[i] = NULL;                   /* attached below, moved */
            continue;
        }
        if ((what = tb_join(s, p, project, now, n, found, hard, i, &target,
                            &target_hard, rv))) {
            return what;
        }
    }

    if (!target) {
        if ((what = tb_select(s, p, TB_NEW_CUSTOMER, rv, "creating a customer",
                              &rows, 1, 2, project, now))) {
            return what;
        }
        if (rows->nelts != 1) {
            *rv = -1;
            return "creating a customer returned no id";
        }
        target = APR_ARRAY_IDX(rows, 0, const char *);
    }
    /* unknown ids join the profile; moved soft ids are re-pointed */
    for (i = 0; i < n; i++) {
        const tb_id *id = &APR_ARRAY_IDX(c->ids, i, tb_id);
        if (found[i]) {
            continue;
        }
        if ((what = tb_select(s, p, TB_FIND_ID, rv, "looking up a customer id",
                              &rows, 1, 3, project, id->name, id->value))) {
            return what;
        }
        if (rows->nelts) {
            s->moves++;
        }
        what = rows->nelts
               ? tb_query(s, p, TB_MOVE_ID, rv, "moving a soft id", 4, target,
                          project, id->name, id->value)
               : tb_query(s, p, TB_ADD_ID, rv, "adding a customer id", 5,
                          project, id->name, id->value, target,
                          id->hard ? "1" : "0");
        if (what) {
            return what;
        }
    }
    *cid = target;
    return NULL;
}

/* The transaction's map of customer ids (name and value) to the profile
 * they name.  A batch mostly repeats a few customers; a command whose ids
 * all name one profile already resolved in this transaction needs none of
 * tb_identify's lookups: with every id on that profile there is nothing
 * to merge, attach or refuse.  Only this transaction writes (BEGIN
 * IMMEDIATE), so the map stays true until a merge or a moved id changes
 * profiles, which empties it. */
/* name NUL value: no name and value pair can spell another */
static const char *tb_id_key(apr_pool_t *p, const tb_id *id, apr_size_t *len)
{
    apr_size_t n = strlen(id->name), v = strlen(id->value);
    char *k = apr_palloc(p, n + v + 1);

    memcpy(k, id->name, n + 1);
    memcpy(k + n + 1, id->value, v);
    *len = n + v + 1;
    return k;
}

static const char *tb_known(apr_hash_t *known, apr_pool_t *p,
                            const tb_command *c)
{
    const char *cid = NULL;
    int i;

    for (i = 0; i < c->ids->nelts; i++) {
        const tb_id *id = &APR_ARRAY_IDX(c->ids, i, tb_id);
        apr_size_t klen;
        const char *k = tb_id_key(p, id, &klen);
        const char *v = apr_hash_get(known, k, klen);
        if (!v || (cid && strcmp(cid, v))) {
            return NULL;
        }
        cid = v;
    }
    return cid;
}

static void tb_remember(apr_hash_t *known, apr_pool_t *p, const tb_command *c,
                        const char *cid)
{
    int i;

    for (i = 0; i < c->ids->nelts; i++) {
        const tb_id *id = &APR_ARRAY_IDX(c->ids, i, tb_id);
        apr_size_t klen;
        const char *k = tb_id_key(p, id, &klen);
        apr_hash_set(known, k, klen, cid);
    }
}

/* Record one valid command.  Returns a reason when the batch must fail;
 * a command that fails alone (an id conflict) is marked invalid. */
static const char *tb_write_command(tb_store *s, apr_pool_t *p,
                                    const char *project, const char *key_id,
                                    tb_command *c, const char *now,
                                    const char *dedup_since,
                                    const char *expires, apr_hash_t *known,
                                    int *rv)
{
    sqlite3 *db = apr_dbd_native_handle(s->driver, s->handle);
    const char *cid, *when, *what = NULL, *conflict;
    apr_array_header_t *rows;
    apr_pool_t *scratch;
    unsigned moves = s->moves;
    int i;

    /* a retried command_id under the same key is acknowledged, not kept */
    if (c->command_id) {
        if ((what = tb_select(s, p, TB_FIND_COMMAND, rv,
                              "looking up a command_id", &rows, 1, 4, project,
                              key_id ? key_id : "", c->command_id, now))) {
            return what;
        }
        if (rows->nelts) {
            c->duplicate = 1;
            return NULL;
        }
    }

    if ((cid = tb_known(known, p, c))) {
        goto identified;
    }
    /* a failed identity leaves nothing: the command runs in a savepoint */
    if (sqlite3_exec(db, "SAVEPOINT tb_command", NULL, NULL, NULL)) {
        *rv = sqlite3_errcode(db);
        return "opening a savepoint";
    }
    what = tb_identify(s, p, project, c, now, &cid, &conflict, rv);
    if (what || conflict) {
        sqlite3_exec(db, "ROLLBACK TO tb_command; RELEASE tb_command",
                     NULL, NULL, NULL);
        if (conflict) {
            tb_conflict(p, c, conflict);
        }
        return what;
    }
    if (sqlite3_exec(db, "RELEASE tb_command", NULL, NULL, NULL)) {
        *rv = sqlite3_errcode(db);
        return "releasing a savepoint";
    }
    if (s->moves != moves) {
        apr_hash_clear(known);
    }
    tb_remember(known, p, c, cid);

identified:
    if (c->command_id
        && (what = tb_query(s, p, TB_LOG_COMMAND, rv, "logging a command_id",
                            5, project, key_id ? key_id : "", c->command_id,
                            now, expires))) {
        return what;
    }

    when = tb_num(p, c->time);
    if (c->kind == TB_CMD_EVENT) {
        if (c->dedup_key) {
            if ((what = tb_select(s, p, TB_FIND_EVENT, rv,
                                  "looking for an identical event", &rows, 1,
                                  4, cid, when, c->dedup_key,
                                  dedup_since))) {
                return what;
            }
            if (rows->nelts) {
                c->duplicate = 1;
                return NULL;
            }
        }
        return tb_query(s, p, TB_ADD_EVENT, rv, "adding an event", 8, project,
                        cid, c->event_type, when, c->properties, now,
                        c->command_id, c->dedup_key);
    }
    if ((what = tb_query(s, p, TB_ADD_UPDATE, rv, "adding a customer update",
                         6, project, cid, c->properties, when, now,
                         c->command_id))) {
        return what;
    }
    /* values are bound NUL-terminated: copies in a scratch pool, freed
     * after the command rather than held for the whole request */
    apr_pool_create(&scratch, p);
    for (i = 0; i < c->props->nelts && !what; i++) {
        const tb_prop *prop = &APR_ARRAY_IDX(c->props, i, tb_prop);
        what = tb_query(s, scratch, TB_SET_PROPERTY, rv,
                        "setting a customer property", 4, cid, prop->name,
                        apr_pstrmemdup(scratch, prop->value, prop->value_len),
                        when);
    }
    apr_pool_destroy(scratch);
    return what;
}

/* What the store changes in a command (tb_write_command): kept before a
 * batch is written, so a batch rolled back with its group can be written
 * again as it came. */
typedef struct tb_cmd_state {
    tb_cmd_kind kind;
    apr_array_header_t *errors;
    int duplicate;
} tb_cmd_state;

static void tb_batch_state(tb_write_req *w, int restore)
{
    apr_array_header_t *cmds = w->batch->commands;
    int i;

    if (!restore) {
        w->saved = apr_palloc(w->p, sizeof(tb_cmd_state) * cmds->nelts);
    }
    for (i = 0; i < cmds->nelts; i++) {
        tb_command *c = &APR_ARRAY_IDX(cmds, i, tb_command);
        tb_cmd_state *st = &w->saved[i];
        if (restore) {
            c->kind = st->kind;
            c->errors = st->errors;
            c->duplicate = st->duplicate;
        }
        else {
            st->kind = c->kind;
            st->errors = c->errors;
            st->duplicate = c->duplicate;
        }
    }
}

/* One batch of a group, inside the group's transaction; with @a savepoint
 * in a savepoint of its own, so that a batch that fails leaves the others
 * of the group to be committed.  A savepoint is not free: SQLite copies
 * each page the batch changes into its statement journal first (in a
 * plain loop of 50-event batches, 2.9 -> 5.0 ms of CPU a batch), so the
 * group is written without them first (tb_write_group).  *errp is the
 * SQLite result code of a failure. */
static const char *tb_write_batch(tb_store *s, tb_write_req *w, int savepoint,
                                  int *errp)
{
    sqlite3 *db = apr_dbd_native_handle(s->driver, s->handle);
    apr_pool_t *p = w->p;
    const char *now = tb_num(p, w->received), *what = NULL;
    const char *since = tb_num(p, w->received - TB_EVENT_DEDUP_WINDOW);
    const char *expires = tb_num(p, w->received + w->dedup_window);
    apr_hash_t *known = apr_hash_make(p);
    int i, rv = 0;

    *errp = savepoint ? sqlite3_exec(db, "SAVEPOINT tb_batch", NULL, NULL,
                                     NULL)
                      : SQLITE_OK;
    if (*errp != SQLITE_OK) {
        return apr_psprintf(p, "starting the batch: %s (%d)",
                            sqlite3_errmsg(db), *errp);
    }
    for (i = 0; i < w->batch->commands->nelts && !what; i++) {
        tb_command *c = &APR_ARRAY_IDX(w->batch->commands, i, tb_command);
        if (c->kind == TB_CMD_CUSTOMER || c->kind == TB_CMD_EVENT) {
            what = tb_write_command(s, p, w->project, w->key_id, c, now,
                                    since, expires, known, &rv);
        }
    }
    if (what) {
        /* the statement's own code: SQLITE_SCHEMA shows here, the step
         * having returned a bare SQLITE_ERROR */
        *errp = sqlite3_errcode(db);
        what = tb_dbd_error(s, p, what, rv);
        if (savepoint) {
            sqlite3_exec(db, "ROLLBACK TO tb_batch; RELEASE tb_batch", NULL,
                         NULL, NULL);
        }
        return what;
    }
    *errp = savepoint ? sqlite3_exec(db, "RELEASE tb_batch", NULL, NULL,
                                     NULL)
                      : SQLITE_OK;
    if (*errp != SQLITE_OK) {
        what = apr_psprintf(p, "ending the batch: %s (%d)",
                            sqlite3_errmsg(db), *errp);
        sqlite3_exec(db, "ROLLBACK TO tb_batch; RELEASE tb_batch", NULL,
                     NULL, NULL);
        return what;
    }
    return NULL;
}

/* Every batch of a group fails with @a what, copied into each batch's own
 * pool: the writer's request may end before the others read it. */
static void tb_fail_group(tb_write_req *first, const char *what)
{
    tb_write_req *w;

    for (w = first; w; w = w->next) {
        w->what = apr_pstrdup(w->p, what);
    }
}

/* The transaction is run on the native SQLite handle, not through
 * apr_dbd_transaction_*: the driver retries a busy BEGIN 16 times 100 ms
 * apart on top of any busy handler, so a configured wait could not be
 * kept.  BEGIN IMMEDIATE takes the write lock up front (waiting in
 * tb_sqlite_busy until the deadline); the statements inside then never
 * meet a busy database. */
static const char *tb_begin(tb_store *s, apr_pool_t *p)
{
    sqlite3 *db = apr_dbd_native_handle(s->driver, s->handle);
    int err = sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL);

    if (err != SQLITE_OK) {
        return apr_psprintf(p, "starting a transaction: %s (%d)",
                            sqlite3_errmsg(db), err);
    }
    return NULL;
}

/* Forget old command_ids, in the open transaction; NULL or why not.  The
 * group's oldest receipt counts, so no batch's window is cut short. */
static const char *tb_purge(tb_store *s, apr_pool_t *p, tb_write_req *first)
{
    sqlite3 *db = apr_dbd_native_handle(s->driver, s->handle);
    double received = first->received;
    const char *what, *oldest;
    tb_write_req *w;
    int rv = 0;

    for (w = first->next; w; w = w->next) {
        received = w->received < received ? w->received : received;
    }
    oldest = tb_num(p, received);
    what = tb_query(s, p, TB_PURGE_LOG, &rv, "forgetting old command_ids",
                    1, oldest);
    if (what && sqlite3_errcode(db) == SQLITE_SCHEMA) {
        /* another connection changed the schema (an admin's index, say):
         * apr_dbd's legacy sqlite3_prepare never re-prepares by itself */
        what = tb_prepare(s, p);
        if (!what) {
            what = tb_query(s, p, TB_PURGE_LOG, &rv,
                            "forgetting old command_ids", 1, oldest);
        }
    }
    return what ? tb_dbd_error(s, p, what, rv) : NULL;
}

/* A group of batches (the list from @a first), in the transaction
 * tb_begin opened: one commit, so one sync of the log, for all of them.
 * Each gets its own outcome in ->what.
 *
 * The group is written first without savepoints.  If a batch fails, the
 * transaction is rolled back and written again with a savepoint per batch,
 * without the one that failed (unless it failed on a schema change, which
 * a new prepare cures): so each batch keeps its own outcome, and the cost
 * of a savepoint per batch is paid only after a failure (a command whose
 * ids are new still runs in one of its own: tb_write_command).  A failed
 * COMMIT is every batch's, and so is an error after which SQLite rolled
 * the whole transaction back by itself in the second pass (a full disk,
 * an I/O error, no memory): a batch after it would be committed alone. */
static void tb_write_group_once(tb_store *s, apr_pool_t *p,
                                tb_write_req *first)
{
    sqlite3 *db = apr_dbd_native_handle(s->driver, s->handle);
    const char *what;
    tb_write_req *w, *failed;
    int err;

    what = tb_purge(s, p, first);
    if (what) {
        sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
        tb_fail_group(first, what);
        return;
    }
    for (w = first; w; w = w->next) {
        tb_batch_state(w, 0);
        w->what = tb_write_batch(s, w, 0, &err);
        if (w->what) {
            break;
        }
    }

    if (w) {
        failed = w;
        if (!sqlite3_get_autocommit(db)) {
            sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
        }
        for (w = first; w != failed->next; w = w->next) {
            tb_batch_state(w, 1);
        }
        if (err == SQLITE_SCHEMA) {
            failed->what = tb_prepare(s, failed->p);
            if (failed->what) {
                tb_fail_group(first, failed->what);
                return;
            }
        }
        if (failed->what && failed == first && !failed->next) {
            return;                     /* it was the group's only batch */
        }
        what = tb_begin(s, p);
        if (!what) {
            what = tb_purge(s, p, first);
            if (what) {
                sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
            }
        }
        for (w = first; w; w = w->next) {
            if (w == failed && failed->what) {
                continue;
            }
            if (what) {
                w->what = apr_pstrdup(w->p, what);
                continue;
            }
            if (!w->saved) {
                tb_batch_state(w, 0);   /* not reached by the first pass */
            }
            w->what = tb_write_batch(s, w, 1, &err);
            if (w->what && err == SQLITE_SCHEMA) {
                tb_batch_state(w, 1);
                w->what = tb_prepare(s, w->p);
                if (!w->what) {
                    w->what = tb_write_batch(s, w, 1, &err);
                }
            }
            if (w->what && sqlite3_get_autocommit(db)) {
                tb_fail_group(first, apr_pstrcat(p, "the transaction was "
                                                 "rolled back: ", w->what,
                                                 NULL));
                return;
            }
        }
        if (what) {
            return;
        }
    }

    err = sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
    if (err != SQLITE_OK) {
        /* a failed COMMIT leaves SQLite inside the transaction, and the
         * next request on this pooled connection could not BEGIN */
        what = apr_psprintf(p, "committing: %s (%d)", sqlite3_errmsg(db),
                            err);
        sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
        tb_fail_group(first, what);
    }
}

static void tb_write_group(tb_store *s, apr_pool_t *p, tb_write_req *first)
{
    sqlite3 *db = apr_dbd_native_handle(s->driver, s->handle);

    tb_write_group_once(s, p, first);
    /* a ROLLBACK that failed would leave this pooled connection inside a
     * transaction holding the write lock, and every later BEGIN failing */
    if (!sqlite3_get_autocommit(db)) {
        sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
        tb_fail_group(first, "the transaction was not committed");
    }
}

/* PostgreSQL: the valid commands as one JSON array without their
 * properties, and the properties as a text array beside it, recorded by
 * one call of tb_record_batch(); its answer lists each command's fate in
 * order.  The properties, most of a batch, are stored as text: apart, the
 * server takes them as they are instead of parsing them as JSON twice and
 * cutting them back out of the parsed batch. */
/* Upper bounds of the lengths of tb_pg_write's batch and array texts. */
static apr_size_t tb_pg_batch_len(const tb_batch *batch, apr_size_t *props)
{
    apr_size_t n = 2;
    int i, j;

    *props = 3;

    for (i = 0; i < batch->commands->nelts; i++) {
        const tb_command *c = &APR_ARRAY_IDX(batch->commands, i, tb_command);
        if (c->kind != TB_CMD_CUSTOMER && c->kind != TB_CMD_EVENT) {
            continue;
        }
        /* keys, punctuation, a number of at most 32 characters, the key;
         * an array element: quotes, a comma, each byte escaped at worst */
        n += 160;
        *props += 3 + 2 * strlen(c->properties);
        for (j = 0; j < c->ids->nelts; j++) {
            const tb_id *id = &APR_ARRAY_IDX(c->ids, j, tb_id);
            n += 12 + tb_jstr_len(id->name, strlen(id->name))
                 + tb_jstr_len(id->value, strlen(id->value));
        }
        if (c->event_type) {
            n += tb_jstr_len(c->event_type, strlen(c->event_type));
        }
        if (c->command_id) {
            n += tb_jstr_len(c->command_id, strlen(c->command_id));
        }
        if (c->dedup_key) {
            n += strlen(c->dedup_key);
        }
    }
    return n;
}

/* Append @a v as a quoted element of a PostgreSQL array literal. */
static void tb_sb_add_pg_elem(tb_sb_t *sb, const char *v)
{
    const char *run = v;

    tb_sb_add(sb, "\"", 1);
    for (; *v; v++) {
        if (*v == '"' || *v == '\\') {
            tb_sb_add(sb, run, v - run);
            tb_sb_add(sb, "\\", 1);
            run = v;
        }
    }
    tb_sb_add(sb, run, v - run);
    tb_sb_add(sb, "\"", 1);
}

static const char *tb_pg_write(tb_store *s, apr_pool_t *p, const char *project,
                               const char *key_id, tb_batch *batch,
                               double received, double dedup_window)
{
    apr_array_header_t *rows;
    tb_sb_t sb, props;
    apr_size_t props_len;
    const char *what, *st;
    char *out, *last;
    int i, j, rv, first = 1;

    /* sized first: a pool buffer grown by doubling would leave every
     * smaller copy behind, ~2 x the batch for the largest one */
    tb_sb_init(&sb, p, tb_pg_batch_len(batch, &props_len));
    tb_sb_init(&props, p, props_len);
    tb_sb_add(&sb, "[", 1);
    tb_sb_add(&props, "{", 1);
    for (i = 0; i < batch->commands->nelts; i++) {
        const tb_command *c = &APR_ARRAY_IDX(batch->commands, i, tb_command);
        if (c->kind != TB_CMD_CUSTOMER && c->kind != TB_CMD_EVENT) {
            continue;
        }
        tb_sb_adds(&sb, first ? "{\"k\":\"" : ",{\"k\":\"");
        first = 0;
        tb_sb_adds(&sb, c->kind == TB_CMD_EVENT ? "e\",\"ids\":["
                                                : "c\",\"ids\":[");
        for (j = 0; j < c->ids->nelts; j++) {
            const tb_id *id = &APR_ARRAY_IDX(c->ids, j, tb_id);
            tb_sb_adds(&sb, j ? ",[" : "[");
            tb_sb_add_jstr(&sb, id->name, strlen(id->name));
            tb_sb_add(&sb, ",", 1);
            tb_sb_add_jstr(&sb, id->value, strlen(id->value));
            tb_sb_adds(&sb, id->hard ? ",true]" : ",false]");
        }
        tb_sb_adds(&sb, "],\"t\":");
        tb_sb_adds(&sb, tb_num(p, c->time));
        if (props.len > 1) {
            tb_sb_add(&props, ",", 1);
        }
        tb_sb_add_pg_elem(&props, c->properties);
        if (c->event_type) {
            tb_sb_adds(&sb, ",\"et\":");
            tb_sb_add_jstr(&sb, c->event_type, strlen(c->event_type));
        }
        if (c->command_id) {
            tb_sb_adds(&sb, ",\"cid\":");
            tb_sb_add_jstr(&sb, c->command_id, strlen(c->command_id));
        }
        if (c->dedup_key) {
            tb_sb_adds(&sb, ",\"dk\":\"");
            tb_sb_adds(&sb, c->dedup_key);
            tb_sb_add(&sb, "\"", 1);
        }
        tb_sb_add(&sb, "}", 1);
    }
    tb_sb_add(&sb, "]", 1);
    tb_sb_add(&props, "}", 1);

    what = tb_select(s, p, TB_RECORD_BATCH, &rv, "recording the batch", &rows,
                     1, 6, project, key_id ? key_id : "", tb_num(p, received),
                     tb_num(p, dedup_window), tb_sb_str(&sb),
                     tb_sb_str(&props));
    if (what && rv == APR_TIMEUP) {
        return apr_pstrcat(p, tb_dbd_error(s, p, what, rv), "; kept if the "
                           "server committed it before it stopped answering "
                           "(a retry of its command_ids is safe)", NULL);
    }
    if (what) {
        return tb_dbd_error(s, p, what, rv);
    }
    if (rows->nelts != 1) {
        return "recording the batch: no answer from tb_record_batch()";
    }
    out = apr_pstrdup(p, APR_ARRAY_IDX(rows, 0, const char *));
    st = apr_strtok(out, ",", &last);
    for (i = 0; i < batch->commands->nelts; i++) {
        tb_command *c = &APR_ARRAY_IDX(batch->commands, i, tb_command);
        if (c->kind != TB_CMD_CUSTOMER && c->kind != TB_CMD_EVENT) {
            continue;
        }
        if (!st) {
            return "recording the batch: too few statuses";
        }
        if (!strcmp(st, "dup")) {
            c->duplicate = 1;
        }
        else if (!strncmp(st, "conflict:", 9)) {
            tb_conflict(p, c, st + 9);
        }
        st = apr_strtok(NULL, ",", &last);
    }
    return NULL;
}

static const char tb_busy[] = "the database is busy: other writers held it "
                              "until the deadline";

/* Waiting writers block on the mutex and take it as soon as it is free,
 * in turn; polling SQLite's lock in naps lets a newcomer overtake a
 * waiter, which is where the slowest answers came from.  A mechanism
 * without a timed lock (Mutex directive) leaves SQLite's lock alone to
 * order writers. */
static const char *tb_writers_lock(tb_store *s, apr_interval_time_t wait,
                                   int *locked)
{
    *locked = 0;
    if (s->writers) {
        apr_status_t rv = apr_global_mutex_timedlock(s->writers,
                                                     wait > 0 ? wait : 0);
        if (rv == APR_TIMEUP) {
            return tb_busy;
        }
        *locked = rv == APR_SUCCESS;
    }
    return NULL;
}

/* A batch by itself: a group of one (no queue in this process). */
static const char *tb_write_alone(tb_store *s, tb_write_req *w,
                                  apr_interval_time_t wait)
{
    int locked;

    w->next = NULL;
    w->what = tb_writers_lock(s, wait, &locked);
    if (!w->what) {
        w->what = tb_begin(s, w->p);
    }
    if (!w->what) {
        tb_write_group(s, w->p, w);
    }
    if (locked) {
        apr_global_mutex_unlock(s->writers);
    }
    return w->what;
}

static void *APR_THREAD_FUNC tb_ckpt_run(apr_thread_t *t, void *arg)
{
    tb_ckpt *k = arg;
    sqlite3 *db = NULL;
    int rc;

    /* seen by ps and top -H as the module's, not as an httpd worker */
    pthread_setname_np(pthread_self(), "tb-checkpoint");
    apr_thread_mutex_lock(k->lock);
    while (!k->stop && !k->failed) {
        if (!k->due) {
            apr_thread_cond_wait(k->wake, k->lock);
            continue;
        }
        k->due = 0;
        k->running = 1;
        apr_thread_mutex_unlock(k->lock);
        /* FULL: the database is synced before the WAL can start over */
        rc = SQLITE_OK;
        if (!db) {
            rc = sqlite3_open_v2(k->path, &db, SQLITE_OPEN_READWRITE, NULL);
            if (rc == SQLITE_OK) {
                rc = sqlite3_exec(db, "PRAGMA synchronous=FULL", NULL, NULL,
                                  NULL);
            }
            if (rc != SQLITE_OK) {
                /* opened afresh by the next pass */
                sqlite3_close(db);
                db = NULL;
            }
        }
        /* busy (another process's copy, a COMMIT's): the next asks again */
        if (rc == SQLITE_OK) {
            rc = sqlite3_wal_checkpoint_v2(db, NULL,
                                           SQLITE_CHECKPOINT_PASSIVE, NULL,
                                           NULL);
        }
        apr_thread_mutex_lock(k->lock);
        k->running = 0;
        if (rc == SQLITE_OK) {
            k->passes++;
        }
        else if (!tb_sqlite_busy_rc(rc)) {
            /* the COMMITs copy from now on, as SQLite's own would */
            k->failed = 1;
        }
        apr_thread_cond_broadcast(k->done);
    }
    apr_thread_mutex_unlock(k->lock);
    sqlite3_close(db);
    apr_thread_exit(t, APR_SUCCESS);
    return NULL;
}

/* Start the thread with every signal blocked: under prefork the request
 * thread that asks has httpd's handlers (SIGTERM, SIGHUP, SIGUSR1)
 * unblocked, and they must keep running on that thread, not this one.
 * Called with k->lock held. */
static apr_status_t tb_ckpt_start(tb_ckpt *k)
{
    sigset_t all, old;
    apr_status_t rv;

    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    rv = apr_thread_create(&k->thread, NULL, tb_ckpt_run, k, k->pool);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return rv;
}

/* Before the pool's subpools go, the thread's among them. */
static apr_status_t tb_ckpt_stop(void *arg)
{
    tb_ckpt *k = arg;
    apr_status_t rv;

    apr_thread_mutex_lock(k->lock);
    k->stop = 1;
    apr_thread_cond_signal(k->wake);
    apr_thread_mutex_unlock(k->lock);
    if (k->thread) {
        apr_thread_join(&rv, k->thread);
        k->thread = NULL;
    }
    return APR_SUCCESS;
}

/* After each COMMIT in WAL mode, with the pages the WAL holds.  It
 * answers SQLITE_OK whatever happens: the transaction is committed, and
 * an error here would fail batches that are kept. */
static int tb_wal_hook(void *arg, sqlite3 *db, const char *name, int pages)
{
    tb_ckpt *k = arg;

    if (pages >= TB_CKPT_FULL) {
        /* not the thread now: it would hold the copy this one makes */
        sqlite3_wal_checkpoint_v2(db, name, SQLITE_CHECKPOINT_PASSIVE, NULL,
                                  NULL);
        return SQLITE_OK;
    }
    if (pages >= TB_CKPT_SOON) {
        apr_thread_mutex_lock(k->lock);
        if (!k->thread && !k->failed) {
            const char *path = sqlite3_db_filename(db, name);

            k->path = path && *path ? apr_pstrdup(k->pool, path) : NULL;
            if (!k->path || tb_ckpt_start(k) != APR_SUCCESS) {
                k->thread = NULL;
                k->failed = 1;
            }
        }
        if (k->thread && !k->failed) {
            k->due = 1;
            apr_thread_cond_signal(k->wake);
        }
        apr_thread_mutex_unlock(k->lock);
    }
    return SQLITE_OK;
}

/* Called with q->lock held. */
static void tb_unqueue(tb_writeq *q, tb_write_req *w)
{
    tb_write_req **at = &q->head;

    while (*at != w) {
        at = &(*at)->next;
    }
    *at = w->next;
    if (q->tail == &w->next) {
        q->tail = at;
    }
    w->state = TB_W_DONE;
}

/* The writer's turn (q->writing is set, q->lock not held): get a
 * connection, take the writers' mutex and SQLite's lock, then every batch
 * queued by then, and write them as one group.  Batches are taken only
 * once the locks are held, so a queued batch's wait for them still ends
 * at its own deadline (once taken, it waits for its group).  A writer
 * that cannot get a connection or the locks in time gives up its own
 * batch only; a queued one becomes the writer.  The connection goes back
 * before the next writer is called. */
static void tb_lead(tb_writeq *q, const tb_store_source *src,
                    tb_write_req *me)
{
    tb_write_req *group, *w;
    tb_store *s = NULL;
    int locked = 0;
    const char *why = src->open(src->baton, me->deadline - apr_time_now(),
                                &s);

    if (!why) {
        tb_set_deadline(s, me->deadline - apr_time_now());
        why = tb_writers_lock(s, me->deadline - apr_time_now(), &locked);
    }
    if (!why) {
        why = tb_begin(s, me->p);
    }
    apr_thread_mutex_lock(q->lock);
    if (why) {
        tb_unqueue(q, me);
        me->what = why;
        apr_thread_mutex_unlock(q->lock);
        if (locked) {
            apr_global_mutex_unlock(s->writers);
        }
        if (s) {
            src->close(src->baton, s, why);
        }
        return;
    }
    group = q->head;
    q->head = NULL;
    q->tail = &q->head;
    for (w = group; w; w = w->next) {
        w->state = TB_W_TAKEN;
    }
    apr_thread_mutex_unlock(q->lock);

    /* the connection's COMMITs ask this process's checkpointer */
    sqlite3_wal_hook(apr_dbd_native_handle(s->driver, s->handle),
                     tb_wal_hook, q->ckpt);
    tb_write_group(s, me->p, group);
    if (locked) {
        apr_global_mutex_unlock(s->writers);
    }
    src->close(src->baton, s, me->what);

    apr_thread_mutex_lock(q->lock);
    for (w = group; w; w = w->next) {
        w->state = TB_W_DONE;
    }
    apr_thread_mutex_unlock(q->lock);
}

static void tb_write_req_init(tb_write_req *w, apr_pool_t *p,
                              const char *project, const char *key_id,
                              tb_batch *batch, double received,
                              double dedup_window, apr_interval_time_t wait)
{
    /* never NULL (success) until a COMMIT says so */
    w->what = "the batch was not written";
    w->next = NULL;
    w->p = p;
    w->project = project;
    w->key_id = key_id;
    w->batch = batch;
    w->received = received;
    w->dedup_window = dedup_window;
    w->deadline = apr_time_now() + wait;
    w->saved = NULL;
    w->state = TB_W_QUEUED;
}

const char *tb_store_write(tb_store *s, apr_pool_t *p, const char *project,
                           const char *key_id, tb_batch *batch,
                           double received, double dedup_window,
                           apr_interval_time_t wait)
{
    tb_write_req me;

    if (batch->n_valid == 0) {
        return NULL;
    }
    if (s->pg) {
        /* what is left of the request's wait: its key lookups count, the
         * time it took the client to send the body does not */
        tb_set_deadline(s, wait - s->waited);
        return tb_pg_write(s, p, project, key_id, batch, received,
                           dedup_window);
    }
    tb_set_deadline(s, wait);
    tb_write_req_init(&me, p, project, key_id, batch, received, dedup_window,
                      wait);
    return tb_write_alone(s, &me, wait);
}

const char *tb_writeq_write(tb_writeq *q, const tb_store_source *src,
                            apr_pool_t *p, const char *project,
                            const char *key_id, tb_batch *batch,
                            double received, double dedup_window,
                            apr_interval_time_t wait)
{
    tb_write_req me;

    if (batch->n_valid == 0) {
        return NULL;
    }
    tb_write_req_init(&me, p, project, key_id, batch, received, dedup_window,
                      wait);
    apr_thread_mutex_lock(q->lock);
    *q->tail = &me;
    q->tail = &me.next;
    while (me.state != TB_W_DONE) {
        apr_time_t now;

        if (!q->writing) {
            q->writing = 1;
            apr_thread_mutex_unlock(q->lock);
            tb_lead(q, src, &me);
            apr_thread_mutex_lock(q->lock);
            q->writing = 0;
            apr_thread_cond_broadcast(q->changed);
            continue;
        }
        if (me.state == TB_W_TAKEN) {
            /* being written: its outcome comes with the group's commit */
            apr_thread_cond_wait(q->changed, q->lock);
            continue;
        }
        now = apr_time_now();
        if (now >= me.deadline) {
            tb_unqueue(q, &me);
            me.what = tb_busy;
            break;
        }
        apr_thread_cond_timedwait(q->changed, q->lock, me.deadline - now);
    }
    apr_thread_mutex_unlock(q->lock);
    return me.what;
}

void tb_store_set_writers(tb_store *s, apr_global_mutex_t *writers)
{
    s->writers = writers;
}

int tb_store_is_pg(const tb_store *s)
{
    return s->pg;
}

apr_status_t tb_writeq_create(apr_pool_t *p, tb_writeq **out)
{
    tb_writeq *q = apr_pcalloc(p, sizeof(*q));
    tb_ckpt *k = apr_pcalloc(p, sizeof(*k));
    apr_allocator_t *alloc;
    apr_status_t rv;

    rv = apr_thread_mutex_create(&q->lock, APR_THREAD_MUTEX_DEFAULT, p);
    if (rv == APR_SUCCESS) {
        rv = apr_thread_cond_create(&q->changed, p);
    }
    /* its own allocator: the thread is made from a request's thread,
     * while others may allocate from @a p's */
    if (rv == APR_SUCCESS) {
        rv = apr_allocator_create(&alloc);
    }
    if (rv == APR_SUCCESS) {
        rv = apr_pool_create_ex(&k->pool, p, NULL, alloc);
        if (rv == APR_SUCCESS) {
            apr_allocator_owner_set(alloc, k->pool);
        }
        else {
            apr_allocator_destroy(alloc);
        }
    }
    if (rv == APR_SUCCESS) {
        rv = apr_thread_mutex_create(&k->lock, APR_THREAD_MUTEX_DEFAULT,
                                     k->pool);
    }
    if (rv == APR_SUCCESS) {
        rv = apr_thread_cond_create(&k->wake, k->pool);
    }
    if (rv == APR_SUCCESS) {
        rv = apr_thread_cond_create(&k->done, k->pool);
    }
    if (rv == APR_SUCCESS) {
        apr_pool_pre_cleanup_register(k->pool, k, tb_ckpt_stop);
        q->ckpt = k;
    }
    q->tail = &q->head;
    *out = rv == APR_SUCCESS ? q : NULL;
    return rv;
}

unsigned tb_writeq_checkpoints(tb_writeq *q, apr_interval_time_t wait)
{
    tb_ckpt *k = q->ckpt;
    apr_time_t until = apr_time_now() + wait;
    unsigned n;

    apr_thread_mutex_lock(k->lock);
    while ((k->due || k->running) && !k->failed && apr_time_now() < until) {
        apr_thread_cond_timedwait(k->done, k->lock, until - apr_time_now());
    }
    n = k->passes;
    apr_thread_mutex_unlock(k->lock);
    return n;
}

/*--------------------------------------------------------------------------*/
/* Keys                                                                     */

static void tb_copy_digest(char *dst, const char *src)
{
    apr_cpystrn(dst, src && strlen(src) == TB_DIGEST_HEX ? src : "",
                TB_DIGEST_HEX + 1);
}

/* Reads outside a write: after another connection changed the schema,
 * SQLite's legacy statements fail once; prepare them again and retry. */
static int tb_read_stale(tb_store *s, apr_pool_t *p, int rv)
{
    return rv && !s->pg
           && sqlite3_errcode(apr_dbd_native_handle(s->driver, s->handle))
              == SQLITE_SCHEMA
           && tb_prepare(s, p) == NULL;
}

static const char *tb_find_key_once(tb_store *s, apr_pool_t *p, int is_public,
                                    const char *lookup, tb_key **out,
                                    int *rvp);

const char *tb_store_find_key(tb_store *s, apr_pool_t *p, int is_public,
                              const char *lookup, tb_key **out)
{
    int rv = 0;
    const char *what = tb_find_key_once(s, p, is_public, lookup, out, &rv);

    if (what && tb_read_stale(s, p, rv)) {
        what = tb_find_key_once(s, p, is_public, lookup, out, &rv);
    }
    return what;
}

static const char *tb_find_key_once(tb_store *s, apr_pool_t *p, int is_public,
                                    const char *lookup, tb_key **out,
                                    int *rvp)
{
    apr_array_header_t *rows;
    const char **v, *what;
    tb_key *k;
    int i;

    *out = NULL;
    if ((what = tb_select(s, p, is_public ? TB_KEY_BY_TOKEN : TB_KEY_BY_ID,
                          rvp, "looking up a key", &rows, 7, 1, lookup))) {
        return tb_dbd_error(s, p, what, *rvp);
    }
    if (!rows->nelts) {
        return NULL;
    }
    /* key_id and token_digest are unique: one row */
    v = &APR_ARRAY_IDX(rows, 0, const char *);
    k = apr_pcalloc(p, sizeof(*k));
    k->key_id = v[0];
    k->project = v[1];
    k->is_public = is_public;
    tb_copy_digest(k->digest, v[3]);
    tb_copy_digest(k->old_digest, v[4]);
    k->old_until = strtod(v[5], NULL);
    k->disabled = *v[6] && strcmp(v[6], "0") != 0;

    if ((what = tb_select(s, p, TB_KEY_PERMS, rvp,
                          "reading a key's permissions", &rows, 2, 1,
                          k->key_id))) {
        return tb_dbd_error(s, p, what, *rvp);
    }
    k->customers = apr_array_make(p, 4, sizeof(const char *));
    k->events = apr_array_make(p, 4, sizeof(const char *));
    for (i = 0; i + 1 < rows->nelts; i += 2) {
        const char *name = APR_ARRAY_IDX(rows, i + 1, const char *);
        int events = !strcmp(APR_ARRAY_IDX(rows, i, const char *), "events");

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
    apr_array_header_t *rows;
    int rv = 0;
    const char *what = tb_select(s, p, TB_FIND_PROJECT, &rv,
                                 "looking up a project", &rows, 1, 1, project);

    if (what && tb_read_stale(s, p, rv)) {
        what = tb_select(s, p, TB_FIND_PROJECT, &rv, "looking up a project",
                         &rows, 1, 1, project);
    }
    *exists = !what && rows->nelts > 0;
    return what ? tb_dbd_error(s, p, what, rv) : NULL;
}

int tb_store_unanswered(const tb_store *s)
{
    return s->unanswered;
}
