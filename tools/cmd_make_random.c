/*
 * `pocketllm make-random`: a llama-architecture GGUF with random weights of
 * any size, for memory and speed measurements where a real model of that
 * size is not at hand (the default is a 1B-class model: dim 2048, 16
 * layers, 32 heads, 8 KV heads, FFN 8192, tied embeddings). The vocabulary
 * is copied from another GGUF, or a synthetic SentencePiece-style one. Weights are uniform with a small spread so
 * activations stay finite; tensors are generated and quantized one row
 * block at a time and streamed to the file, so memory stays small.
 */
#include "cli.h"
#include "../src/gguf/gguf.h"
#include "../src/kernels/kernels.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void mr_usage(FILE *fp) {
    fprintf(fp,
            "usage: pocketllm make-random -o FILE [--vocab-from GGUF | --vocab N] [options]\n"
            "  -o, --output FILE      the GGUF to write (a 1B q4_0 model is about 0.7 GB)\n"
            "      --vocab-from GGUF  copy the tokenizer from this file (its vocabulary size is used)\n"
            "      --vocab N          without --vocab-from: a synthetic SentencePiece-style vocabulary of N\n"
            "                         tokens (specials, the 256 byte tokens, then fillers; default 32000)\n"
            "      --type T           matrix type: q4_0 (default), q8_0, q4_k, q6_k, f16, f32, ...\n"
            "      --dim N            embedding size (default 2048)\n"
            "      --layers N         (default 16)    --heads N (default 32)    --kv-heads N (default 8)\n"
            "      --ffn N            feed-forward size (default 8192)\n"
            "      --ctx N            context_length metadata (default 2048)\n"
            "      --untied           write a separate output matrix (default: tied to the embedding)\n"
            "      --seed S           (default 1)\n");
}

typedef struct mr_rng {
    uint64_t s;
} mr_rng;

static float mr_uniform(mr_rng *r) {
    r->s ^= r->s << 13;
    r->s ^= r->s >> 7;
    r->s ^= r->s << 17;
    return (float)((r->s >> 40) * (1.0 / 16777216.0)) * 2.0f - 1.0f;
}

typedef struct mr_tensor {
    char name[64];
    uint32_t type;
    int64_t ne[2];
    int n_dims;
    float scale; /* 0: all ones (norms) */
} mr_tensor;

/* Rows of tensor t, generated and quantized a block of rows at a time. */
static pl_status mr_write(FILE *fp, const mr_tensor *t, mr_rng *rng, float *tmp, uint8_t *qbuf, size_t rows_per) {
    const quant_from_float_fn conv = kern_from_float(t->type);
    const size_t row_bytes = quant_row_size(t->type, t->ne[0]);
    const int64_t n_rows = t->n_dims > 1 ? t->ne[1] : 1;
    for (int64_t r0 = 0; r0 < n_rows; r0 += (int64_t)rows_per) {
        const int64_t nr = n_rows - r0 < (int64_t)rows_per ? n_rows - r0 : (int64_t)rows_per;
        for (int64_t i = 0; i < nr * t->ne[0]; i++) tmp[i] = t->scale ? t->scale * mr_uniform(rng) : 1.0f;
        for (int64_t r = 0; r < nr; r++) conv(tmp + r * t->ne[0], qbuf + (size_t)r * row_bytes, t->ne[0]);
        if (fwrite(qbuf, row_bytes, (size_t)nr, fp) != (size_t)nr)
            return pl_fail(PL_ERR_IO, "writing tensor '%s' failed: %s", t->name, strerror(errno));
    }
    return PL_OK;
}

static bool mr_keep_tokenizer(const char *key) { return strncmp(key, "tokenizer.", 10) != 0; }

/* A SentencePiece-style vocabulary of n tokens: <unk> <s> </s>, the 256
 * byte tokens <0x00>..<0xFF>, then "▁t<i>" fillers (llama.cpp's layout). */
