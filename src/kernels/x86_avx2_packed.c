/*
 * x86_avx2_packed: AVX2 matmul on Q4_0 weights packed 8 rows at a time
 * (pack.c's x8 layout), for decode and prompts alike.
 *
 * Per block column of a group: one F16C conversion gives the 8 rows' scales;
 * four 32-byte loads give every row's quants, split into low and high nibbles
 * (8 vectors, each 4 levels of each row in its 32-bit lane) once, then reused
 * for up to 4 tokens. Per token: each nibble vector is multiplied (maddubs)
 * by the 4 activation bytes of its slice broadcast to all lanes, the eight
 * int16 pair sums are added as int16 (|sum| <= 8 * 2 * 15 * 128 < 2^15), and
 * one madd turns them into each row's int32 block sum of level * q8. The -8
 * offset of Q4_0 comes off in float through the activation's per-block
 * scale * sum (kern_avx2_b32_act_pack): d_w * (d_y * sum(l * q) - 8 * d_y * sum(q)).
 * The integer sums are exact; only float rounding order differs from the
 * reference dot.
 */
#if defined(__x86_64__) || defined(__i386__)

#include "kern_impl.h"

#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx2,fma,f16c"))), apply_to = function)
#elif defined(__GNUC__)
#pragma GCC target("avx2,fma,f16c")
#endif

#include "x86_avx2_util.h"

enum { PK_ROWS = 8, PK_BLOCK = 8 * 18, PK_MAX_NT = 4 };

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
    for (int t = 0; t < nt; t++) {
        q[t] = (const int8_t *)(j->act + (size_t)(t0 + t) * j->act_row);
        dy[t] = (const float *)(q[t] + j->n_in);
        ys[t] = dy[t] + nbp;
        acc[t] = _mm256_setzero_ps();
    }
    const __m256i m4 = _mm256_set1_epi8(0xF), ones = _mm256_set1_epi16(1);
    const __m256 eight = _mm256_set1_ps(8.0f);
    const uint8_t *o = grp;
    for (int64_t b = 0; b < nb; b++, o += PK_BLOCK) {
        const __m256 dw = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)o));
        __m256i lo[4], hi[4];
        for (int k = 0; k < 4; k++) {
            const __m256i w = a2_load(o + 16 + 32 * k);
            lo[k] = _mm256_and_si256(w, m4);
            hi[k] = _mm256_and_si256(_mm256_srli_epi16(w, 4), m4);
        }
        for (int t = 0; t < nt; t++) {
            const int8_t *y = q[t] + 32 * b;
            __m256i s = _mm256_maddubs_epi16(lo[0], pk_bcast(y));
            s = _mm256_add_epi16(s, _mm256_maddubs_epi16(lo[1], pk_bcast(y + 4)));
            s = _mm256_add_epi16(s, _mm256_maddubs_epi16(lo[2], pk_bcast(y + 8)));
            s = _mm256_add_epi16(s, _mm256_maddubs_epi16(lo[3], pk_bcast(y + 12)));
            s = _mm256_add_epi16(s, _mm256_maddubs_epi16(hi[0], pk_bcast(y + 16)));
            s = _mm256_add_epi16(s, _mm256_maddubs_epi16(hi[1], pk_bcast(y + 20)));
            s = _mm256_add_epi16(s, _mm256_maddubs_epi16(hi[2], pk_bcast(y + 24)));
            s = _mm256_add_epi16(s, _mm256_maddubs_epi16(hi[3], pk_bcast(y + 28)));
            const __m256 v = _mm256_fmsub_ps(_mm256_cvtepi32_ps(_mm256_madd_epi16(s, ones)),
                                             _mm256_broadcast_ss(&dy[t][b]),
                                             _mm256_mul_ps(eight, _mm256_broadcast_ss(&ys[t][b])));
            acc[t] = _mm256_fmadd_ps(dw, v, acc[t]);
        }
    }
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

void kern_avx2_install_packed(kern_ops *o) {
    o->packed[QT_Q4_0] = (kern_gemm){kern_avx2_b32_act_size, kern_avx2_b32_act_pack, pk_rows_q4_0, PK_ROWS, 1};
    o->packed_pays[QT_Q4_0] = true;
}

#if defined(__clang__)
#pragma clang attribute pop
#endif

#else
typedef int kern_x86_avx2_packed_unused; /* not an x86 build: nothing here */
#endif
