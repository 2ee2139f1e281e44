/* tokenizer.c: encoding text to ids and decoding ids to bytes, on tables built by
 * tokenizer_load.c; and the streaming UTF-8 decoder.
 *
 * Encoding is nested steps: split off the raw added tokens (leftmost-longest verbatim match),
 * normalize each remaining segment (unicode.c) and split off the normalized added tokens, split
 * each remaining piece with GPT-2's regex (written out by hand below, over code points), then
 * BPE-merge each pre-token on its own with a heap of candidate pairs, so the cost is
 * O(n log n) in the length of a pre-token and linear in the text. A small cache of pre-token ->
 * ids lives in each call, never in the tokenizer, which stays read-only and shareable between
 * threads. This file does not read files or JSON. */
#include "tokenizer_internal.h"

#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------- vocabulary */

int32_t qr_tok_vocab_find(const qr_tokenizer *t, const uint8_t *s, size_t n)
{
    for (size_t i = qr_tok_hash_bytes(s, n) & t->vocab_mask;; i = (i + 1) & t->vocab_mask) {
        int32_t id = t->vocab_slots[i];
        if (id < 0)
            return -1;
        size_t len = t->offset[id + 1] - t->offset[id];
        if (len == n && memcmp(t->bytes + t->offset[id], s, n) == 0)
            return id;
    }
}

size_t qr_tokenizer_vocab_size(const qr_tokenizer *tok)
{
    return tok->n_tokens;
}

int32_t qr_tokenizer_token_id(const qr_tokenizer *tok, const char *text)
{
    /* Added tokens first, as Hugging Face's token_to_id: GPT-NeoX's "  " is both an added
     * token and a vocab token, and the text "  " encodes to the added one. */
    size_t n = strlen(text);
    const qr_tok_added_set *sets[2] = {&tok->added_raw, &tok->added_norm};
    for (int k = 0; k < 2; k++) {
        for (size_t i = 0; i < sets[k]->n; i++) {
            int32_t a = sets[k]->tok[i].id;
            size_t len = tok->offset[a + 1] - tok->offset[a];
            if (len == n && memcmp(tok->bytes + tok->offset[a], text, n) == 0)
                return a;
        }
    }
    return qr_tok_vocab_find(tok, (const uint8_t *)text, n);
}

const uint8_t *qr_tokenizer_decode_token(const qr_tokenizer *tok, int32_t id, size_t *len)
{
    if (id < 0 || (size_t)id >= tok->n_tokens) {
        *len = 0;
        return NULL;
    }
    *len = tok->offset[id + 1] - tok->offset[id];
    return tok->bytes + tok->offset[id];
}

bool qr_tokenizer_is_special(const qr_tokenizer *tok, int32_t id)
{
    return id >= 0 && (size_t)id < tok->n_tokens && (tok->flags[id] & QR_TOK_SPECIAL);
}

void qr_tokenizer_free(qr_tokenizer *tok)
{
    if (!tok)
        return;
    free(tok->bytes);
    free(tok->offset);
    free(tok->flags);
    free(tok->vocab_slots);
    free(tok->merges);
    free(tok->added_raw.tok);
    free(tok->added_norm.tok);
    free(tok->added_bytes);
    free(tok);
}

/* ---------------------------------------------------------------- per-call encoder state */

/* A symbol of the pre-token being merged: a token, linked to its live neighbours. A symbol
 * swallowed by its left neighbour gets id -1; a merge keeps the left symbol's index, so
 * indices stay in text order and symbol 0 is always alive. */
typedef struct {
    int32_t id;
    int32_t prev, next; /* -1 at either end */
} bpe_sym;

/* A candidate merge: the pair (left, right) at symbol `pos`, as it was when queued. It is
 * stale if either symbol has changed since. The key orders the heap by rank, then position,
 * which is the order of HF tokenizers' merge queue. */
typedef struct {
    uint64_t key;       /* rank << 32 | pos */
    int32_t left, right, merged;
} bpe_cand;

/* Pre-tokens recur (words, spaces), so each call remembers the ids of the ones it has merged.
 * Only for longer texts: a short prompt would pay for the table and never reuse it. The table
 * grows with the text (one slot per 16 bytes) up to a size that holds the distinct words of a
 * long speech; it is cleared when half full. On 0.5 MB of SOTU text, 16384 slots encode about
 * twice as fast as 4096. */
