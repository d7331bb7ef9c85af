/*
 * quantize_model: convert a GGUF model file to another file type (Q4_K_M,
 * Q8_0, F16, ...) tensor by tensor.
 *
 * The input is mapped (gguf_open), the output written through the GGUF
 * writer's streaming mode into a temporary file beside the destination that
 * is renamed over it only when complete, so a failure leaves no partial file.
 * Memory beyond the mapping: one tensor's quantized output plus a small
 * float scratch per thread (rows are converted a few at a time), and the
 * input pages of each finished tensor are handed back to the kernel.
 * Lives in model/ because it reads architecture metadata and uses the gguf
 * and quant modules (quant itself may not include gguf).
 */
#ifndef PL_QUANTIZE_MODEL_H
#define PL_QUANTIZE_MODEL_H

#include "../core/core.h"
#include "../quant/quant_recipe.h"

#include <stdbool.h>
#include <stdint.h>

/* Reported after each tensor is written. */
typedef struct quant_progress {
    int index, count;        /* tensors written so far (1-based), and in all */
    const char *name;        /* this tensor; valid during the call */
    quant_type from, to;     /* its type in the input and in the output */
    bool fell_back;          /* the recipe's type did not fit its rows ... */
    quant_type wanted;       /* ... and this is the type it wanted */
    uint64_t bytes_in, bytes_out;   /* this tensor's data */
    uint64_t done_in, total_in;     /* input data bytes handled so far, and in all */
    uint64_t done_out;              /* output data bytes written so far */
    double elapsed_ms;              /* since the call started */
} quant_progress;

/* Return nonzero to stop: quant_model_file then fails with PL_ERR_CANCELLED. */
typedef int (*quant_progress_fn)(void *user, const quant_progress *p);

/* Which quantizer writes the blocks. */
typedef enum quant_method {
    QM_AUTO,      /* per type, the one that measured better (quant_search_preferred) */
    QM_REFERENCE, /* reference quantizers: llama-quantize's exact bytes */
    QM_SEARCH,    /* scale search (quant_search.h) wherever the type has one */
} quant_method;

typedef struct quant_model_params {
    const quant_recipe *recipe; /* required: quant_recipe_find("Q4_K_M") etc. */
    int n_threads;              /* 0 = all online CPUs */
    bool pure;                  /* base type for every quantizable tensor (no mixture, output too) */
    bool allow_requantize;      /* accept already-quantized input tensors (quality suffers) */
    quant_method method;
    quant_progress_fn progress; /* may be NULL */
    void *progress_user;
} quant_model_params;

quant_model_params quant_model_default_params(void);

/* Quantize in_path into out_path (replaced when it exists). */
pl_status quant_model_file(const char *in_path, const char *out_path, const quant_model_params *params);

#endif
