/*
 * Attention inner loops over the KV cache: q.k scores and the weighted sum
 * of values, for one query head against P cached rows. The cache stores K and
 * V in half precision (as llama.cpp does by default, halving its memory) or,
 * optionally, as Q8_0 blocks (llama.cpp's -ctk/-ctv q8_0 layout: 32 int8 and
 * a half scale per block, about half the size of f16 again); the query,
 * scores and output stay f32. Against a Q8_0 cache the query is quantized to
 * Q8_0 once per call and the scores are int8 block dots, as llama.cpp's CPU
 * flash attention does. Dispatched at run time like every kernel
 * (kernels.h: kern_level_get, PL_KERNELS); the scalar references are in attn.c.
 */
#ifndef PL_ATTN_H
#define PL_ATTN_H

#include "../quant/quant.h"

/* Largest head size a Q8_0 cache serves (the quantized query lives on the
 * stack: 34 bytes per 32 values). */
#define KERN_ATTN_MAX_D 1024

/* Type-generic entry points for the forward pass, for a cache of type kv:
 * QT_F16, or QT_Q8_0 (anything else is read as f16). Rows are `stride` BYTES
 * apart; k and v point at the head's first value in row 0. A Q8_0 head must
 * start on a block (D % 32 == 0, D <= KERN_ATTN_MAX_D). */
/* dst = the n values of src as a cache row of type kv. */
void kern_kv_store(quant_type kv, void *dst, const float *src, int n);
/* scores[p] = scale * dot(q, row p) for p < P. */
void kern_attn_scores(quant_type kv, float *scores, const float *q, const void *k, size_t stride, int P, int D,
                      float scale);
/* out[d] = sum_p w[p] * row p [d] for d < D. */
void kern_attn_values(quant_type kv, float *out, const float *w, const void *v, size_t stride, int P, int D);

/* F16 rows (strides in halves). */
/* scores[p] = scale * dot(q, k + p*stride) for p < P; k rows of D halves. */
void kern_attn_scores_f16(float *scores, const float *q, const pl_fp16 *k, size_t stride, int P, int D,
                          float scale);
/* out[d] = sum_p w[p] * v[p*stride + d] for d < D. */
void kern_attn_values_f16(float *out, const float *w, const pl_fp16 *v, size_t stride, int P, int D);
/* dst[i] = fp16(src[i]) for n values. */
void kern_f32_to_f16_row(pl_fp16 *dst, const float *src, int n);

/* Q8_0 rows (strides in bytes; D % 32 == 0). q: the query as D/32 Q8_0
 * blocks (quant_q8_0_from_float of the f32 query). */
/* scores[p] = scale * sum_b d_q[b] d_k[b] sum_i q[b][i] k[b][i] (a Q8_0 vec_dot per row). */
void kern_attn_scores_q8_0(float *scores, const block_q8_0 *q, const void *k, size_t stride, int P, int D,
                           float scale);
/* out[d] = sum_p w[p] * d_v(p, d/32) * qs_v(p, d). */
void kern_attn_values_q8_0(float *out, const float *w, const void *v, size_t stride, int P, int D);

#endif
