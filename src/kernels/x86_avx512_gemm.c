/*
 * x86_avx512_gemm: the AVX-512 VNNI tiled matmul of the quantized types for
 * prompt batches (T >= G5_MIN_T_*), installed over the AVX2 one when the CPU
 * has AVX512_VNNI. The float types keep the AVX2 tiles.
 *
 * Every type is seen as a row of small blocks of BS levels (BS = 32: Q4_0
 * Q4_1 Q5_0 Q5_1 Q8_0, and Q4_K/Q5_K sub-blocks; BS = 16: the 16-element
 * groups of Q2_K Q3_K Q6_K), each with a float scale dw (for K types d times
 * the integer sub-block scale, exact in float) and, for the affine types, a
 * min coefficient m: block value = dw dy sum((l - off) q) + m dy sum(q),
 * with unsigned levels l, a constant integer offset off (8, 16, 128, 32, 4
 * or none) and the activation's per-block scale dy and integer sum.
 * Panels hold 16 blocks per group TRANSPOSED: vector j of a group holds
 * bytes 4j..4j+3 of each of the 16 blocks, one int32 lane per block, and
 * the activations are packed the same way, so BS/4 VPDPBUSDs leave the 16
 * exact integer block sums in the 16 lanes, with no horizontal reduction,
 * and one convert + FMA per 16 blocks scales them. Tiles are GR = 4 rows x
 * GC = 2 tokens as in the AVX2 file. Results equal the row dots up to float
 * rounding order (tests/test_kernels.c checks against a float64 matmul).
 */
#if defined(__x86_64__) || defined(__i386__)

#include "kern_impl.h"

#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512dq,avx512vnni"))), \
                             apply_to = function)
#elif defined(__GNUC__)
#pragma GCC target("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512dq,avx512vnni")
#endif

#include "x86_avx512_util.h"

#define GR 4       /* weight rows per tile */
#define GC 2       /* tokens per tile */
#define KC 2048    /* elements per panel chunk */
/* Fewest tokens for which the tiles beat the row dots (measured on the
 * bench shapes, 2048 x 2048 and 2048 x 8192): the 32-element types from 2,
 * the K types, whose row dots are the fastest, from 4. */
#define G5_MIN_T_B32 2
#define G5_MIN_T_K 4
#define G5_INLINE static inline __attribute__((always_inline))
_Static_assert(GR == 4 && GC == 2, "the tile below is written out for 4 rows x 2 tokens");

/* Keeps a loaded vector in a register (else the compiler reloads it as a
 * memory operand of every instruction that uses it). */
#define G5_PIN(v) __asm__("" : "+v"(v))

static int64_t g5_round16(int64_t n) { return (n + 15) & ~(int64_t)15; }

/* 16 blocks of S dwords each (S = 8 or 4), contiguous at src -> S vectors,
 * vector j holding dword j of block k in lane k, written at dst + j * stride.
 * Three (S = 8) or two rounds of two-source dword permutes. */
static inline void g5_transpose(const uint8_t *src, int S, uint8_t *dst, size_t stride) {
    const __m512i s1lo = _mm512_setr_epi32(0, 1, 2, 3, 8, 9, 10, 11, 16, 17, 18, 19, 24, 25, 26, 27);
    const __m512i s1hi = _mm512_setr_epi32(4, 5, 6, 7, 12, 13, 14, 15, 20, 21, 22, 23, 28, 29, 30, 31);
    const __m512i s2[2] = {_mm512_setr_epi32(0, 1, 4, 5, 8, 9, 12, 13, 16, 17, 20, 21, 24, 25, 28, 29),
                           _mm512_setr_epi32(2, 3, 6, 7, 10, 11, 14, 15, 18, 19, 22, 23, 26, 27, 30, 31)};
    const __m512i s3[2] = {_mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30),
                           _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31)};
    /* a[h][i]: blocks 4i..4i+3, dwords 4h..4h+3 of each, as [block][dword] */
    __m512i a[2][4];
    if (S == 8) {
        for (int i = 0; i < 4; i++) {
            const __m512i z0 = a5_load(src + 128 * i), z1 = a5_load(src + 128 * i + 64);
            a[0][i] = _mm512_permutex2var_epi32(z0, s1lo, z1);
            a[1][i] = _mm512_permutex2var_epi32(z0, s1hi, z1);
        }
    } else {
        for (int i = 0; i < 4; i++) a[0][i] = a5_load(src + 64 * i);
    }
    for (int h = 0; h < S / 4; h++)
        for (int q = 0; q < 2; q++) {
            /* blocks 0..7 and 8..15, dwords 4h + 2q + {0, 1}, as [block][dword] */
            const __m512i b0 = _mm512_permutex2var_epi32(a[h][0], s2[q], a[h][1]);
            const __m512i b1 = _mm512_permutex2var_epi32(a[h][2], s2[q], a[h][3]);
            for (int jj = 0; jj < 2; jj++)
                _mm512_storeu_si512(dst + (size_t)(4 * h + 2 * q + jj) * stride, _mm512_permutex2var_epi32(b0, s3[jj], b1));
        }
}

