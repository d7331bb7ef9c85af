/*
 * `pocketllm info FILE`: what a GGUF file holds, read through the gguf module
 * without loading any weights: container facts, every metadata key (arrays
 * abbreviated to their first elements, long strings cut), the model's main
 * hyper-parameters, the tensor table, and totals per tensor type.
 * Output is plain text for people; nothing here is meant to be parsed.
 */
#include "cli.h"

#include "../src/gguf/gguf.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define INFO_STR_MAX 60 /* bytes of a string value shown before cutting it */

static void info_usage(FILE *fp) {
    fprintf(fp,
            "usage: pocketllm info [options] FILE.gguf\n"
            "  print a GGUF file's metadata, hyper-parameters and tensors\n"
            "  -n, --array-items N  array elements shown per key (default 4)\n"
            "      --no-tensors     leave out the per-tensor table\n"
            "  -h, --help           this help\n");
}

/* A string value, quoted, with control bytes escaped and long ones cut. */
static void info_str(gguf_str s) {
    putchar('"');
    uint64_t n = s.len < INFO_STR_MAX ? s.len : INFO_STR_MAX;
    for (uint64_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s.ptr[i];
        if (c == '"' || c == '\\') printf("\\%c", c);
        else if (c == '\n') fputs("\\n", stdout);
        else if (c == '\t') fputs("\\t", stdout);
        else if (c < 0x20 || c == 0x7f) printf("\\x%02x", c);
        else putchar(c);
    }
    putchar('"');
    if (s.len > n) printf("...(%" PRIu64 " bytes)", s.len);
}

/* One fixed-size element of type t at p. */
static void info_scalar(gguf_type t, const uint8_t *p) {
    switch (t) {
    case GGUF_TYPE_UINT8: printf("%u", p[0]); break;
    case GGUF_TYPE_INT8: printf("%d", (int8_t)p[0]); break;
    case GGUF_TYPE_UINT16: { uint16_t v; memcpy(&v, p, 2); printf("%u", v); break; }
    case GGUF_TYPE_INT16: { int16_t v; memcpy(&v, p, 2); printf("%d", v); break; }
    case GGUF_TYPE_UINT32: { uint32_t v; memcpy(&v, p, 4); printf("%" PRIu32, v); break; }
    case GGUF_TYPE_INT32: { int32_t v; memcpy(&v, p, 4); printf("%" PRId32, v); break; }
    case GGUF_TYPE_UINT64: { uint64_t v; memcpy(&v, p, 8); printf("%" PRIu64, v); break; }
    case GGUF_TYPE_INT64: { int64_t v; memcpy(&v, p, 8); printf("%" PRId64, v); break; }
    case GGUF_TYPE_FLOAT32: { float v; memcpy(&v, p, 4); printf("%.9g", v); break; }
    case GGUF_TYPE_FLOAT64: { double v; memcpy(&v, p, 8); printf("%.17g", v); break; }
    case GGUF_TYPE_BOOL: fputs(p[0] ? "true" : "false", stdout); break;
    default: fputs("?", stdout); break;
    }
}

static uint64_t info_scalar_size(gguf_type t) {
    switch (t) {
    case GGUF_TYPE_UINT8: case GGUF_TYPE_INT8: case GGUF_TYPE_BOOL: return 1;
    case GGUF_TYPE_UINT16: case GGUF_TYPE_INT16: return 2;
    case GGUF_TYPE_UINT32: case GGUF_TYPE_INT32: case GGUF_TYPE_FLOAT32: return 4;
    case GGUF_TYPE_UINT64: case GGUF_TYPE_INT64: case GGUF_TYPE_FLOAT64: return 8;
    default: return 0;
    }
}

static void info_value(const gguf_kv *kv, uint64_t max_items) {
    if (kv->type == GGUF_TYPE_STRING) {
        info_str(kv->strs[0]);
        return;
    }
    if (kv->type != GGUF_TYPE_ARRAY) {
        info_scalar(kv->type, kv->data);
        return;
    }
    printf("[%s x %" PRIu64 "]", gguf_type_name(kv->arr_type), kv->arr_n);
    if (kv->arr_type == GGUF_TYPE_ARRAY || kv->arr_n == 0) return; /* nested arrays: only their count */
    uint64_t n = kv->arr_n < max_items ? kv->arr_n : max_items, esz = info_scalar_size(kv->arr_type);
    for (uint64_t i = 0; i < n; i++) {
        fputs(i ? ", " : " ", stdout);
        if (kv->arr_type == GGUF_TYPE_STRING) info_str(kv->strs[i]);
        else info_scalar(kv->arr_type, kv->data + i * esz);
    }
    if (kv->arr_n > n) fputs(", ...", stdout);
}

