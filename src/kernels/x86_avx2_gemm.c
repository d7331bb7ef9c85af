/*
 * x86_avx2_gemm: the AVX2 tiled matmul used for prompt batches (T >= 2..6,
 * per family: where it measured faster than row dots).
 *
 * For each group of GR = 4 weight rows, a k-chunk of the rows is unpacked
 * once into a panel (levels as bytes, scales as floats or int16 vectors,
 * interleaved so a tile reads them in order), then every pair of tokens
 * (GC = 2) is multiplied against it: a 4x2 tile of 8 dot products keeps
 * every loaded weight vector for 2 tokens and every activation vector for 4
 * rows, and the per-type unpacking is paid once per row, not once per token.
 * Three families share this scheme:
 *   b32  Q4_0 Q4_1 Q5_0 Q5_1 Q8_0 x Q8_0 activations: u8 levels (s8 for
 *        Q8_0) times int8, one float scale per block and pair, plus a
 *        min/offset term m_w * d_y * sum(q_y) done as a float dot at the end;
 *   k    Q2_K..Q6_K x Q8_K: u8 levels times int8 with int16 sub-block scales
 *        summed as integers over a super-block; min/offset terms through the
 *        16-element activation sums, as a float dot;
 *   f    F16 BF16 F32 x f32 activations rounded to the type's dot precision.
 * The integer parts are the same integers the scalar dots sum; only float
 * rounding order differs (tests/test_kernels.c checks against a float64
 * matmul). Activations are packed per token by act_pack, in the same
 * quantization as the reference from_float of the vec_dot_type.
 */
#if defined(__x86_64__) || defined(__i386__)

#include "kern_impl.h"

#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx2,fma,f16c"))), apply_to = function)
#elif defined(__GNUC__)
#pragma GCC target("avx2,fma,f16c")
#endif

#include "x86_avx2_util.h"

#define GR 4          /* weight rows per tile */
#define GC 2          /* tokens per tile */
#define B32_KC 2048   /* elements per panel chunk, b32 family */
#define K_KC 1024     /* elements per panel chunk, K family */
#define F_KC 512      /* elements per panel chunk, float family */
/* Fewest tokens for which each family beat the row dots (n_in 256, 768 rows):
 * b32 tiles from 2, float from 4, K from 6 (their row dots are the fastest). */
#define B32_MIN_T 2
#define F_MIN_T 4
#define K_MIN_T 6
_Static_assert(GR == 4 && GC == 2, "the tiles below are written out for 4 rows x 2 tokens");

/* ------------------------------------------------------------- tile i/o */

/* Keeps a loaded vector in a register: without it the compiler folds the
 * load into both tokens' instructions as a memory operand, loading it twice,
 * and the tiles are bound by loads rather than arithmetic. */
#define G_PIN(v) __asm__("" : "+x"(v))

/* v[c*GR + r] -> one vector whose lane c*GR + r is the sum of v[c*GR + r]. */
static inline __m256 g_reduce8(const __m256 v[8]) {
    const __m256 h0 = _mm256_hadd_ps(_mm256_hadd_ps(v[0], v[1]), _mm256_hadd_ps(v[2], v[3]));
    const __m256 h1 = _mm256_hadd_ps(_mm256_hadd_ps(v[4], v[5]), _mm256_hadd_ps(v[6], v[7]));
    /* h0: half 0 holds lanes 0-3 of v0..v3, half 1 lanes 4-7; h1 likewise */
    return _mm256_add_ps(_mm256_permute2f128_ps(h0, h1, 0x20), _mm256_permute2f128_ps(h0, h1, 0x31));
}

/* Adds a tile (lane c*GR + r) into Y[t + c][r0 + r] for the nt x nr valid
 * entries; the first k-chunk starts from the bias (or 0) instead of Y. */
static inline void g_store(const kern_gemm_job *j, __m256 sums, int64_t r0, int t, int nr, int nt, int first) {
    if (nr == GR && nt == GC) {
        float *y0 = j->Y + (size_t)t * (size_t)j->ldy + r0, *y1 = y0 + j->ldy;
        const __m128 base0 = first ? (j->bias ? _mm_loadu_ps(j->bias + r0) : _mm_setzero_ps()) : _mm_loadu_ps(y0);
        const __m128 base1 = first ? (j->bias ? _mm_loadu_ps(j->bias + r0) : _mm_setzero_ps()) : _mm_loadu_ps(y1);
        _mm_storeu_ps(y0, _mm_add_ps(base0, _mm256_castps256_ps128(sums)));
        _mm_storeu_ps(y1, _mm_add_ps(base1, _mm256_extractf128_ps(sums, 1)));
        return;
    }
    float v[8];
    _mm256_storeu_ps(v, sums);
    for (int c = 0; c < nt; c++) {
        float *y = j->Y + (size_t)(t + c) * (size_t)j->ldy + r0;
        for (int r = 0; r < nr; r++) {
            const float base = first ? (j->bias ? j->bias[r0 + r] : 0.0f) : y[r];
            y[r] = base + v[c * GR + r];
        }
    }
}

