/* What a cache line's boundary is worth to the library's unpacked product: the MLP's two
 * chunk products of a training step (Linear.chunkedForward and the weight gradient: 64 x 392
 * x 128 and 392 x 128 x 64, float32) with every operand on a 64-byte boundary, against the
 * same with the operands 16 or 32 bytes past one. malloc gives 16-byte boundaries, and its
 * large blocks (mmap) start 16 bytes past a page: where the library's tensors came from
 * until they were allocated with posix_memalign (Sources/DeepLearning/Buffer.swift).
 * The kernel's sources are compiled in, since libdeeplearning.so does not export them:
 *
 *   K=Sources/CDeepLearningKernels
 *   cc -O2 -std=c11 -I$K/include -I$K bench/gemm_alignment.c $K/gemm.c $K/cpu.c $K/parallel.c \
 *      -o /tmp/gemm_alignment -lm -lpthread
 *   taskset -c 1 /tmp/gemm_alignment [ROUNDS]
 *
 * One core; the placements take turns call by call (round-robin in one process, as the VM's
 * speed drifts), and each prints the median, 10th and 90th percentile of its calls' times.
 */
#define _POSIX_C_SOURCE 200112L
#include <stdio.h>
#include <stdlib.h>

#include "dl_kernels.h"
#include "timing.h"

enum { IN = 784, CHUNK = 392, OUT = 128, BATCH = 64, PLACEMENTS = 4, MAX_ROUNDS = 4000 };

static const struct {
    const char *name;
    int x, w, c;   // bytes past a 64-byte boundary: the batch, W^T (or dy), the output
} placements[PLACEMENTS] = {
    {"all on cache lines", 0, 0, 0},
    {"W^T / dy 16 bytes off", 0, 16, 0},
    {"W^T / dy 32 bytes off", 0, 32, 0},
    {"all 16 bytes off (malloc)", 16, 16, 16},
};

static float *at(size_t floats, int offset) {
    void *p = NULL;
    if (posix_memalign(&p, 64, floats * sizeof(float) + 64) != 0) exit(1);
    float *f = (float *)((char *)p + offset);
    for (size_t i = 0; i < floats; i++) f[i] = (float)((i * 7919) % 1000) / 1000.0f - 0.5f;
    return f;
}

static double times[2][PLACEMENTS][MAX_ROUNDS];

int main(int argc, char **argv) {
    int rounds = argc > 1 ? atoi(argv[1]) : 1000;
    if (rounds < 10) rounds = 10;
    if (rounds > MAX_ROUNDS) rounds = MAX_ROUNDS;
    float *x[PLACEMENTS], *w[PLACEMENTS], *c[PLACEMENTS];
    for (int q = 0; q < PLACEMENTS; q++) {
        x[q] = at(BATCH * IN, placements[q].x);
        w[q] = at(CHUNK * OUT, placements[q].w);        // W^T's chunk, or the gradient dy
        c[q] = at(CHUNK * OUT, placements[q].c);        // the output: y, or W^T's gradient
    }
    for (int r = 0; r < rounds; r++)
        for (int q = 0; q < PLACEMENTS; q++) {
            double t0 = now();   // y = x[:, chunk] W^T[chunk]: the forward's chunk product
            dlk_gemm_f32(0, BATCH, OUT, CHUNK, 1.0f, x[q], IN, w[q], OUT, c[q], OUT, 0, 0);
            double t1 = now();   // dW^T[chunk] = x[:, chunk]^T dy: the weight gradient's
            dlk_gemm_f32(1, CHUNK, OUT, BATCH, 1.0f, x[q], IN, w[q], OUT, c[q], OUT, 0, 0);
            times[0][q][r] = t1 - t0;
            times[1][q][r] = now() - t1;
        }
    const double flop = 2.0 * BATCH * CHUNK * OUT;
    for (int p = 0; p < 2; p++)
        for (int q = 0; q < PLACEMENTS; q++) {
            double *t = times[p][q];
            qsort(t, (size_t)rounds, sizeof *t, compare);
            const double median = t[rounds / 2];
            printf("%-16s %-26s median %6.1f us (%5.1f GFLOP/s), p10 %6.1f, p90 %6.1f\n",
                   p == 0 ? "forward chunk" : "weight gradient", placements[q].name, median * 1e6,
                   flop / median * 1e-9, t[rounds / 10] * 1e6, t[rounds * 9 / 10] * 1e6);
        }
    return 0;
}
