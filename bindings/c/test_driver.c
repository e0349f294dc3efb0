/*
 * test_driver.c -- the C test driver of the public interface, Include/deeplearning.h.
 *
 * It is written as a user of the library would write it: only the public header and
 * standard C (plus pthreads for the thread tests). It calls every function the header
 * declares, on success and on every error path the header documents, and checks the
 * behaviour against the header's promises and against references computed here:
 *
 *   - version, status strings and dl_last_error() (set on failure, "" after success);
 *   - handles: NULL, freed (use after free, double free) and foreign pointers;
 *   - specs/mnist_mlp.json's introspection (sizes, names, shapes, layers, spec JSON);
 *   - specs/xor.json trained to 100% accuracy; dl_predict against dl_predict_classes and
 *     dl_evaluate, and dl_evaluate's loss against a cross-entropy computed here from the
 *     logits; dl_gradcheck; determinism; dl_model_clone; checkpoints that resume exactly;
 *   - specs/regression.json trained on targets; class labels refused;
 *   - threads: separate models train (and save and load) at once with the serial
 *     results, clones predict at once with the serial results, two threads on one
 *     model get DL_OK or DL_BUSY.
 *
 * Usage: dl_test_driver SPECS_DIR
 *   SPECS_DIR  the folder holding xor.json, mnist_mlp.json and regression.json.
 * The program's own file (argv[0]) serves as a spec file that is not JSON; checkpoints
 * are written in a new folder under $TMPDIR (or /tmp), removed at the end.
 * The last line printed is "N passed, M failed"; the exit status is 1 when a check
 * failed.
 */
#define _POSIX_C_SOURCE 200809L /* pthreads and mkdtemp() under -std=c11 */

#include <deeplearning.h>

#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------------ */
/* Checks                                                                    */
/* ------------------------------------------------------------------------ */

/* Counted from every thread. */
static atomic_int checks_passed;
static atomic_int checks_failed;

/* Counts one check; a failure prints where, what, and this thread's dl_last_error(). */
static bool check(bool ok, const char *file, int line, const char *what) {
    if (ok) {
        atomic_fetch_add(&checks_passed, 1);
        return true;
    }
    atomic_fetch_add(&checks_failed, 1);
    fprintf(stderr, "%s:%d: FAILED: %s\n    dl_last_error(): \"%s\"\n", file, line, what, dl_last_error());
    return false;
}

/*
 * Checks that a call returned `want` (or `also`), and that dl_last_error() agrees with
 * the status: "" after DL_OK, a message after a failure. Must run straight after the
 * call, before any other library call on this thread replaces the message.
 */
static bool check_status(int got, int want, int also, const char *file, int line, const char *call) {
    char message[1024];
    snprintf(message, sizeof message, "%s", dl_last_error());
    bool status_ok = got == want || got == also;
    bool message_ok = (got == DL_OK) == (message[0] == '\0');
    if (status_ok && message_ok) {
        atomic_fetch_add(&checks_passed, 1);
        return true;
    }
    atomic_fetch_add(&checks_failed, 1);
    fprintf(stderr, "%s:%d: FAILED: %s\n    returned %d (%s), expected %d (%s)%s\n    dl_last_error(): \"%s\"\n",
            file, line, call, got, dl_status_string(got), want, dl_status_string(want),
            status_ok ? (got == DL_OK ? "; the message should be empty after success"
                                      : "; the message should not be empty after a failure")
                      : "",
            message);
    return false;
}

/* Checks that this thread's dl_last_error() contains `needle`. */
static bool check_message(const char *needle, const char *file, int line) {
    const char *message = dl_last_error();
    if (message != NULL && strstr(message, needle) != NULL) {
        atomic_fetch_add(&checks_passed, 1);
        return true;
    }
    atomic_fetch_add(&checks_failed, 1);
    fprintf(stderr, "%s:%d: FAILED: dl_last_error() should contain \"%s\"\n    dl_last_error(): \"%s\"\n",
            file, line, needle, message ? message : "(NULL)");
    return false;
}

#define CHECK(cond) check((cond), __FILE__, __LINE__, #cond)
#define CHECK_STATUS(call, want) check_status((call), (want), (want), __FILE__, __LINE__, #call)
#define CHECK_STATUS_EITHER(call, want, also) check_status((call), (want), (also), __FILE__, __LINE__, #call)
#define CHECK_OK(call) CHECK_STATUS(call, DL_OK)
#define CHECK_MESSAGE_HAS(needle) check_message((needle), __FILE__, __LINE__)

static void section(const char *name) { printf("-- %s\n", name); }

/* ------------------------------------------------------------------------ */
/* Data and helpers                                                          */
/* ------------------------------------------------------------------------ */

/* XOR: 4 samples of 2 inputs, 2 classes. */
static const float xor_x[8] = {0, 0, 0, 1, 1, 0, 1, 1};
static const int32_t xor_labels[4] = {0, 1, 1, 0};
static const float xor_onehot[8] = {1, 0, 0, 1, 0, 1, 1, 0};
enum { XOR_COUNT = 4, XOR_IN = 2, XOR_OUT = 2, XOR_TENSOR0 = 16 /* layers.0.weight: (8, 2) */ };

/* A pointer that the library never handed out, and the value OUT handles start with. */
static int foreign_object;
static int sentinel_object;
#define FOREIGN_MODEL ((dl_model *)(void *)&foreign_object)
#define SENTINEL_MODEL ((dl_model *)(void *)&sentinel_object)
static const char sentinel_string[] = "sentinel";

static char xor_spec[4096], mnist_spec[4096], regression_spec[4096], missing_spec[4096];
static const char *specs_dir;
static const char *not_json_file;
static char scratch_dir[4096]; /* a new folder for checkpoints, made by mkdtemp() */

/* Names of the files the driver may write in scratch_dir, all removed at the end. */
static const char *const scratch_files[] = {"impossible.json", "xor.h5", "truncated.h5", "empty.h5", "never_written.h5",
                                            "thread0.h5", "thread1.h5", "thread2.h5", "thread3.h5"};

static void scratch_path(char *path, size_t size, const char *name) {
    snprintf(path, size, "%s/%s", scratch_dir, name);
}

/* A small deterministic generator, one state per caller (so threads do not share one). */
static float uniform(uint64_t *state) {
    *state = *state * 6364136223846793005u + 1442695040888963407u;
    return (float)((double)(*state >> 40) / 16777216.0); /* [0, 1) */
}

static dl_model *load(const char *path) {
    dl_model *model = NULL;
    if (!CHECK_OK(dl_model_from_spec(path, &model))) return NULL;
    CHECK(model != NULL);
    return model;
}

/* Frees a model and checks that its handle is dead afterwards. LeakSanitizer and valgrind
 * cannot see a model that is never freed: the library's table of live handles still
 * points to it. Main thread only, where no other thread can take over the address. */
static void release(dl_model *model) {
    if (model == NULL) return;
    dl_model_free(model);
    size_t size = 0;
    CHECK_STATUS(dl_model_input_size(model, &size), DL_INVALID_ARGUMENT);
}

/* Number of elements of parameter tensor `index`, or 0 on failure. */
static size_t tensor_size(const dl_model *model, size_t index) {
    size_t dims[4], ndim = 0, n = 1;
    if (!CHECK_OK(dl_model_param_shape(model, index, dims, 4, &ndim))) return 0;
    for (size_t d = 0; d < ndim; d++) n *= dims[d];
    return n;
}

/* Every parameter tensor of `model` concatenated in index order, or NULL; the caller
 * frees it. *count receives the number of floats. */
static float *get_all_params(const dl_model *model, size_t *count) {
    size_t total = 0, tensors = 0, offset = 0;
    if (!CHECK_OK(dl_model_param_count(model, &total)) || !CHECK_OK(dl_model_num_params(model, &tensors))) return NULL;
    float *values = malloc(total * sizeof *values);
    if (!CHECK(values != NULL)) return NULL;
    for (size_t i = 0; i < tensors; i++) {
        size_t n = tensor_size(model, i);
        if (!CHECK(n > 0 && offset + n <= total) || !CHECK_OK(dl_model_get_param(model, i, values + offset, n))) {
            free(values);
            return NULL;
        }
        offset += n;
    }
    CHECK(offset == total);
    *count = total;
    return values;
}

/* Whether `model`'s parameters are bit for bit `expected` (count floats). */
static bool params_equal(const dl_model *model, const float *expected, size_t count) {
    size_t n = 0;
    float *now = get_all_params(model, &n);
    bool same = now != NULL && expected != NULL && n == count && memcmp(now, expected, count * sizeof *now) == 0;
    free(now);
    return same;
}

static bool models_equal(const dl_model *a, const dl_model *b) {
    size_t n = 0;
    float *values = get_all_params(a, &n);
    bool same = values != NULL && params_equal(b, values, n);
    free(values);
    return same;
}

static uint64_t step_count(const dl_model *model) {
    uint64_t steps = UINT64_MAX;
    CHECK_OK(dl_model_step_count(model, &steps));
    return steps;
}

static size_t argmax(const float *row, size_t n) {
    size_t best = 0;
    for (size_t i = 1; i < n; i++)
        if (row[i] > row[best]) best = i;
    return best;
}

/* Mean cross-entropy of `count` rows of logits against labels, in double. */
static double cross_entropy(const float *logits, const int32_t *labels, size_t count, size_t classes) {
    double sum = 0;
    for (size_t i = 0; i < count; i++) {
        const float *z = logits + i * classes;
        double top = z[argmax(z, classes)], exp_sum = 0;
        for (size_t c = 0; c < classes; c++) exp_sum += exp((double)z[c] - top);
        sum += top + log(exp_sum) - z[labels[i]];
    }
    return sum / (double)count;
}

/* ------------------------------------------------------------------------ */
/* Version, status strings, messages                                         */
/* ------------------------------------------------------------------------ */

