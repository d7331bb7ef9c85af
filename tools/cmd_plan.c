/*
 * `pocketllm plan`: what a model will hold in memory, from its GGUF header
 * alone (no weight page is read): weights (resident, mapped, copied, locked),
 * KV cache at the context asked for, compute scratch, tokenizer and runtime,
 * the budget it is checked against and the verdict: fits / fits with a
 * smaller context (the largest that fits) / does not fit (by how much).
 * --json prints the same figures as one JSON object.
 */
#include "cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void plan_usage(FILE *fp) {
    fprintf(fp,
            "usage: pocketllm plan -m FILE [--ctx N] [--budget SIZE | --profile NAME] [--kv-type f16|q8_0] [--json]\n"
            "  -m, --model FILE   GGUF model (only its header is read)\n"
            "  -c, --ctx N        context size in tokens (default: the model's, at most 4096)\n"
            "  -b, --batch N      tokens per step (default 512)\n"
            "  -t, --threads N    threads (default: all cores)\n"
            "      --logits-all   keep logits for every position (scoring tools)\n"
            "      --json         one JSON object instead of the table\n"
            "      --profiles     list the device profiles and exit\n"
            "      --detect       show what limits memory on this machine and exit\n");
    cli_mem_usage(fp);
}

static double mib(int64_t n) { return (double)n / 1048576.0; }

static const char *verdict_name(int fit) {
    return fit == PL_FIT_YES ? "fits" : fit == PL_FIT_SMALLER_CTX ? "fits_smaller_ctx" : "does_not_fit";
}

static void json_str(FILE *fp, const char *s) {
    fputc('"', fp);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') fprintf(fp, "\\%c", c);
        else if (c < 0x20) fprintf(fp, "\\u%04x", c);
        else fputc(c, fp);
    }
    fputc('"', fp);
}

static void print_json(FILE *fp, const char *path, const pl_plan *p) {
    fprintf(fp, "{\"file\": ");
    json_str(fp, path);
    fprintf(fp,
            ", \"file_bytes\": %lld, \"tensors_bytes\": %lld, \"weights_bytes\": %lld, \"weights_mapped_bytes\": %lld, "
            "\"weights_copied_bytes\": %lld, \"weights_locked_bytes\": %lld, \"weights_packed_bytes\": %lld, \"kv_bytes\": %lld, \"kv_bytes_per_token\": %lld, "
            "\"scratch_bytes\": %lld, \"tokenizer_bytes\": %lld, \"overhead_bytes\": %lld, \"total_bytes\": %lld, "
            "\"budget_bytes\": %lld, \"budget_source\": ",
            (long long)p->file_bytes, (long long)p->weights_bytes, (long long)p->weights_resident,
            (long long)p->weights_mapped, (long long)p->weights_copied, (long long)p->weights_locked,
            (long long)p->weights_packed, (long long)p->kv_bytes, (long long)p->kv_bytes_per_token, (long long)p->scratch_bytes,
            (long long)p->tokenizer_bytes, (long long)p->overhead_bytes, (long long)p->total_bytes,
            (long long)p->budget_bytes);
    json_str(fp, p->budget_source);
    fprintf(fp,
            ", \"fits\": %s, \"verdict\": \"%s\", \"n_ctx\": %d, \"max_ctx\": %d, \"n_ctx_train\": %d, \"over_bytes\": %lld, "
            "\"n_batch\": %d, \"n_threads\": %d, \"kv_type\": \"%s\", \"stream\": %s, \"n_layer\": %d, "
            "\"n_layer_resident\": %d, \"stream_slots\": %d, \"stream_bytes_per_token\": %lld}\n",
            p->fit == PL_FIT_YES ? "true" : "false", verdict_name(p->fit), p->n_ctx, p->max_ctx, p->n_ctx_train,
            (long long)p->over_bytes, p->n_batch, p->n_threads, p->kv_type == PL_KV_Q8_0 ? "q8_0" : "f16",
            p->stream ? "true" : "false", p->n_layer, p->n_layer_resident, p->n_stream_slots,
            (long long)p->stream_bytes_per_token);
}

