/*
 * arm_tiles: tiled matmul for prompt batches, written once and compiled
 * twice: arm_i8mm.c defines AT_SMMLA 1 (SMMLA, vmmlaq_s32: a 2x8 by 8x2 int8
 * product into a 2x2 int32 tile per instruction, ARMv8.6 i8mm), arm_dotprod.c
 * AT_SMMLA 0 (SDOT on the same panels, for CPUs with dotprod but no i8mm).
 * Types: the symmetric 32-element Q4_0, Q5_0, Q8_0 times Q8_0 activations,
 * and Q4_K, Q5_K, Q6_K times Q8_K. Defines static functions only and
 * at_install_gemm(), which writes the gemm entries of a kern_ops table.
 *
 * For each group of GR = 4 weight rows, a k-chunk of the rows is unpacked
 * once into a panel of int8 levels, laid out as SMMLA's first operand (per
 * block and 8-element step: 8 levels of row 2p, then 8 of row 2p + 1), with
 * the weight scales as {d_a, d_a, d_b, d_b} vectors (K-quants: sub-block
 * scales as int32 vectors of that shape, mins as int16); then every pair of
 * tokens (GC = 2) is multiplied against it. SMMLA takes the two tokens'
 * 8-element steps side by side; SDOT takes one token's step in both halves,
 * giving {a, a, b, b} partial sums per token. Block sums are the exact
 * integers of the scalar dots; only the float accumulation order differs.
 * Activations are packed per token as Q8_0 or Q8_K by the level's quantizers
 * (the reference bytes).
 */
#ifndef PL_ARM_TILES_H
#define PL_ARM_TILES_H

#include "arm_util.h"

#define AT_GR 4     /* weight rows per tile (two row pairs) */
#define AT_GC 2     /* tokens per tile */
#define AT_KC 2048  /* elements per panel chunk */
/* Fewest tokens for the tiles: a pair of tokens already halves the weight
 * unpacking and doubles the work per loaded vector. (Not measured: no ARM
 * hardware was at hand; qemu checks results, not speed.) */
#define AT_MIN_T 2

typedef struct at_panel {
    int8_t q[AT_KC / 32][AT_GR / 2][4][16]; /* block, row pair, 8-element step */
    float d[AT_KC / 32][AT_GR / 2][4];      /* {d_a, d_a, d_b, d_b} per block and pair */
} at_panel;

/* Writes the 32 levels l0 (elements 0..15), l1 (16..31) of one block of row
 * r (0..GR-1) into the panel, and its scale. */
static inline void at_put(at_panel *p, int b, int r, int8x16_t l0, int8x16_t l1, float d) {
    int8_t *q = p->q[b][r / 2][0];
    const int off = 8 * (r & 1);
    vst1_s8(q + off, vget_low_s8(l0));
    vst1_s8(q + 16 + off, vget_high_s8(l0));
    vst1_s8(q + 32 + off, vget_low_s8(l1));
    vst1_s8(q + 48 + off, vget_high_s8(l1));
    float *dv = p->d[b][r / 2];
    dv[2 * (r & 1)] = dv[2 * (r & 1) + 1] = d;
}

/* Unpacks blocks [b0, b0 + nb) of one weight row into panel row r. */
typedef void (*at_unpack_fn)(const uint8_t *row, int64_t b0, int nb, at_panel *p, int r);

static void at_unpack_q4_0(const uint8_t *row, int64_t b0, int nb, at_panel *p, int r) {
    const block_q4_0 *x = (const block_q4_0 *)row + b0;
    const int8x16_t k8 = vdupq_n_s8(8);
    for (int b = 0; b < nb; b++) {
        const uint8x16_t q = vld1q_u8(x[b].qs);
        at_put(p, b, r, vsubq_s8(an_s8(an_lo4(q)), k8), vsubq_s8(an_s8(an_hi4(q)), k8), an_h2f(x[b].d));
    }
}

