/*
 * tok_bpe: byte-level BPE ("gpt2" vocabularies), as llama.cpp's
 * llm_tokenizer_bpe_session does it.
 *
 * Per word from the pre-tokenizer: map every byte to its GPT-2 printable
 * codepoint, start with one symbol per codepoint, and repeatedly merge the
 * adjacent pair with the lowest merge rank (ties: leftmost first), using a
 * binary heap of candidate pairs. A heap entry is stale when either side has
 * changed length since it was pushed; stale entries are skipped when popped.
 * Each word costs O(k log k) for k bytes. Final symbols that are not tokens
 * fall back to their single bytes' tokens (dropped when even those are absent,
 * as llama.cpp does).
 *
 * Memory: long texts are cut into chunks of about TOK_BPE_CHUNK bytes at a
 * point where every pre-tokenizer in pretok.c cuts anyway (after an ASCII
 * letter or digit that a '\n' follows; no matcher looks left), so the
 * per-codepoint scratch stays bounded and the ids do not change.
 */
#include "tok_internal.h"
#include "unicode.h"

#include <stdlib.h>
#include <string.h>

#define TOK_BPE_CHUNK (1u << 16)

typedef struct bpe_sym {
    int32_t prev, next;
    uint32_t start, n; /* bytes of the encoded word; n == 0 once merged away */
} bpe_sym;

typedef struct bpe_scratch {
    char *enc;
    size_t enc_cap;
    bpe_sym *sym;
    size_t sym_cap;
    tok_heap heap;
} bpe_scratch;

static bool bpe_add_pair(const tokenizer *t, bpe_scratch *s, int32_t left, int32_t right) {
    if (left < 0 || right < 0) return true;
    const bpe_sym *l = &s->sym[left], *r = &s->sym[right];
    int rank = tok_merge_rank(t, s->enc + l->start, l->n, s->enc + r->start, r->n);
    if (rank < 0) return true;
    tok_pair p = {left, right, (double)rank, l->n + r->n};
    return tok_heap_push(&s->heap, p);
}

static bool bpe_grow(void **p, size_t *cap, size_t need, size_t elem) {
    if (need <= *cap) return true;
    size_t cap2 = *cap ? *cap : 256;
    while (cap2 < need) cap2 *= 2;
    void *q = realloc(*p, cap2 * elem);
    if (!q) return false;
    *p = q;
    *cap = cap2;
    return true;
}

/* Merge one word (raw bytes) and append its ids. false = out of memory. */
static bool bpe_word(const tokenizer *t, bpe_scratch *s, const char *w, size_t len, tok_out *out) {
    if (!bpe_grow((void **)&s->enc, &s->enc_cap, 2 * len, 1)) return false;
    size_t n_enc = 0;
    for (size_t i = 0; i < len; i++) n_enc += (size_t)tok_utf8_encode(tok_byte_to_cpt((uint8_t)w[i]), s->enc + n_enc);

    if (t->pre->ignore_merges) {
        pl_token id = tok_lookup(t, s->enc, n_enc);
        if (id >= 0) {
            tok_out_push(out, id);
            return true;
        }
    }

    if (!bpe_grow((void **)&s->sym, &s->sym_cap, len, sizeof *s->sym)) return false;
    int32_t n_sym = 0;
    for (size_t off = 0; off < n_enc; n_sym++) {
        size_t n = (size_t)tok_utf8_len((unsigned char)s->enc[off]);
        if (n > n_enc - off) n = n_enc - off;
        s->sym[n_sym].start = (uint32_t)off;
        s->sym[n_sym].n = (uint32_t)n;
        s->sym[n_sym].prev = n_sym - 1;
        off += n;
        s->sym[n_sym].next = off == n_enc ? -1 : n_sym + 1;
    }

    s->heap.n = 0;
    for (int32_t i = 1; i < n_sym; i++)
        if (!bpe_add_pair(t, s, i - 1, i)) return false;
    while (s->heap.n) {
        tok_pair p = tok_heap_pop(&s->heap);
        bpe_sym *l = &s->sym[p.left], *r = &s->sym[p.right];
        if (l->n == 0 || r->n == 0 || l->n + r->n != p.size) continue; /* stale */
        l->n += r->n;
        r->n = 0;
        l->next = r->next;
        if (r->next >= 0) s->sym[r->next].prev = p.left;
        if (!bpe_add_pair(t, s, l->prev, p.left) || !bpe_add_pair(t, s, p.left, l->next)) return false;
    }

    for (int32_t i = n_sym ? 0 : -1; i >= 0; i = s->sym[i].next) {
        const bpe_sym *y = &s->sym[i];
        pl_token id = tok_lookup(t, s->enc + y->start, y->n);
        if (id >= 0) {
            tok_out_push(out, id);
            continue;
        }
        for (uint32_t b = 0; b < y->n; b++) {
            id = tok_lookup(t, s->enc + y->start + b, 1);
            if (id >= 0) tok_out_push(out, id);
        }
    }
    return true;
}

/* End of the next chunk of text[start..len): a safe cut after ~TOK_BPE_CHUNK. */
static size_t bpe_chunk_end(const char *text, size_t start, size_t len) {
    if (len - start <= 2 * (size_t)TOK_BPE_CHUNK) return len;
    for (size_t p = start + TOK_BPE_CHUNK; p < len; p++) {
        unsigned char c = (unsigned char)text[p - 1];
        bool alnum = (c >= '0' && c <= '9') || ((c | 32) >= 'a' && (c | 32) <= 'z');
        if (text[p] == '\n' && alnum) return p;
    }
    return len;
}

pl_status tok_bpe_encode(const tokenizer *t, const char *text, size_t len, tok_out *out) {
    pl_status st = PL_OK;
    bpe_scratch s = {0};
    tok_spans words = {0};
    for (size_t start = 0; start < len;) {
        size_t end = bpe_chunk_end(text, start, len);
        words.n = 0;
        if ((st = tok_pretokenize(t->pre, text + start, end - start, &words))) goto done;
        for (size_t i = 0; i < words.n; i++) {
            if (!bpe_word(t, &s, text + start + words.v[i].off, words.v[i].len, out)) {
                st = pl_fail(PL_ERR_NOMEM, "tokenize: out of memory in BPE merges");
                goto done;
            }
        }
        start = end;
    }
done:
    free(s.enc);
    free(s.sym);
    free(s.heap.v);
    tok_spans_free(&words);
    return st;
}
