/* bundle_write.c: a qr_bundle as manifest.json text, and the manifest written into a bundle.
 *
 * The text is built as a json-c tree (json-c does the escaping) and printed pretty, keys in
 * schema order. Numbers are written in their shortest form that reads back to the same double,
 * so a manifest round-trips exactly and stays readable ("0.705", not "0.70499999999999996").
 * Before anything is returned, the text goes through the reader: the writer cannot produce a
 * manifest the reader refuses. */
#include "bundle.h"

#include <json.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "file_write.h"
#include "tensor_types.h"

/* Builds json-c values, remembering the first allocation failure so the tree can be built in
 * straight-line code and checked once. json-c would let a repeated key replace the earlier one,
 * so a setting naming a tensor twice is remembered too, to be refused. */
typedef struct {
    bool nomem;
    const char *dup_tensor; /* a tensor listed twice in one setting */
    size_t dup_variant;     /* in this variant */
} builder;

static json_object *checked(builder *bd, json_object *o)
{
    if (!o)
        bd->nomem = true;
    return o;
}

/* obj[key] = val; a NULL val is JSON null. A NULL obj failed to allocate (already noted). */
static void put(builder *bd, json_object *obj, const char *key, json_object *val)
{
    if (!obj || json_object_object_add(obj, key, val) != 0) {
        json_object_put(val);
        bd->nomem = bd->nomem || obj != NULL;
    }
}

static void append(builder *bd, json_object *arr, json_object *val)
{
    if (!arr || json_object_array_add(arr, val) != 0) {
        json_object_put(val);
        bd->nomem = bd->nomem || arr != NULL;
    }
}

/* A missing (NULL) string becomes JSON null, which the reader then refuses by its path. */
static json_object *str(builder *bd, const char *s)
{
    return s ? checked(bd, json_object_new_string(s)) : NULL;
}

static json_object *u64(builder *bd, uint64_t v)
{
    return checked(bd, json_object_new_uint64(v));
}

/* The shortest %.*g form of d that strtod reads back as d. Non-finite values are written as
 * the NaN and Infinity that json-c reads, so that the reader refuses them naming the field. */
static json_object *num(builder *bd, double d)
{
    char buf[40];
    if (d == 0.0)
        d = 0.0; /* -0 is written as 0, as the reader reads it */
    if (isnan(d) || isinf(d))
        snprintf(buf, sizeof buf, "%s", isnan(d) ? "NaN" : d > 0 ? "Infinity" : "-Infinity");
    else
        for (int prec = 1; prec <= 17; prec++) {
            snprintf(buf, sizeof buf, "%.*g", prec, d);
            if (strtod(buf, NULL) == d)
                break;
        }
    return checked(bd, json_object_new_double_s(d, buf));
}

static json_object *metric(builder *bd, qr_bundle_metric m)
{
    return m.known ? num(bd, m.value) : NULL;
}

static json_object *variant_json(builder *bd, const qr_bundle_variant *v, size_t index)
{
    json_object *o = checked(bd, json_object_new_object());
    put(bd, o, "name", str(bd, v->name));
    put(bd, o, "file", str(bd, v->file));
    put(bd, o, "sha256", str(bd, v->sha256));
    put(bd, o, "file_bytes", u64(bd, v->file_bytes));
    put(bd, o, "footprint_bytes", u64(bd, v->footprint_bytes));
    put(bd, o, "budget_bytes", v->has_budget ? u64(bd, v->budget_bytes) : NULL);
    put(bd, o, "bits_per_weight", num(bd, v->bits_per_weight));
    json_object *s = checked(bd, json_object_new_object());
    for (size_t i = 0; i < v->n_setting; i++) {
        const qr_type_info *t = qr_type_get(v->setting[i].type);
        const char *tensor = v->setting[i].tensor ? v->setting[i].tensor : "";
        if (s && json_object_object_get_ex(s, tensor, NULL) && !bd->dup_tensor) {
            bd->dup_tensor = tensor;
            bd->dup_variant = index;
        }
        /* An unknown code is written as "?": the reader refuses it, naming the tensor. */
        put(bd, s, tensor, checked(bd, json_object_new_string(t ? t->name : "?")));
    }
    put(bd, o, "setting", s);
    json_object *m = checked(bd, json_object_new_object());
    static const char *const names[] = {"ppl_test", "ppl_valid", "accuracy", "tokens_per_s",
                                        "energy_pj_per_token"};
    const qr_bundle_metric values[] = {v->metrics.ppl_test, v->metrics.ppl_valid, v->metrics.accuracy,
                                       v->metrics.tokens_per_s, v->metrics.energy_pj_per_token};
    for (size_t i = 0; i < 5; i++)
        put(bd, m, names[i], metric(bd, values[i]));
    if (v->metrics.n_by_task) {
        json_object *t = checked(bd, json_object_new_object());
        for (size_t i = 0; i < v->metrics.n_by_task; i++)
            put(bd, t, v->metrics.by_task[i].task ? v->metrics.by_task[i].task : "",
                metric(bd, v->metrics.by_task[i].accuracy));
        put(bd, m, "accuracy_by_task", t);
    }
    put(bd, o, "metrics", m);
    return o;
}

