/*
 * GGUF parser: turns a file image (v2 or v3, little-endian) into a gguf_file
 * in one forward pass, without copying anything but the small descriptors.
 *
 * Invariants once gguf_parse returns PL_OK: every gguf_str, kv value and
 * tensor byte range lies inside the image; keys and tensor names are unique;
 * tensors have 0..4 positive dimensions whose product fits int64, a type the
 * quant module knows, an offset that is a multiple of the alignment and data
 * ranges that neither overlap nor run past the end of the image. Each bound is
 * checked against the bytes remaining before anything is allocated, so a
 * hostile count can never make us allocate more than the file could describe.
 */
#include "gguf_impl.h"

#include <float.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

/* Smallest encodings, used to bound counts by the bytes that remain:
 * a key/value is a key length (8) + type (4) + at least a 1-byte value; a
 * tensor info is a name length (8) + n_dims (4) + type (4) + offset (8). */
#define GGUF_MIN_KV_BYTES 13
#define GGUF_MIN_TENSOR_BYTES 24
#define GGUF_MAX_KEY_LEN 65535 /* the GGUF spec's limit on key length */

typedef struct gguf_cursor {
    const uint8_t *base;
    uint64_t size;
    uint64_t pos;
    const char *path;
} gguf_cursor;

/* ------------------------------------------------------------ small helpers */

uint64_t gguf_scalar_size(uint32_t type) {
    static const uint8_t sizes[GGUF_TYPE_COUNT] = {
        [GGUF_TYPE_UINT8] = 1,  [GGUF_TYPE_INT8] = 1,    [GGUF_TYPE_UINT16] = 2,
        [GGUF_TYPE_INT16] = 2,  [GGUF_TYPE_UINT32] = 4,  [GGUF_TYPE_INT32] = 4,
        [GGUF_TYPE_FLOAT32] = 4, [GGUF_TYPE_BOOL] = 1,   [GGUF_TYPE_UINT64] = 8,
        [GGUF_TYPE_INT64] = 8,  [GGUF_TYPE_FLOAT64] = 8,
    };
    return type < GGUF_TYPE_COUNT ? sizes[type] : 0;
}

int gguf_int_value(uint32_t type, const uint8_t *p, int *neg, uint64_t *mag) {
    int64_t s = 0;
    uint64_t u = 0;
    int is_signed = 0;
    switch (type) {
    case GGUF_TYPE_UINT8: { uint8_t v; memcpy(&v, p, 1); u = v; break; }
    case GGUF_TYPE_UINT16: { uint16_t v; memcpy(&v, p, 2); u = v; break; }
    case GGUF_TYPE_UINT32: { uint32_t v; memcpy(&v, p, 4); u = v; break; }
    case GGUF_TYPE_UINT64: memcpy(&u, p, 8); break;
    case GGUF_TYPE_INT8: { int8_t v; memcpy(&v, p, 1); s = v; is_signed = 1; break; }
    case GGUF_TYPE_INT16: { int16_t v; memcpy(&v, p, 2); s = v; is_signed = 1; break; }
    case GGUF_TYPE_INT32: { int32_t v; memcpy(&v, p, 4); s = v; is_signed = 1; break; }
    case GGUF_TYPE_INT64: memcpy(&s, p, 8); is_signed = 1; break;
    default: return 0;
    }
    *neg = is_signed && s < 0;
    if (is_signed) *mag = s < 0 ? (uint64_t)0 - (uint64_t)s : (uint64_t)s;
    else *mag = u;
    return 1;
}

/* Printable, bounded rendering of a (possibly hostile) string for messages. */
static const char *gguf_show(gguf_str s, char *buf, size_t cap) {
    size_t o = 0;
    for (uint64_t i = 0; i < s.len && o + 8 < cap; i++) {
        unsigned char c = (unsigned char)s.ptr[i];
        if (c >= 0x20 && c < 0x7f && c != '\'') buf[o++] = (char)c;
        else o += (size_t)snprintf(buf + o, cap - o, "\\x%02x", c);
    }
    if (o + 8 >= cap && s.len) {
        memcpy(buf + o, "...", 3);
        o += 3;
    }
    buf[o] = 0;
    return buf;
}
#define SHOW(s) gguf_show((s), (char[96]){0}, 96)

static uint64_t gguf_hash(const char *p, uint64_t n) {
    uint64_t h = 0xcbf29ce484222325ull; /* FNV-1a */
    for (uint64_t i = 0; i < n; i++) h = (h ^ (unsigned char)p[i]) * 0x100000001b3ull;
    return h ^ (h >> 29);
}

