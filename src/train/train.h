/*
 * train: float32 training of the llama family (llama, qwen2, qwen3) — full
 * fine-tuning, LoRA adapters over a frozen (possibly quantized, mmap'd) base,
 * and training from scratch. The forward pass computes exactly what
 * src/model/forward.c computes (same arch_desc flags, same rope tables) and
 * saves the activations the backward pass needs; every op has a forward and a
 * backward function (train_ops.c), checked against finite differences.
 *
 * Dependency order: core -> quant -> gguf -> kernels -> tokenizer -> model ->
 * train. Nothing below includes this header.
 *
 * Letters: B sequences in a micro-batch, T tokens per sequence, N = B*T rows,
 * C n_embd, H n_head, G n_head_kv, D head_dim, F n_ff, V n_vocab, L n_layer,
 * R LoRA rank. Matrices are GGUF's layout: n_out rows of n_in contiguous.
 */
#ifndef PL_TRAIN_H
#define PL_TRAIN_H

#include "../model/model.h"

#include <stdbool.h>
#include <stdint.h>

/* ------------------------------------------------------------ dense math */

/* C[i][j] (+)= sum_k A(i,k) * B[k][j] for i < M, j < N, k < K, where
 * A(i,k) = A[i*a_si + k*a_sk] (so A may be read transposed), B rows have
 * stride ldb and C rows stride ldc. Threaded over rows of C. */
void train_gemm(pl_pool *pool, int M, int N, int K, const float *A, int64_t a_si, int64_t a_sk,
                const float *B, int64_t ldb, float *Cm, int64_t ldc, bool accumulate);
/* dst (cols rows of `rows` floats) = transpose of src (rows rows of `cols`). */
void train_transpose(pl_pool *pool, const float *src, int rows, int cols, float *dst);
float train_dot(const float *x, const float *y, int n);
void train_axpy(float *y, float a, const float *x, int n); /* y += a*x */

/* ------------------------------------------------------------ parameters */

/* A trainable tensor: values, gradients and AdamW moments, all f32 of the
 * same size. Vectors have ne1 == 1. */
typedef struct train_param {
    char name[96];   /* GGUF tensor name */
    int64_t ne0, ne1;
    float *w, *g, *m, *v;
    bool decay;      /* weight decay applies (matrices, not norms/biases) */
} train_param;

/* A vector parameter (norm weight, bias): g is NULL when it is frozen. */
typedef struct train_vec {
    const float *w; /* the param's values, or the frozen base's */
    float *g;
} train_vec;

/* A linear map y = W x (+ bias) with n_out rows of n_in. Either trainable f32
 * (w, g), or a frozen base weight read through the kernels (base). With LoRA
 * (rank > 0) y += scale * B (A x): A is (R rows of n_in), B (n_out rows of R). */
typedef struct train_mat {
    int n_in, n_out;
    const float *w;      /* trainable f32 (written only by the optimizer), or NULL */
    float *g;
    kern_matrix base;    /* frozen, when w == NULL */
    int rank;
    float scale;         /* alpha / R */
    const float *a, *b;
    float *ga, *gb;
} train_mat;

typedef struct train_layer {
    train_vec attn_norm, ffn_norm, bq, bk, bv, q_norm, k_norm;
    train_mat wq, wk, wv, wo, w_gate, w_up, w_down;
} train_layer;

typedef enum train_mode { TRAIN_FULL, TRAIN_LORA } train_mode;

typedef struct train_model {
    pl_model *base;          /* tokenizer and metadata (and frozen weights for LoRA); owned */
    const arch_desc *arch;
    model_hparams hp;
    train_mode mode;
    bool tied;               /* output shares the embedding matrix */
    train_mat tok_embd;      /* (V rows of C) */
    train_vec out_norm;      /* (C) */
    train_mat output;        /* (V rows of C); == tok_embd's storage when tied */
    train_layer *layers;     /* (L) */
    train_param *params;     /* every trainable tensor, in the order a GGUF lists them */
    int n_params;
    int64_t n_trainable;     /* elements over params */
    int lora_rank;
    float lora_alpha;
    int n_ctx;               /* T max: rope tables cover it */
    float *rope_cos, *rope_sin; /* (n_ctx, n_rot/2), as pl_ctx_new builds them */
    void *storage;           /* one block holding every param's w, g, m, v */
    size_t storage_bytes;
} train_model;

/* Hyper-parameters of a model trained from scratch. */
typedef struct train_init {
    int n_embd, n_layer, n_head, n_head_kv, n_ff, n_ctx;
    float rope_base, rms_eps;
    bool tied;
    uint64_t seed;
} train_init;

/* Full fine-tuning: every tensor of `base` (any type) dequantized to f32 and
 * trainable. Takes ownership of base. n_ctx: longest sequence trained. */
