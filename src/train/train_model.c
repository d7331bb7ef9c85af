/*
 * Building the trainable model: the list of parameters (GGUF names, shapes,
 * whether weight decay applies) and one storage block holding every param's
 * values, gradients and AdamW moments (w | g | m | v, each a contiguous run
 * over all params, so zeroing and norms are single loops). Three ways in:
 * full fine-tuning (every base tensor dequantized to f32), LoRA (the base
 * stays frozen where pl_model_load mapped it; only adapters are params), and
 * from scratch (llama shapes from the caller, random init).
 */
#include "train.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A param being declared: where its values come from. */
typedef struct tm_spec {
    char name[96];
    int64_t ne0, ne1;
    bool decay;
    const kern_matrix *src_mat; /* dequantize from here (full fine-tuning) */
    const float *src_vec;       /* or copy from here */
    float init_std;             /* or N(0, std) when > 0; or 1.0 (norms) when init_one */
    bool init_one;
    /* where the param's pointers go */
    train_mat *mat;             /* w/g of a matrix */
    train_vec *vec;             /* w/g of a vector */
    const float **lora_w;       /* a/b of an adapter */
    float **lora_g;
} tm_spec;

typedef struct tm_list {
    tm_spec *v;
    int n, cap;
} tm_list;

static tm_spec *tm_add(tm_list *l, const char *name, int64_t ne0, int64_t ne1, bool decay) {
    if (l->n == l->cap) {
        int cap = l->cap ? l->cap * 2 : 64;
        tm_spec *nv = realloc(l->v, sizeof *nv * (size_t)cap);
        if (!nv) return NULL;
        l->v = nv;
        l->cap = cap;
    }
    tm_spec *s = &l->v[l->n++];
    memset(s, 0, sizeof *s);
    snprintf(s->name, sizeof s->name, "%s", name);
    s->ne0 = ne0;
    s->ne1 = ne1;
    s->decay = decay;
    return s;
}

static void tm_set_mat_shape(train_mat *w, int n_in, int n_out) {
    w->n_in = n_in;
    w->n_out = n_out;
}

static void tm_vec_from_base(train_vec *v, const float *base) {
    v->w = base;
    v->g = NULL;
}

static pl_status tm_alloc_tables(train_model *m, int n_ctx) {
    const model_hparams *hp = &m->hp;
    const int half = hp->n_rot / 2;
    m->n_ctx = n_ctx;
    m->layers = calloc((size_t)hp->n_layer, sizeof *m->layers);
    m->rope_cos = malloc(sizeof(float) * (size_t)n_ctx * half);
    m->rope_sin = malloc(sizeof(float) * (size_t)n_ctx * half);
    if (!m->layers || !m->rope_cos || !m->rope_sin) return pl_fail(PL_ERR_NOMEM, "train: out of memory for tables");
    /* exactly pl_ctx_new's table, so training and inference rotate alike */
    for (int pos = 0; pos < n_ctx; pos++)
        for (int i = 0; i < half; i++) {
            double theta = pos * pow((double)hp->rope_base, -2.0 * i / hp->n_rot);
            m->rope_cos[(size_t)pos * half + i] = (float)cos(theta);
            m->rope_sin[(size_t)pos * half + i] = (float)sin(theta);
        }
    return PL_OK;
}

