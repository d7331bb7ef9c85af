/*
 * Attention inner loops over an F16 KV cache: q.k scores and the weighted sum
 * of values, for one query head against P cached rows. The cache stores K and
 * V in half precision (as llama.cpp does by default), halving its memory; the
 * query, scores and output stay f32. Dispatched at run time like every kernel
 * (kernels.h: kern_level_get, PL_KERNELS); the scalar references are in attn.c.
 */
#ifndef PL_ATTN_H
#define PL_ATTN_H

#include "../quant/quant.h"

/* scores[p] = scale * dot(q, k + p*stride) for p < P; k rows of D halves. */
void kern_attn_scores_f16(float *scores, const float *q, const pl_fp16 *k, size_t stride, int P, int D,
                          float scale);
/* out[d] = sum_p w[p] * v[p*stride + d] for d < D. */
void kern_attn_values_f16(float *out, const float *w, const pl_fp16 *v, size_t stride, int P, int D);
/* dst[i] = fp16(src[i]) for n values. */
void kern_f32_to_f16_row(pl_fp16 *dst, const float *src, int n);

#endif
