/*
 * x86_avx512_util: AVX-512 (F/BW/VL/DQ + VNNI) building blocks shared by the
 * x86_avx512*.c files: loads, pair scales, and the unpacking of each weight
 * type's levels into 64-byte vectors in element order (what both the row
 * dots and the tiled matmul feed to VPDPBUSD / VPMADDUBSW).
 *
 * Include only from a file that has enabled the ISA with its own target
 * pragma (see x86_avx512.c); it also pulls in x86_avx2_util.h, whose helpers
 * (scale unpacking, the exact Q8 quantizer cores) run unchanged here.
 * Levels are unsigned bytes: Q4_0/Q5_0 keep the stored nibble (0..15, 0..31)
 * and Q8_0's are offset by 128, so callers subtract the offset's product
 * with the activation sum as an exact integer.
 */
#ifndef PL_X86_AVX512_UTIL_H
#define PL_X86_AVX512_UTIL_H

#include "kern_impl.h"
#include "x86_avx2_util.h"

/* The per-block steps must be inlined into the dot loops, which GCC
 * declines on size alone: a call per super-block passes the level vectors
 * through the stack (that build's Q2_K/Q3_K row dots measured 20-30 %
 * slower than the AVX2 ones). */
#define A5_INLINE static inline __attribute__((always_inline))

/* Installers of the sibling files, called by kern_avx512_install. */
void kern_avx512_install_gemm(kern_ops *ops); /* x86_avx512_gemm.c (needs VNNI) */
void kern_avx512_install_bf16(kern_ops *ops); /* x86_avx512_bf16.c (needs AVX512_BF16) */

static inline __m512i a5_load(const void *p) { return _mm512_loadu_si512(p); }

/* 32 bytes from each of two addresses, the first in the low half. */
static inline __m512i a5_load2x32(const void *lo, const void *hi) {
    return _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)lo)),
                              _mm256_loadu_si256((const __m256i *)hi), 1);
}

/* a in lanes 0..7, b in lanes 8..15. */
static inline __m512 a5_pair(float a, float b) {
    return _mm512_insertf32x8(_mm512_set1_ps(a), _mm256_set1_ps(b), 1);
}

/* int32 lanes of a 256-bit vector, zero-extended, as floats. */
static inline __m512 a5_cvt256(__m256i v) { return _mm512_cvtepi32_ps(_mm512_zextsi256_si512(v)); }

/* 0, 1, ..., 31 as int16: the base of the scale permutations. */
static inline __m512i a5_iota16(void) {
    static const int16_t k_iota[32] = {0,  1,  2,  3,  4,  5,  6,  7,  8,  9,  10, 11, 12, 13, 14, 15,
                                       16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31};
    return _mm512_loadu_si512(k_iota);
}

/* Scale vector for 64 levels (32 int16 pair sums after maddubs) from int16
 * scales sc16 (lanes 0..15 used): groups of `per` int16 lanes (16 for the
 * 32-element sub-blocks of Q4_K/Q5_K, 8 for 16-element groups) take scale
 * first, first + 1, ... */
A5_INLINE __m512i a5_scales(__m512i sc16, int first, int per_shift) {
    const __m512i idx = _mm512_add_epi16(_mm512_srl_epi16(a5_iota16(), _mm_cvtsi32_si128(per_shift)),
                                         _mm512_set1_epi16((short)first));
    return _mm512_permutexvar_epi16(idx, sc16);
}

/* ------------------------------------------------- 32-element blocks */

/* Nibble levels of two blocks: block a's 32 (low nibbles, then high), then b's. */
A5_INLINE __m512i a5_nibbles2(const uint8_t *qa, const uint8_t *qb) {
    const __m256i ab = _mm256_inserti128_si256(_mm256_castsi128_si256(_mm_loadu_si128((const __m128i *)qa)),
                                               _mm_loadu_si128((const __m128i *)qb), 1);
    const __m512i z = _mm512_castsi256_si512(ab);
    const __m512i d = _mm512_shuffle_i64x2(z, z, 0x50); /* 128-bit lanes a, a, b, b */
    const __m512i v = _mm512_mask_blend_epi64(0xCC, d, _mm512_srli_epi16(d, 4));
    return _mm512_and_si512(v, _mm512_set1_epi8(0xF));
}

/* Q5 levels: nibbles plus bit 4 from the blocks' qh words (bit j = element j). */
A5_INLINE __m512i a5_q5_levels2(const uint8_t *qsa, const uint8_t *qha, const uint8_t *qsb, const uint8_t *qhb) {
    const __mmask64 hi = (__mmask64)a2_load_u32(qha) | (__mmask64)a2_load_u32(qhb) << 32;
    const __m512i lv = a5_nibbles2(qsa, qsb);
    return _mm512_mask_add_epi8(lv, hi, lv, _mm512_set1_epi8(0x10));
}

static inline __m512i a5_lv_q4_0(const block_q4_0 *a, const block_q4_0 *b) { return a5_nibbles2(a->qs, b->qs); }
static inline __m512i a5_lv_q4_1(const block_q4_1 *a, const block_q4_1 *b) { return a5_nibbles2(a->qs, b->qs); }
static inline __m512i a5_lv_q5_0(const block_q5_0 *a, const block_q5_0 *b) {
    return a5_q5_levels2(a->qs, a->qh, b->qs, b->qh);
}
static inline __m512i a5_lv_q5_1(const block_q5_1 *a, const block_q5_1 *b) {
    return a5_q5_levels2(a->qs, a->qh, b->qs, b->qh);
}
/* Q8_0: q + 128 (as the byte q ^ 0x80). */
static inline __m512i a5_lv_q8_0(const block_q8_0 *a, const block_q8_0 *b) {
    return _mm512_xor_si512(a5_load2x32(a->qs, b->qs), _mm512_set1_epi8((char)0x80));
}

