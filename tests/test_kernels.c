/*
 * Kernels against their references, at every kernel level this CPU has
 * (each forced in turn with kern_force):
 *  - CPU feature detection against the kernel's own view in /proc/cpuinfo;
 *  - every dispatched vec_dot against the scalar reference in src/quant, on
 *    random block bytes (all bit patterns: levels, packed scales, -128) and
 *    on reference-quantized random rows, over block-edge sizes;
 *  - the dispatched activation quantizers byte for byte against the
 *    references, special values (ties, NaN, inf, subnormals) included;
 *  - the float kernels against ref_ops.c over every tail length, and the
 *    F16 and Q8_0 KV-cache attention loops against attn.c's references (the
 *    Q8_0 references also against double sums of the dequantized blocks; the
 *    type-generic entry points and the KV row store against the typed ones);
 *  - kern_matmul (row-dot and tiled paths, 1 and 2 threads, bias, strides,
 *    T = 1..7 and larger, n_out not a multiple of the tile) against a naive
 *    double matmul of the dequantized weights and activations.
 * Tolerance: SIMD sums run in another order than the references, so results
 * must agree to TOL_REL (2e-5) of the sum of |products| (the scale of the
 * rounding error), not bit for bit; integer block sums make that tight.
 */
#include "test.h"

#include "kernels/attn.h"
#include "kernels/kern_impl.h"
#include "quant/quant_ref.h"

#include <math.h>
#include <stddef.h>

#define TOL_REL 2e-5

static uint64_t g_rng = 0x9E3779B97F4A7C15ull;
static uint32_t rnd(void) {
    g_rng ^= g_rng << 13;
    g_rng ^= g_rng >> 7;
    g_rng ^= g_rng << 17;
    return (uint32_t)(g_rng >> 16);
}
static float frand(float lo, float hi) { return lo + (hi - lo) * (float)(rnd() & 0xFFFFFF) / (float)0x1000000; }

/* Weight types with a vec_dot, and where their half-precision scale fields
 * sit in a block (random block bytes get sane scales there). */
typedef struct wtype {
    quant_type type;
    int d_off, dmin_off; /* -1: none */
} wtype;

static const wtype k_wtypes[] = {
    {QT_Q4_0, offsetof(block_q4_0, d), -1},
    {QT_Q4_1, offsetof(block_q4_1, d), offsetof(block_q4_1, m)},
    {QT_Q5_0, offsetof(block_q5_0, d), -1},
    {QT_Q5_1, offsetof(block_q5_1, d), offsetof(block_q5_1, m)},
    {QT_Q8_0, offsetof(block_q8_0, d), -1},
    {QT_Q2_K, offsetof(block_q2_K, d), offsetof(block_q2_K, dmin)},
    {QT_Q3_K, offsetof(block_q3_K, d), -1},
    {QT_Q4_K, offsetof(block_q4_K, d), offsetof(block_q4_K, dmin)},
    {QT_Q5_K, offsetof(block_q5_K, d), offsetof(block_q5_K, dmin)},
    {QT_Q6_K, offsetof(block_q6_K, d), -1},
    {QT_F16, -1, -1},
    {QT_BF16, -1, -1},
    {QT_F32, -1, -1},
};
#define N_WTYPES (int)(sizeof k_wtypes / sizeof k_wtypes[0])

/* ------------------------------------------------------------- helpers */

static void fill_floats(float *x, int64_t n, float scale) {
    for (int64_t i = 0; i < n; i++) x[i] = frand(-scale, scale);
}

/* A row of n elements of type w: random bytes with sane scale fields, or the
 * reference quantization of random floats. */
static void make_row(const wtype *w, void *dst, int64_t n, int random_bytes) {
    const quant_traits *tr = quant_get(w->type);
    const uint64_t bytes = quant_row_size(w->type, n);
    if (random_bytes && tr->is_quantized) {
        uint8_t *p = dst;
        for (uint64_t i = 0; i < bytes; i++) p[i] = (uint8_t)rnd();
        for (int64_t b = 0; b < n / tr->blck; b++) {
            uint8_t *blk = p + (size_t)b * (size_t)tr->type_size;
            pl_fp16 h = quant_f32_to_fp16(frand(-0.02f, 0.02f));
            memcpy(blk + w->d_off, &h, sizeof h);
            if (w->dmin_off >= 0) {
                h = quant_f32_to_fp16(frand(-0.02f, 0.02f));
                memcpy(blk + w->dmin_off, &h, sizeof h);
            }
        }
        return;
    }
    float *x = malloc((size_t)n * sizeof(float));
    fill_floats(x, n, 1.0f);
    tr->from_float(x, dst, n);
    free(x);
}

static double *dequant(uint32_t type, const void *row, int64_t n) {
    float *f = malloc((size_t)n * sizeof(float));
    double *d = malloc((size_t)n * sizeof(double));
    quant_get(type)->to_float(row, f, n);
    for (int64_t i = 0; i < n; i++) d[i] = f[i];
    free(f);
    return d;
}

static const char *k_level_names[KERN_LEVEL_COUNT] = {"scalar", "avx2", "avx512", "neon", "dotprod"};

