/*
 * The host side of the CUDA backend: planning device memory for a context,
 * uploading the weights (repacked, gpu_layout.h), and running forward steps
 * as sequences of device-layer ops (gpu_dev.h) that mirror src/model/forward.c
 * op for op. Everything a context needs on the GPU lives in one allocation
 * whose layout is computed by the same walk that plans it, so the plan is
 * exactly what is allocated. A single-token step of a full offload is
 * captured once as a CUDA graph (positions and token ids are read from device
 * memory, so the graph never changes) and replayed for every later token.
 */
#include "gpu.h"

#include "gpu_layout.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { GM_WQ, GM_WK, GM_WV, GM_WO, GM_GATE, GM_UP, GM_DOWN, GM_N_MATS };
enum { GM_LEN_C, GM_LEN_HD, GM_LEN_GD, GM_LEN_D };
enum { GM_ATTN_NORM, GM_FFN_NORM, GM_BQ, GM_BK, GM_BV, GM_QN, GM_KN, GM_N_VECS };

/* The per-layer tensors the GPU holds, as rows of model_layer fields. */
static const struct {
    const char *name;
    size_t off;
} k_mats[GM_N_MATS] = {
    {"attn_q", offsetof(model_layer, wq)},       {"attn_k", offsetof(model_layer, wk)},
    {"attn_v", offsetof(model_layer, wv)},       {"attn_output", offsetof(model_layer, wo)},
    {"ffn_gate", offsetof(model_layer, w_gate)}, {"ffn_up", offsetof(model_layer, w_up)},
    {"ffn_down", offsetof(model_layer, w_down)},
};

static const struct {
    size_t off;
    int len;
} k_vecs[GM_N_VECS] = {
    {offsetof(model_layer, attn_norm), GM_LEN_C}, {offsetof(model_layer, ffn_norm), GM_LEN_C},
    {offsetof(model_layer, bq), GM_LEN_HD},       {offsetof(model_layer, bk), GM_LEN_GD},
    {offsetof(model_layer, bv), GM_LEN_GD},       {offsetof(model_layer, q_norm), GM_LEN_D},
    {offsetof(model_layer, k_norm), GM_LEN_D},
};

typedef struct gpu_layer {
    gdev_mat mats[GM_N_MATS];
    float *vecs[GM_N_VECS]; /* NULL when the model has no such tensor */
    uint16_t *kc, *vc;      /* (n_ctx, G*D) f16 */
} gpu_layer;

struct gpu_ctx {
    gdev *dev;
    gdev_info info;
    gpu_plan plan;
    void *arena;
    gpu_layer *layers; /* (plan.n_layers) */
    gdev_mat emb, out; /* full offload only; out aliases emb when tied */
    float *out_norm;
    float *x, *xn, *q, *k, *v, *att, *gate, *up, *logits, *rope_cos, *rope_sin;
    int *d_io;         /* [0] position of the step's first token, [1..T] token ids */
    int *h_io;         /* pinned copy the steps write */
    float *h_logits;   /* pinned staging when ctx->logits could not be pinned */
    int logits_pinned;
    int graph_ready, graph_off;
};

/* ------------------------------------------------------------ planning */

enum { GM_ALIGN = 256 };

typedef struct gm_cursor {
    uint8_t *base; /* NULL: only count */
    uint64_t off;
} gm_cursor;

static void *gm_take(gm_cursor *c, uint64_t bytes) {
    void *p = c->base ? c->base + c->off : NULL;
    c->off += (bytes + GM_ALIGN - 1) / GM_ALIGN * GM_ALIGN;
    return p;
}

static const kern_matrix *gm_layer_mat(const model_layer *l, int i) {
    return (const kern_matrix *)((const char *)l + k_mats[i].off);
}

static const float *gm_layer_vec(const model_layer *l, int i) {
    return *(const float *const *)((const char *)l + k_vecs[i].off);
}

