/* How the library's cost grows with the work: a training step and a prediction of one
 * batch, for batch sizes 1, 64 and 256, on the MLP 784-128-10, the wide MLP
 * 784-1024-1024-10 and the CNN of specs/mnist_cnn.json. One JSON line per case: the median
 * time of SAMPLES calls after warm-up calls, and the GFLOP/s it gives (bench/growth.py runs
 * it with 1 and 2 kernel threads, round-robin, and prints the table of bench/README.md).
 *
 *   cc -O2 -std=c11 -IInclude bench/growth.c -Lbuild -ldeeplearning -Wl,-rpath,$PWD/build -o growth
 *   ./growth [SAMPLES]
 *
 * Work is counted from the model itself: a linear or conv2d layer does, per sample, one
 * multiply-add per weight and output position (its output size times its weight count
 * over its output channels). Prediction is the forward pass: 2 FLOP per multiply-add.
 * Training is the forward pass, the weight gradients and the input gradients of every such
 * layer but the first (which needs none): 3 times the forward's products less the first
 * layer's input gradient. Elementwise work (activations, batch norm, pooling, the loss,
 * the optimizer) is not counted, but its time is: the rate is what the model achieves, not
 * what its products achieve. Inputs are uniform in [0, 1) with no background, so the
 * sparse-input path never applies. */
#define _POSIX_C_SOURCE 199309L
#include <deeplearning.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "timing.h"

static const char *MLP = "{\"format_version\": 1, \"name\": \"mlp\", \"input\": {\"size\": 784}, \"layers\": ["
                         "{\"type\": \"linear\", \"units\": 128}, {\"type\": \"relu\"}, {\"type\": \"linear\", \"units\": 10}],"
                         "\"loss\": \"cross_entropy\", \"optimizer\": {\"type\": \"sgd\", \"lr\": 0.01}, \"seed\": 1}";
static const char *WIDE = "{\"format_version\": 1, \"name\": \"wide\", \"input\": {\"size\": 784}, \"layers\": ["
                          "{\"type\": \"linear\", \"units\": 1024}, {\"type\": \"relu\"}, {\"type\": \"linear\", \"units\": 1024},"
                          "{\"type\": \"relu\"}, {\"type\": \"linear\", \"units\": 10}],"
                          "\"loss\": \"cross_entropy\", \"optimizer\": {\"type\": \"sgd\", \"lr\": 0.01}, \"seed\": 1}";

/* Multiply-adds of one sample's forward pass, and those of the first product layer. */
static int count_work(dl_model *m, double *forward, double *first) {
    size_t params = 0;
    if (dl_model_num_params(m, &params)) return 1;
    *forward = *first = 0;
    for (size_t i = 0; i < params; i++) {
        const char *name = NULL;
        size_t dims[8], ndim = 0;
        if (dl_model_param_name(m, i, &name) || dl_model_param_shape(m, i, dims, 8, &ndim)) return 1;
        const char *suffix = strrchr(name, '.');
        if (!suffix || strcmp(suffix, ".weight") != 0 || ndim < 2) continue;
        size_t layer = (size_t)strtoul(name + strlen("layers."), NULL, 10), out[8], out_ndim = 0;
        const char *type = NULL;
        if (dl_model_layer_type(m, layer, &type) || dl_model_layer_output_shape(m, layer, out, 8, &out_ndim)) return 1;
        if (strcmp(type, "linear") != 0 && strcmp(type, "conv2d") != 0) continue;
        double weights = 1, outputs = 1;
        for (size_t d = 0; d < ndim; d++) weights *= (double)dims[d];
        for (size_t d = 0; d < out_ndim; d++) outputs *= (double)out[d];
        const double macs = outputs * weights / (double)dims[0];
        if (*forward == 0) *first = macs;
        *forward += macs;
    }
    return 0;
}

static int run(const char *label, const char *json, const char *path, size_t batch, int samples) {
    dl_model *m = NULL;
    if (json ? dl_model_from_json(json, &m) : dl_model_from_spec(path, &m)) {
        fprintf(stderr, "growth: %s: %s\n", label, dl_last_error());
        return 1;
    }
    size_t in = 0, outputs = 0;
    double forward = 0, first = 0;
    if (dl_model_input_size(m, &in) || dl_model_output_size(m, &outputs) || count_work(m, &forward, &first)) {
        fprintf(stderr, "growth: %s: %s\n", label, dl_last_error());
        return 1;
    }
    float *x = malloc(batch * in * sizeof *x), *out = malloc(batch * outputs * sizeof *out);
    int32_t *y = malloc(batch * sizeof *y);
    double *times = malloc((size_t)samples * sizeof *times);
    uint64_t r = 42;
    for (size_t i = 0; i < batch * in; i++) {
        r = r * 6364136223846793005ull + 1442695040888963407ull;
        x[i] = (float)(r >> 40) / (float)(1 << 24);
    }
    for (size_t i = 0; i < batch; i++) y[i] = (int32_t)(i % outputs);
    const int warm = 5;
    for (int phase = 0; phase < 2; phase++) {
        for (int s = -warm; s < samples; s++) {
            const double t = now();
            const int status = phase == 0 ? dl_train_step(m, x, batch, y, NULL, NULL)
                                          : dl_predict(m, x, batch, out, batch * outputs);
            if (status) {
                fprintf(stderr, "growth: %s: %s\n", label, dl_last_error());
                return 1;
            }
            if (s >= 0) times[s] = now() - t;
        }
        qsort(times, (size_t)samples, sizeof *times, compare);
        const double median = times[samples / 2];
        const double flop = phase == 0 ? 2.0 * (double)batch * (3 * forward - first) : 2.0 * (double)batch * forward;
        printf("{\"model\": \"%s\", \"batch\": %zu, \"phase\": \"%s\", \"threads\": %d, \"median_us\": %.2f, "
               "\"min_us\": %.2f, \"gflop\": %.6f, \"gflops\": %.3f}\n",
               label, batch, phase == 0 ? "train" : "predict", dl_get_num_threads(), median * 1e6,
               times[0] * 1e6, flop * 1e-9, flop / median * 1e-9);
        fflush(stdout);
    }
    free(x); free(out); free(y); free(times);
    dl_model_free(m);
    return 0;
}

int main(int argc, char **argv) {
    const int samples = argc > 1 ? atoi(argv[1]) : 31;
    const char *cnn = argc > 2 ? argv[2] : "specs/mnist_cnn.json";
    if (samples < 1) {
        fprintf(stderr, "usage: %s [SAMPLES [CNN_SPEC]]\n", argv[0]);
        return 2;
    }
    const size_t batches[] = {1, 64, 256};
    for (int b = 0; b < 3; b++) {
        if (run("MLP 784-128-10", MLP, NULL, batches[b], samples)) return 1;
        if (run("MLP 784-1024-1024-10", WIDE, NULL, batches[b], samples)) return 1;
        if (run("CNN (mnist_cnn.json)", NULL, cnn, batches[b], b == 0 ? samples : samples / 3 + 1)) return 1;
    }
    return 0;
}
