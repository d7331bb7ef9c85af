/*
 * Random llama-family GGUF models for tests and benchmarks that need a model
 * of a given shape and tensor types rather than a trained one (test_gpu,
 * bench_gpu, `pocketllm make-random` and through it bench/run_cpu.sh and
 * bench_stream). The one writer of such files. Weights are uniform random,
 * scaled by 1/sqrt(fan-in) so that activations stay O(1), and quantized with
 * the quant module's reference quantizers; with `raw`, Q4_0 blocks are drawn
 * directly (random nibbles and scales: a 1B model is written in seconds). The
 * vocabulary is copied from another GGUF (vocab_from: every tokenizer.* key,
 * and its size is V) or SentencePiece style: <unk>, <s>, </s>, the 256 byte
 * tokens, then "t<i>" pieces (V >= 259). Tensors are generated, quantized and
 * written a block of rows at a time, so memory stays at a few rows whatever
 * the model's size. The same spec and seed always give the same bytes.
 */
#ifndef PL_RANDOM_MODEL_H
#define PL_RANDOM_MODEL_H

#include "../core/core.h"

#include <stdint.h>

typedef struct rm_spec {
    const char *arch; /* "llama", "qwen2" (q/k/v biases), "qwen3" (q/k norms) */
    int C, L, H, G, D, F, V; /* V is ignored (taken from the file) with vocab_from */
    uint32_t t_qko;   /* attn_q, attn_k, attn_output */
    uint32_t t_v;     /* attn_v */
    uint32_t t_gu;    /* ffn_gate, ffn_up */
    uint32_t t_down;  /* ffn_down */
    uint32_t t_embd;
    int untied;       /* write output.weight (of t_out) instead of tying it to the embedding */
    uint32_t t_out;
    int raw;          /* draw Q4_0 blocks directly instead of quantizing */
    uint64_t seed;
    int ctx;                /* context_length metadata; 0: 4096 */
    const char *vocab_from; /* NULL: the synthetic vocabulary of V tokens */
} rm_spec;

/* What was written, for the caller's summary line. */
typedef struct rm_written {
    int64_t n_vocab;
    uint64_t tensor_bytes; /* tensor data without alignment padding */
} rm_written;

static inline uint64_t rm_next(uint64_t *s) {
    *s = *s * 6364136223846793005ull + 1442695040888963407ull;
    return *s >> 33;
}
static inline float rm_unif(uint64_t *s) { return (float)rm_next(s) / (float)(1ull << 31) * 2.0f - 1.0f; }

/* Write the model to path; `out` may be NULL. PL_ERR_INVALID_ARG for a shape
 * or type that cannot be written (named), PL_ERR_FORMAT for a vocab_from file
 * without tokens, PL_ERR_IO / PL_ERR_NOMEM otherwise; no partial file is left. */
pl_status model_write_random(const rm_spec *s, const char *path, rm_written *out);

#endif
