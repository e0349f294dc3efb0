/*
 * fuzz_abi -- short random sequences of C ABI calls with fuzzer-chosen
 * arguments: models built, trained, queried, changed, saved, loaded, cloned and
 * freed (and used after free); data sets (copied or read in place), gradient
 * reducers that fail or return garbage, standalone layers and losses; NULL
 * pointers, sizes that are wrong or overflow, NaN, infinities and extreme values.
 *
 * The input is a program: each operation is one byte (its number modulo the
 * table below) followed by the bytes its arguments take (missing bytes read as
 * 0). Buffers the harness passes always hold what it claims they hold: a wrong
 * size here is one the library can see (out_len against count * output size, a
 * length against a tensor's size, a count whose product overflows), never a
 * caller lying about its own memory. The header's promises checked on the way:
 * no call ends the process, returns DL_ERROR or an unknown status, and a model
 * that saves with DL_OK loads back.
 */
#include "fuzz_common.h"

/* Small models, so that each operation is fast: inputs of at most 16 values. */
static const char *const specs[] = {
    "{\"format_version\": 1, \"input\": {\"size\": 2}, \"layers\": [{\"type\": \"linear\", \"units\": 4},"
    " {\"type\": \"tanh\"}, {\"type\": \"linear\", \"units\": 2}], \"loss\": \"cross_entropy\","
    " \"optimizer\": {\"type\": \"sgd\", \"lr\": 0.1, \"momentum\": 0.9}, \"seed\": 1}",
    "{\"format_version\": 1, \"input\": {\"size\": 3}, \"layers\": [{\"type\": \"linear\", \"units\": 5},"
    " {\"type\": \"relu\"}, {\"type\": \"linear\", \"units\": 1}], \"loss\": \"mse\","
    " \"optimizer\": {\"type\": \"adam\", \"lr\": 0.01}, \"seed\": 2}",
    "{\"format_version\": 1, \"input\": {\"size\": 16}, \"layers\": [{\"type\": \"reshape\", \"shape\": [1, 4, 4]},"
    " {\"type\": \"conv2d\", \"filters\": 2, \"kernel_size\": 3, \"padding\": 1},"
    " {\"type\": \"batch_norm\"}, {\"type\": \"relu\"}, {\"type\": \"max_pool2d\", \"kernel_size\": 2},"
    " {\"type\": \"flatten\"}, {\"type\": \"dropout\", \"rate\": 0.5}, {\"type\": \"linear\", \"units\": 3}],"
    " \"loss\": \"cross_entropy\", \"optimizer\": {\"type\": \"rmsprop\", \"lr\": 0.01}, \"seed\": 3}",
    "{\"format_version\": 1, \"input\": {\"size\": 4}, \"layers\": [{\"type\": \"linear\", \"units\": 3},"
    " {\"type\": \"batch_norm\"}, {\"type\": \"sigmoid\"}, {\"type\": \"linear\", \"units\": 2}],"
    " \"loss\": {\"type\": \"huber\", \"delta\": 1.0}, \"optimizer\": {\"type\": \"sgd\", \"lr\": 0.05},"
    " \"seed\": 4}",
};
static const char *const layers[] = {
    "{\"type\": \"linear\", \"in_features\": 3, \"units\": 2}", "{\"type\": \"relu\"}",
    "{\"type\": \"flatten\"}", "{\"type\": \"reshape\", \"shape\": [1]}", "{\"type\": \"batch_norm\"}",
    "{\"type\": \"dropout\", \"rate\": 0.5}", "{\"type\": \"softmax\"}",
    "{\"type\": \"conv2d\", \"filters\": 1, \"kernel_size\": 2}", "{\"type\": \"max_pool2d\", \"kernel_size\": 2}",
    "{\"type\": \"linear\"}", "not json",
};
static const char *const losses[] = {
    "\"mse\"", "\"cross_entropy\"", "{\"type\": \"huber\", \"delta\": 1.0}", "\"binary_cross_entropy\"",
    "{\"type\": \"cross_entropy\", \"label_smoothing\": 0.1}", "\"nope\"",
};
static const double values[] = {
    0.0, -0.0, 1.0, -1.0, 0.01, 1e-13, 1e13, 1e300, -1e300, 5e-324, 1.0 / 255, 0.5, 100.0,
    NAN, INFINITY, -INFINITY,
};
static const size_t sizes[] = {
    0, 1, 2, 3, 4, 16, (size_t)-1, (size_t)-1 / 2, (size_t)-1 / 4 + 1, (size_t)1 << 62, (size_t)1 << 32,
};

