/*
 * Training a small SentencePiece-style BPE vocabulary ("llama" tokenizer
 * model) from text, so a model can be trained from scratch with a tokenizer
 * of our own. The text is seen as the SPM tokenizer sees it: spaces become
 * U+2581, one is prepended, each line is merged on its own. Words (a run
 * starting at a U+2581 or a line start) are counted, split into UTF-8
 * characters, and the most frequent adjacent pair is merged repeatedly
 * (ties: the pair of lower ids). Merge k gets score -k, so the SPM encoder's
 * "highest-scoring merge first" replays the merges in order. The vocabulary:
 * <unk> <s> </s>, 256 byte-fallback tokens (any input encodes), every
 * character of the text, then the merges.
 */
#include "train.h"

#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------ string -> int map */

typedef struct bpe_map {
    char **keys;
    int32_t *vals;
    uint32_t cap, n;
} bpe_map;

static uint32_t bpe_hash(const char *s, size_t n) {
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++) h = (h ^ (uint8_t)s[i]) * 16777619u;
    return h;
}

/* Slot of key (len n) : found or empty. */
static uint32_t bpe_slot(const bpe_map *m, const char *s, size_t n) {
    uint32_t i = bpe_hash(s, n) & (m->cap - 1);
    while (m->keys[i] && !(strlen(m->keys[i]) == n && !memcmp(m->keys[i], s, n))) i = (i + 1) & (m->cap - 1);
    return i;
}

static bool bpe_map_grow(bpe_map *m) {
    bpe_map nm = {calloc(m->cap * 2, sizeof(char *)), calloc(m->cap * 2, sizeof(int32_t)), m->cap * 2, m->n};
    if (!nm.keys || !nm.vals) {
        free(nm.keys), free(nm.vals);
        return false;
    }
    for (uint32_t i = 0; i < m->cap; i++)
        if (m->keys[i]) {
            uint32_t j = bpe_slot(&nm, m->keys[i], strlen(m->keys[i]));
            nm.keys[j] = m->keys[i], nm.vals[j] = m->vals[i];
        }
    free(m->keys), free(m->vals);
    *m = nm;
    return true;
}

/* Pointer to the value of key, inserting `def` when absent; NULL on OOM. */
static int32_t *bpe_map_get(bpe_map *m, const char *s, size_t n, int32_t def) {
    if (!m->keys) {
        m->cap = 1024;
        m->keys = calloc(m->cap, sizeof(char *));
        m->vals = calloc(m->cap, sizeof(int32_t));
        if (!m->keys || !m->vals) return NULL;
    }
    if ((m->n + 1) * 2 > m->cap && !bpe_map_grow(m)) return NULL;
    uint32_t i = bpe_slot(m, s, n);
    if (!m->keys[i]) {
        char *k = malloc(n + 1);
        if (!k) return NULL;
        memcpy(k, s, n);
        k[n] = 0;
        m->keys[i] = k, m->vals[i] = def, m->n++;
    }
    return &m->vals[i];
}

static void bpe_map_free(bpe_map *m) {
    for (uint32_t i = 0; i < m->cap; i++) free(m->keys ? m->keys[i] : NULL);
    free(m->keys), free(m->vals);
    memset(m, 0, sizeof *m);
}

/* ------------------------------------------------------------ pair counts */

typedef struct bpe_pairs {
    uint64_t *keys; /* (a << 32 | b) + 1; 0 = empty */
    int64_t *cnt;
    uint32_t cap;
} bpe_pairs;

static void bpe_pairs_add(bpe_pairs *p, uint32_t a, uint32_t b, int64_t c) {
    const uint64_t k = ((uint64_t)a << 32 | b) + 1;
    uint32_t i = (uint32_t)((k * 0x9e3779b97f4a7c15ull) >> 32) & (p->cap - 1);
    while (p->keys[i] && p->keys[i] != k) i = (i + 1) & (p->cap - 1);
    p->keys[i] = k;
    p->cnt[i] += c;
}

/* ------------------------------------------------------------ training */

static size_t bpe_utf8_len(uint8_t c) {
    return c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 1;
}

typedef struct bpe_word {
    int32_t *sym;
    int n;
    int64_t count;
} bpe_word;

typedef struct bpe_state {
    bpe_map words;       /* word text -> count */
    bpe_map tokens;      /* token text -> id among learned pieces */
    char **piece;        /* id -> text */
    int n_piece, cap_piece;
    bpe_word *w;
    int n_w;
    bpe_pairs pairs;
} bpe_state;

static pl_status bpe_add_piece(bpe_state *s, const char *txt, size_t n, int32_t *id) {
    int32_t *v = bpe_map_get(&s->tokens, txt, n, -1);
    if (!v) return pl_fail(PL_ERR_NOMEM, "train-tokenizer: out of memory");
    if (*v >= 0) {
        *id = *v;
        return PL_OK;
    }
    if (s->n_piece == s->cap_piece) {
        int cap = s->cap_piece ? s->cap_piece * 2 : 512;
        char **np = realloc(s->piece, sizeof *np * (size_t)cap);
        if (!np) return pl_fail(PL_ERR_NOMEM, "train-tokenizer: out of memory");
        s->piece = np, s->cap_piece = cap;
    }
    char *c = malloc(n + 1);
    if (!c) return pl_fail(PL_ERR_NOMEM, "train-tokenizer: out of memory");
    memcpy(c, txt, n);
    c[n] = 0;
    s->piece[s->n_piece] = c;
    *v = *id = s->n_piece++;
    return PL_OK;
}