/* ------------------------------------------------------ b32 family */

typedef struct b32_panel {
    uint8_t q[B32_KC / 32][GR][32]; /* levels, block-major */
    float d[GR][B32_KC / 32];       /* weight scale per block; 0 past nb to a multiple of 8 */
    float m[GR][B32_KC / 32];       /* min/offset coefficient per block; likewise */
} b32_panel;

/* Unpacks blocks [b0, b0 + nb) of one weight row into panel slot r. */
typedef void (*b32_unpack_fn)(const uint8_t *row, int64_t b0, int nb, b32_panel *p, int r);

static void b32_unpack_q4_0(const uint8_t *row, int64_t b0, int nb, b32_panel *p, int r) {
    const block_q4_0 *x = (const block_q4_0 *)row + b0;
    for (int b = 0; b < nb; b++) {
        _mm256_storeu_si256((__m256i *)p->q[b][r], a2_nibbles(x[b].qs));
        p->d[r][b] = a2_h2f(x[b].d);
        p->m[r][b] = -8.0f * p->d[r][b];
    }
}

static void b32_unpack_q4_1(const uint8_t *row, int64_t b0, int nb, b32_panel *p, int r) {
    const block_q4_1 *x = (const block_q4_1 *)row + b0;
    for (int b = 0; b < nb; b++) {
        _mm256_storeu_si256((__m256i *)p->q[b][r], a2_nibbles(x[b].qs));
        p->d[r][b] = a2_h2f(x[b].d);
        p->m[r][b] = a2_h2f(x[b].m);
    }
}

static inline __m256i b32_q5_levels(const uint8_t *qs, const uint8_t *qh) {
    return _mm256_or_si256(a2_nibbles(qs), _mm256_and_si256(a2_bits32(a2_load_u32(qh)), _mm256_set1_epi8(0x10)));
}

static void b32_unpack_q5_0(const uint8_t *row, int64_t b0, int nb, b32_panel *p, int r) {
    const block_q5_0 *x = (const block_q5_0 *)row + b0;
    for (int b = 0; b < nb; b++) {
        _mm256_storeu_si256((__m256i *)p->q[b][r], b32_q5_levels(x[b].qs, x[b].qh));
        p->d[r][b] = a2_h2f(x[b].d);
        p->m[r][b] = -16.0f * p->d[r][b];
    }
}

static void b32_unpack_q5_1(const uint8_t *row, int64_t b0, int nb, b32_panel *p, int r) {
    const block_q5_1 *x = (const block_q5_1 *)row + b0;
    for (int b = 0; b < nb; b++) {
        _mm256_storeu_si256((__m256i *)p->q[b][r], b32_q5_levels(x[b].qs, x[b].qh));
        p->d[r][b] = a2_h2f(x[b].d);
        p->m[r][b] = a2_h2f(x[b].m);
    }
}

static void b32_unpack_q8_0(const uint8_t *row, int64_t b0, int nb, b32_panel *p, int r) {
    const block_q8_0 *x = (const block_q8_0 *)row + b0;
    for (int b = 0; b < nb; b++) {
        memcpy(p->q[b][r], x[b].qs, 32);
        p->d[r][b] = a2_h2f(x[b].d);
        p->m[r][b] = 0.0f;
    }
}

static void b32_zero_slot(b32_panel *p, int nb, int r) {
    for (int b = 0; b < nb; b++) memset(p->q[b][r], 0, 32);
    memset(p->d[r], 0, sizeof p->d[r]);
    memset(p->m[r], 0, sizeof p->m[r]);
}

static int g_round8(int n) { return (n + 7) & ~7; }

/* Packed Q8_0 activation row: q[n_in] int8, dy[nbp] (the half scale as
 * float), ys[nbp] = dy * sum(q) per block, with nbp = nb rounded up to 8 and
 * zeros past nb, so tiles read the float arrays 8 at a time. */
size_t kern_avx2_b32_act_size(int64_t n_in) {
    return (size_t)n_in + (size_t)((n_in / 32 + 7) / 8 * 8) * 2 * sizeof(float);
}

void kern_avx2_b32_act_pack(const float *x, void *dst, int64_t n_in) {
    const int64_t nb = n_in / 32, nbp = (nb + 7) / 8 * 8;
    int8_t *q = dst;
    float *dy = (float *)(q + n_in), *ys = dy + nbp;
    for (int64_t b = 0; b < nb; b++) {
        const float d = a2_q8_0_block(x + 32 * b, q + 32 * b);
        dy[b] = a2_h2f(quant_f32_to_fp16(d));
        ys[b] = dy[b] * (float)a2_hsum_i32(a2_dot_u8(_mm256_set1_epi8(1), a2_load(q + 32 * b)));
    }
    for (int64_t b = nb; b < nbp; b++) dy[b] = ys[b] = 0.0f;
}

/* The 8 accumulators of a 4x2 tile live in named registers (an array would
 * be kept in memory): sR is row R with token 0, sR+4 the same row with token 1. */
