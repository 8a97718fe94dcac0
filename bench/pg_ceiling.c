/* pg_ceiling: the benchmark's ceiling P (bench/run only).
 *
 *   pg_ceiling CONNINFO SCHEMA.sql ROWS.tsv CONNECTIONS SECONDS
 *
 * Raw libpq, no httpd, no apr_dbd, no JSON: the customers/events commands
 * of bench/gen-bodies (ROWS.tsv, loaded before the clock starts) inserted
 * into the module's PostgreSQL schema (SCHEMA.sql, run first) in the
 * cheapest way that still stores the module's rows:
 *
 *   before the clock: every customer of ROWS.tsv and its ids (tb_customers,
 *   tb_customer_ids), so the timed part is the steady state, where every
 *   customer is known;
 *   timed: CONNECTIONS threads, one connection each, take the next batch
 *   of 50 commands and insert its 50 events in ONE statement (one
 *   round trip, one transaction, one WAL flush):
 *     INSERT INTO tb_events (...) SELECT ... FROM (VALUES (...) x 50) v
 *      WHERE NOT EXISTS (an identical event of the customer: timestamp,
 *      dedup_key)
 *
 * Customer ids are resolved in the client (an in-memory map), which the
 * module cannot do; the dedup key is a cheap 64-bit hash, not the module's
 * digest.  Each pass over the rows moves their timestamps one second back,
 * so no event repeats one already stored.  Prints one line:
 *
 *   rows=N txns=T seconds=S rows_per_s=R p50_us_per_txn=M cpu_us_per_txn=C
 *
 * (median wall time of a batch's statement, and this process's CPU time
 * per batch).
 */

#define _POSIX_C_SOURCE 200809L
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <libpq-fe.h>
#include "bench_util.h"


typedef struct {
    PGconn *conn;
    double *durs;
    long ndurs, cap, rows;
    char *sql;
    size_t sqlcap;
} worker_t;

static row_t *rows;
static int nrows, nbatches;
static long next_batch;
static double t_end;
static const char *conninfo;

static void die(PGconn *c, const char *what)
{
    fprintf(stderr, "pg_ceiling: %s: %s\n", what, c ? PQerrorMessage(c) : "?");
    exit(2);
}


static void quiet(void *arg, const char *message)
{
    (void)arg;
    (void)message;
}

static void exec_ok(PGconn *c, const char *sql)
{
    PGresult *res = PQexec(c, sql);
    ExecStatusType st = PQresultStatus(res);

    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
        die(c, sql);
    }
    PQclear(res);
}

/* The cookie id, which gen-bodies sends with every command of a customer */
static const char *cookie(const row_t *r)
{
    int i;
    for (i = 0; i < r->nids; i++) {
        if (!strcmp(r->name[i], "cookie")) {
            return r->value[i];
        }
    }
    return "";
}

static int cmp_cookie(const void *a, const void *b)
{
    return strcmp(cookie(*(row_t *const *)a), cookie(*(row_t *const *)b));
}

/* Every customer and its ids, before the clock. */
static void create_customers(PGconn *c)
{
    row_t **by = malloc(nrows * sizeof(*by));
    int i, j;

    for (i = 0; i < nrows; i++) {
        by[i] = &rows[i];
    }
    qsort(by, nrows, sizeof(*by), cmp_cookie);
    exec_ok(c, "BEGIN");
    for (i = 0; i < nrows; i++) {
        row_t *r = by[i];
        PGresult *res;
        const char *pv[3];
        char cid[32];

        if (i && !strcmp(cookie(by[i - 1]), cookie(r))) {
            r->cid = by[i - 1]->cid;
            continue;
        }
        res = PQexec(c, "INSERT INTO tb_customers (project, created_at)"
                        " VALUES ('bench', extract(epoch FROM now()))"
                        " RETURNING id");
        if (PQresultStatus(res) != PGRES_TUPLES_OK) {
            die(c, "creating a customer");
        }
        r->cid = atoll(PQgetvalue(res, 0, 0));
        PQclear(res);
        snprintf(cid, sizeof(cid), "%lld", r->cid);
        for (j = 0; j < r->nids; j++) {
            pv[0] = r->name[j];
            pv[1] = r->value[j];
            pv[2] = cid;
            res = PQexecParams(c, "INSERT INTO tb_customer_ids (project,"
                               " id_name, id_value, customer_id, hard)"
                               " VALUES ('bench', $1, $2, $3,"
                               " CASE WHEN $1 = 'registered' THEN 1 ELSE 0 END)"
                               " ON CONFLICT DO NOTHING",
                               3, NULL, pv, NULL, NULL, 0);
            if (PQresultStatus(res) != PGRES_COMMAND_OK) {
                die(c, "adding a customer id");
            }
            PQclear(res);
        }
    }
    exec_ok(c, "COMMIT");
    free(by);
}

