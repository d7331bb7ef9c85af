/*
 * alloc: the engine's one accounted allocator. Every byte the engine holds
 * for a model or context is charged to an account (mem_account) that has an
 * optional limit: a charge that would pass it fails with PL_ERR_BUDGET and a
 * message, never with an OOM kill later. Charges are also summed process-wide
 * (what pl_memory_snapshot reports) by kind: weights, KV cache, scratch, other.
 *
 * Blocks of MEM_MAP_MIN bytes or more come straight from anonymous mmap,
 * optionally touched up front (prefault: MAP_POPULATE), so that the resident
 * size is known when the allocation returns and nothing grows while
 * generating; smaller ones from calloc. Freed blocks may be kept for reuse up
 * to the process cache limit (pl_memory_set_cache_limit, default 0 = off).
 *
 * Accounts are plain structs owned by their object (a pl_model holds one, its
 * contexts charge it); the counters are atomic, so a context on another
 * thread may allocate while a snapshot is read.
 */
#ifndef PL_ALLOC_H
#define PL_ALLOC_H

#include "core.h"

#include <stdatomic.h>
#include <stdbool.h>

#define MEM_MAP_MIN (64u * 1024u)

typedef enum mem_kind {
    MEM_WEIGHTS = 0, /* weights copied or read into anonymous memory */
    MEM_KV = 1,      /* KV cache */
    MEM_SCRATCH = 2, /* activations, logits, matmul scratch, rope tables */
    MEM_OTHER = 3,   /* tokenizer, metadata tables, descriptors */
    MEM_EXTERNAL = 4, /* resident memory the engine does not allocate: mapped file pages, the
                      * runtime, other modules' tables (charged for budgets, measured elsewhere) */
    MEM_KIND_COUNT
} mem_kind;

typedef struct mem_account {
    const char *name;           /* for messages (borrowed; the model's file name) */
    uint64_t limit;             /* bytes; 0 = no limit */
    _Atomic uint64_t used;      /* all charges now */
    _Atomic uint64_t peak;      /* highest `used` */
    _Atomic uint64_t by_kind[MEM_KIND_COUNT];
} mem_account;

/* Charge n bytes of `kind` (no memory changes hands: for file mappings and
 * allocations made elsewhere). PL_ERR_BUDGET, naming `what` and the figures,
 * when the account's limit would be passed. a may be NULL (process only). */
pl_status mem_charge(mem_account *a, mem_kind kind, uint64_t n, const char *what);
void mem_uncharge(mem_account *a, mem_kind kind, uint64_t n);

/* n zeroed bytes, 64-byte aligned, charged to a (may be NULL). prefault:
 * touch every page now. The caller passes the same kind and n to mem_free. */
pl_status mem_alloc(mem_account *a, mem_kind kind, size_t n, bool prefault, const char *what, void **out);
void mem_free(mem_account *a, mem_kind kind, void *p, size_t n);

/* Bytes a block of n holds (and is charged as): whole pages when mapped. */
size_t mem_held(size_t n);

/* Process-wide figures (bytes). */
uint64_t mem_total_kind(mem_kind kind);
uint64_t mem_total_used(void);
uint64_t mem_total_peak(void);
uint64_t mem_cached_bytes(void);

/* File mappings of live models, so a snapshot can ask the kernel how much of
 * them is resident (mincore). locked: the range is mlock'd. */
void mem_region_add(const void *p, uint64_t n, bool locked);
void mem_region_remove(const void *p);

/* Bytes a streaming window read from storage (for bytes-per-token figures). */
void mem_note_read(uint64_t n);

/* Page size of this system (cached). */
uint64_t mem_page_size(void);

/* "Key:  123 kB" of a /proc file (/proc/self/status, /proc/meminfo) in
 * bytes; 0 when the file or key is absent. */
uint64_t alloc_proc_kb(const char *path, const char *key);

#endif
