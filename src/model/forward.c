/*
 * The forward pass of the llama family (llama, qwen2, qwen3) over a batch of
 * T tokens appended at ctx->pos: pre-norm transformer blocks with RMSNorm,
 * rotary attention with grouped K/V heads (GQA) over the KV cache, and a
 * SwiGLU feed-forward. Architecture differences come from the arch_desc flags.
 * A prompt is evaluated as one batch (weights are read once per batch, not
 * once per token); long inputs are cut into steps of ctx->n_batch tokens.
 */
#include "model.h"

#include "../gpu/gpu.h"

#include <math.h>
#include <string.h>

/* Rotate the first n_rot dims of each of n_heads vectors of length D at `pos`. */
static void rope_apply(const pl_ctx *ctx, float *v, int n_heads, int pos) {
    const model_hparams *hp = &ctx->model->hp;
    const int D = hp->head_dim, half = hp->n_rot / 2;
    const float *cs = ctx->rope_cos + (size_t)pos * half, *sn = ctx->rope_sin + (size_t)pos * half;
    const bool neox = ctx->model->arch->rope == ARCH_ROPE_NEOX;
    for (int h = 0; h < n_heads; h++) {
        float *x = v + (size_t)h * D;
        for (int i = 0; i < half; i++) {
            const int i0 = neox ? i : 2 * i, i1 = neox ? i + half : 2 * i + 1;
            const float x0 = x[i0], x1 = x[i1];
            x[i0] = x0 * cs[i] - x1 * sn[i];
            x[i1] = x0 * sn[i] + x1 * cs[i];
        }
    }
}

/* Work split: every loop over tokens or (token, head) items runs through
 * pool_for, whose threads claim chunks, so a thread on a busy core only slows
 * the chunks it has claimed. Loops too small to repay waking the pool (a
 * single token's norms, short attention) run on the calling thread. */
enum {
    FW_PARALLEL_VALUES = 1 << 15, /* per-token loops: T * values per token below this run inline */
    FW_ATTN_PARALLEL_MACS = 1 << 16, /* attention multiply-adds below this run inline */
    FW_ATTN_CHUNKS_PER_THREAD = 8 /* attention chunks per thread (later tokens cost more) */
};

/* What the per-layer loops share. */
typedef struct fw_job {
    pl_ctx *ctx;
    const model_layer *l;
    int il, T, pos0;
} fw_job;

/* Runs fn over the step's T tokens, on the pool when there is enough work. */
static void fw_tokens(const fw_job *j, int64_t values_per_token, pl_pool_range_fn fn) {
    if (j->T > 1 && (int64_t)j->T * values_per_token >= FW_PARALLEL_VALUES)
        pool_for(j->ctx->pool, j->T, 0, fn, (void *)j);
    else
        fn((void *)j, 0, j->T, 0);
}

static void fw_attn_norm(void *arg, int64_t t0, int64_t t1, int thread) {
    const fw_job *j = arg;
    const model_hparams *hp = &j->ctx->model->hp;
    const size_t C = (size_t)hp->n_embd;
    (void)thread;
    for (int64_t t = t0; t < t1; t++) kern_rmsnorm(j->ctx->xn + t * C, j->ctx->x + t * C, j->l->attn_norm, (int)C, hp->rms_eps);
}

/* q/k head norms (qwen3), rotary position, and the token's K and V into the cache. */
static void fw_qk_store(void *arg, int64_t t0, int64_t t1, int thread) {
    const fw_job *j = arg;
    pl_ctx *ctx = j->ctx;
    const model_layer *l = j->l;
    const model_hparams *hp = &ctx->model->hp;
    const int H = hp->n_head, G = hp->n_head_kv, D = hp->head_dim, HD = H * D, GD = G * D;
    const size_t kv_row = ctx->kv_row_bytes;
    uint8_t *kc = (uint8_t *)ctx->k_cache + (size_t)j->il * ctx->n_ctx * kv_row;
    uint8_t *vc = (uint8_t *)ctx->v_cache + (size_t)j->il * ctx->n_ctx * kv_row;
    (void)thread;
    for (int t = (int)t0; t < (int)t1; t++) {
        float *q = ctx->q + (size_t)t * HD, *k = ctx->k + (size_t)t * GD;
        const int pos = j->pos0 + t;
        if (l->q_norm) {
            for (int h = 0; h < H; h++) kern_rmsnorm(q + (size_t)h * D, q + (size_t)h * D, l->q_norm, D, hp->rms_eps);
            for (int g = 0; g < G; g++) kern_rmsnorm(k + (size_t)g * D, k + (size_t)g * D, l->k_norm, D, hp->rms_eps);
        }
        rope_apply(ctx, q, H, pos);
        rope_apply(ctx, k, G, pos);
        kern_kv_store(ctx->kv_qt, kc + (size_t)pos * kv_row, k, GD);
        kern_kv_store(ctx->kv_qt, vc + (size_t)pos * kv_row, ctx->v + (size_t)t * GD, GD);
    }
}

