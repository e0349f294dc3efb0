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
 *   - standalone layers and losses (dl_layer_*, dl_loss_*) in float32 and float64: every
 *     function on success and on every error path (NULL, foreign, freed handles and handles
 *     of another kind; bad dtype codes; malformed JSON; wrong shapes; short buffers;
 *     backward before forward; labels and targets); linear against y = x W^T + b and its
 *     gradients computed here, through the live parameter memory; every activation
 *     (relu, leaky_relu, sigmoid, tanh, gelu in both forms, silu, elu, softplus on both
 *     sides of its threshold, softmax) against its formula; mse, cross_entropy and huber
 *     against theirs (the tutorial's examples); a float64 finite-difference check of a
 *     linear layer's gradients;
 *   - data sets (dl_dataset_*, dl_train_epoch, dl_evaluate_dataset): IDX and CSV files
 *     written here, loaded with and without labels and compared with what was written;
 *     MNIST folder layout; every loader's failures; the standardizer against statistics
 *     computed here; NULL, foreign, freed and wrong-kind handles; an unshuffled epoch
 *     against dl_train_step on consecutive batches (bit for bit), dl_evaluate_dataset
 *     against dl_evaluate, shuffled epochs reproducible, a separable problem learnt;
 *     unlabelled data, a wrong input size, bad labels and labels for regression refused;
 *     CSV target values (dl_dataset_load_csv_targets, dl_dataset_targets) trained on by
 *     regression.json, an unshuffled epoch against dl_train_step (bit for bit);
 *   - shaped standalone layers (dl_layer_from_json_shaped): conv2d equal to a model's, max
 *     pooling against its definition, batch norm's zero channel means; refusals;
 *   - dl_dataset_from_arrays: a copy of labels, target values, image shapes or no targets,
 *     an unshuffled epoch on it equal to dl_train_step; every refusal;
 *   - dl_dataset_borrow_arrays: x read in place (the same address), trained on like a copy,
 *     later changes seen, released exactly once, on free and on every refusal;
 *   - layer output shapes and batch norm's running statistics (dl_model_*_buffer*): names,
 *     shapes, initial values, moved by a step, set values change predictions, bad ones refused;
 *   - progress callbacks (dl_model_set_progress): every step and evaluation chunk
 *     reported in order with the running mean loss; an epoch stopped after three steps
 *     equals three dl_train_step calls (no decay, no OUT value, DL_CANCELLED), a
 *     cancelled evaluation writes nothing, the running model refuses re-entry (DL_BUSY);
 *   - threads: separate models train (and save and load) at once with the serial
 *     results, clones predict at once with the serial results, two threads on one
 *     model get DL_OK or DL_BUSY, models train at once on one shared data set.
 *
 * Usage: dl_test_driver SPECS_DIR
 *   SPECS_DIR  the folder holding xor.json, mnist_mlp.json and regression.json.
 * The program's own file (argv[0]) serves as a spec file that is not JSON; checkpoints
 * and small data files are written in a new folder under $TMPDIR (or /tmp), removed at
 * the end.
 * The last line printed is "N passed, M failed"; the exit status is 1 when a check
 * failed.
 */
#define _POSIX_C_SOURCE 200809L /* pthreads and mkdtemp() under -std=c11 */

#include <deeplearning.h>

#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

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
#define FOREIGN_DATASET ((dl_dataset *)(void *)&foreign_object)
static const char sentinel_string[] = "sentinel";

static char xor_spec[4096], mnist_spec[4096], regression_spec[4096], missing_spec[4096];
static const char *specs_dir;
static const char *not_json_file;
static char scratch_dir[4096]; /* a new folder for checkpoints, made by mkdtemp() */

/* Names of the files the driver may write in scratch_dir, all removed at the end. */
static const char *const scratch_files[] = {"numeric.h5", "impossible.json", "xor.h5", "truncated.h5", "empty.h5", "never_written.h5",
                                            "thread0.h5", "thread1.h5", "thread2.h5", "thread3.h5",
                                            "train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                                            "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte", "five-labels-idx1-ubyte",
                                            "short-labels-idx1-ubyte", "labelled.csv", "unlabelled.csv", "constant.csv",
                                            "bad.csv", "dataset_checkpoint.h5", "targets.csv",
                                            "untrusted.h5", "damaged-copy.h5", "saved-meanwhile.h5"};

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
    {   /* the kernels' thread setting round-trips and is clamped to 1..8 */
        int saved = dl_get_num_threads();
        CHECK(saved >= 1 && saved <= 8);
        dl_set_num_threads(2);
        CHECK(dl_get_num_threads() == 2);
        dl_set_num_threads(0);
        CHECK(dl_get_num_threads() == 1);
        dl_set_num_threads(1000);
        CHECK(dl_get_num_threads() == 8);
        dl_set_num_threads(saved);
    }
    int major = -1, minor = -1, patch = -1;
    CHECK(sscanf(dl_version(), "%d.%d.%d", &major, &minor, &patch) == 3);
    CHECK(major == DL_VERSION_MAJOR && minor == DL_VERSION_MINOR && patch == DL_VERSION_PATCH);
    CHECK(major * 10000 + minor * 100 + patch == dl_version_number());

    /* The codes are published values. */
    static const int codes[] = {DL_OK, DL_ERROR, DL_INVALID_ARGUMENT, DL_SPEC_ERROR, DL_IO_ERROR,
                                DL_FORMAT_ERROR, DL_NOMEM, DL_NUMERIC, DL_UNSUPPORTED, DL_BUSY, DL_CANCELLED};
    for (int i = 0; i < 11; i++) CHECK(codes[i] == i);
    for (int code = 0; code <= 10; code++) {
        const char *text = dl_status_string(code);
        CHECK(text != NULL && text[0] != '\0' && strcmp(text, "unknown status") != 0);
        for (int other = 0; other < code; other++) CHECK(text != NULL && strcmp(text, dl_status_string(other)) != 0);
    }
    CHECK(strcmp(dl_status_string(DL_INVALID_ARGUMENT), "invalid argument") == 0);
    static const int unknown[] = {11, -1, 100, INT_MAX, INT_MIN};
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
    CHECK(first != NULL && strcmp(first, "layers.0.weight") == 0);

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

/* MNIST-like batches (81% of pixels one background value) take the sparse path of the
 * first layer; trained with 1, 2, 3 and 8 kernel threads the model gives the same bits,
 * and in float64 (dense BLAS) the same losses to float32 accuracy. Runs the kernels'
 * thread pool under ASan and valgrind too. */
static float *sparse_batches(int batches, int rows, uint64_t seed) {
    float *x = malloc((size_t)batches * rows * 784 * sizeof *x);
    if (x == NULL) return NULL;
    uint64_t rng = seed;
    for (size_t i = 0; i < (size_t)batches * rows * 784; i++)
        x[i] = uniform(&rng) < 0.19f ? uniform(&rng) * 255.0f : 0.0f;   /* raw pixels */
    return x;
}

static void test_sparse_input_threads(void) {
    section("specs/mnist_mlp.json on sparse batches: 1, 2, 3 and 8 kernel threads, float64");
    enum { BATCHES = 4, B = 64, RUNS = 5, DOUBLE_RUN = RUNS - 1 };
    static const int threads[DOUBLE_RUN] = {1, 2, 3, 8};
    float *x = sparse_batches(BATCHES, B, 7);
    int32_t labels[BATCHES * B];
    uint64_t rng = 11;
    for (size_t i = 0; i < BATCHES * B; i++) labels[i] = (int32_t)(uniform(&rng) * 10.0f);
    double losses[RUNS][BATCHES];
    float *params[DOUBLE_RUN] = {NULL};
    size_t count[DOUBLE_RUN] = {0};
    const int saved = dl_get_num_threads();
    if (!CHECK(x != NULL)) goto done;
    for (int run = 0; run < RUNS; run++) {
        dl_set_num_threads(run == DOUBLE_RUN ? 1 : threads[run]);
        dl_model *m = load(mnist_spec);
        if (m == NULL) goto done;
        if (run == DOUBLE_RUN) {   /* the same model in float64: no sparse path */
            const char *json = NULL;   /* owned by m: copied before m is freed */
            CHECK_OK(dl_model_spec_json(m, &json));
            const char *at = json ? strstr(json, "\"layers\"") : NULL;
            char *spec = at ? malloc(strlen(json) + 64) : NULL;
            if (spec != NULL) {
                size_t head = (size_t)(at - json);
                memcpy(spec, json, head);
                strcpy(spec + head, "\"dtype\": \"float64\", ");
                strcat(spec, at);
            }
            release(m);
            m = NULL;
            if (!CHECK(spec != NULL)) goto done;
            CHECK_OK(dl_model_from_json(spec, &m));
            free(spec);
            if (m == NULL) goto done;
        }
        CHECK_OK(dl_model_set_preprocessing(m, 1.0 / 255, 0.1307, 0.3081));
        for (int b = 0; b < BATCHES; b++)
            CHECK_OK(dl_train_step(m, x + (size_t)b * B * 784, B, labels + b * B, NULL, &losses[run][b]));
        if (run < DOUBLE_RUN) params[run] = get_all_params(m, &count[run]);
        release(m);
    }
    for (int run = 1; run < DOUBLE_RUN; run++)   /* same bits */
        CHECK(params[0] && params[run] && count[0] == count[run] &&
              memcmp(params[0], params[run], count[0] * sizeof *params[0]) == 0);
    bool close = true;
    for (int b = 0; b < BATCHES; b++)
        close = close && fabs(losses[0][b] - losses[DOUBLE_RUN][b]) < 1e-4 * fmax(1, losses[DOUBLE_RUN][b]);
    CHECK(close);   /* float32 with the sparse path follows float64's dense maths */
done:
    dl_set_num_threads(saved);
    for (int run = 0; run < DOUBLE_RUN; run++) free(params[run]);
    free(x);
}

/* ------------------------------------------------------------------------ */
/* Functional: XOR                                                           */
/* ------------------------------------------------------------------------ */

/* Trains `m` on the full XOR batch until dl_evaluate says 100% (at most 2000 steps);
 * checks the step counter and the reported loss on the way. Returns the steps taken. */
static int train_xor_to_100(dl_model *m) {
    double accuracy = 0, before = 0, loss = 0;
    uint64_t steps = step_count(m);
    bool counter_ok = true, loss_ok = true, accuracy_ok = true;
    int taken = 0;
    for (; taken < 2000; taken++) {
        if (!CHECK_OK(dl_evaluate(m, xor_x, XOR_COUNT, xor_labels, NULL, &before, &accuracy))) break;
        if (accuracy == 1.0) break;
        if (!CHECK_OK(dl_train_step(m, xor_x, XOR_COUNT, xor_labels, NULL, &loss))) break;
        loss_ok = loss_ok && fabs(loss - before) <= 1e-6 * fmax(1, before);
        /* the step's forward pass (no dropout here) classifies as the evaluation before it */
        accuracy_ok = accuracy_ok && dl_last_accuracy() == accuracy;
        counter_ok = counter_ok && step_count(m) == ++steps;
    }
    CHECK(counter_ok); /* +1 per step */
    CHECK(loss_ok);    /* dl_train_step's loss is the loss before the update */
    CHECK(accuracy_ok); /* dl_last_accuracy() is the batch's accuracy before the update */
    CHECK(isnan((dl_train_step(m, NULL, XOR_COUNT, xor_labels, NULL, &loss), dl_last_accuracy())));
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

/* robust-numeric: dl_gradcheck_report's verdict, where a true gradient is zero too; a
 * step that would make a weight infinite refused with nothing changed; preprocessing
 * values held to the spec's rules. */
static void test_robust_numeric(void) {
    section("dl_gradcheck_report, non-finite steps, preprocessing rules");
    dl_model *m = load(xor_spec), *conv = NULL, *again = NULL;
    if (m == NULL) return;
    double abs_error[5] = {-1, -1, -1, -1, -1}, rel_error[4], score[4], rel[4], worst = -1;
    int passed = -1;
    CHECK_OK(dl_gradcheck_report(m, xor_x, XOR_COUNT, xor_labels, NULL, 0, 1e-5, 1e-3, abs_error, rel_error, score, 4,
                                 &passed));
    CHECK(passed == 1);
    CHECK_OK(dl_gradcheck(m, xor_x, XOR_COUNT, xor_labels, NULL, 0, &worst, rel, 4));
    for (int i = 0; i < 4; i++) CHECK(abs_error[i] >= 0 && abs_error[i] < 1e-8 && score[i] <= 1 && rel_error[i] == rel[i]);
    CHECK(abs_error[4] == -1);
    CHECK_OK(dl_gradcheck_report(m, xor_x, XOR_COUNT, xor_labels, NULL, 2, 1e-5, 0, NULL, NULL, NULL, 0, &passed));
    CHECK_STATUS(dl_gradcheck_report(m, xor_x, XOR_COUNT, xor_labels, NULL, 0, 1e-5, 1e-3, NULL, NULL, NULL, 0, NULL),
                 DL_INVALID_ARGUMENT);
    CHECK_STATUS(dl_gradcheck_report(m, xor_x, XOR_COUNT, xor_labels, NULL, 0, -1, 1e-3, NULL, NULL, NULL, 0, &passed),
                 DL_INVALID_ARGUMENT);
    CHECK_MESSAGE_HAS("tolerances");
    CHECK_STATUS(dl_gradcheck_report(m, xor_x, XOR_COUNT, xor_labels, NULL, 0, 0, 0, NULL, NULL, NULL, 0, &passed),
                 DL_INVALID_ARGUMENT);
    CHECK_STATUS(dl_gradcheck_report(m, xor_x, XOR_COUNT, xor_labels, NULL, 0, 1e-5, 1e-3, NULL, NULL, score, 3, &passed),
                 DL_INVALID_ARGUMENT);

    /* A convolution's bias before batch norm: true gradient zero, the check passes. */
    const char *conv_spec = "{\"input\": {\"shape\": [1, 3, 3]}, \"layers\": [{\"type\": \"conv2d\", \"filters\": 2, "
                            "\"kernel_size\": 2, \"bias\": true}, {\"type\": \"batch_norm\"}, {\"type\": \"flatten\"}, "
                            "{\"type\": \"linear\", \"units\": 2}], \"loss\": \"cross_entropy\", "
                            "\"optimizer\": {\"type\": \"sgd\", \"lr\": 0.1}}";
    const float cx[36] = {0.3f, -1, 2, 0.5f, 0, 1, -0.7f, 0.2f, 1.5f, 1, 0.1f, -0.4f, 0.8f, -2, 0.6f, 0.9f, 0.3f, -1.1f,
                          -0.2f, 0.4f, 1.2f, -0.8f, 0.7f, 0.05f, 2, -0.3f, 0.35f, 1.4f, -0.6f, 0.25f, 0.15f, -1.3f, 0.45f, 0.65f,
                          -0.9f, 1.1f};
    const int32_t cy[4] = {0, 1, 1, 0};
    double cabs[6], cscore[6];
    if (CHECK_OK(dl_model_from_json(conv_spec, &conv))) {
        CHECK_OK(dl_gradcheck_report(conv, cx, 4, cy, NULL, 0, 1e-5, 1e-3, cabs, NULL, cscore, 6, &passed));
        CHECK(passed == 1);
        printf("   conv + bias + batch_norm: bias abs error %.2g, score %.2g\n", cabs[1], cscore[1]);
    }

    /* Learning rate 1e300 is refused (a checkpoint could not hold it); the refusal of a
     * non-finite step itself is tested in Swift (NonFiniteStepTests), where the rate can
     * be set beyond the spec's range. */
    size_t count = 0;
    CHECK_OK(dl_train_step(m, xor_x, XOR_COUNT, xor_labels, NULL, NULL));
    float *before = get_all_params(m, &count);
    const uint64_t steps = step_count(m);
    double loss = -1, lr = 0;
    CHECK_OK(dl_model_get_learning_rate(m, &lr));
    CHECK_STATUS(dl_model_set_learning_rate(m, 1e300), DL_INVALID_ARGUMENT);
    CHECK_MESSAGE_HAS("learning rate");
    double unchanged = 0;
    CHECK_OK(dl_model_get_learning_rate(m, &unchanged));
    CHECK(unchanged == lr);
    CHECK(params_equal(m, before, count));
    CHECK_OK(dl_train_step(m, xor_x, XOR_COUNT, xor_labels, NULL, &loss));
    CHECK(isfinite(loss) && step_count(m) == steps + 1);
    char path[4200];
    scratch_path(path, sizeof path, "numeric.h5");
    CHECK_OK(dl_model_save(m, path));
    if (CHECK_OK(dl_model_load(path, &again))) CHECK(step_count(again) == steps + 1);
    free(before);

    /* Preprocessing: the spec's ranges, so whatever is set can be saved and loaded. */
    const double bad[][3] = {{1e13, 0, 1}, {1, 0, 1e-13}, {5e-324, 0, 1}, {1, 2e12, 1}, {1, 0, INFINITY}};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        CHECK_STATUS(dl_model_set_preprocessing(m, bad[i][0], bad[i][1], bad[i][2]), DL_INVALID_ARGUMENT);
    CHECK_OK(dl_model_set_preprocessing(m, 1e-12, -1e12, 1e12));
    release(again);
    again = NULL;
    CHECK_OK(dl_model_save(m, path));
    CHECK_OK(dl_model_load(path, &again));
    release(again);
    release(conv);
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

/* Untrusted checkpoints (issue #13): damaged copies of a checkpoint (bytes
 * overwritten across the file, its HDF5 metadata included) are loaded while
 * another thread saves. Every load returns a status within its deadline (the
 * file is read in a child process), and every save completes meanwhile. */
struct saver_args { const dl_model *model; const char *path; int rounds; int failures; };

static void *saver_thread(void *raw) {
    struct saver_args *a = raw;
    for (int i = 0; i < a->rounds; i++)
        if (dl_model_save(a->model, a->path) != DL_OK) a->failures++;
    return NULL;
}

static double untrusted_seconds(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static void test_checkpoints_untrusted(dl_model *trained) {
    section("dl_model_load of damaged checkpoints, while another thread saves");
    char path[4200], damaged[4200], saved[4200];
    scratch_path(path, sizeof path, "untrusted.h5");
    scratch_path(damaged, sizeof damaged, "damaged-copy.h5");
    scratch_path(saved, sizeof saved, "saved-meanwhile.h5");
    if (!CHECK_OK(dl_model_save(trained, path))) return;
    long size = file_size(path);
    FILE *f = fopen(path, "rb");
    unsigned char *bytes = size > 0 ? malloc((size_t)size) : NULL;
    if (!CHECK(f != NULL && bytes != NULL && fread(bytes, 1, (size_t)size, f) == (size_t)size)) {
        if (f) fclose(f);
        free(bytes);
        return;
    }
    fclose(f);
    setenv("DL_HDF5_TIMEOUT_MS", "2000", 1);
    struct saver_args args = { trained, saved, 20, 0 };
    pthread_t saver;
    CHECK(pthread_create(&saver, NULL, saver_thread, &args) == 0);
    unsigned seed = 12345;
    int refused = 0;
    double slowest = 0;
    for (int round = 0; round < 40; round++) {
        unsigned char *copy = malloc((size_t)size);
        if (!CHECK(copy != NULL)) break;
        memcpy(copy, bytes, (size_t)size);
        /* 1 to 8 random bytes, half of the rounds within the first 4 KiB (metadata). */
        int n = 1 + (int)((seed = seed * 1103515245u + 12345u) >> 16) % 8;
        for (int k = 0; k < n; k++) {
            seed = seed * 1103515245u + 12345u;
            long span = round % 2 == 0 && size > 4096 ? 4096 : size;
            long at = (long)((seed >> 8) % (unsigned)span);
            seed = seed * 1103515245u + 12345u;
            copy[at] = (unsigned char)(seed >> 16);
        }
        FILE *out = fopen(damaged, "wb");
        CHECK(out != NULL && fwrite(copy, 1, (size_t)size, out) == (size_t)size);
        if (out) fclose(out);
        free(copy);
        dl_model *loaded = NULL;
        double start = untrusted_seconds();
        int status = dl_model_load(damaged, &loaded);
        double took = untrusted_seconds() - start;
        if (took > slowest) slowest = took;
        CHECK(status == DL_OK || status == DL_FORMAT_ERROR);
        if (status != DL_OK) refused++;
        release(loaded);
    }
    pthread_join(saver, NULL);
    unsetenv("DL_HDF5_TIMEOUT_MS");
    CHECK(args.failures == 0);
    CHECK(refused > 0);
    CHECK(slowest < 2.0 + (double)size / 8192 / 1000 + 2.0); /* the deadline, with slack */
    dl_model *again = NULL;
    if (CHECK_OK(dl_model_load(saved, &again))) CHECK(models_equal(trained, again));
    release(again);
    free(bytes);
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
/* Standalone layers and losses: helpers                                     */
/* ------------------------------------------------------------------------ */

#define FOREIGN_LAYER ((dl_layer *)(void *)&foreign_object)
#define FOREIGN_LOSS ((dl_loss *)(void *)&foreign_object)
#define SENTINEL_LAYER ((dl_layer *)(void *)&sentinel_object)
#define SENTINEL_LOSS ((dl_loss *)(void *)&sentinel_object)

static const int all_dtypes[2] = {DL_FLOAT32, DL_FLOAT64};
static const char *dtype_name(int dtype) { return dtype == DL_FLOAT64 ? "float64" : "float32"; }
/* Largest accepted |got - want| / max(1, |want|): float64 computes to rounding, float32 to
 * its 24 bits over a few operations. */
static double tolerance(int dtype) { return dtype == DL_FLOAT64 ? 1e-12 : 1e-5; }

/* Buffers of either dtype, malloc'ed (no declared type) and accessed through helpers. */
static double get_elem(const void *buf, size_t i, int dtype) {
    return dtype == DL_FLOAT64 ? ((const double *)buf)[i] : (double)((const float *)buf)[i];
}

static void set_elem(void *buf, size_t i, int dtype, double v) {
    if (dtype == DL_FLOAT64)
        ((double *)buf)[i] = v;
    else
        ((float *)buf)[i] = (float)v;
}

/* n elements of `dtype` from `values`, or all 7 when values is NULL; free() it. Never NULL
 * (the driver stops when out of memory). */
static void *new_buffer(size_t n, int dtype, const double *values) {
    void *buf = malloc((n > 0 ? n : 1) * (dtype == DL_FLOAT64 ? sizeof(double) : sizeof(float)));
    if (buf == NULL) {
        fprintf(stderr, "out of memory\n");
        exit(2);
    }
    for (size_t i = 0; i < n; i++) set_elem(buf, i, dtype, values != NULL ? values[i] : 7);
    return buf;
}

/* The n elements of buf as doubles (for references computed from what the library saw). */
static void read_buffer(const void *buf, size_t n, int dtype, double *out) {
    for (size_t i = 0; i < n; i++) out[i] = get_elem(buf, i, dtype);
}

/* max |got[i] - want[i]| / max(1, |want[i]|); infinity when got has a NaN. */
static double max_error(const void *got, const double *want, size_t n, int dtype) {
    double worst = 0;
    for (size_t i = 0; i < n; i++) {
        double e = fabs(get_elem(got, i, dtype) - want[i]) / fmax(1, fabs(want[i]));
        if (!(e <= worst)) worst = isnan(e) ? INFINITY : e;
    }
    return worst;
}

/* Whether elements [from, to) of buf all equal v (an OUT buffer left alone). */
static bool all_equal(const void *buf, size_t from, size_t to, int dtype, double v) {
    for (size_t i = from; i < to; i++)
        if (get_elem(buf, i, dtype) != v) return false;
    return true;
}

static void fill_uniform(double *values, size_t n, uint64_t seed, double low, double high) {
    uint64_t state = seed;
    for (size_t i = 0; i < n; i++) values[i] = low + (high - low) * (double)uniform(&state);
}

static dl_layer *make_layer(const char *json, int dtype, uint64_t seed) {
    dl_layer *layer = SENTINEL_LAYER;
    if (!CHECK_OK(dl_layer_from_json(json, dtype, seed, &layer))) {
        fprintf(stderr, "    layer JSON: %s (%s)\n", json, dtype_name(dtype));
        return NULL;
    }
    CHECK(layer != NULL && layer != SENTINEL_LAYER);
    return layer;
}

static dl_loss *make_loss(const char *json, int dtype) {
    dl_loss *loss = SENTINEL_LOSS;
    if (!CHECK_OK(dl_loss_from_json(json, dtype, &loss))) {
        fprintf(stderr, "    loss JSON: %s (%s)\n", json, dtype_name(dtype));
        return NULL;
    }
    CHECK(loss != NULL && loss != SENTINEL_LOSS);
    return loss;
}

/* Frees a layer or loss and checks that its handle is dead afterwards (main thread only,
 * nothing is created in between). */
static void release_layer(dl_layer *layer) {
    if (layer == NULL) return;
    dl_layer_free(layer);
    size_t count = 7;
    CHECK_STATUS(dl_layer_num_params(layer, &count), DL_INVALID_ARGUMENT);
    CHECK(count == 7);
}

static void release_loss(dl_loss *loss) {
    if (loss == NULL) return;
    dl_loss_free(loss);
    double grad[4] = {7, 7, 7, 7};
    CHECK_STATUS(dl_loss_backward(loss, grad, 4), DL_INVALID_ARGUMENT);
    CHECK(grad[0] == 7);
}

/* Element count of a layer's parameter `index`, or 0 on failure. */
static size_t layer_param_size(const dl_layer *layer, size_t index) {
    size_t dims[4], ndim = 0, n = 1;
    if (!CHECK_OK(dl_layer_param_shape(layer, index, dims, 4, &ndim))) return 0;
    for (size_t d = 0; d < ndim; d++) n *= dims[d];
    return n;
}

static const char linear_5_3[] = "{\"type\": \"linear\", \"in_features\": 5, \"units\": 3}";
/* Losses as objects; the string forms ("\"mse\"") are checked on their own in test_losses. */
static const char mse_json[] = "{\"type\": \"mse\"}", xent_json[] = "{\"type\": \"cross_entropy\"}",
                  huber_json[] = "{\"type\": \"huber\"}";

/* ------------------------------------------------------------------------ */
/* Standalone layers: creation and introspection                             */
/* ------------------------------------------------------------------------ */

static void test_layer_creation(void) {
    section("dl_layer_from_json, dl_layer_type, dl_layer_output_features, parameters");
    static const struct {
        const char *json, *type;
        size_t params;
    } kinds[] = {
        {linear_5_3, "linear", 2},
        {"{\"type\": \"linear\", \"in_features\": 5, \"units\": 3, \"bias\": false}", "linear", 1},
        {"{\"type\": \"relu\"}", "relu", 0},
        {"{\"type\": \"leaky_relu\", \"alpha\": 0.2}", "leaky_relu", 0},
        {"{\"type\": \"leaky_relu\"}", "leaky_relu", 0},
        {"{\"type\": \"sigmoid\"}", "sigmoid", 0},
        {"{\"type\": \"tanh\"}", "tanh", 0},
        {"{\"type\": \"gelu\", \"approximate\": \"tanh\"}", "gelu", 0},
        {"{\"type\": \"silu\"}", "silu", 0},
        {"{\"type\": \"elu\", \"alpha\": 0.5}", "elu", 0},
        {"{\"type\": \"softplus\", \"beta\": 2}", "softplus", 0},
        {"{\"type\": \"softmax\"}", "softmax", 0},
    };
    for (int d = 0; d < 2; d++) {
        int dtype = all_dtypes[d];
        for (size_t k = 0; k < sizeof kinds / sizeof kinds[0]; k++) {
            dl_layer *l = make_layer(kinds[k].json, dtype, 1);
            if (l == NULL) continue;
            const char *type = NULL, *again = NULL;
            CHECK_OK(dl_layer_type(l, &type));
            CHECK(type != NULL && strcmp(type, kinds[k].type) == 0);
            CHECK_OK(dl_layer_type(l, &again));
            CHECK(again == type); /* owned by the layer, stable until dl_layer_free */
            size_t count = 7, features = 7;
            CHECK_OK(dl_layer_num_params(l, &count));
            CHECK(count == kinds[k].params);
            bool linear = strcmp(kinds[k].type, "linear") == 0;
            if (linear) {
                CHECK_OK(dl_layer_output_features(l, 5, &features));
                CHECK(features == 3);
                static const char *const names[2] = {"weight", "bias"};
                static const size_t shapes[2][2] = {{3, 5}, {3, 0}};
                for (size_t i = 0; i < count; i++) {
                    const char *name = NULL;
                    size_t dims[4] = {0}, ndim = 0;
                    void *data = NULL, *grad = NULL;
                    CHECK_OK(dl_layer_param_name(l, i, &name));
                    CHECK(name != NULL && strcmp(name, names[i]) == 0);
                    CHECK_OK(dl_layer_param_shape(l, i, dims, 4, &ndim));
                    CHECK(ndim == 2 - i && dims[0] == shapes[i][0] && (ndim == 1 || dims[1] == shapes[i][1]));
                    size_t exact[2] = {7, 7};
                    CHECK_OK(dl_layer_param_shape(l, i, exact, ndim, &ndim)); /* exactly ndim is enough */
                    CHECK_OK(dl_layer_param_data(l, i, &data));
                    CHECK_OK(dl_layer_grad_data(l, i, &grad));
                    CHECK(data != NULL && grad != NULL && data != grad);
                }
            } else {
                /* Elementwise: any number of features, the same number out. */
                static const size_t any[] = {1, 4, 9, 784};
                for (size_t i = 0; i < 4; i++) {
                    features = 7;
                    CHECK_OK(dl_layer_output_features(l, any[i], &features));
                    CHECK(features == any[i]);
                }
            }
            release_layer(l);
        }
    }

    /* The seed decides the initial weights: the same seed gives the same bits, another seed
     * other weights; He normal by default (std sqrt(2 / in_features)), "init" overrides. */
    static const char big[] = "{\"type\": \"linear\", \"in_features\": 784, \"units\": 128}";
    for (int d = 0; d < 2; d++) {
        int dtype = all_dtypes[d];
        size_t bytes = 784 * 128 * (dtype == DL_FLOAT64 ? sizeof(double) : sizeof(float));
        dl_layer *a = make_layer(big, dtype, 42), *b = make_layer(big, dtype, 42), *c = make_layer(big, dtype, 43);
        void *wa = NULL, *wb = NULL, *wc = NULL;
        if (a && b && c && CHECK_OK(dl_layer_param_data(a, 0, &wa)) && CHECK_OK(dl_layer_param_data(b, 0, &wb)) &&
            CHECK_OK(dl_layer_param_data(c, 0, &wc)) && CHECK(wa != NULL && wb != NULL && wc != NULL)) {
            CHECK(wa != wb && memcmp(wa, wb, bytes) == 0);
            CHECK(memcmp(wa, wc, bytes) != 0);
            double sum = 0, sq = 0;
            for (size_t i = 0; i < 784 * 128; i++) {
                double w = get_elem(wa, i, dtype);
                sum += w;
                sq += w * w;
            }
            double mean = sum / (784 * 128), std = sqrt(sq / (784 * 128) - mean * mean);
            CHECK(fabs(mean) < 1e-3);
            CHECK(fabs(std / sqrt(2.0 / 784) - 1) < 0.02);
            printf("   linear(784, 128) %s: initial weights mean %.2g, std %.4g (He: %.4g)\n", dtype_name(dtype), mean,
                   std, sqrt(2.0 / 784));
        }
        release_layer(c);
        release_layer(b);
        release_layer(a);
        dl_layer *z = make_layer("{\"type\": \"linear\", \"in_features\": 4, \"units\": 3, \"init\": \"zeros\"}", dtype, 5);
        void *wz = NULL;
        if (z != NULL && CHECK_OK(dl_layer_param_data(z, 0, &wz)) && CHECK(wz != NULL)) CHECK(all_equal(wz, 0, 12, dtype, 0));
        release_layer(z);
    }

    /* Errors: OUT untouched. */
    dl_layer *out = SENTINEL_LAYER;
    CHECK_STATUS(dl_layer_from_json(NULL, DL_FLOAT64, 1, &out), DL_INVALID_ARGUMENT);
    CHECK_MESSAGE_HAS("NULL");
    CHECK_STATUS(dl_layer_from_json("{\"type\": \"relu\"}", DL_FLOAT64, 1, NULL), DL_INVALID_ARGUMENT);
    static const int bad_dtype[] = {2, -1, 100, INT_MAX, INT_MIN};
    for (size_t i = 0; i < sizeof bad_dtype / sizeof bad_dtype[0]; i++) {
        CHECK_STATUS(dl_layer_from_json("{\"type\": \"relu\"}", bad_dtype[i], 1, &out), DL_INVALID_ARGUMENT);
        CHECK_MESSAGE_HAS("dtype");
        CHECK_STATUS(dl_layer_from_json(linear_5_3, bad_dtype[i], 1, &out), DL_INVALID_ARGUMENT);
    }
    /* A linear layer on its own must be told its input size. */
    CHECK_STATUS(dl_layer_from_json("{\"type\": \"linear\", \"units\": 3}", DL_FLOAT32, 1, &out), DL_SPEC_ERROR);
    CHECK_MESSAGE_HAS("in_features");
    static const char *const malformed[] = {
        "", "{", "not json", "[]", "42", "null", "\"relu\"", "{}", "{\"units\": 3}", "{\"typ\": \"relu\"}",
        "{\"type\": 3}", "{\"type\": \"conv9\"}", "{\"type\": \"Linear\", \"in_features\": 5, \"units\": 3}",
        "{\"type\": \"relu\"} trailing", "{\"type\": \"relu\", \"units\": 3}",
        "{\"type\": \"linear\", \"units\": 3}",
        "{\"type\": \"linear\", \"in_features\": 0, \"units\": 3}",
        "{\"type\": \"linear\", \"in_features\": -2, \"units\": 3}",
        "{\"type\": \"linear\", \"in_features\": 2.5, \"units\": 3}",
        "{\"type\": \"linear\", \"in_features\": \"5\", \"units\": 3}",
        "{\"type\": \"linear\", \"in_features\": 5}",
        "{\"type\": \"linear\", \"in_features\": 5, \"units\": 0}",
        "{\"type\": \"linear\", \"in_features\": 5, \"units\": 3, \"init\": \"ones\"}",
        "{\"type\": \"leaky_relu\", \"alpha\": 2}",
        "{\"type\": \"gelu\", \"approximate\": \"erf\"}", "{\"type\": \"gelu\", \"approximate\": true}",
        "{\"type\": \"silu\", \"beta\": 1}", "{\"type\": \"elu\", \"alpha\": -1}",
        "{\"type\": \"softplus\", \"beta\": 0}", "{\"type\": \"softplus\", \"treshold\": 20}",
    };
    for (int d = 0; d < 2; d++)
        for (size_t i = 0; i < sizeof malformed / sizeof malformed[0]; i++)
            if (!CHECK_STATUS(dl_layer_from_json(malformed[i], all_dtypes[d], 1, &out), DL_SPEC_ERROR))
                fprintf(stderr, "    layer JSON: %s\n", malformed[i]);
    /* Beyond the library's limits. */
    CHECK_STATUS(dl_layer_from_json("{\"type\": \"linear\", \"in_features\": 1000000000, \"units\": 1000000000}",
                                    DL_FLOAT32, 1, &out),
                 DL_NOMEM);
    CHECK(out == SENTINEL_LAYER);
}

/* ------------------------------------------------------------------------ */
/* Standalone layers and losses: handles                                     */
/* ------------------------------------------------------------------------ */

/* Every function that takes a layer refuses `bad` with DL_INVALID_ARGUMENT and leaves its
 * OUT parameters alone; the other arguments are valid for a float64 linear(3, 2). */
static void check_bad_layer(dl_layer *bad) {
    const char *text = sentinel_string;
    size_t n = 7, dims[4] = {7, 7, 7, 7}, ndim = 7;
    void *data = &sentinel_object;
    double x[6] = {1, 2, 3, 4, 5, 6}, y[6] = {7, 7, 7, 7, 7, 7};
    CHECK_STATUS(dl_layer_type(bad, &text), DL_INVALID_ARGUMENT);
    CHECK_STATUS(dl_layer_output_features(bad, 3, &n), DL_INVALID_ARGUMENT);
    CHECK_STATUS(dl_layer_forward(bad, x, 2, 3, 1, y, 6), DL_INVALID_ARGUMENT);
    CHECK_STATUS(dl_layer_forward(bad, x, 2, 3, 0, y, 6), DL_INVALID_ARGUMENT);
    CHECK_STATUS(dl_layer_backward(bad, x, 2, 2, y, 6), DL_INVALID_ARGUMENT);
    CHECK_STATUS(dl_layer_num_params(bad, &n), DL_INVALID_ARGUMENT);
    CHECK_STATUS(dl_layer_param_name(bad, 0, &text), DL_INVALID_ARGUMENT);
    CHECK_STATUS(dl_layer_param_shape(bad, 0, dims, 4, &ndim), DL_INVALID_ARGUMENT);
    CHECK_STATUS(dl_layer_param_data(bad, 0, &data), DL_INVALID_ARGUMENT);
    CHECK_STATUS(dl_layer_grad_data(bad, 1, &data), DL_INVALID_ARGUMENT);
    CHECK(text == sentinel_string && n == 7 && dims[0] == 7 && ndim == 7 && data == &sentinel_object);
    CHECK(all_equal(y, 0, 6, DL_FLOAT64, 7));
}

/* Every function that takes a loss refuses `bad`; the other arguments are valid for a
 * float64 MSE or cross-entropy on (2, 2). */
static void check_bad_loss(dl_loss *bad) {
    double pred[4] = {1, 2, 3, 4}, targets[4] = {0, 1, 1, 0}, value = 7, grad[4] = {7, 7, 7, 7};
    int32_t labels[2] = {1, 0};
    CHECK_STATUS(dl_loss_forward(bad, pred, 2, 2, NULL, targets, &value), DL_INVALID_ARGUMENT);
    CHECK_STATUS(dl_loss_forward(bad, pred, 2, 2, labels, NULL, &value), DL_INVALID_ARGUMENT);
    CHECK_STATUS(dl_loss_backward(bad, grad, 4), DL_INVALID_ARGUMENT);
    CHECK(value == 7 && all_equal(grad, 0, 4, DL_FLOAT64, 7));
}

static void test_layer_handles(void) {
    section("layer and loss handles: NULL, foreign, of another kind, freed");
    check_bad_layer(NULL);
    CHECK_MESSAGE_HAS("NULL");
    check_bad_layer(FOREIGN_LAYER);
    check_bad_loss(NULL);
    CHECK_MESSAGE_HAS("NULL");
    check_bad_loss(FOREIGN_LOSS);

    dl_model *model = load(xor_spec);
    dl_layer *layer = make_layer("{\"type\": \"linear\", \"in_features\": 3, \"units\": 2}", DL_FLOAT64, 1);
    dl_loss *loss = make_loss(mse_json, DL_FLOAT64);
    if (model == NULL || layer == NULL || loss == NULL) goto done;

    /* A live handle of another kind is not a layer, a loss or a model. */
    check_bad_layer((dl_layer *)(void *)model);
    check_bad_layer((dl_layer *)(void *)loss);
    check_bad_loss((dl_loss *)(void *)model);
    check_bad_loss((dl_loss *)(void *)layer);
    check_bad_handle((dl_model *)(void *)layer);
    check_bad_handle((dl_model *)(void *)loss);

    /* Freeing through the wrong function is ignored: all three still work. */
    dl_layer_free((dl_layer *)(void *)model);
    dl_loss_free((dl_loss *)(void *)model);
    dl_model_free((dl_model *)(void *)layer);
    dl_loss_free((dl_loss *)(void *)layer);
    dl_model_free((dl_model *)(void *)loss);
    dl_layer_free((dl_layer *)(void *)loss);
    size_t size = 0;
    CHECK_OK(dl_model_input_size(model, &size));
    CHECK(size == XOR_IN);
    CHECK_OK(dl_layer_num_params(layer, &size));
    CHECK(size == 2);
    double pred[4] = {1, 2, 3, 4}, targets[4] = {1, 2, 3, 5}, value = 7, grad[4];
    CHECK_OK(dl_loss_forward(loss, pred, 2, 2, NULL, targets, &value));
    CHECK(value == 0.25);
    CHECK_OK(dl_loss_backward(loss, grad, 4));

    /* NULL and foreign pointers are ignored by the frees. */
    dl_layer_free(NULL);
    dl_loss_free(NULL);
    dl_layer_free(FOREIGN_LAYER);
    dl_loss_free(FOREIGN_LOSS);

    /* Use after free, double free: nothing is created in between. */
    dl_layer_free(layer);
    check_bad_layer(layer);
    dl_layer_free(layer);
    dl_loss_free(loss);
    check_bad_loss(loss);
    dl_loss_free(loss);
    layer = NULL;
    loss = NULL;
    CHECK_OK(dl_model_input_size(model, &size)); /* the library still works */
done:
    release_loss(loss);
    release_layer(layer);
    release(model);
}

/* ------------------------------------------------------------------------ */
/* Standalone layers: error paths                                            */
/* ------------------------------------------------------------------------ */

static void test_layer_errors(void) {
    section("dl_layer_* error paths");
    enum { B = 4, IN = 5, OUT = 3 };
    dl_layer *l = make_layer(linear_5_3, DL_FLOAT64, 3), *relu = make_layer("{\"type\": \"relu\"}", DL_FLOAT64, 3);
    if (l == NULL || relu == NULL) goto done;
    double x[B * IN + 8], y[B * IN + 1], dy[B * IN], dx[B * IN + 1]; /* y: room for relu's output too */
    fill_uniform(x, B * IN + 8, 5, -1, 1);
    fill_uniform(dy, B * IN, 6, -1, 1);
    for (size_t i = 0; i < B * IN + 1; i++) y[i] = 7;
    for (size_t i = 0; i < B * IN + 1; i++) dx[i] = 7;
    void *w = NULL, *b = NULL, *gw = NULL, *gb = NULL;
    if (!CHECK_OK(dl_layer_param_data(l, 0, &w)) || !CHECK_OK(dl_layer_param_data(l, 1, &b)) ||
        !CHECK_OK(dl_layer_grad_data(l, 0, &gw)) || !CHECK_OK(dl_layer_grad_data(l, 1, &gb)) ||
        !CHECK(w != NULL && b != NULL && gw != NULL && gb != NULL))
        goto done;
    double w0[IN * OUT], gw0[IN * OUT], gb0[OUT];
    read_buffer(w, IN * OUT, DL_FLOAT64, w0);

    /* Backward before any forward. */
    CHECK_STATUS(dl_layer_backward(l, dy, B, OUT, dx, B * IN), DL_INVALID_ARGUMENT);
    CHECK_STATUS(dl_layer_backward(relu, dy, B, IN, dx, B * IN), DL_INVALID_ARGUMENT);
    CHECK(all_equal(dx, 0, B * IN + 1, DL_FLOAT64, 7));

    /* dl_layer_output_features: features the layer cannot take, NULL OUT. */
    size_t features = 7;
    CHECK_STATUS(dl_layer_output_features(l, IN - 1, &features), DL_INVALID_ARGUMENT);
    CHECK_STATUS(dl_layer_output_features(l, IN + 1, &features), DL_INVALID_ARGUMENT);
    CHECK_STATUS(dl_layer_output_features(l, 0, &features), DL_INVALID_ARGUMENT);
    CHECK_STATUS(dl_layer_output_features(l, SIZE_MAX, &features), DL_INVALID_ARGUMENT);
    CHECK_STATUS(dl_layer_output_features(relu, SIZE_MAX, &features), DL_INVALID_ARGUMENT);
    CHECK(features == 7);
    CHECK_STATUS(dl_layer_output_features(l, IN, NULL), DL_INVALID_ARGUMENT);
    CHECK_STATUS(dl_layer_output_features(relu, 4, NULL), DL_INVALID_ARGUMENT);

    /* dl_layer_forward: NULL buffers, empty or wrong shapes, short y; y untouched. */
    CHECK_STATUS(dl_layer_forward(l, NULL, B, IN, 1, y, B * OUT), DL_INVALID_ARGUMENT);
    CHECK_STATUS(dl_layer_forward(l, x, B, IN, 1, NULL, B * OUT), DL_INVALID_ARGUMENT);
    CHECK_STATUS(dl_layer_forward(l, x, 0, IN, 1, y, B * OUT), DL_INVALID_ARGUMENT);
    CHECK_STATUS(dl_layer_forward(l, x, B, 0, 1, y, B * OUT), DL_INVALID_ARGUMENT);
    CHECK_STATUS(dl_layer_forward(l, x, B, IN - 1, 1, y, B * OUT), DL_INVALID_ARGUMENT); /* wrong cols */
    CHECK_MESSAGE_HAS("5");
    CHECK_STATUS(dl_layer_forward(l, x, B, IN + 1, 1, y, B * OUT), DL_INVALID_ARGUMENT);
    CHECK_STATUS(dl_layer_forward(l, x, IN, B, 1, y, B * OUT), DL_INVALID_ARGUMENT); /* as many values, transposed */
    CHECK_STATUS(dl_layer_forward(l, x, B, IN, 1, y, B * OUT - 1), DL_INVALID_ARGUMENT); /* y one short */
    CHECK_STATUS(dl_layer_forward(l, x, B, IN, 0, y, B * OUT - 1), DL_INVALID_ARGUMENT);
    CHECK_STATUS(dl_layer_forward(l, x, B, IN, 1, y, 0), DL_INVALID_ARGUMENT);
    CHECK_STATUS(dl_layer_forward(relu, x, B, IN, 1, y, B * IN - 1), DL_INVALID_ARGUMENT);
    CHECK_STATUS(dl_layer_forward(relu, NULL, B, IN, 1, y, B * IN), DL_INVALID_ARGUMENT);
    CHECK_STATUS(dl_layer_forward(relu, x, B, 0, 1, y, B * IN), DL_INVALID_ARGUMENT);
    CHECK_STATUS(dl_layer_forward(relu, x, 0, IN, 1, y, B * IN), DL_INVALID_ARGUMENT);
    /* Sizes beyond size_t's or the library's range are refused before anything is read. */
    CHECK_STATUS(dl_layer_forward(l, x, SIZE_MAX, IN, 1, y, SIZE_MAX), DL_INVALID_ARGUMENT);
    CHECK_STATUS_EITHER(dl_layer_forward(l, x, SIZE_MAX / 2, IN, 1, y, SIZE_MAX), DL_INVALID_ARGUMENT, DL_NOMEM);
    CHECK_STATUS_EITHER(dl_layer_forward(relu, x, SIZE_MAX / 4, 8, 1, y, SIZE_MAX), DL_INVALID_ARGUMENT, DL_NOMEM);
    CHECK_STATUS(dl_layer_forward(relu, x, 1, SIZE_MAX, 1, y, SIZE_MAX), DL_INVALID_ARGUMENT);
    CHECK(all_equal(y, 0, B * IN + 1, DL_FLOAT64, 7));
    /* None of those was a forward. */
    CHECK_STATUS(dl_layer_backward(l, dy, B, OUT, dx, B * IN), DL_INVALID_ARGUMENT);
    CHECK_STATUS(dl_layer_backward(relu, dy, B, IN, dx, B * IN), DL_INVALID_ARGUMENT);

    /* Exactly rows * out_features elements are enough; the rest of a bigger y is untouched. */
    CHECK_OK(dl_layer_forward(l, x, B, IN, 1, y, B * OUT + 1));
    CHECK(y[B * OUT] == 7 && !all_equal(y, 0, B * OUT, DL_FLOAT64, 7));
    CHECK_OK(dl_layer_forward(l, x, B, IN, 1, y, B * OUT));
    CHECK_OK(dl_layer_forward(relu, x, B, IN, 1, dx, B * IN));
    for (size_t i = 0; i < B * IN + 1; i++) dx[i] = 7;
    read_buffer(gw, IN * OUT, DL_FLOAT64, gw0);
    read_buffer(gb, OUT, DL_FLOAT64, gb0);

    /* dl_layer_backward: NULL buffers, dy not shaped like the last output, short dx. */
    CHECK_STATUS(dl_layer_backward(l, NULL, B, OUT, dx, B * IN), DL_INVALID_ARGUMENT);
    CHECK_STATUS(dl_layer_backward(l, dy, B, OUT, NULL, B * IN), DL_INVALID_ARGUMENT);
    CHECK_STATUS(dl_layer_backward(l, dy, B, OUT, dx, B * IN - 1), DL_INVALID_ARGUMENT); /* dx one short */
    CHECK_STATUS(dl_layer_backward(l, dy, B, OUT, dx, 0), DL_INVALID_ARGUMENT);
    static const size_t bad_shape[][2] = {{B - 1, OUT}, {B + 1, OUT}, {B, OUT - 1}, {B, OUT + 1}, {OUT, B},
                                          {B * OUT, 1},  {1, B * OUT},  {B, IN},      {0, OUT},     {B, 0},
                                          {SIZE_MAX, OUT}, {B, SIZE_MAX}};
    for (size_t i = 0; i < sizeof bad_shape / sizeof bad_shape[0]; i++)
        if (!CHECK_STATUS(dl_layer_backward(l, dy, bad_shape[i][0], bad_shape[i][1], dx, SIZE_MAX), DL_INVALID_ARGUMENT))
            fprintf(stderr, "    dy of (%zu, %zu) after an output of (%d, %d)\n", bad_shape[i][0], bad_shape[i][1], B, OUT);
    CHECK_STATUS(dl_layer_backward(relu, dy, B, IN - 1, dx, B * IN), DL_INVALID_ARGUMENT);
    CHECK_STATUS(dl_layer_backward(relu, dy, IN, B, dx, B * IN), DL_INVALID_ARGUMENT);
    CHECK_STATUS(dl_layer_backward(relu, dy, B, IN, dx, B * IN - 1), DL_INVALID_ARGUMENT);
    CHECK_STATUS(dl_layer_backward(relu, NULL, B, IN, dx, B * IN), DL_INVALID_ARGUMENT);
    CHECK(all_equal(dx, 0, B * IN + 1, DL_FLOAT64, 7));
    /* Failed backwards store no gradient, and nothing changed the weights. */
    CHECK(max_error(gw, gw0, IN * OUT, DL_FLOAT64) == 0 && max_error(gb, gb0, OUT, DL_FLOAT64) == 0);
    CHECK(max_error(w, w0, IN * OUT, DL_FLOAT64) == 0);

    /* Exactly the input's size is enough for dx. */
    CHECK_OK(dl_layer_backward(l, dy, B, OUT, dx, B * IN + 1));
    CHECK(dx[B * IN] == 7);
    CHECK_OK(dl_layer_backward(l, dy, B, OUT, dx, B * IN));
    CHECK_OK(dl_layer_backward(relu, dy, B, IN, dx, B * IN));

    /* A failed forward leaves the last one in place; a new forward decides the next backward. */
    CHECK_STATUS(dl_layer_forward(l, x, 2, IN, 1, y, 2 * OUT - 1), DL_INVALID_ARGUMENT);
    CHECK_OK(dl_layer_backward(l, dy, B, OUT, dx, B * IN));
    CHECK_STATUS(dl_layer_backward(l, dy, 2, OUT, dx, B * IN), DL_INVALID_ARGUMENT);
    CHECK_OK(dl_layer_forward(l, x, 2, IN, 0, y, 2 * OUT));
    CHECK_STATUS(dl_layer_backward(l, dy, B, OUT, dx, B * IN), DL_INVALID_ARGUMENT);
    CHECK_STATUS(dl_layer_backward(l, dy, 2, OUT, dx, 2 * IN - 1), DL_INVALID_ARGUMENT);
    CHECK_OK(dl_layer_backward(l, dy, 2, OUT, dx, 2 * IN));

    /* Parameters by index: out of range, NULL OUTs, too few dims; OUTs untouched. */
    const char *text = sentinel_string;
    void *data = &sentinel_object;
    size_t dims[4] = {7, 7, 7, 7}, ndim = 7, count = 7;
    static const size_t bad_index[] = {2, 3, SIZE_MAX};
    for (size_t k = 0; k < 3; k++) {
        CHECK_STATUS(dl_layer_param_name(l, bad_index[k], &text), DL_INVALID_ARGUMENT);
        CHECK_STATUS(dl_layer_param_shape(l, bad_index[k], dims, 4, &ndim), DL_INVALID_ARGUMENT);
        CHECK_STATUS(dl_layer_param_data(l, bad_index[k], &data), DL_INVALID_ARGUMENT);
        CHECK_STATUS(dl_layer_grad_data(l, bad_index[k], &data), DL_INVALID_ARGUMENT);
    }
    CHECK_STATUS(dl_layer_param_name(relu, 0, &text), DL_INVALID_ARGUMENT); /* no parameters at all */
    CHECK_STATUS(dl_layer_param_shape(relu, 0, dims, 4, &ndim), DL_INVALID_ARGUMENT);
    CHECK_STATUS(dl_layer_param_data(relu, 0, &data), DL_INVALID_ARGUMENT);
    CHECK_STATUS(dl_layer_grad_data(relu, 0, &data), DL_INVALID_ARGUMENT);
    CHECK_STATUS(dl_layer_param_shape(l, 0, dims, 1, &ndim), DL_INVALID_ARGUMENT); /* weight has 2 dims */
    CHECK_STATUS(dl_layer_param_shape(l, 0, dims, 0, &ndim), DL_INVALID_ARGUMENT);
    CHECK_STATUS(dl_layer_param_shape(l, 1, dims, 0, &ndim), DL_INVALID_ARGUMENT);
    CHECK(text == sentinel_string && data == &sentinel_object && dims[0] == 7 && dims[1] == 7 && ndim == 7);
    CHECK_STATUS(dl_layer_param_shape(l, 0, NULL, 4, &ndim), DL_INVALID_ARGUMENT);
    CHECK_STATUS(dl_layer_param_shape(l, 0, dims, 4, NULL), DL_INVALID_ARGUMENT);
    CHECK(dims[0] == 7 && ndim == 7);
    CHECK_OK(dl_layer_param_shape(l, 1, dims, 1, &ndim)); /* bias: one dim is enough */
    CHECK(ndim == 1 && dims[0] == OUT && dims[1] == 7);
    CHECK_STATUS(dl_layer_param_name(l, 0, NULL), DL_INVALID_ARGUMENT);
    CHECK_STATUS(dl_layer_param_data(l, 0, NULL), DL_INVALID_ARGUMENT);
    CHECK_STATUS(dl_layer_grad_data(l, 0, NULL), DL_INVALID_ARGUMENT);
    CHECK_STATUS(dl_layer_type(l, NULL), DL_INVALID_ARGUMENT);
    CHECK_STATUS(dl_layer_num_params(l, NULL), DL_INVALID_ARGUMENT);
    CHECK_OK(dl_layer_num_params(l, &count));
    CHECK(count == 2);
done:
    release_layer(relu);
    release_layer(l);
}

/* ------------------------------------------------------------------------ */
/* Standalone layers: Linear against C references                            */
/* ------------------------------------------------------------------------ */

/* y = x W^T + b for x (rows, in), W (out, in), b (out) or NULL. */
static void linear_reference(const double *x, const double *w, const double *b, size_t rows, size_t in, size_t out,
                             double *y) {
    for (size_t r = 0; r < rows; r++)
        for (size_t o = 0; o < out; o++) {
            double s = b != NULL ? b[o] : 0;
            for (size_t i = 0; i < in; i++) s += x[r * in + i] * w[o * in + i];
            y[r * out + o] = s;
        }
}

/* dW = dy^T x, db = sum over rows of dy, dx = dy W. */
static void linear_backward_reference(const double *x, const double *w, const double *dy, size_t rows, size_t in,
                                      size_t out, double *dw, double *db, double *dx) {
    for (size_t o = 0; o < out; o++) {
        db[o] = 0;
        for (size_t r = 0; r < rows; r++) db[o] += dy[r * out + o];
        for (size_t i = 0; i < in; i++) {
            dw[o * in + i] = 0;
            for (size_t r = 0; r < rows; r++) dw[o * in + i] += dy[r * out + o] * x[r * in + i];
        }
    }
    for (size_t r = 0; r < rows; r++)
        for (size_t i = 0; i < in; i++) {
            dx[r * in + i] = 0;
            for (size_t o = 0; o < out; o++) dx[r * in + i] += dy[r * out + o] * w[o * in + i];
        }
}

static void test_linear(int dtype) {
    printf("-- linear(5, 3) in %s against y = x W^T + b, dW = dy^T x, db = sum dy, dx = dy W\n", dtype_name(dtype));
    enum { B = 4, IN = 5, OUT = 3, B2 = 7 };
    const double tol = tolerance(dtype);
    dl_layer *l = make_layer(linear_5_3, dtype, 11);
    void *w = NULL, *b = NULL, *gw = NULL, *gb = NULL;
    if (l == NULL || !CHECK_OK(dl_layer_param_data(l, 0, &w)) || !CHECK_OK(dl_layer_param_data(l, 1, &b)) ||
        !CHECK_OK(dl_layer_grad_data(l, 0, &gw)) || !CHECK_OK(dl_layer_grad_data(l, 1, &gb)) ||
        !CHECK(w != NULL && b != NULL && gw != NULL && gb != NULL)) {
        release_layer(l);
        return;
    }
    CHECK(layer_param_size(l, 0) == OUT * IN && layer_param_size(l, 1) == OUT);

    /* Parameters written through the pointers dl_layer_param_data gives. */
    double wv[OUT * IN], bv[OUT], xv[B2 * IN], dyv[B2 * OUT];
    fill_uniform(wv, OUT * IN, 21, -1, 1);
    fill_uniform(bv, OUT, 22, -1, 1);
    fill_uniform(xv, B2 * IN, 23, -2, 2);
    fill_uniform(dyv, B2 * OUT, 24, -1, 1);
    for (size_t i = 0; i < OUT * IN; i++) set_elem(w, i, dtype, wv[i]);
    for (size_t i = 0; i < OUT; i++) set_elem(b, i, dtype, bv[i]);
    void *x = new_buffer(B2 * IN, dtype, xv), *dy = new_buffer(B2 * OUT, dtype, dyv);
    void *y = new_buffer(B2 * OUT, dtype, NULL), *y2 = new_buffer(B2 * OUT, dtype, NULL);
    void *dx = new_buffer(B2 * IN, dtype, NULL);
    /* References from the values the library holds (rounded to float in float32). */
    double wr[OUT * IN], br[OUT], xr[B2 * IN], dyr[B2 * OUT], yr[B2 * OUT], dwr[OUT * IN], dbr[OUT], dxr[B2 * IN];
    read_buffer(w, OUT * IN, dtype, wr);
    read_buffer(b, OUT, dtype, br);
    read_buffer(x, B2 * IN, dtype, xr);
    read_buffer(dy, B2 * OUT, dtype, dyr);

    CHECK_OK(dl_layer_forward(l, x, B, IN, 1, y, B * OUT));
    linear_reference(xr, wr, br, B, IN, OUT, yr);
    double e_y = max_error(y, yr, B * OUT, dtype);
    CHECK(e_y <= tol);
    /* Training or not, a linear layer computes the same. */
    CHECK_OK(dl_layer_forward(l, x, B, IN, 0, y2, B * OUT));
    CHECK(memcmp(y, y2, B * OUT * (dtype == DL_FLOAT64 ? sizeof(double) : sizeof(float))) == 0);

    CHECK_OK(dl_layer_backward(l, dy, B, OUT, dx, B * IN));
    linear_backward_reference(xr, wr, dyr, B, IN, OUT, dwr, dbr, dxr);
    double e_dw = max_error(gw, dwr, OUT * IN, dtype), e_db = max_error(gb, dbr, OUT, dtype);
    double e_dx = max_error(dx, dxr, B * IN, dtype);
    CHECK(e_dw <= tol);
    CHECK(e_db <= tol);
    CHECK(e_dx <= tol);
    printf("   max error: y %.2g, dW %.2g, db %.2g, dx %.2g\n", e_y, e_dw, e_db, e_dx);
    /* Backward stores the gradients, it does not add to them; and it leaves the weights alone. */
    CHECK_OK(dl_layer_backward(l, dy, B, OUT, dx, B * IN));
    CHECK(max_error(gw, dwr, OUT * IN, dtype) <= tol && max_error(gb, dbr, OUT, dtype) <= tol);
    CHECK(max_error(w, wr, OUT * IN, dtype) == 0 && max_error(b, br, OUT, dtype) == 0);

    /* The parameter memory is live: writing it changes the next forward. */
    set_elem(w, 0, dtype, wr[0] + 1); /* W[0][0] */
    set_elem(b, 2, dtype, -0.5);
    read_buffer(w, OUT * IN, dtype, wr);
    read_buffer(b, OUT, dtype, br);
    CHECK_OK(dl_layer_forward(l, x, B, IN, 1, y2, B * OUT));
    double yr2[B2 * OUT];
    linear_reference(xr, wr, br, B, IN, OUT, yr2);
    CHECK(max_error(y2, yr2, B * OUT, dtype) <= tol);
    bool moved = true;
    for (size_t r = 0; r < B; r++) /* y[r][0] grew by x[r][0]; y[r][2] is the new bias plus the same dot product */
        moved = moved && fabs(get_elem(y2, r * OUT, dtype) - get_elem(y, r * OUT, dtype) - xr[r * IN]) <= 10 * tol;
    CHECK(moved);

    /* Another batch size: the same pointers, the references still hold. */
    CHECK_OK(dl_layer_forward(l, x, B2, IN, 1, y, B2 * OUT));
    CHECK_OK(dl_layer_backward(l, dy, B2, OUT, dx, B2 * IN));
    linear_reference(xr, wr, br, B2, IN, OUT, yr);
    linear_backward_reference(xr, wr, dyr, B2, IN, OUT, dwr, dbr, dxr);
    CHECK(max_error(y, yr, B2 * OUT, dtype) <= tol);
    CHECK(max_error(gw, dwr, OUT * IN, dtype) <= tol && max_error(gb, dbr, OUT, dtype) <= tol);
    CHECK(max_error(dx, dxr, B2 * IN, dtype) <= tol);
    void *w_again = NULL, *b_again = NULL, *gw_again = NULL, *gb_again = NULL;
    CHECK_OK(dl_layer_param_data(l, 0, &w_again));
    CHECK_OK(dl_layer_param_data(l, 1, &b_again));
    CHECK_OK(dl_layer_grad_data(l, 0, &gw_again));
    CHECK_OK(dl_layer_grad_data(l, 1, &gb_again));
    CHECK(w_again == w && b_again == b && gw_again == gw && gb_again == gb);

    /* An SGD step applied by the caller through the pointers: p -= lr * grad. */
    for (size_t i = 0; i < OUT * IN; i++) set_elem(w, i, dtype, wr[i] - 0.1 * get_elem(gw, i, dtype));
    for (size_t i = 0; i < OUT; i++) set_elem(b, i, dtype, br[i] - 0.1 * get_elem(gb, i, dtype));
    read_buffer(w, OUT * IN, dtype, wr);
    read_buffer(b, OUT, dtype, br);
    CHECK_OK(dl_layer_forward(l, x, B2, IN, 1, y, B2 * OUT));
    linear_reference(xr, wr, br, B2, IN, OUT, yr);
    CHECK(max_error(y, yr, B2 * OUT, dtype) <= tol);
    release_layer(l);

    /* Without a bias: one parameter, y = x W^T. */
    l = make_layer("{\"type\": \"linear\", \"in_features\": 5, \"units\": 3, \"bias\": false}", dtype, 12);
    if (l != NULL && CHECK_OK(dl_layer_param_data(l, 0, &w)) && CHECK_OK(dl_layer_grad_data(l, 0, &gw)) &&
        CHECK(w != NULL && gw != NULL)) {
        read_buffer(w, OUT * IN, dtype, wr);
        CHECK_OK(dl_layer_forward(l, x, B, IN, 1, y, B * OUT));
        linear_reference(xr, wr, NULL, B, IN, OUT, yr);
        CHECK(max_error(y, yr, B * OUT, dtype) <= tol);
        CHECK_OK(dl_layer_backward(l, dy, B, OUT, dx, B * IN));
        linear_backward_reference(xr, wr, dyr, B, IN, OUT, dwr, dbr, dxr);
        CHECK(max_error(gw, dwr, OUT * IN, dtype) <= tol);
        CHECK(max_error(dx, dxr, B * IN, dtype) <= tol);
    }
    release_layer(l);
    free(x);
    free(dy);
    free(y);
    free(y2);
    free(dx);
}

/* ------------------------------------------------------------------------ */
/* Standalone layers: activations against their formulas                     */
/* ------------------------------------------------------------------------ */

enum activation { RELU, LEAKY_RELU, SIGMOID, TANH, GELU, GELU_TANH, SILU, ELU, SOFTPLUS, SOFTMAX };

/* The activations' formulas with PyTorch's definitions; `a` and `b` are the options
 * (alpha of leaky_relu and elu; beta and threshold of softplus). */
static void activation_reference(enum activation kind, double a, double b, const double *x, const double *dy,
                                 size_t rows, size_t cols, double *y, double *dx) {
    size_t n = rows * cols;
    for (size_t i = 0; i < n; i++) {
        const double pi = acos(-1.0);
        double v = x[i], s = 1 / (1 + exp(-v)), k = sqrt(2 / pi), t = tanh(k * (v + 0.044715 * v * v * v));
        switch (kind) {
        case RELU: y[i] = v > 0 ? v : 0; dx[i] = v > 0 ? dy[i] : 0; break;
        case LEAKY_RELU: y[i] = v > 0 ? v : a * v; dx[i] = v > 0 ? dy[i] : a * dy[i]; break;
        case SIGMOID: y[i] = s; dx[i] = dy[i] * s * (1 - s); break;
        case TANH: y[i] = tanh(v); dx[i] = dy[i] * (1 - y[i] * y[i]); break;
        case GELU:
            y[i] = v * (1 + erf(v / sqrt(2))) / 2;
            dx[i] = dy[i] * ((1 + erf(v / sqrt(2))) / 2 + v * exp(-v * v / 2) / sqrt(2 * pi));
            break;
        case GELU_TANH:
            y[i] = v * (1 + t) / 2;
            dx[i] = dy[i] * ((1 + t) / 2 + v * (1 - t * t) * k * (1 + 3 * 0.044715 * v * v) / 2);
            break;
        case SILU: y[i] = v * s; dx[i] = dy[i] * s * (1 + v * (1 - s)); break;
        case ELU: y[i] = v > 0 ? v : a * expm1(v); dx[i] = v > 0 ? dy[i] : dy[i] * a * exp(v); break;
        case SOFTPLUS:
            y[i] = a * v > b ? v : log1p(exp(a * v)) / a;
            dx[i] = a * v > b ? dy[i] : dy[i] / (1 + exp(-a * v));
            break;
        case SOFTMAX: break;
        }
    }
    if (kind != SOFTMAX) return;
    for (size_t r = 0; r < rows; r++) {
        const double *xr = x + r * cols, *dyr = dy + r * cols;
        double *yr = y + r * cols, *dxr = dx + r * cols, top = xr[0], sum = 0, dot = 0;
        for (size_t c = 1; c < cols; c++) top = fmax(top, xr[c]);
        for (size_t c = 0; c < cols; c++) sum += yr[c] = exp(xr[c] - top);
        for (size_t c = 0; c < cols; c++) dot += dyr[c] * (yr[c] /= sum);
        for (size_t c = 0; c < cols; c++) dxr[c] = yr[c] * (dyr[c] - dot);
    }
}

static void test_activations(void) {
    section("every activation against its formula (float32, float64)");
    static const struct {
        const char *json;
        enum activation kind;
        double a, b;
    } acts[] = {
        {"{\"type\": \"relu\"}", RELU, 0, 0},
        {"{\"type\": \"leaky_relu\", \"alpha\": 0.2}", LEAKY_RELU, 0.2, 0},
        {"{\"type\": \"leaky_relu\"}", LEAKY_RELU, 0.01, 0}, /* the default alpha */
        {"{\"type\": \"sigmoid\"}", SIGMOID, 0, 0},
        {"{\"type\": \"tanh\"}", TANH, 0, 0},
        {"{\"type\": \"gelu\"}", GELU, 0, 0},
        {"{\"type\": \"gelu\", \"approximate\": \"tanh\"}", GELU_TANH, 0, 0},
        {"{\"type\": \"silu\"}", SILU, 0, 0},
        {"{\"type\": \"elu\"}", ELU, 1, 0}, /* PyTorch's default alpha */
        {"{\"type\": \"elu\", \"alpha\": 0.5}", ELU, 0.5, 0},
        {"{\"type\": \"softplus\"}", SOFTPLUS, 1, 20}, /* PyTorch's defaults: linear only for x > 20 */
        {"{\"type\": \"softplus\", \"beta\": 2, \"threshold\": 1.5}", SOFTPLUS, 2, 1.5},
        {"{\"type\": \"softmax\"}", SOFTMAX, 0, 0},
    };
    /* Three rows of four: both signs, no exact zero (where the derivative is a convention),
     * and a row of large values (softmax must subtract the maximum, sigmoid saturate). */
    enum { ROWS = 3, COLS = 4, N = ROWS * COLS };
    static const double xv[N] = {-2.5, -1.0, -0.3, 0.2, 0.7, 1.5, 3.0, -4.0, 100, 101, 99, 98.5};
    double dyv[N];
    fill_uniform(dyv, N, 31, -1, 1);
    for (int d = 0; d < 2; d++) {
        int dtype = all_dtypes[d];
        const double tol = tolerance(dtype);
        void *x = new_buffer(N, dtype, xv), *dy = new_buffer(N, dtype, dyv);
        void *y = new_buffer(N + 1, dtype, NULL), *dx = new_buffer(N + 1, dtype, NULL);
        double xr[N], dyr[N], yr[N], dxr[N];
        read_buffer(x, N, dtype, xr);
        read_buffer(dy, N, dtype, dyr);
        for (size_t a = 0; a < sizeof acts / sizeof acts[0]; a++) {
            dl_layer *l = make_layer(acts[a].json, dtype, 1);
            if (l == NULL) continue;
            double worst = 0;
            /* The same layer on (3, 4), then (2, 6), then (12, 1): any number of features. */
            static const size_t shapes[3][2] = {{ROWS, COLS}, {2, 6}, {N, 1}};
            for (size_t s = 0; s < 3; s++) {
                size_t rows = shapes[s][0], cols = shapes[s][1];
                activation_reference(acts[a].kind, acts[a].a, acts[a].b, xr, dyr, rows, cols, yr, dxr);
                set_elem(y, N, dtype, 7);
                set_elem(dx, N, dtype, 7);
                if (!CHECK_OK(dl_layer_forward(l, x, rows, cols, (int)s % 2, y, N)) ||
                    !CHECK_OK(dl_layer_backward(l, dy, rows, cols, dx, N)))
                    continue;
                double ey = max_error(y, yr, N, dtype), edx = max_error(dx, dxr, N, dtype);
                if (!CHECK(ey <= tol && edx <= tol))
                    fprintf(stderr, "    %s %s on (%zu, %zu): max error y %.3g, dx %.3g\n", acts[a].json,
                            dtype_name(dtype), rows, cols, ey, edx);
                worst = fmax(worst, fmax(ey, edx));
                if (acts[a].kind == SOFTMAX) { /* rows of probabilities */
                    bool sums = true;
                    for (size_t r = 0; r < rows; r++) {
                        double sum = 0;
                        for (size_t c = 0; c < cols; c++) sum += get_elem(y, r * cols + c, dtype);
                        sums = sums && fabs(sum - 1) <= tol;
                    }
                    CHECK(sums);
                }
            }
            printf("   %-50s %s: max error %.2g\n", acts[a].json, dtype_name(dtype), worst);
            release_layer(l);
        }
        free(x);
        free(dy);
        free(y);
        free(dx);
    }
}

/* ------------------------------------------------------------------------ */
/* Standalone losses                                                         */
/* ------------------------------------------------------------------------ */

/* Runs dl_loss_forward + dl_loss_backward with `pred` and `targets` (rows * cols doubles,
 * converted to the loss's dtype) or `labels`; checks value and gradient against the
 * references; returns the value (NaN on failure). */
static double run_loss(dl_loss *loss, int dtype, const double *pred, size_t rows, size_t cols, const int32_t *labels,
                       const double *targets, double want_value, const double *want_grad, const char *what) {
    size_t n = rows * cols;
    void *p = new_buffer(n, dtype, pred), *t = targets != NULL ? new_buffer(n, dtype, targets) : NULL;
    void *g = new_buffer(n + 1, dtype, NULL);
    double value = NAN;
    if (loss != NULL && CHECK_OK(dl_loss_forward(loss, p, rows, cols, labels, t, &value)) &&
        CHECK_OK(dl_loss_backward(loss, g, n + 1))) {
        double ev = fabs(value - want_value) / fmax(1, fabs(want_value)), eg = max_error(g, want_grad, n, dtype);
        if (!CHECK(ev <= tolerance(dtype) && eg <= tolerance(dtype)))
            fprintf(stderr, "    %s (%s): value %.17g, expected %.17g; gradient max error %.3g\n", what,
                    dtype_name(dtype), value, want_value, eg);
        CHECK(get_elem(g, n, dtype) == 7); /* rows * cols elements, no more */
        printf("   %-44s %s: %.10g (error %.2g), gradient max error %.2g\n", what, dtype_name(dtype), value, ev, eg);
    }
    free(p);
    free(t);
    free(g);
    return value;
}

/* Mean softmax cross-entropy of logits (rows, cols) against target rows, and its gradient
 * (softmax * sum(t) - t) / rows. */
static double cross_entropy_reference(const double *z, const double *t, size_t rows, size_t cols, double *grad) {
    double sum = 0;
    for (size_t r = 0; r < rows; r++) {
        const double *zr = z + r * cols, *tr = t + r * cols;
        double top = zr[0], s = 0, tsum = 0;
        for (size_t c = 1; c < cols; c++) top = fmax(top, zr[c]);
        for (size_t c = 0; c < cols; c++) s += exp(zr[c] - top);
        double log_z = top + log(s);
        for (size_t c = 0; c < cols; c++) {
            sum -= tr[c] * (zr[c] - log_z);
            tsum += tr[c];
        }
        for (size_t c = 0; c < cols; c++) grad[r * cols + c] = (exp(zr[c] - log_z) * tsum - tr[c]) / (double)rows;
    }
    return sum / (double)rows;
}

/* Mean Huber loss over all n elements and its gradient. */
static double huber_reference(const double *p, const double *t, size_t n, double delta, double *grad) {
    double sum = 0;
    for (size_t i = 0; i < n; i++) {
        double d = p[i] - t[i];
        sum += fabs(d) <= delta ? 0.5 * d * d : delta * (fabs(d) - 0.5 * delta);
        grad[i] = (fabs(d) <= delta ? d : (d > 0 ? delta : -delta)) / (double)n;
    }
    return sum / (double)n;
}

static void test_losses(void) {
    section("mse, cross_entropy, huber against their formulas (float32, float64)");
    for (int d = 0; d < 2; d++) {
        int dtype = all_dtypes[d];
        /* The tutorial's example: MSE 0.25, gradient 2 (p - t) / N over all N = 4 elements. */
        static const double p[4] = {1, 2, 3, 4}, t[4] = {1.5, 2.5, 2.5, 3.5};
        double grad[6] = {0};
        for (int i = 0; i < 4; i++) grad[i] = 2 * (p[i] - t[i]) / 4;
        dl_loss *mse = make_loss(mse_json, dtype), *mse_string = make_loss("\"mse\"", dtype);
        CHECK(run_loss(mse, dtype, p, 2, 2, NULL, t, 0.25, grad, "mse, tutorial example") == 0.25);
        if (mse_string != NULL) /* the header's own example: a loss given by its name alone */
            run_loss(mse_string, dtype, p, 2, 2, NULL, t, 0.25, grad, "\"mse\", tutorial example");
        /* The same values as one row of 4 or 4 rows of 1: the mean is over elements. */
        run_loss(mse, dtype, p, 1, 4, NULL, t, 0.25, grad, "mse, as (1, 4)");
        run_loss(mse, dtype, p, 4, 1, NULL, t, 0.25, grad, "mse, as (4, 1)");

        /* Cross-entropy of the logits [[2, 1, 0.1], [0.5, 2.5, 0.3]] with labels [0, 1]. */
        static const double z[6] = {2, 1, 0.1, 0.5, 2.5, 0.3}, onehot[6] = {1, 0, 0, 0, 1, 0};
        static const int32_t labels[2] = {0, 1};
        double ce_grad[6], soft_grad[6];
        double ce = cross_entropy_reference(z, onehot, 2, 3, ce_grad);
        CHECK(fabs(ce - 0.3185397) < 1e-7);
        dl_loss *xent = make_loss(xent_json, dtype), *xent_string = make_loss("\"cross_entropy\"", dtype);
        if (xent_string != NULL)
            run_loss(xent_string, dtype, z, 2, 3, labels, NULL, ce, ce_grad, "\"cross_entropy\", labels [0, 1]");
        double v1 = run_loss(xent, dtype, z, 2, 3, labels, NULL, ce, ce_grad, "cross_entropy, labels [0, 1]");
        double v2 = run_loss(xent, dtype, z, 2, 3, NULL, onehot, ce, ce_grad, "cross_entropy, one-hot targets");
        CHECK(fabs(v1 - v2) <= tolerance(dtype));
        /* Soft targets: -sum t log softmax, gradient softmax - t (rows of probabilities). */
        static const double soft[6] = {0.7, 0.2, 0.1, 0.1, 0.6, 0.3};
        double soft_ce = cross_entropy_reference(z, soft, 2, 3, soft_grad);
        run_loss(xent, dtype, z, 2, 3, NULL, soft, soft_ce, soft_grad, "cross_entropy, soft targets");
        /* Large logits: computed stably. */
        static const double big[6] = {1000, 999, 998, -1000, 500, 501};
        static const int32_t big_labels[2] = {1, 2};
        double big_onehot[6] = {0, 1, 0, 0, 0, 1}, big_grad[6];
        double big_ce = cross_entropy_reference(big, big_onehot, 2, 3, big_grad);
        run_loss(xent, dtype, big, 2, 3, big_labels, NULL, big_ce, big_grad, "cross_entropy, logits near 1000");

        /* Huber with delta 1: |d| below, at and above delta, both signs. */
        static const double hp[6] = {0, 2.5, -0.5, 1.0, -3, 0.25}, ht[6] = {0.3, 0, 0, 0, 0, -0.75};
        double h_grad[6], h_grad_half[6];
        double h = huber_reference(hp, ht, 6, 1.0, h_grad), h_half = huber_reference(hp, ht, 6, 0.5, h_grad_half);
        CHECK(fabs(h - 0.945) < 1e-12);
        dl_loss *huber = make_loss("{\"type\": \"huber\", \"delta\": 1.0}", dtype);
        dl_loss *huber_default = make_loss(huber_json, dtype), *huber_string = make_loss("\"huber\"", dtype);
        dl_loss *huber_half = make_loss("{\"type\": \"huber\", \"delta\": 0.5}", dtype);
        run_loss(huber, dtype, hp, 2, 3, NULL, ht, h, h_grad, "huber, delta 1");
        run_loss(huber_default, dtype, hp, 2, 3, NULL, ht, h, h_grad, "{\"type\": \"huber\"}: default delta 1");
        if (huber_string != NULL) run_loss(huber_string, dtype, hp, 2, 3, NULL, ht, h, h_grad, "\"huber\": default delta 1");
        run_loss(huber_half, dtype, hp, 2, 3, NULL, ht, h_half, h_grad_half, "huber, delta 0.5");

        release_loss(huber_half);
        release_loss(huber_string);
        release_loss(huber_default);
        release_loss(huber);
        release_loss(xent_string);
        release_loss(xent);
        release_loss(mse_string);
        release_loss(mse);
    }
}

/* Mean binary cross-entropy of logits against targets in [0, 1] over all n elements, from
 * its definition -(t log s + (1 - t) log(1 - s)), s = sigmoid(x), and its gradient (s - t) / n. */
static double binary_cross_entropy_reference(const double *x, const double *t, size_t n, double *grad) {
    double sum = 0;
    for (size_t i = 0; i < n; i++) {
        double s = 1 / (1 + exp(-x[i]));
        sum -= t[i] * log(s) + (1 - t[i]) * log(1 - s);
        grad[i] = (s - t[i]) / (double)n;
    }
    return sum / (double)n;
}

static void test_losses_from_the_registry(void) {
    section("binary_cross_entropy, label smoothing, dl_registry_json, dl_model_end_epoch");
    for (int d = 0; d < 2; d++) {
        int dtype = all_dtypes[d];
        static const double x[6] = {0.3, -1.2, 2.0, -0.4, 0.0, 5.0}, t[6] = {1, 0, 0.25, 0, 1, 1};
        double grad[6];
        double want = binary_cross_entropy_reference(x, t, 6, grad);
        dl_loss *bce = make_loss("\"binary_cross_entropy\"", dtype);
        run_loss(bce, dtype, x, 2, 3, NULL, t, want, grad, "binary_cross_entropy, multi-label rows");
        run_loss(bce, dtype, x, 6, 1, NULL, t, want, grad, "binary_cross_entropy, one output");
        release_loss(bce);

        /* Label smoothing 0.3 over 3 classes: the target row becomes 0.7 onehot + 0.1. */
        static const double z[6] = {2, 1, 0.1, 0.5, 2.5, 0.3}, smoothed[6] = {0.8, 0.1, 0.1, 0.1, 0.1, 0.8};
        static const int32_t labels[2] = {0, 2};
        double ce_grad[6];
        double ce = cross_entropy_reference(z, smoothed, 2, 3, ce_grad);
        dl_loss *xent = make_loss("{\"type\": \"cross_entropy\", \"label_smoothing\": 0.3}", dtype);
        run_loss(xent, dtype, z, 2, 3, labels, NULL, ce, ce_grad, "cross_entropy, label_smoothing 0.3");
        release_loss(xent);
    }

    const char *registry = dl_registry_json();
    CHECK(registry != NULL && registry == dl_registry_json());
    CHECK(strstr(registry, "\"binary_cross_entropy\"") != NULL && strstr(registry, "\"adamw\"") != NULL &&
          strstr(registry, "\"cosine\"") != NULL && strstr(registry, "\"label_smoothing\"") != NULL);

    CHECK_STATUS(dl_model_end_epoch(NULL), DL_INVALID_ARGUMENT);
    dl_model *m = NULL;
    const char *spec = "{\"input_size\": 2, \"layers\": [{\"type\": \"linear\", \"units\": 2}], \"loss\": \"mse\","
                       " \"optimizer\": {\"type\": \"sgd\", \"lr\": 0.4, \"schedule\": {\"type\": \"step\","
                       " \"step_size\": 2, \"gamma\": 0.5}}}";
    if (CHECK_OK(dl_model_from_json(spec, &m))) {
        double rates[5];
        for (int e = 0; e < 5; e++) {
            CHECK_OK(dl_model_get_learning_rate(m, &rates[e]));
            CHECK_OK(dl_model_end_epoch(m));
        }
        CHECK(rates[0] == 0.4 && rates[1] == 0.4 && rates[2] == 0.2 && rates[3] == 0.2 && rates[4] == 0.1);
        dl_model_free(m);
    }
}

static void test_loss_errors(void) {
    section("dl_loss_* error paths");
    for (int d = 0; d < 2; d++) {
        int dtype = all_dtypes[d];
        /* Creation. */
        dl_loss *out = SENTINEL_LOSS;
        CHECK_STATUS(dl_loss_from_json(NULL, dtype, &out), DL_INVALID_ARGUMENT);
        CHECK_STATUS(dl_loss_from_json(mse_json, dtype, NULL), DL_INVALID_ARGUMENT);
        static const int bad_dtype[] = {2, -1, INT_MAX, INT_MIN};
        for (size_t i = 0; i < sizeof bad_dtype / sizeof bad_dtype[0]; i++) {
            CHECK_STATUS(dl_loss_from_json(mse_json, bad_dtype[i], &out), DL_INVALID_ARGUMENT);
            CHECK_MESSAGE_HAS("dtype");
            CHECK_STATUS(dl_loss_from_json("\"mse\"", bad_dtype[i], &out), DL_INVALID_ARGUMENT);
            CHECK_MESSAGE_HAS("dtype");
        }
        static const char *const malformed[] = {
            "", "mse", "\"", "\"nope\"", "\"MSE\"", "42", "null", "[]", "{}", "{\"type\": \"nope\"}", "{\"type\": 1}",
            "{\"type\": \"mse\", \"delta\": 1}", "{\"type\": \"huber\", \"delta\": -1}",
            "{\"type\": \"huber\", \"delta\": 0}", "{\"type\": \"huber\", \"delta\": \"1\"}", "\"mse\" trailing",
            "{\"type\": \"relu\"}",
        };
        for (size_t i = 0; i < sizeof malformed / sizeof malformed[0]; i++)
            if (!CHECK_STATUS(dl_loss_from_json(malformed[i], dtype, &out), DL_SPEC_ERROR))
                fprintf(stderr, "    loss JSON: %s\n", malformed[i]);
        CHECK(out == SENTINEL_LOSS);

        dl_loss *mse = make_loss(mse_json, dtype), *huber = make_loss(huber_json, dtype);
        dl_loss *xent = make_loss(xent_json, dtype);
        if (mse == NULL || huber == NULL || xent == NULL) goto done;
        enum { ROWS = 2, COLS = 3, N = ROWS * COLS };
        static const double pv[N] = {2, 1, 0.1, 0.5, 2.5, 0.3}, tv[N] = {1, 0, 0, 0, 1, 0};
        void *p = new_buffer(N, dtype, pv), *t = new_buffer(N, dtype, tv), *g = new_buffer(N, dtype, NULL);
        int32_t labels[ROWS] = {0, 1};
        double value = 7;

        /* Backward before any forward. */
        CHECK_STATUS(dl_loss_backward(mse, g, N), DL_INVALID_ARGUMENT);
        CHECK_STATUS(dl_loss_backward(xent, g, N), DL_INVALID_ARGUMENT);

        /* NULL pointers, empty shapes, sizes out of range. */
        CHECK_STATUS(dl_loss_forward(mse, NULL, ROWS, COLS, NULL, t, &value), DL_INVALID_ARGUMENT);
        CHECK_STATUS(dl_loss_forward(mse, p, ROWS, COLS, NULL, t, NULL), DL_INVALID_ARGUMENT);
        CHECK_STATUS(dl_loss_forward(mse, p, 0, COLS, NULL, t, &value), DL_INVALID_ARGUMENT);
        CHECK_STATUS(dl_loss_forward(mse, p, ROWS, 0, NULL, t, &value), DL_INVALID_ARGUMENT);
        CHECK_STATUS(dl_loss_forward(xent, p, 0, COLS, labels, NULL, &value), DL_INVALID_ARGUMENT);
        CHECK_STATUS(dl_loss_forward(mse, p, SIZE_MAX, COLS, NULL, t, &value), DL_INVALID_ARGUMENT);
        CHECK_STATUS_EITHER(dl_loss_forward(mse, p, SIZE_MAX / 2, COLS, NULL, t, &value), DL_INVALID_ARGUMENT, DL_NOMEM);
        CHECK_STATUS_EITHER(dl_loss_forward(xent, p, SIZE_MAX / 2, COLS, labels, NULL, &value), DL_INVALID_ARGUMENT,
                            DL_NOMEM);
        /* Exactly one of labels and targets. */
        CHECK_STATUS(dl_loss_forward(xent, p, ROWS, COLS, labels, t, &value), DL_INVALID_ARGUMENT);
        CHECK_STATUS(dl_loss_forward(xent, p, ROWS, COLS, NULL, NULL, &value), DL_INVALID_ARGUMENT);
        CHECK_STATUS(dl_loss_forward(mse, p, ROWS, COLS, labels, t, &value), DL_INVALID_ARGUMENT);
        CHECK_STATUS(dl_loss_forward(mse, p, ROWS, COLS, NULL, NULL, &value), DL_INVALID_ARGUMENT);
        /* Class labels with a regression loss. */
        CHECK_STATUS(dl_loss_forward(mse, p, ROWS, COLS, labels, NULL, &value), DL_UNSUPPORTED);
        CHECK_STATUS(dl_loss_forward(huber, p, ROWS, COLS, labels, NULL, &value), DL_UNSUPPORTED);
        /* Labels out of range. */
        static const int32_t bad_label[] = {-1, COLS, COLS + 1, INT32_MAX, INT32_MIN};
        for (size_t i = 0; i < sizeof bad_label / sizeof bad_label[0]; i++) {
            labels[1] = bad_label[i];
            CHECK_STATUS(dl_loss_forward(xent, p, ROWS, COLS, labels, NULL, &value), DL_INVALID_ARGUMENT);
        }
        labels[1] = 1;
        /* NaN or infinity in the predictions or the targets. */
        static const double bad_value[] = {NAN, INFINITY, -INFINITY};
        for (size_t i = 0; i < 3; i++) {
            set_elem(p, N - 1, dtype, bad_value[i]);
            CHECK_STATUS(dl_loss_forward(mse, p, ROWS, COLS, NULL, t, &value), DL_NUMERIC);
            CHECK_STATUS(dl_loss_forward(huber, p, ROWS, COLS, NULL, t, &value), DL_NUMERIC);
            CHECK_STATUS(dl_loss_forward(xent, p, ROWS, COLS, labels, NULL, &value), DL_NUMERIC);
            CHECK_STATUS(dl_loss_forward(xent, p, ROWS, COLS, NULL, t, &value), DL_NUMERIC);
            set_elem(p, N - 1, dtype, pv[N - 1]);
            set_elem(t, 0, dtype, bad_value[i]);
            CHECK_STATUS(dl_loss_forward(mse, p, ROWS, COLS, NULL, t, &value), DL_NUMERIC);
            CHECK_STATUS(dl_loss_forward(huber, p, ROWS, COLS, NULL, t, &value), DL_NUMERIC);
            CHECK_STATUS(dl_loss_forward(xent, p, ROWS, COLS, NULL, t, &value), DL_NUMERIC);
            set_elem(t, 0, dtype, tv[0]);
        }
        CHECK(value == 7);
        /* None of those was a forward. */
        CHECK_STATUS(dl_loss_backward(mse, g, N), DL_INVALID_ARGUMENT);
        CHECK_STATUS(dl_loss_backward(xent, g, N), DL_INVALID_ARGUMENT);
        CHECK(all_equal(g, 0, N, dtype, 7));

        /* After a forward: NULL grad, grad one short; grad untouched. */
        CHECK_OK(dl_loss_forward(mse, p, ROWS, COLS, NULL, t, &value));
        double first = value;
        CHECK_STATUS(dl_loss_backward(mse, NULL, N), DL_INVALID_ARGUMENT);
        CHECK_STATUS(dl_loss_backward(mse, g, N - 1), DL_INVALID_ARGUMENT);
        CHECK_STATUS(dl_loss_backward(mse, g, 0), DL_INVALID_ARGUMENT);
        CHECK(all_equal(g, 0, N, dtype, 7));
        CHECK_OK(dl_loss_backward(mse, g, N));
        double want[N];
        for (size_t i = 0; i < N; i++) want[i] = 2 * (get_elem(p, i, dtype) - tv[i]) / N;
        CHECK(max_error(g, want, N, dtype) <= tolerance(dtype));
        /* A failed forward changes nothing: value untouched, backward gives the last gradient. */
        value = 7;
        set_elem(p, 0, dtype, NAN);
        CHECK_STATUS(dl_loss_forward(mse, p, 1, 2, NULL, t, &value), DL_NUMERIC);
        CHECK_STATUS(dl_loss_forward(mse, p, ROWS, COLS, labels, NULL, &value), DL_UNSUPPORTED);
        set_elem(p, 0, dtype, pv[0]);
        CHECK(value == 7);
        for (size_t i = 0; i < N; i++) set_elem(g, i, dtype, 7);
        CHECK_OK(dl_loss_backward(mse, g, N));
        CHECK(max_error(g, want, N, dtype) <= tolerance(dtype));
        /* A successful forward on another shape: backward follows it. */
        CHECK_OK(dl_loss_forward(mse, p, 1, 2, NULL, t, &value));
        CHECK(value != first);
        for (size_t i = 0; i < N; i++) set_elem(g, i, dtype, 7);
        CHECK_STATUS(dl_loss_backward(mse, g, 1), DL_INVALID_ARGUMENT);
        CHECK_OK(dl_loss_backward(mse, g, 2));
        CHECK(all_equal(g, 2, N, dtype, 7));
        for (size_t i = 0; i < 2; i++) want[i] = (get_elem(p, i, dtype) - tv[i]); /* 2 (p - t) / 2 */
        CHECK(max_error(g, want, 2, dtype) <= tolerance(dtype));
        /* Cross-entropy after a good forward, then out-of-range labels: the last gradient stays. */
        CHECK_OK(dl_loss_forward(xent, p, ROWS, COLS, labels, NULL, &value));
        labels[0] = COLS;
        CHECK_STATUS(dl_loss_forward(xent, p, ROWS, COLS, labels, NULL, &value), DL_INVALID_ARGUMENT);
        labels[0] = 0;
        CHECK_OK(dl_loss_backward(xent, g, N));
        double ce_grad[N];
        cross_entropy_reference(pv, tv, ROWS, COLS, ce_grad);
        CHECK(max_error(g, ce_grad, N, dtype) <= tolerance(dtype));
        free(p);
        free(t);
        free(g);
    done:
        release_loss(xent);
        release_loss(huber);
        release_loss(mse);
    }
}

/* ------------------------------------------------------------------------ */
/* Finite differences through dl_layer_* and dl_loss_* (float64)             */
/* ------------------------------------------------------------------------ */

/* MSE of linear(x) against t, through the library. */
static double fd_loss(dl_layer *l, dl_loss *loss, const double *x, const double *t, size_t rows, size_t in,
                      size_t out, double *y) {
    double value = NAN;
    if (!CHECK_OK(dl_layer_forward(l, x, rows, in, 1, y, rows * out)) ||
        !CHECK_OK(dl_loss_forward(loss, y, rows, out, NULL, t, &value)))
        return NAN;
    return value;
}

/* max|a - n| / max(max|a|, max|n|), as dl_gradcheck. */
static double relative_error(const double *a, const double *n, size_t count) {
    double diff = 0, scale = 0;
    for (size_t i = 0; i < count; i++) {
        diff = fmax(diff, fabs(a[i] - n[i]));
        scale = fmax(scale, fmax(fabs(a[i]), fabs(n[i])));
    }
    return scale > 0 ? diff / scale : diff;
}

static void test_layer_finite_differences(void) {
    section("finite differences: linear(6, 4) + mse in float64 through dl_layer_*, dl_loss_*");
    enum { B = 5, IN = 6, OUT = 4 };
    const double h = 1e-6;
    dl_layer *l = make_layer("{\"type\": \"linear\", \"in_features\": 6, \"units\": 4}", DL_FLOAT64, 17);
    dl_loss *loss = make_loss(mse_json, DL_FLOAT64);
    double *w = NULL, *b = NULL;
    void *wp = NULL, *bp = NULL, *gw = NULL, *gb = NULL;
    if (l == NULL || loss == NULL || !CHECK_OK(dl_layer_param_data(l, 0, &wp)) ||
        !CHECK_OK(dl_layer_param_data(l, 1, &bp)) || !CHECK_OK(dl_layer_grad_data(l, 0, &gw)) ||
        !CHECK_OK(dl_layer_grad_data(l, 1, &gb)) || !CHECK(wp != NULL && bp != NULL && gw != NULL && gb != NULL))
        goto done;
    w = wp;
    b = bp;
    fill_uniform(b, OUT, 40, -0.5, 0.5); /* a bias that is not zero */
    double x[B * IN], t[B * OUT], y[B * OUT], dy[B * OUT], dx[B * IN];
    fill_uniform(x, B * IN, 41, -1, 1);
    fill_uniform(t, B * OUT, 42, -1, 1);

    /* Analytic: forward, loss, dL/dy, backward. */
    double value = fd_loss(l, loss, x, t, B, IN, OUT, y);
    if (!CHECK(isfinite(value)) || !CHECK_OK(dl_loss_backward(loss, dy, B * OUT)) ||
        !CHECK_OK(dl_layer_backward(l, dy, B, OUT, dx, B * IN)))
        goto done;
    double a_w[OUT * IN], a_b[OUT], n_w[OUT * IN], n_b[OUT], n_x[B * IN];
    memcpy(a_w, gw, sizeof a_w);
    memcpy(a_b, gb, sizeof a_b);

    /* Numeric: centred differences, the parameters nudged through their live memory. */
    for (size_t i = 0; i < OUT * IN; i++) {
        double keep = w[i];
        w[i] = keep + h;
        double plus = fd_loss(l, loss, x, t, B, IN, OUT, y);
        w[i] = keep - h;
        double minus = fd_loss(l, loss, x, t, B, IN, OUT, y);
        w[i] = keep;
        n_w[i] = (plus - minus) / (2 * h);
    }
    for (size_t i = 0; i < OUT; i++) {
        double keep = b[i];
        b[i] = keep + h;
        double plus = fd_loss(l, loss, x, t, B, IN, OUT, y);
        b[i] = keep - h;
        double minus = fd_loss(l, loss, x, t, B, IN, OUT, y);
        b[i] = keep;
        n_b[i] = (plus - minus) / (2 * h);
    }
    for (size_t i = 0; i < B * IN; i++) {
        double keep = x[i];
        x[i] = keep + h;
        double plus = fd_loss(l, loss, x, t, B, IN, OUT, y);
        x[i] = keep - h;
        double minus = fd_loss(l, loss, x, t, B, IN, OUT, y);
        x[i] = keep;
        n_x[i] = (plus - minus) / (2 * h);
    }
    double e_w = relative_error(a_w, n_w, OUT * IN), e_b = relative_error(a_b, n_b, OUT);
    double e_x = relative_error(dx, n_x, B * IN);
    CHECK(e_w < 1e-7);
    CHECK(e_b < 1e-7);
    CHECK(e_x < 1e-7);
    printf("   loss %.6g; relative error dW %.2g, db %.2g, dx %.2g\n", value, e_w, e_b, e_x);
    /* The nudges were undone: the loss is back where it was. */
    CHECK(fd_loss(l, loss, x, t, B, IN, OUT, y) == value);
done:
    release_loss(loss);
    release_layer(l);
}

/* ------------------------------------------------------------------------ */
/* Data sets: files written here, loaded through dl_dataset_*                */
/* ------------------------------------------------------------------------ */

/*
 * A separable problem of two-pixel "images" (IDX, 1 x 2 bytes): the label is 1 when the
 * first pixel is the brighter, 0 otherwise, with a margin of at least 24. The training
 * split is written as train-*-ubyte, the test split as t10k-*-ubyte, so that the folder
 * is also an MNIST folder.
 */
enum { DS_TRAIN = 96, DS_TEST = 32, DS_PIXELS = 2, DS_BATCH = 10 };
static uint8_t ds_train_pixels[DS_TRAIN * DS_PIXELS], ds_test_pixels[DS_TEST * DS_PIXELS];
static uint8_t ds_train_labels[DS_TRAIN], ds_test_labels[DS_TEST];
static char ds_train_images_path[4200], ds_train_labels_path[4200], ds_test_images_path[4200];
static char ds_csv_path[4200], ds_unlabelled_csv_path[4200], ds_checkpoint_path[4200];

/* A logistic regression on two inputs, with a per-epoch learning-rate decay. */
static const char ds_spec[] = "{\"input\": {\"size\": 2}, \"layers\": [{\"type\": \"linear\", \"units\": 2}],"
                              " \"loss\": \"cross_entropy\", \"optimizer\": {\"type\": \"sgd\", \"lr\": 0.5,"
                              " \"lr_decay\": 0.9}, \"seed\": 5}";

/* Writes `size` bytes to a new file at `path`; false on failure. */
static bool write_file(const char *path, const void *data, size_t size) {
    FILE *file = fopen(path, "wb");
    bool ok = file != NULL && (size == 0 || fwrite(data, 1, size, file) == size);
    if (file != NULL) ok = fclose(file) == 0 && ok;
    return ok;
}

static bool write_text(const char *path, const char *text) { return write_file(path, text, strlen(text)); }

/* An IDX file of unsigned bytes: magic 0x000008RR (RR = rank), the dimensions as big-endian
 * 32-bit numbers, then the elements. */
static bool write_idx(const char *path, const uint32_t *dims, int rank, const uint8_t *data) {
    uint8_t header[4 + 4 * 3] = {0, 0, 0x08, (uint8_t)rank};
    size_t count = 1;
    for (int d = 0; d < rank; d++) {
        for (int b = 0; b < 4; b++) header[4 + 4 * d + b] = (uint8_t)(dims[d] >> (24 - 8 * b));
        count *= dims[d];
    }
    FILE *file = fopen(path, "wb");
    bool ok = file != NULL && fwrite(header, 1, 4 + 4 * (size_t)rank, file) == 4 + 4 * (size_t)rank
              && fwrite(data, 1, count, file) == count;
    if (file != NULL) ok = fclose(file) == 0 && ok;
    return ok;
}

static void separable_samples(uint8_t *pixels, uint8_t *labels, size_t count, uint64_t seed) {
    for (size_t i = 0; i < count; i++) {
        int a, b;
        do {
            a = (int)(uniform(&seed) * 256);
            b = (int)(uniform(&seed) * 256);
        } while (abs(a - b) < 24);
        pixels[2 * i] = (uint8_t)a;
        pixels[2 * i + 1] = (uint8_t)b;
        labels[i] = a > b;
    }
}

/* Writes every data file the data set tests read; false when one could not be written. */
static bool write_dataset_files(void) {
    char path[4200];
    separable_samples(ds_train_pixels, ds_train_labels, DS_TRAIN, 17);
    separable_samples(ds_test_pixels, ds_test_labels, DS_TEST, 18);
    const uint32_t train_dims[3] = {DS_TRAIN, 1, DS_PIXELS}, test_dims[3] = {DS_TEST, 1, DS_PIXELS};
    const uint32_t train_count[1] = {DS_TRAIN}, test_count[1] = {DS_TEST}, short_count[1] = {DS_TRAIN - 1};
    scratch_path(ds_train_images_path, sizeof ds_train_images_path, "train-images-idx3-ubyte");
    scratch_path(ds_train_labels_path, sizeof ds_train_labels_path, "train-labels-idx1-ubyte");
    scratch_path(ds_test_images_path, sizeof ds_test_images_path, "t10k-images-idx3-ubyte");
    bool ok = write_idx(ds_train_images_path, train_dims, 3, ds_train_pixels)
              && write_idx(ds_train_labels_path, train_count, 1, ds_train_labels)
              && write_idx(ds_test_images_path, test_dims, 3, ds_test_pixels);
    scratch_path(path, sizeof path, "t10k-labels-idx1-ubyte");
    ok = ok && write_idx(path, test_count, 1, ds_test_labels);
    /* Labels a 2-class model cannot take (5), and one label too few. */
    uint8_t bad_labels[DS_TRAIN];
    memcpy(bad_labels, ds_train_labels, sizeof bad_labels);
    bad_labels[DS_TRAIN - 1] = 5;
    scratch_path(path, sizeof path, "five-labels-idx1-ubyte");
    ok = ok && write_idx(path, train_count, 1, bad_labels);
    scratch_path(path, sizeof path, "short-labels-idx1-ubyte");
    ok = ok && write_idx(path, short_count, 1, ds_train_labels);

    /* CSV: the first 4 training samples with a header and labels; unlabelled values that
     * are not whole numbers (so they cannot pass for labels); all values equal; a bad row. */
    char csv[512] = "label,left,right\n";
    for (int i = 0; i < 4; i++) {
        size_t used = strlen(csv);
        snprintf(csv + used, sizeof csv - used, "%d,%d,%d\n", ds_train_labels[i], ds_train_pixels[2 * i],
                 ds_train_pixels[2 * i + 1]);
    }
    scratch_path(ds_csv_path, sizeof ds_csv_path, "labelled.csv");
    scratch_path(ds_unlabelled_csv_path, sizeof ds_unlabelled_csv_path, "unlabelled.csv");
    ok = ok && write_text(ds_csv_path, csv) && write_text(ds_unlabelled_csv_path, "0.5,1.5\n-2.25,4\n8,16.125\n");
    scratch_path(path, sizeof path, "constant.csv");
    ok = ok && write_text(path, "1,3,3\n0,3,3\n");
    scratch_path(path, sizeof path, "bad.csv");
    ok = ok && write_text(path, "1,2,3\n0,4,x\n");
    return CHECK(ok);
}

static dl_dataset *load_dataset_idx(const char *images, const char *labels) {
    dl_dataset *data = NULL;
    if (!CHECK_OK(dl_dataset_load_idx(images, labels, &data))) return NULL;
    CHECK(data != NULL);
    return data;
}

/* Frees a data set and checks that its handle is dead afterwards (see release()). */
static void release_dataset(dl_dataset *data) {
    if (data == NULL) return;
    dl_dataset_free(data);
    size_t count = 0;
    CHECK_STATUS(dl_dataset_info(data, &count, NULL, NULL), DL_INVALID_ARGUMENT);
}

/* Checks a data set's size, sample shape, features (as floats of `pixels`) and labels
 * (`labels`, or NULL for an unlabelled set). */
static void check_dataset(const dl_dataset *data, size_t count, const size_t *shape, size_t ndim,
                          const uint8_t *pixels, const uint8_t *labels) {
    size_t n = 0, feature_size = 0, dims[4] = {0}, got_ndim = 0;
    int has_labels = -1;
    if (!CHECK_OK(dl_dataset_info(data, &n, &feature_size, &has_labels))) return;
    size_t expected_size = 1;
    for (size_t d = 0; d < ndim; d++) expected_size *= shape[d];
    CHECK(n == count && feature_size == expected_size && has_labels == (labels != NULL));
    CHECK_OK(dl_dataset_sample_shape(data, dims, 4, &got_ndim));
    CHECK(got_ndim == ndim && memcmp(dims, shape, ndim * sizeof *shape) == 0);

    const float *x = NULL;
    if (CHECK_OK(dl_dataset_features(data, &x)) && CHECK(x != NULL)) {
        bool same = true;
        for (size_t i = 0; i < count * feature_size; i++) same = same && x[i] == (float)pixels[i];
        CHECK(same);
    }
    const int32_t *y = (const int32_t *)sentinel_string;
    if (labels == NULL) {
        CHECK_STATUS(dl_dataset_labels(data, &y), DL_INVALID_ARGUMENT);
        CHECK_MESSAGE_HAS("unlabelled");
        CHECK(y == (const int32_t *)sentinel_string);
    } else if (CHECK_OK(dl_dataset_labels(data, &y)) && CHECK(y != NULL)) {
        bool same = true;
        for (size_t i = 0; i < count; i++) same = same && y[i] == labels[i];
        CHECK(same);
    }
}

static void test_dataset_loading(void) {
    section("dl_dataset_load_idx, _mnist, _csv, _hdf5; dl_dataset_info, _sample_shape, _features, _labels");
    const size_t image_shape[3] = {1, 1, DS_PIXELS}, row_shape[1] = {DS_PIXELS};
    char path[4200], missing[4200];
    scratch_path(missing, sizeof missing, "no_such_file");

    /* IDX, with and without labels. */
    dl_dataset *idx = load_dataset_idx(ds_train_images_path, ds_train_labels_path);
    check_dataset(idx, DS_TRAIN, image_shape, 3, ds_train_pixels, ds_train_labels);
    dl_dataset *images_only = load_dataset_idx(ds_train_images_path, NULL);
    check_dataset(images_only, DS_TRAIN, image_shape, 3, ds_train_pixels, NULL);

    /* MNIST folder: both splits. */
    dl_dataset *train = NULL, *test = NULL, *out = (dl_dataset *)(void *)&sentinel_object;
    if (CHECK_OK(dl_dataset_load_mnist(scratch_dir, DL_SPLIT_TRAIN, &train)))
        check_dataset(train, DS_TRAIN, image_shape, 3, ds_train_pixels, ds_train_labels);
    if (CHECK_OK(dl_dataset_load_mnist(scratch_dir, DL_SPLIT_TEST, &test)))
        check_dataset(test, DS_TEST, image_shape, 3, ds_test_pixels, ds_test_labels);

    /* CSV: labelled with a header, feature count given or counted; unlabelled when the rows
     * have exactly feature_count columns. */
    dl_dataset *csv = NULL, *csv_counted = NULL, *unlabelled = NULL;
    if (CHECK_OK(dl_dataset_load_csv(ds_csv_path, DS_PIXELS, &csv)))
        check_dataset(csv, 4, row_shape, 1, ds_train_pixels, ds_train_labels);
    if (CHECK_OK(dl_dataset_load_csv(ds_csv_path, 0, &csv_counted)))
        check_dataset(csv_counted, 4, row_shape, 1, ds_train_pixels, ds_train_labels);
    if (CHECK_OK(dl_dataset_load_csv(ds_unlabelled_csv_path, 2, &unlabelled))) {
        const float *x = NULL;
        size_t count = 0;
        int has_labels = -1;
        CHECK_OK(dl_dataset_info(unlabelled, &count, NULL, &has_labels));
        CHECK(count == 3 && has_labels == 0);
        CHECK_OK(dl_dataset_features(unlabelled, &x));
        static const float expected[6] = {0.5f, 1.5f, -2.25f, 4, 8, 16.125f};
        CHECK(x != NULL && memcmp(x, expected, sizeof expected) == 0);
    }
    /* Without feature_count, the first column is the label, and 0.5 is not one. */
    CHECK_STATUS(dl_dataset_load_csv(ds_unlabelled_csv_path, 0, &out), DL_FORMAT_ERROR);
    CHECK_MESSAGE_HAS("label \"0.5\" is not a non-negative integer");
    CHECK_STATUS(dl_dataset_load_csv(ds_csv_path, 5, &out), DL_FORMAT_ERROR); /* 3 columns fit neither 6 nor 5 */
    CHECK_MESSAGE_HAS("the header has 3 columns, expected 6");
    scratch_path(path, sizeof path, "bad.csv");
    CHECK_STATUS(dl_dataset_load_csv(path, 0, &out), DL_FORMAT_ERROR);
    CHECK_MESSAGE_HAS("bad.csv:2:5: \"x\" is not a number");
    CHECK_STATUS(dl_dataset_load_csv(missing, 0, &out), DL_IO_ERROR);
    CHECK_MESSAGE_HAS(missing);
    CHECK_STATUS(dl_dataset_load_csv(NULL, 0, &out), DL_INVALID_ARGUMENT);
    CHECK_STATUS(dl_dataset_load_csv(ds_csv_path, 0, NULL), DL_INVALID_ARGUMENT);
    CHECK_STATUS(dl_dataset_load_csv(ds_csv_path, SIZE_MAX, &out), DL_INVALID_ARGUMENT);
    CHECK_MESSAGE_HAS("feature_count");

    /* IDX and MNIST failures. */
    CHECK_STATUS(dl_dataset_load_idx(NULL, ds_train_labels_path, &out), DL_INVALID_ARGUMENT);
    CHECK_MESSAGE_HAS("images is NULL");
    CHECK_STATUS(dl_dataset_load_idx(ds_train_images_path, NULL, NULL), DL_INVALID_ARGUMENT);
    CHECK_STATUS(dl_dataset_load_idx(missing, NULL, &out), DL_IO_ERROR);
    CHECK_MESSAGE_HAS(missing);
    CHECK_STATUS(dl_dataset_load_idx(ds_train_images_path, missing, &out), DL_IO_ERROR);
    CHECK_STATUS(dl_dataset_load_idx(ds_train_labels_path, NULL, &out), DL_FORMAT_ERROR); /* labels as images */
    CHECK_MESSAGE_HAS("images need 3");
    CHECK_STATUS(dl_dataset_load_idx(ds_csv_path, NULL, &out), DL_FORMAT_ERROR);
    CHECK_MESSAGE_HAS("not an IDX file");
    scratch_path(path, sizeof path, "short-labels-idx1-ubyte");
    CHECK_STATUS(dl_dataset_load_idx(ds_train_images_path, path, &out), DL_FORMAT_ERROR);
    CHECK_MESSAGE_HAS("holds 95 labels");
    CHECK_STATUS(dl_dataset_load_mnist(scratch_dir, 2, &out), DL_INVALID_ARGUMENT);
    CHECK_MESSAGE_HAS("DL_SPLIT_TRAIN (0) or DL_SPLIT_TEST (1), got 2");
    CHECK_STATUS(dl_dataset_load_mnist(scratch_dir, -1, &out), DL_INVALID_ARGUMENT);
    CHECK_STATUS(dl_dataset_load_mnist(NULL, DL_SPLIT_TRAIN, &out), DL_INVALID_ARGUMENT);
    CHECK_STATUS(dl_dataset_load_mnist(scratch_dir, DL_SPLIT_TEST, NULL), DL_INVALID_ARGUMENT);
    CHECK_STATUS(dl_dataset_load_mnist(missing, DL_SPLIT_TRAIN, &out), DL_IO_ERROR);
    CHECK_MESSAGE_HAS("train-images-idx3-ubyte");

    /* HDF5 (written by h5py in the Python tests; here, its failures). A checkpoint is HDF5
     * but holds no "x". */
    CHECK_STATUS(dl_dataset_load_hdf5(NULL, &out), DL_INVALID_ARGUMENT);
    CHECK_STATUS(dl_dataset_load_hdf5(ds_csv_path, NULL), DL_INVALID_ARGUMENT);
    CHECK_STATUS(dl_dataset_load_hdf5(missing, &out), DL_IO_ERROR);
    CHECK_STATUS(dl_dataset_load_hdf5(ds_csv_path, &out), DL_FORMAT_ERROR);
    CHECK_MESSAGE_HAS(ds_csv_path);
    dl_model *model = load(xor_spec);
    if (model != NULL && CHECK_OK(dl_model_save(model, ds_checkpoint_path))) {
        CHECK_STATUS(dl_dataset_load_hdf5(ds_checkpoint_path, &out), DL_FORMAT_ERROR);
        CHECK_MESSAGE_HAS("missing dataset x");
    }
    release(model);
    CHECK(out == (dl_dataset *)(void *)&sentinel_object); /* no failure touched it */

    /* OUT parameters: NULL where allowed, short buffers refused. */
    size_t count = 0, dims[4] = {7, 7, 7, 7}, ndim = 7;
    CHECK_OK(dl_dataset_info(idx, NULL, NULL, NULL));
    CHECK_OK(dl_dataset_info(idx, &count, NULL, NULL));
    CHECK(count == DS_TRAIN);
    CHECK_STATUS(dl_dataset_sample_shape(idx, dims, 2, &ndim), DL_INVALID_ARGUMENT);
    CHECK_MESSAGE_HAS("room for 2 dimensions");
    CHECK(dims[0] == 7 && ndim == 7);
    CHECK_OK(dl_dataset_sample_shape(idx, dims, 3, &ndim));
    CHECK_STATUS(dl_dataset_sample_shape(idx, NULL, 4, &ndim), DL_INVALID_ARGUMENT);
    CHECK_STATUS(dl_dataset_sample_shape(idx, dims, 4, NULL), DL_INVALID_ARGUMENT);
    CHECK_STATUS(dl_dataset_features(idx, NULL), DL_INVALID_ARGUMENT);
    CHECK_STATUS(dl_dataset_labels(idx, NULL), DL_INVALID_ARGUMENT);
    CHECK_STATUS(dl_dataset_labels(images_only, NULL), DL_INVALID_ARGUMENT);

    /* Borrowed pointers stay put while the data set lives. */
    const float *x1 = NULL, *x2 = NULL;
    const int32_t *y1 = NULL, *y2 = NULL;
    CHECK_OK(dl_dataset_features(idx, &x1));
    CHECK_OK(dl_dataset_labels(idx, &y1));
    CHECK_OK(dl_dataset_standardizer(idx, 1, NULL, NULL));
    CHECK_OK(dl_dataset_features(idx, &x2));
    CHECK_OK(dl_dataset_labels(idx, &y2));
    CHECK(x1 == x2 && y1 == y2);

    release_dataset(idx);
    release_dataset(images_only);
    release_dataset(train);
    release_dataset(test);
    release_dataset(csv);
    release_dataset(csv_counted);
    release_dataset(unlabelled);
}

static void test_dataset_standardizer(void) {
    section("dl_dataset_standardizer against the statistics computed here");
    dl_dataset *data = load_dataset_idx(ds_train_images_path, NULL), *constant = NULL;
    char path[4200];
    scratch_path(path, sizeof path, "constant.csv");
    if (data == NULL || !CHECK_OK(dl_dataset_load_csv(path, 0, &constant))) goto done;

    /* Two passes in double over the scaled values, as NumPy's mean() and std() give them. */
    const double scale = 1.0 / 255;
    double sum = 0, squares = 0;
    for (size_t i = 0; i < DS_TRAIN * DS_PIXELS; i++) sum += ds_train_pixels[i] * scale;
    double mean = sum / (DS_TRAIN * DS_PIXELS);
    for (size_t i = 0; i < DS_TRAIN * DS_PIXELS; i++) {
        double d = ds_train_pixels[i] * scale - mean;
        squares += d * d;
    }
    double std = sqrt(squares / (DS_TRAIN * DS_PIXELS));

    double got_mean = -1, got_std = -1;
    CHECK_OK(dl_dataset_standardizer(data, scale, &got_mean, &got_std));
    CHECK(fabs(got_mean - mean) < 1e-12 && fabs(got_std - std) < 1e-12);
    printf("   standardizer: mean %.9f (here %.9f), std %.9f (here %.9f)\n", got_mean, mean, got_std, std);
    CHECK_OK(dl_dataset_standardizer(data, scale, NULL, &got_std));
    CHECK_OK(dl_dataset_standardizer(data, scale, &got_mean, NULL));

    /* Bad scales and constant data: refused, OUTs untouched. */
    static const double bad_scales[] = {0, -1, NAN, INFINITY};
    got_mean = got_std = 7;
    for (size_t i = 0; i < sizeof bad_scales / sizeof bad_scales[0]; i++) {
        CHECK_STATUS(dl_dataset_standardizer(data, bad_scales[i], &got_mean, &got_std), DL_INVALID_ARGUMENT);
        CHECK_MESSAGE_HAS("scale");
    }
    CHECK_STATUS(dl_dataset_standardizer(constant, 1, &got_mean, &got_std), DL_INVALID_ARGUMENT);
    CHECK_MESSAGE_HAS("are equal");
    CHECK(got_mean == 7 && got_std == 7);
done:
    release_dataset(data);
    release_dataset(constant);
}

/* Every function that takes a data set refuses `bad` with DL_INVALID_ARGUMENT and leaves
 * its OUT parameters alone; `model` is a live xor-sized model (or NULL). */
static void check_bad_dataset(dl_dataset *bad, dl_model *model) {
    size_t count = 7, feature_size = 7, dims[4] = {7, 7, 7, 7}, ndim = 7;
    int has_labels = 7;
    const float *x = (const float *)(const void *)sentinel_string;
    const int32_t *y = (const int32_t *)(const void *)sentinel_string;
    double mean = 7, std = 7, loss = 7, accuracy = 7;
    CHECK_STATUS(dl_dataset_info(bad, &count, &feature_size, &has_labels), DL_INVALID_ARGUMENT);
    CHECK_STATUS(dl_dataset_sample_shape(bad, dims, 4, &ndim), DL_INVALID_ARGUMENT);
    CHECK_STATUS(dl_dataset_features(bad, &x), DL_INVALID_ARGUMENT);
    CHECK_STATUS(dl_dataset_labels(bad, &y), DL_INVALID_ARGUMENT);
    CHECK_STATUS(dl_dataset_standardizer(bad, 1.0 / 255, &mean, &std), DL_INVALID_ARGUMENT);
    CHECK_STATUS(dl_train_epoch(model, bad, 8, 1, &loss), DL_INVALID_ARGUMENT);
    CHECK_STATUS(dl_evaluate_dataset(model, bad, &loss, &accuracy), DL_INVALID_ARGUMENT);
    CHECK(count == 7 && feature_size == 7 && has_labels == 7 && dims[0] == 7 && ndim == 7);
    CHECK(x == (const float *)(const void *)sentinel_string && y == (const int32_t *)(const void *)sentinel_string);
    CHECK(mean == 7 && std == 7 && loss == 7 && accuracy == 7);
}

static void test_dataset_handles(void) {
    section("data set handles: NULL, foreign, of another kind, freed");
    dl_model *model = NULL;
    dl_dataset *data = load_dataset_idx(ds_train_images_path, ds_train_labels_path);
    dl_layer *layer = make_layer(linear_5_3, DL_FLOAT32, 1);
    if (!CHECK_OK(dl_model_from_json(ds_spec, &model)) || data == NULL || layer == NULL) goto done;

    check_bad_dataset(NULL, model);
    CHECK_MESSAGE_HAS("dataset is NULL");
    check_bad_dataset(FOREIGN_DATASET, model);
    CHECK_MESSAGE_HAS("not a live dl_dataset");
    check_bad_dataset((dl_dataset *)(void *)model, model);
    check_bad_dataset((dl_dataset *)(void *)layer, model);
    /* A data set is no model and no layer. */
    check_bad_handle((dl_model *)(void *)data);
    check_bad_layer((dl_layer *)(void *)data);

    /* The model argument of the training functions is checked as well. */
    double loss = 7, accuracy = 7;
    dl_model *bad_models[3] = {NULL, FOREIGN_MODEL, (dl_model *)(void *)data};
    for (int i = 0; i < 3; i++) {
        CHECK_STATUS(dl_train_epoch(bad_models[i], data, 8, 1, &loss), DL_INVALID_ARGUMENT);
        CHECK_MESSAGE_HAS("model");
        CHECK_STATUS(dl_evaluate_dataset(bad_models[i], data, &loss, &accuracy), DL_INVALID_ARGUMENT);
    }
    CHECK(loss == 7 && accuracy == 7);

    /* Frees through the wrong function, of NULL and of foreign pointers: ignored. */
    dl_model_free((dl_model *)(void *)data);
    dl_layer_free((dl_layer *)(void *)data);
    dl_loss_free((dl_loss *)(void *)data);
    dl_dataset_free((dl_dataset *)(void *)model);
    dl_dataset_free((dl_dataset *)(void *)layer);
    dl_dataset_free(NULL);
    dl_dataset_free(FOREIGN_DATASET);
    size_t count = 0;
    CHECK_OK(dl_dataset_info(data, &count, NULL, NULL));
    CHECK(count == DS_TRAIN);
    CHECK_OK(dl_model_input_size(model, &count));
    CHECK_OK(dl_layer_num_params(layer, &count));

    /* Use after free, double free: nothing is created in between. */
    dl_dataset_free(data);
    check_bad_dataset(data, model);
    dl_dataset_free(data);
    data = NULL;
    CHECK_OK(dl_model_input_size(model, &count)); /* the library still works */
done:
    release_dataset(data);
    release_layer(layer);
    release(model);
}

static dl_model *load_json(const char *json) {
    dl_model *model = NULL;
    if (!CHECK_OK(dl_model_from_json(json, &model))) return NULL;
    return model;
}

static const char bn_spec[] =
    "{\"input\": {\"size\": 16}, \"layers\": [{\"type\": \"reshape\", \"shape\": [1, 4, 4]},"
    " {\"type\": \"conv2d\", \"filters\": 2, \"kernel_size\": 3, \"padding\": 1}, {\"type\": \"batch_norm\"},"
    " {\"type\": \"max_pool2d\", \"kernel_size\": 2}, {\"type\": \"flatten\"}, {\"type\": \"linear\", \"units\": 3}],"
    " \"loss\": \"cross_entropy\", \"optimizer\": {\"type\": \"sgd\", \"lr\": 0.1}, \"seed\": 1}";

static void test_buffers_and_layer_shapes(void) {
    section("dl_model_layer_output_shape; buffers: dl_model_num_buffers, _buffer_name, _buffer_shape, _get_buffer, _set_buffer");
    dl_model *m = load_json(bn_spec), *xor = load(xor_spec);
    if (m == NULL || xor == NULL) goto done;
    /* Output shapes per layer, as the spec's layers make them. */
    static const size_t want[][3] = {{1, 4, 4}, {2, 4, 4}, {2, 4, 4}, {2, 2, 2}, {8}, {3}};
    static const size_t want_ndim[] = {3, 3, 3, 3, 1, 1};
    size_t dims[4], ndim = 0, count = 99;
    for (size_t i = 0; i < 6; i++) {
        CHECK_OK(dl_model_layer_output_shape(m, i, dims, 4, &ndim));
        CHECK(ndim == want_ndim[i] && memcmp(dims, want[i], ndim * sizeof dims[0]) == 0);
    }
    CHECK_STATUS(dl_model_layer_output_shape(m, 6, dims, 4, &ndim), DL_INVALID_ARGUMENT);
    CHECK_STATUS(dl_model_layer_output_shape(m, 1, dims, 2, &ndim), DL_INVALID_ARGUMENT);
    CHECK_MESSAGE_HAS("conv2d");
    CHECK_STATUS(dl_model_layer_output_shape(m, 0, NULL, 4, &ndim), DL_INVALID_ARGUMENT);
    CHECK_STATUS(dl_model_layer_output_shape(NULL, 0, dims, 4, &ndim), DL_INVALID_ARGUMENT);

    /* Batch norm's two running statistics, named like parameters. */
    CHECK_OK(dl_model_num_buffers(xor, &count));
    CHECK(count == 0);
    CHECK_OK(dl_model_num_buffers(m, &count));
    CHECK(count == 2);
    const char *name = NULL;
    CHECK_OK(dl_model_buffer_name(m, 0, &name));
    CHECK(name != NULL && strcmp(name, "layers.2.running_mean") == 0);
    CHECK_OK(dl_model_buffer_name(m, 1, &name));
    CHECK(name != NULL && strcmp(name, "layers.2.running_var") == 0);
    CHECK_STATUS(dl_model_buffer_name(m, 2, &name), DL_INVALID_ARGUMENT);
    CHECK_STATUS(dl_model_buffer_name(m, 0, NULL), DL_INVALID_ARGUMENT);
    CHECK_OK(dl_model_buffer_shape(m, 1, dims, 4, &ndim));
    CHECK(ndim == 1 && dims[0] == 2);
    CHECK_STATUS(dl_model_buffer_shape(xor, 0, dims, 4, &ndim), DL_INVALID_ARGUMENT);

    /* A fresh model's statistics are mean 0, variance 1; a training step moves them. */
    float mean[2] = {-1, -1}, var[2] = {-1, -1};
    CHECK_OK(dl_model_get_buffer(m, 0, mean, 2));
    CHECK_OK(dl_model_get_buffer(m, 1, var, 2));
    CHECK(mean[0] == 0 && mean[1] == 0 && var[0] == 1 && var[1] == 1);
    float x[4 * 16];
    int32_t labels[4] = {0, 1, 2, 1};
    for (size_t i = 0; i < sizeof x / sizeof x[0]; i++) x[i] = (float)((i * 7) % 11) - 5.0f;
    double loss = 0;
    CHECK_OK(dl_train_step(m, x, 4, labels, NULL, &loss));
    CHECK_OK(dl_model_get_buffer(m, 0, mean, 2));
    CHECK(mean[0] != 0 || mean[1] != 0);

    /* Set changes evaluation; get returns what was set; bad values change nothing. */
    float out1[3], out2[3], set_mean[2] = {3.0f, -2.0f}, back[2] = {0, 0};
    CHECK_OK(dl_predict(m, x, 1, out1, 3));
    CHECK_OK(dl_model_set_buffer(m, 0, set_mean, 2));
    CHECK_OK(dl_model_get_buffer(m, 0, back, 2));
    CHECK(back[0] == 3.0f && back[1] == -2.0f);
    CHECK_OK(dl_predict(m, x, 1, out2, 3));
    CHECK(memcmp(out1, out2, sizeof out1) != 0);
    float bad[2] = {NAN, 0};
    CHECK_STATUS(dl_model_set_buffer(m, 0, bad, 2), DL_NUMERIC);
    CHECK_STATUS(dl_model_set_buffer(m, 0, set_mean, 3), DL_INVALID_ARGUMENT);
    CHECK_STATUS(dl_model_get_buffer(m, 0, back, 1), DL_INVALID_ARGUMENT);
    CHECK_STATUS(dl_model_get_buffer(m, 2, back, 2), DL_INVALID_ARGUMENT);
    CHECK_STATUS(dl_model_set_buffer(m, 0, NULL, 2), DL_INVALID_ARGUMENT);
    CHECK_STATUS(dl_model_get_buffer(NULL, 0, back, 2), DL_INVALID_ARGUMENT);
    CHECK_OK(dl_model_get_buffer(m, 0, back, 2));
    CHECK(back[0] == 3.0f && back[1] == -2.0f);
done:
    release(m);
    release(xor);
}

static void test_shaped_layers(void) {
    section("dl_layer_from_json_shaped, dl_layer_output_shape: conv2d as in a model, max pooling, batch norm");
    static const char conv_json[] = "{\"type\": \"conv2d\", \"filters\": 2, \"kernel_size\": 3, \"padding\": 1}";
    static const char model_json[] = "{\"input\": {\"size\": 16}, \"layers\": [{\"type\": \"reshape\", \"shape\": [1, 4, 4]},"
        " {\"type\": \"conv2d\", \"filters\": 2, \"kernel_size\": 3, \"padding\": 1}], \"loss\": \"mse\","
        " \"optimizer\": {\"type\": \"sgd\", \"lr\": 0.1}, \"seed\": 5}";
    const size_t image[3] = {1, 4, 4}, maps[3] = {2, 4, 4}, bad_zero[3] = {1, 0, 4};
    dl_model *m = load_json(model_json);
    dl_layer *conv = NULL, *pool = NULL, *bn = NULL, *bad = NULL, *flat = NULL;
    size_t dims[4], ndim = 0;
    float x[3 * 16], y[3 * 32], want[3 * 32], pooled[3 * 8];
    for (int i = 0; i < 3 * 16; i++) x[i] = (float)((i * 5) % 9) - 4.0f;
    if (m == NULL || !CHECK_OK(dl_layer_from_json_shaped(conv_json, image, 3, DL_FLOAT32, 1, &conv))) goto done;
    CHECK_OK(dl_layer_output_shape(conv, dims, 4, &ndim));
    CHECK(ndim == 3 && dims[0] == 2 && dims[1] == 4 && dims[2] == 4);
    /* With the model's weights, the standalone convolution computes the model's outputs. */
    for (size_t i = 0; i < 2; i++) {
        void *data = NULL;
        size_t count = i == 0 ? 2 * 9 : 2;
        if (CHECK_OK(dl_layer_param_data(conv, i, &data))) CHECK_OK(dl_model_get_param(m, i, data, count));
    }
    CHECK_OK(dl_layer_forward(conv, x, 3, 16, 1, y, 3 * 32));
    CHECK_OK(dl_predict(m, x, 3, want, 3 * 32));
    CHECK(memcmp(y, want, sizeof y) == 0);
    CHECK_OK(dl_layer_backward(conv, y, 3, 32, x, 3 * 16));      /* dx back in x's shape */

    /* Max pooling picks each 2 x 2 window's largest value. */
    if (CHECK_OK(dl_layer_from_json_shaped("{\"type\": \"max_pool2d\", \"kernel_size\": 2}", maps, 3, DL_FLOAT32, 0, &pool))) {
        CHECK_OK(dl_layer_output_shape(pool, dims, 4, &ndim));
        CHECK(ndim == 3 && dims[0] == 2 && dims[1] == 2 && dims[2] == 2);
        CHECK_OK(dl_layer_forward(pool, want, 3, 32, 1, pooled, 3 * 8));
        bool ok = true;
        for (int n = 0; n < 3; n++)
            for (int c = 0; c < 2; c++)
                for (int r = 0; r < 2; r++)
                    for (int q = 0; q < 2; q++) {
                        const float *plane = want + n * 32 + c * 16;
                        float best = -INFINITY;
                        for (int dr = 0; dr < 2; dr++)
                            for (int dq = 0; dq < 2; dq++) {
                                float v = plane[(2 * r + dr) * 4 + 2 * q + dq];
                                if (v > best) best = v;
                            }
                        ok = ok && pooled[n * 8 + c * 4 + r * 2 + q] == best;
                    }
        CHECK(ok);
    }
    /* Batch norm in training: every channel's outputs have mean 0 (weight 1, bias 0). */
    if (CHECK_OK(dl_layer_from_json_shaped("{\"type\": \"batch_norm\"}", maps, 3, DL_FLOAT64, 0, &bn))) {
        double in[3 * 32], out[3 * 32];
        for (int i = 0; i < 3 * 32; i++) in[i] = (double)((i * 7) % 13);
        CHECK_OK(dl_layer_forward(bn, in, 3, 32, 1, out, 3 * 32));
        for (int c = 0; c < 2; c++) {
            double sum = 0;
            for (int n = 0; n < 3; n++)
                for (int k = 0; k < 16; k++) sum += out[n * 32 + c * 16 + k];
            CHECK(fabs(sum / 48) < 1e-9);
        }
        /* Its running statistics: momentum 0.1 of the batch's mean and unbiased variance
           folded into 0 and 1, readable and writable in place. */
        size_t nbuf = 0, bdims[4], bndim = 0;
        const char *bname = NULL;
        void *rm = NULL, *rv = NULL;
        CHECK_OK(dl_layer_num_buffers(bn, &nbuf));
        CHECK(nbuf == 2);
        CHECK_OK(dl_layer_buffer_name(bn, 1, &bname));
        CHECK(bname != NULL && strcmp(bname, "running_var") == 0);
        CHECK_OK(dl_layer_buffer_shape(bn, 0, bdims, 4, &bndim));
        CHECK(bndim == 1 && bdims[0] == 2);
        if (CHECK_OK(dl_layer_buffer_data(bn, 0, &rm)) && CHECK_OK(dl_layer_buffer_data(bn, 1, &rv))) {
            for (int c = 0; c < 2; c++) {
                double mean = 0, var = 0;
                for (int n = 0; n < 3; n++)
                    for (int k = 0; k < 16; k++) mean += in[n * 32 + c * 16 + k] / 48;
                for (int n = 0; n < 3; n++)
                    for (int k = 0; k < 16; k++) var += pow(in[n * 32 + c * 16 + k] - mean, 2) / 47;
                CHECK(fabs(((double *)rm)[c] - 0.1 * mean) < 1e-12);
                CHECK(fabs(((double *)rv)[c] - (0.9 + 0.1 * var)) < 1e-12);
            }
            /* Evaluation uses them: set mean 1, variance 4 - eps; then y = (x - 1) / 2. */
            for (int c = 0; c < 2; c++) ((double *)rm)[c] = 1, ((double *)rv)[c] = 4 - 1e-5;
            CHECK_OK(dl_layer_forward(bn, in, 3, 32, 0, out, 3 * 32));
            int same = 1;
            for (int i = 0; i < 3 * 32; i++) same = same && fabs(out[i] - (in[i] - 1) / 2) < 1e-12;
            CHECK(same);
        }
        CHECK_STATUS(dl_layer_buffer_data(bn, 2, &rm), DL_INVALID_ARGUMENT);
        CHECK_STATUS(dl_layer_buffer_name(bn, 0, NULL), DL_INVALID_ARGUMENT);
        CHECK_STATUS(dl_layer_num_buffers(NULL, &nbuf), DL_INVALID_ARGUMENT);
        if (CHECK_OK(dl_layer_from_json("{\"type\": \"relu\"}", DL_FLOAT32, 0, &flat))) {
            CHECK_OK(dl_layer_num_buffers(flat, &nbuf));
            CHECK(nbuf == 0);
            dl_layer_free(flat);
            flat = NULL;
        }
    }
    /* Refusals. */
    CHECK_STATUS(dl_layer_from_json_shaped(conv_json, NULL, 3, DL_FLOAT32, 0, &bad), DL_INVALID_ARGUMENT);
    CHECK_STATUS(dl_layer_from_json_shaped(conv_json, image, 0, DL_FLOAT32, 0, &bad), DL_INVALID_ARGUMENT);
    CHECK_STATUS(dl_layer_from_json_shaped(conv_json, image, 4, DL_FLOAT32, 0, &bad), DL_INVALID_ARGUMENT);
    CHECK_STATUS(dl_layer_from_json_shaped(conv_json, bad_zero, 3, DL_FLOAT32, 0, &bad), DL_INVALID_ARGUMENT);
    CHECK_STATUS(dl_layer_from_json_shaped(conv_json, image, 3, DL_FLOAT32, 0, NULL), DL_INVALID_ARGUMENT);
    CHECK_STATUS(dl_layer_from_json_shaped(NULL, image, 3, DL_FLOAT32, 0, &bad), DL_INVALID_ARGUMENT);
    CHECK(bad == NULL);
    CHECK_STATUS(dl_layer_output_shape(conv, dims, 2, &ndim), DL_INVALID_ARGUMENT);
    CHECK_STATUS(dl_layer_output_shape(conv, NULL, 4, &ndim), DL_INVALID_ARGUMENT);
    CHECK_STATUS(dl_layer_output_shape(NULL, dims, 4, &ndim), DL_INVALID_ARGUMENT);
    if (CHECK_OK(dl_layer_from_json("{\"type\": \"relu\"}", DL_FLOAT32, 0, &flat)))
        CHECK_STATUS(dl_layer_output_shape(flat, dims, 4, &ndim), DL_INVALID_ARGUMENT);
done:
    release(m);
    dl_layer_free(conv);
    dl_layer_free(pool);
    dl_layer_free(bn);
    dl_layer_free(flat);
}

/* A model of ds_spec that standardizes its inputs with the training set's statistics. */
static dl_model *dataset_model(const dl_dataset *train) {
    dl_model *model = load_json(ds_spec);
    double mean = 0, std = 1;
    if (model != NULL && CHECK_OK(dl_dataset_standardizer(train, 1.0 / 255, &mean, &std)))
        CHECK_OK(dl_model_set_preprocessing(model, 1.0 / 255, mean, std));
    return model;
}

static void test_dataset_from_arrays(void) {
    section("dl_dataset_from_arrays: copies of arrays in memory, trained on like loaded ones");
    enum { N = 7 };
    float x[N * 2], targets[N * 2];
    int32_t labels[N];
    for (int i = 0; i < N; i++) {
        x[2 * i] = (float)i - 3.0f;
        x[2 * i + 1] = 0.5f * (float)(i % 3);
        labels[i] = x[2 * i] > 0;
        targets[2 * i] = (float)i;
        targets[2 * i + 1] = -(float)i;
    }
    const size_t row[1] = {2}, image[3] = {1, 1, 2}, zero[2] = {2, 0};
    dl_dataset *data = NULL, *values = NULL, *images = NULL, *none = NULL, *bad = NULL;
    dl_model *a = load_json(ds_spec), *b = load_json(ds_spec);
    if (a == NULL || b == NULL || !CHECK_OK(dl_dataset_from_arrays(x, N, row, 1, labels, NULL, 0, &data))) goto done;
    const float saved = x[0];
    x[0] = 100.0f;                                /* the data set holds a copy */
    const float *features = NULL;
    const int32_t *got_labels = NULL;
    size_t count = 0, feature_size = 0, dims[4], ndim = 0, width = 9;
    int has_labels = 0;
    CHECK_OK(dl_dataset_info(data, &count, &feature_size, &has_labels));
    CHECK(count == N && feature_size == 2 && has_labels == 1);
    CHECK_OK(dl_dataset_features(data, &features));
    CHECK_OK(dl_dataset_labels(data, &got_labels));
    CHECK(features != NULL && features[0] == saved && memcmp(features + 1, x + 1, (2 * N - 1) * sizeof x[0]) == 0);
    CHECK(got_labels != NULL && memcmp(got_labels, labels, sizeof labels) == 0);
    x[0] = saved;
    /* An unshuffled epoch on it is dl_train_step on the arrays. */
    double loss = 0;
    CHECK_OK(dl_train_epoch(a, data, 3, 0, NULL));
    for (int start = 0; start < N; start += 3)
        CHECK_OK(dl_train_step(b, x + 2 * start, N - start < 3 ? (size_t)(N - start) : 3, labels + start, NULL, &loss));
    CHECK(models_equal(a, b));

    /* Target values, an image shape, no targets. */
    const float *got_values = NULL;
    if (CHECK_OK(dl_dataset_from_arrays(x, N, row, 1, NULL, targets, 2, &values))) {
        CHECK_OK(dl_dataset_targets(values, &got_values, &width));
        CHECK(width == 2 && got_values != NULL && memcmp(got_values, targets, sizeof targets) == 0);
    }
    if (CHECK_OK(dl_dataset_from_arrays(x, N, image, 3, labels, NULL, 0, &images))) {
        CHECK_OK(dl_dataset_sample_shape(images, dims, 4, &ndim));
        CHECK(ndim == 3 && dims[0] == 1 && dims[1] == 1 && dims[2] == 2);
    }
    if (CHECK_OK(dl_dataset_from_arrays(x, N, row, 1, NULL, NULL, 0, &none))) {
        CHECK_OK(dl_dataset_info(none, NULL, NULL, &has_labels));
        CHECK(has_labels == 0);
    }

    /* Refusals leave out untouched. */
    CHECK_STATUS(dl_dataset_from_arrays(NULL, N, row, 1, labels, NULL, 0, &bad), DL_INVALID_ARGUMENT);
    CHECK_STATUS(dl_dataset_from_arrays(x, 0, row, 1, labels, NULL, 0, &bad), DL_INVALID_ARGUMENT);
    CHECK_STATUS(dl_dataset_from_arrays(x, N, NULL, 1, labels, NULL, 0, &bad), DL_INVALID_ARGUMENT);
    CHECK_STATUS(dl_dataset_from_arrays(x, N, row, 0, labels, NULL, 0, &bad), DL_INVALID_ARGUMENT);
    CHECK_STATUS(dl_dataset_from_arrays(x, N, row, 33, labels, NULL, 0, &bad), DL_INVALID_ARGUMENT);
    CHECK_STATUS(dl_dataset_from_arrays(x, N, zero, 2, labels, NULL, 0, &bad), DL_INVALID_ARGUMENT);
    CHECK_STATUS(dl_dataset_from_arrays(x, N, row, 1, labels, targets, 2, &bad), DL_INVALID_ARGUMENT);
    CHECK_STATUS(dl_dataset_from_arrays(x, N, row, 1, labels, NULL, 2, &bad), DL_INVALID_ARGUMENT);
    CHECK_STATUS(dl_dataset_from_arrays(x, N, row, 1, NULL, NULL, 2, &bad), DL_INVALID_ARGUMENT);
    CHECK_STATUS(dl_dataset_from_arrays(x, N, row, 1, NULL, targets, 0, &bad), DL_INVALID_ARGUMENT);
    CHECK_STATUS(dl_dataset_from_arrays(x, N, row, 1, labels, NULL, 0, NULL), DL_INVALID_ARGUMENT);
    labels[3] = -1;
    CHECK_STATUS(dl_dataset_from_arrays(x, N, row, 1, labels, NULL, 0, &bad), DL_INVALID_ARGUMENT);
    CHECK_MESSAGE_HAS("negative");
    x[5] = NAN;
    CHECK_STATUS(dl_dataset_from_arrays(x, N, row, 1, NULL, NULL, 0, &bad), DL_NUMERIC);
    targets[1] = INFINITY;
    CHECK_STATUS(dl_dataset_from_arrays(x + 6, 2, row, 1, NULL, targets, 2, &bad), DL_NUMERIC);
    CHECK(bad == NULL);
done:
    release(a);
    release(b);
    release_dataset(data);
    release_dataset(values);
    release_dataset(images);
    release_dataset(none);
}

/* The release callback of dl_dataset_borrow_arrays: counts its calls and checks its argument. */
static int borrow_releases;
static void count_release(void *user_data) {
    CHECK(user_data == (void *)&borrow_releases);
    borrow_releases++;
}

static void test_dataset_borrow_arrays(void) {
    section("dl_dataset_borrow_arrays: x read in place, released once, refusals release too");
    enum { N = 7 };
    float x[N * 2];
    int32_t labels[N];
    for (int i = 0; i < N; i++) {
        x[2 * i] = (float)i - 3.0f;
        x[2 * i + 1] = 0.25f * (float)(i % 4);
        labels[i] = x[2 * i] + x[2 * i + 1] > 0;
    }
    const size_t row[1] = {2};
    dl_dataset *data = NULL, *copy = NULL, *bad = NULL;
    dl_model *a = load_json(ds_spec), *b = load_json(ds_spec), *c = NULL;
    borrow_releases = 0;
    if (a == NULL || b == NULL
        || !CHECK_OK(dl_dataset_borrow_arrays(x, N, row, 1, labels, NULL, 0, count_release, &borrow_releases, &data))
        || !CHECK_OK(dl_dataset_from_arrays(x, N, row, 1, labels, NULL, 0, &copy)))
        goto done;
    const float *features = NULL;
    CHECK_OK(dl_dataset_features(data, &features));
    CHECK(features == x);                            /* no copy: the caller's memory */
    CHECK(borrow_releases == 0);
    /* Training on it is training on the copy, step for step. */
    CHECK_OK(dl_train_epoch(a, data, 3, 1, NULL));
    CHECK_OK(dl_train_epoch(b, copy, 3, 1, NULL));
    CHECK(models_equal(a, b));
    /* A change between calls shows; the copy does not see it. */
    for (int i = 0; i < 2 * N; i++) x[i] = -x[i];
    double loss_borrowed = 0, loss_copy = 0, loss_direct = 0, accuracy = 0;
    CHECK_OK(dl_evaluate_dataset(a, data, &loss_borrowed, &accuracy));
    CHECK_OK(dl_evaluate_dataset(a, copy, &loss_copy, &accuracy));
    CHECK_OK(dl_evaluate(a, x, N, labels, NULL, &loss_direct, NULL));
    CHECK(loss_borrowed == loss_direct && loss_borrowed != loss_copy);
    /* A NaN put in later is refused by the step that meets it, and the model is kept. */
    release(c);
    c = NULL;
    x[3] = NAN;
    CHECK_OK(dl_model_clone(a, &c));
    CHECK_STATUS(dl_train_epoch(a, data, N, 0, NULL), DL_NUMERIC);
    CHECK(c != NULL && models_equal(a, c));
    x[3] = 1.0f;
    dl_dataset_free(data);
    data = NULL;
    CHECK(borrow_releases == 1);                     /* freed: released exactly once */

    /* Every refusal releases x before it returns, and leaves out untouched. */
    borrow_releases = 0;
    CHECK_STATUS(dl_dataset_borrow_arrays(x, 0, row, 1, labels, NULL, 0, count_release, &borrow_releases, &bad), DL_INVALID_ARGUMENT);
    CHECK_STATUS(dl_dataset_borrow_arrays(x, N, row, 1, labels, NULL, 0, count_release, &borrow_releases, NULL), DL_INVALID_ARGUMENT);
    CHECK_STATUS(dl_dataset_borrow_arrays(NULL, N, row, 1, labels, NULL, 0, count_release, &borrow_releases, &bad), DL_INVALID_ARGUMENT);
    labels[2] = -1;                                  /* refused by the data set's own checks */
    CHECK_STATUS(dl_dataset_borrow_arrays(x, N, row, 1, labels, NULL, 0, count_release, &borrow_releases, &bad), DL_INVALID_ARGUMENT);
    labels[2] = 0;
    x[1] = INFINITY;
    CHECK_STATUS(dl_dataset_borrow_arrays(x, N, row, 1, labels, NULL, 0, count_release, &borrow_releases, &bad), DL_NUMERIC);
    CHECK(borrow_releases == 5 && bad == NULL);
    /* NULL release: the caller keeps x and frees it after the data set. */
    x[1] = 0.0f;
    if (CHECK_OK(dl_dataset_borrow_arrays(x, N, row, 1, NULL, NULL, 0, NULL, NULL, &data))) {
        CHECK_OK(dl_dataset_features(data, &features));
        CHECK(features == x);
    }
done:
    release(a);
    release(b);
    release(c);
    release_dataset(data);
    release_dataset(copy);
}

static void test_train_epoch(void) {
    section("dl_train_epoch, dl_evaluate_dataset: against dl_train_step and dl_evaluate; learning");
    dl_dataset *train = NULL, *test = NULL;
    dl_model *a = NULL, *b = NULL, *c = NULL, *d = NULL;
    if (!CHECK_OK(dl_dataset_load_mnist(scratch_dir, DL_SPLIT_TRAIN, &train))
        || !CHECK_OK(dl_dataset_load_mnist(scratch_dir, DL_SPLIT_TEST, &test)))
        goto done;
    a = dataset_model(train);
    b = dataset_model(train);
    c = dataset_model(train);
    d = dataset_model(train);
    const float *x = NULL, *test_x = NULL;
    const int32_t *y = NULL, *test_y = NULL;
    if (a == NULL || b == NULL || c == NULL || d == NULL || !CHECK_OK(dl_dataset_features(train, &x))
        || !CHECK_OK(dl_dataset_labels(train, &y)) || !CHECK_OK(dl_dataset_features(test, &test_x))
        || !CHECK_OK(dl_dataset_labels(test, &test_y)))
        goto done;

    /* Without shuffling, an epoch is dl_train_step over consecutive batches (the last one
     * holds the remaining 6 samples), bit for bit, and its loss their weighted mean. */
    double epoch_loss = -1, sum = 0;
    CHECK_OK(dl_train_epoch(a, train, DS_BATCH, 0, &epoch_loss));
    bool steps_ok = true;
    for (size_t start = 0; steps_ok && start < DS_TRAIN; start += DS_BATCH) {
        size_t n = DS_TRAIN - start < DS_BATCH ? DS_TRAIN - start : DS_BATCH;
        double loss = 0;
        steps_ok = CHECK_OK(dl_train_step(b, x + start * DS_PIXELS, n, y + start, NULL, &loss));
        sum += loss * (double)n;
    }
    CHECK(steps_ok);
    CHECK(models_equal(a, b));
    CHECK(epoch_loss == sum / DS_TRAIN);
    CHECK(step_count(a) == (DS_TRAIN + DS_BATCH - 1) / DS_BATCH && step_count(b) == step_count(a));
    /* The epoch then applied the spec's lr_decay; single steps do not. */
    double lr_a = 0, lr_b = 0;
    CHECK_OK(dl_model_get_learning_rate(a, &lr_a));
    CHECK_OK(dl_model_get_learning_rate(b, &lr_b));
    CHECK(lr_a == 0.5 * 0.9 && lr_b == 0.5);

    /* dl_evaluate_dataset is dl_evaluate on the data set's own arrays. */
    double loss1 = -1, accuracy1 = -1, loss2 = -2, accuracy2 = -2;
    CHECK_OK(dl_evaluate_dataset(a, test, &loss1, &accuracy1));
    CHECK_OK(dl_evaluate(a, test_x, DS_TEST, test_y, NULL, &loss2, &accuracy2));
    CHECK(loss1 == loss2 && accuracy1 == accuracy2);
    CHECK_OK(dl_evaluate_dataset(a, test, NULL, NULL));
    CHECK_OK(dl_train_epoch(a, train, DS_BATCH, 0, NULL));

    /* Shuffled epochs follow the model's seeded generator: two copies of one model agree,
     * and differ from the unshuffled run. */
    double before = -1, after = -1, loss = -1;
    CHECK_OK(dl_evaluate_dataset(c, test, NULL, &before));
    for (int epoch = 0; epoch < 10; epoch++) {
        CHECK_OK(dl_train_epoch(c, train, DS_BATCH, 1, &loss));
        CHECK_OK(dl_train_epoch(d, train, DS_BATCH, 1, NULL));
    }
    CHECK(models_equal(c, d));
    CHECK(!models_equal(c, b));
    CHECK_OK(dl_evaluate_dataset(c, test, NULL, &after));
    printf("   separable problem: test accuracy %.3f before training, %.3f after 10 epochs (loss %.4f)\n",
           before, after, loss);
    CHECK(after > before && after >= 0.9);
done:
    release(a);
    release(b);
    release(c);
    release(d);
    release_dataset(train);
    release_dataset(test);
}

/* What a progress callback saw, and when it stops the call. */
typedef struct {
    dl_model *model;        /* the model the callback belongs to (for the DL_BUSY check) */
    size_t calls, stop_at;  /* stop_at: the `done` at which to return non-zero; 0 never */
    size_t done, total, samples;
    double mean_loss;
    bool in_order;          /* every call's `done` was the previous one's plus one */
    int reentrant_status;   /* what dl_model_set_progress on the running model gave */
} progress_log;

static int record_progress(void *user_data, size_t done, size_t total, size_t samples_done, double mean_loss) {
    progress_log *log = user_data;
    log->in_order = log->in_order && done == log->done + 1 && done <= total;
    log->calls++;
    log->done = done;
    log->total = total;
    log->samples = samples_done;
    log->mean_loss = mean_loss;
    log->reentrant_status = dl_model_set_progress(log->model, NULL, NULL);
    return log->stop_at != 0 && done >= log->stop_at;
}

static void reset_log(progress_log *log, dl_model *model, size_t stop_at) {
    *log = (progress_log){.model = model, .stop_at = stop_at, .in_order = true, .reentrant_status = -1};
}

static void test_progress(void) {
    section("dl_model_set_progress: progress reports and cancellation of dl_train_epoch, dl_evaluate_dataset");
    dl_dataset *train = NULL, *test = NULL;
    dl_model *a = NULL, *b = NULL, *copy = NULL;
    const float *x = NULL;
    const int32_t *y = NULL;
    if (!CHECK_OK(dl_dataset_load_mnist(scratch_dir, DL_SPLIT_TRAIN, &train))
        || !CHECK_OK(dl_dataset_load_mnist(scratch_dir, DL_SPLIT_TEST, &test))
        || !CHECK_OK(dl_dataset_features(train, &x)) || !CHECK_OK(dl_dataset_labels(train, &y)))
        goto done;
    a = dataset_model(train);
    b = dataset_model(train);
    if (a == NULL || b == NULL) goto done;
    const size_t batches = (DS_TRAIN + DS_BATCH - 1) / DS_BATCH, stop = 3;
    progress_log log;

    /* Stopped after its third step, the epoch leaves the model exactly as three
     * dl_train_step calls on the same batches do: no half step, no decay, no OUT loss. */
    reset_log(&log, a, stop);
    CHECK_OK(dl_model_set_progress(a, record_progress, &log));
    double loss = -1, sum = 0;
    CHECK_STATUS(dl_train_epoch(a, train, DS_BATCH, 0, &loss), DL_CANCELLED);
    CHECK(strstr(dl_last_error(), "progress callback") != NULL && strstr(dl_last_error(), "3 of 10") != NULL);
    CHECK(loss == -1);
    CHECK(log.calls == stop && log.in_order && log.total == batches && log.samples == stop * DS_BATCH);
    CHECK(log.reentrant_status == DL_BUSY); /* the running call holds the model */
    for (size_t i = 0; i < stop; i++) {
        double step_loss = 0;
        CHECK_OK(dl_train_step(b, x + i * DS_BATCH * DS_PIXELS, DS_BATCH, y + i * DS_BATCH, NULL, &step_loss));
        sum += step_loss * DS_BATCH;
    }
    CHECK(models_equal(a, b) && step_count(a) == stop);
    CHECK(log.mean_loss == sum / (double)(stop * DS_BATCH));
    double lr = 0;
    CHECK_OK(dl_model_get_learning_rate(a, &lr));
    CHECK(lr == 0.5);                       /* the epoch's lr_decay was not applied */

    /* Going on: a whole epoch reports every step, its last mean loss the epoch's. */
    reset_log(&log, a, 0);
    CHECK_OK(dl_train_epoch(a, train, DS_BATCH, 1, &loss));
    CHECK(log.calls == batches && log.in_order && log.samples == DS_TRAIN && log.mean_loss == loss);
    CHECK_OK(dl_model_get_learning_rate(a, &lr));
    CHECK(lr == 0.5 * 0.9);
    /* A non-zero answer after the last step still cancels. */
    reset_log(&log, a, batches);
    CHECK_STATUS(dl_train_epoch(a, train, DS_BATCH, 1, &loss), DL_CANCELLED);
    CHECK(log.calls == batches && step_count(a) == stop + 2 * batches);

    /* Evaluation: reported per chunk (one here), its mean loss the result's; cancelled,
     * nothing is written. */
    double accuracy = -1, eval_loss = -1;
    reset_log(&log, a, 0);
    CHECK_OK(dl_evaluate_dataset(a, test, &eval_loss, &accuracy));
    CHECK(log.calls == 1 && log.done == 1 && log.total == 1 && log.samples == DS_TEST && log.mean_loss == eval_loss);
    reset_log(&log, a, 1);
    accuracy = eval_loss = -1;
    CHECK_STATUS(dl_evaluate_dataset(a, test, &eval_loss, &accuracy), DL_CANCELLED);
    CHECK(accuracy == -1 && eval_loss == -1 && log.calls == 1);

    /* Clones start without a callback; NULL removes it; bad handles are refused. */
    reset_log(&log, a, 1);
    if (CHECK_OK(dl_model_clone(a, &copy))) CHECK_OK(dl_train_epoch(copy, train, DS_BATCH, 1, NULL));
    CHECK_OK(dl_model_set_progress(a, NULL, &log));
    CHECK_OK(dl_train_epoch(a, train, DS_BATCH, 1, NULL));
    CHECK(log.calls == 0);
    CHECK_STATUS(dl_model_set_progress(NULL, record_progress, &log), DL_INVALID_ARGUMENT);
    CHECK_STATUS(dl_model_set_progress((dl_model *)train, record_progress, &log), DL_INVALID_ARGUMENT);
done:
    release(a);
    release(b);
    release(copy);
    release_dataset(train);
    release_dataset(test);
}

/* A regression data set: CSV rows of one target value (sin x) and one feature (x). */
static void test_dataset_targets(void) {
    section("dl_dataset_load_csv_targets, dl_dataset_targets; dl_train_epoch and dl_evaluate_dataset on target values");
    enum { N = 50, BATCH = 16 };
    char path[4200], text[N * 40 + 16] = "target,x\n";
    scratch_path(path, sizeof path, "targets.csv");
    float x[N], t[N];
    for (int i = 0; i < N; i++) {
        x[i] = -2.0f + 5.0f * (float)i / (N - 1);
        t[i] = (float)(int)(100 * sinf(x[i])) / 100;  /* two decimals: the CSV holds them exactly enough */
        snprintf(text + strlen(text), sizeof text - strlen(text), "%.9g,%.9g\n", t[i], x[i]);
    }
    dl_dataset *data = NULL, *labelled = NULL, *out = (dl_dataset *)(void *)&sentinel_object;
    dl_model *m = load(regression_spec), *reference = NULL;
    if (!write_text(path, text) || m == NULL || !CHECK_OK(dl_model_clone(m, &reference))) goto done;

    CHECK_STATUS(dl_dataset_load_csv_targets(path, 0, 0, &out), DL_INVALID_ARGUMENT);
    CHECK_MESSAGE_HAS("target_count must be at least 1");
    CHECK_STATUS(dl_dataset_load_csv_targets(NULL, 0, 1, &out), DL_INVALID_ARGUMENT);
    CHECK_STATUS(dl_dataset_load_csv_targets(path, 0, 1, NULL), DL_INVALID_ARGUMENT);
    CHECK_STATUS(dl_dataset_load_csv_targets(path, 3, 1, &out), DL_FORMAT_ERROR);
    CHECK_MESSAGE_HAS("the header has 2 columns, expected 4 (a target and 3 features)");
    CHECK(out == (dl_dataset *)(void *)&sentinel_object);
    if (!CHECK_OK(dl_dataset_load_csv_targets(path, 1, 1, &data))) goto done;
    size_t count = 0, size = 7;
    int has_labels = -1;
    const float *values = NULL, *features = NULL;
    CHECK_OK(dl_dataset_info(data, &count, NULL, &has_labels));
    CHECK(count == N && has_labels == 0);
    CHECK_OK(dl_dataset_targets(data, &values, &size));
    CHECK_OK(dl_dataset_features(data, &features));
    CHECK(size == 1 && values != NULL && memcmp(values, t, sizeof t) == 0);
    CHECK(features != NULL && memcmp(features, x, sizeof x) == 0);
    CHECK_STATUS(dl_dataset_targets(NULL, &values, &size), DL_INVALID_ARGUMENT);
    labelled = load_dataset_idx(ds_train_images_path, ds_train_labels_path);
    if (labelled != NULL && CHECK_OK(dl_dataset_targets(labelled, &values, &size))) CHECK(values == NULL && size == 0);

    /* An epoch in order is dl_train_step on consecutive batches, bit for bit. */
    double loss = 0, step_loss = 0, sum = 0, accuracy = 7;
    CHECK_OK(dl_train_epoch(m, data, BATCH, 0, &loss));
    for (int start = 0; start < N; start += BATCH) {
        int n = N - start < BATCH ? N - start : BATCH;
        CHECK_OK(dl_train_step(reference, x + start, (size_t)n, NULL, t + start, &step_loss));
        sum += step_loss * n;
    }
    CHECK(fabs(loss - sum / N) <= 1e-12 * sum);
    size_t n_params = 0;
    float *expected = get_all_params(reference, &n_params);
    CHECK(params_equal(m, expected, n_params));
    free(expected);
    double reference_loss = 0;
    CHECK_OK(dl_evaluate_dataset(m, data, &loss, &accuracy));
    CHECK_OK(dl_evaluate(reference, x, N, NULL, t, &reference_loss, NULL));
    CHECK(loss == reference_loss && isnan(accuracy));
    CHECK_OK(dl_train_epoch(m, data, BATCH, 1, &loss)); /* shuffled */
    if (labelled != NULL) {
        CHECK_STATUS(dl_train_epoch(m, labelled, BATCH, 1, &loss), DL_UNSUPPORTED);
        CHECK_MESSAGE_HAS("holds class labels");
    }
done:
    dl_dataset_free(data);
    dl_dataset_free(labelled);
    release(m);
    release(reference);
}

static void test_train_epoch_errors(void) {
    section("dl_train_epoch, dl_evaluate_dataset error paths");
    dl_dataset *train = load_dataset_idx(ds_train_images_path, ds_train_labels_path);
    dl_dataset *unlabelled = load_dataset_idx(ds_train_images_path, NULL);
    char path[4200];
    scratch_path(path, sizeof path, "five-labels-idx1-ubyte");
    dl_dataset *five = load_dataset_idx(ds_train_images_path, path);
    dl_model *model = load_json(ds_spec);
    dl_model *wide = load_json("{\"input\": {\"size\": 3}, \"layers\": [{\"type\": \"linear\", \"units\": 2}],"
                               " \"loss\": \"cross_entropy\", \"optimizer\": {\"type\": \"sgd\", \"lr\": 0.1}}");
    dl_model *regression = load_json("{\"input\": {\"size\": 2}, \"layers\": [{\"type\": \"linear\", \"units\": 1}],"
                                     " \"loss\": \"mse\", \"optimizer\": {\"type\": \"sgd\", \"lr\": 0.1}}");
    size_t count = 0;
    float *params = NULL;
    if (train == NULL || unlabelled == NULL || five == NULL || model == NULL || wide == NULL || regression == NULL)
        goto done;
    params = get_all_params(model, &count);

    double loss = 7, accuracy = 7;
    CHECK_STATUS(dl_train_epoch(model, unlabelled, DS_BATCH, 1, &loss), DL_INVALID_ARGUMENT);
    CHECK_MESSAGE_HAS("unlabelled");
    CHECK_MESSAGE_HAS("training needs class labels");
    CHECK_STATUS(dl_evaluate_dataset(model, unlabelled, &loss, &accuracy), DL_INVALID_ARGUMENT);
    CHECK_MESSAGE_HAS("unlabelled");
    CHECK_STATUS(dl_train_epoch(wide, train, DS_BATCH, 1, &loss), DL_INVALID_ARGUMENT);
    CHECK_MESSAGE_HAS("samples hold 2 values");
    CHECK_MESSAGE_HAS("input takes 3");
    CHECK_STATUS(dl_evaluate_dataset(wide, train, &loss, &accuracy), DL_INVALID_ARGUMENT);
    CHECK_MESSAGE_HAS("input takes 3");
    CHECK_STATUS(dl_train_epoch(model, train, 0, 1, &loss), DL_INVALID_ARGUMENT);
    CHECK_MESSAGE_HAS("batch size must be at least 1");
    CHECK_STATUS(dl_train_epoch(model, train, SIZE_MAX, 1, &loss), DL_INVALID_ARGUMENT);
    CHECK_MESSAGE_HAS("batch_size");
    CHECK_STATUS(dl_train_epoch(model, five, DS_BATCH, 1, &loss), DL_INVALID_ARGUMENT);
    CHECK_MESSAGE_HAS("label 5 of sample 95 is out of range");
    CHECK_STATUS(dl_evaluate_dataset(model, five, &loss, &accuracy), DL_INVALID_ARGUMENT);
    CHECK_MESSAGE_HAS("label 5");
    CHECK_STATUS(dl_train_epoch(regression, train, DS_BATCH, 1, &loss), DL_UNSUPPORTED);
    CHECK_STATUS(dl_evaluate_dataset(regression, train, &loss, &accuracy), DL_UNSUPPORTED);
    CHECK(loss == 7 && accuracy == 7);
    /* Nothing was trained: the same parameters, no step, no epoch (no learning-rate decay). */
    double lr = 0;
    CHECK(params_equal(model, params, count) && step_count(model) == 0 && step_count(regression) == 0);
    CHECK_OK(dl_model_get_learning_rate(model, &lr));
    CHECK(lr == 0.5);
done:
    free(params);
    release(model);
    release(wide);
    release(regression);
    release_dataset(train);
    release_dataset(unlabelled);
    release_dataset(five);
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

/* Monotonic seconds, for bounding a test by time. */
static double seconds_now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

/* (c) Predicts on a model other threads predict on too: always DL_OK with the serial
 * outputs (inference shares the model). Runs `iterations` calls. */
static void *predict_on_shared(void *arg) {
    worker *w = arg;
    size_t n = w->count / XOR_OUT;
    float *x = malloc(n * XOR_IN * sizeof *x), *out = malloc(w->count * sizeof *out);
    if (!CHECK(x && out)) goto done;
    for (size_t i = 0; i < n; i++) memcpy(x + i * XOR_IN, xor_x + (i % XOR_COUNT) * XOR_IN, XOR_IN * sizeof *x);
    w->same = true;
    gate_wait();
    for (int i = 0; i < w->iterations; i++) {
        int status = dl_predict(w->model, x, n, out, w->count);
        if (status == DL_OK) {
            w->ok++;
            w->same = w->same && dl_last_error()[0] == '\0' && memcmp(out, w->reference, w->count * sizeof *out) == 0;
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

/* (c) Two threads predicting on the same model at once: DL_OK every time, the serial
 * outputs bit for bit; the model still trains afterwards. */
static void test_threads_same_model(dl_model *trained) {
    section("threads: 2 threads predicting on the same model");
    enum { THREADS = 2, N = 2048 };
    float *x = malloc(N * XOR_IN * sizeof *x), *reference = malloc(N * XOR_OUT * sizeof *reference);
    if (!CHECK(x && reference)) goto done;
    for (size_t i = 0; i < N; i++) memcpy(x + i * XOR_IN, xor_x + (i % XOR_COUNT) * XOR_IN, XOR_IN * sizeof *x);
    CHECK_OK(dl_predict(trained, x, N, reference, N * XOR_OUT));
    size_t count = 0;
    float *params = get_all_params(trained, &count);

    pthread_t threads[THREADS];
    worker w[THREADS];
    bool started[THREADS];
    gate_set(false);
    for (int t = 0; t < THREADS; t++) {
        w[t] = (worker){.reference = reference, .count = N * XOR_OUT, .model = trained, .iterations = 200};
        started[t] = start(&threads[t], predict_on_shared, &w[t]);
    }
    gate_set(true);
    int ok = 0, other = 0;
    for (int t = 0; t < THREADS; t++) {
        if (!started[t]) continue;
        pthread_join(threads[t], NULL);
        CHECK(w[t].same);
        ok += w[t].ok;
        other += w[t].other;
    }
    printf("   shared model: %d DL_OK, %d other\n", ok, other);
    CHECK(other == 0 && ok == THREADS * 200);

    /* The model was not changed and still trains. */
    CHECK(params_equal(trained, params, count));
    CHECK_OK(dl_train_step(trained, xor_x, XOR_COUNT, xor_labels, NULL, NULL));
    free(params);
done:
    free(x);
    free(reference);
}

/* (d) Models trained at once on one data set, which every thread reads. */
typedef struct {
    const dl_dataset *data;
    const float *reference;
    size_t count;
    int epochs;
    bool same;
} epoch_worker;

static void *train_on_shared_dataset(void *arg) {
    epoch_worker *w = arg;
    gate_wait();
    dl_model *m = load_json(ds_spec);
    bool ok = m != NULL;
    for (int e = 0; ok && e < w->epochs; e++) {
        size_t count = 0;
        ok = CHECK_OK(dl_train_epoch(m, w->data, 2, 1, NULL)) && CHECK_OK(dl_dataset_info(w->data, &count, NULL, NULL))
             && count == DS_TRAIN && CHECK_OK(dl_dataset_standardizer(w->data, 1, NULL, NULL));
    }
    w->same = ok && params_equal(m, w->reference, w->count);
    dl_model_free(m);
    return NULL;
}

static void test_threads_shared_dataset(void) {
    section("threads: 4 models trained at once on one data set");
    enum { THREADS = 4, EPOCHS = 40 };
    dl_dataset *data = load_dataset_idx(ds_train_images_path, ds_train_labels_path);
    dl_model *serial = load_json(ds_spec);
    if (data == NULL || serial == NULL) goto done;
    for (int e = 0; e < EPOCHS; e++) CHECK_OK(dl_train_epoch(serial, data, 2, 1, NULL));
    size_t count = 0;
    float *reference = get_all_params(serial, &count);

    pthread_t threads[THREADS];
    epoch_worker w[THREADS];
    bool started[THREADS];
    gate_set(false);
    for (int t = 0; t < THREADS; t++) {
        w[t] = (epoch_worker){.data = data, .reference = reference, .count = count, .epochs = EPOCHS};
        started[t] = CHECK(pthread_create(&threads[t], NULL, train_on_shared_dataset, &w[t]) == 0);
    }
    gate_set(true);
    for (int t = 0; t < THREADS; t++) {
        if (!started[t]) continue;
        pthread_join(threads[t], NULL);
        CHECK(w[t].same); /* never DL_BUSY, and bit for bit the serial run */
    }
    free(reference);
done:
    release(serial);
    release_dataset(data);
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

/* ------------------------------------------------------------------------ */
/* Model files in other formats: dl_model_export, dl_model_import (ONNX)     */
/* ------------------------------------------------------------------------ */

static void test_onnx_files(void) {
    section("dl_model_export, dl_model_import: ONNX");
    static const char cnn_json[] =
        "{\"format_version\": 1, \"name\": \"small_cnn\", \"input\": {\"shape\": [1, 6, 6]},"
        " \"layers\": [{\"type\": \"conv2d\", \"filters\": 3, \"kernel_size\": 3, \"padding\": 1},"
        "  {\"type\": \"batch_norm\"}, {\"type\": \"relu\"}, {\"type\": \"max_pool2d\", \"kernel_size\": 2},"
        "  {\"type\": \"flatten\"}, {\"type\": \"dropout\", \"rate\": 0.5}, {\"type\": \"linear\", \"units\": 4}],"
        " \"loss\": \"cross_entropy\", \"optimizer\": {\"type\": \"sgd\", \"lr\": 0.1}, \"seed\": 5}";
    enum { N = 8, IN = 36, OUT = 4 };
    float x[N * IN], y1[N * OUT], y2[N * OUT];
    int32_t labels[N];
    uint64_t state = 11;
    for (int i = 0; i < N * IN; i++) x[i] = uniform(&state);
    for (int i = 0; i < N; i++) labels[i] = i % OUT;
    char onnx_path[4200], h5_path[4200], cut_path[4200], bad_path[4200];
    scratch_path(onnx_path, sizeof onnx_path, "small_cnn.onnx");
    scratch_path(h5_path, sizeof h5_path, "small_cnn.h5");
    scratch_path(cut_path, sizeof cut_path, "truncated.onnx");
    scratch_path(bad_path, sizeof bad_path, "small_cnn.bin");

    dl_model *m = NULL;
    if (!CHECK_OK(dl_model_from_json(cnn_json, &m))) return;
    for (int i = 0; i < 2; i++) CHECK_OK(dl_train_step(m, x, N, labels, NULL, NULL)); /* moves the running statistics */
    CHECK_OK(dl_model_export(m, onnx_path, NULL));    /* the format from the extension */
    CHECK_OK(dl_model_export(m, onnx_path, "onnx"));  /* replaces the file */

    dl_model *back = SENTINEL_MODEL;
    if (CHECK_OK(dl_model_import(onnx_path, NULL, NULL, &back)) && CHECK(back != NULL && back != SENTINEL_MODEL)) {
        CHECK_OK(dl_predict(m, x, N, y1, N * OUT));
        CHECK_OK(dl_predict(back, x, N, y2, N * OUT));
        double largest = 0;
        for (int i = 0; i < N * OUT; i++) largest = fmax(largest, fabs((double)y1[i] - y2[i]));
        CHECK(largest <= 1e-5);
        const char *json = NULL;
        CHECK_OK(dl_model_spec_json(back, &json));
        /* The exported spec came back: its name, loss and optimizer; dropout is not in the graph. */
        CHECK(json != NULL && strstr(json, "small_cnn") != NULL && strstr(json, "\"sgd\"") != NULL);
        CHECK(json != NULL && strstr(json, "conv2d") != NULL && strstr(json, "dropout") == NULL);
        double loss = 0;   /* an imported model trains */
        CHECK_OK(dl_train_step(back, x, N, labels, NULL, &loss));
        CHECK(loss > 0 && isfinite(loss));
    }
    release(back);
    back = NULL;
    if (CHECK_OK(dl_model_import(onnx_path, "onnx", "{\"loss\": \"mse\", \"seed\": 3}", &back))) {
        const char *json = NULL;
        CHECK_OK(dl_model_spec_json(back, &json));
        CHECK(json != NULL && strstr(json, "\"mse\"") != NULL);
    }
    release(back);

    /* "h5" through the same functions is the checkpoint. */
    CHECK_OK(dl_model_export(m, h5_path, NULL));
    back = NULL;
    if (CHECK_OK(dl_model_import(h5_path, "h5", NULL, &back))) CHECK(models_equal(m, back));
    release(back);

    /* Export errors. */
    CHECK_STATUS(dl_model_export(NULL, onnx_path, NULL), DL_INVALID_ARGUMENT);
    CHECK_STATUS(dl_model_export(FOREIGN_MODEL, onnx_path, NULL), DL_INVALID_ARGUMENT);
    CHECK_STATUS(dl_model_export(m, NULL, NULL), DL_INVALID_ARGUMENT);
    CHECK_STATUS(dl_model_export(m, bad_path, NULL), DL_INVALID_ARGUMENT);
    CHECK_MESSAGE_HAS("cannot tell the model format");
    CHECK_STATUS(dl_model_export(m, onnx_path, "tflite"), DL_UNSUPPORTED);
    CHECK_MESSAGE_HAS("unknown model format \"tflite\"");
    char missing_dir[4200];
    snprintf(missing_dir, sizeof missing_dir, "%s/no/such/folder/x.onnx", scratch_dir);
    CHECK_STATUS(dl_model_export(m, missing_dir, NULL), DL_IO_ERROR);

    /* Import errors leave OUT untouched. */
    back = SENTINEL_MODEL;
    CHECK_STATUS(dl_model_import(NULL, NULL, NULL, &back), DL_INVALID_ARGUMENT);
    CHECK_STATUS(dl_model_import(onnx_path, NULL, NULL, NULL), DL_INVALID_ARGUMENT);
    CHECK_STATUS(dl_model_import(onnx_path, "tflite", NULL, &back), DL_UNSUPPORTED);
    CHECK_STATUS(dl_model_import(onnx_path, NULL, "{\"lr\": 1}", &back), DL_INVALID_ARGUMENT);
    CHECK_MESSAGE_HAS("unknown key \"lr\"");
    CHECK_STATUS(dl_model_import(onnx_path, NULL, "not json", &back), DL_SPEC_ERROR);
    CHECK_STATUS(dl_model_import(onnx_path, NULL, "{\"loss\": \"nope\"}", &back), DL_SPEC_ERROR);
    CHECK_STATUS(dl_model_import(h5_path, NULL, "{\"loss\": \"mse\"}", &back), DL_INVALID_ARGUMENT);
    CHECK_STATUS(dl_model_import(missing_dir, NULL, NULL, &back), DL_IO_ERROR);
    CHECK_MESSAGE_HAS(missing_dir);
    CHECK_STATUS(dl_model_import(xor_spec, "onnx", NULL, &back), DL_FORMAT_ERROR);   /* JSON is not protobuf */
    CHECK_STATUS_EITHER(dl_model_import(scratch_dir, "onnx", NULL, &back), DL_IO_ERROR, DL_FORMAT_ERROR);
    long size = file_size(onnx_path);
    CHECK(size > 100);
    long cuts[] = {0, 1, 7, size / 3, size / 2, size - 1};
    for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
        if (!CHECK(copy_prefix(onnx_path, cut_path, cuts[i]))) continue;
        /* Cut inside a field, protobuf-c refuses the bytes; cut between fields, the graph is
           incomplete. Either way a clear error, never a crash. */
        CHECK_STATUS_EITHER(dl_model_import(cut_path, "onnx", NULL, &back), DL_FORMAT_ERROR, DL_UNSUPPORTED);
    }
    CHECK(back == SENTINEL_MODEL);

    release(m);
    remove(onnx_path);
    remove(h5_path);
    remove(cut_path);
}

/* ------------------------------------------------------------------------ */
/* dl_model_export, dl_model_import: PyTorch state dicts (safetensors)       */
/* ------------------------------------------------------------------------ */

static void test_safetensors_files(void) {
    section("dl_model_export, dl_model_import: safetensors");
    static const char mlp_json[] =
        "{\"input_size\": 5, \"layers\": [{\"type\": \"linear\", \"units\": 4},"
        " {\"type\": \"batch_norm\"}, {\"type\": \"tanh\"}, {\"type\": \"linear\", \"units\": 3}],"
        " \"loss\": \"cross_entropy\", \"optimizer\": {\"type\": \"sgd\", \"lr\": 0.1}, \"seed\": 2}";
    enum { N = 6, IN = 5, OUT = 3 };
    float x[N * IN], y1[N * OUT], y2[N * OUT];
    int32_t labels[N];
    uint64_t state = 5;
    for (int i = 0; i < N * IN; i++) x[i] = uniform(&state);
    for (int i = 0; i < N; i++) labels[i] = i % OUT;
    char path[4200], python[4200], spec_path[4200], options[4400];
    scratch_path(path, sizeof path, "mlp.safetensors");
    scratch_path(python, sizeof python, "mlp.py");
    scratch_path(spec_path, sizeof spec_path, "mlp_spec.json");
    FILE *f = fopen(spec_path, "w");
    if (!CHECK(f != NULL)) return;
    fputs(mlp_json, f);
    fclose(f);

    dl_model *m = NULL;
    if (!CHECK_OK(dl_model_from_json(mlp_json, &m))) return;
    for (int i = 0; i < 2; i++) CHECK_OK(dl_train_step(m, x, N, labels, NULL, NULL)); /* moves the running statistics */
    CHECK_OK(dl_model_export(m, path, NULL));
    CHECK(file_size(path) > 8 && file_size(python) > 0);   /* the nn.Sequential source beside it */

    /* Given the spec (a path here), the same model comes back: same predictions. */
    snprintf(options, sizeof options, "{\"spec\": \"%s\"}", spec_path);
    dl_model *back = SENTINEL_MODEL;
    if (CHECK_OK(dl_model_import(path, "safetensors", options, &back)) && CHECK(back != NULL && back != SENTINEL_MODEL)) {
        CHECK_OK(dl_predict(m, x, N, y1, N * OUT));
        CHECK_OK(dl_predict(back, x, N, y2, N * OUT));
        CHECK(memcmp(y1, y2, sizeof y1) == 0);
    }
    release(back);

    /* Errors leave OUT untouched: an unknown option, a spec whose model has other shapes,
       a file that is not safetensors. */
    back = SENTINEL_MODEL;
    CHECK_STATUS(dl_model_import(path, NULL, "{\"loss\": \"mse\"}", &back), DL_INVALID_ARGUMENT);
    CHECK_MESSAGE_HAS("unknown key \"loss\"");
    CHECK_STATUS(dl_model_import(path, NULL,
        "{\"spec\": {\"input_size\": 5, \"layers\": [{\"type\": \"linear\", \"units\": 7}, {\"type\": \"batch_norm\"},"
        " {\"type\": \"tanh\"}, {\"type\": \"linear\", \"units\": 3}], \"loss\": \"mse\","
        " \"optimizer\": {\"type\": \"sgd\", \"lr\": 0.1}}}", &back), DL_FORMAT_ERROR);
    CHECK_MESSAGE_HAS("\"0.weight\" has shape [4, 5], but the spec's model has [7, 5]");
    CHECK_STATUS(dl_model_import(spec_path, "safetensors", NULL, &back), DL_FORMAT_ERROR);
    CHECK(back == SENTINEL_MODEL);

    release(m);
    remove(path);
    remove(python);
    remove(spec_path);
}

/* ------------------------------------------------------------------------ */
/* Model files in other formats: Keras (.keras, legacy Keras .h5)            */
/* ------------------------------------------------------------------------ */

/* A model exported as a Keras 3 archive and as a legacy Keras .h5 imports back with the
 * same predictions (bindings/python/tests/test_keras.py checks the files in Keras itself);
 * a .h5 is told apart by its content; damaged archives are clear errors. */
static void test_keras_files(void) {
    section("dl_model_export, dl_model_import: Keras");
    static const char cnn_json[] =
        "{\"format_version\": 1, \"name\": \"small_cnn\", \"input\": {\"shape\": [2, 6, 6]},"
        " \"layers\": [{\"type\": \"conv2d\", \"filters\": 3, \"kernel_size\": 3, \"padding\": 1},"
        "  {\"type\": \"batch_norm\"}, {\"type\": \"relu\"}, {\"type\": \"max_pool2d\", \"kernel_size\": 2},"
        "  {\"type\": \"flatten\"}, {\"type\": \"dropout\", \"rate\": 0.5}, {\"type\": \"linear\", \"units\": 4}],"
        " \"loss\": \"cross_entropy\", \"optimizer\": {\"type\": \"sgd\", \"lr\": 0.1}, \"seed\": 5}";
    enum { N = 8, IN = 72, OUT = 4 };
    float x[N * IN], y1[N * OUT], y2[N * OUT];
    int32_t labels[N];
    uint64_t state = 12;
    for (int i = 0; i < N * IN; i++) x[i] = uniform(&state);
    for (int i = 0; i < N; i++) labels[i] = i % OUT;
    char keras_path[4200], legacy_path[4200], cut_path[4200];
    scratch_path(keras_path, sizeof keras_path, "small_cnn.keras");
    scratch_path(legacy_path, sizeof legacy_path, "small_cnn_keras.h5");
    scratch_path(cut_path, sizeof cut_path, "truncated.keras");

    dl_model *m = NULL;
    if (!CHECK_OK(dl_model_from_json(cnn_json, &m))) return;
    for (int i = 0; i < 2; i++) CHECK_OK(dl_train_step(m, x, N, labels, NULL, NULL));
    CHECK_OK(dl_model_export(m, keras_path, NULL));           /* .keras: the archive */
    CHECK_OK(dl_model_export(m, legacy_path, "keras_h5"));    /* .h5 is ours unless named */
    CHECK_OK(dl_predict(m, x, N, y1, N * OUT));
    const char *paths[] = {keras_path, legacy_path};
    for (int k = 0; k < 2; k++) {
        dl_model *back = NULL;
        /* NULL format: .keras by extension, the .h5 by its model_config attribute. */
        if (CHECK_OK(dl_model_import(paths[k], NULL, NULL, &back))) {
            CHECK_OK(dl_predict(back, x, N, y2, N * OUT));
            double largest = 0;
            for (int i = 0; i < N * OUT; i++) largest = fmax(largest, fabs((double)y1[i] - y2[i]));
            CHECK(largest <= 1e-5);
            double loss = 0;
            CHECK_OK(dl_train_step(back, x, N, labels, NULL, &loss));
            CHECK(loss > 0 && isfinite(loss));
        }
        release(back);
    }
    dl_model *back = SENTINEL_MODEL;
    CHECK_STATUS(dl_model_import(keras_path, NULL, "{\"spec\": 1}", &back), DL_INVALID_ARGUMENT);
    CHECK_STATUS(dl_model_import(keras_path, "keras_weights", NULL, &back), DL_INVALID_ARGUMENT);
    CHECK_MESSAGE_HAS("spec");
    CHECK_STATUS(dl_model_export(m, keras_path, "keras_weights"), DL_UNSUPPORTED);
    long size = file_size(keras_path);
    CHECK(size > 100);
    long cuts[] = {0, 1, 30, size / 2, size - 1};
    for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
        if (!CHECK(copy_prefix(keras_path, cut_path, cuts[i]))) continue;
        CHECK_STATUS(dl_model_import(cut_path, "keras", NULL, &back), DL_FORMAT_ERROR);
    }
    CHECK(back == SENTINEL_MODEL);
    release(m);
    remove(keras_path);
    remove(legacy_path);
    remove(cut_path);
}

/* ------------------------------------------------------------------------ */
/* Caller sizes far beyond any tensor (issue 13, class 3)                    */
/* ------------------------------------------------------------------------ */

/* Sizes no caller can mean: each is refused by name before anything is read or
 * allocated. 2^31 is the first size above the library's tensor limit. */
static const size_t huge_sizes[] = {SIZE_MAX, SIZE_MAX / 2, (size_t)INT64_MAX, (size_t)INT64_MAX + 1, (size_t)1 << 31};
enum { HUGE_COUNT = sizeof huge_sizes / sizeof huge_sizes[0] };

/* Checks that the call returned DL_INVALID_ARGUMENT naming the argument and the limit. */
#define CHECK_HUGE(call, name)                                                                                         \
    do {                                                                                                               \
        if (CHECK_STATUS(call, DL_INVALID_ARGUMENT)) {                                                                 \
            CHECK_MESSAGE_HAS(name);                                                                                   \
            CHECK_MESSAGE_HAS("limit");                                                                                \
        }                                                                                                              \
    } while (0)

static void test_huge_sizes_models(void) {
    section("caller sizes: SIZE_MAX, SIZE_MAX/2, INT64_MAX, 2^31 refused by every model function");
    dl_model *m = load(xor_spec);
    if (m == NULL) return;
    float x[8] = {0}, out[8] = {0};
    int32_t labels[4] = {0}, classes[4] = {0};
    double loss = -1, accuracy = -1, rel = -1, per[4];
    size_t dims[4], ndim = 0;
    const char *name = NULL;
    for (int i = 0; i < HUGE_COUNT; i++) {
        size_t n = huge_sizes[i];
        CHECK_HUGE(dl_train_step(m, x, n, labels, NULL, &loss), "batch");
        CHECK_HUGE(dl_predict(m, x, n, out, SIZE_MAX), "count");
        CHECK_HUGE(dl_predict_classes(m, x, n, classes, SIZE_MAX), "count");
        CHECK_HUGE(dl_evaluate(m, x, n, labels, NULL, &loss, &accuracy), "count");
        CHECK_HUGE(dl_gradcheck(m, x, n, labels, NULL, 10, &rel, NULL, 0), "batch");
        CHECK_HUGE(dl_model_param_name(m, n, &name), "index");
        CHECK_HUGE(dl_model_layer_type(m, n, &name), "index");
        CHECK_HUGE(dl_model_buffer_name(m, n, &name), "index");
        CHECK_HUGE(dl_model_param_shape(m, n, dims, 4, &ndim), "index");
        CHECK_HUGE(dl_model_layer_output_shape(m, n, dims, 4, &ndim), "index");
        CHECK_HUGE(dl_model_buffer_shape(m, n, dims, 4, &ndim), "index");
        CHECK_HUGE(dl_model_get_param(m, n, out, 8), "index");
        CHECK_HUGE(dl_model_get_param(m, 0, out, n), "len");
        CHECK_HUGE(dl_model_set_param(m, 0, x, n), "len");
        CHECK_HUGE(dl_model_get_buffer(m, n, out, 8), "index");
        CHECK_HUGE(dl_model_set_buffer(m, n, x, 8), "index");
        /* Buffer capacities above what is needed are fine, however large. */
        CHECK_OK(dl_predict(m, xor_x, XOR_COUNT, out, n));
        CHECK_OK(dl_gradcheck(m, xor_x, XOR_COUNT, xor_labels, NULL, n, &rel, per, n));
        CHECK_OK(dl_model_param_shape(m, 0, dims, n, &ndim));
    }
    CHECK(loss == -1 && accuracy == -1);
    CHECK(step_count(m) == 0);
    release(m);
}

static void test_huge_sizes_layers(void) {
    section("caller sizes: huge sizes refused by every layer and loss function");
    dl_layer *linear = make_layer("{\"type\": \"linear\", \"in_features\": 2, \"units\": 2}", DL_FLOAT32, 1);
    dl_loss *mse = make_loss("{\"type\": \"mse\"}", DL_FLOAT32);
    if (linear == NULL || mse == NULL) goto done;
    float x[8] = {1, 2, 3, 4, 5, 6, 7, 8}, y[8];
    int32_t labels[4] = {0};
    double value = -1;
    size_t dims[4], ndim = 0, out_features = 0;
    const char *name = NULL;
    void *data = NULL;
    dl_layer *out = NULL;
    for (int i = 0; i < HUGE_COUNT; i++) {
        size_t n = huge_sizes[i];
        size_t shape[3] = {n, 1, 1}, small[3] = {2, 2, 2};
        CHECK_HUGE(dl_layer_forward(linear, x, n, 2, 1, y, 8), "rows");
        CHECK_HUGE(dl_layer_forward(linear, x, 2, n, 1, y, 8), "cols");
        CHECK_HUGE(dl_layer_backward(linear, x, n, 2, y, 8), "rows");
        CHECK_HUGE(dl_layer_backward(linear, x, 2, n, y, 8), "cols");
        CHECK_HUGE(dl_layer_output_features(linear, n, &out_features), "in_features");
        CHECK_HUGE(dl_layer_param_name(linear, n, &name), "index");
        CHECK_HUGE(dl_layer_param_shape(linear, n, dims, 4, &ndim), "index");
        CHECK_HUGE(dl_layer_param_data(linear, n, &data), "index");
        CHECK_HUGE(dl_layer_grad_data(linear, n, &data), "index");
        CHECK_HUGE(dl_layer_from_json_shaped("{\"type\": \"relu\"}", small, n, DL_FLOAT32, 1, &out), "ndim");
        CHECK_STATUS_EITHER(dl_layer_from_json_shaped("{\"type\": \"batch_norm\"}", shape, 3, DL_FLOAT32, 1, &out),
                            DL_INVALID_ARGUMENT, DL_NOMEM);
        CHECK_HUGE(dl_loss_forward(mse, x, n, 2, NULL, x, &value), "rows");
        CHECK_HUGE(dl_loss_forward(mse, x, 2, n, NULL, x, &value), "cols");
    }
    /* Within the limit, but the product of rows and columns is not. */
    size_t big = ((size_t)1 << 31) - 1;
    dl_layer *relu = make_layer("{\"type\": \"relu\"}", DL_FLOAT32, 1);
    if (relu != NULL) CHECK_STATUS(dl_layer_forward(relu, x, big, big, 1, y, 8), DL_NOMEM);
    release_layer(relu);
    CHECK_STATUS(dl_layer_forward(linear, x, big, big, 1, y, 8), DL_INVALID_ARGUMENT);  /* 2 features, not 2^31 - 1 */
    CHECK_STATUS(dl_loss_forward(mse, x, big, big, NULL, x, &value), DL_NOMEM);
    CHECK_STATUS(dl_loss_forward(mse, x, big, 2, labels, NULL, &value), DL_NOMEM);
    CHECK(value == -1);
done:
    release_layer(linear);
    release_loss(mse);
}

static void test_huge_sizes_datasets(void) {
    section("caller sizes: huge sizes refused by every data set function");
    dl_dataset *out = NULL, *data = NULL;
    float x[8] = {0, 0, 0, 1, 1, 0, 1, 1}, targets[8] = {0};
    int32_t labels[4] = {0, 1, 1, 0};
    size_t shape[1] = {2}, dims[4], ndim = 0;
    dl_model *m = load(xor_spec);
    if (m == NULL || !CHECK_OK(dl_dataset_from_arrays(x, 4, shape, 1, labels, NULL, 0, &data))) goto done;
    double loss = -1;
    for (int i = 0; i < HUGE_COUNT; i++) {
        size_t n = huge_sizes[i], big_shape[2] = {n, 1};
        CHECK_HUGE(dl_dataset_load_csv(ds_csv_path, n, &out), "feature_count");
        CHECK_HUGE(dl_dataset_load_csv_targets(ds_csv_path, n, 1, &out), "feature_count");
        CHECK_HUGE(dl_dataset_load_csv_targets(ds_csv_path, 1, n, &out), "target_count");
        CHECK_HUGE(dl_dataset_from_arrays(x, n, shape, 1, labels, NULL, 0, &out), "count");
        CHECK_HUGE(dl_dataset_from_arrays(x, 4, shape, n, labels, NULL, 0, &out), "ndim");
        CHECK_HUGE(dl_dataset_from_arrays(x, 4, shape, 1, NULL, targets, n, &out), "target_size");
        CHECK_STATUS_EITHER(dl_dataset_from_arrays(x, 4, big_shape, 2, labels, NULL, 0, &out), DL_INVALID_ARGUMENT, DL_NOMEM);
        CHECK_HUGE(dl_train_epoch(m, data, n, 1, &loss), "batch_size");
        CHECK_HUGE(dl_train_epoch(m, data, n, 0, &loss), "batch_size");
        CHECK_OK(dl_dataset_sample_shape(data, dims, n, &ndim));
    }
    CHECK(out == NULL && loss == -1 && step_count(m) == 0);
    /* The largest batch size accepted is one batch of the whole set. */
    CHECK_OK(dl_train_epoch(m, data, ((size_t)1 << 31) - 1, 1, &loss));
    CHECK(step_count(m) == 1 && loss > 0);
    /* A feature count within the limit that no row has is a format error. */
    CHECK_STATUS(dl_dataset_load_csv(ds_csv_path, ((size_t)1 << 31) - 1, &out), DL_FORMAT_ERROR);
done:
    release(m);
    release_dataset(data);
}

/* ------------------------------------------------------------------------ */
/* Standalone layers hold to the shape they were built for (class 4)         */
/* ------------------------------------------------------------------------ */

static void test_standalone_layer_shapes(void) {
    section("standalone layers: a shape other than the one built for is refused");
    /* Built without an input shape, these layers are built for one feature. */
    static const char *const fixed[] = {"{\"type\": \"flatten\"}", "{\"type\": \"reshape\", \"shape\": 1}",
                                        "{\"type\": \"batch_norm\"}"};
    enum { ROWS = 2, COLS = 8 };
    float x[ROWS * COLS], y[ROWS * COLS * 4], dx[ROWS * COLS];
    for (int i = 0; i < ROWS * COLS; i++) x[i] = (float)i - 3.5f;
    for (size_t k = 0; k < sizeof fixed / sizeof fixed[0]; k++) {
        for (int dtype = DL_FLOAT32; dtype <= DL_FLOAT64; dtype++) {
            dl_layer *layer = make_layer(fixed[k], dtype, 1);
            if (layer == NULL) continue;
            double xd[ROWS * COLS];
            for (int i = 0; i < ROWS * COLS; i++) xd[i] = x[i];
            const void *input = dtype == DL_FLOAT32 ? (const void *)x : (const void *)xd;
            size_t features = 0;
            memset(y, 0x5a, sizeof y);
            CHECK_STATUS(dl_layer_forward(layer, input, ROWS, COLS, 1, y, sizeof y / sizeof y[0] / 2), DL_INVALID_ARGUMENT);
            CHECK_MESSAGE_HAS("expects 1 features per sample, got 8");
            CHECK_MESSAGE_HAS("dl_layer_from_json_shaped");
            CHECK(((unsigned char *)y)[0] == 0x5a);   /* nothing written */
            CHECK_STATUS(dl_layer_output_features(layer, COLS, &features), DL_INVALID_ARGUMENT);
            CHECK_STATUS(dl_layer_backward(layer, input, ROWS, COLS, dx, ROWS * COLS), DL_INVALID_ARGUMENT);
            /* 50 million columns: refused the same way, nothing read. */
            CHECK_STATUS(dl_layer_forward(layer, input, 1, 50000000, 0, y, SIZE_MAX), DL_INVALID_ARGUMENT);
            /* The shape it was built for works: one feature. */
            if (CHECK_OK(dl_layer_forward(layer, input, ROWS * COLS, 1, k == 2 ? 1 : 0, y, sizeof y / sizeof y[0] / 2))) {
                if (k < 2 && dtype == DL_FLOAT32) CHECK(memcmp(y, x, sizeof x) == 0);
            }
            release_layer(layer);
        }
    }
    /* Built for a shape, each shaped layer refuses any other number of features. */
    static const char *const shaped_json[] = {"{\"type\": \"flatten\"}", "{\"type\": \"reshape\", \"shape\": [4, 2, 1]}",
                                              "{\"type\": \"batch_norm\"}", "{\"type\": \"conv2d\", \"filters\": 1, \"kernel_size\": 1}",
                                              "{\"type\": \"max_pool2d\", \"kernel_size\": 1}",
                                              "{\"type\": \"avg_pool2d\", \"kernel_size\": 1}"};
    size_t shape[3] = {2, 2, 2};
    for (size_t k = 0; k < sizeof shaped_json / sizeof shaped_json[0]; k++) {
        dl_layer *layer = NULL;
        if (!CHECK_OK(dl_layer_from_json_shaped(shaped_json[k], shape, 3, DL_FLOAT32, 1, &layer))) continue;
        CHECK_STATUS(dl_layer_forward(layer, x, 1, COLS + 1, 1, y, SIZE_MAX), DL_INVALID_ARGUMENT);
        CHECK_MESSAGE_HAS("expects 8 features per sample, got 9");
        CHECK_STATUS(dl_layer_forward(layer, x, 2, 4, 1, y, SIZE_MAX), DL_INVALID_ARGUMENT);
        CHECK_OK(dl_layer_forward(layer, x, ROWS, COLS, 1, y, sizeof y / sizeof y[0]));
        dl_layer_free(layer);
    }
    /* Activations, dropout and softmax take any number of features. */
    static const char *const any[] = {"{\"type\": \"relu\"}", "{\"type\": \"dropout\", \"rate\": 0.5}", "{\"type\": \"softmax\"}"};
    for (size_t k = 0; k < sizeof any / sizeof any[0]; k++) {
        dl_layer *layer = make_layer(any[k], DL_FLOAT32, 1);
        if (layer == NULL) continue;
        CHECK_OK(dl_layer_forward(layer, x, ROWS, COLS, 0, y, ROWS * COLS));
        CHECK_OK(dl_layer_forward(layer, x, ROWS * COLS, 1, 0, y, ROWS * COLS));
        release_layer(layer);
    }
}

/* ------------------------------------------------------------------------ */
/* Concurrent inference on one model (build item 8)                          */
/* ------------------------------------------------------------------------ */

/* Every layer type, and a first linear layer on mostly-zero input (the sparse path). */
static const char every_layer_spec[] =
    "{\"input\": {\"size\": 16}, \"layers\": [{\"type\": \"reshape\", \"shape\": [1, 4, 4]},"
    " {\"type\": \"conv2d\", \"filters\": 3, \"kernel_size\": 3, \"padding\": 1}, {\"type\": \"batch_norm\"},"
    " {\"type\": \"relu\"}, {\"type\": \"max_pool2d\", \"kernel_size\": 2}, {\"type\": \"avg_pool2d\", \"kernel_size\": 1},"
    " {\"type\": \"flatten\"}, {\"type\": \"dropout\", \"rate\": 0.25}, {\"type\": \"linear\", \"units\": 5},"
    " {\"type\": \"gelu\"}, {\"type\": \"linear\", \"units\": 3}, {\"type\": \"softmax\"}],"
    " \"loss\": \"mse\", \"optimizer\": {\"type\": \"adam\", \"lr\": 0.01}, \"seed\": 3}";
static const char sparse_spec[] =
    "{\"input\": {\"size\": 64}, \"layers\": [{\"type\": \"linear\", \"units\": 16}, {\"type\": \"sigmoid\"},"
    " {\"type\": \"linear\", \"units\": 4}], \"loss\": \"cross_entropy\", \"optimizer\": {\"type\": \"sgd\", \"lr\": 0.5},"
    " \"seed\": 5}";

typedef struct {
    dl_model *model;
    const float *x;
    size_t count, in, out;
    const float *before, *after;  /* the serial outputs (after: of the model after a step) */
    const double *loss_before, *loss_after;
    const int32_t *labels;
    const float *targets;
    int iterations;
    atomic_bool *stop;            /* run until set, when not NULL */
    int ok, busy, wrong, torn;    /* statuses and results seen */
} infer_worker;

/* Predicts, predicts classes and evaluates again and again on a shared model; each result
 * must be one of the serial ones (before or after the concurrent train step). */
static void *infer_on_shared(void *arg) {
    infer_worker *w = arg;
    float *out = malloc(w->count * w->out * sizeof *out);
    int32_t *classes = malloc(w->count * sizeof *classes);
    if (!CHECK(out && classes)) goto done;
    gate_wait();
    for (int i = 0; w->stop ? !atomic_load(w->stop) || i < w->iterations : i < w->iterations; i++) {
        int kind = i % 3, status;
        double loss = -1;
        if (kind == 0) status = dl_predict(w->model, w->x, w->count, out, w->count * w->out);
        else if (kind == 1) status = dl_predict_classes(w->model, w->x, w->count, classes, w->count);
        else status = dl_evaluate(w->model, w->x, w->count, w->labels, w->targets, &loss, NULL);
        if (status == DL_BUSY) { w->busy++; continue; }
        if (status != DL_OK) { w->wrong++; continue; }
        w->ok++;
        bool before = true, after = w->after != NULL;
        if (kind == 0) {
            before = memcmp(out, w->before, w->count * w->out * sizeof *out) == 0;
            after = after && memcmp(out, w->after, w->count * w->out * sizeof *out) == 0;
        } else if (kind == 1) {
            for (size_t r = 0; r < w->count; r++) {
                before = before && (size_t)classes[r] == argmax(w->before + r * w->out, w->out);
                after = after && (size_t)classes[r] == argmax(w->after + r * w->out, w->out);
            }
        } else {
            before = loss == *w->loss_before;
            after = after && loss == *w->loss_after;
        }
        if (!before && !after) w->torn++;
    }
done:
    free(out);
    free(classes);
    return NULL;
}

/* Inputs for a model: mostly zeros with a few values (so a first linear layer on them takes
 * its sparse path), deterministic. */
static float *infer_inputs(size_t count, size_t in, uint64_t seed) {
    float *x = malloc(count * in * sizeof *x);
    if (x == NULL) return NULL;
    for (size_t i = 0; i < count * in; i++) {
        float u = uniform(&seed);
        x[i] = u < 0.8f ? 0.0f : 4 * u - 3;
    }
    return x;
}

static void concurrent_inference(const char *spec, size_t count, int threads) {
    dl_model *m = load_json(spec), *next = NULL;
    size_t in = 0, out = 0;
    float *x = NULL, *before = NULL, *after = NULL, *targets = NULL;
    int32_t *labels = NULL;
    if (m == NULL || !CHECK_OK(dl_model_input_size(m, &in)) || !CHECK_OK(dl_model_output_size(m, &out))) goto done;
    x = infer_inputs(count, in, 11);
    before = malloc(count * out * sizeof *before);
    after = malloc(count * out * sizeof *after);
    targets = malloc(count * out * sizeof *targets);
    labels = malloc(count * sizeof *labels);
    if (!CHECK(x && before && after && targets && labels)) goto done;
    for (size_t i = 0; i < count; i++) labels[i] = (int32_t)(i % out);
    for (size_t i = 0; i < count * out; i++) targets[i] = (float)(i % out == (size_t)labels[i / out]);
    /* A step first, so batch norm's running statistics and Adam's state are not trivial. */
    bool classifier = strstr(spec, "cross_entropy") != NULL;
    const int32_t *step_labels = classifier ? labels : NULL;
    const float *step_targets = classifier ? NULL : targets;
    CHECK_OK(dl_train_step(m, x, count < 64 ? count : 64, step_labels, step_targets, NULL));
    double loss_before = 0, loss_after = 0;
    CHECK_OK(dl_predict(m, x, count, before, count * out));
    CHECK_OK(dl_evaluate(m, x, count, step_labels, step_targets, &loss_before, NULL));
    if (!CHECK_OK(dl_model_clone(m, &next))) goto done;
    CHECK_OK(dl_train_step(next, x, count < 64 ? count : 64, step_labels, step_targets, NULL));
    CHECK_OK(dl_predict(next, x, count, after, count * out));
    CHECK_OK(dl_evaluate(next, x, count, step_labels, step_targets, &loss_after, NULL));
    CHECK(memcmp(before, after, count * out * sizeof *before) != 0);

    /* (1) N threads at once on the shared model: every result is the serial one. */
    pthread_t t[8];
    infer_worker w[8];
    bool started[8];
    gate_set(false);
    for (int i = 0; i < threads; i++) {
        w[i] = (infer_worker){.model = m, .x = x, .count = count, .in = in, .out = out, .before = before,
                              .loss_before = &loss_before, .labels = step_labels, .targets = step_targets,
                              .iterations = 60};
        started[i] = CHECK(pthread_create(&t[i], NULL, infer_on_shared, &w[i]) == 0);
    }
    gate_set(true);
    int ok = 0, busy = 0, wrong = 0, torn = 0;
    for (int i = 0; i < threads; i++) {
        if (!started[i]) continue;
        pthread_join(t[i], NULL);
        ok += w[i].ok, busy += w[i].busy, wrong += w[i].wrong, torn += w[i].torn;
    }
    printf("   %d threads predicting: %d DL_OK, %d DL_BUSY, %d failed, %d different from the serial result\n",
           threads, ok, busy, wrong, torn);
    CHECK(ok == threads * 60 && busy == 0 && wrong == 0 && torn == 0);

    /* (2) A train step while they run: it takes the model alone (a predict meanwhile gets
     * DL_BUSY, the step gets DL_BUSY while predicts run), and every predict equals the
     * model before or after it, never a mix. */
    atomic_bool stop = false;
    gate_set(false);
    for (int i = 0; i < threads; i++) {
        w[i] = (infer_worker){.model = m, .x = x, .count = count, .in = in, .out = out, .before = before, .after = after,
                              .loss_before = &loss_before, .loss_after = &loss_after,
                              .labels = step_labels, .targets = step_targets, .iterations = 30, .stop = &stop};
        started[i] = CHECK(pthread_create(&t[i], NULL, infer_on_shared, &w[i]) == 0);
    }
    gate_set(true);
    int step_busy = 0, step_status = DL_BUSY;
    const double deadline = seconds_now() + 30;
    while (step_status == DL_BUSY && seconds_now() < deadline) {
        step_status = dl_train_step(m, x, count < 64 ? count : 64, step_labels, step_targets, NULL);
        if (step_status == DL_BUSY) {
            step_busy++;
            CHECK_MESSAGE_HAS("busy");
        }
    }
    atomic_store(&stop, true);
    CHECK_STATUS(step_status, DL_OK);
    ok = busy = wrong = torn = 0;
    for (int i = 0; i < threads; i++) {
        if (!started[i]) continue;
        pthread_join(t[i], NULL);
        ok += w[i].ok, busy += w[i].busy, wrong += w[i].wrong, torn += w[i].torn;
    }
    printf("   a train step among %d predicting threads: step DL_BUSY %d times; predicts %d DL_OK, %d DL_BUSY, %d failed, %d torn\n",
           threads, step_busy, ok, busy, wrong, torn);
    CHECK(ok > 0 && wrong == 0 && torn == 0);
    CHECK(models_equal(m, next));   /* exactly one step happened */
done:
    release(m);
    release(next);
    free(x);
    free(before);
    free(after);
    free(targets);
    free(labels);
}

/* A progress callback that holds the model for `hold` seconds after the first step, and
 * a thread that predicts on it meanwhile. */
typedef struct {
    double hold;
    atomic_bool holding;
} hold_state;

static int hold_model(void *user_data, size_t done, size_t total, size_t samples_done, double mean_loss) {
    (void)total, (void)samples_done, (void)mean_loss;
    hold_state *h = user_data;
    if (done == 1) {
        atomic_store(&h->holding, true);
        struct timespec pause = {(time_t)h->hold, (long)((h->hold - (double)(time_t)h->hold) * 1e9)};
        nanosleep(&pause, NULL);
    }
    return 0;
}

typedef struct {
    dl_model *model;
    hold_state *state;
    float out[XOR_COUNT * XOR_OUT];
    int status;
    double waited;
} waiting_predict;

static void *predict_while_held(void *arg) {
    waiting_predict *p = arg;
    while (!atomic_load(&p->state->holding)) sched_yield();   /* valgrind runs one thread at a time */
    const double start = seconds_now();
    p->status = dl_predict(p->model, xor_x, XOR_COUNT, p->out, XOR_COUNT * XOR_OUT);
    p->waited = seconds_now() - start;
    return NULL;
}

static void test_waiting_for_a_model(void) {
    section("threads: a predict waits briefly for a train epoch, then gets DL_BUSY");
    size_t shape[1] = {XOR_IN};
    dl_dataset *data = NULL;
    if (!CHECK_OK(dl_dataset_from_arrays(xor_x, XOR_COUNT, shape, 1, xor_labels, NULL, 0, &data))) return;
    const double holds[2] = {0.05, 0.6};
    for (int k = 0; k < 2; k++) {
        dl_model *m = load(xor_spec);
        if (m == NULL) break;
        hold_state state = {.hold = holds[k], .holding = false};
        waiting_predict p = {.model = m, .state = &state, .status = -1};
        for (int i = 0; i < XOR_COUNT * XOR_OUT; i++) p.out[i] = 7;
        CHECK_OK(dl_model_set_progress(m, hold_model, &state));
        pthread_t t;
        if (!CHECK(pthread_create(&t, NULL, predict_while_held, &p) == 0)) {
            release(m);
            break;
        }
        CHECK_OK(dl_train_epoch(m, data, 2, 0, NULL));
        pthread_join(t, NULL);
        float after[XOR_COUNT * XOR_OUT];
        CHECK_OK(dl_predict(m, xor_x, XOR_COUNT, after, XOR_COUNT * XOR_OUT));
        printf("   epoch held %.2f s: dl_predict returned %d after %.3f s\n", holds[k], p.status, p.waited);
        if (getenv("DL_TEST_UNDER_VALGRIND") != NULL) {
            /* Too slow there for the timings: only no other status, and no torn output. */
            CHECK(p.status == DL_BUSY || (p.status == DL_OK && memcmp(p.out, after, sizeof after) == 0));
        } else if (k == 0) {
            /* It waited for the epoch and saw the model after it. */
            CHECK(p.status == DL_OK && memcmp(p.out, after, sizeof after) == 0);
        } else {
            /* It waited about a quarter of a second, then gave up, writing nothing. */
            CHECK(p.status == DL_BUSY && p.waited >= 0.2 && p.waited < 0.59 && p.out[0] == 7);
        }
        release(m);
    }
    release_dataset(data);
}

/* A progress callback that uses its own model: a reading call during an evaluation goes
 * through, a call that would take the model alone gets DL_BUSY at once (no waiting for
 * itself). */
typedef struct {
    dl_model *model;
    int predict_status, set_status, step_status;
    double slowest;
} own_model_log;

static int use_own_model(void *user_data, size_t done, size_t total, size_t samples_done, double mean_loss) {
    (void)done, (void)total, (void)samples_done, (void)mean_loss;
    own_model_log *log = user_data;
    float out[XOR_OUT];
    double start = seconds_now();
    log->predict_status = dl_predict(log->model, xor_x, 1, out, XOR_OUT);
    log->set_status = dl_model_set_learning_rate(log->model, 0.01);
    log->step_status = dl_train_step(log->model, xor_x, XOR_COUNT, xor_labels, NULL, NULL);
    double took = seconds_now() - start;
    if (took > log->slowest) log->slowest = took;
    return 0;
}

static void test_callback_on_its_own_model(void) {
    section("threads: a progress callback using its own model never waits for itself");
    size_t shape[1] = {XOR_IN};
    dl_dataset *data = NULL;
    dl_model *m = load(xor_spec);
    if (m == NULL || !CHECK_OK(dl_dataset_from_arrays(xor_x, XOR_COUNT, shape, 1, xor_labels, NULL, 0, &data))) goto done;
    own_model_log log = {.model = m, .predict_status = -1, .set_status = -1, .step_status = -1};
    CHECK_OK(dl_model_set_progress(m, use_own_model, &log));
    CHECK_OK(dl_evaluate_dataset(m, data, NULL, NULL));       /* reads the model */
    CHECK(log.predict_status == DL_OK && log.set_status == DL_BUSY && log.step_status == DL_BUSY);
    CHECK_OK(dl_train_epoch(m, data, 2, 0, NULL));            /* has the model alone */
    CHECK(log.predict_status == DL_BUSY && log.set_status == DL_BUSY && log.step_status == DL_BUSY);
    printf("   slowest callback: %.4f s\n", log.slowest);
    if (getenv("DL_TEST_UNDER_VALGRIND") == NULL) CHECK(log.slowest < 0.1);   /* nothing waited 0.25 s */
    CHECK(step_count(m) == 2);
done:
    release(m);
    release_dataset(data);
}

static void test_concurrent_inference(void) {
    section("threads: concurrent dl_predict, dl_predict_classes, dl_evaluate on one model; a train step takes it alone");
    concurrent_inference(every_layer_spec, 37, 4);
    concurrent_inference(sparse_spec, 200, 4);
    concurrent_inference(sparse_spec, 1, 3);     /* single samples: the one-row kernel */
    test_waiting_for_a_model();
    test_callback_on_its_own_model();
}

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
    test_sparse_input_threads();
    test_gradcheck();
    test_robust_numeric();
    test_determinism();
    test_float64();
    test_regression();
    test_buffers_and_layer_shapes();
    test_shaped_layers();

    test_layer_creation();
    test_layer_handles();
    test_layer_errors();
    test_linear(DL_FLOAT64);
    test_linear(DL_FLOAT32);
    test_activations();
    test_losses();
    test_losses_from_the_registry();
    test_loss_errors();
    test_layer_finite_differences();

    dl_model *xor = load(xor_spec);
    if (xor != NULL) {
        test_train_step_errors(xor);
        test_inference_errors(xor);
        test_xor(xor);
        test_large_batch_errors(xor);
        test_clone(xor);
        test_checkpoints(xor);
        test_checkpoints_untrusted(xor);
        test_threads_clones(xor);
        test_threads_same_model(xor);
    }
    release(xor);
    test_threads_separate_models();
    test_onnx_files();
    test_safetensors_files();
    test_keras_files();
    test_last_error_per_thread();
    test_huge_sizes_models();
    test_huge_sizes_layers();
    test_standalone_layer_shapes();
    test_concurrent_inference();

    scratch_path(ds_checkpoint_path, sizeof ds_checkpoint_path, "dataset_checkpoint.h5");
    if (write_dataset_files()) {
        test_dataset_loading();
        test_dataset_standardizer();
        test_dataset_handles();
        test_train_epoch();
        test_dataset_from_arrays();
        test_dataset_borrow_arrays();
        test_progress();
        test_train_epoch_errors();
        test_dataset_targets();
        test_threads_shared_dataset();
        test_huge_sizes_datasets();
    }

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
