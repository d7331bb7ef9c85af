/*
 * quant_recipe: the file-type table and the mixture rules as data.
 *
 * Rules restate llama.cpp's llama_tensor_get_type (src/llama-quant.cpp) for
 * dense models of the architectures we run: for each (file type, tensor
 * category) the rows are tried in order and the first whose condition holds
 * gives the type; no matching row means the base type. Rows with ftype
 * QF_ANY apply to every quantized file type after the specific ones. Layer
 * conditions use the layer number parsed from "blk.N." (llama.cpp counts the
 * tensors of a category in file order, which is the same for dense models).
 */
#include "quant_recipe.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>

static const quant_recipe k_recipes[] = {
    {"Q4_0", QF_Q4_0, QT_Q4_0, "4.5 bpw, 32-blocks, scale only; output Q6_K"},
    {"Q4_1", QF_Q4_1, QT_Q4_1, "5.0 bpw, 32-blocks, scale and min; output Q6_K"},
    {"Q5_0", QF_Q5_0, QT_Q5_0, "5.5 bpw, 32-blocks, scale only; output Q6_K"},
    {"Q5_1", QF_Q5_1, QT_Q5_1, "6.0 bpw, 32-blocks, scale and min; output Q6_K"},
    {"Q8_0", QF_Q8_0, QT_Q8_0, "8.5 bpw, nearly lossless"},
    {"Q2_K", QF_Q2_K, QT_Q2_K, "Q2_K; attn_v Q3_K/Q4_K, ffn_down and attn_output Q3_K"},
    {"Q3_K_S", QF_Q3_K_S, QT_Q3_K, "Q3_K everywhere but output (Q6_K)"},
    {"Q3_K_M", QF_Q3_K_M, QT_Q3_K, "Q3_K; attn_v Q5_K/Q4_K, ffn_down Q5_K/Q4_K, attn_output Q4_K"},
    {"Q3_K_L", QF_Q3_K_L, QT_Q3_K, "Q3_K; attn_v, ffn_down and attn_output Q5_K"},
    {"Q4_K_S", QF_Q4_K_S, QT_Q4_K, "Q4_K; first attn_v and ffn_down layers Q5_K"},
    {"Q4_K_M", QF_Q4_K_M, QT_Q4_K, "Q4_K; half of attn_v and ffn_down Q6_K (recommended)"},
    {"Q5_K_S", QF_Q5_K_S, QT_Q5_K, "Q5_K everywhere but output (Q6_K)"},
    {"Q5_K_M", QF_Q5_K_M, QT_Q5_K, "Q5_K; half of attn_v and ffn_down Q6_K"},
    {"Q6_K", QF_Q6_K, QT_Q6_K, "6.56 bpw K-quant"},
    {"F16", QF_F16, QT_F16, "IEEE half"},
    {"BF16", QF_BF16, QT_BF16, "bfloat16"},
    {"F32", QF_ALL_F32, QT_F32, "float, no loss"},
};
#define N_RECIPES (int)(sizeof k_recipes / sizeof k_recipes[0])

/* llama-quantize's shorter names for the recommended mixtures. */
static const struct { const char *alias, *name; } k_aliases[] = {
    {"Q3_K", "Q3_K_M"}, {"Q4_K", "Q4_K_M"}, {"Q5_K", "Q5_K_M"},
};

/* ------------------------------------------------------------ categories */

typedef enum qr_cat {
    QR_OTHER,
    QR_OUTPUT,     /* output.weight, or token_embd.weight when tied */
    QR_TOKEN_EMBD, /* token_embd.weight with a separate output */
    QR_ATTN_QKV,
    QR_ATTN_V,
    QR_ATTN_K,
    QR_ATTN_Q,
    QR_ATTN_OUT,
    QR_FFN_UP,
    QR_FFN_GATE,
    QR_FFN_DOWN,
} qr_cat;

/* Name patterns, tried in order (llama.cpp's tensor_get_category); exact
 * names first, then substrings. */
static const struct { const char *pat; bool exact; qr_cat cat; } k_cats[] = {
    {"output.weight", true, QR_OUTPUT},
    {"token_embd.weight", true, QR_TOKEN_EMBD},
    {"attn_qkv.weight", false, QR_ATTN_QKV},
    {"attn_v.weight", false, QR_ATTN_V},
    {"attn_k.weight", false, QR_ATTN_K},
    {"attn_q.weight", false, QR_ATTN_Q},
    {"attn_output.weight", false, QR_ATTN_OUT},
    {"ffn_up", false, QR_FFN_UP},
    {"ffn_gate", false, QR_FFN_GATE},
    {"ffn_down", false, QR_FFN_DOWN},
};

/* Substrings of 2-D "weight" tensors that are never quantized (llama.cpp's
 * tensor_allows_quantization, the entries that can occur in our models). */
static const char *const k_keep[] = {"_norm.weight", "ffn_gate_inp.weight", "position_embd", "token_types"};

/* -------------------------------------------------------------- the rules */

