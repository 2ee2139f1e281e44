/* session.c: loading the model and the data every measuring subcommand needs. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "local.h"
#include "dataset.h"
#include "model.h"
#include "sha256.h"
#include "tensor_types.h"

double qq_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

const char *qq_format_size(uint64_t bytes, char *buf, size_t cap)
{
    if (bytes >= (uint64_t)1 << 30)
        snprintf(buf, cap, "%.2f GiB", (double)bytes / (double)((uint64_t)1 << 30));
    else if (bytes >= (uint64_t)1 << 20)
        snprintf(buf, cap, "%.2f MiB", (double)bytes / (double)((uint64_t)1 << 20));
    else if (bytes >= 1024)
        snprintf(buf, cap, "%.1f KiB", (double)bytes / 1024.0);
    else
        snprintf(buf, cap, "%llu B", (unsigned long long)bytes);
    return buf;
}

void qq_progress(qq_session *s, const char *fmt, ...)
{
    if (!s->tty)
        return;
    char line[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\r\033[K[%6.1f s] %s%s%s", qq_now() - s->start, s->stage, s->stage[0] ? ": " : "", line);
    fflush(stderr);
}

void qq_progress_done(qq_session *s)
{
    if (s->tty)
        fprintf(stderr, "\r\033[K");
}

static void on_sensitivity(void *ctx, const char *unit, uint32_t type, const qq_sens *v, size_t measured)
{
    qq_progress(ctx, "sensitivity: %zu measured; %s as %s: KL %.5f", measured, unit,
                qr_type_get(type)->name, v->damage);
}

static char *data_path(const char *dir, const char *given, const char *rel)
{
    if (given)
        return strdup(given);
    size_t n = strlen(dir) + strlen(rel) + 2;
    char *p = malloc(n);
    if (p)
        snprintf(p, n, "%s/%s", dir, rel);
    return p;
}

/* Checks every --classify TASK=DIR against the master's heads (a task it does not have is named,
 * with the ones it has) and keeps the heads' names for reports. */
static int check_classify(const qq_options *o, qq_session *s, const qr_model *m)
{
    s->n_heads = m->head_info.n < QQ_HEADS_MAX ? m->head_info.n : QQ_HEADS_MAX;
    s->head_legacy = m->head_info.legacy;
    for (size_t h = 0; h < s->n_heads; h++)
        snprintf(s->head_task[h], sizeof s->head_task[h], "%s", m->head_info.heads[h].name);
    for (size_t i = 0; i < o->n_classify; i++) {
        const char *spec = o->classify[i], *eq = strchr(spec, '=');
        if (!eq || eq == spec || !eq[1]) {
            fprintf(stderr, "qslm-quant: --classify '%s': expected TASK=DIR\n", spec);
            return -1;
        }
        char task[QR_TASK_NAME_MAX + 2];
        snprintf(task, sizeof task, "%.*s", (int)(eq - spec < QR_TASK_NAME_MAX + 1 ? eq - spec : QR_TASK_NAME_MAX + 1), spec);
        int h = qr_model_task(m, task);
        if (h < 0) {
            char tasks[QQ_HEADS_MAX * (QR_TASK_NAME_MAX + 2) + 1] = "";
            size_t used = 0;
            for (size_t k = 0; k < s->n_heads; k++)
                used += (size_t)snprintf(tasks + used, sizeof tasks - used, "%s%s", k ? ", " : "", s->head_task[k]);
            fprintf(stderr, "qslm-quant: --classify: %s has no task '%s' (its tasks: %s)\n", o->model_path, task,
                    s->n_heads ? tasks : "none");
            return -1;
        }
        for (size_t j = 0; j < i; j++)
            if (strncmp(o->classify[j], spec, (size_t)(eq - spec) + 1) == 0) {
                fprintf(stderr, "qslm-quant: --classify: task '%s' given twice\n", task);
                return -1;
            }
    }
    return 0;
}

void qq_name_heads(const qq_session *s, qq_floors *f)
{
    for (size_t h = 0; h < s->n_heads; h++)
        f->head_names[h] = s->head_task[h];
}

const char *qq_classify_dir(const qq_options *o, const qq_session *s, size_t head)
{
    if (head >= s->n_heads)
        return NULL;
    size_t n = strlen(s->head_task[head]);
    for (size_t i = 0; i < o->n_classify; i++)
        if (strncmp(o->classify[i], s->head_task[head], n) == 0 && o->classify[i][n] == '=')
            return o->classify[i] + n + 1;
    return NULL;
}

