/* Two builds of the library in one process, measured in turn: `dl_train_step` on batches
 * of 64 (or `dl_predict` of 1,000-sample batches of the test split, or of its single
 * samples) alternating between the builds every BLOCK calls, on the same batches. On a VM whose speed drifts by a third
 * within minutes, runs of two programs one after the other compare two moments more than
 * two builds; here both builds see the same moments, a block at a time.
 *
 * Each build is loaded with dlmopen into a link-map namespace of its own, with its own
 * copies of its dependencies (its own kernel threads, its own OpenBLAS), so two builds of
 * the same soname do not meet. A build's workers sleep while the other build runs (they
 * spin for under 0.1 ms after a job).
 *
 *   cc -O2 -std=c11 -IInclude bench/step_pair.c -ldl -lm -o step_pair
 *   ./step_pair DATA SPEC OLD.so NEW.so [CALLS [BLOCK [train|predict|predict1]]]
 *
 * (Single samples: a few microseconds a call, so many more calls, e.g. 200000 in blocks of
 * 2000; each call's time includes two clock reads, the same for both builds.)
 *
 * DATA is an MNIST-format folder, SPEC a model spec; CALLS (default 6000) calls in all,
 * BLOCK (default 50) in a row to each build, the build that goes first changing from one
 * pair of blocks to the next (ABBA: a block that follows a switch pays for the caches the
 * other build filled, whichever it is). The build loaded second ran 2-4% slower than the
 * first even when both were the same file, so there are two runs, each in a child
 * process: OLD loaded first, then NEW first. Each prints both builds' 10th percentile,
 * median and mean microseconds of a call and the ratio of the one loaded second to the
 * one loaded first over the pairs of blocks (median [range]); the last line is NEW/OLD
 * with that bias cancelled (the geometric mean of the two runs). The last losses
 * (training) or output checksums (prediction) agree when the builds compute the same bits. */
#define _GNU_SOURCE
#include "deeplearning.h"
#include "timing.h"

#include <dlfcn.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

/* The entry points used, from one build (typed from the header's declarations). */
typedef struct {
    const char *path;
    __typeof__(dl_last_error) *last_error;
    __typeof__(dl_dataset_load_mnist) *dataset_load_mnist;
    __typeof__(dl_dataset_info) *dataset_info;
    __typeof__(dl_dataset_features) *dataset_features;
    __typeof__(dl_dataset_labels) *dataset_labels;
    __typeof__(dl_dataset_standardizer) *dataset_standardizer;
    __typeof__(dl_model_from_spec) *model_from_spec;
    __typeof__(dl_model_set_preprocessing) *model_set_preprocessing;
    __typeof__(dl_train_step) *train_step;
    __typeof__(dl_predict) *predict;
    dl_model *model;
    double *times, last;   /* each call's microseconds; the last loss or output checksum */
    size_t count;
} build;

static int open_build(build *b, const char *path) {
    void *h = dlmopen(LM_ID_NEWLM, path, RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        fprintf(stderr, "step_pair: %s\n", dlerror());
        return 1;
    }
    b->path = path;
#define LOAD(field, name)                                                     \
    if (!(*(void **)&b->field = dlsym(h, name))) {                            \
        fprintf(stderr, "step_pair: %s has no %s\n", path, name);             \
        return 1;                                                             \
    }
    LOAD(last_error, "dl_last_error")
    LOAD(dataset_load_mnist, "dl_dataset_load_mnist")
    LOAD(dataset_info, "dl_dataset_info")
    LOAD(dataset_features, "dl_dataset_features")
    LOAD(dataset_labels, "dl_dataset_labels")
    LOAD(dataset_standardizer, "dl_dataset_standardizer")
    LOAD(model_from_spec, "dl_model_from_spec")
    LOAD(model_set_preprocessing, "dl_model_set_preprocessing")
    LOAD(train_step, "dl_train_step")
    LOAD(predict, "dl_predict")
#undef LOAD
    return 0;
}

static void summary(const char *name, double *t, size_t n, double *median) {
    qsort(t, n, sizeof *t, compare);
    double sum = 0;
    for (size_t i = 0; i < n; i++) sum += t[i];
    *median = t[n / 2];
    printf("%s: p10 %.2f median %.2f mean %.2f us (%zu calls)\n", name, t[n / 10], t[n / 2], sum / n, n);
}

/* One run: `paths[0]` loaded first, then `paths[1]`; their per-call summaries printed, and
 * in *ratio the median over the pairs of blocks of (the median call of the build loaded
 * second) / (that of the build loaded first): two blocks a few milliseconds apart see the
 * same state of the VM, where the run's overall medians mix its slow and fast stretches. */
