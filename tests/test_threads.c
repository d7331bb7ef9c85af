/*
 * The thread pool (src/core/threads.c): every chunk of pool_for and every
 * task of pool_run runs exactly once, for many sizes, chunk sizes and thread
 * counts (more threads than items and than cores included), over thousands of
 * back-to-back jobs (a late worker must never run a chunk of a newer job);
 * per-thread scratch is never shared by two chunks at once; nested calls run
 * inline; a job of one pool may use another; a blocked worker's share is
 * finished by the other threads; pools are freed idle and asleep.
 */
#include "../src/core/threads.h"
#include "test.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <time.h>

enum { MAX_ITEMS = 100003, MAX_THREADS = 9 };

typedef struct count_job {
    atomic_int *hits;            /* per item */
    atomic_int busy[MAX_THREADS]; /* per thread: a chunk is running there */
    atomic_int bad_thread, overlap, bad_range;
    int64_t n, chunk;
    int nth;
} count_job;

static void count_range(void *arg, int64_t i0, int64_t i1, int thread) {
    count_job *j = arg;
    if (thread < 0 || thread >= j->nth) {
        atomic_fetch_add(&j->bad_thread, 1);
        return;
    }
    if (atomic_exchange(&j->busy[thread], 1)) atomic_fetch_add(&j->overlap, 1);
    if (i0 < 0 || i1 > j->n || i0 >= i1 || (j->chunk > 0 && i1 - i0 > j->chunk)) atomic_fetch_add(&j->bad_range, 1);
    else
        for (int64_t i = i0; i < i1; i++) atomic_fetch_add(&j->hits[i], 1);
    atomic_store(&j->busy[thread], 0);
}

/* Runs pool_for over n items and checks each item was hit once. */
static int for_once(pl_pool *pool, atomic_int *hits, int64_t n, int64_t chunk) {
    count_job j = {.hits = hits, .n = n, .chunk = chunk, .nth = pool_size(pool)};
    for (int64_t i = 0; i < n; i++) atomic_init(&hits[i], 0);
    pool_for(pool, n, chunk, count_range, &j);
    int bad = atomic_load(&j.bad_thread) + atomic_load(&j.overlap) + atomic_load(&j.bad_range);
    for (int64_t i = 0; i < n; i++) bad += atomic_load(&hits[i]) != 1;
    return bad;
}

static void test_for_every_chunk_once(void) {
    static atomic_int hits[MAX_ITEMS];
    const int threads[] = {1, 2, 3, 8};
    const int64_t sizes[] = {0, 1, 2, 3, 7, 64, 1000, MAX_ITEMS};
    const int64_t chunks[] = {0, 1, 3, 17, 4096};
    for (size_t a = 0; a < sizeof threads / sizeof *threads; a++) {
        pl_pool *pool = NULL;
        REQUIRE(pool_new(threads[a], &pool) == PL_OK, "pool_new(%d)", threads[a]);
        CHECK(pool_size(pool) == threads[a], "size %d, asked %d", pool_size(pool), threads[a]);
        for (size_t b = 0; b < sizeof sizes / sizeof *sizes; b++)
            for (size_t c = 0; c < sizeof chunks / sizeof *chunks; c++) {
                int bad = for_once(pool, hits, sizes[b], chunks[c]);
                CHECK(bad == 0, "%d threads, n %lld, chunk %lld: %d errors", threads[a], (long long)sizes[b],
                      (long long)chunks[c], bad);
            }
        pool_free(pool);
    }
    /* no pool: the caller alone */
    CHECK(for_once(NULL, hits, 1000, 7) == 0, "NULL pool");
}

typedef struct task_job {
    atomic_int hits[MAX_THREADS];
    atomic_int bad;
    int nth;
} task_job;

static void count_task(void *arg, int ith, int nth) {
    task_job *j = arg;
    if (nth != j->nth || ith < 0 || ith >= nth) atomic_fetch_add(&j->bad, 1);
    else atomic_fetch_add(&j->hits[ith], 1);
}

