/*
 * arm_dotprod: the aarch64 "dotprod" level: the integer row dots of
 * arm_dots.h over SDOT (vdotq_s32, ARMv8.2 dotprod: four int8 products summed
 * into each int32 lane in one instruction), overwriting the neon level's
 * versions. Only this file is built for armv8.2-a+dotprod (Makefile per-file
 * flag, or the pragma below where that flag is absent), and its functions
 * run only where the kernel's hwcaps report SDOT, so the rest of the binary
 * stays baseline armv8-a. Float kernels and quantizers come from the level
 * below unchanged.
 */
#if defined(__aarch64__)

#if !defined(__ARM_FEATURE_DOTPROD) && defined(__GNUC__) && !defined(__clang__)
#pragma GCC target("+dotprod")
#endif

#include "arm_util.h"

/* SDOT is exact for any int8 operands (no int16 stage). */
#define AD_DOT16(acc, a, b) vdotq_s32(acc, a, b)
#include "arm_dots.h"

void kern_dotprod_install(kern_ops *o) { ad_install_int_dots(o); }

#else
typedef int kern_arm_dotprod_unused; /* not an aarch64 build: nothing here */
#endif
