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
 * track-batch-admin: projects and access keys of mod_track_batch, in the
 * database the module uses (same apr_dbd driver and parameters as
 * DBDriver / DBDParams).  Changes reach running servers within
 * TrackBatchKeyCacheTTL; no restart.  Secrets are printed once and stored
 * only as SHA-256 digests.
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <grp.h>
#include <sys/stat.h>
#include <unistd.h>

#include <apr_dbd.h>
#include <apr_general.h>
#include <apr_strings.h>
#include <apr_time.h>

#include "tb_auth.h"
#include "tb_store.h"

#define DEF_DRIVER "sqlite3"
#define DEF_PARAMS "/var/lib/track_batch/track.sqlite"
#define DEF_GRACE  86400

typedef struct {
    apr_pool_t *pool;
    const apr_dbd_driver_t *driver;
    apr_dbd_t *handle;
} admin;

static void usage(void)
{
    fputs(
"usage: track-batch-admin [-d DRIVER] [-p PARAMS] COMMAND ...\n"
"  -d DRIVER   apr_dbd driver, as DBDriver (default " DEF_DRIVER ",\n"
"              or $TRACK_BATCH_DBD_DRIVER)\n"
"  -p PARAMS   as DBDParams (default " DEF_PARAMS ",\n"
"              or $TRACK_BATCH_DBD_PARAMS)\n"
"commands:\n"
"  project create TOKEN [--key public|private]\n"
"        create a project; with --key, also a key allowed to set every\n"
"        customer property and add every event type (printed once)\n"
"  project list\n"
"  key create TOKEN public|private        a key without permissions\n"
"  key grant KEY_ID customers|events [NAME ...]\n"
"        allow setting these properties / adding these event types\n"
"        (no NAME: all of them)\n"
"  key revoke KEY_ID customers|events [NAME ...]   (no NAME: all grants)\n"
"  key rotate KEY_ID [--grace SECONDS]     new secret; the old one works\n"
"                                          for the grace period (86400)\n"
"  key disable KEY_ID | key enable KEY_ID\n"
"  key list [TOKEN]                        keys and permissions, no secrets\n",
          stderr);
    exit(2);
}

static void die(const char *fmt, const char *a, const char *b)
{
    fprintf(stderr, "track-batch-admin: ");
    fprintf(stderr, fmt, a ? a : "", b ? b : "");
    fputc('\n', stderr);
    exit(1);
}

