/* blocks.h: the on-disk blocks of the group-quantized types, and the portable packing and
 * unpacking of their 32 integer codes. Layouts are in runtime/FORMAT.md ("Quantized blocks").
 *
 * Every block holds 32 weights: an f16 header (scale d, then minimum m for the _1 types) and the
 * codes. Codes wider than 4 bits are split into planes — the low 4 bits as nibbles, the low 2 bits
 * as crumbs, a single high bit as a 32-bit plane — so an AVX2 or NEON kernel rebuilds 32 codes
 * with a few shifts and masks and no per-weight bit gathering. The structs exist for their sizes
 * (checked by the compiler, as ggml does) and for readable SIMD code; the packing below works on
 * the byte array after the header and is the one definition of the layout. */
#ifndef QR_KERNELS_BLOCKS_H
#define QR_KERNELS_BLOCKS_H

#include <stddef.h>
#include <stdint.h>

#define QR_QK 32 /* weights per block, every quantized type */

/* ---------------------------------------------------------------- blocks */

/* Symmetric: w = d·(q − 2^(B−1)). */
typedef struct {
    uint16_t d;        /* f16 scale */
    uint8_t qs[32];    /* q[i] */
} qr_block_q8_0;
typedef struct {
    uint16_t d;
    uint8_t ql[16];    /* low 4 bits: byte j = q[j] & 15 | (q[j+16] & 15) << 4 */
    uint8_t qh[8];     /* high 2 bits: byte j = h[j] | h[j+8] << 2 | h[j+16] << 4 | h[j+24] << 6 */
} qr_block_q6_0;
typedef struct {
    uint16_t d;
    uint8_t ql[16];    /* low 4 bits, as q6_0 */
    uint8_t qh[4];     /* bit 4: little-endian u32, bit j = bit 4 of q[j] */
} qr_block_q5_0;
typedef struct {
    uint16_t d;
    uint8_t qs[16];    /* byte j = q[j] | q[j+16] << 4 */
} qr_block_q4_0;
typedef struct {
    uint16_t d;
    uint8_t ql[8];     /* low 2 bits, in the 2-bit layout */
    uint8_t qh[4];     /* bit 2: little-endian u32, bit j = bit 2 of q[j] */
} qr_block_q3_0;
typedef struct {
    uint16_t d;
    uint8_t qs[8];     /* byte j = q[j] | q[j+8] << 2 | q[j+16] << 4 | q[j+24] << 6 */
} qr_block_q2_0;

/* With a minimum: w = d·q + m. Same code planes, after a 4-byte header. */
typedef struct {
    uint16_t d, m;
    uint8_t qs[32];
} qr_block_q8_1;
typedef struct {
    uint16_t d, m;
    uint8_t ql[16];
    uint8_t qh[8];
} qr_block_q6_1;
typedef struct {
    uint16_t d, m;
    uint8_t ql[16];
    uint8_t qh[4];
} qr_block_q5_1;
typedef struct {
    uint16_t d, m;
    uint8_t qs[16];
} qr_block_q4_1;
typedef struct {
    uint16_t d, m;
    uint8_t ql[8];
    uint8_t qh[4];
} qr_block_q3_1;
typedef struct {
    uint16_t d, m;
    uint8_t qs[8];
} qr_block_q2_1;

/* Small header: w = d·(q − 2^(B−1) + ½), d the E5M3 byte e (d = the f16 whose bits are e << 7).
 * Same code planes, after a 1-byte header. */
typedef struct {
    uint8_t e;
    uint8_t qs[16];
} qr_block_q4_s;
typedef struct {
    uint8_t e;
    uint8_t ql[8];
    uint8_t qh[4];
} qr_block_q3_s;
typedef struct {
    uint8_t e;
    uint8_t qs[8];
} qr_block_q2_s;

/* Bits per weight = 8 · size / 32: the compiler checks the table in FORMAT.md. */
_Static_assert(sizeof(qr_block_q8_0) == 34, "q8_0: 8.5 bits/weight");
_Static_assert(sizeof(qr_block_q6_0) == 26, "q6_0: 6.5 bits/weight");
_Static_assert(sizeof(qr_block_q5_0) == 22, "q5_0: 5.5 bits/weight");
_Static_assert(sizeof(qr_block_q4_0) == 18, "q4_0: 4.5 bits/weight");
_Static_assert(sizeof(qr_block_q3_0) == 14, "q3_0: 3.5 bits/weight");
_Static_assert(sizeof(qr_block_q2_0) == 10, "q2_0: 2.5 bits/weight");
_Static_assert(sizeof(qr_block_q8_1) == 36, "q8_1: 9 bits/weight");
_Static_assert(sizeof(qr_block_q6_1) == 28, "q6_1: 7 bits/weight");
_Static_assert(sizeof(qr_block_q5_1) == 24, "q5_1: 6 bits/weight");
_Static_assert(sizeof(qr_block_q4_1) == 20, "q4_1: 5 bits/weight");
_Static_assert(sizeof(qr_block_q3_1) == 16, "q3_1: 4 bits/weight");
_Static_assert(sizeof(qr_block_q2_1) == 12, "q2_1: 3 bits/weight");
_Static_assert(sizeof(qr_block_q4_s) == 17, "q4_s: 4.25 bits/weight");
_Static_assert(sizeof(qr_block_q3_s) == 13, "q3_s: 3.25 bits/weight");
_Static_assert(sizeof(qr_block_q2_s) == 9, "q2_s: 2.25 bits/weight");
/* The codes start right after the header: 2 bytes for _0, 4 for _1. */
_Static_assert(offsetof(qr_block_q6_0, ql) == 2 && offsetof(qr_block_q6_1, ql) == 4, "header");
_Static_assert(offsetof(qr_block_q5_0, qh) == 18 && offsetof(qr_block_q3_1, qh) == 12, "planes");

