/*
 * Single-token matrix-vector products, the whole cost of decoding: the weights
 * are read once per token, so the kernels aim at streaming them at memory
 * speed. Each warp takes two rows; its first batch of weight loads is issued
 * before the kernel waits for the previous one (programmatic dependent
 * launch, gdev_launch). Quantized weights meet x quantized to int8 per 32
 * values (as the CPU's Q8_0 activations; RMSNorm fused in front) in dp4a
 * integer dots, a few instructions per 16 weights. That int8 x comes from
 * the op before where it handed it off (gpu_impl.cuh: attention, and
 * optionally SwiGLU, write their output quantized), else from one k_quant_x
 * launch per product, or (opt-in) from each block quantizing x into its
 * shared memory while its first weights load. Float weights use float dots on
 * a padded float copy of x that each block stages in shared memory. Bias,
 * residual add, SwiGLU (and optionally its output's quantization) and (for
 * Q/K/V) rotary embedding + KV-cache store, optionally attention, are fused
 * behind. The optional parts are separate kernel instances (MV_* flags).
 */
#include "gpu_attn.cuh"

#include <math.h>
#include <string.h>

/* MV_XS: shared floats per 16-element part of a float x; the 4 floats of
 * padding put the 16-byte reads of 8 consecutive lanes on distinct banks. */
enum { MV_THREADS = 256, MV_WARPS = 8, MV_XS = 20 };

struct mv_mat {
    const uint8_t *q, *s;
    uint32_t q_row, s_row;
    int n_out;
    float *y;
    const float *bias;
    int acc;
};

struct mv_args {
    mv_mat m[3];
    int n_mat;
    const float *x;
    int n_in, n_parts;
    const float *norm;
    float eps;
    float *h; /* SwiGLU output */
    unsigned char *hq; /* SwiGLU output quantized (the hand-off), or NULL */
    int *cnt;          /* per 32 rows of h: blocks done (k_matvec_glu with hq) */
    const unsigned char *xq; /* int8 types: x quantized in global memory, or NULL: */
    int stage;               /* each block quantizes x into its shared memory */
    int ks;                  /* warps sharing a row pair, each a slice of the parts (k_matvec) */
    /* fused rotary embedding of m[0] = Q, m[1] = K, m[2] = V (gdev_matvec_qkv) */
    int rope, n_rot, D, GD;
    const int *pos;
    const float *cos, *sin;
    __half *kc, *vc;
    /* and attention (att_out set): the last of the att_blocks blocks of a KV
     * group to finish (counted in cnt) attends for its hpg query heads */
    float *att_out;
    unsigned char *att_q; /* the output quantized too (the hand-off), or NULL */
    int att_blocks, hpg;
};

/* Types whose dots run on int8 x. */
template <int TYPE> struct mv_int { enum { v = 1 }; };
template <> struct mv_int<QT_F32> { enum { v = 0 }; };
template <> struct mv_int<QT_F16> { enum { v = 0 }; };
template <> struct mv_int<QT_BF16> { enum { v = 0 }; };

/* Parts a lane keeps in flight per row. */
template <int TYPE> struct mv_nb { enum { v = 4 }; };
template <> struct mv_nb<QT_F32> { enum { v = 1 }; };
template <> struct mv_nb<QT_F16> { enum { v = 2 }; };
template <> struct mv_nb<QT_BF16> { enum { v = 2 }; };

static int mv_is_float(uint32_t type) { return type == QT_F32 || type == QT_F16 || type == QT_BF16; }

/* The optional parts of the kernels, as separate instances so that the plain
 * ones keep their register count (an attention tail inlined into every
 * product took k_matvec from 64 to 160 registers, one block per SM):
 * MV_STAGE each block quantizes x itself, MV_ATTEND the Q/K/V form's
 * attention tail (k_matvec), MV_HAND SwiGLU's quantized output (k_matvec_glu). */
enum { MV_STAGE = 1, MV_ATTEND = 2, MV_HAND = 4 };

/* Shared memory for x: float types stage it as n_parts * MV_XS floats; int8
 * types either quantize it into shared memory (stage) or read a quantized
 * copy from global memory (L1-resident), needing none. */
static size_t mv_smem_bytes_of(uint32_t type, int n_parts, int stage) {
    return mv_is_float(type) ? (size_t)n_parts * MV_XS * sizeof(float)
           : stage           ? (size_t)n_parts * GDEV_XQ_PER_PART
                             : 0;
}
static size_t mv_xq_bytes(int n_parts) { return (size_t)n_parts * GDEV_XQ_PER_PART; }

/* The loops below load MV_K values per thread as one predicated batch before
 * using any: every block stages x, so staging is load latency, not work. */
enum { MV_K = 8 };

