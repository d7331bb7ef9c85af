/*
 * The CUDA backend (src/gpu). Without a GPU (or built without CUDA) the cases
 * that need one are skipped, and what runs is: the repacked weight layout
 * decoded on the CPU against the quant module's dequantizers (bit for bit),
 * the device-memory planner (full, partial and refused offloads), and the
 * refusal of a GPU context by a CPU-only build. With a GPU: every kernel
 * against a float64 reference computed here from the dequantized weights
 * (matrix-vector per type with fused norm/bias/residual/SwiGLU, int8 inputs
 * for quantized weights as the CPU's Q8_0 activations; the Q/K/V product
 * with fused RoPE against the unfused ops; the tensor-core
 * product, RMSNorm, SwiGLU, embedding, RoPE + KV store, GQA attention), whole
 * random models of every architecture and weight type against the CPU path
 * (prompt batches, single-token steps through the CUDA graph, partial
 * offload), and perplexity on the shared models against the CPU path
 * (within 0.2%; PL_PPL_CHUNKS=K chunks of 256 tokens, default 16, 0 = all).
 */
#include "test.h"

#include "gpu/gpu.h"
#include "gpu/gpu_layout.h"
#include "pocketllm.h"
#include "quant/quant.h"
#include "random_model.h"

#include <math.h>
#include <stdint.h>
#include <unistd.h>

static gdev *g_dev;
static gdev_info g_info;
static char g_why[256];
static uint64_t g_rng = 7;

#define NEED_GPU()                                 \
    do {                                           \
        if (!g_dev) SKIP("%s", g_why);             \
    } while (0)

static float frand(void) { return rm_unif(&g_rng); }

static const uint32_t k_types[] = {QT_F32, QT_F16, QT_BF16, QT_Q8_0, QT_Q4_0, QT_Q4_K, QT_Q6_K};
enum { N_TYPES = sizeof k_types / sizeof k_types[0] };

static int is_float_type(uint32_t t) { return t == QT_F32 || t == QT_F16 || t == QT_BF16; }
/* A width every type accepts: K-quants need 256s; float types get one that is
 * not a multiple of 32, to cover the padding. */
static int width_for(uint32_t t) { return is_float_type(t) ? 172 : 512; }

static double rel_err(const float *a, const double *ref, size_t n) {
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        const double d = (double)a[i] - ref[i];
        if (!isfinite(a[i])) return INFINITY;
        num += d * d;
        den += ref[i] * ref[i];
    }
    return sqrt(num / (den > 0 ? den : 1));
}

/* A random matrix of `type`: its GGUF bytes and their dequantized floats. */
typedef struct tmat {
    uint32_t type;
    int n_in, n_out;
    uint8_t *raw;
    float *deq; /* (n_out, n_in) */
} tmat;

static int tmat_make(tmat *m, uint32_t type, int n_in, int n_out) {
    const quant_traits *tr = quant_get(type);
    const size_t row = (size_t)quant_row_size(type, n_in);
    m->type = type, m->n_in = n_in, m->n_out = n_out;
    m->raw = malloc(row * (size_t)n_out);
    m->deq = malloc(sizeof(float) * (size_t)n_in * n_out);
    float *f = malloc(sizeof(float) * (size_t)n_in);
    if (!m->raw || !m->deq || !f) return free(f), 0;
    for (int r = 0; r < n_out; r++) {
        for (int i = 0; i < n_in; i++) f[i] = frand() / sqrtf((float)n_in);
        if (type == QT_F32) memcpy(m->raw + row * r, f, row);
        else tr->from_float(f, m->raw + row * r, n_in);
        tr->to_float(m->raw + row * r, m->deq + (size_t)r * n_in, n_in);
    }
    free(f);
    return 1;
}

static void tmat_free(tmat *m) {
    free(m->raw);
    free(m->deq);
}

/* ------------------------------------------------ layout (no GPU needed) */

static void test_layout_matches_dequantizers(void) {
    for (int ti = 0; ti < N_TYPES; ti++) {
        const uint32_t type = k_types[ti];
        const int n_in = width_for(type);
        tmat m;
        REQUIRE(tmat_make(&m, type, n_in, 3), "out of memory");
        gpu_row_layout lay;
        REQUIRE(gpu_layout_row(type, n_in, &lay), "%s not handled", quant_get(type)->name);
        CHECK(lay.q_row % 16 == 0 && lay.n_in_pad % 32 == 0 && lay.n_in_pad >= n_in, "%s: layout %u/%d",
              quant_get(type)->name, lay.q_row, lay.n_in_pad);
        uint8_t *q = malloc(lay.q_row), *s = malloc(lay.s_row + 1);
        REQUIRE(q && s, "out of memory");
        int bad = 0;
        for (int r = 0; r < 3; r++) {
            memset(q, 0xAB, lay.q_row);
            gpu_layout_repack_row(type, n_in, m.raw + (size_t)quant_row_size(type, n_in) * r, q, s);
            for (int u = 0; u < lay.n_in_pad / 16; u++) {
                float o[16];
                gpu_layout_decode_part(type, q, s, u, o);
                for (int i = 0; i < 16; i++) {
                    const int e = 16 * u + i;
                    const float want = e < n_in ? m.deq[(size_t)r * n_in + e] : 0.0f;
                    if (memcmp(&o[i], &want, sizeof want) && !(o[i] == 0 && want == 0)) bad++;
                }
            }
        }
        CHECK(bad == 0, "%s: %d elements differ from the dequantizer", quant_get(type)->name, bad);
        free(q);
        free(s);
        tmat_free(&m);
    }
    gpu_row_layout lay;
    CHECK(!gpu_layout_row(QT_Q5_0, 512, &lay), "q5_0 claims a layout");
    CHECK(!gpu_layout_row(QT_Q4_K, 200, &lay), "q4_k with a partial super-block claims a layout");
}

/* ---------------------------------------------- models written by the test */

static char g_dir[256];

static const char *model_file(const char *name) {
    static char p[8][320];
    static int k;
    char *b = p[k++ & 7];
    snprintf(b, sizeof p[0], "%s/%s.gguf", g_dir, name);
    return b;
}

static rm_spec spec_llama(uint32_t t) {
    rm_spec s = {.arch = "llama", .C = 256, .L = 2, .H = 4, .G = 2, .D = 64, .F = 512, .V = 300, .t_qko = t,
                 .t_v = t, .t_gu = t, .t_down = t, .t_embd = t, .t_out = t, .seed = 11};
    return s;
}

