/*
 * The random-model writer (src/model/random_model.c, behind `pocketllm
 * make-random`, test_gpu and the benchmarks): a vocabulary copied from a
 * shared GGUF tokenizes like that file, the written model loads and decodes
 * to finite logits of its shape, the same spec writes the same bytes and
 * another seed other bytes, and shapes or types that cannot be written are
 * refused by name without leaving a file (nor touching one already there).
 */
#include "test.h"

#include "pocketllm.h"
#include "model/random_model.h"
#include "quant/quant.h"

#include <math.h>
#include <unistd.h>

static char g_dir[] = "/tmp/pl_test_rm_XXXXXX";

static char *tmp_path(const char *name) {
    static char buf[4][512];
    static int slot;
    char *b = buf[slot++ & 3];
    snprintf(b, sizeof buf[0], "%s/%s", g_dir, name);
    return b;
}

static rm_spec small_spec(void) {
    return (rm_spec){.arch = "llama", .C = 64, .L = 2, .H = 4, .G = 2, .D = 16, .F = 128, .V = 300, .t_qko = QT_Q8_0,
                     .t_v = QT_Q4_0, .t_gu = QT_F16, .t_down = QT_Q8_0, .t_embd = QT_Q8_0, .seed = 9, .ctx = 512};
}

static long file_bytes(const char *path, unsigned char **data) {
    FILE *fp = fopen(path, "rb");
    if (!fp) return -1;
    fseek(fp, 0, SEEK_END);
    long n = ftell(fp);
    fseek(fp, 0, SEEK_SET);
    *data = malloc((size_t)n);
    if (!*data || fread(*data, 1, (size_t)n, fp) != (size_t)n) n = -1;
    fclose(fp);
    return n;
}

static void test_vocab_from(void) {
    const char *src = shared_path("models/kjv-llama-f16.gguf");
    if (!src) SKIP("../shared/models/kjv-llama-f16.gguf absent");
    rm_spec s = small_spec();
    s.vocab_from = src;
    s.V = 7; /* ignored: the file's vocabulary size is used */
    const char *path = tmp_path("vocab.gguf");
    rm_written w = {0};
    REQUIRE(model_write_random(&s, path, &w) == PL_OK, "%s", pl_last_error());
    pl_model_params mp = pl_model_default_params();
    pl_model *ref = NULL, *m = NULL;
    REQUIRE(pl_model_load(src, &mp, &ref) == PL_OK, "%s", pl_last_error());
    if (pl_model_load(path, &mp, &m) != PL_OK) {
        CHECK(0, "%s", pl_last_error());
        pl_model_free(ref);
        return;
    }
    CHECK(w.n_vocab == pl_model_n_vocab(ref) && pl_model_n_vocab(m) == pl_model_n_vocab(ref), "vocab %lld / %d vs %d",
          (long long)w.n_vocab, pl_model_n_vocab(m), pl_model_n_vocab(ref));
    CHECK(pl_model_n_ctx_train(m) == 512, "context_length %d", pl_model_n_ctx_train(m));
    const char *text = "In the beginning God created the heaven and the earth. Zerubbabel's 3000 <0x41>";
    pl_token a[128], b[128];
    int na = 0, nb = 0;
    CHECK(pl_tokenize(ref, text, strlen(text), 1, 0, a, 128, &na) == PL_OK, "%s", pl_last_error());
    CHECK(pl_tokenize(m, text, strlen(text), 1, 0, b, 128, &nb) == PL_OK, "%s", pl_last_error());
    CHECK(na == nb && na > 10 && !memcmp(a, b, (size_t)na * sizeof *a), "tokenization differs (%d vs %d tokens)", nb, na);
    CHECK(pl_model_bos(m) == pl_model_bos(ref) && pl_model_eos(m) == pl_model_eos(ref), "bos/eos differ");
    pl_model_free(ref);
    pl_model_free(m);
}

