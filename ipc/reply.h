/* reply.h: building the server's reply lines (PROTOCOL.md, "Replies").
 *
 * One function per kind of message. Each returns a malloc'ed line ending in '\n' (free it),
 * with the request's id echoed in its original JSON type (null for QI_ID_NONE), valid UTF-8
 * whatever bytes the text arguments hold (json_out.h), and no newline inside. The structs
 * borrow everything they point to. The same types describe a parsed reply (reply_parse.h). */
#ifndef QI_REPLY_H
#define QI_REPLY_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "id.h"
#include "ipc_error.h"

#define QI_PROTOCOL_VERSION 2 /* 2: classify replies name their labels (PROTOCOL.md, section 6) */

/* ---------------------------------------------------------------- generation */

typedef enum {
    QI_STOP_LENGTH,    /* "length": max_tokens reached */
    QI_STOP_STOP,      /* "stop": a stop string completed */
    QI_STOP_EOS,       /* "eos": the model's end-of-text token */
    QI_STOP_CANCELLED, /* "cancelled": a cancel request named this generation */
    QI_STOP_COUNT
} qi_stop_reason;

const char *qi_stop_reason_name(qi_stop_reason r); /* NULL if out of range */
bool qi_stop_reason_from_name(const char *name, qi_stop_reason *r);

/* Tokens [from, to) of a generation were computed with `variant`. */
typedef struct {
    const char *variant;
    uint32_t from, to;
} qi_span;

typedef struct {
    uint32_t prompt_tokens; /* tokens the prompt encoded to */
    uint32_t tokens;        /* tokens generated */
    double ms;              /* wall time from reading the request to this reply */
    double tokens_per_s;    /* tokens / time spent generating them (prompt and queue excluded) */
    qi_stop_reason stop_reason;
    const qi_span *spans;   /* in order, covering 0..tokens */
    size_t n_spans;
    uint32_t switches;      /* variant switches during this generation */
    double switch_wait_ms;  /* time it waited between two tokens with no variant loaded: a
                               switch that had to unload the old variant before loading the
                               new one (they did not fit the memory budget together) */
} qi_gen_stats;

/* {"id":…,"event":"token","text":…,"token":N,"index":i} */
qi_code qi_reply_token(const qi_id *id, const char *text, size_t text_len, int32_t token,
                       uint32_t index, char **line, size_t *len, qi_error *err);

/* {"id":…,"event":"done","text":…,"stats":{…}}: the last message of every generate. */
qi_code qi_reply_done(const qi_id *id, const char *text, size_t text_len,
                      const qi_gen_stats *stats, char **line, size_t *len, qi_error *err);

/* ---------------------------------------------------------------- classification */

typedef struct {
    int32_t label;      /* the most probable class: an index into the labels */
    const float *probs; /* n_probs class probabilities, in label order */
    size_t n_probs;
} qi_class_result;

/* Which head answered: its task name and its n_labels label names (class-index order). */
typedef struct {
    const char *task;
    const char *const *labels;
    size_t n_labels;
} qi_class_head;

/* {"id":…,"task":"sentiment","labels":["negative","positive"],
 *  "results":[{"label":"positive","label_index":1,"probs":[…]},…]}. Every result's label must be
 * below head->n_labels. */
qi_code qi_reply_classify(const qi_id *id, const qi_class_head *head, const qi_class_result *results,
                          size_t n, char **line, size_t *len, qi_error *err);

/* ---------------------------------------------------------------- control */

/* {"id":…,"ok":true,"found":bool} */
qi_code qi_reply_cancel(const qi_id *id, bool found, char **line, size_t *len, qi_error *err);

/* {"id":…,"ok":true,"memory_bytes":N|null,"power_w":W|null}: the explicit budgets in force
 * after the request (null: none, the measured limits rule). */
qi_code qi_reply_set_budget(const qi_id *id, bool has_memory, uint64_t memory_bytes,
                            bool has_power, uint64_t power_uw, char **line, size_t *len,
                            qi_error *err);

/* {"id":…,"ok":true,"variant":name|null}: pin (the pinned variant) and unpin (null). */
qi_code qi_reply_pin(const qi_id *id, const char *variant, char **line, size_t *len,
                     qi_error *err);

/* {"id":…,"ok":true,"variants":N,"active":name|null}: a reload that succeeded. */
qi_code qi_reply_reload(const qi_id *id, uint32_t n_variants, const char *active, char **line,
                        size_t *len, qi_error *err);

/* ---------------------------------------------------------------- status */