/* Thousands of jobs back to back, alternating pool_run and pool_for, so late
 * workers meet newer jobs. */
static void test_back_to_back(void) {
    static atomic_int hits[64];
    const int threads[] = {2, 3, 8};
    for (size_t a = 0; a < sizeof threads / sizeof *threads; a++) {
        pl_pool *pool = NULL;
        REQUIRE(pool_new(threads[a], &pool) == PL_OK, "pool_new");
        int bad = 0;
        for (int rep = 0; rep < 3000 && !bad; rep++) {
            task_job tj = {.nth = threads[a]};
            pool_run(pool, count_task, &tj);
            bad += atomic_load(&tj.bad);
            for (int i = 0; i < threads[a]; i++) bad += atomic_load(&tj.hits[i]) != 1;
            bad += for_once(pool, hits, 1 + rep % 64, rep % 5);
        }
        CHECK(bad == 0, "%d threads: %d errors", threads[a], bad);
        pool_free(pool);
    }
}

typedef struct nest_job {
    pl_pool *inner; /* the pool the nested call uses */
    bool serialize; /* inner is another pool: one job at a time there */
    pthread_mutex_t mu;
    atomic_int *hits;
    atomic_int bad;
    int64_t n_inner;
} nest_job;

static void nest_inner(void *arg, int64_t i0, int64_t i1, int thread) {
    nest_job *j = arg;
    (void)thread;
    for (int64_t i = i0; i < i1; i++) atomic_fetch_add(&j->hits[i], 1);
}

typedef struct nest_slice {
    nest_job *j;
    int64_t base;
} nest_slice;

static void nest_inner_slice(void *arg, int64_t i0, int64_t i1, int thread) {
    nest_slice *s = arg;
    nest_inner(s->j, s->base + i0, s->base + i1, thread);
}

/* Each outer item o runs a pool_for over items [o*n_inner, (o+1)*n_inner). */
static void nest_outer(void *arg, int64_t i0, int64_t i1, int thread) {
    nest_job *j = arg;
    (void)thread;
    for (int64_t o = i0; o < i1; o++) {
        nest_slice s = {j, o * j->n_inner};
        if (j->serialize) pthread_mutex_lock(&j->mu);
        pool_for(j->inner, j->n_inner, 3, nest_inner_slice, &s);
        if (j->serialize) pthread_mutex_unlock(&j->mu);
    }
}

static void nest_task(void *arg, int ith, int nth) {
    nest_job *j = arg;
    task_job tj = {.nth = pool_size(j->inner)};
    if (j->serialize) pthread_mutex_lock(&j->mu);
    pool_run(j->inner, count_task, &tj); /* nested pool_run */
    if (j->serialize) pthread_mutex_unlock(&j->mu);
    int bad = atomic_load(&tj.bad);
    for (int i = 0; i < tj.nth; i++) bad += atomic_load(&tj.hits[i]) != 1;
    if (bad || ith >= nth) atomic_fetch_add(&j->bad, 1);
}

