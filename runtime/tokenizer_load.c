/* tokenizer_load.c: building a tokenizer from a Hugging Face tokenizer.json or from GPT-2's
 * encoder.json + vocab.bpe, and checking them on the way.
 *
 * Tokens in these files are written in GPT-2's byte alphabet (bytes_to_unicode(): ' ' is 'Ġ');
 * the alphabet is undone here, once, so the tables hold raw bytes. A file is refused, with a
 * message naming it and the fault, unless every id is unique and the ids run 0..N-1, every token
 * is spelled in the alphabet, every byte that UTF-8 text can hold has a token (so any valid text
 * can be encoded; the 13 others may be missing), every merge joins two known tokens into a known
 * token, and added tokens agree with the vocab. It also reads the normalizer and indexes the
 * added tokens the way the encoder matches them. Options that would change the ids and that we
 * do not implement are refused rather than ignored. This file does not encode; JSON is parsed by
 * json-c. */
#include "tokenizer_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <json.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "unicode.h"

/* Files larger than this are refused before reading (GPT-2's tokenizer.json is 1.4 MB). */
#define MAX_FILE_SIZE (256u << 20)

/* ---------------------------------------------------------------- GPT-2's byte alphabet */

/* bytes_to_unicode(): printable bytes (0x21..0x7E, 0xA1..0xAC, 0xAE..0xFF) stand for
 * themselves; the other 68 (0x00..0x20, 0x7F..0xA0, 0xAD), in order, become U+0100..U+0143.
 * Returns the byte that character cp stands for, or -1 if cp is not in the alphabet. */
static int byte_of_char(uint32_t cp)
{
    if ((cp >= 0x21 && cp <= 0x7E) || (cp >= 0xA1 && cp <= 0xAC) || (cp >= 0xAE && cp <= 0xFF))
        return (int)cp;
    if (cp < 0x100 || cp > 0x143)
        return -1;
    uint32_t n = cp - 0x100;
    if (n < 33)
        return (int)n;            /* 0x00..0x20 */
    if (n < 67)
        return (int)(0x7F + n - 33); /* 0x7F..0xA0 */
    return 0xAD;
}

/* The inverse, for messages: the character that stands for byte b. */
static uint32_t char_of_byte(uint8_t b)
{
    if (byte_of_char(b) == b)
        return b;
    if (b <= 0x20)
        return 0x100u + b;
    if (b >= 0x7F && b <= 0xA0)
        return 0x100u + 33 + (b - 0x7Fu);
    return 0x143; /* 0xAD */
}

/* Decodes a token spelled in the alphabet, s[0..n), into out (room for n bytes: each character
 * is at least one byte of UTF-8). Returns the byte count, or -1 with *bad_cp set to the first
 * character outside the alphabet (UINT32_MAX for bytes that are not UTF-8). */
static long unmap(const char *s, size_t n, uint8_t *out, uint32_t *bad_cp)
{
    const uint8_t *p = (const uint8_t *)s;
    size_t o = 0;
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        int k = qr_utf8_scan(p + i, n - i, &cp);
        if (k <= 0) {
            *bad_cp = UINT32_MAX;
            return -1;
        }
        int b = byte_of_char(cp);
        if (b < 0) {
            *bad_cp = cp;
            return -1;
        }
        out[o++] = (uint8_t)b;
        i += (size_t)k;
    }
    return (long)o;
}

/* ---------------------------------------------------------------- messages */

#define QUOTE_SIZE 72

/* s[0..n) in double quotes for a message: control bytes, quotes and backslashes escaped, cut
 * (at a character boundary) after about 40 bytes. */
static const char *quote(char buf[QUOTE_SIZE], const char *s, size_t n)
{
    size_t o = 0;
    buf[o++] = '"';
    for (size_t i = 0; i < n; i++) {
        uint8_t c = (uint8_t)s[i];
        if (o > 40 && ((c & 0xC0) != 0x80 || o > 44)) {
            memcpy(buf + o, "...", 3);
            o += 3;
            break;
        }
        if (c < 0x20 || c == 0x7F || c == '"' || c == '\\') {
            o += (size_t)snprintf(buf + o, QUOTE_SIZE - o, "\\x%02X", c);
        } else {
            buf[o++] = (char)c;
        }
    }
    buf[o++] = '"';
    buf[o] = '\0';
    return buf;
}

/* "U+0041" or "invalid UTF-8", for unmap()'s *bad_cp. */
static const char *describe_cp(char buf[16], uint32_t cp)
{
    if (cp == UINT32_MAX)
        return "invalid UTF-8";
    snprintf(buf, 16, "U+%04X", (unsigned)cp);
    return buf;
}

/* ---------------------------------------------------------------- the vocabulary */

/* An added token as read from tokenizer.json (content is raw text, not the alphabet). */
typedef struct {
    const char *content;
    size_t len;
    int64_t id;
    bool special;
    bool normalized; /* matched after normalization (HF "normalized") */
} added_spec;

/* What the loader knows about one id while it builds the tables. */
typedef struct {
    const char *text; /* the vocab key (alphabet), or an added-only token's content (raw) */
    size_t len;
    uint8_t flags;    /* QR_TOK_* */
} id_entry;

static size_t pow2_at_least(size_t n)
{
    size_t p = 16;
    while (p < n)
        p *= 2;
    return p;
}

/* For sorting added tokens so the encoder tries them by first byte, longest first. */
typedef struct {
    const uint8_t *bytes;
    size_t len;
    int32_t id;
    uint32_t off;
} added_key;

static int cmp_added(const void *a, const void *b)
{
    const added_key *x = a, *y = b;
    if (x->bytes[0] != y->bytes[0])
        return x->bytes[0] < y->bytes[0] ? -1 : 1;
    if (x->len != y->len)
        return x->len > y->len ? -1 : 1;
    return memcmp(x->bytes, y->bytes, x->len);
}

