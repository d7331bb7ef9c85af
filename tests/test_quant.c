/*
 * test_quant: the quant module's traits table, half/bfloat conversions and the
 * reference (de)quantizers and dot products of every type.
 *
 * References we did not write: IEEE 754 rounding rules (checked at every
 * rounding boundary of the half and bfloat16 grids, and against the
 * compiler's _Float16 where it has one), and the real models in
 * ../shared/models, whose q8_0 / q4_0 / q4_k_m files llama-quantize made from
 * the same weights as the f16 file: dequantizing them must land near the f16
 * tensors, and requantizing the f16 tensors must give back their exact bytes.
 * The dot products are checked against a float64 dot of the dequantized
 * operands, which tests the integer paths and the dequantizers against each
 * other (they walk the packed layouts independently).
 */
#include "test.h"

#include "gguf/gguf.h"
#include "quant/quant.h"

#include <float.h>
#include <math.h>
#include <stdint.h>

/* ------------------------------------------------------------- test data */

static uint64_t t_rng = 0x9E3779B97F4A7C15ull;

static uint64_t rnd_u64(void) {
    t_rng ^= t_rng >> 12;
    t_rng ^= t_rng << 25;
    t_rng ^= t_rng >> 27;
    return t_rng * 2685821657736338717ull;
}

static double rnd_unit(void) { return (double)((rnd_u64() >> 11) + 1) * 0x1p-53; } /* (0, 1] */

static float rnd_gauss(void) {
    return (float)(sqrt(-2.0 * log(rnd_unit())) * cos(6.283185307179586 * rnd_unit()));
}

static void fill_gauss(float *x, int64_t n, float scale, float offset) {
    for (int64_t i = 0; i < n; i++) x[i] = rnd_gauss() * scale + offset;
}

/* sqrt(sum (a-b)^2 / sum b^2), in double; 0 when both are zero. */
static double rel_rmse(const float *a, const float *b, int64_t n) {
    double se = 0, ss = 0;
    for (int64_t i = 0; i < n; i++) {
        const double d = (double)a[i] - (double)b[i];
        se += d * d;
        ss += (double)b[i] * (double)b[i];
    }
    return ss > 0 ? sqrt(se / ss) : sqrt(se);
}

static int all_finite(const float *x, int64_t n) {
    for (int64_t i = 0; i < n; i++)
        if (!isfinite(x[i])) return 0;
    return 1;
}

/* ---------------------------------------------------------- per-type facts */

/*
 * Error bounds per type, on seeded data (so the measured values do not drift;
 * the margins are for legitimate changes to the search, not for noise).
 *
 * rmse: relative RMSE on N(0,1) data, about 1.15x the measured value (the
 * table this test prints). A uniform quantizer with step D has RMSE
 * D/sqrt(12): a block of 32 Gaussians has absmax ~2.1 sigma, so Q4_0
 * (D = absmax/8) gives ~0.077 and Q8_0 (D = absmax/127) ~0.0048; Q8_K's
 * 256-blocks have a larger absmax (~2.9 sigma) and so a larger step. The
 * K-quants fit a scale (and min) per 16/32-element sub-block by search, which
 * is why Q4_K beats Q4_0/Q4_1 and Q5_K beats Q5_1 at fewer bits per weight:
 * the bounds hold them to that.
 *
 * block: worst |error| / absmax of its block (groups of 32 for the float
 * types). Where there is a closed form it is the bound: half a step, plus the
 * half-precision rounding of the scale; for Q4_0/Q5_0 a full step, because
 * their range [-2^(b-1), 2^(b-1)-1] clips the extreme opposite the one that
 * set the scale; f16 2^-11, bf16 2^-8. The K-quants quantize their sub-block
 * scales too, so theirs is measured (x ~1.2).
 *
 * real: relative RMSE of the shared models' quantized tensors against their
 * f16 tensors (only types those files contain).
 */
typedef struct tq_case {
    uint32_t type;
    int wide;          /* scale kept in float or the type has float range: any magnitude works */
    double rmse;       /* bound on relative RMSE, N(0,1) data */
    double block;      /* bound on max |err| / block absmax */
    double real;       /* bound on relative RMSE vs the f16 model */
} tq_case;

