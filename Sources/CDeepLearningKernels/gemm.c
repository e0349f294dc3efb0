// C = alpha (A B) for row-major A (m x k) and B (k x n), read where they are: no packed
// copies. OpenBLAS copies both operands into its own layout on every call, and, cut into
// row blocks across threads, copies B once per block: for the batches the library predicts
// (A the caller's batch, B a layer's W^T), its copies took a fifth of the CPU samples.
//
// Every output is summed in blocks of DLK_GEMM_SUM_DEPTH (128) consecutive p: each block is
// one chain of fused multiply-adds from zero, added to the output's running sum (the first
// block, unless `accumulate`, is that sum), and the sum is then times alpha. One chain over
// the whole depth, as this kernel first had, is as fast but its rounding errors grow with k:
// 4-5x OpenBLAS's at 784 and 3136 deep (a CNN's dense layer), against float64. A vector
// kernel keeps a tile of C in registers (6 rows x 64 columns with AVX-512, 6 x 16 with
// AVX2/FMA), runs it over one block, and adds it into C, for the whole depth (in passes of
// several blocks over a tile of A and B). So C's bits depend neither on the kernel nor on
// which rows a thread takes: the plain C loop gives the same bits, and any cut of the rows
// across threads does too; threads can take blocks of rows as they come free.
//
// Measured against OpenBLAS 0.3.21 on one core (bench/README.md, "Products without
// packing"): with AVX-512, 1.05x at 1000 x 784 x 128, 1.2x at 64 x 784 x 128, 1.5x at
// 1000 x 128 x 10; 0.9-0.95x from 256 columns up (DLK_GEMM_MAX_COLUMNS). AVX2: see
// "The unpacked kernel on AVX2" there.
#include "dl_kernels.h"
#include "x86.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

// The blocks' chains in a row of C, in order, then the scale: the definition of the bits.
// With `accumulate`, the first block too is added to C's value.
static void gemm_plain(int64_t m, int64_t n, int64_t k, float alpha, const float *a, int64_t rs, int64_t ps,
                       const float *b, int64_t ldb, float *c, int64_t ldc, int accumulate) {
    enum { COLUMNS = 64 };
    float chain[COLUMNS];
    for (int64_t i = 0; i < m; i++) {
        float *ci = c + i * ldc;
        if (k <= 0 && !accumulate)
            for (int64_t j = 0; j < n; j++) ci[j] = 0;
        for (int64_t j0 = 0; j0 < n; j0 += COLUMNS) {
            const int64_t width = n - j0 < COLUMNS ? n - j0 : COLUMNS;
            for (int64_t p0 = 0; p0 < k; p0 += DLK_GEMM_SUM_DEPTH) {
                const int64_t p1 = k - p0 < DLK_GEMM_SUM_DEPTH ? k : p0 + DLK_GEMM_SUM_DEPTH;
                for (int64_t j = 0; j < width; j++) chain[j] = 0;
                for (int64_t p = p0; p < p1; p++) {
                    const float ap = a[i * rs + p * ps];
                    const float *bp = b + p * ldb + j0;
                    for (int64_t j = 0; j < width; j++) chain[j] = __builtin_fmaf(ap, bp[j], chain[j]);
                }
                for (int64_t j = 0; j < width; j++) ci[j0 + j] = p0 == 0 && !accumulate ? chain[j] : ci[j0 + j] + chain[j];
            }
        }
        for (int64_t j = 0; j < n; j++) ci[j] *= alpha;
    }
}

#if DLK_X86
// The tile's loops unrolled whole (gcc -O2 keeps them, and its accumulators in memory).
#define DLK_UNROLL _Pragma("GCC unroll 8")

