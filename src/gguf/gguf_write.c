/*
 * GGUF writer: collects metadata (each value kept already encoded, exactly as
 * it will appear in the file) and tensor descriptions, then emits a GGUF v3
 * file: header, key/values, tensor infos, padding to the alignment (when there
 * are tensors), and each tensor's bytes padded to the alignment, in the order
 * the tensors were added.
 *
 * Offsets are computed when the header is written, so general.alignment may
 * be set at any time before that. Streaming mode writes the header, then the
 * tensors one at a time in order (the writer checks the order); whole-file
 * mode does both and removes a partial file on failure.
 */
#include "gguf_impl.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

_Static_assert(sizeof(bool) == 1, "GGUF bool arrays are written from C bool arrays");

#define GGUF_WRITE_VERSION 3
#define GGUF_MAX_TENSOR_NAME 63 /* llama.cpp refuses longer names (GGML_MAX_NAME) */

typedef struct gguf_wkv {
    char *key;
    uint32_t type;    /* top-level type; GGUF_TYPE_ARRAY for arrays */
    uint8_t *val;     /* encoded value (see gguf_span in gguf_impl.h) */
    uint64_t val_len;
} gguf_wkv;

typedef struct gguf_wtensor {
    char *name;
    uint32_t type, n_dims;
    int64_t ne[GGUF_MAX_DIMS];
    const void *data; /* may be NULL until write_tensor_data */
    uint64_t nbytes;
    uint64_t offset;  /* set by gguf_layout */
} gguf_wtensor;

struct gguf_writer {
    gguf_wkv *kv;
    uint64_t n_kv, cap_kv;
    gguf_wtensor *t;
    uint64_t n_t, cap_t;
    uint64_t alignment;
    char *path;          /* names the output in messages */
    bool header_done;    /* streaming state: header written ... */
    uint64_t next;       /* ... and the index of the next tensor to write */
};

static char *gguf_wdup(const char *s) {
    size_t n = strlen(s) + 1;
    char *p = malloc(n);
    if (p) memcpy(p, s, n);
    return p;
}

static const char *gguf_wname(const gguf_writer *w) { return w->path ? w->path : "<gguf stream>"; }

gguf_writer *gguf_writer_new(void) {
    gguf_writer *w = calloc(1, sizeof *w);
    if (w) w->alignment = GGUF_DEFAULT_ALIGNMENT;
    return w;
}

void gguf_writer_free(gguf_writer *w) {
    if (!w) return;
    for (uint64_t i = 0; i < w->n_kv; i++) {
        free(w->kv[i].key);
        free(w->kv[i].val);
    }
    for (uint64_t i = 0; i < w->n_t; i++) free(w->t[i].name);
    free(w->kv);
    free(w->t);
    free(w->path);
    free(w);
}

pl_status gguf_writer_set_path(gguf_writer *w, const char *path) {
    if (!w || !path) return pl_fail(PL_ERR_INVALID_ARG, "gguf_writer_set_path: NULL argument");
    char *p = gguf_wdup(path);
    if (!p) return pl_fail(PL_ERR_NOMEM, "%s: no memory", path);
    free(w->path);
    w->path = p;
    return PL_OK;
}

/* ------------------------------------------------------------ metadata */

/* Stores key = (type, encoded bytes), taking ownership of val; replaces an
 * existing key in place so the order of first insertion is kept. */
static pl_status gguf_put(gguf_writer *w, const char *key, uint32_t type, uint8_t *val, uint64_t val_len) {
    pl_status st;
    char *k = NULL;
    if (!w || !key) {
        st = pl_fail(PL_ERR_INVALID_ARG, "gguf writer: NULL writer or key");
        goto fail;
    }
    if (w->header_done) {
        st = pl_fail(PL_ERR_INVALID_ARG, "%s: key '%s' set after the header was written", gguf_wname(w), key);
        goto fail;
    }
    if (strlen(key) > 65535) {
        st = pl_fail(PL_ERR_INVALID_ARG, "%s: key '%.40s...' is longer than 65535 bytes", gguf_wname(w), key);
        goto fail;
    }
    if (!strcmp(key, "general.alignment")) {
        int neg;
        uint64_t a;
        if (type == GGUF_TYPE_ARRAY || !gguf_scalar_size(type) || !gguf_int_value(type, val, &neg, &a) || neg || a == 0 ||
            a > UINT32_MAX || (a & (a - 1))) {
            st = pl_fail(PL_ERR_INVALID_ARG, "%s: general.alignment must be a nonzero power of two (uint32)", gguf_wname(w));
            goto fail;
        }
        w->alignment = a;
    }
    for (uint64_t i = 0; i < w->n_kv; i++) {
        if (!strcmp(w->kv[i].key, key)) {
            free(w->kv[i].val);
            w->kv[i].type = type;
            w->kv[i].val = val;
            w->kv[i].val_len = val_len;
            return PL_OK;
        }
    }
    if (w->n_kv == w->cap_kv) {
        uint64_t cap = w->cap_kv ? 2 * w->cap_kv : 16;
        gguf_wkv *kv = realloc(w->kv, cap * sizeof *kv);
        if (!kv) {
            st = pl_fail(PL_ERR_NOMEM, "%s: no memory for key '%s'", gguf_wname(w), key);
            goto fail;
        }
        w->kv = kv;
        w->cap_kv = cap;
    }
    if (!(k = gguf_wdup(key))) {
        st = pl_fail(PL_ERR_NOMEM, "%s: no memory for key '%s'", gguf_wname(w), key);
        goto fail;
    }
    w->kv[w->n_kv++] = (gguf_wkv){k, type, val, val_len};
    return PL_OK;
fail:
    free(val);
    return st;
}

