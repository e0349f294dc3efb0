/*
 * test_distributed.c -- data-parallel training through the C interface
 * (dl_model_set_gradient_reducer, dl_model_reduce_count; deeplearning_mpi.h).
 *
 * Without MPI (ctest c_distributed), ranks are threads of this process and the reducer a
 * callback that sums their buffers at a barrier, in rank order, as MPI_Allreduce would:
 *   - argument checks, the buffer's size (parameters + 2 per batch-norm channel + 5);
 *   - a "doubling" reducer, as if two identical ranks summed: the step equals the
 *     single-process step on the same batch (the maths: 2 n g / 2 n = g), float32 and
 *     float64 (dtype passed through), and the trailer holds the sample count;
 *   - a reducer that fails: DL_IO_ERROR, nothing changed; another rank's failure flag:
 *     every rank fails, nothing changed; this rank's NaN input: it still joins the
 *     reduction (no rank left waiting) and fails with DL_NUMERIC;
 *   - 2 and 3 thread ranks with per-rank batch b against one model with batch N b on the
 *     same shuffled order (dl_train_epoch, 3 epochs, with an uneven last step): parameters
 *     within 2e-5 (float32 sums in another order), every rank bit-identical;
 *     dl_evaluate_dataset sharded equals the single-process evaluation;
 *   - dropout: ranks given the same samples get different masks (different local
 *     gradients), and the same ones again from the same seed;
 *   - batch norm: per-rank batch statistics, running mean = momentum * the global batch
 *     mean (exact for the mean), identical on every rank.
 * With MPI (built as dl_test_distributed_mpi, run by ctest under mpiexec -np 2 and 3):
 *   dl_mpi_init/dl_mpi_reduce ranks against one process with batch N b, parameters
 *   gathered over MPI to check that every rank holds the same bits.
 *
 * Usage: dl_test_distributed SPECS_DIR. Last line "N passed, M failed"; exit 1 on failure.
 */
#define _POSIX_C_SOURCE 200809L

#include <deeplearning.h>
#ifdef DL_TEST_MPI
#include <deeplearning_mpi.h>
#endif

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static atomic_int passed, failed;

static bool check(bool ok, const char *file, int line, const char *what) {
    if (ok) {
        atomic_fetch_add(&passed, 1);
        return true;
    }
    atomic_fetch_add(&failed, 1);
    fprintf(stderr, "%s:%d: FAILED: %s\n    dl_last_error(): \"%s\"\n", file, line, what, dl_last_error());
    return false;
}

#define CHECK(cond) check((cond), __FILE__, __LINE__, #cond)
#define CHECK_STATUS(call, want) CHECK((call) == (want))
#define CHECK_OK(call) CHECK_STATUS(call, DL_OK)

static const char *specs;

static dl_model *model_from(const char *json) {
    dl_model *m = NULL;
    if (!CHECK_OK(dl_model_from_json(json, &m))) return NULL;
    return m;
}

static const char *mlp_json =
    "{\"input\": {\"size\": 20}, \"layers\": [{\"type\": \"linear\", \"units\": 16}, {\"type\": \"relu\"},"
    " {\"type\": \"linear\", \"units\": 4}], \"loss\": \"cross_entropy\","
    " \"optimizer\": {\"type\": \"sgd\", \"lr\": 0.05, \"momentum\": 0.9}, \"seed\": 7}";

/* count samples of 20 features in [0, 1) and labels 0..3, from a fixed LCG. */
static void make_data(float *x, int32_t *labels, size_t count) {
    uint32_t s = 12345;
    for (size_t i = 0; i < count * 20; i++) {
        s = s * 1664525u + 1013904223u;
        x[i] = (float)(s >> 8) / 16777216.0f;
    }
    for (size_t i = 0; i < count; i++) {
        s = s * 1664525u + 1013904223u;
        labels[i] = (int32_t)((s >> 16) % 4);
    }
}

