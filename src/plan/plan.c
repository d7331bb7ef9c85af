/*
 * Memory plans: the numbers of a model from its GGUF header (plan_describe),
 * the layout of a context's blocks (plan_ctx_layout_make, which pl_ctx_new
 * allocates from), the streaming window, and the whole plan with its verdict
 * against the limits (plan_compute, pl_plan_file).
 *
 * What is counted resident while generating, with the file mapped: the header
 * pages (parsed), every layer and output weight (read each token), and of an
 * untied token embedding only the rows of tokens seen, at most one row (and
 * its page) per context position. --mlock and --no-mmap make the whole image
 * resident. Buffers are page-rounded the way mem_alloc maps them.
 */
#include "plan.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint64_t plan_round(uint64_t n, uint64_t a) { return (n + a - 1) / a * a; }

/* ------------------------------------------------------------ describe */

/* Table size the tokenizer and GGUF reader use for n entries (power of two >= 2n). */
static uint64_t plan_table(uint64_t n) {
    uint64_t s = 16;
    while (s < 2 * n) s *= 2;
    return s;
}

/* Heap bytes of the GGUF descriptors and the tokenizer built from them: a
 * count of what gguf_read.c and tokenizer.c allocate, per entry, checked
 * against glibc's own figures by tests/test_plan.c. */
uint64_t plan_tok_bytes(const gguf_file *f) {
    uint64_t b = f->n_kv * 64 + plan_table(f->n_kv) * 8 + f->n_tensors * 80 + plan_table(f->n_tensors) * 8;
    uint64_t n_tok = 0, text = 0, n_merge = 0, merge_text = 0;
    for (uint64_t i = 0; i < f->n_kv; i++) {
        const gguf_kv *kv = &f->kv[i];
        if (kv->type == GGUF_TYPE_ARRAY && kv->arr_type == GGUF_TYPE_STRING) b += kv->arr_n * 16;
        if (!kv->strs || kv->type != GGUF_TYPE_ARRAY || kv->arr_type != GGUF_TYPE_STRING) continue;
        uint64_t sum = 0;
        for (uint64_t j = 0; j < kv->arr_n; j++) sum += kv->strs[j].len;
        if (gguf_str_eq(kv->key, "tokenizer.ggml.tokens")) n_tok = kv->arr_n, text = sum;
        if (gguf_str_eq(kv->key, "tokenizer.ggml.merges")) n_merge = kv->arr_n, merge_text = sum;
    }
    /* vocabulary: text pool, offsets, scores, attributes, hash table, rendered pieces */
    b += 2 * text + n_tok * (4 + 4 + 1 + 4) + plan_table(n_tok) * 4;
    /* merges: text pool, offsets, split points, hash table */
    b += merge_text + n_merge * 8 + plan_table(n_merge) * 4;
    /* allocator rounding and the small fixed parts */
    return b + b / 16 + 64 * 1024;
}

static void plan_add_shape(plan_model *pm, uint32_t type, int64_t n_in) {
    for (int i = 0; i < pm->n_shapes; i++)
        if (pm->shapes[i].type == type && pm->shapes[i].n_in == n_in) return;
    if (pm->n_shapes < PLAN_MAX_SHAPES) {
        pm->shapes[pm->n_shapes].type = type;
        pm->shapes[pm->n_shapes].n_in = n_in;
        pm->n_shapes++;
    }
}

/* Layer index of a "blk.N." tensor name, or -1. */
static int plan_layer_of(gguf_str name) {
    if (name.len < 6 || memcmp(name.ptr, "blk.", 4) != 0) return -1;
    int n = 0;
    uint64_t i = 4;
    for (; i < name.len && name.ptr[i] >= '0' && name.ptr[i] <= '9' && n < (1 << 20); i++) n = n * 10 + (name.ptr[i] - '0');
    return i > 4 && i < name.len && name.ptr[i] == '.' ? n : -1;
}

