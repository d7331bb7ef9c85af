/*
 * quant_k_fit: reference quantizers of the K-quants (Q2_K..Q6_K).
 *
 * Each super-block of 256 is cut into sub-blocks (16 or 32 elements). For each
 * sub-block a scale (and, for the affine types, a min) is fitted by search:
 *   - qk_fit_affine: x ~ scale*L - min, L in [0, nmax]; tries a grid of
 *     candidate scales and, for each rounding L, solves the weighted least
 *     squares for (scale, min) in closed form; keeps the best (Q2/Q4/Q5_K).
 *   - qk_fit_symmetric: x ~ scale*L, L in [-nmax, nmax-1]; tries 19 scales
 *     around nmax/max and keeps the least-squares best, weighting by x^2 (Q6_K).
 *   - qk_fit_q3: same model, refined by coordinate descent on L (Q3_K).
 * The sub-block scales/mins are then quantized to 4, 6 or 8 bits against the
 * super-block's largest (stored as half d/dmin), and finally every element is
 * re-rounded against the scale it will actually be decoded with.
 *
 * This is the algorithm of ggml's quantize_row_q*_K_ref, with the arithmetic
 * in the same order, so without an importance matrix it reproduces the bytes
 * llama-quantize writes (checked in tests/test_quant.c against real files).
 */
#include "quant_ref.h"

#define QK_EPS 1e-15f /* below this a sub-block counts as all zero */

/* Fit x[i] ~ scale * L[i] - the_min with L in [0, nmax] and the_min >= 0
 * (only negative offsets are representable), minimizing the weighted sum of
 * |error| (use_mad) or error^2. Candidate inverse scales are
 * (nmax + rmin + rdelta*k) / (max - min) for k = 0..nstep. Returns scale. */
static float qk_fit_affine(int n, int nmax, const float *x, const float *w, uint8_t *L, float *the_min,
                           float rmin, float rdelta, int nstep, int use_mad) {
    float mn = x[0], mx = x[0], sum_w = 0, sum_x = 0;
    for (int i = 0; i < n; i++) {
        if (x[i] < mn) mn = x[i];
        if (x[i] > mx) mx = x[i];
        sum_w += w[i];
        sum_x += w[i] * x[i];
    }
    if (mn > 0) mn = 0;
    if (mx == mn) {
        memset(L, 0, (size_t)n);
        *the_min = -mn;
        return 0.f;
    }
    float iscale = nmax / (mx - mn);
    float scale = 1 / iscale;
    float best = 0;
    for (int i = 0; i < n; i++) {
        L[i] = (uint8_t)quant_clamp(quant_round(iscale * (x[i] - mn)), 0, nmax);
        const float diff = scale * L[i] + mn - x[i];
        best += w[i] * (use_mad ? fabsf(diff) : diff * diff);
    }
    uint8_t Laux[32];
    for (int k = 0; k <= nstep; k++) {
        iscale = (rmin + rdelta * k + nmax) / (mx - mn);
        float sum_l = 0, sum_l2 = 0, sum_xl = 0;
        for (int i = 0; i < n; i++) {
            const int l = quant_clamp(quant_round(iscale * (x[i] - mn)), 0, nmax);
            Laux[i] = (uint8_t)l;
            sum_l += w[i] * l;
            sum_l2 += w[i] * l * l;
            sum_xl += w[i] * l * x[i];
        }
        /* weighted least squares for x ~ a*l + b: normal equations */
        const float D = sum_w * sum_l2 - sum_l * sum_l;
        if (!(D > 0)) continue;
        float this_scale = (sum_w * sum_xl - sum_x * sum_l) / D;
        float this_min = (sum_l2 * sum_x - sum_l * sum_xl) / D;
        if (this_min > 0) { /* a positive offset cannot be stored: refit through 0 */
            this_min = 0;
            this_scale = sum_xl / sum_l2;
        }
        float err = 0;
        for (int i = 0; i < n; i++) {
            const float diff = this_scale * Laux[i] + this_min - x[i];
            err += w[i] * (use_mad ? fabsf(diff) : diff * diff);
        }
        if (err < best) {
            memcpy(L, Laux, (size_t)n);
            best = err;
            scale = this_scale;
            mn = this_min;
        }
    }
    *the_min = -mn;
    return scale;
}