/* All parameters of a model, concatenated (float32). */
static float *all_params(dl_model *m, size_t *total) {
    size_t tensors = 0, n = 0;
    dl_model_num_params(m, &tensors);
    dl_model_param_count(m, &n);
    float *p = malloc(n * sizeof *p);
    size_t at = 0;
    for (size_t i = 0; i < tensors && p; i++) {
        size_t dims[8], ndim = 0, size = 1;
        dl_model_param_shape(m, i, dims, 8, &ndim);
        for (size_t d = 0; d < ndim; d++) size *= dims[d];
        dl_model_get_param(m, i, p + at, size);
        at += size;
    }
    *total = n;
    return p;
}

static double max_difference(dl_model *a, dl_model *b) {
    size_t na, nb;
    float *pa = all_params(a, &na), *pb = all_params(b, &nb);
    double worst = na == nb ? 0 : INFINITY;
    for (size_t i = 0; i < na && i < nb; i++) worst = fmax(worst, fabs((double)pa[i] - pb[i]));
    free(pa);
    free(pb);
    return worst;
}

#ifndef DL_TEST_MPI   /* the in-process tests; the MPI build runs test_mpi alone */
static bool same_bits(dl_model *a, dl_model *b) {
    size_t na, nb;
    float *pa = all_params(a, &na), *pb = all_params(b, &nb);
    bool same = na == nb && memcmp(pa, pb, na * sizeof *pa) == 0;
    free(pa);
    free(pb);
    return same;
}

/* ------------------------------------------------------------------------ */
/* Fake reducers in one process                                              */
/* ------------------------------------------------------------------------ */

struct doubling {
    int calls;
    size_t count;
    int dtype;
    double samples;   /* the trailer's sample count as this rank packed it */
    double failures;
};

/* As if two identical ranks summed their buffers: every element doubled. */
static int doubling_reduce(void *user_data, void *buffer, size_t count, int dtype) {
    struct doubling *d = user_data;
    d->calls++;
    d->count = count;
    d->dtype = dtype;
    if (dtype == DL_FLOAT64) {
        double *b = buffer;
        d->samples = b[count - 3];
        d->failures = b[count - 2];
        for (size_t i = 0; i < count; i++) b[i] *= 2;
    } else {
        float *b = buffer;
        d->samples = b[count - 3];
        d->failures = b[count - 2];
        for (size_t i = 0; i < count; i++) b[i] *= 2;
    }
    return 0;
}

static int failing_reduce(void *user_data, void *buffer, size_t count, int dtype) {
    (void)user_data, (void)buffer, (void)count, (void)dtype;
    return 42;
}

/* Adds, as another rank would, one failed rank to the sums (float32 buffers). */
static int other_rank_failed_reduce(void *user_data, void *buffer, size_t count, int dtype) {
    (void)user_data;
    if (dtype != DL_FLOAT32) return 1;
    float *b = buffer;
    for (size_t i = 0; i < count; i++) b[i] *= 2;
    b[count - 2] += 1;   /* failed ranks */
    return 0;
}

static void test_arguments_and_size(void) {
    printf("-- arguments and buffer size\n");
    struct doubling d = {0};
    dl_model *m = model_from(mlp_json);
    if (!m) return;
    size_t count = 99, params = 0;
    dl_model_param_count(m, &params);
    CHECK_OK(dl_model_reduce_count(m, &count));
    CHECK(count == 0);
    CHECK_STATUS(dl_model_set_gradient_reducer(NULL, 0, 2, doubling_reduce, &d), DL_INVALID_ARGUMENT);
    CHECK_STATUS(dl_model_set_gradient_reducer(m, 2, 2, doubling_reduce, &d), DL_INVALID_ARGUMENT);
    CHECK(strstr(dl_last_error(), "rank") != NULL);
    CHECK_STATUS(dl_model_set_gradient_reducer(m, -1, 2, doubling_reduce, &d), DL_INVALID_ARGUMENT);
    CHECK_STATUS(dl_model_set_gradient_reducer(m, 0, 0, doubling_reduce, &d), DL_INVALID_ARGUMENT);
    CHECK_STATUS(dl_model_reduce_count(m, NULL), DL_INVALID_ARGUMENT);
    CHECK_OK(dl_model_set_gradient_reducer(m, 1, 2, doubling_reduce, &d));
    CHECK_OK(dl_model_reduce_count(m, &count));
    CHECK(count == params + 5);
    CHECK_OK(dl_model_set_gradient_reducer(m, 0, 0, NULL, NULL));   /* back to one process */
    CHECK_OK(dl_model_reduce_count(m, &count));
    CHECK(count == 0);
    dl_model_free(m);

    /* Batch norm adds its running mean and variance per channel. */
    dl_model *bn = model_from("{\"input\": {\"size\": 6}, \"layers\": [{\"type\": \"batch_norm\"},"
                              " {\"type\": \"linear\", \"units\": 3}], \"loss\": \"cross_entropy\","
                              " \"optimizer\": {\"type\": \"sgd\", \"lr\": 0.1}}");
    if (!bn) return;
    dl_model_param_count(bn, &params);
    CHECK_OK(dl_model_set_gradient_reducer(bn, 0, 2, doubling_reduce, &d));
    CHECK_OK(dl_model_reduce_count(bn, &count));
    CHECK(count == params + 2 * 6 + 5);
    dl_model_free(bn);
}

