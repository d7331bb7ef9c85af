/*
 * tokenizer: loading the vocabulary from GGUF metadata, the special-token
 * partition of the input text, and the encode/piece/decode entry points.
 * The algorithms themselves live in tok_spm.c, tok_bpe.c and pretok.c.
 *
 * Behaviour follows llama.cpp (src/llama-vocab.cpp), whose outputs are the
 * reference (the ggml-vocab-*.gguf.out files in ../shared/tokenizer):
 *  - special tokens (control, unknown, user-defined) are cut out of the text
 *    longest first before the model's algorithm sees it; user-defined tokens
 *    always, control/unknown ones only with parse_special;
 *  - SentencePiece adds a space before the first text fragment and after
 *    every special token (add_space_prefix);
 *  - a token whose text names an end of generation (<|im_end|>, <|eot_id|>,
 *    ...) counts as EOG and as a control token.
 * Deliberate differences, all on input llama.cpp rejects or mangles: empty
 * token texts stay empty and are never matched (llama.cpp renames them);
 * duplicate texts keep the first id (llama.cpp refuses the file); invalid
 * UTF-8 bytes pass through BPE as themselves (llama.cpp turns them into
 * U+FFFD), so decoding gives the input back.
 *
 * Detokenizing uses llama.cpp's token_to_piece with special = false (control
 * and unknown tokens give no text) and never applies its "clean up spaces"
 * pass, so tok_decode(tok_encode(s)) == s for text without special tokens.
 */
#include "tok_internal.h"
#include "unicode.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Texts that mark the end of a turn (first match becomes EOT when the file
 * names none) and the wider set that ends generation. */
static const char *const k_eot_texts[] = {
    "<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>", "<|end_of_text|>", "<EOT>",
    "_<EOT>", "<\357\275\234end\342\226\201of\342\226\201sentence\357\275\234>", "<end_of_utterance>",
};
static const char *const k_eog_texts[] = {
    "<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>", "</s>", "<|eom_id|>", "<EOT>",
    "_<EOT>", "<|end_of_text|>", "<end_of_utterance>", "<\357\275\234end\342\226\201of\342\226\201sentence\357\275\234>",
};

/* ------------------------------------------------------------ lookups */

/* Tokens or merges beyond this are refused (real vocabularies have < 1M);
 * it keeps the open-addressing tables' uint32 sizes from overflowing. */
#define TOK_MAX_ENTRIES (1u << 28)

static uint32_t tok_table_size(size_t n) {
    uint32_t size = 16;
    while (size < 2 * n) size *= 2;
    return size;
}

pl_token tok_lookup(const tokenizer *t, const char *s, size_t len) {
    if (len == 0) return -1;
    for (uint32_t i = (uint32_t)tok_hash(TOK_HASH_SEED, s, len) & t->map_mask;; i = (i + 1) & t->map_mask) {
        int32_t id = t->map[i];
        if (id < 0) return -1;
        uint32_t n;
        const char *p = tok_text(t, id, &n);
        if (n == len && memcmp(p, s, len) == 0) return id;
    }
}

int tok_merge_rank(const tokenizer *t, const char *left, size_t llen, const char *right, size_t rlen) {
    if (!t->merge_map) return -1;
    uint64_t h = tok_hash(tok_hash(tok_hash(TOK_HASH_SEED, left, llen), " ", 1), right, rlen);
    for (uint32_t i = (uint32_t)h & t->merge_mask;; i = (i + 1) & t->merge_mask) {
        int32_t m = t->merge_map[i];
        if (m < 0) return -1;
        const char *p = t->merge_pool + t->merge_off[m];
        size_t n = t->merge_off[m + 1] - t->merge_off[m];
        if (t->merge_split[m] == llen && n == llen + 1 + rlen && memcmp(p, left, llen) == 0 &&
            memcmp(p + llen + 1, right, rlen) == 0)
            return m;
    }
}

static pl_token tok_lookup_z(const tokenizer *t, const char *z) { return tok_lookup(t, z, strlen(z)); }

/* ------------------------------------------------------------ loading */

