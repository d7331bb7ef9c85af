/*
 * x86_avx2: AVX2 + FMA + F16C row kernels: vec_dot of every weight type with
 * its vec_dot_type, and from_float of the activation types (Q8_0, Q8_K, F16,
 * BF16). Chosen at run time by dispatch.c; the rest of the binary stays
 * baseline x86-64.
 *
 * Each dot computes what the scalar reference in src/quant computes: integer
 * block sums are exact (the same integers), only the float accumulation of the
 * block results runs in a different order. The quantizers produce the same
 * bytes as the references. Int8 operands follow x86_avx2_util.h's rule.
 */
#if defined(__x86_64__) || defined(__i386__)

#include "kern_impl.h"

/* This file and its siblings enable the ISA themselves, so they build right
 * with or without the Makefile's per-file flags (e.g. the fuzz build). */
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx2,fma,f16c"))), apply_to = function)
#elif defined(__GNUC__)
#pragma GCC target("avx2,fma,f16c")
#endif

#include "x86_avx2_util.h"

/* ----------------------------------------------------- 32-element blocks */

/* The blocks are independent: two accumulators hide the FMA latency. */
#define A2_BLOCK_LOOP(nb, step)                                 \
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps(); \
    int b = 0;                                                  \
    for (; b + 1 < (nb); b += 2) {                              \
        acc0 = step(b, acc0);                                   \
        acc1 = step(b + 1, acc1);                               \
    }                                                           \
    if (b < (nb)) acc0 = step(b, acc0);                         \
    *s = a2_hsum(_mm256_add_ps(acc0, acc1))

static void a2_dot_q4_0_q8_0(int n, float *s, const void *vx, const void *vy) {
    const block_q4_0 *x = vx;
    const block_q8_0 *y = vy;
#define STEP(i, acc)                                                                                  \
    _mm256_fmadd_ps(_mm256_set1_ps(a2_h2f(x[i].d) * a2_h2f(y[i].d)),                                  \
                    _mm256_cvtepi32_ps(a2_dot_i8(_mm256_sub_epi8(a2_nibbles(x[i].qs), _mm256_set1_epi8(8)), \
                                                 a2_load(y[i].qs))),                                  \
                    acc)
    A2_BLOCK_LOOP(n / QK4_0, STEP);
#undef STEP
}

/* Affine types: d*dy*sum(q*y) + m*dy*sum(y), both sums exact integers. */
static inline __m256 a2_affine_step(__m256i q, const block_q8_0 *y, float dx, float mx, __m256 acc) {
    const __m256i yq = a2_load(y->qs);
    const float dy = a2_h2f(y->d);
    acc = _mm256_fmadd_ps(_mm256_set1_ps(dx * dy), _mm256_cvtepi32_ps(a2_dot_u8(q, yq)), acc);
    return _mm256_fmadd_ps(_mm256_set1_ps(mx * dy), _mm256_cvtepi32_ps(a2_dot_u8(_mm256_set1_epi8(1), yq)), acc);
}

static void a2_dot_q4_1_q8_0(int n, float *s, const void *vx, const void *vy) {
    const block_q4_1 *x = vx;
    const block_q8_0 *y = vy;
#define STEP(i, acc) a2_affine_step(a2_nibbles(x[i].qs), &y[i], a2_h2f(x[i].d), a2_h2f(x[i].m), acc)
    A2_BLOCK_LOOP(n / QK4_1, STEP);
#undef STEP
}

/* Low nibbles plus bit 4 from the qh word: levels 0..31. */
static inline __m256i a2_q5_levels(const uint8_t *qs, const uint8_t *qh) {
    return _mm256_or_si256(a2_nibbles(qs), _mm256_and_si256(a2_bits32(a2_load_u32(qh)), _mm256_set1_epi8(0x10)));
}

static void a2_dot_q5_0_q8_0(int n, float *s, const void *vx, const void *vy) {
    const block_q5_0 *x = vx;
    const block_q8_0 *y = vy;
#define STEP(i, acc)                                                                                   \
    _mm256_fmadd_ps(_mm256_set1_ps(a2_h2f(x[i].d) * a2_h2f(y[i].d)),                                   \
                    _mm256_cvtepi32_ps(a2_dot_i8(_mm256_sub_epi8(a2_q5_levels(x[i].qs, x[i].qh),       \
                                                                 _mm256_set1_epi8(16)),                \
                                                 a2_load(y[i].qs))),                                   \
                    acc)
    A2_BLOCK_LOOP(n / QK5_0, STEP);
#undef STEP
}