static void test_doubling(bool float64) {
    printf("-- a doubling reducer (two identical ranks), %s\n", float64 ? "float64" : "float32");
    char json[1024];
    snprintf(json, sizeof json, "%.*s, \"dtype\": \"%s\"}", (int)strlen(mlp_json) - 1, mlp_json,
             float64 ? "float64" : "float32");
    dl_model *a = model_from(json), *b = model_from(json);
    if (!a || !b) return;
    struct doubling d = {0};
    CHECK_OK(dl_model_set_gradient_reducer(a, 0, 2, doubling_reduce, &d));
    size_t count = 0;
    dl_model_reduce_count(a, &count);
    float x[16 * 20];
    int32_t labels[16];
    make_data(x, labels, 16);
    for (int step = 0; step < 3; step++) {
        double la = 0, lb = 0;
        CHECK_OK(dl_train_step(a, x, 16, labels, NULL, &la));
        double acc_a = dl_last_accuracy();
        CHECK_OK(dl_train_step(b, x, 16, labels, NULL, &lb));
        double acc_b = dl_last_accuracy();
        CHECK(fabs(la - lb) <= 1e-6 * fabs(lb));
        CHECK(acc_a == acc_b);   /* correct counts doubled, over doubled samples */
    }
    CHECK(d.calls == 3);
    CHECK(d.count == count);
    CHECK(d.dtype == (float64 ? DL_FLOAT64 : DL_FLOAT32));
    CHECK(d.samples == 16);
    CHECK(d.failures == 0);
    CHECK(max_difference(a, b) <= (float64 ? 1e-12 : 1e-6));
    uint64_t steps = 0;
    dl_model_step_count(a, &steps);
    CHECK(steps == 3);
    dl_model_free(a);
    dl_model_free(b);
}

static void test_failures(void) {
    printf("-- failures: the reducer's, another rank's, this rank's\n");
    dl_model *m = model_from(mlp_json), *reference = model_from(mlp_json);
    if (!m || !reference) return;
    float x[8 * 20];
    int32_t labels[8];
    make_data(x, labels, 8);
    double loss = -1;

    CHECK_OK(dl_model_set_gradient_reducer(m, 0, 2, failing_reduce, NULL));
    CHECK_STATUS(dl_train_step(m, x, 8, labels, NULL, &loss), DL_IO_ERROR);
    CHECK(strstr(dl_last_error(), "returned 42") != NULL);
    CHECK(loss == -1);
    CHECK(same_bits(m, reference));

    CHECK_OK(dl_model_set_gradient_reducer(m, 0, 2, other_rank_failed_reduce, NULL));
    CHECK_STATUS(dl_train_step(m, x, 8, labels, NULL, &loss), DL_INVALID_ARGUMENT);
    CHECK(strstr(dl_last_error(), "1 of 2 ranks failed") != NULL);
    CHECK(same_bits(m, reference));
    uint64_t steps = 9;
    dl_model_step_count(m, &steps);
    CHECK(steps == 0);

    /* This rank's NaN: it still calls the reducer, with its failure flag. */
    struct doubling d = {0};
    CHECK_OK(dl_model_set_gradient_reducer(m, 1, 2, doubling_reduce, &d));
    x[5] = NAN;
    CHECK_STATUS(dl_train_step(m, x, 8, labels, NULL, &loss), DL_NUMERIC);
    CHECK(d.calls == 1);
    CHECK(d.failures == 1);
    CHECK(same_bits(m, reference));
    /* A label out of range: the same, as an invalid argument. */
    x[5] = 0.5f;
    labels[2] = 9;
    CHECK_STATUS(dl_train_step(m, x, 8, labels, NULL, &loss), DL_INVALID_ARGUMENT);
    CHECK(d.calls == 2);
    CHECK(same_bits(m, reference));
    /* A rank may have no samples in a step: it still takes part (here no rank has any). */
    labels[2] = 1;
    CHECK_STATUS(dl_train_step(m, x, 0, labels, NULL, &loss), DL_INVALID_ARGUMENT);
    CHECK(strstr(dl_last_error(), "no samples") != NULL);
    CHECK(d.calls == 3);
    CHECK(same_bits(m, reference));
    CHECK_OK(dl_train_step(m, x, 8, labels, NULL, &loss));
    CHECK(d.calls == 4);
    dl_model_free(m);
    dl_model_free(reference);
}

