/*
 * The training ops: forward and backward of RMSNorm, rotary embedding,
 * causal GQA attention, SwiGLU, cross-entropy and the linear layer (f32
 * trainable, or frozen base of any type, with an optional LoRA path).
 * Forwards compute what src/model/forward.c and the kernels compute, in the
 * same order of operations where it matters (RMSNorm's double sum, the
 * softmax's max shift). Backwards ACCUMULATE parameter gradients; input
 * gradients are overwritten unless the function says otherwise.
 * tests/test_train_ops.c checks every backward against finite differences.
 */
#include "train.h"

#include <math.h>
#include <string.h>

/* Run fn over [0, n) split in nth contiguous ranges (serially when pool is NULL). */
typedef struct par_job {
    void (*fn)(void *arg, int64_t i0, int64_t i1);
    void *arg;
    int64_t n;
} par_job;

static void par_worker(void *arg, int ith, int nth) {
    const par_job *j = arg;
    const int64_t i0 = j->n * ith / nth, i1 = j->n * (ith + 1) / nth;
    if (i0 < i1) j->fn(j->arg, i0, i1);
}

static void par_for(pl_pool *pool, int64_t n, void (*fn)(void *, int64_t, int64_t), void *arg) {
    if (!pool || n < 64) {
        if (n > 0) fn(arg, 0, n);
        return;
    }
    par_job j = {fn, arg, n};
    pool_run(pool, par_worker, &j);
}

typedef struct rms_job {
    float *y, *rstd, *dx, *dw;
    const float *x, *w, *dy;
    int n;
    int64_t rows;
    float eps;
    bool accumulate;
} rms_job;

static void rms_fwd_rows(void *arg, int64_t r0, int64_t r1) {
    const rms_job *j = arg;
    const int n = j->n;
    for (int64_t r = r0; r < r1; r++) {
        const float *xr = j->x + r * n;
        float *yr = j->y + r * n;
        double ss = 0.0;
        for (int i = 0; i < n; i++) ss += (double)xr[i] * xr[i];
        const float s = 1.0f / sqrtf((float)(ss / n) + j->eps);
        j->rstd[r] = s;
        for (int i = 0; i < n; i++) yr[i] = xr[i] * s * j->w[i];
    }
}

void op_rmsnorm_fwd(pl_pool *pool, float *y, float *rstd, const float *x, const float *w, int rows, int n, float eps) {
    rms_job j = {.y = y, .rstd = rstd, .x = x, .w = w, .n = n, .eps = eps};
    par_for(pool, rows, rms_fwd_rows, &j);
}

static void rms_bwd_rows(void *arg, int64_t r0, int64_t r1) {
    const rms_job *j = arg;
    const int n = j->n;
    const float *w = j->w;
    for (int64_t r = r0; r < r1; r++) {
        const float *xr = j->x + r * n, *dyr = j->dy + r * n;
        float *dxr = j->dx + r * n;
        const float s = j->rstd[r];
        /* y_i = x_i s w_i with s = (mean x^2 + eps)^-1/2, ds/dx_i = -s^3 x_i / n */
        double dot = 0.0;
        for (int i = 0; i < n; i++) dot += (double)dyr[i] * w[i] * xr[i];
        const float c = (float)(dot * s * s * s / n);
        if (j->accumulate)
            for (int i = 0; i < n; i++) dxr[i] += dyr[i] * w[i] * s - xr[i] * c;
        else
            for (int i = 0; i < n; i++) dxr[i] = dyr[i] * w[i] * s - xr[i] * c;
    }
}

/* dw over columns: each thread owns a range of w's elements. */
static void rms_bwd_cols(void *arg, int64_t i0, int64_t i1) {
    const rms_job *j = arg;
    for (int64_t r = 0; r < j->rows; r++) {
        const float *xr = j->x + r * j->n, *dyr = j->dy + r * j->n;
        const float s = j->rstd[r];
        for (int64_t i = i0; i < i1; i++) j->dw[i] += dyr[i] * xr[i] * s;
    }
}

