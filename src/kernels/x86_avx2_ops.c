/*
 * x86_avx2_ops: AVX2 + FMA + F16C float kernels of the forward pass: RMSNorm,
 * softmax, the SwiGLU gate silu(g) * u, log-sum-exp, and the attention loops
 * over the F16 KV cache (a query's dots with cached keys, the score-weighted
 * sum of cached values).
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

/* log-sum-exp: max pass, then sum of exp(x - max) in float vectors, folded
 * into a double every 1024 elements so long rows keep float-level accuracy. */
static double a2_logsumexp(const float *x, int n) {
    __m256 mv = _mm256_set1_ps(-INFINITY);
    int i = 0;
    for (; i + 8 <= n; i += 8) mv = _mm256_max_ps(mv, _mm256_loadu_ps(x + i));
    float mx = a2_hmax(mv);
    for (; i < n; i++) mx = x[i] > mx ? x[i] : mx;
    const __m256 m = _mm256_set1_ps(mx);
    double sum = 0.0;
    for (i = 0; i < n;) {
        const int end = n - i > 1024 ? i + 1024 : n;
        __m256 s0 = _mm256_setzero_ps(), s1 = s0;
        for (; i + 16 <= end; i += 16) {
            s0 = _mm256_add_ps(s0, a2_exp(_mm256_sub_ps(_mm256_loadu_ps(x + i), m)));
            s1 = _mm256_add_ps(s1, a2_exp(_mm256_sub_ps(_mm256_loadu_ps(x + i + 8), m)));
        }
        for (; i < end; i += 8) { /* the last chunk's tail, masked */
            const __m256i mask = a2_tail_mask(end - i < 8 ? end - i : 8);
            const __m256 e = a2_exp(_mm256_sub_ps(_mm256_maskload_ps(x + i, mask), m));
            s0 = _mm256_add_ps(s0, _mm256_and_ps(e, _mm256_castsi256_ps(mask)));
        }
        i = end;
        sum += a2_hsum(_mm256_add_ps(s0, s1));
    }
    return (double)mx + log(sum);
}

static inline __m256 a2_load_h8(const pl_fp16 *p) { return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p)); }

/* Scores of 4 keys per step: q is loaded once for the 4, and one hadd tree
 * reduces the 4 partial-sum vectors together. */
static void a2_attn_scores_f16(float *scores, const float *q, const pl_fp16 *k, size_t stride, int P, int D,
                               float scale) {
    const int D8 = D & ~7;
    int p = 0;
    for (; p + 4 <= P; p += 4) {
        const pl_fp16 *k0 = k + (size_t)p * stride, *k1 = k0 + stride, *k2 = k1 + stride, *k3 = k2 + stride;
        __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
        for (int d = 0; d < D8; d += 8) {
            const __m256 qv = _mm256_loadu_ps(q + d);
            a0 = _mm256_fmadd_ps(qv, a2_load_h8(k0 + d), a0);
            a1 = _mm256_fmadd_ps(qv, a2_load_h8(k1 + d), a1);
            a2 = _mm256_fmadd_ps(qv, a2_load_h8(k2 + d), a2);
            a3 = _mm256_fmadd_ps(qv, a2_load_h8(k3 + d), a3);
        }
        const __m256 h = _mm256_hadd_ps(_mm256_hadd_ps(a0, a1), _mm256_hadd_ps(a2, a3));
        __m128 s = _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
        if (D8 < D) {
            float t[4] = {0, 0, 0, 0};
            for (int d = D8; d < D; d++) {
                t[0] += q[d] * a2_h2f(k0[d]);
                t[1] += q[d] * a2_h2f(k1[d]);
                t[2] += q[d] * a2_h2f(k2[d]);
                t[3] += q[d] * a2_h2f(k3[d]);
            }
            s = _mm_add_ps(s, _mm_loadu_ps(t));
        }
        _mm_storeu_ps(scores + p, _mm_mul_ps(s, _mm_set1_ps(scale)));
    }
    for (; p < P; p++) {
        const pl_fp16 *kr = k + (size_t)p * stride;
        __m256 a0 = _mm256_setzero_ps();
        for (int d = 0; d < D8; d += 8) a0 = _mm256_fmadd_ps(_mm256_loadu_ps(q + d), a2_load_h8(kr + d), a0);
        float s = a2_hsum(a0);
        for (int d = D8; d < D; d++) s += q[d] * a2_h2f(kr[d]);
        scores[p] = s * scale;
    }
}

