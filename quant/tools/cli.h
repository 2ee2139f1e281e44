/* cli.h: what qslm-quant's subcommands share — options, the loaded model and data, progress. */
#ifndef QQ_CLI_H
#define QQ_CLI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "eval.h"
#include "heads.h"
#include "hierarchy.h"
#include "local.h"
#include "measure.h"
#include "model_file.h"
#include "pool.h"
#include "search.h"
#include "sensitivity.h"
#include "setting.h"
#include "tokenizer.h"
#include "tradeoff.h"

#define EXIT_FAIL 1
#define EXIT_USAGE 2

typedef struct {
    const char *model_path;
    const char *data_dir;
    const char *calib_text, *calib_labels, *valid_text, *valid_labels, *test_text, *test_labels;
    const char *classify[QQ_HEADS_MAX]; /* --classify TASK=DIR: DIR/{fit,heldout,test}.jsonl of head TASK */
    size_t n_classify;
    size_t calib_tokens, calib_items, valid_tokens, calib_window, window, batch, serve_batch;
    size_t ec_tokens;          /* error-compensating rounding's tokens (0: plain rounding) */
    double ec_damp;
    int threads;
    const char *cache_dir;     /* NULL with --no-cache */
    bool no_cache;
    qq_floors floors;
    double lambda;
    qq_tier max_tier;             /* search, build: the last tier to run */
    const char *budget, *budgets, *out, *tier, *svg, *key, *pubkey;
    bool json, quiet;
    bool check_local;          /* sensitivity: rank the module tier's layer-local estimates */
    /* search, build: how the module tier measures the matrices inside the layers: end to end,
     * layer-locally (local.h), or auto: end to end while that costs at most a minute */
    enum { QQ_MODULES_AUTO, QQ_MODULES_EXACT, QQ_MODULES_LOCAL } module_measure;
    /* search, build: refine the kept setting (quant/refine.h): auto (while its runs over the
     * error-compensation text take at most 30 s), on or off */
    enum { QQ_REFINE_AUTO, QQ_REFINE_ON, QQ_REFINE_OFF } refine;
    char **rest;               /* positional arguments after the subcommand's own */
    int n_rest;
} qq_options;

/* The model and data a measuring subcommand works on. */
typedef struct {
    qr_model_file *master;
    qr_tokenizer *tok;
    qr_pool *pool;
    qq_hierarchy h;
    qq_costs costs;
    int32_t *calib_ids, *valid_ids;
    size_t n_calib, n_valid;
    qr_labelled *calib_items, *valid_items;
    size_t n_calib_items, n_valid_items;
    qr_labelled *head_valid[QQ_HEADS_MAX]; /* heads ≥ 1: their validation sentences */
    size_t n_head_valid[QQ_HEADS_MAX];
    size_t n_heads;                        /* the master's classifier heads */
    bool head_legacy;                      /* one unnamed head (head.n_classes only) */
    char head_task[QQ_HEADS_MAX][QR_TASK_NAME_MAX + 1]; /* their task names */
    qq_split calib, valid;
    qq_measurer *meas;
    qq_sensitivity *sens;
    qq_local *local;         /* search, build: the module tier's layer-local estimates, or NULL */
    double reference_s;      /* the f32 run on calibration (the measurer's first): a pass's cost */
    double calib_pass_s;     /* that run alone, without the error-compensation statistics */
    char model_sha256[65];
    bool tty;
    double start;
    char stage[96];          /* progress lines start with it: "budget 2 of 4, about 3 min left" */
} qq_session;

/* Sizes given to qslm-quant ("8M", "4.65M") are read by ipc/budget.h's qi_parse_memory, the
 * one size grammar of qslmctl, qslmd and qslm-quant. This is their display form for reports:
 * "12.30 MiB" (powers of 1024), rounded, not meant to be read back. */
const char *qq_format_size(uint64_t bytes, char *buf, size_t cap);

/* Opens the model, loads the data and the reference, sets up the sensitivity cache. */
int qq_session_open(const qq_options *o, qq_session *s);
void qq_session_close(qq_session *s);
double qq_now(void);
/* A progress line on a terminal (overwritten in place); nothing when stderr is not one. */
void qq_progress(qq_session *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void qq_progress_done(qq_session *s);

/* The test split: only ever measured for reports, never searched on. */
typedef struct {
    int32_t *test_ids;
    size_t n_test;
    qr_labelled *test_items;
    size_t n_test_items;
    qr_labelled *head_items[QQ_HEADS_MAX]; /* heads ≥ 1 given --classify: their test sentences */
    size_t n_head_items[QQ_HEADS_MAX];
} qq_test_data;

/* Points the floors' head names at the session's task names (for the floor messages). */
void qq_name_heads(const qq_session *s, qq_floors *f);

/* The data folder of head h from --classify TASK=DIR, or NULL when none names it. */
const char *qq_classify_dir(const qq_options *o, const qq_session *s, size_t head);

int qq_load_test(const qq_options *o, qq_session *s, qq_test_data *td);
void qq_test_data_free(qq_test_data *td);

int qq_cmd_hierarchy(const qq_options *o);
int qq_cmd_sensitivity(const qq_options *o);
int qq_cmd_check_local(const qq_options *o); /* sensitivity --check-local */
int qq_cmd_search(const qq_options *o);
int qq_cmd_build(const qq_options *o);
int qq_cmd_report(const qq_options *o);
int qq_cmd_keygen(const qq_options *o);
int qq_cmd_sign(const qq_options *o);
int qq_cmd_verify(const qq_options *o);

#endif
