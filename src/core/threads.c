/*
 * Thread pool: workers sleep on a condition variable until the generation
 * counter moves, spin briefly first because the engine issues many short
 * parallel loops per token (a futex wake per loop would dominate small models).
 */
#include "threads.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>

struct pl_pool {
    int n;
    pthread_t *threads;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    atomic_uint gen;      /* bumped for each job */
    atomic_int pending;   /* workers still running the current job */
    atomic_int quit;
    pl_pool_fn fn;
    void *arg;
};

typedef struct { pl_pool *p; int ith; } worker_arg;

enum { SPIN_ITERS = 20000 };

static void *worker_main(void *v) {
    worker_arg *wa = v;
    pl_pool *p = wa->p;
    int ith = wa->ith;
    free(wa);
    unsigned seen = 0;
    for (;;) {
        unsigned g;
        int spins = 0;
        while ((g = atomic_load_explicit(&p->gen, memory_order_acquire)) == seen && spins < SPIN_ITERS) spins++;
        if (g == seen) {
            pthread_mutex_lock(&p->mu);
            while ((g = atomic_load(&p->gen)) == seen && !atomic_load(&p->quit)) pthread_cond_wait(&p->cv, &p->mu);
            pthread_mutex_unlock(&p->mu);
        }
        if (atomic_load(&p->quit)) return NULL;
        seen = g;
        p->fn(p->arg, ith, p->n);
        atomic_fetch_sub_explicit(&p->pending, 1, memory_order_acq_rel);
    }
}

pl_status pool_new(int n_threads, pl_pool **out) {
    *out = NULL;
    if (n_threads < 1) n_threads = 1;
    pl_pool *p = calloc(1, sizeof *p);
    if (!p) return pl_fail(PL_ERR_NOMEM, "thread pool: out of memory");
    p->n = n_threads;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    p->threads = calloc((size_t)n_threads, sizeof *p->threads);
    if (!p->threads) goto fail;
    for (int i = 1; i < n_threads; i++) {
        worker_arg *wa = malloc(sizeof *wa);
        if (!wa) goto fail_threads;
        wa->p = p;
        wa->ith = i;
        if (pthread_create(&p->threads[i], NULL, worker_main, wa) != 0) {
            free(wa);
            goto fail_threads;
        }
        continue;
    fail_threads:
        p->n = i; /* only join the ones started */
        pool_free(p);
        return pl_fail(PL_ERR_NOMEM, "thread pool: cannot start thread %d of %d", i, n_threads);
    }
    *out = p;
    return PL_OK;
fail:
    free(p);
    return pl_fail(PL_ERR_NOMEM, "thread pool: out of memory");
}

void pool_free(pl_pool *p) {
    if (!p) return;
    pthread_mutex_lock(&p->mu);
    atomic_store(&p->quit, 1);
    atomic_fetch_add(&p->gen, 1);
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    for (int i = 1; i < p->n; i++) pthread_join(p->threads[i], NULL);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cv);
    free(p->threads);
    free(p);
}

int pool_size(const pl_pool *p) { return p ? p->n : 1; }

void pool_run(pl_pool *p, pl_pool_fn fn, void *arg) {
    if (!p || p->n == 1) {
        fn(arg, 0, 1);
        return;
    }
    p->fn = fn;
    p->arg = arg;
    atomic_store(&p->pending, p->n - 1);
    pthread_mutex_lock(&p->mu);
    atomic_fetch_add_explicit(&p->gen, 1, memory_order_release);
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    fn(arg, 0, p->n);
    while (atomic_load_explicit(&p->pending, memory_order_acquire) > 0) {
    }
}
