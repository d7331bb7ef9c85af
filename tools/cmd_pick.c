/*
 * `pocketllm pick`: which variant of a manifest to install on a device, and
 * with how much context: every variant is planned against the budget (a
 * profile's, a given one, or this machine's) from the manifest's numbers
 * alone, and the best quality that fits wins, with its largest context.
 */
#include "cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void pick_usage(FILE *fp) {
    fprintf(fp,
            "usage: pocketllm pick --manifest FILE [--budget SIZE | --profile NAME] [options]\n"
            "      --manifest FILE  a manifest written by pocketllm pack\n"
            "      --budget SIZE    memory the model may use (default: this machine's, as pocketllm plan --detect)\n"
            "      --profile NAME   a device profile's budget (pocketllm plan --profiles)\n"
            "      --min-ctx N      a variant must fit at least this context (default 512)\n"
            "      --max-ctx N      do not go beyond this context (default: the model's)\n"
            "  -t, --threads N      threads the device will use (default 4)\n"
            "      --kv-type T      f16 (default) or q8_0\n"
            "      --json           one JSON object\n");
}

static double mib(int64_t n) { return (double)n / 1048576.0; }

static void pick_json_str(const char *s) {
    putchar('"');
    for (; *s; s++) {
        const unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') printf("\\%c", c);
        else if (c < 0x20) printf("\\u%04x", c);
        else putchar(c);
    }
    putchar('"');
}

int cmd_pick(int argc, char **argv) {
    const char *manifest = NULL;
    int json = 0;
    pl_pick_params pp = pl_pick_default_params();
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
#define ARG(s, l) ((!strcmp(a, s) || !strcmp(a, l)) && v && ++i)
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) { pick_usage(stdout); return 0; }
        else if (ARG("--manifest", "-m")) manifest = v;
        else if (ARG("--budget", "--budget")) {
            if (pl_parse_bytes(v, &pp.budget_bytes)) { fprintf(stderr, "pocketllm pick: %s\n", pl_last_error()); return 2; }
        } else if (ARG("--profile", "--profile")) pp.profile = v;
        else if (ARG("--min-ctx", "--min-ctx")) pp.min_ctx = atoi(v);
        else if (ARG("--max-ctx", "--max-ctx")) pp.max_ctx = atoi(v);
        else if (ARG("-t", "--threads")) pp.n_threads = atoi(v);
        else if (ARG("--kv-type", "--kv-type")) {
            if (!strcmp(v, "q8_0")) pp.kv_type = PL_KV_Q8_0;
            else if (strcmp(v, "f16")) { fprintf(stderr, "pocketllm pick: --kv-type f16 or q8_0\n"); return 2; }
        } else if (!strcmp(a, "--json")) json = 1;
        else {
            fprintf(stderr, "pocketllm pick: unknown or incomplete option '%s'\n", a);
            pick_usage(stderr);
            return 2;
        }
#undef ARG
    }
    if (!manifest) {
        fprintf(stderr, "pocketllm pick: --manifest FILE is required\n");
        pick_usage(stderr);
        return 2;
    }
    pl_manifest *m;
    if (pl_manifest_load(manifest, &m)) return cli_fail("pick");
    pl_pick pk;
    const pl_status st = pl_manifest_pick(m, &pp, &pk);
    if (st) {
        pl_manifest_free(m);
        return cli_fail("pick");
    }
    pl_variant_info vi;
    pl_manifest_variant(m, pk.variant, &vi);
    if (json) {
        printf("{\"variant\": %d, \"name\": ", pk.variant);
        pick_json_str(vi.name);
        printf(", \"quant\": ");
        pick_json_str(vi.quant);
        printf(", \"n_ctx\": %d, \"total_bytes\": %lld, \"budget_bytes\": %lld, \"files\": [", pk.n_ctx,
               (long long)pk.plan.total_bytes, (long long)pk.plan.budget_bytes);
        for (int j = 0; j < vi.n_files; j++) {
            int64_t bytes;
            const char *sum;
            const char *path = pl_manifest_file(m, pk.variant, j, &bytes, &sum);
            printf("%s{\"path\": ", j ? ", " : "");
            pick_json_str(path);
            printf(", \"bytes\": %lld, \"sha256\": \"%s\"}", (long long)bytes, sum ? sum : "");
        }
        printf("]}\n");
    } else {
        for (int i = 0; i < pl_manifest_n_variants(m); i++) {
            pl_variant_info v;
            pl_manifest_variant(m, i, &v);
            printf("%s %-10s %6.2f bits/weight  %8.1f MiB  needs %8.1f MiB at 512 tokens  (%s)\n",
                   i == pk.variant ? "->" : "  ", v.name, v.bits_per_weight, mib(v.bytes), mib(v.min_memory),
                   v.memory_class[0] ? v.memory_class : "no profile");
        }
        printf("\npicked %s (%s): context %d tokens, %.1f MiB of %.1f MiB (%s)\n", vi.name, vi.quant, pk.n_ctx,
               mib(pk.plan.total_bytes), mib(pk.plan.budget_bytes), pk.plan.budget_source);
        for (int j = 0; j < vi.n_files; j++) {
            int64_t bytes;
            const char *sum;
            const char *path = pl_manifest_file(m, pk.variant, j, &bytes, &sum);
            printf("  %s (%.1f MiB%s%s)\n", path, mib(bytes), sum ? ", sha256 " : "", sum ? sum : "");
        }
    }
    pl_manifest_free(m);
    return 0;
}
