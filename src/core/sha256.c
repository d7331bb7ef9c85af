/*
 * SHA-256 as FIPS 180-4 section 6.2 specifies it: 512-bit blocks, the
 * 64-word message schedule, eight working variables, big-endian words, and
 * the padding of section 5.1.1 (a 1 bit, zeros, the 64-bit bit length).
 * Checked against the NIST example vectors by tests/test_load.c.
 */
#include "sha256.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* First 32 bits of the fractional parts of the cube roots of the first 64 primes (4.2.2). */
static const uint32_t k_k[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
};

static uint32_t sha_rotr(uint32_t x, int n) { return (x >> n) | (x << (32 - n)); }

static void sha_block(uint32_t h[8], const uint8_t *p) {
    uint32_t w[64];
    for (int t = 0; t < 16; t++)
        w[t] = (uint32_t)p[4 * t] << 24 | (uint32_t)p[4 * t + 1] << 16 | (uint32_t)p[4 * t + 2] << 8 | p[4 * t + 3];
    for (int t = 16; t < 64; t++) {
        const uint32_t s0 = sha_rotr(w[t - 15], 7) ^ sha_rotr(w[t - 15], 18) ^ (w[t - 15] >> 3);
        const uint32_t s1 = sha_rotr(w[t - 2], 17) ^ sha_rotr(w[t - 2], 19) ^ (w[t - 2] >> 10);
        w[t] = s1 + w[t - 7] + s0 + w[t - 16];
    }
    uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4], f = h[5], g = h[6], hh = h[7];
    for (int t = 0; t < 64; t++) {
        const uint32_t S1 = sha_rotr(e, 6) ^ sha_rotr(e, 11) ^ sha_rotr(e, 25);
        const uint32_t ch = (e & f) ^ (~e & g);
        const uint32_t t1 = hh + S1 + ch + k_k[t] + w[t];
        const uint32_t S0 = sha_rotr(a, 2) ^ sha_rotr(a, 13) ^ sha_rotr(a, 22);
        const uint32_t maj = (a & b) ^ (a & c) ^ (b & c);
        const uint32_t t2 = S0 + maj;
        hh = g;
        g = f;
        f = e;
        e = d + t1;
        d = c;
        c = b;
        b = a;
        a = t1 + t2;
    }
    h[0] += a, h[1] += b, h[2] += c, h[3] += d, h[4] += e, h[5] += f, h[6] += g, h[7] += hh;
}

void sha256_init(sha256_ctx *c) {
    /* first 32 bits of the fractional parts of the square roots of the first 8 primes (5.3.3) */
    static const uint32_t h0[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                                   0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
    memcpy(c->h, h0, sizeof h0);
    c->n_bytes = 0;
    c->n_buf = 0;
}

void sha256_update(sha256_ctx *c, const void *data, size_t n) {
    const uint8_t *p = data;
    c->n_bytes += n;
    if (c->n_buf) {
        size_t take = 64 - c->n_buf < n ? 64 - c->n_buf : n;
        memcpy(c->buf + c->n_buf, p, take);
        c->n_buf += (uint32_t)take;
        p += take;
        n -= take;
        if (c->n_buf < 64) return;
        sha_block(c->h, c->buf);
        c->n_buf = 0;
    }
    for (; n >= 64; p += 64, n -= 64) sha_block(c->h, p);
    memcpy(c->buf, p, n);
    c->n_buf = (uint32_t)n;
}

void sha256_final(sha256_ctx *c, uint8_t out[32]) {
    const uint64_t bits = c->n_bytes * 8;
    uint8_t pad[72] = {0x80};
    /* pad to 56 mod 64, then the length: 1 to 64 bytes of padding */
    const size_t np = (c->n_buf < 56 ? 56 : 120) - c->n_buf;
    for (int i = 0; i < 8; i++) pad[np + (size_t)i] = (uint8_t)(bits >> (56 - 8 * i));
    const uint64_t keep = c->n_bytes;
    sha256_update(c, pad, np + 8);
    c->n_bytes = keep;
    for (int i = 0; i < 8; i++) {
        out[4 * i] = (uint8_t)(c->h[i] >> 24);
        out[4 * i + 1] = (uint8_t)(c->h[i] >> 16);
        out[4 * i + 2] = (uint8_t)(c->h[i] >> 8);
        out[4 * i + 3] = (uint8_t)c->h[i];
    }
}

void sha256_hex(const uint8_t d[32], char hex[65]) {
    static const char digits[] = "0123456789abcdef";
    for (int i = 0; i < 32; i++) {
        hex[2 * i] = digits[d[i] >> 4];
        hex[2 * i + 1] = digits[d[i] & 15];
    }
    hex[64] = 0;
}

pl_status sha256_fd(int fd, uint64_t offset, uint64_t size, const char *what, uint8_t out[32]) {
    const size_t chunk = 4u << 20;
    uint8_t *buf = malloc(chunk);
    if (!buf) return pl_fail(PL_ERR_NOMEM, "%s: no memory to hash", what);
    sha256_ctx c;
    sha256_init(&c);
    pl_status st = PL_OK;
    for (uint64_t at = 0; at < size;) {
        const size_t want = size - at < chunk ? (size_t)(size - at) : chunk;
        ssize_t got = pread(fd, buf, want, (off_t)(offset + at));
        if (got < 0 && errno == EINTR) continue;
        if (got <= 0) {
            st = pl_fail(got < 0 ? PL_ERR_IO : PL_ERR_FORMAT, "%s: %s at byte %llu while hashing", what,
                         got < 0 ? strerror(errno) : "unexpected end of file", (unsigned long long)(offset + at));
            break;
        }
        sha256_update(&c, buf, (size_t)got);
        at += (uint64_t)got;
    }
    free(buf);
    if (!st) sha256_final(&c, out);
    return st;
}

pl_status pl_sha256_file(const char *path, uint64_t offset, uint64_t size, char hex[65]) {
    if (!path || !hex) return pl_fail(PL_ERR_INVALID_ARG, "pl_sha256_file: path and hex are required");
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return pl_fail(PL_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat sb;
    pl_status st = PL_OK;
    if (fstat(fd, &sb) != 0) st = pl_fail(PL_ERR_IO, "%s: cannot stat: %s", path, strerror(errno));
    else if (offset > (uint64_t)sb.st_size) st = pl_fail(PL_ERR_INVALID_ARG, "%s: offset past the end", path);
    if (!st) {
        if (!size) size = (uint64_t)sb.st_size - offset;
        uint8_t d[32];
        if (!(st = sha256_fd(fd, offset, size, path, d))) sha256_hex(d, hex);
    }
    close(fd);
    return st;
}
