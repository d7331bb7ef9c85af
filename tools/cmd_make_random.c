/*
 * `pocketllm make-random`: a llama-architecture GGUF with random weights of
 * any size, for memory and speed measurements where a real model of that
 * size is not at hand (the default is a 1B-class model: dim 2048, 16
 * layers, 32 heads, 8 KV heads, FFN 8192, tied embeddings). The vocabulary
 * is copied from another GGUF, or a synthetic SentencePiece-style one.
 * Option parsing only: the file is written by the library's one random-model
 * writer (src/model/random_model.c: weights scaled by 1/sqrt(fan-in),
 * streamed a row block at a time, so memory stays small).
 */
#include "cli.h"
#include "../src/model/random_model.h"
#include "../src/quant/quant.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void mr_usage(FILE *fp) {
    fprintf(fp,
            "usage: pocketllm make-random -o FILE [--vocab-from GGUF | --vocab N] [options]\n"
            "  -o, --output FILE      the GGUF to write (a 1B q4_0 model is about 0.7 GB)\n"
            "      --vocab-from GGUF  copy the tokenizer from this file (its vocabulary size is used)\n"
            "      --vocab N          without --vocab-from: a synthetic SentencePiece-style vocabulary of N\n"
            "                         tokens (specials, the 256 byte tokens, then fillers; default 32000)\n"
            "      --type T           matrix type: q4_0 (default), q8_0, q4_k, q6_k, f16, f32, ...\n"
            "      --dim N            embedding size (default 2048)\n"
            "      --layers N         (default 16)    --heads N (default 32)    --kv-heads N (default 8)\n"
            "      --ffn N            feed-forward size (default 8192)\n"
            "      --ctx N            context_length metadata (default 2048)\n"
            "      --untied           write a separate output matrix (default: tied to the embedding)\n"
            "      --seed S           (default 1)\n");
}

int cmd_make_random(int argc, char **argv) {
    const char *out = NULL, *vocab = NULL, *type_name = "q4_0";
    int dim = 2048, layers = 16, heads = 32, kv_heads = 8, ffn = 8192, ctx = 2048, untied = 0, n_vocab = 32000;
    unsigned long long seed = 1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
#define ARG(s, l) ((!strcmp(a, s) || !strcmp(a, l)) && v && ++i)
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) { mr_usage(stdout); return 0; }
        else if (ARG("-o", "--output")) out = v;
        else if (ARG("--vocab-from", "--vocab-from")) vocab = v;
        else if (ARG("--type", "--type")) type_name = v;
        else if (ARG("--vocab", "--vocab")) n_vocab = atoi(v);
        else if (ARG("--dim", "--dim")) dim = atoi(v);
        else if (ARG("--layers", "--layers")) layers = atoi(v);
        else if (ARG("--heads", "--heads")) heads = atoi(v);
        else if (ARG("--kv-heads", "--kv-heads")) kv_heads = atoi(v);
        else if (ARG("--ffn", "--ffn")) ffn = atoi(v);
        else if (ARG("--ctx", "--ctx")) ctx = atoi(v);
        else if (ARG("--seed", "--seed")) seed = strtoull(v, NULL, 0);
        else if (!strcmp(a, "--untied")) untied = 1;
        else {
            fprintf(stderr, "pocketllm make-random: unknown or incomplete option '%s'\n", a);
            mr_usage(stderr);
            return 2;
        }
#undef ARG
    }
    if (!out) {
        fprintf(stderr, "pocketllm make-random: -o FILE is required\n");
        mr_usage(stderr);
        return 2;
    }
    const int type = quant_type_from_name(type_name);
    if (type < 0 || !quant_get((uint32_t)type) || !quant_get((uint32_t)type)->vec_dot) {
        fprintf(stderr, "pocketllm make-random: unknown weight type '%s'\n", type_name);
        return 2;
    }
    if (dim <= 0 || layers <= 0 || heads <= 0 || kv_heads <= 0 || ffn <= 0 || dim % heads || heads % kv_heads || ctx <= 0) {
        fprintf(stderr, "pocketllm make-random: inconsistent shape (sizes > 0, dim %% heads, heads %% kv-heads)\n");
        return 2;
    }
    const uint32_t t = (uint32_t)type;
    const rm_spec spec = {.arch = "llama", .C = dim, .L = layers, .H = heads, .G = kv_heads, .D = dim / heads, .F = ffn,
                          .V = n_vocab, .t_qko = t, .t_v = t, .t_gu = t, .t_down = t, .t_embd = t, .untied = untied,
                          .t_out = t, .seed = seed, .ctx = ctx, .vocab_from = vocab};
    rm_written done;
    if (model_write_random(&spec, out, &done)) return cli_fail("make-random");
    printf("%s: llama, dim %d, %d layers, %d/%d heads, ffn %d, vocab %lld, %s, %s; %.1f MiB of tensors\n", out, dim, layers,
           heads, kv_heads, ffn, (long long)done.n_vocab, quant_get(t)->name, untied ? "untied" : "tied",
           (double)done.tensor_bytes / 1048576.0);
    return 0;
}
