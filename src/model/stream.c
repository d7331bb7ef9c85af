/*
 * Streaming layers for models whose weights do not fit the budget. A context
 * owns one accounted window: n_pinned layers read once and kept (spread
 * evenly over the depth, so reading overlaps with their compute), and
 * n_slots slots through which the other layers cycle. A loader thread reads
 * the streamed layers in the order the forward pass will use them, each as
 * one large read of its file span (O_DIRECT where the file system allows,
 * bypassing the page cache), up to n_slots ahead; the forward pass
 * takes a layer (waiting only if the read is not done), computes, and hands
 * the slot back. The page cache is never relied on: a layer read is a layer
 * resident, and nothing else of the layers is touched through the mapping.
 *
 * Ring invariant: item j (j = 0, 1, ...) is streamed layer order[(base + j) %
 * k] in slot j % n_slots; the loader fills item j only once item j - n_slots
 * was released, and the forward pass uses item j only once it is filled. A
 * step that asks for another layer than the next item (a cancelled or failed
 * step left the cycle midway) restarts the ring at that layer (gen changes;
 * a read in flight for the old ring is discarded).
 */
#include "model.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct model_stream {
    pl_model *m;
    int n_layer, n_pinned, n_slots, k;
    int *order;            /* (k) streamed layers, ascending */
    int *order_pos;        /* (L) index of a layer in order, -1 when pinned */
    uint8_t *window;       /* (n_pinned + n_slots) * slot_bytes, accounted */
    size_t window_bytes, slot_bytes;
    model_layer *pinned;   /* (L) layers pointing into the window (pinned ones) */
    model_layer *slot;     /* (n_slots) the layer each slot holds */
    uint64_t pg;
    pthread_t thread;
    bool thread_started;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    uint64_t gen;          /* bumped by a restart */
    int base;              /* index in order of item 0 */
    uint64_t produced, consumed;
    bool quit;
    pl_status err;         /* a failed read: every later take fails with it */
    int *dfd;              /* per image source: an O_DIRECT descriptor, -1 = read buffered */
    int n_dfd;
    char err_msg[512];
};

/* p moved into the buffer when it points into the span [lo, hi); other
 * pointers (NULL, LoRA-merged copies) stay. */
static const void *stream_move(const void *p, uintptr_t lo, uintptr_t hi, uint8_t *dst) {
    const uintptr_t a = (uintptr_t)p;
    return a >= lo && a < hi ? (const void *)(dst + (a - lo)) : p;
}

/* The layer il as it looks with its span [start, end) at buffer b. */
static model_layer stream_rebase(const pl_model *m, int il, uint8_t *b) {
    const plan_layer *pl = &m->pm.layers[il];
    const uint8_t *img = m->gguf->base;
    const uintptr_t lo = (uintptr_t)(img + pl->start), hi = (uintptr_t)(img + pl->end);
    uint8_t *dst = b + (lo % mem_page_size()); /* keep each tensor's alignment */
    model_layer l = m->layers[il];
    const float **vecs[] = {&l.attn_norm, &l.bq, &l.bk, &l.bv, &l.q_norm, &l.k_norm, &l.ffn_norm};
    for (size_t i = 0; i < sizeof vecs / sizeof vecs[0]; i++) *vecs[i] = stream_move(*vecs[i], lo, hi, dst);
    for (int i = 0; i < PLAN_LAYER_MATS; i++) {
        kern_matrix *w = model_layer_mat(&l, i);
        w->data = stream_move(w->data, lo, hi, dst);
    }
    return l;
}

/* Read [foff, foff+n) of a piece into dst with O_DIRECT: whole pages from
 * the page boundary below foff (dst - foff % pg must be page-aligned and the
 * buffer must have room up to the page boundary above). The page cache is
 * bypassed: no readahead waste, nothing for a cgroup to reclaim. -1 when the
 * file system refuses (the caller reads buffered), 0 done, else an error. */
static int stream_read_direct(int dfd, uint8_t *dst, uint64_t foff, uint64_t n, uint64_t pg) {
    const uint64_t a0 = foff / pg * pg, need = foff + n, a1 = (need + pg - 1) / pg * pg;
    uint8_t *d0 = dst - (foff - a0);
    for (uint64_t at = a0; at < need;) {
        const size_t want = a1 - at > (64u << 20) ? (64u << 20) : (size_t)(a1 - at);
        const ssize_t got = pread(dfd, d0 + (at - a0), want, (off_t)at);
        if (got < 0 && errno == EINTR) continue;
        if (got < 0) return at == a0 && errno == EINVAL ? -1 : 1;
        if (got == 0) return 1; /* the file ends before the span */
        at += (uint64_t)got;
    }
    return 0;
}

