/*
 * The training graph: forward with saved activations, loss, and backward of
 * the whole model for one micro-batch of B sequences of T tokens (N = B*T
 * rows; row b*T + t is token t of sequence b, at position t).
 *
 * Memory is planned, then allocated as one block: the same layout walk
 * (gr_layout) counts bytes for the plan and assigns pointers for the graph,
 * so the graph uses exactly what the plan promised. With checkpointing only
 * each layer's input (the residual stream) is kept; a layer's activations are
 * recomputed into one shared set just before its backward. Logits are never
 * held for all rows: the loss and the output layer's backward run in chunks.
 */
#include "train.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define GR_ALIGN 64
#define GR_LOGIT_FLOATS (1 << 20) /* logits chunk: about 4 MB */
#define GR_N_MATS 7

typedef struct gr_acts {
    float *rstd1, *xn1;              /* (N), (N, C) */
    float *q, *k, *v;                /* after bias, norm and rope: (N, HD), (N, GD), (N, GD) */
    float *q_pre, *k_pre;            /* qk_norm: before the per-head norm */
    float *qn_rstd, *kn_rstd;        /* qk_norm: (N*H), (N*G) */
    float *probs;                    /* (B, H, T, T) */
    float *att;                      /* (N, HD) */
    float *x_mid;                    /* (N, C) residual after attention */
    float *rstd2, *xn2;              /* (N), (N, C) */
    float *gate, *up, *h;            /* (N, F) */
    float *u[GR_N_MATS];             /* LoRA: A x per matrix, (N, R) */
} gr_acts;

struct train_graph {
    train_model *m;
    train_plan plan;
    pl_pool *pool;
    int B, T, N, chunk;
    void *block;
    float **x_res;      /* (L+1) x (N, C): layer inputs; x_res[L] the last output */
    gr_acts *acts;      /* L sets, or 1 shared when checkpointing */
    float *rstd_f, *xn_f, *dxn_f, *logits;
    float *dx, *dxn, *dq, *dk, *dv, *datt, *dh, *dg, *dup;
    float *wt, *tile, *du, *attn_scratch;
    void *kscratch;
};

/* Walk the layout: with base == NULL only count bytes. */
typedef struct gr_walk {
    char *base;
    size_t off;
} gr_walk;

static float *gr_take(gr_walk *w, size_t n_floats) {
    float *p = w->base ? (float *)(w->base + w->off) : NULL;
    w->off += (n_floats * sizeof(float) + GR_ALIGN - 1) / GR_ALIGN * GR_ALIGN;
    return p;
}

static const train_mat *gr_layer_mat(const train_layer *l, int i) {
    const train_mat *ms[GR_N_MATS] = {&l->wq, &l->wk, &l->wv, &l->wo, &l->w_gate, &l->w_up, &l->w_down};
    return ms[i];
}

static int gr_chunk_rows(const train_model *m, int N) {
    int c = GR_LOGIT_FLOATS / m->hp.n_vocab;
    if (c < 8) c = 8;
    return c < N ? c : N;
}

static void gr_layout_acts(const train_model *m, int B, int T, gr_walk *w, gr_acts *a) {
    const model_hparams *hp = &m->hp;
    const size_t N = (size_t)B * T, C = hp->n_embd, HD = (size_t)hp->n_head * hp->head_dim,
                 GD = (size_t)hp->n_head_kv * hp->head_dim, F = hp->n_ff;
    gr_acts tmp;
    if (!a) a = &tmp;
    memset(a, 0, sizeof *a);
    a->rstd1 = gr_take(w, N);
    a->xn1 = gr_take(w, N * C);
    a->q = gr_take(w, N * HD);
    a->k = gr_take(w, N * GD);
    a->v = gr_take(w, N * GD);
    if (m->arch->qk_norm) {
        a->q_pre = gr_take(w, N * HD);
        a->k_pre = gr_take(w, N * GD);
        a->qn_rstd = gr_take(w, N * hp->n_head);
        a->kn_rstd = gr_take(w, N * hp->n_head_kv);
    }
    a->probs = gr_take(w, (size_t)B * hp->n_head * T * T);
    a->att = gr_take(w, N * HD);
    a->x_mid = gr_take(w, N * C);
    a->rstd2 = gr_take(w, N);
    a->xn2 = gr_take(w, N * C);
    a->gate = gr_take(w, N * F);
    a->up = gr_take(w, N * F);
    a->h = gr_take(w, N * F);
    if (m->lora_rank > 0)
        for (int i = 0; i < GR_N_MATS; i++) a->u[i] = gr_take(w, N * m->lora_rank);
}

