/* The floor under one dense sample's prediction on this machine: how long it takes just to
 * read the MNIST MLP's first weight (784 x 128 float32, 401 KB, resident in L2) and multiply
 * it by one row, with nothing else around it (no library, no call, no checks), for the two
 * ways the weight can be laid out:
 *
 *   - W^T (784 x 128, what the library's first layer keeps for its sparse path): y += x[i]
 *     times row i, 128 outputs in registers (AVX-512: eight vectors; AVX2: four passes of
 *     32 columns, as the library's row_times_dense_avx2), two threads each taking half of
 *     the rows (inputs) and adding their sums;
 *   - W (128 x 784, what a dense single sample to predict now reads): one dot product per
 *     output over a contiguous row, four outputs at a time (as dlk_matrix_vector_f32), two
 *     threads each taking half of the outputs, so each reads a contiguous half of W.
 *
 *   cc -O2 -pthread bench/latency_floor.c -o latency_floor && ./latency_floor
 *
 * Prints, median [min-max] over ROUNDS rounds of CALLS calls each, one thread (the whole
 * product and half of it) and two threads (a half each, handed over by a spinning worker:
 * the cheapest fork-join there is, the caller waiting for both), and the bytes per second
 * each stands for. Needs AVX2/FMA (x86-64); uses AVX-512 for W^T where the CPU has it. */
#define _GNU_SOURCE
#include <immintrin.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

enum { K = 784, N = 128, CALLS = 20000, ROUNDS = 7 };

static float *w, *wt, *x, y0[N], y1[N];
static unsigned job, done;   /* atomic: the job the worker should run, the last it finished */

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