pl_status train_model_from_base(pl_model *base, int n_ctx, train_model **out);
/* LoRA: base weights stay frozen where they are (mmap'd, any type); rank-R
 * adapters on the 7 matrices of every layer, A random, B zero. */
pl_status train_model_lora(pl_model *base, int rank, float alpha, uint64_t seed, int n_ctx, train_model **out);
/* From scratch: `vocab` (a vocab-only or full model) gives the tokenizer;
 * llama architecture, weights N(0, 0.02) with residual projections scaled by
 * 1/sqrt(2L) (GPT-2's scheme), norms 1. Takes ownership of vocab. */
pl_status train_model_new(pl_model *vocab, const train_init *init, train_model **out);
void train_model_free(train_model *m);

/* ------------------------------------------------------------ ops */

/* Each op: forward saves nothing itself (the graph keeps its inputs); the
 * backward ACCUMULATES into parameter gradients and writes (or accumulates,
 * where said) input gradients. Rows are independent unless said. */

/* Ops taking a pool split their rows (or elements) between its threads; a
 * NULL pool runs them serially. */

/* y = x * rstd * w, rstd[n] = 1/sqrt(mean(x^2) + eps); rows of n. */
void op_rmsnorm_fwd(pl_pool *pool, float *y, float *rstd, const float *x, const float *w, int rows, int n, float eps);
/* dx (overwritten, or added when accumulate; may alias dy) and dw += from dy. */
void op_rmsnorm_bwd(pl_pool *pool, float *dx, float *dw, const float *dy, const float *x, const float *rstd,
                    const float *w, int rows, int n, bool accumulate);
/* Rotary embedding of `rows` rows holding n_heads heads of D; row r is at
 * position r % T (sequences of T). inverse = rotate by -theta (the
 * backward of the forward rotation). */
void op_rope(float *x, int rows, int T, int n_heads, int D, int n_rot, bool neox, const float *cos_t,
             const float *sin_t, bool inverse);
/* Floats of scratch the attention ops need with nth threads. */
size_t op_attn_scratch(int T, int D, int nth);
/* Causal GQA attention over B sequences of T tokens. q (N, H*D), k/v (N, G*D)
 * -> out (N, H*D); probs (B, H, T, T) saved (zero above the diagonal). */
void op_attn_fwd(pl_pool *pool, const float *q, const float *k, const float *v, float *probs, float *out,
                 int B, int T, int H, int G, int D, float *scratch);
/* dq, dk, dv overwritten. The gradient of a shared K/V head is the sum over
 * the query heads of its group. */
void op_attn_bwd(pl_pool *pool, const float *dout, const float *q, const float *k, const float *v,
                 const float *probs, float *dq, float *dk, float *dv, int B, int T, int H, int G, int D,
                 float *scratch);
/* h = silu(g) * u, and its backward (dg, du overwritten). */
void op_swiglu_fwd(pl_pool *pool, float *h, const float *g, const float *u, int64_t n);
void op_swiglu_bwd(pl_pool *pool, float *dg, float *du, const float *dh, const float *g, const float *u, int64_t n);
/* Cross-entropy of `rows` logit rows (V each) against targets (< 0: ignored).
 * Returns the summed negative log-likelihood (double); when dlogits != NULL
 * writes d(sum nll * grad_scale)/dlogits there (may alias logits). */
double op_xent(pl_pool *pool, const float *logits, const int32_t *targets, int rows, int V, float *dlogits,
               float grad_scale);

/* y (N, n_out) = x (N, n_in) W^T (+ bias) (+ LoRA). u (N, R) receives A x when
 * LoRA is on (the backward needs it). wt: n_in*n_out floats of scratch. */
void op_linear_fwd(pl_pool *pool, const train_mat *w, const float *bias, const float *x, int N, float *y, float *u,
                   float *wt, void *kscratch);
/* dx (N, n_in) += dy W (+ LoRA path) when dx != NULL; W's (or A/B's) gradients
 * += ; dbias += column sums of dy. du: (N, R) scratch. tile: rows of the frozen
 * base dequantized at a time (TRAIN_TILE_ROWS * n_in floats). */
void op_linear_bwd(pl_pool *pool, const train_mat *w, float *dbias, const float *x, const float *dy,
                   const float *u, int N, float *dx, float *du, float *tile);
#define TRAIN_TILE_ROWS 64

/* ------------------------------------------------------------ memory plan */

typedef struct train_plan {
    int B, T;                 /* micro-batch */
    int n_threads;
    bool checkpoint;          /* recompute each layer's activations in backward */
    size_t params;            /* trainable values */
    size_t grads, adam;       /* gradients; AdamW m + v */
    size_t frozen;            /* frozen base weights (mapped, counted) */
    size_t acts;              /* saved activations */
    size_t scratch;           /* per-step work buffers */
    size_t total;
} train_plan;

