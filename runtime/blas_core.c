/* blas_core.c: making sure OpenBLAS runs the kernels this CPU can.
 *
 * OpenBLAS (Debian's, built with DYNAMIC_ARCH) picks its kernels once, when it is loaded, from the
 * CPU's family and model. A model newer than the library falls back to its generic SSE3 kernels:
 * 0.3.21 on this project's build machines (Intel family 6 model 207) chose "Prescott", and the
 * batched products ran 2.8 times slower than with the AVX-512 kernels the CPU has. OpenBLAS reads
 * OPENBLAS_CORETYPE only while loading, so the remedy is to set it and run the program again. */
#include "linear.h"

#include <cblas.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

/* The kernel family the CPU and OS support, by OpenBLAS's name, or NULL when there is nothing
 * better than what a generic fallback runs. */
static const char *capable_core(void)
{
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq"))
        return "SkylakeX";
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        return "Haswell";
#endif
    return NULL;
}

/* OpenBLAS's x86 fallbacks for a CPU it does not know. */
static bool generic_core(const char *name)
{
    static const char *const generic[] = {"prescott", "core2", "nehalem", "katmai", "coppermine",
                                          "northwood", "banias", "atom", "unknown"};
    for (size_t i = 0; i < sizeof generic / sizeof generic[0]; i++)
        if (strcasecmp(name, generic[i]) == 0)
            return true;
    return false;
}

const char *qr_blas_core(void)
{
    const char *name = openblas_get_corename();
    return name ? name : "unknown";
}

void qr_blas_use_capable_core(char **argv)
{
    if (getenv("OPENBLAS_CORETYPE")) /* the user's choice, or our own second run */
        return;
    const char *want = capable_core();
    if (!want || !generic_core(qr_blas_core()))
        return;
    if (setenv("OPENBLAS_CORETYPE", want, 1) != 0)
        return;
    execv("/proc/self/exe", argv);
    /* exec failed (no /proc, say): carry on, slower; the variable stays set, so no loop either */
}
