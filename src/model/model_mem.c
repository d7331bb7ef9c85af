/*
 * A model's memory policy. At load: the plan of the model with a one-token
 * context is checked against the budget before any weight page is touched or
 * copied; then the image is copied (no_mmap), locked (mlock) or advised
 * (madvise), and what the engine will hold is charged to the model's account:
 * mapped weights and the runtime as MEM_EXTERNAL, the tokenizer's tables as
 * MEM_OTHER, copies as MEM_WEIGHTS. A context is planned the same way and made
 * only when the plan fits; its KV cache and scratch are two accounted blocks
 * carved by plan_ctx_layout_make, touched up front, so decoding never
 * allocates and the resident size is the plan's from the first token.
 */
#include "model.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>

static double mm_mib(uint64_t n) { return (double)n / 1048576.0; }

void model_mem_opts(const pl_model *m, const pl_ctx_params *p, plan_opts *o) {
    plan_opts_from_params(&m->pm, &m->params, p, o);
    /* decided at load: the load charged the layers as mapped or not */
    o->stream = m->streaming ? PL_STREAM_ON : PL_STREAM_OFF;
    if (m->image_copy) o->no_mmap = true;
    else if (m->gguf) o->copied_bytes = m->gguf->copied_bytes;
}

/* The matmul shapes of the live matrices: LoRA may have replaced some with
 * f32 copies after the header was read. */
static void mm_refresh_shapes(pl_model *m) {
    plan_model *pm = &m->pm;
    pm->n_shapes = 0;
    const kern_matrix *add[8];
    const kern_matrix *out = &m->output;
    for (int il = -1; il < m->hp.n_layer; il++) {
        int n = 0;
        if (il < 0) {
            add[n++] = out;
        } else {
            for (int i = 0; i < PLAN_LAYER_MATS; i++) add[n++] = model_layer_mat(&m->layers[il], i);
        }
        for (int i = 0; i < n; i++) {
            int k = 0;
            while (k < pm->n_shapes && !(pm->shapes[k].type == add[i]->type && pm->shapes[k].n_in == add[i]->n_in)) k++;
            if (k == pm->n_shapes && k < PLAN_MAX_SHAPES) {
                pm->shapes[k].type = add[i]->type;
                pm->shapes[k].n_in = add[i]->n_in;
                pm->n_shapes++;
            }
        }
    }
}

static const char *mm_advice_name(int a) {
    static const char *const names[] = {"normal", "willneed", "random", "sequential"};
    return a >= 0 && a < 4 ? names[a] : "?";
}

/* Copy the mapped image into accounted memory in slices, dropping each
 * source slice from our page tables once copied, so the peak is the copy
 * plus one slice rather than twice the file. */
static pl_status mm_copy_image(pl_model *m) {
    gguf_file *g = m->gguf;
    void *dst;
    pl_status st = mem_alloc(&m->acct, MEM_WEIGHTS, (size_t)g->size, false, "the model image (--no-mmap)", &dst);
    if (st) return st;
    const size_t slice = 64u << 20;
    const uint64_t pg = mem_page_size();
    for (uint64_t at = 0; at < g->size; at += slice) {
        const size_t n = g->size - at < slice ? (size_t)(g->size - at) : slice;
        memcpy((uint8_t *)dst + at, g->base + at, n);
        const uintptr_t a = ((uintptr_t)g->base + at) / pg * pg;
        (void)madvise((void *)a, (size_t)((uintptr_t)g->base + at + n - a), MADV_DONTNEED);
    }
    gguf_file *copy;
    if ((st = gguf_open_memory(dst, g->size, g->path, &copy))) {
        mem_free(&m->acct, MEM_WEIGHTS, dst, (size_t)g->size);
        return st;
    }
    m->image_copy = dst;
    m->image_copy_bytes = (size_t)g->size;
    gguf_close(g);
    m->gguf = copy;
    return PL_OK;
}

