/*
 * dispatch: chooses the kernel level once and fills the kern_ops table.
 *
 * The table starts as the scalar references (quant traits for the row
 * functions, ref_ops.c for the float kernels); each level up to the chosen
 * one then overwrites what it implements, so a type or op without a SIMD
 * version keeps its reference. The level is the best one that the CPU
 * supports and this build has kernels for, lowered by PL_KERNELS. The public
 * kern_* float kernels here are thin calls through the table.
 */
#include "kern_impl.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* Levels as data: name, and the installers that build the level on top of
 * the one below (NULL where this build has no kernels for it). */
typedef struct level_desc {
    const char *name;
    void (*install[5])(kern_ops *ops);
} level_desc;

static const level_desc k_levels[KERN_LEVEL_COUNT] = {
    [KERN_SCALAR] = {"scalar", {NULL}},
#ifdef KERN_HAVE_AVX2
    [KERN_AVX2] = {"avx2", {kern_avx2_install_dots, kern_avx2_install_ops, kern_avx2_install_gemm,
                             kern_avx2_install_attn_q8, kern_avx2_install_packed}},
#else
    [KERN_AVX2] = {"avx2", {NULL}},
#endif
#ifdef KERN_HAVE_AVX512
    [KERN_AVX512] = {"avx512", {kern_avx512_install}},
#else
    [KERN_AVX512] = {"avx512", {NULL}},
#endif
#ifdef KERN_HAVE_NEON
    [KERN_NEON] = {"neon", {kern_neon_install}},
    [KERN_DOTPROD] = {"dotprod", {kern_dotprod_install}},
#else
    [KERN_NEON] = {"neon", {NULL}},
    [KERN_DOTPROD] = {"dotprod", {NULL}},
#endif
};

_Atomic(const kern_ops *) kern_g_ops;
static kern_ops g_table;
static pthread_once_t g_once = PTHREAD_ONCE_INIT;

int kern_level_from_name(const char *name) {
    for (int l = 0; name && l < KERN_LEVEL_COUNT; l++)
        if (strcasecmp(name, k_levels[l].name) == 0) return l;
    return -1;
}

/* Highest level <= want that the CPU supports and this build has kernels
 * for. A level without kernels of its own (AVX-512 for now) would run the
 * level below's, so it is reported as that one. */
static kern_level dispatch_cap(kern_level want) {
    const kern_level cpu = kern_cpu_level();
    kern_level l = want < cpu ? want : cpu;
    while (l > KERN_SCALAR && !k_levels[l].install[0]) l = (kern_level)(l - 1);
    return l;
}

static void dispatch_fill(kern_ops *o, kern_level level) {
    memset(o, 0, sizeof *o);
    o->level = level;
    for (uint32_t t = 0; t < QT_COUNT; t++) {
        const quant_traits *tr = quant_get(t);
        if (!tr) continue;
        o->vec_dot[t] = tr->vec_dot;
        o->from_float[t] = tr->from_float;
    }
    o->rmsnorm = kern_ref_rmsnorm;
    o->softmax = kern_ref_softmax;
    o->silu_mul = kern_ref_silu_mul;
    o->logsumexp = kern_ref_logsumexp;
    o->attn_scores_f16 = kern_ref_attn_scores_f16;
    o->attn_values_f16 = kern_ref_attn_values_f16;
    o->attn_scores_q8_0 = kern_ref_attn_scores_q8_0;
    o->attn_values_q8_0 = kern_ref_attn_values_q8_0;
    kern_pack_install_ref(o);
    for (int l = KERN_SCALAR + 1; l <= (int)level; l++)
        for (size_t i = 0; i < sizeof k_levels[l].install / sizeof k_levels[l].install[0]; i++)
            if (k_levels[l].install[i]) k_levels[l].install[i](o);
}

static void dispatch_init_once(void) {
    kern_level want = KERN_LEVEL_COUNT - 1;
    const char *env = getenv("PL_KERNELS");
    if (env && *env) {
        int l = kern_level_from_name(env);
        if (l >= 0) want = (kern_level)l; /* an unknown name keeps the best level */
    }
    dispatch_fill(&g_table, dispatch_cap(want));
    atomic_store_explicit(&kern_g_ops, &g_table, memory_order_release);
}

const kern_ops *kern_ops_init(void) {
    pthread_once(&g_once, dispatch_init_once);
    return &g_table;
}

kern_level kern_force(kern_level level) {
    kern_ops_init();
    if ((int)level < 0 || level >= KERN_LEVEL_COUNT) level = KERN_LEVEL_COUNT - 1;
    dispatch_fill(&g_table, dispatch_cap(level));
    return g_table.level;
}

void kern_packed_tiles_force(int on) {
    kern_ops_init();
    const kern_level level = g_table.level;
    kern_ops def;
    dispatch_fill(&def, level);
    for (uint32_t t = 0; t < QT_COUNT; t++)
        g_table.packed_tiles[t] = on < 0 ? def.packed_tiles[t] : (on && g_table.gemm[t].rows && g_table.packed[t].rows);
}

bool kern_vnni_packed_wanted(void) {
    const char *e = getenv("PL_KERNELS_NO_VNNI");
    return !e || !*e || !strcmp(e, "0");
}

kern_level kern_level_get(void) { return kern_ops_get()->level; }

const char *kern_level_name(void) { return k_levels[kern_ops_get()->level].name; }

quant_vec_dot_fn kern_vec_dot(uint32_t type) { return type < QT_COUNT ? kern_ops_get()->vec_dot[type] : NULL; }

quant_from_float_fn kern_from_float(uint32_t type) {
    return type < QT_COUNT ? kern_ops_get()->from_float[type] : NULL;
}

void kern_rmsnorm(float *y, const float *x, const float *w, int n, float eps) {
    kern_ops_get()->rmsnorm(y, x, w, n, eps);
}

void kern_softmax(float *x, int n) { kern_ops_get()->softmax(x, n); }

void kern_silu_mul(float *h, const float *g, const float *u, int n) { kern_ops_get()->silu_mul(h, g, u, n); }

double kern_logsumexp(const float *x, int n) { return kern_ops_get()->logsumexp(x, n); }
