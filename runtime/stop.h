/* stop.h: stop strings for generation.
 *
 * Generated text is fed in as it is decoded; the matcher hands back only text that cannot be
 * the start of a stop string, holding back the rest, so a client never sees part of a stop
 * string. When a stop string completes, the text before it is released and generation ends. */
#ifndef QR_STOP_H
#define QR_STOP_H

#include <stdbool.h>
#include <stddef.h>

#include "error.h"

#define QR_STOP_MAX 16
#define QR_STOP_MAX_LEN 256

typedef struct qr_stop qr_stop;

/* Empty strings are refused; at most QR_STOP_MAX strings of at most QR_STOP_MAX_LEN bytes. */
qr_status qr_stop_new(const char *const *stops, size_t n, qr_stop **out, qr_error *err);
void qr_stop_free(qr_stop *s);

/* Adds text. *emit / *emit_len: what may be shown now (valid until the next call). Returns true
 * when a stop string completed: *emit is then the text before it, and later feeds emit nothing. */
bool qr_stop_feed(qr_stop *s, const char *text, size_t len, const char **emit, size_t *emit_len);

/* End of generation without a stop: releases the held-back text. */
void qr_stop_flush(qr_stop *s, const char **emit, size_t *emit_len);

#endif
