/*
 * Whole-model training tests. The inference forward pass (pl_ctx) is the
 * spec: the training forward must give its logits for the shared models
 * (stories260K: llama, GQA; kjv-qwen2-f16: biases, tied embeddings, NEOX
 * rope) and for random qwen3 models (per-head norms). Gradients of the whole
 * model (full, LoRA, checkpointed) are checked against directional finite
 * differences of the loss; checkpoints are read back by pl_model_load; and
 * fine-tuning a shared model on ../shared/text/kjv-train.txt must lower its
 * loss on kjv-val.txt.
 */
#include "test.h"
#include "train/train.h"

#include <math.h>
#include <unistd.h>

static uint64_t g_rng = 777;

/* ------------------------------------------------------------ random models */

typedef struct rnd_cfg {
    const char *arch;
    int V, C, L, H, G, F;
    bool tied;
} rnd_cfg;

static float *rnd_floats(int64_t n, float mean, float std) {
    float *x = malloc(sizeof(float) * (size_t)n);
    for (int64_t i = 0; i < n; i++) x[i] = mean + std * train_rng_normal(&g_rng);
    return x;
}

/* A random F32 model of the given architecture with a placeholder vocabulary. */
static int write_random_model(const char *path, const rnd_cfg *c) {
    gguf_writer *w = gguf_writer_new();
    char key[128];
    const int D = c->C / c->H, HD = c->H * D, GD = c->G * D;
    const char **toks = malloc(sizeof(char *) * c->V);
    char(*names)[16] = malloc(16 * (size_t)c->V);
    int32_t *types = malloc(sizeof(int32_t) * c->V);
    for (int i = 0; i < c->V; i++) {
        snprintf(names[i], 16, i == 0 ? "<unk>" : i == 1 ? "<s>" : i == 2 ? "</s>" : "t%d", i);
        toks[i] = names[i];
        types[i] = i == 0 ? 2 : i < 3 ? 3 : 1;
    }
    gguf_writer_set_str(w, "general.architecture", c->arch);
#define KEY(s) (snprintf(key, sizeof key, "%s.%s", c->arch, s), key)
    gguf_writer_set_u32(w, KEY("context_length"), 256);
    gguf_writer_set_u32(w, KEY("embedding_length"), (uint32_t)c->C);
    gguf_writer_set_u32(w, KEY("block_count"), (uint32_t)c->L);
    gguf_writer_set_u32(w, KEY("feed_forward_length"), (uint32_t)c->F);
    gguf_writer_set_u32(w, KEY("attention.head_count"), (uint32_t)c->H);
    gguf_writer_set_u32(w, KEY("attention.head_count_kv"), (uint32_t)c->G);
    gguf_writer_set_f32(w, KEY("attention.layer_norm_rms_epsilon"), 1e-6f);
#undef KEY
    gguf_writer_set_str(w, "tokenizer.ggml.model", "llama");
    gguf_writer_set_arr(w, "tokenizer.ggml.tokens", GGUF_TYPE_STRING, toks, (uint64_t)c->V);
    gguf_writer_set_arr(w, "tokenizer.ggml.token_type", GGUF_TYPE_INT32, types, (uint64_t)c->V);
    gguf_writer_set_u32(w, "tokenizer.ggml.bos_token_id", 1);
    gguf_writer_set_u32(w, "tokenizer.ggml.eos_token_id", 2);
    float *keep[256];
    int nk = 0;
#define T2(name, ne0, ne1, mean, std)                                                     \
    do {                                                                                  \
        int64_t ne[2] = {ne0, ne1};                                                       \
        keep[nk] = rnd_floats((int64_t)(ne0) * (ne1), mean, std);                          \
        gguf_writer_add_tensor(w, name, QT_F32, (ne1) > 1 ? 2 : 1, ne, keep[nk]);          \
        nk++;                                                                             \
    } while (0)
    T2("token_embd.weight", c->C, c->V, 0, 1.0f);
    T2("output_norm.weight", c->C, 1, 1, 0.1f);
    if (!c->tied) T2("output.weight", c->C, c->V, 0, 0.3f);
    const bool bias = !strcmp(c->arch, "qwen2"), qkn = !strcmp(c->arch, "qwen3");
    for (int l = 0; l < c->L; l++) {
        char nm[64];
#define N(s) (snprintf(nm, sizeof nm, "blk.%d.%s", l, s), nm)
        T2(N("attn_norm.weight"), c->C, 1, 1, 0.1f);
        T2(N("attn_q.weight"), c->C, HD, 0, 0.3f);
        T2(N("attn_k.weight"), c->C, GD, 0, 0.3f);
        T2(N("attn_v.weight"), c->C, GD, 0, 0.3f);
        if (bias) {
            T2(N("attn_q.bias"), HD, 1, 0, 0.3f);
            T2(N("attn_k.bias"), GD, 1, 0, 0.3f);
            T2(N("attn_v.bias"), GD, 1, 0, 0.3f);
        }
        if (qkn) {
            T2(N("attn_q_norm.weight"), D, 1, 1, 0.1f);
            T2(N("attn_k_norm.weight"), D, 1, 1, 0.1f);
        }
        T2(N("attn_output.weight"), HD, c->C, 0, 0.3f);
        T2(N("ffn_norm.weight"), c->C, 1, 1, 0.1f);
        T2(N("ffn_gate.weight"), c->C, c->F, 0, 0.3f);
        T2(N("ffn_up.weight"), c->C, c->F, 0, 0.3f);
        T2(N("ffn_down.weight"), c->F, c->C, 0, 0.3f);
#undef N
    }
#undef T2
    pl_status st = gguf_writer_write_file(w, path);
    for (int i = 0; i < nk; i++) free(keep[i]);
    gguf_writer_free(w);
    free(toks), free(names), free(types);
    return st == PL_OK;
}

