/* kernels.h: the per-type inner loops, each in a reference (plain C) and, where the CPU has it,
 * a SIMD version. One file per storage type holds both side by side (kernels/<type>.c). The
 * threading and the choice of variant live in linear.c; these functions are single-threaded and
 * pure. */
#ifndef QR_KERNELS_H
#define QR_KERNELS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "blocks.h"

/* y[i] = row i of w · x, with x already rounded to 8-bit blocks (see prepare_x). */
typedef void (*qr_dot_rows_x8_fn)(const void *w, size_t row_bytes, size_t n_rows,
                                  const qr_x8_group *x, size_t n, float *y);

typedef struct {
    const char *name; /* "f32-ref", "f32-avx2", ... for benchmarks and logs */
    /* y[i] = dot(row i of w, x) for i in [0, n_rows); rows are row_bytes apart, n weights each.
     * The quantized types round x to 8-bit blocks first, exactly as prepare_x does. */
    void (*dot_rows)(const void *w, size_t row_bytes, size_t n_rows, const float *x, size_t n,
                     float *y);
    /* Dequantizes n weights (a whole number of blocks) to f32. */
    void (*to_float)(const void *src, float *dst, size_t n);
    /* Optional (NULL for f32 and f16): the decode path for the quantized types. prepare_x rounds
     * x (n values, a multiple of 32) to qr_x8_groups(n) groups once per product; dot_rows_x8
     * then reads them for every row, integer codes against integer codes. dot_rows = both in
     * one call. */
    void (*prepare_x)(const float *x, size_t n, qr_x8_group *xq);
    qr_dot_rows_x8_fn dot_rows_x8;
    /* Optional (NULL for f32 and f16): the products of a chunk, many rows of x at once
     * (kernels/gemm_x8.h). prepare_x_gemm rounds one row of x exactly as prepare_x does, into
     * the layout gemm_x8 reads (the SIMD versions interleave each group's blocks; the
     * reference's is prepare_x's); gemm_x8 writes Y[c·ldy + r] = row r of w · row c of X for
     * r < n_rows and c < n_x, X being n_x rows of qr_x8_groups(n) groups. */
    void (*prepare_x_gemm)(const float *x, size_t n, qr_x8_group *xq);
    void (*gemm_x8)(const void *w, size_t row_bytes, size_t n_rows, const qr_x8_group *X, size_t n_x,
                    size_t n, float *Y, size_t ldy);
} qr_kernel_ops;

/* Plain C for every type: the reference the SIMD versions are tested against. */
const qr_kernel_ops *qr_kernels_ref(uint32_t type);
/* The fastest variant this CPU runs (checked at run time), or the reference. */
const qr_kernel_ops *qr_kernels_best(uint32_t type);

/* Every variant of a type this CPU runs, reference first and qr_kernels_best(type) last: up to
 * `max` of them in out[], and their number (0 for an unknown type). For the tests, which hold
 * each one to the reference, and for benchmarks. */
size_t qr_kernels_all(uint32_t type, const qr_kernel_ops **out, size_t max);

/* Per-type tables, defined in kernels/<type>.c (kernels/q<B>.c holds q<B>_0, q<B>_1 and, for 4,
 * 3 and 2 bits, q<B>_s). */
extern const qr_kernel_ops qr_kernels_f32_ref, qr_kernels_f16_ref;
extern const qr_kernel_ops qr_kernels_q8_0_ref, qr_kernels_q8_1_ref, qr_kernels_q6_0_ref,
    qr_kernels_q6_1_ref, qr_kernels_q5_0_ref, qr_kernels_q5_1_ref, qr_kernels_q4_0_ref,
    qr_kernels_q4_1_ref, qr_kernels_q3_0_ref, qr_kernels_q3_1_ref, qr_kernels_q2_0_ref,
    qr_kernels_q2_1_ref, qr_kernels_q4_s_ref, qr_kernels_q3_s_ref, qr_kernels_q2_s_ref;
#if defined(__x86_64__)
extern const qr_kernel_ops qr_kernels_f32_avx2, qr_kernels_f16_avx2;
extern const qr_kernel_ops qr_kernels_q8_0_avx2, qr_kernels_q8_1_avx2, qr_kernels_q6_0_avx2,
    qr_kernels_q6_1_avx2, qr_kernels_q5_0_avx2, qr_kernels_q5_1_avx2, qr_kernels_q4_0_avx2,
    qr_kernels_q4_1_avx2, qr_kernels_q3_0_avx2, qr_kernels_q3_1_avx2, qr_kernels_q2_0_avx2,
    qr_kernels_q2_1_avx2, qr_kernels_q4_s_avx2, qr_kernels_q3_s_avx2, qr_kernels_q2_s_avx2;
