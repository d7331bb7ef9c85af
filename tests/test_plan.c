/*
 * Memory plans and their enforcement, checked against what the kernel and
 * the C library measure (not against figures we wrote down):
 *  - peak RSS of `pocketllm run` filling its context (wait4's ru_maxrss) is
 *    within 5 % or 8 MiB of `pocketllm plan`'s total, on every shared model;
 *  - a context's accounted blocks are exactly the plan's KV and scratch, and
 *    the KV cache is 2 * L * P * G * D halves by the file's own numbers;
 *  - the tokenizer estimate is within 20 % of glibc's mallinfo2 delta;
 *  - budgets: verdicts and max_ctx are exact (max_ctx fits, max_ctx + 1 is
 *    refused by pl_ctx_new), loads below the budget fail with PL_ERR_BUDGET;
 *  - under RLIMIT_AS and a cgroup memory limit smaller than the model a
 *    child gets a clean PL_ERR_BUDGET (no OOM kill), and a limit that holds
 *    the plan runs generation inside it;
 *  - budget detection parses cgroup v1/v2 trees (fake /proc and /sys);
 *  - LoRA-merged copies are charged and planned: the plan of base + adapter
 *    is within the same rule of `pocketllm run --lora`'s peak RSS, and a
 *    budget that holds the base but not the copies refuses the adapter;
 *  - the allocator's limits, peaks, snapshots and reuse cache.
 */
#include "test.h"
#include "kv_expect.h"

#include "core/alloc.h"
#include "gguf/gguf.h"
#include "model/model.h"
#include "model/random_model.h"
#include "plan/plan.h"
#include "pocketllm.h"
#include "tokenizer/tokenizer.h"

#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <math.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

static char g_cli[1024]; /* build/pocketllm */
static char g_tmp[512];

static const char *k_models[] = {
    "models/stories260K.gguf",     "models/kjv-llama-f16.gguf",  "models/kjv-llama-q8_0.gguf",
    "models/kjv-llama-q4_k_m.gguf", "models/kjv-llama-q4_0.gguf", "models/kjv-qwen2-f16.gguf",
    "models/kjv-qwen2-q8_0.gguf",  "models/kjv-qwen2-q4_k_m.gguf", "models/kjv-qwen2-q4_0.gguf",
};
#define N_MODELS (int)(sizeof k_models / sizeof k_models[0])

static double mib(int64_t n) { return (double)n / 1048576.0; }

/* ------------------------------------------------------------ plan vs RSS */

/* Peak RSS (bytes) of `pocketllm run` filling a context of n_ctx, from the
 * kernel's accounting of the child; 0 on failure. */
static int64_t run_peak_rss_opt(const char *model, int n_ctx, const char *lora, const char *opt) {
    char ctx[16];
    snprintf(ctx, sizeof ctx, "%d", n_ctx);
    char *argv[20] = {g_cli, "run", "-m", (char *)model, "-c", ctx, "-n", "-1", "--ignore-eos", "--ids", "-t", "1", "--temp", "0"};
    int argc = 14;
    if (lora) argv[argc++] = "--lora", argv[argc++] = (char *)lora;
    if (opt) argv[argc++] = (char *)opt;
    argv[argc] = NULL;
    pid_t pid = fork();
    if (pid < 0) return 0;
    if (pid == 0) {
        int devnull = open("/dev/null", O_WRONLY);
        if (devnull >= 0) {
            dup2(devnull, 1);
            dup2(devnull, 2);
        }
        execv(g_cli, argv);
        _exit(127);
    }
    int status;
    struct rusage ru;
    if (wait4(pid, &status, 0, &ru) != pid || !WIFEXITED(status) || WEXITSTATUS(status) != 0) return 0;
    return (int64_t)ru.ru_maxrss * 1024;
}

static int64_t run_peak_rss(const char *model, int n_ctx, const char *lora) {
    return run_peak_rss_opt(model, n_ctx, lora, NULL);
}

/* Runs first, while this process is small: a forked child's peak counts the
 * pages it shares with us until exec. */
static void test_plan_matches_measured_rss(void) {
    if (access(g_cli, X_OK) != 0) SKIP("%s not built", g_cli);
    if (getenv("PL_ASAN")) SKIP("a sanitizer build's shadow memory is not in any plan");
    int n = 0;
    for (int i = 0; i < N_MODELS; i++) {
        const char *path = shared_path(k_models[i]);
        if (!path) continue;
        const int n_ctx = 192;
        pl_ctx_params cp = pl_ctx_default_params();
        cp.n_ctx = n_ctx;
        cp.n_threads = 1;
        pl_plan p;
        REQUIRE(pl_plan_file(path, NULL, &cp, &p) == PL_OK, "plan %s: %s", path, pl_last_error());
        int64_t rss = run_peak_rss(path, n_ctx, NULL);
        if (rss == 0) rss = run_peak_rss(path, n_ctx, NULL); /* once more: the binary may have been relinked meanwhile */
        REQUIRE(rss > 0, "pocketllm run -m %s failed", path);
        const int64_t diff = rss > p.total_bytes ? rss - p.total_bytes : p.total_bytes - rss;
        const int64_t tol = p.total_bytes / 20 > (8 << 20) ? p.total_bytes / 20 : (8 << 20);
        printf("   %-28s plan %7.2f MiB  measured %7.2f MiB  (%+.1f%%)\n", k_models[i] + 7, mib(p.total_bytes),
               mib(rss), 100.0 * (double)(rss - p.total_bytes) / (double)p.total_bytes);
        CHECK(diff <= tol, "%s: plan %.2f MiB vs measured peak RSS %.2f MiB", path, mib(p.total_bytes), mib(rss));
        /* the plan is not trivially loose: it tracks each model within 5 % or 3 MiB */
        CHECK(diff <= (3 << 20) || diff * 20 <= p.total_bytes, "%s: plan off by %.2f MiB", path, mib(diff));
        n++;
    }
    if (!n) SKIP("no shared models");
}

/* ------------------------------------------------------------ LoRA copies */

enum { LR_C = 512, LR_L = 4, LR_F = 1536, LR_GD = 256, LR_R = 4 };

/* An adapter of rank LR_R for all seven matrices of every layer (llama.cpp's
 * layout: lora_a [n_in, R], lora_b [R, n_out]). */
static int write_adapter(const char *path) {
    static const struct { const char *name; int n_in, n_out; } mats[] = {
        {"attn_q", LR_C, LR_C}, {"attn_k", LR_C, LR_GD}, {"attn_v", LR_C, LR_GD}, {"attn_output", LR_C, LR_C},
        {"ffn_gate", LR_C, LR_F}, {"ffn_up", LR_C, LR_F}, {"ffn_down", LR_F, LR_C}};
    static float a[LR_F * LR_R], b[LR_F * LR_R];
    uint64_t rng = 5;
    for (int i = 0; i < LR_F * LR_R; i++) a[i] = 0.05f * rm_unif(&rng), b[i] = 0.05f * rm_unif(&rng);
    gguf_writer *w = gguf_writer_new();
    int ok = w && !gguf_writer_set_str(w, "general.architecture", "llama") &&
             !gguf_writer_set_str(w, "general.type", "adapter") && !gguf_writer_set_str(w, "adapter.type", "lora") &&
             !gguf_writer_set_f32(w, "adapter.lora.alpha", 8.0f);
    for (int l = 0; ok && l < LR_L; l++)
        for (size_t i = 0; ok && i < sizeof mats / sizeof mats[0]; i++) {
            char nm[96];
            const int64_t ne_a[2] = {mats[i].n_in, LR_R}, ne_b[2] = {LR_R, mats[i].n_out};
            snprintf(nm, sizeof nm, "blk.%d.%s.weight.lora_a", l, mats[i].name);
            ok = !gguf_writer_add_tensor(w, nm, QT_F32, 2, ne_a, a);
            snprintf(nm, sizeof nm, "blk.%d.%s.weight.lora_b", l, mats[i].name);
            ok = ok && !gguf_writer_add_tensor(w, nm, QT_F32, 2, ne_b, b);
        }
    ok = ok && !gguf_writer_write_file(w, path);
    gguf_writer_free(w);
    return ok;
}