static int gm_vec_len(const model_hparams *hp, int kind) {
    switch (kind) {
    case GM_LEN_C: return hp->n_embd;
    case GM_LEN_HD: return hp->n_head * hp->head_dim;
    case GM_LEN_GD: return hp->n_head_kv * hp->head_dim;
    default: return hp->head_dim;
    }
}

/* Place (or count) one matrix; name is for messages; *read (when given)
 * grows by the bytes a product with it reads. */
static pl_status gm_place_mat(const kern_matrix *w, const char *name, const gdev_info *info, gm_cursor *c,
                              gdev_mat *out, uint64_t *read) {
    gpu_row_layout lay;
    if (!gpu_layout_row(w->type, w->n_in, &lay)) {
        const quant_traits *tr = quant_get(w->type);
        return pl_fail(PL_ERR_UNSUPPORTED, "gpu: tensor %s is %s, which the CUDA backend does not handle (it handles %s)",
                       name, tr ? tr->name : "of an unknown type", gpu_layout_types());
    }
    if ((uint64_t)lay.n_in_pad / 16 * 80 > info->smem_optin)
        return pl_fail(PL_ERR_UNSUPPORTED, "gpu: tensor %s has rows of %lld elements, too wide for the %zu bytes of "
                       "shared memory a block may use", name, (long long)w->n_in, info->smem_optin);
    gdev_mat m = {.type = w->type, .n_in = (int)w->n_in, .n_out = (int)w->n_out, .n_in_pad = lay.n_in_pad,
                  .q_row = lay.q_row, .s_row = lay.s_row};
    m.q = gm_take(c, (uint64_t)lay.q_row * (uint64_t)w->n_out);
    m.s = lay.s_row ? gm_take(c, (uint64_t)lay.s_row * (uint64_t)w->n_out) : NULL;
    if (out) *out = m;
    if (read) *read += ((uint64_t)lay.q_row + lay.s_row) * (uint64_t)w->n_out;
    return PL_OK;
}

/* The walk that both plans and lays out: g NULL counts only. Sizes go to p. */
static pl_status gm_walk(const pl_model *m, int n_ctx, int n_batch, int logits_rows, int n_layers, int full,
                         const gdev_info *info, struct gpu_ctx *g, gm_cursor *c, gpu_plan *p) {
    const model_hparams *hp = &m->hp;
    const uint64_t C = (uint64_t)hp->n_embd, HD = (uint64_t)hp->n_head * hp->head_dim,
                   GD = (uint64_t)hp->n_head_kv * hp->head_dim, F = (uint64_t)hp->n_ff, T = (uint64_t)n_batch;
    char name[64];
    pl_status st;
    if (hp->head_dim > 256)
        return pl_fail(PL_ERR_UNSUPPORTED, "gpu: head dimension %d is above the 256 the attention kernel handles",
                       hp->head_dim);
    memset(p, 0, sizeof *p);
    p->n_layers = n_layers;
    p->full = full;
    uint64_t start = c->off;
    if (full) {
        const int tied = m->output.data == m->tok_embd.data;
        if ((st = gm_place_mat(&m->tok_embd, "token_embd.weight", info, c, g ? &g->emb : NULL,
                               tied ? &p->step_bytes : NULL)))
            return st;
        if (!tied) {
            if ((st = gm_place_mat(&m->output, "output.weight", info, c, g ? &g->out : NULL, &p->step_bytes))) return st;
        } else if (g) {
            g->out = g->emb;
        }
        void *on = gm_take(c, C * 4);
        if (g) g->out_norm = on;
    }
    for (int il = 0; il < n_layers; il++) {
        const model_layer *l = &m->layers[il];
        gpu_layer *gl = g ? &g->layers[il] : NULL;
        for (int i = 0; i < GM_N_MATS; i++) {
            snprintf(name, sizeof name, "blk.%d.%s.weight", il, k_mats[i].name);
            if ((st = gm_place_mat(gm_layer_mat(l, i), name, info, c, gl ? &gl->mats[i] : NULL, &p->step_bytes)))
                return st;
        }
        for (int i = 0; i < GM_N_VECS; i++) {
            if (!gm_layer_vec(l, i)) continue;
            void *v = gm_take(c, (uint64_t)gm_vec_len(hp, k_vecs[i].len) * 4);
            if (gl) gl->vecs[i] = v;
        }
    }
    p->weight_bytes = c->off - start;
    start = c->off;
    for (int il = 0; il < n_layers; il++) {
        void *kc = gm_take(c, (uint64_t)n_ctx * GD * 2), *vc = gm_take(c, (uint64_t)n_ctx * GD * 2);
        if (g) g->layers[il].kc = kc, g->layers[il].vc = vc;
    }
    p->kv_bytes = c->off - start;
    start = c->off;
    float *bufs[11];
    const uint64_t lens[11] = {T * C, T * C, T * HD, T * GD, T * GD, T * HD, T * F, T * F,
                               full ? (uint64_t)logits_rows * hp->n_vocab : 0, (uint64_t)n_ctx * (hp->n_rot / 2),
                               (uint64_t)n_ctx * (hp->n_rot / 2)};
    for (int i = 0; i < 11; i++) bufs[i] = gm_take(c, lens[i] * 4);
    int *io = gm_take(c, (T + 1) * sizeof(int));
    if (g) {
        g->x = bufs[0], g->xn = bufs[1], g->q = bufs[2], g->k = bufs[3], g->v = bufs[4], g->att = bufs[5];
        g->gate = bufs[6], g->up = bufs[7], g->logits = bufs[8], g->rope_cos = bufs[9], g->rope_sin = bufs[10];
        g->d_io = io;
    }
    p->scratch_bytes = c->off - start;
    p->total_bytes = p->weight_bytes + p->kv_bytes + p->scratch_bytes;
    return PL_OK;
}