/* An optional token id key: absent, negative or out of range keeps *id. */
static pl_status tok_load_id(const gguf_file *f, const char *key, int n_vocab, pl_token *id) {
    if (gguf_find_key(f, key) < 0) return PL_OK;
    int64_t v;
    pl_status st = gguf_get_i64(f, key, &v);
    if (st) return st;
    if (v >= 0 && v < n_vocab) *id = (pl_token)v;
    return PL_OK;
}

static pl_status tok_load_bool(const gguf_file *f, const char *key, bool *out) {
    if (gguf_find_key(f, key) < 0) return PL_OK;
    return gguf_get_bool(f, key, out);
}

/* The metadata array `key` (elements of a type `ok` accepts, at least n of
 * them) in *out; *out = NULL when it is absent and not required. */
static pl_status tok_array(const gguf_file *f, const char *key, bool required, uint64_t n, bool (*ok)(gguf_type),
                           const gguf_kv **out) {
    *out = gguf_get_kv(f, key);
    if (!*out) return required ? pl_fail(PL_ERR_FORMAT, "tokenizer: key '%s' is missing", key) : PL_OK;
    if ((*out)->type != GGUF_TYPE_ARRAY || !ok((*out)->arr_type))
        return pl_fail(PL_ERR_FORMAT, "tokenizer: key '%s' has the wrong type", key);
    if ((*out)->arr_n < n)
        return pl_fail(PL_ERR_FORMAT, "tokenizer: key '%s' has %llu entries, fewer than the %llu needed", key,
                       (unsigned long long)(*out)->arr_n, (unsigned long long)n);
    return PL_OK;
}

static bool tok_is_str(gguf_type t) { return t == GGUF_TYPE_STRING; }
static bool tok_is_score(gguf_type t) { return t == GGUF_TYPE_FLOAT32 || t == GGUF_TYPE_INT32; }
static bool tok_is_int(gguf_type t) { return t <= GGUF_TYPE_INT32 || t == GGUF_TYPE_UINT64 || t == GGUF_TYPE_INT64; }

static uint8_t tok_attr_of_type(int64_t type) {
    switch (type) {
    case TOK_TYPE_NORMAL: return TOK_ATTR_NORMAL;
    case TOK_TYPE_UNKNOWN: return TOK_ATTR_UNKNOWN;
    case TOK_TYPE_CONTROL: return TOK_ATTR_CONTROL;
    case TOK_TYPE_USER_DEFINED: return TOK_ATTR_USER_DEFINED;
    case TOK_TYPE_UNUSED: return TOK_ATTR_UNUSED;
    case TOK_TYPE_BYTE: return TOK_ATTR_BYTE;
    default: return 0; /* undefined: no text, never matched as special */
    }
}

