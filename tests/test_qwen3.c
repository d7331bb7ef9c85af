/*
 * qwen3 end to end on a model this test writes itself: random weights, GQA,
 * per-head Q/K RMSNorm, NEOX rope and a head_dim (24) that differs from
 * n_embd / n_head (64 / 4 = 16). The engine's logits are checked against a
 * straightforward float64 forward pass written here from the architecture's
 * definition (no code shared with src/model), and batch evaluation is checked
 * against token-by-token evaluation through the KV cache.
 */
#include "test.h"

#include "gguf/gguf.h"
#include "pocketllm.h"

#include <math.h>
#include <stdint.h>
#include <unistd.h>

enum { C = 64, H = 4, G = 2, D = 24, F = 96, L = 2, V = 300, T = 12 };
static const double EPS = 1e-6, BASE = 1e6;

typedef struct weights {
    float emb[V][C];
    float attn_norm[L][C], ffn_norm[L][C], qn[L][D], kn[L][D], out_norm[C];
    float wq[L][H * D][C], wk[L][G * D][C], wv[L][G * D][C], wo[L][C][H * D];
    float wg[L][F][C], wu[L][F][C], wd[L][C][F];
} weights;

static uint64_t g_rng = 42;
static float frand(float scale) {
    g_rng = g_rng * 6364136223846793005ull + 1442695040888963407ull;
    return scale * ((float)((g_rng >> 40) & 0xFFFFFF) / (float)0x1000000 * 2.0f - 1.0f);
}
static void fill(float *p, size_t n, float scale, float offset) {
    for (size_t i = 0; i < n; i++) p[i] = offset + frand(scale);
}

/* ------------------------------------------------------ float64 reference */

static void ref_rmsnorm(double *y, const double *x, const float *w, int n) {
    double ss = 0;
    for (int i = 0; i < n; i++) ss += x[i] * x[i];
    double s = 1.0 / sqrt(ss / n + EPS);
    for (int i = 0; i < n; i++) y[i] = x[i] * s * w[i];
}

static void ref_matvec(double *y, const float *W, const double *x, int n_out, int n_in) {
    for (int r = 0; r < n_out; r++) {
        double s = 0;
        for (int i = 0; i < n_in; i++) s += (double)W[(size_t)r * n_in + i] * x[i];
        y[r] = s;
    }
}

/* NEOX rope: dims i and i + D/2 rotate together by pos * BASE^(-2i/D). */
static void ref_rope(double *v, int pos) {
    for (int i = 0; i < D / 2; i++) {
        double th = pos * pow(BASE, -2.0 * i / D), c = cos(th), s = sin(th);
        double a = v[i], b = v[i + D / 2];
        v[i] = a * c - b * s;
        v[i + D / 2] = a * s + b * c;
    }
}