/* Calls fn once per distinct kernel level this CPU runs. */
static void for_each_level(void (*fn)(kern_level level)) {
    kern_level prev = (kern_level)-1;
    for (int l = KERN_SCALAR; l <= (int)kern_cpu_level(); l++) {
        kern_level got = kern_force((kern_level)l);
        if (got == prev) continue;
        prev = got;
        fn(got);
    }
    kern_force(KERN_LEVEL_COUNT - 1);
}

/* ----------------------------------------------------- CPU detection */

static int cpuinfo_has(const char *flags_line, const char *flag) {
    const size_t n = strlen(flag);
    for (const char *p = flags_line; (p = strstr(p, flag)) != NULL; p += n)
        if ((p == flags_line || p[-1] == ' ' || p[-1] == '\t') && (p[n] == ' ' || p[n] == '\n' || p[n] == 0))
            return 1;
    return 0;
}

/* Under an emulator the expected level can be named (tests/run.sh does not;
 * make test-arm64 does, per qemu CPU model): detection must find exactly it. */
static void test_cpu_level_expected(void) {
    const char *want = getenv("PL_EXPECT_CPU_LEVEL");
    if (!want || !*want) SKIP("PL_EXPECT_CPU_LEVEL not set");
    const int l = kern_level_from_name(want);
    REQUIRE(l >= 0, "PL_EXPECT_CPU_LEVEL=%s is not a level name", want);
    CHECK(kern_cpu_level() == (kern_level)l, "detected level %d, expected %s", (int)kern_cpu_level(), want);
    CHECK(kern_force(KERN_LEVEL_COUNT - 1) == (kern_level)l, "the build has kernels for %s", want);
}

static void test_cpu_features(void) {
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (!f) SKIP("no /proc/cpuinfo");
    static char line[8192];
    const char *flags = NULL;
    int x86_line = 0;
    while (fgets(line, sizeof line, f))
        if (strncmp(line, "flags", 5) == 0 || strncmp(line, "Features", 8) == 0) {
            flags = strchr(line, ':');
            x86_line = line[0] == 'f';
            break;
        }
    fclose(f);
    if (!flags) SKIP("/proc/cpuinfo has no flags line");
    /* a user-mode emulator (qemu-aarch64 on an x86 host) passes the host's
     * /proc/cpuinfo through: the other architecture's line says nothing
     * about the CPU this binary sees */
#if defined(__x86_64__) || defined(__i386__)
    if (!x86_line) SKIP("/proc/cpuinfo is not an x86 one (emulated?)");
#elif defined(__aarch64__)
    if (x86_line) SKIP("/proc/cpuinfo is an x86 host's (emulated, e.g. qemu-user)");
#endif
    const kern_cpu *c = kern_cpu_features();
    const struct { const char *name; bool have; } k[] = {
#if defined(__x86_64__) || defined(__i386__)
        {"avx2", c->avx2}, {"fma", c->fma}, {"f16c", c->f16c}, {"avx512f", c->avx512f},
        {"avx512bw", c->avx512bw}, {"avx512vl", c->avx512vl}, {"avx512dq", c->avx512dq},
        {"avx512_vnni", c->avx512vnni}, {"avx_vnni", c->avx_vnni}, {"avx512_bf16", c->avx512_bf16},
#elif defined(__aarch64__)
        {"asimd", c->neon}, {"asimddp", c->dotprod}, {"i8mm", c->i8mm},
#endif
        {"", false}};
    for (size_t i = 0; k[i].name[0]; i++)
        CHECK(cpuinfo_has(flags, k[i].name) == (int)k[i].have, "%s: cpuinfo %d, detected %d", k[i].name,
              cpuinfo_has(flags, k[i].name), (int)k[i].have);
}

static void test_levels(void) {
    const kern_level cpu = kern_cpu_level();
    for (int l = 0; l < KERN_LEVEL_COUNT; l++) {
        CHECK(kern_level_from_name(k_level_names[l]) == l, "name %s", k_level_names[l]);
        const kern_level got = kern_force((kern_level)l);
        CHECK(got <= (kern_level)l && got <= cpu, "forced %d got %d (cpu %d)", l, got, cpu);
        CHECK(kern_level_get() == got && strcmp(kern_level_name(), k_level_names[got]) == 0, "name %s",
              kern_level_name());
    }
    CHECK(kern_level_from_name("AVX2") == KERN_AVX2, "case-insensitive");
    CHECK(kern_level_from_name("sse9") == -1, "unknown name");
    CHECK(kern_force(KERN_SCALAR) == KERN_SCALAR, "scalar is always available");
    for (int t = 0; t < QT_COUNT; t++) {
        const quant_traits *tr = quant_get((uint32_t)t);
        if (!tr) continue;
        CHECK(kern_vec_dot((uint32_t)t) == tr->vec_dot, "scalar level uses the reference dot of %s", tr->name);
        CHECK(kern_from_float((uint32_t)t) == tr->from_float, "scalar level uses the reference quantizer of %s",
              tr->name);
    }
    kern_force(KERN_LEVEL_COUNT - 1);
}

/* ------------------------------------------------------------ vec_dot */

