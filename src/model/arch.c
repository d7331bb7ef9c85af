/*
 * The table of supported architectures. Tensor names are common to all rows
 * (GGUF's llama-family naming, see model_load.c); rows only say what differs.
 */
#include "arch.h"

#include <string.h>

static const arch_desc k_archs[] = {
    {.name = "llama", .rope = ARCH_ROPE_NORM, .rope_base_default = 10000.0f},
    {.name = "qwen2", .rope = ARCH_ROPE_NEOX, .qkv_bias = true, .rope_base_default = 1000000.0f},
    {.name = "qwen3", .rope = ARCH_ROPE_NEOX, .qk_norm = true, .rope_base_default = 1000000.0f},
};

const arch_desc *arch_find(const char *name) {
    for (size_t i = 0; i < sizeof k_archs / sizeof k_archs[0]; i++)
        if (!strcmp(k_archs[i].name, name)) return &k_archs[i];
    return NULL;
}

const char *arch_supported_list(void) { return "llama, qwen2, qwen3"; }
