/*
 * Dense f32 products for training: one GEMM shape, C (+)= A B with A readable
 * transposed through its two strides, which covers all three products a
 * linear layer needs (y = x W^T via a transposed copy of W, dx = dy W,
 * dW = dy^T x). Threaded over rows of C in contiguous ranges, so threads
 * never write the same memory. The inner 6x16 tile keeps C in registers
 * across a block of K; an AVX2+FMA version is chosen at run time when the CPU
 * has it (PL_KERNELS=scalar forces the portable one, as for the kernels).
 */
#include "train.h"

#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define TG_HAVE_X86 1
#else
#define TG_HAVE_X86 0
#endif

#define TG_MR 6   /* rows of the register tile (6x16: 12 accumulators, BLIS's Haswell shape) */
#define TG_NR 16  /* columns of the register tile */
#define TG_KC 256 /* K block */
#define TG_NC 256 /* column block: B's KC x NC block (256 KB) stays in L2 */
#define TG_MC 96  /* row block of A packed at once (96 KB, on the stack) */

static int tg_use_avx2(void) {
    static int cached = -1;
    if (cached < 0) {
        int ok = 0;
#if TG_HAVE_X86
        __builtin_cpu_init();
        ok = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#endif
        const char *env = getenv("PL_KERNELS");
        if (env && !strcmp(env, "scalar")) ok = 0;
        cached = ok;
    }
    return cached;
}

/* Any tile up to MR x NR, portable. */
static void tg_tile_generic(int ni, int nj, int kc, const float *A, int64_t asi, int64_t ask, const float *B,
                            int64_t ldb, float *Cm, int64_t ldc, bool add) {
    float acc[TG_MR][TG_NR];
    for (int i = 0; i < ni; i++)
        for (int j = 0; j < nj; j++) acc[i][j] = add ? Cm[i * ldc + j] : 0.0f;
    for (int k = 0; k < kc; k++) {
        const float *b = B + k * ldb;
        for (int i = 0; i < ni; i++) {
            const float a = A[i * asi + k * ask];
            for (int j = 0; j < nj; j++) acc[i][j] += a * b[j];
        }
    }
    for (int i = 0; i < ni; i++)
        for (int j = 0; j < nj; j++) Cm[i * ldc + j] = acc[i][j];
}

#if TG_HAVE_X86
#define TG_LD(i) (add ? _mm256_loadu_ps(Cm + (i) * ldc) : _mm256_setzero_ps())
#define TG_LD8(i) (add ? _mm256_loadu_ps(Cm + (i) * ldc + 8) : _mm256_setzero_ps())
#define TG_ROW(i, x0, x1)                                  \
    a = _mm256_broadcast_ss(A + (i) * asi);              \
    x0 = _mm256_fmadd_ps(a, b0, x0);                      \
    x1 = _mm256_fmadd_ps(a, b1, x1)
__attribute__((target("avx2,fma"))) static void tg_tile_avx2(int kc, const float *A, int64_t asi, int64_t ask,
                                                             const float *B, int64_t ldb, float *Cm, int64_t ldc,
                                                             bool add) {
    __m256 c00 = TG_LD(0), c01 = TG_LD8(0), c10 = TG_LD(1), c11 = TG_LD8(1), c20 = TG_LD(2), c21 = TG_LD8(2);
    __m256 c30 = TG_LD(3), c31 = TG_LD8(3), c40 = TG_LD(4), c41 = TG_LD8(4), c50 = TG_LD(5), c51 = TG_LD8(5);
    for (int k = 0; k < kc; k++) {
        const __m256 b0 = _mm256_loadu_ps(B), b1 = _mm256_loadu_ps(B + 8);
        __m256 a;
        TG_ROW(0, c00, c01);
        TG_ROW(1, c10, c11);
        TG_ROW(2, c20, c21);
        TG_ROW(3, c30, c31);
        TG_ROW(4, c40, c41);
        TG_ROW(5, c50, c51);
        A += ask;
        B += ldb;
    }
    _mm256_storeu_ps(Cm, c00), _mm256_storeu_ps(Cm + 8, c01);
    _mm256_storeu_ps(Cm + ldc, c10), _mm256_storeu_ps(Cm + ldc + 8, c11);
    _mm256_storeu_ps(Cm + 2 * ldc, c20), _mm256_storeu_ps(Cm + 2 * ldc + 8, c21);
    _mm256_storeu_ps(Cm + 3 * ldc, c30), _mm256_storeu_ps(Cm + 3 * ldc + 8, c31);
    _mm256_storeu_ps(Cm + 4 * ldc, c40), _mm256_storeu_ps(Cm + 4 * ldc + 8, c41);
    _mm256_storeu_ps(Cm + 5 * ldc, c50), _mm256_storeu_ps(Cm + 5 * ldc + 8, c51);
}
#undef TG_LD
#undef TG_LD8
#undef TG_ROW