/* Sorts keys[0..n) into set, refusing two with the same match text (which id would it get?). */
static qr_status index_set(qr_tok_added_set *set, added_key *keys, size_t n, const char *src,
                           qr_error *err)
{
    qsort(keys, n, sizeof *keys, cmp_added);
    set->n = n;
    set->tok = malloc((n ? n : 1) * sizeof *set->tok);
    if (!set->tok)
        return qr_fail(err, QR_ERR_NOMEM, "%s: out of memory", src);
    for (size_t i = 0; i < n; i++) {
        if (i > 0 && cmp_added(&keys[i - 1], &keys[i]) == 0) {
            char q[QUOTE_SIZE];
            return qr_fail(err, QR_ERR_FORMAT,
                           "%s: added_tokens: ids %d and %d match the same text %s", src,
                           (int)keys[i - 1].id, (int)keys[i].id,
                           quote(q, (const char *)keys[i].bytes, keys[i].len));
        }
        set->tok[i] = (qr_tok_added){keys[i].id, keys[i].off, (uint32_t)keys[i].len};
    }
    /* start[b] = index of the first token whose first byte is >= b. */
    size_t i = 0;
    for (unsigned b = 0; b <= 256; b++) {
        while (i < n && keys[i].bytes[0] < b)
            i++;
        set->start[b] = (uint32_t)i;
    }
    return QR_OK;
}

/* Builds the two sets of added tokens the encoder matches: "normalized" ones by their content
 * normalized with the tokenizer's normalizer (as Hugging Face builds its second matcher), the
 * others by their content as it is. */
static qr_status index_added(qr_tokenizer *t, const char *src, qr_error *err)
{
    size_t n = 0, total = 0;
    for (size_t id = 0; id < t->n_tokens; id++)
        n += (t->flags[id] & QR_TOK_ADDED) != 0;
    t->n_added = n;
    added_key *keys = malloc((n ? n : 1) * sizeof *keys);
    if (!keys)
        return qr_fail(err, QR_ERR_NOMEM, "%s: out of memory", src);
    qr_status st = QR_OK;
    size_t k = 0, cap = 0;
    for (size_t id = 0; id < t->n_tokens && st == QR_OK; id++) {
        if (!(t->flags[id] & QR_TOK_ADDED))
            continue;
        const uint8_t *s = t->bytes + t->offset[id];
        size_t len = t->offset[id + 1] - t->offset[id];
        uint8_t *norm = NULL;
        if ((t->flags[id] & QR_TOK_NORMALIZED) && t->n_norm > 0) {
            st = qr_normalize(t->norm, t->n_norm, s, len, &norm, &len, err);
            if (st != QR_OK)
                break;
            s = norm;
            if (len == 0) {
                char q[QUOTE_SIZE];
                st = qr_fail(err, QR_ERR_FORMAT, "%s: added token %zu %s is empty once normalized",
                             src, id, quote(q, (const char *)t->bytes + t->offset[id],
                                            t->offset[id + 1] - t->offset[id]));
                free(norm);
                break;
            }
        }
        if (total + len > cap || !t->added_bytes) {
            size_t c = cap ? cap : 256;
            while (c < total + len)
                c *= 2;
            uint8_t *p = realloc(t->added_bytes, c);
            if (!p) {
                free(norm);
                st = qr_fail(err, QR_ERR_NOMEM, "%s: out of memory", src);
                break;
            }
            t->added_bytes = p;
            cap = c;
        }
        memcpy(t->added_bytes + total, s, len);
        keys[k++] = (added_key){NULL, len, (int32_t)id, (uint32_t)total};
        total += len;
        free(norm);
    }
    if (st == QR_OK) {
        /* The arena no longer moves: point the keys into it, raw ones first. */
        size_t n_raw = 0;
        for (size_t i = 0; i < k; i++)
            keys[i].bytes = t->added_bytes + keys[i].off;
        for (size_t i = 0; i < k; i++) {
            if (!(t->flags[keys[i].id] & QR_TOK_NORMALIZED)) {
                added_key tmp = keys[n_raw];
                keys[n_raw++] = keys[i];
                keys[i] = tmp;
            }
        }
        st = index_set(&t->added_raw, keys, n_raw, src, err);
        if (st == QR_OK)
            st = index_set(&t->added_norm, keys + n_raw, k - n_raw, src, err);
    }
    free(keys);
    return st;
}

/* Builds the token tables from a vocab object (token in the alphabet -> id) and the added
 * tokens. `what` prefixes messages about the vocab ("model.vocab: " or ""). */
