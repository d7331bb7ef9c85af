/*
 * arm_i8mm: tiled matmul for prompt batches with SMMLA (vmmlaq_s32, ARMv8.6
 * i8mm: a 2x8 by 8x2 int8 matrix product into a 2x2 int32 tile in one
 * instruction), for the symmetric 32-element types Q4_0, Q5_0 and Q8_0 times
 * Q8_0 activations and for Q4_K, Q5_K and Q6_K times Q8_K. Installed by the
 * dotprod level when hwcaps report i8mm; only this file is built with +i8mm
 * (Makefile per-file flag; for GCC the pragma below does the same where the
 * flag is absent), so nothing else in the binary needs it.
 *
 * For each group of GR = 4 weight rows, a k-chunk of the rows is unpacked
 * once into a panel of int8 levels, laid out as SMMLA's first operand (per
 * block and 8-element step: 8 levels of row 2p, then 8 of row 2p + 1), with
 * the weight scales as {d_a, d_a, d_b, d_b} vectors; then every pair of
 * tokens (GC = 2) is multiplied against it, each activation vector serving
 * both row pairs. Block sums are the exact integers of the scalar dots; only
 * the float accumulation order differs. Activations are packed per token as
 * Q8_0 or Q8_K by the level's quantizers (the reference bytes).
 */
#if defined(__aarch64__)

#if !defined(__ARM_FEATURE_MATMUL_INT8) && defined(__GNUC__) && !defined(__clang__)
#pragma GCC target("arch=armv8.2-a+dotprod+i8mm")
#endif

#include "arm_util.h"

#define I8_GR 4     /* weight rows per tile (two SMMLA row pairs) */
#define I8_GC 2     /* tokens per tile */
#define I8_KC 2048  /* elements per panel chunk */
/* Fewest tokens for the tiles: a pair of tokens already halves the weight
 * unpacking and doubles the work per loaded vector. (Not measured: no
 * hardware with i8mm was at hand; qemu checks results, not speed.) */
#define I8_MIN_T 2

typedef struct i8_panel {
    int8_t q[I8_KC / 32][I8_GR / 2][4][16]; /* block, row pair, 8-element step */
    float d[I8_KC / 32][I8_GR / 2][4];      /* {d_a, d_a, d_b, d_b} per block and pair */
} i8_panel;

/* Writes the 32 levels l0 (elements 0..15), l1 (16..31) of one block of row
 * r (0..GR-1) into the panel, and its scale. */