pl_status plan_check_sizes(const plan_model *pm, const char *what) {
    /* bounds that keep every product in a plan far from 2^64 */
    if (pm->n_embd > PLAN_MAX_DIM || pm->n_ff > PLAN_MAX_FF || pm->n_layer > PLAN_MAX_LAYERS || pm->n_head > PLAN_MAX_DIM ||
        pm->n_head_kv > PLAN_MAX_DIM || pm->head_dim > PLAN_MAX_DIM || (int64_t)pm->n_head * pm->head_dim > PLAN_MAX_DIM ||
        pm->n_ctx_train > PLAN_MAX_CTX || pm->n_vocab > PLAN_MAX_FF)
        return pl_fail(PL_ERR_FORMAT, "%s: implausible sizes (embd %d, ffn %d, layers %d, heads %d/%d of %d, context %d, vocab %d)",
                       what, pm->n_embd, pm->n_ff, pm->n_layer, pm->n_head, pm->n_head_kv, pm->head_dim, pm->n_ctx_train,
                       pm->n_vocab);
    return PL_OK;
}

void plan_model_clear(plan_model *pm) {
    if (!pm) return;
    free(pm->layers);
    memset(pm, 0, sizeof *pm);
}

pl_status plan_describe(const gguf_file *f, plan_model *pm) {
    memset(pm, 0, sizeof *pm);
    gguf_str arch;
    pl_status st = gguf_get_str(f, "general.architecture", &arch);
    if (st) return st;
    if (arch.len >= sizeof pm->arch) arch.len = sizeof pm->arch - 1;
    memcpy(pm->arch, arch.ptr, arch.len);
    const char *a = pm->arch;
    if ((st = gguf_get_arch_int(f, a, "embedding_length", true, 0, &pm->n_embd)) ||
        (st = gguf_get_arch_int(f, a, "block_count", true, 0, &pm->n_layer)) ||
        (st = gguf_get_arch_int(f, a, "attention.head_count", true, 0, &pm->n_head)) ||
        (st = gguf_get_arch_int(f, a, "feed_forward_length", true, 0, &pm->n_ff)) ||
        (st = gguf_get_arch_int(f, a, "context_length", false, 2048, &pm->n_ctx_train)))
        return st;
    if ((st = gguf_get_arch_int(f, a, "attention.head_count_kv", false, (uint32_t)pm->n_head, &pm->n_head_kv))) return st;
    if (pm->n_embd <= 0 || pm->n_layer <= 0 || pm->n_head <= 0 || pm->n_head_kv <= 0 || pm->n_ff <= 0)
        return pl_fail(PL_ERR_FORMAT, "%s: zero in hyper-parameters (embd %d, layers %d, heads %d/%d, ffn %d)", f->path,
                       pm->n_embd, pm->n_layer, pm->n_head, pm->n_head_kv, pm->n_ff);
    if ((st = gguf_get_arch_int(f, a, "attention.key_length", false, (uint32_t)(pm->n_embd / pm->n_head), &pm->head_dim)))
        return st;
    if ((st = gguf_get_arch_int(f, a, "rope.dimension_count", false, (uint32_t)pm->head_dim, &pm->n_rot))) return st;
    if (pm->head_dim <= 0 || pm->n_rot <= 0 || pm->n_rot > pm->head_dim)
        return pl_fail(PL_ERR_FORMAT, "%s: head dimension %d / rope dimensions %d out of range", f->path, pm->head_dim,
                       pm->n_rot);
    if (pm->n_ctx_train <= 0) pm->n_ctx_train = 2048;
    if ((st = plan_check_sizes(pm, f->path))) return st;

    const gguf_kv *toks = gguf_get_kv(f, "tokenizer.ggml.tokens");
    const gguf_tensor *emb = gguf_find_tensor(f, "token_embd.weight");
    if (!emb) return pl_fail(PL_ERR_FORMAT, "%s: tensor 'token_embd.weight' is missing", f->path);
    pm->n_vocab = toks && toks->type == GGUF_TYPE_ARRAY && toks->arr_n <= PLAN_MAX_FF ? (int)toks->arr_n
                                                                                     : (int)(emb->ne[1] <= PLAN_MAX_FF ? emb->ne[1] : 0);
    if (pm->n_vocab <= 0 || emb->ne[1] != pm->n_vocab)
        return pl_fail(PL_ERR_FORMAT, "%s: token_embd.weight has %lld rows but the vocabulary has %d tokens", f->path,
                       (long long)emb->ne[1], pm->n_vocab);
    pm->embd_bytes = emb->nbytes;
    pm->embd_row_bytes = emb->nbytes / (uint64_t)emb->ne[1];
    const gguf_tensor *out = gguf_find_tensor(f, "output.weight");
    pm->tied = out == NULL;
    const gguf_tensor *om = out ? out : emb;
    plan_add_shape(pm, om->type, om->ne[0]);

    pm->file_bytes = f->size;
    pm->header_bytes = f->data_offset;
    pm->layers = calloc((size_t)pm->n_layer, sizeof *pm->layers);
    if (!pm->layers) return pl_fail(PL_ERR_NOMEM, "%s: no memory for %d layer descriptions", f->path, pm->n_layer);
    for (int il = 0; il < pm->n_layer; il++) pm->layers[il].start = UINT64_MAX;
    for (uint64_t i = 0; i < f->n_tensors; i++) {
        const gguf_tensor *t = &f->tensors[i];
        pm->weights_bytes += t->nbytes;
        const int il = plan_layer_of(t->name);
        if (il < 0) continue;
        if (il >= pm->n_layer) {
            char *nm = gguf_str_dup(t->name);
            st = pl_fail(PL_ERR_FORMAT, "%s: tensor '%s' belongs to a layer past block_count %d", f->path,
                         nm ? nm : "?", pm->n_layer);
            free(nm);
            plan_model_clear(pm);
            return st;
        }
        plan_layer *l = &pm->layers[il];
        const uint64_t b = f->data_offset + t->offset;
        if (b < l->start) l->start = b;
        if (b + t->nbytes > l->end) l->end = b + t->nbytes;
        l->tensor_bytes += t->nbytes;
        pm->layers_bytes += t->nbytes;
        if (t->n_dims >= 2 && t->ne[1] > 1) plan_add_shape(pm, t->type, t->ne[0]);
    }
    /* a tied embedding is the output matrix too: packed, its lookups read
     * rows from the copy (kern_row_to_float) */
    const bool tied = gguf_find_tensor(f, "output.weight") == NULL;
    for (uint64_t i = 0; i < f->n_tensors; i++) {
        const gguf_tensor *t = &f->tensors[i];
        const bool packable = plan_packable_name(t->name) || (tied && gguf_str_eq(t->name, "token_embd.weight"));
        if (t->n_dims == 2 && packable && kern_pack_pays(t->type, t->ne[0], t->ne[1])) {
            pm->pack_bytes += t->nbytes;
            pm->pack_held += mem_held((size_t)t->nbytes);
        }
    }
    const uint64_t pg = mem_page_size();
    for (int il = 0; il < pm->n_layer; il++) {
        plan_layer *l = &pm->layers[il];
        if (l->start == UINT64_MAX) {
            plan_model_clear(pm);
            return pl_fail(PL_ERR_FORMAT, "%s: layer %d has no tensors", f->path, il);
        }
        /* one page more: the span is read from a page boundary */
        const uint64_t span = plan_round(l->end - l->start, pg) + pg;
        if (span > pm->slot_bytes) pm->slot_bytes = span;
    }
    pm->tok_bytes = plan_tok_bytes(f);
    return PL_OK;
}