void op_rmsnorm_bwd(pl_pool *pool, float *dx, float *dw, const float *dy, const float *x, const float *rstd,
                    const float *w, int rows, int n, bool accumulate) {
    /* dw first: dx may alias dy */
    if (dw) {
        rms_job jc = {.dw = dw, .x = x, .dy = dy, .rstd = (float *)rstd, .n = n, .rows = rows};
        par_for(pool, n, rms_bwd_cols, &jc);
    }
    rms_job j = {.dx = dx, .x = x, .w = w, .dy = dy, .rstd = (float *)rstd, .n = n, .accumulate = accumulate};
    par_for(pool, rows, rms_bwd_rows, &j);
}

void op_rope(float *x, int rows, int T, int n_heads, int D, int n_rot, bool neox, const float *cos_t,
             const float *sin_t, bool inverse) {
    const int half = n_rot / 2;
    const float sign = inverse ? -1.0f : 1.0f;
    for (int r = 0; r < rows; r++) {
        const int pos = r % T;
        const float *cs = cos_t + (size_t)pos * half, *sn = sin_t + (size_t)pos * half;
        for (int h = 0; h < n_heads; h++) {
            float *v = x + ((size_t)r * n_heads + h) * D;
            for (int i = 0; i < half; i++) {
                const int i0 = neox ? i : 2 * i, i1 = neox ? i + half : 2 * i + 1;
                const float x0 = v[i0], x1 = v[i1], s = sign * sn[i];
                v[i0] = x0 * cs[i] - x1 * s;
                v[i1] = x0 * s + x1 * cs[i];
            }
        }
    }
}

/* ------------------------------------------------------------ attention
 * Per head, as small GEMMs: S = Q K^T (rows in blocks of ATT_TB; a block of
 * query rows [t0, t1) needs keys [0, t1) only), softmax over s <= t with the
 * rest of the row set to zero, O = P V. The backward per K/V head:
 * dP = dO V^T, dS = P * (dP - rowsum(P dP)) * scale, dQ = dS K, and, summed
 * over the group's query heads, dK += dS^T Q, dV += P^T dO. */

#define ATT_TB 64

size_t op_attn_scratch(int T, int D, int nth) { return (size_t)nth * ((size_t)T * T + (size_t)D * T); }

typedef struct attn_job {
    const float *q, *k, *v, *probs, *dout;
    float *out, *dq, *dk, *dv, *scratch;
    float *probs_w;
    int B, T, H, G, D;
} attn_job;

/* dst (D x T) = transpose of T rows of D at stride ld */
static void attn_transpose(const float *src, int64_t ld, int T, int D, float *dst) {
    for (int t = 0; t < T; t++)
        for (int d = 0; d < D; d++) dst[(size_t)d * T + t] = src[t * ld + d];
}

static void attn_fwd_worker(void *arg, int ith, int nth) {
    const attn_job *j = arg;
    const int T = j->T, H = j->H, G = j->G, D = j->D, grp = H / G;
    const int64_t qs = (int64_t)H * D, ks = (int64_t)G * D;
    const float scale = 1.0f / sqrtf((float)D);
    float *kt = j->scratch + (size_t)ith * ((size_t)T * T + (size_t)D * T) + (size_t)T * T;
    for (int item = ith; item < j->B * H; item += nth) {
        const int b = item / H, h = item % H, g = h / grp;
        const float *Q = j->q + (size_t)b * T * qs + (size_t)h * D;
        const float *K = j->k + (size_t)b * T * ks + (size_t)g * D;
        const float *V = j->v + (size_t)b * T * ks + (size_t)g * D;
        float *P = j->probs_w + ((size_t)b * H + h) * T * T;
        float *O = j->out + (size_t)b * T * qs + (size_t)h * D;
        attn_transpose(K, ks, T, D, kt);
        for (int t0 = 0; t0 < T; t0 += ATT_TB) {
            const int t1 = t0 + ATT_TB < T ? t0 + ATT_TB : T;
            train_gemm(NULL, t1 - t0, t1, D, Q + t0 * qs, qs, 1, kt, T, P + (size_t)t0 * T, T, false);
        }
        for (int t = 0; t < T; t++) {
            float *p = P + (size_t)t * T;
            float mx = -INFINITY;
            for (int s = 0; s <= t; s++) {
                p[s] *= scale;
                mx = p[s] > mx ? p[s] : mx;
            }
            double sum = 0.0;
            for (int s = 0; s <= t; s++) {
                p[s] = expf(p[s] - mx);
                sum += p[s];
            }
            const float inv = (float)(1.0 / sum);
            for (int s = 0; s <= t; s++) p[s] *= inv;
            for (int s = t + 1; s < T; s++) p[s] = 0.0f;
        }
        for (int t0 = 0; t0 < T; t0 += ATT_TB) {
            const int t1 = t0 + ATT_TB < T ? t0 + ATT_TB : T;
            train_gemm(NULL, t1 - t0, D, t1, P + (size_t)t0 * T, T, 1, V, ks, O + t0 * qs, qs, false);
        }
    }
}