static void at_unpack_q5_0(const uint8_t *row, int64_t b0, int nb, at_panel *p, int r) {
    const block_q5_0 *x = (const block_q5_0 *)row + b0;
    const int8x16_t k16 = vdupq_n_s8(16);
    for (int b = 0; b < nb; b++) {
        const uint8x16_t q = vld1q_u8(x[b].qs);
        uint8x16_t h0, h1;
        an_q5_high(x[b].qh, &h0, &h1);
        at_put(p, b, r, vsubq_s8(an_s8(vorrq_u8(an_lo4(q), h0)), k16), vsubq_s8(an_s8(vorrq_u8(an_hi4(q), h1)), k16),
               an_h2f(x[b].d));
    }
}

static void at_unpack_q8_0(const uint8_t *row, int64_t b0, int nb, at_panel *p, int r) {
    const block_q8_0 *x = (const block_q8_0 *)row + b0;
    for (int b = 0; b < nb; b++) at_put(p, b, r, vld1q_s8(x[b].qs), vld1q_s8(x[b].qs + 16), an_h2f(x[b].d));
}

/* 16 activations -> s[0] = their first 8 in both halves, s[1] = the last 8. */
static inline void at_dup_steps(const int8_t *y, int8x16_t s[2]) {
    const int64x2_t v = vreinterpretq_s64_s8(vld1q_s8(y));
    s[0] = vreinterpretq_s8_s64(vdupq_laneq_s64(v, 0));
    s[1] = vreinterpretq_s8_s64(vdupq_laneq_s64(v, 1));
}

/* SDOT sums of one row pair, {a, a, b, b} for token 0 and for token 1 ->
 * the SMMLA tile order {a t0, a t1, b t0, b t1}. */
static inline float32x4_t at_tile(float32x4_t t0, float32x4_t t1) {
    const float32x4_t p = vpaddq_f32(t0, t1); /* {a t0, b t0, a t1, b t1} */
    return vcombine_f32(vget_low_f32(vuzp1q_f32(p, p)), vget_low_f32(vuzp2q_f32(p, p)));
}

/* Adds a 2x2 tile (lanes: row a token 0, row a token 1, row b token 0, row b
 * token 1) into Y for the valid rows and tokens; the first k-chunk starts
 * from the bias (or 0) instead of Y. */
static inline void at_store(const kern_gemm_job *j, float32x4_t acc, int64_t r, int nr, int t, int nt, int first) {
    float v[4];
    vst1q_f32(v, acc);
    for (int i = 0; i < nr; i++)
        for (int c = 0; c < nt; c++) {
            float *y = j->Y + (size_t)(t + c) * (size_t)j->ldy + r + i;
            const float base = first ? (j->bias ? j->bias[r + i] : 0.0f) : *y;
            *y = base + v[2 * i + c];
        }
}

