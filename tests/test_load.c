/*
 * Loading from anywhere, checked by the logits: a model read from an offset
 * inside another file, from a descriptor, from raw chunks (cut on page
 * boundaries and not), from gguf-split files, with --no-mmap, --mlock and
 * each madvise policy gives logits bit-identical to the plain file. Also:
 * SHA-256 against the NIST examples (FIPS 180-2 appendix B), sidecar sums
 * catch a flipped byte, merge(split(x)) is x byte for byte, split files carry
 * llama.cpp's split.* keys, zero-copy really maps (weights_copied stays 0 where
 * offsets line up), a refused mlock is a clean PL_ERR_BUDGET, bad ranges fail.
 */
#include "test.h"

#include "core/sha256.h"
#include "gguf/gguf.h"
#include "pocketllm.h"

#include <fcntl.h>
#include <linux/capability.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

static char g_tmp[512];
static const char *g_model; /* kjv-llama-q8_0.gguf */

#define N_TOK 24
#define N_VOCAB_MAX 32000

static float *g_ref; /* N_TOK rows of logits from the plain file */
static int g_nv;

static const pl_token k_toks[N_TOK] = {1, 512, 278, 6763, 310, 278, 3186, 29892, 1554, 322, 278, 8680,
                                       29889, 13, 29906, 1126, 1855, 338, 1449, 29879, 310, 2090, 29889, 13};

/* Logits of k_toks (all rows) from a loaded model; NULL on failure. */
static float *logits_of(pl_model *m) {
    pl_ctx_params cp = pl_ctx_default_params();
    cp.n_ctx = 64;
    cp.n_threads = 2;
    cp.logits_all = 1;
    pl_ctx *c = NULL;
    if (pl_ctx_new(m, &cp, &c)) return NULL;
    float *out = NULL;
    const int nv = pl_model_n_vocab(m);
    if (pl_ctx_decode(c, k_toks, N_TOK) == PL_OK && (out = malloc(sizeof(float) * (size_t)nv * N_TOK))) {
        for (int i = 0; i < N_TOK; i++) {
            const float *l = pl_ctx_logits(c, i);
            if (!l) {
                free(out);
                out = NULL;
                break;
            }
            memcpy(out + (size_t)i * nv, l, sizeof(float) * (size_t)nv);
        }
    }
    pl_ctx_free(c);
    return out;
}

/* 1 when the model's logits equal the plain file's bit for bit. */
static int same_logits(pl_model *m, const char *what) {
    float *l = logits_of(m);
    if (!l) {
        fprintf(stderr, "  %s: decode failed: %s\n", what, pl_last_error());
        return 0;
    }
    const int same = memcmp(l, g_ref, sizeof(float) * (size_t)g_nv * N_TOK) == 0;
    free(l);
    return same;
}

/* Every load here keeps the file's layout (no weight repacking): loads that
 * can pack (a whole mapping) and loads that cannot (copies, mlock) then run
 * the same kernels, so their logits can be compared bit for bit; packing's
 * own logits are checked in test_plan. */
static pl_model_params load_params(void) {
    pl_model_params mp = pl_model_default_params();
    mp.no_repack = 1;
    return mp;
}
static pl_model_params g_lp; /* load_params(), for calls that take a pointer */

static int64_t copied_now(void) {
    pl_memory_stats s;
    pl_memory_snapshot(&s);
    return s.weights_copied;
}

static char *tmp_path(const char *name) {
    static char buf[8][1024];
    static int slot;
    char *b = buf[slot++ & 7];
    snprintf(b, sizeof buf[0], "%s/%s", g_tmp, name);
    return b;
}

static uint8_t *read_all(const char *path, size_t *n) {
    FILE *fp = fopen(path, "rb");
    if (!fp) return NULL;
    fseek(fp, 0, SEEK_END);
    long sz = ftell(fp);
    fseek(fp, 0, SEEK_SET);
    uint8_t *b = malloc(sz > 0 ? (size_t)sz : 1);
    if (b && fread(b, 1, (size_t)sz, fp) != (size_t)sz) {
        free(b);
        b = NULL;
    }
    fclose(fp);
    *n = (size_t)sz;
    return b;
}

