/*
 * Thread pool with claimed chunks. A job is published as one atomic word,
 * (generation, chunk count, next chunk); every thread, the caller included,
 * claims chunks by compare-and-swap on that word until none is left, so work
 * goes to whichever thread is running. Because the generation and the count
 * travel in the word, a worker that wakes late can never claim a chunk of a
 * newer job thinking it belongs to the old one, and the caller may return as
 * soon as every chunk is done (`done` == count) even if some worker has not
 * woken yet. Waiting is a short spin then a condition variable, both ways:
 * workers between jobs (the engine issues many short jobs per token, so a
 * sleep per job would dominate small models) and the caller for chunks that
 * other threads claimed but have not finished (their thread may be
 * descheduled; spinning would only steal its core).
 *
 * What a descheduled thread has claimed, only it can finish: when another
 * process holds its core, each job may wait a whole time slice for it, and
 * two threads end up slower than one. So the caller times every job against
 * its own share (its chunks' time scaled to all chunks is what the job would
 * have cost alone) and, when jobs keep costing more than that, runs the next
 * jobs alone for a while (doubling while it keeps losing), then tries again.
 */
#include "threads.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>

/* job word: generation (24 bits) | chunk count (20) | next chunk (20). The
 * generation only tells jobs apart: a worker would have to stall between
 * reading the word and its compare-and-swap for 2^24 jobs to be fooled. */
#define POOL_IDX_BITS 20
#define POOL_MAX_CHUNKS ((1u << POOL_IDX_BITS) - 1)
#define POOL_GEN_MASK ((1u << 24) - 1)

enum {
    POOL_WORKER_SPIN = 1 << 14, /* pause-loops a worker spins for the next job before sleeping */
    POOL_CALLER_SPIN = 1 << 12, /* pause-loops the caller spins for claimed chunks before sleeping */
    POOL_MAX_THREADS = 1024
};

/* The straggler guard: `slow` is a running mean (weight 1/8 per job) of a
 * job's time over its estimated time alone; above POOL_SLOW_ENTER the pool
 * runs jobs on the caller alone for `backoff` ms, doubling from
 * POOL_BACKOFF_MIN_MS to POOL_BACKOFF_MAX_MS while each try loses again, and
 * back to the minimum once the mean falls under POOL_SLOW_RESET. */
#define POOL_SLOW_ENTER 1.0
#define POOL_SLOW_RESET 0.75
#define POOL_BACKOFF_MIN_MS 8.0
#define POOL_BACKOFF_MAX_MS 512.0

struct pl_pool {
    int n;
    pthread_t *threads;
    pthread_mutex_t mu;
    pthread_cond_t wake_cv; /* workers sleep here between jobs */
    pthread_cond_t done_cv; /* the caller sleeps here for claimed chunks */
    _Atomic uint64_t job;   /* see POOL_IDX_BITS */
    atomic_uint done;       /* chunks of the current job finished */
    atomic_int n_sleeping;  /* workers on wake_cv (or about to be) */
    atomic_int caller_waiting;
    atomic_int quit;
    uint32_t gen; /* the caller's last generation */
    /* the straggler guard (caller only) */
    double alone_until_ms, backoff_ms, slow;
    /* the current job: written by the caller before it publishes `job`, read
     * by a thread only after it has claimed one of the job's chunks (so the
     * job cannot end, and these cannot change, while it reads them) */
    pl_pool_fn task_fn; /* pool_run, or NULL */
    pl_pool_range_fn range_fn;
    void *arg;
    int64_t n_items, chunk;
};

typedef struct { pl_pool *p; int ith; } worker_arg;

/* The pool whose job this thread is running, and its thread index there: a
 * pool call from inside a job of the same pool runs inline. */
static _Thread_local pl_pool *tl_pool;
static _Thread_local int tl_thread;

static inline void pool_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

static inline uint32_t job_gen(uint64_t w) { return (uint32_t)(w >> (2 * POOL_IDX_BITS)); }
static inline uint32_t job_count(uint64_t w) { return (uint32_t)(w >> POOL_IDX_BITS) & POOL_MAX_CHUNKS; }
static inline uint32_t job_next(uint64_t w) { return (uint32_t)w & POOL_MAX_CHUNKS; }

static void pool_exec(const pl_pool *p, uint32_t c, uint32_t count, int thread) {
    if (p->task_fn) {
        p->task_fn(p->arg, (int)c, (int)count);
        return;
    }
    const int64_t i0 = (int64_t)c * p->chunk;
    const int64_t i1 = i0 + p->chunk < p->n_items ? i0 + p->chunk : p->n_items;
    p->range_fn(p->arg, i0, i1, thread);
}

