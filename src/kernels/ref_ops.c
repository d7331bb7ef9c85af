/*
 * ref_ops: scalar references of the float kernels (norm, softmax, SwiGLU
 * gate, attention dots). They are the kernels of the "scalar" level and what
 * tests compare the SIMD versions with, so they favour clarity and accuracy
 * (double accumulators where a sum runs over a whole row) over speed.
 */
#include "kern_impl.h"

#include <math.h>
#include <string.h>

void kern_ref_rmsnorm(float *y, const float *x, const float *w, int n, float eps) {
    double ss = 0.0;
    for (int i = 0; i < n; i++) ss += (double)x[i] * x[i];
    const float scale = 1.0f / sqrtf((float)(ss / (n > 0 ? n : 1)) + eps);
    if (w)
        for (int i = 0; i < n; i++) y[i] = x[i] * scale * w[i];
    else
        for (int i = 0; i < n; i++) y[i] = x[i] * scale;
}

void kern_ref_softmax(float *x, int n) {
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

void kern_ref_silu_mul(float *h, const float *g, const float *u, int n) {
    for (int i = 0; i < n; i++) h[i] = g[i] / (1.0f + expf(-g[i])) * u[i];
}

float kern_ref_dot_f32(const float *x, const float *y, int n) {
    double s = 0.0;
    for (int i = 0; i < n; i++) s += (double)x[i] * y[i];
    return (float)s;
}

void kern_ref_axpy_f32(float *y, float a, const float *x, int n) {
    for (int i = 0; i < n; i++) y[i] += a * x[i];
}

void kern_ref_dot_rows_f32(float *out, const float *x, const float *M, size_t ldm, int n_rows, int n, float scale) {
    for (int r = 0; r < n_rows; r++) out[r] = scale * kern_ref_dot_f32(x, M + (size_t)r * ldm, n);
}

void kern_ref_wsum_rows_f32(float *y, const float *w, const float *M, size_t ldm, int n_rows, int n) {
    memset(y, 0, sizeof(float) * (size_t)(n > 0 ? n : 0));
    for (int r = 0; r < n_rows; r++) kern_ref_axpy_f32(y, w[r], M + (size_t)r * ldm, n);
}
