/*
 * Checkpoints as GGUF files that pl_model_load reads back.
 *
 * A model: the base file's metadata (tokenizer included) copied as is, or,
 * for a model trained from scratch, the vocabulary file's tokenizer keys plus
 * llama hyper-parameters; tensors in the base file's order, trained ones
 * converted to the requested type (vectors stay F32, as the loader demands),
 * LoRA-adapted matrices merged (W + alpha/R * B A), anything else copied
 * byte for byte. Written streaming: one converted tensor in memory at a time.
 * Adapters: llama.cpp's LoRA GGUF layout (general.type = adapter,
 * adapter.lora.alpha, blk.N.<matrix>.weight.lora_a [n_in, R] / lora_b [R, n_out]).
 */
#include "train.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const train_param *ck_find_param(const train_model *m, const char *name) {
    for (int i = 0; i < m->n_params; i++)
        if (!strcmp(m->params[i].name, name)) return &m->params[i];
    return NULL;
}

/* The adapted matrix of that GGUF name, or NULL. */
static const train_mat *ck_find_lora(const train_model *m, const char *name) {
    if (m->lora_rank <= 0) return NULL;
    static const char *const k_names[] = {"attn_q.weight", "attn_k.weight", "attn_v.weight", "attn_output.weight",
                                          "ffn_gate.weight", "ffn_up.weight", "ffn_down.weight"};
    for (int il = 0; il < m->hp.n_layer; il++) {
        const train_layer *l = &m->layers[il];
        const train_mat *ms[7] = {&l->wq, &l->wk, &l->wv, &l->wo, &l->w_gate, &l->w_up, &l->w_down};
        char nm[96];
        for (int i = 0; i < 7; i++) {
            snprintf(nm, sizeof nm, "blk.%d.%s", il, k_names[i]);
            if (!strcmp(nm, name)) return ms[i];
        }
    }
    return NULL;
}

static bool ck_skip_model_kv(const char *key) {
    return !strcmp(key, "general.file_type") || !strcmp(key, "general.quantization_version");
}

/* llama.cpp's general.file_type for a whole-model type, or -1. */
static int ck_file_type(uint32_t t) {
    switch (t) {
    case QT_F32: return 0;
    case QT_F16: return 1;
    case QT_Q8_0: return 7;
    case QT_BF16: return 32;
    default: return -1;
    }
}

static pl_status ck_scratch_hparams(gguf_writer *w, const train_model *m) {
    const model_hparams *hp = &m->hp;
    pl_status st;
    if ((st = gguf_writer_set_str(w, "general.architecture", "llama")) ||
        (st = gguf_writer_set_str(w, "general.name", "pocketllm-trained")) ||
        (st = gguf_writer_set_u32(w, "llama.context_length", (uint32_t)hp->n_ctx_train)) ||
        (st = gguf_writer_set_u32(w, "llama.embedding_length", (uint32_t)hp->n_embd)) ||
        (st = gguf_writer_set_u32(w, "llama.block_count", (uint32_t)hp->n_layer)) ||
        (st = gguf_writer_set_u32(w, "llama.feed_forward_length", (uint32_t)hp->n_ff)) ||
        (st = gguf_writer_set_u32(w, "llama.attention.head_count", (uint32_t)hp->n_head)) ||
        (st = gguf_writer_set_u32(w, "llama.attention.head_count_kv", (uint32_t)hp->n_head_kv)) ||
        (st = gguf_writer_set_u32(w, "llama.rope.dimension_count", (uint32_t)hp->n_rot)) ||
        (st = gguf_writer_set_u32(w, "llama.vocab_size", (uint32_t)hp->n_vocab)) ||
        (st = gguf_writer_set_f32(w, "llama.rope.freq_base", hp->rope_base)) ||
        (st = gguf_writer_set_f32(w, "llama.attention.layer_norm_rms_epsilon", hp->rms_eps)))
        return st;
    return PL_OK;
}

static bool ck_skip_non_tokenizer(const char *key) { return strncmp(key, "tokenizer.", 10) != 0; }

/* One tensor to write: its type and a function of the index giving the data. */
typedef struct ck_item {
    char name[96];
    uint32_t type;
    int64_t ne0, ne1;
    const train_param *param;  /* convert param->w */
    const train_mat *lora;     /* merge base + adapters */
    const gguf_tensor *raw;    /* copy */
} ck_item;

