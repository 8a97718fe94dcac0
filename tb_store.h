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
 * @file tb_store.h
 * @brief Validated commands -> rows, through apr_dbd.  No httpd here: the
 * module hands in the connection mod_dbd gave it, the unit tests one they
 * opened themselves.  Engine differences live in tb_store.c only.
 */

#ifndef TB_STORE_H
#define TB_STORE_H

#include <apr_dbd.h>
#include <apr_global_mutex.h>
#include <apr_time.h>

#include "tb_batch.h"

/** Per-connection state: prepared statements, engine settings. */
typedef struct tb_store tb_store;

/**
 * Find the state kept with a connection, or set the connection up on
 * first use: engine settings (SQLite: WAL, synchronous=FULL, busy
 * handler), the schema when missing, the prepared statements.  Called
 * once per request: it starts the request's wait.
 * @param conn_pool the connection's own pool (ap_dbd_t.pool); the state
 *        lives and dies with it
 * @param wait SQLite: how long to wait for the database lock during setup
 *        and lookups; PostgreSQL: how long this request may wait for the
 *        server's answers in all (setup, lookups and tb_store_write
 *        together).  On PostgreSQL a statement still unanswered then is
 *        abandoned and its connection closed, to be made again on its
 *        next use.
 * @param out the state
 * @return NULL, or a reason for the log
 */
const char *tb_store_attach(apr_pool_t *conn_pool,
                            const apr_dbd_driver_t *driver, apr_dbd_t *handle,
                            apr_interval_time_t wait, tb_store **out);

/**
 * Record the valid commands of a batch in one transaction, committed
 * before returning.  Nothing of the batch is kept when anything fails.  A
 * command whose ids cannot name one customer is marked invalid with its
 * error and the others are kept; a retried command_id (same key, within
 * the window) or an identical event is marked duplicate and not kept
 * again.
 * @param p request pool
 * @param project the project token
 * @param key_id the key the request came with, or NULL (open location)
 * @param received receipt time, Unix seconds
 * @param dedup_window seconds a command_id is remembered
 * @param wait SQLite: how long to wait for the write lock; PostgreSQL: the
 *        request's wait given to tb_store_attach, of which what the
 *        lookups used is spent
 * @return NULL when committed, or a reason for the log; on PostgreSQL a
 *        reason may also mean the batch committed but its answer did not
 *        come in time (its command_ids make the client's retry safe)
 */
const char *tb_store_write(tb_store *s, apr_pool_t *p, const char *project,
                           const char *key_id, tb_batch *batch,
                           double received, double dedup_window,
                           apr_interval_time_t wait);

/**
 * SQLite: have tb_store_write take @a writers (a cross-process mutex
 * with a timed lock) around its transaction, so writers of all processes
 * queue on it instead of polling SQLite's lock.  NULL: SQLite's lock only.
 */
void tb_store_set_writers(tb_store *s, apr_global_mutex_t *writers);

/** Whether the connection is PostgreSQL's (else SQLite's). */
int tb_store_is_pg(const tb_store *s);

/** SQLite: a process's queue of writers to one database (tb_writeq_write). */
typedef struct tb_writeq tb_writeq;

/** Make a queue of writers, for the life of @a p (a child's pool).  Its
 * checkpointer thread starts with the first COMMIT that needs it and
 * stops when @a p is destroyed. */
apr_status_t tb_writeq_create(apr_pool_t *p, tb_writeq **out);

/** How many copies of the WAL the queue's checkpointer has run, once it
 * has none due or under way, or @a wait has passed (for the tests). */
unsigned tb_writeq_checkpoints(tb_writeq *q, apr_interval_time_t wait);

/**
 * Where the writer of a queue gets its connection when its turn comes, and
 * gives it back: a thread holds one only while it writes.
 */
typedef struct tb_store_source {
    /** A connection's store, attached (tb_store_attach) and with its
     * writers' mutex set, waiting at most @a wait; NULL or why not. */
    const char *(*open)(void *baton, apr_interval_time_t wait,
                        tb_store **out);
    /** Give it back; @a what is the outcome of its use (NULL: fine). */
    void (*close)(void *baton, tb_store *s, const char *what);
    void *baton;
} tb_store_source;

/**
 * SQLite: record a batch as tb_store_write does, with the other batches
 * of this process that wait for the database at the same time: they are
 * committed together, each with its own outcome.  The batch waits in
 * @a q without a connection; whichever batch's turn it is gets one from
 * its own @a src and writes the group through it.  No batch is answered
 * before its group's COMMIT.
 * @param wait how long the batch may wait for its turn and the write lock
 */
const char *tb_writeq_write(tb_writeq *q, const tb_store_source *src,
                            apr_pool_t *p, const char *project,
                            const char *key_id, tb_batch *batch,
                            double received, double dedup_window,
                            apr_interval_time_t wait);

struct tb_key;

/**
 * Find an access key and its permissions.
 * @param is_public look up a public key by the hex SHA-256 of the key;
 *        else a private key by its id
 * @param out the key, or NULL when there is none
 * @return NULL, or a reason for the log (database failure)
 */
const char *tb_store_find_key(tb_store *s, apr_pool_t *p, int is_public,
                              const char *lookup, struct tb_key **out);

/** Whether a project exists. */
const char *tb_store_project_exists(tb_store *s, apr_pool_t *p,
                                    const char *project, int *exists);

/**
 * Whether the last statement failed for want of an answer: PostgreSQL
 * did not answer before the deadline (its connection is closed then), or
 * the connection is lost.  Other failures mean the database answered,
 * with an error.
 */
int tb_store_unanswered(const tb_store *s);

#endif /* TB_STORE_H */
