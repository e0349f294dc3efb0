// One sample through a layer that keeps its weight as W (out x in): y = W x, a dot product per
// output. BLAS's gemv costs more to call (its guard, its argument checks and dispatch) than
// a product this size takes: 128 x 10 is 1,280 multiply-adds.
//
// Each dot product is summed in 16 lanes (lane q takes the inputs i with i % 16 == q, in
// order), the lanes then added in a fixed tree, and the tail (n % 16 inputs) last, in order:
// the AVX-512 version (one vector of 16 lanes a row), the AVX2 one (two vectors of 8) and
// the plain C one add the same products in the same order, and all multiply-add with one
// rounding (fmaf), so they give the same bits. 16 lanes because AVX-512 reads W from L2
// faster than AVX2 does: half of the MNIST MLP's W (200 KB) in 1.51 us against 2.11 on the
// Intel VM, each way 4 rows at a time (bench/README.md, "One dense sample in 16 lanes"). An output's sum does
// not depend on which rows are computed with it, so a large product shares its rows among
// the kernel threads and gives the same bits on any number of them.
//
// Reading W by rows is also the fastest way through a weight in L2 here: one sample of the
// MNIST MLP (W 128 x 784, 401 KB) on two cores, each reading the contiguous half of W its
// outputs need, 2.2-2.4 us, against 3.2 us for the same product from W^T, whose rows are
// read in four strided passes of 128 bytes (bench/README.md, "One sample by rows of W").
#include "dl_kernels.h"
#include "x86.h"

// The 16 lanes added as q + (q + 8), then ((0 + 4) + (2 + 6)) + ((1 + 5) + (3 + 7)): what
// halving the AVX-512 vector, and then the AVX2 one, gives.
static float lanes_sum(const float s[16]) {
    float h[8];
    for (int q = 0; q < 8; q++) h[q] = s[q] + s[q + 8];
    const float a0 = h[0] + h[4], a1 = h[1] + h[5], a2 = h[2] + h[6], a3 = h[3] + h[7];
    return (a0 + a2) + (a1 + a3);
}

static float dot_plain(const float *a, const float *x, int64_t n) {
    float s[16] = {0};
    int64_t i = 0;
    for (; i + 16 <= n; i += 16)
        for (int q = 0; q < 16; q++) s[q] = __builtin_fmaf(a[i + q], x[i + q], s[q]);
    float sum = lanes_sum(s);
    for (; i < n; i++) sum = __builtin_fmaf(a[i], x[i], sum);
    return sum;
}

static void matrix_vector_plain(const float *a, int64_t m, int64_t n, int64_t lda, const float *x, float *y) {
    for (int64_t r = 0; r < m; r++) y[r] = dot_plain(a + r * lda, x, n);
}

// The body of a SIMD kernel over rows [0, m): groups of four rows (FOUR), then the m % 4
// rows left one at a time (ONE); `backward`, the same groups from the last to the first, after
// the rows left. Which order the rows go in does not change their bits (see `read_backward`).
#define ROWS_IN_ORDER(FOUR, ONE)                                                  \
    const int64_t grouped = m & ~(int64_t)3;                                      \
    if (backward) {                                                               \
        for (int64_t r = m - 1; r >= grouped; r--) ONE(a, r, n, lda, x, y);       \
        for (int64_t r = grouped - 4; r >= 0; r -= 4) FOUR(a, r, n, lda, x, y);   \
    } else {                                                                      \
        for (int64_t r = 0; r < grouped; r += 4) FOUR(a, r, n, lda, x, y);        \
        for (int64_t r = grouped; r < m; r++) ONE(a, r, n, lda, x, y);           \
    }

#if DLK_X86
// The 8 lanes of h = lanes q + (q + 8), added as lanes_sum does.
__attribute__((target("avx2,fma")))
static inline float halves_sum_avx2(__m256 h) {
    const __m128 g = _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));  // q + (q + 4)
    const __m128 p = _mm_add_ps(g, _mm_movehl_ps(g, g));                                   // (0 + 4) + (2 + 6), ...
    return _mm_cvtss_f32(_mm_add_ss(p, _mm_shuffle_ps(p, p, 1)));
}

// A row's tail, n % 16 inputs from `whole`, after its lanes' sum.
static inline float tail_sum(float sum, const float *a, const float *x, int64_t whole, int64_t n) {
    for (int64_t i = whole; i < n; i++) sum = __builtin_fmaf(a[i], x[i], sum);
    return sum;
}