__device__ float mv_inv_rms(const float *x, int n, float eps) {
    __shared__ float red[MV_WARPS];
    float ss = 0.0f;
    for (int i0 = threadIdx.x; i0 < n; i0 += MV_THREADS * MV_K) {
        float v[MV_K];
#pragma unroll
        for (int k = 0; k < MV_K; k++) v[k] = i0 + MV_THREADS * k < n ? __ldg(x + i0 + MV_THREADS * k) : 0.0f;
#pragma unroll
        for (int k = 0; k < MV_K; k++) ss += v[k] * v[k];
    }
    ss = gdev_warp_sum(ss);
    if ((threadIdx.x & 31) == 0) red[threadIdx.x >> 5] = ss;
    __syncthreads();
    float tot = 0.0f;
    for (int w = 0; w < MV_WARPS; w++) tot += red[w];
    return 1.0f / sqrtf(tot / (float)n + eps);
}

/* Float types: x (RMS-normalized as kern_rmsnorm, x * scale * w, when
 * a.norm) into shared memory, padded per part. */
__device__ void mv_stage_x(unsigned char *sm, const mv_args &a) {
    const float scale = a.norm ? mv_inv_rms(a.x, a.n_in, a.eps) : 1.0f;
    float *xs = (float *)sm;
    const int n = a.n_parts * 16;
    for (int i0 = threadIdx.x; i0 < n; i0 += MV_THREADS * MV_K) {
        float v[MV_K], w[MV_K];
#pragma unroll
        for (int k = 0; k < MV_K; k++) {
            const int i = i0 + MV_THREADS * k;
            v[k] = i < a.n_in ? __ldg(a.x + i) : 0.0f;
            w[k] = a.norm && i < a.n_in ? __ldg(a.norm + i) : 1.0f;
        }
#pragma unroll
        for (int k = 0; k < MV_K; k++) {
            const int i = i0 + MV_THREADS * k;
            if (i < n) xs[(i >> 4) * MV_XS + (i & 15)] = a.norm ? v[k] * scale * w[k] : v[k];
        }
    }
    __syncthreads();
}

/* Int8 types: x (normalized as above when norm) quantized once per product,
 * one warp per 32 values: scale amax/127 and values rounded as the CPU's
 * quantize_row_q8_0, plus each 16-value part's sum (for the weights'
 * offsets and minimums). */
__global__ void __launch_bounds__(MV_THREADS) k_quant_x(const float *x, const float *norm, float eps, int n_in,
                                                        int n_parts, unsigned char *out) {
    gdev_dep_wait();
    const float scale = norm ? mv_inv_rms(x, n_in, eps) : 1.0f;
    const int lane = threadIdx.x & 31, c = blockIdx.x * MV_WARPS + (threadIdx.x >> 5);
    if (c >= n_parts / 2) return;
    const int i = 32 * c + lane;
    gdev_quant_chunk(norm ? x[i] * scale * norm[i] : x[i], c, n_parts, out);
}

/* k_quant_x's work done by one block into its shared memory sm (every block
 * of a product, while its first weights are loading): each warp takes chunks
 * warp, warp + MV_WARPS, ..., their loads issued MV_K at a time. */
__device__ void mv_stage_q(unsigned char *sm, const mv_args &a) {
    const float scale = a.norm ? mv_inv_rms(a.x, a.n_in, a.eps) : 1.0f;
    const int n_chunks = a.n_parts / 2, lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    for (int c0 = warp; c0 < n_chunks; c0 += MV_WARPS * MV_K) {
        float v[MV_K];
#pragma unroll
        for (int k = 0; k < MV_K; k++) {
            const int c = c0 + MV_WARPS * k, i = 32 * c + lane;
            v[k] = c >= n_chunks ? 0.0f : a.norm ? __ldg(a.x + i) * scale * __ldg(a.norm + i) : __ldg(a.x + i);
        }
#pragma unroll
        for (int k = 0; k < MV_K; k++)
            if (c0 + MV_WARPS * k < n_chunks) gdev_quant_chunk(v[k], c0 + MV_WARPS * k, a.n_parts, sm);
    }
    __syncthreads();
}

/* Integer dot of a part with x: X the 16 int8 values, xs their sum, dx their scale. */
template <int TYPE> __device__ __forceinline__ float mv_idot(const gpart<TYPE> &p, int u, int4 X, int xs, float dx);

template <>
__device__ __forceinline__ float mv_idot<QT_Q8_0>(const gpart<QT_Q8_0> &p, int, int4 X, int, float dx) {
    int s = __dp4a((int)p.q.x, X.x, 0);
    s = __dp4a((int)p.q.y, X.y, s);
    s = __dp4a((int)p.q.z, X.z, s);
    s = __dp4a((int)p.q.w, X.w, s);
    return gdev_h2f(p.d) * dx * (float)s;
}

