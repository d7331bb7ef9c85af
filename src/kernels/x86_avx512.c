/*
 * x86_avx512: the AVX-512 level (F/BW/VL/DQ, VNNI where the CPU has it),
 * installed on top of the AVX2 level by dispatch.c. It overwrites only the
 * entries it implements; everything else keeps the AVX2 kernel.
 *
 * Here: the row dots (one row, and four rows against one activation row) of
 * the quantized types, 64 elements per 512-bit vector, and the F16/F32 dots.
 * 32-element types take two blocks per vector and multiply with VPDPBUSD
 * (unsigned levels x signed Q8 bytes into int32, no saturation), their
 * constant level offsets (8, 16, 128) subtracted as the exact integer
 * offset * sum(q8); K-quants multiply with VPMADDUBSW and apply the int16
 * sub-block scales with VPDPWSSD. Integer block sums are the integers the
 * scalar references sum; only the float accumulation order differs. The
 * integer dots need VNNI: without it this level keeps the AVX2 ones.
 */
#if defined(__x86_64__) || defined(__i386__)

#include "kern_impl.h"

/* Enable the ISA here as x86_avx2.c does, so other builds (fuzz, clang)
 * compile this file right without the Makefile's per-file flags. */
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512dq,avx512vnni"))), \
                             apply_to = function)
#elif defined(__GNUC__)
#pragma GCC target("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512dq,avx512vnni")
#endif

#include "x86_avx512_util.h"

/* ------------------------------------------------- 32-element blocks */

/* One activation pair (blocks b, b + 1; for an odd tail block b twice, its
 * copy with scale 0) as every weight row uses it: q8 bytes, the pair's
 * scales, k = the integer sum of (offset byte) * q8 per lane, kf = k * dy. */
typedef struct a5_y2 {
    __m512i q, k;
    __m512 dy, kf;
} a5_y2;

A5_INLINE a5_y2 a5_y2_get(const block_q8_0 *a, const block_q8_0 *b, int tail, char koff) {
    a5_y2 y;
    y.q = a5_load2x32(a->qs, b->qs);
    y.dy = a5_pair(a2_h2f(a->d), tail ? 0.0f : a2_h2f(b->d));
    y.k = _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_set1_epi8(koff), y.q);
    y.kf = _mm512_mul_ps(_mm512_cvtepi32_ps(y.k), y.dy);
    return y;
}

/* Symmetric types: levels - offset, so sum((l - off) q) = dpbusd(l, q) - y.k. */
#define A5_SYM_ROW(T, BT)                                                                          \
    A5_INLINE __m512 a5_row_##T(const BT *xa, const BT *xb, const a5_y2 *y, __m512 acc) {      \
        const __m512i iq = _mm512_dpbusd_epi32(_mm512_sub_epi32(_mm512_setzero_si512(), y->k),      \
                                               a5_lv_##T(xa, xb), y->q);                           \
        const __m512 dx = a5_pair(a2_h2f(xa->d), a2_h2f(xb->d));                                   \
        return _mm512_fmadd_ps(_mm512_cvtepi32_ps(iq), _mm512_mul_ps(dx, y->dy), acc);             \
    }

/* Affine types: d dy sum(l q) + m dy sum(q) (y.k is sum(q) with offset 1). */
#define A5_AFF_ROW(T, BT)                                                                          \
    A5_INLINE __m512 a5_row_##T(const BT *xa, const BT *xb, const a5_y2 *y, __m512 acc) {      \
        const __m512i iq = _mm512_dpbusd_epi32(_mm512_setzero_si512(), a5_lv_##T(xa, xb), y->q);   \
        const __m512 dx = a5_pair(a2_h2f(xa->d), a2_h2f(xb->d));                                   \
        acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(iq), _mm512_mul_ps(dx, y->dy), acc);              \
        return _mm512_fmadd_ps(y->kf, a5_pair(a2_h2f(xa->m), a2_h2f(xb->m)), acc);                 \
    }