static void test_lora_planned_and_charged(void) {
    char base[600], ad[600];
    snprintf(base, sizeof base, "%s/lora_base.gguf", g_tmp);
    snprintf(ad, sizeof ad, "%s/lora.gguf", g_tmp);
    const rm_spec s = {.arch = "llama", .C = LR_C, .L = LR_L, .H = 8, .G = 4, .D = 64, .F = LR_F, .V = 300, .t_qko = QT_Q8_0,
                       .t_v = QT_Q8_0, .t_gu = QT_Q8_0, .t_down = QT_Q8_0, .t_embd = QT_Q8_0, .seed = 3};
    REQUIRE(model_write_random(&s, base, NULL) == PL_OK, "%s", pl_last_error());
    REQUIRE(write_adapter(ad), "cannot write the adapter: %s", pl_last_error());
    /* every matrix becomes an f32 copy */
    const uint64_t copies = (uint64_t)LR_L * 4 * (2 * LR_C * LR_C + 2 * LR_C * LR_GD + 3 * LR_C * LR_F);
    /* a child's peak first, while this process is small */
    const int n_ctx = 192;
    int64_t rss = 0, rss_packed = 0;
    if (access(g_cli, X_OK) == 0 && !getenv("PL_ASAN")) {
        rss = run_peak_rss_opt(base, n_ctx, ad, "--no-repack");
        rss_packed = run_peak_rss(base, n_ctx, ad);
    }
    pl_model *m = NULL;
    pl_model_params mp = pl_model_default_params();
    mp.budget_bytes = PL_BUDGET_NONE;
    mp.no_repack = 1; /* the file's layout: packing and merges are test_repack's */
    REQUIRE(pl_model_load(base, &mp, &m) == PL_OK, "%s", pl_last_error());
    pl_ctx_params cp = pl_ctx_default_params(), one = pl_ctx_default_params();
    cp.n_ctx = n_ctx, cp.n_threads = 1;
    one.n_ctx = 1, one.n_threads = 1;
    pl_plan p0, p1, base1;
    CHECK(pl_plan_model(m, &cp, &p0) == PL_OK && pl_plan_model(m, &one, &base1) == PL_OK, "%s", pl_last_error());
    const uint64_t w0 = mem_total_kind(MEM_WEIGHTS);
    CHECK(pl_model_apply_lora(m, ad, 1.0f) == PL_OK, "%s", pl_last_error());
    const uint64_t charged = mem_total_kind(MEM_WEIGHTS) - w0;
    CHECK(pl_plan_model(m, &cp, &p1) == PL_OK, "%s", pl_last_error());
    CHECK(charged == copies, "charged %.2f MiB for %.2f MiB of copies", mib((int64_t)charged), mib((int64_t)copies));
    CHECK(p1.total_bytes - p0.total_bytes == (int64_t)charged && p1.weights_copied - p0.weights_copied == (int64_t)charged,
          "plan grew by %.2f MiB, %.2f MiB charged", mib(p1.total_bytes - p0.total_bytes), mib((int64_t)charged));
    pl_ctx *c = NULL;
    CHECK(pl_ctx_new(m, &cp, &c) == PL_OK, "a context after the merge: %s", pl_last_error());
    pl_ctx_free(c);
    pl_model_free(m);
    if (rss > 0) {
        const int64_t diff = rss > p1.total_bytes ? rss - p1.total_bytes : p1.total_bytes - rss;
        const int64_t tol = p1.total_bytes / 20 > (8 << 20) ? p1.total_bytes / 20 : (8 << 20);
        printf("   run --lora: plan %.2f MiB (of it copies %.2f)  measured %.2f MiB  (%+.1f%%)\n", mib(p1.total_bytes),
               mib((int64_t)copies), mib(rss), 100.0 * (double)(rss - p1.total_bytes) / (double)p1.total_bytes);
        CHECK(diff <= tol, "plan %.2f MiB vs measured peak RSS %.2f MiB", mib(p1.total_bytes), mib(rss));
        /* packed at load (the default): the merge reads the packed copies,
         * so the dropped file pages stay out and the plan, which counts
         * them, is an upper bound (it was exceeded by the copies' size when
         * the merge read the file's rows) */
        printf("   run --lora, packed at load: measured %.2f MiB\n", mib(rss_packed));
        CHECK(rss_packed > 0 && rss_packed <= p1.total_bytes + tol / 4, "packed: plan %.2f MiB vs measured peak RSS %.2f MiB",
              mib(p1.total_bytes), mib(rss_packed));
    } else if (!getenv("PL_ASAN")) {
        CHECK(access(g_cli, X_OK) != 0, "pocketllm run --lora failed");
    }
    /* a budget that holds the base (at one token) but not the copies */
    mp.budget_bytes = (uint64_t)base1.total_bytes + copies / 2;
    REQUIRE(pl_model_load(base, &mp, &m) == PL_OK, "the base alone fits %.1f MiB: %s", mib((int64_t)mp.budget_bytes),
            pl_last_error());
    const uint64_t wb = mem_total_kind(MEM_WEIGHTS);
    CHECK(pl_model_apply_lora(m, ad, 1.0f) == PL_ERR_BUDGET, "an adapter over the budget was merged");
    const char *msg = pl_last_error();
    CHECK(strstr(msg, "f32 copies of 28 matrices (48.0 MiB)") && strstr(msg, "over") && strstr(msg, "budget"),
          "message: %s", msg);
    printf("   refused: %s\n", msg);
    CHECK(mem_total_kind(MEM_WEIGHTS) == wb, "a refused merge left %lld bytes charged", (long long)(mem_total_kind(MEM_WEIGHTS) - wb));
    pl_plan p2;
    CHECK(pl_plan_model(m, &one, &p2) == PL_OK && p2.total_bytes == base1.total_bytes, "a refused merge changed the plan");
    pl_model_free(m);
    /* room for the copies: merged */
    mp.budget_bytes = (uint64_t)base1.total_bytes + copies + (1u << 20);
    REQUIRE(pl_model_load(base, &mp, &m) == PL_OK, "%s", pl_last_error());
    CHECK(pl_model_apply_lora(m, ad, 1.0f) == PL_OK, "budget with room for the copies: %s", pl_last_error());
    pl_model_free(m);
    remove(base), remove(ad);
}

/* ------------------------------------------------------------ repacking */

/* A model loaded packed (models[0]) and with --no-repack (models[1]): the
 * plans and charges hold `want` bytes of packed copies (none without), each
 * run's peak (rss, measured by the CLI) matches its plan and packing does
 * not hold weights twice, and the logits of a prompt step (8 tokens) and a
 * decode step agree: close at the level in use (float order differs, and a
 * random model amplifies rounding: AVX2 and scalar row dots differ by
 * ~0.5 %), and equal bit for bit at the scalar level, whose packed kernels
 * sum as the reference dot does (so loading, slicing, page dropping and
 * lookups of a packed embedding lost nothing). */
