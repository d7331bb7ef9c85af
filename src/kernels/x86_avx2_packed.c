/*
 * x86_avx2_packed: AVX2 matmul on Q4_0, Q8_0, Q4_K and Q6_K weights packed 8 rows
 * at a time (pack.c's layouts), for decode and prompts alike.
 *
 * Q4_0 below; Q8_0 (signed levels: |w| times activations signed by w),
 * Q4_K (same scheme per 32-element sub-block, with its 6-bit scales and mins
 * applied per row lane by madd with int16 pairs) and Q6_K (int8 scales per
 * 16-element sub-block, the same way) further down.
 *
 * Per block column of a group: one F16C conversion gives the 8 rows' scales;
 * each of four 32-byte loads gives 8 levels of every row, split into low and
 * high nibbles (two vectors, each 4 levels of each row in its 32-bit lane)
 * once for up to 4 tokens. Per token: each nibble vector is multiplied
 * (maddubs) by the 4 activation bytes of its slice broadcast to all lanes,
 * the int16 pair sums are added as int16 (|sum| <= 8 * 2 * 15 * 128 < 2^15)
 * into one running sum per token, and one madd turns it into each row's
 * int32 block sum of level * q8. The -8
 * offset of Q4_0 comes off in float through the activation's per-block
 * scale * sum (kern_avx2_b32_act_pack): d_w * (d_y * sum(l * q) - 8 * d_y * sum(q)).
 * The integer sums are exact; only float rounding order differs from the
 * reference dot.
 */
#if defined(__x86_64__) || defined(__i386__)

#include "kern_impl.h"

/* PK_VNNI: 0 here; x86_avxvnni_packed.c (1: AVX-VNNI) and
 * x86_avx512_packed.c (2: AVX512-VNNI on 256-bit vectors) compile this file
 * again with their own target, where the Q4_0, Q8_0 and Q4_K kernels
 * accumulate with VPDPBUSD (u8 x s8, 4 products into an int32 lane: one
 * instruction for maddubs + madd + add; Q4_K then scales its int32 sub-block
 * sums by mullo instead of madd on int16 sums). */
#ifndef PK_VNNI
#define PK_VNNI 0
#define PK_INSTALL kern_avx2_install_packed
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx2,fma,f16c"))), apply_to = function)
#elif defined(__GNUC__)
#pragma GCC target("avx2,fma,f16c")
#endif
#endif

#if PK_VNNI == 1
#define PK_DPBUSD(acc, u, s) _mm256_dpbusd_avx_epi32(acc, u, s)
#elif PK_VNNI == 2
#define PK_DPBUSD(acc, u, s) _mm256_dpbusd_epi32(acc, u, s)
#endif

#include "x86_avx2_util.h"

enum { PK_ROWS = 8, PK_BLOCK = 8 * 18, PK8_BLOCK = 8 * 34, PK_MAX_NT = 4 };

/* The token and chunk loops unrolled, so the per-token accumulators live in
 * registers (GCC -O2 otherwise keeps the arrays on the stack). */
#if defined(__clang__)
#define PK_UNROLL _Pragma("unroll")
#define PK_UNROLL8 _Pragma("unroll")
#elif defined(__GNUC__)
#define PK_UNROLL _Pragma("GCC unroll 4")
#define PK_UNROLL8 _Pragma("GCC unroll 8")
#else
#define PK_UNROLL
#define PK_UNROLL8
#endif

/* Keeps a running sum in a register, summed in program order: GCC otherwise
 * reassociates an unrolled chain of integer adds into a tree and keeps its
 * many products on the stack (measured 1.6x slower on Q4_K prompts). */
#define PK_PIN(v) __asm__("" : "+x"(v))

static inline __m256i pk_bcast(const int8_t *p) {
    int32_t v;
    memcpy(&v, p, sizeof v);
    return _mm256_set1_epi32(v);
}