/* Σ nibble * x over a part whose byte i holds elements i (low) and i + 8 (high). */
__device__ __forceinline__ int mv_nib_dot(uint2 q, int4 X) {
    const int m = 0x0F0F0F0F;
    int s = __dp4a((int)(q.x & m), X.x, 0);
    s = __dp4a((int)(q.y & m), X.y, s);
    s = __dp4a((int)((q.x >> 4) & m), X.z, s);
    return __dp4a((int)((q.y >> 4) & m), X.w, s);
}

template <>
__device__ __forceinline__ float mv_idot<QT_Q4_0>(const gpart<QT_Q4_0> &p, int, int4 X, int xs, float dx) {
    return gdev_h2f(p.d) * dx * (float)(mv_nib_dot(p.q, X) - 8 * xs);
}

template <>
__device__ __forceinline__ float mv_idot<QT_Q4_K>(const gpart<QT_Q4_K> &p, int u, int4 X, int xs, float dx) {
    float dl, ml;
    gdev_q4k_dm(p.h, u, dl, ml);
    return dx * (dl * (float)mv_nib_dot(p.q, X) - ml * (float)xs);
}

template <>
__device__ __forceinline__ float mv_idot<QT_Q6_K>(const gpart<QT_Q6_K> &p, int, int4 X, int xs, float dx) {
    /* 6-bit values: low nibbles as Q4_0, the 2 high bits moved to bits 4-5 of each byte */
    const unsigned m = 0x0F0F0F0Fu, hm = 0x30303030u, hi = p.hi;
    int s = __dp4a((int)((p.lo.x & m) | ((hi << 4) & hm)), X.x, 0);
    s = __dp4a((int)((p.lo.y & m) | ((hi << 2) & hm)), X.y, s);
    s = __dp4a((int)(((p.lo.x >> 4) & m) | (hi & hm)), X.z, s);
    s = __dp4a((int)(((p.lo.y >> 4) & m) | ((hi >> 2) & hm)), X.w, s);
    return gdev_h2f(p.d) * (float)p.sc * dx * (float)(s - 32 * xs);
}

/* xb: the staged float x (shared), or the int8 x in shared (SH) or global
 * memory (read-only loads: a generic-address load costs far more). */
template <int TYPE, bool SH>
__device__ __forceinline__ float mv_dot(const gpart<TYPE> &p, int u, const unsigned char *xb, int n_parts) {
    if constexpr (mv_int<TYPE>::v) {
        const int4 *X4 = (const int4 *)(xb + 16 * u);
        const int *S = (const int *)(xb + 16 * n_parts) + u;
        const float *F = (const float *)(xb + 20 * n_parts) + (u >> 1);
        const int4 X = SH ? *X4 : __ldg(X4);
        const int xs = SH ? *S : __ldg(S);
        const float dx = SH ? *F : __ldg(F);
        return mv_idot<TYPE>(p, u, X, xs, dx);
    } else {
        float w[16];
        gpart_decode<TYPE>(p, u, w);
        const float4 *x4 = (const float4 *)((const float *)xb + u * MV_XS);
        float s = 0.0f;
#pragma unroll
        for (int i = 0; i < 4; i++) {
            const float4 x = x4[i];
            s += w[4 * i] * x.x + w[4 * i + 1] * x.y + w[4 * i + 2] * x.z + w[4 * i + 3] * x.w;
        }
        return s;
    }
}

/* This lane's parts lane + 32j (j < NB) from `base` of two rows. */
template <int TYPE, int NB> struct mv_batch {
    gpart<TYPE> p0[NB], p1[NB];

    __device__ __forceinline__ void load(const uint8_t *q0, const uint8_t *s0, const uint8_t *q1, const uint8_t *s1,
                                         int base, int end) {
#pragma unroll
        for (int j = 0; j < NB; j++) {
            const int u = base + (threadIdx.x & 31) + 32 * j;
            if (u < end) {
                gpart_load<TYPE>(p0[j], q0, s0, u);
                gpart_load<TYPE>(p1[j], q1, s1, u);
            }
        }
    }
    template <bool SH>
    __device__ __forceinline__ void dot(int base, int end, const unsigned char *xb, int n_parts, float &acc0,
                                        float &acc1) const {
#pragma unroll
        for (int j = 0; j < NB; j++) {
            const int u = base + (threadIdx.x & 31) + 32 * j;
            if (u < end) {
                acc0 += mv_dot<TYPE, SH>(p0[j], u, xb, n_parts);
                acc1 += mv_dot<TYPE, SH>(p1[j], u, xb, n_parts);
            }
        }
    }
};