/* ----------------------------------------------------------- panels */

typedef struct g5_panel {
    uint8_t q[KC * GR];   /* [group][step j][row][64 bytes] */
    float d[GR][KC / 16]; /* block scale dw; 0 in the padding */
    float m[GR][KC / 16]; /* min coefficient (affine types); 0 in the padding */
} g5_panel;

/* Levels of elements [e0, e0 + n) of one row in element order into lv (may
 * write up to 32 bytes past n), and dw, m of its n / BS blocks. */
typedef void (*g5_unpack_fn)(const uint8_t *row, int64_t e0, int n, uint8_t *lv, float *d, float *m);

#define G5_UNPACK_B32(T, BT, MIN)                                                                  \
    static void g5_unpack_##T(const uint8_t *row, int64_t e0, int n, uint8_t *lv, float *d, float *m) { \
        const BT *x = (const BT *)row + e0 / 32;                                                   \
        const int nb = n / 32;                                                                     \
        for (int b = 0; b < nb; b += 2)                                                            \
            _mm512_storeu_si512(lv + 32 * b, a5_lv_##T(&x[b], &x[b + 1 < nb ? b + 1 : b]));        \
        for (int b = 0; b < nb; b++) {                                                             \
            d[b] = a2_h2f(x[b].d);                                                                 \
            m[b] = MIN;                                                                            \
        }                                                                                          \
    }

G5_UNPACK_B32(q4_0, block_q4_0, 0.0f)
G5_UNPACK_B32(q5_0, block_q5_0, 0.0f)
G5_UNPACK_B32(q8_0, block_q8_0, 0.0f)
G5_UNPACK_B32(q4_1, block_q4_1, a2_h2f(x[b].m))
G5_UNPACK_B32(q5_1, block_q5_1, a2_h2f(x[b].m))

static inline void g5_store_lv(uint8_t *lv, const __m512i v[4]) {
    for (int k = 0; k < 4; k++) _mm512_storeu_si512(lv + 64 * k, v[k]);
}

static void g5_unpack_k4(const uint8_t *scales, const uint8_t *qs, const uint8_t *qh, pl_fp16 dh, pl_fp16 dminh,
                         uint8_t *lv, float *d, float *m) {
    uint8_t sc[8], mn[8];
    __m512i v[4];
    a5_lv_k4(qs, qh, v);
    g5_store_lv(lv, v);
    a2_k4_scales(scales, sc, mn);
    const float D = a2_h2f(dh), M = a2_h2f(dminh);
    for (int j = 0; j < 8; j++) {
        d[j] = D * (float)sc[j];
        m[j] = -M * (float)mn[j];
    }
}

static void g5_unpack_q4_K(const uint8_t *row, int64_t e0, int n, uint8_t *lv, float *d, float *m) {
    const block_q4_K *x = (const block_q4_K *)row + e0 / QK_K;
    for (int b = 0; b < n / QK_K; b++)
        g5_unpack_k4(x[b].scales, x[b].qs, NULL, x[b].d, x[b].dmin, lv + QK_K * b, d + 8 * b, m + 8 * b);
}

