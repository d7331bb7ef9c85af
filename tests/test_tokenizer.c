/*
 * Tokenizer tests against references we did not write:
 *  - llama.cpp's tokenizer suite (../shared/tokenizer/ggml-vocab-*.gguf with
 *    .inp strings and .out ids): every string must give exactly the expected
 *    ids (no BOS, special text not parsed), and decoding the expected ids
 *    must give the string back;
 *  - Hugging Face's tokenization of the KJV prompts and windows
 *    (../shared/models/kjv-llama.hf.json) with the same SentencePiece vocab;
 *  - round trips on the whole KJV training text and on random bytes, special
 *    token parsing, end-of-generation ids, and hostile vocabularies built in
 *    memory (which must fail with PL_ERR_FORMAT or tokenize without crashing).
 */
#include "test.h"

#include "gguf/gguf.h"
#include "tokenizer/tokenizer.h"

#include <stdint.h>

static char *read_all(const char *path, size_t *len) {
    FILE *fp = fopen(path, "rb");
    if (!fp) return NULL;
    fseek(fp, 0, SEEK_END);
    long n = ftell(fp);
    fseek(fp, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    if (buf && fread(buf, 1, (size_t)n, fp) != (size_t)n) {
        free(buf);
        buf = NULL;
    }
    fclose(fp);
    if (buf) buf[n] = 0;
    if (len) *len = (size_t)n;
    return buf;
}

/* Load a vocabulary from ../shared; NULL (after SKIP-worthy message) when absent. */
static tokenizer *load_vocab(const char *rel, gguf_file **gf) {
    const char *path = shared_path(rel);
    if (!path) return NULL;
    tokenizer *t = NULL;
    if (gguf_open(path, gf) != PL_OK) {
        fprintf(stderr, "  gguf_open %s: %s\n", path, pl_last_error());
        return NULL;
    }
    if (tok_load(*gf, &t) != PL_OK) {
        fprintf(stderr, "  tok_load %s: %s\n", path, pl_last_error());
        gguf_close(*gf);
        *gf = NULL;
        return NULL;
    }
    return t;
}

/* Tokenize into a malloc'd array (*n ids); NULL on failure. */
static pl_token *encode(const tokenizer *t, const char *s, size_t len, bool bos, bool special, int *n) {
    int need = 0;
    pl_status st = tok_encode(t, s, len, bos, special, NULL, 0, &need);
    if (st != PL_OK && st != PL_ERR_INVALID_ARG) return NULL;
    pl_token *ids = malloc(sizeof *ids * (size_t)(need + 1));
    if (!ids) return NULL;
    if (tok_encode(t, s, len, bos, special, ids, need, n) != PL_OK || *n != need) {
        free(ids);
        return NULL;
    }
    return ids;
}

static char *decode(const tokenizer *t, const pl_token *ids, int n, int *len) {
    int need = tok_decode(t, ids, n, NULL, 0);
    char *buf = malloc((size_t)need + 1);
    if (!buf) return NULL;
    *len = tok_decode(t, ids, n, buf, need + 1);
    return buf;
}

/* ------------------------------------------------ llama.cpp's vocab suite */

static void check_vocab_suite(const char *name) {
    char rel[256], inp_rel[256], out_rel[256];
    snprintf(rel, sizeof rel, "tokenizer/ggml-vocab-%s.gguf", name);
    snprintf(inp_rel, sizeof inp_rel, "tokenizer/ggml-vocab-%s.gguf.inp", name);
    snprintf(out_rel, sizeof out_rel, "tokenizer/ggml-vocab-%s.gguf.out", name);
    if (!shared_path(rel) || !shared_path(inp_rel) || !shared_path(out_rel)) SKIP("../shared/%s absent", rel);
    gguf_file *gf = NULL;
    tokenizer *t = load_vocab(rel, &gf);
    REQUIRE(t, "loading %s", rel);
    size_t n_inp, n_out;
    char *inp = read_all(shared_path(inp_rel), &n_inp);
    char *out = read_all(shared_path(out_rel), &n_out);
    REQUIRE(inp && out, "reading the .inp/.out files");

    /* Strings end with "\n__ggml_vocab_test__\n" (llama.cpp's test-tokenizer-0
     * splits on exactly that); .out has one line of ids per string. */
    static const char sep[] = "\n__ggml_vocab_test__\n";
    int n_tests = 0, n_ids_ok = 0, n_enc_round = 0, n_dec_ok = 0;
    char *p = inp, *line = out;
    while (p < inp + n_inp && *line) {
        char *end = strstr(p, sep);
        size_t slen = end ? (size_t)(end - p) : strlen(p);
        char *eol = strchr(line, '\n');
        if (eol) *eol = 0;
        pl_token want[512];
        int n_want = 0;
        for (char *q = line; *q && n_want < 512;) {
            char *e;
            long v = strtol(q, &e, 10);
            if (e == q) break;
            want[n_want++] = (pl_token)v;
            q = e;
        }
        n_tests++;

        int n_got = 0;
        pl_token *got = encode(t, p, slen, false, false, &n_got);
        bool same = got && n_got == n_want && memcmp(got, want, sizeof *got * (size_t)n_want) == 0;
        n_ids_ok += same;
        if (!same) {
            fprintf(stderr, "  %s #%d '%.*s'\n    want:", name, n_tests, (int)slen, p);
            for (int i = 0; i < n_want; i++) fprintf(stderr, " %d", want[i]);
            fprintf(stderr, "\n    got: ");
            for (int i = 0; got && i < n_got; i++) fprintf(stderr, " %d", got[i]);
            fputc('\n', stderr);
        }
        int dlen = 0;
        char *back = got ? decode(t, got, n_got, &dlen) : NULL;
        n_enc_round += back && (size_t)dlen == slen && memcmp(back, p, slen) == 0;
        free(back);
        back = decode(t, want, n_want, &dlen);
        bool dec_ok = back && (size_t)dlen == slen && memcmp(back, p, slen) == 0;
        n_dec_ok += dec_ok;
        if (!dec_ok) fprintf(stderr, "  %s #%d: the reference ids decode to '%s'\n", name, n_tests, back ? back : "?");
        free(back);
        free(got);

        p += slen + (end ? sizeof sep - 1 : 0);
        line = eol ? eol + 1 : line + strlen(line);
    }
    printf("     %-13s %d/%d ids match, %d/%d round trips, %d/%d reference ids decode to the string\n", name,
           n_ids_ok, n_tests, n_enc_round, n_tests, n_dec_ok, n_tests);
    CHECK(n_tests == 46, "%s: %d test strings (expected 46)", name, n_tests);
    CHECK(n_ids_ok == n_tests, "%s: %d of %d strings tokenize as llama.cpp does", name, n_ids_ok, n_tests);
    CHECK(n_enc_round == n_tests, "%s: %d of %d round trips", name, n_enc_round, n_tests);
    CHECK(n_dec_ok == n_tests, "%s: %d of %d reference decodes", name, n_dec_ok, n_tests);
    free(inp);
    free(out);
    tok_free(t);
    gguf_close(gf);
}

static void test_vocab_llama_spm(void) { check_vocab_suite("llama-spm"); }
static void test_vocab_gpt2(void) { check_vocab_suite("gpt-2"); }
static void test_vocab_falcon(void) { check_vocab_suite("falcon"); }
static void test_vocab_starcoder(void) { check_vocab_suite("starcoder"); }
static void test_vocab_mpt(void) { check_vocab_suite("mpt"); }
static void test_vocab_deepseek_llm(void) { check_vocab_suite("deepseek-llm"); }

/* --------------------------------------- Hugging Face on the KJV model vocab */

/* The ids after `key` ("[1, 2, 3]") in JSON text; returns the count. */
static int json_ids(const char *json, const char *key, const char **cursor, pl_token *ids, int cap) {
    const char *p = strstr(*cursor, key);
    if (!p || !(p = strchr(p, '['))) return -1;
    int n = 0;
    p++;
    while (*p && *p != ']') {
        char *e;
        long v = strtol(p, &e, 10);
        if (e == p) break;
        if (n < cap) ids[n] = (pl_token)v;
        n++;
        p = e;
        while (*p == ',' || *p == ' ') p++;
    }
    *cursor = p;
    (void)json;
    return n;
}

/* The JSON string value after `key`, unescaped (only \n, \" and \\ occur). */
static int json_str(const char **cursor, const char *key, char *out, int cap) {
    const char *p = strstr(*cursor, key);
    if (!p) return -1;
    p = strchr(p + strlen(key), '"');
    if (!p) return -1;
    p++;
    int n = 0;
    for (; *p && *p != '"'; p++) {
        char c = *p;
        if (c == '\\') {
            p++;
            c = *p == 'n' ? '\n' : *p;
        }
        if (n < cap - 1) out[n++] = c;
    }
    out[n] = 0;
    *cursor = p;
    return n;
}

static void test_hf_kjv_prompts(void) {
    const char *json_path = shared_path("models/kjv-llama.hf.json");
    if (!json_path || !shared_path("models/kjv-llama-q8_0.gguf")) SKIP("../shared/models absent");
    gguf_file *gf = NULL;
    tokenizer *t = load_vocab("models/kjv-llama-q8_0.gguf", &gf);
    REQUIRE(t, "loading the KJV model's vocabulary");
    char *json = read_all(json_path, NULL);
    REQUIRE(json, "reading %s", json_path);
    const char *cur = strstr(json, "\"greedy\"");
    REQUIRE(cur, "no greedy section");
    int n_prompts = 0;
    char prompt[512], text[4096];
    pl_token want[256], gen[256];
    while (json_str(&cur, "\"prompt\"", prompt, sizeof prompt) >= 0) {
        int n_want = json_ids(json, "\"prompt_tokens\"", &cur, want, 256);
        int n_gen = json_ids(json, "\"tokens\"", &cur, gen, 256);
        int n_text = json_str(&cur, "\"text\"", text, sizeof text);
        REQUIRE(n_want > 0 && n_gen > 0 && n_text >= 0, "parsing greedy entry %d", n_prompts);
        n_prompts++;
        int n = 0;
        pl_token *got = encode(t, prompt, strlen(prompt), true, false, &n);
        CHECK(got && n == n_want && !memcmp(got, want, sizeof *got * (size_t)n), "prompt '%s' tokenizes as HF does",
              prompt);
        free(got);
        int dlen = 0;
        char *back = decode(t, gen, n_gen, &dlen);
        CHECK(back && !strcmp(back, text), "HF's generated ids decode to '%s', got '%s'", text, back ? back : "?");
        free(back);
    }
    CHECK(n_prompts == 3, "%d greedy prompts", n_prompts);

    /* Windows: 64 ids (BOS first) of the validation text. Decoding one must
     * give a verbatim stretch of kjv-val.txt, and tokenizing the text from
     * there must give the window's ids again. */
    char *val = read_all(shared_path("text/kjv-val.txt"), NULL);
    REQUIRE(val, "reading text/kjv-val.txt");
    cur = strstr(json, "\"windows\"");
    REQUIRE(cur, "no windows section");
    int n_windows = 0;
    pl_token win[64];
    while (n_windows < 3 && json_ids(json, "\"tokens\"", &cur, win, 64) == 64) {
        n_windows++;
        int dlen = 0;
        char *s = decode(t, win, 64, &dlen);
        REQUIRE(s, "decode");
        /* the window may end inside a word: look for all but its last token */
        int plen = 0;
        char *prefix = decode(t, win, 63, &plen);
        const char *at = prefix ? strstr(val, prefix) : NULL;
        CHECK(at, "window %d decodes to text found in kjv-val.txt", n_windows);
        if (at) {
            size_t rest = strlen(at) < 4096 ? strlen(at) : 4096;
            int n = 0;
            pl_token *got = encode(t, at, rest, true, false, &n);
            CHECK(got && n >= 64 && !memcmp(got, win, sizeof *got * 63),
                  "window %d: tokenizing the text again gives HF's ids", n_windows);
            free(got);
        }
        free(prefix);
        free(s);
    }
    CHECK(n_windows == 3, "%d windows", n_windows);
    free(val);
    free(json);
    tok_free(t);
    gguf_close(gf);
}

/* --------------------------------------------------------------- behaviour */

static void test_kjv_train_round_trip(void) {
    const char *path = shared_path("text/kjv-train.txt");
    if (!path || !shared_path("tokenizer/ggml-vocab-llama-spm.gguf")) SKIP("../shared absent");
    gguf_file *gf = NULL;
    tokenizer *t = load_vocab("tokenizer/ggml-vocab-llama-spm.gguf", &gf);
    REQUIRE(t, "load");
    size_t len;
    char *text = read_all(path, &len);
    REQUIRE(text, "reading kjv-train.txt");
    double t0 = pl_time_ms();
    int n = 0;
    pl_token *ids = encode(t, text, len, true, false, &n);
    double ms = pl_time_ms() - t0;
    REQUIRE(ids, "tokenizing kjv-train.txt: %s", pl_last_error());
    printf("     kjv-train.txt: %zu bytes -> %d tokens in %.0f ms\n", len, n, ms);
    CHECK(n > (int)(len / 8) && n < (int)len, "%d tokens for %zu bytes", n, len);
    CHECK(ids[0] == tok_bos(t), "BOS first");
    int dlen = 0;
    char *back = decode(t, ids, n, &dlen);
    CHECK(back && (size_t)dlen == len && !memcmp(back, text, len), "decode(encode(kjv-train.txt)) is the text");
    free(back);
    free(ids);
    free(text);
    tok_free(t);
    gguf_close(gf);
}

static void test_special_tokens(void) {
    if (!shared_path("tokenizer/ggml-vocab-llama-spm.gguf") || !shared_path("tokenizer/ggml-vocab-gpt-2.gguf"))
        SKIP("../shared absent");
    gguf_file *gf = NULL;
    tokenizer *t = load_vocab("tokenizer/ggml-vocab-llama-spm.gguf", &gf);
    REQUIRE(t, "load");
    int n1 = 0, n2 = 0, n3 = 0;
    pl_token *plain = encode(t, "Hello", 5, false, false, &n1);
    pl_token *parsed = encode(t, "<s>Hello", 8, false, true, &n2);
    pl_token *unparsed = encode(t, "<s>Hello", 8, false, false, &n3);
    REQUIRE(plain && parsed && unparsed, "encode");
    /* "<s>" parsed is BOS, and the text after it gets the space prefix again */
    CHECK(n2 == n1 + 1 && parsed[0] == tok_bos(t) && !memcmp(parsed + 1, plain, sizeof *plain * (size_t)n1),
          "parse_special: <s>Hello = BOS + tokens of Hello");
    bool has_bos = false;
    for (int i = 0; i < n3; i++) has_bos |= unparsed[i] == tok_bos(t);
    CHECK(!has_bos, "without parse_special, '<s>' is plain text");
    CHECK(tok_is_eog(t, tok_eos(t)) && !tok_is_eog(t, tok_bos(t)) && !tok_is_eog(t, plain[0]), "EOG ids");
    CHECK(tok_add_bos(t) && tok_bos(t) == 1 && tok_eos(t) == 2, "SentencePiece BOS/EOS from the file");
    char buf[32];
    CHECK(tok_piece(t, tok_eos(t), buf, sizeof buf) == 0, "control tokens render as nothing");
    int k = tok_piece_ex(t, tok_eos(t), true, buf, sizeof buf);
    CHECK(k == 4 && !memcmp(buf, "</s>", 4), "... unless asked for their text");
    CHECK(tok_piece(t, 13, buf, sizeof buf) == 1 && buf[0] == '\n', "<0x0A> is a newline byte");
    CHECK(tok_piece(t, -1, buf, sizeof buf) == -1 && tok_piece(t, tok_n_vocab(t), buf, sizeof buf) == -1,
          "invalid ids give -1");
    pl_token two[2] = {tok_bos(t), plain[0]};
    int dlen = 0;
    char *s = decode(t, two, 2, &dlen);
    CHECK(s && !strcmp(s, "Hello"), "the space SentencePiece adds after BOS is dropped: '%s'", s ? s : "?");
    free(s);
    /* output capacity: too small reports the count needed */
    int need = 0;
    pl_token small[1];
    CHECK(tok_encode(t, "Hello world", 11, true, false, small, 1, &need) == PL_ERR_INVALID_ARG && need == 3,
          "cap 1 for 3 tokens: PL_ERR_INVALID_ARG and the count (%d)", need);
    free(plain);
    free(parsed);
    free(unparsed);
    tok_free(t);
    gguf_close(gf);

    t = load_vocab("tokenizer/ggml-vocab-gpt-2.gguf", &gf);
    REQUIRE(t, "load gpt-2");
    CHECK(tok_is_eog(t, 50256) && !tok_add_bos(t), "<|endoftext|> ends generation; GPT-2 adds no BOS");
    pl_token *a = encode(t, "a<|endoftext|>b", 15, false, true, &n1);
    CHECK(a && n1 == 3 && a[1] == 50256, "parse_special finds <|endoftext|>");
    free(a);
    a = encode(t, "a<|endoftext|>b", 15, false, false, &n1);
    bool found = false;
    for (int i = 0; a && i < n1; i++) found |= a[i] == 50256;
    CHECK(a && !found && n1 > 3, "without parse_special it is text");
    free(a);
    tok_free(t);
    gguf_close(gf);
}

/* A real file with out-of-range ids in its metadata (padding and separator
 * ids are 0xFFFFFFFF) and a placeholder vocabulary of byte tokens. */
static void test_stories260k_vocab(void) {
    if (!shared_path("models/stories260K.gguf")) SKIP("../shared/models absent");
    gguf_file *gf = NULL;
    tokenizer *t = load_vocab("models/stories260K.gguf", &gf);
    REQUIRE(t, "loading stories260K.gguf");
    CHECK(tok_n_vocab(t) == 512 && tok_bos(t) == 1 && tok_eos(t) == 2 && tok_add_bos(t), "ids from the file");
    CHECK(tok_is_eog(t, 2) && !tok_is_eog(t, 0), "EOS is EOG");
    const char *s = "Once upon a time\n";
    int n = 0, dlen = 0;
    pl_token *ids = encode(t, s, strlen(s), true, false, &n);
    char *back = ids ? decode(t, ids, n, &dlen) : NULL;
    /* "▁" is no token here, so the escaped spaces (and the prefix) come back
     * as their bytes, as in llama.cpp and HF's ByteFallback decoder */
    const char *want = "\342\226\201Once\342\226\201upon\342\226\201a\342\226\201time\n";
    CHECK(ids && ids[0] == 1 && n == 1 + (int)strlen(want), "BOS then one byte token per byte (%d ids)", n);
    CHECK(back && !strcmp(back, want), "byte fallback decodes to the escaped text: '%s'", back ? back : "?");
    free(back);
    free(ids);
    tok_free(t);
    gguf_close(gf);
}

static uint64_t rng_next(uint64_t *s) {
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

/* Random bytes (often invalid UTF-8) never crash and always come back. */
static void test_random_round_trips(void) {
    static const char *const names[] = {"llama-spm", "gpt-2", "falcon", "starcoder", "mpt", "deepseek-llm"};
    static const char *const pieces[] = {" ", "  ", "\n", "\t", "a", "Z", "9", "'s", "!", "\xc3\xa9", "\xe2\x82\xac",
                                         "\xf0\x9f\xa6\x99", "\xe4\xb8\xad", "\x80", "\xff", "\xc3", "\xe2\x82",
                                         "<s>", "3333", ".", "\r\n", "\xe3\x80\x80"};
    bool any = false;
    for (size_t v = 0; v < sizeof names / sizeof names[0]; v++) {
        char rel[128];
        snprintf(rel, sizeof rel, "tokenizer/ggml-vocab-%s.gguf", names[v]);
        if (!shared_path(rel)) continue;
        any = true;
        gguf_file *gf = NULL;
        tokenizer *t = load_vocab(rel, &gf);
        REQUIRE(t, "load %s", rel);
        /* some byte-level vocabularies lack a few control bytes (falcon has
         * no token for 0x11): those vanish, as in llama.cpp, so strings with
         * them cannot come back */
        bool lost[256] = {0};
        for (int b = 0; b < 256; b++) {
            char one = (char)b;
            int n = 0, dlen = 0;
            pl_token *ids = encode(t, &one, 1, false, false, &n);
            char *back = ids ? decode(t, ids, n, &dlen) : NULL;
            lost[b] = !(back && dlen == 1 && back[0] == one);
            free(back);
            free(ids);
        }
        uint64_t seed = 0x9E3779B97F4A7C15ull + v;
        int bad = 0, skipped = 0;
        for (int iter = 0; iter < 400; iter++) {
            char s[256];
            size_t len = 0;
            int parts = (int)(rng_next(&seed) % 24);
            for (int k = 0; k < parts; k++) {
                if (rng_next(&seed) % 3 == 0) {
                    s[len++] = (char)(rng_next(&seed) & 0xFF);
                } else {
                    const char *p = pieces[rng_next(&seed) % (sizeof pieces / sizeof pieces[0])];
                    memcpy(s + len, p, strlen(p));
                    len += strlen(p);
                }
            }
            int n = 0, dlen = 0;
            pl_token *ids = encode(t, s, len, false, false, &n);
            char *back = ids ? decode(t, ids, n, &dlen) : NULL;
            bool ok = back && (size_t)dlen == len && !memcmp(back, s, len);
            bool has_lost = false;
            for (size_t i = 0; i < len; i++) has_lost |= lost[(unsigned char)s[i]];
            CHECK(ids != NULL, "%s: tokenizing random bytes failed: %s", names[v], pl_last_error());
            if (has_lost) ok = true, skipped++;
            /* SentencePiece cannot tell a literal U+2581 from a space */
            if (!ok && v == 0 && memmem(s, len, "\xe2\x96\x81", 3)) ok = true;
            if (!ok && bad++ < 3) {
                fprintf(stderr, "  %s: round trip failed for", names[v]);
                for (size_t i = 0; i < len; i++) fprintf(stderr, " %02x", (unsigned char)s[i]);
                fputc('\n', stderr);
            }
            free(back);
            free(ids);
        }
        int n_lost = 0;
        for (int b = 0; b < 256; b++) n_lost += lost[b];
        printf("     %-13s %d byte values have no token; %d of 400 random strings round-trip, %d skipped\n",
               names[v], n_lost, 400 - bad - skipped, skipped);
        CHECK(bad == 0, "%s: %d random strings did not round-trip", names[v], bad);
        CHECK(skipped < 200, "%s: %d of 400 strings had bytes the vocabulary lacks", names[v], skipped);
        tok_free(t);
        gguf_close(gf);
    }
    if (!any) SKIP("../shared/tokenizer absent");
}

/* ------------------------------------------------------- hostile vocabularies */

typedef struct vocab_spec {
    const char *model;
    const char *pre;
    const char *const *tokens;
    int n_tokens;
    int n_scores;            /* < n_tokens makes a short array; -1 = none */
    const int32_t *types;    /* NULL = none */
    const char *const *merges;
    int n_merges;            /* -1 = no merges key */
    int64_t bos;             /* -2 = no key */
    bool tokens_as_u32;      /* write tokens with the wrong type */
} vocab_spec;

static pl_status load_spec(const vocab_spec *v, gguf_file **gf, tokenizer **t) {
    gguf_writer *w = gguf_writer_new();
    *gf = NULL;
    *t = NULL;
    if (!w) return PL_ERR_NOMEM;
    gguf_writer_set_str(w, "general.architecture", "llama");
    if (v->model) gguf_writer_set_str(w, "tokenizer.ggml.model", v->model);
    if (v->pre) gguf_writer_set_str(w, "tokenizer.ggml.pre", v->pre);
    if (v->tokens_as_u32) gguf_writer_set_u32(w, "tokenizer.ggml.tokens", 7);
    else gguf_writer_set_arr(w, "tokenizer.ggml.tokens", GGUF_TYPE_STRING, v->tokens, (uint64_t)v->n_tokens);
    if (v->n_scores >= 0) {
        float sc[64] = {0};
        for (int i = 0; i < v->n_scores && i < 64; i++) sc[i] = -(float)i;
        gguf_writer_set_arr(w, "tokenizer.ggml.scores", GGUF_TYPE_FLOAT32, sc, (uint64_t)v->n_scores);
    }
    if (v->types) gguf_writer_set_arr(w, "tokenizer.ggml.token_type", GGUF_TYPE_INT32, v->types, (uint64_t)v->n_tokens);
    if (v->n_merges >= 0)
        gguf_writer_set_arr(w, "tokenizer.ggml.merges", GGUF_TYPE_STRING, v->merges, (uint64_t)v->n_merges);
    if (v->bos != -2) gguf_writer_set_val(w, "tokenizer.ggml.bos_token_id", GGUF_TYPE_INT64, &v->bos);
    char *buf = NULL;
    size_t size = 0;
    FILE *fp = open_memstream(&buf, &size);
    pl_status st = fp ? gguf_writer_write_header(w, fp) : PL_ERR_IO;
    if (fp) fclose(fp);
    gguf_writer_free(w);
    if (st == PL_OK) st = gguf_open_memory(buf, size, "hostile vocab", gf);
    if (st == PL_OK) st = tok_load(*gf, t);
    /* the tokenizer copies what it needs: drop the image before using it */
    gguf_close(*gf);
    *gf = NULL;
    free(buf);
    return st;
}

static void test_hostile_vocab(void) {
    static const char *const spm_toks[] = {"<unk>", "<s>", "</s>", "", "\xe2\x96\x81", "a", "\342\226\201a", "",
                                           "b", "<0x41>", "\n", "ab\n"};
    static const int32_t spm_types[] = {2, 3, 3, 1, 1, 1, 1, 4, 1, 6, 1, 99};
    static const char *const bpe_toks[] = {"a", "b", "ab", "", "\xc4\xa0", "zz", "<|endoftext|>"};
    static const char *const bpe_merges[] = {"a b", "a", " ", "q r", "ab zz", "x\xc4\xa0 y", "ab b c", ""};
    const int32_t bpe_types[] = {1, 1, 1, 1, 1, 1, 1};
    tokenizer *t;
    gguf_file *gf;
    char text[] = "ab a\nb \xff\xfe<s>\xe2\x96 zz A";

    /* accepted, with odd contents: empty texts, unknown types, byte tokens,
     * a vocabulary too small for the default ids, out-of-range BOS */
    vocab_spec spm = {"llama", NULL, spm_toks, 12, 12, spm_types, NULL, -1, 1000, false};
    CHECK(load_spec(&spm, &gf, &t) == PL_OK, "odd SPM vocab loads: %s", pl_last_error());
    if (t) {
        int n = 0;
        pl_token *ids = encode(t, text, sizeof text - 1, true, true, &n);
        CHECK(ids != NULL, "tokenizes");
        for (int i = 0; ids && i < n; i++) CHECK(ids[i] >= 0 && ids[i] < tok_n_vocab(t), "id %d in range", ids[i]);
        CHECK(tok_bos(t) == 1, "out-of-range bos_token_id keeps the default");
        for (pl_token id = -2; id < tok_n_vocab(t) + 2; id++) {
            char buf[16];
            tok_piece(t, id, buf, sizeof buf);
        }
        int dlen = 0;
        free(ids ? decode(t, ids, n, &dlen) : NULL);
        free(ids);
        tok_free(t);
    }

    vocab_spec bpe = {"gpt2", "gpt-2", bpe_toks, 7, -1, bpe_types, bpe_merges, 8, -2, false};
    CHECK(load_spec(&bpe, &gf, &t) == PL_OK, "odd BPE vocab loads: %s", pl_last_error());
    if (t) {
        int n = 0;
        pl_token *ids = encode(t, text, sizeof text - 1, false, true, &n);
        CHECK(ids != NULL, "tokenizes");
        /* "ab" merges; unknown bytes are dropped like llama.cpp drops them */
        CHECK(ids && n > 0 && ids[0] == 2, "'ab' merged (first id %d)", ids && n ? ids[0] : -1);
        for (int i = 0; ids && i < n; i++) CHECK(ids[i] >= 0 && ids[i] < tok_n_vocab(t), "id %d in range", ids[i]);
        free(ids);
        tok_free(t);
    }

    /* refused */
    vocab_spec v;
    v = spm, v.n_scores = 5;
    CHECK(load_spec(&v, &gf, &t) == PL_ERR_FORMAT && !t, "scores shorter than tokens: PL_ERR_FORMAT");
    v = spm, v.tokens_as_u32 = true;
    CHECK(load_spec(&v, &gf, &t) == PL_ERR_FORMAT && !t, "tokens not a string array: PL_ERR_FORMAT");
    v = spm, v.n_tokens = 0;
    CHECK(load_spec(&v, &gf, &t) == PL_ERR_FORMAT && !t, "no tokens: PL_ERR_FORMAT");
    v = spm, v.model = NULL;
    CHECK(load_spec(&v, &gf, &t) == PL_ERR_FORMAT && !t, "no tokenizer model: PL_ERR_FORMAT");
    v = spm, v.model = "t5";
    CHECK(load_spec(&v, &gf, &t) == PL_ERR_UNSUPPORTED && !t, "unknown model: PL_ERR_UNSUPPORTED");
    v = bpe, v.n_merges = -1;
    CHECK(load_spec(&v, &gf, &t) == PL_ERR_FORMAT && !t, "BPE without merges: PL_ERR_FORMAT");
    v = bpe, v.pre = "no-such-pre";
    CHECK(load_spec(&v, &gf, &t) == PL_ERR_UNSUPPORTED && !t, "unknown pre-tokenizer: PL_ERR_UNSUPPORTED");
    /* SPM defaults ask for BOS id 1; a one-token vocabulary has none */
    static const char *const one[] = {"a"};
    v = spm, v.tokens = one, v.n_tokens = 1, v.n_scores = 1, v.types = NULL, v.bos = -2;
    CHECK(load_spec(&v, &gf, &t) == PL_ERR_FORMAT && !t, "add_bos without a BOS id: PL_ERR_FORMAT");
}

int main(void) {
    RUN(test_vocab_llama_spm);
    RUN(test_vocab_gpt2);
    RUN(test_vocab_falcon);
    RUN(test_vocab_starcoder);
    RUN(test_vocab_mpt);
    RUN(test_vocab_deepseek_llm);
    RUN(test_hf_kjv_prompts);
    RUN(test_special_tokens);
    RUN(test_stories260k_vocab);
    RUN(test_random_round_trips);
    RUN(test_hostile_vocab);
    RUN(test_kjv_train_round_trip);
    TEST_END();
}