/* ------------------------------------------------------------------------ */
/* Threads as ranks                                                          */
/* ------------------------------------------------------------------------ */

#define MAX_RANKS 3

/* An allreduce among threads: each copies its buffer in, the last to arrive sums them in
   rank order (as a fixed-order MPI reduction would), and each copies the sum back. */
struct world {
    int size;
    pthread_barrier_t barrier;
    void *buffers[MAX_RANKS];
    size_t count;
    int dtype;
    float *local_copy[MAX_RANKS];   /* what each rank packed, when kept (dropout test) */
};

struct rank_context {
    struct world *world;
    int rank;
};

static int thread_reduce(void *user_data, void *buffer, size_t count, int dtype) {
    struct rank_context *r = user_data;
    struct world *w = r->world;
    w->buffers[r->rank] = buffer;
    if (w->local_copy[r->rank] && dtype == DL_FLOAT32) {
        free(w->local_copy[r->rank]);
        w->local_copy[r->rank] = malloc(count * sizeof(float));
        memcpy(w->local_copy[r->rank], buffer, count * sizeof(float));
    }
    pthread_barrier_wait(&w->barrier);
    size_t size = dtype == DL_FLOAT64 ? sizeof(double) : sizeof(float);
    void *scratch = malloc(count * size);
    if (!scratch) return 1;   /* (a real reducer must then fail on every rank) */
    /* Every rank sums all buffers in rank order into its own scratch (the same bits on
       every rank), then waits until all have read before anyone writes back. */
    for (size_t i = 0; i < count; i++) {
        if (dtype == DL_FLOAT64) {
            double s = 0;
            for (int k = 0; k < w->size; k++) s += ((double *)w->buffers[k])[i];
            ((double *)scratch)[i] = s;
        } else {
            float s = 0;
            for (int k = 0; k < w->size; k++) s += ((float *)w->buffers[k])[i];
            ((float *)scratch)[i] = s;
        }
    }
    pthread_barrier_wait(&w->barrier);
    memcpy(buffer, scratch, count * size);
    free(scratch);
    pthread_barrier_wait(&w->barrier);
    return 0;
}

struct job {
    struct rank_context context;
    dl_model *model;
    dl_dataset *data;
    size_t batch;
    int epochs;
    int status;
    double loss, eval_loss, eval_accuracy;
};

static void *run_epochs(void *arg) {
    struct job *j = arg;
    j->status = dl_model_set_gradient_reducer(j->model, j->context.rank, j->context.world->size, thread_reduce,
                                              &j->context);
    for (int e = 0; e < j->epochs && j->status == DL_OK; e++) {
        j->status = dl_train_epoch(j->model, j->data, j->batch, 1, &j->loss);
    }
    if (j->status == DL_OK) j->status = dl_evaluate_dataset(j->model, j->data, &j->eval_loss, &j->eval_accuracy);
    return NULL;
}