static pl_status mr_synthetic_vocab(gguf_writer *w, int n) {
    char **toks = calloc((size_t)n, sizeof *toks);
    float *scores = calloc((size_t)n, sizeof *scores);
    int32_t *types = calloc((size_t)n, sizeof *types);
    pl_status st = PL_OK;
    if (!toks || !scores || !types) st = pl_fail(PL_ERR_NOMEM, "out of memory");
    for (int i = 0; i < n && !st; i++) {
        char buf[32];
        if (i == 0) snprintf(buf, sizeof buf, "<unk>");
        else if (i == 1) snprintf(buf, sizeof buf, "<s>");
        else if (i == 2) snprintf(buf, sizeof buf, "</s>");
        else if (i < 259) snprintf(buf, sizeof buf, "<0x%02X>", i - 3);
        else snprintf(buf, sizeof buf, "\xe2\x96\x81t%d", i - 259);
        types[i] = i == 0 ? 2 : i < 3 ? 3 : i < 259 ? 6 : 1; /* unknown, control, byte, normal */
        scores[i] = i < 259 ? 0.0f : -(float)(i - 259);
        if (!(toks[i] = strdup(buf))) st = pl_fail(PL_ERR_NOMEM, "out of memory");
    }
    if (!st) st = gguf_writer_set_str(w, "tokenizer.ggml.model", "llama");
    if (!st) st = gguf_writer_set_arr(w, "tokenizer.ggml.tokens", GGUF_TYPE_STRING, (const char *const *)toks, (uint64_t)n);
    if (!st) st = gguf_writer_set_arr(w, "tokenizer.ggml.scores", GGUF_TYPE_FLOAT32, scores, (uint64_t)n);
    if (!st) st = gguf_writer_set_arr(w, "tokenizer.ggml.token_type", GGUF_TYPE_INT32, types, (uint64_t)n);
    if (!st) st = gguf_writer_set_u32(w, "tokenizer.ggml.unknown_token_id", 0);
    if (!st) st = gguf_writer_set_u32(w, "tokenizer.ggml.bos_token_id", 1);
    if (!st) st = gguf_writer_set_u32(w, "tokenizer.ggml.eos_token_id", 2);
    for (int i = 0; toks && i < n; i++) free(toks[i]);
    free(toks);
    free(scores);
    free(types);
    return st;
}

int cmd_make_random(int argc, char **argv) {
    const char *out = NULL, *vocab = NULL, *type_name = "q4_0";
    int dim = 2048, layers = 16, heads = 32, kv_heads = 8, ffn = 8192, ctx = 2048, untied = 0, n_vocab = 32000;
    unsigned long long seed = 1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
#define ARG(s, l) ((!strcmp(a, s) || !strcmp(a, l)) && v && ++i)
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) { mr_usage(stdout); return 0; }
        else if (ARG("-o", "--output")) out = v;
        else if (ARG("--vocab-from", "--vocab-from")) vocab = v;
        else if (ARG("--type", "--type")) type_name = v;
        else if (ARG("--vocab", "--vocab")) n_vocab = atoi(v);
        else if (ARG("--dim", "--dim")) dim = atoi(v);
        else if (ARG("--layers", "--layers")) layers = atoi(v);
        else if (ARG("--heads", "--heads")) heads = atoi(v);
        else if (ARG("--kv-heads", "--kv-heads")) kv_heads = atoi(v);
        else if (ARG("--ffn", "--ffn")) ffn = atoi(v);
        else if (ARG("--ctx", "--ctx")) ctx = atoi(v);
        else if (ARG("--seed", "--seed")) seed = strtoull(v, NULL, 0);
        else if (!strcmp(a, "--untied")) untied = 1;
        else {
            fprintf(stderr, "pocketllm make-random: unknown or incomplete option '%s'\n", a);
            mr_usage(stderr);
            return 2;
        }