A5_SYM_ROW(q4_0, block_q4_0)
A5_SYM_ROW(q5_0, block_q5_0)
A5_SYM_ROW(q8_0, block_q8_0)
A5_AFF_ROW(q4_1, block_q4_1)
A5_AFF_ROW(q5_1, block_q5_1)

/* One-row and four-row dots from a5_row_T; KOFF is the level offset. */
#define A5_B32_DOTS(T, BT, KOFF)                                                                   \
    static void a5_dot_##T(int n, float *s, const void *vx, const void *vy) {                     \
        const BT *x = vx;                                                                          \
        const block_q8_0 *y = vy;                                                                  \
        const int nb = n / 32;                                                                     \
        __m512 acc = _mm512_setzero_ps();                                                          \
        for (int b = 0; b < nb; b += 2) {                                                          \
            const int tail = b + 1 == nb, b1 = tail ? b : b + 1;                                   \
            const a5_y2 yp = a5_y2_get(&y[b], &y[b1], tail, KOFF);                                 \
            acc = a5_row_##T(&x[b], &x[b1], &yp, acc);                                             \
        }                                                                                          \
        *s = _mm512_reduce_add_ps(acc);                                                            \
    }                                                                                              \
    static void a5_dot4_##T(int n, float *s, const void *vx, size_t bx, const void *vy) {         \
        const BT *x0 = vx, *x1 = (const BT *)((const uint8_t *)vx + bx);                           \
        const BT *x2 = (const BT *)((const uint8_t *)vx + 2 * bx), *x3 = (const BT *)((const uint8_t *)vx + 3 * bx); \
        const block_q8_0 *y = vy;                                                                  \
        const int nb = n / 32;                                                                     \
        __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;                                \
        for (int b = 0; b < nb; b += 2) {                                                          \
            const int tail = b + 1 == nb, b1 = tail ? b : b + 1;                                   \
            const a5_y2 yp = a5_y2_get(&y[b], &y[b1], tail, KOFF);                                 \
            a0 = a5_row_##T(&x0[b], &x0[b1], &yp, a0);                                             \
            a1 = a5_row_##T(&x1[b], &x1[b1], &yp, a1);                                             \
            a2 = a5_row_##T(&x2[b], &x2[b1], &yp, a2);                                             \
            a3 = a5_row_##T(&x3[b], &x3[b1], &yp, a3);                                             \
        }                                                                                          \
        s[0] = _mm512_reduce_add_ps(a0);                                                           \
        s[1] = _mm512_reduce_add_ps(a1);                                                           \
        s[2] = _mm512_reduce_add_ps(a2);                                                           \
        s[3] = _mm512_reduce_add_ps(a3);                                                           \
    }

A5_B32_DOTS(q4_0, block_q4_0, 8)
A5_B32_DOTS(q5_0, block_q5_0, 16)
A5_B32_DOTS(q8_0, block_q8_0, (char)0x80)
A5_B32_DOTS(q4_1, block_q4_1, 1)
A5_B32_DOTS(q5_1, block_q5_1, 1)

/* ---------------------------------------------------------------- K-quants */

/* sum over the super-block of level * scale * q8, scales per int16 lane
 * group (sc16: the sub-block scales as int16, per_shift: log2 of the int16
 * lanes one scale covers in a maddubs result). */
A5_INLINE __m512i a5_k_isum(const __m512i lv[4], __m512i sc16, int per_shift, const int8_t *q8) {
    const int per_vec = 5 - per_shift; /* log2 of the scales one 64-level vector spans */
    __m512i isum = _mm512_setzero_si512();
#pragma GCC unroll 4
    for (int m = 0; m < 4; m++) {
        const __m512i p = _mm512_maddubs_epi16(lv[m], a5_load(q8 + 64 * m));
        isum = _mm512_dpwssd_epi32(isum, p, a5_scales(sc16, m << per_vec, per_shift));
    }
    return isum;
}

