/*
 * LoRA adapters applied at load (pl_model_apply_lora): a GGUF in llama.cpp's
 * adapter layout (general.type = adapter, adapter.lora.alpha, tensors
 * blk.N.<matrix>.weight.lora_a [n_in, R] and .lora_b [R, n_out], as
 * `pocketllm train --lora` writes) is merged into the layer matrices it
 * names: W' = W + scale * alpha/R * B A. A merged matrix is an f32 copy owned
 * by the model (4 bytes per weight; the rest stays mapped), so the forward
 * pass needs no side path. The copies are accounted weights memory: planned
 * (plan_model.lora_bytes, so later contexts and pl_plan_model include them)
 * and refused with PL_ERR_BUDGET before any is made when the model's budget
 * cannot hold them. Shapes, names, the architecture and the budget are
 * checked before anything changes; on error the model is left as it was.
 */
#include "model.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>


typedef struct lora_pair {
    kern_matrix *w;
    const gguf_tensor *a, *b;
    int rank;
} lora_pair;

/* Find the matrix "blk.N.<name>" names, or NULL. */
static kern_matrix *lora_find_mat(pl_model *m, const char *name, size_t len) {
    char buf[128];
    for (int il = 0; il < m->hp.n_layer; il++)
        for (int i = 0; i < PLAN_LAYER_MATS; i++) {
            int n = snprintf(buf, sizeof buf, "blk.%d.%s", il, plan_layer_mat_names[i]);
            if ((size_t)n == len && !memcmp(buf, name, len)) return model_layer_mat(&m->layers[il], i);
        }
    return NULL;
}

static pl_status lora_collect(pl_model *m, const gguf_file *f, lora_pair **out, int *n_out) {
    lora_pair *pairs = calloc(f->n_tensors ? f->n_tensors : 1, sizeof *pairs);
    if (!pairs) return pl_fail(PL_ERR_NOMEM, "out of memory");
    int n = 0;
    pl_status st = PL_OK;
    for (uint64_t i = 0; i < f->n_tensors; i++) {
        const gguf_tensor *t = &f->tensors[i];
        const char *nm = t->name.ptr;
        const size_t len = t->name.len;
        if (len > 7 && !memcmp(nm + len - 7, ".lora_b", 7)) continue; /* found through its lora_a */
        if (len <= 7 || memcmp(nm + len - 7, ".lora_a", 7)) {
            st = pl_fail(PL_ERR_FORMAT, "tensor '%.*s' is not a LoRA factor (.lora_a / .lora_b)", (int)len, nm);
            goto fail;
        }
        kern_matrix *w = lora_find_mat(m, nm, len - 7);
        if (!w) {
            st = pl_fail(PL_ERR_UNSUPPORTED, "adapter tensor '%.*s' names no layer matrix of this model", (int)len, nm);
            goto fail;
        }
        char bname[160];
        snprintf(bname, sizeof bname, "%.*s.lora_b", (int)(len - 7), nm);
        const gguf_tensor *b = gguf_find_tensor(f, bname);
        if (!b) {
            st = pl_fail(PL_ERR_FORMAT, "'%s' is missing (its lora_a is there)", bname);
            goto fail;
        }
        const int64_t R = t->ne[1];
        if (t->ne[0] != w->n_in || b->ne[0] != R || b->ne[1] != w->n_out || t->ne[2] * t->ne[3] != 1 ||
            b->ne[2] * b->ne[3] != 1 || R < 1 || R > 65536) {
            st = pl_fail(PL_ERR_FORMAT, "'%.*s' [%lld, %lld] and lora_b [%lld, %lld] do not fit a %lld x %lld matrix",
                         (int)len, nm, (long long)t->ne[0], (long long)t->ne[1], (long long)b->ne[0],
                         (long long)b->ne[1], (long long)w->n_out, (long long)w->n_in);
            goto fail;
        }
        if (!quant_get(t->type) || !quant_get(b->type) || t->ne[0] % quant_get(t->type)->blck ||
            b->ne[0] % quant_get(b->type)->blck) {
            st = pl_fail(PL_ERR_UNSUPPORTED, "'%.*s': unsupported factor types", (int)len, nm);
            goto fail;
        }
        for (int k = 0; k < n; k++)
            if (pairs[k].w == w) {
                st = pl_fail(PL_ERR_FORMAT, "'%.*s' adapts a matrix twice", (int)len, nm);
                goto fail;
            }
        pairs[n++] = (lora_pair){w, t, b, (int)R};
    }
    *out = pairs;
    *n_out = n;
    return PL_OK;
fail:
    free(pairs);
    return st;
}

static float *lora_rows_f32(const gguf_tensor *t) {
    const int64_t n0 = t->ne[0], n1 = t->ne[1];
    float *x = malloc(sizeof(float) * (size_t)(n0 * n1));
    if (!x) return NULL;
    const quant_traits *tr = quant_get(t->type);
    const size_t rs = quant_row_size(t->type, n0);
    for (int64_t r = 0; r < n1; r++) tr->to_float((const uint8_t *)t->data + (size_t)r * rs, x + r * n0, n0);
    return x;
}

static double lora_mib(uint64_t n) { return (double)n / 1048576.0; }

/* Will the model hold its merged copies? The one-token plan (what the load
 * checked) with need more bytes of copies, against the model's limits. */