/* Two rows against x over parts [u0, u1): the first batch of weights is
 * requested before the kernel waits for the previous one (weights never
 * change), then x is staged (float types) and the batches stream. A warp
 * that is not `live` only helps to stage x. Returns the two dots of the
 * slice in every lane. */
template <int TYPE, int FL>
__device__ __forceinline__ void mv_two_rows(const mv_args &a, unsigned char *sm, bool live, const uint8_t *q0,
                                            const uint8_t *s0, const uint8_t *q1, const uint8_t *s1, int u0, int u1,
                                            float &acc0, float &acc1) {
    constexpr int NB = mv_nb<TYPE>::v;
    mv_batch<TYPE, NB> b;
    if (live) b.load(q0, s0, q1, s1, u0, u1);
    gdev_dep_wait();
    /* x in shared memory (float types, or staged), else the global int8 copy */
    constexpr bool SH = !mv_int<TYPE>::v || (FL & MV_STAGE);
    if constexpr (!mv_int<TYPE>::v) mv_stage_x(sm, a);
    else if constexpr ((FL & MV_STAGE) != 0) mv_stage_q(sm, a);
    else sm = (unsigned char *)a.xq;
    if (!live) return;
    b.template dot<SH>(u0, u1, sm, a.n_parts, acc0, acc1);
    for (int base = u0 + 32 * NB; base < u1; base += 32 * NB) {
        b.load(q0, s0, q1, s1, base, u1);
        b.template dot<SH>(base, u1, sm, a.n_parts, acc0, acc1);
    }
    acc0 = gdev_warp_sum(acc0);
    acc1 = gdev_warp_sum(acc1);
}

__device__ __forceinline__ mv_mat mv_pick(const mv_args &a, int i) { return i == 0 ? a.m[0] : i == 1 ? a.m[1] : a.m[2]; }

/* Row r of the stacked matrices: which matrix and which of its rows. */
__device__ __forceinline__ bool mv_find(const mv_args &a, int r, int &mi, int &ri) {
    for (int i = 0; i < 3 && i < a.n_mat; i++) {
        const int n = i == 0 ? a.m[0].n_out : i == 1 ? a.m[1].n_out : a.m[2].n_out;
        if (r < n) {
            mi = i;
            ri = r;
            return true;
        }
        r -= n;
    }
    return false;
}

__device__ __forceinline__ void mv_store(const mv_mat &m, int r, float v) {
    if (m.bias) v += m.bias[r];
    if (m.acc) m.y[r] += v;
    else m.y[r] = v;
}

/* Rows r, r + 1 of Q, K or V (matrix mi): rotate the pair (Q, K) at the
 * token's position, then Q to its buffer, K and V into the cache. */
__device__ __forceinline__ void mv_store_rope(const mv_args &a, int mi, int r, float v0, float v1) {
    const mv_mat m = mv_pick(a, mi);
    if (m.bias) v0 += m.bias[r], v1 += m.bias[r + 1];
    const int pos = *a.pos, dd = r % a.D;
    if (mi < 2 && dd < a.n_rot) {
        const int half = a.n_rot / 2, i = dd / 2;
        const float c = a.cos[(size_t)pos * half + i], s = a.sin[(size_t)pos * half + i];
        const float y0 = v0 * c - v1 * s, y1 = v0 * s + v1 * c;
        v0 = y0, v1 = y1;
    }
    if (mi == 0) {
        m.y[r] = v0, m.y[r + 1] = v1;
    } else {
        __half *dst = (mi == 1 ? a.kc : a.vc) + (size_t)pos * a.GD + r;
        dst[0] = __float2half_rn(v0), dst[1] = __float2half_rn(v1);
    }
}

/* The fused attention of k_matvec's Q/K/V form: this block's rows (from r0)
 * are one head's of Q, K or V, so they belong to one KV group; the block that
 * completes the group (its Q, K and V rows stored, fenced, counted) attends
 * for the group's query heads at the token's position. Whole block. */
__device__ void mv_attend(const mv_args &a, int r0, float *sm) {
    __shared__ int last;
    const int HD = a.m[0].n_out, GD = a.GD, D = a.D;
    const int g = r0 < HD ? r0 / D / a.hpg : r0 < HD + GD ? (r0 - HD) / D : (r0 - HD - GD) / D;
    __threadfence();
    __syncthreads();
    if (threadIdx.x == 0) {
        __threadfence(); /* cumulative: the block's stores, seen through the barrier */
        last = atomicAdd(a.cnt + g, 1) == a.att_blocks - 1;
        if (last) a.cnt[g] = 0;
    }
    __syncthreads();
    if (!last) return;
    __threadfence();
    gdev_at_job j;
    j.q = a.m[0].y + (size_t)g * a.hpg * D;
    j.kc = a.kc + (size_t)g * D;
    j.vc = a.vc + (size_t)g * D;
    j.GD = GD;
    j.D = D;
    j.n_keys = *a.pos + 1;
    j.hpg = a.hpg;
    j.out = a.att_out + (size_t)g * a.hpg * D;
    j.oq = a.att_q;
    j.oq_c0 = g * a.hpg * D / 32;
    j.oq_parts = HD / 16;
    gdev_attn_heads<2, 0>(j, sm); /* D 64: the host allows no other */
}