enum {
    TILE_ROWS = 6,       // rows of C per tile, in both kernels
    AVX512_VECTORS = 4,  // vectors per tile row: 64 columns of 16-float vectors
    AVX2_VECTORS = 2,    // 16 columns of 8-float vectors
    MAX_VECTORS = AVX512_VECTORS,
    AVX512_DEPTH = 1024, // multiply-adds a tile runs over one strip of A and B (see each kernel)
    AVX2_DEPTH = 256,
    BLOCK_ROWS = 48,     // rows a thread takes at a time (at most); their strip of A serves every tile column
    PANEL_MIN_ROWS = 24, // rows of C a product needs to go through panels of B (below)
    PANEL_MIN_STRIDE = 768,   // and floats between B's rows
};

// One tile: `rows` (<= 6) rows of C by `vectors` vectors of columns, the last vector holding
// only its first `tail` columns when `masked` (C's right edge); `depth` multiply-adds (from
// a multiple of DLK_GEMM_SUM_DEPTH), in blocks added into C, from `first` (the first block
// starts the sums) to `last` (scale the sums). Each kernel's tile is inlined into
// one function per constant `rows`, `vectors` and `masked`, so its arrays live in registers
// and full tiles use plain loads.
typedef void (*tile_fn)(int tail, int64_t depth, const float *a, int64_t rs, int64_t ps, const float *b,
                        int64_t ldb, float *c, int64_t ldc, int first, int last, float alpha);

// A vector kernel as the driver sees it: its tiles, [rows - 1][masked][vectors - 1], its
// vectors' width, and how deep a tile runs over one strip of A and B (whole blocks of
// DLK_GEMM_SUM_DEPTH, so that every block of the sums is the same whatever the kernel).
struct kernel {
    tile_fn tiles[TILE_ROWS][2][MAX_VECTORS];
    int lanes, vectors;
    int64_t block_depth;
};

// MARK: AVX-512: tiles of 6 x 4 vectors of 16 (24 accumulators + 4 rows of B + 1 broadcast
// <= 32 registers), 1024 deep (blocks of 128 or 256 were slower).

__attribute__((target("avx512f"), always_inline)) static inline __m512 load16(int masked, __mmask16 mask,
                                                                             const float *p) {
    return masked ? _mm512_maskz_loadu_ps(mask, p) : _mm512_loadu_ps(p);
}

__attribute__((target("avx512f"), always_inline)) static inline void store16(int masked, __mmask16 mask, float *p,
                                                                            __m512 v) {
    if (masked) _mm512_mask_storeu_ps(p, mask, v);
    else _mm512_storeu_ps(p, v);
}

__attribute__((target("avx512f"), always_inline)) static inline void
tile_avx512(const int rows, const int vectors, const int masked, int tail, int64_t depth, const float *a,
            int64_t rs, int64_t ps, const float *b, int64_t ldb, float *c, int64_t ldc, int first, int last,
            float alpha) {
    const __mmask16 edge = (__mmask16)((1u << tail) - 1);
    const __m512 scale = _mm512_set1_ps(alpha);
    for (int64_t p0 = 0; p0 < depth; p0 += DLK_GEMM_SUM_DEPTH) {
        const int64_t p1 = depth - p0 < DLK_GEMM_SUM_DEPTH ? depth : p0 + DLK_GEMM_SUM_DEPTH;
        __m512 acc[TILE_ROWS][AVX512_VECTORS];
        DLK_UNROLL for (int r = 0; r < rows; r++)
            DLK_UNROLL for (int q = 0; q < vectors; q++) acc[r][q] = _mm512_setzero_ps();
        for (int64_t p = p0; p < p1; p++) {
            __m512 bq[AVX512_VECTORS];
            DLK_UNROLL for (int q = 0; q < vectors; q++)
                bq[q] = load16(masked && q + 1 == vectors, edge, b + p * ldb + 16 * q);
            DLK_UNROLL for (int r = 0; r < rows; r++) {
                const __m512 ar = _mm512_set1_ps(a[r * rs + p * ps]);
                DLK_UNROLL for (int q = 0; q < vectors; q++) acc[r][q] = _mm512_fmadd_ps(ar, bq[q], acc[r][q]);
            }
        }
        // The block's chains into the sums in C (a block that starts them is them).
        const int starts = first && p0 == 0, ends = last && p1 == depth;
        DLK_UNROLL for (int r = 0; r < rows; r++)
            DLK_UNROLL for (int q = 0; q < vectors; q++) {
                const int m = masked && q + 1 == vectors;
                float *cq = c + r * ldc + 16 * q;
                const __m512 sum = starts ? acc[r][q] : _mm512_add_ps(load16(m, edge, cq), acc[r][q]);
                store16(m, edge, cq, ends ? _mm512_mul_ps(sum, scale) : sum);
            }
    }
}

