/*
 * cpu: which instruction-set extensions this processor and its OS support.
 *
 * x86: cpuid says what the core implements, xgetbv says whether the OS saves
 * the wide register state (a feature the OS does not save is unusable, so it
 * is reported absent). aarch64 Linux: the kernel's hwcaps. Other builds report
 * nothing and run the scalar kernels. Detection runs once (pthread_once); the
 * result never changes afterwards, so readers need no lock.
 */
#include "kernels.h"

#include <pthread.h>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#define CPU_X86 1
#endif

#if defined(__aarch64__) && defined(__linux__)
#include <sys/auxv.h>
#define CPU_ARM64_LINUX 1
/* hwcap bits from the kernel's ABI, spelled out for old headers */
#define CPU_HWCAP_ASIMD (1ul << 1)
#define CPU_HWCAP_ASIMDDP (1ul << 20)
#define CPU_HWCAP2_I8MM (1ul << 13)
#endif

static kern_cpu g_cpu;
static pthread_once_t g_cpu_once = PTHREAD_ONCE_INIT;

#ifdef CPU_X86
/* XCR0: which register states the OS saves on a context switch. */
static uint64_t cpu_xgetbv0(void) {
    uint32_t lo, hi;
    __asm__ volatile(".byte 0x0f, 0x01, 0xd0" : "=a"(lo), "=d"(hi) : "c"(0)); /* xgetbv */
    return (uint64_t)hi << 32 | lo;
}

static void cpu_detect_x86(kern_cpu *c) {
    unsigned a, b, cx, d;
    if (!__get_cpuid(1, &a, &b, &cx, &d)) return;
    const bool osxsave = cx & (1u << 27), avx = cx & (1u << 28);
    const bool fma = cx & (1u << 12), f16c = cx & (1u << 29);
    const uint64_t xcr0 = osxsave ? cpu_xgetbv0() : 0;
    const bool ymm_os = (xcr0 & 0x6) == 0x6;           /* SSE + AVX state */
    const bool zmm_os = ymm_os && (xcr0 & 0xe0) == 0xe0; /* opmask + ZMM halves */
    if (!avx || !ymm_os) return; /* nothing below is usable without YMM state */
    c->fma = fma;
    c->f16c = f16c;
    unsigned max_leaf = __get_cpuid_max(0, NULL);
    if (max_leaf < 7) return;
    __cpuid_count(7, 0, a, b, cx, d);
    c->avx2 = b & (1u << 5);
    if (zmm_os) {
        c->avx512f = b & (1u << 16);
        c->avx512bw = b & (1u << 30);
        c->avx512vl = b & (1u << 31);
        c->avx512dq = b & (1u << 17);
        c->avx512vnni = cx & (1u << 11);
    }
    const unsigned sub_leaves = a;
    if (sub_leaves >= 1) {
        __cpuid_count(7, 1, a, b, cx, d);
        c->avx_vnni = a & (1u << 4);
        c->avx512_bf16 = zmm_os && (a & (1u << 5));
    }
}
#endif

#ifdef CPU_ARM64_LINUX
static void cpu_detect_arm64(kern_cpu *c) {
    const unsigned long hw = getauxval(AT_HWCAP), hw2 = getauxval(AT_HWCAP2);
    c->neon = hw & CPU_HWCAP_ASIMD;
    c->dotprod = hw & CPU_HWCAP_ASIMDDP;
    c->i8mm = hw2 & CPU_HWCAP2_I8MM;
}
#endif

static void cpu_detect(void) {
#ifdef CPU_X86
    cpu_detect_x86(&g_cpu);
#endif
#ifdef CPU_ARM64_LINUX
    cpu_detect_arm64(&g_cpu);
#endif
}

const kern_cpu *kern_cpu_features(void) {
    pthread_once(&g_cpu_once, cpu_detect);
    return &g_cpu;
}

kern_level kern_cpu_level(void) {
    const kern_cpu *c = kern_cpu_features();
    if (c->neon) return c->dotprod ? KERN_DOTPROD : KERN_NEON;
    if (!(c->avx2 && c->fma && c->f16c)) return KERN_SCALAR;
    if (c->avx512f && c->avx512bw && c->avx512vl && c->avx512dq) return KERN_AVX512;
    return KERN_AVX2;
}
