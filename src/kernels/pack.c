/*
 * pack: row-interleaved copies of weight matrices for the matrix-vector
 * products of decode (the "weight repacking at load").
 *
 * Q4_0 x8 layout: rows are taken in groups of 8; a group holds its blocks in
 * order, each block column as 144 bytes:
 *   8 x fp16    the 8 rows' scales (row 0 first),
 *   4 x 32 B    chunk k holds, for rows 0..7 in turn, the 4 quant bytes
 *               qs[4k .. 4k+3] of that row's block.
 * So one 32-byte load gives every row's 4 bytes for one slice of the block:
 * their low nibbles are levels 4k..4k+3 and the high nibbles 16+4k..16+4k+3,
 * each row in its own 32-bit lane, which a kernel multiplies by the same 4
 * activation bytes broadcast to all lanes. The 8 rows' sums land in 8 lanes
 * of one vector: no horizontal reduction, one scale conversion for 8 rows, and
 * one sequential stream instead of 8. A group has the bytes of 8 plain rows,
 * so group g starts where row 8g started and the copy has the file's size.
 *
 * The kernels reading it are tables of kern_gemm (kern_ops.packed): a
 * portable one here (any level can run packed weights, e.g. after
 * kern_force) and faster ones per ISA, which also set packed_pays (the level
 * where packing is worth its copy).
 */
#include "kern_impl.h"

#include <string.h>

enum { PACK_ROWS = 8, PACK_Q4_0_BLOCK = PACK_ROWS * (int)sizeof(block_q4_0) };
_Static_assert(sizeof(block_q4_0) == 18, "Q4_0 blocks are 18 bytes");

bool kern_pack_supported(uint32_t type, int64_t n_in, int64_t n_out) {
    return type == QT_Q4_0 && n_in > 0 && n_in % QK4_0 == 0 && n_out > 0 && n_out % PACK_ROWS == 0;
}

bool kern_pack_pays(uint32_t type, int64_t n_in, int64_t n_out) {
    return kern_pack_supported(type, n_in, n_out) && kern_ops_get()->packed_pays[type];
}

int kern_pack_group_rows(void) { return PACK_ROWS; }

void kern_pack(const kern_matrix *w, int64_t g0, int64_t g1, void *dst) {
    const int64_t nb = w->n_in / QK4_0;
    const size_t row = (size_t)nb * sizeof(block_q4_0);
    for (int64_t g = g0; g < g1; g++) {
        const block_q4_0 *src[PACK_ROWS];
        for (int r = 0; r < PACK_ROWS; r++)
            src[r] = (const block_q4_0 *)((const uint8_t *)w->data + (size_t)(g * PACK_ROWS + r) * row);
        uint8_t *o = (uint8_t *)dst + (size_t)g * PACK_ROWS * row;
        for (int64_t b = 0; b < nb; b++, o += PACK_Q4_0_BLOCK) {
            for (int r = 0; r < PACK_ROWS; r++) memcpy(o + 2 * r, &src[r][b].d, 2);
            for (int k = 0; k < 4; k++)
                for (int r = 0; r < PACK_ROWS; r++) memcpy(o + 16 + 32 * k + 4 * r, src[r][b].qs + 4 * k, 4);
        }
    }
}

void kern_unpack_row(const kern_matrix *w, const void *packed, int64_t r, void *dst) {
    const int64_t nb = w->n_in / QK4_0, g = r / PACK_ROWS;
    const int lane = (int)(r % PACK_ROWS);
    const uint8_t *o = (const uint8_t *)packed + (size_t)g * PACK_ROWS * (size_t)nb * sizeof(block_q4_0);
    block_q4_0 *y = dst;
    for (int64_t b = 0; b < nb; b++, o += PACK_Q4_0_BLOCK) {
        memcpy(&y[b].d, o + 2 * lane, 2);
        for (int k = 0; k < 4; k++) memcpy(y[b].qs + 4 * k, o + 16 + 32 * k + 4 * lane, 4);
    }
}

/* The portable kernel: Q8_0 activation rows, each packed row's dot summed
 * exactly as quant_dot_q4_0_q8_0 sums it (the same integers and the same
 * float order), so its results equal the reference dot bit for bit. */
static size_t pack_ref_act_size(int64_t n_in) { return quant_row_size(QT_Q8_0, n_in); }

static void pack_ref_act_pack(const float *x, void *dst, int64_t n_in) { quant_get(QT_Q8_0)->from_float(x, dst, n_in); }

static void pack_ref_rows_q4_0(const kern_gemm_job *j, int64_t r0, int64_t r1) {
    const int64_t nb = j->n_in / QK4_0;
    for (int64_t g = r0 / PACK_ROWS; g < (r1 + PACK_ROWS - 1) / PACK_ROWS; g++) {
        const uint8_t *grp = j->w + (size_t)g * PACK_ROWS * j->w_row;
        for (int t = 0; t < j->T; t++) {
            const block_q8_0 *y = (const block_q8_0 *)(j->act + (size_t)t * j->act_row);
            float sum[PACK_ROWS] = {0};
            const uint8_t *o = grp;
            for (int64_t b = 0; b < nb; b++, o += PACK_Q4_0_BLOCK) {
                for (int r = 0; r < PACK_ROWS; r++) {
                    int isum = 0;
                    for (int k = 0; k < 4; k++)
                        for (int i = 0; i < 4; i++) {
                            const uint8_t q = o[16 + 32 * k + 4 * r + i];
                            isum += ((q & 0xF) - 8) * y[b].qs[4 * k + i];
                            isum += ((q >> 4) - 8) * y[b].qs[16 + 4 * k + i];
                        }
                    pl_fp16 d;
                    memcpy(&d, o + 2 * r, 2);
                    sum[r] += pl_fp16_to_f32(d) * pl_fp16_to_f32(y[b].d) * (float)isum;
                }
            }
            float *out = j->Y + (size_t)t * (size_t)j->ldy + g * PACK_ROWS;
            for (int r = 0; r < PACK_ROWS; r++) out[r] = sum[r] + (j->bias ? j->bias[g * PACK_ROWS + r] : 0.0f);
        }
    }
}

void kern_pack_install_ref(kern_ops *o) {
    o->packed[QT_Q4_0] = (kern_gemm){pack_ref_act_size, pack_ref_act_pack, pack_ref_rows_q4_0, PACK_ROWS, 1};
}