static void repack_check(const char *path, int V, uint64_t want, const pl_ctx_params *cp, pl_model *models[2],
                         pl_plan p[2]) {
    int64_t rss[2] = {0, 0};
    if (access(g_cli, X_OK) == 0 && !getenv("PL_ASAN")) {
        rss[0] = run_peak_rss_opt(path, cp->n_ctx, NULL, NULL);
        rss[1] = run_peak_rss_opt(path, cp->n_ctx, NULL, "--no-repack");
    }
    for (int k = 0; k < 2; k++) {
        pl_model_params mp = pl_model_default_params();
        mp.budget_bytes = PL_BUDGET_NONE;
        mp.no_repack = k;
        const uint64_t w0 = mem_total_kind(MEM_WEIGHTS);
        pl_model *m = NULL;
        REQUIRE(pl_model_load(path, &mp, &m) == PL_OK, "%s", pl_last_error());
        const uint64_t charged = mem_total_kind(MEM_WEIGHTS) - w0;
        CHECK(pl_plan_model(m, cp, &p[k]) == PL_OK, "%s", pl_last_error());
        CHECK((uint64_t)p[k].weights_packed == (k ? 0 : want) && charged == (k ? 0 : want),
              "no_repack=%d: planned %.2f MiB packed, charged %.2f, want %.2f", k, mib(p[k].weights_packed),
              mib((int64_t)charged), mib((int64_t)(k ? 0 : want)));
        models[k] = m;
    }
    const kern_level best = kern_level_get();
    float *logits = malloc(sizeof(float) * 4 * (size_t)V); /* [model][step][V] */
    REQUIRE(logits, "out of memory");
    for (int level = 0; level < 2; level++) {
        if (level) kern_force(KERN_SCALAR);
        for (int k = 0; k < 2; k++) {
            pl_ctx *c = NULL;
            REQUIRE(pl_ctx_new(models[k], cp, &c) == PL_OK, "%s", pl_last_error());
            const pl_token toks[] = {1, 17, 42, 99, 7, 250, 3, 64}, next = 5;
            REQUIRE(pl_ctx_decode(c, toks, 8) == PL_OK, "%s", pl_last_error());
            memcpy(logits + (size_t)(2 * k) * V, pl_ctx_logits(c, -1), sizeof(float) * (size_t)V);
            REQUIRE(pl_ctx_decode(c, &next, 1) == PL_OK, "%s", pl_last_error());
            memcpy(logits + (size_t)(2 * k + 1) * V, pl_ctx_logits(c, -1), sizeof(float) * (size_t)V);
            pl_ctx_free(c);
        }
        for (int step = 0; step < 2; step++) {
            const float *a = logits + (size_t)step * V, *b = logits + (size_t)(2 + step) * V;
            double max_abs = 0, max_diff = 0;
            for (int i = 0; i < V; i++) {
                max_abs = fmax(max_abs, fabs(b[i]));
                max_diff = fmax(max_diff, fabs(a[i] - b[i]));
            }
            CHECK(max_abs > 0 && (level ? max_diff == 0 : max_diff <= 0.05 * max_abs),
                  "level %s step %d: packed logits differ by %g (max |logit| %g)", kern_level_name(), step, max_diff,
                  max_abs);
        }
    }
    free(logits);
    kern_force(best);
    if (rss[0] > 0 && rss[1] > 0) {
        printf("   repack: plan %.2f MiB (packed %.2f)  measured %.2f MiB; --no-repack: plan %.2f  measured %.2f MiB\n",
               mib(p[0].total_bytes), mib(p[0].weights_packed), mib(rss[0]), mib(p[1].total_bytes), mib(rss[1]));
        for (int k = 0; k < 2; k++) {
            const int64_t diff = rss[k] > p[k].total_bytes ? rss[k] - p[k].total_bytes : p[k].total_bytes - rss[k];
            CHECK(diff <= (3 << 20) || diff * 20 <= p[k].total_bytes, "no_repack=%d: plan off by %.2f MiB", k, mib(diff));
        }
        /* packing moves the weights, it does not hold them twice: the peaks
         * differ by at most a slice in flight (1 MiB) and page rounding */
        CHECK(rss[0] - rss[1] <= (2 << 20), "repacked peak %.2f MiB vs %.2f MiB", mib(rss[0]), mib(rss[1]));
    }
}

/* Q4_0 matrices packed at load (kern_pack): planned as anonymous copies that
 * replace their file pages, charged as such, measured so, and computing what
 * the file's rows compute (repack_check); a LoRA merge frees the copies of
 * the matrices it replaces. */
static void test_repack_planned_and_measured(void) {
    char path[600];
    snprintf(path, sizeof path, "%s/repack.gguf", g_tmp);
    enum { C = LR_C, L = LR_L, GD = LR_GD, F = LR_F, V = 320 }; /* write_adapter's shapes */
    const rm_spec s = {.arch = "llama", .C = C, .L = L, .H = 8, .G = 4, .D = 64, .F = F, .V = V, .t_qko = QT_Q4_0,
                       .t_v = QT_Q4_0, .t_gu = QT_Q4_0, .t_down = QT_Q4_0, .t_embd = QT_Q8_0, .untied = 1,
                       .t_out = QT_Q4_0, .seed = 11};
    REQUIRE(model_write_random(&s, path, NULL) == PL_OK, "%s", pl_last_error());
    const bool pays = kern_pack_pays(QT_Q4_0, C, C);
    uint64_t want = 0; /* every Q4_0 matrix: 7 per layer and the output */
    const int64_t shapes[][2] = {{C, C}, {C, GD}, {C, GD}, {C, C}, {C, F}, {C, F}, {F, C}};
    for (int l = 0; l < L; l++)
        for (int i = 0; i < 7; i++) want += mem_held(quant_row_size(QT_Q4_0, shapes[i][0]) * (size_t)shapes[i][1]);
    want += mem_held(quant_row_size(QT_Q4_0, C) * V);
    if (!pays) want = 0;
    pl_ctx_params cp = pl_ctx_default_params();
    cp.n_ctx = 128, cp.n_threads = 1;
    pl_plan p[2];
    pl_model *models[2] = {NULL, NULL};
    repack_check(path, V, want, &cp, models, p);
    /* merged matrices become f32 copies: their packed copies go (the
     * output's stays), in the charges and in the plan */
    char ad[600];
    snprintf(ad, sizeof ad, "%s/repack_lora.gguf", g_tmp);
    REQUIRE(write_adapter(ad), "cannot write the adapter: %s", pl_last_error());
    const uint64_t out_held = pays ? mem_held(quant_row_size(QT_Q4_0, C) * V) : 0;
    const uint64_t copies = (uint64_t)L * 4 * (2 * C * C + 2 * C * GD + 3 * C * F);
    const uint64_t w0 = mem_total_kind(MEM_WEIGHTS);
    CHECK(pl_model_apply_lora(models[0], ad, 1.0f) == PL_OK, "%s", pl_last_error());
    const int64_t delta = (int64_t)mem_total_kind(MEM_WEIGHTS) - (int64_t)w0;
    pl_plan pl;
    CHECK(pl_plan_model(models[0], &cp, &pl) == PL_OK, "%s", pl_last_error());
    CHECK(delta == (int64_t)copies - (int64_t)(want - out_held) && (uint64_t)pl.weights_packed == out_held,
          "after the merge: charged %+.2f MiB (want %+.2f), packed %.2f MiB planned (want %.2f)", mib(delta),
          mib((int64_t)copies - (int64_t)(want - out_held)), mib(pl.weights_packed), mib((int64_t)out_held));
    pl_ctx *c = NULL;
    CHECK(pl_ctx_new(models[0], &cp, &c) == PL_OK, "a context after the merge: %s", pl_last_error());
    pl_ctx_free(c);
    unlink(ad);
    pl_model_free(models[0]);
    pl_model_free(models[1]);
    /* the same resident total, the packed part moved from mapped to copied */
    const int64_t round = (int64_t)want - (pays ? (int64_t)(L * (2 * C * C + 2 * C * GD + 3 * C * F) + C * V) / 32 * 18 : 0);
    CHECK(p[0].total_bytes - p[1].total_bytes == round, "plans differ by %lld bytes, want %lld (page rounding)",
          (long long)(p[0].total_bytes - p[1].total_bytes), (long long)round);
    CHECK(p[0].weights_copied - p[1].weights_copied == (int64_t)want, "copied grew by %.2f MiB",
          mib(p[0].weights_copied - p[1].weights_copied));
    unlink(path);
}

/* A tied Q6_K embedding is packed as the output matrix, and the embedding
 * lookups read their rows from that copy (the file pages are dropped): the
 * Q6_K layers' and the embedding's copies planned and charged, one copy
 * shared by both uses, peaks against plans, logits as the file's rows give
 * them (repack_check). */
