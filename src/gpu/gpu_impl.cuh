/*
 * gpu_impl: what the CUDA files of the backend share: the device state, error
 * helpers, and the per-type loaders/decoders of one 16-element part of a
 * repacked weight row (layout in gpu_layout.h). A kernel loads the raw bytes
 * of a part first (gpart_load) and decodes them later (gpart_decode), so that
 * several loads are in flight before the first use. The decoders compute in
 * the same order as the quant module's dequantizers.
 */
#ifndef PL_GPU_IMPL_CUH
#define PL_GPU_IMPL_CUH

/* quant.h checks its block sizes with C11's _Static_assert */
#define _Static_assert static_assert
extern "C" {
#include "../core/core.h"
#include "../quant/quant.h"
}
#undef _Static_assert
#include "gpu_dev.h"
#include "gpu_layout.h"

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

struct gdev {
    int device;
    cudaStream_t stream;
    cudaGraph_t graph;
    cudaGraphExec_t exec;
    size_t smem_optin;
    int n_sm;
    int pdl;          /* programmatic dependent launches (compute capability 9.0+) */
    unsigned char *xq; /* the int8 copy of a matrix-vector input (gpu_matvec.cu) */
    /* The hand-off: an op whose output feeds one int8 product (attention ->
     * output projection, SwiGLU -> down) also writes that output quantized,
     * as k_quant_x would, to `carry`; the product right after it, reading
     * carry_src (carry_n values, no norm), uses that copy. Every launch, copy
     * and free forgets it, so only the very next op can take it. */
    unsigned char *carry;
    const float *carry_src;
    int carry_n;
    int *cnt;         /* zeroed counters of last-block-finishes hand-offs (each resets its own) */
    /* Which of the fusions run (environment, read at gdev_open; README and
     * NOTES.md say what each measured). On unless said: */
    int hand_att;     /* attention -> output projection hand-off (PL_GPU_FUSE=0: off) */
    int hand_glu;     /* SwiGLU -> down hand-off (PL_GPU_FUSE_GLU=1: on) */
    int fuse_attn;    /* attention inside the Q/K/V product (PL_GPU_FUSE_ATTN=1: on) */
    int stage_blocks; /* int8 products of at most this many blocks quantize x per
                       * block (PL_GPU_STAGE_BLOCKS=N; default 0: none) */
    int after_kernel; /* the last op on the stream was a kernel */
};

/* Bytes of gdev.xq and of gdev.carry: 22 per 16 inputs, so rows up to 700k
 * elements (the shared-memory limit of the float kernels binds long before);
 * GDEV_CNT counters. */
#define GDEV_XQ_BYTES ((size_t)1 << 20)
#define GDEV_CNT 65536

/* A failed CUDA call as a status with the runtime's words. */
pl_status gdev_cuda_fail(cudaError_t e, const char *what);
/* Status of the last launch (named `what` in the message). */
pl_status gdev_launch_check(const char *what);
/* Raise the dynamic shared memory limits of the kernels that need it. */
pl_status gdev_kernels_init(gdev *d);

/* Launch k on d's stream. After another kernel it is a programmatic
 * dependent launch: its blocks may start while that kernel drains, and every
 * kernel calls gdev_dep_wait before it touches memory earlier kernels wrote
 * (or read), so work that depends on nothing (streaming weights) overlaps the
 * previous kernel's tail and the launch gap. */
template <typename... P, typename... A>
static pl_status gdev_launch(gdev *d, const char *what, void (*k)(P...), dim3 grid, dim3 block, size_t smem,
                             A... args) {
    cudaLaunchConfig_t cfg = {};
    cfg.gridDim = grid;
    cfg.blockDim = block;
    cfg.dynamicSmemBytes = smem;
    cfg.stream = d->stream;
    cudaLaunchAttribute at;
    at.id = cudaLaunchAttributeProgrammaticStreamSerialization;
    at.val.programmaticStreamSerializationAllowed = d->pdl && d->after_kernel;
    cfg.attrs = &at;
    cfg.numAttrs = 1;
    const cudaError_t e = cudaLaunchKernelEx(&cfg, k, args...);
    d->after_kernel = 1;
    d->carry_src = NULL;
    if (e != cudaSuccess) return gdev_cuda_fail(e, what);
    return gdev_launch_check(what);
}