static void test_thread_ranks(int size) {
    printf("-- %d thread ranks, per-rank batch 8, against one process with batch %d\n", size, 8 * size);
    enum { count = 100 };   /* 100 = 4 steps of 24 + 4 with 3 ranks: an uneven last step */
    float x[count * 20];
    int32_t labels[count];
    make_data(x, labels, count);
    size_t shape[1] = {20};
    dl_dataset *data = NULL;
    if (!CHECK_OK(dl_dataset_from_arrays(x, count, shape, 1, labels, NULL, 0, &data))) return;

    dl_model *single = model_from(mlp_json);
    double single_loss = 0, eval_loss = 0, eval_accuracy = 0;
    for (int e = 0; e < 3 && single; e++) CHECK_OK(dl_train_epoch(single, data, 8 * (size_t)size, 1, &single_loss));
    if (single) CHECK_OK(dl_evaluate_dataset(single, data, &eval_loss, &eval_accuracy));

    struct world w = {.size = size};
    pthread_barrier_init(&w.barrier, NULL, (unsigned)size);
    struct job jobs[MAX_RANKS];
    pthread_t threads[MAX_RANKS];
    for (int r = 0; r < size; r++) {
        jobs[r] = (struct job){.context = {&w, r}, .model = model_from(mlp_json), .data = data, .batch = 8, .epochs = 3};
        pthread_create(&threads[r], NULL, run_epochs, &jobs[r]);
    }
    for (int r = 0; r < size; r++) pthread_join(threads[r], NULL);
    for (int r = 0; r < size; r++) {
        CHECK(jobs[r].status == DL_OK);
        CHECK(same_bits(jobs[r].model, jobs[0].model));   /* every rank the same bits */
        CHECK(jobs[r].loss == jobs[0].loss);
        /* Against one process's model: trained in another summation order. */
        CHECK(fabs(jobs[r].eval_accuracy - eval_accuracy) <= 1.0 / count);
        CHECK(fabs(jobs[r].eval_loss - eval_loss) <= 1e-4 * fabs(eval_loss));
    }
    /* The sharded evaluation against the same model's evaluation in one process. */
    double local_loss = 0, local_accuracy = 0;
    CHECK_OK(dl_model_set_gradient_reducer(jobs[0].model, 0, 0, NULL, NULL));
    CHECK_OK(dl_evaluate_dataset(jobs[0].model, data, &local_loss, &local_accuracy));
    CHECK(local_accuracy == jobs[0].eval_accuracy);
    CHECK(fabs(local_loss - jobs[0].eval_loss) <= 1e-9 * fabs(local_loss));
    if (single) {
        double diff = max_difference(jobs[0].model, single);
        printf("   max |parameter difference| to one process: %.3g; epoch loss %.6f vs %.6f\n", diff, jobs[0].loss,
               single_loss);
        CHECK(diff <= 2e-5);
        CHECK(fabs(jobs[0].loss - single_loss) <= 1e-4 * fabs(single_loss));
        uint64_t a = 0, b = 0;
        dl_model_step_count(jobs[0].model, &a);
        dl_model_step_count(single, &b);
        CHECK(a == b);
    }
    for (int r = 0; r < size; r++) dl_model_free(jobs[r].model);
    dl_model_free(single);
    dl_dataset_free(data);
    pthread_barrier_destroy(&w.barrier);
}

struct step_job {
    struct rank_context context;
    dl_model *model;
    const float *x;
    const int32_t *labels;
    size_t batch;
    int status;
};

static void *run_step(void *arg) {
    struct step_job *j = arg;
    double loss;
    j->status = dl_model_set_gradient_reducer(j->model, j->context.rank, j->context.world->size, thread_reduce,
                                              &j->context);
    if (j->status == DL_OK) j->status = dl_train_step(j->model, j->x, j->batch, j->labels, NULL, &loss);
    return NULL;
}

/* One step on 2 thread ranks from `json`, rank r on x + offsets[r] samples; keeps each
   rank's packed buffer in w->local_copy when `keep`. */
static void two_rank_step(struct world *w, const char *json, const float *x, const int32_t *labels, size_t batch,
                          const size_t offsets[2], size_t features, dl_model *models[2]) {
    pthread_barrier_init(&w->barrier, NULL, 2);
    struct step_job jobs[2];
    pthread_t threads[2];
    for (int r = 0; r < 2; r++) {
        models[r] = model_from(json);
        jobs[r] = (struct step_job){.context = {w, r}, .model = models[r], .x = x + offsets[r] * features,
                                    .labels = labels + offsets[r], .batch = batch};
        pthread_create(&threads[r], NULL, run_step, &jobs[r]);
    }
    for (int r = 0; r < 2; r++) pthread_join(threads[r], NULL);
    for (int r = 0; r < 2; r++) CHECK(jobs[r].status == DL_OK);
    pthread_barrier_destroy(&w->barrier);
}

