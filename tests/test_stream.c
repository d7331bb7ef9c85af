/*
 * Streaming mode: a window of resident layers and slots the rest cycle
 * through gives logits bit-identical to the in-memory model (every window
 * shape: no pinned layer, some, all; untied llama and tied qwen2 with QKV
 * biases; prompt batches and single tokens), reads exactly the streamed
 * layers' spans per step, keeps the mapped layer pages untouched, restarts
 * its ring when a step leaves the layer cycle midway, and under a budget
 * smaller than the weights (--stream-auto) runs inside that budget.
 */
#include "test.h"

#include "model/model.h"
#include "pocketllm.h"

#define N_TOK 20

static const pl_token k_toks[N_TOK] = {1, 512, 278, 6763, 310, 278, 3186, 29892, 1554, 322,
                                       278, 8680, 29889, 13, 29906, 1126, 1855, 338, 1449, 29879};

static double mib(int64_t n) { return (double)n / 1048576.0; }

/* Logits of a prompt batch of 12, then 8 single tokens: 20 rows. */
static float *run(pl_model *m, uint64_t window) {
    pl_ctx_params cp = pl_ctx_default_params();
    cp.n_ctx = 64;
    cp.n_threads = 2;
    cp.logits_all = 1;
    cp.stream_window_bytes = window;
    pl_ctx *c = NULL;
    if (pl_ctx_new(m, &cp, &c)) return NULL;
    const int nv = pl_model_n_vocab(m);
    float *out = malloc(sizeof(float) * (size_t)nv * N_TOK);
    int ok = out && pl_ctx_decode(c, k_toks, 12) == PL_OK;
    for (int i = 0; ok && i < 12; i++) ok = pl_ctx_logits(c, i) && memcpy(out + (size_t)i * nv, pl_ctx_logits(c, i), 4 * (size_t)nv);
    for (int i = 12; ok && i < N_TOK; i++) {
        ok = pl_ctx_decode(c, k_toks + i, 1) == PL_OK && pl_ctx_logits(c, -1);
        if (ok) memcpy(out + (size_t)i * nv, pl_ctx_logits(c, -1), 4 * (size_t)nv);
    }
    pl_ctx_free(c);
    if (!ok) {
        free(out);
        return NULL;
    }
    return out;
}

static void check_model(const char *rel) {
    const char *path = shared_path(rel);
    if (!path) SKIP("%s not in ../shared", rel);
    pl_model *m = NULL;
    /* a streamed model keeps the file's layout (only mapped models repack):
     * the in-memory reference does too, so the kernels are the same */
    pl_model_params rp = pl_model_default_params();
    rp.no_repack = 1;
    REQUIRE(pl_model_load(path, &rp, &m) == PL_OK, "%s", pl_last_error());
    const int nv = pl_model_n_vocab(m);
    float *ref = run(m, 0);
    REQUIRE(ref, "in-memory run: %s", pl_last_error());
    const uint64_t slot = m->pm.slot_bytes;
    const int L = m->hp.n_layer;
    pl_model_free(m);
    pl_model_params mp = pl_model_default_params();
    mp.stream = PL_STREAM_ON;
    REQUIRE(pl_model_load(path, &mp, &m) == PL_OK, "%s", pl_last_error());
    /* 2 slots and nothing pinned; 3 pinned; all but three; everything */
    const int pinned[] = {0, 3, L - 3, L};
    for (size_t k = 0; k < sizeof pinned / sizeof pinned[0]; k++) {
        const int slots = pinned[k] == L ? 0 : 2;
        const uint64_t window = (uint64_t)(pinned[k] + slots) * slot;
        pl_plan p;
        pl_ctx_params cp = pl_ctx_default_params();
        cp.n_ctx = 64;
        cp.n_threads = 2;
        cp.logits_all = 1;
        cp.stream_window_bytes = window;
        REQUIRE(pl_plan_model(m, &cp, &p) == PL_OK, "%s", pl_last_error());
        CHECK(p.stream && p.n_layer_resident == pinned[k] && p.n_stream_slots == slots, "window of %d+%d: plan %d+%d",
              pinned[k], slots, p.n_layer_resident, p.n_stream_slots);
        pl_memory_stats s0, s1, d;
        pl_memory_snapshot(&s0);
        float *got = run(m, window);
        pl_memory_snapshot(&s1);
        pl_memory_delta(&s0, &s1, &d);
        REQUIRE(got, "streaming run (%d pinned): %s", pinned[k], pl_last_error());
        CHECK(memcmp(got, ref, sizeof(float) * (size_t)nv * N_TOK) == 0, "%s, %d pinned + %d slots: logits differ", rel,
              pinned[k], slots);
        free(got);
        /* 9 forward steps (a batch of 12, then 8 singles), each reading every
         * streamed layer's span once, plus the pinned layers once */
        int64_t want = 0;
        for (int il = 0; il < L; il++) {
            const int64_t span = (int64_t)(m->pm.layers[il].end - m->pm.layers[il].start);
            want += plan_layer_pinned(il, L, pinned[k]) ? span : 9 * span;
        }
        /* the loader may have read ahead into the next step's first slots */
        CHECK(d.stream_read_bytes >= want && d.stream_read_bytes <= want + 2 * (int64_t)slot,
              "%d pinned: read %lld bytes, expected %lld (+ read-ahead)", pinned[k], (long long)d.stream_read_bytes,
              (long long)want);
    }
    free(ref);
    pl_model_free(m);
}

static void test_stream_llama_untied(void) { check_model("models/kjv-llama-q8_0.gguf"); }
static void test_stream_qwen2_tied_bias(void) { check_model("models/kjv-qwen2-q4_k_m.gguf"); }

