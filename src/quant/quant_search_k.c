/*
 * quant_search_k: scale search for the K-quants (Q2_K..Q6_K).
 *
 * One routine fits every K-quant from a small description of its format
 * (qs_kspec): sub-blocks of 16 or 32 elements, each with an integer scale
 * (and, for the affine types, an integer min) that multiplies a half-precision
 * super-block scale d (and dmin):
 *     x = d*sc_j*q - dmin*m_j    (affine: Q2_K, Q4_K, Q5_K)
 *     x = d*sc_j*q               (symmetric: Q3_K, Q6_K)
 * Steps: fit every sub-block in float; set d (dmin) from the largest; then,
 * for a few rounds, give each sub-block the best of the integer scales (and
 * mins) next to its current ones, re-rounding its levels, and refit d (dmin)
 * over the whole super-block (without shrinkage, as qs_scale), keeping a
 * round only when it lowers the weighted error. The type's function then packs the result.
 */
#include "quant_search_impl.h"

#include <float.h>

typedef struct qs_kspec {
    int sub;        /* elements per sub-block (16 or 32) */
    int lo, hi;     /* level range */
    int slo, shi;   /* integer scale range */
    int mhi;        /* integer min range [0, mhi]; 0: symmetric type */
    int ntry;       /* candidate grid of the float fits */
} qs_kspec;

typedef struct qs_kfit {
    float d, dmin;     /* half-representable */
    int sc[QK_K / 16]; /* per sub-block */
    int m[QK_K / 16];
    int L[QK_K];       /* levels in [lo, hi] */
    float err;
} qs_kfit;

/* Best levels of one sub-block for scale d*sc and min dmin*m; returns the
 * weighted error. */
static float qs_sub_levels(const qs_kspec *k, const float *x, const float *w, float d, int sc, float dmin, int m,
                           int *L) {
    const float ds = d * (float)sc, off = -dmin * (float)m;
    if (ds == 0) {
        for (int i = 0; i < k->sub; i++) L[i] = quant_clamp(0, k->lo, k->hi);
        return qs_err_affine(k->sub, x, w, L, 0.f, off);
    }
    qs_round(k->sub, x, ds, off, k->lo, k->hi, L);
    return qs_err_affine(k->sub, x, w, L, ds, off);
}

/* For each sub-block, the best integer scale/min within +-1 of the current
 * ones given d and dmin; returns the total error. */
static float qs_k_neighbours(const qs_kspec *k, const float *x, const float *w, qs_kfit *f) {
    const int nsub = QK_K / k->sub;
    float total = 0;
    for (int j = 0; j < nsub; j++) {
        const float *xj = x + j * k->sub, *wj = w + j * k->sub;
        int Lt[32], best_sc = f->sc[j], best_m = f->m[j];
        float best = qs_sub_levels(k, xj, wj, f->d, f->sc[j], f->dmin, f->m[j], f->L + j * k->sub);
        for (int ds = -1; ds <= 1; ds++) {
            const int sc = f->sc[j] + ds;
            if (sc < k->slo || sc > k->shi) continue;
            for (int dm = k->mhi ? -1 : 0; dm <= (k->mhi ? 1 : 0); dm++) {
                const int m = f->m[j] + dm;
                if ((ds == 0 && dm == 0) || m < 0 || m > k->mhi) continue;
                const float e = qs_sub_levels(k, xj, wj, f->d, sc, f->dmin, m, Lt);
                if (e < best) {
                    best = e;
                    best_sc = sc;
                    best_m = m;
                    memcpy(f->L + j * k->sub, Lt, sizeof(int) * (size_t)k->sub);
                }
            }
        }
        f->sc[j] = best_sc;
        f->m[j] = best_m;
        total += best;
    }
    return total;
}

/* d (and dmin >= 0) given integer scales, mins and levels, x ~ d*a - dmin*b
 * with a = sc*q, b = m, without shrinkage (see qs_scale in quant_search.c):
 * the error is uncorrelated with x and, for the affine types, has zero mean.
 * Returns 0 when degenerate. */
