/*
 * Samplers: repetition penalty -> top-k -> temperature softmax -> top-p ->
 * min-p -> draw, in llama.cpp's order. temp <= 0 is greedy argmax (after the
 * penalty). The RNG is splitmix64/xorshift seeded by the caller, so the same
 * seed and logits give the same tokens on every platform.
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
    cand *cands;
    int cands_cap;
};

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

static int cand_desc(const void *a, const void *b) {
    const cand *x = a, *y = b;
    if (x->logit != y->logit) return x->logit < y->logit ? 1 : -1;
    return x->id - y->id; /* stable tie-break: lower id first */
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
        s->cands_cap = n_vocab;
    }
    cand *c = s->cands;
    int n = n_vocab;
    for (int i = 0; i < n; i++) {
        c[i].id = i;
        c[i].logit = penalized(s, i, logits[i]);
    }
    if (s->p.temp <= 0) {
        int best = 0;
        for (int i = 1; i < n; i++)
            if (c[i].logit > c[best].logit) best = i;
        return c[best].id;
    }
    qsort(c, (size_t)n, sizeof *c, cand_desc);
    if (s->p.top_k > 0 && s->p.top_k < n) n = s->p.top_k;
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