static double gm_mib(uint64_t b) { return (double)b / (1024.0 * 1024.0); }

pl_status gpu_plan_ctx(const pl_model *m, int n_ctx, int n_batch, int logits_rows, int want, const gdev_info *info,
                       gpu_plan *out) {
    memset(out, 0, sizeof *out);
    const int L = m->hp.n_layer;
    if (want < -1) return pl_fail(PL_ERR_INVALID_ARG, "gpu: n_gpu_layers %d is not -1 (as many as fit), 0 (all) or a count", want);
    const uint64_t reserve = ((uint64_t)128 << 20) + info->mem_total / 100;
    const uint64_t avail = info->mem_free > reserve ? info->mem_free - reserve : 0;
    gpu_plan p;
    gm_cursor c = {0};
    pl_status st;
    /* the most layers that fit: all with the output (full), else a prefix */
    int fit = -1;
    if ((st = gm_walk(m, n_ctx, n_batch, logits_rows, L, 1, info, NULL, &c, &p))) return st;
    if (p.total_bytes <= avail) fit = L;
    for (int n = L - 1; fit < 0 && n >= 0; n--) {
        gm_cursor cn = {0};
        if ((st = gm_walk(m, n_ctx, n_batch, logits_rows, n, 0, info, NULL, &cn, &p))) return st;
        if (p.total_bytes <= avail && n > 0) fit = n;
    }
    const int n = want == 0 ? L : want < 0 ? (fit > 0 ? fit : 1) : (want < L ? want : L);
    gm_cursor cn = {0};
    if ((st = gm_walk(m, n_ctx, n_batch, logits_rows, n, n == L, info, NULL, &cn, &p))) return st;
    p.avail_bytes = avail;
    if (p.total_bytes > avail) {
        char hint[96];
        if (fit > 0) snprintf(hint, sizeof hint, "n_gpu_layers = %d fits (the other layers run on the CPU)", fit);
        else snprintf(hint, sizeof hint, "not even one layer fits; use the CPU or a smaller context");
        return pl_fail(PL_ERR_BUDGET,
                       "gpu: %d of %d layers need %.1f MiB on %s (weights %.1f, KV cache %.1f for %d positions, "
                       "activations %.1f) but %.1f MiB are free after %.1f MiB of headroom; %s",
                       n, L, gm_mib(p.total_bytes), info->name, gm_mib(p.weight_bytes), gm_mib(p.kv_bytes), n_ctx,
                       gm_mib(p.scratch_bytes), gm_mib(avail), gm_mib(reserve), hint);
    }
    *out = p;
    return PL_OK;
}