static void at_rows(const kern_gemm_job *j, int64_t r0, int64_t r1, at_unpack_fn unpack) {
    at_panel panel;
    const int64_t nblocks = j->n_in / 32;
    for (int64_t r = r0; r < r1; r += AT_GR) {
        const int nr = r1 - r < AT_GR ? (int)(r1 - r) : AT_GR;
        for (int64_t kb = 0; kb < nblocks; kb += AT_KC / 32) {
            const int nb = nblocks - kb < AT_KC / 32 ? (int)(nblocks - kb) : AT_KC / 32;
            /* rows past r1 repeat the last one; their results are not stored */
            for (int i = 0; i < AT_GR; i++) unpack(j->w + (size_t)(r + (i < nr ? i : nr - 1)) * j->w_row, kb, nb, &panel, i);
            for (int t = 0; t < j->T; t += AT_GC) {
                const int nt = j->T - t < AT_GC ? j->T - t : AT_GC;
                const block_q8_0 *y0 = (const block_q8_0 *)(j->act + (size_t)t * j->act_row) + kb;
                const block_q8_0 *y1 = (const block_q8_0 *)(j->act + (size_t)(t + nt - 1) * j->act_row) + kb;
#if AT_SMMLA
                float32x4_t acc0 = vdupq_n_f32(0), acc1 = acc0;
                for (int b = 0; b < nb; b++) {
                    const int64x2_t a0 = vreinterpretq_s64_s8(vld1q_s8(y0[b].qs));
                    const int64x2_t a1 = vreinterpretq_s64_s8(vld1q_s8(y0[b].qs + 16));
                    const int64x2_t c0 = vreinterpretq_s64_s8(vld1q_s8(y1[b].qs));
                    const int64x2_t c1 = vreinterpretq_s64_s8(vld1q_s8(y1[b].qs + 16));
                    /* 8-element steps of the two tokens side by side */
                    const int8x16_t s0 = vreinterpretq_s8_s64(vzip1q_s64(a0, c0));
                    const int8x16_t s1 = vreinterpretq_s8_s64(vzip2q_s64(a0, c0));
                    const int8x16_t s2 = vreinterpretq_s8_s64(vzip1q_s64(a1, c1));
                    const int8x16_t s3 = vreinterpretq_s8_s64(vzip2q_s64(a1, c1));
                    const float e0 = an_h2f(y0[b].d), e1 = an_h2f(y1[b].d);
                    const float32x4_t dy = {e0, e1, e0, e1};
                    int8_t(*w0)[16] = panel.q[b][0], (*w1)[16] = panel.q[b][1];
                    int32x4_t i0 = vmmlaq_s32(vdupq_n_s32(0), vld1q_s8(w0[0]), s0);
                    int32x4_t i1 = vmmlaq_s32(vdupq_n_s32(0), vld1q_s8(w1[0]), s0);
                    i0 = vmmlaq_s32(i0, vld1q_s8(w0[1]), s1);
                    i1 = vmmlaq_s32(i1, vld1q_s8(w1[1]), s1);
                    i0 = vmmlaq_s32(i0, vld1q_s8(w0[2]), s2);
                    i1 = vmmlaq_s32(i1, vld1q_s8(w1[2]), s2);
                    i0 = vmmlaq_s32(i0, vld1q_s8(w0[3]), s3);
                    i1 = vmmlaq_s32(i1, vld1q_s8(w1[3]), s3);
                    acc0 = vfmaq_f32(acc0, vcvtq_f32_s32(i0), vmulq_f32(vld1q_f32(panel.d[b][0]), dy));
                    acc1 = vfmaq_f32(acc1, vcvtq_f32_s32(i1), vmulq_f32(vld1q_f32(panel.d[b][1]), dy));
                }
#else
                /* acc[pair][token]: lanes {a, a, b, b} partial sums */
                float32x4_t acc[2][2];
                for (int k = 0; k < 4; k++) acc[k / 2][k % 2] = vdupq_n_f32(0);
                for (int b = 0; b < nb; b++) {
                    int8x16_t s[2][4];
                    at_dup_steps(y0[b].qs, s[0]);
                    at_dup_steps(y0[b].qs + 16, s[0] + 2);
                    at_dup_steps(y1[b].qs, s[1]);
                    at_dup_steps(y1[b].qs + 16, s[1] + 2);
                    const float e[2] = {an_h2f(y0[b].d), an_h2f(y1[b].d)};
                    for (int pr = 0; pr < 2; pr++) {
                        int8_t(*w)[16] = panel.q[b][pr];
                        const float32x4_t d = vld1q_f32(panel.d[b][pr]);
                        for (int c = 0; c < 2; c++) {
                            int32x4_t i = vdotq_s32(vdupq_n_s32(0), vld1q_s8(w[0]), s[c][0]);
                            i = vdotq_s32(i, vld1q_s8(w[1]), s[c][1]);
                            i = vdotq_s32(i, vld1q_s8(w[2]), s[c][2]);
                            i = vdotq_s32(i, vld1q_s8(w[3]), s[c][3]);
                            acc[pr][c] = vfmaq_f32(acc[pr][c], vcvtq_f32_s32(i), vmulq_n_f32(d, e[c]));
                        }
                    }
                }
                const float32x4_t acc0 = at_tile(acc[0][0], acc[0][1]), acc1 = at_tile(acc[1][0], acc[1][1]);
#endif
                at_store(j, acc0, r, nr < 2 ? nr : 2, t, nt, kb == 0);
                if (nr > 2) at_store(j, acc1, r + 2, nr - 2, t, nt, kb == 0);
            }
        }
    }
}