static pl_status mm_lock(pl_model *m) {
    const gguf_file *g = m->gguf;
    if (mlock(g->base, (size_t)g->size) == 0) {
        m->locked = true;
        return PL_OK;
    }
    const int e = errno;
    struct rlimit rl;
    char lim[64] = "unknown";
    if (getrlimit(RLIMIT_MEMLOCK, &rl) == 0) {
        if (rl.rlim_cur == RLIM_INFINITY) snprintf(lim, sizeof lim, "unlimited");
        else snprintf(lim, sizeof lim, "%.1f MiB", mm_mib(rl.rlim_cur));
    }
    return pl_fail(PL_ERR_BUDGET,
                   "mlock of %.1f MiB refused (%s): the locked-memory limit RLIMIT_MEMLOCK is %s; raise it "
                   "(ulimit -l, or memlock in limits.conf / the container's settings) or load without --mlock",
                   mm_mib(g->size), strerror(e), lim);
}

static pl_status mm_advise(pl_model *m, int advice) {
    static const int k_advice[] = {MADV_NORMAL, MADV_WILLNEED, MADV_RANDOM, MADV_SEQUENTIAL};
    if (advice < 0 || advice > 3) return pl_fail(PL_ERR_INVALID_ARG, "unknown madvise policy %d", advice);
    if (advice == PL_ADVICE_NORMAL || m->image_copy) return PL_OK;
    const gguf_file *g = m->gguf;
    const uint64_t pg = mem_page_size();
    const uintptr_t a = (uintptr_t)g->base / pg * pg;
    if (madvise((void *)a, (size_t)((uintptr_t)g->base + g->size - a), k_advice[advice]) != 0)
        return pl_fail(PL_ERR_IO, "madvise(%s) on the model mapping failed: %s", mm_advice_name(advice), strerror(errno));
    return PL_OK;
}

/* The message for a model that does not fit. */
static pl_status mm_refuse(const pl_model *m, const pl_plan *pl, const char *what) {
    char hint[200] = "", limit[200];
    if (!m->params.stream && !m->params.no_mmap && !m->params.mlock && pl->limit == PL_LIMIT_BUDGET)
        snprintf(hint, sizeof hint, "; streaming (--stream) keeps only a window of layers resident");
    return pl_fail(PL_ERR_BUDGET,
                   "%s needs %.1f MiB (weights %.1f resident, KV %.1f, scratch %.1f, tokenizer %.1f, runtime %.1f) "
                   "but %s: %.1f MiB over%s",
                   what, mm_mib(pl->total_bytes), mm_mib(pl->weights_resident), mm_mib(pl->kv_bytes),
                   mm_mib(pl->scratch_bytes), mm_mib(pl->tokenizer_bytes), mm_mib(pl->overhead_bytes),
                   pl_plan_limit_text(pl, limit, sizeof limit), mm_mib(pl->over_bytes), hint);
}

pl_status model_mem_precheck(pl_model *m, const pl_model_params *p, const char *what, uint64_t image_bytes) {
    m->params = *p;
    const char *slash = strrchr(what, '/');
    snprintf(m->name, sizeof m->name, "%s", slash ? slash + 1 : what);
    m->acct.name = m->name;
    /* measured before the image is mapped, so the room under RLIMIT_AS is
     * the room for the mapping too */
    pl_status st = plan_limits_resolve(p->budget_bytes, &m->lim);
    if (st) return st;
    const uint64_t need = image_bytes + plan_overhead_bytes(1);
    if (m->lim.as && need > m->lim.as)
        return pl_fail(PL_ERR_BUDGET,
                       "mapping the model needs %.1f MiB of address space but the address-space limit (RLIMIT_AS) "
                       "leaves %.1f MiB: %.1f MiB over",
                       mm_mib(need), mm_mib(m->lim.as), mm_mib(need - m->lim.as));
    return PL_OK;
}

