// Sparse-input kernels (see dl_kernels.h). Each kernel has a portable C version and, on
// x86-64, an AVX2/FMA version compiled with a target attribute and chosen at run time, so
// the library itself stays built for baseline x86-64.
#include "dl_kernels.h"

#include <pthread.h>
#include <string.h>

#if defined(__x86_64__) && (defined(__clang__) || defined(__GNUC__))
#define DLK_X86 1
#include <immintrin.h>
#else
#define DLK_X86 0
#endif

int dlk_has_avx2(void) {
#if DLK_X86
    static int cached = -1;  // every thread that races here stores the same value
    int known = __atomic_load_n(&cached, __ATOMIC_RELAXED);
    if (known < 0) {
        __builtin_cpu_init();
        known = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
        __atomic_store_n(&cached, known, __ATOMIC_RELAXED);
    }
    return known;
#else
    return 0;
#endif
}

// MARK: - Row compression

// Appends the entries of row xr, columns c ..< cols, that differ from v; returns the new count.
static inline int64_t compress_scalar(const float *xr, int64_t c, int64_t cols, float v,
                                      int32_t *index, float *value, int64_t nnz) {
    for (; c < cols; c++) {
        if (xr[c] != v) {
            index[nnz] = (int32_t)c;
            value[nnz] = xr[c] - v;
            nnz++;
        }
    }
    return nnz;
}

static int64_t compress_rows_portable(const float *x, int64_t rows, int64_t cols, int64_t ld, float v,
                                      int64_t max_nonzeros,
                                      int32_t *start, int32_t *index, float *value) {
    int64_t nnz = 0;
    start[0] = 0;
    for (int64_t r = 0; r < rows; r++) {
        nnz = compress_scalar(x + r * ld, 0, cols, v, index, value, nnz);
        if (nnz > max_nonzeros) return -1;
        start[r + 1] = (int32_t)nnz;
    }
    return nnz;
}

#if DLK_X86
// For each 8-bit mask, the positions of its set bits packed into bytes (low first): the
// permutation that moves the selected lanes of a vector to its front.
static uint64_t compress_table[256];
static pthread_once_t compress_table_once = PTHREAD_ONCE_INIT;

static void fill_compress_table(void) {
    for (unsigned mask = 0; mask < 256; mask++) {
        uint64_t packed = 0;
        int n = 0;
        for (int bit = 0; bit < 8; bit++)
            if (mask & (1u << bit)) packed |= (uint64_t)bit << (8 * n++);
        compress_table[mask] = packed;
    }
}

// Eight columns at a time: compare with v, then move the differing lanes (values and their
// column numbers) to the front with one permutation and store all eight lanes; only the
// first popcount(mask) of them count. No branch depends on the data but "all eight equal v".
__attribute__((target("avx2")))
static int64_t compress_rows_avx2(const float *x, int64_t rows, int64_t cols, int64_t ld, float v,
                                  int64_t max_nonzeros,
                                  int32_t *start, int32_t *index, float *value) {
    pthread_once(&compress_table_once, fill_compress_table);
    const __m256 vv = _mm256_set1_ps(v);
    const __m256i lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    int64_t nnz = 0;
    start[0] = 0;
    for (int64_t r = 0; r < rows; r++) {
        const float *xr = x + r * ld;
        int64_t c = 0;
        for (; c + 8 <= cols; c += 8) {
            const __m256 d = _mm256_loadu_ps(xr + c);
            const unsigned mask = (unsigned)_mm256_movemask_ps(_mm256_cmp_ps(d, vv, _CMP_NEQ_UQ));
            if (mask == 0) continue;
            const __m256i perm = _mm256_cvtepu8_epi32(_mm_cvtsi64_si128((long long)compress_table[mask]));
            _mm256_storeu_ps(value + nnz, _mm256_permutevar8x32_ps(_mm256_sub_ps(d, vv), perm));
            const __m256i columns = _mm256_add_epi32(lanes, _mm256_set1_epi32((int)c));
            _mm256_storeu_si256((__m256i *)(index + nnz), _mm256_permutevar8x32_epi32(columns, perm));
            nnz += __builtin_popcount(mask);
        }
        nnz = compress_scalar(xr, c, cols, v, index, value, nnz);
        if (nnz > max_nonzeros) return -1;
        start[r + 1] = (int32_t)nnz;
    }
    return nnz;
}
#endif

static int64_t compress_rows(const float *x, int64_t rows, int64_t cols, int64_t ld, float v, int64_t max_nonzeros,
                             int32_t *start, int32_t *index, float *value, int portable) {
#if DLK_X86
    if (!portable && dlk_has_avx2())
        return compress_rows_avx2(x, rows, cols, ld, v, max_nonzeros, start, index, value);
#endif
    (void)portable;
    return compress_rows_portable(x, rows, cols, ld, v, max_nonzeros, start, index, value);
}

// MARK: - Sparse times dense