static pl_status tok_load_vocab(tokenizer *t, const gguf_file *f) {
    const gguf_kv *toks, *scores, *types;
    pl_status st;
    if ((st = tok_array(f, "tokenizer.ggml.tokens", true, 1, tok_is_str, &toks))) return st;
    if (toks->arr_n > TOK_MAX_ENTRIES)
        return pl_fail(PL_ERR_FORMAT, "tokenizer: %llu tokens is too many", (unsigned long long)toks->arr_n);
    t->n_vocab = (int)toks->arr_n;
    if ((st = tok_array(f, "tokenizer.ggml.scores", false, toks->arr_n, tok_is_score, &scores))) return st;
    if ((st = tok_array(f, "tokenizer.ggml.token_type", false, toks->arr_n, tok_is_int, &types))) return st;

    uint64_t total = 0;
    for (int i = 0; i < t->n_vocab; i++) total += toks->strs[i].len;
    if (total > UINT32_MAX / 2) return pl_fail(PL_ERR_FORMAT, "tokenizer: token texts total %llu bytes",
                                               (unsigned long long)total);
    const size_t n = (size_t)t->n_vocab;
    t->pool = malloc(total ? total : 1);
    t->text_off = malloc((n + 1) * sizeof *t->text_off);
    t->score = malloc(n * sizeof *t->score);
    t->attr = malloc(n);
    t->map_mask = tok_table_size(n) - 1;
    t->map = malloc(((size_t)t->map_mask + 1) * sizeof *t->map);
    if (!t->pool || !t->text_off || !t->score || !t->attr || !t->map) return pl_fail(PL_ERR_NOMEM, "tokenizer: out of memory");
    memset(t->map, 0xFF, ((size_t)t->map_mask + 1) * sizeof *t->map);

    uint32_t off = 0;
    for (int i = 0; i < t->n_vocab; i++) {
        const gguf_str s = toks->strs[i];
        memcpy(t->pool + off, s.ptr, s.len);
        t->text_off[i] = off;
        off += (uint32_t)s.len;
        float sc = 0.0f;
        if (scores) sc = scores->arr_type == GGUF_TYPE_FLOAT32 ? gguf_arr_f32(scores, (uint64_t)i)
                                                               : (float)gguf_arr_int(scores, (uint64_t)i);
        t->score[i] = sc;
        t->attr[i] = types ? tok_attr_of_type(gguf_arr_int(types, (uint64_t)i)) : TOK_ATTR_NORMAL;
    }
    t->text_off[n] = off;

    for (int i = 0; i < t->n_vocab; i++) {
        uint32_t len;
        const char *p = tok_text(t, i, &len);
        if (len == 0) continue;
        uint32_t h = (uint32_t)tok_hash(TOK_HASH_SEED, p, len) & t->map_mask;
        for (;; h = (h + 1) & t->map_mask) {
            int32_t id = t->map[h];
            if (id < 0) {
                t->map[h] = i;
                break;
            }
            uint32_t n2;
            const char *q = tok_text(t, id, &n2);
            if (n2 == len && memcmp(p, q, len) == 0) break; /* duplicate: the first id keeps the text */
        }
    }
    return PL_OK;
}

static pl_status tok_load_merges(tokenizer *t, const gguf_file *f) {
    const gguf_kv *kv;
    pl_status st = tok_array(f, "tokenizer.ggml.merges", true, 0, tok_is_str, &kv);
    if (st) return st;
    if (kv->arr_n > TOK_MAX_ENTRIES)
        return pl_fail(PL_ERR_FORMAT, "tokenizer: %llu merges is too many", (unsigned long long)kv->arr_n);
    const size_t n = (size_t)kv->arr_n;
    uint64_t total = 0;
    for (size_t i = 0; i < n; i++) total += kv->strs[i].len;
    if (total > UINT32_MAX / 2) return pl_fail(PL_ERR_FORMAT, "tokenizer: merges total %llu bytes",
                                               (unsigned long long)total);
    t->n_merges = (int)n;
    t->merge_pool = malloc(total ? total : 1);
    t->merge_off = malloc((n + 1) * sizeof *t->merge_off);
    t->merge_split = malloc((n ? n : 1) * sizeof *t->merge_split);
    t->merge_mask = tok_table_size(n) - 1;
    t->merge_map = malloc(((size_t)t->merge_mask + 1) * sizeof *t->merge_map);
    if (!t->merge_pool || !t->merge_off || !t->merge_split || !t->merge_map)
        return pl_fail(PL_ERR_NOMEM, "tokenizer: out of memory for %zu merges", n);
    memset(t->merge_map, 0xFF, ((size_t)t->merge_mask + 1) * sizeof *t->merge_map);
    uint32_t off = 0;
    for (size_t i = 0; i < n; i++) {
        const gguf_str s = kv->strs[i];
        memcpy(t->merge_pool + off, s.ptr, s.len);
        t->merge_off[i] = off;
        off += (uint32_t)s.len;
        /* "left right", split at the first space after the first byte (as
         * llama.cpp reads it); a merge without one can never apply */
        const char *sp = s.len > 1 ? memchr(s.ptr + 1, ' ', s.len - 1) : NULL;
        t->merge_split[i] = sp ? (uint32_t)(sp - s.ptr) : UINT32_MAX;
    }
    t->merge_off[n] = off;
    for (size_t i = 0; i < n; i++) {
        if (t->merge_split[i] == UINT32_MAX) continue;
        const char *p = t->merge_pool + t->merge_off[i];
        const size_t len = t->merge_off[i + 1] - t->merge_off[i];
        for (uint32_t h = (uint32_t)tok_hash(TOK_HASH_SEED, p, len) & t->merge_mask;; h = (h + 1) & t->merge_mask) {
            int32_t m = t->merge_map[h];
            if (m < 0) {
                t->merge_map[h] = (int32_t)i;
                break;
            }
            const size_t n2 = t->merge_off[m + 1] - t->merge_off[m];
            if (n2 == len && t->merge_split[m] == t->merge_split[i] && memcmp(t->merge_pool + t->merge_off[m], p, len) == 0)
                break; /* repeated merge: the first (lowest) rank stays */
        }
    }
    return PL_OK;
}

