/* reply_parse.h: reading a reply line (the client's side of reply.h).
 *
 * A reply is one of: a token event, the done event that ends a generate, an error, or a result
 * (every other final reply: classify, cancel, status, ...). Token, done and error are decoded
 * into fields; a result is left as its json-c object for the caller to read, since its shape
 * depends on the request's op. Lenient where the protocol allows growth (unknown fields are
 * ignored, an unknown error code is kept by name) and strict about the rest: a line that breaks
 * PROTOCOL.md is QI_ERR_PROTOCOL with what is wrong. */
#ifndef QI_REPLY_PARSE_H
#define QI_REPLY_PARSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "id.h"
#include "ipc_error.h"
#include "reply.h"

struct json_object;

typedef enum {
    QI_REPLY_TOKEN,  /* {"event":"token"}: not final */
    QI_REPLY_DONE,   /* {"event":"done"}: final */
    QI_REPLY_ERROR,  /* {"error":{…}}: final */
    QI_REPLY_RESULT, /* any other reply: final */
} qi_reply_kind;

typedef struct {
    qi_id id;              /* QI_ID_NONE when the reply's id is null */
    qi_id duplicate_id;    /* ERROR with a null id answering a line that reused an id still in
                            * flight: that id (PROTOCOL.md 2); QI_ID_NONE otherwise. The
                            * request in flight still gets its own final message. */
    qi_reply_kind kind;
    /* TOKEN and DONE: the text (NUL-terminated, valid UTF-8, owned by body) */
    const char *text;
    size_t text_len;
    /* TOKEN */
    int32_t token;
    uint32_t index;
    /* DONE: spans is malloc'ed, its variant names are owned by body */
    qi_gen_stats stats;
    /* ERROR: code is QI_ERR_UNKNOWN_CODE for a code this library does not know, whose name is
     * still in code_name; field is NULL when the reply names none. Owned by body. */
    qi_code code;
    const char *code_name;
    const char *message;
    const char *field;
    /* ERROR: the error's retry_after_ms (a `busy` reply's hint: milliseconds after which the
     * same request is likely to be accepted), -1 when the reply gives none. */
    int64_t retry_after_ms;
    /* The whole reply: results are read from here (json-c accessors). */
    struct json_object *body;
} qi_reply;

/* Parses line[0..len) (without its '\n'). On success *out must be released with
 * qi_reply_free; on failure *out holds nothing. */
qi_code qi_reply_parse(const char *line, size_t len, qi_reply *out, qi_error *err);

void qi_reply_free(qi_reply *r);

/* True for every kind but a token event: no more messages come for this id. */
bool qi_reply_is_final(const qi_reply *r);

#endif