static void dedup_key(const row_t *r, double ts, char out[17])
{
    unsigned long long h = 1469598103934665603ULL;
    char num[32];
    const char *parts[3];
    int i;

    snprintf(num, sizeof(num), "%.17g", ts);
    parts[0] = r->event_type;
    parts[1] = num;
    parts[2] = r->properties;
    for (i = 0; i < 3; i++) {
        const unsigned char *c = (const unsigned char *)parts[i];
        for (; *c; c++) {
            h = (h ^ *c) * 1099511628211ULL;
        }
        h = (h ^ 0xff) * 1099511628211ULL;
    }
    snprintf(out, 17, "%016llx", h);
}

static void append(worker_t *w, size_t *len, const char *s, size_t n)
{
    if (*len + n + 1 > w->sqlcap) {
        w->sqlcap = (*len + n + 1) * 2;
        w->sql = realloc(w->sql, w->sqlcap);
    }
    memcpy(w->sql + *len, s, n);
    *len += n;
    w->sql[*len] = '\0';
}

/* a string literal: the value escaped by libpq, quoted */
static void literal(worker_t *w, size_t *len, const char *v)
{
    size_t n = strlen(v);
    int err = 0;

    if (*len + 2 * n + 3 > w->sqlcap) {
        w->sqlcap = (*len + 2 * n + 3) * 2;
        w->sql = realloc(w->sql, w->sqlcap);
    }
    w->sql[(*len)++] = '\'';
    *len += PQescapeStringConn(w->conn, w->sql + *len, v, n, &err);
    if (err) {
        die(w->conn, "escaping a value");
    }
    w->sql[(*len)++] = '\'';
    w->sql[*len] = '\0';
}

static void *run(void *arg)
{
    worker_t *w = arg;

    while (now_mono() < t_end) {
        long b = __atomic_fetch_add(&next_batch, 1, __ATOMIC_SEQ_CST);
        const row_t *batch = &rows[(b % nbatches) * BATCH];
        double shift = (double)(b / nbatches), received = now_unix(), t0;
        char num[64], key[17];
        size_t len = 0;
        PGresult *res;
        int i;

        static const char head[] =
            "INSERT INTO tb_events (project, customer_id, event_type,"
            " timestamp, properties, received_at, command_id, dedup_key)"
            " SELECT 'bench', v.c, v.t, v.ts, v.p, v.r, NULL, v.k"
            " FROM (VALUES ";

        append(w, &len, head, sizeof(head) - 1);
        for (i = 0; i < BATCH; i++) {
            const row_t *r = &batch[i];
            double ts = r->timestamp - shift;
            int n = snprintf(num, sizeof(num), "%s(%lld::bigint, ",
                             i ? ", " : "", r->cid);
            append(w, &len, num, (size_t)n);
            literal(w, &len, r->event_type);
            n = snprintf(num, sizeof(num), ", %.17g::float8, ", ts);
            append(w, &len, num, (size_t)n);
            literal(w, &len, r->properties);
            n = snprintf(num, sizeof(num), ", %.17g::float8, ", received);
            append(w, &len, num, (size_t)n);
            dedup_key(r, ts, key);
            literal(w, &len, key);
            append(w, &len, ")", 1);
        }
        {
            char tail[256];
            int n = snprintf(tail, sizeof(tail),
                             ") AS v (c, t, ts, p, r, k) WHERE NOT EXISTS"
                             " (SELECT 1 FROM tb_events e WHERE e.customer_id"
                             " = v.c AND e.timestamp = v.ts AND e.dedup_key"
                             " = v.k AND e.received_at >= %.17g)",
                             received - 90.0 * 86400);
            append(w, &len, tail, (size_t)n);
        }
        t0 = now_mono();
        res = PQexec(w->conn, w->sql);
        if (PQresultStatus(res) != PGRES_COMMAND_OK
            || atol(PQcmdTuples(res)) != BATCH) {
            die(w->conn, "inserting a batch of events");
        }
        PQclear(res);
        if (w->ndurs == w->cap) {
            w->cap = w->cap ? w->cap * 2 : 4096;
            w->durs = realloc(w->durs, w->cap * sizeof(double));
        }
        w->durs[w->ndurs++] = now_mono() - t0;
        w->rows += BATCH;
    }
    return NULL;
}