static void sparse_times_dense_portable(int64_t rows, int64_t n,
                                        const int32_t *start, const int32_t *index, const float *value,
                                        const float *b, int64_t ldb, const float *base,
                                        float *c, int64_t ldc) {
    for (int64_t r = 0; r < rows; r++) {
        float *cr = c + r * ldc;
        if (base) memcpy(cr, base, (size_t)n * sizeof *cr);
        else memset(cr, 0, (size_t)n * sizeof *cr);
        for (int32_t k = start[r]; k < start[r + 1]; k++) {
            const float s = value[k];
            const float *br = b + (int64_t)index[k] * ldb;
            for (int64_t j = 0; j < n; j++) cr[j] += s * br[j];
        }
    }
}

#if DLK_X86
// Eight 8-wide accumulators a0..a7 for 64 consecutive outputs: declared (from base + o, or
// zero when base is NULL), multiply-added (s times the 64 floats at p) and stored. Named
// variables rather than an array, which gcc at -O2 keeps in memory (measured 2x slower).
#define ACC8_DECLARE(base, o)                                                             \
    __m256 a0, a1, a2, a3, a4, a5, a6, a7;                                                \
    if (base) {                                                                           \
        a0 = _mm256_loadu_ps((base) + (o));      a1 = _mm256_loadu_ps((base) + (o) + 8);  \
        a2 = _mm256_loadu_ps((base) + (o) + 16); a3 = _mm256_loadu_ps((base) + (o) + 24); \
        a4 = _mm256_loadu_ps((base) + (o) + 32); a5 = _mm256_loadu_ps((base) + (o) + 40); \
        a6 = _mm256_loadu_ps((base) + (o) + 48); a7 = _mm256_loadu_ps((base) + (o) + 56); \
    } else {                                                                              \
        a0 = a1 = a2 = a3 = a4 = a5 = a6 = a7 = _mm256_setzero_ps();                      \
    }
#define ACC8_FMA(s_, p_)                                                                  \
    do {                                                                                  \
        const __m256 s = (s_);                                                            \
        const float *p = (p_);                                                            \
        a0 = _mm256_fmadd_ps(s, _mm256_loadu_ps(p), a0);                                  \
        a1 = _mm256_fmadd_ps(s, _mm256_loadu_ps(p + 8), a1);                              \
        a2 = _mm256_fmadd_ps(s, _mm256_loadu_ps(p + 16), a2);                             \
        a3 = _mm256_fmadd_ps(s, _mm256_loadu_ps(p + 24), a3);                             \
        a4 = _mm256_fmadd_ps(s, _mm256_loadu_ps(p + 32), a4);                             \
        a5 = _mm256_fmadd_ps(s, _mm256_loadu_ps(p + 40), a5);                             \
        a6 = _mm256_fmadd_ps(s, _mm256_loadu_ps(p + 48), a6);                             \
        a7 = _mm256_fmadd_ps(s, _mm256_loadu_ps(p + 56), a7);                             \
    } while (0)
#define ACC8_STORE(c_)                                                                    \
    do {                                                                                  \
        float *c8 = (c_);                                                                 \
        _mm256_storeu_ps(c8, a0);      _mm256_storeu_ps(c8 + 8, a1);                      \
        _mm256_storeu_ps(c8 + 16, a2); _mm256_storeu_ps(c8 + 24, a3);                     \
        _mm256_storeu_ps(c8 + 32, a4); _mm256_storeu_ps(c8 + 40, a5);                     \
        _mm256_storeu_ps(c8 + 48, a6); _mm256_storeu_ps(c8 + 56, a7);                     \
    } while (0)

// One row of c, 64 columns at a time in eight 8-wide accumulators (kept in registers
// across the row's nonzeros: each nonzero costs one broadcast, eight loads of b and eight
// FMAs), then 8 at a time, then one at a time.
__attribute__((target("avx2,fma")))
static void sparse_times_dense_avx2(int64_t rows, int64_t n,
                                    const int32_t *start, const int32_t *index, const float *value,
                                    const float *b, int64_t ldb, const float *base,
                                    float *c, int64_t ldc) {
    for (int64_t r = 0; r < rows; r++) {
        float *cr = c + r * ldc;
        const int32_t k0 = start[r], k1 = start[r + 1];
        int64_t j = 0;
        for (; j + 64 <= n; j += 64) {
            ACC8_DECLARE(base, j);
            for (int32_t k = k0; k < k1; k++) {
                // The row of b eight nonzeros ahead, to L1: these rows come from L2 in an
                // order no hardware prefetcher predicts (measured 7% faster on MNIST).
                const float *ahead = b + (int64_t)index[k + 8 < k1 ? k + 8 : k1 - 1] * ldb + j;
                _mm_prefetch((const char *)ahead, _MM_HINT_T0);
                _mm_prefetch((const char *)(ahead + 16), _MM_HINT_T0);
                _mm_prefetch((const char *)(ahead + 32), _MM_HINT_T0);
                _mm_prefetch((const char *)(ahead + 48), _MM_HINT_T0);
                ACC8_FMA(_mm256_broadcast_ss(value + k), b + (int64_t)index[k] * ldb + j);
            }
            ACC8_STORE(cr + j);
        }
        for (; j + 8 <= n; j += 8) {
            __m256 a = base ? _mm256_loadu_ps(base + j) : _mm256_setzero_ps();
            for (int32_t k = k0; k < k1; k++) {
                a = _mm256_fmadd_ps(_mm256_broadcast_ss(value + k),
                                    _mm256_loadu_ps(b + (int64_t)index[k] * ldb + j), a);
            }
            _mm256_storeu_ps(cr + j, a);
        }
        for (; j < n; j++) {
            float a = base ? base[j] : 0.0f;
            for (int32_t k = k0; k < k1; k++) a = __builtin_fmaf(value[k], b[(int64_t)index[k] * ldb + j], a);
            cr[j] = a;
        }
    }
}
#endif

