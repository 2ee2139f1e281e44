/* dispatch.c: picking a kernel variant per type from what the CPU supports. The CPU check
 * reads libgcc's cpu model, filled once by its constructor, so no state of ours is involved. */
#include "kernels.h"

#include "../tensor_types.h"

bool qr_cpu_has_avx2(void)
{
#if defined(__x86_64__)
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
           __builtin_cpu_supports("f16c");
#else
    return false;
#endif
}

const qr_kernel_ops *qr_kernels_ref(uint32_t type)
{
    switch (type) {
    case QR_TYPE_F32: return &qr_kernels_f32_ref;
    case QR_TYPE_F16: return &qr_kernels_f16_ref;
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
        default: break;
        }
    }
#endif
    return qr_kernels_ref(type);
}