static void test_version_and_status(void) {
    section("version and status strings");
    CHECK(dl_last_error() != NULL && dl_last_error()[0] == '\0'); /* nothing has failed yet */

    CHECK(dl_version() != NULL && strcmp(dl_version(), DL_VERSION_STRING) == 0);
    CHECK(dl_version_number() == DL_VERSION_NUMBER);
    int major = -1, minor = -1, patch = -1;
    CHECK(sscanf(dl_version(), "%d.%d.%d", &major, &minor, &patch) == 3);
    CHECK(major == DL_VERSION_MAJOR && minor == DL_VERSION_MINOR && patch == DL_VERSION_PATCH);
    CHECK(major * 10000 + minor * 100 + patch == dl_version_number());

    /* The codes are published values. */
    static const int codes[] = {DL_OK, DL_ERROR, DL_INVALID_ARGUMENT, DL_SPEC_ERROR, DL_IO_ERROR,
                                DL_FORMAT_ERROR, DL_NOMEM, DL_NUMERIC, DL_UNSUPPORTED, DL_BUSY};
    for (int i = 0; i < 10; i++) CHECK(codes[i] == i);
    for (int code = 0; code <= 9; code++) {
        const char *text = dl_status_string(code);
        CHECK(text != NULL && text[0] != '\0' && strcmp(text, "unknown status") != 0);
        for (int other = 0; other < code; other++) CHECK(text != NULL && strcmp(text, dl_status_string(other)) != 0);
    }
    CHECK(strcmp(dl_status_string(DL_INVALID_ARGUMENT), "invalid argument") == 0);
    static const int unknown[] = {10, -1, 100, INT_MAX, INT_MIN};
    for (size_t i = 0; i < sizeof unknown / sizeof unknown[0]; i++)
        CHECK(strcmp(dl_status_string(unknown[i]), "unknown status") == 0);
}

/* ------------------------------------------------------------------------ */
/* Building models                                                           */
/* ------------------------------------------------------------------------ */

static void test_model_creation(void) {
    section("dl_model_from_spec, dl_model_from_json, dl_model_free");
    dl_model *m = SENTINEL_MODEL;

    CHECK_STATUS(dl_model_from_spec(NULL, &m), DL_INVALID_ARGUMENT);
    CHECK(m == SENTINEL_MODEL);
    CHECK_STATUS(dl_model_from_spec(xor_spec, NULL), DL_INVALID_ARGUMENT);
    CHECK_STATUS(dl_model_from_spec(missing_spec, &m), DL_IO_ERROR);
    CHECK_MESSAGE_HAS(missing_spec);
    CHECK(m == SENTINEL_MODEL);
    CHECK_STATUS(dl_model_from_spec("", &m), DL_IO_ERROR);
    CHECK_STATUS(dl_model_from_spec(specs_dir, &m), DL_IO_ERROR); /* a folder opens but cannot be read */
    CHECK(m == SENTINEL_MODEL);
    CHECK_STATUS(dl_model_from_spec(not_json_file, &m), DL_SPEC_ERROR);
    CHECK_MESSAGE_HAS(not_json_file);
    CHECK(m == SENTINEL_MODEL);

    CHECK_STATUS(dl_model_from_json(NULL, &m), DL_INVALID_ARGUMENT);
    CHECK_STATUS(dl_model_from_json("{}", NULL), DL_INVALID_ARGUMENT);
    CHECK_STATUS(dl_model_from_json("{\"format_version\": 1, \"layers\": [", &m), DL_SPEC_ERROR);
    CHECK_MESSAGE_HAS("<string>");
    CHECK_STATUS(dl_model_from_json("", &m), DL_SPEC_ERROR);
    CHECK_MESSAGE_HAS("<string>");
    CHECK_STATUS(dl_model_from_json("[1, 2]", &m), DL_SPEC_ERROR);
    CHECK_MESSAGE_HAS("<string>");
    CHECK_STATUS(dl_model_from_json("{\"input\": {\"size\": 2}, \"layers\": [{\"type\": \"linear\", \"units\": -3}],"
                                    " \"loss\": \"mse\", \"optimizer\": {\"type\": \"sgd\", \"lr\": 0.1}}", &m),
                 DL_SPEC_ERROR);
    CHECK_MESSAGE_HAS("<string>");
    CHECK_MESSAGE_HAS("layers[0].units");
    CHECK(m == SENTINEL_MODEL);
    /* Valid JSON, impossible model (cross-entropy over 1 output): the message still names
     * the source, as the header promises for every DL_SPEC_ERROR. */
    static const char impossible[] = "{\"input\": {\"size\": 2}, \"layers\": [{\"type\": \"linear\", \"units\": 1}],"
                                     " \"loss\": \"cross_entropy\", \"optimizer\": {\"type\": \"sgd\", \"lr\": 0.1}}";
    CHECK_STATUS(dl_model_from_json(impossible, &m), DL_SPEC_ERROR);
    CHECK_MESSAGE_HAS("<string>");
    char path[4200];
    scratch_path(path, sizeof path, "impossible.json");
    FILE *file = fopen(path, "w");
    bool written = file != NULL && fputs(impossible, file) >= 0;
    if (file != NULL) written = fclose(file) == 0 && written;
    if (CHECK(written)) {
        CHECK_STATUS(dl_model_from_spec(path, &m), DL_SPEC_ERROR);
        CHECK_MESSAGE_HAS(path);
    }
    CHECK(m == SENTINEL_MODEL);
    /* 784 * (2^31 - 1) weights: beyond the library's limits, refused before allocating. */
    CHECK_STATUS(dl_model_from_json("{\"input\": {\"size\": 784}, \"layers\": [{\"type\": \"linear\", \"units\": 2147483647}],"
                                    " \"loss\": \"mse\", \"optimizer\": {\"type\": \"sgd\", \"lr\": 0.1}}", &m),
                 DL_NOMEM);
    CHECK(m == SENTINEL_MODEL);

    /* A model rebuilt from its own spec JSON is the same model (weights drawn from the seed). */
    dl_model *a = load(xor_spec), *b = NULL;
    const char *json = NULL;
    if (a != NULL && CHECK_OK(dl_model_spec_json(a, &json)) && CHECK_OK(dl_model_from_json(json, &b))) {
        CHECK(b != NULL && b != a);
        CHECK(models_equal(a, b));
    }
    release(b);
    release(a);
    dl_model_free(NULL); /* a no-op */
}

/* ------------------------------------------------------------------------ */
/* Handles that are not live models                                          */
/* ------------------------------------------------------------------------ */

/* Every function that takes a model refuses `bad` with DL_INVALID_ARGUMENT and leaves its
 * OUT parameters alone. The other arguments are valid for specs/xor.json. */
static void check_bad_handle(dl_model *bad) {
    dl_model *copy = SENTINEL_MODEL;
    double loss = 7, accuracy = 7, lr = 7, rel = 7, per_param[4] = {7, 7, 7, 7};
    float out[8] = {7, 7, 7, 7, 7, 7, 7, 7}, param[XOR_TENSOR0] = {0};
    int32_t classes[4] = {7, 7, 7, 7};
    size_t size = 7, dims[4] = {7, 7, 7, 7}, ndim = 7;
    const char *text = sentinel_string;
    uint64_t steps = 7;

    CHECK_STATUS(dl_model_clone(bad, &copy), DL_INVALID_ARGUMENT);
    CHECK(copy == SENTINEL_MODEL);
    char path[4200];
    scratch_path(path, sizeof path, "never_written.h5");
    CHECK_STATUS(dl_model_save(bad, path), DL_INVALID_ARGUMENT);
    CHECK_STATUS(dl_train_step(bad, xor_x, XOR_COUNT, xor_labels, NULL, &loss), DL_INVALID_ARGUMENT);
    CHECK_STATUS(dl_predict(bad, xor_x, XOR_COUNT, out, 8), DL_INVALID_ARGUMENT);
    CHECK(out[0] == 7 && out[7] == 7);
    CHECK_STATUS(dl_predict_classes(bad, xor_x, XOR_COUNT, classes, 4), DL_INVALID_ARGUMENT);
    CHECK(classes[0] == 7 && classes[3] == 7);
    CHECK_STATUS(dl_evaluate(bad, xor_x, XOR_COUNT, xor_labels, NULL, &loss, &accuracy), DL_INVALID_ARGUMENT);
    CHECK(loss == 7 && accuracy == 7);
    CHECK_STATUS(dl_gradcheck(bad, xor_x, XOR_COUNT, xor_labels, NULL, 0, &rel, per_param, 4), DL_INVALID_ARGUMENT);
    CHECK(rel == 7 && per_param[0] == 7);
    CHECK_STATUS(dl_model_get_learning_rate(bad, &lr), DL_INVALID_ARGUMENT);
    CHECK(lr == 7);
    CHECK_STATUS(dl_model_set_learning_rate(bad, 0.5), DL_INVALID_ARGUMENT);
    CHECK_STATUS(dl_model_input_size(bad, &size), DL_INVALID_ARGUMENT);
    CHECK_STATUS(dl_model_output_size(bad, &size), DL_INVALID_ARGUMENT);
    CHECK_STATUS(dl_model_param_count(bad, &size), DL_INVALID_ARGUMENT);
    CHECK_STATUS(dl_model_num_params(bad, &size), DL_INVALID_ARGUMENT);
    CHECK_STATUS(dl_model_num_layers(bad, &size), DL_INVALID_ARGUMENT);
    CHECK(size == 7);
    CHECK_STATUS(dl_model_param_name(bad, 0, &text), DL_INVALID_ARGUMENT);
    CHECK_STATUS(dl_model_layer_type(bad, 0, &text), DL_INVALID_ARGUMENT);
    CHECK_STATUS(dl_model_spec_json(bad, &text), DL_INVALID_ARGUMENT);
    CHECK(text == sentinel_string);
    CHECK_STATUS(dl_model_param_shape(bad, 0, dims, 4, &ndim), DL_INVALID_ARGUMENT);
    CHECK(dims[0] == 7 && ndim == 7);
    CHECK_STATUS(dl_model_get_param(bad, 0, param, XOR_TENSOR0), DL_INVALID_ARGUMENT);
    CHECK(param[0] == 0);
    CHECK_STATUS(dl_model_set_param(bad, 0, param, XOR_TENSOR0), DL_INVALID_ARGUMENT);
    CHECK_STATUS(dl_model_step_count(bad, &steps), DL_INVALID_ARGUMENT);
    CHECK(steps == 7);
}