static const char *tmp_path(const char *name) {
    static char buf[4][256];
    static int slot;
    char *b = buf[slot++ & 3];
    snprintf(b, sizeof buf[0], "/tmp/pl_test_train_%d_%s", (int)getpid(), name);
    return b;
}

/* ------------------------------------------------------------ forward == inference */

/* Max |train logits - pl_ctx logits| over T positions, relative to the logits' spread. */
static double logits_vs_inference(train_model *m, const char *path, const char *lora, int T, const int32_t *toks) {
    pl_model *im = NULL;
    pl_ctx *ctx = NULL;
    train_graph *g = NULL;
    double worst = INFINITY;
    const int V = m->hp.n_vocab;
    float *lg = malloc(sizeof(float) * (size_t)T * V);
    int32_t *tg = malloc(sizeof(int32_t) * T);
    for (int t = 0; t < T; t++) tg[t] = -1;
    pl_ctx_params cp = pl_ctx_default_params();
    cp.n_ctx = T, cp.n_batch = T, cp.logits_all = 1, cp.n_threads = 2;
    train_plan plan;
    if (pl_model_load(path, NULL, &im) || (lora && pl_model_apply_lora(im, lora, 1.0f)) || pl_ctx_new(im, &cp, &ctx) ||
        pl_ctx_decode(ctx, toks, T)) {
        fprintf(stderr, "  inference: %s\n", pl_last_error());
        goto out;
    }
    train_plan_make(m, 1, T, false, 2, &plan);
    double nll;
    int64_t cnt;
    if (train_graph_new(m, &plan, &g) || train_graph_eval(g, toks, tg, &nll, &cnt, lg)) {
        fprintf(stderr, "  train: %s\n", pl_last_error());
        goto out;
    }
    worst = 0;
    for (int t = 0; t < T; t++) {
        const float *ref = pl_ctx_logits(ctx, t);
        double lo = INFINITY, hi = -INFINITY, d = 0;
        for (int i = 0; i < V; i++) {
            lo = fmin(lo, ref[i]), hi = fmax(hi, ref[i]);
            d = fmax(d, fabs(ref[i] - lg[(size_t)t * V + i]));
        }
        worst = fmax(worst, d / (hi - lo));
    }
out:
    train_graph_free(g);
    pl_ctx_free(ctx);
    pl_model_free(im);
    free(lg), free(tg);
    return worst;
}

