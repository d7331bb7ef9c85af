/*
 * Models in several files, seen as one image. llama.cpp's gguf-split files
 * ("<prefix>-00001-of-0000N.gguf") are each a GGUF: the first holds the
 * metadata, every one holds split.no / split.count / split.tensors.count and
 * a share of the tensors. We synthesize the header of the merged file (the
 * first split's key/values without split.*, then every tensor's info with
 * its offset in the merged data section) into memory and place each split's
 * data section after it at a position congruent with its file offset, so the
 * tensor bytes are mapped zero-copy (gguf_open_segments). Raw chunks
 * ("<file>.part-00001-of-0000N", cut anywhere) are just concatenated.
 * gguf_open_any picks by name and, on request, checks SHA-256 sums from a
 * sidecar ("<file or prefix>.sha256", sha256sum's format) before mapping.
 */
#include "gguf_impl.h"

#include "../core/alloc.h"
#include "../core/sha256.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define SPLIT_MAX 99999

/* Match `path` against a name ending in `tail`, where each '0' of tail stands
 * for a digit: the digits before index `first_end` of tail make the first
 * number, the rest the second. 1 with the part before the tail in out. */
static int match_numbered_tail(const char *path, const char *tail, size_t first_end, char *out, size_t cap, int *no,
                               int *count) {
    const size_t n = strlen(path), tl = strlen(tail);
    if (n <= tl) return 0;
    const char *t = path + n - tl;
    int a = 0, b = 0;
    for (size_t i = 0; i < tl; i++) {
        if (tail[i] == '0') {
            if (t[i] < '0' || t[i] > '9') return 0;
            if (i < first_end) a = a * 10 + (t[i] - '0');
            else b = b * 10 + (t[i] - '0');
        } else if (t[i] != tail[i]) {
            return 0;
        }
    }
    if (a < 1 || b < 1 || a > b || n - tl + 1 > cap) return 0;
    memcpy(out, path, n - tl);
    out[n - tl] = 0;
    *no = a;
    *count = b;
    return 1;
}

/* "...-00001-of-00003.gguf": 1 with the prefix, shard number (1-based) and count. */
int gguf_split_name(const char *path, char *prefix, size_t cap, int *no, int *count) {
    return match_numbered_tail(path, "-00000-of-00000.gguf", 6, prefix, cap, no, count);
}

/* "<file>.part-00001-of-00004": 1 with the file name, part number and count. */
int gguf_part_name(const char *path, char *file, size_t cap, int *no, int *count) {
    return match_numbered_tail(path, ".part-00000-of-00000", 11, file, cap, no, count);
}

void gguf_paths_free(char **paths, int n) {
    if (!paths) return;
    for (int i = 0; i < n; i++) free(paths[i]);
    free(paths);
}

pl_status gguf_paths(const char *path, char ***out, int *n_out) {
    *out = NULL;
    *n_out = 0;
    char stem[4096];
    int no, count, split = 0;
    if (gguf_split_name(path, stem, sizeof stem, &no, &count)) split = 1;
    else if (!gguf_part_name(path, stem, sizeof stem, &no, &count)) count = 1;
    char **v = calloc((size_t)count, sizeof *v);
    if (!v) return pl_fail(PL_ERR_NOMEM, "no memory for %d file names", count);
    for (int i = 0; i < count; i++) {
        const size_t cap = strlen(path) + 32;
        if (!(v[i] = malloc(cap))) {
            gguf_paths_free(v, count);
            return pl_fail(PL_ERR_NOMEM, "no memory for file names");
        }
        if (count == 1 && !split) snprintf(v[i], cap, "%s", path);
        else if (split) snprintf(v[i], cap, "%s-%05d-of-%05d.gguf", stem, i + 1, count);
        else snprintf(v[i], cap, "%s.part-%05d-of-%05d", stem, i + 1, count);
    }
    *out = v;
    *n_out = count;
    return PL_OK;
}

/* ------------------------------------------------------------ sidecar sums */

int gguf_sidecar_sum(const char *path, const char *file, char hex[65]) {
    char stem[4096], side[4200];
    int no, count;
    if (gguf_split_name(path, stem, sizeof stem, &no, &count) || gguf_part_name(path, stem, sizeof stem, &no, &count))
        snprintf(side, sizeof side, "%s.sha256", stem);
    else
        snprintf(side, sizeof side, "%s.sha256", path);
    FILE *fp = fopen(side, "r");
    if (!fp) return 0;
    const char *slash = strrchr(file, '/');
    const char *base = slash ? slash + 1 : file;
    char line[4400];
    int found = 0;
    while (!found && fgets(line, sizeof line, fp)) {
        line[strcspn(line, "\r\n")] = 0;
        /* "<64 hex>  <name>" or "<64 hex> *<name>" (binary mode) */
        if (strlen(line) < 66 || line[64] != ' ') continue;
        const char *name = line + 65;
        if (*name == ' ' || *name == '*') name++;
        const char *ns = strrchr(name, '/');
        if (strcmp(ns ? ns + 1 : name, base) != 0) continue;
        for (int i = 0; i < 64; i++) {
            char c = line[i];
            if (c >= 'A' && c <= 'F') c = (char)(c - 'A' + 'a');
            if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) break;
            hex[i] = c;
            if (i == 63) found = 1;
        }
        hex[64] = 0;
    }
    fclose(fp);
    return found;
}