/* Activations first (w->off after them is the acts size), then scratch. */
static void gr_layout(const train_model *m, int B, int T, bool ckpt, int nth, gr_walk *w, train_graph *g,
                      size_t *acts_bytes) {
    const model_hparams *hp = &m->hp;
    const int L = hp->n_layer;
    const size_t N = (size_t)B * T, C = hp->n_embd, HD = (size_t)hp->n_head * hp->head_dim,
                 GD = (size_t)hp->n_head_kv * hp->head_dim, F = hp->n_ff, V = hp->n_vocab;
    for (int l = 0; l <= L; l++) {
        float *p = gr_take(w, N * C);
        if (g) g->x_res[l] = p;
    }
    const int n_sets = ckpt ? 1 : L;
    for (int l = 0; l < n_sets; l++) gr_layout_acts(m, B, T, w, g ? &g->acts[l] : NULL);
    float *p;
    p = gr_take(w, N), g ? g->rstd_f = p : 0;
    p = gr_take(w, N * C), g ? g->xn_f = p : 0;
    *acts_bytes = w->off;
    /* scratch */
    const int chunk = gr_chunk_rows(m, (int)N);
    p = gr_take(w, N * C), g ? g->dxn_f = p : 0;
    p = gr_take(w, (size_t)chunk * V), g ? g->logits = p : 0;
    p = gr_take(w, N * C), g ? g->dx = p : 0;
    p = gr_take(w, N * C), g ? g->dxn = p : 0;
    p = gr_take(w, N * HD), g ? g->dq = p : 0;
    p = gr_take(w, N * GD), g ? g->dk = p : 0;
    p = gr_take(w, N * GD), g ? g->dv = p : 0;
    p = gr_take(w, N * HD), g ? g->datt = p : 0;
    p = gr_take(w, N * F), g ? g->dh = p : 0;
    p = gr_take(w, N * F), g ? g->dg = p : 0;
    p = gr_take(w, N * F), g ? g->dup = p : 0;
    p = gr_take(w, op_attn_scratch(T, hp->head_dim, nth)), g ? g->attn_scratch = p : 0;
    /* transposed f32 weights / LoRA factors; dequantized tiles of frozen weights */
    size_t wt = 0, tile = 0, ks = 0;
    const int R = m->lora_rank;
    const train_mat *o = &m->output; /* tied or not, the head reads this one */
    if (o->w) {
        wt = (size_t)o->n_in * o->n_out;
    } else {
        tile = (size_t)TRAIN_TILE_ROWS * o->n_in;
        ks = kern_matmul_scratch(&o->base, chunk);
    }
    for (int l = 0; l < L; l++)
        for (int i = 0; i < GR_N_MATS; i++) {
            const train_mat *x = gr_layer_mat(&m->layers[l], i);
            size_t need = x->w ? (size_t)x->n_in * x->n_out : 0;
            if (R > 0) {
                size_t a = (size_t)x->n_in * R, b = (size_t)R * x->n_out;
                need = need > a ? need : a;
                need = need > b ? need : b;
            }
            wt = need > wt ? need : wt;
            if (!x->w) {
                tile = (size_t)TRAIN_TILE_ROWS * x->n_in > tile ? (size_t)TRAIN_TILE_ROWS * x->n_in : tile;
                size_t s = kern_matmul_scratch(&x->base, (int)N);
                ks = s > ks ? s : ks;
            }
        }
    p = gr_take(w, wt), g ? g->wt = p : 0;
    p = gr_take(w, tile), g ? g->tile = p : 0;
    p = gr_take(w, R > 0 ? N * 2 * R : 0), g ? g->du = p : 0;
    p = gr_take(w, (ks + sizeof(float) - 1) / sizeof(float)), g ? g->kscratch = p : 0;
    (void)V;
}