/* Rows [8g, 8g + 8) times tokens [t0, t0 + nt), nt <= PK_MAX_NT, written to Y. */
static inline __attribute__((always_inline)) void pk_group(const kern_gemm_job *j, const uint8_t *grp, int64_t nb,
                                                           int64_t row0, int t0, const int nt) {
    const int64_t nbp = (nb + 7) / 8 * 8;
    const int8_t *q[PK_MAX_NT];
    const float *dy[PK_MAX_NT], *ys[PK_MAX_NT];
    __m256 acc[PK_MAX_NT];
    PK_UNROLL
    for (int t = 0; t < nt; t++) {
        q[t] = (const int8_t *)(j->act + (size_t)(t0 + t) * j->act_row);
        dy[t] = (const float *)(q[t] + j->n_in);
        ys[t] = dy[t] + nbp;
        acc[t] = _mm256_setzero_ps();
    }
    const __m256i m4 = _mm256_set1_epi8(0xF), ones = _mm256_set1_epi16(1);
    (void)ones; /* the VNNI variant sums in int32 directly */
    const __m256 eight = _mm256_set1_ps(8.0f);
    const uint8_t *o = grp;
    for (int64_t b = 0; b < nb; b++, o += PK_BLOCK) {
        const __m256 dw = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)o));
        __m256i s[PK_MAX_NT];
        PK_UNROLL
        for (int t = 0; t < nt; t++) s[t] = _mm256_setzero_si256();
        PK_UNROLL
        for (int k = 0; k < 4; k++) {
            const __m256i w = a2_load(o + 16 + 32 * k);
            const __m256i lo = _mm256_and_si256(w, m4), hi = _mm256_and_si256(_mm256_srli_epi16(w, 4), m4);
            PK_UNROLL
            for (int t = 0; t < nt; t++) {
                const int8_t *y = q[t] + 32 * b + 4 * k;
#if PK_VNNI
                s[t] = PK_DPBUSD(s[t], lo, pk_bcast(y));
                s[t] = PK_DPBUSD(s[t], hi, pk_bcast(y + 16));
#else
                s[t] = _mm256_add_epi16(s[t], _mm256_maddubs_epi16(lo, pk_bcast(y)));
                s[t] = _mm256_add_epi16(s[t], _mm256_maddubs_epi16(hi, pk_bcast(y + 16)));
#endif
                PK_PIN(s[t]);
            }
        }
        PK_UNROLL
        for (int t = 0; t < nt; t++) {
#if PK_VNNI
            const __m256i si = s[t]; /* already int32 */
#else
            const __m256i si = _mm256_madd_epi16(s[t], ones);
#endif
            const __m256 v = _mm256_fmsub_ps(_mm256_cvtepi32_ps(si),
                                             _mm256_broadcast_ss(&dy[t][b]),
                                             _mm256_mul_ps(eight, _mm256_broadcast_ss(&ys[t][b])));
            acc[t] = _mm256_fmadd_ps(dw, v, acc[t]);
        }
    }
    PK_UNROLL
    for (int t = 0; t < nt; t++) {
        float *out = j->Y + (size_t)(t0 + t) * (size_t)j->ldy + row0;
        const __m256 bias = j->bias ? _mm256_loadu_ps(j->bias + row0) : _mm256_setzero_ps();
        _mm256_storeu_ps(out, _mm256_add_ps(acc[t], bias));
    }
}

static void pk_rows_q4_0(const kern_gemm_job *j, int64_t r0, int64_t r1) {
    const int64_t nb = j->n_in / 32;
    for (int64_t g = r0 / PK_ROWS; g < r1 / PK_ROWS; g++) {
        const uint8_t *grp = j->w + (size_t)g * PK_ROWS * j->w_row;
        int t = 0;
        for (; t + 4 <= j->T; t += 4) pk_group(j, grp, nb, g * PK_ROWS, t, 4);
        switch (j->T - t) {
        case 3: pk_group(j, grp, nb, g * PK_ROWS, t, 3); break;
        case 2: pk_group(j, grp, nb, g * PK_ROWS, t, 2); break;
        case 1: pk_group(j, grp, nb, g * PK_ROWS, t, 1); break;
        default: break;
        }
    }
}

/* ------------------------------------------------------------- Q8_0 */

/* Rows [8g, 8g + 8) of packed Q8_0 times tokens [t0, t0 + nt), written to Y.
 * The levels are signed, so each chunk's |w| is taken once for the tokens
 * and each token's broadcast bytes are signed by w (maddubs needs one
 * unsigned operand; |w| <= 128 and |q| <= 127 keep each pair sum below
 * 2^15). Pair sums go to int32 by madd per chunk: two chunks' int16 sums
 * could overflow. */
