/*
 * ref_ops: scalar references of the float kernels (norm, softmax, SwiGLU
 * gate, log-sum-exp; the attention loops' references are in attn.c). They
 * are the kernels of the "scalar" level and what tests compare the SIMD
 * versions with, so they favour clarity and accuracy (double accumulators
 * where a sum runs over a whole row) over speed.
 */
#include "kern_impl.h"

#include <math.h>

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

double kern_ref_logsumexp(const float *x, int n) {
    double mx = x[0];
    for (int i = 1; i < n; i++) mx = x[i] > mx ? x[i] : mx;
    double sum = 0.0;
    for (int i = 0; i < n; i++) sum += exp((double)x[i] - mx);
    return mx + log(sum);
}