static void test_dropout(void) {
    printf("-- dropout: masks differ between ranks and repeat from the seed\n");
    const char *json = "{\"input\": {\"size\": 20}, \"layers\": [{\"type\": \"linear\", \"units\": 32}, {\"type\": \"relu\"},"
                       " {\"type\": \"dropout\", \"rate\": 0.5}, {\"type\": \"linear\", \"units\": 4}],"
                       " \"loss\": \"cross_entropy\", \"optimizer\": {\"type\": \"sgd\", \"lr\": 0.1}, \"seed\": 3}";
    float x[8 * 20];
    int32_t labels[8];
    make_data(x, labels, 8);
    const size_t same[2] = {0, 0};   /* both ranks train on the same samples */
    float *first[2] = {NULL, NULL};
    size_t count = 0;
    for (int round = 0; round < 2; round++) {
        struct world w = {.size = 2};
        w.local_copy[0] = malloc(1);
        w.local_copy[1] = malloc(1);
        dl_model *models[2];
        two_rank_step(&w, json, x, labels, 8, same, 20, models);
        dl_model_reduce_count(models[0], &count);
        CHECK(same_bits(models[0], models[1]));
        /* Same samples, same parameters: only the masks can make the local gradients differ. */
        CHECK(memcmp(w.local_copy[0], w.local_copy[1], (count - 5) * sizeof(float)) != 0);
        if (round == 0) {
            first[0] = w.local_copy[0];
            first[1] = w.local_copy[1];
        } else {
            CHECK(memcmp(first[0], w.local_copy[0], count * sizeof(float)) == 0);   /* repeat from the seed */
            CHECK(memcmp(first[1], w.local_copy[1], count * sizeof(float)) == 0);
            free(w.local_copy[0]);
            free(w.local_copy[1]);
        }
        dl_model_free(models[0]);
        dl_model_free(models[1]);
    }
    free(first[0]);
    free(first[1]);
}

static void test_batch_norm(void) {
    printf("-- batch norm: running statistics from every rank's batch\n");
    const char *json = "{\"input\": {\"size\": 4}, \"layers\": [{\"type\": \"batch_norm\", \"momentum\": 0.1},"
                       " {\"type\": \"linear\", \"units\": 2}], \"loss\": \"cross_entropy\","
                       " \"optimizer\": {\"type\": \"sgd\", \"lr\": 0.1}, \"seed\": 5}";
    enum { per_rank = 6 };
    float x[2 * per_rank * 4];
    int32_t labels[2 * per_rank];
    for (int i = 0; i < 2 * per_rank * 4; i++) x[i] = (float)((i * 37) % 23) + (i >= per_rank * 4 ? 10.0f : 0.0f);
    for (int i = 0; i < 2 * per_rank; i++) labels[i] = i % 2;
    const size_t offsets[2] = {0, per_rank};   /* rank 1's samples are shifted by 10 */
    struct world w = {.size = 2};
    dl_model *models[2];
    two_rank_step(&w, json, x, labels, per_rank, offsets, 4, models);
    float mean[2][4], var[2][4];
    for (int r = 0; r < 2; r++) {
        CHECK_OK(dl_model_get_buffer(models[r], 0, mean[r], 4));
        CHECK_OK(dl_model_get_buffer(models[r], 1, var[r], 4));
    }
    CHECK(memcmp(mean[0], mean[1], sizeof mean[0]) == 0);
    CHECK(memcmp(var[0], var[1], sizeof var[0]) == 0);
    for (int c = 0; c < 4; c++) {
        double global = 0;
        for (int i = 0; i < 2 * per_rank; i++) global += x[i * 4 + c];
        global /= 2 * per_rank;
        CHECK(fabs(mean[0][c] - 0.1 * global) <= 1e-5 * (1 + fabs(global)));
        /* The variance is the mean of the ranks' (unbiased) variances: each rank's batch
           alone, not the global batch's, which the shift between ranks would inflate. */
        double v[2];
        for (int r = 0; r < 2; r++) {
            double m = 0, s = 0;
            for (int i = 0; i < per_rank; i++) m += x[(r * per_rank + i) * 4 + c];
            m /= per_rank;
            for (int i = 0; i < per_rank; i++) s += pow(x[(r * per_rank + i) * 4 + c] - m, 2);
            v[r] = s / (per_rank - 1);
        }
        CHECK(fabs(var[0][c] - (0.9 + 0.1 * (v[0] + v[1]) / 2)) <= 1e-4 * (1 + v[0]));
    }
    dl_model_free(models[0]);
    dl_model_free(models[1]);
}

