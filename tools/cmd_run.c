/*
 * `pocketllm run`: generate from a prompt, streaming text as it comes, then
 * print prompt and generation speed to stderr (stdout carries only the text,
 * so it can be piped). --ids prints generated token ids instead of text.
 */
#include "cli.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void run_usage(FILE *fp) {
    fprintf(fp,
            "usage: pocketllm run -m FILE [-p PROMPT | -f FILE | --prompt-ids 1,2,3] [options]\n"
            "  -m, --model FILE       GGUF model\n"
            "      --lora FILE        apply a LoRA adapter GGUF (pocketllm train --lora) at load\n"
            "      --lora-scale S     its strength (default 1)\n"
            "  -p, --prompt TEXT      prompt text (default: empty, i.e. just BOS)\n"
            "  -f, --file FILE        read the prompt from a file\n"
            "      --prompt-ids LIST  prompt as comma-separated token ids (no BOS added)\n"
            "  -n, --n-predict N      tokens to generate (default 128; -1 = until context is full)\n"
            "  -c, --ctx N            context size in tokens (default: model's, at most 4096)\n"
            "  -t, --threads N        threads (default: all cores)\n"
            "      --gpu              run on the CUDA GPU (a build made with make GPU=cuda)\n"
            "  -ngl, --gpu-layers N   only the first N layers on the GPU (implies --gpu; -1 = as many as fit)\n"
            "      --temp T           temperature (default 0.8; 0 = greedy)\n"
            "      --top-k K          (default 40)   --top-p P (default 0.95)   --min-p P (default 0.05)\n"
            "      --repeat-penalty R (default 1.0 = off)  --repeat-last-n N (default 64)\n"
            "      --seed S           random seed (default 0x5eed)\n"
            "      --ignore-eos       keep generating past end-of-text tokens\n"
            "      --special          parse special-token text like <s> in the prompt\n"
            "      --ids              print generated token ids (space-separated) instead of text\n"
            "      --mem              print measured memory beside the plan at the end\n");
    cli_mem_usage(fp);
}

typedef struct run_state {
    int print_ids;
    int n_printed;
} run_state;

static volatile sig_atomic_t g_interrupted;
static pl_ctx *g_ctx;

static void on_sigint(int sig) {
    (void)sig;
    g_interrupted = 1;
    if (g_ctx) pl_ctx_cancel(g_ctx); /* an atomic store: async-signal-safe */
}

static int on_token(void *user, pl_token tok, const char *text, size_t len) {
    run_state *rs = user;
    if (rs->print_ids)
        printf(rs->n_printed++ ? " %d" : "%d", tok);
    else
        fwrite(text, 1, len, stdout);
    fflush(stdout);
    return 0;
}

int cli_parse_ids(const char *s, pl_token **out, int *n_out) {
    int cap = 16, n = 0;
    pl_token *ids = malloc(sizeof *ids * (size_t)cap);
    while (ids && *s) {
        char *end;
        long v = strtol(s, &end, 10);
        if (end == s || v < 0 || v > INT32_MAX) {
            fprintf(stderr, "pocketllm: bad token id list near '%s'\n", s);
            free(ids);
            return 2;
        }
        if (n == cap) {
            pl_token *nb = realloc(ids, sizeof *ids * (size_t)(cap *= 2));
            if (!nb) break;
            ids = nb;
        }
        ids[n++] = (pl_token)v;
        s = end;
        while (*s == ',' || *s == ' ') s++;
    }
    if (!ids) {
        fprintf(stderr, "pocketllm: out of memory\n");
        return 1;
    }
    *out = ids;
    *n_out = n;
    return 0;
}

