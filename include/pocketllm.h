/*
 * pocketllm — run Llama-family language models where memory is the hard limit.
 *
 * This header is the whole public API. All types are opaque; every call that can
 * fail returns a pl_status (PL_OK == 0) and leaves a message for pl_last_error()
 * on the calling thread naming what failed, which file/tensor/field, and why.
 * Nothing in the library calls exit() or abort() on bad input.
 *
 * Ownership: objects made by pl_*_new / pl_*_load are freed by the matching
 * pl_*_free; pl_*_free(NULL) is a no-op. Borrowed pointers state their lifetime.
 * Dimension letters used in comments: T tokens, C channels (n_embd), V vocab.
 */
#ifndef POCKETLLM_H
#define POCKETLLM_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Status codes: append-only. */
typedef enum pl_status {
    PL_OK = 0,
    PL_ERR_INVALID_ARG = 1,  /* a caller passed something unusable */
    PL_ERR_IO = 2,           /* open/read/mmap failed */
    PL_ERR_FORMAT = 3,       /* a file is truncated, corrupt or inconsistent */
    PL_ERR_UNSUPPORTED = 4,  /* valid input we do not handle (arch, quant type...) */
    PL_ERR_NOMEM = 5,        /* the system refused an allocation */
    PL_ERR_BUDGET = 6,       /* the memory budget cannot hold this */
    PL_ERR_CANCELLED = 7,    /* stopped by a callback or pl_ctx_cancel() */
    PL_ERR_CONTEXT_FULL = 8, /* the KV cache has no room for more tokens */
    PL_ERR_INTERNAL = 9      /* a bug: please report with the message */
} pl_status;

typedef int32_t pl_token;

/* Message of the last failure on this thread; never NULL; valid until the next
 * failing call on this thread. */
const char *pl_last_error(void);
/* Short fixed name of a status ("PL_ERR_FORMAT"). */
const char *pl_status_name(pl_status s);
/* Library version string, e.g. "0.1.0". */
const char *pl_version(void);

/* ---------------------------------------------------------------- models */

typedef struct pl_model pl_model;

typedef struct pl_model_params {
    int vocab_only; /* load only the tokenizer (no weights needed in the file) */
    /* memory (see "memory: plan, budget, snapshots" below); zero = default */
    uint64_t budget_bytes; /* what the model and its contexts may hold: 0 = pl_budget_detect(),
                            * PL_BUDGET_NONE = unchecked */
    int no_mmap;           /* read the weights into (accounted) memory instead of mapping the file */
    int mlock;             /* lock the mapped weights in RAM; refused locks fail with a message */
    int advice;            /* pl_advice for the mapped weights (PL_ADVICE_NORMAL) */
    int stream;            /* pl_stream_mode: stream layers from storage when they do not fit */
    int verify;            /* check each file's SHA-256 (pl_model_source.sha256 or FILE.sha256) */
    int no_repack;         /* keep every matrix in the file's layout: by default, matrices whose kernel runs
                            * faster on row-interleaved blocks (Q4_0 on AVX2) are copied into that layout at
                            * load, when the weights are mapped in full (no stream, no_mmap or mlock); the
                            * copies replace their file pages in the resident set (pl_plan.weights_packed).
                            * Set it for a model that runs on the GPU, which uploads the file's rows */
} pl_model_params;

pl_model_params pl_model_default_params(void);
pl_status pl_model_load(const char *path, const pl_model_params *params, pl_model **out);
void pl_model_free(pl_model *model);
/* Merge a LoRA adapter GGUF (llama.cpp's layout, as `pocketllm train --lora`
 * writes it) into the model: W += scale * alpha/R * B A for each matrix it
 * names. Adapted matrices become f32 copies owned by the model (4 bytes per
 * weight). Call before creating contexts; several adapters add up. On error
 * the model is unchanged. */
pl_status pl_model_apply_lora(pl_model *model, const char *path, float scale);