#undef ARG
    }
    if (!out || (!vocab && (n_vocab < 260 || n_vocab > (1 << 22)))) {
        fprintf(stderr, "pocketllm make-random: -o FILE is required (and --vocab between 260 and 4194304)\n");
        mr_usage(stderr);
        return 2;
    }
    int type = -1;
    for (int t = 0; t < QT_COUNT; t++)
        if (quant_get((uint32_t)t) && !strcmp(quant_get((uint32_t)t)->name, type_name)) type = t;
    if (type < 0 || !quant_get((uint32_t)type)->vec_dot) {
        fprintf(stderr, "pocketllm make-random: unknown weight type '%s'\n", type_name);
        return 2;
    }
    const int blck = quant_get((uint32_t)type)->blck;
    if (dim <= 0 || layers <= 0 || heads <= 0 || kv_heads <= 0 || ffn <= 0 || dim % heads || heads % kv_heads ||
        dim % blck || ffn % blck || ctx <= 0) {
        fprintf(stderr, "pocketllm make-random: inconsistent shape (dim %% heads, heads %% kv-heads, dim and ffn multiples of %d)\n",
                blck);
        return 2;
    }
    gguf_file *vf = NULL;
    int64_t V = n_vocab;
    if (vocab) {
        if (gguf_open(vocab, &vf)) return cli_fail("vocabulary");
        const gguf_kv *toks = gguf_get_kv(vf, "tokenizer.ggml.tokens");
        if (!toks || toks->type != GGUF_TYPE_ARRAY) {
            gguf_close(vf);
            fprintf(stderr, "pocketllm make-random: %s has no tokenizer.ggml.tokens\n", vocab);
            return 1;
        }
        V = (int64_t)toks->arr_n;
    }
    const int64_t C = dim, D = dim / heads, GD = (int64_t)kv_heads * D, F = ffn;
    const int n_t = 3 + (untied ? 1 : 0) + 9 * layers;
    mr_tensor *ts = calloc((size_t)n_t, sizeof *ts);
    gguf_writer *w = gguf_writer_new();
    int rc = 1;
    FILE *fp = NULL;
    float *tmp = NULL;
    uint8_t *qbuf = NULL;
    if (!ts || !w) goto out;
    int k = 0;
    const float s_in = 0.5f / (float)C, s_ff = 0.5f / (float)F; /* small spread: finite activations */
#define T2(nm, ty, a, b, sc) (snprintf(ts[k].name, sizeof ts[k].name, "%s", nm), ts[k].type = (ty), ts[k].ne[0] = (a), \
                              ts[k].ne[1] = (b), ts[k].n_dims = 2, ts[k].scale = (sc), k++)
#define T1(nm, a) (snprintf(ts[k].name, sizeof ts[k].name, "%s", nm), ts[k].type = QT_F32, ts[k].ne[0] = (a), \
                   ts[k].ne[1] = 1, ts[k].n_dims = 1, ts[k].scale = 0, k++)
    T2("token_embd.weight", (uint32_t)type, C, V, 1.0f);
    for (int il = 0; il < layers; il++) {
        char nm[64];
#define NM(s) (snprintf(nm, sizeof nm, "blk.%d.%s", il, s), nm)
        T1(NM("attn_norm.weight"), C);
        T2(NM("attn_q.weight"), (uint32_t)type, C, C, s_in);
        T2(NM("attn_k.weight"), (uint32_t)type, C, GD, s_in);
        T2(NM("attn_v.weight"), (uint32_t)type, C, GD, s_in);
        T2(NM("attn_output.weight"), (uint32_t)type, C, C, s_in);
        T1(NM("ffn_norm.weight"), C);
        T2(NM("ffn_gate.weight"), (uint32_t)type, C, F, s_in);
        T2(NM("ffn_up.weight"), (uint32_t)type, C, F, s_in);
        T2(NM("ffn_down.weight"), (uint32_t)type, F, C, s_ff);
#undef NM
    }
    T1("output_norm.weight", C);
    if (untied) T2("output.weight", (uint32_t)type, C, V, 0.05f);
