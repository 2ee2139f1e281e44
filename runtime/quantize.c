/* quantize.c: choosing each block's scale (and minimum) and codes. Runs once per variant, off
 * the decode path: thoroughness over speed, but scalar code that quantizes a 216M-weight model in
 * seconds. */
#include "quantize.h"
#include "quantize_block.h"

#include <math.h>
#include <string.h>

#include "f16.h"
#include "kernels/blocks.h"
#include "tensor_types.h"

/* Clipping search: the symmetric types try the scale that maps the block's largest |w| onto the
 * end of the code range, shrunk by 2% steps (clipping the outliers to fit the bulk better); the
 * _1 types try ranges from one code narrower to one code wider than min..max, in tenths of a
 * code (ggml's rmin = −1, rdelta = 0.1). The best candidate is then refined twice. */
/* The code searches below are where a variant's quantization spends its time; on x86-64 they are
 * built for AVX-512 and AVX2 beside the baseline and the loader picks one. No instruction changes
 * a result: ISO C (-std=c11) contracts no a·b + c into an FMA, and the lanes are explicit, so
 * every clone computes the same floats in the same order and the files stay byte-identical. */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define SEARCH_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define SEARCH_CLONES
#endif

#define SYM_STEPS 16
#define SYM_SHRINK 0.02f
#define MIN_STEPS 21
#define REFINE 2

/* ---------------------------------------------------------------- symmetric (_0) */

/* Σw·x·l and Σw·l² for the codes l = round(x/d − shift) + shift within [lo, hi] + shift (shift 0:
 * the _0 types' integer levels; ½: the _s types' mid-rise ones); the least-squares scale for
 * those codes is their ratio and it lowers the error by sumlx²/suml2 below Σw·x². The sums run
 * in 8 independent lanes (4 terms each, in f32) so the compiler can vectorise the loop: this is
 * where quantization spends its time. */
SEARCH_CLONES static void sym_codes(const float *x, const float *w, float d, float lo, float hi, float shift,
                                    double *sumlx, double *suml2)
{
    float id = 1.0f / d, a[8] = {0}, b[8] = {0};
    for (int j = 0; j < QR_QK; j += 8) {
        for (int k = 0; k < 8; k++) {
            float l = qr_round_clamped(x[j + k] * id - shift, lo, hi) + shift;
            a[k] += w[j + k] * x[j + k] * l;
            b[k] += w[j + k] * l * l;
        }
    }
    double sa = 0, sb = 0;
    for (int k = 0; k < 8; k++) {
        sa += a[k];
        sb += b[k];
    }
    *sumlx = sa;
    *suml2 = sb;
}

/* The scale d minimising Σw·(x − d·l)² over d and the codes l (approximately: the search). */
static float sym_scale(const float *x, const float *w, int bits)
{
    const float lo = -(float)(1 << (bits - 1)), hi = (float)((1 << (bits - 1)) - 1);
    float amax = 0.0f, max = 0.0f;
    for (int j = 0; j < QR_QK; j++) {
        if (fabsf(x[j]) > amax) {
            amax = fabsf(x[j]);
            max = x[j];
        }
    }
    if (amax < 1e-30f)
        return 0.0f;
    double best_score = -1.0;
    float best = max / lo;
    /* Map the extreme weight to the longer end of the range (−2^(B−1), as ggml's q4_0), and to
     * the shorter end too: with few codes which side gets the extra level matters. */
    for (int side = 0; side < 2; side++) {
        float end = side == 0 ? lo : hi;
        for (int k = 0; k < SYM_STEPS; k++) {
            float d = max / end * (1.0f - SYM_SHRINK * (float)k);
            double sumlx, suml2;
            sym_codes(x, w, d, lo, hi, 0.0f, &sumlx, &suml2);
            if (suml2 > 0 && sumlx * sumlx / suml2 > best_score) {
                best_score = sumlx * sumlx / suml2;
                best = (float)(sumlx / suml2);
            }
        }
    }
    for (int it = 0; it < REFINE && best != 0.0f; it++) {
        double sumlx, suml2;
        sym_codes(x, w, best, lo, hi, 0.0f, &sumlx, &suml2);
        if (!(suml2 > 0 && sumlx * sumlx / suml2 > best_score))
            break;
        best_score = sumlx * sumlx / suml2;
        best = (float)(sumlx / suml2);
    }
    return best;
}

