// Input checks, the float32 preprocessing and the batch gather (see dl_kernels.h).
#include "dl_kernels.h"
#include "x86.h"

#include <string.h>

// MARK: - Copies (see dl_kernels.h for why not memcpy)

#if DLK_X86
__attribute__((target("avx2")))
static void copy_avx2(unsigned char *dst, const unsigned char *src, int64_t bytes) {
    int64_t i = 0;
    for (; i + 128 <= bytes; i += 128) {
        const __m256i a = _mm256_loadu_si256((const __m256i *)(src + i));
        const __m256i b = _mm256_loadu_si256((const __m256i *)(src + i + 32));
        const __m256i c = _mm256_loadu_si256((const __m256i *)(src + i + 64));
        const __m256i d = _mm256_loadu_si256((const __m256i *)(src + i + 96));
        _mm256_storeu_si256((__m256i *)(dst + i), a);
        _mm256_storeu_si256((__m256i *)(dst + i + 32), b);
        _mm256_storeu_si256((__m256i *)(dst + i + 64), c);
        _mm256_storeu_si256((__m256i *)(dst + i + 96), d);
    }
    for (; i + 32 <= bytes; i += 32) _mm256_storeu_si256((__m256i *)(dst + i), _mm256_loadu_si256((const __m256i *)(src + i)));
    if (i < bytes) memcpy(dst + i, src + i, (size_t)(bytes - i));   // under 32 bytes: no rep movsb
}
#endif

void dlk_copy(void *dst, const void *src, int64_t bytes) {
    if (bytes <= 0) return;
#if DLK_X86
    // (CPUs without AVX2 predate the `rep movsb` trouble: memcpy there.)
    if (bytes >= 256 && dlk_has_avx2()) {
        copy_avx2(dst, src, bytes);
        return;
    }
#endif
    memcpy(dst, src, (size_t)bytes);
}

// MARK: - Finite checks and the affine map
//
// A value is finite when its exponent bits are not all ones. Testing the bits, OR-ed over
// the array with no early exit, vectorises in plain C (a floating-point comparison chain
// did not, in Swift: one scalar compare per element).

static int all_finite_f32_plain(const float *x, int64_t n) {
    const uint32_t *bits = (const uint32_t *)(const void *)x;
    uint32_t bad = 0;
    for (int64_t i = 0; i < n; i++) bad |= (uint32_t)((bits[i] & 0x7f800000u) == 0x7f800000u);
    return bad == 0;
}

static int all_finite_f64_plain(const double *x, int64_t n) {
    const uint64_t *bits = (const uint64_t *)(const void *)x;
    uint64_t bad = 0;
    for (int64_t i = 0; i < n; i++)
        bad |= (uint64_t)((bits[i] & 0x7ff0000000000000ull) == 0x7ff0000000000000ull);
    return bad == 0;
}

static void affine_f32_plain(const float *src, float *dst, int64_t n, float a, float b) {
    for (int64_t i = 0; i < n; i++) dst[i] = src[i] * a + b;
}

#if DLK_X86
// The same loops, compiled for AVX2 (8 floats per instruction instead of SSE's 4).
__attribute__((target("avx2")))
static int all_finite_f32_avx2(const float *x, int64_t n) { return all_finite_f32_plain(x, n); }
__attribute__((target("avx2")))
static int all_finite_f64_avx2(const double *x, int64_t n) { return all_finite_f64_plain(x, n); }
// No FMA here: x * a + b rounds twice, as the dense path and NumPy do.
__attribute__((target("avx2")))
static void affine_f32_avx2(const float *src, float *dst, int64_t n, float a, float b) {
    affine_f32_plain(src, dst, n, a, b);
}
#endif

static int all_finite_f32(const float *x, int64_t n) {
#if DLK_X86
    if (dlk_has_avx2()) return all_finite_f32_avx2(x, n);
#endif
    return all_finite_f32_plain(x, n);
}

int dlk_all_finite_f64(const double *x, int64_t n) {
#if DLK_X86
    if (dlk_has_avx2()) return all_finite_f64_avx2(x, n);
#endif
    return all_finite_f64_plain(x, n);
}

void dlk_affine_f32(const float *src, float *dst, int64_t n, float a, float b) {
#if DLK_X86
    if (dlk_has_avx2()) {
        affine_f32_avx2(src, dst, n, a, b);
        return;
    }
#endif
    affine_f32_plain(src, dst, n, a, b);
}

