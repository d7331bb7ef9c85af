/*
 * Writing random models (see random_model.h): tensor list from the shape,
 * metadata, the vocabulary (copied or synthetic), then the data through the
 * streaming GGUF writer's header and one row block at a time. Invariant: the
 * random stream is drawn in file order, element by element (block by block
 * for raw Q4_0), so the bytes do not depend on how many rows a block holds;
 * every row is a whole number of quant blocks (checked), so quantizing a row
 * block equals quantizing the tensor at once.
 */
#include "random_model.h"

#include "../gguf/gguf.h"
#include "../quant/quant.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

enum { RM_ROWS = 64, RM_MAX_VOCAB = 1 << 22 };

typedef struct rm_tensor {
    char name[64];
    uint32_t type;
    int64_t ne[2];
    int kind; /* 0 matrix (scale 1/sqrt(ne0)), 1 norm (1 +- 0.2), 2 bias (+-0.1), 3 embedding (+-1) */
} rm_tensor;

/* nr rows of t into out: raw Q4_0 blocks, or f32 values (in tmp) quantized. */
static void rm_fill_rows(const rm_spec *s, const rm_tensor *t, uint64_t *rng, int64_t nr, float *tmp, void *out) {
    const int64_t n = t->ne[0] * nr;
    if (s->raw && t->type == QT_Q4_0) {
        block_q4_0 *b = out;
        const float d = (t->kind == 3 ? 0.25f : 0.125f / sqrtf((float)t->ne[0]));
        for (int64_t i = 0; i < n / 32; i++) {
            b[i].d = pl_f32_to_fp16(d * (1.0f + 0.5f * rm_unif(rng)));
            for (int j = 0; j < 16; j++) b[i].qs[j] = (uint8_t)rm_next(rng);
        }
        return;
    }
    const float sc = t->kind == 0 ? 1.0f / sqrtf((float)t->ne[0]) : t->kind == 2 ? 0.1f : t->kind == 3 ? 1.0f : 0.2f;
    for (int64_t i = 0; i < n; i++) tmp[i] = (t->kind == 1 ? 1.0f : 0.0f) + sc * rm_unif(rng);
    if (t->type == QT_F32) memcpy(out, tmp, (size_t)n * sizeof *tmp);
    else quant_get(t->type)->from_float(tmp, out, n);
}

/* Keys copied from a vocab_from file: the tokenizer's, nothing else. */
static bool rm_not_tokenizer(const char *key) { return strncmp(key, "tokenizer.", 10) != 0; }

/* <unk> <s> </s>, the 256 byte tokens <0x00>..<0xFF>, then "t<i>" pieces. */
static pl_status rm_synthetic_vocab(gguf_writer *w, int V) {
    char **tok = calloc((size_t)V, sizeof *tok);
    float *scores = malloc((size_t)V * sizeof *scores);
    int32_t *types = malloc((size_t)V * sizeof *types);
    pl_status st = tok && scores && types ? PL_OK : pl_fail(PL_ERR_NOMEM, "random model: out of memory for %d tokens", V);
    for (int i = 0; !st && i < V; i++) {
        if (!(tok[i] = malloc(16))) {
            st = pl_fail(PL_ERR_NOMEM, "random model: out of memory for %d tokens", V);
            break;
        }
        if (i == 0) snprintf(tok[i], 16, "<unk>");
        else if (i == 1) snprintf(tok[i], 16, "<s>");
        else if (i == 2) snprintf(tok[i], 16, "</s>");
        else if (i < 259) snprintf(tok[i], 16, "<0x%02X>", i - 3);
        else snprintf(tok[i], 16, "t%d", i - 259);
        scores[i] = i < 259 ? 0.0f : -(float)i;
        types[i] = i == 0 ? 2 : i < 3 ? 3 : i < 259 ? 6 : 1; /* unknown, control, byte, normal */
    }
    if (!st) st = gguf_writer_set_str(w, "tokenizer.ggml.model", "llama");
    if (!st) st = gguf_writer_set_arr(w, "tokenizer.ggml.tokens", GGUF_TYPE_STRING, (const char *const *)tok, (uint64_t)V);
    if (!st) st = gguf_writer_set_arr(w, "tokenizer.ggml.scores", GGUF_TYPE_FLOAT32, scores, (uint64_t)V);
    if (!st) st = gguf_writer_set_arr(w, "tokenizer.ggml.token_type", GGUF_TYPE_INT32, types, (uint64_t)V);
    if (!st) st = gguf_writer_set_u32(w, "tokenizer.ggml.bos_token_id", 1);
    if (!st) st = gguf_writer_set_u32(w, "tokenizer.ggml.eos_token_id", 2);
    for (int i = 0; tok && i < V; i++) free(tok[i]);
    free(tok);
    free(scores);
    free(types);
    return st;
}

