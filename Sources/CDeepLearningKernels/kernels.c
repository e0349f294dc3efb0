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

static int64_t compress_rows_portable(const float *x, int64_t rows, int64_t cols, float v,
                                      int64_t max_nonzeros,
                                      int32_t *start, int32_t *index, float *value) {
    int64_t nnz = 0;
    start[0] = 0;
    for (int64_t r = 0; r < rows; r++) {
        nnz = compress_scalar(x + r * cols, 0, cols, v, index, value, nnz);
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
static int64_t compress_rows_avx2(const float *x, int64_t rows, int64_t cols, float v,
                                  int64_t max_nonzeros,
                                  int32_t *start, int32_t *index, float *value) {
    pthread_once(&compress_table_once, fill_compress_table);
    const __m256 vv = _mm256_set1_ps(v);
    const __m256i lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    int64_t nnz = 0;
    start[0] = 0;
    for (int64_t r = 0; r < rows; r++) {
        const float *xr = x + r * cols;
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

int64_t dlk_compress_rows(const float *x, int64_t rows, int64_t cols, float v, int64_t max_nonzeros,
                          int32_t *start, int32_t *index, float *value, int portable) {
#if DLK_X86
    if (!portable && dlk_has_avx2())
        return compress_rows_avx2(x, rows, cols, v, max_nonzeros, start, index, value);
#endif
    (void)portable;
    return compress_rows_portable(x, rows, cols, v, max_nonzeros, start, index, value);
}

// MARK: - Column compression (a counting sort by column)

void dlk_compress_columns(int64_t rows, int64_t cols,
                          const int32_t *start, const int32_t *index, const float *value,
                          int32_t *col_start, int32_t *row, float *col_value) {
    memset(col_start, 0, (size_t)(cols + 1) * sizeof *col_start);
    const int32_t nnz = start[rows];
    for (int32_t k = 0; k < nnz; k++) col_start[index[k] + 1]++;
    for (int64_t c = 0; c < cols; c++) col_start[c + 1] += col_start[c];
    // col_start[c] is now where column c begins; use it as column c's cursor...
    for (int64_t r = 0; r < rows; r++) {
        for (int32_t k = start[r]; k < start[r + 1]; k++) {
            int32_t p = col_start[index[k]]++;
            row[p] = (int32_t)r;
            col_value[p] = value[k];
        }
    }
    // ...after which it is where column c + 1 begins: shift back by one.
    memmove(col_start + 1, col_start, (size_t)cols * sizeof *col_start);
    col_start[0] = 0;
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
            __m256 a0, a1, a2, a3, a4, a5, a6, a7;
            if (base) {
                a0 = _mm256_loadu_ps(base + j);      a1 = _mm256_loadu_ps(base + j + 8);
                a2 = _mm256_loadu_ps(base + j + 16); a3 = _mm256_loadu_ps(base + j + 24);
                a4 = _mm256_loadu_ps(base + j + 32); a5 = _mm256_loadu_ps(base + j + 40);
                a6 = _mm256_loadu_ps(base + j + 48); a7 = _mm256_loadu_ps(base + j + 56);
            } else {
                a0 = a1 = a2 = a3 = a4 = a5 = a6 = a7 = _mm256_setzero_ps();
            }
            for (int32_t k = k0; k < k1; k++) {
                const __m256 s = _mm256_broadcast_ss(value + k);
                const float *br = b + (int64_t)index[k] * ldb + j;
                a0 = _mm256_fmadd_ps(s, _mm256_loadu_ps(br), a0);
                a1 = _mm256_fmadd_ps(s, _mm256_loadu_ps(br + 8), a1);
                a2 = _mm256_fmadd_ps(s, _mm256_loadu_ps(br + 16), a2);
                a3 = _mm256_fmadd_ps(s, _mm256_loadu_ps(br + 24), a3);
                a4 = _mm256_fmadd_ps(s, _mm256_loadu_ps(br + 32), a4);
                a5 = _mm256_fmadd_ps(s, _mm256_loadu_ps(br + 40), a5);
                a6 = _mm256_fmadd_ps(s, _mm256_loadu_ps(br + 48), a6);
                a7 = _mm256_fmadd_ps(s, _mm256_loadu_ps(br + 56), a7);
            }
            _mm256_storeu_ps(cr + j, a0);      _mm256_storeu_ps(cr + j + 8, a1);
            _mm256_storeu_ps(cr + j + 16, a2); _mm256_storeu_ps(cr + j + 24, a3);
            _mm256_storeu_ps(cr + j + 32, a4); _mm256_storeu_ps(cr + j + 40, a5);
            _mm256_storeu_ps(cr + j + 48, a6); _mm256_storeu_ps(cr + j + 56, a7);
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

struct product_job {
    int64_t n;
    const int32_t *start, *index;
    const float *value, *b, *base;
    int64_t ldb, ldc;
    float *c;
    int portable;
};

static void product_rows(void *context, int64_t begin, int64_t end, int thread) {
    (void)thread;
    const struct product_job *j = context;
#if DLK_X86
    if (!j->portable && dlk_has_avx2()) {
        sparse_times_dense_avx2(end - begin, j->n, j->start + begin, j->index, j->value, j->b, j->ldb, j->base,
                                j->c + begin * j->ldc, j->ldc);
        return;
    }
#endif
    sparse_times_dense_portable(end - begin, j->n, j->start + begin, j->index, j->value, j->b, j->ldb, j->base,
                                j->c + begin * j->ldc, j->ldc);
}

// Work worth a second thread: about 50,000 multiply-adds per thread at least.
static int64_t rows_per_thread(int64_t rows, int64_t nonzeros, int64_t n) {
    const int64_t per_row = rows > 0 ? (nonzeros / rows + 1) * n : 1;
    const int64_t least = 50000 / (per_row > 0 ? per_row : 1);
    return least > 1 ? least : 1;
}

void dlk_sparse_times_dense(int64_t rows, int64_t n,
                            const int32_t *start, const int32_t *index, const float *value,
                            const float *b, int64_t ldb, const float *base,
                            float *c, int64_t ldc, int portable) {
    struct product_job job = {n, start, index, value, b, base, ldb, ldc, c, portable};
    dlk_parallel_for(rows, rows_per_thread(rows, start[rows], n), product_rows, &job);
}

// MARK: - Transpose
//
// Columns j_begin ..< j_end of a (rows j_begin ..< j_end of t); j_begin is a multiple of 8.

// Blocks of 8 x 8 keep both the rows read and the rows written within a few cache lines.
static void transpose_portable(const float *a, int64_t rows, int64_t cols, float *t,
                               int64_t j_begin, int64_t j_end) {
    for (int64_t i0 = 0; i0 < rows; i0 += 8) {
        const int64_t i1 = i0 + 8 < rows ? i0 + 8 : rows;
        for (int64_t j0 = j_begin; j0 < j_end; j0 += 8) {
            const int64_t j1 = j0 + 8 < j_end ? j0 + 8 : j_end;
            for (int64_t i = i0; i < i1; i++)
                for (int64_t j = j0; j < j1; j++) t[j * rows + i] = a[i * cols + j];
        }
    }
}

#if DLK_X86
// t[j0..j0+8, i0..i0+8] = a[i0..i0+8, j0..j0+8]^T: eight loads, three rounds of shuffles
// (pairs of rows, pairs of pairs, 128-bit halves), eight stores.
__attribute__((target("avx2")))
static inline void transpose_8x8_avx2(const float *a, int64_t lda, float *t, int64_t ldt) {
    __m256 r0 = _mm256_loadu_ps(a),           r1 = _mm256_loadu_ps(a + lda);
    __m256 r2 = _mm256_loadu_ps(a + 2 * lda), r3 = _mm256_loadu_ps(a + 3 * lda);
    __m256 r4 = _mm256_loadu_ps(a + 4 * lda), r5 = _mm256_loadu_ps(a + 5 * lda);
    __m256 r6 = _mm256_loadu_ps(a + 6 * lda), r7 = _mm256_loadu_ps(a + 7 * lda);
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
static void transpose_avx2(const float *a, int64_t rows, int64_t cols, float *t, int64_t j_begin, int64_t j_end) {
    const int64_t rows8 = rows & ~(int64_t)7;
    int64_t j0 = j_begin;
    for (; j0 + 8 <= j_end; j0 += 8) {
        for (int64_t i0 = 0; i0 < rows8; i0 += 8)
            transpose_8x8_avx2(a + i0 * cols + j0, cols, t + j0 * rows + i0, rows);
        for (int64_t j = j0; j < j0 + 8; j++)
            for (int64_t i = rows8; i < rows; i++) t[j * rows + i] = a[i * cols + j];
    }
    for (int64_t j = j0; j < j_end; j++)
        for (int64_t i = 0; i < rows; i++) t[j * rows + i] = a[i * cols + j];
}
#endif

// MARK: - Weight gradient of a sparse input

// c (n x cols) = b^T S + base 1^T, for S (rows x cols) compressed by columns and b
// (rows x n): column j of S times b gives row j of the transposed product (an n-vector,
// accumulated in registers); eight of those are collected in a small buffer and written
// transposed into columns j..j+8 of c, so the product never exists in the other layout.
// c[o, j0 + j] = scratch[j, o] for outputs o_begin ..< n and j < width: the transposed
// write of a block, one element at a time (what the 8x8 transposes leave over).
static void write_transposed(const float *scratch, int64_t n8, int64_t width, int64_t o_begin, int64_t n,
                             float *c, int64_t ldc, int64_t j0) {
    for (int64_t o = o_begin; o < n; o++)
        for (int64_t j = 0; j < width; j++) c[o * ldc + j0 + j] = scratch[j * n8 + o];
}

#if DLK_X86
__attribute__((target("avx2,fma")))
static void sparse_weight_gradient_avx2(int64_t j_begin, int64_t j_end, int64_t n,
                                        const int32_t *col_start, const int32_t *row, const float *value,
                                        const float *b, int64_t ldb, const float *base,
                                        float *c, int64_t ldc, float *scratch) {
    // scratch: 8 rows of n (padded to a multiple of 8) floats
    const int64_t n8 = (n + 7) & ~(int64_t)7;
    for (int64_t j0 = j_begin; j0 < j_end; j0 += 8) {
        const int64_t width = j_end - j0 < 8 ? j_end - j0 : 8;
        sparse_times_dense_avx2(width, n, col_start + j0, row, value, b, ldb, base, scratch, n8);
        int64_t o = 0;
        if (width == 8)
            for (; o + 8 <= n; o += 8) transpose_8x8_avx2(scratch + o, n8, c + o * ldc + j0, ldc);
        write_transposed(scratch, n8, width, o, n, c, ldc, j0);
    }
}
#endif

static void sparse_weight_gradient_portable(int64_t j_begin, int64_t j_end, int64_t n,
                                            const int32_t *col_start, const int32_t *row, const float *value,
                                            const float *b, int64_t ldb, const float *base,
                                            float *c, int64_t ldc, float *scratch) {
    const int64_t n8 = (n + 7) & ~(int64_t)7;
    for (int64_t j0 = j_begin; j0 < j_end; j0 += 8) {
        const int64_t width = j_end - j0 < 8 ? j_end - j0 : 8;
        sparse_times_dense_portable(width, n, col_start + j0, row, value, b, ldb, base, scratch, n8);
        write_transposed(scratch, n8, width, 0, n, c, ldc, j0);
    }
}

struct gradient_job {
    int64_t cols, n;
    const int32_t *col_start, *row;
    const float *value, *b, *base;
    int64_t ldb, ldc;
    float *c, *scratch;
    int portable;
};

// Items are blocks of 8 columns; each thread has its own part of the scratch space.
static void gradient_blocks(void *context, int64_t begin, int64_t end, int thread) {
    const struct gradient_job *g = context;
    const int64_t j_begin = begin * 8, j_end = end * 8 < g->cols ? end * 8 : g->cols;
    float *scratch = g->scratch + (int64_t)thread * 8 * ((g->n + 7) & ~(int64_t)7);
#if DLK_X86
    if (!g->portable && dlk_has_avx2()) {
        sparse_weight_gradient_avx2(j_begin, j_end, g->n, g->col_start, g->row, g->value, g->b, g->ldb,
                                    g->base, g->c, g->ldc, scratch);
        return;
    }
#endif
    sparse_weight_gradient_portable(j_begin, j_end, g->n, g->col_start, g->row, g->value, g->b, g->ldb,
                                    g->base, g->c, g->ldc, scratch);
}

void dlk_sparse_weight_gradient(int64_t cols, int64_t n,
                                const int32_t *col_start, const int32_t *row, const float *value,
                                const float *b, int64_t ldb, const float *base,
                                float *c, int64_t ldc, float *scratch, int portable) {
    struct gradient_job job = {cols, n, col_start, row, value, b, base, ldb, ldc, c, scratch, portable};
    const int64_t blocks = (cols + 7) / 8;
    dlk_parallel_for(blocks, rows_per_thread(blocks, col_start[cols], 8 * n), gradient_blocks, &job);
}

struct transpose_job {
    const float *a;
    int64_t rows, cols;
    float *t;
    int portable;
};

static void transpose_blocks(void *context, int64_t begin, int64_t end, int thread) {
    (void)thread;
    const struct transpose_job *j = context;
    const int64_t j_begin = begin * 8, j_end = end * 8 < j->cols ? end * 8 : j->cols;
#if DLK_X86
    if (!j->portable && dlk_has_avx2()) {
        transpose_avx2(j->a, j->rows, j->cols, j->t, j_begin, j_end);
        return;
    }
#endif
    transpose_portable(j->a, j->rows, j->cols, j->t, j_begin, j_end);
}

void dlk_transpose(const float *a, int64_t rows, int64_t cols, float *t, int portable) {
    struct transpose_job job = {a, rows, cols, t, portable};
    const int64_t blocks = (cols + 7) / 8;
    const int64_t per_block = rows * 8;
    dlk_parallel_for(blocks, 1 + 16384 / (per_block > 0 ? per_block : 1), transpose_blocks, &job);
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

struct gather_job {
    const float *x;
    int64_t cols;
    const int32_t *rows;
    float a, b;
    int affine;
    float *dst;
};

static void gather_rows(void *context, int64_t begin, int64_t end, int thread) {
    (void)thread;
    const struct gather_job *g = context;
    for (int64_t i = begin; i < end; i++) {
        const float *src = g->x + (int64_t)g->rows[i] * g->cols;
        if (g->affine) dlk_affine_f32(src, g->dst + i * g->cols, g->cols, g->a, g->b);
        else memcpy(g->dst + i * g->cols, src, (size_t)g->cols * sizeof *g->dst);
    }
}

// Each row is a miss to memory (the rows of a shuffled batch lie anywhere in the data
// set): a second thread overlaps twice as many.
void dlk_gather_rows_f32(const float *x, int64_t cols, const int32_t *rows, int64_t count,
                         float a, float b, int affine, float *dst) {
    struct gather_job job = {x, cols, rows, a, b, affine, dst};
    dlk_parallel_for(count, 1 + 16384 / (cols > 0 ? cols : 1), gather_rows, &job);
}

void dlk_prefetch_rows(const float *x, int64_t cols, const int32_t *rows, int64_t count) {
    for (int64_t i = 0; i < count; i++) {
        const float *p = x + (int64_t)rows[i] * cols;
        for (int64_t j = 0; j < cols; j += 16) __builtin_prefetch(p + j, 0, 1);
    }
}
