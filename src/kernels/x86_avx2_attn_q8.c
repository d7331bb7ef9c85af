/*
 * x86_avx2_attn_q8: AVX2 + FMA + F16C attention loops over a Q8_0 KV cache
 * (attn.h): a Q8_0 query's scores against cached Q8_0 key rows (int8 block
 * dots, eight rows per step sharing each query block) and the score-weighted
 * sum of Q8_0 value rows (w * scale * int8 accumulated into f32).
 *
 * Scores: the integer block sums are exact (the same integers as the
 * reference Q8_0 vec_dot); only the float accumulation of the block results
 * runs in another order. Values: each block contributes (w[p] * d) * q, as
 * attn.c's reference, with FMA rounding. Int8 operands follow
 * x86_avx2_util.h's rule (cached keys are in [-127, 127], as Q8_0 makes them).
 */
#if defined(__x86_64__) || defined(__i386__)

#include "kern_impl.h"

#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx2,fma,f16c"))), apply_to = function)
#elif defined(__GNUC__)
#pragma GCC target("avx2,fma,f16c")
#endif

#include "x86_avx2_util.h"

static inline const block_q8_0 *a2q_row(const void *base, size_t stride, int p) {
    return (const block_q8_0 *)((const uint8_t *)base + (size_t)p * stride);
}

/* The half scales of block b of 8 rows from p, as 8 floats. */
static inline __m256 a2q_scales8(const void *base, size_t stride, int p, int b) {
    const __m128i h = _mm_setr_epi16((short)a2q_row(base, stride, p)[b].d, (short)a2q_row(base, stride, p + 1)[b].d,
                                     (short)a2q_row(base, stride, p + 2)[b].d, (short)a2q_row(base, stride, p + 3)[b].d,
                                     (short)a2q_row(base, stride, p + 4)[b].d, (short)a2q_row(base, stride, p + 5)[b].d,
                                     (short)a2q_row(base, stride, p + 6)[b].d, (short)a2q_row(base, stride, p + 7)[b].d);
    return _mm256_cvtph_ps(h);
}

/* sum(q * k) of one block as 8 int32 partial sums, the query block given as
 * |q| and q (the sign source). */
static inline __m256i a2q_isum(__m256i qa, __m256i qs, const block_q8_0 *k) {
    return a2_dot_u8(qa, _mm256_sign_epi8(a2_load(k->qs), qs));
}

/* Scores of 8 rows per step: for each block, the 8 rows' integer sums are
 * reduced together by one hadd tree into one vector (lane r: row p + r),
 * converted once and scaled by the 8 rows' block scales. */
static void a2q_attn_scores_q8_0(float *scores, const block_q8_0 *q, const void *k, size_t stride, int P, int D,
                                 float scale) {
    const int nb = D / QK8_0;
    int p = 0;
    for (; p + 8 <= P; p += 8) {
        __m256 acc = _mm256_setzero_ps();
        for (int b = 0; b < nb; b++) {
            const __m256i qs = a2_load(q[b].qs), qa = _mm256_sign_epi8(qs, qs);
            __m256i s[8];
            for (int r = 0; r < 8; r++) s[r] = a2q_isum(qa, qs, &a2q_row(k, stride, p + r)[b]);
            /* lane halves: rows 0..3 then 4..7 of the low 128 bits' partials, and the same of the high */
            const __m256i h0 = _mm256_hadd_epi32(_mm256_hadd_epi32(s[0], s[1]), _mm256_hadd_epi32(s[2], s[3]));
            const __m256i h1 = _mm256_hadd_epi32(_mm256_hadd_epi32(s[4], s[5]), _mm256_hadd_epi32(s[6], s[7]));
            const __m256i lo = _mm256_permute2x128_si256(h0, h1, 0x20), hi = _mm256_permute2x128_si256(h0, h1, 0x31);
            const __m256 d = _mm256_mul_ps(a2q_scales8(k, stride, p, b), _mm256_set1_ps(a2_h2f(q[b].d)));
            acc = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(_mm256_add_epi32(lo, hi)), acc);
        }
        _mm256_storeu_ps(scores + p, _mm256_mul_ps(acc, _mm256_set1_ps(scale)));
    }
    for (; p < P; p++) {
        const block_q8_0 *kr = a2q_row(k, stride, p);
        __m256 a0 = _mm256_setzero_ps();
        for (int b = 0; b < nb; b++) {
            const __m256i qs = a2_load(q[b].qs);
            const __m256i isum = a2q_isum(_mm256_sign_epi8(qs, qs), qs, &kr[b]);
            a0 = _mm256_fmadd_ps(_mm256_set1_ps(a2_h2f(q[b].d) * a2_h2f(kr[b].d)), _mm256_cvtepi32_ps(isum), a0);
        }
        scores[p] = a2_hsum(a0) * scale;
    }
}