int cmd_run(int argc, char **argv) {
    const char *model_path = NULL, *prompt = "", *prompt_file = NULL, *ids_arg = NULL, *lora_path = NULL;
    float lora_scale = 1.0f;
    pl_complete_params cp = pl_complete_default_params();
    pl_ctx_params xp = pl_ctx_default_params();
    pl_model_params mp = pl_model_default_params();
    int mem_report = 0;
    run_state rs = {0};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        const int mr = cli_mem_option(argc, argv, &i, &mp, &xp); /* --budget, --mlock, ... */
        if (mr < 0) return 2;
        if (mr > 0) continue;
#define ARG(s, l) ((!strcmp(a, s) || !strcmp(a, l)) && v && ++i)
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) { run_usage(stdout); return 0; }
        else if (ARG("-m", "--model")) model_path = v;
        else if (ARG("--lora", "--lora")) lora_path = v;
        else if (ARG("--lora-scale", "--lora-scale")) lora_scale = (float)atof(v);
        else if (ARG("-p", "--prompt")) prompt = v;
        else if (ARG("-f", "--file")) prompt_file = v;
        else if (ARG("--prompt-ids", "--prompt-ids")) ids_arg = v;
        else if (ARG("-n", "--n-predict")) cp.n_predict = atoi(v);
        else if (ARG("-c", "--ctx")) xp.n_ctx = atoi(v);
        else if (ARG("-t", "--threads")) xp.n_threads = atoi(v);
        else if (!strcmp(a, "--gpu")) xp.device = PL_DEVICE_CUDA;
        else if (ARG("-ngl", "--gpu-layers")) xp.device = PL_DEVICE_CUDA, xp.n_gpu_layers = atoi(v);
        else if (ARG("--temp", "--temp")) cp.sampling.temp = (float)atof(v);
        else if (ARG("--top-k", "--top-k")) cp.sampling.top_k = atoi(v);
        else if (ARG("--top-p", "--top-p")) cp.sampling.top_p = (float)atof(v);
        else if (ARG("--min-p", "--min-p")) cp.sampling.min_p = (float)atof(v);
        else if (ARG("--repeat-penalty", "--repeat-penalty")) cp.sampling.repeat_penalty = (float)atof(v);
        else if (ARG("--repeat-last-n", "--repeat-last-n")) cp.sampling.repeat_last_n = atoi(v);
        else if (ARG("--seed", "--seed")) cp.sampling.seed = strtoull(v, NULL, 0);
        else if (!strcmp(a, "--ignore-eos")) cp.ignore_eos = 1;
        else if (!strcmp(a, "--special")) cp.parse_special = 1;
        else if (!strcmp(a, "--ids")) rs.print_ids = 1;
        else if (!strcmp(a, "--mem")) mem_report = 1;
        else {
            fprintf(stderr, "pocketllm run: unknown or incomplete option '%s'\n", a);
            run_usage(stderr);
            return 2;
        }
#undef ARG
    }
    if (!model_path) {
        fprintf(stderr, "pocketllm run: -m FILE is required\n");
        run_usage(stderr);
        return 2;
    }
    char *file_text = NULL;
    pl_token *ids = NULL;
    int rc = 1;
    pl_model *model = NULL;
    pl_ctx *ctx = NULL;
    if (prompt_file) {
        if (!(file_text = cli_read_file(prompt_file, NULL))) return 1;
        prompt = file_text;
    }
    if (ids_arg) {
        int n;
        if ((rc = cli_parse_ids(ids_arg, &ids, &n))) goto out;
        rc = 1;
        cp.prompt_tokens = ids;
        cp.n_prompt_tokens = n;
    }
    cp.prompt = prompt;
    if (xp.device != PL_DEVICE_CPU) mp.no_repack = 1; /* the GPU reads the file's rows */
    if (pl_model_load(model_path, &mp, &model)) { cli_fail("load"); goto out; }
    if (lora_path && pl_model_apply_lora(model, lora_path, lora_scale)) { cli_fail("lora"); goto out; }
    if (pl_ctx_new(model, &xp, &ctx)) { cli_fail("context"); goto out; }
    g_ctx = ctx;
    signal(SIGINT, on_sigint);
    if (!rs.print_ids && !ids_arg) fputs(prompt, stdout);
    pl_timings tm;
    pl_status st = pl_complete(ctx, &cp, on_token, &rs, &tm);
    signal(SIGINT, SIG_DFL);
    g_ctx = NULL;
    printf("\n");
    if (st && !(st == PL_ERR_CANCELLED && g_interrupted)) { cli_fail("generate"); goto out; }
    fprintf(stderr, "\nprompt: %d tokens in %.1f ms (%.1f tok/s) | generation: %d tokens in %.1f ms (%.1f tok/s)\n",
            tm.n_prompt, tm.prompt_ms, tm.prompt_ms > 0 ? tm.n_prompt * 1e3 / tm.prompt_ms : 0.0, tm.n_gen,
            tm.gen_ms, tm.gen_ms > 0 ? tm.n_gen * 1e3 / tm.gen_ms : 0.0);
    if (mem_report) cli_mem_report(stderr, model, &xp);
    rc = 0;
out:
    pl_ctx_free(ctx);
    pl_model_free(model);
    free(ids);
    free(file_text);
    return rc;
}