static int qs_k_refit(const qs_kspec *k, const float *x, const float *w, const qs_kfit *f, float *d, float *dmin) {
    double sxa = 0, sxb = 0, sxx = 0, sa = 0, sb = 0, sx = 0;
    for (int i = 0; i < QK_K; i++) {
        const int j = i / k->sub;
        const double a = (double)f->sc[j] * f->L[i], b = k->mhi ? (double)f->m[j] : 0.0;
        sxa += w[i] * x[i] * a;
        sxb += w[i] * x[i] * b;
        sxx += w[i] * (double)x[i] * x[i];
        sa += w[i] * a;
        sb += w[i] * b;
        sx += w[i] * x[i];
    }
    if (sxa == 0) return 0;
    double u = sxx / sxa, v = 0;
    if (k->mhi && sb > 0) { /* sxa u - sxb v = sxx, sa u - sb v = sx */
        const double det = sxb * sa - sxa * sb;
        if (det != 0) {
            const double uu = (sxb * sx - sxx * sb) / det, vv = (sxa * sx - sa * sxx) / det;
            if (vv >= 0) {
                u = uu;
                v = vv;
            }
        }
    }
    if (!(u != 0) || (k->mhi && !(u > 0)) || !isfinite(u) || !isfinite(v)) return 0;
    *d = qs_round_half((float)u);
    *dmin = qs_round_half((float)v);
    return *d != 0;
}

/* The whole fit of one super-block. */
static void qs_fit_k(const qs_kspec *k, const float *x, const float *w, qs_kfit *f) {
    const int nsub = QK_K / k->sub;
    float s[QK_K / 16], mins[QK_K / 16];
    float smax = 0, ssigned = 0, mmax = 0;
    for (int j = 0; j < nsub; j++) {
        const float *xj = x + j * k->sub, *wj = w + j * k->sub;
        if (k->mhi) {
            float off;
            s[j] = qs_fit_affine(k->sub, k->hi, xj, wj, true, k->ntry, f->L + j * k->sub, &off);
            mins[j] = -off;
            if (mins[j] > mmax) mmax = mins[j];
        } else {
            s[j] = qs_fit_sym(k->sub, k->lo, k->hi, xj, wj, k->ntry, f->L + j * k->sub);
            mins[j] = 0;
        }
        if (fabsf(s[j]) > smax) {
            smax = fabsf(s[j]);
            ssigned = s[j];
        }
    }
    memset(f->sc, 0, sizeof f->sc);
    memset(f->m, 0, sizeof f->m);
    f->d = f->dmin = 0;
    /* the largest scale maps to the far end of the integer range: for signed
     * scales the negative end, which has one more value */
    if (smax > 0) f->d = qs_round_half(k->slo < 0 ? ssigned / (float)k->slo : smax / (float)k->shi);
    if (mmax > 0) f->dmin = qs_round_half(mmax / (float)k->mhi);
    for (int j = 0; j < nsub; j++) {
        f->sc[j] = f->d != 0 ? quant_clamp(quant_round(s[j] / f->d), k->slo, k->shi) : 0;
        f->m[j] = f->dmin != 0 ? quant_clamp(quant_round(mins[j] / f->dmin), 0, k->mhi) : 0;
    }
    f->err = qs_k_neighbours(k, x, w, f);
    for (int round = 0; round < 3; round++) {
        qs_kfit g = *f;
        if (!qs_k_refit(k, x, w, f, &g.d, &g.dmin)) break;
        g.err = qs_k_neighbours(k, x, w, &g);
        if (!(g.err < f->err)) break;
        *f = g;
    }
}

/* 256 2-bit values: byte 32*(e/128) + e%32, bits 2*((e%128)/32). */
static void qs_pack_2bit(const int *L, uint8_t *qs) {
    for (int h = 0; h < QK_K; h += 128)
        for (int l = 0; l < 32; l++)
            qs[h / 4 + l] = (uint8_t)((L[h + l] & 3) | ((L[h + l + 32] & 3) << 2) | ((L[h + l + 64] & 3) << 4) |
                                      ((L[h + l + 96] & 3) << 6));
}

/* 6-bit scale/min pairs of Q4_K/Q5_K (layout in quant_ref.h). */
static void qs_pack_k4_scales(const qs_kfit *f, uint8_t *q) {
    memset(q, 0, K_SCALE_SIZE);
    for (int j = 0; j < 8; j++) {
        const int sc = f->sc[j], m = f->m[j];
        if (j < 4) {
            q[j] |= (uint8_t)sc;
            q[j + 4] |= (uint8_t)m;
        } else {
            q[j + 4] = (uint8_t)((sc & 0xF) | ((m & 0xF) << 4));
            q[j - 4] |= (uint8_t)((sc >> 4) << 6);
            q[j] |= (uint8_t)((m >> 4) << 6);
        }
    }
}

void qs_block_q2_K(const float *x, const float *w, void *vy) {
    static const qs_kspec k = {.sub = 16, .lo = 0, .hi = 3, .slo = 0, .shi = 15, .mhi = 15, .ntry = 10};
    block_q2_K *y = vy;
    qs_kfit f;
    qs_fit_k(&k, x, w, &f);
    y->d = quant_f32_to_fp16(f.d);
    y->dmin = quant_f32_to_fp16(f.dmin);
    for (int j = 0; j < 16; j++) y->scales[j] = (uint8_t)(f.sc[j] | (f.m[j] << 4));
    qs_pack_2bit(f.L, y->qs);
}

