/*
 * Writing models in pieces and putting them back together:
 *  - gguf-split sets as llama.cpp's gguf-split writes them: every key/value in
 *    the first file, then split.no (u16, 0-based), split.count (u16) and
 *    split.tensors.count (i32) in each; tensors in file order, a new file when
 *    the tensor count or the padded size would pass the limit;
 *  - raw chunks: the file's bytes cut into "<file>.part-0000K-of-0000N";
 *  - merging: one GGUF written from any image (a merged split view drops the
 *    split.* keys), so merge(split(x)) is x byte for byte for files laid out
 *    the standard way.
 * Each writer leaves a sha256sum-style sidecar next to the pieces.
 */
#include "gguf_impl.h"

#include "../core/sha256.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static bool sw_skip_split(const char *key) { return strncmp(key, "split.", 6) == 0; }

/* Append "<sum>  <base name>" for `file` to the sidecar `side`. */
static pl_status sw_sum_line(FILE *side, const char *file) {
    char hex[65];
    pl_status st = pl_sha256_file(file, 0, 0, hex);
    if (st) return st;
    const char *slash = strrchr(file, '/');
    if (fprintf(side, "%s  %s\n", hex, slash ? slash + 1 : file) < 0)
        return pl_fail(PL_ERR_IO, "writing the SHA-256 sidecar failed: %s", strerror(errno));
    return PL_OK;
}

static pl_status sw_write_sidecar(const char *side_path, char **files, int n) {
    FILE *fp = fopen(side_path, "w");
    if (!fp) return pl_fail(PL_ERR_IO, "%s: cannot create: %s", side_path, strerror(errno));
    pl_status st = PL_OK;
    for (int i = 0; i < n && !st; i++) st = sw_sum_line(fp, files[i]);
    if (fclose(fp) != 0 && !st) st = pl_fail(PL_ERR_IO, "%s: write failed: %s", side_path, strerror(errno));
    return st;
}

pl_status gguf_write_split(const gguf_file *src, const char *prefix, int max_tensors, uint64_t max_bytes, int *n_out) {
    if (!src || !prefix) return pl_fail(PL_ERR_INVALID_ARG, "gguf_write_split: source and prefix are required");
    if (max_tensors <= 0 && !max_bytes) max_tensors = 128; /* llama.cpp's default */
    /* which split each tensor goes to: llama.cpp's rule */
    int *which = calloc(src->n_tensors ? src->n_tensors : 1, sizeof *which);
    if (!which) return pl_fail(PL_ERR_NOMEM, "no memory");
    int n = 1;
    uint64_t cur = 0;
    for (uint64_t i = 0; i < src->n_tensors; i++) {
        const uint64_t sz = (src->tensors[i].nbytes + GGUF_DEFAULT_ALIGNMENT - 1) / GGUF_DEFAULT_ALIGNMENT * GGUF_DEFAULT_ALIGNMENT;
        bool cut = max_bytes ? cur + sz > max_bytes && cur > 0 : (i > 0 && i % (uint64_t)max_tensors == 0);
        if (cut) {
            n++;
            cur = sz;
        } else {
            cur += sz;
        }
        which[i] = n - 1;
    }
    pl_status st = PL_OK;
    if (n > 99999) {
        free(which);
        return pl_fail(PL_ERR_INVALID_ARG, "%s: %d splits is more than the naming allows", prefix, n);
    }
    char **files = calloc((size_t)n, sizeof *files);
    if (!files) st = pl_fail(PL_ERR_NOMEM, "no memory");
    for (int s = 0; s < n && !st; s++) {
        const size_t cap = strlen(prefix) + 32;
        if (!(files[s] = malloc(cap))) {
            st = pl_fail(PL_ERR_NOMEM, "no memory");
            break;
        }
        snprintf(files[s], cap, "%s-%05d-of-%05d.gguf", prefix, s + 1, n);
        gguf_writer *w = gguf_writer_new();
        if (!w) {
            st = pl_fail(PL_ERR_NOMEM, "no memory");
            break;
        }
        if (s == 0) st = gguf_writer_copy_kv(w, src, sw_skip_split);
        else if (src->alignment != GGUF_DEFAULT_ALIGNMENT) st = gguf_writer_set_u32(w, "general.alignment", (uint32_t)src->alignment);
        const uint16_t no = (uint16_t)s, count = (uint16_t)n;
        const int32_t nt = (int32_t)src->n_tensors;
        if (!st) st = gguf_writer_set_val(w, "split.no", GGUF_TYPE_UINT16, &no);
        if (!st) st = gguf_writer_set_val(w, "split.count", GGUF_TYPE_UINT16, &count);
        if (!st) st = gguf_writer_set_val(w, "split.tensors.count", GGUF_TYPE_INT32, &nt);
        for (uint64_t i = 0; i < src->n_tensors && !st; i++) {
            if (which[i] != s) continue;
            const gguf_tensor *t = &src->tensors[i];
            char *name = gguf_str_dup(t->name);
            if (!name) st = pl_fail(PL_ERR_NOMEM, "no memory");
            else st = gguf_writer_add_tensor(w, name, t->type, t->n_dims ? t->n_dims : 1, t->ne, t->data);
            free(name);
        }
        if (!st) st = gguf_writer_write_file(w, files[s]);
        gguf_writer_free(w);
    }
    if (!st) {
        char side[4200];
        snprintf(side, sizeof side, "%s.sha256", prefix);
        st = sw_write_sidecar(side, files, n);
    }
    if (files)
        for (int s = 0; s < n; s++) free(files[s]);
    free(files);
    free(which);
    if (!st && n_out) *n_out = n;
    return st;
}