void op_attn_fwd(pl_pool *pool, const float *q, const float *k, const float *v, float *probs, float *out, int B,
                 int T, int H, int G, int D, float *scratch) {
    attn_job j = {.q = q, .k = k, .v = v, .probs_w = probs, .out = out, .scratch = scratch,
                  .B = B, .T = T, .H = H, .G = G, .D = D};
    pool_run(pool, attn_fwd_worker, &j);
}

/* Items (b, g): a thread owns the K/V head's gradient rows, and the dq rows
 * of the query heads in its group, so no two threads write the same row. */
static void attn_bwd_worker(void *arg, int ith, int nth) {
    const attn_job *j = arg;
    const int T = j->T, H = j->H, G = j->G, D = j->D, grp = H / G;
    const int64_t qs = (int64_t)H * D, ks = (int64_t)G * D;
    const float scale = 1.0f / sqrtf((float)D);
    float *dS = j->scratch + (size_t)ith * ((size_t)T * T + (size_t)D * T), *vt = dS + (size_t)T * T;
    for (int item = ith; item < j->B * G; item += nth) {
        const int b = item / G, g = item % G;
        const float *K = j->k + (size_t)b * T * ks + (size_t)g * D;
        const float *V = j->v + (size_t)b * T * ks + (size_t)g * D;
        float *dK = j->dk + (size_t)b * T * ks + (size_t)g * D, *dV = j->dv + (size_t)b * T * ks + (size_t)g * D;
        for (int t = 0; t < T; t++) {
            memset(dK + t * ks, 0, sizeof(float) * (size_t)D);
            memset(dV + t * ks, 0, sizeof(float) * (size_t)D);
        }
        attn_transpose(V, ks, T, D, vt);
        for (int h = g * grp; h < (g + 1) * grp; h++) {
            const size_t qo = (size_t)b * T * qs + (size_t)h * D;
            const float *dO = j->dout + qo, *Q = j->q + qo;
            const float *P = j->probs + ((size_t)b * H + h) * T * T;
            float *dQ = j->dq + qo;
            for (int t0 = 0; t0 < T; t0 += ATT_TB) {
                const int t1 = t0 + ATT_TB < T ? t0 + ATT_TB : T;
                train_gemm(NULL, t1 - t0, t1, D, dO + t0 * qs, qs, 1, vt, T, dS + (size_t)t0 * T, T, false);
            }
            for (int t = 0; t < T; t++) {
                const float *p = P + (size_t)t * T;
                float *d = dS + (size_t)t * T;
                double sum = 0.0;
                for (int s = 0; s <= t; s++) sum += (double)p[s] * d[s];
                for (int s = 0; s <= t; s++) d[s] = p[s] * (d[s] - (float)sum) * scale;
                for (int s = t + 1; s < T; s++) d[s] = 0.0f;
            }
            for (int t0 = 0; t0 < T; t0 += ATT_TB) {
                const int t1 = t0 + ATT_TB < T ? t0 + ATT_TB : T;
                /* dQ rows [t0, t1) = dS[t0:t1, 0:t1] K[0:t1] */
                train_gemm(NULL, t1 - t0, D, t1, dS + (size_t)t0 * T, T, 1, K, ks, dQ + t0 * qs, qs, false);
                /* key rows [t0, t1) get dS[t, s] for t >= t0 only (zero above the diagonal) */
                train_gemm(NULL, t1 - t0, D, T - t0, dS + (size_t)t0 * T + t0, 1, T, Q + t0 * qs, qs, dK + t0 * ks, ks, true);
                train_gemm(NULL, t1 - t0, D, T - t0, P + (size_t)t0 * T + t0, 1, T, dO + t0 * qs, qs, dV + t0 * ks, ks, true);
            }
        }
    }
}