static void test_plan(void) {
    rm_spec s = spec_llama(QT_Q4_0);
    s.L = 4;
    const char *path = model_file("plan");
    REQUIRE(rm_write(&s, path), "cannot write %s", path);
    pl_model *m = NULL;
    REQUIRE(pl_model_load(path, NULL, &m) == PL_OK, "%s", pl_last_error());
    gdev_info info = {.smem_optin = 227 * 1024, .mem_total = (size_t)80 << 30, .mem_free = (size_t)70 << 30};
    snprintf(info.name, sizeof info.name, "a test device");
    gpu_plan full, part[4];
    CHECK(gpu_plan_ctx(m, 128, 16, 1, 0, &info, &full) == PL_OK, "%s", pl_last_error());
    CHECK(full.full && full.n_layers == 4, "full plan: %d layers, full %d", full.n_layers, full.full);
    for (int n = 1; n < 4; n++) {
        REQUIRE(gpu_plan_ctx(m, 128, 16, 1, n, &info, &part[n]) == PL_OK, "%s", pl_last_error());
        CHECK(!part[n].full && part[n].n_layers == n, "plan for %d layers: %d", n, part[n].n_layers);
        /* each layer adds its K and V: 2 * positions * G*D halves */
        CHECK(part[n].kv_bytes == (uint64_t)n * 2 * 128 * 128 * 2, "kv bytes %llu for %d layers",
              (unsigned long long)part[n].kv_bytes, n);
    }
    CHECK(part[1].total_bytes < part[2].total_bytes && part[3].total_bytes < full.total_bytes, "sizes do not grow");
    CHECK(full.step_bytes > part[3].step_bytes, "the output head is not counted in a full step");
    /* make 2 layers fit but not 3: all refused with the hint, -1 takes 2 */
    const uint64_t reserve = ((uint64_t)128 << 20) + info.mem_total / 100;
    info.mem_free = (size_t)(reserve + (part[2].total_bytes + part[3].total_bytes) / 2);
    gpu_plan p;
    CHECK(gpu_plan_ctx(m, 128, 16, 1, 0, &info, &p) == PL_ERR_BUDGET, "all layers accepted");
    CHECK(strstr(pl_last_error(), "n_gpu_layers = 2 fits") != NULL, "message: %s", pl_last_error());
    CHECK(gpu_plan_ctx(m, 128, 16, 1, 3, &info, &p) == PL_ERR_BUDGET, "3 layers accepted");
    CHECK(gpu_plan_ctx(m, 128, 16, 1, -1, &info, &p) == PL_OK && p.n_layers == 2 && !p.full,
          "as many as fit: %d (%s)", p.n_layers, pl_last_error());
    CHECK(gpu_plan_ctx(m, 128, 16, 1, -2, &info, &p) == PL_ERR_INVALID_ARG, "n_gpu_layers -2 accepted");
    pl_model_free(m);
    /* a type the kernels do not handle is named with its tensor */
    s.t_down = QT_Q5_0;
    path = model_file("plan_q5");
    REQUIRE(rm_write(&s, path), "cannot write %s", path);
    REQUIRE(pl_model_load(path, NULL, &m) == PL_OK, "%s", pl_last_error());
    CHECK(gpu_plan_ctx(m, 128, 16, 1, 0, &info, &p) == PL_ERR_UNSUPPORTED &&
              strstr(pl_last_error(), "blk.0.ffn_down.weight is q5_0"),
          "message: %s", pl_last_error());
    pl_model_free(m);
}

static void test_ctx_without_backend(void) {
    if (g_dev) SKIP("a GPU is present");
    rm_spec s = spec_llama(QT_Q8_0);
    const char *path = model_file("nogpu");
    REQUIRE(rm_write(&s, path), "cannot write %s", path);
    pl_model *m = NULL;
    REQUIRE(pl_model_load(path, NULL, &m) == PL_OK, "%s", pl_last_error());
    pl_ctx_params cp = pl_ctx_default_params();
    cp.n_ctx = 32;
    cp.device = PL_DEVICE_CUDA;
    pl_ctx *c = NULL;
    CHECK(pl_ctx_new(m, &cp, &c) == PL_ERR_UNSUPPORTED && !c, "GPU context made without a GPU");
    if (!gdev_built()) CHECK(strstr(pl_last_error(), "make GPU=cuda") != NULL, "message: %s", pl_last_error());
    cp.device = 7;
    CHECK(pl_ctx_new(m, &cp, &c) != PL_OK && !c, "device 7 accepted");
    cp.device = PL_DEVICE_CPU;
    CHECK(pl_ctx_new(m, &cp, &c) == PL_OK, "CPU context: %s", pl_last_error());
    pl_ctx_free(c);
    pl_model_free(m);
}

/* --------------------------------------------------------- kernels (GPU) */

/* The opt-in fusions (gpu_impl.cuh), in the environment gdev_open reads:
 * cfg 0 the defaults; 1 every one (SwiGLU hand-off, attention inside the
 * Q/K/V product, x quantized per block); 2 the same without the last. */
static void fuse_env(int cfg) {
    static const char *const vars[3] = {"PL_GPU_FUSE_GLU", "PL_GPU_FUSE_ATTN", "PL_GPU_STAGE_BLOCKS"};
    for (int i = 0; i < 3; i++) {
        if (cfg == 0 || (cfg == 2 && i == 2)) unsetenv(vars[i]);
        else setenv(vars[i], i == 2 ? "1000000" : "1", 1);
    }
}

/* PL_GPU_FUSE=0 (an A/B run) turns all of them off. */
static int fusions_allowed(void) {
    const char *f = getenv("PL_GPU_FUSE");
    return !(f && !strcmp(f, "0"));
}

static void *dev_copy(const void *p, size_t n) {
    void *d = NULL;
    if (gdev_alloc(g_dev, n, &d) || gdev_h2d(g_dev, d, p, n) || gdev_sync(g_dev)) return NULL;
    return d;
}

static int dev_get(void *dst, const void *d, size_t n) { return !gdev_d2h(g_dev, dst, d, n) && !gdev_sync(g_dev); }

/* Upload m in the GPU layout. */
static int dev_mat(const tmat *m, gdev_mat *out) {
    gpu_row_layout lay;
    if (!gpu_layout_row(m->type, m->n_in, &lay)) return 0;
    uint8_t *q = calloc((size_t)lay.q_row * m->n_out, 1), *s = calloc((size_t)lay.s_row * m->n_out + 1, 1);
    const size_t row = (size_t)quant_row_size(m->type, m->n_in);
    for (int r = 0; r < m->n_out; r++)
        gpu_layout_repack_row(m->type, m->n_in, m->raw + row * r, q + (size_t)lay.q_row * r, s + (size_t)lay.s_row * r);
    *out = (gdev_mat){.type = m->type, .n_in = m->n_in, .n_out = m->n_out, .n_in_pad = lay.n_in_pad,
                      .q_row = lay.q_row, .s_row = lay.s_row};
    out->q = dev_copy(q, (size_t)lay.q_row * m->n_out);
    out->s = lay.s_row ? dev_copy(s, (size_t)lay.s_row * m->n_out) : NULL;
    free(q);
    free(s);
    return out->q && (!lay.s_row || out->s);
}

