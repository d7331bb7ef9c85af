/*
 * quant_ref: the scalar reference functions behind the traits table, and the
 * small inline helpers they share (half/bfloat conversions, rounding).
 *
 * Every function here has the signature of a quant_traits slot, so the table
 * in quant.c is nothing but pointers to them; SIMD kernels in src/kernels are
 * tested against these. Naming: quant_<type>_to_float / _from_float and
 * quant_dot_<type>_<vec_dot_type>. Files: quant_float.c (f32/f16/bf16),
 * quant_legacy.c (32-element blocks), quant_k.c (K-quant layouts and dots),
 * quant_k_fit.c (K-quant quantizers and their scale search).
 */
#ifndef PL_QUANT_REF_H
#define PL_QUANT_REF_H

#include "quant.h"

#include <math.h>
#include <string.h>

/* ---------------------------------------------------------------- helpers */

static inline uint32_t quant_f32_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

static inline float quant_bits_f32(uint32_t u) {
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* IEEE half -> float, exact. Inline because dequantizers call it per block
 * and the F16 paths per element; pl_fp16_to_f32 is the out-of-line form. */
static inline float quant_fp16_to_f32(pl_fp16 h) {
    const uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    const uint32_t e = (h >> 10) & 0x1fu;
    const uint32_t m = h & 0x3ffu;
    if (e == 0x1f) /* inf, or NaN with its payload kept (quiet stays quiet) */
        return quant_bits_f32(sign | 0x7f800000u | (m << 13));
    if (e == 0) { /* zero or subnormal: m * 2^-24, exact in float */
        const float v = (float)m * 0x1p-24f;
        return sign ? -v : v;
    }
    return quant_bits_f32(sign | ((e + 112u) << 23) | (m << 13));
}

/* float -> IEEE half, round to nearest even; overflow gives inf, NaN stays a
 * (quiet) NaN with the top payload bits. */
static inline pl_fp16 quant_f32_to_fp16(float f) {
    const uint32_t x = quant_f32_bits(f);
    const uint32_t sign = (x >> 16) & 0x8000u;
    const uint32_t ax = x & 0x7fffffffu;
    if (ax > 0x7f800000u) return (pl_fp16)(sign | 0x7e00u | ((ax >> 13) & 0x3ffu));
    if (ax >= 0x477ff000u) return (pl_fp16)(sign | 0x7c00u); /* >= 65520: inf */
    if (ax >= 0x38800000u) { /* normal half: drop 13 mantissa bits, RNE */
        uint32_t h = (ax >> 13) - (112u << 10);
        const uint32_t rem = ax & 0x1fffu;
        if (rem > 0x1000u || (rem == 0x1000u && (h & 1u))) h++; /* carry may reach the exponent: correct */
        return (pl_fp16)(sign | h);
    }
    if (ax <= 0x33000000u) return (pl_fp16)sign; /* <= 2^-25: ties to even zero */
    /* subnormal half: value / 2^-24 = m * 2^(e - 126), shift in [14, 24] */
    const uint32_t e = ax >> 23;
    const uint32_t m = (ax & 0x7fffffu) | 0x800000u;
    const uint32_t shift = 126u - e;
    uint32_t h = m >> shift;
    const uint32_t rem = m & ((1u << shift) - 1u);
    const uint32_t half = 1u << (shift - 1u);
    if (rem > half || (rem == half && (h & 1u))) h++; /* 0x400 is the smallest normal: correct */
    return (pl_fp16)(sign | h);
}

static inline float quant_bf16_to_f32(pl_bf16 h) { return quant_bits_f32((uint32_t)h << 16); }

static inline pl_bf16 quant_f32_to_bf16(float f) {
    const uint32_t x = quant_f32_bits(f);
    if ((x & 0x7fffffffu) > 0x7f800000u) return (pl_bf16)((x >> 16) | 0x40u); /* quiet NaN */
    return (pl_bf16)((x + 0x7fffu + ((x >> 16) & 1u)) >> 16);
}

/* Round to nearest, ties to even (what ggml's nearest_int does for the range
 * its quantizers use). Out-of-range values saturate and NaN gives 0, so that
 * non-finite input yields garbage blocks rather than undefined behaviour. */
static inline int quant_round(float v) {
    if (!(v > -4194303.f)) return v < 0 ? -4194303 : 0;
    if (!(v < 4194303.f)) return 4194303;
    const float t = v + 12582912.f; /* 1.5 * 2^23: the float add does the rounding */
    return (int)(quant_f32_bits(t) & 0x007fffffu) - 0x00400000;
}

static inline int quant_clamp(int v, int lo, int hi) { return v < lo ? lo : v > hi ? hi : v; }

/* ------------------------------------------------------------- float types */

void quant_f32_to_float(const void *x, float *y, int64_t n);
void quant_f32_from_float(const float *x, void *y, int64_t n);
void quant_dot_f32_f32(int n, float *s, const void *x, const void *y);
void quant_f16_to_float(const void *x, float *y, int64_t n);
void quant_f16_from_float(const float *x, void *y, int64_t n);
void quant_dot_f16_f16(int n, float *s, const void *x, const void *y);
void quant_bf16_to_float(const void *x, float *y, int64_t n);
void quant_bf16_from_float(const float *x, void *y, int64_t n);
void quant_dot_bf16_bf16(int n, float *s, const void *x, const void *y);

/* ------------------------------------------------------- 32-element blocks */

void quant_q4_0_to_float(const void *x, float *y, int64_t n);
void quant_q4_1_to_float(const void *x, float *y, int64_t n);
void quant_q5_0_to_float(const void *x, float *y, int64_t n);
void quant_q5_1_to_float(const void *x, float *y, int64_t n);
void quant_q8_0_to_float(const void *x, float *y, int64_t n);
void quant_q8_1_to_float(const void *x, float *y, int64_t n);

void quant_q4_0_from_float(const float *x, void *y, int64_t n);
void quant_q4_1_from_float(const float *x, void *y, int64_t n);
void quant_q5_0_from_float(const float *x, void *y, int64_t n);
void quant_q5_1_from_float(const float *x, void *y, int64_t n);
void quant_q8_0_from_float(const float *x, void *y, int64_t n);
void quant_q8_1_from_float(const float *x, void *y, int64_t n);

void quant_dot_q4_0_q8_0(int n, float *s, const void *x, const void *y);
void quant_dot_q4_1_q8_0(int n, float *s, const void *x, const void *y);
void quant_dot_q5_0_q8_0(int n, float *s, const void *x, const void *y);
void quant_dot_q5_1_q8_0(int n, float *s, const void *x, const void *y);
void quant_dot_q8_0_q8_0(int n, float *s, const void *x, const void *y);

/* ---------------------------------------------------------------- K-quants */

void quant_q2_K_to_float(const void *x, float *y, int64_t n);
void quant_q3_K_to_float(const void *x, float *y, int64_t n);
void quant_q4_K_to_float(const void *x, float *y, int64_t n);
void quant_q5_K_to_float(const void *x, float *y, int64_t n);
void quant_q6_K_to_float(const void *x, float *y, int64_t n);
void quant_q8_K_to_float(const void *x, float *y, int64_t n);

void quant_q2_K_from_float(const float *x, void *y, int64_t n);
void quant_q3_K_from_float(const float *x, void *y, int64_t n);
void quant_q4_K_from_float(const float *x, void *y, int64_t n);
void quant_q5_K_from_float(const float *x, void *y, int64_t n);
void quant_q6_K_from_float(const float *x, void *y, int64_t n);
void quant_q8_K_from_float(const float *x, void *y, int64_t n);

void quant_dot_q2_K_q8_K(int n, float *s, const void *x, const void *y);
void quant_dot_q3_K_q8_K(int n, float *s, const void *x, const void *y);
void quant_dot_q4_K_q8_K(int n, float *s, const void *x, const void *y);
void quant_dot_q5_K_q8_K(int n, float *s, const void *x, const void *y);
void quant_dot_q6_K_q8_K(int n, float *s, const void *x, const void *y);

/* The packed 6-bit scale/min pairs of Q4_K and Q5_K (8 sub-blocks in 12
 * bytes): j < 4 keep their low 6 bits in bytes j and j+4; j >= 4 keep their
 * low 4 bits in the nibbles of byte j+4 and their top 2 bits in the spare top
 * bits of bytes j-4 (scale) and j (min). */
static inline void quant_k4_get_scale_min(int j, const uint8_t *q, uint8_t *sc, uint8_t *m) {
    if (j < 4) {
        *sc = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *sc = (uint8_t)((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4));
        *m = (uint8_t)((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
    }
}

/* The 16 signed 6-bit scales of Q3_K (stored +32 in 12 bytes): low nibbles
 * in bytes 0..7 (j < 8 low half, j >= 8 high half of byte j-8), the top two
 * bits in bytes 8..11, byte 8 + j%4 at bit 2*(j/4). Returns scale - 32. */
static inline int quant_q3_K_scale(const uint8_t *q, int j) {
    const int lo = j < 8 ? (q[j] & 0xF) : (q[j - 8] >> 4);
    const int hi = (q[8 + j % 4] >> (2 * (j / 4))) & 3;
    return (lo | (hi << 4)) - 32;
}

#endif
