/*
 * A persistent thread pool for data-parallel loops. The calling thread is
 * worker 0 and takes part in the work, so a pool of n threads starts n-1.
 * pool_run() hands every worker the same function with its index and blocks
 * until all have returned; work is split by the function itself (e.g. rows
 * [ith*n/nth, (ith+1)*n/nth)). Not reentrant: one pool_run at a time.
 */
#ifndef PL_THREADS_H
#define PL_THREADS_H

#include "core.h"

typedef struct pl_pool pl_pool;
typedef void (*pl_pool_fn)(void *arg, int ith, int nth);

pl_status pool_new(int n_threads, pl_pool **out);
void pool_free(pl_pool *p);
int pool_size(const pl_pool *p);
void pool_run(pl_pool *p, pl_pool_fn fn, void *arg);

#endif