/* Lookup table sized to keep the load factor at or below one half. */
static int64_t *gguf_slots_new(uint64_t n, uint64_t *mask) {
    uint64_t cap = 8;
    while (cap < 2 * n) cap *= 2;
    int64_t *slots = malloc(cap * sizeof *slots);
    if (slots) memset(slots, 0xff, cap * sizeof *slots); /* all -1 */
    *mask = cap - 1;
    return slots;
}

/* Finds name among the strings get(i); inserts idx when absent and idx >= 0.
 * Returns the index of an existing equal string, or -1. */
static int64_t gguf_slots_find(int64_t *slots, uint64_t mask, const gguf_str *strs, size_t stride,
                               const char *p, uint64_t n, int64_t idx) {
    if (!slots) return -1;
    for (uint64_t h = gguf_hash(p, n) & mask;; h = (h + 1) & mask) {
        int64_t j = slots[h];
        if (j < 0) {
            if (idx >= 0) slots[h] = idx;
            return -1;
        }
        const gguf_str *s = (const gguf_str *)((const char *)strs + (size_t)j * stride);
        if (s->len == n && memcmp(s->ptr, p, n) == 0) return j;
    }
}

/* ------------------------------------------------------------ cursor reads */

static int gguf_take(gguf_cursor *c, uint64_t n, const uint8_t **p) {
    if (n > c->size - c->pos) return 0;
    *p = c->base + c->pos;
    c->pos += n;
    return 1;
}

static int gguf_u32(gguf_cursor *c, uint32_t *v) {
    const uint8_t *p;
    if (!gguf_take(c, 4, &p)) return 0;
    memcpy(v, p, 4);
    return 1;
}

static int gguf_u64(gguf_cursor *c, uint64_t *v) {
    const uint8_t *p;
    if (!gguf_take(c, 8, &p)) return 0;
    memcpy(v, p, 8);
    return 1;
}

/* "truncated: <what> at offset N runs past the end"; what is printf-style. */
static pl_status gguf_truncated(const gguf_cursor *c, const char *fmt, ...) PL_PRINTF(2, 3);
static pl_status gguf_truncated(const gguf_cursor *c, const char *fmt, ...) {
    char what[160];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    return pl_fail(PL_ERR_FORMAT, "%s: truncated: %s at offset %" PRIu64 " runs past the end of the file (%" PRIu64 " bytes)",
                   c->path, what, c->pos, c->size);
}

/* A GGUF string: u64 length then bytes. `what` names it in messages. */
static pl_status gguf_read_str(gguf_cursor *c, gguf_str *s, const char *what) {
    uint64_t at = c->pos, len;
    const uint8_t *p;
    if (!gguf_u64(c, &len)) return gguf_truncated(c, "%s", what);
    if (!gguf_take(c, len, &p))
        return pl_fail(PL_ERR_FORMAT, "%s: %s at offset %" PRIu64 ": string length %" PRIu64 " runs past the end of the file (%" PRIu64 " bytes left)",
                       c->path, what, at, len, c->size - c->pos);
    s->ptr = (const char *)p;
    s->len = len;
    return PL_OK;
}

/* ------------------------------------------------------------ metadata */

/* Skips one array body (element type, count, elements) nested at `depth`. */
static pl_status gguf_skip_array(gguf_cursor *c, const char *key, int depth) {
    uint32_t et;
    uint64_t n;
    if (depth > GGUF_MAX_NESTING)
        return pl_fail(PL_ERR_FORMAT, "%s: key '%s': arrays nested deeper than %d levels", c->path, key, GGUF_MAX_NESTING);
    if (!gguf_u32(c, &et) || !gguf_u64(c, &n)) return gguf_truncated(c, "key '%s': nested array header", key);
    uint64_t left = c->size - c->pos, esz = gguf_scalar_size(et);
    if (et >= GGUF_TYPE_COUNT)
        return pl_fail(PL_ERR_FORMAT, "%s: key '%s': nested array has unknown element type %" PRIu32, c->path, key, et);
    if (esz) {
        if (n > left / esz)
            return pl_fail(PL_ERR_FORMAT, "%s: key '%s': nested array of %" PRIu64 " %s runs past the end of the file",
                           c->path, key, n, gguf_type_name((gguf_type)et));
        c->pos += n * esz;
        return PL_OK;
    }
    if (n > left / (et == GGUF_TYPE_STRING ? 8 : 12))
        return pl_fail(PL_ERR_FORMAT, "%s: key '%s': nested array count %" PRIu64 " exceeds what the %" PRIu64 " remaining bytes can hold (truncated or corrupt file)",
                       c->path, key, n, left);
    char what[96];
    snprintf(what, sizeof what, "string in a nested array of key '%.40s'", key);
    for (uint64_t i = 0; i < n; i++) {
        pl_status st;
        gguf_str s;
        if (et == GGUF_TYPE_STRING) st = gguf_read_str(c, &s, what);
        else st = gguf_skip_array(c, key, depth + 1);
        if (st) return st;
    }
    return PL_OK;
}

