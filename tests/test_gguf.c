/*
 * GGUF reader/writer tests.
 *   - round trip: every metadata type, arrays, tensors of several types and
 *     shapes written, read back and compared byte for byte; streaming and
 *     copy-through writes must reproduce the same bytes;
 *   - the real files in ../shared (written by llama.cpp, not by us): known
 *     hyper-parameters, tensor layout exactly as ggml lays it out, and our
 *     writer reproducing such a file byte for byte;
 *   - corrupt inputs derived from valid images: every one is PL_ERR_FORMAT (or
 *     UNSUPPORTED where stated) with a message naming the problem, never a crash.
 */
#include "gguf/gguf.h"
#include "test.h"

#include <inttypes.h>
#include <unistd.h>

/* ------------------------------------------------------------ helpers */

/* A call that must succeed; on failure the case ends, naming the call and pl_last_error(). */
#define REQUIRE_OK(call)                                                            \
    do {                                                                            \
        pl_status st_ = (call);                                                     \
        REQUIRE(st_ == PL_OK, "%s: %s", #call, pl_last_error());                    \
    } while (0)

static uint8_t *read_all(const char *path, size_t *n) {
    FILE *fp = fopen(path, "rb");
    if (!fp) return NULL;
    fseek(fp, 0, SEEK_END);
    long len = ftell(fp);
    fseek(fp, 0, SEEK_SET);
    uint8_t *buf = malloc(len > 0 ? (size_t)len : 1);
    if (buf && fread(buf, 1, (size_t)len, fp) != (size_t)len) {
        free(buf);
        buf = NULL;
    }
    fclose(fp);
    *n = (size_t)len;
    return buf;
}

static char *tmp_file(void) {
    const char *dir = getenv("TMPDIR");
    char *p = malloc(4096);
    snprintf(p, 4096, "%s/pl_test_gguf_XXXXXX", dir ? dir : "/tmp");
    int fd = mkstemp(p);
    if (fd < 0) {
        free(p);
        return NULL;
    }
    close(fd);
    return p;
}

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static uint8_t rnd8(void) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint8_t)(rng_state >> 24);
}

static uint64_t rd64(const uint8_t *p) {
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}
static void wr32(uint8_t *p, uint32_t v) { memcpy(p, &v, 4); }
static void wr64(uint8_t *p, uint64_t v) { memcpy(p, &v, 8); }

static uint64_t pad32(uint64_t n, uint64_t a) { return (n + a - 1) / a * a; }

/* Parses an exact-size copy of img (so ASan sees any overread) and checks the
 * status and that the message names the image and contains `needle`. */
static int expect_fail(const uint8_t *img, size_t n, pl_status want, const char *needle, const char *label) {
    uint8_t *copy = malloc(n ? n : 1);
    if (n) memcpy(copy, img, n);
    gguf_file *f = NULL;
    pl_status st = gguf_open_memory(copy, n, "corrupt.gguf", &f);
    const char *msg = pl_last_error();
    int ok = st == want && f == NULL && strstr(msg, "corrupt.gguf") && (!needle || strstr(msg, needle));
    if (!ok)
        fprintf(stderr, "  %s: got %s (want %s), message: %s (want '%s')\n", label, pl_status_name(st), pl_status_name(want),
                st ? msg : "-", needle ? needle : "");
    gguf_close(f);
    free(copy);
    return ok;
}

/* ------------------------------------------------------------ round trip */

typedef struct tensor_spec {
    const char *name;
    uint32_t type, n_dims;
    int64_t ne[4];
    uint64_t nbytes; /* from the block structs' sizes (ggml's layouts) */
} tensor_spec;

static const tensor_spec k_tensors[] = {
    {"f32.a", QT_F32, 2, {7, 3, 1, 1}, 7 * 3 * 4},
    {"f16.b", QT_F16, 1, {64, 1, 1, 1}, 64 * 2},
    {"q8_0.c", QT_Q8_0, 2, {64, 2, 1, 1}, 2 * 2 * sizeof(block_q8_0)},
    {"q4_0.d", QT_Q4_0, 3, {32, 3, 2, 1}, 6 * sizeof(block_q4_0)},
    {"q4_k.e", QT_Q4_K, 2, {256, 2, 1, 1}, 2 * sizeof(block_q4_K)},
    {"q6_k.f", QT_Q6_K, 4, {512, 1, 1, 2}, 4 * sizeof(block_q6_K)},
    {"bf16.g", QT_BF16, 1, {5, 1, 1, 1}, 10},
};
#define N_TENSORS (sizeof k_tensors / sizeof k_tensors[0])

static const uint8_t v_u8 = 200;
static const int8_t v_i8 = -100;
static const uint16_t v_u16 = 60000;
static const int16_t v_i16 = -30000;
static const uint32_t v_u32 = 4000000000u;
static const int32_t v_i32 = -2000000000;
static const float v_f32 = 3.25f;
static const bool v_bool = true;
static const char *const v_str = "h\xc3\xa9llo w\xc3\xb6rld";
static const uint64_t v_u64 = (1ull << 63) | 5;
static const int64_t v_i64 = INT64_MIN;
static const double v_f64 = -1e300;

static const uint8_t a_u8[] = {0, 1, 255, 7, 9};
static const int8_t a_i8[] = {-128, 127, 0, -1, 5};
static const uint16_t a_u16[] = {0, 65535, 3, 4, 5};
static const int16_t a_i16[] = {-32768, 32767, 0, -2, 6};
static const uint32_t a_u32[] = {0, 4294967295u, 3, 4, 5};
static const int32_t a_i32[] = {INT32_MIN, INT32_MAX, 0, -3, 7};
static const float a_f32[] = {1.5f, -2.25f, 0.0f, 1e-30f, 3e30f};
static const bool a_bool[] = {true, false, true, true, false};
static const uint64_t a_u64[] = {0, UINT64_MAX, 3, 4, 5};
static const int64_t a_i64[] = {INT64_MIN, INT64_MAX, 0, -4, 8};
static const double a_f64[] = {1e300, -1e-300, 0.5, 2, 3};
static const char *const a_str[] = {"", "a", "\xc3\xbc" "n\xc3\xaf" "code", "with\nnewline", "x"};

typedef struct arr_spec {
    const char *key;
    gguf_type type;
    const void *data;
    uint64_t n, esz;
} arr_spec;

static const arr_spec k_arrays[] = {
    {"arr.u8", GGUF_TYPE_UINT8, a_u8, 5, 1},      {"arr.i8", GGUF_TYPE_INT8, a_i8, 5, 1},
    {"arr.u16", GGUF_TYPE_UINT16, a_u16, 5, 2},   {"arr.i16", GGUF_TYPE_INT16, a_i16, 5, 2},
    {"arr.u32", GGUF_TYPE_UINT32, a_u32, 5, 4},   {"arr.i32", GGUF_TYPE_INT32, a_i32, 5, 4},
    {"arr.f32", GGUF_TYPE_FLOAT32, a_f32, 5, 4},  {"arr.bool", GGUF_TYPE_BOOL, a_bool, 5, 1},
    {"arr.u64", GGUF_TYPE_UINT64, a_u64, 5, 8},   {"arr.i64", GGUF_TYPE_INT64, a_i64, 5, 8},
    {"arr.f64", GGUF_TYPE_FLOAT64, a_f64, 5, 8},  {"arr.str", GGUF_TYPE_STRING, a_str, 5, 0},
    {"arr.empty", GGUF_TYPE_UINT32, a_u32, 0, 4}, {"arr.empty_str", GGUF_TYPE_STRING, a_str, 0, 0},
};
#define N_ARRAYS (sizeof k_arrays / sizeof k_arrays[0])