/* One telemetry source as read now. */
typedef struct {
    const char *source;  /* "cgroup memory.max", "MemAvailable", "hwmon1 power1_input", ... */
    const char *unit;    /* "bytes", "W", "%", ... */
    bool available;      /* false: absent or unreadable (value is written as null) */
    double value;
    const char *note;    /* NULL, or why it is unavailable / what it means */
} qi_reading;

typedef struct {
    const char *active;         /* the variant serving now, NULL if none */
    const char *reason;         /* why it is the one */
    bool pinned;
    bool has_memory_budget;     /* false: no memory limit known at all */
    uint64_t memory_budget_bytes;
    const char *memory_budget_source; /* which limit is the tightest: "set-budget", ... */
    bool has_power_budget;
    uint64_t power_budget_uw;
    const char *power_budget_source;
    const qi_reading *readings;
    size_t n_readings;
    uint32_t queue_waiting, queue_active, queue_limit;
    uint64_t connections, requests, tokens, errors;
    uint64_t cancelled;    /* requests ended by a `cancel` of their client */
    uint64_t disconnected; /* requests dropped because their client's connection closed */
    uint64_t switches;
    double uptime_s;
    /* The bundle served, sent as "bundle" (left out when bundle_path is NULL); the other NULL
     * strings are sent as null. */
    const char *bundle_path;            /* its directory, resolved when it was loaded */
    const char *bundle_configured;      /* the directory as configured (a symlink, for a rollout) */
    const char *bundle_created;         /* the manifest's `created` (UTC), NULL when it has none */
    const char *bundle_signer;          /* a trusted key's id, "unsigned" or "not checked" */
    const char *bundle_manifest_sha256; /* of the manifest it serves */
} qi_server_status;

qi_code qi_reply_status(const qi_id *id, const qi_server_status *s, char **line, size_t *len,
                        qi_error *err);

/* One variant of the bundle. Metrics are NAN when not measured (written as null); names and
 * meanings are the manifest's (runtime/BUNDLE.md). */
typedef struct {
    const char *name;
    uint64_t footprint_bytes;
    double bits_per_weight;
    double ppl_test, ppl_valid, accuracy, tokens_per_s, energy_pj_per_token;
    bool verified; /* its SHA-256 was checked against the manifest */
    bool active, pinned;
    const qi_class_head *tasks; /* n_tasks classifier heads (sent as "tasks"), in the file's order */
    size_t n_tasks;
} qi_variant_info;

qi_code qi_reply_variants(const qi_id *id, const qi_variant_info *v, size_t n, char **line,
                          size_t *len, qi_error *err);

/* ---------------------------------------------------------------- metrics */

#define QI_METRICS_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

/* {"id":…,"content_type":QI_METRICS_CONTENT_TYPE,"text":…}: the server's metrics as Prometheus
 * text exposition (format 0.0.4), text[0..text_len). */
qi_code qi_reply_metrics(const qi_id *id, const char *text, size_t text_len, char **line, size_t *len,
                         qi_error *err);

/* ---------------------------------------------------------------- errors */

/* {"id":…,"error":{"code":…,"message":…,"field":…}} ("field" only when field is non-empty).
 * code must be a wire code (qi_code_is_wire); any other is sent as "internal". */
qi_code qi_reply_error(const qi_id *id, qi_code code, const char *field, const char *message,
                       char **line, size_t *len, qi_error *err);

/* qi_reply_error with a printf-style message (cut at 1 KiB). Returns the line, or NULL when
 * out of memory: for callers that can only log that. */
char *qi_reply_errorf(const qi_id *id, qi_code code, const char *field, size_t *len, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
char *qi_reply_errorv(const qi_id *id, qi_code code, const char *field, size_t *len, const char *fmt,
                      va_list ap) __attribute__((format(printf, 5, 0)));

/* A `busy` error carrying "retry_after_ms": retry_ms, the server's estimate of when the same
 * request is likely to be accepted. Returns the line, or NULL when out of memory. */
char *qi_reply_busyf(const qi_id *id, uint64_t retry_ms, size_t *len, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* The answer to a request whose id is still in flight on its connection (PROTOCOL.md 2):
 * {"id":null,"duplicate_id":dup,"error":{"code":"invalid_argument","field":"id",…}}. Its id is
 * null, not dup, so a client never reads it as the final message of the request in flight. */
qi_code qi_reply_duplicate_id(const qi_id *dup, char **line, size_t *len, qi_error *err);

/* The same from a qi_error, as qi_request_parse fills it. */
qi_code qi_reply_error_from(const qi_id *id, const qi_error *e, char **line, size_t *len,
                            qi_error *err);

#endif
