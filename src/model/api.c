/*
 * The public model/context API (pocketllm.h) on top of the model module:
 * loading (GGUF -> tokenizer -> weights), context creation with every buffer
 * allocated up front (the KV cache and scratch never grow while generating),
 * decode, logits access and tokenizer pass-throughs.
 */
#include "model.h"

#include "../gpu/gpu.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

pl_model_params pl_model_default_params(void) {
    pl_model_params p = {0};
    return p;
}

pl_status pl_model_load(const char *path, const pl_model_params *params, pl_model **out) {
    if (!path || !out) return pl_fail(PL_ERR_INVALID_ARG, "pl_model_load: path and out are required");
    *out = NULL;
    pl_model_params p = params ? *params : pl_model_default_params();
    pl_model *m = calloc(1, sizeof *m);
    if (!m) return pl_fail(PL_ERR_NOMEM, "pl_model_load: out of memory");
    pl_status st = gguf_open(path, &m->gguf);
    if (st) goto fail;
    gguf_str arch;
    if ((st = gguf_get_str(m->gguf, "general.architecture", &arch))) goto fail;
    if (arch.len >= sizeof m->arch_name) arch.len = sizeof m->arch_name - 1;
    memcpy(m->arch_name, arch.ptr, arch.len);
    m->arch_name[arch.len] = 0;
    if ((st = tok_load(m->gguf, &m->tok))) goto fail;
    m->vocab_only = p.vocab_only;
    if (!p.vocab_only) {
        m->arch = arch_find(m->arch_name);
        if (!m->arch) {
            st = pl_fail(PL_ERR_UNSUPPORTED, "architecture '%s' is not supported (supported: %s)", m->arch_name,
                         arch_supported_list());
            goto fail;
        }
        if ((st = model_load_from_gguf(m))) goto fail;
    }
    *out = m;
    return PL_OK;
fail:
    pl_fail_prefix(st, "loading %s", path);
    pl_model_free(m);
    return st;
}

void pl_model_free(pl_model *m) {
    if (!m) return;
    free(m->layers);
    for (int i = 0; i < m->n_owned; i++) free(m->owned[i]);
    free(m->owned);
    tok_free(m->tok);
    gguf_close(m->gguf);
    free(m);
}

int pl_model_n_vocab(const pl_model *m) { return tok_n_vocab(m->tok); }
int pl_model_n_embd(const pl_model *m) { return m->hp.n_embd; }
int pl_model_n_layer(const pl_model *m) { return m->hp.n_layer; }
int pl_model_n_ctx_train(const pl_model *m) { return m->hp.n_ctx_train; }
const char *pl_model_arch(const pl_model *m) { return m->arch_name; }
pl_token pl_model_bos(const pl_model *m) { return tok_bos(m->tok); }
pl_token pl_model_eos(const pl_model *m) { return tok_eos(m->tok); }
int pl_model_add_bos(const pl_model *m) { return tok_add_bos(m->tok); }
int pl_model_is_eog(const pl_model *m, pl_token t) { return tok_is_eog(m->tok, t); }

pl_status pl_tokenize(const pl_model *m, const char *text, size_t len, int add_bos, int parse_special,
                      pl_token *out, int cap, int *n_out) {
    if (!m || (!text && len) || !n_out) return pl_fail(PL_ERR_INVALID_ARG, "pl_tokenize: missing argument");
    return tok_encode(m->tok, text ? text : "", len, add_bos != 0, parse_special != 0, out, cap, n_out);
}

int pl_token_to_piece(const pl_model *m, pl_token t, char *buf, int cap) { return tok_piece(m->tok, t, buf, cap); }

int pl_detokenize(const pl_model *m, const pl_token *toks, int n, char *buf, int cap) {
    return tok_decode(m->tok, toks, n, buf, cap);
}

/* ----------------------------------------------------------------- contexts */

pl_ctx_params pl_ctx_default_params(void) {
    pl_ctx_params p = {0};
    return p;
}

