/* heads.c: reading the classification heads' names and labels from a model file's metadata
 * (FORMAT.md "Classification heads"). Tensors are not touched here. */
#include "heads.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "unicode.h"

typedef struct {
    qr_head_info heads[QR_HEADS_MAX];
    char names[QR_HEADS_MAX][QR_TASK_NAME_MAX + 1];
    const char **labels[QR_HEADS_MAX];
    char *text[QR_HEADS_MAX];   /* the labels, NUL-separated */
} heads_store;

const char *qr_head_tensor_name(size_t head, bool bias, char *buf, size_t cap)
{
    const char *part = bias ? "bias" : "weight";
    if (head == 0)
        snprintf(buf, cap, "cls.%s", part);
    else
        snprintf(buf, cap, "cls.%zu.%s", head, part);
    return buf;
}

int qr_head_tensor_index(const char *name, bool *bias)
{
    for (size_t i = 0; i < QR_HEADS_MAX; i++)
        for (int b = 0; b < 2; b++) {
            char n[32];
            if (strcmp(name, qr_head_tensor_name(i, b, n, sizeof n)) == 0) {
                *bias = b;
                return (int)i;
            }
        }
    return -1;
}

/* A task name: 1..QR_TASK_NAME_MAX bytes of a-z 0-9 _ -, so it is safe in a command line, a
 * JSON key and a log line without quoting. */
static bool good_task_name(const char *s, size_t len)
{
    if (len == 0 || len > QR_TASK_NAME_MAX)
        return false;
    for (size_t i = 0; i < len; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '_' || s[i] == '-'))
            return false;
    return true;
}

/* Why a label is refused, or NULL: 1..QR_LABEL_MAX bytes of UTF-8 without control characters. */
static const char *bad_label(const unsigned char *s, size_t len)
{
    if (len == 0)
        return "is empty";
    if (len > QR_LABEL_MAX)
        return "is longer than 64 bytes";
    /* Labels are shown to people and sent in JSON, so a bad byte is refused here. */
    for (size_t i = 0; i < len;) {
        uint32_t cp;
        int k = qr_utf8_scan(s + i, len - i, &cp);
        if (k <= 0) /* not well-formed, or cut short by the label's end */
            return "is not valid UTF-8";
        if (k == 1 && (s[i] < 0x20 || s[i] == 0x7f))
            return "holds a control character";
        i += k;
    }
    return NULL;
}

/* Splits head i's labels text (one label per line, '\n' between them) into st->labels[i]. */
static qr_status split_labels(const qr_model_file *mf, heads_store *st, size_t i, const char *key,
                              const char *text, size_t len, qr_error *err)
{
    const char *path = qr_model_file_path(mf);
    size_t n = 1;
    for (size_t j = 0; j < len; j++)
        n += text[j] == '\n';
    if (n > QR_CLASSES_MAX)
        return qr_fail(err, QR_ERR_FORMAT, "%s: metadata '%s' has %zu labels (at most %d)", path, key, n,
                       QR_CLASSES_MAX);
    char *copy = malloc(len + 1);
    const char **labels = malloc(n * sizeof *labels);
    st->text[i] = copy;
    st->labels[i] = labels;
    if (!copy || !labels)
        return qr_fail(err, QR_ERR_NOMEM, "%s: out of memory reading '%s'", path, key);
    memcpy(copy, text, len);
    copy[len] = '\0';
    size_t k = 0;
    for (char *p = copy;; k++) {
        char *nl = strchr(p, '\n');
        if (nl)
            *nl = '\0';
        const char *why = bad_label((const unsigned char *)p, strlen(p));
        if (why)
            return qr_fail(err, QR_ERR_FORMAT, "%s: metadata '%s': label %zu %s", path, key, k, why);
        for (size_t j = 0; j < k; j++)
            if (strcmp(labels[j], p) == 0)
                return qr_fail(err, QR_ERR_FORMAT, "%s: metadata '%s': labels %zu and %zu are both '%s'",
                               path, key, j, k, p);
        labels[k] = p;
        if (!nl)
            break;
        p = nl + 1;
    }
    st->heads[i].labels = labels;
    st->heads[i].n_classes = n;
    return QR_OK;
}

/* A string value that must be there. */
static qr_status need_string(const qr_model_file *mf, const char *key, const char **s, size_t *len,
                             qr_error *err)
{
    const qr_meta_entry *e = qr_model_file_meta(mf, key);
    if (!e)
        return qr_fail(err, QR_ERR_FORMAT, "%s: metadata '%s' is missing (head.n_tasks says the head exists)",
                       qr_model_file_path(mf), key);
    if (e->type != QR_META_STRING)
        return qr_fail(err, QR_ERR_FORMAT, "%s: metadata '%s' must be a string", qr_model_file_path(mf), key);
    *s = e->str;
    *len = (size_t)e->len;
    return QR_OK;
}

