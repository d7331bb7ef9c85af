/*
 * `pocketllm pack`: write a manifest of per-device variants for a set of
 * model files (e.g. the f16, q8_0 and q4_k_m conversions of one model):
 * quant type, sizes and SHA-256 of every file, bits per weight, the numbers
 * a memory plan needs and the smallest device profile each fits. Devices
 * then choose with `pocketllm pick` / pl_manifest_pick before downloading.
 */
#include "cli.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void pack_usage(FILE *fp) {
    fprintf(fp,
            "usage: pocketllm pack -o MANIFEST.json [--name MODEL] FILE.gguf...\n"
            "  -o, --output FILE   the manifest to write (file paths inside its folder are stored relative)\n"
            "      --name MODEL    the model's name in the manifest (default: the first file's name)\n"
            "  FILE.gguf           one file per variant; any piece of a split set stands for the set\n");
}

int cmd_pack(int argc, char **argv) {
    const char *out = NULL, *name = NULL;
    const char **files = calloc((size_t)argc, sizeof *files);
    int n = 0;
    if (!files) return 1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            pack_usage(stdout);
            free(files);
            return 0;
        } else if ((!strcmp(a, "-o") || !strcmp(a, "--output")) && v) {
            out = v;
            i++;
        } else if (!strcmp(a, "--name") && v) {
            name = v;
            i++;
        } else if (a[0] == '-') {
            fprintf(stderr, "pocketllm pack: unknown or incomplete option '%s'\n", a);
            pack_usage(stderr);
            free(files);
            return 2;
        } else {
            files[n++] = a;
        }
    }
    if (!out || !n) {
        fprintf(stderr, "pocketllm pack: -o MANIFEST and at least one model file are required\n");
        pack_usage(stderr);
        free(files);
        return 2;
    }
    char dir[4096], def[256];
    snprintf(dir, sizeof dir, "%s", out);
    char *slash = strrchr(dir, '/');
    if (slash) *slash = 0;
    else snprintf(dir, sizeof dir, ".");
    if (!name) {
        const char *b = strrchr(files[0], '/');
        snprintf(def, sizeof def, "%s", b ? b + 1 : files[0]);
        char *dot = strrchr(def, '.');
        if (dot) *dot = 0;
        name = def;
    }
    char *json = NULL;
    int rc = 0;
    if (pl_manifest_pack(files, n, name, dir, &json)) {
        rc = cli_fail("pack");
    } else {
        FILE *fp = fopen(out, "w");
        if (!fp || fputs(json, fp) < 0 || fclose(fp) != 0) {
            fprintf(stderr, "pocketllm pack: cannot write %s: %s\n", out, strerror(errno));
            rc = 1;
        } else {
            printf("%s: %d variant%s\n", out, n, n == 1 ? "" : "s");
        }
    }
    free(json);
    free(files);
    return rc;
}