/* The value of largest magnitude (first on ties), sign kept; *amax its size. */
static float qk_signed_absmax(int n, const float *x, float *amax) {
    float a = 0, m = 0;
    for (int i = 0; i < n; i++) {
        if (fabsf(x[i]) > a) {
            a = fabsf(x[i]);
            m = x[i];
        }
    }
    *amax = a;
    return m;
}

/* Fit x ~ scale * (L - nmax), L - nmax in [-nmax, nmax-1], weights x^2. The
 * extreme value goes to -nmax (the side with one more level). Returns the
 * (signed) scale; L gets levels offset by +nmax. */
static float qk_fit_symmetric(int n, int nmax, const float *x, int8_t *L) {
    float amax;
    const float max = qk_signed_absmax(n, x, &amax);
    if (amax < QK_EPS) {
        memset(L, 0, (size_t)n);
        return 0.f;
    }
    float iscale = -nmax / max;
    float sumlx = 0, suml2 = 0;
    for (int i = 0; i < n; i++) {
        const int l = quant_clamp(quant_round(iscale * x[i]), -nmax, nmax - 1);
        L[i] = (int8_t)(l + nmax);
        const float w = x[i] * x[i];
        sumlx += w * x[i] * l;
        suml2 += w * l * l;
    }
    float scale = suml2 ? sumlx / suml2 : 0.0f;
    float best = scale * sumlx; /* = sumlx^2/suml2: the error reduction of this fit */
    for (int is = -9; is <= 9; is++) {
        if (is == 0) continue;
        iscale = -(nmax + 0.1f * is) / max;
        sumlx = suml2 = 0;
        for (int i = 0; i < n; i++) {
            const int l = quant_clamp(quant_round(iscale * x[i]), -nmax, nmax - 1);
            const float w = x[i] * x[i];
            sumlx += w * x[i] * l;
            suml2 += w * l * l;
        }
        if (suml2 > 0 && sumlx * sumlx > best * suml2) {
            for (int i = 0; i < n; i++)
                L[i] = (int8_t)(nmax + quant_clamp(quant_round(iscale * x[i]), -nmax, nmax - 1));
            scale = sumlx / suml2;
            best = scale * sumlx;
        }
    }
    return scale;
}

/* As qk_fit_symmetric from the plain nmax/max rounding, then up to 5 sweeps
 * of coordinate descent: each L[i] moves to its best level given the others
 * when that raises sumlx^2/suml2 (i.e. lowers the weighted squared error). */
static float qk_fit_q3(int n, int nmax, const float *x, int8_t *L) {
    float amax;
    const float max = qk_signed_absmax(n, x, &amax);
    if (amax < QK_EPS) {
        memset(L, 0, (size_t)n);
        return 0.f;
    }
    const float iscale = -nmax / max;
    float sumlx = 0, suml2 = 0;
    for (int i = 0; i < n; i++) {
        const int l = quant_clamp(quant_round(iscale * x[i]), -nmax, nmax - 1);
        L[i] = (int8_t)l;
        const float w = x[i] * x[i];
        sumlx += w * x[i] * l;
        suml2 += w * l * l;
    }
    for (int pass = 0; pass < 5; pass++) {
        int changed = 0;
        for (int i = 0; i < n; i++) {
            const float w = x[i] * x[i];
            float slx = sumlx - w * x[i] * L[i];
            if (!(slx > 0)) continue;
            float sl2 = suml2 - w * L[i] * L[i];
            const int nl = quant_clamp(quant_round(x[i] * sl2 / slx), -nmax, nmax - 1);
            if (nl == L[i]) continue;
            slx += w * x[i] * nl;
            sl2 += w * nl * nl;
            if (sl2 > 0 && slx * slx * suml2 > sumlx * sumlx * sl2) {
                L[i] = (int8_t)nl;
                sumlx = slx;
                suml2 = sl2;
                changed++;
            }
        }
        if (!changed) break;
    }
    for (int i = 0; i < n; i++) L[i] = (int8_t)(L[i] + nmax);
    return sumlx / suml2;
}