void train_plan_make(const train_model *m, int B, int T, bool checkpoint, int n_threads, train_plan *out) {
    memset(out, 0, sizeof *out);
    out->B = B, out->T = T, out->checkpoint = checkpoint;
    out->n_threads = n_threads > 0 ? n_threads : pl_cpu_count();
    gr_walk w = {0};
    size_t acts;
    gr_layout(m, B, T, checkpoint, out->n_threads, &w, NULL, &acts);
    out->acts = acts;
    out->scratch = w.off - acts;
    out->params = (size_t)m->n_trainable * sizeof(float);
    out->grads = out->params;
    out->adam = 2 * out->params;
    if (m->mode == TRAIN_LORA) {
        /* the frozen base: mapped, but every page of it is read each step */
        size_t fz = quant_row_size(m->tok_embd.base.type, m->hp.n_embd) * (size_t)m->hp.n_vocab;
        if (!m->tied) fz += quant_row_size(m->output.base.type, m->hp.n_embd) * (size_t)m->hp.n_vocab;
        for (int l = 0; l < m->hp.n_layer; l++)
            for (int i = 0; i < GR_N_MATS; i++) {
                const train_mat *x = gr_layer_mat(&m->layers[l], i);
                fz += quant_row_size(x->base.type, x->n_in) * (size_t)x->n_out;
            }
        out->frozen = fz;
    }
    out->total = out->params + out->grads + out->adam + out->frozen + out->acts + out->scratch;
}

void train_plan_describe(const train_plan *p, char *buf, size_t cap) {
    snprintf(buf, cap,
             "params %.1f MB, grads %.1f MB, AdamW %.1f MB, frozen base %.1f MB, activations %.1f MB%s, "
             "scratch %.1f MB: total %.1f MB",
             p->params / 1e6, p->grads / 1e6, p->adam / 1e6, p->frozen / 1e6, p->acts / 1e6,
             p->checkpoint ? " (checkpointed)" : "", p->scratch / 1e6, p->total / 1e6);
}

pl_status train_plan_fit(const train_model *m, int B, int T, int n_threads, uint64_t budget, int force_ckpt,
                         train_plan *out) {
    if (B < 1 || T < 2 || T > m->n_ctx)
        return pl_fail(PL_ERR_INVALID_ARG, "train: micro-batch %d x %d tokens is invalid (sequence length at most %d)",
                       B, T, m->n_ctx);
    train_plan_make(m, B, T, force_ckpt == 1, n_threads, out);
    if (budget == 0 || out->total <= budget) return PL_OK;
    if (force_ckpt == -1 && !out->checkpoint) {
        train_plan_make(m, B, T, true, n_threads, out);
        if (out->total <= budget) return PL_OK;
    }
    char desc[256];
    train_plan_describe(out, desc, sizeof desc);
    return pl_fail(PL_ERR_BUDGET, "train: the budget of %.1f MB cannot hold %s; use a smaller batch or "
                                  "sequence, --lora, or a larger --budget", budget / 1e6, desc);
}

pl_status train_graph_new(train_model *m, const train_plan *plan, train_graph **out) {
    *out = NULL;
    train_graph *g = calloc(1, sizeof *g);
    if (!g) return pl_fail(PL_ERR_NOMEM, "train: out of memory");
    g->m = m;
    g->plan = *plan;
    g->B = plan->B, g->T = plan->T, g->N = plan->B * plan->T;
    g->chunk = gr_chunk_rows(m, g->N);
    const int L = m->hp.n_layer;
    g->x_res = calloc((size_t)L + 1, sizeof *g->x_res);
    g->acts = calloc(plan->checkpoint ? 1 : (size_t)L, sizeof *g->acts);
    pl_status st = PL_OK;
    if (!g->x_res || !g->acts) {
        st = pl_fail(PL_ERR_NOMEM, "train: out of memory");
        goto fail;
    }
    const size_t bytes = plan->acts + plan->scratch;
    g->block = aligned_alloc(GR_ALIGN, bytes ? bytes : GR_ALIGN);
    if (!g->block) {
        st = pl_fail(PL_ERR_NOMEM, "train: cannot allocate %.1f MB of activations and scratch", bytes / 1e6);
        goto fail;
    }
    gr_walk w = {.base = g->block};
    size_t acts;
    gr_layout(m, plan->B, plan->T, plan->checkpoint, plan->n_threads, &w, g, &acts);
    if (acts != plan->acts || w.off != bytes) {
        st = pl_fail(PL_ERR_INTERNAL, "train: layout (%zu bytes) differs from its plan (%zu)", w.off, bytes);
        goto fail;
    }
    if ((st = pool_new(plan->n_threads, &g->pool))) goto fail;
    *out = g;
    return PL_OK;
fail:
    train_graph_free(g);
    return st;
}

