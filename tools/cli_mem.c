/*
 * Memory options shared by the commands that load a model (run, plan, bench
 * tools): --budget/--profile, --no-mmap, --mlock, --no-repack, --advice, --stream,
 * --kv-type, --window, and a memory report (plan next to what the process
 * measured) printed after a run.
 */
#include "cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void cli_mem_usage(FILE *fp) {
    fprintf(fp,
            "memory:\n"
            "      --budget SIZE      memory the model and context may hold (3.5G, 512M; 'none' = unchecked;\n"
            "                         default: detected from RAM, cgroup limits, rlimits, or $PL_BUDGET)\n"
            "      --profile NAME     budget of a named device (pocketllm plan --profiles lists them)\n"
            "      --no-mmap          read the weights into memory instead of mapping the file\n"
            "      --mlock            lock the mapped weights in RAM\n"
            "      --no-repack        keep every matrix in the file's layout (default: Q4_0 matrices are\n"
            "                         copied 8 rows interleaved for the AVX2 kernels; same memory)\n"
            "      --advice A         madvise for the mapping: normal, willneed, random, sequential\n"
            "      --stream           keep a window of layers resident and read the rest each token\n"
            "      --stream-auto      stream only when the weights do not fit the budget\n"
            "      --window SIZE      streaming window (default: what the budget leaves)\n"
            "      --kv-type T        KV cache type: f16 (default) or q8_0\n"
            "      --no-prefault      do not touch KV/scratch pages up front\n"
            "      --verify           check SHA-256 sums of the model file(s) before loading\n");
}

static int cli_mem_size(const char *opt, const char *v, uint64_t *out) {
    if (!strcmp(v, "none")) {
        *out = PL_BUDGET_NONE;
        return 0;
    }
    if (pl_parse_bytes(v, out)) {
        fprintf(stderr, "pocketllm: %s: %s\n", opt, pl_last_error());
        return -1;
    }
    return 0;
}

int cli_mem_option(int argc, char **argv, int *i, pl_model_params *mp, pl_ctx_params *cp) {
    const char *a = argv[*i];
    const char *v = *i + 1 < argc ? argv[*i + 1] : NULL;
    static const char *const advice[] = {"normal", "willneed", "random", "sequential"};
    if (!strcmp(a, "--no-mmap")) mp->no_mmap = 1;
    else if (!strcmp(a, "--mlock")) mp->mlock = 1;
    else if (!strcmp(a, "--no-repack")) mp->no_repack = 1;
    else if (!strcmp(a, "--stream")) mp->stream = PL_STREAM_ON;
    else if (!strcmp(a, "--stream-auto")) mp->stream = PL_STREAM_AUTO;
    else if (!strcmp(a, "--no-prefault")) cp->no_prefault = 1;
    else if (!strcmp(a, "--verify")) mp->verify = 1;
    else if (!v) return 0;
    else if (!strcmp(a, "--budget")) {
        if (cli_mem_size(a, v, &mp->budget_bytes)) return -1;
        ++*i;
    } else if (!strcmp(a, "--window")) {
        if (cli_mem_size(a, v, &cp->stream_window_bytes)) return -1;
        ++*i;
    } else if (!strcmp(a, "--profile")) {
        const pl_device_profile *p = pl_device_profile_find(v);
        if (!p) {
            fprintf(stderr, "pocketllm: unknown device profile '%s' (known:", v);
            for (int k = 0; pl_device_profile_at(k); k++) fprintf(stderr, " %s", pl_device_profile_at(k)->name);
            fprintf(stderr, ")\n");
            return -1;
        }
        mp->budget_bytes = p->budget_bytes;
        ++*i;
    } else if (!strcmp(a, "--advice")) {
        int k = 0;
        while (k < 4 && strcmp(advice[k], v)) k++;
        if (k == 4) {
            fprintf(stderr, "pocketllm: --advice: '%s' is not normal, willneed, random or sequential\n", v);
            return -1;
        }
        mp->advice = k;
        ++*i;
    } else if (!strcmp(a, "--kv-type")) {
        if (cli_kv_type(a, v, &cp->kv_type)) return -1;
        ++*i;
    } else return 0;
    return 1;
}

int cli_kv_type(const char *opt, const char *v, int *kv_type) {
    static const struct { const char *name; int type; } k_kv[] = {{"f16", PL_KV_F16}, {"q8_0", PL_KV_Q8_0}};
    for (size_t k = 0; k < sizeof k_kv / sizeof k_kv[0]; k++)
        if (!strcmp(v, k_kv[k].name)) {
            *kv_type = k_kv[k].type;
            return 0;
        }
    fprintf(stderr, "pocketllm: %s: '%s' is not f16 or q8_0\n", opt, v);
    return -1;
}

static double cli_mib(int64_t n) { return (double)n / 1048576.0; }

void cli_mem_report(FILE *fp, const pl_model *model, const pl_ctx_params *cp) {
    pl_plan pl;
    pl_memory_stats s;
    pl_memory_snapshot(&s);
    fprintf(fp, "memory: peak RSS %.1f MiB (now %.1f) | weights %.1f MiB resident of %.1f mapped, %.1f copied | "
                "KV %.1f | scratch %.1f | faults %lld minor, %lld major",
            cli_mib(s.rss_peak_bytes), cli_mib(s.rss_bytes), cli_mib(s.weights_resident), cli_mib(s.weights_mapped),
            cli_mib(s.weights_copied), cli_mib(s.kv_bytes), cli_mib(s.scratch_bytes), (long long)s.minor_faults,
            (long long)s.major_faults);
    if (s.stream_read_bytes) fprintf(fp, " | streamed %.1f MiB", cli_mib(s.stream_read_bytes));
    if (model && pl_plan_model(model, cp, &pl) == PL_OK)
        fprintf(fp, "\nmemory: plan total %.1f MiB (measured peak is %+.1f%% of it)\n", cli_mib(pl.total_bytes),
                pl.total_bytes ? 100.0 * (double)(s.rss_peak_bytes - pl.total_bytes) / (double)pl.total_bytes : 0.0);
    else
        fprintf(fp, "\n");
}