/* Allocate storage for every spec, fill values, wire pointers. */
static pl_status tm_materialize(train_model *m, tm_list *l, uint64_t seed) {
    int64_t total = 0;
    for (int i = 0; i < l->n; i++) total += l->v[i].ne0 * l->v[i].ne1;
    uint64_t bytes;
    if (!pl_mul_ok((uint64_t)total, 4 * sizeof(float), &bytes) || bytes > SIZE_MAX)
        return pl_fail(PL_ERR_NOMEM, "train: %lld parameters are too many", (long long)total);
    m->params = calloc((size_t)l->n, sizeof *m->params);
    m->storage = calloc(1, (size_t)bytes ? (size_t)bytes : 1);
    if (!m->params || !m->storage)
        return pl_fail(PL_ERR_NOMEM, "train: cannot allocate %.1f MB for parameters, gradients and AdamW moments",
                       bytes / 1e6);
    m->storage_bytes = (size_t)bytes;
    m->n_params = l->n;
    m->n_trainable = total;
    float *W = m->storage, *G = W + total, *M1 = G + total, *M2 = M1 + total;
    int64_t off = 0;
    uint64_t rng = seed ? seed : 0x9e3779b97f4a7c15ull;
    for (int i = 0; i < l->n; i++) {
        const tm_spec *s = &l->v[i];
        train_param *p = &m->params[i];
        const int64_t n = s->ne0 * s->ne1;
        snprintf(p->name, sizeof p->name, "%s", s->name);
        p->ne0 = s->ne0;
        p->ne1 = s->ne1;
        p->decay = s->decay;
        p->w = W + off, p->g = G + off, p->m = M1 + off, p->v = M2 + off;
        off += n;
        if (s->src_mat) {
            const quant_traits *tr = quant_get(s->src_mat->type);
            const size_t rs = quant_row_size(s->src_mat->type, s->ne0);
            for (int64_t r = 0; r < s->ne1; r++)
                tr->to_float((const uint8_t *)s->src_mat->data + (size_t)r * rs, p->w + r * s->ne0, s->ne0);
        } else if (s->src_vec) {
            memcpy(p->w, s->src_vec, sizeof(float) * (size_t)n);
        } else if (s->init_one) {
            for (int64_t k = 0; k < n; k++) p->w[k] = 1.0f;
        } else if (s->init_std > 0) {
            for (int64_t k = 0; k < n; k++) p->w[k] = s->init_std * train_rng_normal(&rng);
        } /* else zeros (LoRA B) */
        if (s->mat) s->mat->w = p->w, s->mat->g = p->g;
        if (s->vec) s->vec->w = p->w, s->vec->g = p->g;
        if (s->lora_w) *s->lora_w = p->w, *s->lora_g = p->g;
    }
    return PL_OK;
}

#define TM_NAME(buf, il, s) (snprintf(buf, sizeof buf, "blk.%d.%s", il, s), buf)

/* Matrices and vectors of one layer as full-fine-tuning params. */
static pl_status tm_layer_full(tm_list *l, const pl_model *b, int il, train_layer *tl) {
    const model_layer *bl = &b->layers[il];
    const model_hparams *hp = &b->hp;
    const int C = hp->n_embd, HD = hp->n_head * hp->head_dim, GD = hp->n_head_kv * hp->head_dim, F = hp->n_ff;
    struct { const char *name; const kern_matrix *src; train_mat *dst; int n_in, n_out; } mats[] = {
        {"attn_q.weight", &bl->wq, &tl->wq, C, HD},        {"attn_k.weight", &bl->wk, &tl->wk, C, GD},
        {"attn_v.weight", &bl->wv, &tl->wv, C, GD},        {"attn_output.weight", &bl->wo, &tl->wo, HD, C},
        {"ffn_gate.weight", &bl->w_gate, &tl->w_gate, C, F}, {"ffn_up.weight", &bl->w_up, &tl->w_up, C, F},
        {"ffn_down.weight", &bl->w_down, &tl->w_down, F, C},
    };
    struct { const char *name; const float *src; train_vec *dst; int n; } vecs[] = {
        {"attn_norm.weight", bl->attn_norm, &tl->attn_norm, C}, {"attn_q.bias", bl->bq, &tl->bq, HD},
        {"attn_k.bias", bl->bk, &tl->bk, GD},                   {"attn_v.bias", bl->bv, &tl->bv, GD},
        {"attn_q_norm.weight", bl->q_norm, &tl->q_norm, hp->head_dim},
        {"attn_k_norm.weight", bl->k_norm, &tl->k_norm, hp->head_dim},
        {"ffn_norm.weight", bl->ffn_norm, &tl->ffn_norm, C},
    };
    char nm[96];
    for (size_t i = 0; i < sizeof vecs / sizeof vecs[0]; i++) {
        if (!vecs[i].src) continue;
        tm_spec *s = tm_add(l, TM_NAME(nm, il, vecs[i].name), vecs[i].n, 1, false);
        if (!s) return pl_fail(PL_ERR_NOMEM, "train: out of memory");
        s->src_vec = vecs[i].src;
        s->vec = vecs[i].dst;
    }
    for (size_t i = 0; i < sizeof mats / sizeof mats[0]; i++) {
        tm_set_mat_shape(mats[i].dst, mats[i].n_in, mats[i].n_out);
        tm_spec *s = tm_add(l, TM_NAME(nm, il, mats[i].name), mats[i].n_in, mats[i].n_out, true);
        if (!s) return pl_fail(PL_ERR_NOMEM, "train: out of memory");
        s->src_mat = mats[i].src;
        s->mat = mats[i].dst;
    }
    return PL_OK;
}