#define TILE_ACC_DECL                                                                            \
    __m256 s0 = _mm256_setzero_ps(), s1 = s0, s2 = s0, s3 = s0, s4 = s0, s5 = s0, s6 = s0, s7 = s0
#define TILE_ACC_ARRAY {s0, s1, s2, s3, s4, s5, s6, s7}

/* One weight row of a b32 tile step: its block dotted with both tokens',
 * scaled by the precomputed dw * dy of the pair. */
#define B32_ROW(r, sa, sb, DOT)                                                                    \
    do {                                                                                           \
        const __m256i w = a2_load(p->q[b][r]);                                                     \
        sa = _mm256_fmadd_ps(_mm256_cvtepi32_ps(DOT(w, y0)), _mm256_broadcast_ss(&S[r][b]), sa);    \
        sb = _mm256_fmadd_ps(_mm256_cvtepi32_ps(DOT(w, y1)), _mm256_broadcast_ss(&S[GR + r][b]), sb); \
    } while (0)

/* Float dot terms of a tile over n (a multiple of 8) floats: sRC += A[R] * B[C],
 * eight independent accumulation chains. */
#define TILE_FLOAT_TERMS(A, B0, B1, n, FMA)                                                        \
    for (int i = 0; i < (n); i += 8) {                                                             \
        const __m256 b0v = _mm256_loadu_ps((B0) + i), b1v = _mm256_loadu_ps((B1) + i);             \
        const __m256 m0 = _mm256_loadu_ps((A)[0] + i), m1 = _mm256_loadu_ps((A)[1] + i);           \
        const __m256 m2 = _mm256_loadu_ps((A)[2] + i), m3 = _mm256_loadu_ps((A)[3] + i);           \
        s0 = FMA(m0, b0v, s0), s1 = FMA(m1, b0v, s1), s2 = FMA(m2, b0v, s2), s3 = FMA(m3, b0v, s3); \
        s4 = FMA(m0, b1v, s4), s5 = FMA(m1, b1v, s5), s6 = FMA(m2, b1v, s6), s7 = FMA(m3, b1v, s7); \
    }

/* One 4x2 tile over nb blocks of the panel. DOT is a2_dot_i8 for the signed
 * levels of Q8_0 (sign trick), a2_dot_u8 for the unsigned levels of the
 * others, which then add their min/offset term as a float dot. The pair
 * scales dw * dy are computed 8 blocks per multiply up front. */
#define B32_TILE(NAME, DOT, HAS_MIN)                                                               \
    static inline __m256 NAME(const b32_panel *p, int nb, const int8_t *const yq[GC],            \
                              const float *const ydy[GC], const float *const yys[GC]) {           \
        float S[GR * GC][B32_KC / 32];                                                            \
        const int nb8 = g_round8(nb);                                                              \
        for (int i = 0; i < nb8; i += 8) {                                                         \
            const __m256 dy0 = _mm256_loadu_ps(ydy[0] + i), dy1 = _mm256_loadu_ps(ydy[1] + i);     \
            for (int r = 0; r < GR; r++) {                                                         \
                const __m256 dw = _mm256_loadu_ps(p->d[r] + i);                                    \
                _mm256_storeu_ps(S[r] + i, _mm256_mul_ps(dw, dy0));                                \
                _mm256_storeu_ps(S[GR + r] + i, _mm256_mul_ps(dw, dy1));                           \
            }                                                                                      \
        }                                                                                          \
        TILE_ACC_DECL;                                                                             \
        for (int b = 0; b < nb; b++) {                                                             \
            const __m256i y0 = a2_load(yq[0] + 32 * b), y1 = a2_load(yq[1] + 32 * b);            \
            B32_ROW(0, s0, s4, DOT);                                                               \
            B32_ROW(1, s1, s5, DOT);                                                               \
            B32_ROW(2, s2, s6, DOT);                                                               \
            B32_ROW(3, s3, s7, DOT);                                                               \
        }                                                                                          \
        if (HAS_MIN) {                                                                             \
            TILE_FLOAT_TERMS(p->m, yys[0], yys[1], nb8, _mm256_fmadd_ps)                           \
        }                                                                                          \
        const __m256 acc[8] = TILE_ACC_ARRAY;                                                      \
        return g_reduce8(acc);                                                                     \
    }

B32_TILE(b32_tile_u8, a2_dot_u8, 1)
B32_TILE(b32_tile_i8, a2_dot_i8, 0)

