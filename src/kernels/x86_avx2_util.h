/*
 * x86_avx2_util: small AVX2/FMA/F16C building blocks shared by the x86_avx2*.c
 * files (horizontal sums, nibble and bit unpacking, int8 dots, the Q8
 * activation quantizers' per-block cores).
 *
 * Include only from a file that has already enabled the ISA (see the target
 * pragma at the top of x86_avx2.c): everything here is static inline and
 * compiled with that file's target. Int8 dots assume the activation operand
 * is in [-127, 127] (what the Q8 quantizers produce), so that no int16 pair
 * sum of _mm256_maddubs_epi16 saturates.
 */
#ifndef PL_X86_AVX2_UTIL_H
#define PL_X86_AVX2_UTIL_H

#include "../quant/quant_ref.h"

#include <immintrin.h>
#include <string.h>

static inline float a2_hsum(__m256 v) {
    __m128 a = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    a = _mm_add_ps(a, _mm_movehl_ps(a, a));
    a = _mm_add_ss(a, _mm_movehdup_ps(a));
    return _mm_cvtss_f32(a);
}

static inline int a2_hsum_i32(__m256i v) {
    __m128i a = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    a = _mm_add_epi32(a, _mm_unpackhi_epi64(a, a));
    a = _mm_add_epi32(a, _mm_shuffle_epi32(a, 1));
    return _mm_cvtsi128_si32(a);
}

static inline float a2_h2f(pl_fp16 h) { return _cvtsh_ss(h); }

static inline __m256i a2_load(const void *p) { return _mm256_loadu_si256((const __m256i *)p); }

static inline __m256i a2_join(__m128i lo, __m128i hi) {
    return _mm256_inserti128_si256(_mm256_castsi128_si256(lo), hi, 1);
}

/* 16 bytes of nibble pairs -> 32 bytes: low nibbles first, then high ones
 * (element j of a 32-block is the low nibble of qs[j], j + 16 the high one). */
static inline __m256i a2_nibbles(const uint8_t *qs) {
    const __m128i b = _mm_loadu_si128((const __m128i *)qs);
    const __m128i m4 = _mm_set1_epi8(0xF);
    return a2_join(_mm_and_si128(b, m4), _mm_and_si128(_mm_srli_epi16(b, 4), m4));
}

/* Bit j of a 32-bit word -> byte j as 0xFF or 0. */
static inline __m256i a2_bits32(uint32_t bits) {
    const __m256i spread = _mm256_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1,
                                            2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3);
    const __m256i sel = _mm256_set1_epi64x((long long)0x8040201008040201ull);
    const __m256i v = _mm256_shuffle_epi8(_mm256_set1_epi32((int)bits), spread);
    return _mm256_cmpeq_epi8(_mm256_and_si256(v, sel), sel);
}

static inline uint32_t a2_load_u32(const uint8_t *p) {
    uint32_t v;
    memcpy(&v, p, sizeof v);
    return v;
}

/* Sum of 4 adjacent u8 x s8 products per int32 lane (u up to 255 only while
 * 2 * u * 127 fits int16, i.e. u <= 128). */
static inline __m256i a2_dot_u8(__m256i u, __m256i s) {
    return _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1));
}

/* Same for two signed operands: x in [-128, 127], y in [-127, 127]. */
static inline __m256i a2_dot_i8(__m256i x, __m256i y) {
    return a2_dot_u8(_mm256_sign_epi8(x, x), _mm256_sign_epi8(y, x));
}

/* Broadcast a pair of int16 scales packed in one int32 (low, high) into the
 * layout _mm256_madd_epi16 needs after a maddubs of 32 bytes: int16 lanes
 * 0..7 (bytes 0..15) get `low`, lanes 8..15 (bytes 16..31) get `high`. */
static inline __m256i a2_scale_pair(int32_t pair) {
    const __m256i ctl = _mm256_setr_epi8(0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1,
                                         2, 3, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3);
    return _mm256_shuffle_epi8(_mm256_set1_epi32(pair), ctl);
}

/* Q4_K/Q5_K scales: the 8 6-bit (scale, min) pairs of 12 packed bytes (the
 * layout of quant_k4_get_scale_min), four at a time with 32-bit masks. */