typedef struct scalar_spec {
    const char *key;
    gguf_type type;
    const void *v;
    uint64_t size;
} scalar_spec;

static const scalar_spec k_scalars[] = {
    {"val.u8", GGUF_TYPE_UINT8, &v_u8, 1},      {"val.i8", GGUF_TYPE_INT8, &v_i8, 1},
    {"val.u16", GGUF_TYPE_UINT16, &v_u16, 2},   {"val.i16", GGUF_TYPE_INT16, &v_i16, 2},
    {"val.u32", GGUF_TYPE_UINT32, &v_u32, 4},   {"val.i32", GGUF_TYPE_INT32, &v_i32, 4},
    {"val.f32", GGUF_TYPE_FLOAT32, &v_f32, 4},  {"val.bool", GGUF_TYPE_BOOL, &v_bool, 1},
    {"val.str", GGUF_TYPE_STRING, &v_str, 0},   {"val.u64", GGUF_TYPE_UINT64, &v_u64, 8},
    {"val.i64", GGUF_TYPE_INT64, &v_i64, 8},    {"val.f64", GGUF_TYPE_FLOAT64, &v_f64, 8},
};
#define N_SCALARS (sizeof k_scalars / sizeof k_scalars[0])

static uint8_t *g_tdata[N_TENSORS];

/* The writer used by the round trip; alignment 0 = leave the default. */
static gguf_writer *build_writer(uint32_t alignment) {
    gguf_writer *w = gguf_writer_new();
    int bad = 0;
    if (!w) return NULL;
    if (alignment) bad |= gguf_writer_set_u32(w, "general.alignment", alignment) != PL_OK;
    bad |= gguf_writer_set_str(w, "general.architecture", "test");
    for (size_t i = 0; i < N_SCALARS; i++)
        bad |= gguf_writer_set_val(w, k_scalars[i].key, k_scalars[i].type, k_scalars[i].v) != PL_OK;
    for (size_t i = 0; i < N_ARRAYS; i++)
        bad |= gguf_writer_set_arr(w, k_arrays[i].key, k_arrays[i].type, k_arrays[i].data, k_arrays[i].n) != PL_OK;
    bad |= gguf_writer_set_u32(w, "typed.u32", 7) != PL_OK;
    bad |= gguf_writer_set_i32(w, "typed.i32", -7) != PL_OK;
    bad |= gguf_writer_set_u64(w, "typed.u64", 1ull << 40) != PL_OK;
    bad |= gguf_writer_set_f32(w, "typed.f32", 0.5f) != PL_OK;
    bad |= gguf_writer_set_bool(w, "typed.bool", false) != PL_OK;
    bad |= gguf_writer_set_str(w, "typed.str", "first") != PL_OK;
    bad |= gguf_writer_set_str(w, "typed.str", "second value") != PL_OK; /* replaces, keeps position */
    for (size_t i = 0; i < N_TENSORS; i++) {
        const tensor_spec *t = &k_tensors[i];
        if (!g_tdata[i]) {
            g_tdata[i] = malloc(t->nbytes);
            for (uint64_t k = 0; k < t->nbytes; k++) g_tdata[i][k] = rnd8();
        }
        bad |= gguf_writer_add_tensor(w, t->name, t->type, t->n_dims, t->ne, g_tdata[i]) != PL_OK;
    }
    if (bad) {
        fprintf(stderr, "  building the writer failed: %s\n", pl_last_error());
        gguf_writer_free(w);
        return NULL;
    }
    return w;
}

/* Everything the writer was given is in f, byte for byte. */
static void check_contents(const gguf_file *f, uint64_t alignment) {
    CHECK(f->version == 3, "version %u", f->version);
    CHECK(f->alignment == alignment, "alignment %" PRIu64, f->alignment);
    CHECK(f->n_kv == 1 + N_SCALARS + N_ARRAYS + 6 + (alignment != GGUF_DEFAULT_ALIGNMENT), "n_kv %" PRIu64, f->n_kv);
    for (size_t i = 0; i < N_SCALARS; i++) {
        const scalar_spec *s = &k_scalars[i];
        const gguf_kv *kv = gguf_get_kv(f, s->key);
        REQUIRE(kv, "key %s missing", s->key);
        CHECK(kv->type == s->type, "%s type %d", s->key, kv->type);
        if (s->type == GGUF_TYPE_STRING) {
            CHECK(kv->strs && gguf_str_eq(kv->strs[0], v_str), "%s", s->key);
        } else if (s->type == GGUF_TYPE_BOOL) {
            CHECK(kv->data[0] == 1, "%s", s->key);
        } else {
            CHECK(!memcmp(kv->data, s->v, s->size), "%s bytes differ", s->key);
        }
    }
    for (size_t i = 0; i < N_ARRAYS; i++) {
        const arr_spec *a = &k_arrays[i];
        const gguf_kv *kv = gguf_get_kv(f, a->key);
        REQUIRE(kv, "key %s missing", a->key);
        CHECK(kv->type == GGUF_TYPE_ARRAY && kv->arr_type == a->type && kv->arr_n == a->n, "%s: %d %d %" PRIu64, a->key,
              kv->type, kv->arr_type, kv->arr_n);
        if (a->type == GGUF_TYPE_STRING) {
            for (uint64_t k = 0; k < a->n; k++)
                CHECK(gguf_str_eq(kv->strs[k], ((const char *const *)a->data)[k]), "%s[%" PRIu64 "]", a->key, k);
        } else if (a->type == GGUF_TYPE_BOOL) {
            for (uint64_t k = 0; k < a->n; k++) CHECK(kv->data[k] == (a_bool[k] ? 1 : 0), "%s[%" PRIu64 "]", a->key, k);
        } else if (a->n) {
            CHECK(!memcmp(kv->data, a->data, a->n * a->esz), "%s bytes differ", a->key);
        }
    }
    /* the replaced key kept its first position: right after typed.bool */
    int64_t ib = gguf_find_key(f, "typed.bool"), is = gguf_find_key(f, "typed.str");
    CHECK(ib >= 0 && is == ib + 1, "typed.str at %" PRId64 ", typed.bool at %" PRId64, is, ib);
    gguf_str s;
    CHECK(gguf_get_str(f, "typed.str", &s) == PL_OK && gguf_str_eq(s, "second value"), "replaced value");

    REQUIRE(f->n_tensors == N_TENSORS, "n_tensors %" PRIu64, f->n_tensors);
    CHECK(f->data_offset % alignment == 0, "data_offset %" PRIu64, f->data_offset);
    uint64_t expect_off = 0;
    for (size_t i = 0; i < N_TENSORS; i++) {
        const tensor_spec *t = &k_tensors[i];
        const gguf_tensor *gt = gguf_find_tensor(f, t->name);
        REQUIRE(gt, "tensor %s missing", t->name);
        CHECK(gt == &f->tensors[i], "%s: order", t->name);
        CHECK(gt->type == t->type && gt->n_dims == t->n_dims, "%s type/n_dims", t->name);
        for (int d = 0; d < 4; d++) CHECK(gt->ne[d] == t->ne[d], "%s ne[%d] = %" PRId64, t->name, d, gt->ne[d]);
        CHECK(gt->nbytes == t->nbytes, "%s nbytes %" PRIu64 " want %" PRIu64, t->name, gt->nbytes, t->nbytes);
        CHECK(gt->offset == expect_off, "%s offset %" PRIu64 " want %" PRIu64, t->name, gt->offset, expect_off);
        CHECK((const uint8_t *)gt->data == f->base + f->data_offset + gt->offset, "%s data pointer", t->name);
        CHECK(!memcmp(gt->data, g_tdata[i], t->nbytes), "%s data differs", t->name);
        expect_off += pad32(t->nbytes, alignment);
    }
    CHECK(f->size == f->data_offset + expect_off, "file size %" PRIu64 " want %" PRIu64, f->size, f->data_offset + expect_off);
    CHECK(gguf_find_tensor(f, "nope") == NULL, "absent tensor found");
    CHECK(gguf_find_key(f, "nope") == -1, "absent key found");
}

