/*
 * Per-device variants: the JSON reader (RFC 8259 cases: escapes, surrogate
 * pairs, numbers, nesting limits, the usual malformations), manifests packed
 * from the shared kjv-llama conversions (sizes and SHA-256 as the files say,
 * plans from the manifest's numbers equal to plans from the GGUF headers),
 * picks under budgets and profiles (the best quality that fits, its largest
 * context, none -> PL_ERR_BUDGET), schema errors named by path, and
 * thousands of mutated manifests that must fail cleanly or parse.
 */
#include "test.h"

#include "plan/json.h"
#include "pocketllm.h"

#include <unistd.h>

static char g_tmp[512];

static void test_json_reader(void) {
    json_val *v = NULL;
    const char *ok = "{\"a\": [1, -2.5e3, 0, true, false, null, \"x\\u00e9\\ud83d\\ude00\\n\\\"\"], \"b\": {\"c\": {}}, "
                     "\"big\": 9007199254740993, \"neg\": -9223372036854775808, \"huge\": 1e300}";
    REQUIRE(json_parse(ok, strlen(ok), &v) == PL_OK, "%s", pl_last_error());
    const json_val *a = json_get(v, "a");
    REQUIRE(a && a->type == JSON_ARR && a->n == 7, "array");
    CHECK(a->items[0].is_int && a->items[0].i == 1 && a->items[1].num == -2500.0 && !a->items[1].is_int, "numbers");
    CHECK(a->items[3].type == JSON_BOOL && a->items[3].b && a->items[5].type == JSON_NULL, "literals");
    CHECK(!strcmp(a->items[6].str, "x\xc3\xa9\xf0\x9f\x98\x80\n\""), "escapes and a surrogate pair: %s", a->items[6].str);
    CHECK(json_get(json_get(v, "b"), "c")->type == JSON_OBJ, "nested");
    CHECK(json_get(v, "big")->is_int && json_get(v, "big")->i == 9007199254740993ll, "exact large integer");
    CHECK(json_get(v, "neg")->is_int && json_get(v, "neg")->i == INT64_MIN, "INT64_MIN");
    CHECK(json_get(v, "missing") == NULL && json_get(a, "a") == NULL, "lookups");
    json_free(v);
    static const char *bad[] = {"", "{", "[1,]", "{\"a\":}", "{\"a\" 1}", "\"abc", "\"\\x\"", "\"\\ud800\"",
                                "\"\\udc00x\"", "01", "1.", "-", "1e", "[1] 2", "tru", "{\"a\":1,}", "\"a\x01\"",
                                "\"\\u0000\"", "NaN", "[" /* unterminated */};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        v = NULL;
        CHECK(json_parse(bad[i], strlen(bad[i]), &v) == PL_ERR_FORMAT && !v, "accepted '%s'", bad[i]);
    }
    /* nesting: 64 levels are fine, 65 are refused */
    char deep[200];
    for (int d = 64; d <= 65; d++) {
        memset(deep, '[', (size_t)d);
        memset(deep + d, ']', (size_t)d);
        v = NULL;
        const pl_status st = json_parse(deep, 2 * (size_t)d, &v);
        CHECK(d == 64 ? st == PL_OK : st == PL_ERR_FORMAT, "depth %d: %s", d, pl_status_name(st));
        json_free(v);
    }
}

static const char *k_files[] = {"models/kjv-llama-f16.gguf", "models/kjv-llama-q8_0.gguf", "models/kjv-llama-q4_k_m.gguf",
                                "models/kjv-llama-q4_0.gguf"};

static char *g_json;   /* the packed manifest */
static int g_have;