int pl_model_n_vocab(const pl_model *model);
int pl_model_n_embd(const pl_model *model);
int pl_model_n_layer(const pl_model *model);
int pl_model_n_ctx_train(const pl_model *model);
/* Architecture name from the file ("llama", "qwen2", "qwen3"); valid while the model lives. */
const char *pl_model_arch(const pl_model *model);
pl_token pl_model_bos(const pl_model *model); /* -1 if none */
pl_token pl_model_eos(const pl_model *model); /* -1 if none */
/* Nonzero when the model's metadata asks for BOS at the start of a prompt. */
int pl_model_add_bos(const pl_model *model);
/* Nonzero for end-of-generation tokens (EOS, EOT, <|im_end|>, ...). */
int pl_model_is_eog(const pl_model *model, pl_token tok);

/* ------------------------------------------------------------- tokenizer */

/* Tokenize `len` bytes of UTF-8 text into `out` (capacity `cap`). *n_out gets the
 * token count; if it exceeds cap the call returns PL_ERR_INVALID_ARG and *n_out
 * says how many are needed. parse_special: text like "<s>" becomes the special
 * token instead of being tokenized as plain text. */
pl_status pl_tokenize(const pl_model *model, const char *text, size_t len, int add_bos,
                      int parse_special, pl_token *out, int cap, int *n_out);
/* Bytes of one token's text (byte-fallback tokens give their raw byte; a leading
 * space of SentencePiece pieces is included). Returns the byte count, which may
 * exceed cap (then nothing useful was written), or -1 for an invalid token. */
int pl_token_to_piece(const pl_model *model, pl_token tok, char *buf, int cap);
/* Detokenize a sequence: the inverse of pl_tokenize for text without specials.
 * Returns bytes needed (excluding the NUL); writes a NUL-terminated string when
 * it fits in cap. The leading space SentencePiece adds after BOS is removed. */
int pl_detokenize(const pl_model *model, const pl_token *toks, int n, char *buf, int cap);

/* ------------------------------------------------------------- contexts */

typedef struct pl_ctx pl_ctx;

typedef struct pl_ctx_params {
    int n_ctx;      /* tokens the KV cache holds; 0 = min(model's n_ctx_train, 4096) */
    int n_batch;    /* max tokens evaluated per internal step; 0 = 512 */
    int n_threads;  /* 0 = number of online CPUs */
    int logits_all; /* keep logits for every evaluated position, not only the last */
    /* memory (see "memory: plan, budget, snapshots" below); zero = default */
    int kv_type;    /* pl_kv_type of the KV cache (PL_KV_F16) */
    int no_prefault; /* leave KV/scratch pages untouched until used (RSS then grows while generating) */
    uint64_t stream_window_bytes; /* streaming models: bytes of resident layers; 0 = what the budget leaves */
    /* GPU offload (src/gpu); zero = everything on the CPU */
    int device;       /* pl_device: PL_DEVICE_CUDA needs a build made with `make GPU=cuda` */
    int n_gpu_layers; /* CUDA: 0 = every layer (refused with PL_ERR_BUDGET when they do not fit), N = the
                       * first N layers (the rest on the CPU), -1 = as many as fit */
} pl_ctx_params;

/* Where a context runs (pl_ctx_params.device). */
typedef enum pl_device { PL_DEVICE_CPU = 0, PL_DEVICE_CUDA = 1 } pl_device;

pl_ctx_params pl_ctx_default_params(void);
pl_status pl_ctx_new(pl_model *model, const pl_ctx_params *params, pl_ctx **out);
void pl_ctx_free(pl_ctx *ctx);

/* Evaluate n tokens as one batch appended at the current position. */
pl_status pl_ctx_decode(pl_ctx *ctx, const pl_token *toks, int n);
/* The same, computing logits only for tokens [logits_from, n) of this call
 * (needs logits_all; other rows are NULL). Scoring tools that need the second
 * half of a window skip the output projection for the first half. */
pl_status pl_ctx_decode_from(pl_ctx *ctx, const pl_token *toks, int n, int logits_from);
/* Logits (V floats) of the i-th token of the last decode call; i = -1 is the
 * last one. Without logits_all only the last is kept. Valid until the next
 * decode/reset; NULL when not available. */