static const tq_case k_cases[] = {
    {QT_F32, 1, 0.0, 0.0, 0.0},
    {QT_F16, 0, 2.4e-4, 4.9e-4, 0.0},
    {QT_BF16, 1, 1.9e-3, 3.91e-3, 0.0},
    {QT_Q4_0, 0, 0.098, 0.126, 0.100},
    {QT_Q4_1, 0, 0.090, 0.069, 0.0},
    {QT_Q5_0, 0, 0.049, 0.0635, 0.0},
    {QT_Q5_1, 0, 0.044, 0.034, 0.0},
    {QT_Q8_0, 0, 0.0062, 0.0045, 0.0065},
    {QT_Q8_1, 0, 0.0062, 0.0045, 0.0},
    {QT_Q2_K, 0, 0.34, 0.42, 0.0},
    {QT_Q3_K, 0, 0.175, 0.23, 0.0},
    {QT_Q4_K, 0, 0.082, 0.092, 0.085},
    {QT_Q5_K, 0, 0.042, 0.057, 0.0},
    {QT_Q6_K, 0, 0.0205, 0.020, 0.022},
    {QT_Q8_K, 1, 0.0081, 0.0040, 0.0},
};
#define N_CASES (int)(sizeof k_cases / sizeof k_cases[0])

static const tq_case *case_of(uint32_t type) {
    for (int i = 0; i < N_CASES; i++)
        if (k_cases[i].type == type) return &k_cases[i];
    return NULL;
}

/* Quantize n floats and dequantize them back into out; checks that neither
 * direction writes past its row. */
static int roundtrip(uint32_t type, const float *x, float *out, int64_t n) {
    const quant_traits *t = quant_get(type);
    const uint64_t rs = quant_row_size(type, n);
    if (!t || rs == 0) return 0;
    uint8_t *q = malloc(rs + 64);
    float *y = malloc(((size_t)n + 16) * sizeof(float));
    if (!q || !y) {
        free(q);
        free(y);
        return 0;
    }
    memset(q, 0xA5, rs + 64);
    for (int i = 0; i < 16; i++) y[n + i] = -7.25f;
    t->from_float(x, q, n);
    t->to_float(q, y, n);
    int ok = 1;
    for (int i = 0; i < 64; i++) ok &= q[rs + i] == 0xA5;
    for (int i = 0; i < 16; i++) ok &= y[n + i] == -7.25f;
    memcpy(out, y, (size_t)n * sizeof(float));
    free(q);
    free(y);
    return ok;
}

/* max over blocks of max|err| / block absmax; float types (blck 1) are
 * grouped by 32 so that the bound is relative to a group's largest value. */
static double worst_block_err(const float *x, const float *y, int64_t n, int blck) {
    double worst = 0;
    if (blck == 1) blck = 32;
    for (int64_t b = 0; b < n; b += blck) {
        double amax = 0, emax = 0;
        for (int64_t j = 0; j < blck && b + j < n; j++) {
            amax = fmax(amax, fabs(x[b + j]));
            emax = fmax(emax, fabs((double)y[b + j] - x[b + j]));
        }
        if (amax > 0) worst = fmax(worst, emax / amax);
        else if (emax > 0) worst = INFINITY;
    }
    return worst;
}

/* ------------------------------------------------------------ the table */

