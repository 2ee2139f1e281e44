/* budget.c: the budget-string parsers and their inverses. The memory parser is the one size
 * grammar of every qslm tool: qslmctl set-budget, qslmd's options and configuration, qslm-quant's
 * budgets. Integer arithmetic only, so "4.65M" is the same byte count everywhere. */
#include "budget.h"

#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

/* Reads DIGITS at s[*i..len) into *v; false on no digit, more than 20 digits or overflow. */
static bool digits(const char *s, size_t len, size_t *i, uint64_t *v, size_t *count)
{
    size_t start = *i;
    uint64_t x = 0;
    while (*i < len && s[*i] >= '0' && s[*i] <= '9') {
        unsigned d = (unsigned)(s[*i] - '0');
        if (x > (UINT64_MAX - d) / 10) {
            *count = *i - start + 1;
            return false;
        }
        x = x * 10 + d;
        (*i)++;
    }
    *count = *i - start;
    *v = x;
    return *count >= 1 && *count <= 20;
}

/* True when s[i..len) is exactly the NUL-free text t. */
static bool rest_is(const char *s, size_t len, size_t i, const char *t)
{
    size_t n = strlen(t);
    return len - i == n && memcmp(s + i, t, n) == 0;
}

/* floor(frac / 10^frac_digits * 2^shift): the bytes a fraction of a unit adds, exact. Long
 * division in base 2, one bit of the result per step; r < 10^18 < 2^63, so 2r does not wrap. */
static uint64_t fraction_bytes(uint64_t frac, size_t frac_digits, unsigned shift)
{
    uint64_t den = 1, r = frac, q = 0;
    for (size_t k = 0; k < frac_digits; k++)
        den *= 10;
    for (unsigned b = 0; b < shift; b++) {
        r *= 2;
        q = q * 2 + (r >= den);
        if (r >= den)
            r -= den;
    }
    return q;
}

/* The unit at s[i..len): its shift (K = 10, ..., T = 40; 0 for bytes), or false; then *mb says
 * whether it was the refused "MB"-style spelling, so the caller can say what to write instead. */
static bool memory_unit(const char *s, size_t len, size_t i, unsigned *shift, bool *mb)
{
    static const char units[] = "KMGT", lower[] = "kmgt";
    *shift = 0;
    *mb = false;
    if (i == len || rest_is(s, len, i, "B"))
        return true;
    const char *u = s[i] ? strchr(units, s[i]) : NULL, *l = s[i] ? strchr(lower, s[i]) : NULL;
    if (!u && !l)
        return false;
    *shift = 10u * (unsigned)(1 + (u ? u - units : l - lower));
    if (i + 1 == len || (u && rest_is(s, len, i + 1, "iB")))
        return true;
    *mb = len - i == 2 && (s[i + 1] == 'B' || s[i + 1] == 'b');
    return false;
}

qi_code qi_parse_memory(const char *s, size_t len, const char *field, uint64_t *bytes,
                        qi_error *err)
{
    static const char rule[] = "must be a size like 32M or 5.5M (bytes, or K/M/G/T = 1024-based)";
    if (len == 0 || len > QI_BUDGET_TEXT_MAX)
        return qi_fail(err, QI_ERR_INVALID_ARGUMENT, field, "%s", rule);
    size_t i = 0, count, frac_digits = 0;
    uint64_t v, frac = 0;
    if (!digits(s, len, &i, &v, &count))
        return qi_fail(err, QI_ERR_INVALID_ARGUMENT, field, "%s%s", rule,
                       count > 0 ? "; too large" : "");
    if (i < len && s[i] == '.') {
        i++;
        bool ok = digits(s, len, &i, &frac, &frac_digits);
        if (!ok || frac_digits > QI_MEMORY_DECIMALS_MAX)
            return qi_fail(err, QI_ERR_INVALID_ARGUMENT, field, "%s%s", rule,
                           frac_digits > QI_MEMORY_DECIMALS_MAX ? "; at most 18 decimals after the point"
                                                                : "");
    }
    unsigned shift;
    bool mb;
    if (!memory_unit(s, len, i, &shift, &mb)) {
        if (mb)
            return qi_fail(err, QI_ERR_INVALID_ARGUMENT, field,
                           "%s; '%.2s' is refused: write %c or %ciB (1024-based; %.2s could mean 1000)",
                           rule, s + i, s[i] & ~0x20, s[i] & ~0x20, s + i);
        return qi_fail(err, QI_ERR_INVALID_ARGUMENT, field, "%s", rule);
    }
    if (frac_digits && shift == 0)
        return qi_fail(err, QI_ERR_INVALID_ARGUMENT, field,
                       "%s; a fraction needs a unit K, M, G or T (bytes are whole)", rule);
    uint64_t extra = frac_digits ? fraction_bytes(frac, frac_digits, shift) : 0;
    if ((shift && v > (UINT64_MAX >> shift)) || (v << shift) > UINT64_MAX - extra)
        return qi_fail(err, QI_ERR_INVALID_ARGUMENT, field, "%s; too large (at most 2^64-1 bytes)",
                       rule);
    v = (v << shift) + extra;
    if (v == 0)
        return qi_fail(err, QI_ERR_INVALID_ARGUMENT, field, "must be at least 1 byte");
    *bytes = v;
    return QI_OK;
}