static void test_roundtrip(void) {
    char *p1 = tmp_file(), *p2 = tmp_file(), *p3 = tmp_file();
    REQUIRE(p1 && p2 && p3, "mkstemp");
    gguf_writer *w = build_writer(0);
    REQUIRE(w, "writer");
    REQUIRE_OK(gguf_writer_write_file(w, p1));

    /* the header fields where the GGUF spec puts them */
    size_t n1;
    uint8_t *b1 = read_all(p1, &n1);
    REQUIRE(b1 && n1 > 24, "read back");
    CHECK(!memcmp(b1, "GGUF", 4), "magic");
    CHECK(b1[4] == 3 && b1[5] == 0 && b1[6] == 0 && b1[7] == 0, "version bytes");
    CHECK(rd64(b1 + 8) == N_TENSORS, "n_tensors field");
    CHECK(rd64(b1 + 16) == 1 + N_SCALARS + N_ARRAYS + 6, "n_kv field");
    CHECK(rd64(b1 + 24) == strlen("general.architecture") && !memcmp(b1 + 32, "general.architecture", 20), "first key");

    gguf_file *f = NULL;
    REQUIRE_OK(gguf_open(p1, &f));
    CHECK(f->map != NULL && f->size == n1 && !strcmp(f->path, p1), "mapping");
    check_contents(f, GGUF_DEFAULT_ALIGNMENT);

    /* streaming mode writes the same bytes */
    FILE *fp = fopen(p2, "wb");
    REQUIRE(fp, "fopen");
    CHECK(gguf_writer_write_header(w, fp) == PL_OK, "header: %s", pl_last_error());
    for (uint64_t i = 0; i < N_TENSORS; i++)
        CHECK(gguf_writer_write_tensor_data(w, fp, i, g_tdata[i]) == PL_OK, "tensor %" PRIu64 ": %s", i, pl_last_error());
    fclose(fp);
    size_t n2;
    uint8_t *b2 = read_all(p2, &n2);
    CHECK(b2 && n2 == n1 && !memcmp(b1, b2, n1), "streaming output differs from write_file");

    /* copying everything out of the parsed file reproduces it */
    gguf_writer *w2 = gguf_writer_new();
    CHECK(gguf_writer_copy_kv(w2, f, NULL) == PL_OK, "copy_kv: %s", pl_last_error());
    for (uint64_t i = 0; i < f->n_tensors; i++) {
        const gguf_tensor *t = &f->tensors[i];
        char *name = gguf_str_dup(t->name);
        CHECK(gguf_writer_add_tensor(w2, name, t->type, t->n_dims, t->ne, t->data) == PL_OK, "%s", pl_last_error());
        free(name);
    }
    CHECK(gguf_writer_write_file(w2, p3) == PL_OK, "write copy: %s", pl_last_error());
    size_t n3;
    uint8_t *b3 = read_all(p3, &n3);
    CHECK(b3 && n3 == n1 && !memcmp(b1, b3, n1), "copy-through output differs");

    /* a v2 file has the same layout: patching the version keeps it readable */
    b1[4] = 2;
    gguf_file *f2 = NULL;
    CHECK(gguf_open_memory(b1, n1, "v2", &f2) == PL_OK && f2->version == 2 && f2->n_tensors == N_TENSORS, "v2: %s",
          pl_last_error());
    gguf_close(f2);

    gguf_close(f);
    gguf_writer_free(w);
    gguf_writer_free(w2);
    free(b1);
    free(b2);
    free(b3);
    remove(p1);
    remove(p2);
    remove(p3);
    free(p1);
    free(p2);
    free(p3);
}

static void test_alignment_64(void) {
    char *p = tmp_file();
    REQUIRE(p, "mkstemp");
    gguf_writer *w = build_writer(64);
    REQUIRE(w, "writer");
    REQUIRE_OK(gguf_writer_write_file(w, p));
    gguf_file *f = NULL;
    REQUIRE_OK(gguf_open(p, &f));
    check_contents(f, 64);
    uint32_t a = 0;
    CHECK(gguf_get_u32(f, "general.alignment", &a) == PL_OK && a == 64, "alignment key");
    gguf_close(f);
    CHECK(gguf_writer_set_u32(w, "general.alignment", 48) == PL_ERR_INVALID_ARG, "alignment 48 accepted");
    CHECK(gguf_writer_set_u32(w, "general.alignment", 0) == PL_ERR_INVALID_ARG, "alignment 0 accepted");
    CHECK(gguf_writer_set_str(w, "general.alignment", "32") == PL_ERR_INVALID_ARG, "string alignment accepted");
    gguf_writer_free(w);
    remove(p);
    free(p);
}

/* A file without tensors has nothing to align: the writer ends it after the
 * header whatever general.alignment says (2^30 here; padding would write a
 * GiB of zeros, as the GGUF fuzz target found), and the reader accepts it. */
static void test_alignment_no_tensors(void) {
    char *p = tmp_file();
    REQUIRE(p, "mkstemp");
    gguf_writer *w = gguf_writer_new();
    REQUIRE(w, "writer");
    REQUIRE_OK(gguf_writer_set_u32(w, "general.alignment", 1u << 30));
    REQUIRE_OK(gguf_writer_set_str(w, "general.architecture", "llama"));
    REQUIRE_OK(gguf_writer_write_file(w, p));
    gguf_file *f = NULL;
    REQUIRE_OK(gguf_open(p, &f));
    uint32_t a = 0;
    CHECK(f->n_tensors == 0 && f->alignment == 1u << 30, "alignment %" PRIu64, f->alignment);
    CHECK(gguf_get_u32(f, "general.alignment", &a) == PL_OK && a == 1u << 30, "alignment key");
    /* header 24 + key/values (8 + 17 + 4 + 4) + (8 + 20 + 4 + 8 + 5), no padding */
    CHECK(f->size == 24 + 33 + 45 && f->data_offset == f->size, "size %" PRIu64 ", data_offset %" PRIu64, f->size,
          f->data_offset);
    gguf_close(f);
    gguf_writer_free(w);
    remove(p);
    free(p);
}

