/*
 * x86_avx2: AVX2 + FMA + F16C row kernels: vec_dot of every weight type with
 * its vec_dot_type (one row, and for the quantized types four rows against
 * one activation row, for matrix-vector products), and from_float of the activation types (Q8_0,
 * Q8_K, F16, BF16). Chosen at run time by dispatch.c; the rest of the binary stays
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

/* Every type has a step adding one block (or super-block) of its dot with
 * the activation block to a float accumulator vector; A2_DOTS builds from it
 * the one-row vec_dot (two accumulators so consecutive blocks overlap) and a
 * four-row version for matrix-vector products, which shares each activation
 * block between the rows and keeps four independent chains in flight. */

/* Four accumulator vectors -> s[0..3], one hadd tree. */
static inline void a2_store4(float *s, __m256 v0, __m256 v1, __m256 v2, __m256 v3) {
    const __m256 h = _mm256_hadd_ps(_mm256_hadd_ps(v0, v1), _mm256_hadd_ps(v2, v3));
    _mm_storeu_ps(s, _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1)));
}

#define A2_DOTS(T, BT, YT, QK)                                                                     \
    static void a2_dot_##T(int n, float *s, const void *vx, const void *vy) {                     \
        const BT *x = vx;                                                                          \
        const YT *y = vy;                                                                          \
        __m256 v0 = _mm256_setzero_ps(), v1 = v0;                                                  \
        int b = 0;                                                                                 \
        for (; b + 1 < n / (QK); b += 2) {                                                         \
            v0 = a2_step_##T(&x[b], &y[b], v0);                                                    \
            v1 = a2_step_##T(&x[b + 1], &y[b + 1], v1);                                            \
        }                                                                                          \
        if (b < n / (QK)) v0 = a2_step_##T(&x[b], &y[b], v0);                                      \
        *s = a2_hsum(_mm256_add_ps(v0, v1));                                                       \
    }                                                                                              \
    static void a2_dot4_##T(int n, float *s, const void *vx, size_t bx, const void *vy) {         \
        const BT *x0 = vx, *x1 = (const BT *)((const uint8_t *)vx + bx);                           \
        const BT *x2 = (const BT *)((const uint8_t *)vx + 2 * bx), *x3 = (const BT *)((const uint8_t *)vx + 3 * bx); \
        const YT *y = vy;                                                                          \
        __m256 v0 = _mm256_setzero_ps(), v1 = v0, v2 = v0, v3 = v0;                                \
        for (int b = 0; b < n / (QK); b++) {                                                       \
            v0 = a2_step_##T(&x0[b], &y[b], v0);                                                   \
            v1 = a2_step_##T(&x1[b], &y[b], v1);                                                   \
            v2 = a2_step_##T(&x2[b], &y[b], v2);                                                   \
            v3 = a2_step_##T(&x3[b], &y[b], v3);                                                   \
        }                                                                                          \
        a2_store4(s, v0, v1, v2, v3);                                                              \
    }

/* ----------------------------------------------------- 32-element blocks */

static inline __m256 a2_scaled(float d, __m256i isum, __m256 acc) {
    return _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(isum), acc);
}

/* sum((q - 8) * y) = sum(q * y) - 8 * sum(y), taken per int16 pair so the
 * unsigned levels go straight into maddubs: one op fewer than the sign
 * trick, and the 8 * y pairs depend only on y (shared by the four-row form).
 * Both pair sums fit int16 (2 * 15 * 127, 2 * 8 * 127). */
static inline __m256 a2_step_q4_0(const block_q4_0 *x, const block_q8_0 *y, __m256 acc) {
    const __m256i yq = a2_load(y->qs);
    const __m256i p = _mm256_sub_epi16(_mm256_maddubs_epi16(a2_nibbles(x->qs), yq),
                                       _mm256_maddubs_epi16(_mm256_set1_epi8(8), yq));
    return a2_scaled(a2_h2f(x->d) * a2_h2f(y->d), _mm256_madd_epi16(p, _mm256_set1_epi16(1)), acc);
}

/* Affine types: d*dy*sum(q*y) + m*dy*sum(y), both sums exact integers. */
static inline __m256 a2_affine_step(__m256i q, const block_q8_0 *y, float dx, float mx, __m256 acc) {
    const __m256i yq = a2_load(y->qs);
    const float dy = a2_h2f(y->d);
    acc = a2_scaled(dx * dy, a2_dot_u8(q, yq), acc);
    return a2_scaled(mx * dy, a2_dot_u8(_mm256_set1_epi8(1), yq), acc);
}

