/* gen_model_seeds.c: writes the model-file fuzz seeds — the valid test fixture, every row of the
 * corruption table, the two valid files with quantized tensors, and the fixture with classifier
 * head metadata (named heads, valid and broken one way each) — into a directory. Run by
 * hand when the fixtures or the table change:
 *   .build/tests/fuzz/gen-model-seeds tests/fuzz/corpus/model_file */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model_fixture.h"

static int write_seed(const char *dir, const char *name, const model_fixture *fx)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s.qslm", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(fx->buf, 1, fx->size, f) != fx->size) {
        fprintf(stderr, "gen-model-seeds: cannot write %s\n", path);
        if (f)
            fclose(f);
        return 1;
    }
    return fclose(f) != 0;
}

/* A valid image from one of the other fixture writers. */
static int write_writer_seed(const char *dir, const char *name, qr_model_writer *w)
{
    model_fixture fx = {0};
    int rc = !w || fixture_emit(w, &fx.buf, &fx.size) || write_seed(dir, name, &fx);
    qr_model_writer_free(w);
    fixture_free(&fx);
    return rc;
}

/* The fixture plus head metadata: "key=value" strings, a value of digits set as u64. */
static qr_model_writer *heads_writer(const char *const *kv)
{
    qr_model_writer *w = fixture_writer();
    for (size_t i = 0; w && kv[i]; i++) {
        char key[64];
        const char *eq = strchr(kv[i], '=');
        snprintf(key, sizeof key, "%.*s", (int)(eq - kv[i]), kv[i]);
        bool digits = eq[1] != '\0' && strspn(eq + 1, "0123456789") == strlen(eq + 1);
        if (digits ? qr_model_writer_set_u64(w, key, strtoull(eq + 1, NULL, 10), NULL)
                   : qr_model_writer_set_string(w, key, eq + 1, NULL)) {
            qr_model_writer_free(w);
            return NULL;
        }
    }
    return w;
}

/* FORMAT.md "Classification heads": two valid sets of names and each way to get them wrong. */
static int write_head_seeds(const char *dir, size_t *count)
{
    static const struct {
        const char *name;
        const char *kv[8];
    } seeds[] = {
        {"heads_two", {"head.n_tasks=2", "head.task.0.name=sentiment", "head.task.0.labels=negative\npositive",
                       "head.n_classes=2", "head.task.1.name=topic", "head.task.1.labels=war\n\xc3\xa9" "conomie\nhealth", NULL}},
        {"heads_legacy", {"head.n_classes=3", NULL}},
        {"heads_missing_name", {"head.n_tasks=2", "head.task.0.name=a", "head.task.0.labels=x\ny",
                                "head.task.1.labels=x", NULL}},
        {"heads_count_mismatch", {"head.n_tasks=1", "head.task.0.name=a", "head.task.0.labels=x\ny\nz",
                                  "head.n_classes=2", NULL}},
        {"heads_duplicate_task", {"head.n_tasks=2", "head.task.0.name=a", "head.task.0.labels=x",
                                  "head.task.1.name=a", "head.task.1.labels=y", NULL}},
        {"heads_duplicate_label", {"head.n_tasks=1", "head.task.0.name=a", "head.task.0.labels=x\nx", NULL}},
        {"heads_bad_utf8", {"head.n_tasks=1", "head.task.0.name=a", "head.task.0.labels=x\n\xed\xa0\x80", NULL}},
        {"heads_bad_task_name", {"head.n_tasks=1", "head.task.0.name=A b", "head.task.0.labels=x", NULL}},
        {"heads_too_many", {"head.n_tasks=17", NULL}},
        {"heads_orphan_name", {"head.task.0.name=a", "head.task.0.labels=x", NULL}},
    };
    for (size_t i = 0; i < sizeof seeds / sizeof seeds[0]; i++)
        if (write_writer_seed(dir, seeds[i].name, heads_writer(seeds[i].kv)))
            return 1;
    *count += sizeof seeds / sizeof seeds[0];
    return 0;
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s DIR\n", argv[0]);
        return 2;
    }
    model_fixture fx;
    if (fixture_build(&fx) || write_seed(argv[1], "valid", &fx))
        return 1;
    fixture_free(&fx);
    for (size_t i = 0; i < fixture_corruption_count; i++) {
        if (fixture_build(&fx))
            return 1;
        fixture_corruptions[i].apply(&fx);
        if (write_seed(argv[1], fixture_corruptions[i].name, &fx))
            return 1;
        fixture_free(&fx);
    }
    if (write_writer_seed(argv[1], "valid_quantized", fixture_quantized_writer()) ||
        write_writer_seed(argv[1], "valid_all_types", fixture_all_types_writer()))
        return 1;
    size_t count = fixture_corruption_count + 3;
    if (write_head_seeds(argv[1], &count))
        return 1;
    printf("wrote %zu seeds to %s\n", count, argv[1]);
    return 0;
}