/* A key or tensor name, control bytes escaped, padded to `width` columns;
 * a hostile file must not be able to send terminal escapes through us. */
static void info_name(gguf_str s, int width) {
    int w = 0;
    uint64_t n = s.len < 200 ? s.len : 200;
    for (uint64_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s.ptr[i];
        if (c < 0x20 || c == 0x7f) w += printf("\\x%02x", c);
        else w += putchar(c) != EOF;
    }
    if (s.len > n) w += printf("...");
    for (; w < width; w++) putchar(' ');
}

static void info_bytes(uint64_t n) {
    if (n >= 1ull << 30) printf("%.2f GiB", (double)n / (1ull << 30));
    else if (n >= 1ull << 20) printf("%.2f MiB", (double)n / (1ull << 20));
    else if (n >= 1ull << 10) printf("%.2f KiB", (double)n / (1ull << 10));
    else printf("%" PRIu64 " B", n);
}

/* Hyper-parameters worth a line of their own, as suffixes of "<arch>.". */
static const struct {
    const char *label, *suffix;
} k_hparams[] = {
    {"context length", "context_length"},
    {"embedding length", "embedding_length"},
    {"layers", "block_count"},
    {"feed-forward length", "feed_forward_length"},
    {"attention heads", "attention.head_count"},
    {"key/value heads", "attention.head_count_kv"},
    {"head dim (key)", "attention.key_length"},
    {"rms norm epsilon", "attention.layer_norm_rms_epsilon"},
    {"rope dimensions", "rope.dimension_count"},
    {"rope base", "rope.freq_base"},
    {"vocab size (key)", "vocab_size"},
};

static void info_model(const gguf_file *f, uint64_t max_items) {
    gguf_str arch = {"", 0};
    if (gguf_get_str(f, "general.architecture", &arch) != PL_OK) {
        printf("\nmodel: no general.architecture key\n");
        return;
    }
    char *a = gguf_str_dup(arch);
    if (!a) return;
    printf("\nmodel:\n  %-22s ", "architecture");
    info_str(arch);
    putchar('\n');
    for (size_t i = 0; i < sizeof k_hparams / sizeof k_hparams[0]; i++) {
        char key[256];
        snprintf(key, sizeof key, "%s.%s", a, k_hparams[i].suffix);
        const gguf_kv *kv = gguf_get_kv(f, key);
        if (!kv) continue;
        printf("  %-22s ", k_hparams[i].label);
        info_value(kv, max_items);
        putchar('\n');
    }
    const gguf_kv *toks = gguf_get_kv(f, "tokenizer.ggml.tokens"), *tm = gguf_get_kv(f, "tokenizer.ggml.model");
    if (toks && toks->type == GGUF_TYPE_ARRAY) printf("  %-22s %" PRIu64 "\n", "vocabulary", toks->arr_n);
    if (tm && tm->type == GGUF_TYPE_STRING) {
        printf("  %-22s ", "tokenizer");
        info_str(tm->strs[0]);
        putchar('\n');
    }
    free(a);
}

static const char *info_type_name(uint32_t type) {
    const quant_traits *tr = quant_get(type);
    return tr ? tr->name : "?";
}