static void test_traits_table(void) {
    /* ggml's type ids, names as llama.cpp prints them, and block geometry */
    static const struct { uint32_t id; const char *name; int blck; size_t size; } spec[] = {
        {0, "f32", 1, 4}, {1, "f16", 1, 2}, {30, "bf16", 1, 2},
        {2, "q4_0", 32, sizeof(block_q4_0)}, {3, "q4_1", 32, sizeof(block_q4_1)},
        {6, "q5_0", 32, sizeof(block_q5_0)}, {7, "q5_1", 32, sizeof(block_q5_1)},
        {8, "q8_0", 32, sizeof(block_q8_0)}, {9, "q8_1", 32, sizeof(block_q8_1)},
        {10, "q2_K", 256, sizeof(block_q2_K)}, {11, "q3_K", 256, sizeof(block_q3_K)},
        {12, "q4_K", 256, sizeof(block_q4_K)}, {13, "q5_K", 256, sizeof(block_q5_K)},
        {14, "q6_K", 256, sizeof(block_q6_K)}, {15, "q8_K", 256, sizeof(block_q8_K)},
    };
    int n_known = 0;
    for (size_t i = 0; i < sizeof spec / sizeof spec[0]; i++) {
        const quant_traits *t = quant_get(spec[i].id);
        REQUIRE(t != NULL, "type %u missing", spec[i].id);
        CHECK(t->name && strcmp(t->name, spec[i].name) == 0, "type %u name %s, want %s", spec[i].id,
              t->name ? t->name : "(null)", spec[i].name);
        CHECK(t->blck == spec[i].blck && (size_t)t->type_size == spec[i].size, "%s geometry %d/%d", spec[i].name,
              t->blck, t->type_size);
        CHECK(t->is_quantized == (spec[i].blck > 1), "%s is_quantized", spec[i].name);
        CHECK(t->to_float && t->from_float, "%s lacks converters", spec[i].name);
        const int activation_only = spec[i].id == QT_Q8_1 || spec[i].id == QT_Q8_K;
        CHECK(activation_only ? t->vec_dot == NULL : t->vec_dot != NULL, "%s vec_dot", spec[i].name);
        const quant_traits *vt = quant_get(t->vec_dot_type);
        CHECK(vt && vt->blck == t->blck && vt->from_float, "%s: vec_dot_type %u unusable", spec[i].name,
              t->vec_dot_type);
        CHECK(quant_type_from_name(spec[i].name) == (int)spec[i].id, "name %s", spec[i].name);
        char upper[16];
        snprintf(upper, sizeof upper, "%s", spec[i].name);
        for (char *p = upper; *p; p++) *p = (char)(*p >= 'a' && *p <= 'z' ? *p - 32 : *p);
        CHECK(quant_type_from_name(upper) == (int)spec[i].id, "name %s", upper);
        n_known++;
    }
    int n_table = 0;
    for (uint32_t id = 0; id < 64; id++) n_table += quant_get(id) != NULL;
    CHECK(n_table == n_known, "table has %d types, spec %d", n_table, n_known);
    CHECK(quant_get(4) == NULL && quant_get(16) == NULL && quant_get(39) == NULL && quant_get(40) == NULL &&
              quant_get(UINT32_MAX) == NULL, "unsupported ids must give NULL");

    CHECK(quant_row_size(QT_Q4_0, 64) == 36, "q4_0 x64");
    CHECK(quant_row_size(QT_Q4_K, 512) == 288, "q4_K x512");
    CHECK(quant_row_size(QT_F32, 3) == 12, "f32 x3");
    CHECK(quant_row_size(QT_BF16, 5) == 10, "bf16 x5");
    CHECK(quant_row_size(QT_F16, 0) == 0, "empty row");
    CHECK(quant_row_size(QT_Q4_0, 33) == 0, "misaligned q4_0");
    CHECK(quant_row_size(QT_Q6_K, 128) == 0, "misaligned q6_K");
    CHECK(quant_row_size(QT_Q4_0, -32) == 0, "negative n");
    CHECK(quant_row_size(5, 32) == 0, "unknown type");
    CHECK(quant_row_size(QT_F32, INT64_MAX) == 0, "overflow must give 0");
    const int64_t big = INT64_MAX - INT64_MAX % 32;
    CHECK(quant_row_size(QT_Q8_0, big) == (uint64_t)(big / 32) * 34u, "large row that fits");
    CHECK(quant_type_from_name("q4_2") == -1 && quant_type_from_name("") == -1 &&
              quant_type_from_name("q4_0x") == -1 && quant_type_from_name("q4") == -1 &&
              quant_type_from_name(NULL) == -1, "unknown names");
}

/* ------------------------------------------------------ half and bfloat16 */