static pl_status lora_check_budget(const pl_model *m, uint64_t need, int n) {
    pl_ctx_params one = pl_ctx_default_params();
    one.n_ctx = 1;
    one.n_threads = 1;
    plan_opts o;
    model_mem_opts(m, &one, &o);
    plan_model pm = m->pm; /* shallow: only lora_bytes differs */
    pm.lora_bytes += need;
    pl_plan pl;
    pl_status st = plan_compute(&pm, &o, &m->lim, &pl);
    if (st || pl.fit == PL_FIT_YES) return st;
    char limit[200];
    return pl_fail(PL_ERR_BUDGET,
                   "merging it makes f32 copies of %d matrices (%.1f MiB): the model with them needs %.1f MiB even "
                   "with a one-token context, but %s: %.1f MiB over",
                   n, lora_mib(need), lora_mib((uint64_t)pl.total_bytes), pl_plan_limit_text(&pl, limit, sizeof limit),
                   lora_mib((uint64_t)pl.over_bytes));
}

pl_status pl_model_apply_lora(pl_model *m, const char *path, float scale) {
    if (!m || !path) return pl_fail(PL_ERR_INVALID_ARG, "pl_model_apply_lora: model and path are required");
    if (m->vocab_only || !m->layers) return pl_fail(PL_ERR_INVALID_ARG, "pl_model_apply_lora: the model has no weights");
    gguf_file *f = NULL;
    lora_pair *pairs = NULL;
    model_owned *merged = NULL;
    int n = 0;
    pl_status st = gguf_open(path, &f);
    if (st) goto fail;
    gguf_str s;
    if (gguf_find_key(f, "general.type") >= 0 && (gguf_get_str(f, "general.type", &s) || !gguf_str_eq(s, "adapter"))) {
        st = pl_fail(PL_ERR_FORMAT, "general.type is not 'adapter'");
        goto fail;
    }
    if (gguf_find_key(f, "adapter.type") >= 0 && (gguf_get_str(f, "adapter.type", &s) || !gguf_str_eq(s, "lora"))) {
        st = pl_fail(PL_ERR_UNSUPPORTED, "adapter.type is not 'lora'");
        goto fail;
    }
    if (gguf_find_key(f, "general.architecture") >= 0 &&
        (gguf_get_str(f, "general.architecture", &s) || !gguf_str_eq(s, m->arch_name))) {
        st = pl_fail(PL_ERR_FORMAT, "the adapter is for another architecture than '%s'", m->arch_name);
        goto fail;
    }
    if ((st = lora_collect(m, f, &pairs, &n))) goto fail;
    /* the copies are planned and refused before any is made */
    uint64_t need = 0;
    for (int i = 0; i < n; i++) need += mem_held(sizeof(float) * (size_t)(pairs[i].w->n_in * pairs[i].w->n_out));
    if ((st = lora_check_budget(m, need, n))) goto fail;
    const float alpha = gguf_get_f32_or(f, "adapter.lora.alpha", 0.0f);
    merged = calloc((size_t)n + 1, sizeof *merged);
    model_owned *owned = realloc(m->owned, sizeof *owned * (size_t)(m->n_owned + n + 1));
    if (!merged || !owned) {
        st = pl_fail(PL_ERR_NOMEM, "out of memory");
        goto fail;
    }
    m->owned = owned;
    /* every merge computed first; the model changes only when all succeeded */
    for (int i = 0; i < n; i++) {
        const lora_pair *p = &pairs[i];
        const int64_t K = p->w->n_in, O = p->w->n_out, R = p->rank;
        const size_t bytes = sizeof(float) * (size_t)(K * O);
        void *wp = NULL;
        if ((st = mem_alloc(&m->acct, MEM_WEIGHTS, bytes, false, "a LoRA-merged matrix", &wp))) goto fail;
        merged[i] = (model_owned){wp, bytes};
        float *W = wp;
        float *A = lora_rows_f32(p->a), *B = lora_rows_f32(p->b);
        if (!A || !B) {
            free(A), free(B);
            st = pl_fail(PL_ERR_NOMEM, "out of memory merging a %lld x %lld matrix", (long long)O, (long long)K);
            goto fail;
        }
        const quant_traits *tr = quant_get(p->w->type);
        const size_t rs = quant_row_size(p->w->type, K);
        /* a packed matrix's rows come from its copy: the file pages it
         * replaced were dropped, and faulting them back in while the copy is
         * still held would peak above the plan by the matrix's size */
        uint8_t *row = p->w->packed ? malloc(rs) : NULL;
        if (p->w->packed && !row) {
            free(A), free(B);
            st = pl_fail(PL_ERR_NOMEM, "out of memory merging a %lld x %lld matrix", (long long)O, (long long)K);
            goto fail;
        }
        const float s_ab = scale * (alpha > 0 ? alpha / (float)R : 1.0f);
        for (int64_t r = 0; r < O; r++) {
            float *wr = W + r * K;
            const uint8_t *src = (const uint8_t *)p->w->data + (size_t)r * rs;
            if (row) kern_unpack_row(p->w, p->w->packed, r, row), src = row;
            tr->to_float(src, wr, K);
            for (int64_t k = 0; k < R; k++) {
                const float c = s_ab * B[r * R + k];
                const float *ak = A + k * K;
                for (int64_t j = 0; j < K; j++) wr[j] += c * ak[j];
            }
        }
        free(A), free(B), free(row);
    }
    for (int i = 0; i < n; i++) {
        model_unpack(m, pairs[i].w); /* its packed copy holds the old weights */
        pairs[i].w->data = merged[i].p;
        pairs[i].w->type = QT_F32;
        m->owned[m->n_owned++] = merged[i];
    }
    m->pm.lora_bytes += need; /* contexts plan with the copies, and do not charge them again */
    free(merged);
    free(pairs);
    gguf_close(f);
    return PL_OK;
fail:
    if (merged)
        for (int i = 0; i < n; i++) mem_free(&m->acct, MEM_WEIGHTS, merged[i].p, merged[i].bytes);
    free(merged);
    free(pairs);
    gguf_close(f);
    return pl_fail_prefix(st, "applying LoRA %s", path);
}
