/*
 * gguf: reader and writer of the GGUF container (v2 and v3).
 *
 * The reader parses a file image that lives in memory (an mmap of a file, or a
 * caller's buffer) and never copies tensor data: gguf_tensor.data points into
 * the image. Every length, count, offset and dimension is bounds-checked against
 * the image before use; a bad file yields PL_ERR_FORMAT with a message naming
 * the field. Strings (keys, names, string values) point into the image and are
 * NOT NUL-terminated; use gguf_str_eq / gguf_str_dup.
 *
 * Errors: PL_ERR_FORMAT for anything corrupt or truncated (GGUF v1 included),
 * PL_ERR_UNSUPPORTED for a well-formed file we cannot use (big-endian, or a
 * tensor of a ggml type the quant module lacks, e.g. iq2_xxs), PL_ERR_IO when
 * the file cannot be opened or mapped. Keys and tensor names are unique and
 * tensors never overlap in a file that opens. Arrays of arrays are accepted
 * and skipped: such a kv has arr_type GGUF_TYPE_ARRAY, arr_n elements, data
 * pointing at the first nested array, and no element accessors.
 *
 * Lifetime: everything returned by accessors lives until gguf_close().
 */
#ifndef PL_GGUF_H
#define PL_GGUF_H

#include "../core/core.h"
#include "../quant/quant.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#define GGUF_MAGIC 0x46554747u /* "GGUF" little-endian */
#define GGUF_DEFAULT_ALIGNMENT 32
#define GGUF_MAX_DIMS 4

typedef enum gguf_type {
    GGUF_TYPE_UINT8 = 0,
    GGUF_TYPE_INT8 = 1,
    GGUF_TYPE_UINT16 = 2,
    GGUF_TYPE_INT16 = 3,
    GGUF_TYPE_UINT32 = 4,
    GGUF_TYPE_INT32 = 5,
    GGUF_TYPE_FLOAT32 = 6,
    GGUF_TYPE_BOOL = 7,
    GGUF_TYPE_STRING = 8,
    GGUF_TYPE_ARRAY = 9,
    GGUF_TYPE_UINT64 = 10,
    GGUF_TYPE_INT64 = 11,
    GGUF_TYPE_FLOAT64 = 12,
    GGUF_TYPE_COUNT
} gguf_type;

typedef struct gguf_str {
    const char *ptr; /* into the file image; not NUL-terminated */
    uint64_t len;
} gguf_str;

typedef struct gguf_kv {
    gguf_str key;
    gguf_type type;        /* value type; GGUF_TYPE_ARRAY for arrays */
    gguf_type arr_type;    /* element type when type == GGUF_TYPE_ARRAY */
    uint64_t arr_n;        /* element count when an array */
    const uint8_t *data;   /* scalar value, or first array element (raw, little-endian;
                            * for a string scalar: its u64 length prefix) */
    gguf_str *strs;        /* string values: 1 for a string, arr_n for a string array */
} gguf_kv;

typedef struct gguf_tensor {
    gguf_str name;
    uint32_t n_dims;
    int64_t ne[GGUF_MAX_DIMS]; /* ne[0] is the contiguous (row) dimension; unused dims are 1 */
    uint32_t type;             /* ggml type id (see quant/quant.h) */
    uint64_t offset;           /* relative to the data section */
    uint64_t nbytes;           /* computed from type and shape */
    const void *data;          /* into the image */
} gguf_tensor;

/* Where a part of the image comes from (gguf_map_seg.c): image bytes
 * [pos, pos+len) are bytes [offset, offset+len) of descriptor fd (owned by the
 * gguf_file), or were built in memory (fd -1). */
typedef struct gguf_source {
    int fd;
    uint64_t offset, pos, len;
} gguf_source;

typedef struct gguf_file {
    const uint8_t *base; /* the image */
    uint64_t size;
    uint32_t version;
    uint64_t n_kv;
    gguf_kv *kv;
    uint64_t n_tensors;
    gguf_tensor *tensors;
    uint64_t alignment;
    uint64_t data_offset; /* start of the tensor data section within the image */
    /* ownership of the image */
    void *map;            /* non-NULL when we mmap'd it */
    uint64_t map_size;
    char *path;           /* for messages; "<memory>" for buffers */
    /* pieces of the image (gguf_map_seg.c); none for gguf_open_memory */
    gguf_source *sources;
    int n_sources;
    uint64_t copied_bytes; /* image bytes held in anonymous memory, not file-backed */
} gguf_file;

