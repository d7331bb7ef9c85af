/*
 * Every backward op of src/train checked against central finite differences
 * of its own forward: for an op y = f(x, w) and a random cotangent R, the
 * analytic dL/dx of L = sum(y * R) must match (L(x+h) - L(x-h)) / 2h for
 * every input coordinate. Also: the GEMM against a naive triple loop (tile
 * edges, K blocks, transposed A), rope's inverse, and the frozen-base
 * (quantized) linear backward against its dequantized f32 equivalent.
 */
#include "test.h"
#include "train/train.h"

#include <math.h>

static uint64_t g_rng = 12345;

static void fill(float *x, int64_t n, float scale) {
    for (int64_t i = 0; i < n; i++) x[i] = scale * train_rng_normal(&g_rng);
}

static double dotd(const float *a, const float *b, int64_t n) {
    double s = 0;
    for (int64_t i = 0; i < n; i++) s += (double)a[i] * b[i];
    return s;
}

/* Compare analytic gradient g (n) of L(x) with central differences. The ops
 * run in float, so the differences carry rounding noise of about
 * 1e-7 * |L| / h: errors are measured against the gradient's own scale
 * (a tenth of its largest element), which a wrong formula still misses by
 * far more than the tolerance. */
typedef double (*loss_fn)(void *ctx);

static int fd_check(const char *what, float *x, const float *g, int64_t n, loss_fn L, void *ctx, float h, double tol) {
    int bad = 0;
    double max_err = 0, gmax = 0;
    for (int64_t i = 0; i < n; i++) gmax = fmax(gmax, fabs(g[i]));
    for (int64_t i = 0; i < n; i++) {
        const float x0 = x[i];
        x[i] = x0 + h;
        const double lp = L(ctx);
        x[i] = x0 - h;
        const double lm = L(ctx);
        x[i] = x0;
        const double fd = (lp - lm) / (2.0 * h);
        const double err = fabs(fd - g[i]) / (fabs(fd) + fabs(g[i]) + 0.1 * gmax + 1e-6);
        if (err > max_err) max_err = err;
        if (err > tol && bad++ < 3)
            fprintf(stderr, "  %s[%lld]: analytic %.6g vs finite difference %.6g\n", what, (long long)i, g[i], fd);
    }
    CHECK(bad == 0, "%s: %d of %lld coordinates disagree (max rel err %.3g)", what, bad, (long long)n, max_err);
    return bad;
}

/* ------------------------------------------------------------ gemm */

static void test_gemm_vs_naive(void) {
    pl_pool *pool;
    REQUIRE(pool_new(2, &pool) == PL_OK, "pool");
    const int shapes[][3] = {{1, 1, 1}, {7, 19, 33}, {8, 32, 300}, {13, 50, 517}, {4, 16, 256}, {33, 7, 5}};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        const int M = shapes[s][0], N = shapes[s][1], K = shapes[s][2];
        float *A = malloc(sizeof(float) * M * K), *B = malloc(sizeof(float) * K * N), *C = malloc(sizeof(float) * M * N);
        double *ref = malloc(sizeof(double) * M * N);
        fill(A, (int64_t)M * K, 1), fill(B, (int64_t)K * N, 1), fill(C, (int64_t)M * N, 1);
        for (int trans = 0; trans < 2; trans++) {
            /* A(i,k): row-major (M, K), or the transpose of a (K, M) array */
            const int64_t si = trans ? 1 : K, sk = trans ? M : 1;
            for (int i = 0; i < M; i++)
                for (int j = 0; j < N; j++) {
                    double acc = C[i * N + j];
                    for (int k = 0; k < K; k++) acc += (double)A[i * si + k * sk] * B[k * N + j];
                    ref[i * N + j] = acc;
                }
            train_gemm(pool, M, N, K, A, si, sk, B, N, C, N, true);
            double worst = 0;
            for (int i = 0; i < M * N; i++) {
                double e = fabs(C[i] - ref[i]) / (1 + fabs(ref[i]));
                worst = e > worst ? e : worst;
                C[i] = (float)ref[i] * 0.5f; /* next pass accumulates onto a known value */
            }
            CHECK(worst < 1e-5, "gemm %dx%dx%d trans %d: max rel err %g", M, N, K, trans, worst);
        }
        free(A), free(B), free(C), free(ref);
    }
    pool_free(pool);
}

