/*
 * `pocketllm train-tokenizer`: learn a small SentencePiece-style BPE
 * vocabulary from a text file and write it as a vocab-only GGUF, the
 * tokenizer of a model trained from scratch (`pocketllm train --vocab`).
 */
#include "cli.h"
#include "../src/train/train.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void tt_usage(FILE *fp) {
    fprintf(fp, "usage: pocketllm train-tokenizer -f TEXT -o VOCAB.gguf [--vocab-size N]\n"
                "  -f, --file TEXT      training text (UTF-8)\n"
                "  -o, --out FILE       vocabulary GGUF to write\n"
                "      --vocab-size N   tokens in all: 3 specials + 256 bytes + characters + merges (default 2048)\n");
}

int cmd_train_tokenizer(int argc, char **argv) {
    const char *in = NULL, *out = NULL;
    int size = 2048;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) { tt_usage(stdout); return 0; }
        else if ((!strcmp(a, "-f") || !strcmp(a, "--file")) && v) in = argv[++i];
        else if ((!strcmp(a, "-o") || !strcmp(a, "--out")) && v) out = argv[++i];
        else if (!strcmp(a, "--vocab-size") && v) size = atoi(argv[++i]);
        else {
            fprintf(stderr, "pocketllm train-tokenizer: unknown or incomplete option '%s'\n", a);
            tt_usage(stderr);
            return 2;
        }
    }
    if (!in || !out) {
        tt_usage(stderr);
        return 2;
    }
    size_t len;
    char *text = cli_read_file(in, &len);
    if (!text) return 1;
    int n = 0;
    const double t0 = pl_time_ms();
    pl_status st = train_bpe_vocab(text, len, size, out, &n);
    free(text);
    if (st) return cli_fail("train-tokenizer");
    fprintf(stderr, "wrote %s: %d tokens (%.1f s)\n", out, n, (pl_time_ms() - t0) / 1e3);
    return 0;
}