const float *pl_ctx_logits(const pl_ctx *ctx, int i);
/* Tokens currently in the KV cache. */
int pl_ctx_pos(const pl_ctx *ctx);
int pl_ctx_n_ctx(const pl_ctx *ctx);
/* Forget everything after the first n_keep tokens (0 = empty the cache). */
pl_status pl_ctx_truncate(pl_ctx *ctx, int n_keep);
/* Ask a running decode or completion to stop; safe from any thread. It returns
 * PL_ERR_CANCELLED; the flag clears when the next call starts. */
void pl_ctx_cancel(pl_ctx *ctx);

/* ------------------------------------------------------------- sampling */

typedef struct pl_sampler pl_sampler;

typedef struct pl_sampler_params {
    float temp;           /* <= 0: greedy (argmax) */
    int top_k;            /* <= 0: off */
    float top_p;          /* >= 1: off */
    float min_p;          /* <= 0: off */
    float repeat_penalty; /* 1: off */
    int repeat_last_n;    /* how many recent tokens the penalty looks at */
    uint64_t seed;        /* same seed, same logits -> same tokens */
} pl_sampler_params;

pl_sampler_params pl_sampler_default_params(void);
pl_status pl_sampler_new(const pl_sampler_params *params, pl_sampler **out);
void pl_sampler_free(pl_sampler *s);
/* Pick a token from V logits (not modified). */
pl_token pl_sampler_sample(pl_sampler *s, const float *logits, int n_vocab);
/* Tell the sampler a token became part of the sequence (for repetition penalty). */
void pl_sampler_accept(pl_sampler *s, pl_token tok);
void pl_sampler_reset(pl_sampler *s);

/* ----------------------------------------------------------- completion */

/* Called once per generated token with its text bytes (may be empty when a
 * multi-byte character is split across tokens; the bytes come with a later
 * token). Return nonzero to stop generation. */
typedef int (*pl_on_token)(void *user, pl_token tok, const char *text, size_t len);

typedef struct pl_complete_params {
    const char *prompt;        /* UTF-8; may be NULL when prompt_tokens is given */
    const pl_token *prompt_tokens;
    int n_prompt_tokens;
    int n_predict;             /* max tokens to generate; < 0 = until the context is full */
    int add_bos;               /* -1 = as the model says, 0 no, 1 yes */
    int parse_special;
    int ignore_eos;            /* keep going past end-of-generation tokens */
    pl_sampler_params sampling;
} pl_complete_params;

typedef struct pl_timings {
    int n_prompt;      /* prompt tokens evaluated */
    int n_gen;         /* tokens generated */
    double prompt_ms;  /* time evaluating the prompt */
    double gen_ms;     /* time generating */
} pl_timings;

pl_complete_params pl_complete_default_params(void);
/* Evaluate the prompt (appended to what the context holds) and generate,
 * streaming each token to on_token. Stops at EOG, n_predict, a full context,
 * a nonzero return from on_token (PL_OK), or pl_ctx_cancel (PL_ERR_CANCELLED). */
pl_status pl_complete(pl_ctx *ctx, const pl_complete_params *params, pl_on_token on_token,
                      void *user, pl_timings *timings);

/* ------------------------------------------------- model info and KV state
 * (src/chat/model_ext.c) */

/* A string from the model's GGUF metadata (e.g. "tokenizer.chat_template",
 * "general.name"), copied NUL-terminated into buf when it fits. Returns its
 * length in bytes (which may exceed cap - 1: then buf holds a truncated copy),
 * or -1 when the key is absent or not a string. */
int pl_model_meta_str(const pl_model *model, const char *key, char *buf, size_t cap);
/* The model a context was made for. */
const pl_model *pl_ctx_model(const pl_ctx *ctx);
/* Bytes of the model file (mapped, not copied). */
uint64_t pl_model_file_bytes(const pl_model *model);
/* Bytes a context allocates (KV cache, scratch, logits): what one more
 * conversation costs on top of the model. */
uint64_t pl_ctx_memory_bytes(const pl_ctx *ctx);
/* Write the KV cache of the first pl_ctx_pos() positions, with a fingerprint
 * of the model, to fp at its current offset. */
