/* dispatch.c: picking a kernel variant per type from what the CPU supports. The check asks
 * cpuid (x86-64) or the kernel's hardware capabilities (aarch64: getauxval) each time it is
 * called (when a model is bound, not per product), so no state is kept. */
#include "kernels.h"

#include "../tensor_types.h"

#if defined(__x86_64__)
#include <cpuid.h>
#endif
#if defined(__aarch64__)
#include <sys/auxv.h>
#ifndef HWCAP_ASIMD
#define HWCAP_ASIMD (1ul << 1)
#endif
#ifndef HWCAP_ASIMDDP
#define HWCAP_ASIMDDP (1ul << 20)
#endif
#endif

bool qr_cpu_has_avx2(void)
{
#if defined(__x86_64__)
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d))
        return false;
    bool fma = c & (1u << 12), osxsave = c & (1u << 27), avx = c & (1u << 28), f16c = c & (1u << 29);
    if (!(fma && osxsave && avx && f16c))
        return false;
    /* The OS must save the YMM registers (XCR0 bits 1 and 2). */
    unsigned xcr0_lo, xcr0_hi;
    __asm__ volatile("xgetbv" : "=a"(xcr0_lo), "=d"(xcr0_hi) : "c"(0));
    if ((xcr0_lo & 6u) != 6u)
        return false;
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d))
        return false;
    return b & (1u << 5);
#else
    return false;
#endif
}

bool qr_cpu_has_avx_vnni(void)
{
#if defined(__x86_64__)
    unsigned a, b, c, d;
    /* CPUID.(EAX=7, ECX=1):EAX bit 4 */
    return qr_cpu_has_avx2() && __get_cpuid_count(7, 1, &a, &b, &c, &d) && (a & (1u << 4));
#else
    return false;
#endif
}

bool qr_cpu_has_avx512_vnni(void)
{
#if defined(__x86_64__)
    unsigned a, b, c, d;
    if (!qr_cpu_has_avx2() || !__get_cpuid_count(7, 0, &a, &b, &c, &d))
        return false;
    /* AVX512F (EBX 16), DQ (17), BW (30), VL (31); VNNI (ECX 11) */
    unsigned need_b = 1u << 16 | 1u << 17 | 1u << 30 | 1u << 31;
    if ((b & need_b) != need_b || !(c & (1u << 11)))
        return false;
    /* The OS must save the opmask and 512-bit registers (XCR0 bits 5, 6 and 7). */
    unsigned xcr0_lo, xcr0_hi;
    __asm__ volatile("xgetbv" : "=a"(xcr0_lo), "=d"(xcr0_hi) : "c"(0));
    return (xcr0_lo & 0xe6u) == 0xe6u;
#else
    return false;
#endif
}

bool qr_cpu_has_neon(void)
{
#if defined(__aarch64__)
    return getauxval(AT_HWCAP) & HWCAP_ASIMD;
#else
    return false;
#endif
}

bool qr_cpu_has_dotprod(void)
{
#if defined(__aarch64__)
    unsigned long hw = getauxval(AT_HWCAP);
    return (hw & HWCAP_ASIMD) && (hw & HWCAP_ASIMDDP);
#else
    return false;
#endif
}

/* Every type's variants in one order: f32, f16, then q8..q2 _0, then q8..q2 _1, then q4..q2 _s. */
#define N_KERNEL_TYPES 17

static int type_index(uint32_t type)
{
    switch (type) {
    case QR_TYPE_F32: return 0;
    case QR_TYPE_F16: return 1;
    case QR_TYPE_Q8_0: return 2;
    case QR_TYPE_Q6_0: return 3;
    case QR_TYPE_Q5_0: return 4;
    case QR_TYPE_Q4_0: return 5;
    case QR_TYPE_Q3_0: return 6;
    case QR_TYPE_Q2_0: return 7;
    case QR_TYPE_Q8_1: return 8;
    case QR_TYPE_Q6_1: return 9;
    case QR_TYPE_Q5_1: return 10;
    case QR_TYPE_Q4_1: return 11;
    case QR_TYPE_Q3_1: return 12;
    case QR_TYPE_Q2_1: return 13;
    case QR_TYPE_Q4_S: return 14;
    case QR_TYPE_Q3_S: return 15;
    case QR_TYPE_Q2_S: return 16;
    default: return -1;
    }
}

