// Optimizer updates (see dlk_update in dl_kernels.h): the library's one implementation of
// each rule, per element type. The scalar loops are written once, as a macro instantiated
// for float and double; float32 also has AVX2 versions that round each operation as the
// scalar loop does (no fused multiply-add, sqrt and division correctly rounded), so an
// element gets the same bits whichever path or thread updates it. The tests hold both to
// a float64 reference written out in Swift.
#include "dl_kernels.h"

#include <math.h>

#pragma STDC FP_CONTRACT OFF

#if defined(__x86_64__) && (defined(__clang__) || defined(__GNUC__))
#define DLK_X86 1
#include <immintrin.h>
#else
#define DLK_X86 0
#endif

// MARK: - The rules, one element at a time

// The update's constants rounded once to the element type; keep = 1 - lr * decay.
#define DEFINE_CONSTANTS(T)                                                                      \
    typedef struct {                                                                             \
        T lr, scale, l2, keep, momentum, beta1, beta2, one_minus_beta1, one_minus_beta2;         \
        T step_size, inv_sqrt_c2, rho, one_minus_rho, eps;                                       \
    } constants_##T;                                                                             \
    static constants_##T constants_of_##T(const dlk_update *u) {                                 \
        const double t = (double)(u->step > 0 ? u->step : 1);                                    \
        constants_##T k = {                                                                      \
            (T)u->lr, (T)u->grad_scale, (T)u->l2, (T)(1 - u->lr * u->decay), (T)u->momentum,     \
            (T)u->beta1, (T)u->beta2, (T)(1 - u->beta1), (T)(1 - u->beta2),                      \
            (T)(u->lr / (1 - pow(u->beta1, t))), (T)(1 / sqrt(1 - pow(u->beta2, t))),            \
            (T)u->rho, (T)(1 - u->rho), (T)u->eps};                                              \
        return k;                                                                                \
    }

// Elements [i, n) of each rule; p_i is the parameter after decoupled decay, g_i the
// gradient as the rule sees it (scaled, plus the L2 term).
#define DEFINE_SCALAR_RULES(T, SQRT)                                                             \
    static void scalar_rules_##T(int kind, const constants_##T *k, T *p, const T *g, T *s1, T *s2, \
                                 int64_t i, int64_t n) {                                         \
        for (; i < n; i++) {                                                                     \
            const T p_i = k->keep * p[i];                                                        \
            const T g_i = k->scale * g[i] + k->l2 * p_i;                                         \
            switch (kind) {                                                                      \
            case DLK_SGD: p[i] = p_i - k->lr * g_i; break;                                       \
            case DLK_MOMENTUM:                                                                   \
                s1[i] = k->momentum * s1[i] - k->lr * g_i;                                       \
                p[i] = p_i + s1[i];                                                              \
                break;                                                                           \
            case DLK_NESTEROV:                                                                   \
                s1[i] = k->momentum * s1[i] - k->lr * g_i;                                       \
                p[i] = p_i + (k->momentum * s1[i] - k->lr * g_i);                                \
                break;                                                                           \
            case DLK_ADAM:                                                                       \
                s1[i] = k->beta1 * s1[i] + k->one_minus_beta1 * g_i;                             \
                s2[i] = k->beta2 * s2[i] + k->one_minus_beta2 * g_i * g_i;                       \
                p[i] = p_i - k->step_size * s1[i] / (SQRT(s2[i]) * k->inv_sqrt_c2 + k->eps);     \
                break;                                                                           \
            case DLK_RMSPROP:                                                                    \
                s1[i] = k->rho * s1[i] + k->one_minus_rho * g_i * g_i;                           \
                p[i] = p_i - k->lr * g_i / (SQRT(s1[i]) + k->eps);                               \
                break;                                                                           \
            }                                                                                    \
        }                                                                                        \
    }

DEFINE_CONSTANTS(float)
DEFINE_CONSTANTS(double)
DEFINE_SCALAR_RULES(float, sqrtf)
DEFINE_SCALAR_RULES(double, sqrt)

// MARK: - float32, eight at a time

#if DLK_X86
#define L(x) _mm256_loadu_ps(x)
#define S(x, y) _mm256_storeu_ps(x, y)
#define B(x) _mm256_set1_ps(x)
#define ADD _mm256_add_ps
#define SUB _mm256_sub_ps
#define MUL _mm256_mul_ps