static inline __attribute__((always_inline)) void pk8_group(const kern_gemm_job *j, const uint8_t *grp, int64_t nb,
                                                            int64_t row0, int t0, const int nt) {
    const int8_t *q[PK_MAX_NT];
    const float *dy[PK_MAX_NT];
    __m256 acc[PK_MAX_NT];
    PK_UNROLL
    for (int t = 0; t < nt; t++) {
        q[t] = (const int8_t *)(j->act + (size_t)(t0 + t) * j->act_row);
        dy[t] = (const float *)(q[t] + j->n_in);
        acc[t] = j->bias ? _mm256_loadu_ps(j->bias + row0) : _mm256_setzero_ps();
    }
    const __m256i ones = _mm256_set1_epi16(1);
    (void)ones;
    const uint8_t *o = grp;
    for (int64_t b = 0; b < nb; b++, o += PK8_BLOCK) {
        __m256i s[PK_MAX_NT];
        PK_UNROLL
        for (int t = 0; t < nt; t++) s[t] = _mm256_setzero_si256();
        PK_UNROLL8
        for (int k = 0; k < 8; k++) {
            const __m256i w = a2_load(o + 16 + 32 * k), aw = _mm256_abs_epi8(w);
            PK_UNROLL
            for (int t = 0; t < nt; t++) {
                const __m256i y = _mm256_sign_epi8(pk_bcast(q[t] + 32 * b + 4 * k), w);
#if PK_VNNI
                s[t] = PK_DPBUSD(s[t], aw, y);
#else
                s[t] = _mm256_add_epi32(s[t], _mm256_madd_epi16(_mm256_maddubs_epi16(aw, y), ones));
#endif
                PK_PIN(s[t]);
            }
        }
        const __m256 dw = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)o));
        PK_UNROLL
        for (int t = 0; t < nt; t++)
            acc[t] = _mm256_fmadd_ps(_mm256_mul_ps(dw, _mm256_broadcast_ss(&dy[t][b])), _mm256_cvtepi32_ps(s[t]), acc[t]);
    }
    PK_UNROLL
    for (int t = 0; t < nt; t++) _mm256_storeu_ps(j->Y + (size_t)(t0 + t) * (size_t)j->ldy + row0, acc[t]);
}

static void pk_rows_q8_0(const kern_gemm_job *j, int64_t r0, int64_t r1) {
    const int64_t nb = j->n_in / 32;
    for (int64_t g = r0 / PK_ROWS; g < r1 / PK_ROWS; g++) {
        const uint8_t *grp = j->w + (size_t)g * PK_ROWS * j->w_row;
        int t = 0;
        for (; t + 4 <= j->T; t += 4) pk8_group(j, grp, nb, g * PK_ROWS, t, 4);
        switch (j->T - t) {
        case 3: pk8_group(j, grp, nb, g * PK_ROWS, t, 3); break;
        case 2: pk8_group(j, grp, nb, g * PK_ROWS, t, 2); break;
        case 1: pk8_group(j, grp, nb, g * PK_ROWS, t, 1); break;
        default: break;
        }
    }
}

/* ------------------------------------------------------------- Q4_K */

/* Lane r = the int16 pair (v[r], v[r]) of 8 bytes v, for madd. */
static inline __m256i pk_dup_pairs(__m256i bcast8) {
    const __m256i ctl = _mm256_setr_epi8(0, -1, 0, -1, 1, -1, 1, -1, 2, -1, 2, -1, 3, -1, 3, -1,
                                         4, -1, 4, -1, 5, -1, 5, -1, 6, -1, 6, -1, 7, -1, 7, -1);
    return _mm256_shuffle_epi8(bcast8, ctl);
}

/* Lane r = the int16 pair (a[r], b[r]) of 16 bytes a, b (both halves). */
static inline __m256i pk_mix_pairs(__m256i bcast16) {
    const __m256i ctl = _mm256_setr_epi8(0, -1, 8, -1, 1, -1, 9, -1, 2, -1, 10, -1, 3, -1, 11, -1,
                                         4, -1, 12, -1, 5, -1, 13, -1, 6, -1, 14, -1, 7, -1, 15, -1);
    return _mm256_shuffle_epi8(bcast16, ctl);
}

/* A unit's scales as madd operands: sc[s] lane r = (scale, scale) of row r,
 * sub-block s; mp[q] lane r = (min of sub-block 2q, min of 2q + 1). */
