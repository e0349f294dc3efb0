// Internal kernels in C, so that they can use AVX2/FMA where the CPU has them (chosen at
// run time) while the library stays built for baseline x86-64: float32 products for sparse
// input batches (called from `SparseInput`), and the input checks and conversion (from
// `Kernels`). Nothing here is part of the public API.
//
// The idea: a batch `x` whose entries are mostly one value `v` (MNIST pixels are 81%
// background) is stored as `x = v + S`, with `S` sparse. Then, for a linear layer,
//
//     x W^T       = S W^T + v * rowsum(W)            (forward)
//     dy^T x      = dy^T S + v * colsum(dy)          (weight gradient, one row per output)
//
// and both products with `S` cost work in proportion to its nonzeros, not to the batch.
#ifndef DL_KERNELS_H
#define DL_KERNELS_H

#include <stdint.h>

#define DLK_HIDDEN __attribute__((visibility("hidden")))

/// Compresses the rows of `x` (rows x cols, row-major) around `v`: for row r, the entries
/// `start[r] ..< start[r + 1]` of `index` (column) and `value` (x - v) list the elements
/// that differ from `v`, in increasing column order. `start` holds rows + 1 entries;
/// `index` and `value` must hold `max_nonzeros + cols + 8` entries (a row is finished
/// before the limit is checked, and the vector version stores eight lanes at a time). Returns the number of nonzeros, or -1 as soon as it exceeds
/// `max_nonzeros` (the batch is too dense to be worth it; the arrays are then garbage).
/// `x` must be finite.
DLK_HIDDEN int64_t dlk_compress_rows(const float *x, int64_t rows, int64_t cols, float v,
                                     int64_t max_nonzeros,
                                     int32_t *start, int32_t *index, float *value, int portable);

/// c = base + S b, for S compressed by rows (rows x k), b (k x n, leading dimension ldb)
/// and c (rows x n, leading dimension ldc); `base` (n values, added to every row) may be
/// NULL for zero.
DLK_HIDDEN void dlk_sparse_times_dense(int64_t rows, int64_t n,
                                       const int32_t *start, const int32_t *index, const float *value,
                                       const float *b, int64_t ldb, const float *base,
                                       float *c, int64_t ldc, int portable);

/// c += alpha * (the sums of a's columns) for a (rows x cols, leading dimension lda): each
/// column summed in row order, then scaled once. `scratch` holds cols floats.
DLK_HIDDEN void dlk_add_column_sums(const float *a, int64_t rows, int64_t cols, int64_t lda, float alpha, float *c,
                                    float *scratch, int portable);

/// The weight gradient of a linear layer fed a batch x that is mostly some value v, in
/// the layout of W^T: c (cols x n, leading dimension ldc) = base + d b, from d = (x - v)^T
/// (cols x rows, row-major: row j is input j over the batch, as dlk_transpose_minus makes
/// it), skipping its zeros, and b (rows x n, leading dimension ldb: the layer's output
/// gradient). `base` (n values, NULL for zero) is added to every row of c. `nonzeros` (of
/// d) only sizes the work for threads.
DLK_HIDDEN void dlk_sparse_weight_gradient(const float *d, int64_t rows, int64_t cols, int64_t nonzeros,
                                           int64_t n, const float *b, int64_t ldb, const float *base,
                                           float *c, int64_t ldc, int portable);

/// t = (a - v)^T for a (rows x cols) row-major; t is (cols x rows).
DLK_HIDDEN void dlk_transpose_minus(const float *a, int64_t rows, int64_t cols, float v, float *t, int portable);

/// Optimizer updates of n float32 parameters p from their gradients g (optimizers.c): the
/// formulas of Kernels.swift's generic versions (sgdStep, momentumStep, adamStep,
/// rmspropStep), with the same rounding. `portable` runs the scalar version.
DLK_HIDDEN void dlk_sgd_f32(float *p, const float *g, int64_t n, float lr, float weight_decay, int portable);
DLK_HIDDEN void dlk_momentum_f32(float *p, const float *g, float *v, int64_t n, float lr, float momentum,
                                 float weight_decay, int portable);
