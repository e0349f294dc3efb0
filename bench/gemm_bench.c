/* sgemm throughput on the MLP's shapes through the CBLAS interface, and the machine's
 * peak (a tight loop of independent fused multiply-adds), for choosing the dense
 * path's backend (issue #14 [perf]). One build of this program per backend; the
 * backend's thread count comes from its environment variable (OPENBLAS_NUM_THREADS,
 * BLIS_NUM_THREADS), so bench/gemm_bench.py runs the builds round-robin in fresh
 * processes and summarises them:
 *
 *   cc -O2 -std=c11 bench/gemm_bench.c -o gemm_openblas -lopenblas -lpthread
 *   cc -O2 -std=c11 bench/gemm_bench.c -o gemm_blis -lblis -lpthread
 *   cc -O2 -std=c11 -DSCIPY_OPENBLAS64 bench/gemm_bench.c -o gemm_numpy \
 *      NUMPY_LIBS/libscipy_openblas64_-*.so -Wl,-rpath,NUMPY_LIBS -lpthread   (NumPy's OpenBLAS)
 *   ./gemm_openblas gemm [SAMPLES]      one JSON line per shape
 *   ./gemm_openblas peak THREADS        JSON lines: FMA GFLOP/s, AVX2 and (where the CPU has
 *                                       it) AVX-512; each loop is compiled for its own ISA
 *                                       (target attributes), so the program runs on any x86-64
 *
 * Every product is row-major, C = A (m x k) . B (k x n), no transposes, beta 0:
 * the shapes as the issue lists them. Each sample times enough calls for about a
 * millisecond (at least one); the median and extremes of the samples are printed.
 */
#define _POSIX_C_SOURCE 199309L
#include <immintrin.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "timing.h"

/* The CBLAS prototype, declared here so that one source builds against either
 * library's headers (their cblas.h files live in different include folders). With
 * -DSCIPY_OPENBLAS64, the OpenBLAS that NumPy's wheel bundles instead: its symbols
 * carry a prefix and a suffix, and its integers are 64-bit. */
enum { ROW_MAJOR = 101, NO_TRANS = 111 };
#ifdef SCIPY_OPENBLAS64
#include <stdint.h>
typedef int64_t blas_int;
void scipy_cblas_sgemm64_(int order, int trans_a, int trans_b, blas_int m, blas_int n, blas_int k, float alpha,
                          const float *a, blas_int lda, const float *b, blas_int ldb, float beta, float *c,
                          blas_int ldc);
char *scipy_openblas_get_corename64_(void) __attribute__((weak));
int scipy_openblas_get_num_threads64_(void) __attribute__((weak));
#define cblas_sgemm scipy_cblas_sgemm64_
#define openblas_get_corename scipy_openblas_get_corename64_
#define openblas_get_num_threads scipy_openblas_get_num_threads64_
#else
typedef int blas_int;
void cblas_sgemm(int order, int trans_a, int trans_b, blas_int m, blas_int n, blas_int k, float alpha,
                 const float *a, blas_int lda, const float *b, blas_int ldb, float beta, float *c, blas_int ldc);
/* Optional: which kernels each library picked (weak, so either build links). */
char *openblas_get_corename(void) __attribute__((weak));
int openblas_get_num_threads(void) __attribute__((weak));
#endif
int bli_arch_query_id(void) __attribute__((weak));
const char *bli_arch_string(int id) __attribute__((weak));
long bli_thread_get_num_threads(void) __attribute__((weak));

struct shape { const char *name; int m, n, k; };

static const struct shape shapes[] = {
    {"fwd1 64x784.784x128", 64, 128, 784},
    {"fwd2 64x128.128x10", 64, 10, 128},
    {"dW1 784x64.64x128", 784, 128, 64},
    {"dW2 128x64.64x10", 128, 10, 64},
    {"dX2 64x10.10x128", 64, 128, 10},
    {"inf1 1000x784.784x128", 1000, 128, 784},
    {"inf2 1000x128.128x10", 1000, 10, 128},
    {"one1 1x784.784x128", 1, 128, 784},
    {"one2 1x128.128x10", 1, 10, 128},
    {"deep 64x1024.1024x1024", 64, 1024, 1024},
    {"deepdW 1024x64.64x1024", 1024, 1024, 64},
};