static void check_dot(const wtype *w, int64_t n, int random_bytes) {
    const quant_traits *tr = quant_get(w->type), *vt = quant_get(tr->vec_dot_type);
    void *x = malloc(quant_row_size(w->type, n)), *y = malloc(quant_row_size(tr->vec_dot_type, n));
    float *yf = malloc((size_t)n * sizeof(float));
    make_row(w, x, n, random_bytes);
    fill_floats(yf, n, 1.0f);
    vt->from_float(yf, y, n);
    double *xd = dequant(w->type, x, n), *yd = dequant(tr->vec_dot_type, y, n);
    double mag = 0;
    for (int64_t i = 0; i < n; i++) mag += fabs(xd[i] * yd[i]);
    float ref = 0, got = 0;
    tr->vec_dot((int)n, &ref, x, y);
    kern_vec_dot(w->type)((int)n, &got, x, y);
    CHECK(fabs((double)got - ref) <= TOL_REL * mag + 1e-30, "%s level %s n=%lld %s: got %.9g ref %.9g (mag %g)",
          tr->name, kern_level_name(), (long long)n, random_bytes ? "random bytes" : "quantized", got, ref, mag);
    /* the 4-row form, on 4 copies of x at a stride with other rows between */
    const kern_vec_dot4_fn dot4 = kern_ops_get()->vec_dot4[w->type];
    if (dot4) {
        const size_t rb = quant_row_size(w->type, n), bx = 2 * rb + 4;
        uint8_t *x4 = malloc(4 * bx);
        memset(x4, 0x5A, 4 * bx);
        for (int r = 0; r < 4; r++) memcpy(x4 + r * bx, x, rb);
        float s4[4];
        dot4((int)n, s4, x4, bx, y);
        for (int r = 0; r < 4; r++)
            CHECK(fabs((double)s4[r] - ref) <= TOL_REL * mag + 1e-30, "%s vec_dot4 level %s n=%lld row %d: %.9g vs %.9g",
                  tr->name, kern_level_name(), (long long)n, r, s4[r], ref);
        free(x4);
    }
    free(x);
    free(y);
    free(yf);
    free(xd);
    free(yd);
}

static void dots_at_level(kern_level level) {
    (void)level;
    static const int blocks[] = {1, 2, 3, 5, 8, 17};
    for (int i = 0; i < N_WTYPES; i++) {
        const quant_traits *tr = quant_get(k_wtypes[i].type);
        if (tr->blck == 1) {
            for (int64_t n = 1; n <= 80; n++) check_dot(&k_wtypes[i], n, 0);
            check_dot(&k_wtypes[i], 256, 0);
            check_dot(&k_wtypes[i], 2048 + 7, 0);
            continue;
        }
        for (size_t b = 0; b < sizeof blocks / sizeof blocks[0]; b++)
            for (int rb = 0; rb < 2; rb++) check_dot(&k_wtypes[i], (int64_t)blocks[b] * tr->blck, rb);
        if (tr->blck == 32) /* a row length that is a multiple of 32 but not of 256 */
            for (int rb = 0; rb < 2; rb++) check_dot(&k_wtypes[i], 32 * 9, rb);
    }
}

static void test_vec_dot(void) { for_each_level(dots_at_level); }

/* -------------------------------------------------------- quantizers */

/* Random rows plus rows made of special values. */
static void fill_special(float *x, int64_t n, int kind) {
    for (int64_t i = 0; i < n; i++) {
        switch (kind) {
        case 0: x[i] = frand(-3, 3); break;
        case 1: x[i] = (float)((int)(rnd() % 255) - 127) + 0.5f * (float)(rnd() & 1); break; /* ties */
        case 2: x[i] = 0; break;
        case 3: x[i] = (rnd() & 1 ? 1e-40f : -3e-42f) * (float)(rnd() % 5); break; /* subnormals */
        case 4: {
            static const float sp[] = {NAN, INFINITY, -INFINITY, 65504.f, 65520.f, -1e30f, 6e-8f, 0.5f};
            x[i] = rnd() % 4 ? frand(-100, 100) : sp[rnd() % 8];
            break;
        }
        default: x[i] = (float)(rnd() % 3) * 0.5f - 0.5f; break; /* exact halves with a small max */
        }
    }
    /* blocks whose absmax is exactly 127 make the scale 1: x.5 values are ties */
    if (kind == 1)
        for (int64_t i = 0; i < n; i += 32) x[i] = -127.f;
}

static void quant_at_level(kern_level level) {
    (void)level;
    static const quant_type types[] = {QT_Q8_0, QT_Q8_K, QT_F16, QT_BF16};
    for (size_t ti = 0; ti < sizeof types / sizeof types[0]; ti++) {
        const quant_traits *tr = quant_get(types[ti]);
        for (int kind = 0; kind < 6; kind++) {
            const int64_t n = tr->blck == 1 ? 8 * 33 + 5 : tr->blck * 5;
            float *x = malloc((size_t)n * sizeof(float));
            fill_special(x, n, kind);
            const uint64_t bytes = quant_row_size(types[ti], n);
            uint8_t *a = malloc(bytes), *b = malloc(bytes);
            memset(a, 0xAA, bytes);
            memset(b, 0x55, bytes);
            tr->from_float(x, a, n);
            kern_from_float(types[ti])(x, b, n);
            size_t diff = 0;
            while (diff < bytes && a[diff] == b[diff]) diff++;
            CHECK(diff == bytes, "%s level %s kind %d: first differing byte %zu of %llu", tr->name,
                  kern_level_name(), kind, diff, (unsigned long long)bytes);
            free(x);
            free(a);
            free(b);
        }
    }
}

