/*
 * x86_avx512: the AVX-512 level (F/BW/VL/DQ, VNNI where the CPU has it),
 * installed on top of the AVX2 level by dispatch.c. It overwrites only the
 * entries it implements; everything else keeps the AVX2 kernel.
 */
#if defined(__x86_64__) || defined(__i386__)

#include "kern_impl.h"

void kern_avx512_install(kern_ops *ops) { (void)ops; }

#else
typedef int x86_avx512_empty; /* ISO C forbids an empty translation unit */
#endif
