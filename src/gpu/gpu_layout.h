/*
 * gpu_layout: how weight matrices are laid out in GPU memory. Weights are
 * repacked once at upload so that a GPU thread reads the 16 elements it works
 * on ("a part") with one aligned 8- or 16-byte load instead of unaligned bytes
 * spread over a GGUF block. The values are exactly the GGUF ones (repacking
 * only moves bits), so dequantizing gives bit-identical floats.
 *
 * A matrix of n_out rows of n_in elements becomes two arrays, row-major:
 *   q: n_out rows of q_row bytes (a multiple of 16), the quantized values;
 *   s: n_out rows of s_row bytes, f16 scales kept apart (0 for types without).
 * n_in is padded to n_in_pad, a multiple of 32, with zeros (float types only;
 * quantized rows are whole blocks already). Part u holds elements 16u..16u+15:
 *   F32   16 floats at q + 64u          F16, BF16  16 halves at q + 32u
 *   Q8_0  16 int8 at q + 16u, d = s[u/2] (f16): x = d*q
 *   Q4_0  8 bytes at q + 8u: byte i holds element 16u+i in its low nibble and
 *         16u+i+8 in its high one; d = s[u/2]: x = d*(q - 8)
 *   Q4_K  super-block b = u/16 of 144 bytes at q + 144b: d, dmin (f16), the 12
 *         packed 6-bit scale/min bytes as in GGUF, then part p = u%16 as 8
 *         nibble bytes at 16 + 8p (nibble order as Q4_0); sub-block u%16/2
 *         gives sc, m: x = d*sc*q - dmin*m
 *   Q6_K  super-block b = u/16 of 208 bytes at q + 208b: low nibbles of part p
 *         at 8p (order as Q4_0), high 2 bits at 128 + 4p (byte i holds elements
 *         i, i+4, i+8, i+12 of the part in bits 0-1, 2-3, 4-5, 6-7), then the 16
 *         int8 scales at 192; d = s[b]: x = d*sc[p]*(q - 32)
 * Shared by the C host code (repacking, the CPU reference decoder used by the
 * tests) and the CUDA kernels; plain C, no CUDA types.
 */
#ifndef PL_GPU_LAYOUT_H
#define PL_GPU_LAYOUT_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

enum { GPU_PART = 16, GPU_CHUNK = 32, GPU_Q4K_SB = 144, GPU_Q6K_SB = 208 };

/* Row sizes of a type on the GPU; 0 when the backend does not handle it. */
typedef struct gpu_row_layout {
    int n_in_pad;      /* elements per row after padding */
    uint32_t q_row;    /* bytes of q per row */
    uint32_t s_row;    /* bytes of s per row */
} gpu_row_layout;

/* Layout of rows of n_in elements of `type`; returns 0 (and leaves *out zero)
 * when the type is not handled or n_in is not a whole number of its blocks. */
int gpu_layout_row(uint32_t type, int64_t n_in, gpu_row_layout *out);
/* Comma-separated names of the types the CUDA backend handles. */
const char *gpu_layout_types(void);
/* Repack one GGUF row (n_in elements, quant_row_size bytes) into q and s. */
void gpu_layout_repack_row(uint32_t type, int64_t n_in, const void *src, uint8_t *q, uint8_t *s);
/* Reference decoder of part u of a repacked row (16 floats): what the GPU
 * kernels compute, written plainly so tests can check a repack on the CPU. */
void gpu_layout_decode_part(uint32_t type, const uint8_t *q, const uint8_t *s, int u, float out[16]);

#ifdef __cplusplus
}
#endif
#endif