/* ------------------------------------------------------------ rmsnorm */

typedef struct rms_ctx {
    float *x, *w, *R, *y, *rstd;
    int rows, n;
} rms_ctx;

static double rms_loss(void *vc) {
    rms_ctx *c = vc;
    op_rmsnorm_fwd(NULL, c->y, c->rstd, c->x, c->w, c->rows, c->n, 1e-5f);
    return dotd(c->y, c->R, (int64_t)c->rows * c->n);
}

static void test_rmsnorm(void) {
    enum { ROWS = 3, NN = 16 };
    float x[ROWS * NN], w[NN], R[ROWS * NN], y[ROWS * NN], rstd[ROWS], dx[ROWS * NN], dw[NN] = {0};
    fill(x, ROWS * NN, 1), fill(w, NN, 1), fill(R, ROWS * NN, 1);
    rms_ctx c = {x, w, R, y, rstd, ROWS, NN};
    rms_loss(&c);
    op_rmsnorm_bwd(NULL, dx, dw, R, x, rstd, w, ROWS, NN, false);
    fd_check("rmsnorm dx", x, dx, ROWS * NN, rms_loss, &c, 1e-2f, 1e-2);
    fd_check("rmsnorm dw", w, dw, NN, rms_loss, &c, 1e-2f, 1e-2);
    /* accumulate mode adds onto what is there */
    float dx2[ROWS * NN];
    for (int i = 0; i < ROWS * NN; i++) dx2[i] = 1.0f;
    op_rmsnorm_bwd(NULL, dx2, NULL, R, x, rstd, w, ROWS, NN, true);
    double worst = 0;
    for (int i = 0; i < ROWS * NN; i++) worst = fmax(worst, fabs(dx2[i] - 1.0f - dx[i]));
    CHECK(worst < 1e-6, "rmsnorm accumulate differs by %g", worst);
}

/* ------------------------------------------------------------ linear */

typedef struct lin_ctx {
    pl_pool *pool;
    train_mat *w;
    float *bias, *x, *y, *u, *R, *wt;
    int N;
    void *kscratch; /* kern_matmul's, for a frozen base */
} lin_ctx;

static double lin_loss(void *vc) {
    lin_ctx *c = vc;
    op_linear_fwd(c->pool, c->w, c->bias, c->x, c->N, c->y, c->u, c->wt, c->kscratch);
    return dotd(c->y, c->R, (int64_t)c->N * c->w->n_out);
}

static void test_linear_f32(void) {
    pl_pool *pool;
    REQUIRE(pool_new(2, &pool) == PL_OK, "pool");
    enum { N = 5, K = 8, O = 6 };
    float W[O * K], gW[O * K] = {0}, b[O], gb[O] = {0}, x[N * K], dx[N * K] = {0}, y[N * O], R[N * O], wt[O * K];
    fill(W, O * K, 0.5f), fill(b, O, 0.5f), fill(x, N * K, 1), fill(R, N * O, 1);
    train_mat w = {.n_in = K, .n_out = O, .w = W, .g = gW};
    lin_ctx c = {pool, &w, b, x, y, NULL, R, wt, N, NULL};
    lin_loss(&c);
    op_linear_bwd(pool, &w, gb, x, R, NULL, N, dx, NULL, NULL);
    fd_check("linear dx", x, dx, N * K, lin_loss, &c, 1e-2f, 1e-2);
    fd_check("linear dW", W, gW, O * K, lin_loss, &c, 1e-2f, 1e-2);
    fd_check("linear db", b, gb, O, lin_loss, &c, 1e-2f, 1e-2);
    pool_free(pool);
}

