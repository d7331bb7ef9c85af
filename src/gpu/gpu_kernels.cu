/*
 * The small CUDA kernels of the backend: RMSNorm, SwiGLU, the embedding
 * lookup, RoPE + KV-cache store, and causal GQA attention with an online
 * softmax over the f16 cache. (Matrix-vector products: gpu_matvec.cu; batched
 * products: gpu_gemm.cu.) Kernels read positions from device memory so a
 * captured graph replays unchanged at every position.
 */
#include "gpu_attn.cuh"

#include <math.h>
#include <string.h>

/* ------------------------------------------------------ element-wise ops */

__global__ void __launch_bounds__(256) k_rmsnorm(const float *x, float *y, const float *w, int n, int ld, float eps) {
    __shared__ float red[8];
    gdev_dep_wait();
    const float *xr = x + (size_t)blockIdx.x * ld;
    float *yr = y + (size_t)blockIdx.x * ld;
    float ss = 0.0f;
    for (int i = threadIdx.x; i < n; i += blockDim.x) ss += xr[i] * xr[i];
    ss = gdev_warp_sum(ss);
    if ((threadIdx.x & 31) == 0) red[threadIdx.x >> 5] = ss;
    __syncthreads();
    float tot = 0.0f;
    for (int i = 0; i < 8; i++) tot += red[i];
    const float scale = 1.0f / sqrtf(tot / (float)n + eps);
    for (int i = threadIdx.x; i < n; i += blockDim.x) yr[i] = xr[i] * scale * w[i];
}

extern "C" pl_status gdev_rmsnorm(gdev *d, const float *d_x, float *d_y, const float *d_w, int n, int ld, int T,
                                  float eps) {
    return gdev_launch(d, "rmsnorm", k_rmsnorm, dim3((unsigned)T), dim3(256), 0, d_x, d_y, d_w, n, ld, eps);
}

__global__ void k_silu_mul(float *g, const float *u, size_t n) {
    gdev_dep_wait();
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        g[i] = g[i] / (1.0f + expf(-g[i])) * u[i];
}

extern "C" pl_status gdev_silu_mul(gdev *d, float *d_g, const float *d_u, size_t n) {
    const size_t blocks = (n + 255) / 256;
    return gdev_launch(d, "silu_mul", k_silu_mul, dim3((unsigned)(blocks < 4096 ? blocks : 4096)), dim3(256), 0, d_g,
                       (const float *)d_u, n);
}

template <int TYPE>
__global__ void k_embed(const uint8_t *q, const uint8_t *s, uint32_t q_row, uint32_t s_row, int n_in, int n_parts,
                        const int *tok, float *x) {
    gdev_dep_wait();
    const int u = blockIdx.x * blockDim.x + threadIdx.x, t = blockIdx.y;
    if (u >= n_parts) return;
    const size_t r = (size_t)tok[t];
    gpart<TYPE> p;
    gpart_load<TYPE>(p, q + r * q_row, s + r * s_row, u);
    float o[16];
    gpart_decode<TYPE>(p, u, o);
#pragma unroll
    for (int i = 0; i < 16; i++)
        if (u * 16 + i < n_in) x[(size_t)t * n_in + u * 16 + i] = o[i];
}

extern "C" pl_status gdev_embed(gdev *d, const gdev_mat *emb, const int *d_tok, int T, float *d_x) {
    const int n_parts = emb->n_in_pad / 16;
    const dim3 grid((unsigned)((n_parts + 127) / 128), (unsigned)T);
    pl_status st = PL_OK;
    GDEV_TYPE_SWITCH(emb->type, TT,
                     st = gdev_launch(d, "embed", k_embed<TT>, grid, dim3(128), 0, (const uint8_t *)emb->q,
                                      (const uint8_t *)emb->s, emb->q_row, emb->s_row, emb->n_in, n_parts, d_tok, d_x));
    return st;
}

/* ------------------------------------------------------------- attention */

/* One warp per head vector of a token: Q heads (rotated in place), K heads
 * (rotated, stored to the cache as f16), V heads (stored). */