static void dev_mat_free(gdev_mat *m) {
    gdev_free(g_dev, (void *)m->q);
    gdev_free(g_dev, (void *)m->s);
}

static void ref_rmsnorm(double *y, const float *x, const float *w, int n, double eps) {
    double ss = 0;
    for (int i = 0; i < n; i++) ss += (double)x[i] * x[i];
    const double s = 1.0 / sqrt(ss / n + eps);
    for (int i = 0; i < n; i++) y[i] = x[i] * s * (w ? w[i] : 1.0);
}

static double ref_dot(const float *w, const double *x, int n) {
    double s = 0;
    for (int i = 0; i < n; i++) s += (double)w[i] * x[i];
    return s;
}

/* x as the int8 kernels see it (quantized types): per 32 values a scale
 * amax/127 and values rounded to it, as the CPU's Q8_0 activations. */
static void ref_q8(double *xr, const double *x, int n) {
    for (int c = 0; c < n; c += 32) {
        float amax = 0;
        for (int i = 0; i < 32; i++) amax = fmaxf(amax, fabsf((float)x[c + i]));
        const float d = amax / 127.0f, id = d != 0 ? 1.0f / d : 0.0f;
        for (int i = 0; i < 32; i++) xr[c + i] = roundf((float)x[c + i] * id) * (double)d;
    }
}

/* The input a matvec of `type` multiplies: x itself, or its int8 rounding. */
static void ref_input(uint32_t type, double *xr, const double *x, int n) {
    if (is_float_type(type)) memcpy(xr, x, sizeof(double) * (size_t)n);
    else ref_q8(xr, x, n);
}

static void test_matvec(void) {
    NEED_GPU();
    const int n_out[3] = {77, 30, 33};
    for (int ti = 0; ti < N_TYPES; ti++) {
        const uint32_t type = k_types[ti];
        const int n = width_for(type);
        const char *tn = quant_get(type)->name;
        tmat m[3];
        gdev_mat dm[3];
        for (int i = 0; i < 3; i++) REQUIRE(tmat_make(&m[i], type, n, n_out[i]) && dev_mat(&m[i], &dm[i]), "setup");
        float x[512], nw[512], bias[77], y0[77], y[3][77];
        for (int i = 0; i < n; i++) x[i] = 2.0f * frand(), nw[i] = 1.0f + 0.3f * frand();
        for (int i = 0; i < 77; i++) bias[i] = frand(), y0[i] = frand();
        float *dx = dev_copy(x, sizeof x), *dnw = dev_copy(nw, sizeof nw), *db = dev_copy(bias, sizeof bias);
        float *dy[3];
        for (int i = 0; i < 3; i++) dy[i] = dev_copy(y0, sizeof y0);
        REQUIRE(dx && dnw && db && dy[0] && dy[1] && dy[2], "device memory");
        /* three matrices in one launch: plain, with bias, accumulating; x normalized */
        const gdev_mv_out outs[3] = {{&dm[0], dy[0], NULL, 0}, {&dm[1], dy[1], db, 0}, {&dm[2], dy[2], NULL, 1}};
        REQUIRE(gdev_matvec(g_dev, outs, 3, dx, dnw, 1e-5f) == PL_OK, "%s", pl_last_error());
        for (int i = 0; i < 3; i++) REQUIRE(dev_get(y[i], dy[i], sizeof y0), "%s", pl_last_error());
        /* int8 inputs: checked tightly against the same rounding of x, loosely against x */
        const double tol = is_float_type(type) ? 1e-5 : 1e-4;
        double xn[512], xr[512], ref[77], ref_exact[77];
        ref_rmsnorm(xn, x, nw, n, 1e-5);
        ref_input(type, xr, xn, n);
        for (int i = 0; i < 3; i++) {
            for (int r = 0; r < n_out[i]; r++) {
                const double add = (i == 1 ? bias[r] : 0) + (i == 2 ? y0[r] : 0);
                ref[r] = ref_dot(m[i].deq + (size_t)r * n, xr, n) + add;
                ref_exact[r] = ref_dot(m[i].deq + (size_t)r * n, xn, n) + add;
            }
            const double e = rel_err(y[i], ref, (size_t)n_out[i]), e2 = rel_err(y[i], ref_exact, (size_t)n_out[i]);
            CHECK(e < tol && e2 < 2e-2, "%s matvec %d: relative error %.3g (%.3g against unrounded x)", tn, i, e, e2);
        }
        /* without the norm */
        const gdev_mv_out one = {&dm[0], dy[0], NULL, 0};
        REQUIRE(gdev_matvec(g_dev, &one, 1, dx, NULL, 0) == PL_OK && dev_get(y[0], dy[0], sizeof y0), "%s",
                pl_last_error());
        for (int i = 0; i < n; i++) xn[i] = x[i];
        ref_input(type, xr, xn, n);
        for (int r = 0; r < 77; r++) ref[r] = ref_dot(m[0].deq + (size_t)r * n, xr, n);
        CHECK(rel_err(y[0], ref, 77) < tol, "%s matvec without norm: %.3g", tn, rel_err(y[0], ref, 77));
        /* SwiGLU: gate = m[1] rows, up = the first 30 rows of m[2] as a matrix of its own */
        gdev_mat up = dm[2];
        up.n_out = 30;
        REQUIRE(gdev_matvec_glu(g_dev, &dm[1], &up, dx, dnw, 1e-5f, dy[0]) == PL_OK && dev_get(y[0], dy[0], sizeof y0),
                "%s", pl_last_error());
        ref_rmsnorm(xn, x, nw, n, 1e-5);
        ref_input(type, xr, xn, n);
        for (int r = 0; r < 30; r++) {
            const double g = ref_dot(m[1].deq + (size_t)r * n, xr, n), u = ref_dot(m[2].deq + (size_t)r * n, xr, n);
            ref[r] = g / (1 + exp(-g)) * u;
        }
        CHECK(rel_err(y[0], ref, 30) < tol, "%s swiglu: %.3g", tn, rel_err(y[0], ref, 30));
        for (int i = 0; i < 3; i++) dev_mat_free(&dm[i]), tmat_free(&m[i]), gdev_free(g_dev, dy[i]);
        gdev_free(g_dev, dx);
        gdev_free(g_dev, dnw);
        gdev_free(g_dev, db);
    }
    /* matrices of different types in one call run as separate launches */
    tmat a, b;
    gdev_mat da, db2;
    REQUIRE(tmat_make(&a, QT_Q4_0, 512, 40) && tmat_make(&b, QT_Q6_K, 512, 24) && dev_mat(&a, &da) && dev_mat(&b, &db2),
            "setup");
    float x[512], y[64];
    for (int i = 0; i < 512; i++) x[i] = frand();
    float *dx = dev_copy(x, sizeof x), *dy = dev_copy(y, sizeof y);
    const gdev_mv_out outs[2] = {{&da, dy, NULL, 0}, {&db2, dy + 40, NULL, 0}};
    REQUIRE(gdev_matvec(g_dev, outs, 2, dx, NULL, 0) == PL_OK && dev_get(y, dy, sizeof y), "%s", pl_last_error());
    double xd[512], xr[512], ref[64];
    for (int i = 0; i < 512; i++) xd[i] = x[i];
    ref_q8(xr, xd, 512);
    for (int r = 0; r < 64; r++) ref[r] = r < 40 ? ref_dot(a.deq + r * 512, xr, 512) : ref_dot(b.deq + (r - 40) * 512, xr, 512);
    CHECK(rel_err(y, ref, 64) < 1e-4, "mixed types: %.3g", rel_err(y, ref, 64));
    dev_mat_free(&da), dev_mat_free(&db2), tmat_free(&a), tmat_free(&b);
    gdev_free(g_dev, dx), gdev_free(g_dev, dy);
}