static void test_loads_and_decodes(void) {
    const char *arch[] = {"llama", "qwen2", "qwen3"};
    for (int k = 0; k < 3; k++) {
        rm_spec s = small_spec();
        s.arch = arch[k];
        s.untied = k == 1, s.t_out = QT_Q4_0;
        const char *path = tmp_path("arch.gguf");
        rm_written w = {0};
        REQUIRE(model_write_random(&s, path, &w) == PL_OK, "%s: %s", arch[k], pl_last_error());
        CHECK(w.n_vocab == 300 && w.tensor_bytes > 0, "%s: written %lld tokens, %llu bytes", arch[k], (long long)w.n_vocab,
              (unsigned long long)w.tensor_bytes);
        pl_model_params mp = pl_model_default_params();
        pl_model *m = NULL;
        REQUIRE(pl_model_load(path, &mp, &m) == PL_OK, "%s: %s", arch[k], pl_last_error());
        CHECK(!strcmp(pl_model_arch(m), arch[k]) && pl_model_n_embd(m) == 64 && pl_model_n_layer(m) == 2 &&
                  pl_model_n_vocab(m) == 300,
              "%s: loaded as %s, %d wide, %d layers, %d tokens", arch[k], pl_model_arch(m), pl_model_n_embd(m),
              pl_model_n_layer(m), pl_model_n_vocab(m));
        /* file = header + every tensor, each padded to 32 bytes: at least the data */
        CHECK(pl_model_file_bytes(m) > w.tensor_bytes && pl_model_file_bytes(m) < w.tensor_bytes + 64 * 1024,
              "%s: file %llu bytes for %llu of tensors", arch[k], (unsigned long long)pl_model_file_bytes(m),
              (unsigned long long)w.tensor_bytes);
        pl_ctx_params cp = pl_ctx_default_params();
        cp.n_ctx = 32;
        pl_ctx *c = NULL;
        if (pl_ctx_new(m, &cp, &c) == PL_OK) {
            const pl_token toks[4] = {1, 100, 260, 299};
            CHECK(pl_ctx_decode(c, toks, 4) == PL_OK, "%s", pl_last_error());
            const float *lg = pl_ctx_logits(c, 3);
            int finite = lg != NULL, varied = 0;
            for (int i = 0; lg && i < 300; i++) {
                finite &= isfinite(lg[i]) != 0;
                varied |= lg[i] != lg[0];
            }
            CHECK(finite && varied, "%s: logits not finite or all equal", arch[k]);
            pl_ctx_free(c);
        } else {
            CHECK(0, "%s", pl_last_error());
        }
        pl_model_free(m);
    }
}

static void test_deterministic(void) {
    rm_spec s = small_spec();
    s.raw = 1, s.t_qko = QT_Q4_0; /* raw Q4_0 blocks and quantized tensors in one file */
    unsigned char *a = NULL, *b = NULL, *c = NULL;
    REQUIRE(model_write_random(&s, tmp_path("d1.gguf"), NULL) == PL_OK, "%s", pl_last_error());
    REQUIRE(model_write_random(&s, tmp_path("d2.gguf"), NULL) == PL_OK, "%s", pl_last_error());
    s.seed = 10;
    REQUIRE(model_write_random(&s, tmp_path("d3.gguf"), NULL) == PL_OK, "%s", pl_last_error());
    long na = file_bytes(tmp_path("d1.gguf"), &a), nb = file_bytes(tmp_path("d2.gguf"), &b),
         nc = file_bytes(tmp_path("d3.gguf"), &c);
    CHECK(na > 0 && na == nb && !memcmp(a, b, (size_t)na), "same spec, different bytes");
    CHECK(na == nc && memcmp(a, c, (size_t)na), "another seed, same bytes");
    free(a);
    free(b);
    free(c);
}

static void test_refusals(void) {
    const char *path = tmp_path("bad.gguf");
    unlink(path);
    rm_spec s = small_spec();
    s.t_gu = QT_Q4_K; /* 64 wide: not a whole 256-element block */
    CHECK(model_write_random(&s, path, NULL) == PL_ERR_INVALID_ARG, "q4_k rows of 64 accepted");
    CHECK(strstr(pl_last_error(), "ffn_gate.weight") != NULL, "message: %s", pl_last_error());
    CHECK(access(path, F_OK) != 0, "a file was left behind");
    s = small_spec();
    s.V = 100;
    CHECK(model_write_random(&s, path, NULL) == PL_ERR_INVALID_ARG, "a vocabulary of 100 without byte tokens accepted");
    /* a failing vocabulary file leaves an existing output alone */
    FILE *fp = fopen(path, "w");
    REQUIRE(fp, "cannot create %s", path);
    fputs("keep", fp);
    fclose(fp);
    s = small_spec();
    s.vocab_from = tmp_path("missing.gguf");
    CHECK(model_write_random(&s, path, NULL) != PL_OK, "a missing vocabulary file accepted");
    CHECK(access(path, F_OK) == 0, "the existing file was removed");
    s.vocab_from = path; /* not a GGUF */
    CHECK(model_write_random(&s, tmp_path("out.gguf"), NULL) != PL_OK, "a vocabulary from a non-GGUF accepted");
    CHECK(access(tmp_path("out.gguf"), F_OK) != 0, "a file was left behind");
    /* a write error (a full device) is an I/O status, and the device stays */
    if (access("/dev/full", W_OK) == 0) {
        s = small_spec();
        CHECK(model_write_random(&s, "/dev/full", NULL) == PL_ERR_IO, "writing to /dev/full: %s", pl_last_error());
        CHECK(access("/dev/full", F_OK) == 0, "/dev/full removed");
    }
}

int main(void) {
    if (!mkdtemp(g_dir)) {
        perror("mkdtemp");
        return 1;
    }
    RUN(test_vocab_from);
    RUN(test_loads_and_decodes);
    RUN(test_deterministic);
    RUN(test_refusals);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
    if (system(cmd) != 0) fprintf(stderr, "  could not remove %s\n", g_dir);
    TEST_END();
}