static int tok_cmp_id(const void *a, const void *b) {
    pl_token x = *(const pl_token *)a, y = *(const pl_token *)b;
    return (x > y) - (x < y);
}

static pl_status tok_find_eog(tokenizer *t) {
    if (t->eot < 0) {
        for (size_t k = 0; k < sizeof k_eot_texts / sizeof k_eot_texts[0] && t->eot < 0; k++) {
            pl_token id = tok_lookup_z(t, k_eot_texts[k]);
            if (id >= 0) t->eot = id;
        }
    }
    if (t->eot >= 0) t->attr[t->eot] |= TOK_ATTR_CONTROL;
    const size_t n_texts = sizeof k_eog_texts / sizeof k_eog_texts[0];
    t->eog = malloc((n_texts + 3) * sizeof *t->eog);
    if (!t->eog) return pl_fail(PL_ERR_NOMEM, "tokenizer: out of memory");
    for (size_t k = 0; k < n_texts; k++) {
        pl_token id = tok_lookup_z(t, k_eog_texts[k]);
        if (id < 0) continue;
        t->attr[id] |= TOK_ATTR_CONTROL;
        t->eog[t->n_eog++] = id;
    }
    const pl_token extra[3] = {t->eos, t->eot, t->eom};
    for (int k = 0; k < 3; k++)
        if (extra[k] >= 0) t->eog[t->n_eog++] = extra[k];
    qsort(t->eog, (size_t)t->n_eog, sizeof *t->eog, tok_cmp_id);
    int n = 0;
    for (int i = 0; i < t->n_eog; i++)
        if (n == 0 || t->eog[n - 1] != t->eog[i]) t->eog[n++] = t->eog[i];
    t->n_eog = n;
    return PL_OK;
}

typedef struct tok_len_id {
    uint32_t len;
    pl_token id;
} tok_len_id;

static int tok_cmp_len_id(const void *a, const void *b) {
    const tok_len_id *x = a, *y = b;
    if (x->len != y->len) return x->len > y->len ? -1 : 1; /* longest first */
    return (x->id > y->id) - (x->id < y->id);
}

static pl_status tok_build_specials(tokenizer *t) {
    int n = 0;
    for (int i = 0; i < t->n_vocab; i++)
        if ((t->attr[i] & (TOK_ATTR_CONTROL | TOK_ATTR_USER_DEFINED | TOK_ATTR_UNKNOWN)) &&
            t->text_off[i + 1] > t->text_off[i])
            n++;
    t->special = malloc((size_t)(n ? n : 1) * sizeof *t->special);
    tok_len_id *v = malloc((size_t)(n ? n : 1) * sizeof *v);
    if (!t->special || !v) {
        free(v);
        return pl_fail(PL_ERR_NOMEM, "tokenizer: out of memory");
    }
    for (int i = 0; i < t->n_vocab; i++) {
        const uint32_t len = t->text_off[i + 1] - t->text_off[i];
        if ((t->attr[i] & (TOK_ATTR_CONTROL | TOK_ATTR_USER_DEFINED | TOK_ATTR_UNKNOWN)) && len > 0) {
            v[t->n_special].len = len;
            v[t->n_special].id = i;
            t->n_special++;
        }
    }
    qsort(v, (size_t)t->n_special, sizeof *v, tok_cmp_len_id);
    for (int i = 0; i < t->n_special; i++) t->special[i] = v[i].id;
    free(v);
    return PL_OK;
}

static int tok_hex(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
}

/* Text of token id as detokenized; special = true also renders control and
 * unknown tokens as their text. Writes up to cap bytes; returns the length. */