static void print_table(FILE *fp, const char *path, const pl_plan *p) {
    fprintf(fp, "model    %s (%.1f MiB file, %.1f MiB of tensors, %d layers)\n", path, mib(p->file_bytes),
            mib(p->weights_bytes), p->n_layer);
    fprintf(fp, "context  %d tokens (trained on %d), batch %d, %d threads, KV %s\n\n", p->n_ctx, p->n_ctx_train,
            p->n_batch, p->n_threads, p->kv_type == PL_KV_Q8_0 ? "q8_0" : "f16");
    fprintf(fp, "%-28s %10s\n", "", "MiB");
    fprintf(fp, "%-28s %10.1f\n", "weights, resident", mib(p->weights_resident));
    fprintf(fp, "%-28s %10.1f   file-backed: the kernel may evict and re-read them\n", "  mapped", mib(p->weights_mapped));
    fprintf(fp, "%-28s %10.1f   in anonymous memory%s\n", "  copied", mib(p->weights_copied),
            p->stream ? " (the streaming window)" : "");
    fprintf(fp, "%-28s %10.1f\n", "  locked (mlock)", mib(p->weights_locked));
    if (p->weights_packed)
        fprintf(fp, "%-28s %10.1f   of the copied: matrices repacked for the kernels (--no-repack)\n", "  packed",
                mib(p->weights_packed));
    fprintf(fp, "%-28s %10.1f   %.1f KiB per token\n", "KV cache", mib(p->kv_bytes), p->kv_bytes_per_token / 1024.0);
    fprintf(fp, "%-28s %10.1f\n", "compute scratch", mib(p->scratch_bytes));
    fprintf(fp, "%-28s %10.1f\n", "tokenizer and metadata", mib(p->tokenizer_bytes));
    fprintf(fp, "%-28s %10.1f\n", "runtime (code, stacks)", mib(p->overhead_bytes));
    fprintf(fp, "%-28s %10s\n", "", "----------");
    fprintf(fp, "%-28s %10.1f\n", "total (peak resident)", mib(p->total_bytes));
    if (p->budget_bytes)
        fprintf(fp, "%-28s %10.1f   (%s)\n", "budget", mib(p->budget_bytes), p->budget_source);
    else
        fprintf(fp, "%-28s %10s   (%s)\n", "budget", "-", p->budget_source[0] ? p->budget_source : "none");
    if (p->stream)
        fprintf(fp, "\nstreaming: %d of %d layers resident, %d slots; %.1f MiB read from storage per token\n",
                p->n_layer_resident, p->n_layer, p->n_stream_slots, mib(p->stream_bytes_per_token));
    fputc('\n', fp);
    if (p->fit == PL_FIT_YES)
        fprintf(fp, "verdict: fits (the largest context that fits is %d tokens)\n", p->max_ctx);
    else if (p->fit == PL_FIT_SMALLER_CTX)
        fprintf(fp, "verdict: fits with a smaller context: at most %d tokens (%d asked, %.1f MiB over)\n", p->max_ctx,
                p->n_ctx, mib(p->over_bytes));
    else {
        char limit[200];
        fprintf(fp, "verdict: does not fit: %.1f MiB over (%s)%s\n", mib(p->over_bytes),
                pl_plan_limit_text(p, limit, sizeof limit),
                p->stream || p->limit != PL_LIMIT_BUDGET ? "" : " (--stream-auto would try a streaming window)");
    }
}

static void print_detect(FILE *fp) {
    pl_budget b;
    if (pl_budget_detect(&b)) {
        fprintf(fp, "detection failed: %s\n", pl_last_error());
        return;
    }
    fprintf(fp, "physical RAM          %10.1f MiB\n", mib((int64_t)b.phys_bytes));
    fprintf(fp, "available now         %10.1f MiB\n", mib((int64_t)b.avail_bytes));
#define LIM(name, v)                                                     \
    do {                                                                 \
        if (v) fprintf(fp, "%-21s %10.1f MiB\n", name, mib((int64_t)(v))); \
        else fprintf(fp, "%-21s %10s\n", name, "none");                  \
    } while (0)
    LIM("cgroup limit", b.cgroup_bytes);
    LIM("RLIMIT_AS room", b.rlimit_as_bytes);
    LIM("RLIMIT_DATA room", b.rlimit_data_bytes);
    LIM("PL_BUDGET", b.override_bytes);
#undef LIM
    fprintf(fp, "budget                %10.1f MiB (%s)\n", mib((int64_t)b.bytes), b.source);
}

int cmd_plan(int argc, char **argv) {
    const char *path = NULL;
    int json = 0;
    pl_model_params mp = pl_model_default_params();
    pl_ctx_params cp = pl_ctx_default_params();
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        int r = cli_mem_option(argc, argv, &i, &mp, &cp);
        if (r < 0) return 2;
        if (r > 0) continue;
#define ARG(s, l) ((!strcmp(a, s) || !strcmp(a, l)) && v && ++i)
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) { plan_usage(stdout); return 0; }
        else if (!strcmp(a, "--json")) json = 1;
        else if (!strcmp(a, "--logits-all")) cp.logits_all = 1;
        else if (!strcmp(a, "--profiles")) {
            for (int k = 0; pl_device_profile_at(k); k++) {
                const pl_device_profile *p = pl_device_profile_at(k);
                printf("%-14s RAM %5.1f GiB  budget %6.0f MiB  %s\n", p->name, p->ram_bytes / 1073741824.0,
                       mib((int64_t)p->budget_bytes), p->note);
            }
            return 0;
        } else if (!strcmp(a, "--detect")) { print_detect(stdout); return 0; }
        else if (ARG("-m", "--model")) path = v;
        else if (ARG("-c", "--ctx")) cp.n_ctx = atoi(v);
        else if (ARG("-b", "--batch")) cp.n_batch = atoi(v);
        else if (ARG("-t", "--threads")) cp.n_threads = atoi(v);
        else {
            fprintf(stderr, "pocketllm plan: unknown or incomplete option '%s'\n", a);
            plan_usage(stderr);
            return 2;
        }
#undef ARG
    }
    if (!path) {
        fprintf(stderr, "pocketllm plan: -m FILE is required\n");
        plan_usage(stderr);
        return 2;
    }
    if (cp.n_ctx < 0 || cp.n_batch < 0 || cp.n_threads < 0) {
        fprintf(stderr, "pocketllm plan: negative --ctx/--batch/--threads\n");
        return 2;
    }
    pl_plan p;
    if (pl_plan_file(path, &mp, &cp, &p)) return cli_fail("plan");
    if (json) print_json(stdout, path, &p);
    else print_table(stdout, path, &p);
    return 0;
}
