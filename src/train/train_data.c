/*
 * Training data: a text file tokenized once with the model's own tokenizer
 * (or a file of token ids), and micro-batches cut from it. A window is T+1
 * consecutive ids: inputs are the first T, targets the last T. Position 0's
 * input is replaced by BOS when the vocabulary has one, as llama.cpp's
 * perplexity evaluates chunks, so training and evaluation see alike.
 * The random source is splitmix64: small, seedable, the same everywhere.
 */
#include "train.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

uint64_t train_rng_next(uint64_t *s) {
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* Box-Muller on two uniforms in (0, 1]. */
float train_rng_normal(uint64_t *s) {
    const double u1 = ((train_rng_next(s) >> 11) + 1.0) / 9007199254740992.0;
    const double u2 = (train_rng_next(s) >> 11) / 9007199254740992.0;
    return (float)(sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2));
}

static pl_status td_read(const char *path, char **buf, size_t *len) {
    FILE *fp = fopen(path, "rb");
    if (!fp) return pl_fail(PL_ERR_IO, "train: cannot open %s: %s", path, strerror(errno));
    pl_status st = PL_OK;
    char *b = NULL;
    long sz = -1;
    if (fseek(fp, 0, SEEK_END) == 0) sz = ftell(fp);
    if (sz < 0 || fseek(fp, 0, SEEK_SET) != 0) {
        st = pl_fail(PL_ERR_IO, "train: cannot size %s", path);
        goto out;
    }
    b = malloc((size_t)sz + 1);
    if (!b) {
        st = pl_fail(PL_ERR_NOMEM, "train: cannot hold %s (%ld bytes)", path, sz);
        goto out;
    }
    if (fread(b, 1, (size_t)sz, fp) != (size_t)sz) {
        st = pl_fail(PL_ERR_IO, "train: cannot read %s", path);
        free(b);
        b = NULL;
        goto out;
    }
    b[sz] = 0;
    *buf = b;
    *len = (size_t)sz;
out:
    fclose(fp);
    return st;
}

pl_status train_data_from_text(const pl_model *tok, const char *path, train_data *out) {
    memset(out, 0, sizeof *out);
    char *text;
    size_t len;
    pl_status st = td_read(path, &text, &len);
    if (st) return st;
    if (len > (size_t)INT32_MAX - 16) {
        free(text);
        return pl_fail(PL_ERR_UNSUPPORTED, "train: %s is larger than 2 GB", path);
    }
    /* usually fewer tokens than bytes; byte fallback of a 3-byte U+2581 can
     * give more, and then the tokenizer says how many it needs */
    int cap = (int)len + 16, n = 0;
    for (int attempt = 0; attempt < 2; attempt++) {
        out->ids = malloc(sizeof(int32_t) * (size_t)cap);
        if (!out->ids) {
            free(text);
            return pl_fail(PL_ERR_NOMEM, "train: no memory for the tokens of %s", path);
        }
        st = pl_tokenize(tok, text, len, pl_model_add_bos(tok), 0, out->ids, cap, &n);
        if (st != PL_ERR_INVALID_ARG || n <= cap) break;
        free(out->ids);
        out->ids = NULL;
        cap = n;
    }
    free(text);
    if (st) {
        train_data_free(out);
        return pl_fail_prefix(st, "train: tokenizing %s", path);
    }
    out->n = n;
    return PL_OK;
}

pl_status train_data_from_ids(const char *path, int n_vocab, train_data *out) {
    memset(out, 0, sizeof *out);
    char *text;
    size_t len;
    pl_status st = td_read(path, &text, &len);
    if (st) return st;
    size_t cap = len / 2 + 1;
    out->ids = malloc(sizeof(int32_t) * cap);
    if (!out->ids) {
        free(text);
        return pl_fail(PL_ERR_NOMEM, "train: no memory for the ids of %s", path);
    }
    char *s = text;
    while (*s) {
        while (*s == ' ' || *s == '\n' || *s == '\t' || *s == '\r' || *s == ',') s++;
        if (!*s) break;
        char *end;
        errno = 0;
        long v = strtol(s, &end, 10);
        if (end == s || errno || v < 0 || v >= n_vocab) {
            st = pl_fail(PL_ERR_FORMAT, "train: %s: token id #%lld ('%.12s') is not an id below %d", path,
                         (long long)out->n, s, n_vocab);
            free(text);
            train_data_free(out);
            return st;
        }
        out->ids[out->n++] = (int32_t)v;
        s = end;
    }
    free(text);
    return PL_OK;
}

void train_data_free(train_data *d) {
    free(d->ids);
    d->ids = NULL;
    d->n = 0;
}

void train_data_batch(const train_data *d, int B, int T, uint64_t *rng, int64_t sequential_index, int32_t bos,
                      int32_t *tokens, int32_t *targets) {
    const int64_t span = d->n - T; /* valid window starts: 0 .. span-1 (needs T+1 ids) */
    for (int b = 0; b < B; b++) {
        int64_t start;
        if (sequential_index < 0)
            start = span > 0 ? (int64_t)(train_rng_next(rng) % (uint64_t)span) : 0;
        else
            start = span > 0 ? ((sequential_index * B + b) * (int64_t)T) % span : 0;
        for (int t = 0; t < T; t++) {
            const int64_t i = start + t;
            tokens[b * T + t] = d->ids[i % d->n];
            targets[b * T + t] = d->ids[(i + 1) % d->n];
        }
        if (bos >= 0) tokens[b * T] = bos;
    }
}