static inline void i8_put(i8_panel *p, int b, int r, int8x16_t l0, int8x16_t l1, float d) {
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
typedef void (*i8_unpack_fn)(const uint8_t *row, int64_t b0, int nb, i8_panel *p, int r);

static void i8_unpack_q4_0(const uint8_t *row, int64_t b0, int nb, i8_panel *p, int r) {
    const block_q4_0 *x = (const block_q4_0 *)row + b0;
    const int8x16_t k8 = vdupq_n_s8(8);
    for (int b = 0; b < nb; b++) {
        const uint8x16_t q = vld1q_u8(x[b].qs);
        i8_put(p, b, r, vsubq_s8(an_s8(an_lo4(q)), k8), vsubq_s8(an_s8(an_hi4(q)), k8), an_h2f(x[b].d));
    }
}

static void i8_unpack_q5_0(const uint8_t *row, int64_t b0, int nb, i8_panel *p, int r) {
    const block_q5_0 *x = (const block_q5_0 *)row + b0;
    const int8x16_t k16 = vdupq_n_s8(16);
    for (int b = 0; b < nb; b++) {
        const uint8x16_t q = vld1q_u8(x[b].qs);
        uint8x16_t h0, h1;
        an_q5_high(x[b].qh, &h0, &h1);
        i8_put(p, b, r, vsubq_s8(an_s8(vorrq_u8(an_lo4(q), h0)), k16), vsubq_s8(an_s8(vorrq_u8(an_hi4(q), h1)), k16),
               an_h2f(x[b].d));
    }
}

static void i8_unpack_q8_0(const uint8_t *row, int64_t b0, int nb, i8_panel *p, int r) {
    const block_q8_0 *x = (const block_q8_0 *)row + b0;
    for (int b = 0; b < nb; b++) i8_put(p, b, r, vld1q_s8(x[b].qs), vld1q_s8(x[b].qs + 16), an_h2f(x[b].d));
}

/* Adds a 2x2 tile (lanes: row a token 0, row a token 1, row b token 0, row b
 * token 1) into Y for the valid rows and tokens; the first k-chunk starts
 * from the bias (or 0) instead of Y. */
static inline void i8_store(const kern_gemm_job *j, float32x4_t acc, int64_t r, int nr, int t, int nt, int first) {
    float v[4];
    vst1q_f32(v, acc);
    for (int i = 0; i < nr; i++)
        for (int c = 0; c < nt; c++) {
            float *y = j->Y + (size_t)(t + c) * (size_t)j->ldy + r + i;
            const float base = first ? (j->bias ? j->bias[r + i] : 0.0f) : *y;
            *y = base + v[2 * i + c];
        }
}

static void i8_rows(const kern_gemm_job *j, int64_t r0, int64_t r1, i8_unpack_fn unpack) {
    i8_panel panel;
    const int64_t nblocks = j->n_in / 32;
    for (int64_t r = r0; r < r1; r += I8_GR) {
        const int nr = r1 - r < I8_GR ? (int)(r1 - r) : I8_GR;
        for (int64_t kb = 0; kb < nblocks; kb += I8_KC / 32) {
            const int nb = nblocks - kb < I8_KC / 32 ? (int)(nblocks - kb) : I8_KC / 32;
            /* rows past r1 repeat the last one; their results are not stored */
            for (int i = 0; i < I8_GR; i++) unpack(j->w + (size_t)(r + (i < nr ? i : nr - 1)) * j->w_row, kb, nb, &panel, i);
            for (int t = 0; t < j->T; t += I8_GC) {
                const int nt = j->T - t < I8_GC ? j->T - t : I8_GC;
                const block_q8_0 *y0 = (const block_q8_0 *)(j->act + (size_t)t * j->act_row) + kb;
                const block_q8_0 *y1 = (const block_q8_0 *)(j->act + (size_t)(t + nt - 1) * j->act_row) + kb;
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
                i8_store(j, acc0, r, nr < 2 ? nr : 2, t, nt, kb == 0);
                if (nr > 2) i8_store(j, acc1, r + 2, nr - 2, t, nt, kb == 0);
            }
        }
    }
}

static void i8_rows_q4_0(const kern_gemm_job *j, int64_t r0, int64_t r1) { i8_rows(j, r0, r1, i8_unpack_q4_0); }
static void i8_rows_q5_0(const kern_gemm_job *j, int64_t r0, int64_t r1) { i8_rows(j, r0, r1, i8_unpack_q5_0); }
static void i8_rows_q8_0(const kern_gemm_job *j, int64_t r0, int64_t r1) { i8_rows(j, r0, r1, i8_unpack_q8_0); }

static size_t i8_act_size(int64_t n_in) { return (size_t)quant_row_size(QT_Q8_0, n_in); }

static void i8_act_pack(const float *x, void *dst, int64_t n_in) { kern_ops_get()->from_float[QT_Q8_0](x, dst, n_in); }

/* ------------------------------------------------------------- K-quants */

/* Q4_K, Q5_K, Q6_K x Q8_K: the same tiles over 256-element super-blocks.
 * A row's levels go into the panel in element order (Q4_K/Q5_K 0..31, Q6_K
 * -32..31), its sub-block scales as int32 {s_a, s_a, s_b, s_b} vectors that
 * multiply the SMMLA tiles of the sub-block, and Q4_K/Q5_K's mins as int16
 * for the min term through the activations' 16-element sums. */
#define I8K_KC 2048 /* elements per panel chunk */

typedef struct i8k_panel {
    int8_t q[I8K_KC / QK_K][I8_GR / 2][QK_K / 8][16]; /* super-block, row pair, 8-element step */
    int32_t sc[I8K_KC / QK_K][I8_GR / 2][16][4];      /* sub-block scale vectors */
    int16_t mn[I8K_KC / QK_K][I8_GR][8];              /* mins per row (none for Q6_K) */
    float d[I8K_KC / QK_K][I8_GR / 2][4];             /* {d_a, d_a, d_b, d_b} */
    float dmin[I8K_KC / QK_K][I8_GR / 2][4];
} i8k_panel;

/* Row r's 256 levels of super-block b in element order -> panel steps. */
static void i8k_put(i8k_panel *p, int b, int r, const int8_t *lv, const int *scales, int nsub, float d, float dmin) {
    const int off = 8 * (r & 1);
    for (int s = 0; s < QK_K / 8; s++) vst1_s8(&p->q[b][r / 2][s][off], vld1_s8(lv + 8 * s));
    for (int j = 0; j < nsub; j++) p->sc[b][r / 2][j][2 * (r & 1)] = p->sc[b][r / 2][j][2 * (r & 1) + 1] = scales[j];
    p->d[b][r / 2][2 * (r & 1)] = p->d[b][r / 2][2 * (r & 1) + 1] = d;
    p->dmin[b][r / 2][2 * (r & 1)] = p->dmin[b][r / 2][2 * (r & 1) + 1] = dmin;
}

typedef void (*i8k_unpack_fn)(const uint8_t *row, int64_t b0, int nb, i8k_panel *p, int r);

/* Q4_K and Q5_K (qh == NULL for Q4_K): sub-block 2i is the low nibbles of
 * qs[32i ..], 2i + 1 the high ones; bit j of qh[l] is bit 4 of element l of
 * sub-block j. */
static void i8k_unpack_k4(const uint8_t *scales, const uint8_t *qs, const uint8_t *qh, pl_fp16 d, pl_fp16 dmin,
                          i8k_panel *p, int b, int r) {
    int8_t lv[QK_K];
    int sc[8];
    for (int j = 0; j < 8; j++) {
        uint8_t s, m;
        quant_k4_get_scale_min(j, scales, &s, &m);
        sc[j] = s;
        p->mn[b][r][j] = m;
    }
    const uint8x16_t b1 = vdupq_n_u8(1), b2 = vdupq_n_u8(2);
    uint8x16_t h0 = vdupq_n_u8(0), h1 = h0;
    if (qh) {
        h0 = vld1q_u8(qh);
        h1 = vld1q_u8(qh + 16);
    }
    for (int i = 0; i < 4; i++) {
        const uint8x16_t q0 = vld1q_u8(qs + 32 * i), q1 = vld1q_u8(qs + 32 * i + 16);
        uint8x16_t lo0 = an_lo4(q0), lo1 = an_lo4(q1), hi0 = an_hi4(q0), hi1 = an_hi4(q1);
        if (qh) {
            lo0 = vorrq_u8(lo0, vshlq_n_u8(vandq_u8(h0, b1), 4));
            lo1 = vorrq_u8(lo1, vshlq_n_u8(vandq_u8(h1, b1), 4));
            hi0 = vorrq_u8(hi0, vshlq_n_u8(vandq_u8(h0, b2), 3));
            hi1 = vorrq_u8(hi1, vshlq_n_u8(vandq_u8(h1, b2), 3));
            h0 = vshrq_n_u8(h0, 2);
            h1 = vshrq_n_u8(h1, 2);
        }
        vst1q_s8(lv + 64 * i, an_s8(lo0));
        vst1q_s8(lv + 64 * i + 16, an_s8(lo1));
        vst1q_s8(lv + 64 * i + 32, an_s8(hi0));
        vst1q_s8(lv + 64 * i + 48, an_s8(hi1));
    }
    i8k_put(p, b, r, lv, sc, 8, an_h2f(d), an_h2f(dmin));
}

static void i8k_unpack_q4_K(const uint8_t *row, int64_t b0, int nb, i8k_panel *p, int r) {
    const block_q4_K *x = (const block_q4_K *)row + b0;
    for (int b = 0; b < nb; b++) i8k_unpack_k4(x[b].scales, x[b].qs, NULL, x[b].d, x[b].dmin, p, b, r);
}

static void i8k_unpack_q5_K(const uint8_t *row, int64_t b0, int nb, i8k_panel *p, int r) {
    const block_q5_K *x = (const block_q5_K *)row + b0;
    for (int b = 0; b < nb; b++) i8k_unpack_k4(x[b].scales, x[b].qs, x[b].qh, x[b].d, x[b].dmin, p, b, r);
}

/* Q6_K: per half of 128, group k of 32 takes the low (k < 2) or high nibbles
 * of ql[32 * (k & 1) ..] and bits 2k, 2k+1 of qh; levels are stored + 32. */
static void i8k_unpack_q6_K(const uint8_t *row, int64_t b0, int nb, i8k_panel *p, int r) {
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
        i8k_put(p, b, r, lv, sc, 16, an_h2f(x[b].d), 0.0f);
    }
}