static void test_quantizers(void) { for_each_level(quant_at_level); }

/* ------------------------------------------------------- float kernels */

static int close_rel(double got, double ref, double mag, double tol) { return fabs(got - ref) <= tol * mag + 1e-30; }

static void ops_at_level(kern_level level) {
    (void)level;
    static const int sizes[] = {0, 1, 2, 3, 7, 8, 9, 15, 16, 17, 24, 31, 32, 33, 64, 100, 255, 256, 1000};
    for (size_t si = 0; si < sizeof sizes / sizeof sizes[0]; si++) {
        const int n = sizes[si];
        float *x = malloc(sizeof(float) * (size_t)(n + 1)), *w = malloc(sizeof(float) * (size_t)(n + 1));
        float *a = malloc(sizeof(float) * (size_t)(n + 1)), *b = malloc(sizeof(float) * (size_t)(n + 1));
        fill_floats(x, n, 4.0f);
        fill_floats(w, n, 2.0f);

        if (n > 0) {
            kern_ref_rmsnorm(a, x, w, n, 1e-5f);
            kern_rmsnorm(b, x, w, n, 1e-5f);
            for (int i = 0; i < n; i++) CHECK(close_rel(b[i], a[i], fabs(a[i]), 1e-5), "rmsnorm n=%d i=%d", n, i);
            kern_ref_rmsnorm(a, x, NULL, n, 1e-5f);
            kern_rmsnorm(b, x, NULL, n, 1e-5f);
            for (int i = 0; i < n; i++) CHECK(close_rel(b[i], a[i], fabs(a[i]), 1e-5), "rmsnorm n=%d i=%d", n, i);
        }

        /* softmax over a wide range: exponents down to about -80 */
        for (int i = 0; i < n; i++) a[i] = b[i] = frand(-40, 40);
        kern_ref_softmax(a, n);
        kern_softmax(b, n);
        for (int i = 0; i < n; i++)
            CHECK(close_rel(b[i], a[i], fabs(a[i]), 2e-6) || fabs(b[i] - a[i]) < 1e-37, "softmax n=%d i=%d: %g vs %g",
                  n, i, b[i], a[i]);

        /* silu over a range that reaches exp's overflow and underflow */
        for (int i = 0; i < n; i++) x[i] = frand(-120, 120);
        kern_ref_silu_mul(a, x, w, n);
        kern_silu_mul(b, x, w, n);
        for (int i = 0; i < n; i++)
            CHECK(close_rel(b[i], a[i], fabs(a[i]), 2e-6) || fabs(b[i] - a[i]) < 1e-30, "silu n=%d i=%d: %g vs %g", n,
                  i, b[i], a[i]);

        /* log-sum-exp over a vocabulary-like range */
        if (n > 0) {
            for (int i = 0; i < n; i++) x[i] = frand(-30, 30);
            const double ref = kern_ref_logsumexp(x, n), got = kern_logsumexp(x, n);
            CHECK(fabs(got - ref) <= 1e-6 * (1 + fabs(ref)), "logsumexp n=%d: %.9g vs %.9g", n, got, ref);
        }
        free(x);
        free(w);
        free(a);
        free(b);
    }
}

static void test_float_ops(void) { for_each_level(ops_at_level); }

/* Attention over an F16 cache: P cached rows of D halves with a row stride,
 * against the scalar references in attn.c. */
static void attn_at_level(kern_level level) {
    (void)level;
    static const int Ds[] = {1, 7, 8, 24, 32, 33, 64, 100, 128};
    for (size_t di = 0; di < sizeof Ds / sizeof Ds[0]; di++)
        for (int P = 0; P <= 41; P += (P < 9 ? 1 : 16)) {
            const int D = Ds[di];
            const size_t stride = (size_t)D * 2 + 3;
            pl_fp16 *cache = malloc(sizeof(pl_fp16) * (stride * (size_t)P + 1));
            float *q = malloc(sizeof(float) * (size_t)D), *w = malloc(sizeof(float) * (size_t)(P + 1));
            float *s1 = malloc(sizeof(float) * (size_t)(P + 1)), *s2 = malloc(sizeof(float) * (size_t)(P + 1));
            float *o1 = malloc(sizeof(float) * (size_t)(D + 1)), *o2 = malloc(sizeof(float) * (size_t)(D + 1));
            for (size_t i = 0; i < stride * (size_t)P; i++) cache[i] = quant_f32_to_fp16(frand(-2, 2));
            fill_floats(q, D, 1.0f);
            fill_floats(w, P, 1.0f);
            kern_ref_attn_scores_f16(s1, q, cache, stride, P, D, 0.17f);
            s2[P] = 777.f;
            kern_attn_scores_f16(s2, q, cache, stride, P, D, 0.17f);
            for (int p = 0; p < P; p++) {
                double mag = 0;
                for (int d = 0; d < D; d++) mag += fabs(q[d] * quant_fp16_to_f32(cache[(size_t)p * stride + d]));
                CHECK(close_rel(s2[p], s1[p], 0.17 * mag, 1e-6), "scores D=%d P=%d p=%d: %g vs %g", D, P, p, s2[p],
                      s1[p]);
            }
            CHECK(s2[P] == 777.f, "scores wrote past P=%d", P);
            kern_ref_attn_values_f16(o1, w, cache + 1, stride, P, D);
            o2[D] = 777.f;
            kern_attn_values_f16(o2, w, cache + 1, stride, P, D);
            for (int d = 0; d < D; d++) {
                double mag = 0;
                for (int p = 0; p < P; p++) mag += fabs(w[p] * quant_fp16_to_f32(cache[(size_t)p * stride + d + 1]));
                CHECK(close_rel(o2[d], o1[d], mag, 1e-6), "values D=%d P=%d d=%d: %g vs %g", D, P, d, o2[d], o1[d]);
            }
            CHECK(o2[D] == 777.f, "values wrote past D=%d", D);
            pl_fp16 h[40];
            kern_f32_to_f16_row(h, q, D < 40 ? D : 40);
            for (int d = 0; d < D && d < 40; d++) CHECK(h[d] == quant_f32_to_fp16(q[d]), "f32_to_f16_row D=%d", D);
            free(cache);
            free(q);
            free(w);
            free(s1);
            free(s2);
            free(o1);
            free(o2);
        }
}