// MARK: AVX2/FMA: tiles of 6 x 2 vectors of 8 (12 accumulators + 2 rows of B + 1 broadcast
// <= 16 registers, as BLIS's Haswell kernel), 256 deep, so that the tile's 16 columns of B
// stay in the 32 KB L1 cache for the next 6 rows.

__attribute__((target("avx2,fma"), always_inline)) static inline __m256 load8(int masked, __m256i mask,
                                                                            const float *p) {
    return masked ? _mm256_maskload_ps(p, mask) : _mm256_loadu_ps(p);
}

__attribute__((target("avx2,fma"), always_inline)) static inline void store8(int masked, __m256i mask, float *p,
                                                                           __m256 v) {
    if (masked) _mm256_maskstore_ps(p, mask, v);
    else _mm256_storeu_ps(p, v);
}

__attribute__((target("avx2,fma"), always_inline)) static inline void
tile_avx2(const int rows, const int vectors, const int masked, int tail, int64_t depth, const float *a,
          int64_t rs, int64_t ps, const float *b, int64_t ldb, float *c, int64_t ldc, int first, int last,
          float alpha) {
    const __m256i edge = _mm256_cmpgt_epi32(_mm256_set1_epi32(tail), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
    const __m256 scale = _mm256_set1_ps(alpha);
    for (int64_t p0 = 0; p0 < depth; p0 += DLK_GEMM_SUM_DEPTH) {
        const int64_t p1 = depth - p0 < DLK_GEMM_SUM_DEPTH ? depth : p0 + DLK_GEMM_SUM_DEPTH;
        __m256 acc[TILE_ROWS][AVX2_VECTORS];
        DLK_UNROLL for (int r = 0; r < rows; r++)
            DLK_UNROLL for (int q = 0; q < vectors; q++) acc[r][q] = _mm256_setzero_ps();
        for (int64_t p = p0; p < p1; p++) {
            __m256 bq[AVX2_VECTORS];
            DLK_UNROLL for (int q = 0; q < vectors; q++)
                bq[q] = load8(masked && q + 1 == vectors, edge, b + p * ldb + 8 * q);
            DLK_UNROLL for (int r = 0; r < rows; r++) {
                const __m256 ar = _mm256_broadcast_ss(a + r * rs + p * ps);
                DLK_UNROLL for (int q = 0; q < vectors; q++) acc[r][q] = _mm256_fmadd_ps(ar, bq[q], acc[r][q]);
            }
        }
        // The block's chains into the sums in C (a block that starts them is them).
        const int starts = first && p0 == 0, ends = last && p1 == depth;
        DLK_UNROLL for (int r = 0; r < rows; r++)
            DLK_UNROLL for (int q = 0; q < vectors; q++) {
                const int m = masked && q + 1 == vectors;
                float *cq = c + r * ldc + 8 * q;
                const __m256 sum = starts ? acc[r][q] : _mm256_add_ps(load8(m, edge, cq), acc[r][q]);
                store8(m, edge, cq, ends ? _mm256_mul_ps(sum, scale) : sum);
            }
    }
}

// MARK: The tables

#define DLK_TILE(ISA, TARGET, R, V, M)                                                                       \
    __attribute__((target(TARGET))) static void ISA##_##R##_##V##_##M(                                        \
        int tail, int64_t depth, const float *a, int64_t rs, int64_t ps, const float *b, int64_t ldb, float *c, \
        int64_t ldc, int first, int last, float alpha) {                                                      \
        tile_##ISA(R, V, M, tail, depth, a, rs, ps, b, ldb, c, ldc, first, last, alpha);                      \
    }