pl_status gguf_write_parts(const char *path, uint64_t chunk_bytes, int *n_out) {
    if (!path || !chunk_bytes) return pl_fail(PL_ERR_INVALID_ARG, "gguf_write_parts: path and a chunk size are required");
    const int in = open(path, O_RDONLY | O_CLOEXEC);
    if (in < 0) return pl_fail(PL_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    const off_t end = lseek(in, 0, SEEK_END);
    pl_status st = PL_OK;
    const uint64_t size = end > 0 ? (uint64_t)end : 0;
    const uint64_t n64 = size ? (size + chunk_bytes - 1) / chunk_bytes : 0;
    if (!size) st = pl_fail(PL_ERR_FORMAT, "%s: empty file", path);
    else if (n64 > 99999) st = pl_fail(PL_ERR_INVALID_ARG, "%s: %" PRIu64 " chunks is more than the naming allows", path, n64);
    const int n = (int)n64;
    char **files = st ? NULL : calloc((size_t)n, sizeof *files);
    const size_t bufsz = 8u << 20;
    uint8_t *buf = st ? NULL : malloc(bufsz);
    if (!st && (!files || !buf)) st = pl_fail(PL_ERR_NOMEM, "no memory");
    for (int k = 0; k < n && !st; k++) {
        const size_t cap = strlen(path) + 32;
        if (!(files[k] = malloc(cap))) {
            st = pl_fail(PL_ERR_NOMEM, "no memory");
            break;
        }
        snprintf(files[k], cap, "%s.part-%05d-of-%05d", path, k + 1, n);
        FILE *out = fopen(files[k], "wb");
        if (!out) {
            st = pl_fail(PL_ERR_IO, "%s: cannot create: %s", files[k], strerror(errno));
            break;
        }
        const uint64_t from = (uint64_t)k * chunk_bytes, to = from + chunk_bytes < size ? from + chunk_bytes : size;
        for (uint64_t at = from; at < to && !st;) {
            const size_t want = to - at < bufsz ? (size_t)(to - at) : bufsz;
            const ssize_t got = pread(in, buf, want, (off_t)at);
            if (got <= 0) st = pl_fail(PL_ERR_IO, "%s: read failed at %" PRIu64, path, at);
            else if (fwrite(buf, 1, (size_t)got, out) != (size_t)got)
                st = pl_fail(PL_ERR_IO, "%s: write failed: %s", files[k], strerror(errno));
            else at += (uint64_t)got;
        }
        if (fclose(out) != 0 && !st) st = pl_fail(PL_ERR_IO, "%s: write failed: %s", files[k], strerror(errno));
    }
    if (!st) {
        char side[4200];
        snprintf(side, sizeof side, "%s.sha256", path);
        st = sw_write_sidecar(side, files, n);
    }
    if (files)
        for (int k = 0; k < n; k++) free(files[k]);
    free(files);
    free(buf);
    close(in);
    if (!st && n_out) *n_out = n;
    return st;
}

pl_status gguf_write_merged(const gguf_file *src, const char *out_path) {
    if (!src || !out_path) return pl_fail(PL_ERR_INVALID_ARG, "gguf_write_merged: source and path are required");
    gguf_writer *w = gguf_writer_new();
    if (!w) return pl_fail(PL_ERR_NOMEM, "no memory");
    pl_status st = gguf_writer_copy_kv(w, src, sw_skip_split);
    for (uint64_t i = 0; i < src->n_tensors && !st; i++) {
        const gguf_tensor *t = &src->tensors[i];
        char *name = gguf_str_dup(t->name);
        if (!name) st = pl_fail(PL_ERR_NOMEM, "no memory");
        else st = gguf_writer_add_tensor(w, name, t->type, t->n_dims ? t->n_dims : 1, t->ne, t->data);
        free(name);
    }
    if (!st) st = gguf_writer_write_file(w, out_path);
    gguf_writer_free(w);
    return st;
}