static inline __m256 a2_step_q4_1(const block_q4_1 *x, const block_q8_0 *y, __m256 acc) {
    return a2_affine_step(a2_nibbles(x->qs), y, a2_h2f(x->d), a2_h2f(x->m), acc);
}

/* Low nibbles plus bit 4 from the qh word: levels 0..31. */
static inline __m256i a2_q5_levels(const uint8_t *qs, const uint8_t *qh) {
    return _mm256_or_si256(a2_nibbles(qs), _mm256_and_si256(a2_bits32(a2_load_u32(qh)), _mm256_set1_epi8(0x10)));
}

static inline __m256 a2_step_q5_0(const block_q5_0 *x, const block_q8_0 *y, __m256 acc) {
    const __m256i q = _mm256_sub_epi8(a2_q5_levels(x->qs, x->qh), _mm256_set1_epi8(16));
    return a2_scaled(a2_h2f(x->d) * a2_h2f(y->d), a2_dot_i8(q, a2_load(y->qs)), acc);
}

static inline __m256 a2_step_q5_1(const block_q5_1 *x, const block_q8_0 *y, __m256 acc) {
    return a2_affine_step(a2_q5_levels(x->qs, x->qh), y, a2_h2f(x->d), a2_h2f(x->m), acc);
}

static inline __m256 a2_step_q8_0(const block_q8_0 *x, const block_q8_0 *y, __m256 acc) {
    return a2_scaled(a2_h2f(x->d) * a2_h2f(y->d), a2_dot_i8(a2_load(x->qs), a2_load(y->qs)), acc);
}

A2_DOTS(q4_0, block_q4_0, block_q8_0, QK4_0)
A2_DOTS(q4_1, block_q4_1, block_q8_0, QK4_1)
A2_DOTS(q5_0, block_q5_0, block_q8_0, QK5_0)
A2_DOTS(q5_1, block_q5_1, block_q8_0, QK5_1)
A2_DOTS(q8_0, block_q8_0, block_q8_0, QK8_0)

/* ---------------------------------------------------------------- K-quants */

/* Each K step builds one int32 vector of sum(level * q8 * scale) for the
 * super-block and one of its offset/min term through Q8_K's bsums, then
 * scales both in float. Levels are kept unsigned so maddubs can take them. */

static inline __m256 a2_step_q2_K(const block_q2_K *x, const block_q8_K *y, __m256 acc) {
    const __m256i m3 = _mm256_set1_epi8(3);
    const __m128i sc8 = _mm_loadu_si128((const __m128i *)x->scales);
    const __m256i sc = _mm256_cvtepu8_epi16(_mm_and_si128(sc8, _mm_set1_epi8(0xF)));
    const __m256i mn = _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(sc8, 4), _mm_set1_epi8(0xF)));
    const __m256i msum = _mm256_madd_epi16(a2_load(y->bsums), mn);
    int32_t pairs[8];
    _mm256_storeu_si256((__m256i *)pairs, sc);
    __m256i isum = _mm256_setzero_si256();
    const int8_t *q8 = y->qs;
    for (int half = 0; half < 2; half++) {
        __m256i q = a2_load(x->qs + 32 * half);
        for (int k = 0; k < 4; k++, q8 += 32) {
            const __m256i p = _mm256_maddubs_epi16(_mm256_and_si256(q, m3), a2_load(q8));
            isum = _mm256_add_epi32(isum, _mm256_madd_epi16(p, a2_scale_pair(pairs[4 * half + k])));
            q = _mm256_srli_epi16(q, 2);
        }
    }
    acc = a2_scaled(y->d * a2_h2f(x->d), isum, acc);
    return _mm256_fnmadd_ps(_mm256_set1_ps(y->d * a2_h2f(x->dmin)), _mm256_cvtepi32_ps(msum), acc);
}

