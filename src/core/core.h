/*
 * core: status/error text, small helpers shared by every module.
 *
 * Module dependency order (a module includes only headers to its left):
 *   core -> quant -> gguf -> kernels -> tokenizer -> sample -> model -> api
 * tools/ and tests/ may include anything. Nothing includes upward.
 */
#ifndef PL_CORE_H
#define PL_CORE_H

#include "pocketllm.h"

#include <stddef.h>
#include <stdint.h>

#if defined(__GNUC__)
#define PL_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define PL_PRINTF(a, b)
#endif

/* Record a failure for pl_last_error() on this thread and return `s`, so that
 * callers can write `return pl_fail(PL_ERR_FORMAT, "%s: tensor '%s' ...", ...)`. */
pl_status pl_fail(pl_status s, const char *fmt, ...) PL_PRINTF(2, 3);
/* Prefix the current message with more context ("loading x.gguf: <old>"). */
pl_status pl_fail_prefix(pl_status s, const char *fmt, ...) PL_PRINTF(2, 3);

/* Checked size arithmetic: return 0 on overflow, 1 on success. */
static inline int pl_mul_ok(uint64_t a, uint64_t b, uint64_t *out) {
    if (a != 0 && b > UINT64_MAX / a) return 0;
    *out = a * b;
    return 1;
}
static inline int pl_add_ok(uint64_t a, uint64_t b, uint64_t *out) {
    if (b > UINT64_MAX - a) return 0;
    *out = a + b;
    return 1;
}

/* Monotonic clock in milliseconds. */
double pl_time_ms(void);
/* Number of online CPUs (>= 1). */
int pl_cpu_count(void);

#endif