static void a2_dot_q5_1_q8_0(int n, float *s, const void *vx, const void *vy) {
    const block_q5_1 *x = vx;
    const block_q8_0 *y = vy;
#define STEP(i, acc) a2_affine_step(a2_q5_levels(x[i].qs, x[i].qh), &y[i], a2_h2f(x[i].d), a2_h2f(x[i].m), acc)
    A2_BLOCK_LOOP(n / QK5_1, STEP);
#undef STEP
}

static void a2_dot_q8_0_q8_0(int n, float *s, const void *vx, const void *vy) {
    const block_q8_0 *x = vx;
    const block_q8_0 *y = vy;
#define STEP(i, acc)                                                                               \
    _mm256_fmadd_ps(_mm256_set1_ps(a2_h2f(x[i].d) * a2_h2f(y[i].d)),                               \
                    _mm256_cvtepi32_ps(a2_dot_i8(a2_load(x[i].qs), a2_load(y[i].qs))), acc)
    A2_BLOCK_LOOP(n / QK8_0, STEP);
#undef STEP
}

/* ---------------------------------------------------------------- K-quants */

/* Each K dot builds one int32 vector of sum(level * q8 * scale) per
 * super-block and one of the offset/min term through Q8_K's bsums, then
 * scales both in float. Levels are kept unsigned so maddubs can take them. */

static void a2_dot_q2_K_q8_K(int n, float *s, const void *vx, const void *vy) {
    const block_q2_K *x = vx;
    const block_q8_K *y = vy;
    const __m256i m3 = _mm256_set1_epi8(3);
    __m256 acc = _mm256_setzero_ps(), accm = _mm256_setzero_ps();
    for (int b = 0; b < n / QK_K; b++) {
        const __m128i sc8 = _mm_loadu_si128((const __m128i *)x[b].scales);
        const __m256i sc = _mm256_cvtepu8_epi16(_mm_and_si128(sc8, _mm_set1_epi8(0xF)));
        const __m256i mn = _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(sc8, 4), _mm_set1_epi8(0xF)));
        const __m256i msum = _mm256_madd_epi16(a2_load(y[b].bsums), mn);
        int32_t pairs[8];
        _mm256_storeu_si256((__m256i *)pairs, sc);
        __m256i isum = _mm256_setzero_si256();
        const int8_t *q8 = y[b].qs;
        for (int half = 0; half < 2; half++) {
            __m256i q = a2_load(x[b].qs + 32 * half);
            for (int k = 0; k < 4; k++, q8 += 32) {
                const __m256i p = _mm256_maddubs_epi16(_mm256_and_si256(q, m3), a2_load(q8));
                isum = _mm256_add_epi32(isum, _mm256_madd_epi16(p, a2_scale_pair(pairs[4 * half + k])));
                q = _mm256_srli_epi16(q, 2);
            }
        }
        acc = _mm256_fmadd_ps(_mm256_set1_ps(y[b].d * a2_h2f(x[b].d)), _mm256_cvtepi32_ps(isum), acc);
        accm = _mm256_fmadd_ps(_mm256_set1_ps(y[b].d * a2_h2f(x[b].dmin)), _mm256_cvtepi32_ps(msum), accm);
    }
    *s = a2_hsum(acc) - a2_hsum(accm);
}

static void a2_dot_q3_K_q8_K(int n, float *s, const void *vx, const void *vy) {
    const block_q3_K *x = vx;
    const block_q8_K *y = vy;
    const __m256i m3 = _mm256_set1_epi8(3), m4 = _mm256_set1_epi8(4);
    __m256 acc = _mm256_setzero_ps();
    for (int b = 0; b < n / QK_K; b++) {
        const __m256i sc = _mm256_cvtepi8_epi16(a2_q3_scales(x[b].scales));
        /* levels are stored + 4: subtract 4 * sum(scale * bsum) */
        const __m256i off = _mm256_slli_epi32(_mm256_madd_epi16(a2_load(y[b].bsums), sc), 2);
        int32_t pairs[8];
        _mm256_storeu_si256((__m256i *)pairs, sc);
        __m256i isum = _mm256_sub_epi32(_mm256_setzero_si256(), off);
        __m256i hm = a2_load(x[b].hmask);
        const int8_t *q8 = y[b].qs;
        for (int half = 0; half < 2; half++) {
            __m256i q = a2_load(x[b].qs + 32 * half);
            for (int k = 0; k < 4; k++, q8 += 32) {
                const __m256i lv = _mm256_or_si256(_mm256_and_si256(q, m3),
                                                   _mm256_and_si256(_mm256_slli_epi16(hm, 2), m4));
                const __m256i p = _mm256_maddubs_epi16(lv, a2_load(q8));
                isum = _mm256_add_epi32(isum, _mm256_madd_epi16(p, a2_scale_pair(pairs[4 * half + k])));
                q = _mm256_srli_epi16(q, 2);
                hm = _mm256_srli_epi16(hm, 1);
            }
        }
        acc = _mm256_fmadd_ps(_mm256_set1_ps(y[b].d * a2_h2f(x[b].d)), _mm256_cvtepi32_ps(isum), acc);
    }
    *s = a2_hsum(acc);
}