/// Adam's constants for one step t: step_size = lr / (1 - beta1^t), inv_sqrt_c2 =
/// 1 / sqrt(1 - beta2^t), and one_minus_beta = 1 - beta, each rounded to float.
typedef struct dlk_adam {
    float step_size, beta1, beta2, one_minus_beta1, one_minus_beta2, inv_sqrt_c2, eps, weight_decay;
} dlk_adam;
DLK_HIDDEN void dlk_adam_f32(float *p, const float *g, float *m, float *v, int64_t n, const dlk_adam *adam,
                             int portable);
DLK_HIDDEN void dlk_rmsprop_f32(float *p, const float *g, float *s, int64_t n, float lr, float rho,
                                float one_minus_rho, float eps, float weight_decay, int portable);

/// 1 when no element is NaN or infinite, else 0.
DLK_HIDDEN int dlk_all_finite_f32(const float *x, int64_t n);
DLK_HIDDEN int dlk_all_finite_f64(const double *x, int64_t n);

/// dst = src * a + b (input preprocessing), without fused multiply-add.
DLK_HIDDEN void dlk_affine_f32(const float *src, float *dst, int64_t n, float a, float b);

/// dst[i] = x[rows[i]] for count rows of cols floats (x * a + b when `affine`).
DLK_HIDDEN void dlk_gather_rows_f32(const float *x, int64_t cols, const int32_t *rows, int64_t count,
                                    float a, float b, int affine, float *dst);

/// Asks the CPU to start loading rows `rows[0..<count]` of x (cols floats each) into the
/// outer caches: the next shuffled batch, fetched while the current one trains.
DLK_HIDDEN void dlk_prefetch_rows(const float *x, int64_t cols, const int32_t *rows, int64_t count);

/// dlk_gather_rows_f32 on the calling thread alone.
DLK_HIDDEN void dlk_gather_rows_serial_f32(const float *x, int64_t cols, const int32_t *rows, int64_t count,
                                           float a, float b, int affine, float *dst);

/// A background batch loader (loader.c): a thread that gathers one batch at a time, as
/// dlk_gather_rows_serial_f32 does, while the caller works. Start returns NULL when the
/// thread cannot be made (the caller then gathers itself). One request at a time: after
/// `request`, call `wait` (which returns 1 when the gathered rows are all finite) before
/// the next request or before reading `dst`; `stop` waits for a running request, then ends
/// the thread and frees the loader (NULL is ignored). The arrays of a request must stay
/// valid until its wait returns.
typedef struct dlk_loader dlk_loader;
/// The CPUs this process may run on now (its affinity mask; 1 when unknown).
DLK_HIDDEN int dlk_available_cpus(void);
DLK_HIDDEN dlk_loader *dlk_loader_start(void);
DLK_HIDDEN void dlk_loader_request(dlk_loader *loader, const float *x, int64_t cols, const int32_t *rows,
                                   int64_t count, float a, float b, int affine, float *dst);
DLK_HIDDEN int dlk_loader_wait(dlk_loader *loader);
DLK_HIDDEN void dlk_loader_stop(dlk_loader *loader);

/// The most threads the kernels use.
#define DLK_MAX_THREADS 8

/// A share of a parallel job: items [begin, end), run by thread `thread` (0 = the caller,
/// up to DLK_MAX_THREADS - 1), for tasks that need scratch space of their own.
typedef void (*dlk_task)(void *context, int64_t begin, int64_t end, int thread);

/// Runs task over items 0..<items, split into contiguous ranges over the pool's threads
/// (the caller included), each range at least `min_items_per_thread` long; returns when all
/// are done. Serial when the pool has one thread, or is busy with another caller's job.
DLK_HIDDEN void dlk_parallel_for(int64_t items, int64_t min_items_per_thread, dlk_task task, void *context);

/// Threads the kernels use: DL_NUM_THREADS when set (0: the number of online CPUs), else
/// 1; at most 8. `dlk_set_threads` changes it (at least 1).
DLK_HIDDEN int dlk_threads(void);
DLK_HIDDEN void dlk_set_threads(int n);

/// 1 when the CPU runs the AVX2/FMA versions, 0 when it gets the portable C ones.
/// Every kernel with two versions takes `portable`: nonzero forces the portable one
/// (tests compare the two).
DLK_HIDDEN int dlk_has_avx2(void);

#endif