static qr_status build_vocab(qr_tokenizer *t, const char *src, const char *what,
                             json_object *vocab, const added_spec *added, size_t n_added,
                             qr_error *err)
{
    char q[QUOTE_SIZE], q2[QUOTE_SIZE], cpbuf[16];
    size_t n_vocab = (size_t)json_object_object_length(vocab);
    if (n_vocab == 0)
        return qr_fail(err, QR_ERR_FORMAT, "%s: %sthe vocab is empty", src, what);
    size_t cap = n_vocab + n_added; /* no id can be at or past this, if ids have no gaps */
    if (cap >= INT32_MAX)
        return qr_fail(err, QR_ERR_FORMAT, "%s: %s%zu tokens are too many", src, what, cap);
    id_entry *e = calloc(cap, sizeof *e);
    if (!e)
        return qr_fail(err, QR_ERR_NOMEM, "%s: out of memory", src);
    qr_status st = QR_OK;
    size_t n_ids = 0, total = 0;

    json_object_object_foreach(vocab, k, v) {
        size_t klen = strlen(k);
        if (!json_object_is_type(v, json_type_int)) {
            st = qr_fail(err, QR_ERR_FORMAT, "%s: %stoken %s: the id is not an integer", src, what,
                         quote(q, k, klen));
            goto out;
        }
        int64_t id = json_object_get_int64(v);
        if (id < 0 || (uint64_t)id >= cap) {
            st = qr_fail(err, QR_ERR_FORMAT,
                         "%s: %stoken %s has id %lld, out of range (%zu tokens, so ids 0..%zu)",
                         src, what, quote(q, k, klen), (long long)id, cap, cap - 1);
            goto out;
        }
        if (e[id].flags) {
            st = qr_fail(err, QR_ERR_FORMAT, "%s: %sduplicate id %lld (tokens %s and %s)", src,
                         what, (long long)id, quote(q, e[id].text, e[id].len), quote(q2, k, klen));
            goto out;
        }
        if (klen == 0) {
            st = qr_fail(err, QR_ERR_FORMAT, "%s: %sthe token with id %lld is empty", src, what,
                         (long long)id);
            goto out;
        }
        e[id] = (id_entry){k, klen, QR_TOK_VOCAB};
        if ((size_t)id >= n_ids)
            n_ids = (size_t)id + 1;
        total += klen;
    }
    for (size_t i = 0; i < n_added; i++) {
        const added_spec *a = &added[i];
        if (a->id < 0 || (uint64_t)a->id >= cap) {
            st = qr_fail(err, QR_ERR_FORMAT,
                         "%s: added_tokens[%zu] %s has id %lld, out of range (%zu tokens, so ids 0..%zu)",
                         src, i, quote(q, a->content, a->len), (long long)a->id, cap, cap - 1);
            goto out;
        }
        id_entry *d = &e[a->id];
        if (d->flags & QR_TOK_ADDED) {
            st = qr_fail(err, QR_ERR_FORMAT, "%s: added_tokens[%zu]: duplicate id %lld (%s and %s)",
                         src, i, (long long)a->id, quote(q, d->text, d->len),
                         quote(q2, a->content, a->len));
            goto out;
        }
        uint8_t special = (uint8_t)((a->special ? QR_TOK_SPECIAL : 0) |
                                    (a->normalized ? QR_TOK_NORMALIZED : 0));
        if (d->flags & QR_TOK_VOCAB) {
            d->flags |= QR_TOK_ADDED | special; /* content checked against the bytes below */
        } else {
            *d = (id_entry){a->content, a->len, (uint8_t)(QR_TOK_ADDED | special)};
            total += a->len;
        }
        if ((size_t)a->id >= n_ids)
            n_ids = (size_t)a->id + 1;
    }
    for (size_t id = 0; id < n_ids; id++) {
        if (!e[id].flags) {
            st = qr_fail(err, QR_ERR_FORMAT,
                         "%s: %sno token has id %zu (ids must run 0..%zu without gaps)", src, what,
                         id, n_ids - 1);
            goto out;
        }
    }
    if (total > UINT32_MAX) {
        st = qr_fail(err, QR_ERR_FORMAT, "%s: %sthe tokens total %zu bytes, too many", src, what,
                     total);
        goto out;
    }

    t->n_tokens = n_ids;
    t->bytes = malloc(total ? total : 1);
    t->offset = malloc((n_ids + 1) * sizeof *t->offset);
    t->flags = malloc(n_ids);
    t->vocab_mask = pow2_at_least(2 * n_ids) - 1;
    t->vocab_slots = malloc((t->vocab_mask + 1) * sizeof *t->vocab_slots);
    if (!t->bytes || !t->offset || !t->flags || !t->vocab_slots) {
        st = qr_fail(err, QR_ERR_NOMEM, "%s: out of memory", src);
        goto out;
    }
    memset(t->vocab_slots, 0xFF, (t->vocab_mask + 1) * sizeof *t->vocab_slots); /* all -1 */
    size_t pos = 0;
    for (size_t id = 0; id < n_ids; id++) {
        t->offset[id] = (uint32_t)pos;
        t->flags[id] = e[id].flags;
        if (e[id].flags & QR_TOK_VOCAB) {
            uint32_t bad;
            long n = unmap(e[id].text, e[id].len, t->bytes + pos, &bad);
            if (n < 0) {
                st = qr_fail(err, QR_ERR_FORMAT,
                             "%s: %stoken %s (id %zu) is not representable: %s is not in GPT-2's "
                             "byte alphabet",
                             src, what, quote(q, e[id].text, e[id].len), id, describe_cp(cpbuf, bad));
                goto out;
            }
            pos += (size_t)n;
        } else {
            memcpy(t->bytes + pos, e[id].text, e[id].len);
            pos += e[id].len;
        }
    }
    t->offset[n_ids] = (uint32_t)pos;

    /* The vocab table; keys are distinct (the alphabet is one-to-one), checked all the same. */
    for (size_t id = 0; id < n_ids; id++) {
        if (!(t->flags[id] & QR_TOK_VOCAB))
            continue;
        const uint8_t *s = t->bytes + t->offset[id];
        size_t n = t->offset[id + 1] - t->offset[id];
        int32_t other = qr_tok_vocab_find(t, s, n);
        if (other >= 0) {
            st = qr_fail(err, QR_ERR_FORMAT, "%s: %sids %d and %zu are the same token %s", src,
                         what, (int)other, id, quote(q, e[id].text, e[id].len));
            goto out;
        }
        size_t i = qr_tok_hash_bytes(s, n) & t->vocab_mask;
        while (t->vocab_slots[i] >= 0)
            i = (i + 1) & t->vocab_mask;
        t->vocab_slots[i] = (int32_t)id;
    }

    /* An added token that is also a vocab id must be that token. One with an id of its own
     * may spell a vocab token (GPT-NeoX's runs of spaces do): the text then gets the added id,
     * since added tokens are matched before the model sees the text, as in Hugging Face. */
    for (size_t i = 0; i < n_added; i++) {
        const added_spec *a = &added[i];
        if (a->len == 0) {
            st = qr_fail(err, QR_ERR_FORMAT, "%s: added_tokens[%zu] (id %lld) has empty content",
                         src, i, (long long)a->id);
            goto out;
        }
        size_t id = (size_t)a->id;
        if (t->flags[id] & QR_TOK_VOCAB) {
            size_t n = t->offset[id + 1] - t->offset[id];
            if (n != a->len || memcmp(t->bytes + t->offset[id], a->content, n) != 0) {
                st = qr_fail(err, QR_ERR_FORMAT,
                             "%s: added_tokens[%zu] %s has id %zu, which the vocab gives to %s",
                             src, i, quote(q, a->content, a->len), id,
                             quote(q2, e[id].text, e[id].len));
                goto out;
            }
        }
    }

    /* Every byte that well-formed UTF-8 can hold needs a token. The other 13 (0xC0, 0xC1,
     * 0xF5..0xFF) may lack one, as in GPT-NeoX's vocab: the encoder then drops them (see
     * tokenizer.h); valid text never holds them. */
    for (unsigned b = 0; b < 256; b++) {
        uint8_t byte = (uint8_t)b;
        t->byte_token[b] = qr_tok_vocab_find(t, &byte, 1);
        if (t->byte_token[b] < 0 && b != 0xC0 && b != 0xC1 && b < 0xF5) {
            uint32_t c = char_of_byte(byte);
            st = qr_fail(err, QR_ERR_FORMAT,
                         "%s: %sno token for byte 0x%02X (U+%04X in GPT-2's alphabet), so some "
                         "UTF-8 text could not be encoded",
                         src, what, b, (unsigned)c);
            goto out;
        }
    }
    st = index_added(t, src, err);
out:
    free(e);
    return st;
}

