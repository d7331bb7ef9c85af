/*
 * `pocketllm tokenize`: print the token ids of a text, space-separated on one
 * line. Only the tokenizer is loaded (gguf_open + tok_load), so a vocab-only
 * GGUF works as well as a full model.
 */
#include "cli.h"

#include "../src/gguf/gguf.h"
#include "../src/tokenizer/tokenizer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void tokenize_usage(FILE *fp) {
    fprintf(fp,
            "usage: pocketllm tokenize -m FILE.gguf [--no-bos] [--special] [--pieces] (-f TEXT_FILE | TEXT)\n"
            "\n"
            "Prints the token ids of TEXT (or of the file's bytes) on one line.\n"
            "  -m, --model FILE   GGUF file with a tokenizer (a vocab-only file is enough)\n"
            "  -f, --file FILE    tokenize this file's contents instead of TEXT\n"
            "  --no-bos           do not put BOS first (default: as the model's metadata says)\n"
            "  --special          match special-token text such as <s> or <|im_end|>\n"
            "  --pieces           also print each token's text, one per line, to stderr\n");
}

int cmd_tokenize(int argc, char **argv) {
    const char *model = NULL, *file = NULL, *text = NULL;
    bool no_bos = false, special = false, pieces = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            tokenize_usage(stdout);
            return 0;
        } else if ((!strcmp(a, "-m") || !strcmp(a, "--model")) && i + 1 < argc) {
            model = argv[++i];
        } else if ((!strcmp(a, "-f") || !strcmp(a, "--file")) && i + 1 < argc) {
            file = argv[++i];
        } else if (!strcmp(a, "--no-bos")) {
            no_bos = true;
        } else if (!strcmp(a, "--special")) {
            special = true;
        } else if (!strcmp(a, "--pieces")) {
            pieces = true;
        } else if (a[0] == '-' && a[1] != 0 && strcmp(a, "--") != 0) {
            fprintf(stderr, "pocketllm tokenize: unknown option '%s'\n\n", a);
            tokenize_usage(stderr);
            return 2;
        } else {
            if (!strcmp(a, "--") && i + 1 < argc) a = argv[++i];
            if (text) {
                fprintf(stderr, "pocketllm tokenize: give the text as one argument (quote it)\n");
                return 2;
            }
            text = a;
        }
    }
    if (!model || (!file == !text)) {
        tokenize_usage(stderr);
        return 2;
    }

    int rc = 1;
    gguf_file *gf = NULL;
    tokenizer *tok = NULL;
    char *buf = NULL;
    pl_token *ids = NULL;
    size_t len;
    if (file) {
        if (!(buf = cli_read_file(file, &len))) goto done;
        text = buf;
    } else {
        len = strlen(text);
    }
    if (gguf_open(model, &gf) != PL_OK || tok_load(gf, &tok) != PL_OK) {
        pl_fail_prefix(PL_ERR_IO, "loading %s", model);
        rc = cli_fail("tokenize");
        goto done;
    }
    const bool bos = !no_bos && tok_add_bos(tok);
    int n = 0;
    pl_status st = tok_encode(tok, text, len, bos, special, NULL, 0, &n);
    if (st != PL_OK && st != PL_ERR_INVALID_ARG) {
        rc = cli_fail("tokenize");
        goto done;
    }
    if (!(ids = malloc(sizeof *ids * (size_t)(n > 0 ? n : 1)))) {
        fprintf(stderr, "pocketllm tokenize: out of memory\n");
        goto done;
    }
    if (tok_encode(tok, text, len, bos, special, ids, n, &n) != PL_OK) {
        rc = cli_fail("tokenize");
        goto done;
    }
    for (int i = 0; i < n; i++) printf(i ? " %d" : "%d", ids[i]);
    printf("\n");
    if (pieces) {
        for (int i = 0; i < n; i++) {
            char piece[256];
            int k = tok_piece_ex(tok, ids[i], true, piece, sizeof piece);
            fprintf(stderr, "%6d '%.*s'\n", ids[i], k >= 0 && k <= (int)sizeof piece ? k : 0, piece);
        }
    }
    rc = 0;
done:
    free(ids);
    free(buf);
    tok_free(tok);
    gguf_close(gf);
    return rc;
}