void train_graph_free(train_graph *g) {
    if (!g) return;
    pool_free(g->pool);
    free(g->block);
    free(g->x_res);
    free(g->acts);
    free(g);
}

pl_pool *train_graph_pool(train_graph *g) { return g->pool; }

/* ------------------------------------------------------------ forward */

static void gr_embed(train_graph *g, const int32_t *tokens) {
    const train_model *m = g->m;
    const int C = m->hp.n_embd;
    float *x = g->x_res[0];
    if (m->tok_embd.w) {
        for (int n = 0; n < g->N; n++)
            memcpy(x + (size_t)n * C, m->tok_embd.w + (size_t)tokens[n] * C, sizeof(float) * (size_t)C);
    } else {
        for (int n = 0; n < g->N; n++) kern_row_to_float(&m->tok_embd.base, tokens[n], x + (size_t)n * C);
    }
}

static void gr_layer_fwd(train_graph *g, int il, gr_acts *a) {
    const train_model *m = g->m;
    const model_hparams *hp = &m->hp;
    const train_layer *l = &m->layers[il];
    const int N = g->N, C = hp->n_embd, H = hp->n_head, G = hp->n_head_kv, D = hp->head_dim, F = hp->n_ff;
    const float *x_in = g->x_res[il];
    float *x_out = g->x_res[il + 1];
    const bool neox = m->arch->rope == ARCH_ROPE_NEOX;
    pl_pool *pool = g->pool;

    op_rmsnorm_fwd(pool, a->xn1, a->rstd1, x_in, l->attn_norm.w, N, C, hp->rms_eps);
    op_linear_fwd(pool, &l->wq, l->bq.w, a->xn1, N, a->q, a->u[0], g->wt, g->kscratch);
    op_linear_fwd(pool, &l->wk, l->bk.w, a->xn1, N, a->k, a->u[1], g->wt, g->kscratch);
    op_linear_fwd(pool, &l->wv, l->bv.w, a->xn1, N, a->v, a->u[2], g->wt, g->kscratch);
    if (m->arch->qk_norm) {
        memcpy(a->q_pre, a->q, sizeof(float) * (size_t)N * H * D);
        memcpy(a->k_pre, a->k, sizeof(float) * (size_t)N * G * D);
        op_rmsnorm_fwd(pool, a->q, a->qn_rstd, a->q_pre, l->q_norm.w, N * H, D, hp->rms_eps);
        op_rmsnorm_fwd(pool, a->k, a->kn_rstd, a->k_pre, l->k_norm.w, N * G, D, hp->rms_eps);
    }
    op_rope(a->q, N, g->T, H, D, hp->n_rot, neox, m->rope_cos, m->rope_sin, false);
    op_rope(a->k, N, g->T, G, D, hp->n_rot, neox, m->rope_cos, m->rope_sin, false);
    op_attn_fwd(pool, a->q, a->k, a->v, a->probs, a->att, g->B, g->T, H, G, D, g->attn_scratch);
    op_linear_fwd(pool, &l->wo, NULL, a->att, N, a->x_mid, a->u[3], g->wt, g->kscratch);
    for (size_t i = 0; i < (size_t)N * C; i++) a->x_mid[i] += x_in[i];

    op_rmsnorm_fwd(pool, a->xn2, a->rstd2, a->x_mid, l->ffn_norm.w, N, C, hp->rms_eps);
    op_linear_fwd(pool, &l->w_gate, NULL, a->xn2, N, a->gate, a->u[4], g->wt, g->kscratch);
    op_linear_fwd(pool, &l->w_up, NULL, a->xn2, N, a->up, a->u[5], g->wt, g->kscratch);
    op_swiglu_fwd(pool, a->h, a->gate, a->up, (int64_t)N * F);
    op_linear_fwd(pool, &l->w_down, NULL, a->h, N, x_out, a->u[6], g->wt, g->kscratch);
    for (size_t i = 0; i < (size_t)N * C; i++) x_out[i] += a->x_mid[i];
}