static void sparse_times_dense(int64_t rows, int64_t n, const int32_t *start, const int32_t *index,
                               const float *value, const float *b, int64_t ldb, const float *base,
                               float *c, int64_t ldc, int portable) {
#if DLK_X86
    if (!portable && dlk_has_avx2()) {
        sparse_times_dense_avx2(rows, n, start, index, value, b, ldb, base, c, ldc);
        return;
    }
#endif
    (void)portable;
    sparse_times_dense_portable(rows, n, start, index, value, b, ldb, base, c, ldc);
}

// MARK: - One dense row times a matrix
//
// c = base + x b for one row x (k values) and b (k x n), 32 columns at a time: rows i,
// i + 1 and i + 2 go to three sets of accumulators, so that three chains of multiply-adds
// run side by side (each add waits 4 cycles for the previous one), summed at the end.

static void row_times_dense_portable(const float *x, int64_t k, int64_t n, const float *b, int64_t ldb,
                                     const float *base, float *c) {
    for (int64_t j = 0; j < n; j++) {
        float s[3] = {base ? base[j] : 0.0f, 0.0f, 0.0f};
        int64_t i = 0;
        for (; i + 3 <= k; i += 3)
            for (int q = 0; q < 3; q++) s[q] = __builtin_fmaf(x[i + q], b[(i + q) * ldb + j], s[q]);
        for (; i < k; i++) s[0] = __builtin_fmaf(x[i], b[i * ldb + j], s[0]);
        c[j] = (s[0] + s[1]) + s[2];
    }
}

#if DLK_X86
__attribute__((target("avx2,fma")))
static inline __m256 sum3(__m256 a, __m256 b, __m256 c) { return _mm256_add_ps(_mm256_add_ps(a, b), c); }

__attribute__((target("avx2,fma")))
static void row_times_dense_avx2(const float *x, int64_t k, int64_t n, const float *b, int64_t ldb,
                                 const float *base, float *c) {
    int64_t j = 0;
    for (; j + 32 <= n; j += 32) {
        __m256 a0, a1, a2, a3;
        if (base) {
            a0 = _mm256_loadu_ps(base + j);      a1 = _mm256_loadu_ps(base + j + 8);
            a2 = _mm256_loadu_ps(base + j + 16); a3 = _mm256_loadu_ps(base + j + 24);
        } else {
            a0 = a1 = a2 = a3 = _mm256_setzero_ps();
        }
        __m256 b0 = _mm256_setzero_ps(), b1 = b0, b2 = b0, b3 = b0, c0 = b0, c1 = b0, c2 = b0, c3 = b0;
        int64_t i = 0;
        for (; i + 3 <= k; i += 3) {
            const float *r = b + i * ldb + j;
            __m256 s = _mm256_broadcast_ss(x + i);
            a0 = _mm256_fmadd_ps(s, _mm256_loadu_ps(r), a0);      a1 = _mm256_fmadd_ps(s, _mm256_loadu_ps(r + 8), a1);
            a2 = _mm256_fmadd_ps(s, _mm256_loadu_ps(r + 16), a2); a3 = _mm256_fmadd_ps(s, _mm256_loadu_ps(r + 24), a3);
            r += ldb;
            s = _mm256_broadcast_ss(x + i + 1);
            b0 = _mm256_fmadd_ps(s, _mm256_loadu_ps(r), b0);      b1 = _mm256_fmadd_ps(s, _mm256_loadu_ps(r + 8), b1);
            b2 = _mm256_fmadd_ps(s, _mm256_loadu_ps(r + 16), b2); b3 = _mm256_fmadd_ps(s, _mm256_loadu_ps(r + 24), b3);
            r += ldb;
            s = _mm256_broadcast_ss(x + i + 2);
            c0 = _mm256_fmadd_ps(s, _mm256_loadu_ps(r), c0);      c1 = _mm256_fmadd_ps(s, _mm256_loadu_ps(r + 8), c1);
            c2 = _mm256_fmadd_ps(s, _mm256_loadu_ps(r + 16), c2); c3 = _mm256_fmadd_ps(s, _mm256_loadu_ps(r + 24), c3);
        }
        for (; i < k; i++) {
            const float *r = b + i * ldb + j;
            const __m256 s = _mm256_broadcast_ss(x + i);
            a0 = _mm256_fmadd_ps(s, _mm256_loadu_ps(r), a0);      a1 = _mm256_fmadd_ps(s, _mm256_loadu_ps(r + 8), a1);
            a2 = _mm256_fmadd_ps(s, _mm256_loadu_ps(r + 16), a2); a3 = _mm256_fmadd_ps(s, _mm256_loadu_ps(r + 24), a3);
        }
        _mm256_storeu_ps(c + j, sum3(a0, b0, c0));      _mm256_storeu_ps(c + j + 8, sum3(a1, b1, c1));
        _mm256_storeu_ps(c + j + 16, sum3(a2, b2, c2)); _mm256_storeu_ps(c + j + 24, sum3(a3, b3, c3));
    }
    if (j < n) row_times_dense_portable(x, k, n - j, b + j, ldb, base ? base + j : NULL, c + j);
}
#endif