/* (token, head) items [i0, i1): scores against every cached key up to the
 * token's own position (causal), softmax, weighted sum of values. */
static void fw_attn(void *arg, int64_t i0, int64_t i1, int thread) {
    const fw_job *j = arg;
    pl_ctx *ctx = j->ctx;
    const model_hparams *hp = &ctx->model->hp;
    const int H = hp->n_head, G = hp->n_head_kv, D = hp->head_dim, group = H / G;
    const size_t kv_row = ctx->kv_row_bytes, kv_head = kv_row / (size_t)G; /* bytes */
    const uint8_t *kc = (const uint8_t *)ctx->k_cache + (size_t)j->il * ctx->n_ctx * kv_row;
    const uint8_t *vc = (const uint8_t *)ctx->v_cache + (size_t)j->il * ctx->n_ctx * kv_row;
    float *scores = ctx->att_scores + (size_t)thread * ctx->n_ctx;
    const float scale = 1.0f / sqrtf((float)D);
    for (int item = (int)i0; item < (int)i1; item++) {
        const int t = item / H, h = item % H, g = h / group;
        const int n_pos = j->pos0 + t + 1;
        const float *q = ctx->q + (size_t)t * H * D + (size_t)h * D;
        kern_attn_scores(ctx->kv_qt, scores, q, kc + (size_t)g * kv_head, kv_row, n_pos, D, scale);
        kern_softmax(scores, n_pos);
        kern_attn_values(ctx->kv_qt, ctx->att_out + (size_t)t * H * D + (size_t)h * D, scores,
                         vc + (size_t)g * kv_head, kv_row, n_pos, D);
    }
}

/* Attention over the step: chunks of whole K/V groups (the heads of a group
 * read the same cached rows), several per thread because later tokens of a
 * batch attend to more positions. */
static void fw_attention(const fw_job *j) {
    const model_hparams *hp = &j->ctx->model->hp;
    const int H = hp->n_head, group = hp->n_head / hp->n_head_kv;
    const int64_t items = (int64_t)j->T * H;
    const double positions = (double)j->T * j->pos0 + (double)j->T * (j->T + 1) / 2; /* sum of n_pos */
    const int nth = pool_size(j->ctx->pool);
    if (nth == 1 || 2.0 * positions * H * hp->head_dim < FW_ATTN_PARALLEL_MACS) {
        fw_attn((void *)j, 0, items, 0);
        return;
    }
    const int64_t groups = items / group, per = (int64_t)nth * FW_ATTN_CHUNKS_PER_THREAD;
    pool_for(j->ctx->pool, items, (groups + per - 1) / per * group, fw_attn, (void *)j);
}

/* x += xn (the attention output), then xn = ffn_norm(x). */
static void fw_resid_ffn_norm(void *arg, int64_t t0, int64_t t1, int thread) {
    const fw_job *j = arg;
    const model_hparams *hp = &j->ctx->model->hp;
    const size_t C = (size_t)hp->n_embd;
    (void)thread;
    for (int64_t t = t0; t < t1; t++) {
        float *x = j->ctx->x + t * C, *xn = j->ctx->xn + t * C;
        for (size_t i = 0; i < C; i++) x[i] += xn[i];
        kern_rmsnorm(xn, x, j->l->ffn_norm, (int)C, hp->rms_eps);
    }
}

static void fw_silu(void *arg, int64_t t0, int64_t t1, int thread) {
    const fw_job *j = arg;
    const size_t F = (size_t)j->ctx->model->hp.n_ff;
    (void)thread;
    for (int64_t t = t0; t < t1; t++) kern_silu_mul(j->ctx->gate + t * F, j->ctx->gate + t * F, j->ctx->up + t * F, (int)F);
}

/* x += xn (the feed-forward output) */
static void fw_resid(void *arg, int64_t t0, int64_t t1, int thread) {
    const fw_job *j = arg;
    const size_t C = (size_t)j->ctx->model->hp.n_embd;
    (void)thread;
    for (size_t i = (size_t)t0 * C; i < (size_t)t1 * C; i++) j->ctx->x[i] += j->ctx->xn[i];
}