static void at_rows_q4_0(const kern_gemm_job *j, int64_t r0, int64_t r1) { at_rows(j, r0, r1, at_unpack_q4_0); }
static void at_rows_q5_0(const kern_gemm_job *j, int64_t r0, int64_t r1) { at_rows(j, r0, r1, at_unpack_q5_0); }
static void at_rows_q8_0(const kern_gemm_job *j, int64_t r0, int64_t r1) { at_rows(j, r0, r1, at_unpack_q8_0); }

static size_t at_act_size(int64_t n_in) { return (size_t)quant_row_size(QT_Q8_0, n_in); }

static void at_act_pack(const float *x, void *dst, int64_t n_in) { kern_ops_get()->from_float[QT_Q8_0](x, dst, n_in); }

/* ------------------------------------------------------------- K-quants */

/* Q4_K, Q5_K, Q6_K x Q8_K: the same tiles over 256-element super-blocks.
 * A row's levels go into the panel in element order (Q4_K/Q5_K 0..31, Q6_K
 * -32..31), its sub-block scales as int32 {s_a, s_a, s_b, s_b} vectors that
 * multiply the SMMLA tiles of the sub-block, and Q4_K/Q5_K's mins as int16
 * for the min term through the activations' 16-element sums. */
#define ATK_KC 2048 /* elements per panel chunk */

typedef struct atk_panel {
    int8_t q[ATK_KC / QK_K][AT_GR / 2][QK_K / 8][16]; /* super-block, row pair, 8-element step */
    int32_t sc[ATK_KC / QK_K][AT_GR / 2][16][4];      /* sub-block scale vectors */
    int16_t mn[ATK_KC / QK_K][AT_GR][8];              /* mins per row (none for Q6_K) */
    float d[ATK_KC / QK_K][AT_GR / 2][4];             /* {d_a, d_a, d_b, d_b} */
    float dmin[ATK_KC / QK_K][AT_GR / 2][4];
} atk_panel;

/* Row r's 256 levels of super-block b in element order -> panel steps. */
static void atk_put(atk_panel *p, int b, int r, const int8_t *lv, const int *scales, int nsub, float d, float dmin) {
    const int off = 8 * (r & 1);
    for (int s = 0; s < QK_K / 8; s++) vst1_s8(&p->q[b][r / 2][s][off], vld1_s8(lv + 8 * s));
    for (int j = 0; j < nsub; j++) p->sc[b][r / 2][j][2 * (r & 1)] = p->sc[b][r / 2][j][2 * (r & 1) + 1] = scales[j];
    p->d[b][r / 2][2 * (r & 1)] = p->d[b][r / 2][2 * (r & 1) + 1] = d;
    p->dmin[b][r / 2][2 * (r & 1)] = p->dmin[b][r / 2][2 * (r & 1) + 1] = dmin;
}

typedef void (*atk_unpack_fn)(const uint8_t *row, int64_t b0, int nb, atk_panel *p, int r);

/* Q4_K and Q5_K (qh == NULL for Q4_K): sub-block 2i is the low nibbles of
 * qs[32i ..], 2i + 1 the high ones; bit j of qh[l] is bit 4 of element l of
 * sub-block j. */
static void atk_unpack_k4(const uint8_t *scales, const uint8_t *qs, const uint8_t *qh, pl_fp16 d, pl_fp16 dmin,
                          atk_panel *p, int b, int r) {
    int8_t lv[QK_K];
    int sc[8];
    for (int j = 0; j < 8; j++) {
        uint8_t s, m;
        quant_k4_get_scale_min(j, scales, &s, &m);
        sc[j] = s;
        p->mn[b][r][j] = m;
    }
    uint8x16_t h0 = vdupq_n_u8(0), h1 = h0;
    if (qh) {
        h0 = vld1q_u8(qh);
        h1 = vld1q_u8(qh + 16);
    }
    for (int i = 0; i < 4; i++) {
        const an_k4_levels l = an_k4_levels_at(qs, qh, i, &h0, &h1);
        vst1q_s8(lv + 64 * i, an_s8(l.lo0));
        vst1q_s8(lv + 64 * i + 16, an_s8(l.lo1));
        vst1q_s8(lv + 64 * i + 32, an_s8(l.hi0));
        vst1q_s8(lv + 64 * i + 48, an_s8(l.hi1));
    }
    atk_put(p, b, r, lv, sc, 8, an_h2f(d), an_h2f(dmin));
}