static void check_forward(const char *path, int T, bool lora, double tol) {
    pl_model *base = NULL;
    train_model *m = NULL;
    REQUIRE(pl_model_load(path, NULL, &base) == PL_OK, "%s", pl_last_error());
    int32_t *toks = malloc(sizeof(int32_t) * T);
    toks[0] = pl_model_bos(base) >= 0 ? pl_model_bos(base) : 1;
    for (int t = 1; t < T; t++) toks[t] = 3 + (int32_t)(train_rng_next(&g_rng) % (uint64_t)(pl_model_n_vocab(base) - 3));
    pl_status st = lora ? train_model_lora(base, 4, 8, 1, T, &m) : train_model_from_base(base, T, &m);
    if (st) pl_model_free(base);
    REQUIRE(st == PL_OK, "%s", pl_last_error());
    const double err = logits_vs_inference(m, path, NULL, T, toks);
    /* the inference KV cache is half precision: differences of ~1e-3 of the logit range are that rounding */
    CHECK(err < tol, "%s (%s): train logits differ from inference by %.3g of the logit range", path,
          lora ? "LoRA" : "full", err);
    fprintf(stderr, "  %s %s: max |diff| / range = %.2e\n", path, lora ? "LoRA" : "full", err);
    train_model_free(m);
    free(toks);
}

static void test_forward_stories260k(void) {
    const char *p = shared_path("models/stories260K.gguf");
    if (!p) SKIP("../shared/models/stories260K.gguf not found");
    check_forward(p, 64, false, 5e-3);
    check_forward(p, 64, true, 5e-3);
}

static void test_forward_qwen2(void) {
    const char *p = shared_path("models/kjv-qwen2-f16.gguf");
    if (!p) SKIP("../shared/models/kjv-qwen2-f16.gguf not found");
    check_forward(p, 48, true, 5e-3);
    check_forward(p, 48, false, 5e-3);
}

static void test_forward_random_archs(void) {
    const rnd_cfg cfgs[] = {{"qwen3", 64, 32, 2, 4, 2, 48, false}, {"qwen2", 64, 32, 2, 4, 1, 48, true},
                            {"llama", 64, 32, 2, 4, 4, 48, false}};
    for (size_t i = 0; i < sizeof cfgs / sizeof cfgs[0]; i++) {
        const char *path = tmp_path("fwd.gguf");
        REQUIRE(write_random_model(path, &cfgs[i]), "writing a random %s model: %s", cfgs[i].arch, pl_last_error());
        check_forward(path, 20, false, 5e-3);
        remove(path);
    }
}

/* ------------------------------------------------------------ gradients */

typedef struct gcheck {
    train_model *m;
    train_graph *g;
    int32_t *tok, *tgt;
} gcheck;

static double gc_loss(gcheck *c) {
    double nll;
    int64_t cnt;
    train_graph_eval(c->g, c->tok, c->tgt, &nll, &cnt, NULL);
    return nll / (double)cnt;
}

