/*
 * SHA-256 (FIPS 180-4), written from the standard: incremental hashing of
 * byte streams, and file ranges read in large blocks. Used to check model
 * files and chunks against the sums a manifest or sidecar lists.
 */
#ifndef PL_SHA256_H
#define PL_SHA256_H

#include "core.h"

typedef struct sha256_ctx {
    uint32_t h[8];
    uint64_t n_bytes;   /* message length so far */
    uint8_t buf[64];    /* a partial block */
    uint32_t n_buf;
} sha256_ctx;

void sha256_init(sha256_ctx *c);
void sha256_update(sha256_ctx *c, const void *data, size_t n);
void sha256_final(sha256_ctx *c, uint8_t out[32]);
/* 64 lowercase hex digits and a NUL. */
void sha256_hex(const uint8_t digest[32], char hex[65]);

/* Hash `size` bytes at `offset` of descriptor fd (pread; the file position
 * is not moved). what names the file in messages. */
pl_status sha256_fd(int fd, uint64_t offset, uint64_t size, const char *what, uint8_t out[32]);

#endif