qi_code qi_parse_power(const char *s, size_t len, const char *field, uint64_t *microwatts,
                       qi_error *err)
{
    static const char rule[] = "must be a power like 3.5W or 500mW (at most 1000000W)";
    if (len == 0 || len > QI_BUDGET_TEXT_MAX)
        return qi_fail(err, QI_ERR_INVALID_ARGUMENT, field, "%s", rule);
    size_t i = 0, count;
    uint64_t whole, frac = 0;
    if (!digits(s, len, &i, &whole, &count) || whole > QI_POWER_MAX_UW)
        return qi_fail(err, QI_ERR_INVALID_ARGUMENT, field, "%s", rule);
    size_t frac_digits = 0;
    if (i < len && s[i] == '.') {
        i++;
        if (!digits(s, len, &i, &frac, &frac_digits))
            return qi_fail(err, QI_ERR_INVALID_ARGUMENT, field, "%s", rule);
    }
    /* uW per unit, and the decimals that unit can hold without going below 1 uW. */
    uint64_t scale;
    size_t max_frac;
    if (i == len || rest_is(s, len, i, "W")) {
        scale = 1000000;
        max_frac = 6;
    } else if (rest_is(s, len, i, "mW")) {
        scale = 1000;
        max_frac = 3;
    } else {
        return qi_fail(err, QI_ERR_INVALID_ARGUMENT, field, "%s", rule);
    }
    if (frac_digits > max_frac)
        return qi_fail(err, QI_ERR_INVALID_ARGUMENT, field,
                       "%s; at most %zu decimals (resolution 1 uW)", rule, max_frac);
    for (size_t k = frac_digits; k < max_frac; k++)
        frac *= 10; /* frac < 10^max_frac now */
    /* whole <= 10^12 and scale <= 10^6: the product fits in 64 bits. */
    uint64_t uw = whole * scale + frac;
    if (uw > QI_POWER_MAX_UW)
        return qi_fail(err, QI_ERR_INVALID_ARGUMENT, field, "%s", rule);
    if (uw == 0)
        return qi_fail(err, QI_ERR_INVALID_ARGUMENT, field, "must be more than 0W");
    *microwatts = uw;
    return QI_OK;
}

const char *qi_format_memory(uint64_t bytes, char *buf, size_t cap)
{
    static const char units[] = "KMGT";
    int u = -1;
    uint64_t v = bytes;
    while (u < 3 && v != 0 && (v & 1023) == 0) {
        v >>= 10;
        u++;
    }
    if (u < 0)
        snprintf(buf, cap, "%" PRIu64, bytes);
    else
        snprintf(buf, cap, "%" PRIu64 "%c", v, units[u]);
    return buf;
}

const char *qi_format_power(uint64_t microwatts, char *buf, size_t cap)
{
    uint64_t whole = microwatts / 1000000, frac = microwatts % 1000000;
    if (frac == 0) {
        snprintf(buf, cap, "%" PRIu64 "W", whole);
        return buf;
    }
    char f[8];
    snprintf(f, sizeof f, "%06" PRIu64, frac);
    size_t n = strlen(f);
    while (n > 0 && f[n - 1] == '0')
        f[--n] = '\0';
    snprintf(buf, cap, "%" PRIu64 ".%sW", whole, f);
    return buf;
}