/* For each param: random direction d, (L(w+hd) - L(w-hd)) / 2h vs g.d. */
static void grad_check_model(train_model *m, int B, int T, bool ckpt, const char *what) {
    gcheck c = {.m = m};
    train_plan plan;
    train_plan_make(m, B, T, ckpt, 2, &plan);
    REQUIRE(train_graph_new(m, &plan, &c.g) == PL_OK, "%s", pl_last_error());
    const int N = B * T;
    c.tok = malloc(sizeof(int32_t) * N), c.tgt = malloc(sizeof(int32_t) * N);
    for (int i = 0; i < N; i++) {
        c.tok[i] = (int32_t)(train_rng_next(&g_rng) % (uint64_t)m->hp.n_vocab);
        c.tgt[i] = i % 7 == 3 ? -1 : (int32_t)(train_rng_next(&g_rng) % (uint64_t)m->hp.n_vocab);
    }
    int64_t count = 0;
    for (int i = 0; i < N; i++) count += c.tgt[i] >= 0;
    train_zero_grads(m);
    double nll;
    int64_t cnt;
    REQUIRE(train_graph_step(c.g, c.tok, c.tgt, 1.0f / (float)count, &nll, &cnt) == PL_OK, "%s", pl_last_error());
    CHECK(cnt == count, "scored %lld targets, expected %lld", (long long)cnt, (long long)count);
    int bad = 0;
    for (int p = 0; p < m->n_params; p++) {
        train_param *pr = &m->params[p];
        const int64_t n = pr->ne0 * pr->ne1;
        float *d = malloc(sizeof(float) * (size_t)n), *w0 = malloc(sizeof(float) * (size_t)n);
        memcpy(w0, pr->w, sizeof(float) * (size_t)n);
        double an = 0;
        for (int64_t i = 0; i < n; i++) d[i] = train_rng_normal(&g_rng), an += (double)d[i] * pr->g[i];
        const float h = 1e-3f;
        for (int64_t i = 0; i < n; i++) pr->w[i] = w0[i] + h * d[i];
        const double lp = gc_loss(&c);
        for (int64_t i = 0; i < n; i++) pr->w[i] = w0[i] - h * d[i];
        const double lm = gc_loss(&c);
        memcpy(pr->w, w0, sizeof(float) * (size_t)n);
        const double fd = (lp - lm) / (2 * h);
        const double err = fabs(fd - an) / (fabs(fd) + fabs(an) + 1e-4);
        if (err > 2e-2 && bad++ < 5)
            fprintf(stderr, "  %s: %s: g.d %.6g vs finite difference %.6g\n", what, pr->name, an, fd);
        free(d), free(w0);
    }
    CHECK(bad == 0, "%s: %d of %d parameter tensors have wrong gradients", what, bad, m->n_params);
    free(c.tok), free(c.tgt);
    train_graph_free(c.g);
}

static void test_grad_whole_model(void) {
    const rnd_cfg cfgs[] = {{"llama", 40, 16, 2, 4, 2, 24, false}, {"qwen2", 40, 16, 2, 4, 1, 24, true},
                            {"qwen3", 40, 16, 2, 2, 1, 24, false}};
    for (size_t i = 0; i < sizeof cfgs / sizeof cfgs[0]; i++) {
        const char *path = tmp_path("grad.gguf");
        REQUIRE(write_random_model(path, &cfgs[i]), "%s", pl_last_error());
        for (int mode = 0; mode < 3; mode++) { /* full, full checkpointed, LoRA */
            pl_model *base;
            train_model *m;
            REQUIRE(pl_model_load(path, NULL, &base) == PL_OK, "%s", pl_last_error());
            pl_status st = mode == 2 ? train_model_lora(base, 3, 6, 5, 8, &m) : train_model_from_base(base, 8, &m);
            REQUIRE(st == PL_OK, "%s", pl_last_error());
            if (mode == 2) /* B starts at zero: move it so A's gradient is not zero */
                for (int p = 0; p < m->n_params; p++)
                    for (int64_t k = 0; k < m->params[p].ne0 * m->params[p].ne1; k++)
                        if (strstr(m->params[p].name, "lora_b")) m->params[p].w[k] = 0.3f * train_rng_normal(&g_rng);
            char what[64];
            snprintf(what, sizeof what, "%s %s", cfgs[i].arch, mode == 0 ? "full" : mode == 1 ? "checkpointed" : "LoRA");
            grad_check_model(m, 2, 8, mode == 1, what);
            train_model_free(m);
        }
        remove(path);
    }
}

