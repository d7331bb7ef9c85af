/*
 * libFuzzer target for the GGUF reader (and, on inputs it accepts, the
 * writer): parse arbitrary bytes with gguf_open_memory; when that succeeds,
 * walk every accessor and check the reader's promises (strings and tensor
 * bytes inside the image, lookups finding what the tables hold), then write
 * the file back out and require the re-parse to see the same metadata.
 * A broken promise traps, so libFuzzer reports it like a crash.
 * Build: make fuzz; run: fuzz/run.sh SECONDS.
 */
#include "gguf/gguf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define PROMISE(c)                      \
    do {                                \
        if (!(c)) __builtin_trap();     \
    } while (0)

static volatile uint64_t g_sink;

static void fz_inside(const gguf_file *f, const void *p, uint64_t n) {
    const uint8_t *b = p;
    PROMISE(n == 0 || (b >= f->base && n <= f->size && (uint64_t)(b - f->base) <= f->size - n));
    if (n) g_sink += b[0] + b[n - 1]; /* ASan sees the first and last byte */
}

static void fz_kv(const gguf_file *f, uint64_t i) {
    const gguf_kv *kv = &f->kv[i];
    fz_inside(f, kv->key.ptr, kv->key.len);
    char *key = gguf_str_dup(kv->key);
    if (!key) return;
    if (strlen(key) == kv->key.len) PROMISE(gguf_get_kv(f, key) == kv); /* keys are unique */
    uint32_t u;
    int64_t s;
    float x;
    bool b;
    gguf_str str;
    g_sink += gguf_get_u32(f, key, &u) == PL_OK ? u : 0;
    g_sink += gguf_get_i64(f, key, &s) == PL_OK ? (uint64_t)s : 0;
    g_sink += gguf_get_f32(f, key, &x) == PL_OK && x == x;
    g_sink += gguf_get_bool(f, key, &b) == PL_OK && b;
    g_sink += gguf_get_u32_or(f, key, 3) + gguf_get_bool_or(f, key, false) + (gguf_get_f32_or(f, key, 1.0f) > 0);
    if (gguf_get_str(f, key, &str) == PL_OK) fz_inside(f, str.ptr, str.len);
    if (kv->type == GGUF_TYPE_ARRAY) {
        if (kv->arr_n) {
            g_sink += (uint64_t)gguf_arr_int(kv, 0) + (uint64_t)gguf_arr_int(kv, kv->arr_n - 1);
            g_sink += gguf_arr_f32(kv, kv->arr_n - 1) > 0;
        }
        g_sink += (uint64_t)gguf_arr_int(kv, kv->arr_n); /* out of range: 0, no read */
        if (kv->arr_type == GGUF_TYPE_STRING)
            for (uint64_t k = 0; k < kv->arr_n; k++) fz_inside(f, kv->strs[k].ptr, kv->strs[k].len);
    }
    g_sink += strlen(gguf_type_name(kv->type));
    free(key);
}

/* Write what was parsed back out (in memory) and parse it again. */
static void fz_rewrite(const gguf_file *f) {
    gguf_writer *w = gguf_writer_new();
    char *buf = NULL;
    size_t len = 0;
    FILE *fp = NULL;
    gguf_file *g = NULL;
    if (!w || gguf_writer_copy_kv(w, f, NULL) != PL_OK) goto done;
    for (uint64_t i = 0; i < f->n_tensors; i++) {
        const gguf_tensor *t = &f->tensors[i];
        char *name = gguf_str_dup(t->name);
        pl_status st = name ? gguf_writer_add_tensor(w, name, t->type, t->n_dims ? t->n_dims : 1, t->ne, t->data) : PL_ERR_NOMEM;
        free(name);
        if (st) goto done; /* e.g. a name too long for llama.cpp */
    }
    if (!(fp = open_memstream(&buf, &len))) goto done;
    int ok = gguf_writer_write_header(w, fp) == PL_OK;
    for (uint64_t i = 0; ok && i < f->n_tensors; i++) ok = gguf_writer_write_tensor_data(w, fp, i, NULL) == PL_OK;
    if (fclose(fp) != 0) ok = 0;
    if (!ok) goto done;
    PROMISE(gguf_open_memory(buf, len, "rewrite", &g) == PL_OK);
    PROMISE(g->n_kv == f->n_kv && g->n_tensors == f->n_tensors);
    for (uint64_t i = 0; i < f->n_kv; i++) {
        PROMISE(g->kv[i].type == f->kv[i].type && g->kv[i].arr_n == f->kv[i].arr_n);
        PROMISE(g->kv[i].key.len == f->kv[i].key.len && !memcmp(g->kv[i].key.ptr, f->kv[i].key.ptr, f->kv[i].key.len));
    }
    for (uint64_t i = 0; i < f->n_tensors; i++)
        PROMISE(g->tensors[i].nbytes == f->tensors[i].nbytes && !memcmp(g->tensors[i].data, f->tensors[i].data, f->tensors[i].nbytes));
done:
    gguf_close(g);
    free(buf);
    gguf_writer_free(w);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    gguf_file *f = NULL;
    if (gguf_open_memory(data, size, "fuzz", &f) != PL_OK) {
        PROMISE(f == NULL && pl_last_error()[0]);
        return 0;
    }
    PROMISE(f->alignment && !(f->alignment & (f->alignment - 1)) && f->data_offset <= f->size);
    for (uint64_t i = 0; i < f->n_kv; i++) fz_kv(f, i);
    for (uint64_t i = 0; i < f->n_tensors; i++) {
        const gguf_tensor *t = &f->tensors[i];
        fz_inside(f, t->name.ptr, t->name.len);
        fz_inside(f, t->data, t->nbytes);
        PROMISE(t->nbytes > 0 && t->offset % f->alignment == 0);
        char *name = gguf_str_dup(t->name);
        if (name && strlen(name) == t->name.len) PROMISE(gguf_find_tensor(f, name) == t);
        free(name);
    }
    PROMISE(gguf_find_key(f, "fuzz.absent.key") < 0 || gguf_get_kv(f, "fuzz.absent.key"));
    fz_rewrite(f);
    gguf_close(f);
    return 0;
}
