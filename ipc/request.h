/* request.h: one request line to a validated, typed request (server side), and back (client).
 *
 * qi_request_parse reads a line as PROTOCOL.md specifies it and checks every field's type and
 * range, filling defaults, so the daemon only ever sees requests it can act on. Strict: an
 * unknown field is an error naming it. A failure gives the wire error code and a message naming
 * the field, plus the id when one could be read, so the caller can reply at once. Not here:
 * limits that depend on server state (queue depth, in-flight count, who the peer is), which
 * the daemon checks; serialising replies (reply.h). */
#ifndef QI_REQUEST_H
#define QI_REQUEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "budget.h"
#include "id.h"
#include "ipc_error.h"

/* ---------------------------------------------------------------- limits */

#define QI_DEFAULT_MAX_LINE 65536u
#define QI_DEFAULT_MAX_TOKENS 1024u
#define QI_DEFAULT_QUEUE_DEPTH 64u
#define QI_DEFAULT_MAX_IN_FLIGHT 16u

#define QI_STOP_MAX 8          /* stop strings per request */
#define QI_STOP_MAX_LEN 64     /* bytes of one stop string */
#define QI_TEXTS_MAX 64        /* texts of one classify request */
#define QI_TASK_MAX 32         /* bytes of a classify task name: a-z 0-9 _ - */
#define QI_VARIANT_NAME_MAX 64 /* bytes of a variant name: [A-Za-z0-9._-] */
#define QI_TOP_K_MAX 2147483647u

/* The server's limits (its configuration sets them). The parser uses max_line, max_tokens and
 * vocab; queue_depth and max_in_flight are here so one struct carries every protocol limit. */
typedef struct {
    size_t max_line;        /* bytes of a request line, without its '\n' */
    uint32_t max_tokens;    /* upper bound of generate.max_tokens (>= 1) */
    uint32_t vocab;         /* upper bound of generate.top_k; 0: not known (any up to 2^31-1) */
    uint32_t queue_depth;   /* requests waiting for the model, server-wide, before `busy` */
    uint32_t max_in_flight; /* unanswered requests per connection before `busy` */
} qi_limits;

/* 64 KiB, 1024, 0, 64, 16. */
qi_limits qi_limits_default(void);

/* ---------------------------------------------------------------- requests */

typedef enum {
    QI_OP_GENERATE,
    QI_OP_CLASSIFY,
    QI_OP_CANCEL,
    QI_OP_STATUS,
    QI_OP_VARIANTS,
    QI_OP_SET_BUDGET,
    QI_OP_PIN,
    QI_OP_UNPIN,
    QI_OP_RELOAD,
    QI_OP_METRICS,
    QI_OP_COUNT
} qi_op;

/* "generate", ..., "set-budget", ...; NULL for a value out of range. */
const char *qi_op_name(qi_op op);

/* The op called name; false if there is none. */
bool qi_op_from_name(const char *name, qi_op *op);

/* True for set-budget, pin, unpin and reload: the ops only privileged peers may use. */
bool qi_op_is_control(qi_op op);
/* The smallest magnitude a nonzero sampling number (temperature, top_p, repetition_penalty)
 * may have: 2^-126, FLT_MIN. The daemon samples in 32-bit floats, and a smaller double would
 * turn into 0 (top_p 1e-46 would become "top_p 0") or a denormal. */
#define QI_NUMBER_MIN 1.17549435082228750797e-38
/* True when x is 0 or at least QI_NUMBER_MIN in magnitude (and finite): representable. */
bool qi_number_representable(double x);
/* A classify task name as the protocol allows it: 1..QI_TASK_MAX characters of a-z 0-9 _ -. */
bool qi_task_name_ok(const char *s);

/* Every string below is NUL-terminated, valid UTF-8 and holds no NUL (the parser refuses
 * \u0000), so strlen is its length. */
typedef struct {
    char *prompt;              /* 1.. bytes */
    uint32_t max_tokens;       /* 1..limits.max_tokens; default min(64, limit) */
    double temperature;        /* 0..5; 0 = greedy; default 0.8 */
    uint32_t top_k;            /* 0..vocab; 0 = off; default 40 (or vocab if smaller) */
    double top_p;              /* (0, 1]; 1 = off; default 0.95 */
    double repetition_penalty; /* 1..10; 1 = off; default 1.1 (over the last 64 tokens) */
    bool has_seed;             /* false: the server picks a random seed */
    uint64_t seed;
    char **stop;               /* n_stop strings of 1..64 bytes */
    size_t n_stop;             /* 0..8 */
    bool stream;               /* default false */
} qi_generate;

typedef struct {
    char **texts;  /* n_texts strings, each 1.. bytes */
    size_t n_texts; /* 1..64 */
    bool single;   /* the request used "text" (one string), not "texts" */
    char *task;    /* the classifier head to run, 1..32 of a-z 0-9 _ -; NULL: the model's first */
} qi_classify;

typedef struct {
    qi_id target; /* the id of one of the same connection's requests */
} qi_cancel;

typedef enum {
    QI_BUDGET_UNCHANGED = 0, /* the field was absent */
    QI_BUDGET_SET,           /* a value */
    QI_BUDGET_AUTO,          /* "auto": drop the explicit budget, use the measured limits */
} qi_budget_mode;

typedef struct {
    qi_budget_mode memory;
    uint64_t memory_bytes; /* QI_BUDGET_SET: >= 1 */
    qi_budget_mode power;
    uint64_t power_uw;     /* QI_BUDGET_SET: 1 .. QI_POWER_MAX_UW microwatts */
} qi_set_budget;

typedef struct {
    char *variant; /* 1..64 bytes of [A-Za-z0-9._-] */
} qi_pin;

typedef struct {
    qi_id id;
    qi_op op;
    union {
        qi_generate generate;
        qi_classify classify;
        qi_cancel cancel;
        qi_set_budget set_budget;
        qi_pin pin;
    } u; /* status, variants, unpin and reload have no fields */
} qi_request;

/* Parses and validates line[0..len) (without its '\n'; no NUL terminator needed). On success
 * *out owns its strings (qi_request_free). On failure returns the error code (invalid_json,
 * unknown_op, invalid_argument, or QI_ERR_NOMEM), err names the field, and out->id is the
 * request's id if it could be read (else QI_ID_NONE) so the error reply can carry it, out->op the
 * op if it was read (else QI_OP_COUNT); *out then owns nothing. A line longer than
 * limits->max_line is refused as too_large. limits may be NULL for qi_limits_default(). */
qi_code qi_request_parse(const char *line, size_t len, const qi_limits *limits, qi_request *out,
                         qi_error *err);

/* Frees what qi_request_parse allocated and zeroes *r. Do not call it on a request whose
 * strings the caller borrowed (one filled by hand for qi_request_build). */
void qi_request_free(qi_request *r);

/* A request of `op` with `id` and every field at its default (generate: with limits, which may
 * be NULL for qi_limits_default), no strings: the client fills the required ones. */
void qi_request_init(qi_request *r, qi_op op, const qi_id *id, const qi_limits *limits);

/* Serialises r as one request line (malloc'ed, '\n'-terminated, *len counts the '\n'); the
 * client side of the protocol. Only reads r; its strings may be borrowed. Every field of the op
 * is written (seed only if has_seed). Checks only what would make the line unparseable
 * (a missing prompt, a null id): the server validates the rest and says what is wrong. */
qi_code qi_request_build(const qi_request *r, char **line, size_t *len, qi_error *err);

#endif