/* An f32 scale to the nearest f16 that is finite. */
static uint16_t scale_to_f16(float d)
{
    if (d > 65504.0f)
        d = 65504.0f;
    if (d < -65504.0f)
        d = -65504.0f;
    return qr_f32_to_f16(d);
}

/* _0: the f16 scale of the search, codes round(x/d) + 2^(B−1). */
static void fit_block_sym(int bits, const float *x, const float *w, uint8_t *block, qr_block_grid *g)
{
    uint16_t dh = scale_to_f16(sym_scale(x, w, bits));
    float d = qr_f16_to_f32(dh);
    *g = (qr_block_grid){QR_GRID_SYM, bits, d, d != 0.0f ? 1.0f / d : 0.0f, 0.0f};
    block[0] = (uint8_t)(dh & 0xff);
    block[1] = (uint8_t)(dh >> 8);
}

/* ---------------------------------------------------------------- small header (_s) */

/* Σw·(x − d·l)² with the codes chosen for d: what an E5M3 candidate really costs. */
static double mid_error(const float *x, const float *w, float d, float half)
{
    double err = 0.0;
    float id = d != 0.0f ? 1.0f / d : 0.0f;
    for (int j = 0; j < QR_QK; j++) {
        float l = qr_round_clamped(x[j] * id - 0.5f, -half, half - 1.0f) + 0.5f;
        double e = (double)x[j] - (double)d * l;
        err += (double)w[j] * e * e;
    }
    return err;
}

/* _s: the least-squares search over shrinking clips (levels are symmetric, so the sign of the
 * extreme weight does not matter), then the best of the E5M3 values around its scale, each
 * with its own codes: the 8-bit scale's steps (up to 12.5%) are too coarse to round blindly. */
static void fit_block_small(int bits, const float *x, const float *w, uint8_t *block, qr_block_grid *g)
{
    const float half = (float)(1 << (bits - 1));
    float amax = 0.0f;
    for (int j = 0; j < QR_QK; j++)
        amax = fabsf(x[j]) > amax ? fabsf(x[j]) : amax;
    float best = 0.0f;
    if (amax >= 1e-30f) {
        double best_score = -1.0;
        best = amax / (half - 0.5f);
        for (int k = 0; k < SYM_STEPS; k++) {
            float d = amax / (half - 0.5f) * (1.0f - SYM_SHRINK * (float)k);
            double sumlx, suml2;
            sym_codes(x, w, d, -half, half - 1.0f, 0.5f, &sumlx, &suml2);
            if (suml2 > 0 && sumlx * sumlx / suml2 > best_score) {
                best_score = sumlx * sumlx / suml2;
                best = (float)(sumlx / suml2);
            }
        }
        for (int it = 0; it < REFINE && best > 0.0f; it++) {
            double sumlx, suml2;
            sym_codes(x, w, best, -half, half - 1.0f, 0.5f, &sumlx, &suml2);
            if (!(suml2 > 0 && sumlx * sumlx / suml2 > best_score))
                break;
            best_score = sumlx * sumlx / suml2;
            best = (float)(sumlx / suml2);
        }
    }
    uint8_t e = 0;
    if (best > 0.0f) {
        uint8_t lo = qr_e5m3_floor(best);
        double best_err = INFINITY;
        for (int c = lo > 0 ? -1 : 0; c <= 2 && lo + c <= 0xf7; c++) {
            uint8_t cand = (uint8_t)(lo + c);
            double err = mid_error(x, w, qr_e5m3_to_f32(cand), half);
            if (err < best_err) {
                best_err = err;
                e = cand;
            }
        }
    }
    float d = qr_e5m3_to_f32(e);
    *g = (qr_block_grid){QR_GRID_SMALL, bits, d, d != 0.0f ? 1.0f / d : 0.0f, 0.0f};
    block[0] = e;
}

/* ---------------------------------------------------------------- with minimum (_1) */

typedef struct {
    double sw, sl, sl2, sx, sxl;
} lsq_sums;

/* The codes l = round((x − m)/d) within [0, nmax] and the sums of the 2×2 least-squares fit
 * (in 8 lanes, as sym_codes). Σw and Σw·x do not depend on the codes: the caller fills them. */