int main(int argc, char **argv)
{
    PGconn *setup;
    pthread_t *th;
    worker_t *ws;
    double t0, t1, cpu0, *all;
    long total_rows = 0, txns = 0, k;
    int conns, i;

    if (argc != 6) {
        fprintf(stderr, "usage: %s CONNINFO SCHEMA.sql ROWS.tsv CONNECTIONS"
                " SECONDS\n", argv[0]);
        return 2;
    }
    conninfo = argv[1];
    conns = atoi(argv[4]);
    if (conns < 1 || atof(argv[5]) <= 0) {
        fprintf(stderr, "pg_ceiling: CONNECTIONS >= 1, SECONDS > 0\n");
        return 2;
    }
    rows = load_rows(argv[3], &nrows);
    nbatches = nrows / BATCH;
    if (nbatches < 1) {
        fprintf(stderr, "pg_ceiling: fewer than %d rows\n", BATCH);
        return 2;
    }
    setup = PQconnectdb(conninfo);
    if (PQstatus(setup) != CONNECTION_OK) {
        die(setup, "connecting");
    }
    PQsetNoticeProcessor(setup, quiet, NULL);
    exec_ok(setup, slurp(argv[2], NULL));
    create_customers(setup);
    exec_ok(setup, "CHECKPOINT");
    PQfinish(setup);

    th = calloc(conns, sizeof(*th));
    ws = calloc(conns, sizeof(*ws));
    for (i = 0; i < conns; i++) {
        ws[i].conn = PQconnectdb(conninfo);
        if (PQstatus(ws[i].conn) != CONNECTION_OK) {
            die(ws[i].conn, "connecting");
        }
    }
    t0 = now_mono();
    cpu0 = cpu_seconds();
    t_end = t0 + atof(argv[5]);
    for (i = 0; i < conns; i++) {
        pthread_create(&th[i], NULL, run, &ws[i]);
    }
    for (i = 0; i < conns; i++) {
        pthread_join(th[i], NULL);
        total_rows += ws[i].rows;
        txns += ws[i].ndurs;
    }
    t1 = now_mono();
    all = malloc((txns + 1) * sizeof(double));
    for (i = 0, k = 0; i < conns; i++) {
        memcpy(all + k, ws[i].durs, ws[i].ndurs * sizeof(double));
        k += ws[i].ndurs;
        PQfinish(ws[i].conn);
    }
    qsort(all, txns, sizeof(double), cmp_double);
    printf("rows=%ld txns=%ld seconds=%.3f rows_per_s=%.0f p50_us_per_txn=%.1f"
           " cpu_us_per_txn=%.1f\n", total_rows, txns, t1 - t0,
           total_rows / (t1 - t0), txns ? all[(txns - 1) / 2] * 1e6 : 0.0,
           txns ? (cpu_seconds() - cpu0) * 1e6 / txns : 0.0);
    return 0;
}
