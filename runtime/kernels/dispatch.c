/* dispatch.c: picking a kernel variant per type from what the CPU supports. The check asks
 * cpuid each time it is called (when a model is bound, not per product), so no state is kept. */
#include "kernels.h"

#include "../tensor_types.h"

#if defined(__x86_64__)
#include <cpuid.h>
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

const qr_kernel_ops *qr_kernels_ref(uint32_t type)
{
    switch (type) {
    case QR_TYPE_F32: return &qr_kernels_f32_ref;
    case QR_TYPE_F16: return &qr_kernels_f16_ref;
    case QR_TYPE_Q8_0: return &qr_kernels_q8_0_ref;
    case QR_TYPE_Q6_0: return &qr_kernels_q6_0_ref;
    case QR_TYPE_Q5_0: return &qr_kernels_q5_0_ref;
    case QR_TYPE_Q4_0: return &qr_kernels_q4_0_ref;
    case QR_TYPE_Q3_0: return &qr_kernels_q3_0_ref;
    case QR_TYPE_Q2_0: return &qr_kernels_q2_0_ref;
    case QR_TYPE_Q8_1: return &qr_kernels_q8_1_ref;
    case QR_TYPE_Q6_1: return &qr_kernels_q6_1_ref;
    case QR_TYPE_Q5_1: return &qr_kernels_q5_1_ref;
    case QR_TYPE_Q4_1: return &qr_kernels_q4_1_ref;
    case QR_TYPE_Q3_1: return &qr_kernels_q3_1_ref;
    case QR_TYPE_Q2_1: return &qr_kernels_q2_1_ref;
    default: return NULL;
    }
}

const qr_kernel_ops *qr_kernels_best(uint32_t type)
{
#if defined(__x86_64__)
    if (qr_cpu_has_avx2()) {
        switch (type) {
        case QR_TYPE_F32: return &qr_kernels_f32_avx2;
        case QR_TYPE_F16: return &qr_kernels_f16_avx2;
        case QR_TYPE_Q8_0: return &qr_kernels_q8_0_avx2;
        case QR_TYPE_Q6_0: return &qr_kernels_q6_0_avx2;
        case QR_TYPE_Q5_0: return &qr_kernels_q5_0_avx2;
        case QR_TYPE_Q4_0: return &qr_kernels_q4_0_avx2;
        case QR_TYPE_Q3_0: return &qr_kernels_q3_0_avx2;
        case QR_TYPE_Q2_0: return &qr_kernels_q2_0_avx2;
        case QR_TYPE_Q8_1: return &qr_kernels_q8_1_avx2;
        case QR_TYPE_Q6_1: return &qr_kernels_q6_1_avx2;
        case QR_TYPE_Q5_1: return &qr_kernels_q5_1_avx2;
        case QR_TYPE_Q4_1: return &qr_kernels_q4_1_avx2;
        case QR_TYPE_Q3_1: return &qr_kernels_q3_1_avx2;
        case QR_TYPE_Q2_1: return &qr_kernels_q2_1_avx2;
        default: break;
        }
    }
#endif
    return qr_kernels_ref(type);
}
