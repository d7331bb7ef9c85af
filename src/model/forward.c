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

typedef struct attn_job {
    pl_ctx *ctx;
    int layer, T, pos0;
} attn_job;

/* One (token, head) item per iteration: scores against every cached key up
 * to the token's own position (causal), softmax, weighted sum of values. */
static void attn_worker(void *arg, int ith, int nth) {
    attn_job *j = arg;
    pl_ctx *ctx = j->ctx;
    const model_hparams *hp = &ctx->model->hp;
    const int H = hp->n_head, G = hp->n_head_kv, D = hp->head_dim, group = H / G;
    const size_t kv_row = ctx->kv_row_bytes, kv_head = kv_row / (size_t)G; /* bytes */
    const uint8_t *kc = (const uint8_t *)ctx->k_cache + (size_t)j->layer * ctx->n_ctx * kv_row;
    const uint8_t *vc = (const uint8_t *)ctx->v_cache + (size_t)j->layer * ctx->n_ctx * kv_row;
    float *scores = ctx->att_scores + (size_t)ith * ctx->n_ctx;
    const float scale = 1.0f / sqrtf((float)D);
    for (int item = ith; item < j->T * H; item += nth) {
        const int t = item / H, h = item % H, g = h / group;
        const int n_pos = j->pos0 + t + 1;
        const float *q = ctx->q + (size_t)t * H * D + (size_t)h * D;
        kern_attn_scores(ctx->kv_qt, scores, q, kc + (size_t)g * kv_head, kv_row, n_pos, D, scale);
        kern_softmax(scores, n_pos);
        kern_attn_values(ctx->kv_qt, ctx->att_out + (size_t)t * H * D + (size_t)h * D, scores,
                         vc + (size_t)g * kv_head, kv_row, n_pos, D);
    }
}

/* l: the layer's weights (m->layers[il], or a streaming window's copy) */
static void layer_forward(pl_ctx *ctx, const model_layer *l, int il, int T, int pos0) {
    const pl_model *m = ctx->model;
    const model_hparams *hp = &m->hp;
    const int C = hp->n_embd, H = hp->n_head, G = hp->n_head_kv, D = hp->head_dim, F = hp->n_ff;
    const int HD = H * D, GD = G * D;
    pl_pool *pool = ctx->pool;

    for (int t = 0; t < T; t++)
        kern_rmsnorm(ctx->xn + (size_t)t * C, ctx->x + (size_t)t * C, l->attn_norm, C, hp->rms_eps);
    kern_matmul(pool, &l->wq, ctx->xn, C, T, ctx->q, HD, l->bq, ctx->act_scratch);
    kern_matmul(pool, &l->wk, ctx->xn, C, T, ctx->k, GD, l->bk, ctx->act_scratch);
    kern_matmul(pool, &l->wv, ctx->xn, C, T, ctx->v, GD, l->bv, ctx->act_scratch);

    const size_t kv_row = ctx->kv_row_bytes;
    uint8_t *kc = (uint8_t *)ctx->k_cache + (size_t)il * ctx->n_ctx * kv_row;
    uint8_t *vc = (uint8_t *)ctx->v_cache + (size_t)il * ctx->n_ctx * kv_row;
    for (int t = 0; t < T; t++) {
        float *q = ctx->q + (size_t)t * HD, *k = ctx->k + (size_t)t * GD;
        if (l->q_norm) {
            for (int h = 0; h < H; h++) kern_rmsnorm(q + (size_t)h * D, q + (size_t)h * D, l->q_norm, D, hp->rms_eps);
            for (int g = 0; g < G; g++) kern_rmsnorm(k + (size_t)g * D, k + (size_t)g * D, l->k_norm, D, hp->rms_eps);
        }
        rope_apply(ctx, q, H, pos0 + t);
        rope_apply(ctx, k, G, pos0 + t);
        kern_kv_store(ctx->kv_qt, kc + (size_t)(pos0 + t) * kv_row, k, GD);
        kern_kv_store(ctx->kv_qt, vc + (size_t)(pos0 + t) * kv_row, ctx->v + (size_t)t * GD, GD);
    }
    attn_job aj = {.ctx = ctx, .layer = il, .T = T, .pos0 = pos0};
    pool_run(pool, attn_worker, &aj);

    /* attention output projection, residual */
    kern_matmul(pool, &l->wo, ctx->att_out, HD, T, ctx->xn, C, NULL, ctx->act_scratch);
    for (size_t i = 0; i < (size_t)T * C; i++) ctx->x[i] += ctx->xn[i];

    /* feed-forward: down(silu(gate(x)) * up(x)), residual */
    for (int t = 0; t < T; t++)
        kern_rmsnorm(ctx->xn + (size_t)t * C, ctx->x + (size_t)t * C, l->ffn_norm, C, hp->rms_eps);
    kern_matmul(pool, &l->w_gate, ctx->xn, C, T, ctx->gate, F, NULL, ctx->act_scratch);
    kern_matmul(pool, &l->w_up, ctx->xn, C, T, ctx->up, F, NULL, ctx->act_scratch);
    for (int t = 0; t < T; t++)
        kern_silu_mul(ctx->gate + (size_t)t * F, ctx->gate + (size_t)t * F, ctx->up + (size_t)t * F, F);
    kern_matmul(pool, &l->w_down, ctx->gate, F, T, ctx->xn, C, NULL, ctx->act_scratch);
    for (size_t i = 0; i < (size_t)T * C; i++) ctx->x[i] += ctx->xn[i];
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
        const quant_traits *et = quant_get(m->tok_embd.type);
        const size_t erow = quant_row_size(m->tok_embd.type, C);
        for (int t = 0; t < T; t++)
            et->to_float((const uint8_t *)m->tok_embd.data + (size_t)toks[t] * erow, ctx->x + (size_t)t * C, C);
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