// Rows r..r+3 at a time: four independent chains of multiply-adds instead of one (each
// row's 16 lanes in two vectors, lo for inputs i % 16 < 8, hi for the rest).
__attribute__((target("avx2,fma")))
static inline void four_rows_avx2(const float *a, int64_t r, int64_t n, int64_t lda, const float *x, float *y) {
    const int64_t whole = n & ~(int64_t)15;
    const float *a0 = a + r * lda, *a1 = a0 + lda, *a2 = a1 + lda, *a3 = a2 + lda;
    __m256 l0 = _mm256_setzero_ps(), l1 = l0, l2 = l0, l3 = l0, h0 = l0, h1 = l0, h2 = l0, h3 = l0;
    for (int64_t i = 0; i < whole; i += 16) {
        const __m256 xl = _mm256_loadu_ps(x + i), xh = _mm256_loadu_ps(x + i + 8);
        l0 = _mm256_fmadd_ps(_mm256_loadu_ps(a0 + i), xl, l0);
        h0 = _mm256_fmadd_ps(_mm256_loadu_ps(a0 + i + 8), xh, h0);
        l1 = _mm256_fmadd_ps(_mm256_loadu_ps(a1 + i), xl, l1);
        h1 = _mm256_fmadd_ps(_mm256_loadu_ps(a1 + i + 8), xh, h1);
        l2 = _mm256_fmadd_ps(_mm256_loadu_ps(a2 + i), xl, l2);
        h2 = _mm256_fmadd_ps(_mm256_loadu_ps(a2 + i + 8), xh, h2);
        l3 = _mm256_fmadd_ps(_mm256_loadu_ps(a3 + i), xl, l3);
        h3 = _mm256_fmadd_ps(_mm256_loadu_ps(a3 + i + 8), xh, h3);
    }
    y[r] = tail_sum(halves_sum_avx2(_mm256_add_ps(l0, h0)), a0, x, whole, n);
    y[r + 1] = tail_sum(halves_sum_avx2(_mm256_add_ps(l1, h1)), a1, x, whole, n);
    y[r + 2] = tail_sum(halves_sum_avx2(_mm256_add_ps(l2, h2)), a2, x, whole, n);
    y[r + 3] = tail_sum(halves_sum_avx2(_mm256_add_ps(l3, h3)), a3, x, whole, n);
}

__attribute__((target("avx2,fma")))
static inline void one_row_avx2(const float *a, int64_t r, int64_t n, int64_t lda, const float *x, float *y) {
    const int64_t whole = n & ~(int64_t)15;
    const float *ar = a + r * lda;
    __m256 l = _mm256_setzero_ps(), h = l;
    for (int64_t i = 0; i < whole; i += 16) {
        l = _mm256_fmadd_ps(_mm256_loadu_ps(ar + i), _mm256_loadu_ps(x + i), l);
        h = _mm256_fmadd_ps(_mm256_loadu_ps(ar + i + 8), _mm256_loadu_ps(x + i + 8), h);
    }
    y[r] = tail_sum(halves_sum_avx2(_mm256_add_ps(l, h)), ar, x, whole, n);
}

// The two row kernels start on a cache line (`aligned(64)`): where their loops fell among
// the 32-byte fetch windows moved a single sample's call by 1-2% whenever other code in
// the library grew (the review's reindent and helpers: step_pair 1.006-1.027 against the
// build before, the same instructions; aligned, 0.989-1.007).
__attribute__((target("avx2,fma"), aligned(64)))
static void matrix_vector_avx2(const float *a, int64_t m, int64_t n, int64_t lda, const float *x, float *y,
                               int backward) {
    ROWS_IN_ORDER(four_rows_avx2, one_row_avx2)
}

// The 16 lanes of v added as lanes_sum does.
__attribute__((target("avx512f,avx2,fma")))
static inline float lanes_sum_avx512(__m512 v) {
    const __m256 hi = _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1));
    return halves_sum_avx2(_mm256_add_ps(_mm512_castps512_ps256(v), hi));
}

// As the AVX2 version, a vector of 16 lanes a row.
__attribute__((target("avx512f,avx2,fma")))
static inline void four_rows_avx512(const float *a, int64_t r, int64_t n, int64_t lda, const float *x, float *y) {
    const int64_t whole = n & ~(int64_t)15;
    const float *a0 = a + r * lda, *a1 = a0 + lda, *a2 = a1 + lda, *a3 = a2 + lda;
    __m512 s0 = _mm512_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
    for (int64_t i = 0; i < whole; i += 16) {
        const __m512 xi = _mm512_loadu_ps(x + i);
        s0 = _mm512_fmadd_ps(_mm512_loadu_ps(a0 + i), xi, s0);
        s1 = _mm512_fmadd_ps(_mm512_loadu_ps(a1 + i), xi, s1);
        s2 = _mm512_fmadd_ps(_mm512_loadu_ps(a2 + i), xi, s2);
        s3 = _mm512_fmadd_ps(_mm512_loadu_ps(a3 + i), xi, s3);
    }
    y[r] = tail_sum(lanes_sum_avx512(s0), a0, x, whole, n);
    y[r + 1] = tail_sum(lanes_sum_avx512(s1), a1, x, whole, n);
    y[r + 2] = tail_sum(lanes_sum_avx512(s2), a2, x, whole, n);
    y[r + 3] = tail_sum(lanes_sum_avx512(s3), a3, x, whole, n);
}