/* The tensor list in file order; returns how many were written to ts. */
static int rm_tensors(const rm_spec *s, int V, rm_tensor *ts) {
    const int HD = s->H * s->D, GD = s->G * s->D;
    int nt = 0;
#define T(nm, ty, n0, n1, k)                                                              \
    do {                                                                                  \
        rm_tensor *t_ = &ts[nt++];                                                        \
        snprintf(t_->name, sizeof t_->name, "%s", nm);                                    \
        t_->type = ty, t_->ne[0] = n0, t_->ne[1] = n1, t_->kind = k;                      \
    } while (0)
    T("token_embd.weight", s->t_embd, s->C, V, 3);
    T("output_norm.weight", QT_F32, s->C, 1, 1);
    if (s->untied) T("output.weight", s->t_out, s->C, V, 0);
    for (int l = 0; l < s->L; l++) {
        char nm[64];
#define LN(x) (snprintf(nm, sizeof nm, "blk.%d.%s", l, x), nm)
        T(LN("attn_norm.weight"), QT_F32, s->C, 1, 1);
        T(LN("attn_q.weight"), s->t_qko, s->C, HD, 0);
        T(LN("attn_k.weight"), s->t_qko, s->C, GD, 0);
        T(LN("attn_v.weight"), s->t_v, s->C, GD, 0);
        T(LN("attn_output.weight"), s->t_qko, HD, s->C, 0);
        T(LN("ffn_norm.weight"), QT_F32, s->C, 1, 1);
        T(LN("ffn_gate.weight"), s->t_gu, s->C, s->F, 0);
        T(LN("ffn_up.weight"), s->t_gu, s->C, s->F, 0);
        T(LN("ffn_down.weight"), s->t_down, s->F, s->C, 0);
        if (!strcmp(s->arch, "qwen2")) {
            T(LN("attn_q.bias"), QT_F32, HD, 1, 2);
            T(LN("attn_k.bias"), QT_F32, GD, 1, 2);
            T(LN("attn_v.bias"), QT_F32, GD, 1, 2);
        } else if (!strcmp(s->arch, "qwen3")) {
            T(LN("attn_q_norm.weight"), QT_F32, s->D, 1, 1);
            T(LN("attn_k_norm.weight"), QT_F32, s->D, 1, 1);
        }
#undef LN
    }
#undef T
    return nt;
}

/* One tensor's rows, a block at a time, then the writer's alignment padding. */
static pl_status rm_write_tensor(const rm_spec *s, const rm_tensor *t, uint64_t *rng, FILE *fp, float *tmp, void *qbuf) {
    const size_t row_bytes = (size_t)quant_row_size(t->type, t->ne[0]);
    for (int64_t r0 = 0; r0 < t->ne[1]; r0 += RM_ROWS) {
        const int64_t nr = t->ne[1] - r0 < RM_ROWS ? t->ne[1] - r0 : RM_ROWS;
        rm_fill_rows(s, t, rng, nr, tmp, qbuf);
        if (fwrite(qbuf, row_bytes, (size_t)nr, fp) != (size_t)nr)
            return pl_fail(PL_ERR_IO, "writing tensor '%s' failed: %s", t->name, strerror(errno));
    }
    static const uint8_t zeros[GGUF_DEFAULT_ALIGNMENT];
    const uint64_t nb = (uint64_t)row_bytes * (uint64_t)t->ne[1];
    const size_t pad = (size_t)((GGUF_DEFAULT_ALIGNMENT - nb % GGUF_DEFAULT_ALIGNMENT) % GGUF_DEFAULT_ALIGNMENT);
    if (pad && fwrite(zeros, 1, pad, fp) != pad)
        return pl_fail(PL_ERR_IO, "writing tensor '%s' failed: %s", t->name, strerror(errno));
    return PL_OK;
}