/* LoRA over a frozen f32 base read through the kernels (kern_matmul). */
static void test_linear_lora(void) {
    pl_pool *pool;
    REQUIRE(pool_new(2, &pool) == PL_OK, "pool");
    enum { N = 6, K = 32, O = 12, RK = 3 };
    static float W[O * K], A[RK * K], Bm[O * RK], gA[RK * K], gB[O * RK], x[N * K], dx[N * K], y[N * O], R[N * O];
    static float u[N * RK], du[2 * N * RK], wt[O * K], tile[TRAIN_TILE_ROWS * K];
    fill(W, O * K, 0.5f), fill(A, RK * K, 0.5f), fill(Bm, O * RK, 0.5f), fill(x, N * K, 1), fill(R, N * O, 1);
    train_mat w = {.n_in = K, .n_out = O, .base = {.data = W, .type = QT_F32, .n_in = K, .n_out = O},
                   .rank = RK, .scale = 2.0f / RK, .a = A, .b = Bm, .ga = gA, .gb = gB};
    void *ks = malloc(kern_matmul_scratch(&w.base, N) + 1);
    lin_ctx c = {pool, &w, NULL, x, y, u, R, wt, N, ks};
    lin_loss(&c);
    op_linear_bwd(pool, &w, NULL, x, R, u, N, dx, du, tile);
    fd_check("lora dx", x, dx, N * K, lin_loss, &c, 1e-2f, 1e-2);
    fd_check("lora dA", A, gA, RK * K, lin_loss, &c, 1e-2f, 1e-2);
    fd_check("lora dB", Bm, gB, O * RK, lin_loss, &c, 1e-2f, 1e-2);
    free(ks);
    pool_free(pool);
}

/* dx through a quantized frozen base equals dx through its dequantized f32 copy. */
static void test_linear_frozen_quant(void) {
    pl_pool *pool;
    REQUIRE(pool_new(2, &pool) == PL_OK, "pool");
    enum { N = 7, K = 256, O = 150 };
    const uint32_t types[] = {QT_Q8_0, QT_Q4_K, QT_F16};
    float *Wf = malloc(sizeof(float) * O * K), *Wd = malloc(sizeof(float) * O * K), *dy = malloc(sizeof(float) * N * O);
    float *dx1 = calloc(N * K, sizeof(float)), *dx2 = calloc(N * K, sizeof(float));
    float *tile = malloc(sizeof(float) * TRAIN_TILE_ROWS * K);
    uint8_t *q = malloc(quant_row_size(QT_F32, K) * O);
    fill(Wf, O * K, 1), fill(dy, N * O, 1);
    for (size_t ti = 0; ti < sizeof types / sizeof types[0]; ti++) {
        const quant_traits *tr = quant_get(types[ti]);
        const size_t rs = quant_row_size(types[ti], K);
        for (int r = 0; r < O; r++) {
            tr->from_float(Wf + r * K, q + r * rs, K);
            tr->to_float(q + r * rs, Wd + r * K, K);
        }
        train_mat wq = {.n_in = K, .n_out = O, .base = {.data = q, .type = types[ti], .n_in = K, .n_out = O}};
        train_mat wf = {.n_in = K, .n_out = O, .w = Wd};
        memset(dx1, 0, sizeof(float) * N * K), memset(dx2, 0, sizeof(float) * N * K);
        op_linear_bwd(pool, &wq, NULL, NULL, dy, NULL, N, dx1, NULL, tile);
        op_linear_bwd(pool, &wf, NULL, NULL, dy, NULL, N, dx2, NULL, NULL);
        double worst = 0;
        for (int i = 0; i < N * K; i++) worst = fmax(worst, fabs(dx1[i] - dx2[i]) / (1 + fabs(dx2[i])));
        CHECK(worst < 1e-5, "%s frozen dx differs from dequantized f32 by %g", tr->name, worst);
    }
    free(Wf), free(Wd), free(dy), free(dx1), free(dx2), free(tile), free(q);
    pool_free(pool);
}

