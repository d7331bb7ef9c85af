/*
 * arm_neon_ops: the float kernels of the aarch64 neon level: RMSNorm,
 * softmax, the SwiGLU gate silu(g) * u, log-sum-exp, and the attention loops
 * over the F16 KV cache (a query's dots with cached keys, the score-weighted
 * sum of cached values) and the Q8_0 cache's weighted sum of values.
 * Baseline armv8-a; installed by kern_neon_install.
 *
 * exp is the same Cody-Waite reduction x = k ln2 + r with a degree-7
 * polynomial for e^r as the AVX2 file: relative error about 2e-7 over the
 * whole float range, 0 below -87.3 (no denormals), +inf above 88.72, NaN
 * kept. Sums run in float with 4 to 16 partial sums, so results equal
 * ref_ops.c up to that rounding. Tails shorter than a vector go through a
 * padded 4-float buffer, so every element sees the same exp.
 */
#if defined(__aarch64__)

#include "arm_util.h"

#include <math.h>

static inline float32x4_t an_exp(float32x4_t x) {
    const float32x4_t hi = vdupq_n_f32(88.72283f), lo = vdupq_n_f32(-87.33654f);
    const uint32x4_t over = vcgtq_f32(x, hi), under = vcltq_f32(x, lo);
    x = vminq_f32(hi, vmaxq_f32(lo, x)); /* FMIN/FMAX return NaN for a NaN lane: kept */
    const float32x4_t k = vrndnq_f32(vmulq_n_f32(x, 1.44269504f));
    /* r = x - k ln2 in two steps (ln2 = 0.693359375 - 2.12194440e-4, the
     * first part exact in few bits so k * it is exact) */
    float32x4_t r = vfmsq_f32(x, k, vdupq_n_f32(0.693359375f));
    r = vfmsq_f32(r, k, vdupq_n_f32(-2.12194440e-4f));
    /* e^r on |r| <= ln2/2 as 1 + r + r^2 * P(r), P of degree 5 */
    float32x4_t p = vdupq_n_f32(1.9875691500e-4f);
    p = vfmaq_f32(vdupq_n_f32(1.3981999507e-3f), p, r);
    p = vfmaq_f32(vdupq_n_f32(8.3334519073e-3f), p, r);
    p = vfmaq_f32(vdupq_n_f32(4.1665795894e-2f), p, r);
    p = vfmaq_f32(vdupq_n_f32(1.6666665459e-1f), p, r);
    p = vfmaq_f32(vdupq_n_f32(5.0000001201e-1f), p, r);
    p = vfmaq_f32(vaddq_f32(r, vdupq_n_f32(1.0f)), p, vmulq_f32(r, r));
    /* 2^k: k in [-126, 128]; 128 (x near the top) is split as 2 * 2^127 */
    const int32x4_t ki = vcvtq_s32_f32(k);
    const uint32x4_t top = vcgtq_s32(ki, vdupq_n_s32(127));
    const int32x4_t kk = vsubq_s32(ki, vreinterpretq_s32_u32(vandq_u32(top, vdupq_n_u32(1))));
    const int32x4_t e = vshlq_n_s32(vaddq_s32(kk, vdupq_n_s32(127)), 23);
    p = vmulq_f32(p, vreinterpretq_f32_s32(e));
    p = vbslq_f32(top, vaddq_f32(p, p), p);
    p = vbslq_f32(over, vdupq_n_f32(INFINITY), p);
    return vreinterpretq_f32_u32(vbicq_u32(vreinterpretq_u32_f32(p), under));
}

static void an_rmsnorm(float *y, const float *x, const float *w, int n, float eps) {
    float32x4_t s0 = vdupq_n_f32(0), s1 = s0;
    int i = 0;
    for (; i + 8 <= n; i += 8) {
        const float32x4_t a = vld1q_f32(x + i), b = vld1q_f32(x + i + 4);
        s0 = vfmaq_f32(s0, a, a);
        s1 = vfmaq_f32(s1, b, b);
    }
    float ss = vaddvq_f32(vaddq_f32(s0, s1));
    for (; i < n; i++) ss += x[i] * x[i];
    const float scale = 1.0f / sqrtf(ss / (float)(n > 0 ? n : 1) + eps);
    i = 0;
    if (w) {
        for (; i + 4 <= n; i += 4) vst1q_f32(y + i, vmulq_f32(vmulq_n_f32(vld1q_f32(x + i), scale), vld1q_f32(w + i)));
        for (; i < n; i++) y[i] = x[i] * scale * w[i];
    } else {
        for (; i + 4 <= n; i += 4) vst1q_f32(y + i, vmulq_n_f32(vld1q_f32(x + i), scale));
        for (; i < n; i++) y[i] = x[i] * scale;
    }
}

static float an_max(const float *x, int n) {
    float32x4_t mv = vdupq_n_f32(-INFINITY);
    int i = 0;
    for (; i + 4 <= n; i += 4) mv = vmaxq_f32(mv, vld1q_f32(x + i));
    float mx = vmaxvq_f32(mv);
    for (; i < n; i++) mx = x[i] > mx ? x[i] : mx;
    return mx;
}

