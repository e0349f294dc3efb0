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

#include <string.h>

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

// MARK: - Batch norm's affine pass, ReLU and 2x2 max pooling in one pass
//
// z = x k + d rounded twice (no fused multiply-add: Swift's channelAffine rounds the
// product and the sum; the vector versions are built for AVX2 without FMA, so that no
// compiler contracts them: gcc ignores the pragma below), then max(0, z) as
// `z > 0 ? z : 0` (NaN and -0 give +0, as maxps with 0 second does); each window's maximum
// is the first of its four elements (upper left, upper right, lower left, lower right) that
// no later one exceeds, as Swift's maxPool2d finds it.

#pragma STDC FP_CONTRACT OFF

static inline float relu_affine(float x, float k, float d) {
    const float z = x * k + d;
    return z > 0 ? z : 0;
}

static void pool_row_plain(const float *upper, const float *lower, int64_t first, int64_t width, int64_t count,
                           float k, float d, float *out, int32_t *argmax) {
    for (int64_t ox = 0; ox < count; ox++) {
        const int64_t i = first + 2 * ox;
        int64_t best = i;
        float top = relu_affine(upper[2 * ox], k, d);
        const float v[3] = {relu_affine(upper[2 * ox + 1], k, d), relu_affine(lower[2 * ox], k, d),
                            relu_affine(lower[2 * ox + 1], k, d)};
        const int64_t at[3] = {i + 1, i + width, i + width + 1};
        for (int j = 0; j < 3; j++) {
            const int wins = v[j] > top;
            top = wins ? v[j] : top;
            best = wins ? at[j] : best;
        }
        out[ox] = top;
        if (argmax) argmax[ox] = (int32_t)best;
    }
}

#if DLK_X86
// The first n of 8 lanes (all for n >= 8, none for n <= 0), as a mask.
__attribute__((target("avx2")))
static inline __m256i first_lanes(int64_t n) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32((int)(n < 8 ? n : 8)), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

// 8 floats from p, or the first n (the others 0, their memory not read) when n < 8.
__attribute__((target("avx2")))
static inline __m256 load_first(const float *p, int64_t n) {
    return n >= 8 ? _mm256_loadu_ps(p) : _mm256_maskload_ps(p, first_lanes(n));
}

// v to p, or its first n lanes when n < 8.
__attribute__((target("avx2")))
static inline void store_first(float *p, int64_t n, __m256 v) {
    if (n >= 8) _mm256_storeu_ps(p, v);
    else _mm256_maskstore_ps(p, first_lanes(n), v);
}

// Eight windows side by side: the row's 16 elements from `p` (the first 2 n when n < 8, the
// others neither read nor used), after the affine pass and ReLU, split into the windows'
// left (even) and right (odd) elements.
__attribute__((target("avx2")))
static inline void pool_halves_avx2(const float *p, int64_t n, __m256 k, __m256 d, __m256 *left, __m256 *right) {
    const __m256 zero = _mm256_setzero_ps();
    const __m256 a = _mm256_max_ps(_mm256_add_ps(_mm256_mul_ps(load_first(p, 2 * n), k), d), zero);
    const __m256 b = _mm256_max_ps(_mm256_add_ps(_mm256_mul_ps(load_first(p + 8, 2 * n - 8), k), d), zero);
    // [a0 a2 b0 b2 | a4 a6 b4 b6] -> [a0 a2 a4 a6 b0 b2 b4 b6], and the odd ones likewise
    *left = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(_mm256_shuffle_ps(a, b, 0x88)), 0xd8));
    *right = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(_mm256_shuffle_ps(a, b, 0xdd)), 0xd8));
}

