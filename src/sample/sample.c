/*
 * Samplers: repetition penalty -> top-k -> temperature softmax -> top-p ->
 * min-p -> draw, in llama.cpp's order. temp <= 0 is greedy argmax (after the
 * penalty). The RNG is splitmix64/xorshift seeded by the caller, so the same
 * seed and logits give the same tokens on every platform.
 *
 * Order: candidates go by logit, then lower id first (a total order; NaN
 * counts as -inf). Only the survivors need it: with top-k a heap of the k
 * best is kept in one pass over the vocabulary and only those k are sorted;
 * without top-k the softmax normalizer is a sum over the whole vocabulary in
 * that order (the order fixes its rounding, and so the tokens drawn), so
 * everything is ordered, by a stable radix sort on the logit's bits (linear
 * time). Either way the survivors and every sum are those of a full sort.
 */
#include "../core/core.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct cand {
    float logit;
    pl_token id;
} cand;

struct pl_sampler {
    pl_sampler_params p;
    uint64_t rng;
    pl_token *recent; /* ring of the last repeat_last_n accepted tokens */
    int n_recent, recent_head;
    cand *cands, *tmp; /* tmp: the radix sort's second buffer */
    int cands_cap;
};

/* Top-k by a heap when k is at most this; a larger k sorts everything. */
enum { SAMPLE_HEAP_MAX_K = 512 };

pl_sampler_params pl_sampler_default_params(void) {
    pl_sampler_params p = {.temp = 0.8f, .top_k = 40, .top_p = 0.95f, .min_p = 0.05f,
                           .repeat_penalty = 1.0f, .repeat_last_n = 64, .seed = 0x5eed};
    return p;
}