/* sum_j mn[j] * (bsums[2j] + bsums[2j + 1]) for one row and one token. */
static inline int32_t i8k_min_dot(const int16_t *mn, const int16_t *bsums) {
    const int16x8_t bs = vpaddq_s16(vld1q_s16(bsums), vld1q_s16(bsums + 8));
    const int16x8_t m = vld1q_s16(mn);
    return vaddvq_s32(vmlal_high_s16(vmull_s16(vget_low_s16(bs), vget_low_s16(m)), bs, m));
}

/* sub = 32 (Q4_K, Q5_K: with mins) or 16 (Q6_K) elements per sub-block. */
static void i8k_rows(const kern_gemm_job *j, int64_t r0, int64_t r1, i8k_unpack_fn unpack, int sub) {
    i8k_panel panel;
    const int64_t nblocks = j->n_in / QK_K;
    const int chunks_per_sub = sub / 16;
    for (int64_t r = r0; r < r1; r += I8_GR) {
        const int nr = r1 - r < I8_GR ? (int)(r1 - r) : I8_GR;
        for (int64_t kb = 0; kb < nblocks; kb += I8K_KC / QK_K) {
            const int nb = nblocks - kb < I8K_KC / QK_K ? (int)(nblocks - kb) : I8K_KC / QK_K;
            for (int i = 0; i < I8_GR; i++) unpack(j->w + (size_t)(r + (i < nr ? i : nr - 1)) * j->w_row, kb, nb, &panel, i);
            for (int t = 0; t < j->T; t += I8_GC) {
                const int nt = j->T - t < I8_GC ? j->T - t : I8_GC;
                const block_q8_K *y0 = (const block_q8_K *)(j->act + (size_t)t * j->act_row) + kb;
                const block_q8_K *y1 = (const block_q8_K *)(j->act + (size_t)(t + nt - 1) * j->act_row) + kb;
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
                            const int32x4_t msum = {i8k_min_dot(ma, y0[b].bsums), i8k_min_dot(ma, y1[b].bsums),
                                                    i8k_min_dot(mb, y0[b].bsums), i8k_min_dot(mb, y1[b].bsums)};
                            acc[pr] = vfmsq_f32(acc[pr], vcvtq_f32_s32(msum), vmulq_f32(vld1q_f32(panel.dmin[b][pr]), dy));
                        }
                    }
                }
                i8_store(j, acc[0], r, nr < 2 ? nr : 2, t, nt, kb == 0);
                if (nr > 2) i8_store(j, acc[1], r + 2, nr - 2, t, nt, kb == 0);
            }
        }
    }
}

