/*
 * Public API the chat layer needs from the model module and which the model
 * module does not (yet) offer: metadata strings, the context's memory (its
 * accounted blocks, as planned) and the KV state file block. With kv_shift.c
 * one of the two chat files that read model internals (pl_model, pl_ctx); it
 * relies on the cache layout model.h declares:
 * k_cache and v_cache are (L, P) rows of kv_row_bytes, positions [0, pos)
 * valid, of the context's KV type (f16 or q8_0).
 *
 * State block: "PLKV", u32 version, u64 model fingerprint, u32 n_layer,
 * u32 kv_row (G*D values), u32 kv_type (pl_kv_type), u32 pos, u32 row_bytes,
 * u32 reserved (0), then per layer K rows [0, pos) and V rows [0, pos) as
 * stored (the host's byte order: files are not portable between byte orders,
 * which the fingerprint does not see). Version 1 (f16 only) had u32 elem = 2
 * where kv_type is and no row_bytes/reserved; it is still read.
 */
#include "../model/model.h"

#include <stdlib.h>
#include <string.h>

#define KV_MAGIC "PLKV"
#define KV_VERSION 2u

int pl_model_meta_str(const pl_model *m, const char *key, char *buf, size_t cap) {
    if (!m || !key || !m->gguf) return -1;
    const gguf_kv *kv = gguf_get_kv(m->gguf, key);
    if (!kv || kv->type != GGUF_TYPE_STRING || !kv->strs) return -1;
    const gguf_str s = kv->strs[0];
    if (s.len > (uint64_t)INT32_MAX) return -1;
    if (buf && cap > 0) {
        size_t n = s.len < cap - 1 ? (size_t)s.len : cap - 1;
        memcpy(buf, s.ptr, n);
        buf[n] = 0;
    }
    return (int)s.len;
}

const pl_model *pl_ctx_model(const pl_ctx *c) { return c ? c->model : NULL; }

uint64_t pl_model_file_bytes(const pl_model *m) { return m && m->gguf ? m->gguf->size : 0; }

/* The context's two accounted blocks as held (whole pages when mapped): the
 * plan's kv_bytes + scratch_bytes, the figure `serve` and `plan` report. */
uint64_t pl_ctx_memory_bytes(const pl_ctx *c) {
    if (!c) return 0;
    return (uint64_t)mem_held(c->kv_block_bytes) + (uint64_t)mem_held(c->scratch_block_bytes);
}

/* FNV-1a over the bytes that identify a model: hyper-parameters, file size
 * and the first bytes of the file (header and metadata, which hold the
 * tokenizer) and of the first tensor's data. */
static uint64_t ext_fnv(uint64_t h, const void *p, size_t n) {
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++) h = (h ^ b[i]) * 0x100000001b3ull;
    return h;
}

static uint64_t ext_fingerprint(const pl_model *m) {
    uint64_t h = 0xcbf29ce484222325ull;
    h = ext_fnv(h, m->arch_name, strlen(m->arch_name));
    h = ext_fnv(h, &m->hp, sizeof m->hp);
    const gguf_file *g = m->gguf;
    h = ext_fnv(h, &g->size, sizeof g->size);
    h = ext_fnv(h, g->base, g->size < 65536 ? (size_t)g->size : 65536);
    if (g->n_tensors > 0 && g->tensors[0].data) {
        uint64_t n = g->tensors[0].nbytes < 65536 ? g->tensors[0].nbytes : 65536;
        h = ext_fnv(h, g->tensors[0].data, (size_t)n);
    }
    return h;
}

/* The version 1 header, and the fields version 2 appends. */
typedef struct ext_header {
    char magic[4];
    uint32_t version;
    uint64_t fingerprint;
    uint32_t n_layer, kv_row, kv_type, pos; /* v1: kv_type was elem, bytes per value (2: f16) */
} ext_header;

typedef struct ext_header2 {
    uint32_t row_bytes, reserved;
} ext_header2;

static const char *ext_kv_name(uint32_t t) { return t == PL_KV_F16 ? "f16" : t == PL_KV_Q8_0 ? "q8_0" : "unknown"; }

