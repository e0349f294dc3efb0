// C = alpha (A B) for row-major A (m x k) and B (k x n), read where they are: no packed
// copies. OpenBLAS copies both operands into its own layout on every call, and, cut into
// row blocks across threads, copies B once per block: for the batches the library predicts
// (A the caller's batch, B a layer's W^T), its copies took a fifth of the CPU samples.
//
// Every output is one chain of fused multiply-adds over p = 0, 1, ..., k - 1, from zero,
// then times alpha (one rounding). The vector kernel keeps a tile of 6 rows x 64 columns of
// C in 24 registers and runs it over the whole depth k (in blocks of BLOCK_DEPTH, between
// which the partial sums are stored and loaded again unchanged). So C's bits depend
// neither on the blocks nor on which rows a thread takes: the plain C loop gives the same
// bits, and any cut of the rows across threads does too; threads can take blocks of rows
// as they come free.
//
// Measured against OpenBLAS 0.3.21 on one core (bench/README.md, "Products without
// packing"): 1.05x at 1000 x 784 x 128, 1.2x at 64 x 784 x 128, 1.5x at 1000 x 128 x 10;
// 0.9-0.95x from 256 columns up (DLK_GEMM_MAX_COLUMNS).
#include "dl_kernels.h"
#include "x86.h"

// Multiply-adds in a row of C, in order, then the scale: the definition of the bits.
static void gemm_plain(int64_t m, int64_t n, int64_t k, float alpha, const float *a, int64_t rs, int64_t ps,
                       const float *b, int64_t ldb, float *c, int64_t ldc) {
    for (int64_t i = 0; i < m; i++) {
        float *ci = c + i * ldc;
        for (int64_t j = 0; j < n; j++) ci[j] = 0;
        for (int64_t p = 0; p < k; p++) {
            const float ap = a[i * rs + p * ps];
            const float *bp = b + p * ldb;
            for (int64_t j = 0; j < n; j++) ci[j] = __builtin_fmaf(ap, bp[j], ci[j]);
        }
        for (int64_t j = 0; j < n; j++) ci[j] *= alpha;
    }
}

#if DLK_X86
// The tile's loops unrolled whole (gcc -O2 keeps them, and its accumulators in memory).
#define DLK_UNROLL _Pragma("GCC unroll 8")

enum {
    TILE_ROWS = 6,       // rows of C per tile: 6 x 4 accumulators + 4 rows of B + 1 broadcast <= 32
    TILE_VECTORS = 4,    // 16-float vectors per tile row: 64 columns
    BLOCK_ROWS = 48,     // rows a thread takes at a time; their strip of A serves every tile column
    BLOCK_DEPTH = 1024,  // multiply-adds per tile between stores (blocks of 128 or 256 were slower)
};

// Loads and stores of 16 floats, or of the `mask`ed ones at the right edge of C.
__attribute__((target("avx512f"), always_inline)) static inline __m512 load(int masked, __mmask16 mask, const float *p) {
    return masked ? _mm512_maskz_loadu_ps(mask, p) : _mm512_loadu_ps(p);
}

__attribute__((target("avx512f"), always_inline)) static inline void store(int masked, __mmask16 mask, float *p, __m512 v) {
    if (masked) _mm512_mask_storeu_ps(p, mask, v);
    else _mm512_storeu_ps(p, v);
}

// One tile: `rows` (<= 6) rows of C, `vectors` (<= 4) vectors of 16 columns, the last one
// `masked` by `tail` at C's right edge; `depth` multiply-adds from `first` (start at zero)
// to `last` (scale and store). Inlined with constant `rows`, `vectors` and `masked`, so the
// arrays live in registers and full tiles use plain loads.
__attribute__((target("avx512f"), always_inline)) static inline void
tile_avx512(const int rows, const int vectors, const int masked, __mmask16 tail, int64_t depth, const float *a,
            int64_t rs, int64_t ps, const float *b, int64_t ldb, float *c, int64_t ldc, int first, int last,
            float alpha) {
    __m512 acc[TILE_ROWS][TILE_VECTORS];
    DLK_UNROLL for (int r = 0; r < rows; r++)
        DLK_UNROLL for (int q = 0; q < vectors; q++) {
            const __mmask16 mask = masked && q + 1 == vectors ? tail : 0xFFFF;
            acc[r][q] = first ? _mm512_setzero_ps() : load(masked && q + 1 == vectors, mask, c + r * ldc + 16 * q);
        }
    for (int64_t p = 0; p < depth; p++) {
        __m512 bq[TILE_VECTORS];
        DLK_UNROLL for (int q = 0; q < vectors; q++) {
            const __mmask16 mask = masked && q + 1 == vectors ? tail : 0xFFFF;
            bq[q] = load(masked && q + 1 == vectors, mask, b + p * ldb + 16 * q);
        }
        DLK_UNROLL for (int r = 0; r < rows; r++) {
            const __m512 ar = _mm512_set1_ps(a[r * rs + p * ps]);
            DLK_UNROLL for (int q = 0; q < vectors; q++) acc[r][q] = _mm512_fmadd_ps(ar, bq[q], acc[r][q]);
        }
    }
    const __m512 scale = _mm512_set1_ps(alpha);
    DLK_UNROLL for (int r = 0; r < rows; r++)
        DLK_UNROLL for (int q = 0; q < vectors; q++) {
            const __mmask16 mask = masked && q + 1 == vectors ? tail : 0xFFFF;
            store(masked && q + 1 == vectors, mask, c + r * ldc + 16 * q, last ? _mm512_mul_ps(acc[r][q], scale) : acc[r][q]);
        }
}

typedef void (*tile_fn)(__mmask16, int64_t, const float *, int64_t, int64_t, const float *, int64_t, float *,
                        int64_t, int, int, float);

