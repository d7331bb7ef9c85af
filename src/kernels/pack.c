/*
 * pack: row-interleaved copies of weight matrices, for the matrix-vector
 * products of decode above all (the "weight repacking at load").
 *
 * Rows are taken in groups of 8, and a group holds its block columns in
 * order: the 8 rows' blocks of one column rearranged into one unit of the
 * same size, so group g starts where row 8g started and a copy has the
 * file's size. Inside a unit, the quant bytes go in 32-byte chunks that hold
 * 4 bytes of each row in turn (row r at 4r): one load gives every row the same
 * 4-byte slice, each row in its own 32-bit lane, which a kernel multiplies by
 * the matching activation bytes broadcast to all lanes, so the 8 rows' sums
 * land in the 8 lanes of one vector: no horizontal reductions, the scales of
 * 8 rows converted at once, one sequential stream instead of 8.
 *
 * Q4_0 unit (8 x 18 = 144 bytes):
 *   0    8 x fp16 d
 *   16   4 chunks: chunk k = each row's qs[4k .. 4k+3] (low nibbles are
 *        levels 4k.., high nibbles 16+4k..)
 * Q8_0 unit (8 x 34 = 272 bytes):
 *   0    8 x fp16 d
 *   16   8 chunks: chunk k = each row's qs[4k .. 4k+3]
 * Q4_K unit (8 x 144 = 1152 bytes):
 *   0    8 x fp16 d,   16  8 x fp16 dmin
 *   32   64 bytes: entry i = 8s + r (sub-block s, row r) holds the low 4 bits
 *        of scale (bits 0-3) and min (bits 4-7)
 *   96   32 bytes: byte j holds the top 2 bits of entry j's scale (bits 0-1)
 *        and min (2-3), and of entry j+32's scale (4-5) and min (6-7)
 *   128  32 chunks: chunk 8p + k = each row's qs[32p + 4k .. +3] (low nibbles
 *        are sub-block 2p levels 4k.., high nibbles sub-block 2p+1)
 * The 6-bit scales take the same 96 bits per row as in the file, only
 * regrouped so a kernel decodes 64 of them with a few vector operations.
 * Q6_K unit (8 x 210 = 1680 bytes):
 *   0    8 x fp16 d
 *   16   128 bytes: entry 8s + r = the int8 scale of sub-block s (16 levels), row r
 *   144  16 triples of chunks, in the order a kernel reads them: triple 8n + k
 *        (half n = 0, 1; k = 0..7) = each row's ql[64n + 4k ..], ql[64n + 32 + 4k ..]
 *        and qh[32n + 4k ..] (4 bytes each), which hold levels 128n + 4k..,
 *        +32, +64 and +96 as the file's bytes do
 * (one forward stream: with ql and qh in separate regions, read a sub-block
 * column at a time, a 2048 x 8192 product ran 2x slower out of cache.)
 *
 * The kernels reading packed copies are kern_ops.packed tables: portable
 * ones here (every level can run packed weights, e.g. after kern_force),
 * which unpack each block and call the type's reference dot, and faster ones
 * per ISA, which
 * set packed_pays (the level where packing is worth its copy).
 */
#include "kern_impl.h"

#include "../quant/quant_ref.h"

#include <stddef.h>
#include <string.h>

enum { PACK_ROWS = 8 };

/* bytes of one row's block of any packed type: the buffers that unpack one */
enum { PACK_MAX_BLOCK = sizeof(block_q6_K) };
_Static_assert(PACK_MAX_BLOCK >= sizeof(block_q4_0) && PACK_MAX_BLOCK >= sizeof(block_q8_0) &&
                   PACK_MAX_BLOCK >= sizeof(block_q4_K),
               "the block buffers hold every packed type's block");

typedef struct pack_desc {
    uint32_t type;
    int blck;      /* elements per block */
    size_t bytes;  /* bytes per block of one row */
    /* block b of the 8 rows src[] -> one unit; and one row's block back */
    void (*pack)(const uint8_t *const src[PACK_ROWS], int64_t b, uint8_t *unit);
    void (*unpack)(const uint8_t *unit, int r, uint8_t *block);
} pack_desc;

/* chunked quant bytes: n4 slices of 4 bytes per row */
static void pack_chunks(const uint8_t *const qs[PACK_ROWS], int n4, uint8_t *out) {
    for (int k = 0; k < n4; k++)
        for (int r = 0; r < PACK_ROWS; r++) memcpy(out + 32 * k + 4 * r, qs[r] + 4 * k, 4);
}

