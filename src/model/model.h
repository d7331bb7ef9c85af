/*
 * model: hyper-parameters and weights of a loaded model (pl_model), and the
 * per-conversation state (pl_ctx: KV cache, scratch, logits) with the forward
 * pass. Weights are borrowed from the GGUF mapping (zero-copy); a pl_model owns
 * its gguf_file and tokenizer. A pl_ctx borrows its model, which must outlive it.
 *
 * Letters: T tokens in a batch, C n_embd, H n_head, G n_head_kv, D head_dim,
 * F n_ff, V n_vocab, L n_layer, P positions in the cache.
 */
#ifndef PL_MODEL_H
#define PL_MODEL_H

#include "../core/threads.h"
#include "../gguf/gguf.h"
#include "../kernels/attn.h"
#include "../kernels/kernels.h"
#include "../plan/plan.h"
#include "../tokenizer/tokenizer.h"
#include "arch.h"

#include <stdatomic.h>

typedef struct model_hparams {
    int n_vocab;     /* V */
    int n_embd;      /* C */
    int n_layer;     /* L */
    int n_head;      /* H */
    int n_head_kv;   /* G; H % G == 0 */
    int head_dim;    /* D (attention.key_length, else C / H) */
    int n_ff;        /* F */
    int n_ctx_train;
    int n_rot;       /* rope dimensions (rope.dimension_count, else D) */
    float rope_base;
    float rms_eps;
} model_hparams;

typedef struct model_layer {
    const float *attn_norm;              /* (C) */
    kern_matrix wq, wk, wv, wo;          /* (C -> H*D), (C -> G*D), (C -> G*D), (H*D -> C) */
    const float *bq, *bk, *bv;           /* (H*D), (G*D), (G*D) when arch->qkv_bias */
    const float *q_norm, *k_norm;        /* (D) when arch->qk_norm */
    const float *ffn_norm;               /* (C) */
    kern_matrix w_gate, w_up, w_down;    /* (C -> F), (C -> F), (F -> C) */
} model_layer;

/* Matrix i (< PLAN_LAYER_MATS) of a layer, in plan_layer_mat_names' order. */
static inline kern_matrix *model_layer_mat(model_layer *l, int i) {
    kern_matrix *const ms[PLAN_LAYER_MATS] = {&l->wq, &l->wk, &l->wv, &l->wo, &l->w_gate, &l->w_up, &l->w_down};
    return ms[i];
}

/* An accounted buffer the model owns (freed with mem_free(acct, MEM_WEIGHTS)). */
typedef struct model_owned {
    void *p;
    size_t bytes;
} model_owned;

struct pl_model {
    gguf_file *gguf;
    tokenizer *tok;
    const arch_desc *arch;
    char arch_name[32];
    model_hparams hp;
    bool vocab_only;
    kern_matrix tok_embd;    /* (V rows of C) */
    const float *out_norm;   /* (C) */
    kern_matrix output;      /* (V rows of C); the embedding when tied */
    model_layer *layers;     /* (L) */
    model_owned *owned;      /* buffers the model frees (LoRA-merged matrices, lora.c), charged to acct */
    int n_owned;
    /* memory (model_mem.c): the budget every allocation for this model and
     * its contexts is charged to, and the numbers plans are made from */
    mem_account acct;
    plan_model pm;
    plan_limits lim;
    pl_model_params params;  /* as loaded */
    uint64_t charged_ext;    /* MEM_EXTERNAL charged at load (mapped weights, runtime) */
    uint64_t charged_tok;    /* MEM_OTHER charged at load (tokenizer and tables) */
    uint64_t charged_copy;   /* MEM_WEIGHTS charged for image pages the loader copied */
    void *image_copy;        /* no_mmap: the image in accounted memory (gguf borrows it) */
    size_t image_copy_bytes;
    const void *region;      /* mapped image registered for snapshots */
    bool locked;             /* mlock'd */
    bool streaming;          /* layers are read through a window (stream.c) */
    char name[128];          /* file name for messages */
};

