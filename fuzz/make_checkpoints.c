/*
 * make_checkpoints -- writes the seed checkpoints of fuzz/corpus/checkpoint:
 * small models of every optimizer and a batch-norm and a conv layer, each after
 * one training step (so optimizer state and counters are not all zero).
 *   make_checkpoints OUTPUT_FOLDER
 * (scripts/fuzz.sh --make-seeds builds and runs it; the seeds are committed.)
 */
#include <stdio.h>
#include <string.h>
#include "deeplearning.h"

static const char *const specs[][2] = {
    {"mlp_sgd", "{\"format_version\": 1, \"input\": {\"size\": 2}, \"layers\": [{\"type\": \"linear\", \"units\": 3},"
     " {\"type\": \"tanh\"}, {\"type\": \"linear\", \"units\": 2}], \"loss\": \"cross_entropy\","
     " \"optimizer\": {\"type\": \"sgd\", \"lr\": 0.1, \"momentum\": 0.9}, \"seed\": 1}"},
    {"mlp_adam_huber", "{\"format_version\": 1, \"input\": {\"size\": 3}, \"layers\": [{\"type\": \"linear\", \"units\": 2},"
     " {\"type\": \"relu\"}, {\"type\": \"linear\", \"units\": 1}], \"loss\": {\"type\": \"huber\", \"delta\": 1.0},"
     " \"optimizer\": {\"type\": \"adam\", \"lr\": 0.01}, \"seed\": 2}"},
    {"cnn_bn_rmsprop", "{\"format_version\": 1, \"input\": {\"size\": 16}, \"layers\": [{\"type\": \"reshape\", \"shape\": [1, 4, 4]},"
     " {\"type\": \"conv2d\", \"filters\": 1, \"kernel_size\": 3, \"padding\": 1, \"bias\": false},"
     " {\"type\": \"batch_norm\"}, {\"type\": \"relu\"}, {\"type\": \"max_pool2d\", \"kernel_size\": 2},"
     " {\"type\": \"flatten\"}, {\"type\": \"linear\", \"units\": 2}], \"loss\": \"cross_entropy\","
     " \"optimizer\": {\"type\": \"rmsprop\", \"lr\": 0.01}, \"seed\": 3}"},
    {"mlp_schedule_preprocessing", "{\"format_version\": 1, \"input\": {\"size\": 2},"
     " \"preprocessing\": {\"scale\": 0.5, \"mean\": 0.1, \"std\": 2.0},"
     " \"layers\": [{\"type\": \"linear\", \"units\": 2}], \"loss\": \"mse\","
     " \"optimizer\": {\"type\": \"sgd\", \"lr\": 0.1, \"schedule\": {\"type\": \"step\", \"step_size\": 2, \"gamma\": 0.5}},"
     " \"seed\": 4}"},
};

int main(int argc, char **argv) {
    if (argc != 2) { fprintf(stderr, "usage: make_checkpoints OUTPUT_FOLDER\n"); return 2; }
    float x[32];
    for (int i = 0; i < 32; i++) x[i] = (float)(i % 7) / 7.0f - 0.5f;
    int32_t labels[2] = {0, 1};
    float targets[4] = {0.5f, -0.5f, 0.25f, 1.0f};
    for (size_t i = 0; i < sizeof specs / sizeof *specs; i++) {
        dl_model *m = NULL;
        if (dl_model_from_json(specs[i][1], &m) != DL_OK) { fprintf(stderr, "%s: %s\n", specs[i][0], dl_last_error()); return 1; }
        double loss;
        if (dl_train_step(m, x, 2, labels, NULL, &loss) == DL_UNSUPPORTED) dl_train_step(m, x, 2, NULL, targets, &loss);
        dl_model_end_epoch(m);
        char path[1024];
        snprintf(path, sizeof path, "%s/%s.h5", argv[1], specs[i][0]);
        if (dl_model_save(m, path) != DL_OK) { fprintf(stderr, "%s: %s\n", path, dl_last_error()); return 1; }
        dl_model_free(m);
        printf("%s\n", path);
    }
    return 0;
}