/* The fused Q/K/V + RoPE + cache store equals the product followed by
 * gdev_rope_kv; with attention fused in too (the last block of each KV group
 * attends), the output equals gdev_attention's over the same cache. */
static void test_qkv_rope(void) {
    NEED_GPU();
    enum { C = 256, H = 4, G = 2, D = 64, P = 9 };
    const uint32_t types[] = {QT_Q4_0, QT_Q4_K, QT_F16};
    for (int ti = 0; ti < 3; ti++) {
        tmat m[3];
        gdev_mat dm[3];
        const int rows[3] = {H * D, G * D, G * D};
        for (int i = 0; i < 3; i++) REQUIRE(tmat_make(&m[i], types[ti], C, rows[i]) && dev_mat(&m[i], &dm[i]), "setup");
        float x[C], nw[C], bias[H * D], cs[P * D / 2], sn[P * D / 2];
        for (int i = 0; i < C; i++) x[i] = frand(), nw[i] = 1 + 0.2f * frand();
        for (int i = 0; i < H * D; i++) bias[i] = 0.1f * frand();
        for (int p = 0; p < P; p++)
            for (int i = 0; i < D / 2; i++) {
                const double th = p * pow(10000.0, -2.0 * i / D);
                cs[p * D / 2 + i] = (float)cos(th), sn[p * D / 2 + i] = (float)sin(th);
            }
        static uint16_t init[P * G * D];
        for (int i = 0; i < P * G * D; i++) init[i] = pl_f32_to_fp16(frand());
        const int pos = 5;
        float *q[3], *k = NULL, *v = NULL, *out[3] = {NULL, NULL, NULL};
        uint16_t *kc[3], *vc[3];
        float *dx = dev_copy(x, sizeof x), *dnw = dev_copy(nw, sizeof nw), *db = dev_copy(bias, sizeof bias);
        float *dcs = dev_copy(cs, sizeof cs), *dsn = dev_copy(sn, sizeof sn);
        int *dpos = dev_copy(&pos, sizeof pos);
        k = dev_copy(bias, sizeof(float) * G * D), v = dev_copy(bias, sizeof(float) * G * D);
        for (int j = 0; j < 3; j++) {
            q[j] = dev_copy(bias, sizeof bias), out[j] = dev_copy(bias, sizeof bias);
            kc[j] = dev_copy(init, sizeof init), vc[j] = dev_copy(init, sizeof init);
        }
        int attended = 0;
        for (int j = 0; j < 3; j++) { /* fused; separate ops (the reference); fused with attention */
            gdev_attn at = {.T = 1, .H = H, .G = G, .D = D, .n_rot = D, .d_pos = dpos, .d_q = q[j], .d_k = k, .d_v = v,
                            .d_kc = kc[j], .d_vc = vc[j], .d_cos = dcs, .d_sin = dsn, .eps = 1e-5f, .d_out = out[j]};
            const gdev_mv_out outs[3] = {{&dm[0], q[j], db, 0}, {&dm[1], k, db, 0}, {&dm[2], v, NULL, 0}};
            if (j == 0) REQUIRE(gdev_matvec_qkv(g_dev, outs, dx, dnw, 1e-5f, &at, NULL) == PL_OK, "%s", pl_last_error());
            else if (j == 1)
                REQUIRE(gdev_matvec(g_dev, outs, 3, dx, dnw, 1e-5f) == PL_OK && gdev_rope_kv(g_dev, &at) == PL_OK &&
                            gdev_attention(g_dev, &at) == PL_OK,
                        "%s", pl_last_error());
            else {
                gdev *d2 = NULL; /* a device handle with the attention fusion on */
                fuse_env(1);
                const pl_status st = gdev_open(&d2, NULL);
                fuse_env(0);
                REQUIRE(st == PL_OK, "%s", pl_last_error());
                REQUIRE(gdev_matvec_qkv(d2, outs, dx, dnw, 1e-5f, &at, &attended) == PL_OK && gdev_sync(d2) == PL_OK,
                        "%s", pl_last_error());
                gdev_close(d2);
            }
        }
        float qa[H * D], qb[H * D];
        uint16_t ka[P * G * D], kb[P * G * D], va[P * G * D], vb[P * G * D];
        REQUIRE(dev_get(qa, q[0], sizeof qa) && dev_get(qb, q[1], sizeof qb) && dev_get(ka, kc[0], sizeof ka) &&
                    dev_get(kb, kc[1], sizeof kb) && dev_get(va, vc[0], sizeof va) && dev_get(vb, vc[1], sizeof vb),
                "%s", pl_last_error());
        double qref[H * D];
        for (int i = 0; i < H * D; i++) qref[i] = qb[i];
        int bad = 0, written = 0;
        for (int i = 0; i < P * G * D; i++) {
            const float a1 = pl_fp16_to_f32(ka[i]), b1 = pl_fp16_to_f32(kb[i]), a2 = pl_fp16_to_f32(va[i]),
                        b2 = pl_fp16_to_f32(vb[i]);
            if (fabsf(a1 - b1) > 1e-3f * (1 + fabsf(b1)) || fabsf(a2 - b2) > 1e-3f * (1 + fabsf(b2))) bad++;
            if (i / (G * D) == pos && ka[i] && va[i]) written++;
        }
        CHECK(rel_err(qa, qref, H * D) < 1e-5, "%s: fused q differs by %.3g", quant_get(types[ti])->name,
              rel_err(qa, qref, H * D));
        CHECK(bad == 0 && written > G * D - 4, "%s: cache: %d entries differ, %d written at the position",
              quant_get(types[ti])->name, bad, written);
        /* with attention: same q and cache, and gdev_attention's output (PL_GPU_FUSE_ATTN=0: not fused) */
        float oa[H * D], ob[H * D];
        REQUIRE(dev_get(qa, q[2], sizeof qa) && dev_get(ka, kc[2], sizeof ka) && dev_get(va, vc[2], sizeof va) &&
                    dev_get(oa, out[2], sizeof oa) && dev_get(ob, out[1], sizeof ob),
                "%s", pl_last_error());
        double oref[H * D];
        for (int i = 0; i < H * D; i++) oref[i] = ob[i];
        CHECK(attended == fusions_allowed(), "%s: attention fused: %d", quant_get(types[ti])->name, attended);
        if (attended) {
            bad = 0;
            for (int i = 0; i < P * G * D; i++) {
                const float a1 = pl_fp16_to_f32(ka[i]), b1 = pl_fp16_to_f32(kb[i]), a2 = pl_fp16_to_f32(va[i]),
                            b2 = pl_fp16_to_f32(vb[i]);
                if (fabsf(a1 - b1) > 1e-3f * (1 + fabsf(b1)) || fabsf(a2 - b2) > 1e-3f * (1 + fabsf(b2))) bad++;
            }
            CHECK(rel_err(qa, qref, H * D) < 1e-5 && bad == 0, "%s: q or cache differ with attention fused (%d)",
                  quant_get(types[ti])->name, bad);
            /* the cache may differ by an f16 rounding (a fused multiply-add or not) */
            CHECK(rel_err(oa, oref, H * D) < 1e-3, "%s: fused attention differs by %.3g", quant_get(types[ti])->name,
                  rel_err(oa, oref, H * D));
        }
        for (int i = 0; i < 3; i++) dev_mat_free(&dm[i]), tmat_free(&m[i]);
        for (int j = 0; j < 3; j++)
            gdev_free(g_dev, q[j]), gdev_free(g_dev, kc[j]), gdev_free(g_dev, vc[j]), gdev_free(g_dev, out[j]);
        gdev_free(g_dev, dx), gdev_free(g_dev, dnw), gdev_free(g_dev, db), gdev_free(g_dev, dcs);
        gdev_free(g_dev, dsn), gdev_free(g_dev, dpos), gdev_free(g_dev, k), gdev_free(g_dev, v);
    }
}

