/*
 * bench_quant: throughput of the scalar reference kernels of every type.
 *
 * For each type: dequantize (to_float) and vec_dot (against activations in
 * the type's vec_dot_type) over a 1M-element weight matrix of 4096-element
 * rows, in GB/s of weight bytes read, and quantize (from_float) in millions
 * of elements per second. Single thread. Figures only: nothing is asserted.
 */
#include "core/core.h"
#include "quant/quant.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ROW 4096
#define ROWS 256
#define MIN_MS 150.0 /* repeat each measurement for at least this long */

static const uint32_t k_types[] = {QT_F32, QT_F16, QT_BF16, QT_Q4_0, QT_Q4_1, QT_Q5_0, QT_Q5_1, QT_Q8_0,
                                   QT_Q2_K, QT_Q3_K, QT_Q4_K, QT_Q5_K, QT_Q6_K, QT_Q8_K};

static volatile float g_sink; /* keeps the compiler from dropping the work */

static float rnd_gauss(uint64_t *s) {
    double u[2];
    for (int i = 0; i < 2; i++) {
        *s = *s * 6364136223846793005ull + 1442695040888963407ull;
        u[i] = ((double)(*s >> 11) + 1) * 0x1p-53;
    }
    return (float)(sqrt(-2 * log(u[0])) * cos(6.283185307179586 * u[1]));
}

int main(void) {
    const int64_t n = (int64_t)ROW * ROWS;
    float *x = malloc((size_t)n * sizeof(float)), *y = malloc((size_t)n * sizeof(float));
    void *w = malloc(quant_row_size(QT_F32, n)), *act = malloc(quant_row_size(QT_F32, ROW));
    if (!x || !y || !w || !act) {
        fprintf(stderr, "bench_quant: out of memory\n");
        return 1;
    }
    uint64_t seed = 42;
    for (int64_t i = 0; i < n; i++) x[i] = rnd_gauss(&seed);

    printf("%-5s %9s %14s %14s %14s\n", "type", "bytes/w", "dequant GB/s", "vec_dot GB/s", "quant Melem/s");
    for (size_t ti = 0; ti < sizeof k_types / sizeof k_types[0]; ti++) {
        const quant_traits *t = quant_get(k_types[ti]);
        const double wbytes = (double)quant_row_size(k_types[ti], n);
        const uint64_t rs = quant_row_size(k_types[ti], ROW);

        int reps = 0;
        double t0 = pl_time_ms(), ms;
        do {
            t->from_float(x, w, n);
            reps++;
        } while ((ms = pl_time_ms() - t0) < MIN_MS);
        const double q_melem = (double)n * reps / (ms * 1e3);

        reps = 0;
        t0 = pl_time_ms();
        do {
            t->to_float(w, y, n);
            g_sink = y[reps % n];
            reps++;
        } while ((ms = pl_time_ms() - t0) < MIN_MS);
        const double dq_gbs = wbytes * reps / (ms * 1e6);

        double dot_gbs = 0;
        if (t->vec_dot) {
            quant_get(t->vec_dot_type)->from_float(x, act, ROW);
            reps = 0;
            t0 = pl_time_ms();
            do {
                float s = 0, acc = 0;
                for (int r = 0; r < ROWS; r++) {
                    t->vec_dot(ROW, &s, (const uint8_t *)w + (size_t)r * rs, act);
                    acc += s;
                }
                g_sink = acc;
                reps++;
            } while ((ms = pl_time_ms() - t0) < MIN_MS);
            dot_gbs = wbytes * reps / (ms * 1e6);
        }
        printf("%-5s %9.4f %14.2f ", t->name, wbytes / (double)n, dq_gbs);
        if (t->vec_dot) printf("%14.2f ", dot_gbs);
        else printf("%14s ", "-");
        printf("%14.1f\n", q_melem);
    }
    free(x);
    free(y);
    free(w);
    free(act);
    return 0;
}
