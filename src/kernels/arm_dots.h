/*
 * arm_dots: the integer row dots of every quantized weight type with its
 * activation type (Q8_0 or Q8_K), one row and four rows, written once over
 * one primitive and compiled twice: arm_neon.c defines AD_DOT16 with
 * widening multiplies (baseline armv8-a), arm_dotprod.c with SDOT
 * (armv8.2-a+dotprod). Include after defining
 *   AD_DOT16(acc, a, b): int32x4_t acc plus the 16 products a[i] * b[i] of
 *   two int8x16_t, exact, spread over the lanes in any way;
 * it defines static functions only (each includer is its own translation
 * unit) and ad_install_int_dots(), which writes them into a kern_ops table
 * (with the Q8_0 KV-cache scores, which are Q8_0 dots).
 *
 * Integer sums are the reference's exact integers: every dot below feeds
 * AD_DOT16 16 elements that belong to one (sub-)block, then scales the lane
 * partial sums by that block's integer scale; only the float accumulation of
 * the block results runs in another order than src/quant's references.
 * Levels go in as int8 (every type's levels fit: -32..63 at most).
 */
#ifndef PL_ARM_DOTS_H
#define PL_ARM_DOTS_H

#include "arm_util.h"

/* Every type has a step adding one block (or super-block) of its dot with
 * the activation block to a float accumulator vector; AD_DOTS builds the
 * one-row vec_dot (two accumulators so consecutive blocks overlap) and the
 * four-row form for matrix-vector products. */
#define AD_DOTS(T, BT, YT, QK)                                                                     \
    static void ad_dot_##T(int n, float *s, const void *vx, const void *vy) {                     \
        const BT *x = vx;                                                                          \
        const YT *y = vy;                                                                          \
        float32x4_t v0 = vdupq_n_f32(0), v1 = v0;                                                  \
        int b = 0;                                                                                 \
        for (; b + 1 < n / (QK); b += 2) {                                                         \
            v0 = ad_step_##T(&x[b], &y[b], v0);                                                    \
            v1 = ad_step_##T(&x[b + 1], &y[b + 1], v1);                                            \
        }                                                                                          \
        if (b < n / (QK)) v0 = ad_step_##T(&x[b], &y[b], v0);                                      \
        *s = vaddvq_f32(vaddq_f32(v0, v1));                                                        \
    }                                                                                              \
    static void ad_dot4_##T(int n, float *s, const void *vx, size_t bx, const void *vy) {         \
        const BT *x0 = vx, *x1 = (const BT *)((const uint8_t *)vx + bx);                           \
        const BT *x2 = (const BT *)((const uint8_t *)vx + 2 * bx);                                 \
        const BT *x3 = (const BT *)((const uint8_t *)vx + 3 * bx);                                 \
        const YT *y = vy;                                                                          \
        float32x4_t v0 = vdupq_n_f32(0), v1 = v0, v2 = v0, v3 = v0;                                \
        for (int b = 0; b < n / (QK); b++) {                                                       \
            v0 = ad_step_##T(&x0[b], &y[b], v0);                                                   \
            v1 = ad_step_##T(&x1[b], &y[b], v1);                                                   \
            v2 = ad_step_##T(&x2[b], &y[b], v2);                                                   \
            v3 = ad_step_##T(&x3[b], &y[b], v3);                                                   \
        }                                                                                          \
        an_store4(s, v0, v1, v2, v3);                                                              \
    }

/* ----------------------------------------------------- 32-element blocks */

/* dot of a 32-block's levels (elements 0..15 in l0, 16..31 in l1) with y's */
static inline int32x4_t ad_dot32(int8x16_t l0, int8x16_t l1, const int8_t *y) {
    return AD_DOT16(AD_DOT16(vdupq_n_s32(0), l0, vld1q_s8(y)), l1, vld1q_s8(y + 16));
}

static inline float32x4_t ad_scaled(float32x4_t acc, int32x4_t isum, float d) {
    return vfmaq_n_f32(acc, vcvtq_f32_s32(isum), d);
}

static inline float32x4_t ad_step_q4_0(const block_q4_0 *x, const block_q8_0 *y, float32x4_t acc) {
    const uint8x16_t q = vld1q_u8(x->qs);
    const int8x16_t k8 = vdupq_n_s8(8);
    const int32x4_t s = ad_dot32(vsubq_s8(an_s8(an_lo4(q)), k8), vsubq_s8(an_s8(an_hi4(q)), k8), y->qs);
    return ad_scaled(acc, s, an_h2f(x->d) * an_h2f(y->d));
}

