// Optimizer updates for float32 parameters (see dl_kernels.h). The same formulas as the
// generic Swift versions in Kernels.swift, in the same order of operations and without
// fused multiply-adds, so both give the same bits; these run 8 lanes at a time (Swift
// cannot vectorise its loops: it cannot rule out that the arrays overlap).
#include "dl_kernels.h"

#pragma STDC FP_CONTRACT OFF

#if defined(__x86_64__) && (defined(__clang__) || defined(__GNUC__))
#define DLK_X86 1
#include <immintrin.h>
#else
#define DLK_X86 0
#endif

// MARK: - One element (the portable versions, and the tails of the vector ones)

static inline void sgd_one(float *p, const float *g, int64_t i, float lr, float wd) {
    p[i] = p[i] - lr * (g[i] + wd * p[i]);
}

static inline void momentum_one(float *p, const float *g, float *v, int64_t i, float lr, float m, float wd) {
    v[i] = m * v[i] - lr * (g[i] + wd * p[i]);
    p[i] = p[i] + v[i];
}

static inline void adam_one(float *p, const float *g, float *m, float *v, int64_t i, const dlk_adam *a) {
    const float gi = g[i] + a->weight_decay * p[i];
    m[i] = a->beta1 * m[i] + a->one_minus_beta1 * gi;
    v[i] = a->beta2 * v[i] + a->one_minus_beta2 * gi * gi;
    p[i] = p[i] - a->step_size * m[i] / (__builtin_sqrtf(v[i]) * a->inv_sqrt_c2 + a->eps);
}

static inline void rmsprop_one(float *p, const float *g, float *s, int64_t i, float lr, float rho,
                               float one_minus_rho, float eps, float wd) {
    const float gi = g[i] + wd * p[i];
    s[i] = rho * s[i] + one_minus_rho * gi * gi;
    p[i] = p[i] - lr * gi / (__builtin_sqrtf(s[i]) + eps);
}

// MARK: - Eight at a time

#if DLK_X86
#define L(x) _mm256_loadu_ps(x)
#define S(x, y) _mm256_storeu_ps(x, y)
#define B(x) _mm256_set1_ps(x)

__attribute__((target("avx2")))
static int64_t sgd_avx2(float *p, const float *g, int64_t n, float lr, float wd) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256 pi = L(p + i);
        S(p + i, _mm256_sub_ps(pi, _mm256_mul_ps(B(lr), _mm256_add_ps(L(g + i), _mm256_mul_ps(B(wd), pi)))));
    }
    return i;
}

__attribute__((target("avx2")))
static int64_t momentum_avx2(float *p, const float *g, float *v, int64_t n, float lr, float m, float wd) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256 pi = L(p + i);
        const __m256 vi = _mm256_sub_ps(_mm256_mul_ps(B(m), L(v + i)),
                                        _mm256_mul_ps(B(lr), _mm256_add_ps(L(g + i), _mm256_mul_ps(B(wd), pi))));
        S(v + i, vi);
        S(p + i, _mm256_add_ps(pi, vi));
    }
    return i;
}

__attribute__((target("avx2")))
static int64_t adam_avx2(float *p, const float *g, float *m, float *v, int64_t n, const dlk_adam *a) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256 pi = L(p + i);
        const __m256 gi = _mm256_add_ps(L(g + i), _mm256_mul_ps(B(a->weight_decay), pi));
        const __m256 mi = _mm256_add_ps(_mm256_mul_ps(B(a->beta1), L(m + i)), _mm256_mul_ps(B(a->one_minus_beta1), gi));
        const __m256 vi = _mm256_add_ps(_mm256_mul_ps(B(a->beta2), L(v + i)),
                                        _mm256_mul_ps(_mm256_mul_ps(B(a->one_minus_beta2), gi), gi));
        S(m + i, mi);
        S(v + i, vi);
        const __m256 denominator = _mm256_add_ps(_mm256_mul_ps(_mm256_sqrt_ps(vi), B(a->inv_sqrt_c2)), B(a->eps));
        S(p + i, _mm256_sub_ps(pi, _mm256_div_ps(_mm256_mul_ps(B(a->step_size), mi), denominator)));
    }
    return i;
}

