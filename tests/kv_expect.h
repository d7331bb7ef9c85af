/*
 * The KV cache's size from a llama GGUF's own numbers, independent of the
 * planner: 2 (K, V) x layers x positions x kv heads x head dim values, 2
 * bytes each for f16, 34 per 32 for q8_0. For tests that check plans and
 * allocations against it (test_plan, test_kv_q8).
 */
#ifndef PL_TEST_KV_EXPECT_H
#define PL_TEST_KV_EXPECT_H

#include "gguf/gguf.h"
#include "pocketllm.h"

/* -1 when the file cannot be read. */
static inline int64_t kv_bytes_from_file(const char *path, int n_ctx, int kv_type) {
    gguf_file *g;
    if (gguf_open(path, &g) != PL_OK) return -1;
    uint32_t L = 0, H = 0, G = 0, C = 0;
    gguf_get_u32(g, "llama.block_count", &L);
    gguf_get_u32(g, "llama.attention.head_count", &H);
    gguf_get_u32(g, "llama.attention.head_count_kv", &G);
    gguf_get_u32(g, "llama.embedding_length", &C);
    gguf_close(g);
    if (!H) return -1;
    const int64_t values = 2ll * L * n_ctx * G * (C / H);
    return kv_type == PL_KV_Q8_0 ? values / 32 * 34 : values * 2;
}

#endif
