/*
 * fuzz_checkpoint -- checkpoint loading, dl_model_load(), on fuzzer-made files
 * (the input is the file). A checkpoint that loads must then work as a model:
 * predict and one training step on a small random batch, then save, and the
 * saved file must load again with the same parameters (a model that can be
 * saved but not loaded back is lost). libhdf5 is not instrumented (see
 * fuzz_hdf5_dataset.c).
 */
#include "fuzz_common.h"

#define FUZZ_MAX_SIZE   (1u << 16)   /* input and output sizes this harness runs */
#define FUZZ_MAX_PARAMS (1u << 20)
#define FUZZ_BATCH      2

/* Parameter tensor `index` of m, copied into a new buffer of *n floats (NULL when too large). */
static float *param(dl_model *m, size_t index, size_t *n) {
    size_t dims[4], ndim = 0;
    *n = 1;
    if (dl_model_param_shape(m, index, dims, 4, &ndim) != DL_OK) fuzz_fail("param %zu has no shape", index);
    for (size_t d = 0; d < ndim; d++) *n *= dims[d];
    if (*n > FUZZ_MAX_PARAMS) return NULL;
    float *values = malloc(*n * sizeof *values + 1);
    if (dl_model_get_param(m, index, values, *n) != DL_OK) fuzz_fail("get_param %zu failed", index);
    return values;
}

static void exercise(dl_model *m, const uint8_t *data, size_t size) {
    size_t in = 0, out = 0, params = 0, tensors = 0;
    if (dl_model_input_size(m, &in) != DL_OK || dl_model_output_size(m, &out) != DL_OK ||
        dl_model_param_count(m, &params) != DL_OK || dl_model_num_params(m, &tensors) != DL_OK)
        fuzz_fail("a loaded model does not answer its sizes");
    if (in == 0 || out == 0) fuzz_fail("a loaded model has input size %zu, output size %zu", in, out);
    if (in > FUZZ_MAX_SIZE || out > FUZZ_MAX_SIZE || params > FUZZ_MAX_PARAMS) return;
    fuzz_rng rng = fuzz_seed(data, size);
    float *x = malloc(FUZZ_BATCH * in * sizeof *x), *y = malloc(FUZZ_BATCH * out * sizeof *y);
    float *targets = malloc(FUZZ_BATCH * out * sizeof *targets);
    int32_t labels[FUZZ_BATCH];
    for (size_t i = 0; i < FUZZ_BATCH * in; i++) x[i] = fuzz_uniform(&rng);
    for (size_t i = 0; i < FUZZ_BATCH * out; i++) targets[i] = fuzz_uniform(&rng);
    for (size_t i = 0; i < FUZZ_BATCH; i++) labels[i] = (int32_t)(fuzz_next(&rng) % out);
    int status = dl_predict(m, x, FUZZ_BATCH, y, FUZZ_BATCH * out);
    fuzz_check_status(status, "dl_predict");
    if (status == DL_OK) fuzz_touch_floats(y, FUZZ_BATCH * out);
    double loss = 0;
    status = dl_train_step(m, x, FUZZ_BATCH, labels, NULL, &loss);
    fuzz_check_status(status, "dl_train_step");
    if (status == DL_UNSUPPORTED) fuzz_check_status(dl_train_step(m, x, FUZZ_BATCH, NULL, targets, &loss), "dl_train_step");
    fuzz_check_status(dl_model_end_epoch(m), "dl_model_end_epoch");
    free(x), free(y), free(targets);

    const char *copy = fuzz_temp_path(5, ".h5");
    status = dl_model_save(m, copy);
    fuzz_check_status(status, "dl_model_save");
    if (status != DL_OK) return;
    dl_model *again = NULL;
    status = dl_model_load(copy, &again);
    if (status != DL_OK) fuzz_fail("a model saved with DL_OK does not load back (status %d)", status);
    size_t again_tensors = 0;
    dl_model_num_params(again, &again_tensors);
    if (again_tensors != tensors) fuzz_fail("%zu param tensors saved, %zu loaded", tensors, again_tensors);
    for (size_t i = 0; i < tensors; i++) {
        size_t n = 0, n2 = 0;
        float *a = param(m, i, &n), *b = param(again, i, &n2);
        if (n != n2 || (a && b && memcmp(a, b, n * sizeof *a) != 0)) fuzz_fail("param %zu differs after save and load", i);
        free(a), free(b);
    }
    dl_model_free(again);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *path = fuzz_temp_path(4, ".h5");
    fuzz_write_file(path, data, size);
    dl_model *m = NULL;
    int status = dl_model_load(path, &m);
    fuzz_check_status(status, "dl_model_load");
    if (status != DL_OK) {
        if (m != NULL) fuzz_fail("dl_model_load failed (%d) but set out", status);
        if (dl_last_error()[0] == '\0') fuzz_fail("dl_model_load failed (%d) without a message", status);
        return 0;
    }
    if (m == NULL) fuzz_fail("dl_model_load returned DL_OK and no model");
    exercise(m, data, size);
    dl_model_free(m);
    return 0;
}
