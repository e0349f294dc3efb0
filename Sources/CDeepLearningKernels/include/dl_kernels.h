// Internal kernels in C, so that they can use AVX2/FMA where the CPU has them (chosen at
// run time) while the library stays built for baseline x86-64. Nothing here is part of the
// public API. Every kernel with two versions takes `plain_c`: nonzero runs the plain C one
// even where the AVX2 one would run (tests compare the two).
#ifndef DL_KERNELS_H
#define DL_KERNELS_H

#include <stdint.h>

#define DLK_HIDDEN __attribute__((visibility("hidden")))

// MARK: - The sparse-input path of a linear layer (sparse_input.c)
//
// A batch `x` whose entries are mostly one value `v` (image backgrounds, one-hot codes) is
// `x = v + S` with `S` sparse. For a linear layer that keeps its weight as W^T (in x out),
//
//     x W^T       = S W^T + v * (column sums of W^T)      (forward)
//     x^T dy      = S^T dy + v * (column sums of dy)      (weight gradient, as W^T)
//
// and both products with `S` cost work in proportion to its nonzeros, not to the batch.
// Each output is computed by one thread, in the same order whatever the number of threads.
// The forward cuts W^T's rows (the inputs) into DLK_SPARSE_CHUNKS fixed chunks, sums each
// chunk's part of every output on its own and adds the parts in chunk order: the cut, not
// the thread count, decides the order of the sums.

/// Chunks of inputs in the forward products (a constant, so that results do not depend on
/// the number of threads).
#define DLK_SPARSE_CHUNKS 2

/// The first input of chunk h (0 ..< DLK_SPARSE_CHUNKS; DLK_SPARSE_CHUNKS gives `cols`): a
/// multiple of 8. The dense forward of the same layer cuts W^T the same way.
DLK_HIDDEN int64_t dlk_chunk_start(int64_t cols, int64_t h);

/// The forward's workspace, owned and reused by the caller.
typedef struct dlk_sparse_batch {
    int64_t *row_begin, *row_end;   // DLK_SPARSE_CHUNKS * rows: chunk h's entries of row r are
                                    // [row_begin[h * rows + r], row_end[h * rows + r]) of...
    int32_t *index;                 // DLK_SPARSE_CHUNKS * groups * segment_capacity: ...their columns...
    float *value;                   // (as index): ...and x - v there
    int64_t groups;                 // groups of batch rows per chunk, 1 ... min(rows, DLK_MAX_THREADS)
    int64_t segment_capacity;       // max_nonzeros + cols + 8
    int serial;                     // nonzero: all on the calling thread
    float *base;                    // DLK_SPARSE_CHUNKS * groups * n: per unit, when v is not 0, what
                                    // is added to every output row besides its product
    float *partial;                 // (DLK_SPARSE_CHUNKS - 1) * rows * n: the products of chunks 1...
    const float *bases;             // NULL, or DLK_SPARSE_CHUNKS * n: every chunk's base term for this
                                    // v (dlk_sparse_bases), kept by the caller; then `base` is unused
    const float *affine;            // NULL, or {a, b}: x is raw input and the batch is x * a + b, each
                                    // entry mapped as it is compressed (two roundings, no fused
                                    // multiply-add: dlk_affine_f32's values); NaN and infinity in x
                                    // then reach y (y's rows are not all finite)
} dlk_sparse_batch;

/// The base term of every chunk for background v (not 0), as dlk_sparse_forward computes
/// it: bases[h * n + o] = (h == 0 ? bias[o] : 0) + v * (the sum of column o over chunk h's
/// rows of W^T (cols x n)). A caller that sees the same weights and v again keeps them and
/// passes them in `dlk_sparse_batch.bases`: the forward then reads only the rows of W^T its
/// nonzeros need.
DLK_HIDDEN void dlk_sparse_bases(const float *wt, int64_t cols, int64_t n, const float *bias, float v, float *bases,
                                 int plain_c);

