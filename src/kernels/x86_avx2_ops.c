/*
 * x86_avx2_ops: AVX2 + FMA float kernels of the forward pass: RMSNorm,
 * softmax, the SwiGLU gate silu(g) * u, and the attention loops (a query's
 * dots with cached keys, the score-weighted sum of cached values).
 *
 * exp is a vectorised Cody-Waite reduction x = k ln2 + r with a degree-7
 * polynomial for e^r: relative error about 2e-7 over the whole float range,
 * 0 below -87.3 (no denormals), +inf above 88.72, NaN kept. Sums run in float
 * with 8 to 32 partial sums, so results equal ref_ops.c up to that rounding.
 */
#if defined(__x86_64__) || defined(__i386__)

#include "kern_impl.h"

#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx2,fma,f16c"))), apply_to = function)
#elif defined(__GNUC__)
#pragma GCC target("avx2,fma,f16c")
#endif

#include "x86_avx2_util.h"

#include <math.h>

static inline __m256 a2_exp(__m256 x) {
    const __m256 hi = _mm256_set1_ps(88.72283f), lo = _mm256_set1_ps(-87.33654f);
    /* min/max with x second keep NaN lanes (the second operand is returned) */
    const __m256 over = _mm256_cmp_ps(x, hi, _CMP_GT_OQ), under = _mm256_cmp_ps(x, lo, _CMP_LT_OQ);
    x = _mm256_min_ps(hi, _mm256_max_ps(lo, x));
    const __m256 k = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504f)),
                                     _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    /* r = x - k ln2 in two steps (ln2 = 0.693359375 - 2.12194440e-4, the
     * first part exact in few bits so k * it is exact) */
    __m256 r = _mm256_fnmadd_ps(k, _mm256_set1_ps(0.693359375f), x);
    r = _mm256_fnmadd_ps(k, _mm256_set1_ps(-2.12194440e-4f), r);
    /* e^r on |r| <= ln2/2 as 1 + r + r^2 * P(r), P of degree 5 */
    __m256 p = _mm256_set1_ps(1.9875691500e-4f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
    p = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
    /* 2^k: k in [-126, 128]; 128 (x near the top) is split as 2 * 2^127 */
    const __m256i ki = _mm256_cvtps_epi32(k);
    const __m256i top = _mm256_cmpgt_epi32(ki, _mm256_set1_epi32(127));
    const __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_sub_epi32(ki, _mm256_and_si256(top, _mm256_set1_epi32(1))),
                                                         _mm256_set1_epi32(127)), 23);
    p = _mm256_mul_ps(p, _mm256_castsi256_ps(e));
    p = _mm256_blendv_ps(p, _mm256_add_ps(p, p), _mm256_castsi256_ps(top));
    p = _mm256_blendv_ps(p, _mm256_set1_ps(INFINITY), over);
    return _mm256_andnot_ps(under, p);
}

/* Mask of the first n (0..8) lanes, for tails. */
static inline __m256i a2_tail_mask(int n) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

static void a2_rmsnorm(float *y, const float *x, const float *w, int n, float eps) {
    __m256 s0 = _mm256_setzero_ps(), s1 = s0;
    int i = 0;
    for (; i + 16 <= n; i += 16) {
        const __m256 a = _mm256_loadu_ps(x + i), b = _mm256_loadu_ps(x + i + 8);
        s0 = _mm256_fmadd_ps(a, a, s0);
        s1 = _mm256_fmadd_ps(b, b, s1);
    }
    float ss = a2_hsum(_mm256_add_ps(s0, s1));
    for (; i < n; i++) ss += x[i] * x[i];
    const float scale = 1.0f / sqrtf(ss / (float)(n > 0 ? n : 1) + eps);
    const __m256 sv = _mm256_set1_ps(scale);
    i = 0;
    if (w) {
        for (; i + 8 <= n; i += 8)
            _mm256_storeu_ps(y + i, _mm256_mul_ps(_mm256_mul_ps(_mm256_loadu_ps(x + i), sv), _mm256_loadu_ps(w + i)));
        for (; i < n; i++) y[i] = x[i] * scale * w[i];
    } else {
        for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, _mm256_mul_ps(_mm256_loadu_ps(x + i), sv));
        for (; i < n; i++) y[i] = x[i] * scale;
    }
}