static inline void pk_q4_K_scales(const uint8_t *u, __m256i sc[8], __m256i mp[4]) {
    const __m256i m4 = _mm256_set1_epi8(0xF), l0 = a2_load(u + 32), l1 = a2_load(u + 64), h = a2_load(u + 96);
    /* 64 entries 8s + r as bytes: s = 0..3 in the first vector, 4..7 in the second */
    const __m256i s0 = _mm256_or_si256(_mm256_and_si256(l0, m4),
                                       _mm256_slli_epi16(_mm256_and_si256(h, _mm256_set1_epi8(0x03)), 4));
    const __m256i n0 = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l0, 4), m4),
                                       _mm256_slli_epi16(_mm256_and_si256(h, _mm256_set1_epi8(0x0C)), 2));
    const __m256i s1 = _mm256_or_si256(_mm256_and_si256(l1, m4), _mm256_and_si256(h, _mm256_set1_epi8(0x30)));
    const __m256i n1 = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l1, 4), m4),
                                       _mm256_and_si256(_mm256_srli_epi16(h, 2), _mm256_set1_epi8(0x30)));
    sc[0] = pk_dup_pairs(_mm256_permute4x64_epi64(s0, 0x00));
    sc[1] = pk_dup_pairs(_mm256_permute4x64_epi64(s0, 0x55));
    sc[2] = pk_dup_pairs(_mm256_permute4x64_epi64(s0, 0xAA));
    sc[3] = pk_dup_pairs(_mm256_permute4x64_epi64(s0, 0xFF));
    sc[4] = pk_dup_pairs(_mm256_permute4x64_epi64(s1, 0x00));
    sc[5] = pk_dup_pairs(_mm256_permute4x64_epi64(s1, 0x55));
    sc[6] = pk_dup_pairs(_mm256_permute4x64_epi64(s1, 0xAA));
    sc[7] = pk_dup_pairs(_mm256_permute4x64_epi64(s1, 0xFF));
    mp[0] = pk_mix_pairs(_mm256_permute4x64_epi64(n0, 0x44)); /* qwords 0,1,0,1 */
    mp[1] = pk_mix_pairs(_mm256_permute4x64_epi64(n0, 0xEE)); /* 2,3,2,3 */
    mp[2] = pk_mix_pairs(_mm256_permute4x64_epi64(n1, 0x44));
    mp[3] = pk_mix_pairs(_mm256_permute4x64_epi64(n1, 0xEE));
}

/* One unit against nt tokens' Q8_K blocks, added to the 8 rows of each
 * token's sums in out[t]: per sub-block pair, each of the 8 chunks is loaded
 * and split into low and high levels once for all nt tokens, whose int16
 * pair sums (8 per sub-block, |sum| <= 8 * 2 * 15 * 128) are scaled per row
 * by madd with the scale pairs; the mins go through the 16-element sums of
 * the activations. */
