/*
 * bench_gpu: CUDA backend figures on a 1B-parameter llama (dim 2048, 16
 * layers, 32 heads, 8 KV heads, FFN 8192, vocab 32000, tied embedding, Q4_0
 * by default) made of random weights, or on --model FILE. Prints the device's
 * copy bandwidth (bytes read + written by a large device-to-device copy),
 * prompt processing (tokens/s of --prompt-token batches) and decode (tokens/s
 * of single-token steps, graph replay and, for comparison, eager launches),
 * with the weight bytes a decode step reads turned into GB/s and a share of
 * the copy bandwidth. Figures only, nothing asserted; without CUDA it says so
 * and exits 0. --reference RECIPE writes the model as F16 and quantizes it
 * with that recipe (Q4_0, Q8_0, Q4_K_M, ...) exactly as llama-quantize would
 * (`pocketllm quantize --reference`), so llama.cpp can be run on the same
 * file (bench/run_gpu_llama.sh); --type writes the matrices of that type
 * directly (the embedding too).
 *   bench_gpu [--model FILE] [--type q4_0|q8_0|q4_k|q6_k|f16 | --reference RECIPE]
 *             [--prompt N] [--gen N] [--ctx N] [--reps N] [--out FILE]
 */
#include "gpu/gpu.h"
#include "model/quantize_model.h"
#include "pocketllm.h"
#include "quant/quant_recipe.h"
#include "../tests/random_model.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static double median(double *v, int n) {
    for (int i = 1; i < n; i++)
        for (int j = i; j > 0 && v[j] < v[j - 1]; j--) {
            const double t = v[j];
            v[j] = v[j - 1], v[j - 1] = t;
        }
    return v[n / 2];
}

/* Median seconds per token of `gen` single-token steps (after a warm-up). */
static int bench_decode(pl_ctx *c, const pl_token *toks, int gen, int reps, double *s_per_tok) {
    double t[16];
    for (int r = 0; r < reps && r < 16; r++) {
        pl_ctx_truncate(c, 0);
        for (int i = 0; i < 4; i++)
            if (pl_ctx_decode(c, toks + i, 1)) return 0;
        const double t0 = pl_time_ms();
        for (int i = 0; i < gen; i++)
            if (pl_ctx_decode(c, toks + 4 + i, 1)) return 0;
        t[r] = (pl_time_ms() - t0) / 1e3 / gen;
    }
    *s_per_tok = median(t, reps < 16 ? reps : 16);
    return 1;
}

