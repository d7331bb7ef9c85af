/*
 * The batched matrix product Y = W X of the backend (prompt processing and
 * every step with more than one token): 64x64 output tiles per block, K in
 * steps of one 32-element chunk. Each thread dequantizes one 16-element part
 * of a weight row and converts 16 activations to f16 into shared memory; four
 * warps multiply on the tensor cores (WMMA, f16 in, f32 accumulate). The next
 * chunk's global loads are issued before the current one is multiplied and
 * the shared tiles are double-buffered, so one barrier per chunk suffices.
 */
#include "gpu_impl.cuh"

#include <mma.h>

using namespace nvcuda;

/* GM_LD: halves per shared row (32 + 8: 80-byte rows keep the 32-byte
 * alignment WMMA needs and spread the rows over the banks). */
enum { GM_BM = 64, GM_BN = 64, GM_LD = 40, GM_CLD = GM_BM + 4, GM_THREADS = 128 };

struct gemm_args {
    const uint8_t *q, *s;
    uint32_t q_row, s_row;
    int n_in, n_out, n_chunks;
    const float *x;
    int ldx, T;
    float *y;
    int ldy;
    const float *bias;
    int acc, x_vec4;
};

__device__ __forceinline__ void gm_store16(__half *dst, const float v[16]) {
    __half2 h[8];
#pragma unroll
    for (int i = 0; i < 8; i++) h[i] = __floats2half2_rn(v[2 * i], v[2 * i + 1]);
    uint4 *d4 = (uint4 *)dst;
    d4[0] = *(const uint4 *)&h[0];
    d4[1] = *(const uint4 *)&h[4];
}

template <int TYPE> __global__ void __launch_bounds__(GM_THREADS) k_gemm(const gemm_args a) {
    __shared__ __align__(32) __half Ws[2][GM_BM * GM_LD];
    __shared__ __align__(32) __half Xs[2][GM_BN * GM_LD];
    __shared__ __align__(32) float Cs[GM_BN * GM_CLD];
    gdev_dep_wait();
    const int tid = threadIdx.x, warp = tid >> 5;
    const int m0 = blockIdx.x * GM_BM, n0 = blockIdx.y * GM_BN;
    const int lr = tid >> 1, lp = tid & 1;
    /* rows past n_out load the last row again; their results are never stored */
    const int wrow = min(m0 + lr, a.n_out - 1);
    const uint8_t *wq = a.q + (size_t)wrow * a.q_row, *wsc = a.s + (size_t)wrow * a.s_row;
    const int tok = n0 + lr;
    const bool tok_ok = tok < a.T;
    const float *xr = a.x + (size_t)(tok_ok ? tok : 0) * a.ldx;
    gpart<TYPE> wp;
    float xv[16];

    auto load = [&](int kc) {
        gpart_load<TYPE>(wp, wq, wsc, kc * 2 + lp);
        const int k0 = kc * 32 + lp * 16;
        if (tok_ok && a.x_vec4 && k0 + 16 <= a.n_in) {
            const float4 *x4 = (const float4 *)(xr + k0);
#pragma unroll
            for (int i = 0; i < 4; i++) {
                const float4 v = __ldg(x4 + i);
                xv[4 * i] = v.x, xv[4 * i + 1] = v.y, xv[4 * i + 2] = v.z, xv[4 * i + 3] = v.w;
            }
        } else {
#pragma unroll
            for (int i = 0; i < 16; i++) xv[i] = tok_ok && k0 + i < a.n_in ? xr[k0 + i] : 0.0f;
        }
    };

    wmma::fragment<wmma::accumulator, 16, 16, 16, float> c[2][2];
#pragma unroll
    for (int i = 0; i < 2; i++)
#pragma unroll
        for (int j = 0; j < 2; j++) wmma::fill_fragment(c[i][j], 0.0f);
    const int wm = (warp >> 1) * 32, wn = (warp & 1) * 32;

    load(0);
    for (int kc = 0; kc < a.n_chunks; kc++) {
        const int buf = kc & 1;
        float w[16];
        gpart_decode<TYPE>(wp, kc * 2 + lp, w);
        gm_store16(Ws[buf] + lr * GM_LD + lp * 16, w);
        gm_store16(Xs[buf] + lr * GM_LD + lp * 16, xv);
        __syncthreads();
        if (kc + 1 < a.n_chunks) load(kc + 1);
#pragma unroll
        for (int kk = 0; kk < 32; kk += 16) {
            wmma::fragment<wmma::matrix_a, 16, 16, 16, __half, wmma::row_major> fa[2];
            wmma::fragment<wmma::matrix_b, 16, 16, 16, __half, wmma::col_major> fb[2];
#pragma unroll
            for (int i = 0; i < 2; i++) wmma::load_matrix_sync(fa[i], Ws[buf] + (wm + 16 * i) * GM_LD + kk, GM_LD);
#pragma unroll
            for (int j = 0; j < 2; j++) wmma::load_matrix_sync(fb[j], Xs[buf] + (wn + 16 * j) * GM_LD + kk, GM_LD);
#pragma unroll
            for (int i = 0; i < 2; i++)
#pragma unroll
                for (int j = 0; j < 2; j++) wmma::mma_sync(c[i][j], fa[i], fb[j], c[i][j]);
        }
    }
    /* C(m, n) lands at Cs[n][m] so that the stores below run along rows */
#pragma unroll
    for (int i = 0; i < 2; i++)
#pragma unroll
        for (int j = 0; j < 2; j++)
            wmma::store_matrix_sync(Cs + (wn + 16 * j) * GM_CLD + wm + 16 * i, c[i][j], GM_CLD, wmma::mem_col_major);
    __syncthreads();
    for (int idx = tid; idx < GM_BM * GM_BN; idx += GM_THREADS) {
        const int n = idx / GM_BM, m = idx % GM_BM, r = m0 + m, t = n0 + n;
        if (r >= a.n_out || t >= a.T) continue;
        float v = Cs[n * GM_CLD + m];
        if (a.bias) v += a.bias[r];
        float *yp = a.y + (size_t)t * a.ldy + r;
        if (a.acc) *yp += v;
        else *yp = v;
    }
}

extern "C" pl_status gdev_gemm(gdev *d, const gdev_mat *w, const float *d_x, int ldx, int T, float *d_y, int ldy,
                               const float *d_bias, int accumulate) {
    if (T <= 0) return PL_OK;
    gemm_args a;
    a.q = (const uint8_t *)w->q;
    a.s = (const uint8_t *)w->s;
    a.q_row = w->q_row;
    a.s_row = w->s_row;
    a.n_in = w->n_in;
    a.n_out = w->n_out;
    a.n_chunks = w->n_in_pad / 32;
    a.x = d_x;
    a.ldx = ldx;
    a.T = T;
    a.y = d_y;
    a.ldy = ldy;
    a.bias = d_bias;
    a.acc = accumulate;
    a.x_vec4 = ldx % 4 == 0 && ((uintptr_t)d_x & 15) == 0;
    const dim3 grid((unsigned)((w->n_out + GM_BM - 1) / GM_BM), (unsigned)((T + GM_BN - 1) / GM_BN));
    pl_status st = PL_OK;
    GDEV_TYPE_SWITCH(w->type, TT, st = gdev_launch(d, "gemm", k_gemm<TT>, grid, dim3(GM_THREADS), 0, a));
    return st;
}
