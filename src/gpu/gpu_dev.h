/*
 * gpu_dev: the device layer of the CUDA backend, a C interface over the CUDA
 * runtime and the kernels (gpu_cuda.cu, gpu_kernels.cu, gpu_gemm.cu). Built
 * without CUDA, gpu_none.c provides the same functions, failing with
 * PL_ERR_UNSUPPORTED, so the host code (gpu_model.c) and the tests compile in
 * every configuration.
 *
 * Every op is enqueued on the device's one stream and returns at once; results
 * are ready after gdev_sync. Pointers named d_* (and gdev_mat data) are device
 * memory. Ops check their launch and report failures through pl_fail.
 * Letters: T tokens, H query heads, G key/value heads, D head dimension.
 */
#ifndef PL_GPU_DEV_H
#define PL_GPU_DEV_H

#include "pocketllm.h"

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct gdev gdev;

typedef struct gdev_info {
    char name[128];
    int cc_major, cc_minor; /* compute capability */
    int n_sm;
    int integrated;         /* shares memory with the host */
    size_t mem_total, mem_free;
    size_t smem_optin;      /* shared memory a block may opt into */
} gdev_info;

/* A weight matrix in the GPU layout (gpu_layout.h). */
typedef struct gdev_mat {
    uint32_t type;
    int n_in, n_out, n_in_pad;
    const void *q, *s;      /* device; s NULL when the type has no separate scales */
    uint32_t q_row, s_row;
} gdev_mat;

/* ------------------------------------------------------------- runtime */

/* Nonzero when this build has the CUDA backend. */
int gdev_built(void);
/* Open device 0 (the caller's only GPU use); fills info when not NULL. */
pl_status gdev_open(gdev **out, gdev_info *info);
void gdev_close(gdev *d);
pl_status gdev_alloc(gdev *d, size_t bytes, void **out); /* zeroed */
void gdev_free(gdev *d, void *p);
pl_status gdev_host_alloc(gdev *d, size_t bytes, void **out); /* pinned */
void gdev_host_free(gdev *d, void *p);
/* Pin host memory the caller owns so copies to it can run in a graph;
 * gdev_host_unregister undoes it. */
pl_status gdev_host_register(gdev *d, void *p, size_t bytes);
void gdev_host_unregister(gdev *d, void *p);
pl_status gdev_h2d(gdev *d, void *d_dst, const void *src, size_t bytes);
pl_status gdev_d2h(gdev *d, void *dst, const void *d_src, size_t bytes);
pl_status gdev_sync(gdev *d);
/* Record the ops enqueued between begin and end as a graph (replacing any
 * previous one); gdev_replay launches it. */
pl_status gdev_capture_begin(gdev *d);
pl_status gdev_capture_end(gdev *d);
/* Stop a capture that failed part-way, dropping what was recorded. */
void gdev_capture_abort(gdev *d);
pl_status gdev_replay(gdev *d);
/* Device-to-device copy bandwidth in GB/s (bytes read + written), measured
 * over `bytes`-sized buffers. */
pl_status gdev_copy_bandwidth(gdev *d, size_t bytes, double *gbps);

/* ------------------------------------------------------------------ ops */

/* One output of a single-token matrix-vector product: y = W x (+ bias), or
 * y += W x when accumulate (the residual add). */
typedef struct gdev_mv_out {
    const gdev_mat *w;
    float *d_y;
    const float *d_bias;
    int accumulate;
} gdev_mv_out;

/* Matrix-vector products of up to 3 matrices sharing one input x (n_in
 * floats) and, when d_norm is given, a fused RMSNorm of x with that weight.
 * Matrices of one type and width run as one launch. */
pl_status gdev_matvec(gdev *d, const gdev_mv_out *outs, int n_outs, const float *d_x, const float *d_norm,
                      float eps);
/* h = silu(gate x) * (up x), with the fused RMSNorm as above. */
pl_status gdev_matvec_glu(gdev *d, const gdev_mat *gate, const gdev_mat *up, const float *d_x,
                          const float *d_norm, float eps, float *d_h);
/* Y[t] = W X[t] (+ bias) for t < T on the tensor cores (activations rounded
 * to f16, f32 accumulation); X rows of ldx floats, Y rows of ldy. */
pl_status gdev_gemm(gdev *d, const gdev_mat *w, const float *d_x, int ldx, int T, float *d_y, int ldy,
                    const float *d_bias, int accumulate);
/* y[t] = rmsnorm(x[t]) * w for T rows of n floats (rows of ld floats). */
pl_status gdev_rmsnorm(gdev *d, const float *d_x, float *d_y, const float *d_w, int n, int ld, int T, float eps);
/* g[i] = silu(g[i]) * u[i] for n values. */
pl_status gdev_silu_mul(gdev *d, float *d_g, const float *d_u, size_t n);
/* x[t] = row d_tok[t] of the embedding matrix, as floats (rows of n_in). */
pl_status gdev_embed(gdev *d, const gdev_mat *emb, const int *d_tok, int T, float *d_x);

/* Attention of T tokens at positions *d_pos + t over an f16 KV cache of one
 * layer ((P, G*D) halves each). rope_kv: optional per-head RMSNorm of Q and K
 * (d_qn, d_kn), rotary embedding of the first n_rot dims (adjacent pairs, or
 * halves when neox) from cos/sin tables of (P, n_rot/2), K and V stored into
 * the cache at their positions, Q rotated in place. attention: causal softmax
 * attention with grouped heads, out rows of H*D floats. */
typedef struct gdev_attn {
    int T, H, G, D, n_rot, neox;
    const int *d_pos;
    float *d_q;            /* (T, H*D) */
    const float *d_k, *d_v; /* (T, G*D) */
    uint16_t *d_kc, *d_vc;  /* (P, G*D) f16 */
    const float *d_cos, *d_sin;
    const float *d_qn, *d_kn; /* (D) or NULL */
    float eps;
    float *d_out;          /* (T, H*D) */
} gdev_attn;

pl_status gdev_rope_kv(gdev *d, const gdev_attn *a);
/* gdev_matvec of one token's Q, K, V (outs[0..2]: one type and width, with
 * their biases) followed, in the same launch, by gdev_rope_kv's work for
 * adjacent-pair rotation without Q/K norms (a->neox 0, a->d_qn NULL, T 1):
 * each warp's two rows are one rotation pair. With `attended` and a->d_out,
 * gdev_attention's work may be done in the same launch too (then *attended
 * is set to 1): the block that finishes a KV group's Q, K and V rows last
 * attends for that group's heads. */
pl_status gdev_matvec_qkv(gdev *d, const gdev_mv_out *outs, const float *d_x, const float *d_norm, float eps,
                          const gdev_attn *a, int *attended);
/* gdev_rope_kv's T tokens attended (a->d_out). For one token whose head size
 * is a multiple of 32, the output's int8 copy is left for the product that
 * reads it next (the hand-off, gpu_impl.cuh); so is SwiGLU's by
 * gdev_matvec_glu. */
pl_status gdev_attention(gdev *d, const gdev_attn *a);

#ifdef __cplusplus
}
#endif
#endif