__global__ void __launch_bounds__(128) k_rope_kv(const gdev_attn a) {
    gdev_dep_wait();
    const int per_tok = a.H + 2 * a.G;
    const int item = blockIdx.x * 4 + (threadIdx.x >> 5), lane = threadIdx.x & 31;
    if (item >= a.T * per_tok) return;
    const int t = item / per_tok, j = item % per_tok, D = a.D, GD = a.G * D;
    const int pos = *a.d_pos + t;
    const float *src;
    float *dq = NULL;
    __half *dh = NULL;
    const float *nw = NULL;
    bool rope = true;
    if (j < a.H) {
        dq = a.d_q + (size_t)t * a.H * D + (size_t)j * D;
        src = dq;
        nw = a.d_qn;
    } else if (j < a.H + a.G) {
        src = a.d_k + (size_t)t * GD + (size_t)(j - a.H) * D;
        dh = (__half *)a.d_kc + (size_t)pos * GD + (size_t)(j - a.H) * D;
        nw = a.d_kn;
    } else {
        src = a.d_v + (size_t)t * GD + (size_t)(j - a.H - a.G) * D;
        dh = (__half *)a.d_vc + (size_t)pos * GD + (size_t)(j - a.H - a.G) * D;
        rope = false;
    }
    float scale = 1.0f;
    if (nw) {
        float ss = 0.0f;
        for (int i = lane; i < D; i += 32) ss += src[i] * src[i];
        ss = gdev_warp_sum(ss);
        scale = 1.0f / sqrtf(ss / (float)D + a.eps);
    }
    const int half = a.n_rot / 2;
    if (rope) {
        const float *cs = a.d_cos + (size_t)pos * half, *sn = a.d_sin + (size_t)pos * half;
        for (int i = lane; i < half; i += 32) {
            const int i0 = a.neox ? i : 2 * i, i1 = a.neox ? i + half : 2 * i + 1;
            const float x0 = nw ? src[i0] * scale * nw[i0] : src[i0];
            const float x1 = nw ? src[i1] * scale * nw[i1] : src[i1];
            const float y0 = x0 * cs[i] - x1 * sn[i], y1 = x0 * sn[i] + x1 * cs[i];
            if (dq) dq[i0] = y0, dq[i1] = y1;
            else dh[i0] = __float2half_rn(y0), dh[i1] = __float2half_rn(y1);
        }
    }
    for (int i = (rope ? a.n_rot : 0) + lane; i < D; i += 32) {
        const float v = nw ? src[i] * scale * nw[i] : src[i];
        if (dq) dq[i] = v;
        else dh[i] = __float2half_rn(v);
    }
}

extern "C" pl_status gdev_rope_kv(gdev *d, const gdev_attn *a) {
    const int items = a->T * (a->H + 2 * a->G);
    return gdev_launch(d, "rope_kv", k_rope_kv, dim3((unsigned)((items + 3) / 4)), dim3(128), 0, *a);
}

/* Block (head h, token t): gdev_attn_heads with one head. With oq (one
 * token, D a multiple of 32) the head's output is also written there
 * quantized, whole chunks per head, for the output projection (the hand-off). */
template <int NDV>
__global__ void __launch_bounds__(GDEV_AT_WARPS * 32) k_attention(const gdev_attn a, unsigned char *oq) {
    extern __shared__ float at_smem[];
    gdev_dep_wait();
    const int h = blockIdx.x, t = blockIdx.y, D = a.D, g = h / (a.H / a.G);
    gdev_at_job j;
    j.q = a.d_q + (size_t)t * a.H * D + (size_t)h * D;
    j.kc = (const __half *)a.d_kc + (size_t)g * D;
    j.vc = (const __half *)a.d_vc + (size_t)g * D;
    j.GD = a.G * D;
    j.D = D;
    j.n_keys = *a.d_pos + t + 1;
    j.hpg = 1;
    j.out = a.d_out + (size_t)t * a.H * D + (size_t)h * D;
    j.oq = oq;
    j.oq_c0 = h * D / 32;
    j.oq_parts = a.H * D / 16;
    gdev_attn_heads<NDV, 1>(j, at_smem);
}

extern "C" pl_status gdev_attention(gdev *d, const gdev_attn *a) {
    const int ndv = (a->D + 31) / 32;
    const size_t smem = (size_t)gdev_attn_smem_floats(1, a->D) * sizeof(float);
    const dim3 grid((unsigned)a->H, (unsigned)a->T);
    const dim3 block(GDEV_AT_WARPS * 32);
    const int HD = a->H * a->D;
    /* the hand-off of the output to the output projection */
    const int hand = d->hand_att && a->T == 1 && a->D % 32 == 0 && (size_t)HD / 16 * GDEV_XQ_PER_PART <= GDEV_XQ_BYTES;
    unsigned char *oq = hand ? d->carry : NULL;
    pl_status st;
    switch (ndv) {
    case 1: st = gdev_launch(d, "attention", k_attention<1>, grid, block, smem, *a, oq); break;
    case 2: st = gdev_launch(d, "attention", k_attention<2>, grid, block, smem, *a, oq); break;
    case 3: st = gdev_launch(d, "attention", k_attention<3>, grid, block, smem, *a, oq); break;
    case 4: st = gdev_launch(d, "attention", k_attention<4>, grid, block, smem, *a, oq); break;
    case 5:
    case 6:
    case 7:
    case 8: st = gdev_launch(d, "attention", k_attention<8>, grid, block, smem, *a, oq); break;
    default: return pl_fail(PL_ERR_UNSUPPORTED, "gpu: head dimension %d is above the 256 the kernels handle", a->D);
    }
    if (!st && hand) d->carry_src = a->d_out, d->carry_n = HD;
    return st;
}