__attribute__((target("avx2")))
static void pool_row_avx2(const float *upper, const float *lower, int64_t first, int64_t width, int64_t count,
                          float k, float d, float *out, int32_t *argmax) {
    const __m256 vk = _mm256_set1_ps(k), vd = _mm256_set1_ps(d);
    const __m256i step = _mm256_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14);
    for (int64_t ox = 0; ox < count; ox += 8) {
        const int64_t n = count - ox < 8 ? count - ox : 8;
        __m256 ul, ur, ll, lr;
        pool_halves_avx2(upper + 2 * ox, n, vk, vd, &ul, &ur);
        pool_halves_avx2(lower + 2 * ox, n, vk, vd, &ll, &lr);
        const __m256i i0 = _mm256_add_epi32(_mm256_set1_epi32((int)(first + 2 * ox)), step);
        __m256 top = ul;
        __m256i best = i0;
        const __m256 v[3] = {ur, ll, lr};
        const __m256i at[3] = {_mm256_add_epi32(i0, _mm256_set1_epi32(1)), _mm256_add_epi32(i0, _mm256_set1_epi32((int)width)),
                               _mm256_add_epi32(i0, _mm256_set1_epi32((int)width + 1))};
        for (int j = 0; j < 3; j++) {
            const __m256 wins = _mm256_cmp_ps(v[j], top, _CMP_GT_OQ);
            top = _mm256_blendv_ps(top, v[j], wins);
            best = _mm256_castps_si256(_mm256_blendv_ps(_mm256_castsi256_ps(best), _mm256_castsi256_ps(at[j]), wins));
        }
        store_first(out + ox, n, top);
        if (argmax) store_first((float *)(argmax + ox), n, _mm256_castsi256_ps(best));   // the index bits, as they are
    }
}
#endif

void dlk_affine_relu_max_pool_2x2_f32(const float *x, float *out, int32_t *argmax, float k, float d, int64_t height,
                                      int64_t width, int plain_c) {
    const int64_t out_height = height / 2, out_width = width / 2;
    for (int64_t oy = 0; oy < out_height; oy++) {
        const float *upper = x + 2 * oy * width;
        float *o = out + oy * out_width;
        int32_t *a = argmax ? argmax + oy * out_width : NULL;
#if DLK_X86
        if (!plain_c && dlk_has_avx2()) {
            pool_row_avx2(upper, upper + width, 2 * oy * width, width, out_width, k, d, o, a);
            continue;
        }
#endif
        (void)plain_c;
        pool_row_plain(upper, upper + width, 2 * oy * width, width, out_width, k, d, o, a);
    }
}

// MARK: - Its backward pass
//
// dz = dy[o] where out[o] > 0 (the ReLU's mask at the window's maximum), else 0. The sums run
// in 8 chains (output o in chain o % 8) added in a fixed tree, products fused: the same bits
// from the plain C and the AVX2 versions.

// `value` where gate > 0, else +0, as `gate > 0 ? value : 0` but with a mask (the compiler
// made the conditional a branch, mispredicted on the ReLU's signs).
static inline float where_positive(float gate, float value) {
    uint32_t bits;
    memcpy(&bits, &value, sizeof bits);
    bits &= -(uint32_t)(gate > 0);
    memcpy(&value, &bits, sizeof value);
    return value;
}

static float total8(float *s) {
    for (int width = 4; width >= 1; width /= 2)
        for (int j = 0; j < width; j++) s[j] = s[j] + s[j + width];
    return s[0];
}

static void pooled_sums_plain(const float *dy, const float *out, const int32_t *argmax, const float *x, float m,
                              int64_t from, int64_t n, float *sa, float *sb) {
    for (int64_t o = from; o < n; o++) {
        const float dz = where_positive(out[o], dy[o]);
        sa[o % 8] += dz;
        sb[o % 8] = __builtin_fmaf(dz, x[argmax[o]] - m, sb[o % 8]);
    }
}

