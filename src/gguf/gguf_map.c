/*
 * Where a GGUF image comes from and who owns it: gguf_open maps a whole file
 * read-only (MAP_PRIVATE, through gguf_map_seg.c, which keeps a duplicate of
 * the descriptor for streaming reads), gguf_open_memory borrows a caller's
 * buffer.
 * gguf_close releases the descriptors, the lookup tables and the mapping (a
 * borrowed buffer stays the caller's).
 */
#include "gguf_impl.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

static char *gguf_strdup(const char *s) {
    size_t n = strlen(s) + 1;
    char *p = malloc(n);
    if (p) memcpy(p, s, n);
    return p;
}

pl_status gguf_open_memory(const void *data, uint64_t size, const char *what, gguf_file **out) {
    gguf_file_impl *fi;
    if (!out) return pl_fail(PL_ERR_INVALID_ARG, "gguf_open_memory: out is NULL");
    *out = NULL;
    if (!what) what = "<memory>";
    if (!data && size) return pl_fail(PL_ERR_INVALID_ARG, "%s: gguf_open_memory: NULL data of %" PRIu64 " bytes", what, size);
    char *path = gguf_strdup(what);
    if (!path) return pl_fail(PL_ERR_NOMEM, "%s: no memory", what);
    pl_status st = gguf_parse(data ? data : (const uint8_t *)"", size, path, &fi);
    if (st) return st;
    *out = &fi->pub;
    return PL_OK;
}

pl_status gguf_open(const char *path, gguf_file **out) {
    pl_status st;
    struct stat sb;
    if (!out || !path) return pl_fail(PL_ERR_INVALID_ARG, "gguf_open: NULL path or out");
    *out = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return pl_fail(PL_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    if (fstat(fd, &sb) != 0) {
        st = pl_fail(PL_ERR_IO, "%s: cannot stat: %s", path, strerror(errno));
        goto fail;
    }
    if (!S_ISREG(sb.st_mode)) {
        st = pl_fail(PL_ERR_IO, "%s: not a regular file", path);
        goto fail;
    }
    if (sb.st_size == 0) { /* mmap refuses empty files; it is a format error */
        st = pl_fail(PL_ERR_FORMAT, "%s: empty file, not a GGUF file", path);
        goto fail;
    }
    if ((uint64_t)sb.st_size > SIZE_MAX) {
        st = pl_fail(PL_ERR_IO, "%s: %" PRIu64 " bytes do not fit in the address space", path, (uint64_t)sb.st_size);
        goto fail;
    }
    /* one piece: the whole file, mapped zero-copy (gguf_map_seg.c keeps a
     * duplicate of the descriptor for streaming reads) */
    const gguf_segment seg = {.fd = fd, .offset = 0, .len = (uint64_t)sb.st_size, .pos = 0, .name = path};
    if ((st = gguf_open_segments(&seg, 1, path, out))) goto fail;
    close(fd);
    return PL_OK;
fail:
    close(fd);
    return st;
}

void gguf_close(gguf_file *f) {
    if (!f) return;
    gguf_file_impl *fi = (gguf_file_impl *)f;
    if (f->kv)
        for (uint64_t i = 0; i < f->n_kv; i++) free(f->kv[i].strs);
    free(f->kv);
    free(f->tensors);
    free(fi->kv_raw);
    free(fi->kv_slots);
    free(fi->tensor_slots);
    if (f->map) munmap(f->map, (size_t)f->map_size);
    gguf_sources_free(f);
    free(f->path);
    free(fi);
}