static train_model *tm_new_shell(pl_model *base) {
    train_model *m = calloc(1, sizeof *m);
    if (!m) return NULL;
    m->base = base;
    m->arch = base->arch;
    m->hp = base->hp;
    return m;
}

static pl_status tm_check_base(const pl_model *base, int n_ctx) {
    if (!base || base->vocab_only || !base->layers)
        return pl_fail(PL_ERR_INVALID_ARG, "train: the base model must be loaded with its weights");
    if (n_ctx < 2 || n_ctx > (1 << 20)) return pl_fail(PL_ERR_INVALID_ARG, "train: sequence length %d out of range", n_ctx);
    return PL_OK;
}

pl_status train_model_from_base(pl_model *base, int n_ctx, train_model **out) {
    *out = NULL;
    pl_status st = tm_check_base(base, n_ctx);
    if (st) return st;
    train_model *m = tm_new_shell(base);
    if (!m) return pl_fail(PL_ERR_NOMEM, "train: out of memory");
    tm_list l = {0};
    m->mode = TRAIN_FULL;
    m->tied = base->output.data == base->tok_embd.data;
    const model_hparams *hp = &m->hp;
    if ((st = tm_alloc_tables(m, n_ctx))) goto fail;
    tm_spec *s;
    tm_set_mat_shape(&m->tok_embd, hp->n_embd, hp->n_vocab);
    if (!(s = tm_add(&l, "token_embd.weight", hp->n_embd, hp->n_vocab, true))) goto nomem;
    s->src_mat = &base->tok_embd;
    s->mat = &m->tok_embd;
    if (!(s = tm_add(&l, "output_norm.weight", hp->n_embd, 1, false))) goto nomem;
    s->src_vec = base->out_norm;
    s->vec = &m->out_norm;
    tm_set_mat_shape(&m->output, hp->n_embd, hp->n_vocab);
    if (!m->tied) {
        if (!(s = tm_add(&l, "output.weight", hp->n_embd, hp->n_vocab, true))) goto nomem;
        s->src_mat = &base->output;
        s->mat = &m->output;
    }
    for (int il = 0; il < hp->n_layer; il++)
        if ((st = tm_layer_full(&l, base, il, &m->layers[il]))) goto fail;
    if ((st = tm_materialize(m, &l, 0))) goto fail;
    if (m->tied) m->output.w = m->tok_embd.w, m->output.g = m->tok_embd.g;
    free(l.v);
    *out = m;
    return PL_OK;
nomem:
    st = pl_fail(PL_ERR_NOMEM, "train: out of memory");
fail:
    free(l.v);
    m->base = NULL; /* the caller keeps the base on failure */
    train_model_free(m);
    return st;
}

