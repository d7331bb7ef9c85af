/*
 * bench_stream: memory plan and streaming on a 1B-class model.
 *
 *  1. plan vs measured: peak RSS of `pocketllm run` filling a 256-token
 *     context, next to `pocketllm plan`'s total;
 *  2. the storage's sequential read bandwidth (the file's pages dropped
 *     from the page cache first, 64 MiB preads);
 *  3. in a memory cgroup limited to 50 % of the weights: generation speed
 *     and bytes read per token of the streaming mode (--stream-auto under
 *     that budget) and of plain mmap (budget unchecked, the kernel pages),
 *     with the read-bandwidth bound of the streaming mode (bytes streamed
 *     per token / bandwidth) and the ratios.
 *
 * The model is PL_BENCH_MODEL, or a random 1B q4_0 made with `pocketllm
 * make-random` under /tmp and deleted afterwards. Needs root for the cgroup
 * (prints why when it cannot make one). Figures only: nothing is asserted.
 */
#include "core/alloc.h"
#include "gguf/gguf.h"
#include "plan/plan.h"
#include "pocketllm.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static char g_cli[1024], g_cg[700];

static double mib(double n) { return n / 1048576.0; }

static int run_cmd(char *const argv[], int quiet, struct rusage *ru) {
    pid_t pid = fork();
    if (pid < 0) return -1;
    if (pid == 0) {
        if (quiet) {
            int fd = open("/dev/null", O_WRONLY);
            if (fd >= 0) dup2(fd, 1), dup2(fd, 2);
        }
        execv(argv[0], argv);
        _exit(127);
    }
    int status;
    struct rusage r;
    if (wait4(pid, &status, 0, &r) != pid) return -1;
    if (ru) *ru = r;
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* Drop the file's pages from the page cache, so reads come from storage. */
static void drop_cache(const char *path) {
    int fd = open(path, O_RDONLY);
    if (fd < 0) return;
    fdatasync(fd);
    posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
    close(fd);
}

/* MB/s of a cold sequential read of the whole file (best of 3). */
static double read_bandwidth(const char *path) {
    const size_t chunk = 64u << 20;
    char *buf = malloc(chunk);
    double best = 0;
    for (int trial = 0; buf && trial < 3; trial++) {
        drop_cache(path);
        int fd = open(path, O_RDONLY);
        if (fd < 0) break;
        const double t0 = pl_time_ms();
        uint64_t n = 0;
        ssize_t got;
        while ((got = pread(fd, buf, chunk, (off_t)n)) > 0) n += (uint64_t)got;
        const double ms = pl_time_ms() - t0;
        close(fd);
        if (ms > 0 && n / ms / 1e3 > best) best = n / ms / 1e3;
    }
    free(buf);
    return best;
}

static uint64_t proc_io(const char *key) {
    FILE *fp = fopen("/proc/self/io", "r");
    char line[128];
    uint64_t v = 0;
    while (fp && fgets(line, sizeof line, fp))
        if (!strncmp(line, key, strlen(key))) v = strtoull(line + strlen(key) + 1, NULL, 10);
    if (fp) fclose(fp);
    return v;
}

static int cg_write(const char *dir, const char *file, const char *text) {
    char path[900];
    snprintf(path, sizeof path, "%s/%s", dir, file);
    FILE *fp = fopen(path, "w");
    if (!fp) return 0;
    const int ok = fputs(text, fp) >= 0;
    return fclose(fp) == 0 && ok;
}

/* A memory cgroup of our own: v1 (memory.limit_in_bytes) under this
 * process's memory cgroup, else v2 (memory.max) under its unified one. */
static int cg_create(uint64_t limit, const char **why) {
    FILE *fp = fopen("/proc/self/cgroup", "r");
    char line[512], v1[600] = "", v2[600] = "";
    while (fp && fgets(line, sizeof line, fp)) {
        line[strcspn(line, "\n")] = 0;
        char *c1 = strchr(line, ':'), *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
        if (!c2) continue;
        if (!strncmp(c1 + 1, "memory", 6)) snprintf(v1, sizeof v1, "/sys/fs/cgroup/memory%s", c2 + 1);
        if (c1 + 1 == c2 && !strcmp(line, "0")) snprintf(v2, sizeof v2, "/sys/fs/cgroup%s", c2 + 1);
    }
    if (fp) fclose(fp);
    char v[32];
    snprintf(v, sizeof v, "%llu", (unsigned long long)limit);
    if (v1[0]) {
        snprintf(g_cg, sizeof g_cg, "%s/pl_bench_stream_%d", v1, (int)getpid());
        if ((mkdir(g_cg, 0755) == 0 || errno == EEXIST) && cg_write(g_cg, "memory.limit_in_bytes", v)) return 1;
        rmdir(g_cg);
    }
    if (v2[0]) {
        size_t l = strlen(v2);
        if (l > 1 && v2[l - 1] == '/') v2[l - 1] = 0;
        (void)cg_write(v2, "cgroup.subtree_control", "+memory"); /* may already be on */
        snprintf(g_cg, sizeof g_cg, "%s/pl_bench_stream_%d", v2, (int)getpid());
        if ((mkdir(g_cg, 0755) == 0 || errno == EEXIST) && cg_write(g_cg, "memory.max", v)) {
            cg_write(g_cg, "memory.swap.max", "0");
            return 1;
        }
        rmdir(g_cg);
        /* our cgroup holds processes, so it cannot delegate the memory
         * controller (no internal processes): a sibling at the top instead */
        snprintf(g_cg, sizeof g_cg, "/sys/fs/cgroup/pl_bench_stream_%d", (int)getpid());
        if ((mkdir(g_cg, 0755) == 0 || errno == EEXIST) && cg_write(g_cg, "memory.max", v)) {
            cg_write(g_cg, "memory.swap.max", "0");
            return 1;
        }
        rmdir(g_cg);
    }
    *why = "cannot create a memory cgroup here (needs root and a writable cgroup v1 memory or v2 hierarchy)";
    return 0;
}

typedef struct gen_result {
    int ok, n_gen;
    double gen_ms;
    uint64_t storage_bytes, requested_bytes, streamed_bytes;
    uint64_t peak_rss;
    char err[256];
} gen_result;

/* In a child inside the cgroup: load, evaluate a prompt, generate n tokens. */
static gen_result gen_in_cgroup(const char *model, const pl_model_params *mp, int n) {
    gen_result r = {0};
    int pfd[2];
    if (pipe(pfd) != 0) return r;
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        close(pfd[0]);
        char v[32];
        snprintf(v, sizeof v, "%d", (int)getpid());
        if (!cg_write(g_cg, "cgroup.procs", v)) _exit(3);
        gen_result c = {0};
        pl_model *m = NULL;
        pl_ctx *ctx = NULL;
        pl_ctx_params cp = pl_ctx_default_params();
        cp.n_ctx = 256;
        cp.n_threads = 2;
        pl_status st = pl_model_load(model, mp, &m);
        if (!st) st = pl_ctx_new(m, &cp, &ctx);
        pl_token bos = st ? 0 : pl_model_bos(m), tok = bos;
        if (!st) st = pl_ctx_decode(ctx, &bos, 1);
        pl_memory_stats s0, s1;
        pl_memory_snapshot(&s0);
        const uint64_t io0 = proc_io("read_bytes"), rc0 = proc_io("rchar");
        const double t0 = pl_time_ms();
        for (int i = 0; !st && i < n; i++) {
            const float *l = pl_ctx_logits(ctx, -1);
            int best = 0;
            for (int k = 1; k < pl_model_n_vocab(m); k++)
                if (l[k] > l[best]) best = k;
            tok = best;
            st = pl_ctx_decode(ctx, &tok, 1);
            c.n_gen++;
        }
        c.gen_ms = pl_time_ms() - t0;
        pl_memory_snapshot(&s1);
        c.storage_bytes = proc_io("read_bytes") - io0;
        c.requested_bytes = proc_io("rchar") - rc0;
        c.streamed_bytes = (uint64_t)(s1.stream_read_bytes - s0.stream_read_bytes);
        c.peak_rss = (uint64_t)s1.rss_peak_bytes;
        c.ok = st == PL_OK;
        if (st) snprintf(c.err, sizeof c.err, "%s", pl_last_error());
        pl_ctx_free(ctx);
        pl_model_free(m);
        if (write(pfd[1], &c, sizeof c) != (ssize_t)sizeof c) _exit(2);
        _exit(0);
    }
    close(pfd[1]);
    if (pid > 0) {
        if (read(pfd[0], &r, sizeof r) != (ssize_t)sizeof r) {
            r.ok = 0;
            snprintf(r.err, sizeof r.err, "the child died or could not join the cgroup (OOM kill?)");
        }
        int status;
        waitpid(pid, &status, 0);
    }
    close(pfd[0]);
    return r;
}

