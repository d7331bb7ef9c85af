/*
 * Writing a manifest (pl_manifest_pack): for each model file (any piece of
 * a split set stands for the set) the variant's quant type, sizes, SHA-256
 * of every file, bits per weight, the plan numbers from its header, the
 * memory a 512-token context needs and the smallest device profile that
 * holds it. Paths are written relative to the manifest's folder when the
 * files lie inside it.
 */
#include "plan.h"

#include "../core/sha256.h"
#include "../quant/quant_recipe.h"

#include <ctype.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

typedef struct pk_buf {
    char *p;
    size_t n, cap;
    bool oom;
} pk_buf;

static void pk_printf(pk_buf *b, const char *fmt, ...) PL_PRINTF(2, 3);
static void pk_printf(pk_buf *b, const char *fmt, ...) {
    if (b->oom) return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        const int k = vsnprintf(b->p ? b->p + b->n : NULL, b->p ? b->cap - b->n : 0, fmt, ap);
        va_end(ap);
        if (k < 0) {
            b->oom = true;
            return;
        }
        if (b->p && b->n + (size_t)k < b->cap) {
            b->n += (size_t)k;
            return;
        }
        size_t cap = b->cap ? b->cap : 4096;
        while (cap <= b->n + (size_t)k) cap *= 2;
        char *np = realloc(b->p, cap);
        if (!np) {
            b->oom = true;
            return;
        }
        b->p = np;
        b->cap = cap;
    }
}

static void pk_str(pk_buf *b, const char *s) {
    pk_printf(b, "\"");
    for (; *s; s++) {
        const unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') pk_printf(b, "\\%c", c);
        else if (c < 0x20) pk_printf(b, "\\u%04x", c);
        else pk_printf(b, "%c", c);
    }
    pk_printf(b, "\"");
}

/* path relative to dir when it lies inside it, else absolute (a reader
 * refuses ".." so a manifest cannot point outside its folder by accident). */
static void pk_rel(const char *path, const char *dir, char *out, size_t cap) {
    char rp[PATH_MAX], rd[PATH_MAX];
    if (!realpath(path, rp)) {
        snprintf(out, cap, "%s", path);
        return;
    }
    if (dir && realpath(dir, rd)) {
        const size_t l = strlen(rd);
        if (!strncmp(rp, rd, l) && rp[l] == '/') {
            snprintf(out, cap, "%s", rp + l + 1);
            return;
        }
    }
    snprintf(out, cap, "%s", rp);
}

/* The file type's name (general.file_type), else the type most bytes are in. */
static void pk_quant(const gguf_file *f, char *out, size_t cap) {
    uint32_t ft;
    if (gguf_find_key(f, "general.file_type") >= 0 && gguf_get_u32(f, "general.file_type", &ft) == PL_OK &&
        quant_recipe_by_ftype((int)ft)) {
        snprintf(out, cap, "%s", quant_recipe_by_ftype((int)ft)->name);
        return;
    }
    uint64_t by[QT_COUNT] = {0};
    for (uint64_t i = 0; i < f->n_tensors; i++)
        if (f->tensors[i].type < QT_COUNT) by[f->tensors[i].type] += f->tensors[i].nbytes;
    int best = 0;
    for (int t = 1; t < QT_COUNT; t++)
        if (by[t] > by[best]) best = t;
    snprintf(out, cap, "%s", quant_get((uint32_t)best) ? quant_get((uint32_t)best)->name : "?");
    for (char *c = out; *c; c++) *c = (char)toupper((unsigned char)*c);
}