/* -------------------------------------------------------------- upload */

enum { GM_STAGE = 16 << 20 };

static pl_status gm_upload_mat(struct gpu_ctx *g, const kern_matrix *w, const gdev_mat *dm, uint8_t *stage,
                               size_t stage_bytes) {
    const uint64_t src_row = quant_row_size(w->type, w->n_in), row = (uint64_t)dm->q_row + dm->s_row;
    const int per = (int)(stage_bytes / row) > 0 ? (int)(stage_bytes / row) : 1;
    for (int r0 = 0; r0 < dm->n_out; r0 += per) {
        const int nr = dm->n_out - r0 < per ? dm->n_out - r0 : per;
        uint8_t *sq = stage, *ss = stage + (size_t)nr * dm->q_row;
        for (int r = 0; r < nr; r++)
            gpu_layout_repack_row(w->type, w->n_in, (const uint8_t *)w->data + (uint64_t)(r0 + r) * src_row,
                                  sq + (size_t)r * dm->q_row, ss + (size_t)r * dm->s_row);
        pl_status st = gdev_h2d(g->dev, (uint8_t *)dm->q + (size_t)r0 * dm->q_row, sq, (size_t)nr * dm->q_row);
        if (!st && dm->s_row)
            st = gdev_h2d(g->dev, (uint8_t *)dm->s + (size_t)r0 * dm->s_row, ss, (size_t)nr * dm->s_row);
        if (!st) st = gdev_sync(g->dev); /* the stage is reused */
        if (st) return st;
    }
    return PL_OK;
}

static pl_status gm_upload(struct gpu_ctx *g, const pl_ctx *ctx) {
    const pl_model *m = ctx->model;
    const model_hparams *hp = &m->hp;
    size_t stage_bytes = GM_STAGE;
    const kern_matrix *big = &m->tok_embd;
    const uint64_t emb_row = (uint64_t)big->n_in * 4 + 64;
    if (emb_row > stage_bytes) stage_bytes = (size_t)emb_row;
    uint8_t *stage = NULL;
    pl_status st = gdev_host_alloc(g->dev, stage_bytes, (void **)&stage);
    if (st) return st;
    if (g->plan.full) {
        if (!st) st = gm_upload_mat(g, &m->tok_embd, &g->emb, stage, stage_bytes);
        if (!st && m->output.data != m->tok_embd.data) st = gm_upload_mat(g, &m->output, &g->out, stage, stage_bytes);
        if (!st) st = gdev_h2d(g->dev, g->out_norm, m->out_norm, (size_t)hp->n_embd * 4);
    }
    for (int il = 0; !st && il < g->plan.n_layers; il++) {
        const model_layer *l = &m->layers[il];
        gpu_layer *gl = &g->layers[il];
        for (int i = 0; !st && i < GM_N_MATS; i++) st = gm_upload_mat(g, gm_layer_mat(l, i), &gl->mats[i], stage, stage_bytes);
        for (int i = 0; !st && i < GM_N_VECS; i++)
            if (gl->vecs[i])
                st = gdev_h2d(g->dev, gl->vecs[i], gm_layer_vec(l, i), (size_t)gm_vec_len(hp, k_vecs[i].len) * 4);
    }
    const size_t rope = (size_t)ctx->n_ctx * (size_t)(hp->n_rot / 2) * 4;
    if (!st) st = gdev_h2d(g->dev, g->rope_cos, ctx->rope_cos, rope);
    if (!st) st = gdev_h2d(g->dev, g->rope_sin, ctx->rope_sin, rope);
    if (!st) st = gdev_sync(g->dev);
    gdev_host_free(g->dev, stage);
    return st;
}