static pl_status gguf_read_kv(gguf_cursor *c, gguf_file_impl *fi, uint64_t i) {
    gguf_file *f = &fi->pub;
    gguf_kv *kv = &f->kv[i];
    uint32_t type;
    char what[64];
    snprintf(what, sizeof what, "key #%" PRIu64, i);
    pl_status st = gguf_read_str(c, &kv->key, what);
    if (st) return st;
    const char *key = SHOW(kv->key);
    if (kv->key.len > GGUF_MAX_KEY_LEN)
        return pl_fail(PL_ERR_FORMAT, "%s: key #%" PRIu64 " is %" PRIu64 " bytes long (the limit is %d)", c->path, i,
                       kv->key.len, GGUF_MAX_KEY_LEN);
    int64_t dup = gguf_slots_find(fi->kv_slots, fi->kv_mask, &f->kv[0].key, sizeof(gguf_kv), kv->key.ptr,
                                  kv->key.len, (int64_t)i);
    if (dup >= 0)
        return pl_fail(PL_ERR_FORMAT, "%s: duplicate key '%s' (entries #%" PRId64 " and #%" PRIu64 ")", c->path, key, dup, i);

    if (!gguf_u32(c, &type)) return gguf_truncated(c, "key '%s': value type", key);
    fi->kv_raw[i].ptr = c->base + c->pos;
    if (type >= GGUF_TYPE_COUNT)
        return pl_fail(PL_ERR_FORMAT, "%s: key '%s' has unknown value type %" PRIu32, c->path, key, type);
    kv->type = (gguf_type)type;
    uint64_t n = 1;
    if (type == GGUF_TYPE_ARRAY) {
        if (!gguf_u32(c, &type) || !gguf_u64(c, &n)) return gguf_truncated(c, "key '%s': array header", key);
        if (type >= GGUF_TYPE_COUNT)
            return pl_fail(PL_ERR_FORMAT, "%s: key '%s' is an array of unknown element type %" PRIu32, c->path, key, type);
        kv->arr_type = (gguf_type)type;
        kv->arr_n = n;
    }
    kv->data = c->base + c->pos;

    uint64_t left = c->size - c->pos, esz = gguf_scalar_size(type);
    if (esz) {
        if (n > left / esz)
            return pl_fail(PL_ERR_FORMAT, "%s: key '%s': %" PRIu64 " value(s) of type %s run past the end of the file (%" PRIu64 " bytes left)",
                           c->path, key, n, gguf_type_name((gguf_type)type), left);
        c->pos += n * esz;
    } else if (type == GGUF_TYPE_STRING) {
        if (n > left / 8)
            return pl_fail(PL_ERR_FORMAT, "%s: key '%s': string array count %" PRIu64 " exceeds what the %" PRIu64 " remaining bytes can hold (truncated or corrupt file)",
                           c->path, key, n, left);
        kv->strs = malloc((n ? n : 1) * sizeof *kv->strs);
        if (!kv->strs) return pl_fail(PL_ERR_NOMEM, "%s: key '%s': no memory for %" PRIu64 " strings", c->path, key, n);
        for (uint64_t j = 0; j < n; j++) { /* the hot loop for vocabularies */
            uint64_t len;
            const uint8_t *p;
            if (!gguf_u64(c, &len)) return gguf_truncated(c, "key '%s': length of string %" PRIu64, key, j);
            if (!gguf_take(c, len, &p))
                return pl_fail(PL_ERR_FORMAT, "%s: key '%s' element %" PRIu64 ": string length %" PRIu64 " runs past the end of the file (%" PRIu64 " bytes left)",
                               c->path, key, j, len, c->size - c->pos);
            kv->strs[j].ptr = (const char *)p;
            kv->strs[j].len = len;
        }
    } else { /* an array of arrays: checked and skipped, not represented */
        if (n > left / 12)
            return pl_fail(PL_ERR_FORMAT, "%s: key '%s': array count %" PRIu64 " exceeds what the %" PRIu64 " remaining bytes can hold (truncated or corrupt file)",
                           c->path, key, n, left);
        for (uint64_t j = 0; j < n; j++)
            if ((st = gguf_skip_array(c, key, 2))) return st;
    }
    fi->kv_raw[i].len = (uint64_t)(c->base + c->pos - fi->kv_raw[i].ptr);
    return PL_OK;
}