static pl_status pk_variant(pk_buf *b, const char *path, const char *dir, bool first) {
    gguf_file *f = NULL;
    char **files = NULL;
    int n_files = 0;
    plan_model pm;
    memset(&pm, 0, sizeof pm);
    pl_status st = gguf_paths(path, &files, &n_files);
    if (!st) st = gguf_open_any(path, NULL, &f);
    if (!st) st = plan_describe(f, &pm);
    if (st) goto done;
    uint64_t n_params = 0, bytes = 0;
    for (uint64_t i = 0; i < f->n_tensors; i++) {
        uint64_t e = 1;
        for (uint32_t d = 0; d < GGUF_MAX_DIMS; d++) e *= (uint64_t)f->tensors[i].ne[d];
        n_params += e;
    }
    char quant[32], name[32];
    pk_quant(f, quant, sizeof quant);
    for (size_t i = 0; i <= strlen(quant); i++) name[i] = (char)tolower((unsigned char)quant[i]);
    /* the memory a 512-token context needs, on a phone's 4 big cores */
    plan_opts o;
    pl_ctx_params cp = pl_ctx_default_params();
    cp.n_ctx = pm.n_ctx_train < 512 ? pm.n_ctx_train : 512;
    cp.n_threads = 4;
    plan_opts_from_params(&pm, NULL, &cp, &o);
    o.copied_bytes = f->copied_bytes;
    const plan_limits none = {0};
    pl_plan pl;
    if ((st = plan_compute(&pm, &o, &none, &pl))) goto done;
    const char *klass = "";
    uint64_t klass_budget = UINT64_MAX;
    for (int i = 0; pl_device_profile_at(i); i++) {
        const pl_device_profile *d = pl_device_profile_at(i);
        if (d->budget_bytes >= (uint64_t)pl.total_bytes && d->budget_bytes < klass_budget) {
            klass = d->name;
            klass_budget = d->budget_bytes;
        }
    }
    for (int i = 0; i < n_files; i++) {
        struct stat sb;
        if (stat(files[i], &sb) != 0) {
            st = pl_fail(PL_ERR_IO, "%s: cannot stat", files[i]);
            goto done;
        }
        bytes += (uint64_t)sb.st_size;
    }
    pk_printf(b, "%s    {\n      \"name\": ", first ? "" : ",\n");
    pk_str(b, name);
    pk_printf(b, ",\n      \"quant\": ");
    pk_str(b, quant);
    pk_printf(b, ",\n      \"bits_per_weight\": %.4f,\n      \"n_params\": %llu,\n      \"bytes\": %llu,\n"
                 "      \"min_memory\": %lld,\n      \"memory_class\": ",
              (double)pm.weights_bytes * 8.0 / (double)(n_params ? n_params : 1), (unsigned long long)n_params,
              (unsigned long long)bytes, (long long)pl.total_bytes);
    pk_str(b, klass);
    pk_printf(b, ",\n      \"files\": [");
    for (int i = 0; i < n_files; i++) {
        char hex[65], rel[PATH_MAX];
        struct stat sb;
        if ((st = pl_sha256_file(files[i], 0, 0, hex))) goto done;
        stat(files[i], &sb);
        pk_rel(files[i], dir, rel, sizeof rel);
        pk_printf(b, "%s\n        {\"path\": ", i ? "," : "");
        pk_str(b, rel);
        pk_printf(b, ", \"bytes\": %llu, \"sha256\": \"%s\"}", (unsigned long long)sb.st_size, hex);
    }
    pk_printf(b, "\n      ],\n      \"plan\": {\"arch\": ");
    pk_str(b, pm.arch);
    pk_printf(b,
              ", \"n_vocab\": %d, \"n_embd\": %d, \"n_layer\": %d, \"n_head\": %d, \"n_head_kv\": %d, \"head_dim\": %d, "
              "\"n_ff\": %d, \"n_ctx_train\": %d, \"n_rot\": %d, \"tied\": %s,\n        \"file_bytes\": %llu, "
              "\"header_bytes\": %llu, \"weights_bytes\": %llu, \"embd_bytes\": %llu, \"embd_row_bytes\": %llu, "
              "\"layers_bytes\": %llu, \"tok_bytes\": %llu, \"slot_bytes\": %llu,\n        \"shapes\": [",
              pm.n_vocab, pm.n_embd, pm.n_layer, pm.n_head, pm.n_head_kv, pm.head_dim, pm.n_ff, pm.n_ctx_train, pm.n_rot,
              pm.tied ? "true" : "false", (unsigned long long)pm.file_bytes, (unsigned long long)pm.header_bytes,
              (unsigned long long)pm.weights_bytes, (unsigned long long)pm.embd_bytes,
              (unsigned long long)pm.embd_row_bytes, (unsigned long long)pm.layers_bytes,
              (unsigned long long)pm.tok_bytes, (unsigned long long)pm.slot_bytes);
    for (int i = 0; i < pm.n_shapes; i++)
        pk_printf(b, "%s[%u, %lld]", i ? ", " : "", pm.shapes[i].type, (long long)pm.shapes[i].n_in);
    pk_printf(b, "]}\n    }");
done:
    if (st) pl_fail_prefix(st, "packing %s", path);
    plan_model_clear(&pm);
    gguf_close(f);
    gguf_paths_free(files, n_files);
    return st;
}

pl_status pl_manifest_pack(const char *const *paths, int n, const char *model, const char *base_dir, char **json_out) {
    if (!paths || n <= 0 || !json_out) return pl_fail(PL_ERR_INVALID_ARG, "pl_manifest_pack: files and out are required");
    *json_out = NULL;
    pk_buf b = {0};
    pk_printf(&b, "{\n  \"format\": \"pocketllm-manifest\",\n  \"version\": 1,\n  \"model\": ");
    pk_str(&b, model ? model : "");
    pk_printf(&b, ",\n  \"variants\": [\n");
    for (int i = 0; i < n; i++) {
        pl_status st = pk_variant(&b, paths[i], base_dir, i == 0);
        if (st) {
            free(b.p);
            return st;
        }
    }
    pk_printf(&b, "\n  ]\n}\n");
    if (b.oom) {
        free(b.p);
        return pl_fail(PL_ERR_NOMEM, "pl_manifest_pack: out of memory");
    }
    *json_out = b.p;
    return PL_OK;
}
