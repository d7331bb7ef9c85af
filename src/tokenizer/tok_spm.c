/*
 * tok_spm: SentencePiece BPE ("llama" vocabularies), as llama.cpp's
 * llm_tokenizer_spm_session does it.
 *
 * The fragment (with a leading space when the caller asks for one) has every
 * ' ' replaced by U+2581, is cut into one symbol per UTF-8 character, and
 * adjacent symbols whose concatenation is a token are merged, highest
 * token score first (ties: leftmost first), from a binary heap of candidate
 * pairs; an entry is stale once either side changed length. Symbols that are
 * not tokens at the end become byte tokens <0xXX>, or the unknown token when
 * the vocabulary lacks one of their bytes.
 *
 * A byte that does not start a well-formed UTF-8 sequence is a symbol of its
 * own (it ends up as its byte token). llama.cpp instead takes as many bytes as
 * the lead byte announces, which can swallow part of an escaped space and so
 * turn it into stray bytes; on valid UTF-8 the two agree.
 *
 * When no token longer than one byte contains '\n' (tokenizer.c checks at
 * load), no merge can cross a newline, so each line is merged on its own:
 * same ids, and the scratch stays the size of one line.
 */
#include "tok_internal.h"
#include "unicode.h"

#include <stdlib.h>
#include <string.h>

typedef struct spm_sym {
    int32_t prev, next;
    uint32_t start, n;
} spm_sym;

typedef struct spm_scratch {
    spm_sym *sym;
    size_t sym_cap;
    tok_heap heap;
} spm_scratch;

static bool spm_try_pair(const tokenizer *t, spm_scratch *s, const char *buf, int32_t left, int32_t right) {
    if (left < 0 || right < 0) return true;
    const spm_sym *l = &s->sym[left], *r = &s->sym[right];
    pl_token id = tok_lookup(t, buf + l->start, (size_t)l->n + r->n);
    if (id < 0) return true;
    tok_pair p = {left, right, -(double)t->score[id], l->n + r->n};
    return tok_heap_push(&s->heap, p);
}

/* Merge buf[0..len) (already escaped) and append the ids. */
static bool spm_run(const tokenizer *t, spm_scratch *s, const char *buf, size_t len, tok_out *out) {
    if (len == 0) return true;
    if (len > s->sym_cap) {
        spm_sym *y = realloc(s->sym, len * sizeof *y);
        if (!y) return false;
        s->sym = y;
        s->sym_cap = len;
    }
    int32_t n_sym = 0;
    for (size_t off = 0; off < len; n_sym++) {
        uint32_t cpt;
        const size_t n = (size_t)tok_utf8_decode(buf + off, len - off, &cpt);
        s->sym[n_sym].start = (uint32_t)off;
        s->sym[n_sym].n = (uint32_t)n;
        s->sym[n_sym].prev = n_sym - 1;
        off += n;
        s->sym[n_sym].next = off == len ? -1 : n_sym + 1;
    }
    s->heap.n = 0;
    for (int32_t i = 1; i < n_sym; i++)
        if (!spm_try_pair(t, s, buf, i - 1, i)) return false;
    while (s->heap.n) {
        tok_pair p = tok_heap_pop(&s->heap);
        spm_sym *l = &s->sym[p.left], *r = &s->sym[p.right];
        if (l->n == 0 || r->n == 0 || l->n + r->n != p.size) continue; /* stale */
        l->n += r->n;
        r->n = 0;
        l->next = r->next;
        if (r->next >= 0) s->sym[r->next].prev = p.left;
        if (!spm_try_pair(t, s, buf, l->prev, p.left) || !spm_try_pair(t, s, buf, p.left, l->next)) return false;
    }
    for (int32_t i = 0; i >= 0; i = s->sym[i].next) {
        const spm_sym *y = &s->sym[i];
        pl_token id = tok_lookup(t, buf + y->start, y->n);
        if (id >= 0) {
            tok_out_push(out, id);
            continue;
        }
        bool all = true;
        for (uint32_t b = 0; b < y->n; b++) all = all && t->byte_token[(unsigned char)buf[y->start + b]] >= 0;
        if (all) {
            for (uint32_t b = 0; b < y->n; b++) tok_out_push(out, t->byte_token[(unsigned char)buf[y->start + b]]);
        } else if (t->unk >= 0) {
            tok_out_push(out, t->unk);
        }
    }
    return true;
}

pl_status tok_spm_encode(const tokenizer *t, const char *text, size_t len, bool space_prefix, tok_out *out) {
    static const char k_space[3] = {'\xE2', '\x96', '\x81'}; /* U+2581 */
    size_t n_spaces = 0;
    for (size_t i = 0; i < len; i++) n_spaces += text[i] == ' ';
    /* every space grows to 3 bytes; the prefix adds 3 */
    if (len > UINT32_MAX / 4) return pl_fail(PL_ERR_INVALID_ARG, "tokenize: text of %zu bytes is too long", len);
    const size_t n_buf = len + 2 * n_spaces + (space_prefix ? 3 : 0);
    char *buf = malloc(n_buf ? n_buf : 1);
    spm_scratch s = {0};
    pl_status st = PL_OK;
    if (!buf) return pl_fail(PL_ERR_NOMEM, "tokenize: out of memory");
    size_t o = 0;
    if (space_prefix) memcpy(buf + o, k_space, 3), o += 3;
    for (size_t i = 0; i < len; i++) {
        if (text[i] == ' ') memcpy(buf + o, k_space, 3), o += 3;
        else buf[o++] = text[i];
    }
    size_t start = 0;
    while (start < o) {
        size_t end = o;
        if (t->spm_split_newlines) {
            /* a newline is a run of its own; otherwise run up to the next one */
            if (buf[start] == '\n') end = start + 1;
            else {
                const char *nl = memchr(buf + start, '\n', o - start);
                if (nl) end = (size_t)(nl - buf);
            }
        }
        if (!spm_run(t, &s, buf + start, end - start, out)) {
            st = pl_fail(PL_ERR_NOMEM, "tokenize: out of memory in SentencePiece merges");
            break;
        }
        start = end;
    }
    free(buf);
    free(s.sym);
    free(s.heap.v);
    return st;
}
