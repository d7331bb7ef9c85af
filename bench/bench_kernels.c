/*
 * bench_kernels: kern_matmul throughput per weight type, kernel level and
 * thread count, for matrix-vector (T = 1, token generation) and matrix-matrix
 * (T = 128, prompt processing) products at two shapes (n_in x n_out):
 * 2048 x 2048 and 2048 x 8192. Prints GB/s of weight bytes read per matmul
 * and GFLOP/s (2 n_in n_out T flops per matmul). Figures only.
 *
 * Usage: bench_kernels [TYPE ...]   e.g. bench_kernels q4_0 q4_K  (default:
 * every type). PL_BENCH_MS sets the minimum time per figure (default 200);
 * PL_BENCH_LEVELS=avx2,avx512 limits the kernel levels (default: all the CPU
 * has), PL_BENCH_T=1,4,128 the token counts (default 1,128). Types with a
 * packed layout (kern_pack) are measured in both layouts.
 * The scalar level's T = 128 figure is taken on the smaller shape only: it
 * runs the same row dots as T = 1, and takes seconds per call on the larger.
 */
#include "kernels/kernels.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const uint32_t k_types[] = {QT_Q4_0, QT_Q4_1, QT_Q5_0, QT_Q5_1, QT_Q8_0, QT_Q2_K, QT_Q3_K,
                                   QT_Q4_K, QT_Q5_K, QT_Q6_K, QT_F16,  QT_BF16, QT_F32};
static const int64_t k_shapes[][2] = {{2048, 2048}, {2048, 8192}};
static const int k_Ts[] = {1, 128};
#define BENCH_MAX_T 128

/* Whether name is in the comma-separated list (NULL or empty: everything). */
static int in_list(const char *list, const char *name) {
    if (!list || !*list) return 1;
    const size_t n = strlen(name);
    for (const char *p = list; *p;) {
        const char *e = strchr(p, ',');
        const size_t len = e ? (size_t)(e - p) : strlen(p);
        if (len == n && strncmp(p, name, n) == 0) return 1;
        if (!e) break;
        p = e + 1;
    }
    return 0;
}

/* Token counts from PL_BENCH_T (1..BENCH_MAX_T each), else k_Ts. */
static int bench_Ts(int *Ts, int max) {
    const char *env = getenv("PL_BENCH_T");
    int n = 0;
    for (const char *p = env; p && *p && n < max;) {
        char *end;
        const long t = strtol(p, &end, 10);
        if (end == p) break;
        if (t >= 1 && t <= BENCH_MAX_T) Ts[n++] = (int)t;
        p = *end == ',' ? end + 1 : end;
    }
    for (size_t i = 0; n == 0 && i < sizeof k_Ts / sizeof k_Ts[0]; i++) Ts[i] = k_Ts[i];
    return n ? n : (int)(sizeof k_Ts / sizeof k_Ts[0]);
}

static float rnd_gauss(uint64_t *s) {
    double u[2];
    for (int i = 0; i < 2; i++) {
        *s = *s * 6364136223846793005ull + 1442695040888963407ull;
        u[i] = ((double)(*s >> 11) + 1) * 0x1p-53;
    }
    return (float)(sqrt(-2 * log(u[0])) * cos(6.283185307179586 * u[1]));
}

static int wanted(uint32_t type, int argc, char **argv) {
    if (argc < 2) return 1;
    for (int i = 1; i < argc; i++)
        if (quant_type_from_name(argv[i]) == (int)type) return 1;
    return 0;
}