const char *const plan_layer_mat_names[PLAN_LAYER_MATS] = {"attn_q.weight",   "attn_k.weight", "attn_v.weight",
                                                            "attn_output.weight", "ffn_gate.weight", "ffn_up.weight",
                                                            "ffn_down.weight"};

bool plan_packable_name(gguf_str name) {
    if (gguf_str_eq(name, "output.weight")) return true;
    if (plan_layer_of(name) < 0) return false;
    for (int i = 0; i < PLAN_LAYER_MATS; i++) {
        const size_t n = strlen(plan_layer_mat_names[i]);
        /* "blk.N." + the name */
        if (name.len > n + 1 && name.ptr[name.len - n - 1] == '.' &&
            memcmp(name.ptr + name.len - n, plan_layer_mat_names[i], n) == 0)
            return true;
    }
    return false;
}

bool plan_packs(const plan_model *pm, const plan_opts *o, bool stream) {
    return o->repack && pm->pack_bytes && !stream && !o->no_mmap && !o->mlock && !o->copied_bytes;
}

/* ------------------------------------------------------------ options */

void plan_opts_from_params(const plan_model *pm, const pl_model_params *mp, const pl_ctx_params *cp, plan_opts *o) {
    const pl_model_params m = mp ? *mp : pl_model_default_params();
    const pl_ctx_params c = cp ? *cp : pl_ctx_default_params();
    memset(o, 0, sizeof *o);
    o->n_ctx = c.n_ctx > 0 ? c.n_ctx : (pm->n_ctx_train < 4096 ? pm->n_ctx_train : 4096);
    o->n_batch = c.n_batch > 0 ? c.n_batch : 512;
    if (o->n_batch > o->n_ctx) o->n_batch = o->n_ctx;
    o->n_threads = c.n_threads > 0 ? c.n_threads : pl_cpu_count();
    o->kv_type = c.kv_type;
    o->logits_all = c.logits_all != 0;
    o->no_mmap = m.no_mmap != 0;
    o->mlock = m.mlock != 0;
    o->repack = !m.no_repack;
    o->prefault = !c.no_prefault;
    o->stream = m.stream;
    o->stream_window_bytes = c.stream_window_bytes;
}

