/* heads.h: a model file's classification heads ("tasks") and their label names.
 *
 * A file may carry several classifier heads on one backbone (FORMAT.md "Classification heads"):
 * head i has a task name, one label per class, and the tensors qr_head_tensor_name() names. This
 * file reads and checks the metadata only; binding the tensors is model.c's job. Files written
 * before heads had names (only `head.n_classes`) read as one task called "default" whose labels
 * are the indices "0", "1", ... */
#ifndef QR_HEADS_H
#define QR_HEADS_H

#include <stdbool.h>
#include <stddef.h>

#include "error.h"
#include "model_file.h"

#define QR_HEADS_MAX 16          /* classification heads in one file */
#define QR_TASK_NAME_MAX 32      /* bytes of a task name: a-z 0-9 _ - */
#define QR_LABEL_MAX 64          /* bytes of a label name (UTF-8) */
#define QR_CLASSES_MAX 65536     /* classes of one head */
#define QR_LEGACY_TASK "default" /* the task name of a file with only head.n_classes */

typedef struct {
    const char *name;            /* task name, NUL-terminated */
    size_t n_classes;            /* ≥ 1 */
    const char *const *labels;   /* n_classes NUL-terminated label names, in class-index order */
} qr_head_info;

typedef struct {
    size_t n;                    /* 0 .. QR_HEADS_MAX */
    qr_head_info *heads;         /* n */
    bool legacy;                 /* names made up for a file with only head.n_classes */
    void *store;                 /* owned: the heads, label arrays and strings */
} qr_heads;

/* Reads the heads of an open file. Errors (QR_ERR_FORMAT) name the file and the key at fault:
 * a missing name or labels, a label count that disagrees with head.n_classes, two tasks with one
 * name, a name with a character outside its alphabet, a label that is not UTF-8. */
qr_status qr_heads_read(const qr_model_file *mf, qr_heads *out, qr_error *err);
void qr_heads_free(qr_heads *h);

/* The index of the head called task, or -1. */
int qr_heads_find(const qr_heads *h, const char *task);

/* The tensor name of head i's weight (bias false) or bias (bias true): "cls.weight"/"cls.bias" for
 * head 0 (so every single-head file keeps its names), "cls.<i>.weight"/"cls.<i>.bias" after it.
 * The one place these names are made. Returns buf. */
const char *qr_head_tensor_name(size_t head, bool bias, char *buf, size_t cap);

/* The head index of a head tensor name ("cls.weight" 0, "cls.3.bias" 3), or -1 if name is not
 * one; *bias says which of the two it is. */
int qr_head_tensor_index(const char *name, bool *bias);

#endif