static void test_bad_handles(void) {
    section("NULL, freed and foreign handles");
    check_bad_handle(NULL);
    CHECK_MESSAGE_HAS("NULL");
    check_bad_handle(FOREIGN_MODEL);

    dl_model *freed = load(xor_spec);
    if (freed == NULL) return;
    dl_model_free(freed);
    check_bad_handle(freed); /* use after free: no model is created in between */
    dl_model_free(freed);    /* double free: ignored */
    dl_model_free(FOREIGN_MODEL);

    /* The library still works, and a success clears the last failure's message. */
    size_t size = 0;
    CHECK_STATUS(dl_model_input_size(freed, &size), DL_INVALID_ARGUMENT);
    dl_model *m = load(xor_spec);
    CHECK(strcmp(dl_last_error(), "") == 0);
    CHECK_OK(dl_model_input_size(m, &size));
    CHECK(size == XOR_IN);
    release(m);
}

/* ------------------------------------------------------------------------ */
/* Introspection (specs/mnist_mlp.json)                                      */
/* ------------------------------------------------------------------------ */

static void test_introspection(void) {
    section("introspection of specs/mnist_mlp.json");
    dl_model *m = load(mnist_spec);
    if (m == NULL) return;

    size_t size = 0;
    CHECK_OK(dl_model_input_size(m, &size));
    CHECK(size == 784);
    CHECK_OK(dl_model_output_size(m, &size));
    CHECK(size == 10);
    CHECK_OK(dl_model_param_count(m, &size));
    CHECK(size == 101770);
    CHECK_OK(dl_model_num_params(m, &size));
    CHECK(size == 4);
    CHECK_OK(dl_model_num_layers(m, &size));
    CHECK(size == 3);
    CHECK(step_count(m) == 0);

    static const char *const names[4] = {"layers.0.weight", "layers.0.bias", "layers.2.weight", "layers.2.bias"};
    static const size_t shapes[4][2] = {{128, 784}, {128, 0}, {10, 128}, {10, 0}};
    static const size_t ndims[4] = {2, 1, 2, 1};
    for (size_t i = 0; i < 4; i++) {
        const char *name = NULL;
        CHECK_OK(dl_model_param_name(m, i, &name));
        CHECK(name != NULL && strcmp(name, names[i]) == 0);
        size_t dims[4] = {0}, ndim = 0;
        CHECK_OK(dl_model_param_shape(m, i, dims, 4, &ndim));
        CHECK(ndim == ndims[i] && dims[0] == shapes[i][0] && (ndim == 1 || dims[1] == shapes[i][1]));
        /* Exactly ndim dimensions are enough; one fewer is refused, and nothing is written. */
        size_t few[4] = {7, 7, 7, 7}, few_ndim = 7;
        CHECK_OK(dl_model_param_shape(m, i, few, ndims[i], &few_ndim));
        CHECK_STATUS(dl_model_param_shape(m, i, few, ndims[i] - 1, &few_ndim), DL_INVALID_ARGUMENT);
        CHECK(few_ndim == ndims[i]);
    }
    static const char *const types[3] = {"linear", "relu", "linear"};
    for (size_t i = 0; i < 3; i++) {
        const char *type = NULL;
        CHECK_OK(dl_model_layer_type(m, i, &type));
        CHECK(type != NULL && strcmp(type, types[i]) == 0);
    }
    const char *json = NULL;
    CHECK_OK(dl_model_spec_json(m, &json));
    CHECK(json != NULL && strstr(json, "mnist_mlp") != NULL);

    /* Strings handed out stay valid and unchanged until the model is freed. */
    const char *first = NULL, *again = NULL;
    CHECK_OK(dl_model_param_name(m, 0, &first));
    CHECK_OK(dl_model_param_name(m, 3, &again));
    CHECK_OK(dl_model_layer_type(m, 1, &again));
    CHECK(strcmp(first, "layers.0.weight") == 0);

    /* NULL OUT pointers. */
    CHECK_STATUS(dl_model_input_size(m, NULL), DL_INVALID_ARGUMENT);
    CHECK_MESSAGE_HAS("NULL");
    CHECK_STATUS(dl_model_output_size(m, NULL), DL_INVALID_ARGUMENT);
    CHECK_STATUS(dl_model_param_count(m, NULL), DL_INVALID_ARGUMENT);
    CHECK_STATUS(dl_model_num_params(m, NULL), DL_INVALID_ARGUMENT);
    CHECK_STATUS(dl_model_num_layers(m, NULL), DL_INVALID_ARGUMENT);
    CHECK_STATUS(dl_model_step_count(m, NULL), DL_INVALID_ARGUMENT);
    CHECK_STATUS(dl_model_spec_json(m, NULL), DL_INVALID_ARGUMENT);
    CHECK_STATUS(dl_model_param_name(m, 0, NULL), DL_INVALID_ARGUMENT);
    CHECK_STATUS(dl_model_layer_type(m, 0, NULL), DL_INVALID_ARGUMENT);
    size_t dims[4] = {7, 7, 7, 7}, ndim = 7;
    CHECK_STATUS(dl_model_param_shape(m, 0, NULL, 4, &ndim), DL_INVALID_ARGUMENT);
    CHECK_STATUS(dl_model_param_shape(m, 0, dims, 4, NULL), DL_INVALID_ARGUMENT);
    CHECK(dims[0] == 7 && ndim == 7);
    CHECK_STATUS(dl_model_param_shape(m, 0, dims, 0, &ndim), DL_INVALID_ARGUMENT);
    CHECK(dims[0] == 7 && ndim == 7);

    /* Indices out of range. */
    const char *text = sentinel_string;
    static const size_t bad_index[] = {4, SIZE_MAX};
    for (size_t k = 0; k < 2; k++) {
        CHECK_STATUS(dl_model_param_name(m, bad_index[k], &text), DL_INVALID_ARGUMENT);
        CHECK_STATUS(dl_model_param_shape(m, bad_index[k], dims, 4, &ndim), DL_INVALID_ARGUMENT);
        float one = 0;
        CHECK_STATUS(dl_model_get_param(m, bad_index[k], &one, 1), DL_INVALID_ARGUMENT);
        CHECK_STATUS(dl_model_set_param(m, bad_index[k], &one, 1), DL_INVALID_ARGUMENT);
    }
    CHECK_STATUS(dl_model_layer_type(m, 3, &text), DL_INVALID_ARGUMENT);
    CHECK_STATUS(dl_model_layer_type(m, SIZE_MAX, &text), DL_INVALID_ARGUMENT);
    CHECK(text == sentinel_string);
    CHECK(dims[0] == 7 && ndim == 7);

    release(m);
}

/* ------------------------------------------------------------------------ */
/* Parameters by index                                                       */
/* ------------------------------------------------------------------------ */

static void test_params(void) {
    section("dl_model_get_param, dl_model_set_param");
    dl_model *m = load(xor_spec);
    if (m == NULL) return;
    size_t n = tensor_size(m, 0);
    CHECK(n == XOR_TENSOR0);

    float w[XOR_TENSOR0], changed[XOR_TENSOR0], back[XOR_TENSOR0];
    CHECK_OK(dl_model_get_param(m, 0, w, XOR_TENSOR0));
    for (size_t i = 0; i < XOR_TENSOR0; i++) changed[i] = w[i] + 0.25f * (float)i;
    CHECK_OK(dl_model_set_param(m, 0, changed, XOR_TENSOR0));
    CHECK_OK(dl_model_get_param(m, 0, back, XOR_TENSOR0));
    CHECK(memcmp(back, changed, sizeof back) == 0);
    CHECK_OK(dl_model_set_param(m, 0, w, XOR_TENSOR0));

    size_t count = 0;
    float *before = get_all_params(m, &count);

    /* Wrong lengths, NULL buffers: refused, nothing written either way. */
    for (size_t i = 0; i < XOR_TENSOR0; i++) back[i] = 7;
    static const size_t bad_len[] = {XOR_TENSOR0 - 1, XOR_TENSOR0 + 1, 0, SIZE_MAX};
    for (size_t k = 0; k < 4; k++) {
        CHECK_STATUS(dl_model_get_param(m, 0, back, bad_len[k]), DL_INVALID_ARGUMENT);
        CHECK_STATUS(dl_model_set_param(m, 0, changed, bad_len[k]), DL_INVALID_ARGUMENT);
    }
    CHECK(back[0] == 7 && back[XOR_TENSOR0 - 1] == 7);
    CHECK_STATUS(dl_model_get_param(m, 0, NULL, XOR_TENSOR0), DL_INVALID_ARGUMENT);
    CHECK_STATUS(dl_model_set_param(m, 0, NULL, XOR_TENSOR0), DL_INVALID_ARGUMENT);

    /* NaN or infinity anywhere: DL_NUMERIC, and the parameter is unchanged. */
    changed[XOR_TENSOR0 - 1] = NAN;
    CHECK_STATUS(dl_model_set_param(m, 0, changed, XOR_TENSOR0), DL_NUMERIC);
    changed[XOR_TENSOR0 - 1] = 0;
    changed[0] = INFINITY;
    CHECK_STATUS(dl_model_set_param(m, 0, changed, XOR_TENSOR0), DL_NUMERIC);
    changed[0] = -INFINITY;
    CHECK_STATUS(dl_model_set_param(m, 0, changed, XOR_TENSOR0), DL_NUMERIC);
    CHECK(params_equal(m, before, count));
    free(before);

    /* Finite but huge output weights overflow the logits: the loss is not finite, so the
     * step is refused with DL_NUMERIC and skipped. */
    float huge[XOR_TENSOR0];
    for (size_t i = 0; i < XOR_TENSOR0; i++) huge[i] = 3e38f;
    CHECK_OK(dl_model_set_param(m, 2, huge, XOR_TENSOR0)); /* layers.2.weight: (2, 8) */
    before = get_all_params(m, &count);
    double loss = 7;
    CHECK_STATUS(dl_train_step(m, xor_x, XOR_COUNT, xor_labels, NULL, &loss), DL_NUMERIC);
    CHECK(loss == 7);
    CHECK(step_count(m) == 0);
    CHECK(params_equal(m, before, count));
    free(before);
    release(m);
}

