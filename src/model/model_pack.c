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

#include <stdio.h>
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
    const uint8_t *src = w->data;
    for (int64_t g = 0; g < n_groups; g += step) {
        const int64_t g1 = g + step < n_groups ? g + step : n_groups;
        kern_pack(w, g, g1, dst);
        pack_drop(src + (size_t)g * group_bytes, src + (size_t)g1 * group_bytes);
    }
    w->packed = dst;
    return PL_OK;
}

pl_status model_pack(pl_model *m) {
    plan_opts o;
    const pl_ctx_params cp = pl_ctx_default_params();
    model_mem_opts(m, &cp, &o);
    if (!plan_packs(&m->pm, &o, m->streaming)) return PL_OK;
    char what[96];
    for (int il = -1; il < m->hp.n_layer; il++) {
        model_layer *l = il >= 0 ? &m->layers[il] : NULL;
        kern_matrix *ws[] = {l ? &l->wq : &m->output, l ? &l->wk : NULL, l ? &l->wv : NULL, l ? &l->wo : NULL,
                             l ? &l->w_gate : NULL, l ? &l->w_up : NULL, l ? &l->w_down : NULL};
        for (size_t i = 0; i < sizeof ws / sizeof ws[0]; i++) {
            kern_matrix *w = ws[i];
            /* tied: the output matrix is the embedding, which is read by rows */
            if (!w || (w == &m->output && m->output.data == m->tok_embd.data)) continue;
            if (!kern_pack_pays(w->type, w->n_in, w->n_out)) continue;
            snprintf(what, sizeof what, "a repacked matrix of %s", il >= 0 ? "a layer" : "the output");
            pl_status st = pack_matrix(m, w, what);
            if (st) return st;
        }
    }
    return PL_OK;
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