pl_status pl_ctx_state_write(const pl_ctx *ctx, FILE *fp);
/* Read a block written by pl_ctx_state_write (same model file, positions that
 * fit this context) and make it the cache; the position becomes the saved one.
 * Logits are not saved: decode at least one token before sampling. */
pl_status pl_ctx_state_read(pl_ctx *ctx, FILE *fp);

/* ------------------------------------------------------------------ chat
 * (src/chat/): chat templates and conversations that reuse the KV cache. */

typedef struct pl_chat_msg {
    const char *role;    /* "system", "user" or "assistant" */
    const char *content; /* UTF-8 */
} pl_chat_msg;

/* Built-in templates, in the order detection tries them: the i-th name
 * ("chatml", "llama2-sys-strip", "llama2-sys-bos", "llama2-sys", "llama2",
 * "phi3", "zephyr", "vicuna-orca", "vicuna", "llama3", "generic"), NULL past
 * the end. */
const char *pl_chat_template_name(int i);
/* The built-in template a Jinja chat template (tokenizer.chat_template)
 * corresponds to, by the markers it contains; NULL when none does. */
const char *pl_chat_template_detect(const char *jinja);
/* The template for a model: its tokenizer.chat_template when recognised, else
 * one whose markers are single special tokens of its vocabulary, else
 * "generic". Never NULL. */
const char *pl_chat_template_for_model(const pl_model *model);
/* Render messages as prompt text (*out is malloc'd, NUL-terminated; free()).
 * add_generation_prompt appends the text that opens the assistant's reply. */
pl_status pl_chat_template_apply(const char *name, const pl_chat_msg *msgs, int n, int add_generation_prompt,
                                 char **out);
/* Text that ends a reply when a model writes it out (a template's end-of-turn
 * markers): a NULL-terminated list of static strings, NULL for an unknown name. */
const char *const *pl_chat_template_stops(const char *name);

typedef struct pl_chat pl_chat;

/* What happens when a conversation no longer fits the context. */
typedef enum pl_chat_overflow {
    PL_CHAT_OVERFLOW_REFUSE = 0,      /* fail with PL_ERR_CONTEXT_FULL */
    PL_CHAT_OVERFLOW_DROP_OLDEST = 1, /* leave out the oldest turns, keeping system messages */
    PL_CHAT_OVERFLOW_SHIFT = 2        /* the same turns left out, but the cached rest is moved down (keys
                                       * re-roped) instead of evaluated again; the kept turns still carry
                                       * what the dropped ones contributed to their cached states */
} pl_chat_overflow;

typedef struct pl_chat_params {
    const char *template_name;  /* NULL = pl_chat_template_for_model() */
    pl_chat_overflow overflow;
    int n_reserve;              /* tokens that must stay free for a reply; 0 = min(128, n_ctx / 4) */
} pl_chat_params;

typedef struct pl_chat_gen_params {
    int n_predict;               /* most reply tokens; < 0 = until the context is full */
    pl_sampler_params sampling;
    const char *const *stop;     /* extra stop strings (the template's own always apply) */
    int n_stop;
    int ignore_eos;              /* keep going past end-of-generation tokens */
} pl_chat_gen_params;

typedef enum pl_chat_finish {
    PL_CHAT_FINISH_STOP = 0,     /* end-of-generation token or a stop string */
    PL_CHAT_FINISH_LENGTH = 1,   /* n_predict reached or the context is full */
    PL_CHAT_FINISH_CANCELLED = 2 /* the callback returned nonzero or pl_ctx_cancel() */
} pl_chat_finish;

typedef struct pl_chat_result {
    char *text;            /* the reply, NUL-terminated, stop string removed (pl_chat_result_free) */
    size_t len;
    pl_chat_finish finish;
    int n_prompt;          /* prompt tokens in the context for this reply */
    int n_reused;          /* of those, kept from the KV cache (not evaluated again) */
    int n_gen;             /* tokens generated */
    int n_dropped;         /* messages left out by PL_CHAT_OVERFLOW_DROP_OLDEST or _SHIFT */
    pl_timings timings;    /* n_prompt there counts the evaluated tokens only */
} pl_chat_result;

