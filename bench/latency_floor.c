/* The floor under one dense sample's prediction on this machine: how long it takes just to
 * read the MNIST MLP's first weight (784 x 128 float32, 401 KB, resident in L2) and multiply
 * it by one row, with nothing else around it (no library, no call, no checks).
 *
 *   cc -O2 -pthread bench/latency_floor.c -o latency_floor && ./latency_floor
 *
 * Prints, median [min-max] over ROUNDS rounds of CALLS calls each:
 *   - one thread: the whole product (x . W^T, 128 outputs in eight AVX-512 registers);
 *   - one thread: half of it (392 rows), what each of two threads reads;
 *   - two threads: each its half at once, handed over by a spinning worker (the cheapest
 *     fork-join there is), the caller waiting for both;
 * and the bytes per second each stands for. Needs AVX-512 (x86-64 with avx512f). */
#define _GNU_SOURCE
#include <immintrin.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

enum { K = 784, N = 128, CALLS = 20000, ROUNDS = 7 };

static float *w, *x, y0[N], y1[N];
static unsigned job, done;   /* atomic: the job the worker should run, the last it finished */

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

/* y = x[0..k) . w[0..k) (rows of N floats): two chains of eight accumulators. */
__attribute__((target("avx512f"), noinline))
static void product(const float *xs, int k, const float *ws, float *y) {
    __m512 a[8], b[8];
    for (int q = 0; q < 8; q++) a[q] = b[q] = _mm512_setzero_ps();
    for (int i = 0; i + 2 <= k; i += 2) {
        const __m512 s = _mm512_set1_ps(xs[i]), t = _mm512_set1_ps(xs[i + 1]);
        const float *r = ws + (size_t)i * N;
        for (int q = 0; q < 8; q++) {
            a[q] = _mm512_fmadd_ps(s, _mm512_loadu_ps(r + 16 * q), a[q]);
            b[q] = _mm512_fmadd_ps(t, _mm512_loadu_ps(r + N + 16 * q), b[q]);
        }
    }
    for (int q = 0; q < 8; q++) _mm512_storeu_ps(y + 16 * q, _mm512_add_ps(a[q], b[q]));
}

static void *worker(void *unused) {
    (void)unused;
    unsigned seen = 0;
    for (;;) {
        unsigned now_job;
        while ((now_job = __atomic_load_n(&job, __ATOMIC_ACQUIRE)) == seen) _mm_pause();
        seen = now_job;
        product(x + K / 2, K / 2, w + (size_t)(K / 2) * N, y1);
        __atomic_store_n(&done, seen, __ATOMIC_RELEASE);
    }
    return NULL;
}

static int compare(const void *a, const void *b) {
    const double u = *(const double *)a, v = *(const double *)b;
    return (u > v) - (u < v);
}

static void report(const char *what, double seconds[ROUNDS], double bytes) {
    qsort(seconds, ROUNDS, sizeof seconds[0], compare);
    const double median = seconds[ROUNDS / 2];
    printf("%-44s %6.2f us [%.2f-%.2f]  %5.1f GB/s\n", what, median * 1e6, seconds[0] * 1e6,
           seconds[ROUNDS - 1] * 1e6, bytes / median / 1e9);
}

int main(void) {
    if (!__builtin_cpu_supports("avx512f")) {
        fprintf(stderr, "latency_floor: this CPU has no AVX-512\n");
        return 1;
    }
    w = aligned_alloc(64, sizeof(float) * K * N);
    x = aligned_alloc(64, sizeof(float) * K);
    for (int i = 0; i < K * N; i++) w[i] = 1e-3f * (float)(i % 7);
    for (int i = 0; i < K; i++) x[i] = (float)(i % 5);
    const double whole = sizeof(float) * K * N;
    double t[ROUNDS];

    for (int r = 0; r < ROUNDS; r++) {
        const double s = now();
        for (int c = 0; c < CALLS; c++) product(x, K, w, y0);
        t[r] = (now() - s) / CALLS;
    }
    report("one thread, the whole product (401 KB)", t, whole);
    for (int r = 0; r < ROUNDS; r++) {
        const double s = now();
        for (int c = 0; c < CALLS; c++) product(x, K / 2, w, y0);
        t[r] = (now() - s) / CALLS;
    }
    report("one thread, half of it (200 KB)", t, whole / 2);

    pthread_t thread;
    if (pthread_create(&thread, NULL, worker, NULL) != 0) return 1;
    unsigned n = 0;
    for (int r = 0; r < ROUNDS; r++) {
        const double s = now();
        for (int c = 0; c < CALLS; c++) {
            __atomic_store_n(&job, ++n, __ATOMIC_RELEASE);
            product(x, K / 2, w, y0);
            while (__atomic_load_n(&done, __ATOMIC_ACQUIRE) != n) _mm_pause();
        }
        t[r] = (now() - s) / CALLS;
    }
    report("two threads, a half each (spinning hand-over)", t, whole);
    return 0;
}
