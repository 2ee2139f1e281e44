/* dataset.h: evaluation data read from files — a text to score, or labelled sentences.
 *
 * Shared by qslm-eval and QSLM (quant/), so both read the same files the same way. Labelled
 * sentences are JSON Lines, one {"text": "...", "label": N} per line (blank lines skipped);
 * errors name the file and line. Texts are encoded with special tokens read as plain text. */
#ifndef QR_DATASET_H
#define QR_DATASET_H

#include <stddef.h>
#include <stdint.h>

#include "error.h"
#include "eval.h"
#include "tokenizer.h"

/* Reads a whole file (at most max_bytes) into a NUL-terminated buffer. */
qr_status qr_read_file(const char *path, size_t max_bytes, char **buf, size_t *len, qr_error *err);

/* Encodes text; fails if an id is not below vocab (a tokenizer larger than the model). */
qr_status qr_encode_for_model(const qr_tokenizer *tok, size_t vocab, const char *text, size_t len,
                              const char *where, int32_t **ids, size_t *n, qr_error *err);

/* Parses JSON Lines of labelled sentences from text (name is used in errors). Every label must
 * be in 0..n_classes-1 and every text non-empty. *items is an array of n items, each owning its
 * tokens; *tokens_total sums their lengths. */
qr_status qr_labels_parse(const char *text, size_t len, const char *name, const qr_tokenizer *tok,
                          size_t vocab, size_t n_classes, qr_labelled **items, size_t *n,
                          size_t *tokens_total, qr_error *err);

/* qr_read_file (up to 256 MiB) then qr_labels_parse. */
qr_status qr_labels_load(const char *path, const qr_tokenizer *tok, size_t vocab, size_t n_classes,
                         qr_labelled **items, size_t *n, size_t *tokens_total, qr_error *err);

/* qr_read_file (up to 1 GiB) then qr_encode_for_model. */
qr_status qr_text_load(const char *path, const qr_tokenizer *tok, size_t vocab, int32_t **ids,
                       size_t *n, size_t *bytes, qr_error *err);

void qr_labels_free(qr_labelled *items, size_t n);

#endif
