/*
 * `pocketllm perplexity`: llama.cpp's llama-perplexity method, exactly:
 * tokenize the whole file once (BOS first when the model asks for it), cut the
 * ids into consecutive non-overlapping chunks of n_ctx (a partial last chunk is
 * dropped), replace each chunk's first id by BOS, evaluate it from an empty
 * cache, and score positions n_ctx/2 .. n_ctx-2 against the next ids.
 * PPL = exp(mean negative log-likelihood). Printed last as "PPL = <value>".
 */
#include "cli.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>


static void ppl_usage(FILE *fp) {
    fprintf(fp,
            "usage: pocketllm perplexity -m FILE -f TEXT [-c N] [--chunks K] [-t N] [--kv-type T] [--gpu] [-ngl N]\n"
            "  -c, --ctx N     chunk length in tokens (default 256)\n"
            "      --chunks K  score only the first K chunks (default: all)\n"
            "      --kv-type T KV cache type: f16 (default) or q8_0 (CPU only)\n"
            "      --gpu       evaluate on the CUDA GPU (a build made with make GPU=cuda)\n"
            "  -ngl, --gpu-layers N  only the first N layers on the GPU (implies --gpu)\n");
}

int cmd_perplexity(int argc, char **argv) {
    const char *model_path = NULL, *text_path = NULL;
    int n_ctx = 256, max_chunks = -1, n_threads = 0, device = PL_DEVICE_CPU, n_gpu_layers = 0, kv_type = PL_KV_F16;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) { ppl_usage(stdout); return 0; }
        else if ((!strcmp(a, "-m") || !strcmp(a, "--model")) && v) { model_path = v; i++; }
        else if ((!strcmp(a, "-f") || !strcmp(a, "--file")) && v) { text_path = v; i++; }
        else if ((!strcmp(a, "-c") || !strcmp(a, "--ctx")) && v) { n_ctx = atoi(v); i++; }
        else if (!strcmp(a, "--chunks") && v) { max_chunks = atoi(v); i++; }
        else if (!strcmp(a, "--kv-type") && v) { if (cli_kv_type(a, v, &kv_type)) return 2; i++; }
        else if ((!strcmp(a, "-t") || !strcmp(a, "--threads")) && v) { n_threads = atoi(v); i++; }
        else if (!strcmp(a, "--gpu")) device = PL_DEVICE_CUDA;
        else if ((!strcmp(a, "-ngl") || !strcmp(a, "--gpu-layers")) && v) { device = PL_DEVICE_CUDA; n_gpu_layers = atoi(v); i++; }
        else {
            fprintf(stderr, "pocketllm perplexity: unknown or incomplete option '%s'\n", a);
            ppl_usage(stderr);
            return 2;
        }
    }
    if (!model_path || !text_path || n_ctx < 4) {
        ppl_usage(stderr);
        return 2;
    }
    int rc = 1;
    size_t len = 0;
    char *text = cli_read_file(text_path, &len);
    pl_model *model = NULL;
    pl_ctx *ctx = NULL;
    pl_token *toks = NULL;
    if (!text) return 1;
    pl_model_params mp = pl_model_default_params();
    mp.no_repack = device != PL_DEVICE_CPU; /* the GPU reads the file's rows */
    if (pl_model_load(model_path, &mp, &model)) { cli_fail("load"); goto out; }
    int n_tok = 0, cap = (int)(len + 16);
    toks = malloc(sizeof *toks * (size_t)cap);
    if (!toks) { fprintf(stderr, "pocketllm: out of memory\n"); goto out; }
    if (pl_tokenize(model, text, len, pl_model_add_bos(model), 0, toks, cap, &n_tok)) { cli_fail("tokenize"); goto out; }
    int n_chunks = n_tok / n_ctx;
    if (max_chunks >= 0 && max_chunks < n_chunks) n_chunks = max_chunks;
    if (n_chunks == 0) {
        fprintf(stderr, "pocketllm perplexity: %d tokens is less than one chunk of %d\n", n_tok, n_ctx);
        goto out;
    }
    pl_ctx_params xp = pl_ctx_default_params();
    xp.n_ctx = n_ctx;
    xp.n_batch = n_ctx;
    xp.n_threads = n_threads;
    xp.kv_type = kv_type;
    xp.device = device;
    xp.n_gpu_layers = n_gpu_layers;
    xp.logits_all = 1;
    if (pl_ctx_new(model, &xp, &ctx)) { cli_fail("context"); goto out; }
    const int V = pl_model_n_vocab(model), first = n_ctx / 2;
    const pl_token bos = pl_model_bos(model);
    fprintf(stderr, "perplexity: %d tokens, %d chunks of %d, scoring positions %d..%d of each\n", n_tok, n_chunks,
            n_ctx, first, n_ctx - 2);
    double nll = 0.0;
    long count = 0;
    for (int c = 0; c < n_chunks; c++) {
        pl_token *chunk = toks + (size_t)c * n_ctx;
        pl_token saved = chunk[0];
        if (bos >= 0) chunk[0] = bos;
        pl_ctx_truncate(ctx, 0);
        pl_status st = pl_ctx_decode_from(ctx, chunk, n_ctx, first);
        chunk[0] = saved;
        if (st) { cli_fail("decode"); goto out; }
        for (int j = first; j < n_ctx - 1; j++) {
            nll -= cli_logprob(pl_ctx_logits(ctx, j), V, chunk[j + 1]);
            count++;
        }
        fprintf(stderr, "\r[%d/%d] running PPL %.4f", c + 1, n_chunks, exp(nll / count));
    }
    fprintf(stderr, "\n");
    printf("chunks %d, scored %ld\nPPL = %.4f\n", n_chunks, count, exp(nll / count));
    rc = 0;
out:
    pl_ctx_free(ctx);
    pl_model_free(model);
    free(toks);
    free(text);
    return rc;
}