static void atk_unpack_q4_K(const uint8_t *row, int64_t b0, int nb, atk_panel *p, int r) {
    const block_q4_K *x = (const block_q4_K *)row + b0;
    for (int b = 0; b < nb; b++) atk_unpack_k4(x[b].scales, x[b].qs, NULL, x[b].d, x[b].dmin, p, b, r);
}

static void atk_unpack_q5_K(const uint8_t *row, int64_t b0, int nb, atk_panel *p, int r) {
    const block_q5_K *x = (const block_q5_K *)row + b0;
    for (int b = 0; b < nb; b++) atk_unpack_k4(x[b].scales, x[b].qs, x[b].qh, x[b].d, x[b].dmin, p, b, r);
}

/* Q6_K: per half of 128, group k of 32 takes the low (k < 2) or high nibbles
 * of ql[32 * (k & 1) ..] and bits 2k, 2k+1 of qh; levels are stored + 32. */
static void atk_unpack_q6_K(const uint8_t *row, int64_t b0, int nb, atk_panel *p, int r) {
    const block_q6_K *x = (const block_q6_K *)row + b0;
    const uint8x16_t m4 = vdupq_n_u8(0xF), m3 = vdupq_n_u8(3);
    const int8x16_t k32 = vdupq_n_s8(32);
    for (int b = 0; b < nb; b++) {
        int8_t lv[QK_K];
        int sc[16];
        for (int j = 0; j < 16; j++) sc[j] = x[b].scales[j];
        for (int half = 0; half < 2; half++) {
            const uint8_t *ql = x[b].ql + 64 * half, *qh = x[b].qh + 32 * half;
            for (int e = 0; e < 2; e++) {
                const uint8x16_t a = vld1q_u8(ql + 16 * e), c = vld1q_u8(qh + 16 * e);
                const uint8x16_t bb = vld1q_u8(ql + 32 + 16 * e);
                uint8x16_t g[4];
                g[0] = vorrq_u8(vandq_u8(a, m4), vshlq_n_u8(vandq_u8(c, m3), 4));
                g[1] = vorrq_u8(vandq_u8(bb, m4), vshlq_n_u8(vandq_u8(vshrq_n_u8(c, 2), m3), 4));
                g[2] = vorrq_u8(vshrq_n_u8(a, 4), vshlq_n_u8(vandq_u8(vshrq_n_u8(c, 4), m3), 4));
                g[3] = vorrq_u8(vshrq_n_u8(bb, 4), vshlq_n_u8(vshrq_n_u8(c, 6), 4));
                for (int k = 0; k < 4; k++) vst1q_s8(lv + 128 * half + 32 * k + 16 * e, vsubq_s8(an_s8(g[k]), k32));
            }
        }
        atk_put(p, b, r, lv, sc, 16, an_h2f(x[b].d), 0.0f);
    }
}

/* sum_j mn[j] * (bsums[2j] + bsums[2j + 1]) for one row and one token. */
static inline int32_t atk_min_dot(const int16_t *mn, const int16_t *bsums) {
    const int16x8_t bs = vpaddq_s16(vld1q_s16(bsums), vld1q_s16(bsums + 8));
    const int16x8_t m = vld1q_s16(mn);
    return vaddvq_s32(vmlal_high_s16(vmull_s16(vget_low_s16(bs), vget_low_s16(m)), bs, m));
}