A5_INLINE __m512 a5_k4_step(const uint8_t *scales, const uint8_t *qs, const uint8_t *qh, pl_fp16 d,
                                pl_fp16 dmin, const block_q8_K *y, __m512 acc) {
    const __m128i scm = a5_k4_scales(scales);
    const __m128i m8 = _mm_unpackhi_epi64(scm, scm);
    const __m256i msum = _mm256_madd_epi16(a2_load(y->bsums), _mm256_cvtepu8_epi16(_mm_unpacklo_epi8(m8, m8)));
    const __m512i sc16 = _mm512_castsi128_si512(_mm_cvtepu8_epi16(scm));
    __m512i lv[4];
    a5_lv_k4(qs, qh, lv);
    const __m512i isum = a5_k_isum(lv, sc16, 4, y->qs);
    acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum), _mm512_set1_ps(y->d * a2_h2f(d)), acc);
    return _mm512_fnmadd_ps(_mm512_set1_ps(y->d * a2_h2f(dmin)), a5_cvt256(msum), acc);
}

A5_INLINE __m512 a5_step_q4_K(const block_q4_K *x, const block_q8_K *y, __m512 acc) {
    return a5_k4_step(x->scales, x->qs, NULL, x->d, x->dmin, y, acc);
}

A5_INLINE __m512 a5_step_q5_K(const block_q5_K *x, const block_q8_K *y, __m512 acc) {
    return a5_k4_step(x->scales, x->qs, x->qh, x->d, x->dmin, y, acc);
}

/* Q6_K and Q3_K: signed 16-group scales, levels stored + off: the offset
 * term off * sum(scale * bsum) is subtracted as an integer. */
A5_INLINE __m512 a5_k_signed(const __m512i lv[4], __m256i sc, int off_shift, const block_q8_K *y, float d,
                                 __m512 acc) {
    const __m256i off = _mm256_sll_epi32(_mm256_madd_epi16(a2_load(y->bsums), sc), _mm_cvtsi32_si128(off_shift));
    __m512i isum = a5_k_isum(lv, _mm512_castsi256_si512(sc), 3, y->qs);
    isum = _mm512_sub_epi32(isum, _mm512_zextsi256_si512(off));
    return _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum), _mm512_set1_ps(y->d * d), acc);
}

A5_INLINE __m512 a5_step_q6_K(const block_q6_K *x, const block_q8_K *y, __m512 acc) {
    __m512i lv[4];
    a5_lv_q6_K(x, lv);
    const __m256i sc = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)x->scales));
    return a5_k_signed(lv, sc, 5, y, a2_h2f(x->d), acc);
}

A5_INLINE __m512 a5_step_q3_K(const block_q3_K *x, const block_q8_K *y, __m512 acc) {
    __m512i lv[4];
    a5_lv_k23(x->qs, x->hmask, lv);
    return a5_k_signed(lv, _mm256_cvtepi8_epi16(a2_q3_scales(x->scales)), 2, y, a2_h2f(x->d), acc);
}

A5_INLINE __m512 a5_step_q2_K(const block_q2_K *x, const block_q8_K *y, __m512 acc) {
    const __m128i sc8 = _mm_loadu_si128((const __m128i *)x->scales);
    const __m256i sc = _mm256_cvtepu8_epi16(_mm_and_si128(sc8, _mm_set1_epi8(0xF)));
    const __m256i mn = _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(sc8, 4), _mm_set1_epi8(0xF)));
    const __m256i msum = _mm256_madd_epi16(a2_load(y->bsums), mn);
    __m512i lv[4];
    a5_lv_k23(x->qs, NULL, lv);
    const __m512i isum = a5_k_isum(lv, _mm512_castsi256_si512(sc), 3, y->qs);
    acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum), _mm512_set1_ps(y->d * a2_h2f(x->d)), acc);
    return _mm512_fnmadd_ps(_mm512_set1_ps(y->d * a2_h2f(x->dmin)), a5_cvt256(msum), acc);
}