static void b32_rows(const kern_gemm_job *j, int64_t r0, int64_t r1, b32_unpack_fn unpack, int is_signed) {
    const int64_t nb_all = j->n_in / 32;
    b32_panel p;
    for (int64_t rb = r0; rb < r1; rb += GR) {
        const int nr = (int)(r1 - rb < GR ? r1 - rb : GR);
        for (int64_t b0 = 0; b0 < nb_all; b0 += B32_KC / 32) {
            const int nb = (int)(nb_all - b0 < B32_KC / 32 ? nb_all - b0 : B32_KC / 32);
            for (int r = 0; r < GR; r++) {
                if (r < nr) {
                    unpack(j->w + (size_t)(rb + r) * j->w_row, b0, nb, &p, r);
                    for (int b = nb; b < g_round8(nb); b++) p.d[r][b] = p.m[r][b] = 0.0f;
                } else {
                    b32_zero_slot(&p, nb, r);
                }
            }
            for (int t = 0; t < j->T; t += GC) {
                const int nt = j->T - t < GC ? j->T - t : GC;
                const int8_t *yq[GC];
                const float *ydy[GC], *yys[GC];
                for (int c = 0; c < GC; c++) {
                    const uint8_t *a = j->act + (size_t)(c < nt ? t + c : t) * j->act_row;
                    yq[c] = (const int8_t *)a + b0 * 32;
                    ydy[c] = (const float *)(a + j->n_in) + b0;
                    yys[c] = (const float *)(a + j->n_in) + g_round8((int)nb_all) + b0;
                }
                const __m256 s = is_signed ? b32_tile_i8(&p, nb, yq, ydy, yys) : b32_tile_u8(&p, nb, yq, ydy, yys);
                g_store(j, s, rb, t, nr, nt, b0 == 0);
            }
        }
    }
}

static void b32_rows_q4_0(const kern_gemm_job *j, int64_t r0, int64_t r1) { b32_rows(j, r0, r1, b32_unpack_q4_0, 0); }
static void b32_rows_q4_1(const kern_gemm_job *j, int64_t r0, int64_t r1) { b32_rows(j, r0, r1, b32_unpack_q4_1, 0); }
static void b32_rows_q5_0(const kern_gemm_job *j, int64_t r0, int64_t r1) { b32_rows(j, r0, r1, b32_unpack_q5_0, 0); }
static void b32_rows_q5_1(const kern_gemm_job *j, int64_t r0, int64_t r1) { b32_rows(j, r0, r1, b32_unpack_q5_1, 0); }
static void b32_rows_q8_0(const kern_gemm_job *j, int64_t r0, int64_t r1) { b32_rows(j, r0, r1, b32_unpack_q8_0, 1); }

/* -------------------------------------------------------- K family */

typedef struct k_panel {
    struct {
        uint8_t q[32];  /* levels of one 32-chunk of one row */
        int16_t sc[16]; /* its madd scale vector */
    } ch[K_KC / 256][8][GR];
    float d[K_KC / 256][GR];           /* super-block scale */
    float M[GR][K_KC / 16];            /* per 16-group: coefficient of dy * bsum */
} k_panel;

/* Unpacks super-blocks [b0, b0 + nb) of one row into panel slot r. Each
 * writes levels, scale vectors, d, and M such that the super-block's value is
 * d * dy * sum(level * scale * q) - sum_j M[j] * dy * bsum[j]. */
typedef void (*k_unpack_fn)(const uint8_t *row, int64_t b0, int nb, k_panel *p, int r);

/* Scale vectors of the 8 chunks from 16 per-group int16 scales. */
static inline void k_put_scales16(k_panel *p, int b, int r, const int16_t s16[16]) {
    int32_t pairs[8];
    memcpy(pairs, s16, sizeof pairs);
    for (int c = 0; c < 8; c++) _mm256_storeu_si256((__m256i *)p->ch[b][c][r].sc, a2_scale_pair(pairs[c]));
}

static void k_unpack_q2_K(const uint8_t *row, int64_t b0, int nb, k_panel *p, int r) {
    const block_q2_K *x = (const block_q2_K *)row + b0;
    const __m256i m3 = _mm256_set1_epi8(3);
    for (int b = 0; b < nb; b++) {
        for (int half = 0; half < 2; half++) {
            __m256i q = a2_load(x[b].qs + 32 * half);
            for (int k = 0; k < 4; k++) {
                _mm256_storeu_si256((__m256i *)p->ch[b][4 * half + k][r].q, _mm256_and_si256(q, m3));
                q = _mm256_srli_epi16(q, 2);
            }
        }
        const float d = a2_h2f(x[b].d), dmin = a2_h2f(x[b].dmin);
        int16_t s16[16];
        for (int g = 0; g < 16; g++) {
            s16[g] = (int16_t)(x[b].scales[g] & 0xF);
            p->M[r][16 * b + g] = dmin * (float)(x[b].scales[g] >> 4);
        }
        k_put_scales16(p, b, r, s16);
        p->d[b][r] = d;
    }
}

