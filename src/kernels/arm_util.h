/*
 * arm_util: small Advanced SIMD (NEON) building blocks shared by the aarch64
 * kernel files (arm_neon.c, arm_neon_ops.c, arm_dotprod.c), and the private
 * installers that link them.
 *
 * Everything here is baseline armv8-a (NEON and the half <-> single
 * conversions are part of every aarch64 CPU), static inline, and compiled
 * with the including file's target. Include only on aarch64.
 */
#ifndef PL_ARM_UTIL_H
#define PL_ARM_UTIL_H

#include "../quant/quant_ref.h"
#include "kern_impl.h"

#include <arm_neon.h>
#include <string.h>

/* arm_neon_ops.c: the float kernels of the neon level (kern_neon_install
 * calls it after the row functions). */
void kern_neon_install_ops(kern_ops *ops);
/* arm_i8mm.c: the SMMLA tiled matmul (the dotprod level installs it where
 * the CPU also has i8mm). */
void kern_i8mm_install_gemm(kern_ops *ops);

/* IEEE half -> float in one FCVT (exact, as quant_fp16_to_f32). */
static inline float an_h2f(pl_fp16 h) {
    __fp16 f;
    memcpy(&f, &h, sizeof f);
    return (float)f;
}

/* 4 and 8 halves -> floats. */
static inline float32x4_t an_ld_h4(const pl_fp16 *p) { return vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(p))); }

static inline uint32_t an_load_u32(const uint8_t *p) {
    uint32_t v;
    memcpy(&v, p, sizeof v);
    return v;
}

/* Low and high nibbles of 16 bytes. */
static inline uint8x16_t an_lo4(uint8x16_t q) { return vandq_u8(q, vdupq_n_u8(0xF)); }
static inline uint8x16_t an_hi4(uint8x16_t q) { return vshrq_n_u8(q, 4); }

static inline int8x16_t an_s8(uint8x16_t v) { return vreinterpretq_s8_u8(v); }

/* Q4_K/Q5_K levels of sub-blocks 2i (lo: low nibbles of qs[32i ..]) and
 * 2i + 1 (hi: high nibbles), each as two 16-byte halves. For Q5_K (qh !=
 * NULL) bit 4 comes from the qh bit planes *h0, *h1 (qh[0..15], qh[16..31]
 * at i = 0), which are shifted on for the next i; call with i = 0, 1, 2, 3
 * in order. */
typedef struct an_k4_levels {
    uint8x16_t lo0, lo1, hi0, hi1;
} an_k4_levels;

static inline an_k4_levels an_k4_levels_at(const uint8_t *qs, const uint8_t *qh, int i, uint8x16_t *h0,
                                            uint8x16_t *h1) {
    const uint8x16_t q0 = vld1q_u8(qs + 32 * i), q1 = vld1q_u8(qs + 32 * i + 16);
    an_k4_levels l = {an_lo4(q0), an_lo4(q1), an_hi4(q0), an_hi4(q1)};
    if (qh) {
        const uint8x16_t b1 = vdupq_n_u8(1), b2 = vdupq_n_u8(2);
        l.lo0 = vorrq_u8(l.lo0, vshlq_n_u8(vandq_u8(*h0, b1), 4));
        l.lo1 = vorrq_u8(l.lo1, vshlq_n_u8(vandq_u8(*h1, b1), 4));
        l.hi0 = vorrq_u8(l.hi0, vshlq_n_u8(vandq_u8(*h0, b2), 3));
        l.hi1 = vorrq_u8(l.hi1, vshlq_n_u8(vandq_u8(*h1, b2), 3));
        *h0 = vshrq_n_u8(*h0, 2);
        *h1 = vshrq_n_u8(*h1, 2);
    }
    return l;
}

/* Q5_0/Q5_1 high bits: bit j of the little-endian 32-bit qh -> 0x10 in byte j
 * of *h0 (j < 16) or *h1 (j >= 16), else 0. */
static inline void an_q5_high(const uint8_t qh[4], uint8x16_t *h0, uint8x16_t *h1) {
    static const uint8_t k_idx[32] = {0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1,
                                      2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3};
    static const uint8_t k_bit[16] = {1, 2, 4, 8, 16, 32, 64, 128, 1, 2, 4, 8, 16, 32, 64, 128};
    const uint8x16_t v = vreinterpretq_u8_u32(vdupq_n_u32(an_load_u32(qh)));
    const uint8x16_t bit = vld1q_u8(k_bit), b4 = vdupq_n_u8(0x10);
    *h0 = vandq_u8(vtstq_u8(vqtbl1q_u8(v, vld1q_u8(k_idx)), bit), b4);
    *h1 = vandq_u8(vtstq_u8(vqtbl1q_u8(v, vld1q_u8(k_idx + 16)), bit), b4);
}

/* Sum of the 32 int8 of a Q8_0 block, spread over 4 int32 lanes. */
static inline int32x4_t an_sum32(int8x16_t y0, int8x16_t y1) {
    return vpaddlq_s16(vaddq_s16(vpaddlq_s8(y0), vpaddlq_s8(y1)));
}

/* 8 int32 in [-127, 127] (two vectors) -> 8 int8; 16 -> one vector. */
static inline int8x16_t an_pack_i8(int32x4_t a, int32x4_t b, int32x4_t c, int32x4_t d) {
    const int16x8_t ab = vcombine_s16(vqmovn_s32(a), vqmovn_s32(b));
    const int16x8_t cd = vcombine_s16(vqmovn_s32(c), vqmovn_s32(d));
    return vcombine_s8(vqmovn_s16(ab), vqmovn_s16(cd));
}

static inline int32x4_t an_clamp127(int32x4_t v) {
    return vminq_s32(vmaxq_s32(v, vdupq_n_s32(-127)), vdupq_n_s32(127));
}

/* Four accumulator vectors -> s[0..3] (lane sums). */
static inline void an_store4(float *s, float32x4_t v0, float32x4_t v1, float32x4_t v2, float32x4_t v3) {
    vst1q_f32(s, vpaddq_f32(vpaddq_f32(v0, v1), vpaddq_f32(v2, v3)));
}

#endif
