/*
 * arm_packed.h: SDOT kernels of pack.c's row-interleaved Q4_0 and Q4_K
 * layouts, included once by arm_dotprod.c (built for armv8.2-a+dotprod).
 *
 * A 32-byte chunk of a unit is two int8x16 vectors, rows 0-3 and rows 4-7,
 * each row's 4 bytes in its own 32-bit lane: exactly SDOT's by-lane form,
 * which dots every lane with one 4-byte group of the activations
 * (vdotq_laneq_s32), so a chunk costs two SDOTs per nibble half and the 8
 * rows' sums land in two int32x4 vectors, with no reductions and the 8
 * scales converted at once. Q4_0: the levels minus 8 as int8 (exact), up to
 * 4 tokens per chunk load. Q4_K: the unsigned levels per sub-block, scaled
 * per row lane by the 6-bit scales (int32 multiply-accumulate), mins through
 * the activation's 16-element sums; its scales are decoded once per unit and
 * used for every token.
 * The lane argument of vdotq_laneq_s32 must be a constant: the per-lane
 * steps are written out with macros.
 */
#ifndef PL_ARM_PACKED_H
#define PL_ARM_PACKED_H

#define AP_ROWS 8
#define AP_MAX_NT 4

/* ------------------------------------------------------------------ Q4_0 */

/* rows [8g, 8g + 8) x tokens [t0, t0 + nt) */
static inline __attribute__((always_inline)) void ap_group_q4_0(const kern_gemm_job *j, const uint8_t *grp,
                                                                int64_t nb, int64_t row0, int t0, const int nt) {
    const block_q8_0 *y[AP_MAX_NT];
    float32x4_t f0[AP_MAX_NT], f1[AP_MAX_NT];
    for (int t = 0; t < nt; t++) {
        y[t] = (const block_q8_0 *)(j->act + (size_t)(t0 + t) * j->act_row);
        f0[t] = f1[t] = vdupq_n_f32(0.0f);
    }
    const int8x16_t eight = vdupq_n_s8(8);
    const uint8_t *u = grp;
    for (int64_t b = 0; b < nb; b++, u += AP_ROWS * sizeof(block_q4_0)) {
        int8x16_t yl[AP_MAX_NT], yh[AP_MAX_NT];
        int32x4_t a0[AP_MAX_NT], a1[AP_MAX_NT];
        for (int t = 0; t < nt; t++) {
            yl[t] = vld1q_s8(y[t][b].qs);
            yh[t] = vld1q_s8(y[t][b].qs + 16);
            a0[t] = a1[t] = vdupq_n_s32(0);
        }
#define AP_Q4_0_CHUNK(k)                                                                                   \
    do {                                                                                                   \
        const uint8x16_t w0 = vld1q_u8(u + 16 + 32 * (k)), w1 = vld1q_u8(u + 32 + 32 * (k));             \
        const int8x16_t l0 = vsubq_s8(an_s8(an_lo4(w0)), eight), h0 = vsubq_s8(an_s8(an_hi4(w0)), eight); \
        const int8x16_t l1 = vsubq_s8(an_s8(an_lo4(w1)), eight), h1 = vsubq_s8(an_s8(an_hi4(w1)), eight); \
        for (int t = 0; t < nt; t++) {                                                                     \
            a0[t] = vdotq_laneq_s32(vdotq_laneq_s32(a0[t], l0, yl[t], k), h0, yh[t], k);                  \
            a1[t] = vdotq_laneq_s32(vdotq_laneq_s32(a1[t], l1, yl[t], k), h1, yh[t], k);                  \
        }                                                                                                  \
    } while (0)
        AP_Q4_0_CHUNK(0);
        AP_Q4_0_CHUNK(1);
        AP_Q4_0_CHUNK(2);
        AP_Q4_0_CHUNK(3);
#undef AP_Q4_0_CHUNK
        const float32x4_t d0 = an_ld_h4((const pl_fp16 *)u), d1 = an_ld_h4((const pl_fp16 *)u + 4);
        for (int t = 0; t < nt; t++) {
            const float dy = an_h2f(y[t][b].d);
            f0[t] = vfmaq_f32(f0[t], vmulq_n_f32(d0, dy), vcvtq_f32_s32(a0[t]));
            f1[t] = vfmaq_f32(f1[t], vmulq_n_f32(d1, dy), vcvtq_f32_s32(a1[t]));
        }
    }
    for (int t = 0; t < nt; t++) {
        float *out = j->Y + (size_t)(t0 + t) * (size_t)j->ldy + row0;
        float32x4_t b0 = vdupq_n_f32(0.0f), b1 = b0;
        if (j->bias) b0 = vld1q_f32(j->bias + row0), b1 = vld1q_f32(j->bias + row0 + 4);
        vst1q_f32(out, vaddq_f32(f0[t], b0));
        vst1q_f32(out + 4, vaddq_f32(f1[t], b1));
    }
}