/* Checkpointing recomputes exactly what was saved: identical gradients. */
static void test_checkpointing_same_grads(void) {
    const rnd_cfg cfg = {"llama", 50, 32, 3, 4, 2, 40, false};
    const char *path = tmp_path("ckpt.gguf");
    REQUIRE(write_random_model(path, &cfg), "%s", pl_last_error());
    float *g0 = NULL;
    int64_t n = 0;
    int32_t tok[2 * 12], tgt[2 * 12];
    for (int i = 0; i < 24; i++) tok[i] = (int32_t)(train_rng_next(&g_rng) % 50), tgt[i] = (int32_t)(train_rng_next(&g_rng) % 50);
    for (int ck = 0; ck < 2; ck++) {
        pl_model *base;
        train_model *m;
        train_graph *g;
        train_plan plan;
        REQUIRE(pl_model_load(path, NULL, &base) == PL_OK && train_model_from_base(base, 12, &m) == PL_OK, "%s",
                pl_last_error());
        train_plan_make(m, 2, 12, ck, 2, &plan);
        REQUIRE(train_graph_new(m, &plan, &g) == PL_OK, "%s", pl_last_error());
        train_zero_grads(m);
        double nll;
        int64_t cnt;
        train_graph_step(g, tok, tgt, 1.0f / 24, &nll, &cnt);
        if (!ck) {
            n = m->n_trainable;
            g0 = malloc(sizeof(float) * (size_t)n);
            memcpy(g0, m->params[0].g, sizeof(float) * (size_t)n);
        } else {
            CHECK(!memcmp(g0, m->params[0].g, sizeof(float) * (size_t)n), "checkpointed gradients differ");
            train_plan p1;
            train_plan_make(m, 2, 12, false, 2, &p1);
            CHECK(plan.acts < p1.acts, "checkpointing does not save activation memory (%zu vs %zu)", plan.acts, p1.acts);
            /* a budget between the two plans picks checkpointing; one below both is refused */
            train_plan fit;
            CHECK(train_plan_fit(m, 2, 12, 2, (plan.total + p1.total) / 2, -1, &fit) == PL_OK && fit.checkpoint,
                  "budget fit did not choose checkpointing");
            CHECK(train_plan_fit(m, 2, 12, 2, plan.total / 2, -1, &fit) == PL_ERR_BUDGET, "a too-small budget passed");
        }
        train_graph_free(g);
        train_model_free(m);
    }
    free(g0);
    remove(path);
}

/* ------------------------------------------------------------ checkpoints */

static void test_save_and_reload(void) {
    const rnd_cfg cfgs[] = {{"qwen2", 64, 32, 2, 4, 2, 48, true}, {"llama", 64, 32, 2, 4, 2, 48, false}};
    for (size_t i = 0; i < 2; i++) {
        const char *path = tmp_path("base.gguf"), *out = tmp_path("saved.gguf");
        REQUIRE(write_random_model(path, &cfgs[i]), "%s", pl_last_error());
        pl_model *base;
        train_model *m;
        REQUIRE(pl_model_load(path, NULL, &base) == PL_OK && train_model_from_base(base, 16, &m) == PL_OK, "%s",
                pl_last_error());
        /* move every weight so the file must carry the trained values */
        for (int p = 0; p < m->n_params; p++)
            for (int64_t k = 0; k < m->params[p].ne0 * m->params[p].ne1; k++)
                m->params[p].w[k] += 0.05f * train_rng_normal(&g_rng);
        REQUIRE(train_save_model(m, out, QT_F32) == PL_OK, "%s", pl_last_error());
        int32_t toks[16];
        for (int t = 0; t < 16; t++) toks[t] = (int32_t)(train_rng_next(&g_rng) % 64);
        const double err = logits_vs_inference(m, out, NULL, 16, toks);
        CHECK(err < 5e-3, "%s: reloaded checkpoint differs by %.3g", cfgs[i].arch, err);
        train_model_free(m);
        remove(path), remove(out);
    }
}

/* A LoRA model (B moved off zero) saved as an adapter and applied at load by
 * pl_model_apply_lora, or saved merged, gives the training forward's logits;
 * an adapter that does not fit is refused and leaves the model as it was. */