void qs_block_q3_K(const float *x, const float *w, void *vy) {
    static const qs_kspec k = {.sub = 16, .lo = -4, .hi = 3, .slo = -32, .shi = 31, .mhi = 0, .ntry = 6};
    block_q3_K *y = vy;
    qs_kfit f;
    qs_fit_k(&k, x, w, &f);
    y->d = quant_f32_to_fp16(f.d);
    memset(y->scales, 0, sizeof y->scales);
    for (int j = 0; j < 16; j++) {
        const int l = f.sc[j] + 32;
        if (j < 8) y->scales[j] |= (uint8_t)(l & 0xF);
        else y->scales[j - 8] |= (uint8_t)((l & 0xF) << 4);
        y->scales[8 + j % 4] |= (uint8_t)((l >> 4) << (2 * (j / 4)));
    }
    int low[QK_K];
    memset(y->hmask, 0, sizeof y->hmask);
    for (int e = 0; e < QK_K; e++) {
        const int q = f.L[e] + 4; /* 0..7: bit 2 set means "no -4" */
        if (q > 3) y->hmask[e % 32] |= (uint8_t)(1u << (e / 32));
        low[e] = q & 3;
    }
    qs_pack_2bit(low, y->qs);
}

static void qs_pack_k4(const qs_kfit *f, pl_fp16 *d, pl_fp16 *dmin, uint8_t *scales) {
    *d = quant_f32_to_fp16(f->d);
    *dmin = quant_f32_to_fp16(f->dmin);
    qs_pack_k4_scales(f, scales);
}

void qs_block_q4_K(const float *x, const float *w, void *vy) {
    static const qs_kspec k = {.sub = 32, .lo = 0, .hi = 15, .slo = 0, .shi = 63, .mhi = 63, .ntry = 10};
    block_q4_K *y = vy;
    qs_kfit f;
    qs_fit_k(&k, x, w, &f);
    qs_pack_k4(&f, &y->d, &y->dmin, y->scales);
    for (int c = 0; c < QK_K / 64; c++)
        for (int l = 0; l < 32; l++) y->qs[32 * c + l] = (uint8_t)(f.L[64 * c + l] | (f.L[64 * c + 32 + l] << 4));
}

void qs_block_q5_K(const float *x, const float *w, void *vy) {
    static const qs_kspec k = {.sub = 32, .lo = 0, .hi = 31, .slo = 0, .shi = 63, .mhi = 63, .ntry = 10};
    block_q5_K *y = vy;
    qs_kfit f;
    qs_fit_k(&k, x, w, &f);
    qs_pack_k4(&f, &y->d, &y->dmin, y->scales);
    memset(y->qh, 0, sizeof y->qh);
    for (int c = 0; c < QK_K / 64; c++)
        for (int l = 0; l < 32; l++) {
            const int l1 = f.L[64 * c + l], l2 = f.L[64 * c + 32 + l];
            y->qs[32 * c + l] = (uint8_t)((l1 & 0xF) | ((l2 & 0xF) << 4));
            y->qh[l] |= (uint8_t)(((l1 >> 4) << (2 * c)) | ((l2 >> 4) << (2 * c + 1)));
        }
}

void qs_block_q6_K(const float *x, const float *w, void *vy) {
    static const qs_kspec k = {.sub = 16, .lo = -32, .hi = 31, .slo = -128, .shi = 127, .mhi = 0, .ntry = 6};
    block_q6_K *y = vy;
    qs_kfit f;
    qs_fit_k(&k, x, w, &f);
    y->d = quant_f32_to_fp16(f.d);
    for (int j = 0; j < 16; j++) y->scales[j] = (int8_t)f.sc[j];
    for (int h = 0; h < 2; h++) {
        const int *Lh = f.L + 128 * h;
        uint8_t *ql = y->ql + 64 * h, *qh = y->qh + 32 * h;
        for (int l = 0; l < 32; l++) {
            const int q0 = Lh[l] + 32, q1 = Lh[l + 32] + 32, q2 = Lh[l + 64] + 32, q3 = Lh[l + 96] + 32;
            ql[l] = (uint8_t)((q0 & 0xF) | ((q2 & 0xF) << 4));
            ql[l + 32] = (uint8_t)((q1 & 0xF) | ((q3 & 0xF) << 4));
            qh[l] = (uint8_t)((q0 >> 4) | ((q1 >> 4) << 2) | ((q2 >> 4) << 4) | ((q3 >> 4) << 6));
        }
    }
}