static void test_gemm(void) {
    NEED_GPU();
    enum { T = 70, R = 77 };
    for (int ti = 0; ti < N_TYPES; ti++) {
        const uint32_t type = k_types[ti];
        const int n = width_for(type);
        tmat m;
        gdev_mat dm;
        REQUIRE(tmat_make(&m, type, n, R) && dev_mat(&m, &dm), "setup");
        float *x = malloc(sizeof(float) * T * n), *y0 = malloc(sizeof(float) * T * R), *y = malloc(sizeof(float) * T * R);
        double *ref = malloc(sizeof(double) * T * R), *xd = malloc(sizeof(double) * n);
        float bias[R];
        REQUIRE(x && y0 && y && ref && xd, "out of memory");
        for (int i = 0; i < T * n; i++) x[i] = frand();
        for (int i = 0; i < T * R; i++) y0[i] = frand();
        for (int i = 0; i < R; i++) bias[i] = frand();
        float *dx = dev_copy(x, sizeof(float) * T * n), *dy = dev_copy(y0, sizeof(float) * T * R),
              *db = dev_copy(bias, sizeof bias);
        REQUIRE(dx && dy && db, "device memory");
        for (int acc = 0; acc < 2; acc++) {
            REQUIRE(gdev_gemm(g_dev, &dm, dx, n, T, dy, R, acc ? NULL : db, acc) == PL_OK &&
                        dev_get(y, dy, sizeof(float) * T * R),
                    "%s", pl_last_error());
            for (int t = 0; t < T; t++) {
                for (int i = 0; i < n; i++) xd[i] = x[(size_t)t * n + i];
                for (int r = 0; r < R; r++)
                    ref[t * R + r] = ref_dot(m.deq + (size_t)r * n, xd, n) + (acc ? ref[t * R + r] : bias[r]);
            }
            /* f16 operands: about 2^-11 relative per product, averaged over n */
            const double e = rel_err(y, ref, (size_t)T * R);
            CHECK(e < 2e-3, "%s gemm (accumulate %d): relative error %.3g", quant_get(type)->name, acc, e);
        }
        dev_mat_free(&dm), tmat_free(&m);
        gdev_free(g_dev, dx), gdev_free(g_dev, dy), gdev_free(g_dev, db);
        free(x), free(y0), free(y), free(ref), free(xd);
    }
}

static void test_elementwise(void) {
    NEED_GPU();
    enum { T = 5, N = 300 };
    float x[T * N], w[N], y[T * N], u[T * N];
    for (int i = 0; i < T * N; i++) x[i] = 3 * frand(), u[i] = frand();
    for (int i = 0; i < N; i++) w[i] = 1 + 0.3f * frand();
    float *dx = dev_copy(x, sizeof x), *dw = dev_copy(w, sizeof w), *dy = dev_copy(x, sizeof x), *du = dev_copy(u, sizeof u);
    REQUIRE(dx && dw && dy && du, "device memory");
    REQUIRE(gdev_rmsnorm(g_dev, dx, dy, dw, N, N, T, 1e-5f) == PL_OK && dev_get(y, dy, sizeof y), "%s", pl_last_error());
    double ref[T * N];
    for (int t = 0; t < T; t++) ref_rmsnorm(ref + t * N, x + t * N, w, N, 1e-5);
    CHECK(rel_err(y, ref, T * N) < 1e-6, "rmsnorm: %.3g", rel_err(y, ref, T * N));
    REQUIRE(gdev_silu_mul(g_dev, dx, du, T * N) == PL_OK && dev_get(y, dx, sizeof y), "%s", pl_last_error());
    for (int i = 0; i < T * N; i++) ref[i] = x[i] / (1 + exp(-(double)x[i])) * u[i];
    CHECK(rel_err(y, ref, T * N) < 1e-6, "silu_mul: %.3g", rel_err(y, ref, T * N));
    gdev_free(g_dev, dx), gdev_free(g_dev, dw), gdev_free(g_dev, dy), gdev_free(g_dev, du);
    /* embedding rows of every type */
    for (int ti = 0; ti < N_TYPES; ti++) {
        tmat m;
        gdev_mat dm;
        const int n = width_for(k_types[ti]);
        REQUIRE(tmat_make(&m, k_types[ti], n, 50) && dev_mat(&m, &dm), "setup");
        const int tok[4] = {49, 0, 17, 17};
        int *dt = dev_copy(tok, sizeof tok);
        float out[4 * 512];
        float *dout = dev_copy(out, sizeof out);
        REQUIRE(dt && dout && gdev_embed(g_dev, &dm, dt, 4, dout) == PL_OK && dev_get(out, dout, sizeof(float) * 4 * n),
                "%s", pl_last_error());
        double r[4 * 512];
        for (int t = 0; t < 4; t++)
            for (int i = 0; i < n; i++) r[t * n + i] = m.deq[(size_t)tok[t] * n + i];
        CHECK(rel_err(out, r, (size_t)4 * n) < 1e-6, "%s embed: %.3g", quant_get(k_types[ti])->name,
              rel_err(out, r, (size_t)4 * n));
        dev_mat_free(&dm), tmat_free(&m), gdev_free(g_dev, dt), gdev_free(g_dev, dout);
    }
}