static size_t tok_render(const tokenizer *t, pl_token id, bool special, char *buf, size_t cap) {
    uint32_t n;
    const char *p = tok_text(t, id, &n);
    const uint8_t a = t->attr[id];
    size_t o = 0;
#define TOK_EMIT(c)                       \
    do {                                  \
        if (o < cap) buf[o] = (char)(c);  \
        o++;                              \
    } while (0)
    if (a & (TOK_ATTR_UNKNOWN | TOK_ATTR_CONTROL | TOK_ATTR_USER_DEFINED)) {
        if (!special && (a & (TOK_ATTR_UNKNOWN | TOK_ATTR_CONTROL))) return 0;
        for (uint32_t i = 0; i < n; i++) TOK_EMIT(p[i]);
    } else if (a & TOK_ATTR_NORMAL) {
        for (uint32_t i = 0; i < n;) {
            uint32_t c;
            int k = tok_utf8_decode(p + i, n - i, &c);
            int b = t->kind == TOK_KIND_BPE ? tok_cpt_to_byte(c) : -1;
            if (t->kind == TOK_KIND_SPM && c == 0x2581) TOK_EMIT(' ');
            else if (b >= 0) TOK_EMIT(b);
            else
                for (int j = 0; j < k; j++) TOK_EMIT(p[i + (uint32_t)j]); /* not in the byte map: as is */
            i += (uint32_t)k;
        }
    } else if (a & TOK_ATTR_BYTE) {
        int hi = n == 6 ? tok_hex(p[3]) : -1, lo = n == 6 ? tok_hex(p[4]) : -1;
        if (n == 6 && memcmp(p, "<0x", 3) == 0 && p[5] == '>' && hi >= 0 && lo >= 0) TOK_EMIT(hi * 16 + lo);
    }
#undef TOK_EMIT
    return o;
}

static pl_status tok_build_pieces(tokenizer *t) {
    const size_t n = (size_t)t->n_vocab;
    t->piece_off = malloc((n + 1) * sizeof *t->piece_off);
    if (!t->piece_off) return pl_fail(PL_ERR_NOMEM, "tokenizer: out of memory");
    uint64_t total = 0;
    for (size_t i = 0; i < n; i++) {
        t->piece_off[i] = (uint32_t)total;
        total += tok_render(t, (pl_token)i, false, NULL, 0); /* never longer than the text */
    }
    t->piece_off[n] = (uint32_t)total;
    t->piece_pool = malloc(total ? total : 1);
    if (!t->piece_pool) return pl_fail(PL_ERR_NOMEM, "tokenizer: out of memory");
    for (size_t i = 0; i < n; i++)
        tok_render(t, (pl_token)i, false, t->piece_pool + t->piece_off[i], t->piece_off[i + 1] - t->piece_off[i]);
    return PL_OK;
}

