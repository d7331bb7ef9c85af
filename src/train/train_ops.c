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

void op_rmsnorm_fwd(float *y, float *rstd, const float *x, const float *w, int rows, int n, float eps) {
    for (int r = 0; r < rows; r++) {
        const float *xr = x + (size_t)r * n;
        float *yr = y + (size_t)r * n;
        double ss = 0.0;
        for (int i = 0; i < n; i++) ss += (double)xr[i] * xr[i];
        const float s = 1.0f / sqrtf((float)(ss / n) + eps);
        rstd[r] = s;
        for (int i = 0; i < n; i++) yr[i] = xr[i] * s * w[i];
    }
}

void op_rmsnorm_bwd(float *dx, float *dw, const float *dy, const float *x, const float *rstd, const float *w,
                    int rows, int n, bool accumulate) {
    for (int r = 0; r < rows; r++) {
        const float *xr = x + (size_t)r * n, *dyr = dy + (size_t)r * n;
        float *dxr = dx + (size_t)r * n;
        const float s = rstd[r];
        /* y_i = x_i s w_i with s = (mean x^2 + eps)^-1/2, ds/dx_i = -s^3 x_i / n */
        double dot = 0.0;
        for (int i = 0; i < n; i++) dot += (double)dyr[i] * w[i] * xr[i];
        const float c = (float)(dot * s * s * s / n);
        if (dw)
            for (int i = 0; i < n; i++) dw[i] += dyr[i] * xr[i] * s;
        if (accumulate)
            for (int i = 0; i < n; i++) dxr[i] += dyr[i] * w[i] * s - xr[i] * c;
        else
            for (int i = 0; i < n; i++) dxr[i] = dyr[i] * w[i] * s - xr[i] * c;
    }
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

typedef struct attn_job {
    const float *q, *k, *v, *probs, *dout;
    float *out, *dq, *dk, *dv, *scratch;
    float *probs_w;
    int B, T, H, G, D;
} attn_job;

/* Items (b, h, t) dealt round-robin, so the long causal rows spread evenly. */
static void attn_fwd_worker(void *arg, int ith, int nth) {
    const attn_job *j = arg;
    const int T = j->T, H = j->H, G = j->G, D = j->D, grp = H / G;
    const size_t qrow = (size_t)H * D, krow = (size_t)G * D;
    const float scale = 1.0f / sqrtf((float)D);
    for (int64_t item = ith; item < (int64_t)j->B * H * T; item += nth) {
        const int t = (int)(item % T), h = (int)(item / T % H), b = (int)(item / T / H), g = h / grp;
        const float *q = j->q + ((size_t)b * T + t) * qrow + (size_t)h * D;
        float *p = j->probs_w + (((size_t)b * H + h) * T + t) * T;
        float mx = -INFINITY;
        for (int s = 0; s <= t; s++) {
            p[s] = train_dot(q, j->k + ((size_t)b * T + s) * krow + (size_t)g * D, D) * scale;
            mx = p[s] > mx ? p[s] : mx;
        }
        double sum = 0.0;
        for (int s = 0; s <= t; s++) {
            p[s] = expf(p[s] - mx);
            sum += p[s];
        }
        const float inv = (float)(1.0 / sum);
        float *o = j->out + ((size_t)b * T + t) * qrow + (size_t)h * D;
        memset(o, 0, sizeof(float) * (size_t)D);
        for (int s = 0; s <= t; s++) {
            p[s] *= inv;
            train_axpy(o, p[s], j->v + ((size_t)b * T + s) * krow + (size_t)g * D, D);
        }
    }
}

void op_attn_fwd(pl_pool *pool, const float *q, const float *k, const float *v, float *probs, float *out, int B,
                 int T, int H, int G, int D) {
    attn_job j = {.q = q, .k = k, .v = v, .probs_w = probs, .out = out, .B = B, .T = T, .H = H, .G = G, .D = D};
    pool_run(pool, attn_fwd_worker, &j);
}

/* Items (b, g): a thread owns the K/V head's gradient rows, and the dq rows
 * of the query heads in its group, so no two threads write the same row. */
static void attn_bwd_worker(void *arg, int ith, int nth) {
    const attn_job *j = arg;
    const int T = j->T, H = j->H, G = j->G, D = j->D, grp = H / G;
    const size_t qrow = (size_t)H * D, krow = (size_t)G * D;
    const float scale = 1.0f / sqrtf((float)D);
    float *dp = j->scratch + (size_t)ith * T;
    for (int item = ith; item < j->B * G; item += nth) {
        const int b = item / G, g = item % G;
        for (int t = 0; t < T; t++) {
            memset(j->dk + ((size_t)b * T + t) * krow + (size_t)g * D, 0, sizeof(float) * (size_t)D);
            memset(j->dv + ((size_t)b * T + t) * krow + (size_t)g * D, 0, sizeof(float) * (size_t)D);
        }
        for (int h = g * grp; h < (g + 1) * grp; h++) {
            for (int t = 0; t < T; t++) {
                const size_t qi = ((size_t)b * T + t) * qrow + (size_t)h * D;
                const float *dO = j->dout + qi, *q = j->q + qi;
                const float *p = j->probs + (((size_t)b * H + h) * T + t) * T;
                double sum = 0.0;
                for (int s = 0; s <= t; s++) {
                    dp[s] = train_dot(dO, j->v + ((size_t)b * T + s) * krow + (size_t)g * D, D);
                    sum += (double)p[s] * dp[s];
                }
                float *dq = j->dq + qi;
                memset(dq, 0, sizeof(float) * (size_t)D);
                for (int s = 0; s <= t; s++) {
                    const size_t ki = ((size_t)b * T + s) * krow + (size_t)g * D;
                    const float ds = p[s] * (dp[s] - (float)sum) * scale;
                    train_axpy(dq, ds, j->k + ki, D);
                    train_axpy(j->dk + ki, ds, q, D);
                    train_axpy(j->dv + ki, p[s], dO, D);
                }
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

void op_swiglu_fwd(float *h, const float *g, const float *u, int64_t n) {
    for (int64_t i = 0; i < n; i++) h[i] = g[i] / (1.0f + expf(-g[i])) * u[i];
}

void op_swiglu_bwd(float *dg, float *du, const float *dh, const float *g, const float *u, int64_t n) {
    for (int64_t i = 0; i < n; i++) {
        const float s = 1.0f / (1.0f + expf(-g[i]));
        const float d = dh[i];
        du[i] = d * g[i] * s;
        dg[i] = d * u[i] * s * (1.0f + g[i] * (1.0f - s));
    }
}

double op_xent(const float *logits, const int32_t *targets, int rows, int V, float *dlogits, float grad_scale) {
    double nll = 0.0;
    for (int r = 0; r < rows; r++) {
        const float *l = logits + (size_t)r * V;
        float *d = dlogits ? dlogits + (size_t)r * V : NULL;
        const int32_t tg = targets[r];
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
            for (int i = 0; i < V; i++) d[i] = (float)(exp((double)l[i] - lse) * grad_scale);
            d[tg] -= grad_scale;
        }
    }
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