int main(int argc, char **argv) {
    (void)argc;
    snprintf(g_cli, sizeof g_cli, "%s", argv[0]);
    char *slash = strrchr(g_cli, '/');
    if (slash) *slash = 0;
    slash = strrchr(g_cli, '/');
    if (slash) snprintf(slash + 1, sizeof g_cli - (size_t)(slash + 1 - g_cli), "pocketllm");
    else snprintf(g_cli, sizeof g_cli, "build/pocketllm");
    char model[512];
    int made = 0;
    const char *given = getenv("PL_BENCH_MODEL");
    if (given) {
        snprintf(model, sizeof model, "%s", given);
    } else {
        const char *vocab = "../shared/models/kjv-llama-q8_0.gguf";
        snprintf(model, sizeof model, "/tmp/pl_bench_1b_%d.gguf", (int)getpid());
        char *mk[] = {g_cli, "make-random", "-o", model, "--type", "q4_0", "--vocab-from", (char *)vocab, NULL};
        if (access(vocab, R_OK) != 0) mk[6] = NULL; /* a synthetic vocabulary of the same size */
        printf("making a random 1B q4_0 model: %s\n", model);
        if (run_cmd(mk, 0, NULL) != 0) {
            printf("bench_stream: make-random failed\n");
            return 1;
        }
        made = 1;
    }
    /* 1. plan vs measured */
    pl_ctx_params cp = pl_ctx_default_params();
    cp.n_ctx = 256;
    cp.n_threads = 2;
    pl_plan plan;
    if (pl_plan_file(model, NULL, &cp, &plan)) {
        printf("plan failed: %s\n", pl_last_error());
        goto out;
    }
    if (!getenv("PL_BENCH_SKIP_RSS")) {
        char *run[] = {g_cli, "run", "-m", model, "-c", "256", "-n", "-1", "--ignore-eos", "--ids", "-t", "2", "--temp", "0", NULL};
        struct rusage ru;
        const double t0 = pl_time_ms();
        const int rc = run_cmd(run, 1, &ru);
        printf("plan vs measured (ctx 256 filled, %.0f s): plan %.1f MiB, peak RSS %.1f MiB (%+.2f%%)%s\n",
               (pl_time_ms() - t0) / 1e3, mib((double)plan.total_bytes), mib(ru.ru_maxrss * 1024.0),
               100.0 * (ru.ru_maxrss * 1024.0 - (double)plan.total_bytes) / (double)plan.total_bytes,
               rc ? " (run failed)" : "");
    }
    /* 2. storage */
    const double bw = read_bandwidth(model);
    printf("storage: sequential read %.0f MB/s (cold, 64 MiB reads, best of 3)\n", bw);
    /* 3. cgroup at 50 % of the weights */
    const uint64_t limit = (uint64_t)plan.weights_bytes / 2;
    const char *why = NULL;
    if (!cg_create(limit, &why)) {
        printf("streaming vs mmap: skipped (%s)\n", why);
        goto out;
    }
    pl_model_params mp = pl_model_default_params();
    mp.stream = PL_STREAM_AUTO;
    mp.budget_bytes = limit;
    pl_plan sp;
    pl_plan_file(model, &mp, &cp, &sp);
    printf("cgroup limit %.1f MiB (50%% of %.1f MiB of weights); streaming plan: %d of %d layers resident, window %.1f MiB, "
           "%.1f MiB read per token, total %.1f MiB\n",
           mib((double)limit), mib((double)plan.weights_bytes), sp.n_layer_resident, sp.n_layer,
           mib((double)sp.stream_window_bytes), mib((double)sp.stream_bytes_per_token), mib((double)sp.total_bytes));
    const int n_stream = getenv("PL_BENCH_TOKENS") ? atoi(getenv("PL_BENCH_TOKENS")) : 12;
    drop_cache(model);
    gen_result rs = gen_in_cgroup(model, &mp, n_stream);
    pl_model_params mm = pl_model_default_params();
    mm.budget_bytes = PL_BUDGET_NONE;
    drop_cache(model);
    gen_result rm = gen_in_cgroup(model, &mm, n_stream > 6 ? n_stream / 2 : n_stream);
    const double ts = rs.ok && rs.gen_ms > 0 ? rs.n_gen * 1e3 / rs.gen_ms : 0;
    const double tm = rm.ok && rm.gen_ms > 0 ? rm.n_gen * 1e3 / rm.gen_ms : 0;
    const double per_tok = rs.n_gen ? (double)rs.streamed_bytes / rs.n_gen : 0;
    const double bound = per_tok > 0 ? bw * 1e6 / per_tok : 0;
    if (rs.ok)
        printf("streaming: %.2f tok/s, %.1f MiB streamed per token (%.1f MiB from storage), peak RSS %.1f MiB\n", ts,
               mib(per_tok), mib(rs.n_gen ? (double)rs.storage_bytes / rs.n_gen : 0), mib((double)rs.peak_rss));
    else
        printf("streaming: failed: %s\n", rs.err);
    if (rm.ok)
        printf("plain mmap: %.2f tok/s, %.1f MiB from storage per token, peak RSS %.1f MiB\n", tm,
               mib(rm.n_gen ? (double)rm.storage_bytes / rm.n_gen : 0), mib((double)rm.peak_rss));
    else
        printf("plain mmap: failed: %s\n", rm.err);
    if (rs.ok && bound > 0)
        printf("read-bandwidth bound for streaming: %.2f tok/s; streaming reaches %.0f%% of it (goal: within 1.5x, i.e. >= 67%%)\n",
               bound, 100.0 * ts / bound);
    if (rs.ok && rm.ok && tm > 0) printf("streaming / mmap: %.1fx (goal: >= 3x)\n", ts / tm);
    rmdir(g_cg);
out:
    if (made) remove(model);
    return 0;
}