/* Old files: head.n_classes classes, one task "default", labels "0", "1", ... */
static qr_status read_legacy(const qr_model_file *mf, heads_store *st, uint64_t classes, qr_error *err)
{
    char key[] = "head.task.0.name";
    if (qr_model_file_meta(mf, key))
        return qr_fail(err, QR_ERR_FORMAT, "%s: metadata '%s' without head.n_tasks", qr_model_file_path(mf), key);
    if (classes == 0)
        return QR_OK;
    if (classes > QR_CLASSES_MAX)
        return qr_fail(err, QR_ERR_FORMAT, "%s: head.n_classes %llu is out of range (at most %d)",
                       qr_model_file_path(mf), (unsigned long long)classes, QR_CLASSES_MAX);
    char *text = malloc((size_t)classes * 6);
    if (!text)
        return qr_fail(err, QR_ERR_NOMEM, "%s: out of memory", qr_model_file_path(mf));
    size_t len = 0;
    for (uint64_t c = 0; c < classes; c++)
        len += (size_t)sprintf(text + len, "%s%llu", c ? "\n" : "", (unsigned long long)c);
    snprintf(st->names[0], sizeof st->names[0], "%s", QR_LEGACY_TASK);
    st->heads[0].name = st->names[0];
    qr_status s = split_labels(mf, st, 0, "head.n_classes", text, len, err);
    free(text);
    return s;
}

static qr_status read_heads(const qr_model_file *mf, heads_store *st, size_t *n_out, bool *legacy,
                            qr_error *err)
{
    const char *path = qr_model_file_path(mf);
    uint64_t classes, n;
    qr_status s;
    if ((s = qr_model_file_get_u64(mf, "head.n_classes", 0, &classes, err)))
        return s;
    *legacy = !qr_model_file_meta(mf, "head.n_tasks");
    if (*legacy) {
        *n_out = classes ? 1 : 0;
        return read_legacy(mf, st, classes, err);
    }
    if ((s = qr_model_file_get_u64(mf, "head.n_tasks", 0, &n, err)))
        return s;
    if (n > QR_HEADS_MAX)
        return qr_fail(err, QR_ERR_FORMAT, "%s: head.n_tasks is %llu (at most %d)", path,
                       (unsigned long long)n, QR_HEADS_MAX);
    for (size_t i = 0; i < n; i++) {
        char key[64];
        const char *v;
        size_t len;
        snprintf(key, sizeof key, "head.task.%zu.name", i);
        if ((s = need_string(mf, key, &v, &len, err)))
            return s;
        if (!good_task_name(v, len))
            return qr_fail(err, QR_ERR_FORMAT, "%s: metadata '%s': a task name is 1..%d characters of a-z 0-9 _ -",
                           path, key, QR_TASK_NAME_MAX);
        memcpy(st->names[i], v, len);
        st->names[i][len] = '\0';
        st->heads[i].name = st->names[i];
        for (size_t j = 0; j < i; j++)
            if (strcmp(st->names[j], st->names[i]) == 0)
                return qr_fail(err, QR_ERR_FORMAT, "%s: heads %zu and %zu are both named '%s'", path, j, i,
                               st->names[i]);
        snprintf(key, sizeof key, "head.task.%zu.labels", i);
        if ((s = need_string(mf, key, &v, &len, err)) || (s = split_labels(mf, st, i, key, v, len, err)))
            return s;
        *n_out = i + 1;
    }
    *n_out = (size_t)n;
    /* head.n_classes stays for readers that know one head: it must be the first head's count. */
    if (qr_model_file_meta(mf, "head.n_classes") && classes != (n ? st->heads[0].n_classes : 0))
        return qr_fail(err, QR_ERR_FORMAT, "%s: head.n_classes is %llu but head 0 ('%s') has %zu labels", path,
                       (unsigned long long)classes, n ? st->names[0] : "none", n ? st->heads[0].n_classes : 0);
    return QR_OK;
}

qr_status qr_heads_read(const qr_model_file *mf, qr_heads *out, qr_error *err)
{
    memset(out, 0, sizeof *out);
    heads_store *st = calloc(1, sizeof *st);
    if (!st)
        return qr_fail(err, QR_ERR_NOMEM, "%s: out of memory", qr_model_file_path(mf));
    out->store = st;
    out->heads = st->heads;
    size_t n = 0;
    qr_status s = read_heads(mf, st, &n, &out->legacy, err);
    out->n = n;
    if (s)
        qr_heads_free(out);
    return s;
}

void qr_heads_free(qr_heads *h)
{
    heads_store *st = h->store;
    if (st)
        for (size_t i = 0; i < QR_HEADS_MAX; i++) {
            free(st->text[i]);
            free(st->labels[i]);
        }
    free(st);
    memset(h, 0, sizeof *h);
}

int qr_heads_find(const qr_heads *h, const char *task)
{
    for (size_t i = 0; i < h->n; i++)
        if (strcmp(h->heads[i].name, task) == 0)
            return (int)i;
    return -1;
}