__attribute__((target("avx2,fma"))) static float tg_dot_avx2(const float *x, const float *y, int n) {
    __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
    int i = 0;
    for (; i + 16 <= n; i += 16) {
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i), s0);
        s1 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i + 8), _mm256_loadu_ps(y + i + 8), s1);
    }
    for (; i + 8 <= n; i += 8) s0 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i), s0);
    s0 = _mm256_add_ps(s0, s1);
    __m128 h = _mm_add_ps(_mm256_castps256_ps128(s0), _mm256_extractf128_ps(s0, 1));
    h = _mm_add_ps(h, _mm_movehl_ps(h, h));
    h = _mm_add_ss(h, _mm_movehdup_ps(h));
    float s = _mm_cvtss_f32(h);
    for (; i < n; i++) s += x[i] * y[i];
    return s;
}

__attribute__((target("avx2,fma"))) static void tg_axpy_avx2(float *y, float a, const float *x, int n) {
    const __m256 va = _mm256_set1_ps(a);
    int i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, _mm256_fmadd_ps(va, _mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i)));
    for (; i < n; i++) y[i] += a * x[i];
}
#endif

float train_dot(const float *x, const float *y, int n) {
#if TG_HAVE_X86
    if (tg_use_avx2()) return tg_dot_avx2(x, y, n);
#endif
    float s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    int i = 0;
    for (; i + 4 <= n; i += 4) s0 += x[i] * y[i], s1 += x[i + 1] * y[i + 1], s2 += x[i + 2] * y[i + 2], s3 += x[i + 3] * y[i + 3];
    for (; i < n; i++) s0 += x[i] * y[i];
    return (s0 + s1) + (s2 + s3);
}

void train_axpy(float *y, float a, const float *x, int n) {
#if TG_HAVE_X86
    if (tg_use_avx2()) {
        tg_axpy_avx2(y, a, x, n);
        return;
    }
#endif
    for (int i = 0; i < n; i++) y[i] += a * x[i];
}

typedef struct tg_job {
    int M, N, K;
    const float *A;
    int64_t asi, ask;
    const float *B;
    int64_t ldb;
    float *C;
    int64_t ldc;
    bool acc;
} tg_job;

/* Blocked as BLIS does it, less the B packing: per K block of KC, a block of
 * MC rows of A is packed once, k-major in slivers of 6 rows (the tile then
 * reads it sequentially, whatever A's strides), and reused over every column
 * block of NC, whose B block (KC x NC) stays in L2 across the slivers. */
