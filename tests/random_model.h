/*
 * Random models for tests and benchmarks: the library's model_write_random
 * (src/model/random_model.h) with a test-style wrapper that prints why it
 * failed and returns 1 on success.
 */
#ifndef PL_TEST_RANDOM_MODEL_H
#define PL_TEST_RANDOM_MODEL_H

#include "model/random_model.h"

#include <stdio.h>

static inline int rm_write(const rm_spec *s, const char *path) {
    pl_status st = model_write_random(s, path, NULL);
    if (st) fprintf(stderr, "  %s\n", pl_last_error());
    return st == PL_OK;
}

#endif
