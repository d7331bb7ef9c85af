/*
 * gpu_attn: causal attention of one token's heads over an f16 KV cache, as
 * the work of one block of GDEV_AT_WARPS warps, shared by the attention
 * kernel (gpu_kernels.cu: one head per block) and the Q/K/V product
 * (gpu_matvec.cu: the block that finishes a KV group last attends for all of
 * that group's query heads). In the second use q, K and V were written by
 * other blocks of the same kernel, so every read of them goes past L1
 * (ld.cg); the attention kernel reads K and V as it always did (through
 * L1: ld.cg there took 80 registers to 102 at head size 64). The softmax and sums run in the order the standalone kernel always
 * had: per warp an online softmax over tiles of 32 keys, warps merged last.
 */
#ifndef PL_GPU_ATTN_CUH
#define PL_GPU_ATTN_CUH

#include "gpu_impl.cuh"

#include <math.h>

enum { GDEV_AT_WARPS = 8 };

/* hpg query heads sharing one KV group, each D values, at one token. */
struct gdev_at_job {
    const float *q;          /* hpg * D floats, head after head */
    const __half *kc, *vc;   /* the group's values at position 0; rows of GD halves */
    int GD, D, n_keys, hpg;  /* hpg <= GDEV_AT_WARPS */
    float *out;              /* hpg * D floats */
    unsigned char *oq;       /* or NULL: the output quantized as well (D a multiple of 32) */
    int oq_c0, oq_parts;     /* its first chunk, and the parts of the whole vector it is in */
};

/* Floats of shared memory gdev_attn_heads needs. */
__host__ __device__ __forceinline__ int gdev_attn_smem_floats(int hpg, int D) {
    return hpg * D + GDEV_AT_WARPS * (D + 2);
}

__device__ __forceinline__ float gdev_ldcg_h(const __half *p) {
    return __half2float(__ushort_as_half(__ldcg((const unsigned short *)p)));
}

/* The whole block: GDEV_AT_WARPS / hpg warps per head, each taking tiles of
 * 32 keys (one key per lane for the scores, then the 32 values with the
 * weights broadcast). NDV = ceil(D / 32); HPG: j.hpg when known at compile
 * time (1 for the attention kernel), else 0; HPG 0 also reads K, V past L1.
 * sm: gdev_attn_smem_floats floats. */
template <int NDV, int HPG> __device__ void gdev_attn_heads(const gdev_at_job &j, float *sm) {
    const int hpg = HPG ? HPG : j.hpg;
    const int D = j.D, GD = j.GD, n_keys = j.n_keys, W = GDEV_AT_WARPS / hpg;
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, hh = warp / W, sub = warp % W;
    float *qs = sm, *ws = sm + hpg * D;
    for (int i = threadIdx.x; i < hpg * D; i += blockDim.x) qs[i] = __ldcg(j.q + i);
    __syncthreads();
    const float scale = 1.0f / sqrtf((float)D);
    const float *qh = qs + hh * D;
    float m = -INFINITY, l = 0.0f, acc[NDV];
#pragma unroll
    for (int i = 0; i < NDV; i++) acc[i] = 0.0f;
    for (int base = sub * 32; hh < hpg && base < n_keys; base += W * 32) {
        const int p = base + lane;
        float s = -INFINITY;
        if (p < n_keys) {
            const __half *kr = j.kc + (size_t)p * GD;
            float dot = 0.0f;
            if ((D & 7) == 0) {
                /* all of the row's 16-byte loads first (D <= 32 * NDV) */
                uint4 raw[4 * NDV];
#pragma unroll
                for (int c = 0; c < 4 * NDV; c++)
                    if (8 * c < D) {
                        if constexpr (HPG != 0) raw[c] = *(const uint4 *)(kr + 8 * c);
                        else raw[c] = __ldcg((const uint4 *)(kr + 8 * c));
                    }
#pragma unroll
                for (int c = 0; c < 4 * NDV; c++) {
                    if (8 * c >= D) break;
                    const __half2 *h2 = (const __half2 *)&raw[c];
#pragma unroll
                    for (int k = 0; k < 4; k++) {
                        const float2 f = __half22float2(h2[k]);
                        dot += f.x * qh[8 * c + 2 * k] + f.y * qh[8 * c + 2 * k + 1];
                    }
                }
            } else {
                for (int i = 0; i < D; i++) dot += gdev_ldcg_h(kr + i) * qh[i];
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
            for (int k = 0; k < 8; k++)
#pragma unroll
                for (int i = 0; i < NDV; i++)
                    vv[k][i] = j0 + k >= nk || lane + 32 * i >= D ? 0.0f
                               : HPG ? __half2float(j.vc[(size_t)(base + j0 + k) * GD + lane + 32 * i])
                                     : gdev_ldcg_h(j.vc + (size_t)(base + j0 + k) * GD + lane + 32 * i);
#pragma unroll
            for (int k = 0; k < 8; k++) {
                const float w = __shfl_sync(0xffffffffu, e, j0 + k);
#pragma unroll
                for (int i = 0; i < NDV; i++) acc[i] += w * vv[k][i];
            }
        }
        m = m_new;
    }
    float *mine = ws + warp * (D + 2);
    if (hh < hpg) {
        if (lane == 0) mine[0] = m, mine[1] = l;
#pragma unroll
        for (int i = 0; i < NDV; i++)
            if (lane + 32 * i < D) mine[2 + lane + 32 * i] = acc[i];
    }
    __syncthreads();
    for (int e = threadIdx.x; e < hpg * D; e += blockDim.x) {
        const int h2 = e / D, dd = e % D;
        const float *w0 = ws + h2 * W * (D + 2);
        float M = -INFINITY;
        for (int w = 0; w < W; w++) M = fmaxf(M, w0[w * (D + 2)]);
        float L = 0.0f, o = 0.0f;
        for (int w = 0; w < W; w++) {
            const float mw = w0[w * (D + 2)];
            if (mw == -INFINITY) continue;
            const float f = expf(mw - M);
            L += w0[w * (D + 2) + 1] * f;
            o += w0[w * (D + 2) + 2 + dd] * f;
        }
        const float r = o / L;
        j.out[e] = r;
        if (j.oq) qs[e] = r; /* q is no longer read: every warp is past its keys */
    }
    if (!j.oq) return;
    __syncthreads();
    for (int c = warp; c < hpg * D / 32; c += GDEV_AT_WARPS)
        gdev_quant_chunk(qs[32 * c + lane], j.oq_c0 + c, j.oq_parts, j.oq);
}

#endif