static void row_times_dense(const float *x, int64_t k, int64_t n, const float *b, int64_t ldb,
                            const float *base, float *c, int portable) {
#if DLK_X86
    if (!portable && dlk_has_avx2()) {
        row_times_dense_avx2(x, k, n, b, ldb, base, c);
        return;
    }
#endif
    (void)portable;
    row_times_dense_portable(x, k, n, b, ldb, base, c);
}

// MARK: - Column sums
//
// c += alpha * (the sums of a's columns), for a (rows x cols): the sparse layer's base term
// v * rowsum(W) from W^T. OpenBLAS's gemv would do it, but spreads a product this size over
// all its threads, and waking them on every training step cost more than the product
// (a step of MNIST's MLP took 450 us instead of 250 with OpenBLAS on 2 threads).

static void column_sums_portable(const float *a, int64_t rows, int64_t cols, int64_t lda, float alpha, float *c,
                                 float *scratch) {
    memset(scratch, 0, (size_t)cols * sizeof *scratch);
    for (int64_t i = 0; i < rows; i++)
        for (int64_t j = 0; j < cols; j++) scratch[j] += a[i * lda + j];
    for (int64_t j = 0; j < cols; j++) c[j] += alpha * scratch[j];
}

#if DLK_X86
// Eight columns at a time, the rows summed in order into one accumulator per column, as the
// portable version does (the same bits).
__attribute__((target("avx2")))
static void column_sums_avx2(const float *a, int64_t rows, int64_t cols, int64_t lda, float alpha, float *c,
                             float *scratch) {
    int64_t j = 0;
    for (; j + 32 <= cols; j += 32) {
        __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps(), s2 = _mm256_setzero_ps(), s3 = _mm256_setzero_ps();
        for (int64_t i = 0; i < rows; i++) {
            const float *r = a + i * lda + j;
            s0 = _mm256_add_ps(s0, _mm256_loadu_ps(r));
            s1 = _mm256_add_ps(s1, _mm256_loadu_ps(r + 8));
            s2 = _mm256_add_ps(s2, _mm256_loadu_ps(r + 16));
            s3 = _mm256_add_ps(s3, _mm256_loadu_ps(r + 24));
        }
        _mm256_storeu_ps(scratch + j, s0);      _mm256_storeu_ps(scratch + j + 8, s1);
        _mm256_storeu_ps(scratch + j + 16, s2); _mm256_storeu_ps(scratch + j + 24, s3);
    }
    for (; j + 8 <= cols; j += 8) {
        __m256 s0 = _mm256_setzero_ps();
        for (int64_t i = 0; i < rows; i++) s0 = _mm256_add_ps(s0, _mm256_loadu_ps(a + i * lda + j));
        _mm256_storeu_ps(scratch + j, s0);
    }
    for (; j < cols; j++) {
        float s0 = 0;
        for (int64_t i = 0; i < rows; i++) s0 += a[i * lda + j];
        scratch[j] = s0;
    }
    for (j = 0; j < cols; j++) c[j] += alpha * scratch[j];
}
#endif

static void add_column_sums(const float *a, int64_t rows, int64_t cols, int64_t lda, float alpha, float *c,
                            float *scratch, int portable) {
#if DLK_X86
    if (!portable && dlk_has_avx2()) {
        column_sums_avx2(a, rows, cols, lda, alpha, c, scratch);
        return;
    }
#endif
    (void)portable;
    column_sums_portable(a, rows, cols, lda, alpha, c, scratch);
}

// MARK: - Transpose
//
// Columns j_begin ..< j_end of a (rows j_begin ..< j_end of t); j_begin is a multiple of 8.

// Blocks of 8 x 8 keep both the rows read and the rows written within a few cache lines.
static void transpose_portable(const float *a, int64_t rows, int64_t cols, float v, float *t,
                               int64_t j_begin, int64_t j_end) {
    for (int64_t i0 = 0; i0 < rows; i0 += 8) {
        const int64_t i1 = i0 + 8 < rows ? i0 + 8 : rows;
        for (int64_t j0 = j_begin; j0 < j_end; j0 += 8) {
            const int64_t j1 = j0 + 8 < j_end ? j0 + 8 : j_end;
            for (int64_t i = i0; i < i1; i++)
                for (int64_t j = j0; j < j1; j++) t[j * rows + i] = a[i * cols + j] - v;
        }
    }
}