/* Wait until the kernels before this one finished and their writes are
 * visible; then let the next kernel's blocks start launching. */
__device__ __forceinline__ void gdev_dep_wait(void) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.wait;" ::: "memory");
    asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}

#define GDEV_TRY(call, what)                                      \
    do {                                                          \
        cudaError_t e_ = (call);                                  \
        if (e_ != cudaSuccess) return gdev_cuda_fail(e_, what);   \
    } while (0)

/* The dispatch from a runtime type id to a kernel template instance. */
#define GDEV_TYPE_SWITCH(type, T_, ...)                               \
    switch (type) {                                                   \
    case QT_F32: { const int T_ = QT_F32; __VA_ARGS__; break; }       \
    case QT_F16: { const int T_ = QT_F16; __VA_ARGS__; break; }       \
    case QT_BF16: { const int T_ = QT_BF16; __VA_ARGS__; break; }     \
    case QT_Q8_0: { const int T_ = QT_Q8_0; __VA_ARGS__; break; }     \
    case QT_Q4_0: { const int T_ = QT_Q4_0; __VA_ARGS__; break; }     \
    case QT_Q4_K: { const int T_ = QT_Q4_K; __VA_ARGS__; break; }     \
    case QT_Q6_K: { const int T_ = QT_Q6_K; __VA_ARGS__; break; }     \
    default: return pl_fail(PL_ERR_UNSUPPORTED, "gpu: weight type %u is not handled", (unsigned)(type)); \
    }

/* ------------------------------------------------- one part of a row */

template <int TYPE> struct gpart;
template <> struct gpart<QT_F32> { float4 v[4]; };
template <> struct gpart<QT_F16> { uint4 v[2]; };
template <> struct gpart<QT_BF16> { uint4 v[2]; };
template <> struct gpart<QT_Q8_0> { uint4 q; unsigned short d; };
template <> struct gpart<QT_Q4_0> { uint2 q; unsigned short d; };
template <> struct gpart<QT_Q4_K> { uint4 h; uint2 q; };
template <> struct gpart<QT_Q6_K> { uint2 lo; unsigned int hi; signed char sc; unsigned short d; };

/* Load part u of the row whose q and s bytes start at q, s. */
template <int TYPE>
__device__ __forceinline__ void gpart_load(gpart<TYPE> &p, const uint8_t *__restrict__ q,
                                           const uint8_t *__restrict__ s, int u);

template <>
__device__ __forceinline__ void gpart_load<QT_F32>(gpart<QT_F32> &p, const uint8_t *q, const uint8_t *, int u) {
    const float4 *v = (const float4 *)(q + 64 * (size_t)u);
#pragma unroll
    for (int i = 0; i < 4; i++) p.v[i] = __ldg(v + i);
}
template <>
__device__ __forceinline__ void gpart_load<QT_F16>(gpart<QT_F16> &p, const uint8_t *q, const uint8_t *, int u) {
    const uint4 *v = (const uint4 *)(q + 32 * (size_t)u);
    p.v[0] = __ldg(v);
    p.v[1] = __ldg(v + 1);
}
template <>
__device__ __forceinline__ void gpart_load<QT_BF16>(gpart<QT_BF16> &p, const uint8_t *q, const uint8_t *, int u) {
    const uint4 *v = (const uint4 *)(q + 32 * (size_t)u);
    p.v[0] = __ldg(v);
    p.v[1] = __ldg(v + 1);
}
template <>
__device__ __forceinline__ void gpart_load<QT_Q8_0>(gpart<QT_Q8_0> &p, const uint8_t *q, const uint8_t *s, int u) {
    p.q = __ldg((const uint4 *)(q + 16 * (size_t)u));
    p.d = __ldg((const unsigned short *)s + u / 2);
}
template <>
__device__ __forceinline__ void gpart_load<QT_Q4_0>(gpart<QT_Q4_0> &p, const uint8_t *q, const uint8_t *s, int u) {
    p.q = __ldg((const uint2 *)(q + 8 * (size_t)u));
    p.d = __ldg((const unsigned short *)s + u / 2);
}
template <>
__device__ __forceinline__ void gpart_load<QT_Q4_K>(gpart<QT_Q4_K> &p, const uint8_t *q, const uint8_t *, int u) {
    const uint8_t *sb = q + GPU_Q4K_SB * (size_t)(u / 16);
    p.h = __ldg((const uint4 *)sb);
    p.q = __ldg((const uint2 *)(sb + 16 + 8 * (u % 16)));
}
template <>
__device__ __forceinline__ void gpart_load<QT_Q6_K>(gpart<QT_Q6_K> &p, const uint8_t *q, const uint8_t *s, int u) {
    const uint8_t *sb = q + GPU_Q6K_SB * (size_t)(u / 16);
    const int k = u % 16;
    p.lo = __ldg((const uint2 *)(sb + 8 * k));
    p.hi = __ldg((const unsigned int *)(sb + 128 + 4 * k));
    p.sc = __ldg((const signed char *)(sb + 192 + k));
    p.d = __ldg((const unsigned short *)s + u / 16);
}

