/*
 * Manifests of per-device variants ("app thinning without the app store"):
 * one JSON file lists the variants of a model (quant type, files with sizes
 * and SHA-256, bits per weight, the numbers a memory plan needs, the
 * smallest device profile that holds it). pl_manifest_pick plans every
 * variant against a budget from those numbers alone (nothing is downloaded
 * or read) and picks the best quality that fits, with its largest context;
 * pl_manifest_pack writes a manifest from a set of GGUF files. The reader
 * takes a fixed schema through json.c; every field is type- and range-
 * checked and a bad one is named by its path ("variants[1].files[0].bytes").
 *
 * Schema (format "pocketllm-manifest", version 1):
 *   {"format", "version", "model", "variants": [{"name", "quant",
 *    "bits_per_weight", "n_params", "bytes", "min_memory", "memory_class",
 *    "files": [{"path", "bytes", "sha256"}], "plan": {numbers of plan_model,
 *    "shapes": [[type, n_in], ...]}}]}
 */
#include "plan.h"

#include "../core/sha256.h"
#include "../quant/quant_recipe.h"
#include "json.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MANIFEST_MAX_VARIANTS 256
#define MANIFEST_MAX_FILES 4096
#define MANIFEST_PICK_THREADS 4   /* a phone's big cores: what pack and pick plan with by default */
#define MANIFEST_MIN_CTX 512

typedef struct mf_file {
    char *path;        /* resolved against the manifest's folder */
    int64_t bytes;
    char sha256[65];   /* "" when absent */
} mf_file;

typedef struct mf_variant {
    char *name, *quant, *memory_class;
    double bits_per_weight;
    int64_t n_params, bytes, min_memory;
    mf_file *files;
    int n_files;
    plan_model pm;
} mf_variant;

struct pl_manifest {
    char *model;
    mf_variant *v;
    int n;
};

void pl_manifest_free(pl_manifest *m) {
    if (!m) return;
    for (int i = 0; i < m->n; i++) {
        mf_variant *v = &m->v[i];
        free(v->name);
        free(v->quant);
        free(v->memory_class);
        for (int j = 0; j < v->n_files; j++) free(v->files[j].path);
        free(v->files);
        plan_model_clear(&v->pm);
    }
    free(m->v);
    free(m->model);
    free(m);
}

static char *mf_dup(const char *s) {
    const size_t n = strlen(s) + 1;
    char *p = malloc(n);
    if (p) memcpy(p, s, n);
    return p;
}

/* ------------------------------------------------------------ reading */

typedef struct mf_ctx {
    char where[160]; /* path of the object being read, for messages */
} mf_ctx;

static pl_status mf_bad(const mf_ctx *c, const char *key, const char *want) {
    return pl_fail(PL_ERR_FORMAT, "manifest: %s%s%s: expected %s", c->where, *c->where ? "." : "", key, want);
}

static pl_status mf_str(const mf_ctx *c, const json_val *o, const char *key, bool required, char **out) {
    const json_val *v = json_get(o, key);
    *out = NULL;
    if (!v) return required ? mf_bad(c, key, "a string (missing)") : PL_OK;
    if (v->type != JSON_STR) return mf_bad(c, key, "a string");
    if (!(*out = mf_dup(v->str))) return pl_fail(PL_ERR_NOMEM, "manifest: out of memory");
    return PL_OK;
}

static pl_status mf_int(const mf_ctx *c, const json_val *o, const char *key, bool required, int64_t lo, int64_t hi,
                        int64_t *out) {
    const json_val *v = json_get(o, key);
    if (!v) {
        if (required) return mf_bad(c, key, "an integer (missing)");
        return PL_OK;
    }
    if (v->type != JSON_NUM || !v->is_int || v->i < lo || v->i > hi) {
        char want[96];
        snprintf(want, sizeof want, "an integer in [%lld, %lld]", (long long)lo, (long long)hi);
        return mf_bad(c, key, want);
    }
    *out = v->i;
    return PL_OK;
}

static pl_status mf_i(const mf_ctx *c, const json_val *o, const char *key, int64_t lo, int64_t hi, int *out) {
    int64_t v = 0;
    pl_status st = mf_int(c, o, key, true, lo, hi, &v);
    if (!st) *out = (int)v;
    return st;
}