#if DLK_X86
// t[j0..j0+8, i0..i0+8] = a[i0..i0+8, j0..j0+8]^T: eight loads, three rounds of shuffles
// (pairs of rows, pairs of pairs, 128-bit halves), eight stores.
__attribute__((target("avx2")))
static inline void transpose_8x8_avx2(const float *a, int64_t lda, __m256 v, float *t, int64_t ldt) {
    __m256 r0 = _mm256_sub_ps(_mm256_loadu_ps(a), v),           r1 = _mm256_sub_ps(_mm256_loadu_ps(a + lda), v);
    __m256 r2 = _mm256_sub_ps(_mm256_loadu_ps(a + 2 * lda), v), r3 = _mm256_sub_ps(_mm256_loadu_ps(a + 3 * lda), v);
    __m256 r4 = _mm256_sub_ps(_mm256_loadu_ps(a + 4 * lda), v), r5 = _mm256_sub_ps(_mm256_loadu_ps(a + 5 * lda), v);
    __m256 r6 = _mm256_sub_ps(_mm256_loadu_ps(a + 6 * lda), v), r7 = _mm256_sub_ps(_mm256_loadu_ps(a + 7 * lda), v);
    __m256 t0 = _mm256_unpacklo_ps(r0, r1), t1 = _mm256_unpackhi_ps(r0, r1);
    __m256 t2 = _mm256_unpacklo_ps(r2, r3), t3 = _mm256_unpackhi_ps(r2, r3);
    __m256 t4 = _mm256_unpacklo_ps(r4, r5), t5 = _mm256_unpackhi_ps(r4, r5);
    __m256 t6 = _mm256_unpacklo_ps(r6, r7), t7 = _mm256_unpackhi_ps(r6, r7);
    __m256 s0 = _mm256_shuffle_ps(t0, t2, _MM_SHUFFLE(1, 0, 1, 0));
    __m256 s1 = _mm256_shuffle_ps(t0, t2, _MM_SHUFFLE(3, 2, 3, 2));
    __m256 s2 = _mm256_shuffle_ps(t1, t3, _MM_SHUFFLE(1, 0, 1, 0));
    __m256 s3 = _mm256_shuffle_ps(t1, t3, _MM_SHUFFLE(3, 2, 3, 2));
    __m256 s4 = _mm256_shuffle_ps(t4, t6, _MM_SHUFFLE(1, 0, 1, 0));
    __m256 s5 = _mm256_shuffle_ps(t4, t6, _MM_SHUFFLE(3, 2, 3, 2));
    __m256 s6 = _mm256_shuffle_ps(t5, t7, _MM_SHUFFLE(1, 0, 1, 0));
    __m256 s7 = _mm256_shuffle_ps(t5, t7, _MM_SHUFFLE(3, 2, 3, 2));
    _mm256_storeu_ps(t,           _mm256_permute2f128_ps(s0, s4, 0x20));
    _mm256_storeu_ps(t + ldt,     _mm256_permute2f128_ps(s1, s5, 0x20));
    _mm256_storeu_ps(t + 2 * ldt, _mm256_permute2f128_ps(s2, s6, 0x20));
    _mm256_storeu_ps(t + 3 * ldt, _mm256_permute2f128_ps(s3, s7, 0x20));
    _mm256_storeu_ps(t + 4 * ldt, _mm256_permute2f128_ps(s0, s4, 0x31));
    _mm256_storeu_ps(t + 5 * ldt, _mm256_permute2f128_ps(s1, s5, 0x31));
    _mm256_storeu_ps(t + 6 * ldt, _mm256_permute2f128_ps(s2, s6, 0x31));
    _mm256_storeu_ps(t + 7 * ldt, _mm256_permute2f128_ps(s3, s7, 0x31));
}

// Eight rows of t at a time, written start to end (so each of its cache lines is filled
// once), from eight columns of a.
__attribute__((target("avx2")))
static void transpose_avx2(const float *a, int64_t rows, int64_t cols, float v, float *t, int64_t j_begin, int64_t j_end) {
    const int64_t rows8 = rows & ~(int64_t)7;
    const __m256 vv = _mm256_set1_ps(v);
    int64_t j0 = j_begin;
    for (; j0 + 8 <= j_end; j0 += 8) {
        for (int64_t i0 = 0; i0 < rows8; i0 += 8)
            transpose_8x8_avx2(a + i0 * cols + j0, cols, vv, t + j0 * rows + i0, rows);
        for (int64_t j = j0; j < j0 + 8; j++)
            for (int64_t i = rows8; i < rows; i++) t[j * rows + i] = a[i * cols + j] - v;
    }
    for (int64_t j = j0; j < j_end; j++)
        for (int64_t i = 0; i < rows; i++) t[j * rows + i] = a[i * cols + j] - v;
}
#endif