#define CACHE_MIN_TEXT 1024
#define CACHE_MIN_SLOTS 256
#define CACHE_MAX_SLOTS 16384
#define CACHE_MAX_PIECE 32        /* longer pre-tokens are rare and not cached */

typedef struct {
    uint64_t hash;
    uint32_t piece_off, ids_off;  /* into cache_bytes, cache_ids */
    uint16_t piece_len;           /* 0: free slot */
    uint16_t n_ids;
} cache_slot;

typedef struct {
    const qr_tokenizer *t;
    bool skip_special;            /* QR_TOKENIZE_SPECIAL_AS_TEXT */
    int32_t *ids;                 /* the output */
    size_t n_ids, cap_ids;
    bpe_sym *sym;
    bpe_cand *heap, *batch;
    size_t cap_sym;               /* sym holds cap_sym, heap and batch 2 * cap_sym */
    uint8_t *tmp;                 /* a segment with the prefix space, when add_prefix_space */
    size_t cap_tmp;
    cache_slot *cache;            /* NULL: no cache for this call */
    size_t cache_mask;            /* slots - 1, a power of two minus one */
    size_t cache_used;
    uint8_t *cache_bytes;
    int32_t *cache_ids;
    size_t cache_bytes_len, cache_bytes_cap, cache_ids_len, cache_ids_cap;
} encoder;

/* Returns buf (elements of size elem, *cap of them) grown by doubling to hold at least need
 * (and at least one), or NULL on failure, leaving buf as it was. Returning the pointer rather
 * than writing through a void ** keeps the callers free of type punning. */
static void *grow(void *buf, size_t *cap, size_t need, size_t elem)
{
    if (need == 0)
        need = 1;
    if (need <= *cap)
        return buf;
    size_t n = *cap ? *cap : 16;
    while (n < need) {
        if (n > SIZE_MAX / 2 / elem)
            return NULL;
        n *= 2;
    }
    void *p = realloc(buf, n * elem);
    if (p)
        *cap = n;
    return p;
}

static bool push_id(encoder *e, int32_t id)
{
    if (e->n_ids == e->cap_ids) {
        int32_t *ids = grow(e->ids, &e->cap_ids, e->n_ids + 1, sizeof *ids);
        if (!ids)
            return false;
        e->ids = ids;
    }
    e->ids[e->n_ids++] = id;
    return true;
}

static void encoder_free(encoder *e)
{
    free(e->ids);
    free(e->sym);
    free(e->heap);
    free(e->batch);
    free(e->tmp);
    free(e->cache);
    free(e->cache_bytes);
    free(e->cache_ids);
}

/* ---------------------------------------------------------------- pre-token cache */

static const cache_slot *cache_find(const encoder *e, const uint8_t *p, size_t n, uint64_t h)
{
    for (size_t i = h & e->cache_mask;; i = (i + 1) & e->cache_mask) {
        const cache_slot *c = &e->cache[i];
        if (c->piece_len == 0)
            return NULL;
        if (c->hash == h && c->piece_len == n && memcmp(e->cache_bytes + c->piece_off, p, n) == 0)
            return c;
    }
}

/* Remembers that p[0..n) encodes to ids[0..n_ids). A failed allocation only skips caching. */
static void cache_put(encoder *e, const uint8_t *p, size_t n, uint64_t h, const int32_t *ids,
                      size_t n_ids)
{
    if (e->cache_used >= (e->cache_mask + 1) / 2) {
        memset(e->cache, 0, (e->cache_mask + 1) * sizeof *e->cache);
        e->cache_used = 0;
        e->cache_bytes_len = 0;
        e->cache_ids_len = 0;
    }
    uint8_t *bytes = grow(e->cache_bytes, &e->cache_bytes_cap, e->cache_bytes_len + n, 1);
    if (!bytes)
        return;
    e->cache_bytes = bytes;
    int32_t *ids_arena = grow(e->cache_ids, &e->cache_ids_cap, e->cache_ids_len + n_ids,
                              sizeof *ids_arena);
    if (!ids_arena)
        return;
    e->cache_ids = ids_arena;
    size_t i = h & e->cache_mask;
    while (e->cache[i].piece_len != 0)
        i = (i + 1) & e->cache_mask;
    cache_slot *c = &e->cache[i];
    c->hash = h;
    c->piece_off = (uint32_t)e->cache_bytes_len;
    c->piece_len = (uint16_t)n;
    c->ids_off = (uint32_t)e->cache_ids_len;
    c->n_ids = (uint16_t)n_ids;
    memcpy(e->cache_bytes + e->cache_bytes_len, p, n);
    memcpy(e->cache_ids + e->cache_ids_len, ids, n_ids * sizeof *ids);
    e->cache_bytes_len += n;
    e->cache_ids_len += n_ids;
    e->cache_used++;
}