int main(int argc, char **argv) {
    const char *ms_env = getenv("PL_BENCH_MS");
    const double min_ms = ms_env ? atof(ms_env) : 200.0;
    const int64_t max_in = 2048, max_out = 8192, max_T = BENCH_MAX_T;
    const char *levels = getenv("PL_BENCH_LEVELS");
    int Ts[16];
    const int nT = bench_Ts(Ts, 16);
    float *wf = malloc(sizeof(float) * (size_t)(max_in * max_out));
    float *X = malloc(sizeof(float) * (size_t)(max_in * max_T)), *Y = malloc(sizeof(float) * (size_t)(max_out * max_T));
    void *W = malloc(quant_row_size(QT_F32, max_in) * (size_t)max_out);
    pl_pool *pools[2] = {NULL, NULL};
    if (!wf || !X || !Y || !W || pool_new(1, &pools[0]) != PL_OK || pool_new(2, &pools[1]) != PL_OK) {
        fprintf(stderr, "bench_kernels: out of memory\n");
        return 1;
    }
    uint64_t seed = 7;
    for (int64_t i = 0; i < max_in * max_out; i++) wf[i] = rnd_gauss(&seed) * 0.02f;
    for (int64_t i = 0; i < max_in * max_T; i++) X[i] = rnd_gauss(&seed);

    printf("cpu level %s; min %.0f ms per figure\n", kern_level_name(), min_ms);
    printf("%-5s %-6s %-6s %-11s %4s %3s %9s %9s %9s\n", "type", "layout", "level", "n_in x n_out", "T", "thr", "ms/call",
           "GB/s", "GFLOP/s");
    for (size_t ti = 0; ti < sizeof k_types / sizeof k_types[0]; ti++) {
        const uint32_t type = k_types[ti];
        if (!wanted(type, argc, argv)) continue;
        const quant_traits *tr = quant_get(type);
        for (size_t si = 0; si < sizeof k_shapes / sizeof k_shapes[0]; si++) {
            const int64_t n_in = k_shapes[si][0], n_out = k_shapes[si][1];
            tr->from_float(wf, W, n_in * n_out);
            const double wbytes = (double)quant_row_size(type, n_in) * (double)n_out;
            /* the file's rows, and where the type has one, the loader's packed copy */
            void *P = kern_pack_supported(type, n_in, n_out) ? malloc((size_t)wbytes) : NULL;
            kern_matrix mats[2] = {{.data = W, .type = type, .n_in = n_in, .n_out = n_out}};
            if (P) {
                mats[1] = mats[0];
                kern_pack(&mats[0], 0, n_out / kern_pack_group_rows(), P);
                mats[1].packed = P;
            }
            for (int lay = 0; lay < (P ? 2 : 1); lay++)
            for (int lv = KERN_SCALAR; lv <= (int)kern_cpu_level(); lv++) {
                const kern_matrix m = mats[lay];
                const kern_level level = kern_force((kern_level)lv);
                if ((int)level != lv) continue; /* no kernels of its own at this level */
                if (!in_list(levels, kern_level_name())) continue;
                for (int k = 0; k < nT; k++) {
                    const int T = Ts[k];
                    if (level == KERN_SCALAR && T > 1 && si > 0) continue;
                    void *scratch = malloc(kern_matmul_scratch(&m, T) + 1);
                    for (int th = 0; th < 2 && scratch; th++) {
                        if (T < 16) /* warm up (a T = 128 call is long enough to be its own) */
                            kern_matmul(pools[th], &m, X, (int)n_in, T, Y, (int)n_out, NULL, scratch);
                        int reps = 0;
                        const double t0 = pl_time_ms();
                        double ms;
                        do {
                            kern_matmul(pools[th], &m, X, (int)n_in, T, Y, (int)n_out, NULL, scratch);
                            reps++;
                        } while ((ms = pl_time_ms() - t0) < min_ms);
                        const double per = ms / reps;
                        printf("%-5s %-6s %-6s %5lldx%-5lld %4d %3d %9.3f %9.2f %9.2f\n", tr->name,
                               lay ? "packed" : "rows", kern_level_name(),
                               (long long)n_in, (long long)n_out, T, th + 1, per, wbytes / (per * 1e6),
                               2.0 * (double)n_in * (double)n_out * T / (per * 1e6));
                        fflush(stdout);
                    }
                    free(scratch);
                }
            }
            free(P);
        }
    }
    pool_free(pools[0]);
    pool_free(pools[1]);
    free(wf);
    free(X);
    free(Y);
    free(W);
    return 0;
}