static pl_status mf_u(const mf_ctx *c, const json_val *o, const char *key, uint64_t *out) {
    int64_t v = 0;
    pl_status st = mf_int(c, o, key, true, 0, INT64_MAX, &v);
    if (!st) *out = (uint64_t)v;
    return st;
}

static pl_status mf_plan(mf_ctx *c, const json_val *o, plan_model *pm) {
    memset(pm, 0, sizeof *pm);
    if (!o || o->type != JSON_OBJ) return mf_bad(c, "plan", "an object");
    const size_t wl = strlen(c->where);
    snprintf(c->where + wl, sizeof c->where - wl, ".plan");
    const json_val *arch = json_get(o, "arch");
    if (!arch || arch->type != JSON_STR || strlen(arch->str) >= sizeof pm->arch) return mf_bad(c, "arch", "a short string");
    snprintf(pm->arch, sizeof pm->arch, "%s", arch->str);
    const int64_t big = 1 << 30;
    pl_status st;
    if ((st = mf_i(c, o, "n_vocab", 1, big, &pm->n_vocab)) || (st = mf_i(c, o, "n_embd", 1, big, &pm->n_embd)) ||
        (st = mf_i(c, o, "n_layer", 1, 1 << 16, &pm->n_layer)) || (st = mf_i(c, o, "n_head", 1, 1 << 16, &pm->n_head)) ||
        (st = mf_i(c, o, "n_head_kv", 1, 1 << 16, &pm->n_head_kv)) || (st = mf_i(c, o, "head_dim", 1, 1 << 16, &pm->head_dim)) ||
        (st = mf_i(c, o, "n_ff", 1, big, &pm->n_ff)) || (st = mf_i(c, o, "n_ctx_train", 1, big, &pm->n_ctx_train)) ||
        (st = mf_i(c, o, "n_rot", 1, 1 << 16, &pm->n_rot)) || (st = mf_u(c, o, "file_bytes", &pm->file_bytes)) ||
        (st = mf_u(c, o, "header_bytes", &pm->header_bytes)) || (st = mf_u(c, o, "weights_bytes", &pm->weights_bytes)) ||
        (st = mf_u(c, o, "embd_bytes", &pm->embd_bytes)) || (st = mf_u(c, o, "embd_row_bytes", &pm->embd_row_bytes)) ||
        (st = mf_u(c, o, "layers_bytes", &pm->layers_bytes)) || (st = mf_u(c, o, "tok_bytes", &pm->tok_bytes)) ||
        (st = mf_u(c, o, "slot_bytes", &pm->slot_bytes)))
        return st;
    const json_val *tied = json_get(o, "tied");
    if (!tied || tied->type != JSON_BOOL) return mf_bad(c, "tied", "true or false");
    pm->tied = tied->b;
    /* the sums must hold together, or plans made from them would be nonsense */
    const uint64_t max_file = 1ull << 46; /* 64 TiB: sums of these stay far below 2^64 */
    if (pm->file_bytes > max_file || pm->tok_bytes > max_file || pm->slot_bytes > max_file || pm->embd_row_bytes > max_file)
        return mf_bad(c, "file_bytes", "sizes below 64 TiB");
    if (pm->n_rot > pm->head_dim || pm->layers_bytes > pm->weights_bytes || pm->embd_bytes > pm->weights_bytes ||
        pm->weights_bytes > pm->file_bytes || pm->header_bytes > pm->file_bytes || pm->n_head % pm->n_head_kv)
        return mf_bad(c, "", "consistent sizes (layers and embedding within the weights, weights within the file, heads divisible)");
    if ((st = plan_check_sizes(pm, "manifest"))) return pl_fail_prefix(st, "%s", c->where);
    const json_val *sh = json_get(o, "shapes");
    if (!sh || sh->type != JSON_ARR || sh->n < 1 || sh->n > PLAN_MAX_SHAPES) return mf_bad(c, "shapes", "1 to 32 [type, n_in] pairs");
    for (int i = 0; i < sh->n; i++) {
        const json_val *p = &sh->items[i];
        if (p->type != JSON_ARR || p->n != 2 || p->items[0].type != JSON_NUM || !p->items[0].is_int ||
            p->items[1].type != JSON_NUM || !p->items[1].is_int || !quant_get((uint32_t)(p->items[0].i < 0 ? 999 : p->items[0].i)) ||
            p->items[0].i > 1000 || p->items[1].i < 1 || p->items[1].i > big)
            return mf_bad(c, "shapes", "pairs of a known type id and a positive row length");
        pm->shapes[i].type = (uint32_t)p->items[0].i;
        pm->shapes[i].n_in = p->items[1].i;
    }
    pm->n_shapes = sh->n;
    c->where[wl] = 0;
    return PL_OK;
}

