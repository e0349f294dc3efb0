// dst = src^T for float matrices: the convolutions' weight gradient multiplies its columns by
// dy with the library's kernel, which wants dy a sample at a time as (plane x filters).
// Exact copies: every version writes the same values.
#include "dl_kernels.h"
#include "x86.h"

static void transpose_plain(int64_t rows, int64_t cols, const float *src, int64_t lds, float *dst, int64_t ldd) {
    for (int64_t i = 0; i < rows; i++)
        for (int64_t j = 0; j < cols; j++) dst[j * ldd + i] = src[i * lds + j];
}

#if DLK_X86
// An 8 x 8 block through registers: rows interleaved in pairs, then in fours, then the two
// 128-bit halves exchanged.
__attribute__((target("avx2"))) static inline void block8(const float *src, int64_t lds, float *dst, int64_t ldd) {
    __m256 r[8], t[8];
    for (int i = 0; i < 8; i++) r[i] = _mm256_loadu_ps(src + i * lds);
    for (int i = 0; i < 8; i += 2) {
        t[i] = _mm256_unpacklo_ps(r[i], r[i + 1]);
        t[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);
    }
    for (int i = 0; i < 8; i += 4) {
        r[i] = _mm256_shuffle_ps(t[i], t[i + 2], _MM_SHUFFLE(1, 0, 1, 0));
        r[i + 1] = _mm256_shuffle_ps(t[i], t[i + 2], _MM_SHUFFLE(3, 2, 3, 2));
        r[i + 2] = _mm256_shuffle_ps(t[i + 1], t[i + 3], _MM_SHUFFLE(1, 0, 1, 0));
        r[i + 3] = _mm256_shuffle_ps(t[i + 1], t[i + 3], _MM_SHUFFLE(3, 2, 3, 2));
    }
    for (int i = 0; i < 4; i++) {
        _mm256_storeu_ps(dst + i * ldd, _mm256_permute2f128_ps(r[i], r[i + 4], 0x20));
        _mm256_storeu_ps(dst + (i + 4) * ldd, _mm256_permute2f128_ps(r[i], r[i + 4], 0x31));
    }
}

__attribute__((target("avx2"))) static void transpose_avx2(int64_t rows, int64_t cols, const float *src, int64_t lds,
                                                           float *dst, int64_t ldd) {
    const int64_t rows8 = rows / 8 * 8, cols8 = cols / 8 * 8;
    for (int64_t j = 0; j < cols8; j += 8)
        for (int64_t i = 0; i < rows8; i += 8) block8(src + i * lds + j, lds, dst + j * ldd + i, ldd);
    if (cols8 < cols) transpose_plain(rows8, cols - cols8, src + cols8, lds, dst + cols8 * ldd, ldd);
    if (rows8 < rows) transpose_plain(rows - rows8, cols, src + rows8 * lds, lds, dst + rows8, ldd);
}
#endif

void dlk_transpose_f32(int64_t rows, int64_t cols, const float *src, int64_t lds, float *dst, int64_t ldd,
                       int plain_c) {
#if DLK_X86
    if (!plain_c && dlk_has_avx2()) {
        transpose_avx2(rows, cols, src, lds, dst, ldd);
        return;
    }
#endif
    (void)plain_c;
    transpose_plain(rows, cols, src, lds, dst, ldd);
}