#define SLOTS 2
#define BUF 4096
typedef struct {
    const uint8_t *p, *end;
    dl_model *model[SLOTS];
    dl_model *dead_model;            /* a freed model, to be used again */
    dl_dataset *dataset;
    dl_layer *layer;
    dl_loss *loss;
    float x[BUF], y[BUF];
    int32_t labels[BUF];
    double doubles[64];
} state;

static uint8_t byte(state *s) { return s->p < s->end ? *s->p++ : 0; }
static double value(state *s) { return values[byte(s) % (sizeof values / sizeof *values)]; }
static size_t small(state *s) { return byte(s) % 5; }              /* a count the buffers hold */
static size_t any_size(state *s) { return sizes[byte(s) % (sizeof sizes / sizeof *sizes)]; }

/* A model argument: a slot's model (maybe NULL), the freed one, or a pointer that is no handle. */
static dl_model *model(state *s) {
    uint8_t b = byte(s);
    switch (b % 8) {
    case 6: return s->dead_model;
    case 7: return (dl_model *)(void *)s->x;   /* not a handle */
    default: return s->model[b % SLOTS];
    }
}

static void status(int st, const char *call) { fuzz_check_status(st, call); }

/* Fills x with count * width values; every 16th byte of input may plant a NaN or infinity. */
static void fill(state *s, size_t n) {
    fuzz_rng r = {(uint64_t)byte(s) * 7919 + 1};
    for (size_t i = 0; i < n && i < BUF; i++) s->x[i] = fuzz_uniform(&r);
    uint8_t poison = byte(s);
    if (poison >= 0xF0 && n > 0) s->x[poison % n] = poison & 1 ? NAN : INFINITY;
}

/* Sizes of a live model, or 0 when the handle is not one. */
static void sizes_of(dl_model *m, size_t *in, size_t *out) {
    *in = *out = 0;
    if (dl_model_input_size(m, in) != DL_OK || dl_model_output_size(m, out) != DL_OK) *in = *out = 0;
}

/* Fake gradient reducers, as if other ranks took part: what they do to the buffer is
 * chosen by user_data. 0 leaves it (every other rank contributed nothing), 1 doubles it
 * (a second, identical rank), 2 fails, 3 writes NaN and huge values everywhere (a broken
 * reducer: counts and flags become garbage). */
static int fake_reduce(void *user_data, void *buffer, size_t count, int dtype) {
    const int kind = (int)(intptr_t)user_data;
    if (kind == 2) return 1;
    for (size_t i = 0; i < count; i++) {
        if (dtype == DL_FLOAT64) {
            double *b = buffer;
            b[i] = kind == 1 ? 2 * b[i] : kind == 3 ? (i % 2 ? NAN : 1e300) : b[i];
        } else {
            float *b = buffer;
            b[i] = kind == 1 ? 2 * b[i] : kind == 3 ? (i % 2 ? NAN : 3e38f) : b[i];
        }
    }
    return 0;
}