pl_status gpu_ctx_new(pl_ctx *ctx, int device, int n_gpu_layers) {
    if (device != PL_DEVICE_CUDA)
        return pl_fail(PL_ERR_INVALID_ARG, "pl_ctx_new: device %d is neither PL_DEVICE_CPU (0) nor PL_DEVICE_CUDA (1)",
                       device);
    const pl_model *m = ctx->model;
    struct gpu_ctx *g = calloc(1, sizeof *g);
    if (!g) return pl_fail(PL_ERR_NOMEM, "gpu: out of memory");
    ctx->gpu = g;
    pl_status st = gdev_open(&g->dev, &g->info);
    if (st) goto fail;
    if ((st = gpu_plan_ctx(m, ctx->n_ctx, ctx->n_batch, ctx->logits_cap, n_gpu_layers, &g->info, &g->plan))) goto fail;
    g->layers = calloc((size_t)(g->plan.n_layers ? g->plan.n_layers : 1), sizeof *g->layers);
    if (!g->layers) {
        st = pl_fail(PL_ERR_NOMEM, "gpu: out of memory");
        goto fail;
    }
    if ((st = gdev_alloc(g->dev, g->plan.total_bytes, &g->arena))) goto fail;
    gm_cursor c = {.base = g->arena};
    gpu_plan laid;
    if ((st = gm_walk(m, ctx->n_ctx, ctx->n_batch, ctx->logits_cap, g->plan.n_layers, g->plan.full, &g->info, g, &c,
                      &laid)))
        goto fail;
    if (laid.total_bytes != g->plan.total_bytes) {
        st = pl_fail(PL_ERR_INTERNAL, "gpu: layout (%llu bytes) differs from its plan (%llu)",
                     (unsigned long long)laid.total_bytes, (unsigned long long)g->plan.total_bytes);
        goto fail;
    }
    if ((st = gdev_host_alloc(g->dev, (size_t)(ctx->n_batch + 1) * sizeof(int), (void **)&g->h_io))) goto fail;
    if ((st = gm_upload(g, ctx))) goto fail;
    if (g->plan.full) {
        const size_t lb = (size_t)ctx->logits_cap * (size_t)m->hp.n_vocab * sizeof(float);
        g->logits_pinned = gdev_host_register(g->dev, ctx->logits, lb) == PL_OK;
        if (!g->logits_pinned && (st = gdev_host_alloc(g->dev, lb, (void **)&g->h_logits))) goto fail;
    }
    const char *e = getenv("PL_GPU_GRAPH");
    g->graph_off = e && !strcmp(e, "0");
    return PL_OK;
fail:
    gpu_ctx_free(ctx);
    return st;
}

void gpu_ctx_free(pl_ctx *ctx) {
    struct gpu_ctx *g = ctx ? ctx->gpu : NULL;
    if (!g) return;
    if (g->dev) {
        gdev_sync(g->dev);
        if (g->logits_pinned) gdev_host_unregister(g->dev, ctx->logits);
        gdev_host_free(g->dev, g->h_logits);
        gdev_host_free(g->dev, g->h_io);
        gdev_free(g->dev, g->arena);
        gdev_close(g->dev);
    }
    free(g->layers);
    free(g);
    ctx->gpu = NULL;
}

const gpu_plan *gpu_ctx_plan(const pl_ctx *ctx) { return ctx && ctx->gpu ? &ctx->gpu->plan : NULL; }

/* ------------------------------------------------------------- forward */