/* Pack 256 2-bit levels: byte 32*(e/128) + e%32, bits 2*((e%128)/32). */
static void qk_pack_2bit(const uint8_t *L, uint8_t *qs) {
    for (int h = 0; h < QK_K; h += 128)
        for (int l = 0; l < 32; l++)
            qs[h / 4 + l] = (uint8_t)(L[h + l] | (L[h + l + 32] << 2) | (L[h + l + 64] << 4) | (L[h + l + 96] << 6));
}

static void qk_k4_set_scale_min(int j, uint8_t *q, uint8_t sc, uint8_t m) {
    if (j < 4) {
        q[j] = sc;
        q[j + 4] = m;
    } else {
        q[j + 4] = (uint8_t)((sc & 0xF) | ((m & 0xF) << 4));
        q[j - 4] |= (uint8_t)((sc >> 4) << 6);
        q[j] |= (uint8_t)((m >> 4) << 6);
    }
}

/* ------------------------------------------------------------------ Q2_K */

void quant_q2_K_from_float(const float *x, void *vy, int64_t n) {
    block_q2_K *y = vy;
    for (int64_t b = 0; b < n / QK_K; b++, x += QK_K) {
        uint8_t L[QK_K];
        float scales[QK_K / 16], mins[QK_K / 16], w[16];
        float max_scale = 0, max_min = 0;
        for (int j = 0; j < QK_K / 16; j++) {
            for (int l = 0; l < 16; l++) w[l] = fabsf(x[16 * j + l]);
            scales[j] = qk_fit_affine(16, 3, x + 16 * j, w, L + 16 * j, &mins[j], -0.5f, 0.1f, 15, 1);
            if (scales[j] > max_scale) max_scale = scales[j];
            if (mins[j] > max_min) max_min = mins[j];
        }
        /* 4-bit sub-block scales and mins relative to the largest */
        memset(y[b].scales, 0, sizeof y[b].scales);
        y[b].d = quant_f32_to_fp16(0.f);
        y[b].dmin = quant_f32_to_fp16(0.f);
        if (max_scale > 0) {
            const float iscale = 15.f / max_scale;
            for (int j = 0; j < QK_K / 16; j++) y[b].scales[j] = (uint8_t)quant_clamp(quant_round(iscale * scales[j]), 0, 15);
            y[b].d = quant_f32_to_fp16(max_scale / 15.f);
        }
        if (max_min > 0) {
            const float iscale = 15.f / max_min;
            for (int j = 0; j < QK_K / 16; j++)
                y[b].scales[j] |= (uint8_t)(quant_clamp(quant_round(iscale * mins[j]), 0, 15) << 4);
            y[b].dmin = quant_f32_to_fp16(max_min / 15.f);
        }
        /* re-round every element against its decoded scale and min */
        for (int j = 0; j < QK_K / 16; j++) {
            const float d = quant_fp16_to_f32(y[b].d) * (y[b].scales[j] & 0xF);
            if (!d) continue;
            const float dm = quant_fp16_to_f32(y[b].dmin) * (y[b].scales[j] >> 4);
            for (int l = 0; l < 16; l++)
                L[16 * j + l] = (uint8_t)quant_clamp(quant_round((x[16 * j + l] + dm) / d), 0, 3);
        }
        qk_pack_2bit(L, y[b].qs);
    }
}

/* ------------------------------------------------------------------ Q3_K */