static void g5_unpack_q5_K(const uint8_t *row, int64_t e0, int n, uint8_t *lv, float *d, float *m) {
    const block_q5_K *x = (const block_q5_K *)row + e0 / QK_K;
    for (int b = 0; b < n / QK_K; b++)
        g5_unpack_k4(x[b].scales, x[b].qs, x[b].qh, x[b].d, x[b].dmin, lv + QK_K * b, d + 8 * b, m + 8 * b);
}

static void g5_unpack_q6_K(const uint8_t *row, int64_t e0, int n, uint8_t *lv, float *d, float *m) {
    const block_q6_K *x = (const block_q6_K *)row + e0 / QK_K;
    (void)m;
    for (int b = 0; b < n / QK_K; b++) {
        __m512i v[4];
        a5_lv_q6_K(&x[b], v);
        g5_store_lv(lv + QK_K * b, v);
        const float D = a2_h2f(x[b].d);
        for (int g = 0; g < 16; g++) d[16 * b + g] = D * (float)x[b].scales[g];
    }
}

static void g5_unpack_q3_K(const uint8_t *row, int64_t e0, int n, uint8_t *lv, float *d, float *m) {
    const block_q3_K *x = (const block_q3_K *)row + e0 / QK_K;
    (void)m;
    for (int b = 0; b < n / QK_K; b++) {
        __m512i v[4];
        a5_lv_k23(x[b].qs, x[b].hmask, v);
        g5_store_lv(lv + QK_K * b, v);
        int8_t s8[16];
        _mm_storeu_si128((__m128i *)s8, a2_q3_scales(x[b].scales));
        const float D = a2_h2f(x[b].d);
        for (int g = 0; g < 16; g++) d[16 * b + g] = D * (float)s8[g];
    }
}

static void g5_unpack_q2_K(const uint8_t *row, int64_t e0, int n, uint8_t *lv, float *d, float *m) {
    const block_q2_K *x = (const block_q2_K *)row + e0 / QK_K;
    for (int b = 0; b < n / QK_K; b++) {
        __m512i v[4];
        a5_lv_k23(x[b].qs, NULL, v);
        g5_store_lv(lv + QK_K * b, v);
        const float D = a2_h2f(x[b].d), M = a2_h2f(x[b].dmin);
        for (int g = 0; g < 16; g++) {
            d[16 * b + g] = D * (float)(x[b].scales[g] & 0xF);
            m[16 * b + g] = -M * (float)(x[b].scales[g] >> 4);
        }
    }
}

/* ------------------------------------------------------ activations */

/* Packed activation row: q[nbp BS] bytes in the panels' transposed group
 * layout, then dy[nbp] and ys[nbp] = dy * sum(q) as floats and the integer
 * sums ysum[nbp], with nbp = the block count rounded up to 16, zeros past it. */
static size_t g5_act_size(int64_t n_in, int BS) {
    const size_t nbp = (size_t)g5_round16(n_in / BS);
    return nbp * (size_t)BS + nbp * 3 * sizeof(float);
}
static size_t g5_act_size32(int64_t n_in) { return g5_act_size(n_in, 32); }
static size_t g5_act_size16(int64_t n_in) { return g5_act_size(n_in, 16); }

typedef struct g5_act {
    uint8_t *q;
    float *dy, *ys;
    int32_t *ysum;
} g5_act;

static g5_act g5_act_at(const void *row, int64_t n_in, int BS) {
    const int64_t nbp = g5_round16(n_in / BS);
    g5_act a;
    a.q = (uint8_t *)row;
    a.dy = (float *)(a.q + nbp * BS);
    a.ys = a.dy + nbp;
    a.ysum = (int32_t *)(a.ys + nbp);
    return a;
}

/* Q8_0 activations, exactly as the reference quantizer (the scale rounded
 * to half, as the dots see it). */