static void k_unpack_q3_K(const uint8_t *row, int64_t b0, int nb, k_panel *p, int r) {
    const block_q3_K *x = (const block_q3_K *)row + b0;
    const __m256i m3 = _mm256_set1_epi8(3), m4 = _mm256_set1_epi8(4);
    for (int b = 0; b < nb; b++) {
        __m256i hm = a2_load(x[b].hmask);
        for (int half = 0; half < 2; half++) {
            __m256i q = a2_load(x[b].qs + 32 * half);
            for (int k = 0; k < 4; k++) {
                const __m256i lv = _mm256_or_si256(_mm256_and_si256(q, m3), _mm256_and_si256(_mm256_slli_epi16(hm, 2), m4));
                _mm256_storeu_si256((__m256i *)p->ch[b][4 * half + k][r].q, lv);
                q = _mm256_srli_epi16(q, 2);
                hm = _mm256_srli_epi16(hm, 1);
            }
        }
        int8_t s8[16];
        int16_t s16[16];
        _mm_storeu_si128((__m128i *)s8, a2_q3_scales(x[b].scales));
        const float d = a2_h2f(x[b].d);
        for (int g = 0; g < 16; g++) {
            s16[g] = s8[g];
            p->M[r][16 * b + g] = 4.0f * d * (float)s8[g]; /* levels stored + 4 */
        }
        k_put_scales16(p, b, r, s16);
        p->d[b][r] = d;
    }
}

static void k_unpack_k4(const uint8_t *scales, const uint8_t *qs, const uint8_t *qh, pl_fp16 dh, pl_fp16 dminh,
                        k_panel *p, int b, int r) {
    uint8_t sc[8], mn[8];
    a2_k4_scales(scales, sc, mn);
    const __m256i m4 = _mm256_set1_epi8(0xF), b4 = _mm256_set1_epi8(0x10);
    __m256i hv = qh ? a2_load(qh) : _mm256_setzero_si256();
    for (int pr = 0; pr < 4; pr++) {
        const __m256i q = a2_load(qs + 32 * pr);
        __m256i lo = _mm256_and_si256(q, m4), hi = _mm256_and_si256(_mm256_srli_epi16(q, 4), m4);
        if (qh) {
            lo = _mm256_or_si256(lo, _mm256_and_si256(_mm256_slli_epi16(hv, 4), b4));
            hi = _mm256_or_si256(hi, _mm256_and_si256(_mm256_slli_epi16(hv, 3), b4));
            hv = _mm256_srli_epi16(hv, 2);
        }
        _mm256_storeu_si256((__m256i *)p->ch[b][2 * pr][r].q, lo);
        _mm256_storeu_si256((__m256i *)p->ch[b][2 * pr + 1][r].q, hi);
    }
    const float dmin = a2_h2f(dminh);
    int16_t s16[16];
    for (int c = 0; c < 8; c++) {
        s16[2 * c] = s16[2 * c + 1] = sc[c];
        p->M[r][16 * b + 2 * c] = p->M[r][16 * b + 2 * c + 1] = dmin * (float)mn[c];
    }
    k_put_scales16(p, b, r, s16);
    p->d[b][r] = a2_h2f(dh);
}

static void k_unpack_q4_K(const uint8_t *row, int64_t b0, int nb, k_panel *p, int r) {
    const block_q4_K *x = (const block_q4_K *)row + b0;
    for (int b = 0; b < nb; b++) k_unpack_k4(x[b].scales, x[b].qs, NULL, x[b].d, x[b].dmin, p, b, r);
}

static void k_unpack_q5_K(const uint8_t *row, int64_t b0, int nb, k_panel *p, int r) {
    const block_q5_K *x = (const block_q5_K *)row + b0;
    for (int b = 0; b < nb; b++) k_unpack_k4(x[b].scales, x[b].qs, x[b].qh, x[b].d, x[b].dmin, p, b, r);
}

static void k_unpack_q6_K(const uint8_t *row, int64_t b0, int nb, k_panel *p, int r) {
    const block_q6_K *x = (const block_q6_K *)row + b0;
    const __m256i m4 = _mm256_set1_epi8(0xF), m30 = _mm256_set1_epi8(0x30);
    for (int b = 0; b < nb; b++) {
        for (int half = 0; half < 2; half++) {
            const __m256i ql0 = a2_load(x[b].ql + 64 * half), ql1 = a2_load(x[b].ql + 64 * half + 32);
            const __m256i hv = a2_load(x[b].qh + 32 * half);
            const int c = 4 * half;
            _mm256_storeu_si256((__m256i *)p->ch[b][c][r].q,
                                _mm256_or_si256(_mm256_and_si256(ql0, m4), _mm256_and_si256(_mm256_slli_epi16(hv, 4), m30)));
            _mm256_storeu_si256((__m256i *)p->ch[b][c + 1][r].q,
                                _mm256_or_si256(_mm256_and_si256(ql1, m4), _mm256_and_si256(_mm256_slli_epi16(hv, 2), m30)));
            _mm256_storeu_si256((__m256i *)p->ch[b][c + 2][r].q, _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql0, 4), m4),
                                                                    _mm256_and_si256(hv, m30)));
            _mm256_storeu_si256((__m256i *)p->ch[b][c + 3][r].q, _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql1, 4), m4),
                                                                    _mm256_and_si256(_mm256_srli_epi16(hv, 2), m30)));
        }
        const float d = a2_h2f(x[b].d);
        int16_t s16[16];
        for (int g = 0; g < 16; g++) {
            s16[g] = x[b].scales[g];
            p->M[r][16 * b + g] = 32.0f * d * (float)x[b].scales[g]; /* levels stored + 32 */
        }
        k_put_scales16(p, b, r, s16);
        p->d[b][r] = d;
    }
}