void op_attn_bwd(pl_pool *pool, const float *dout, const float *q, const float *k, const float *v,
                 const float *probs, float *dq, float *dk, float *dv, int B, int T, int H, int G, int D,
                 float *scratch) {
    attn_job j = {.q = q, .k = k, .v = v, .probs = probs, .dout = dout, .dq = dq, .dk = dk, .dv = dv,
                  .scratch = scratch, .B = B, .T = T, .H = H, .G = G, .D = D};
    pool_run(pool, attn_bwd_worker, &j);
}

typedef struct sw_job {
    float *h, *dg, *du;
    const float *g, *u, *dh;
} sw_job;

static void sw_fwd_range(void *arg, int64_t i0, int64_t i1) {
    const sw_job *j = arg;
    for (int64_t i = i0; i < i1; i++) j->h[i] = j->g[i] / (1.0f + expf(-j->g[i])) * j->u[i];
}

void op_swiglu_fwd(pl_pool *pool, float *h, const float *g, const float *u, int64_t n) {
    sw_job j = {.h = h, .g = g, .u = u};
    par_for(pool, n, sw_fwd_range, &j);
}

static void sw_bwd_range(void *arg, int64_t i0, int64_t i1) {
    const sw_job *j = arg;
    for (int64_t i = i0; i < i1; i++) {
        const float g = j->g[i], s = 1.0f / (1.0f + expf(-g));
        const float d = j->dh[i];
        j->du[i] = d * g * s;
        j->dg[i] = d * j->u[i] * s * (1.0f + g * (1.0f - s));
    }
}

void op_swiglu_bwd(pl_pool *pool, float *dg, float *du, const float *dh, const float *g, const float *u, int64_t n) {
    sw_job j = {.dg = dg, .du = du, .g = g, .u = u, .dh = dh};
    par_for(pool, n, sw_bwd_range, &j);
}

typedef struct xe_job {
    const float *logits;
    const int32_t *targets;
    float *dlogits;
    int V;
    float grad_scale;
    double *part; /* per-range sums, indexed by the range's first row */
} xe_job;

static double xe_rows(const xe_job *j, int64_t r0, int64_t r1) {
    const int V = j->V;
    double nll = 0.0;
    for (int64_t r = r0; r < r1; r++) {
        const float *l = j->logits + r * V;
        float *d = j->dlogits ? j->dlogits + r * V : NULL;
        const int32_t tg = j->targets[r];
        if (tg < 0) {
            if (d) memset(d, 0, sizeof(float) * (size_t)V);
            continue;
        }
        float mx = -INFINITY;
        for (int i = 0; i < V; i++) mx = l[i] > mx ? l[i] : mx;
        double sum = 0.0;
        for (int i = 0; i < V; i++) sum += exp((double)(l[i] - mx));
        const double lse = mx + log(sum);
        nll += lse - l[tg];
        if (d) {
            /* d may alias l: each element is read before it is written */
            for (int i = 0; i < V; i++) d[i] = (float)(exp((double)l[i] - lse) * j->grad_scale);
            d[tg] -= j->grad_scale;
        }
    }
    return nll;
}

static void xe_worker(void *arg, int ith, int nth) {
    xe_job *j = arg;
    const int64_t rows = (int64_t)j->part[0];
    j->part[1 + ith] = xe_rows(j, rows * ith / nth, rows * (ith + 1) / nth);
}