/// y (rows x n) = x W^T + bias for a float32 batch x (rows x cols, finite) mostly equal to
/// v, from W^T (cols x n) and bias (n, or NULL). Each chunk of inputs times a group of rows
/// is one unit of work, compressed around v and multiplied by the same thread:
/// y[r, o] = the sum over chunks h, in order, of base_h[o] plus the nonzeros of row r in
/// chunk h, in column order, times W^T[., o]. Returns the number of entries that differ
/// from v, or -1 when more than `max_nonzeros` do (y is then garbage).
DLK_HIDDEN int64_t dlk_sparse_forward(const float *x, int64_t rows, int64_t cols, float v, int64_t max_nonzeros,
                                      const float *wt, int64_t n, const float *bias, dlk_sparse_batch *work,
                                      float *y, int plain_c);

/// y (rows x n) += the DLK_SPARSE_CHUNKS - 1 partial products that follow one another in
/// `partial` (rows x n each), in chunk order, then + bias[c] (NULL: none), each element in
/// that order whatever the path (AVX2 or plain C): the sparse forward's and the chunked
/// dense forward's sums (Linear.chunkedForward), in one pass, on the kernel threads for
/// large batches.
DLK_HIDDEN void dlk_sum_chunks_f32(float *y, const float *partial, const float *bias, int64_t rows, int64_t n,
                                   int plain_c);

/// The value to compress a batch (or sample) of `count` floats around: of the 16 entries
/// x[a * count / 16], the one equal to the most of them, the first on ties (float equality:
/// 0 equals -0, NaN equals nothing). count >= 1. `matches` (unless NULL) gets how many of
/// the 16 equal it (1 when they all differ; 0 when the first is NaN and no two are equal).
DLK_HIDDEN float dlk_likely_background(const float *x, int64_t count, int32_t *matches, int plain_c);

/// The cost model's look at a batch before compressing it: over `sample_rows` rows spread
/// evenly over the batch (row s * rows / sample_rows), the entries that differ from v
/// (`not_v`) and from 0 (`not_zero`, unless NULL). NaN differs from both.
DLK_HIDDEN void dlk_sample_density(const float *x, int64_t rows, int64_t cols, float v, int64_t sample_rows,
                                   int64_t *not_v, int64_t *not_zero, int plain_c);

/// dW^T (cols x n) = base + (x - v)^T dy for the batch dlk_sparse_forward took, dy (rows x
/// n), `base` (n values added to every row, or NULL) and workspace d (cols x rows, for
/// (x - v)^T); row j sums, in batch order, the rows of dy where input j differs from v,
/// each times that difference. Each share is a range of inputs (rows of dW^T).
DLK_HIDDEN void dlk_sparse_weight_gradient(const float *x, int64_t rows, int64_t cols, float v, const float *dy,
                                           int64_t n, const float *base, float *d, float *dwt, int plain_c);

/// y (n) = x B + bias for one dense row x (k values), B (k x n) and bias (n, or NULL): a
/// layer that keeps W^T multiplies one sample with it. Each share is a chunk of inputs (as
/// in dlk_sparse_forward), chunks 1... summed into `partial` ((DLK_SPARSE_CHUNKS - 1) * n).
DLK_HIDDEN void dlk_row_times_matrix(const float *x, int64_t k, const float *b, int64_t n, const float *bias,
                                     float *partial, float *y, int plain_c);

/// y (m) = A x for A (m x n, rows lda apart) and x (n): one sample through a layer that
/// keeps W (out x in) (matrix_vector.c). Each output sums its products in 16 lanes added in
/// a fixed order, then the n % 16 last ones: the same bits with the AVX-512 kernel, the
/// AVX2 one and plain C (`plain_c`), and on any number of threads (a large product shares
/// its rows among the kernel threads).
DLK_HIDDEN void dlk_matrix_vector_f32(const float *a, int64_t m, int64_t n, int64_t lda, const float *x, float *y,
                                      int plain_c);

/// y[r] = (A x)[r] * scale + base[r] (two roundings), the sums as dlk_matrix_vector_f32's:
/// one sample through a layer with its bias (scale 1), or from raw input whose
/// preprocessing the layer has folded into scale and base. base NULL: y = A x (scale unused).
DLK_HIDDEN void dlk_matrix_vector_affine_f32(const float *a, int64_t m, int64_t n, int64_t lda, const float *x,
                                             float scale, const float *base, float *y, int plain_c);

// MARK: - ReLU (activations.c)

/// y[i] = x[i] > 0 ? x[i] : +0 (x == y allowed), 8 at a time on AVX2.
DLK_HIDDEN void dlk_relu_f32(const float *x, float *y, int64_t n, int plain_c);

