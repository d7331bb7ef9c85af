/*
 * Reading a model's hyper-parameters and weight tensors out of a parsed GGUF.
 * Every tensor is looked up by its GGUF name, its shape checked against the
 * hyper-parameters and its type against the quant traits, so the forward pass
 * can trust every pointer and size. Norm weights and biases must be F32.
 */
#include "model.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static pl_status get_hp_f32(const gguf_file *f, const char *arch, const char *suffix, float def, float *out) {
    char key[128];
    snprintf(key, sizeof key, "%s.%s", arch, suffix);
    if (gguf_find_key(f, key) < 0) {
        *out = def;
        return PL_OK;
    }
    return gguf_get_f32(f, key, out);
}

static pl_status read_hparams(pl_model *m) {
    const gguf_file *f = m->gguf;
    const char *a = m->arch_name;
    model_hparams *hp = &m->hp;
    pl_status st;
    if ((st = gguf_get_arch_int(f, a, "embedding_length", true, 0, &hp->n_embd)) ||
        (st = gguf_get_arch_int(f, a, "block_count", true, 0, &hp->n_layer)) ||
        (st = gguf_get_arch_int(f, a, "attention.head_count", true, 0, &hp->n_head)) ||
        (st = gguf_get_arch_int(f, a, "feed_forward_length", true, 0, &hp->n_ff)) ||
        (st = gguf_get_arch_int(f, a, "context_length", false, 2048, &hp->n_ctx_train)))
        return st;
    if ((st = gguf_get_arch_int(f, a, "attention.head_count_kv", false, (uint32_t)hp->n_head, &hp->n_head_kv))) return st;
    if (hp->n_embd <= 0 || hp->n_layer <= 0 || hp->n_head <= 0 || hp->n_head_kv <= 0 || hp->n_ff <= 0)
        return pl_fail(PL_ERR_FORMAT, "%s: zero in hyper-parameters (embd %d, layers %d, heads %d/%d, ffn %d)",
                       f->path, hp->n_embd, hp->n_layer, hp->n_head, hp->n_head_kv, hp->n_ff);
    if (hp->n_head % hp->n_head_kv)
        return pl_fail(PL_ERR_FORMAT, "%s: head_count %d is not a multiple of head_count_kv %d", f->path,
                       hp->n_head, hp->n_head_kv);
    if ((st = gguf_get_arch_int(f, a, "attention.key_length", false, (uint32_t)(hp->n_embd / hp->n_head), &hp->head_dim)))
        return st;
    int vlen;
    if ((st = gguf_get_arch_int(f, a, "attention.value_length", false, (uint32_t)hp->head_dim, &vlen))) return st;
    if (vlen != hp->head_dim)
        return pl_fail(PL_ERR_UNSUPPORTED, "%s: value_length %d differs from key_length %d", f->path, vlen,
                       hp->head_dim);
    if (hp->head_dim <= 0 || hp->head_dim % 2)
        return pl_fail(PL_ERR_FORMAT, "%s: head dimension %d must be even and positive", f->path, hp->head_dim);
    if ((st = gguf_get_arch_int(f, a, "rope.dimension_count", false, (uint32_t)hp->head_dim, &hp->n_rot))) return st;
    if (hp->n_rot <= 0 || hp->n_rot > hp->head_dim || hp->n_rot % 2)
        return pl_fail(PL_ERR_FORMAT, "%s: rope.dimension_count %d does not fit head dimension %d", f->path,
                       hp->n_rot, hp->head_dim);
    if ((st = get_hp_f32(f, a, "rope.freq_base", m->arch->rope_base_default, &hp->rope_base))) return st;
    if ((st = get_hp_f32(f, a, "attention.layer_norm_rms_epsilon", 1e-5f, &hp->rms_eps))) return st;
    if (!(hp->rope_base > 0) || !(hp->rms_eps > 0) || hp->rms_eps > 1)
        return pl_fail(PL_ERR_FORMAT, "%s: rope.freq_base %g / rms epsilon %g out of range", f->path,
                       (double)hp->rope_base, (double)hp->rms_eps);
    if (hp->n_ctx_train <= 0) hp->n_ctx_train = 2048;
    return PL_OK;
}

/* Find tensor `name` and check it is (ne0, ne1) (ne1 = 1 for vectors). */
static pl_status find_tensor(const pl_model *m, const char *name, int64_t ne0, int64_t ne1, bool required,
                             const gguf_tensor **out) {
    const gguf_tensor *t = gguf_find_tensor(m->gguf, name);
    *out = t;
    if (!t) {
        if (required) return pl_fail(PL_ERR_FORMAT, "%s: tensor '%s' is missing", m->gguf->path, name);
        return PL_OK;
    }
    int64_t n2 = t->ne[2] * t->ne[3];
    if (t->ne[0] != ne0 || t->ne[1] != ne1 || n2 != 1)
        return pl_fail(PL_ERR_FORMAT, "%s: tensor '%s' has shape [%lld, %lld, %lld, %lld], expected [%lld, %lld]",
                       m->gguf->path, name, (long long)t->ne[0], (long long)t->ne[1], (long long)t->ne[2],
                       (long long)t->ne[3], (long long)ne0, (long long)ne1);
    if (!quant_get(t->type))
        return pl_fail(PL_ERR_UNSUPPORTED, "%s: tensor '%s' has unsupported type %u", m->gguf->path, name, t->type);
    return PL_OK;
}