static uint64_t rng_next(uint64_t *s) {
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* uniform in [0, 1) with 53 random bits */
static double rng_uniform(uint64_t *s) { return (double)(rng_next(s) >> 11) * (1.0 / 9007199254740992.0); }

pl_status pl_sampler_new(const pl_sampler_params *params, pl_sampler **out) {
    if (!out) return pl_fail(PL_ERR_INVALID_ARG, "pl_sampler_new: out is required");
    *out = NULL;
    pl_sampler_params p = params ? *params : pl_sampler_default_params();
    if (p.repeat_last_n < 0 || p.repeat_last_n > (1 << 20) || !(p.repeat_penalty > 0) || isnan(p.temp) ||
        isnan(p.top_p) || isnan(p.min_p))
        return pl_fail(PL_ERR_INVALID_ARG, "pl_sampler_new: invalid parameters (repeat_last_n %d, penalty %g)",
                       p.repeat_last_n, (double)p.repeat_penalty);
    pl_sampler *s = calloc(1, sizeof *s);
    if (!s) return pl_fail(PL_ERR_NOMEM, "pl_sampler_new: out of memory");
    s->p = p;
    s->rng = p.seed;
    if (p.repeat_last_n > 0) {
        s->recent = malloc(sizeof(pl_token) * (size_t)p.repeat_last_n);
        if (!s->recent) {
            free(s);
            return pl_fail(PL_ERR_NOMEM, "pl_sampler_new: out of memory");
        }
    }
    *out = s;
    return PL_OK;
}

void pl_sampler_free(pl_sampler *s) {
    if (!s) return;
    free(s->recent);
    free(s->cands);
    free(s->tmp);
    free(s);
}

void pl_sampler_reset(pl_sampler *s) {
    s->n_recent = s->recent_head = 0;
    s->rng = s->p.seed;
}

void pl_sampler_accept(pl_sampler *s, pl_token tok) {
    if (!s || s->p.repeat_last_n <= 0) return;
    s->recent[s->recent_head] = tok;
    s->recent_head = (s->recent_head + 1) % s->p.repeat_last_n;
    if (s->n_recent < s->p.repeat_last_n) s->n_recent++;
}

/* x goes before y: higher logit, then lower id. */
static int cand_before(const cand *x, const cand *y) {
    return x->logit > y->logit || (x->logit == y->logit && x->id < y->id);
}

/* Heap of k with the last of them (in cand order) at the root. */
static void heap_sift(cand *h, int k, int i) {
    for (;;) {
        int w = i;
        const int l = 2 * i + 1, r = l + 1;
        if (l < k && cand_before(&h[w], &h[l])) w = l;
        if (r < k && cand_before(&h[w], &h[r])) w = r;
        if (w == i) return;
        const cand t = h[i];
        h[i] = h[w];
        h[w] = t;
        i = w;
    }
}

/* c[0, k) = the first k of c[0, n) in cand order, sorted (c[k, n) is left
 * scrambled). One pass: a candidate enters when it goes before the root. */
static void select_top_k(cand *c, int n, int k) {
    for (int i = k / 2 - 1; i >= 0; i--) heap_sift(c, k, i);
    for (int i = k; i < n; i++)
        if (cand_before(&c[i], &c[0])) {
            c[0] = c[i];
            heap_sift(c, k, 0);
        }
    for (int e = k - 1; e > 0; e--) { /* heapsort: the last goes to the end */
        const cand t = c[0];
        c[0] = c[e];
        c[e] = t;
        heap_sift(c, e, 0);
    }
}

/* Radix key: ascending key = cand order for candidates in id order (a
 * stable sort keeps lower ids first among equal logits). -0 is +0. */
static uint32_t cand_key(float logit) {
    uint32_t u;
    if (logit == 0.0f) logit = 0.0f;
    memcpy(&u, &logit, sizeof u);
    u = (u & 0x80000000u) ? ~u : u | 0x80000000u; /* ascending in the float */
    return ~u;                                     /* descending */
}

/* Stable LSD radix sort of c[0, n) (in id order) into cand order; tmp holds n. */
static void sort_all(cand *c, cand *tmp, int n) {
    int cnt[4][257];
    memset(cnt, 0, sizeof cnt);
    for (int i = 0; i < n; i++) {
        const uint32_t k = cand_key(c[i].logit);
        for (int b = 0; b < 4; b++) cnt[b][((k >> (8 * b)) & 255) + 1]++;
    }
    cand *src = c, *dst = tmp;
    for (int b = 0; b < 4; b++) {
        int same = 0; /* every key has the same byte here: nothing moves */
        for (int v = 1; v <= 256; v++) same |= cnt[b][v] == n;
        if (same) continue;
        for (int v = 1; v <= 256; v++) cnt[b][v] += cnt[b][v - 1];
        for (int i = 0; i < n; i++) dst[cnt[b][(cand_key(src[i].logit) >> (8 * b)) & 255]++] = src[i];
        cand *t = src;
        src = dst;
        dst = t;
    }
    if (src != c) memcpy(c, src, sizeof *c * (size_t)n);
}

static float penalized(const pl_sampler *s, pl_token id, float logit) {
    if (s->p.repeat_penalty == 1.0f) return logit;
    for (int i = 0; i < s->n_recent; i++)
        if (s->recent[i] == id) return logit > 0 ? logit / s->p.repeat_penalty : logit * s->p.repeat_penalty;
    return logit;
}

pl_token pl_sampler_sample(pl_sampler *s, const float *logits, int n_vocab) {
    if (!s || !logits || n_vocab <= 0) return -1;
    if (s->cands_cap < n_vocab) {
        cand *c = realloc(s->cands, sizeof(cand) * (size_t)n_vocab);
        if (!c) return -1;
        s->cands = c;
        cand *t = realloc(s->tmp, sizeof(cand) * (size_t)n_vocab);
        if (!t) return -1;
        s->tmp = t;
        s->cands_cap = n_vocab;
    }
    cand *c = s->cands;
    int n = n_vocab;
    for (int i = 0; i < n; i++) {
        c[i].id = i;
        c[i].logit = penalized(s, i, logits[i]);
        if (isnan(c[i].logit)) c[i].logit = -INFINITY;
    }
    if (s->p.temp <= 0) {
        int best = 0;
        for (int i = 1; i < n; i++)
            if (c[i].logit > c[best].logit) best = i;
        return c[best].id;
    }
    if (s->p.top_k > 0 && s->p.top_k < n && s->p.top_k <= SAMPLE_HEAP_MAX_K) {
        select_top_k(c, n, s->p.top_k);
        n = s->p.top_k;
    } else {
        sort_all(c, s->tmp, n);
        if (s->p.top_k > 0 && s->p.top_k < n) n = s->p.top_k;
    }
    /* softmax at temperature over the survivors (sorted, so c[0] is the max) */
    double sum = 0.0;
    const float max_logit = c[0].logit;
    for (int i = 0; i < n; i++) {
        c[i].logit = expf((c[i].logit - max_logit) / s->p.temp);
        sum += c[i].logit;
    }
    for (int i = 0; i < n; i++) c[i].logit = (float)(c[i].logit / sum);
    if (s->p.top_p < 1.0f) {
        double cum = 0.0;
        for (int i = 0; i < n; i++) {
            cum += c[i].logit;
            if (cum >= s->p.top_p) {
                n = i + 1;
                break;
            }
        }
    }
    if (s->p.min_p > 0.0f) {
        const float floor_p = c[0].logit * s->p.min_p;
        int keep = 1;
        while (keep < n && c[keep].logit >= floor_p) keep++;
        n = keep;
    }
    double total = 0.0;
    for (int i = 0; i < n; i++) total += c[i].logit;
    double r = rng_uniform(&s->rng) * total, acc = 0.0;
    for (int i = 0; i < n; i++) {
        acc += c[i].logit;
        if (r < acc) return c[i].id;
    }
    return c[n - 1].id;
}
