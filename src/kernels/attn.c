/*
 * F16 KV-cache attention loops: a scalar reference (table lookup for the
 * half -> float conversion, so each element costs a load, not bit twiddling)
 * and an x86 F16C/FMA version compiled with a function-level target attribute
 * and picked at run time, so the baseline binary still runs on any x86-64.
 */
#include "attn.h"

#include <pthread.h>
#include <string.h>

#if defined(__x86_64__) && defined(__GNUC__)
#include <cpuid.h>
#include <immintrin.h>
#define ATTN_X86 1

/* AVX2 + FMA + F16C, and the OS saves YMM state (XCR0 bits 1-2). */
static int cpu_has_f16c_avx2(void) {
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return 0;
    const int fma = (c >> 12) & 1, osxsave = (c >> 27) & 1, f16c = (c >> 29) & 1;
    if (!fma || !osxsave || !f16c) return 0;
    unsigned lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    if ((lo & 6) != 6) return 0;
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return 0;
    return (b >> 5) & 1; /* AVX2 */
}
#endif

static float g_f16_table[1 << 16];
static pthread_once_t g_table_once = PTHREAD_ONCE_INIT;
static int g_use_f16c;

static void attn_init(void) {
    for (uint32_t i = 0; i < (1u << 16); i++) g_f16_table[i] = pl_fp16_to_f32((pl_fp16)i);
#ifdef ATTN_X86
    g_use_f16c = cpu_has_f16c_avx2();
#endif
}

static void scores_ref(float *scores, const float *q, const pl_fp16 *k, size_t stride, int P, int D, float scale) {
    for (int p = 0; p < P; p++) {
        const pl_fp16 *kr = k + (size_t)p * stride;
        float s = 0.0f;
        for (int d = 0; d < D; d++) s += q[d] * g_f16_table[kr[d]];
        scores[p] = s * scale;
    }
}

static void values_ref(float *out, const float *w, const pl_fp16 *v, size_t stride, int P, int D) {
    memset(out, 0, sizeof(float) * (size_t)D);
    for (int p = 0; p < P; p++) {
        const pl_fp16 *vr = v + (size_t)p * stride;
        for (int d = 0; d < D; d++) out[d] += w[p] * g_f16_table[vr[d]];
    }
}

#ifdef ATTN_X86
__attribute__((target("avx2,fma,f16c"))) static float hsum256(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

__attribute__((target("avx2,fma,f16c"))) static void scores_f16c(float *scores, const float *q, const pl_fp16 *k,
                                                                 size_t stride, int P, int D, float scale) {
    const int D8 = D & ~7;
    for (int p = 0; p < P; p++) {
        const pl_fp16 *kr = k + (size_t)p * stride;
        __m256 acc = _mm256_setzero_ps();
        int d = 0;
        for (; d < D8; d += 8)
            acc = _mm256_fmadd_ps(_mm256_loadu_ps(q + d),
                                  _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(kr + d))), acc);
        float s = hsum256(acc);
        for (; d < D; d++) s += q[d] * g_f16_table[kr[d]];
        scores[p] = s * scale;
    }
}

__attribute__((target("avx2,fma,f16c"))) static void values_f16c(float *out, const float *w, const pl_fp16 *v,
                                                                 size_t stride, int P, int D) {
    const int D8 = D & ~7;
    int d = 0;
    for (; d < D8; d += 8) {
        __m256 acc = _mm256_setzero_ps();
        for (int p = 0; p < P; p++)
            acc = _mm256_fmadd_ps(_mm256_set1_ps(w[p]),
                                  _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(v + (size_t)p * stride + d))),
                                  acc);
        _mm256_storeu_ps(out + d, acc);
    }
    for (; d < D; d++) {
        float acc = 0.0f;
        for (int p = 0; p < P; p++) acc += w[p] * g_f16_table[v[(size_t)p * stride + d]];
        out[d] = acc;
    }
}
#endif

void kern_attn_scores_f16(float *scores, const float *q, const pl_fp16 *k, size_t stride, int P, int D,
                          float scale) {
    pthread_once(&g_table_once, attn_init);
#ifdef ATTN_X86
    if (g_use_f16c) {
        scores_f16c(scores, q, k, stride, P, D, scale);
        return;
    }
#endif
    scores_ref(scores, q, k, stride, P, D, scale);
}

void kern_attn_values_f16(float *out, const float *w, const pl_fp16 *v, size_t stride, int P, int D) {
    pthread_once(&g_table_once, attn_init);
#ifdef ATTN_X86
    if (g_use_f16c) {
        values_f16c(out, w, v, stride, P, D);
        return;
    }
#endif
    values_ref(out, w, v, stride, P, D);
}

void kern_f32_to_f16_row(pl_fp16 *dst, const float *src, int n) {
    for (int i = 0; i < n; i++) dst[i] = pl_f32_to_fp16(src[i]);
}
