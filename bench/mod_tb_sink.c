/* mod_tb_sink: the benchmark's ceiling handler H (bench/run only).
 *
 *   <Location /sink/b50>
 *       SetHandler tb-sink
 *       TbSinkAnswer /path/to/answer.json
 *   </Location>
 *
 * Reads the request body with the same brigade loop as mod_track_batch
 * (64 KB reads, blocking) and drops it, then answers 200 with the bytes
 * of the answer file (read once at startup), Content-Type
 * application/json and Cache-Control no-store, exactly as the module
 * sends its answers.  No parsing, no database: what is left is httpd.
 */

#include "apr_strings.h"
#include "apr_file_io.h"

#include "httpd.h"
#include "http_config.h"
#include "http_protocol.h"
#include "http_request.h"

module AP_MODULE_DECLARE_DATA tb_sink_module;

typedef struct {
    const char *answer;
    apr_size_t len;
} sink_conf;

static void *sink_create(apr_pool_t *p, char *dir)
{
    return apr_pcalloc(p, sizeof(sink_conf));
}

static const char *sink_set_answer(cmd_parms *cmd, void *dconf,
                                   const char *path)
{
    sink_conf *c = dconf;
    apr_file_t *f;
    apr_finfo_t fi;
    char *buf;
    apr_size_t n;

    if (apr_file_open(&f, path, APR_READ, 0, cmd->pool) != APR_SUCCESS
        || apr_file_info_get(&fi, APR_FINFO_SIZE, f) != APR_SUCCESS) {
        return apr_psprintf(cmd->pool, "TbSinkAnswer: cannot read %s", path);
    }
    n = (apr_size_t)fi.size;
    buf = apr_palloc(cmd->pool, n + 1);
    if (apr_file_read_full(f, buf, n, &n) != APR_SUCCESS) {
        return apr_psprintf(cmd->pool, "TbSinkAnswer: cannot read %s", path);
    }
    apr_file_close(f);
    buf[n] = '\0';
    c->answer = buf;
    c->len = n;
    return NULL;
}

static const command_rec sink_cmds[] = {
    AP_INIT_TAKE1("TbSinkAnswer", sink_set_answer, NULL, ACCESS_CONF,
                  "file whose bytes are the answer"),
    { NULL }
};

static int sink_handler(request_rec *r)
{
    sink_conf *c;
    apr_bucket_brigade *bb;
    int seen_eos = 0;

    if (!r->handler || strcmp(r->handler, "tb-sink")) {
        return DECLINED;
    }
    c = ap_get_module_config(r->per_dir_config, &tb_sink_module);

    bb = apr_brigade_create(r->pool, r->connection->bucket_alloc);
    do {
        apr_bucket *b;
        apr_status_t rv = ap_get_brigade(r->input_filters, bb,
                                         AP_MODE_READBYTES, APR_BLOCK_READ,
                                         65536);
        if (rv != APR_SUCCESS) {
            return ap_map_http_request_error(rv, HTTP_BAD_REQUEST);
        }
        for (b = APR_BRIGADE_FIRST(bb); b != APR_BRIGADE_SENTINEL(bb);
             b = APR_BUCKET_NEXT(b)) {
            const char *data;
            apr_size_t n;

            if (APR_BUCKET_IS_EOS(b)) {
                seen_eos = 1;
                break;
            }
            if (APR_BUCKET_IS_METADATA(b)) {
                continue;
            }
            if (apr_bucket_read(b, &data, &n, APR_BLOCK_READ) != APR_SUCCESS) {
                return HTTP_BAD_REQUEST;
            }
        }
        apr_brigade_cleanup(bb);
    } while (!seen_eos);
    apr_brigade_destroy(bb);

    ap_set_content_type(r, "application/json");
    apr_table_setn(r->headers_out, "Cache-Control", "no-store");
    ap_set_content_length(r, c->len);
    if (!r->header_only && c->len) {
        ap_rwrite(c->answer, (int)c->len, r);
    }
    return OK;
}

static void sink_hooks(apr_pool_t *p)
{
    ap_hook_handler(sink_handler, NULL, NULL, APR_HOOK_MIDDLE);
}

AP_DECLARE_MODULE(tb_sink) = {
    STANDARD20_MODULE_STUFF,
    sink_create, NULL, NULL, NULL,
    sink_cmds,
    sink_hooks,
    AP_MODULE_FLAG_NONE
};
