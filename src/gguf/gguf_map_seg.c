/*
 * Images assembled from pieces: a GGUF at an offset inside another file, on
 * a descriptor a sandbox handed over, split into raw byte chunks, or built
 * from gguf-split files (gguf_map_split.c). One address range is reserved and
 * each piece placed at its image position: pages whose file offset matches
 * their address modulo the page size are mapped zero-copy with MAP_FIXED;
 * the rest (a page two pieces share, a piece whose offset cannot line up, an
 * in-memory header) is copied with pread into the reservation's anonymous
 * pages. The whole range ends read-only; one munmap in gguf_close frees it.
 *
 * The image base sits at the first piece's offset within its page: the page
 * holding the GGUF's first byte is mapped with the container's bytes before
 * it (outside the image, never read) and everything maps zero-copy. That
 * needs the offset to keep every tensor's natural alignment (4 bytes: f32;
 * the quant blocks need 2), as zip-aligned assets do; at an odd offset the
 * first piece is copied instead. Descriptors are dup'ed and kept (streaming
 * reads and checks use them) until gguf_close.
 */
#include "gguf_impl.h"

#include "../core/alloc.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* Tensors keep the natural alignment of their element types (f32: 4) when
 * the image starts at an offset that is a multiple of this. */
#define GGUF_MAP_MIN_ALIGN 4

static uint64_t seg_down(uint64_t v, uint64_t a) { return v / a * a; }
static uint64_t seg_up(uint64_t v, uint64_t a) { return (v + a - 1) / a * a; }

/* pread exactly n bytes or fail with a message. */
static pl_status seg_pread(int fd, void *dst, uint64_t n, uint64_t off, const char *name) {
    uint8_t *p = dst;
    while (n) {
        const size_t want = n > (1u << 30) ? (1u << 30) : (size_t)n;
        ssize_t got = pread(fd, p, want, (off_t)off);
        if (got < 0 && errno == EINTR) continue;
        if (got < 0) return pl_fail(PL_ERR_IO, "%s: read failed at byte %" PRIu64 ": %s", name, off, strerror(errno));
        if (got == 0) return pl_fail(PL_ERR_FORMAT, "%s: ends before byte %" PRIu64 " (truncated?)", name, off);
        p += got;
        off += (uint64_t)got;
        n -= (uint64_t)got;
    }
    return PL_OK;
}

/* Make the pages of [p, p+n) anonymous and writable, except those an
 * earlier call already made so (*until: how far that went). */
static pl_status seg_writable(uint8_t *p, uint64_t n, uintptr_t *until, const char *name) {
    const uint64_t pg = mem_page_size();
    uintptr_t a = (uintptr_t)seg_down((uint64_t)(uintptr_t)p, pg), b = (uintptr_t)seg_up((uint64_t)(uintptr_t)(p + n), pg);
    if (a < *until) a = *until;
    if (b <= a) return PL_OK;
    if (mmap((void *)a, b - a, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0) == MAP_FAILED)
        return pl_fail(PL_ERR_IO, "%s: cannot get %zu bytes to copy into: %s", name, (size_t)(b - a), strerror(errno));
    *until = b;
    return PL_OK;
}

void gguf_sources_free(gguf_file *f) {
    for (int i = 0; i < f->n_sources; i++)
        if (f->sources[i].fd >= 0) close(f->sources[i].fd);
    free(f->sources);
    f->sources = NULL;
    f->n_sources = 0;
}