pl_chat_params pl_chat_default_params(void);
pl_chat_gen_params pl_chat_default_gen_params(void);
/* A conversation on ctx (borrowed; the chat assumes nobody else decodes into
 * it, and truncates it as needed). */
pl_status pl_chat_new(pl_ctx *ctx, const pl_chat_params *params, pl_chat **out);
void pl_chat_free(pl_chat *chat);
/* Name of the template in use (static). */
const char *pl_chat_template(const pl_chat *chat);
/* Generate the assistant's reply to a conversation: msgs is the whole history
 * (normally ending with a user message; ending with an assistant message, the
 * reply continues it). The longest prefix of the rendered prompt that the KV
 * cache already holds is kept; only the rest is evaluated. on_token streams
 * reply text (stop strings held back) and may return nonzero to stop. A
 * cancelled or stopped reply is PL_OK with finish = PL_CHAT_FINISH_CANCELLED.
 * res is filled on PL_OK; release it with pl_chat_result_free. */
pl_status pl_chat_complete(pl_chat *chat, const pl_chat_msg *msgs, int n, const pl_chat_gen_params *gen,
                           pl_on_token on_token, void *user, pl_chat_result *res);
/* The same for a raw prompt (no template, no template stop strings). */
pl_status pl_chat_complete_text(pl_chat *chat, const char *prompt, const pl_chat_gen_params *gen,
                                pl_on_token on_token, void *user, pl_chat_result *res);
void pl_chat_result_free(pl_chat_result *res);
/* Forget the cached conversation (the next reply evaluates everything). */
void pl_chat_reset(pl_chat *chat);
/* Tokens the KV cache holds for this chat. */
int pl_chat_n_cached(const pl_chat *chat);
/* Save messages (may be n = 0) and the KV state to a file; load them back
 * (*msgs is one malloc'd block holding the strings too: free(*msgs)). A loaded
 * state is reused by the next pl_chat_complete whose prompt starts the same. */
pl_status pl_chat_save(const pl_chat *chat, const pl_chat_msg *msgs, int n, const char *path);
pl_status pl_chat_load(pl_chat *chat, const char *path, pl_chat_msg **msgs, int *n);

/* -------------------------------------------- memory: plan, budget, snapshots
 * (src/plan/, src/core/alloc.c). Every byte the engine holds for a model or a
 * context is charged against the model's budget; a context is made only when
 * its plan fits, and KV cache and scratch are allocated (and touched) up front,
 * so generating never grows memory. Exceeding is PL_ERR_BUDGET, never an OOM. */

#define PL_BUDGET_NONE UINT64_MAX /* pl_model_params.budget_bytes: do not check */

/* How the kernel should treat the mapped weights (madvise). */
typedef enum pl_advice {
    PL_ADVICE_NORMAL = 0,
    PL_ADVICE_WILLNEED = 1,   /* read everything ahead now */
    PL_ADVICE_RANDOM = 2,     /* no readahead: for budgets that cannot hold the file */
    PL_ADVICE_SEQUENTIAL = 3  /* aggressive readahead, pages dropped behind */
} pl_advice;

typedef enum pl_stream_mode {
    PL_STREAM_OFF = 0,  /* weights must fit the budget (else PL_ERR_BUDGET) */
    PL_STREAM_ON = 1,   /* keep a window of layers resident and read the rest each token */
    PL_STREAM_AUTO = 2  /* stream only when the weights do not fit the budget */
} pl_stream_mode;

typedef enum pl_kv_type { PL_KV_F16 = 0, PL_KV_Q8_0 = 1 } pl_kv_type;

/* Parse a size: "3.5G", "512M", "2GiB", "800k", "1e9", "1500000" (K/M/G/T
 * and KiB.. are powers of 1024; KB/MB/GB/TB powers of 1000). */
pl_status pl_parse_bytes(const char *text, uint64_t *out);

/* What limits memory here. bytes is the smallest of the limits found, each
 * taken as the room it leaves this process (0 = unknown / unlimited). */