static void unpack_chunks(const uint8_t *in, int n4, int r, uint8_t *qs) {
    for (int k = 0; k < n4; k++) memcpy(qs + 4 * k, in + 32 * k + 4 * r, 4);
}

static void pack_q4_0(const uint8_t *const src[PACK_ROWS], int64_t b, uint8_t *u) {
    const uint8_t *qs[PACK_ROWS];
    for (int r = 0; r < PACK_ROWS; r++) {
        const block_q4_0 *x = (const block_q4_0 *)src[r] + b;
        memcpy(u + 2 * r, &x->d, 2);
        qs[r] = x->qs;
    }
    pack_chunks(qs, 4, u + 16);
}

static void unpack_q4_0(const uint8_t *u, int r, uint8_t *block) {
    block_q4_0 *y = (block_q4_0 *)block;
    memcpy(&y->d, u + 2 * r, 2);
    unpack_chunks(u + 16, 4, r, y->qs);
}

static void pack_q8_0(const uint8_t *const src[PACK_ROWS], int64_t b, uint8_t *u) {
    const uint8_t *qs[PACK_ROWS];
    for (int r = 0; r < PACK_ROWS; r++) {
        const block_q8_0 *x = (const block_q8_0 *)src[r] + b;
        memcpy(u + 2 * r, &x->d, 2);
        qs[r] = (const uint8_t *)x->qs;
    }
    pack_chunks(qs, 8, u + 16);
}

static void unpack_q8_0(const uint8_t *u, int r, uint8_t *block) {
    block_q8_0 *y = (block_q8_0 *)block;
    memcpy(&y->d, u + 2 * r, 2);
    unpack_chunks(u + 16, 8, r, (uint8_t *)y->qs);
}

static void pack_q4_K(const uint8_t *const src[PACK_ROWS], int64_t b, uint8_t *u) {
    const uint8_t *qs[PACK_ROWS];
    memset(u + 96, 0, 32);
    for (int r = 0; r < PACK_ROWS; r++) {
        const block_q4_K *x = (const block_q4_K *)src[r] + b;
        memcpy(u + 2 * r, &x->d, 2);
        memcpy(u + 16 + 2 * r, &x->dmin, 2);
        for (int s = 0; s < 8; s++) {
            uint8_t sc, m;
            quant_k4_get_scale_min(s, x->scales, &sc, &m);
            const int i = 8 * s + r;
            u[32 + i] = (uint8_t)((sc & 0xF) | (m & 0xF) << 4);
            u[96 + i % 32] |= (uint8_t)(((sc >> 4) | (m >> 4) << 2) << (i < 32 ? 0 : 4));
        }
        qs[r] = x->qs;
    }
    pack_chunks(qs, 32, u + 128);
}

static void q4_K_unit_scale(const uint8_t *u, int s, int r, uint8_t *sc, uint8_t *m) {
    const int i = 8 * s + r;
    const int hi = (u[96 + i % 32] >> (i < 32 ? 0 : 4)) & 0xF;
    *sc = (uint8_t)((u[32 + i] & 0xF) | (hi & 3) << 4);
    *m = (uint8_t)((u[32 + i] >> 4) | (hi >> 2) << 4);
}

static void unpack_q4_K(const uint8_t *u, int r, uint8_t *block) {
    block_q4_K *y = (block_q4_K *)block;
    memcpy(&y->d, u + 2 * r, 2);
    memcpy(&y->dmin, u + 16 + 2 * r, 2);
    /* the file's 12-byte encoding (quant_k4_get_scale_min read backwards) */
    for (int s = 0; s < 4; s++) {
        uint8_t sc, m, sc4, m4;
        q4_K_unit_scale(u, s, r, &sc, &m);
        q4_K_unit_scale(u, s + 4, r, &sc4, &m4);
        y->scales[s] = (uint8_t)(sc | (sc4 >> 4) << 6);
        y->scales[s + 4] = (uint8_t)(m | (m4 >> 4) << 6);
        y->scales[s + 8] = (uint8_t)((sc4 & 0xF) | (m4 & 0xF) << 4);
    }
    unpack_chunks(u + 128, 32, r, y->qs);
}

_Static_assert(144 + 16 * 96 == PACK_ROWS * sizeof(block_q6_K), "the Q6_K unit has the 8 blocks' size");

/* byte offsets in a Q6_K block of triple i's three 4-byte slices */
static void q6_K_triple(int i, size_t off[3]) {
    const int n = i / 8, k = i % 8;
    off[0] = offsetof(block_q6_K, ql) + 64 * n + 4 * k;
    off[1] = off[0] + 32;
    off[2] = offsetof(block_q6_K, qh) + 32 * n + 4 * k;
}