static void g5_act_pack_q8_0(const float *x, void *dst, int64_t n_in) {
    const int64_t nb = n_in / 32, nbp = g5_round16(nb);
    const g5_act a = g5_act_at(dst, n_in, 32);
    _Alignas(64) int8_t tmp[16 * 32];
    for (int64_t g = 0; g < nbp / 16; g++) {
        for (int k = 0; k < 16; k++) {
            const int64_t b = 16 * g + k;
            if (b < nb) {
                const float d = a2_q8_0_block(x + 32 * b, tmp + 32 * k);
                a.dy[b] = a2_h2f(quant_f32_to_fp16(d));
                a.ysum[b] = a2_hsum_i32(a2_dot_u8(_mm256_set1_epi8(1), a2_load(tmp + 32 * k)));
            } else {
                memset(tmp + 32 * k, 0, 32);
                a.dy[b] = 0.0f;
                a.ysum[b] = 0;
            }
            a.ys[b] = a.dy[b] * (float)a.ysum[b];
        }
        g5_transpose((const uint8_t *)tmp, 8, a.q + g * 16 * 32, 64);
    }
}

/* Q8_K activations (the reference quantizer per 256), as blocks of BS. */
G5_INLINE void g5_act_pack_k(const float *x, void *dst, int64_t n_in, int BS) {
    const int64_t nb = n_in / BS, nbp = g5_round16(nb);
    const g5_act a = g5_act_at(dst, n_in, BS);
    _Alignas(64) uint8_t tmp[16 * 32];
    block_q8_K blk;
    for (int64_t g = 0; g < nbp / 16; g++) {
        for (int k = 0; k < 16; k++) {
            const int64_t b = 16 * g + k, e = b * BS;
            if (b < nb) {
                if (e % QK_K == 0) a2_q8_K_block(x + e, &blk);
                const int o = (int)(e % QK_K);
                memcpy(tmp + BS * k, blk.qs + o, (size_t)BS);
                a.dy[b] = blk.d;
                a.ysum[b] = blk.bsums[o / 16] + (BS == 32 ? blk.bsums[o / 16 + 1] : 0);
            } else {
                memset(tmp + BS * k, 0, (size_t)BS);
                a.dy[b] = 0.0f;
                a.ysum[b] = 0;
            }
            a.ys[b] = a.dy[b] * (float)a.ysum[b];
        }
        g5_transpose(tmp, BS / 4, a.q + g * 16 * BS, 64);
    }
}

static void g5_act_pack_k32(const float *x, void *dst, int64_t n_in) { g5_act_pack_k(x, dst, n_in, 32); }
static void g5_act_pack_k16(const float *x, void *dst, int64_t n_in) { g5_act_pack_k(x, dst, n_in, 16); }

/* ------------------------------------------------------------- tiles */

/* One weight row's step j of a group, with both tokens. */
#define G5_DP(r, ia, ib)                                                                           \
    do {                                                                                           \
        __m512i w = a5_load(wq + (size_t)(j * GR + (r)) * 64);                                     \
        G5_PIN(w);                                                                                 \
        ia = _mm512_dpbusd_epi32(ia, w, y0);                                                       \
        ib = _mm512_dpbusd_epi32(ib, w, y1);                                                       \
    } while (0)

/* The group's integer sums of row r into its float accumulators. */
#define G5_SCALE(r, ia, ib, fa, fb)                                                                \
    do {                                                                                           \
        const __m512 dw = _mm512_loadu_ps(p->d[r] + 16 * g);                                       \
        if (shift >= 0) {                                                                          \
            ia = _mm512_sub_epi32(ia, o0);                                                         \
            ib = _mm512_sub_epi32(ib, o1);                                                         \
        }                                                                                          \
        fa = _mm512_fmadd_ps(_mm512_cvtepi32_ps(ia), _mm512_mul_ps(dw, dy0), fa);                  \
        fb = _mm512_fmadd_ps(_mm512_cvtepi32_ps(ib), _mm512_mul_ps(dw, dy1), fb);                  \
        if (affine) {                                                                              \
            const __m512 mw = _mm512_loadu_ps(p->m[r] + 16 * g);                                   \
            fa = _mm512_fmadd_ps(mw, ys0, fa);                                                     \
            fb = _mm512_fmadd_ps(mw, ys1, fb);                                                     \
        }                                                                                          \
    } while (0)

/* A 4 x 2 tile over ng groups: out[c * GR + r] = dot of row r, token c.
 * S = BS / 4 steps per group; shift: log2 of the level offset, or -1. */
