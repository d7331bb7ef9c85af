/*
 * libFuzzer target for the manifest reader (src/plan/json.c + manifest.c):
 * arbitrary bytes through json_parse and pl_manifest_parse; an accepted
 * manifest is walked (every variant and file) and picked from under a few
 * budgets and a profile, checking the promises: indices in range, a picked
 * context within [1, n_ctx_train], a plan total within the budget.
 * Build: make fuzz; run: fuzz/run.sh SECONDS manifest (seeds in fuzz/seeds/manifest).
 */
#include "plan/json.h"
#include "pocketllm.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define PROMISE(c)                  \
    do {                            \
        if (!(c)) __builtin_trap(); \
    } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    json_val *v = NULL;
    if (json_parse((const char *)data, size, &v) == PL_OK) json_free(v);
    pl_manifest *m = NULL;
    if (pl_manifest_parse((const char *)data, size, "seeds", &m) != PL_OK) return 0;
    const int n = pl_manifest_n_variants(m);
    PROMISE(n >= 1);
    for (int i = 0; i < n; i++) {
        pl_variant_info vi;
        PROMISE(pl_manifest_variant(m, i, &vi) == PL_OK && vi.name && vi.quant && vi.n_files >= 1);
        for (int j = 0; j < vi.n_files; j++) {
            int64_t bytes;
            const char *sum;
            const char *p = pl_manifest_file(m, i, j, &bytes, &sum);
            PROMISE(p && bytes > 0 && (!sum || strlen(sum) == 64));
        }
        PROMISE(pl_manifest_file(m, i, vi.n_files, NULL, NULL) == NULL);
    }
    static const uint64_t budgets[] = {1u << 20, 100u << 20, 10ull << 30};
    for (int k = 0; k < 4; k++) {
        pl_pick_params pp = pl_pick_default_params();
        if (k < 3) pp.budget_bytes = budgets[k];
        else pp.profile = "iphone-4gb";
        pp.max_ctx = 4096; /* keeps the plans' bisection short */
        pl_pick pk;
        if (pl_manifest_pick(m, &pp, &pk) != PL_OK) continue;
        pl_variant_info vi;
        PROMISE(pk.variant >= 0 && pk.variant < n && pl_manifest_variant(m, pk.variant, &vi) == PL_OK);
        PROMISE(pk.n_ctx >= 1 && pk.n_ctx <= vi.n_ctx_train && pk.n_ctx <= 4096);
        PROMISE(pk.plan.total_bytes <= pk.plan.budget_bytes);
    }
    pl_manifest_free(m);
    return 0;
}