static json_object *bundle_json(builder *bd, const qr_bundle *b)
{
    json_object *root = checked(bd, json_object_new_object());
    put(bd, root, "format", str(bd, QR_BUNDLE_FORMAT));
    put(bd, root, "version", checked(bd, json_object_new_int(QR_BUNDLE_VERSION)));
    json_object *model = checked(bd, json_object_new_object());
    put(bd, model, "name", str(bd, b->model_name));
    put(bd, model, "source_file", str(bd, b->source_file));
    put(bd, model, "source_sha256", str(bd, b->source_sha256));
    put(bd, root, "model", model);
    put(bd, root, "created_by", str(bd, b->created_by));
    if (b->created) /* optional: absent, not null, when unknown */
        put(bd, root, "created", str(bd, b->created));
    json_object *vars = checked(bd, json_object_new_array());
    for (size_t i = 0; i < b->n_variants; i++)
        append(bd, vars, variant_json(bd, &b->variants[i], i));
    put(bd, root, "variants", vars);
    json_object *inf = checked(bd, json_object_new_array());
    for (size_t i = 0; i < b->n_infeasible; i++) {
        json_object *e = checked(bd, json_object_new_object());
        put(bd, e, "budget_bytes", u64(bd, b->infeasible[i].budget_bytes));
        put(bd, e, "reason", str(bd, b->infeasible[i].reason));
        append(bd, inf, e);
    }
    put(bd, root, "infeasible", inf);
    return root;
}

qr_status qr_bundle_to_json(const qr_bundle *b, char **json, size_t *len, qr_error *err)
{
    *json = NULL;
    *len = 0;
    builder bd = {false, NULL, 0};
    json_object *root = bundle_json(&bd, b);
    if (bd.dup_tensor && !bd.nomem) {
        qr_status st = qr_fail(err, QR_ERR_INVALID, "bundle manifest being written: variants[%zu].setting: "
                               "tensor \"%s\" is listed twice", bd.dup_variant, bd.dup_tensor);
        json_object_put(root);
        return st;
    }
    const char *text = NULL;
    size_t n = 0;
    if (!bd.nomem)
        text = json_object_to_json_string_length(
            root, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_SPACED | JSON_C_TO_STRING_NOSLASHESCAPE, &n);
    char *out = text ? malloc(n + 2) : NULL;
    if (!out) {
        json_object_put(root);
        return qr_fail(err, QR_ERR_NOMEM, "out of memory writing a bundle manifest");
    }
    memcpy(out, text, n);
    out[n++] = '\n';
    out[n] = '\0';
    json_object_put(root);
    /* Read it back: the one definition of a valid manifest is the reader's. */
    qr_bundle *back = NULL;
    qr_status st = qr_bundle_parse(out, n, "bundle manifest being written", &back, err);
    qr_bundle_free(back);
    if (st != QR_OK) {
        free(out);
        if (st != QR_ERR_FORMAT)
            return st;
        /* The caller's bundle is at fault, not a file: same message, the caller's status. */
        if (err)
            err->status = QR_ERR_INVALID;
        return QR_ERR_INVALID;
    }
    *json = out;
    *len = n;
    return QR_OK;
}

qr_status qr_bundle_write(const qr_bundle *b, const char *dir, qr_error *err)
{
    char *json;
    size_t len;
    qr_status st = qr_bundle_to_json(b, &json, &len, err);
    if (st != QR_OK)
        return st;
    char *path = qr_bundle_path(dir, QR_BUNDLE_MANIFEST);
    if (!path)
        st = qr_fail(err, QR_ERR_NOMEM, "%s: out of memory", dir);
    else
        st = qr_write_file_atomic(path, json, len, 0644, err);
    free(path);
    free(json);
    return st;
}