/* general.alignment: any integer type is accepted when the value is a nonzero
 * power of two that fits u32 (the writer always uses u32). */
static pl_status gguf_read_alignment(gguf_file *f) {
    const gguf_kv *kv = gguf_get_kv(f, "general.alignment");
    int neg;
    uint64_t v;
    f->alignment = GGUF_DEFAULT_ALIGNMENT;
    if (!kv) return PL_OK;
    if (kv->type == GGUF_TYPE_ARRAY || !gguf_int_value(kv->type, kv->data, &neg, &v))
        return pl_fail(PL_ERR_FORMAT, "%s: general.alignment has type %s, expected an integer", f->path,
                       gguf_type_name(kv->type));
    if (neg || v == 0 || v > UINT32_MAX || (v & (v - 1)))
        return pl_fail(PL_ERR_FORMAT, "%s: general.alignment = %s%" PRIu64 " is not a nonzero power of two", f->path,
                       neg ? "-" : "", v);
    f->alignment = v;
    return PL_OK;
}

/* ------------------------------------------------------------ tensor infos */

/* ggml type ids that exist but have no traits here: named so that such a
 * file is reported as unsupported rather than corrupt. */
static const char *const k_ggml_other_types[] = {
    [16] = "iq2_xxs", [17] = "iq2_xs", [18] = "iq3_xxs", [19] = "iq1_s", [20] = "iq4_nl",
    [21] = "iq3_s",   [22] = "iq2_s",  [23] = "iq4_xs",  [24] = "i8",    [25] = "i16",
    [26] = "i32",     [27] = "i64",    [28] = "f64",     [29] = "iq1_m", [34] = "tq1_0",
    [35] = "tq2_0",
};

static pl_status gguf_read_tensor(gguf_cursor *c, gguf_file_impl *fi, uint64_t i) {
    gguf_file *f = &fi->pub;
    gguf_tensor *t = &f->tensors[i];
    char what[64];
    snprintf(what, sizeof what, "name of tensor #%" PRIu64, i);
    pl_status st = gguf_read_str(c, &t->name, what);
    if (st) return st;
    const char *name = SHOW(t->name);
    int64_t dup = gguf_slots_find(fi->tensor_slots, fi->tensor_mask, &f->tensors[0].name, sizeof(gguf_tensor),
                                  t->name.ptr, t->name.len, (int64_t)i);
    if (dup >= 0)
        return pl_fail(PL_ERR_FORMAT, "%s: duplicate tensor name '%s' (tensors #%" PRId64 " and #%" PRIu64 ")", c->path,
                       name, dup, i);

    if (!gguf_u32(c, &t->n_dims)) return gguf_truncated(c, "tensor '%s': n_dims", name);
    if (t->n_dims > GGUF_MAX_DIMS)
        return pl_fail(PL_ERR_FORMAT, "%s: tensor '%s' has n_dims = %" PRIu32 " (at most %d)", c->path, name, t->n_dims,
                       GGUF_MAX_DIMS);
    uint64_t n_elem = 1;
    for (uint32_t d = 0; d < GGUF_MAX_DIMS; d++) {
        uint64_t v = 1;
        if (d < t->n_dims && !gguf_u64(c, &v)) return gguf_truncated(c, "tensor '%s': dimension %" PRIu32, name, d);
        t->ne[d] = (int64_t)v;
        if (t->ne[d] <= 0)
            return pl_fail(PL_ERR_FORMAT, "%s: tensor '%s' dimension %" PRIu32 " is %" PRId64 " (must be positive)", c->path,
                           name, d, t->ne[d]);
        if (!pl_mul_ok(n_elem, v, &n_elem) || n_elem > INT64_MAX)
            return pl_fail(PL_ERR_FORMAT, "%s: tensor '%s': element count overflows (dimension %" PRIu32 " = %" PRId64 ")",
                           c->path, name, d, t->ne[d]);
    }

    if (!gguf_u32(c, &t->type)) return gguf_truncated(c, "tensor '%s': type", name);
    const quant_traits *tr = quant_get(t->type);
    if (!tr) {
        size_t n_other = sizeof k_ggml_other_types / sizeof k_ggml_other_types[0];
        if (t->type < n_other && k_ggml_other_types[t->type])
            return pl_fail(PL_ERR_UNSUPPORTED, "%s: tensor '%s' has type %s (id %" PRIu32 "), which pocketllm does not support",
                           c->path, name, k_ggml_other_types[t->type], t->type);
        return pl_fail(PL_ERR_FORMAT, "%s: tensor '%s' has unknown type id %" PRIu32, c->path, name, t->type);
    }
    /* row bytes from the traits, checked here rather than trusting
     * quant_row_size not to overflow on a hostile ne[0] */
    if (tr->blck <= 0 || t->ne[0] % tr->blck)
        return pl_fail(PL_ERR_FORMAT, "%s: tensor '%s': row of %" PRId64 " elements is not a multiple of the %s block size %d",
                       c->path, name, t->ne[0], tr->name, tr->blck);
    uint64_t nbytes;
    if (!pl_mul_ok((uint64_t)(t->ne[0] / tr->blck), (uint64_t)tr->type_size, &nbytes))
        return pl_fail(PL_ERR_FORMAT, "%s: tensor '%s': byte size overflows", c->path, name);
    for (int d = 1; d < GGUF_MAX_DIMS; d++)
        if (!pl_mul_ok(nbytes, (uint64_t)t->ne[d], &nbytes))
            return pl_fail(PL_ERR_FORMAT, "%s: tensor '%s': byte size overflows", c->path, name);
    t->nbytes = nbytes;

    if (!gguf_u64(c, &t->offset)) return gguf_truncated(c, "tensor '%s': offset", name);
    if (t->offset % f->alignment)
        return pl_fail(PL_ERR_FORMAT, "%s: tensor '%s' has offset %" PRIu64 ", not a multiple of the alignment %" PRIu64,
                       c->path, name, t->offset, f->alignment);
    return PL_OK;
}

