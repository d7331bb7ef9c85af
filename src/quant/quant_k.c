/*
 * quant_k: layouts, dequantizers and dot products of the K-quants (256-element
 * super-blocks: Q2_K, Q3_K, Q4_K, Q5_K, Q6_K) and of Q8_K, their activation
 * type. The quantizers and their scale search are in quant_k_fit.c.
 *
 * Where element e (0..255) of a super-block lives, per type:
 *   Q2_K  2 bits: byte qs[32*(e/128) + e%32], bits 2*((e%128)/32); 16 sub-blocks
 *         of 16 with a 4-bit scale (low nibble) and 4-bit min (high nibble):
 *         x = d*sc*q - dmin*m.
 *   Q3_K  low 2 bits as Q2_K, bit 2 in hmask[e%32] bit e/32, set meaning "no -4":
 *         q = low - (hbit ? 0 : 4) in [-4, 3]; 16 signed 6-bit scales: x = d*sc*q.
 *   Q4_K  4 bits: byte qs[32*(e/64) + e%32], low nibble when e%64 < 32; 8
 *         sub-blocks of 32 with 6-bit scale and min: x = d*sc*q - dmin*m.
 *   Q5_K  as Q4_K plus bit 4 in qh[e%32] bit e/32.
 *   Q6_K  low 4 bits: ql[64*(e/128) + e%32 + 32*(k&1)], high nibble when k >= 2,
 *         where k = (e%128)/32; high 2 bits: qh[32*(e/128) + e%32] bits 2k;
 *         q - 32 in [-32, 31]; 16 signed 8-bit scales: x = d*sc*(q - 32).
 *   Q8_K  float d, int8 q, and bsums[j] = sum of q over elements 16j..16j+15.
 * The dequantizers multiply in ggml's order, so they are bit-identical to it.
 *
 * Dot products (K type x Q8_K) sum q_x*q_y*scale as integers over the whole
 * super-block (no overflow: at most 256*63*31*127 < 2^31), subtract the min
 * term through Q8_K's bsums, and convert to float once per super-block.
 * They walk the packed layout directly instead of sharing the dequantizer's
 * unpacking, so tests comparing them with the dequantizers check both.
 */
#include "quant_ref.h"

/* ------------------------------------------------------------- dequantize */

void quant_q2_K_to_float(const void *vx, float *y, int64_t n) {
    const block_q2_K *x = vx;
    for (int64_t b = 0; b < n / QK_K; b++) {
        const float d = quant_fp16_to_f32(x[b].d);
        const float dmin = quant_fp16_to_f32(x[b].dmin);
        /* sub-block j = 16 elements: half j/8, bit-plane (j%8)/2, bytes 16*(j%2).. */
        for (int j = 0; j < QK_K / 16; j++, y += 16) {
            const uint8_t sc = x[b].scales[j];
            const float dl = d * (float)(sc & 0xF), ml = dmin * (float)(sc >> 4);
            const uint8_t *q = x[b].qs + 32 * (j / 8) + 16 * (j % 2);
            const int shift = 2 * ((j % 8) / 2);
            for (int l = 0; l < 16; l++) y[l] = dl * (float)((q[l] >> shift) & 3) - ml;
        }
    }
}

void quant_q3_K_to_float(const void *vx, float *y, int64_t n) {
    const block_q3_K *x = vx;
    for (int64_t b = 0; b < n / QK_K; b++) {
        const float d = quant_fp16_to_f32(x[b].d);
        for (int j = 0; j < QK_K / 16; j++, y += 16) {
            const float dl = d * (float)quant_q3_K_scale(x[b].scales, j);
            const uint8_t *q = x[b].qs + 32 * (j / 8) + 16 * (j % 2);
            const uint8_t *hm = x[b].hmask + 16 * (j % 2);
            const int shift = 2 * ((j % 8) / 2), hbit = j / 2; /* = e/32 */
            for (int l = 0; l < 16; l++)
                y[l] = dl * (float)(((q[l] >> shift) & 3) - (((hm[l] >> hbit) & 1) ? 0 : 4));
        }
    }
}

void quant_q4_K_to_float(const void *vx, float *y, int64_t n) {
    const block_q4_K *x = vx;
    for (int64_t b = 0; b < n / QK_K; b++) {
        const float d = quant_fp16_to_f32(x[b].d);
        const float dmin = quant_fp16_to_f32(x[b].dmin);
        for (int j = 0; j < QK_K / 32; j++) {
            uint8_t sc, m;
            quant_k4_get_scale_min(j, x[b].scales, &sc, &m);
            const float dl = d * (float)sc, ml = dmin * (float)m;
            const uint8_t *q = x[b].qs + 32 * (j / 2);
            const int shift = 4 * (j % 2);
            for (int l = 0; l < 32; l++) *y++ = dl * (float)((q[l] >> shift) & 0xF) - ml;
        }
    }
}

