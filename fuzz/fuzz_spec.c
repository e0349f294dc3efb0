/*
 * fuzz_spec -- the spec parser: dl_model_from_json() on the input as JSON text,
 * then, when a model builds, one training step and a prediction on a small
 * random batch, and every introspection function.
 *
 * Models too large to train within the fuzzer's time and memory per input are
 * built but not run: more than FUZZ_MAX_PARAMS parameters, or per-sample
 * activations (the sum of every layer's output) over FUZZ_MAX_ACTIVATIONS values.
 * The library's own budgets answer the ones it cannot run with DL_NOMEM; these
 * caps only keep each input fast.
 */
#include "fuzz_common.h"

#define FUZZ_MAX_PARAMS       (1u << 20)
#define FUZZ_MAX_ACTIVATIONS  (1u << 20)
#define FUZZ_MAX_INPUT        (1u << 16)
#define FUZZ_BATCH            2

/* The per-sample activation count of a built model, or SIZE_MAX when it overflows. */
static size_t activations(dl_model *m) {
    size_t layers = 0, total = 0;
    fuzz_check_status(dl_model_num_layers(m, &layers), "dl_model_num_layers");
    for (size_t i = 0; i < layers; i++) {
        size_t dims[4], ndim = 0, n = 1;
        const char *type = NULL;
        if (dl_model_layer_type(m, i, &type) != DL_OK || type == NULL) fuzz_fail("layer %zu has no type", i);
        if (dl_model_layer_output_shape(m, i, dims, 4, &ndim) != DL_OK) fuzz_fail("layer %zu has no shape", i);
        for (size_t d = 0; d < ndim; d++) {
            if (dims[d] != 0 && n > SIZE_MAX / dims[d]) return SIZE_MAX;
            n *= dims[d];
        }
        if (total > SIZE_MAX - n) return SIZE_MAX;
        total += n;
    }
    /* Out-of-range indices are refused, not read. */
    size_t dims[4], ndim;
    const char *type;
    if (dl_model_layer_output_shape(m, layers, dims, 4, &ndim) != DL_INVALID_ARGUMENT ||
        dl_model_layer_type(m, layers, &type) != DL_INVALID_ARGUMENT)
        fuzz_fail("layer index %zu (one past the end) accepted", layers);
    return total;
}

/* Parameter names, shapes and values; buffers likewise. */
static void introspect(dl_model *m, size_t param_count) {
    size_t tensors = 0, total = 0;
    fuzz_check_status(dl_model_num_params(m, &tensors), "dl_model_num_params");
    for (size_t i = 0; i < tensors; i++) {
        const char *name = NULL;
        size_t dims[4], ndim = 0, n = 1;
        if (dl_model_param_name(m, i, &name) != DL_OK || name == NULL) fuzz_fail("param %zu has no name", i);
        if (dl_model_param_shape(m, i, dims, 4, &ndim) != DL_OK) fuzz_fail("param %zu has no shape", i);
        for (size_t d = 0; d < ndim; d++) n *= dims[d];
        total += n;
        if (n <= FUZZ_MAX_PARAMS) {
            float *values = malloc(n * sizeof *values + 1);
            if (dl_model_get_param(m, i, values, n) != DL_OK) fuzz_fail("get_param %zu failed", i);
            fuzz_touch_floats(values, n);
            for (size_t k = 0; k < n; k++)
                if (!isfinite(values[k])) fuzz_fail("param %s holds a non-finite value", name);
            if (n > 0 && dl_model_get_param(m, i, values, n - 1) != DL_INVALID_ARGUMENT)
                fuzz_fail("get_param %zu with a short buffer accepted", i);
            free(values);
        }
    }
    if (total != param_count) fuzz_fail("param tensors hold %zu values, param_count says %zu", total, param_count);
    size_t buffers = 0;
    fuzz_check_status(dl_model_num_buffers(m, &buffers), "dl_model_num_buffers");
    for (size_t i = 0; i < buffers; i++) {
        const char *name = NULL;
        size_t dims[4], ndim = 0;
        if (dl_model_buffer_name(m, i, &name) != DL_OK || name == NULL) fuzz_fail("buffer %zu has no name", i);
        if (dl_model_buffer_shape(m, i, dims, 4, &ndim) != DL_OK) fuzz_fail("buffer %zu has no shape", i);
    }
    const char *json = NULL;
    if (dl_model_spec_json(m, &json) != DL_OK || json == NULL) fuzz_fail("a built model has no spec");
    (void)strlen(json);
}

