/* tokenizer_internal.h: the tokenizer's tables, shared by the loader (tokenizer_load.c) and the
 * encoder/decoder (tokenizer.c). Not part of the runtime's API: only those two files include it.
 *
 * Everything is in bytes: the byte<->unicode alphabet of GPT-2's files is undone at load time,
 * so a token is the byte string it stands for and the encoder never sees the alphabet. */
#ifndef QR_TOKENIZER_INTERNAL_H
#define QR_TOKENIZER_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tokenizer.h"
#include "unicode.h"

/* Per-id flags. */
#define QR_TOK_VOCAB 1u   /* in model.vocab / encoder.json: merges and ignore_merges see it */
#define QR_TOK_ADDED 2u   /* an added token: matched verbatim in the text before splitting */
#define QR_TOK_SPECIAL 4u /* an added token marked "special" */
#define QR_TOK_NORMALIZED 8u /* an added token matched in the normalized text (HF "normalized") */

/* No token can have this pair key: ids are below INT32_MAX. */
#define QR_TOK_NO_PAIR UINT64_MAX

/* One slot of the merge table: the pair (left id, right id) merges, at rank `rank` (lower
 * merges first), into token `merged`. */
typedef struct {
    uint64_t pair;   /* (uint64_t)left << 32 | right, or QR_TOK_NO_PAIR for a free slot */
    uint32_t rank;
    int32_t merged;
} qr_tok_merge;

/* An added token as the encoder looks for it: its id and the text that matches it, which for a
 * "normalized" token is its content normalized (Hugging Face matches those after normalizing). */
typedef struct {
    int32_t id;
    uint32_t off, len; /* the match text: added_bytes[off .. off + len) */
} qr_tok_added;

/* One set of added tokens, sorted by first byte, then longest first. */
typedef struct {
    qr_tok_added *tok;
    size_t n;
    uint32_t start[257]; /* tok[start[b] .. start[b + 1]) start with byte b */
} qr_tok_added_set;

/* Most normalization steps a tokenizer.json "Sequence" may hold. */
#define QR_TOK_MAX_NORM 4

struct qr_tokenizer {
    size_t n_tokens;          /* ids are 0 .. n_tokens - 1, no holes */
    uint8_t *bytes;           /* every token's bytes, back to back */
    uint32_t *offset;         /* (n_tokens + 1): token id is bytes[offset[id] .. offset[id + 1]) */
    uint8_t *flags;           /* (n_tokens): QR_TOK_* */
    int32_t byte_token[256];  /* the id of each single-byte token; -1 only for the 13 bytes that
                               * well-formed UTF-8 never holds (0xC0, 0xC1, 0xF5..0xFF) */

    int32_t *vocab_slots;     /* (vocab_mask + 1): open addressing over QR_TOK_VOCAB ids by
                               * their bytes, -1 for a free slot */
    size_t vocab_mask;

    qr_tok_merge *merges;     /* (merge_mask + 1): open addressing by pair */
    size_t merge_mask;
    size_t n_merges;

    size_t n_added;           /* added tokens, both sets */
    qr_tok_added_set added_raw;  /* matched in the text as given, first */
    qr_tok_added_set added_norm; /* matched in each remaining piece once it is normalized */
    uint8_t *added_bytes;     /* the match texts of both sets */

    qr_norm_form norm[QR_TOK_MAX_NORM]; /* the normalizer, steps in order; none if n_norm 0 */
    size_t n_norm;
    qr_space_flavour space;   /* which \s the split regex uses */

    bool ignore_merges;       /* HF: a pre-token that is itself in the vocab is not merged */
    bool add_prefix_space;    /* HF ByteLevel: a segment not starting with ' ' gets one */
    bool use_regex;           /* HF ByteLevel: split with the GPT-2 regex (else: no split) */
    bool merge_in_passes;     /* GPT-2's bpe(): each step merges every occurrence of the best
                               * pair; HF: one pair at a time. They differ only for merge lists
                               * in which a merge uses a token made by a later merge. */
};

/* FNV-1a: used for the vocab table (at load) and the encoder's pre-token cache. */
static inline uint64_t qr_tok_hash_bytes(const uint8_t *s, size_t n)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++)
        h = (h ^ s[i]) * 0x100000001b3ull;
    return h;
}

/* Fibonacci hashing of a pair key: the multiply spreads consecutive ids over the table. */
static inline size_t qr_tok_hash_pair(uint64_t pair)
{
    uint64_t h = pair * 0x9e3779b97f4a7c15ull;
    return (size_t)(h ^ (h >> 29));
}

static inline uint64_t qr_tok_pair(int32_t left, int32_t right)
{
    return (uint64_t)(uint32_t)left << 32 | (uint32_t)right;
}

/* The id of the QR_TOK_VOCAB token whose bytes are s[0..n), or -1. */
int32_t qr_tok_vocab_find(const qr_tokenizer *t, const uint8_t *s, size_t n);

/* The merge of (left, right), or NULL if the pair does not merge. */
static inline const qr_tok_merge *qr_tok_merge_find(const qr_tokenizer *t, int32_t left,
                                                    int32_t right)
{
    uint64_t key = qr_tok_pair(left, right);
    for (size_t i = qr_tok_hash_pair(key) & t->merge_mask;; i = (i + 1) & t->merge_mask) {
        const qr_tok_merge *m = &t->merges[i];
        if (m->pair == key)
            return m;
        if (m->pair == QR_TOK_NO_PAIR)
            return NULL;
    }
}

#endif