void quant_q5_K_to_float(const void *vx, float *y, int64_t n) {
    const block_q5_K *x = vx;
    for (int64_t b = 0; b < n / QK_K; b++) {
        const float d = quant_fp16_to_f32(x[b].d);
        const float dmin = quant_fp16_to_f32(x[b].dmin);
        for (int j = 0; j < QK_K / 32; j++) {
            uint8_t sc, m;
            quant_k4_get_scale_min(j, x[b].scales, &sc, &m);
            const float dl = d * (float)sc, ml = dmin * (float)m;
            const uint8_t *q = x[b].qs + 32 * (j / 2);
            const int shift = 4 * (j % 2);
            for (int l = 0; l < 32; l++) {
                const int v = ((q[l] >> shift) & 0xF) | (((x[b].qh[l] >> j) & 1) << 4);
                *y++ = dl * (float)v - ml;
            }
        }
    }
}

void quant_q6_K_to_float(const void *vx, float *y, int64_t n) {
    const block_q6_K *x = vx;
    for (int64_t b = 0; b < n / QK_K; b++) {
        const float d = quant_fp16_to_f32(x[b].d);
        /* sub-block j = 16 elements: half h = j/8, quarter k = (j%8)/2 */
        for (int j = 0; j < QK_K / 16; j++, y += 16) {
            const int h = j / 8, k = (j % 8) / 2, l0 = 16 * (j % 2);
            const uint8_t *ql = x[b].ql + 64 * h + 32 * (k & 1) + l0;
            const uint8_t *qh = x[b].qh + 32 * h + l0;
            const int lshift = k >= 2 ? 4 : 0, hshift = 2 * k;
            const float dl = d * (float)x[b].scales[j];
            for (int l = 0; l < 16; l++) {
                const int q = (((ql[l] >> lshift) & 0xF) | (((qh[l] >> hshift) & 3) << 4)) - 32;
                y[l] = dl * (float)q;
            }
        }
    }
}

void quant_q8_K_to_float(const void *vx, float *y, int64_t n) {
    const block_q8_K *x = vx;
    for (int64_t b = 0; b < n / QK_K; b++)
        for (int e = 0; e < QK_K; e++) *y++ = x[b].d * (float)x[b].qs[e];
}

/* Q8_K: symmetric 8-bit with a float scale, d = -max/127 where max is the
 * signed value of largest magnitude, and the 16-element sums that the K-quant
 * dots use for their min terms. An all-zero block gets d = 0 and zero sums. */
void quant_q8_K_from_float(const float *x, void *vy, int64_t n) {
    block_q8_K *y = vy;
    for (int64_t b = 0; b < n / QK_K; b++, x += QK_K) {
        float amax = 0, max = 0;
        for (int e = 0; e < QK_K; e++) {
            if (fabsf(x[e]) > amax) {
                amax = fabsf(x[e]);
                max = x[e];
            }
        }
        memset(&y[b], 0, sizeof y[b]);
        if (amax == 0) continue;
        /* -127 (not -128) keeps q symmetric in [-127, 127], as ggml does */
        const float iscale = -127.f / max;
        for (int e = 0; e < QK_K; e++) y[b].qs[e] = (int8_t)quant_clamp(quant_round(iscale * x[e]), -127, 127);
        for (int j = 0; j < QK_K / 16; j++) {
            int sum = 0;
            for (int l = 0; l < 16; l++) sum += y[b].qs[16 * j + l];
            y[b].bsums[j] = (int16_t)sum;
        }
        y[b].d = 1 / iscale;
    }
}

/* ------------------------------------------------------------------- dots */

void quant_dot_q2_K_q8_K(int n, float *s, const void *vx, const void *vy) {
    const block_q2_K *x = vx;
    const block_q8_K *y = vy;
    float sum = 0;
    for (int b = 0; b < n / QK_K; b++) {
        const int8_t *q8 = y[b].qs;
        int isum = 0, msum = 0;
        for (int j = 0; j < QK_K / 16; j++) msum += y[b].bsums[j] * (x[b].scales[j] >> 4);
        /* 2 halves of 128; in each, 4 bit-planes of 32 elements = 2 sub-blocks */
        for (int half = 0; half < 2; half++) {
            const uint8_t *q2 = x[b].qs + 32 * half;
            for (int plane = 0; plane < 4; plane++, q8 += 32) {
                const int shift = 2 * plane;
                const int j = 8 * half + 2 * plane; /* sub-block of q8[0..15] */
                int s0 = 0, s1 = 0;
                for (int l = 0; l < 16; l++) s0 += q8[l] * ((q2[l] >> shift) & 3);
                for (int l = 16; l < 32; l++) s1 += q8[l] * ((q2[l] >> shift) & 3);
                isum += s0 * (x[b].scales[j] & 0xF) + s1 * (x[b].scales[j + 1] & 0xF);
            }
        }
        const float dall = y[b].d * quant_fp16_to_f32(x[b].d);
        const float dmin = y[b].d * quant_fp16_to_f32(x[b].dmin);
        sum += dall * (float)isum - dmin * (float)msum;
    }
    *s = sum;
}

