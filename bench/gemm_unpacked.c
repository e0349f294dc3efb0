/* The library's unpacked product, AVX-512 or AVX2/FMA (Sources/CDeepLearningKernels/gemm.c),
 * against Debian's OpenBLAS on one core, round-robin in one process, on the shapes the library
 * gives it (a batch times a W^T) and wider ones; and both on the kernel threads as the
 * library runs them (dlk_gemm_parallel_f32 against 8 row blocks of OpenBLAS, which is what
 * DLScalar.gemm does at 1000 x 784 x 128). The kernel's sources are compiled in, since
 * libdeeplearning.so does not export them:
 *
 *   K=Sources/CDeepLearningKernels
 *   cc -O3 -std=c11 -I$K/include -I$K bench/gemm_unpacked.c $K/gemm.c $K/cpu.c $K/parallel.c \
 *      -o /tmp/gemm_unpacked -lopenblas -lm -lpthread
 *   /tmp/gemm_unpacked [ROUNDS]          one line per shape: median GFLOP/s and the ratio
 *
 * Each round times every shape once per side (best of a few calls); medians over rounds,
 * and the spread of the per-round ratio. It also checks that the kernel's bits equal the
 * plain C loop's and, within float32 rounding, OpenBLAS's, and prints both sides' largest
 * error against the product in float64.
 */
#define _POSIX_C_SOURCE 199309L
#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dl_kernels.h"
#include "timing.h"

enum { MAX_ROUNDS = 64 };

typedef struct {
    const char *name;
    int m, k, n;
    int threads;   // 1: one call on this thread; 2: the kernel threads (see above)
    int trans;     // A stored transposed (k x m): the weight gradient x^T dy
} shape;

static const shape shapes[] = {
    {"predict 1000x784.784x128", 1000, 784, 128, 1, 0}, {"step 64x784.784x128", 64, 784, 128, 1, 0},
    {"gradient (64x784)^T.64x128", 784, 64, 128, 1, 1}, {"layer2 1000x128.128x10", 1000, 128, 10, 1, 0},
    {"wide 1000x784.784x256", 1000, 784, 256, 1, 0},    {"wider 1000x512.512x512", 1000, 512, 512, 1, 0},
    {"predict 1000x784.784x128", 1000, 784, 128, 2, 0},
    {"batch 128x784.784x128", 128, 784, 128, 1, 0},     {"batch 256x784.784x128", 256, 784, 128, 1, 0},
    {"batch 512x784.784x128", 512, 784, 128, 1, 0},     {"batch 256x784.784x128", 256, 784, 128, 2, 0},
    {"step 64x784.784x128", 64, 784, 128, 2, 0},         {"gradient (64x784)^T.64x128", 784, 64, 128, 2, 1},
};

typedef struct {
    int m;
    const float *a, *b;
    float *c;
    int n, k, trans;
} blas_job;

/* DLScalar.gemm's cut of 1000 x 784 x 128: 8 blocks of rows (multiples of 16), one
 * OpenBLAS call each, shared statically by the kernel threads (with A transposed, a
 * block of C's rows is a block of A's stored columns). */
static void blas_share(void *context, int64_t begin, int64_t end, int thread) {
    (void)thread;
    const blas_job *j = context;
    const int units = (j->m + 15) / 16;
    for (int64_t block = begin; block < end; block++) {
        const int lo = (int)(units * block / 8 * 16), hi = block == 7 ? j->m : (int)(units * (block + 1) / 8 * 16);
        cblas_sgemm(CblasRowMajor, j->trans ? CblasTrans : CblasNoTrans, CblasNoTrans, hi - lo, j->n, j->k, 1.0f,
                    j->trans ? j->a + lo : j->a + (size_t)lo * j->k, j->trans ? j->m : j->k, j->b, j->n, 0.0f,
                    j->c + (size_t)lo * j->n, j->n);
    }
}

static double time_side(const shape *s, int ours, const float *a, const float *b, float *c) {
    const int calls = s->m >= 1000 ? 3 : 20, lda = s->trans ? s->m : s->k;
    double best = 1e30;
    for (int i = 0; i < calls; i++) {
        const double start = now();
        if (ours && s->threads == 1) {
            dlk_gemm_f32(s->trans, s->m, s->n, s->k, 1.0f, a, lda, b, s->n, c, s->n, 0, 0);
        } else if (ours) {
            dlk_gemm_parallel_f32(s->trans, s->m, s->n, s->k, 1.0f, a, lda, b, s->n, c, s->n, 1 << 21);
        } else if (s->threads == 1) {
            cblas_sgemm(CblasRowMajor, s->trans ? CblasTrans : CblasNoTrans, CblasNoTrans, s->m, s->n, s->k, 1.0f, a,
                        lda, b, s->n, 0.0f, c, s->n);
        } else {
            blas_job job = {s->m, a, b, c, s->n, s->k, s->trans};
            dlk_parallel_for(8, 1, blas_share, &job);
        }
        const double t = now() - start;
        if (t < best) best = t;
    }
    return 2.0 * s->m * s->n * s->k / best * 1e-9;
}