/* dx holds dL/d(x_out) on entry and dL/d(x_in) on return. */
static void gr_layer_bwd(train_graph *g, int il, const gr_acts *a) {
    const train_model *m = g->m;
    const model_hparams *hp = &m->hp;
    const train_layer *l = &m->layers[il];
    const int N = g->N, C = hp->n_embd, H = hp->n_head, G = hp->n_head_kv, D = hp->head_dim, F = hp->n_ff;
    const size_t NC = (size_t)N * C;
    const bool neox = m->arch->rope == ARCH_ROPE_NEOX;
    pl_pool *pool = g->pool;
    float *dx = g->dx;

    /* feed-forward */
    memset(g->dh, 0, sizeof(float) * (size_t)N * F);
    op_linear_bwd(pool, &l->w_down, NULL, a->h, dx, a->u[6], N, g->dh, g->du, g->tile);
    op_swiglu_bwd(pool, g->dg, g->dup, g->dh, a->gate, a->up, (int64_t)N * F);
    memset(g->dxn, 0, sizeof(float) * NC);
    op_linear_bwd(pool, &l->w_gate, NULL, a->xn2, g->dg, a->u[4], N, g->dxn, g->du, g->tile);
    op_linear_bwd(pool, &l->w_up, NULL, a->xn2, g->dup, a->u[5], N, g->dxn, g->du, g->tile);
    op_rmsnorm_bwd(pool, dx, l->ffn_norm.g, g->dxn, a->x_mid, a->rstd2, l->ffn_norm.w, N, C, true);

    /* attention */
    memset(g->datt, 0, sizeof(float) * (size_t)N * H * D);
    op_linear_bwd(pool, &l->wo, NULL, a->att, dx, a->u[3], N, g->datt, g->du, g->tile);
    op_attn_bwd(pool, g->datt, a->q, a->k, a->v, a->probs, g->dq, g->dk, g->dv, g->B, g->T, H, G, D,
                g->attn_scratch);
    op_rope(g->dq, N, g->T, H, D, hp->n_rot, neox, m->rope_cos, m->rope_sin, true);
    op_rope(g->dk, N, g->T, G, D, hp->n_rot, neox, m->rope_cos, m->rope_sin, true);
    if (m->arch->qk_norm) {
        op_rmsnorm_bwd(pool, g->dq, l->q_norm.g, g->dq, a->q_pre, a->qn_rstd, l->q_norm.w, N * H, D, false);
        op_rmsnorm_bwd(pool, g->dk, l->k_norm.g, g->dk, a->k_pre, a->kn_rstd, l->k_norm.w, N * G, D, false);
    }
    memset(g->dxn, 0, sizeof(float) * NC);
    op_linear_bwd(pool, &l->wq, l->bq.g, a->xn1, g->dq, a->u[0], N, g->dxn, g->du, g->tile);
    op_linear_bwd(pool, &l->wk, l->bk.g, a->xn1, g->dk, a->u[1], N, g->dxn, g->du, g->tile);
    op_linear_bwd(pool, &l->wv, l->bv.g, a->xn1, g->dv, a->u[2], N, g->dxn, g->du, g->tile);
    op_rmsnorm_bwd(pool, dx, l->attn_norm.g, g->dxn, g->x_res[il], a->rstd1, l->attn_norm.w, N, C, true);
}

/* Final norm, logits in chunks, loss; with train, the output layer's backward
 * too, leaving dL/d(x_res[L]) in g->dx. With logits_out, every row's logits. */
