/* Throughput of dl_predict on ONE model from 1, 2, ... threads at once (inference shares
 * the model): calls per second for each thread count, each call a batch of BATCH samples
 * of the MNIST test set, for SECONDS each. Results of every call are compared with the
 * serial result, so a wrong answer under load is reported too. Run with DL_NUM_THREADS=1
 * and OPENBLAS_NUM_THREADS=1 to see the calls' own concurrency rather than the kernels'.
 * With "clones" last, each thread predicts on its own clone instead: the ceiling the
 * machine allows right now, to compare sharing with.
 *
 *   cc -O2 -std=c11 -IInclude bench/concurrent_predict.c -Lbuild -ldeeplearning -lpthread \
 *      -Wl,-rpath,$PWD/build -o concurrent_predict
 *   DL_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 ./concurrent_predict data/mnist specs/mnist_mlp.json [BATCH [SECONDS [MAX_THREADS [clones]]]]
 */
#define _POSIX_C_SOURCE 199309L
#include <deeplearning.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "timing.h"

typedef struct {
    dl_model *model;
    const float *x, *reference;
    size_t batch, outputs;
    double seconds;
    long calls, wrong, failed;
} job;

static atomic_bool go;

static void *run(void *arg) {
    job *j = arg;
    float *out = malloc(j->batch * j->outputs * sizeof *out);
    while (!atomic_load(&go)) {}
    const double end = now() + j->seconds;
    while (out != NULL && now() < end) {
        if (dl_predict(j->model, j->x, j->batch, out, j->batch * j->outputs) != DL_OK) j->failed++;
        else if (memcmp(out, j->reference, j->batch * j->outputs * sizeof *out) != 0) j->wrong++;
        j->calls++;
    }
    free(out);
    return NULL;
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: %s MNIST_DIR SPEC [BATCH [SECONDS [MAX_THREADS]]]\n", argv[0]);
        return 2;
    }
    size_t batch = argc > 3 ? (size_t)atol(argv[3]) : 1;
    double seconds = argc > 4 ? atof(argv[4]) : 3;
    int max_threads = argc > 5 ? atoi(argv[5]) : 2;
    const int clones = argc > 6 && strcmp(argv[6], "clones") == 0;
    if (max_threads < 1 || max_threads > 16) max_threads = 2;
    dl_dataset *d = NULL;
    dl_model *m = NULL;
    if (dl_dataset_load_mnist(argv[1], 1, &d) || dl_model_from_spec(argv[2], &m)) {
        fprintf(stderr, "%s\n", dl_last_error());
        return 1;
    }
    size_t n, f, outputs;
    const float *x;
    dl_dataset_info(d, &n, &f, NULL);
    dl_dataset_features(d, &x);
    dl_model_output_size(m, &outputs);
    double mean, std;
    dl_dataset_standardizer(d, 1.0 / 255, &mean, &std);
    dl_model_set_preprocessing(m, 1.0 / 255, mean, std);
    if (batch < 1 || batch > n) batch = 1;
    float *reference = malloc(batch * outputs * sizeof *reference);
    if (reference == NULL || dl_predict(m, x, batch, reference, batch * outputs) != DL_OK) return 1;
    printf("dl_predict of %zu sample(s) on %s %s model, %.1f s per thread count\n", batch,
           clones ? "a clone per thread of the" : "one", argv[2], seconds);
    double single = 0;
    for (int threads = 1; threads <= max_threads; threads++) {
        pthread_t t[16];
        job jobs[16];
        atomic_store(&go, false);
        for (int i = 0; i < threads; i++) {
            jobs[i] = (job){.model = m, .x = x, .reference = reference, .batch = batch, .outputs = outputs, .seconds = seconds};
            if (clones && dl_model_clone(m, &jobs[i].model) != DL_OK) return 1;
            pthread_create(&t[i], NULL, run, &jobs[i]);
        }
        atomic_store(&go, true);
        long calls = 0, wrong = 0, failed = 0;
        for (int i = 0; i < threads; i++) {
            pthread_join(t[i], NULL);
            calls += jobs[i].calls, wrong += jobs[i].wrong, failed += jobs[i].failed;
            if (clones) dl_model_free(jobs[i].model);
        }
        double rate = (double)calls / seconds;
        if (threads == 1) single = rate;
        printf("  %d thread(s): %.0f calls/s (%.2fx), %ld failed, %ld different from the serial result\n", threads, rate,
               rate / single, failed, wrong);
    }
    free(reference);
    dl_model_free(m);
    dl_dataset_free(d);
    return 0;
}