pl_status tok_load(const gguf_file *f, tokenizer **out) {
    if (!f || !out) return pl_fail(PL_ERR_INVALID_ARG, "tok_load: file and out are required");
    *out = NULL;
    tokenizer *t = calloc(1, sizeof *t);
    if (!t) return pl_fail(PL_ERR_NOMEM, "tokenizer: out of memory");
    pl_status st;
    gguf_str model;
    if ((st = gguf_get_str(f, "tokenizer.ggml.model", &model))) goto fail;
    if (gguf_str_eq(model, "llama")) {
        t->kind = TOK_KIND_SPM;
        t->bos = 1, t->eos = 2, t->unk = 0;
        t->add_space_prefix = true;
        t->add_bos = true;
    } else if (gguf_str_eq(model, "gpt2")) {
        t->kind = TOK_KIND_BPE;
        t->bos = 11, t->eos = 11, t->unk = -1; /* llama.cpp's defaults when the file names none */
        gguf_str pre = {"default", 7};
        if (gguf_find_key(f, "tokenizer.ggml.pre") >= 0 && (st = gguf_get_str(f, "tokenizer.ggml.pre", &pre)))
            goto fail;
        t->pre = tok_pre_find(pre.ptr, (size_t)pre.len);
        if (!t->pre) {
            st = pl_fail(PL_ERR_UNSUPPORTED, "tokenizer: pre-tokenizer '%.*s' is not supported (supported: %s)",
                         (int)(pre.len > 64 ? 64 : pre.len), pre.ptr, tok_pre_supported());
            goto fail;
        }
        t->add_bos = t->pre->add_bos;
    } else {
        st = pl_fail(PL_ERR_UNSUPPORTED, "tokenizer: model '%.*s' is not supported (supported: llama, gpt2)",
                     (int)(model.len > 64 ? 64 : model.len), model.ptr);
        goto fail;
    }
    t->eot = t->eom = t->pad = -1;

    if ((st = tok_load_vocab(t, f))) goto fail;
    if (t->kind == TOK_KIND_BPE && (st = tok_load_merges(t, f))) goto fail;
    pl_token *const defaults[] = {&t->bos, &t->eos, &t->unk};
    for (size_t i = 0; i < sizeof defaults / sizeof defaults[0]; i++)
        if (*defaults[i] >= t->n_vocab) *defaults[i] = -1; /* a default the vocabulary is too small for */

    if ((st = tok_load_id(f, "tokenizer.ggml.bos_token_id", t->n_vocab, &t->bos)) ||
        (st = tok_load_id(f, "tokenizer.ggml.eos_token_id", t->n_vocab, &t->eos)) ||
        (st = tok_load_id(f, "tokenizer.ggml.eot_token_id", t->n_vocab, &t->eot)) ||
        (st = tok_load_id(f, "tokenizer.ggml.eom_token_id", t->n_vocab, &t->eom)) ||
        (st = tok_load_id(f, "tokenizer.ggml.unknown_token_id", t->n_vocab, &t->unk)) ||
        (st = tok_load_id(f, "tokenizer.ggml.padding_token_id", t->n_vocab, &t->pad)) ||
        (st = tok_load_bool(f, "tokenizer.ggml.add_bos_token", &t->add_bos)) ||
        (st = tok_load_bool(f, "tokenizer.ggml.add_eos_token", &t->add_eos)) ||
        (st = tok_load_bool(f, "tokenizer.ggml.add_space_prefix", &t->add_space_prefix)))
        goto fail;
    if (t->add_bos && t->bos < 0) {
        st = pl_fail(PL_ERR_FORMAT, "tokenizer: add_bos_token is set but there is no BOS token");
        goto fail;
    }
    if (t->add_eos && t->eos < 0) {
        st = pl_fail(PL_ERR_FORMAT, "tokenizer: add_eos_token is set but there is no EOS token");
        goto fail;
    }

    for (int b = 0; b < 256; b++) {
        char hex[8], one = (char)b;
        snprintf(hex, sizeof hex, "<0x%02X>", b);
        pl_token id = tok_lookup_z(t, hex);
        t->byte_token[b] = id >= 0 ? id : tok_lookup(t, &one, 1);
    }
    t->spm_split_newlines = true;
    for (int i = 0; i < t->n_vocab && t->spm_split_newlines; i++) {
        uint32_t n;
        const char *p = tok_text(t, i, &n);
        if (n > 1 && memchr(p, '\n', n)) t->spm_split_newlines = false;
    }
    if ((st = tok_find_eog(t)) || (st = tok_build_specials(t)) || (st = tok_build_pieces(t))) goto fail;
    *out = t;
    return PL_OK;
fail:
    tok_free(t);
    return st;
}

void tok_free(tokenizer *t) {
    if (!t) return;
    free(t->pool);
    free(t->text_off);
    free(t->score);
    free(t->attr);
    free(t->map);
    free(t->merge_pool);
    free(t->merge_off);
    free(t->merge_split);
    free(t->merge_map);
    free(t->special);
    free(t->eog);
    free(t->piece_pool);
    free(t->piece_off);
    free(t);
}

int tok_n_vocab(const tokenizer *t) { return t ? t->n_vocab : 0; }
pl_token tok_bos(const tokenizer *t) { return t ? t->bos : -1; }
pl_token tok_eos(const tokenizer *t) { return t ? t->eos : -1; }
bool tok_add_bos(const tokenizer *t) { return t && t->add_bos; }

