/*
 * `pocketllm serve`: load a model, open the chat store and serve the OpenAI-
 * compatible API and the chat page (tools/serve/). Binds to 127.0.0.1 unless
 * told otherwise. Prints "listening on http://HOST:PORT" on stdout once it
 * accepts connections (with --port 0 the port is the one the system chose),
 * and shuts down cleanly on SIGINT/SIGTERM.
 */
#include "cli.h"
#include "serve/serve.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void serve_usage(FILE *fp) {
    fprintf(fp,
            "usage: pocketllm serve -m FILE [options]\n"
            "  -m, --model FILE       GGUF model\n"
            "      --host ADDR        address to bind (default 127.0.0.1: this machine only)\n"
            "      --port N           port (default 8080; 0 = any free port)\n"
            "      --api-key KEY      require \"Authorization: Bearer KEY\" on the API (or env POCKETLLM_API_KEY)\n"
            "      --alias NAME       model id in the API (default: the file name without .gguf)\n"
            "      --db FILE          chat store, SQLite (default pocketllm-chats.db)\n"
            "      --kv-dir DIR       keep each stored chat's KV cache in DIR, so reopening it is instant\n"
            "  -c, --ctx N            context size per slot (default: model's, at most 4096)\n"
            "      --parallel N       requests generated at once, one context each (default 1)\n"
            "      --queue N          requests that may wait for a slot (default 64; more get 503)\n"
            "  -t, --threads N        threads in all (default: all cores)\n"
            "      --kv-type T        KV cache type of every slot: f16 (default) or q8_0\n"
            "  -n, --n-predict N      reply length when a request gives none (default 512)\n"
            "      --template NAME    chat template (default: from the model; see `pocketllm chat --help`)\n"
            "      --overflow P       a conversation longer than the context: drop-oldest (default), refuse,\n"
            "                         or shift (drop-oldest keeping the cache of the turns that stay)\n"
            "      --max-body BYTES   largest request body (default 1048576)\n"
            "      --mem-budget MIB   refuse to start when the memory plan exceeds this\n");
}

/* "dir/name.gguf" -> "name" */
static void serve_model_id(const char *path, char *out, size_t cap) {
    const char *b = strrchr(path, '/');
    b = b ? b + 1 : path;
    size_t n = strlen(b);
    if (n > 5 && !strcmp(b + n - 5, ".gguf")) n -= 5;
    if (n >= cap) n = cap - 1;
    memcpy(out, b, n);
    out[n] = 0;
}

int cmd_serve(int argc, char **argv) {
    serve_engine_params ep = {.n_slots = 1, .max_queue = 64, .overflow = PL_CHAT_OVERFLOW_DROP_OLDEST};
    serve_http_params hp = {.host = "127.0.0.1", .port = 8080, .max_body = 1 << 20, .default_n_predict = 512};
    const char *db_path = "pocketllm-chats.db", *alias = NULL;
    hp.api_key = getenv("POCKETLLM_API_KEY");
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
#define ARG(s, l) ((!strcmp(a, s) || !strcmp(a, l)) && v && ++i)
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            serve_usage(stdout);
            return 0;
        } else if (ARG("-m", "--model")) ep.model_path = v;
        else if (ARG("--host", "--host")) hp.host = v;
        else if (ARG("--port", "--port")) hp.port = atoi(v);
        else if (ARG("--api-key", "--api-key")) hp.api_key = v;
        else if (ARG("--alias", "--alias")) alias = v;
        else if (ARG("--db", "--db")) db_path = v;
        else if (ARG("--kv-dir", "--kv-dir")) ep.kv_dir = v;
        else if (ARG("-c", "--ctx")) ep.n_ctx = atoi(v);
        else if (ARG("--parallel", "--parallel")) ep.n_slots = atoi(v);
        else if (ARG("--queue", "--queue")) ep.max_queue = atoi(v);
        else if (ARG("-t", "--threads")) ep.n_threads = atoi(v);
        else if (ARG("--kv-type", "--kv-type")) {
            if (cli_kv_type(a, v, &ep.kv_type)) return 2;
        }
        else if (ARG("-n", "--n-predict")) hp.default_n_predict = atoi(v);
        else if (ARG("--template", "--template")) ep.template_name = v;
        else if (ARG("--max-body", "--max-body")) hp.max_body = (size_t)strtoull(v, NULL, 10);
        else if (ARG("--mem-budget", "--mem-budget")) ep.mem_budget = strtoull(v, NULL, 10) << 20;
        else if (ARG("--overflow", "--overflow")) {
            if (!strcmp(v, "refuse")) ep.overflow = PL_CHAT_OVERFLOW_REFUSE;
            else if (!strcmp(v, "drop-oldest")) ep.overflow = PL_CHAT_OVERFLOW_DROP_OLDEST;
            else if (!strcmp(v, "shift")) ep.overflow = PL_CHAT_OVERFLOW_SHIFT;
            else {
                fprintf(stderr, "pocketllm serve: --overflow is refuse, drop-oldest or shift, not '%s'\n", v);
                return 2;
            }
        } else {
            fprintf(stderr, "pocketllm serve: unknown or incomplete option '%s'\n", a);
            serve_usage(stderr);
            return 2;
        }
#undef ARG
    }
    if (!ep.model_path) {
        fprintf(stderr, "pocketllm serve: -m FILE is required\n");
        serve_usage(stderr);
        return 2;
    }
    if (hp.api_key && !hp.api_key[0]) hp.api_key = NULL;
    if (hp.default_n_predict < 0 || hp.max_body < 64 || ep.n_ctx < 0) {
        fprintf(stderr, "pocketllm serve: bad --n-predict, --max-body or --ctx\n");
        return 2;
    }
    char model_id[256];
    if (alias) snprintf(model_id, sizeof model_id, "%s", alias);
    else serve_model_id(ep.model_path, model_id, sizeof model_id);
    hp.model_id = model_id;

    /* Signals go to sigwait below: block them before any thread starts. */
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);

    int rc = 1;
    store *st = NULL;
    serve_engine *e = NULL;
    serve_http *h = NULL;
    if (store_open(db_path, &st)) {
        cli_fail("chat store");
        goto out;
    }
    if (serve_engine_new(&ep, st, &e)) {
        cli_fail("serve");
        goto out;
    }
    serve_memory mem;
    serve_engine_memory(e, &mem);
    const pl_model *m = serve_engine_model(e);
    fprintf(stderr,
            "pocketllm serve: %s (%s), template %s, %d slot(s) of %d tokens; memory plan %.1f MiB "
            "(model %.1f + contexts %.1f + overhead %.1f)\n",
            model_id, pl_model_arch(m), serve_engine_template(e), mem.slots, serve_engine_n_ctx(e),
            mem.plan_bytes / 1048576.0, mem.model_bytes / 1048576.0, mem.ctx_bytes / 1048576.0,
            mem.overhead_bytes / 1048576.0);
    if (serve_http_start(&hp, e, st, &h)) {
        cli_fail("serve");
        goto out;
    }
    const int v6 = strchr(hp.host, ':') != NULL;
    printf("pocketllm serve: listening on http://%s%s%s:%d\n", v6 ? "[" : "", hp.host, v6 ? "]" : "",
           serve_http_port(h));
    fflush(stdout);
    int sig = 0;
    sigwait(&sigs, &sig);
    fprintf(stderr, "pocketllm serve: %s, shutting down\n", sig == SIGINT ? "interrupted" : "terminated");
    rc = 0;
out:
    serve_engine_stop(e); /* wakes every handler waiting on a job */
    serve_http_stop(h);
    serve_engine_free(e);
    store_close(st);
    return rc;
}
