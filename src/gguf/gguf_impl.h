/*
 * gguf internals shared by gguf_read.c, gguf_map.c and gguf_write.c; not for
 * other modules (they use gguf.h).
 *
 * A gguf_file handed out by the reader is always the first member of a
 * gguf_file_impl, which adds the lookup tables (open addressing over the key
 * and tensor-name bytes, so lookups and duplicate checks are O(1) on average
 * and a 150k-entry file parses in one pass) and, per key, the raw bytes of its
 * encoded value (what the writer copies verbatim in gguf_writer_copy_kv).
 */
#ifndef PL_GGUF_IMPL_H
#define PL_GGUF_IMPL_H

#include "gguf.h"

/* This module reads and writes the file's little-endian bytes with memcpy. */
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "pocketllm's GGUF code assumes a little-endian host"
#endif

/* Arrays of arrays are accepted (and skipped over) up to this depth. */
#define GGUF_MAX_NESTING 8

/* Raw encoded value of one key: for a scalar its bytes, for a string the u64
 * length and the bytes, for an array the element type, count and elements. */
typedef struct gguf_span {
    const uint8_t *ptr;
    uint64_t len;
} gguf_span;

typedef struct gguf_file_impl {
    gguf_file pub;        /* first member: (gguf_file *) <-> (gguf_file_impl *) */
    gguf_span *kv_raw;    /* n_kv entries */
    int64_t *kv_slots;    /* open-addressing table of kv indices, -1 = empty */
    uint64_t kv_mask;     /* table size - 1 (a power of two minus one) */
    int64_t *tensor_slots;
    uint64_t tensor_mask;
} gguf_file_impl;

/* Bytes of one element of a fixed-size scalar type; 0 for STRING, ARRAY and
 * unknown ids. */
uint64_t gguf_scalar_size(uint32_t type);
/* Decode an integer scalar (UINT8..INT64, not BOOL) at p. Returns 0 for
 * non-integer types. The value is returned both as a sign flag and magnitude:
 * *neg set when negative, *mag its absolute value (fits all of u64 and i64). */
int gguf_int_value(uint32_t type, const uint8_t *p, int *neg, uint64_t *mag);
/* Parse an image into an allocated gguf_file_impl (f->path already set by the
 * caller through `path`, which this takes ownership of). */
pl_status gguf_parse(const uint8_t *base, uint64_t size, char *path, gguf_file_impl **out);
/* Raw encoded value of kv i (see gguf_span). */
gguf_span gguf_kv_raw(const gguf_file *f, uint64_t i);

#endif