/* The Q8_0 KV cache's loops against attn.c's references (tests/test_kv_q8.c
 * checks them in depth with models; this runs where only this test runs, e.g.
 * under qemu): rows of D / 32 blocks at a stride that is not a row multiple. */
/* |a - b| within rel of the magnitude (the sum of |terms|, the scale of the
 * rounding error of a sum taken in another order) plus a tiny absolute slack. */
static int close_to(double a, double b, double mag, double rel) { return fabs(a - b) <= rel * mag + 1e-6; }

/* A row of D values as Q8_0 blocks at dst: the reference quantizer of random
 * floats, or (raw) random blocks with int8 in [-127, 127] (what a quantizer
 * can produce) and a random positive or negative scale. */
static void q8_kv_row(uint8_t *dst, int D, int raw) {
    float x[KERN_ATTN_MAX_D];
    if (!raw) {
        const float amp = frand(0.01f, 8.0f);
        for (int d = 0; d < D; d++) x[d] = frand(-amp, amp);
        quant_get(QT_Q8_0)->from_float(x, dst, D); /* the reference */
        return;
    }
    for (int b = 0; b < D / QK8_0; b++) {
        block_q8_0 blk;
        blk.d = quant_f32_to_fp16(frand(-0.05f, 0.05f));
        for (int i = 0; i < QK8_0; i++) blk.qs[i] = (int8_t)((int)(rnd() % 255) - 127);
        memcpy(dst + (size_t)b * sizeof blk, &blk, sizeof blk);
    }
}

static block_q8_0 row_block(const uint8_t *row, int b) {
    block_q8_0 blk;
    memcpy(&blk, row + (size_t)b * sizeof blk, sizeof blk);
    return blk;
}

