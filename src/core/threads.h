/*
 * A persistent thread pool for data-parallel loops. The calling thread is
 * thread 0 and takes part in the work, so a pool of n threads starts n-1.
 * A job is a list of chunks that threads CLAIM from a shared counter, so a
 * thread that is running takes the work of one that is descheduled (a core
 * shared with another process): the caller waits only for chunks already
 * claimed, never for a worker that has not woken up. When jobs still cost
 * more than the caller alone would (a claimed chunk stuck on a preempted
 * thread), the pool runs the next jobs on the caller alone for a while, so
 * n threads stay at least about as fast as one. One job at a time per pool;
 * a pool call made from inside a job of the same pool runs inline.
 */
#ifndef PL_THREADS_H
#define PL_THREADS_H

#include "core.h"

typedef struct pl_pool pl_pool;
/* One task of pool_run: ith in [0, nth), nth = pool_size. */
typedef void (*pl_pool_fn)(void *arg, int ith, int nth);
/* One chunk of pool_for: items [i0, i1); thread in [0, pool_size) names the
 * thread running it (for per-thread scratch: no two chunks run at once on one
 * thread, but one thread may run many chunks, in any order). */
typedef void (*pl_pool_range_fn)(void *arg, int64_t i0, int64_t i1, int thread);

pl_status pool_new(int n_threads, pl_pool **out);
void pool_free(pl_pool *p);
int pool_size(const pl_pool *p);
/* fn(arg, ith, nth) exactly once for every ith in [0, nth), concurrently on
 * up to nth threads; any thread may run any ith (a running thread takes the
 * ith of one that has not started), so fn must not depend on which thread
 * runs it. Returns when all have returned. p == NULL: nth = 1, inline. */
void pool_run(pl_pool *p, pl_pool_fn fn, void *arg);
/* fn over [0, n) in chunks of `chunk` items (chunk <= 0: about four chunks
 * per thread), each chunk exactly once; returns when all are done. */
void pool_for(pl_pool *p, int64_t n, int64_t chunk, pl_pool_range_fn fn, void *arg);

#endif