/* Open and mmap a whole file read-only. */
pl_status gguf_open(const char *path, gguf_file **out);
/* Parse an image the caller keeps alive for the life of the gguf_file. `what`
 * names it in messages (may be NULL). */
pl_status gguf_open_memory(const void *data, uint64_t size, const char *what, gguf_file **out);
void gguf_close(gguf_file *f);

/* ---------------------------------------------- images from pieces (gguf_map_seg.c) */

/* One piece: len bytes at `offset` of descriptor fd (borrowed; dup'ed), or
 * of buffer mem (copied), placed at image position pos. Pieces are ordered
 * by pos and do not overlap; gaps read as zeros. */
typedef struct gguf_segment {
    int fd;
    const void *mem;
    uint64_t offset, len, pos;
    const char *name; /* for messages */
} gguf_segment;

/* One image from pieces: pages whose file offset lines up with their place
 * are mapped zero-copy, the rest copied (copied_bytes says how much). */
pl_status gguf_open_segments(const gguf_segment *segs, int n, const char *what, gguf_file **out);
/* A GGUF of `size` bytes (0 = to the end) at `offset` of an open descriptor
 * (which stays the caller's). */
pl_status gguf_open_fd(int fd, uint64_t offset, uint64_t size, const char *what, gguf_file **out);
/* Raw byte chunks whose concatenation is one GGUF file. */
pl_status gguf_open_chunks(const char *const *paths, int n, const char *what, gguf_file **out);
/* The descriptor holding image byte pos (its file offset, and the bytes of
 * that piece from there); -1 when pos is in no file piece. */
int gguf_source_at(const gguf_file *f, uint64_t pos, uint64_t *file_off, uint64_t *avail);
void gguf_sources_free(gguf_file *f);

/* ---------------------------------------------- split models (gguf_map_split.c) */

/* llama.cpp gguf-split: "<prefix>-00001-of-00003.gguf". Given any path,
 * 1 and the prefix and count when it names a split file (shard number in *no). */
int gguf_split_name(const char *path, char *prefix, size_t cap, int *no, int *count);
/* Raw chunks as `pocketllm split --raw` names them: "<file>.part-00001-of-00004". */
int gguf_part_name(const char *path, char *file, size_t cap, int *no, int *count);
/* Open gguf-split files as one image: a header made from the first split's
 * metadata (split.* keys dropped) and every tensor, then each file's data
 * section mapped zero-copy. */
pl_status gguf_open_split(const char *any_split_path, gguf_file **out);

/* Writers (gguf_split_write.c); each leaves "<prefix or file>.sha256".
 * gguf-split files "<prefix>-0000K-of-0000N.gguf", cut as llama.cpp cuts them:
 * every max_tensors tensors, or before the padded data would pass max_bytes. */
pl_status gguf_write_split(const gguf_file *src, const char *prefix, int max_tensors, uint64_t max_bytes, int *n_out);
/* Raw chunks of chunk_bytes: "<path>.part-0000K-of-0000N". */
pl_status gguf_write_parts(const char *path, uint64_t chunk_bytes, int *n_out);
/* One GGUF file from an image (split.* keys left out). */
pl_status gguf_write_merged(const gguf_file *src, const char *out_path);

typedef struct gguf_open_opts {
    bool verify; /* check SHA-256 sums from the sidecar before mapping */
} gguf_open_opts;
/* gguf_open, or split files / raw parts when the name says so; with
 * verify, each file is checked against "<file or prefix>.sha256". */
pl_status gguf_open_any(const char *path, const gguf_open_opts *opts, gguf_file **out);
/* Paths of the files behind `path` (1 for a plain file); *out malloc'd list
 * of malloc'd strings (free with gguf_paths_free). */
pl_status gguf_paths(const char *path, char ***out, int *n);
void gguf_paths_free(char **paths, int n);
/* The sidecar of sums for `path`, and the expected hex sum of `file` in it
 * (matched by base name): 1 found, 0 not listed / no sidecar. */
int gguf_sidecar_sum(const char *path, const char *file, char hex[65]);

/* Metadata lookup: index of key or -1. */
int64_t gguf_find_key(const gguf_file *f, const char *key);
const gguf_kv *gguf_get_kv(const gguf_file *f, const char *key);
/* Typed getters with conversion between integer widths (range-checked) and
 * float widths. Return PL_OK, or PL_ERR_FORMAT with a message naming the key
 * when the key is absent or of an incompatible type. */