typedef struct pl_budget {
    uint64_t bytes;           /* the effective budget */
    uint64_t phys_bytes;      /* physical RAM (MemTotal) */
    uint64_t avail_bytes;     /* available now (MemAvailable); information only */
    uint64_t cgroup_bytes;    /* cgroup v2 memory.max or v1 memory.limit_in_bytes, 0 = none */
    uint64_t rlimit_as_bytes; /* RLIMIT_AS minus the address space already used, 0 = unlimited */
    uint64_t rlimit_data_bytes; /* RLIMIT_DATA minus the data already used, 0 = unlimited */
    uint64_t override_bytes;  /* the environment's PL_BUDGET, 0 = not set */
    char source[48];          /* which set bytes: "ram", "cgroup", "rlimit_as", "rlimit_data", "PL_BUDGET" */
} pl_budget;
pl_status pl_budget_detect(pl_budget *out);

/* Named devices (data in src/plan/profiles.c): what an app may hold there. */
typedef struct pl_device_profile {
    const char *name;     /* "iphone-4gb", "ipad-8gb", ... */
    uint64_t ram_bytes;   /* the device's RAM */
    uint64_t budget_bytes; /* working set an app can count on */
    const char *note;     /* where the figure comes from */
} pl_device_profile;
/* The i-th profile, NULL past the end. */
const pl_device_profile *pl_device_profile_at(int i);
/* By name, NULL when unknown. */
const pl_device_profile *pl_device_profile_find(const char *name);

typedef enum pl_fit {
    PL_FIT_YES = 0,         /* the requested context fits */
    PL_FIT_SMALLER_CTX = 1, /* only a smaller context fits: max_ctx */
    PL_FIT_NO = 2           /* nothing fits: over_bytes more are needed at the smallest context */
} pl_fit;

/* A memory plan: what loading the model and making one context will hold at
 * peak, computed from the GGUF header alone (no weight page touched). */
typedef struct pl_plan {
    int64_t file_bytes;        /* the model file(s) */
    int64_t weights_bytes;     /* tensor bytes the forward pass reads */
    int64_t weights_resident;  /* of the file, resident while generating (mapped or copied) */
    int64_t weights_mapped;    /* of that, file-backed (the kernel may evict it) */
    int64_t weights_copied;    /* of that, in anonymous memory (no_mmap, unaligned or streamed window) */
    int64_t weights_locked;    /* of that, mlock'd */
    int64_t weights_packed;    /* of the copied: row-interleaved copies of matrices for faster kernels
                                * (their file pages are dropped once copied; pl_model_params.no_repack) */
    int64_t kv_bytes;          /* KV cache */
    int64_t scratch_bytes;     /* activations, logits, matmul scratch, rope tables */
    int64_t tokenizer_bytes;   /* tokenizer and metadata tables */
    int64_t overhead_bytes;    /* runtime: code, libc, thread stacks */
    int64_t total_bytes;       /* the peak resident set */
    int64_t address_bytes;     /* virtual address space needed (what RLIMIT_AS limits) */
    int64_t budget_bytes;      /* what it was checked against (0 = unchecked) */
    int64_t over_bytes;        /* total - budget when positive */
    int64_t kv_bytes_per_token;
    int64_t stream_bytes_per_token; /* streaming: bytes read from storage per evaluated step */
    int64_t stream_window_bytes;    /* streaming: the resident layers and slots (part of weights_copied) */
    int n_ctx, n_batch, n_threads, kv_type;
    int n_ctx_train;
    int max_ctx;               /* largest context (<= n_ctx_train) that fits the budget; 0 = none */
    int fit;                   /* pl_fit */
    int stream;                /* 1 when the plan streams layers */
    int n_layer, n_layer_resident, n_stream_slots; /* streaming window: pinned layers + slots */
    char budget_source[48];
    /* when it does not fit: the limit behind over_bytes (over = need - room) */
    int limit;                 /* pl_limit */
    int64_t limit_need_bytes;  /* what the plan needs of it: total_bytes, the data segment or the address space */
    int64_t limit_room_bytes;  /* what it leaves this process (for the budget: budget_bytes) */
    int64_t limit_set_bytes;   /* RLIMIT_DATA / RLIMIT_AS as set (0 for the budget) */
} pl_plan;