/* Affine types: d*dy*sum(q*y) + m*dy*sum(y), both sums exact integers. */
static inline float32x4_t ad_affine(float32x4_t acc, uint8x16_t l0, uint8x16_t l1, const block_q8_0 *y, float d,
                                    float m) {
    const float dy = an_h2f(y->d);
    acc = ad_scaled(acc, ad_dot32(an_s8(l0), an_s8(l1), y->qs), d * dy);
    return ad_scaled(acc, an_sum32(vld1q_s8(y->qs), vld1q_s8(y->qs + 16)), m * dy);
}

static inline float32x4_t ad_step_q4_1(const block_q4_1 *x, const block_q8_0 *y, float32x4_t acc) {
    const uint8x16_t q = vld1q_u8(x->qs);
    return ad_affine(acc, an_lo4(q), an_hi4(q), y, an_h2f(x->d), an_h2f(x->m));
}

static inline float32x4_t ad_step_q5_0(const block_q5_0 *x, const block_q8_0 *y, float32x4_t acc) {
    const uint8x16_t q = vld1q_u8(x->qs);
    uint8x16_t h0, h1;
    an_q5_high(x->qh, &h0, &h1);
    const int8x16_t k16 = vdupq_n_s8(16);
    const int8x16_t l0 = vsubq_s8(an_s8(vorrq_u8(an_lo4(q), h0)), k16);
    const int8x16_t l1 = vsubq_s8(an_s8(vorrq_u8(an_hi4(q), h1)), k16);
    return ad_scaled(acc, ad_dot32(l0, l1, y->qs), an_h2f(x->d) * an_h2f(y->d));
}

static inline float32x4_t ad_step_q5_1(const block_q5_1 *x, const block_q8_0 *y, float32x4_t acc) {
    const uint8x16_t q = vld1q_u8(x->qs);
    uint8x16_t h0, h1;
    an_q5_high(x->qh, &h0, &h1);
    return ad_affine(acc, vorrq_u8(an_lo4(q), h0), vorrq_u8(an_hi4(q), h1), y, an_h2f(x->d), an_h2f(x->m));
}

static inline float32x4_t ad_step_q8_0(const block_q8_0 *x, const block_q8_0 *y, float32x4_t acc) {
    return ad_scaled(acc, ad_dot32(vld1q_s8(x->qs), vld1q_s8(x->qs + 16), y->qs), an_h2f(x->d) * an_h2f(y->d));
}

AD_DOTS(q4_0, block_q4_0, block_q8_0, QK4_0)
AD_DOTS(q4_1, block_q4_1, block_q8_0, QK4_1)
AD_DOTS(q5_0, block_q5_0, block_q8_0, QK5_0)
AD_DOTS(q5_1, block_q5_1, block_q8_0, QK5_1)
AD_DOTS(q8_0, block_q8_0, block_q8_0, QK8_0)

/* ---------------------------------------------------------------- K-quants */

/* Each K step sums level * q8 * sub-block scale over the super-block as
 * int32 lanes, and the min/offset term through Q8_K's 16-element bsums, then
 * scales both in float. */

/* isum += scale * (dot of 16 levels with 16 activations) */
static inline int32x4_t ad_sub16(int32x4_t isum, int8x16_t lv, const int8_t *y, int scale) {
    return vmlaq_n_s32(isum, AD_DOT16(vdupq_n_s32(0), lv, vld1q_s8(y)), scale);
}

/* sum_j bsums[j] * m[j] over the 16 bsums, m as 16 uint8. */
static inline int32x4_t ad_bsum_dot16(const int16_t *bsums, uint8x16_t m) {
    const int16x8_t b0 = vld1q_s16(bsums), b1 = vld1q_s16(bsums + 8);
    const int16x8_t m0 = vreinterpretq_s16_u16(vmovl_u8(vget_low_u8(m)));
    const int16x8_t m1 = vreinterpretq_s16_u16(vmovl_high_u8(m));
    int32x4_t s = vmull_s16(vget_low_s16(b0), vget_low_s16(m0));
    s = vmlal_high_s16(s, b0, m0);
    s = vmlal_s16(s, vget_low_s16(b1), vget_low_s16(m1));
    return vmlal_high_s16(s, b1, m1);
}

static inline float32x4_t ad_step_q2_K(const block_q2_K *x, const block_q8_K *y, float32x4_t acc) {
    const uint8x16_t sc8 = vld1q_u8(x->scales), m3 = vdupq_n_u8(3);
    const int32x4_t msum = ad_bsum_dot16(y->bsums, vshrq_n_u8(sc8, 4));
    uint8_t sc[16];
    vst1q_u8(sc, an_lo4(sc8));
    int32x4_t isum = vdupq_n_s32(0);
    for (int half = 0; half < 2; half++) {
        uint8x16_t q0 = vld1q_u8(x->qs + 32 * half), q1 = vld1q_u8(x->qs + 32 * half + 16);
        const int8_t *q8 = y->qs + 128 * half;
        for (int plane = 0; plane < 4; plane++, q8 += 32) {
            const int j = 8 * half + 2 * plane;
            isum = ad_sub16(isum, an_s8(vandq_u8(q0, m3)), q8, sc[j]);
            isum = ad_sub16(isum, an_s8(vandq_u8(q1, m3)), q8 + 16, sc[j + 1]);
            q0 = vshrq_n_u8(q0, 2);
            q1 = vshrq_n_u8(q1, 2);
        }
    }
    acc = ad_scaled(acc, isum, y->d * an_h2f(x->d));
    return vfmsq_f32(acc, vcvtq_f32_s32(msum), vdupq_n_f32(y->d * an_h2f(x->dmin)));
}