/* Each row pair is shared by a.ks warps, each taking a slice of the parts
 * (wide rows would otherwise be a chain of dependent batches). */
/* The attention tail needs ~150 registers where the products need 64-100:
 * its instances are held to 3 blocks an SM (80 registers; the tail, run by a
 * few blocks, spills instead). The others name no minimum (0): a minimum of 1
 * already moved Q4_0 from 64 registers to 80. */
template <int TYPE, int FL>
__global__ void __launch_bounds__(MV_THREADS, (FL & MV_ATTEND) ? 3 : 0) k_matvec(const mv_args a) {
    extern __shared__ float4 mv_smem[];
    __shared__ float part[MV_WARPS][2];
    const int warp = threadIdx.x >> 5, pair = warp / a.ks, slice = warp % a.ks;
    const int r = (blockIdx.x * (MV_WARPS / a.ks) + pair) * 2;
    int m0 = 0, i0 = 0, m1 = 0, i1 = 0;
    const bool one = mv_find(a, r, m0, i0);
    const bool two = one && mv_find(a, r + 1, m1, i1);
    if (!two) m1 = m0, i1 = i0;
    const mv_mat A = mv_pick(a, m0), B = mv_pick(a, m1);
    const int len = a.n_parts / a.ks;
    float acc0 = 0.0f, acc1 = 0.0f;
    mv_two_rows<TYPE, FL>(a, (unsigned char *)mv_smem, one, A.q + (size_t)i0 * A.q_row, A.s + (size_t)i0 * A.s_row,
                      B.q + (size_t)i1 * B.q_row, B.s + (size_t)i1 * B.s_row, slice * len, slice * len + len, acc0,
                      acc1);
    if constexpr ((FL & MV_ATTEND) == 0) {
        if (a.ks > 1) {
            if ((threadIdx.x & 31) == 0) part[warp][0] = acc0, part[warp][1] = acc1;
            __syncthreads();
            if (slice) return;
            for (int k = 1; k < a.ks; k++) acc0 += part[warp + k][0], acc1 += part[warp + k][1];
        }
        if (!one || (threadIdx.x & 31) != 0) return;
        if (a.rope) {
            mv_store_rope(a, m0, i0, acc0, acc1);
            return;
        }
        mv_store(A, i0, acc0);
        if (two) mv_store(B, i1, acc1);
    } else {
        /* every thread reaches mv_attend's barriers; the host sets ks 1 */
        if (one && (threadIdx.x & 31) == 0) mv_store_rope(a, m0, i0, acc0, acc1);
        mv_attend(a, blockIdx.x * MV_WARPS * 2, (float *)mv_smem);
    }
}

/* Blocks of k_matvec_glu that make one 32-value chunk of h. */
enum { MV_GLU_BPC = 32 / MV_WARPS };

/* m[0] = gate, m[1] = up: each warp computes one row of both. With a.hq, the
 * last of the MV_GLU_BPC blocks of a chunk of h to finish (counted in a.cnt,
 * which it resets) also writes that chunk quantized, for the down product:
 * the other blocks' h values are fenced before their count, and read past L1. */
template <int TYPE, int FL> __global__ void __launch_bounds__(MV_THREADS) k_matvec_glu(const mv_args a) {
    extern __shared__ float4 mv_smem[];
    __shared__ int last;
    const int r = blockIdx.x * MV_WARPS + (threadIdx.x >> 5);
    const bool live = r < a.m[0].n_out;
    const int rr = live ? r : 0;
    float g = 0.0f, u = 0.0f;
    mv_two_rows<TYPE, FL>(a, (unsigned char *)mv_smem, live, a.m[0].q + (size_t)rr * a.m[0].q_row,
                      a.m[0].s + (size_t)rr * a.m[0].s_row, a.m[1].q + (size_t)rr * a.m[1].q_row,
                      a.m[1].s + (size_t)rr * a.m[1].s_row, 0, a.n_parts, g, u);
    if (live && (threadIdx.x & 31) == 0) a.h[r] = g / (1.0f + expf(-g)) * u;
    if constexpr ((FL & MV_HAND) == 0) return;
    __syncthreads();
    const int c = blockIdx.x / MV_GLU_BPC;
    if (threadIdx.x == 0) {
        __threadfence(); /* cumulative: the block's stores, seen through the barrier */
        last = atomicAdd(a.cnt + c, 1) == MV_GLU_BPC - 1;
        if (last) a.cnt[c] = 0;
    }
    __syncthreads();
    if (!last || threadIdx.x >= 32) return;
    __threadfence();
    gdev_quant_chunk(__ldcg(a.h + 32 * c + threadIdx.x), c, a.m[0].n_out / 16, a.hq);
}