/* Encoded scalar: `v` points to the native value (for STRING a const char *). */
static pl_status gguf_put_scalar(gguf_writer *w, const char *key, gguf_type type, const void *v) {
    uint64_t n = gguf_scalar_size(type), len;
    uint8_t *val;
    if (!v) return pl_fail(PL_ERR_INVALID_ARG, "%s: key '%s': NULL value", w ? gguf_wname(w) : "gguf writer", key ? key : "?");
    if (type == GGUF_TYPE_STRING) {
        const char *s = *(const char *const *)v;
        if (!s) return pl_fail(PL_ERR_INVALID_ARG, "%s: key '%s': NULL string", w ? gguf_wname(w) : "gguf writer", key ? key : "?");
        len = strlen(s);
        if (!(val = malloc(8 + len + 1))) return pl_fail(PL_ERR_NOMEM, "gguf writer: no memory for key '%s'", key ? key : "?");
        memcpy(val, &len, 8);
        memcpy(val + 8, s, len);
        return gguf_put(w, key, type, val, 8 + len);
    }
    if (!n) return pl_fail(PL_ERR_INVALID_ARG, "gguf writer: key '%s': %s is not a scalar type", key ? key : "?", gguf_type_name(type));
    if (!(val = malloc(n))) return pl_fail(PL_ERR_NOMEM, "gguf writer: no memory for key '%s'", key ? key : "?");
    if (type == GGUF_TYPE_BOOL) val[0] = *(const bool *)v ? 1 : 0;
    else memcpy(val, v, n);
    return gguf_put(w, key, type, val, n);
}

pl_status gguf_writer_set_val(gguf_writer *w, const char *key, gguf_type type, const void *v) {
    return gguf_put_scalar(w, key, type, v);
}
pl_status gguf_writer_set_u32(gguf_writer *w, const char *key, uint32_t v) {
    return gguf_put_scalar(w, key, GGUF_TYPE_UINT32, &v);
}
pl_status gguf_writer_set_i32(gguf_writer *w, const char *key, int32_t v) {
    return gguf_put_scalar(w, key, GGUF_TYPE_INT32, &v);
}
pl_status gguf_writer_set_u64(gguf_writer *w, const char *key, uint64_t v) {
    return gguf_put_scalar(w, key, GGUF_TYPE_UINT64, &v);
}
pl_status gguf_writer_set_f32(gguf_writer *w, const char *key, float v) {
    return gguf_put_scalar(w, key, GGUF_TYPE_FLOAT32, &v);
}
pl_status gguf_writer_set_bool(gguf_writer *w, const char *key, bool v) {
    return gguf_put_scalar(w, key, GGUF_TYPE_BOOL, &v);
}
pl_status gguf_writer_set_str(gguf_writer *w, const char *key, const char *v) {
    return gguf_put_scalar(w, key, GGUF_TYPE_STRING, &v);
}

