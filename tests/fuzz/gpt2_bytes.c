/* gpt2_bytes.c: see gpt2_bytes.h. */
#include "gpt2_bytes.h"

size_t gpt2_spell_byte(uint8_t b, char *out)
{
    unsigned c = b;
    if (!((b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE)) {
        unsigned n = 0;
        for (unsigned k = 0; k < b; k++)
            n += !((k >= 0x21 && k <= 0x7E) || (k >= 0xA1 && k <= 0xAC) || k >= 0xAE);
        c = 256 + n;
    }
    if (c < 0x80) {
        out[0] = (char)c;
        return 1;
    }
    out[0] = (char)(0xC0 | c >> 6);
    out[1] = (char)(0x80 | (c & 0x3F));
    return 2;
}