static void test_getters(void) {
    char *p = tmp_file();
    REQUIRE(p, "mkstemp");
    gguf_writer *w = build_writer(0);
    REQUIRE(w, "writer");
    REQUIRE_OK(gguf_writer_write_file(w, p));
    gguf_file *f = NULL;
    REQUIRE_OK(gguf_open(p, &f));
    uint32_t u = 0;
    int64_t i = 0;
    float x = 0;
    bool b = false;
    gguf_str s;
    CHECK(gguf_get_u32(f, "val.u8", &u) == PL_OK && u == 200, "u32 from u8");
    CHECK(gguf_get_u32(f, "val.u16", &u) == PL_OK && u == 60000, "u32 from u16");
    CHECK(gguf_get_u32(f, "val.u32", &u) == PL_OK && u == v_u32, "u32");
    CHECK(gguf_get_u32(f, "typed.u64", &u) == PL_ERR_FORMAT && strstr(pl_last_error(), "typed.u64"), "u64 2^40 fits u32?");
    CHECK(gguf_get_u32(f, "val.i8", &u) == PL_ERR_FORMAT && strstr(pl_last_error(), "val.i8"), "negative into u32");
    CHECK(gguf_get_u32(f, "val.f32", &u) == PL_ERR_FORMAT && strstr(pl_last_error(), "float32"), "float as int");
    CHECK(gguf_get_u32(f, "arr.u32", &u) == PL_ERR_FORMAT && strstr(pl_last_error(), "array"), "array as int");
    CHECK(gguf_get_u32(f, "missing.key", &u) == PL_ERR_FORMAT && strstr(pl_last_error(), "missing.key"), "absent key");
    CHECK(gguf_get_i64(f, "val.i8", &i) == PL_OK && i == -100, "i64 from i8");
    CHECK(gguf_get_i64(f, "val.i64", &i) == PL_OK && i == INT64_MIN, "i64 min");
    CHECK(gguf_get_i64(f, "val.u32", &i) == PL_OK && i == 4000000000LL, "i64 from u32");
    CHECK(gguf_get_i64(f, "val.u64", &i) == PL_ERR_FORMAT, "u64 2^63+5 into i64");
    CHECK(gguf_get_f32(f, "val.f32", &x) == PL_OK && x == 3.25f, "f32");
    CHECK(gguf_get_f32(f, "typed.f32", &x) == PL_OK && x == 0.5f, "typed f32");
    CHECK(gguf_get_f32(f, "val.f64", &x) == PL_ERR_FORMAT && strstr(pl_last_error(), "val.f64"), "-1e300 into f32");
    CHECK(gguf_get_f32(f, "val.u8", &x) == PL_ERR_FORMAT, "int as float");
    CHECK(gguf_get_bool(f, "val.bool", &b) == PL_OK && b, "bool");
    CHECK(gguf_get_bool(f, "typed.bool", &b) == PL_OK && !b, "typed bool");
    CHECK(gguf_get_bool(f, "val.u8", &b) == PL_ERR_FORMAT, "u8 as bool");
    CHECK(gguf_get_str(f, "val.str", &s) == PL_OK && gguf_str_eq(s, v_str), "str");
    CHECK(gguf_get_str(f, "val.u8", &s) == PL_ERR_FORMAT, "u8 as str");
    CHECK(gguf_get_u32_or(f, "missing", 17) == 17 && gguf_get_u32_or(f, "typed.u32", 17) == 7, "u32_or");
    CHECK(gguf_get_f32_or(f, "missing", 2.5f) == 2.5f && gguf_get_f32_or(f, "typed.f32", 2.5f) == 0.5f, "f32_or");
    CHECK(gguf_get_bool_or(f, "missing", true) && !gguf_get_bool_or(f, "typed.bool", true), "bool_or");
    const gguf_kv *ai = gguf_get_kv(f, "arr.i16"), *af = gguf_get_kv(f, "arr.f32"), *a64 = gguf_get_kv(f, "arr.u64");
    REQUIRE(ai && af && a64, "arrays");
    for (uint64_t k = 0; k < 5; k++) {
        CHECK(gguf_arr_int(ai, k) == a_i16[k], "arr.i16[%" PRIu64 "]", k);
        CHECK(gguf_arr_f32(af, k) == a_f32[k], "arr.f32[%" PRIu64 "]", k);
    }
    CHECK(gguf_arr_int(a64, 1) == INT64_MAX, "u64 max saturates");
    CHECK(gguf_arr_int(ai, 5) == 0 && gguf_arr_f32(af, 99) == 0.0f, "out of range index");
    char *dup = gguf_str_dup(s);
    CHECK(dup && !strcmp(dup, v_str), "str_dup");
    free(dup);
    CHECK(!strcmp(gguf_type_name(GGUF_TYPE_FLOAT64), "float64") && !strcmp(gguf_type_name((gguf_type)99), "unknown"),
          "type names");
    gguf_close(f);
    gguf_writer_free(w);
    remove(p);
    free(p);
}

