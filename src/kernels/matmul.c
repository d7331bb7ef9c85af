/*
 * Matrix times a batch of activation rows, threaded over weight rows.
 *
 * Two paths, same results up to float rounding order:
 *  - row dots (few tokens, or no tiled kernel for the type): each
 *    activation row is converted once to the weight type's vec_dot_type
 *    (ggml's scheme), then every weight row is dotted with all T rows while it
 *    is hot in cache, with the dispatched vec_dot (four rows per call where
 *    the level has a vec_dot4, for more independent work per call);
 *  - tiled (prompt processing): activations are packed once into the tiled
 *    kernel's layout and the kernel computes blocks of rows x tokens, so each
 *    weight block is unpacked once per tile and reused across tokens;
 *  - packed weights (kern_pack's row-interleaved copy): the packed layout's
 *    kernels (kern_ops.packed), except from KERN_PACKED_TILE_MIN_T tokens
 *    on levels whose tiles beat them (kern_ops.packed_tiles), where each
 *    tile's rows are unpacked into a stack buffer and fed to the tiles, so
 *    prompts run as fast as with the file's layout (the unpacking is one
 *    pass over the weights per call, against T passes of compute).
 * Threads claim chunks of rows (whole tiles) through pool_for, so a thread
 * that runs slower (a busy core) simply takes fewer chunks; there are several
 * chunks per thread. Products too small to repay a pool wake-up
 * (below MATMUL_PARALLEL_MACS) run on the calling thread alone.
 */
#include "kern_impl.h"

#include <string.h>

enum {
    MATMUL_PARALLEL_MACS = 1 << 20, /* n_in * n_out * T below this: one thread */
    MATMUL_CHUNKS_PER_THREAD = 8,   /* row chunks per thread, for balance */
    MATMUL_INLINE_CONVERT = 1 << 15, /* T * n_in below this: convert on the caller */
    /* rows up to this many elements go 4 per vec_dot4 call: short rows are
     * dominated by per-call and reduction latency (1.5-1.9x faster at 256),
     * while long ones are streamed better one at a time (measured 15-40 %
     * slower as 4 interleaved streams at 2048) */
    MATMUL_DOT4_MAX_IN = 1024
};

/* stack bytes for the rows of one tile unpacked (plan_overhead_bytes counts
 * 128 KiB of touched stack per thread: this and a tile's panel) */
enum { MATMUL_UNPACK_MAX = 48 * 1024 };

/* Packed weights through the tiled kernel (one tile's rows unpacked at a time)? */
static bool matmul_unpacks(const kern_ops *o, const kern_matrix *w, int T) {
    if (!w->packed || !o->packed_tiles[w->type] || T < KERN_PACKED_TILE_MIN_T) return false;
    const kern_gemm *g = &o->gemm[w->type];
    return g->rows && T >= g->min_T && kern_pack_group_rows() % g->row_tile == 0 &&
           (size_t)g->row_tile * quant_row_size(w->type, w->n_in) <= MATMUL_UNPACK_MAX;
}

static const kern_gemm *matmul_gemm(const kern_ops *o, const kern_matrix *w, int T) {
    if (matmul_unpacks(o, w, T)) return &o->gemm[w->type];
    if (w->packed) return &o->packed[w->type]; /* every level has one for each packed type */
    if (w->type >= QT_COUNT || !o->gemm[w->type].rows || T < o->gemm[w->type].min_T) return NULL;
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
    kern_vec_dot4_fn vec_dot4; /* 4 rows at a time where the level has it */
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
    int64_t chunk_rows; /* rows per claimed chunk (a multiple of the tile) */
    bool unpack;        /* packed weights fed to the tiled kernel a tile's rows at a time */
} matmul_job;

/* activation rows [t0, t1) */
static void matmul_convert(void *arg, int64_t t0, int64_t t1, int thread) {
    matmul_job *j = arg;
    (void)thread;
    for (int64_t t = t0; t < t1; t++)
        j->convert(j->X + (size_t)t * j->ldx, j->scratch_w + (size_t)t * j->act_row, j->w->n_in);
}

/* weight rows [r0, r1) */
static void matmul_rows(void *arg, int64_t r0, int64_t r1, int thread) {
    matmul_job *j = arg;
    (void)thread;
    const size_t wrow = quant_row_size(j->w->type, j->w->n_in);
    const uint8_t *W = j->w->data;
    int64_t r = r0;
    for (; j->vec_dot4 && r + 4 <= r1; r += 4) {
        const uint8_t *wr = W + (size_t)r * wrow;
        for (int t = 0; t < j->T; t++) {
            float s[4];
            j->vec_dot4((int)j->w->n_in, s, wr, wrow, j->act + (size_t)t * j->act_row);
            float *y = j->Y + (size_t)t * j->ldy + r;
            for (int k = 0; k < 4; k++) y[k] = s[k] + (j->bias ? j->bias[r + k] : 0.0f);
        }
    }
    for (; r < r1; r++) {
        const uint8_t *wr = W + (size_t)r * wrow;
        const float b = j->bias ? j->bias[r] : 0.0f;
        for (int t = 0; t < j->T; t++) {
            float s;
            j->vec_dot((int)j->w->n_in, &s, wr, j->act + (size_t)t * j->act_row);
            j->Y[(size_t)t * j->ldy + r] = s + b;
        }
    }
}