SEARCH_CLONES static void min_codes(const float *x, const float *w, float d, float m, float nmax, lsq_sums *s)
{
    float id = 1.0f / d, sl[8] = {0}, sl2[8] = {0}, sxl[8] = {0};
    for (int j = 0; j < QR_QK; j += 8) {
        for (int k = 0; k < 8; k++) {
            float l = qr_round_clamped((x[j + k] - m) * id, 0.0f, nmax);
            sl[k] += w[j + k] * l;
            sl2[k] += w[j + k] * l * l;
            sxl[k] += w[j + k] * x[j + k] * l;
        }
    }
    s->sl = s->sl2 = s->sxl = 0;
    for (int k = 0; k < 8; k++) {
        s->sl += sl[k];
        s->sl2 += sl2[k];
        s->sxl += sxl[k];
    }
}

/* (d, m) minimising Σw·(d·l + m − x)² for fixed codes; false when the codes are all equal. The
 * error at the optimum is Σw·x² − d·Σw·x·l − m·Σw·x (the residual is orthogonal to l and 1). */
static bool min_fit(const lsq_sums *s, double swx2, float *d, float *m, double *err)
{
    double det = s->sw * s->sl2 - s->sl * s->sl;
    if (!(det > 1e-12 * s->sw * s->sl2))
        return false;
    double dd = (s->sw * s->sxl - s->sx * s->sl) / det;
    double mm = (s->sl2 * s->sx - s->sl * s->sxl) / det;
    *d = (float)dd;
    *m = (float)mm;
    *err = swx2 - dd * s->sxl - mm * s->sx;
    return true;
}

/* _1: (d, m) by the 2×2 least squares over the clipping search; m stored first, then the
 * scale that best fits the codes under the stored m. */
static void fit_block_min(int bits, const float *x, const float *w, uint8_t *block, qr_block_grid *g)
{
    const float nmax = (float)((1 << bits) - 1);
    float mn = x[0], mx = x[0];
    double swx2 = 0;
    lsq_sums s = {0, 0, 0, 0, 0};
    for (int j = 0; j < QR_QK; j++) {
        mn = x[j] < mn ? x[j] : mn;
        mx = x[j] > mx ? x[j] : mx;
        swx2 += (double)(w[j] * x[j] * x[j]);
        s.sw += w[j];
        s.sx += (double)(w[j] * x[j]);
    }
    float d = 0.0f, m = mn;
    if (mx - mn > 1e-30f * (fabsf(mx) + fabsf(mn)) && mx - mn > 1e-30f) {
        double best_err = INFINITY;
        float best_d = (mx - mn) / nmax, best_m = mn;
        for (int k = 0; k < MIN_STEPS; k++) {
            float span = nmax - 1.0f + 0.1f * (float)k; /* codes across min..max */
            float cd, cm;
            double err;
            min_codes(x, w, (mx - mn) / span, mn, nmax, &s);
            if (min_fit(&s, swx2, &cd, &cm, &err) && err < best_err && cd != 0.0f) {
                best_err = err;
                best_d = cd;
                best_m = cm;
            }
        }
        for (int it = 0; it < REFINE; it++) {
            float cd, cm;
            double err;
            min_codes(x, w, best_d, best_m, nmax, &s);
            if (!min_fit(&s, swx2, &cd, &cm, &err) || !(err < best_err) || cd == 0.0f)
                break;
            best_err = err;
            best_d = cd;
            best_m = cm;
        }
        d = best_d;
        m = best_m;
    }
    uint16_t mh = scale_to_f16(m);
    m = qr_f16_to_f32(mh);
    uint16_t dh = scale_to_f16(d);
    if (d != 0.0f) {
        min_codes(x, w, d, m, nmax, &s);
        double num = s.sxl - (double)m * s.sl;
        if (s.sl2 > 0 && num / s.sl2 != 0.0)
            dh = scale_to_f16((float)(num / s.sl2));
    }
    d = qr_f16_to_f32(dh);
    *g = (qr_block_grid){QR_GRID_MIN, bits, d, d != 0.0f ? 1.0f / d : 0.0f, m};
    block[0] = (uint8_t)(dh & 0xff);
    block[1] = (uint8_t)(dh >> 8);
    block[2] = (uint8_t)(mh & 0xff);
    block[3] = (uint8_t)(mh >> 8);
}

void qr_block_fit(const qr_type_info *t, const float *x, const float *w, uint8_t *block, qr_block_grid *g)
{
    if (t->small_scale)
        fit_block_small((int)t->bits, x, w, block, g);
    else if (t->has_min)
        fit_block_min((int)t->bits, x, w, block, g);
    else
        fit_block_sym((int)t->bits, x, w, block, g);
}