pl_status train_model_lora(pl_model *base, int rank, float alpha, uint64_t seed, int n_ctx, train_model **out) {
    *out = NULL;
    pl_status st = tm_check_base(base, n_ctx);
    if (st) return st;
    if (rank < 1 || rank > 4096) return pl_fail(PL_ERR_INVALID_ARG, "train: LoRA rank %d out of range", rank);
    if (!(alpha > 0)) return pl_fail(PL_ERR_INVALID_ARG, "train: LoRA alpha must be positive");
    train_model *m = tm_new_shell(base);
    if (!m) return pl_fail(PL_ERR_NOMEM, "train: out of memory");
    tm_list l = {0};
    m->mode = TRAIN_LORA;
    m->lora_rank = rank;
    m->lora_alpha = alpha;
    m->tied = base->output.data == base->tok_embd.data;
    const model_hparams *hp = &m->hp;
    if ((st = tm_alloc_tables(m, n_ctx))) goto fail;
    m->tok_embd.base = base->tok_embd;
    tm_set_mat_shape(&m->tok_embd, hp->n_embd, hp->n_vocab);
    m->output.base = base->output;
    tm_set_mat_shape(&m->output, hp->n_embd, hp->n_vocab);
    tm_vec_from_base(&m->out_norm, base->out_norm);
    for (int il = 0; il < hp->n_layer; il++) {
        const model_layer *bl = &base->layers[il];
        train_layer *tl = &m->layers[il];
        const int C = hp->n_embd, HD = hp->n_head * hp->head_dim, GD = hp->n_head_kv * hp->head_dim, F = hp->n_ff;
        tm_vec_from_base(&tl->attn_norm, bl->attn_norm);
        tm_vec_from_base(&tl->ffn_norm, bl->ffn_norm);
        tm_vec_from_base(&tl->bq, bl->bq);
        tm_vec_from_base(&tl->bk, bl->bk);
        tm_vec_from_base(&tl->bv, bl->bv);
        tm_vec_from_base(&tl->q_norm, bl->q_norm);
        tm_vec_from_base(&tl->k_norm, bl->k_norm);
        struct { const char *name; const kern_matrix *src; train_mat *dst; int n_in, n_out; } mats[] = {
            {"attn_q.weight", &bl->wq, &tl->wq, C, HD},          {"attn_k.weight", &bl->wk, &tl->wk, C, GD},
            {"attn_v.weight", &bl->wv, &tl->wv, C, GD},          {"attn_output.weight", &bl->wo, &tl->wo, HD, C},
            {"ffn_gate.weight", &bl->w_gate, &tl->w_gate, C, F}, {"ffn_up.weight", &bl->w_up, &tl->w_up, C, F},
            {"ffn_down.weight", &bl->w_down, &tl->w_down, F, C},
        };
        for (size_t i = 0; i < sizeof mats / sizeof mats[0]; i++) {
            train_mat *w = mats[i].dst;
            char nm[96], full[128];
            w->base = *mats[i].src;
            tm_set_mat_shape(w, mats[i].n_in, mats[i].n_out);
            w->rank = rank;
            w->scale = alpha / (float)rank;
            snprintf(nm, sizeof nm, "blk.%d.%s", il, mats[i].name);
            tm_spec *s;
            /* A: kaiming-uniform-like scale 1/sqrt(n_in) (as PEFT), B: zero, so the start is the base */
            snprintf(full, sizeof full, "%s.lora_a", nm);
            if (!(s = tm_add(&l, full, mats[i].n_in, rank, false))) goto nomem;
            s->init_std = 1.0f / sqrtf((float)mats[i].n_in);
            s->lora_w = &w->a, s->lora_g = &w->ga;
            snprintf(full, sizeof full, "%s.lora_b", nm);
            if (!(s = tm_add(&l, full, rank, mats[i].n_out, false))) goto nomem;
            s->lora_w = &w->b, s->lora_g = &w->gb;
        }
    }
    if ((st = tm_materialize(m, &l, seed))) goto fail;
    free(l.v);
    *out = m;
    return PL_OK;
nomem:
    st = pl_fail(PL_ERR_NOMEM, "train: out of memory");
fail:
    free(l.v);
    m->base = NULL;
    train_model_free(m);
    return st;
}

