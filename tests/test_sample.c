/*
 * Samplers: greedy is the argmax; top-k / top-p / min-p never return a token
 * outside the set their definition allows; the repetition penalty follows
 * llama.cpp's rule (positive logits divided, negative multiplied); the same
 * seed gives the same sequence; draws follow the softmax distribution
 * (checked with a chi-square bound on a fixed seed); and the sampler's
 * partial selection (heap top-k, radix order) draws the very tokens the
 * full-sort sampler it replaced draws, for many seeds and settings.
 */
#include "test.h"

#include "pocketllm.h"

#include <math.h>
#include <stdlib.h>

enum { NV = 16 };
static float g_logits[NV];

static void setup_logits(void) {
    for (int i = 0; i < NV; i++) g_logits[i] = 0.25f * (float)((i * 7) % NV) - 1.0f; /* a permutation */
}

static int argmax(void) {
    int b = 0;
    for (int i = 1; i < NV; i++)
        if (g_logits[i] > g_logits[b]) b = i;
    return b;
}

static pl_sampler *make(float temp, int top_k, float top_p, float min_p, uint64_t seed) {
    pl_sampler_params p = pl_sampler_default_params();
    p.temp = temp;
    p.top_k = top_k;
    p.top_p = top_p;
    p.min_p = min_p;
    p.seed = seed;
    pl_sampler *s = NULL;
    if (pl_sampler_new(&p, &s) != PL_OK) return NULL;
    return s;
}

/* ------------------------------------------------------------ reference */

/* The sampler as it was before partial selection: every candidate sorted by
 * qsort (logit descending, lower id first), then the same steps. Kept here as
 * the reference the selecting sampler must agree with token for token. */
typedef struct ref_cand {
    float logit;
    pl_token id;
} ref_cand;

static int ref_desc(const void *a, const void *b) {
    const ref_cand *x = a, *y = b;
    if (x->logit != y->logit) return x->logit < y->logit ? 1 : -1;
    return x->id - y->id;
}