G5_INLINE void g5_tile(const g5_panel *p, int ng, int S, int shift, int affine, const g5_act y[GC], float out[GR * GC]) {
    __m512 f0 = _mm512_setzero_ps(), f1 = f0, f2 = f0, f3 = f0, f4 = f0, f5 = f0, f6 = f0, f7 = f0;
    for (int g = 0; g < ng; g++) {
        __m512i i0 = _mm512_setzero_si512(), i1 = i0, i2 = i0, i3 = i0, i4 = i0, i5 = i0, i6 = i0, i7 = i0;
        const uint8_t *wq = p->q + (size_t)g * (size_t)(S * GR * 64);
        const uint8_t *q0 = y[0].q + (size_t)g * (size_t)(S * 64), *q1 = y[1].q + (size_t)g * (size_t)(S * 64);
        for (int j = 0; j < S; j++) {
            __m512i y0 = a5_load(q0 + 64 * j), y1 = a5_load(q1 + 64 * j);
            G5_PIN(y0);
            G5_PIN(y1);
            G5_DP(0, i0, i4);
            G5_DP(1, i1, i5);
            G5_DP(2, i2, i6);
            G5_DP(3, i3, i7);
        }
        __m512i o0 = _mm512_setzero_si512(), o1 = o0;
        if (shift >= 0) {
            const __m128i sh = _mm_cvtsi32_si128(shift);
            o0 = _mm512_sll_epi32(a5_load(y[0].ysum + 16 * g), sh);
            o1 = _mm512_sll_epi32(a5_load(y[1].ysum + 16 * g), sh);
        }
        const __m512 dy0 = _mm512_loadu_ps(y[0].dy + 16 * g), dy1 = _mm512_loadu_ps(y[1].dy + 16 * g);
        __m512 ys0 = _mm512_setzero_ps(), ys1 = ys0;
        if (affine) {
            ys0 = _mm512_loadu_ps(y[0].ys + 16 * g);
            ys1 = _mm512_loadu_ps(y[1].ys + 16 * g);
        }
        G5_SCALE(0, i0, i4, f0, f4);
        G5_SCALE(1, i1, i5, f1, f5);
        G5_SCALE(2, i2, i6, f2, f6);
        G5_SCALE(3, i3, i7, f3, f7);
    }
    out[0] = _mm512_reduce_add_ps(f0);
    out[1] = _mm512_reduce_add_ps(f1);
    out[2] = _mm512_reduce_add_ps(f2);
    out[3] = _mm512_reduce_add_ps(f3);
    out[4] = _mm512_reduce_add_ps(f4);
    out[5] = _mm512_reduce_add_ps(f5);
    out[6] = _mm512_reduce_add_ps(f6);
    out[7] = _mm512_reduce_add_ps(f7);
}

/* Adds a tile into Y[t + c][r0 + r] for the nt x nr valid entries; the first
 * k-chunk starts from the bias (or 0) instead of Y. */
static void g5_store(const kern_gemm_job *j, const float v[GR * GC], int64_t r0, int t, int nr, int nt, int first) {
    for (int c = 0; c < nt; c++) {
        float *y = j->Y + (size_t)(t + c) * (size_t)j->ldy + r0;
        for (int r = 0; r < nr; r++) {
            const float base = first ? (j->bias ? j->bias[r0 + r] : 0.0f) : y[r];
            y[r] = base + v[c * GR + r];
        }
    }
}