/* Q3_K: levels ((q >> 2k) & 3) | hbit << 2, minus 4; hmask bit 4 * half + k
 * goes with plane k of half `half`. */
static inline float32x4_t ad_step_q3_K(const block_q3_K *x, const block_q8_K *y, float32x4_t acc) {
    const uint8x16_t m3 = vdupq_n_u8(3), b1 = vdupq_n_u8(1);
    const int8x16_t k4 = vdupq_n_s8(4);
    uint8x16_t hm0 = vld1q_u8(x->hmask), hm1 = vld1q_u8(x->hmask + 16);
    int32x4_t isum = vdupq_n_s32(0);
    for (int half = 0; half < 2; half++) {
        uint8x16_t q0 = vld1q_u8(x->qs + 32 * half), q1 = vld1q_u8(x->qs + 32 * half + 16);
        const int8_t *q8 = y->qs + 128 * half;
        for (int k = 0; k < 4; k++, q8 += 32) {
            const int j = 8 * half + 2 * k;
            const uint8x16_t l0 = vorrq_u8(vandq_u8(q0, m3), vshlq_n_u8(vandq_u8(hm0, b1), 2));
            const uint8x16_t l1 = vorrq_u8(vandq_u8(q1, m3), vshlq_n_u8(vandq_u8(hm1, b1), 2));
            isum = ad_sub16(isum, vsubq_s8(an_s8(l0), k4), q8, quant_q3_K_scale(x->scales, j));
            isum = ad_sub16(isum, vsubq_s8(an_s8(l1), k4), q8 + 16, quant_q3_K_scale(x->scales, j + 1));
            q0 = vshrq_n_u8(q0, 2);
            q1 = vshrq_n_u8(q1, 2);
            hm0 = vshrq_n_u8(hm0, 1);
            hm1 = vshrq_n_u8(hm1, 1);
        }
    }
    return ad_scaled(acc, isum, y->d * an_h2f(x->d));
}

/* Q4_K and Q5_K: 8 sub-blocks of 32 with a 6-bit scale and min; qh == NULL
 * for Q4_K, else bit j of qh[l] is bit 4 of element l of sub-block j. */
static inline float32x4_t ad_k4_step(const uint8_t *scales, const uint8_t *qs, const uint8_t *qh, pl_fp16 d,
                                     pl_fp16 dmin, const block_q8_K *y, float32x4_t acc) {
    uint8_t sc[8], mn[16];
    for (int j = 0; j < 8; j++) {
        quant_k4_get_scale_min(j, scales, &sc[j], &mn[2 * j]);
        mn[2 * j + 1] = mn[2 * j]; /* a 32-element min covers two 16-element bsums */
    }
    const int32x4_t msum = ad_bsum_dot16(y->bsums, vld1q_u8(mn));
    uint8x16_t h0 = vdupq_n_u8(0), h1 = h0;
    if (qh) {
        h0 = vld1q_u8(qh);
        h1 = vld1q_u8(qh + 16);
    }
    int32x4_t isum = vdupq_n_s32(0);
    for (int p = 0; p < 4; p++) {
        const an_k4_levels l = an_k4_levels_at(qs, qh, p, &h0, &h1);
        const int8_t *q8 = y->qs + 64 * p;
        isum = vmlaq_n_s32(isum, ad_dot32(an_s8(l.lo0), an_s8(l.lo1), q8), sc[2 * p]);
        isum = vmlaq_n_s32(isum, ad_dot32(an_s8(l.hi0), an_s8(l.hi1), q8 + 32), sc[2 * p + 1]);
    }
    acc = ad_scaled(acc, isum, y->d * an_h2f(d));
    return vfmsq_f32(acc, vcvtq_f32_s32(msum), vdupq_n_f32(y->d * an_h2f(dmin)));
}

static inline float32x4_t ad_step_q4_K(const block_q4_K *x, const block_q8_K *y, float32x4_t acc) {
    return ad_k4_step(x->scales, x->qs, NULL, x->d, x->dmin, y, acc);
}