pl_status gguf_writer_set_arr(gguf_writer *w, const char *key, gguf_type elem_type, const void *data, uint64_t n) {
    const char *who = w ? gguf_wname(w) : "gguf writer";
    uint64_t esz = gguf_scalar_size(elem_type), len = 12, add;
    uint8_t *val;
    uint32_t et = elem_type;
    if (!key) return pl_fail(PL_ERR_INVALID_ARG, "%s: NULL key", who);
    if (!data && n) return pl_fail(PL_ERR_INVALID_ARG, "%s: key '%s': NULL array data", who, key);
    if (!esz && elem_type != GGUF_TYPE_STRING)
        return pl_fail(PL_ERR_INVALID_ARG, "%s: key '%s': arrays of %s are not supported", who, key, gguf_type_name(elem_type));
    const char *const *strs = elem_type == GGUF_TYPE_STRING ? data : NULL;
    if (strs) {
        for (uint64_t i = 0; i < n; i++) {
            if (!strs[i]) return pl_fail(PL_ERR_INVALID_ARG, "%s: key '%s': string %" PRIu64 " is NULL", who, key, i);
            if (!pl_add_ok(len, 8 + (uint64_t)strlen(strs[i]), &len))
                return pl_fail(PL_ERR_INVALID_ARG, "%s: key '%s': array too large", who, key);
        }
    } else if (!pl_mul_ok(n, esz, &add) || !pl_add_ok(len, add, &len)) {
        return pl_fail(PL_ERR_INVALID_ARG, "%s: key '%s': array too large", who, key);
    }
    if (len > SIZE_MAX || !(val = malloc((size_t)len)))
        return pl_fail(PL_ERR_NOMEM, "%s: key '%s': no memory for %" PRIu64 " bytes", who, key, len);
    memcpy(val, &et, 4);
    memcpy(val + 4, &n, 8);
    uint8_t *p = val + 12;
    if (strs) {
        for (uint64_t i = 0; i < n; i++) {
            uint64_t sl = strlen(strs[i]);
            memcpy(p, &sl, 8);
            memcpy(p + 8, strs[i], sl);
            p += 8 + sl;
        }
    } else if (elem_type == GGUF_TYPE_BOOL) {
        for (uint64_t i = 0; i < n; i++) p[i] = ((const bool *)data)[i] ? 1 : 0;
    } else if (n) {
        memcpy(p, data, (size_t)(n * esz));
    }
    return gguf_put(w, key, GGUF_TYPE_ARRAY, val, len);
}

pl_status gguf_writer_copy_kv(gguf_writer *w, const gguf_file *src, bool (*skip)(const char *key)) {
    if (!w || !src) return pl_fail(PL_ERR_INVALID_ARG, "gguf_writer_copy_kv: NULL argument");
    for (uint64_t i = 0; i < src->n_kv; i++) {
        char *key = gguf_str_dup(src->kv[i].key);
        if (!key) return pl_fail(PL_ERR_NOMEM, "%s: no memory to copy key #%" PRIu64, src->path, i);
        pl_status st = PL_OK;
        if (strlen(key) != src->kv[i].key.len) {
            st = pl_fail(PL_ERR_UNSUPPORTED, "%s: key #%" PRIu64 " contains a NUL byte and cannot be copied", src->path, i);
        } else if (!skip || !skip(key)) {
            gguf_span raw = gguf_kv_raw(src, i);
            uint8_t *val = raw.len <= SIZE_MAX ? malloc(raw.len ? (size_t)raw.len : 1) : NULL;
            if (!val) st = pl_fail(PL_ERR_NOMEM, "%s: no memory to copy key '%s'", src->path, key);
            else {
                if (raw.len) memcpy(val, raw.ptr, (size_t)raw.len);
                st = gguf_put(w, key, src->kv[i].type, val, raw.len);
            }
        }
        free(key);
        if (st) return st;
    }
    return PL_OK;
}

/* ------------------------------------------------------------ tensors */