static inline __attribute__((always_inline)) void pk_q4_K_units(const uint8_t *u, const block_q8_K *const y[],
                                                                const int nt, const __m256i sc[8],
                                                                const __m256i mp[4], __m256 dw, __m256 dm,
                                                                float *const out[]) {
    const __m256i m4 = _mm256_set1_epi8(0xF), ones = _mm256_set1_epi16(1);
    __m256i isum[PK_MAX_NT];
    PK_UNROLL
    for (int t = 0; t < nt; t++) isum[t] = _mm256_setzero_si256();
    for (int p = 0; p < 4; p++) {
        const uint8_t *c = u + 128 + 256 * p;
        __m256i lo[PK_MAX_NT], hi[PK_MAX_NT];
        PK_UNROLL
        for (int t = 0; t < nt; t++) lo[t] = hi[t] = _mm256_setzero_si256();
        PK_UNROLL8
        for (int k = 0; k < 8; k++) {
            const __m256i w = a2_load(c + 32 * k);
            const __m256i l = _mm256_and_si256(w, m4), h = _mm256_and_si256(_mm256_srli_epi16(w, 4), m4);
            PK_UNROLL
            for (int t = 0; t < nt; t++) {
                const int8_t *q8 = y[t]->qs + 64 * p + 4 * k;
#if PK_VNNI
                lo[t] = PK_DPBUSD(lo[t], l, pk_bcast(q8));
                hi[t] = PK_DPBUSD(hi[t], h, pk_bcast(q8 + 32));
#else
                lo[t] = _mm256_add_epi16(lo[t], _mm256_maddubs_epi16(l, pk_bcast(q8)));
                hi[t] = _mm256_add_epi16(hi[t], _mm256_maddubs_epi16(h, pk_bcast(q8 + 32)));
#endif
                PK_PIN(lo[t]);
                PK_PIN(hi[t]);
            }
        }
#if PK_VNNI
        /* int32 sub-block sums times each row's scale: the low half of its pair */
        const __m256i m16 = _mm256_set1_epi32(0xFFFF);
        const __m256i s0 = _mm256_and_si256(sc[2 * p], m16), s1 = _mm256_and_si256(sc[2 * p + 1], m16);
        PK_UNROLL
        for (int t = 0; t < nt; t++)
            isum[t] = _mm256_add_epi32(isum[t], _mm256_add_epi32(_mm256_mullo_epi32(lo[t], s0),
                                                                 _mm256_mullo_epi32(hi[t], s1)));
#else
        PK_UNROLL
        for (int t = 0; t < nt; t++)
            isum[t] = _mm256_add_epi32(isum[t], _mm256_add_epi32(_mm256_madd_epi16(lo[t], sc[2 * p]),
                                                                 _mm256_madd_epi16(hi[t], sc[2 * p + 1])));
#endif
    }
    PK_UNROLL
    for (int t = 0; t < nt; t++) {
        /* sub-block sums of the activations as int16 (|sum| <= 32 * 127), pairs
         * (2q, 2q + 1) in int32 lanes 0, 1 (low half) and 4, 5 (high half) */
        const __m256i ys = _mm256_madd_epi16(a2_load(y[t]->bsums), ones);
        const __m256i ys16 = _mm256_packs_epi32(ys, ys);
        __m256i msum = _mm256_madd_epi16(mp[0], _mm256_permutevar8x32_epi32(ys16, _mm256_set1_epi32(0)));
        msum = _mm256_add_epi32(msum, _mm256_madd_epi16(mp[1], _mm256_permutevar8x32_epi32(ys16, _mm256_set1_epi32(1))));
        msum = _mm256_add_epi32(msum, _mm256_madd_epi16(mp[2], _mm256_permutevar8x32_epi32(ys16, _mm256_set1_epi32(4))));
        msum = _mm256_add_epi32(msum, _mm256_madd_epi16(mp[3], _mm256_permutevar8x32_epi32(ys16, _mm256_set1_epi32(5))));
        const __m256 dy = _mm256_set1_ps(y[t]->d);
        __m256 acc = _mm256_fmadd_ps(_mm256_mul_ps(dw, dy), _mm256_cvtepi32_ps(isum[t]), _mm256_loadu_ps(out[t]));
        _mm256_storeu_ps(out[t], _mm256_fnmadd_ps(_mm256_mul_ps(dm, dy), _mm256_cvtepi32_ps(msum), acc));
    }
}

/* ------------------------------------------------------------- Q6_K */

/* Levels from a triple (A, B, H) of a unit (pack.c): j = 0, 1 take the low
 * nibbles of A and B, j = 2, 3 their high nibbles, each with its 2 bits of H
 * (bits 2j, 2j + 1) as bits 4-5; 4 levels (0..63) of each row in its lane. */
static inline __attribute__((always_inline)) void pk_q6_levels(const uint8_t *c, __m256i v[4]) {
    const __m256i m4 = _mm256_set1_epi8(0xF), m30 = _mm256_set1_epi8(0x30);
    const __m256i a = a2_load(c), b = a2_load(c + 32), h = a2_load(c + 64);
    v[0] = _mm256_or_si256(_mm256_and_si256(a, m4), _mm256_and_si256(_mm256_slli_epi16(h, 4), m30));
    v[1] = _mm256_or_si256(_mm256_and_si256(b, m4), _mm256_and_si256(_mm256_slli_epi16(h, 2), m30));
    v[2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(a, 4), m4), _mm256_and_si256(h, m30));
    v[3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(b, 4), m4),
                           _mm256_and_si256(_mm256_srli_epi16(h, 2), m30));
}