/// dx[i] = x[i] > 0 ? dy[i] : +0 (dx may be dy), 8 at a time on AVX2.
DLK_HIDDEN void dlk_relu_backward_f32(const float *x, const float *dy, float *dx, int64_t n, int plain_c);

// MARK: - exp (exp.c)

/// y[i] = exp(x[i]) for n floats (x == y allowed), within 2 units of the last place for x
/// in [-87.33654, 88.37626] (a softmax's x - max(x) <= 0); below, 0 (no subnormals); above,
/// +infinity (exp is over 2^127 there); NaN stays NaN. The same bits with the AVX2/FMA loop
/// and with plain C (`plain_c`).
DLK_HIDDEN void dlk_exp_f32(const float *x, float *y, int64_t n, int plain_c);

// MARK: - Optimizer updates (optimizers.c)

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

/// One parameter tensor of an update: its values, gradient and state (float or double, as
/// the function taking it says); state arrays the rule does not use may be NULL.
typedef struct dlk_tensors {
    void *p, *s1, *s2;
    const void *g;
    int64_t n;
    /// Upper bounds on max |p|, |s1|, |s2| that the last update left (negative: unknown).
    /// Kept by the caller between updates, and set to -1 whenever anything else writes the
    /// tensor or its state, as they spare the check a read of those arrays.
    double bound[3];
    /// Scratch of the update.
    double next[3];
} dlk_tensors;

/// Applies `update` to `count` tensors, or to none: first checks that the update leaves
/// every parameter and state value of every tensor finite, then writes. Returns -1 when it
/// wrote, else the index of the first tensor that would become NaN or infinite (nothing is
/// written then, and the bounds are as they were). The check reads the gradients: a bound on
/// the rule's arithmetic from the largest magnitudes (of p and the state, the bounds the
/// last update left, or, when those do not prove the step, one read of each array) decides
/// almost every step; where it fails, the rule is run exactly, element by element, as the
/// update would (same bits), without storing.
DLK_HIDDEN int64_t dlk_update_all_f32(const dlk_update *update, dlk_tensors *tensors, int64_t count, int portable);
DLK_HIDDEN int64_t dlk_update_all_f64(const dlk_update *update, dlk_tensors *tensors, int64_t count);

/// The sum of x[i]^2, accumulated in double in index order (gradient clipping's norm).
DLK_HIDDEN double dlk_sum_squares_f32(const float *x, int64_t n);
DLK_HIDDEN double dlk_sum_squares_f64(const double *x, int64_t n);

// MARK: - Sums over a plane (channels.c)
//
// Each sums n floats in 32 chains (element i in chain i % 32) added in a fixed tree, with
// fused multiply-adds for products: the same bits from the plain C and the AVX2 versions.

/// sum x[i].
DLK_HIDDEN float dlk_plane_sum_f32(const float *x, int64_t n, int plain_c);
/// sum (x[i] - m)^2.
DLK_HIDDEN float dlk_plane_squared_deviations_f32(const float *x, float m, int64_t n, int plain_c);
/// *sum_d = sum (x[i] - k), *sum_d2 = sum (x[i] - k)^2, in one pass.
DLK_HIDDEN void dlk_plane_shifted_sums_f32(const float *x, float k, int64_t n, float *sum_d, float *sum_d2,
                                           int plain_c);
/// *sum_dy = sum dy[i], *sum_dy_xc = sum dy[i] (x[i] - m), in one pass; with `mask` (not
/// NULL), dy[i] counts only where mask[i] > 0 (a ReLU's backward folded in).
DLK_HIDDEN void dlk_plane_gradient_sums_f32(const float *dy, const float *x, const float *mask, float m, int64_t n,
                                            float *sum_dy, float *sum_dy_xc, int plain_c);

/// One plane of batch norm's affine pass, ReLU and 2x2 max pooling (stride 2, no padding):
/// out[oy][ox] = the maximum of max(0, x k + d) over the window's four elements (x k + d
/// rounded twice, as Swift's channelAffine), argmax (unless NULL) the plane index of the
/// first element with that maximum. `height` x `width` in, (height / 2) x (width / 2) out.
DLK_HIDDEN void dlk_affine_relu_max_pool_2x2_f32(const float *x, float *out, int32_t *argmax, float k, float d,
                                                 int64_t height, int64_t width, int plain_c);