pl_status gguf_writer_add_tensor(gguf_writer *w, const char *name, uint32_t type, uint32_t n_dims, const int64_t *ne,
                                 const void *data) {
    if (!w || !name || !ne) return pl_fail(PL_ERR_INVALID_ARG, "gguf_writer_add_tensor: NULL argument");
    const char *who = gguf_wname(w);
    if (w->header_done) return pl_fail(PL_ERR_INVALID_ARG, "%s: tensor '%s' added after the header was written", who, name);
    if (strlen(name) > GGUF_MAX_TENSOR_NAME)
        return pl_fail(PL_ERR_INVALID_ARG, "%s: tensor name '%s' is longer than %d bytes", who, name, GGUF_MAX_TENSOR_NAME);
    for (uint64_t i = 0; i < w->n_t; i++)
        if (!strcmp(w->t[i].name, name)) return pl_fail(PL_ERR_INVALID_ARG, "%s: duplicate tensor name '%s'", who, name);
    if (n_dims < 1 || n_dims > GGUF_MAX_DIMS)
        return pl_fail(PL_ERR_INVALID_ARG, "%s: tensor '%s': n_dims = %" PRIu32 " (must be 1..%d)", who, name, n_dims, GGUF_MAX_DIMS);
    const quant_traits *tr = quant_get(type);
    if (!tr) return pl_fail(PL_ERR_INVALID_ARG, "%s: tensor '%s': unknown type id %" PRIu32, who, name, type);
    gguf_wtensor t = {.type = type, .n_dims = n_dims, .data = data};
    uint64_t n_elem = 1;
    for (uint32_t d = 0; d < GGUF_MAX_DIMS; d++) {
        t.ne[d] = d < n_dims ? ne[d] : 1;
        if (t.ne[d] <= 0 || !pl_mul_ok(n_elem, (uint64_t)t.ne[d], &n_elem) || n_elem > INT64_MAX)
            return pl_fail(PL_ERR_INVALID_ARG, "%s: tensor '%s': bad dimension %" PRIu32 " = %" PRId64, who, name, d, t.ne[d]);
    }
    if (t.ne[0] % tr->blck)
        return pl_fail(PL_ERR_INVALID_ARG, "%s: tensor '%s': row of %" PRId64 " is not a multiple of the %s block size %d", who,
                       name, t.ne[0], tr->name, tr->blck);
    t.nbytes = (uint64_t)(t.ne[0] / tr->blck) * (uint64_t)tr->type_size;
    for (int d = 1; d < GGUF_MAX_DIMS; d++)
        if (!pl_mul_ok(t.nbytes, (uint64_t)t.ne[d], &t.nbytes))
            return pl_fail(PL_ERR_INVALID_ARG, "%s: tensor '%s': byte size overflows", who, name);
    if (w->n_t == w->cap_t) {
        uint64_t cap = w->cap_t ? 2 * w->cap_t : 64;
        gguf_wtensor *nt = realloc(w->t, cap * sizeof *nt);
        if (!nt) return pl_fail(PL_ERR_NOMEM, "%s: no memory for tensor '%s'", who, name);
        w->t = nt;
        w->cap_t = cap;
    }
    if (!(t.name = gguf_wdup(name))) return pl_fail(PL_ERR_NOMEM, "%s: no memory for tensor '%s'", who, name);
    w->t[w->n_t++] = t;
    return PL_OK;
}

/* ------------------------------------------------------------ output */

static pl_status gguf_out(gguf_writer *w, FILE *fp, const void *p, uint64_t n) {
    if (n && fwrite(p, 1, (size_t)n, fp) != n)
        return pl_fail(PL_ERR_IO, "%s: write failed: %s", gguf_wname(w), strerror(errno));
    return PL_OK;
}

static pl_status gguf_pad(gguf_writer *w, FILE *fp, uint64_t written) {
    static const uint8_t zeros[256];
    uint64_t n = (w->alignment - written % w->alignment) % w->alignment;
    while (n) {
        uint64_t k = n < sizeof zeros ? n : sizeof zeros;
        pl_status st = gguf_out(w, fp, zeros, k);
        if (st) return st;
        n -= k;
    }
    return PL_OK;
}

static pl_status gguf_out_u32(gguf_writer *w, FILE *fp, uint32_t v) { return gguf_out(w, fp, &v, 4); }
static pl_status gguf_out_u64(gguf_writer *w, FILE *fp, uint64_t v) { return gguf_out(w, fp, &v, 8); }
static pl_status gguf_out_str(gguf_writer *w, FILE *fp, const char *s) {
    uint64_t n = strlen(s);
    pl_status st = gguf_out_u64(w, fp, n);
    return st ? st : gguf_out(w, fp, s, n);
}