int main(int argc, char **argv) {
    const char *model_path = NULL, *out = "/tmp/pl-bench-gpu-1b.gguf", *type_name = "q4_0", *recipe = NULL;
    int n_prompt = 512, gen = 128, n_ctx = 1024, reps = 5;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--model") && v) model_path = v, i++;
        else if (!strcmp(a, "--type") && v) type_name = v, i++;
        else if (!strcmp(a, "--reference") && v) recipe = v, i++;
        else if (!strcmp(a, "--prompt") && v) n_prompt = atoi(v), i++;
        else if (!strcmp(a, "--gen") && v) gen = atoi(v), i++;
        else if (!strcmp(a, "--ctx") && v) n_ctx = atoi(v), i++;
        else if (!strcmp(a, "--reps") && v) reps = atoi(v), i++;
        else if (!strcmp(a, "--out") && v) out = v, i++;
        else {
            fprintf(stderr, "usage: bench_gpu [--model FILE] [--type T | --reference RECIPE] [--prompt N] [--gen N] [--ctx N] "
                            "[--reps N] [--out FILE]\n");
            return 2;
        }
    }
    if (!gdev_built()) {
        printf("bench_gpu: built without CUDA (make GPU=cuda); nothing to measure\n");
        return 0;
    }
    gdev *d = NULL;
    gdev_info info;
    if (gdev_open(&d, &info)) {
        printf("bench_gpu: %s; nothing to measure\n", pl_last_error());
        return 0;
    }
    double copy_gbps = 0;
    if (gdev_copy_bandwidth(d, (size_t)1 << 30, &copy_gbps)) fprintf(stderr, "copy bandwidth: %s\n", pl_last_error());
    gdev_close(d);
    printf("device: %s, %d SMs, %.1f GiB free; device-to-device copy: %.0f GB/s (read + write)\n", info.name, info.n_sm,
           (double)info.mem_free / (1 << 30), copy_gbps);
    if (!model_path) {
        const int t = quant_type_from_name(recipe ? "f16" : type_name);
        if (t < 0) {
            fprintf(stderr, "unknown type %s\n", type_name);
            return 2;
        }
        quant_model_params qp = quant_model_default_params();
        if (recipe && !(qp.recipe = quant_recipe_find(recipe))) {
            fprintf(stderr, "unknown recipe %s\n", recipe);
            return 2;
        }
        char f16_path[512];
        snprintf(f16_path, sizeof f16_path, "%s.f16", out);
        rm_spec s = {.arch = "llama", .C = 2048, .L = 16, .H = 32, .G = 8, .D = 64, .F = 8192, .V = 32000,
                     .t_qko = (uint32_t)t, .t_v = (uint32_t)t, .t_gu = (uint32_t)t, .t_down = (uint32_t)t,
                     .t_embd = (uint32_t)t, .raw = !recipe, .seed = 3};
        const double t0 = pl_time_ms();
        if (!rm_write(&s, recipe ? f16_path : out)) return 1;
        if (recipe) {
            qp.method = QM_REFERENCE;
            const pl_status st = quant_model_file(f16_path, out, &qp);
            remove(f16_path);
            if (st) {
                fprintf(stderr, "quantize: %s\n", pl_last_error());
                return 1;
            }
        }
        printf("wrote random 1B llama (%s%s) to %s in %.1f s\n", recipe ? recipe : type_name,
               recipe ? ", quantized from F16 as llama-quantize does" : "", out, (pl_time_ms() - t0) / 1e3);
        model_path = out;
    }
    pl_model *m = NULL;
    if (pl_model_load(model_path, NULL, &m)) {
        fprintf(stderr, "load: %s\n", pl_last_error());
        return 1;
    }
    const int V = pl_model_n_vocab(m);
    pl_token *toks = malloc(sizeof *toks * (size_t)(n_prompt + gen + 8));
    uint64_t rng = 9;
    for (int i = 0; i < n_prompt + gen + 8; i++) toks[i] = (pl_token)(3 + rm_next(&rng) % (uint64_t)(V - 3));
    pl_ctx_params cp = pl_ctx_default_params();
    cp.n_ctx = n_ctx > n_prompt + gen + 8 ? n_ctx : n_prompt + gen + 8;
    cp.n_batch = n_prompt;
    cp.device = PL_DEVICE_CUDA;
    pl_ctx *c = NULL;
    double t0 = pl_time_ms();
    if (pl_ctx_new(m, &cp, &c)) {
        fprintf(stderr, "context: %s\n", pl_last_error());
        return 1;
    }
    const gpu_plan *p = gpu_ctx_plan(c);
    const double step_mb = p->step_bytes / 1e6;
    printf("context: %.0f ms to plan and upload; GPU holds %.1f MiB (weights %.1f, KV %.1f, activations %.1f); a "
           "decode step reads %.1f MB of weights\n",
           pl_time_ms() - t0, p->total_bytes / 1048576.0, p->weight_bytes / 1048576.0, p->kv_bytes / 1048576.0,
           p->scratch_bytes / 1048576.0, step_mb);
    /* prompt processing */
    double tp[16];
    int ok = !pl_ctx_decode(c, toks, n_prompt);
    for (int r = 0; ok && r < reps && r < 16; r++) {
        pl_ctx_truncate(c, 0);
        const double a = pl_time_ms();
        ok = !pl_ctx_decode(c, toks, n_prompt);
        tp[r] = (pl_time_ms() - a) / 1e3;
    }
    if (!ok) {
        fprintf(stderr, "decode: %s\n", pl_last_error());
        return 1;
    }
    const double pp = n_prompt / median(tp, reps < 16 ? reps : 16);
    double s_graph = 0, s_eager = 0;
    ok = bench_decode(c, toks, gen, reps, &s_graph);
    pl_ctx_free(c);
    c = NULL;
    setenv("PL_GPU_GRAPH", "0", 1);
    cp.n_batch = 1;
    if (ok && !pl_ctx_new(m, &cp, &c)) ok = bench_decode(c, toks, gen, reps, &s_eager);
    pl_ctx_free(c);
    if (!ok) {
        fprintf(stderr, "decode: %s\n", pl_last_error());
        return 1;
    }
    printf("\n| %s | figure |\n|---|---|\n", model_path);
    printf("| prompt processing, %d-token batches | %.0f tok/s |\n", n_prompt, pp);
    const double tg[2] = {1 / s_graph, 1 / s_eager};
    const char *how[2] = {"CUDA graph", "eager launches"};
    for (int k = 0; k < 2; k++)
        printf("| decode, %d tokens from position 4, %s | %.0f tok/s, %.3f ms/token, %.0f GB/s = %.0f%% of the copy "
               "bandwidth |\n",
               gen, how[k], tg[k], 1e3 / tg[k], step_mb * tg[k] / 1e3, 100 * step_mb * tg[k] / 1e3 / copy_gbps);
    free(toks);
    pl_model_free(m);
    return 0;
}