static void test_writer_errors(void) {
    gguf_writer *w = gguf_writer_new();
    REQUIRE(w, "writer");
    int64_t ne[2] = {32, 2}, bad_ne[2] = {33, 1}, zero_ne[2] = {0, 1};
    static uint8_t buf[2 * 34];
    CHECK(gguf_writer_add_tensor(w, "a", QT_Q8_0, 2, ne, buf) == PL_OK, "%s", pl_last_error());
    CHECK(gguf_writer_add_tensor(w, "a", QT_Q8_0, 2, ne, buf) == PL_ERR_INVALID_ARG && strstr(pl_last_error(), "duplicate"),
          "duplicate tensor");
    CHECK(gguf_writer_add_tensor(w, "b", QT_Q8_0, 2, bad_ne, buf) == PL_ERR_INVALID_ARG && strstr(pl_last_error(), "block"),
          "row not a block multiple");
    CHECK(gguf_writer_add_tensor(w, "c", QT_F32, 2, zero_ne, buf) == PL_ERR_INVALID_ARG, "zero dim");
    CHECK(gguf_writer_add_tensor(w, "d", 99, 2, ne, buf) == PL_ERR_INVALID_ARG && strstr(pl_last_error(), "99"), "type 99");
    CHECK(gguf_writer_add_tensor(w, "e", QT_F32, 5, ne, buf) == PL_ERR_INVALID_ARG, "n_dims 5");
    CHECK(gguf_writer_add_tensor(w, "later", QT_F32, 1, ne, NULL) == PL_OK, "no data yet");
    CHECK(gguf_writer_set_arr(w, "nested", GGUF_TYPE_ARRAY, buf, 1) == PL_ERR_INVALID_ARG, "array of arrays");
    CHECK(gguf_writer_write_file(w, "/nonexistent-dir/x.gguf") == PL_ERR_INVALID_ARG && strstr(pl_last_error(), "later"),
          "write_file with a tensor lacking data");

    /* streaming: order is enforced */
    FILE *fp = tmpfile();
    REQUIRE(fp, "tmpfile");
    CHECK(gguf_writer_write_tensor_data(w, fp, 0, buf) == PL_ERR_INVALID_ARG, "data before header");
    CHECK(gguf_writer_write_header(w, fp) == PL_OK, "%s", pl_last_error());
    CHECK(gguf_writer_write_tensor_data(w, fp, 1, buf) == PL_ERR_INVALID_ARG && strstr(pl_last_error(), "order"), "order");
    CHECK(gguf_writer_write_tensor_data(w, fp, 0, buf) == PL_OK, "%s", pl_last_error());
    CHECK(gguf_writer_write_tensor_data(w, fp, 1, NULL) == PL_ERR_INVALID_ARG && strstr(pl_last_error(), "later"), "no data");
    CHECK(gguf_writer_set_u32(w, "late", 1) == PL_ERR_INVALID_ARG, "key after header");
    fclose(fp);
    gguf_writer_free(w);

    /* I/O failures name the file */
    w = gguf_writer_new();
    CHECK(gguf_writer_add_tensor(w, "a", QT_Q8_0, 2, ne, buf) == PL_OK, "%s", pl_last_error());
    CHECK(gguf_writer_write_file(w, "/nonexistent-dir/x.gguf") == PL_ERR_IO &&
              strstr(pl_last_error(), "/nonexistent-dir/x.gguf"),
          "bad directory: %s", pl_last_error());
    struct stat sb;
    if (stat("/dev/full", &sb) == 0) {
        CHECK(gguf_writer_write_file(w, "/dev/full") == PL_ERR_IO && strstr(pl_last_error(), "/dev/full"), "/dev/full: %s",
              pl_last_error());
        CHECK(stat("/dev/full", &sb) == 0 && S_ISCHR(sb.st_mode), "the writer removed /dev/full");
    }
    gguf_writer_free(w);
}

/* ------------------------------------------------------------ real files */

/* Tensors lie inside the file, in ggml's layout: each at the previous one's
 * end rounded up to the alignment, the file ending with the last one padded.
 * Returns the total parameter count. */
static uint64_t check_layout(const gguf_file *f, const char *name) {
    uint64_t end = 0, params = 0;
    CHECK(f->data_offset % f->alignment == 0 || f->n_tensors == 0, "%s: data_offset", name);
    for (uint64_t i = 0; i < f->n_tensors; i++) {
        const gguf_tensor *t = &f->tensors[i];
        const uint8_t *d = t->data;
        CHECK(d >= f->base + f->data_offset && d + t->nbytes <= f->base + f->size, "%s: tensor %" PRIu64 " outside", name, i);
        uint64_t n = 1;
        for (int k = 0; k < 4; k++) n *= (uint64_t)t->ne[k];
        params += n;
        if (t->offset + t->nbytes > end) end = t->offset + t->nbytes;
    }
    /* sorted by offset, each tensor starts where the previous one's padding ends */
    uint64_t covered = 0;
    for (uint64_t i = 0; i < f->n_tensors; i++) {
        const gguf_tensor *next = NULL;
        for (uint64_t j = 0; j < f->n_tensors; j++)
            if (f->tensors[j].offset == covered) next = &f->tensors[j];
        CHECK(next, "%s: no tensor at data offset %" PRIu64, name, covered);
        if (!next) break;
        covered += pad32(next->nbytes, f->alignment);
    }
    if (f->n_tensors) CHECK(f->size == f->data_offset + pad32(end, f->alignment), "%s: file size vs layout", name);
    return params;
}

static uint32_t u32_of(const gguf_file *f, const char *key) {
    uint32_t v = 0;
    CHECK(gguf_get_u32(f, key, &v) == PL_OK, "%s", pl_last_error());
    return v;
}

typedef struct model_facts {
    const char *file, *arch;
    uint32_t n_embd, n_layer, n_head, n_head_kv, n_ff, file_type;
    uint64_t n_vocab, n_tensors;
    double params_lo, params_hi;
} model_facts;

/* From ../shared/README.md; file_type is llama.cpp's LLAMA_FTYPE (1 F16,
 * 2 Q4_0, 7 Q8_0, 15 Q4_K_M); tensor counts from the architectures: llama
 * 9 per layer + embedding, output norm, untied output; qwen2 adds 3 biases
 * per layer and ties the output to the embedding. */
static const model_facts k_models[] = {
    {"models/kjv-llama-f16.gguf", "llama", 256, 8, 8, 2, 768, 1, 32000, 8 * 9 + 3, 21.5e6, 22.5e6},
    {"models/kjv-llama-q8_0.gguf", "llama", 256, 8, 8, 2, 768, 7, 32000, 8 * 9 + 3, 21.5e6, 22.5e6},
    {"models/kjv-llama-q4_0.gguf", "llama", 256, 8, 8, 2, 768, 2, 32000, 8 * 9 + 3, 21.5e6, 22.5e6},
    {"models/kjv-llama-q4_k_m.gguf", "llama", 256, 8, 8, 2, 768, 15, 32000, 8 * 9 + 3, 21.5e6, 22.5e6},
    {"models/kjv-qwen2-f16.gguf", "qwen2", 0, 0, 0, 0, 0, 1, 32000, 0, 12.65e6, 12.75e6},
    {"models/kjv-qwen2-q8_0.gguf", "qwen2", 0, 0, 0, 0, 0, 7, 32000, 0, 12.65e6, 12.75e6},
    {"models/kjv-qwen2-q4_0.gguf", "qwen2", 0, 0, 0, 0, 0, 2, 32000, 0, 12.65e6, 12.75e6},
    {"models/kjv-qwen2-q4_k_m.gguf", "qwen2", 0, 0, 0, 0, 0, 15, 32000, 0, 12.65e6, 12.75e6},
    {"models/stories260K.gguf", "llama", 64, 5, 8, 4, 0, 0, 512, 5 * 9 + 3, 0.2e6, 0.3e6},
};