/* Produce the item's bytes into buf (big enough). */
static pl_status ck_item_data(const train_model *m, const ck_item *it, uint8_t *buf, float *f32) {
    const quant_traits *tr = quant_get(it->type);
    const size_t rs = quant_row_size(it->type, it->ne0);
    if (it->raw) {
        memcpy(buf, it->raw->data, (size_t)it->raw->nbytes);
        return PL_OK;
    }
    const float *src;
    if (it->param) {
        src = it->param->w;
    } else {
        const train_mat *w = it->lora;
        const quant_traits *bt = quant_get(w->base.type);
        const size_t brs = quant_row_size(w->base.type, w->n_in);
        for (int r = 0; r < w->n_out; r++)
            bt->to_float((const uint8_t *)w->base.data + (size_t)r * brs, f32 + (size_t)r * w->n_in, w->n_in);
        /* W += (scale B) A, with scale B in a temporary */
        float *sb = malloc(sizeof(float) * (size_t)w->n_out * w->rank);
        if (!sb) return pl_fail(PL_ERR_NOMEM, "checkpoint: out of memory merging '%s'", it->name);
        for (int64_t i = 0; i < (int64_t)w->n_out * w->rank; i++) sb[i] = w->b[i] * w->scale;
        train_gemm(NULL, w->n_out, w->n_in, w->rank, sb, w->rank, 1, w->a, w->n_in, f32, w->n_in, true);
        free(sb);
        src = f32;
        (void)m;
    }
    for (int64_t r = 0; r < it->ne1; r++) tr->from_float(src + r * it->ne0, buf + (size_t)r * rs, it->ne0);
    return PL_OK;
}

static pl_status ck_write(gguf_writer *w, const train_model *m, ck_item *items, int n, const char *path) {
    pl_status st = PL_OK;
    FILE *fp = NULL;
    uint8_t *buf = NULL;
    float *f32 = NULL;
    size_t max_bytes = 1, max_f32 = 1;
    for (int i = 0; i < n; i++) {
        const int64_t ne[2] = {items[i].ne0, items[i].ne1};
        const size_t bytes = (size_t)quant_row_size(items[i].type, items[i].ne0) * (size_t)items[i].ne1;
        if (!bytes)
            return pl_fail(PL_ERR_INVALID_ARG, "checkpoint: tensor '%s' rows of %lld cannot be stored as %s",
                           items[i].name, (long long)items[i].ne0, quant_get(items[i].type)->name);
        max_bytes = bytes > max_bytes ? bytes : max_bytes;
        if (items[i].lora && (size_t)(ne[0] * ne[1]) > max_f32) max_f32 = (size_t)(ne[0] * ne[1]);
        if ((st = gguf_writer_add_tensor(w, items[i].name, items[i].type, ne[1] > 1 ? 2 : 1, ne, NULL))) return st;
    }
    buf = malloc(max_bytes);
    f32 = malloc(sizeof(float) * max_f32);
    if (!buf || !f32) {
        st = pl_fail(PL_ERR_NOMEM, "checkpoint: out of memory");
        goto out;
    }
    if (!(fp = fopen(path, "wb"))) {
        st = pl_fail(PL_ERR_IO, "checkpoint: cannot create %s: %s", path, strerror(errno));
        goto out;
    }
    if ((st = gguf_writer_set_path(w, path)) || (st = gguf_writer_write_header(w, fp))) goto out;
    for (int i = 0; i < n; i++)
        if ((st = ck_item_data(m, &items[i], buf, f32)) || (st = gguf_writer_write_tensor_data(w, fp, (uint64_t)i, buf)))
            goto out;
    if (fclose(fp) != 0) {
        fp = NULL;
        st = pl_fail(PL_ERR_IO, "checkpoint: cannot finish %s: %s", path, strerror(errno));
        goto out;
    }
    fp = NULL;
out:
    if (fp) fclose(fp);
    if (st) remove(path);
    free(buf);
    free(f32);
    return st;
}