pl_status model_mem_load(pl_model *m, const pl_model_params *p) {
    pl_status st;
    m->params = *p;
    if (p->vocab_only) return PL_OK; /* a tokenizer only: nothing worth planning */
    if ((st = plan_describe(m->gguf, &m->pm))) return st;
    if (p->no_mmap && p->mlock)
        return pl_fail(PL_ERR_INVALID_ARG, "--mlock locks a mapping; with --no-mmap the weights are already in memory");
    if (p->stream < 0 || p->stream > PL_STREAM_AUTO) return pl_fail(PL_ERR_INVALID_ARG, "unknown stream mode %d", p->stream);
    if (p->stream == PL_STREAM_ON && (p->no_mmap || p->mlock))
        return pl_fail(PL_ERR_INVALID_ARG, "--stream reads layers from the mapped file: not with --no-mmap or --mlock");

    /* the smallest context this model can have: if even that does not fit,
     * refuse now, before a page is read */
    plan_opts o;
    pl_ctx_params one = pl_ctx_default_params();
    one.n_ctx = 1;
    one.n_threads = 1;
    plan_opts_from_params(&m->pm, p, &one, &o);
    o.copied_bytes = m->gguf->copied_bytes;
    pl_plan pl;
    if ((st = plan_compute(&m->pm, &o, &m->lim, &pl))) return st;
    if (pl.fit != PL_FIT_YES) return mm_refuse(m, &pl, "the model, even with a one-token context,");
    m->streaming = pl.stream != 0;
    m->acct.limit = m->lim.rss;

    /* what the engine holds for the model whatever the context */
    const uint64_t ext = (uint64_t)(pl.weights_mapped + pl.overhead_bytes);
    if ((st = mem_charge(&m->acct, MEM_EXTERNAL, ext, "the mapped weights and the runtime"))) return st;
    m->charged_ext = ext;
    if ((st = mem_charge(&m->acct, MEM_OTHER, m->pm.tok_bytes, "the tokenizer and metadata tables"))) return st;
    m->charged_tok = m->pm.tok_bytes;
    /* pages the loader copied rather than mapped (unaligned sources, a split's header) */
    if (!p->no_mmap && m->gguf->copied_bytes) {
        if ((st = mem_charge(&m->acct, MEM_WEIGHTS, m->gguf->copied_bytes, "the copied part of the model image")))
            return st;
        m->charged_copy = m->gguf->copied_bytes;
    }
    if (p->no_mmap && (st = mm_copy_image(m))) return st;
    if (p->mlock && (st = mm_lock(m))) return st;
    if ((st = mm_advise(m, p->advice))) return st;
    if (!m->image_copy) {
        m->region = m->gguf->base;
        mem_region_add(m->gguf->base, m->gguf->size, m->locked);
    }
    return PL_OK;
}

void model_mem_release(pl_model *m) {
    if (!m) return;
    if (m->region) mem_region_remove(m->region);
    m->region = NULL;
    if (m->locked && m->gguf) munlock(m->gguf->base, (size_t)m->gguf->size);
    m->locked = false;
    if (m->charged_ext) mem_uncharge(&m->acct, MEM_EXTERNAL, m->charged_ext);
    m->charged_ext = 0;
    if (m->charged_tok) mem_uncharge(&m->acct, MEM_OTHER, m->charged_tok);
    m->charged_tok = 0;
    if (m->charged_copy) mem_uncharge(&m->acct, MEM_WEIGHTS, m->charged_copy);
    m->charged_copy = 0;
    /* the image copy outlives the gguf that borrows it: freed after gguf_close */
    plan_model_clear(&m->pm);
}

/* ------------------------------------------------------------ contexts */