/* ------------------------------------------------------------------------ */
/* Error paths of training and inference (specs/xor.json)                    */
/* ------------------------------------------------------------------------ */

static void test_train_step_errors(dl_model *m) {
    section("dl_train_step error paths");
    size_t count = 0;
    float *before = get_all_params(m, &count);
    uint64_t steps = step_count(m);
    double loss = 7;
    float x[8], targets[8];
    int32_t labels[4];
    memcpy(x, xor_x, sizeof x);
    memcpy(targets, xor_onehot, sizeof targets);
    memcpy(labels, xor_labels, sizeof labels);

    CHECK_STATUS(dl_train_step(m, NULL, XOR_COUNT, labels, NULL, &loss), DL_INVALID_ARGUMENT);
    CHECK_STATUS(dl_train_step(m, x, 0, labels, NULL, &loss), DL_INVALID_ARGUMENT);
    CHECK_STATUS_EITHER(dl_train_step(m, x, SIZE_MAX, labels, NULL, &loss), DL_INVALID_ARGUMENT, DL_NOMEM);
    CHECK_STATUS_EITHER(dl_train_step(m, x, SIZE_MAX / 2, labels, NULL, &loss), DL_INVALID_ARGUMENT, DL_NOMEM);
    CHECK_STATUS(dl_train_step(m, x, XOR_COUNT, NULL, NULL, &loss), DL_INVALID_ARGUMENT);
    CHECK_STATUS(dl_train_step(m, x, XOR_COUNT, labels, targets, &loss), DL_INVALID_ARGUMENT);

    labels[3] = -1;
    CHECK_STATUS(dl_train_step(m, x, XOR_COUNT, labels, NULL, &loss), DL_INVALID_ARGUMENT);
    labels[3] = XOR_OUT; /* == number of classes */
    CHECK_STATUS(dl_train_step(m, x, XOR_COUNT, labels, NULL, &loss), DL_INVALID_ARGUMENT);
    labels[3] = INT32_MAX;
    CHECK_STATUS(dl_train_step(m, x, XOR_COUNT, labels, NULL, &loss), DL_INVALID_ARGUMENT);
    labels[3] = xor_labels[3];

    x[5] = NAN;
    CHECK_STATUS(dl_train_step(m, x, XOR_COUNT, labels, NULL, &loss), DL_NUMERIC);
    CHECK_STATUS(dl_train_step(m, x, XOR_COUNT, NULL, targets, &loss), DL_NUMERIC);
    x[5] = INFINITY;
    CHECK_STATUS(dl_train_step(m, x, XOR_COUNT, labels, NULL, &loss), DL_NUMERIC);
    x[5] = xor_x[5];
    targets[6] = NAN;
    CHECK_STATUS(dl_train_step(m, x, XOR_COUNT, NULL, targets, &loss), DL_NUMERIC);
    targets[6] = -INFINITY;
    CHECK_STATUS(dl_train_step(m, x, XOR_COUNT, NULL, targets, &loss), DL_NUMERIC);

    CHECK(loss == 7);
    CHECK(step_count(m) == steps);
    CHECK(params_equal(m, before, count));
    free(before);
}

static void test_inference_errors(dl_model *m) {
    section("dl_predict, dl_predict_classes, dl_evaluate, dl_gradcheck error paths");
    size_t count = 0;
    float *before = get_all_params(m, &count);
    uint64_t steps = step_count(m);
    float x[8], targets[8], out[8];
    int32_t labels[4], classes[4];
    double loss = 7, accuracy = 7, rel = 7, per_param[4] = {7, 7, 7, 7};
    memcpy(x, xor_x, sizeof x);
    memcpy(targets, xor_onehot, sizeof targets);
    memcpy(labels, xor_labels, sizeof labels);
    for (int i = 0; i < 8; i++) out[i] = 7;
    for (int i = 0; i < 4; i++) classes[i] = 7;

    /* dl_predict */
    CHECK_STATUS(dl_predict(m, NULL, XOR_COUNT, out, 8), DL_INVALID_ARGUMENT);
    CHECK_STATUS(dl_predict(m, x, XOR_COUNT, NULL, 8), DL_INVALID_ARGUMENT);
    CHECK_STATUS(dl_predict(m, x, 0, out, 8), DL_INVALID_ARGUMENT);
    CHECK_STATUS(dl_predict(m, x, XOR_COUNT, out, 7), DL_INVALID_ARGUMENT); /* one short */
    CHECK_STATUS(dl_predict(m, x, XOR_COUNT, out, 0), DL_INVALID_ARGUMENT);
    CHECK_STATUS_EITHER(dl_predict(m, x, SIZE_MAX, out, 8), DL_INVALID_ARGUMENT, DL_NOMEM);
    CHECK_STATUS_EITHER(dl_predict(m, x, SIZE_MAX / 2, out, 8), DL_INVALID_ARGUMENT, DL_NOMEM);
    x[0] = NAN;
    CHECK_STATUS(dl_predict(m, x, XOR_COUNT, out, 8), DL_NUMERIC);
    x[0] = -INFINITY;
    CHECK_STATUS(dl_predict(m, x, XOR_COUNT, out, 8), DL_NUMERIC);
    x[0] = xor_x[0];
    CHECK(out[0] == 7 && out[7] == 7);

    /* dl_predict_classes */
    CHECK_STATUS(dl_predict_classes(m, NULL, XOR_COUNT, classes, 4), DL_INVALID_ARGUMENT);
    CHECK_STATUS(dl_predict_classes(m, x, XOR_COUNT, NULL, 4), DL_INVALID_ARGUMENT);
    CHECK_STATUS(dl_predict_classes(m, x, 0, classes, 4), DL_INVALID_ARGUMENT);
    CHECK_STATUS(dl_predict_classes(m, x, XOR_COUNT, classes, 3), DL_INVALID_ARGUMENT); /* one short */
    CHECK_STATUS_EITHER(dl_predict_classes(m, x, SIZE_MAX, classes, 4), DL_INVALID_ARGUMENT, DL_NOMEM);
    x[7] = INFINITY;
    CHECK_STATUS(dl_predict_classes(m, x, XOR_COUNT, classes, 4), DL_NUMERIC);
    x[7] = xor_x[7];
    CHECK(classes[0] == 7 && classes[3] == 7);

    /* dl_evaluate */
    CHECK_STATUS(dl_evaluate(m, NULL, XOR_COUNT, labels, NULL, &loss, &accuracy), DL_INVALID_ARGUMENT);
    CHECK_STATUS(dl_evaluate(m, x, 0, labels, NULL, &loss, &accuracy), DL_INVALID_ARGUMENT);
    CHECK_STATUS_EITHER(dl_evaluate(m, x, SIZE_MAX, labels, NULL, &loss, &accuracy), DL_INVALID_ARGUMENT, DL_NOMEM);
    CHECK_STATUS(dl_evaluate(m, x, XOR_COUNT, NULL, NULL, &loss, &accuracy), DL_INVALID_ARGUMENT);
    CHECK_STATUS(dl_evaluate(m, x, XOR_COUNT, labels, targets, &loss, &accuracy), DL_INVALID_ARGUMENT);
    labels[0] = -1;
    CHECK_STATUS(dl_evaluate(m, x, XOR_COUNT, labels, NULL, &loss, &accuracy), DL_INVALID_ARGUMENT);
    labels[0] = XOR_OUT;
    CHECK_STATUS(dl_evaluate(m, x, XOR_COUNT, labels, NULL, &loss, &accuracy), DL_INVALID_ARGUMENT);
    labels[0] = xor_labels[0];
    x[2] = NAN;
    CHECK_STATUS(dl_evaluate(m, x, XOR_COUNT, labels, NULL, &loss, &accuracy), DL_NUMERIC);
    x[2] = xor_x[2];
    targets[1] = INFINITY;
    CHECK_STATUS(dl_evaluate(m, x, XOR_COUNT, NULL, targets, &loss, &accuracy), DL_NUMERIC);
    targets[1] = NAN;
    CHECK_STATUS(dl_evaluate(m, x, XOR_COUNT, NULL, targets, &loss, &accuracy), DL_NUMERIC);
    targets[1] = xor_onehot[1];
    CHECK(loss == 7 && accuracy == 7);

    /* dl_gradcheck */
    CHECK_STATUS(dl_gradcheck(m, NULL, XOR_COUNT, labels, NULL, 0, &rel, per_param, 4), DL_INVALID_ARGUMENT);
    CHECK_STATUS(dl_gradcheck(m, x, 0, labels, NULL, 0, &rel, per_param, 4), DL_INVALID_ARGUMENT);
    CHECK_STATUS_EITHER(dl_gradcheck(m, x, SIZE_MAX, labels, NULL, 0, &rel, per_param, 4), DL_INVALID_ARGUMENT, DL_NOMEM);
    CHECK_STATUS(dl_gradcheck(m, x, XOR_COUNT, labels, NULL, 0, NULL, per_param, 4), DL_INVALID_ARGUMENT);
    CHECK_STATUS(dl_gradcheck(m, x, XOR_COUNT, labels, NULL, 0, &rel, per_param, 3), DL_INVALID_ARGUMENT); /* one short */
    CHECK_STATUS(dl_gradcheck(m, x, XOR_COUNT, NULL, NULL, 0, &rel, per_param, 4), DL_INVALID_ARGUMENT);
    CHECK_STATUS(dl_gradcheck(m, x, XOR_COUNT, labels, targets, 0, &rel, per_param, 4), DL_INVALID_ARGUMENT);
    labels[1] = -1;
    CHECK_STATUS(dl_gradcheck(m, x, XOR_COUNT, labels, NULL, 0, &rel, per_param, 4), DL_INVALID_ARGUMENT);
    labels[1] = XOR_OUT;
    CHECK_STATUS(dl_gradcheck(m, x, XOR_COUNT, labels, NULL, 0, &rel, per_param, 4), DL_INVALID_ARGUMENT);
    labels[1] = xor_labels[1];
    x[3] = NAN;
    CHECK_STATUS(dl_gradcheck(m, x, XOR_COUNT, labels, NULL, 0, &rel, per_param, 4), DL_NUMERIC);
    x[3] = xor_x[3];
    targets[3] = -INFINITY;
    CHECK_STATUS(dl_gradcheck(m, x, XOR_COUNT, NULL, targets, 0, &rel, per_param, 4), DL_NUMERIC);
    targets[3] = xor_onehot[3];
    CHECK(rel == 7 && per_param[0] == 7 && per_param[3] == 7);

    /* Capacities of SIZE_MAX are big enough by the header's rule, but the library reads
     * size_t as a signed Int and may refuse them: either answer, never a crash. */
    CHECK_STATUS_EITHER(dl_predict(m, x, XOR_COUNT, out, SIZE_MAX), DL_OK, DL_INVALID_ARGUMENT);
    CHECK_STATUS_EITHER(dl_predict_classes(m, x, XOR_COUNT, classes, SIZE_MAX), DL_OK, DL_INVALID_ARGUMENT);
    CHECK_STATUS_EITHER(dl_gradcheck(m, x, XOR_COUNT, labels, NULL, SIZE_MAX, &rel, per_param, SIZE_MAX),
                        DL_OK, DL_INVALID_ARGUMENT);
    size_t dims[4], ndim = 0;
    CHECK_STATUS_EITHER(dl_model_param_shape(m, 0, dims, SIZE_MAX, &ndim), DL_OK, DL_INVALID_ARGUMENT);

    /* dl_model_get_learning_rate / dl_model_set_learning_rate */
    double lr = 7;
    CHECK_STATUS(dl_model_get_learning_rate(m, NULL), DL_INVALID_ARGUMENT);
    CHECK_OK(dl_model_get_learning_rate(m, &lr));
    CHECK_STATUS(dl_model_set_learning_rate(m, NAN), DL_INVALID_ARGUMENT);
    CHECK_STATUS(dl_model_set_learning_rate(m, -0.1), DL_INVALID_ARGUMENT);
    CHECK_STATUS(dl_model_set_learning_rate(m, INFINITY), DL_INVALID_ARGUMENT);
    double now = -1;
    CHECK_OK(dl_model_get_learning_rate(m, &now));
    CHECK(now == lr);

    /* dl_model_clone */
    CHECK_STATUS(dl_model_clone(m, NULL), DL_INVALID_ARGUMENT);

    CHECK(step_count(m) == steps);
    CHECK(params_equal(m, before, count));
    free(before);
}