/* ---------------------------------------------------------------- BPE merge of one pre-token */

static void heap_push(bpe_cand *heap, size_t *n, bpe_cand c)
{
    size_t i = (*n)++;
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (heap[parent].key <= c.key)
            break;
        heap[i] = heap[parent];
        i = parent;
    }
    heap[i] = c;
}

static bpe_cand heap_pop(bpe_cand *heap, size_t *n)
{
    bpe_cand top = heap[0];
    bpe_cand last = heap[--*n];
    size_t i = 0;
    for (;;) {
        size_t child = 2 * i + 1;
        if (child >= *n)
            break;
        if (child + 1 < *n && heap[child + 1].key < heap[child].key)
            child++;
        if (last.key <= heap[child].key)
            break;
        heap[i] = heap[child];
        i = child;
    }
    if (*n > 0)
        heap[i] = last;
    return top;
}

/* Queues the pair starting at symbol pos, if it merges. */
static void queue_pair(encoder *e, size_t *n_heap, int32_t pos)
{
    int32_t next = e->sym[pos].next;
    if (next < 0)
        return;
    const qr_tok_merge *m = qr_tok_merge_find(e->t, e->sym[pos].id, e->sym[next].id);
    if (m)
        heap_push(e->heap, n_heap, (bpe_cand){(uint64_t)m->rank << 32 | (uint32_t)pos,
                                              e->sym[pos].id, e->sym[next].id, m->merged});
}

/* Applies a queued merge unless it is stale (one of its two symbols changed since). */
static void apply_merge(encoder *e, size_t *n_heap, bpe_cand c)
{
    int32_t pos = (int32_t)(uint32_t)c.key;
    bpe_sym *s = e->sym;
    if (s[pos].id != c.left)
        return;
    int32_t next = s[pos].next;
    if (next < 0 || s[next].id != c.right)
        return;
    s[pos].id = c.merged;
    s[next].id = -1;
    s[pos].next = s[next].next;
    if (s[next].next >= 0)
        s[s[next].next].prev = pos;
    if (s[pos].prev >= 0)
        queue_pair(e, n_heap, s[pos].prev);
    queue_pair(e, n_heap, pos);
}

