/* dataset.c: reading texts and JSON Lines of labelled sentences. */
#include "dataset.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

qr_status qr_read_file(const char *path, size_t max_bytes, char **buf, size_t *len, qr_error *err)
{
    *buf = NULL;
    *len = 0;
    FILE *f = fopen(path, "rb");
    if (!f)
        return qr_fail(err, QR_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    size_t cap = 1 << 16, n = 0, got;
    char *b = malloc(cap + 1);
    while (b && (got = fread(b + n, 1, cap - n, f)) > 0) {
        n += got;
        if (n > max_bytes) {
            free(b);
            fclose(f);
            return qr_fail(err, QR_ERR_INVALID, "%s: larger than %zu bytes", path, max_bytes);
        }
        if (n == cap) {
            char *nb = realloc(b, cap * 2 + 1);
            if (!nb) {
                free(b);
                b = NULL;
                break;
            }
            b = nb;
            cap *= 2;
        }
    }
    int bad = ferror(f);
    fclose(f);
    if (!b)
        return qr_fail(err, QR_ERR_NOMEM, "%s: out of memory reading it", path);
    if (bad) {
        free(b);
        return qr_fail(err, QR_ERR_IO, "%s: read error", path);
    }
    b[n] = '\0';
    *buf = b;
    *len = n;
    return QR_OK;
}

qr_status qr_encode_for_model(const qr_tokenizer *tok, size_t vocab, const char *text, size_t len,
                              const char *where, int32_t **ids, size_t *n, qr_error *err)
{
    qr_status st = qr_tokenizer_encode(tok, text, len, QR_TOKENIZE_SPECIAL_AS_TEXT, ids, n, err);
    if (st) {
        char msg[sizeof err->msg];
        snprintf(msg, sizeof msg, "%s", err->msg); /* qr_fail writes err->msg */
        return qr_fail(err, st, "%s: %s", where, msg);
    }
    for (size_t i = 0; i < *n; i++)
        if ((size_t)(*ids)[i] >= vocab) {
            int id = (int)(*ids)[i];
            free(*ids);
            *ids = NULL;
            return qr_fail(err, QR_ERR_INVALID,
                           "%s: the tokenizer produced id %d but the model's vocabulary has %zu tokens",
                           where, id, vocab);
        }
    return QR_OK;
}

void qr_labels_free(qr_labelled *items, size_t n)
{
    for (size_t i = 0; i < n && items; i++)
        free((void *)items[i].tokens);
    free(items);
}

/* True if the n bytes (not NUL-terminated) are only spaces, tabs and carriage returns. */
static bool all_blank(const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i] != ' ' && p[i] != '\t' && p[i] != '\r')
            return false;
    return true;
}

/* One line: {"text": non-empty string, "label": integer in range}; other members are ignored. */
static qr_status parse_line(const char *line, size_t line_len, const char *where,
                            const qr_tokenizer *tok, size_t vocab, size_t n_classes, qr_labelled *item,
                            qr_error *err)
{
    json_tokener *jt = json_tokener_new();
    if (!jt)
        return qr_fail(err, QR_ERR_NOMEM, "%s: out of memory", where);
    json_object *obj = json_tokener_parse_ex(jt, line, (int)line_len);
    enum json_tokener_error jerr = json_tokener_get_error(jt);
    size_t consumed = json_tokener_get_parse_end(jt);
    json_tokener_free(jt);
    json_object *jtext, *jlabel;
    qr_status st = QR_OK;
    if (!obj || jerr != json_tokener_success) {
        st = qr_fail(err, QR_ERR_FORMAT, "%s: not valid JSON (%s)", where,
                     jerr == json_tokener_continue ? "unexpected end of line" : json_tokener_error_desc(jerr));
    } else if (!all_blank(line + consumed, line_len - consumed)) {
        st = qr_fail(err, QR_ERR_FORMAT, "%s: text after the JSON object", where);
    } else if (!json_object_is_type(obj, json_type_object) ||
               !json_object_object_get_ex(obj, "text", &jtext) ||
               !json_object_is_type(jtext, json_type_string)) {
        st = qr_fail(err, QR_ERR_FORMAT, "%s: needs a string field \"text\"", where);
    } else if (!json_object_object_get_ex(obj, "label", &jlabel) ||
               !json_object_is_type(jlabel, json_type_int) || json_object_get_int64(jlabel) < 0 ||
               (uint64_t)json_object_get_int64(jlabel) >= n_classes) {
        st = qr_fail(err, QR_ERR_FORMAT, "%s: needs an integer field \"label\" in 0..%zu", where,
                     n_classes - 1);
    } else {
        int32_t *ids = NULL;
        size_t nt = 0;
        st = qr_encode_for_model(tok, vocab, json_object_get_string(jtext),
                                 (size_t)json_object_get_string_len(jtext), where, &ids, &nt, err);
        if (st == QR_OK && nt == 0) {
            free(ids);
            st = qr_fail(err, QR_ERR_FORMAT, "%s: the text is empty", where);
        } else if (st == QR_OK) {
            *item = (qr_labelled){ids, nt, (int)json_object_get_int64(jlabel)};
        }
    }
    json_object_put(obj);
    return st;
}