/* W^T, AVX-512: y = x[0..k) . rows [0, k) of N floats, two chains of eight accumulators. */
__attribute__((target("avx512f"), noinline))
static void wt_avx512(const float *xs, int k, const float *ws, float *y) {
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

/* W^T, AVX2: 32 columns a pass (four passes), three chains of four accumulators. */
#define WT_ROW(acc, row)                                                                            \
    do {                                                                                           \
        const __m256 s_ = _mm256_broadcast_ss(xs + (row));                                         \
        const float *r_ = ws + (size_t)(row) * N + j;                                              \
        acc##0 = _mm256_fmadd_ps(s_, _mm256_loadu_ps(r_), acc##0);                                 \
        acc##1 = _mm256_fmadd_ps(s_, _mm256_loadu_ps(r_ + 8), acc##1);                             \
        acc##2 = _mm256_fmadd_ps(s_, _mm256_loadu_ps(r_ + 16), acc##2);                            \
        acc##3 = _mm256_fmadd_ps(s_, _mm256_loadu_ps(r_ + 24), acc##3);                            \
    } while (0)

__attribute__((target("avx2,fma"), noinline))
static void wt_avx2(const float *xs, int k, const float *ws, float *y) {
    for (int j = 0; j < N; j += 32) {
        __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, b0 = a0, b1 = a0, b2 = a0, b3 = a0;
        __m256 c0 = a0, c1 = a0, c2 = a0, c3 = a0;
        int i = 0;
        for (; i + 3 <= k; i += 3) {
            WT_ROW(a, i);
            WT_ROW(b, i + 1);
            WT_ROW(c, i + 2);
        }
        for (; i < k; i++) WT_ROW(a, i);
        _mm256_storeu_ps(y + j, _mm256_add_ps(_mm256_add_ps(a0, b0), c0));
        _mm256_storeu_ps(y + j + 8, _mm256_add_ps(_mm256_add_ps(a1, b1), c1));
        _mm256_storeu_ps(y + j + 16, _mm256_add_ps(_mm256_add_ps(a2, b2), c2));
        _mm256_storeu_ps(y + j + 24, _mm256_add_ps(_mm256_add_ps(a3, b3), c3));
    }
}

/* W, AVX2: outputs [o0, o1) as dot products over their rows of K floats, four at a time
 * (named accumulators: gcc -O2 keeps an array of them in memory). */
__attribute__((target("avx2,fma"), noinline))
static void w_avx2(const float *xs, const float *ws, int o0, int o1, float *y) {
    for (int o = o0; o < o1; o += 4) {
        const float *r0 = ws + (size_t)o * K, *r1 = r0 + K, *r2 = r1 + K, *r3 = r2 + K;
        __m256 s0 = _mm256_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
        for (int i = 0; i + 8 <= K; i += 8) {
            const __m256 xi = _mm256_loadu_ps(xs + i);
            s0 = _mm256_fmadd_ps(_mm256_loadu_ps(r0 + i), xi, s0);
            s1 = _mm256_fmadd_ps(_mm256_loadu_ps(r1 + i), xi, s1);
            s2 = _mm256_fmadd_ps(_mm256_loadu_ps(r2 + i), xi, s2);
            s3 = _mm256_fmadd_ps(_mm256_loadu_ps(r3 + i), xi, s3);
        }
        const __m256 s[4] = {s0, s1, s2, s3};
        for (int q = 0; q < 4; q++) {
            float t[8];
            _mm256_storeu_ps(t, s[q]);
            y[o + q] = ((t[0] + t[4]) + (t[2] + t[6])) + ((t[1] + t[5]) + (t[3] + t[7]));
        }
    }
}

static int avx512;
static void wt_half(int which, float *y) {   /* rows [which K/2, (which + 1) K/2) of W^T */
    const int k = K / 2;
    if (avx512) wt_avx512(x + which * k, k, wt + (size_t)which * k * N, y);
    else wt_avx2(x + which * k, k, wt + (size_t)which * k * N, y);
}

static int layout_w;   /* the worker's job: 0 its half of W^T, 1 its half of W */
static void *worker(void *unused) {
    (void)unused;
    unsigned seen = 0;
    for (;;) {
        unsigned now_job;
        while ((now_job = __atomic_load_n(&job, __ATOMIC_ACQUIRE)) == seen) _mm_pause();
        seen = now_job;
        if (layout_w) w_avx2(x, w, N / 2, N, y1);
        else wt_half(1, y1);
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
    printf("%-52s %6.2f us [%.2f-%.2f]  %5.1f GB/s\n", what, median * 1e6, seconds[0] * 1e6,
           seconds[ROUNDS - 1] * 1e6, bytes / median / 1e9);
}

/* One measurement: `calls` of body(which) each round; `two` hands the other half to the worker. */
static unsigned handed;
static void measure(const char *what, int two, int whole, int w_layout, double bytes) {
    double t[ROUNDS];
    layout_w = w_layout;
    for (int r = 0; r < ROUNDS; r++) {
        const double s = now();
        for (int c = 0; c < CALLS; c++) {
            if (two) __atomic_store_n(&job, ++handed, __ATOMIC_RELEASE);
            if (w_layout) w_avx2(x, w, 0, whole ? N : N / 2, y0);
            else if (whole && avx512) wt_avx512(x, K, wt, y0);
            else if (whole) wt_avx2(x, K, wt, y0);
            else wt_half(0, y0);
            if (two) while (__atomic_load_n(&done, __ATOMIC_ACQUIRE) != handed) _mm_pause();
        }
        t[r] = (now() - s) / CALLS;
    }
    report(what, t, bytes);
}

int main(void) {
    if (!__builtin_cpu_supports("avx2") || !__builtin_cpu_supports("fma")) {
        fprintf(stderr, "latency_floor: this CPU has no AVX2/FMA\n");
        return 1;
    }
    avx512 = __builtin_cpu_supports("avx512f");
    wt = aligned_alloc(64, sizeof(float) * K * N);
    w = aligned_alloc(64, sizeof(float) * K * N);
    x = aligned_alloc(64, sizeof(float) * K);
    for (int i = 0; i < K; i++)
        for (int o = 0; o < N; o++) wt[i * N + o] = w[o * K + i] = 1e-3f * (float)((i * N + o) % 7);
    for (int i = 0; i < K; i++) x[i] = (float)(i % 5);
    const double whole = sizeof(float) * K * N;

    pthread_t thread;
    if (pthread_create(&thread, NULL, worker, NULL) != 0) return 1;
    printf("W^T (%s):\n", avx512 ? "AVX-512" : "AVX2, four passes of 32 columns");
    measure("  one thread, the whole product (401 KB)", 0, 1, 0, whole);
    measure("  one thread, half of the rows (200 KB)", 0, 0, 0, whole / 2);
    measure("  two threads, half of the rows each", 1, 0, 0, whole);
    printf("W (AVX2, dot products over contiguous rows):\n");
    measure("  one thread, the whole product (401 KB)", 0, 1, 1, whole);
    measure("  one thread, half of the outputs (200 KB)", 0, 0, 1, whole / 2);
    measure("  two threads, half of the outputs each", 1, 0, 1, whole);
    return 0;
}