static inline void a2_k4_scales(const uint8_t *q, uint8_t sc[8], uint8_t mn[8]) {
    const uint32_t w0 = a2_load_u32(q), w1 = a2_load_u32(q + 4), w2 = a2_load_u32(q + 8);
    const uint32_t s0 = w0 & 0x3f3f3f3fu, m0 = w1 & 0x3f3f3f3fu;
    const uint32_t s1 = (w2 & 0x0f0f0f0fu) | ((w0 >> 6) & 0x03030303u) << 4;
    const uint32_t m1 = ((w2 >> 4) & 0x0f0f0f0fu) | ((w1 >> 6) & 0x03030303u) << 4;
    memcpy(sc, &s0, 4);
    memcpy(sc + 4, &s1, 4);
    memcpy(mn, &m0, 4);
    memcpy(mn + 4, &m1, 4);
}

/* Q3_K scales: the 16 signed 6-bit scales (stored + 32) as int8 (the layout
 * of quant_q3_K_scale): low nibbles from bytes 0..7, top bits from 8..11. */
static inline __m128i a2_q3_scales(const uint8_t *q) {
    const uint32_t w0 = a2_load_u32(q), w1 = a2_load_u32(q + 4), w2 = a2_load_u32(q + 8);
    const uint32_t k4 = 0x0f0f0f0fu, k2 = 0x03030303u;
    const __m128i v = _mm_setr_epi32((int)((w0 & k4) | ((w2 & k2) << 4)),
                                     (int)((w1 & k4) | (((w2 >> 2) & k2) << 4)),
                                     (int)(((w0 >> 4) & k4) | (((w2 >> 4) & k2) << 4)),
                                     (int)(((w1 >> 4) & k4) | (((w2 >> 6) & k2) << 4)));
    return _mm_sub_epi8(v, _mm_set1_epi8(32));
}

/* Round half away from zero (C's roundf) of values known to be finite or
 * +-inf: truncate, then step away when the dropped fraction is >= 0.5. */