static void fill(float *x, size_t count, unsigned seed) {
    for (size_t i = 0; i < count; i++) {
        seed = seed * 1103515245u + 12345u;
        x[i] = (float)((seed >> 16) & 0x7fff) / 32768.0f - 0.5f;
    }
}

static int gemm(int samples) {
    const char *backend = openblas_get_corename ? "openblas" : bli_arch_query_id ? "blis" : "unknown";
    const char *kernels = openblas_get_corename ? openblas_get_corename()
                        : bli_arch_query_id && bli_arch_string ? bli_arch_string(bli_arch_query_id()) : "?";
    long threads = openblas_get_num_threads ? openblas_get_num_threads()
                 : bli_thread_get_num_threads ? bli_thread_get_num_threads() : -1;
    double *rate = malloc((size_t)samples * sizeof *rate);
    if (!rate) return 1;
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        const struct shape sh = shapes[s];
        float *a = malloc((size_t)sh.m * sh.k * sizeof *a), *b = malloc((size_t)sh.k * sh.n * sizeof *b),
              *c = malloc((size_t)sh.m * sh.n * sizeof *c);
        if (!a || !b || !c) return 1;
        fill(a, (size_t)sh.m * sh.k, 1);
        fill(b, (size_t)sh.k * sh.n, 2);
        const double flops = 2.0 * sh.m * sh.n * sh.k;
        int calls = (int)(2e7 / flops);   /* about 1 ms at 20 GFLOP/s */
        if (calls < 1) calls = 1;
        for (int i = 0; i < calls + 3; i++)   /* warm up: caches, thread pools, packing buffers */
            cblas_sgemm(ROW_MAJOR, NO_TRANS, NO_TRANS, sh.m, sh.n, sh.k, 1.0f, a, sh.k, b, sh.n, 0.0f, c, sh.n);
        for (int r = 0; r < samples; r++) {
            const double start = now();
            for (int i = 0; i < calls; i++)
                cblas_sgemm(ROW_MAJOR, NO_TRANS, NO_TRANS, sh.m, sh.n, sh.k, 1.0f, a, sh.k, b, sh.n, 0.0f, c, sh.n);
            rate[r] = flops * calls / (now() - start) * 1e-9;
        }
        /* One entry of C against a plain dot product: the timing is of a correct product. */
        double check = 0;
        for (int p = 0; p < sh.k; p++) check += (double)a[(size_t)(sh.m - 1) * sh.k + p] * b[(size_t)p * sh.n + sh.n - 1];
        const double error = c[(size_t)sh.m * sh.n - 1] - check;
        qsort(rate, (size_t)samples, sizeof *rate, compare);
        printf("{\"backend\": \"%s\", \"kernels\": \"%s\", \"threads\": %ld, \"shape\": \"%s\", "
               "\"flops\": %.0f, \"calls\": %d, \"gflops\": %.3f, \"min\": %.3f, \"max\": %.3f, \"check\": %s}\n",
               backend, kernels, threads, sh.name, flops, calls, rate[samples / 2], rate[0], rate[samples - 1],
               (error < 1e-3 && error > -1e-3) ? "true" : "false");
        fflush(stdout);
        free(a); free(b); free(c);
    }
    free(rate);
    return 0;
}

/* Peak: 12 independent accumulators (enough to cover an FMA latency of 4 cycles on
 * 2 ports), each updated with one fused multiply-add per iteration. Named variables,
 * not an array: gcc -O2 keeps an array of vectors in memory, and the loop then
 * measures stores. */
enum { PEAK_ITERATIONS = 100000, PEAK_SAMPLES = 301 };   /* a sample: about half a millisecond */

/* Each thread times its samples on its own; the peak is the sum over the threads of
 * their median (and of their best) sample, so a thread descheduled for part of the run
 * by other work on the machine counts at the rate it runs when it runs. */
struct peak_job { int avx512; double rate[PEAK_SAMPLES]; float sink; };

#define FMA12(fma, m, add) \
    a0 = fma(a0, m, add); a1 = fma(a1, m, add); a2 = fma(a2, m, add); a3 = fma(a3, m, add); \
    a4 = fma(a4, m, add); a5 = fma(a5, m, add); a6 = fma(a6, m, add); a7 = fma(a7, m, add); \
    a8 = fma(a8, m, add); a9 = fma(a9, m, add); a10 = fma(a10, m, add); a11 = fma(a11, m, add)

