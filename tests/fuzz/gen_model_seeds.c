/* gen_model_seeds.c: writes the model-file fuzz seeds — the valid test fixture, every row of the
 * corruption table, and the two valid files with quantized tensors — into a directory. Run by
 * hand when the fixtures or the table change:
 *   .build/tests/fuzz/gen-model-seeds tests/fuzz/corpus/model_file */
#include <stdio.h>

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
    printf("wrote %zu seeds to %s\n", fixture_corruption_count + 3, argv[1]);
    return 0;
}
