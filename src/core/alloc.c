/*
 * The accounted allocator (alloc.h) and the process-wide memory figures of
 * the public API (pl_memory_snapshot and friends). Process totals count what
 * the engine holds in anonymous memory (weights copies, KV, scratch, other);
 * MEM_EXTERNAL charges only feed the per-account budgets, since file pages are
 * the kernel's to keep or drop, and are measured from the page tables instead.
 * The reuse cache keeps whole mmap'd blocks keyed by their page-rounded size;
 * its lock is never held while calling into the kernel for new memory.
 */
#include "alloc.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <unistd.h>

static _Atomic uint64_t g_kind[MEM_KIND_COUNT];
static _Atomic uint64_t g_used, g_peak; /* anonymous memory: all kinds but MEM_EXTERNAL */
static _Atomic uint64_t g_read_bytes;

typedef struct mem_block {
    void *p;
    size_t n; /* page-rounded */
} mem_block;

typedef struct mem_region {
    const void *p;
    uint64_t n;
    bool locked;
} mem_region;

static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER; /* guards everything below */
static mem_block *g_cache;
static size_t g_cache_n, g_cache_cap;
static uint64_t g_cache_bytes, g_cache_limit;
static mem_region *g_regions;
static size_t g_regions_n, g_regions_cap;

uint64_t mem_page_size(void) {
    static _Atomic uint64_t cached;
    uint64_t p = atomic_load(&cached);
    if (!p) {
        long v = sysconf(_SC_PAGESIZE);
        p = v > 0 ? (uint64_t)v : 4096;
        atomic_store(&cached, p);
    }
    return p;
}

static void mem_raise_peak(_Atomic uint64_t *peak, uint64_t v) {
    uint64_t cur = atomic_load(peak);
    while (v > cur && !atomic_compare_exchange_weak(peak, &cur, v)) {}
}

static double mem_mb(uint64_t n) { return (double)n / (1024.0 * 1024.0); }

pl_status mem_charge(mem_account *a, mem_kind kind, uint64_t n, const char *what) {
    if (a) {
        uint64_t cur = atomic_load(&a->used);
        do {
            if (a->limit && (n > a->limit || cur > a->limit - n))
                return pl_fail(PL_ERR_BUDGET,
                               "%s: %s needs %.1f MiB but the memory budget of %.1f MiB has %.1f MiB left "
                               "(%.1f MiB already planned or in use)",
                               a->name ? a->name : "memory", what, mem_mb(n), mem_mb(a->limit),
                               mem_mb(cur < a->limit ? a->limit - cur : 0), mem_mb(cur));
        } while (!atomic_compare_exchange_weak(&a->used, &cur, cur + n));
        mem_raise_peak(&a->peak, cur + n);
        atomic_fetch_add(&a->by_kind[kind], n);
    }
    atomic_fetch_add(&g_kind[kind], n);
    if (kind != MEM_EXTERNAL) mem_raise_peak(&g_peak, atomic_fetch_add(&g_used, n) + n);
    return PL_OK;
}

void mem_uncharge(mem_account *a, mem_kind kind, uint64_t n) {
    if (a) {
        atomic_fetch_sub(&a->used, n);
        atomic_fetch_sub(&a->by_kind[kind], n);
    }
    atomic_fetch_sub(&g_kind[kind], n);
    if (kind != MEM_EXTERNAL) atomic_fetch_sub(&g_used, n);
}

static size_t mem_round(size_t n) {
    const size_t pg = (size_t)mem_page_size();
    return (n + pg - 1) / pg * pg;
}

size_t mem_held(size_t n) {
    if (n == 0) n = 1;
    return n < MEM_MAP_MIN ? (n + 63) & ~(size_t)63 : mem_round(n);
}

/* A cached block of exactly `n` (page-rounded) bytes, or NULL. */
static void *mem_cache_take(size_t n) {
    void *p = NULL;
    pthread_mutex_lock(&g_mu);
    for (size_t i = 0; i < g_cache_n; i++)
        if (g_cache[i].n == n) {
            p = g_cache[i].p;
            g_cache[i] = g_cache[--g_cache_n];
            g_cache_bytes -= n;
            break;
        }
    pthread_mutex_unlock(&g_mu);
    return p;
}

/* Keep a block for reuse if the cache has room; 1 when kept. */
static int mem_cache_put(void *p, size_t n) {
    int kept = 0;
    pthread_mutex_lock(&g_mu);
    if (g_cache_limit && g_cache_bytes + n <= g_cache_limit) {
        if (g_cache_n == g_cache_cap) {
            size_t cap = g_cache_cap ? g_cache_cap * 2 : 16;
            mem_block *nb = realloc(g_cache, cap * sizeof *nb);
            if (nb) {
                g_cache = nb;
                g_cache_cap = cap;
            }
        }
        if (g_cache_n < g_cache_cap) {
            g_cache[g_cache_n++] = (mem_block){p, n};
            g_cache_bytes += n;
            kept = 1;
        }
    }
    pthread_mutex_unlock(&g_mu);
    return kept;
}