static void k_zero_slot(k_panel *p, int nb, int r) {
    for (int b = 0; b < nb; b++) {
        for (int c = 0; c < 8; c++) {
            memset(p->ch[b][c][r].q, 0, 32);
            memset(p->ch[b][c][r].sc, 0, sizeof p->ch[b][c][r].sc);
        }
        p->d[b][r] = 0.0f;
        for (int g = 0; g < 16; g++) p->M[r][16 * b + g] = 0.0f;
    }
}

/* Packed Q8_K activation row: q[n_in] int8, dy[nb] float, B[16 nb] = dy * bsum. */
static size_t k_act_size(int64_t n_in) { return (size_t)n_in + (size_t)(n_in / 256) * 17 * sizeof(float); }

static void k_act_pack(const float *x, void *dst, int64_t n_in) {
    const int64_t nb = n_in / 256;
    int8_t *q = dst;
    float *dy = (float *)(q + n_in), *B = dy + nb;
    block_q8_K blk;
    for (int64_t b = 0; b < nb; b++) {
        a2_q8_K_block(x + 256 * b, &blk);
        memcpy(q + 256 * b, blk.qs, 256);
        dy[b] = blk.d;
        for (int g = 0; g < 16; g++) B[16 * b + g] = blk.d * (float)blk.bsums[g];
    }
}

/* One weight row of a K tile step: a 32-chunk with both tokens, into the
 * super-block's integer sums. */
#define K_ROW(r, ia, ib)                                                                           \
    do {                                                                                           \
        const __m256i w = a2_load(p->ch[b][c][r].q);                                              \
        __m256i sc = a2_load(p->ch[b][c][r].sc);                                                   \
        G_PIN(sc);                                                                                 \
        ia = _mm256_add_epi32(ia, _mm256_madd_epi16(_mm256_maddubs_epi16(w, y0), sc));             \
        ib = _mm256_add_epi32(ib, _mm256_madd_epi16(_mm256_maddubs_epi16(w, y1), sc));             \
    } while (0)

/* Super-block integer sums into the float accumulators, scaled by d * dy. */
#define K_SCALE(r, ia, ib, sa, sb)                                                                 \
    do {                                                                                           \
        const __m256 dw = _mm256_broadcast_ss(&p->d[b][r]);                                       \
        sa = _mm256_fmadd_ps(_mm256_cvtepi32_ps(ia), _mm256_mul_ps(dw, dy0), sa);                  \
        sb = _mm256_fmadd_ps(_mm256_cvtepi32_ps(ib), _mm256_mul_ps(dw, dy1), sb);                  \
    } while (0)

static inline __m256 k_tile(const k_panel *p, int nb, const int8_t *const yq[GC], const float *const ydy[GC],
                            const float *const yB[GC]) {
    TILE_ACC_DECL;
    for (int b = 0; b < nb; b++) {
        __m256i i0 = _mm256_setzero_si256(), i1 = i0, i2 = i0, i3 = i0, i4 = i0, i5 = i0, i6 = i0, i7 = i0;
        for (int c = 0; c < 8; c++) {
            const __m256i y0 = a2_load(yq[0] + 256 * b + 32 * c), y1 = a2_load(yq[1] + 256 * b + 32 * c);
            K_ROW(0, i0, i4);
            K_ROW(1, i1, i5);
            K_ROW(2, i2, i6);
            K_ROW(3, i3, i7);
        }
        const __m256 dy0 = _mm256_broadcast_ss(&ydy[0][b]), dy1 = _mm256_broadcast_ss(&ydy[1][b]);
        K_SCALE(0, i0, i4, s0, s4);
        K_SCALE(1, i1, i5, s1, s5);
        K_SCALE(2, i2, i6, s2, s6);
        K_SCALE(3, i3, i7, s3, s7);
    }
    TILE_FLOAT_TERMS(p->M, yB[0], yB[1], 16 * nb, _mm256_fnmadd_ps)
    const __m256 acc[8] = TILE_ACC_ARRAY;
    return g_reduce8(acc);
}

static void k_rows(const kern_gemm_job *j, int64_t r0, int64_t r1, k_unpack_fn unpack) {
    const int64_t nb_all = j->n_in / 256;
    k_panel p;
    for (int64_t rb = r0; rb < r1; rb += GR) {
        const int nr = (int)(r1 - rb < GR ? r1 - rb : GR);
        for (int64_t b0 = 0; b0 < nb_all; b0 += K_KC / 256) {
            const int nb = (int)(nb_all - b0 < K_KC / 256 ? nb_all - b0 : K_KC / 256);
            for (int r = 0; r < GR; r++) {
                if (r < nr) unpack(j->w + (size_t)(rb + r) * j->w_row, b0, nb, &p, r);
                else k_zero_slot(&p, nb, r);
            }
            for (int t = 0; t < j->T; t += GC) {
                const int nt = j->T - t < GC ? j->T - t : GC;
                const int8_t *yq[GC];
                const float *ydy[GC], *yB[GC];
                for (int c = 0; c < GC; c++) {
                    const uint8_t *a = j->act + (size_t)(c < nt ? t + c : t) * j->act_row;
                    yq[c] = (const int8_t *)a + b0 * 256;
                    ydy[c] = (const float *)(a + j->n_in) + b0;
                    yB[c] = (const float *)(a + j->n_in) + nb_all + 16 * b0;
                }
                g_store(j, k_tile(&p, nb, yq, ydy, yB), rb, t, nr, nt, b0 == 0);
            }
        }
    }
}

