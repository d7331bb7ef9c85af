/*
 * Writes small valid GGUF files into a directory, as the fuzz corpus seed:
 * every metadata type, arrays (strings, empty, bools), tensors of several
 * types and ranks, a vocabulary-only file, a file with general.alignment = 64
 * and a hand-built one with nested arrays (which our writer cannot make).
 * Small seeds keep the fuzzer's mutations in the header, where the parser is.
 * Usage: gguf_seeds DIR   (fuzz/run.sh builds and runs it)
 */
#include "gguf/gguf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int seed_full(const char *dir, uint32_t alignment) {
    static uint8_t data[4096];
    static const char *const strs[] = {"", "a", "<s>", "\xe2\x96\x81the"};
    static const int32_t ints[] = {-1, 0, 1, 2};
    static const float floats[] = {0.5f, -1.0f, 0.0f, 3.0f};
    static const bool bools[] = {true, false, true, false};
    const uint8_t u8 = 1;
    const int8_t i8 = -1;
    const uint16_t u16 = 2;
    const int16_t i16 = -2;
    const int64_t i64 = -3;
    const double f64 = 0.25;
    int64_t ne2[2] = {32, 2}, ne_k[2] = {256, 1}, ne4[4] = {2, 1, 3, 1};
    char path[4096];
    int bad = 0;
    for (size_t i = 0; i < sizeof data; i++) data[i] = (uint8_t)(i * 7);
    gguf_writer *w = gguf_writer_new();
    if (!w) return 1;
    if (alignment) bad |= gguf_writer_set_u32(w, "general.alignment", alignment);
    bad |= gguf_writer_set_str(w, "general.architecture", "llama");
    bad |= gguf_writer_set_u32(w, "llama.block_count", 1);
    bad |= gguf_writer_set_i32(w, "llama.i32", -5);
    bad |= gguf_writer_set_u64(w, "llama.u64", 1ull << 40);
    bad |= gguf_writer_set_f32(w, "llama.attention.layer_norm_rms_epsilon", 1e-5f);
    bad |= gguf_writer_set_bool(w, "tokenizer.ggml.add_bos_token", true);
    bad |= gguf_writer_set_val(w, "t.u8", GGUF_TYPE_UINT8, &u8);
    bad |= gguf_writer_set_val(w, "t.i8", GGUF_TYPE_INT8, &i8);
    bad |= gguf_writer_set_val(w, "t.u16", GGUF_TYPE_UINT16, &u16);
    bad |= gguf_writer_set_val(w, "t.i16", GGUF_TYPE_INT16, &i16);
    bad |= gguf_writer_set_val(w, "t.i64", GGUF_TYPE_INT64, &i64);
    bad |= gguf_writer_set_val(w, "t.f64", GGUF_TYPE_FLOAT64, &f64);
    bad |= gguf_writer_set_arr(w, "tokenizer.ggml.tokens", GGUF_TYPE_STRING, strs, 4);
    bad |= gguf_writer_set_arr(w, "tokenizer.ggml.token_type", GGUF_TYPE_INT32, ints, 4);
    bad |= gguf_writer_set_arr(w, "tokenizer.ggml.scores", GGUF_TYPE_FLOAT32, floats, 4);
    bad |= gguf_writer_set_arr(w, "t.bools", GGUF_TYPE_BOOL, bools, 4);
    bad |= gguf_writer_set_arr(w, "t.empty", GGUF_TYPE_UINT8, NULL, 0);
    bad |= gguf_writer_add_tensor(w, "a.f32", QT_F32, 2, ne2, data);
    bad |= gguf_writer_add_tensor(w, "b.f16", QT_F16, 4, ne4, data);
    bad |= gguf_writer_add_tensor(w, "c.q8_0", QT_Q8_0, 2, ne2, data);
    bad |= gguf_writer_add_tensor(w, "d.q4_0", QT_Q4_0, 2, ne2, data);
    bad |= gguf_writer_add_tensor(w, "e.q4_k", QT_Q4_K, 2, ne_k, data);
    bad |= gguf_writer_add_tensor(w, "f.q6_k", QT_Q6_K, 2, ne_k, data);
    snprintf(path, sizeof path, "%s/seed_full_%u.gguf", dir, alignment);
    if (!bad) bad = gguf_writer_write_file(w, path);
    gguf_writer_free(w);
    return bad;
}

static int seed_vocab(const char *dir) {
    char *toks[64];
    char buf[64][8];
    float scores[64];
    char path[4096];
    for (int i = 0; i < 64; i++) {
        snprintf(buf[i], sizeof buf[i], "t%d", i);
        toks[i] = buf[i];
        scores[i] = (float)-i;
    }
    gguf_writer *w = gguf_writer_new();
    if (!w) return 1;
    int bad = gguf_writer_set_str(w, "tokenizer.ggml.model", "llama");
    bad |= gguf_writer_set_arr(w, "tokenizer.ggml.tokens", GGUF_TYPE_STRING, (const char *const *)toks, 64);
    bad |= gguf_writer_set_arr(w, "tokenizer.ggml.scores", GGUF_TYPE_FLOAT32, scores, 64);
    snprintf(path, sizeof path, "%s/seed_vocab.gguf", dir);
    if (!bad) bad = gguf_writer_write_file(w, path);
    gguf_writer_free(w);
    return bad;
}

static void put(FILE *fp, const void *p, size_t n) { fwrite(p, 1, n, fp); }
static void put32(FILE *fp, uint32_t v) { put(fp, &v, 4); }
static void put64(FILE *fp, uint64_t v) { put(fp, &v, 8); }

static int seed_nested(const char *dir) {
    char path[4096];
    snprintf(path, sizeof path, "%s/seed_nested.gguf", dir);
    FILE *fp = fopen(path, "wb");
    if (!fp) return 1;
    put32(fp, GGUF_MAGIC);
    put32(fp, 2); /* version 2: same layout as 3 */
    put64(fp, 0);
    put64(fp, 1);
    put64(fp, 6);
    put(fp, "nested", 6);
    put32(fp, GGUF_TYPE_ARRAY);
    put32(fp, GGUF_TYPE_ARRAY);
    put64(fp, 2);
    put32(fp, GGUF_TYPE_UINT16);
    put64(fp, 2);
    put32(fp, 0x00020001);
    put32(fp, GGUF_TYPE_STRING);
    put64(fp, 1);
    put64(fp, 2);
    put(fp, "hi", 2);
    return fclose(fp) != 0;
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: gguf_seeds DIR\n");
        return 2;
    }
    if (seed_full(argv[1], 0) || seed_full(argv[1], 64) || seed_vocab(argv[1]) || seed_nested(argv[1])) {
        fprintf(stderr, "gguf_seeds: %s\n", pl_last_error());
        return 1;
    }
    return 0;
}
