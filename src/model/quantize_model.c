/*
 * quantize_model: the file-level quantizer (see quantize_model.h).
 *
 * Two passes over the tensor list: the first decides every tensor's type
 * (quant_recipe_pick) and refuses what cannot be done before anything is
 * written; the second converts and writes them in llama-quantize's order
 * (tensors outside the blocks first, then block by block, by name within
 * each), which keeps a layer's tensors together in the file. A tensor whose
 * type does not change is written straight from the mapping. Otherwise each
 * thread of the pool takes an equal share of its rows and, a few rows at a
 * time, decodes them to floats in its own scratch and quantizes them into the
 * output buffer; the buffer is then written and the input pages released.
 */
#include "quantize_model.h"

#include "../core/threads.h"
#include "../gguf/gguf.h"
#include "../quant/quant_search.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define QM_SCRATCH_FLOATS 16384 /* per thread: rows decoded at a time */

quant_model_params quant_model_default_params(void) {
    quant_model_params p = {0};
    return p;
}

/* Keys not copied: those of split files (the output is one file), and the
 * two we set, which go last as llama-quantize writes them (ggml's setters
 * move a key to the end), so that the reference mode reproduces its files
 * byte for byte. */
static bool qm_skip_key(const char *key) {
    return !strncmp(key, "split.", 6) || !strcmp(key, "general.quantization_version") ||
           !strcmp(key, "general.file_type");
}

/* What the mixture rules need from the metadata. Missing counts are derived
 * from the tensor names (layers) or assumed absent (no GQA). */
static pl_status qm_model_info(const gguf_file *f, quant_model_info *m) {
    char key[128];
    gguf_str arch = {0};
    memset(m, 0, sizeof *m);
    m->n_gqa = 1;
    m->tied_output = gguf_find_tensor(f, "output.weight") == NULL;
    if (gguf_find_key(f, "general.architecture") >= 0) {
        pl_status st = gguf_get_str(f, "general.architecture", &arch);
        if (st) return st;
        if (arch.len > 64) return pl_fail(PL_ERR_FORMAT, "%s: general.architecture is %" PRIu64 " bytes long", f->path, arch.len);
    }
    snprintf(key, sizeof key, "%.*s.block_count", (int)arch.len, arch.ptr ? arch.ptr : "");
    m->n_layer = (int)gguf_get_u32_or(f, key, 0);
    if (m->n_layer <= 0)
        for (uint64_t i = 0; i < f->n_tensors; i++) {
            int layer = -1;
            char name[72];
            snprintf(name, sizeof name, "%.*s", (int)(f->tensors[i].name.len < 64 ? f->tensors[i].name.len : 64),
                     f->tensors[i].name.ptr);
            if (sscanf(name, "blk.%d.", &layer) == 1 && layer + 1 > m->n_layer) m->n_layer = layer + 1;
        }
    snprintf(key, sizeof key, "%.*s.attention.head_count", (int)arch.len, arch.ptr ? arch.ptr : "");
    const uint32_t n_head = gguf_get_u32_or(f, key, 0);
    snprintf(key, sizeof key, "%.*s.attention.head_count_kv", (int)arch.len, arch.ptr ? arch.ptr : "");
    const uint32_t n_head_kv = gguf_get_u32_or(f, key, n_head);
    if (n_head > 0 && n_head_kv > 0) m->n_gqa = (int)(n_head / n_head_kv);
    return PL_OK;
}

/* ------------------------------------------------------------- one tensor */

typedef struct qm_job {
    const uint8_t *in;   /* input rows */
    uint8_t *out;        /* output rows */
    const quant_traits *tin, *tout;
    quant_type to;
    int64_t ne0, nrows;
    uint64_t in_row, out_row; /* bytes per row */
    bool search;
    float **scratch;     /* one QM_SCRATCH_FLOATS-or-row buffer per thread */
    int64_t scratch_floats;
} qm_job;