void quant_q3_K_from_float(const float *x, void *vy, int64_t n) {
    block_q3_K *y = vy;
    for (int64_t b = 0; b < n / QK_K; b++, x += QK_K) {
        int8_t L[QK_K];
        float scales[QK_K / 16];
        float max_scale = 0, amax = 0;
        for (int j = 0; j < QK_K / 16; j++) {
            scales[j] = qk_fit_q3(16, 4, x + 16 * j, L + 16 * j);
            if (fabsf(scales[j]) > amax) {
                amax = fabsf(scales[j]);
                max_scale = scales[j];
            }
        }
        /* signed 6-bit scales: the largest maps to -32 */
        memset(y[b].scales, 0, sizeof y[b].scales);
        y[b].d = quant_f32_to_fp16(0.f);
        if (max_scale != 0) {
            const float iscale = -32.f / max_scale;
            for (int j = 0; j < QK_K / 16; j++) {
                const int l = quant_clamp(quant_round(iscale * scales[j]), -32, 31) + 32;
                if (j < 8) y[b].scales[j] = (uint8_t)(l & 0xF);
                else y[b].scales[j - 8] |= (uint8_t)((l & 0xF) << 4);
                y[b].scales[8 + j % 4] |= (uint8_t)((l >> 4) << (2 * (j / 4)));
            }
            y[b].d = quant_f32_to_fp16(1 / iscale);
        }
        for (int j = 0; j < QK_K / 16; j++) {
            const float d = quant_fp16_to_f32(y[b].d) * quant_q3_K_scale(y[b].scales, j);
            if (!d) continue;
            for (int l = 0; l < 16; l++)
                L[16 * j + l] = (int8_t)(quant_clamp(quant_round(x[16 * j + l] / d), -4, 3) + 4);
        }
        /* level bit 2 into hmask (bit e/32 of byte e%32), low 2 bits packed */
        uint8_t low[QK_K];
        memset(y[b].hmask, 0, sizeof y[b].hmask);
        for (int e = 0; e < QK_K; e++) {
            const int l = L[e];
            if (l > 3) y[b].hmask[e % 32] |= (uint8_t)(1u << (e / 32));
            low[e] = (uint8_t)(l & 3);
        }
        qk_pack_2bit(low, y[b].qs);
    }
}

/* ------------------------------------------------------------ Q4_K, Q5_K */

/* Shared by Q4_K (nmax 15) and Q5_K (nmax 31): fit 8 sub-blocks of 32, store
 * 6-bit scales/mins and d/dmin, return the final levels in L. */
static void qk_quantize_k4(const float *x, int nmax, float rmin, int nstep, uint8_t *scales_out, pl_fp16 *d_out,
                           pl_fp16 *dmin_out, uint8_t *L) {
    float scales[QK_K / 32], mins[QK_K / 32], w[32];
    float max_scale = 0, max_min = 0;
    for (int j = 0; j < QK_K / 32; j++) {
        /* weights |x| + rms: large values matter more, but none counts for nothing */
        float sum_x2 = 0;
        for (int l = 0; l < 32; l++) sum_x2 += x[32 * j + l] * x[32 * j + l];
        const float av_x = sqrtf(sum_x2 / 32);
        for (int l = 0; l < 32; l++) w[l] = av_x + fabsf(x[32 * j + l]);
        scales[j] = qk_fit_affine(32, nmax, x + 32 * j, w, L + 32 * j, &mins[j], rmin, 0.1f, nstep, 0);
        if (scales[j] > max_scale) max_scale = scales[j];
        if (mins[j] > max_min) max_min = mins[j];
    }
    const float inv_scale = max_scale > 0 ? 63.f / max_scale : 0.f;
    const float inv_min = max_min > 0 ? 63.f / max_min : 0.f;
    memset(scales_out, 0, K_SCALE_SIZE);
    for (int j = 0; j < QK_K / 32; j++) {
        const uint8_t ls = (uint8_t)quant_clamp(quant_round(inv_scale * scales[j]), 0, 63);
        const uint8_t lm = (uint8_t)quant_clamp(quant_round(inv_min * mins[j]), 0, 63);
        qk_k4_set_scale_min(j, scales_out, ls, lm);
    }
    *d_out = quant_f32_to_fp16(max_scale / 63.f);
    *dmin_out = quant_f32_to_fp16(max_min / 63.f);
    for (int j = 0; j < QK_K / 32; j++) {
        uint8_t sc, m;
        quant_k4_get_scale_min(j, scales_out, &sc, &m);
        const float d = quant_fp16_to_f32(*d_out) * sc;
        if (!d) continue;
        const float dm = quant_fp16_to_f32(*dmin_out) * m;
        for (int l = 0; l < 32; l++)
            L[32 * j + l] = (uint8_t)quant_clamp(quant_round((x[32 * j + l] + dm) / d), 0, nmax);
    }
}