static inline __m256 a2_step_q3_K(const block_q3_K *x, const block_q8_K *y, __m256 acc) {
    const __m256i m3 = _mm256_set1_epi8(3), m4 = _mm256_set1_epi8(4);
    const __m256i sc = _mm256_cvtepi8_epi16(a2_q3_scales(x->scales));
    /* levels are stored + 4: subtract 4 * sum(scale * bsum) */
    const __m256i off = _mm256_slli_epi32(_mm256_madd_epi16(a2_load(y->bsums), sc), 2);
    int32_t pairs[8];
    _mm256_storeu_si256((__m256i *)pairs, sc);
    __m256i isum = _mm256_sub_epi32(_mm256_setzero_si256(), off);
    __m256i hm = a2_load(x->hmask);
    const int8_t *q8 = y->qs;
    for (int half = 0; half < 2; half++) {
        __m256i q = a2_load(x->qs + 32 * half);
        for (int k = 0; k < 4; k++, q8 += 32) {
            const __m256i lv = _mm256_or_si256(_mm256_and_si256(q, m3), _mm256_and_si256(_mm256_slli_epi16(hm, 2), m4));
            const __m256i p = _mm256_maddubs_epi16(lv, a2_load(q8));
            isum = _mm256_add_epi32(isum, _mm256_madd_epi16(p, a2_scale_pair(pairs[4 * half + k])));
            q = _mm256_srli_epi16(q, 2);
            hm = _mm256_srli_epi16(hm, 1);
        }
    }
    return a2_scaled(y->d * a2_h2f(x->d), isum, acc);
}

/* Q4_K and Q5_K: 8 sub-blocks of 32 with a 6-bit scale and min; qh == NULL
 * for Q4_K, else bit j of qh[l] is bit 4 of element l of sub-block j. */
static inline __m256 a2_k4_step(const uint8_t *scales, const uint8_t *qs, const uint8_t *qh, pl_fp16 d,
                                pl_fp16 dmin, const block_q8_K *y, __m256 acc) {
    uint8_t sc[8], mn[8];
    a2_k4_scales(scales, sc, mn);
    const __m128i m8 = _mm_loadl_epi64((const __m128i *)mn);
    const __m256i msum = _mm256_madd_epi16(a2_load(y->bsums), _mm256_cvtepu8_epi16(_mm_unpacklo_epi8(m8, m8)));
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
    acc = a2_scaled(y->d * a2_h2f(d), isum, acc);
    return _mm256_fnmadd_ps(_mm256_set1_ps(y->d * a2_h2f(dmin)), _mm256_cvtepi32_ps(msum), acc);
}

static inline __m256 a2_step_q4_K(const block_q4_K *x, const block_q8_K *y, __m256 acc) {
    return a2_k4_step(x->scales, x->qs, NULL, x->d, x->dmin, y, acc);
}

static inline __m256 a2_step_q5_K(const block_q5_K *x, const block_q8_K *y, __m256 acc) {
    return a2_k4_step(x->scales, x->qs, x->qh, x->d, x->dmin, y, acc);
}

static inline __m256 a2_step_q6_K(const block_q6_K *x, const block_q8_K *y, __m256 acc) {
    const __m256i m4 = _mm256_set1_epi8(0xF), m30 = _mm256_set1_epi8(0x30);
    const __m256i sc = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)x->scales));
    /* levels are stored + 32: subtract 32 * sum(scale * bsum) */
    const __m256i off = _mm256_slli_epi32(_mm256_madd_epi16(a2_load(y->bsums), sc), 5);
    int32_t pairs[8];
    _mm256_storeu_si256((__m256i *)pairs, sc);
    __m256i isum = _mm256_sub_epi32(_mm256_setzero_si256(), off);
    for (int half = 0; half < 2; half++) {
        const __m256i ql0 = a2_load(x->ql + 64 * half), ql1 = a2_load(x->ql + 64 * half + 32);
        const __m256i hv = a2_load(x->qh + 32 * half);
        __m256i lv[4];
        lv[0] = _mm256_or_si256(_mm256_and_si256(ql0, m4), _mm256_and_si256(_mm256_slli_epi16(hv, 4), m30));
        lv[1] = _mm256_or_si256(_mm256_and_si256(ql1, m4), _mm256_and_si256(_mm256_slli_epi16(hv, 2), m30));
        lv[2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql0, 4), m4), _mm256_and_si256(hv, m30));
        lv[3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql1, 4), m4),
                                _mm256_and_si256(_mm256_srli_epi16(hv, 2), m30));
        const int8_t *q8 = y->qs + 128 * half;
        for (int k = 0; k < 4; k++) {
            const __m256i p = _mm256_maddubs_epi16(lv[k], a2_load(q8 + 32 * k));
            isum = _mm256_add_epi32(isum, _mm256_madd_epi16(p, a2_scale_pair(pairs[4 * half + k])));
        }
    }
    return a2_scaled(y->d * a2_h2f(x->d), isum, acc);
}