/* sub = 32 (Q4_K, Q5_K: with mins) or 16 (Q6_K) elements per sub-block. */
static void atk_rows(const kern_gemm_job *j, int64_t r0, int64_t r1, atk_unpack_fn unpack, int sub) {
    atk_panel panel;
    const int64_t nblocks = j->n_in / QK_K;
    const int chunks_per_sub = sub / 16;
    for (int64_t r = r0; r < r1; r += AT_GR) {
        const int nr = r1 - r < AT_GR ? (int)(r1 - r) : AT_GR;
        for (int64_t kb = 0; kb < nblocks; kb += ATK_KC / QK_K) {
            const int nb = nblocks - kb < ATK_KC / QK_K ? (int)(nblocks - kb) : ATK_KC / QK_K;
            for (int i = 0; i < AT_GR; i++) unpack(j->w + (size_t)(r + (i < nr ? i : nr - 1)) * j->w_row, kb, nb, &panel, i);
            for (int t = 0; t < j->T; t += AT_GC) {
                const int nt = j->T - t < AT_GC ? j->T - t : AT_GC;
                const block_q8_K *y0 = (const block_q8_K *)(j->act + (size_t)t * j->act_row) + kb;
                const block_q8_K *y1 = (const block_q8_K *)(j->act + (size_t)(t + nt - 1) * j->act_row) + kb;
#if AT_SMMLA
                float32x4_t acc[2] = {vdupq_n_f32(0), vdupq_n_f32(0)};
                for (int b = 0; b < nb; b++) {
                    int32x4_t isum[2] = {vdupq_n_s32(0), vdupq_n_s32(0)}, cur[2] = {isum[0], isum[0]};
                    for (int c = 0; c < QK_K / 16; c++) {
                        const int64x2_t a = vreinterpretq_s64_s8(vld1q_s8(y0[b].qs + 16 * c));
                        const int64x2_t e = vreinterpretq_s64_s8(vld1q_s8(y1[b].qs + 16 * c));
                        const int8x16_t s0 = vreinterpretq_s8_s64(vzip1q_s64(a, e));
                        const int8x16_t s1 = vreinterpretq_s8_s64(vzip2q_s64(a, e));
                        for (int pr = 0; pr < 2; pr++) {
                            cur[pr] = vmmlaq_s32(cur[pr], vld1q_s8(panel.q[b][pr][2 * c]), s0);
                            cur[pr] = vmmlaq_s32(cur[pr], vld1q_s8(panel.q[b][pr][2 * c + 1]), s1);
                        }
                        if ((c + 1) % chunks_per_sub == 0) {
                            const int js = c / chunks_per_sub;
                            for (int pr = 0; pr < 2; pr++) {
                                isum[pr] = vmlaq_s32(isum[pr], cur[pr], vld1q_s32(panel.sc[b][pr][js]));
                                cur[pr] = vdupq_n_s32(0);
                            }
                        }
                    }
                    const float32x4_t dy = {y0[b].d, y1[b].d, y0[b].d, y1[b].d};
                    for (int pr = 0; pr < 2; pr++) {
                        acc[pr] = vfmaq_f32(acc[pr], vcvtq_f32_s32(isum[pr]), vmulq_f32(vld1q_f32(panel.d[b][pr]), dy));
                        if (sub == 32) {
                            const int16_t *ma = panel.mn[b][2 * pr], *mb = panel.mn[b][2 * pr + 1];
                            const int32x4_t msum = {atk_min_dot(ma, y0[b].bsums), atk_min_dot(ma, y1[b].bsums),
                                                    atk_min_dot(mb, y0[b].bsums), atk_min_dot(mb, y1[b].bsums)};
                            acc[pr] = vfmsq_f32(acc[pr], vcvtq_f32_s32(msum), vmulq_f32(vld1q_f32(panel.dmin[b][pr]), dy));
                        }
                    }
                }
                const float32x4_t acc0 = acc[0], acc1 = acc[1];
#else
                /* per pair and token: lanes {a, a, b, b} partial sums */
                float32x4_t acc[2][2];
                for (int k = 0; k < 4; k++) acc[k / 2][k % 2] = vdupq_n_f32(0);
                const block_q8_K *ys[2] = {y0, y1};
                for (int b = 0; b < nb; b++) {
                    int32x4_t isum[2][2], cur[2][2];
                    for (int k = 0; k < 4; k++) isum[k / 2][k % 2] = cur[k / 2][k % 2] = vdupq_n_s32(0);
                    for (int c = 0; c < QK_K / 16; c++) {
                        int8x16_t s[2][2];
                        at_dup_steps(y0[b].qs + 16 * c, s[0]);
                        at_dup_steps(y1[b].qs + 16 * c, s[1]);
                        for (int pr = 0; pr < 2; pr++) {
                            const int8x16_t w0 = vld1q_s8(panel.q[b][pr][2 * c]), w1 = vld1q_s8(panel.q[b][pr][2 * c + 1]);
                            for (int tk = 0; tk < 2; tk++)
                                cur[pr][tk] = vdotq_s32(vdotq_s32(cur[pr][tk], w0, s[tk][0]), w1, s[tk][1]);
                        }
                        if ((c + 1) % chunks_per_sub == 0) {
                            const int js = c / chunks_per_sub;
                            for (int pr = 0; pr < 2; pr++) {
                                const int32x4_t sc = vld1q_s32(panel.sc[b][pr][js]);
                                for (int tk = 0; tk < 2; tk++) {
                                    isum[pr][tk] = vmlaq_s32(isum[pr][tk], cur[pr][tk], sc);
                                    cur[pr][tk] = vdupq_n_s32(0);
                                }
                            }
                        }
                    }
                    for (int pr = 0; pr < 2; pr++)
                        for (int tk = 0; tk < 2; tk++) {
                            const float e = ys[tk][b].d;
                            acc[pr][tk] = vfmaq_f32(acc[pr][tk], vcvtq_f32_s32(isum[pr][tk]),
                                                    vmulq_n_f32(vld1q_f32(panel.d[b][pr]), e));
                            if (sub == 32) { /* the min term in one lane of each row's pair */
                                const int32x4_t msum = {atk_min_dot(panel.mn[b][2 * pr], ys[tk][b].bsums), 0,
                                                        atk_min_dot(panel.mn[b][2 * pr + 1], ys[tk][b].bsums), 0};
                                acc[pr][tk] = vfmsq_f32(acc[pr][tk], vcvtq_f32_s32(msum),
                                                        vmulq_n_f32(vld1q_f32(panel.dmin[b][pr]), e));
                            }
                        }
                }
                const float32x4_t acc0 = at_tile(acc[0][0], acc[0][1]), acc1 = at_tile(acc[1][0], acc[1][1]);
#endif
                at_store(j, acc0, r, nr < 2 ? nr : 2, t, nt, kb == 0);
                if (nr > 2) at_store(j, acc1, r + 2, nr - 2, t, nt, kb == 0);
            }
        }
    }
}

