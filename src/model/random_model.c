/*
 * Writing random models (see random_model.h): tensor list from the shape,
 * metadata and a byte-fallback SentencePiece vocabulary, then the data one
 * tensor at a time through the streaming GGUF writer.
 */
#include "random_model.h"

#include "../gguf/gguf.h"
#include "../quant/quant.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct rm_tensor {
    char name[64];
    uint32_t type;
    int64_t ne[2];
    int kind; /* 0 matrix (scale 1/sqrt(ne0)), 1 norm (1 +- 0.2), 2 bias (+-0.1), 3 embedding (+-1) */
} rm_tensor;

static int rm_fill(const rm_spec *s, const rm_tensor *t, uint64_t *rng, void *out) {
    const int64_t n = t->ne[0] * t->ne[1];
    if (s->raw && t->type == QT_Q4_0) {
        block_q4_0 *b = out;
        const float d = (t->kind == 3 ? 0.25f : 0.125f / sqrtf((float)t->ne[0]));
        for (int64_t i = 0; i < n / 32; i++) {
            b[i].d = pl_f32_to_fp16(d * (1.0f + 0.5f * rm_unif(rng)));
            for (int j = 0; j < 16; j++) b[i].qs[j] = (uint8_t)rm_next(rng);
        }
        return 1;
    }
    float *f = malloc((size_t)n * sizeof *f);
    if (!f) return 0;
    const float sc = t->kind == 0 ? 1.0f / sqrtf((float)t->ne[0]) : t->kind == 2 ? 0.1f : t->kind == 3 ? 1.0f : 0.2f;
    for (int64_t i = 0; i < n; i++) f[i] = (t->kind == 1 ? 1.0f : 0.0f) + sc * rm_unif(rng);
    if (t->type == QT_F32) memcpy(out, f, (size_t)n * sizeof *f);
    else quant_get(t->type)->from_float(f, out, n);
    free(f);
    return 1;
}

pl_status model_write_random(const rm_spec *s, const char *path) {
    if (!s || !path || s->V < 259 || s->C <= 0 || s->L <= 0 || s->H <= 0 || s->G <= 0 || s->D <= 0 || s->F <= 0)
        return pl_fail(PL_ERR_INVALID_ARG, "random model: bad shape (vocabulary must be >= 259, sizes > 0)");
    const int HD = s->H * s->D, GD = s->G * s->D;
    const int n_t = 2 + !!s->untied + s->L * 13;
    rm_tensor *ts = calloc((size_t)n_t, sizeof *ts);
    char **tok = calloc((size_t)s->V, sizeof *tok);
    float *scores = malloc((size_t)s->V * sizeof *scores);
    int32_t *types = malloc((size_t)s->V * sizeof *types);
    gguf_writer *w = gguf_writer_new();
    FILE *fp = NULL;
    void *buf = NULL;
    int ok = ts && tok && scores && types && w && s->V >= 259, nt = 0;
    for (int i = 0; ok && i < s->V; i++) {
        tok[i] = malloc(16);
        if (!tok[i]) { ok = 0; break; }
        if (i == 0) snprintf(tok[i], 16, "<unk>");
        else if (i == 1) snprintf(tok[i], 16, "<s>");
        else if (i == 2) snprintf(tok[i], 16, "</s>");
        else if (i < 259) snprintf(tok[i], 16, "<0x%02X>", i - 3);
        else snprintf(tok[i], 16, "t%d", i - 259);
        scores[i] = i < 259 ? 0.0f : -(float)i;
        types[i] = i == 0 ? 2 : i < 3 ? 3 : i < 259 ? 6 : 1;
    }
    char key[96];
#define KEY(sfx) (snprintf(key, sizeof key, "%s.%s", s->arch, sfx), key)
    ok = ok && !gguf_writer_set_str(w, "general.architecture", s->arch) &&
         !gguf_writer_set_u32(w, KEY("embedding_length"), (uint32_t)s->C) &&
         !gguf_writer_set_u32(w, KEY("block_count"), (uint32_t)s->L) &&
         !gguf_writer_set_u32(w, KEY("attention.head_count"), (uint32_t)s->H) &&
         !gguf_writer_set_u32(w, KEY("attention.head_count_kv"), (uint32_t)s->G) &&
         !gguf_writer_set_u32(w, KEY("attention.key_length"), (uint32_t)s->D) &&
         !gguf_writer_set_u32(w, KEY("attention.value_length"), (uint32_t)s->D) &&
         !gguf_writer_set_u32(w, KEY("feed_forward_length"), (uint32_t)s->F) &&
         !gguf_writer_set_u32(w, KEY("context_length"), 4096) &&
         !gguf_writer_set_f32(w, KEY("attention.layer_norm_rms_epsilon"), 1e-5f) &&
         !gguf_writer_set_str(w, "tokenizer.ggml.model", "llama") &&
         !gguf_writer_set_arr(w, "tokenizer.ggml.tokens", GGUF_TYPE_STRING, (const char *const *)tok, (uint64_t)s->V) &&
         !gguf_writer_set_arr(w, "tokenizer.ggml.scores", GGUF_TYPE_FLOAT32, scores, (uint64_t)s->V) &&
         !gguf_writer_set_arr(w, "tokenizer.ggml.token_type", GGUF_TYPE_INT32, types, (uint64_t)s->V) &&
         !gguf_writer_set_u32(w, "tokenizer.ggml.bos_token_id", 1) &&
         !gguf_writer_set_u32(w, "tokenizer.ggml.eos_token_id", 2);
#undef KEY
#define T(nm, ty, n0, n1, k)                                                              \
    do {                                                                                  \
        rm_tensor *t_ = &ts[nt++];                                                        \
        snprintf(t_->name, sizeof t_->name, "%s", nm);                                    \
        t_->type = ty, t_->ne[0] = n0, t_->ne[1] = n1, t_->kind = k;                      \
    } while (0)
    if (ok) {
        T("token_embd.weight", s->t_embd, s->C, s->V, 3);
        T("output_norm.weight", QT_F32, s->C, 1, 1);
        if (s->untied) T("output.weight", s->t_out, s->C, s->V, 0);
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
    }
#undef T
    size_t max_bytes = 0;
    for (int i = 0; ok && i < nt; i++) {
        const int64_t ne[2] = {ts[i].ne[0], ts[i].ne[1]};
        ok = !gguf_writer_add_tensor(w, ts[i].name, ts[i].type, ne[1] > 1 ? 2 : 1, ne, NULL);
        const size_t b = (size_t)quant_row_size(ts[i].type, ne[0]) * (size_t)ne[1];
        if (b > max_bytes) max_bytes = b;
    }
    ok = ok && (buf = malloc(max_bytes)) && (fp = fopen(path, "wb")) && !gguf_writer_set_path(w, path) &&
         !gguf_writer_write_header(w, fp);
    uint64_t rng = s->seed ? s->seed : 1;
    for (int i = 0; ok && i < nt; i++)
        ok = rm_fill(s, &ts[i], &rng, buf) && !gguf_writer_write_tensor_data(w, fp, (uint64_t)i, buf);
    if (fp && fclose(fp)) ok = 0;
    pl_status st = ok ? PL_OK : pl_fail_prefix(PL_ERR_IO, "writing random model %s", path);
    for (int i = 0; tok && i < s->V; i++) free(tok[i]);
    free(tok);
    free(scores);
    free(types);
    free(ts);
    free(buf);
    gguf_writer_free(w);
    return st;
}