static void ap_rows_q4_0(const kern_gemm_job *j, int64_t r0, int64_t r1) {
    const int64_t nb = j->n_in / QK4_0;
    for (int64_t g = r0 / AP_ROWS; g < r1 / AP_ROWS; g++) {
        const uint8_t *grp = j->w + (size_t)g * AP_ROWS * j->w_row;
        int t = 0;
        for (; t + 4 <= j->T; t += 4) ap_group_q4_0(j, grp, nb, g * AP_ROWS, t, 4);
        switch (j->T - t) {
        case 3: ap_group_q4_0(j, grp, nb, g * AP_ROWS, t, 3); break;
        case 2: ap_group_q4_0(j, grp, nb, g * AP_ROWS, t, 2); break;
        case 1: ap_group_q4_0(j, grp, nb, g * AP_ROWS, t, 1); break;
        default: break;
        }
    }
}

/* ------------------------------------------------------------------ Q4_K */

/* A unit's 6-bit scales and mins as int32 lanes: sc[s][h], mn[s][h] hold
 * rows 4h..4h+3 of sub-block s (pack.c: entry 8s + r, low nibbles in bytes
 * 32..95, top bits in 96..127). */
static inline void ap_q4_K_scales(const uint8_t *u, int32x4_t sc[8][2], int32x4_t mn[8][2]) {
    uint8_t scb[64], mb[64];
    const uint8x16_t m4 = vdupq_n_u8(0xF), m30 = vdupq_n_u8(0x30);
    const uint8x16_t h[2] = {vld1q_u8(u + 96), vld1q_u8(u + 112)};
    for (int q = 0; q < 4; q++) {
        const uint8x16_t l = vld1q_u8(u + 32 + 16 * q), hh = h[q & 1];
        /* entries 0..31 take bits 0-3 of their top-bit byte, 32..63 bits 4-7 */
        const uint8x16_t top = q < 2 ? vshlq_n_u8(hh, 4) : hh;
        vst1q_u8(scb + 16 * q, vorrq_u8(vandq_u8(l, m4), vandq_u8(top, m30)));
        vst1q_u8(mb + 16 * q, vorrq_u8(vshrq_n_u8(l, 4), vandq_u8(vshrq_n_u8(top, 2), m30)));
    }
    for (int s = 0; s < 8; s++) {
        const uint16x8_t s16 = vmovl_u8(vld1_u8(scb + 8 * s)), m16 = vmovl_u8(vld1_u8(mb + 8 * s));
        sc[s][0] = vreinterpretq_s32_u32(vmovl_u16(vget_low_u16(s16)));
        sc[s][1] = vreinterpretq_s32_u32(vmovl_u16(vget_high_u16(s16)));
        mn[s][0] = vreinterpretq_s32_u32(vmovl_u16(vget_low_u16(m16)));
        mn[s][1] = vreinterpretq_s32_u32(vmovl_u16(vget_high_u16(m16)));
    }
}

