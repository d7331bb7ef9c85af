/*
 * bench_tokenizer: encode and decode throughput on the KJV training text
 * (../shared/text/kjv-train.txt, 4 MB) with each vocabulary of
 * ../shared/tokenizer, in MB/s of text and tokens per second. Single thread.
 * Figures only: nothing is asserted. Without ../shared it says so and exits 0.
 */
#include "gguf/gguf.h"
#include "tokenizer/tokenizer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const k_vocabs[] = {"llama-spm", "gpt-2", "falcon", "starcoder", "mpt", "deepseek-llm"};

static char *read_all(const char *path, size_t *len) {
    FILE *fp = fopen(path, "rb");
    if (!fp) return NULL;
    fseek(fp, 0, SEEK_END);
    long n = ftell(fp);
    fseek(fp, 0, SEEK_SET);
    char *buf = n >= 0 ? malloc((size_t)n + 1) : NULL;
    if (buf && fread(buf, 1, (size_t)n, fp) != (size_t)n) {
        free(buf);
        buf = NULL;
    }
    fclose(fp);
    if (buf) *len = (size_t)n;
    return buf;
}

int main(void) {
    size_t len = 0;
    char *text = read_all("../shared/text/kjv-train.txt", &len);
    if (!text) {
        printf("bench_tokenizer: ../shared/text/kjv-train.txt absent, nothing to measure\n");
        return 0;
    }
    pl_token *ids = malloc(sizeof *ids * (len + 1));
    char *back = malloc(len + 1);
    if (!ids || !back) return 1;
    printf("%-13s %10s %9s %10s %9s %8s\n", "vocab", "tokens", "enc MB/s", "Mtok/s", "dec MB/s", "load ms");
    for (size_t v = 0; v < sizeof k_vocabs / sizeof k_vocabs[0]; v++) {
        char path[256];
        snprintf(path, sizeof path, "../shared/tokenizer/ggml-vocab-%s.gguf", k_vocabs[v]);
        gguf_file *gf = NULL;
        tokenizer *t = NULL;
        double t0 = pl_time_ms();
        if (gguf_open(path, &gf) != PL_OK || tok_load(gf, &t) != PL_OK) {
            printf("%-13s %s\n", k_vocabs[v], pl_last_error());
            gguf_close(gf);
            continue;
        }
        double load_ms = pl_time_ms() - t0;
        int n = 0;
        t0 = pl_time_ms();
        pl_status st = tok_encode(t, text, len, false, false, ids, (int)len + 1, &n);
        double enc_ms = pl_time_ms() - t0;
        t0 = pl_time_ms();
        int k = st == PL_OK ? tok_decode(t, ids, n, back, (int)len + 1) : 0;
        double dec_ms = pl_time_ms() - t0;
        if (st != PL_OK) printf("%-13s %s\n", k_vocabs[v], pl_last_error());
        else
            printf("%-13s %10d %9.1f %10.2f %9.1f %8.0f\n", k_vocabs[v], n, len / 1e3 / enc_ms, n / 1e3 / enc_ms,
                   k / 1e3 / dec_ms, load_ms);
        tok_free(t);
        gguf_close(gf);
    }
    free(ids);
    free(back);
    free(text);
    return 0;
}