/* Read layer il's span into buffer b, from the files behind the image. */
static pl_status stream_read(model_stream *s, int il, uint8_t *b) {
    const pl_model *m = s->m;
    const plan_layer *pl = &m->pm.layers[il];
    const gguf_file *g = m->gguf;
    uint8_t *dst = b + ((uintptr_t)(g->base + pl->start) % s->pg);
    for (uint64_t at = pl->start; at < pl->end;) {
        uint64_t foff = 0, avail = 0;
        const int fd = gguf_source_at(g, at, &foff, &avail);
        uint64_t n = pl->end - at;
        if (fd < 0) { /* bytes the loader built in memory: copy them */
            memcpy(dst + (at - pl->start), g->base + at, (size_t)n);
            break;
        }
        if (n > avail) n = avail;
        /* one piece holds the whole span and its pages line up: direct I/O */
        int src = -1;
        for (int i = 0; i < g->n_sources; i++)
            if (g->sources[i].fd == fd) src = i;
        uint8_t *d = dst + (at - pl->start);
        if (src >= 0 && s->dfd[src] >= 0 && at == pl->start && n == pl->end - at && ((uintptr_t)d - foff) % s->pg == 0) {
            const int r = stream_read_direct(s->dfd[src], d, foff, n, s->pg);
            if (r == 0) {
                mem_note_read(n);
                break;
            }
            if (r > 0)
                return pl_fail(PL_ERR_IO, "%s: streaming layer %d: direct read failed at byte %llu: %s", m->name, il,
                               (unsigned long long)foff, strerror(errno));
            close(s->dfd[src]); /* refused: read this piece buffered from now on */
            s->dfd[src] = -1;
        }
        while (n) {
            const size_t want = n > (256u << 20) ? (256u << 20) : (size_t)n;
            const ssize_t got = pread(fd, dst + (at - pl->start), want, (off_t)foff);
            if (got < 0 && errno == EINTR) continue;
            if (got <= 0)
                return pl_fail(PL_ERR_IO, "%s: streaming layer %d: read failed at byte %llu: %s", m->name, il,
                               (unsigned long long)foff, got < 0 ? strerror(errno) : "end of file");
            mem_note_read((uint64_t)got);
            at += (uint64_t)got;
            foff += (uint64_t)got;
            n -= (uint64_t)got;
        }
    }
    return PL_OK;
}

static void *stream_loader(void *arg) {
    model_stream *s = arg;
    pthread_mutex_lock(&s->mu);
    for (;;) {
        while (!s->quit && !s->err && s->produced - s->consumed >= (uint64_t)s->n_slots) pthread_cond_wait(&s->cv, &s->mu);
        if (s->quit || s->err) break;
        const uint64_t gen = s->gen, j = s->produced;
        const int il = s->order[(s->base + (int)(j % (uint64_t)s->k)) % s->k];
        const int slot = (int)(j % (uint64_t)s->n_slots);
        uint8_t *buf = s->window + (size_t)(s->n_pinned + slot) * s->slot_bytes;
        pthread_mutex_unlock(&s->mu);
        const pl_status st = stream_read(s, il, buf);
        const model_layer l = stream_rebase(s->m, il, buf);
        pthread_mutex_lock(&s->mu);
        if (s->gen != gen) continue; /* restarted meanwhile: this read is void */
        if (st) {
            s->err = st;
            snprintf(s->err_msg, sizeof s->err_msg, "%s", pl_last_error());
        } else {
            s->slot[slot] = l;
            s->produced = j + 1;
        }
        pthread_cond_broadcast(&s->cv);
    }
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

pl_status stream_take(model_stream *s, int il, const model_layer **out) {
    if (s->order_pos[il] < 0) {
        *out = &s->pinned[il];
        return PL_OK;
    }
    pthread_mutex_lock(&s->mu);
    const int want = s->order_pos[il];
    const int next = (s->base + (int)(s->consumed % (uint64_t)s->k)) % s->k;
    if (want != next) { /* the cycle was left midway: restart at il */
        s->gen++;
        s->base = want;
        s->produced = s->consumed = 0;
        pthread_cond_broadcast(&s->cv);
    }
    while (!s->err && s->produced <= s->consumed) pthread_cond_wait(&s->cv, &s->mu);
    pl_status st = s->err;
    if (st) pl_fail(st, "%s", s->err_msg);
    else *out = &s->slot[s->consumed % (uint64_t)s->n_slots];
    pthread_mutex_unlock(&s->mu);
    return st;
}

void stream_give(model_stream *s, int il) {
    if (s->order_pos[il] < 0) return;
    pthread_mutex_lock(&s->mu);
    s->consumed++;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
}

void stream_free(model_stream *s, mem_account *acct) {
    if (!s) return;
    if (s->thread_started) {
        pthread_mutex_lock(&s->mu);
        s->quit = true;
        pthread_cond_broadcast(&s->cv);
        pthread_mutex_unlock(&s->mu);
        pthread_join(s->thread, NULL);
    }
    for (int i = 0; i < s->n_dfd; i++)
        if (s->dfd[i] >= 0) close(s->dfd[i]);
    free(s->dfd);
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->cv);
    mem_free(acct, MEM_WEIGHTS, s->window, s->window_bytes);
    free(s->order);
    free(s->order_pos);
    free(s->pinned);
    free(s->slot);
    free(s);
}