/* One unit x one token's Q8_K block, added to the rows' sums f[0..1]. */
static inline void ap_q4_K_unit(const uint8_t *u, const block_q8_K *y, const int32x4_t sc[8][2],
                                const int32x4_t mn[8][2], float32x4_t f[2]) {
    int32x4_t is0 = vdupq_n_s32(0), is1 = is0, ms0 = is0, ms1 = is0;
    for (int p = 0; p < 4; p++) {
        const uint8_t *c = u + 128 + 256 * p;
        const int8x16_t y00 = vld1q_s8(y->qs + 64 * p), y01 = vld1q_s8(y->qs + 64 * p + 16);
        const int8x16_t y10 = vld1q_s8(y->qs + 64 * p + 32), y11 = vld1q_s8(y->qs + 64 * p + 48);
        int32x4_t lo0 = vdupq_n_s32(0), lo1 = lo0, hi0 = lo0, hi1 = lo0;
#define AP_Q4_K_CHUNK(k, ylo, yhi, lane)                                                                  \
    do {                                                                                                  \
        const uint8x16_t w0 = vld1q_u8(c + 32 * (k)), w1 = vld1q_u8(c + 32 * (k) + 16);                  \
        lo0 = vdotq_laneq_s32(lo0, an_s8(an_lo4(w0)), ylo, lane);                                        \
        lo1 = vdotq_laneq_s32(lo1, an_s8(an_lo4(w1)), ylo, lane);                                        \
        hi0 = vdotq_laneq_s32(hi0, an_s8(an_hi4(w0)), yhi, lane);                                        \
        hi1 = vdotq_laneq_s32(hi1, an_s8(an_hi4(w1)), yhi, lane);                                        \
    } while (0)
        AP_Q4_K_CHUNK(0, y00, y10, 0);
        AP_Q4_K_CHUNK(1, y00, y10, 1);
        AP_Q4_K_CHUNK(2, y00, y10, 2);
        AP_Q4_K_CHUNK(3, y00, y10, 3);
        AP_Q4_K_CHUNK(4, y01, y11, 0);
        AP_Q4_K_CHUNK(5, y01, y11, 1);
        AP_Q4_K_CHUNK(6, y01, y11, 2);
        AP_Q4_K_CHUNK(7, y01, y11, 3);
#undef AP_Q4_K_CHUNK
        is0 = vmlaq_s32(vmlaq_s32(is0, lo0, sc[2 * p][0]), hi0, sc[2 * p + 1][0]);
        is1 = vmlaq_s32(vmlaq_s32(is1, lo1, sc[2 * p][1]), hi1, sc[2 * p + 1][1]);
    }
    for (int s = 0; s < 8; s++) {
        const int32_t ys = y->bsums[2 * s] + y->bsums[2 * s + 1];
        ms0 = vmlaq_n_s32(ms0, mn[s][0], ys);
        ms1 = vmlaq_n_s32(ms1, mn[s][1], ys);
    }
    const float32x4_t d0 = vmulq_n_f32(an_ld_h4((const pl_fp16 *)u), y->d),
                      d1 = vmulq_n_f32(an_ld_h4((const pl_fp16 *)u + 4), y->d);
    const float32x4_t m0 = vmulq_n_f32(an_ld_h4((const pl_fp16 *)(u + 16)), y->d),
                      m1 = vmulq_n_f32(an_ld_h4((const pl_fp16 *)(u + 16) + 4), y->d);
    f[0] = vfmsq_f32(vfmaq_f32(f[0], d0, vcvtq_f32_s32(is0)), m0, vcvtq_f32_s32(ms0));
    f[1] = vfmsq_f32(vfmaq_f32(f[1], d1, vcvtq_f32_s32(is1)), m1, vcvtq_f32_s32(ms1));
}

/* Units decoded once per group and column, used for every token; each
 * token's 8 running sums live in Y (bias first). */
static void ap_rows_q4_K(const kern_gemm_job *j, int64_t r0, int64_t r1) {
    const int64_t nb = j->n_in / QK_K;
    for (int64_t g = r0 / AP_ROWS; g < r1 / AP_ROWS; g++) {
        const uint8_t *grp = j->w + (size_t)g * AP_ROWS * j->w_row;
        const int64_t row0 = g * AP_ROWS;
        for (int t = 0; t < j->T; t++) {
            float *out = j->Y + (size_t)t * (size_t)j->ldy + row0;
            for (int r = 0; r < AP_ROWS; r++) out[r] = j->bias ? j->bias[row0 + r] : 0.0f;
        }
        for (int64_t b = 0; b < nb; b++) {
            const uint8_t *u = grp + (size_t)b * AP_ROWS * sizeof(block_q4_K);
            int32x4_t sc[8][2], mn[8][2];
            ap_q4_K_scales(u, sc, mn);
            for (int t = 0; t < j->T; t++) {
                const block_q8_K *y = (const block_q8_K *)(j->act + (size_t)t * j->act_row) + b;
                float *out = j->Y + (size_t)t * (size_t)j->ldy + row0;
                float32x4_t f[2] = {vld1q_f32(out), vld1q_f32(out + 4)};
                ap_q4_K_unit(u, y, sc, mn, f);
                vst1q_f32(out, f[0]);
                vst1q_f32(out + 4, f[1]);
            }
        }
    }
}

/* The portable entries' activations (Q8_0, Q8_K) stay; the rows are SDOT's.
 * Packing is turned on here for decode by analogy with the AVX2 measurements
 * (8 rows per vector: 2.1-2.2x the row dots of a decode matvec) and
 * llama.cpp's ARM repacking; no ARM timings exist yet (no ARM hardware). */
static void ap_install_packed(kern_ops *o) {
    o->packed[QT_Q4_0].rows = ap_rows_q4_0;
    o->packed_pays[QT_Q4_0] = true;
    o->packed[QT_Q4_K].rows = ap_rows_q4_K;
    o->packed_pays[QT_Q4_K] = true;
    /* prompts keep the SDOT/SMMLA tiles (rows unpacked per tile): unmeasured
     * here, so prompts run exactly as before packing */
    o->packed_tiles[QT_Q4_0] = o->packed_tiles[QT_Q4_K] = true;
}

#endif
