/*
 * kernels: the compute primitives the forward pass uses, on top of the quant
 * traits. Matrix layout is GGUF's: a weight W of n_out rows, each row n_in
 * contiguous elements of its quant type (so y[r] = dot(W[r,:], x)).
 * Activations X are T rows of n_in floats; outputs Y are T rows of n_out.
 */
#ifndef PL_KERNELS_H
#define PL_KERNELS_H

#include "../core/threads.h"
#include "../quant/quant.h"

/* ------------------------------------------------- CPU features, dispatch */

/* What the processor and OS support (absent unless both do). */
typedef struct kern_cpu {
    bool avx2, fma, f16c;                          /* x86, with OS YMM state */
    bool avx512f, avx512bw, avx512vl, avx512dq;    /* x86, with OS ZMM state */
    bool avx512vnni, avx_vnni, avx512_bf16;
    bool neon, dotprod, i8mm;                      /* aarch64 */
} kern_cpu;

/* Kernel levels, ordered: a level may use everything below it. x86 and ARM
 * share one ladder: a build has installers only for its own architecture's
 * rungs, so on ARM the x86 rungs install nothing and are skipped, and the
 * reverse on x86 (the CPU never reports the other architecture's levels). */
typedef enum kern_level {
    KERN_SCALAR = 0,
    KERN_AVX2 = 1,    /* x86: AVX2 + FMA + F16C */
    KERN_AVX512 = 2,  /* x86: AVX-512 F/BW/VL/DQ (VNNI used when present) */
    KERN_NEON = 3,    /* aarch64: Advanced SIMD, fp16 conversions */
    KERN_DOTPROD = 4, /* aarch64: + SDOT/UDOT (i8mm used when present) */
    KERN_LEVEL_COUNT
} kern_level;

const kern_cpu *kern_cpu_features(void);
/* The best level this CPU supports (whether or not kernels exist for it). */
kern_level kern_cpu_level(void);

/* The level in use: at first use, the best level that both the CPU supports
 * and this build has kernels for, lowered by the environment variable
 * PL_KERNELS=scalar|avx2|avx512|neon|dotprod (a level above that is ignored). */
kern_level kern_level_get(void);
/* Name of the level in use ("scalar", "avx2", "neon", ...). */
const char *kern_level_name(void);
/* Level from its name, or -1. */
int kern_level_from_name(const char *name);
/* Switch to `level`, capped at what the CPU and build support; returns the
 * level now in use. For tests and benchmarks: not safe while another thread
 * runs kernels, and kern_matmul_scratch sizes hold for the level in use, so
 * size scratch after switching. */
kern_level kern_force(kern_level level);
/* For tests: route prompts of packed weights through the tiled kernels (1),
 * through the packed ones (0), or as the level chooses (-1). Same caveats. */
void kern_packed_tiles_force(int on);

/* The dispatched row functions of a type, falling back to the scalar
 * references: from_float is never NULL for a type quant_get knows, vec_dot
 * is NULL only for the activation-only types Q8_1 and Q8_K (as in traits). */
quant_vec_dot_fn kern_vec_dot(uint32_t type);
quant_from_float_fn kern_from_float(uint32_t type);

typedef struct kern_matrix {
    const void *data;   /* n_out rows of quant_row_size(type, n_in) bytes */
    uint32_t type;
    int64_t n_in;       /* columns (elements per row) */
    int64_t n_out;      /* rows */
    const void *packed; /* NULL, or kern_pack's copy of data: kern_matmul reads this instead */
} kern_matrix;

/* Row-interleaved copies of weight matrices (pack.c): the same bytes as the
 * rows, in an order the matrix-vector kernels stream faster. Supported: Q4_0,
 * Q8_0, Q4_K and Q6_K with n_out a multiple of 8 (kern_pack_group_rows), any
 * kernel level.
 * kern_pack_pays: supported, and the level in use has a kernel for which
 * the copy pays (the loader packs only then). */
bool kern_pack_supported(uint32_t type, int64_t n_in, int64_t n_out);
/* From this many tokens a packed matrix's product goes through the level's
 * tiled kernel (rows unpacked 8 at a time), below it through the packed one. */
#define KERN_PACKED_TILE_MIN_T 16
bool kern_pack_pays(uint32_t type, int64_t n_in, int64_t n_out);
int kern_pack_group_rows(void);
/* Packs row groups [g0, g1) of w->data into dst, a buffer of the matrix's
 * size (group g lands where row g * kern_pack_group_rows() starts), so a
 * matrix can be packed a slice at a time. */
void kern_pack(const kern_matrix *w, int64_t g0, int64_t g1, void *dst);
/* Row r of a packed copy back in the plain layout (one row's bytes). */
void kern_unpack_row(const kern_matrix *w, const void *packed, int64_t r, void *dst);
/* Row r of w as n_in floats, read from w->packed when there is one (block by
 * block: no row buffer), else from w->data. A tied embedding's lookups. */
void kern_row_to_float(const kern_matrix *w, int64_t r, float *dst);

/* Bytes of scratch kern_matmul needs for T activation rows (at the kernel
 * level in use). */
size_t kern_matmul_scratch(const kern_matrix *w, int T);
/* Y[t][r] = sum_i W[r][i] * X[t][i] (+ bias[r] when bias != NULL), for t < T.
 * X rows have stride ldx floats, Y rows stride ldy. `scratch` holds the
 * activations converted to the weight's vec_dot_type (kern_matmul_scratch bytes). */
void kern_matmul(pl_pool *pool, const kern_matrix *w, const float *X, int ldx, int T,
                 float *Y, int ldy, const float *bias, void *scratch);

/* Element-wise and reduction kernels, dispatched like the dots; n >= 0 is
 * any count (no alignment or multiple needed). */

/* y = x / rms(x) * w over n elements (w may be NULL for no weight). */
void kern_rmsnorm(float *y, const float *x, const float *w, int n, float eps);
/* In-place softmax over n elements. */
void kern_softmax(float *x, int n);
/* h[i] = silu(g[i]) * u[i] */
void kern_silu_mul(float *h, const float *g, const float *u, int n);
/* log(sum_i exp(x[i])) over n >= 1 floats, stable for any range (the max is
 * taken out first): the normaliser of a log-softmax over a vocabulary. */
double kern_logsumexp(const float *x, int n);

#endif