// The scalar rules' operations, in their order, on [0, n - n % 8); returns where they stopped.
// Inlined into one loop per rule (`kind` a constant there), and for plain steps (no decoupled
// decay, gradient scale 1, no L2 term) into loops that skip those three multiplications:
// x * 1 and x + 0 * y give x's bits, so the results are the same.
__attribute__((target("avx2"), always_inline))
static inline int64_t vector_rule_float(const int kind, const int plain, const constants_float *k, float *p,
                                        const float *g, float *s1, float *s2, int64_t n) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256 p_i = plain ? L(p + i) : MUL(B(k->keep), L(p + i));
        const __m256 g_i = plain ? L(g + i) : ADD(MUL(B(k->scale), L(g + i)), MUL(B(k->l2), p_i));
        switch (kind) {
        case DLK_SGD: S(p + i, SUB(p_i, MUL(B(k->lr), g_i))); break;
        case DLK_MOMENTUM:
        case DLK_NESTEROV: {
            const __m256 v = SUB(MUL(B(k->momentum), L(s1 + i)), MUL(B(k->lr), g_i));
            S(s1 + i, v);
            S(p + i, ADD(p_i, kind == DLK_MOMENTUM ? v : SUB(MUL(B(k->momentum), v), MUL(B(k->lr), g_i))));
            break;
        }
        case DLK_ADAM: {
            const __m256 m = ADD(MUL(B(k->beta1), L(s1 + i)), MUL(B(k->one_minus_beta1), g_i));
            const __m256 v = ADD(MUL(B(k->beta2), L(s2 + i)), MUL(MUL(B(k->one_minus_beta2), g_i), g_i));
            S(s1 + i, m);
            S(s2 + i, v);
            const __m256 denominator = ADD(MUL(_mm256_sqrt_ps(v), B(k->inv_sqrt_c2)), B(k->eps));
            S(p + i, SUB(p_i, _mm256_div_ps(MUL(B(k->step_size), m), denominator)));
            break;
        }
        case DLK_RMSPROP: {
            const __m256 s = ADD(MUL(B(k->rho), L(s1 + i)), MUL(MUL(B(k->one_minus_rho), g_i), g_i));
            S(s1 + i, s);
            S(p + i, SUB(p_i, _mm256_div_ps(MUL(B(k->lr), g_i), ADD(_mm256_sqrt_ps(s), B(k->eps)))));
            break;
        }
        }
    }
    return i;
}

#define RULE_LOOPS(KIND)                                                                         \
    case KIND:                                                                                   \
        return plain ? vector_rule_float(KIND, 1, k, p, g, s1, s2, n)                            \
                     : vector_rule_float(KIND, 0, k, p, g, s1, s2, n);

__attribute__((target("avx2")))
static int64_t vector_rules_float(int kind, const constants_float *k, float *p, const float *g, float *s1, float *s2,
                                  int64_t n) {
    const int plain = k->keep == 1 && k->scale == 1 && k->l2 == 0;
    switch (kind) {
    RULE_LOOPS(DLK_SGD)
    RULE_LOOPS(DLK_MOMENTUM)
    RULE_LOOPS(DLK_NESTEROV)
    RULE_LOOPS(DLK_ADAM)
    RULE_LOOPS(DLK_RMSPROP)
    }
    return 0;
}
#endif

// MARK: - Entry points, shared among the kernel threads

// Below this many elements per thread, waking threads costs more than the update.
#define MIN_ELEMENTS_PER_THREAD (1 << 15)

struct update_job {
    int kind, portable;
    const void *k;
    void *p, *s1, *s2;
    const void *g;
};

static void update_range_float(void *context, int64_t begin, int64_t end, int thread) {
    (void)thread;
    const struct update_job *j = context;
    const constants_float *k = j->k;
    float *p = (float *)j->p + begin, *s1 = j->s1 ? (float *)j->s1 + begin : NULL;
    float *s2 = j->s2 ? (float *)j->s2 + begin : NULL;
    const float *g = (const float *)j->g + begin;
    int64_t i = 0;
#if DLK_X86
    if (!j->portable && dlk_has_avx2()) i = vector_rules_float(j->kind, k, p, g, s1, s2, end - begin);
#endif
    scalar_rules_float(j->kind, k, p, g, s1, s2, i, end - begin);
}

static void update_range_double(void *context, int64_t begin, int64_t end, int thread) {
    (void)thread;
    const struct update_job *j = context;
    double *p = (double *)j->p + begin, *s1 = j->s1 ? (double *)j->s1 + begin : NULL;
    double *s2 = j->s2 ? (double *)j->s2 + begin : NULL;
    scalar_rules_double(j->kind, j->k, p, (const double *)j->g + begin, s1, s2, 0, end - begin);
}

void dlk_update_f32(const dlk_update *u, float *p, const float *g, float *s1, float *s2, int64_t n, int portable) {
    const constants_float k = constants_of_float(u);
    struct update_job job = {u->kind, portable, &k, p, s1, s2, g};
    dlk_parallel_for(n, MIN_ELEMENTS_PER_THREAD, update_range_float, &job);
}

void dlk_update_f64(const dlk_update *u, double *p, const double *g, double *s1, double *s2, int64_t n) {
    const constants_double k = constants_of_double(u);
    struct update_job job = {u->kind, 1, &k, p, s1, s2, g};
    dlk_parallel_for(n, MIN_ELEMENTS_PER_THREAD, update_range_double, &job);
}

double dlk_sum_squares_f32(const float *x, int64_t n) {
    double sum = 0;
    for (int64_t i = 0; i < n; i++) sum += (double)x[i] * (double)x[i];
    return sum;
}

double dlk_sum_squares_f64(const double *x, int64_t n) {
    double sum = 0;
    for (int64_t i = 0; i < n; i++) sum += x[i] * x[i];
    return sum;
}