static void k_rows_q2_K(const kern_gemm_job *j, int64_t r0, int64_t r1) { k_rows(j, r0, r1, k_unpack_q2_K); }
static void k_rows_q3_K(const kern_gemm_job *j, int64_t r0, int64_t r1) { k_rows(j, r0, r1, k_unpack_q3_K); }
static void k_rows_q4_K(const kern_gemm_job *j, int64_t r0, int64_t r1) { k_rows(j, r0, r1, k_unpack_q4_K); }
static void k_rows_q5_K(const kern_gemm_job *j, int64_t r0, int64_t r1) { k_rows(j, r0, r1, k_unpack_q5_K); }
static void k_rows_q6_K(const kern_gemm_job *j, int64_t r0, int64_t r1) { k_rows(j, r0, r1, k_unpack_q6_K); }

/* ---------------------------------------------------- float family */

typedef struct f_panel {
    float w[F_KC / 8][GR][8]; /* 8 elements of each row per step; zero past n_in */
} f_panel;

/* Unpacks elements [i0, i0 + n) of one row into slot r (n <= F_KC). */
typedef void (*f_unpack_fn)(const uint8_t *row, int64_t i0, int n, f_panel *p, int r);

static void f_put(f_panel *p, int r, int i, __m256 v) { _mm256_storeu_ps(p->w[i / 8][r], v); }

/* Tail of a row: elements [i, n) from a float buffer, zeros up to the step. */
static void f_put_tail(f_panel *p, int r, int i, int n, const float *src) {
    float tmp[8] = {0};
    for (int k = i; k < n; k++) tmp[k - i] = src[k - i];
    f_put(p, r, i, _mm256_loadu_ps(tmp));
}

static void f_unpack_f32(const uint8_t *row, int64_t i0, int n, f_panel *p, int r) {
    const float *x = (const float *)row + i0;
    int i = 0;
    for (; i + 8 <= n; i += 8) f_put(p, r, i, _mm256_loadu_ps(x + i));
    if (i < n) f_put_tail(p, r, i, n, x + i);
}

static void f_unpack_f16(const uint8_t *row, int64_t i0, int n, f_panel *p, int r) {
    const pl_fp16 *x = (const pl_fp16 *)row + i0;
    int i = 0;
    for (; i + 8 <= n; i += 8) f_put(p, r, i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(x + i))));
    if (i < n) {
        float tmp[8];
        for (int k = i; k < n; k++) tmp[k - i] = a2_h2f(x[k]);
        f_put_tail(p, r, i, n, tmp);
    }
}

static void f_unpack_bf16(const uint8_t *row, int64_t i0, int n, f_panel *p, int r) {
    const pl_bf16 *x = (const pl_bf16 *)row + i0;
    int i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256i w = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(x + i)));
        f_put(p, r, i, _mm256_castsi256_ps(_mm256_slli_epi32(w, 16)));
    }
    if (i < n) {
        float tmp[8];
        for (int k = i; k < n; k++) tmp[k - i] = quant_bf16_to_f32(x[k]);
        f_put_tail(p, r, i, n, tmp);
    }
}

static void f_zero_slot(f_panel *p, int n, int r) {
    for (int i = 0; i < n; i += 8) f_put(p, r, i, _mm256_setzero_ps());
}

/* Packed activation row: n_in floats rounded as the type's from_float would
 * (the reference dots multiply those rounded values), zero up to a multiple
 * of 8 so tiles never need a tail. */
static size_t f_act_size(int64_t n_in) { return (size_t)((n_in + 7) / 8 * 8) * sizeof(float); }

static void f_act_pack_f32(const float *x, void *dst, int64_t n_in) {
    float *y = dst;
    memcpy(y, x, (size_t)n_in * sizeof(float));
    for (int64_t i = n_in; i % 8; i++) y[i] = 0.0f;
}

static void f_act_pack_f16(const float *x, void *dst, int64_t n_in) {
    float *y = dst;
    int64_t i = 0;
    for (; i + 8 <= n_in; i += 8)
        _mm256_storeu_ps(y + i, _mm256_cvtph_ps(_mm256_cvtps_ph(_mm256_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT)));
    for (; i < n_in; i++) y[i] = a2_h2f(quant_f32_to_fp16(x[i]));
    for (; i % 8; i++) y[i] = 0.0f;
}

static void f_act_pack_bf16(const float *x, void *dst, int64_t n_in) {
    float *y = dst;
    int64_t i = 0;
    for (; i < n_in; i++) y[i] = quant_bf16_to_f32(quant_f32_to_bf16(x[i]));
    for (; i % 8; i++) y[i] = 0.0f;
}

