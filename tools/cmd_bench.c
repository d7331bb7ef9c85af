/*
 * `pocketllm bench`: prompt-processing and generation speed of a model, the
 * weight bytes one generated token reads, the bandwidth that achieves, and
 * that bandwidth as a fraction of this machine's read bandwidth (measured here
 * with the same thread count, so the fraction says how close decode is to the
 * memory bound). Figures only: nothing is asserted.
 */
#include "cli.h"

#include "../src/core/threads.h"
#include "../src/model/model.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void bench_usage(FILE *fp) {
    fprintf(fp,
            "usage: pocketllm bench -m FILE [-p 128] [-n 32] [-t N] [-r 3] [--kv-type T] [--no-repack] [--json]\n"
            "  -p N     prompt tokens evaluated as one batch (pp)\n"
            "  -n N     tokens generated one at a time after the prompt (tg)\n"
            "  -t N     threads (default: all cores)\n"
            "  -r N     repetitions; the best is reported (default 3)\n"
            "  --kv-type T  KV cache type: f16 (default) or q8_0\n"
            "  --no-repack  keep matrices in the file's layout (no row-interleaved copies)\n"
            "  --json   one JSON line: pp_tok_s, tg_tok_s, bytes_per_token, gb_s, bandwidth_fraction, mem_bw_gb_s\n");
}

static uint64_t matrix_bytes(const kern_matrix *w) {
    return w->data ? quant_row_size(w->type, w->n_in) * (uint64_t)w->n_out : 0;
}

/* Weight bytes one decoded token reads: every matrix once, one embedding row,
 * the norms and biases. A tied output reads the whole embedding matrix. */
static uint64_t bytes_per_token(const pl_model *m) {
    const model_hparams *hp = &m->hp;
    uint64_t b = quant_row_size(m->tok_embd.type, hp->n_embd) + matrix_bytes(&m->output) + 4ull * hp->n_embd;
    for (int il = 0; il < hp->n_layer; il++) {
        const model_layer *l = &m->layers[il];
        b += matrix_bytes(&l->wq) + matrix_bytes(&l->wk) + matrix_bytes(&l->wv) + matrix_bytes(&l->wo) +
             matrix_bytes(&l->w_gate) + matrix_bytes(&l->w_up) + matrix_bytes(&l->w_down);
        b += 4ull * 2 * hp->n_embd; /* the two norms */
        if (l->bq) b += 4ull * (hp->n_head + 2 * hp->n_head_kv) * hp->head_dim;
    }
    return b;
}

typedef struct bw_job {
    const uint64_t *buf;
    size_t n;       /* words */
    uint64_t sink[64];
} bw_job;

static void bw_read(void *arg, int ith, int nth) {
    bw_job *j = arg;
    const size_t a = j->n * ith / nth, e = j->n * (ith + 1) / nth;
    uint64_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    for (size_t i = a; i + 4 <= e; i += 4) {
        s0 += j->buf[i];
        s1 += j->buf[i + 1];
        s2 += j->buf[i + 2];
        s3 += j->buf[i + 3];
    }
    j->sink[ith & 63] = s0 ^ s1 ^ s2 ^ s3;
}

/* Read bandwidth (GB/s) of a 1 GiB buffer with n threads: best of 5 passes. */
static double measure_read_bw(pl_pool *pool) {
    const size_t bytes = (size_t)1 << 30;
    uint64_t *buf = malloc(bytes);
    if (!buf) return 0.0;
    for (size_t i = 0; i < bytes / 8; i++) buf[i] = i;
    bw_job j = {.buf = buf, .n = bytes / 8};
    double best = 0.0;
    for (int rep = 0; rep < 5; rep++) {
        double t0 = pl_time_ms();
        pool_run(pool, bw_read, &j);
        double gbs = bytes / ((pl_time_ms() - t0) * 1e6);
        best = gbs > best ? gbs : best;
    }
    free(buf);
    return best;
}