/* One training step and one prediction on a random batch of FUZZ_BATCH samples. */
static void run(dl_model *m, const uint8_t *data, size_t size) {
    size_t in = 0, out = 0;
    if (dl_model_input_size(m, &in) != DL_OK || dl_model_output_size(m, &out) != DL_OK)
        fuzz_fail("a built model has no input or output size");
    if (in == 0 || out == 0) fuzz_fail("a built model has input size %zu, output size %zu", in, out);
    if (in > FUZZ_MAX_INPUT || out > FUZZ_MAX_INPUT) return;
    fuzz_rng rng = fuzz_seed(data, size);
    float *x = malloc(FUZZ_BATCH * in * sizeof *x);
    float *targets = malloc(FUZZ_BATCH * out * sizeof *targets);
    float *y = malloc(FUZZ_BATCH * out * sizeof *y);
    int32_t labels[FUZZ_BATCH], classes[FUZZ_BATCH];
    for (size_t i = 0; i < FUZZ_BATCH * in; i++) x[i] = fuzz_uniform(&rng);
    for (size_t i = 0; i < FUZZ_BATCH * out; i++) targets[i] = fuzz_uniform(&rng);
    for (size_t i = 0; i < FUZZ_BATCH; i++) labels[i] = (int32_t)(fuzz_next(&rng) % out);
    double loss = 0;
    int status = dl_train_step(m, x, FUZZ_BATCH, labels, NULL, &loss);
    fuzz_check_status(status, "dl_train_step");
    if (status == DL_UNSUPPORTED) {
        status = dl_train_step(m, x, FUZZ_BATCH, NULL, targets, &loss);
        fuzz_check_status(status, "dl_train_step (targets)");
    }
    if (status == DL_OK && !isfinite(loss)) fuzz_fail("dl_train_step returned DL_OK with loss %g", loss);
    status = dl_predict(m, x, FUZZ_BATCH, y, FUZZ_BATCH * out);
    fuzz_check_status(status, "dl_predict");
    if (status == DL_OK) fuzz_touch_floats(y, FUZZ_BATCH * out);
    if (dl_predict(m, x, FUZZ_BATCH, y, FUZZ_BATCH * out - 1) != DL_INVALID_ARGUMENT)
        fuzz_fail("dl_predict with a short buffer accepted");
    status = dl_predict_classes(m, x, FUZZ_BATCH, classes, FUZZ_BATCH);
    fuzz_check_status(status, "dl_predict_classes");
    if (status == DL_OK)
        for (size_t i = 0; i < FUZZ_BATCH; i++)
            if (classes[i] < 0 || (size_t)classes[i] >= out) fuzz_fail("class %d of %zu outputs", classes[i], out);
    free(x);
    free(targets);
    free(y);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *json = malloc(size + 1);
    memcpy(json, data, size);
    json[size] = '\0';
    dl_model *m = NULL;
    int status = dl_model_from_json(json, &m);
    fuzz_check_status(status, "dl_model_from_json");
    free(json);
    if (status != DL_OK) {
        if (m != NULL) fuzz_fail("dl_model_from_json failed (%d) but set out", status);
        if (dl_last_error()[0] == '\0') fuzz_fail("dl_model_from_json failed (%d) without a message", status);
        return 0;
    }
    if (m == NULL) fuzz_fail("dl_model_from_json returned DL_OK and no model");
    size_t params = 0;
    fuzz_check_status(dl_model_param_count(m, &params), "dl_model_param_count");
    size_t acts = activations(m);
    if (params <= FUZZ_MAX_PARAMS) introspect(m, params);
    if (params <= FUZZ_MAX_PARAMS && acts <= FUZZ_MAX_ACTIVATIONS) run(m, data, size);
    dl_model_free(m);
    return 0;
}
