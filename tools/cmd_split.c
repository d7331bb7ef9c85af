/*
 * `pocketllm split`: cut a model into pieces a device or a store accepts.
 * Default: llama.cpp's gguf-split format (every piece a GGUF; llama.cpp and
 * pocketllm load the set as one model). --raw: plain byte chunks below a
 * size (e.g. a 2 GB file limit), which pocketllm maps back into one address
 * range. Either way a "<prefix>.sha256" sidecar lists each piece's SHA-256
 * (checked on load with --verify).
 */
#include "cli.h"
#include "../src/gguf/gguf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void split_usage(FILE *fp) {
    fprintf(fp,
            "usage: pocketllm split -m FILE [-o PREFIX] [--max-tensors N | --max-size SIZE | --raw --chunk SIZE]\n"
            "  -m, --model FILE      GGUF model to cut\n"
            "  -o, --output PREFIX   gguf-split: files PREFIX-0000K-of-0000N.gguf (default: FILE without .gguf)\n"
            "      --max-tensors N   gguf-split: at most N tensors per file (default 128, as llama.cpp)\n"
            "      --max-size SIZE   gguf-split: at most SIZE bytes of tensor data per file (e.g. 2G, 500M)\n"
            "      --raw             cut the bytes instead: FILE.part-0000K-of-0000N\n"
            "      --chunk SIZE      raw chunk size (default 2000M, below a 2 GB limit; a multiple of 64 KiB\n"
            "                        keeps every chunk mappable without copying)\n");
}

int cmd_split(int argc, char **argv) {
    const char *path = NULL, *prefix = NULL;
    int max_tensors = 0, raw = 0;
    uint64_t max_bytes = 0, chunk = 2000ull << 20;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
#define ARG(s, l) ((!strcmp(a, s) || !strcmp(a, l)) && v && ++i)
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) { split_usage(stdout); return 0; }
        else if (ARG("-m", "--model")) path = v;
        else if (ARG("-o", "--output")) prefix = v;
        else if (ARG("--max-tensors", "--max-tensors")) max_tensors = atoi(v);
        else if (ARG("--max-size", "--max-size") || ARG("--chunk", "--chunk")) {
            uint64_t *dst = !strcmp(a, "--chunk") ? &chunk : &max_bytes;
            if (pl_parse_bytes(v, dst) || !*dst) {
                fprintf(stderr, "pocketllm split: %s: bad size '%s'\n", a, v);
                return 2;
            }
        } else if (!strcmp(a, "--raw")) raw = 1;
        else {
            fprintf(stderr, "pocketllm split: unknown or incomplete option '%s'\n", a);
            split_usage(stderr);
            return 2;
        }
#undef ARG
    }
    if (!path) {
        fprintf(stderr, "pocketllm split: -m FILE is required\n");
        split_usage(stderr);
        return 2;
    }
    int n = 0;
    if (raw) {
        if (gguf_write_parts(path, chunk, &n)) return cli_fail("split");
        printf("%d chunks: %s.part-00001-of-%05d ... (sums in %s.sha256)\n", n, path, n, path);
        return 0;
    }
    char def[4096];
    if (!prefix) {
        snprintf(def, sizeof def, "%s", path);
        size_t l = strlen(def);
        if (l > 5 && !strcmp(def + l - 5, ".gguf")) def[l - 5] = 0;
        prefix = def;
    }
    gguf_file *f;
    if (gguf_open_any(path, NULL, &f)) return cli_fail("split");
    pl_status st = gguf_write_split(f, prefix, max_tensors, max_bytes, &n);
    gguf_close(f);
    if (st) return cli_fail("split");
    printf("%d files: %s-00001-of-%05d.gguf ... (sums in %s.sha256)\n", n, prefix, n, prefix);
    return 0;
}
