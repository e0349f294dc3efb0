// Float32 ReLU forward and backward (see dl_kernels.h). The Swift loops run 4 floats at a
// time (the library's Swift is compiled for baseline x86-64); these run 8 on AVX2, with the
// same results: y = x where x > 0, else +0 (NaN and -0 give +0); dx = dy where x > 0, else +0.
#include "dl_kernels.h"
#include "x86.h"

static void relu_plain(const float *x, float *y, int64_t i, int64_t n) {
    for (; i < n; i++) y[i] = x[i] > 0 ? x[i] : 0;
}

static void relu_backward_plain(const float *x, const float *dy, float *dx, int64_t i, int64_t n) {
    for (; i < n; i++) dx[i] = x[i] > 0 ? dy[i] : 0;
}

#if DLK_X86
// The ordered comparison x > 0 is false for NaN; and-ing with its mask keeps x (or dy) or
// gives +0.
__attribute__((target("avx2")))
static int64_t relu_avx2(const float *x, float *y, int64_t n) {
    const __m256 zero = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256 v = _mm256_loadu_ps(x + i);
        _mm256_storeu_ps(y + i, _mm256_and_ps(_mm256_cmp_ps(v, zero, _CMP_GT_OQ), v));
    }
    return i;
}

__attribute__((target("avx2")))
static int64_t relu_backward_avx2(const float *x, const float *dy, float *dx, int64_t n) {
    const __m256 zero = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256 mask = _mm256_cmp_ps(_mm256_loadu_ps(x + i), zero, _CMP_GT_OQ);
        _mm256_storeu_ps(dx + i, _mm256_and_ps(mask, _mm256_loadu_ps(dy + i)));
    }
    return i;
}
#endif

void dlk_relu_f32(const float *x, float *y, int64_t n, int plain_c) {
    int64_t i = 0;
#if DLK_X86
    if (!plain_c && dlk_has_avx2()) i = relu_avx2(x, y, n);
#endif
    (void)plain_c;
    relu_plain(x, y, i, n);
}

void dlk_relu_backward_f32(const float *x, const float *dy, float *dx, int64_t n, int plain_c) {
    int64_t i = 0;
#if DLK_X86
    if (!plain_c && dlk_has_avx2()) i = relu_backward_avx2(x, dy, dx, n);
#endif
    (void)plain_c;
    relu_backward_plain(x, dy, dx, i, n);
}
