/*
 * Samplers: greedy is the argmax; top-k / top-p / min-p never return a token
 * outside the set their definition allows; the repetition penalty follows
 * llama.cpp's rule (positive logits divided, negative multiplied); the same
 * seed gives the same sequence; and draws follow the softmax distribution
 * (checked with a chi-square bound on a fixed seed).
 */
#include "test.h"

#include "pocketllm.h"

#include <math.h>

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
    TEST_END();
}