pl_status gguf_open_segments(const gguf_segment *segs, int n, const char *what, gguf_file **out) {
    *out = NULL;
    if (!what) what = "<segments>";
    if (!segs || n <= 0) return pl_fail(PL_ERR_INVALID_ARG, "%s: no pieces to map", what);
    const uint64_t pg = mem_page_size();
    uint64_t size = 0;
    for (int i = 0; i < n; i++) {
        const gguf_segment *s = &segs[i];
        if ((s->fd < 0) == (s->mem == NULL) && s->len)
            return pl_fail(PL_ERR_INVALID_ARG, "%s: piece %d needs exactly one of a descriptor and a buffer", what, i);
        if (i && s->pos < segs[i - 1].pos + segs[i - 1].len)
            return pl_fail(PL_ERR_INVALID_ARG, "%s: pieces %d and %d overlap or are out of order", what, i - 1, i);
        if (s->pos + s->len < s->pos) return pl_fail(PL_ERR_INVALID_ARG, "%s: piece %d is too large", what, i);
        if (s->pos + s->len > size) size = s->pos + s->len;
    }
    if (size == 0) return pl_fail(PL_ERR_FORMAT, "%s: empty, not a GGUF file", what);
    if (size > SIZE_MAX - 2 * pg) return pl_fail(PL_ERR_IO, "%s: %" PRIu64 " bytes do not fit the address space", what, size);

    /* where image byte 0 lies within its page: the first piece's own page
     * offset when that keeps 32-byte alignment and the piece is a file */
    const gguf_segment *s0 = &segs[0];
    const bool s0_map = s0->fd >= 0 && s0->offset % GGUF_MAP_MIN_ALIGN == 0 && s0->pos == 0;
    const uint64_t head = s0_map ? s0->offset % pg : 0;
    const size_t span = (size_t)seg_up(head + size, pg);
    /* PROT_NONE: a reservation, not data (RLIMIT_DATA counts writable private memory) */
    uint8_t *res = mmap(NULL, span, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (res == MAP_FAILED) return pl_fail(PL_ERR_IO, "%s: cannot reserve %zu bytes of address space: %s", what, span, strerror(errno));
    uint8_t *base = res + head;
    pl_status st = PL_OK;
    gguf_source *srcs = calloc((size_t)n, sizeof *srcs);
    if (!srcs) {
        st = pl_fail(PL_ERR_NOMEM, "%s: no memory", what);
        goto fail;
    }
    for (int i = 0; i < n; i++) srcs[i].fd = -1;
    uint64_t copied = 0;
    uintptr_t anon_until = (uintptr_t)res; /* copy pages are made writable in ascending order */
    for (int i = 0; i < n; i++) {
        const gguf_segment *s = &segs[i];
        srcs[i].pos = s->pos;
        srcs[i].offset = s->offset;
        srcs[i].len = s->len;
        if (!s->len) continue;
        const char *name = s->name ? s->name : what;
        if (s->mem) {
            if ((st = seg_writable(base + s->pos, s->len, &anon_until, name))) goto fail;
            memcpy(base + s->pos, s->mem, s->len);
            copied += s->len;
            continue;
        }
        if ((srcs[i].fd = fcntl(s->fd, F_DUPFD_CLOEXEC, 0)) < 0) {
            st = pl_fail(PL_ERR_IO, "%s: cannot duplicate the descriptor: %s", name, strerror(errno));
            goto fail;
        }
        /* image address a <-> file offset a - img + s->offset */
        const uint64_t img = (uint64_t)(uintptr_t)(base + s->pos);
        uint64_t lo = img, hi = img; /* the zero-copy range, page-aligned */
        if ((img - s->offset) % pg == 0 && !(i == 0 && !s0_map)) {
            const uint64_t prev_end = i ? (uint64_t)(uintptr_t)(base + segs[i - 1].pos + segs[i - 1].len) : 0;
            const uint64_t next_beg = i + 1 < n ? (uint64_t)(uintptr_t)(base + segs[i + 1].pos) : UINT64_MAX;
            /* a partial first or last page is mapped when no other piece lives in it */
            lo = seg_down(img, pg) >= prev_end ? seg_down(img, pg) : seg_up(img, pg);
            hi = seg_up(img + s->len, pg) <= next_beg ? seg_up(img + s->len, pg) : seg_down(img + s->len, pg);
            if (lo < (uint64_t)(uintptr_t)res) lo = (uint64_t)(uintptr_t)res;
            if (hi > (uint64_t)(uintptr_t)(res + span)) hi = (uint64_t)(uintptr_t)(res + span);
            if (hi > lo) {
                const uint64_t foff = s->offset + lo - img; /* lo may precede img: the file's earlier bytes */
                void *m = mmap((void *)(uintptr_t)lo, (size_t)(hi - lo), PROT_READ, MAP_PRIVATE | MAP_FIXED, s->fd,
                               (off_t)foff);
                if (m == MAP_FAILED) {
                    st = pl_fail(PL_ERR_IO, "%s: cannot map %" PRIu64 " bytes at offset %" PRIu64 ": %s", name, hi - lo,
                                 foff, strerror(errno));
                    goto fail;
                }
            } else {
                lo = hi = img;
            }
        }
        /* what the mapping does not cover is copied: [img, lo) and [hi, img+len) */
        const uint64_t end = img + s->len;
        const uint64_t c0_end = lo > img ? (lo < end ? lo : end) : img;
        if (c0_end > img) {
            if ((st = seg_writable((uint8_t *)(uintptr_t)img, c0_end - img, &anon_until, name))) goto fail;
            if ((st = seg_pread(s->fd, (void *)(uintptr_t)img, c0_end - img, s->offset, name))) goto fail;
            copied += c0_end - img;
        }
        const uint64_t c1_beg = hi > c0_end ? hi : c0_end;
        if (end > c1_beg) {
            if ((st = seg_writable((uint8_t *)(uintptr_t)c1_beg, end - c1_beg, &anon_until, name))) goto fail;
            if ((st = seg_pread(s->fd, (void *)(uintptr_t)c1_beg, end - c1_beg, s->offset + (c1_beg - img), name)))
                goto fail;
            copied += end - c1_beg;
        }
    }
    if (mprotect(res, span, PROT_READ) != 0) {
        st = pl_fail(PL_ERR_IO, "%s: cannot make the image read-only: %s", what, strerror(errno));
        goto fail;
    }
    char *path = malloc(strlen(what) + 1);
    if (!path) {
        st = pl_fail(PL_ERR_NOMEM, "%s: no memory", what);
        goto fail;
    }
    memcpy(path, what, strlen(what) + 1);
    gguf_file_impl *fi;
    if ((st = gguf_parse(base, size, path, &fi))) goto fail;
    fi->pub.map = res;
    fi->pub.map_size = span;
    fi->pub.sources = srcs;
    fi->pub.n_sources = n;
    fi->pub.copied_bytes = copied;
    *out = &fi->pub;
    return PL_OK;
fail:
    if (srcs)
        for (int i = 0; i < n; i++)
            if (srcs[i].fd >= 0) close(srcs[i].fd);
    free(srcs);
    munmap(res, span);
    return st;
}

pl_status gguf_open_fd(int fd, uint64_t offset, uint64_t size, const char *what, gguf_file **out) {
    if (!out) return pl_fail(PL_ERR_INVALID_ARG, "gguf_open_fd: out is NULL");
    *out = NULL;
    char name[64];
    if (!what) {
        snprintf(name, sizeof name, "<fd %d>", fd);
        what = name;
    }
    struct stat sb;
    if (fd < 0 || fstat(fd, &sb) != 0) return pl_fail(PL_ERR_IO, "%s: not an open descriptor", what);
    if (!S_ISREG(sb.st_mode) && !S_ISBLK(sb.st_mode)) return pl_fail(PL_ERR_IO, "%s: not a regular file", what);
    const uint64_t fsize = (uint64_t)sb.st_size;
    if (offset > fsize) return pl_fail(PL_ERR_INVALID_ARG, "%s: offset %" PRIu64 " is past the end (%" PRIu64 " bytes)", what, offset, fsize);
    if (!size) size = fsize - offset;
    if (size > fsize - offset)
        return pl_fail(PL_ERR_FORMAT, "%s: %" PRIu64 " bytes at offset %" PRIu64 " run past the end of the file (%" PRIu64 " bytes)",
                       what, size, offset, fsize);
    if (size == 0) return pl_fail(PL_ERR_FORMAT, "%s: empty, not a GGUF file", what);
    const gguf_segment seg = {.fd = fd, .offset = offset, .len = size, .pos = 0, .name = what};
    return gguf_open_segments(&seg, 1, what, out);
}

pl_status gguf_open_chunks(const char *const *paths, int n, const char *what, gguf_file **out) {
    if (!out) return pl_fail(PL_ERR_INVALID_ARG, "gguf_open_chunks: out is NULL");
    *out = NULL;
    if (!paths || n <= 0) return pl_fail(PL_ERR_INVALID_ARG, "gguf_open_chunks: no chunks");
    gguf_segment *segs = calloc((size_t)n, sizeof *segs);
    if (!segs) return pl_fail(PL_ERR_NOMEM, "no memory for %d chunks", n);
    pl_status st = PL_OK;
    int opened = 0;
    uint64_t pos = 0;
    for (; opened < n; opened++) {
        const int fd = open(paths[opened], O_RDONLY | O_CLOEXEC);
        struct stat sb;
        if (fd < 0 || fstat(fd, &sb) != 0) {
            st = pl_fail(PL_ERR_IO, "%s: cannot open: %s", paths[opened], strerror(errno));
            if (fd >= 0) close(fd);
            break;
        }
        segs[opened] = (gguf_segment){.fd = fd, .offset = 0, .len = (uint64_t)sb.st_size, .pos = pos, .name = paths[opened]};
        pos += (uint64_t)sb.st_size;
    }
    if (!st) st = gguf_open_segments(segs, n, what ? what : paths[0], out);
    for (int i = 0; i < opened; i++) close(segs[i].fd);
    free(segs);
    return st;
}

int gguf_source_at(const gguf_file *f, uint64_t pos, uint64_t *file_off, uint64_t *avail) {
    for (int i = 0; i < f->n_sources; i++) {
        const gguf_source *s = &f->sources[i];
        if (pos >= s->pos && pos < s->pos + s->len) {
            if (s->fd < 0) return -1;
            *file_off = s->offset + (pos - s->pos);
            *avail = s->pos + s->len - pos;
            return s->fd;
        }
    }
    return -1;
}
