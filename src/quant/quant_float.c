/*
 * quant_float: rows of the unquantized types F32, F16 and BF16.
 *
 * Conversions are element-wise and exact where the target can hold the value
 * (see quant_ref.h for the rounding). The dot products multiply two rows of
 * the same type (ggml's choice: F16 x F16, BF16 x BF16, F32 x F32) in float:
 * a product of two halves or two bfloats is exact in float, so the only
 * rounding is the summation, done as float partial sums over 32 elements
 * added to a float total, which is about what a SIMD kernel does.
 */
#include "quant_ref.h"

#define QF_CHUNK 32 /* elements per partial sum in the dots */

void quant_f32_to_float(const void *x, float *y, int64_t n) {
    memcpy(y, x, (size_t)n * sizeof(float));
}

void quant_f32_from_float(const float *x, void *y, int64_t n) {
    memcpy(y, x, (size_t)n * sizeof(float));
}

void quant_dot_f32_f32(int n, float *s, const void *vx, const void *vy) {
    const float *x = vx, *y = vy;
    float sum = 0;
    for (int i = 0; i < n; i += QF_CHUNK) {
        const int end = n - i < QF_CHUNK ? n : i + QF_CHUNK;
        float part = 0;
        for (int j = i; j < end; j++) part += x[j] * y[j];
        sum += part;
    }
    *s = sum;
}

void quant_f16_to_float(const void *vx, float *y, int64_t n) {
    const pl_fp16 *x = vx;
    for (int64_t i = 0; i < n; i++) y[i] = quant_fp16_to_f32(x[i]);
}

void quant_f16_from_float(const float *x, void *vy, int64_t n) {
    pl_fp16 *y = vy;
    for (int64_t i = 0; i < n; i++) y[i] = quant_f32_to_fp16(x[i]);
}

void quant_dot_f16_f16(int n, float *s, const void *vx, const void *vy) {
    const pl_fp16 *x = vx, *y = vy;
    float sum = 0;
    for (int i = 0; i < n; i += QF_CHUNK) {
        const int end = n - i < QF_CHUNK ? n : i + QF_CHUNK;
        float part = 0;
        for (int j = i; j < end; j++) part += quant_fp16_to_f32(x[j]) * quant_fp16_to_f32(y[j]);
        sum += part;
    }
    *s = sum;
}

void quant_bf16_to_float(const void *vx, float *y, int64_t n) {
    const pl_bf16 *x = vx;
    for (int64_t i = 0; i < n; i++) y[i] = quant_bf16_to_f32(x[i]);
}

void quant_bf16_from_float(const float *x, void *vy, int64_t n) {
    pl_bf16 *y = vy;
    for (int64_t i = 0; i < n; i++) y[i] = quant_f32_to_bf16(x[i]);
}

void quant_dot_bf16_bf16(int n, float *s, const void *vx, const void *vy) {
    const pl_bf16 *x = vx, *y = vy;
    float sum = 0;
    for (int i = 0; i < n; i += QF_CHUNK) {
        const int end = n - i < QF_CHUNK ? n : i + QF_CHUNK;
        float part = 0;
        for (int j = i; j < end; j++) part += quant_bf16_to_f32(x[j]) * quant_bf16_to_f32(y[j]);
        sum += part;
    }
    *s = sum;
}