static void test_pack_and_pick(void) {
    const char *paths[4];
    for (int i = 0; i < 4; i++)
        if (!(paths[i] = shared_path(k_files[i]))) SKIP("%s not in ../shared", k_files[i]);
    REQUIRE(pl_manifest_pack(paths, 4, "kjv-llama", NULL, &g_json) == PL_OK, "%s", pl_last_error());
    g_have = 1;
    pl_manifest *m = NULL;
    REQUIRE(pl_manifest_parse(g_json, strlen(g_json), NULL, &m) == PL_OK, "%s", pl_last_error());
    REQUIRE(pl_manifest_n_variants(m) == 4, "variants");
    static const char *names[] = {"f16", "q8_0", "q4_k_m", "q4_0"};
    for (int i = 0; i < 4; i++) {
        pl_variant_info vi;
        REQUIRE(pl_manifest_variant(m, i, &vi) == PL_OK, "variant %d", i);
        CHECK(!strcmp(vi.name, names[i]), "variant %d is %s", i, vi.name);
        int64_t bytes;
        const char *sum;
        const char *p = pl_manifest_file(m, i, 0, &bytes, &sum);
        char hex[65];
        REQUIRE(p && pl_sha256_file(paths[i], 0, 0, hex) == PL_OK, "%s", pl_last_error());
        struct stat sb;
        stat(paths[i], &sb);
        CHECK(bytes == (int64_t)sb.st_size && vi.bytes == bytes && sum && !strcmp(sum, hex), "%s: sizes and sums", names[i]);
        if (i) {
            pl_variant_info prev;
            pl_manifest_variant(m, i - 1, &prev);
            CHECK(vi.bits_per_weight < prev.bits_per_weight, "quality order %s < %s", names[i], prev.name);
        }
    }
    /* plenty of memory: f16 and the trained context */
    pl_pick_params pp = pl_pick_default_params();
    pp.budget_bytes = 8ull << 30;
    pl_pick pk;
    REQUIRE(pl_manifest_pick(m, &pp, &pk) == PL_OK, "%s", pl_last_error());
    CHECK(pk.variant == 0 && pk.n_ctx == 2048, "8 GiB: variant %d ctx %d", pk.variant, pk.n_ctx);
    pp.max_ctx = 1000;
    REQUIRE(pl_manifest_pick(m, &pp, &pk) == PL_OK, "%s", pl_last_error());
    CHECK(pk.n_ctx == 1000, "max_ctx honoured: %d", pk.n_ctx);
    pp.max_ctx = 0;
    /* f16 does not fit at 512 tokens, q8_0 does: q8_0 with the largest context;
     * the plan from the manifest equals the plan from the file's header */
    pl_variant_info f16, q8;
    pl_manifest_variant(m, 0, &f16);
    pl_manifest_variant(m, 1, &q8);
    pp.budget_bytes = (uint64_t)(f16.min_memory + q8.min_memory) / 2;
    REQUIRE(pl_manifest_pick(m, &pp, &pk) == PL_OK, "%s", pl_last_error());
    CHECK(pk.variant == 1 && pk.n_ctx >= 512 && pk.plan.total_bytes <= (int64_t)pp.budget_bytes, "between: variant %d ctx %d",
          pk.variant, pk.n_ctx);
    pl_model_params mp = pl_model_default_params();
    mp.budget_bytes = pp.budget_bytes;
    pl_ctx_params cp = pl_ctx_default_params();
    cp.n_ctx = pk.n_ctx;
    cp.n_threads = 4;
    pl_plan direct;
    REQUIRE(pl_plan_file(paths[1], &mp, &cp, &direct) == PL_OK, "%s", pl_last_error());
    CHECK(direct.total_bytes == pk.plan.total_bytes && direct.fit == PL_FIT_YES && direct.max_ctx == pk.n_ctx,
          "manifest plan %lld vs header plan %lld (max_ctx %d vs %d)", (long long)pk.plan.total_bytes,
          (long long)direct.total_bytes, pk.n_ctx, direct.max_ctx);
    /* a bigger minimum context can push the choice down */
    pp.min_ctx = 2048;
    REQUIRE(pl_manifest_pick(m, &pp, &pk) == PL_OK, "%s", pl_last_error());
    CHECK(pk.variant >= 1 && pk.n_ctx == 2048, "min_ctx 2048: variant %d ctx %d", pk.variant, pk.n_ctx);
    pp.min_ctx = 0;
    /* nothing fits */
    pp.budget_bytes = 8u << 20;
    pl_status st = pl_manifest_pick(m, &pp, &pk);
    CHECK(st == PL_ERR_BUDGET && pk.variant == -1 && strstr(pl_last_error(), "smallest needs"), "8 MiB: %s %s",
          pl_status_name(st), pl_last_error());
    /* a device profile */
    pp = pl_pick_default_params();
    pp.profile = "iphone-4gb";
    REQUIRE(pl_manifest_pick(m, &pp, &pk) == PL_OK, "%s", pl_last_error());
    CHECK(pk.variant == 0 && pk.plan.budget_bytes == (int64_t)pl_device_profile_find("iphone-4gb")->budget_bytes, "profile");
    pp.profile = "nokia-3310";
    CHECK(pl_manifest_pick(m, &pp, &pk) == PL_ERR_INVALID_ARG, "unknown profile");
    /* the picked variant loads with its listed sum checked */
    pl_model_source src = {.path = pl_manifest_file(m, 1, 0, NULL, NULL), .fd = -1};
    pl_manifest_file(m, 1, 0, NULL, &src.sha256);
    mp = pl_model_default_params();
    mp.verify = 1;
    pl_model *model = NULL;
    CHECK(pl_model_load_sources(&src, 1, &mp, &model) == PL_OK, "verified load: %s", pl_last_error());
    pl_model_free(model);
    pl_manifest_free(m);
    /* through a file: relative paths resolve against its folder */
    char path[700];
    snprintf(path, sizeof path, "%s/m.json", g_tmp);
    FILE *fp = fopen(path, "w");
    REQUIRE(fp, "write");
    fputs("{\"format\":\"pocketllm-manifest\",\"version\":1,\"variants\":[{\"name\":\"x\",\"quant\":\"Q4_0\",\"bits_per_weight\":4.5,"
          "\"n_params\":1,\"bytes\":10,\"files\":[{\"path\":\"sub/x.gguf\",\"bytes\":10}],\"plan\":",
          fp);
    const char *plan = strstr(g_json, "\"plan\": ");
    const char *end = plan ? strstr(plan, "}") : NULL;
    REQUIRE(plan && end, "plan object in the packed text");
    fwrite(plan + 8, 1, (size_t)(end + 1 - (plan + 8)), fp);
    fputs("}]}", fp);
    fclose(fp);
    REQUIRE(pl_manifest_load(path, &m) == PL_OK, "%s", pl_last_error());
    char want[800];
    snprintf(want, sizeof want, "%s/sub/x.gguf", g_tmp);
    const char *sum = "x";
    CHECK(!strcmp(pl_manifest_file(m, 0, 0, NULL, &sum), want) && sum == NULL, "relative path: %s",
          pl_manifest_file(m, 0, 0, NULL, NULL));
    pl_manifest_free(m);
}

