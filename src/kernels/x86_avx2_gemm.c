/*
 * x86_avx2_gemm: the AVX2 tiled matmul for prompt batches. Installs nothing
 * yet, so kern_matmul uses the row-dot path at every T.
 */
#if defined(__x86_64__) || defined(__i386__)
#include "kern_impl.h"
void kern_avx2_install_gemm(kern_ops *o) { (void)o; }
#else
typedef int kern_x86_avx2_gemm_unused; /* not an x86 build: nothing here */
#endif