/* DIR/NAME into a new string. */
static char *join(const char *dir, const char *name)
{
    return data_path(dir, NULL, name);
}

/* The default cache folder, created if needed: $XDG_CACHE_HOME/qslm or ~/.cache/qslm. */
/* The cache folder (made if missing): --cache, $XDG_CACHE_HOME/qslm or ~/.cache/qslm. */
static int cache_dir(const qq_options *o, char *dir, size_t cap)
{
    const char *xdg = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
    if (o->cache_dir)
        snprintf(dir, cap, "%s", o->cache_dir);
    else if (xdg && *xdg)
        snprintf(dir, cap, "%s/qslm", xdg);
    else if (home && *home) {
        snprintf(dir, cap, "%s/.cache", home);
        mkdir(dir, 0755);
        snprintf(dir, cap, "%s/.cache/qslm", home);
    } else
        return -1;
    if (mkdir(dir, 0755) != 0 && errno != EEXIST) {
        fprintf(stderr, "qslm-quant: %s: cannot create the cache folder: %s\n", dir, strerror(errno));
        return -1;
    }
    return 0;
}

static int cache_file(const qq_options *o, const qq_session *s, char *path, size_t cap)
{
    char dir[3072];
    if (cache_dir(o, dir, sizeof dir))
        return -1;
    snprintf(path, cap, "%s/sensitivity-%.16s.jsonl", dir, s->model_sha256);
    return 0;
}

/* Every matrix of the master must be f32: QSLM quantizes from full precision. */
static int check_master(const qr_model_file *f)
{
    for (size_t i = 0; i < qr_model_file_tensor_count(f); i++) {
        const qr_tensor_info *t = qr_model_file_tensor(f, i);
        if (t->type != QR_TYPE_F32) {
            fprintf(stderr, "qslm-quant: %s: tensor '%s' is stored as %s; QSLM starts from an all-f32 model\n",
                    qr_model_file_path(f), t->name, qr_type_get(t->type)->name);
            return -1;
        }
    }
    return 0;
}

