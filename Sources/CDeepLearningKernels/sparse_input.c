// The sparse-input path of a linear layer (see dl_kernels.h). Each kernel has a plain C
// version and, on x86-64, an AVX2/FMA version compiled with a target attribute and chosen
// at run time, so the library itself stays built for baseline x86-64.
//
// Threads: W^T is cut at fixed inputs into DLK_SPARSE_CHUNKS chunks, the same cut whatever
// the number of threads. The forward computes one partial product per chunk (each from
// zero, the first with the bias) and adds them in chunk order, so every output is the same
// sum on any number of threads. The cut matches how the weight gradient and the optimizer
// split W^T's rows over threads (contiguous ranges, dlk_parallel_for), so on two cores
// each core reads, in the forward, the half of W^T it wrote in the last update and it stays
// in that core's L2. More threads split each chunk's batch rows.
#include "dl_kernels.h"
#include "x86.h"

#include <pthread.h>
#include <string.h>

// MARK: - Row compression

// Appends the entries of row xr, columns c ..< cols, that differ from v; returns the new count.
// With `affine` ({a, b}), the entries are xr[c] * a + b (rounded twice, as dlk_affine_f32).
static inline int64_t compress_scalar(const float *xr, int64_t c, int64_t cols, float v, const float *affine,
                                      int32_t *index, float *value, int64_t nnz) {
    for (; c < cols; c++) {
        // The expression of affine_f32_plain (input.c), compiled for the same targets.
        const float e = affine ? xr[c] * affine[0] + affine[1] : xr[c];
        if (e != v) {
            index[nnz] = (int32_t)c;
            value[nnz] = e - v;
            nnz++;
        }
    }
    return nnz;
}

