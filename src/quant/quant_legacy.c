/*
 * quant_legacy: the 32-element block types Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q8_1.
 *
 * Layouts (ggml's): element j of a block sits in the low nibble of qs[j] for
 * j < 16 and in the high nibble of qs[j - 16] otherwise; the 5-bit types keep
 * bit 4 of element j in bit j of the 32-bit little-endian word qh. "_0" types
 * are symmetric (x = d * (q - 2^(b-1))), "_1" types are affine (x = d*q + m).
 *
 * Quantizers are ggml's reference ones (the block scale comes from the absmax
 * or min/max, then round to nearest), computed in the same order so that they
 * produce the same bytes as llama-quantize without an importance matrix.
 *
 * vec_dot: every type here is multiplied with Q8_0 activations (ggml uses
 * Q8_1 for Q4_1/Q5_1 so that the min term can use the stored d*sum(q)). We
 * use Q8_0 for all: the min term m_x * d_y * sum(q_y) takes the integer sum of
 * the activation block, computed here exactly instead of read back from a
 * half-precision field, so it is slightly more accurate than ggml's. Inside a
 * block the products are summed as integers; blocks are summed in float.
 */
#include "quant_ref.h"

#include <float.h>

/* Level from a value already offset to be >= 0: truncation, as ggml's
 * (int8_t)(v + 0.5f) casts do, capped at hi; NaN gives 0 instead of UB. */
static inline int ql_level(float v, int hi) {
    if (!(v >= 0.f)) return 0;
    if (v >= (float)hi) return hi;
    return (int)v;
}

/* roundf (ties away from zero, as ggml's Q8 quantizers) into int8 range. */
static inline int8_t ql_round_i8(float v) {
    const float r = roundf(v);
    if (!(r >= -127.f)) return (int8_t)(r < 0 ? -127 : 0);
    if (r > 127.f) return 127;
    return (int8_t)r;
}

static inline uint32_t ql_load_qh(const uint8_t qh[4]) {
    return (uint32_t)qh[0] | (uint32_t)qh[1] << 8 | (uint32_t)qh[2] << 16 | (uint32_t)qh[3] << 24;
}

static inline void ql_store_qh(uint8_t qh[4], uint32_t v) {
    for (int i = 0; i < 4; i++) qh[i] = (uint8_t)(v >> (8 * i));
}

/* The value with the largest magnitude (the first one on ties), sign kept. */
static inline float ql_signed_absmax(const float *x, int n) {
    float amax = 0, max = 0;
    for (int j = 0; j < n; j++) {
        if (amax < fabsf(x[j])) {
            amax = fabsf(x[j]);
            max = x[j];
        }
    }
    return max;
}

static inline void ql_min_max(const float *x, int n, float *mn, float *mx) {
    float lo = FLT_MAX, hi = -FLT_MAX;
    for (int j = 0; j < n; j++) {
        if (x[j] < lo) lo = x[j];
        if (x[j] > hi) hi = x[j];
    }
    *mn = lo;
    *mx = hi;
}

/* ------------------------------------------------------------- dequantize */

void quant_q4_0_to_float(const void *vx, float *y, int64_t n) {
    const block_q4_0 *x = vx;
    for (int64_t b = 0; b < n / QK4_0; b++, y += QK4_0) {
        const float d = quant_fp16_to_f32(x[b].d);
        for (int j = 0; j < QK4_0 / 2; j++) {
            y[j] = ((x[b].qs[j] & 0xF) - 8) * d;
            y[j + QK4_0 / 2] = ((x[b].qs[j] >> 4) - 8) * d;
        }
    }
}

void quant_q4_1_to_float(const void *vx, float *y, int64_t n) {
    const block_q4_1 *x = vx;
    for (int64_t b = 0; b < n / QK4_1; b++, y += QK4_1) {
        const float d = quant_fp16_to_f32(x[b].d), m = quant_fp16_to_f32(x[b].m);
        for (int j = 0; j < QK4_1 / 2; j++) {
            y[j] = (x[b].qs[j] & 0xF) * d + m;
            y[j + QK4_1 / 2] = (x[b].qs[j] >> 4) * d + m;
        }
    }
}

