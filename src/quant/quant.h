/*
 * quant: the tensor element types GGUF files use, as one traits table.
 *
 * Type ids and block layouts are exactly ggml's (a GGUF tensor's bytes are
 * interpreted through these structs). Each quantized type is a sequence of
 * blocks of `blck` elements, `type_size` bytes each. A row of n elements
 * (n % blck == 0) occupies n / blck * type_size bytes.
 *
 * Dot products follow ggml's scheme: weights of type T are multiplied with
 * activations that were first converted to traits[T].vec_dot_type (Q8_0 for the
 * 32-blocks, Q8_K for the K-quants, F16/BF16/F32 for float weights) so that the
 * inner loop is integer arithmetic. The functions here are the scalar
 * references; src/kernels provides faster versions with the same signatures.
 * The reference functions are also declared by name in quant_ref.h (with the
 * layouts of every block type), for kernels and tests that want one directly.
 */
#ifndef PL_QUANT_H
#define PL_QUANT_H

#include "../core/core.h"

#include <stdbool.h>
#include <stdint.h>

typedef enum quant_type {
    QT_F32 = 0,
    QT_F16 = 1,
    QT_Q4_0 = 2,
    QT_Q4_1 = 3,
    QT_Q5_0 = 6,
    QT_Q5_1 = 7,
    QT_Q8_0 = 8,
    QT_Q8_1 = 9,
    QT_Q2_K = 10,
    QT_Q3_K = 11,
    QT_Q4_K = 12,
    QT_Q5_K = 13,
    QT_Q6_K = 14,
    QT_Q8_K = 15,
    QT_BF16 = 30,
    QT_COUNT = 40 /* table size; ids above are not contiguous */
} quant_type;

#define QK4_0 32
#define QK4_1 32
#define QK5_0 32
#define QK5_1 32
#define QK8_0 32
#define QK8_1 32
#define QK_K 256
#define K_SCALE_SIZE 12

typedef uint16_t pl_fp16;  /* IEEE half, raw bits */
typedef uint16_t pl_bf16;  /* bfloat16, raw bits */

typedef struct { pl_fp16 d; uint8_t qs[QK4_0 / 2]; } block_q4_0;
typedef struct { pl_fp16 d, m; uint8_t qs[QK4_1 / 2]; } block_q4_1;
typedef struct { pl_fp16 d; uint8_t qh[4]; uint8_t qs[QK5_0 / 2]; } block_q5_0;
typedef struct { pl_fp16 d, m; uint8_t qh[4]; uint8_t qs[QK5_1 / 2]; } block_q5_1;
typedef struct { pl_fp16 d; int8_t qs[QK8_0]; } block_q8_0;
typedef struct { pl_fp16 d, s; int8_t qs[QK8_1]; } block_q8_1; /* s = d * sum(qs) */
typedef struct { uint8_t scales[QK_K / 16]; uint8_t qs[QK_K / 4]; pl_fp16 d, dmin; } block_q2_K;
typedef struct { uint8_t hmask[QK_K / 8]; uint8_t qs[QK_K / 4]; uint8_t scales[12]; pl_fp16 d; } block_q3_K;
typedef struct { pl_fp16 d, dmin; uint8_t scales[K_SCALE_SIZE]; uint8_t qs[QK_K / 2]; } block_q4_K;
typedef struct { pl_fp16 d, dmin; uint8_t scales[K_SCALE_SIZE]; uint8_t qh[QK_K / 8]; uint8_t qs[QK_K / 2]; } block_q5_K;
typedef struct { uint8_t ql[QK_K / 2]; uint8_t qh[QK_K / 4]; int8_t scales[QK_K / 16]; pl_fp16 d; } block_q6_K;
typedef struct { float d; int8_t qs[QK_K]; int16_t bsums[QK_K / 16]; } block_q8_K;

_Static_assert(sizeof(block_q4_0) == 18, "block_q4_0 size");
_Static_assert(sizeof(block_q4_1) == 20, "block_q4_1 size");
_Static_assert(sizeof(block_q5_0) == 22, "block_q5_0 size");
_Static_assert(sizeof(block_q5_1) == 24, "block_q5_1 size");
_Static_assert(sizeof(block_q8_0) == 34, "block_q8_0 size");
_Static_assert(sizeof(block_q8_1) == 36, "block_q8_1 size");
_Static_assert(sizeof(block_q2_K) == 84, "block_q2_K size");
_Static_assert(sizeof(block_q3_K) == 110, "block_q3_K size");
_Static_assert(sizeof(block_q4_K) == 144, "block_q4_K size");
_Static_assert(sizeof(block_q5_K) == 176, "block_q5_K size");
_Static_assert(sizeof(block_q6_K) == 210, "block_q6_K size");
_Static_assert(sizeof(block_q8_K) == 292, "block_q8_K size");

/* y[0..n) = dequantize(x); n a multiple of blck. */
typedef void (*quant_to_float_fn)(const void *x, float *y, int64_t n);
/* y = quantize(x); n a multiple of blck. Reference quality (round to nearest
 * with the block's natural scale); the quantize tool may use better search. */
typedef void (*quant_from_float_fn)(const float *x, void *y, int64_t n);
/* *s = dot(x, y) over n elements; x of this type, y of vec_dot_type. */
typedef void (*quant_vec_dot_fn)(int n, float *s, const void *x, const void *y);

typedef struct quant_traits {
    const char *name;       /* "q4_0", as llama.cpp prints it */
    int blck;               /* elements per block */
    int type_size;          /* bytes per block */
    bool is_quantized;
    quant_to_float_fn to_float;
    quant_from_float_fn from_float;
    quant_vec_dot_fn vec_dot;
    quant_type vec_dot_type;
} quant_traits;

/* Traits of a type id, or NULL when the id is unknown or unsupported. */
const quant_traits *quant_get(uint32_t type);
/* Bytes of a row of n elements; 0 when the type is unknown or n % blck != 0. */
uint64_t quant_row_size(uint32_t type, int64_t n);
/* Type id from its name ("q4_k", case-insensitive); -1 when unknown. */
int quant_type_from_name(const char *name);

float pl_fp16_to_f32(pl_fp16 h);
pl_fp16 pl_f32_to_fp16(float f);
float pl_bf16_to_f32(pl_bf16 h);
pl_bf16 pl_f32_to_bf16(float f); /* round to nearest even; NaN kept */

#endif