#define A5_K_DOTS(T, BT)                                                                           \
    static void a5_dot_##T(int n, float *s, const void *vx, const void *vy) {                     \
        const BT *x = vx;                                                                          \
        const block_q8_K *y = vy;                                                                  \
        __m512 v0 = _mm512_setzero_ps(), v1 = v0;                                                  \
        int b = 0;                                                                                 \
        for (; b + 1 < n / QK_K; b += 2) {                                                         \
            v0 = a5_step_##T(&x[b], &y[b], v0);                                                    \
            v1 = a5_step_##T(&x[b + 1], &y[b + 1], v1);                                            \
        }                                                                                          \
        if (b < n / QK_K) v0 = a5_step_##T(&x[b], &y[b], v0);                                      \
        *s = _mm512_reduce_add_ps(_mm512_add_ps(v0, v1));                                          \
    }                                                                                              \
    static void a5_dot4_##T(int n, float *s, const void *vx, size_t bx, const void *vy) {         \
        const BT *x0 = vx, *x1 = (const BT *)((const uint8_t *)vx + bx);                           \
        const BT *x2 = (const BT *)((const uint8_t *)vx + 2 * bx), *x3 = (const BT *)((const uint8_t *)vx + 3 * bx); \
        const block_q8_K *y = vy;                                                                  \
        __m512 v0 = _mm512_setzero_ps(), v1 = v0, v2 = v0, v3 = v0;                                \
        for (int b = 0; b < n / QK_K; b++) {                                                       \
            v0 = a5_step_##T(&x0[b], &y[b], v0);                                                   \
            v1 = a5_step_##T(&x1[b], &y[b], v1);                                                   \
            v2 = a5_step_##T(&x2[b], &y[b], v2);                                                   \
            v3 = a5_step_##T(&x3[b], &y[b], v3);                                                   \
        }                                                                                          \
        s[0] = _mm512_reduce_add_ps(v0);                                                           \
        s[1] = _mm512_reduce_add_ps(v1);                                                           \
        s[2] = _mm512_reduce_add_ps(v2);                                                           \
        s[3] = _mm512_reduce_add_ps(v3);                                                           \
    }

A5_K_DOTS(q2_K, block_q2_K)
A5_K_DOTS(q3_K, block_q3_K)
A5_K_DOTS(q4_K, block_q4_K)
A5_K_DOTS(q5_K, block_q5_K)
A5_K_DOTS(q6_K, block_q6_K)

/* ------------------------------------------------------------ float types */

/* 64 elements per step in four chains, then 16, then one masked tail. */
static inline __m512 a5_ld_f16(const void *p, int i) {
    return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)((const pl_fp16 *)p + i)));
}
static inline __m512 a5_ldm_f16(const void *p, int i, __mmask16 m) {
    return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, (const pl_fp16 *)p + i));
}
static inline __m512 a5_ld_f32(const void *p, int i) { return _mm512_loadu_ps((const float *)p + i); }
static inline __m512 a5_ldm_f32(const void *p, int i, __mmask16 m) {
    return _mm512_maskz_loadu_ps(m, (const float *)p + i);
}