#endif

/* ------------------------------------------------------------------------ */
/* MPI                                                                       */
/* ------------------------------------------------------------------------ */

#ifdef DL_TEST_MPI
static void test_mpi(void) {
    int rank = -1, size = 0;
    if (!CHECK_OK(dl_mpi_init(&rank, &size))) return;
    printf("-- MPI rank %d of %d, per-rank batch 8, against one process with batch %d\n", rank, size, 8 * size);
    enum { count = 100 };
    float x[count * 20];
    int32_t labels[count];
    make_data(x, labels, count);
    size_t shape[1] = {20};
    dl_dataset *data = NULL;
    if (!CHECK_OK(dl_dataset_from_arrays(x, count, shape, 1, labels, NULL, 0, &data))) return;
    dl_model *m = model_from(mlp_json), *single = model_from(mlp_json);
    if (!m || !single) return;
    CHECK_OK(dl_model_set_gradient_reducer(m, rank, size, dl_mpi_reduce, NULL));
    double loss = 0, single_loss = 0;
    for (int e = 0; e < 3; e++) {
        CHECK_OK(dl_train_epoch(m, data, 8, 1, &loss));
        CHECK_OK(dl_train_epoch(single, data, 8 * (size_t)size, 1, &single_loss));
    }
    double diff = max_difference(m, single);
    printf("   rank %d: max |parameter difference| to one process %.3g\n", rank, diff);
    CHECK(diff <= 2e-5);
    /* Every rank's parameters, gathered by a sum into zeros (x + 0 is exact). */
    size_t n = 0;
    float *mine = all_params(m, &n);
    float *gathered = calloc(n * (size_t)size, sizeof *gathered);
    memcpy(gathered + n * (size_t)rank, mine, n * sizeof *mine);
    CHECK_OK(dl_mpi_reduce(NULL, gathered, n * (size_t)size, DL_FLOAT32));
    for (int r = 0; r < size; r++) CHECK(memcmp(gathered + n * (size_t)r, mine, n * sizeof *mine) == 0);
    CHECK_STATUS(dl_mpi_reduce(NULL, NULL, 1, DL_FLOAT32), DL_INVALID_ARGUMENT);
    CHECK_STATUS(dl_mpi_reduce(NULL, gathered, 1, 7), DL_INVALID_ARGUMENT);
    free(mine);
    free(gathered);
    dl_model_free(m);
    dl_model_free(single);
    dl_dataset_free(data);
}
#endif

int main(int argc, char **argv) {
    specs = argc > 1 ? argv[1] : "specs";
    (void)specs;
#ifdef DL_TEST_MPI
    test_mpi();
    int rank = 0;
    dl_mpi_init(&rank, NULL);
    /* Every rank's failures count: sum them over MPI before the verdict. */
    double counts[2] = {atomic_load(&passed), atomic_load(&failed)};
    dl_mpi_reduce(NULL, counts, 2, DL_FLOAT64);
    dl_mpi_finalize();
    if (rank == 0) printf("%d passed, %d failed (all ranks)\n", (int)counts[0], (int)counts[1]);
    return counts[1] == 0 ? 0 : 1;
#else
    test_arguments_and_size();
    test_doubling(false);
    test_doubling(true);
    test_failures();
    test_thread_ranks(2);
    test_thread_ranks(3);
    test_dropout();
    test_batch_norm();
    printf("%d passed, %d failed\n", atomic_load(&passed), atomic_load(&failed));
    return atomic_load(&failed) == 0 ? 0 : 1;
#endif
}