static void test_lora_adapter_and_merge(void) {
    const rnd_cfg cfg = {"qwen2", 64, 32, 2, 4, 2, 48, true};
    const char *path = tmp_path("lbase.gguf"), *ad = tmp_path("adapter.gguf"), *merged = tmp_path("merged.gguf");
    REQUIRE(write_random_model(path, &cfg), "%s", pl_last_error());
    pl_model *base;
    train_model *m;
    REQUIRE(pl_model_load(path, NULL, &base) == PL_OK && train_model_lora(base, 4, 8, 9, 16, &m) == PL_OK, "%s",
            pl_last_error());
    for (int p = 0; p < m->n_params; p++)
        if (strstr(m->params[p].name, "lora_b"))
            for (int64_t k = 0; k < m->params[p].ne0 * m->params[p].ne1; k++) m->params[p].w[k] = 0.2f * train_rng_normal(&g_rng);
    REQUIRE(train_save_lora(m, ad) == PL_OK && train_save_model(m, merged, QT_F32) == PL_OK, "%s", pl_last_error());
    int32_t toks[16];
    for (int t = 0; t < 16; t++) toks[t] = (int32_t)(train_rng_next(&g_rng) % 64);
    const double base_err = logits_vs_inference(m, path, NULL, 16, toks);
    const double ad_err = logits_vs_inference(m, path, ad, 16, toks);
    const double mg_err = logits_vs_inference(m, merged, NULL, 16, toks);
    CHECK(base_err > 1e-2, "the adapter changes nothing (%.3g)", base_err);
    CHECK(ad_err < 5e-3, "adapter applied at load differs by %.3g", ad_err);
    CHECK(mg_err < 5e-3, "merged model differs by %.3g", mg_err);
    /* an adapter for other shapes is refused */
    const rnd_cfg other = {"qwen2", 64, 32, 2, 4, 2, 40, true};
    const char *path2 = tmp_path("lbase2.gguf");
    REQUIRE(write_random_model(path2, &other), "%s", pl_last_error());
    pl_model *im;
    REQUIRE(pl_model_load(path2, NULL, &im) == PL_OK, "%s", pl_last_error());
    const void *before = im->layers[0].w_up.data;
    CHECK(pl_model_apply_lora(im, ad, 1.0f) == PL_ERR_FORMAT, "mismatched adapter accepted");
    CHECK(strstr(pl_last_error(), "do not fit") != NULL, "message: %s", pl_last_error());
    CHECK(im->layers[0].wq.data != NULL && im->layers[0].w_up.data == before, "failed apply changed the model");
    CHECK(pl_model_apply_lora(im, path2, 1.0f) != PL_OK, "a model file accepted as an adapter");
    pl_model_free(im);
    train_model_free(m);
    remove(path), remove(path2), remove(ad), remove(merged);
}

/* ------------------------------------------------------------ fine-tuning */

static double val_loss(train_graph *g, const train_data *val, int B, int T, int n_batches, int32_t bos) {
    int32_t *tok = malloc(sizeof(int32_t) * B * T), *tgt = malloc(sizeof(int32_t) * B * T);
    double nll = 0;
    int64_t cnt = 0;
    for (int i = 0; i < n_batches; i++) {
        train_data_batch(val, B, T, NULL, i, bos, tok, tgt);
        double n;
        int64_t c;
        train_graph_eval(g, tok, tgt, &n, &c, NULL);
        nll += n, cnt += c;
    }
    free(tok), free(tgt);
    return nll / cnt;
}