static int measure(const char *data, const char *spec, const char *paths[2], size_t calls, size_t block, int predicting,
                   size_t rows, double *ratio) {
    build builds[2] = {{0}, {0}};
    for (int k = 0; k < 2; k++)
        if (open_build(&builds[k], paths[k])) return 1;

    /* The data, read through the first build (plain memory, shared by both). */
    build *first = &builds[0];
    dl_dataset *d = NULL;
    size_t n, f;
    int has_labels;
    const float *x;
    const int32_t *y;
    double mean, std;
    if (first->dataset_load_mnist(data, predicting ? DL_SPLIT_TEST : DL_SPLIT_TRAIN, &d) || first->dataset_info(d, &n, &f, &has_labels) ||
        first->dataset_features(d, &x) || first->dataset_labels(d, &y) ||
        first->dataset_standardizer(d, 1.0 / 255, &mean, &std)) {
        fprintf(stderr, "step_pair: %s\n", first->last_error());
        return 1;
    }
    /* Copies in this program's memory: neither build's allocator placed them. */
    float *xs = malloc(n * f * sizeof *xs);
    int32_t *ys = malloc(n * sizeof *ys);
    if (!xs || !ys) return 1;
    memcpy(xs, x, n * f * sizeof *xs);
    memcpy(ys, y, n * sizeof *ys);
    x = xs;
    y = ys;
    if (n < rows) {
        fprintf(stderr, "step_pair: %s has fewer than %zu samples\n", data, rows);
        return 1;
    }
    const size_t batches = n / rows;
    float *out = malloc(rows * 1024 * sizeof *out);
    for (int k = 0; k < 2; k++) {
        build *b = &builds[k];
        if (b->model_from_spec(spec, &b->model) || b->model_set_preprocessing(b->model, 1.0 / 255, mean, std)) {
            fprintf(stderr, "step_pair: %s: %s\n", b->path, b->last_error());
            return 1;
        }
        b->times = malloc(calls * sizeof *b->times);
    }
    const size_t pairs = calls / (2 * block);
    double *ratios = malloc(pairs * sizeof *ratios), *scratch = malloc(block * sizeof *scratch);
    /* Batches in a fixed scattered order, the same sequence for both builds. */
    size_t next[2] = {0, 0};
    for (size_t p = 0; p < pairs; p++) {
        double medians[2];
        for (int turn = 0; turn < 2; turn++) {
            const int k = turn ^ (int)(p & 1);   /* ABBA: each build goes first in every other pair */
            build *b = &builds[k];
            for (size_t c = 0; c < block; c++) {
                const size_t i = (next[k]++ * 7919) % batches;
                const double start = now();
                int status;
                if (predicting) {
                    status = b->predict(b->model, x + i * rows * f, rows, out, rows * 1024);
                    b->last = out[0] + out[rows - 1];
                } else {
                    status = b->train_step(b->model, x + i * rows * f, rows, y + i * rows, NULL, &b->last);
                }
                const double us = (now() - start) * 1e6;
                if (status) {
                    fprintf(stderr, "step_pair: %s: %s\n", b->path, b->last_error());
                    return 1;
                }
                b->times[b->count++] = scratch[c] = us;
            }
            qsort(scratch, block, sizeof *scratch, compare);
            medians[k] = scratch[block / 2];
        }
        ratios[p] = medians[1] / medians[0];
    }
    double median[2];
    for (int k = 0; k < 2; k++) summary(builds[k].path, builds[k].times, builds[k].count, &median[k]);
    qsort(ratios, pairs, sizeof *ratios, compare);
    printf("  second/first: median of calls %.3f; over %zu pairs of blocks: median %.3f [%.3f-%.3f]; last %s %.6f, %.6f\n",
           median[1] / median[0], pairs, ratios[pairs / 2], ratios[0], ratios[pairs - 1],
           predicting ? "checksum" : "loss", builds[0].last, builds[1].last);
    fflush(stdout);
    *ratio = ratios[pairs / 2];
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 5) {
        fprintf(stderr, "usage: step_pair DATA SPEC OLD.so NEW.so [CALLS [BLOCK [train|predict|predict1]]]\n");
        return 2;
    }
    const size_t calls = argc > 5 ? (size_t)atol(argv[5]) : 6000, block = argc > 6 ? (size_t)atol(argv[6]) : 50;
    const int single = argc > 7 && strcmp(argv[7], "predict1") == 0;
    const int predicting = single || (argc > 7 && strcmp(argv[7], "predict") == 0);
    const size_t rows = single ? 1 : predicting ? 1000 : 64;
    if (calls < 2 * block || block == 0) {
        fprintf(stderr, "step_pair: CALLS must hold at least one BLOCK of each build\n");
        return 2;
    }
    /* Two runs, each in a child process: OLD loaded first, then NEW first. */
    double r[2];
    for (int order = 0; order < 2; order++) {
        const char *paths[2] = {argv[3 + order], argv[4 - order]};
        int channel[2];
        if (pipe(channel)) return 1;
        printf("%s loaded first:\n", paths[0]);
        fflush(stdout);
        const pid_t child = fork();
        if (child < 0) return 1;
        if (child == 0) {
            double ratio;
            const int status = measure(argv[1], argv[2], paths, calls, block, predicting, rows, &ratio);
            if (status == 0 && write(channel[1], &ratio, sizeof ratio) != (ssize_t)sizeof ratio) _exit(1);
            _exit(status);
        }
        close(channel[1]);
        int status = 1;
        const ssize_t got = read(channel[0], &r[order], sizeof r[order]);
        close(channel[0]);
        if (waitpid(child, &status, 0) != child || !WIFEXITED(status) || WEXITSTATUS(status) || got != (ssize_t)sizeof r[0])
            return 1;
    }
    /* r[0] = (new/old) b and r[1] = (old/new) b, for a bias b of the build loaded second
     * (the same file loaded twice ran 2-4% slower the second time, not from thread-local
     * storage: __tls_get_addr took under 0.1% of the samples): the geometric mean cancels it. */
    const double bias = sqrt(r[0] * r[1]);
    printf("new/old %.3f (bias of the build loaded second: %.3f)\n", sqrt(r[0] / r[1]), bias);
    /* Loading the same file twice gave a bias of 0.96-1.03; far from that, the two runs saw
     * different machines (the VM's state changed between them), and their ratio says little. */
    if (bias < 0.95 || bias > 1.05) printf("the two runs disagree (bias beyond 0.95-1.05): measure again\n");
    return 0;
}