/* The text as SPM sees it, cut into words; each word counted. */
static pl_status bpe_count_words(bpe_state *s, const char *text, size_t len) {
    static const char k_sp[] = "\xe2\x96\x81";
    size_t cap = len * 3 + 4, n = 0;
    char *t = malloc(cap);
    if (!t) return pl_fail(PL_ERR_NOMEM, "train-tokenizer: out of memory");
    memcpy(t, k_sp, 3), n = 3;
    for (size_t i = 0; i < len; i++) {
        if (text[i] == ' ') memcpy(t + n, k_sp, 3), n += 3;
        else t[n++] = text[i];
    }
    pl_status st = PL_OK;
    size_t i = 0;
    while (i < n) {
        if (t[i] == '\n') {
            int32_t *c = bpe_map_get(&s->words, "\n", 1, 0);
            if (!c) goto nomem;
            (*c)++;
            i++;
            continue;
        }
        size_t j = i + bpe_utf8_len((uint8_t)t[i]);
        while (j < n && t[j] != '\n' && !(j + 3 <= n && !memcmp(t + j, k_sp, 3))) j += bpe_utf8_len((uint8_t)t[j]);
        if (j > n) j = n;
        int32_t *c = bpe_map_get(&s->words, t + i, j - i, 0);
        if (!c) goto nomem;
        (*c)++;
        i = j;
    }
    free(t);
    return st;
nomem:
    free(t);
    return pl_fail(PL_ERR_NOMEM, "train-tokenizer: out of memory");
}

static pl_status bpe_split_words(bpe_state *s) {
    s->w = calloc(s->words.n ? s->words.n : 1, sizeof *s->w);
    if (!s->w) return pl_fail(PL_ERR_NOMEM, "train-tokenizer: out of memory");
    for (uint32_t k = 0; k < s->words.cap; k++) {
        const char *wd = s->words.keys[k];
        if (!wd) continue;
        const size_t n = strlen(wd);
        bpe_word *w = &s->w[s->n_w++];
        w->count = s->words.vals[k];
        w->sym = malloc(sizeof(int32_t) * (n ? n : 1));
        if (!w->sym) return pl_fail(PL_ERR_NOMEM, "train-tokenizer: out of memory");
        for (size_t i = 0; i < n;) {
            size_t cl = bpe_utf8_len((uint8_t)wd[i]);
            if (i + cl > n) cl = n - i;
            pl_status st = bpe_add_piece(s, wd + i, cl, &w->sym[w->n++]);
            if (st) return st;
            i += cl;
        }
    }
    return PL_OK;
}

/* One merge: the most frequent pair (count >= 2). Returns false when none. */
static pl_status bpe_merge_once(bpe_state *s, bool *merged) {
    *merged = false;
    memset(s->pairs.keys, 0, sizeof(uint64_t) * s->pairs.cap);
    memset(s->pairs.cnt, 0, sizeof(int64_t) * s->pairs.cap);
    for (int k = 0; k < s->n_w; k++)
        for (int i = 0; i + 1 < s->w[k].n; i++)
            bpe_pairs_add(&s->pairs, (uint32_t)s->w[k].sym[i], (uint32_t)s->w[k].sym[i + 1], s->w[k].count);
    uint64_t best = 0;
    int64_t best_c = 1;
    for (uint32_t i = 0; i < s->pairs.cap; i++) {
        const uint64_t key = s->pairs.keys[i];
        if (key && (s->pairs.cnt[i] > best_c || (s->pairs.cnt[i] == best_c && best && key < best)))
            best = key, best_c = s->pairs.cnt[i];
    }
    if (!best) return PL_OK;
    const int32_t a = (int32_t)((best - 1) >> 32), b = (int32_t)((best - 1) & 0xffffffffu);
    const size_t la = strlen(s->piece[a]), lb = strlen(s->piece[b]);
    char *cat = malloc(la + lb + 1);
    if (!cat) return pl_fail(PL_ERR_NOMEM, "train-tokenizer: out of memory");
    memcpy(cat, s->piece[a], la), memcpy(cat + la, s->piece[b], lb);
    int32_t id;
    pl_status st = bpe_add_piece(s, cat, la + lb, &id);
    free(cat);
    if (st) return st;
    for (int k = 0; k < s->n_w; k++) {
        bpe_word *w = &s->w[k];
        int o = 0;
        for (int i = 0; i < w->n; i++) {
            if (i + 1 < w->n && w->sym[i] == a && w->sym[i + 1] == b) w->sym[o++] = id, i++;
            else w->sym[o++] = w->sym[i];
        }
        w->n = o;
    }
    *merged = true;
    return PL_OK;
}