static uint32_t f2u(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

static float u2f(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static int half_is_nan(pl_fp16 h) { return (h & 0x7C00) == 0x7C00 && (h & 0x03FF) != 0; }

static void test_fp16_exhaustive(void) {
    int bad_trip = 0, bad_nan = 0, bad_tie = 0, bad_ref = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        const float f = pl_fp16_to_f32((pl_fp16)h);
        if (half_is_nan((pl_fp16)h)) {
            const pl_fp16 back = pl_f32_to_fp16(f);
            bad_nan += !isnan(f) || !half_is_nan(back) || (back & 0x8000) != (h & 0x8000);
            continue;
        }
        bad_trip += pl_f32_to_fp16(f) != h;
#ifdef __FLT16_MAX__
        _Float16 ref;
        const uint16_t hb = (uint16_t)h;
        memcpy(&ref, &hb, 2);
        bad_ref += f2u((float)ref) != f2u(f);
#endif
        /* rounding boundary between |h| and the next half up: the midpoint is
         * exact in float; ties go to the even neighbour, anything off the
         * midpoint to the nearer one. */
        const uint32_t a = h & 0x7FFF;
        if (a >= 0x7BFF) continue; /* 65504 and up: the next is inf (checked below) */
        const float lo = pl_fp16_to_f32((pl_fp16)a), hi = pl_fp16_to_f32((pl_fp16)(a + 1));
        const float mid = (float)(((double)lo + (double)hi) / 2);
        const uint32_t sign = h & 0x8000;
        const float s = sign ? -1.f : 1.f;
        const pl_fp16 even = (pl_fp16)(sign | ((a & 1) ? a + 1 : a));
        bad_tie += pl_f32_to_fp16(s * mid) != even;
        bad_tie += pl_f32_to_fp16(s * nextafterf(mid, 0)) != (pl_fp16)(sign | a);
        bad_tie += pl_f32_to_fp16(s * nextafterf(mid, INFINITY)) != (pl_fp16)(sign | (a + 1));
    }
    CHECK(bad_trip == 0, "%d halves do not survive f16->f32->f16", bad_trip);
    CHECK(bad_nan == 0, "%d NaN halves mishandled", bad_nan);
    CHECK(bad_tie == 0, "%d rounding-boundary conversions wrong", bad_tie);
    CHECK(bad_ref == 0, "%d halves differ from the compiler's _Float16", bad_ref);

    static const struct { float f; uint16_t h; } known[] = {
        {1.0f, 0x3C00}, {-2.0f, 0xC000}, {0.5f, 0x3800}, {65504.f, 0x7BFF}, {65519.99f, 0x7BFF},
        {65520.f, 0x7C00}, {1e10f, 0x7C00}, {INFINITY, 0x7C00}, {-INFINITY, 0xFC00}, {0x1p-24f, 0x0001},
        {0x1p-25f, 0x0000}, {0x1.8p-25f, 0x0001}, {-0x1p-26f, 0x8000}, {0x1p-14f, 0x0400},
        {0x1.ffcp-15f, 0x0400}, {0x1.ff8p-15f, 0x03FF}, {-0.0f, 0x8000}, {1.0f / 3.0f, 0x3555}, {0.1f, 0x2E66},
    };
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++)
        CHECK(pl_f32_to_fp16(known[i].f) == known[i].h, "f32->f16(%a) = 0x%04x, want 0x%04x", known[i].f,
              pl_f32_to_fp16(known[i].f), known[i].h);
    CHECK(half_is_nan(pl_f32_to_fp16(NAN)), "NaN must stay NaN");
    CHECK(half_is_nan(pl_f32_to_fp16(u2f(0x7F800001u))), "a NaN with a low payload must not become inf");
    CHECK(pl_fp16_to_f32(0x0001) == 0x1p-24f && pl_fp16_to_f32(0x83FF) == -0x1.ff8p-15f &&
              pl_fp16_to_f32(0x7C00) == INFINITY && pl_fp16_to_f32(0x3555) == 0x1.554p-2f,
          "known half values");

#ifdef __FLT16_MAX__
    /* random float bit patterns against the compiler's conversion */
    int bad_rand = 0;
    for (int i = 0; i < 200000; i++) {
        const float f = u2f((uint32_t)rnd_u64());
        const _Float16 r = (_Float16)f;
        uint16_t rb;
        memcpy(&rb, &r, 2);
        const pl_fp16 ours = pl_f32_to_fp16(f);
        bad_rand += isnan(f) ? !half_is_nan(ours) : ours != rb;
    }
    CHECK(bad_rand == 0, "%d random floats convert differently from _Float16", bad_rand);
#endif
}

static void test_bf16_exhaustive(void) {
    int bad_trip = 0, bad_nan = 0, bad_tie = 0;
    for (uint32_t b = 0; b < 65536; b++) {
        const float f = pl_bf16_to_f32((pl_bf16)b);
        bad_trip += f2u(f) != b << 16;
        if ((b & 0x7F80) == 0x7F80 && (b & 0x7F)) {
            const pl_bf16 back = pl_f32_to_bf16(f);
            bad_nan += (back & 0x7FC0) != 0x7FC0 || (back & 0x8000) != (b & 0x8000);
            continue;
        }
        bad_trip += pl_f32_to_bf16(f) != b;
        const uint32_t a = b & 0x7FFF;
        if (a >= 0x7F80) continue;
        const uint32_t sign = (b & 0x8000) << 16, mid = sign | (a << 16) | 0x8000;
        const pl_bf16 even = (pl_bf16)((b & 0x8000) | ((a & 1) ? a + 1 : a));
        bad_tie += pl_f32_to_bf16(u2f(mid)) != even;
        bad_tie += pl_f32_to_bf16(u2f(mid - 1)) != (pl_bf16)b;
        bad_tie += pl_f32_to_bf16(u2f(mid + 1)) != (pl_bf16)((b & 0x8000) | (a + 1));
    }
    CHECK(bad_trip == 0, "%d bfloat16 values do not round-trip", bad_trip);
    CHECK(bad_nan == 0, "%d NaN bfloat16 values not kept as quiet NaN", bad_nan);
    CHECK(bad_tie == 0, "%d rounding-boundary conversions wrong", bad_tie);
    CHECK(pl_f32_to_bf16(1.0f) == 0x3F80 && pl_f32_to_bf16(-2.0f) == 0xC000 &&
              pl_f32_to_bf16(3.14159265f) == 0x4049 && pl_f32_to_bf16(FLT_MAX) == 0x7F80 &&
              pl_f32_to_bf16(-INFINITY) == 0xFF80,
          "known bfloat16 values");
    CHECK(pl_f32_to_bf16(u2f(0x7F800001u)) == 0x7FC0 && pl_f32_to_bf16(u2f(0xFFC00000u)) == 0xFFC0,
          "NaN -> quiet NaN with sign");
}

