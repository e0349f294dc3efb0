/*
 * mnist_mlp.c -- the tutorial's MNIST example in C (docs/tutorial-c.md): the TwoLayerMLP
 * 784-128-10 trained with SGD (learning rate 0.01, batches of 64, reshuffled every
 * epoch) on standardized pixels, evaluated on the test split after every epoch, saved.
 *
 *     mnist_mlp DATA_DIR [EPOCHS [CHECKPOINT]]
 *
 * DATA_DIR holds MNIST's four IDX files (scripts/fetch_mnist.py DATA_DIR downloads them);
 * EPOCHS defaults to 5, CHECKPOINT to mnist_mlp.h5.
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

/* The tutorial's TwoLayerMLP: Linear(784, 128), ReLU, Linear(128, 10), softmax
 * cross-entropy, plain SGD. The same model as specs/mnist_mlp.json. */
static const char *const spec =
    "{\"format_version\": 1, \"name\": \"mnist_mlp\", \"input\": {\"size\": 784},"
    " \"layers\": [{\"type\": \"linear\", \"units\": 128}, {\"type\": \"relu\"},"
    "              {\"type\": \"linear\", \"units\": 10}],"
    " \"loss\": \"cross_entropy\", \"optimizer\": {\"type\": \"sgd\", \"lr\": 0.01},"
    " \"init\": \"he_normal\", \"seed\": 0}";

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s DATA_DIR [EPOCHS [CHECKPOINT]]\n", argv[0]);
        return 2;
    }
    const char *data_dir = argv[1];
    int epochs = argc > 2 ? atoi(argv[2]) : 5;
    const char *checkpoint = argc > 3 ? argv[3] : "mnist_mlp.h5";
    if (dl_version_number() != DL_VERSION_NUMBER) {
        fprintf(stderr, "libdeeplearning %s does not match deeplearning.h %s\n", dl_version(), DL_VERSION_STRING);
        return 1;
    }

    int status = DL_OK;
    dl_model *model = NULL;
    dl_dataset *train = NULL, *test = NULL;

    /* 1. The data, kept as stored: pixels 0..255. */
    TRY(dl_dataset_load_mnist(data_dir, DL_SPLIT_TRAIN, &train));
    TRY(dl_dataset_load_mnist(data_dir, DL_SPLIT_TEST, &test));

    /* 2. The model, and the tutorial's standardization: scale by 1/255, then subtract the
     *    training set's mean and divide by its std. The model applies it to raw input. */
    TRY(dl_model_from_json(spec, &model));
    double mean = 0, std = 0;
    TRY(dl_dataset_standardizer(train, 1.0 / 255, &mean, &std));
    TRY(dl_model_set_preprocessing(model, 1.0 / 255, mean, std));
    printf("standardization: mean %.6f, std %.6f\n", mean, std);

    /* 3. Training: each epoch in a new order, from the model's own seeded generator. */
    for (int epoch = 1; epoch <= epochs; epoch++) {
        double train_loss = 0, test_loss = 0, test_accuracy = 0;
        TRY(dl_train_epoch(model, train, 64, 1, &train_loss));
        TRY(dl_evaluate_dataset(model, test, &test_loss, &test_accuracy));
        printf("epoch %d/%d  loss %.4f  test loss %.4f  test accuracy %.2f%%\n", epoch, epochs, train_loss,
               test_loss, 100 * test_accuracy);
    }

    /* 4. A checkpoint that h5py, dl and dl_model_load() read back. */
    TRY(dl_model_save(model, checkpoint));
    printf("saved %s\n", checkpoint);

done:
    dl_model_free(model);
    dl_dataset_free(train);
    dl_dataset_free(test);
    return status == DL_OK ? 0 : 1;
}
