// Optimizer updates (see dlk_update in dl_kernels.h): the library's one implementation of
// each rule, per element type. The scalar loops are written once, as a macro instantiated
// for float and double; float32 also has AVX2 versions that round each operation as the
// scalar loop does (no fused multiply-add, sqrt and division correctly rounded), so an
// element gets the same bits whichever path or thread updates it. The tests hold both to
// a float64 reference written out in Swift.
#include "dl_kernels.h"
#include "x86.h"

#include <float.h>
#include <math.h>
#include <string.h>

#pragma STDC FP_CONTRACT OFF

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

// One element of each rule: returns the new parameter and updates the element's state in
// *s1, *s2. p_i is the parameter after decoupled decay, g_i the gradient as the rule sees it
// (scaled, plus the L2 term). The update (scalar_rules) and the check that an update stays
// finite (scalar_finite) both run this, so the check sees exactly the bits the update writes.
#define DEFINE_SCALAR_RULES(T, SQRT, IS_FINITE)                                                  \
    static inline T rule_##T(int kind, const constants_##T *k, T p, T g, T *s1, T *s2) {         \
        const T p_i = k->keep * p;                                                               \
        const T g_i = k->scale * g + k->l2 * p_i;                                                \
        switch (kind) {                                                                          \
        case DLK_SGD: return p_i - k->lr * g_i;                                                  \
        case DLK_MOMENTUM:                                                                       \
            *s1 = k->momentum * *s1 - k->lr * g_i;                                               \
            return p_i + *s1;                                                                    \
        case DLK_NESTEROV:                                                                       \
            *s1 = k->momentum * *s1 - k->lr * g_i;                                               \
            return p_i + (k->momentum * *s1 - k->lr * g_i);                                      \
        case DLK_ADAM:                                                                           \
            *s1 = k->beta1 * *s1 + k->one_minus_beta1 * g_i;                                     \
            *s2 = k->beta2 * *s2 + k->one_minus_beta2 * g_i * g_i;                               \
            return p_i - k->step_size * *s1 / (SQRT(*s2) * k->inv_sqrt_c2 + k->eps);             \
        case DLK_RMSPROP:                                                                        \
            *s1 = k->rho * *s1 + k->one_minus_rho * g_i * g_i;                                   \
            return p_i - k->lr * g_i / (SQRT(*s1) + k->eps);                                     \
        }                                                                                        \
        return p;                                                                                \
    }                                                                                            \
    /* Elements [i, n), in place. */                                                             \
    static void scalar_rules_##T(int kind, const constants_##T *k, T *p, const T *g, T *s1, T *s2, \
                                 int64_t i, int64_t n) {                                         \
        for (; i < n; i++) {                                                                     \
            T a = s1 ? s1[i] : 0, b = s2 ? s2[i] : 0;                                            \
            p[i] = rule_##T(kind, k, p[i], g[i], &a, &b);                                        \
            if (s1) s1[i] = a;                                                                   \
            if (s2) s2[i] = b;                                                                   \
        }                                                                                        \
    }                                                                                            \
    /* 1 when updating elements [0, n) would leave every value finite; writes nothing. */         \
    static int scalar_finite_##T(int kind, const constants_##T *k, const T *p, const T *g,       \
                                 const T *s1, const T *s2, int64_t n) {                          \
        for (int64_t i = 0; i < n; i++) {                                                        \
            T a = s1 ? s1[i] : 0, b = s2 ? s2[i] : 0;                                            \
            const T q = rule_##T(kind, k, p[i], g[i], &a, &b);                                   \
            if (!(IS_FINITE(q) && IS_FINITE(a) && IS_FINITE(b))) return 0;                       \
        }                                                                                        \
        return 1;                                                                                \
    }

DEFINE_CONSTANTS(float)
DEFINE_CONSTANTS(double)
DEFINE_SCALAR_RULES(float, sqrtf, isfinite)
DEFINE_SCALAR_RULES(double, sqrt, isfinite)

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

// MARK: - Would an update stay finite?

// Below this many elements per thread, waking threads costs more than the update saves.
// Above it the split pays twice over: each core updates the rows of a weight matrix whose
// gradient it computed and whose forward product it makes next step, so those lines stay
// in its cache (see bench/README.md: a serial update measured slower on MNIST).
#define MIN_ELEMENTS_PER_THREAD (1 << 15)