/* Encodes one pre-token p[0..n), n >= 1, appending its ids. */
static bool bpe_piece(encoder *e, const uint8_t *p, size_t n)
{
    const qr_tokenizer *t = e->t;
    if (n == 1)
        return t->byte_token[p[0]] < 0 || push_id(e, t->byte_token[p[0]]);
    if (t->ignore_merges) {
        int32_t id = qr_tok_vocab_find(t, p, n);
        if (id >= 0)
            return push_id(e, id);
    }
    uint64_t h = 0;
    bool cacheable = e->cache && n <= CACHE_MAX_PIECE;
    if (cacheable) {
        h = qr_tok_hash_bytes(p, n);
        const cache_slot *c = cache_find(e, p, n, h);
        if (c) {
            int32_t *ids = grow(e->ids, &e->cap_ids, e->n_ids + c->n_ids, sizeof *ids);
            if (!ids)
                return false;
            e->ids = ids;
            memcpy(e->ids + e->n_ids, e->cache_ids + c->ids_off, c->n_ids * sizeof *e->ids);
            e->n_ids += c->n_ids;
            return true;
        }
    }
    if (n > INT32_MAX / 4)
        return false; /* symbol indices are int32_t; a 512 MiB pre-token is refused as NOMEM */
    if (n > e->cap_sym) {
        size_t cap = e->cap_sym ? e->cap_sym : 64;
        while (cap < n)
            cap *= 2;
        bpe_sym *sym = realloc(e->sym, cap * sizeof *sym);
        if (!sym)
            return false;
        e->sym = sym;
        /* The heap starts with n - 1 pairs; each merge pops one and queues at most two, and
         * there are at most n - 1 merges: 2n bounds the heap, and so a batch popped from it. */
        bpe_cand *heap = realloc(e->heap, 2 * cap * sizeof *heap);
        if (!heap)
            return false;
        e->heap = heap;
        if (t->merge_in_passes) {
            bpe_cand *batch = realloc(e->batch, 2 * cap * sizeof *batch);
            if (!batch)
                return false;
            e->batch = batch;
        }
        e->cap_sym = cap;
    }
    /* One symbol per byte; a byte without a token (only in invalid UTF-8) is left out, as
     * Hugging Face's BPE leaves out a character it has no token for when there is no unk. */
    bpe_sym *s = e->sym;
    size_t m = 0;
    for (size_t i = 0; i < n; i++)
        if (t->byte_token[p[i]] >= 0)
            s[m++].id = t->byte_token[p[i]];
    if (m == 0)
        return true;
    for (size_t i = 0; i < m; i++) {
        s[i].prev = (int32_t)i - 1;
        s[i].next = i + 1 < m ? (int32_t)i + 1 : -1;
    }
    size_t n_heap = 0;
    for (size_t i = 0; i + 1 < m; i++)
        queue_pair(e, &n_heap, (int32_t)i);

    while (n_heap > 0) {
        bpe_cand top = heap_pop(e->heap, &n_heap);
        if (!t->merge_in_passes) {
            apply_merge(e, &n_heap, top);
            continue;
        }
        /* GPT-2: take every queued occurrence of this rank's pair first (they come out in text
         * order), then merge them left to right; pairs this creates wait for the next pass even
         * if their rank is lower. Merging can never create another pair of the same rank. */
        size_t n_batch = 0;
        uint32_t rank = (uint32_t)(top.key >> 32);
        e->batch[n_batch++] = top;
        while (n_heap > 0 && (uint32_t)(e->heap[0].key >> 32) == rank)
            e->batch[n_batch++] = heap_pop(e->heap, &n_heap);
        for (size_t i = 0; i < n_batch; i++)
            apply_merge(e, &n_heap, e->batch[i]);
    }

    size_t first = e->n_ids;
    for (int32_t i = 0; i >= 0; i = s[i].next)
        if (!push_id(e, s[i].id))
            return false;
    if (cacheable)
        cache_put(e, p, n, h, e->ids + first, e->n_ids - first);
    return true;
}

/* ---------------------------------------------------------------- GPT-2 pre-tokenizer */

/* The character at s[i]: its length in bytes and class. A byte that does not begin a
 * well-formed UTF-8 sequence is a one-byte character of class OTHER. */
static inline size_t char_at(const qr_tokenizer *t, const uint8_t *s, size_t len, size_t i,
                             qr_uclass *cls)
{
    uint32_t cp;
    int n = s[i] < 0x80 ? (cp = s[i], 1) : qr_utf8_scan(s + i, len - i, &cp);
    if (n <= 0) {
        *cls = QR_UCLASS_OTHER;
        return 1;
    }
    *cls = qr_uclass_of(cp, t->space);
    return (size_t)n;
}

/* The end of the run of class cls characters starting at byte j. */
static size_t run_end(const qr_tokenizer *t, const uint8_t *s, size_t len, size_t j, qr_uclass cls)
{
    while (j < len) {
        qr_uclass c;
        size_t k = char_at(t, s, len, j, &c);
        if (c != cls)
            break;
        j += k;
    }
    return j;
}

/* The end of the pre-token that starts at s[i], i < len: the match of
 *   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
 * at i, alternatives tried in order as a backtracking regex engine would. Every character is
 * a letter, number, space or other, so some alternative always matches and the matches tile
 * the text. */
static size_t next_pretoken(const qr_tokenizer *t, const uint8_t *s, size_t len, size_t i)
{
    if (s[i] == '\'' && i + 1 < len) {
        uint8_t c = s[i + 1];
        if (c == 's' || c == 't' || c == 'm' || c == 'd')
            return i + 2;
        if (i + 2 < len) {
            uint8_t c2 = s[i + 2];
            if ((c == 'r' && c2 == 'e') || (c == 'v' && c2 == 'e') || (c == 'l' && c2 == 'l'))
                return i + 3;
        }
    }
    qr_uclass cls;
    size_t n = char_at(t, s, len, i, &cls);
    /* " ?X+": a space takes the following run with it when one follows. */
    if (s[i] == ' ' && i + 1 < len) {
        qr_uclass next_cls;
        size_t n1 = char_at(t, s, len, i + 1, &next_cls);
        if (next_cls != QR_UCLASS_SPACE)
            return run_end(t, s, len, i + 1 + n1, next_cls);
    }
    if (cls != QR_UCLASS_SPACE)
        return run_end(t, s, len, i + n, cls);
    /* "\s+(?!\S)|\s+": a space run; unless it ends the text, leave its last character to
     * the next match (where " ?X+" picks up a final ' '), but never match less than one. */
    size_t last = i, j = i + n;
    while (j < len) {
        qr_uclass c;
        size_t k = char_at(t, s, len, j, &c);
        if (c != QR_UCLASS_SPACE)
            break;
        last = j;
        j += k;
    }
    if (j == len || last == i)
        return j;
    return last;
}

