/* tb_load: the benchmark's own HTTP/1.1 client (bench/run only), for what
 * wrk cannot do: a constant offered rate with latency measured the way
 * wrk2 does, and an exact number of requests.
 *
 *   tb_load -p PORT -u PATH [-l BODYLIST] [-c CONNS] [-r RATE]
 *           (-d SECONDS | -n REQUESTS) [-H HOST]
 *
 * One thread per keep-alive connection, blocking sockets.  With -l, POSTs
 * the bodies of the files listed (application/json), each connection
 * walking the list from its own offset; without it, GETs.
 *
 * -r RATE  constant offered load of RATE requests/s in total: connection i
 *          of C sends its k-th request at t0 + (i/C + k) * C/RATE, never
 *          earlier; a late request is sent at once and its latency still
 *          counts from the time it was due (corrected for coordinated
 *          omission, as wrk2 does).  Without -r (or -r 0): closed loop,
 *          latency from the first byte sent.
 * -n N     exactly N requests in total (closed loop), then stop.
 * -a AUTH  send "Authorization: AUTH" with every request.
 * -U SEQ0  unique events: each request's event timestamps (the 10-digit
 *          whole seconds after "timestamp":) move SEQ0 + k seconds into
 *          the past for its k-th request (k counted over all connections),
 *          so a body sent again is new events, not identical ones the
 *          module would deduplicate (and so not insert).
 *
 * Prints one line:
 *   requests=N seconds=S rps=R p50_ms= p90_ms= p99_ms= p999_ms= max_ms=
 *   non200=K false=F errors=E
 * where false counts answers holding "success": false (a command that
 * was not recorded).  Exit 1 if any request failed at the socket level.
 */

#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include "bench_util.h"

typedef struct {
    char *req;
    size_t len;
    int nts;                        /* -U: timestamps to rewrite */
    size_t *ts_off;
    long *ts_val;
} request_t;

static request_t *reqs;
static int nreqs;
static const char *host = "127.0.0.1";
static int port, conns = 16;
static double rate, duration;
static long total = -1;
static long issued;                 /* -n: requests handed out */
static long seq0 = -1, seq;         /* -U */
static double t_start;

typedef struct {
    int idx;
    double *lat;
    long nlat, cap;
    long non200, nfalse, errors;
    char *buf;
    size_t bufcap;
    char *out;                      /* -U: the rewritten request */
    size_t outcap;
} worker_t;

static void sleep_until(double t)
{
    struct timespec ts;
    ts.tv_sec = (time_t)t;
    ts.tv_nsec = (long)((t - ts.tv_sec) * 1e9);
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR) {
    }
}

static int dial(void)
{
    struct sockaddr_in sa;
    int fd = socket(AF_INET, SOCK_STREAM, 0), one = 1;

    if (fd < 0) {
        return -1;
    }
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_port = htons(port);
    inet_pton(AF_INET, host, &sa.sin_addr);
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa))) {
        close(fd);
        return -1;
    }
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    return fd;
}