/* ------------------------------------------------------------ rope */

typedef struct rope_ctx {
    float *x, *y, *R, *cs, *sn;
    int rows, T, heads, D, n_rot;
    bool neox;
} rope_ctx;

static double rope_loss(void *vc) {
    rope_ctx *c = vc;
    const int64_t n = (int64_t)c->rows * c->heads * c->D;
    memcpy(c->y, c->x, sizeof(float) * n);
    op_rope(c->y, c->rows, c->T, c->heads, c->D, c->n_rot, c->neox, c->cs, c->sn, false);
    return dotd(c->y, c->R, n);
}

static void test_rope(void) {
    enum { ROWS = 6, T = 3, HEADS = 2, D = 8, NROT = 6, HALF = NROT / 2 };
    float x[ROWS * HEADS * D], y[ROWS * HEADS * D], R[ROWS * HEADS * D], g[ROWS * HEADS * D];
    float cs[T * HALF], sn[T * HALF];
    for (int p = 0; p < T; p++)
        for (int i = 0; i < HALF; i++) {
            double th = p * pow(10000.0, -2.0 * i / NROT);
            cs[p * HALF + i] = (float)cos(th), sn[p * HALF + i] = (float)sin(th);
        }
    for (int neox = 0; neox < 2; neox++) {
        fill(x, ROWS * HEADS * D, 1), fill(R, ROWS * HEADS * D, 1);
        rope_ctx c = {x, y, R, cs, sn, ROWS, T, HEADS, D, NROT, neox};
        rope_loss(&c);
        /* inverse undoes the forward */
        op_rope(y, ROWS, T, HEADS, D, NROT, neox, cs, sn, true);
        double worst = 0;
        for (int i = 0; i < ROWS * HEADS * D; i++) worst = fmax(worst, fabs(y[i] - x[i]));
        CHECK(worst < 1e-5, "rope %s: inverse(forward(x)) differs from x by %g", neox ? "neox" : "norm", worst);
        /* backward = inverse rotation of the cotangent */
        memcpy(g, R, sizeof g);
        op_rope(g, ROWS, T, HEADS, D, NROT, neox, cs, sn, true);
        fd_check(neox ? "rope neox dx" : "rope norm dx", x, g, ROWS * HEADS * D, rope_loss, &c, 1e-2f, 1e-2);
    }
}

/* ------------------------------------------------------------ attention */

typedef struct attn_ctx {
    pl_pool *pool;
    float *q, *k, *v, *probs, *out, *R, *scratch;
    int B, T, H, G, D;
} attn_ctx;

static double attn_loss(void *vc) {
    attn_ctx *c = vc;
    op_attn_fwd(c->pool, c->q, c->k, c->v, c->probs, c->out, c->B, c->T, c->H, c->G, c->D, c->scratch);
    return dotd(c->out, c->R, (int64_t)c->B * c->T * c->H * c->D);
}