static void test_nested(void) {
    static atomic_int hits[40 * 50];
    pl_pool *a = NULL, *b = NULL;
    REQUIRE(pool_new(3, &a) == PL_OK && pool_new(2, &b) == PL_OK, "pools");
    pl_pool *inner[] = {a, b, NULL}; /* same pool (inline), another pool, none */
    for (int k = 0; k < 3; k++) {
        nest_job j = {.inner = inner[k], .serialize = inner[k] == b, .hits = hits, .n_inner = 50};
        pthread_mutex_init(&j.mu, NULL);
        for (int i = 0; i < 40 * 50; i++) atomic_init(&hits[i], 0);
        pool_for(a, 40, 1, nest_outer, &j);
        int bad = 0;
        for (int i = 0; i < 40 * 50; i++) bad += atomic_load(&hits[i]) != 1;
        CHECK(bad == 0, "nested pool_for (inner pool %d): %d items not hit once", k, bad);
        pool_run(a, nest_task, &j);
        CHECK(atomic_load(&j.bad) == 0, "nested pool_run (inner pool %d): %d errors", k, atomic_load(&j.bad));
        pthread_mutex_destroy(&j.mu);
    }
    pool_free(a);
    pool_free(b);
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

typedef struct block_job {
    atomic_int done;    /* items finished */
    atomic_int blocked; /* a worker holds a chunk and waits */
    atomic_int released_by_others, timed_out;
    int64_t n;
} block_job;

/* The first chunk a worker (thread != 0) takes waits until every other item
 * is done: only possible if the other threads take that worker's share. A
 * guard of 10 s turns a static split into a failure instead of a hang. */
static void block_range(void *arg, int64_t i0, int64_t i1, int thread) {
    block_job *j = arg;
    int expect = 0;
    if (thread != 0 && atomic_compare_exchange_strong(&j->blocked, &expect, 1)) {
        const double t0 = now_s();
        while (atomic_load(&j->done) < j->n - (i1 - i0)) {
            if (now_s() - t0 > 10.0) {
                atomic_store(&j->timed_out, 1);
                break;
            }
            nanosleep(&(struct timespec){0, 100000}, NULL);
        }
        if (!atomic_load(&j->timed_out)) atomic_store(&j->released_by_others, 1);
    } else { /* some work, so that the worker is awake to claim a chunk */
        const double t0 = now_s();
        while (now_s() - t0 < 20e-6) {
        }
    }
    atomic_fetch_add(&j->done, (int)(i1 - i0));
}

static void test_blocked_worker_share_taken(void) {
    pl_pool *pool = NULL;
    REQUIRE(pool_new(2, &pool) == PL_OK, "pool");
    int blocked_runs = 0;
    for (int rep = 0; rep < 20; rep++) {
        block_job j = {.n = 64};
        pool_for(pool, j.n, 1, block_range, &j);
        CHECK(atomic_load(&j.done) == j.n, "rep %d: %d of %lld items", rep, atomic_load(&j.done), (long long)j.n);
        CHECK(!atomic_load(&j.timed_out), "rep %d: the blocked worker's share was not taken by the caller", rep);
        blocked_runs += atomic_load(&j.released_by_others);
        if (atomic_load(&j.timed_out)) break;
    }
    /* the worker usually gets a chunk; say so when it never did */
    if (!blocked_runs) printf("  note: the worker never claimed a chunk in 20 jobs\n");
    pool_free(pool);
}

/* Free pools never used, idle (workers spinning) and asleep (workers on the
 * condition variable), and wake sleeping workers for a job first. */
static void test_free_idle(void) {
    static atomic_int hits[1000];
    for (int k = 0; k < 3; k++) {
        pl_pool *pool = NULL;
        REQUIRE(pool_new(4, &pool) == PL_OK, "pool");
        if (k >= 1) CHECK(for_once(pool, hits, 1000, 0) == 0, "first job");
        if (k == 2) {
            nanosleep(&(struct timespec){0, 200 * 1000000}, NULL); /* workers go to sleep */
            CHECK(for_once(pool, hits, 1000, 0) == 0, "job after sleep");
            nanosleep(&(struct timespec){0, 200 * 1000000}, NULL);
        }
        pool_free(pool);
    }
    pl_pool *pool = NULL;
    CHECK(pool_new(0, &pool) == PL_OK && pool_size(pool) == 1, "0 threads means 1");
    pool_free(pool);
    pool_free(NULL);
}

int main(void) {
    RUN(test_for_every_chunk_once);
    RUN(test_back_to_back);
    RUN(test_nested);
    RUN(test_blocked_worker_share_taken);
    RUN(test_free_idle);
    TEST_END();
}
