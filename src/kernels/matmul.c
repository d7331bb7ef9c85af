/*
 * Matrix times a batch of activation rows, threaded over weight rows.
 * Each activation row is converted once to the weight type's vec_dot_type
 * (ggml's scheme), then every weight row is dotted with all T rows while it is
 * hot in cache. Rows are split between threads in contiguous ranges.
 */
#include "kernels.h"

#include <math.h>
#include <string.h>

size_t kern_matmul_scratch(const kern_matrix *w, int T) {
    const quant_traits *tr = quant_get(w->type);
    if (!tr) return 0;
    if (tr->vec_dot_type == QT_F32) return 0;
    return (size_t)quant_row_size(tr->vec_dot_type, w->n_in) * (size_t)T;
}

typedef struct matmul_job {
    const kern_matrix *w;
    const quant_traits *tr;
    const float *X;
    int ldx, T;
    float *Y;
    int ldy;
    const float *bias;
    const uint8_t *act; /* converted activations */
    size_t act_row;     /* bytes per converted row */
    uint8_t *scratch_w;
} matmul_job;

static void matmul_convert(void *arg, int ith, int nth) {
    matmul_job *j = arg;
    const quant_traits *vt = quant_get(j->tr->vec_dot_type);
    for (int t = ith; t < j->T; t += nth)
        vt->from_float(j->X + (size_t)t * j->ldx, (uint8_t *)j->scratch_w + (size_t)t * j->act_row, j->w->n_in);
}

static void matmul_rows(void *arg, int ith, int nth) {
    matmul_job *j = arg;
    const int64_t n_out = j->w->n_out;
    const int64_t r0 = n_out * ith / nth, r1 = n_out * (ith + 1) / nth;
    const size_t wrow = quant_row_size(j->w->type, j->w->n_in);
    const uint8_t *W = j->w->data;
    for (int64_t r = r0; r < r1; r++) {
        const uint8_t *wr = W + (size_t)r * wrow;
        const float b = j->bias ? j->bias[r] : 0.0f;
        for (int t = 0; t < j->T; t++) {
            float s;
            j->tr->vec_dot((int)j->w->n_in, &s, wr, j->act + (size_t)t * j->act_row);
            j->Y[(size_t)t * j->ldy + r] = s + b;
        }
    }
}

void kern_matmul(pl_pool *pool, const kern_matrix *w, const float *X, int ldx, int T,
                 float *Y, int ldy, const float *bias, void *scratch) {
    matmul_job j = {.w = w, .tr = quant_get(w->type), .X = X, .ldx = ldx, .T = T,
                    .Y = Y, .ldy = ldy, .bias = bias, .scratch_w = scratch};
    if (j.tr->vec_dot_type == QT_F32 && ldx == (int)w->n_in) {
        j.act = (const uint8_t *)X;
        j.act_row = (size_t)w->n_in * sizeof(float);
    } else if (j.tr->vec_dot_type == QT_F32) {
        /* strided f32 input: vec_dot reads n_in floats from each row start */
        j.act = (const uint8_t *)X;
        j.act_row = (size_t)ldx * sizeof(float);
    } else {
        j.act_row = quant_row_size(j.tr->vec_dot_type, w->n_in);
        pool_run(pool, matmul_convert, &j);
        j.act = scratch;
    }
    pool_run(pool, matmul_rows, &j);
}

void kern_rmsnorm(float *y, const float *x, const float *w, int n, float eps) {
    double ss = 0.0;
    for (int i = 0; i < n; i++) ss += (double)x[i] * x[i];
    const float scale = 1.0f / sqrtf((float)(ss / n) + eps);
    if (w)
        for (int i = 0; i < n; i++) y[i] = x[i] * scale * w[i];
    else
        for (int i = 0; i < n; i++) y[i] = x[i] * scale;
}

void kern_softmax(float *x, int n) {
    float mx = -INFINITY;
    for (int i = 0; i < n; i++) mx = x[i] > mx ? x[i] : mx;
    double sum = 0.0;
    for (int i = 0; i < n; i++) {
        x[i] = expf(x[i] - mx);
        sum += x[i];
    }
    const float inv = (float)(1.0 / sum);
    for (int i = 0; i < n; i++) x[i] *= inv;
}

void kern_silu_mul(float *h, const float *g, const float *u, int n) {
    for (int i = 0; i < n; i++) h[i] = g[i] / (1.0f + expf(-g[i])) * u[i];
}
