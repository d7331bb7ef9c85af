/*
 * x86_avx512_packed: x86_avx2_packed.c's Q4_0, Q8_0 and Q4_K kernels built with
 * AVX512-VNNI's VPDPBUSD on 256-bit vectors (AVX512VL: Ice Lake, Zen 4 and
 * later), which kern_avx512_install installs where the CPU has it (and
 * PL_KERNELS_NO_VNNI is unset). Same integer sums, so the same results.
 * Its Q6_K kernel, built here too, is the AVX2 one: two maddubs per madd
 * gain nothing from VNNI.
 */
#if defined(__x86_64__) || defined(__i386__)

#define PK_VNNI 2
#define PK_INSTALL kern_avx512vnni_install_packed
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx2,fma,f16c,avx512f,avx512vl,avx512vnni"))), apply_to = function)
#elif defined(__GNUC__)
#pragma GCC target("avx2,fma,f16c,avx512f,avx512vl,avx512vnni")
#endif

#include "x86_avx2_packed.c"

#else
typedef int kern_x86_avx512_packed_unused; /* not an x86 build: nothing here */
#endif
