/*
 * kernels: the compute primitives the forward pass uses, on top of the quant
 * traits. Matrix layout is GGUF's: a weight W of n_out rows, each row n_in
 * contiguous elements of its quant type (so y[r] = dot(W[r,:], x)).
 * Activations X are T rows of n_in floats; outputs Y are T rows of n_out.
 */
#ifndef PL_KERNELS_H
#define PL_KERNELS_H

#include "../core/threads.h"
#include "../quant/quant.h"

typedef struct kern_matrix {
    const void *data; /* n_out rows of quant_row_size(type, n_in) bytes */
    uint32_t type;
    int64_t n_in;     /* columns (elements per row) */
    int64_t n_out;    /* rows */
} kern_matrix;

/* Bytes of scratch kern_matmul needs for T activation rows. */
size_t kern_matmul_scratch(const kern_matrix *w, int T);
/* Y[t][r] = sum_i W[r][i] * X[t][i] (+ bias[r] when bias != NULL), for t < T.
 * X rows have stride ldx floats, Y rows stride ldy. `scratch` holds the
 * activations converted to the weight's vec_dot_type (kern_matmul_scratch bytes). */
void kern_matmul(pl_pool *pool, const kern_matrix *w, const float *X, int ldx, int T,
                 float *Y, int ldy, const float *bias, void *scratch);

/* y = x / rms(x) * w over n elements (w may be NULL for no weight). */
void kern_rmsnorm(float *y, const float *x, const float *w, int n, float eps);
/* In-place softmax over n elements. */
void kern_softmax(float *x, int n);
/* h[i] = silu(g[i]) * u[i] */
void kern_silu_mul(float *h, const float *g, const float *u, int n);

#endif