/* Encodes a segment that holds no added token. */
static bool encode_segment(encoder *e, const uint8_t *s, size_t len)
{
    const qr_tokenizer *t = e->t;
    if (len == 0)
        return true;
    if (t->add_prefix_space && s[0] != ' ') {
        uint8_t *tmp = len < SIZE_MAX ? grow(e->tmp, &e->cap_tmp, len + 1, 1) : NULL;
        if (!tmp)
            return false;
        e->tmp = tmp;
        e->tmp[0] = ' ';
        memcpy(e->tmp + 1, s, len);
        s = e->tmp;
        len++;
    }
    if (!t->use_regex)
        return bpe_piece(e, s, len);
    for (size_t i = 0; i < len;) {
        size_t end = next_pretoken(t, s, len, i);
        if (!bpe_piece(e, s + i, end - i))
            return false;
        i = end;
    }
    return true;
}

/* The added token of set that starts at s[i] (the longest, if several do), or -1. */
static int32_t added_at(const qr_tokenizer *t, const qr_tok_added_set *set, const uint8_t *s,
                        size_t len, size_t i, bool skip_special, size_t *match_len)
{
    uint8_t b = s[i];
    for (uint32_t k = set->start[b]; k < set->start[b + 1]; k++) {
        const qr_tok_added *a = &set->tok[k];
        if (skip_special && (t->flags[a->id] & QR_TOK_SPECIAL))
            continue;
        const uint8_t *m = t->added_bytes + a->off;
        /* The second byte first: it turns away most candidates (a single space, for the runs of
         * spaces) without a call. */
        if (a->len > len - i || (a->len > 1 && s[i + 1] != m[1]))
            continue;
        if (memcmp(s + i, m, a->len) == 0) {
            *match_len = a->len;
            return a->id;
        }
    }
    return -1;
}

typedef bool (*segment_fn)(encoder *e, const uint8_t *s, size_t len);

/* Splits s[0..len) on the added tokens of set (leftmost, then longest, as Hugging Face's
 * matcher), appending their ids and passing the text between them to each(). */
static bool split_added(encoder *e, const qr_tok_added_set *set, const uint8_t *s, size_t len,
                        segment_fn each)
{
    size_t seg = 0;
    if (set->n > 0) {
        for (size_t i = 0; i < len;) {
            size_t match_len = 0;
            int32_t id = added_at(e->t, set, s, len, i, e->skip_special, &match_len);
            if (id < 0) {
                i++;
                continue;
            }
            if (!each(e, s + seg, i - seg) || !push_id(e, id))
                return false;
            i += match_len;
            seg = i;
        }
    }
    return each(e, s + seg, len - seg);
}

/* Encodes text between two raw added tokens: normalizes it, then splits it on the normalized
 * added tokens, as Hugging Face does. ASCII needs no normalizing: every form keeps it. */
static bool encode_unnormalized(encoder *e, const uint8_t *s, size_t len)
{
    const qr_tokenizer *t = e->t;
    if (len == 0)
        return true;
    bool ascii = true;
    for (size_t i = 0; i < len && ascii; i++)
        ascii = s[i] < 0x80;
    if (t->n_norm == 0 || ascii)
        return split_added(e, &t->added_norm, s, len, encode_segment);
    uint8_t *norm;
    size_t norm_len;
    if (qr_normalize(t->norm, t->n_norm, s, len, &norm, &norm_len, NULL) != QR_OK)
        return false;
    bool ok = split_added(e, &t->added_norm, norm, norm_len, encode_segment);
    free(norm);
    return ok;
}