pl_status stream_new(pl_model *m, int n_pinned, int n_slots, mem_account *acct, model_stream **out) {
    *out = NULL;
    const int L = m->hp.n_layer;
    if (!m->pm.layers || n_slots < 0 || n_pinned < 0 || n_pinned + (n_slots ? 1 : 0) > L || (!n_slots && n_pinned != L))
        return pl_fail(PL_ERR_INTERNAL, "stream: bad window (%d pinned, %d slots of %d layers)", n_pinned, n_slots, L);
    model_stream *s = calloc(1, sizeof *s);
    if (!s) return pl_fail(PL_ERR_NOMEM, "stream: out of memory");
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);
    s->m = m;
    s->n_layer = L;
    s->n_pinned = n_pinned;
    s->n_slots = n_slots;
    s->pg = mem_page_size();
    s->slot_bytes = (size_t)m->pm.slot_bytes;
    s->window_bytes = (size_t)(n_pinned + n_slots) * s->slot_bytes;
    s->order = calloc((size_t)L, sizeof *s->order);
    s->order_pos = calloc((size_t)L, sizeof *s->order_pos);
    s->pinned = calloc((size_t)L, sizeof *s->pinned);
    s->slot = calloc((size_t)(n_slots ? n_slots : 1), sizeof *s->slot);
    s->dfd = calloc((size_t)(m->gguf->n_sources ? m->gguf->n_sources : 1), sizeof *s->dfd);
    if (s->dfd) {
        s->n_dfd = m->gguf->n_sources;
        for (int i = 0; i < s->n_dfd; i++) s->dfd[i] = -1;
    }
    pl_status st = PL_OK;
    if (!s->order || !s->order_pos || !s->pinned || !s->slot || !s->dfd) {
        st = pl_fail(PL_ERR_NOMEM, "stream: out of memory");
        goto fail;
    }
    /* a second descriptor per file for O_DIRECT reads (PL_STREAM_BUFFERED=1 turns it off) */
    const char *buffered = getenv("PL_STREAM_BUFFERED");
    for (int i = 0; i < s->n_dfd; i++) {
        const int fd = m->gguf->sources[i].fd;
        if (fd < 0 || (buffered && *buffered == '1')) continue;
        char path[64];
        snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
        s->dfd[i] = open(path, O_RDONLY | O_CLOEXEC | O_DIRECT);
    }
    if ((st = mem_alloc(acct, MEM_WEIGHTS, s->window_bytes, true, "the streaming window", (void **)&s->window))) goto fail;
    int p = 0;
    for (int il = 0; il < L; il++) {
        if (plan_layer_pinned(il, L, n_pinned)) {
            uint8_t *buf = s->window + (size_t)p++ * s->slot_bytes;
            if ((st = stream_read(s, il, buf))) goto fail;
            s->pinned[il] = stream_rebase(m, il, buf);
            s->order_pos[il] = -1;
        } else {
            s->order_pos[il] = s->k;
            s->order[s->k++] = il;
        }
    }
    if (s->k && pthread_create(&s->thread, NULL, stream_loader, s) != 0) {
        st = pl_fail(PL_ERR_NOMEM, "stream: cannot start the loader thread");
        goto fail;
    }
    s->thread_started = s->k > 0;
    *out = s;
    return PL_OK;
fail:
    stream_free(s, acct);
    return st;
}
