/* What the bench's C helpers (sqlite_ceiling.c, pg_ceiling.c, tb_load.c)
 * share: clocks, whole-file reads, sorting latencies, and the generated
 * rows (bench/gen-bodies writes rows.tsv).  Header-only: bench/run compiles
 * each helper on its own with one gcc call. */
#ifndef TB_BENCH_UTIL_H
#define TB_BENCH_UTIL_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#define MAX_IDS 4
#define BATCH 50

static inline double now_mono(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static inline double now_unix(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* CPU time of this process, user + system */
static inline double cpu_seconds(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6
           + ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
}

static inline int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* The whole file, NUL-terminated; exits on failure.  @a len may be NULL. */
static inline char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    char *buf;
    long n;

    if (!f || fseek(f, 0, SEEK_END) || (n = ftell(f)) < 0
        || fseek(f, 0, SEEK_SET)) {
        perror(path);
        exit(2);
    }
    buf = malloc(n + 1);
    if (!buf || fread(buf, 1, n, f) != (size_t)n) {
        perror(path);
        exit(2);
    }
    fclose(f);
    buf[n] = '\0';
    if (len) {
        *len = (size_t)n;
    }
    return buf;
}

/* One event command of a generated batch. */
typedef struct {
    int nids;
    char *name[MAX_IDS];
    char *value[MAX_IDS];
    int hard[MAX_IDS];              /* the module's defaults: registered */
    char *event_type;
    double timestamp;
    char *properties;               /* JSON text, as the module stores it */
    long long cid;                  /* pg_ceiling: resolved before the clock */
} row_t;

/* rows.tsv: batch \t name=value,... \t event_type \t timestamp \t
 * properties, one line per event; exits on a malformed line. */
static inline row_t *load_rows(const char *path, int *nrows)
{
    char *text = slurp(path, NULL), *line, *save = NULL;
    int cap = 1024, n = 0;
    row_t *rows = malloc(cap * sizeof(*rows));

    for (line = strtok_r(text, "\n", &save); line;
         line = strtok_r(NULL, "\n", &save)) {
        char *f[5], *s = line, *id, *isave = NULL;
        int i;
        row_t *r;

        for (i = 0; i < 5; i++) {
            f[i] = s;
            if (i < 4) {
                if (!(s = strchr(s, '\t'))) {
                    fprintf(stderr, "%s: bad row %d\n", path, n + 1);
                    exit(2);
                }
                *s++ = '\0';
            }
        }
        if (n == cap) {
            cap *= 2;
            rows = realloc(rows, cap * sizeof(*rows));
        }
        r = &rows[n++];
        memset(r, 0, sizeof(*r));
        for (id = strtok_r(f[1], ",", &isave); id && r->nids < MAX_IDS;
             id = strtok_r(NULL, ",", &isave)) {
            char *eq = strchr(id, '=');
            if (!eq) {
                continue;
            }
            *eq = '\0';
            r->name[r->nids] = id;
            r->value[r->nids] = eq + 1;
            /* the module's default id types: registered hard, cookie soft */
            r->hard[r->nids] = !strcmp(id, "registered");
            r->nids++;
        }
        r->event_type = f[2];
        r->timestamp = strtod(f[3], NULL);
        r->properties = f[4];
    }
    *nrows = n;
    return rows;
}

#endif