bool tok_is_eog(const tokenizer *t, pl_token id) {
    if (!t || id < 0) return false;
    return bsearch(&id, t->eog, (size_t)t->n_eog, sizeof *t->eog, tok_cmp_id) != NULL;
}

/* ------------------------------------------------- special-token partition */

/* A piece of the input: raw text (id < 0) or one special token. */
typedef struct tok_frag {
    size_t off, len;
    pl_token id;
} tok_frag;

typedef struct tok_frags {
    tok_frag *v;
    size_t n, cap;
} tok_frags;

static bool tok_frag_push(tok_frags *f, size_t off, size_t len, pl_token id) {
    if (f->n == f->cap) {
        size_t cap = f->cap ? f->cap * 2 : 16;
        tok_frag *v = realloc(f->v, cap * sizeof *v);
        if (!v) return false;
        f->v = v;
        f->cap = cap;
    }
    f->v[f->n].off = off;
    f->v[f->n].len = len;
    f->v[f->n].id = id;
    f->n++;
    return true;
}

static bool tok_special_allowed(const tokenizer *t, pl_token id, bool parse_special) {
    return parse_special || !(t->attr[id] & (TOK_ATTR_CONTROL | TOK_ATTR_UNKNOWN));
}

/* Whether every adjacent byte pair of p[0..n) (or its one byte) occurs in the
 * text, per the 65536-bit map of the text's pairs. */
static bool tok_pairs_present(const uint8_t *pairs, const uint8_t *singles, const char *p, uint32_t n) {
    const unsigned char *u = (const unsigned char *)p;
    if (!(singles[u[0] >> 3] & (1u << (u[0] & 7)))) return false;
    for (uint32_t i = 0; i + 1 < n; i++) {
        unsigned k = (unsigned)u[i] << 8 | u[i + 1];
        if (!(pairs[k >> 3] & (1u << (k & 7)))) return false;
    }
    return true;
}

/* Cut special tokens out of text, longest first, each everywhere it occurs in
 * what is still raw text (llama.cpp's tokenizer_st_partition). A token any of
 * whose byte pairs the text lacks is skipped at once, and one memmem over the
 * text screens the rest, so vocabularies with thousands of specials cost about
 * one pass over the text per special actually present. */
static pl_status tok_partition(const tokenizer *t, const char *text, size_t len, bool parse_special, tok_frags *out) {
    tok_frags cur = *out, next = {0};
    uint8_t *pairs = NULL, singles[32] = {0};
    if (!tok_frag_push(&cur, 0, len, -1)) goto nomem;
    for (int s = 0; s < t->n_special; s++) {
        const pl_token id = t->special[s];
        if (!tok_special_allowed(t, id, parse_special)) continue;
        uint32_t n;
        const char *p = tok_text(t, id, &n);
        if (n > len) continue;
        if (!pairs) {
            const unsigned char *u = (const unsigned char *)text;
            if (!(pairs = calloc(8192, 1))) goto nomem;
            for (size_t i = 0; i < len; i++) {
                singles[u[i] >> 3] |= (uint8_t)(1u << (u[i] & 7));
                if (i + 1 < len) {
                    unsigned k = (unsigned)u[i] << 8 | u[i + 1];
                    pairs[k >> 3] |= (uint8_t)(1u << (k & 7));
                }
            }
        }
        if (!tok_pairs_present(pairs, singles, p, n) || !memmem(text, len, p, n)) continue;
        next.n = 0;
        for (size_t i = 0; i < cur.n; i++) {
            tok_frag fr = cur.v[i];
            if (fr.id >= 0 || fr.len < n) {
                if (!tok_frag_push(&next, fr.off, fr.len, fr.id)) goto nomem;
                continue;
            }
            size_t pos = fr.off;
            const size_t end = fr.off + fr.len;
            for (;;) {
                const char *hit = memmem(text + pos, end - pos, p, n);
                if (!hit) break;
                const size_t at = (size_t)(hit - text);
                if (at > pos && !tok_frag_push(&next, pos, at - pos, -1)) goto nomem;
                if (!tok_frag_push(&next, at, n, id)) goto nomem;
                pos = at + n;
            }
            if (pos < end && !tok_frag_push(&next, pos, end - pos, -1)) goto nomem;
        }
        tok_frags tmp = cur;
        cur = next;
        next = tmp;
    }
    free(next.v);
    free(pairs);
    *out = cur;
    return PL_OK;
nomem:
    free(next.v);
    free(pairs);
    *out = cur;
    return pl_fail(PL_ERR_NOMEM, "tokenize: out of memory");
}

