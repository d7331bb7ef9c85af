/*
 * `pocketllm merge`: put a split model back into one GGUF file. Give any
 * piece: gguf-split files are merged through the one-image view (split.*
 * keys dropped, so splitting and merging gives back the original bytes);
 * raw chunks are concatenated.
 */
#include "cli.h"
#include "../src/gguf/gguf.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void merge_usage(FILE *fp) {
    fprintf(fp,
            "usage: pocketllm merge -m PIECE -o FILE\n"
            "  -m, --model PIECE   any file of a gguf-split set (PREFIX-0000K-of-0000N.gguf) or of raw chunks\n"
            "                      (FILE.part-0000K-of-0000N)\n"
            "  -o, --output FILE   the merged GGUF (must not exist)\n"
            "      --verify        check the pieces against their .sha256 sidecar first\n");
}

static int merge_concat(char **files, int n, const char *out_path) {
    FILE *out = fopen(out_path, "wb");
    if (!out) {
        fprintf(stderr, "pocketllm merge: cannot create %s: %s\n", out_path, strerror(errno));
        return 1;
    }
    char *buf = malloc(1 << 20);
    int rc = buf ? 0 : 1;
    for (int i = 0; i < n && !rc; i++) {
        FILE *in = fopen(files[i], "rb");
        if (!in) {
            fprintf(stderr, "pocketllm merge: cannot open %s: %s\n", files[i], strerror(errno));
            rc = 1;
            break;
        }
        size_t got;
        while ((got = fread(buf, 1, 1 << 20, in)) > 0)
            if (fwrite(buf, 1, got, out) != got) {
                fprintf(stderr, "pocketllm merge: write failed: %s\n", strerror(errno));
                rc = 1;
                break;
            }
        if (ferror(in)) rc = 1;
        fclose(in);
    }
    free(buf);
    if (fclose(out) != 0) rc = 1;
    return rc;
}

int cmd_merge(int argc, char **argv) {
    const char *path = NULL, *out_path = NULL;
    gguf_open_opts opts = {.verify = false};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
#define ARG(s, l) ((!strcmp(a, s) || !strcmp(a, l)) && v && ++i)
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) { merge_usage(stdout); return 0; }
        else if (ARG("-m", "--model")) path = v;
        else if (ARG("-o", "--output")) out_path = v;
        else if (!strcmp(a, "--verify")) opts.verify = true;
        else {
            fprintf(stderr, "pocketllm merge: unknown or incomplete option '%s'\n", a);
            merge_usage(stderr);
            return 2;
        }
#undef ARG
    }
    if (!path || !out_path) {
        fprintf(stderr, "pocketllm merge: -m PIECE and -o FILE are required\n");
        merge_usage(stderr);
        return 2;
    }
    FILE *exists = fopen(out_path, "rb");
    if (exists) {
        fclose(exists);
        fprintf(stderr, "pocketllm merge: %s already exists\n", out_path);
        return 1;
    }
    char stem[4096];
    int no, count;
    if (gguf_part_name(path, stem, sizeof stem, &no, &count)) {
        char **files;
        int n;
        if (opts.verify) { /* the sums are checked by opening the set once */
            gguf_file *f;
            if (gguf_open_any(path, &opts, &f)) return cli_fail("merge");
            gguf_close(f);
        }
        if (gguf_paths(path, &files, &n)) return cli_fail("merge");
        int rc = merge_concat(files, n, out_path);
        gguf_paths_free(files, n);
        return rc;
    }
    gguf_file *f;
    if (gguf_open_any(path, &opts, &f)) return cli_fail("merge");
    pl_status st = gguf_write_merged(f, out_path);
    gguf_close(f);
    if (st) return cli_fail("merge");
    printf("merged into %s\n", out_path);
    return 0;
}