static void finetune(const char *model, bool lora, int steps, float lr) {
    const char *train_txt = shared_path("text/kjv-train.txt"), *val_txt = shared_path("text/kjv-val.txt");
    pl_model *base;
    train_model *m;
    train_graph *g;
    train_data data, val;
    REQUIRE(pl_model_load(model, NULL, &base) == PL_OK, "%s", pl_last_error());
    REQUIRE(train_data_from_text(base, train_txt, &data) == PL_OK && train_data_from_text(base, val_txt, &val) == PL_OK,
            "%s", pl_last_error());
    enum { B = 4, T = 64 };
    pl_status st = lora ? train_model_lora(base, 8, 16, 3, T, &m) : train_model_from_base(base, T, &m);
    REQUIRE(st == PL_OK, "%s", pl_last_error());
    train_plan plan;
    REQUIRE(train_plan_fit(m, B, T, 2, 0, -1, &plan) == PL_OK && train_graph_new(m, &plan, &g) == PL_OK, "%s",
            pl_last_error());
    const int32_t bos = pl_model_bos(m->base);
    const double before = val_loss(g, &val, B, T, 8, bos);
    train_opt o = train_opt_default();
    o.lr = lr, o.min_lr = lr / 10, o.warmup = 2, o.steps = steps;
    uint64_t rng = 42;
    int32_t tok[B * T], tgt[B * T];
    double first = 0, last = 0;
    for (int s = 0; s < steps; s++) {
        train_zero_grads(m);
        train_data_batch(&data, B, T, &rng, -1, bos, tok, tgt);
        double nll;
        int64_t c;
        train_graph_step(g, tok, tgt, 1.0f / (B * T), &nll, &c);
        train_adamw_step(m, &o, s + 1, train_lr_at(&o, s));
        if (s == 0) first = nll / c;
        last = nll / c;
    }
    const double after = val_loss(g, &val, B, T, 8, bos);
    fprintf(stderr, "  %s %s: %d steps, train loss %.3f -> %.3f, held-out loss %.4f -> %.4f\n", model,
            lora ? "LoRA" : "full", steps, first, last, before, after);
    CHECK(after < before - 0.05, "%s: held-out loss did not drop (%.4f -> %.4f)", lora ? "LoRA" : "full", before, after);
    train_graph_free(g);
    train_model_free(m);
    train_data_free(&data), train_data_free(&val);
}

static void test_finetune_lowers_val_loss(void) {
    const char *p = shared_path("models/stories260K.gguf");
    if (!p || !shared_path("text/kjv-train.txt")) SKIP("../shared models or text not found");
    finetune(p, false, 30, 3e-3f);
    finetune(p, true, 30, 1e-2f);
}

/* The shipped default model (trained by pocketllm train, see README) is a
 * trained model: on the shared KJV validation text, which has verse numbers
 * and chapter titles its training text lacked, its loss is far below the
 * uniform ln(2048) = 7.62 an untrained model starts from. */
static void test_default_model(void) {
    const char *val_txt = shared_path("text/kjv-val.txt");
    if (!val_txt) SKIP("../shared/text/kjv-val.txt not found");
    pl_model *base;
    train_model *m;
    train_graph *g;
    train_data val;
    REQUIRE(pl_model_load("models/pocket-kjv.gguf", NULL, &base) == PL_OK, "%s", pl_last_error());
    CHECK(pl_model_n_vocab(base) == 2048 && !strcmp(pl_model_arch(base), "llama"), "unexpected model");
    REQUIRE(train_data_from_text(base, val_txt, &val) == PL_OK, "%s", pl_last_error());
    REQUIRE(train_model_from_base(base, 128, &m) == PL_OK, "%s", pl_last_error());
    train_plan plan;
    REQUIRE(train_plan_fit(m, 4, 128, 2, 0, -1, &plan) == PL_OK && train_graph_new(m, &plan, &g) == PL_OK, "%s",
            pl_last_error());
    const double loss = val_loss(g, &val, 4, 128, 4, pl_model_bos(m->base));
    fprintf(stderr, "  models/pocket-kjv.gguf: loss %.3f on kjv-val.txt (uniform 7.62)\n", loss);
    CHECK(loss < 4.5, "the default model's loss %.3f is not that of a trained model", loss);
    train_graph_free(g);
    train_model_free(m);
    train_data_free(&val);
}

int main(void) {
    RUN(test_forward_stories260k);
    RUN(test_forward_qwen2);
    RUN(test_forward_random_archs);
    RUN(test_grad_whole_model);
    RUN(test_checkpointing_same_grads);
    RUN(test_save_and_reload);
    RUN(test_lora_adapter_and_merge);
    RUN(test_finetune_lowers_val_loss);
    RUN(test_default_model);
    TEST_END();
}
