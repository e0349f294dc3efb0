/* Per-step time of dl_train_step on an MNIST-format folder (consecutive 64-row slices of
 * a shuffled copy, as bench/benchmark.py's Python loop does), then of dl_train_epoch, and
 * of dl_predict on one sample. For paired runs of two builds of the library, and for
 * callgrind (--toggle-collect=dl_train_step).
 *
 *   cc -O2 -std=c11 -IInclude bench/step_bench.c -Lbuild -ldeeplearning -Wl,-rpath,$PWD/build -o step_bench
 *   ./step_bench data/mnist specs/mnist_mlp.json [STEPS [steps-only]]
 */
#define _POSIX_C_SOURCE 199309L
#include <deeplearning.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "timing.h"
int main(int argc, char **argv) {
    dl_dataset *d = NULL; dl_model *m = NULL;
    if (dl_dataset_load_mnist(argv[1], 0, &d) || dl_model_from_spec(argv[2], &m)) { fprintf(stderr, "%s\n", dl_last_error()); return 1; }
    size_t n, f; int hl; dl_dataset_info(d, &n, &f, &hl);
    const float *x; const int32_t *y; dl_dataset_features(d, &x); dl_dataset_labels(d, &y);
    double mean, std; dl_dataset_standardizer(d, 1.0 / 255, &mean, &std);
    dl_model_set_preprocessing(m, 1.0 / 255, mean, std);
    float *xs = malloc(n * f * sizeof *xs); int32_t *ys = malloc(n * sizeof *ys);
    uint64_t r = 1; size_t *perm = malloc(n * sizeof *perm);
    for (size_t i = 0; i < n; i++) perm[i] = i;
    for (size_t i = n - 1; i > 0; i--) { r = r * 6364136223846793005ull + 1442695040888963407ull; size_t j = (r >> 33) % (i + 1); size_t t = perm[i]; perm[i] = perm[j]; perm[j] = t; }
    for (size_t i = 0; i < n; i++) { memcpy(xs + i * f, x + perm[i] * f, f * sizeof *xs); ys[i] = y[perm[i]]; }
    double loss, t0 = now();
    size_t steps = argc > 3 ? (size_t)atol(argv[3]) : n / 64;
    double *each = malloc(steps * sizeof *each);
    for (size_t b = 0; b < steps; b++) {
        const double start = now();
        dl_train_step(m, xs + (b % (n / 64)) * 64 * f, 64, ys + (b % (n / 64)) * 64, NULL, &loss);
        each[b] = (now() - start) * 1e6;
    }
    double step_us = (now() - t0) / steps * 1e6;
    /* On a shared machine the fastest tenth of the steps shows the undisturbed cost. */
    qsort(each, steps, sizeof *each, compare);
    printf("p10_us %.1f median_us %.1f ", each[steps / 10], each[steps / 2]);
    if (argc > 4) { printf("step_us %.1f loss %.4f\n", step_us, loss); return 0; }
    double eloss, t1 = now();
    /* one epoch through the library's loop (gather in the library) */
    if (dl_train_epoch(m, d, 64, 1, &eloss)) { fprintf(stderr, "%s\n", dl_last_error()); return 1; }
    double epoch_us = (now() - t1) / ((n + 63) / 64) * 1e6;
    float out[10]; double t2 = now();
    for (int i = 0; i < 20000; i++) dl_predict(m, xs + (i % 1000) * f, 1, out, 10);
    double pred_us = (now() - t2) / 20000 * 1e6;
    printf("step_us %.1f epoch_step_us %.1f predict1_us %.2f loss %.4f\n", step_us, epoch_us, pred_us, loss);
    return 0;
}