/* -------------------------------------------------------------- rounding */

static void test_roundtrip_gauss(void) {
    const int64_t n = 65536;
    float *x = malloc(n * sizeof(float)), *y = malloc(n * sizeof(float));
    REQUIRE(x && y, "alloc");
    fill_gauss(x, n, 1.0f, 0.0f);
    printf("   type  rel.rmse  bound    worst block err\n");
    for (int c = 0; c < N_CASES; c++) {
        const tq_case *k = &k_cases[c];
        const quant_traits *t = quant_get(k->type);
        CHECK(roundtrip(k->type, x, y, n), "%s writes past its row", t->name);
        const double e = rel_rmse(y, x, n), be = worst_block_err(x, y, n, t->blck);
        printf("   %-5s %.6f  %.6f %.6f\n", t->name, e, k->rmse, be);
        CHECK(e <= k->rmse, "%s: relative RMSE %.6f > %.6f", t->name, e, k->rmse);
        CHECK(be <= k->block, "%s: block error %.6f > %.6f", t->name, be, k->block);
        /* the affine types must cope with an offset as well as with centred data */
        fill_gauss(x, n, 1.0f, 2.5f);
        CHECK(roundtrip(k->type, x, y, n), "%s offset", t->name);
        const double eo = worst_block_err(x, y, n, t->blck);
        CHECK(eo <= k->block, "%s: block error %.6f > %.6f on offset data", t->name, eo, k->block);
        fill_gauss(x, n, 1.0f, 0.0f);
    }
    free(x);
    free(y);
}

/* Short rows (1, 2, 7 blocks) quantize exactly like the same prefix of a long
 * row (blocks are independent) and touch nothing beyond n. */
static void test_edge_sizes(void) {
    const int64_t n_long = 7 * 256;
    float *x = malloc(n_long * sizeof(float)), *y = malloc(n_long * sizeof(float));
    uint8_t *ql = malloc(quant_row_size(QT_F32, n_long) + 64), *qs = malloc(quant_row_size(QT_F32, n_long) + 64);
    REQUIRE(x && y && ql && qs, "alloc");
    fill_gauss(x, n_long, 0.3f, 0.1f);
    for (int c = 0; c < N_CASES; c++) {
        const tq_case *k = &k_cases[c];
        const quant_traits *t = quant_get(k->type);
        t->from_float(x, ql, n_long);
        static const int nblocks[] = {1, 2, 7};
        for (int i = 0; i < 3; i++) {
            const int64_t n = (int64_t)nblocks[i] * t->blck;
            const uint64_t rs = quant_row_size(k->type, n);
            memset(qs, 0x5A, rs + 64);
            t->from_float(x, qs, n);
            CHECK(memcmp(qs, ql, rs) == 0, "%s: %d-block row differs from the long row's prefix", t->name,
                  nblocks[i]);
            int canary = 1;
            for (int j = 0; j < 64; j++) canary &= qs[rs + j] == 0x5A;
            CHECK(canary, "%s: quantizing %d blocks wrote past the row", t->name, nblocks[i]);
            CHECK(roundtrip(k->type, x, y, n), "%s: %d blocks", t->name, nblocks[i]);
            const double be = worst_block_err(x, y, n, t->blck);
            CHECK(be <= k->block, "%s: %d blocks: block error %.6f > %.6f", t->name, nblocks[i], be, k->block);
        }
    }
    free(x);
    free(y);
    free(ql);
    free(qs);
}

