/*
 * `pocketllm score`: evaluate token ids as one batch and print, per position,
 * the argmax of the logits and the log-probability of the next given id — the
 * numbers the reference tests compare with Hugging Face and llama.cpp.
 */
#include "cli.h"

#include "../src/kernels/kernels.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void score_usage(FILE *fp) {
    fprintf(fp,
            "usage: pocketllm score -m FILE --ids 1,5739,... [-t N]\n"
            "Evaluates the ids as one batch (no BOS added) and prints one JSON object per position:\n"
            "  {\"pos\":i,\"argmax\":id,\"logprob_next\":x}   (logprob_next omitted at the last position)\n");
}

/* log-softmax of logits[target]: the dispatched (SIMD) log-sum-exp, which is
 * what perplexity spends most of its non-matmul time on */
double cli_logprob(const float *logits, int n_vocab, int target) {
    return (double)logits[target] - (double)kern_logsumexp(logits, n_vocab);
}

int cli_argmax(const float *logits, int n_vocab) {
    int best = 0;
    for (int i = 1; i < n_vocab; i++)
        if (logits[i] > logits[best]) best = i;
    return best;
}

int cmd_score(int argc, char **argv) {
    const char *model_path = NULL, *ids_arg = NULL;
    int n_threads = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) { score_usage(stdout); return 0; }
        else if ((!strcmp(a, "-m") || !strcmp(a, "--model")) && v) { model_path = v; i++; }
        else if (!strcmp(a, "--ids") && v) { ids_arg = v; i++; }
        else if ((!strcmp(a, "-t") || !strcmp(a, "--threads")) && v) { n_threads = atoi(v); i++; }
        else {
            fprintf(stderr, "pocketllm score: unknown or incomplete option '%s'\n", a);
            score_usage(stderr);
            return 2;
        }
    }
    if (!model_path || !ids_arg) {
        score_usage(stderr);
        return 2;
    }
    pl_token *ids = NULL;
    int n = 0, rc = cli_parse_ids(ids_arg, &ids, &n);
    if (rc) return rc;
    rc = 1;
    pl_model *model = NULL;
    pl_ctx *ctx = NULL;
    if (n == 0) { fprintf(stderr, "pocketllm score: --ids is empty\n"); rc = 2; goto out; }
    if (pl_model_load(model_path, NULL, &model)) { cli_fail("load"); goto out; }
    pl_ctx_params xp = pl_ctx_default_params();
    xp.n_ctx = n;
    xp.n_batch = n;
    xp.n_threads = n_threads;
    xp.logits_all = 1;
    if (pl_ctx_new(model, &xp, &ctx)) { cli_fail("context"); goto out; }
    if (pl_ctx_decode(ctx, ids, n)) { cli_fail("decode"); goto out; }
    const int V = pl_model_n_vocab(model);
    for (int i = 0; i < n; i++) {
        const float *lg = pl_ctx_logits(ctx, i);
        printf("{\"pos\":%d,\"argmax\":%d", i, cli_argmax(lg, V));
        if (i + 1 < n) printf(",\"logprob_next\":%.6f", cli_logprob(lg, V, ids[i + 1]));
        printf("}\n");
    }
    rc = 0;
out:
    pl_ctx_free(ctx);
    pl_model_free(model);
    free(ids);
    return rc;
}