/* Bytes of one micro-batch's activations and scratch, with or without
 * checkpointing, for the model's shapes. */
void train_plan_make(const train_model *m, int B, int T, bool checkpoint, int n_threads, train_plan *out);
/* Choose checkpointing when needed to fit `budget` bytes (0 = no limit;
 * force_ckpt: 1 always, 0 never, -1 as needed); PL_ERR_BUDGET with the
 * breakdown when even that does not fit. */
pl_status train_plan_fit(const train_model *m, int B, int T, int n_threads, uint64_t budget, int force_ckpt,
                         train_plan *out);
/* One line, e.g. "params 9.1 MB, grads ..., total 61.0 MB". */
void train_plan_describe(const train_plan *p, char *buf, size_t cap);

/* ------------------------------------------------------------ graph */

typedef struct train_graph train_graph;

/* Buffers for micro-batches of B x T, as the plan says (allocated as one
 * block of exactly plan->acts + plan->scratch bytes); plan->n_threads workers. */
pl_status train_graph_new(train_model *m, const train_plan *plan, train_graph **out);
void train_graph_free(train_graph *g);
pl_pool *train_graph_pool(train_graph *g);
/* Forward and backward of one micro-batch: tokens (B*T) and targets (B*T; < 0
 * ignored). Gradients are ADDED to the params' g (scaled by grad_scale).
 * Returns the summed nll in *nll and the number of scored targets in *count. */
pl_status train_graph_step(train_graph *g, const int32_t *tokens, const int32_t *targets, float grad_scale,
                           double *nll, int64_t *count);
/* Forward only: loss as above, and (when logits != NULL) every row's logits (N, V). */
pl_status train_graph_eval(train_graph *g, const int32_t *tokens, const int32_t *targets, double *nll,
                           int64_t *count, float *logits);

/* ------------------------------------------------------------ optimizer */

typedef struct train_opt {
    float lr, min_lr;        /* peak and floor of the schedule */
    int warmup, steps;       /* linear warmup steps, total steps */
    bool cosine;             /* cosine decay after warmup, else linear */
    float beta1, beta2, eps, weight_decay;
    float clip;              /* max global gradient norm; <= 0: off */
} train_opt;

train_opt train_opt_default(void);
/* Learning rate at step (0-based). */
float train_lr_at(const train_opt *o, int step);
void train_zero_grads(train_model *m);
/* Global L2 norm of every gradient. */
double train_grad_norm(const train_model *m);
/* One AdamW step (t = 1-based step count for bias correction) with the given
 * lr, after clipping the gradients to o->clip. Returns the norm before clipping. */
double train_adamw_step(train_model *m, const train_opt *o, int t, float lr);

/* ------------------------------------------------------------ data */

typedef struct train_data {
    int32_t *ids;
    int64_t n;
} train_data;

/* Tokenize a text file with the model's tokenizer (BOS at the start when the
 * vocabulary asks for it). */
pl_status train_data_from_text(const pl_model *tok, const char *path, train_data *out);
/* Whitespace-separated token ids, each checked against n_vocab. */
pl_status train_data_from_ids(const char *path, int n_vocab, train_data *out);
void train_data_free(train_data *d);
/* Fill one micro-batch of B windows of T+1 ids: random starts (from *rng)
 * when sequential_index < 0, else window number sequential_index*B + b laid
 * end to end (wrapping). Position 0 of each input is set to bos when bos >= 0. */
void train_data_batch(const train_data *d, int B, int T, uint64_t *rng, int64_t sequential_index, int32_t bos,
                      int32_t *tokens, int32_t *targets);
uint64_t train_rng_next(uint64_t *s);
float train_rng_normal(uint64_t *s);

/* ------------------------------------------------------------ tokenizer */

/* Learn a SentencePiece-style BPE vocabulary of vocab_size tokens (fewer when
 * the text runs out of pairs seen twice) from `text` and write it as a
 * vocab-only GGUF ("llama" tokenizer model) at path. *n_vocab_out: the size. */
pl_status train_bpe_vocab(const char *text, size_t len, int vocab_size, const char *path, int *n_vocab_out);

/* ------------------------------------------------------------ checkpoints */

/* Write the model as a GGUF that pl_model_load reads: metadata and tokenizer
 * from the base file (or built from the hyper-parameters when trained from
 * scratch), matrices of type `mat_type` (F32, F16, BF16 or any type whose
 * row size fits), vectors F32. With LoRA the adapters are merged first. */
pl_status train_save_model(const train_model *m, const char *path, uint32_t mat_type);
/* Write only the LoRA adapters (llama.cpp's adapter GGUF layout). */
pl_status train_save_lora(const train_model *m, const char *path);
/* Write every param's gradient as an F32 tensor of the param's name (tests). */
pl_status train_save_grads(const train_model *m, const char *path);

#endif