static void test_special_values(void) {
    const int64_t n = 2048;
    float *x = malloc(n * sizeof(float)), *y = malloc(n * sizeof(float));
    REQUIRE(x && y, "alloc");
    for (int c = 0; c < N_CASES; c++) {
        const tq_case *k = &k_cases[c];
        const quant_traits *t = quant_get(k->type);

        /* all zeros decode to exact zeros */
        memset(x, 0, n * sizeof(float));
        CHECK(roundtrip(k->type, x, y, n), "%s zeros", t->name);
        int nz = 0;
        for (int64_t i = 0; i < n; i++) nz += y[i] != 0.0f;
        CHECK(nz == 0, "%s: %d of %lld zeros decode nonzero", t->name, nz, (long long)n);

        /* a constant: within the block bound (in fact exact up to the
         * rounding of the stored scale or min) */
        static const float consts[] = {0.37f, -1.9f, 1000.f};
        for (int i = 0; i < 3; i++) {
            for (int64_t j = 0; j < n; j++) x[j] = consts[i];
            CHECK(roundtrip(k->type, x, y, n), "%s const", t->name);
            double worst = 0;
            for (int64_t j = 0; j < n; j++) worst = fmax(worst, fabs((double)y[j] - consts[i]) / fabs(consts[i]));
            CHECK(worst <= k->block, "%s: constant %g comes back off by %.2e (relative)", t->name, consts[i], worst);
        }

        /* large and small magnitudes: the same relative error as unit data */
        const float scales_half[] = {1e-2f, 1e3f}, scales_wide[] = {1e-30f, 1e30f};
        for (int i = 0; i < 2; i++) {
            const float s = k->wide ? scales_wide[i] : scales_half[i];
            fill_gauss(x, n, s, 0.0f);
            CHECK(roundtrip(k->type, x, y, n), "%s scale", t->name);
            const double be = worst_block_err(x, y, n, t->blck);
            CHECK(all_finite(y, n) && be <= k->block, "%s: data of scale %g: block error %.6f > %.6f",
                  t->name, s, be, k->block);
        }

        /* one outlier per block region: it is reproduced well (it sets the
         * scale), everything stays finite and within the block bound */
        fill_gauss(x, n, 1.0f, 0.0f);
        x[5] = 60.f;
        x[700] = -45.f;
        x[1500] = 90.f;
        CHECK(roundtrip(k->type, x, y, n), "%s outlier", t->name);
        const double be = worst_block_err(x, y, n, t->blck);
        CHECK(all_finite(y, n) && be <= k->block, "%s: with outliers: block error %.6f > %.6f", t->name, be,
              k->block);
        const int at[] = {5, 700, 1500};
        for (int i = 0; i < 3; i++)
            CHECK(fabs(y[at[i]] - x[at[i]]) <= 0.06 * fabs(x[at[i]]), "%s: outlier %g decodes as %g", t->name,
                  x[at[i]], y[at[i]]);
    }
    free(x);
    free(y);
}

/* NaN and inf are garbage in, but must not be undefined behaviour (the
 * sanitizer build checks that) nor leak into the other blocks of the row. */
static void test_non_finite(void) {
    const int64_t n = 4 * 256;
    float *x = malloc(n * sizeof(float)), *y = malloc(n * sizeof(float));
    uint8_t *qa = malloc(quant_row_size(QT_F32, n)), *qb = malloc(quant_row_size(QT_F32, n));
    REQUIRE(x && y && qa && qb, "alloc");
    static const float bad[] = {NAN, INFINITY, -INFINITY};
    for (int c = 0; c < N_CASES; c++) {
        const quant_traits *t = quant_get(k_cases[c].type);
        for (int b = 0; b < 3; b++) {
            fill_gauss(x, n, 1.0f, 0.0f);
            t->from_float(x, qa, n);
            x[3] = bad[b];
            t->from_float(x, qb, n);
            t->to_float(qb, y, n);
            const uint64_t first = quant_row_size(k_cases[c].type, 256); /* whole blocks holding x[3] */
            const uint64_t rs = quant_row_size(k_cases[c].type, n);
            CHECK(memcmp(qa + first, qb + first, rs - first) == 0, "%s: %g in block 0 changed later blocks",
                  t->name, bad[b]);
        }
    }
    free(x);
    free(y);
    free(qa);
    free(qb);
}

/* Q8_K's bsums are the sums of its 16-element groups; Q8_1's s is d*sum(q). */
static void test_activation_sums(void) {
    const int64_t n = 1024;
    float *x = malloc(n * sizeof(float));
    block_q8_K *k = malloc(quant_row_size(QT_Q8_K, n));
    block_q8_1 *q = malloc(quant_row_size(QT_Q8_1, n));
    REQUIRE(x && k && q, "alloc");
    fill_gauss(x, n, 2.0f, 0.7f);
    memset(x + 256, 0, 256 * sizeof(float)); /* one all-zero super-block */
    quant_get(QT_Q8_K)->from_float(x, k, n);
    quant_get(QT_Q8_1)->from_float(x, q, n);
    for (int b = 0; b < n / 256; b++)
        for (int j = 0; j < 16; j++) {
            int sum = 0;
            for (int l = 0; l < 16; l++) sum += k[b].qs[16 * j + l];
            CHECK(k[b].bsums[j] == sum, "q8_K block %d group %d: bsum %d, sum %d", b, j, k[b].bsums[j], sum);
        }
    CHECK(k[1].d == 0.0f, "zero block d");
    for (int b = 0; b < n / 32; b++) {
        int sum = 0;
        for (int l = 0; l < 32; l++) sum += q[b].qs[l];
        const float want = pl_fp16_to_f32(q[b].d) * (float)sum, got = pl_fp16_to_f32(q[b].s);
        CHECK(fabsf(got - want) <= 2e-3f * fabsf(want) + 1e-6f, "q8_1 block %d: s %g, d*sum %g", b, got, want);
    }
    free(x);
    free(k);
    free(q);
}

/* ----------------------------------------------------------------- dots */

