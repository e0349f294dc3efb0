/*
 * fuzz_onnx -- ONNX import, dl_model_import(path, "onnx", ...), on fuzzer-made
 * files (the input is the .onnx file: a protobuf ModelProto). A model that
 * imports is an ordinary model of the library, so it must then predict, train a
 * step, export to ONNX again, and that export must import back with the same
 * number of parameter tensors and the same parameters (what the exporter writes
 * the importer reads: a model that leaves and cannot come back is lost).
 */
#include "fuzz_common.h"

#define FUZZ_MAX_SIZE   (1u << 16)   /* input and output sizes this harness runs */
#define FUZZ_MAX_PARAMS (1u << 20)
#define FUZZ_BATCH      2

static void exercise(dl_model *m, const uint8_t *data, size_t size) {
    size_t in = 0, out = 0, params = 0, tensors = 0;
    if (dl_model_input_size(m, &in) != DL_OK || dl_model_output_size(m, &out) != DL_OK ||
        dl_model_param_count(m, &params) != DL_OK || dl_model_num_params(m, &tensors) != DL_OK)
        fuzz_fail("an imported model does not answer its sizes");
    if (in == 0 || out == 0) fuzz_fail("an imported model has input size %zu, output size %zu", in, out);
    if (in > FUZZ_MAX_SIZE || out > FUZZ_MAX_SIZE || params > FUZZ_MAX_PARAMS) return;

    /* Export first (the imported values), then import the export and compare. */
    const char *copy = fuzz_temp_path(5, ".onnx");
    int status = dl_model_export(m, copy, "onnx");
    fuzz_check_status(status, "dl_model_export");
    if (status != DL_OK && status != DL_NOMEM && status != DL_IO_ERROR)
        fuzz_fail("an imported model cannot be exported to ONNX again (status %d)", status);
    if (status == DL_OK) {
        dl_model *again = NULL;
        status = dl_model_import(copy, "onnx", NULL, &again);
        if (status != DL_OK) fuzz_fail("an ONNX file the library exported does not import (status %d)", status);
        size_t again_tensors = 0;
        dl_model_num_params(again, &again_tensors);
        if (again_tensors != tensors) fuzz_fail("%zu param tensors exported, %zu imported", tensors, again_tensors);
        for (size_t i = 0; i < tensors; i++) {
            size_t dims[4], ndim = 0, n = 1;
            if (dl_model_param_shape(m, i, dims, 4, &ndim) != DL_OK) fuzz_fail("param %zu has no shape", i);
            for (size_t d = 0; d < ndim; d++) n *= dims[d];
            float *a = malloc(n * sizeof *a + 1), *b = malloc(n * sizeof *b + 1);
            if (dl_model_get_param(m, i, a, n) != DL_OK || dl_model_get_param(again, i, b, n) != DL_OK)
                fuzz_fail("param %zu cannot be read after the round trip", i);
            if (memcmp(a, b, n * sizeof *a) != 0) fuzz_fail("param %zu differs after export and import", i);
            free(a), free(b);
        }
        dl_model_free(again);
    }

    fuzz_rng rng = fuzz_seed(data, size);
    float *x = malloc(FUZZ_BATCH * in * sizeof *x), *y = malloc(FUZZ_BATCH * out * sizeof *y);
    float *targets = malloc(FUZZ_BATCH * out * sizeof *targets);
    int32_t labels[FUZZ_BATCH];
    for (size_t i = 0; i < FUZZ_BATCH * in; i++) x[i] = fuzz_uniform(&rng);
    for (size_t i = 0; i < FUZZ_BATCH * out; i++) targets[i] = fuzz_uniform(&rng);
    for (size_t i = 0; i < FUZZ_BATCH; i++) labels[i] = (int32_t)(fuzz_next(&rng) % out);
    status = dl_predict(m, x, FUZZ_BATCH, y, FUZZ_BATCH * out);
    fuzz_check_status(status, "dl_predict");
    if (status == DL_OK) fuzz_touch_floats(y, FUZZ_BATCH * out);
    double loss = 0;
    status = dl_train_step(m, x, FUZZ_BATCH, labels, NULL, &loss);
    fuzz_check_status(status, "dl_train_step");
    if (status == DL_UNSUPPORTED) fuzz_check_status(dl_train_step(m, x, FUZZ_BATCH, NULL, targets, &loss), "dl_train_step");
    free(x), free(y), free(targets);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *path = fuzz_temp_path(4, ".onnx");
    fuzz_write_file(path, data, size);
    dl_model *m = NULL;
    int status = dl_model_import(path, "onnx", NULL, &m);
    fuzz_check_status(status, "dl_model_import");
    if (status != DL_OK) {
        if (m != NULL) fuzz_fail("dl_model_import failed (%d) but set out", status);
        if (dl_last_error()[0] == '\0') fuzz_fail("dl_model_import failed (%d) without a message", status);
        return 0;
    }
    if (m == NULL) fuzz_fail("dl_model_import returned DL_OK and no model");
    exercise(m, data, size);
    dl_model_free(m);
    return 0;
}