pl_status gguf_get_u32(const gguf_file *f, const char *key, uint32_t *out);
pl_status gguf_get_i64(const gguf_file *f, const char *key, int64_t *out);
pl_status gguf_get_f32(const gguf_file *f, const char *key, float *out);
pl_status gguf_get_bool(const gguf_file *f, const char *key, bool *out);
pl_status gguf_get_str(const gguf_file *f, const char *key, gguf_str *out);
/* Same, returning `def` when the key is absent. A value of the wrong type (or
 * out of range) also gives `def`, with the reason left in pl_last_error(). */
uint32_t gguf_get_u32_or(const gguf_file *f, const char *key, uint32_t def);
float gguf_get_f32_or(const gguf_file *f, const char *key, float def);
bool gguf_get_bool_or(const gguf_file *f, const char *key, bool def);
/* "<arch>.<suffix>" as a non-negative int (hyper-parameters such as
 * "llama.block_count"): absent -> def, or PL_ERR_FORMAT naming the key when
 * `required`; values above 2^30 are refused as implausible. */
pl_status gguf_get_arch_int(const gguf_file *f, const char *arch, const char *suffix, bool required, uint32_t def,
                            int *out);
/* Array element access; callers bound i by kv->arr_n (an index past it, or an
 * array of another type, gives 0). gguf_arr_f32 also reads FLOAT64 arrays;
 * gguf_arr_int saturates UINT64 values above INT64_MAX. */
float gguf_arr_f32(const gguf_kv *kv, uint64_t i);    /* FLOAT32 arrays */
int64_t gguf_arr_int(const gguf_kv *kv, uint64_t i);  /* any integer array */

const gguf_tensor *gguf_find_tensor(const gguf_file *f, const char *name);

bool gguf_str_eq(gguf_str s, const char *z);
/* malloc'd NUL-terminated copy; NULL on allocation failure. */
char *gguf_str_dup(gguf_str s);
const char *gguf_type_name(gguf_type t);

/* ------------------------------------------------------------------ writer */

/* Builds a GGUF v3 file: add metadata and tensor descriptions, then write.
 * Tensor data is supplied as pointers that must stay valid until the write
 * completes (so a streaming writer can emit one tensor at a time via
 * gguf_writer_write_header + gguf_writer_write_tensor_data). */
typedef struct gguf_writer gguf_writer;

gguf_writer *gguf_writer_new(void);
void gguf_writer_free(gguf_writer *w);
pl_status gguf_writer_set_u32(gguf_writer *w, const char *key, uint32_t v);
pl_status gguf_writer_set_i32(gguf_writer *w, const char *key, int32_t v);
pl_status gguf_writer_set_u64(gguf_writer *w, const char *key, uint64_t v);
pl_status gguf_writer_set_f32(gguf_writer *w, const char *key, float v);
pl_status gguf_writer_set_bool(gguf_writer *w, const char *key, bool v);
pl_status gguf_writer_set_str(gguf_writer *w, const char *key, const char *v);
/* Setting a key again replaces its value in place. general.alignment must be a
 * nonzero power of two; it sets the alignment of the file written.
 * Arrays: elem_type is a scalar gguf_type; for strings pass `const char *const *`,
 * for BOOL a `const bool *`. */
pl_status gguf_writer_set_arr(gguf_writer *w, const char *key, gguf_type elem_type,
                              const void *data, uint64_t n);
/* Copy every metadata pair of `src` (e.g. when quantizing), skipping keys for
 * which skip(key) returns true (skip may be NULL). */
pl_status gguf_writer_copy_kv(gguf_writer *w, const gguf_file *src, bool (*skip)(const char *key));
/* Describe a tensor; `data` may be NULL when written later with write_tensor_data. */
pl_status gguf_writer_add_tensor(gguf_writer *w, const char *name, uint32_t type, uint32_t n_dims,
                                 const int64_t *ne, const void *data);
/* Any scalar type: `v` points to the native value (uint8_t ... double; bool for
 * BOOL; `const char *` for STRING, i.e. pass a `const char **`). */
pl_status gguf_writer_set_val(gguf_writer *w, const char *key, gguf_type type, const void *v);
/* Name used in messages of the streaming calls (write_file sets it itself). */
pl_status gguf_writer_set_path(gguf_writer *w, const char *path);
/* Whole file at once. */
pl_status gguf_writer_write_file(gguf_writer *w, const char *path);
/* Streaming: header (kv + tensor infos + padding) first, then each tensor's
 * data in the order added. */
pl_status gguf_writer_write_header(gguf_writer *w, FILE *fp);
pl_status gguf_writer_write_tensor_data(gguf_writer *w, FILE *fp, uint64_t index, const void *data);

#endif