#if DLK_X86
__attribute__((target("avx2,fma")))
static int64_t pooled_sums_avx2(const float *dy, const float *out, const int32_t *argmax, const float *x, float m,
                                int64_t n, float *sa, float *sb) {
    __m256 a = _mm256_setzero_ps(), b = a;
    const __m256 vm = _mm256_set1_ps(m), zero = _mm256_setzero_ps();
    int64_t o = 0;
    for (; o + 8 <= n; o += 8) {
        const __m256 positive = _mm256_cmp_ps(_mm256_loadu_ps(out + o), zero, _CMP_GT_OQ);
        const __m256 dz = _mm256_and_ps(positive, _mm256_loadu_ps(dy + o));
        const __m256 xc = _mm256_sub_ps(_mm256_i32gather_ps(x, _mm256_loadu_si256((const __m256i *)(argmax + o)), 4), vm);
        a = _mm256_add_ps(a, dz);
        b = _mm256_fmadd_ps(dz, xc, b);
    }
    _mm256_storeu_ps(sa, a);
    _mm256_storeu_ps(sb, b);
    return o;
}
#endif

void dlk_pooled_gradient_sums_f32(const float *dy, const float *out, const int32_t *argmax, const float *x, float m,
                                  int64_t n, float *sum_dy, float *sum_dy_xc, int plain_c) {
    float sa[8] = {0}, sb[8] = {0};
    int64_t from = 0;
#if DLK_X86
    if (!plain_c && dlk_has_avx2()) from = pooled_sums_avx2(dy, out, argmax, x, m, n, sa, sb);
#endif
    (void)plain_c;
    pooled_sums_plain(dy, out, argmax, x, m, from, n, sa, sb);
    *sum_dy = total8(sa);
    *sum_dy_xc = total8(sb);
}

// dx = k ((dz - mean_dy) - ((x - m) s) mean_dy_xhat), each operation rounded as written (as
// Swift's batchNormBackward computes it); dx = 0 k, then dz k at the maxima, with fixed
// statistics.
static inline float pooled_input_gradient(float dz, float x, float k, float m, float s, float mean_dy, float mean_dy_xhat) {
    return k * ((dz - mean_dy) - ((x - m) * s) * mean_dy_xhat);
}

#if DLK_X86
// The gradients of one row of x (`x`, `dx`) at up to 8 windows' elements (2 n of them), each
// with its dz (`left` for the windows' even elements, `right` for the odd ones).
__attribute__((target("avx2")))
static inline void pooled_row_gradient_avx2(const float *x, float *dx, int64_t n, __m256 left, __m256 right, __m256 k,
                                            __m256 m, __m256 s, __m256 mean_dy, __m256 mean_dy_xhat) {
    // [l0 r0 l1 r1 | l4 r4 l5 r5] and [l2 r2 l3 r3 | l6 r6 l7 r7] -> the row's order
    const __m256 low = _mm256_unpacklo_ps(left, right), high = _mm256_unpackhi_ps(left, right);
    const __m256 dz[2] = {_mm256_permute2f128_ps(low, high, 0x20), _mm256_permute2f128_ps(low, high, 0x31)};
    for (int h = 0; h < 2; h++) {
        const __m256 t = _mm256_mul_ps(_mm256_mul_ps(_mm256_sub_ps(load_first(x + 8 * h, 2 * n - 8 * h), m), s), mean_dy_xhat);
        store_first(dx + 8 * h, 2 * n - 8 * h, _mm256_mul_ps(k, _mm256_sub_ps(_mm256_sub_ps(dz[h], mean_dy), t)));
    }
}