/* vec_dot(x_q, y_q) against the float64 dot of the two dequantized rows. The
 * kernels sum exact integers within a block and round once per block, so the
 * difference is float rounding: well under 1e-5 of sum |x_i y_i|. */
static int dot_agrees(uint32_t type, const float *xf, const float *yf, int n, double *rel_out) {
    const quant_traits *t = quant_get(type), *vt = quant_get(t->vec_dot_type);
    void *xq = malloc(quant_row_size(type, n)), *yq = malloc(quant_row_size(t->vec_dot_type, n));
    float *xd = malloc((size_t)n * sizeof(float)), *yd = malloc((size_t)n * sizeof(float));
    int ok = 0;
    if (xq && yq && xd && yd) {
        t->from_float(xf, xq, n);
        vt->from_float(yf, yq, n);
        t->to_float(xq, xd, n);
        vt->to_float(yq, yd, n);
        double ref = 0, mag = 0;
        for (int i = 0; i < n; i++) {
            ref += (double)xd[i] * yd[i];
            mag += fabs((double)xd[i] * yd[i]);
        }
        float s = NAN;
        t->vec_dot(n, &s, xq, yq);
        const double rel = mag > 0 ? fabs(s - ref) / mag : fabs(s - ref);
        *rel_out = rel;
        ok = isfinite(s) && rel <= 1e-5;
    }
    free(xq);
    free(yq);
    free(xd);
    free(yd);
    return ok;
}

static void test_vec_dot(void) {
    const int n_max = 8192;
    float *x = malloc(n_max * sizeof(float)), *y = malloc(n_max * sizeof(float));
    REQUIRE(x && y, "alloc");
    for (int c = 0; c < N_CASES; c++) {
        const quant_traits *t = quant_get(k_cases[c].type);
        if (!t->vec_dot) continue;
        const int sizes[] = {t->blck, 2 * t->blck, 7 * t->blck, n_max};
        double worst = 0;
        for (int si = 0; si < 4; si++) {
            for (int data = 0; data < 4; data++) {
                const int n = sizes[si];
                /* centred, offset (exercises the min terms), mixed scale, zero y */
                fill_gauss(x, n, data == 2 ? 30.f : 1.f, data == 1 ? 1.5f : 0.f);
                fill_gauss(y, n, 1.f, data == 1 ? -0.8f : 0.f);
                if (data == 2)
                    for (int i = 0; i < n; i += 97) x[i] *= 0.001f;
                if (data == 3) memset(y, 0, (size_t)n * sizeof(float));
                double rel = 0;
                CHECK(dot_agrees(k_cases[c].type, x, y, n, &rel), "%s x %s, n=%d, data %d: off by %.2e", t->name,
                      quant_get(t->vec_dot_type)->name, n, data, rel);
                worst = fmax(worst, rel);
            }
        }
        printf("   %-5s x %-5s worst |dot - float64 ref| / sum|x*y| = %.2e\n", t->name,
               quant_get(t->vec_dot_type)->name, worst);
    }
    free(x);
    free(y);
}

/* -------------------------------------------------------- real models */

#define REAL_REQUANT_MAX (128 * 1024) /* elements per tensor re-quantized (keeps the test quick) */

typedef struct real_stats {
    int n_tensors;
    double worst_rmse;
    int64_t blocks, blocks_same;
    double worst_dot;
} real_stats;