pl_status mem_alloc(mem_account *a, mem_kind kind, size_t n, bool prefault, const char *what, void **out) {
    *out = NULL;
    if (kind == MEM_EXTERNAL) return pl_fail(PL_ERR_INTERNAL, "mem_alloc: MEM_EXTERNAL is a charge, not an allocation");
    if (n == 0) n = 1;
    if (n > SIZE_MAX - mem_page_size())
        return pl_fail(PL_ERR_NOMEM, "%s: %zu bytes do not fit the address space", what, n);
    /* charged as held: whole pages for mapped blocks, 64-byte rows otherwise */
    const size_t m = mem_held(n);
    pl_status st = mem_charge(a, kind, m, what);
    if (st) return st;
    void *p;
    if (n < MEM_MAP_MIN) {
        /* 64-byte alignment for SIMD rows; aligned_alloc wants a multiple */
        p = aligned_alloc(64, m);
        if (p) memset(p, 0, m);
    } else {
        p = mem_cache_take(m);
        if (p) {
            memset(p, 0, m); /* reused: zero it as promised (and it is resident again) */
        } else {
            int flags = MAP_PRIVATE | MAP_ANONYMOUS;
#ifdef MAP_POPULATE
            if (prefault) flags |= MAP_POPULATE;
#endif
            p = mmap(NULL, m, PROT_READ | PROT_WRITE, flags, -1, 0);
            if (p == MAP_FAILED) p = NULL;
        }
    }
    if (!p) {
        int e = errno;
        mem_uncharge(a, kind, m);
        return pl_fail(PL_ERR_NOMEM, "%s: the system refused %.1f MiB: %s", what, mem_mb(n), strerror(e));
    }
    *out = p;
    return PL_OK;
}

void mem_free(mem_account *a, mem_kind kind, void *p, size_t n) {
    if (!p) return;
    if (n == 0) n = 1;
    const size_t m = mem_held(n);
    if (n < MEM_MAP_MIN) free(p);
    else if (!mem_cache_put(p, m)) munmap(p, m);
    mem_uncharge(a, kind, m);
}

uint64_t mem_total_kind(mem_kind kind) { return atomic_load(&g_kind[kind]); }
uint64_t mem_total_used(void) { return atomic_load(&g_used); }
uint64_t mem_total_peak(void) { return atomic_load(&g_peak); }

uint64_t mem_cached_bytes(void) {
    pthread_mutex_lock(&g_mu);
    uint64_t v = g_cache_bytes;
    pthread_mutex_unlock(&g_mu);
    return v;
}

void mem_note_read(uint64_t n) { atomic_fetch_add(&g_read_bytes, n); }

void mem_region_add(const void *p, uint64_t n, bool locked) {
    pthread_mutex_lock(&g_mu);
    if (g_regions_n == g_regions_cap) {
        size_t cap = g_regions_cap ? g_regions_cap * 2 : 8;
        mem_region *nr = realloc(g_regions, cap * sizeof *nr);
        if (nr) {
            g_regions = nr;
            g_regions_cap = cap;
        }
    }
    /* without room the region is just not reported: figures, not correctness */
    if (g_regions_n < g_regions_cap) g_regions[g_regions_n++] = (mem_region){p, n, locked};
    pthread_mutex_unlock(&g_mu);
}

void mem_region_remove(const void *p) {
    pthread_mutex_lock(&g_mu);
    for (size_t i = 0; i < g_regions_n; i++)
        if (g_regions[i].p == p) {
            g_regions[i] = g_regions[--g_regions_n];
            break;
        }
    pthread_mutex_unlock(&g_mu);
}

/* ------------------------------------------------------------ public API */

/* Bytes of [p, p+n) present in this process's page tables (what RSS
 * counts), from /proc/self/pagemap (bit 63 = present); where that file is
 * missing, mincore's page-cache residency instead. */
