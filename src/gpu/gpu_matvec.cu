/*
 * Single-token matrix-vector products, the whole cost of decoding: the weights
 * are read once per token, so the kernels aim at streaming them at memory
 * speed. Each warp takes two rows; its first batch of weight loads is issued
 * before the kernel waits for the previous one (programmatic dependent
 * launch, gdev_launch). Quantized weights meet x quantized to int8 per 32
 * values (as the CPU's Q8_0 activations; RMSNorm fused in front) once per
 * product by k_quant_x, in dp4a integer dots, a few instructions per 16
 * weights; float weights use float dots on a padded float copy of x that each
 * block stages in shared memory. Bias, residual add, SwiGLU and (for Q/K/V)
 * rotary embedding + KV-cache store are fused behind.
 */
#include "gpu_impl.cuh"

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
    const unsigned char *xq; /* int8 types: x as k_quant_x wrote it */
    int ks;                  /* warps sharing a row pair, each a slice of the parts (k_matvec) */
    /* fused rotary embedding of m[0] = Q, m[1] = K, m[2] = V (gdev_matvec_qkv) */
    int rope, n_rot, D, GD;
    const int *pos;
    const float *cos, *sin;
    __half *kc, *vc;
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

/* Shared memory for x: float types stage it as n_parts * MV_XS floats; int8
 * types read k_quant_x's copy from global memory (L1-resident), needing none.
 * That copy: the values (16 bytes a part), each part's sum, each chunk's scale. */
static size_t mv_smem_bytes_of(uint32_t type, int n_parts) {
    return mv_is_float(type) ? (size_t)n_parts * MV_XS * sizeof(float) : 0;
}
static size_t mv_xq_bytes(int n_parts) { return (size_t)n_parts * 22; }

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
    const float v = norm ? x[i] * scale * norm[i] : x[i];
    const float amax = gdev_warp_max(fabsf(v));
    const float dd = amax / 127.0f, id = dd != 0.0f ? 1.0f / dd : 0.0f;
    const int q = (int)roundf(v * id);
    out[i] = (unsigned char)(signed char)q;
    int s = q;
#pragma unroll
    for (int o = 8; o > 0; o >>= 1) s += __shfl_xor_sync(0xffffffffu, s, o);
    if ((lane & 15) == 0) ((int *)(out + 16 * n_parts))[2 * c + (lane >> 4)] = s;
    if (lane == 0) ((float *)(out + 20 * n_parts))[c] = dd;
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