__attribute__((target("avx2")))
static int64_t rmsprop_avx2(float *p, const float *g, float *s, int64_t n, float lr, float rho,
                            float one_minus_rho, float eps, float wd) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256 pi = L(p + i);
        const __m256 gi = _mm256_add_ps(L(g + i), _mm256_mul_ps(B(wd), pi));
        const __m256 si = _mm256_add_ps(_mm256_mul_ps(B(rho), L(s + i)), _mm256_mul_ps(_mm256_mul_ps(B(one_minus_rho), gi), gi));
        S(s + i, si);
        S(p + i, _mm256_sub_ps(pi, _mm256_div_ps(_mm256_mul_ps(B(lr), gi), _mm256_add_ps(_mm256_sqrt_ps(si), B(eps)))));
    }
    return i;
}
#endif

// MARK: - Entry points

static void sgd_update(float *p, const float *g, int64_t n, float lr, float weight_decay, int portable) {
    int64_t i = 0;
#if DLK_X86
    if (!portable && dlk_has_avx2()) i = sgd_avx2(p, g, n, lr, weight_decay);
#endif
    (void)portable;
    for (; i < n; i++) sgd_one(p, g, i, lr, weight_decay);
}

static void momentum_update(float *p, const float *g, float *v, int64_t n, float lr, float momentum,
                      float weight_decay, int portable) {
    int64_t i = 0;
#if DLK_X86
    if (!portable && dlk_has_avx2()) i = momentum_avx2(p, g, v, n, lr, momentum, weight_decay);
#endif
    (void)portable;
    for (; i < n; i++) momentum_one(p, g, v, i, lr, momentum, weight_decay);
}

static void adam_update(float *p, const float *g, float *m, float *v, int64_t n, const dlk_adam *a, int portable) {
    int64_t i = 0;
#if DLK_X86
    if (!portable && dlk_has_avx2()) i = adam_avx2(p, g, m, v, n, a);
#endif
    (void)portable;
    for (; i < n; i++) adam_one(p, g, m, v, i, a);
}

static void rmsprop_update(float *p, const float *g, float *s, int64_t n, float lr, float rho, float one_minus_rho,
                     float eps, float weight_decay, int portable) {
    int64_t i = 0;
#if DLK_X86
    if (!portable && dlk_has_avx2()) i = rmsprop_avx2(p, g, s, n, lr, rho, one_minus_rho, eps, weight_decay);
#endif
    (void)portable;
    for (; i < n; i++) rmsprop_one(p, g, s, i, lr, rho, one_minus_rho, eps, weight_decay);
}

// MARK: - In two parts

struct update_job {
    const dlk_update *u;
    float *p;
    const float *g;
    float *s1, *s2;
    int64_t n, split;
    int portable;
};

static void update_range(const struct update_job *j, int64_t begin, int64_t end) {
    const dlk_update *u = j->u;
    float *p = j->p + begin, *s1 = j->s1 ? j->s1 + begin : NULL, *s2 = j->s2 ? j->s2 + begin : NULL;
    const float *g = j->g + begin;
    const int64_t n = end - begin;
    switch (u->kind) {
    case DLK_SGD: sgd_update(p, g, n, u->lr, u->weight_decay, j->portable); break;
    case DLK_MOMENTUM: momentum_update(p, g, s1, n, u->lr, u->momentum, u->weight_decay, j->portable); break;
    case DLK_ADAM: adam_update(p, g, s1, s2, n, &u->adam, j->portable); break;
    case DLK_RMSPROP:
        rmsprop_update(p, g, s1, n, u->lr, u->rho, u->one_minus_rho, u->eps, u->weight_decay, j->portable);
        break;
    }
}

static void update_part(void *context, int64_t begin, int64_t end, int thread) {
    (void)thread;
    const struct update_job *j = context;
    for (int64_t part = begin; part < end; part++)
        update_range(j, part ? j->split : 0, part ? j->n : j->split);
}

void dlk_update_f32(const dlk_update *u, float *p, const float *g, float *s1, float *s2, int64_t n, int64_t split,
                    int portable) {
    struct update_job job = {u, p, g, s1, s2, n, split, portable};
    if (split <= 0 || split >= n) {
        update_range(&job, 0, n);
        return;
    }
    dlk_parallel_for(2, 1, update_part, &job);
}