static void a2_softmax(float *x, int n) {
    if (n <= 0) return;
    __m256 mv = _mm256_set1_ps(-INFINITY);
    int i = 0;
    for (; i + 8 <= n; i += 8) mv = _mm256_max_ps(mv, _mm256_loadu_ps(x + i));
    float mx = a2_hmax(mv);
    for (; i < n; i++) mx = x[i] > mx ? x[i] : mx;
    const __m256 m = _mm256_set1_ps(mx);
    __m256 sv = _mm256_setzero_ps();
    for (i = 0; i + 8 <= n; i += 8) {
        const __m256 e = a2_exp(_mm256_sub_ps(_mm256_loadu_ps(x + i), m));
        _mm256_storeu_ps(x + i, e);
        sv = _mm256_add_ps(sv, e);
    }
    if (i < n) {
        const __m256i mask = a2_tail_mask(n - i);
        const __m256 e = a2_exp(_mm256_sub_ps(_mm256_maskload_ps(x + i, mask), m));
        _mm256_maskstore_ps(x + i, mask, e);
        sv = _mm256_add_ps(sv, _mm256_and_ps(e, _mm256_castsi256_ps(mask)));
    }
    const __m256 inv = _mm256_set1_ps(1.0f / a2_hsum(sv));
    for (i = 0; i + 8 <= n; i += 8) _mm256_storeu_ps(x + i, _mm256_mul_ps(_mm256_loadu_ps(x + i), inv));
    for (; i < n; i++) x[i] *= _mm256_cvtss_f32(inv);
}

static inline __m256 a2_silu_mul8(__m256 g, __m256 u) {
    const __m256 e = a2_exp(_mm256_sub_ps(_mm256_setzero_ps(), g));
    return _mm256_mul_ps(_mm256_div_ps(g, _mm256_add_ps(_mm256_set1_ps(1.0f), e)), u);
}

static void a2_silu_mul(float *h, const float *g, const float *u, int n) {
    int i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(h + i, a2_silu_mul8(_mm256_loadu_ps(g + i), _mm256_loadu_ps(u + i)));
    if (i < n) {
        const __m256i mask = a2_tail_mask(n - i);
        _mm256_maskstore_ps(h + i, mask, a2_silu_mul8(_mm256_maskload_ps(g + i, mask), _mm256_maskload_ps(u + i, mask)));
    }
}

/* dot over n with a masked tail, as one 8-lane partial-sum vector. */
static inline __m256 a2_dot_vec(const float *x, const float *y, int n) {
    __m256 a0 = _mm256_setzero_ps(), a1 = a0;
    int i = 0;
    for (; i + 16 <= n; i += 16) {
        a0 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i), a0);
        a1 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i + 8), _mm256_loadu_ps(y + i + 8), a1);
    }
    for (; i + 8 <= n; i += 8) a0 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i), a0);
    if (i < n) {
        const __m256i mask = a2_tail_mask(n - i);
        a1 = _mm256_fmadd_ps(_mm256_maskload_ps(x + i, mask), _mm256_maskload_ps(y + i, mask), a1);
    }
    return _mm256_add_ps(a0, a1);
}

static float a2_dot_f32(const float *x, const float *y, int n) { return a2_hsum(a2_dot_vec(x, y, n)); }

static void a2_axpy_f32(float *y, float a, const float *x, int n) {
    const __m256 av = _mm256_set1_ps(a);
    int i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(y + i, _mm256_fmadd_ps(av, _mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i)));
    if (i < n) {
        const __m256i mask = a2_tail_mask(n - i);
        _mm256_maskstore_ps(y + i, mask,
                            _mm256_fmadd_ps(av, _mm256_maskload_ps(x + i, mask), _mm256_maskload_ps(y + i, mask)));
    }
}

