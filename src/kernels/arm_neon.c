/*
 * arm_neon: the aarch64 "neon" level (Advanced SIMD, part of every aarch64
 * CPU, so this file needs no flags): vec_dot of every weight type with its
 * vec_dot_type (the integer ones from arm_dots.h over widening multiplies,
 * one row and four rows; F16, BF16, F32 in float), from_float of the
 * activation types (Q8_0, Q8_K, F16, BF16), and through arm_neon_ops.c the
 * float kernels. arm_dotprod.c overwrites the integer dots with SDOT ones
 * where the CPU has them; dispatch.c installs the two levels in that order.
 *
 * As for the x86 files: integer block sums are the references' exact
 * integers, float sums may run in another order, and the quantizers produce
 * the same bytes as the references in src/quant.
 */
#if defined(__aarch64__)

#include "arm_util.h"

/* 16 int8 products into acc without SDOT: pairs of products summed in int16
 * (exact while b is an activation in [-127, 127]: 2 * 128 * 127 < 2^15,
 * what the Q8 quantizers produce), then pairwise into the int32 lanes. */
static inline int32x4_t an_dot16(int32x4_t acc, int8x16_t a, int8x16_t b) {
    const int16x8_t p = vmlal_high_s8(vmull_s8(vget_low_s8(a), vget_low_s8(b)), a, b);
    return vpadalq_s16(acc, p);
}
#define AD_DOT16(acc, a, b) an_dot16(acc, a, b)
#include "arm_dots.h"

/* ------------------------------------------------------------ float types */

static inline float32x4_t an_ld_f16(const void *p, int i) { return an_ld_h4((const pl_fp16 *)p + i); }
static inline float32x4_t an_ld_bf16(const void *p, int i) {
    return vreinterpretq_f32_u32(vshll_n_u16(vld1_u16((const pl_bf16 *)p + i), 16));
}
static inline float32x4_t an_ld_f32(const void *p, int i) { return vld1q_f32((const float *)p + i); }
static inline float an_el_f16(const void *p, int i) { return an_h2f(((const pl_fp16 *)p)[i]); }
static inline float an_el_bf16(const void *p, int i) { return quant_bf16_to_f32(((const pl_bf16 *)p)[i]); }
static inline float an_el_f32(const void *p, int i) { return ((const float *)p)[i]; }

/* Four accumulators over 16 elements per step, then 4, then a scalar tail.
 * (No four-row form, as on x86: float rows are long in bytes.) */