/* ---------------------------------------------------------------- merges */

/* Where a merge came from, for messages: "model.merges[i]" or "line i". */
typedef struct {
    const char *src;
    const char *kind; /* "model.merges[%zu]" or "line %zu" */
} merge_src;

static qr_status merge_fail(qr_error *err, const merge_src *ms, size_t where, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static qr_status merge_fail(qr_error *err, const merge_src *ms, size_t where, const char *fmt, ...)
{
    char loc[48], msg[QR_ERROR_MSG_MAX];
    snprintf(loc, sizeof loc, ms->kind, where);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return qr_fail(err, QR_ERR_FORMAT, "%s: %s: %s", ms->src, loc, msg);
}

static qr_status alloc_merges(qr_tokenizer *t, size_t n, const char *src, qr_error *err)
{
    if (n > INT32_MAX)
        return qr_fail(err, QR_ERR_FORMAT, "%s: %zu merges are too many", src, n);
    size_t slots = pow2_at_least(n + n / 2 + 1);
    t->merges = malloc(slots * sizeof *t->merges);
    if (!t->merges)
        return qr_fail(err, QR_ERR_NOMEM, "%s: out of memory", src);
    for (size_t i = 0; i < slots; i++)
        t->merges[i] = (qr_tok_merge){QR_TOK_NO_PAIR, 0, -1};
    t->merge_mask = slots - 1;
    return QR_OK;
}

/* Adds merge number rank, "a b" in the alphabet. scratch has room for alen + blen bytes. A pair
 * listed twice keeps the later rank, as both GPT-2's and HF's dict-building do. */
static qr_status add_merge(qr_tokenizer *t, const merge_src *ms, size_t where, uint32_t rank,
                           const char *a, size_t alen, const char *b, size_t blen,
                           uint8_t *scratch, qr_error *err)
{
    char q[QUOTE_SIZE], q2[QUOTE_SIZE], cpbuf[16];
    uint32_t bad;
    if (alen == 0 || blen == 0)
        return merge_fail(err, ms, where, "a merge needs two non-empty tokens");
    long na = unmap(a, alen, scratch, &bad);
    if (na < 0)
        return merge_fail(err, ms, where, "%s is not representable: %s is not in GPT-2's byte alphabet",
                          quote(q, a, alen), describe_cp(cpbuf, bad));
    long nb = unmap(b, blen, scratch + na, &bad);
    if (nb < 0)
        return merge_fail(err, ms, where, "%s is not representable: %s is not in GPT-2's byte alphabet",
                          quote(q, b, blen), describe_cp(cpbuf, bad));
    int32_t left = qr_tok_vocab_find(t, scratch, (size_t)na);
    if (left < 0)
        return merge_fail(err, ms, where, "merge %s %s: %s is not in the vocab", quote(q, a, alen),
                          quote(q2, b, blen), quote(q, a, alen));
    int32_t right = qr_tok_vocab_find(t, scratch + na, (size_t)nb);
    if (right < 0)
        return merge_fail(err, ms, where, "merge %s %s: %s is not in the vocab", quote(q, a, alen),
                          quote(q2, b, blen), quote(q2, b, blen));
    int32_t merged = qr_tok_vocab_find(t, scratch, (size_t)(na + nb));
    if (merged < 0)
        return merge_fail(err, ms, where, "merge %s %s: the result is not in the vocab",
                          quote(q, a, alen), quote(q2, b, blen));
    uint64_t key = qr_tok_pair(left, right);
    size_t i = qr_tok_hash_pair(key) & t->merge_mask;
    while (t->merges[i].pair != QR_TOK_NO_PAIR && t->merges[i].pair != key)
        i = (i + 1) & t->merge_mask;
    if (t->merges[i].pair == QR_TOK_NO_PAIR)
        t->n_merges++;
    t->merges[i] = (qr_tok_merge){key, rank, merged};
    return QR_OK;
}

/* ---------------------------------------------------------------- JSON helpers */

/* Parses json[0..len) with json-c, strictly, refusing anything after the value but white space. */
static qr_status parse_json(const char *json, size_t len, const char *src, json_object **out,
                            qr_error *err)
{
    *out = NULL;
    if (len > INT_MAX)
        return qr_fail(err, QR_ERR_FORMAT, "%s: %zu bytes is too large for a tokenizer", src, len);
    json_tokener *jt = json_tokener_new();
    if (!jt)
        return qr_fail(err, QR_ERR_NOMEM, "%s: out of memory", src);
    json_tokener_set_flags(jt, JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8 |
                                   JSON_TOKENER_ALLOW_TRAILING_CHARS);
    json_object *root = json_tokener_parse_ex(jt, json, (int)len);
    enum json_tokener_error je = json_tokener_get_error(jt);
    size_t end = json_tokener_get_parse_end(jt);
    json_tokener_free(jt);
    if (je == json_tokener_continue) {
        json_object_put(root);
        size_t i = 0;
        while (i < len && strchr(" \t\n\r", json[i]) && json[i] != '\0')
            i++;
        return qr_fail(err, QR_ERR_FORMAT, "%s: not JSON: %s", src,
                       i == len ? "the file is empty" : "the text ends inside a value");
    }
    if (je != json_tokener_success) {
        json_object_put(root);
        return qr_fail(err, QR_ERR_FORMAT, "%s: not JSON: %s at byte %zu", src,
                       json_tokener_error_desc(je), end);
    }
    for (size_t i = end; i < len; i++) {
        char c = json[i];
        if (c != ' ' && c != '\t' && c != '\n' && c != '\r') {
            json_object_put(root);
            return qr_fail(err, QR_ERR_FORMAT, "%s: not JSON: unexpected data after the value at byte %zu",
                           src, i);
        }
    }
    *out = root;
    return QR_OK;
}

/* obj[key] if it is there and not null, else NULL. */
static json_object *member(json_object *obj, const char *key)
{
    json_object *v = NULL;
    if (!json_object_object_get_ex(obj, key, &v))
        return NULL;
    return v; /* NULL for a JSON null */
}

static const char *type_name(json_object *v)
{
    return v ? json_type_to_name(json_object_get_type(v)) : "null";
}

/* Reads an optional boolean option; absent or null leaves *out as it is. */
static qr_status opt_bool(json_object *obj, const char *key, const char *what, const char *src,
                          bool *out, qr_error *err)
{
    json_object *v = member(obj, key);
    if (!v)
        return QR_OK;
    if (!json_object_is_type(v, json_type_boolean))
        return qr_fail(err, QR_ERR_FORMAT, "%s: %s.%s must be true or false, not %s", src, what,
                       key, type_name(v));
    *out = json_object_get_boolean(v);
    return QR_OK;
}

/* Refuses a string option that is set to anything but "" (or null). */
static qr_status unsupported_string(json_object *obj, const char *key, const char *src,
                                    qr_error *err)
{
    json_object *v = member(obj, key);
    if (!v)
        return QR_OK;
    if (!json_object_is_type(v, json_type_string))
        return qr_fail(err, QR_ERR_FORMAT, "%s: model.%s must be a string, not %s", src, key,
                       type_name(v));
    if (json_object_get_string_len(v) != 0)
        return qr_fail(err, QR_ERR_FORMAT, "%s: model.%s is not supported (byte-level BPE uses none)",
                       src, key);
    return QR_OK;
}

/* ---------------------------------------------------------------- Hugging Face tokenizer.json */

/* Reads the added_tokens array into a malloc'ed list (strings borrowed from the JSON). */
static qr_status read_added(json_object *arr, const char *src, added_spec **out, size_t *n_out,
                            qr_error *err)
{
    *out = NULL;
    *n_out = 0;
    if (!arr)
        return QR_OK;
    if (!json_object_is_type(arr, json_type_array))
        return qr_fail(err, QR_ERR_FORMAT, "%s: added_tokens must be an array, not %s", src,
                       type_name(arr));
    size_t n = json_object_array_length(arr);
    added_spec *a = calloc(n ? n : 1, sizeof *a);
    if (!a)
        return qr_fail(err, QR_ERR_NOMEM, "%s: out of memory", src);
    for (size_t i = 0; i < n; i++) {
        json_object *o = json_object_array_get_idx(arr, i);
        qr_status st = QR_OK;
        json_object *id = o && json_object_is_type(o, json_type_object) ? member(o, "id") : NULL;
        json_object *content = id ? member(o, "content") : NULL;
        if (!o || !json_object_is_type(o, json_type_object))
            st = qr_fail(err, QR_ERR_FORMAT, "%s: added_tokens[%zu] must be an object, not %s",
                         src, i, type_name(o));
        else if (!id || !json_object_is_type(id, json_type_int))
            st = qr_fail(err, QR_ERR_FORMAT, "%s: added_tokens[%zu] has no integer \"id\"", src, i);
        else if (!content || !json_object_is_type(content, json_type_string))
            st = qr_fail(err, QR_ERR_FORMAT, "%s: added_tokens[%zu] has no string \"content\"",
                         src, i);
        bool special = false;
        if (st == QR_OK)
            st = opt_bool(o, "special", "added_tokens[]", src, &special, err);
        /* Hugging Face's default for a token that does not say: normalized unless special. */
        bool normalized = !special;
        if (st == QR_OK)
            st = opt_bool(o, "normalized", "added_tokens[]", src, &normalized, err);
        /* These widen or narrow a match by the text around it; not implemented, so refused
         * rather than ignored (the ids would differ from the reference's). */
        static const char *const unsupported[] = {"lstrip", "rstrip", "single_word"};
        for (size_t u = 0; st == QR_OK && u < 3; u++) {
            bool on = false;
            st = opt_bool(o, unsupported[u], "added_tokens[]", src, &on, err);
            if (st == QR_OK && on)
                st = qr_fail(err, QR_ERR_FORMAT, "%s: added_tokens[%zu]: \"%s\": true is not supported",
                             src, i, unsupported[u]);
        }
        if (st != QR_OK) {
            free(a);
            return st;
        }
        a[i] = (added_spec){json_object_get_string(content),
                            (size_t)json_object_get_string_len(content),
                            json_object_get_int64(id), special, normalized};
    }
    *out = a;
    *n_out = n;
    return QR_OK;
}

/* Reads the "normalizer" (null, or one of NFC, NFD, NFKC, NFKD, or a Sequence of those, nested
 * or not) into t->norm, steps in the order they apply. Any other type is refused by name: a
 * normalizer we ignored would make ids the reference never makes. */
static qr_status read_normalizer(qr_tokenizer *t, json_object *norm, const char *where,
                                 const char *src, qr_error *err)
{
    if (!norm)
        return QR_OK;
    json_object *type = json_object_is_type(norm, json_type_object) ? member(norm, "type") : NULL;
    if (!type || !json_object_is_type(type, json_type_string))
        return qr_fail(err, QR_ERR_FORMAT, "%s: %s must be null or an object with a string \"type\"",
                       src, where);
    const char *name = json_object_get_string(type);
    if (strcmp(name, "Sequence") == 0) {
        json_object *list = member(norm, "normalizers");
        if (!list || !json_object_is_type(list, json_type_array))
            return qr_fail(err, QR_ERR_FORMAT, "%s: %s: a Sequence needs a \"normalizers\" array",
                           src, where);
        for (size_t i = 0; i < json_object_array_length(list); i++) {
            char sub[64];
            snprintf(sub, sizeof sub, "%s.normalizers[%zu]", where, i);
            json_object *step = json_object_array_get_idx(list, i);
            if (!step)
                return qr_fail(err, QR_ERR_FORMAT, "%s: %s is null", src, sub);
            qr_status st = read_normalizer(t, step, sub, src, err);
            if (st != QR_OK)
                return st;
        }
        return QR_OK;
    }
    qr_norm_form form = qr_norm_form_named(name);
    if (!form)
        return qr_fail(err, QR_ERR_FORMAT,
                       "%s: %s %s is not supported (only NFC, NFD, NFKC, NFKD, and a Sequence of them)",
                       src, where, name);
    if (t->n_norm == QR_TOK_MAX_NORM)
        return qr_fail(err, QR_ERR_FORMAT, "%s: %s: more than %d normalization steps", src, where,
                       QR_TOK_MAX_NORM);
    t->norm[t->n_norm++] = form;
    return QR_OK;
}

/* Checks the parts of tokenizer.json around the model: only what byte-level BPE with GPT-2's
 * split does is accepted. */
static qr_status read_pipeline(qr_tokenizer *t, json_object *root, const char *src, qr_error *err)
{
    qr_status st = read_normalizer(t, member(root, "normalizer"), "normalizer", src, err);
    if (st != QR_OK)
        return st;
    json_object *pre = member(root, "pre_tokenizer");
    if (!pre)
        return qr_fail(err, QR_ERR_FORMAT, "%s: missing pre_tokenizer (byte-level BPE needs ByteLevel)",
                       src);
    if (!json_object_is_type(pre, json_type_object))
        return qr_fail(err, QR_ERR_FORMAT, "%s: pre_tokenizer must be an object, not %s", src,
                       type_name(pre));
    json_object *type = member(pre, "type");
    if (!type || !json_object_is_type(type, json_type_string))
        return qr_fail(err, QR_ERR_FORMAT, "%s: pre_tokenizer.type is missing", src);
    if (strcmp(json_object_get_string(type), "ByteLevel") != 0)
        return qr_fail(err, QR_ERR_FORMAT, "%s: pre_tokenizer %s is not supported (only ByteLevel)",
                       src, json_object_get_string(type));
    t->add_prefix_space = true; /* HF's defaults, when the file leaves them out */
    t->use_regex = true;
    t->space = QR_SPACE_ONIG;   /* HF's regex engine */
    st = opt_bool(pre, "add_prefix_space", "pre_tokenizer", src, &t->add_prefix_space, err);
    if (st == QR_OK)
        st = opt_bool(pre, "use_regex", "pre_tokenizer", src, &t->use_regex, err);
    return st;
}

/* Reads "model": type BPE, the options, the vocab (with the added tokens) and the merges. */
static qr_status read_model(qr_tokenizer *t, json_object *root, const char *src,
                            const added_spec *added, size_t n_added, qr_error *err)
{
    json_object *model = member(root, "model");
    if (!model)
        return qr_fail(err, QR_ERR_FORMAT, "%s: missing \"model\"", src);
    if (!json_object_is_type(model, json_type_object))
        return qr_fail(err, QR_ERR_FORMAT, "%s: \"model\" must be an object, not %s", src,
                       type_name(model));
    json_object *type = member(model, "type");
    if (!type || !json_object_is_type(type, json_type_string))
        return qr_fail(err, QR_ERR_FORMAT, "%s: model.type is missing (expected \"BPE\")", src);
    if (strcmp(json_object_get_string(type), "BPE") != 0)
        return qr_fail(err, QR_ERR_FORMAT, "%s: model.type is \"%s\", not \"BPE\"", src,
                       json_object_get_string(type));
    json_object *dropout = member(model, "dropout");
    if (dropout && !(json_object_is_type(dropout, json_type_double) ||
                     json_object_is_type(dropout, json_type_int)))
        return qr_fail(err, QR_ERR_FORMAT, "%s: model.dropout must be a number, not %s", src,
                       type_name(dropout));
    if (dropout && json_object_get_double(dropout) != 0.0)
        return qr_fail(err, QR_ERR_FORMAT, "%s: model.dropout is not supported (encoding must be "
                       "deterministic)", src);
    qr_status st = unsupported_string(model, "continuing_subword_prefix", src, err);
    if (st == QR_OK)
        st = unsupported_string(model, "end_of_word_suffix", src, err);
    if (st == QR_OK)
        st = opt_bool(model, "ignore_merges", "model", src, &t->ignore_merges, err);
    if (st != QR_OK)
        return st;

    json_object *vocab = member(model, "vocab");
    if (!vocab)
        return qr_fail(err, QR_ERR_FORMAT, "%s: missing model.vocab", src);
    if (!json_object_is_type(vocab, json_type_object))
        return qr_fail(err, QR_ERR_FORMAT, "%s: model.vocab must be an object, not %s", src,
                       type_name(vocab));
    json_object *merges = member(model, "merges");
    if (!merges)
        return qr_fail(err, QR_ERR_FORMAT, "%s: missing model.merges", src);
    if (!json_object_is_type(merges, json_type_array))
        return qr_fail(err, QR_ERR_FORMAT, "%s: model.merges must be an array, not %s", src,
                       type_name(merges));
    st = build_vocab(t, src, "model.vocab: ", vocab, added, n_added, err);
    if (st != QR_OK)
        return st;

    size_t n = json_object_array_length(merges);
    st = alloc_merges(t, n, src, err);
    if (st != QR_OK)
        return st;
    merge_src ms = {src, "model.merges[%zu]"};
    uint8_t *scratch = NULL;
    size_t scratch_cap = 0;
    for (size_t i = 0; i < n && st == QR_OK; i++) {
        json_object *m = json_object_array_get_idx(merges, i);
        const char *a = NULL, *b = NULL;
        size_t alen = 0, blen = 0;
        if (m && json_object_is_type(m, json_type_string)) {
            /* "a b": exactly one space (tokens never hold one: ' ' is spelled 'Ġ'). */
            const char *s = json_object_get_string(m);
            size_t len = (size_t)json_object_get_string_len(m);
            const char *sp = memchr(s, ' ', len);
            if (!sp || memchr(sp + 1, ' ', len - (size_t)(sp + 1 - s))) {
                char q[QUOTE_SIZE];
                st = merge_fail(err, &ms, i, "%s is not two tokens separated by one space",
                                quote(q, s, len));
                break;
            }
            a = s;
            alen = (size_t)(sp - s);
            b = sp + 1;
            blen = len - alen - 1;
        } else if (m && json_object_is_type(m, json_type_array) &&
                   json_object_array_length(m) == 2 &&
                   json_object_is_type(json_object_array_get_idx(m, 0), json_type_string) &&
                   json_object_is_type(json_object_array_get_idx(m, 1), json_type_string)) {
            json_object *ja = json_object_array_get_idx(m, 0), *jb = json_object_array_get_idx(m, 1);
            a = json_object_get_string(ja);
            alen = (size_t)json_object_get_string_len(ja);
            b = json_object_get_string(jb);
            blen = (size_t)json_object_get_string_len(jb);
        } else {
            st = merge_fail(err, &ms, i, "a merge must be a string \"a b\" or a pair [\"a\", \"b\"], "
                            "not %s", m && json_object_is_type(m, json_type_array)
                                          ? "an array of other than two strings" : type_name(m));
            break;
        }
        if (alen + blen > scratch_cap) {
            size_t cap = alen + blen;
            uint8_t *p = realloc(scratch, cap);
            if (!p) {
                st = qr_fail(err, QR_ERR_NOMEM, "%s: out of memory", src);
                break;
            }
            scratch = p;
            scratch_cap = cap;
        }
        st = add_merge(t, &ms, i, (uint32_t)i, a, alen, b, blen, scratch, err);
    }
    free(scratch);
    return st;
}

qr_status qr_tokenizer_load_hf_json(const char *json, size_t len, const char *source_name,
                                    qr_tokenizer **out, qr_error *err)
{
    const char *src = source_name ? source_name : "tokenizer.json";
    if (!out || (!json && len > 0))
        return qr_fail(err, QR_ERR_INVALID, "qr_tokenizer_load_hf_json: NULL argument");
    *out = NULL;
    json_object *root;
    qr_status st = parse_json(json ? json : "", len, src, &root, err);
    if (st != QR_OK)
        return st;
    if (!root || !json_object_is_type(root, json_type_object)) {
        st = qr_fail(err, QR_ERR_FORMAT, "%s: not a tokenizer.json: the top level is %s, not an object",
                     src, type_name(root));
        json_object_put(root);
        return st;
    }
    qr_tokenizer *t = calloc(1, sizeof *t);
    added_spec *added = NULL;
    size_t n_added = 0;
    if (!t)
        st = qr_fail(err, QR_ERR_NOMEM, "%s: out of memory", src);
    if (st == QR_OK)
        st = read_pipeline(t, root, src, err);
    if (st == QR_OK)
        st = read_added(member(root, "added_tokens"), src, &added, &n_added, err);
    if (st == QR_OK)
        st = read_model(t, root, src, added, n_added, err);
    free(added);
    json_object_put(root);
    if (st != QR_OK) {
        qr_tokenizer_free(t);
        return st;
    }
    *out = t;
    return QR_OK;
}

/* ---------------------------------------------------------------- files */

/* Reads a whole file into a malloc'ed buffer (NUL-terminated, *len not counting the NUL). */
static qr_status read_file(const char *path, char **out, size_t *len, qr_error *err)
{
    *out = NULL;
    *len = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return qr_fail(err, QR_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return qr_fail(err, QR_ERR_IO, "%s: cannot stat: %s", path, strerror(e));
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return qr_fail(err, QR_ERR_IO, "%s: not a regular file", path);
    }
    if (st.st_size > (off_t)MAX_FILE_SIZE) {
        close(fd);
        return qr_fail(err, QR_ERR_FORMAT, "%s: %lld bytes is too large for a tokenizer file", path,
                       (long long)st.st_size);
    }
    size_t size = (size_t)st.st_size;
    char *buf = malloc(size + 1);
    if (!buf) {
        close(fd);
        return qr_fail(err, QR_ERR_NOMEM, "%s: out of memory", path);
    }
    size_t got = 0;
    while (got < size) {
        ssize_t r = read(fd, buf + got, size - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            int e = r < 0 ? errno : 0;
            close(fd);
            free(buf);
            return qr_fail(err, QR_ERR_IO, "%s: read failed: %s", path,
                           e ? strerror(e) : "file shrank while reading");
        }
        got += (size_t)r;
    }
    close(fd);
    buf[size] = '\0';
    *out = buf;
    *len = size;
    return QR_OK;
}

qr_status qr_tokenizer_load_hf_file(const char *path, qr_tokenizer **out, qr_error *err)
{
    if (!path || !out)
        return qr_fail(err, QR_ERR_INVALID, "qr_tokenizer_load_hf_file: NULL argument");
    *out = NULL;
    char *buf;
    size_t len;
    qr_status st = read_file(path, &buf, &len, err);
    if (st != QR_OK)
        return st;
    st = qr_tokenizer_load_hf_json(buf, len, path, out, err);
    free(buf);
    return st;
}

/* ---------------------------------------------------------------- GPT-2 encoder.json + vocab.bpe */

/* vocab.bpe: an optional first line starting with '#' ("#version: 0.2"), then one merge "a b"
 * per line in rank order; empty lines only at the end; a '\r' before '\n' is tolerated. */
static qr_status read_vocab_bpe(qr_tokenizer *t, const char *path, const char *text, size_t len,
                                qr_error *err)
{
    /* Split into lines first: the merge table is sized by their number. */
    size_t n_lines = 0;
    for (size_t i = 0; i < len; i++)
        n_lines += text[i] == '\n';
    n_lines += len > 0 && text[len - 1] != '\n';
    qr_status st = alloc_merges(t, n_lines, path, err);
    if (st != QR_OK)
        return st;
    uint8_t *scratch = malloc(len ? len : 1);
    if (!scratch)
        return qr_fail(err, QR_ERR_NOMEM, "%s: out of memory", path);
    merge_src ms = {path, "line %zu"};
    size_t line_no = 0, rank = 0, pos = 0, empty_at = 0;
    while (pos < len && st == QR_OK) {
        const char *line = text + pos;
        const char *nl = memchr(line, '\n', len - pos);
        size_t n = nl ? (size_t)(nl - line) : len - pos;
        pos += n + (nl != NULL);
        line_no++;
        if (n > 0 && line[n - 1] == '\r')
            n--;
        if (line_no == 1 && n > 0 && line[0] == '#')
            continue;
        if (n == 0) {
            if (!empty_at)
                empty_at = line_no;
            continue;
        }
        if (empty_at) {
            st = merge_fail(err, &ms, empty_at, "empty line before the last merge");
            break;
        }
        const char *sp = memchr(line, ' ', n);
        if (!sp || memchr(sp + 1, ' ', n - (size_t)(sp + 1 - line))) {
            char q[QUOTE_SIZE];
            st = merge_fail(err, &ms, line_no, "%s is not two tokens separated by one space",
                            quote(q, line, n));
            break;
        }
        size_t alen = (size_t)(sp - line);
        st = add_merge(t, &ms, line_no, (uint32_t)rank, line, alen, sp + 1, n - alen - 1, scratch,
                       err);
        rank++;
    }
    free(scratch);
    return st;
}

qr_status qr_tokenizer_load_gpt2(const char *encoder_json_path, const char *vocab_bpe_path,
                                 qr_tokenizer **out, qr_error *err)
{
    if (!encoder_json_path || !vocab_bpe_path || !out)
        return qr_fail(err, QR_ERR_INVALID, "qr_tokenizer_load_gpt2: NULL argument");
    *out = NULL;
    char *enc_text = NULL, *bpe_text = NULL;
    size_t enc_len, bpe_len;
    json_object *root = NULL;
    qr_tokenizer *t = NULL;
    qr_status st = read_file(encoder_json_path, &enc_text, &enc_len, err);
    if (st == QR_OK)
        st = read_file(vocab_bpe_path, &bpe_text, &bpe_len, err);
    if (st == QR_OK)
        st = parse_json(enc_text, enc_len, encoder_json_path, &root, err);
    if (st == QR_OK && (!root || !json_object_is_type(root, json_type_object)))
        st = qr_fail(err, QR_ERR_FORMAT, "%s: not an encoder.json: the top level is %s, not an object",
                     encoder_json_path, type_name(root));
    if (st == QR_OK && !(t = calloc(1, sizeof *t)))
        st = qr_fail(err, QR_ERR_NOMEM, "%s: out of memory", encoder_json_path);
    if (st == QR_OK) {
        t->use_regex = true;
        t->merge_in_passes = true;
        st = build_vocab(t, encoder_json_path, "", root, NULL, 0, err);
    }
    if (st == QR_OK)
        st = read_vocab_bpe(t, vocab_bpe_path, bpe_text, bpe_len, err);
    json_object_put(root);
    free(enc_text);
    free(bpe_text);
    if (st != QR_OK) {
        qr_tokenizer_free(t);
        return st;
    }
    *out = t;
    return QR_OK;
}
