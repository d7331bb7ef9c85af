/*
 * kern_impl: the kernels module's private interface between the dispatcher
 * (dispatch.c, matmul.c) and the per-ISA files (x86_avx2*.c).
 *
 * One kern_ops table holds every dispatched function. It is filled at first
 * use: scalar references first (quant traits, ref_ops.c, attn.c), then each
 * ISA file the CPU supports overwrites the entries it implements, lowest
 * level first.
 * An ISA install function only writes pointers; it never allocates or fails.
 */
#ifndef PL_KERN_IMPL_H
#define PL_KERN_IMPL_H

#include "kernels.h"

#include <stdatomic.h>

/* ------------------------------------------------------------ tiled matmul */

/* One kern_matmul call as the tiled kernels see it: activations were packed
 * by the type's act_pack (T rows of act_row bytes), weights are n_out rows of
 * w_row bytes. rows() writes Y[t][r] (+ bias[r]) for r in [r0, r1), all t. */
typedef struct kern_gemm_job {
    const uint8_t *w;
    size_t w_row;
    int64_t n_in;
    const uint8_t *act;
    size_t act_row;
    int T;
    float *Y;
    int ldy;
    const float *bias;
} kern_gemm_job;

/* A tiled matmul for one weight type, used when T >= min_T (the fewest
 * tokens for which it beats row dots, packing included). Its results equal
 * the type's vec_dot up to float rounding order. */
typedef struct kern_gemm {
    size_t (*act_size)(int64_t n_in);                        /* bytes per packed row */
    void (*act_pack)(const float *x, void *dst, int64_t n_in);
    void (*rows)(const kern_gemm_job *j, int64_t r0, int64_t r1);
    int row_tile; /* rows per tile: the row chunks threads claim are multiples of it */
    int min_T;
} kern_gemm;

/* ---------------------------------------------------------- dispatch table */

/* s[r] = dot(row r, y) for the 4 weight rows x, x + bx, x + 2 bx, x + 3 bx:
 * vec_dot for 4 rows at once (same results up to float rounding order). */
typedef void (*kern_vec_dot4_fn)(int n, float *s, const void *x, size_t bx, const void *y);

typedef struct kern_ops {
    kern_level level;
    quant_vec_dot_fn vec_dot[QT_COUNT];
    kern_vec_dot4_fn vec_dot4[QT_COUNT]; /* NULL: rows go one at a time */
    quant_from_float_fn from_float[QT_COUNT];
    kern_gemm gemm[QT_COUNT]; /* .rows == NULL: no tiled path for the type */
    /* kernels of row-interleaved weight copies (pack.c's layouts); every
     * level can run them, packed_pays marks where packing is worth its copy */
    kern_gemm packed[QT_COUNT];
    bool packed_pays[QT_COUNT];
    /* from KERN_PACKED_TILE_MIN_T tokens, packed weights go through gemm[]
     * (rows unpacked per tile), where the level's tiles beat its packed kernel */
    bool packed_tiles[QT_COUNT];
    void (*rmsnorm)(float *y, const float *x, const float *w, int n, float eps);
    void (*softmax)(float *x, int n);
    void (*silu_mul)(float *h, const float *g, const float *u, int n);
    double (*logsumexp)(const float *x, int n);
    void (*attn_scores_f16)(float *scores, const float *q, const pl_fp16 *k, size_t stride, int P, int D,
                            float scale);
    void (*attn_values_f16)(float *out, const float *w, const pl_fp16 *v, size_t stride, int P, int D);
    /* Q8_0 KV rows (attn.h; strides in bytes) */
    void (*attn_scores_q8_0)(float *scores, const block_q8_0 *q, const void *k, size_t stride, int P, int D,
                             float scale);
    void (*attn_values_q8_0)(float *out, const float *w, const void *v, size_t stride, int P, int D);
} kern_ops;

/* The table in use; NULL until the first kern_ops_get(). */
extern _Atomic(const kern_ops *) kern_g_ops;
const kern_ops *kern_ops_init(void);

static inline const kern_ops *kern_ops_get(void) {
    const kern_ops *o = atomic_load_explicit(&kern_g_ops, memory_order_acquire);
    return o ? o : kern_ops_init();
}

/* Scalar references of the float kernels (ref_ops.c, attn.c), what the SIMD
 * ones are tested against. Sums are accumulated in double where it is cheap. */
void kern_ref_rmsnorm(float *y, const float *x, const float *w, int n, float eps);
void kern_ref_softmax(float *x, int n);
void kern_ref_silu_mul(float *h, const float *g, const float *u, int n);
double kern_ref_logsumexp(const float *x, int n);
void kern_ref_attn_scores_f16(float *scores, const float *q, const pl_fp16 *k, size_t stride, int P, int D,
                              float scale);
void kern_ref_attn_values_f16(float *out, const float *w, const pl_fp16 *v, size_t stride, int P, int D);
void kern_ref_attn_scores_q8_0(float *scores, const block_q8_0 *q, const void *k, size_t stride, int P, int D,
                               float scale);
void kern_ref_attn_values_q8_0(float *out, const float *w, const void *v, size_t stride, int P, int D);

/* pack.c: the portable kernels of packed weights (installed at every level). */
void kern_pack_install_ref(kern_ops *ops);

/* dispatch.c: PL_KERNELS_NO_VNNI unset (a switch for comparing the VPDPBUSD
 * packed kernels with the maddubs ones on one machine). Every build has it. */
bool kern_vnni_packed_wanted(void);

/* ISA installers: overwrite the entries they implement. Each exists only in
 * builds for its architecture (x86_avx2*.c compile to nothing elsewhere). */
#if defined(__x86_64__) || defined(__i386__)
#define KERN_HAVE_AVX2 1
void kern_avx2_install_dots(kern_ops *ops);  /* x86_avx2.c: vec_dot, from_float */
void kern_avx2_install_ops(kern_ops *ops);   /* x86_avx2_ops.c: float kernels */
void kern_avx2_install_gemm(kern_ops *ops);  /* x86_avx2_gemm.c: tiled matmul */
void kern_avx2_install_attn_q8(kern_ops *ops); /* x86_avx2_attn_q8.c: Q8_0 KV attention */
void kern_avx2_install_packed(kern_ops *ops); /* x86_avx2_packed.c: packed-weight matmul */
/* The Q4_0, Q8_0 and Q4_K packed kernels with VPDPBUSD: AVX-VNNI
 * (x86_avxvnni_packed.c, from kern_avx2_install_packed) and AVX512-VNNI + VL
 * (x86_avx512_packed.c, from kern_avx512_install), when kern_vnni_packed_wanted. */
void kern_avxvnni_install_packed(kern_ops *ops);
void kern_avx512vnni_install_packed(kern_ops *ops);
/* x86_avx2_gemm.c's Q8_0 activation rows (int8 levels, then per block the
 * scale and scale * sum as floats), shared with x86_avx2_packed.c */
size_t kern_avx2_b32_act_size(int64_t n_in);
void kern_avx2_b32_act_pack(const float *x, void *dst, int64_t n_in);
#define KERN_HAVE_AVX512 1
void kern_avx512_install(kern_ops *ops);     /* x86_avx512*.c: on top of the AVX2 level */
#endif
#if defined(__aarch64__)
#define KERN_HAVE_NEON 1
void kern_neon_install(kern_ops *ops);    /* arm_neon*.c: Advanced SIMD */
void kern_dotprod_install(kern_ops *ops); /* arm_dotprod*.c: SDOT (and i8mm when present) */
#endif

#endif