A2_DOTS(q2_K, block_q2_K, block_q8_K, QK_K)
A2_DOTS(q3_K, block_q3_K, block_q8_K, QK_K)
A2_DOTS(q4_K, block_q4_K, block_q8_K, QK_K)
A2_DOTS(q5_K, block_q5_K, block_q8_K, QK_K)
A2_DOTS(q6_K, block_q6_K, block_q8_K, QK_K)

/* ------------------------------------------------------------ float types */

static inline __m256 a2_ld_f16(const void *p, int i) {
    return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)((const pl_fp16 *)p + i)));
}
static inline __m256 a2_ld_bf16(const void *p, int i) {
    const __m256i w = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)((const pl_bf16 *)p + i)));
    return _mm256_castsi256_ps(_mm256_slli_epi32(w, 16));
}
static inline __m256 a2_ld_f32(const void *p, int i) { return _mm256_loadu_ps((const float *)p + i); }
static inline float a2_el_f16(const void *p, int i) { return a2_h2f(((const pl_fp16 *)p)[i]); }
static inline float a2_el_bf16(const void *p, int i) { return quant_bf16_to_f32(((const pl_bf16 *)p)[i]); }
static inline float a2_el_f32(const void *p, int i) { return ((const float *)p)[i]; }

/* Four accumulators over 32 elements per step, then 8, then a scalar tail.
 * (No four-row form: float rows are long in bytes, and interleaving four
 * streams measured slower than one at a time on memory-bound matrices.) */
#define A2_FLOAT_DOTS(T)                                                                           \
    static void a2_dot_##T(int n, float *s, const void *x, const void *y) {                       \
        __m256 v0 = _mm256_setzero_ps(), v1 = v0, v2 = v0, v3 = v0;                                \
        int i = 0;                                                                                 \
        for (; i + 32 <= n; i += 32) {                                                             \
            v0 = _mm256_fmadd_ps(a2_ld_##T(x, i), a2_ld_##T(y, i), v0);                            \
            v1 = _mm256_fmadd_ps(a2_ld_##T(x, i + 8), a2_ld_##T(y, i + 8), v1);                    \
            v2 = _mm256_fmadd_ps(a2_ld_##T(x, i + 16), a2_ld_##T(y, i + 16), v2);                  \
            v3 = _mm256_fmadd_ps(a2_ld_##T(x, i + 24), a2_ld_##T(y, i + 24), v3);                  \
        }                                                                                          \
        for (; i + 8 <= n; i += 8) v0 = _mm256_fmadd_ps(a2_ld_##T(x, i), a2_ld_##T(y, i), v0);     \
        float sum = a2_hsum(_mm256_add_ps(_mm256_add_ps(v0, v1), _mm256_add_ps(v2, v3)));          \
        for (; i < n; i++) sum += a2_el_##T(x, i) * a2_el_##T(y, i);                               \
        *s = sum;                                                                                  \
    }

A2_FLOAT_DOTS(f16)
A2_FLOAT_DOTS(bf16)
A2_FLOAT_DOTS(f32)

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
    static const struct {
        quant_type type;
        quant_vec_dot_fn dot;
        kern_vec_dot4_fn dot4;
    } k_dots[] = {
        {QT_Q4_0, a2_dot_q4_0, a2_dot4_q4_0}, {QT_Q4_1, a2_dot_q4_1, a2_dot4_q4_1},
        {QT_Q5_0, a2_dot_q5_0, a2_dot4_q5_0}, {QT_Q5_1, a2_dot_q5_1, a2_dot4_q5_1},
        {QT_Q8_0, a2_dot_q8_0, a2_dot4_q8_0}, {QT_Q2_K, a2_dot_q2_K, a2_dot4_q2_K},
        {QT_Q3_K, a2_dot_q3_K, a2_dot4_q3_K}, {QT_Q4_K, a2_dot_q4_K, a2_dot4_q4_K},
        {QT_Q5_K, a2_dot_q5_K, a2_dot4_q5_K}, {QT_Q6_K, a2_dot_q6_K, a2_dot4_q6_K},
        {QT_F16, a2_dot_f16, NULL},           {QT_BF16, a2_dot_bf16, NULL},
        {QT_F32, a2_dot_f32, NULL},
    };
    for (size_t i = 0; i < sizeof k_dots / sizeof k_dots[0]; i++) {
        o->vec_dot[k_dots[i].type] = k_dots[i].dot;
        o->vec_dot4[k_dots[i].type] = k_dots[i].dot4;
    }
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