static void test_real_models(void) {
    int found = 0;
    for (size_t m = 0; m < sizeof k_models / sizeof k_models[0]; m++) {
        const model_facts *mf = &k_models[m];
        const char *path = shared_path(mf->file);
        if (!path) continue;
        found++;
        gguf_file *f = NULL;
        pl_status st = gguf_open(path, &f);
        CHECK(st == PL_OK, "%s: %s", mf->file, pl_last_error());
        if (st) continue;
        gguf_str arch;
        CHECK(gguf_get_str(f, "general.architecture", &arch) == PL_OK && gguf_str_eq(arch, mf->arch), "%s: arch", mf->file);
        char key[128];
#define HP(field, suffix)                                                                        \
    if (mf->field) {                                                                             \
        snprintf(key, sizeof key, "%s." suffix, mf->arch);                                       \
        CHECK(u32_of(f, key) == mf->field, "%s: %s = %u", mf->file, key, u32_of(f, key));        \
    }
        HP(n_embd, "embedding_length")
        HP(n_layer, "block_count")
        HP(n_head, "attention.head_count")
        HP(n_head_kv, "attention.head_count_kv")
        HP(n_ff, "feed_forward_length")
#undef HP
        if (mf->file_type) CHECK(u32_of(f, "general.file_type") == mf->file_type, "%s: file_type", mf->file);
        const gguf_kv *tok = gguf_get_kv(f, "tokenizer.ggml.tokens");
        CHECK(tok && tok->type == GGUF_TYPE_ARRAY && tok->arr_type == GGUF_TYPE_STRING && tok->arr_n == mf->n_vocab,
              "%s: vocab", mf->file);
        if (mf->n_tensors) CHECK(f->n_tensors == mf->n_tensors, "%s: %" PRIu64 " tensors", mf->file, f->n_tensors);
        double params = (double)check_layout(f, mf->file);
        CHECK(params >= mf->params_lo && params <= mf->params_hi, "%s: %.0f parameters", mf->file, params);
        const gguf_tensor *emb = gguf_find_tensor(f, "token_embd.weight");
        CHECK(emb && emb->ne[1] == (int64_t)mf->n_vocab, "%s: token_embd", mf->file);
        if (!strcmp(mf->arch, "qwen2")) {
            float base = 0;
            CHECK(gguf_get_f32(f, "qwen2.rope.freq_base", &base) == PL_OK && base == 1e6f, "%s: rope base", mf->file);
            CHECK(gguf_find_tensor(f, "blk.0.attn_q.bias") && !gguf_find_tensor(f, "output.weight"), "%s: biases, tied",
                  mf->file);
        } else {
            CHECK(gguf_find_tensor(f, "output.weight") != NULL, "%s: untied output", mf->file);
        }
        gguf_close(f);
    }
    if (!found) SKIP("../shared/models absent");
}

/* Our writer, fed a llama.cpp file's metadata and tensors, writes the same
 * bytes llama.cpp wrote (same layout rules, alignment, padding). */
static void test_rewrite_identical(void) {
    const char *files[] = {"models/stories260K.gguf", "models/kjv-llama-q4_k_m.gguf"};
    int found = 0;
    for (size_t k = 0; k < 2; k++) {
        const char *path = shared_path(files[k]);
        if (!path) continue;
        found++;
        gguf_file *f = NULL;
        REQUIRE_OK(gguf_open(path, &f));
        gguf_writer *w = gguf_writer_new();
        CHECK(gguf_writer_copy_kv(w, f, NULL) == PL_OK, "%s", pl_last_error());
        for (uint64_t i = 0; i < f->n_tensors; i++) {
            const gguf_tensor *t = &f->tensors[i];
            char *name = gguf_str_dup(t->name);
            CHECK(gguf_writer_add_tensor(w, name, t->type, t->n_dims, t->ne, k ? NULL : t->data) == PL_OK, "%s",
                  pl_last_error());
            free(name);
        }
        char *out = tmp_file();
        REQUIRE(out, "mkstemp");
        if (k == 0) {
            CHECK(gguf_writer_write_file(w, out) == PL_OK, "%s", pl_last_error());
        } else { /* streaming, data supplied per tensor */
            FILE *fp = fopen(out, "wb");
            CHECK(gguf_writer_set_path(w, out) == PL_OK && gguf_writer_write_header(w, fp) == PL_OK, "%s", pl_last_error());
            for (uint64_t i = 0; i < f->n_tensors; i++)
                CHECK(gguf_writer_write_tensor_data(w, fp, i, f->tensors[i].data) == PL_OK, "%s", pl_last_error());
            fclose(fp);
        }
        size_t n;
        uint8_t *b = read_all(out, &n);
        CHECK(b && n == f->size && !memcmp(b, f->base, n), "%s: rewritten bytes differ", files[k]);
        free(b);
        remove(out);
        free(out);
        gguf_writer_free(w);
        gguf_close(f);
    }
    if (!found) SKIP("../shared/models absent");
}

static void test_real_vocabs(void) {
    static const char *const names[] = {"llama-spm", "gpt-2", "falcon", "starcoder", "mpt", "deepseek-llm"};
    int found = 0;
    for (size_t k = 0; k < sizeof names / sizeof names[0]; k++) {
        char rel[128], rel_out[140];
        snprintf(rel, sizeof rel, "tokenizer/ggml-vocab-%s.gguf", names[k]);
        snprintf(rel_out, sizeof rel_out, "%s.out", rel);
        const char *path = shared_path(rel);
        if (!path) continue;
        found++;
        gguf_file *f = NULL;
        CHECK(gguf_open(path, &f) == PL_OK, "%s: %s", rel, pl_last_error());
        if (!f) continue;
        CHECK(f->n_tensors == 0, "%s: vocab-only file with tensors", rel);
        const gguf_kv *tok = gguf_get_kv(f, "tokenizer.ggml.tokens");
        REQUIRE(tok && tok->type == GGUF_TYPE_ARRAY && tok->arr_type == GGUF_TYPE_STRING, "%s: tokens", rel);
        gguf_str model;
        CHECK(gguf_get_str(f, "tokenizer.ggml.model", &model) == PL_OK, "%s: tokenizer model", rel);
        if (k == 0) CHECK(gguf_str_eq(model, "llama") && tok->arr_n == 32000, "llama-spm: %" PRIu64, tok->arr_n);
        if (k == 1) CHECK(gguf_str_eq(model, "gpt2") && tok->arr_n == 50257, "gpt-2: %" PRIu64, tok->arr_n);
        /* every id llama.cpp's tokenizer test expects is a token of this file */
        const char *outp = shared_path(rel_out);
        size_t n;
        char *txt = outp ? (char *)read_all(outp, &n) : NULL;
        if (txt) {
            txt = realloc(txt, n + 1);
            txt[n] = 0;
            long max_id = -1;
            for (char *q = txt; *q;) {
                char *e;
                long id = strtol(q, &e, 10);
                if (e == q) { q++; continue; }
                if (id > max_id) max_id = id;
                q = e;
            }
            CHECK(max_id >= 0 && (uint64_t)max_id < tok->arr_n, "%s: id %ld beyond %" PRIu64 " tokens", rel, max_id, tok->arr_n);
            free(txt);
        }
        gguf_close(f);
    }
    if (!found) SKIP("../shared/tokenizer absent");
}

/* ------------------------------------------------------------ corrupt input */

/* A small valid image with everything the corruptions need. */
static uint8_t *corrupt_base(size_t *n) {
    gguf_writer *w = gguf_writer_new();
    static const char *const strs[] = {"alpha", "beta", "gamma"};
    static uint8_t data[4096];
    int64_t ne_a[2] = {8, 2}, ne_b[2] = {32, 2}, ne_c[1] = {16};
    int bad = 0;
    bad |= gguf_writer_set_u32(w, "general.alignment", 32);
    bad |= gguf_writer_set_u32(w, "dup.aaa", 1);
    bad |= gguf_writer_set_u32(w, "dup.bbb", 2);
    bad |= gguf_writer_set_str(w, "a.string", "hello");
    bad |= gguf_writer_set_arr(w, "a.strings", GGUF_TYPE_STRING, strs, 3);
    bad |= gguf_writer_add_tensor(w, "t.a", QT_F32, 2, ne_a, data);
    bad |= gguf_writer_add_tensor(w, "t.b", QT_Q8_0, 2, ne_b, data);
    bad |= gguf_writer_add_tensor(w, "t.c", QT_F16, 1, ne_c, data);
    char *p = tmp_file();
    uint8_t *img = NULL;
    if (!bad && p && gguf_writer_write_file(w, p) == PL_OK) img = read_all(p, n);
    if (p) remove(p);
    free(p);
    gguf_writer_free(w);
    return img;
}