pl_status gguf_writer_write_header(gguf_writer *w, FILE *fp) {
    pl_status st;
    if (!w || !fp) return pl_fail(PL_ERR_INVALID_ARG, "gguf_writer_write_header: NULL argument");
    if (w->header_done) return pl_fail(PL_ERR_INVALID_ARG, "%s: header already written", gguf_wname(w));
    /* tensor offsets within the data section, each padded to the alignment */
    uint64_t off = 0;
    for (uint64_t i = 0; i < w->n_t; i++) {
        w->t[i].offset = off;
        uint64_t padded = (w->t[i].nbytes + w->alignment - 1) / w->alignment * w->alignment;
        if (!pl_add_ok(off, padded, &off)) return pl_fail(PL_ERR_INVALID_ARG, "%s: tensor data exceeds 2^64 bytes", gguf_wname(w));
    }
    uint64_t written = 24;
    if ((st = gguf_out_u32(w, fp, GGUF_MAGIC)) || (st = gguf_out_u32(w, fp, GGUF_WRITE_VERSION)) ||
        (st = gguf_out_u64(w, fp, w->n_t)) || (st = gguf_out_u64(w, fp, w->n_kv)))
        return st;
    for (uint64_t i = 0; i < w->n_kv; i++) {
        const gguf_wkv *kv = &w->kv[i];
        if ((st = gguf_out_str(w, fp, kv->key)) || (st = gguf_out_u32(w, fp, kv->type)) ||
            (st = gguf_out(w, fp, kv->val, kv->val_len)))
            return st;
        written += 8 + strlen(kv->key) + 4 + kv->val_len;
    }
    for (uint64_t i = 0; i < w->n_t; i++) {
        const gguf_wtensor *t = &w->t[i];
        if ((st = gguf_out_str(w, fp, t->name)) || (st = gguf_out_u32(w, fp, t->n_dims))) return st;
        for (uint32_t d = 0; d < t->n_dims; d++)
            if ((st = gguf_out_u64(w, fp, (uint64_t)t->ne[d]))) return st;
        if ((st = gguf_out_u32(w, fp, t->type)) || (st = gguf_out_u64(w, fp, t->offset))) return st;
        written += 8 + strlen(t->name) + 4 + 8 * (uint64_t)t->n_dims + 4 + 8;
    }
    /* a file without tensors has an empty data section, so nothing to align:
     * padding it would cost up to general.alignment (2^31) bytes of zeros */
    if (w->n_t && (st = gguf_pad(w, fp, written))) return st;
    w->header_done = true;
    w->next = 0;
    return PL_OK;
}

pl_status gguf_writer_write_tensor_data(gguf_writer *w, FILE *fp, uint64_t index, const void *data) {
    if (!w || !fp) return pl_fail(PL_ERR_INVALID_ARG, "gguf_writer_write_tensor_data: NULL argument");
    const char *who = gguf_wname(w);
    if (!w->header_done) return pl_fail(PL_ERR_INVALID_ARG, "%s: tensor data written before the header", who);
    if (index >= w->n_t) return pl_fail(PL_ERR_INVALID_ARG, "%s: tensor index %" PRIu64 " out of range (%" PRIu64 " tensors)", who, index, w->n_t);
    const gguf_wtensor *t = &w->t[index];
    if (index != w->next)
        return pl_fail(PL_ERR_INVALID_ARG, "%s: tensor '%s' (#%" PRIu64 ") written out of order; expected #%" PRIu64, who, t->name,
                       index, w->next);
    if (!data) data = t->data;
    if (!data) return pl_fail(PL_ERR_INVALID_ARG, "%s: tensor '%s' has no data", who, t->name);
    pl_status st = gguf_out(w, fp, data, t->nbytes);
    if (!st) st = gguf_pad(w, fp, t->nbytes);
    if (st) return pl_fail_prefix(st, "tensor '%s'", t->name);
    w->next++;
    return PL_OK;
}

pl_status gguf_writer_write_file(gguf_writer *w, const char *path) {
    pl_status st;
    if (!w || !path) return pl_fail(PL_ERR_INVALID_ARG, "gguf_writer_write_file: NULL argument");
    if ((st = gguf_writer_set_path(w, path))) return st;
    for (uint64_t i = 0; i < w->n_t; i++)
        if (!w->t[i].data) return pl_fail(PL_ERR_INVALID_ARG, "%s: tensor '%s' has no data", path, w->t[i].name);
    w->header_done = false; /* a whole-file write may follow an earlier one */
    FILE *fp = fopen(path, "wb");
    if (!fp) return pl_fail(PL_ERR_IO, "%s: cannot create: %s", path, strerror(errno));
    if ((st = gguf_writer_write_header(w, fp))) goto fail;
    for (uint64_t i = 0; i < w->n_t; i++)
        if ((st = gguf_writer_write_tensor_data(w, fp, i, NULL))) goto fail;
    if (fflush(fp) != 0 || ferror(fp)) {
        st = pl_fail(PL_ERR_IO, "%s: write failed: %s", path, strerror(errno));
        goto fail;
    }
    if (fclose(fp) != 0) {
        fp = NULL;
        st = pl_fail(PL_ERR_IO, "%s: close failed: %s", path, strerror(errno));
        goto fail;
    }
    w->header_done = false;
    return PL_OK;
fail:
    w->header_done = false;
    if (fp) fclose(fp);
    /* leave no partial file behind; but never unlink a device or fifo that
     * the caller named (writing to /dev/full must not remove it) */
    struct stat sb;
    if (lstat(path, &sb) == 0 && S_ISREG(sb.st_mode)) remove(path);
    return st;
}