static uint64_t mem_resident(const void *p, uint64_t n) {
    const uint64_t pg = mem_page_size();
    const uintptr_t start = (uintptr_t)p / pg * pg, end = ((uintptr_t)p + n + pg - 1) / pg * pg;
    uint64_t pages = 0;
    FILE *fp = fopen("/proc/self/pagemap", "rb");
    if (fp) {
        uint64_t ent[512];
        int ok = fseeko(fp, (off_t)(start / pg * 8), SEEK_SET) == 0;
        for (uintptr_t at = start; ok && at < end;) {
            size_t np = (size_t)((end - at) / pg);
            if (np > 512) np = 512;
            if (fread(ent, 8, np, fp) != np) ok = 0;
            for (size_t i = 0; ok && i < np; i++) pages += ent[i] >> 63;
            at += np * pg;
        }
        fclose(fp);
        if (ok) {
            const uint64_t b = pages * pg;
            return b < n ? b : n;
        }
        pages = 0;
    }
    unsigned char vec[4096];
    for (uintptr_t at = start; at < end;) {
        uint64_t np = (end - at) / pg;
        if (np > sizeof vec) np = sizeof vec;
        if (mincore((void *)at, (size_t)(np * pg), vec) != 0) return 0;
        for (uint64_t i = 0; i < np; i++) pages += vec[i] & 1;
        at += np * pg;
    }
    const uint64_t b = pages * pg;
    return b < n ? b : n;
}

uint64_t alloc_proc_kb(const char *path, const char *key) {
    FILE *fp = fopen(path, "r");
    if (!fp) return 0;
    char line[256];
    uint64_t v = 0;
    const size_t kl = strlen(key);
    while (fgets(line, sizeof line, fp))
        if (!strncmp(line, key, kl) && line[kl] == ':') {
            v = strtoull(line + kl + 1, NULL, 10) * 1024;
            break;
        }
    fclose(fp);
    return v;
}

void pl_memory_snapshot(pl_memory_stats *s) {
    if (!s) return;
    memset(s, 0, sizeof *s);
    pthread_mutex_lock(&g_mu);
    for (size_t i = 0; i < g_regions_n; i++) {
        s->weights_mapped += (int64_t)g_regions[i].n;
        s->weights_resident += (int64_t)mem_resident(g_regions[i].p, g_regions[i].n);
        if (g_regions[i].locked) s->weights_locked += (int64_t)g_regions[i].n;
    }
    s->cache_bytes = (int64_t)g_cache_bytes;
    pthread_mutex_unlock(&g_mu);
    s->weights_copied = (int64_t)atomic_load(&g_kind[MEM_WEIGHTS]);
    s->weights_resident += s->weights_copied;
    s->kv_bytes = (int64_t)atomic_load(&g_kind[MEM_KV]);
    s->scratch_bytes = (int64_t)atomic_load(&g_kind[MEM_SCRATCH]);
    s->other_bytes = (int64_t)atomic_load(&g_kind[MEM_OTHER]);
    s->active_bytes = (int64_t)atomic_load(&g_used);
    s->peak_bytes = (int64_t)atomic_load(&g_peak);
    s->rss_bytes = (int64_t)alloc_proc_kb("/proc/self/status", "VmRSS");
    s->rss_peak_bytes = (int64_t)alloc_proc_kb("/proc/self/status", "VmHWM");
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) == 0) {
        s->minor_faults = ru.ru_minflt;
        s->major_faults = ru.ru_majflt;
    }
    s->stream_read_bytes = (int64_t)atomic_load(&g_read_bytes);
}

void pl_memory_delta(const pl_memory_stats *a, const pl_memory_stats *b, pl_memory_stats *d) {
    if (!a || !b || !d) return;
    const int64_t *pa = &a->weights_mapped, *pb = &b->weights_mapped;
    int64_t *pd = &d->weights_mapped;
    /* every field is an int64_t, in order (static_assert in the header's layout below) */
    const size_t n = sizeof *d / sizeof(int64_t);
    for (size_t i = 0; i < n; i++) pd[i] = pb[i] - pa[i];
}
_Static_assert(sizeof(pl_memory_stats) % sizeof(int64_t) == 0, "pl_memory_stats holds only int64_t fields");

void pl_memory_reset_peak(void) { atomic_store(&g_peak, atomic_load(&g_used)); }

uint64_t pl_memory_set_cache_limit(uint64_t bytes) {
    mem_block *drop = NULL;
    size_t n_drop = 0;
    pthread_mutex_lock(&g_mu);
    uint64_t old = g_cache_limit;
    g_cache_limit = bytes;
    /* shrink to the new limit: hand the surplus blocks back after unlocking */
    if (g_cache_bytes > bytes && g_cache_n) {
        drop = malloc(g_cache_n * sizeof *drop);
        while (drop && g_cache_bytes > bytes && g_cache_n) {
            drop[n_drop++] = g_cache[--g_cache_n];
            g_cache_bytes -= g_cache[g_cache_n].n;
        }
    }
    pthread_mutex_unlock(&g_mu);
    for (size_t i = 0; i < n_drop; i++) munmap(drop[i].p, drop[i].n);
    free(drop);
    return old;
}

void pl_memory_clear_cache(void) {
    uint64_t old = pl_memory_set_cache_limit(0);
    pl_memory_set_cache_limit(old);
}
