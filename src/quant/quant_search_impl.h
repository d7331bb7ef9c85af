/*
 * quant_search_impl: what quant_search.c (the fitting helpers, the 32-element
 * block types and the row driver) shares with quant_search_k.c (the
 * K-quants). Internal to the quant module; prefix qs_.
 */
#ifndef PL_QUANT_SEARCH_IMPL_H
#define PL_QUANT_SEARCH_IMPL_H

#include "quant_search.h"

#include "quant_ref.h"

#define QS_EPS 1e-20f

/* Weighted squared error of x ~ d*L + m over n elements. */
float qs_err_affine(int n, const float *x, const float *w, const int *L, float d, float m);
/* L = clamp(round((x - m) / d), lo, hi); 0 (clamped) everywhere when d == 0. */
void qs_round(int n, const float *x, float d, float m, int lo, int hi, int *L);
/* Symmetric fit x ~ d*L, L in [lo, hi] (lo < 0 < hi); returns d, fills L. */
float qs_fit_sym(int n, int lo, int hi, const float *x, const float *w, int ntry, int *L);
/* Affine fit x ~ d*L + m, L in [0, nmax]; nonpos_min keeps m <= 0. Returns d,
 * *m_out gets m, L the levels. */
float qs_fit_affine(int n, int nmax, const float *x, const float *w, bool nonpos_min, int ntry, int *L, float *m_out);
/* v as it survives a round trip through half precision. */
float qs_round_half(float v);

/* One block of each K-quant from 256 values and their weights. */
void qs_block_q2_K(const float *x, const float *w, void *y);
void qs_block_q3_K(const float *x, const float *w, void *y);
void qs_block_q4_K(const float *x, const float *w, void *y);
void qs_block_q5_K(const float *x, const float *w, void *y);
void qs_block_q6_K(const float *x, const float *w, void *y);

#endif