/* ------------------------------------------------------------ layout */

pl_status plan_ctx_layout_make(const plan_model *pm, const plan_opts *o, plan_ctx_layout *L) {
    memset(L, 0, sizeof *L);
    const uint64_t C = (uint64_t)pm->n_embd, HD = (uint64_t)pm->n_head * pm->head_dim,
                   GD = (uint64_t)pm->n_head_kv * pm->head_dim, F = (uint64_t)pm->n_ff, T = (uint64_t)o->n_batch,
                   P = (uint64_t)o->n_ctx, V = (uint64_t)pm->n_vocab, half = (uint64_t)pm->n_rot / 2;
    switch (o->kv_type) {
    case PL_KV_F16: L->kv_row_bytes = GD * sizeof(pl_fp16); break;
    case PL_KV_Q8_0:
        if (pm->head_dim % quant_get(QT_Q8_0)->blck)
            return pl_fail(PL_ERR_UNSUPPORTED, "a q8_0 KV cache needs a head size that is a multiple of %d (this model's is %d)",
                           quant_get(QT_Q8_0)->blck, pm->head_dim);
        L->kv_row_bytes = quant_row_size(QT_Q8_0, (int64_t)GD);
        break;
    default: return pl_fail(PL_ERR_INVALID_ARG, "unknown KV cache type %d (f16 = 0, q8_0 = 1)", o->kv_type);
    }
    L->kv_bytes = 2 * (uint64_t)pm->n_layer * P * L->kv_row_bytes;
    L->logits_rows = o->logits_all ? o->n_batch : 1;
    uint64_t act = 0;
    for (int i = 0; i < pm->n_shapes; i++) {
        kern_matrix w = {.type = pm->shapes[i].type, .n_in = pm->shapes[i].n_in, .n_out = 1};
        uint64_t s = kern_matmul_scratch(&w, o->n_batch);
        if (s > act) act = s;
        /* a packed matrix of the shape converts its activations for the
         * packed kernel below KERN_PACKED_TILE_MIN_T tokens and for the tiled
         * one from there: room for whichever is larger */
        const int g = kern_pack_group_rows();
        if (kern_pack_supported(w.type, w.n_in, g)) {
            w.n_out = g;
            w.packed = &w;
            const int below = o->n_batch < KERN_PACKED_TILE_MIN_T ? o->n_batch : KERN_PACKED_TILE_MIN_T - 1;
            if ((s = kern_matmul_scratch(&w, o->n_batch)) > act) act = s;
            if ((s = kern_matmul_scratch(&w, below)) > act) act = s;
        }
    }
    const uint64_t sizes[PB_COUNT] = {
        [PB_X] = T * C * 4,          [PB_XN] = T * C * 4,        [PB_Q] = T * HD * 4,
        [PB_K] = T * GD * 4,         [PB_V] = T * GD * 4,        [PB_ATT_OUT] = T * HD * 4,
        [PB_ATT_SCORES] = (uint64_t)o->n_threads * P * 4,
        [PB_GATE] = T * F * 4,       [PB_UP] = T * F * 4,
        [PB_LOGITS] = (uint64_t)L->logits_rows * V * 4,
        [PB_ROPE_COS] = P * half * 4, [PB_ROPE_SIN] = P * half * 4,
        [PB_ACT] = act,
    };
    uint64_t at = 0;
    for (int i = 0; i < PB_COUNT; i++) {
        L->off[i] = at;
        L->size[i] = sizes[i];
        at = plan_round(at + (sizes[i] ? sizes[i] : 1), PLAN_ALIGN);
    }
    L->scratch_bytes = at;
    return PL_OK;
}