static void attn_q8_at_level(kern_level level) {
    static const int Ds[] = {32, 64, 96, 128, 256};
    const float scale = 0.125f;
    for (size_t di = 0; di < sizeof Ds / sizeof Ds[0]; di++)
        for (int P = 0; P <= 41; P += (P < 9 ? 1 : 8)) {
            const int D = Ds[di], nb = D / QK8_0;
            /* even strides: a block holds a half, so rows start 2-byte aligned (as in the cache) */
            const size_t row = (size_t)nb * sizeof(block_q8_0), stride = row + 2 + (size_t)(rnd() % 2) * 34;
            uint8_t *cache = calloc(stride * (size_t)P + row + 1, 1);
            float *q = malloc(sizeof(float) * (size_t)D), *w = malloc(sizeof(float) * (size_t)(P + 1));
            float *s1 = malloc(sizeof(float) * (size_t)(P + 1)), *s2 = malloc(sizeof(float) * (size_t)(P + 1));
            float *s3 = malloc(sizeof(float) * (size_t)(P + 1));
            float *o1 = malloc(sizeof(float) * (size_t)(D + 1)), *o2 = malloc(sizeof(float) * (size_t)(D + 1));
            float *o3 = malloc(sizeof(float) * (size_t)(D + 1));
            block_q8_0 qq[KERN_ATTN_MAX_D / QK8_0];
            REQUIRE(cache && q && w && s1 && s2 && s3 && o1 && o2 && o3, "out of memory");
            for (int p = 0; p < P; p++) q8_kv_row(cache + (size_t)p * stride, D, p % 3 == 2);
            const float qa = frand(0.1f, 4.0f);
            for (int d = 0; d < D; d++) q[d] = frand(-qa, qa);
            for (int p = 0; p < P; p++) w[p] = frand(0.0f, 1.0f);
            quant_get(QT_Q8_0)->from_float(q, qq, D);

            /* scores: reference vs double on the dequantized blocks, dispatched vs reference */
            kern_ref_attn_scores_q8_0(s1, qq, cache, stride, P, D, scale);
            s2[P] = s3[P] = 777.f;
            kern_attn_scores_q8_0(s2, qq, cache, stride, P, D, scale);
            kern_attn_scores(QT_Q8_0, s3, q, cache, stride, P, D, scale);
            for (int p = 0; p < P; p++) {
                double exact = 0, mag = 0;
                for (int b = 0; b < nb; b++) {
                    const block_q8_0 kb = row_block(cache + (size_t)p * stride, b);
                    const double dd = (double)quant_fp16_to_f32(kb.d) * quant_fp16_to_f32(qq[b].d);
                    long isum = 0, iabs = 0;
                    for (int i = 0; i < QK8_0; i++) {
                        isum += (long)kb.qs[i] * qq[b].qs[i];
                        iabs += labs((long)kb.qs[i] * qq[b].qs[i]);
                    }
                    exact += dd * (double)isum;
                    mag += fabs(dd) * (double)iabs;
                }
                exact *= scale;
                mag *= scale;
                /* float sums of exact integer block sums: a few ulp of the magnitude */
                CHECK(close_to(s1[p], exact, mag, 1e-6), "ref scores D=%d P=%d p=%d: %g vs %g", D, P, p, s1[p], exact);
                CHECK(close_to(s2[p], s1[p], mag, 1e-6), "%s scores D=%d P=%d p=%d: %g vs %g", kern_level_name(), D,
                      P, p, s2[p], s1[p]);
                /* the generic entry quantizes q with the dispatched quantizer: the same bytes */
                CHECK(s3[p] == s2[p], "kern_attn_scores D=%d P=%d p=%d: %g vs %g", D, P, p, s3[p], s2[p]);
            }
            CHECK(s2[P] == 777.f && s3[P] == 777.f, "scores wrote past P=%d", P);

            /* values */
            kern_ref_attn_values_q8_0(o1, w, cache, stride, P, D);
            o2[D] = o3[D] = 777.f;
            kern_attn_values_q8_0(o2, w, cache, stride, P, D);
            kern_attn_values(QT_Q8_0, o3, w, cache, stride, P, D);
            for (int d = 0; d < D; d++) {
                double exact = 0, mag = 0;
                for (int p = 0; p < P; p++) {
                    const block_q8_0 vb = row_block(cache + (size_t)p * stride, d / QK8_0);
                    const double t = (double)w[p] * quant_fp16_to_f32(vb.d) * vb.qs[d % QK8_0];
                    exact += t;
                    mag += fabs(t);
                }
                CHECK(close_to(o1[d], exact, mag, 1e-6), "ref values D=%d P=%d d=%d: %g vs %g", D, P, d, o1[d], exact);
                CHECK(close_to(o2[d], o1[d], mag, 1e-6), "%s values D=%d P=%d d=%d: %g vs %g", kern_level_name(), D, P,
                      d, o2[d], o1[d]);
                CHECK(o3[d] == o2[d], "kern_attn_values D=%d P=%d d=%d", D, P, d);
            }
            CHECK(o2[D] == 777.f && o3[D] == 777.f, "values wrote past D=%d", D);

            /* the KV row store: the reference quantizers' bytes */
            uint8_t got[KERN_ATTN_MAX_D / QK8_0 * sizeof(block_q8_0)], want[sizeof got];
            kern_kv_store(QT_Q8_0, got, q, D);
            quant_get(QT_Q8_0)->from_float(q, want, D);
            CHECK(!memcmp(got, want, row), "kv_store q8_0 D=%d", D);
            pl_fp16 h[KERN_ATTN_MAX_D];
            kern_kv_store(QT_F16, h, q, D);
            int same = 1;
            for (int d = 0; d < D; d++) same &= h[d] == quant_f32_to_fp16(q[d]);
            CHECK(same, "kv_store f16 D=%d", D);
            free(cache);
            free(q);
            free(w);
            free(s1);
            free(s2);
            free(s3);
            free(o1);
            free(o2);
            free(o3);
        }
    (void)level;
}

/* The generic entry points on an F16 cache are the F16 kernels with the
 * stride given in bytes. */
static void f16_generic_at_level(kern_level level) {
    (void)level;
    const int D = 64, P = 13;
    const size_t stride = 80; /* halves */
    pl_fp16 *cache = malloc(sizeof(pl_fp16) * stride * P);
    float q[64], w[13], a[64], b[64], sa[13], sb[13];
    REQUIRE(cache, "out of memory");
    for (size_t i = 0; i < stride * P; i++) cache[i] = quant_f32_to_fp16(frand(-2, 2));
    for (int d = 0; d < D; d++) q[d] = frand(-1, 1);
    for (int p = 0; p < P; p++) w[p] = frand(0, 1);
    kern_attn_scores_f16(sa, q, cache, stride, P, D, 0.3f);
    kern_attn_scores(QT_F16, sb, q, cache, stride * sizeof(pl_fp16), P, D, 0.3f);
    kern_attn_values_f16(a, w, cache, stride, P, D);
    kern_attn_values(QT_F16, b, w, cache, stride * sizeof(pl_fp16), P, D);
    CHECK(!memcmp(sa, sb, sizeof sa) && !memcmp(a, b, sizeof a), "generic f16 entry points differ at %s",
          kern_level_name());
    free(cache);
}

static void test_attention(void) {
    for_each_level(attn_at_level);
    for_each_level(attn_q8_at_level);
    for_each_level(f16_generic_at_level);
}