#define DLK_TILE(R, V, M)                                                                                   \
    __attribute__((target("avx512f"))) static void tile_##R##_##V##_##M(                                    \
        __mmask16 tail, int64_t depth, const float *a, int64_t rs, int64_t ps, const float *b, int64_t ldb,   \
        float *c, int64_t ldc, int first, int last, float alpha) {                                          \
        tile_avx512(R, V, M, tail, depth, a, rs, ps, b, ldb, c, ldc, first, last, alpha);                   \
    }
#define DLK_TILES(R)                                                                                 \
    DLK_TILE(R, 1, 0) DLK_TILE(R, 2, 0) DLK_TILE(R, 3, 0) DLK_TILE(R, 4, 0)                          \
    DLK_TILE(R, 1, 1) DLK_TILE(R, 2, 1) DLK_TILE(R, 3, 1) DLK_TILE(R, 4, 1)
DLK_TILES(1) DLK_TILES(2) DLK_TILES(3) DLK_TILES(4) DLK_TILES(5) DLK_TILES(6)
#undef DLK_TILES
#undef DLK_TILE

#define DLK_ROW(R)                                                                         \
    {{tile_##R##_1_0, tile_##R##_2_0, tile_##R##_3_0, tile_##R##_4_0},                     \
     {tile_##R##_1_1, tile_##R##_2_1, tile_##R##_3_1, tile_##R##_4_1}}
// tiles[rows - 1][masked][vectors - 1]
static const tile_fn tiles[TILE_ROWS][2][TILE_VECTORS] = {DLK_ROW(1), DLK_ROW(2), DLK_ROW(3),
                                                            DLK_ROW(4), DLK_ROW(5), DLK_ROW(6)};
#undef DLK_ROW

static void gemm_avx512(int64_t m, int64_t n, int64_t k, float alpha, const float *a, int64_t rs, int64_t ps,
                        const float *b, int64_t ldb, float *c, int64_t ldc) {
    for (int64_t i0 = 0; i0 < m; i0 += BLOCK_ROWS) {
        const int64_t i1 = i0 + BLOCK_ROWS < m ? i0 + BLOCK_ROWS : m;
        for (int64_t j = 0; j < n; j += 16 * TILE_VECTORS) {
            const int64_t width = n - j < 16 * TILE_VECTORS ? n - j : 16 * TILE_VECTORS;
            const int vectors = (int)((width + 15) / 16);
            const int masked = width % 16 != 0;
            const __mmask16 tail = masked ? (__mmask16)((1u << (width % 16)) - 1) : (__mmask16)0xFFFF;
            for (int64_t p = 0; p < k; p += BLOCK_DEPTH) {
                const int64_t depth = k - p < BLOCK_DEPTH ? k - p : BLOCK_DEPTH;
                for (int64_t i = i0; i < i1; i += TILE_ROWS) {
                    const int rows = (int)(i1 - i < TILE_ROWS ? i1 - i : TILE_ROWS);
                    tiles[rows - 1][masked][vectors - 1](tail, depth, a + i * rs + p * ps, rs, ps, b + p * ldb + j,
                                                         ldb, c + i * ldc + j, ldc, p == 0, p + depth == k, alpha);
                }
            }
        }
    }
}

// The kernel threads take blocks of BLOCK_ROWS rows of C in turn, as each finishes its
// last (a core the VM slows down takes fewer): any cut gives the same bits.
struct gemm_job {
    int64_t m, n, k, rs, ps, ldb, ldc, blocks, next;
    float alpha;
    const float *a, *b;
    float *c;
};

static void gemm_share(void *context, int64_t begin, int64_t end, int thread) {
    (void)begin, (void)end, (void)thread;
    struct gemm_job *job = context;
    for (;;) {
        const int64_t block = __atomic_fetch_add(&job->next, 1, __ATOMIC_RELAXED);
        if (block >= job->blocks) return;
        const int64_t i = block * BLOCK_ROWS, rows = job->m - i < BLOCK_ROWS ? job->m - i : BLOCK_ROWS;
        gemm_avx512(rows, job->n, job->k, job->alpha, job->a + i * job->rs, job->rs, job->ps, job->b, job->ldb,
                    job->c + i * job->ldc, job->ldc);
    }
}
#endif

int dlk_gemm_parallel_f32(int trans_a, int64_t m, int64_t n, int64_t k, float alpha, const float *a, int64_t lda,
                          const float *b, int64_t ldb, float *c, int64_t ldc, int64_t min_work) {
#if DLK_X86
    if (!dlk_has_avx512() || m <= 0 || n <= 0 || k <= 0 || n > DLK_GEMM_MAX_COLUMNS) return 0;
    struct gemm_job job = {m, n, k, trans_a ? 1 : lda, trans_a ? lda : 1, ldb, ldc, (m + BLOCK_ROWS - 1) / BLOCK_ROWS,
                           0, alpha, a, b, c};
    const int64_t per_block = BLOCK_ROWS * n * k;
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
                  const float *b, int64_t ldb, float *c, int64_t ldc, int plain_c) {
    const int64_t rs = trans_a ? 1 : lda, ps = trans_a ? lda : 1;   // A[i][p] is a[i * rs + p * ps]
    if (m <= 0 || n <= 0) return;
#if DLK_X86
    if (!plain_c && k > 0 && dlk_has_avx512()) {   // (an empty chain: the plain loop's zeros)
        gemm_avx512(m, n, k, alpha, a, rs, ps, b, ldb, c, ldc);
        return;
    }
#endif
    (void)plain_c;
    gemm_plain(m, n, k, alpha, a, rs, ps, b, ldb, c, ldc);
}