/* Q4_K and Q5_K: 8 sub-blocks of 32 with a 6-bit scale and min; qh == NULL
 * for Q4_K, else bit j of qh[l] is bit 4 of element l of sub-block j. */
static inline void a2_k4_superblock(const uint8_t *scales, const uint8_t *qs, const uint8_t *qh,
                                    const block_q8_K *y, __m256i *isum_out, __m256i *msum_out) {
    uint8_t sc[8], mn[8];
    a2_k4_scales(scales, sc, mn);
    const __m128i m8 = _mm_loadl_epi64((const __m128i *)mn);
    *msum_out = _mm256_madd_epi16(a2_load(y->bsums), _mm256_cvtepu8_epi16(_mm_unpacklo_epi8(m8, m8)));
    const __m256i m4 = _mm256_set1_epi8(0xF), b4 = _mm256_set1_epi8(0x10);
    __m256i hv = qh ? a2_load(qh) : _mm256_setzero_si256();
    __m256i isum = _mm256_setzero_si256();
    for (int p = 0; p < 4; p++) {
        const __m256i q = a2_load(qs + 32 * p);
        __m256i lo = _mm256_and_si256(q, m4), hi = _mm256_and_si256(_mm256_srli_epi16(q, 4), m4);
        if (qh) {
            lo = _mm256_or_si256(lo, _mm256_and_si256(_mm256_slli_epi16(hv, 4), b4));
            hi = _mm256_or_si256(hi, _mm256_and_si256(_mm256_slli_epi16(hv, 3), b4));
            hv = _mm256_srli_epi16(hv, 2);
        }
        const __m256i plo = _mm256_maddubs_epi16(lo, a2_load(y->qs + 64 * p));
        const __m256i phi = _mm256_maddubs_epi16(hi, a2_load(y->qs + 64 * p + 32));
        isum = _mm256_add_epi32(isum, _mm256_madd_epi16(plo, _mm256_set1_epi16(sc[2 * p])));
        isum = _mm256_add_epi32(isum, _mm256_madd_epi16(phi, _mm256_set1_epi16(sc[2 * p + 1])));
    }
    *isum_out = isum;
}

static void a2_dot_q4_K_q8_K(int n, float *s, const void *vx, const void *vy) {
    const block_q4_K *x = vx;
    const block_q8_K *y = vy;
    __m256 acc = _mm256_setzero_ps(), accm = _mm256_setzero_ps();
    for (int b = 0; b < n / QK_K; b++) {
        __m256i isum, msum;
        a2_k4_superblock(x[b].scales, x[b].qs, NULL, &y[b], &isum, &msum);
        acc = _mm256_fmadd_ps(_mm256_set1_ps(y[b].d * a2_h2f(x[b].d)), _mm256_cvtepi32_ps(isum), acc);
        accm = _mm256_fmadd_ps(_mm256_set1_ps(y[b].d * a2_h2f(x[b].dmin)), _mm256_cvtepi32_ps(msum), accm);
    }
    *s = a2_hsum(acc) - a2_hsum(accm);
}

static void a2_dot_q5_K_q8_K(int n, float *s, const void *vx, const void *vy) {
    const block_q5_K *x = vx;
    const block_q8_K *y = vy;
    __m256 acc = _mm256_setzero_ps(), accm = _mm256_setzero_ps();
    for (int b = 0; b < n / QK_K; b++) {
        __m256i isum, msum;
        a2_k4_superblock(x[b].scales, x[b].qs, x[b].qh, &y[b], &isum, &msum);
        acc = _mm256_fmadd_ps(_mm256_set1_ps(y[b].d * a2_h2f(x[b].d)), _mm256_cvtepi32_ps(isum), acc);
        accm = _mm256_fmadd_ps(_mm256_set1_ps(y[b].d * a2_h2f(x[b].dmin)), _mm256_cvtepi32_ps(msum), accm);
    }
    *s = a2_hsum(acc) - a2_hsum(accm);
}