static void op(state *s) {
    uint8_t code = byte(s);
    switch (code % 20) {
    case 0: {   /* create */
        size_t slot = byte(s) % SLOTS;
        dl_model *m = NULL;
        status(dl_model_from_json(specs[byte(s) % 4], &m), "dl_model_from_json");
        if (m) { dl_model_free(s->model[slot]); s->model[slot] = m; }
        break;
    }
    case 1: {   /* free, keeping the dead pointer */
        size_t slot = byte(s) % SLOTS;
        if (s->model[slot]) {
            dl_model_free(s->model[slot]);
            s->dead_model = s->model[slot];
            s->model[slot] = NULL;
        }
        break;
    }
    case 2: {   /* clone */
        dl_model *copy = NULL;
        size_t slot = byte(s) % SLOTS;
        int st = dl_model_clone(model(s), byte(s) & 1 ? &copy : NULL);
        status(st, "dl_model_clone");
        if (copy) { dl_model_free(s->model[slot]); s->model[slot] = copy; }
        break;
    }
    case 3: {   /* train step */
        dl_model *m = model(s);
        size_t in, out, batch = byte(s) & 0x80 ? any_size(s) : small(s);
        sizes_of(m, &in, &out);
        size_t real = batch <= 4 ? batch : 0;
        fill(s, real * (in ? in : 1));
        for (size_t i = 0; i < 4; i++) s->labels[i] = (int32_t)(byte(s) % (out ? out + 1 : 3)) - (byte(s) == 0xFF);
        for (size_t i = 0; i < 4 * (out ? out : 1) && i < BUF; i++) s->y[i] = (float)value(s);
        uint8_t how = byte(s);
        double loss;
        /* batch beyond 4 only with sizes whose product with the input size overflows */
        if (batch > 4 && in && batch <= SIZE_MAX / in) break;
        status(dl_train_step(m, how & 4 ? NULL : s->x, batch, how & 1 ? s->labels : NULL,
                             how & 2 ? s->y : NULL, how & 8 ? NULL : &loss), "dl_train_step");
        break;
    }
    case 4: {   /* predict */
        dl_model *m = model(s);
        size_t in, out, count = byte(s) & 0x80 ? any_size(s) : small(s);
        sizes_of(m, &in, &out);
        if (count > 4 && in && count <= SIZE_MAX / in) break;
        fill(s, (count <= 4 ? count : 0) * (in ? in : 1));
        size_t need = count <= 4 ? count * out : 0;
        size_t out_len = byte(s) & 1 ? need : (byte(s) & 1 ? need - 1 : 0);
        if (out_len > BUF) out_len = BUF;
        status(dl_predict(m, byte(s) == 0xFF ? NULL : s->x, count, s->y, out_len), "dl_predict");
        break;
    }
    case 5: {   /* predict classes, evaluate */
        dl_model *m = model(s);
        size_t in, out, count = small(s);
        sizes_of(m, &in, &out);
        fill(s, count * (in ? in : 1));
        for (size_t i = 0; i < 4; i++) s->labels[i] = (int32_t)(byte(s) % (out ? out + 1 : 3));
        double loss, acc;
        if (byte(s) & 1) status(dl_predict_classes(m, s->x, count, s->labels + 4, small(s)), "dl_predict_classes");
        else status(dl_evaluate(m, s->x, count, byte(s) & 1 ? s->labels : NULL, byte(s) & 1 ? s->y : NULL,
                                byte(s) & 1 ? &loss : NULL, &acc), "dl_evaluate");
        break;
    }
    case 6: {   /* learning rate */
        dl_model *m = model(s);
        double lr;
        if (byte(s) & 1) status(dl_model_set_learning_rate(m, value(s)), "dl_model_set_learning_rate");
        else status(dl_model_get_learning_rate(m, byte(s) & 1 ? &lr : NULL), "dl_model_get_learning_rate");
        break;
    }
    case 7: {   /* preprocessing */
        dl_model *m = model(s);
        double a, b, c;
        if (byte(s) & 1) {
            double scale = value(s), mean = value(s), std = value(s);
            status(dl_model_set_preprocessing(m, scale, mean, std), "dl_model_set_preprocessing");
        } else {
            status(dl_model_get_preprocessing(m, &a, byte(s) & 1 ? &b : NULL, &c), "dl_model_get_preprocessing");
        }
        break;
    }
    case 8: case 9: {   /* parameters and buffers: get and set, any index and length */
        dl_model *m = model(s);
        int buffers = code % 20 == 9;
        size_t index = byte(s) & 0x80 ? any_size(s) : byte(s) % 8, dims[4], ndim = 0, n = 0;
        int st = buffers ? dl_model_buffer_shape(m, index, dims, byte(s) % 5, &ndim)
                         : dl_model_param_shape(m, index, dims, byte(s) % 5, &ndim);
        status(st, "shape");
        if (st == DL_OK) { n = 1; for (size_t d = 0; d < ndim; d++) n *= dims[d]; }
        size_t len = n + (size_t)(byte(s) % 3) - 1;   /* n - 1, n, n + 1 */
        if (len > BUF) break;
        if (byte(s) & 1) {
            fill(s, len);
            st = buffers ? dl_model_set_buffer(m, index, s->x, len) : dl_model_set_param(m, index, s->x, len);
        } else {
            st = buffers ? dl_model_get_buffer(m, index, s->y, len) : dl_model_get_param(m, index, s->y, len);
        }
        status(st, buffers ? "get/set buffer" : "get/set param");
        const char *name;
        status(buffers ? dl_model_buffer_name(m, index, &name) : dl_model_param_name(m, index, &name), "name");
        break;
    }
    case 10: {   /* save, then load: what saved must load */
        dl_model *m = model(s);
        const char *path = byte(s) % 4 == 0 ? (byte(s) & 1 ? "/" : NULL) : fuzz_temp_path(6, ".h5");
        int st = dl_model_save(m, path);
        status(st, "dl_model_save");
        if (st == DL_OK) {
            dl_model *back = NULL;
            st = dl_model_load(path, &back);
            if (st != DL_OK) fuzz_fail("a model saved with DL_OK does not load back (status %d)", st);
            size_t slot = byte(s) % SLOTS;
            dl_model_free(s->model[slot]);
            s->model[slot] = back;
        }
        break;
    }
    case 11: {   /* counters */
        dl_model *m = model(s);
        uint64_t steps;
        status(dl_model_end_epoch(m), "dl_model_end_epoch");
        status(dl_model_step_count(m, byte(s) & 1 ? &steps : NULL), "dl_model_step_count");
        break;
    }
    case 12: {   /* gradient check */
        dl_model *m = model(s);
        size_t in, out, batch = small(s) % 3;
        sizes_of(m, &in, &out);
        fill(s, batch * (in ? in : 1));
        for (size_t i = 0; i < 4; i++) s->labels[i] = (int32_t)(byte(s) % (out ? out : 2));
        for (size_t i = 0; i < 4 * (out ? out : 1); i++) s->y[i] = (float)(byte(s) % 3) - 1.0f;
        double worst;
        size_t per_len = byte(s) % 12;
        int labelled = byte(s) & 1;
        status(dl_gradcheck(m, s->x, batch, labelled ? s->labels : NULL, labelled ? NULL : s->y,
                            1 + byte(s) % 4, &worst, byte(s) & 1 ? s->doubles : NULL, per_len), "dl_gradcheck");
        break;
    }
    case 13: {   /* a data set from arrays */
        size_t count = 1 + small(s) % 4, width = 1 + byte(s) % 16, shape[3] = {width, 1, 1};
        size_t ndim = 1 + byte(s) % 3;
        if (byte(s) == 0xFF) shape[0] = 0;
        fill(s, count * width);
        for (size_t i = 0; i < count; i++) s->labels[i] = (int32_t)(byte(s) % 4) - (byte(s) == 0xFF);
        for (size_t i = 0; i < count * 4; i++) s->y[i] = (float)value(s);
        size_t target_size = byte(s) % 4;
        uint8_t how = byte(s);
        dl_dataset *d = NULL;
        if (how & 4)        /* reads s->x in place, which later operations change */
            status(dl_dataset_borrow_arrays(s->x, count, shape, ndim, how & 1 ? s->labels : NULL,
                                            how & 2 ? s->y : NULL, target_size, NULL, NULL, &d),
                   "dl_dataset_borrow_arrays");
        else
            status(dl_dataset_from_arrays(s->x, count, shape, ndim, how & 1 ? s->labels : NULL,
                                          how & 2 ? s->y : NULL, target_size, &d), "dl_dataset_from_arrays");
        if (d) { dl_dataset_free(s->dataset); s->dataset = d; }
        break;
    }
    case 14: {   /* train an epoch, evaluate a data set */
        dl_model *m = model(s);
        dl_dataset *d = byte(s) == 0xFF ? NULL : s->dataset;
        double loss, acc;
        size_t batch = byte(s) & 0x80 ? any_size(s) : small(s);
        if (byte(s) & 1) status(dl_train_epoch(m, d, batch, byte(s) & 1, &loss), "dl_train_epoch");
        else status(dl_evaluate_dataset(m, d, &loss, &acc), "dl_evaluate_dataset");
        break;
    }
    case 15: {   /* a standalone layer */
        dl_layer *l = NULL;
        const char *json = layers[byte(s) % (sizeof layers / sizeof *layers)];
        int dtype = byte(s) % 3;
        if (byte(s) & 1) {
            size_t shape[3] = {1 + byte(s) % 3, 1 + byte(s) % 4, 1 + byte(s) % 4};
            status(dl_layer_from_json_shaped(json, shape, 1 + byte(s) % 3, dtype, byte(s), &l), "dl_layer_from_json_shaped");
        } else {
            status(dl_layer_from_json(json, dtype, byte(s), &l), "dl_layer_from_json");
        }
        if (l) { dl_layer_free(s->layer); s->layer = l; }
        break;
    }
    case 16: {   /* layer forward and backward with any rows and columns */
        dl_layer *l = byte(s) == 0xFF ? NULL : s->layer;
        size_t rows = small(s), cols = byte(s) % 65, out_features = 0;
        fill(s, 2 * rows * cols);   /* twice: a float64 layer reads doubles */
        status(dl_layer_output_features(l, cols, &out_features), "dl_layer_output_features");
        size_t y_len = byte(s) & 1 ? rows * out_features : byte(s) % 64;
        if (y_len > BUF / 2) y_len = BUF / 2;
        status(dl_layer_forward(l, s->x, rows, cols, byte(s) & 1, s->y, y_len), "dl_layer_forward");
        if (byte(s) & 1) {
            size_t dx_len = byte(s) & 1 ? rows * cols : byte(s) % 64;
            if (dx_len > BUF / 2) dx_len = BUF / 2;
            size_t brows = byte(s) & 1 ? rows : small(s), bcols = byte(s) & 1 ? out_features : byte(s) % 65;
            if (brows * bcols * 2 > BUF) break;
            status(dl_layer_backward(l, s->y, brows, bcols, s->x, dx_len), "dl_layer_backward");
        }
        void *data;
        size_t index = byte(s) % 3;
        status(dl_layer_param_data(l, index, &data), "dl_layer_param_data");
        status(dl_layer_grad_data(l, index, &data), "dl_layer_grad_data");
        break;
    }
    case 17: {   /* a standalone loss */
        if (byte(s) & 1 || s->loss == NULL) {
            dl_loss *l = NULL;
            status(dl_loss_from_json(losses[byte(s) % (sizeof losses / sizeof *losses)], byte(s) % 3, &l),
                   "dl_loss_from_json");
            if (l) { dl_loss_free(s->loss); s->loss = l; }
        }
        size_t rows = small(s), cols = 1 + byte(s) % 8;
        fill(s, 2 * rows * cols);
        for (size_t i = 0; i < 2 * rows * cols; i++) s->y[i] = (float)(byte(s) % 2);
        for (size_t i = 0; i < rows; i++) s->labels[i] = (int32_t)(byte(s) % (cols + 1));
        double v;
        uint8_t how = byte(s);
        status(dl_loss_forward(s->loss, s->x, rows, cols, how & 1 ? s->labels : NULL, how & 2 ? s->y : NULL,
                               how & 4 ? NULL : &v), "dl_loss_forward");
        size_t grad_len = byte(s) & 1 ? rows * cols : byte(s) % 32;
        status(dl_loss_backward(s->loss, s->y + BUF / 2, grad_len), "dl_loss_backward");
        break;
    }
    case 18: {   /* threads */
        static const int counts[] = {1, 2, 0, -1, 9, 1 << 30, -2147483647 - 1};
        dl_set_num_threads(counts[byte(s) % 7]);
        if (dl_get_num_threads() < 1 || dl_get_num_threads() > 8) fuzz_fail("dl_get_num_threads() = %d", dl_get_num_threads());
        /* and a gradient reducer (or none) on some model: later steps, epochs and
         * evaluations then go through it */
        static const int ranks[] = {0, 1, 2, -1, 3, 1 << 30};
        const int rank = ranks[byte(s) % 6], world = ranks[byte(s) % 6];
        const uint8_t kind = byte(s);
        size_t count;
        dl_model *m = model(s);
        status(dl_model_set_gradient_reducer(m, rank, world, kind % 5 == 4 ? NULL : fake_reduce,
                                             (void *)(intptr_t)(kind % 5)), "dl_model_set_gradient_reducer");
        status(dl_model_reduce_count(m, byte(s) & 1 ? &count : NULL), "dl_model_reduce_count");
        break;
    }
    case 19: {   /* introspection with NULL and short outputs */
        dl_model *m = model(s);
        size_t n, dims[4], ndim;
        const char *text;
        status(dl_model_num_layers(m, byte(s) & 1 ? &n : NULL), "dl_model_num_layers");
        status(dl_model_layer_type(m, byte(s) % 12, byte(s) & 1 ? &text : NULL), "dl_model_layer_type");
        status(dl_model_layer_output_shape(m, byte(s) % 12, dims, byte(s) % 5, &ndim), "dl_model_layer_output_shape");
        status(dl_model_spec_json(m, &text), "dl_model_spec_json");
        status(dl_model_param_count(m, &n), "dl_model_param_count");
        break;
    }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static state s;
    memset(&s, 0, sizeof s);
    s.p = data;
    s.end = data + size;
    dl_set_num_threads(1);
    for (int steps = 0; steps < 64 && s.p < s.end; steps++) op(&s);
    for (size_t i = 0; i < SLOTS; i++) dl_model_free(s.model[i]);
    dl_dataset_free(s.dataset);
    dl_layer_free(s.layer);
    dl_loss_free(s.loss);
    return 0;
}