/* ------------------------------------------------------------ streaming */

bool plan_layer_pinned(int il, int n_layer, int n_pinned) {
    if (n_pinned <= 0) return false;
    if (n_pinned >= n_layer) return true;
    /* Bresenham: layer il is pinned when the running count steps up at it */
    return (int64_t)(il + 1) * n_pinned / n_layer > (int64_t)il * n_pinned / n_layer;
}

pl_status plan_stream_make(const plan_model *pm, uint64_t window_bytes, plan_stream *s) {
    memset(s, 0, sizeof *s);
    if (!pm->slot_bytes) return pl_fail(PL_ERR_INVALID_ARG, "streaming needs the layer layout of the file");
    const uint64_t n = window_bytes / pm->slot_bytes;
    const int min_slots = pm->n_layer > 1 ? 2 : 1;
    if (n < (uint64_t)min_slots)
        return pl_fail(PL_ERR_BUDGET, "a streaming window needs at least %d layer slots of %.1f MiB (%.1f MiB), %.1f MiB is left for it",
                       min_slots, pm->slot_bytes / 1048576.0, min_slots * pm->slot_bytes / 1048576.0,
                       window_bytes / 1048576.0);
    if (n >= (uint64_t)pm->n_layer) {
        s->n_pinned = pm->n_layer;
        s->n_slots = 0;
    } else {
        s->n_slots = min_slots;
        s->n_pinned = (int)n - min_slots;
    }
    s->window_bytes = (uint64_t)(s->n_pinned + s->n_slots) * pm->slot_bytes;
    for (int il = 0; il < pm->n_layer; il++)
        if (!plan_layer_pinned(il, pm->n_layer, s->n_pinned))
            s->bytes_per_step += pm->layers ? pm->layers[il].end - pm->layers[il].start : pm->slot_bytes;
    return PL_OK;
}

/* ------------------------------------------------------------ the plan */

uint64_t plan_overhead_bytes(int n_threads) {
    /* code and data of the engine and libc, stdio buffers and the f16 table
     * (measured on x86-64 Linux: tests/test_plan.c checks the total), plus
     * the touched part of each worker's stack */
    return 6u * 1024 * 1024 + (uint64_t)(n_threads > 0 ? n_threads : 1) * 128 * 1024;
}

/* Resident bytes of an untied embedding after n_ctx positions: at most one
 * row per position (tokens seen), each touching whole pages. An upper bound:
 * text repeats tokens, so fewer rows are usually touched. */
static uint64_t plan_embd_resident(const plan_model *pm, int n_ctx) {
    if (pm->tied || !pm->embd_row_bytes) return pm->embd_bytes;
    const uint64_t pg = mem_page_size();
    const uint64_t rows = (uint64_t)n_ctx < (uint64_t)pm->n_vocab ? (uint64_t)n_ctx : (uint64_t)pm->n_vocab;
    const uint64_t b = rows * plan_round(pm->embd_row_bytes, pg);
    return b < pm->embd_bytes ? b : pm->embd_bytes;
}