G5_INLINE void g5_rows(const kern_gemm_job *j, int64_t r0, int64_t r1, g5_unpack_fn unpack, int BS, int shift,
                       int affine) {
    const int S = BS / 4, nbk = KC / BS;
    const int64_t nb_all = j->n_in / BS;
    _Alignas(64) g5_panel p;
    _Alignas(64) uint8_t lv[KC + 64];
    for (int64_t rb = r0; rb < r1; rb += GR) {
        const int nr = (int)(r1 - rb < GR ? r1 - rb : GR);
        for (int64_t b0 = 0; b0 < nb_all; b0 += nbk) {
            const int nb = (int)(nb_all - b0 < nbk ? nb_all - b0 : nbk), ng = (nb + 15) / 16;
            for (int r = 0; r < GR; r++) {
                if (r < nr) {
                    unpack(j->w + (size_t)(rb + r) * j->w_row, b0 * BS, nb * BS, lv, p.d[r], p.m[r]);
                    memset(lv + nb * BS, 0, (size_t)((16 * ng - nb) * BS));
                    for (int g = 0; g < ng; g++) g5_transpose(lv + 16 * g * BS, S, p.q + (size_t)(g * S * GR + r) * 64, GR * 64);
                } else {
                    for (int k = 0; k < ng * S; k++) memset(p.q + (size_t)(k * GR + r) * 64, 0, 64);
                }
                for (int b = r < nr ? nb : 0; b < 16 * ng; b++) p.d[r][b] = p.m[r][b] = 0.0f;
            }
            for (int t = 0; t < j->T; t += GC) {
                const int nt = j->T - t < GC ? j->T - t : GC;
                g5_act y[GC];
                for (int c = 0; c < GC; c++) {
                    y[c] = g5_act_at(j->act + (size_t)(c < nt ? t + c : t) * j->act_row, j->n_in, BS);
                    y[c].q += b0 * BS;
                    y[c].dy += b0;
                    y[c].ys += b0;
                    y[c].ysum += b0;
                }
                float out[GR * GC];
                g5_tile(&p, ng, S, shift, affine, y, out);
                g5_store(j, out, rb, t, nr, nt, b0 == 0);
            }
        }
    }
}

/* type, unpacker, block size, log2 of the level offset (-1: none), affine */
#define G5_ROWS(T, BS, SHIFT, AFFINE)                                                              \
    static void g5_rows_##T(const kern_gemm_job *j, int64_t r0, int64_t r1) {                     \
        g5_rows(j, r0, r1, g5_unpack_##T, BS, SHIFT, AFFINE);                                      \
    }

G5_ROWS(q4_0, 32, 3, 0)
G5_ROWS(q5_0, 32, 4, 0)
G5_ROWS(q8_0, 32, 7, 0)
G5_ROWS(q4_1, 32, -1, 1)
G5_ROWS(q5_1, 32, -1, 1)
G5_ROWS(q4_K, 32, -1, 1)
G5_ROWS(q5_K, 32, -1, 1)
G5_ROWS(q6_K, 16, 5, 0)
G5_ROWS(q3_K, 16, 2, 0)
G5_ROWS(q2_K, 16, -1, 1)

/* ----------------------------------------------------------- install */

void kern_avx512_install_gemm(kern_ops *o) {
    static const struct {
        quant_type type;
        kern_gemm g;
    } k_table[] = {
        {QT_Q4_0, {g5_act_size32, g5_act_pack_q8_0, g5_rows_q4_0, GR, G5_MIN_T_B32}},
        {QT_Q4_1, {g5_act_size32, g5_act_pack_q8_0, g5_rows_q4_1, GR, G5_MIN_T_B32}},
        {QT_Q5_0, {g5_act_size32, g5_act_pack_q8_0, g5_rows_q5_0, GR, G5_MIN_T_B32}},
        {QT_Q5_1, {g5_act_size32, g5_act_pack_q8_0, g5_rows_q5_1, GR, G5_MIN_T_B32}},
        {QT_Q8_0, {g5_act_size32, g5_act_pack_q8_0, g5_rows_q8_0, GR, G5_MIN_T_B32}},
        {QT_Q2_K, {g5_act_size16, g5_act_pack_k16, g5_rows_q2_K, GR, G5_MIN_T_K}},
        {QT_Q3_K, {g5_act_size16, g5_act_pack_k16, g5_rows_q3_K, GR, G5_MIN_T_K}},
        {QT_Q4_K, {g5_act_size32, g5_act_pack_k32, g5_rows_q4_K, GR, G5_MIN_T_K}},
        {QT_Q5_K, {g5_act_size32, g5_act_pack_k32, g5_rows_q5_K, GR, G5_MIN_T_K}},
        {QT_Q6_K, {g5_act_size16, g5_act_pack_k16, g5_rows_q6_K, GR, G5_MIN_T_K}},
    };
    for (size_t i = 0; i < sizeof k_table / sizeof k_table[0]; i++) o->gemm[k_table[i].type] = k_table[i].g;
}

#if defined(__clang__)
#pragma clang attribute pop
#endif

#else
typedef int x86_avx512_gemm_empty; /* not an x86 build: nothing here */
#endif