#define A5_FLOAT_DOT(T)                                                                            \
    static void a5_dot_##T(int n, float *s, const void *x, const void *y) {                       \
        __m512 v0 = _mm512_setzero_ps(), v1 = v0, v2 = v0, v3 = v0;                                \
        int i = 0;                                                                                 \
        for (; i + 64 <= n; i += 64) {                                                             \
            v0 = _mm512_fmadd_ps(a5_ld_##T(x, i), a5_ld_##T(y, i), v0);                            \
            v1 = _mm512_fmadd_ps(a5_ld_##T(x, i + 16), a5_ld_##T(y, i + 16), v1);                  \
            v2 = _mm512_fmadd_ps(a5_ld_##T(x, i + 32), a5_ld_##T(y, i + 32), v2);                  \
            v3 = _mm512_fmadd_ps(a5_ld_##T(x, i + 48), a5_ld_##T(y, i + 48), v3);                  \
        }                                                                                          \
        for (; i + 16 <= n; i += 16) v0 = _mm512_fmadd_ps(a5_ld_##T(x, i), a5_ld_##T(y, i), v0);   \
        if (i < n) {                                                                               \
            const __mmask16 m = (__mmask16)((1u << (n - i)) - 1);                                  \
            v1 = _mm512_fmadd_ps(a5_ldm_##T(x, i, m), a5_ldm_##T(y, i, m), v1);                    \
        }                                                                                          \
        *s = _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(v0, v1), _mm512_add_ps(v2, v3)));    \
    }

A5_FLOAT_DOT(f16)
A5_FLOAT_DOT(f32)

/* ---------------------------------------------------------------- install */

void kern_avx512_install(kern_ops *o) {
    static const struct {
        quant_type type;
        quant_vec_dot_fn dot;
        kern_vec_dot4_fn dot4;
    } k_int_dots[] = {
        {QT_Q4_0, a5_dot_q4_0, a5_dot4_q4_0}, {QT_Q4_1, a5_dot_q4_1, a5_dot4_q4_1},
        {QT_Q5_0, a5_dot_q5_0, a5_dot4_q5_0}, {QT_Q5_1, a5_dot_q5_1, a5_dot4_q5_1},
        {QT_Q8_0, a5_dot_q8_0, a5_dot4_q8_0}, {QT_Q2_K, a5_dot_q2_K, a5_dot4_q2_K},
        {QT_Q3_K, a5_dot_q3_K, a5_dot4_q3_K}, {QT_Q4_K, a5_dot_q4_K, a5_dot4_q4_K},
        {QT_Q5_K, a5_dot_q5_K, a5_dot4_q5_K}, {QT_Q6_K, a5_dot_q6_K, a5_dot4_q6_K},
    };
    const kern_cpu *c = kern_cpu_features();
    o->vec_dot[QT_F16] = a5_dot_f16;
    o->vec_dot[QT_F32] = a5_dot_f32;
    if (c->avx512vnni) {
        for (size_t i = 0; i < sizeof k_int_dots / sizeof k_int_dots[0]; i++) {
            o->vec_dot[k_int_dots[i].type] = k_int_dots[i].dot;
            o->vec_dot4[k_int_dots[i].type] = k_int_dots[i].dot4;
        }
        kern_avx512_install_gemm(o);
        /* prompts of packed weights through these tiles (measured 2.5x the
         * AVX2 tiles; the AVX2 packed kernels now run 1.3-1.6x those tiles,
         * and have not been timed against these); decode keeps the packed ones */
        o->packed_tiles[QT_Q4_0] = o->packed_tiles[QT_Q8_0] = o->packed_tiles[QT_Q4_K] = o->packed_tiles[QT_Q6_K] = true;
        /* Q6_K's VNNI row dots beat the AVX2 packed kernel in 3 of 4 decode
         * figures (T = 1 on a shared 16-core Sapphire Rapids class Xeon,
         * 2048x2048: 0.24 vs 0.34 ms one thread, 0.12 vs 0.16 two; 2048x8192
         * two threads 0.50 vs 0.75; one thread 1.56 vs 1.24), so its matrices
         * keep the file layout; packed Q4_0, Q8_0 and Q4_K beat the row dots
         * in every figure */
        o->packed_pays[QT_Q6_K] = false;
        if (kern_vnni_packed_wanted()) kern_avx512vnni_install_packed(o);
    }
    if (c->avx512_bf16) kern_avx512_install_bf16(o);
}

#if defined(__clang__)
#pragma clang attribute pop
#endif

#else
typedef int x86_avx512_empty; /* ISO C forbids an empty translation unit */
#endif