/* A ".." path component: the file would lie outside the manifest's folder. */
static bool mf_climbs(const char *p) {
    for (const char *s = p; (s = strstr(s, "..")); s += 2)
        if ((s == p || s[-1] == '/') && (s[2] == 0 || s[2] == '/')) return true;
    return false;
}

static pl_status mf_variant_read(mf_ctx *c, const json_val *o, const char *base_dir, mf_variant *v) {
    if (o->type != JSON_OBJ) return mf_bad(c, "", "an object");
    pl_status st;
    if ((st = mf_str(c, o, "name", true, &v->name)) || (st = mf_str(c, o, "quant", true, &v->quant)) ||
        (st = mf_str(c, o, "memory_class", false, &v->memory_class)) ||
        (st = mf_int(c, o, "n_params", true, 1, INT64_MAX, &v->n_params)) ||
        (st = mf_int(c, o, "bytes", true, 1, INT64_MAX, &v->bytes)) ||
        (st = mf_int(c, o, "min_memory", false, 0, INT64_MAX, &v->min_memory)))
        return st;
    const json_val *bpw = json_get(o, "bits_per_weight");
    if (!bpw || bpw->type != JSON_NUM || !(bpw->num > 0 && bpw->num <= 64)) return mf_bad(c, "bits_per_weight", "a number in (0, 64]");
    v->bits_per_weight = bpw->num;
    const json_val *files = json_get(o, "files");
    if (!files || files->type != JSON_ARR || files->n < 1 || files->n > MANIFEST_MAX_FILES)
        return mf_bad(c, "files", "a non-empty array of files");
    if (!(v->files = calloc((size_t)files->n, sizeof *v->files))) return pl_fail(PL_ERR_NOMEM, "manifest: out of memory");
    const size_t wl = strlen(c->where);
    for (int j = 0; j < files->n; j++) {
        const json_val *f = &files->items[j];
        mf_file *mf = &v->files[v->n_files++];
        snprintf(c->where + wl, sizeof c->where - wl, ".files[%d]", j);
        if (f->type != JSON_OBJ) return mf_bad(c, "", "an object");
        char *path = NULL, *sum = NULL;
        if ((st = mf_str(c, f, "path", true, &path))) return st;
        if (!*path || mf_climbs(path)) {
            free(path);
            return mf_bad(c, "path", "a path inside the manifest's folder (no '..')");
        }
        const size_t cap = strlen(path) + (base_dir ? strlen(base_dir) : 0) + 2;
        mf->path = malloc(cap);
        if (!mf->path) {
            free(path);
            return pl_fail(PL_ERR_NOMEM, "manifest: out of memory");
        }
        if (base_dir && *base_dir && path[0] != '/') snprintf(mf->path, cap, "%s/%s", base_dir, path);
        else snprintf(mf->path, cap, "%s", path);
        free(path);
        if ((st = mf_int(c, f, "bytes", true, 1, INT64_MAX, &mf->bytes))) return st;
        if ((st = mf_str(c, f, "sha256", false, &sum))) return st;
        if (sum) {
            bool ok = strlen(sum) == 64;
            for (int k = 0; ok && k < 64; k++) ok = (sum[k] >= '0' && sum[k] <= '9') || (sum[k] >= 'a' && sum[k] <= 'f');
            if (ok) memcpy(mf->sha256, sum, 65);
            free(sum);
            if (!ok) return mf_bad(c, "sha256", "64 lowercase hex digits");
        }
    }
    c->where[wl] = 0;
    return mf_plan(c, json_get(o, "plan"), &v->pm);
}