static void ref_forward(const weights *w, const int *ids, int n, double *logits /* n x V */) {
    static double x[T][C], K[L][T][G * D], Vv[L][T][G * D];
    for (int t = 0; t < n; t++)
        for (int i = 0; i < C; i++) x[t][i] = w->emb[ids[t]][i];
    for (int l = 0; l < L; l++) {
        for (int t = 0; t < n; t++) {
            double xn[C], q[H * D], att[H * D], o[C];
            ref_rmsnorm(xn, x[t], w->attn_norm[l], C);
            ref_matvec(q, &w->wq[l][0][0], xn, H * D, C);
            ref_matvec(K[l][t], &w->wk[l][0][0], xn, G * D, C);
            ref_matvec(Vv[l][t], &w->wv[l][0][0], xn, G * D, C);
            for (int h = 0; h < H; h++) {
                ref_rmsnorm(q + h * D, q + h * D, w->qn[l], D);
                ref_rope(q + h * D, t);
            }
            for (int g = 0; g < G; g++) {
                ref_rmsnorm(K[l][t] + g * D, K[l][t] + g * D, w->kn[l], D);
                ref_rope(K[l][t] + g * D, t);
            }
            for (int h = 0; h < H; h++) {
                int g = h / (H / G);
                double sc[T], mx = -1e300, sum = 0;
                for (int p = 0; p <= t; p++) {
                    double s = 0;
                    for (int d = 0; d < D; d++) s += q[h * D + d] * K[l][p][g * D + d];
                    sc[p] = s / sqrt((double)D);
                    mx = sc[p] > mx ? sc[p] : mx;
                }
                for (int p = 0; p <= t; p++) sum += (sc[p] = exp(sc[p] - mx));
                for (int d = 0; d < D; d++) {
                    double a = 0;
                    for (int p = 0; p <= t; p++) a += sc[p] / sum * Vv[l][p][g * D + d];
                    att[h * D + d] = a;
                }
            }
            ref_matvec(o, &w->wo[l][0][0], att, C, H * D);
            for (int i = 0; i < C; i++) x[t][i] += o[i];
            double gt[F], up[F], dn[C];
            ref_rmsnorm(xn, x[t], w->ffn_norm[l], C);
            ref_matvec(gt, &w->wg[l][0][0], xn, F, C);
            ref_matvec(up, &w->wu[l][0][0], xn, F, C);
            for (int i = 0; i < F; i++) gt[i] = gt[i] / (1 + exp(-gt[i])) * up[i];
            ref_matvec(dn, &w->wd[l][0][0], gt, C, F);
            for (int i = 0; i < C; i++) x[t][i] += dn[i];
        }
    }
    for (int t = 0; t < n; t++) {
        double xn[C];
        ref_rmsnorm(xn, x[t], w->out_norm, C);
        ref_matvec(logits + (size_t)t * V, &w->emb[0][0], xn, V, C); /* tied output */
    }
}

/* ------------------------------------------------------- writing the file */

