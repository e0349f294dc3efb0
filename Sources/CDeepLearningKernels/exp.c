// exp for float32 arrays (see dl_kernels.h): the softmax of a classifier's outputs took
// one libm call per element (the loss of a batch of 64 x 10 outputs, 4 us of a 217 us
// training step).
//
// Cephes's expf, as SIMD libraries write it: x = n ln2 + r with n = round(x / ln2) and ln2
// in two parts, so r is exact to a few units of the last place; exp(r) by a degree-5
// polynomial in r times r^2 plus r + 1; times 2^n, made in the exponent bits. Within 2
// units of the last place of exp(x) over the range (tested against double). Every step is
// the same operation in both versions (fused multiply-adds as fmaf in plain C, rounding to
// nearest even as nearbyintf), so the plain C loop and the AVX2 one give the same bits.
#include "dl_kernels.h"
#include "x86.h"

#include <math.h>
#include <string.h>

// Below LOW, exp underflows (0 here; the true value is a subnormal under 2^-126); above
// HIGH, where 2^n would need n = 128, +infinity (exp(x) is over 2^127 there). NaN stays NaN.
static const float LOW = -87.33654f, HIGH = 88.37626f;
static const float LOG2E = 1.44269504088896341f, LN2_HI = 0.693359375f, LN2_LO = -2.12194440e-4f;
static const float P0 = 1.9875691500e-4f, P1 = 1.3981999507e-3f, P2 = 8.3334519073e-3f, P3 = 4.1665795894e-2f,
                   P4 = 1.6666665459e-1f, P5 = 5.0000001201e-1f;

static float exp_plain(float x) {
    if (x != x) return x;
    if (x > HIGH) return INFINITY;
    if (x < LOW) return 0.0f;
    const float n = nearbyintf(x * LOG2E);
    float r = fmaf(-n, LN2_HI, x);
    r = fmaf(-n, LN2_LO, r);
    float p = fmaf(P0, r, P1);
    p = fmaf(p, r, P2);
    p = fmaf(p, r, P3);
    p = fmaf(p, r, P4);
    p = fmaf(p, r, P5);
    const float r2 = r * r;
    p = fmaf(p, r2, r) + 1.0f;
    const uint32_t bits = (uint32_t)((int32_t)n + 127) << 23;
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    return p * scale;
}

#if DLK_X86
__attribute__((target("avx2,fma"))) static int64_t exp_avx2(const float *x, float *y, int64_t n) {
    const __m256 low = _mm256_set1_ps(LOW), high = _mm256_set1_ps(HIGH);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256 v = _mm256_loadu_ps(x + i);
        const __m256 c = _mm256_min_ps(_mm256_max_ps(v, low), high);   // in range for the arithmetic
        const __m256 k = _mm256_round_ps(_mm256_mul_ps(c, _mm256_set1_ps(LOG2E)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        __m256 r = _mm256_fnmadd_ps(k, _mm256_set1_ps(LN2_HI), c);
        r = _mm256_fnmadd_ps(k, _mm256_set1_ps(LN2_LO), r);
        __m256 p = _mm256_fmadd_ps(_mm256_set1_ps(P0), r, _mm256_set1_ps(P1));
        p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(P2));
        p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(P3));
        p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(P4));
        p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(P5));
        const __m256 r2 = _mm256_mul_ps(r, r);
        p = _mm256_add_ps(_mm256_fmadd_ps(p, r2, r), _mm256_set1_ps(1.0f));
        const __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(k), _mm256_set1_epi32(127)), 23);
        __m256 out = _mm256_mul_ps(p, _mm256_castsi256_ps(e));
        out = _mm256_blendv_ps(out, _mm256_setzero_ps(), _mm256_cmp_ps(v, low, _CMP_LT_OQ));
        out = _mm256_blendv_ps(out, _mm256_set1_ps(INFINITY), _mm256_cmp_ps(v, high, _CMP_GT_OQ));
        out = _mm256_blendv_ps(out, v, _mm256_cmp_ps(v, v, _CMP_UNORD_Q));
        _mm256_storeu_ps(y + i, out);
    }
    return i;
}
#endif

void dlk_exp_f32(const float *x, float *y, int64_t n, int plain_c) {
    int64_t i = 0;
#if DLK_X86
    if (!plain_c && dlk_has_avx2()) i = exp_avx2(x, y, n);
#endif
    (void)plain_c;
    for (; i < n; i++) y[i] = exp_plain(x[i]);
}