void quant_q5_0_to_float(const void *vx, float *y, int64_t n) {
    const block_q5_0 *x = vx;
    for (int64_t b = 0; b < n / QK5_0; b++, y += QK5_0) {
        const float d = quant_fp16_to_f32(x[b].d);
        const uint32_t qh = ql_load_qh(x[b].qh);
        for (int j = 0; j < QK5_0 / 2; j++) {
            const int h0 = (int)((qh >> j) & 1u) << 4;
            const int h1 = (int)((qh >> (j + 16)) & 1u) << 4;
            y[j] = (((x[b].qs[j] & 0xF) | h0) - 16) * d;
            y[j + QK5_0 / 2] = (((x[b].qs[j] >> 4) | h1) - 16) * d;
        }
    }
}

void quant_q5_1_to_float(const void *vx, float *y, int64_t n) {
    const block_q5_1 *x = vx;
    for (int64_t b = 0; b < n / QK5_1; b++, y += QK5_1) {
        const float d = quant_fp16_to_f32(x[b].d), m = quant_fp16_to_f32(x[b].m);
        const uint32_t qh = ql_load_qh(x[b].qh);
        for (int j = 0; j < QK5_1 / 2; j++) {
            const int h0 = (int)((qh >> j) & 1u) << 4;
            const int h1 = (int)((qh >> (j + 16)) & 1u) << 4;
            y[j] = ((x[b].qs[j] & 0xF) | h0) * d + m;
            y[j + QK5_1 / 2] = ((x[b].qs[j] >> 4) | h1) * d + m;
        }
    }
}

void quant_q8_0_to_float(const void *vx, float *y, int64_t n) {
    const block_q8_0 *x = vx;
    for (int64_t b = 0; b < n / QK8_0; b++, y += QK8_0) {
        const float d = quant_fp16_to_f32(x[b].d);
        for (int j = 0; j < QK8_0; j++) y[j] = x[b].qs[j] * d;
    }
}

void quant_q8_1_to_float(const void *vx, float *y, int64_t n) {
    const block_q8_1 *x = vx;
    for (int64_t b = 0; b < n / QK8_1; b++, y += QK8_1) {
        const float d = quant_fp16_to_f32(x[b].d);
        for (int j = 0; j < QK8_1; j++) y[j] = x[b].qs[j] * d;
    }
}

/* --------------------------------------------------------------- quantize */

void quant_q4_0_from_float(const float *x, void *vy, int64_t n) {
    block_q4_0 *y = vy;
    for (int64_t b = 0; b < n / QK4_0; b++, x += QK4_0) {
        /* d = max / -8 maps the extreme value to level 0 (= -8), which uses
         * the asymmetric range [-8, 7] fully on the side of the extreme */
        const float d = ql_signed_absmax(x, QK4_0) / -8;
        const float id = d ? 1.0f / d : 0.0f;
        y[b].d = quant_f32_to_fp16(d);
        for (int j = 0; j < QK4_0 / 2; j++) {
            const int q0 = ql_level(x[j] * id + 8.5f, 15);
            const int q1 = ql_level(x[j + QK4_0 / 2] * id + 8.5f, 15);
            y[b].qs[j] = (uint8_t)(q0 | (q1 << 4));
        }
    }
}

void quant_q4_1_from_float(const float *x, void *vy, int64_t n) {
    block_q4_1 *y = vy;
    for (int64_t b = 0; b < n / QK4_1; b++, x += QK4_1) {
        float mn, mx;
        ql_min_max(x, QK4_1, &mn, &mx);
        const float d = (mx - mn) / 15;
        const float id = d ? 1.0f / d : 0.0f;
        y[b].d = quant_f32_to_fp16(d);
        y[b].m = quant_f32_to_fp16(mn);
        for (int j = 0; j < QK4_1 / 2; j++) {
            const int q0 = ql_level((x[j] - mn) * id + 0.5f, 15);
            const int q1 = ql_level((x[j + QK4_1 / 2] - mn) * id + 0.5f, 15);
            y[b].qs[j] = (uint8_t)(q0 | (q1 << 4));
        }
    }
}