static int write_model(const weights *w, const char *path) {
    gguf_writer *wr = gguf_writer_new();
    if (!wr) return 0;
    char *tok_store[V];
    const char *toks[V];
    float scores[V];
    int32_t types[V];
    for (int i = 0; i < V; i++) {
        tok_store[i] = malloc(16);
        if (i == 0) snprintf(tok_store[i], 16, "<unk>");
        else if (i == 1) snprintf(tok_store[i], 16, "<s>");
        else if (i == 2) snprintf(tok_store[i], 16, "</s>");
        else if (i < 259) snprintf(tok_store[i], 16, "<0x%02X>", i - 3);
        else snprintf(tok_store[i], 16, "t%d", i - 259);
        toks[i] = tok_store[i];
        scores[i] = i < 259 ? 0.0f : -(float)i;
        types[i] = i == 0 ? 2 : i < 3 ? 3 : i < 259 ? 6 : 1;
    }
    int ok = !gguf_writer_set_str(wr, "general.architecture", "qwen3") &&
             !gguf_writer_set_u32(wr, "qwen3.embedding_length", C) &&
             !gguf_writer_set_u32(wr, "qwen3.block_count", L) &&
             !gguf_writer_set_u32(wr, "qwen3.attention.head_count", H) &&
             !gguf_writer_set_u32(wr, "qwen3.attention.head_count_kv", G) &&
             !gguf_writer_set_u32(wr, "qwen3.attention.key_length", D) &&
             !gguf_writer_set_u32(wr, "qwen3.attention.value_length", D) &&
             !gguf_writer_set_u32(wr, "qwen3.feed_forward_length", F) &&
             !gguf_writer_set_u32(wr, "qwen3.context_length", 64) &&
             !gguf_writer_set_f32(wr, "qwen3.rope.freq_base", (float)BASE) &&
             !gguf_writer_set_f32(wr, "qwen3.attention.layer_norm_rms_epsilon", (float)EPS) &&
             !gguf_writer_set_str(wr, "tokenizer.ggml.model", "llama") &&
             !gguf_writer_set_arr(wr, "tokenizer.ggml.tokens", GGUF_TYPE_STRING, toks, V) &&
             !gguf_writer_set_arr(wr, "tokenizer.ggml.scores", GGUF_TYPE_FLOAT32, scores, V) &&
             !gguf_writer_set_arr(wr, "tokenizer.ggml.token_type", GGUF_TYPE_INT32, types, V) &&
             !gguf_writer_set_u32(wr, "tokenizer.ggml.bos_token_id", 1) &&
             !gguf_writer_set_u32(wr, "tokenizer.ggml.eos_token_id", 2);
    char nm[64];
#define ADD(name, ptr, n0, n1)                                                          \
    do {                                                                                \
        int64_t ne[2] = {n0, n1};                                                       \
        ok = ok && !gguf_writer_add_tensor(wr, name, 0, (n1) > 1 ? 2 : 1, ne, ptr);      \
    } while (0)
    ADD("token_embd.weight", w->emb, C, V);
    ADD("output_norm.weight", w->out_norm, C, 1);
    for (int l = 0; l < L; l++) {
#define LN(s) (snprintf(nm, sizeof nm, "blk.%d.%s", l, s), nm)
        ADD(LN("attn_norm.weight"), w->attn_norm[l], C, 1);
        ADD(LN("attn_q.weight"), w->wq[l], C, H * D);
        ADD(LN("attn_k.weight"), w->wk[l], C, G * D);
        ADD(LN("attn_v.weight"), w->wv[l], C, G * D);
        ADD(LN("attn_output.weight"), w->wo[l], H * D, C);
        ADD(LN("attn_q_norm.weight"), w->qn[l], D, 1);
        ADD(LN("attn_k_norm.weight"), w->kn[l], D, 1);
        ADD(LN("ffn_norm.weight"), w->ffn_norm[l], C, 1);
        ADD(LN("ffn_gate.weight"), w->wg[l], C, F);
        ADD(LN("ffn_up.weight"), w->wu[l], C, F);
        ADD(LN("ffn_down.weight"), w->wd[l], F, C);
#undef LN
    }
#undef ADD
    ok = ok && !gguf_writer_write_file(wr, path);
    if (!ok) fprintf(stderr, "  writer: %s\n", pl_last_error());
    gguf_writer_free(wr);
    for (int i = 0; i < V; i++) free(tok_store[i]);
    return ok;
}

static weights *g_w;
static char g_path[256];
static const int k_ids[T] = {1, 40, 77, 260, 299, 3, 120, 121, 122, 5, 280, 2};

static void make_weights(void) {
    g_w = calloc(1, sizeof *g_w);
    fill(&g_w->emb[0][0], (size_t)V * C, 1.0f, 0);
    fill(&g_w->attn_norm[0][0], (size_t)L * C, 0.2f, 1.0f);
    fill(&g_w->ffn_norm[0][0], (size_t)L * C, 0.2f, 1.0f);
    fill(&g_w->qn[0][0], (size_t)L * D, 0.2f, 1.0f);
    fill(&g_w->kn[0][0], (size_t)L * D, 0.2f, 1.0f);
    fill(g_w->out_norm, C, 0.2f, 1.0f);
    fill(&g_w->wq[0][0][0], sizeof g_w->wq / 4, 0.2f, 0);
    fill(&g_w->wk[0][0][0], sizeof g_w->wk / 4, 0.2f, 0);
    fill(&g_w->wv[0][0][0], sizeof g_w->wv / 4, 0.2f, 0);
    fill(&g_w->wo[0][0][0], sizeof g_w->wo / 4, 0.15f, 0);
    fill(&g_w->wg[0][0][0], sizeof g_w->wg / 4, 0.2f, 0);
    fill(&g_w->wu[0][0][0], sizeof g_w->wu / 4, 0.2f, 0);
    fill(&g_w->wd[0][0][0], sizeof g_w->wd / 4, 0.15f, 0);
    snprintf(g_path, sizeof g_path, "/tmp/pl_test_qwen3_%d.gguf", (int)getpid());
}