/* [A-Za-z0-9] from the system's random source. */
static char *random_string(apr_pool_t *p, int n)
{
    static const char set[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
                              "abcdefghijklmnopqrstuvwxyz0123456789";
    unsigned char *raw = apr_palloc(p, n);
    char *s = apr_palloc(p, n + 1);
    int i;

    if (apr_generate_random_bytes(raw, n) != APR_SUCCESS) {
        die("no random bytes from the system%s%s", NULL, NULL);
    }
    for (i = 0; i < n; i++) {
        /* 248 = 4 * 62: values above would bias the first letters */
        while (raw[i] >= 248) {
            if (apr_generate_random_bytes(&raw[i], 1) != APR_SUCCESS) {
                die("no random bytes from the system%s%s", NULL, NULL);
            }
        }
        s[i] = set[raw[i] % 62];
    }
    s[n] = '\0';
    return s;
}

static const char *now_text(apr_pool_t *p, double offset)
{
    return apr_psprintf(p, "%.6f",
                        (double)apr_time_now() / APR_USEC_PER_SEC + offset);
}

/* Run one statement with bound parameters; returns rows changed. */
static int exec(admin *a, const char *sql, int nargs, const char **args)
{
    apr_dbd_prepared_t *st = NULL;     /* pgsql fills a non-NULL one in */
    int rv, nrows = 0;

    rv = apr_dbd_prepare(a->driver, a->pool, a->handle, sql, NULL, &st);
    if (!rv) {
        rv = apr_dbd_pquery(a->driver, a->pool, a->handle, &nrows, st,
                            nargs, args);
    }
    if (rv) {
        die("database: %s (%s)", apr_dbd_error(a->driver, a->handle, rv), sql);
    }
    return nrows;
}

static apr_dbd_results_t *select_rows(admin *a, const char *sql, int nargs,
                                      const char **args)
{
    apr_dbd_prepared_t *st = NULL;     /* pgsql fills a non-NULL one in */
    apr_dbd_results_t *res = NULL;
    int rv;

    rv = apr_dbd_prepare(a->driver, a->pool, a->handle, sql, NULL, &st);
    if (!rv) {
        rv = apr_dbd_pselect(a->driver, a->pool, a->handle, &res, st, 1,
                             nargs, args);
    }
    if (rv) {
        die("database: %s (%s)", apr_dbd_error(a->driver, a->handle, rv), sql);
    }
    return res;
}

static int count(admin *a, const char *sql, int nargs, const char **args)
{
    apr_dbd_results_t *res = select_rows(a, sql, nargs, args);
    apr_dbd_row_t *row = NULL;   /* pgsql reads it as the cursor */
    int n = 0;

    while (apr_dbd_get_row(a->driver, a->pool, res, &row, -1) == 0) {
        n++;
    }
    return n;
}

static void need_key(admin *a, const char *key_id)
{
    const char *args[] = { key_id };
    if (!count(a, "SELECT key_id FROM tb_keys WHERE key_id = %s", 1, args)) {
        die("no key '%s'%s", key_id, NULL);
    }
}

static void grant(admin *a, const char *key_id, const char *what,
                  int nnames, char **names)
{
    int i;

    if (strcmp(what, "customers") && strcmp(what, "events")) {
        usage();
    }
    need_key(a, key_id);
    for (i = 0; i < (nnames ? nnames : 1); i++) {
        const char *args[] = { key_id, what, nnames ? names[i] : "*" };
        const char *name = args[2];
        if (!*name || strlen(name) > 128) {
            die("names are 1 to 128 bytes: '%s'%s", name, NULL);
        }
        if (!count(a, "SELECT name FROM tb_key_permissions WHERE key_id = %s"
                      " AND what = %s AND name = %s", 3, args)) {
            exec(a, "INSERT INTO tb_key_permissions (key_id, what, name)"
                    " VALUES (%s, %s, %s)", 3, args);
        }
    }
}

/* Create a key; prints its credentials once. */
static const char *create_key(admin *a, const char *project, const char *kind)
{
    const char *key_id = random_string(a->pool, 20);
    const char *cred = random_string(a->pool, 40);
    char digest[TB_DIGEST_HEX + 1];
    const char *pargs[] = { project };
    int is_public = !strcmp(kind, "public");

    if (!is_public && strcmp(kind, "private")) {
        usage();
    }
    if (!count(a, "SELECT token FROM tb_projects WHERE token = %s", 1, pargs)) {
        die("no project '%s'%s", project, NULL);
    }
    tb_sha256_hex(cred, strlen(cred), digest);
    {
        const char *args[] = { key_id, project, kind,
                               is_public ? digest : NULL,
                               is_public ? NULL : digest,
                               now_text(a->pool, 0) };
        exec(a, "INSERT INTO tb_keys (key_id, project, kind, token_digest,"
                " secret_digest, created_at) VALUES (%s, %s, %s, %s, %s,"
                " CAST(%s AS DOUBLE PRECISION))", 6, args);
    }
    printf("project=%s\nkind=%s\nkey_id=%s\n%s=%s\n", project, kind, key_id,
           is_public ? "key" : "secret", cred);
    fprintf(stderr, "The %s is shown only now; it is stored as a digest.\n",
            is_public ? "key" : "secret");
    return key_id;
}

static int check_token(const char *t)
{
    const char *c;
    if (!*t || strlen(t) > 64) {
        return 0;
    }
    for (c = t; *c; c++) {
        if (!strchr("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                    "0123456789_-", *c)) {
            return 0;
        }
    }
    return 1;
}

static void list_keys(admin *a, const char *project)
{
    const char *args[] = { project };
    apr_dbd_results_t *res = select_rows(a, project
        ? "SELECT key_id, project, kind, disabled, old_until FROM tb_keys"
          " WHERE project = %s ORDER BY project, key_id"
        : "SELECT key_id, project, kind, disabled, old_until FROM tb_keys"
          " ORDER BY project, key_id", project ? 1 : 0, args);
    apr_dbd_row_t *row = NULL;   /* pgsql reads it as the cursor */

    printf("%-22s %-24s %-8s %-9s %s\n", "KEY_ID", "PROJECT", "KIND",
           "STATE", "PERMISSIONS");
    while (apr_dbd_get_row(a->driver, a->pool, res, &row, -1) == 0) {
        const char *id = apr_pstrdup(a->pool, apr_dbd_get_entry(a->driver, row, 0));
        const char *disabled = apr_dbd_get_entry(a->driver, row, 3);
        const char *until = apr_dbd_get_entry(a->driver, row, 4);
        const char *pargs[] = { id };
        apr_dbd_results_t *pres;
        apr_dbd_row_t *prow = NULL;
        const char *perms = "";
        const char *state = disabled && strcmp(disabled, "0") ? "disabled"
                                                              : "enabled";

        printf("%-22s %-24s %-8s %-9s ", id,
               apr_dbd_get_entry(a->driver, row, 1),
               apr_dbd_get_entry(a->driver, row, 2), state);
        pres = select_rows(a, "SELECT what, name FROM tb_key_permissions"
                              " WHERE key_id = %s ORDER BY what, name", 1, pargs);
        while (apr_dbd_get_row(a->driver, a->pool, pres, &prow, -1) == 0) {
            perms = apr_pstrcat(a->pool, perms, *perms ? " " : "",
                                apr_dbd_get_entry(a->driver, prow, 0), ":",
                                apr_dbd_get_entry(a->driver, prow, 1), NULL);
        }
        printf("%s%s\n", *perms ? perms : "(none)",
               until && strtod(until, NULL) * APR_USEC_PER_SEC > apr_time_now()
               ? " (previous secret still accepted)" : "");
    }
}

/* As root on an SQLite file, act as the owner of its directory: files
 * SQLite creates (-wal, -shm, the database itself) must stay writable by
 * the web server. */
static void become_db_owner(const char *driver, const char *params)
{
    struct stat st;
    char *dir, *slash;

    if (strcmp(driver, "sqlite3") || getuid() != 0) {
        return;
    }
    dir = strdup(params);
    slash = strrchr(dir, '/');
    if (slash) {
        *(slash == dir ? slash + 1 : slash) = '\0';
    }
    else {
        strcpy(dir, ".");
    }
    if (stat(dir, &st) == 0 && st.st_uid != 0) {
        if (setgroups(0, NULL) || setgid(st.st_gid) || setuid(st.st_uid)) {
            die("cannot become the owner of %s%s", dir, NULL);
        }
    }
    free(dir);
}

int main(int argc, char **argv)
{
    const char *driver = getenv("TRACK_BATCH_DBD_DRIVER");
    const char *params = getenv("TRACK_BATCH_DBD_PARAMS");
    admin a;
    tb_store *store;
    const char *err;
    int i = 1;

    apr_app_initialize(&argc, (const char *const **)&argv, NULL);
    atexit(apr_terminate);
    apr_pool_create(&a.pool, NULL);

    for (; i + 1 < argc && argv[i][0] == '-'; i += 2) {
        if (!strcmp(argv[i], "-d")) driver = argv[i + 1];
        else if (!strcmp(argv[i], "-p")) params = argv[i + 1];
        else usage();
    }
    if (i + 1 >= argc) {
        usage();
    }
    driver = driver ? driver : DEF_DRIVER;
    params = params ? params : DEF_PARAMS;
    become_db_owner(driver, params);

    apr_dbd_init(a.pool);
    if (apr_dbd_get_driver(a.pool, driver, &a.driver) != APR_SUCCESS) {
        die("no apr_dbd driver '%s' (install libaprutil1-dbd-%s)", driver,
            driver);
    }
    if (apr_dbd_open(a.driver, a.pool, params, &a.handle) != APR_SUCCESS) {
        die("cannot open the database '%s'%s", params, NULL);
    }
    /* the same setup as the module's: schema created when missing */
    err = tb_store_attach(a.pool, a.driver, a.handle, apr_time_from_sec(10),
                          &store);
    if (err) {
        die("%s%s", err, NULL);
    }

    argv += i;
    argc -= i;
    if (!strcmp(argv[0], "project") && !strcmp(argv[1], "create") && argc >= 3) {
        const char *args[] = { argv[2], now_text(a.pool, 0) };
        if (argc != 3 && !(argc == 5 && !strcmp(argv[3], "--key")
                           && (!strcmp(argv[4], "public")
                               || !strcmp(argv[4], "private")))) {
            usage();
        }
        if (!check_token(argv[2])) {
            die("a project token is 1-64 of [A-Za-z0-9_-]: '%s'%s", argv[2], NULL);
        }
        if (count(&a, "SELECT token FROM tb_projects WHERE token = %s", 1, args)) {
            die("project '%s' exists%s", argv[2], NULL);
        }
        exec(&a, "INSERT INTO tb_projects (token, created_at)"
                 " VALUES (%s, CAST(%s AS DOUBLE PRECISION))", 2, args);
        if (argc == 5 && !strcmp(argv[3], "--key")) {
            const char *id = create_key(&a, argv[2], argv[4]);
            grant(&a, id, "customers", 0, NULL);
            grant(&a, id, "events", 0, NULL);
        }
        else if (argc != 3) {
            usage();
        }
        else {
            printf("project=%s\n", argv[2]);
        }
    }
    else if (!strcmp(argv[0], "project") && !strcmp(argv[1], "list")) {
        apr_dbd_results_t *res = select_rows(&a, "SELECT token FROM tb_projects"
                                                 " ORDER BY token", 0, NULL);
        apr_dbd_row_t *row = NULL;   /* pgsql reads it as the cursor */
        while (apr_dbd_get_row(a.driver, a.pool, res, &row, -1) == 0) {
            printf("%s\n", apr_dbd_get_entry(a.driver, row, 0));
        }
    }
    else if (!strcmp(argv[0], "key") && !strcmp(argv[1], "create") && argc == 4) {
        create_key(&a, argv[2], argv[3]);
    }
    else if (!strcmp(argv[0], "key") && !strcmp(argv[1], "grant") && argc >= 4) {
        grant(&a, argv[2], argv[3], argc - 4, argv + 4);
    }
    else if (!strcmp(argv[0], "key") && !strcmp(argv[1], "revoke") && argc >= 4) {
        int k;
        if (strcmp(argv[3], "customers") && strcmp(argv[3], "events")) {
            usage();
        }
        need_key(&a, argv[2]);
        if (argc == 4) {
            const char *args[] = { argv[2], argv[3] };
            exec(&a, "DELETE FROM tb_key_permissions WHERE key_id = %s"
                     " AND what = %s", 2, args);
        }
        for (k = 4; k < argc; k++) {
            const char *args[] = { argv[2], argv[3], argv[k] };
            exec(&a, "DELETE FROM tb_key_permissions WHERE key_id = %s"
                     " AND what = %s AND name = %s", 3, args);
        }
    }
    else if (!strcmp(argv[0], "key") && !strcmp(argv[1], "rotate")
             && (argc == 3 || (argc == 5 && !strcmp(argv[3], "--grace")))) {
        const char *secret = random_string(a.pool, 40);
        char digest[TB_DIGEST_HEX + 1];
        char *end = NULL;
        long grace = argc == 5 ? strtol(argv[4], &end, 10) : DEF_GRACE;
        const char *args[3];
        const char *kargs[] = { argv[2] };

        if (argc == 5 && (end == argv[4] || *end || grace < 0)) {
            die("--grace takes a number of seconds: '%s'%s", argv[4], NULL);
        }
        if (!count(&a, "SELECT key_id FROM tb_keys WHERE key_id = %s"
                       " AND kind = 'private'", 1, kargs)) {
            die("no private key '%s'%s", argv[2], NULL);
        }
        tb_sha256_hex(secret, strlen(secret), digest);
        args[0] = digest;
        args[1] = now_text(a.pool, (double)(grace < 0 ? 0 : grace));
        args[2] = argv[2];
        exec(&a, "UPDATE tb_keys SET old_digest = secret_digest,"
                 " old_until = CAST(%s AS DOUBLE PRECISION),"
                 " secret_digest = %s WHERE key_id = %s", 3,
             (const char *[]){ args[1], args[0], args[2] });
        printf("key_id=%s\nsecret=%s\n", argv[2], secret);
        fprintf(stderr, "The old secret works for %ld more seconds.\n", grace);
    }
    else if (!strcmp(argv[0], "key") && (!strcmp(argv[1], "disable")
                                         || !strcmp(argv[1], "enable"))
             && argc == 3) {
        const char *args[] = { !strcmp(argv[1], "disable") ? "1" : "0", argv[2] };
        need_key(&a, argv[2]);
        exec(&a, "UPDATE tb_keys SET disabled = CAST(%s AS INTEGER)"
                 " WHERE key_id = %s", 2, args);
    }
    else if (!strcmp(argv[0], "key") && !strcmp(argv[1], "list")) {
        list_keys(&a, argc >= 3 ? argv[2] : NULL);
    }
    else {
        usage();
    }
    apr_dbd_close(a.driver, a.handle);
    return 0;
}