/* Byte offsets of a tensor info's fields within the image. */
typedef struct tinfo_at {
    size_t name_len, n_dims, dims, type, offset;
} tinfo_at;

static tinfo_at tensor_fields(const gguf_file *f, const char *name) {
    const gguf_tensor *t = gguf_find_tensor(f, name);
    tinfo_at a = {0};
    if (!t) return a;
    size_t nm = (size_t)((const uint8_t *)t->name.ptr - f->base);
    a.name_len = nm - 8;
    a.n_dims = nm + t->name.len;
    a.dims = a.n_dims + 4;
    a.type = a.dims + 8 * t->n_dims;
    a.offset = a.type + 4;
    return a;
}

static void test_corrupt_fields(void) {
    size_t n;
    uint8_t *img = corrupt_base(&n);
    REQUIRE(img, "base image: %s", pl_last_error());
    gguf_file *f = NULL;
    REQUIRE_OK(gguf_open_memory(img, n, "base", &f));
    uint8_t *m = malloc(n);

#define MUTATE(stmt, want, needle)                                         \
    do {                                                                   \
        memcpy(m, img, n);                                                 \
        stmt;                                                              \
        CHECK(expect_fail(m, n, want, needle, #stmt), "%s", #stmt);        \
    } while (0)

    const gguf_kv *k_align = gguf_get_kv(f, "general.alignment"), *k_bbb = gguf_get_kv(f, "dup.bbb");
    const gguf_kv *k_str = gguf_get_kv(f, "a.string"), *k_strs = gguf_get_kv(f, "a.strings");
    REQUIRE(k_align && k_bbb && k_str && k_strs, "keys");
    size_t at_align = (size_t)(k_align->data - f->base);
    size_t at_key0 = (size_t)((const uint8_t *)f->kv[0].key.ptr - f->base) - 8;
    size_t at_type0 = at_key0 + 8 + f->kv[0].key.len;
    size_t at_bbb = (size_t)((const uint8_t *)k_bbb->key.ptr - f->base);
    size_t at_str = (size_t)(k_str->data - f->base);
    size_t at_strs_n = (size_t)(k_strs->data - f->base) - 8;
    size_t at_strs_1 = (size_t)((const uint8_t *)k_strs->strs[1].ptr - f->base) - 8;
    tinfo_at ta = tensor_fields(f, "t.a"), tb = tensor_fields(f, "t.b"), tc = tensor_fields(f, "t.c");
    REQUIRE(ta.name_len && tb.name_len && tc.name_len, "tensor infos");

    MUTATE(m[0] = 'X', PL_ERR_FORMAT, "magic");
    MUTATE(wr32(m + 4, 1), PL_ERR_FORMAT, "version 1");
    MUTATE(wr32(m + 4, 4), PL_ERR_FORMAT, "version 4");
    MUTATE(wr32(m + 4, 0), PL_ERR_FORMAT, "version 0");
    MUTATE(wr32(m + 4, 0x03000000), PL_ERR_UNSUPPORTED, "big-endian");
    MUTATE(wr64(m + 8, UINT64_MAX), PL_ERR_FORMAT, "n_tensors");
    MUTATE(wr64(m + 8, 1000000), PL_ERR_FORMAT, "n_tensors");
    MUTATE(wr64(m + 16, UINT64_MAX), PL_ERR_FORMAT, "n_kv");
    MUTATE(wr64(m + 16, (uint64_t)n), PL_ERR_FORMAT, "n_kv");
    MUTATE(wr64(m + 8, 4), PL_ERR_FORMAT, NULL); /* one tensor more than described: read from the padding */
    MUTATE(wr64(m + at_key0, UINT64_MAX), PL_ERR_FORMAT, "string length");
    MUTATE(wr64(m + at_key0, n), PL_ERR_FORMAT, "key #0");
    MUTATE(wr32(m + at_type0, 13), PL_ERR_FORMAT, "unknown value type 13");
    MUTATE(wr64(m + at_str - 0, UINT64_MAX - 3), PL_ERR_FORMAT, "string length");
    MUTATE(wr64(m + at_strs_n, UINT64_MAX / 8), PL_ERR_FORMAT, "a.strings");
    MUTATE(wr32(m + at_strs_n - 4, 77), PL_ERR_FORMAT, "unknown element type 77");
    MUTATE(wr64(m + at_strs_1, 1ull << 40), PL_ERR_FORMAT, "a.strings' element 1");
    MUTATE(wr32(m + at_align, 3), PL_ERR_FORMAT, "general.alignment");
    MUTATE(wr32(m + at_align, 0), PL_ERR_FORMAT, "general.alignment");
    MUTATE(wr32(m + at_align - 4, GGUF_TYPE_FLOAT32), PL_ERR_FORMAT, "general.alignment");
    MUTATE(memcpy(m + at_bbb, "dup.aaa", 7), PL_ERR_FORMAT, "duplicate key 'dup.aaa'");
    MUTATE(memcpy(m + tb.name_len + 8, "t.a", 3), PL_ERR_FORMAT, "duplicate tensor name 't.a'");
    MUTATE(wr32(m + ta.n_dims, 5), PL_ERR_FORMAT, "n_dims = 5");
    MUTATE(wr64(m + ta.dims, 0), PL_ERR_FORMAT, "dimension 0 is 0");
    MUTATE(wr64(m + ta.dims + 8, (uint64_t)-5), PL_ERR_FORMAT, "dimension 1 is -5");
    MUTATE(wr64(m + ta.dims, 1ull << 40), PL_ERR_FORMAT, "past the end");
    MUTATE((wr64(m + ta.dims, 1ull << 32), wr64(m + ta.dims + 8, 1ull << 32)), PL_ERR_FORMAT, "overflows");
    MUTATE((wr64(m + tb.dims, 1ull << 61), wr64(m + tb.dims + 8, 8)), PL_ERR_FORMAT, "overflows");
    MUTATE(wr32(m + ta.type, 99), PL_ERR_FORMAT, "'t.a' has unknown type id 99");
    MUTATE(wr32(m + ta.type, 4), PL_ERR_FORMAT, "type id 4");
    MUTATE(wr32(m + ta.type, 16), PL_ERR_UNSUPPORTED, "iq2_xxs");
    MUTATE(wr32(m + tc.type, QT_Q4_0), PL_ERR_FORMAT, "block size");
    MUTATE(wr64(m + tb.offset, rd64(img + tb.offset) + 1), PL_ERR_FORMAT, "not a multiple of the alignment");
    MUTATE(wr64(m + tc.offset, pad32(n, 32)), PL_ERR_FORMAT, "'t.c' (offset");
    MUTATE(wr64(m + tc.offset, UINT64_MAX - 31), PL_ERR_FORMAT, "past the end");
    MUTATE(wr64(m + tb.offset, 0), PL_ERR_FORMAT, "overlap");
    MUTATE(wr64(m + ta.name_len, n), PL_ERR_FORMAT, "tensor #0");
#undef MUTATE
    free(m);
    gguf_close(f);
    free(img);
}

/* Every prefix of a valid image up to the end of its header, and a sample of
 * prefixes ending inside the tensor data, is a format error. */
static void truncations(const uint8_t *img, size_t n, uint64_t data_offset, const char *label) {
    int bad = 0;
    for (size_t len = 0; len < n; len += len <= data_offset ? 1 : (n - data_offset) / 37 + 1)
        if (!expect_fail(img, len, PL_ERR_FORMAT, NULL, label) && ++bad > 5) break;
    if (!expect_fail(img, n - 1, PL_ERR_FORMAT, "past the end", label)) bad++;
    CHECK(bad == 0, "%s: %d truncations not rejected", label, bad);
}

static void test_truncation(void) {
    size_t n;
    uint8_t *img = corrupt_base(&n);
    REQUIRE(img, "base image");
    gguf_file *f = NULL;
    REQUIRE_OK(gguf_open_memory(img, n, "base", &f));
    truncations(img, n, f->data_offset, "synthetic");
    CHECK(expect_fail(img, 3, PL_ERR_FORMAT, "too small", "3 bytes"), "3 bytes");
    CHECK(expect_fail(img, 10, PL_ERR_FORMAT, "n_tensors", "10 bytes"), "10 bytes");
    gguf_close(f);
    free(img);

    const char *path = shared_path("models/stories260K.gguf");
    if (!path) SKIP("../shared/models/stories260K.gguf absent");
    img = read_all(path, &n);
    REQUIRE(img, "read %s", path);
    REQUIRE_OK(gguf_open_memory(img, n, "stories", &f));
    truncations(img, n, f->data_offset, "stories260K");
    gguf_close(f);

    /* the mmap path reports a truncated file by its path */
    char *p = tmp_file();
    FILE *fp = p ? fopen(p, "wb") : NULL;
    REQUIRE(fp, "temp file");
    fwrite(img, 1, n / 2, fp);
    fclose(fp);
    CHECK(gguf_open(p, &f) == PL_ERR_FORMAT && strstr(pl_last_error(), p) && f == NULL, "truncated file: %s",
          pl_last_error());
    fp = fopen(p, "wb");
    fclose(fp);
    CHECK(gguf_open(p, &f) == PL_ERR_FORMAT && strstr(pl_last_error(), "empty"), "empty file: %s", pl_last_error());
    remove(p);
    free(p);
    CHECK(gguf_open("/nonexistent/model.gguf", &f) == PL_ERR_IO && strstr(pl_last_error(), "/nonexistent/model.gguf"),
          "missing file");
    CHECK(gguf_open("/tmp", &f) == PL_ERR_IO, "directory");
    free(img);
}

/* Arrays of arrays (hand-built, the writer does not make them) are walked
 * exactly: the key after one reads correctly; too deep a nesting is refused. */
typedef struct bytes {
    uint8_t b[4096];
    size_t n;
} bytes;
static void put(bytes *o, const void *p, size_t k) {
    memcpy(o->b + o->n, p, k);
    o->n += k;
}
static void put32(bytes *o, uint32_t v) { put(o, &v, 4); }
static void put64(bytes *o, uint64_t v) { put(o, &v, 8); }
static void putstr(bytes *o, const char *s) {
    put64(o, strlen(s));
    put(o, s, strlen(s));
}

static void nested_image(bytes *o, int depth) {
    o->n = 0;
    put32(o, GGUF_MAGIC);
    put32(o, 3);
    put64(o, 0);
    put64(o, 2);
    putstr(o, "nested");
    put32(o, GGUF_TYPE_ARRAY);
    put32(o, GGUF_TYPE_ARRAY); /* outer: 3 arrays */
    put64(o, 3);
    put32(o, GGUF_TYPE_UINT32); /* [1, 2, 3] */
    put64(o, 3);
    for (uint32_t k = 1; k <= 3; k++) put32(o, k);
    put32(o, GGUF_TYPE_STRING); /* ["hi"] */
    put64(o, 1);
    putstr(o, "hi");
    for (int d = 0; d < depth; d++) { /* [[[...[]...]]] */
        put32(o, GGUF_TYPE_ARRAY);
        put64(o, 1);
    }
    put32(o, GGUF_TYPE_ARRAY);
    put64(o, 0);
    putstr(o, "after");
    put32(o, GGUF_TYPE_UINT32);
    put32(o, 7);
}

static void test_nested_arrays(void) {
    bytes o;
    nested_image(&o, 2);
    gguf_file *f = NULL;
    REQUIRE_OK(gguf_open_memory(o.b, o.n, "nested", &f));
    const gguf_kv *kv = gguf_get_kv(f, "nested");
    CHECK(kv && kv->type == GGUF_TYPE_ARRAY && kv->arr_type == GGUF_TYPE_ARRAY && kv->arr_n == 3 && !kv->strs, "nested kv");
    CHECK(gguf_get_u32_or(f, "after", 0) == 7, "key after the nested array");
    CHECK(gguf_arr_int(kv, 0) == 0 && gguf_arr_f32(kv, 0) == 0.0f, "element access on nested array");
    /* copied verbatim by the writer */
    gguf_writer *w = gguf_writer_new();
    char *p = tmp_file();
    CHECK(p && gguf_writer_copy_kv(w, f, NULL) == PL_OK && gguf_writer_write_file(w, p) == PL_OK, "%s", pl_last_error());
    size_t n;
    uint8_t *b = p ? read_all(p, &n) : NULL;
    CHECK(b && n >= o.n && !memcmp(b, o.b, o.n), "nested array copy differs");
    free(b);
    if (p) remove(p);
    free(p);
    gguf_writer_free(w);
    gguf_close(f);

    nested_image(&o, 12);
    CHECK(expect_fail(o.b, o.n, PL_ERR_FORMAT, "nested deeper", "deep"), "deep nesting");
    nested_image(&o, 0);
    wr32(o.b + 24 + 8 + 6 + 4 + 4 + 8, 42); /* first inner array's element type */
    CHECK(expect_fail(o.b, o.n, PL_ERR_FORMAT, "unknown element type 42", "inner type"), "inner type");
    nested_image(&o, 0);
    wr64(o.b + 24 + 8 + 6 + 4 + 4 + 8 + 4, UINT64_MAX / 2); /* first inner array's count */
    CHECK(expect_fail(o.b, o.n, PL_ERR_FORMAT, "nested", "inner count"), "inner count");
}

int main(void) {
    RUN(test_roundtrip);
    RUN(test_alignment_64);
    RUN(test_alignment_no_tensors);
    RUN(test_getters);
    RUN(test_writer_errors);
    RUN(test_real_models);
    RUN(test_rewrite_identical);
    RUN(test_real_vocabs);
    RUN(test_corrupt_fields);
    RUN(test_truncation);
    RUN(test_nested_arrays);
    for (size_t i = 0; i < N_TENSORS; i++) free(g_tdata[i]);
    TEST_END();
}