static void test_qwen3_matches_float64_reference(void) {
    REQUIRE(write_model(g_w, g_path), "writing %s", g_path);
    pl_model *m = NULL;
    pl_ctx *ctx = NULL;
    REQUIRE(pl_model_load(g_path, NULL, &m) == PL_OK, "load: %s", pl_last_error());
    CHECK(!strcmp(pl_model_arch(m), "qwen3"), "arch %s", pl_model_arch(m));
    pl_ctx_params cp = pl_ctx_default_params();
    cp.n_ctx = 32;
    cp.n_threads = 2;
    cp.logits_all = 1;
    if (pl_ctx_new(m, &cp, &ctx) != PL_OK) {
        CHECK(0, "ctx: %s", pl_last_error());
        pl_model_free(m);
        return;
    }
    CHECK(pl_ctx_decode(ctx, k_ids, T) == PL_OK, "decode: %s", pl_last_error());
    static double ref[T * V];
    ref_forward(g_w, k_ids, T, ref);
    double worst = 0, scale = 0;
    for (int t = 0; t < T; t++) {
        const float *lg = pl_ctx_logits(ctx, t);
        if (!lg) { CHECK(0, "no logits at %d", t); break; }
        for (int v = 0; v < V; v++) {
            double d = fabs(lg[v] - ref[t * V + v]);
            worst = d > worst ? d : worst;
            scale = fabs(ref[t * V + v]) > scale ? fabs(ref[t * V + v]) : scale;
        }
    }
    /* f32 accumulation over these sizes stays far below 1e-3 of the logit scale */
    CHECK(worst <= 1e-3 * scale, "max |logit - float64 reference| = %g (logit scale %g)", worst, scale);

    /* token by token through the cache must give the batch's logits */
    pl_ctx_truncate(ctx, 0);
    double worst_inc = 0;
    for (int t = 0; t < T; t++) {
        CHECK(pl_ctx_decode(ctx, &k_ids[t], 1) == PL_OK, "decode %d: %s", t, pl_last_error());
        const float *lg = pl_ctx_logits(ctx, -1);
        for (int v = 0; lg && v < V; v++) {
            double d = fabs(lg[v] - ref[t * V + v]);
            worst_inc = d > worst_inc ? d : worst_inc;
        }
    }
    CHECK(worst_inc <= 1e-3 * scale, "incremental decode differs from reference by %g", worst_inc);
    pl_ctx_free(ctx);
    pl_model_free(m);
}

static void test_context_full_is_an_error(void) {
    pl_model *m = NULL;
    pl_ctx *ctx = NULL;
    REQUIRE(pl_model_load(g_path, NULL, &m) == PL_OK, "load: %s", pl_last_error());
    pl_ctx_params cp = pl_ctx_default_params();
    cp.n_ctx = 8;
    cp.n_threads = 1;
    if (pl_ctx_new(m, &cp, &ctx) == PL_OK) {
        CHECK(pl_ctx_decode(ctx, k_ids, T) == PL_ERR_CONTEXT_FULL, "12 tokens into 8: %s", pl_last_error());
        CHECK(pl_ctx_pos(ctx) == 0, "nothing evaluated on failure");
        int bad = V + 5;
        CHECK(pl_ctx_decode(ctx, &bad, 1) == PL_ERR_INVALID_ARG, "out-of-vocab id rejected");
        CHECK(strstr(pl_last_error(), "vocabulary") != NULL, "message: %s", pl_last_error());
    }
    pl_ctx_free(ctx);
    pl_model_free(m);
}

int main(void) {
    make_weights();
    RUN(test_qwen3_matches_float64_reference);
    RUN(test_context_full_is_an_error);
    unlink(g_path);
    free(g_w);
    TEST_END();
}
