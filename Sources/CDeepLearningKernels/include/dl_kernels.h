// Internal kernels in C, so that they can use AVX2/FMA where the CPU has them (chosen at
// run time) while the library stays built for baseline x86-64: float32 products for sparse
// input batches (called from `SparseInput`), optimizer updates (from `Optimizer`), and the input checks and
// conversion (from `Kernels`). Nothing here is part of the public API.
//
// The idea: a batch `x` whose entries are mostly one value `v` (MNIST pixels are 81%
// background) is stored as `x = v + S`, with `S` sparse. Then, for a linear layer,
//
//     x W^T       = S W^T + v * rowsum(W)            (forward)
//     x^T dy      = S^T dy + v * colsum(dy)          (weight gradient, as W^T: one row per input)
//
// and both products with `S` cost work in proportion to its nonzeros, not to the batch.
#ifndef DL_KERNELS_H
#define DL_KERNELS_H

#include <stdint.h>

#define DLK_HIDDEN __attribute__((visibility("hidden")))

/// The sparse layer's workspace for one half of its inputs (see dlk_sparse_forward).
typedef struct dlk_sparse_half {
    int32_t *start;     // rows + 1: the half's batch compressed by rows...
    int32_t *index;     // max_nonzeros + cols + 8: ...its columns (from the half's first)...
    float *value;       // max_nonzeros + cols + 8: ...and x - v there
    float *base;        // n: what the half adds to every output row besides its product
    float *scratch;     // n
    float *partial;     // rows * n: the second half's product (unused in the first)
    int64_t nonzeros;   // OUT: the half's entries that differ from v, or -1
} dlk_sparse_half;

/// Where the sparse layer splits its `cols` inputs into two halves: columns [0, split) and
/// [split, cols) (a multiple of 8, at most cols).
DLK_HIDDEN int64_t dlk_sparse_split(int64_t cols);

/// y (rows x n) = x W^T + bias for a float32 batch x (rows x cols, finite) mostly equal to
/// v, from W^T (cols x n) and bias (n, or NULL): in each half of the inputs, x - v is
/// compressed by rows, and the product of its nonzeros with that half's rows of W^T is
/// added to v times the sums of those rows (and, in the first half, to the bias); y is the
/// first half's result plus the second's. The halves run on two threads when the kernels
/// have them. Returns the number of entries that differ from v, or -1 when more than
/// `max_nonzeros` do (y is then garbage).
DLK_HIDDEN int64_t dlk_sparse_forward(const float *x, int64_t rows, int64_t cols, float v, int64_t max_nonzeros,
                                      const float *wt, int64_t n, const float *bias, dlk_sparse_half halves[2],
                                      float *y, int portable);

/// y (n) = x W^T + bias for one sample x (cols values, any density), in the same two halves
/// of the inputs: the first half's product plus the bias, plus the second's (written to
/// `partial`, n floats, first).
DLK_HIDDEN void dlk_sparse_forward_one(const float *x, int64_t cols, const float *wt, int64_t n, const float *bias,
                                       float *partial, float *y, int portable);

/// dW^T (cols x n) = base + (x - v)^T dy for the batch dlk_sparse_forward took, dy (rows x
/// n), `base` (n values added to every row, or NULL) and workspace d (cols x rows, for
/// (x - v)^T); row j sums, in batch order, the rows of dy where input j differs from v,
/// each times that difference. Split in the same two halves as the forward.
DLK_HIDDEN void dlk_sparse_backward(const float *x, int64_t rows, int64_t cols, float v, const float *dy, int64_t n,
                                    const float *base, float *d, float *dwt, int portable);

/// One optimizer update (optimizers.c), the only implementation of each rule: with
/// g' = grad_scale * g + l2 * p (and, first, p *= 1 - lr * decay for decoupled weight decay),
///
///     DLK_SGD       p -= lr g'
///     DLK_MOMENTUM  v = momentum v - lr g';  p += v                     (s1 = v)
///     DLK_NESTEROV  v = momentum v - lr g';  p += momentum v - lr g'    (s1 = v)
///     DLK_ADAM      m = beta1 m + (1 - beta1) g';  v = beta2 v + (1 - beta2) g'^2
///                   p -= lr / (1 - beta1^step) m / (sqrt(v) / sqrt(1 - beta2^step) + eps)
///                                                                       (s1 = m, s2 = v)
///     DLK_RMSPROP   s = rho s + (1 - rho) g'^2;  p -= lr g' / (sqrt(s) + eps)   (s1 = s)
///
/// The float32 version runs eight lanes at a time where the CPU has AVX2 (the scalar loop
/// finishes the tail, and is all of it elsewhere), rounding every operation to float with
/// no fused multiply-add, so each element gets the same bits on either path. Elements are
/// independent, so long arrays are shared among the kernel threads without changing a bit.
/// The fields a kind does not use are ignored; state arrays it does not use may be NULL.
enum { DLK_SGD, DLK_MOMENTUM, DLK_NESTEROV, DLK_ADAM, DLK_RMSPROP };
typedef struct dlk_update {
    int kind;
    int64_t step;       // 1-based number of this update (Adam's bias correction)
    double lr, grad_scale, l2, decay;
    double momentum, beta1, beta2, rho, eps;
} dlk_update;
DLK_HIDDEN void dlk_update_f32(const dlk_update *update, float *p, const float *g, float *s1, float *s2, int64_t n,
                               int portable);
DLK_HIDDEN void dlk_update_f64(const dlk_update *update, double *p, const double *g, double *s1, double *s2,
                               int64_t n);

/// The sum of x[i]^2, accumulated in double in index order (gradient clipping's norm).
DLK_HIDDEN double dlk_sum_squares_f32(const float *x, int64_t n);
DLK_HIDDEN double dlk_sum_squares_f64(const double *x, int64_t n);

/// 1 when no element is NaN or infinite, else 0.
DLK_HIDDEN int dlk_all_finite_f32(const float *x, int64_t n);
DLK_HIDDEN int dlk_all_finite_f64(const double *x, int64_t n);

/// dst = src * a + b (input preprocessing), without fused multiply-add.
DLK_HIDDEN void dlk_affine_f32(const float *src, float *dst, int64_t n, float a, float b);

/// dst[i] = x[rows[i]] for count rows of cols floats (x * a + b when `affine`), then a
/// request to the CPU to start loading rows next[0..<next_count] (the next batch; `next`
/// may be NULL). Split by columns in dlk_sparse_split's two halves.
DLK_HIDDEN void dlk_gather_rows_f32(const float *x, int64_t cols, const int32_t *rows, int64_t count,
                                    float a, float b, int affine, float *dst, const int32_t *next,
                                    int64_t next_count);

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