qr_status qr_labels_parse(const char *text, size_t len, const char *name, const qr_tokenizer *tok,
                          size_t vocab, size_t n_classes, qr_labelled **items_out, size_t *n_out,
                          size_t *tokens_total, qr_error *err)
{
    *items_out = NULL;
    *n_out = 0;
    *tokens_total = 0;
    if (n_classes == 0)
        return qr_fail(err, QR_ERR_INVALID, "%s: the model has no classifier head", name);
    qr_labelled *items = NULL;
    size_t n = 0, cap = 0, total = 0, line_no = 0;
    char where[512];
    for (size_t pos = 0; pos < len;) {
        const char *line = text + pos;
        const char *nl = memchr(line, '\n', len - pos);
        size_t line_len = nl ? (size_t)(nl - line) : len - pos;
        pos += line_len + (nl != NULL);
        line_no++;
        if (all_blank(line, line_len))
            continue;
        snprintf(where, sizeof where, "%s:%zu", name, line_no);
        if (n == cap) {
            cap = cap ? cap * 2 : 256;
            qr_labelled *ni = realloc(items, cap * sizeof *ni);
            if (!ni) {
                qr_labels_free(items, n);
                return qr_fail(err, QR_ERR_NOMEM, "%s: out of memory", where);
            }
            items = ni;
        }
        qr_status st = parse_line(line, line_len, where, tok, vocab, n_classes, &items[n], err);
        if (st) {
            qr_labels_free(items, n);
            return st;
        }
        total += items[n++].n_tokens;
    }
    if (n == 0) {
        free(items);
        return qr_fail(err, QR_ERR_FORMAT, "%s: no labelled lines", name);
    }
    *items_out = items;
    *n_out = n;
    *tokens_total = total;
    return QR_OK;
}

qr_status qr_labels_load(const char *path, const qr_tokenizer *tok, size_t vocab, size_t n_classes,
                         qr_labelled **items, size_t *n, size_t *tokens_total, qr_error *err)
{
    char *text;
    size_t len;
    qr_status st = qr_read_file(path, (size_t)256 << 20, &text, &len, err);
    if (st)
        return st;
    st = qr_labels_parse(text, len, path, tok, vocab, n_classes, items, n, tokens_total, err);
    free(text);
    return st;
}

qr_status qr_text_load(const char *path, const qr_tokenizer *tok, size_t vocab, int32_t **ids,
                       size_t *n, size_t *bytes, qr_error *err)
{
    char *text;
    size_t len;
    qr_status st = qr_read_file(path, (size_t)1 << 30, &text, &len, err);
    if (st)
        return st;
    st = qr_encode_for_model(tok, vocab, text, len, path, ids, n, err);
    free(text);
    if (st == QR_OK && bytes)
        *bytes = len;
    return st;
}
