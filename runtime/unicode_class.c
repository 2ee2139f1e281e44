/* unicode_class.c: UTF-8 scanning and class look-up for the pre-tokenizer.
 *
 * The class table is generated (unicode_class_table.h); this file only searches it. */
#include "unicode_class.h"

#include "unicode_class_table.h"

int qr_utf8_scan(const uint8_t *s, size_t len, uint32_t *cp)
{
    uint8_t b0 = s[0];
    if (b0 < 0x80) {
        *cp = b0;
        return 1;
    }
    /* The lead byte fixes the length and the range of the first continuation byte; that range
     * is what excludes overlong forms (E0, F0), surrogates (ED) and values past U+10FFFF (F4). */
    int need;
    uint8_t lo = 0x80, hi = 0xBF;
    uint32_t c;
    if (b0 >= 0xC2 && b0 <= 0xDF) {
        need = 2;
        c = b0 & 0x1Fu;
    } else if (b0 >= 0xE0 && b0 <= 0xEF) {
        need = 3;
        c = b0 & 0x0Fu;
        if (b0 == 0xE0)
            lo = 0xA0;
        else if (b0 == 0xED)
            hi = 0x9F;
    } else if (b0 >= 0xF0 && b0 <= 0xF4) {
        need = 4;
        c = b0 & 0x07u;
        if (b0 == 0xF0)
            lo = 0x90;
        else if (b0 == 0xF4)
            hi = 0x8F;
    } else {
        return 0;
    }
    for (int i = 1; i < need; i++) {
        if ((size_t)i >= len)
            return QR_UTF8_INCOMPLETE;
        uint8_t b = s[i];
        if (b < lo || b > hi)
            return 0;
        lo = 0x80;
        hi = 0xBF;
        c = c << 6 | (b & 0x3Fu);
    }
    *cp = c;
    return need;
}

qr_uclass qr_uclass_of(uint32_t cp)
{
    if (cp < 128)
        return (qr_uclass)qr_uclass_ascii[cp];
    if (cp > 0x10FFFF)
        return QR_UCLASS_OTHER;
    /* Binary search for the last run starting at or before cp; runs[0] starts at U+0000. */
    uint32_t key = cp << 2 | 3u;
    size_t lo = 0, hi = QR_UCLASS_RUN_COUNT;
    while (hi - lo > 1) {
        size_t mid = lo + (hi - lo) / 2;
        if (qr_uclass_runs[mid] <= key)
            lo = mid;
        else
            hi = mid;
    }
    return (qr_uclass)(qr_uclass_runs[lo] & 3u);
}