static void test_repack_tied_embedding(void) {
    char path[600];
    snprintf(path, sizeof path, "%s/repack_tied.gguf", g_tmp);
    enum { C = LR_C, L = 2, GD = LR_GD, F = LR_F, V = 320 };
    const rm_spec s = {.arch = "llama", .C = C, .L = L, .H = 8, .G = 4, .D = 64, .F = F, .V = V, .t_qko = QT_Q6_K,
                       .t_v = QT_Q6_K, .t_gu = QT_Q4_K, .t_down = QT_Q6_K, .t_embd = QT_Q6_K, .seed = 12};
    REQUIRE(model_write_random(&s, path, NULL) == PL_OK, "%s", pl_last_error());
    const struct { uint32_t type; int64_t n_in, n_out; } mats[] = {
        {QT_Q6_K, C, C}, {QT_Q6_K, C, GD}, {QT_Q6_K, C, GD}, {QT_Q6_K, C, C}, {QT_Q4_K, C, F}, {QT_Q4_K, C, F}, {QT_Q6_K, F, C}};
    uint64_t want = 0;
    for (int l = 0; l < L; l++)
        for (int i = 0; i < 7; i++)
            if (kern_pack_pays(mats[i].type, mats[i].n_in, mats[i].n_out))
                want += mem_held(quant_row_size(mats[i].type, mats[i].n_in) * (size_t)mats[i].n_out);
    const bool embd_pays = kern_pack_pays(QT_Q6_K, C, V);
    if (embd_pays) want += mem_held(quant_row_size(QT_Q6_K, C) * V);
    pl_ctx_params cp = pl_ctx_default_params();
    cp.n_ctx = 128, cp.n_threads = 1;
    pl_plan p[2];
    pl_model *models[2] = {NULL, NULL};
    repack_check(path, V, want, &cp, models, p);
    const pl_model *m = models[0];
    CHECK(m->output.data == m->tok_embd.data && m->tok_embd.packed == m->output.packed &&
              (m->output.packed != NULL) == embd_pays,
          "the tied embedding shares the output's copy (packs: %d)", embd_pays);
    pl_model_free(models[0]);
    pl_model_free(models[1]);
    unlink(path);
}

/* ------------------------------------------------------------ parsing, profiles */

static void test_parse_bytes(void) {
    static const struct { const char *s; uint64_t v; } ok[] = {
        {"3.5G", 3758096384ull}, {"512M", 536870912ull}, {"2GiB", 2147483648ull}, {"1e9", 1000000000ull},
        {"1500000", 1500000ull}, {"1.5GB", 1500000000ull}, {"800k", 819200ull}, {"64 MiB", 67108864ull},
        {"2T", 2199023255552ull}, {"10b", 10},
    };
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        uint64_t v = 0;
        CHECK(pl_parse_bytes(ok[i].s, &v) == PL_OK && v == ok[i].v, "'%s' -> %llu (%s)", ok[i].s,
              (unsigned long long)v, pl_last_error());
    }
    static const char *bad[] = {"", "-1", "abc", "12Q", "3.5GX", "1e400", "nan"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        uint64_t v;
        CHECK(pl_parse_bytes(bad[i], &v) == PL_ERR_INVALID_ARG, "'%s' accepted", bad[i]);
    }
}

static void test_device_profiles(void) {
    static const char *need[] = {"iphone-4gb", "iphone-6gb", "ipad-8gb", "android-8gb"};
    for (size_t i = 0; i < sizeof need / sizeof need[0]; i++)
        CHECK(pl_device_profile_find(need[i]) != NULL, "profile %s missing", need[i]);
    const pl_device_profile *ipad = pl_device_profile_find("ipad-8gb");
    REQUIRE(ipad, "ipad-8gb");
    CHECK(ipad->budget_bytes == 5400000000ull, "ipad-8gb working set is 5.4 GB, got %llu",
          (unsigned long long)ipad->budget_bytes);
    int n = 0;
    for (const pl_device_profile *p; (p = pl_device_profile_at(n)); n++) {
        CHECK(p->budget_bytes > 0 && p->budget_bytes < p->ram_bytes, "%s: budget must be below RAM", p->name);
        for (int j = 0; j < n; j++) CHECK(strcmp(pl_device_profile_at(j)->name, p->name), "duplicate %s", p->name);
        CHECK(p->note && *p->note, "%s has no note", p->name);
    }
    CHECK(n >= 4, "%d profiles", n);
    CHECK(pl_device_profile_at(-1) == NULL && pl_device_profile_find("nope") == NULL, "unknown names");
}

/* ------------------------------------------------------------ detection */

static void put_file(const char *root, const char *rel, const char *text) {
    char path[1024], dir[1024];
    snprintf(path, sizeof path, "%s/%s", root, rel);
    snprintf(dir, sizeof dir, "%s", path);
    for (char *s = dir + strlen(g_tmp) + 1; (s = strchr(s, '/')); s++) {
        *s = 0;
        mkdir(dir, 0755);
        *s = '/';
    }
    FILE *fp = fopen(path, "w");
    if (fp) {
        fputs(text, fp);
        fclose(fp);
    }
}

static void test_cgroup_detection_fixtures(void) {
    char root[600];
    /* v1: the leaf has no limit, its parent has 1 GiB */
    snprintf(root, sizeof root, "%s/cg1", g_tmp);
    put_file(root, "proc/self/cgroup", "5:devices:/x\n4:memory:/a/b\n0::/\n");
    put_file(root, "proc/self/mountinfo",
             "30 25 0:26 / /sys/fs/cgroup/cpu rw,relatime shared:9 - cgroup cgroup rw,cpu\n"
             "31 25 0:27 / /sys/fs/cgroup/memory rw,relatime shared:10 - cgroup cgroup rw,memory\n");
    put_file(root, "sys/fs/cgroup/memory/a/b/memory.limit_in_bytes", "9223372036854771712\n");
    put_file(root, "sys/fs/cgroup/memory/a/memory.limit_in_bytes", "1073741824\n");
    put_file(root, "sys/fs/cgroup/memory/memory.limit_in_bytes", "9223372036854771712\n");
    put_file(root, "proc/meminfo", "MemTotal:       16384000 kB\nMemAvailable:    8192000 kB\n");
    CHECK(plan_cgroup_limit(root) == 1073741824ull, "v1 ancestor limit: %llu", (unsigned long long)plan_cgroup_limit(root));
    pl_budget b;
    unsetenv("PL_BUDGET");
    REQUIRE(plan_budget_detect_at(root, &b) == PL_OK, "%s", pl_last_error());
    CHECK(b.phys_bytes == 16384000ull * 1024 && b.avail_bytes == 8192000ull * 1024, "meminfo");
    CHECK(b.bytes == 1073741824ull && !strcmp(b.source, "cgroup"), "budget %llu from %s", (unsigned long long)b.bytes,
          b.source);

    /* v2: "max" at the leaf, 512 MiB above; a limit smaller than RAM wins */
    snprintf(root, sizeof root, "%s/cg2", g_tmp);
    put_file(root, "proc/self/cgroup", "0::/user.slice/app.scope\n");
    put_file(root, "proc/self/mountinfo", "26 25 0:23 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n");
    put_file(root, "sys/fs/cgroup/user.slice/app.scope/memory.max", "max\n");
    put_file(root, "sys/fs/cgroup/user.slice/memory.max", "536870912\n");
    CHECK(plan_cgroup_limit(root) == 536870912ull, "v2 limit: %llu", (unsigned long long)plan_cgroup_limit(root));

    /* a namespaced v2 mount (container): the mount's root is our cgroup */
    snprintf(root, sizeof root, "%s/cg3", g_tmp);
    put_file(root, "proc/self/cgroup", "0::/\n");
    put_file(root, "proc/self/mountinfo", "40 30 0:30 /kubepods/pod1 /sys/fs/cgroup ro - cgroup2 cgroup2 rw\n");
    put_file(root, "sys/fs/cgroup/memory.max", "268435456\n");
    CHECK(plan_cgroup_limit(root) == 268435456ull, "namespaced v2: %llu", (unsigned long long)plan_cgroup_limit(root));

    /* no memory hierarchy at all */
    snprintf(root, sizeof root, "%s/cg4", g_tmp);
    put_file(root, "proc/self/cgroup", "4:cpu:/\n");
    put_file(root, "proc/self/mountinfo", "");
    CHECK(plan_cgroup_limit(root) == 0, "no memory controller");

    /* the user's override replaces RAM and cgroup figures */
    setenv("PL_BUDGET", "3.5G", 1);
    REQUIRE(plan_budget_detect_at(root, &b) == PL_OK, "%s", pl_last_error());
    CHECK(b.bytes == 3758096384ull && !strcmp(b.source, "PL_BUDGET"), "override: %llu %s", (unsigned long long)b.bytes,
          b.source);
    setenv("PL_BUDGET", "lots", 1);
    CHECK(plan_budget_detect_at(root, &b) == PL_ERR_INVALID_ARG, "bad PL_BUDGET accepted");
    unsetenv("PL_BUDGET");
}