static int gguf_cmp_offset(const void *a, const void *b) {
    const gguf_tensor *x = *(const gguf_tensor *const *)a, *y = *(const gguf_tensor *const *)b;
    return x->offset < y->offset ? -1 : x->offset > y->offset;
}

/* Every tensor's bytes inside the image, and no two tensors sharing a byte. */
static pl_status gguf_place_tensors(gguf_file *f) {
    pl_status st = PL_OK;
    const gguf_tensor **order = NULL;
    for (uint64_t i = 0; i < f->n_tensors; i++) {
        gguf_tensor *t = &f->tensors[i];
        uint64_t begin, end;
        if (!pl_add_ok(f->data_offset, t->offset, &begin) || !pl_add_ok(begin, t->nbytes, &end) || end > f->size)
            return pl_fail(PL_ERR_FORMAT, "%s: tensor '%s' (offset %" PRIu64 ", %" PRIu64 " bytes) runs past the end of the file (data section at %" PRIu64 ", file %" PRIu64 " bytes)",
                           f->path, SHOW(t->name), t->offset, t->nbytes, f->data_offset, f->size);
        t->data = f->base + begin;
    }
    if (f->n_tensors < 2) return PL_OK;
    order = malloc(f->n_tensors * sizeof *order);
    if (!order) return pl_fail(PL_ERR_NOMEM, "%s: no memory to sort %" PRIu64 " tensors", f->path, f->n_tensors);
    for (uint64_t i = 0; i < f->n_tensors; i++) order[i] = &f->tensors[i];
    qsort(order, f->n_tensors, sizeof *order, gguf_cmp_offset);
    for (uint64_t i = 1; i < f->n_tensors; i++) {
        const gguf_tensor *a = order[i - 1], *b = order[i];
        if (a->offset + a->nbytes > b->offset) {
            st = pl_fail(PL_ERR_FORMAT, "%s: tensors '%s' (offset %" PRIu64 ", %" PRIu64 " bytes) and '%s' (offset %" PRIu64 ") overlap",
                         f->path, SHOW(a->name), a->offset, a->nbytes, SHOW(b->name), b->offset);
            break;
        }
    }
    free(order);
    return st;
}

/* ------------------------------------------------------------ the parse */

