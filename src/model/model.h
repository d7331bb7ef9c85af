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
    void **owned;            /* buffers the model frees (LoRA-merged matrices, lora.c) */
    int n_owned;
};

struct pl_ctx {
    pl_model *model;
    pl_pool *pool;
    int n_ctx;       /* P max */
    int n_batch;     /* max T per forward step */
    bool logits_all;
    int pos;         /* tokens in the cache */
    pl_fp16 *k_cache; /* (L, P, G*D) half precision, as llama.cpp's default cache */
    pl_fp16 *v_cache; /* (L, P, G*D) */
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
};

/* Load weights/hparams from an opened GGUF (called by pl_model_load). */
pl_status model_load_from_gguf(pl_model *m);
/* Run the forward pass for n tokens appended at ctx->pos; with logits_all,
 * logits for tokens [logits_from, n), else for the last token only. */
pl_status model_forward(pl_ctx *ctx, const pl_token *toks, int n, int logits_from);

#endif
