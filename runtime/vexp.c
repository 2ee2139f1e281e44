/* vexp.c: the loops of vexp.h, over whole rows. The lanes are explicit (8: an AVX2 register of
 * floats) so that GCC vectorises them at -O2 without reassociating any sum; a row's tail runs
 * the same function one element at a time. */
#include "vexp.h"

QR_VEC_CLONES void qr_vexp(const float *restrict x, float *restrict y, size_t n)
{
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (size_t k = 0; k < 8; k++)
            y[i + k] = qr_vexpf(x[i + k]);
    for (; i < n; i++)
        y[i] = qr_vexpf(x[i]);
}

QR_VEC_CLONES double qr_vexp_sum(const float *x, size_t n, float shift)
{
    double lane[8] = {0};
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (size_t k = 0; k < 8; k++)
            lane[k] += (double)qr_vexpf(x[i + k] - shift);
    for (size_t k = 0; i < n; i++, k++)
        lane[k] += (double)qr_vexpf(x[i] - shift);
    return ((lane[0] + lane[1]) + (lane[2] + lane[3])) + ((lane[4] + lane[5]) + (lane[6] + lane[7]));
}

QR_VEC_CLONES float qr_vmax(const float *x, size_t n)
{
    float lane[8];
    for (size_t k = 0; k < 8; k++)
        lane[k] = x[0];
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (size_t k = 0; k < 8; k++)
            lane[k] = x[i + k] > lane[k] ? x[i + k] : lane[k];
    for (size_t k = 0; i < n; i++, k++)
        lane[k] = x[i] > lane[k] ? x[i] : lane[k];
    float m = lane[0];
    for (size_t k = 1; k < 8; k++)
        m = lane[k] > m ? lane[k] : m;
    return m;
}