pl_status train_model_new(pl_model *vocab, const train_init *in, train_model **out) {
    *out = NULL;
    if (!vocab || !in) return pl_fail(PL_ERR_INVALID_ARG, "train: vocabulary and shapes are required");
    const int C = in->n_embd, L = in->n_layer, H = in->n_head, G = in->n_head_kv ? in->n_head_kv : in->n_head;
    if (C <= 0 || L <= 0 || H <= 0 || G <= 0 || in->n_ff <= 0 || C % H || H % G || (C / H) % 2 || in->n_ctx < 2)
        return pl_fail(PL_ERR_INVALID_ARG,
                       "train: shapes embd %d, layers %d, heads %d/%d, ffn %d, ctx %d are not a valid llama "
                       "(embd a multiple of heads, an even head size, heads a multiple of kv heads)",
                       C, L, H, G, in->n_ff, in->n_ctx);
    train_model *m = calloc(1, sizeof *m);
    if (!m) return pl_fail(PL_ERR_NOMEM, "train: out of memory");
    m->base = vocab;
    m->arch = arch_find("llama");
    m->mode = TRAIN_FULL;
    m->tied = in->tied;
    model_hparams *hp = &m->hp;
    hp->n_vocab = tok_n_vocab(vocab->tok);
    hp->n_embd = C, hp->n_layer = L, hp->n_head = H, hp->n_head_kv = G, hp->head_dim = C / H, hp->n_ff = in->n_ff;
    hp->n_ctx_train = in->n_ctx, hp->n_rot = C / H;
    hp->rope_base = in->rope_base > 0 ? in->rope_base : 10000.0f;
    hp->rms_eps = in->rms_eps > 0 ? in->rms_eps : 1e-5f;
    tm_list l = {0};
    pl_status st = tm_alloc_tables(m, in->n_ctx);
    if (st) goto fail;
    const float std = 0.02f, std_res = 0.02f / sqrtf(2.0f * L);
    const int HD = H * hp->head_dim, GD = G * hp->head_dim, F = in->n_ff;
    tm_spec *s;
    tm_set_mat_shape(&m->tok_embd, C, hp->n_vocab);
    tm_set_mat_shape(&m->output, C, hp->n_vocab);
    if (!(s = tm_add(&l, "token_embd.weight", C, hp->n_vocab, true))) goto nomem;
    s->init_std = std, s->mat = &m->tok_embd;
    if (!(s = tm_add(&l, "output_norm.weight", C, 1, false))) goto nomem;
    s->init_one = true, s->vec = &m->out_norm;
    if (!m->tied) {
        if (!(s = tm_add(&l, "output.weight", C, hp->n_vocab, true))) goto nomem;
        s->init_std = std, s->mat = &m->output;
    }
    for (int il = 0; il < L; il++) {
        train_layer *tl = &m->layers[il];
        char nm[96];
        struct { const char *name; train_mat *dst; int n_in, n_out; float std; } mats[] = {
            {"attn_q.weight", &tl->wq, C, HD, std},        {"attn_k.weight", &tl->wk, C, GD, std},
            {"attn_v.weight", &tl->wv, C, GD, std},        {"attn_output.weight", &tl->wo, HD, C, std_res},
            {"ffn_gate.weight", &tl->w_gate, C, F, std},   {"ffn_up.weight", &tl->w_up, C, F, std},
            {"ffn_down.weight", &tl->w_down, F, C, std_res},
        };
        if (!(s = tm_add(&l, TM_NAME(nm, il, "attn_norm.weight"), C, 1, false))) goto nomem;
        s->init_one = true, s->vec = &tl->attn_norm;
        if (!(s = tm_add(&l, TM_NAME(nm, il, "ffn_norm.weight"), C, 1, false))) goto nomem;
        s->init_one = true, s->vec = &tl->ffn_norm;
        for (size_t i = 0; i < sizeof mats / sizeof mats[0]; i++) {
            tm_set_mat_shape(mats[i].dst, mats[i].n_in, mats[i].n_out);
            if (!(s = tm_add(&l, TM_NAME(nm, il, mats[i].name), mats[i].n_in, mats[i].n_out, true))) goto nomem;
            s->init_std = mats[i].std, s->mat = mats[i].dst;
        }
    }
    if ((st = tm_materialize(m, &l, in->seed))) goto fail;
    if (m->tied) m->output.w = m->tok_embd.w, m->output.g = m->tok_embd.g;
    free(l.v);
    *out = m;
    return PL_OK;
nomem:
    st = pl_fail(PL_ERR_NOMEM, "train: out of memory");
fail:
    free(l.v);
    m->base = NULL;
    train_model_free(m);
    return st;
}

void train_model_free(train_model *m) {
    if (!m) return;
    pl_model_free(m->base);
    free(m->layers);
    free(m->params);
    free(m->storage);
    free(m->rope_cos);
    free(m->rope_sin);
    free(m);
}
