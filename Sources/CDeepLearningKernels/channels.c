// Sums over one plane (one channel of one sample) for batch normalisation and convolution
// biases (see dl_kernels.h). Swift kept its running sums scalar (four chains, one element
// at a time), so these passes waited for arithmetic where they should wait for memory.
//
// Every sum runs in 32 chains: chain j takes elements j, j + 32, j + 64, ... (4 AVX2
// vectors of 8 lanes; the last n % 32 elements go to chains 0, 1, ... as they come), then
// the chains are added in one fixed tree. Products are fused multiply-adds in both versions,
// so the plain C loop and the AVX2 one give the same bits.
#include "dl_kernels.h"
#include "x86.h"

enum { CHAINS = 32 };

// The chains' total: pairs, then pairs of pairs, and so on.
static float total(float *s) {
    for (int width = CHAINS / 2; width >= 1; width /= 2)
        for (int j = 0; j < width; j++) s[j] = s[j] + s[j + width];
    return s[0];
}

// kind 0: sum x; kind 1: sum (x - m)^2; kind 2: sum y and sum y (x - m); kind 3: sum (x - m)
// and sum (x - m)^2; kind 4: as 2 with y[i] taken as 0 where mask[i] > 0 fails (a ReLU's
// backward before the sums); into out[0] and out[1].
//
// Element i into the running sums *a and *b: the plain loop's step, and the AVX2 version's
// for the last n % 32 elements.
static inline void add_element(int kind, const float *x, const float *y, const float *mask, float m, int64_t i,
                               float *a, float *b) {
    const float d = x[i] - m;
    switch (kind) {
    case 0: *a = *a + x[i]; break;
    case 1: *a = __builtin_fmaf(d, d, *a); break;
    case 2:
        *a = *a + y[i];
        *b = __builtin_fmaf(y[i], d, *b);
        break;
    case 3:
        *a = *a + d;
        *b = __builtin_fmaf(d, d, *b);
        break;
    default: {
        const float g = mask[i] > 0 ? y[i] : 0.0f;
        *a = *a + g;
        *b = __builtin_fmaf(g, d, *b);
    }
    }
}

static void sums_plain(int kind, const float *x, const float *y, const float *mask, float m, int64_t n, float *out) {
    float a[CHAINS] = {0}, b[CHAINS] = {0};
    for (int64_t i = 0; i < n; i++) add_element(kind, x, y, mask, m, i, &a[i % CHAINS], &b[i % CHAINS]);
    out[0] = total(a);
    if (kind >= 2) out[1] = total(b);
}

#if DLK_X86
__attribute__((target("avx2,fma")))
static void sums_avx2(int kind, const float *x, const float *y, const float *mask, float m, int64_t n, float *out) {
    __m256 a[4], b[4];
    for (int q = 0; q < 4; q++) a[q] = b[q] = _mm256_setzero_ps();
    const __m256 vm = _mm256_set1_ps(m);
    int64_t i = 0;
    for (; i + CHAINS <= n; i += CHAINS) {
        for (int q = 0; q < 4; q++) {   // add_element's cases, 8 lanes at a time
            const __m256 xv = _mm256_loadu_ps(x + i + 8 * q), d = _mm256_sub_ps(xv, vm);
            switch (kind) {
            case 0: a[q] = _mm256_add_ps(a[q], xv); break;
            case 1: a[q] = _mm256_fmadd_ps(d, d, a[q]); break;
            case 3:
                a[q] = _mm256_add_ps(a[q], d);
                b[q] = _mm256_fmadd_ps(d, d, b[q]);
                break;
            default: {   // 2, and 4 with the mask
                __m256 yv = _mm256_loadu_ps(y + i + 8 * q);
                if (kind == 4)
                    yv = _mm256_and_ps(_mm256_cmp_ps(_mm256_loadu_ps(mask + i + 8 * q), _mm256_setzero_ps(), _CMP_GT_OQ), yv);
                a[q] = _mm256_add_ps(a[q], yv);
                b[q] = _mm256_fmadd_ps(yv, d, b[q]);
            }
            }
        }
    }
    float sa[CHAINS], sb[CHAINS];
    for (int q = 0; q < 4; q++) {
        _mm256_storeu_ps(sa + 8 * q, a[q]);
        _mm256_storeu_ps(sb + 8 * q, b[q]);
    }
    for (int j = 0; i < n; i++, j++) add_element(kind, x, y, mask, m, i, &sa[j], &sb[j]);   // the tail
    out[0] = total(sa);
    if (kind >= 2) out[1] = total(sb);
}
#endif

static void sums(int kind, const float *x, const float *y, const float *mask, float m, int64_t n, float *out,
                 int plain_c) {
#if DLK_X86
    if (!plain_c && dlk_has_avx2()) {
        sums_avx2(kind, x, y, mask, m, n, out);
        return;
    }
#endif
    (void)plain_c;
    sums_plain(kind, x, y, mask, m, n, out);
}

float dlk_plane_sum_f32(const float *x, int64_t n, int plain_c) {
    float out[2];
    sums(0, x, NULL, NULL, 0, n, out, plain_c);
    return out[0];
}

float dlk_plane_squared_deviations_f32(const float *x, float m, int64_t n, int plain_c) {
    float out[2];
    sums(1, x, NULL, NULL, m, n, out, plain_c);
    return out[0];
}

void dlk_plane_gradient_sums_f32(const float *dy, const float *x, const float *mask, float m, int64_t n,
                                 float *sum_dy, float *sum_dy_xc, int plain_c) {
    float out[2];
    sums(mask ? 4 : 2, x, dy, mask, m, n, out, plain_c);
    *sum_dy = out[0];
    *sum_dy_xc = out[1];
}

void dlk_plane_shifted_sums_f32(const float *x, float k, int64_t n, float *sum_d, float *sum_d2, int plain_c) {
    float out[2];
    sums(3, x, NULL, NULL, k, n, out, plain_c);
    *sum_d = out[0];
    *sum_d2 = out[1];
}
