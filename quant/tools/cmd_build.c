/* cmd_build.c: `qslm-quant build MODEL --budgets LIST -o DIR` — the variant bundle.
 *
 * For each budget: the tiered search, the variant file, then what the manifest reports about
 * it, measured here on the written file: its served footprint, perplexity on the test text and
 * accuracy on the test sentences (never used by the search), decode tokens/s, and the
 * estimated energy per token (runtime/energy.h). Budgets with no feasible setting are listed
 * in the manifest's "infeasible" with the reason. */
#include <errno.h>
#include <libgen.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "budget.h"
#include "bundle.h"
#include "cli.h"
#include "dataset.h"
#include "energy.h"
#include "footprint.h"
#include "forward.h"
#include "model.h"
#include "search.h"
#include "sha256.h"
#include "state.h"
#include "tensor_types.h"

#define TEST_WINDOW 1024   /* the perplexity protocol of models/README.md */
#define TEST_BATCH 64
#define DECODE_TOKENS 64
#define DECODE_RUNS 5

qr_status qq_search_context(qq_session *s, const qq_options *o, qq_search_ctx *ctx, qr_error *err);


/* The manifest's `created`: now in UTC, or SOURCE_DATE_EPOCH when set (reproducible builds:
 * the same inputs then give the same manifest bytes). NULL when neither can be written. */
static char *created_now(void)
{
    const char *epoch = getenv("SOURCE_DATE_EPOCH");
    time_t when = time(NULL);
    if (epoch && epoch[0]) {
        char *end;
        errno = 0;
        long long v = strtoll(epoch, &end, 10);
        if (errno || *end || v < 0) {
            fprintf(stderr, "qslm-quant: SOURCE_DATE_EPOCH='%s' is not a time in seconds; using the clock\n", epoch);
        } else {
            when = (time_t)v;
        }
    }
    struct tm t;
    char buf[QR_BUNDLE_CREATED_LEN + 1];
    if (!gmtime_r(&when, &t) || strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &t) != QR_BUNDLE_CREATED_LEN ||
        !qr_bundle_created_valid(buf))
        return NULL;
    return strdup(buf);
}

/* The progress line's stage: which budget of how many, and once one is done, the time the rest
 * would take at the pace so far. An upper estimate: later budgets reuse the sensitivities and
 * settings the earlier ones measured. */