static void pack_q6_K(const uint8_t *const src[PACK_ROWS], int64_t b, uint8_t *u) {
    for (int r = 0; r < PACK_ROWS; r++) {
        const uint8_t *x = src[r] + (size_t)b * sizeof(block_q6_K);
        memcpy(u + 2 * r, x + offsetof(block_q6_K, d), 2);
        for (int s = 0; s < QK_K / 16; s++) u[16 + 8 * s + r] = x[offsetof(block_q6_K, scales) + s];
        for (int i = 0; i < 16; i++) {
            size_t off[3];
            q6_K_triple(i, off);
            for (int c = 0; c < 3; c++) memcpy(u + 144 + 96 * i + 32 * c + 4 * r, x + off[c], 4);
        }
    }
}

static void unpack_q6_K(const uint8_t *u, int r, uint8_t *block) {
    memcpy(block + offsetof(block_q6_K, d), u + 2 * r, 2);
    for (int s = 0; s < QK_K / 16; s++) block[offsetof(block_q6_K, scales) + s] = u[16 + 8 * s + r];
    for (int i = 0; i < 16; i++) {
        size_t off[3];
        q6_K_triple(i, off);
        for (int c = 0; c < 3; c++) memcpy(block + off[c], u + 144 + 96 * i + 32 * c + 4 * r, 4);
    }
}

static const pack_desc k_packs[] = {
    {QT_Q4_0, QK4_0, sizeof(block_q4_0), pack_q4_0, unpack_q4_0},
    {QT_Q8_0, QK8_0, sizeof(block_q8_0), pack_q8_0, unpack_q8_0},
    {QT_Q4_K, QK_K, sizeof(block_q4_K), pack_q4_K, unpack_q4_K},
    {QT_Q6_K, QK_K, sizeof(block_q6_K), pack_q6_K, unpack_q6_K},
};

static const pack_desc *pack_find(uint32_t type) {
    for (size_t i = 0; i < sizeof k_packs / sizeof k_packs[0]; i++)
        if (k_packs[i].type == type) return &k_packs[i];
    return NULL;
}

bool kern_pack_supported(uint32_t type, int64_t n_in, int64_t n_out) {
    const pack_desc *p = pack_find(type);
    return p && n_in > 0 && n_in % p->blck == 0 && n_out > 0 && n_out % PACK_ROWS == 0;
}

bool kern_pack_pays(uint32_t type, int64_t n_in, int64_t n_out) {
    return kern_pack_supported(type, n_in, n_out) && kern_ops_get()->packed_pays[type];
}

int kern_pack_group_rows(void) { return PACK_ROWS; }

void kern_pack(const kern_matrix *w, int64_t g0, int64_t g1, void *dst) {
    const pack_desc *p = pack_find(w->type);
    const int64_t nb = w->n_in / p->blck;
    const size_t row = (size_t)nb * p->bytes;
    for (int64_t g = g0; g < g1; g++) {
        const uint8_t *src[PACK_ROWS];
        for (int r = 0; r < PACK_ROWS; r++) src[r] = (const uint8_t *)w->data + (size_t)(g * PACK_ROWS + r) * row;
        uint8_t *u = (uint8_t *)dst + (size_t)g * PACK_ROWS * row;
        for (int64_t b = 0; b < nb; b++, u += PACK_ROWS * p->bytes) p->pack(src, b, u);
    }
}

void kern_unpack_row(const kern_matrix *w, const void *packed, int64_t r, void *dst) {
    const pack_desc *p = pack_find(w->type);
    const int64_t nb = w->n_in / p->blck;
    const uint8_t *u = (const uint8_t *)packed + (size_t)(r / PACK_ROWS) * PACK_ROWS * (size_t)nb * p->bytes;
    for (int64_t b = 0; b < nb; b++, u += PACK_ROWS * p->bytes)
        p->unpack(u, (int)(r % PACK_ROWS), (uint8_t *)dst + (size_t)b * p->bytes);
}