/* ---------------------------------------------------------------- host */

static mv_mat mv_mat_of(const gdev_mat *w, float *y, const float *bias, int acc) {
    mv_mat m;
    m.q = (const uint8_t *)w->q;
    m.s = (const uint8_t *)w->s;
    m.q_row = w->q_row;
    m.s_row = w->s_row;
    m.n_out = w->n_out;
    m.y = y;
    m.bias = bias;
    m.acc = acc;
    return m;
}

static pl_status mv_smem_bytes(const gdev *d, const gdev_mat *w, int stage, size_t *out) {
    *out = mv_smem_bytes_of(w->type, w->n_in_pad / 16, stage);
    if (*out > d->smem_optin)
        return pl_fail(PL_ERR_UNSUPPORTED, "gpu: rows of %d elements do not fit the %zu bytes of shared memory a block may use",
                       w->n_in, d->smem_optin);
    return PL_OK;
}

static void mv_args_init(mv_args *a, const gdev_mat *w, const float *d_x, const float *d_norm, float eps) {
    memset(a, 0, sizeof *a);
    a->x = d_x;
    a->n_in = w->n_in;
    a->n_parts = w->n_in_pad / 16;
    a->norm = d_norm;
    a->eps = eps;
}

/* Int8 types, where the product neither has a quantized x (a->xq) nor
 * quantizes it per block (a->stage): quantize x into d->xq first and point
 * the product at it. */
static pl_status mv_prepare(gdev *d, mv_args *a, uint32_t type) {
    if (mv_is_float(type) || a->xq || a->stage) return PL_OK;
    if (mv_xq_bytes(a->n_parts) > GDEV_XQ_BYTES)
        return pl_fail(PL_ERR_UNSUPPORTED, "gpu: rows of %d elements are too wide for the int8 scratch", a->n_in);
    const int n_chunks = a->n_parts / 2;
    pl_status st = gdev_launch(d, "quant_x", k_quant_x, dim3((unsigned)((n_chunks + MV_WARPS - 1) / MV_WARPS)),
                               dim3(MV_THREADS), 0, a->x, a->norm, a->eps, a->n_in, a->n_parts, d->xq);
    a->xq = d->xq;
    return st;
}

/* Warps per row pair: split wide rows until each warp's slice is one batch
 * of loads (whole 32-part steps). */
static int mv_split(uint32_t type, int n_parts) {
    const int nb = type == QT_F32 ? 1 : type == QT_F16 || type == QT_BF16 ? 2 : 4;
    int ks = 1;
    while (ks < MV_WARPS && n_parts >= 2 * ks * 32 * nb && n_parts % (2 * ks * 32) == 0) ks *= 2;
    return ks;
}

template <int TYPE> static pl_status mv_launch_k(gdev *d, int fl, int blocks, size_t smem, const mv_args &a) {
    const dim3 g((unsigned)blocks), b(MV_THREADS);
    switch (fl) {
    case 0: return gdev_launch(d, "matvec", k_matvec<TYPE, 0>, g, b, smem, a);
    case MV_STAGE: return gdev_launch(d, "matvec", k_matvec<TYPE, MV_STAGE>, g, b, smem, a);
    case MV_ATTEND: return gdev_launch(d, "matvec", k_matvec<TYPE, MV_ATTEND>, g, b, smem, a);
    default: return gdev_launch(d, "matvec", k_matvec<TYPE, MV_STAGE | MV_ATTEND>, g, b, smem, a);
    }
}

template <int TYPE> static pl_status mv_launch_glu(gdev *d, int fl, int blocks, size_t smem, const mv_args &a) {
    const dim3 g((unsigned)blocks), b(MV_THREADS);
    switch (fl) {
    case 0: return gdev_launch(d, "matvec_glu", k_matvec_glu<TYPE, 0>, g, b, smem, a);
    case MV_STAGE: return gdev_launch(d, "matvec_glu", k_matvec_glu<TYPE, MV_STAGE>, g, b, smem, a);
    case MV_HAND: return gdev_launch(d, "matvec_glu", k_matvec_glu<TYPE, MV_HAND>, g, b, smem, a);
    default: return gdev_launch(d, "matvec_glu", k_matvec_glu<TYPE, MV_STAGE | MV_HAND>, g, b, smem, a);
    }
}