// MARK: - Weight gradient of a sparse input
//
// Row j of c is base plus, for every batch row r where input j differs from v, that
// difference d[j, r] times row r of b: row j of d = (x - v)^T is scanned 64 batch rows at
// a time into a bit mask of its nonzeros, and the set bits visited in increasing r. Row j
// of c is accumulated in registers and written once, and the rows of b it reads (the
// layer's output gradient) stay in L1 for a training batch. Both versions sum the rows in
// increasing r with fused multiply-adds, so they give the same bits.

static void gradient_rows_portable(const float *d, int64_t rows, int64_t j_begin, int64_t j_end,
                                   int64_t n, const float *b, int64_t ldb, const float *base, float *c, int64_t ldc) {
    for (int64_t j = j_begin; j < j_end; j++) {
        const float *dr = d + j * rows;
        float *cr = c + j * ldc;
        if (base) memcpy(cr, base, (size_t)n * sizeof *cr);
        else memset(cr, 0, (size_t)n * sizeof *cr);
        for (int64_t r = 0; r < rows; r++) {
            if (dr[r] == 0) continue;
            const float s = dr[r];
            const float *br = b + r * ldb;
            for (int64_t o = 0; o < n; o++) cr[o] = __builtin_fmaf(s, br[o], cr[o]);
        }
    }
}

#if DLK_X86
// Bit k of the result: dr[k] != 0, for the count (<= 64) entries of dr.
__attribute__((target("avx2")))
static inline uint64_t nonzero_mask(const float *dr, int64_t count) {
    const __m256 zero = _mm256_setzero_ps();
    uint64_t m = 0;
    int64_t k = 0;
    for (; k + 8 <= count; k += 8)
        m |= (uint64_t)(unsigned)_mm256_movemask_ps(_mm256_cmp_ps(_mm256_loadu_ps(dr + k), zero, _CMP_NEQ_UQ)) << k;
    for (; k < count; k++) m |= (uint64_t)(dr[k] != 0) << k;
    return m;
}

__attribute__((target("avx2,fma")))
static void gradient_rows_avx2(const float *d, int64_t rows, int64_t j_begin, int64_t j_end,
                               int64_t n, const float *b, int64_t ldb, const float *base, float *c, int64_t ldc) {
    for (int64_t j = j_begin; j < j_end; j++) {
        const float *dr = d + j * rows;
        float *cr = c + j * ldc;
        int64_t o = 0;
        for (; o + 64 <= n; o += 64) {
            ACC8_DECLARE(base, o);
            for (int64_t r0 = 0; r0 < rows; r0 += 64) {
                uint64_t m = nonzero_mask(dr + r0, rows - r0 < 64 ? rows - r0 : 64);
                while (m) {
                    const int64_t r = r0 + __builtin_ctzll(m);
                    m &= m - 1;
                    ACC8_FMA(_mm256_broadcast_ss(dr + r), b + r * ldb + o);
                }
            }
            ACC8_STORE(cr + o);
        }
        for (; o + 8 <= n; o += 8) {
            __m256 a = base ? _mm256_loadu_ps(base + o) : _mm256_setzero_ps();
            for (int64_t r0 = 0; r0 < rows; r0 += 64) {
                uint64_t m = nonzero_mask(dr + r0, rows - r0 < 64 ? rows - r0 : 64);
                while (m) {
                    const int64_t r = r0 + __builtin_ctzll(m);
                    m &= m - 1;
                    a = _mm256_fmadd_ps(_mm256_broadcast_ss(dr + r), _mm256_loadu_ps(b + r * ldb + o), a);
                }
            }
            _mm256_storeu_ps(cr + o, a);
        }
        for (; o < n; o++) {
            float a = base ? base[o] : 0.0f;
            for (int64_t r = 0; r < rows; r++)
                if (dr[r] != 0) a = __builtin_fmaf(dr[r], b[r * ldb + o], a);
            cr[o] = a;
        }
    }
}
#endif

static void gradient_range(const float *d, int64_t rows, int64_t j_begin, int64_t j_end, int64_t n,
                           const float *b, const float *base, float *c, int portable) {
#if DLK_X86
    if (!portable && dlk_has_avx2()) {
        gradient_rows_avx2(d, rows, j_begin, j_end, n, b, n, base, c, n);
        return;
    }
#endif
    (void)portable;
    gradient_rows_portable(d, rows, j_begin, j_end, n, b, n, base, c, n);
}

static void transpose_range(const float *a, int64_t rows, int64_t cols, float v, float *t,
                            int64_t j_begin, int64_t j_end, int portable) {
#if DLK_X86
    if (!portable && dlk_has_avx2()) {
        transpose_avx2(a, rows, cols, v, t, j_begin, j_end);
        return;
    }
#endif
    (void)portable;
    transpose_portable(a, rows, cols, v, t, j_begin, j_end);
}

