/* utf8.c: UTF-8 validation and repair, by the Unicode "maximal subpart" rule. */
#include "utf8.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Classifies the bytes at s (n >= 1): returns the length (1..4) of a valid character, -k when
 * the first k bytes are a maximal invalid subpart (to be replaced by one U+FFFD), or 0 when all
 * n bytes are a valid but unfinished start of a character. NUL counts as invalid. */
static int classify(const unsigned char *s, size_t n)
{
    unsigned b = s[0];
    if (b == 0)
        return -1;
    if (b < 0x80)
        return 1;
    int need;
    unsigned lo = 0x80, hi = 0xbf; /* range of the second byte; later bytes are 80..BF */
    if (b >= 0xc2 && b <= 0xdf) need = 1;
    else if (b == 0xe0) { need = 2; lo = 0xa0; }
    else if ((b >= 0xe1 && b <= 0xec) || b == 0xee || b == 0xef) need = 2;
    else if (b == 0xed) { need = 2; hi = 0x9f; }   /* no surrogates */
    else if (b == 0xf0) { need = 3; lo = 0x90; }   /* no overlong 4-byte forms */
    else if (b >= 0xf1 && b <= 0xf3) need = 3;
    else if (b == 0xf4) { need = 3; hi = 0x8f; }   /* nothing above U+10FFFF */
    else return -1;
    for (int i = 1; i <= need; i++) {
        if ((size_t)i >= n)
            return 0;
        unsigned c = s[i];
        unsigned l = i == 1 ? lo : 0x80, h = i == 1 ? hi : 0xbf;
        if (c < l || c > h)
            return -i;
    }
    return need + 1;
}

size_t qi_utf8_valid_prefix(const char *s, size_t n)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0;
    while (i < n) {
        int r = classify(u + i, n - i);
        if (r <= 0)
            return i;
        i += (size_t)r;
    }
    return n;
}

bool qi_utf8_valid(const char *s, size_t n)
{
    return qi_utf8_valid_prefix(s, n) == n;
}

size_t qi_utf8_complete_prefix(const char *s, size_t n)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0;
    while (i < n) {
        int r = classify(u + i, n - i);
        if (r == 0)
            return i;
        i += (size_t)(r > 0 ? r : -r);
    }
    return n;
}

char *qi_utf8_sanitize(const char *s, size_t n, size_t *out_len)
{
    static const char fffd[3] = {(char)0xef, (char)0xbf, (char)0xbd};
    /* Each replaced byte grows to at most 3 bytes. */
    if (n > (SIZE_MAX - 1) / 3)
        return NULL;
    char *out = malloc(n * 3 + 1);
    if (!out)
        return NULL;
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0, o = 0;
    while (i < n) {
        int r = classify(u + i, n - i);
        if (r > 0) {
            memcpy(out + o, s + i, (size_t)r);
            o += (size_t)r;
            i += (size_t)r;
        } else {
            memcpy(out + o, fffd, 3);
            o += 3;
            i += r < 0 ? (size_t)-r : n - i; /* an unfinished character at the end: one U+FFFD */
        }
    }
    out[o] = '\0';
    if (out_len)
        *out_len = o;
    return out;
}
