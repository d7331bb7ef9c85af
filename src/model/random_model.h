/*
 * Random llama-family GGUF models for tests and benchmarks that need a model
 * of a given shape and tensor types rather than a trained one (test_gpu,
 * bench_gpu, `pocketllm make-random`, the CPU benchmark's 1B files). Weights
 * are uniform random, scaled by 1/sqrt(fan-in) so that activations stay O(1),
 * and quantized with the quant module's reference quantizers; with `raw`, Q4_0
 * blocks are drawn directly (random nibbles and scales: a 1B model is written
 * in seconds). The vocabulary is SentencePiece style: <unk>, <s>, </s>, the
 * 256 byte tokens, then "t<i>" pieces (V >= 259). The file is streamed, one
 * tensor at a time, so memory stays at one tensor.
 */
#ifndef PL_RANDOM_MODEL_H
#define PL_RANDOM_MODEL_H

#include "../core/core.h"

#include <stdint.h>

typedef struct rm_spec {
    const char *arch; /* "llama", "qwen2" (q/k/v biases), "qwen3" (q/k norms) */
    int C, L, H, G, D, F, V;
    uint32_t t_qko;   /* attn_q, attn_k, attn_output */
    uint32_t t_v;     /* attn_v */
    uint32_t t_gu;    /* ffn_gate, ffn_up */
    uint32_t t_down;  /* ffn_down */
    uint32_t t_embd;
    int untied;       /* write output.weight (of t_out) instead of tying it to the embedding */
    uint32_t t_out;
    int raw;          /* draw Q4_0 blocks directly instead of quantizing */
    uint64_t seed;
} rm_spec;

static inline uint64_t rm_next(uint64_t *s) {
    *s = *s * 6364136223846793005ull + 1442695040888963407ull;
    return *s >> 33;
}
static inline float rm_unif(uint64_t *s) { return (float)rm_next(s) / (float)(1ull << 31) * 2.0f - 1.0f; }

/* Write the model to path (PL_ERR_IO / PL_ERR_INVALID_ARG with a message). */
pl_status model_write_random(const rm_spec *s, const char *path);

#endif