// The largest |x[i]|, found on the bit patterns: with the sign bit cleared, the order of the
// integers is the order of the magnitudes, infinity above every finite value and NaN above
// infinity, so a NaN is never lost by the reduction (a float max would drop it).
static uint32_t max_abs_bits_f32_plain(const float *x, int64_t i, int64_t n) {
    const uint32_t *bits = (const uint32_t *)(const void *)x;
    uint32_t m = 0;
    for (; i < n; i++) {
        const uint32_t b = bits[i] & 0x7fffffffu;
        m = b > m ? b : m;
    }
    return m;
}
#if DLK_X86
// Four accumulators, so the maxima of 32 values are in flight at once.
__attribute__((target("avx2")))
static uint32_t max_abs_bits_f32_avx2(const float *x, int64_t n) {
    const __m256i mask = _mm256_set1_epi32(0x7fffffff);
    __m256i a0 = _mm256_setzero_si256(), a1 = a0, a2 = a0, a3 = a0;
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        a0 = _mm256_max_epu32(a0, _mm256_and_si256(_mm256_loadu_si256((const __m256i *)(x + i)), mask));
        a1 = _mm256_max_epu32(a1, _mm256_and_si256(_mm256_loadu_si256((const __m256i *)(x + i + 8)), mask));
        a2 = _mm256_max_epu32(a2, _mm256_and_si256(_mm256_loadu_si256((const __m256i *)(x + i + 16)), mask));
        a3 = _mm256_max_epu32(a3, _mm256_and_si256(_mm256_loadu_si256((const __m256i *)(x + i + 24)), mask));
    }
    const __m256i a = _mm256_max_epu32(_mm256_max_epu32(a0, a1), _mm256_max_epu32(a2, a3));
    uint32_t lanes[8];
    _mm256_storeu_si256((__m256i *)lanes, a);
    uint32_t m = max_abs_bits_f32_plain(x, i, n);
    for (int k = 0; k < 8; k++) m = lanes[k] > m ? lanes[k] : m;
    return m;
}
#endif

static uint32_t max_abs_bits_f32(const float *x, int64_t n) {
#if DLK_X86
    return dlk_has_avx2() ? max_abs_bits_f32_avx2(x, n) : max_abs_bits_f32_plain(x, 0, n);
#else
    return max_abs_bits_f32_plain(x, 0, n);
#endif
}

// Long arrays are shared among the kernel threads as the update shares them (each core
// reads the part it will update); a maximum does not depend on how the array is split.
struct max_job {
    const float *x;
    uint32_t found[DLK_MAX_THREADS];
};

static void max_range_f32(void *context, int64_t begin, int64_t end, int thread) {
    struct max_job *j = context;
    const uint32_t m = max_abs_bits_f32(j->x + begin, end - begin);
    if (m > j->found[thread]) j->found[thread] = m;
}

static double max_abs_float(const float *x, int64_t n) {
    if (!x) return 0;
    struct max_job job = {x, {0}};
    dlk_parallel_for(n, MIN_ELEMENTS_PER_THREAD, max_range_f32, &job);
    uint32_t m = 0;
    for (int t = 0; t < DLK_MAX_THREADS; t++) m = job.found[t] > m ? job.found[t] : m;
    float f;
    memcpy(&f, &m, sizeof f);
    return f;
}

static double max_abs_double(const double *x, int64_t n) {
    if (!x) return 0;
    const uint64_t *bits = (const uint64_t *)(const void *)x;
    uint64_t m = 0;
    for (int64_t i = 0; i < n; i++) {
        const uint64_t b = bits[i] & 0x7fffffffffffffffull;
        m = b > m ? b : m;
    }
    double f;
    memcpy(&f, &m, sizeof f);
    return f;
}