__attribute__((target("avx512f,avx2,fma")))
static inline void one_row_avx512(const float *a, int64_t r, int64_t n, int64_t lda, const float *x, float *y) {
    const int64_t whole = n & ~(int64_t)15;
    const float *ar = a + r * lda;
    __m512 s = _mm512_setzero_ps();
    for (int64_t i = 0; i < whole; i += 16) s = _mm512_fmadd_ps(_mm512_loadu_ps(ar + i), _mm512_loadu_ps(x + i), s);
    y[r] = tail_sum(lanes_sum_avx512(s), ar, x, whole, n);
}

__attribute__((target("avx512f,avx2,fma"), aligned(64)))
static void matrix_vector_avx512(const float *a, int64_t m, int64_t n, int64_t lda, const float *x, float *y,
                                 int backward) {
    ROWS_IN_ORDER(four_rows_avx512, one_row_avx512)
}
#endif

static void matrix_vector_rows(const float *a, int64_t m, int64_t n, int64_t lda, const float *x, float *y,
                               int plain_c, int backward) {
#if DLK_X86
    if (!plain_c && dlk_has_avx512()) {
        matrix_vector_avx512(a, m, n, lda, x, y, backward);
        return;
    }
    if (!plain_c && dlk_has_avx2()) {
        matrix_vector_avx2(a, m, n, lda, x, y, backward);
        return;
    }
#endif
    (void)plain_c, (void)backward;
    matrix_vector_plain(a, m, n, lda, x, y);
}

// Below this many multiply-adds per thread, handing rows to another core costs more than it
// saves (a job on the kernel threads takes about 0.2 us to start and finish; 16k
// multiply-adds read 64 KB of W, about 0.7 us from L2).
enum { MIN_WORK_PER_THREAD = 16384 };

// Below this many multiply-adds (W of 8 MB: about 100 us from L3 on one core), a product
// does not wake kernel threads that fell asleep: waking one costs the caller 10-20 us
// (dlk_parallel_for_awake), and a single sample of mnist_cnn (its 3136 x 128 layer) took
// 160-188 us on two threads against 139 on one, most of the difference in that call.
enum { WAKE_WORK = 1 << 21 };

struct matrix_vector_job {
    const float *a, *x;
    int64_t m, n, lda;
    float scale;
    const float *base;   // NULL: y = A x
    float *y;
    int plain_c;
    int64_t late;        // rows each boundary between shares moves (see late_work)
};

#pragma STDC FP_CONTRACT OFF   // the epilogue's two roundings

#if DLK_X86
// y[r] = y[r] * scale + base[r] for r in [begin, end - (end - begin) % 8), 8 at a time, with
// the scalar loop's two roundings; returns where it stopped.
__attribute__((target("avx2")))
static int64_t affine_avx2(float *y, int64_t begin, int64_t end, float scale, const float *base) {
    const __m256 s = _mm256_set1_ps(scale);
    int64_t r = begin;
    for (; r + 8 <= end; r += 8)
        _mm256_storeu_ps(y + r, _mm256_add_ps(_mm256_mul_ps(_mm256_loadu_ps(y + r), s), _mm256_loadu_ps(base + r)));
    return r;
}
#endif

// The calling thread runs the first share and starts it a job hand-over (0.1-0.4 us,
// depending on the machine) before a worker starts its own, while a single sample's product
// takes only 2-3 us: every boundary between shares moves `late` rows later, so the caller
// does more. How many is measured, not guessed: `late_work` (multiply-adds, so that
// products of any width share it) grows by a row when the caller had to wait for a worker
// more often than not over the last few jobs (`balance` counts up for a wait, down for
// workers done first, and moves `late_work` when it reaches +-BALANCE_STEPS), and shrinks
// by a row the other way. Slowly, because a row that changes hands is read from the other
// core's cache (alternating a row every call cost more than the balance gained). It
// settles where the shares end together: about m / 64 rows of 784 inputs on AMD Zen 3
// VMs, m / 20 on Intel Xeon VMs. Which thread computes a row does not change its bits, so
// the results do not depend on it.
enum { BALANCE_STEPS = 8 };
static int64_t late_work;   // atomic (relaxed), as `balance`: callers on several threads may adjust them
static int balance;