static pl_status get_vec(const pl_model *m, const char *name, int64_t n, bool required, const float **out) {
    const gguf_tensor *t;
    *out = NULL;
    pl_status st = find_tensor(m, name, n, 1, required, &t);
    if (st || !t) return st;
    if (t->type != QT_F32)
        return pl_fail(PL_ERR_UNSUPPORTED, "%s: tensor '%s' must be f32, is %s", m->gguf->path, name,
                       quant_get(t->type)->name);
    *out = t->data;
    return PL_OK;
}

static pl_status get_mat(const pl_model *m, const char *name, int64_t n_in, int64_t n_out, bool required,
                         kern_matrix *out) {
    const gguf_tensor *t;
    memset(out, 0, sizeof *out);
    pl_status st = find_tensor(m, name, n_in, n_out, required, &t);
    if (st || !t) return st;
    const quant_traits *tr = quant_get(t->type);
    if (n_in % tr->blck)
        return pl_fail(PL_ERR_FORMAT, "%s: tensor '%s' rows of %lld are not a multiple of %s blocks (%d)",
                       m->gguf->path, name, (long long)n_in, tr->name, tr->blck);
    out->data = t->data;
    out->type = t->type;
    out->n_in = n_in;
    out->n_out = n_out;
    return PL_OK;
}

static pl_status load_layer(pl_model *m, int il, model_layer *l) {
    const model_hparams *hp = &m->hp;
    const int64_t C = hp->n_embd, HD = (int64_t)hp->n_head * hp->head_dim,
                  GD = (int64_t)hp->n_head_kv * hp->head_dim, F = hp->n_ff, D = hp->head_dim;
    char nm[96];
    pl_status st;
#define NAME(s) (snprintf(nm, sizeof nm, "blk.%d.%s", il, s), nm)
    if ((st = get_vec(m, NAME("attn_norm.weight"), C, true, &l->attn_norm)) ||
        (st = get_mat(m, NAME("attn_q.weight"), C, HD, true, &l->wq)) ||
        (st = get_mat(m, NAME("attn_k.weight"), C, GD, true, &l->wk)) ||
        (st = get_mat(m, NAME("attn_v.weight"), C, GD, true, &l->wv)) ||
        (st = get_mat(m, NAME("attn_output.weight"), HD, C, true, &l->wo)) ||
        (st = get_vec(m, NAME("ffn_norm.weight"), C, true, &l->ffn_norm)) ||
        (st = get_mat(m, NAME("ffn_gate.weight"), C, F, true, &l->w_gate)) ||
        (st = get_mat(m, NAME("ffn_up.weight"), C, F, true, &l->w_up)) ||
        (st = get_mat(m, NAME("ffn_down.weight"), F, C, true, &l->w_down)))
        return st;
    bool bias = m->arch->qkv_bias;
    if ((st = get_vec(m, NAME("attn_q.bias"), HD, bias, &l->bq)) ||
        (st = get_vec(m, NAME("attn_k.bias"), GD, bias, &l->bk)) ||
        (st = get_vec(m, NAME("attn_v.bias"), GD, bias, &l->bv)))
        return st;
    bool qkn = m->arch->qk_norm;
    if ((st = get_vec(m, NAME("attn_q_norm.weight"), D, qkn, &l->q_norm)) ||
        (st = get_vec(m, NAME("attn_k_norm.weight"), D, qkn, &l->k_norm)))
        return st;
#undef NAME
    return PL_OK;
}

pl_status model_load_from_gguf(pl_model *m) {
    pl_status st = read_hparams(m);
    if (st) return st;
    model_hparams *hp = &m->hp;
    hp->n_vocab = tok_n_vocab(m->tok);
    const gguf_tensor *emb = gguf_find_tensor(m->gguf, "token_embd.weight");
    if (!emb) return pl_fail(PL_ERR_FORMAT, "%s: tensor 'token_embd.weight' is missing", m->gguf->path);
    if (emb->ne[1] != hp->n_vocab)
        return pl_fail(PL_ERR_FORMAT, "%s: token_embd.weight has %lld rows but the vocabulary has %d tokens",
                       m->gguf->path, (long long)emb->ne[1], hp->n_vocab);
    if ((st = get_mat(m, "token_embd.weight", hp->n_embd, hp->n_vocab, true, &m->tok_embd))) return st;
    if ((st = get_vec(m, "output_norm.weight", hp->n_embd, true, &m->out_norm))) return st;
    if ((st = get_mat(m, "output.weight", hp->n_embd, hp->n_vocab, false, &m->output))) return st;
    if (!m->output.data) m->output = m->tok_embd; /* tied embeddings */
    m->layers = calloc((size_t)hp->n_layer, sizeof *m->layers);
    if (!m->layers) return pl_fail(PL_ERR_NOMEM, "out of memory for %d layers", hp->n_layer);
    for (int il = 0; il < hp->n_layer; il++)
        if ((st = load_layer(m, il, &m->layers[il]))) return st;
    return PL_OK;
}