static uint64_t status_kb(const char *key) {
    FILE *fp = fopen("/proc/self/status", "r");
    char line[256];
    uint64_t v = 0;
    while (fp && fgets(line, sizeof line, fp))
        if (!strncmp(line, key, strlen(key))) v = strtoull(line + strlen(key) + 1, NULL, 10) * 1024;
    if (fp) fclose(fp);
    return v;
}

/* ------------------------------------------------------------ allocator */

static void test_allocator_limits_and_cache(void) {
    mem_account a = {.name = "test", .limit = 4u << 20};
    pl_memory_stats s0, s1, d;
    pl_memory_snapshot(&s0);
    void *p = NULL, *q = NULL;
    REQUIRE(mem_alloc(&a, MEM_KV, 3u << 20, true, "three", &p) == PL_OK, "%s", pl_last_error());
    CHECK(atomic_load(&a.used) == 3u << 20, "charged %llu", (unsigned long long)atomic_load(&a.used));
    pl_status st = mem_alloc(&a, MEM_SCRATCH, 2u << 20, false, "two more", &q);
    CHECK(st == PL_ERR_BUDGET && q == NULL, "over the limit: %s", pl_status_name(st));
    CHECK(strstr(pl_last_error(), "two more") && strstr(pl_last_error(), "budget"), "message: %s", pl_last_error());
    pl_memory_snapshot(&s1);
    pl_memory_delta(&s0, &s1, &d);
    CHECK(d.kv_bytes == 3 << 20 && d.scratch_bytes == 0, "snapshot delta kv %lld scratch %lld", (long long)d.kv_bytes,
          (long long)d.scratch_bytes);
    CHECK(d.rss_bytes >= 3 << 20, "prefaulted pages are resident: RSS grew by %lld", (long long)d.rss_bytes);
    unsigned char *b = p;
    int zero = 1;
    for (size_t i = 0; i < (3u << 20); i += 4096) zero &= b[i] == 0;
    CHECK(zero, "zeroed");
    memset(p, 0xab, 3u << 20);
    /* the reuse cache: the next block of that size is the same memory, zeroed */
    pl_memory_set_cache_limit(8u << 20);
    mem_free(&a, MEM_KV, p, 3u << 20);
    CHECK(atomic_load(&a.used) == 0 && atomic_load(&a.peak) == 3u << 20, "used %llu peak %llu",
          (unsigned long long)atomic_load(&a.used), (unsigned long long)atomic_load(&a.peak));
    pl_memory_snapshot(&s1);
    CHECK(s1.cache_bytes == 3 << 20, "cached %lld", (long long)s1.cache_bytes);
    REQUIRE(mem_alloc(&a, MEM_KV, 3u << 20, true, "again", &q) == PL_OK, "%s", pl_last_error());
    CHECK(q == p, "a cached block is reused");
    b = q;
    zero = 1;
    for (size_t i = 0; i < (3u << 20); i++) zero &= b[i] == 0;
    CHECK(zero, "a reused block is zeroed");
    mem_free(&a, MEM_KV, q, 3u << 20);
    pl_memory_clear_cache();
    pl_memory_snapshot(&s1);
    CHECK(s1.cache_bytes == 0, "cleared");
    pl_memory_set_cache_limit(0);
    /* small blocks come from the heap, 64-byte aligned */
    REQUIRE(mem_alloc(&a, MEM_OTHER, 100, false, "small", &p) == PL_OK, "%s", pl_last_error());
    CHECK(((uintptr_t)p & 63) == 0 && atomic_load(&a.used) == 128, "aligned, charged as 128");
    mem_free(&a, MEM_OTHER, p, 100);
    CHECK(atomic_load(&a.used) == 0, "all returned");
}

/* ------------------------------------------------------------ plans and budgets */

static void test_ctx_blocks_are_the_plan(void) {
    const char *path = shared_path("models/kjv-llama-q8_0.gguf");
    if (!path) SKIP("kjv-llama-q8_0.gguf not in ../shared");
    pl_model *m = NULL;
    pl_ctx *c = NULL;
    REQUIRE(pl_model_load(path, NULL, &m) == PL_OK, "%s", pl_last_error());
    pl_ctx_params cp = pl_ctx_default_params();
    cp.n_ctx = 300;
    cp.n_threads = 2;
    pl_plan p;
    REQUIRE(pl_plan_model(m, &cp, &p) == PL_OK, "%s", pl_last_error());
    pl_memory_stats s0, s1, d;
    pl_memory_snapshot(&s0);
    REQUIRE(pl_ctx_new(m, &cp, &c) == PL_OK, "%s", pl_last_error());
    pl_memory_snapshot(&s1);
    pl_memory_delta(&s0, &s1, &d);
    CHECK(d.kv_bytes == p.kv_bytes && d.scratch_bytes == p.scratch_bytes, "allocated kv %lld scratch %lld, plan %lld %lld",
          (long long)d.kv_bytes, (long long)d.scratch_bytes, (long long)p.kv_bytes, (long long)p.scratch_bytes);
    const int64_t kv = kv_bytes_from_file(path, 300, PL_KV_F16); /* from the file's own numbers */
    REQUIRE(kv > 0, "%s: no KV numbers", path);
    CHECK(p.kv_bytes == (int64_t)mem_held((size_t)kv) && p.kv_bytes_per_token * 300 == kv, "kv %lld vs %lld",
          (long long)p.kv_bytes, (long long)kv);
    CHECK(d.rss_bytes >= (p.kv_bytes + p.scratch_bytes) * 9 / 10, "KV and scratch are touched up front: RSS +%lld",
          (long long)d.rss_bytes);
    /* decoding allocates nothing */
    pl_token toks[32];
    for (int i = 0; i < 32; i++) toks[i] = 1 + i * 7;
    pl_memory_snapshot(&s0);
    REQUIRE(pl_ctx_decode(c, toks, 32) == PL_OK, "%s", pl_last_error());
    for (int i = 0; i < 16; i++) REQUIRE(pl_ctx_decode(c, toks + i, 1) == PL_OK, "%s", pl_last_error());
    pl_memory_snapshot(&s1);
    CHECK(s1.active_bytes == s0.active_bytes && s1.peak_bytes == s0.peak_bytes, "accounted memory moved while decoding");
    pl_ctx_free(c);
    pl_memory_snapshot(&s1);
    CHECK(s1.kv_bytes == s0.kv_bytes - p.kv_bytes, "KV returned");
    pl_model_free(m);
}

#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 33))
static int64_t heap_in_use(void) {
    struct mallinfo2 mi = mallinfo2();
    return (int64_t)(mi.uordblks + mi.hblkhd);
}