static void a2_dot_q6_K_q8_K(int n, float *s, const void *vx, const void *vy) {
    const block_q6_K *x = vx;
    const block_q8_K *y = vy;
    const __m256i m4 = _mm256_set1_epi8(0xF), m30 = _mm256_set1_epi8(0x30);
    __m256 acc = _mm256_setzero_ps();
    for (int b = 0; b < n / QK_K; b++) {
        const __m256i sc = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)x[b].scales));
        /* levels are stored + 32: subtract 32 * sum(scale * bsum) */
        const __m256i off = _mm256_slli_epi32(_mm256_madd_epi16(a2_load(y[b].bsums), sc), 5);
        int32_t pairs[8];
        _mm256_storeu_si256((__m256i *)pairs, sc);
        __m256i isum = _mm256_sub_epi32(_mm256_setzero_si256(), off);
        for (int half = 0; half < 2; half++) {
            const __m256i ql0 = a2_load(x[b].ql + 64 * half), ql1 = a2_load(x[b].ql + 64 * half + 32);
            const __m256i hv = a2_load(x[b].qh + 32 * half);
            __m256i lv[4];
            lv[0] = _mm256_or_si256(_mm256_and_si256(ql0, m4), _mm256_and_si256(_mm256_slli_epi16(hv, 4), m30));
            lv[1] = _mm256_or_si256(_mm256_and_si256(ql1, m4), _mm256_and_si256(_mm256_slli_epi16(hv, 2), m30));
            lv[2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql0, 4), m4), _mm256_and_si256(hv, m30));
            lv[3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql1, 4), m4),
                                    _mm256_and_si256(_mm256_srli_epi16(hv, 2), m30));
            const int8_t *q8 = y[b].qs + 128 * half;
            for (int k = 0; k < 4; k++) {
                const __m256i p = _mm256_maddubs_epi16(lv[k], a2_load(q8 + 32 * k));
                isum = _mm256_add_epi32(isum, _mm256_madd_epi16(p, a2_scale_pair(pairs[4 * half + k])));
            }
        }
        acc = _mm256_fmadd_ps(_mm256_set1_ps(y[b].d * a2_h2f(x[b].d)), _mm256_cvtepi32_ps(isum), acc);
    }
    *s = a2_hsum(acc);
}

/* ------------------------------------------------------------ float types */

/* Four accumulators over 32 elements per step, then 8, then a scalar tail. */
#define A2_FLOAT_DOT(LOAD_X, LOAD_Y, SCALAR)                                              \
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;                          \
    int i = 0;                                                                            \
    for (; i + 32 <= n; i += 32) {                                                        \
        a0 = _mm256_fmadd_ps(LOAD_X(i), LOAD_Y(i), a0);                                   \
        a1 = _mm256_fmadd_ps(LOAD_X(i + 8), LOAD_Y(i + 8), a1);                           \
        a2 = _mm256_fmadd_ps(LOAD_X(i + 16), LOAD_Y(i + 16), a2);                         \
        a3 = _mm256_fmadd_ps(LOAD_X(i + 24), LOAD_Y(i + 24), a3);                         \
    }                                                                                     \
    for (; i + 8 <= n; i += 8) a0 = _mm256_fmadd_ps(LOAD_X(i), LOAD_Y(i), a0);           \
    float sum = a2_hsum(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));    \
    for (; i < n; i++) sum += SCALAR(i);                                                  \
    *s = sum

static inline __m256 a2_load_f16(const pl_fp16 *p) { return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p)); }

static inline __m256 a2_load_bf16(const pl_bf16 *p) {
    const __m256i w = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)p));
    return _mm256_castsi256_ps(_mm256_slli_epi32(w, 16));
}

static void a2_dot_f16_f16(int n, float *s, const void *vx, const void *vy) {
    const pl_fp16 *x = vx, *y = vy;
#define LX(k) a2_load_f16(x + (k))
#define LY(k) a2_load_f16(y + (k))
#define SC(k) a2_h2f(x[k]) * a2_h2f(y[k])
    A2_FLOAT_DOT(LX, LY, SC);
#undef LX
#undef LY
#undef SC
}

static void a2_dot_bf16_bf16(int n, float *s, const void *vx, const void *vy) {
    const pl_bf16 *x = vx, *y = vy;
#define LX(k) a2_load_bf16(x + (k))
#define LY(k) a2_load_bf16(y + (k))
#define SC(k) quant_bf16_to_f32(x[k]) * quant_bf16_to_f32(y[k])
    A2_FLOAT_DOT(LX, LY, SC);
#undef LX
#undef LY
#undef SC
}