static void test_attention_gqa(void) {
    pl_pool *pool;
    REQUIRE(pool_new(2, &pool) == PL_OK, "pool");
    /* 4 query heads over 2 K/V heads (and the plain case, 2 over 2; and 4 over
     * 1); the last is longer than one 64-row block of the blocked products */
    const int cfg[][4] = {{4, 2, 2, 5}, {2, 2, 2, 5}, {4, 1, 2, 5}, {2, 1, 1, 70}};
    for (size_t ci = 0; ci < 4; ci++) {
        enum { D = 4 };
        const int H = cfg[ci][0], G = cfg[ci][1], B = cfg[ci][2], T = cfg[ci][3];
        const int nq = B * T * H * D, nk = B * T * G * D;
        float *q = malloc(sizeof(float) * nq), *k = malloc(sizeof(float) * nk), *v = malloc(sizeof(float) * nk);
        float *out = malloc(sizeof(float) * nq), *R = malloc(sizeof(float) * nq), *probs = malloc(sizeof(float) * B * H * T * T);
        float *dq = malloc(sizeof(float) * nq), *dk = malloc(sizeof(float) * nk), *dv = malloc(sizeof(float) * nk);
        float *scratch = malloc(sizeof(float) * op_attn_scratch(T, D, 2));
        fill(q, nq, 1), fill(k, nk, 1), fill(v, nk, 1), fill(R, nq, 1);
        attn_ctx c = {pool, q, k, v, probs, out, R, scratch, B, T, H, G, D};
        attn_loss(&c);
        op_attn_bwd(pool, R, q, k, v, probs, dq, dk, dv, B, T, H, G, D, scratch);
        char name[64];
        snprintf(name, sizeof name, "attention H%d/G%d dq", H, G);
        fd_check(name, q, dq, nq, attn_loss, &c, 1e-2f, 1e-2);
        snprintf(name, sizeof name, "attention H%d/G%d dk", H, G);
        fd_check(name, k, dk, nk, attn_loss, &c, 1e-2f, 1e-2);
        snprintf(name, sizeof name, "attention H%d/G%d dv", H, G);
        fd_check(name, v, dv, nk, attn_loss, &c, 1e-2f, 1e-2);
        /* causality: the first token's output depends on nothing after it */
        const float keep = k[(size_t)1 * G * D];
        float o0[D];
        memcpy(o0, out, sizeof o0);
        k[(size_t)1 * G * D] += 1.0f;
        attn_loss(&c);
        CHECK(!memcmp(o0, out, sizeof o0), "token 0 sees token 1");
        k[(size_t)1 * G * D] = keep;
        free(q), free(k), free(v), free(out), free(R), free(probs), free(dq), free(dk), free(dv), free(scratch);
    }
    pool_free(pool);
}

/* ------------------------------------------------------------ swiglu, xent */

typedef struct sw_ctx {
    float *g, *u, *h, *R;
    int n;
} sw_ctx;

static double sw_loss(void *vc) {
    sw_ctx *c = vc;
    op_swiglu_fwd(NULL, c->h, c->g, c->u, c->n);
    return dotd(c->h, c->R, c->n);
}

static void test_swiglu(void) {
    enum { NN = 40 };
    float g[NN], u[NN], h[NN], R[NN], dg[NN], du[NN];
    fill(g, NN, 2), fill(u, NN, 1), fill(R, NN, 1);
    sw_ctx c = {g, u, h, R, NN};
    sw_loss(&c);
    op_swiglu_bwd(NULL, dg, du, R, g, u, NN);
    fd_check("swiglu dg", g, dg, NN, sw_loss, &c, 1e-2f, 1e-2);
    fd_check("swiglu du", u, du, NN, sw_loss, &c, 1e-2f, 1e-2);
}

typedef struct xe_ctx {
    float *logits;
    int32_t *tg;
    int rows, V;
} xe_ctx;

static double xe_loss(void *vc) {
    xe_ctx *c = vc;
    return op_xent(NULL, c->logits, c->tg, c->rows, c->V, NULL, 0) * 0.25;
}

static void test_xent(void) {
    enum { ROWS = 4, V = 11 };
    float lg[ROWS * V], d[ROWS * V];
    int32_t tg[ROWS] = {3, -1, 10, 0};
    fill(lg, ROWS * V, 3);
    xe_ctx c = {lg, tg, ROWS, V};
    /* the nll itself, against a direct double computation */
    double want = 0;
    for (int r = 0; r < ROWS; r++) {
        if (tg[r] < 0) continue;
        double s = 0;
        for (int i = 0; i < V; i++) s += exp(lg[r * V + i]);
        want += log(s) - lg[r * V + tg[r]];
    }
    CHECK(fabs(op_xent(NULL, lg, tg, ROWS, V, NULL, 0) - want) < 1e-4, "xent value");
    op_xent(NULL, lg, tg, ROWS, V, d, 0.25f);
    fd_check("xent dlogits", lg, d, ROWS * V, xe_loss, &c, 1e-2f, 1e-2);
    /* in place (dlogits aliasing logits) gives the same */
    float lg2[ROWS * V];
    memcpy(lg2, lg, sizeof lg);
    op_xent(NULL, lg2, tg, ROWS, V, lg2, 0.25f);
    CHECK(!memcmp(lg2, d, sizeof d), "xent in place differs");
}

