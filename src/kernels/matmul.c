/*
 * Matrix times a batch of activation rows, threaded over weight rows.
 *
 * Two paths, same results up to float rounding order:
 *  - row dots (T < KERN_GEMM_MIN_T, or no tiled kernel for the type): each
 *    activation row is converted once to the weight type's vec_dot_type
 *    (ggml's scheme), then every weight row is dotted with all T rows while it
 *    is hot in cache, with the dispatched vec_dot;
 *  - tiled (prompt processing): activations are packed once into the tiled
 *    kernel's layout and the kernel computes blocks of rows x tokens, so each
 *    weight block is unpacked once per tile and reused across tokens.
 * Rows are split between threads in contiguous ranges that start on tile
 * boundaries, so every thread gets the same number of tiles (+-1).
 */
#include "kern_impl.h"

#include <string.h>

static const kern_gemm *matmul_gemm(const kern_ops *o, const kern_matrix *w, int T) {
    if (T < KERN_GEMM_MIN_T || w->type >= QT_COUNT || !o->gemm[w->type].rows) return NULL;
    return &o->gemm[w->type];
}

size_t kern_matmul_scratch(const kern_matrix *w, int T) {
    const quant_traits *tr = quant_get(w->type);
    if (!tr || T <= 0) return 0;
    const kern_gemm *g = matmul_gemm(kern_ops_get(), w, T);
    if (g) return g->act_size(w->n_in) * (size_t)T;
    if (tr->vec_dot_type == QT_F32) return 0;
    return (size_t)quant_row_size(tr->vec_dot_type, w->n_in) * (size_t)T;
}

typedef struct matmul_job {
    const kern_matrix *w;
    quant_vec_dot_fn vec_dot;
    quant_from_float_fn convert; /* activations -> vec_dot_type, or the gemm's act_pack */
    const kern_gemm *gemm;
    const float *X;
    int ldx, T;
    float *Y;
    int ldy;
    const float *bias;
    const uint8_t *act; /* converted activations */
    size_t act_row;     /* bytes per converted row */
    uint8_t *scratch_w;
} matmul_job;

static void matmul_convert(void *arg, int ith, int nth) {
    matmul_job *j = arg;
    for (int t = ith; t < j->T; t += nth)
        j->convert(j->X + (size_t)t * j->ldx, j->scratch_w + (size_t)t * j->act_row, j->w->n_in);
}

static void matmul_rows(void *arg, int ith, int nth) {
    matmul_job *j = arg;
    const int64_t n_out = j->w->n_out;
    const int64_t r0 = n_out * ith / nth, r1 = n_out * (ith + 1) / nth;
    const size_t wrow = quant_row_size(j->w->type, j->w->n_in);
    const uint8_t *W = j->w->data;
    for (int64_t r = r0; r < r1; r++) {
        const uint8_t *wr = W + (size_t)r * wrow;
        const float b = j->bias ? j->bias[r] : 0.0f;
        for (int t = 0; t < j->T; t++) {
            float s;
            j->vec_dot((int)j->w->n_in, &s, wr, j->act + (size_t)t * j->act_row);
            j->Y[(size_t)t * j->ldy + r] = s + b;
        }
    }
}

static void matmul_tiles(void *arg, int ith, int nth) {
    matmul_job *j = arg;
    const int64_t tile = j->gemm->row_tile, n_tiles = (j->w->n_out + tile - 1) / tile;
    const int64_t r0 = n_tiles * ith / nth * tile;
    int64_t r1 = n_tiles * (ith + 1) / nth * tile;
    if (r1 > j->w->n_out) r1 = j->w->n_out;
    if (r0 >= r1) return;
    const kern_gemm_job gj = {.w = j->w->data, .w_row = quant_row_size(j->w->type, j->w->n_in),
                              .n_in = j->w->n_in, .act = j->act, .act_row = j->act_row, .T = j->T,
                              .Y = j->Y, .ldy = j->ldy, .bias = j->bias};
    j->gemm->rows(&gj, r0, r1);
}

void kern_matmul(pl_pool *pool, const kern_matrix *w, const float *X, int ldx, int T,
                 float *Y, int ldy, const float *bias, void *scratch) {
    const kern_ops *o = kern_ops_get();
    const quant_traits *tr = quant_get(w->type);
    matmul_job j = {.w = w, .vec_dot = o->vec_dot[w->type], .X = X, .ldx = ldx, .T = T,
                    .Y = Y, .ldy = ldy, .bias = bias, .scratch_w = scratch};
    j.gemm = matmul_gemm(o, w, T);
    if (j.gemm) {
        j.act_row = j.gemm->act_size(w->n_in);
        j.convert = j.gemm->act_pack;
        pool_run(pool, matmul_convert, &j);
        j.act = scratch;
        pool_run(pool, matmul_tiles, &j);
        return;
    }
    if (tr->vec_dot_type == QT_F32) {
        /* f32 input is used in place: vec_dot reads n_in floats from each row start */
        j.act = (const uint8_t *)X;
        j.act_row = (size_t)ldx * sizeof(float);
    } else {
        j.act_row = quant_row_size(tr->vec_dot_type, w->n_in);
        j.convert = o->from_float[tr->vec_dot_type];
        pool_run(pool, matmul_convert, &j);
        j.act = scratch;
    }
    pool_run(pool, matmul_rows, &j);
}