static void info_tensors(const gguf_file *f, int table) {
    uint64_t count[QT_COUNT] = {0}, bytes[QT_COUNT] = {0}, elems[QT_COUNT] = {0};
    uint64_t total_bytes = 0, total_elems = 0;
    printf("\ntensors: %" PRIu64 "\n", f->n_tensors);
    if (table && f->n_tensors)
        printf("  %-4s %-36s %-6s %-24s %12s %12s\n", "#", "name", "type", "shape", "bytes", "offset");
    for (uint64_t i = 0; i < f->n_tensors; i++) {
        const gguf_tensor *t = &f->tensors[i];
        uint64_t n = 1;
        for (int d = 0; d < GGUF_MAX_DIMS; d++) n *= (uint64_t)t->ne[d]; /* fits: the reader checked */
        if (t->type < QT_COUNT) {
            count[t->type]++;
            bytes[t->type] += t->nbytes;
            elems[t->type] += n;
        }
        total_bytes += t->nbytes;
        total_elems += n;
        if (!table) continue;
        char shape[96];
        int o = snprintf(shape, sizeof shape, "[");
        for (uint32_t d = 0; d < t->n_dims && o < (int)sizeof shape; d++)
            o += snprintf(shape + o, sizeof shape - (size_t)o, "%s%" PRId64, d ? ", " : "", t->ne[d]);
        if (o < (int)sizeof shape) snprintf(shape + o, sizeof shape - (size_t)o, "]");
        printf("  %-4" PRIu64 " ", i);
        info_name(t->name, 36);
        printf(" %-6s %-24s %12" PRIu64 " %12" PRIu64 "\n", info_type_name(t->type), shape, t->nbytes, t->offset);
    }
    if (!f->n_tensors) return;
    printf("\nby type:\n  %-6s %8s %14s %16s %10s\n", "type", "tensors", "parameters", "bytes", "bits/w");
    for (uint32_t ty = 0; ty < QT_COUNT; ty++) {
        if (!count[ty]) continue;
        printf("  %-6s %8" PRIu64 " %14" PRIu64 " %16" PRIu64 " %10.3f\n", info_type_name(ty), count[ty], elems[ty], bytes[ty],
               8.0 * (double)bytes[ty] / (double)elems[ty]);
    }
    printf("  %-6s %8" PRIu64 " %14" PRIu64 " %16" PRIu64 " %10.3f\n", "total", f->n_tensors, total_elems, total_bytes,
           8.0 * (double)total_bytes / (double)total_elems);
    printf("\ntotal parameters: %" PRIu64 " (%.2f M), tensor data ", total_elems, (double)total_elems / 1e6);
    info_bytes(total_bytes);
    putchar('\n');
}

int cmd_info(int argc, char **argv) {
    const char *path = NULL;
    uint64_t max_items = 4;
    int table = 1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            info_usage(stdout);
            return 0;
        } else if (!strcmp(a, "--no-tensors")) {
            table = 0;
        } else if ((!strcmp(a, "-n") || !strcmp(a, "--array-items")) && i + 1 < argc) {
            char *end;
            long v = strtol(argv[++i], &end, 10);
            if (*end || v < 0) {
                fprintf(stderr, "pocketllm info: bad count '%s'\n", argv[i]);
                return 2;
            }
            max_items = (uint64_t)v;
        } else if (a[0] == '-' && a[1]) {
            fprintf(stderr, "pocketllm info: unknown option '%s'\n", a);
            info_usage(stderr);
            return 2;
        } else if (!path) {
            path = a;
        } else {
            fprintf(stderr, "pocketllm info: one file at a time ('%s' and '%s')\n", path, a);
            return 2;
        }
    }
    if (!path) {
        info_usage(stderr);
        return 2;
    }
    gguf_file *f = NULL;
    if (gguf_open(path, &f) != PL_OK) return cli_fail("info");

    printf("file:      %s\nsize:      %" PRIu64 " bytes (", f->path, f->size);
    info_bytes(f->size);
    printf(")\nformat:    GGUF v%" PRIu32 ", alignment %" PRIu64 ", tensor data at offset %" PRIu64 "\n", f->version,
           f->alignment, f->data_offset);
    printf("\nmetadata: %" PRIu64 " keys\n", f->n_kv);
    int width = 0;
    for (uint64_t i = 0; i < f->n_kv; i++)
        if (f->kv[i].key.len > (uint64_t)width) width = f->kv[i].key.len > 60 ? 60 : (int)f->kv[i].key.len;
    for (uint64_t i = 0; i < f->n_kv; i++) {
        const gguf_kv *kv = &f->kv[i];
        fputs("  ", stdout);
        info_name(kv->key, width);
        printf(" %-7s ", gguf_type_name(kv->type));
        info_value(kv, max_items);
        putchar('\n');
    }
    info_model(f, max_items);
    info_tensors(f, table);
    gguf_close(f);
    return 0;
}