typedef struct plan_parts {
    uint64_t resident, mapped, copied, locked, packed, kv, scratch, tok, overhead, total, address, data;
    uint64_t stream_step;
    plan_stream st;
    bool stream;
} plan_parts;

/* The figures for one context size; rss_limit sizes a streaming window when
 * o->stream_window_bytes is 0 (the window gets what the limit leaves). */
static pl_status plan_parts_make(const plan_model *pm, const plan_opts *o, bool stream, uint64_t rss_limit,
                                 plan_parts *p) {
    memset(p, 0, sizeof *p);
    if (stream && (o->no_mmap || o->mlock))
        return pl_fail(PL_ERR_INVALID_ARG, "streaming reads layers from the mapped file: not with --no-mmap or --mlock");
    plan_ctx_layout L;
    pl_status st = plan_ctx_layout_make(pm, o, &L);
    if (st) return st;
    const int threads = o->n_threads + (stream ? 1 : 0);
    p->kv = mem_held((size_t)L.kv_bytes);
    p->scratch = mem_held((size_t)L.scratch_bytes);
    p->tok = pm->tok_bytes;
    p->overhead = plan_overhead_bytes(threads);
    const uint64_t non_layer = pm->weights_bytes - pm->layers_bytes;
    const uint64_t embd_res = plan_embd_resident(pm, o->n_ctx);
    /* weights the forward pass reads, with the file mapped */
    const uint64_t mapped_res = pm->header_bytes + non_layer - pm->embd_bytes + embd_res;
    if (o->no_mmap || o->copied_bytes * 2 >= pm->file_bytes) {
        /* the image is in anonymous memory (no_mmap, or a source that could
         * not be mapped in place): all of it resident */
        p->copied = o->no_mmap ? pm->file_bytes : o->copied_bytes;
        p->mapped = pm->file_bytes - p->copied;
        p->resident = pm->file_bytes;
    } else if (o->mlock) {
        p->resident = p->mapped = p->locked = pm->file_bytes;
    } else {
        p->mapped = mapped_res + (stream ? 0 : pm->layers_bytes);
        p->resident = p->mapped;
        /* packed copies stand in for their matrices' file pages, which the
         * loader drops as it copies them: same resident bytes, now anonymous */
        if (plan_packs(pm, o, stream)) {
            p->packed = pm->pack_held;
            p->mapped -= pm->pack_bytes;
            p->copied += p->packed;
            p->resident += p->packed - pm->pack_bytes; /* page rounding of the copies */
        }
        /* a few copied pages (a synthesized split header, pages two chunks
         * share): beyond the header they add to what is resident */
        if (o->copied_bytes) {
            p->copied = o->copied_bytes;
            const uint64_t extra = o->copied_bytes > pm->header_bytes ? o->copied_bytes - pm->header_bytes : 0;
            p->resident += extra;
            p->mapped = p->resident > p->copied ? p->resident - p->copied : 0;
        }
    }
    /* matrices a LoRA adapter replaced: f32 copies on top of the image, whose
     * pages the merge read (mapped figures above keep counting them) */
    p->copied += pm->lora_bytes;
    p->resident += pm->lora_bytes;
    if (stream) {
        uint64_t window = o->stream_window_bytes;
        if (!window) {
            const uint64_t others = p->resident + p->kv + p->scratch + p->tok + p->overhead;
            window = rss_limit > others ? rss_limit - others : 0;
            if (!rss_limit) window = pm->layers_bytes + (uint64_t)pm->n_layer * pm->slot_bytes;
        }
        if ((st = plan_stream_make(pm, window, &p->st))) return st;
        p->stream = true; /* a window that holds every layer just reads nothing per token */
        p->copied += p->st.window_bytes;
        p->resident += p->st.window_bytes;
        p->stream_step = p->st.bytes_per_step;
    }
    p->total = p->resident + p->kv + p->scratch + p->tok + p->overhead;
    /* address space: the whole image is mapped; each thread reserves a stack */
    const uint64_t stacks = (uint64_t)threads * 8 * 1024 * 1024;
    p->address = pm->file_bytes + p->copied + p->kv + p->scratch + p->tok + p->overhead + stacks;
    p->data = p->copied + p->kv + p->scratch + p->tok + stacks;
    return PL_OK;
}