static inline float32x4_t ad_step_q5_K(const block_q5_K *x, const block_q8_K *y, float32x4_t acc) {
    return ad_k4_step(x->scales, x->qs, x->qh, x->d, x->dmin, y, acc);
}

/* Q6_K: per half of 128, group k of 32 takes the low (k < 2) or high nibbles
 * of ql[32 * (k & 1) ..] and bits 2k, 2k+1 of qh; levels are stored + 32. */
static inline float32x4_t ad_step_q6_K(const block_q6_K *x, const block_q8_K *y, float32x4_t acc) {
    const uint8x16_t m4 = vdupq_n_u8(0xF), m3 = vdupq_n_u8(3);
    const int8x16_t k32 = vdupq_n_s8(32);
    int32x4_t isum = vdupq_n_s32(0);
    for (int half = 0; half < 2; half++) {
        const uint8_t *ql = x->ql + 64 * half, *qh = x->qh + 32 * half;
        const int8_t *q8 = y->qs + 128 * half, *sc = x->scales + 8 * half;
        for (int e = 0; e < 2; e++) {
            const uint8x16_t a = vld1q_u8(ql + 16 * e), b = vld1q_u8(ql + 32 + 16 * e), c = vld1q_u8(qh + 16 * e);
            uint8x16_t lv[4];
            lv[0] = vorrq_u8(vandq_u8(a, m4), vshlq_n_u8(vandq_u8(c, m3), 4));
            lv[1] = vorrq_u8(vandq_u8(b, m4), vshlq_n_u8(vandq_u8(vshrq_n_u8(c, 2), m3), 4));
            lv[2] = vorrq_u8(vshrq_n_u8(a, 4), vshlq_n_u8(vandq_u8(vshrq_n_u8(c, 4), m3), 4));
            lv[3] = vorrq_u8(vshrq_n_u8(b, 4), vshlq_n_u8(vshrq_n_u8(c, 6), 4));
            for (int k = 0; k < 4; k++)
                isum = ad_sub16(isum, vsubq_s8(an_s8(lv[k]), k32), q8 + 32 * k + 16 * e, sc[2 * k + e]);
        }
    }
    return ad_scaled(acc, isum, y->d * an_h2f(x->d));
}

AD_DOTS(q2_K, block_q2_K, block_q8_K, QK_K)
AD_DOTS(q3_K, block_q3_K, block_q8_K, QK_K)
AD_DOTS(q4_K, block_q4_K, block_q8_K, QK_K)
AD_DOTS(q5_K, block_q5_K, block_q8_K, QK_K)
AD_DOTS(q6_K, block_q6_K, block_q8_K, QK_K)

/* Q8_0 KV-cache scores: the Q8_0 dot of the quantized query with each cached
 * key row (rows `stride` bytes apart), four keys per call. */
static void ad_attn_scores_q8_0(float *scores, const block_q8_0 *q, const void *k, size_t stride, int P, int D,
                                float scale) {
    const uint8_t *kb = k;
    int p = 0;
    for (; p + 4 <= P; p += 4) {
        float s[4];
        ad_dot4_q8_0(D, s, kb + (size_t)p * stride, stride, q);
        vst1q_f32(scores + p, vmulq_n_f32(vld1q_f32(s), scale));
    }
    for (; p < P; p++) {
        float s;
        ad_dot_q8_0(D, &s, kb + (size_t)p * stride, q);
        scores[p] = s * scale;
    }
}

static void ad_install_int_dots(kern_ops *o) {
    static const struct {
        quant_type type;
        quant_vec_dot_fn dot;
        kern_vec_dot4_fn dot4;
    } k_dots[] = {
        {QT_Q4_0, ad_dot_q4_0, ad_dot4_q4_0}, {QT_Q4_1, ad_dot_q4_1, ad_dot4_q4_1},
        {QT_Q5_0, ad_dot_q5_0, ad_dot4_q5_0}, {QT_Q5_1, ad_dot_q5_1, ad_dot4_q5_1},
        {QT_Q8_0, ad_dot_q8_0, ad_dot4_q8_0}, {QT_Q2_K, ad_dot_q2_K, ad_dot4_q2_K},
        {QT_Q3_K, ad_dot_q3_K, ad_dot4_q3_K}, {QT_Q4_K, ad_dot_q4_K, ad_dot4_q4_K},
        {QT_Q5_K, ad_dot_q5_K, ad_dot4_q5_K}, {QT_Q6_K, ad_dot_q6_K, ad_dot4_q6_K},
    };
    for (size_t i = 0; i < sizeof k_dots / sizeof k_dots[0]; i++) {
        o->vec_dot[k_dots[i].type] = k_dots[i].dot;
        o->vec_dot4[k_dots[i].type] = k_dots[i].dot4;
    }
    o->attn_scores_q8_0 = ad_attn_scores_q8_0;
}

#endif