/// Its backward pass, one plane: with dz = dy[o] where out[o] > 0 and 0 elsewhere,
/// *sum_dy = sum dz and *sum_dy_xc = sum dz (x[argmax[o]] - m) over the plane's n windows.
DLK_HIDDEN void dlk_pooled_gradient_sums_f32(const float *dy, const float *out, const int32_t *argmax, const float *x,
                                             float m, int64_t n, float *sum_dy, float *sum_dy_xc, int plain_c);
/// And the plane's input gradient: dx = k ((dz - mean_dy) - ((x - m) s) mean_dy_xhat) for
/// each of its height x width elements, dz being the window's where argmax points to it and
/// 0 elsewhere (each operation rounded as written); with fixed statistics, dx = dz k.
DLK_HIDDEN void dlk_pooled_input_gradient_f32(const float *x, const float *dy, const float *out, const int32_t *argmax,
                                              float *dx, int64_t height, int64_t width, float k, float m, float s,
                                              float mean_dy, float mean_dy_xhat, int batch_statistics, int plain_c);

// MARK: - Input checks, preprocessing and batch gathering (input.c)

/// Copies `bytes` bytes from src to dst (no overlap), with vector loads and stores. Use it
/// instead of memcpy for arrays of a kilobyte and more: Debian 12's glibc copies those with
/// `rep movsb`, which AMD Zen 3 runs at 1.4-2.6 GB/s instead of 35-85 GB/s whenever dst lies
/// 1-31 bytes after src modulo 4096 (two malloc'd tensors of the same size, allocated one
/// after the other, are 16 bytes apart modulo 4096). bench/README.md, "memcpy on this machine".
DLK_HIDDEN void dlk_copy(void *dst, const void *src, int64_t bytes);

/// 1 when no element is NaN or infinite, else 0.
DLK_HIDDEN int dlk_all_finite_f32(const float *x, int64_t n);
DLK_HIDDEN int dlk_all_finite_f64(const double *x, int64_t n);

/// dst = src * a + b (the input preprocessing of float32), without fused multiply-add: two
/// roundings, as NumPy's x * a + b. The one float32 implementation (src may equal dst).
DLK_HIDDEN void dlk_affine_f32(const float *src, float *dst, int64_t n, float a, float b);

/// dst = src * a + b when `affine`, else a copy of src (src may equal dst); returns 1 when
/// every element of dst is finite, else 0. One pass, shared among the kernel threads for
/// large arrays: a model's input batch loaded and checked.
DLK_HIDDEN int dlk_load_f32(const float *src, float *dst, int64_t n, float a, float b, int affine);

/// dst[i] = x[rows[i]] for count rows of cols floats (x * a + b when `affine`), then a
/// request to the CPU to start loading rows next[0..<next_count] (the next batch; `next`
/// may be NULL). Each share is a range of the batch's rows, and asks for the same fraction
/// of the next batch's, which the same thread gathers at the next call.
DLK_HIDDEN void dlk_gather_rows_f32(const float *x, int64_t cols, const int32_t *rows, int64_t count,
                                    float a, float b, int affine, float *dst, const int32_t *next,
                                    int64_t next_count);

/// dlk_gather_rows_f32 on the calling thread alone, with no request for a next batch.
DLK_HIDDEN void dlk_gather_rows_serial_f32(const float *x, int64_t cols, const int32_t *rows, int64_t count,
                                           float a, float b, int affine, float *dst);

// MARK: - Background batch loader (loader.c)

/// A thread that gathers one batch at a time, as dlk_gather_rows_serial_f32 does, while the
/// caller works. Start returns NULL when the thread cannot be made (the caller then gathers
/// itself). One request at a time: after `request`, call `wait` (which returns 1 when the
/// gathered rows are all finite) before the next request or before reading `dst`; `stop`
/// waits for a running request, then ends the thread and frees the loader (NULL is
/// ignored). The arrays of a request must stay valid until its wait returns.
typedef struct dlk_loader dlk_loader;
DLK_HIDDEN dlk_loader *dlk_loader_start(void);
DLK_HIDDEN void dlk_loader_request(dlk_loader *loader, const float *x, int64_t cols, const int32_t *rows,
                                   int64_t count, float a, float b, int affine, float *dst);
