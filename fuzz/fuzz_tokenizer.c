/*
 * libFuzzer target for the tokenizer: tokenize arbitrary bytes (often invalid
 * UTF-8) with a real vocabulary, check every id is in range and every piece
 * renders, then detokenize. With the default GPT-2 vocabulary (every byte has
 * a token, no user-defined tokens) and special text not parsed, decoding must
 * give the input back exactly. A broken promise traps, so libFuzzer reports it
 * like a crash.
 *
 * The vocabulary is loaded once: $PL_FUZZ_VOCAB, or
 * ../shared/tokenizer/ggml-vocab-gpt-2.gguf (run from the repository root).
 * The first input byte picks the options (bit 0 parse_special, bit 1 BOS).
 * Build: make fuzz; run: build-fuzz/fuzz_tokenizer -max_total_time=60
 */
#include "gguf/gguf.h"
#include "tokenizer/tokenizer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define PROMISE(c)                  \
    do {                            \
        if (!(c)) __builtin_trap(); \
    } while (0)

static gguf_file *g_gguf;
static tokenizer *g_tok;
static bool g_exact; /* the default vocabulary: round trips must be exact */

static void fz_load(void) {
    const char *path = getenv("PL_FUZZ_VOCAB");
    g_exact = path == NULL;
    if (!path) path = "../shared/tokenizer/ggml-vocab-gpt-2.gguf";
    if (gguf_open(path, &g_gguf) != PL_OK || tok_load(g_gguf, &g_tok) != PL_OK) {
        fprintf(stderr, "fuzz_tokenizer: cannot load %s: %s\n", path, pl_last_error());
        abort(); /* a harness without its vocabulary has nothing to test */
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!g_tok) fz_load();
    if (size == 0) return 0;
    const bool parse_special = data[0] & 1, bos = data[0] & 2;
    const char *text = (const char *)data + 1;
    const size_t len = size - 1;

    int n = 0;
    pl_status st = tok_encode(g_tok, text, len, bos, parse_special, NULL, 0, &n);
    PROMISE(st == PL_OK || st == PL_ERR_INVALID_ARG);
    PROMISE(n >= 0 && (size_t)n <= len + 1 + (bos ? 1 : 0)); /* at most one token per byte, plus BOS */
    pl_token *ids = malloc(sizeof *ids * (size_t)(n + 1));
    if (!ids) return 0;
    int n2 = -1;
    PROMISE(tok_encode(g_tok, text, len, bos, parse_special, ids, n, &n2) == PL_OK && n2 == n);

    const int n_vocab = tok_n_vocab(g_tok);
    for (int i = 0; i < n; i++) {
        PROMISE(ids[i] >= 0 && ids[i] < n_vocab);
        char piece[8];
        int k = tok_piece(g_tok, ids[i], piece, sizeof piece);
        PROMISE(k >= 0);
        k = tok_piece_ex(g_tok, ids[i], true, piece, sizeof piece);
        PROMISE(k >= 0);
    }

    const int need = tok_decode(g_tok, ids, n, NULL, 0);
    PROMISE(need >= 0);
    char *back = malloc((size_t)need + 1);
    if (back) {
        PROMISE(tok_decode(g_tok, ids, n, back, need + 1) == need && back[need] == 0);
        if (g_exact && !parse_special) PROMISE((size_t)need == len && memcmp(back, text, len) == 0);
        free(back);
    }
    /* a buffer too small reports the size and does not overflow */
    if (need > 1) {
        char small[1];
        PROMISE(tok_decode(g_tok, ids, n, small, 1) == need);
    }
    free(ids);
    return 0;
}
