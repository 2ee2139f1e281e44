/* engine.h: the inference thread.
 *
 * One thread owns the loaded variant and every request being computed, and runs rounds. A round
 * reads chunks of input, then takes steps:
 *   - a chunk is up to `chunk` consecutive tokens of one sequence still reading its input (a
 *     generate's prompt, a classify's text), run as that many rows of one state in one forward
 *     call (qr_forward_sequence): every product over all of them at once. Chunks start at
 *     multiples of `chunk` from the start of the input and a call holds one chunk, so a
 *     sequence's results do not depend on what else runs. A prompt's last chunk gives the
 *     logits of its last token, hence the generation's first token;
 *   - a step is the next token of a generation past its prompt, and steps go through the model
 *     together in batches of `batch` rows.
 *
 * Fair scheduling, and the round's clock. Every job names its flow (the loop sets job->flow:
 * its connection). A round's steps (round_tokens, or the number of flows with steps to take if
 * that is more) are split max-min fairly across flows by the steps each can take, then within a
 * flow across its requests; its chunks likewise, by the chunks each has to read, then within a
 * classify across its texts; leftovers rotate. How many chunks: what fits in round_ms beside
 * the round's steps (as long as recent rounds' steps took, when any request is stepping) at the
 * rate recent chunks were read, one at least. So a flow with a short generate gets its token
 * every round, a round later than round_ms only by one chunk or a slow turn of the clock,
 * however long the texts other flows send; a 60 KB text is read hundreds of tokens per round
 * when the model is otherwise idle, and shares the round with everyone else when it is not.
 *
 * Admission is fair too: a free slot goes to the waiting job whose flow has the fewest requests
 * being computed (the oldest among equals); no flow has more than its share of slots computed
 * at once (max_active_per_flow, or fewer when many flows have work), and a quarter of
 * max_active is kept for flows with nothing computed, so a connection that pipelines many long
 * requests leaves slots for others and a newcomer starts at once; the flooder's other requests
 * wait their turn (the loop answers `busy` beyond its limits). Slots already taken are never
 * taken back: a share shrinks as requests end.
 *
 * Between two rounds the engine applies the variant the event loop asked for
 * (qd_engine_set_target): it loads and verifies the new one, moves every request in flight onto
 * it with its own state, and unloads the old one; or, when the loop says the two do not fit the
 * memory budget together, unloads the old one first (requests in flight wait between two
 * tokens, and a generation's done message says how long). A sequence still reading its input
 * starts it again on the new variant (qd_task_rebase, once at most), and the next switch waits
 * until such inputs are read again, up to a bound; while it waits, every reading sequence reads
 * a chunk a round at least and every sequence steps. A target whose file is the one loaded (a
 * reload of an unchanged variant) keeps the loaded copy. It talks back only through events
 * (job.h) and a wake callback, which the loop turns into a uv_async_send; it never blocks the
 * loop: every call here takes a mutex for a few pointer moves at most. */
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
    size_t round_tokens; /* steps computed per round, shared fairly across flows (>= 1) */
    size_t chunk;      /* tokens of input per chunk (>= 1; the runner is made for max(batch, chunk)
                          rows) */
    unsigned round_ms; /* the time a round aims at: its chunks fill what its steps leave (>= 1) */
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

/* Bytes of variant images the engine may hold now, by their footprints: the loaded one, and
 * during a switch also the one loading and the one unloaded until its memory is back with the
 * kernel (an upper bound then; exact between switches). The policy subtracts it from the
 * service's memory to find what others use: counting only the target's footprint while the old
 * image is still there would take that image for someone else's memory. Lock-free. */
uint64_t qd_engine_held_bytes(qd_engine *e);

/* Requests waiting to start, and being computed. */
void qd_engine_load(qd_engine *e, uint32_t *waiting, uint32_t *active);

#endif
