/*
 * arm_i8mm: the SMMLA (ARMv8.6 i8mm) instance of arm_tiles.h's tiled matmul,
 * installed by the dotprod level when hwcaps report i8mm. Only this file is
 * built with +i8mm (Makefile per-file flag; for GCC the pragma below does
 * the same where the flag is absent), so nothing else in the binary needs it.
 */
#if defined(__aarch64__)

#if !defined(__ARM_FEATURE_MATMUL_INT8) && defined(__GNUC__) && !defined(__clang__)
#pragma GCC target("arch=armv8.2-a+dotprod+i8mm")
#endif

#define AT_SMMLA 1
#include "arm_tiles.h"

void kern_i8mm_install_gemm(kern_ops *o) { at_install_gemm(o); }

#else
typedef int kern_arm_i8mm_unused; /* not an aarch64 build: nothing here */
#endif