pl_status model_write_random(const rm_spec *s, const char *path, rm_written *out) {
    if (!s || !path || !s->arch || s->C <= 0 || s->L <= 0 || s->H <= 0 || s->G <= 0 || s->D <= 0 || s->F <= 0 ||
        s->ctx < 0 || (!s->vocab_from && (s->V < 259 || s->V > RM_MAX_VOCAB)))
        return pl_fail(PL_ERR_INVALID_ARG, "random model: bad shape (vocabulary 259..%d without a vocabulary file, sizes > 0)",
                       RM_MAX_VOCAB);
    gguf_file *vf = NULL;
    gguf_writer *w = NULL;
    rm_tensor *ts = NULL;
    FILE *fp = NULL;
    float *tmp = NULL;
    void *qbuf = NULL;
    int created = 0;
    pl_status st = PL_OK;
    int V = s->V;
    if (s->vocab_from) {
        if ((st = gguf_open(s->vocab_from, &vf))) goto fail;
        const gguf_kv *toks = gguf_get_kv(vf, "tokenizer.ggml.tokens");
        if (!toks || toks->type != GGUF_TYPE_ARRAY || toks->arr_n == 0 || toks->arr_n > RM_MAX_VOCAB) {
            st = pl_fail(PL_ERR_FORMAT, "%s: no tokenizer.ggml.tokens array of 1..%d tokens to copy", s->vocab_from, RM_MAX_VOCAB);
            goto fail;
        }
        V = (int)toks->arr_n;
    }
    const int n_t = 3 + s->L * 13;
    if (!(ts = calloc((size_t)n_t, sizeof *ts)) || !(w = gguf_writer_new())) {
        st = pl_fail(PL_ERR_NOMEM, "random model: out of memory");
        goto fail;
    }
    const int nt = rm_tensors(s, V, ts);
    int64_t widest = 0;
    uint64_t bytes = 0, max_row = 0;
    for (int i = 0; i < nt; i++) {
        const quant_traits *q = quant_get(ts[i].type);
        if (!q || (ts[i].type != QT_F32 && !q->from_float) || ts[i].ne[0] % q->blck) {
            st = pl_fail(PL_ERR_INVALID_ARG, "random model: tensor '%s' (%lld wide) cannot be of type %s%s", ts[i].name,
                         (long long)ts[i].ne[0], q ? q->name : "(unknown)", q && q->blck > 1 ? " (rows must be whole blocks)" : "");
            goto fail;
        }
        const uint64_t row = quant_row_size(ts[i].type, ts[i].ne[0]);
        if (ts[i].ne[0] > widest) widest = ts[i].ne[0];
        if (row > max_row) max_row = row;
        bytes += row * (uint64_t)ts[i].ne[1];
    }
    char key[96];
#define KEY(sfx) (snprintf(key, sizeof key, "%s.%s", s->arch, sfx), key)
    if (!st) st = gguf_writer_set_str(w, "general.architecture", s->arch);
    if (!st) st = gguf_writer_set_u32(w, KEY("embedding_length"), (uint32_t)s->C);
    if (!st) st = gguf_writer_set_u32(w, KEY("block_count"), (uint32_t)s->L);
    if (!st) st = gguf_writer_set_u32(w, KEY("attention.head_count"), (uint32_t)s->H);
    if (!st) st = gguf_writer_set_u32(w, KEY("attention.head_count_kv"), (uint32_t)s->G);
    if (!st) st = gguf_writer_set_u32(w, KEY("attention.key_length"), (uint32_t)s->D);
    if (!st) st = gguf_writer_set_u32(w, KEY("attention.value_length"), (uint32_t)s->D);
    if (!st) st = gguf_writer_set_u32(w, KEY("feed_forward_length"), (uint32_t)s->F);
    if (!st) st = gguf_writer_set_u32(w, KEY("context_length"), s->ctx ? (uint32_t)s->ctx : 4096);
    if (!st) st = gguf_writer_set_f32(w, KEY("attention.layer_norm_rms_epsilon"), 1e-5f);
#undef KEY
    if (!st) st = vf ? gguf_writer_copy_kv(w, vf, rm_not_tokenizer) : rm_synthetic_vocab(w, V);
    for (int i = 0; !st && i < nt; i++)
        st = gguf_writer_add_tensor(w, ts[i].name, ts[i].type, ts[i].ne[1] > 1 ? 2 : 1, ts[i].ne, NULL);
    if (st) goto fail;
    /* f32 staging and the quantized rows, RM_ROWS rows of the widest tensor */
    tmp = malloc((size_t)widest * RM_ROWS * sizeof *tmp);
    qbuf = malloc((size_t)max_row * RM_ROWS);
    if (!tmp || !qbuf) {
        st = pl_fail(PL_ERR_NOMEM, "random model: out of memory");
        goto fail;
    }
    if (!(fp = fopen(path, "wb"))) {
        st = pl_fail(PL_ERR_IO, "%s: cannot create: %s", path, strerror(errno));
        goto fail;
    }
    created = 1;
    if ((st = gguf_writer_set_path(w, path)) || (st = gguf_writer_write_header(w, fp))) goto fail;
    uint64_t rng = s->seed ? s->seed : 1;
    for (int i = 0; !st && i < nt; i++) st = rm_write_tensor(s, &ts[i], &rng, fp, tmp, qbuf);
    if (st) goto fail;
    const int closed = fclose(fp);
    fp = NULL;
    if (closed) {
        st = pl_fail(PL_ERR_IO, "%s: close failed: %s", path, strerror(errno));
        goto fail;
    }
    if (out) *out = (rm_written){.n_vocab = V, .tensor_bytes = bytes};
    goto done;
fail:
    if (fp) {
        fclose(fp);
        fp = NULL;
    }
    if (created) {
        /* no partial file; but never unlink a device or fifo the caller named */
        struct stat sb;
        if (lstat(path, &sb) == 0 && S_ISREG(sb.st_mode)) remove(path);
    }
    st = pl_fail_prefix(st, "writing random model %s", path);
done:
    free(tmp);
    free(qbuf);
    free(ts);
    gguf_writer_free(w);
    gguf_close(vf);
    return st;
}