/* _avxvnni: the AVX2 kernels with the chunk products in VNNI's vpdpbusd (Alder Lake, Sapphire
 * Rapids and later); the _s types decode with it too (kernels/dot_small.h). */
extern const qr_kernel_ops qr_kernels_q8_0_avxvnni, qr_kernels_q8_1_avxvnni, qr_kernels_q6_0_avxvnni,
    qr_kernels_q6_1_avxvnni, qr_kernels_q5_0_avxvnni, qr_kernels_q5_1_avxvnni, qr_kernels_q4_0_avxvnni,
    qr_kernels_q4_1_avxvnni, qr_kernels_q3_0_avxvnni, qr_kernels_q3_1_avxvnni, qr_kernels_q2_0_avxvnni,
    qr_kernels_q2_1_avxvnni, qr_kernels_q4_s_avxvnni, qr_kernels_q3_s_avxvnni, qr_kernels_q2_s_avxvnni;
/* _avx512vnni: the chunk products with AVX-512 VNNI, two weight rows per vector (Sapphire
 * Rapids, Zen 4 and later), and the _s types' decode as in _avxvnni. */
extern const qr_kernel_ops qr_kernels_q8_0_avx512vnni, qr_kernels_q8_1_avx512vnni, qr_kernels_q6_0_avx512vnni,
    qr_kernels_q6_1_avx512vnni, qr_kernels_q5_0_avx512vnni, qr_kernels_q5_1_avx512vnni,
    qr_kernels_q4_0_avx512vnni, qr_kernels_q4_1_avx512vnni, qr_kernels_q3_0_avx512vnni,
    qr_kernels_q3_1_avx512vnni, qr_kernels_q2_0_avx512vnni, qr_kernels_q2_1_avx512vnni,
    qr_kernels_q4_s_avx512vnni, qr_kernels_q3_s_avx512vnni, qr_kernels_q2_s_avx512vnni;
#endif
#if defined(__aarch64__)
/* _neon: any ARMv8.0 core (Cortex-A72, the Raspberry Pi 4); _neon_dotprod: the quantized types'
 * dot products with SDOT (Cortex-A76/A78: Pi 5, Jetson Orin). */
extern const qr_kernel_ops qr_kernels_f32_neon, qr_kernels_f16_neon;
extern const qr_kernel_ops qr_kernels_q8_0_neon, qr_kernels_q8_1_neon, qr_kernels_q6_0_neon,
    qr_kernels_q6_1_neon, qr_kernels_q5_0_neon, qr_kernels_q5_1_neon, qr_kernels_q4_0_neon,
    qr_kernels_q4_1_neon, qr_kernels_q3_0_neon, qr_kernels_q3_1_neon, qr_kernels_q2_0_neon,
    qr_kernels_q2_1_neon, qr_kernels_q4_s_neon, qr_kernels_q3_s_neon, qr_kernels_q2_s_neon;
extern const qr_kernel_ops qr_kernels_q8_0_neon_dotprod, qr_kernels_q8_1_neon_dotprod,
    qr_kernels_q6_0_neon_dotprod, qr_kernels_q6_1_neon_dotprod, qr_kernels_q5_0_neon_dotprod,
    qr_kernels_q5_1_neon_dotprod, qr_kernels_q4_0_neon_dotprod, qr_kernels_q4_1_neon_dotprod,
    qr_kernels_q3_0_neon_dotprod, qr_kernels_q3_1_neon_dotprod, qr_kernels_q2_0_neon_dotprod,
    qr_kernels_q2_1_neon_dotprod, qr_kernels_q4_s_neon_dotprod, qr_kernels_q3_s_neon_dotprod,
    qr_kernels_q2_s_neon_dotprod;
#endif

/* True when the CPU has AVX2, FMA and F16C (x86-64 only); ... and also AVX-VNNI. */
bool qr_cpu_has_avx2(void);
bool qr_cpu_has_avx_vnni(void);
/* ... and AVX-512 F, BW, VL, DQ and VNNI, with the OS saving the 512-bit state. */
bool qr_cpu_has_avx512_vnni(void);

/* The most variants one type has on any CPU (qr_kernels_all). */
#define QR_KERNEL_VARIANTS_MAX 5
/* True when the CPU has Advanced SIMD (aarch64 only; every aarch64 Linux board has it), and when
 * it also has the dotprod extension, SDOT/UDOT (HWCAP_ASIMDDP: Cortex-A76 and later, not A72).
 * Read from the kernel's hardware capabilities (getauxval), not from the compiler's flags. */
bool qr_cpu_has_neon(void);
bool qr_cpu_has_dotprod(void);

#endif