/* Where an int8 product's x comes from: the hand-off when the op just before
 * wrote x's quantized copy (carry, taken before any launch forgets it), else
 * each block's own quantization when there are few enough blocks for the
 * opt-in d->stage_blocks, else mv_prepare's k_quant_x. */
static void mv_source(const gdev *d, mv_args *a, uint32_t type, const unsigned char *carry, int blocks) {
    if (mv_is_float(type)) return;
    if (carry && !a->norm) a->xq = carry;
    else a->stage = blocks <= d->stage_blocks && mv_xq_bytes(a->n_parts) <= d->smem_optin;
}

/* The hand-off d->carry if it holds x (n_in values, written by the last op). */
static const unsigned char *mv_carry(const gdev *d, const float *d_x, int n_in) {
    return d->carry_src && d->carry_src == d_x && d->carry_n == n_in ? d->carry : NULL;
}

static pl_status mv_launch(gdev *d, mv_args *a, const gdev_mat *w, int rows, const unsigned char *carry) {
    const uint32_t type = w->type;
    a->ks = mv_split(type, a->n_parts);
    const int per_block = MV_WARPS / a->ks * 2, blocks = (rows + per_block - 1) / per_block;
    mv_source(d, a, type, carry, blocks);
    size_t smem;
    pl_status st = mv_smem_bytes(d, w, a->stage, &smem);
    if (st || (st = mv_prepare(d, a, type))) return st;
    if (a->att_out) {
        const size_t at = (size_t)gdev_attn_smem_floats(a->hpg, a->D) * sizeof(float);
        if (at > smem) smem = at;
    }
    const int fl = (a->stage ? MV_STAGE : 0) | (a->att_out ? MV_ATTEND : 0);
    GDEV_TYPE_SWITCH(type, TT, st = mv_launch_k<TT>(d, fl, blocks, smem, *a));
    return st;
}

extern "C" pl_status gdev_matvec(gdev *d, const gdev_mv_out *outs, int n_outs, const float *d_x, const float *d_norm,
                                 float eps) {
    if (n_outs < 1 || n_outs > 3) return pl_fail(PL_ERR_INTERNAL, "gpu: matvec of %d matrices", n_outs);
    const unsigned char *carry = mv_carry(d, d_x, outs[0].w->n_in);
    int done[3] = {0, 0, 0};
    for (int i = 0; i < n_outs; i++) {
        if (done[i]) continue;
        const gdev_mat *w = outs[i].w;
        mv_args a;
        mv_args_init(&a, w, d_x, d_norm, eps);
        int rows = 0;
        for (int j = i; j < n_outs; j++) {
            const gdev_mat *wj = outs[j].w;
            if (done[j] || wj->type != w->type || wj->n_in != w->n_in) continue;
            a.m[a.n_mat++] = mv_mat_of(wj, outs[j].d_y, outs[j].d_bias, outs[j].accumulate);
            rows += wj->n_out;
            done[j] = 1;
        }
        pl_status st = mv_launch(d, &a, w, rows, carry);
        if (st) return st;
    }
    return PL_OK;
}

extern "C" pl_status gdev_matvec_qkv(gdev *d, const gdev_mv_out *outs, const float *d_x, const float *d_norm, float eps,
                                     const gdev_attn *at, int *attended) {
    if (attended) *attended = 0;
    const gdev_mat *wq = outs[0].w, *wk = outs[1].w, *wv = outs[2].w;
    if (wq->type != wk->type || wq->type != wv->type || wq->n_in != wk->n_in || wq->n_in != wv->n_in || at->neox ||
        at->d_qn || at->T != 1 || at->D % 2 || wq->n_out != at->H * at->D || wk->n_out != at->G * at->D ||
        wv->n_out != at->G * at->D)
        return pl_fail(PL_ERR_INTERNAL, "gpu: fused Q/K/V product asked for where it does not apply");
    mv_args a;
    mv_args_init(&a, wq, d_x, d_norm, eps);
    for (int i = 0; i < 3; i++) a.m[i] = mv_mat_of(outs[i].w, outs[i].d_y, outs[i].d_bias, 0);
    a.m[0].y = at->d_q;
    a.n_mat = 3;
    a.rope = 1;
    a.n_rot = at->n_rot;
    a.D = at->D;
    a.GD = at->G * at->D;
    a.pos = at->d_pos;
    a.cos = at->d_cos;
    a.sin = at->d_sin;
    a.kc = (__half *)at->d_kc;
    a.vc = (__half *)at->d_vc;
    /* attention inside: rows not split over warps (ks 1), so whole heads per
     * block (its 2 * MV_WARPS rows divide D), a head size the tail is built
     * for, at most one warp per query head */
    const int rows_per_block = 2 * MV_WARPS, HD = at->H * at->D;
    const int att = attended && at->d_out && d->fuse_attn && mv_split(wq->type, a.n_parts) == 1 &&
                    at->D == 64 && at->D % rows_per_block == 0 && at->H % at->G == 0 &&
                    at->H / at->G <= GDEV_AT_WARPS && at->G <= GDEV_CNT;
    if (att) {
        a.att_out = at->d_out;
        a.hpg = at->H / at->G;
        a.att_blocks = (a.hpg + 2) * at->D / rows_per_block;
        a.cnt = d->cnt;
        if ((size_t)HD / 16 * GDEV_XQ_PER_PART <= GDEV_XQ_BYTES) a.att_q = d->carry;
    }
    pl_status st = mv_launch(d, &a, wq, wq->n_out + wk->n_out + wv->n_out, mv_carry(d, d_x, wq->n_in));
    if (!st && att) {
        *attended = 1;
        if (a.att_q) d->carry_src = at->d_out, d->carry_n = HD;
    }
    return st;
}