void quant_dot_q3_K_q8_K(int n, float *s, const void *vx, const void *vy) {
    const block_q3_K *x = vx;
    const block_q8_K *y = vy;
    float sum = 0;
    for (int b = 0; b < n / QK_K; b++) {
        int isum = 0;
        for (int j = 0; j < QK_K / 16; j++) {
            const uint8_t *q3 = x[b].qs + 32 * (j / 8) + 16 * (j % 2);
            const uint8_t *hm = x[b].hmask + 16 * (j % 2);
            const int8_t *q8 = y[b].qs + 16 * j;
            const int shift = 2 * ((j % 8) / 2), hbit = j / 2;
            int sub = 0;
            for (int l = 0; l < 16; l++) sub += q8[l] * (((q3[l] >> shift) & 3) - 4 * (1 - ((hm[l] >> hbit) & 1)));
            isum += sub * quant_q3_K_scale(x[b].scales, j);
        }
        sum += quant_fp16_to_f32(x[b].d) * y[b].d * (float)isum;
    }
    *s = sum;
}

/* d * sum(sc_j * dot_j) - dmin * sum(m_j * bsum_j) of a Q4_K/Q5_K block,
 * given the 8 integer sub-block dots; the min term uses Q8_K's bsums (two
 * 16-element sums per 32-element sub-block). */
static float qk_k4_combine(const uint8_t *scales, const int *dots, pl_fp16 d, pl_fp16 dmin, const block_q8_K *y) {
    int isum = 0, msum = 0;
    for (int j = 0; j < QK_K / 32; j++) {
        uint8_t sc, m;
        quant_k4_get_scale_min(j, scales, &sc, &m);
        isum += dots[j] * sc;
        msum += m * (y->bsums[2 * j] + y->bsums[2 * j + 1]);
    }
    return quant_fp16_to_f32(d) * y->d * (float)isum - quant_fp16_to_f32(dmin) * y->d * (float)msum;
}

void quant_dot_q4_K_q8_K(int n, float *s, const void *vx, const void *vy) {
    const block_q4_K *x = vx;
    const block_q8_K *y = vy;
    float sum = 0;
    for (int b = 0; b < n / QK_K; b++) {
        int dots[QK_K / 32];
        for (int j = 0; j < QK_K / 32; j++) {
            const uint8_t *q = x[b].qs + 32 * (j / 2);
            const int8_t *q8 = y[b].qs + 32 * j;
            const int shift = 4 * (j % 2);
            int sub = 0;
            for (int l = 0; l < 32; l++) sub += ((q[l] >> shift) & 0xF) * q8[l];
            dots[j] = sub;
        }
        sum += qk_k4_combine(x[b].scales, dots, x[b].d, x[b].dmin, &y[b]);
    }
    *s = sum;
}

void quant_dot_q5_K_q8_K(int n, float *s, const void *vx, const void *vy) {
    const block_q5_K *x = vx;
    const block_q8_K *y = vy;
    float sum = 0;
    for (int b = 0; b < n / QK_K; b++) {
        int dots[QK_K / 32];
        for (int j = 0; j < QK_K / 32; j++) {
            const uint8_t *q = x[b].qs + 32 * (j / 2);
            const int8_t *q8 = y[b].qs + 32 * j;
            const int shift = 4 * (j % 2);
            int sub = 0;
            for (int l = 0; l < 32; l++) sub += (((q[l] >> shift) & 0xF) | (((x[b].qh[l] >> j) & 1) << 4)) * q8[l];
            dots[j] = sub;
        }
        sum += qk_k4_combine(x[b].scales, dots, x[b].d, x[b].dmin, &y[b]);
    }
    *s = sum;
}

void quant_dot_q6_K_q8_K(int n, float *s, const void *vx, const void *vy) {
    const block_q6_K *x = vx;
    const block_q8_K *y = vy;
    float sum = 0;
    for (int b = 0; b < n / QK_K; b++) {
        int isum = 0;
        for (int j = 0; j < QK_K / 16; j++) {
            const int h = j / 8, k = (j % 8) / 2, l0 = 16 * (j % 2);
            const uint8_t *ql = x[b].ql + 64 * h + 32 * (k & 1) + l0;
            const uint8_t *qh = x[b].qh + 32 * h + l0;
            const int8_t *q8 = y[b].qs + 16 * j;
            const int lshift = k >= 2 ? 4 : 0, hshift = 2 * k;
            int sub = 0;
            for (int l = 0; l < 16; l++) sub += q8[l] * ((((ql[l] >> lshift) & 0xF) | (((qh[l] >> hshift) & 3) << 4)) - 32);
            isum += sub * x[b].scales[j];
        }
        sum += quant_fp16_to_f32(x[b].d) * y[b].d * (float)isum;
    }
    *s = sum;
}
