/*
 * A minimal test harness: each test binary runs cases with RUN(fn); a case
 * fails when any CHECK inside it fails. The binary ends by printing
 * "N passed, M failed[, K skipped]" (counting cases), which tests/run.sh sums.
 * A case that cannot run here (e.g. ../shared absent) calls SKIP("why").
 */
#ifndef PL_TEST_H
#define PL_TEST_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static int t_pass, t_fail, t_skip, t_case_failed, t_case_skipped;

#define CHECK(cond, ...)                                                   \
    do {                                                                   \
        if (!(cond)) {                                                     \
            t_case_failed = 1;                                             \
            fprintf(stderr, "  check failed %s:%d: %s: ", __FILE__, __LINE__, #cond); \
            fprintf(stderr, __VA_ARGS__);                                  \
            fputc('\n', stderr);                                           \
        }                                                                  \
    } while (0)

/* CHECK that also leaves the case (for checks later lines depend on). */
#define REQUIRE(cond, ...)                                                 \
    do {                                                                   \
        if (!(cond)) { /* evaluated once */                                \
            t_case_failed = 1;                                             \
            fprintf(stderr, "  check failed %s:%d: %s: ", __FILE__, __LINE__, #cond); \
            fprintf(stderr, __VA_ARGS__);                                  \
            fputc('\n', stderr);                                           \
            return;                                                        \
        }                                                                  \
    } while (0)

#define SKIP(...)                                                          \
    do {                                                                   \
        t_case_skipped = 1;                                                \
        fprintf(stderr, "  skipped: ");                                    \
        fprintf(stderr, __VA_ARGS__);                                      \
        fputc('\n', stderr);                                               \
        return;                                                            \
    } while (0)

#define RUN(fn)                                                            \
    do {                                                                   \
        t_case_failed = t_case_skipped = 0;                                \
        fn();                                                              \
        if (t_case_failed) { t_fail++; printf("FAIL %s\n", #fn); }          \
        else if (t_case_skipped) { t_skip++; printf("skip %s\n", #fn); }     \
        else { t_pass++; printf("ok   %s\n", #fn); }                        \
        fflush(stdout);                                                    \
    } while (0)

#define TEST_END()                                                         \
    do {                                                                   \
        printf("%d passed, %d failed, %d skipped\n", t_pass, t_fail, t_skip); \
        return t_fail ? 1 : 0;                                             \
    } while (0)

/* Path of a file under ../shared, or NULL when it is not there. */
static inline const char *shared_path(const char *rel) {
    static char buf[8][1024];
    static int slot;
    const char *root = getenv("PL_SHARED");
    if (!root) root = "../shared";
    char *b = buf[slot++ & 7];
    snprintf(b, sizeof buf[0], "%s/%s", root, rel);
    struct stat st;
    return stat(b, &st) == 0 ? b : NULL;
}

#endif