/* weight rows [r0, r1), whole tiles */
static void matmul_tiles(void *arg, int64_t r0, int64_t r1, int thread) {
    matmul_job *j = arg;
    (void)thread;
    const kern_gemm_job gj = {.w = j->w->packed ? j->w->packed : j->w->data,
                              .w_row = quant_row_size(j->w->type, j->w->n_in),
                              .n_in = j->w->n_in, .act = j->act, .act_row = j->act_row, .T = j->T,
                              .Y = j->Y, .ldy = j->ldy, .bias = j->bias};
    if (!j->unpack) {
        j->gemm->rows(&gj, r0, r1);
        return;
    }
    _Alignas(64) uint8_t rows[MATMUL_UNPACK_MAX];
    const int n = j->gemm->row_tile; /* divides the packed groups' 8 rows */
    for (int64_t g0 = r0; g0 < r1; g0 += n) {
        for (int r = 0; r < n; r++) kern_unpack_row(j->w, j->w->packed, g0 + r, rows + (size_t)r * gj.w_row);
        kern_gemm_job gg = gj;
        gg.w = rows;
        gg.Y = j->Y + g0;
        gg.bias = j->bias ? j->bias + g0 : NULL;
        j->gemm->rows(&gg, 0, n);
    }
}

/* Runs fn over n items in chunks on the pool, or on the calling thread alone
 * in one call when `alone`. */
static void matmul_run(pl_pool *pool, bool alone, int64_t n, int64_t chunk, pl_pool_range_fn fn, matmul_job *j) {
    if (alone) fn(j, 0, n, 0);
    else pool_for(pool, n, chunk, fn, j);
}

void kern_matmul(pl_pool *pool, const kern_matrix *w, const float *X, int ldx, int T,
                 float *Y, int ldy, const float *bias, void *scratch) {
    const kern_ops *o = kern_ops_get();
    const quant_traits *tr = quant_get(w->type);
    matmul_job j = {.w = w, .vec_dot = o->vec_dot[w->type], .X = X, .ldx = ldx, .T = T,
                    .Y = Y, .ldy = ldy, .bias = bias, .scratch_w = scratch};
    if (w->n_in <= MATMUL_DOT4_MAX_IN) j.vec_dot4 = o->vec_dot4[w->type];
    j.gemm = matmul_gemm(o, w, T);
    j.unpack = matmul_unpacks(o, w, T);
    const int nth = pool_size(pool);
    const double macs = (double)w->n_in * (double)w->n_out * T;
    const bool alone = nth == 1 || macs < MATMUL_PARALLEL_MACS;
    const bool convert_alone = alone || T == 1 || (double)T * (double)w->n_in < MATMUL_INLINE_CONVERT;
    /* chunks: whole tiles, about MATMUL_CHUNKS_PER_THREAD per thread */
    const int64_t tile = j.unpack ? kern_pack_group_rows() : j.gemm ? j.gemm->row_tile : j.vec_dot4 ? 4 : 1;
    const int64_t per = (w->n_out + (int64_t)nth * MATMUL_CHUNKS_PER_THREAD - 1) / ((int64_t)nth * MATMUL_CHUNKS_PER_THREAD);
    j.chunk_rows = alone ? w->n_out : (per + tile - 1) / tile * tile;
    if (j.chunk_rows < 1) j.chunk_rows = 1;
    if (j.gemm) {
        j.act_row = j.gemm->act_size(w->n_in);
        j.convert = j.gemm->act_pack;
        matmul_run(pool, convert_alone, T, 0, matmul_convert, &j);
        j.act = scratch;
        matmul_run(pool, alone, w->n_out, j.chunk_rows, matmul_tiles, &j);
        return;
    }
    if (tr->vec_dot_type == QT_F32) {
        /* f32 input is used in place: vec_dot reads n_in floats from each row start */
        j.act = (const uint8_t *)X;
        j.act_row = (size_t)ldx * sizeof(float);
    } else {
        j.act_row = quant_row_size(tr->vec_dot_type, w->n_in);
        j.convert = o->from_float[tr->vec_dot_type];
        matmul_run(pool, convert_alone, T, 0, matmul_convert, &j);
        j.act = scratch;
    }
    matmul_run(pool, alone, w->n_out, j.chunk_rows, matmul_rows, &j);
}
