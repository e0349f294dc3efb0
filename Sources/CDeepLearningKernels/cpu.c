// What the machine offers the kernels: the CPUs this process may use, and whether they run
// AVX2/FMA; and the process-wide counter behind parameters' version stamps.
#define _GNU_SOURCE  // sched_getaffinity
#include "dl_kernels.h"

#include <sched.h>
#include <stdlib.h>
#include <strings.h>

int dlk_available_cpus(void) {
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) != 0) return 1;
    const int n = CPU_COUNT(&set);
    return n > 1 ? n : 1;
}

int dlk_has_avx2(void) {
#if defined(__x86_64__) && (defined(__clang__) || defined(__GNUC__))
    static int cached = -1;  // every thread that races here stores the same value
    int known = __atomic_load_n(&cached, __ATOMIC_RELAXED);
    if (known < 0) {
        __builtin_cpu_init();
        known = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
        __atomic_store_n(&cached, known, __ATOMIC_RELAXED);
    }
    return known;
#else
    return 0;
#endif
}

int dlk_has_avx512(void) {
#if defined(__x86_64__) && (defined(__clang__) || defined(__GNUC__))
    static int cached = -1;
    int known = __atomic_load_n(&cached, __ATOMIC_RELAXED);
    if (known < 0) {
        __builtin_cpu_init();
        known = dlk_has_avx2() && __builtin_cpu_supports("avx512f");
        const char *off = getenv("DL_NO_AVX512");   // tests: the AVX2 kernels on this machine too
        if (off && *off && *off != '0') known = 0;
        __atomic_store_n(&cached, known, __ATOMIC_RELAXED);
    }
    return known;
#else
    return 0;
#endif
}

// OpenBLAS's own report of the kernels it chose (its DYNAMIC_ARCH builds pick them by CPU
// model when loaded); weak, so that this file needs OpenBLAS only where it is linked.
extern char *openblas_get_corename(void) __attribute__((weak));

int dlk_blas_lags(void) {
#if defined(__x86_64__) && (defined(__clang__) || defined(__GNUC__))
    static int cached = -1;
    int known = __atomic_load_n(&cached, __ATOMIC_RELAXED);
    if (known < 0) {
        // OpenBLAS's x86 cores whose sgemm kernels use AVX2/FMA or AVX-512. A CPU it does
        // not know gets an older core: Debian 12's OpenBLAS 0.3.21 runs "Prescott" (SSE3)
        // on a Sapphire Rapids Xeon, at 30 GFLOP/s on one core where its own AVX-512
        // kernels reach 100-150 (bench/README.md, "OpenBLAS on a CPU it does not know").
        static const char *const vector_cores[] = {"Haswell", "Zen", "SkylakeX", "Cooperlake",
                                                   "SapphireRapids", "Excavator"};
        const char *core = openblas_get_corename ? openblas_get_corename() : NULL;
        known = 0;
        if (core && dlk_has_avx2()) {
            known = 1;
            for (size_t i = 0; i < sizeof vector_cores / sizeof *vector_cores; i++)
                if (strcasecmp(core, vector_cores[i]) == 0) known = 0;
        }
        __atomic_store_n(&cached, known, __ATOMIC_RELAXED);
    }
    return known;
#else
    return 0;
#endif
}

uint64_t dlk_next_generation(void) {
    static uint64_t last = 0;
    return __atomic_add_fetch(&last, 1, __ATOMIC_RELAXED);
}