/* A unit's scales as madd operands: sc[s] lane r = (scale, scale) of row r,
 * sub-block s; mx[q] lane r = (scale of 2q, scale of 2q + 1). */
static inline void pk_q6_K_scales(const uint8_t *u, __m256i sc[16], __m256i mx[8]) {
    __m256i x[16];
    for (int s = 0; s < 16; s++) {
        x[s] = _mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(u + 16 + 8 * s)));
        sc[s] = _mm256_blend_epi16(x[s], _mm256_slli_epi32(x[s], 16), 0xAA);
    }
    for (int q = 0; q < 8; q++) mx[q] = _mm256_blend_epi16(x[2 * q], _mm256_slli_epi32(x[2 * q + 1], 16), 0xAA);
}

/* One unit against nt tokens' Q8_K blocks, added to each token's 8 row sums
 * in out[t]. Per sub-block, two chunks' maddubs pair sums add as int16
 * (|sum| <= 2 * 2 * 63 * 128 < 2^15), then one madd applies each row's
 * scale; the levels' +32 comes off through the activations' 16-element sums
 * (32 * sum over s of scale * bsum, by madd with the scale pairs). */
static inline __attribute__((always_inline)) void pk_q6_K_units(const uint8_t *u, const block_q8_K *const y[],
                                                                const int nt, const __m256i sc[16],
                                                                const __m256i mx[8], __m256 dw, float *const out[]) {
    __m256i isum[PK_MAX_NT];
    PK_UNROLL
    for (int t = 0; t < nt; t++) {
        __m256i off = _mm256_setzero_si256();
        for (int q = 0; q < 8; q++) {
            int32_t bs;
            memcpy(&bs, y[t]->bsums + 2 * q, sizeof bs);
            off = _mm256_add_epi32(off, _mm256_madd_epi16(mx[q], _mm256_set1_epi32(bs)));
        }
        isum[t] = _mm256_sub_epi32(_mm256_setzero_si256(), _mm256_slli_epi32(off, 5));
    }
    /* triples 8n + 2kk and 8n + 2kk + 1 hold levels 128n + 32j + 8kk.. (4 + 4)
     * of sub-block 8n + 2j + kk / 2, for each j */
    for (int n = 0; n < 2; n++) {
        PK_UNROLL
        for (int kk = 0; kk < 4; kk++) {
            __m256i v0[4], v1[4];
            pk_q6_levels(u + 144 + 96 * (8 * n + 2 * kk), v0);
            pk_q6_levels(u + 144 + 96 * (8 * n + 2 * kk + 1), v1);
            PK_UNROLL
            for (int j = 0; j < 4; j++) {
                const __m256i s = sc[8 * n + 2 * j + kk / 2];
                PK_UNROLL
                for (int t = 0; t < nt; t++) {
                    const int8_t *q8 = y[t]->qs + 128 * n + 32 * j + 8 * kk;
                    const __m256i p = _mm256_add_epi16(_mm256_maddubs_epi16(v0[j], pk_bcast(q8)),
                                                       _mm256_maddubs_epi16(v1[j], pk_bcast(q8 + 4)));
                    isum[t] = _mm256_add_epi32(isum[t], _mm256_madd_epi16(p, s));
                    PK_PIN(isum[t]);
                }
            }
        }
    }
    PK_UNROLL
    for (int t = 0; t < nt; t++) {
        const __m256 d = _mm256_mul_ps(dw, _mm256_set1_ps(y[t]->d));
        _mm256_storeu_ps(out[t], _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(isum[t]), _mm256_loadu_ps(out[t])));
    }
}

/* ------------------------------------------------- K-quant row groups */

/* A unit's decoded scales (Q4_K: sc[0..7], mins in mx[0..3]) and fp16 d, dmin. */
typedef struct pk_k_unit {
    __m256i sc[16], mx[8];
    __m256 dw, dm;
} pk_k_unit;

static inline __attribute__((always_inline)) void pk_k_units(const uint8_t *u, const block_q8_K *const y[], const int nt,
                                                             const pk_k_unit *k, float *const out[], const int q6) {
    if (q6) pk_q6_K_units(u, y, nt, k->sc, k->mx, k->dw, out);
    else pk_q4_K_units(u, y, nt, k->sc, k->mx, k->dw, k->dm, out);
}