static double median(double *x, int n) {
    qsort(x, (size_t)n, sizeof *x, compare);
    return n % 2 ? x[n / 2] : (x[n / 2 - 1] + x[n / 2]) / 2;
}

int main(int argc, char **argv) {
    int rounds = argc > 1 ? atoi(argv[1]) : 9;
    if (rounds < 1) rounds = 1;
    if (rounds > MAX_ROUNDS) rounds = MAX_ROUNDS;
    openblas_set_num_threads(1);
    if (!dlk_has_avx2()) {
        printf("neither AVX-512 nor AVX2/FMA here: the library uses OpenBLAS for every product\n");
        return 0;
    }
    printf("kernel: %s (DL_NO_AVX512=1 picks AVX2 on an AVX-512 machine)\n", dlk_has_avx512() ? "AVX-512" : "AVX2/FMA");
    dlk_set_threads(2);
    const int count = (int)(sizeof shapes / sizeof shapes[0]);
    for (int s = 0; s < count; s++) {
        const shape *sh = &shapes[s];
        float *a = malloc(sizeof(float) * sh->m * sh->k), *b = malloc(sizeof(float) * sh->k * sh->n);
        float *c1 = malloc(sizeof(float) * sh->m * sh->n), *c2 = malloc(sizeof(float) * sh->m * sh->n);
        unsigned r = 12345;
        for (int i = 0; i < sh->m * sh->k; i++) { r = r * 1103515245u + 12345u; a[i] = (float)(r >> 8) / 16777216.0f - 0.5f; }
        for (int i = 0; i < sh->k * sh->n; i++) { r = r * 1103515245u + 12345u; b[i] = (float)(r >> 8) / 16777216.0f - 0.5f; }
        /* bits: the vector kernel against the plain loop; values: against OpenBLAS */
        dlk_gemm_f32(sh->trans, sh->m, sh->n, sh->k, 1.0f, a, sh->trans ? sh->m : sh->k, b, sh->n, c1, sh->n, 0, 1);
        time_side(sh, 1, a, b, c2);
        const int same = memcmp(c1, c2, sizeof(float) * sh->m * sh->n) == 0;
        time_side(sh, 0, a, b, c2);
        double worst = 0, ours_error = 0, blas_error = 0;
        for (int i = 0; i < sh->m * sh->n; i++) worst = fmax(worst, fabs((double)c1[i] - c2[i]));
        /* rounding errors: both against the product in float64 */
        for (int i = 0; i < sh->m; i++)
            for (int j = 0; j < sh->n; j++) {
                double exact = 0;
                for (int p = 0; p < sh->k; p++)
                    exact += (double)(sh->trans ? a[(size_t)p * sh->m + i] : a[(size_t)i * sh->k + p]) * b[(size_t)p * sh->n + j];
                ours_error = fmax(ours_error, fabs(c1[(size_t)i * sh->n + j] - exact));
                blas_error = fmax(blas_error, fabs(c2[(size_t)i * sh->n + j] - exact));
            }
        double ours[MAX_ROUNDS], blas[MAX_ROUNDS], ratio[MAX_ROUNDS];
        for (int i = 0; i < rounds; i++) {
            ours[i] = time_side(sh, 1, a, b, c2);
            blas[i] = time_side(sh, 0, a, b, c2);
            ratio[i] = ours[i] / blas[i];
        }
        double lo = ratio[0], hi = ratio[0];
        for (int i = 1; i < rounds; i++) lo = fmin(lo, ratio[i]), hi = fmax(hi, ratio[i]);
        printf("{\"shape\": \"%s\", \"threads\": %d, \"ours_gflops\": %.1f, \"openblas_gflops\": %.1f, "
               "\"ratio\": %.2f, \"ratio_min\": %.2f, \"ratio_max\": %.2f, \"same_bits_as_plain_c\": %s, "
               "\"largest_difference_from_openblas\": %.2g, \"largest_error_ours\": %.2g, \"largest_error_openblas\": %.2g}\n",
               sh->name, sh->threads, median(ours, rounds), median(blas, rounds), median(ratio, rounds), lo, hi,
               same ? "true" : "false", worst, ours_error, blas_error);
        free(a), free(b), free(c1), free(c2);
    }
    return 0;
}