pl_status train_save_model(const train_model *m, const char *path, uint32_t mat_type) {
    if (!quant_get(mat_type) || mat_type == QT_Q8_1 || mat_type == QT_Q8_K)
        return pl_fail(PL_ERR_INVALID_ARG, "checkpoint: type %u cannot hold weights", mat_type);
    gguf_writer *w = gguf_writer_new();
    ck_item *items = NULL;
    if (!w) return pl_fail(PL_ERR_NOMEM, "checkpoint: out of memory");
    const gguf_file *bf = m->base->gguf;
    const bool from_scratch = m->base->vocab_only || !m->base->layers;
    pl_status st;
    if (from_scratch) {
        st = gguf_writer_copy_kv(w, bf, ck_skip_non_tokenizer);
        if (!st) st = ck_scratch_hparams(w, m);
    } else {
        st = gguf_writer_copy_kv(w, bf, ck_skip_model_kv);
    }
    const int ft = ck_file_type(mat_type);
    if (!st && ft >= 0) st = gguf_writer_set_u32(w, "general.file_type", (uint32_t)ft);
    if (st) goto out;
    const int n = from_scratch ? m->n_params : (int)bf->n_tensors;
    items = calloc((size_t)(n ? n : 1), sizeof *items);
    if (!items) {
        st = pl_fail(PL_ERR_NOMEM, "checkpoint: out of memory");
        goto out;
    }
    for (int i = 0; i < n; i++) {
        ck_item *it = &items[i];
        if (from_scratch) {
            it->param = &m->params[i];
            snprintf(it->name, sizeof it->name, "%s", it->param->name);
        } else {
            const gguf_tensor *t = &bf->tensors[i];
            if (t->name.len >= sizeof it->name) {
                st = pl_fail(PL_ERR_UNSUPPORTED, "checkpoint: tensor name of %llu bytes is too long",
                             (unsigned long long)t->name.len);
                goto out;
            }
            memcpy(it->name, t->name.ptr, t->name.len);
            it->name[t->name.len] = 0;
            it->param = ck_find_param(m, it->name);
            it->lora = it->param ? NULL : ck_find_lora(m, it->name);
            if (!it->param && !it->lora) {
                it->raw = t;
                it->type = t->type;
                it->ne0 = t->ne[0];
                it->ne1 = t->ne[1] * t->ne[2] * t->ne[3];
                continue;
            }
        }
        if (it->param) it->ne0 = it->param->ne0, it->ne1 = it->param->ne1;
        else it->ne0 = it->lora->n_in, it->ne1 = it->lora->n_out;
        it->type = it->ne1 == 1 ? QT_F32 : mat_type;
        if (quant_row_size(it->type, it->ne0) == 0) it->type = QT_F32; /* rows that do not fit its blocks */
    }
    st = ck_write(w, m, items, n, path);
out:
    if (st) pl_fail_prefix(st, "saving %s", path);
    free(items);
    gguf_writer_free(w);
    return st;
}

static pl_status ck_params_file(const train_model *m, const char *path, bool grads) {
    gguf_writer *w = gguf_writer_new();
    if (!w) return pl_fail(PL_ERR_NOMEM, "checkpoint: out of memory");
    pl_status st = gguf_writer_set_str(w, "general.architecture", m->base->arch_name[0] ? m->base->arch_name : "llama");
    if (!st && !grads) {
        if ((st = gguf_writer_set_str(w, "general.type", "adapter")) ||
            (st = gguf_writer_set_str(w, "adapter.type", "lora")) ||
            (st = gguf_writer_set_f32(w, "adapter.lora.alpha", m->lora_alpha)))
            goto out;
    }
    for (int i = 0; !st && i < m->n_params; i++) {
        const train_param *p = &m->params[i];
        const int64_t ne[2] = {p->ne0, p->ne1};
        st = gguf_writer_add_tensor(w, p->name, QT_F32, p->ne1 > 1 ? 2 : 1, ne, grads ? p->g : p->w);
    }
    if (!st) st = gguf_writer_write_file(w, path);
out:
    if (st) pl_fail_prefix(st, "saving %s", path);
    gguf_writer_free(w);
    return st;
}

pl_status train_save_lora(const train_model *m, const char *path) {
    if (m->mode != TRAIN_LORA) return pl_fail(PL_ERR_INVALID_ARG, "saving %s: the model has no LoRA adapters", path);
    return ck_params_file(m, path, false);
}

pl_status train_save_grads(const train_model *m, const char *path) { return ck_params_file(m, path, true); }
