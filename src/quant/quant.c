/*
 * quant: the traits table of the GGUF tensor element types, and lookups.
 *
 * One designated-initializer row per supported ggml type id; ids without a row
 * (name == NULL) are unsupported and quant_get returns NULL for them. The
 * functions are the scalar references of quant_ref.h. Q8_1 and Q8_K are
 * activation types only (no vec_dot of their own), as in ggml.
 */
#include "quant_ref.h"

#include <ctype.h>

#define QT_ROW(nm, blk, type_name, qnt, tf, ff, dot, vdt) \
    { .name = nm, .blck = blk, .type_size = (int)sizeof(type_name), .is_quantized = qnt, \
      .to_float = tf, .from_float = ff, .vec_dot = dot, .vec_dot_type = vdt }

static const quant_traits k_traits[QT_COUNT] = {
    [QT_F32] = QT_ROW("f32", 1, float, false,
                      quant_f32_to_float, quant_f32_from_float, quant_dot_f32_f32, QT_F32),
    [QT_F16] = QT_ROW("f16", 1, pl_fp16, false,
                      quant_f16_to_float, quant_f16_from_float, quant_dot_f16_f16, QT_F16),
    [QT_BF16] = QT_ROW("bf16", 1, pl_bf16, false,
                       quant_bf16_to_float, quant_bf16_from_float, quant_dot_bf16_bf16, QT_BF16),
    [QT_Q4_0] = QT_ROW("q4_0", QK4_0, block_q4_0, true,
                       quant_q4_0_to_float, quant_q4_0_from_float, quant_dot_q4_0_q8_0, QT_Q8_0),
    [QT_Q4_1] = QT_ROW("q4_1", QK4_1, block_q4_1, true,
                       quant_q4_1_to_float, quant_q4_1_from_float, quant_dot_q4_1_q8_0, QT_Q8_0),
    [QT_Q5_0] = QT_ROW("q5_0", QK5_0, block_q5_0, true,
                       quant_q5_0_to_float, quant_q5_0_from_float, quant_dot_q5_0_q8_0, QT_Q8_0),
    [QT_Q5_1] = QT_ROW("q5_1", QK5_1, block_q5_1, true,
                       quant_q5_1_to_float, quant_q5_1_from_float, quant_dot_q5_1_q8_0, QT_Q8_0),
    [QT_Q8_0] = QT_ROW("q8_0", QK8_0, block_q8_0, true,
                       quant_q8_0_to_float, quant_q8_0_from_float, quant_dot_q8_0_q8_0, QT_Q8_0),
    [QT_Q8_1] = QT_ROW("q8_1", QK8_1, block_q8_1, true,
                       quant_q8_1_to_float, quant_q8_1_from_float, NULL, QT_Q8_1),
    [QT_Q2_K] = QT_ROW("q2_K", QK_K, block_q2_K, true,
                       quant_q2_K_to_float, quant_q2_K_from_float, quant_dot_q2_K_q8_K, QT_Q8_K),
    [QT_Q3_K] = QT_ROW("q3_K", QK_K, block_q3_K, true,
                       quant_q3_K_to_float, quant_q3_K_from_float, quant_dot_q3_K_q8_K, QT_Q8_K),
    [QT_Q4_K] = QT_ROW("q4_K", QK_K, block_q4_K, true,
                       quant_q4_K_to_float, quant_q4_K_from_float, quant_dot_q4_K_q8_K, QT_Q8_K),
    [QT_Q5_K] = QT_ROW("q5_K", QK_K, block_q5_K, true,
                       quant_q5_K_to_float, quant_q5_K_from_float, quant_dot_q5_K_q8_K, QT_Q8_K),
    [QT_Q6_K] = QT_ROW("q6_K", QK_K, block_q6_K, true,
                       quant_q6_K_to_float, quant_q6_K_from_float, quant_dot_q6_K_q8_K, QT_Q8_K),
    [QT_Q8_K] = QT_ROW("q8_K", QK_K, block_q8_K, true,
                       quant_q8_K_to_float, quant_q8_K_from_float, NULL, QT_Q8_K),
};

const quant_traits *quant_get(uint32_t type) {
    if (type >= QT_COUNT || !k_traits[type].name) return NULL;
    return &k_traits[type];
}

uint64_t quant_row_size(uint32_t type, int64_t n) {
    const quant_traits *t = quant_get(type);
    if (!t || n < 0 || n % t->blck != 0) return 0;
    uint64_t bytes;
    if (!pl_mul_ok((uint64_t)(n / t->blck), (uint64_t)t->type_size, &bytes)) return 0;
    return bytes;
}

int quant_type_from_name(const char *name) {
    if (!name) return -1;
    for (int id = 0; id < QT_COUNT; id++) {
        const char *a = k_traits[id].name, *b = name;
        if (!a) continue;
        while (*a && *b && tolower((unsigned char)*a) == tolower((unsigned char)*b)) a++, b++;
        if (!*a && !*b) return id;
    }
    return -1;
}