/* xb: the staged float x (shared) or k_quant_x's copy (global). */
template <int TYPE> __device__ __forceinline__ float mv_dot(const gpart<TYPE> &p, int u, const unsigned char *xb, int n_parts) {
    if constexpr (mv_int<TYPE>::v) {
        const int4 X = __ldg((const int4 *)(xb + 16 * u));
        const int xs = __ldg((const int *)(xb + 16 * n_parts) + u);
        const float dx = __ldg((const float *)(xb + 20 * n_parts) + (u >> 1));
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
    __device__ __forceinline__ void dot(int base, int end, const unsigned char *xb, int n_parts, float &acc0,
                                        float &acc1) const {
#pragma unroll
        for (int j = 0; j < NB; j++) {
            const int u = base + (threadIdx.x & 31) + 32 * j;
            if (u < end) {
                acc0 += mv_dot<TYPE>(p0[j], u, xb, n_parts);
                acc1 += mv_dot<TYPE>(p1[j], u, xb, n_parts);
            }
        }
    }
};

/* Two rows against x over parts [u0, u1): the first batch of weights is
 * requested before the kernel waits for the previous one (weights never
 * change), then x is staged (float types) and the batches stream. A warp
 * that is not `live` only helps to stage x. Returns the two dots of the
 * slice in every lane. */
template <int TYPE>
__device__ __forceinline__ void mv_two_rows(const mv_args &a, unsigned char *sm, bool live, const uint8_t *q0,
                                            const uint8_t *s0, const uint8_t *q1, const uint8_t *s1, int u0, int u1,
                                            float &acc0, float &acc1) {
    constexpr int NB = mv_nb<TYPE>::v;
    mv_batch<TYPE, NB> b;
    if (live) b.load(q0, s0, q1, s1, u0, u1);
    gdev_dep_wait();
    if constexpr (mv_int<TYPE>::v) sm = (unsigned char *)a.xq;
    else mv_stage_x(sm, a);
    if (!live) return;
    b.dot(u0, u1, sm, a.n_parts, acc0, acc1);
    for (int base = u0 + 32 * NB; base < u1; base += 32 * NB) {
        b.load(q0, s0, q1, s1, base, u1);
        b.dot(base, u1, sm, a.n_parts, acc0, acc1);
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

/* Each row pair is shared by a.ks warps, each taking a slice of the parts
 * (wide rows would otherwise be a chain of dependent batches). */
template <int TYPE> __global__ void __launch_bounds__(MV_THREADS) k_matvec(const mv_args a) {
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
    mv_two_rows<TYPE>(a, (unsigned char *)mv_smem, one, A.q + (size_t)i0 * A.q_row, A.s + (size_t)i0 * A.s_row,
                      B.q + (size_t)i1 * B.q_row, B.s + (size_t)i1 * B.s_row, slice * len, slice * len + len, acc0,
                      acc1);
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
}

/* m[0] = gate, m[1] = up: each warp computes one row of both. */
template <int TYPE> __global__ void __launch_bounds__(MV_THREADS) k_matvec_glu(const mv_args a) {
    extern __shared__ float4 mv_smem[];
    const int r = blockIdx.x * MV_WARPS + (threadIdx.x >> 5);
    const bool live = r < a.m[0].n_out;
    const int rr = live ? r : 0;
    float g = 0.0f, u = 0.0f;
    mv_two_rows<TYPE>(a, (unsigned char *)mv_smem, live, a.m[0].q + (size_t)rr * a.m[0].q_row,
                      a.m[0].s + (size_t)rr * a.m[0].s_row, a.m[1].q + (size_t)rr * a.m[1].q_row,
                      a.m[1].s + (size_t)rr * a.m[1].s_row, 0, a.n_parts, g, u);
    if (live && (threadIdx.x & 31) == 0) a.h[r] = g / (1.0f + expf(-g)) * u;
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

static pl_status mv_smem_bytes(const gdev *d, const gdev_mat *w, size_t *out) {
    *out = mv_smem_bytes_of(w->type, w->n_in_pad / 16);
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

/* Int8 types: quantize x into d->xq first and point the product at it. */
static pl_status mv_prepare(gdev *d, mv_args *a, uint32_t type) {
    if (mv_is_float(type)) return PL_OK;
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

static pl_status mv_launch(gdev *d, mv_args *a, uint32_t type, int rows, size_t smem) {
    pl_status st = mv_prepare(d, a, type);
    if (st) return st;
    a->ks = mv_split(type, a->n_parts);
    const int per_block = MV_WARPS / a->ks * 2;
    const dim3 grid((unsigned)((rows + per_block - 1) / per_block));
    GDEV_TYPE_SWITCH(type, TT, st = gdev_launch(d, "matvec", k_matvec<TT>, grid, dim3(MV_THREADS), smem, *a));
    return st;
}

extern "C" pl_status gdev_matvec(gdev *d, const gdev_mv_out *outs, int n_outs, const float *d_x, const float *d_norm,
                                 float eps) {
    if (n_outs < 1 || n_outs > 3) return pl_fail(PL_ERR_INTERNAL, "gpu: matvec of %d matrices", n_outs);
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
        size_t smem;
        pl_status st = mv_smem_bytes(d, w, &smem);
        if (st || (st = mv_launch(d, &a, w->type, rows, smem))) return st;
    }
    return PL_OK;
}

extern "C" pl_status gdev_matvec_qkv(gdev *d, const gdev_mv_out *outs, const float *d_x, const float *d_norm, float eps,
                                     const gdev_attn *at) {
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
    size_t smem;
    pl_status st = mv_smem_bytes(d, wq, &smem);
    return st ? st : mv_launch(d, &a, wq->type, wq->n_out + wk->n_out + wv->n_out, smem);
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
    size_t smem;
    pl_status st = mv_smem_bytes(d, gate, &smem);
    if (st || (st = mv_prepare(d, &a, gate->type))) return st;
    const dim3 grid((unsigned)((gate->n_out + MV_WARPS - 1) / MV_WARPS));
    GDEV_TYPE_SWITCH(gate->type, TT,
                     st = gdev_launch(d, "matvec_glu", k_matvec_glu<TT>, grid, dim3(MV_THREADS), smem, a));
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
    pl_status st = mv_raise_one(k_matvec<TYPE>, bytes);
    return st ? st : mv_raise_one(k_matvec_glu<TYPE>, bytes);
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