/* RoPE + cache store + attention for T new tokens after pos0 cached ones. */
static void attn_case(int H, int G, int D, int n_rot, int neox, int qk_norm, int pos0, int T) {
    const int P = pos0 + T + 3, GD = G * D, HD = H * D, half = n_rot / 2;
    float *q = malloc(sizeof(float) * T * HD), *k = malloc(sizeof(float) * T * GD), *v = malloc(sizeof(float) * T * GD);
    float *cs = malloc(sizeof(float) * P * half), *sn = malloc(sizeof(float) * P * half), qn[256], kn[256];
    uint16_t *kc = malloc(2 * (size_t)P * GD), *vc = malloc(2 * (size_t)P * GD);
    double *rq = malloc(sizeof(double) * T * HD), *rk = malloc(sizeof(double) * P * GD), *rv = malloc(sizeof(double) * P * GD);
    double *ro = malloc(sizeof(double) * T * HD);
    float *out = malloc(sizeof(float) * T * HD), *qo = malloc(sizeof(float) * T * HD);
    REQUIRE(q && k && v && cs && sn && kc && vc && rq && rk && rv && ro && out && qo, "out of memory");
    for (int i = 0; i < T * HD; i++) q[i] = frand();
    for (int i = 0; i < T * GD; i++) k[i] = frand(), v[i] = frand();
    for (int i = 0; i < D; i++) qn[i] = 1 + 0.3f * frand(), kn[i] = 1 + 0.3f * frand();
    for (int p = 0; p < P; p++)
        for (int i = 0; i < half; i++) {
            const double th = p * pow(10000.0, -2.0 * i / n_rot);
            cs[p * half + i] = (float)cos(th), sn[p * half + i] = (float)sin(th);
        }
    for (int i = 0; i < P * GD; i++) {
        kc[i] = pl_f32_to_fp16(frand()), vc[i] = pl_f32_to_fp16(frand());
        rk[i] = pl_fp16_to_f32(kc[i]), rv[i] = pl_fp16_to_f32(vc[i]);
    }
    /* reference: norm, rotate, round K/V to f16 as the cache does */
    for (int t = 0; t < T; t++) {
        const int pos = pos0 + t;
        for (int j = 0; j < H + 2 * G; j++) {
            const float *src = j < H ? q + t * HD + j * D : j < H + G ? k + t * GD + (j - H) * D : v + t * GD + (j - H - G) * D;
            double x[256];
            if (qk_norm && j < H + G) ref_rmsnorm(x, src, j < H ? qn : kn, D, 1e-5);
            else for (int i = 0; i < D; i++) x[i] = src[i];
            if (j < H + G)
                for (int i = 0; i < half; i++) {
                    const int i0 = neox ? i : 2 * i, i1 = neox ? i + half : 2 * i + 1;
                    const double c = cs[pos * half + i], s = sn[pos * half + i], a = x[i0], b = x[i1];
                    x[i0] = a * c - b * s, x[i1] = a * s + b * c;
                }
            for (int i = 0; i < D; i++) {
                if (j < H) rq[t * HD + j * D + i] = x[i];
                else if (j < H + G) rk[(size_t)pos * GD + (j - H) * D + i] = pl_fp16_to_f32(pl_f32_to_fp16((float)x[i]));
                else rv[(size_t)pos * GD + (j - H - G) * D + i] = pl_fp16_to_f32(pl_f32_to_fp16((float)x[i]));
            }
        }
    }
    for (int t = 0; t < T; t++)
        for (int h = 0; h < H; h++) {
            const int g = h / (H / G), n = pos0 + t + 1;
            double *sc = malloc(sizeof(double) * n), mx = -1e300, sum = 0;
            for (int p = 0; p < n; p++) {
                double s = 0;
                for (int i = 0; i < D; i++) s += rq[t * HD + h * D + i] * rk[(size_t)p * GD + g * D + i];
                sc[p] = s / sqrt((double)D);
                if (sc[p] > mx) mx = sc[p];
            }
            for (int p = 0; p < n; p++) sum += sc[p] = exp(sc[p] - mx);
            for (int i = 0; i < D; i++) {
                double o = 0;
                for (int p = 0; p < n; p++) o += sc[p] * rv[(size_t)p * GD + g * D + i];
                ro[t * HD + h * D + i] = o / sum;
            }
            free(sc);
        }
    int pos_h = pos0;
    gdev_attn a = {.T = T, .H = H, .G = G, .D = D, .n_rot = n_rot, .neox = neox, .eps = 1e-5f};
    a.d_pos = dev_copy(&pos_h, sizeof pos_h);
    a.d_q = dev_copy(q, sizeof(float) * T * HD);
    a.d_k = dev_copy(k, sizeof(float) * T * GD);
    a.d_v = dev_copy(v, sizeof(float) * T * GD);
    a.d_kc = dev_copy(kc, 2 * (size_t)P * GD);
    a.d_vc = dev_copy(vc, 2 * (size_t)P * GD);
    a.d_cos = dev_copy(cs, sizeof(float) * P * half);
    a.d_sin = dev_copy(sn, sizeof(float) * P * half);
    a.d_qn = qk_norm ? dev_copy(qn, sizeof(float) * D) : NULL;
    a.d_kn = qk_norm ? dev_copy(kn, sizeof(float) * D) : NULL;
    a.d_out = dev_copy(out, sizeof(float) * T * HD);
    REQUIRE(gdev_rope_kv(g_dev, &a) == PL_OK && gdev_attention(g_dev, &a) == PL_OK, "%s", pl_last_error());
    REQUIRE(dev_get(out, a.d_out, sizeof(float) * T * HD) && dev_get(qo, a.d_q, sizeof(float) * T * HD) &&
                dev_get(kc, a.d_kc, 2 * (size_t)P * GD) && dev_get(vc, a.d_vc, 2 * (size_t)P * GD),
            "%s", pl_last_error());
    int bad_cache = 0;
    for (int i = 0; i < P * GD; i++)
        if (fabs(pl_fp16_to_f32(kc[i]) - rk[i]) > 1e-3 * (1 + fabs(rk[i])) ||
            fabs(pl_fp16_to_f32(vc[i]) - rv[i]) > 1e-3 * (1 + fabs(rv[i])))
            bad_cache++;
    CHECK(bad_cache == 0, "H%d G%d D%d rot%d neox%d norm%d: %d cache entries differ", H, G, D, n_rot, neox, qk_norm, bad_cache);
    CHECK(rel_err(qo, rq, (size_t)T * HD) < 1e-5, "D%d: rotated q: %.3g", D, rel_err(qo, rq, (size_t)T * HD));
    CHECK(rel_err(out, ro, (size_t)T * HD) < 1e-4, "H%d G%d D%d rot%d neox%d norm%d pos0 %d: attention %.3g", H, G, D,
          n_rot, neox, qk_norm, pos0, rel_err(out, ro, (size_t)T * HD));
    gdev_free(g_dev, (void *)a.d_pos), gdev_free(g_dev, a.d_q), gdev_free(g_dev, (void *)a.d_k);
    gdev_free(g_dev, (void *)a.d_v), gdev_free(g_dev, a.d_kc), gdev_free(g_dev, a.d_vc);
    gdev_free(g_dev, (void *)a.d_cos), gdev_free(g_dev, (void *)a.d_sin), gdev_free(g_dev, (void *)a.d_qn);
    gdev_free(g_dev, (void *)a.d_kn), gdev_free(g_dev, a.d_out);
    free(q), free(k), free(v), free(cs), free(sn), free(kc), free(vc), free(rq), free(rk), free(rv), free(ro);
    free(out), free(qo);
}