void quant_q4_K_from_float(const float *x, void *vy, int64_t n) {
    block_q4_K *y = vy;
    for (int64_t b = 0; b < n / QK_K; b++, x += QK_K) {
        uint8_t L[QK_K];
        qk_quantize_k4(x, 15, -1.f, 20, y[b].scales, &y[b].d, &y[b].dmin, L);
        /* sub-blocks 2c and 2c+1 share bytes qs[32c..32c+31]: low, high nibble */
        for (int c = 0; c < QK_K / 64; c++)
            for (int l = 0; l < 32; l++)
                y[b].qs[32 * c + l] = (uint8_t)(L[64 * c + l] | (L[64 * c + 32 + l] << 4));
    }
}

void quant_q5_K_from_float(const float *x, void *vy, int64_t n) {
    block_q5_K *y = vy;
    for (int64_t b = 0; b < n / QK_K; b++, x += QK_K) {
        uint8_t L[QK_K];
        qk_quantize_k4(x, 31, -0.5f, 15, y[b].scales, &y[b].d, &y[b].dmin, L);
        memset(y[b].qh, 0, sizeof y[b].qh);
        for (int c = 0; c < QK_K / 64; c++)
            for (int l = 0; l < 32; l++) {
                const int l1 = L[64 * c + l], l2 = L[64 * c + 32 + l];
                y[b].qs[32 * c + l] = (uint8_t)((l1 & 0xF) | ((l2 & 0xF) << 4));
                y[b].qh[l] |= (uint8_t)(((l1 >> 4) << (2 * c)) | ((l2 >> 4) << (2 * c + 1)));
            }
    }
}

/* ------------------------------------------------------------------ Q6_K */

void quant_q6_K_from_float(const float *x, void *vy, int64_t n) {
    block_q6_K *y = vy;
    for (int64_t b = 0; b < n / QK_K; b++, x += QK_K) {
        int8_t L[QK_K];
        float scales[QK_K / 16];
        float max_scale = 0, max_abs = 0;
        for (int j = 0; j < QK_K / 16; j++) {
            scales[j] = qk_fit_symmetric(16, 32, x + 16 * j, L + 16 * j);
            if (fabsf(scales[j]) > max_abs) {
                max_abs = fabsf(scales[j]);
                max_scale = scales[j];
            }
        }
        memset(&y[b], 0, sizeof y[b]);
        if (max_abs < QK_EPS) continue; /* all zero: d = 0 */
        /* signed 8-bit scales: the largest maps to -128 */
        const float iscale = -128.f / max_scale;
        y[b].d = quant_f32_to_fp16(1 / iscale);
        for (int j = 0; j < QK_K / 16; j++) y[b].scales[j] = (int8_t)quant_clamp(quant_round(iscale * scales[j]), -128, 127);
        for (int j = 0; j < QK_K / 16; j++) {
            const float d = quant_fp16_to_f32(y[b].d) * y[b].scales[j];
            if (!d) continue;
            for (int l = 0; l < 16; l++)
                L[16 * j + l] = (int8_t)(quant_clamp(quant_round(x[16 * j + l] / d), -32, 31) + 32);
        }
        for (int h = 0; h < 2; h++) {
            const int8_t *Lh = L + 128 * h;
            uint8_t *ql = y[b].ql + 64 * h, *qh = y[b].qh + 32 * h;
            for (int l = 0; l < 32; l++) {
                ql[l] = (uint8_t)((Lh[l] & 0xF) | ((Lh[l + 64] & 0xF) << 4));
                ql[l + 32] = (uint8_t)((Lh[l + 32] & 0xF) | ((Lh[l + 96] & 0xF) << 4));
                qh[l] = (uint8_t)((Lh[l] >> 4) | ((Lh[l + 32] >> 4) << 2) | ((Lh[l + 64] >> 4) << 4) | ((Lh[l + 96] >> 4) << 6));
            }
        }
    }
}