/* 8 int8 -> 8 floats. */
static inline __m256 a2q_i8x8(const int8_t *p) {
    return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)p)));
}

/* One 32-value block (the columns of block b) at a time over every
 * position, two positions per step into separate accumulators so the FMA
 * chains overlap. */
static void a2q_attn_values_q8_0(float *out, const float *w, const void *v, size_t stride, int P, int D) {
    const int nb = D / QK8_0;
    for (int b = 0; b < nb; b++) {
        __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, c0 = a0, c1 = a0, c2 = a0, c3 = a0;
        int p = 0;
        for (; p + 2 <= P; p += 2) {
            const block_q8_0 *v0 = a2q_row(v, stride, p) + b, *v1 = a2q_row(v, stride, p + 1) + b;
            const __m256 s0 = _mm256_set1_ps(w[p] * a2_h2f(v0->d)), s1 = _mm256_set1_ps(w[p + 1] * a2_h2f(v1->d));
            a0 = _mm256_fmadd_ps(s0, a2q_i8x8(v0->qs), a0);
            a1 = _mm256_fmadd_ps(s0, a2q_i8x8(v0->qs + 8), a1);
            a2 = _mm256_fmadd_ps(s0, a2q_i8x8(v0->qs + 16), a2);
            a3 = _mm256_fmadd_ps(s0, a2q_i8x8(v0->qs + 24), a3);
            c0 = _mm256_fmadd_ps(s1, a2q_i8x8(v1->qs), c0);
            c1 = _mm256_fmadd_ps(s1, a2q_i8x8(v1->qs + 8), c1);
            c2 = _mm256_fmadd_ps(s1, a2q_i8x8(v1->qs + 16), c2);
            c3 = _mm256_fmadd_ps(s1, a2q_i8x8(v1->qs + 24), c3);
        }
        if (p < P) {
            const block_q8_0 *v0 = a2q_row(v, stride, p) + b;
            const __m256 s0 = _mm256_set1_ps(w[p] * a2_h2f(v0->d));
            a0 = _mm256_fmadd_ps(s0, a2q_i8x8(v0->qs), a0);
            a1 = _mm256_fmadd_ps(s0, a2q_i8x8(v0->qs + 8), a1);
            a2 = _mm256_fmadd_ps(s0, a2q_i8x8(v0->qs + 16), a2);
            a3 = _mm256_fmadd_ps(s0, a2q_i8x8(v0->qs + 24), a3);
        }
        float *o = out + (size_t)b * QK8_0;
        _mm256_storeu_ps(o, _mm256_add_ps(a0, c0));
        _mm256_storeu_ps(o + 8, _mm256_add_ps(a1, c1));
        _mm256_storeu_ps(o + 16, _mm256_add_ps(a2, c2));
        _mm256_storeu_ps(o + 24, _mm256_add_ps(a3, c3));
    }
}

void kern_avx2_install_attn_q8(kern_ops *o) {
    o->attn_scores_q8_0 = a2q_attn_scores_q8_0;
    o->attn_values_q8_0 = a2q_attn_values_q8_0;
}

#if defined(__clang__)
#pragma clang attribute pop
#endif

#else
typedef int kern_x86_avx2_attn_q8_unused; /* not an x86 build: nothing here */
#endif