DLK_HIDDEN int dlk_loader_wait(dlk_loader *loader);
DLK_HIDDEN void dlk_loader_stop(dlk_loader *loader);

// MARK: - Threads (parallel.c) and the CPU (cpu.c)

/// The most threads the kernels use.
#define DLK_MAX_THREADS 8

/// One thread's share of a parallel job: items [begin, end), run by thread `thread` (0 =
/// the caller, up to DLK_MAX_THREADS - 1), for tasks that need scratch space of their own.
typedef void (*dlk_task)(void *context, int64_t begin, int64_t end, int thread);

/// Runs task over items 0..<items and returns when all are done. With T threads (the
/// setting, fewer when there are fewer than T * min_items_per_thread items), thread t gets
/// items [items * t / T, items * (t + 1) / T): a kernel that splits an array in storage
/// order by this rule finds the same part of it on the same core at the next call. Serial
/// when T is 1, or when the pool is busy with another caller's job. A task must give the
/// same results whatever range it is handed, so that results never depend on T.
/// Returns how the shares met (`dlk_join`), for a kernel that balances its shares by
/// measurement (the caller's share starts a hand-over earlier than the workers').
DLK_HIDDEN int dlk_parallel_for(int64_t items, int64_t min_items_per_thread, dlk_task task, void *context);

/// dlk_parallel_for for a short job: workers that are asleep (no job for longer than their
/// spin) are not woken, unless another short job found them asleep less than 100 us ago
/// (a burst: once awake, they spin between its jobs); their shares run on the caller.
/// Waking one costs the caller a futex call, 10-20 us on these VMs, more than a job of a
/// few tens of microseconds gains from a second core. Workers still spinning take their
/// shares as usual.
DLK_HIDDEN int dlk_parallel_for_awake(int64_t items, int64_t min_items_per_thread, dlk_task task, void *context);

/// How a job's shares met, as dlk_parallel_for returns it.
enum dlk_join {
    DLK_JOIN_SERIAL = 0,    // one thread ran every share (T is 1, or the pool was busy)
    DLK_JOIN_WORKERS_FIRST, // every worker had finished when the caller finished its share
    DLK_JOIN_CALLER_WAITED, // the caller waited for a worker still running its share
    DLK_JOIN_TOOK_OVER,     // a worker had not started (asleep, or its core taken): the caller ran its share
};

/// Threads the kernels use (the caller included), 1 to DLK_MAX_THREADS: DL_NUM_THREADS
/// when set and positive, else the CPUs available less one for the batch loader when there
/// are three or more. `dlk_set_threads` changes it (clamped to the same range).
DLK_HIDDEN int dlk_threads(void);
DLK_HIDDEN void dlk_set_threads(int n);

/// The CPUs this process may run on now (its affinity mask; 1 when unknown).
DLK_HIDDEN int dlk_available_cpus(void);

/// A number no earlier call returned (from 1, any thread): the version stamp of a
/// parameter's values, which caches derived from them compare.
DLK_HIDDEN uint64_t dlk_next_generation(void);

// MARK: - Dense products without packing (gemm.c)

/// How many consecutive multiply-adds of an output dlk_gemm_f32 chains before it adds the
/// chain to the output's sum: blocks of 128 keep its rounding errors near OpenBLAS's (one
/// chain over k = 3136 had 4-5x their largest error against float64).
#define DLK_GEMM_SUM_DEPTH 128

/// C (m x n, rows ldc apart) = alpha (A B) for row-major A (m x k, lda; with `trans_a`, A
/// is stored as its transpose, k x m) and B (k x n, ldb), read in place. Each output is a
/// sum over blocks of DLK_GEMM_SUM_DEPTH consecutive p, in order: each block a chain of
/// fused multiply-adds from zero, added to the sum (the first block is the sum; with
/// `accumulate` it is added to C's value: C = alpha (C + A B)); the sum is then times
/// alpha: the same bits from the AVX-512 kernel, the AVX2/FMA one and plain C (`plain_c`),
/// whatever rows a call is given (threads may split C's rows any way). A vector kernel runs
/// where dlk_has_avx2() (AVX-512 where dlk_has_avx512()); the plain C loop is their
/// reference, far slower than OpenBLAS.
DLK_HIDDEN void dlk_gemm_f32(int trans_a, int64_t m, int64_t n, int64_t k, float alpha, const float *a, int64_t lda,
                             const float *b, int64_t ldb, float *c, int64_t ldc, int accumulate, int plain_c);