struct pl_ctx {
    pl_model *model;
    pl_pool *pool;
    int n_ctx;       /* P max */
    int n_batch;     /* max T per forward step */
    bool logits_all;
    int pos;         /* tokens in the cache */
    /* (L, P) rows of G*D values of type kv_qt: QT_F16 (llama.cpp's default
     * cache) or QT_Q8_0 (D % 32 == 0, each head starts on a block) */
    void *k_cache, *v_cache;
    size_t kv_row_bytes;     /* one row (one layer, one position) */
    quant_type kv_qt;
    /* scratch for one step of up to n_batch tokens */
    float *x, *xn;           /* (T, C) */
    float *q, *k, *v;        /* (T, H*D), (T, G*D), (T, G*D) */
    float *att_out;          /* (T, H*D) */
    float *att_scores;       /* (n_threads, P) */
    float *gate, *up;        /* (T, F) */
    void *act_scratch;       /* converted activations for kern_matmul */
    float *logits;           /* (n_logits_rows, V) */
    int n_logits_rows;       /* rows held after the last decode */
    int logits_first;        /* token index (in the last decode call) of logits row 0 */
    int logits_cap;          /* rows allocated */
    float *rope_cos, *rope_sin; /* (n_ctx, n_rot/2) precomputed */
    atomic_int cancel;
    struct gpu_ctx *gpu;     /* the CUDA backend's state (src/gpu), NULL on the CPU */
    /* memory (model_mem.c): two accounted blocks the buffers above are carved from */
    void *kv_block, *scratch_block;
    size_t kv_block_bytes, scratch_block_bytes;
    uint64_t charged_ext;    /* MEM_EXTERNAL charged for this context (embedding rows, threads) */
    int kv_type;             /* pl_kv_type */
    struct model_stream *stream; /* the layer window when the model streams (stream.c), else NULL */
};

/* Memory policy (model_mem.c). Before the image is mapped: resolve the
 * budget and refuse an image the address-space limit cannot map. */
pl_status model_mem_precheck(pl_model *m, const pl_model_params *p, const char *what, uint64_t image_bytes);
/* After the GGUF is open and arch_name set:
 * plan the model against its budget (PL_ERR_BUDGET when even a one-token
 * context cannot fit), copy the image for no_mmap, mlock/madvise, charge. */
pl_status model_mem_load(pl_model *m, const pl_model_params *p);
void model_mem_release(pl_model *m);
/* Plan a context, refuse it when it does not fit, allocate and carve its
 * KV cache and scratch (touched up front unless no_prefault). */
pl_status model_mem_ctx(pl_ctx *c, const pl_ctx_params *p);
void model_mem_ctx_release(pl_ctx *c);
/* Options of a context as the plan sees them (threads, batch resolved). */
void model_mem_opts(const pl_model *m, const pl_ctx_params *p, plan_opts *o);
/* model_pack.c: the packed copies of the matrices the plan packs (after the
 * layers are loaded); model_unpack frees one (before a matrix is replaced). */
pl_status model_pack(pl_model *m);
void model_unpack(pl_model *m, kern_matrix *w);

/* Streaming layers (stream.c): a window of n_pinned resident layers and
 * n_slots slots the others cycle through, charged to acct. stream_take
 * waits for layer il (in forward order) and lends it until stream_give. */
typedef struct model_stream model_stream;
pl_status stream_new(pl_model *m, int n_pinned, int n_slots, mem_account *acct, model_stream **out);
void stream_free(model_stream *s, mem_account *acct);
pl_status stream_take(model_stream *s, int il, const model_layer **out);
void stream_give(model_stream *s, int il);

/* Load a model from an image `open` makes (api.c): budget precheck of
 * image_bytes of address space, open, plan, tokenizer, weights. */
typedef pl_status (*model_open_fn)(const void *arg, gguf_file **out);
pl_status model_load_common(const char *what, uint64_t image_bytes, const pl_model_params *params, model_open_fn open,
                            const void *arg, pl_model **out);

/* Load weights/hparams from an opened GGUF (called by pl_model_load). */
pl_status model_load_from_gguf(pl_model *m);
/* Run the forward pass for n tokens appended at ctx->pos; with logits_all,
 * logits for tokens [logits_from, n), else for the last token only. */
pl_status model_forward(pl_ctx *ctx, const pl_token *toks, int n, int logits_from);

#endif
