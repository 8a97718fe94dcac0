/* sqlite_ceiling: the benchmark's ceiling S (bench/run only).
 *
 *   sqlite_ceiling SCHEMA.sql ROWS.tsv DBFILE ROWS_PER_TXN SECONDS
 *
 * Raw libsqlite3, one connection, no httpd, no apr_dbd, no JSON: replays
 * the customers/events commands of bench/gen-bodies (ROWS.tsv, loaded into
 * memory before the clock starts) with exactly the statements
 * mod_track_batch runs per event command (tb_store.c):
 *
 *   for each customer id of the command not yet seen in this transaction:
 *       SELECT customer_id FROM tb_customer_ids WHERE project, id_name, id_value
 *   none found:  INSERT INTO tb_customers ... RETURNING id
 *   each id not found: INSERT INTO tb_customer_ids ...
 *   SELECT id FROM tb_events WHERE customer_id, timestamp, dedup_key,
 *       received_at
 *   INSERT INTO tb_events ... (with the dedup key)
 *
 * on a new database made from the module's schema file, with the module's
 * pragmas (journal_mode=WAL, synchronous=FULL, foreign_keys=ON), one
 * BEGIN IMMEDIATE ... COMMIT per ROWS_PER_TXN commands (the first
 * ROWS_PER_TXN commands of each generated batch, as the b1/b10/b50 bodies
 * hold).  Each pass over the rows moves their timestamps one second back,
 * so no event is identical to one already stored (the module would look
 * it up and not insert it).  The dedup key is a cheap 64-bit hash here,
 * not the module's digest.  Values are bound with their native types.  Runs whole
 * transactions until SECONDS have passed and prints one line:
 *
 *   rows=N txns=T seconds=S rows_per_s=R us_per_txn=U p50_us_per_txn=M
 *   p99_us_per_txn=Q max_us_per_txn=X
 *   cpu_us_per_txn=C
 *
 * (mean and median wall time per transaction, and CPU time of this
 * process per transaction: the part that does not wait for the disk).
 */

#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/resource.h>
#include <unistd.h>
#include <sqlite3.h>
#include "bench_util.h"


typedef struct {
    const char *name, *value;
    sqlite3_int64 cid;
} seen_t;

static sqlite3 *db;

static void die(const char *what)
{
    fprintf(stderr, "sqlite_ceiling: %s: %s\n", what,
            db ? sqlite3_errmsg(db) : "?");
    exit(2);
}


/* FNV-1a: enough to make a distinct key per distinct event */
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

static void exec(const char *sql)
{
    char *err = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &err) != SQLITE_OK) {
        fprintf(stderr, "sqlite_ceiling: %s: %s\n", sql, err ? err : "?");
        exit(2);
    }
}

static sqlite3_stmt *prep(const char *sql)
{
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) {
        die(sql);
    }
    return st;
}