static double gr_head(train_graph *g, const int32_t *targets, bool train, float grad_scale, float *logits_out) {
    const train_model *m = g->m;
    const model_hparams *hp = &m->hp;
    const int N = g->N, C = hp->n_embd, V = hp->n_vocab, L = hp->n_layer;
    const train_mat *o = &m->output;
    op_rmsnorm_fwd(g->pool, g->xn_f, g->rstd_f, g->x_res[L], m->out_norm.w, N, C, hp->rms_eps);
    if (o->w) train_transpose(g->pool, o->w, V, C, g->wt); /* once for every chunk */
    if (train) memset(g->dxn_f, 0, sizeof(float) * (size_t)N * C);
    double nll = 0.0;
    for (int r0 = 0; r0 < N; r0 += g->chunk) {
        const int rows = N - r0 < g->chunk ? N - r0 : g->chunk;
        float *lg = logits_out ? logits_out + (size_t)r0 * V : g->logits;
        const float *xr = g->xn_f + (size_t)r0 * C;
        if (o->w)
            train_gemm(g->pool, rows, V, C, xr, C, 1, g->wt, V, lg, V, false);
        else
            kern_matmul(g->pool, &o->base, xr, C, rows, lg, V, NULL, g->kscratch);
        nll += op_xent(g->pool, lg, targets + r0, rows, V, train ? g->logits : NULL, grad_scale);
        if (train)
            op_linear_bwd(g->pool, o, NULL, xr, g->logits, NULL, rows, g->dxn_f + (size_t)r0 * C, NULL, g->tile);
    }
    if (train) op_rmsnorm_bwd(g->pool, g->dx, m->out_norm.g, g->dxn_f, g->x_res[L], g->rstd_f, m->out_norm.w, N, C, false);
    return nll;
}

static pl_status gr_check(const train_graph *g, const int32_t *tokens, const int32_t *targets, int64_t *count) {
    const int V = g->m->hp.n_vocab;
    int64_t c = 0;
    for (int n = 0; n < g->N; n++) {
        if (tokens[n] < 0 || tokens[n] >= V)
            return pl_fail(PL_ERR_INVALID_ARG, "train: token %d at row %d is outside the vocabulary (0..%d)",
                           tokens[n], n, V - 1);
        if (targets[n] >= V)
            return pl_fail(PL_ERR_INVALID_ARG, "train: target %d at row %d is outside the vocabulary", targets[n], n);
        c += targets[n] >= 0;
    }
    *count = c;
    return PL_OK;
}

static void gr_forward_layers(train_graph *g) {
    for (int il = 0; il < g->m->hp.n_layer; il++)
        gr_layer_fwd(g, il, &g->acts[g->plan.checkpoint ? 0 : il]);
}

pl_status train_graph_eval(train_graph *g, const int32_t *tokens, const int32_t *targets, double *nll,
                           int64_t *count, float *logits) {
    pl_status st = gr_check(g, tokens, targets, count);
    if (st) return st;
    gr_embed(g, tokens);
    gr_forward_layers(g);
    *nll = gr_head(g, targets, false, 0.0f, logits);
    return PL_OK;
}

pl_status train_graph_step(train_graph *g, const int32_t *tokens, const int32_t *targets, float grad_scale,
                           double *nll, int64_t *count) {
    pl_status st = gr_check(g, tokens, targets, count);
    if (st) return st;
    train_model *m = g->m;
    gr_embed(g, tokens);
    gr_forward_layers(g);
    *nll = gr_head(g, targets, true, grad_scale, NULL);
    for (int il = m->hp.n_layer - 1; il >= 0; il--) {
        gr_acts *a = &g->acts[g->plan.checkpoint ? 0 : il];
        if (g->plan.checkpoint) gr_layer_fwd(g, il, a); /* recompute from the saved layer input */
        gr_layer_bwd(g, il, a);
    }
    if (m->tok_embd.g) {
        const int C = m->hp.n_embd;
        for (int n = 0; n < g->N; n++) train_axpy(m->tok_embd.g + (size_t)tokens[n] * C, 1.0f, g->dx + (size_t)n * C, C);
    }
    return PL_OK;
}