static void qm_work(void *arg, int ith, int nth) {
    const qm_job *j = arg;
    const int64_t r0 = j->nrows * ith / nth, r1 = j->nrows * (ith + 1) / nth;
    int64_t step = j->scratch_floats / j->ne0;
    if (step < 1) step = 1;
    float *buf = j->scratch[ith];
    for (int64_t r = r0; r < r1; r += step) {
        const int64_t g = r1 - r < step ? r1 - r : step;
        uint8_t *dst = j->out + (uint64_t)r * j->out_row;
        j->tin->to_float(j->in + (uint64_t)r * j->in_row, buf, g * j->ne0);
        if (j->search) {
            quant_search_rows(j->to, buf, dst, g, j->ne0, NULL);
        } else {
            for (int64_t k = 0; k < g; k++) j->tout->from_float(buf + k * j->ne0, dst + (uint64_t)k * j->out_row, j->ne0);
        }
    }
}

static bool qm_use_search(quant_method method, quant_type to) {
    if (!quant_search_supported(to)) return false;
    return method == QM_SEARCH || (method == QM_AUTO && quant_search_preferred(to));
}

/* Give the kernel back the mapped input pages of a finished tensor: they
 * were only read, so dropping them loses nothing (a later touch refaults
 * them from the page cache), and the resident set stays near one tensor. */
static void qm_release(const void *p, uint64_t n) {
    const long page = sysconf(_SC_PAGESIZE);
    if (page <= 0 || n == 0) return;
    const uintptr_t a = (uintptr_t)p / (uintptr_t)page * (uintptr_t)page;
    const uintptr_t b = (uintptr_t)p + (uintptr_t)n;
    (void)madvise((void *)a, (size_t)(b - a), MADV_DONTNEED);
}

/* ----------------------------------------------------------------- driver */

typedef struct qm_plan {
    char *name;
    int layer;       /* N of "blk.N.", -1 outside the blocks */
    uint64_t index;  /* in the input */
    quant_pick pick;
} qm_plan;

/* llama.cpp's weight order: by layer (none first), then by name. */
static int qm_plan_cmp(const void *va, const void *vb) {
    const qm_plan *a = va, *b = vb;
    if (a->layer != b->layer) return a->layer < b->layer ? -1 : 1;
    return strcmp(a->name, b->name);
}

