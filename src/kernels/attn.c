/*
 * F16 KV-cache attention loops: the scalar references (table lookup for the
 * half -> float conversion, so each element costs a load, not bit twiddling)
 * and the public entry points, which call through the kernel dispatch table
 * (kern_impl.h) so that the SIMD versions (x86_avx2_ops.c) are chosen at run
 * time with every other kernel and PL_KERNELS applies to them too.
 */
#include "attn.h"
#include "kern_impl.h"

#include <pthread.h>
#include <string.h>

static float g_f16_table[1 << 16];
static pthread_once_t g_table_once = PTHREAD_ONCE_INIT;

static void attn_table_init(void) {
    for (uint32_t i = 0; i < (1u << 16); i++) g_f16_table[i] = pl_fp16_to_f32((pl_fp16)i);
}

void kern_ref_attn_scores_f16(float *scores, const float *q, const pl_fp16 *k, size_t stride, int P, int D,
                              float scale) {
    pthread_once(&g_table_once, attn_table_init);
    for (int p = 0; p < P; p++) {
        const pl_fp16 *kr = k + (size_t)p * stride;
        float s = 0.0f;
        for (int d = 0; d < D; d++) s += q[d] * g_f16_table[kr[d]];
        scores[p] = s * scale;
    }
}

void kern_ref_attn_values_f16(float *out, const float *w, const pl_fp16 *v, size_t stride, int P, int D) {
    pthread_once(&g_table_once, attn_table_init);
    memset(out, 0, sizeof(float) * (size_t)D);
    for (int p = 0; p < P; p++) {
        const pl_fp16 *vr = v + (size_t)p * stride;
        for (int d = 0; d < D; d++) out[d] += w[p] * g_f16_table[vr[d]];
    }
}

void kern_attn_scores_f16(float *scores, const float *q, const pl_fp16 *k, size_t stride, int P, int D,
                          float scale) {
    kern_ops_get()->attn_scores_f16(scores, q, k, stride, P, D, scale);
}

void kern_attn_values_f16(float *out, const float *w, const pl_fp16 *v, size_t stride, int P, int D) {
    kern_ops_get()->attn_values_f16(out, w, v, stride, P, D);
}

void kern_f32_to_f16_row(pl_fp16 *dst, const float *src, int n) { kern_ops_get()->from_float[QT_F16](src, dst, n); }