/* ---------------------------------------------------------------- activations */

/* x rounded to 8 bits per block of 32, the form the integer dot products read (as ggml's q8_1,
 * regrouped): x[32k + j] ≈ d[k]·q[k][j] for the 8 blocks k of a group of 256 values, and
 * s[k] = d[k]·Σ_j q[k][j], so a block's offset (the −2^(B−1) of a _0 type, the m of a _1 type)
 * costs one multiply per block, not one per weight. The scales of 8 blocks sit side by side so
 * a kernel applies them with one vector multiply per group. Blocks past the end of x in the last
 * group are zero. Not a storage type: built per product and thrown away. */
#define QR_X8_GROUP 8 /* blocks per group */
typedef struct {
    float d[QR_X8_GROUP];
    float s[QR_X8_GROUP];
    int8_t q[QR_X8_GROUP][32];
} qr_x8_group;
_Static_assert(sizeof(qr_x8_group) == 320, "x8 group");

/* Groups needed for n values (n a multiple of 32). */
static inline size_t qr_x8_groups(size_t n)
{
    return (n / 32 + QR_X8_GROUP - 1) / QR_X8_GROUP;
}

/* ---------------------------------------------------------------- code planes */

/* Code planes, little-endian and byte-addressed so they read the same on any CPU. */
static inline void qr_pack_nibbles(uint8_t *dst16, const uint8_t q[32])
{
    for (int j = 0; j < 16; j++)
        dst16[j] = (uint8_t)((q[j] & 15) | (q[j + 16] & 15) << 4);
}

static inline void qr_unpack_nibbles(const uint8_t *src16, uint8_t q[32])
{
    for (int j = 0; j < 16; j++) {
        q[j] = src16[j] & 15;
        q[j + 16] = src16[j] >> 4;
    }
}

/* 2-bit crumbs of (q >> shift). */
static inline void qr_pack_crumbs(uint8_t *dst8, const uint8_t q[32], int shift)
{
    for (int j = 0; j < 8; j++)
        dst8[j] = (uint8_t)((q[j] >> shift & 3) | (q[j + 8] >> shift & 3) << 2 |
                            (q[j + 16] >> shift & 3) << 4 | (q[j + 24] >> shift & 3) << 6);
}

/* ORs crumb j, shifted left by `shift`, into q[j]. */
static inline void qr_unpack_crumbs(const uint8_t *src8, uint8_t q[32], int shift)
{
    for (int j = 0; j < 8; j++)
        for (int k = 0; k < 4; k++)
            q[j + 8 * k] |= (uint8_t)((src8[j] >> (2 * k) & 3) << shift);
}

/* Bit `bit` of every code into a 32-bit little-endian plane. */
static inline void qr_pack_bitplane(uint8_t *dst4, const uint8_t q[32], int bit)
{
    for (int b = 0; b < 4; b++) {
        uint8_t v = 0;
        for (int i = 0; i < 8; i++)
            v |= (uint8_t)((q[8 * b + i] >> bit & 1) << i);
        dst4[b] = v;
    }
}

static inline void qr_unpack_bitplane(const uint8_t *src4, uint8_t q[32], int bit)
{
    for (int j = 0; j < 32; j++)
        q[j] |= (uint8_t)((src4[j / 8] >> (j % 8) & 1) << bit);
}

/* The codes of a block of `bits`-bit codes (2..8), packed after the header at `data`. */
static inline void qr_pack_codes(int bits, uint8_t *data, const uint8_t q[32])
{
    switch (bits) {
    case 8:
        for (int j = 0; j < 32; j++)
            data[j] = q[j];
        break;
    case 6: qr_pack_nibbles(data, q); qr_pack_crumbs(data + 16, q, 4); break;
    case 5: qr_pack_nibbles(data, q); qr_pack_bitplane(data + 16, q, 4); break;
    case 4: qr_pack_nibbles(data, q); break;
    case 3: qr_pack_crumbs(data, q, 0); qr_pack_bitplane(data + 8, q, 2); break;
    case 2: qr_pack_crumbs(data, q, 0); break;
    default: break;
    }
}

static inline void qr_unpack_codes(int bits, const uint8_t *data, uint8_t q[32])
{
    switch (bits) {
    case 8:
        for (int j = 0; j < 32; j++)
            q[j] = data[j];
        break;
    case 6: qr_unpack_nibbles(data, q); qr_unpack_crumbs(data + 16, q, 4); break;
    case 5: qr_unpack_nibbles(data, q); qr_unpack_bitplane(data + 16, q, 4); break;
    case 4: qr_unpack_nibbles(data, q); break;
    case 3:
        for (int j = 0; j < 32; j++)
            q[j] = 0;
        qr_unpack_crumbs(data, q, 0);
        qr_unpack_bitplane(data + 8, q, 2);
        break;
    case 2:
        for (int j = 0; j < 32; j++)
            q[j] = 0;
        qr_unpack_crumbs(data, q, 0);
        break;
    default: break;
    }
}

/* The f16 header fields, read byte-wise (blocks are only 2-byte aligned inside a row). */
static inline uint16_t qr_block_u16(const uint8_t *p)
{
    return (uint16_t)(p[0] | p[1] << 8);
}

#endif