static void i8k_rows_q4_K(const kern_gemm_job *j, int64_t r0, int64_t r1) { i8k_rows(j, r0, r1, i8k_unpack_q4_K, 32); }
static void i8k_rows_q5_K(const kern_gemm_job *j, int64_t r0, int64_t r1) { i8k_rows(j, r0, r1, i8k_unpack_q5_K, 32); }
static void i8k_rows_q6_K(const kern_gemm_job *j, int64_t r0, int64_t r1) { i8k_rows(j, r0, r1, i8k_unpack_q6_K, 16); }

static size_t i8k_act_size(int64_t n_in) { return (size_t)quant_row_size(QT_Q8_K, n_in); }

static void i8k_act_pack(const float *x, void *dst, int64_t n_in) { kern_ops_get()->from_float[QT_Q8_K](x, dst, n_in); }

void kern_i8mm_install_gemm(kern_ops *o) {
    static const struct {
        quant_type type;
        void (*rows)(const kern_gemm_job *j, int64_t r0, int64_t r1);
        bool k;
    } k_gemms[] = {{QT_Q4_0, i8_rows_q4_0, false}, {QT_Q5_0, i8_rows_q5_0, false}, {QT_Q8_0, i8_rows_q8_0, false},
                   {QT_Q4_K, i8k_rows_q4_K, true},  {QT_Q5_K, i8k_rows_q5_K, true},  {QT_Q6_K, i8k_rows_q6_K, true}};
    for (size_t i = 0; i < sizeof k_gemms / sizeof k_gemms[0]; i++)
        o->gemm[k_gemms[i].type] = (kern_gemm){.act_size = k_gemms[i].k ? i8k_act_size : i8_act_size,
                                               .act_pack = k_gemms[i].k ? i8k_act_pack : i8_act_pack,
                                               .rows = k_gemms[i].rows, .row_tile = I8_GR, .min_T = I8_MIN_T};
}

#else
typedef int kern_arm_i8mm_unused; /* not an aarch64 build: nothing here */
#endif