static void test_tokenizer_estimate_vs_mallinfo(void) {
    static const char *files[] = {"models/kjv-llama-q4_0.gguf", "models/kjv-qwen2-q4_0.gguf", "models/stories260K.gguf",
                                  "tokenizer/ggml-vocab-gpt-2.gguf", "tokenizer/ggml-vocab-llama-spm.gguf",
                                  "tokenizer/ggml-vocab-deepseek-llm.gguf"};
    int n = 0;
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        const char *path = shared_path(files[i]);
        if (!path) continue;
        const int64_t h0 = heap_in_use();
        gguf_file *g;
        tokenizer *t;
        REQUIRE(gguf_open(path, &g) == PL_OK, "%s", pl_last_error());
        REQUIRE(tok_load(g, &t) == PL_OK, "%s", pl_last_error());
        const int64_t used = heap_in_use() - h0;
        if (used <= 0) { /* a sanitizer's allocator: glibc's figures do not move */
            tok_free(t);
            gguf_close(g);
            SKIP("glibc heap figures do not see this allocator");
        }
        const int64_t est = (int64_t)plan_tok_bytes(g);
        tok_free(t);
        gguf_close(g);
        printf("   %-36s tokenizer+tables estimate %7.2f MiB, glibc %7.2f MiB\n", files[i], mib(est), mib(used));
        const int64_t diff = est > used ? est - used : used - est;
        CHECK(diff <= used / 5 + 65536, "%s: estimate %lld vs measured %lld", path, (long long)est, (long long)used);
        n++;
    }
    if (!n) SKIP("no shared models");
}
#endif

static void test_verdicts_and_max_ctx(void) {
    const char *path = shared_path("models/kjv-llama-f16.gguf");
    if (!path) SKIP("kjv-llama-f16.gguf not in ../shared");
    pl_model_params mp = pl_model_default_params();
    pl_ctx_params cp = pl_ctx_default_params();
    cp.n_ctx = 2048;
    cp.n_threads = 2;
    pl_plan big, p;
    mp.budget_bytes = 4ull << 30;
    REQUIRE(pl_plan_file(path, &mp, &cp, &big) == PL_OK, "%s", pl_last_error());
    CHECK(big.fit == PL_FIT_YES && big.max_ctx >= 2048 && big.over_bytes == 0, "4 GiB: fit %d max %d", big.fit,
          big.max_ctx);
    CHECK(big.total_bytes == big.weights_resident + big.kv_bytes + big.scratch_bytes + big.tokenizer_bytes +
                                 big.overhead_bytes,
          "the total is the sum of its parts");
    /* a budget between the 256- and 2048-token plans: a smaller context fits */
    cp.n_ctx = 256;
    pl_plan small;
    REQUIRE(pl_plan_file(path, &mp, &cp, &small) == PL_OK, "%s", pl_last_error());
    mp.budget_bytes = (uint64_t)(small.total_bytes + big.total_bytes) / 2;
    cp.n_ctx = 2048;
    REQUIRE(pl_plan_file(path, &mp, &cp, &p) == PL_OK, "%s", pl_last_error());
    CHECK(p.fit == PL_FIT_SMALLER_CTX && p.max_ctx > 256 && p.max_ctx < 2048, "fit %d max_ctx %d", p.fit, p.max_ctx);
    CHECK(p.over_bytes == p.total_bytes - (int64_t)mp.budget_bytes, "over %lld", (long long)p.over_bytes);
    CHECK(p.limit == PL_LIMIT_BUDGET && p.limit_need_bytes == p.total_bytes &&
              p.limit_room_bytes == (int64_t)mp.budget_bytes && big.limit == PL_LIMIT_NONE,
          "binding limit %d (need %lld, room %lld), %d when it fits", p.limit, (long long)p.limit_need_bytes,
          (long long)p.limit_room_bytes, big.limit);
    /* the engine agrees: max_ctx is made, max_ctx + 1 is refused */
    const int max_ctx = p.max_ctx;
    pl_model *m = NULL;
    pl_ctx *c = NULL;
    REQUIRE(pl_model_load(path, &mp, &m) == PL_OK, "%s", pl_last_error());
    cp.n_ctx = max_ctx + 1;
    pl_status st = pl_ctx_new(m, &cp, &c);
    CHECK(st == PL_ERR_BUDGET && c == NULL, "max_ctx + 1: %s", pl_status_name(st));
    CHECK(strstr(pl_last_error(), "largest context that fits"), "message: %s", pl_last_error());
    cp.n_ctx = max_ctx;
    CHECK(pl_ctx_new(m, &cp, &c) == PL_OK, "max_ctx %d: %s", max_ctx, pl_last_error());
    /* a second context does not fit beside the first: the account refuses it */
    pl_ctx *c2 = NULL;
    st = pl_ctx_new(m, &cp, &c2);
    CHECK(st == PL_ERR_BUDGET && !c2, "second context: %s", pl_status_name(st));
    pl_ctx_free(c);
    pl_model_free(m);
    /* nothing fits: refused at load, before the weights are touched */
    mp.budget_bytes = 16u << 20;
    REQUIRE(pl_plan_file(path, &mp, &cp, &p) == PL_OK, "%s", pl_last_error());
    CHECK(p.fit == PL_FIT_NO && p.max_ctx == 0 && p.over_bytes > 0, "16 MiB: fit %d", p.fit);
    pl_memory_stats s0, s1;
    pl_memory_snapshot(&s0);
    st = pl_model_load(path, &mp, &m);
    pl_memory_snapshot(&s1);
    CHECK(st == PL_ERR_BUDGET && m == NULL, "load under 16 MiB: %s", pl_status_name(st));
    CHECK(strstr(pl_last_error(), "budget") && strstr(pl_last_error(), "over"), "message: %s", pl_last_error());
    CHECK(s1.major_faults == s0.major_faults && s1.active_bytes == s0.active_bytes, "nothing held after a refusal");
    /* unchecked */
    mp.budget_bytes = PL_BUDGET_NONE;
    REQUIRE(pl_plan_file(path, &mp, &cp, &p) == PL_OK, "%s", pl_last_error());
    CHECK(p.fit == PL_FIT_YES && p.budget_bytes == 0, "PL_BUDGET_NONE");
}

static void test_kv_q8_0_plan(void) {
    const char *path = shared_path("models/kjv-llama-q8_0.gguf");
    if (!path) SKIP("kjv-llama-q8_0.gguf not in ../shared");
    pl_ctx_params cp = pl_ctx_default_params();
    cp.n_ctx = 1024;
    pl_plan f16, q8;
    REQUIRE(pl_plan_file(path, NULL, &cp, &f16) == PL_OK, "%s", pl_last_error());
    cp.kv_type = PL_KV_Q8_0;
    REQUIRE(pl_plan_file(path, NULL, &cp, &q8) == PL_OK, "%s", pl_last_error());
    /* q8_0: 34 bytes per 32 values against 64 for f16 */
    CHECK(q8.kv_bytes_per_token * 64 == f16.kv_bytes_per_token * 34, "q8_0 %lld vs f16 %lld per token",
          (long long)q8.kv_bytes_per_token, (long long)f16.kv_bytes_per_token);
    cp.kv_type = 7;
    CHECK(pl_plan_file(path, NULL, &cp, &q8) == PL_ERR_INVALID_ARG, "unknown KV type");
    /* a head size that is not a multiple of 32 cannot hold q8_0 blocks: refused
     * by the plan and by context creation (stories260K: 64 / 8 heads = 8) */
    const char *small = shared_path("models/stories260K.gguf");
    if (!small) SKIP("stories260K.gguf not in ../shared");
    cp.kv_type = PL_KV_Q8_0;
    CHECK(pl_plan_file(small, NULL, &cp, &q8) == PL_ERR_UNSUPPORTED, "q8_0 plan for head size 8");
    pl_model *m = NULL;
    pl_ctx *c = NULL;
    REQUIRE(pl_model_load(small, NULL, &m) == PL_OK, "%s", pl_last_error());
    CHECK(pl_ctx_new(m, &cp, &c) == PL_ERR_UNSUPPORTED && !c, "q8_0 context for head size 8");
    pl_model_free(m);
}