/* The ring, driven directly: any layer order restarts it, and each lent
 * layer's bytes are the file's. */
static void test_ring_restarts(void) {
    const char *path = shared_path("models/kjv-llama-q4_0.gguf");
    if (!path) SKIP("kjv-llama-q4_0.gguf not in ../shared");
    pl_model_params mp = pl_model_default_params();
    mp.stream = PL_STREAM_ON;
    pl_model *m = NULL;
    REQUIRE(pl_model_load(path, &mp, &m) == PL_OK, "%s", pl_last_error());
    model_stream *s = NULL;
    mem_account acct = {.name = "test"};
    REQUIRE(stream_new(m, 2, 2, &acct, &s) == PL_OK, "%s", pl_last_error());
    const int L = m->hp.n_layer;
    const int seq[] = {0, 1, 2, 5, 6, 7, 0, 3, 4, 5, 6, 7, 0, 1, 2, 3, 4, 5, 6, 7, 7, 2};
    for (size_t i = 0; i < sizeof seq / sizeof seq[0]; i++) {
        const int il = seq[i] % L;
        const model_layer *l = NULL;
        REQUIRE(stream_take(s, il, &l) == PL_OK, "take %d: %s", il, pl_last_error());
        const model_layer *o = &m->layers[il];
        const size_t wb = quant_row_size(o->w_down.type, o->w_down.n_in) * (size_t)o->w_down.n_out;
        CHECK(memcmp(l->w_down.data, o->w_down.data, wb) == 0 && memcmp(l->ffn_norm, o->ffn_norm, 4 * (size_t)m->hp.n_embd) == 0,
              "step %zu: layer %d's bytes differ from the file", i, il);
        CHECK(l->wq.data != o->wq.data, "layer %d is lent from the window, not the mapping", il);
        stream_give(s, il);
    }
    stream_free(s, &acct);
    CHECK(atomic_load(&acct.used) == 0, "window returned");
    pl_model_free(m);
}

/* A budget below the weights: --stream-auto picks a window that fits, the
 * run stays inside the budget, the mapped layers are never touched. */
static void test_auto_under_budget(void) {
    const char *path = shared_path("models/kjv-qwen2-f16.gguf");
    if (!path) SKIP("kjv-qwen2-f16.gguf not in ../shared");
    pl_ctx_params cp = pl_ctx_default_params();
    cp.n_ctx = 128;
    cp.n_threads = 2;
    pl_model_params mp = pl_model_default_params();
    pl_plan full, p;
    REQUIRE(pl_plan_file(path, &mp, &cp, &full) == PL_OK, "%s", pl_last_error());
    /* all of it but half the layers */
    gguf_file *g;
    plan_model pm;
    REQUIRE(gguf_open(path, &g) == PL_OK && plan_describe(g, &pm) == PL_OK, "%s", pl_last_error());
    mp.budget_bytes = (uint64_t)full.total_bytes - pm.layers_bytes / 2;
    plan_model_clear(&pm);
    gguf_close(g);
    REQUIRE(pl_plan_file(path, &mp, &cp, &p) == PL_OK, "%s", pl_last_error());
    CHECK(p.fit != PL_FIT_YES, "without streaming it must not fit");
    pl_model *m = NULL;
    CHECK(pl_model_load(path, &mp, &m) == PL_ERR_BUDGET || (m && pl_ctx_new(m, &cp, NULL) != PL_OK), "refused");
    pl_model_free(m);
    m = NULL;
    mp.stream = PL_STREAM_AUTO;
    REQUIRE(pl_plan_file(path, &mp, &cp, &p) == PL_OK, "%s", pl_last_error());
    CHECK(p.fit == PL_FIT_YES && p.stream && p.total_bytes <= (int64_t)mp.budget_bytes,
          "auto: fit %d stream %d total %.1f budget %.1f MiB", p.fit, p.stream, mib(p.total_bytes), mib((int64_t)mp.budget_bytes));
    printf("   budget %.1f MiB: %d of %d layers resident, %.1f MiB read per token\n", mib((int64_t)mp.budget_bytes),
           p.n_layer_resident, p.n_layer, mib(p.stream_bytes_per_token));
    pl_memory_stats s0, s1;
    pl_memory_snapshot(&s0);
    REQUIRE(pl_model_load(path, &mp, &m) == PL_OK, "%s", pl_last_error());
    pl_ctx *c = NULL;
    REQUIRE(pl_ctx_new(m, &cp, &c) == PL_OK, "%s", pl_last_error());
    pl_complete_params gp = pl_complete_default_params();
    gp.prompt = "In the beginning";
    gp.n_predict = 24;
    gp.sampling.temp = 0;
    REQUIRE(pl_complete(c, &gp, NULL, NULL, NULL) == PL_OK, "%s", pl_last_error());
    pl_memory_snapshot(&s1);
    /* resident now: the window, KV, scratch, tokenizer and the mapped non-layer
     * weights; the mapped layer pages were never faulted in */
    CHECK(s1.weights_resident - s0.weights_resident <= p.weights_resident + (1 << 20),
          "weights resident %.1f MiB, planned %.1f", mib(s1.weights_resident - s0.weights_resident), mib(p.weights_resident));
    CHECK(m->acct.peak <= mp.budget_bytes, "accounted peak %.1f MiB over the budget", mib((int64_t)m->acct.peak));
    pl_ctx_free(c);
    pl_model_free(m);
}

int main(void) {
    RUN(test_stream_llama_untied);
    RUN(test_stream_qwen2_tied_bias);
    RUN(test_ring_restarts);
    RUN(test_auto_under_budget);
    TEST_END();
}