// MARK: - The sparse layer, in two halves of its inputs
//
// Everything that touches W^T is split at the same input, `dlk_sparse_split`: the forward
// (compression, base term, product) and the weight gradient, half each, and the optimizer
// updates W^T's rows in the same two parts (dlk_update_f32). With two threads, each half
// always runs on the same one (the caller takes half 0, the pool's worker half 1), so each
// core keeps its half of W^T in its own L2: splitting by batch rows instead made both cores
// read all of W^T, fresh from the other core's cache after every update, and gained 9%;
// this split measured 256 -> 147 us for the first layer's work of an MNIST step. The
// forward's two partial products are added in a fixed order, so the results do not depend
// on the number of threads.

int64_t dlk_sparse_split(int64_t cols) {
    const int64_t mid = ((cols + 1) / 2 + 7) & ~(int64_t)7;   // a multiple of 8, for the vectors
    return mid < cols ? mid : cols;
}

struct forward_job {
    const float *x;
    int64_t rows, cols, mid;
    float v;
    int64_t max_nonzeros;
    const float *wt;
    int64_t n;
    const float *bias;
    dlk_sparse_half *halves;
    float *y;
    int portable;
};

static void forward_half(void *context, int64_t begin, int64_t end, int thread) {
    (void)thread;
    const struct forward_job *f = context;
    for (int64_t h = begin; h < end; h++) {
        dlk_sparse_half *half = f->halves + h;
        const int64_t c0 = h ? f->mid : 0, c1 = h ? f->cols : f->mid;
        half->nonzeros = compress_rows(f->x + c0, f->rows, c1 - c0, f->cols, f->v, f->max_nonzeros,
                                       half->start, half->index, half->value, f->portable);
        if (half->nonzeros < 0) continue;
        if (h == 0 && f->bias) memcpy(half->base, f->bias, (size_t)f->n * sizeof *half->base);
        else memset(half->base, 0, (size_t)f->n * sizeof *half->base);
        if (f->v != 0) add_column_sums(f->wt + c0 * f->n, c1 - c0, f->n, f->n, f->v, half->base, half->scratch, f->portable);
        sparse_times_dense(f->rows, f->n, half->start, half->index, half->value, f->wt + c0 * f->n, f->n,
                           half->base, h ? half->partial : f->y, f->n, f->portable);
    }
}

int64_t dlk_sparse_forward(const float *x, int64_t rows, int64_t cols, float v, int64_t max_nonzeros,
                           const float *wt, int64_t n, const float *bias, dlk_sparse_half halves[2],
                           float *y, int portable) {
    struct forward_job job = {x, rows, cols, dlk_sparse_split(cols), v, max_nonzeros, wt, n, bias, halves, y, portable};
    dlk_parallel_for(2, 1, forward_half, &job);
    if (halves[0].nonzeros < 0 || halves[1].nonzeros < 0) return -1;
    const int64_t total = halves[0].nonzeros + halves[1].nonzeros;
    if (total > max_nonzeros) return -1;
    const float *partial = halves[1].partial;
    for (int64_t i = 0; i < rows * n; i++) y[i] += partial[i];
    return total;
}

// One sample (any density): the same two halves, each a dense row times its rows of W^T
// (the first also adding the bias), then y = first + second. On one thread this matches
// OpenBLAS's gemv (6.4 against 6.0 us for 784 x 128); it never wakes OpenBLAS's threads,
// which its gemv does for a product this size, and two threads each read half of W^T.
struct row_job {
    const float *x;
    int64_t cols, mid;
    const float *wt;
    int64_t n;
    const float *bias;
    float *y, *partial;
    int portable;
};

static void row_half(void *context, int64_t begin, int64_t end, int thread) {
    (void)thread;
    const struct row_job *r = context;
    for (int64_t h = begin; h < end; h++) {
        const int64_t c0 = h ? r->mid : 0, c1 = h ? r->cols : r->mid;
        row_times_dense(r->x + c0, c1 - c0, r->n, r->wt + c0 * r->n, r->n, h ? NULL : r->bias,
                        h ? r->partial : r->y, r->portable);
    }
}

void dlk_sparse_forward_one(const float *x, int64_t cols, const float *wt, int64_t n, const float *bias,
                            float *partial, float *y, int portable) {
    struct row_job job = {x, cols, dlk_sparse_split(cols), wt, n, bias, y, partial, portable};
    dlk_parallel_for(2, 1, row_half, &job);
    for (int64_t j = 0; j < n; j++) y[j] += partial[j];
}

struct backward_job {
    const float *x;
    int64_t rows, cols, mid;
    float v;
    const float *dy;
    int64_t n;
    const float *base;
    float *d, *dwt;
    int portable;
};

static void backward_half(void *context, int64_t begin, int64_t end, int thread) {
    (void)thread;
    const struct backward_job *b = context;
    for (int64_t h = begin; h < end; h++) {
        const int64_t c0 = h ? b->mid : 0, c1 = h ? b->cols : b->mid;
        transpose_range(b->x, b->rows, b->cols, b->v, b->d, c0, c1, b->portable);
        gradient_range(b->d, b->rows, c0, c1, b->n, b->dy, b->base, b->dwt, b->portable);
    }
}