/* Failures in a later chunk (dl_predict works through 4096 samples at a time) leave
 * the OUT buffer untouched too, as every failure does. */
static void test_large_batch_errors(dl_model *m) {
    section("failures in a later chunk of a large batch");
    enum { N = 5000, BAD = 4500 };
    float *x = malloc(N * XOR_IN * sizeof *x), *out = malloc(N * XOR_OUT * sizeof *out);
    int32_t *labels = malloc(N * sizeof *labels), *classes = malloc(N * sizeof *classes);
    if (!CHECK(x && out && labels && classes)) goto done;
    for (size_t i = 0; i < N; i++) {
        memcpy(x + i * XOR_IN, xor_x + (i % XOR_COUNT) * XOR_IN, XOR_IN * sizeof *x);
        labels[i] = xor_labels[i % XOR_COUNT];
    }

    /* Works: the same loss and accuracy as the 4 distinct samples, chunk after chunk. */
    double loss4 = 0, acc4 = 0, loss = 0, accuracy = 0;
    CHECK_OK(dl_evaluate(m, xor_x, XOR_COUNT, xor_labels, NULL, &loss4, &acc4));
    CHECK_OK(dl_evaluate(m, x, N, labels, NULL, &loss, &accuracy));
    CHECK(fabs(loss - loss4) < 1e-5 && accuracy == acc4);
    CHECK_OK(dl_predict(m, x, N, out, N * XOR_OUT));
    float first[8];
    CHECK_OK(dl_predict(m, xor_x, XOR_COUNT, first, 8));
    bool same = true;
    for (size_t i = 0; i < N * XOR_OUT; i++) same = same && fabsf(out[i] - first[i % 8]) <= 1e-6f;
    CHECK(same);

    for (size_t i = 0; i < N * XOR_OUT; i++) out[i] = 7;
    for (size_t i = 0; i < N; i++) classes[i] = 7;
    x[BAD * XOR_IN] = NAN;
    CHECK_STATUS(dl_predict(m, x, N, out, N * XOR_OUT), DL_NUMERIC);
    size_t floats_written = 0, labels_written = 0;
    for (size_t i = 0; i < N * XOR_OUT; i++) floats_written += out[i] != 7;
    CHECK(floats_written == 0); /* "On failure, OUT parameters ... are left unchanged" */
    CHECK_STATUS(dl_predict_classes(m, x, N, classes, N), DL_NUMERIC);
    for (size_t i = 0; i < N; i++) labels_written += classes[i] != 7;
    CHECK(labels_written == 0);
    if (floats_written + labels_written > 0)
        printf("   NaN in sample %d of %d: the failed dl_predict wrote %zu of %d floats, dl_predict_classes %zu of %d labels\n",
               BAD, N, floats_written, N * XOR_OUT, labels_written, N);
    x[BAD * XOR_IN] = xor_x[(BAD % XOR_COUNT) * XOR_IN];

    labels[BAD] = XOR_OUT;
    loss = accuracy = 7;
    CHECK_STATUS(dl_evaluate(m, x, N, labels, NULL, &loss, &accuracy), DL_INVALID_ARGUMENT);
    CHECK(loss == 7 && accuracy == 7);
done:
    free(x);
    free(out);
    free(labels);
    free(classes);
}

/* ------------------------------------------------------------------------ */
/* Functional: MNIST-sized model                                             */
/* ------------------------------------------------------------------------ */

static void test_mnist_batch(void) {
    section("specs/mnist_mlp.json: one batch of random data");
    enum { B = 64, IN = 784, OUT = 10 };
    dl_model *m = load(mnist_spec);
    float *x = malloc(B * IN * sizeof *x), *out = malloc(B * OUT * sizeof *out);
    int32_t labels[B], classes[B];
    if (!CHECK(m && x && out)) goto done;
    uint64_t rng = 42;
    for (size_t i = 0; i < B * IN; i++) x[i] = uniform(&rng);
    for (size_t i = 0; i < B; i++) labels[i] = (int32_t)(uniform(&rng) * (float)OUT);

    double loss = -1, eval_loss = -1;
    CHECK_OK(dl_evaluate(m, x, B, labels, NULL, &eval_loss, NULL));
    CHECK_OK(dl_train_step(m, x, B, labels, NULL, &loss));
    CHECK(isfinite(loss) && loss > 0);
    CHECK(fabs(loss - eval_loss) < 1e-5 * fmax(1, eval_loss)); /* the loss before the update */
    CHECK(step_count(m) == 1);
    CHECK_OK(dl_train_step(m, x, B, labels, NULL, NULL)); /* loss may be NULL */
    CHECK(step_count(m) == 2);

    CHECK_OK(dl_predict(m, x, B, out, B * OUT));
    CHECK_OK(dl_predict_classes(m, x, B, classes, B));
    bool finite = true, argmax_ok = true;
    for (size_t i = 0; i < B * OUT; i++) finite = finite && isfinite(out[i]);
    for (size_t i = 0; i < B; i++) argmax_ok = argmax_ok && (size_t)classes[i] == argmax(out + i * OUT, OUT);
    CHECK(finite);
    CHECK(argmax_ok);
done:
    free(x);
    free(out);
    release(m);
}

/* ------------------------------------------------------------------------ */
/* Functional: XOR                                                           */
/* ------------------------------------------------------------------------ */

/* Trains `m` on the full XOR batch until dl_evaluate says 100% (at most 2000 steps);
 * checks the step counter and the reported loss on the way. Returns the steps taken. */
static int train_xor_to_100(dl_model *m) {
    double accuracy = 0, before = 0, loss = 0;
    uint64_t steps = step_count(m);
    bool counter_ok = true, loss_ok = true;
    int taken = 0;
    for (; taken < 2000; taken++) {
        if (!CHECK_OK(dl_evaluate(m, xor_x, XOR_COUNT, xor_labels, NULL, &before, &accuracy))) break;
        if (accuracy == 1.0) break;
        if (!CHECK_OK(dl_train_step(m, xor_x, XOR_COUNT, xor_labels, NULL, &loss))) break;
        loss_ok = loss_ok && fabs(loss - before) <= 1e-6 * fmax(1, before);
        counter_ok = counter_ok && step_count(m) == ++steps;
    }
    CHECK(counter_ok); /* +1 per step */
    CHECK(loss_ok);    /* dl_train_step's loss is the loss before the update */
    CHECK(accuracy == 1.0);
    printf("   xor: 100%% accuracy after %d steps\n", taken);
    return taken;
}

