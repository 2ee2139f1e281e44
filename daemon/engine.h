/* engine.h: the inference thread.
 *
 * One thread owns the loaded variant and every request being computed. Each round computes one
 * token for at most round_tokens sequences, and the round's tokens go through the model together
 * in batches (the runtime's batched path), so throughput grows with concurrency.
 *
 * Fair scheduling. Every job names its flow (the loop sets job->flow: its connection). A round's
 * token budget (round_tokens, or the number of flows with work if that is more) is split
 * max-min fairly across flows by the tokens each can use this round (fair.h), then within a
 * flow across its requests, and within a classify across its texts; leftovers rotate. So a
 * flow with one short generate gets its token every round however many long classify texts
 * other flows have in flight: a 60 KB text is read a few tokens per round, in turn with
 * everyone else, never in one go. Admission is fair too: a free slot goes to the waiting job
 * whose flow has the fewest requests being computed (the oldest among equals); no flow has
 * more than its share of slots computed at once (max_active_per_flow, or fewer when many
 * flows have work), and a quarter of max_active is kept for flows with nothing computed, so a
 * connection that pipelines many long requests leaves slots for others and a newcomer starts
 * at once; the flooder's other requests wait their turn (the loop answers `busy` beyond its
 * limits). Slots already taken are never taken back: a share shrinks as requests end. Between two rounds the engine applies the variant the
 * event loop asked for (qd_engine_set_target): it loads and verifies the new one, moves every
 * request in flight onto it with its own state, and unloads the old one; or, when the loop
 * says the two do not fit the memory budget together, unloads the old one first (requests in
 * flight wait between two tokens, and a generation's done message says how long). A target
 * whose file is the one loaded (a reload of an unchanged variant) keeps the loaded copy. It talks back only
 * through events (job.h) and a wake callback, which the loop turns into a uv_async_send; it
 * never blocks the loop: every call here takes a mutex for a few pointer moves at most. */
#ifndef QD_ENGINE_H
#define QD_ENGINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "error.h"
#include "job.h"
#include "variants.h"

typedef struct {
    int threads;       /* the worker pool's size, the engine's own thread included (>= 1) */
    size_t batch;      /* sequences per forward call (the served footprint's batch) */
    size_t max_active; /* requests computed at once; more wait in the queue */
    size_t max_active_per_flow; /* of those, at most this many of one flow (>= 1) */
    size_t round_tokens; /* tokens computed per round, shared fairly across flows (>= 1) */
    bool lock_memory;  /* mlock each variant's image */
} qd_engine_config;

typedef struct qd_engine qd_engine;

/* Called from the inference thread when events are ready. */
typedef void (*qd_wake_fn)(void *ctx);

qr_status qd_engine_new(const qd_engine_config *cfg, qd_wake_fn wake, void *wake_ctx,
                        qd_engine **out, qr_error *err);

/* Stops the thread: every request still held ends with `shutting_down` (its FINAL event is
 * queued; drain with qd_engine_take_events after this returns), the variant is unloaded. */
void qd_engine_stop(qd_engine *e);
void qd_engine_free(qd_engine *e);

/* Hands a job over (the loop must not touch it until its FINAL event). */
void qd_engine_submit(qd_engine *e, qd_job *job);

/* Wakes the thread because a job's cancel flag was set. */
void qd_engine_poke(qd_engine *e);

/* Serve variant `variant` of bundle b from the next round on (-1: none; requests in flight
 * then end with `no_variant_fits`). Takes its own reference on b. unload_first: unload what
 * is loaded before loading the new one (when the new one fails to load, the old one is loaded
 * back). */
void qd_engine_set_target(qd_engine *e, qd_bundle *b, int variant, bool unload_first);

/* Moves every pending event to out (in order). */
void qd_engine_take_events(qd_engine *e, qd_event_list *out);

/* Requests waiting to start, and being computed. */
void qd_engine_load(qd_engine *e, uint32_t *waiting, uint32_t *active);

#endif
