/*
 * The binary heap of candidate merges shared by the SentencePiece and BPE
 * merge loops (see tok_pair in tok_internal.h for the order).
 */
#include "tok_internal.h"

#include <stdlib.h>

static bool pair_before(const tok_pair *a, const tok_pair *b) {
    return a->prio < b->prio || (a->prio == b->prio && a->left < b->left);
}

bool tok_heap_push(tok_heap *h, tok_pair p) {
    if (h->n == h->cap) {
        size_t cap = h->cap ? h->cap * 2 : 64;
        tok_pair *v = realloc(h->v, cap * sizeof *v);
        if (!v) return false;
        h->v = v;
        h->cap = cap;
    }
    size_t i = h->n++;
    while (i > 0) {
        size_t up = (i - 1) / 2;
        if (!pair_before(&p, &h->v[up])) break;
        h->v[i] = h->v[up];
        i = up;
    }
    h->v[i] = p;
    return true;
}

tok_pair tok_heap_pop(tok_heap *h) {
    tok_pair top = h->v[0];
    tok_pair last = h->v[--h->n];
    size_t i = 0, n = h->n;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && pair_before(&h->v[c + 1], &h->v[c])) c++;
        if (!pair_before(&h->v[c], &last)) break;
        h->v[i] = h->v[c];
        i = c;
    }
    if (n) h->v[i] = last;
    return top;
}