/* One sample of 12 independent chains of fused multiply-adds on vectors of `lanes` floats;
 * returns their sum, so that the work cannot be dropped. */
#define PEAK_SAMPLE(name, isa, vec, lanes, set1, fmadd, addv, storeu)                              \
    __attribute__((target(isa))) static float name(void) {                                         \
        const vec m = set1(0.999999f), add = set1(1e-7f);                                          \
        vec a0 = set1(0), a1 = set1(1), a2 = set1(2), a3 = set1(3), a4 = set1(4), a5 = set1(5),    \
            a6 = set1(6), a7 = set1(7), a8 = set1(8), a9 = set1(9), a10 = set1(10), a11 = set1(11); \
        for (long i = 0; i < PEAK_ITERATIONS; i++) { FMA12(fmadd, m, add); }                        \
        const vec sum = addv(addv(addv(addv(a0, a1), addv(a2, a3)), addv(addv(a4, a5), addv(a6, a7))), \
                             addv(addv(a8, a9), addv(a10, a11)));                                  \
        float values[lanes], total = 0;                                                            \
        storeu(values, sum);                                                                       \
        for (int l = 0; l < lanes; l++) total += values[l];                                        \
        return total;                                                                              \
    }
PEAK_SAMPLE(peak_sample_avx512, "avx512f", __m512, 16, _mm512_set1_ps, _mm512_fmadd_ps, _mm512_add_ps, _mm512_storeu_ps)
PEAK_SAMPLE(peak_sample_avx2, "avx2,fma", __m256, 8, _mm256_set1_ps, _mm256_fmadd_ps, _mm256_add_ps, _mm256_storeu_ps)

static void *peak_thread(void *arg) {
    struct peak_job *job = arg;
    const double flops = 2.0 * 12 * (job->avx512 ? 16 : 8) * (double)PEAK_ITERATIONS;
    for (int r = 0; r < PEAK_SAMPLES; r++) {
        const double start = now();
        job->sink += job->avx512 ? peak_sample_avx512() : peak_sample_avx2();
        job->rate[r] = flops / (now() - start) * 1e-9;
    }
    qsort(job->rate, PEAK_SAMPLES, sizeof job->rate[0], compare);
    return NULL;
}

static int peak(int threads) {
    if (threads < 1 || threads > 64) { fprintf(stderr, "peak: THREADS must be 1-64\n"); return 2; }
    static struct peak_job jobs[64];
    __builtin_cpu_init();
    const int widest = __builtin_cpu_supports("avx512f") ? 1 : 0;   /* an AVX2 machine: no AVX-512 line */
    for (int avx512 = 0; avx512 <= widest; avx512++) {
        pthread_t ids[64];
        memset(jobs, 0, sizeof jobs);
        for (int t = 0; t < threads; t++) {
            jobs[t].avx512 = avx512;
            if (pthread_create(&ids[t], NULL, peak_thread, &jobs[t]) != 0) return 1;
        }
        double median = 0, best = 0, sink = 0;
        for (int t = 0; t < threads; t++) {
            pthread_join(ids[t], NULL);
            median += jobs[t].rate[PEAK_SAMPLES / 2];
            best += jobs[t].rate[PEAK_SAMPLES - 1];
            sink += jobs[t].sink;
        }
        printf("{\"peak\": \"%s\", \"threads\": %d, \"gflops\": %.3f, \"best\": %.3f, \"sink\": %g}\n",
               avx512 ? "avx512" : "avx2", threads, median, best, sink);
        fflush(stdout);
    }
    return 0;
}

int main(int argc, char **argv) {
    if (argc >= 2 && strcmp(argv[1], "gemm") == 0) return gemm(argc > 2 ? atoi(argv[2]) > 0 ? atoi(argv[2]) : 21 : 21);
    if (argc >= 3 && strcmp(argv[1], "peak") == 0) return peak(atoi(argv[2]));
    fprintf(stderr, "usage: %s gemm [SAMPLES] | peak THREADS\n", argv[0]);
    return 2;
}
