/*
 * x86_avxvnni_packed: x86_avx2_packed.c's Q4_0, Q8_0 and Q4_K kernels built with
 * AVX-VNNI (VEX VPDPBUSD: Alder Lake and later Intel cores, Zen 5), which
 * kern_avx2_install_packed installs over its own where the CPU has it (and
 * PL_KERNELS_NO_VNNI is unset). Same integer sums, so the same results.
 * Its Q6_K kernel, built here too, is the AVX2 one: two maddubs per madd
 * gain nothing from VNNI.
 */
#if defined(__x86_64__) || defined(__i386__)

#define PK_VNNI 1
#define PK_INSTALL kern_avxvnni_install_packed
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx2,fma,f16c,avxvnni"))), apply_to = function)
#elif defined(__GNUC__)
#pragma GCC target("avx2,fma,f16c,avxvnni")
#endif

#include "x86_avx2_packed.c"

#else
typedef int kern_x86_avxvnni_packed_unused; /* not an x86 build: nothing here */
#endif