static pl_status gguf_read_header(gguf_cursor *c, gguf_file *f) {
    uint32_t magic;
    if (!gguf_u32(c, &magic))
        return pl_fail(PL_ERR_FORMAT, "%s: too small to be a GGUF file (%" PRIu64 " bytes, no magic)", c->path, c->size);
    if (magic != GGUF_MAGIC) {
        char m[4];
        memcpy(m, &magic, 4);
        for (int k = 0; k < 4; k++)
            if (m[k] < 0x20 || m[k] > 0x7e) m[k] = '?';
        return pl_fail(PL_ERR_FORMAT, "%s: bad magic '%.4s' (0x%08" PRIx32 "), not a GGUF file", c->path, m, magic);
    }
    if (!gguf_u32(c, &f->version)) return gguf_truncated(c, "version");
    uint32_t v = f->version, swapped = (v >> 24) | ((v >> 8) & 0xff00) | ((v << 8) & 0xff0000) | (v << 24);
    if (v == 1)
        return pl_fail(PL_ERR_FORMAT, "%s: GGUF version 1 is not supported (re-convert the model with a current llama.cpp)",
                       c->path);
    if (v != 2 && v != 3) {
        if (swapped == 2 || swapped == 3)
            return pl_fail(PL_ERR_UNSUPPORTED, "%s: big-endian GGUF (version %" PRIu32 ") is not supported", c->path, swapped);
        return pl_fail(PL_ERR_FORMAT, "%s: unsupported GGUF version %" PRIu32 " (expected 2 or 3)", c->path, v);
    }
    if (!gguf_u64(c, &f->n_tensors)) return gguf_truncated(c, "n_tensors");
    if (!gguf_u64(c, &f->n_kv)) return gguf_truncated(c, "n_kv");
    uint64_t left = c->size - c->pos;
    if (f->n_kv > left / GGUF_MIN_KV_BYTES)
        return pl_fail(PL_ERR_FORMAT, "%s: n_kv = %" PRIu64 " is impossible: the remaining %" PRIu64 " bytes hold at most %" PRIu64 " key/value pairs",
                       c->path, f->n_kv, left, left / GGUF_MIN_KV_BYTES);
    if (f->n_tensors > (left - f->n_kv * GGUF_MIN_KV_BYTES) / GGUF_MIN_TENSOR_BYTES)
        return pl_fail(PL_ERR_FORMAT, "%s: n_tensors = %" PRIu64 " is impossible: the remaining %" PRIu64 " bytes cannot hold that many tensor infos after %" PRIu64 " key/value pairs",
                       c->path, f->n_tensors, left, f->n_kv);
    return PL_OK;
}

pl_status gguf_parse(const uint8_t *base, uint64_t size, char *path, gguf_file_impl **out) {
    pl_status st;
    *out = NULL;
    gguf_file_impl *fi = calloc(1, sizeof *fi);
    if (!fi) {
        st = pl_fail(PL_ERR_NOMEM, "%s: no memory for the GGUF descriptor", path);
        free(path);
        return st;
    }
    gguf_file *f = &fi->pub;
    f->base = base;
    f->size = size;
    f->path = path;
    f->alignment = GGUF_DEFAULT_ALIGNMENT;
    gguf_cursor c = {base, size, 0, path};

    if ((st = gguf_read_header(&c, f))) goto fail;
    /* counts are now bounded by the file size, so these allocations are too */
    f->kv = calloc(f->n_kv ? f->n_kv : 1, sizeof *f->kv);
    fi->kv_raw = calloc(f->n_kv ? f->n_kv : 1, sizeof *fi->kv_raw);
    f->tensors = calloc(f->n_tensors ? f->n_tensors : 1, sizeof *f->tensors);
    fi->kv_slots = gguf_slots_new(f->n_kv, &fi->kv_mask);
    fi->tensor_slots = gguf_slots_new(f->n_tensors, &fi->tensor_mask);
    if (!f->kv || !fi->kv_raw || !f->tensors || !fi->kv_slots || !fi->tensor_slots) {
        st = pl_fail(PL_ERR_NOMEM, "%s: no memory for %" PRIu64 " keys and %" PRIu64 " tensors", path, f->n_kv, f->n_tensors);
        goto fail;
    }
    uint64_t n_kv = f->n_kv;
    for (uint64_t i = 0; i < n_kv; i++) {
        f->n_kv = i + 1; /* keys read so far: what lookups and gguf_close see */
        if ((st = gguf_read_kv(&c, fi, i))) goto fail;
    }
    if ((st = gguf_read_alignment(f))) goto fail;
    for (uint64_t i = 0; i < f->n_tensors; i++)
        if ((st = gguf_read_tensor(&c, fi, i))) goto fail;

    /* the data section starts at the end of the header rounded up to the
     * alignment; a file without tensors may end before that padding */
    f->data_offset = (c.pos + f->alignment - 1) / f->alignment * f->alignment;
    if (f->data_offset > size) {
        if (f->n_tensors) {
            st = pl_fail(PL_ERR_FORMAT, "%s: truncated: the data section would start at %" PRIu64 ", past the end of the file (%" PRIu64 " bytes)",
                         path, f->data_offset, size);
            goto fail;
        }
        f->data_offset = size;
    }
    if ((st = gguf_place_tensors(f))) goto fail;
    *out = fi;
    return PL_OK;
fail:
    gguf_close(f);
    return st;
}

/* ------------------------------------------------------------ lookups */

gguf_span gguf_kv_raw(const gguf_file *f, uint64_t i) {
    return ((const gguf_file_impl *)f)->kv_raw[i];
}