static int write_all(int fd, const char *p, size_t n)
{
    while (n) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR) {
            continue;
        }
        if (w <= 0) {
            return -1;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Read one response; returns its status, or -1.  *closed set when the
 * server will close (Connection: close). */
static int read_response(worker_t *w, int fd, int *is_false, int *closed)
{
    size_t have = 0, head_end = 0, clen = 0;
    int status = -1;
    char *p;

    *is_false = 0;
    *closed = 0;
    for (;;) {
        ssize_t r;
        if (have + 65536 > w->bufcap) {
            w->bufcap = (have + 65536) * 2;
            w->buf = realloc(w->buf, w->bufcap);
        }
        r = read(fd, w->buf + have, w->bufcap - have - 1);
        if (r < 0 && errno == EINTR) {
            continue;
        }
        if (r <= 0) {
            return -1;
        }
        have += (size_t)r;
        w->buf[have] = '\0';
        if (!head_end && (p = strstr(w->buf, "\r\n\r\n")) != NULL) {
            char *cl;
            head_end = (size_t)(p - w->buf) + 4;
            if (sscanf(w->buf, "HTTP/1.%*d %d", &status) != 1) {
                return -1;
            }
            w->buf[head_end - 2] = '\0';
            cl = strcasestr(w->buf, "\r\nContent-Length:");
            clen = cl ? strtoul(cl + 17, NULL, 10) : 0;
            *closed = strcasestr(w->buf, "\r\nConnection: close") != NULL;
            w->buf[head_end - 2] = '\r';
        }
        if (head_end && have >= head_end + clen) {
            break;
        }
    }
    *is_false = strstr(w->buf + head_end, "\"success\": false") != NULL;
    return status;
}

/* -U: a copy of rq with its event timestamps moved into the past */
static const request_t *unique(worker_t *w, const request_t *rq)
{
    static __thread request_t u;
    long shift = seq0 + __atomic_fetch_add(&seq, 1, __ATOMIC_SEQ_CST);
    int i;

    if (w->outcap < rq->len + 1) {
        w->outcap = rq->len + 1;
        w->out = realloc(w->out, w->outcap);
    }
    memcpy(w->out, rq->req, rq->len);
    for (i = 0; i < rq->nts; i++) {
        char digits[16];
        snprintf(digits, sizeof(digits), "%010ld", rq->ts_val[i] - shift);
        memcpy(w->out + rq->ts_off[i], digits, 10);
    }
    u.req = w->out;
    u.len = rq->len;
    return &u;
}

/* -U: where the whole seconds of each "timestamp": are */
static void find_timestamps(request_t *rq)
{
    static const char key[] = "\"timestamp\":";
    const char *p = rq->req, *end = rq->req + rq->len;

    while ((p = memmem(p, (size_t)(end - p), key, sizeof(key) - 1)) != NULL) {
        const char *d = p + sizeof(key) - 1;
        int n = 0;
        while (d + n < end && d[n] >= '0' && d[n] <= '9') {
            n++;
        }
        if (n == 10) {
            rq->ts_off = realloc(rq->ts_off, (rq->nts + 1) * sizeof(size_t));
            rq->ts_val = realloc(rq->ts_val, (rq->nts + 1) * sizeof(long));
            rq->ts_off[rq->nts] = (size_t)(d - rq->req);
            rq->ts_val[rq->nts] = strtol(d, NULL, 10);
            rq->nts++;
        }
        p = d;
    }
}

static void *run(void *arg)
{
    worker_t *w = arg;
    double interval = rate > 0 ? conns / rate : 0;
    double due = t_start + (rate > 0 ? interval * w->idx / conns : 0);
    long k = 0;
    int fd = -1;

    for (;; k++) {
        const request_t *rq;
        double sent, done;
        int status = -1, is_false, closed, attempt;

        if (total >= 0) {
            if (__atomic_fetch_add(&issued, 1, __ATOMIC_SEQ_CST) >= total) {
                break;
            }
        }
        else if ((rate > 0 ? due : now_mono()) >= t_start + duration) {
            break;
        }
        if (rate > 0 || k == 0) {
            /* closed loop too: nobody starts before the clock does */
            sleep_until(due);
        }
        rq = &reqs[(w->idx * 7 + k) % nreqs];
        if (seq0 >= 0 && rq->nts) {
            rq = unique(w, rq);
        }
        sent = now_mono();
        for (attempt = 0; attempt < 2 && status < 0; attempt++) {
            if (fd < 0 && (fd = dial()) < 0) {
                break;
            }
            if (write_all(fd, rq->req, rq->len) == 0) {
                status = read_response(w, fd, &is_false, &closed);
            }
            if (status < 0 || closed) {
                close(fd);
                fd = -1;
            }
        }
        done = now_mono();
        if (status < 0) {
            w->errors++;
        }
        else {
            if (status != 200) {
                w->non200++;
            }
            if (is_false) {
                w->nfalse++;
            }
            if (w->nlat == w->cap) {
                w->cap = w->cap ? w->cap * 2 : 4096;
                w->lat = realloc(w->lat, w->cap * sizeof(double));
            }
            w->lat[w->nlat++] = done - (rate > 0 ? due : sent);
        }
        due += interval;
    }
    if (fd >= 0) {
        close(fd);
    }
    return NULL;
}

int main(int argc, char **argv)
{
    const char *path = NULL, *list = NULL, *auth = NULL;
    char extra[600] = "";
    pthread_t *th;
    worker_t *ws;
    double *all, t_end;
    long n = 0, non200 = 0, nfalse = 0, errors = 0;
    int opt, i;

    while ((opt = getopt(argc, argv, "H:p:u:l:c:r:d:n:a:U:")) != -1) {
        switch (opt) {
        case 'H': host = optarg; break;
        case 'p': port = atoi(optarg); break;
        case 'u': path = optarg; break;
        case 'l': list = optarg; break;
        case 'c': conns = atoi(optarg); break;
        case 'r': rate = atof(optarg); break;
        case 'd': duration = atof(optarg); break;
        case 'n': total = atol(optarg); break;
        case 'a': auth = optarg; break;
        case 'U': seq0 = atol(optarg); break;
        default:
            fprintf(stderr, "usage: %s -p PORT -u PATH [-l LIST] [-c CONNS] "
                    "[-r RATE] [-a AUTHORIZATION] [-U SEQ0] (-d SECONDS | -n REQUESTS)\n", argv[0]);
            return 2;
        }
    }
    if (!port || !path || conns < 1 || (total < 0 && duration <= 0)) {
        fprintf(stderr, "tb_load: -p, -u and -d or -n are required\n");
        return 2;
    }
    if (auth && snprintf(extra, sizeof(extra), "Authorization: %s\r\n", auth)
                >= (int)sizeof(extra)) {
        fprintf(stderr, "tb_load: -a value too long\n");
        return 2;
    }
    if (list) {
        size_t len;
        char *text = slurp(list, &len), *line, *save = NULL;
        int cap = 16;
        reqs = malloc(cap * sizeof(*reqs));
        for (line = strtok_r(text, "\n", &save); line;
             line = strtok_r(NULL, "\n", &save)) {
            size_t blen;
            char *body = slurp(line, &blen), head[1024];
            int hlen = snprintf(head, sizeof(head),
                                "POST %s HTTP/1.1\r\nHost: %s:%d\r\n"
                                "Content-Type: application/json\r\n%s"
                                "Content-Length: %zu\r\n\r\n",
                                path, host, port, extra, blen);
            if (nreqs == cap) {
                cap *= 2;
                reqs = realloc(reqs, cap * sizeof(*reqs));
            }
            reqs[nreqs].len = hlen + blen;
            reqs[nreqs].req = malloc(reqs[nreqs].len);
            memcpy(reqs[nreqs].req, head, hlen);
            memcpy(reqs[nreqs].req + hlen, body, blen);
            reqs[nreqs].nts = 0;
            reqs[nreqs].ts_off = NULL;
            reqs[nreqs].ts_val = NULL;
            if (seq0 >= 0) {
                find_timestamps(&reqs[nreqs]);
            }
            free(body);
            nreqs++;
        }
    }
    else {
        reqs = calloc(1, sizeof(*reqs));
        reqs[0].req = malloc(1200);
        reqs[0].len = snprintf(reqs[0].req, 1200, "GET %s HTTP/1.1\r\n"
                               "Host: %s:%d\r\n%s\r\n", path, host, port,
                               extra);
        nreqs = 1;
    }
    if (!nreqs) {
        fprintf(stderr, "tb_load: no bodies in %s\n", list);
        return 2;
    }

    th = calloc(conns, sizeof(*th));
    ws = calloc(conns, sizeof(*ws));
    t_start = now_mono() + 0.05;
    for (i = 0; i < conns; i++) {
        ws[i].idx = i;
        pthread_create(&th[i], NULL, run, &ws[i]);
    }
    for (i = 0; i < conns; i++) {
        pthread_join(th[i], NULL);
        n += ws[i].nlat;
        non200 += ws[i].non200;
        nfalse += ws[i].nfalse;
        errors += ws[i].errors;
    }
    t_end = now_mono();
    all = malloc((n ? n : 1) * sizeof(double));
    n = 0;
    for (i = 0; i < conns; i++) {
        memcpy(all + n, ws[i].lat, ws[i].nlat * sizeof(double));
        n += ws[i].nlat;
    }
    qsort(all, n, sizeof(double), cmp_double);
#define PCT(q) (n ? all[(long)((n - 1) * (q))] * 1e3 : 0.0)
    printf("requests=%ld seconds=%.3f rps=%.1f p50_ms=%.3f p90_ms=%.3f "
           "p99_ms=%.3f p999_ms=%.3f max_ms=%.3f non200=%ld false=%ld "
           "errors=%ld\n", n, t_end - t_start, n / (t_end - t_start),
           PCT(0.5), PCT(0.9), PCT(0.99), PCT(0.999), PCT(1.0), non200,
           nfalse, errors);
    return errors ? 1 : 0;
}