pl_status pl_manifest_parse(const char *text, size_t len, const char *base_dir, pl_manifest **out) {
    if (!out) return pl_fail(PL_ERR_INVALID_ARG, "pl_manifest_parse: out is NULL");
    *out = NULL;
    json_val *root = NULL;
    pl_status st = json_parse(text, len, &root);
    if (st) return pl_fail_prefix(st, "manifest");
    pl_manifest *m = calloc(1, sizeof *m);
    mf_ctx c = {""};
    if (!m) {
        st = pl_fail(PL_ERR_NOMEM, "manifest: out of memory");
        goto done;
    }
    const json_val *fmt = json_get(root, "format"), *ver = json_get(root, "version");
    if (!fmt || fmt->type != JSON_STR || strcmp(fmt->str, "pocketllm-manifest")) {
        st = mf_bad(&c, "format", "\"pocketllm-manifest\"");
        goto done;
    }
    if (!ver || ver->type != JSON_NUM || !ver->is_int || ver->i != 1) {
        st = pl_fail(PL_ERR_UNSUPPORTED, "manifest: version %g is not 1, the version this build reads", ver && ver->type == JSON_NUM ? ver->num : -1.0);
        goto done;
    }
    if ((st = mf_str(&c, root, "model", false, &m->model))) goto done;
    const json_val *vs = json_get(root, "variants");
    if (!vs || vs->type != JSON_ARR || vs->n < 1 || vs->n > MANIFEST_MAX_VARIANTS) {
        st = mf_bad(&c, "variants", "an array of 1 to 256 variants");
        goto done;
    }
    if (!(m->v = calloc((size_t)vs->n, sizeof *m->v))) {
        st = pl_fail(PL_ERR_NOMEM, "manifest: out of memory");
        goto done;
    }
    for (int i = 0; i < vs->n && !st; i++) {
        snprintf(c.where, sizeof c.where, "variants[%d]", i);
        m->n++;
        st = mf_variant_read(&c, &vs->items[i], base_dir, &m->v[i]);
    }
done:
    json_free(root);
    if (st) {
        pl_manifest_free(m);
        return st;
    }
    *out = m;
    return PL_OK;
}

