/*
 * The public API's contract: errors are statuses with messages (missing file,
 * bad arguments), streaming completion calls back once per token, a nonzero
 * callback return stops it, pl_ctx_cancel from another thread stops it with
 * PL_ERR_CANCELLED, greedy completion equals argmax decoding by hand, and the
 * same seed reproduces the same tokens. Uses ../shared/models/stories260K.gguf.
 */
#include "test.h"

#include "pocketllm.h"

#include <pthread.h>
#include <unistd.h>

static const char *g_model_path;

typedef struct collect {
    pl_token toks[512];
    int n;
    int stop_after;
    pl_ctx *cancel_ctx;
} collect;

static int on_tok(void *user, pl_token tok, const char *text, size_t len) {
    (void)text;
    (void)len;
    collect *c = user;
    if (c->n < 512) c->toks[c->n++] = tok;
    return c->stop_after && c->n >= c->stop_after;
}

static void test_missing_file_is_an_error(void) {
    pl_model *m = (pl_model *)0x1;
    pl_status st = pl_model_load("/nonexistent/model.gguf", NULL, &m);
    CHECK(st == PL_ERR_IO, "status %s", pl_status_name(st));
    CHECK(m == NULL, "out cleared");
    CHECK(strstr(pl_last_error(), "/nonexistent/model.gguf") != NULL, "message names the file: %s", pl_last_error());
    CHECK(pl_model_load(NULL, NULL, &m) == PL_ERR_INVALID_ARG, "NULL path");
    pl_model_free(NULL);
    pl_ctx_free(NULL);
    pl_sampler_free(NULL);
}

static int load(pl_model **m, pl_ctx **ctx, int n_ctx) {
    if (pl_model_load(g_model_path, NULL, m) != PL_OK) return 0;
    pl_ctx_params cp = pl_ctx_default_params();
    cp.n_ctx = n_ctx;
    cp.n_threads = 2;
    return pl_ctx_new(*m, &cp, ctx) == PL_OK;
}

static void test_greedy_matches_manual_argmax(void) {
    if (!g_model_path) SKIP("stories260K.gguf not in ../shared");
    pl_model *m = NULL;
    pl_ctx *ctx = NULL;
    REQUIRE(load(&m, &ctx, 128), "load: %s", pl_last_error());
    pl_complete_params p = pl_complete_default_params();
    pl_token bos = pl_model_bos(m);
    p.prompt_tokens = &bos;
    p.n_prompt_tokens = 1;
    p.n_predict = 20;
    p.ignore_eos = 1;
    p.sampling.temp = 0;
    collect c = {0};
    pl_timings tm;
    CHECK(pl_complete(ctx, &p, on_tok, &c, &tm) == PL_OK, "complete: %s", pl_last_error());
    CHECK(c.n == 20 && tm.n_gen == 20 && tm.n_prompt == 1, "20 callbacks (%d), timings %d/%d", c.n, tm.n_gen,
          tm.n_prompt);
    /* by hand */
    pl_ctx_truncate(ctx, 0);
    pl_token t = bos;
    const int V = pl_model_n_vocab(m);
    for (int i = 0; i < c.n; i++) {
        REQUIRE(pl_ctx_decode(ctx, &t, 1) == PL_OK, "decode: %s", pl_last_error());
        const float *lg = pl_ctx_logits(ctx, -1);
        int b = 0;
        for (int j = 1; j < V; j++)
            if (lg[j] > lg[b]) b = j;
        CHECK(b == c.toks[i], "token %d: manual %d vs complete %d", i, b, c.toks[i]);
        t = b;
    }
    pl_ctx_free(ctx);
    pl_model_free(m);
}

static void test_callback_stop_and_seed(void) {
    if (!g_model_path) SKIP("stories260K.gguf not in ../shared");
    pl_model *m = NULL;
    pl_ctx *ctx = NULL;
    REQUIRE(load(&m, &ctx, 128), "load: %s", pl_last_error());
    pl_complete_params p = pl_complete_default_params();
    p.prompt = "Once upon a time";
    p.n_predict = 50;
    p.ignore_eos = 1;
    p.sampling.temp = 1.0f;
    p.sampling.seed = 77;
    collect a = {.stop_after = 7}, b = {0}, c2 = {0};
    CHECK(pl_complete(ctx, &p, on_tok, &a, NULL) == PL_OK, "complete: %s", pl_last_error());
    CHECK(a.n == 7, "stopped by callback after 7 (%d)", a.n);
    pl_ctx_truncate(ctx, 0);
    CHECK(pl_complete(ctx, &p, on_tok, &b, NULL) == PL_OK, "complete");
    pl_ctx_truncate(ctx, 0);
    CHECK(pl_complete(ctx, &p, on_tok, &c2, NULL) == PL_OK, "complete");
    CHECK(b.n == 50 && c2.n == 50, "full runs %d %d", b.n, c2.n);
    CHECK(!memcmp(b.toks, c2.toks, sizeof(pl_token) * 50), "same seed, same tokens");
    CHECK(!memcmp(a.toks, b.toks, sizeof(pl_token) * 7), "prefix equal to the stopped run");
    pl_ctx_free(ctx);
    pl_model_free(m);
}

static void *cancel_later(void *arg) {
    usleep(20000);
    pl_ctx_cancel(arg);
    return NULL;
}

static void test_cancel_from_another_thread(void) {
    if (!g_model_path) SKIP("stories260K.gguf not in ../shared");
    pl_model *m = NULL;
    pl_ctx *ctx = NULL;
    REQUIRE(load(&m, &ctx, 100000), "load: %s", pl_last_error());
    pl_complete_params p = pl_complete_default_params();
    p.prompt = "Once";
    p.n_predict = -1; /* until the context is full: far longer than 20 ms */
    p.ignore_eos = 1;
    collect c = {0};
    pthread_t th;
    pthread_create(&th, NULL, cancel_later, ctx);
    pl_status st = pl_complete(ctx, &p, on_tok, &c, NULL);
    pthread_join(th, NULL);
    CHECK(st == PL_ERR_CANCELLED, "status %s after %d tokens", pl_status_name(st), c.n);
    CHECK(pl_ctx_pos(ctx) < 100000, "stopped early at %d", pl_ctx_pos(ctx));
    pl_ctx_free(ctx);
    pl_model_free(m);
}

static void test_tokenize_contract(void) {
    if (!g_model_path) SKIP("stories260K.gguf not in ../shared");
    pl_model *m = NULL;
    pl_model_params mp = pl_model_default_params();
    mp.vocab_only = 1;
    REQUIRE(pl_model_load(g_model_path, &mp, &m) == PL_OK, "load: %s", pl_last_error());
    pl_token toks[4];
    int n = 0;
    CHECK(pl_tokenize(m, "hello world, how are you", 24, 1, 0, toks, 4, &n) == PL_ERR_INVALID_ARG, "too small");
    CHECK(n > 4, "says how many are needed (%d)", n);
    pl_ctx *ctx = NULL;
    CHECK(pl_ctx_new(m, NULL, &ctx) == PL_ERR_INVALID_ARG, "no context on a vocab-only model");
    pl_model_free(m);
}

int main(void) {
    g_model_path = shared_path("models/stories260K.gguf");
    RUN(test_missing_file_is_an_error);
    RUN(test_greedy_matches_manual_argmax);
    RUN(test_callback_stop_and_seed);
    RUN(test_cancel_from_another_thread);
    RUN(test_tokenize_contract);
    TEST_END();
}