/* One layer for T tokens on x, as layer_forward in forward.c. */
static pl_status gm_layer(struct gpu_ctx *g, const pl_model *m, int il, int T) {
    const model_hparams *hp = &m->hp;
    const gpu_layer *l = &g->layers[il];
    const gdev_mat *w = l->mats;
    const int C = hp->n_embd, H = hp->n_head, G = hp->n_head_kv, D = hp->head_dim, F = hp->n_ff;
    const int HD = H * D, GD = G * D;
    const float eps = hp->rms_eps;
    gdev *d = g->dev;
    pl_status st;
    const gdev_attn at = {.T = T, .H = H, .G = G, .D = D, .n_rot = hp->n_rot,
                          .neox = m->arch->rope == ARCH_ROPE_NEOX, .d_pos = g->d_io, .d_q = g->q, .d_k = g->k,
                          .d_v = g->v, .d_kc = l->kc, .d_vc = l->vc, .d_cos = g->rope_cos, .d_sin = g->rope_sin,
                          .d_qn = l->vecs[GM_QN], .d_kn = l->vecs[GM_KN], .eps = eps, .d_out = g->att};
    /* one token, adjacent-pair rope, no Q/K norms, one weight type: RoPE and
     * the cache store ride on the Q/K/V product */
    const int fused = T == 1 && !at.neox && !at.d_qn && w[GM_WQ].type == w[GM_WK].type &&
                      w[GM_WQ].type == w[GM_WV].type;
    int attended = 0; /* the fused product did the attention too */
    if (T == 1) {
        const gdev_mv_out qkv[3] = {{&w[GM_WQ], g->q, l->vecs[GM_BQ], 0},
                                    {&w[GM_WK], g->k, l->vecs[GM_BK], 0},
                                    {&w[GM_WV], g->v, l->vecs[GM_BV], 0}};
        st = fused ? gdev_matvec_qkv(d, qkv, g->x, l->vecs[GM_ATTN_NORM], eps, &at, &attended)
                   : gdev_matvec(d, qkv, 3, g->x, l->vecs[GM_ATTN_NORM], eps);
        if (st) return st;
    } else {
        if ((st = gdev_rmsnorm(d, g->x, g->xn, l->vecs[GM_ATTN_NORM], C, C, T, eps)) ||
            (st = gdev_gemm(d, &w[GM_WQ], g->xn, C, T, g->q, HD, l->vecs[GM_BQ], 0)) ||
            (st = gdev_gemm(d, &w[GM_WK], g->xn, C, T, g->k, GD, l->vecs[GM_BK], 0)) ||
            (st = gdev_gemm(d, &w[GM_WV], g->xn, C, T, g->v, GD, l->vecs[GM_BV], 0)))
            return st;
    }
    if ((!fused && (st = gdev_rope_kv(d, &at))) || (!attended && (st = gdev_attention(d, &at)))) return st;
    if (T == 1) {
        const gdev_mv_out o = {&w[GM_WO], g->x, NULL, 1};
        if ((st = gdev_matvec(d, &o, 1, g->att, NULL, 0))) return st;
        if (w[GM_GATE].type == w[GM_UP].type) {
            st = gdev_matvec_glu(d, &w[GM_GATE], &w[GM_UP], g->x, l->vecs[GM_FFN_NORM], eps, g->gate);
        } else {
            const gdev_mv_out gu[2] = {{&w[GM_GATE], g->gate, NULL, 0}, {&w[GM_UP], g->up, NULL, 0}};
            if (!(st = gdev_matvec(d, gu, 2, g->x, l->vecs[GM_FFN_NORM], eps))) st = gdev_silu_mul(d, g->gate, g->up, (size_t)F);
        }
        if (st) return st;
        const gdev_mv_out dn = {&w[GM_DOWN], g->x, NULL, 1};
        return gdev_matvec(d, &dn, 1, g->gate, NULL, 0);
    }
    if ((st = gdev_gemm(d, &w[GM_WO], g->att, HD, T, g->x, C, NULL, 1)) ||
        (st = gdev_rmsnorm(d, g->x, g->xn, l->vecs[GM_FFN_NORM], C, C, T, eps)) ||
        (st = gdev_gemm(d, &w[GM_GATE], g->xn, C, T, g->gate, F, NULL, 0)) ||
        (st = gdev_gemm(d, &w[GM_UP], g->xn, C, T, g->up, F, NULL, 0)) ||
        (st = gdev_silu_mul(d, g->gate, g->up, (size_t)T * F)))
        return st;
    return gdev_gemm(d, &w[GM_DOWN], g->gate, F, T, g->x, C, NULL, 1);
}