int qq_session_open(const qq_options *o, qq_session *s)
{
    memset(s, 0, sizeof *s);
    s->tty = isatty(STDERR_FILENO) && !o->json;
    s->start = qq_now();
    qr_error err;
    const char *dir = o->data_dir ? o->data_dir : getenv("QSLM_DATA_DIR") ? getenv("QSLM_DATA_DIR") : ".data";
    char *ct = data_path(dir, o->calib_text, "sotu/train.txt"), *cl = data_path(dir, o->calib_labels, "sentiment/fit.jsonl");
    char *vt = data_path(dir, o->valid_text, "sotu/valid.txt"), *vl = data_path(dir, o->valid_labels, "sentiment/heldout.jsonl");
    int rc = EXIT_USAGE;
    const char *json;
    uint64_t json_len;
    if (!ct || !cl || !vt || !vl) {
        fprintf(stderr, "qslm-quant: out of memory\n");
        goto out;
    }
    uint8_t digest[QR_SHA256_BYTES];
    if (qr_model_file_open(o->model_path, &s->master, &err) ||
        qr_sha256_file(o->model_path, digest, NULL, &err)) {
        fprintf(stderr, "qslm-quant: %s\n", err.msg);
        goto out;
    }
    qr_sha256_to_hex(digest, s->model_sha256);
    if (check_master(s->master))
        goto out;
    if (qr_model_file_get_blob(s->master, "tokenizer.json", &json, &json_len, &err) || !json) {
        fprintf(stderr, "qslm-quant: %s: the model file embeds no tokenizer (tokenizer.json)\n", o->model_path);
        goto out;
    }
    qr_model *m = NULL;
    if (qr_tokenizer_load_hf_json(json, (size_t)json_len, o->model_path, &s->tok, &err) ||
        qr_model_bind(s->master, &m, &err) || qq_hierarchy_build(s->master, &s->h, &err)) {
        fprintf(stderr, "qslm-quant: %s\n", err.msg);
        qr_model_free(m);
        goto out;
    }
    size_t vocab = m->vocab, classes = m->n_classes, head_classes[QQ_HEADS_MAX] = {0};
    bool lm = m->has_lm_head;
    int bad = check_classify(o, s, m);
    for (size_t h = 0; h < s->n_heads; h++)
        head_classes[h] = m->cls[h].n_classes;
    qr_model_free(m);
    if (bad)
        goto out;
    const char *d0 = qq_classify_dir(o, s, 0);
    if (d0) { /* --classify FIRST_TASK=DIR stands for --calib-labels and --valid-labels */
        free(cl);
        free(vl);
        cl = join(d0, "fit.jsonl");
        vl = join(d0, "heldout.jsonl");
        if (!cl || !vl) {
            fprintf(stderr, "qslm-quant: out of memory\n");
            goto out;
        }
    }
    for (size_t h = 1; h < s->n_heads; h++) {
        const char *dir_h = qq_classify_dir(o, s, h);
        if (!dir_h)
            continue;
        char *path = join(dir_h, "heldout.jsonl");
        size_t total;
        if (!path || qr_labels_load(path, s->tok, vocab, head_classes[h], &s->head_valid[h], &s->n_head_valid[h],
                                    &total, &err)) {
            fprintf(stderr, "qslm-quant: %s\n", path ? err.msg : "out of memory");
            free(path);
            goto out;
        }
        free(path);
    }
    size_t bytes;
    if (lm) {
        qq_progress(s, "reading %s and %s", ct, vt);
        if (qr_text_load(ct, s->tok, vocab, &s->calib_ids, &s->n_calib, &bytes, &err) ||
            qr_text_load(vt, s->tok, vocab, &s->valid_ids, &s->n_valid, &bytes, &err)) {
            fprintf(stderr, "qslm-quant: %s\n", err.msg);
            goto out;
        }
        /* Calibration: the last tokens of the training text; validation: the first ones. */
        size_t nc = s->n_calib < o->calib_tokens ? s->n_calib : o->calib_tokens;
        s->calib = (qq_split){s->calib_ids + (s->n_calib - nc), nc, NULL, 0, o->calib_window};
        s->valid = (qq_split){s->valid_ids, s->n_valid < o->valid_tokens ? s->n_valid : o->valid_tokens, NULL, 0, o->window};
    }
    if (classes) {
        size_t total;
        if (qr_labels_load(cl, s->tok, vocab, classes, &s->calib_items, &s->n_calib_items, &total, &err) ||
            qr_labels_load(vl, s->tok, vocab, classes, &s->valid_items, &s->n_valid_items, &total, &err)) {
            fprintf(stderr, "qslm-quant: %s\n", err.msg);
            goto out;
        }
        s->calib.items = s->calib_items;
        s->calib.n_items = s->n_calib_items < o->calib_items ? s->n_calib_items : o->calib_items;
        s->valid.items = s->valid_items;
        s->valid.n_items = s->n_valid_items;
    }
    for (size_t h = 1; h < s->n_heads; h++) /* set here: the split is assembled above */
        s->valid.heads[h] = (qq_head_items){s->head_valid[h], s->n_head_valid[h]};
    rc = EXIT_FAIL;
    qq_progress(s, "running the f32 model on the calibration split");
    double t0 = qq_now();
    if (qr_pool_new(o->threads, &s->pool, &err) || qq_costs_new(s->master, o->serve_batch, &s->costs, &err) ||
        qq_measurer_new(s->master, s->pool, &s->calib, o->calib_window, o->batch, &s->meas, &err)) {
        fprintf(stderr, "qslm-quant: %s\n", err.msg);
        goto out;
    }
    s->reference_s = s->calib_pass_s = qq_now() - t0;
    if (lm && o->ec_tokens) {
        size_t ne = s->n_calib < o->ec_tokens ? s->n_calib : o->ec_tokens;
        qq_progress(s, "gathering the matrices' input statistics on %zu tokens (error-compensating rounding)", ne);
        t0 = qq_now();
        /* The factors are spilled to the cache folder (an unlinked file, gone at exit) even with
         * --no-cache, which keeps no result. */
        char spill[3072];
        bool can_spill = cache_dir(o, spill, sizeof spill) == 0;
        if (qq_measurer_gather_hessians(s->meas, s->calib_ids + (s->n_calib - ne), ne, o->ec_damp,
                                        can_spill ? spill : NULL, &err)) {
            fprintf(stderr, "qslm-quant: %s\n", err.msg);
            goto out;
        }
        s->reference_s += qq_now() - t0;
    }
    /* The cache key: the model's bytes, exactly which calibration data measured them and how
     * the quantizer rounds. */
    char key[QQ_SENS_KEY_SIZE], cpath[4096];
    bool use_cache = !o->no_cache && cache_file(o, s, cpath, sizeof cpath) == 0;
    if (qq_sensitivity_key(s->model_sha256, &s->calib, o->calib_window, key, &err) ||
        (lm && o->ec_tokens && qq_sensitivity_key_append(key, &err, "ec %zu %.17g", o->ec_tokens, o->ec_damp)) ||
        qq_sensitivity_new(s->meas, s->master, &s->h, use_cache ? cpath : NULL, key, on_sensitivity, s,
                           &s->sens, &err)) {
        fprintf(stderr, "qslm-quant: %s\n", err.msg);
        goto out;
    }
    rc = 0;
out:
    free(ct);
    free(cl);
    free(vt);
    free(vl);
    if (rc)
        qq_session_close(s);
    return rc;
}