void quant_q5_0_from_float(const float *x, void *vy, int64_t n) {
    block_q5_0 *y = vy;
    for (int64_t b = 0; b < n / QK5_0; b++, x += QK5_0) {
        const float d = ql_signed_absmax(x, QK5_0) / -16;
        const float id = d ? 1.0f / d : 0.0f;
        y[b].d = quant_f32_to_fp16(d);
        uint32_t qh = 0;
        for (int j = 0; j < QK5_0 / 2; j++) {
            const int q0 = ql_level(x[j] * id + 16.5f, 31);
            const int q1 = ql_level(x[j + QK5_0 / 2] * id + 16.5f, 31);
            y[b].qs[j] = (uint8_t)((q0 & 0xF) | ((q1 & 0xF) << 4));
            qh |= (uint32_t)(q0 >> 4) << j;
            qh |= (uint32_t)(q1 >> 4) << (j + QK5_0 / 2);
        }
        ql_store_qh(y[b].qh, qh);
    }
}

void quant_q5_1_from_float(const float *x, void *vy, int64_t n) {
    block_q5_1 *y = vy;
    for (int64_t b = 0; b < n / QK5_1; b++, x += QK5_1) {
        float mn, mx;
        ql_min_max(x, QK5_1, &mn, &mx);
        const float d = (mx - mn) / 31;
        const float id = d ? 1.0f / d : 0.0f;
        y[b].d = quant_f32_to_fp16(d);
        y[b].m = quant_f32_to_fp16(mn);
        uint32_t qh = 0;
        for (int j = 0; j < QK5_1 / 2; j++) {
            const int q0 = ql_level((x[j] - mn) * id + 0.5f, 31);
            const int q1 = ql_level((x[j + QK5_1 / 2] - mn) * id + 0.5f, 31);
            y[b].qs[j] = (uint8_t)((q0 & 0xF) | ((q1 & 0xF) << 4));
            qh |= (uint32_t)(q0 >> 4) << j;
            qh |= (uint32_t)(q1 >> 4) << (j + QK5_1 / 2);
        }
        ql_store_qh(y[b].qh, qh);
    }
}

/* Symmetric 8-bit: d = absmax / 127, q = round(x / d). Returns d (unrounded). */
static float ql_q8_block(const float *x, int8_t *qs) {
    float amax = 0;
    for (int j = 0; j < 32; j++) amax = fmaxf(amax, fabsf(x[j]));
    const float d = amax / 127;
    const float id = d ? 1.0f / d : 0.0f;
    for (int j = 0; j < 32; j++) qs[j] = ql_round_i8(x[j] * id);
    return d;
}

void quant_q8_0_from_float(const float *x, void *vy, int64_t n) {
    block_q8_0 *y = vy;
    for (int64_t b = 0; b < n / QK8_0; b++, x += QK8_0)
        y[b].d = quant_f32_to_fp16(ql_q8_block(x, y[b].qs));
}

void quant_q8_1_from_float(const float *x, void *vy, int64_t n) {
    block_q8_1 *y = vy;
    for (int64_t b = 0; b < n / QK8_1; b++, x += QK8_1) {
        const float d = ql_q8_block(x, y[b].qs);
        int sum = 0;
        for (int j = 0; j < QK8_1; j++) sum += y[b].qs[j];
        y[b].d = quant_f32_to_fp16(d);
        y[b].s = quant_f32_to_fp16((float)sum * d);
    }
}

/* ------------------------------------------------------------------- dots */

