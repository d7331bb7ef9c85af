/*
 * x86_avx512_bf16: the BF16 x BF16 row dot with VDPBF16PS (AVX512_BF16),
 * installed by kern_avx512_install when the CPU has it. A file of its own so
 * that only this code is compiled for the extension.
 *
 * VDPBF16PS multiplies bfloat pairs exactly in float (8-bit significands) and
 * adds them to float lanes with round-to-nearest-even, as the reference's
 * float sums do, in another order. It also treats subnormal inputs and
 * results as zero: products below 2^-126 are dropped, which moves a sum by
 * less than 1e-37 per element (the reference keeps them).
 */
#if defined(__x86_64__) || defined(__i386__)

#include "kern_impl.h"

#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512dq,avx512bf16"))), \
                             apply_to = function)
#elif defined(__GNUC__)
#pragma GCC target("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512dq,avx512bf16")
#endif

#include "x86_avx512_util.h"

static inline __m512 a5_dp_bf16(__m512 acc, __m512i x, __m512i y) { return _mm512_dpbf16_ps(acc, (__m512bh)x, (__m512bh)y); }

/* 128 elements per step in four chains, then 32, then one masked tail. */
static void a5_dot_bf16(int n, float *s, const void *vx, const void *vy) {
    const pl_bf16 *x = vx, *y = vy;
    __m512 v0 = _mm512_setzero_ps(), v1 = v0, v2 = v0, v3 = v0;
    int i = 0;
    for (; i + 128 <= n; i += 128) {
        v0 = a5_dp_bf16(v0, a5_load(x + i), a5_load(y + i));
        v1 = a5_dp_bf16(v1, a5_load(x + i + 32), a5_load(y + i + 32));
        v2 = a5_dp_bf16(v2, a5_load(x + i + 64), a5_load(y + i + 64));
        v3 = a5_dp_bf16(v3, a5_load(x + i + 96), a5_load(y + i + 96));
    }
    for (; i + 32 <= n; i += 32) v0 = a5_dp_bf16(v0, a5_load(x + i), a5_load(y + i));
    if (i < n) {
        const __mmask32 m = (__mmask32)((1u << (n - i)) - 1);
        v1 = a5_dp_bf16(v1, _mm512_maskz_loadu_epi16(m, x + i), _mm512_maskz_loadu_epi16(m, y + i));
    }
    *s = _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(v0, v1), _mm512_add_ps(v2, v3)));
}

void kern_avx512_install_bf16(kern_ops *o) { o->vec_dot[QT_BF16] = a5_dot_bf16; }

#if defined(__clang__)
#pragma clang attribute pop
#endif

#else
typedef int x86_avx512_bf16_empty; /* not an x86 build: nothing here */
#endif