static void set_stage(qq_session *s, size_t i, size_t n, double since)
{
    double per = i ? (qq_now() - since) / (double)i : 0;
    double left = per * (double)(n - i);
    if (!i)
        snprintf(s->stage, sizeof s->stage, "budget %zu of %zu", i + 1, n);
    else if (left < 120)
        snprintf(s->stage, sizeof s->stage, "budget %zu of %zu, at most about %.0f s left", i + 1, n, left);
    else
        snprintf(s->stage, sizeof s->stage, "budget %zu of %zu, at most about %.0f min left", i + 1, n, left / 60);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Median decode tokens/s (one sequence, the worker pool) and the hidden units' firing rate. */
static qr_status decode_speed(qr_model *m, qr_pool *pool, double *tps, double *firing, qr_error *err)
{
    qr_runner *r = NULL;
    qr_state *s = NULL;
    float *logits = malloc(m->vocab * sizeof(float));
    uint64_t *hidden = calloc(m->n_layer, sizeof(uint64_t));
    qr_spike_trace trace = {.hidden_fired = hidden};
    double runs[DECODE_RUNS];
    qr_status st;
    if (!logits || !hidden) {
        st = qr_fail(err, QR_ERR_NOMEM, "out of memory");
        goto out;
    }
    if ((st = qr_runner_new(m, pool, 1, &r, err)) || (st = qr_state_new(m, &s, err)))
        goto out;
    qr_runner_set_trace(r, &trace);
    uint64_t seed = 12345;
    for (int run = 0; run <= DECODE_RUNS; run++) { /* run 0 warms the caches up */
        qr_state_reset(s);
        double t0 = qq_now();
        for (int i = 0; i < DECODE_TOKENS; i++) {
            seed = seed * 6364136223846793005ull + 1442695040888963407ull;
            int32_t tok = (int32_t)((seed >> 33) % m->vocab);
            if ((st = qr_forward(r, &s, &tok, 1, m->has_lm_head ? logits : NULL, NULL, err)))
                goto out;
        }
        if (run)
            runs[run - 1] = DECODE_TOKENS / (qq_now() - t0);
    }
    qsort(runs, DECODE_RUNS, sizeof runs[0], cmp_double);
    *tps = runs[DECODE_RUNS / 2];
    uint64_t fired = 0;
    for (size_t l = 0; l < m->n_layer; l++)
        fired += hidden[l];
    *firing = trace.tokens ? (double)fired / ((double)trace.tokens * (double)m->n_layer * (double)m->f) : 0.0;
out:
    qr_state_free(s);
    qr_runner_free(r);
    free(hidden);
    free(logits);
    return st;
}

typedef struct {
    double ppl, accuracy, tps, energy_pj, firing;
    uint64_t footprint, file_bytes;
    bool lm, cls;
    bool head_ok[QQ_HEADS_MAX];     /* per head: test accuracy measured ([0] is cls) */
    double head_acc[QQ_HEADS_MAX];
    char sha256[QR_SHA256_HEX_SIZE];
} variant_figures;

/* Everything the manifest says about a written variant file, measured on it. */
static qr_status measure_variant(const char *path, qq_session *s, const qq_test_data *td, size_t serve_batch,
                                 variant_figures *v, qr_error *err)
{
    memset(v, 0, sizeof *v);
    qr_model_file *f = NULL;
    qr_model *m = NULL;
    qr_runner *r = NULL;
    uint8_t digest[QR_SHA256_BYTES];
    qr_status st;
    if ((st = qr_sha256_file(path, digest, &v->file_bytes, err)) || (st = qr_model_file_open(path, &f, err)) ||
        (st = qr_model_bind(f, &m, err)) || (st = qr_runner_new(m, s->pool, qr_eval_rows(m, TEST_BATCH, TEST_WINDOW), &r, err)))
        goto out;
    qr_sha256_to_hex(digest, v->sha256);
    v->footprint = qr_footprint_of(m, serve_batch).total;
    /* One after the other: the runner splits each chunk's sequences between the pool's threads
     * (forward.h), so each half of the test measurement has both cores. */
    if (m->n_classes && td->n_test_items) {
        qq_progress(s, "%s: accuracy on the test sentences (%zu)", path, td->n_test_items);
        qr_acc_result acc;
        if ((st = qr_eval_accuracy(r, td->test_items, td->n_test_items, TEST_BATCH, NULL, NULL, &acc, err)))
            goto out;
        v->cls = true;
        v->accuracy = acc.accuracy;
        v->head_ok[0] = true;
        v->head_acc[0] = v->accuracy;
    }
    if (m->has_lm_head && td->n_test >= 2) {
        qq_progress(s, "%s: perplexity on the test text (%zu tokens)", path, td->n_test);
        qr_ppl_result ppl;
        if ((st = qr_eval_perplexity(r, td->test_ids, td->n_test, TEST_WINDOW, TEST_BATCH, NULL, NULL, &ppl, err)))
            goto out;
        v->lm = true;
        v->ppl = ppl.ppl;
    }
    /* The other heads that have test sentences, one after the other. */
    for (size_t h = 1; h < QQ_HEADS_MAX && h < m->head_info.n; h++) {
        if (!td->n_head_items[h])
            continue;
        qq_progress(s, "%s: accuracy of task %s on its test sentences (%zu)", path, m->head_info.heads[h].name,
                    td->n_head_items[h]);
        qr_acc_result a;
        if ((st = qr_eval_accuracy_head(r, h, td->head_items[h], td->n_head_items[h], TEST_BATCH, NULL, NULL, NULL,
                                        NULL, &a, err)))
            goto out;
        v->head_ok[h] = true;
        v->head_acc[h] = a.accuracy;
    }
    qq_progress(s, "%s: decode speed", path);
    if ((st = decode_speed(m, s->pool, &v->tps, &v->firing, err)))
        goto out;
    qr_energy e;
    qr_energy_options eo = {v->firing, m->has_lm_head, NULL};
    if ((st = qr_energy_per_token(m, &eo, &e, err)))
        goto out;
    v->energy_pj = e.pj_total;
out:
    qr_runner_free(r);
    qr_model_free(m);
    qr_model_file_close(f);
    return st;
}

/* Budget list "4M,8M,..." into sizes (and their text, for names). */
static size_t parse_budgets(const char *list, uint64_t *sizes, char (*labels)[32], size_t cap)
{
    char buf[1024];
    snprintf(buf, sizeof buf, "%s", list);
    size_t n = 0;
    for (char *save = NULL, *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        qi_error err;
        if (n == cap) {
            fprintf(stderr, "qslm-quant: --budgets: at most %zu budgets\n", cap);
            return 0;
        }
        if (strlen(tok) >= 32 || qi_parse_memory(tok, strlen(tok), NULL, &sizes[n], &err) != QI_OK) {
            fprintf(stderr, "qslm-quant: --budgets: '%s' %s\n", tok,
                    strlen(tok) >= 32 ? "is longer than 31 bytes" : err.msg);
            return 0;
        }
        snprintf(labels[n++], 32, "%s", tok);
    }
    return n;
}

int qq_cmd_build(const qq_options *o)
{
    uint64_t budgets[64];
    char labels[64][32];
    size_t n_budgets = o->budgets ? parse_budgets(o->budgets, budgets, labels, 64) : 0;
    if (!n_budgets) {
        if (!o->budgets)
            fprintf(stderr, "qslm-quant: build needs --budgets LIST (e.g. 4M,8M,16M,32M)\n");
        return EXIT_USAGE;
    }
    if (!o->out) {
        fprintf(stderr, "qslm-quant: build needs -o DIR\n");
        return EXIT_USAGE;
    }
    /* Smallest budget first, so a larger one can reuse what a smaller one found. */
    for (size_t i = 1; i < n_budgets; i++)
        for (size_t j = i; j > 0 && budgets[j] < budgets[j - 1]; j--) {
            uint64_t t = budgets[j];
            budgets[j] = budgets[j - 1];
            budgets[j - 1] = t;
            char l[32];
            memcpy(l, labels[j], sizeof l);
            memcpy(labels[j], labels[j - 1], sizeof l);
            memcpy(labels[j - 1], l, sizeof l);
        }
    if (mkdir(o->out, 0755) != 0 && errno != EEXIST) {
        fprintf(stderr, "qslm-quant: %s: cannot create: %s\n", o->out, strerror(errno));
        return EXIT_USAGE;
    }
    qq_session s;
    int rc = qq_session_open(o, &s);
    if (rc)
        return rc;
    qq_test_data td = {0};
    qr_error err;
    qq_search_ctx ctx;
    qr_bundle b = {0};
    qr_bundle_variant variants[64];
    qr_bundle_infeasible infeasible[64];
    uint32_t *kept_types[64] = {NULL};
    memset(variants, 0, sizeof variants);
    memset(infeasible, 0, sizeof infeasible);
    char model_base[256], *path_copy = strdup(o->model_path);
    snprintf(model_base, sizeof model_base, "%s", path_copy ? basename(path_copy) : "model.qslm");
    free(path_copy);
    char stem[256];
    snprintf(stem, sizeof stem, "%s", model_base);
    char *dot = strrchr(stem, '.');
    if (dot && strcmp(dot, ".qslm") == 0)
        *dot = '\0';
    rc = EXIT_FAIL;
    if (qq_load_test(o, &s, &td))
        goto out;
    if (qq_search_context(&s, o, &ctx, &err)) {
        fprintf(stderr, "qslm-quant: %s\n", err.msg);
        goto out;
    }
    const char *name;
    uint64_t name_len;
    b.model_name = qr_model_file_get_blob(s.master, "general.name", &name, &name_len, &err) == QR_OK && name
                       ? strdup(name)
                       : strdup(stem);
    b.source_file = strdup(model_base);
    snprintf(b.source_sha256, sizeof b.source_sha256, "%s", s.model_sha256);
    b.created_by = strdup("qslm-quant 0.1.0");
    b.created = created_now();
    b.variants = variants;
    b.infeasible = infeasible;
    printf("| budget | variant | served | vs f32 | bits/w | tier | test ppl | accuracy | tokens/s | energy/token |\n"
           "|---|---|---|---|---|---|---|---|---|---|\n");
    char f32size[32];
    qq_format_size(s.costs.f32_footprint, f32size, sizeof f32size);
    double budgets_start = qq_now();
    for (size_t i = 0; i < n_budgets; i++) {
        qq_constraints c = {budgets[i], o->floors, o->lambda, o->max_tier};
        qq_name_heads(&s, &c.floors);
        qq_result res;
        fprintf(stderr, "qslm-quant: [%6.1f s] budget %s\n", qq_now() - s.start, labels[i]);
        set_stage(&s, i, n_budgets, budgets_start);
        qq_progress(&s, "searching for %s", labels[i]);
        if (qq_search(&ctx, &c, &res, &err)) {
            qq_progress_done(&s);
            fprintf(stderr, "qslm-quant: %s\n", err.msg);
            goto out;
        }
        char bsz[32];
        /* A larger budget can always serve a variant a smaller one already has: the search starts
         * afresh per budget and may find nothing within the floors where a smaller budget did. */
        size_t fits = b.n_variants;
        for (size_t k = 0; !res.feasible && k < b.n_variants; k++)
            if (variants[k].footprint_bytes <= budgets[i] && (fits == b.n_variants || variants[k].footprint_bytes > variants[fits].footprint_bytes))
                fits = k;
        if (!res.feasible && fits < b.n_variants) {
            qq_progress_done(&s);
            printf("| %s | same setting as %s (nothing better within the floors found) | | | | | | | | |\n", labels[i],
                   variants[fits].name);
            fflush(stdout);
            qq_result_free(&res);
            continue;
        }
        if (!res.feasible) {
            qq_progress_done(&s);
            infeasible[b.n_infeasible].budget_bytes = budgets[i];
            infeasible[b.n_infeasible++].reason = strdup(res.reason);
            printf("| %s | infeasible: %s | | | | | | | | |\n", labels[i], res.reason);
            fflush(stdout);
            qq_result_free(&res);
            continue;
        }
        /* A larger budget whose best setting is one already written adds nothing to serve. */
        size_t same = b.n_variants;
        for (size_t k = 0; k < b.n_variants; k++)
            if (kept_types[k] && memcmp(kept_types[k], res.types, s.costs.n_tensors * sizeof *res.types) == 0)
                same = k;
        if (same < b.n_variants) {
            qq_progress_done(&s);
            printf("| %s | same setting as %s (not written twice) | | | | | | | | |\n", labels[i], variants[same].name);
            fflush(stdout);
            qq_result_free(&res);
            continue;
        }
        qr_bundle_variant *v = &variants[b.n_variants];
        char vname[64], fname[300], path[4400];
        snprintf(vname, sizeof vname, "%.31s", labels[i]);
        snprintf(fname, sizeof fname, "%.200s-%.31s.qslm", stem, labels[i]);
        snprintf(path, sizeof path, "%s/%s", o->out, fname);
        qq_progress(&s, "budget %s: writing %s", labels[i], path);
        variant_figures fig;
        qq_measurer_drop_copies(s.meas); /* the writer and the variant need none: memory for them */
        if (qq_measurer_write_setting(s.meas, res.types, path, &err) ||
            measure_variant(path, &s, &td, o->serve_batch, &fig, &err)) {
            qq_progress_done(&s);
            fprintf(stderr, "qslm-quant: %s\n", err.msg);
            qq_result_free(&res);
            goto out;
        }
        qq_progress_done(&s);
        fprintf(stderr, "qslm-quant: [%6.1f s] budget %s: %s written and measured\n", qq_now() - s.start, labels[i], fname);
        if (fig.footprint > budgets[i]) { /* the estimate was short: say so, do not ship it */
            remove(path);
            char why[256];
            snprintf(why, sizeof why, "the setting found is served in %llu bytes, over the budget (estimate %llu)",
                     (unsigned long long)fig.footprint, (unsigned long long)res.footprint_est);
            infeasible[b.n_infeasible].budget_bytes = budgets[i];
            infeasible[b.n_infeasible++].reason = strdup(why);
            printf("| %s | infeasible: %s | | | | | | | | |\n", labels[i], why);
            qq_result_free(&res);
            continue;
        }
        v->name = strdup(vname);
        v->file = strdup(fname);
        snprintf(v->sha256, sizeof v->sha256, "%s", fig.sha256);
        v->file_bytes = fig.file_bytes;
        v->footprint_bytes = fig.footprint;
        v->has_budget = true;
        v->budget_bytes = budgets[i];
        v->bits_per_weight = qq_setting_bits_per_weight(&s.costs, res.types);
        v->setting = calloc(s.costs.n_tensors, sizeof *v->setting);
        for (size_t t = 0; v->setting && t < s.costs.n_tensors; t++)
            if (s.costs.is_matrix[t])
                v->setting[v->n_setting++] = (qr_bundle_setting){strdup(qr_model_file_tensor(s.master, t)->name), res.types[t]};
        v->metrics.ppl_test = (qr_bundle_metric){fig.lm, fig.ppl};
        v->metrics.ppl_valid = (qr_bundle_metric){res.valid.lm, res.valid.ppl};
        v->metrics.accuracy = (qr_bundle_metric){fig.cls, fig.accuracy};
        if (s.n_heads && !s.head_legacy) { /* every named head; null when it had no data set */
            v->metrics.by_task = calloc(s.n_heads, sizeof *v->metrics.by_task);
            for (size_t h = 0; v->metrics.by_task && h < s.n_heads; h++) {
                v->metrics.by_task[h] = (qr_bundle_task_metric){strdup(s.head_task[h]), {fig.head_ok[h], fig.head_acc[h]}};
                v->metrics.n_by_task++;
                if (h && fig.head_ok[h])
                    fprintf(stderr, "qslm-quant: budget %s: task %s: test accuracy %.1f%%\n", labels[i], s.head_task[h],
                            100.0 * fig.head_acc[h]);
            }
        }
        v->metrics.tokens_per_s = (qr_bundle_metric){true, fig.tps};
        v->metrics.energy_pj_per_token = (qr_bundle_metric){true, fig.energy_pj};
        kept_types[b.n_variants] = res.types;
        res.types = NULL;
        b.n_variants++;
        printf("| %s | %s | %s | %.1f%% smaller | %.2f | %s | %.3f | %.1f%% | %.0f | %.3g µJ |\n", labels[i], fname,
               qq_format_size(fig.footprint, bsz, sizeof bsz), 100.0 * (1.0 - (double)fig.footprint / (double)s.costs.f32_footprint),
               v->bits_per_weight, res.tier, fig.ppl, 100.0 * fig.accuracy, fig.tps, fig.energy_pj / 1e6);
        fflush(stdout);
        qq_result_free(&res);
    }
    if (b.n_variants == 0) {
        fprintf(stderr, "qslm-quant: no budget has a feasible setting; nothing written to %s\n", o->out);
        goto out;
    }
    if (qr_bundle_write(&b, o->out, &err)) {
        fprintf(stderr, "qslm-quant: %s\n", err.msg);
        goto out;
    }
    printf("\nf32 model served: %s. Wrote %s/%s: %zu variant%s, %zu infeasible budget%s; %.1f s\n", f32size, o->out,
           QR_BUNDLE_MANIFEST, b.n_variants, b.n_variants == 1 ? "" : "s", b.n_infeasible,
           b.n_infeasible == 1 ? "" : "s", qq_now() - s.start);
    rc = b.n_infeasible ? EXIT_FAIL : 0;
out:
    for (size_t i = 0; i < b.n_variants; i++) {
        free(kept_types[i]);
        for (size_t t = 0; t < variants[i].n_setting; t++)
            free(variants[i].setting[t].tensor);
        free(variants[i].setting);
        for (size_t t = 0; t < variants[i].metrics.n_by_task; t++)
            free(variants[i].metrics.by_task[t].task);
        free(variants[i].metrics.by_task);
        free(variants[i].name);
        free(variants[i].file);
    }
    for (size_t i = 0; i < b.n_infeasible; i++)
        free(infeasible[i].reason);
    free(b.model_name);
    free(b.source_file);
    free(b.created_by);
    free(b.created);
    qq_test_data_free(&td);
    qq_session_close(&s);
    return rc;
}