pl_status quant_model_file(const char *in_path, const char *out_path, const quant_model_params *params) {
    pl_status st = PL_OK;
    gguf_file *f = NULL;
    gguf_writer *w = NULL;
    qm_plan *plan = NULL;
    pl_pool *pool = NULL;
    float **scratch = NULL;
    uint8_t *outbuf = NULL;
    char *tmp_path = NULL;
    FILE *fp = NULL;
    int n_threads = 0;
    const double t0 = pl_time_ms();

    if (!in_path || !out_path || !params || !params->recipe)
        return pl_fail(PL_ERR_INVALID_ARG, "quant_model_file: NULL path, params or recipe");
    const quant_recipe *r = params->recipe;
    if ((st = gguf_open(in_path, &f))) goto fail;

    quant_model_info mi;
    if ((st = qm_model_info(f, &mi))) goto fail;

    /* pass 1: every tensor's type, and the sizes of the buffers */
    if (!(plan = calloc(f->n_tensors ? f->n_tensors : 1, sizeof *plan))) {
        st = pl_fail(PL_ERR_NOMEM, "%s: no memory for %" PRIu64 " tensors", in_path, f->n_tensors);
        goto fail;
    }
    uint64_t max_out = 0, total_in = 0;
    int64_t max_ne0 = 0;
    for (uint64_t i = 0; i < f->n_tensors; i++) {
        const gguf_tensor *t = &f->tensors[i];
        if (!(plan[i].name = gguf_str_dup(t->name))) {
            st = pl_fail(PL_ERR_NOMEM, "%s: no memory", in_path);
            goto fail;
        }
        if (strlen(plan[i].name) != t->name.len) {
            st = pl_fail(PL_ERR_UNSUPPORTED, "%s: tensor #%" PRIu64 " has a NUL byte in its name", in_path, i);
            goto fail;
        }
        const quant_traits *tin = quant_get(t->type);
        if (!tin || !tin->to_float) {
            st = pl_fail(PL_ERR_UNSUPPORTED, "%s: tensor '%s' has type %" PRIu32 ", which cannot be converted", in_path,
                         plan[i].name, t->type);
            goto fail;
        }
        plan[i].index = i;
        plan[i].layer = -1;
        if (sscanf(plan[i].name, "blk.%d.", &plan[i].layer) != 1) plan[i].layer = -1;
        plan[i].pick = quant_recipe_pick(r, &mi, plan[i].name, t->n_dims, t->ne[0], t->type, params->pure);
        total_in += t->nbytes;
        if ((uint32_t)plan[i].pick.type == t->type) continue;
        if (tin->is_quantized && !params->allow_requantize) {
            st = pl_fail(PL_ERR_UNSUPPORTED,
                         "%s: tensor '%s' is already %s; requantizing it to %s loses quality (allow it with --allow-requantize)",
                         in_path, plan[i].name, tin->name, quant_get(plan[i].pick.type)->name);
            goto fail;
        }
        uint64_t rows = 1, nbytes;
        for (int d = 1; d < GGUF_MAX_DIMS; d++) rows *= (uint64_t)t->ne[d];
        if (!pl_mul_ok(quant_row_size(plan[i].pick.type, t->ne[0]), rows, &nbytes) || nbytes > SIZE_MAX) {
            st = pl_fail(PL_ERR_UNSUPPORTED, "%s: tensor '%s' is too large", in_path, plan[i].name);
            goto fail;
        }
        if (nbytes > max_out) max_out = nbytes;
        if (t->ne[0] > max_ne0) max_ne0 = t->ne[0];
    }

    qsort(plan, (size_t)f->n_tensors, sizeof *plan, qm_plan_cmp);

    /* the output's metadata: the input's, with the new file type */
    if (!(w = gguf_writer_new())) {
        st = pl_fail(PL_ERR_NOMEM, "%s: no memory for the writer", out_path);
        goto fail;
    }
    if ((st = gguf_writer_set_path(w, out_path)) || (st = gguf_writer_copy_kv(w, f, qm_skip_key)) ||
        (st = gguf_writer_set_u32(w, "general.quantization_version", QUANT_QNT_VERSION)) ||
        (st = gguf_writer_set_u32(w, "general.file_type", (uint32_t)r->ftype)))
        goto fail;
    for (uint64_t i = 0; i < f->n_tensors; i++) {
        const gguf_tensor *t = &f->tensors[plan[i].index];
        if ((st = gguf_writer_add_tensor(w, plan[i].name, plan[i].pick.type, t->n_dims, t->ne, NULL))) goto fail;
    }

    /* buffers and threads */
    n_threads = params->n_threads > 0 ? params->n_threads : pl_cpu_count();
    const int64_t scratch_floats = max_ne0 > QM_SCRATCH_FLOATS ? max_ne0 : QM_SCRATCH_FLOATS;
    if ((st = pool_new(n_threads, &pool))) goto fail;
    if (!(scratch = calloc((size_t)n_threads, sizeof *scratch)) || (max_out && !(outbuf = malloc((size_t)max_out)))) {
        st = pl_fail(PL_ERR_NOMEM, "%s: no memory for a %" PRIu64 "-byte tensor buffer", out_path, max_out);
        goto fail;
    }
    for (int i = 0; i < n_threads && max_out; i++)
        if (!(scratch[i] = malloc(sizeof(float) * (size_t)scratch_floats))) {
            st = pl_fail(PL_ERR_NOMEM, "%s: no memory for conversion scratch", out_path);
            goto fail;
        }

    /* a temporary file beside the destination, renamed over it at the end */
    const size_t plen = strlen(out_path);
    if (!(tmp_path = malloc(plen + 16))) {
        st = pl_fail(PL_ERR_NOMEM, "%s: no memory", out_path);
        goto fail;
    }
    snprintf(tmp_path, plen + 16, "%s.tmp.XXXXXX", out_path);
    const int fd = mkstemp(tmp_path);
    if (fd < 0) {
        st = pl_fail(PL_ERR_IO, "%s: cannot create a temporary file beside it: %s", out_path, strerror(errno));
        free(tmp_path);
        tmp_path = NULL;
        goto fail;
    }
    const mode_t um = umask(0);
    umask(um);
    (void)fchmod(fd, 0666 & ~um); /* mkstemp makes 0600; give the usual mode */
    if (!(fp = fdopen(fd, "wb"))) {
        st = pl_fail(PL_ERR_IO, "%s: %s", tmp_path, strerror(errno));
        close(fd);
        goto fail;
    }
    if ((st = gguf_writer_write_header(w, fp))) goto fail;

    /* pass 2: convert and write */
    uint64_t done_in = 0, done_out = 0;
    for (uint64_t i = 0; i < f->n_tensors; i++) {
        const gguf_tensor *t = &f->tensors[plan[i].index];
        const quant_type to = plan[i].pick.type;
        const void *data = t->data;
        uint64_t nbytes = t->nbytes;
        if ((uint32_t)to != t->type) {
            qm_job job = {.in = t->data, .out = outbuf, .tin = quant_get(t->type), .tout = quant_get(to), .to = to,
                          .ne0 = t->ne[0], .nrows = t->ne[1] * t->ne[2] * t->ne[3],
                          .in_row = quant_row_size(t->type, t->ne[0]), .out_row = quant_row_size(to, t->ne[0]),
                          .search = qm_use_search(params->method, to), .scratch = scratch,
                          .scratch_floats = scratch_floats};
            pool_run(pool, qm_work, &job);
            data = outbuf;
            nbytes = job.out_row * (uint64_t)job.nrows;
        }
        if ((st = gguf_writer_write_tensor_data(w, fp, i, data))) goto fail;
        qm_release(t->data, t->nbytes);
        done_in += t->nbytes;
        done_out += nbytes;
        if (params->progress) {
            const quant_progress p = {.index = (int)i + 1, .count = (int)f->n_tensors, .name = plan[i].name,
                                      .from = (quant_type)t->type, .to = to, .fell_back = plan[i].pick.fell_back,
                                      .wanted = plan[i].pick.wanted, .bytes_in = t->nbytes, .bytes_out = nbytes,
                                      .done_in = done_in, .total_in = total_in, .done_out = done_out,
                                      .elapsed_ms = pl_time_ms() - t0};
            if (params->progress(params->progress_user, &p)) {
                st = pl_fail(PL_ERR_CANCELLED, "%s: quantization stopped after tensor '%s'", out_path, plan[i].name);
                goto fail;
            }
        }
    }
    if (fflush(fp) != 0 || ferror(fp) || fsync(fileno(fp)) != 0) {
        st = pl_fail(PL_ERR_IO, "%s: write failed: %s", tmp_path, strerror(errno));
        goto fail;
    }
    const int close_rc = fclose(fp);
    fp = NULL;
    if (close_rc != 0) {
        st = pl_fail(PL_ERR_IO, "%s: close failed: %s", tmp_path, strerror(errno));
        goto fail;
    }
    if (rename(tmp_path, out_path) != 0) {
        st = pl_fail(PL_ERR_IO, "%s: cannot rename %s to it: %s", out_path, tmp_path, strerror(errno));
        goto fail;
    }
    free(tmp_path);
    tmp_path = NULL;

fail:
    if (fp) fclose(fp);
    if (tmp_path) {
        remove(tmp_path);
        free(tmp_path);
    }
    if (scratch)
        for (int i = 0; i < n_threads; i++) free(scratch[i]);
    free(scratch);
    free(outbuf);
    pool_free(pool);
    if (plan)
        for (uint64_t i = 0; i < f->n_tensors; i++) free(plan[i].name);
    free(plan);
    gguf_writer_free(w);
    gguf_close(f);
    return st;
}