static size_t max_scratch(const pl_model *m, int T) {
    size_t mx = kern_matmul_scratch(&m->output, T);
    for (int il = 0; il < m->hp.n_layer; il++) {
        const model_layer *l = &m->layers[il];
        const kern_matrix *ws[] = {&l->wq, &l->wk, &l->wv, &l->wo, &l->w_gate, &l->w_up, &l->w_down};
        for (size_t i = 0; i < sizeof ws / sizeof ws[0]; i++) {
            size_t s = kern_matmul_scratch(ws[i], T);
            if (s > mx) mx = s;
        }
    }
    return mx;
}

static float *alloc_floats(size_t n, pl_status *st, const char *what) {
    if (*st) return NULL;
    float *p = malloc((n ? n : 1) * sizeof(float));
    if (!p) *st = pl_fail(PL_ERR_NOMEM, "context: cannot allocate %zu bytes for %s", n * sizeof(float), what);
    return p;
}

pl_status pl_ctx_new(pl_model *m, const pl_ctx_params *params, pl_ctx **out) {
    if (!m || !out) return pl_fail(PL_ERR_INVALID_ARG, "pl_ctx_new: model and out are required");
    *out = NULL;
    if (m->vocab_only) return pl_fail(PL_ERR_INVALID_ARG, "pl_ctx_new: the model was loaded vocab-only");
    pl_ctx_params p = params ? *params : pl_ctx_default_params();
    const model_hparams *hp = &m->hp;
    if (p.n_ctx < 0 || p.n_batch < 0 || p.n_threads < 0)
        return pl_fail(PL_ERR_INVALID_ARG, "pl_ctx_new: negative n_ctx/n_batch/n_threads");
    int n_ctx = p.n_ctx ? p.n_ctx : (hp->n_ctx_train < 4096 ? hp->n_ctx_train : 4096);
    if (n_ctx > (1 << 24)) return pl_fail(PL_ERR_INVALID_ARG, "pl_ctx_new: n_ctx %d is too large", n_ctx);
    int n_batch = p.n_batch ? p.n_batch : 512;
    if (n_batch > n_ctx) n_batch = n_ctx;
    pl_ctx *c = calloc(1, sizeof *c);
    if (!c) return pl_fail(PL_ERR_NOMEM, "pl_ctx_new: out of memory");
    c->model = m;
    c->n_ctx = n_ctx;
    c->n_batch = n_batch;
    c->logits_all = p.logits_all != 0;
    pl_status st = pool_new(p.n_threads ? p.n_threads : pl_cpu_count(), &c->pool);
    if (st) {
        free(c);
        return st;
    }
    const size_t C = (size_t)hp->n_embd, HD = (size_t)hp->n_head * hp->head_dim,
                 GD = (size_t)hp->n_head_kv * hp->head_dim, F = (size_t)hp->n_ff, T = (size_t)n_batch;
    const size_t kv = (size_t)hp->n_layer * n_ctx * GD;
    c->k_cache = malloc(kv * sizeof(pl_fp16) + 1);
    c->v_cache = malloc(kv * sizeof(pl_fp16) + 1);
    if (!c->k_cache || !c->v_cache)
        st = pl_fail(PL_ERR_NOMEM, "context: cannot allocate %zu bytes for the KV cache", 2 * kv * sizeof(pl_fp16));
    c->x = alloc_floats(T * C, &st, "activations");
    c->xn = alloc_floats(T * C, &st, "activations");
    c->q = alloc_floats(T * HD, &st, "queries");
    c->k = alloc_floats(T * GD, &st, "keys");
    c->v = alloc_floats(T * GD, &st, "values");
    c->att_out = alloc_floats(T * HD, &st, "attention output");
    c->att_scores = alloc_floats((size_t)pool_size(c->pool) * n_ctx, &st, "attention scores");
    c->gate = alloc_floats(T * F, &st, "feed-forward");
    c->up = alloc_floats(T * F, &st, "feed-forward");
    c->logits_cap = c->logits_all ? n_batch : 1;
    c->logits = alloc_floats((size_t)c->logits_cap * hp->n_vocab, &st, "logits");
    const int half = hp->n_rot / 2;
    c->rope_cos = alloc_floats((size_t)n_ctx * half, &st, "rope table");
    c->rope_sin = alloc_floats((size_t)n_ctx * half, &st, "rope table");
    if (!st) {
        size_t s = max_scratch(m, n_batch);
        c->act_scratch = malloc(s ? s : 1);
        if (!c->act_scratch) st = pl_fail(PL_ERR_NOMEM, "context: cannot allocate %zu bytes of scratch", s);
    }
    if (st) {
        pl_ctx_free(c);
        return st;
    }
    /* theta_i = pos * base^(-2i/n_rot), as the rope paper and llama.cpp define it */
    for (int pos = 0; pos < n_ctx; pos++)
        for (int i = 0; i < half; i++) {
            double theta = pos * pow((double)hp->rope_base, -2.0 * i / hp->n_rot);
            c->rope_cos[(size_t)pos * half + i] = (float)cos(theta);
            c->rope_sin[(size_t)pos * half + i] = (float)sin(theta);
        }
    if (p.device != PL_DEVICE_CPU && (st = gpu_ctx_new(c, p.device, p.n_gpu_layers))) {
        pl_ctx_free(c);
        return st;
    }
    *out = c;
    return PL_OK;
}