/* Claims and runs chunks of generation g until none is left; then adds them
 * to `done` and wakes the caller if it sleeps and this was the last. Returns
 * how many it ran. */
static uint32_t pool_work(pl_pool *p, uint32_t g, int thread) {
    uint32_t ran = 0, count = 0;
    uint64_t w = atomic_load_explicit(&p->job, memory_order_acquire);
    while (job_gen(w) == g && job_next(w) < job_count(w)) {
        if (!atomic_compare_exchange_weak_explicit(&p->job, &w, w + 1, memory_order_acq_rel, memory_order_acquire))
            continue; /* w now holds the current word */
        count = job_count(w);
        pool_exec(p, job_next(w), count, thread);
        ran++;
        w = atomic_load_explicit(&p->job, memory_order_acquire);
    }
    if (!ran) return 0;
    if (atomic_fetch_add(&p->done, ran) + ran == count && atomic_load(&p->caller_waiting)) {
        pthread_mutex_lock(&p->mu);
        pthread_cond_broadcast(&p->done_cv);
        pthread_mutex_unlock(&p->mu);
    }
    return ran;
}

static void *worker_main(void *v) {
    worker_arg *wa = v;
    pl_pool *p = wa->p;
    tl_pool = p;
    tl_thread = wa->ith;
    free(wa);
    uint32_t seen = job_gen(atomic_load(&p->job));
    for (;;) {
        uint64_t w = atomic_load_explicit(&p->job, memory_order_acquire);
        for (int spins = 0; job_gen(w) == seen && spins < POOL_WORKER_SPIN && !atomic_load_explicit(&p->quit, memory_order_relaxed); spins++) {
            pool_relax();
            w = atomic_load_explicit(&p->job, memory_order_acquire);
        }
        if (job_gen(w) == seen) {
            pthread_mutex_lock(&p->mu);
            atomic_fetch_add(&p->n_sleeping, 1);
            while (job_gen(w = atomic_load(&p->job)) == seen && !atomic_load(&p->quit))
                pthread_cond_wait(&p->wake_cv, &p->mu);
            atomic_fetch_sub(&p->n_sleeping, 1);
            pthread_mutex_unlock(&p->mu);
        }
        if (atomic_load(&p->quit)) return NULL;
        seen = job_gen(w);
        pool_work(p, seen, tl_thread);
    }
}

pl_status pool_new(int n_threads, pl_pool **out) {
    *out = NULL;
    if (n_threads < 1) n_threads = 1;
    if (n_threads > POOL_MAX_THREADS) n_threads = POOL_MAX_THREADS;
    pl_pool *p = calloc(1, sizeof *p);
    if (!p) return pl_fail(PL_ERR_NOMEM, "thread pool: out of memory");
    p->threads = calloc((size_t)n_threads, sizeof *p->threads);
    if (!p->threads) {
        free(p);
        return pl_fail(PL_ERR_NOMEM, "thread pool: out of memory");
    }
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->wake_cv, NULL);
    pthread_cond_init(&p->done_cv, NULL);
    p->n = 1; /* threads started so far, for pool_free on failure */
    p->backoff_ms = POOL_BACKOFF_MIN_MS;
    for (int i = 1; i < n_threads; i++) {
        worker_arg *wa = malloc(sizeof *wa);
        if (wa) *wa = (worker_arg){p, i};
        if (!wa || pthread_create(&p->threads[i], NULL, worker_main, wa) != 0) {
            free(wa);
            pool_free(p);
            return pl_fail(PL_ERR_NOMEM, "thread pool: cannot start thread %d of %d", i, n_threads);
        }
        p->n = i + 1;
    }
    *out = p;
    return PL_OK;
}

void pool_free(pl_pool *p) {
    if (!p) return;
    pthread_mutex_lock(&p->mu);
    atomic_store(&p->quit, 1);
    pthread_cond_broadcast(&p->wake_cv);
    pthread_mutex_unlock(&p->mu);
    for (int i = 1; i < p->n; i++) pthread_join(p->threads[i], NULL);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->wake_cv);
    pthread_cond_destroy(&p->done_cv);
    free(p->threads);
    free(p);
}

int pool_size(const pl_pool *p) { return p ? p->n : 1; }

/* true when the next job should run on the caller alone: a nested call, a
 * pool of one, or the straggler guard's pause. */