int main(int argc, char **argv)
{
    static const char project[] = "bench";
    sqlite3_stmt *find, *newc, *addid, *addev, *findev;
    seen_t seen[BATCH * MAX_IDS];
    row_t *rows;
    int nrows, per, nbatches, b = 0, i, j, k;
    long done_rows = 0, txns = 0;
    double seconds, t0, t1, tx, cpu0, *durs = NULL;
    long durcap = 0;
    char path[4096];

    if (argc != 6) {
        fprintf(stderr, "usage: %s SCHEMA.sql ROWS.tsv DBFILE ROWS_PER_TXN "
                "SECONDS\n", argv[0]);
        return 2;
    }
    per = atoi(argv[4]);
    seconds = atof(argv[5]);
    if (per < 1 || per > BATCH || seconds <= 0) {
        fprintf(stderr, "sqlite_ceiling: ROWS_PER_TXN 1..50, SECONDS > 0\n");
        return 2;
    }
    rows = load_rows(argv[2], &nrows);
    nbatches = nrows / BATCH;
    if (nbatches < 1) {
        fprintf(stderr, "sqlite_ceiling: fewer than %d rows\n", BATCH);
        return 2;
    }

    unlink(argv[3]);
    snprintf(path, sizeof(path), "%s-wal", argv[3]);
    unlink(path);
    snprintf(path, sizeof(path), "%s-shm", argv[3]);
    unlink(path);
    if (sqlite3_open(argv[3], &db) != SQLITE_OK) {
        die(argv[3]);
    }
    exec("PRAGMA journal_mode=WAL");
    exec("PRAGMA synchronous=FULL");
    exec("PRAGMA foreign_keys=ON");
    exec(slurp(argv[1], NULL));

    /* tb_store.c's statements, word for word (bound with ? here) */
    find = prep("SELECT customer_id FROM tb_customer_ids"
                " WHERE project = ? AND id_name = ? AND id_value = ?");
    newc = prep("INSERT INTO tb_customers (project, created_at) VALUES (?, ?)"
                " RETURNING id");
    addid = prep("INSERT INTO tb_customer_ids (project, id_name, id_value,"
                 " customer_id, hard) VALUES (?, ?, ?, ?, ?)");
    addev = prep("INSERT INTO tb_events (project, customer_id, event_type,"
                 " timestamp, properties, received_at, command_id, dedup_key)"
                 " VALUES (?, ?, ?, ?, ?, ?, ?, ?)");
    findev = prep("SELECT id FROM tb_events WHERE customer_id = ?"
                  " AND timestamp = ? AND dedup_key = ? AND received_at >= ? LIMIT 1");

    t0 = now_mono();
    cpu0 = cpu_seconds();
    t1 = t0;
    do {
        const row_t *batch = &rows[(size_t)b * BATCH];
        double received = now_unix();
        double shift = (double)(txns / nbatches);
        int nseen = 0;

        tx = t1;
        exec("BEGIN IMMEDIATE");
        for (i = 0; i < per; i++) {
            const row_t *r = &batch[i];
            sqlite3_int64 found[MAX_IDS], best = 0;

            for (j = 0; j < r->nids; j++) {
                found[j] = 0;
                for (k = 0; k < nseen; k++) {
                    if (!strcmp(seen[k].name, r->name[j])
                        && !strcmp(seen[k].value, r->value[j])) {
                        found[j] = seen[k].cid;
                        break;
                    }
                }
                if (!found[j]) {
                    sqlite3_bind_text(find, 1, project, -1, SQLITE_STATIC);
                    sqlite3_bind_text(find, 2, r->name[j], -1, SQLITE_STATIC);
                    sqlite3_bind_text(find, 3, r->value[j], -1, SQLITE_STATIC);
                    while (sqlite3_step(find) == SQLITE_ROW) {
                        found[j] = sqlite3_column_int64(find, 0);
                    }
                    sqlite3_reset(find);
                }
                if (found[j] && (!best || found[j] < best)) {
                    best = found[j];
                }
            }
            if (!best) {
                sqlite3_bind_text(newc, 1, project, -1, SQLITE_STATIC);
                sqlite3_bind_double(newc, 2, received);
                if (sqlite3_step(newc) != SQLITE_ROW) {
                    die("creating a customer");
                }
                best = sqlite3_column_int64(newc, 0);
                while (sqlite3_step(newc) == SQLITE_ROW) {
                }
                sqlite3_reset(newc);
            }
            for (j = 0; j < r->nids; j++) {
                int rc;
                if (!found[j]) {
                    sqlite3_bind_text(addid, 1, project, -1, SQLITE_STATIC);
                    sqlite3_bind_text(addid, 2, r->name[j], -1, SQLITE_STATIC);
                    sqlite3_bind_text(addid, 3, r->value[j], -1, SQLITE_STATIC);
                    sqlite3_bind_int64(addid, 4, best);
                    sqlite3_bind_int(addid, 5, r->hard[j]);
                    rc = sqlite3_step(addid);
                    sqlite3_reset(addid);
                    if (rc != SQLITE_DONE) {
                        die("adding a customer id");
                    }
                }
                /* the module's per-request map of ids to profiles */
                for (k = 0; k < nseen; k++) {
                    if (!strcmp(seen[k].name, r->name[j])
                        && !strcmp(seen[k].value, r->value[j])) {
                        break;
                    }
                }
                if (k == nseen) {
                    seen[nseen].name = r->name[j];
                    seen[nseen].value = r->value[j];
                    nseen++;
                }
                seen[k].cid = best;
            }
            {
                char key[17];
                int rc, dup = 0;
                dedup_key(r, r->timestamp - shift, key);
                sqlite3_bind_int64(findev, 1, best);
                sqlite3_bind_double(findev, 2, r->timestamp - shift);
                sqlite3_bind_text(findev, 3, key, -1, SQLITE_TRANSIENT);
                sqlite3_bind_double(findev, 4, received - 90.0 * 86400);
                while ((rc = sqlite3_step(findev)) == SQLITE_ROW) {
                    dup = 1;
                }
                sqlite3_reset(findev);
                if (rc != SQLITE_DONE || dup) {
                    die("an event identical to one stored");
                }
                sqlite3_bind_text(addev, 8, key, -1, SQLITE_TRANSIENT);
            }
            sqlite3_bind_text(addev, 1, project, -1, SQLITE_STATIC);
            sqlite3_bind_int64(addev, 2, best);
            sqlite3_bind_text(addev, 3, r->event_type, -1, SQLITE_STATIC);
            sqlite3_bind_double(addev, 4, r->timestamp - shift);
            sqlite3_bind_text(addev, 5, r->properties, -1, SQLITE_STATIC);
            sqlite3_bind_double(addev, 6, received);
            sqlite3_bind_null(addev, 7);
            if (sqlite3_step(addev) != SQLITE_DONE) {
                die("adding an event");
            }
            sqlite3_reset(addev);
        }
        exec("COMMIT");
        done_rows += per;
        txns++;
        b = (b + 1) % nbatches;
        t1 = now_mono();
        if (txns > durcap) {
            durcap = durcap ? durcap * 2 : 4096;
            durs = realloc(durs, durcap * sizeof(double));
        }
        durs[txns - 1] = t1 - tx;
    } while (t1 - t0 < seconds);

    qsort(durs, txns, sizeof(double), cmp_double);
    printf("rows=%ld txns=%ld seconds=%.3f rows_per_s=%.0f us_per_txn=%.1f "
           "p50_us_per_txn=%.1f p99_us_per_txn=%.1f max_us_per_txn=%.1f "
           "cpu_us_per_txn=%.1f\n",
           done_rows, txns, t1 - t0, done_rows / (t1 - t0),
           (t1 - t0) * 1e6 / txns, durs[(txns - 1) / 2] * 1e6,
           durs[(txns - 1) * 99 / 100] * 1e6, durs[txns - 1] * 1e6,
           (cpu_seconds() - cpu0) * 1e6 / txns);
    sqlite3_finalize(find);
    sqlite3_finalize(newc);
    sqlite3_finalize(addid);
    sqlite3_finalize(addev);
    sqlite3_finalize(findev);
    sqlite3_close(db);
    return 0;
}