__device__ __forceinline__ float gdev_h2f(unsigned short h) { return __half2float(__ushort_as_half(h)); }

/* 16 nibbles of a part: element i < 8 in the low nibble of byte i, i >= 8 in
 * the high nibble of byte i - 8. */
__device__ __forceinline__ int gdev_nib(uint2 q, int i) {
    const unsigned w = (i & 7) < 4 ? q.x : q.y;
    return (int)((w >> (8 * (i & 3) + (i < 8 ? 0 : 4))) & 0xF);
}

/* Decode part u (as loaded) into 16 floats. */
template <int TYPE> __device__ __forceinline__ void gpart_decode(const gpart<TYPE> &p, int u, float o[16]);

template <> __device__ __forceinline__ void gpart_decode<QT_F32>(const gpart<QT_F32> &p, int, float o[16]) {
#pragma unroll
    for (int i = 0; i < 4; i++) {
        o[4 * i] = p.v[i].x;
        o[4 * i + 1] = p.v[i].y;
        o[4 * i + 2] = p.v[i].z;
        o[4 * i + 3] = p.v[i].w;
    }
}
template <> __device__ __forceinline__ void gpart_decode<QT_F16>(const gpart<QT_F16> &p, int, float o[16]) {
#pragma unroll
    for (int i = 0; i < 2; i++) {
        const unsigned w[4] = {p.v[i].x, p.v[i].y, p.v[i].z, p.v[i].w};
#pragma unroll
        for (int j = 0; j < 4; j++) {
            o[8 * i + 2 * j] = gdev_h2f((unsigned short)(w[j] & 0xFFFF));
            o[8 * i + 2 * j + 1] = gdev_h2f((unsigned short)(w[j] >> 16));
        }
    }
}
template <> __device__ __forceinline__ void gpart_decode<QT_BF16>(const gpart<QT_BF16> &p, int, float o[16]) {
#pragma unroll
    for (int i = 0; i < 2; i++) {
        const unsigned w[4] = {p.v[i].x, p.v[i].y, p.v[i].z, p.v[i].w};
#pragma unroll
        for (int j = 0; j < 4; j++) {
            o[8 * i + 2 * j] = __uint_as_float(w[j] << 16);
            o[8 * i + 2 * j + 1] = __uint_as_float(w[j] & 0xFFFF0000u);
        }
    }
}
template <> __device__ __forceinline__ void gpart_decode<QT_Q8_0>(const gpart<QT_Q8_0> &p, int, float o[16]) {
    const float d = gdev_h2f(p.d);
    const unsigned w[4] = {p.q.x, p.q.y, p.q.z, p.q.w};
#pragma unroll
    for (int i = 0; i < 16; i++) o[i] = (float)(signed char)((w[i / 4] >> (8 * (i % 4))) & 0xFF) * d;
}
template <> __device__ __forceinline__ void gpart_decode<QT_Q4_0>(const gpart<QT_Q4_0> &p, int, float o[16]) {
    const float d = gdev_h2f(p.d);
#pragma unroll
    for (int i = 0; i < 16; i++) o[i] = (float)(gdev_nib(p.q, i) - 8) * d;
}
/* Byte k (0..11) of the packed Q4_K scales held in words y, z, w. */
__device__ __forceinline__ unsigned gdev_q4k_byte(const uint4 &h, int k) {
    const unsigned w = k < 4 ? h.y : k < 8 ? h.z : h.w;
    return (w >> (8 * (k & 3))) & 0xFF;
}
/* d*sc and dmin*m of the sub-block of part u (as quant_k4_get_scale_min). */
__device__ __forceinline__ void gdev_q4k_dm(const uint4 &h, int u, float &dl, float &ml) {
    const int j = (u % 16) / 2;
    unsigned sc, m;
    if (j < 4) {
        sc = gdev_q4k_byte(h, j) & 63;
        m = gdev_q4k_byte(h, j + 4) & 63;
    } else {
        sc = (gdev_q4k_byte(h, j + 4) & 0xF) | ((gdev_q4k_byte(h, j - 4) >> 6) << 4);
        m = (gdev_q4k_byte(h, j + 4) >> 4) | ((gdev_q4k_byte(h, j) >> 6) << 4);
    }
    dl = gdev_h2f((unsigned short)(h.x & 0xFFFF)) * (float)sc;
    ml = gdev_h2f((unsigned short)(h.x >> 16)) * (float)m;
}
template <> __device__ __forceinline__ void gpart_decode<QT_Q4_K>(const gpart<QT_Q4_K> &p, int u, float o[16]) {
    float dl, ml;
    gdev_q4k_dm(p.h, u, dl, ml);
#pragma unroll
    for (int i = 0; i < 16; i++) o[i] = dl * (float)gdev_nib(p.q, i) - ml;
}
template <> __device__ __forceinline__ void gpart_decode<QT_Q6_K>(const gpart<QT_Q6_K> &p, int, float o[16]) {
    const float dl = gdev_h2f(p.d) * (float)p.sc;
#pragma unroll
    for (int i = 0; i < 16; i++) {
        const int hi = (int)((p.hi >> (8 * (i & 3) + 2 * (i >> 2))) & 3);
        o[i] = dl * (float)((gdev_nib(p.lo, i) | (hi << 4)) - 32);
    }
}