pl_status pl_ctx_state_write(const pl_ctx *c, FILE *fp) {
    if (!c || !fp) return pl_fail(PL_ERR_INVALID_ARG, "pl_ctx_state_write: ctx and fp are required");
    const model_hparams *hp = &c->model->hp;
    ext_header h = {.version = KV_VERSION,
                    .fingerprint = ext_fingerprint(c->model),
                    .n_layer = (uint32_t)hp->n_layer,
                    .kv_row = (uint32_t)(hp->n_head_kv * hp->head_dim),
                    .kv_type = (uint32_t)c->kv_type,
                    .pos = (uint32_t)c->pos};
    const ext_header2 h2 = {.row_bytes = (uint32_t)c->kv_row_bytes};
    memcpy(h.magic, KV_MAGIC, 4);
    if (fwrite(&h, sizeof h, 1, fp) != 1 || fwrite(&h2, sizeof h2, 1, fp) != 1) goto io;
    const size_t row = c->kv_row_bytes, rows = (size_t)c->pos, layer = (size_t)c->n_ctx * row;
    for (int il = 0; il < hp->n_layer; il++) {
        const char *k = (const char *)c->k_cache + il * layer, *v = (const char *)c->v_cache + il * layer;
        if (rows && (fwrite(k, row, rows, fp) != rows || fwrite(v, row, rows, fp) != rows)) goto io;
    }
    return PL_OK;
io:
    return pl_fail(PL_ERR_IO, "writing the KV state: write failed (disk full?)");
}

pl_status pl_ctx_state_read(pl_ctx *c, FILE *fp) {
    if (!c || !fp) return pl_fail(PL_ERR_INVALID_ARG, "pl_ctx_state_read: ctx and fp are required");
    const model_hparams *hp = &c->model->hp;
    ext_header h;
    ext_header2 h2 = {0};
    if (fread(&h, sizeof h, 1, fp) != 1) return pl_fail(PL_ERR_FORMAT, "KV state: truncated header");
    if (memcmp(h.magic, KV_MAGIC, 4) != 0) return pl_fail(PL_ERR_FORMAT, "KV state: bad magic (not a KV state block)");
    if (h.version == 1) { /* f16 rows, elem = 2 */
        if (h.kv_type != sizeof(pl_fp16))
            return pl_fail(PL_ERR_FORMAT, "KV state: version 1 with %u-byte values (f16 is 2)", h.kv_type);
        h.kv_type = PL_KV_F16;
        h2.row_bytes = h.kv_row * (uint32_t)sizeof(pl_fp16);
    } else if (h.version != KV_VERSION) {
        return pl_fail(PL_ERR_UNSUPPORTED, "KV state: version %u, this build reads 1 and %u", h.version, KV_VERSION);
    } else if (fread(&h2, sizeof h2, 1, fp) != 1) {
        return pl_fail(PL_ERR_FORMAT, "KV state: truncated header");
    }
    if (h.fingerprint != ext_fingerprint(c->model) || h.n_layer != (uint32_t)hp->n_layer ||
        h.kv_row != (uint32_t)(hp->n_head_kv * hp->head_dim))
        return pl_fail(PL_ERR_INVALID_ARG, "KV state: saved with a different model file");
    if (h.kv_type != (uint32_t)c->kv_type)
        return pl_fail(PL_ERR_INVALID_ARG, "KV state: saved from a %s KV cache, this context's cache is %s "
                                           "(make the context with the same --kv-type)",
                       ext_kv_name(h.kv_type), ext_kv_name((uint32_t)c->kv_type));
    if (h2.row_bytes != c->kv_row_bytes)
        return pl_fail(PL_ERR_FORMAT, "KV state: rows of %u bytes, a %s row of this model has %zu", h2.row_bytes,
                       ext_kv_name(h.kv_type), c->kv_row_bytes);
    if (h.pos > (uint32_t)c->n_ctx)
        return pl_fail(PL_ERR_CONTEXT_FULL, "KV state: %u positions do not fit a context of %d", h.pos, c->n_ctx);
    c->pos = 0; /* until every row is in */
    c->n_logits_rows = 0;
    const size_t row = c->kv_row_bytes, rows = h.pos, layer = (size_t)c->n_ctx * row;
    for (int il = 0; il < hp->n_layer; il++) {
        char *k = (char *)c->k_cache + il * layer, *v = (char *)c->v_cache + il * layer;
        if (rows && (fread(k, row, rows, fp) != rows || fread(v, row, rows, fp) != rows))
            return pl_fail(PL_ERR_FORMAT, "KV state: truncated in layer %d", il);
    }
    c->pos = (int)h.pos;
    return PL_OK;
}