static void check_real_tensor(const gguf_tensor *tq, const gguf_tensor *tf, real_stats *st, const char *name) {
    const quant_traits *q = quant_get(tq->type), *f = quant_get(tf->type);
    const tq_case *k = case_of(tq->type);
    REQUIRE(q && f && k, "%s: type %u / %u unsupported", name, tq->type, tf->type);
    int64_t n = 1;
    for (int d = 0; d < GGUF_MAX_DIMS; d++) {
        CHECK(tq->ne[d] == tf->ne[d], "%s: shapes differ in dim %d", name, d);
        n *= tq->ne[d];
    }
    const int64_t row = tq->ne[0];
    float *a = malloc((size_t)n * sizeof(float)), *b = malloc((size_t)n * sizeof(float));
    const int64_t n_rq = n < REAL_REQUANT_MAX ? n : REAL_REQUANT_MAX - REAL_REQUANT_MAX % row;
    uint8_t *rq = malloc(quant_row_size(tq->type, n_rq > 0 ? n_rq : row));
    REQUIRE(a && b && rq && n_rq > 0, "alloc");
    q->to_float(tq->data, a, n);
    f->to_float(tf->data, b, n);
    const double e = rel_rmse(a, b, n);
    CHECK(e <= k->real, "%s (%s): relative RMSE vs f16 %.5f > %.5f", name, q->name, e, k->real);
    if (e > st->worst_rmse) st->worst_rmse = e;

    /* llama-quantize's reference quantizer made these bytes from the f16
     * weights: ours must make the same ones */
    q->from_float(b, rq, n_rq);
    const int64_t nb = n_rq / q->blck;
    int64_t same = 0;
    for (int64_t i = 0; i < nb; i++)
        same += memcmp(rq + i * q->type_size, (const uint8_t *)tq->data + i * q->type_size, (size_t)q->type_size) == 0;
    CHECK(same == nb, "%s (%s): %lld of %lld re-quantized blocks differ from the file", name, q->name,
          (long long)(nb - same), (long long)nb);
    st->blocks += nb;
    st->blocks_same += same;

    /* dot of real weight rows with a real activation-like vector (the f16
     * values of row 0 of the same tensor) against the float64 reference */
    if (q->vec_dot && row <= 8192) {
        const quant_traits *vt = quant_get(q->vec_dot_type);
        void *yq = malloc(quant_row_size(q->vec_dot_type, row));
        float *yd = malloc((size_t)row * sizeof(float));
        REQUIRE(yq && yd, "alloc");
        vt->from_float(b, yq, row);
        vt->to_float(yq, yd, row);
        const uint64_t rs = quant_row_size(tq->type, row);
        for (int64_t r = 0; r < 8 && r < n / row; r++) {
            double ref = 0, mag = 0;
            for (int64_t i = 0; i < row; i++) {
                ref += (double)a[r * row + i] * yd[i];
                mag += fabs((double)a[r * row + i] * yd[i]);
            }
            float s;
            q->vec_dot((int)row, &s, (const uint8_t *)tq->data + r * rs, yq);
            const double rel = mag > 0 ? fabs(s - ref) / mag : fabs(s - ref);
            CHECK(rel <= 1e-5, "%s row %lld: vec_dot off by %.2e", name, (long long)r, rel);
            if (rel > st->worst_dot) st->worst_dot = rel;
        }
        free(yq);
        free(yd);
    }
    st->n_tensors++;
    free(a);
    free(b);
    free(rq);
}

static void test_real_models(void) {
    static const char *const models[] = {"llama", "qwen2"};
    static const char *const quants[] = {"q8_0", "q4_0", "q4_k_m"};
    int opened = 0;
    for (int m = 0; m < 2; m++) {
        char rel[128];
        snprintf(rel, sizeof rel, "models/kjv-%s-f16.gguf", models[m]);
        const char *fpath = shared_path(rel);
        if (!fpath) continue;
        gguf_file *ff = NULL;
        const pl_status st_open = gguf_open(fpath, &ff); /* not inside REQUIRE: it evaluates twice */
        REQUIRE(st_open == PL_OK, "%s: %s", fpath, pl_last_error());
        for (int qi = 0; qi < 3; qi++) {
            snprintf(rel, sizeof rel, "models/kjv-%s-%s.gguf", models[m], quants[qi]);
            const char *qpath = shared_path(rel);
            if (!qpath) continue;
            gguf_file *fq = NULL;
            CHECK(gguf_open(qpath, &fq) == PL_OK, "%s: %s", qpath, pl_last_error());
            if (!fq) continue;
            opened++;
            real_stats st[QT_COUNT];
            memset(st, 0, sizeof st);
            for (uint64_t i = 0; i < fq->n_tensors; i++) {
                const gguf_tensor *tq = &fq->tensors[i];
                char *name = gguf_str_dup(tq->name);
                const gguf_tensor *tf = name ? gguf_find_tensor(ff, name) : NULL;
                CHECK(tf != NULL, "%s: tensor %s not in the f16 file", qpath, name ? name : "?");
                if (tf && tq->type < QT_COUNT) check_real_tensor(tq, tf, &st[tq->type], name);
                free(name);
            }
            for (int t = 0; t < QT_COUNT; t++)
                if (st[t].n_tensors)
                    printf("   %-6s %-6s %3d %-5s tensors: worst rel.rmse vs f16 %.5f, requantized blocks "
                           "identical %lld/%lld, worst dot err %.1e\n",
                           models[m], quants[qi], st[t].n_tensors, quant_get((uint32_t)t)->name,
                           st[t].worst_rmse, (long long)st[t].blocks_same, (long long)st[t].blocks,
                           st[t].worst_dot);
            gguf_close(fq);
        }
        gguf_close(ff);
    }
    if (!opened) SKIP("../shared/models not found");
}

int main(void) {
    RUN(test_traits_table);
    RUN(test_fp16_exhaustive);
    RUN(test_bf16_exhaustive);
    RUN(test_roundtrip_gauss);
    RUN(test_edge_sizes);
    RUN(test_special_values);
    RUN(test_non_finite);
    RUN(test_activation_sums);
    RUN(test_vec_dot);
    RUN(test_real_models);
    TEST_END();
}