/* ------------------------------------------------------------ optimizer */

/* The threaded row ops give the serial results (same per-row arithmetic). */
static void test_threaded_rows(void) {
    pl_pool *pool;
    REQUIRE(pool_new(2, &pool) == PL_OK, "pool");
    enum { ROWS = 300, NN = 70, V = 50 };
    static float x[ROWS * NN], w[NN], dy[ROWS * NN], y1[ROWS * NN], y2[ROWS * NN], r1[ROWS], r2[ROWS];
    static float dx1[ROWS * NN], dx2[ROWS * NN], dw1[NN], dw2[NN], lg[ROWS * V], d1[ROWS * V], d2[ROWS * V];
    static int32_t tg[ROWS];
    fill(x, ROWS * NN, 1), fill(w, NN, 1), fill(dy, ROWS * NN, 1), fill(lg, ROWS * V, 2);
    for (int r = 0; r < ROWS; r++) tg[r] = r % 11 == 0 ? -1 : r % V;
    op_rmsnorm_fwd(NULL, y1, r1, x, w, ROWS, NN, 1e-5f);
    op_rmsnorm_fwd(pool, y2, r2, x, w, ROWS, NN, 1e-5f);
    CHECK(!memcmp(y1, y2, sizeof y1) && !memcmp(r1, r2, sizeof r1), "rmsnorm forward differs when threaded");
    op_rmsnorm_bwd(NULL, dx1, dw1, dy, x, r1, w, ROWS, NN, false);
    op_rmsnorm_bwd(pool, dx2, dw2, dy, x, r1, w, ROWS, NN, false);
    CHECK(!memcmp(dx1, dx2, sizeof dx1) && !memcmp(dw1, dw2, sizeof dw1), "rmsnorm backward differs when threaded");
    const double n1 = op_xent(NULL, lg, tg, ROWS, V, d1, 0.5f), n2 = op_xent(pool, lg, tg, ROWS, V, d2, 0.5f);
    CHECK(fabs(n1 - n2) < 1e-9 * fabs(n1) && !memcmp(d1, d2, sizeof d1), "xent differs when threaded");
    pool_free(pool);
}

static void test_lr_schedule(void) {
    train_opt o = train_opt_default();
    o.lr = 1.0f, o.min_lr = 0.1f, o.warmup = 10, o.steps = 110;
    CHECK(fabsf(train_lr_at(&o, 0) - 0.1f) < 1e-6, "warmup starts at lr/warmup");
    CHECK(fabsf(train_lr_at(&o, 9) - 1.0f) < 1e-6, "warmup ends at lr");
    CHECK(fabsf(train_lr_at(&o, 60) - 0.55f) < 1e-5, "cosine midpoint is halfway (%g)", train_lr_at(&o, 60));
    CHECK(fabsf(train_lr_at(&o, 110) - 0.1f) < 1e-6, "ends at min_lr");
    o.cosine = false;
    CHECK(fabsf(train_lr_at(&o, 35) - 0.775f) < 1e-5, "linear decay");
}

int main(void) {
    RUN(test_gemm_vs_naive);
    RUN(test_rmsnorm);
    RUN(test_linear_f32);
    RUN(test_linear_lora);
    RUN(test_linear_frozen_quant);
    RUN(test_rope);
    RUN(test_attention_gqa);
    RUN(test_swiglu);
    RUN(test_xent);
    RUN(test_threaded_rows);
    RUN(test_lr_schedule);
    TEST_END();
}