int64_t gguf_find_key(const gguf_file *f, const char *key) {
    const gguf_file_impl *fi = (const gguf_file_impl *)f;
    if (!f || !key || !f->n_kv) return -1;
    return gguf_slots_find(fi->kv_slots, fi->kv_mask, &f->kv[0].key, sizeof(gguf_kv), key, strlen(key), -1);
}

const gguf_kv *gguf_get_kv(const gguf_file *f, const char *key) {
    int64_t i = gguf_find_key(f, key);
    return i < 0 ? NULL : &f->kv[i];
}

const gguf_tensor *gguf_find_tensor(const gguf_file *f, const char *name) {
    const gguf_file_impl *fi = (const gguf_file_impl *)f;
    if (!f || !name || !f->n_tensors) return NULL;
    int64_t i = gguf_slots_find(fi->tensor_slots, fi->tensor_mask, &f->tensors[0].name, sizeof(gguf_tensor), name,
                                strlen(name), -1);
    return i < 0 ? NULL : &f->tensors[i];
}

/* ------------------------------------------------------------ typed getters */

static pl_status gguf_absent(const gguf_file *f, const char *key) {
    return pl_fail(PL_ERR_FORMAT, "%s: key '%s' not found", f->path, key);
}

static pl_status gguf_wrong_type(const gguf_file *f, const char *key, const gguf_kv *kv, const char *want) {
    if (kv->type == GGUF_TYPE_ARRAY)
        return pl_fail(PL_ERR_FORMAT, "%s: key '%s' is an array of %s, expected %s", f->path, key,
                       gguf_type_name(kv->arr_type), want);
    return pl_fail(PL_ERR_FORMAT, "%s: key '%s' has type %s, expected %s", f->path, key, gguf_type_name(kv->type), want);
}

/* An integer key as sign + magnitude, with the error messages for absence and
 * for a non-integer type. */
static pl_status gguf_get_int(const gguf_file *f, const char *key, int *neg, uint64_t *mag) {
    const gguf_kv *kv = gguf_get_kv(f, key);
    if (!kv) return gguf_absent(f, key);
    if (kv->type == GGUF_TYPE_ARRAY || !gguf_int_value(kv->type, kv->data, neg, mag))
        return gguf_wrong_type(f, key, kv, "an integer");
    return PL_OK;
}

pl_status gguf_get_u32(const gguf_file *f, const char *key, uint32_t *out) {
    int neg;
    uint64_t v;
    pl_status st = gguf_get_int(f, key, &neg, &v);
    if (st) return st;
    if (neg || v > UINT32_MAX)
        return pl_fail(PL_ERR_FORMAT, "%s: key '%s' = %s%" PRIu64 " does not fit in uint32", f->path, key, neg ? "-" : "", v);
    *out = (uint32_t)v;
    return PL_OK;
}

pl_status gguf_get_i64(const gguf_file *f, const char *key, int64_t *out) {
    int neg;
    uint64_t v;
    pl_status st = gguf_get_int(f, key, &neg, &v);
    if (st) return st;
    if (!neg && v > (uint64_t)INT64_MAX)
        return pl_fail(PL_ERR_FORMAT, "%s: key '%s' = %" PRIu64 " does not fit in int64", f->path, key, v);
    *out = neg ? (int64_t)(0 - v) : (int64_t)v; /* -(2^63) maps back exactly */
    return PL_OK;
}

pl_status gguf_get_f32(const gguf_file *f, const char *key, float *out) {
    const gguf_kv *kv = gguf_get_kv(f, key);
    if (!kv) return gguf_absent(f, key);
    if (kv->type == GGUF_TYPE_FLOAT32) {
        memcpy(out, kv->data, 4);
        return PL_OK;
    }
    if (kv->type == GGUF_TYPE_FLOAT64) {
        double d;
        memcpy(&d, kv->data, 8);
        if (isfinite(d) && (d > FLT_MAX || d < -FLT_MAX)) /* NaN and infinities pass through */
                return pl_fail(PL_ERR_FORMAT, "%s: key '%s' = %g does not fit in float32", f->path, key, d);
        *out = (float)d;
        return PL_OK;
    }
    return gguf_wrong_type(f, key, kv, "float32 or float64");
}

pl_status gguf_get_bool(const gguf_file *f, const char *key, bool *out) {
    const gguf_kv *kv = gguf_get_kv(f, key);
    if (!kv) return gguf_absent(f, key);
    if (kv->type != GGUF_TYPE_BOOL) return gguf_wrong_type(f, key, kv, "bool");
    *out = kv->data[0] != 0;
    return PL_OK;
}