static void test_xor(dl_model *m) {
    section("specs/xor.json: train to 100%, predict against evaluate");
    train_xor_to_100(m);

    double loss = -1, accuracy = -1;
    float logits[XOR_COUNT * XOR_OUT];
    int32_t classes[XOR_COUNT];
    CHECK_OK(dl_evaluate(m, xor_x, XOR_COUNT, xor_labels, NULL, &loss, &accuracy));
    CHECK(accuracy == 1.0);
    CHECK_OK(dl_predict(m, xor_x, XOR_COUNT, logits, sizeof logits / sizeof logits[0]));
    CHECK_OK(dl_predict_classes(m, xor_x, XOR_COUNT, classes, XOR_COUNT));
    int correct = 0;
    bool argmax_ok = true;
    for (int i = 0; i < XOR_COUNT; i++) {
        correct += classes[i] == xor_labels[i];
        argmax_ok = argmax_ok && (size_t)classes[i] == argmax(logits + i * XOR_OUT, XOR_OUT);
    }
    CHECK(correct == XOR_COUNT);
    CHECK(argmax_ok);
    double reference = cross_entropy(logits, xor_labels, XOR_COUNT, XOR_OUT);
    CHECK(fabs(loss - reference) < 1e-5);
    printf("   xor: dl_evaluate loss %.9g, cross-entropy of dl_predict's logits %.9g\n", loss, reference);

    /* One-hot target rows give the same loss and accuracy as the labels; NULL OUTs are fine. */
    double t_loss = -1, t_accuracy = -1;
    CHECK_OK(dl_evaluate(m, xor_x, XOR_COUNT, NULL, xor_onehot, &t_loss, &t_accuracy));
    CHECK(fabs(t_loss - loss) < 1e-6 && t_accuracy == 1.0);
    CHECK_OK(dl_evaluate(m, xor_x, XOR_COUNT, xor_labels, NULL, NULL, NULL));

    /* Exactly count * output_size floats suffice; the rest of a bigger buffer is untouched. */
    float bigger[XOR_COUNT * XOR_OUT + 1];
    bigger[XOR_COUNT * XOR_OUT] = 7;
    CHECK_OK(dl_predict(m, xor_x, XOR_COUNT, bigger, XOR_COUNT * XOR_OUT + 1));
    CHECK(memcmp(bigger, logits, sizeof logits) == 0 && bigger[XOR_COUNT * XOR_OUT] == 7);

    /* Learning rate round trip. */
    double lr = 0;
    CHECK_OK(dl_model_get_learning_rate(m, &lr));
    CHECK(lr == 0.1); /* specs/xor.json */
    CHECK_OK(dl_model_set_learning_rate(m, 0.05));
    CHECK_OK(dl_model_get_learning_rate(m, &lr));
    CHECK(lr == 0.05);
    CHECK_OK(dl_model_set_learning_rate(m, 0));
    CHECK_OK(dl_model_get_learning_rate(m, &lr));
    CHECK(lr == 0);
    CHECK_OK(dl_model_set_learning_rate(m, 0.1));
}

static void test_gradcheck(void) {
    section("dl_gradcheck");
    dl_model *m = load(xor_spec);
    if (m == NULL) return;
    size_t count = 0, tensors = 0;
    float *before = get_all_params(m, &count);
    CHECK_OK(dl_model_num_params(m, &tensors));
    CHECK(tensors == 4);

    double rel = -1, per_param[5] = {-1, -1, -1, -1, -1};
    CHECK_OK(dl_gradcheck(m, xor_x, XOR_COUNT, xor_labels, NULL, 0, &rel, per_param, 4));
    CHECK(rel >= 0 && rel < 1e-6);
    double largest = 0;
    bool filled = true;
    for (size_t i = 0; i < 4; i++) {
        filled = filled && per_param[i] >= 0 && per_param[i] < 1e-6;
        largest = fmax(largest, per_param[i]);
    }
    CHECK(filled);
    CHECK(largest == rel);
    CHECK(per_param[4] == -1);
    printf("   xor: gradcheck max_rel_error %.3g (labels)\n", rel);

    rel = -1;
    CHECK_OK(dl_gradcheck(m, xor_x, XOR_COUNT, NULL, xor_onehot, 3, &rel, NULL, 0)); /* per_param may be NULL */
    CHECK(rel >= 0 && rel < 1e-6);
    printf("   xor: gradcheck max_rel_error %.3g (one-hot targets, 3 entries per tensor)\n", rel);

    /* max_entries larger than any tensor: every entry is checked, as with 0. */
    double all = -1;
    CHECK_OK(dl_gradcheck(m, xor_x, XOR_COUNT, xor_labels, NULL, 1000, &all, NULL, 0));
    CHECK(all >= 0 && all < 1e-6);

    CHECK(step_count(m) == 0);
    CHECK(params_equal(m, before, count)); /* the model itself is not changed */
    free(before);
    release(m);
}

/* The same network computing in float64 (spec "dtype"): the same promises hold. */
static void test_float64(void) {
    section("specs/xor.json with \"dtype\": \"float64\"");
    dl_model *f32 = load(xor_spec), *m = NULL;
    const char *json = NULL;
    char spec[8192];
    if (f32 == NULL || !CHECK_OK(dl_model_spec_json(f32, &json)) || !CHECK(json[0] == '{')) goto done;
    snprintf(spec, sizeof spec, "{\"dtype\": \"float64\", %s", json + 1);
    if (!CHECK_OK(dl_model_from_json(spec, &m))) goto done;

    train_xor_to_100(m);
    double loss = -1, accuracy = -1, rel = -1;
    float logits[8];
    CHECK_OK(dl_evaluate(m, xor_x, XOR_COUNT, xor_labels, NULL, &loss, &accuracy));
    CHECK(accuracy == 1.0);
    CHECK_OK(dl_predict(m, xor_x, XOR_COUNT, logits, 8));
    CHECK(fabs(loss - cross_entropy(logits, xor_labels, XOR_COUNT, XOR_OUT)) < 1e-5);
    CHECK_OK(dl_gradcheck(m, xor_x, XOR_COUNT, xor_labels, NULL, 0, &rel, NULL, 0));
    CHECK(rel >= 0 && rel < 1e-6);
    float w[XOR_TENSOR0];
    CHECK_OK(dl_model_get_param(m, 0, w, XOR_TENSOR0));
    CHECK_OK(dl_model_set_param(m, 0, w, XOR_TENSOR0));
done:
    release(m);
    release(f32);
}

/* Same spec, same training: the same bits. */
static void test_determinism(void) {
    section("determinism: the same spec trained the same way twice");
    dl_model *a = load(xor_spec), *b = load(xor_spec);
    if (a && b) {
        CHECK(models_equal(a, b));
        for (int i = 0; i < 50; i++) {
            CHECK_OK(dl_train_step(a, xor_x, XOR_COUNT, xor_labels, NULL, NULL));
            CHECK_OK(dl_train_step(b, xor_x, XOR_COUNT, xor_labels, NULL, NULL));
        }
        CHECK(models_equal(a, b));
        float pa[8], pb[8];
        CHECK_OK(dl_predict(a, xor_x, XOR_COUNT, pa, 8));
        CHECK_OK(dl_predict(b, xor_x, XOR_COUNT, pb, 8));
        CHECK(memcmp(pa, pb, sizeof pa) == 0);
    }
    release(a);
    release(b);
}

/* A clone predicts like the original, then goes its own way; it copies the optimizer
 * state too, so the same step on both gives the same bits. */
static void test_clone(dl_model *trained) {
    section("dl_model_clone");
    dl_model *copy = NULL;
    if (!CHECK_OK(dl_model_clone(trained, &copy)) || !CHECK(copy != NULL && copy != trained)) return;
    float p1[8], p2[8];
    CHECK_OK(dl_predict(trained, xor_x, XOR_COUNT, p1, 8));
    CHECK_OK(dl_predict(copy, xor_x, XOR_COUNT, p2, 8));
    CHECK(memcmp(p1, p2, sizeof p1) == 0);
    CHECK(models_equal(trained, copy));
    CHECK(step_count(copy) == step_count(trained));
    double lr1 = 0, lr2 = 1;
    CHECK_OK(dl_model_get_learning_rate(trained, &lr1));
    CHECK_OK(dl_model_get_learning_rate(copy, &lr2));
    CHECK(lr1 == lr2);
    const char *j1 = NULL, *j2 = NULL;
    CHECK_OK(dl_model_spec_json(trained, &j1));
    CHECK_OK(dl_model_spec_json(copy, &j2));
    CHECK(j1 && j2 && j1 != j2 && strcmp(j1, j2) == 0);

    size_t count = 0;
    float *original = get_all_params(trained, &count);
    uint64_t steps = step_count(trained);
    CHECK_OK(dl_train_step(copy, xor_x, XOR_COUNT, xor_labels, NULL, NULL));
    CHECK_OK(dl_model_set_learning_rate(copy, 0.01));
    CHECK(params_equal(trained, original, count)); /* training the clone leaves the original alone */
    CHECK(!params_equal(copy, original, count));
    CHECK(step_count(trained) == steps && step_count(copy) == steps + 1);
    CHECK_OK(dl_model_get_learning_rate(trained, &lr1));
    CHECK(lr1 == lr2);

    /* A fresh clone and the original take the same step: same parameters, momentum included. */
    dl_model *twin = NULL;
    if (CHECK_OK(dl_model_clone(trained, &twin))) {
        for (int i = 0; i < 3; i++) {
            CHECK_OK(dl_train_step(trained, xor_x, XOR_COUNT, xor_labels, NULL, NULL));
            CHECK_OK(dl_train_step(twin, xor_x, XOR_COUNT, xor_labels, NULL, NULL));
        }
        CHECK(models_equal(trained, twin));
    }
    release(twin);
    release(copy);
    free(original);
}

/* ------------------------------------------------------------------------ */
/* Checkpoints                                                               */
/* ------------------------------------------------------------------------ */

/* Writes the first `length` bytes of file `from` to file `to`; false on failure. */
static bool copy_prefix(const char *from, const char *to, long length) {
    FILE *in = fopen(from, "rb"), *out = fopen(to, "wb");
    bool ok = in != NULL && out != NULL;
    for (long i = 0; ok && i < length; i++) {
        int c = fgetc(in);
        ok = c != EOF && fputc(c, out) != EOF;
    }
    if (in != NULL) fclose(in);
    if (out != NULL) ok = fclose(out) == 0 && ok;
    return ok;
}

static long file_size(const char *path) {
    FILE *f = fopen(path, "rb");
    long size = f != NULL && fseek(f, 0, SEEK_END) == 0 ? ftell(f) : -1;
    if (f != NULL) fclose(f);
    return size;
}

