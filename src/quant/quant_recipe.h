/*
 * quant_recipe: which element type each tensor of a model gets when a whole
 * model is quantized to a named file type ("Q4_K_M", "Q8_0", "F16", ...).
 *
 * A recipe is a base type plus rules, both tables of data in quant_recipe.c:
 * a rule says "in file type F, tensors of category C (attn_v, ffn_down,
 * output, ...) whose layer meets condition X get type T" — llama.cpp's
 * llama_tensor_get_type logic for the K-quant mixtures (_S/_M/_L), restated
 * as rows. File type ids are llama.cpp's LLAMA_FTYPE numbers, written to
 * general.file_type. This module knows tensor names and shapes only; reading
 * and writing files is quantize_model's job.
 */
#ifndef PL_QUANT_RECIPE_H
#define PL_QUANT_RECIPE_H

#include "quant.h"

#include <stdbool.h>
#include <stdint.h>

/* llama.cpp's LLAMA_FTYPE values (general.file_type): append-only, fixed. */
typedef enum quant_ftype {
    QF_ALL_F32 = 0,
    QF_F16 = 1,
    QF_Q4_0 = 2,
    QF_Q4_1 = 3,
    QF_Q8_0 = 7,
    QF_Q5_0 = 8,
    QF_Q5_1 = 9,
    QF_Q2_K = 10,
    QF_Q3_K_S = 11,
    QF_Q3_K_M = 12,
    QF_Q3_K_L = 13,
    QF_Q4_K_S = 14,
    QF_Q4_K_M = 15,
    QF_Q5_K_S = 16,
    QF_Q5_K_M = 17,
    QF_Q6_K = 18,
    QF_BF16 = 32,
} quant_ftype;

/* GGML_QNT_VERSION: the block layouts of quant.h (written as
 * general.quantization_version). */
#define QUANT_QNT_VERSION 2

typedef struct quant_recipe {
    const char *name;    /* "Q4_K_M" as llama-quantize spells it */
    quant_ftype ftype;
    quant_type base;     /* type of every quantizable tensor no rule changes */
    const char *summary; /* one line for --help */
} quant_recipe;

/* What the rules need to know about the model as a whole. */
typedef struct quant_model_info {
    int n_layer;      /* <arch>.block_count */
    int n_gqa;        /* n_head / n_head_kv (1 without grouped-query attention) */
    bool tied_output; /* no output.weight: token_embd doubles as the output matrix */
} quant_model_info;

/* The decision for one tensor. */
typedef struct quant_pick {
    quant_type type;     /* type to write */
    bool quantizable;    /* false: a tensor the recipe leaves alone (norms, biases, 1-D) */
    bool fell_back;      /* the rules' choice did not fit the row length ... */
    quant_type wanted;   /* ... and this is what they wanted */
} quant_pick;

/* Recipe by name, case-insensitive ("q4_k_m"; "Q4_K" means Q4_K_M as in
 * llama-quantize); NULL when unknown. */
const quant_recipe *quant_recipe_find(const char *name);
/* Recipe by file type id; NULL when unknown. */
const quant_recipe *quant_recipe_by_ftype(int ftype);
/* The i-th recipe (for listings); NULL past the end. */
const quant_recipe *quant_recipe_at(int i);

/* Type for tensor `name` (n_dims dimensions, rows of ne0 elements, stored as
 * cur_type). pure: every quantizable tensor gets the base type (no mixture
 * rules, output included), as llama-quantize --pure. Tensors that are not
 * quantizable keep cur_type, except 1-D float tensors, which become F32 (the
 * engine reads norms and biases as F32). A type whose block does not divide
 * ne0 falls back as llama.cpp does: Q2_K, Q3_K -> Q4_0, Q4_K -> Q5_0,
 * Q5_K -> Q5_1, Q6_K -> Q8_0, and to F16 when even that does not divide (also
 * for the 32-element types, where llama.cpp gives up). */
quant_pick quant_recipe_pick(const quant_recipe *r, const quant_model_info *m, const char *name, uint32_t n_dims,
                             int64_t ne0, uint32_t cur_type, bool pure);

#endif