static bool plan_parts_fit(const plan_parts *p, const plan_limits *lim) {
    return (!lim->rss || p->total <= lim->rss) && (!lim->as || p->address <= lim->as) &&
           (!lim->data || p->data <= lim->data);
}

/* By how much the tightest limit is passed (0 when it fits), and which
 * limit that is (the one passed by most) in out's limit fields. */
static uint64_t plan_parts_over(const plan_parts *p, const plan_limits *lim, pl_plan *out) {
    const struct { int kind; uint64_t need, room, set; } ls[] = {
        {PL_LIMIT_BUDGET, p->total, lim->rss, 0},
        {PL_LIMIT_AS, p->address, lim->as, lim->as_set},
        {PL_LIMIT_DATA, p->data, lim->data, lim->data_set},
    };
    uint64_t over = 0;
    for (size_t i = 0; i < sizeof ls / sizeof ls[0]; i++)
        if (ls[i].room && ls[i].need > ls[i].room && ls[i].need - ls[i].room > over) {
            over = ls[i].need - ls[i].room;
            out->limit = ls[i].kind;
            out->limit_need_bytes = (int64_t)ls[i].need;
            out->limit_room_bytes = (int64_t)ls[i].room;
            out->limit_set_bytes = (int64_t)ls[i].set;
        }
    return over;
}

/* Parts at n_ctx, streaming as the options say (AUTO: only when needed). */
static pl_status plan_at(const plan_model *pm, const plan_opts *o0, int n_ctx, const plan_limits *lim, plan_parts *p) {
    plan_opts o = *o0;
    o.n_ctx = n_ctx;
    if (o.n_batch > n_ctx) o.n_batch = n_ctx;
    pl_status st;
    if (o.stream == PL_STREAM_ON) return plan_parts_make(pm, &o, true, lim->rss, p);
    if ((st = plan_parts_make(pm, &o, false, lim->rss, p))) return st;
    if (o.stream == PL_STREAM_AUTO && !plan_parts_fit(p, lim) && !o.no_mmap && !o.mlock && lim->rss) {
        plan_parts s;
        pl_status st2 = plan_parts_make(pm, &o, true, lim->rss, &s);
        if (st2 == PL_OK && plan_parts_fit(&s, lim)) *p = s;
    }
    return PL_OK;
}

uint64_t plan_fixed_bytes(const plan_model *pm, const plan_opts *o) {
    plan_parts p;
    plan_opts one = *o;
    one.n_ctx = one.n_batch = 1;
    one.stream = PL_STREAM_OFF;
    if (plan_parts_make(pm, &one, false, 0, &p)) return 0;
    return p.resident + p.tok + p.overhead;
}