pl_status gguf_get_str(const gguf_file *f, const char *key, gguf_str *out) {
    const gguf_kv *kv = gguf_get_kv(f, key);
    if (!kv) return gguf_absent(f, key);
    if (kv->type != GGUF_TYPE_STRING) return gguf_wrong_type(f, key, kv, "string");
    *out = kv->strs[0];
    return PL_OK;
}

/* The _or getters cannot return a status: on a wrong type they return def
 * and leave the message for pl_last_error(). */
uint32_t gguf_get_u32_or(const gguf_file *f, const char *key, uint32_t def) {
    uint32_t v;
    return gguf_find_key(f, key) >= 0 && gguf_get_u32(f, key, &v) == PL_OK ? v : def;
}

float gguf_get_f32_or(const gguf_file *f, const char *key, float def) {
    float v;
    return gguf_find_key(f, key) >= 0 && gguf_get_f32(f, key, &v) == PL_OK ? v : def;
}

bool gguf_get_bool_or(const gguf_file *f, const char *key, bool def) {
    bool v;
    return gguf_find_key(f, key) >= 0 && gguf_get_bool(f, key, &v) == PL_OK ? v : def;
}

float gguf_arr_f32(const gguf_kv *kv, uint64_t i) {
    if (!kv || kv->type != GGUF_TYPE_ARRAY || i >= kv->arr_n) return 0.0f;
    if (kv->arr_type == GGUF_TYPE_FLOAT32) {
        float v;
        memcpy(&v, kv->data + 4 * i, 4);
        return v;
    }
    if (kv->arr_type == GGUF_TYPE_FLOAT64) {
        double v;
        memcpy(&v, kv->data + 8 * i, 8);
        return (float)v;
    }
    return 0.0f;
}

int64_t gguf_arr_int(const gguf_kv *kv, uint64_t i) {
    int neg;
    uint64_t v;
    if (!kv || kv->type != GGUF_TYPE_ARRAY || i >= kv->arr_n) return 0;
    uint64_t esz = gguf_scalar_size(kv->arr_type);
    if (!esz || !gguf_int_value(kv->arr_type, kv->data + esz * i, &neg, &v)) return 0;
    if (neg) return (int64_t)(0 - v);
    return v > (uint64_t)INT64_MAX ? INT64_MAX : (int64_t)v; /* u64 beyond int64 saturates */
}

/* ------------------------------------------------------------ strings */

bool gguf_str_eq(gguf_str s, const char *z) {
    size_t n = strlen(z);
    return s.len == n && (n == 0 || memcmp(s.ptr, z, n) == 0);
}

char *gguf_str_dup(gguf_str s) {
    if (s.len >= SIZE_MAX) return NULL;
    char *p = malloc((size_t)s.len + 1);
    if (!p) return NULL;
    if (s.len) memcpy(p, s.ptr, (size_t)s.len);
    p[s.len] = 0;
    return p;
}

const char *gguf_type_name(gguf_type t) {
    static const char *const names[GGUF_TYPE_COUNT] = {
        [GGUF_TYPE_UINT8] = "uint8",     [GGUF_TYPE_INT8] = "int8",     [GGUF_TYPE_UINT16] = "uint16",
        [GGUF_TYPE_INT16] = "int16",     [GGUF_TYPE_UINT32] = "uint32", [GGUF_TYPE_INT32] = "int32",
        [GGUF_TYPE_FLOAT32] = "float32", [GGUF_TYPE_BOOL] = "bool",     [GGUF_TYPE_STRING] = "string",
        [GGUF_TYPE_ARRAY] = "array",     [GGUF_TYPE_UINT64] = "uint64", [GGUF_TYPE_INT64] = "int64",
        [GGUF_TYPE_FLOAT64] = "float64",
    };
    return (unsigned)t < GGUF_TYPE_COUNT ? names[t] : "unknown";
}

pl_status gguf_get_arch_int(const gguf_file *f, const char *arch, const char *suffix, bool required, uint32_t def,
                            int *out) {
    char key[160];
    snprintf(key, sizeof key, "%s.%s", arch, suffix);
    if (gguf_find_key(f, key) < 0) {
        if (required) return pl_fail(PL_ERR_FORMAT, "%s: missing metadata key '%s'", f->path, key);
        *out = (int)def;
        return PL_OK;
    }
    uint32_t v;
    pl_status st = gguf_get_u32(f, key, &v);
    if (st) return st;
    if (v > (1u << 30)) return pl_fail(PL_ERR_FORMAT, "%s: '%s' = %u is not a plausible value", f->path, key, v);
    *out = (int)v;
    return PL_OK;
}