// After a job that moved its boundaries `late` rows of n multiply-adds, of at most `most`.
static void rebalance(int join, int64_t late, int64_t most, int64_t n) {
    if (join != DLK_JOIN_CALLER_WAITED && join != DLK_JOIN_WORKERS_FIRST) return;
    int b = __atomic_load_n(&balance, __ATOMIC_RELAXED) + (join == DLK_JOIN_CALLER_WAITED ? 1 : -1);
    if (b >= BALANCE_STEPS || b <= -BALANCE_STEPS) {
        const int64_t next = late + (b > 0 ? 1 : -1);
        if (next >= 0 && next <= most) __atomic_store_n(&late_work, next * n, __ATOMIC_RELAXED);
        b = 0;
    }
    __atomic_store_n(&balance, b, __ATOMIC_RELAXED);
}

// Where a boundary between shares at row b (of m) moves: `late` rows later, rounded to the
// nearest multiple of four, so that no share ends with rows the kernel takes one at a time
// (four rows share each load of x; a lone row took as long as three of a group).
static int64_t moved_boundary(int64_t b, int64_t m, int64_t late) {
    if (b == 0 || b == m) return b;
    const int64_t moved = (b + late + 2) & ~(int64_t)3;
    return moved < m ? moved : m;
}

// Whether this thread reads its rows of `a` from the last to the first this time: each
// thread alternates for each weight it reads. A weight larger than L1 (the MNIST MLP's
// first, 401 KB, 200 KB a thread) evicts its own first rows as a thread reads it; the rows
// it read last are still in L1 when it comes back, so going back through them first reads
// those from L1 instead of L2 (a share of 60-68 rows of 784 inputs 4-5% faster, with 8 KB
// of other data touched between two calls; bench/README.md). A few weights a thread, in
// a table by address (a weight that meets another's slot starts again forwards).
static _Thread_local struct { const float *a; int backward; } recently_read[8];

static int read_backward(const float *a) {
    __typeof__(recently_read[0]) *slot = &recently_read[((uintptr_t)a >> 6) % 8];
    if (slot->a != a) {
        slot->a = a;
        slot->backward = 0;
    } else {
        slot->backward = !slot->backward;
    }
    return slot->backward;
}

// Rows [begin, end) of the job's m rows, each boundary moved (`moved_boundary`).
static void matrix_vector_share(void *context, int64_t begin, int64_t end, int thread) {
    const struct matrix_vector_job *job = context;
    const int64_t m = job->m;
    begin = moved_boundary(begin, m, job->late);
    end = moved_boundary(end, m, job->late);
    float *y = job->y;
    const float scale = job->scale, *base = job->base;
    // A worker finds x in the caller's cache: asked for all at once, its lines arrive
    // together instead of as the first row group reaches them (a textured sample's
    // dl_predict 1-2% faster, in each of four paired rounds; bench/README.md).
    if (thread != 0)
        for (int64_t i = 0; i < job->n; i += 16) __builtin_prefetch(job->x + i, 0, 3);
    matrix_vector_rows(job->a + begin * job->lda, end - begin, job->n, job->lda, job->x, y + begin, job->plain_c,
                       read_backward(job->a));
    if (!base) return;
    int64_t r = begin;
#if DLK_X86
    if (!job->plain_c && dlk_has_avx2()) r = affine_avx2(y, begin, end, scale, base);
#endif
    for (; r < end; r++) y[r] = y[r] * scale + base[r];
}

static void matrix_vector(const float *a, int64_t m, int64_t n, int64_t lda, const float *x, float scale,
                          const float *base, float *y, int plain_c) {
    if (m <= 0) return;
    struct matrix_vector_job job = {a, x, m, n, lda, scale, base, y, plain_c, 0};
    if (m * n < 2 * MIN_WORK_PER_THREAD) {   // one share, on this thread: not worth the pool's call
        matrix_vector_share(&job, 0, m, 0);
        return;
    }
    // At most an eighth of the rows: every share keeps most of its own.
    const int64_t most = m / 8, work = __atomic_load_n(&late_work, __ATOMIC_RELAXED);
    job.late = work / n < most ? work / n : most;
    const int64_t min_rows = (MIN_WORK_PER_THREAD + n - 1) / n;
    const int join = m * n < WAKE_WORK ? dlk_parallel_for_awake(m, min_rows, matrix_vector_share, &job)
                                       : dlk_parallel_for(m, min_rows, matrix_vector_share, &job);
    rebalance(join, job.late, most, n);
}

void dlk_matrix_vector_f32(const float *a, int64_t m, int64_t n, int64_t lda, const float *x, float *y, int plain_c) {
    matrix_vector(a, m, n, lda, x, 1, NULL, y, plain_c);
}

void dlk_matrix_vector_affine_f32(const float *a, int64_t m, int64_t n, int64_t lda, const float *x, float scale,
                                  const float *base, float *y, int plain_c) {
    matrix_vector(a, m, n, lda, x, scale, base, y, plain_c);
}