/* A saved and loaded model is the same model and resumes training exactly. */
static void test_checkpoints(dl_model *trained) {
    section("dl_model_save, dl_model_load");
    char path[4200], other[4200];
    scratch_path(path, sizeof path, "xor.h5");
    CHECK_OK(dl_model_save(trained, path));
    CHECK_OK(dl_model_save(trained, path)); /* replaces the file */

    dl_model *loaded = SENTINEL_MODEL;
    if (!CHECK_OK(dl_model_load(path, &loaded)) || !CHECK(loaded != NULL && loaded != SENTINEL_MODEL)) return;
    CHECK(models_equal(trained, loaded));
    CHECK(step_count(loaded) == step_count(trained));
    double lr1 = 0, lr2 = 1;
    CHECK_OK(dl_model_get_learning_rate(trained, &lr1));
    CHECK_OK(dl_model_get_learning_rate(loaded, &lr2));
    CHECK(lr1 == lr2);
    const char *j1 = NULL, *j2 = NULL;
    CHECK_OK(dl_model_spec_json(trained, &j1));
    CHECK_OK(dl_model_spec_json(loaded, &j2));
    CHECK(j1 && j2 && strcmp(j1, j2) == 0);
    float p1[8], p2[8];
    CHECK_OK(dl_predict(trained, xor_x, XOR_COUNT, p1, 8));
    CHECK_OK(dl_predict(loaded, xor_x, XOR_COUNT, p2, 8));
    CHECK(memcmp(p1, p2, sizeof p1) == 0);
    /* Training resumes as if it had never stopped (momentum included). */
    dl_model *twin = NULL;
    if (CHECK_OK(dl_model_clone(trained, &twin))) {
        for (int i = 0; i < 3; i++) {
            CHECK_OK(dl_train_step(twin, xor_x, XOR_COUNT, xor_labels, NULL, NULL));
            CHECK_OK(dl_train_step(loaded, xor_x, XOR_COUNT, xor_labels, NULL, NULL));
        }
        CHECK(models_equal(twin, loaded));
    }
    release(twin);
    release(loaded);

    /* dl_model_save errors. */
    CHECK_STATUS(dl_model_save(trained, NULL), DL_INVALID_ARGUMENT);
    snprintf(other, sizeof other, "%s/no/such/folder/x.h5", scratch_dir);
    CHECK_STATUS(dl_model_save(trained, other), DL_IO_ERROR);
    CHECK_STATUS(dl_model_save(trained, scratch_dir), DL_IO_ERROR); /* a folder */
    CHECK_OK(dl_model_load(path, &loaded)); /* the failures left the checkpoint alone */
    release(loaded);

    /* dl_model_load errors: OUT untouched. */
    loaded = SENTINEL_MODEL;
    CHECK_STATUS(dl_model_load(NULL, &loaded), DL_INVALID_ARGUMENT);
    CHECK_STATUS(dl_model_load(path, NULL), DL_INVALID_ARGUMENT);
    scratch_path(other, sizeof other, "missing.h5");
    CHECK_STATUS(dl_model_load(other, &loaded), DL_IO_ERROR);
    CHECK_MESSAGE_HAS(other);
    CHECK_STATUS(dl_model_load(xor_spec, &loaded), DL_FORMAT_ERROR); /* not HDF5 */
    CHECK_MESSAGE_HAS(xor_spec);
    /* A folder cannot be read: DL_IO_ERROR by the header (dl_model_from_spec says so too). */
    CHECK_STATUS_EITHER(dl_model_load(scratch_dir, &loaded), DL_IO_ERROR, DL_FORMAT_ERROR);
    long size = file_size(path);
    CHECK(size > 0);
    scratch_path(other, sizeof other, "truncated.h5");
    if (CHECK(copy_prefix(path, other, size - 1))) CHECK_STATUS(dl_model_load(other, &loaded), DL_FORMAT_ERROR);
    if (CHECK(copy_prefix(path, other, size / 2))) CHECK_STATUS(dl_model_load(other, &loaded), DL_FORMAT_ERROR);
    scratch_path(other, sizeof other, "empty.h5");
    if (CHECK(copy_prefix(path, other, 0))) CHECK_STATUS(dl_model_load(other, &loaded), DL_FORMAT_ERROR);
    CHECK(loaded == SENTINEL_MODEL);
}

/* ------------------------------------------------------------------------ */
/* Functional: regression                                                    */
/* ------------------------------------------------------------------------ */

static void test_regression(void) {
    section("specs/regression.json: targets, not labels");
    enum { N = 64 };
    dl_model *m = load(regression_spec);
    if (m == NULL) return;
    size_t in = 0, out = 0;
    CHECK_OK(dl_model_input_size(m, &in));
    CHECK_OK(dl_model_output_size(m, &out));
    CHECK(in == 1 && out == 1);
    float x[N], y[N];
    int32_t labels[N] = {0};
    /* Not symmetric around 0: with odd data the initial odd network (tanh, zero biases)
     * has bias gradients of exactly 0, and a relative error of rounding noise. */
    for (int i = 0; i < N; i++) {
        x[i] = -2.0f + 5.0f * (float)i / (N - 1);
        y[i] = sinf(x[i]);
    }

    size_t count = 0;
    float *before = get_all_params(m, &count);
    double loss = 7, accuracy = 7, rel = 7;
    CHECK_STATUS(dl_train_step(m, x, N, labels, NULL, &loss), DL_UNSUPPORTED);
    CHECK_STATUS(dl_evaluate(m, x, N, labels, NULL, &loss, &accuracy), DL_UNSUPPORTED);
    CHECK_STATUS(dl_gradcheck(m, x, N, labels, NULL, 0, &rel, NULL, 0), DL_UNSUPPORTED);
    y[10] = NAN;
    CHECK_STATUS(dl_train_step(m, x, N, NULL, y, &loss), DL_NUMERIC);
    CHECK_STATUS(dl_evaluate(m, x, N, NULL, y, &loss, &accuracy), DL_NUMERIC);
    y[10] = INFINITY;
    CHECK_STATUS(dl_train_step(m, x, N, NULL, y, &loss), DL_NUMERIC);
    y[10] = sinf(x[10]);
    CHECK(loss == 7 && accuracy == 7 && rel == 7);
    CHECK(step_count(m) == 0);
    CHECK(params_equal(m, before, count));
    free(before);

    CHECK_OK(dl_gradcheck(m, x, N, NULL, y, 0, &rel, NULL, 0));
    CHECK(rel >= 0 && rel < 1e-6);
    printf("   regression: gradcheck max_rel_error %.3g\n", rel);

    double first = 0, last = 0;
    CHECK_OK(dl_evaluate(m, x, N, NULL, y, &first, &accuracy));
    CHECK(isnan(accuracy)); /* no accuracy for a regression loss */
    for (int i = 0; i < 300; i++) CHECK_OK(dl_train_step(m, x, N, NULL, y, &loss));
    CHECK_OK(dl_evaluate(m, x, N, NULL, y, &last, NULL));
    CHECK(last < 0.25 * first);
    printf("   regression: loss %.4g -> %.4g after 300 steps\n", first, last);
    release(m);
}

/* ------------------------------------------------------------------------ */
/* Threads                                                                   */
/* ------------------------------------------------------------------------ */

typedef struct {
    const char *checkpoint; /* (a): where to save the trained model */
    const float *reference; /* expected parameters or predictions */
    size_t count;
    dl_model *model;        /* (b), (c): the model to use */
    int iterations;
    bool same;              /* every result equal to the reference */
    int ok, busy, other;    /* (c): statuses seen */
    atomic_bool *stop;
    atomic_bool *saw_busy;
} worker;

/* A gate that holds the workers until all of them exist, so that they run at once. */
static pthread_mutex_t gate_mutex = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t gate_cond = PTHREAD_COND_INITIALIZER;
static bool gate_open;

static void gate_set(bool open) {
    pthread_mutex_lock(&gate_mutex);
    gate_open = open;
    pthread_cond_broadcast(&gate_cond);
    pthread_mutex_unlock(&gate_mutex);
}

static void gate_wait(void) {
    pthread_mutex_lock(&gate_mutex);
    while (!gate_open) pthread_cond_wait(&gate_cond, &gate_mutex);
    pthread_mutex_unlock(&gate_mutex);
}

/* (a) Builds its own model from specs/xor.json, trains it, saves it and loads it back. */
static void *train_own_model(void *arg) {
    worker *w = arg;
    gate_wait();
    dl_model *m = load(xor_spec), *back = NULL;
    for (int i = 0; m != NULL && i < w->iterations; i++)
        if (!CHECK_OK(dl_train_step(m, xor_x, XOR_COUNT, xor_labels, NULL, NULL))) break;
    w->same = m != NULL && params_equal(m, w->reference, w->count);
    if (CHECK_OK(dl_model_save(m, w->checkpoint)) && CHECK_OK(dl_model_load(w->checkpoint, &back)))
        w->same = w->same && params_equal(back, w->reference, w->count);
    dl_model_free(back);
    dl_model_free(m);
    return NULL;
}

/* A grid of inputs over [-0.5, 1.5]^2 for the prediction threads. */
enum { GRID = 64 };
static void grid_inputs(float *x) {
    for (int i = 0; i < GRID; i++) {
        x[2 * i] = -0.5f + 2.0f * (float)(i % 8) / 7;
        x[2 * i + 1] = -0.5f + 2.0f * (float)(i / 8) / 7;
    }
}

/* (b) Predicts again and again on its own clone. */
static void *predict_on_clone(void *arg) {
    worker *w = arg;
    float x[GRID * XOR_IN], out[GRID * XOR_OUT];
    grid_inputs(x);
    w->same = true;
    gate_wait();
    for (int i = 0; i < w->iterations; i++) {
        if (!CHECK_OK(dl_predict(w->model, x, GRID, out, GRID * XOR_OUT))) {
            w->same = false;
            break;
        }
        w->same = w->same && memcmp(out, w->reference, sizeof out) == 0;
    }
    return NULL;
}