static void atk_rows_q4_K(const kern_gemm_job *j, int64_t r0, int64_t r1) { atk_rows(j, r0, r1, atk_unpack_q4_K, 32); }
static void atk_rows_q5_K(const kern_gemm_job *j, int64_t r0, int64_t r1) { atk_rows(j, r0, r1, atk_unpack_q5_K, 32); }
static void atk_rows_q6_K(const kern_gemm_job *j, int64_t r0, int64_t r1) { atk_rows(j, r0, r1, atk_unpack_q6_K, 16); }

static size_t atk_act_size(int64_t n_in) { return (size_t)quant_row_size(QT_Q8_K, n_in); }

static void atk_act_pack(const float *x, void *dst, int64_t n_in) { kern_ops_get()->from_float[QT_Q8_K](x, dst, n_in); }

static void at_install_gemm(kern_ops *o) {
    static const struct {
        quant_type type;
        void (*rows)(const kern_gemm_job *j, int64_t r0, int64_t r1);
        bool k;
    } k_gemms[] = {{QT_Q4_0, at_rows_q4_0, false}, {QT_Q5_0, at_rows_q5_0, false}, {QT_Q8_0, at_rows_q8_0, false},
                   {QT_Q4_K, atk_rows_q4_K, true},  {QT_Q5_K, atk_rows_q5_K, true},  {QT_Q6_K, atk_rows_q6_K, true}};
    for (size_t i = 0; i < sizeof k_gemms / sizeof k_gemms[0]; i++)
        o->gemm[k_gemms[i].type] = (kern_gemm){.act_size = k_gemms[i].k ? atk_act_size : at_act_size,
                                               .act_pack = k_gemms[i].k ? atk_act_pack : at_act_pack,
                                               .rows = k_gemms[i].rows, .row_tile = AT_GR, .min_T = AT_MIN_T};
}


#endif