// Rows 2 oy and 2 oy + 1 of the plane, at the windows' elements: each window's dz (from dy,
// out and argmax) goes to the element argmax names, 0 to the other three.
__attribute__((target("avx2")))
static void pooled_window_rows_avx2(const float *x, const float *dy, const float *out, const int32_t *argmax, float *dx,
                                    int64_t oy, int64_t width, int64_t count, float k, float m, float s, float mean_dy,
                                    float mean_dy_xhat) {
    const __m256 vk = _mm256_set1_ps(k), vm = _mm256_set1_ps(m), vs = _mm256_set1_ps(s);
    const __m256 vmean_dy = _mm256_set1_ps(mean_dy), vmean_dy_xhat = _mm256_set1_ps(mean_dy_xhat), zero = _mm256_setzero_ps();
    const __m256i step = _mm256_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14);
    const int64_t upper = 2 * oy * width;
    for (int64_t ox = 0; ox < count; ox += 8) {
        const int64_t n = count - ox < 8 ? count - ox : 8, o = oy * count + ox;
        const __m256i at = _mm256_castps_si256(load_first((const float *)(argmax + o), n));   // the index bits
        const __m256 dz = _mm256_and_ps(_mm256_cmp_ps(load_first(out + o, n), zero, _CMP_GT_OQ), load_first(dy + o, n));
        const __m256i i0 = _mm256_add_epi32(_mm256_set1_epi32((int)(upper + 2 * ox)), step);
        const __m256i i2 = _mm256_add_epi32(i0, _mm256_set1_epi32((int)width)), one = _mm256_set1_epi32(1);
#define DZ_AT(index) _mm256_and_ps(_mm256_castsi256_ps(_mm256_cmpeq_epi32(at, index)), dz)
        pooled_row_gradient_avx2(x + upper + 2 * ox, dx + upper + 2 * ox, n, DZ_AT(i0), DZ_AT(_mm256_add_epi32(i0, one)),
                                 vk, vm, vs, vmean_dy, vmean_dy_xhat);
        pooled_row_gradient_avx2(x + upper + width + 2 * ox, dx + upper + width + 2 * ox, n, DZ_AT(i2),
                                 DZ_AT(_mm256_add_epi32(i2, one)), vk, vm, vs, vmean_dy, vmean_dy_xhat);
#undef DZ_AT
    }
}
#endif

void dlk_pooled_input_gradient_f32(const float *x, const float *dy, const float *out, const int32_t *argmax, float *dx,
                                   int64_t height, int64_t width, float k, float m, float s, float mean_dy,
                                   float mean_dy_xhat, int batch_statistics, int plain_c) {
    const int64_t inputs = height * width, out_height = height / 2, out_width = width / 2, outputs = out_height * out_width;
    if (!batch_statistics) {
        for (int64_t i = 0; i < inputs; i++) dx[i] = 0 * k;
        for (int64_t o = 0; o < outputs; o++) dx[argmax[o]] = where_positive(out[o], dy[o]) * k;
        return;
    }
#if DLK_X86
    if (!plain_c && dlk_has_avx2()) {
        for (int64_t oy = 0; oy < out_height; oy++) {
            pooled_window_rows_avx2(x, dy, out, argmax, dx, oy, width, out_width, k, m, s, mean_dy, mean_dy_xhat);
            if (width % 2) {   // the two rows' last column, in no window
                const int64_t last = 2 * oy * width + width - 1;
                dx[last] = pooled_input_gradient(0, x[last], k, m, s, mean_dy, mean_dy_xhat);
                dx[last + width] = pooled_input_gradient(0, x[last + width], k, m, s, mean_dy, mean_dy_xhat);
            }
        }
        for (int64_t i = 2 * out_height * width; i < inputs; i++)   // the last row, in no window
            dx[i] = pooled_input_gradient(0, x[i], k, m, s, mean_dy, mean_dy_xhat);
        return;
    }
#endif
    (void)plain_c;
    for (int64_t i = 0; i < inputs; i++) dx[i] = pooled_input_gradient(0, x[i], k, m, s, mean_dy, mean_dy_xhat);
    for (int64_t o = 0; o < outputs; o++) {
        const int32_t a = argmax[o];
        dx[a] = pooled_input_gradient(where_positive(out[o], dy[o]), x[a], k, m, s, mean_dy, mean_dy_xhat);
    }
}