/* A whole step of a full offload: ids in, logits of [first, T) out to dst. */
static pl_status gm_full_step(struct gpu_ctx *g, const pl_model *m, int T, int first, float *dst) {
    const model_hparams *hp = &m->hp;
    const int C = hp->n_embd, V = hp->n_vocab, n_out = T - first;
    gdev *d = g->dev;
    pl_status st;
    if ((st = gdev_h2d(d, g->d_io, g->h_io, (size_t)(T + 1) * sizeof(int))) ||
        (st = gdev_embed(d, &g->emb, g->d_io + 1, T, g->x)))
        return st;
    for (int il = 0; il < hp->n_layer; il++)
        if ((st = gm_layer(g, m, il, T))) return st;
    if (n_out <= 0) return PL_OK;
    if (n_out == 1) {
        const gdev_mv_out o = {&g->out, g->logits, NULL, 0};
        st = gdev_matvec(d, &o, 1, g->x + (size_t)first * C, g->out_norm, hp->rms_eps);
    } else {
        st = gdev_rmsnorm(d, g->x + (size_t)first * C, g->xn, g->out_norm, C, C, n_out, hp->rms_eps);
        if (!st) st = gdev_gemm(d, &g->out, g->xn, C, n_out, g->logits, V, NULL, 0);
    }
    if (st) return st;
    return gdev_d2h(d, dst, g->logits, (size_t)n_out * V * sizeof(float));
}

pl_status gpu_forward_step(pl_ctx *ctx, const pl_token *toks, int T, int first_logit, int logit_row, int *next_layer) {
    struct gpu_ctx *g = ctx->gpu;
    const pl_model *m = ctx->model;
    const model_hparams *hp = &m->hp;
    const int C = hp->n_embd, V = hp->n_vocab;
    pl_status st;
    g->h_io[0] = ctx->pos;
    for (int t = 0; t < T; t++) g->h_io[1 + t] = toks[t];
    if (!g->plan.full) {
        const quant_traits *et = quant_get(m->tok_embd.type);
        const size_t erow = quant_row_size(m->tok_embd.type, C);
        for (int t = 0; t < T; t++)
            et->to_float((const uint8_t *)m->tok_embd.data + (size_t)toks[t] * erow, ctx->x + (size_t)t * C, C);
        if ((st = gdev_h2d(g->dev, g->x, ctx->x, (size_t)T * C * sizeof(float))) ||
            (st = gdev_h2d(g->dev, g->d_io, g->h_io, (size_t)(T + 1) * sizeof(int))))
            return st;
        for (int il = 0; il < g->plan.n_layers; il++)
            if ((st = gm_layer(g, m, il, T))) return st;
        if ((st = gdev_d2h(g->dev, ctx->x, g->x, (size_t)T * C * sizeof(float))) || (st = gdev_sync(g->dev))) return st;
        *next_layer = g->plan.n_layers;
        return PL_OK;
    }
    const int n_out = T - first_logit;
    float *dst = g->logits_pinned ? ctx->logits + (size_t)logit_row * V : g->h_logits;
    if (T == 1 && n_out == 1 && logit_row == 0 && !g->graph_off) {
        if (!g->graph_ready) {
            if ((st = gdev_capture_begin(g->dev))) return st;
            if ((st = gm_full_step(g, m, 1, 0, dst))) {
                gdev_capture_abort(g->dev);
                return st;
            }
            if ((st = gdev_capture_end(g->dev))) return st;
            g->graph_ready = 1;
        }
        st = gdev_replay(g->dev);
    } else {
        st = gm_full_step(g, m, T, first_logit, dst);
    }
    if (st || (st = gdev_sync(g->dev))) return st;
    if (!g->logits_pinned && n_out > 0)
        memcpy(ctx->logits + (size_t)logit_row * V, g->h_logits, (size_t)n_out * V * sizeof(float));
    *next_layer = hp->n_layer + 1;
    return PL_OK;
}