static void test_attention(void) {
    NEED_GPU();
    attn_case(8, 2, 64, 64, 0, 0, 37, 5);    /* llama: adjacent pairs, decode-like batch */
    attn_case(8, 8, 128, 128, 1, 0, 300, 1); /* NEOX, MHA, one token after 300 (several key tiles per warp) */
    attn_case(4, 2, 24, 24, 1, 1, 0, 12);    /* qwen3-like head of 24 with Q/K norms, prompt from 0 */
    attn_case(6, 3, 20, 12, 0, 0, 9, 3);     /* partial rotary, head of 20 (scalar key loads) */
    attn_case(2, 1, 256, 256, 1, 0, 70, 2);  /* the widest head */
}

/* ------------------------------------------------ whole models vs the CPU */

/* logits of prompt (batch) then steps single tokens, for one context */
static int run_seq(pl_model *m, int device, int n_gpu_layers, const pl_token *toks, int n_prompt, int n_steps,
                   float *out /* (n_prompt + n_steps, V) */) {
    const int V = pl_model_n_vocab(m);
    pl_ctx_params cp = pl_ctx_default_params();
    cp.n_ctx = 64;
    cp.n_batch = 16;
    cp.logits_all = 1;
    cp.n_threads = 2;
    cp.device = device;
    cp.n_gpu_layers = n_gpu_layers;
    pl_ctx *c = NULL;
    if (pl_ctx_new(m, &cp, &c)) return 0;
    int ok = !pl_ctx_decode(c, toks, n_prompt);
    for (int i = 0; ok && i < n_prompt; i++) memcpy(out + (size_t)i * V, pl_ctx_logits(c, i), sizeof(float) * V);
    for (int s = 0; ok && s < n_steps; s++) {
        ok = !pl_ctx_decode(c, toks + n_prompt + s, 1);
        if (ok) memcpy(out + (size_t)(n_prompt + s) * V, pl_ctx_logits(c, -1), sizeof(float) * V);
    }
    pl_ctx_free(c);
    return ok;
}

static void model_case(const char *name, rm_spec s, double tol) {
    const char *path = model_file(name);
    REQUIRE(rm_write(&s, path), "cannot write %s", path);
    pl_model *m = NULL;
    REQUIRE(pl_model_load(path, NULL, &m) == PL_OK, "%s", pl_last_error());
    enum { NP = 12, NS = 6 };
    pl_token toks[NP + NS];
    for (int i = 0; i < NP + NS; i++) toks[i] = (pl_token)(rm_next(&g_rng) % (uint64_t)s.V);
    const size_t n = (size_t)(NP + NS) * s.V;
    float *cpu = malloc(sizeof(float) * n), *gpu = malloc(sizeof(float) * n);
    double *ref = malloc(sizeof(double) * n);
    REQUIRE(cpu && gpu && ref, "out of memory");
    REQUIRE(run_seq(m, PL_DEVICE_CPU, 0, toks, NP, NS, cpu), "%s: CPU: %s", name, pl_last_error());
    for (size_t i = 0; i < n; i++) ref[i] = cpu[i];
    const int layers[2] = {0, 1}; /* full offload; the first layer only */
    for (int cfg = 0; cfg < 3; cfg++) /* the defaults, then the opt-in fusions (fuse_env) */
        for (int k = 0; k < 2; k++) {
            fuse_env(cfg);
            const int ok = run_seq(m, PL_DEVICE_CUDA, layers[k], toks, NP, NS, gpu);
            fuse_env(0);
            REQUIRE(ok, "%s: GPU: %s", name, pl_last_error());
            for (int r = 0; r < NP + NS; r++) {
                const double e = rel_err(gpu + (size_t)r * s.V, ref + (size_t)r * s.V, (size_t)s.V);
                CHECK(e < tol, "%s (n_gpu_layers %d, fusions %d): logits row %d (%s) differ from the CPU's by %.3g", name,
                      layers[k], cfg, r, r < NP ? "prompt batch" : "single-token step", e);
            }
        }
    free(cpu), free(gpu), free(ref);
    pl_model_free(m);
}

