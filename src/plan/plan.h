/*
 * plan: how much memory a model and a context will hold, computed from the
 * GGUF header alone (no weight page is touched), and what this machine
 * allows (budget detection, device profiles). The engine allocates from the
 * same figures: pl_ctx_new carves its KV cache and scratch out of the layout
 * plan_ctx_layout computes, so the plan is the allocation, not an estimate of
 * it. What the engine does not allocate itself (the tokenizer's tables, the
 * runtime, file pages) is estimated here and checked against measurements by
 * tests/test_plan.c.
 *
 * Module order: core -> quant -> gguf -> kernels -> tokenizer -> sample ->
 * plan -> model. plan reads hyper-parameters from GGUF keys itself so that it
 * works on a header without loading the model.
 */
#ifndef PL_PLAN_H
#define PL_PLAN_H

#include "../core/alloc.h"
#include "../gguf/gguf.h"
#include "../kernels/kernels.h"

/* Alignment of each buffer carved out of a context's blocks. */
#define PLAN_ALIGN 64

/* The bytes of one layer's weights as a streaming window holds them: the
 * file span [start, end) of its tensors (image offsets), read as one range. */
typedef struct plan_layer {
    uint64_t start, end;   /* image offsets */
    uint64_t tensor_bytes; /* sum of its tensors' bytes */
} plan_layer;

/* Sizes a plan accepts (products of them stay far below 2^64). */
#define PLAN_MAX_DIM (1 << 20)
#define PLAN_MAX_FF (1 << 24)
#define PLAN_MAX_LAYERS (1 << 16)
#define PLAN_MAX_CTX (1 << 24)

/* Distinct matmul weight shapes (type, n_in): what the matmul scratch depends on. */
#define PLAN_MAX_SHAPES 32

/* The numbers a plan needs, from a GGUF header (plan_describe) or a manifest. */
typedef struct plan_model {
    char arch[32];
    int n_vocab, n_embd, n_layer, n_head, n_head_kv, head_dim, n_ff, n_ctx_train, n_rot;
    bool tied;                /* no output.weight: the embedding is the output matrix */
    uint64_t file_bytes;      /* the image */
    uint64_t header_bytes;    /* metadata + tensor infos (the data section's offset) */
    uint64_t weights_bytes;   /* all tensors */
    uint64_t embd_bytes;      /* token_embd.weight */
    uint64_t embd_row_bytes;  /* one token's row of it */
    uint64_t layers_bytes;    /* tensors of blk.* */
    uint64_t tok_bytes;       /* estimate of the tokenizer and metadata tables */
    uint64_t lora_bytes;      /* f32 copies of LoRA-merged matrices (accounted anonymous memory, lora.c) */
    uint64_t pack_bytes;      /* matrices the loader packs (kern_pack_pays) when plan_opts.repack */
    uint64_t pack_held;       /* their copies as the allocator holds them (mem_held of each) */
    int n_shapes;
    struct { uint32_t type; int64_t n_in; } shapes[PLAN_MAX_SHAPES];
    plan_layer *layers;       /* n_layer entries (NULL for a manifest-made description) */
    uint64_t slot_bytes;      /* largest layer span, page-rounded: one streaming slot */
} plan_model;

/* The seven matmul weights of a layer, as "blk.N.<name>" names them, in the
 * order model_layer_mat indexes them. */
#define PLAN_LAYER_MATS 7
extern const char *const plan_layer_mat_names[PLAN_LAYER_MATS];

/* Is tensor `name` a matrix the model packs when kern_pack_pays (the
 * matmul weights of the layers, and output.weight)? A tied model's
 * token_embd.weight is packed too (plan_describe). */
bool plan_packable_name(gguf_str name);

/* Read the numbers from a parsed header. Fails (PL_ERR_FORMAT/UNSUPPORTED)
 * when the file is not a model pocketllm can run. Free with plan_model_clear. */
pl_status plan_describe(const gguf_file *f, plan_model *out);
void plan_model_clear(plan_model *pm);
/* PL_ERR_FORMAT when a size passes the PLAN_MAX_* bounds. */
pl_status plan_check_sizes(const plan_model *pm, const char *what);
/* Heap bytes the GGUF descriptors and the tokenizer built from f will take. */
uint64_t plan_tok_bytes(const gguf_file *f);

