/* kernels.h: the per-type inner loops, each in a reference (plain C) and, where the CPU has it,
 * a SIMD version. One file per storage type holds both side by side (kernels/<type>.c). The
 * threading and the choice of variant live in linear.c; these functions are single-threaded and
 * pure. */
#ifndef QR_KERNELS_H
#define QR_KERNELS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct {
    const char *name; /* "f32-ref", "f32-avx2", ... for benchmarks and logs */
    /* y[i] = dot(row i of w, x) for i in [0, n_rows); rows are row_bytes apart, n weights each. */
    void (*dot_rows)(const void *w, size_t row_bytes, size_t n_rows, const float *x, size_t n,
                     float *y);
    /* Dequantizes n weights (a whole number of blocks) to f32. */
    void (*to_float)(const void *src, float *dst, size_t n);
} qr_kernel_ops;

/* Plain C for every type: the reference the SIMD versions are tested against. */
const qr_kernel_ops *qr_kernels_ref(uint32_t type);
/* The fastest variant this CPU runs (checked at run time), or the reference. */
const qr_kernel_ops *qr_kernels_best(uint32_t type);

/* Per-type tables, defined in kernels/<type>.c. */
extern const qr_kernel_ops qr_kernels_f32_ref, qr_kernels_f16_ref;
#if defined(__x86_64__)
extern const qr_kernel_ops qr_kernels_f32_avx2, qr_kernels_f16_avx2;
#endif

/* True when the CPU has AVX2, FMA and F16C (x86-64 only). */
bool qr_cpu_has_avx2(void);

#endif