/// A 2-D window's geometry (Window2D): the input plane, the kernel, strides, padding on each
/// side, the output plane.
struct dlk_window {
    int64_t height, width, kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w, out_h, out_w;
};

/// im2col's tap rows [first_row, last_row) of the columns (rows `row_stride` apart) for
/// `batch` samples of `channels` planes (Kernels.im2col; im2col.c).
DLK_HIDDEN void dlk_im2col_f32(const float *x, float *cols, int64_t batch, int64_t channels,
                               const struct dlk_window *w, int64_t row_stride, int64_t first_row, int64_t last_row);

/// col2im (Kernels.col2im) for channels [first_channel, last_channel): their planes of dx
/// zeroed, then every column entry added to the element it was read from, taps in order.
DLK_HIDDEN void dlk_col2im_f32(const float *dcols, float *dx, int64_t batch, int64_t channels,
                               const struct dlk_window *w, int64_t first_channel, int64_t last_channel);

/// dst (cols x rows, rows ldd apart) = src^T for src (rows x cols, rows lds apart); the two
/// must not overlap. AVX2 blocks of 8 x 8 where the CPU has it (transpose.c).
DLK_HIDDEN void dlk_transpose_f32(int64_t rows, int64_t cols, const float *src, int64_t lds, float *dst, int64_t ldd,
                                  int plain_c);

/// The widest product (columns of B and C) that dlk_gemm_parallel_f32 takes. Against
/// OpenBLAS on one core (bench/README.md, "Products without packing"), the kernel was
/// faster up to 128 columns and 5-10% slower at 256 and 512, where rows of B lie further
/// apart than its tiles' 64 columns use of them.
#define DLK_GEMM_MAX_COLUMNS 128

/// The greatest depth (k) at which the AVX-512 kernel takes products wider than
/// DLK_GEMM_MAX_COLUMNS.
#define DLK_GEMM_SHALLOW_DEPTH 128

/// Whether dlk_gemm_parallel_f32 computes a product of this kind: a vector kernel runs here
/// and either OpenBLAS lags the CPU (dlk_blas_lags), or C has at most DLK_GEMM_MAX_COLUMNS
/// columns (any number with AVX-512 at a depth of at most DLK_GEMM_SHALLOW_DEPTH), and it is
/// not one that OpenBLAS was measured faster on (with the AVX2 kernel: A stored as it is,
/// 512 rows or more, 64 columns or more).
DLK_HIDDEN int dlk_gemm_parallel_takes(int trans_a, int64_t m, int64_t n, int64_t k);

/// dlk_gemm_f32's vector kernel on the kernel threads, which take blocks of C's rows in
/// turn; as many threads as give each `min_work` multiply-adds. 0 (nothing done) with an
/// empty product or unless dlk_gemm_parallel_takes(trans_a, m, n, k).
DLK_HIDDEN int dlk_gemm_parallel_f32(int trans_a, int64_t m, int64_t n, int64_t k, float alpha, const float *a,
                                     int64_t lda, const float *b, int64_t ldb, float *c, int64_t ldc,
                                     int64_t min_work);

/// 1 when the OpenBLAS this process runs has chosen kernels without the vector instructions
/// the CPU has (the CPU has AVX2/FMA; OpenBLAS's core, `openblas_get_corename`, is none of
/// its AVX2/FMA or AVX-512 ones): a CPU newer than the OpenBLAS build. The library's own
/// kernel then takes every float32 product it can (dlk_gemm_parallel_takes). 0 without
/// OpenBLAS in the process.
DLK_HIDDEN int dlk_blas_lags(void);

/// 1 when the CPU runs the AVX2/FMA versions of the kernels, 0 when it gets the plain C ones.
DLK_HIDDEN int dlk_has_avx2(void);

/// 1 when the CPU (and the OS) run AVX-512F and the AVX2 kernels: the single-sample product
/// then reads each row of the weight in one run. DL_NO_AVX512=1 turns it off (tests compare).
DLK_HIDDEN int dlk_has_avx512(void);

#endif
