/*
 * Tokenizer internals shared by the files of src/tokenizer/ (not for other
 * modules: they use tokenizer.h).
 *
 * Files: tokenizer.c (load from GGUF, special-token partition, encode/decode
 * entry points), tok_spm.c (SentencePiece merge by score), tok_bpe.c (byte-level
 * BPE by merge rank), pretok.c (the pre-tokenizer splitters), unicode.c and the
 * generated unicode_table.c (codepoint classes).
 *
 * Ownership: a tokenizer owns copies of every token text (pool), score, type
 * and merge; nothing points into the GGUF image after tok_load returns. All
 * encode/decode calls take a const tokenizer and allocate their own scratch,
 * so one tokenizer may be used from several threads at once.
 */
#ifndef PL_TOK_INTERNAL_H
#define PL_TOK_INTERNAL_H

#include "tokenizer.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* tokenizer.ggml.token_type values. */
enum {
    TOK_TYPE_UNDEFINED = 0,
    TOK_TYPE_NORMAL = 1,
    TOK_TYPE_UNKNOWN = 2,
    TOK_TYPE_CONTROL = 3,
    TOK_TYPE_USER_DEFINED = 4,
    TOK_TYPE_UNUSED = 5,
    TOK_TYPE_BYTE = 6,
};

/* Per-token attribute bits (a token can gain CONTROL on top of its type when
 * its text names an end-of-generation token, as llama.cpp does). */
enum {
    TOK_ATTR_NORMAL = 1 << 0,
    TOK_ATTR_UNKNOWN = 1 << 1,
    TOK_ATTR_CONTROL = 1 << 2,
    TOK_ATTR_USER_DEFINED = 1 << 3,
    TOK_ATTR_UNUSED = 1 << 4,
    TOK_ATTR_BYTE = 1 << 5,
};

typedef enum tok_kind {
    TOK_KIND_SPM, /* tokenizer.ggml.model "llama" */
    TOK_KIND_BPE, /* tokenizer.ggml.model "gpt2" */
} tok_kind;

/* One pre-tokenizer splitting step (a regex of llama.cpp's list, written by
 * hand in pretok.c). Steps run in order; each splits every piece further. */
typedef enum tok_split {
    TOK_SPLIT_GPT2,           /* 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S) */
    TOK_SPLIT_LLAMA3,         /* (?i:'s|..)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|... */
    TOK_SPLIT_QWEN2,          /* the same with \p{N} instead of \p{N}{1,3} */
    TOK_SPLIT_PUNCT_DEFAULT,  /* [\p{P}\$\+<=>\^~\|]+ */
    TOK_SPLIT_PUNCT_FALCON,   /* [\p{P}\$\+<=>\^~\|`]+ */
    TOK_SPLIT_DIGITS3,        /* [0-9][0-9][0-9] */
    TOK_SPLIT_NUMBER,         /* \p{N} */
    TOK_SPLIT_NUMBERS,        /* \p{N}+ */
    TOK_SPLIT_NEWLINE,        /* [\r\n] */
    TOK_SPLIT_DS_LETTERS,     /* \s?[A-Za-zµÀ-ÖØ-öø-ƺ...]+ (deepseek-llm's cased letters) */
    TOK_SPLIT_DS_PUNCT,       /* \s?[!-/:-~！-／：-～‘-‟　-。]+ */
    TOK_SPLIT_TRAILING_SPACE, /* \s+$ */
    TOK_SPLIT_DS_CJK,         /* [一-龥ࠀ-一가-퟿]+ */
} tok_split;

#define TOK_MAX_SPLITS 6

/* A pre-tokenizer: what one or more `tokenizer.ggml.pre` names mean. */
typedef struct tok_pre {
    const char *names;  /* '|'-separated tokenizer.ggml.pre values */
    int n_splits;
    tok_split splits[TOK_MAX_SPLITS];
    bool ignore_merges; /* a word that is itself a token skips the merges */
    bool add_bos;       /* default for add_bos_token when the file says nothing */
} tok_pre;

/* Row of the pre-tokenizer table for `name` (len bytes), or NULL. */
const tok_pre *tok_pre_find(const char *name, size_t len);
/* Comma-separated list of the supported names (for messages). */
const char *tok_pre_supported(void);

/* A byte range of a text. */
typedef struct tok_span {
    uint32_t off, len;
} tok_span;

/* Growable list of spans. */
typedef struct tok_spans {
    tok_span *v;
    size_t n, cap;
} tok_spans;