static pl_status bpe_write(const bpe_state *s, int n_chars, const char *path) {
    enum { N_SPECIAL = 3, N_BYTES = 256 };
    const int n = N_SPECIAL + N_BYTES + s->n_piece;
    const char **tok = calloc((size_t)n, sizeof *tok);
    float *score = calloc((size_t)n, sizeof *score);
    int32_t *type = calloc((size_t)n, sizeof *type);
    char(*bytes)[8] = calloc(N_BYTES, 8);
    gguf_writer *w = gguf_writer_new();
    pl_status st = PL_OK;
    if (!tok || !score || !type || !bytes || !w) {
        st = pl_fail(PL_ERR_NOMEM, "train-tokenizer: out of memory");
        goto out;
    }
    /* llama.cpp token types: 1 normal, 2 unknown, 3 control, 6 byte */
    tok[0] = "<unk>", type[0] = 2;
    tok[1] = "<s>", type[1] = 3;
    tok[2] = "</s>", type[2] = 3;
    for (int i = 0; i < N_BYTES; i++) {
        snprintf(bytes[i], 8, "<0x%02X>", i);
        tok[N_SPECIAL + i] = bytes[i], type[N_SPECIAL + i] = 6;
    }
    const int n_merges = s->n_piece - n_chars;
    for (int i = 0; i < s->n_piece; i++) {
        const int id = N_SPECIAL + N_BYTES + i;
        tok[id] = s->piece[i], type[id] = 1;
        /* merges by order (first merge highest); characters below every merge */
        score[id] = i >= n_chars ? -(float)(i - n_chars) : -(float)(n_merges + i);
    }
    if ((st = gguf_writer_set_str(w, "general.architecture", "llama")) ||
        (st = gguf_writer_set_str(w, "general.name", "pocketllm BPE vocabulary")) ||
        (st = gguf_writer_set_str(w, "tokenizer.ggml.model", "llama")) ||
        (st = gguf_writer_set_arr(w, "tokenizer.ggml.tokens", GGUF_TYPE_STRING, tok, (uint64_t)n)) ||
        (st = gguf_writer_set_arr(w, "tokenizer.ggml.scores", GGUF_TYPE_FLOAT32, score, (uint64_t)n)) ||
        (st = gguf_writer_set_arr(w, "tokenizer.ggml.token_type", GGUF_TYPE_INT32, type, (uint64_t)n)) ||
        (st = gguf_writer_set_u32(w, "tokenizer.ggml.unknown_token_id", 0)) ||
        (st = gguf_writer_set_u32(w, "tokenizer.ggml.bos_token_id", 1)) ||
        (st = gguf_writer_set_u32(w, "tokenizer.ggml.eos_token_id", 2)) ||
        (st = gguf_writer_set_bool(w, "tokenizer.ggml.add_bos_token", true)) ||
        (st = gguf_writer_set_bool(w, "tokenizer.ggml.add_eos_token", false)) ||
        (st = gguf_writer_write_file(w, path)))
        goto out;
out:
    free(tok), free(score), free(type), free(bytes);
    gguf_writer_free(w);
    return st;
}

pl_status train_bpe_vocab(const char *text, size_t len, int vocab_size, const char *path, int *n_vocab_out) {
    if (vocab_size < 300 || vocab_size > 1000000)
        return pl_fail(PL_ERR_INVALID_ARG, "train-tokenizer: vocabulary size %d out of range (300..1000000)", vocab_size);
    bpe_state s = {0};
    pl_status st;
    if ((st = bpe_count_words(&s, text, len)) || (st = bpe_split_words(&s))) goto out;
    const int n_chars = s.n_piece;
    const int target = vocab_size - 3 - 256;
    if (n_chars > target) {
        st = pl_fail(PL_ERR_INVALID_ARG, "train-tokenizer: the text has %d distinct characters, more than a "
                                         "vocabulary of %d holds", n_chars, vocab_size);
        goto out;
    }
    int64_t total = 0;
    for (int k = 0; k < s.n_w; k++) total += s.w[k].n;
    s.pairs.cap = 1024;
    while (s.pairs.cap < 2 * total + 2) s.pairs.cap *= 2;
    s.pairs.keys = malloc(sizeof(uint64_t) * s.pairs.cap);
    s.pairs.cnt = malloc(sizeof(int64_t) * s.pairs.cap);
    if (!s.pairs.keys || !s.pairs.cnt) {
        st = pl_fail(PL_ERR_NOMEM, "train-tokenizer: out of memory");
        goto out;
    }
    while (s.n_piece < target) {
        bool merged;
        if ((st = bpe_merge_once(&s, &merged))) goto out;
        if (!merged) break;
    }
    if ((st = bpe_write(&s, n_chars, path))) goto out;
    if (n_vocab_out) *n_vocab_out = 3 + 256 + s.n_piece;
out:
    for (int k = 0; k < s.n_w; k++) free(s.w[k].sym);
    free(s.w);
    for (int i = 0; i < s.n_piece; i++) free(s.piece[i]);
    free(s.piece);
    bpe_map_free(&s.words);
    bpe_map_free(&s.tokens);
    free(s.pairs.keys), free(s.pairs.cnt);
    return st;
}