/* ------------------------------------------------------------ limits in children */

typedef int (*child_fn)(const void *arg);

/* Run fn in a child; its exit code, or 1000 + signal when killed. An optional
 * hook runs in the parent between fork and letting the child go. */
static int in_child(child_fn fn, const void *arg, int (*hook)(pid_t, void *), void *hook_arg) {
    int pipefd[2];
    if (pipe(pipefd) != 0) return -1;
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0) return -1;
    if (pid == 0) {
        close(pipefd[1]);
        char go;
        if (read(pipefd[0], &go, 1) != 1 || go != 'g') _exit(99);
        _exit(fn(arg));
    }
    close(pipefd[0]);
    int ok = hook ? hook(pid, hook_arg) : 1;
    if (write(pipefd[1], ok ? "g" : "x", 1) != 1) ok = 0;
    close(pipefd[1]);
    int status;
    if (waitpid(pid, &status, 0) != pid) return -1;
    if (WIFSIGNALED(status)) return 1000 + WTERMSIG(status);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

typedef struct limit_case {
    const char *path;
    int resource;      /* RLIMIT_AS / RLIMIT_DATA, or -1: leave the rlimits alone */
    uint64_t extra;    /* limit = what is in use now + extra */
    int n_gen;         /* tokens to generate when the model loads */
    int n_ctx;
} limit_case;

/* Where a child writes the limit it set and its error message (for the
 * parent to check the message names that limit). */
static char g_child_msg[600];

/* Exit codes: 0 loaded and generated, 10 clean PL_ERR_BUDGET, 20 + status otherwise. */
static int child_load(const void *arg) {
    const limit_case *lc = arg;
    uint64_t set = 0;
    if (lc->resource >= 0) {
        const uint64_t used = status_kb(lc->resource == RLIMIT_AS ? "VmSize:" : "VmData:");
        struct rlimit rl = {.rlim_cur = used + lc->extra, .rlim_max = RLIM_INFINITY};
        if (setrlimit(lc->resource, &rl) != 0) return 98;
        set = rl.rlim_cur;
    }
    pl_model *m = NULL;
    pl_ctx *c = NULL;
    pl_status st = pl_model_load(lc->path, NULL, &m);
    if (st == PL_OK) {
        pl_ctx_params cp = pl_ctx_default_params();
        cp.n_ctx = lc->n_ctx;
        cp.n_threads = 2;
        st = pl_ctx_new(m, &cp, &c);
    }
    if (st == PL_OK) {
        pl_complete_params p = pl_complete_default_params();
        pl_token bos = pl_model_bos(m);
        p.prompt_tokens = &bos;
        p.n_prompt_tokens = 1;
        p.n_predict = lc->n_gen;
        p.ignore_eos = 1;
        p.sampling.temp = 0;
        st = pl_complete(c, &p, NULL, NULL, NULL);
    }
    if (st) fprintf(stderr, "   child: %s: %s\n", pl_status_name(st), pl_last_error());
    FILE *fp = g_child_msg[0] ? fopen(g_child_msg, "w") : NULL;
    if (fp) {
        fprintf(fp, "%llu\n%s\n", (unsigned long long)set, st ? pl_last_error() : "");
        fclose(fp);
    }
    pl_ctx_free(c);
    pl_model_free(m);
    return st == PL_OK ? 0 : st == PL_ERR_BUDGET ? 10 : 20 + (int)st;
}

static void test_rlimit_as_smaller_than_model(void) {
    const char *path = shared_path("models/kjv-llama-f16.gguf");
    if (!path) SKIP("kjv-llama-f16.gguf not in ../shared");
    if (getenv("PL_ASAN")) SKIP("AddressSanitizer reserves terabytes of address space");
    pl_ctx_params cp = pl_ctx_default_params();
    cp.n_ctx = 256;
    cp.n_threads = 2;
    pl_model_params mp = pl_model_default_params();
    mp.budget_bytes = PL_BUDGET_NONE;
    pl_plan p;
    REQUIRE(pl_plan_file(path, &mp, &cp, &p) == PL_OK, "%s", pl_last_error());
    /* half the file: the mapping alone cannot fit */
    limit_case lc = {path, RLIMIT_AS, (uint64_t)p.file_bytes / 2, 16, 256};
    int rc = in_child(child_load, &lc, NULL, NULL);
    CHECK(rc == 10, "RLIMIT_AS of half the model: child exit %d (10 = clean PL_ERR_BUDGET)", rc);
    /* the plan's address space plus slack: loads and generates inside it */
    lc.extra = (uint64_t)p.address_bytes + (16u << 20);
    rc = in_child(child_load, &lc, NULL, NULL);
    CHECK(rc == 0, "RLIMIT_AS of the plan (%.1f MiB): child exit %d", mib(p.address_bytes), rc);
    /* RLIMIT_DATA below the KV cache and scratch: the message names it (not
     * the RAM budget) with the figures the excess comes from */
    lc.resource = RLIMIT_DATA;
    lc.extra = 2u << 20;
    snprintf(g_child_msg, sizeof g_child_msg, "%s/child_msg.txt", g_tmp);
    rc = in_child(child_load, &lc, NULL, NULL);
    CHECK(rc == 10, "RLIMIT_DATA of 2 MiB: child exit %d", rc);
    char msg[2048] = "";
    unsigned long long set = 0;
    FILE *fp = fopen(g_child_msg, "r");
    if (fp) {
        if (fscanf(fp, "%llu\n", &set) != 1) set = 0;
        size_t n = fread(msg, 1, sizeof msg - 1, fp);
        msg[n] = 0;
        fclose(fp);
    }
    g_child_msg[0] = 0;
    const char *at = strstr(msg, "RLIMIT_DATA is ");
    double lim = 0, room = 0, need = 0, over = -1;
    CHECK(at && sscanf(at, "RLIMIT_DATA is %lf MiB and leaves %lf MiB for the %lf MiB of data segment it needs: %lf MiB over",
                       &lim, &room, &need, &over) == 4,
          "message does not name RLIMIT_DATA with its figures: %s", msg);
    CHECK(!strstr(msg, "the budget is"), "message names the RAM budget: %s", msg);
    CHECK(fabs(lim - (double)set / 1048576.0) < 0.06, "RLIMIT_DATA %.1f MiB in the message, %.1f MiB set", lim,
          (double)set / 1048576.0);
    CHECK(room > 0 && room < 2.1 && fabs(need - room - over) < 0.15, "over %.1f is not need %.1f - room %.1f", over, need,
          room);
}