static void tg_rows(const tg_job *j, int i0, int i1) {
    const bool avx2 = tg_use_avx2();
    float apack[TG_MC * TG_KC];
    for (int k0 = 0; k0 < j->K; k0 += TG_KC) {
        const int kc = j->K - k0 < TG_KC ? j->K - k0 : TG_KC;
        const bool add = j->acc || k0 > 0;
        for (int ic = i0; ic < i1; ic += TG_MC) {
            const int iend = i1 - ic < TG_MC ? i1 : ic + TG_MC;
            if (avx2)
                for (int i = ic; i + TG_MR <= iend; i += TG_MR) {
                    const float *a = j->A + i * j->asi + k0 * j->ask;
                    float *dst = apack + (size_t)(i - ic) * kc;
                    for (int k = 0; k < kc; k++)
                        for (int r = 0; r < TG_MR; r++) dst[k * TG_MR + r] = a[r * j->asi + k * j->ask];
                }
            for (int jc = 0; jc < j->N; jc += TG_NC) {
                const int jend = j->N - jc < TG_NC ? j->N : jc + TG_NC;
                for (int i = ic; i < iend; i += TG_MR) {
                    const int ni = iend - i < TG_MR ? iend - i : TG_MR;
                    const float *a = j->A + i * j->asi + k0 * j->ask;
                    for (int c = jc; c < jend; c += TG_NR) {
                        const int nj = jend - c < TG_NR ? jend - c : TG_NR;
                        const float *b = j->B + k0 * j->ldb + c;
                        float *cm = j->C + i * j->ldc + c;
#if TG_HAVE_X86
                        if (avx2 && ni == TG_MR && nj == TG_NR) {
                            tg_tile_avx2(kc, apack + (size_t)(i - ic) * kc, 1, TG_MR, b, j->ldb, cm, j->ldc, add);
                            continue;
                        }
#endif
                        tg_tile_generic(ni, nj, kc, a, j->asi, j->ask, b, j->ldb, cm, j->ldc, add);
                    }
                }
            }
        }
    }
}

static void tg_worker(void *arg, int ith, int nth) {
    const tg_job *j = arg;
    /* contiguous ranges of whole register tiles */
    const int tiles = (j->M + TG_MR - 1) / TG_MR;
    int i0 = (int)((int64_t)tiles * ith / nth) * TG_MR, i1 = (int)((int64_t)tiles * (ith + 1) / nth) * TG_MR;
    if (i1 > j->M) i1 = j->M;
    if (i0 >= i1) return;
    if (j->K == 0) {
        if (!j->acc)
            for (int i = i0; i < i1; i++) memset(j->C + i * j->ldc, 0, sizeof(float) * (size_t)j->N);
        return;
    }
    tg_rows(j, i0, i1);
}

void train_gemm(pl_pool *pool, int M, int N, int K, const float *A, int64_t a_si, int64_t a_sk, const float *B,
                int64_t ldb, float *Cm, int64_t ldc, bool accumulate) {
    if (M <= 0 || N <= 0) return;
    tg_job j = {M, N, K, A, a_si, a_sk, B, ldb, Cm, ldc, accumulate};
    /* small products are not worth waking the pool */
    if (!pool || (int64_t)M * N * (K ? K : 1) < 32768)
        tg_worker(&j, 0, 1);
    else
        pool_run(pool, tg_worker, &j);
}

typedef struct tt_job {
    const float *src;
    int rows, cols;
    float *dst;
} tt_job;

static void tt_worker(void *arg, int ith, int nth) {
    const tt_job *j = arg;
    enum { BS = 32 };
    const int blocks = (j->cols + BS - 1) / BS;
    for (int bc = blocks * ith / nth; bc < blocks * (ith + 1) / nth; bc++) {
        const int c0 = bc * BS, c1 = c0 + BS < j->cols ? c0 + BS : j->cols;
        for (int r0 = 0; r0 < j->rows; r0 += BS) {
            const int r1 = r0 + BS < j->rows ? r0 + BS : j->rows;
            for (int c = c0; c < c1; c++)
                for (int r = r0; r < r1; r++) j->dst[(size_t)c * j->rows + r] = j->src[(size_t)r * j->cols + c];
        }
    }
}

void train_transpose(pl_pool *pool, const float *src, int rows, int cols, float *dst) {
    tt_job j = {src, rows, cols, dst};
    if (pool)
        pool_run(pool, tt_worker, &j);
    else
        tt_worker(&j, 0, 1);
}