static bool pool_alone(pl_pool *p) {
    if (!p || p->n == 1 || tl_pool == p) return true;
    if (p->alone_until_ms == 0.0) return false;
    if (pl_time_ms() < p->alone_until_ms) return true;
    p->alone_until_ms = 0.0;
    p->slow = POOL_SLOW_RESET; /* one more lost job enters the pause again */
    return false;
}

/* Feeds one job's times to the straggler guard: t_own = the caller's time
 * in its `own` chunks, t_all = the job's, out of `count` chunks. */
static void pool_guard(pl_pool *p, double t_own, double t_all, uint32_t own, uint32_t count) {
    if (own == 0 || own == count || t_own <= 0.0) return; /* nothing to compare */
    const double ratio = t_all / (t_own * count / own);
    p->slow += (ratio - p->slow) / 8;
    if (p->slow > POOL_SLOW_ENTER) {
        p->alone_until_ms = pl_time_ms() + p->backoff_ms;
        p->backoff_ms = p->backoff_ms * 2 < POOL_BACKOFF_MAX_MS ? p->backoff_ms * 2 : POOL_BACKOFF_MAX_MS;
    } else if (p->slow < POOL_SLOW_RESET) {
        p->backoff_ms = POOL_BACKOFF_MIN_MS;
    }
}

/* Publishes the job set in p, works on it, returns when all chunks are done. */
static void pool_dispatch(pl_pool *p, uint32_t count) {
    pl_pool *const saved_pool = tl_pool;
    const int saved_thread = tl_thread;
    tl_pool = p;
    tl_thread = 0;
    atomic_store_explicit(&p->done, 0, memory_order_relaxed);
    p->gen = (p->gen + 1) & POOL_GEN_MASK;
    const uint32_t g = p->gen;
    atomic_store(&p->job, (uint64_t)g << (2 * POOL_IDX_BITS) | (uint64_t)count << POOL_IDX_BITS);
    if (atomic_load(&p->n_sleeping) > 0) {
        pthread_mutex_lock(&p->mu);
        pthread_cond_broadcast(&p->wake_cv);
        pthread_mutex_unlock(&p->mu);
    }
    const double t0 = pl_time_ms();
    const uint32_t own = pool_work(p, g, 0);
    const double t1 = pl_time_ms();
    /* what is left was claimed by other threads: wait for those chunks only */
    for (int spins = 0; atomic_load_explicit(&p->done, memory_order_acquire) < count; spins++) {
        if (spins < POOL_CALLER_SPIN) {
            pool_relax();
            continue;
        }
        pthread_mutex_lock(&p->mu);
        atomic_store(&p->caller_waiting, 1);
        while (atomic_load(&p->done) < count) pthread_cond_wait(&p->done_cv, &p->mu);
        atomic_store(&p->caller_waiting, 0);
        pthread_mutex_unlock(&p->mu);
    }
    pool_guard(p, t1 - t0, pl_time_ms() - t0, own, count);
    tl_pool = saved_pool;
    tl_thread = saved_thread;
}

void pool_run(pl_pool *p, pl_pool_fn fn, void *arg) {
    const int nth = pool_size(p);
    if (pool_alone(p)) {
        for (int i = 0; i < nth; i++) fn(arg, i, nth);
        return;
    }
    p->task_fn = fn;
    p->range_fn = NULL;
    p->arg = arg;
    pool_dispatch(p, (uint32_t)nth);
}

void pool_for(pl_pool *p, int64_t n, int64_t chunk, pl_pool_range_fn fn, void *arg) {
    if (n <= 0) return;
    const int nth = pool_size(p);
    if (chunk <= 0) chunk = (n + 4 * nth - 1) / (4 * nth);
    if ((n + chunk - 1) / chunk > POOL_MAX_CHUNKS) chunk = (n + POOL_MAX_CHUNKS - 1) / POOL_MAX_CHUNKS;
    const uint32_t count = (uint32_t)((n + chunk - 1) / chunk);
    if (count == 1 || pool_alone(p)) {
        const int thread = p && tl_pool == p ? tl_thread : 0;
        for (int64_t i0 = 0; i0 < n; i0 += chunk) fn(arg, i0, i0 + chunk < n ? i0 + chunk : n, thread);
        return;
    }
    p->task_fn = NULL;
    p->range_fn = fn;
    p->arg = arg;
    p->n_items = n;
    p->chunk = chunk;
    pool_dispatch(p, count);
}