void pl_ctx_free(pl_ctx *c) {
    if (!c) return;
    gpu_ctx_free(c);
    pool_free(c->pool);
    free(c->k_cache);
    free(c->v_cache);
    free(c->x);
    free(c->xn);
    free(c->q);
    free(c->k);
    free(c->v);
    free(c->att_out);
    free(c->att_scores);
    free(c->gate);
    free(c->up);
    free(c->logits);
    free(c->rope_cos);
    free(c->rope_sin);
    free(c->act_scratch);
    free(c);
}

pl_status pl_ctx_decode(pl_ctx *c, const pl_token *toks, int n) {
    if (!c || (!toks && n)) return pl_fail(PL_ERR_INVALID_ARG, "pl_ctx_decode: missing argument");
    atomic_store(&c->cancel, 0);
    return model_forward(c, toks, n, 0);
}

pl_status pl_ctx_decode_from(pl_ctx *c, const pl_token *toks, int n, int logits_from) {
    if (!c || (!toks && n)) return pl_fail(PL_ERR_INVALID_ARG, "pl_ctx_decode_from: missing argument");
    if (!c->logits_all) return pl_fail(PL_ERR_INVALID_ARG, "pl_ctx_decode_from: the context was made without logits_all");
    atomic_store(&c->cancel, 0);
    return model_forward(c, toks, n, logits_from);
}

const float *pl_ctx_logits(const pl_ctx *c, int i) {
    if (!c || c->n_logits_rows == 0) return NULL;
    if (i < 0) return c->logits + (size_t)(c->n_logits_rows - 1) * c->model->hp.n_vocab;
    const int row = c->logits_all ? i - c->logits_first : (i == c->logits_first ? 0 : -1);
    if (row < 0 || row >= c->n_logits_rows) return NULL;
    return c->logits + (size_t)row * c->model->hp.n_vocab;
}

int pl_ctx_pos(const pl_ctx *c) { return c->pos; }
int pl_ctx_n_ctx(const pl_ctx *c) { return c->n_ctx; }

pl_status pl_ctx_truncate(pl_ctx *c, int n_keep) {
    if (!c || n_keep < 0) return pl_fail(PL_ERR_INVALID_ARG, "pl_ctx_truncate: bad argument");
    if (n_keep < c->pos) c->pos = n_keep;
    c->n_logits_rows = 0;
    return PL_OK;
}

void pl_ctx_cancel(pl_ctx *c) {
    if (c) atomic_store(&c->cancel, 1);
}
