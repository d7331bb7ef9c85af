/*
 * Repacking at load: matrices whose kernel runs faster on row-interleaved
 * blocks (kern_pack_pays: Q4_0 where the level has a packed kernel) get an
 * accounted copy in that layout, which kern_matmul reads instead of the
 * file's rows. Planned (plan_packs, plan_model.pack_bytes): the copy replaces
 * the matrix's file pages in the resident set, because each slice's pages are
 * dropped (MADV_DONTNEED: they stay in the page cache, not in this process)
 * once packed, so the peak over the plan is one slice. w->data keeps pointing
 * at the mapping for everything that reads rows (the GPU upload, LoRA merges,
 * training, streaming), which faults pages back in only if it runs.
 * Only when the image is mapped in full: streamed, copied (no_mmap, unaligned
 * sources) and mlock'd images keep the file layout.
 */
#include "model.h"

#include <stdlib.h>
#include <sys/mman.h>

enum { PACK_SLICE_BYTES = 1 << 20 }; /* source bytes per slice between page drops */

/* Drop whole pages of [lo, hi) from the resident set (advisory: a refusal
 * only leaves them resident). */
static void pack_drop(const uint8_t *lo, const uint8_t *hi) {
    const uintptr_t pg = (uintptr_t)mem_page_size();
    const uintptr_t a = ((uintptr_t)lo + pg - 1) / pg * pg, b = (uintptr_t)hi / pg * pg;
    if (b > a) (void)madvise((void *)a, b - a, MADV_DONTNEED);
}

static pl_status pack_matrix(pl_model *m, kern_matrix *w, const char *what) {
    const size_t bytes = quant_row_size(w->type, w->n_in) * (size_t)w->n_out;
    model_owned *owned = realloc(m->owned, sizeof *owned * (size_t)(m->n_owned + 1));
    if (!owned) return pl_fail(PL_ERR_NOMEM, "out of memory");
    m->owned = owned;
    void *dst = NULL;
    pl_status st = mem_alloc(&m->acct, MEM_WEIGHTS, bytes, false, what, &dst);
    if (st) return st;
    m->owned[m->n_owned++] = (model_owned){dst, bytes};
    const int rows = kern_pack_group_rows();
    const size_t group_bytes = quant_row_size(w->type, w->n_in) * (size_t)rows;
    const int64_t n_groups = w->n_out / rows;
    int64_t step = (int64_t)(PACK_SLICE_BYTES / group_bytes);
    if (step < 1) step = 1;
    const uint8_t *src = w->data, *dropped = src;
    for (int64_t g = 0; g < n_groups; g += step) {
        const int64_t g1 = g + step < n_groups ? g + step : n_groups;
        kern_pack(w, g, g1, dst);
        /* from where the last drop ended: the page a slice boundary splits goes too */
        const uint8_t *end = src + (size_t)g1 * group_bytes;
        pack_drop(dropped, end);
        dropped = src + ((uintptr_t)end - (uintptr_t)src) / mem_page_size() * mem_page_size();
        if (dropped < src) dropped = src;
    }
    w->packed = dst;
    return PL_OK;
}

/* The matrices a model may pack: the layers' seven and an untied output
 * (tied, it is the embedding, which is read by rows). */
static int pack_candidates(pl_model *m, kern_matrix **out) {
    int n = 0;
    if (m->output.data != m->tok_embd.data) out[n++] = &m->output;
    for (int il = 0; il < m->hp.n_layer; il++) {
        model_layer *l = &m->layers[il];
        kern_matrix *ws[] = {&l->wq, &l->wk, &l->wv, &l->wo, &l->w_gate, &l->w_up, &l->w_down};
        for (size_t i = 0; i < sizeof ws / sizeof ws[0]; i++) out[n++] = ws[i];
    }
    return n;
}

pl_status model_pack(pl_model *m) {
    plan_opts o;
    const pl_ctx_params cp = pl_ctx_default_params();
    model_mem_opts(m, &cp, &o);
    if (!plan_packs(&m->pm, &o, m->streaming)) return PL_OK;
    kern_matrix **ws = malloc(sizeof *ws * (size_t)(7 * m->hp.n_layer + 1));
    if (!ws) return pl_fail(PL_ERR_NOMEM, "out of memory");
    const int n = pack_candidates(m, ws);
    pl_status st = PL_OK;
    for (int i = 0; i < n && !st; i++)
        if (kern_pack_pays(ws[i]->type, ws[i]->n_in, ws[i]->n_out))
            st = pack_matrix(m, ws[i], ws[i] == &m->output ? "a repacked output matrix" : "a repacked layer matrix");
    /* The kernel maps cached file pages around each fault (fault-around,
     * large folios), so reading one matrix maps pages of its neighbours that
     * were already dropped: one last pass drops every packed matrix's pages
     * again (a 1B Q4_0 kept 26 MiB of them mapped without it). */
    for (int i = 0; i < n; i++)
        if (ws[i]->packed)
            pack_drop(ws[i]->data,
                      (const uint8_t *)ws[i]->data + quant_row_size(ws[i]->type, ws[i]->n_in) * (size_t)ws[i]->n_out);
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
    w->packed = NULL;
}
