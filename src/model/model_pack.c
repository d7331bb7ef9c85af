/*
 * Repacking at load: matrices whose kernel runs faster on row-interleaved
 * blocks (kern_pack_pays: Q4_0, Q8_0, Q4_K and Q6_K on the AVX2 level, the
 * same but Q6_K on AVX-512, Q4_0 and Q4_K on dotprod) get an accounted copy in that layout, which kern_matmul reads instead of the
 * file's rows. Planned (plan_packs, plan_model.pack_bytes): the copy replaces
 * the matrix's file pages in the resident set, because each slice's pages are
 * dropped (MADV_DONTNEED: they stay in the page cache, not in this process)
 * once packed, so the peak over the plan is one slice per packing thread. w->data keeps pointing
 * at the mapping for everything that reads rows (the GPU upload, LoRA merges,
 * training, streaming), which faults pages back in only if it runs.
 * Only when the image is mapped in full: streamed, copied (no_mmap, unaligned
 * sources) and mlock'd images keep the file layout.
 */
#include "model.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <sys/mman.h>

enum {
    PACK_SLICE_BYTES = 1 << 20, /* source bytes per slice between page drops */
    PACK_THREADS = 4            /* at most, for the copying at load */
};

/* Drop whole pages of [lo, hi) from the resident set (advisory: a refusal
 * only leaves them resident). */
static void pack_drop(const uint8_t *lo, const uint8_t *hi) {
    const uintptr_t pg = (uintptr_t)mem_page_size();
    const uintptr_t a = ((uintptr_t)lo + pg - 1) / pg * pg, b = (uintptr_t)hi / pg * pg;
    if (b > a) (void)madvise((void *)a, b - a, MADV_DONTNEED);
}

/* Pack w into dst (its accounted copy) a slice at a time, dropping each
 * slice's source pages once packed. */
static void pack_matrix(kern_matrix *w, void *dst) {
    const uintptr_t pg = (uintptr_t)mem_page_size();
    const int rows = kern_pack_group_rows();
    const size_t group_bytes = quant_row_size(w->type, w->n_in) * (size_t)rows;
    const int64_t n_groups = w->n_out / rows;
    int64_t step = (int64_t)(PACK_SLICE_BYTES / group_bytes);
    if (step < 1) step = 1;
    const uint8_t *src = w->data, *dropped = src;
    for (int64_t g = 0; g < n_groups; g += step) {
        const int64_t g1 = g + step < n_groups ? g + step : n_groups;
        kern_pack(w, g, g1, dst);
        /* from the page boundary below the last drop's end: the page a slice
         * boundary splits goes with the next slice */
        const uint8_t *end = src + (size_t)g1 * group_bytes;
        pack_drop(dropped, end);
        dropped = (const uint8_t *)((uintptr_t)end / pg * pg);
        if (dropped < src) dropped = src;
    }
    w->packed = dst;
}

typedef struct pack_job {
    kern_matrix **ws; /* matrices to pack, with their copies */
    void **dst;
    int n;
    atomic_int next;
} pack_job;

/* Each thread (the loader's too) claims whole matrices. */
static void *pack_worker(void *arg) {
    pack_job *j = arg;
    for (int i; (i = atomic_fetch_add(&j->next, 1)) < j->n;) pack_matrix(j->ws[i], j->dst[i]);
    return NULL;
}

/* The matrices a model may pack: the layers' seven and the output, which
 * when tied is the embedding too (model_pack shares the copy with
 * tok_embd, whose lookups then read it by rows: kern_row_to_float). */
static int pack_candidates(pl_model *m, kern_matrix **out) {
    int n = 0;
    out[n++] = &m->output;
    for (int il = 0; il < m->hp.n_layer; il++)
        for (int i = 0; i < PLAN_LAYER_MATS; i++) out[n++] = model_layer_mat(&m->layers[il], i);
    return n;
}

