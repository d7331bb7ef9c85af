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
#include <sys/stat.h>

pl_model_params pl_model_default_params(void) {
    pl_model_params p = {0};
    return p;
}

pl_status model_load_common(const char *what, uint64_t image_bytes, const pl_model_params *params, model_open_fn open,
                            const void *arg, pl_model **out) {
    *out = NULL;
    pl_model_params p = params ? *params : pl_model_default_params();
    pl_model *m = calloc(1, sizeof *m);
    if (!m) return pl_fail(PL_ERR_NOMEM, "pl_model_load: out of memory");
    pl_status st = model_mem_precheck(m, &p, what, image_bytes);
    if (st) goto fail;
    if ((st = open(arg, &m->gguf))) goto fail;
    gguf_str arch;
    if ((st = gguf_get_str(m->gguf, "general.architecture", &arch))) goto fail;
    if (arch.len >= sizeof m->arch_name) arch.len = sizeof m->arch_name - 1;
    memcpy(m->arch_name, arch.ptr, arch.len);
    m->arch_name[arch.len] = 0;
    if (!p.vocab_only && !arch_find(m->arch_name)) {
        st = pl_fail(PL_ERR_UNSUPPORTED, "architecture '%s' is not supported (supported: %s)", m->arch_name,
                     arch_supported_list());
        goto fail;
    }
    if ((st = model_mem_load(m, &p))) goto fail; /* the budget check: before any weight is read */
    if ((st = tok_load(m->gguf, &m->tok))) goto fail;
    m->vocab_only = p.vocab_only;
    if (!p.vocab_only) {
        m->arch = arch_find(m->arch_name);
        if ((st = model_load_from_gguf(m)) || (st = model_pack(m))) goto fail;
    }
    *out = m;
    return PL_OK;
fail:
    pl_fail_prefix(st, "loading %s", what);
    pl_model_free(m);
    return st;
}

typedef struct api_path_arg {
    const char *path;
    bool verify;
} api_path_arg;

static pl_status api_open_path(const void *arg, gguf_file **out) {
    const api_path_arg *a = arg;
    const gguf_open_opts o = {.verify = a->verify};
    return gguf_open_any(a->path, &o, out);
}

pl_status pl_model_load(const char *path, const pl_model_params *params, pl_model **out) {
    if (!path || !out) return pl_fail(PL_ERR_INVALID_ARG, "pl_model_load: path and out are required");
    *out = NULL;
    /* the image's size before it is mapped: every file a split set names */
    uint64_t bytes = 0;
    char **files = NULL;
    int n = 0;
    if (gguf_paths(path, &files, &n) == PL_OK)
        for (int i = 0; i < n; i++) {
            struct stat sb;
            if (stat(files[i], &sb) == 0) bytes += (uint64_t)sb.st_size;
        }
    gguf_paths_free(files, n);
    const api_path_arg a = {path, params && params->verify};
    return model_load_common(path, bytes, params, api_open_path, &a, out);
}

void pl_model_free(pl_model *m) {
    if (!m) return;
    free(m->layers);
    for (int i = 0; i < m->n_owned; i++) mem_free(&m->acct, MEM_WEIGHTS, m->owned[i].p, m->owned[i].bytes);
    free(m->owned);
    tok_free(m->tok);
    model_mem_release(m);
    gguf_close(m->gguf);
    mem_free(&m->acct, MEM_WEIGHTS, m->image_copy, m->image_copy_bytes);
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
    if ((st = model_mem_ctx(c, &p))) {
        pl_ctx_free(c);
        return st;
    }
    const int half = hp->n_rot / 2;
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
    model_mem_ctx_release(c);
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