void qq_session_close(qq_session *s)
{
    qq_local_free(s->local);
    qq_sensitivity_free(s->sens);
    qq_measurer_free(s->meas);
    qq_costs_free(&s->costs);
    qr_pool_free(s->pool);
    free(s->calib_ids);
    free(s->valid_ids);
    qr_labels_free(s->calib_items, s->n_calib_items);
    qr_labels_free(s->valid_items, s->n_valid_items);
    for (size_t h = 0; h < QQ_HEADS_MAX; h++)
        qr_labels_free(s->head_valid[h], s->n_head_valid[h]);
    qq_hierarchy_free(&s->h);
    qr_tokenizer_free(s->tok);
    qr_model_file_close(s->master);
    memset(s, 0, sizeof *s);
}

int qq_load_test(const qq_options *o, qq_session *s, qq_test_data *td)
{
    const char *dir = o->data_dir ? o->data_dir : getenv("QSLM_DATA_DIR") ? getenv("QSLM_DATA_DIR") : ".data";
    char tt[4096], tl[4096];
    const char *d0 = qq_classify_dir(o, s, 0);
    snprintf(tt, sizeof tt, "%s%s%s", o->test_text ? "" : dir, o->test_text ? "" : "/", o->test_text ? o->test_text : "sotu/test.txt");
    if (d0)
        snprintf(tl, sizeof tl, "%s/test.jsonl", d0);
    else
        snprintf(tl, sizeof tl, "%s%s%s", o->test_labels ? "" : dir, o->test_labels ? "" : "/",
                 o->test_labels ? o->test_labels : "sentiment/test.jsonl");
    qr_error err;
    qr_model *m = NULL;
    if (qr_model_bind(s->master, &m, &err)) {
        fprintf(stderr, "qslm-quant: %s\n", err.msg);
        return -1;
    }
    size_t total;
    int rc = 0;
    if ((m->has_lm_head && qr_text_load(tt, s->tok, m->vocab, &td->test_ids, &td->n_test, NULL, &err)) ||
        (m->n_classes && qr_labels_load(tl, s->tok, m->vocab, m->n_classes, &td->test_items, &td->n_test_items,
                                        &total, &err))) {
        fprintf(stderr, "qslm-quant: %s\n", err.msg);
        rc = -1;
    }
    /* Every other head that --classify gave a folder: its test sentences. */
    for (size_t h = 1; rc == 0 && h < s->n_heads && h < m->head_info.n; h++) {
        const char *dh = qq_classify_dir(o, s, h);
        if (!dh)
            continue;
        snprintf(tl, sizeof tl, "%s/test.jsonl", dh);
        if (qr_labels_load(tl, s->tok, m->vocab, m->cls[h].n_classes, &td->head_items[h], &td->n_head_items[h], &total,
                           &err)) {
            fprintf(stderr, "qslm-quant: %s\n", err.msg);
            rc = -1;
        }
    }
    qr_model_free(m);
    return rc;
}

void qq_test_data_free(qq_test_data *td)
{
    free(td->test_ids);
    qr_labels_free(td->test_items, td->n_test_items);
    for (size_t h = 0; h < QQ_HEADS_MAX; h++)
        qr_labels_free(td->head_items[h], td->n_head_items[h]);
    memset(td, 0, sizeof *td);
}
