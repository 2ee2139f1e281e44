/* unicode.c: UTF-8 scanning, and the regex classes and normalization forms the tokenizer needs,
 * looked up in libutf8proc. No tables of our own. */
#include "unicode.h"

#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

/* ---------------------------------------------------------------- UTF-8 */

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

/* ---------------------------------------------------------------- regex classes */

/* ASCII is most of most text: its classes without a call into utf8proc. */
static qr_uclass ascii_class(uint32_t c)
{
    if ((c | 0x20u) >= 'a' && (c | 0x20u) <= 'z')
        return QR_UCLASS_LETTER;
    if (c >= '0' && c <= '9')
        return QR_UCLASS_NUMBER;
    if (c == ' ' || (c >= 0x09 && c <= 0x0D))
        return QR_UCLASS_SPACE;
    return QR_UCLASS_OTHER;
}

qr_uclass qr_uclass_of(uint32_t cp, qr_space_flavour flavour)
{
    if (cp < 0x80)
        return ascii_class(cp);
    if (cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
        return QR_UCLASS_OTHER;
    if (cp == 0x85)
        return flavour == QR_SPACE_ONIG ? QR_UCLASS_SPACE : QR_UCLASS_OTHER; /* a Cc */
    if (cp == 0xFEFF)
        return flavour == QR_SPACE_JS ? QR_UCLASS_SPACE : QR_UCLASS_OTHER;   /* a Cf */
    switch (utf8proc_category((utf8proc_int32_t)cp)) {
    case UTF8PROC_CATEGORY_LU:
    case UTF8PROC_CATEGORY_LL:
    case UTF8PROC_CATEGORY_LT:
    case UTF8PROC_CATEGORY_LM:
    case UTF8PROC_CATEGORY_LO:
        return QR_UCLASS_LETTER;
    case UTF8PROC_CATEGORY_ND:
    case UTF8PROC_CATEGORY_NL:
    case UTF8PROC_CATEGORY_NO:
        return QR_UCLASS_NUMBER;
    case UTF8PROC_CATEGORY_ZS:
    case UTF8PROC_CATEGORY_ZL:
    case UTF8PROC_CATEGORY_ZP:
        return QR_UCLASS_SPACE;
    default:
        return QR_UCLASS_OTHER;
    }
}

/* ---------------------------------------------------------------- normalization */

qr_norm_form qr_norm_form_named(const char *type)
{
    static const struct {
        const char *name;
        qr_norm_form form;
    } forms[] = {{"NFC", QR_NORM_NFC}, {"NFD", QR_NORM_NFD}, {"NFKC", QR_NORM_NFKC},
                 {"NFKD", QR_NORM_NFKD}};
    for (size_t i = 0; i < sizeof forms / sizeof *forms; i++)
        if (strcmp(type, forms[i].name) == 0)
            return forms[i].form;
    return 0;
}

static utf8proc_option_t options_of(qr_norm_form f)
{
    switch (f) {
    case QR_NORM_NFC:
        return UTF8PROC_STABLE | UTF8PROC_COMPOSE;
    case QR_NORM_NFD:
        return UTF8PROC_STABLE | UTF8PROC_DECOMPOSE;
    case QR_NORM_NFKC:
        return UTF8PROC_STABLE | UTF8PROC_COMPOSE | UTF8PROC_COMPAT;
    case QR_NORM_NFKD:
    default:
        return UTF8PROC_STABLE | UTF8PROC_DECOMPOSE | UTF8PROC_COMPAT;
    }
}

/* An output buffer that grows by doubling. */
typedef struct {
    uint8_t *p;
    size_t len, cap;
} buf;

static bool buf_put(buf *b, const uint8_t *s, size_t n)
{
    if (b->cap - b->len <= n) {
        size_t cap = b->cap ? b->cap : 64;
        while (cap - b->len <= n) {
            if (cap > SIZE_MAX / 2)
                return false;
            cap *= 2;
        }
        uint8_t *p = realloc(b->p, cap);
        if (!p)
            return false;
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    return true;
}

/* Normalizes one well-formed stretch s[0..len) through every form and appends it to out. */
static bool normalize_stretch(const qr_norm_form *forms, size_t n_forms, const uint8_t *s,
                              size_t len, buf *out)
{
    uint8_t *cur = NULL;
    const uint8_t *in = s;
    size_t in_len = len;
    for (size_t f = 0; f < n_forms; f++) {
        if (in_len > (size_t)PTRDIFF_MAX)
            break;
        utf8proc_uint8_t *dst = NULL;
        utf8proc_ssize_t r = utf8proc_map(in, (utf8proc_ssize_t)in_len, &dst, options_of(forms[f]));
        free(cur);
        if (r < 0) {
            /* Only NOMEM can happen: the stretch is well-formed and no option rejects anything. */
            free(dst);
            return false;
        }
        cur = dst;
        in = cur;
        in_len = (size_t)r;
    }
    bool ok = cur && buf_put(out, cur, in_len);
    free(cur);
    return ok;
}

/* Normalizes one well-formed run s[0..len) and appends it to out. Most text is mostly ASCII, and
 * every form maps an ASCII character to itself; more, a text may be cut before any ASCII
 * character and each side normalized on its own: no canonical reordering moves across a starter,
 * and no composition has an ASCII second element. So ASCII is copied, and only each stretch of
 * non-ASCII characters, with the one ASCII character before it (which may compose with it: e +
 * U+0301), goes through utf8proc. */
static bool normalize_run(const qr_norm_form *forms, size_t n_forms, const uint8_t *s, size_t len,
                          buf *out)
{
    if (n_forms == 0)
        return buf_put(out, s, len);
    size_t i = 0, copied = 0;
    while (i < len) {
        if (s[i] < 0x80) {
            i++;
            continue;
        }
        size_t start = i > copied ? i - 1 : i; /* the ASCII character before, if not yet out */
        size_t end = i;
        while (end < len && s[end] >= 0x80)
            end++;
        if (!buf_put(out, s + copied, start - copied) ||
            !normalize_stretch(forms, n_forms, s + start, end - start, out))
            return false;
        copied = i = end;
    }
    return buf_put(out, s + copied, len - copied);
}

qr_status qr_normalize(const qr_norm_form *forms, size_t n_forms, const uint8_t *s, size_t len,
                       uint8_t **out, size_t *out_len, qr_error *err)
{
    *out = NULL;
    *out_len = 0;
    buf b = {0};
    bool ok = buf_put(&b, (const uint8_t *)"", 0); /* so an empty result is still a buffer */
    size_t run = 0, i = 0;
    while (ok && i < len) {
        uint32_t cp;
        int k = s[i] < 0x80 ? 1 : qr_utf8_scan(s + i, len - i, &cp);
        if (k > 0) {
            i += (size_t)k;
            continue;
        }
        ok = normalize_run(forms, n_forms, s + run, i - run, &b) && buf_put(&b, s + i, 1);
        run = ++i;
    }
    ok = ok && normalize_run(forms, n_forms, s + run, len - run, &b);
    if (!ok) {
        free(b.p);
        return qr_fail(err, QR_ERR_NOMEM, "tokenizer: out of memory normalizing %zu bytes", len);
    }
    b.p[b.len] = '\0'; /* buf_put always leaves a byte spare */
    *out = b.p;
    *out_len = b.len;
    return QR_OK;
}