size_t qr_block_header_bytes(const qr_type_info *t)
{
    return t->small_scale ? 1 : t->has_min ? 4 : 2;
}

/* ---------------------------------------------------------------- rows and tensors */

qr_status qr_quantize_row(uint32_t type, const float *src, size_t n, const float *importance,
                          void *dst)
{
    const qr_type_info *t = qr_type_get(type);
    if (!t || n % t->block_weights != 0)
        return QR_ERR_INVALID;
    for (size_t i = 0; i < n; i++)
        if (!isfinite(src[i]) || (importance && !(importance[i] >= 0.0f && isfinite(importance[i]))))
            return QR_ERR_INVALID;
    if (type == QR_TYPE_F32) {
        memmove(dst, src, n * sizeof(float));
        return QR_OK;
    }
    if (type == QR_TYPE_F16) {
        uint16_t *h = dst;
        for (size_t i = 0; i < n; i++)
            h[i] = qr_f32_to_f16(src[i]);
        return QR_OK;
    }
    uint8_t *out = dst;
    float uniform[QR_QK];
    for (int j = 0; j < QR_QK; j++)
        uniform[j] = 1.0f;
    for (size_t b = 0; b < n / QR_QK; b++, out += t->block_bytes) {
        const float *x = src + b * QR_QK, *w = uniform;
        if (importance) {
            /* A block whose columns all have zero importance still gets a sensible fit. */
            float sum = 0.0f;
            for (int j = 0; j < QR_QK; j++)
                sum += importance[b * QR_QK + j];
            if (sum > 0.0f)
                w = importance + b * QR_QK;
        }
        qr_block_grid g;
        uint8_t q[QR_QK];
        qr_block_fit(t, x, w, out, &g);
        for (int j = 0; j < QR_QK; j++)
            q[j] = qr_block_code(&g, x[j]);
        qr_pack_codes((int)t->bits, out + qr_block_header_bytes(t), q);
    }
    return QR_OK;
}

typedef struct {
    uint32_t type;
    const float *src, *importance;
    size_t rows, cols, row_bytes;
    uint8_t *dst;
    int failed; /* set (to 1, atomically) by any row that fails */
} tensor_job;

#define TENSOR_ROWS_PER_TASK 16

static void tensor_task(void *arg, size_t task)
{
    tensor_job *j = arg;
    size_t r0 = task * TENSOR_ROWS_PER_TASK;
    size_t r1 = r0 + TENSOR_ROWS_PER_TASK < j->rows ? r0 + TENSOR_ROWS_PER_TASK : j->rows;
    for (size_t r = r0; r < r1; r++)
        if (qr_quantize_row(j->type, j->src + r * j->cols, j->cols, j->importance,
                            j->dst + r * j->row_bytes) != QR_OK)
            __atomic_store_n(&j->failed, 1, __ATOMIC_RELAXED);
}

qr_status qr_quantize_tensor(uint32_t type, const float *src, size_t rows, size_t cols,
                             const float *importance, void *dst, qr_pool *pool)
{
    uint64_t row_bytes;
    if (!qr_type_bytes(type, cols, &row_bytes))
        return QR_ERR_INVALID;
    tensor_job j = {type, src, importance, rows, cols, (size_t)row_bytes, dst, 0};
    qr_pool_run(pool, (rows + TENSOR_ROWS_PER_TASK - 1) / TENSOR_ROWS_PER_TASK, tensor_task, &j);
    return j.failed ? QR_ERR_INVALID : QR_OK;
}

/* ---------------------------------------------------------------- baseline */

qr_status qr_fake_quant_minmax_per_tensor(const float *src, size_t n, int bits, float *dst)
{
    if (bits < 1 || bits > 16)
        return QR_ERR_INVALID;
    if (n == 0)
        return QR_OK;
    float mn = src[0], mx = src[0];
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(src[i]))
            return QR_ERR_INVALID;
        mn = src[i] < mn ? src[i] : mn;
        mx = src[i] > mx ? src[i] : mx;
    }
    double levels = (double)((1u << bits) - 1), scale = ((double)mx - mn) / levels;
    for (size_t i = 0; i < n; i++) {
        double q = scale > 0 ? nearbyint(((double)src[i] - mn) / scale) : 0.0;
        q = q < 0 ? 0 : q > levels ? levels : q;
        dst[i] = (float)(mn + q * scale);
    }
    return QR_OK;
}
