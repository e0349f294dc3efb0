/* The two helpers every C benchmark here times with: a monotonic clock in seconds, and the
 * comparator that sorts samples for medians. Header-only (each program is compiled alone). */
#ifndef DL_BENCH_TIMING_H
#define DL_BENCH_TIMING_H
#include <time.h>

static inline double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

static inline int compare(const void *a, const void *b) {
    const double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}
#endif
