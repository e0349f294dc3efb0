/*
 * fuzz_safetensors -- PyTorch state dicts in safetensors files, dl_model_import()
 * with format "safetensors", on fuzzer-made files (the input is the file). Each file
 * is imported against three fixed specs (an MLP with batch norm, a CNN with batch
 * norm, a float64 network with a non-affine batch norm: the seeds are their state
 * dicts) and once without a spec (a file may carry its own in "__metadata__"). A
 * model that imports must predict, export again with DL_OK and import back with the
 * same parameters.
 */
#include "fuzz_common.h"

#define FUZZ_MAX_SIZE   (1u << 16)
#define FUZZ_MAX_PARAMS (1u << 20)
#define FUZZ_BATCH      2

static const char *const specs[] = {
    "{\"spec\": {\"input_size\": 3, \"layers\": [{\"type\": \"linear\", \"units\": 4}, {\"type\": \"batch_norm\"},"
    " {\"type\": \"relu\"}, {\"type\": \"dropout\"}, {\"type\": \"linear\", \"units\": 2}],"
    " \"loss\": \"cross_entropy\", \"optimizer\": {\"type\": \"sgd\", \"lr\": 0.1}}}",
    "{\"spec\": {\"input\": {\"shape\": [1, 4, 4]}, \"layers\": [{\"type\": \"conv2d\", \"filters\": 2, \"kernel_size\": 3,"
    " \"padding\": 1}, {\"type\": \"batch_norm\"}, {\"type\": \"max_pool2d\", \"kernel_size\": 2}, {\"type\": \"flatten\"},"
    " {\"type\": \"linear\", \"units\": 3, \"bias\": false}], \"loss\": \"mse\", \"optimizer\": {\"type\": \"sgd\", \"lr\": 0.1}}}",
    "{\"spec\": {\"input_size\": 2, \"dtype\": \"float64\", \"layers\": [{\"type\": \"batch_norm\", \"affine\": false},"
    " {\"type\": \"linear\", \"units\": 2}, {\"type\": \"tanh\"}], \"loss\": \"mse\", \"optimizer\": {\"type\": \"sgd\", \"lr\": 0.1}}}",
    NULL,
};

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

static void exercise(dl_model *m, const char *options, const uint8_t *data, size_t size) {
    size_t in = 0, out = 0, params = 0, tensors = 0;
    if (dl_model_input_size(m, &in) != DL_OK || dl_model_output_size(m, &out) != DL_OK ||
        dl_model_param_count(m, &params) != DL_OK || dl_model_num_params(m, &tensors) != DL_OK)
        fuzz_fail("an imported model does not answer its sizes");
    if (in == 0 || out == 0) fuzz_fail("an imported model has input size %zu, output size %zu", in, out);
    if (in > FUZZ_MAX_SIZE || out > FUZZ_MAX_SIZE || params > FUZZ_MAX_PARAMS) return;
    fuzz_rng rng = fuzz_seed(data, size);
    float *x = malloc(FUZZ_BATCH * in * sizeof *x), *y = malloc(FUZZ_BATCH * out * sizeof *y);
    for (size_t i = 0; i < FUZZ_BATCH * in; i++) x[i] = fuzz_uniform(&rng);
    int status = dl_predict(m, x, FUZZ_BATCH, y, FUZZ_BATCH * out);
    fuzz_check_status(status, "dl_predict");
    if (status == DL_OK) fuzz_touch_floats(y, FUZZ_BATCH * out);
    free(x), free(y);

    /* Exported under a name without the extension: the format is named, and the Python
       source goes to <name>.py, removed here. */
    const char *copy = fuzz_temp_path(5, "");
    char python[600];
    snprintf(python, sizeof python, "%s.py", copy);
    status = dl_model_export(m, copy, "safetensors");
    fuzz_check_status(status, "dl_model_export");
    if (status != DL_OK) fuzz_fail("an imported model does not export (status %d)", status);
    dl_model *again = NULL;
    status = dl_model_import(copy, "safetensors", options, &again);
    unlink(python);
    if (status != DL_OK) fuzz_fail("a model exported with DL_OK does not import back (status %d)", status);
    size_t again_tensors = 0;
    dl_model_num_params(again, &again_tensors);
    if (again_tensors != tensors) fuzz_fail("%zu param tensors exported, %zu imported", tensors, again_tensors);
    for (size_t i = 0; i < tensors; i++) {
        size_t n = 0, n2 = 0;
        float *a = param(m, i, &n), *b = param(again, i, &n2);
        if (n != n2 || (a && b && memcmp(a, b, n * sizeof *a) != 0)) fuzz_fail("param %zu differs after export and import", i);
        free(a), free(b);
    }
    dl_model_free(again);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *path = fuzz_temp_path(4, "");
    fuzz_write_file(path, data, size);
    for (size_t s = 0; s < sizeof specs / sizeof *specs; s++) {
        dl_model *m = NULL;
        int status = dl_model_import(path, "safetensors", specs[s], &m);
        fuzz_check_status(status, "dl_model_import");
        if (status != DL_OK) {
            if (m != NULL) fuzz_fail("dl_model_import failed (%d) but set out", status);
            if (dl_last_error()[0] == '\0') fuzz_fail("dl_model_import failed (%d) without a message", status);
            continue;
        }
        if (m == NULL) fuzz_fail("dl_model_import returned DL_OK and no model");
        exercise(m, specs[s], data, size);
        dl_model_free(m);
    }
    return 0;
}