qr_status qr_tokenizer_encode(const qr_tokenizer *tok, const void *text, size_t len,
                              unsigned flags, int32_t **ids, size_t *n, qr_error *err)
{
    if (!tok || !ids || !n || (!text && len > 0))
        return qr_fail(err, QR_ERR_INVALID, "qr_tokenizer_encode: NULL argument");
    *ids = NULL;
    *n = 0;
    encoder e = {.t = tok, .skip_special = (flags & QR_TOKENIZE_SPECIAL_AS_TEXT) != 0};
    if (len >= CACHE_MIN_TEXT) {
        size_t slots = CACHE_MIN_SLOTS;
        while (slots < CACHE_MAX_SLOTS && slots < len / 16)
            slots *= 2;
        e.cache = calloc(slots, sizeof *e.cache); /* on failure: no cache, still correct */
        e.cache_mask = slots - 1;
    }
    if (!split_added(&e, &tok->added_raw, text, len, encode_unnormalized)) {
        encoder_free(&e);
        return qr_fail(err, QR_ERR_NOMEM, "tokenizer: out of memory encoding %zu bytes", len);
    }
    if (e.n_ids > 0) {
        *ids = e.ids; /* handed over; the rest of the scratch goes */
        *n = e.n_ids;
        e.ids = NULL;
    }
    encoder_free(&e);
    return QR_OK;
}

/* ---------------------------------------------------------------- decoding */

qr_status qr_tokenizer_decode(const qr_tokenizer *tok, const int32_t *ids, size_t n, char **out,
                              size_t *len, qr_error *err)
{
    if (!tok || !out || !len || (!ids && n > 0))
        return qr_fail(err, QR_ERR_INVALID, "qr_tokenizer_decode: NULL argument");
    *out = NULL;
    *len = 0;
    size_t total = 0;
    for (size_t i = 0; i < n; i++) {
        if (ids[i] < 0 || (size_t)ids[i] >= tok->n_tokens)
            return qr_fail(err, QR_ERR_INVALID, "tokenizer: id %d (at %zu) is out of range 0..%zu",
                           (int)ids[i], i, tok->n_tokens - 1);
        total += tok->offset[ids[i] + 1] - tok->offset[ids[i]];
        if (total > SIZE_MAX - 1)
            return qr_fail(err, QR_ERR_NOMEM, "tokenizer: decoded text too large");
    }
    char *buf = malloc(total + 1);
    if (!buf)
        return qr_fail(err, QR_ERR_NOMEM, "tokenizer: out of memory decoding %zu ids", n);
    size_t pos = 0;
    for (size_t i = 0; i < n; i++) {
        size_t k = tok->offset[ids[i] + 1] - tok->offset[ids[i]];
        memcpy(buf + pos, tok->bytes + tok->offset[ids[i]], k);
        pos += k;
    }
    buf[pos] = '\0';
    *out = buf;
    *len = pos;
    return QR_OK;
}

/* ---------------------------------------------------------------- streaming UTF-8 */

void qr_utf8_stream_init(qr_utf8_stream *s)
{
    s->n_held = 0;
}

size_t qr_utf8_stream_feed(qr_utf8_stream *s, const uint8_t *in, size_t len, uint8_t *out)
{
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        uint8_t b = in[i];
        if (s->n_held == 0 && b < 0x80) {
            out[o++] = b;
            continue;
        }
        s->held[s->n_held++] = b;
        uint32_t cp;
        int r = qr_utf8_scan(s->held, s->n_held, &cp);
        if (r == QR_UTF8_INCOMPLETE)
            continue;
        if (r > 0) {
            memcpy(out + o, s->held, s->n_held); /* a complete character */
            o += s->n_held;
            s->n_held = 0;
            continue;
        }
        /* b broke the held prefix (or b alone can start nothing): what was held before b is
         * invalid and goes out as it is; b then starts afresh. */
        memcpy(out + o, s->held, s->n_held - 1u);
        o += s->n_held - 1u;
        s->n_held = 0;
        if (b < 0x80 || qr_utf8_scan(&b, 1, &cp) == 0)
            out[o++] = b;
        else
            s->held[s->n_held++] = b;
    }
    return o;
}

size_t qr_utf8_stream_flush(qr_utf8_stream *s, uint8_t *out)
{
    size_t n = s->n_held;
    memcpy(out, s->held, n);
    s->n_held = 0;
    return n;
}
