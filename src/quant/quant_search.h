/*
 * quant_search: quantizers that search for the block scales minimizing the
 * weighted squared error, for the quantize tool. Same block layouts and
 * decoders as the reference quantizers of quant_ref.h (which reproduce
 * llama-quantize's bytes and stay the traits table's from_float); these
 * trade time (a few times the reference's) for lower error.
 *
 * Error weights: element i of a row gets imp[i] * sqrt(s2 + x_i^2) with s2
 * the row's mean square (imp NULL: 1): large weights matter more, none counts
 * for nothing (llama.cpp's weighting on its importance-matrix path). Scales
 * are fitted without shrinkage (the error is kept uncorrelated with the
 * values; see qs_scale). Each block is compared, as it decodes, with the
 * reference quantizer's block and the one with the lower weighted error is
 * written, so the result is never worse than the reference under this
 * measure.
 */
#ifndef PL_QUANT_SEARCH_H
#define PL_QUANT_SEARCH_H

#include "quant.h"

#include <stdbool.h>

/* Whether quant_search_rows handles `type` (every quantized storage type;
 * not the float types nor the activation types Q8_1/Q8_K). */
bool quant_search_supported(uint32_t type);

/* Whether the search is the better default for `type` than the reference
 * quantizer (measured by perplexity; see the table in quant_search.c). */
bool quant_search_preferred(uint32_t type);

/* Quantize nrows rows of n_per_row floats (a multiple of the type's block)
 * into y, rows contiguous. imp: n_per_row non-negative column importances, or
 * NULL. The type must be supported. */
void quant_search_rows(uint32_t type, const float *x, void *y, int64_t nrows, int64_t n_per_row, const float *imp);

#endif