pl_status pl_manifest_load(const char *path, pl_manifest **out) {
    if (!path || !out) return pl_fail(PL_ERR_INVALID_ARG, "pl_manifest_load: path and out are required");
    *out = NULL;
    FILE *fp = fopen(path, "rb");
    if (!fp) return pl_fail(PL_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    char *buf = malloc(JSON_MAX_BYTES + 1);
    size_t n = buf ? fread(buf, 1, JSON_MAX_BYTES + 1, fp) : 0;
    const int err = ferror(fp);
    fclose(fp);
    if (!buf) return pl_fail(PL_ERR_NOMEM, "%s: out of memory", path);
    pl_status st;
    if (err) st = pl_fail(PL_ERR_IO, "%s: read failed", path);
    else if (n > JSON_MAX_BYTES) st = pl_fail(PL_ERR_FORMAT, "%s: larger than a manifest can be", path);
    else {
        char dir[4096];
        snprintf(dir, sizeof dir, "%s", path);
        char *slash = strrchr(dir, '/');
        if (slash) *slash = 0;
        else snprintf(dir, sizeof dir, ".");
        st = pl_manifest_parse(buf, n, dir, out);
        if (st) pl_fail_prefix(st, "%s", path);
    }
    free(buf);
    return st;
}

int pl_manifest_n_variants(const pl_manifest *m) { return m ? m->n : 0; }

pl_status pl_manifest_variant(const pl_manifest *m, int i, pl_variant_info *out) {
    if (!m || !out || i < 0 || i >= m->n) return pl_fail(PL_ERR_INVALID_ARG, "pl_manifest_variant: no variant %d", i);
    const mf_variant *v = &m->v[i];
    *out = (pl_variant_info){.name = v->name, .quant = v->quant, .bits_per_weight = v->bits_per_weight,
                             .n_params = v->n_params, .bytes = v->bytes, .min_memory = v->min_memory,
                             .memory_class = v->memory_class ? v->memory_class : "", .n_files = v->n_files,
                             .n_ctx_train = v->pm.n_ctx_train};
    return PL_OK;
}

const char *pl_manifest_file(const pl_manifest *m, int i, int j, int64_t *bytes, const char **sha256) {
    if (!m || i < 0 || i >= m->n || j < 0 || j >= m->v[i].n_files) return NULL;
    const mf_file *f = &m->v[i].files[j];
    if (bytes) *bytes = f->bytes;
    if (sha256) *sha256 = f->sha256[0] ? f->sha256 : NULL;
    return f->path;
}

/* ------------------------------------------------------------ picking */

pl_pick_params pl_pick_default_params(void) {
    pl_pick_params p = {0};
    return p;
}

static void mf_opts(const plan_model *pm, const pl_pick_params *p, int n_ctx, plan_opts *o) {
    pl_ctx_params cp = pl_ctx_default_params();
    cp.n_ctx = n_ctx;
    cp.n_threads = p->n_threads > 0 ? p->n_threads : MANIFEST_PICK_THREADS;
    cp.kv_type = p->kv_type;
    plan_opts_from_params(pm, NULL, &cp, o);
}

pl_status pl_manifest_pick(const pl_manifest *m, const pl_pick_params *params, pl_pick *out) {
    if (!m || !out) return pl_fail(PL_ERR_INVALID_ARG, "pl_manifest_pick: manifest and out are required");
    memset(out, 0, sizeof *out);
    out->variant = -1;
    pl_pick_params p = params ? *params : pl_pick_default_params();
    plan_limits lim = {0};
    if (p.profile) {
        const pl_device_profile *d = pl_device_profile_find(p.profile);
        if (!d) return pl_fail(PL_ERR_INVALID_ARG, "pl_manifest_pick: unknown device profile '%s'", p.profile);
        lim.rss = d->budget_bytes;
        snprintf(lim.source, sizeof lim.source, "profile %s", d->name);
    } else if (p.budget_bytes) {
        lim.rss = p.budget_bytes;
        snprintf(lim.source, sizeof lim.source, "given");
    } else {
        pl_status st = plan_limits_resolve(0, &lim);
        if (st) return st;
    }
    int best = -1, best_ctx = 0;
    pl_plan best_plan;
    int64_t smallest_need = -1;
    for (int i = 0; i < m->n; i++) {
        const mf_variant *v = &m->v[i];
        const int train = v->pm.n_ctx_train;
        const int min_ctx = p.min_ctx > 0 ? p.min_ctx : (train < MANIFEST_MIN_CTX ? train : MANIFEST_MIN_CTX);
        const int cap = p.max_ctx > 0 ? p.max_ctx : train;
        plan_opts o;
        mf_opts(&v->pm, &p, min_ctx, &o);
        pl_plan pl;
        pl_status st = plan_compute(&v->pm, &o, &lim, &pl);
        if (st) return pl_fail_prefix(st, "variant '%s'", v->name);
        if (smallest_need < 0 || pl.total_bytes < smallest_need) smallest_need = pl.total_bytes;
        if (pl.fit != PL_FIT_YES) continue;
        const int n_ctx = pl.max_ctx < cap ? pl.max_ctx : cap;
        /* the best quality (bits per weight), then the longer context */
        if (best >= 0 && (v->bits_per_weight < m->v[best].bits_per_weight ||
                          (v->bits_per_weight == m->v[best].bits_per_weight && n_ctx <= best_ctx)))
            continue;
        mf_opts(&v->pm, &p, n_ctx, &o);
        if ((st = plan_compute(&v->pm, &o, &lim, &best_plan))) return st;
        best = i;
        best_ctx = n_ctx;
    }
    if (best < 0)
        return pl_fail(PL_ERR_BUDGET, "no variant fits %.1f MiB (%s): the smallest needs %.1f MiB", lim.rss / 1048576.0,
                       lim.source, smallest_need / 1048576.0);
    out->variant = best;
    out->n_ctx = best_ctx;
    out->plan = best_plan;
    return PL_OK;
}