static void a2_dot_f32_f32(int n, float *s, const void *vx, const void *vy) {
    const float *x = vx, *y = vy;
#define LX(k) _mm256_loadu_ps(x + (k))
#define LY(k) _mm256_loadu_ps(y + (k))
#define SC(k) x[k] * y[k]
    A2_FLOAT_DOT(LX, LY, SC);
#undef LX
#undef LY
#undef SC
}

/* ------------------------------------------------------------- quantizers */

static void a2_q8_0_from_float(const float *x, void *vy, int64_t n) {
    block_q8_0 *y = vy;
    for (int64_t b = 0; b < n / QK8_0; b++) y[b].d = quant_f32_to_fp16(a2_q8_0_block(x + QK8_0 * b, y[b].qs));
}

static void a2_q8_K_from_float(const float *x, void *vy, int64_t n) {
    block_q8_K *y = vy;
    for (int64_t b = 0; b < n / QK_K; b++) a2_q8_K_block(x + QK_K * b, &y[b]);
}

/* F16C rounds to nearest even and keeps NaN quiet with its top payload bits,
 * exactly as quant_f32_to_fp16. */
static void a2_f16_from_float(const float *x, void *vy, int64_t n) {
    pl_fp16 *y = vy;
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm_storeu_si128((__m128i *)(y + i), _mm256_cvtps_ph(_mm256_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT));
    for (; i < n; i++) y[i] = quant_f32_to_fp16(x[i]);
}

/* Round to nearest even on the bit pattern; NaN keeps its top bits, quieted. */
static void a2_bf16_from_float(const float *x, void *vy, int64_t n) {
    pl_bf16 *y = vy;
    int64_t i = 0;
    const __m256i abs_mask = _mm256_set1_epi32(0x7fffffff), inf = _mm256_set1_epi32(0x7f800000);
    for (; i + 8 <= n; i += 8) {
        const __m256i u = _mm256_loadu_si256((const __m256i *)(x + i));
        const __m256i nan = _mm256_cmpgt_epi32(_mm256_and_si256(u, abs_mask), inf);
        const __m256i odd = _mm256_and_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(1));
        const __m256i r = _mm256_srli_epi32(_mm256_add_epi32(u, _mm256_add_epi32(odd, _mm256_set1_epi32(0x7fff))), 16);
        const __m256i q = _mm256_or_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(0x40));
        const __m256i v = _mm256_blendv_epi8(r, q, nan);
        const __m256i packed = _mm256_permute4x64_epi64(_mm256_packus_epi32(v, v), 0x08);
        _mm_storeu_si128((__m128i *)(y + i), _mm256_castsi256_si128(packed));
    }
    for (; i < n; i++) y[i] = quant_f32_to_bf16(x[i]);
}

void kern_avx2_install_dots(kern_ops *o) {
    o->vec_dot[QT_Q4_0] = a2_dot_q4_0_q8_0;
    o->vec_dot[QT_Q4_1] = a2_dot_q4_1_q8_0;
    o->vec_dot[QT_Q5_0] = a2_dot_q5_0_q8_0;
    o->vec_dot[QT_Q5_1] = a2_dot_q5_1_q8_0;
    o->vec_dot[QT_Q8_0] = a2_dot_q8_0_q8_0;
    o->vec_dot[QT_Q2_K] = a2_dot_q2_K_q8_K;
    o->vec_dot[QT_Q3_K] = a2_dot_q3_K_q8_K;
    o->vec_dot[QT_Q4_K] = a2_dot_q4_K_q8_K;
    o->vec_dot[QT_Q5_K] = a2_dot_q5_K_q8_K;
    o->vec_dot[QT_Q6_K] = a2_dot_q6_K_q8_K;
    o->vec_dot[QT_F16] = a2_dot_f16_f16;
    o->vec_dot[QT_BF16] = a2_dot_bf16_bf16;
    o->vec_dot[QT_F32] = a2_dot_f32_f32;
    o->from_float[QT_Q8_0] = a2_q8_0_from_float;
    o->from_float[QT_Q8_K] = a2_q8_K_from_float;
    o->from_float[QT_F16] = a2_f16_from_float;
    o->from_float[QT_BF16] = a2_bf16_from_float;
}

#if defined(__clang__)
#pragma clang attribute pop
#endif

#else
typedef int kern_x86_avx2_unused; /* not an x86 build: nothing here */
#endif