double op_xent(pl_pool *pool, const float *logits, const int32_t *targets, int rows, int V, float *dlogits,
               float grad_scale) {
    xe_job j = {logits, targets, dlogits, V, grad_scale, NULL};
    const int nth = pool ? pool_size(pool) : 1;
    if (nth == 1 || rows < 2 * nth) return xe_rows(&j, 0, rows);
    double part[1 + 64];
    if (nth > 64) return xe_rows(&j, 0, rows);
    part[0] = rows;
    j.part = part;
    pool_run(pool, xe_worker, &j);
    double nll = 0.0;
    for (int i = 0; i < nth; i++) nll += part[1 + i]; /* fixed order: same sum for the same split */
    return nll;
}

/* ------------------------------------------------------------ linear layer */

void op_linear_fwd(pl_pool *pool, const train_mat *w, const float *bias, const float *x, int N, float *y, float *u,
                   float *wt, void *kscratch) {
    const int K = w->n_in, O = w->n_out;
    if (w->w) {
        train_transpose(pool, w->w, O, K, wt);
        train_gemm(pool, N, O, K, x, K, 1, wt, O, y, O, false);
        if (bias)
            for (int t = 0; t < N; t++)
                for (int r = 0; r < O; r++) y[(size_t)t * O + r] += bias[r];
    } else {
        kern_matmul(pool, &w->base, x, K, N, y, O, bias, kscratch);
    }
    if (w->rank > 0) {
        const int R = w->rank;
        train_transpose(pool, w->a, R, K, wt); /* A^T (K, R) */
        train_gemm(pool, N, R, K, x, K, 1, wt, R, u, R, false);
        train_transpose(pool, w->b, O, R, wt); /* B^T (R, O), scaled */
        for (int64_t i = 0; i < (int64_t)R * O; i++) wt[i] *= w->scale;
        train_gemm(pool, N, O, R, u, R, 1, wt, O, y, O, true);
    }
}

void op_linear_bwd(pl_pool *pool, const train_mat *w, float *dbias, const float *x, const float *dy,
                   const float *u, int N, float *dx, float *du, float *tile) {
    const int K = w->n_in, O = w->n_out;
    if (dbias)
        for (int t = 0; t < N; t++)
            for (int r = 0; r < O; r++) dbias[r] += dy[(size_t)t * O + r];
    if (w->w) {
        /* dW += dy^T x ; dx += dy W */
        if (w->g) train_gemm(pool, O, K, N, dy, 1, O, x, K, w->g, K, true);
        if (dx) train_gemm(pool, N, K, O, dy, O, 1, w->w, K, dx, K, true);
    } else if (dx) {
        /* frozen base of any type: dequantize TRAIN_TILE_ROWS rows at a time */
        const quant_traits *tr = quant_get(w->base.type);
        const size_t rs = quant_row_size(w->base.type, K);
        for (int r0 = 0; r0 < O; r0 += TRAIN_TILE_ROWS) {
            const int nr = O - r0 < TRAIN_TILE_ROWS ? O - r0 : TRAIN_TILE_ROWS;
            for (int i = 0; i < nr; i++)
                tr->to_float((const uint8_t *)w->base.data + (size_t)(r0 + i) * rs, tile + (size_t)i * K, K);
            train_gemm(pool, N, K, nr, dy + r0, O, 1, tile, K, dx, K, true);
        }
    }
    if (w->rank > 0) {
        const int R = w->rank;
        float *us = du + (size_t)N * R; /* scale * u */
        for (int64_t i = 0; i < (int64_t)N * R; i++) us[i] = u[i] * w->scale;
        /* y += (s u) B^T:  dB += dy^T (s u);  du = s (dy B) */
        train_gemm(pool, O, R, N, dy, 1, O, us, R, w->gb, R, true);
        train_gemm(pool, N, R, O, dy, O, 1, w->b, R, du, R, false);
        for (int64_t i = 0; i < (int64_t)N * R; i++) du[i] *= w->scale;
        /* u = x A^T:  dA += du^T x;  dx += du A */
        train_gemm(pool, R, K, N, du, 1, R, x, K, w->ga, K, true);
        if (dx) train_gemm(pool, N, K, R, du, R, 1, w->a, K, dx, K, true);
    }
}