// 1 when every value the rule computes, for any elements whose magnitudes are at most P
// (parameter), G (gradient), S1 and S2 (state), is at most `limit` in magnitude: the rule's
// arithmetic on the maxima, in double, with every constant as the element type rounded it
// (k's fields, widened exactly). Each operation of the element type rounds its result up by
// at most a factor 1 + 2^-24, so with `limit` a quarter of the type's largest value no
// intermediate can overflow; a denominator sqrt(v) c + eps is at least eps, so it cannot
// divide by zero when eps > 0. NaN or infinite maxima fail every comparison. Sufficient, not
// necessary: a failed bound sends the caller to the exact check.
#define DEFINE_BOUND(T)                                                                          \
    static int bounded_##T(int kind, const constants_##T *k, double P, double G, double S1, double S2, \
                           double limit, double next[3]) {                                       \
        const double P1 = fabs((double)k->keep) * P;                                             \
        const double G1 = fabs((double)k->scale) * G + fabs((double)k->l2) * P1;                 \
        const double lr = fabs((double)k->lr), m = fabs((double)k->momentum);                    \
        double worst = G1 > P1 ? G1 : P1;                                                        \
        double a = 0, b = 0, q = 0;                                                              \
        switch (kind) {                                                                          \
        case DLK_SGD: q = lr * G1; break;                                                        \
        case DLK_MOMENTUM: a = m * S1 + lr * G1; q = a; break;                                   \
        case DLK_NESTEROV: a = m * S1 + lr * G1; q = m * a + lr * G1; break;                     \
        case DLK_ADAM:                                                                           \
            if (!((double)k->eps > 0)) return 0;                                                 \
            a = (double)k->beta1 * S1 + (double)k->one_minus_beta1 * G1;                         \
            b = (double)k->beta2 * S2 + (double)k->one_minus_beta2 * G1 * G1;                    \
            worst = fmax(worst, fmax(sqrt(b) * (double)k->inv_sqrt_c2, fabs((double)k->step_size) * a)); \
            q = fabs((double)k->step_size) * a / (double)k->eps;                                 \
            break;                                                                               \
        case DLK_RMSPROP:                                                                        \
            if (!((double)k->eps > 0)) return 0;                                                 \
            a = (double)k->rho * S1 + (double)k->one_minus_rho * G1 * G1;                        \
            worst = fmax(worst, lr * G1);                                                        \
            q = lr * G1 / (double)k->eps;                                                        \
            break;                                                                               \
        default: return 0;                                                                       \
        }                                                                                        \
        worst = fmax(fmax(worst, a), fmax(b, q));                                                \
        /* Bounds on the new magnitudes, for the next step: each element type operation */       \
        /* rounds up by at most 2^-24 of the result, and the error compounds over steps. */      \
        next[0] = (P1 + q) * (1 + 0x1p-20);                                                      \
        next[1] = a * (1 + 0x1p-20);                                                             \
        next[2] = b * (1 + 0x1p-20);                                                             \
        return worst <= limit && P1 + q <= limit;                                                \
    }
DEFINE_BOUND(float)
DEFINE_BOUND(double)

// Whether updating tensor t leaves it finite; on success t->next holds bounds on its new
// magnitudes (negative: unknown). The magnitudes of p and the state are taken from the
// bounds the last update left (t->bound) when those prove the step, else read from memory.
#define DEFINE_UPDATE_FINITE(T, LIMIT)                                                           \
    static int update_finite_##T(const dlk_update *u, dlk_tensors *t) {                          \
        const constants_##T k = constants_of_##T(u);                                             \
        const int kind = u->kind;                                                                \
        const int slots = kind == DLK_ADAM ? 2 : kind == DLK_SGD ? 0 : 1;                        \
        const T *p = t->p, *g = t->g, *s1 = slots > 0 ? t->s1 : NULL, *s2 = slots > 1 ? t->s2 : NULL; \
        const double G = max_abs_##T(g, t->n);                                                   \
        if (t->bound[0] >= 0 && bounded_##T(kind, &k, t->bound[0], G, t->bound[1], t->bound[2], LIMIT, t->next)) \
            return 1;                                                                            \
        if (bounded_##T(kind, &k, max_abs_##T(p, t->n), G, max_abs_##T(s1, t->n), max_abs_##T(s2, t->n), LIMIT, \
                        t->next))                                                                \
            return 1;                                                                            \
        t->next[0] = t->next[1] = t->next[2] = -1;                                               \
        return scalar_finite_##T(kind, &k, p, g, s1, s2, t->n);                                  \
    }
DEFINE_UPDATE_FINITE(float, FLT_MAX / 4)
DEFINE_UPDATE_FINITE(double, DBL_MAX / 4)

// Checks every tensor, then (all finite) writes them all and keeps their new bounds.
static int64_t check_all(const dlk_update *u, dlk_tensors *t, int64_t count, int f64) {
    for (int64_t i = 0; i < count; i++)
        if (!(f64 ? update_finite_double(u, &t[i]) : update_finite_float(u, &t[i]))) return i;
    for (int64_t i = 0; i < count; i++)
        for (int j = 0; j < 3; j++) t[i].bound[j] = t[i].next[j];
    return -1;
}

int64_t dlk_update_all_f32(const dlk_update *u, dlk_tensors *t, int64_t count, int portable) {
    const int64_t failed = check_all(u, t, count, 0);
    if (failed >= 0) return failed;
    for (int64_t i = 0; i < count; i++) dlk_update_f32(u, t[i].p, t[i].g, t[i].s1, t[i].s2, t[i].n, portable);
    return -1;
}

int64_t dlk_update_all_f64(const dlk_update *u, dlk_tensors *t, int64_t count) {
    const int64_t failed = check_all(u, t, count, 1);
    if (failed >= 0) return failed;
    for (int64_t i = 0; i < count; i++) dlk_update_f64(u, t[i].p, t[i].g, t[i].s1, t[i].s2, t[i].n);
    return -1;
}

// MARK: - Entry points, shared among the kernel threads

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