static inline __m256 a2_round_away(__m256 v) {
    const __m256 t = _mm256_round_ps(v, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
    const __m256 sign = _mm256_and_ps(v, _mm256_set1_ps(-0.0f));
    const __m256 frac = _mm256_andnot_ps(_mm256_set1_ps(-0.0f), _mm256_sub_ps(v, t));
    const __m256 step = _mm256_and_ps(_mm256_cmp_ps(frac, _mm256_set1_ps(0.5f), _CMP_GE_OQ),
                                      _mm256_or_ps(sign, _mm256_set1_ps(1.0f)));
    return _mm256_add_ps(t, step);
}

/* NaN lanes -> 0, then clamp to [-127, 127]. */
static inline __m256 a2_clamp127(__m256 v) {
    v = _mm256_andnot_ps(_mm256_cmp_ps(v, v, _CMP_UNORD_Q), v);
    return _mm256_min_ps(_mm256_max_ps(v, _mm256_set1_ps(-127.f)), _mm256_set1_ps(127.f));
}

/* 4 x 8 int32 in [-127, 127] -> 32 int8 in element order. */
static inline __m256i a2_pack_i8(__m256i a, __m256i b, __m256i c, __m256i d) {
    const __m256i ab = _mm256_packs_epi32(a, b), cd = _mm256_packs_epi32(c, d);
    return _mm256_permutevar8x32_epi32(_mm256_packs_epi16(ab, cd), _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
}

/* |x| of lanes, NaN lanes ignored: max(|x|, acc) keeps acc when |x| is NaN. */
static inline __m256 a2_absmax(__m256 x, __m256 acc) {
    return _mm256_max_ps(_mm256_andnot_ps(_mm256_set1_ps(-0.0f), x), acc);
}

static inline float a2_hmax(__m256 v) {
    __m128 a = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    a = _mm_max_ps(a, _mm_movehl_ps(a, a));
    a = _mm_max_ss(a, _mm_movehdup_ps(a));
    return _mm_cvtss_f32(a);
}

/* One Q8_0 block exactly as quant_q8_0_from_float: d = absmax / 127,
 * q = roundf(x / d) clamped to [-127, 127] (NaN -> 0). Returns d unrounded;
 * the caller stores it as a half. */
static inline float a2_q8_0_block(const float *x, int8_t *qs) {
    const __m256 v0 = _mm256_loadu_ps(x), v1 = _mm256_loadu_ps(x + 8);
    const __m256 v2 = _mm256_loadu_ps(x + 16), v3 = _mm256_loadu_ps(x + 24);
    __m256 am = _mm256_setzero_ps();
    am = a2_absmax(v0, am);
    am = a2_absmax(v1, am);
    am = a2_absmax(v2, am);
    am = a2_absmax(v3, am);
    const float d = a2_hmax(am) / 127;
    const __m256 id = _mm256_set1_ps(d ? 1.0f / d : 0.0f);
#define A2_Q(v) _mm256_cvttps_epi32(a2_clamp127(a2_round_away(_mm256_mul_ps(v, id))))
    /* round before the NaN/clamp step: rounding keeps NaN and inf as they are */
    _mm256_storeu_si256((__m256i *)qs, a2_pack_i8(A2_Q(v0), A2_Q(v1), A2_Q(v2), A2_Q(v3)));
#undef A2_Q
    return d;
}

/* Sums of 16 int8 for 16 consecutive groups (256 bytes), as int16. */
static inline void a2_bsums16(const int8_t *q, int16_t *out) {
    const __m256i ones8 = _mm256_set1_epi8(1);
    __m256i s[8];
    for (int i = 0; i < 8; i++) s[i] = a2_dot_u8(ones8, a2_load(q + 32 * i)); /* 4 partials per group */
    /* two rounds of hadd leave group sums: lane half 0 holds even groups,
     * half 1 odd ones, in order of the source vectors */
    const __m256i h0 = _mm256_hadd_epi32(_mm256_hadd_epi32(s[0], s[1]), _mm256_hadd_epi32(s[2], s[3]));
    const __m256i h1 = _mm256_hadd_epi32(_mm256_hadd_epi32(s[4], s[5]), _mm256_hadd_epi32(s[6], s[7]));
    const __m256i p = _mm256_packs_epi32(h0, h1); /* half 0: g0 g2 .. g14, half 1: g1 g3 .. g15 */
    const __m128i even = _mm256_castsi256_si128(p), odd = _mm256_extracti128_si256(p, 1);
    _mm_storeu_si128((__m128i *)out, _mm_unpacklo_epi16(even, odd));
    _mm_storeu_si128((__m128i *)(out + 8), _mm_unpackhi_epi16(even, odd));
}

/* One Q8_K block exactly as quant_q8_K_from_float. */
static inline void a2_q8_K_block(const float *x, block_q8_K *y) {
    __m256 am = _mm256_setzero_ps();
    for (int i = 0; i < QK_K; i += 8) am = a2_absmax(_mm256_loadu_ps(x + i), am);
    const float amax = a2_hmax(am);
    memset(y, 0, sizeof *y);
    if (amax == 0) return;
    /* the signed value of the first element of largest magnitude */
    const __m256 amv = _mm256_set1_ps(amax);
    float max = 0;
    for (int i = 0; i < QK_K; i += 8) {
        const __m256 a = _mm256_andnot_ps(_mm256_set1_ps(-0.0f), _mm256_loadu_ps(x + i));
        const int m = _mm256_movemask_ps(_mm256_cmp_ps(a, amv, _CMP_EQ_OQ));
        if (m) {
            max = x[i + __builtin_ctz((unsigned)m)];
            break;
        }
    }
    const float iscale = -127.f / max;
    const __m256 is = _mm256_set1_ps(iscale);
    for (int i = 0; i < QK_K; i += 32) {
        __m256i q[4];
        for (int k = 0; k < 4; k++) {
            const __m256 v = _mm256_mul_ps(_mm256_loadu_ps(x + i + 8 * k), is);
            q[k] = _mm256_cvttps_epi32(
                a2_clamp127(_mm256_round_ps(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)));
        }
        _mm256_storeu_si256((__m256i *)(y->qs + i), a2_pack_i8(q[0], q[1], q[2], q[3]));
    }
    a2_bsums16(y->qs, y->bsums);
    y->d = 1 / iscale;
}

#endif