/* Replace the first occurrence of `from` in the packed manifest with `to`;
 * parse; return the status (message in pl_last_error()). */
static pl_status parse_edited(const char *from, const char *to) {
    const char *at = strstr(g_json, from);
    if (!at) return PL_ERR_INTERNAL;
    const size_t n = strlen(g_json) - strlen(from) + strlen(to);
    char *s = malloc(n + 1);
    const size_t pre = (size_t)(at - g_json);
    memcpy(s, g_json, pre);
    memcpy(s + pre, to, strlen(to));
    strcpy(s + pre + strlen(to), at + strlen(from));
    pl_manifest *m = NULL;
    pl_status st = pl_manifest_parse(s, n, NULL, &m);
    pl_manifest_free(m);
    free(s);
    return st;
}

static void test_schema_errors(void) {
    if (!g_have) SKIP("no packed manifest");
    static const struct { const char *from, *to, *msg; pl_status st; } cases[] = {
        {"\"pocketllm-manifest\"", "\"other\"", "format", PL_ERR_FORMAT},
        {"\"version\": 1", "\"version\": 2", "version", PL_ERR_UNSUPPORTED},
        {"\"name\": \"f16\"", "\"name\": 16", "variants[0].name", PL_ERR_FORMAT},
        {"\"bytes\": 45572480,", "\"bytes\": -1,", "variants[0].bytes", PL_ERR_FORMAT},
        {"\"sha256\": \"", "\"sha256\": \"zz", "variants[0].files[0].sha256", PL_ERR_FORMAT},
        {"\"path\": \"", "\"path\": \"../", "variants[0].files[0].path", PL_ERR_FORMAT},
        {"\"n_layer\": 8", "\"n_layer\": 0", "variants[0].plan.n_layer", PL_ERR_FORMAT},
        {"\"n_head_kv\": 2", "\"n_head_kv\": 3", "variants[0].plan", PL_ERR_FORMAT},
        {"\"n_embd\": 256", "\"n_embd\": 100000000", "variants[0].plan", PL_ERR_FORMAT},
        {"\"shapes\": [[", "\"shapes\": [[99999, 1], [", "variants[0].plan.shapes", PL_ERR_FORMAT},
        {"\"tied\": false", "\"tied\": 0", "variants[0].plan.tied", PL_ERR_FORMAT},
        {"\"variants\": [", "\"variants\": 3, \"x\": [", "variants", PL_ERR_FORMAT},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const pl_status st = parse_edited(cases[i].from, cases[i].to);
        CHECK(st == cases[i].st && strstr(pl_last_error(), cases[i].msg), "'%s' -> '%s': %s: %s", cases[i].from, cases[i].to,
              pl_status_name(st), pl_last_error());
    }
}