/* Everything that decides a plan. */
typedef struct plan_opts {
    int n_ctx, n_batch, n_threads; /* resolved (nonzero) */
    int kv_type;                   /* pl_kv_type */
    bool logits_all;
    bool no_mmap, mlock, prefault;
    bool repack;                   /* pack the pack_bytes matrices (when mapped in full) */
    int stream;                    /* pl_stream_mode */
    uint64_t stream_window_bytes;  /* 0 = what the budget leaves */
    uint64_t copied_bytes;         /* image bytes a loader had to copy (unaligned offsets) */
} plan_opts;

/* Defaults resolved the way pl_ctx_new resolves them. */
void plan_opts_from_params(const plan_model *pm, const pl_model_params *mp, const pl_ctx_params *cp, plan_opts *o);
/* Whether a model loaded with these options packs its pack_bytes matrices:
 * only when every layer stays mapped (no streaming, copying or locking). */
bool plan_packs(const plan_model *pm, const plan_opts *o, bool stream);

/* Buffers of a context, carved from two blocks (KV, scratch) in this order. */
enum plan_buf {
    PB_X, PB_XN, PB_Q, PB_K, PB_V, PB_ATT_OUT, PB_ATT_SCORES, PB_GATE, PB_UP, PB_LOGITS,
    PB_ROPE_COS, PB_ROPE_SIN, PB_ACT, PB_COUNT
};

typedef struct plan_ctx_layout {
    uint64_t kv_row_bytes;   /* one position of one layer, K or V */
    uint64_t kv_bytes;       /* K and V of every layer and position */
    uint64_t off[PB_COUNT];  /* offsets into the scratch block */
    uint64_t size[PB_COUNT];
    uint64_t scratch_bytes;
    int logits_rows;
} plan_ctx_layout;

/* PL_ERR_UNSUPPORTED for a KV type the head size cannot hold. */
pl_status plan_ctx_layout_make(const plan_model *pm, const plan_opts *o, plan_ctx_layout *out);

/* The streaming window: which layers stay resident ("pinned"). */
typedef struct plan_stream {
    int n_pinned, n_slots;   /* n_pinned + (layers streamed through n_slots slots) */
    uint64_t window_bytes;   /* (n_pinned + n_slots) * slot_bytes */
    uint64_t bytes_per_step; /* bytes read per forward step */
} plan_stream;
/* Spread n_pinned of n_layer evenly: is layer il pinned? */
bool plan_layer_pinned(int il, int n_layer, int n_pinned);
/* The window that fits `window_bytes` (at least two slots). */
pl_status plan_stream_make(const plan_model *pm, uint64_t window_bytes, plan_stream *out);

/* Limits the plan is checked against (resolved from pl_budget_detect or params). */
typedef struct plan_limits {
    uint64_t rss;            /* resident bytes; 0 = unchecked */
    uint64_t as;             /* address-space headroom (RLIMIT_AS); 0 = unlimited */
    uint64_t data;           /* data headroom (RLIMIT_DATA); 0 = unlimited */
    uint64_t as_set, data_set; /* RLIMIT_AS / RLIMIT_DATA as set, for messages (0 = unlimited) */
    char source[48];
} plan_limits;
/* Resolve what a model's params ask for: explicit bytes, PL_BUDGET_NONE, or detection. */
pl_status plan_limits_resolve(uint64_t budget_bytes, plan_limits *out);

/* Fill a pl_plan for these options and limits (fit, max_ctx, over_bytes). */
pl_status plan_compute(const plan_model *pm, const plan_opts *o, const plan_limits *lim, pl_plan *out);
/* The parts that do not depend on a context: weights resident, tokenizer, overhead. */
uint64_t plan_fixed_bytes(const plan_model *pm, const plan_opts *o);
/* Runtime overhead (code, libc, thread stacks touched) for n threads. */
uint64_t plan_overhead_bytes(int n_threads);

/* Budget detection with its inputs made explicit for tests: `root` prefixes
 * /proc and /sys paths ("" for the real ones). */
pl_status plan_budget_detect_at(const char *root, pl_budget *out);
/* cgroup limit of this process under `root` (0 = none); exposed for tests. */
uint64_t plan_cgroup_limit(const char *root);

#endif