static int write_all(const char *path, const void *a, size_t na, const void *b, size_t nb, const void *c, size_t nc) {
    FILE *fp = fopen(path, "wb");
    if (!fp) return 0;
    int ok = fwrite(a, 1, na, fp) == na && fwrite(b, 1, nb, fp) == nb && fwrite(c, 1, nc, fp) == nc;
    return fclose(fp) == 0 && ok;
}

/* ------------------------------------------------------------ SHA-256 */

static void test_sha256_nist_vectors(void) {
    static const struct { const char *msg; const char *hex; } v[] = {
        {"abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"},
        {"", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"},
        {"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
         "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"},
        {"abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu",
         "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1"},
    };
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
        /* whole, and fed one byte at a time (the block-straddling paths) */
        for (int bytewise = 0; bytewise < 2; bytewise++) {
            sha256_ctx c;
            uint8_t d[32];
            char hex[65];
            sha256_init(&c);
            const size_t n = strlen(v[i].msg);
            if (bytewise)
                for (size_t k = 0; k < n; k++) sha256_update(&c, v[i].msg + k, 1);
            else
                sha256_update(&c, v[i].msg, n);
            sha256_final(&c, d);
            sha256_hex(d, hex);
            CHECK(!strcmp(hex, v[i].hex), "'%.20s...' (%s): %s", v[i].msg, bytewise ? "bytewise" : "whole", hex);
        }
    }
    /* one million 'a' in uneven pieces */
    sha256_ctx c;
    uint8_t d[32];
    char hex[65], a[1000];
    memset(a, 'a', sizeof a);
    sha256_init(&c);
    size_t left = 1000000, step = 1;
    while (left) {
        size_t k = step < left ? step : left;
        if (k > sizeof a) k = sizeof a;
        sha256_update(&c, a, k);
        left -= k;
        step = step * 7 % 997 + 1;
    }
    sha256_final(&c, d);
    sha256_hex(d, hex);
    CHECK(!strcmp(hex, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0"), "million a: %s", hex);
    /* the file helper agrees with hashing the bytes */
    size_t n;
    uint8_t *b = read_all(g_model, &n);
    REQUIRE(b, "read %s", g_model);
    sha256_init(&c);
    sha256_update(&c, b + 100, 5000);
    sha256_final(&c, d);
    sha256_hex(d, hex);
    free(b);
    char hex2[65];
    REQUIRE(pl_sha256_file(g_model, 100, 5000, hex2) == PL_OK, "%s", pl_last_error());
    CHECK(!strcmp(hex, hex2), "file range hash");
}

/* ------------------------------------------------------------ offsets, fds */

static void test_offset_and_fd_bit_identical(void) {
    size_t n;
    uint8_t *model = read_all(g_model, &n);
    REQUIRE(model, "read %s", g_model);
    static const size_t pres[] = {4096, 64, 1000, 1002, 3};
    uint8_t junk[8192];
    for (size_t i = 0; i < sizeof junk; i++) junk[i] = (uint8_t)(i * 131 + 7);
    for (size_t k = 0; k < sizeof pres / sizeof pres[0]; k++) {
        const size_t pre = pres[k];
        const char *path = tmp_path("container.bin");
        REQUIRE(write_all(path, junk, pre, model, n, junk, 777), "write %s", path);
        /* as a path range */
        const int64_t c0 = copied_now();
        pl_model_source src = {.path = path, .fd = -1, .offset = pre, .size = n};
        pl_model *m = NULL;
        REQUIRE(pl_model_load_sources(&src, 1, &g_lp, &m) == PL_OK, "offset %zu: %s", pre, pl_last_error());
        const int64_t copied = copied_now() - c0;
        CHECK(same_logits(m, "offset"), "offset %zu: logits differ from the plain file", pre);
        /* a multiple of 4 keeps every tensor naturally aligned: mapped in place */
        if (pre % 4 == 0) CHECK(copied == 0, "offset %zu: zero-copy expected, %lld copied", pre, (long long)copied);
        else CHECK(copied == (int64_t)n, "offset %zu is unaligned: the image is copied (%lld of %zu)", pre, (long long)copied, n);
        pl_model_free(m);
        /* as a descriptor the caller keeps */
        const int fd = open(path, O_RDONLY);
        REQUIRE(fd >= 0, "open");
        m = NULL;
        REQUIRE(pl_model_load_fd(fd, pre, n, &g_lp, &m) == PL_OK, "fd, offset %zu: %s", pre, pl_last_error());
        CHECK(same_logits(m, "fd"), "fd at offset %zu: logits differ", pre);
        pl_model_free(m);
        CHECK(fcntl(fd, F_GETFD) != -1, "the caller's descriptor stays open");
        close(fd);
    }
    /* a whole file through a descriptor, size 0 = to the end */
    const int fd = open(g_model, O_RDONLY);
    pl_model *m = NULL;
    REQUIRE(pl_model_load_fd(fd, 0, 0, &g_lp, &m) == PL_OK, "%s", pl_last_error());
    CHECK(same_logits(m, "fd whole"), "fd: logits differ");
    pl_model_free(m);
    /* bad ranges are errors, not crashes */
    CHECK(pl_model_load_fd(fd, n + 1, 0, NULL, &m) == PL_ERR_INVALID_ARG, "offset past the end");
    CHECK(pl_model_load_fd(fd, 10, n, NULL, &m) == PL_ERR_FORMAT, "size past the end");
    CHECK(pl_model_load_fd(fd, 64, 1000, NULL, &m) == PL_ERR_FORMAT, "a range that is not a GGUF: %s", pl_last_error());
    CHECK(pl_model_load_fd(-1, 0, 0, NULL, &m) == PL_ERR_IO, "fd -1");
    close(fd);
    free(model);
}

/* ------------------------------------------------------------ raw chunks */

static void test_raw_chunks(void) {
    size_t n;
    uint8_t *model = read_all(g_model, &n);
    REQUIRE(model, "read %s", g_model);
    const char *copy = tmp_path("model.gguf");
    REQUIRE(write_all(copy, model, n, "", 0, "", 0), "write");
    /* 64 KiB multiples: every chunk maps in place; an odd size: chunks are copied */
    static const uint64_t sizes[] = {4u << 20, 1000003};
    for (size_t k = 0; k < 2; k++) {
        int parts = 0;
        REQUIRE(gguf_write_parts(copy, sizes[k], &parts) == PL_OK, "%s", pl_last_error());
        CHECK(parts == (int)((n + sizes[k] - 1) / sizes[k]), "%d parts", parts);
        char first[1024];
        snprintf(first, sizeof first, "%s.part-%05d-of-%05d", copy, 1, parts);
        const int64_t c0 = copied_now();
        pl_model *m = NULL;
        pl_model_params mp = load_params();
        mp.verify = 1;
        REQUIRE(pl_model_load(first, &mp, &m) == PL_OK, "chunks of %llu: %s", (unsigned long long)sizes[k], pl_last_error());
        const int64_t copied = copied_now() - c0;
        CHECK(same_logits(m, "chunks"), "chunks of %llu: logits differ", (unsigned long long)sizes[k]);
        if (k == 0) CHECK(copied == 0, "page-multiple chunks map zero-copy, %lld copied", (long long)copied);
        else CHECK(copied > 0, "odd chunks are copied");
        pl_model_free(m);
        /* the same pieces given one by one, with their sums */
        pl_model_source src[64];
        char names[64][1024], sums[64][65];
        REQUIRE(parts <= 64, "parts");
        for (int i = 0; i < parts; i++) {
            snprintf(names[i], sizeof names[i], "%s.part-%05d-of-%05d", copy, i + 1, parts);
            REQUIRE(pl_sha256_file(names[i], 0, 0, sums[i]) == PL_OK, "%s", pl_last_error());
            src[i] = (pl_model_source){.path = names[i], .fd = -1, .offset = 0, .size = 0, .sha256 = sums[i]};
        }
        REQUIRE(pl_model_load_sources(src, parts, &mp, &m) == PL_OK, "%s", pl_last_error());
        CHECK(same_logits(m, "sources"), "sources: logits differ");
        pl_model_free(m);
        /* a wrong sum is caught before anything is mapped */
        sums[parts - 1][10] = sums[parts - 1][10] == '0' ? '1' : '0';
        pl_status st = pl_model_load_sources(src, parts, &mp, &m);
        CHECK(st == PL_ERR_FORMAT && strstr(pl_last_error(), "SHA-256 mismatch"), "wrong sum: %s %s", pl_status_name(st),
              pl_last_error());
        for (int i = 0; i < parts; i++) remove(names[i]);
    }
    free(model);
}

/* ------------------------------------------------------------ gguf-split */

static void test_gguf_split_and_merge(void) {
    const char *prefix = tmp_path("kjv");
    gguf_file *f;
    REQUIRE(gguf_open(g_model, &f) == PL_OK, "%s", pl_last_error());
    const uint64_t n_t = f->n_tensors, n_kv = f->n_kv;
    int n = 0;
    REQUIRE(gguf_write_split(f, prefix, 30, 0, &n) == PL_OK, "%s", pl_last_error());
    gguf_close(f);
    CHECK(n == (int)((n_t + 29) / 30), "%d splits for %llu tensors", n, (unsigned long long)n_t);
    /* llama.cpp's keys: split.no (u16, from 0), split.count (u16), split.tensors.count (i32);
     * the metadata only in the first */
    uint64_t total = 0;
    for (int s = 0; s < n; s++) {
        char path[1024];
        snprintf(path, sizeof path, "%s-%05d-of-%05d.gguf", prefix, s + 1, n);
        REQUIRE(gguf_open(path, &f) == PL_OK, "%s", pl_last_error());
        const gguf_kv *no = gguf_get_kv(f, "split.no"), *cnt = gguf_get_kv(f, "split.count"),
                      *tc = gguf_get_kv(f, "split.tensors.count");
        CHECK(no && no->type == GGUF_TYPE_UINT16 && cnt && cnt->type == GGUF_TYPE_UINT16 && tc && tc->type == GGUF_TYPE_INT32,
              "split key types in %s", path);
        uint32_t v;
        CHECK(gguf_get_u32(f, "split.no", &v) == PL_OK && v == (uint32_t)s, "split.no %u", v);
        CHECK(gguf_get_u32(f, "split.count", &v) == PL_OK && v == (uint32_t)n, "split.count %u", v);
        CHECK(s == 0 ? f->n_kv == n_kv + 3 : f->n_kv == 3, "%s has %llu keys", path, (unsigned long long)f->n_kv);
        total += f->n_tensors;
        gguf_close(f);
    }
    CHECK(total == n_t, "tensors across splits: %llu", (unsigned long long)total);
    /* any piece loads the whole model */
    char second[1024];
    snprintf(second, sizeof second, "%s-%05d-of-%05d.gguf", prefix, 2, n);
    pl_model *m = NULL;
    pl_model_params mp = load_params();
    mp.verify = 1;
    REQUIRE(pl_model_load(second, &mp, &m) == PL_OK, "%s", pl_last_error());
    CHECK(same_logits(m, "split"), "gguf-split: logits differ");
    pl_memory_stats s;
    pl_memory_snapshot(&s);
    CHECK(s.weights_copied < (int64_t)(4 << 20), "only the synthesized header is copied: %lld", (long long)s.weights_copied);
    pl_model_free(m);
    /* merge(split(x)) == x */
    gguf_file *merged;
    REQUIRE(gguf_open_any(second, NULL, &merged) == PL_OK, "%s", pl_last_error());
    const char *out = tmp_path("merged.gguf");
    REQUIRE(gguf_write_merged(merged, out) == PL_OK, "%s", pl_last_error());
    gguf_close(merged);
    size_t na, nb;
    uint8_t *a = read_all(g_model, &na), *b = read_all(out, &nb);
    CHECK(a && b && na == nb && memcmp(a, b, na) == 0, "merged file differs from the original (%zu vs %zu bytes)", na, nb);
    free(a);
    free(b);
    /* by size instead of count */
    REQUIRE(gguf_open(g_model, &f) == PL_OK, "%s", pl_last_error());
    int n2 = 0;
    REQUIRE(gguf_write_split(f, tmp_path("bysize"), 0, 8u << 20, &n2) == PL_OK, "%s", pl_last_error());
    gguf_close(f);
    CHECK(n2 >= 3, "8 MiB splits of a 23 MiB model: %d", n2);
    char first[1024];
    snprintf(first, sizeof first, "%s-%05d-of-%05d.gguf", tmp_path("bysize"), 1, n2);
    REQUIRE(pl_model_load(first, &g_lp, &m) == PL_OK, "%s", pl_last_error());
    CHECK(same_logits(m, "split by size"), "logits differ");
    pl_model_free(m);
    /* a flipped byte in one piece: --verify refuses it */
    snprintf(first, sizeof first, "%s-%05d-of-%05d.gguf", prefix, n, n);
    FILE *fp = fopen(first, "r+b");
    REQUIRE(fp, "open %s", first);
    fseek(fp, -5, SEEK_END);
    int ch = fgetc(fp);
    fseek(fp, -5, SEEK_END);
    fputc(ch ^ 1, fp);
    fclose(fp);
    pl_status st = pl_model_load(second, &mp, &m);
    CHECK(st == PL_ERR_FORMAT && strstr(pl_last_error(), "SHA-256 mismatch"), "flipped byte: %s: %s", pl_status_name(st),
          pl_last_error());
    /* a missing piece */
    remove(first);
    st = pl_model_load(second, &g_lp, &m);
    CHECK(st == PL_ERR_IO && m == NULL, "missing split: %s", pl_status_name(st));
    /* no sidecar: nothing to check against */
    char side[1024];
    snprintf(side, sizeof side, "%s.sha256", prefix);
    remove(side);
    st = pl_model_load(second, &mp, &m);
    CHECK(st == PL_ERR_INVALID_ARG, "verify without sums: %s", pl_status_name(st));
}

/* ------------------------------------------------------------ policies */

static void test_no_mmap_mlock_advice(void) {
    pl_model_params mp = load_params();
    pl_model *m = NULL;
    mp.no_mmap = 1;
    const int64_t c0 = copied_now();
    REQUIRE(pl_model_load(g_model, &mp, &m) == PL_OK, "%s", pl_last_error());
    size_t n;
    free(read_all(g_model, &n));
    CHECK(copied_now() - c0 >= (int64_t)n, "no_mmap copies the image: %lld", (long long)(copied_now() - c0));
    CHECK(same_logits(m, "no_mmap"), "no_mmap: logits differ");
    pl_model_free(m);
    CHECK(copied_now() == c0, "the copy is returned");
    mp = load_params();
    mp.mlock = 1;
    pl_status st = pl_model_load(g_model, &mp, &m);
    if (st == PL_OK) {
        pl_memory_stats s;
        pl_memory_snapshot(&s);
        /* locked pages are resident (AddressSanitizer makes mlock a no-op) */
        CHECK(s.weights_locked >= (int64_t)n && (getenv("PL_ASAN") || s.weights_resident >= (int64_t)n),
              "locked %lld resident %lld", (long long)s.weights_locked, (long long)s.weights_resident);
        CHECK(same_logits(m, "mlock"), "mlock: logits differ");
        pl_model_free(m);
    } else {
        CHECK(st == PL_ERR_BUDGET && strstr(pl_last_error(), "RLIMIT_MEMLOCK"), "mlock refused unclearly: %s",
              pl_last_error());
    }
    for (int a = PL_ADVICE_NORMAL; a <= PL_ADVICE_SEQUENTIAL; a++) {
        mp = load_params();
        mp.advice = a;
        REQUIRE(pl_model_load(g_model, &mp, &m) == PL_OK, "advice %d: %s", a, pl_last_error());
        CHECK(same_logits(m, "advice"), "advice %d: logits differ", a);
        pl_model_free(m);
    }
    mp.advice = 9;
    CHECK(pl_model_load(g_model, &mp, &m) == PL_ERR_INVALID_ARG, "unknown advice");
    /* the plan counts locked pages: the whole image resident */
    mp = load_params();
    mp.mlock = 1;
    pl_plan p;
    REQUIRE(pl_plan_file(g_model, &mp, NULL, &p) == PL_OK, "%s", pl_last_error());
    CHECK(p.weights_locked == p.file_bytes && p.weights_resident == p.file_bytes, "plan: locked %lld of %lld",
          (long long)p.weights_locked, (long long)p.file_bytes);
}

/* In a child without CAP_IPC_LOCK and with a 1 MiB RLIMIT_MEMLOCK, --mlock
 * is refused: a clean PL_ERR_BUDGET naming the limit (exit 10). */
static int child_mlock(void) {
    struct __user_cap_header_struct h = {_LINUX_CAPABILITY_VERSION_3, 0};
    struct __user_cap_data_struct d[2];
    if (syscall(SYS_capget, &h, d) == 0) {
        d[0].effective &= ~(1u << CAP_IPC_LOCK);
        d[0].permitted &= ~(1u << CAP_IPC_LOCK);
        if (syscall(SYS_capset, &h, d) != 0) return 97;
    }
    struct rlimit rl = {1 << 20, 1 << 20};
    if (setrlimit(RLIMIT_MEMLOCK, &rl) != 0) return 98;
    pl_model_params mp = load_params();
    mp.mlock = 1;
    pl_model *m = NULL;
    pl_status st = pl_model_load(g_model, &mp, &m);
    pl_model_free(m);
    if (st == PL_ERR_BUDGET && strstr(pl_last_error(), "RLIMIT_MEMLOCK") && strstr(pl_last_error(), "1.0 MiB")) return 10;
    fprintf(stderr, "   child: %s: %s\n", pl_status_name(st), pl_last_error());
    return st == PL_OK ? 0 : 20;
}

static void test_mlock_refused_is_clean(void) {
    if (getenv("PL_ASAN")) SKIP("AddressSanitizer turns mlock into a no-op");
    fflush(stdout);
    pid_t pid = fork();
    REQUIRE(pid >= 0, "fork");
    if (pid == 0) _exit(child_mlock());
    int status;
    REQUIRE(waitpid(pid, &status, 0) == pid, "wait");
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 10, "child status %d", status);
}

int main(void) {
    g_model = shared_path("models/kjv-llama-q8_0.gguf");
    if (!g_model) {
        printf("skip: ../shared/models/kjv-llama-q8_0.gguf not found\n0 passed, 0 failed, 1 skipped\n");
        return 0;
    }
    snprintf(g_tmp, sizeof g_tmp, "%s/pl_test_load_XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    if (!mkdtemp(g_tmp)) {
        perror("mkdtemp");
        return 1;
    }
    pl_model *m = NULL;
    g_lp = load_params();
    if (pl_model_load(g_model, &g_lp, &m) != PL_OK || !(g_ref = logits_of(m))) {
        fprintf(stderr, "reference load failed: %s\n", pl_last_error());
        return 1;
    }
    g_nv = pl_model_n_vocab(m);
    pl_model_free(m);
    RUN(test_sha256_nist_vectors);
    RUN(test_offset_and_fd_bit_identical);
    RUN(test_raw_chunks);
    RUN(test_gguf_split_and_merge);
    RUN(test_no_mmap_mlock_advice);
    RUN(test_mlock_refused_is_clean);
    free(g_ref);
    char cmd[700];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_tmp);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", g_tmp);
    TEST_END();
}