/* Mutations of a valid manifest: parse or fail cleanly, never crash. */
static void test_mutations(void) {
    if (!g_have) SKIP("no packed manifest");
    const size_t n = strlen(g_json);
    char *s = malloc(n + 1);
    uint64_t r = 0x9E3779B97F4A7C15ull;
    int parsed = 0;
    static const char alphabet[] = "{}[]\",:0123456789-.eE tfnul\\";
    for (int it = 0; it < 3000; it++) {
        memcpy(s, g_json, n + 1);
        size_t len = n;
        for (int k = 0; k < 1 + it % 4 && len > 0; k++) {
            r ^= r << 13, r ^= r >> 7, r ^= r << 17;
            const size_t at = (size_t)(r % len);
            switch ((r >> 32) % 3) {
            case 0: s[at] = alphabet[(r >> 40) % (sizeof alphabet - 1)]; break;
            case 1: len = at; break; /* truncate */
            default: s[at] = (char)(r >> 48); break;
            }
        }
        pl_manifest *m = NULL;
        const pl_status st = pl_manifest_parse(s, len, NULL, &m);
        if (st == PL_OK) {
            parsed++;
            pl_pick_params pp = pl_pick_default_params();
            pp.budget_bytes = 64u << 20;
            pl_pick pk;
            (void)pl_manifest_pick(m, &pp, &pk);
            pl_manifest_free(m);
        } else {
            CHECK(st == PL_ERR_FORMAT || st == PL_ERR_UNSUPPORTED, "iteration %d: %s", it, pl_status_name(st));
            CHECK(m == NULL, "no manifest on failure");
        }
    }
    free(s);
    printf("   %d of 3000 mutated manifests still parsed\n", parsed);
}

int main(void) {
    snprintf(g_tmp, sizeof g_tmp, "%s/pl_test_manifest_XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    if (!mkdtemp(g_tmp)) {
        perror("mkdtemp");
        return 1;
    }
    RUN(test_json_reader);
    RUN(test_pack_and_pick);
    RUN(test_schema_errors);
    RUN(test_mutations);
    free(g_json);
    char cmd[700];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_tmp);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", g_tmp);
    TEST_END();
}