/* (c) Predicts on a model another thread uses too: DL_OK (with the right outputs) or
 * DL_BUSY (with the output untouched and a message), nothing else. Runs at least
 * `iterations` calls and until a DL_BUSY has been seen or the other thread stops. */
static void *predict_on_shared(void *arg) {
    worker *w = arg;
    size_t n = w->count / XOR_OUT;
    float *x = malloc(n * XOR_IN * sizeof *x), *out = malloc(w->count * sizeof *out);
    if (!CHECK(x && out)) goto done;
    for (size_t i = 0; i < n; i++) memcpy(x + i * XOR_IN, xor_x + (i % XOR_COUNT) * XOR_IN, XOR_IN * sizeof *x);
    w->same = true;
    gate_wait();
    for (int i = 0; i < 100 * w->iterations; i++) {
        if (i >= w->iterations && (atomic_load(w->saw_busy) || atomic_load(w->stop))) break;
        out[0] = out[w->count - 1] = 7;
        int status = dl_predict(w->model, x, n, out, w->count);
        if (status == DL_OK) {
            w->ok++;
            w->same = w->same && dl_last_error()[0] == '\0' && memcmp(out, w->reference, w->count * sizeof *out) == 0;
        } else if (status == DL_BUSY) {
            w->busy++;
            atomic_store(w->saw_busy, true);
            w->same = w->same && dl_last_error()[0] != '\0' && out[0] == 7 && out[w->count - 1] == 7;
        } else {
            if (w->other++ == 0) fprintf(stderr, "shared model: dl_predict returned %d: %s\n", status, dl_last_error());
        }
    }
done:
    free(x);
    free(out);
    return NULL;
}

/* Starts a worker, which waits at the gate until gate_set(true). */
static bool start(pthread_t *thread, void *(*body)(void *), worker *w) {
    return CHECK(pthread_create(thread, NULL, body, w) == 0);
}

/* (a) Separate models on separate threads at once give the serial results. */
static void test_threads_separate_models(void) {
    section("threads: 4 models trained, saved and loaded at once");
    enum { THREADS = 4, STEPS = 300 };
    dl_model *serial = load(xor_spec);
    if (serial == NULL) return;
    for (int i = 0; i < STEPS; i++) CHECK_OK(dl_train_step(serial, xor_x, XOR_COUNT, xor_labels, NULL, NULL));
    size_t count = 0;
    float *reference = get_all_params(serial, &count);
    release(serial);

    pthread_t threads[THREADS];
    worker w[THREADS];
    bool started[THREADS];
    char checkpoints[THREADS][4200];
    gate_set(false);
    for (int t = 0; t < THREADS; t++) {
        char name[32];
        snprintf(name, sizeof name, "thread%d.h5", t);
        scratch_path(checkpoints[t], sizeof checkpoints[t], name);
        w[t] = (worker){.checkpoint = checkpoints[t], .reference = reference, .count = count, .iterations = STEPS};
        started[t] = start(&threads[t], train_own_model, &w[t]);
    }
    gate_set(true);
    for (int t = 0; t < THREADS; t++) {
        if (!started[t]) continue;
        pthread_join(threads[t], NULL);
        CHECK(w[t].same); /* bit for bit the serial run */
    }
    free(reference);
}

/* (b) Clones of one model predict at once with the serial results. */
static void test_threads_clones(dl_model *trained) {
    section("threads: 8 clones predicting at once");
    enum { THREADS = 8 };
    float x[GRID * XOR_IN], reference[GRID * XOR_OUT];
    grid_inputs(x);
    CHECK_OK(dl_predict(trained, x, GRID, reference, GRID * XOR_OUT));

    pthread_t threads[THREADS];
    worker w[THREADS];
    bool started[THREADS] = {false};
    gate_set(false);
    for (int t = 0; t < THREADS; t++) {
        w[t] = (worker){.reference = reference, .count = GRID * XOR_OUT, .iterations = 200};
        if (CHECK_OK(dl_model_clone(trained, &w[t].model))) started[t] = start(&threads[t], predict_on_clone, &w[t]);
    }
    gate_set(true);
    for (int t = 0; t < THREADS; t++) {
        if (started[t]) {
            pthread_join(threads[t], NULL);
            CHECK(w[t].same); /* exactly the serial prediction, every time */
        }
        release(w[t].model);
    }
}

/* (c) Two threads on the same model: DL_OK or DL_BUSY, never anything else; the model
 * still works afterwards. */
static void test_threads_same_model(dl_model *trained) {
    section("threads: 2 threads on the same model");
    enum { THREADS = 2, N = 2048 };
    float *x = malloc(N * XOR_IN * sizeof *x), *reference = malloc(N * XOR_OUT * sizeof *reference);
    if (!CHECK(x && reference)) goto done;
    for (size_t i = 0; i < N; i++) memcpy(x + i * XOR_IN, xor_x + (i % XOR_COUNT) * XOR_IN, XOR_IN * sizeof *x);
    CHECK_OK(dl_predict(trained, x, N, reference, N * XOR_OUT));
    size_t count = 0;
    float *params = get_all_params(trained, &count);

    atomic_bool stop = false, saw_busy = false;
    pthread_t threads[THREADS];
    worker w[THREADS];
    bool started[THREADS];
    gate_set(false);
    for (int t = 0; t < THREADS; t++) {
        w[t] = (worker){.reference = reference, .count = N * XOR_OUT, .model = trained,
                        .iterations = 500, .stop = &stop, .saw_busy = &saw_busy};
        started[t] = start(&threads[t], predict_on_shared, &w[t]);
    }
    gate_set(true);
    int ok = 0, busy = 0, other = 0;
    for (int t = 0; t < THREADS; t++) {
        if (!started[t]) continue;
        pthread_join(threads[t], NULL);
        atomic_store(&stop, true); /* the other one need not wait for a DL_BUSY alone */
        CHECK(w[t].same);
        ok += w[t].ok;
        busy += w[t].busy;
        other += w[t].other;
    }
    printf("   shared model: %d DL_OK, %d DL_BUSY, %d other\n", ok, busy, other);
    CHECK(other == 0);
    CHECK(ok > 0);
    CHECK(busy > 0); /* the overlap was detected */

    /* The model still works and was not changed. */
    CHECK(params_equal(trained, params, count));
    float again[8];
    CHECK_OK(dl_predict(trained, x, XOR_COUNT, again, 8));
    CHECK(memcmp(again, reference, sizeof again) == 0);
    CHECK_OK(dl_train_step(trained, xor_x, XOR_COUNT, xor_labels, NULL, NULL));
    free(params);
done:
    free(x);
    free(reference);
}

/* dl_last_error() is per thread. */
static void *fail_in_thread(void *arg) {
    bool *ok = arg;
    *ok = dl_last_error()[0] == '\0'; /* a new thread starts with no message */
    dl_model *m = SENTINEL_MODEL;
    *ok = *ok && dl_model_from_spec(missing_spec, &m) == DL_IO_ERROR && strstr(dl_last_error(), missing_spec) != NULL;
    return NULL;
}

static void test_last_error_per_thread(void) {
    section("threads: dl_last_error() per thread");
    size_t size = 0;
    CHECK_STATUS(dl_model_input_size(NULL, &size), DL_INVALID_ARGUMENT);
    char mine[1024];
    snprintf(mine, sizeof mine, "%s", dl_last_error());
    pthread_t thread;
    bool ok = false;
    if (!CHECK(pthread_create(&thread, NULL, fail_in_thread, &ok) == 0)) return;
    pthread_join(thread, NULL);
    CHECK(ok);
    CHECK(strcmp(dl_last_error(), mine) == 0); /* another thread's failure did not replace it */
}

/* ------------------------------------------------------------------------ */

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s SPECS_DIR\n", argv[0]);
        return 2;
    }
    setvbuf(stdout, NULL, _IOLBF, 0); /* keep stdout in step with failures on stderr */
    specs_dir = argv[1];
    not_json_file = argv[0];
    snprintf(xor_spec, sizeof xor_spec, "%s/xor.json", specs_dir);
    snprintf(mnist_spec, sizeof mnist_spec, "%s/mnist_mlp.json", specs_dir);
    snprintf(regression_spec, sizeof regression_spec, "%s/regression.json", specs_dir);
    snprintf(missing_spec, sizeof missing_spec, "%s/no_such_spec.json", specs_dir);
    const char *tmp = getenv("TMPDIR");
    snprintf(scratch_dir, sizeof scratch_dir, "%s/dl_test_driver.XXXXXX", tmp != NULL && tmp[0] != '\0' ? tmp : "/tmp");
    if (mkdtemp(scratch_dir) == NULL) {
        fprintf(stderr, "%s: cannot create a folder for checkpoints\n", scratch_dir);
        return 2;
    }
    printf("deeplearning %s (header %s)\n", dl_version(), DL_VERSION_STRING);

    test_version_and_status();
    test_model_creation();
    test_bad_handles();
    test_introspection();
    test_params();
    test_mnist_batch();
    test_gradcheck();
    test_determinism();
    test_float64();
    test_regression();

    dl_model *xor = load(xor_spec);
    if (xor != NULL) {
        test_train_step_errors(xor);
        test_inference_errors(xor);
        test_xor(xor);
        test_large_batch_errors(xor);
        test_clone(xor);
        test_checkpoints(xor);
        test_threads_clones(xor);
        test_threads_same_model(xor);
    }
    release(xor);
    test_threads_separate_models();
    test_last_error_per_thread();

    for (size_t i = 0; i < sizeof scratch_files / sizeof scratch_files[0]; i++) {
        char path[4200];
        scratch_path(path, sizeof path, scratch_files[i]);
        remove(path);
    }
    CHECK(remove(scratch_dir) == 0); /* empty: no temporary file was left behind */
    int passed = atomic_load(&checks_passed), failed = atomic_load(&checks_failed);
    printf("%d passed, %d failed\n", passed, failed);
    return failed == 0 ? 0 : 1;
}