int cmd_bench(int argc, char **argv) {
    const char *model_path = NULL;
    int n_prompt = 128, n_gen = 32, n_threads = 0, reps = 3, json = 0, kv_type = PL_KV_F16;
    pl_model_params mp = pl_model_default_params();
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) { bench_usage(stdout); return 0; }
        else if ((!strcmp(a, "-m") || !strcmp(a, "--model")) && v) { model_path = v; i++; }
        else if (!strcmp(a, "-p") && v) { n_prompt = atoi(v); i++; }
        else if (!strcmp(a, "-n") && v) { n_gen = atoi(v); i++; }
        else if ((!strcmp(a, "-t") || !strcmp(a, "--threads")) && v) { n_threads = atoi(v); i++; }
        else if (!strcmp(a, "-r") && v) { reps = atoi(v); i++; }
        else if (!strcmp(a, "--kv-type") && v) { if (cli_kv_type(a, v, &kv_type)) return 2; i++; }
        else if (!strcmp(a, "--json")) json = 1;
        else if (!strcmp(a, "--no-repack")) mp.no_repack = 1;
        else {
            fprintf(stderr, "pocketllm bench: unknown or incomplete option '%s'\n", a);
            bench_usage(stderr);
            return 2;
        }
    }
    if (!model_path || n_prompt < 1 || n_gen < 1 || reps < 1) {
        bench_usage(stderr);
        return 2;
    }
    int rc = 1;
    pl_model *model = NULL;
    pl_ctx *ctx = NULL;
    pl_token *toks = NULL;
    if (pl_model_load(model_path, &mp, &model)) { cli_fail("load"); goto out; }
    pl_ctx_params xp = pl_ctx_default_params();
    xp.n_ctx = n_prompt + n_gen;
    xp.n_batch = n_prompt;
    xp.n_threads = n_threads;
    xp.kv_type = kv_type;
    if (pl_ctx_new(model, &xp, &ctx)) { cli_fail("context"); goto out; }
    const int V = pl_model_n_vocab(model);
    toks = malloc(sizeof *toks * (size_t)n_prompt);
    if (!toks) goto out;
    uint64_t rng = 1;
    for (int i = 0; i < n_prompt; i++) {
        rng = rng * 6364136223846793005ull + 1442695040888963407ull;
        toks[i] = (pl_token)((rng >> 33) % (uint64_t)V);
    }
    double best_pp = 0, best_tg = 0;
    for (int r = 0; r < reps; r++) {
        pl_ctx_truncate(ctx, 0);
        double t0 = pl_time_ms();
        if (pl_ctx_decode(ctx, toks, n_prompt)) { cli_fail("decode"); goto out; }
        double pp = n_prompt * 1e3 / (pl_time_ms() - t0);
        pl_token t = toks[n_prompt - 1];
        t0 = pl_time_ms();
        for (int i = 0; i < n_gen; i++) {
            if (pl_ctx_decode(ctx, &t, 1)) { cli_fail("decode"); goto out; }
            t = (pl_token)((t * 7 + 13) % V); /* logits are not needed: any valid next id */
        }
        double tg = n_gen * 1e3 / (pl_time_ms() - t0);
        best_pp = pp > best_pp ? pp : best_pp;
        best_tg = tg > best_tg ? tg : best_tg;
    }
    const uint64_t bpt = bytes_per_token(model);
    const double gbs = bpt * best_tg / 1e9;
    const double bw = measure_read_bw(ctx->pool);
    const int nth = pool_size(ctx->pool);
    if (json) {
        printf("{\"model\":\"%s\",\"threads\":%d,\"n_prompt\":%d,\"n_gen\":%d,\"pp_tok_s\":%.2f,\"tg_tok_s\":%.2f,"
               "\"bytes_per_token\":%llu,\"gb_s\":%.3f,\"mem_bw_gb_s\":%.2f,\"bandwidth_fraction\":%.4f}\n",
               model_path, nth, n_prompt, n_gen, best_pp, best_tg, (unsigned long long)bpt, gbs, bw,
               bw > 0 ? gbs / bw : 0.0);
    } else {
        printf("model               %s\n", model_path);
        printf("threads             %d\n", nth);
        printf("pp%-4d              %.1f tok/s\n", n_prompt, best_pp);
        printf("tg%-4d              %.1f tok/s\n", n_gen, best_tg);
        printf("bytes per token     %.1f MB\n", bpt / 1e6);
        printf("decode bandwidth    %.2f GB/s\n", gbs);
        printf("machine read bw     %.2f GB/s (%d threads, 1 GiB buffer)\n", bw, nth);
        printf("fraction of bw      %.1f %%\n", bw > 0 ? 100 * gbs / bw : 0.0);
    }
    rc = 0;
out:
    free(toks);
    pl_ctx_free(ctx);
    pl_model_free(model);
    return rc;
}
