/*
 * arm_dotprod: the aarch64 "dotprod" level: the integer row dots of
 * arm_dots.h over SDOT (vdotq_s32, ARMv8.2 dotprod: four int8 products summed
 * into each int32 lane in one instruction), overwriting the neon level's
 * versions. Only this file is built for armv8.2-a+dotprod (Makefile per-file
 * flag; for GCC the pragma below does the same where the flag is absent,
 * clang needs the flag), and its functions
 * run only where the kernel's hwcaps report SDOT, so the rest of the binary
 * stays baseline armv8-a. Float kernels and quantizers come from the level
 * below unchanged. Prompt batches get arm_tiles.h's tiled matmul over SDOT,
 * or where the CPU also has i8mm, its SMMLA instance (arm_i8mm.c); weights
 * packed at load (pack.c) get arm_packed.h's kernels.
 */
#if defined(__aarch64__)

#if !defined(__ARM_FEATURE_DOTPROD) && defined(__GNUC__) && !defined(__clang__)
#pragma GCC target("arch=armv8.2-a+dotprod")
#endif

#include "arm_util.h"

/* SDOT is exact for any int8 operands (no int16 stage). */
#define AD_DOT16(acc, a, b) vdotq_s32(acc, a, b)
#include "arm_dots.h"
#define AT_SMMLA 0
#include "arm_tiles.h"
#include "arm_packed.h"

void kern_dotprod_install(kern_ops *o) {
    ad_install_int_dots(o);
    at_install_gemm(o); /* SDOT tiles, replaced by SMMLA ones where i8mm exists */
    if (kern_cpu_features()->i8mm) kern_i8mm_install_gemm(o);
    ap_install_packed(o); /* pack.c's Q4_0 and Q4_K layouts */
}

#else
typedef int kern_arm_dotprod_unused; /* not an aarch64 build: nothing here */
#endif
