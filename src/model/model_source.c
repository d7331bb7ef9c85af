/*
 * Loading a model from a descriptor range (pl_model_load_fd) or from pieces
 * concatenated into one image (pl_model_load_sources): what mobile sandboxes
 * and asset containers hand out. Sums given with the pieces are checked
 * before anything is mapped when params->verify asks for it.
 */
#include "model.h"

#include "../core/sha256.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct src_arg {
    const gguf_segment *segs;
    int n;
    const char *what;
} src_arg;

static pl_status src_open(const void *arg, gguf_file **out) {
    const src_arg *a = arg;
    return gguf_open_segments(a->segs, a->n, a->what, out);
}

static pl_status src_check(int fd, uint64_t off, uint64_t size, const char *sum, const char *what) {
    if (!sum) return pl_fail(PL_ERR_INVALID_ARG, "%s: verification asked for, but no SHA-256 was given", what);
    if (strlen(sum) != 64) return pl_fail(PL_ERR_INVALID_ARG, "%s: '%s' is not a SHA-256 (64 hex digits)", what, sum);
    uint8_t d[32];
    char hex[65];
    pl_status st = sha256_fd(fd, off, size, what, d);
    if (st) return st;
    sha256_hex(d, hex);
    for (int i = 0; i < 64; i++) {
        char c = sum[i];
        if (c >= 'A' && c <= 'F') c = (char)(c - 'A' + 'a');
        if (c != hex[i])
            return pl_fail(PL_ERR_FORMAT, "%s: SHA-256 mismatch: the bytes hash to %s, expected %s (corrupt or replaced)",
                           what, hex, sum);
    }
    return PL_OK;
}

pl_status pl_model_load_sources(const pl_model_source *src, int n, const pl_model_params *params, pl_model **out) {
    if (!out) return pl_fail(PL_ERR_INVALID_ARG, "pl_model_load_sources: out is required");
    *out = NULL;
    if (!src || n <= 0 || n > 100000) return pl_fail(PL_ERR_INVALID_ARG, "pl_model_load_sources: %d pieces", n);
    gguf_segment *segs = calloc((size_t)n, sizeof *segs);
    int *owned = calloc((size_t)n, sizeof *owned);
    char (*names)[64] = calloc((size_t)n, sizeof *names);
    pl_status st = PL_OK;
    if (!segs || !owned || !names) {
        st = pl_fail(PL_ERR_NOMEM, "pl_model_load_sources: out of memory");
        goto done;
    }
    for (int i = 0; i < n; i++) owned[i] = -1;
    uint64_t pos = 0;
    for (int i = 0; i < n; i++) {
        const pl_model_source *s = &src[i];
        int fd = s->fd;
        const char *what = s->path;
        if (!what) {
            snprintf(names[i], sizeof names[i], "<piece %d, fd %d>", i + 1, s->fd);
            what = names[i];
        }
        if (s->path) {
            if ((fd = open(s->path, O_RDONLY | O_CLOEXEC)) < 0) {
                st = pl_fail(PL_ERR_IO, "%s: cannot open: %s", s->path, strerror(errno));
                goto done;
            }
            owned[i] = fd;
        }
        struct stat sb;
        if (fd < 0 || fstat(fd, &sb) != 0) {
            st = pl_fail(PL_ERR_IO, "%s: not an open file", what);
            goto done;
        }
        const uint64_t fsize = (uint64_t)sb.st_size;
        if (s->offset > fsize) {
            st = pl_fail(PL_ERR_INVALID_ARG, "%s: offset %llu is past the end (%llu bytes)", what,
                         (unsigned long long)s->offset, (unsigned long long)fsize);
            goto done;
        }
        const uint64_t size = s->size ? s->size : fsize - s->offset;
        if (size > fsize - s->offset) {
            st = pl_fail(PL_ERR_FORMAT, "%s: %llu bytes at offset %llu run past the end of the file", what,
                         (unsigned long long)size, (unsigned long long)s->offset);
            goto done;
        }
        if (params && params->verify && (st = src_check(fd, s->offset, size, s->sha256, what))) goto done;
        segs[i] = (gguf_segment){.fd = fd, .offset = s->offset, .len = size, .pos = pos, .name = what};
        pos += size;
    }
    {
        const char *what = src[0].path ? src[0].path : names[0];
        const src_arg a = {segs, n, what};
        st = model_load_common(what, pos, params, src_open, &a, out);
    }
done:
    if (owned)
        for (int i = 0; i < n; i++)
            if (owned[i] >= 0) close(owned[i]);
    free(owned);
    free(segs);
    free(names);
    return st;
}

pl_status pl_model_load_fd(int fd, uint64_t offset, uint64_t size, const pl_model_params *params, pl_model **out) {
    const pl_model_source s = {.path = NULL, .fd = fd, .offset = offset, .size = size};
    if (params && params->verify)
        return pl_fail(PL_ERR_INVALID_ARG, "pl_model_load_fd: to verify, pass the sum with pl_model_load_sources");
    return pl_model_load_sources(&s, 1, params, out);
}