/* The binding limit of a plan is the one passed by most, named by kind. */
static void test_binding_limit(void) {
    const char *path = shared_path("models/kjv-llama-q8_0.gguf");
    if (!path) SKIP("kjv-llama-q8_0.gguf not in ../shared");
    gguf_file *f = NULL;
    REQUIRE(gguf_open(path, &f) == PL_OK, "%s", pl_last_error());
    plan_model pm;
    if (plan_describe(f, &pm) != PL_OK) {
        gguf_close(f);
        REQUIRE(0, "%s", pl_last_error());
    }
    pl_ctx_params cp = pl_ctx_default_params();
    cp.n_ctx = 256;
    cp.n_threads = 2;
    plan_opts o;
    plan_opts_from_params(&pm, NULL, &cp, &o);
    pl_plan p;
    plan_limits lim = {.rss = 64ull << 30};
    REQUIRE(plan_compute(&pm, &o, &lim, &p) == PL_OK && p.fit == PL_FIT_YES && p.limit == PL_LIMIT_NONE, "fits");
    const int64_t total = p.total_bytes, address = p.address_bytes;
    char text[200];
    CHECK(!*pl_plan_limit_text(&p, text, sizeof text), "text for a plan that fits: %s", text);
    /* the data limit 1 MiB short of what the data segment needs, RAM plenty */
    plan_limits d = lim;
    d.data = 4u << 20, d.data_set = 512u << 20;
    REQUIRE(plan_compute(&pm, &o, &d, &p) == PL_OK, "%s", pl_last_error());
    CHECK(p.fit != PL_FIT_YES && p.limit == PL_LIMIT_DATA && p.limit_room_bytes == (int64_t)d.data &&
              p.limit_set_bytes == (int64_t)d.data_set && p.over_bytes == p.limit_need_bytes - p.limit_room_bytes,
          "data: limit %d need %lld room %lld over %lld", p.limit, (long long)p.limit_need_bytes,
          (long long)p.limit_room_bytes, (long long)p.over_bytes);
    pl_plan_limit_text(&p, text, sizeof text);
    CHECK(strstr(text, "RLIMIT_DATA is 512.0 MiB and leaves 4.0 MiB") != NULL, "text: %s", text);
    /* RAM short by more than the data limit: the budget binds */
    d.rss = (uint64_t)total - (2u << 20);
    d.data = p.limit_need_bytes - (1u << 20);
    REQUIRE(plan_compute(&pm, &o, &d, &p) == PL_OK, "%s", pl_last_error());
    CHECK(p.limit == PL_LIMIT_BUDGET && p.over_bytes == total - (int64_t)d.rss, "budget: limit %d over %lld", p.limit,
          (long long)p.over_bytes);
    /* the address space */
    plan_limits a = lim;
    a.as = (uint64_t)address - (3u << 20), a.as_set = 1ull << 30;
    REQUIRE(plan_compute(&pm, &o, &a, &p) == PL_OK, "%s", pl_last_error());
    CHECK(p.limit == PL_LIMIT_AS && p.limit_need_bytes == address && p.over_bytes == 3 << 20, "as: limit %d over %lld",
          p.limit, (long long)p.over_bytes);
    pl_plan_limit_text(&p, text, sizeof text);
    CHECK(strstr(text, "RLIMIT_AS is 1024.0 MiB") && strstr(text, "of address space it needs"), "text: %s", text);
    plan_model_clear(&pm);
    gguf_close(f);
}

/* A memory cgroup of our own (v1 under ours, or v2 with the memory controller). */
static char g_cg[600];

static int cg_write(const char *file, const char *text) {
    char path[700];
    snprintf(path, sizeof path, "%s/%s", g_cg, file);
    FILE *fp = fopen(path, "w");
    if (!fp) return 0;
    int ok = fputs(text, fp) >= 0;
    return fclose(fp) == 0 && ok;
}

static uint64_t cg_read(const char *file) {
    char path[700], buf[64] = "";
    snprintf(path, sizeof path, "%s/%s", g_cg, file);
    FILE *fp = fopen(path, "r");
    if (!fp) return 0;
    if (!fgets(buf, sizeof buf, fp)) buf[0] = 0;
    fclose(fp);
    return strtoull(buf, NULL, 10);
}

/* Where our memory cgroup lives (v1 memory hierarchy at /sys/fs/cgroup/memory). */
static int cg_create(uint64_t limit, const char **why) {
    FILE *fp = fopen("/proc/self/cgroup", "r");
    char line[512], base[600] = "";
    while (fp && fgets(line, sizeof line, fp)) {
        line[strcspn(line, "\n")] = 0;
        char *c1 = strchr(line, ':'), *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
        if (c2 && !strncmp(c1 + 1, "memory", 6)) snprintf(base, sizeof base, "/sys/fs/cgroup/memory%s", c2 + 1);
    }
    if (fp) fclose(fp);
    if (!base[0]) {
        *why = "no cgroup v1 memory hierarchy for this process (a v2-only host needs delegation)";
        return 0;
    }
    snprintf(g_cg, sizeof g_cg, "%s/pl_test_plan_%d", strcmp(base, "/sys/fs/cgroup/memory/") ? base : "/sys/fs/cgroup/memory",
             (int)getpid());
    if (mkdir(g_cg, 0755) != 0 && errno != EEXIST) {
        *why = "cannot create a memory cgroup here (not root, or a read-only cgroupfs)";
        return 0;
    }
    char v[32];
    snprintf(v, sizeof v, "%llu", (unsigned long long)limit);
    if (!cg_write("memory.limit_in_bytes", v)) {
        rmdir(g_cg);
        *why = "cannot set memory.limit_in_bytes";
        return 0;
    }
    return 1;
}

static int cg_enter(pid_t pid, void *arg) {
    (void)arg;
    char v[32];
    snprintf(v, sizeof v, "%d", (int)pid);
    return cg_write("cgroup.procs", v);
}

static void test_cgroup_smaller_than_model(void) {
    const char *path = shared_path("models/kjv-llama-f16.gguf");
    if (!path) SKIP("kjv-llama-f16.gguf not in ../shared");
    if (getenv("PL_ASAN")) SKIP("sanitizer shadow memory does not fit a small cgroup");
    pl_ctx_params cp = pl_ctx_default_params();
    cp.n_ctx = 256;
    cp.n_threads = 2;
    pl_model_params mp = pl_model_default_params();
    mp.budget_bytes = PL_BUDGET_NONE;
    pl_plan p;
    REQUIRE(pl_plan_file(path, &mp, &cp, &p) == PL_OK, "%s", pl_last_error());
    const char *why = NULL;
    /* 24 MiB: less than the weights */
    if (!cg_create(24u << 20, &why)) SKIP("cgroup variant: %s", why);
    limit_case lc = {path, -1, 0, 32, 256};
    int rc = in_child(child_load, &lc, cg_enter, NULL);
    CHECK(rc == 10, "cgroup of 24 MiB: child exit %d (10 = clean PL_ERR_BUDGET, 1009 = OOM kill)", rc);
    rmdir(g_cg);
    /* the plan plus 16 MiB for what the forked test process brings: runs inside */
    const uint64_t limit = (uint64_t)p.total_bytes + (16u << 20);
    REQUIRE(cg_create(limit, &why), "%s", why);
    rc = in_child(child_load, &lc, cg_enter, NULL);
    const uint64_t peak = cg_read("memory.max_usage_in_bytes");
    CHECK(rc == 0, "cgroup of %.1f MiB (plan %.1f): child exit %d", mib((int64_t)limit), mib(p.total_bytes), rc);
    printf("   cgroup limit %.1f MiB, peak usage %.1f MiB, plan %.1f MiB\n", mib((int64_t)limit), mib((int64_t)peak),
           mib(p.total_bytes));
    CHECK(peak > 0 && peak <= limit, "peak %llu", (unsigned long long)peak);
    rmdir(g_cg);
}

int main(int argc, char **argv) {
    (void)argc;
    /* build/tests/test_plan -> build/pocketllm */
    snprintf(g_cli, sizeof g_cli, "%s", argv[0]);
    char *slash = strrchr(g_cli, '/');
    if (slash) {
        *slash = 0;
        slash = strrchr(g_cli, '/');
    }
    if (slash) snprintf(slash + 1, sizeof g_cli - (size_t)(slash + 1 - g_cli), "pocketllm");
    else snprintf(g_cli, sizeof g_cli, "build/pocketllm");
    snprintf(g_tmp, sizeof g_tmp, "%s/pl_test_plan_XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    if (!mkdtemp(g_tmp)) {
        perror("mkdtemp");
        return 1;
    }
    RUN(test_plan_matches_measured_rss);
    RUN(test_lora_planned_and_charged);
    RUN(test_repack_planned_and_measured);
    RUN(test_repack_tied_embedding);
    RUN(test_parse_bytes);
    RUN(test_device_profiles);
    RUN(test_cgroup_detection_fixtures);
    RUN(test_allocator_limits_and_cache);
    RUN(test_ctx_blocks_are_the_plan);
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 33))
    RUN(test_tokenizer_estimate_vs_mallinfo);
#endif
    RUN(test_verdicts_and_max_ctx);
    RUN(test_kv_q8_0_plan);
    RUN(test_rlimit_as_smaller_than_model);
    RUN(test_binding_limit);
    RUN(test_cgroup_smaller_than_model);
    char cmd[700];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_tmp);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", g_tmp);
    TEST_END();
}