static pl_status split_verify(const char *path, char **files, int n) {
    for (int i = 0; i < n; i++) {
        char want[65], got[65];
        if (!gguf_sidecar_sum(path, files[i], want))
            return pl_fail(PL_ERR_INVALID_ARG, "%s: no SHA-256 to check against (expected a line for it in a .sha256 file next to it)",
                           files[i]);
        const int fd = open(files[i], O_RDONLY | O_CLOEXEC);
        if (fd < 0) return pl_fail(PL_ERR_IO, "%s: cannot open: %s", files[i], strerror(errno));
        const off_t end = lseek(fd, 0, SEEK_END);
        uint8_t d[32];
        pl_status st = end < 0 ? pl_fail(PL_ERR_IO, "%s: cannot seek", files[i]) : sha256_fd(fd, 0, (uint64_t)end, files[i], d);
        close(fd);
        if (st) return st;
        sha256_hex(d, got);
        if (strcmp(got, want) != 0)
            return pl_fail(PL_ERR_FORMAT, "%s: SHA-256 mismatch: the file hashes to %s, the sidecar says %s (corrupt or replaced)",
                           files[i], got, want);
    }
    return PL_OK;
}

/* ------------------------------------------------------------ gguf-split */

typedef struct split_buf {
    uint8_t *p;
    size_t n, cap;
} split_buf;

static int split_put(split_buf *b, const void *src, size_t n) {
    if (b->n + n > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->n + n) cap *= 2;
        uint8_t *np = realloc(b->p, cap);
        if (!np) return 0;
        b->p = np;
        b->cap = cap;
    }
    memcpy(b->p + b->n, src, n);
    b->n += n;
    return 1;
}

static int split_u32(split_buf *b, uint32_t v) { return split_put(b, &v, 4); }
static int split_u64(split_buf *b, uint64_t v) { return split_put(b, &v, 8); }
static int split_str(split_buf *b, gguf_str s) { return split_u64(b, s.len) && split_put(b, s.ptr, (size_t)s.len); }

static bool split_is_split_key(gguf_str k) { return k.len > 6 && memcmp(k.ptr, "split.", 6) == 0; }

/* Header bytes of the merged file; tensor offsets from offs (per tensor, in
 * split order). Pads to the alignment. */
static int split_header(split_buf *b, gguf_file *const *fs, int n, const uint64_t *offs, uint64_t align) {
    const gguf_file *f0 = fs[0];
    uint64_t n_kv = 0, n_t = 0;
    for (uint64_t i = 0; i < f0->n_kv; i++) n_kv += !split_is_split_key(f0->kv[i].key);
    for (int s = 0; s < n; s++) n_t += fs[s]->n_tensors;
    b->n = 0;
    int ok = split_u32(b, GGUF_MAGIC) && split_u32(b, 3) && split_u64(b, n_t) && split_u64(b, n_kv);
    for (uint64_t i = 0; ok && i < f0->n_kv; i++) {
        const gguf_kv *kv = &f0->kv[i];
        if (split_is_split_key(kv->key)) continue;
        const gguf_span raw = gguf_kv_raw(f0, i);
        ok = split_str(b, kv->key) && split_u32(b, (uint32_t)kv->type) && split_put(b, raw.ptr, (size_t)raw.len);
    }
    uint64_t k = 0;
    for (int s = 0; ok && s < n; s++)
        for (uint64_t i = 0; ok && i < fs[s]->n_tensors; i++, k++) {
            const gguf_tensor *t = &fs[s]->tensors[i];
            ok = split_str(b, t->name) && split_u32(b, t->n_dims);
            for (uint32_t d = 0; ok && d < t->n_dims; d++) ok = split_u64(b, (uint64_t)t->ne[d]);
            ok = ok && split_u32(b, t->type) && split_u64(b, offs[k]);
        }
    static const uint8_t zeros[256];
    while (ok && b->n % align) ok = split_put(b, zeros, (size_t)(align - b->n % align) < sizeof zeros ? (size_t)(align - b->n % align) : sizeof zeros);
    return ok;
}