/* out = sum_p w[p] v[p]: 32 columns in registers at a time, two positions
 * per step into separate accumulators so the FMA chains overlap. */
static void a2_attn_values_f16(float *out, const float *w, const pl_fp16 *v, size_t stride, int P, int D) {
    int d = 0;
    for (; d + 32 <= D; d += 32) {
        __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, b0 = a0, b1 = a0, b2 = a0, b3 = a0;
        int p = 0;
        for (; p + 2 <= P; p += 2) {
            const pl_fp16 *v0 = v + (size_t)p * stride + d, *v1 = v0 + stride;
            const __m256 w0 = _mm256_set1_ps(w[p]), w1 = _mm256_set1_ps(w[p + 1]);
            a0 = _mm256_fmadd_ps(w0, a2_load_h8(v0), a0);
            a1 = _mm256_fmadd_ps(w0, a2_load_h8(v0 + 8), a1);
            a2 = _mm256_fmadd_ps(w0, a2_load_h8(v0 + 16), a2);
            a3 = _mm256_fmadd_ps(w0, a2_load_h8(v0 + 24), a3);
            b0 = _mm256_fmadd_ps(w1, a2_load_h8(v1), b0);
            b1 = _mm256_fmadd_ps(w1, a2_load_h8(v1 + 8), b1);
            b2 = _mm256_fmadd_ps(w1, a2_load_h8(v1 + 16), b2);
            b3 = _mm256_fmadd_ps(w1, a2_load_h8(v1 + 24), b3);
        }
        if (p < P) {
            const pl_fp16 *v0 = v + (size_t)p * stride + d;
            const __m256 w0 = _mm256_set1_ps(w[p]);
            a0 = _mm256_fmadd_ps(w0, a2_load_h8(v0), a0);
            a1 = _mm256_fmadd_ps(w0, a2_load_h8(v0 + 8), a1);
            a2 = _mm256_fmadd_ps(w0, a2_load_h8(v0 + 16), a2);
            a3 = _mm256_fmadd_ps(w0, a2_load_h8(v0 + 24), a3);
        }
        _mm256_storeu_ps(out + d, _mm256_add_ps(a0, b0));
        _mm256_storeu_ps(out + d + 8, _mm256_add_ps(a1, b1));
        _mm256_storeu_ps(out + d + 16, _mm256_add_ps(a2, b2));
        _mm256_storeu_ps(out + d + 24, _mm256_add_ps(a3, b3));
    }
    for (; d + 8 <= D; d += 8) {
        __m256 a0 = _mm256_setzero_ps();
        for (int p = 0; p < P; p++)
            a0 = _mm256_fmadd_ps(_mm256_set1_ps(w[p]), a2_load_h8(v + (size_t)p * stride + d), a0);
        _mm256_storeu_ps(out + d, a0);
    }
    for (; d < D; d++) {
        float a = 0.0f;
        for (int p = 0; p < P; p++) a += w[p] * a2_h2f(v[(size_t)p * stride + d]);
        out[d] = a;
    }
}

void kern_avx2_install_ops(kern_ops *o) {
    o->rmsnorm = a2_rmsnorm;
    o->softmax = a2_softmax;
    o->silu_mul = a2_silu_mul;
    o->logsumexp = a2_logsumexp;
    o->attn_scores_f16 = a2_attn_scores_f16;
    o->attn_values_f16 = a2_attn_values_f16;
}

#if defined(__clang__)
#pragma clang attribute pop
#endif

#else
typedef int kern_x86_avx2_ops_unused; /* not an x86 build: nothing here */
#endif