void quant_dot_q4_0_q8_0(int n, float *s, const void *vx, const void *vy) {
    const block_q4_0 *x = vx;
    const block_q8_0 *y = vy;
    float sum = 0;
    for (int b = 0; b < n / QK4_0; b++) {
        int isum = 0;
        for (int j = 0; j < QK4_0 / 2; j++) {
            isum += ((x[b].qs[j] & 0xF) - 8) * y[b].qs[j];
            isum += ((x[b].qs[j] >> 4) - 8) * y[b].qs[j + QK4_0 / 2];
        }
        sum += quant_fp16_to_f32(x[b].d) * quant_fp16_to_f32(y[b].d) * (float)isum;
    }
    *s = sum;
}

void quant_dot_q4_1_q8_0(int n, float *s, const void *vx, const void *vy) {
    const block_q4_1 *x = vx;
    const block_q8_0 *y = vy;
    float sum = 0;
    for (int b = 0; b < n / QK4_1; b++) {
        int isum = 0, ysum = 0;
        for (int j = 0; j < QK4_1 / 2; j++) {
            isum += (x[b].qs[j] & 0xF) * y[b].qs[j];
            isum += (x[b].qs[j] >> 4) * y[b].qs[j + QK4_1 / 2];
            ysum += y[b].qs[j] + y[b].qs[j + QK4_1 / 2];
        }
        const float dy = quant_fp16_to_f32(y[b].d);
        sum += quant_fp16_to_f32(x[b].d) * dy * (float)isum + quant_fp16_to_f32(x[b].m) * (dy * (float)ysum);
    }
    *s = sum;
}

void quant_dot_q5_0_q8_0(int n, float *s, const void *vx, const void *vy) {
    const block_q5_0 *x = vx;
    const block_q8_0 *y = vy;
    float sum = 0;
    for (int b = 0; b < n / QK5_0; b++) {
        const uint32_t qh = ql_load_qh(x[b].qh);
        int isum = 0;
        for (int j = 0; j < QK5_0 / 2; j++) {
            const int q0 = ((x[b].qs[j] & 0xF) | (int)(((qh >> j) & 1u) << 4)) - 16;
            const int q1 = ((x[b].qs[j] >> 4) | (int)(((qh >> (j + 16)) & 1u) << 4)) - 16;
            isum += q0 * y[b].qs[j] + q1 * y[b].qs[j + QK5_0 / 2];
        }
        sum += quant_fp16_to_f32(x[b].d) * quant_fp16_to_f32(y[b].d) * (float)isum;
    }
    *s = sum;
}

void quant_dot_q5_1_q8_0(int n, float *s, const void *vx, const void *vy) {
    const block_q5_1 *x = vx;
    const block_q8_0 *y = vy;
    float sum = 0;
    for (int b = 0; b < n / QK5_1; b++) {
        const uint32_t qh = ql_load_qh(x[b].qh);
        int isum = 0, ysum = 0;
        for (int j = 0; j < QK5_1 / 2; j++) {
            const int q0 = (x[b].qs[j] & 0xF) | (int)(((qh >> j) & 1u) << 4);
            const int q1 = (x[b].qs[j] >> 4) | (int)(((qh >> (j + 16)) & 1u) << 4);
            isum += q0 * y[b].qs[j] + q1 * y[b].qs[j + QK5_1 / 2];
            ysum += y[b].qs[j] + y[b].qs[j + QK5_1 / 2];
        }
        const float dy = quant_fp16_to_f32(y[b].d);
        sum += quant_fp16_to_f32(x[b].d) * dy * (float)isum + quant_fp16_to_f32(x[b].m) * (dy * (float)ysum);
    }
    *s = sum;
}

void quant_dot_q8_0_q8_0(int n, float *s, const void *vx, const void *vy) {
    const block_q8_0 *x = vx;
    const block_q8_0 *y = vy;
    float sum = 0;
    for (int b = 0; b < n / QK8_0; b++) {
        int isum = 0;
        for (int j = 0; j < QK8_0; j++) isum += x[b].qs[j] * y[b].qs[j];
        sum += quant_fp16_to_f32(x[b].d) * quant_fp16_to_f32(y[b].d) * (float)isum;
    }
    *s = sum;
}