void kern_row_to_float(const kern_matrix *w, int64_t r, float *dst) {
    const quant_traits *tr = quant_get(w->type);
    const size_t row = quant_row_size(w->type, w->n_in);
    if (!w->packed) {
        tr->to_float((const uint8_t *)w->data + (size_t)r * row, dst, w->n_in);
        return;
    }
    const pack_desc *p = pack_find(w->type);
    const int64_t nb = w->n_in / p->blck;
    const uint8_t *u = (const uint8_t *)w->packed + (size_t)(r / PACK_ROWS) * PACK_ROWS * row;
    _Alignas(16) uint8_t block[PACK_MAX_BLOCK];
    for (int64_t b = 0; b < nb; b++, u += PACK_ROWS * p->bytes) {
        p->unpack(u, (int)(r % PACK_ROWS), block);
        tr->to_float(block, dst + b * p->blck, p->blck);
    }
}

/* ------------------------------------------------------ portable kernels */

/* Activations in the type's vec_dot_type, by the dispatched quantizer
 * (byte-identical to the reference one). */
static size_t pack_act_size_q8_0(int64_t n_in) { return quant_row_size(QT_Q8_0, n_in); }
static void pack_act_q8_0(const float *x, void *dst, int64_t n_in) { kern_from_float(QT_Q8_0)(x, dst, n_in); }
static size_t pack_act_size_q8_K(int64_t n_in) { return quant_row_size(QT_Q8_K, n_in); }
static void pack_act_q8_K(const float *x, void *dst, int64_t n_in) { kern_from_float(QT_Q8_K)(x, dst, n_in); }

/* Rows [r0, r1) (whole groups) x all tokens: each row's blocks unpacked one
 * at a time and dotted with every token's block by the type's reference
 * vec_dot, the values summed in block order in Y as the reference sums them
 * (0 + v is v), so the results equal the reference dot of the plain row bit
 * for bit. */
static void pack_ref_rows(const kern_gemm_job *j, int64_t r0, int64_t r1, uint32_t type, size_t act_block) {
    const pack_desc *p = pack_find(type);
    const quant_traits *tr = quant_get(type);
    const int64_t nb = j->n_in / p->blck;
    const size_t unit = PACK_ROWS * p->bytes;
    _Alignas(16) uint8_t block[PACK_MAX_BLOCK];
    for (int64_t row = r0 / PACK_ROWS * PACK_ROWS; row < r1; row++) {
        const uint8_t *grp = j->w + (size_t)(row / PACK_ROWS) * PACK_ROWS * j->w_row;
        float *out = j->Y + row;
        for (int t = 0; t < j->T; t++) out[(size_t)t * (size_t)j->ldy] = 0.0f;
        for (int64_t b = 0; b < nb; b++) {
            p->unpack(grp + (size_t)b * unit, (int)(row % PACK_ROWS), block);
            for (int t = 0; t < j->T; t++) {
                float v;
                tr->vec_dot(p->blck, &v, block, j->act + (size_t)t * j->act_row + (size_t)b * act_block);
                out[(size_t)t * (size_t)j->ldy] += v;
            }
        }
        if (j->bias)
            for (int t = 0; t < j->T; t++) out[(size_t)t * (size_t)j->ldy] += j->bias[row];
    }
}

static void pack_ref_rows_q4_0(const kern_gemm_job *j, int64_t r0, int64_t r1) {
    pack_ref_rows(j, r0, r1, QT_Q4_0, sizeof(block_q8_0));
}

static void pack_ref_rows_q8_0(const kern_gemm_job *j, int64_t r0, int64_t r1) {
    pack_ref_rows(j, r0, r1, QT_Q8_0, sizeof(block_q8_0));
}

static void pack_ref_rows_q4_K(const kern_gemm_job *j, int64_t r0, int64_t r1) {
    pack_ref_rows(j, r0, r1, QT_Q4_K, sizeof(block_q8_K));
}

static void pack_ref_rows_q6_K(const kern_gemm_job *j, int64_t r0, int64_t r1) {
    pack_ref_rows(j, r0, r1, QT_Q6_K, sizeof(block_q8_K));
}

void kern_pack_install_ref(kern_ops *o) {
    o->packed[QT_Q4_0] = (kern_gemm){pack_act_size_q8_0, pack_act_q8_0, pack_ref_rows_q4_0, PACK_ROWS, 1};
    o->packed[QT_Q8_0] = (kern_gemm){pack_act_size_q8_0, pack_act_q8_0, pack_ref_rows_q8_0, PACK_ROWS, 1};
    o->packed[QT_Q4_K] = (kern_gemm){pack_act_size_q8_K, pack_act_q8_K, pack_ref_rows_q4_K, PACK_ROWS, 1};
    o->packed[QT_Q6_K] = (kern_gemm){pack_act_size_q8_K, pack_act_q8_K, pack_ref_rows_q6_K, PACK_ROWS, 1};
}
