/*
 * fp16: the public, out-of-line forms of the half and bfloat16 conversions.
 *
 * The bit-level implementations live in quant_ref.h as inline functions so the
 * row converters and dequantizers can use them in their inner loops; these
 * wrappers are what other modules call. Both directions are exact where the
 * target can represent the value; float -> half/bf16 rounds to nearest even,
 * overflows to inf, and keeps NaN a quiet NaN (never turning it into inf).
 */
#include "quant_ref.h"

float pl_fp16_to_f32(pl_fp16 h) { return quant_fp16_to_f32(h); }

pl_fp16 pl_f32_to_fp16(float f) { return quant_f32_to_fp16(f); }

float pl_bf16_to_f32(pl_bf16 h) { return quant_bf16_to_f32(h); }

pl_bf16 pl_f32_to_bf16(float f) { return quant_f32_to_bf16(f); }