#define F_ROW(r, sa, sb)                                                                           \
    do {                                                                                           \
        __m256 w = _mm256_loadu_ps(p->w[i][r]);                                                    \
        G_PIN(w);                                                                                  \
        sa = _mm256_fmadd_ps(w, y0, sa);                                                           \
        sb = _mm256_fmadd_ps(w, y1, sb);                                                           \
    } while (0)

static inline __m256 f_tile(const f_panel *p, int n8, const float *const y[GC]) {
    TILE_ACC_DECL;
    for (int i = 0; i < n8; i++) {
        const __m256 y0 = _mm256_loadu_ps(y[0] + 8 * i), y1 = _mm256_loadu_ps(y[1] + 8 * i);
        F_ROW(0, s0, s4);
        F_ROW(1, s1, s5);
        F_ROW(2, s2, s6);
        F_ROW(3, s3, s7);
    }
    const __m256 acc[8] = TILE_ACC_ARRAY;
    return g_reduce8(acc);
}

static void f_rows(const kern_gemm_job *j, int64_t r0, int64_t r1, f_unpack_fn unpack) {
    f_panel p;
    for (int64_t rb = r0; rb < r1; rb += GR) {
        const int nr = (int)(r1 - rb < GR ? r1 - rb : GR);
        for (int64_t i0 = 0; i0 < j->n_in; i0 += F_KC) {
            const int n = (int)(j->n_in - i0 < F_KC ? j->n_in - i0 : F_KC);
            for (int r = 0; r < GR; r++) {
                if (r < nr) unpack(j->w + (size_t)(rb + r) * j->w_row, i0, n, &p, r);
                else f_zero_slot(&p, n, r);
            }
            for (int t = 0; t < j->T; t += GC) {
                const int nt = j->T - t < GC ? j->T - t : GC;
                const float *y[GC];
                for (int c = 0; c < GC; c++) y[c] = (const float *)(j->act + (size_t)(c < nt ? t + c : t) * j->act_row) + i0;
                g_store(j, f_tile(&p, (n + 7) / 8, y), rb, t, nr, nt, i0 == 0);
            }
        }
    }
}

static void f_rows_f32(const kern_gemm_job *j, int64_t r0, int64_t r1) { f_rows(j, r0, r1, f_unpack_f32); }
static void f_rows_f16(const kern_gemm_job *j, int64_t r0, int64_t r1) { f_rows(j, r0, r1, f_unpack_f16); }
static void f_rows_bf16(const kern_gemm_job *j, int64_t r0, int64_t r1) { f_rows(j, r0, r1, f_unpack_bf16); }

/* ----------------------------------------------------------- install */

void kern_avx2_install_gemm(kern_ops *o) {
    static const struct {
        quant_type type;
        kern_gemm g;
    } k_table[] = {
        {QT_Q4_0, {kern_avx2_b32_act_size, kern_avx2_b32_act_pack, b32_rows_q4_0, GR, B32_MIN_T}},
        {QT_Q4_1, {kern_avx2_b32_act_size, kern_avx2_b32_act_pack, b32_rows_q4_1, GR, B32_MIN_T}},
        {QT_Q5_0, {kern_avx2_b32_act_size, kern_avx2_b32_act_pack, b32_rows_q5_0, GR, B32_MIN_T}},
        {QT_Q5_1, {kern_avx2_b32_act_size, kern_avx2_b32_act_pack, b32_rows_q5_1, GR, B32_MIN_T}},
        {QT_Q8_0, {kern_avx2_b32_act_size, kern_avx2_b32_act_pack, b32_rows_q8_0, GR, B32_MIN_T}},
        {QT_Q2_K, {k_act_size, k_act_pack, k_rows_q2_K, GR, K_MIN_T}},
        {QT_Q3_K, {k_act_size, k_act_pack, k_rows_q3_K, GR, K_MIN_T}},
        {QT_Q4_K, {k_act_size, k_act_pack, k_rows_q4_K, GR, K_MIN_T}},
        {QT_Q5_K, {k_act_size, k_act_pack, k_rows_q5_K, GR, K_MIN_T}},
        {QT_Q6_K, {k_act_size, k_act_pack, k_rows_q6_K, GR, K_MIN_T}},
        {QT_F32, {f_act_size, f_act_pack_f32, f_rows_f32, GR, F_MIN_T}},
        {QT_F16, {f_act_size, f_act_pack_f16, f_rows_f16, GR, F_MIN_T}},
        {QT_BF16, {f_act_size, f_act_pack_bf16, f_rows_bf16, GR, F_MIN_T}},
    };
    for (size_t i = 0; i < sizeof k_table / sizeof k_table[0]; i++) o->gemm[k_table[i].type] = k_table[i].g;
}

#if defined(__clang__)
#pragma clang attribute pop
#endif

#else
typedef int kern_x86_avx2_gemm_unused; /* not an x86 build: nothing here */
#endif
