/*
 * The small CUDA kernels of the backend: RMSNorm, SwiGLU, the embedding
 * lookup, RoPE + KV-cache store, and causal GQA attention with an online
 * softmax over the f16 cache. (Matrix-vector products: gpu_matvec.cu; batched
 * products: gpu_gemm.cu.) Kernels read positions from device memory so a
 * captured graph replays unchanged at every position.
 */
#include "gpu_impl.cuh"

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

enum { AT_WARPS = 8 };

/* Block (head h, token t): each warp takes tiles of 32 keys, one key per lane
 * for the scores, then the 32 values with the weights broadcast; the warps'
 * online-softmax states are merged at the end. NDV = ceil(D / 32). */
template <int NDV> __global__ void __launch_bounds__(AT_WARPS * 32) k_attention(const gdev_attn a) {
    extern __shared__ float at_smem[];
    gdev_dep_wait();
    const int h = blockIdx.x, t = blockIdx.y, D = a.D, GD = a.G * D, g = h / (a.H / a.G);
    const int n_keys = *a.d_pos + t + 1;
    float *qs = at_smem, *ws = at_smem + D;
    for (int i = threadIdx.x; i < D; i += blockDim.x) qs[i] = a.d_q[(size_t)t * a.H * D + (size_t)h * D + i];
    __syncthreads();
    const float scale = 1.0f / sqrtf((float)D);
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const __half *kc = (const __half *)a.d_kc + (size_t)g * D, *vc = (const __half *)a.d_vc + (size_t)g * D;
    float m = -INFINITY, l = 0.0f, acc[NDV];
#pragma unroll
    for (int i = 0; i < NDV; i++) acc[i] = 0.0f;
    for (int base = warp * 32; base < n_keys; base += AT_WARPS * 32) {
        const int p = base + lane;
        float s = -INFINITY;
        if (p < n_keys) {
            const __half *kr = kc + (size_t)p * GD;
            float dot = 0.0f;
            if ((D & 7) == 0) {
                /* all of the row's 16-byte loads first (D <= 32 * NDV) */
                uint4 raw[4 * NDV];
#pragma unroll
                for (int c = 0; c < 4 * NDV; c++)
                    if (8 * c < D) raw[c] = *(const uint4 *)(kr + 8 * c);
#pragma unroll
                for (int c = 0; c < 4 * NDV; c++) {
                    if (8 * c >= D) break;
                    const __half2 *h2 = (const __half2 *)&raw[c];
#pragma unroll
                    for (int j = 0; j < 4; j++) {
                        const float2 f = __half22float2(h2[j]);
                        dot += f.x * qs[8 * c + 2 * j] + f.y * qs[8 * c + 2 * j + 1];
                    }
                }
            } else {
                for (int i = 0; i < D; i++) dot += __half2float(kr[i]) * qs[i];
            }
            s = dot * scale;
        }
        const float m_new = fmaxf(m, gdev_warp_max(s));
        const float corr = expf(m - m_new);
        const float e = p < n_keys ? expf(s - m_new) : 0.0f;
        l = l * corr + gdev_warp_sum(e);
#pragma unroll
        for (int i = 0; i < NDV; i++) acc[i] *= corr;
        const int nk = min(32, n_keys - base);
        /* values in groups of 8 keys, each group's loads issued together */
        for (int j0 = 0; j0 < nk; j0 += 8) {
            float vv[8][NDV];
#pragma unroll
            for (int j = 0; j < 8; j++)
#pragma unroll
                for (int i = 0; i < NDV; i++)
                    vv[j][i] = j0 + j < nk && lane + 32 * i < D
                                   ? __half2float(vc[(size_t)(base + j0 + j) * GD + lane + 32 * i])
                                   : 0.0f;
#pragma unroll
            for (int j = 0; j < 8; j++) {
                const float w = __shfl_sync(0xffffffffu, e, j0 + j);
#pragma unroll
                for (int i = 0; i < NDV; i++) acc[i] += w * vv[j][i];
            }
        }
        m = m_new;
    }
    float *mine = ws + warp * (D + 2);
    if (lane == 0) mine[0] = m, mine[1] = l;
#pragma unroll
    for (int i = 0; i < NDV; i++)
        if (lane + 32 * i < D) mine[2 + lane + 32 * i] = acc[i];
    __syncthreads();
    for (int dd = threadIdx.x; dd < D; dd += blockDim.x) {
        float M = -INFINITY;
        for (int w = 0; w < AT_WARPS; w++) M = fmaxf(M, ws[w * (D + 2)]);
        float L = 0.0f, o = 0.0f;
        for (int w = 0; w < AT_WARPS; w++) {
            const float mw = ws[w * (D + 2)];
            if (mw == -INFINITY) continue;
            const float f = expf(mw - M);
            L += ws[w * (D + 2) + 1] * f;
            o += ws[w * (D + 2) + 2 + dd] * f;
        }
        a.d_out[(size_t)t * a.H * D + (size_t)h * D + dd] = o / L;
    }
}

extern "C" pl_status gdev_attention(gdev *d, const gdev_attn *a) {
    const int ndv = (a->D + 31) / 32;
    const size_t smem = (size_t)(a->D + AT_WARPS * (a->D + 2)) * sizeof(float);
    const dim3 grid((unsigned)a->H, (unsigned)a->T);
    const dim3 block(AT_WARPS * 32);
    switch (ndv) {
    case 1: return gdev_launch(d, "attention", k_attention<1>, grid, block, smem, *a);
    case 2: return gdev_launch(d, "attention", k_attention<2>, grid, block, smem, *a);
    case 3: return gdev_launch(d, "attention", k_attention<3>, grid, block, smem, *a);
    case 4: return gdev_launch(d, "attention", k_attention<4>, grid, block, smem, *a);
    case 5:
    case 6:
    case 7:
    case 8: return gdev_launch(d, "attention", k_attention<8>, grid, block, smem, *a);
    default: return pl_fail(PL_ERR_UNSUPPORTED, "gpu: head dimension %d is above the 256 the kernels handle", a->D);
    }
}
