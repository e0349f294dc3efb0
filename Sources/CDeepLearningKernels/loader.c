// A background batch loader: one thread that gathers the next shuffled mini-batch while the
// caller trains on the current one (what a data-loader worker does in PyTorch).
//
// The rows of a shuffled batch lie anywhere in the data set, so gathering one is a run of
// misses to memory, time in which the core that trains could compute. The loader does them on another core. The two threads meet once per
// batch: the caller posts a request and later waits for it; both sides sleep on a condition
// variable, and a batch is normally ready before it is waited for.
#include "dl_kernels.h"

#include <pthread.h>
#include <stdlib.h>

struct dlk_loader {
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t changed;
    int pending;   // a request waits to be gathered
    int done;      // the last request is gathered
    int stop;
    int finite;    // the last request's rows were all finite
    // The request (written under lock while pending == 0 and done == 1 or nothing was asked).
    const float *x;
    int64_t cols, count;
    const int32_t *rows;
    float a, b;
    int affine;
    float *dst;
};

static void *loader_main(void *argument) {
    dlk_loader *l = argument;
    pthread_mutex_lock(&l->lock);
    for (;;) {
        while (!l->pending && !l->stop) pthread_cond_wait(&l->changed, &l->lock);
        if (l->stop) break;
        l->pending = 0;
        pthread_mutex_unlock(&l->lock);
        dlk_gather_rows_serial_f32(l->x, l->cols, l->rows, l->count, l->a, l->b, l->affine, l->dst);
        const int finite = dlk_all_finite_f32(l->dst, l->count * l->cols);
        pthread_mutex_lock(&l->lock);
        l->finite = finite;
        l->done = 1;
        pthread_cond_broadcast(&l->changed);
    }
    pthread_mutex_unlock(&l->lock);
    return NULL;
}

dlk_loader *dlk_loader_start(void) {
    dlk_loader *l = calloc(1, sizeof *l);
    if (!l) return NULL;
    if (pthread_mutex_init(&l->lock, NULL) != 0) {
        free(l);
        return NULL;
    }
    if (pthread_cond_init(&l->changed, NULL) != 0) {
        pthread_mutex_destroy(&l->lock);
        free(l);
        return NULL;
    }
    l->done = 1;
    if (pthread_create(&l->thread, NULL, loader_main, l) != 0) {
        pthread_cond_destroy(&l->changed);
        pthread_mutex_destroy(&l->lock);
        free(l);
        return NULL;
    }
    return l;
}

void dlk_loader_request(dlk_loader *l, const float *x, int64_t cols, const int32_t *rows, int64_t count,
                        float a, float b, int affine, float *dst) {
    pthread_mutex_lock(&l->lock);
    l->x = x;
    l->cols = cols;
    l->rows = rows;
    l->count = count;
    l->a = a;
    l->b = b;
    l->affine = affine;
    l->dst = dst;
    l->done = 0;
    l->pending = 1;
    pthread_cond_broadcast(&l->changed);
    pthread_mutex_unlock(&l->lock);
}

int dlk_loader_wait(dlk_loader *l) {
    pthread_mutex_lock(&l->lock);
    while (!l->done) pthread_cond_wait(&l->changed, &l->lock);
    const int finite = l->finite;
    pthread_mutex_unlock(&l->lock);
    return finite;
}

void dlk_loader_stop(dlk_loader *l) {
    if (!l) return;
    pthread_mutex_lock(&l->lock);
    l->stop = 1;
    pthread_cond_broadcast(&l->changed);
    pthread_mutex_unlock(&l->lock);
    pthread_join(l->thread, NULL);
    pthread_cond_destroy(&l->changed);
    pthread_mutex_destroy(&l->lock);
    free(l);
}