/* ------------------------------------------------------------- matmul */

/* Y = W X for one shape against a double matmul of dequantized weights and
 * of the activations as the weight's vec_dot_type sees them; with `packed`,
 * through kern_pack's copy of W (whose rows must unpack to W's). */
static void check_matmul_as(const wtype *w, pl_pool *pool, int64_t n_in, int64_t n_out, int T, int with_bias,
                            int packed) {
    const quant_traits *tr = quant_get(w->type);
    const uint32_t vdt = tr->vec_dot_type;
    const size_t wrow = quant_row_size(w->type, n_in);
    uint8_t *W = malloc(wrow * (size_t)n_out);
    for (int64_t r = 0; r < n_out; r++) make_row(w, W + (size_t)r * wrow, n_in, (int)(r & 1));
    const int ldx = (int)n_in + 5, ldy = (int)n_out + 3;
    float *X = malloc(sizeof(float) * (size_t)ldx * (size_t)T), *Y = malloc(sizeof(float) * (size_t)ldy * (size_t)T);
    float *bias = with_bias ? malloc(sizeof(float) * (size_t)n_out) : NULL;
    fill_floats(X, (int64_t)ldx * T, 1.0f);
    if (bias) fill_floats(bias, n_out, 1.0f);
    for (int64_t i = 0; i < (int64_t)ldy * T; i++) Y[i] = NAN;
    kern_matrix m = {.data = W, .type = w->type, .n_in = n_in, .n_out = n_out};
    uint8_t *P = NULL;
    if (packed) {
        P = malloc(wrow * (size_t)n_out);
        memset(P, 0xA5, wrow * (size_t)n_out);
        kern_pack(&m, 0, n_out / kern_pack_group_rows(), P);
        uint8_t *row = malloc(wrow);
        float *fa = malloc(sizeof(float) * (size_t)n_in), *fb = malloc(sizeof(float) * (size_t)n_in);
        const kern_matrix mp = {.data = W, .type = w->type, .n_in = n_in, .n_out = n_out, .packed = P};
        for (int64_t r = 0; r < n_out; r++) {
            kern_unpack_row(&m, P, r, row);
            CHECK(memcmp(row, W + (size_t)r * wrow, wrow) == 0, "%s n_in=%lld: packed row %lld unpacks differently",
                  quant_get(w->type)->name, (long long)n_in, (long long)r);
            /* a packed embedding's lookup: the row's floats from the copy */
            tr->to_float(W + (size_t)r * wrow, fa, n_in);
            kern_row_to_float(&mp, r, fb);
            CHECK(memcmp(fa, fb, sizeof(float) * (size_t)n_in) == 0, "%s n_in=%lld: packed row %lld to float differs",
                  quant_get(w->type)->name, (long long)n_in, (long long)r);
        }
        free(row);
        free(fa);
        free(fb);
        m.packed = P;
    }
    const size_t scratch_bytes = kern_matmul_scratch(&m, T);
    void *scratch = malloc(scratch_bytes + 1);
    kern_matmul(pool, &m, X, ldx, T, Y, ldy, bias, scratch);
    if (packed && kern_level_get() == KERN_SCALAR) {
        /* the portable packed kernel sums as the reference dot: equal bits */
        void *act = malloc(quant_row_size(vdt, n_in));
        for (int t = 0; t < T; t++) {
            quant_get(vdt)->from_float(X + (size_t)t * ldx, act, n_in);
            for (int64_t r = 0; r < n_out; r++) {
                float s;
                tr->vec_dot((int)n_in, &s, W + (size_t)r * wrow, act);
                s += bias ? bias[r] : 0.0f;
                CHECK(memcmp(&s, &Y[(size_t)t * ldy + r], sizeof s) == 0, "packed scalar Y[%d][%lld] = %.9g, dot %.9g",
                      t, (long long)r, Y[(size_t)t * ldy + r], s);
            }
        }
        free(act);
    }

    /* the reference sees activations quantized by the reference quantizer */
    double *wd = malloc(sizeof(double) * (size_t)(n_in * n_out)), *xd = malloc(sizeof(double) * (size_t)(n_in * T));
    for (int64_t r = 0; r < n_out; r++) {
        double *d = dequant(w->type, W + (size_t)r * wrow, n_in);
        memcpy(wd + r * n_in, d, sizeof(double) * (size_t)n_in);
        free(d);
    }
    void *act = malloc(quant_row_size(vdt, n_in));
    for (int t = 0; t < T; t++) {
        quant_get(vdt)->from_float(X + (size_t)t * ldx, act, n_in);
        double *d = dequant(vdt, act, n_in);
        memcpy(xd + (size_t)t * n_in, d, sizeof(double) * (size_t)n_in);
        free(d);
    }
    int bad = 0;
    for (int t = 0; t < T && bad < 3; t++)
        for (int64_t r = 0; r < n_out && bad < 3; r++) {
            double ref = bias ? bias[r] : 0, mag = bias ? fabs(bias[r]) : 0;
            for (int64_t i = 0; i < n_in; i++) {
                ref += wd[r * n_in + i] * xd[(size_t)t * n_in + i];
                mag += fabs(wd[r * n_in + i] * xd[(size_t)t * n_in + i]);
            }
            const float got = Y[(size_t)t * ldy + r];
            if (!close_rel(got, ref, mag, TOL_REL)) {
                bad++;
                CHECK(0, "%s level %s n_in=%lld n_out=%lld T=%d threads=%d: Y[%d][%lld] = %.9g, want %.9g", tr->name,
                      kern_level_name(), (long long)n_in, (long long)n_out, T, pool_size(pool), t, (long long)r, got,
                      ref);
            }
        }
    /* the padding between rows of Y is not written */
    for (int t = 0; t < T; t++)
        for (int64_t r = n_out; r < ldy; r++) CHECK(isnan(Y[(size_t)t * ldy + r]), "matmul wrote Y padding");
    free(W);
    free(P);
    free(X);
    free(Y);
    free(bias);
    free(scratch);
    free(wd);
    free(xd);
    free(act);
}