__device__ __forceinline__ float gdev_warp_sum(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}
__device__ __forceinline__ float gdev_warp_max(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

/* The int8 form of a vector of n_parts 16-value parts that the products read
 * (x as the CPU's Q8_0 activations): the values (16 bytes a part), each
 * part's sum as an int at 16 * n_parts (for the weights' offsets and
 * minimums), each 32-value chunk's scale as a float at 20 * n_parts. */
#define GDEV_XQ_PER_PART 22

/* Chunk c of that form from the warp's 32 values (v: this lane's): scale
 * amax/127 and values rounded as quantize_row_q8_0. Whole warp. */
__device__ __forceinline__ void gdev_quant_chunk(float v, int c, int n_parts, unsigned char *out) {
    const int lane = threadIdx.x & 31;
    const float amax = gdev_warp_max(fabsf(v));
    const float dd = amax / 127.0f, id = dd != 0.0f ? 1.0f / dd : 0.0f;
    const int q = (int)roundf(v * id);
    out[32 * c + lane] = (unsigned char)(signed char)q;
    int s = q;
#pragma unroll
    for (int o = 8; o > 0; o >>= 1) s += __shfl_xor_sync(0xffffffffu, s, o);
    if ((lane & 15) == 0) ((int *)(out + 16 * n_parts))[2 * c + (lane >> 4)] = s;
    if (lane == 0) ((float *)(out + 20 * n_parts))[c] = dd;
}

#endif