// Columns c0 ..< c1 of rows r0 ..< r1 of x (rows ld apart) into index/value (a segment
// that starts at entry `offset` of the whole workspace): row r's entries at
// [row_begin[r], row_end[r]), their columns counted from x's first. Returns the segment's
// count, or -1 as soon as it exceeds max_nonzeros.
static int64_t compress_rows_plain(const float *x, int64_t r0, int64_t r1, int64_t c0, int64_t c1, int64_t ld,
                                   float v, const float *affine, int64_t max_nonzeros, int64_t offset, int32_t *index,
                                   float *value, int64_t *row_begin, int64_t *row_end) {
    int64_t nnz = 0;
    for (int64_t r = r0; r < r1; r++) {
        row_begin[r] = offset + nnz;
        nnz = compress_scalar(x + r * ld, c0, c1, v, affine, index, value, nnz);
        if (nnz > max_nonzeros) return -1;
        row_end[r] = offset + nnz;
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
static int64_t compress_rows_avx2(const float *x, int64_t r0, int64_t r1, int64_t c0, int64_t c1, int64_t ld,
                                  float v, const float *affine, int64_t max_nonzeros, int64_t offset, int32_t *index,
                                  float *value, int64_t *row_begin, int64_t *row_end) {
    pthread_once(&compress_table_once, fill_compress_table);
    const __m256 vv = _mm256_set1_ps(v);
    const __m256 va = _mm256_set1_ps(affine ? affine[0] : 1.0f), vb = _mm256_set1_ps(affine ? affine[1] : 0.0f);
    const __m256i lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    int64_t nnz = 0;
    for (int64_t r = r0; r < r1; r++) {
        const float *xr = x + r * ld;
        row_begin[r] = offset + nnz;
        int64_t c = c0;
        for (; c + 8 <= c1; c += 8) {
            __m256 d = _mm256_loadu_ps(xr + c);
            if (affine) d = _mm256_add_ps(_mm256_mul_ps(d, va), vb);   // no FMA: this target has none
            const unsigned mask = (unsigned)_mm256_movemask_ps(_mm256_cmp_ps(d, vv, _CMP_NEQ_UQ));
            if (mask == 0) continue;
            const __m256i perm = _mm256_cvtepu8_epi32(_mm_cvtsi64_si128((long long)compress_table[mask]));
            _mm256_storeu_ps(value + nnz, _mm256_permutevar8x32_ps(_mm256_sub_ps(d, vv), perm));
            const __m256i columns = _mm256_add_epi32(lanes, _mm256_set1_epi32((int)c));
            _mm256_storeu_si256((__m256i *)(index + nnz), _mm256_permutevar8x32_epi32(columns, perm));
            nnz += __builtin_popcount(mask);
        }
        nnz = compress_scalar(xr, c, c1, v, affine, index, value, nnz);
        if (nnz > max_nonzeros) return -1;
        row_end[r] = offset + nnz;
    }
    return nnz;
}
#endif

static int64_t compress_rows(const float *x, int64_t r0, int64_t r1, int64_t c0, int64_t c1, int64_t ld, float v,
                             const float *affine, int64_t max_nonzeros, int64_t offset, int32_t *index, float *value,
                             int64_t *row_begin, int64_t *row_end, int plain_c) {
#if DLK_X86
    if (!plain_c && dlk_has_avx2())
        return compress_rows_avx2(x, r0, r1, c0, c1, ld, v, affine, max_nonzeros, offset, index, value, row_begin,
                                  row_end);
#endif
    (void)plain_c;
    return compress_rows_plain(x, r0, r1, c0, c1, ld, v, affine, max_nonzeros, offset, index, value, row_begin,
                               row_end);
}

// MARK: - Density estimate

// Entries of n floats at x that differ from v, and (unless not_zero is NULL) those that
// differ from 0.
static void count_differing_plain(const float *x, int64_t n, float v, int64_t *not_v, int64_t *not_zero) {
    int64_t a = 0, b = 0;
    for (int64_t i = 0; i < n; i++) {
        a += x[i] != v;
        b += x[i] != 0.0f;
    }
    *not_v += a;
    if (not_zero) *not_zero += b;
}

#if DLK_X86
// Each comparison's all-ones lanes (-1) are subtracted from 8 counters, summed at the end:
// two vector operations per 8 entries and comparison instead of a mask, a popcount and an
// add (a row of 784 took 1.2k instructions that way). A row is one sample, at most
// Limits.maxTensorElements (2^31 - 1) entries, so no lane counts past 2^28.
__attribute__((target("avx2")))
static void count_differing_avx2(const float *x, int64_t n, float v, int64_t *not_v, int64_t *not_zero) {
    const __m256 vv = _mm256_set1_ps(v), zero = _mm256_setzero_ps();
    __m256i a = _mm256_setzero_si256(), b = _mm256_setzero_si256(), c = a, d = a;
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {   // two vectors a pass: half the loop's own instructions
        const __m256 xi = _mm256_loadu_ps(x + i), xj = _mm256_loadu_ps(x + i + 8);
        a = _mm256_sub_epi32(a, _mm256_castps_si256(_mm256_cmp_ps(xi, vv, _CMP_NEQ_UQ)));
        b = _mm256_sub_epi32(b, _mm256_castps_si256(_mm256_cmp_ps(xi, zero, _CMP_NEQ_UQ)));
        c = _mm256_sub_epi32(c, _mm256_castps_si256(_mm256_cmp_ps(xj, vv, _CMP_NEQ_UQ)));
        d = _mm256_sub_epi32(d, _mm256_castps_si256(_mm256_cmp_ps(xj, zero, _CMP_NEQ_UQ)));
    }
    a = _mm256_add_epi32(a, c);
    b = _mm256_add_epi32(b, d);
    for (; i + 8 <= n; i += 8) {
        const __m256 xi = _mm256_loadu_ps(x + i);
        a = _mm256_sub_epi32(a, _mm256_castps_si256(_mm256_cmp_ps(xi, vv, _CMP_NEQ_UQ)));
        b = _mm256_sub_epi32(b, _mm256_castps_si256(_mm256_cmp_ps(xi, zero, _CMP_NEQ_UQ)));
    }
    int32_t la[8], lb[8];
    _mm256_storeu_si256((__m256i *)la, a);
    _mm256_storeu_si256((__m256i *)lb, b);
    for (int q = 0; q < 8; q++) {
        *not_v += la[q];
        if (not_zero) *not_zero += lb[q];
    }
    count_differing_plain(x + i, n - i, v, not_v, not_zero);
}
#endif

// The background guess: among 16 picks, the value equal to the most of them (the first on
// ties), counting with float equality (0 and -0 are equal, NaN equals nothing).
static float likely_background_plain(const float p[16], int *matches) {
    int best = 0, best_count = 0;
    for (int a = 0; a < 16; a++) {
        int n = 0;
        for (int o = 0; o < 16; o++) n += p[o] == p[a];
        if (n > best_count) {
            best = a;
            best_count = n;
            if (2 * n > 16) break;   // a majority: nothing can tie it
        }
    }
    *matches = best_count;
    return p[best];
}

#if DLK_X86
// The same, each candidate compared with all 16 picks at once: a 16-bit mask and a popcount
// instead of 16 scalar comparisons (a sample without a background, whose picks all differ,
// took 1.1k instructions in Swift).
__attribute__((target("avx2,popcnt")))
static float likely_background_avx2(const float p[16], int *matches) {
    const __m256 lo = _mm256_loadu_ps(p), hi = _mm256_loadu_ps(p + 8);
    int best = 0, best_count = 0;
    for (int a = 0; a < 16; a++) {
        const __m256 c = _mm256_set1_ps(p[a]);
        const int mask = _mm256_movemask_ps(_mm256_cmp_ps(c, lo, _CMP_EQ_OQ)) |
                         _mm256_movemask_ps(_mm256_cmp_ps(c, hi, _CMP_EQ_OQ)) << 8;
        const int n = __builtin_popcount((unsigned)mask);
        if (n > best_count) {
            best = a;
            best_count = n;
            if (2 * n > 16) break;
        }
    }
    *matches = best_count;
    return p[best];
}
#endif

float dlk_likely_background(const float *x, int64_t count, int32_t *matches, int plain_c) {
    float picked[16], v;
    int n;
    for (int64_t a = 0; a < 16; a++) picked[a] = x[a * count / 16];
#if DLK_X86
    if (!plain_c && dlk_has_avx2()) v = likely_background_avx2(picked, &n);
    else
#endif
        v = likely_background_plain(picked, &n);
    (void)plain_c;
    if (matches) *matches = n;
    return v;
}

void dlk_sample_density(const float *x, int64_t rows, int64_t cols, float v, int64_t sample_rows,
                        int64_t *not_v, int64_t *not_zero, int plain_c) {
    *not_v = 0;
    if (not_zero) *not_zero = 0;
    if (sample_rows > rows) sample_rows = rows;
    for (int64_t s = 0; s < sample_rows; s++) {
        const float *row = x + (s * rows / sample_rows) * cols;
#if DLK_X86
        if (!plain_c && dlk_has_avx2()) {
            count_differing_avx2(row, cols, v, not_v, not_zero);
            continue;
        }
#endif
        count_differing_plain(row, cols, v, not_v, not_zero);
    }
    (void)plain_c;
}

// MARK: - Sparse times dense

// One row cr (n columns) = base + the compressed entries k0 ..< k1 (in the order they were
// compressed: column order) times the rows of b (ldb apart) they name.
static void sparse_times_dense_plain(int64_t n, int64_t k0, int64_t k1, const int32_t *index,
                                     const float *value, const float *b, int64_t ldb, const float *base,
                                     float *cr) {
    if (base) memcpy(cr, base, (size_t)n * sizeof *cr);
    else memset(cr, 0, (size_t)n * sizeof *cr);
    for (int64_t k = k0; k < k1; k++) {
        const float s = value[k];
        const float *br = b + (int64_t)index[k] * ldb;
        for (int64_t j = 0; j < n; j++) cr[j] += s * br[j];
    }
}

#if DLK_X86
// Eight 8-wide accumulators a0..a7 for 64 consecutive outputs: declared (from base + o, or
// zero when base is NULL), multiply-added (s times the 64 floats at p) and stored. Named
// variables rather than an array, which gcc at -O2 keeps in memory.
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
static void sparse_times_dense_avx2(int64_t n, int64_t k0, int64_t k1, const int32_t *index,
                                    const float *value, const float *b, int64_t ldb, const float *base,
                                    float *cr) {
    int64_t j = 0;
    for (; j + 64 <= n; j += 64) {
        ACC8_DECLARE(base, j);
        for (int64_t k = k0; k < k1; k++) {
            // The row of b eight nonzeros ahead, to L1: these rows come from L2 in an
            // order no hardware prefetcher predicts.
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
        for (int64_t k = k0; k < k1; k++) {
            a = _mm256_fmadd_ps(_mm256_broadcast_ss(value + k),
                                _mm256_loadu_ps(b + (int64_t)index[k] * ldb + j), a);
        }
        _mm256_storeu_ps(cr + j, a);
    }
    for (; j < n; j++) {
        float a = base ? base[j] : 0.0f;
        for (int64_t k = k0; k < k1; k++) a = __builtin_fmaf(value[k], b[(int64_t)index[k] * ldb + j], a);
        cr[j] = a;
    }
}

// The same sums 128 columns at a time with AVX-512: each nonzero's row of b is read once,
// as one run of 512 bytes, where the AVX2 version reads it in two passes (from L2 twice
// when the rows do not fit in L1). Same arithmetic per column: the same bits. Returns the
// columns done (a multiple of 128).
__attribute__((target("avx512f")))
static int64_t sparse_times_dense_avx512(int64_t n, int64_t k0, int64_t k1, const int32_t *index,
                                         const float *value, const float *b, int64_t ldb, const float *base,
                                         float *cr) {
    int64_t j = 0;
    for (; j + 128 <= n; j += 128) {
        __m512 a[8];
        for (int q = 0; q < 8; q++) a[q] = base ? _mm512_loadu_ps(base + j + 16 * q) : _mm512_setzero_ps();
        for (int64_t k = k0; k < k1; k++) {
            const float *ahead = b + (int64_t)index[k + 8 < k1 ? k + 8 : k1 - 1] * ldb + j;
            for (int q = 0; q < 8; q++) _mm_prefetch((const char *)(ahead + 16 * q), _MM_HINT_T0);
            const __m512 s = _mm512_set1_ps(value[k]);
            const float *r = b + (int64_t)index[k] * ldb + j;
            for (int q = 0; q < 8; q++) a[q] = _mm512_fmadd_ps(s, _mm512_loadu_ps(r + 16 * q), a[q]);
        }
        for (int q = 0; q < 8; q++) _mm512_storeu_ps(cr + j + 16 * q, a[q]);
    }
    return j;
}
#endif

static void sparse_times_dense(int64_t n, int64_t k0, int64_t k1, const int32_t *index, const float *value,
                               const float *b, int64_t ldb, const float *base, float *cr, int plain_c) {
#if DLK_X86
    if (!plain_c && dlk_has_avx512()) {
        const int64_t j = sparse_times_dense_avx512(n, k0, k1, index, value, b, ldb, base, cr);
        if (j < n) sparse_times_dense_avx2(n - j, k0, k1, index, value, b + j, ldb, base ? base + j : NULL, cr + j);
        return;
    }
    if (!plain_c && dlk_has_avx2()) {
        sparse_times_dense_avx2(n, k0, k1, index, value, b, ldb, base, cr);
        return;
    }
#endif
    (void)plain_c;
    sparse_times_dense_plain(n, k0, k1, index, value, b, ldb, base, cr);
}

// MARK: - One dense row times a matrix
//
// c = base + x b for one row x (k values) and b (k x n), 32 columns at a time: rows i,
// i + 1 and i + 2 go to three sets of accumulators, so that three chains of multiply-adds
// run side by side (each add waits 4 cycles for the previous one), summed at the end.

static void row_times_dense_plain(const float *x, int64_t k, int64_t n, const float *b, int64_t ldb,
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
    if (j < n) row_times_dense_plain(x, k, n - j, b + j, ldb, base ? base + j : NULL, c + j);
}
#endif

// The same sums 128 columns at a time, with AVX-512: each row of b is read once, front to
// back, as one run of 512 bytes (the AVX2 version reads it in four strided passes). 24
// accumulators: three chains of eight vectors. Same arithmetic per column as above, so the
// same bits.
#define DLK_ROW_STEP(acc, row)                                                                  \
    do {                                                                                        \
        const __m512 s_ = _mm512_set1_ps(x[row]);                                               \
        const float *r_ = b + (row) * ldb + j;                                                  \
        for (int q_ = 0; q_ < 8; q_++) acc[q_] = _mm512_fmadd_ps(s_, _mm512_loadu_ps(r_ + 16 * q_), acc[q_]); \
    } while (0)

__attribute__((target("avx512f")))
static int64_t row_times_dense_avx512(const float *x, int64_t k, int64_t n, const float *b, int64_t ldb,
                                      const float *base, float *c) {
    int64_t j = 0;
    for (; j + 128 <= n; j += 128) {
        __m512 a[8], bb[8], cc[8];
        for (int q = 0; q < 8; q++) {
            a[q] = base ? _mm512_loadu_ps(base + j + 16 * q) : _mm512_setzero_ps();
            bb[q] = _mm512_setzero_ps();
            cc[q] = _mm512_setzero_ps();
        }
        int64_t i = 0;
        for (; i + 3 <= k; i += 3) {
            DLK_ROW_STEP(a, i);
            DLK_ROW_STEP(bb, i + 1);
            DLK_ROW_STEP(cc, i + 2);
        }
        for (; i < k; i++) DLK_ROW_STEP(a, i);
        for (int q = 0; q < 8; q++)
            _mm512_storeu_ps(c + j + 16 * q, _mm512_add_ps(_mm512_add_ps(a[q], bb[q]), cc[q]));
    }
    return j;
}
#undef DLK_ROW_STEP

static void row_times_dense(const float *x, int64_t k, int64_t n, const float *b, int64_t ldb,
                            const float *base, float *c, int plain_c) {
#if DLK_X86
    if (!plain_c && dlk_has_avx512()) {
        const int64_t j = row_times_dense_avx512(x, k, n, b, ldb, base, c);
        if (j < n) row_times_dense_avx2(x, k, n - j, b + j, ldb, base ? base + j : NULL, c + j);
        return;
    }
    if (!plain_c && dlk_has_avx2()) {
        row_times_dense_avx2(x, k, n, b, ldb, base, c);
        return;
    }
#endif
    (void)plain_c;
    row_times_dense_plain(x, k, n, b, ldb, base, c);
}

// MARK: - Column sums
//
// sums[j] = the sum of a's column j, rows in order, for a (rows x cols, lda apart): the
// forward's base term v * (column sums of W^T). OpenBLAS's gemv would do it, but spreads
// a product this size over all its threads, and waking them on every training step cost
// more than the product.

static void column_sums_plain(const float *a, int64_t rows, int64_t cols, int64_t lda, float *sums) {
    memset(sums, 0, (size_t)cols * sizeof *sums);
    for (int64_t i = 0; i < rows; i++)
        for (int64_t j = 0; j < cols; j++) sums[j] += a[i * lda + j];
}

#if DLK_X86
// Eight columns at a time, the rows summed in order into one accumulator per column, as the
// plain version does (the same bits).
__attribute__((target("avx2")))
static void column_sums_avx2(const float *a, int64_t rows, int64_t cols, int64_t lda, float *sums) {
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
        _mm256_storeu_ps(sums + j, s0);      _mm256_storeu_ps(sums + j + 8, s1);
        _mm256_storeu_ps(sums + j + 16, s2); _mm256_storeu_ps(sums + j + 24, s3);
    }
    for (; j + 8 <= cols; j += 8) {
        __m256 s0 = _mm256_setzero_ps();
        for (int64_t i = 0; i < rows; i++) s0 = _mm256_add_ps(s0, _mm256_loadu_ps(a + i * lda + j));
        _mm256_storeu_ps(sums + j, s0);
    }
    for (; j < cols; j++) {
        float s0 = 0;
        for (int64_t i = 0; i < rows; i++) s0 += a[i * lda + j];
        sums[j] = s0;
    }
}
#endif

static void column_sums(const float *a, int64_t rows, int64_t cols, int64_t lda, float *sums, int plain_c) {
#if DLK_X86
    if (!plain_c && dlk_has_avx2()) {
        column_sums_avx2(a, rows, cols, lda, sums);
        return;
    }
#endif
    (void)plain_c;
    column_sums_plain(a, rows, cols, lda, sums);
}

// MARK: - Transpose
//
// Columns j_begin ..< j_end of a (rows j_begin ..< j_end of t); j_begin is a multiple of 8.

// Blocks of 8 x 8 keep both the rows read and the rows written within a few cache lines.
static void transpose_plain(const float *a, int64_t rows, int64_t cols, float v, float *t,
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

static void gradient_rows_plain(const float *d, int64_t rows, int64_t j_begin, int64_t j_end,
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
                           const float *b, const float *base, float *c, int plain_c) {
#if DLK_X86
    if (!plain_c && dlk_has_avx2()) {
        gradient_rows_avx2(d, rows, j_begin, j_end, n, b, n, base, c, n);
        return;
    }
#endif
    (void)plain_c;
    gradient_rows_plain(d, rows, j_begin, j_end, n, b, n, base, c, n);
}

static void transpose_range(const float *a, int64_t rows, int64_t cols, float v, float *t,
                            int64_t j_begin, int64_t j_end, int plain_c) {
#if DLK_X86
    if (!plain_c && dlk_has_avx2()) {
        transpose_avx2(a, rows, cols, v, t, j_begin, j_end);
        return;
    }
#endif
    (void)plain_c;
    transpose_plain(a, rows, cols, v, t, j_begin, j_end);
}

// MARK: - The parallel jobs
//
// Shares follow the pool's rule (dlk_parallel_for): contiguous ranges, the same at every
// call. The forward's units take chunks of inputs first and groups of batch rows second;
// the weight gradient takes ranges of inputs (rows of dW^T), each thread transposing the
// columns of x it needs itself.

enum { CHUNKS = DLK_SPARSE_CHUNKS };

static int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }

// The first input of chunk h (cols for h == CHUNKS): a multiple of 8, for the vectors.
int64_t dlk_chunk_start(int64_t cols, int64_t h) {
    if (h >= CHUNKS) return cols;
    return min64(cols, ((cols * h + CHUNKS - 1) / CHUNKS + 7) & ~(int64_t)7);
}

// Chunk h's base term for background v (not 0): the bias for chunk 0, plus v times the
// column sums of the chunk's rows of W^T. The one place it is computed, for the forward's
// units and for the bases a caller keeps (dlk_sparse_bases), so both give the same bits.
static void chunk_base(const float *wt, int64_t cols, int64_t n, int64_t h, const float *bias, float v, float *sums,
                       int plain_c) {
    const int64_t c0 = dlk_chunk_start(cols, h), c1 = dlk_chunk_start(cols, h + 1);
    if (h != 0) bias = NULL;
    column_sums(wt + c0 * n, c1 - c0, n, n, sums, plain_c);
    for (int64_t o = 0; o < n; o++) sums[o] = (bias ? bias[o] : 0.0f) + v * sums[o];
}

void dlk_sparse_bases(const float *wt, int64_t cols, int64_t n, const float *bias, float v, float *bases, int plain_c) {
    for (int64_t h = 0; h < CHUNKS; h++) chunk_base(wt, cols, n, h, bias, v, bases + h * n, plain_c);
}

struct forward_job {
    const float *x;
    int64_t rows, cols;
    float v;
    int64_t max_nonzeros;
    const float *wt;
    int64_t n;
    const float *bias;
    dlk_sparse_batch *work;
    float *y;
    int plain_c;
    // What the threads write, each on cache lines of its own: the shared count, and each
    // unit's result (which the caller reads after the job).
    _Alignas(64) int64_t total;            // atomic: entries compressed so far, all units
    struct { _Alignas(64) int64_t count; } nonzeros[DLK_SPARSE_CHUNKS * DLK_MAX_THREADS];   // per unit, or -1
};

// Unit u of the forward: chunk *h of the inputs times batch rows *r0 ..< *r1.
static void unit_of(const struct forward_job *f, int64_t u, int64_t *h, int64_t *r0, int64_t *r1) {
    const int64_t groups = f->work->groups, g = u % groups;
    *h = u / groups;
    *r0 = f->rows * g / groups;
    *r1 = f->rows * (g + 1) / groups;
}

// Units u0 ..< u1 of the forward, unit u being chunk h = u / groups of the inputs times
// group g = u % groups of the batch rows. Each unit is whole on its own: it compresses its
// rows' entries in its chunk into segment u, makes its chunk's base term (the bias for
// chunk 0, plus, when v is not 0, v times the column sums of the chunk's rows of W^T, in
// its own copy), and multiplies: into y for chunk 0, into the chunk's partial product for
// the others. A thread compresses all its units before multiplying any, and skips the
// products once the batch is known to be too dense (the entries counted so far exceed
// max_nonzeros): a dense batch then costs little more than its compression. The products
// a unit computes do not depend on the grouping, so neither do the results on the number
// of threads.
static void forward_units(void *context, int64_t u0, int64_t u1, int thread) {
    (void)thread;
    struct forward_job *f = context;
    dlk_sparse_batch *w = f->work;
    // One row (a sample to predict, whose caller counted its entries first) needs no early
    // exit: its units would only pass the shared count between the cores.
    const int early_exit = f->rows > 1;
    int64_t h, r0, r1;
    for (int64_t u = u0; u < u1; u++) {
        unit_of(f, u, &h, &r0, &r1);
        const int64_t offset = u * w->segment_capacity;
        f->nonzeros[u].count = compress_rows(f->x, r0, r1, dlk_chunk_start(f->cols, h), dlk_chunk_start(f->cols, h + 1), f->cols,
                                       f->v, w->affine, f->max_nonzeros, offset, w->index + offset, w->value + offset,
                                       w->row_begin + h * f->rows, w->row_end + h * f->rows, f->plain_c);
        const int64_t count = f->nonzeros[u].count < 0 ? f->max_nonzeros + 1 : f->nonzeros[u].count;
        if (early_exit) __atomic_add_fetch(&f->total, count, __ATOMIC_RELAXED);
    }
    if (early_exit && __atomic_load_n(&f->total, __ATOMIC_RELAXED) > f->max_nonzeros) return;
    for (int64_t u = u0; u < u1; u++) {
        unit_of(f, u, &h, &r0, &r1);
        const float *base = h == 0 ? f->bias : NULL;
        if (f->v != 0 && w->bases) {
            base = w->bases + h * f->n;
        } else if (f->v != 0) {
            chunk_base(f->wt, f->cols, f->n, h, f->bias, f->v, w->base + u * f->n, f->plain_c);
            base = w->base + u * f->n;
        }
        float *out = h == 0 ? f->y : w->partial + (h - 1) * f->rows * f->n;
        const int64_t *begin = w->row_begin + h * f->rows, *end = w->row_end + h * f->rows;
        for (int64_t r = r0; r < r1; r++)
            sparse_times_dense(f->n, begin[r], end[r], w->index, w->value, f->wt, f->n, base, out + r * f->n, f->plain_c);
    }
}

struct sum_job {
    float *y;
    const float *partial, *bias;
    int64_t n, stride;
    int plain_c;
};

// Elements [i, end) of row r: y += each chunk's partial product in chunk order, then the
// bias (when there is one), one element at a time.
static void sum_elements_plain(const struct sum_job *s, int64_t r, int64_t i, int64_t end) {
    for (; i < end; i++) {
        float v = s->y[r * s->n + i];
        for (int64_t h = 1; h < CHUNKS; h++) v += s->partial[(h - 1) * s->stride + r * s->n + i];
        if (s->bias) v += s->bias[i];
        s->y[r * s->n + i] = v;
    }
}

#if DLK_X86
// The same additions in the same order, 8 elements at a time; returns where it stopped.
__attribute__((target("avx2")))
static int64_t sum_elements_avx2(const struct sum_job *s, int64_t r) {
    float *y = s->y + r * s->n;
    int64_t i = 0;
    for (; i + 8 <= s->n; i += 8) {
        __m256 v = _mm256_loadu_ps(y + i);
        for (int64_t h = 1; h < CHUNKS; h++)
            v = _mm256_add_ps(v, _mm256_loadu_ps(s->partial + (h - 1) * s->stride + r * s->n + i));
        if (s->bias) v = _mm256_add_ps(v, _mm256_loadu_ps(s->bias + i));
        _mm256_storeu_ps(y + i, v);
    }
    return i;
}
#endif

// Rows [begin, end) of y += each chunk's partial product, in chunk order (+ the bias).
static void sum_part(void *context, int64_t begin, int64_t end, int thread) {
    (void)thread;
    const struct sum_job *s = context;
    for (int64_t r = begin; r < end; r++) {
        int64_t i = 0;
#if DLK_X86
        if (!s->plain_c && dlk_has_avx2()) i = sum_elements_avx2(s, r);
#endif
        sum_elements_plain(s, r, i, s->n);
    }
}

// Split by rows when there is enough to share.
void dlk_sum_chunks_f32(float *y, const float *partial, const float *bias, int64_t rows, int64_t n, int plain_c) {
    struct sum_job job = {y, partial, bias, n, rows * n, plain_c};
    dlk_parallel_for(rows, 1 + 16384 / (n > 0 ? n : 1), sum_part, &job);
}

int64_t dlk_sparse_forward(const float *x, int64_t rows, int64_t cols, float v, int64_t max_nonzeros,
                           const float *wt, int64_t n, const float *bias, dlk_sparse_batch *work,
                           float *y, int plain_c) {
    struct forward_job job = {x, rows, cols, v, max_nonzeros, wt, n, bias, work, y, plain_c, 0, {{0}}};
    if (work->groups < 1 || work->groups > DLK_MAX_THREADS || work->groups > rows) return -1;
    const int64_t units = CHUNKS * work->groups;
    dlk_parallel_for(units, work->serial ? units : 1, forward_units, &job);
    int64_t total = 0;
    for (int64_t u = 0; u < units; u++) {
        if (job.nonzeros[u].count < 0) return -1;
        total += job.nonzeros[u].count;
    }
    if (total > max_nonzeros) return -1;
    dlk_sum_chunks_f32(y, work->partial, NULL, rows, n, plain_c);
    return total;
}

struct row_job {
    const float *x;
    int64_t k;
    const float *b;
    int64_t n;
    const float *bias;
    float *y, *partial;
    int plain_c;
};

// Chunk h of the inputs times its rows of b, into y (with the bias) or its partial row.
static void row_part(void *context, int64_t begin, int64_t end, int thread) {
    (void)thread;
    const struct row_job *r = context;
    for (int64_t h = begin; h < end; h++) {
        const int64_t c0 = dlk_chunk_start(r->k, h), c1 = dlk_chunk_start(r->k, h + 1);
        row_times_dense(r->x + c0, c1 - c0, r->n, r->b + c0 * r->n, r->n, h == 0 ? r->bias : NULL,
                        h == 0 ? r->y : r->partial + (h - 1) * r->n, r->plain_c);
    }
}

void dlk_row_times_matrix(const float *x, int64_t k, const float *b, int64_t n, const float *bias, float *partial,
                          float *y, int plain_c) {
    struct row_job job = {x, k, b, n, bias, y, partial, plain_c};
    dlk_parallel_for(CHUNKS, 1, row_part, &job);
    struct sum_job sum = {y, partial, NULL, n, n, plain_c};
    sum_part(&sum, 0, 1, 0);
}

struct gradient_job {
    const float *x;
    int64_t rows, cols;
    float v;
    const float *dy;
    int64_t n;
    const float *base;
    float *d, *dwt;
    int plain_c;
};

// Inputs [8 begin, 8 end): their columns of x transposed, then their rows of dW^T.
static void gradient_part(void *context, int64_t begin, int64_t end, int thread) {
    (void)thread;
    const struct gradient_job *g = context;
    const int64_t j0 = 8 * begin, j1 = min64(g->cols, 8 * end);
    transpose_range(g->x, g->rows, g->cols, g->v, g->d, j0, j1, g->plain_c);
    gradient_range(g->d, g->rows, j0, j1, g->n, g->dy, g->base, g->dwt, g->plain_c);
}

void dlk_sparse_weight_gradient(const float *x, int64_t rows, int64_t cols, float v, const float *dy, int64_t n,
                                const float *base, float *d, float *dwt, int plain_c) {
    struct gradient_job job = {x, rows, cols, v, dy, n, base, d, dwt, plain_c};
    dlk_parallel_for((cols + 7) / 8, 1, gradient_part, &job);
}