pl_status gguf_open_split(const char *path, gguf_file **out) {
    *out = NULL;
    char **files = NULL;
    int n = 0;
    pl_status st = gguf_paths(path, &files, &n);
    if (st) return st;
    gguf_file **fs = calloc((size_t)n, sizeof *fs);
    gguf_segment *segs = calloc((size_t)n + 1, sizeof *segs);
    uint64_t *offs = NULL;
    split_buf hb = {0};
    if (!fs || !segs) {
        st = pl_fail(PL_ERR_NOMEM, "%s: no memory", path);
        goto done;
    }
    uint64_t n_t = 0;
    for (int s = 0; s < n; s++) {
        if ((st = gguf_open(files[s], &fs[s]))) goto done;
        uint32_t no = 0, count = 0;
        if (gguf_get_u32(fs[s], "split.no", &no) || gguf_get_u32(fs[s], "split.count", &count) || no != (uint32_t)s ||
            count != (uint32_t)n) {
            st = pl_fail(PL_ERR_FORMAT, "%s: split.no / split.count say %u of %u, the name says %d of %d", files[s], no,
                         count, s + 1, n);
            goto done;
        }
        if (fs[s]->alignment != fs[0]->alignment) {
            st = pl_fail(PL_ERR_UNSUPPORTED, "%s: alignment %" PRIu64 " differs from the first split's %" PRIu64, files[s],
                         fs[s]->alignment, fs[0]->alignment);
            goto done;
        }
        n_t += fs[s]->n_tensors;
    }
    int64_t declared = -1;
    if (gguf_get_i64(fs[0], "split.tensors.count", &declared) || declared != (int64_t)n_t) {
        st = pl_fail(PL_ERR_FORMAT, "%s: split.tensors.count is %lld but the %d splits hold %" PRIu64 " tensors", files[0],
                     (long long)declared, n, n_t);
        goto done;
    }
    if (!(offs = calloc(n_t ? n_t : 1, sizeof *offs))) {
        st = pl_fail(PL_ERR_NOMEM, "%s: no memory", path);
        goto done;
    }
    const uint64_t align = fs[0]->alignment, pg = mem_page_size();
    /* the header's size does not depend on the offsets: measure it first */
    if (!split_header(&hb, fs, n, offs, align)) {
        st = pl_fail(PL_ERR_NOMEM, "%s: no memory for the merged header", path);
        goto done;
    }
    const uint64_t H = hb.n;
    /* split s's data section [d, end) goes to image position P = d mod page
     * past the next page boundary, so its pages line up with the file's */
    uint64_t cursor = H, k = 0;
    segs[0] = (gguf_segment){.fd = -1, .mem = NULL, .offset = 0, .len = H, .pos = 0, .name = "merged header"};
    for (int s = 0; s < n; s++) {
        const gguf_file *f = fs[s];
        const uint64_t d = f->data_offset, len = f->size > d ? f->size - d : 0;
        const uint64_t P = (cursor + pg - 1) / pg * pg + d % pg;
        for (uint64_t i = 0; i < f->n_tensors; i++) offs[k++] = P - H + f->tensors[i].offset;
        int fd = -1;
        uint64_t foff = 0, avail = 0;
        if (len) fd = gguf_source_at(f, d, &foff, &avail);
        segs[s + 1] = (gguf_segment){.fd = fd, .offset = foff, .len = len, .pos = P, .name = files[s]};
        cursor = P + len;
    }
    if (!split_header(&hb, fs, n, offs, align) || hb.n != H) {
        st = pl_fail(PL_ERR_INTERNAL, "%s: the merged header changed size", path);
        goto done;
    }
    segs[0].mem = hb.p;
    /* pieces without data (no tensors) are left out */
    int m = 0;
    for (int i = 0; i <= n; i++)
        if (segs[i].len) segs[m++] = segs[i];
    st = gguf_open_segments(segs, m, path, out);
done:
    free(hb.p);
    free(offs);
    free(segs);
    if (fs)
        for (int s = 0; s < n; s++) gguf_close(fs[s]);
    free(fs);
    gguf_paths_free(files, n);
    return st;
}

pl_status gguf_open_any(const char *path, const gguf_open_opts *opts, gguf_file **out) {
    if (!path || !out) return pl_fail(PL_ERR_INVALID_ARG, "gguf_open_any: path and out are required");
    *out = NULL;
    char **files = NULL;
    int n = 0;
    pl_status st = gguf_paths(path, &files, &n);
    if (st) return st;
    if (opts && opts->verify && (st = split_verify(path, files, n))) goto done;
    char stem[4096];
    int no, count;
    if (gguf_split_name(path, stem, sizeof stem, &no, &count)) st = gguf_open_split(path, out);
    else if (n > 1) st = gguf_open_chunks((const char *const *)files, n, path, out);
    else st = gguf_open(path, out);
done:
    gguf_paths_free(files, n);
    return st;
}