#define AN_FLOAT_DOTS(T)                                                                           \
    static void an_dot_##T(int n, float *s, const void *x, const void *y) {                       \
        float32x4_t v0 = vdupq_n_f32(0), v1 = v0, v2 = v0, v3 = v0;                                \
        int i = 0;                                                                                 \
        for (; i + 16 <= n; i += 16) {                                                             \
            v0 = vfmaq_f32(v0, an_ld_##T(x, i), an_ld_##T(y, i));                                  \
            v1 = vfmaq_f32(v1, an_ld_##T(x, i + 4), an_ld_##T(y, i + 4));                          \
            v2 = vfmaq_f32(v2, an_ld_##T(x, i + 8), an_ld_##T(y, i + 8));                          \
            v3 = vfmaq_f32(v3, an_ld_##T(x, i + 12), an_ld_##T(y, i + 12));                        \
        }                                                                                          \
        for (; i + 4 <= n; i += 4) v0 = vfmaq_f32(v0, an_ld_##T(x, i), an_ld_##T(y, i));           \
        float sum = vaddvq_f32(vaddq_f32(vaddq_f32(v0, v1), vaddq_f32(v2, v3)));                   \
        for (; i < n; i++) sum += an_el_##T(x, i) * an_el_##T(y, i);                               \
        *s = sum;                                                                                  \
    }

AN_FLOAT_DOTS(f16)
AN_FLOAT_DOTS(bf16)
AN_FLOAT_DOTS(f32)

/* ------------------------------------------------------------- quantizers */

/* One Q8_0 block exactly as quant_q8_0_from_float: d = absmax / 127 (NaN
 * ignored: FMAXNM returns the number), q = roundf(x / d) clamped to
 * [-127, 127] with NaN -> 0 (FCVTAS rounds half away from zero like roundf,
 * saturates, and gives 0 for NaN). Returns d unrounded. */
static inline float an_q8_0_block(const float *x, int8_t *qs) {
    float32x4_t v[8], am = vdupq_n_f32(0);
    for (int i = 0; i < 8; i++) {
        v[i] = vld1q_f32(x + 4 * i);
        am = vmaxnmq_f32(am, vabsq_f32(v[i]));
    }
    const float d = vmaxnmvq_f32(am) / 127;
    const float id = d ? 1.0f / d : 0.0f;
    int32x4_t q[8];
    for (int i = 0; i < 8; i++) q[i] = an_clamp127(vcvtaq_s32_f32(vmulq_n_f32(v[i], id)));
    vst1q_s8(qs, an_pack_i8(q[0], q[1], q[2], q[3]));
    vst1q_s8(qs + 16, an_pack_i8(q[4], q[5], q[6], q[7]));
    return d;
}

static void an_q8_0_from_float(const float *x, void *vy, int64_t n) {
    block_q8_0 *y = vy;
    for (int64_t b = 0; b < n / QK8_0; b++) y[b].d = quant_f32_to_fp16(an_q8_0_block(x + QK8_0 * b, y[b].qs));
}

/* One Q8_K block exactly as quant_q8_K_from_float: the scale comes from the
 * first element of largest magnitude (NaN ignored), q = round-to-even of
 * x * iscale (FCVTNS: saturating, NaN -> 0) clamped to [-127, 127]. */
static void an_q8_K_block(const float *x, block_q8_K *y) {
    float32x4_t am = vdupq_n_f32(0);
    for (int i = 0; i < QK_K; i += 4) am = vmaxnmq_f32(am, vabsq_f32(vld1q_f32(x + i)));
    const float amax = vmaxnmvq_f32(am);
    memset(y, 0, sizeof *y);
    if (amax == 0) return;
    const float32x4_t amv = vdupq_n_f32(amax);
    float max = 0;
    for (int i = 0; i < QK_K; i += 4)
        if (vmaxvq_u32(vceqq_f32(vabsq_f32(vld1q_f32(x + i)), amv))) {
            int k = 0;
            while (fabsf(x[i + k]) != amax) k++;
            max = x[i + k];
            break;
        }
    const float iscale = -127.f / max;
    for (int i = 0; i < QK_K; i += 16) {
        int32x4_t q[4];
        for (int k = 0; k < 4; k++) q[k] = an_clamp127(vcvtnq_s32_f32(vmulq_n_f32(vld1q_f32(x + i + 4 * k), iscale)));
        const int8x16_t p = an_pack_i8(q[0], q[1], q[2], q[3]);
        vst1q_s8(y->qs + i, p);
        y->bsums[i / 16] = vaddlvq_s8(p);
    }
    y->d = 1 / iscale;
}

static void an_q8_K_from_float(const float *x, void *vy, int64_t n) {
    block_q8_K *y = vy;
    for (int64_t b = 0; b < n / QK_K; b++) an_q8_K_block(x + QK_K * b, &y[b]);
}

/* FCVTN rounds to nearest even (the FPCR default) and turns NaN into a quiet
 * NaN with the top payload bits, exactly as quant_f32_to_fp16. */
static void an_f16_from_float(const float *x, void *vy, int64_t n) {
    pl_fp16 *y = vy;
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const float16x8_t h = vcvt_high_f16_f32(vcvt_f16_f32(vld1q_f32(x + i)), vld1q_f32(x + i + 4));
        vst1q_u16(y + i, vreinterpretq_u16_f16(h));
    }
    for (; i < n; i++) y[i] = quant_f32_to_fp16(x[i]);
}

/* Round to nearest even on the bit pattern; NaN keeps its top bits, quieted. */
static void an_bf16_from_float(const float *x, void *vy, int64_t n) {
    pl_bf16 *y = vy;
    int64_t i = 0;
    const uint32x4_t abs_mask = vdupq_n_u32(0x7fffffffu), inf = vdupq_n_u32(0x7f800000u);
    for (; i + 4 <= n; i += 4) {
        const uint32x4_t u = vreinterpretq_u32_f32(vld1q_f32(x + i));
        const uint32x4_t nan = vcgtq_u32(vandq_u32(u, abs_mask), inf);
        const uint32x4_t odd = vandq_u32(vshrq_n_u32(u, 16), vdupq_n_u32(1));
        const uint32x4_t r = vshrq_n_u32(vaddq_u32(u, vaddq_u32(odd, vdupq_n_u32(0x7fff))), 16);
        const uint32x4_t q = vorrq_u32(vshrq_n_u32(u, 16), vdupq_n_u32(0x40));
        vst1_u16(y + i, vmovn_u32(vbslq_u32(nan, q, r)));
    }
    for (; i < n; i++) y[i] = quant_f32_to_bf16(x[i]);
}

void kern_neon_install(kern_ops *o) {
    ad_install_int_dots(o);
    o->vec_dot[QT_F16] = an_dot_f16;
    o->vec_dot[QT_BF16] = an_dot_bf16;
    o->vec_dot[QT_F32] = an_dot_f32;
    o->from_float[QT_Q8_0] = an_q8_0_from_float;
    o->from_float[QT_Q8_K] = an_q8_K_from_float;
    o->from_float[QT_F16] = an_f16_from_float;
    o->from_float[QT_BF16] = an_bf16_from_float;
    kern_neon_install_ops(o);
}

#else
typedef int kern_arm_neon_unused; /* not an aarch64 build: nothing here */
#endif