pl_status plan_compute(const plan_model *pm, const plan_opts *o, const plan_limits *lim, pl_plan *out) {
    memset(out, 0, sizeof *out);
    if (o->n_ctx < 1 || o->n_ctx > PLAN_MAX_CTX || o->n_batch < 1 || o->n_threads < 1 || o->n_threads > 4096)
        return pl_fail(PL_ERR_INVALID_ARG, "plan: context %d (1..%d), batch %d, threads %d out of range", o->n_ctx,
                       PLAN_MAX_CTX, o->n_batch, o->n_threads);
    plan_parts p;
    bool no_window = false;
    pl_status st = plan_at(pm, o, o->n_ctx, lim, &p);
    if (st == PL_ERR_BUDGET) {
        /* streaming asked for, but no window of two layers fits: plan the
         * in-memory figures and report that they do not fit */
        plan_opts off = *o;
        off.stream = PL_STREAM_OFF;
        if ((st = plan_at(pm, &off, o->n_ctx, lim, &p))) return st;
        no_window = true;
    } else if (st) {
        return st;
    }
    out->file_bytes = (int64_t)pm->file_bytes;
    out->weights_bytes = (int64_t)pm->weights_bytes;
    out->weights_resident = (int64_t)p.resident;
    out->weights_mapped = (int64_t)p.mapped;
    out->weights_copied = (int64_t)p.copied;
    out->weights_locked = (int64_t)p.locked;
    out->weights_packed = (int64_t)p.packed;
    out->kv_bytes = (int64_t)p.kv;
    out->scratch_bytes = (int64_t)p.scratch;
    out->tokenizer_bytes = (int64_t)p.tok;
    out->overhead_bytes = (int64_t)p.overhead;
    out->total_bytes = (int64_t)p.total;
    out->address_bytes = (int64_t)p.address;
    out->budget_bytes = (int64_t)lim->rss;
    snprintf(out->budget_source, sizeof out->budget_source, "%s", lim->source);
    out->n_ctx = o->n_ctx;
    out->n_batch = o->n_batch < o->n_ctx ? o->n_batch : o->n_ctx;
    out->n_threads = o->n_threads;
    out->kv_type = o->kv_type;
    out->n_ctx_train = pm->n_ctx_train;
    out->n_layer = pm->n_layer;
    out->stream = p.stream;
    out->n_layer_resident = p.stream ? p.st.n_pinned : pm->n_layer;
    out->n_stream_slots = p.stream ? p.st.n_slots : 0;
    out->stream_bytes_per_token = (int64_t)p.stream_step;
    out->stream_window_bytes = p.stream ? (int64_t)p.st.window_bytes : 0;
    {
        plan_ctx_layout L;
        if (plan_ctx_layout_make(pm, o, &L) == PL_OK)
            out->kv_bytes_per_token = (int64_t)(2 * (uint64_t)pm->n_layer * L.kv_row_bytes);
    }
    const bool fits = !no_window && plan_parts_fit(&p, lim);
    out->over_bytes = (int64_t)plan_parts_over(&p, lim, out);
    if (!fits && !out->over_bytes) { /* no streaming window fits what the budget leaves */
        out->over_bytes = (int64_t)(2 * pm->slot_bytes); /* the window's minimum */
        out->limit = PL_LIMIT_BUDGET;
        out->limit_need_bytes = (int64_t)p.total + out->over_bytes;
        out->limit_room_bytes = (int64_t)lim->rss;
    }
    /* the largest context that fits: plans grow with n_ctx, so bisect */
    int lo = 0, hi = pm->n_ctx_train;
    if (fits && o->n_ctx > hi) hi = o->n_ctx;
    while (lo < hi) {
        const int mid = lo + (hi - lo + 1) / 2;
        plan_parts q;
        if (plan_at(pm, o, mid, lim, &q) == PL_OK && plan_parts_fit(&q, lim)) lo = mid;
        else hi = mid - 1;
    }
    out->max_ctx = lo;
    out->fit = fits ? PL_FIT_YES : lo > 0 ? PL_FIT_SMALLER_CTX : PL_FIT_NO;
    return PL_OK;
}

/* ------------------------------------------------------------ public */

pl_status pl_plan_file(const char *path, const pl_model_params *mp, const pl_ctx_params *cp, pl_plan *out) {
    if (!path || !out) return pl_fail(PL_ERR_INVALID_ARG, "pl_plan_file: path and out are required");
    memset(out, 0, sizeof *out);
    gguf_file *f = NULL;
    plan_model pm;
    memset(&pm, 0, sizeof pm);
    const gguf_open_opts go = {.verify = false};
    pl_status st = gguf_open_any(path, &go, &f);
    if (st) return st;
    if ((st = plan_describe(f, &pm))) goto done;
    plan_opts o;
    plan_opts_from_params(&pm, mp, cp, &o);
    o.copied_bytes = f->copied_bytes;
    plan_limits lim;
    if ((st = plan_limits_resolve(mp ? mp->budget_bytes : 0, &lim))) goto done;
    st = plan_compute(&pm, &o, &lim, out);
done:
    if (st) pl_fail_prefix(st, "planning %s", path);
    plan_model_clear(&pm);
    gguf_close(f);
    return st;
}