/* Which limit a plan that does not fit passes. */
typedef enum pl_limit {
    PL_LIMIT_NONE = 0,   /* it fits */
    PL_LIMIT_BUDGET = 1, /* the resident budget (RAM, cgroup, PL_BUDGET or given) */
    PL_LIMIT_DATA = 2,   /* RLIMIT_DATA: heap, anonymous mappings and thread stacks */
    PL_LIMIT_AS = 3      /* RLIMIT_AS: the address space, the model's mapping included */
} pl_limit;

/* The binding limit in words for messages, e.g. "the budget is 300.0 MiB
 * (given)" or "RLIMIT_DATA is 512.0 MiB and leaves 5.2 MiB for the 13.0 MiB
 * of data segment it needs" ("" when the plan fits). Returns buf. */
const char *pl_plan_limit_text(const pl_plan *p, char *buf, size_t cap);

/* Plan for a file (params may be NULL = defaults). Fails only when the file
 * cannot be read or is not a model; a plan that does not fit is PL_OK with
 * fit = PL_FIT_NO. */
pl_status pl_plan_file(const char *path, const pl_model_params *mp, const pl_ctx_params *cp, pl_plan *out);
/* Plan for one more context of a loaded model. */
pl_status pl_plan_model(const pl_model *model, const pl_ctx_params *cp, pl_plan *out);

/* Memory figures as in MLX's get_active/peak_memory: process-wide, all
 * models and contexts. Byte counts unless named otherwise. */
typedef struct pl_memory_stats {
    int64_t weights_mapped;   /* bytes of model files mapped */
    int64_t weights_resident; /* of the weights, in this process's RAM now (mapped pages present + copies) */
    int64_t weights_copied;   /* weights held in anonymous memory */
    int64_t weights_locked;   /* mlock'd mappings */
    int64_t kv_bytes;
    int64_t scratch_bytes;
    int64_t other_bytes;      /* tokenizer, tables, descriptors */
    int64_t cache_bytes;      /* freed buffers kept for reuse (pl_memory_set_cache_limit) */
    int64_t active_bytes;     /* all anonymous memory the engine holds now */
    int64_t peak_bytes;       /* highest active_bytes (since start or pl_memory_reset_peak) */
    int64_t rss_bytes;        /* the process's resident set, from /proc (0 when unknown) */
    int64_t rss_peak_bytes;   /* its high-water mark */
    int64_t minor_faults;     /* page faults, counts */
    int64_t major_faults;
    int64_t stream_read_bytes; /* bytes streaming windows read from storage */
} pl_memory_stats;
void pl_memory_snapshot(pl_memory_stats *out);
/* d = after - before, field by field (a delta may be negative). */
void pl_memory_delta(const pl_memory_stats *before, const pl_memory_stats *after, pl_memory_stats *d);
void pl_memory_reset_peak(void);
/* Keep up to `bytes` of freed KV/scratch buffers for reuse by the next
 * context of the same shape (0 = off, the default); returns the old limit. */
uint64_t pl_memory_set_cache_limit(uint64_t bytes);
void pl_memory_clear_cache(void);

/* Loading from anywhere (src/model/model_source.c, src/gguf/gguf_map_*.c).
 * pl_model_load also opens llama.cpp gguf-split sets (give any
 * "<prefix>-0000K-of-0000N.gguf") and raw chunks ("<file>.part-0000K-of-0000N",
 * as `pocketllm split --raw` writes them) as one model. */

/* A GGUF inside an open file (an asset container, a sandbox's descriptor):
 * `size` bytes at `offset` (size 0 = to the end). The descriptor stays the
 * caller's (it is duplicated). Tensors map zero-copy when offset is a
 * multiple of 4 (as zip-aligned assets are); otherwise the image is copied
 * into (accounted) memory. */
pl_status pl_model_load_fd(int fd, uint64_t offset, uint64_t size, const pl_model_params *params, pl_model **out);

