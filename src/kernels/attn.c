/*
 * KV-cache attention loops: the scalar references for F16 rows (table lookup
 * for the half -> float conversion, so each element costs a load, not bit
 * twiddling) and for Q8_0 rows (the reference Q8_0 x Q8_0 vec_dot per row for
 * scores, scale * int8 for values), and the public entry points, which call
 * through the kernel dispatch table (kern_impl.h) so that the SIMD versions
 * (x86_avx2_ops.c, x86_avx2_attn_q8.c) are chosen at run time with every
 * other kernel and PL_KERNELS applies to them too.
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

void kern_ref_attn_scores_q8_0(float *scores, const block_q8_0 *q, const void *k, size_t stride, int P, int D,
                               float scale) {
    const quant_vec_dot_fn dot = quant_get(QT_Q8_0)->vec_dot; /* the reference, not the dispatched one */
    for (int p = 0; p < P; p++) {
        float s;
        dot(D, &s, (const uint8_t *)k + (size_t)p * stride, q);
        scores[p] = s * scale;
    }
}

void kern_ref_attn_values_q8_0(float *out, const float *w, const void *v, size_t stride, int P, int D) {
    pthread_once(&g_table_once, attn_table_init);
    memset(out, 0, sizeof(float) * (size_t)D);
    for (int p = 0; p < P; p++) {
        const block_q8_0 *vr = (const block_q8_0 *)((const uint8_t *)v + (size_t)p * stride);
        for (int b = 0; b < D / QK8_0; b++) {
            const float s = w[p] * g_f16_table[vr[b].d];
            for (int i = 0; i < QK8_0; i++) out[b * QK8_0 + i] += s * (float)vr[b].qs[i];
        }
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

void kern_attn_scores_q8_0(float *scores, const block_q8_0 *q, const void *k, size_t stride, int P, int D,
                           float scale) {
    kern_ops_get()->attn_scores_q8_0(scores, q, k, stride, P, D, scale);
}

void kern_attn_values_q8_0(float *out, const float *w, const void *v, size_t stride, int P, int D) {
    kern_ops_get()->attn_values_q8_0(out, w, v, stride, P, D);
}

/* ------------------------------------------------------------ by KV type */

void kern_kv_store(quant_type kv, void *dst, const float *src, int n) {
    kern_ops_get()->from_float[kv == QT_Q8_0 ? QT_Q8_0 : QT_F16](src, dst, n);
}

void kern_attn_scores(quant_type kv, float *scores, const float *q, const void *k, size_t stride, int P, int D,
                      float scale) {
    const kern_ops *o = kern_ops_get();
    if (kv == QT_Q8_0) {
        /* the caller guarantees D <= KERN_ATTN_MAX_D (context creation refuses more) */
        block_q8_0 qq[KERN_ATTN_MAX_D / QK8_0];
        o->from_float[QT_Q8_0](q, qq, D);
        o->attn_scores_q8_0(scores, qq, k, stride, P, D, scale);
    } else {
        o->attn_scores_f16(scores, q, k, stride / sizeof(pl_fp16), P, D, scale);
    }
}

void kern_attn_values(quant_type kv, float *out, const float *w, const void *v, size_t stride, int P, int D) {
    const kern_ops *o = kern_ops_get();
    if (kv == QT_Q8_0) o->attn_values_q8_0(out, w, v, stride, P, D);
    else o->attn_values_f16(out, w, v, stride / sizeof(pl_fp16), P, D);
}