pl_status model_mem_ctx(pl_ctx *c, const pl_ctx_params *p) {
    pl_model *m = c->model;
    mm_refresh_shapes(m);
    plan_opts o;
    model_mem_opts(m, p, &o);
    pl_plan pl;
    pl_status st = plan_compute(&m->pm, &o, &m->lim, &pl);
    if (st) return st;
    if (pl.fit != PL_FIT_YES) {
        char what[96];
        snprintf(what, sizeof what, "a context of %d tokens", o.n_ctx);
        st = mm_refuse(m, &pl, what);
        if (pl.max_ctx > 0) pl_fail_prefix(st, "the largest context that fits is %d tokens", pl.max_ctx);
        return st;
    }
    plan_ctx_layout L;
    if ((st = plan_ctx_layout_make(&m->pm, &o, &L))) return st; /* refuses a q8_0 cache for D % 32 != 0 */
    if (o.kv_type == PL_KV_Q8_0) {
        /* the GPU's cache and attention kernels hold f16 rows */
        if (p->device != PL_DEVICE_CPU)
            return pl_fail(PL_ERR_UNSUPPORTED, "a q8_0 KV cache runs on the CPU only: the GPU keeps f16 rows "
                                               "(use --kv-type f16 with a GPU)");
        if (m->hp.head_dim > KERN_ATTN_MAX_D)
            return pl_fail(PL_ERR_UNSUPPORTED, "a q8_0 KV cache serves heads of up to %d values (this model's have %d)",
                           KERN_ATTN_MAX_D, m->hp.head_dim);
    }
    /* what this context adds beyond its blocks: embedding rows it will touch,
     * its threads (the model's load charged the one-token figures) */
    const uint64_t fixed = m->charged_ext + m->charged_tok + m->charged_copy + (m->image_copy ? m->image_copy_bytes : 0) +
                           m->pm.lora_bytes; /* charged by pl_model_apply_lora */
    const uint64_t blocks = (uint64_t)(pl.kv_bytes + pl.scratch_bytes + pl.stream_window_bytes);
    const uint64_t extra = (uint64_t)pl.total_bytes > fixed + blocks ? (uint64_t)pl.total_bytes - fixed - blocks : 0;
    if ((st = mem_charge(&m->acct, MEM_EXTERNAL, extra, "the context's embedding rows and threads"))) return st;
    c->charged_ext = extra;
    c->kv_block_bytes = (size_t)L.kv_bytes;
    c->scratch_block_bytes = (size_t)L.scratch_bytes;
    if ((st = mem_alloc(&m->acct, MEM_KV, c->kv_block_bytes, o.prefault, "the KV cache", &c->kv_block))) return st;
    if ((st = mem_alloc(&m->acct, MEM_SCRATCH, c->scratch_block_bytes, o.prefault, "the context's scratch",
                        &c->scratch_block)))
        return st;
    c->kv_type = o.kv_type;
    c->kv_qt = o.kv_type == PL_KV_Q8_0 ? QT_Q8_0 : QT_F16;
    c->kv_row_bytes = (size_t)L.kv_row_bytes;
    c->k_cache = c->kv_block;
    c->v_cache = (uint8_t *)c->kv_block + L.kv_bytes / 2;
    uint8_t *s = c->scratch_block;
    c->x = (float *)(s + L.off[PB_X]);
    c->xn = (float *)(s + L.off[PB_XN]);
    c->q = (float *)(s + L.off[PB_Q]);
    c->k = (float *)(s + L.off[PB_K]);
    c->v = (float *)(s + L.off[PB_V]);
    c->att_out = (float *)(s + L.off[PB_ATT_OUT]);
    c->att_scores = (float *)(s + L.off[PB_ATT_SCORES]);
    c->gate = (float *)(s + L.off[PB_GATE]);
    c->up = (float *)(s + L.off[PB_UP]);
    c->logits = (float *)(s + L.off[PB_LOGITS]);
    c->logits_cap = L.logits_rows;
    c->rope_cos = (float *)(s + L.off[PB_ROPE_COS]);
    c->rope_sin = (float *)(s + L.off[PB_ROPE_SIN]);
    c->act_scratch = s + L.off[PB_ACT];
    if (m->streaming) {
        if (p->device != PL_DEVICE_CPU)
            return pl_fail(PL_ERR_UNSUPPORTED, "a streaming model runs on the CPU only (the GPU needs its layers resident)");
        if (!pl.stream) return pl_fail(PL_ERR_INTERNAL, "a streaming model planned a context without a window");
        if ((st = stream_new(m, pl.n_layer_resident, pl.n_stream_slots, &m->acct, &c->stream))) return st;
    }
    return PL_OK;
}

void model_mem_ctx_release(pl_ctx *c) {
    if (!c || !c->model) return;
    mem_account *a = &c->model->acct;
    stream_free(c->stream, a);
    c->stream = NULL;
    mem_free(a, MEM_KV, c->kv_block, c->kv_block_bytes);
    mem_free(a, MEM_SCRATCH, c->scratch_block, c->scratch_block_bytes);
    c->kv_block = c->scratch_block = NULL;
    if (c->charged_ext) mem_uncharge(a, MEM_EXTERNAL, c->charged_ext);
    c->charged_ext = 0;
}

/* ------------------------------------------------------------ public */

pl_status pl_plan_model(const pl_model *m, const pl_ctx_params *cp, pl_plan *out) {
    if (!m || !out) return pl_fail(PL_ERR_INVALID_ARG, "pl_plan_model: model and out are required");
    if (m->vocab_only) return pl_fail(PL_ERR_INVALID_ARG, "pl_plan_model: the model was loaded vocab-only");
    plan_opts o;
    model_mem_opts(m, cp, &o);
    return plan_compute(&m->pm, &o, &m->lim, out);
}