/* l: the layer's weights (m->layers[il], or a streaming window's copy) */
static void layer_forward(pl_ctx *ctx, const model_layer *l, int il, int T, int pos0) {
    const pl_model *m = ctx->model;
    const model_hparams *hp = &m->hp;
    const int C = hp->n_embd, H = hp->n_head, G = hp->n_head_kv, D = hp->head_dim, F = hp->n_ff;
    const int HD = H * D, GD = G * D;
    pl_pool *pool = ctx->pool;
    const fw_job j = {.ctx = ctx, .l = l, .il = il, .T = T, .pos0 = pos0};

    fw_tokens(&j, C, fw_attn_norm);
    kern_matmul(pool, &l->wq, ctx->xn, C, T, ctx->q, HD, l->bq, ctx->act_scratch);
    kern_matmul(pool, &l->wk, ctx->xn, C, T, ctx->k, GD, l->bk, ctx->act_scratch);
    kern_matmul(pool, &l->wv, ctx->xn, C, T, ctx->v, GD, l->bv, ctx->act_scratch);
    fw_tokens(&j, HD + 2 * GD, fw_qk_store);
    fw_attention(&j);

    /* attention output projection, residual; feed-forward:
     * down(silu(gate(x)) * up(x)), residual */
    kern_matmul(pool, &l->wo, ctx->att_out, HD, T, ctx->xn, C, NULL, ctx->act_scratch);
    fw_tokens(&j, 2 * C, fw_resid_ffn_norm);
    kern_matmul(pool, &l->w_gate, ctx->xn, C, T, ctx->gate, F, NULL, ctx->act_scratch);
    kern_matmul(pool, &l->w_up, ctx->xn, C, T, ctx->up, F, NULL, ctx->act_scratch);
    fw_tokens(&j, 4 * F, fw_silu);
    kern_matmul(pool, &l->w_down, ctx->gate, F, T, ctx->xn, C, NULL, ctx->act_scratch);
    fw_tokens(&j, C, fw_resid);
}

/* One step of T <= n_batch tokens. Logits rows are written for the tokens
 * [first_logit, T) into ctx->logits starting at row `logit_row`. */
static pl_status forward_step(pl_ctx *ctx, const pl_token *toks, int T, int first_logit, int logit_row) {
    const pl_model *m = ctx->model;
    const model_hparams *hp = &m->hp;
    const int C = hp->n_embd;
    int il0 = 0;
    if (ctx->gpu) { /* the GPU runs the first layers (or the whole step) */
        pl_status st = gpu_forward_step(ctx, toks, T, first_logit, logit_row, &il0);
        if (st || il0 > hp->n_layer) return st;
    } else {
        /* from the packed copy of a tied embedding: its file pages were dropped */
        for (int t = 0; t < T; t++) kern_row_to_float(&m->tok_embd, toks[t], ctx->x + (size_t)t * C);
    }
    for (int il = il0; il < hp->n_layer; il++) {
        const model_layer *l = &m->layers[il];
        pl_status st = ctx->stream ? stream_take(ctx->stream, il, &l) : PL_OK; /* waits for a streamed layer */
        if (st) return st;
        layer_forward(ctx, l, il, T, ctx->pos);
        if (ctx->stream) stream_give(ctx->stream, il);
    }
    const int n_out = T - first_logit;
    if (n_out <= 0) return PL_OK;
    for (int t = first_logit; t < T; t++)
        kern_rmsnorm(ctx->xn + (size_t)(t - first_logit) * C, ctx->x + (size_t)t * C, m->out_norm, C, hp->rms_eps);
    kern_matmul(ctx->pool, &m->output, ctx->xn, C, n_out, ctx->logits + (size_t)logit_row * hp->n_vocab,
                hp->n_vocab, NULL, ctx->act_scratch);
    return PL_OK;
}

pl_status model_forward(pl_ctx *ctx, const pl_token *toks, int n, int logits_from) {
    const pl_model *m = ctx->model;
    if (n <= 0) return pl_fail(PL_ERR_INVALID_ARG, "decode: no tokens given");
    for (int i = 0; i < n; i++)
        if (toks[i] < 0 || toks[i] >= m->hp.n_vocab)
            return pl_fail(PL_ERR_INVALID_ARG, "decode: token %d at index %d is outside the vocabulary (0..%d)",
                           toks[i], i, m->hp.n_vocab - 1);
    if (n > ctx->n_ctx - ctx->pos)
        return pl_fail(PL_ERR_CONTEXT_FULL, "decode: %d tokens do not fit: the context holds %d and has %d free",
                       n, ctx->n_ctx, ctx->n_ctx - ctx->pos);
    if (!ctx->logits_all) logits_from = n - 1;
    if (logits_from < 0 || logits_from >= n)
        return pl_fail(PL_ERR_INVALID_ARG, "decode: logits_from %d outside 0..%d", logits_from, n - 1);
    if (n - logits_from > ctx->logits_cap)
        return pl_fail(PL_ERR_INVALID_ARG, "decode: logits for %d positions asked, the context keeps at most %d per call",
                       n - logits_from, ctx->logits_cap);
    ctx->n_logits_rows = 0;
    for (int done = 0; done < n;) {
        if (atomic_load(&ctx->cancel)) return pl_fail(PL_ERR_CANCELLED, "decode: cancelled");
        const int T = n - done < ctx->n_batch ? n - done : ctx->n_batch;
        /* logits for this step's tokens at call index >= logits_from */
        const int first = logits_from > done ? (logits_from - done < T ? logits_from - done : T) : 0;
        pl_status st = forward_step(ctx, toks + done, T, first, done + first - logits_from);
        if (st) return st;
        ctx->pos += T;
        done += T;
    }
    ctx->n_logits_rows = n - logits_from;
    ctx->logits_first = logits_from;
    return PL_OK;
}
