/*
 * pocketllm CLI entry: `pocketllm <command> [options]`. The command table is
 * data; each command lives in its own tools/cmd_<name>.c.
 */
#include "cli.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct command {
    const char *name;
    int (*fn)(int argc, char **argv);
    const char *summary;
} command;

static int cmd_version(int argc, char **argv) {
    (void)argc;
    (void)argv;
    printf("pocketllm %s\n", pl_version());
    return 0;
}

/* One row per command; keep "run" first (it is the main job). */
static const command k_commands[] = {
    {"run", cmd_run, "generate text from a prompt, streaming tokens"},
    {"score", cmd_score, "evaluate token ids as one batch; one JSON line per position"},
    {"perplexity", cmd_perplexity, "perplexity of a text file, llama.cpp's method"},
    {"chat", cmd_chat, "interactive chat in the terminal (templates, /save, /load)"},
    {"serve", cmd_serve, "OpenAI-compatible HTTP server with a web chat page"},
    {"quantize", cmd_quantize, "convert a model to another type (Q4_K_M, Q8_0, F16, ...)"},
    {"train", cmd_train, "fine-tune (full or LoRA) or train from scratch; writes GGUF"},
    {"train-tokenizer", cmd_train_tokenizer, "learn a small BPE vocabulary from text (vocab-only GGUF)"},
    {"tokenize", cmd_tokenize, "print the token ids of a text (a vocab-only GGUF is enough)"},
    {"info", cmd_info, "show a GGUF file's metadata, hyper-parameters and tensors"},
    {"plan", cmd_plan, "memory plan of a model: weights, KV, scratch, total vs the budget"},
    {"split", cmd_split, "cut a model into gguf-split files or raw chunks (with SHA-256 sums)"},
    {"merge", cmd_merge, "put split files or raw chunks back into one GGUF"},
    {"pack", cmd_pack, "write a manifest of per-device variants (sizes, SHA-256, memory needs)"},
    {"pick", cmd_pick, "choose the variant and context that fit a device's budget"},
    {"make-random", cmd_make_random, "write a llama GGUF with random weights (e.g. 1B q4_0) for measurements"},
    {"bench", cmd_bench, "prompt/generation speed, bytes per token, share of memory bandwidth"},
    {"version", cmd_version, "print the version"},
};

static void usage(FILE *fp) {
    fprintf(fp, "pocketllm %s — run Llama-family models where memory is the limit\n\n", pl_version());
    fprintf(fp, "usage: pocketllm <command> [options]   (pocketllm <command> --help for details)\n\ncommands:\n");
    for (size_t i = 0; i < sizeof k_commands / sizeof k_commands[0]; i++)
        fprintf(fp, "  %-12s %s\n", k_commands[i].name, k_commands[i].summary);
}

int cli_fail(const char *what) {
    fprintf(stderr, "pocketllm: %s: %s\n", what, pl_last_error());
    return 1;
}

char *cli_read_file(const char *path, size_t *len) {
    FILE *fp = fopen(path, "rb");
    if (!fp) {
        fprintf(stderr, "pocketllm: cannot open %s: %s\n", path, strerror(errno));
        return NULL;
    }
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap + 1);
    while (buf) {
        size_t got = fread(buf + n, 1, cap - n, fp);
        n += got;
        if (n < cap) break;
        char *nb = realloc(buf, cap * 2 + 1);
        if (!nb) { free(buf); buf = NULL; break; }
        buf = nb;
        cap *= 2;
    }
    int err = ferror(fp);
    fclose(fp);
    if (!buf || err) {
        free(buf);
        fprintf(stderr, "pocketllm: cannot read %s\n", path);
        return NULL;
    }
    buf[n] = 0;
    if (len) *len = n;
    return buf;
}

int main(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        usage(stdout);
        return argc < 2 ? 2 : 0;
    }
    if (!strcmp(argv[1], "--version")) return cmd_version(argc - 1, argv + 1);
    for (size_t i = 0; i < sizeof k_commands / sizeof k_commands[0]; i++)
        if (!strcmp(argv[1], k_commands[i].name)) return k_commands[i].fn(argc - 1, argv + 1);
    fprintf(stderr, "pocketllm: unknown command '%s'\n\n", argv[1]);
    usage(stderr);
    return 2;
}