pl_status model_pack(pl_model *m) {
    plan_opts o;
    const pl_ctx_params cp = pl_ctx_default_params();
    model_mem_opts(m, &cp, &o);
    if (!plan_packs(&m->pm, &o, m->streaming)) return PL_OK;
    const int cap = PLAN_LAYER_MATS * m->hp.n_layer + 1;
    kern_matrix **ws = malloc(sizeof *ws * (size_t)cap), **todo = malloc(sizeof *todo * (size_t)cap);
    void **dst = malloc(sizeof *dst * (size_t)cap);
    model_owned *owned = realloc(m->owned, sizeof *owned * (size_t)(m->n_owned + cap));
    if (owned) m->owned = owned;
    if (!ws || !todo || !dst || !owned) {
        free(ws), free(todo), free(dst);
        return pl_fail(PL_ERR_NOMEM, "out of memory");
    }
    /* every copy allocated (and charged) first, on this thread */
    const int n = pack_candidates(m, ws);
    pl_status st = PL_OK;
    pack_job job = {.ws = todo, .dst = dst};
    atomic_init(&job.next, 0);
    for (int i = 0; i < n && !st; i++) {
        kern_matrix *w = ws[i];
        if (!kern_pack_pays(w->type, w->n_in, w->n_out)) continue;
        const size_t bytes = quant_row_size(w->type, w->n_in) * (size_t)w->n_out;
        if ((st = mem_alloc(&m->acct, MEM_WEIGHTS, bytes, false,
                            w == &m->output ? "a repacked output matrix" : "a repacked layer matrix", &dst[job.n])))
            break;
        m->owned[m->n_owned++] = (model_owned){dst[job.n], bytes};
        todo[job.n++] = w;
    }
    /* then packed by up to PACK_THREADS threads: copying 0.6 GB is ~1 s on
     * one core of this project's VM */
    if (!st) {
        pthread_t th[PACK_THREADS];
        int started = 0, want = pl_cpu_count();
        if (want > PACK_THREADS) want = PACK_THREADS;
        while (started + 1 < want && started + 1 < job.n && pthread_create(&th[started], NULL, pack_worker, &job) == 0)
            started++;
        pack_worker(&job);
        for (int i = 0; i < started; i++) pthread_join(th[i], NULL);
    }
    free(todo);
    free(dst);
    /* The kernel maps cached file pages around each fault (fault-around,
     * large folios), so reading one matrix maps pages of its neighbours that
     * were already dropped: one last pass drops every packed matrix's pages
     * again (a 1B Q4_0 kept 26 MiB of them mapped without it). */
    for (int i = 0; i < n; i++)
        if (ws[i]->packed)
            pack_drop(ws[i]->data,
                      (const uint8_t *)ws[i]->data + quant_row_size(ws[i]->type, ws[i]->n_in) * (size_t)ws[i]->n_out);
    if (m->output.data == m->tok_embd.data) m->tok_embd.packed = m->output.packed;
    free(ws);
    return st;
}

void model_unpack(pl_model *m, kern_matrix *w) {
    if (!w->packed) return;
    for (int i = 0; i < m->n_owned; i++)
        if (m->owned[i].p == w->packed) {
            mem_free(&m->acct, MEM_WEIGHTS, m->owned[i].p, m->owned[i].bytes);
            m->owned[i] = m->owned[--m->n_owned];
            m->pm.pack_bytes -= quant_row_size(w->type, w->n_in) * (uint64_t)w->n_out;
            m->pm.pack_held -= mem_held(quant_row_size(w->type, w->n_in) * (size_t)w->n_out);
            break;
        }
    /* a tied embedding shares the output's copy */
    if (m->tok_embd.packed == w->packed && w != &m->tok_embd) m->tok_embd.packed = NULL;
    if (m->output.packed == w->packed && w != &m->output) m->output.packed = NULL;
    w->packed = NULL;
}