static void an_softmax(float *x, int n) {
    if (n <= 0) return;
    const float32x4_t m = vdupq_n_f32(an_max(x, n));
    float32x4_t sv = vdupq_n_f32(0);
    int i = 0;
    for (; i + 4 <= n; i += 4) {
        const float32x4_t e = an_exp(vsubq_f32(vld1q_f32(x + i), m));
        vst1q_f32(x + i, e);
        sv = vaddq_f32(sv, e);
    }
    if (i < n) { /* padding with -inf adds exp(-inf) = 0 */
        float t[4] = {-INFINITY, -INFINITY, -INFINITY, -INFINITY};
        memcpy(t, x + i, sizeof(float) * (size_t)(n - i));
        const float32x4_t e = an_exp(vsubq_f32(vld1q_f32(t), m));
        vst1q_f32(t, e);
        memcpy(x + i, t, sizeof(float) * (size_t)(n - i));
        sv = vaddq_f32(sv, e);
    }
    const float inv = 1.0f / vaddvq_f32(sv);
    for (i = 0; i + 4 <= n; i += 4) vst1q_f32(x + i, vmulq_n_f32(vld1q_f32(x + i), inv));
    for (; i < n; i++) x[i] *= inv;
}

static inline float32x4_t an_silu_mul4(float32x4_t g, float32x4_t u) {
    const float32x4_t e = an_exp(vnegq_f32(g));
    return vmulq_f32(vdivq_f32(g, vaddq_f32(vdupq_n_f32(1.0f), e)), u);
}

static void an_silu_mul(float *h, const float *g, const float *u, int n) {
    int i = 0;
    for (; i + 4 <= n; i += 4) vst1q_f32(h + i, an_silu_mul4(vld1q_f32(g + i), vld1q_f32(u + i)));
    if (i < n) {
        float tg[4] = {0, 0, 0, 0}, tu[4] = {0, 0, 0, 0};
        memcpy(tg, g + i, sizeof(float) * (size_t)(n - i));
        memcpy(tu, u + i, sizeof(float) * (size_t)(n - i));
        vst1q_f32(tg, an_silu_mul4(vld1q_f32(tg), vld1q_f32(tu)));
        memcpy(h + i, tg, sizeof(float) * (size_t)(n - i));
    }
}

/* log-sum-exp: max pass, then sum of exp(x - max) in float vectors, folded
 * into a double every 1024 elements so long rows keep float-level accuracy. */
static double an_logsumexp(const float *x, int n) {
    const float mx = an_max(x, n);
    const float32x4_t m = vdupq_n_f32(mx);
    double sum = 0.0;
    for (int i = 0; i < n;) {
        const int end = n - i > 1024 ? i + 1024 : n;
        float32x4_t s0 = vdupq_n_f32(0), s1 = s0;
        for (; i + 8 <= end; i += 8) {
            s0 = vaddq_f32(s0, an_exp(vsubq_f32(vld1q_f32(x + i), m)));
            s1 = vaddq_f32(s1, an_exp(vsubq_f32(vld1q_f32(x + i + 4), m)));
        }
        for (; i < end; i += 4) { /* the last chunk's tail, padded with -inf */
            float t[4] = {-INFINITY, -INFINITY, -INFINITY, -INFINITY};
            memcpy(t, x + i, sizeof(float) * (size_t)(end - i < 4 ? end - i : 4));
            s0 = vaddq_f32(s0, an_exp(vsubq_f32(vld1q_f32(t), m)));
        }
        i = end;
        sum += vaddvq_f32(vaddq_f32(s0, s1));
    }
    return (double)mx + log(sum);
}

/* Scores of 4 keys per step: q is loaded once for the 4, and one pairwise
 * tree reduces the 4 partial-sum vectors together. */
static void an_attn_scores_f16(float *scores, const float *q, const pl_fp16 *k, size_t stride, int P, int D,
                               float scale) {
    const int D4 = D & ~3;
    int p = 0;
    for (; p + 4 <= P; p += 4) {
        const pl_fp16 *k0 = k + (size_t)p * stride, *k1 = k0 + stride, *k2 = k1 + stride, *k3 = k2 + stride;
        float32x4_t a0 = vdupq_n_f32(0), a1 = a0, a2 = a0, a3 = a0;
        for (int d = 0; d < D4; d += 4) {
            const float32x4_t qv = vld1q_f32(q + d);
            a0 = vfmaq_f32(a0, qv, an_ld_h4(k0 + d));
            a1 = vfmaq_f32(a1, qv, an_ld_h4(k1 + d));
            a2 = vfmaq_f32(a2, qv, an_ld_h4(k2 + d));
            a3 = vfmaq_f32(a3, qv, an_ld_h4(k3 + d));
        }
        float32x4_t s = vpaddq_f32(vpaddq_f32(a0, a1), vpaddq_f32(a2, a3));
        if (D4 < D) {
            float t[4] = {0, 0, 0, 0};
            for (int d = D4; d < D; d++) {
                t[0] += q[d] * an_h2f(k0[d]);
                t[1] += q[d] * an_h2f(k1[d]);
                t[2] += q[d] * an_h2f(k2[d]);
                t[3] += q[d] * an_h2f(k3[d]);
            }
            s = vaddq_f32(s, vld1q_f32(t));
        }
        vst1q_f32(scores + p, vmulq_n_f32(s, scale));
    }
    for (; p < P; p++) {
        const pl_fp16 *kr = k + (size_t)p * stride;
        float32x4_t a0 = vdupq_n_f32(0);
        for (int d = 0; d < D4; d += 4) a0 = vfmaq_f32(a0, vld1q_f32(q + d), an_ld_h4(kr + d));
        float s = vaddvq_f32(a0);
        for (int d = D4; d < D; d++) s += q[d] * an_h2f(kr[d]);
        scores[p] = s * scale;
    }
}