extern "C" pl_status gdev_matvec_glu(gdev *d, const gdev_mat *gate, const gdev_mat *up, const float *d_x,
                                     const float *d_norm, float eps, float *d_h) {
    if (gate->type != up->type || gate->n_in != up->n_in || gate->n_out != up->n_out)
        return pl_fail(PL_ERR_UNSUPPORTED, "gpu: gate and up differ in type or shape");
    mv_args a;
    mv_args_init(&a, gate, d_x, d_norm, eps);
    a.m[0] = mv_mat_of(gate, NULL, NULL, 0);
    a.m[1] = mv_mat_of(up, NULL, NULL, 0);
    a.n_mat = 2;
    a.h = d_h;
    a.ks = 1;
    const int blocks = (gate->n_out + MV_WARPS - 1) / MV_WARPS, F = gate->n_out;
    mv_source(d, &a, gate->type, mv_carry(d, d_x, gate->n_in), blocks);
    /* the hand-off of h to the down product: whole chunks, room for them */
    const int hand = d->hand_glu && F % 32 == 0 && F / 32 <= GDEV_CNT && mv_xq_bytes(F / 16) <= GDEV_XQ_BYTES;
    if (hand) a.hq = d->carry, a.cnt = d->cnt;
    size_t smem;
    pl_status st = mv_smem_bytes(d, gate, a.stage, &smem);
    if (st || (st = mv_prepare(d, &a, gate->type))) return st;
    const int fl = (a.stage ? MV_STAGE : 0) | (a.hq ? MV_HAND : 0);
    GDEV_TYPE_SWITCH(gate->type, TT, st = mv_launch_glu<TT>(d, fl, blocks, smem, a));
    if (!st && hand) d->carry_src = d_h, d->carry_n = F;
    return st;
}

/* The dynamic limit is what a block may opt into less the kernel's static
 * shared memory. */
template <typename K> static pl_status mv_raise_one(K kernel, size_t bytes) {
    cudaFuncAttributes fa;
    GDEV_TRY(cudaFuncGetAttributes(&fa, kernel), "reading a kernel's attributes");
    GDEV_TRY(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)(bytes - fa.sharedSizeBytes)),
             "raising the shared-memory limit");
    return PL_OK;
}

template <int TYPE> static pl_status mv_raise_smem(size_t bytes) {
    pl_status st = PL_OK;
    if (!st) st = mv_raise_one(k_matvec<TYPE, 0>, bytes);
    if (!st) st = mv_raise_one(k_matvec<TYPE, MV_STAGE>, bytes);
    if (!st) st = mv_raise_one(k_matvec<TYPE, MV_ATTEND>, bytes);
    if (!st) st = mv_raise_one(k_matvec<TYPE, MV_STAGE | MV_ATTEND>, bytes);
    if (!st) st = mv_raise_one(k_matvec_glu<TYPE, 0>, bytes);
    if (!st) st = mv_raise_one(k_matvec_glu<TYPE, MV_STAGE>, bytes);
    if (!st) st = mv_raise_one(k_matvec_glu<TYPE, MV_HAND>, bytes);
    if (!st) st = mv_raise_one(k_matvec_glu<TYPE, MV_STAGE | MV_HAND>, bytes);
    return st;
}

pl_status gdev_kernels_init(gdev *d) {
    const uint32_t types[] = {QT_F32, QT_F16, QT_BF16, QT_Q8_0, QT_Q4_0, QT_Q4_K, QT_Q6_K};
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) {
        pl_status st = PL_OK;
        GDEV_TYPE_SWITCH(types[i], TT, st = mv_raise_smem<TT>(d->smem_optin));
        if (st) return st;
    }
    d->smem_optin -= 256; /* what is left for x after the kernels' static shared memory */
    return PL_OK;
}