/* Rows [r0, r1) of packed Q4_K (q6 = 0) or Q6_K (1): per group, the 8 rows'
 * running sums of each token live in Y (bias first); per block column, a
 * unit's scales are decoded once and the unit is used for every token,
 * PK_MAX_NT at a time. */
static inline __attribute__((always_inline)) void pk_k_rows(const kern_gemm_job *j, int64_t r0, int64_t r1, const int q6) {
    const int64_t nb = j->n_in / QK_K;
    const size_t unit = PK_ROWS * (q6 ? sizeof(block_q6_K) : sizeof(block_q4_K));
    for (int64_t g = r0 / PK_ROWS; g < r1 / PK_ROWS; g++) {
        const uint8_t *grp = j->w + (size_t)g * PK_ROWS * j->w_row;
        const int64_t row0 = g * PK_ROWS;
        const __m256 bias = j->bias ? _mm256_loadu_ps(j->bias + row0) : _mm256_setzero_ps();
        for (int t = 0; t < j->T; t++) _mm256_storeu_ps(j->Y + (size_t)t * (size_t)j->ldy + row0, bias);
        for (int64_t b = 0; b < nb; b++) {
            const uint8_t *u = grp + (size_t)b * unit;
            pk_k_unit k;
            if (q6) pk_q6_K_scales(u, k.sc, k.mx);
            else pk_q4_K_scales(u, k.sc, k.mx);
            k.dw = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)u));
            k.dm = q6 ? _mm256_setzero_ps() : _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(u + 16)));
            for (int t = 0; t < j->T; t += PK_MAX_NT) {
                const int nt = j->T - t < PK_MAX_NT ? j->T - t : PK_MAX_NT;
                const block_q8_K *y[PK_MAX_NT];
                float *out[PK_MAX_NT];
                for (int c = 0; c < nt; c++) {
                    y[c] = (const block_q8_K *)(j->act + (size_t)(t + c) * j->act_row) + b;
                    out[c] = j->Y + (size_t)(t + c) * (size_t)j->ldy + row0;
                }
                switch (nt) { /* each count compiled with its loops unrolled */
                case 4: pk_k_units(u, y, 4, &k, out, q6); break;
                case 3: pk_k_units(u, y, 3, &k, out, q6); break;
                case 2: pk_k_units(u, y, 2, &k, out, q6); break;
                default: pk_k_units(u, y, 1, &k, out, q6); break;
                }
            }
        }
    }
}

static void pk_rows_q4_K(const kern_gemm_job *j, int64_t r0, int64_t r1) { pk_k_rows(j, r0, r1, 0); }
static void pk_rows_q6_K(const kern_gemm_job *j, int64_t r0, int64_t r1) { pk_k_rows(j, r0, r1, 1); }

void PK_INSTALL(kern_ops *o) {
#if PK_VNNI
    o->packed[QT_Q4_0].rows = pk_rows_q4_0; /* on the AVX2 entries' activations */
    o->packed[QT_Q8_0].rows = pk_rows_q8_0;
    o->packed[QT_Q4_K].rows = pk_rows_q4_K;
    o->packed[QT_Q6_K].rows = pk_rows_q6_K; /* unchanged: two maddubs per madd need no VNNI */
#else
    o->packed[QT_Q4_0] = (kern_gemm){kern_avx2_b32_act_size, kern_avx2_b32_act_pack, pk_rows_q4_0, PK_ROWS, 1};
    o->packed_pays[QT_Q4_0] = true;
    o->packed[QT_Q8_0] = (kern_gemm){kern_avx2_b32_act_size, kern_avx2_b32_act_pack, pk_rows_q8_0, PK_ROWS, 1};
    o->packed_pays[QT_Q8_0] = true;
    o->packed[QT_Q4_K].rows = pk_rows_q4_K; /* the portable entry's Q8_K activations */
    o->packed_pays[QT_Q4_K] = true;
    o->packed[QT_Q6_K].rows = pk_rows_q6_K; /* the portable entry's Q8_K activations */
    o->packed_pays[QT_Q6_K] = true;
    if (kern_cpu_features()->avx_vnni && kern_vnni_packed_wanted()) kern_avxvnni_install_packed(o);
#endif
}

#if defined(__clang__)
#pragma clang attribute pop
#endif

#else
typedef int kern_x86_avx2_packed_unused; /* not an x86 build: nothing here */
#endif