/* ----------------------------------------------- K super-blocks */

/* Q4_K/Q5_K scales as a2_k4_scales computes them, in a register: bytes 0..7
 * the 8 sub-block scales, 8..15 the mins (no round trip through memory,
 * whose 8-byte reload of two 4-byte stores would stall store forwarding). */
A5_INLINE __m128i a5_k4_scales(const uint8_t *q) {
    const uint32_t w0 = a2_load_u32(q), w1 = a2_load_u32(q + 4), w2 = a2_load_u32(q + 8);
    const uint32_t s0 = w0 & 0x3f3f3f3fu, m0 = w1 & 0x3f3f3f3fu;
    const uint32_t s1 = (w2 & 0x0f0f0f0fu) | ((w0 >> 6) & 0x03030303u) << 4;
    const uint32_t m1 = ((w2 >> 4) & 0x0f0f0f0fu) | ((w1 >> 6) & 0x03030303u) << 4;
    return _mm_setr_epi32((int)s0, (int)s1, (int)m0, (int)m1);
}

/* Levels of one 256-element super-block in element order: lv[m] holds
 * elements 64m .. 64m + 63. */

/* Q4_K (qh == NULL) and Q5_K: qs pairs of sub-blocks (low nibbles 2p, high
 * 2p + 1), bit j of qh[l] is bit 4 of element l of sub-block j. */
A5_INLINE void a5_lv_k4(const uint8_t *qs, const uint8_t *qh, __m512i lv[4]) {
    const __m512i m4 = _mm512_set1_epi8(0xF);
    __m512i h = _mm512_setzero_si512();
    if (qh) { /* qh, then qh >> 1: bit 0 of each byte is the next sub-block's */
        const __m256i q = _mm256_loadu_si256((const __m256i *)qh);
        h = _mm512_inserti64x4(_mm512_castsi256_si512(q), _mm256_srli_epi16(q, 1), 1);
    }
#pragma GCC unroll 2
    for (int k = 0; k < 2; k++) {
        const __m512i q = a5_load(qs + 64 * k);
        const __m512i lo = _mm512_and_si512(q, m4), hi = _mm512_and_si512(_mm512_srli_epi16(q, 4), m4);
        lv[2 * k] = _mm512_shuffle_i64x2(lo, hi, 0x44);     /* sub-blocks 4k, 4k + 1 */
        lv[2 * k + 1] = _mm512_shuffle_i64x2(lo, hi, 0xEE); /* sub-blocks 4k + 2, 4k + 3 */
        if (qh) {
            const __m512i b4 = _mm512_set1_epi8(0x10);
            lv[2 * k] = _mm512_or_si512(lv[2 * k], _mm512_and_si512(_mm512_slli_epi16(h, 4), b4));
            lv[2 * k + 1] = _mm512_or_si512(lv[2 * k + 1], _mm512_and_si512(_mm512_slli_epi16(h, 2), b4));
            h = _mm512_srli_epi16(h, 4);
        }
    }
}

/* Q6_K: per half of 128, ql bytes l and l + 32 carry elements l, l + 32
 * (low nibbles) and l + 64, l + 96 (high); qh byte l their top 2 bits. */
A5_INLINE void a5_lv_q6_K(const block_q6_K *x, __m512i lv[4]) {
    const __m512i m4 = _mm512_set1_epi8(0xF), m30 = _mm512_set1_epi8(0x30);
#pragma GCC unroll 2
    for (int half = 0; half < 2; half++) {
        const __m512i ql = a5_load(x->ql + 64 * half);
        const __m256i q = _mm256_loadu_si256((const __m256i *)(x->qh + 32 * half));
        const __m512i h = _mm512_inserti64x4(_mm512_castsi256_si512(q), _mm256_srli_epi16(q, 2), 1);
        lv[2 * half] = _mm512_or_si512(_mm512_and_si512(ql, m4), _mm512_and_si512(_mm512_slli_epi16(h, 4), m30));
        lv[2 * half + 1] = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(ql, 4), m4), _mm512_and_si512(h, m30));
    }
}

/* Q2_K / Q3_K: qs byte l of half h holds, in bits 2k..2k+1, element
 * 128h + 32k + l; Q3_K's hmask byte l bit 4h + k is that element's bit 2. */
A5_INLINE void a5_lv_k23(const uint8_t *qs, const uint8_t *hmask, __m512i lv[4]) {
    const __m512i q = a5_load(qs), m3 = _mm512_set1_epi8(3);
    __m512i a[4];
    __m512i h = _mm512_setzero_si512();
    if (hmask) {
        const __m256i m = _mm256_loadu_si256((const __m256i *)hmask);
        h = _mm512_inserti64x4(_mm512_castsi256_si512(m), _mm256_srli_epi16(m, 4), 1);
    }
#pragma GCC unroll 4
    for (int k = 0; k < 4; k++) { /* a[k] = elements 32k.. of half 0, then of half 1 */
        a[k] = _mm512_and_si512(_mm512_srl_epi16(q, _mm_cvtsi32_si128(2 * k)), m3);
        if (hmask)
            a[k] = _mm512_or_si512(a[k], _mm512_and_si512(_mm512_slli_epi16(_mm512_srl_epi16(h, _mm_cvtsi32_si128(k)), 2),
                                                          _mm512_set1_epi8(4)));
    }
    lv[0] = _mm512_shuffle_i64x2(a[0], a[1], 0x44);
    lv[1] = _mm512_shuffle_i64x2(a[2], a[3], 0x44);
    lv[2] = _mm512_shuffle_i64x2(a[0], a[1], 0xEE);
    lv[3] = _mm512_shuffle_i64x2(a[2], a[3], 0xEE);
}

#endif