static uint64_t ref_rng_next(uint64_t *s) {
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static pl_token ref_sample(const pl_sampler_params *sp, uint64_t *rng, const pl_token *recent, int n_recent,
                           const float *logits, int n_vocab, ref_cand *c) {
    int n = n_vocab;
    for (int i = 0; i < n; i++) {
        float l = logits[i];
        if (sp->repeat_penalty != 1.0f)
            for (int j = 0; j < n_recent; j++)
                if (recent[j] == i) {
                    l = l > 0 ? l / sp->repeat_penalty : l * sp->repeat_penalty;
                    break;
                }
        c[i] = (ref_cand){l, i};
    }
    qsort(c, (size_t)n, sizeof *c, ref_desc);
    if (sp->top_k > 0 && sp->top_k < n) n = sp->top_k;
    double sum = 0.0;
    const float max_logit = c[0].logit;
    for (int i = 0; i < n; i++) {
        c[i].logit = expf((c[i].logit - max_logit) / sp->temp);
        sum += c[i].logit;
    }
    for (int i = 0; i < n; i++) c[i].logit = (float)(c[i].logit / sum);
    if (sp->top_p < 1.0f) {
        double cum = 0.0;
        for (int i = 0; i < n; i++) {
            cum += c[i].logit;
            if (cum >= sp->top_p) {
                n = i + 1;
                break;
            }
        }
    }
    if (sp->min_p > 0.0f) {
        const float floor_p = c[0].logit * sp->min_p;
        int keep = 1;
        while (keep < n && c[keep].logit >= floor_p) keep++;
        n = keep;
    }
    double total = 0.0;
    for (int i = 0; i < n; i++) total += c[i].logit;
    double r = (double)(ref_rng_next(rng) >> 11) * (1.0 / 9007199254740992.0) * total, acc = 0.0;
    for (int i = 0; i < n; i++) {
        acc += c[i].logit;
        if (r < acc) return c[i].id;
    }
    return c[n - 1].id;
}

static double gauss(uint64_t *s) {
    const double u = ((double)(ref_rng_next(s) >> 11) + 0.5) / 9007199254740992.0;
    const double v = (double)(ref_rng_next(s) >> 11) / 9007199254740992.0;
    return sqrt(-2.0 * log(u)) * cos(6.283185307179586 * v);
}

/* Random logits of several shapes: smooth, peaked, many exact ties (rounded
 * to quarters, +0 and -0 among them), masked tokens (-inf). */
static void random_logits(float *l, int n, int shape, uint64_t *g) {
    for (int i = 0; i < n; i++) {
        double x = gauss(g);
        if (shape == 1) x *= 6.0;
        if (shape == 2) x = floor(x * 4.0) / 4.0;
        l[i] = (float)x;
        if (shape == 2 && l[i] == 0.0f && (i & 1)) l[i] = -0.0f;
        if (shape == 3 && ref_rng_next(g) % 3 == 0) l[i] = -INFINITY;
    }
}

static void test_selection_matches_full_sort(void) {
    static const int vocabs[] = {7, 300, 32000};
    static const int ks[] = {0, 1, 3, 40, 299, 600, 40000};
    static const float temps[] = {0.3f, 0.8f, 1.7f}, top_ps[] = {1.0f, 0.95f, 0.5f}, min_ps[] = {0.0f, 0.05f};
    float *logits = malloc(sizeof(float) * 32000);
    ref_cand *rc = malloc(sizeof(ref_cand) * 32000);
    REQUIRE(logits && rc, "oom");
    uint64_t g = 12345;
    int cases = 0, draws = 0, mismatches = 0;
    for (size_t v = 0; v < sizeof vocabs / sizeof vocabs[0]; v++)
        for (size_t k = 0; k < sizeof ks / sizeof ks[0]; k++)
            for (int combo = 0; combo < 18; combo++) {
                const int nv = vocabs[v];
                pl_sampler_params sp = pl_sampler_default_params();
                sp.top_k = ks[k];
                sp.temp = temps[combo % 3];
                sp.top_p = top_ps[(combo / 3) % 3];
                sp.min_p = min_ps[(combo / 9) % 2];
                sp.repeat_penalty = combo % 4 == 1 ? 1.3f : 1.0f;
                sp.repeat_last_n = 16;
                sp.seed = ref_rng_next(&g);
                const int shape = (int)((k + (size_t)combo) % 4);
                if (nv == 32000 && combo % 3) continue; /* the large vocabulary at a third of the settings */
                pl_sampler *s = NULL;
                REQUIRE(pl_sampler_new(&sp, &s) == PL_OK, "%s", pl_last_error());
                uint64_t rng = sp.seed;
                pl_token recent[16];
                int n_recent = 0, head = 0;
                for (int t = 0; t < 12; t++) {
                    random_logits(logits, nv, shape, &g);
                    const pl_token want = ref_sample(&sp, &rng, recent, n_recent, logits, nv, rc);
                    const pl_token got = pl_sampler_sample(s, logits, nv);
                    if (got != want && mismatches++ < 5)
                        CHECK(0, "V %d k %d temp %g top_p %g min_p %g shape %d draw %d: %d, full sort %d", nv, sp.top_k,
                              (double)sp.temp, (double)sp.top_p, (double)sp.min_p, shape, t, got, want);
                    pl_sampler_accept(s, want);
                    recent[head] = want;
                    head = (head + 1) % 16;
                    if (n_recent < 16) n_recent++;
                    draws++;
                }
                pl_sampler_free(s);
                cases++;
            }
    printf("   %d settings, %d draws: %d differ from the full sort\n", cases, draws, mismatches);
    CHECK(mismatches == 0, "%d of %d draws differ", mismatches, draws);
    free(logits);
    free(rc);
}

static void test_greedy_is_argmax(void) {
    pl_sampler *s = make(0.0f, 0, 1.0f, 0.0f, 1);
    REQUIRE(s, "new");
    for (int i = 0; i < 10; i++) CHECK(pl_sampler_sample(s, g_logits, NV) == argmax(), "greedy");
    pl_sampler_free(s);
}

static void test_top_k_one_is_argmax(void) {
    pl_sampler *s = make(1.5f, 1, 1.0f, 0.0f, 7);
    REQUIRE(s, "new");
    for (int i = 0; i < 200; i++) CHECK(pl_sampler_sample(s, g_logits, NV) == argmax(), "top_k=1");
    pl_sampler_free(s);
}

static void test_top_k_restricts(void) {
    pl_sampler *s = make(5.0f, 3, 1.0f, 0.0f, 9);
    REQUIRE(s, "new");
    /* the 3 largest logits */
    int seen_other = 0, seen[NV] = {0};
    for (int i = 0; i < 2000; i++) {
        int t = pl_sampler_sample(s, g_logits, NV);
        seen[t]++;
        int rank = 0;
        for (int j = 0; j < NV; j++) rank += g_logits[j] > g_logits[t];
        if (rank >= 3) seen_other++;
    }
    CHECK(seen_other == 0, "%d draws outside the top 3", seen_other);
    int distinct = 0;
    for (int j = 0; j < NV; j++) distinct += seen[j] > 0;
    CHECK(distinct == 3, "high temperature reaches all 3 (%d)", distinct);
    pl_sampler_free(s);
}

static void test_min_p_and_top_p(void) {
    /* probabilities at temp 1: min_p = 0.5 keeps tokens with p >= 0.5 * p_max */
    double pmax = 0, z = 0;
    for (int i = 0; i < NV; i++) z += exp(g_logits[i]);
    for (int i = 0; i < NV; i++) pmax = fmax(pmax, exp(g_logits[i]) / z);
    pl_sampler *s = make(1.0f, 0, 1.0f, 0.5f, 3);
    REQUIRE(s, "new");
    int bad = 0;
    for (int i = 0; i < 2000; i++) {
        int t = pl_sampler_sample(s, g_logits, NV);
        if (exp(g_logits[t]) / z < 0.5 * pmax - 1e-9) bad++;
    }
    CHECK(bad == 0, "min_p let through %d low tokens", bad);
    pl_sampler_free(s);

    /* top_p = 0.3: the smallest prefix (by probability) reaching 0.3 */
    s = make(1.0f, 0, 0.3f, 0.0f, 4);
    REQUIRE(s, "new");
    double sorted[NV];
    for (int i = 0; i < NV; i++) sorted[i] = exp(g_logits[i]) / z;
    for (int i = 0; i < NV; i++)
        for (int j = i + 1; j < NV; j++)
            if (sorted[j] > sorted[i]) { double t = sorted[i]; sorted[i] = sorted[j]; sorted[j] = t; }
    int keep = 0;
    double cum = 0;
    while (cum < 0.3) cum += sorted[keep++];
    double threshold = sorted[keep - 1];
    bad = 0;
    for (int i = 0; i < 2000; i++) {
        int t = pl_sampler_sample(s, g_logits, NV);
        if (exp(g_logits[t]) / z < threshold - 1e-9) bad++;
    }
    CHECK(bad == 0, "top_p let through %d tokens beyond the nucleus", bad);
    pl_sampler_free(s);
}

static void test_seed_determinism(void) {
    pl_sampler *a = make(1.0f, 0, 1.0f, 0.0f, 1234), *b = make(1.0f, 0, 1.0f, 0.0f, 1234),
               *c = make(1.0f, 0, 1.0f, 0.0f, 999);
    REQUIRE(a && b && c, "new");
    int same = 1, differs = 0;
    for (int i = 0; i < 100; i++) {
        int x = pl_sampler_sample(a, g_logits, NV), y = pl_sampler_sample(b, g_logits, NV),
            w = pl_sampler_sample(c, g_logits, NV);
        same &= x == y;
        differs |= x != w;
    }
    CHECK(same, "same seed, same tokens");
    CHECK(differs, "another seed gives another sequence");
    pl_sampler_reset(a);
    pl_sampler_reset(b);
    CHECK(pl_sampler_sample(a, g_logits, NV) == pl_sampler_sample(b, g_logits, NV), "after reset");
    pl_sampler_free(a);
    pl_sampler_free(b);
    pl_sampler_free(c);
}

static void test_distribution_follows_softmax(void) {
    pl_sampler *s = make(1.0f, 0, 1.0f, 0.0f, 2024);
    REQUIRE(s, "new");
    enum { N = 40000 };
    int counts[NV] = {0};
    for (int i = 0; i < N; i++) counts[pl_sampler_sample(s, g_logits, NV)]++;
    double z = 0, chi2 = 0;
    for (int i = 0; i < NV; i++) z += exp(g_logits[i]);
    for (int i = 0; i < NV; i++) {
        double e = N * exp(g_logits[i]) / z;
        chi2 += (counts[i] - e) * (counts[i] - e) / e;
    }
    /* 15 degrees of freedom: P(chi2 > 37.7) = 0.001 */
    CHECK(chi2 < 37.7, "chi-square %.1f against the softmax", chi2);
    pl_sampler_free(s);
}

static void test_repeat_penalty(void) {
    pl_sampler_params p = pl_sampler_default_params();
    p.temp = 0;
    p.repeat_penalty = 100.0f;
    p.repeat_last_n = 4;
    pl_sampler *s = NULL;
    REQUIRE(pl_sampler_new(&p, &s) == PL_OK, "new");
    int first = pl_sampler_sample(s, g_logits, NV);
    CHECK(first == argmax(), "no history: argmax");
    pl_sampler_accept(s, first);
    int second = pl_sampler_sample(s, g_logits, NV);
    CHECK(second != first, "a penalised positive logit loses to the runner-up");
    /* the history window forgets after repeat_last_n tokens */
    for (int i = 0; i < 4; i++) pl_sampler_accept(s, (first + 1 + i) % NV == first ? 0 : (first + 1 + i) % NV);
    CHECK(pl_sampler_sample(s, g_logits, NV) == first, "forgotten after the window");
    pl_sampler_free(s);

    p.repeat_last_n = -1;
    CHECK(pl_sampler_new(&p, &s) == PL_ERR_INVALID_ARG, "negative window rejected");
}

int main(void) {
    setup_logits();
    RUN(test_greedy_is_argmax);
    RUN(test_top_k_one_is_argmax);
    RUN(test_top_k_restricts);
    RUN(test_min_p_and_top_p);
    RUN(test_seed_determinism);
    RUN(test_distribution_follows_softmax);
    RUN(test_repeat_penalty);
    RUN(test_selection_matches_full_sort);
    TEST_END();
}