static const qr_kernel_ops *const ref_ops[N_KERNEL_TYPES] = {
    &qr_kernels_f32_ref,  &qr_kernels_f16_ref,  &qr_kernels_q8_0_ref, &qr_kernels_q6_0_ref,
    &qr_kernels_q5_0_ref, &qr_kernels_q4_0_ref, &qr_kernels_q3_0_ref, &qr_kernels_q2_0_ref,
    &qr_kernels_q8_1_ref, &qr_kernels_q6_1_ref, &qr_kernels_q5_1_ref, &qr_kernels_q4_1_ref,
    &qr_kernels_q3_1_ref, &qr_kernels_q2_1_ref, &qr_kernels_q4_s_ref, &qr_kernels_q3_s_ref,
    &qr_kernels_q2_s_ref,
};
#if defined(__x86_64__)
static const qr_kernel_ops *const avx2_ops[N_KERNEL_TYPES] = {
    &qr_kernels_f32_avx2,  &qr_kernels_f16_avx2,  &qr_kernels_q8_0_avx2, &qr_kernels_q6_0_avx2,
    &qr_kernels_q5_0_avx2, &qr_kernels_q4_0_avx2, &qr_kernels_q3_0_avx2, &qr_kernels_q2_0_avx2,
    &qr_kernels_q8_1_avx2, &qr_kernels_q6_1_avx2, &qr_kernels_q5_1_avx2, &qr_kernels_q4_1_avx2,
    &qr_kernels_q3_1_avx2, &qr_kernels_q2_1_avx2, &qr_kernels_q4_s_avx2, &qr_kernels_q3_s_avx2,
    &qr_kernels_q2_s_avx2,
};
/* f32 and f16 have no integer product: NULL, their AVX2 variant is the best. */
static const qr_kernel_ops *const avxvnni_ops[N_KERNEL_TYPES] = {
    NULL,
    NULL,
    &qr_kernels_q8_0_avxvnni,
    &qr_kernels_q6_0_avxvnni,
    &qr_kernels_q5_0_avxvnni,
    &qr_kernels_q4_0_avxvnni,
    &qr_kernels_q3_0_avxvnni,
    &qr_kernels_q2_0_avxvnni,
    &qr_kernels_q8_1_avxvnni,
    &qr_kernels_q6_1_avxvnni,
    &qr_kernels_q5_1_avxvnni,
    &qr_kernels_q4_1_avxvnni,
    &qr_kernels_q3_1_avxvnni,
    &qr_kernels_q2_1_avxvnni,
    &qr_kernels_q4_s_avxvnni,
    &qr_kernels_q3_s_avxvnni,
    &qr_kernels_q2_s_avxvnni,
};
static const qr_kernel_ops *const avx512vnni_ops[N_KERNEL_TYPES] = {
    NULL,
    NULL,
    &qr_kernels_q8_0_avx512vnni,
    &qr_kernels_q6_0_avx512vnni,
    &qr_kernels_q5_0_avx512vnni,
    &qr_kernels_q4_0_avx512vnni,
    &qr_kernels_q3_0_avx512vnni,
    &qr_kernels_q2_0_avx512vnni,
    &qr_kernels_q8_1_avx512vnni,
    &qr_kernels_q6_1_avx512vnni,
    &qr_kernels_q5_1_avx512vnni,
    &qr_kernels_q4_1_avx512vnni,
    &qr_kernels_q3_1_avx512vnni,
    &qr_kernels_q2_1_avx512vnni,
    &qr_kernels_q4_s_avx512vnni,
    &qr_kernels_q3_s_avx512vnni,
    &qr_kernels_q2_s_avx512vnni,
};
#endif
#if defined(__aarch64__)
static const qr_kernel_ops *const neon_ops[N_KERNEL_TYPES] = {
    &qr_kernels_f32_neon,  &qr_kernels_f16_neon,  &qr_kernels_q8_0_neon, &qr_kernels_q6_0_neon,
    &qr_kernels_q5_0_neon, &qr_kernels_q4_0_neon, &qr_kernels_q3_0_neon, &qr_kernels_q2_0_neon,
    &qr_kernels_q8_1_neon, &qr_kernels_q6_1_neon, &qr_kernels_q5_1_neon, &qr_kernels_q4_1_neon,
    &qr_kernels_q3_1_neon, &qr_kernels_q2_1_neon, &qr_kernels_q4_s_neon, &qr_kernels_q3_s_neon,
    &qr_kernels_q2_s_neon,
};
/* f32 and f16 have no integer dot product: NULL, their NEON variant is the best. */
static const qr_kernel_ops *const neon_dotprod_ops[N_KERNEL_TYPES] = {
    NULL,
    NULL,
    &qr_kernels_q8_0_neon_dotprod,
    &qr_kernels_q6_0_neon_dotprod,
    &qr_kernels_q5_0_neon_dotprod,
    &qr_kernels_q4_0_neon_dotprod,
    &qr_kernels_q3_0_neon_dotprod,
    &qr_kernels_q2_0_neon_dotprod,
    &qr_kernels_q8_1_neon_dotprod,
    &qr_kernels_q6_1_neon_dotprod,
    &qr_kernels_q5_1_neon_dotprod,
    &qr_kernels_q4_1_neon_dotprod,
    &qr_kernels_q3_1_neon_dotprod,
    &qr_kernels_q2_1_neon_dotprod,
    &qr_kernels_q4_s_neon_dotprod,
    &qr_kernels_q3_s_neon_dotprod,
    &qr_kernels_q2_s_neon_dotprod,
};
#endif

const qr_kernel_ops *qr_kernels_ref(uint32_t type)
{
    int t = type_index(type);
    return t < 0 ? NULL : ref_ops[t];
}

size_t qr_kernels_all(uint32_t type, const qr_kernel_ops **out, size_t max)
{
    int t = type_index(type);
    if (t < 0)
        return 0;
    const qr_kernel_ops *all[QR_KERNEL_VARIANTS_MAX];
    size_t n = 0;
    all[n++] = ref_ops[t];
#if defined(__x86_64__)
    if (qr_cpu_has_avx2() && avx2_ops[t]) {
        all[n++] = avx2_ops[t];
        if (qr_cpu_has_avx_vnni() && avxvnni_ops[t])
            all[n++] = avxvnni_ops[t];
        if (qr_cpu_has_avx512_vnni() && avx512vnni_ops[t])
            all[n++] = avx512vnni_ops[t];
    }
#endif
#if defined(__aarch64__)
    if (qr_cpu_has_neon() && neon_ops[t]) {
        all[n++] = neon_ops[t];
        if (qr_cpu_has_dotprod() && neon_dotprod_ops[t])
            all[n++] = neon_dotprod_ops[t];
    }
#endif
    for (size_t i = 0; i < n && i < max; i++)
        out[i] = all[i];
    return n < max ? n : max;
}

const qr_kernel_ops *qr_kernels_best(uint32_t type)
{
    const qr_kernel_ops *all[QR_KERNEL_VARIANTS_MAX];
    size_t n = qr_kernels_all(type, all, QR_KERNEL_VARIANTS_MAX);
    return n ? all[n - 1] : NULL;
}