/* ------------------------------------------------------------- encode */

pl_status tok_encode(const tokenizer *t, const char *text, size_t len, bool add_bos, bool parse_special,
                     pl_token *out, int cap, int *n_out) {
    if (!t || (!text && len) || !n_out || cap < 0 || (cap > 0 && !out))
        return pl_fail(PL_ERR_INVALID_ARG, "tokenize: missing argument");
    *n_out = 0;
    tok_out o = {out, cap, 0};
    tok_frags frags = {0};
    pl_status st = PL_OK;
    if (add_bos && t->bos >= 0) tok_out_push(&o, t->bos);
    if (len > 0 && (st = tok_partition(t, text, len, parse_special, &frags))) goto done;
    bool prev_special = true; /* SentencePiece: a space before the first text and after each special */
    for (size_t i = 0; i < frags.n && !st; i++) {
        const tok_frag *fr = &frags.v[i];
        if (fr->id >= 0) {
            tok_out_push(&o, fr->id);
            prev_special = true;
        } else if (t->kind == TOK_KIND_SPM) {
            st = tok_spm_encode(t, text + fr->off, fr->len, t->add_space_prefix && prev_special, &o);
            prev_special = false;
        } else {
            st = tok_bpe_encode(t, text + fr->off, fr->len, &o);
        }
    }
    if (st) goto done;
    if (o.n > INT_MAX) {
        st = pl_fail(PL_ERR_INVALID_ARG, "tokenize: %lld tokens is more than one call can return", (long long)o.n);
        goto done;
    }
    *n_out = (int)o.n;
    if (o.n > cap) st = pl_fail(PL_ERR_INVALID_ARG, "tokenize: %lld tokens do not fit in %d", (long long)o.n, cap);
done:
    free(frags.v);
    return st;
}

/* -------------------------------------------------------------- decode */

int tok_piece_ex(const tokenizer *t, pl_token id, bool special, char *buf, int cap) {
    if (!t || id < 0 || id >= t->n_vocab) return -1;
    if (cap < 0 || (cap > 0 && !buf)) cap = 0;
    if (special && (t->attr[id] & (TOK_ATTR_UNKNOWN | TOK_ATTR_CONTROL))) {
        uint32_t n;
        const char *p = tok_text(t, id, &n);
        if (n <= (uint32_t)cap) memcpy(buf, p, n);
        return (int)n;
    }
    const uint32_t n = t->piece_off[id + 1] - t->piece_off[id];
    if (n <= (uint32_t)cap) memcpy(buf, t->piece_pool + t->piece_off[id], n);
    return (int)n;
}

int tok_piece(const tokenizer *t, pl_token id, char *buf, int cap) { return tok_piece_ex(t, id, false, buf, cap); }

int tok_decode(const tokenizer *t, const pl_token *ids, int n, char *buf, int cap) {
    if (!t || n < 0 || (n > 0 && !ids)) return 0;
    if (cap < 0 || !buf) cap = 0;
    size_t total = 0;
    /* SentencePiece put a space in front of the text: drop it from the first
     * token that has text (a BOS before it has none) */
    bool strip = t->kind == TOK_KIND_SPM && t->add_space_prefix;
    for (int i = 0; i < n; i++) {
        const pl_token id = ids[i];
        if (id < 0 || id >= t->n_vocab) continue;
        const char *p = t->piece_pool + t->piece_off[id];
        size_t k = t->piece_off[id + 1] - t->piece_off[id];
        if (k == 0) continue;
        if (strip && p[0] == ' ') p++, k--;
        strip = false;
        if (total + k < (size_t)cap) memcpy(buf + total, p, k);
        total += k;
        if (total > INT_MAX - 1) return INT_MAX; /* no int can say more */
    }
    if (total < (size_t)cap) buf[total] = 0;
    return (int)total;
}