static void test_models(void) {
    NEED_GPU();
    /* CPU dots round activations to the weights' dot type (Q8_0, Q8_K, f16);
     * GPU batches round them to f16, single steps keep f32 */
    model_case("llama_q4_0", spec_llama(QT_Q4_0), 3e-2);
    model_case("llama_q8_0", spec_llama(QT_Q8_0), 2e-2);
    rm_spec km = spec_llama(QT_Q4_K);
    km.t_v = km.t_down = QT_Q6_K, km.untied = 1, km.t_out = QT_Q6_K;
    model_case("llama_q4_k_m", km, 3e-2);
    rm_spec q2 = spec_llama(QT_Q8_0);
    q2.arch = "qwen2", q2.t_v = QT_Q4_0, q2.t_embd = QT_Q6_K;
    model_case("qwen2_q8_0", q2, 3e-2);
    rm_spec q3 = spec_llama(QT_F16);
    q3.arch = "qwen3", q3.D = 96, q3.H = 4, q3.G = 1;
    model_case("qwen3_f16", q3, 1e-2);
    rm_spec f = {.arch = "llama", .C = 64, .L = 3, .H = 8, .G = 4, .D = 8, .F = 172, .V = 512, .t_qko = QT_F32,
                 .t_v = QT_F32, .t_gu = QT_F32, .t_down = QT_F32, .t_embd = QT_F32, .untied = 1, .t_out = QT_F32, .seed = 5};
    model_case("llama_f32_small", f, 1e-2);
    f.t_qko = f.t_v = f.t_gu = f.t_down = f.t_out = QT_BF16, f.t_embd = QT_F16;
    model_case("llama_bf16_small", f, 1e-2);
}

/* ----------------------------------------- perplexity on the shared models */

static double ppl_of(pl_model *m, int device, const pl_token *toks, int n_chunks) {
    enum { N = 256 };
    const int V = pl_model_n_vocab(m);
    pl_ctx_params cp = pl_ctx_default_params();
    cp.n_ctx = N, cp.n_batch = N, cp.logits_all = 1, cp.device = device;
    pl_ctx *c = NULL;
    if (pl_ctx_new(m, &cp, &c)) return -1;
    double nll = 0;
    long cnt = 0;
    pl_token chunk[N];
    for (int k = 0; k < n_chunks; k++) {
        memcpy(chunk, toks + (size_t)k * N, sizeof chunk);
        chunk[0] = pl_model_bos(m);
        pl_ctx_truncate(c, 0);
        if (pl_ctx_decode_from(c, chunk, N, N / 2)) {
            pl_ctx_free(c);
            return -1;
        }
        for (int j = N / 2; j < N - 1; j++) {
            const float *l = pl_ctx_logits(c, j);
            double mx = l[0], s = 0;
            for (int i = 1; i < V; i++) mx = l[i] > mx ? l[i] : mx;
            for (int i = 0; i < V; i++) s += exp(l[i] - mx);
            nll -= l[chunk[j + 1]] - mx - log(s);
            cnt++;
        }
    }
    pl_ctx_free(c);
    return exp(nll / cnt);
}

static void test_shared_perplexity(void) {
    NEED_GPU();
    const char *text_path = shared_path("text/kjv-val.txt");
    if (!text_path) SKIP("../shared/text/kjv-val.txt not found (PL_SHARED)");
    FILE *fp = fopen(text_path, "rb");
    REQUIRE(fp, "open %s", text_path);
    static char text[1 << 18];
    const size_t len = fread(text, 1, sizeof text - 1, fp);
    fclose(fp);
    const char *env = getenv("PL_PPL_CHUNKS");
    const int want = env ? atoi(env) : 16;
    static const char *const models[] = {"kjv-llama-q4_0", "kjv-llama-q4_k_m", "kjv-llama-q8_0", "kjv-llama-f16",
                                         "kjv-qwen2-q4_0", "kjv-qwen2-q4_k_m", "kjv-qwen2-q8_0", "kjv-qwen2-f16"};
    int found = 0;
    for (size_t i = 0; i < sizeof models / sizeof models[0]; i++) {
        char rel[96];
        snprintf(rel, sizeof rel, "models/%s.gguf", models[i]);
        const char *path = shared_path(rel);
        if (!path) continue;
        found++;
        pl_model *m = NULL;
        REQUIRE(pl_model_load(path, NULL, &m) == PL_OK, "%s", pl_last_error());
        static pl_token toks[1 << 18];
        int n_tok = 0;
        REQUIRE(pl_tokenize(m, text, len, 1, 0, toks, 1 << 18, &n_tok) == PL_OK, "%s", pl_last_error());
        int chunks = n_tok / 256;
        if (want > 0 && want < chunks) chunks = want;
        const double t0 = pl_time_ms(), pg = ppl_of(m, PL_DEVICE_CUDA, toks, chunks), t1 = pl_time_ms();
        const double pc = ppl_of(m, PL_DEVICE_CPU, toks, chunks), t2 = pl_time_ms();
        CHECK(pg > 0 && pc > 0, "%s: %s", models[i], pl_last_error());
        const double d = pg / pc - 1;
        printf("  %-18s %3d chunks: PPL CPU %.4f GPU %.4f (%+.4f%%)  [%.0f / %.0f ms]\n", models[i], chunks, pc, pg,
               100 * d, t2 - t1, t1 - t0);
        CHECK(fabs(d) < 0.002, "%s: GPU perplexity %.4f vs CPU %.4f", models[i], pg, pc);
        pl_model_free(m);
    }
    if (!found) SKIP("no shared models found (PL_SHARED)");
}

int main(void) {
    const char *tmp = getenv("TMPDIR");
    snprintf(g_dir, sizeof g_dir, "%s/pl_test_gpu_XXXXXX", tmp ? tmp : "/tmp");
    if (!mkdtemp(g_dir)) {
        fprintf(stderr, "cannot make a temporary directory\n");
        return 1;
    }
    if (!gdev_built()) snprintf(g_why, sizeof g_why, "built without CUDA (make GPU=cuda)");
    else if (gdev_open(&g_dev, &g_info)) snprintf(g_why, sizeof g_why, "no usable CUDA device: %s", pl_last_error());
    else printf("  device: %s, compute %d.%d, %d SMs, %.1f GiB free\n", g_info.name, g_info.cc_major, g_info.cc_minor,
                g_info.n_sm, (double)g_info.mem_free / (1 << 30));
    RUN(test_layout_matches_dequantizers);
    RUN(test_plan);
    RUN(test_ctx_without_backend);
    RUN(test_matvec);
    RUN(test_qkv_rope);
    RUN(test_gemm);
    RUN(test_elementwise);
    RUN(test_attention);
    RUN(test_models);
    RUN(test_shared_perplexity);
    gdev_close(g_dev);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", g_dir);
    TEST_END();
}