// MARK: - Loading a batch: the preprocessing and the finite check in one pass
//
// A block of 4096 floats is mapped, then checked while it is still in L1. Shares are ranges
// of elements: the result is the same on any number of threads.

enum { LOAD_BLOCK = 4096, LOAD_MIN_PER_THREAD = 1 << 14 };

struct load_job {
    const float *src;
    float *dst;                       // NULL: only check src
    float a, b;
    int affine;
    int finite[DLK_MAX_THREADS];
};

static void load_part(void *context, int64_t begin, int64_t end, int thread) {
    struct load_job *j = context;
    const float *checked = j->dst ? j->dst : j->src;
    int finite = 1;
    for (int64_t i = begin; i < end; i += LOAD_BLOCK) {
        const int64_t n = end - i < LOAD_BLOCK ? end - i : LOAD_BLOCK;
        if (j->dst && j->affine) dlk_affine_f32(j->src + i, j->dst + i, n, j->a, j->b);
        else if (j->dst && j->dst != j->src) dlk_copy(j->dst + i, j->src + i, n * (int64_t)sizeof *j->dst);
        finite &= all_finite_f32(checked + i, n);
    }
    j->finite[thread] = finite;
}

static int load(const float *src, float *dst, int64_t n, float a, float b, int affine, int64_t min_per_thread) {
    struct load_job job = {src, dst, a, b, affine, {0}};
    for (int t = 0; t < DLK_MAX_THREADS; t++) job.finite[t] = 1;
    dlk_parallel_for(n, min_per_thread, load_part, &job);
    int finite = 1;
    for (int t = 0; t < DLK_MAX_THREADS; t++) finite &= job.finite[t];
    return finite;
}

int dlk_load_f32(const float *src, float *dst, int64_t n, float a, float b, int affine) {
    return load(src, dst, n, a, b, affine, LOAD_MIN_PER_THREAD);
}

// Large arrays (a batch to predict) are checked on the kernel threads: a load that only checks.
enum { CHECK_MIN_PER_THREAD = 1 << 16 };

int dlk_all_finite_f32(const float *x, int64_t n) {
    if (n < 2 * CHECK_MIN_PER_THREAD) return all_finite_f32(x, n);
    return load(x, NULL, n, 1, 0, 0, CHECK_MIN_PER_THREAD);
}

// MARK: - Gathering a shuffled batch
//
// Each row is a miss to memory (the rows of a shuffled batch lie anywhere in the data set).
// A share is a range of the batch's rows; it then asks the CPU for the same fraction of the
// next batch's rows, which arrive while the step trains and which the same thread gathers
// at the next call (the pool hands out shares by a fixed rule, see dlk_parallel_for).

struct gather_job {
    const float *x;
    int64_t cols;
    const int32_t *rows;
    int64_t count;
    float a, b;
    int affine;
    float *dst;
    const int32_t *next;
    int64_t next_count;
};

static void gather_part(void *context, int64_t begin, int64_t end, int thread) {
    (void)thread;
    const struct gather_job *g = context;
    for (int64_t i = begin; i < end; i++) {
        const float *src = g->x + (int64_t)g->rows[i] * g->cols;
        float *dst = g->dst + i * g->cols;
        if (g->affine) dlk_affine_f32(src, dst, g->cols, g->a, g->b);
        else dlk_copy(dst, src, g->cols * (int64_t)sizeof *dst);
    }
    const int64_t n0 = g->next_count * begin / g->count, n1 = g->next_count * end / g->count;
    for (int64_t i = n0; i < n1; i++) {
        const float *p = g->x + (int64_t)g->next[i] * g->cols;
        for (int64_t c = 0; c < g->cols; c += 16) __builtin_prefetch(p + c, 0, 1);
    }
}

void dlk_gather_rows_f32(const float *x, int64_t cols, const int32_t *rows, int64_t count,
                         float a, float b, int affine, float *dst, const int32_t *next, int64_t next_count) {
    struct gather_job job = {x, cols, rows, count, a, b, affine, dst, next, next ? next_count : 0};
    dlk_parallel_for(count, 4, gather_part, &job);
}

void dlk_gather_rows_serial_f32(const float *x, int64_t cols, const int32_t *rows, int64_t count,
                                float a, float b, int affine, float *dst) {
    struct gather_job job = {x, cols, rows, count, a, b, affine, dst, NULL, 0};
    gather_part(&job, 0, count, 0);
}