void dlk_sparse_backward(const float *x, int64_t rows, int64_t cols, float v, const float *dy, int64_t n,
                         const float *base, float *d, float *dwt, int portable) {
    struct backward_job job = {x, rows, cols, dlk_sparse_split(cols), v, dy, n, base, d, dwt, portable};
    dlk_parallel_for(2, 1, backward_half, &job);
}

// MARK: - Input checks and conversion
//
// A value is finite when its exponent bits are not all ones. Testing the bits, OR-ed over
// the array with no early exit, vectorises in plain C (a floating-point comparison chain
// did not, in Swift: one scalar compare per element).

static int all_finite_f32_portable(const float *x, int64_t n) {
    const uint32_t *bits = (const uint32_t *)(const void *)x;
    uint32_t bad = 0;
    for (int64_t i = 0; i < n; i++) bad |= (uint32_t)((bits[i] & 0x7f800000u) == 0x7f800000u);
    return bad == 0;
}

static int all_finite_f64_portable(const double *x, int64_t n) {
    const uint64_t *bits = (const uint64_t *)(const void *)x;
    uint64_t bad = 0;
    for (int64_t i = 0; i < n; i++)
        bad |= (uint64_t)((bits[i] & 0x7ff0000000000000ull) == 0x7ff0000000000000ull);
    return bad == 0;
}

static void affine_f32_portable(const float *src, float *dst, int64_t n, float a, float b) {
    for (int64_t i = 0; i < n; i++) dst[i] = src[i] * a + b;
}

#if DLK_X86
// The same loops, compiled for AVX2 (8 floats per instruction instead of SSE's 4).
__attribute__((target("avx2")))
static int all_finite_f32_avx2(const float *x, int64_t n) { return all_finite_f32_portable(x, n); }
__attribute__((target("avx2")))
static int all_finite_f64_avx2(const double *x, int64_t n) { return all_finite_f64_portable(x, n); }
// No FMA here: x * a + b rounds twice, as the dense path and NumPy do.
__attribute__((target("avx2")))
static void affine_f32_avx2(const float *src, float *dst, int64_t n, float a, float b) {
    affine_f32_portable(src, dst, n, a, b);
}
#endif

int dlk_all_finite_f32(const float *x, int64_t n) {
#if DLK_X86
    if (dlk_has_avx2()) return all_finite_f32_avx2(x, n);
#endif
    return all_finite_f32_portable(x, n);
}

int dlk_all_finite_f64(const double *x, int64_t n) {
#if DLK_X86
    if (dlk_has_avx2()) return all_finite_f64_avx2(x, n);
#endif
    return all_finite_f64_portable(x, n);
}

void dlk_affine_f32(const float *src, float *dst, int64_t n, float a, float b) {
#if DLK_X86
    if (dlk_has_avx2()) {
        affine_f32_avx2(src, dst, n, a, b);
        return;
    }
#endif
    affine_f32_portable(src, dst, n, a, b);
}

// MARK: - Gathering a shuffled batch

// Each row is a miss to memory (the rows of a shuffled batch lie anywhere in the data
// set). The work is split by columns in the sparse layer's two halves (dlk_sparse_split),
// so that with two threads each core gathers the half of the batch its half of that layer
// reads next; each part then asks for its columns of the next batch's rows, which arrive
// while the step trains.
struct gather_job {
    const float *x;
    int64_t cols, mid;
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
    for (int64_t part = begin; part < end; part++) {
        const int64_t c0 = part ? g->mid : 0, c1 = part ? g->cols : g->mid;
        for (int64_t i = 0; i < g->count; i++) {
            const float *src = g->x + (int64_t)g->rows[i] * g->cols + c0;
            float *dst = g->dst + i * g->cols + c0;
            if (g->affine) dlk_affine_f32(src, dst, c1 - c0, g->a, g->b);
            else memcpy(dst, src, (size_t)(c1 - c0) * sizeof *dst);
        }
        for (int64_t i = 0; i < g->next_count; i++) {
            const float *p = g->x + (int64_t)g->next[i] * g->cols;
            for (int64_t c = c0; c < c1; c += 16) __builtin_prefetch(p + c, 0, 1);
        }
    }
}

void dlk_gather_rows_f32(const float *x, int64_t cols, const int32_t *rows, int64_t count,
                         float a, float b, int affine, float *dst, const int32_t *next, int64_t next_count) {
    struct gather_job job = {x, cols, dlk_sparse_split(cols), rows, count, a, b, affine, dst, next,
                             next ? next_count : 0};
    dlk_parallel_for(2, 1, gather_part, &job);
}

void dlk_gather_rows_serial_f32(const float *x, int64_t cols, const int32_t *rows, int64_t count,
                                float a, float b, int affine, float *dst) {
    struct gather_job job = {x, cols, dlk_sparse_split(cols), rows, count, a, b, affine, dst, NULL, 0};
    gather_part(&job, 0, 2, 0);
}