/* Split text[0..len) into words with the pre-tokenizer's steps; appends to
 * *words (offsets relative to text). Invalid UTF-8 bytes stay one unit each.
 * PL_ERR_NOMEM is the only failure. */
pl_status tok_pretokenize(const tok_pre *pre, const char *text, size_t len, tok_spans *words);
void tok_spans_free(tok_spans *s);

/* Output sink: writes while there is room, keeps counting after that. */
typedef struct tok_out {
    pl_token *buf;
    int64_t cap, n;
} tok_out;

static inline void tok_out_push(tok_out *o, pl_token id) {
    if (o->n < o->cap) o->buf[o->n] = id;
    o->n++;
}

struct tokenizer {
    tok_kind kind;
    int n_vocab;
    char *pool;        /* every token's text, back to back */
    uint32_t *text_off; /* n_vocab + 1 offsets into pool */
    float *score;      /* n_vocab */
    uint8_t *attr;     /* n_vocab TOK_ATTR_* bits */

    /* text -> id: open addressing, -1 = empty slot; empty texts are not in it */
    int32_t *map;
    uint32_t map_mask;

    /* BPE merges: "left right" strings in merge_pool, split at merge_split[i];
     * rank = index. merge_map: open addressing over merge indices, -1 = empty. */
    char *merge_pool;
    uint32_t *merge_off; /* n_merges + 1 */
    uint32_t *merge_split;
    int n_merges;
    int32_t *merge_map;
    uint32_t merge_mask;

    /* special tokens matched in text (control, user-defined, unknown), longest
     * text first; user-defined ones are matched even without parse_special */
    int32_t *special;
    int n_special;

    pl_token bos, eos, eot, eom, unk, pad;
    bool add_bos, add_eos, add_space_prefix;
    bool spm_split_newlines; /* no token of 2+ bytes contains '\n' */
    const tok_pre *pre;      /* BPE only */

    /* end-of-generation ids (sorted) */
    pl_token *eog;
    int n_eog;

    int32_t byte_token[256]; /* SPM: <0xXX> (or the 1-byte text) token per byte; -1 none */

    /* what each token detokenizes to (special = false semantics) */
    char *piece_pool;
    uint32_t *piece_off; /* n_vocab + 1 */
};

static inline const char *tok_text(const tokenizer *t, pl_token id, uint32_t *len) {
    *len = t->text_off[id + 1] - t->text_off[id];
    return t->pool + t->text_off[id];
}

/* id of the token whose text is s[0..len), or -1. */
pl_token tok_lookup(const tokenizer *t, const char *s, size_t len);
/* rank of merging left and right (which must not contain ' '), or -1. */
int tok_merge_rank(const tokenizer *t, const char *left, size_t llen, const char *right, size_t rlen);

/* 64-bit FNV-1a, continued from h (start with TOK_HASH_SEED). */
#define TOK_HASH_SEED 0xcbf29ce484222325ull
static inline uint64_t tok_hash(uint64_t h, const char *s, size_t len) {
    for (size_t i = 0; i < len; i++) {
        h ^= (unsigned char)s[i];
        h *= 0x100000001b3ull;
    }
    return h;
}

/* SentencePiece: tokenize one raw-text fragment (the caller adds the space
 * prefix); spaces become U+2581 inside. */
pl_status tok_spm_encode(const tokenizer *t, const char *text, size_t len, bool space_prefix, tok_out *out);
/* Byte-level BPE: pre-tokenize one raw-text fragment and merge each word. */
pl_status tok_bpe_encode(const tokenizer *t, const char *text, size_t len, tok_out *out);

/* ------------------------------------------------ merge candidates (tok_heap.c)
 * Both merge algorithms (SPM by score, BPE by rank) pop the best adjacent pair
 * from a binary heap: smaller prio first, ties broken by the leftmost pair.
 * A popped pair is stale when either side changed size since it was pushed. */
typedef struct tok_pair {
    int32_t left, right; /* symbol indices */
    double prio;         /* BPE: merge rank; SPM: -score (exact for both) */
    uint32_t size;       /* left.n + right.n when pushed */
} tok_pair;

typedef struct tok_heap {
    tok_pair *v;
    size_t n, cap;
} tok_heap;

bool tok_heap_push(tok_heap *h, tok_pair p); /* false when out of memory */
tok_pair tok_heap_pop(tok_heap *h);          /* h->n > 0 */

#endif