/* Four rows per step share the loads of x and one horizontal reduction. */
static void a2_dot_rows_f32(float *out, const float *x, const float *M, size_t ldm, int n_rows, int n, float scale) {
    int r = 0;
    for (; r + 4 <= n_rows; r += 4) {
        const float *m0 = M + (size_t)r * ldm;
        __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
        int i = 0;
        for (; i + 8 <= n; i += 8) {
            const __m256 xv = _mm256_loadu_ps(x + i);
            a0 = _mm256_fmadd_ps(xv, _mm256_loadu_ps(m0 + i), a0);
            a1 = _mm256_fmadd_ps(xv, _mm256_loadu_ps(m0 + ldm + i), a1);
            a2 = _mm256_fmadd_ps(xv, _mm256_loadu_ps(m0 + 2 * ldm + i), a2);
            a3 = _mm256_fmadd_ps(xv, _mm256_loadu_ps(m0 + 3 * ldm + i), a3);
        }
        if (i < n) {
            const __m256i mask = a2_tail_mask(n - i);
            const __m256 xv = _mm256_maskload_ps(x + i, mask);
            a0 = _mm256_fmadd_ps(xv, _mm256_maskload_ps(m0 + i, mask), a0);
            a1 = _mm256_fmadd_ps(xv, _mm256_maskload_ps(m0 + ldm + i, mask), a1);
            a2 = _mm256_fmadd_ps(xv, _mm256_maskload_ps(m0 + 2 * ldm + i, mask), a2);
            a3 = _mm256_fmadd_ps(xv, _mm256_maskload_ps(m0 + 3 * ldm + i, mask), a3);
        }
        /* hadd pairs: lanes end as (r0, r1, r2, r3) per 128-bit half */
        const __m256 h = _mm256_hadd_ps(_mm256_hadd_ps(a0, a1), _mm256_hadd_ps(a2, a3));
        const __m128 s = _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
        _mm_storeu_ps(out + r, _mm_mul_ps(s, _mm_set1_ps(scale)));
    }
    for (; r < n_rows; r++) out[r] = scale * a2_hsum(a2_dot_vec(x, M + (size_t)r * ldm, n));
}

/* y = sum_r w[r] M[r]: y is kept in registers 32 columns at a time. */
static void a2_wsum_rows_f32(float *y, const float *w, const float *M, size_t ldm, int n_rows, int n) {
    int i = 0;
    for (; i + 32 <= n; i += 32) {
        __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
        for (int r = 0; r < n_rows; r++) {
            const float *m = M + (size_t)r * ldm + i;
            const __m256 wv = _mm256_set1_ps(w[r]);
            a0 = _mm256_fmadd_ps(wv, _mm256_loadu_ps(m), a0);
            a1 = _mm256_fmadd_ps(wv, _mm256_loadu_ps(m + 8), a1);
            a2 = _mm256_fmadd_ps(wv, _mm256_loadu_ps(m + 16), a2);
            a3 = _mm256_fmadd_ps(wv, _mm256_loadu_ps(m + 24), a3);
        }
        _mm256_storeu_ps(y + i, a0);
        _mm256_storeu_ps(y + i + 8, a1);
        _mm256_storeu_ps(y + i + 16, a2);
        _mm256_storeu_ps(y + i + 24, a3);
    }
    for (; i < n; i += 8) {
        const __m256i mask = a2_tail_mask(n - i < 8 ? n - i : 8);
        __m256 a0 = _mm256_setzero_ps();
        for (int r = 0; r < n_rows; r++)
            a0 = _mm256_fmadd_ps(_mm256_set1_ps(w[r]), _mm256_maskload_ps(M + (size_t)r * ldm + i, mask), a0);
        _mm256_maskstore_ps(y + i, mask, a0);
    }
}

void kern_avx2_install_ops(kern_ops *o) {
    o->rmsnorm = a2_rmsnorm;
    o->softmax = a2_softmax;
    o->silu_mul = a2_silu_mul;
    o->dot_f32 = a2_dot_f32;
    o->axpy_f32 = a2_axpy_f32;
    o->dot_rows_f32 = a2_dot_rows_f32;
    o->wsum_rows_f32 = a2_wsum_rows_f32;
}

#if defined(__clang__)
#pragma clang attribute pop
#endif

#else
typedef int kern_x86_avx2_ops_unused; /* not an x86 build: nothing here */
#endif