#define DLK_TILES_512(R)                                                                                     \
    DLK_TILE(avx512, "avx512f", R, 1, 0) DLK_TILE(avx512, "avx512f", R, 2, 0)                                 \
    DLK_TILE(avx512, "avx512f", R, 3, 0) DLK_TILE(avx512, "avx512f", R, 4, 0)                                 \
    DLK_TILE(avx512, "avx512f", R, 1, 1) DLK_TILE(avx512, "avx512f", R, 2, 1)                                 \
    DLK_TILE(avx512, "avx512f", R, 3, 1) DLK_TILE(avx512, "avx512f", R, 4, 1)
#define DLK_TILES_2(R)                                                                                       \
    DLK_TILE(avx2, "avx2,fma", R, 1, 0) DLK_TILE(avx2, "avx2,fma", R, 2, 0)                                   \
    DLK_TILE(avx2, "avx2,fma", R, 1, 1) DLK_TILE(avx2, "avx2,fma", R, 2, 1)
DLK_TILES_512(1) DLK_TILES_512(2) DLK_TILES_512(3) DLK_TILES_512(4) DLK_TILES_512(5) DLK_TILES_512(6)
DLK_TILES_2(1) DLK_TILES_2(2) DLK_TILES_2(3) DLK_TILES_2(4) DLK_TILES_2(5) DLK_TILES_2(6)
#undef DLK_TILES_2
#undef DLK_TILES_512
#undef DLK_TILE