/* out = sum_p w[p] v[p]: 16 columns in registers at a time, two positions
 * per step into separate accumulators so the FMA chains overlap. */
static void an_attn_values_f16(float *out, const float *w, const pl_fp16 *v, size_t stride, int P, int D) {
    int d = 0;
    for (; d + 16 <= D; d += 16) {
        float32x4_t a[4], b[4];
        for (int c = 0; c < 4; c++) a[c] = b[c] = vdupq_n_f32(0);
        int p = 0;
        for (; p + 2 <= P; p += 2) {
            const pl_fp16 *v0 = v + (size_t)p * stride + d, *v1 = v0 + stride;
            for (int c = 0; c < 4; c++) {
                a[c] = vfmaq_n_f32(a[c], an_ld_h4(v0 + 4 * c), w[p]);
                b[c] = vfmaq_n_f32(b[c], an_ld_h4(v1 + 4 * c), w[p + 1]);
            }
        }
        if (p < P) {
            const pl_fp16 *v0 = v + (size_t)p * stride + d;
            for (int c = 0; c < 4; c++) a[c] = vfmaq_n_f32(a[c], an_ld_h4(v0 + 4 * c), w[p]);
        }
        for (int c = 0; c < 4; c++) vst1q_f32(out + d + 4 * c, vaddq_f32(a[c], b[c]));
    }
    for (; d + 4 <= D; d += 4) {
        float32x4_t a0 = vdupq_n_f32(0);
        for (int p = 0; p < P; p++) a0 = vfmaq_n_f32(a0, an_ld_h4(v + (size_t)p * stride + d), w[p]);
        vst1q_f32(out + d, a0);
    }
    for (; d < D; d++) {
        float a = 0.0f;
        for (int p = 0; p < P; p++) a += w[p] * an_h2f(v[(size_t)p * stride + d]);
        out[d] = a;
    }
}

/* Q8_0 KV-cache values: out = sum_p w[p] d_p q_p, one 32-column block at a
 * time in 8 accumulator vectors (rows `stride` bytes apart, D % 32 == 0). */
static void an_attn_values_q8_0(float *out, const float *w, const void *v, size_t stride, int P, int D) {
    for (int b = 0; b < D / QK8_0; b++) {
        float32x4_t a[8];
        for (int c = 0; c < 8; c++) a[c] = vdupq_n_f32(0);
        for (int p = 0; p < P; p++) {
            const block_q8_0 *vb = (const block_q8_0 *)((const uint8_t *)v + (size_t)p * stride) + b;
            const float s = w[p] * an_h2f(vb->d);
            for (int h = 0; h < 2; h++) {
                const int8x16_t q = vld1q_s8(vb->qs + 16 * h);
                const int16x8_t lo = vmovl_s8(vget_low_s8(q)), hi = vmovl_high_s8(q);
                a[4 * h] = vfmaq_n_f32(a[4 * h], vcvtq_f32_s32(vmovl_s16(vget_low_s16(lo))), s);
                a[4 * h + 1] = vfmaq_n_f32(a[4 * h + 1], vcvtq_f32_s32(vmovl_high_s16(lo)), s);
                a[4 * h + 2] = vfmaq_n_f32(a[4 * h + 2], vcvtq_f32_s32(vmovl_s16(vget_low_s16(hi))), s);
                a[4 * h + 3] = vfmaq_n_f32(a[4 * h + 3], vcvtq_f32_s32(vmovl_high_s16(hi)), s);
            }
        }
        for (int c = 0; c < 8; c++) vst1q_f32(out + QK8_0 * b + 4 * c, a[c]);
    }
}

void kern_neon_install_ops(kern_ops *o) {
    o->rmsnorm = an_rmsnorm;
    o->softmax = an_softmax;
    o->silu_mul = an_silu_mul;
    o->logsumexp = an_logsumexp;
    o->attn_scores_f16 = an_attn_scores_f16;
    o->attn_values_f16 = an_attn_values_f16;
    o->attn_values_q8_0 = an_attn_values_q8_0; /* (the Q8_0 scores are dots: arm_dots.h) */
}

#else
typedef int kern_arm_neon_ops_unused; /* not an aarch64 build: nothing here */
#endif