#undef T1
#undef T2
    pl_status st = gguf_writer_set_str(w, "general.architecture", "llama");
    if (!st) st = gguf_writer_set_str(w, "general.name", "pocketllm random");
    if (!st) st = gguf_writer_set_u32(w, "llama.context_length", (uint32_t)ctx);
    if (!st) st = gguf_writer_set_u32(w, "llama.embedding_length", (uint32_t)C);
    if (!st) st = gguf_writer_set_u32(w, "llama.block_count", (uint32_t)layers);
    if (!st) st = gguf_writer_set_u32(w, "llama.feed_forward_length", (uint32_t)F);
    if (!st) st = gguf_writer_set_u32(w, "llama.attention.head_count", (uint32_t)heads);
    if (!st) st = gguf_writer_set_u32(w, "llama.attention.head_count_kv", (uint32_t)kv_heads);
    if (!st) st = gguf_writer_set_u32(w, "llama.rope.dimension_count", (uint32_t)D);
    if (!st) st = gguf_writer_set_f32(w, "llama.attention.layer_norm_rms_epsilon", 1e-5f);
    if (!st) st = gguf_writer_set_f32(w, "llama.rope.freq_base", 10000.0f);
    if (!st) st = vf ? gguf_writer_copy_kv(w, vf, mr_keep_tokenizer) : mr_synthetic_vocab(w, (int)V);
    for (int i = 0; i < k && !st; i++) st = gguf_writer_add_tensor(w, ts[i].name, ts[i].type, (uint32_t)ts[i].n_dims, ts[i].ne, NULL);
    if (st) { cli_fail("make-random"); goto out; }
    if (!(fp = fopen(out, "wb"))) {
        fprintf(stderr, "pocketllm make-random: cannot create %s: %s\n", out, strerror(errno));
        goto out;
    }
    if (gguf_writer_set_path(w, out) || gguf_writer_write_header(w, fp)) { cli_fail("make-random"); goto out; }
    const size_t rows_per = 64;
    const int64_t widest = C > F ? C : F;
    tmp = malloc(sizeof(float) * (size_t)widest * rows_per);
    qbuf = malloc(quant_row_size(QT_F32, widest) * rows_per);
    if (!tmp || !qbuf) { fprintf(stderr, "pocketllm make-random: out of memory\n"); goto out; }
    mr_rng rng = {seed * 0x9E3779B97F4A7C15ull | 1};
    uint64_t bytes = 0;
    for (int i = 0; i < k; i++) {
        if ((st = mr_write(fp, &ts[i], &rng, tmp, qbuf, rows_per))) { cli_fail("make-random"); goto out; }
        /* padding the writer expects after each tensor's data */
        const uint64_t nb = quant_row_size(ts[i].type, ts[i].ne[0]) * (uint64_t)ts[i].ne[1];
        static const uint8_t zeros[GGUF_DEFAULT_ALIGNMENT];
        const size_t pad = (size_t)((GGUF_DEFAULT_ALIGNMENT - nb % GGUF_DEFAULT_ALIGNMENT) % GGUF_DEFAULT_ALIGNMENT);
        if (pad && fwrite(zeros, 1, pad, fp) != pad) { fprintf(stderr, "pocketllm make-random: write failed\n"); goto out; }
        bytes += nb;
    }
    if (fclose(fp) != 0) {
        fp = NULL;
        fprintf(stderr, "pocketllm make-random: write failed: %s\n", strerror(errno));
        goto out;
    }
    fp = NULL;
    printf("%s: llama, dim %lld, %d layers, %d/%d heads, ffn %lld, vocab %lld, %s, %s; %.1f MiB of tensors\n", out,
           (long long)C, layers, heads, kv_heads, (long long)F, (long long)V, type_name, untied ? "untied" : "tied",
           bytes / 1048576.0);
    rc = 0;
out:
    if (fp) fclose(fp);
    free(tmp);
    free(qbuf);
    free(ts);
    gguf_writer_free(w);
    gguf_close(vf);
    return rc;
}