#define DLK_ROW_512(R)                                                                  \
    {{avx512_##R##_1_0, avx512_##R##_2_0, avx512_##R##_3_0, avx512_##R##_4_0},          \
     {avx512_##R##_1_1, avx512_##R##_2_1, avx512_##R##_3_1, avx512_##R##_4_1}}
#define DLK_ROW_2(R) {{avx2_##R##_1_0, avx2_##R##_2_0}, {avx2_##R##_1_1, avx2_##R##_2_1}}
static const struct kernel kernel_avx512 = {
    {DLK_ROW_512(1), DLK_ROW_512(2), DLK_ROW_512(3), DLK_ROW_512(4), DLK_ROW_512(5), DLK_ROW_512(6)}, 16, AVX512_VECTORS, AVX512_DEPTH};
static const struct kernel kernel_avx2 = {
    {DLK_ROW_2(1), DLK_ROW_2(2), DLK_ROW_2(3), DLK_ROW_2(4), DLK_ROW_2(5), DLK_ROW_2(6)}, 8, AVX2_VECTORS, AVX2_DEPTH};
#undef DLK_ROW_2
#undef DLK_ROW_512
_Static_assert(AVX512_DEPTH % DLK_GEMM_SUM_DEPTH == 0 && AVX2_DEPTH % DLK_GEMM_SUM_DEPTH == 0,
               "tiles run whole blocks of the sums");

// The vector kernel this CPU runs: AVX-512, else AVX2/FMA, else none (NULL).
static const struct kernel *vector_kernel(void) {
    if (dlk_has_avx512()) return &kernel_avx512;
    return dlk_has_avx2() ? &kernel_avx2 : NULL;
}

// Columns [0, width) of C (at most one tile wide), rows [0, m), `depth` multiply-adds from
// A's and B's first: the tiles down the column, `first` and `last` as for each tile.
static void tile_column(const struct kernel *kernel, int64_t m, int64_t width, int64_t depth, const float *a,
                        int64_t rs, int64_t ps, const float *b, int64_t ldb, float *c, int64_t ldc, int first,
                        int last, float alpha) {
    const int vectors = (int)((width + kernel->lanes - 1) / kernel->lanes);
    const int tail = (int)(width % kernel->lanes);
    for (int64_t i = 0; i < m; i += TILE_ROWS) {
        const int rows = (int)(m - i < TILE_ROWS ? m - i : TILE_ROWS);
        kernel->tiles[rows - 1][tail != 0][vectors - 1](tail, depth, a + i * rs, rs, ps, b, ldb, c + i * ldc, ldc, first,
                                                        last, alpha);
    }
}

static void gemm_vector(const struct kernel *kernel, int64_t m, int64_t n, int64_t k, float alpha, const float *a,
                        int64_t rs, int64_t ps, const float *b, int64_t ldb, float *c, int64_t ldc, int accumulate) {
    const int64_t span = (int64_t)kernel->lanes * kernel->vectors;   // columns of a full tile
    for (int64_t i0 = 0; i0 < m; i0 += BLOCK_ROWS) {
        const int64_t rows = m - i0 < BLOCK_ROWS ? m - i0 : BLOCK_ROWS;
        for (int64_t j = 0; j < n; j += span) {
            const int64_t width = n - j < span ? n - j : span;
            for (int64_t p = 0; p < k; p += kernel->block_depth) {
                const int64_t depth = k - p < kernel->block_depth ? k - p : kernel->block_depth;
                tile_column(kernel, rows, width, depth, a + i0 * rs + p * ps, rs, ps, b + p * ldb + j, ldb,
                            c + i0 * ldc + j, ldc, p == 0 && !accumulate, p + depth == k, alpha);
            }
        }
    }
}

// MARK: Panels of B

// A wide and deep product read in place takes each tile's rows of B from 4 KB or more apart
// (a row of a 1024-wide B): every row is another page, which the hardware prefetcher does
// not cross, and the same few L1 sets. Copied into a panel of PANEL_COLUMNS columns and
// PANEL_DEPTH rows, contiguous, B is read once from where it is and then streamed by every
// row of C. Same tiles, same blocks of the sums, same bits. One core, packing included
// (bench/README.md, "Panels of B"): AVX-512 64 x 1024 x 1024 70-76 GFLOP/s in place, 127
// in panels; 256 x 1024 x 1024 77 and 149; AVX2 61 and 80.
enum { PANEL_COLUMNS = 64, PANEL_DEPTH = 256 };
_Static_assert(PANEL_DEPTH % DLK_GEMM_SUM_DEPTH == 0, "a panel holds whole blocks of the sums");

// Whether a product goes through panels: B wide, its rows at least PANEL_MIN_STRIDE floats
// apart, deep enough that the copy is paid back, and rows of C enough to read each panel
// several times. Rows 2 KB apart or less were faster in place (64 x 784 x 256: 169 GFLOP/s,
// 140 in panels; 256 x 512 x 512: 169 and 154-161); from 3 KB, panels won (64 x 784 x 3136:
// 62 and 128; 32 x 784 x 1024: 75 and 104).
static int takes_panels(int64_t m, int64_t n, int64_t k, int64_t ldb) {
    return n > DLK_GEMM_MAX_COLUMNS && k > DLK_GEMM_SHALLOW_DEPTH && m >= PANEL_MIN_ROWS && ldb >= PANEL_MIN_STRIDE;
}

// Columns [j, j + width) of C (width <= PANEL_COLUMNS), every row, through `panel`
// (PANEL_DEPTH x PANEL_COLUMNS floats).
static void gemm_panel(const struct kernel *kernel, float *panel, int64_t m, int64_t j, int64_t width, int64_t k,
                       float alpha, const float *a, int64_t rs, int64_t ps, const float *b, int64_t ldb, float *c,
                       int64_t ldc) {
    const int64_t span = (int64_t)kernel->lanes * kernel->vectors;   // columns of a full tile
    for (int64_t p = 0; p < k; p += PANEL_DEPTH) {
        const int64_t depth = k - p < PANEL_DEPTH ? k - p : PANEL_DEPTH;
        for (int64_t q = 0; q < depth; q++)
            memcpy(panel + q * PANEL_COLUMNS, b + (p + q) * ldb + j, (size_t)width * sizeof(float));
        for (int64_t t = 0; t < width; t += span)
            tile_column(kernel, m, width - t < span ? width - t : span, depth, a + p * ps, rs, ps, panel + t,
                        PANEL_COLUMNS, c + j + t, ldc, p == 0, p + depth == k, alpha);
    }
}

// Each thread's panel (64 KB), made by its first product through panels and kept for the
// next (a wide layer makes several a training step), freed when the thread ends. NULL when
// the memory or the thread-specific key cannot be had: the blocks are then read in place,
// with the same bits.
static pthread_key_t panel_key;
static int panel_key_made;
static pthread_once_t panel_key_once = PTHREAD_ONCE_INIT;

static void make_panel_key(void) { panel_key_made = pthread_key_create(&panel_key, free) == 0; }

static float *thread_panel(void) {
    pthread_once(&panel_key_once, make_panel_key);
    if (!panel_key_made) return NULL;
    float *panel = pthread_getspecific(panel_key);
    if (!panel && (panel = aligned_alloc(64, sizeof(float) * PANEL_DEPTH * PANEL_COLUMNS)) &&
        pthread_setspecific(panel_key, panel) != 0) {
        free(panel);
        panel = NULL;
    }
    return panel;
}

// The kernel threads take blocks of rows of C in turn, as each finishes its last (a core
// the VM slows down takes fewer): any cut gives the same bits. Blocks are BLOCK_ROWS rows,
// or fewer for a product of few rows, so that it still comes in about 16 blocks: a
// training batch of 64 rows in blocks of 48 left one of two threads a quarter of it.
// Through panels (`panels`), the blocks are panels' columns instead, every row.
struct gemm_job {
    const struct kernel *kernel;
    int64_t m, n, k, rs, ps, ldb, ldc, rows, blocks, next;
    float alpha;
    const float *a, *b;
    float *c;
    int panels;
};

static void gemm_share(void *context, int64_t begin, int64_t end, int thread) {
    (void)begin, (void)end, (void)thread;
    struct gemm_job *job = context;
    float *panel = job->panels ? thread_panel() : NULL;
    for (;;) {
        const int64_t block = __atomic_fetch_add(&job->next, 1, __ATOMIC_RELAXED);
        if (block >= job->blocks) return;
        if (job->panels) {
            const int64_t j = block * PANEL_COLUMNS, width = job->n - j < PANEL_COLUMNS ? job->n - j : PANEL_COLUMNS;
            if (panel)
                gemm_panel(job->kernel, panel, job->m, j, width, job->k, job->alpha, job->a, job->rs, job->ps, job->b,
                           job->ldb, job->c, job->ldc);
            else
                gemm_vector(job->kernel, job->m, width, job->k, job->alpha, job->a, job->rs, job->ps, job->b + j,
                            job->ldb, job->c + j, job->ldc, 0);
            continue;
        }
        const int64_t i = block * job->rows, rows = job->m - i < job->rows ? job->m - i : job->rows;
        gemm_vector(job->kernel, rows, job->n, job->k, job->alpha, job->a + i * job->rs, job->rs, job->ps, job->b,
                    job->ldb, job->c + i * job->ldc, job->ldc, 0);
    }
}
#endif

int dlk_gemm_parallel_takes(int trans_a, int64_t m, int64_t n, int64_t k) {
#if DLK_X86
    const struct kernel *kernel = vector_kernel();
    if (!kernel) return 0;
    // OpenBLAS with kernels older than the CPU: this kernel is 2-5x faster at every shape
    // measured (bench/README.md, "OpenBLAS on a CPU it does not know").
    if (dlk_blas_lags()) return 1;
    // With AVX-512, a wide C is still faster here when the depth is small (B's rows then
    // fit the cache however wide): 128 x 3136 x 64 (a weight gradient) 152 GFLOP/s against
    // OpenBLAS's 128, 64 x 3136 x 128 146 against 113; deeper and wide it loses (83 against
    // 117-157 at 64-1000 x 1024 x 1024).
    if (n > DLK_GEMM_MAX_COLUMNS) return kernel == &kernel_avx512 && k <= DLK_GEMM_SHALLOW_DEPTH;
    // The AVX2 tiles broadcast A from six rows at a time; over many rows of a stored (not
    // transposed) A, OpenBLAS's packed copies win (bench/README.md, "The convolutions' own
    // products": batches of 1,000 to predict, 784 -> 128, 1.73 ms a batch here, 1.46 with
    // OpenBLAS). Narrow products (a layer of 10 outputs) stay here: 1.31x OpenBLAS.
    return !(kernel == &kernel_avx2 && !trans_a && m >= 512 && n >= 64);
#else
    (void)trans_a, (void)m, (void)n, (void)k;
    return 0;
#endif
}

int dlk_gemm_parallel_f32(int trans_a, int64_t m, int64_t n, int64_t k, float alpha, const float *a, int64_t lda,
                          const float *b, int64_t ldb, float *c, int64_t ldc, int64_t min_work) {
#if DLK_X86
    const struct kernel *kernel = vector_kernel();
    if (m <= 0 || n <= 0 || k <= 0 || !dlk_gemm_parallel_takes(trans_a, m, n, k)) return 0;
    const int64_t tiles = ((m + 15) / 16 + TILE_ROWS - 1) / TILE_ROWS;   // a sixteenth of m, in whole tiles
    const int64_t rows = tiles * TILE_ROWS < BLOCK_ROWS ? tiles * TILE_ROWS : BLOCK_ROWS;
    const int panels = takes_panels(m, n, k, ldb);
    struct gemm_job job = {kernel, m, n, k, trans_a ? 1 : lda, trans_a ? lda : 1, ldb, ldc, rows, (m + rows - 1) / rows,
                           0, alpha, a, b, c, panels};
    if (panels) job.blocks = (n + PANEL_COLUMNS - 1) / PANEL_COLUMNS;
    const int64_t per_block = (panels ? m * PANEL_COLUMNS : rows * n) * k;
    const int64_t min_blocks = per_block >= min_work ? 1 : (min_work + per_block - 1) / per_block;
    const int64_t shares = job.blocks / min_blocks;
    dlk_parallel_for(shares > 1 ? shares : 1, 1, gemm_share, &job);
    return 1;
#else
    (void)trans_a, (void)m, (void)n, (void)k, (void)alpha, (void)a, (void)lda, (void)b, (void)ldb, (void)c, (void)ldc;
    (void)min_work;
    return 0;
#endif
}

void dlk_gemm_f32(int trans_a, int64_t m, int64_t n, int64_t k, float alpha, const float *a, int64_t lda,
                  const float *b, int64_t ldb, float *c, int64_t ldc, int accumulate, int plain_c) {
    const int64_t rs = trans_a ? 1 : lda, ps = trans_a ? lda : 1;   // A[i][p] is a[i * rs + p * ps]
    if (m <= 0 || n <= 0) return;
#if DLK_X86
    const struct kernel *kernel = plain_c || k <= 0 ? NULL : vector_kernel();   // (k = 0: the plain loop's zeros)
    if (kernel) {
        gemm_vector(kernel, m, n, k, alpha, a, rs, ps, b, ldb, c, ldc, accumulate);
        return;
    }
#endif
    (void)plain_c;
    gemm_plain(m, n, k, alpha, a, rs, ps, b, ldb, c, ldc, accumulate);
}