static void check_matmul(const wtype *w, pl_pool *pool, int64_t n_in, int64_t n_out, int T, int with_bias) {
    check_matmul_as(w, pool, n_in, n_out, T, with_bias, 0);
}

static pl_pool *g_pools[2];

static void matmul_at_level(kern_level level) {
    (void)level;
    static const int Ts[] = {1, 2, 3, 4, 5, 6, 7, 8, 13, 33};
    static const int n_outs[] = {1, 3, 8, 37};
    for (int i = 0; i < N_WTYPES; i++) {
        const quant_traits *tr = quant_get(k_wtypes[i].type);
        const int64_t n_ins[] = {tr->blck == 1 ? 45 : tr->blck, tr->blck == 1 ? 256 : 3 * tr->blck,
                                 tr->blck == 32 ? 32 * 10 : 2 * tr->blck};
        for (size_t a = 0; a < 3; a++)
            for (size_t b = 0; b < sizeof n_outs / sizeof n_outs[0]; b++)
                for (size_t c = 0; c < sizeof Ts / sizeof Ts[0]; c++) {
                    pl_pool *pool = g_pools[(a + b + c) & 1];
                    check_matmul(&k_wtypes[i], pool, n_ins[a], n_outs[b], Ts[c], (int)((b + c) & 1));
                }
        /* a larger case: many tiles per thread */
        check_matmul(&k_wtypes[i], g_pools[1], tr->blck == 1 ? 512 : 2 * 256, 133, 20, 1);
        /* rows longer than the tiled kernels' k-chunks (partial sums in Y) */
        check_matmul(&k_wtypes[i], g_pools[0], tr->blck == 1 ? 1037 : 17 * 256, 9, 5, 1);
        /* large enough for kern_matmul to use both threads at T = 1 */
        check_matmul(&k_wtypes[i], g_pools[1], tr->blck == 1 ? 1037 : 17 * 256, 301, 1, 0);
    }
}

/* Packed weights (kern_pack) at every level: row groups of 8, 1 to 136
 * blocks per row, token counts on both sides of the kernels' 4-token steps. */
static void packed_at_level(kern_level level) {
    (void)level;
    static const int Ts[] = {1, 2, 3, 4, 5, 7, 9, 16, 33};
    static const int64_t n_outs[] = {8, 16, 264};
    for (int i = 0; i < N_WTYPES; i++) {
        const uint32_t type = k_wtypes[i].type;
        const int64_t blck = quant_get(type)->blck, n_ins[] = {blck, 10 * blck, 4352};
        CHECK(kern_pack_supported(type, 256, 8) == (type == QT_Q4_0 || type == QT_Q8_0 || type == QT_Q4_K || type == QT_Q6_K), "%s: packing support",
              quant_get(type)->name);
        if (!kern_pack_supported(type, 256, 8)) continue;
        CHECK(!kern_pack_supported(type, 256, 12) && !kern_pack_supported(type, 256 + blck / 2, 8),
              "partial groups and blocks are refused");
        /* prompts of packed weights both ways: the packed kernel, and the
         * tiled one fed with unpacked rows (where the level has tiles) */
        for (int tiles = 0; tiles < 2; tiles++) {
            kern_packed_tiles_force(tiles);
            for (size_t a = 0; a < 3; a++)
                for (size_t b = 0; b < 3; b++)
                    for (size_t c = 0; c < sizeof Ts / sizeof Ts[0]; c++)
                        if (!tiles || Ts[c] >= KERN_PACKED_TILE_MIN_T)
                            check_matmul_as(&k_wtypes[i], g_pools[(a + b + c) & 1], n_ins[a], n_outs[b], Ts[c],
                                            (int)((b + c) & 1), 1);
        }
        kern_packed_tiles_force(-1);
    }
}

static void test_matmul(void) {
    REQUIRE(pool_new(1, &g_pools[0]) == PL_OK && pool_new(2, &g_pools[1]) == PL_OK, "pools");
    for_each_level(matmul_at_level);
    for_each_level(packed_at_level);
    pool_free(g_pools[0]);
    pool_free(g_pools[1]);
}

int main(void) {
    RUN(test_cpu_features);
    RUN(test_cpu_level_expected);
    RUN(test_levels);
    RUN(test_vec_dot);
    RUN(test_quantizers);
    RUN(test_float_ops);
    RUN(test_attention);
    RUN(test_matmul);
    TEST_END();
}
