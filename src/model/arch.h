/*
 * Architectures as data: one descriptor row per GGUF `general.architecture`.
 * The forward pass reads these flags instead of switching on the name, so
 * adding an architecture is adding a row to k_archs in arch.c.
 */
#ifndef PL_ARCH_H
#define PL_ARCH_H

#include <stdbool.h>

typedef enum arch_rope {
    ARCH_ROPE_NORM, /* rotate adjacent pairs (x[2i], x[2i+1]): llama's permuted Q/K */
    ARCH_ROPE_NEOX  /* rotate halves (x[i], x[i + d/2]): qwen2, qwen3 */
} arch_rope;

typedef struct arch_desc {
    const char *name;   /* general.architecture */
    arch_rope rope;
    bool qkv_bias;      /* attn_{q,k,v}.bias present (required) */
    bool qk_norm;       /* per-head RMSNorm on Q and K: attn_{q,k}_norm.weight */
    float rope_base_default;
} arch_desc;

/* Descriptor for an architecture name, or NULL when unsupported. */
const arch_desc *arch_find(const char *name);
/* Comma-separated list of supported names, for error messages. */
const char *arch_supported_list(void);

#endif