/* One piece of a model: a file (path, or fd >= 0 with path NULL) range. */
typedef struct pl_model_source {
    const char *path;   /* opened and closed by the loader; NULL when fd is given */
    int fd;             /* -1 when path is given */
    uint64_t offset;    /* where the piece starts in the file */
    uint64_t size;      /* bytes; 0 = to the end of the file */
    const char *sha256; /* expected SHA-256 (64 hex digits) checked when params->verify; may be NULL */
} pl_model_source;
/* A model whose bytes are the concatenation of n pieces (raw chunks cut
 * anywhere, e.g. below a 2 GB file limit). Pieces whose offsets line up
 * with pages are mapped zero-copy into one address range. */
pl_status pl_model_load_sources(const pl_model_source *src, int n, const pl_model_params *params, pl_model **out);
/* SHA-256 of `size` bytes at `offset` of a file (size 0 = to the end), as 64
 * lowercase hex digits and a NUL. */
pl_status pl_sha256_file(const char *path, uint64_t offset, uint64_t size, char hex[65]);

/* Per-device variants (src/plan/manifest*.c): a JSON manifest lists the
 * variants of one model (quant type, files with sizes and SHA-256, the
 * numbers a memory plan needs); picking plans each one against a budget
 * without reading any model file, and chooses the best quality that fits
 * with its largest context. */
typedef struct pl_manifest pl_manifest;
/* Read a manifest; file paths are taken relative to its folder. */
pl_status pl_manifest_load(const char *path, pl_manifest **out);
/* The same from text (base_dir: the folder paths are relative to; may be NULL). */
pl_status pl_manifest_parse(const char *json, size_t len, const char *base_dir, pl_manifest **out);
void pl_manifest_free(pl_manifest *m);
int pl_manifest_n_variants(const pl_manifest *m);

typedef struct pl_variant_info {
    const char *name;          /* "q4_k_m" (valid while the manifest lives) */
    const char *quant;         /* "Q4_K_M" */
    double bits_per_weight;    /* the quality order: more is better */
    int64_t n_params;
    int64_t bytes;             /* all its files */
    int64_t min_memory;        /* plan total with a 512-token context (or the trained one if shorter) */
    const char *memory_class;  /* smallest device profile that holds min_memory ("" if none) */
    int n_files;
    int n_ctx_train;
} pl_variant_info;
pl_status pl_manifest_variant(const pl_manifest *m, int i, pl_variant_info *out);
/* File j of variant i: its path (relative ones resolved against the manifest's
 * folder), bytes, and SHA-256 (NULL when not listed). NULL past the end. */
const char *pl_manifest_file(const pl_manifest *m, int i, int j, int64_t *bytes, const char **sha256);

typedef struct pl_pick_params {
    uint64_t budget_bytes; /* 0 = pl_budget_detect() (unless profile is set) */
    const char *profile;   /* a device profile's budget instead (pl_device_profile_find) */
    int min_ctx;           /* a variant must fit at least this context; 0 = 512 (or n_ctx_train if less) */
    int max_ctx;           /* do not plan beyond this; 0 = n_ctx_train */
    int n_threads;         /* 0 = 4 */
    int kv_type;           /* pl_kv_type */
} pl_pick_params;

typedef struct pl_pick {
    int variant;           /* index into the manifest */
    int n_ctx;             /* the largest context that fits (<= max_ctx) */
    pl_plan plan;          /* the plan at that context */
} pl_pick;

pl_pick_params pl_pick_default_params(void);
/* PL_ERR_BUDGET (naming what the smallest variant needs) when none fits. */
pl_status pl_manifest_pick(const pl_manifest *m, const pl_pick_params *params, pl_pick *out);
/* A manifest (malloc'd JSON text, free()) for n model files; any piece of a
 * split set stands for the set. base_dir: where the manifest will live
 * (paths inside it are written relative to it); may be NULL. */
pl_status pl_manifest_pack(const char *const *paths, int n, const char *model_name, const char *base_dir,
                           char **json_out);

#ifdef __cplusplus
}
#endif
#endif /* POCKETLLM_H */