typedef enum qr_cond {
    QR_ALWAYS,
    QR_MORE_BITS,      /* llama.cpp's use_more_bits: first and last eighth, and every third between */
    QR_LAYER_BELOW,    /* layer < arg */
    QR_LAYER_FRAC,     /* layer < n_layer / arg */
    QR_GQA_AT_LEAST,   /* n_head / n_head_kv >= arg */
    QR_BASE_IS,        /* the recipe's base type is arg */
    QR_ROW_NOT_BASE,   /* the row length is not a multiple of the base type's block */
} qr_cond;

#define QF_ANY (-1)

typedef struct qr_rule {
    int ftype; /* quant_ftype, or QF_ANY */
    qr_cat cat;
    qr_cond cond;
    int arg;
    quant_type type;
} qr_rule;

static const qr_rule k_rules[] = {
    /* attn_v: the most sensitive matrix, and small under GQA */
    {QF_Q2_K, QR_ATTN_V, QR_GQA_AT_LEAST, 4, QT_Q4_K},
    {QF_Q2_K, QR_ATTN_V, QR_ALWAYS, 0, QT_Q3_K},
    {QF_Q3_K_M, QR_ATTN_V, QR_LAYER_BELOW, 2, QT_Q5_K},
    {QF_Q3_K_M, QR_ATTN_V, QR_ALWAYS, 0, QT_Q4_K},
    {QF_Q3_K_L, QR_ATTN_V, QR_ALWAYS, 0, QT_Q5_K},
    {QF_Q4_K_M, QR_ATTN_V, QR_MORE_BITS, 0, QT_Q6_K},
    {QF_Q5_K_M, QR_ATTN_V, QR_MORE_BITS, 0, QT_Q6_K},
    {QF_Q4_K_S, QR_ATTN_V, QR_LAYER_BELOW, 4, QT_Q5_K},
    /* ffn_down */
    {QF_Q2_K, QR_FFN_DOWN, QR_ALWAYS, 0, QT_Q3_K},
    {QF_Q3_K_M, QR_FFN_DOWN, QR_LAYER_FRAC, 16, QT_Q5_K},
    {QF_Q3_K_M, QR_FFN_DOWN, QR_ALWAYS, 0, QT_Q4_K},
    {QF_Q3_K_L, QR_FFN_DOWN, QR_ALWAYS, 0, QT_Q5_K},
    {QF_Q4_K_M, QR_FFN_DOWN, QR_MORE_BITS, 0, QT_Q6_K},
    {QF_Q5_K_M, QR_FFN_DOWN, QR_MORE_BITS, 0, QT_Q6_K},
    {QF_Q4_K_S, QR_FFN_DOWN, QR_LAYER_FRAC, 8, QT_Q5_K},
    /* attn_output */
    {QF_Q2_K, QR_ATTN_OUT, QR_ALWAYS, 0, QT_Q3_K},
    {QF_Q3_K_M, QR_ATTN_OUT, QR_ALWAYS, 0, QT_Q4_K},
    {QF_Q3_K_L, QR_ATTN_OUT, QR_ALWAYS, 0, QT_Q5_K},
    /* fused QKV (architectures that store one) */
    {QF_Q3_K_M, QR_ATTN_QKV, QR_ALWAYS, 0, QT_Q4_K},
    {QF_Q3_K_L, QR_ATTN_QKV, QR_ALWAYS, 0, QT_Q4_K},
    {QF_Q4_K_M, QR_ATTN_QKV, QR_ALWAYS, 0, QT_Q5_K},
    {QF_Q5_K_M, QR_ATTN_QKV, QR_ALWAYS, 0, QT_Q6_K},
    /* the output matrix (and a tied embedding): Q6_K unless the file is
     * Q8_0 already; Q8_0 when the row does not fit the base block */
    {QF_ANY, QR_OUTPUT, QR_ROW_NOT_BASE, 0, QT_Q8_0},
    {QF_ANY, QR_OUTPUT, QR_BASE_IS, QT_Q8_0, QT_Q8_0},
    {QF_ANY, QR_OUTPUT, QR_ALWAYS, 0, QT_Q6_K},
};

/* Where a type that does not divide the row goes (llama.cpp's
 * tensor_type_fallback; IQ4_NL, its choice for Q2_K/Q3_K, is not a type we
 * have, so those take Q4_0 as newer llama.cpp does). */
static const struct { quant_type from, to; } k_fallback[] = {
    {QT_Q2_K, QT_Q4_0}, {QT_Q3_K, QT_Q4_0}, {QT_Q4_K, QT_Q5_0}, {QT_Q5_K, QT_Q5_1}, {QT_Q6_K, QT_Q8_0},
};

/* ------------------------------------------------------------------ lookup */

static bool qr_name_eq(const char *a, const char *b) {
    while (*a && *b && toupper((unsigned char)*a) == toupper((unsigned char)*b)) a++, b++;
    return !*a && !*b;
}

