/*
 * example.c -- the smallest complete program using deeplearning, written from
 * Include/deeplearning.h alone: build the model of specs/mnist_mlp.json, train it on one
 * batch of 64 random samples, predict, print, free. Every status is checked.
 *
 *     example [SPEC]          SPEC defaults to specs/mnist_mlp.json
 */
#include <deeplearning.h>

#include <stdio.h>
#include <stdlib.h>

/* Runs a call; on failure prints it with the library's message and jumps to cleanup. */
#define TRY(call)                                                                          \
    do {                                                                                   \
        status = (call);                                                                   \
        if (status != DL_OK) {                                                             \
            fprintf(stderr, "%s failed: %s: %s\n", #call, dl_status_string(status),        \
                    dl_last_error());                                                      \
            goto done;                                                                     \
        }                                                                                  \
    } while (0)

enum { BATCH = 64 };

int main(int argc, char **argv) {
    const char *spec = argc > 1 ? argv[1] : "specs/mnist_mlp.json";
    if (dl_version_number() != DL_VERSION_NUMBER) {
        fprintf(stderr, "libdeeplearning %s does not match deeplearning.h %s\n", dl_version(), DL_VERSION_STRING);
        return 1;
    }

    int status = DL_OK;
    dl_model *model = NULL;
    float *x = NULL, *outputs = NULL;
    int32_t labels[BATCH], classes[BATCH];
    size_t inputs = 0, classes_count = 0;

    TRY(dl_model_from_spec(spec, &model));
    TRY(dl_model_input_size(model, &inputs));
    TRY(dl_model_output_size(model, &classes_count));
    printf("%s: %zu inputs, %zu outputs\n", spec, inputs, classes_count);

    /* A batch of random "images" with random labels. */
    x = malloc(BATCH * inputs * sizeof *x);
    outputs = malloc(BATCH * classes_count * sizeof *outputs);
    if (x == NULL || outputs == NULL) {
        fprintf(stderr, "out of memory\n");
        status = DL_NOMEM;
        goto done;
    }
    srand(1);
    for (size_t i = 0; i < BATCH * inputs; i++) x[i] = (float)rand() / (float)RAND_MAX;
    for (size_t i = 0; i < BATCH; i++) labels[i] = (int32_t)((size_t)rand() % classes_count);

    double loss = 0;
    TRY(dl_train_step(model, x, BATCH, labels, NULL, &loss));
    printf("one training step on %d samples: loss %.4f\n", BATCH, loss);

    TRY(dl_predict(model, x, BATCH, outputs, BATCH * classes_count));
    TRY(dl_predict_classes(model, x, BATCH, classes, BATCH));
    printf("sample 0: logits");
    for (size_t c = 0; c < classes_count; c++) printf(" %.3f", outputs[c]);
    printf("\npredicted classes of the first 8 samples:");
    for (size_t i = 0; i < 8; i++) printf(" %d", (int)classes[i]);
    printf("\n");

done:
    free(x);
    free(outputs);
    dl_model_free(model);
    return status == DL_OK ? 0 : 1;
}
