/*
 * gpu: the CUDA backend as the engine sees it. A context made with
 * pl_ctx_params.device = PL_DEVICE_CUDA gets a gpu_ctx (ctx->gpu) holding the
 * weights of its first n_gpu_layers layers (all of them, plus the embedding,
 * output and logits, for a full offload), their KV cache and the activations,
 * all in device memory planned up front; model_forward hands each step to
 * gpu_forward_step, which runs the GPU layers and tells the CPU forward pass
 * where to continue. Built without CUDA, creating one fails with
 * PL_ERR_UNSUPPORTED (gpu_none.c) and nothing else changes.
 * gpu sits beside model: it reads model.h's structures, and model's api.c and
 * forward.c call the three hooks below (ctx->gpu is NULL on the CPU path).
 */
#ifndef PL_GPU_H
#define PL_GPU_H

#include "../model/model.h"
#include "gpu_dev.h"

/* What a context puts on the GPU, in bytes. */
typedef struct gpu_plan {
    int n_layers;           /* the first n_layers layers run on the GPU */
    int full;               /* all of them, with embedding, output and logits */
    uint64_t weight_bytes;  /* matrices (GPU layout) and norm/bias vectors */
    uint64_t kv_bytes;      /* f16 K and V of the GPU layers */
    uint64_t scratch_bytes; /* activations, logits, rope tables, token ids */
    uint64_t total_bytes;
    uint64_t avail_bytes;   /* what the device offered */
    uint64_t step_bytes;    /* weight bytes one single-token step reads (layers, output) */
} gpu_plan;

/* Plan a context of n_ctx positions, steps of n_batch tokens and logits_rows
 * kept logits rows on a device described by info (free memory, shared-memory
 * limit). want: 0 = every layer (PL_ERR_BUDGET when that does not fit, the
 * message saying how many would); N > 0 = the first N layers; -1 = as many as
 * fit. PL_ERR_UNSUPPORTED names a tensor whose type or shape the kernels do
 * not handle. Headroom for the CUDA runtime is kept out of info->mem_free. */
pl_status gpu_plan_ctx(const pl_model *m, int n_ctx, int n_batch, int logits_rows, int want, const gdev_info *info,
                       gpu_plan *out);

/* Make ctx->gpu for device (PL_DEVICE_CUDA) with n_gpu_layers as `want`
 * above; uploads the weights. ctx's buffers (rope tables, logits) must exist. */
pl_status gpu_ctx_new(pl_ctx *ctx, int device, int n_gpu_layers);
void gpu_ctx_free(pl_ctx *ctx);
/* The plan ctx->gpu was made with (NULL for CPU contexts). */
const gpu_plan *gpu_ctx_plan(const pl_ctx *ctx);
/* Run one step of T tokens at ctx->pos on the GPU: layers [0, *next_layer)
 * leave their output in ctx->x for the CPU to continue from *next_layer; a
 * full offload also writes the logits of tokens [first_logit, T) to
 * ctx->logits from row logit_row and sets *next_layer past the last layer. */
pl_status gpu_forward_step(pl_ctx *ctx, const pl_token *toks, int T, int first_logit, int logit_row, int *next_layer);

#endif
