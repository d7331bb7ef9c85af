/*
 * Error reporting: one message buffer per thread, written by pl_fail() where a
 * failure is detected and read by pl_last_error(). The status travels as the
 * return value; the text only adds the "which" and "why".
 */
#include "core.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static _Thread_local char g_err[1024] = "no error";

const char *pl_last_error(void) { return g_err; }

const char *pl_version(void) { return "0.1.0"; }

const char *pl_status_name(pl_status s) {
    static const char *const names[] = {
        [PL_OK] = "PL_OK",
        [PL_ERR_INVALID_ARG] = "PL_ERR_INVALID_ARG",
        [PL_ERR_IO] = "PL_ERR_IO",
        [PL_ERR_FORMAT] = "PL_ERR_FORMAT",
        [PL_ERR_UNSUPPORTED] = "PL_ERR_UNSUPPORTED",
        [PL_ERR_NOMEM] = "PL_ERR_NOMEM",
        [PL_ERR_BUDGET] = "PL_ERR_BUDGET",
        [PL_ERR_CANCELLED] = "PL_ERR_CANCELLED",
        [PL_ERR_CONTEXT_FULL] = "PL_ERR_CONTEXT_FULL",
        [PL_ERR_INTERNAL] = "PL_ERR_INTERNAL",
    };
    if ((unsigned)s < sizeof names / sizeof names[0] && names[s]) return names[s];
    return "PL_ERR_UNKNOWN";
}

pl_status pl_fail(pl_status s, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(g_err, sizeof g_err, fmt, ap);
    va_end(ap);
    return s;
}

pl_status pl_fail_prefix(pl_status s, const char *fmt, ...) {
    char prefix[512], old[sizeof g_err];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    memcpy(old, g_err, sizeof old);
    /* "<prefix>: <old>", cut to the buffer (truncation is intended) */
    size_t np = strlen(prefix), no = strlen(old), cap = sizeof g_err - 1;
    if (np > cap) np = cap;
    memcpy(g_err, prefix, np);
    size_t at = np;
    for (const char *sep = ": "; *sep && at < cap; sep++) g_err[at++] = *sep;
    if (no > cap - at) no = cap - at;
    memcpy(g_err + at, old, no);
    g_err[at + no] = 0;
    return s;
}

double pl_time_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

int pl_cpu_count(void) {
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}