const quant_recipe *quant_recipe_find(const char *name) {
    if (!name) return NULL;
    for (size_t i = 0; i < sizeof k_aliases / sizeof k_aliases[0]; i++)
        if (qr_name_eq(name, k_aliases[i].alias)) name = k_aliases[i].name;
    for (int i = 0; i < N_RECIPES; i++)
        if (qr_name_eq(name, k_recipes[i].name)) return &k_recipes[i];
    return NULL;
}

const quant_recipe *quant_recipe_by_ftype(int ftype) {
    for (int i = 0; i < N_RECIPES; i++)
        if ((int)k_recipes[i].ftype == ftype) return &k_recipes[i];
    return NULL;
}

const quant_recipe *quant_recipe_at(int i) { return i >= 0 && i < N_RECIPES ? &k_recipes[i] : NULL; }

/* ---------------------------------------------------------------- picking */

static qr_cat qr_category(const char *name, bool tied) {
    for (size_t i = 0; i < sizeof k_cats / sizeof k_cats[0]; i++) {
        const bool hit = k_cats[i].exact ? !strcmp(name, k_cats[i].pat) : strstr(name, k_cats[i].pat) != NULL;
        if (!hit) continue;
        if (k_cats[i].cat == QR_TOKEN_EMBD && tied) return QR_OUTPUT;
        return k_cats[i].cat;
    }
    return QR_OTHER;
}

static bool qr_quantizable(const char *name, uint32_t n_dims) {
    const size_t n = strlen(name);
    if (n_dims < 2 || n < 6 || strcmp(name + n - 6, "weight") != 0) return false;
    for (size_t i = 0; i < sizeof k_keep / sizeof k_keep[0]; i++)
        if (strstr(name, k_keep[i])) return false;
    return true;
}

/* Layer number of "blk.N.<...>", or -1. */
static int qr_layer(const char *name) {
    int layer = -1, used = 0;
    if (sscanf(name, "blk.%d.%n", &layer, &used) != 1 || used == 0) return -1;
    return layer;
}

/* llama.cpp's use_more_bits(i, n): the first and last eighth of the layers,
 * and every third layer in between. */
static bool qr_more_bits(int i, int n) { return i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2; }

static bool qr_cond_holds(const qr_rule *rule, const quant_recipe *r, const quant_model_info *m, int layer,
                          int64_t ne0) {
    switch (rule->cond) {
    case QR_ALWAYS: return true;
    case QR_MORE_BITS: return layer >= 0 && qr_more_bits(layer, m->n_layer);
    case QR_LAYER_BELOW: return layer >= 0 && layer < rule->arg;
    case QR_LAYER_FRAC: return layer >= 0 && rule->arg > 0 && layer < m->n_layer / rule->arg;
    case QR_GQA_AT_LEAST: return m->n_gqa >= rule->arg;
    case QR_BASE_IS: return (int)r->base == rule->arg;
    case QR_ROW_NOT_BASE: return ne0 % quant_get(r->base)->blck != 0;
    }
    return false;
}

static bool qr_fits(quant_type t, int64_t ne0) {
    const quant_traits *tr = quant_get(t);
    return tr && ne0 % tr->blck == 0;
}

quant_pick quant_recipe_pick(const quant_recipe *r, const quant_model_info *m, const char *name, uint32_t n_dims,
                             int64_t ne0, uint32_t cur_type, bool pure) {
    quant_pick p = {.type = (quant_type)cur_type, .quantizable = false, .fell_back = false, .wanted = (quant_type)cur_type};
    const quant_traits *cur = quant_get(cur_type);
    if (!qr_quantizable(name, n_dims)) {
        /* the engine reads 1-D tensors (norms, biases) as F32 */
        if (n_dims == 1 && cur && !cur->is_quantized) p.type = p.wanted = QT_F32;
        return p;
    }
    p.quantizable = true;
    quant_type t = r->base;
    if (quant_get(r->base)->is_quantized) {
        if (!pure) {
            const qr_cat cat = qr_category(name, m->tied_output);
            const int layer = qr_layer(name);
            bool done = false;
            for (int pass = 0; pass < 2 && !done; pass++) /* specific rows first, then QF_ANY */
                for (size_t i = 0; i < sizeof k_rules / sizeof k_rules[0] && !done; i++) {
                    const qr_rule *rule = &k_rules[i];
                    if (rule->cat != cat || rule->ftype != (pass ? QF_ANY : (int)r->ftype)) continue;
                    if (qr_cond_holds(rule, r, m, layer, ne0)) {
                        t = rule->type;
                        done = true;
                    }
                }
        }
        p.wanted = t;
        if (!qr_fits(t, ne0)) {
            quant_type f = QT_F16;
            for (size_t i = 0; i < sizeof k_fallback / sizeof k_fallback[0]; i++)
                if (k_fallback[i].from == t) f = k_fallback[i].to;
            t = qr_fits(f, ne0) ? f : QT_F16;
            p.fell_back = true;
        }
    }
    p.type = t;
    if (!p.fell_back) p.wanted = t;
    return p;
}
