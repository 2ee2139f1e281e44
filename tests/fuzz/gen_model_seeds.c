/* gen_model_seeds.c: writes the model-file fuzz seeds — the valid test fixture and every row of
 * the corruption table — into a directory. Run by hand when the fixture or table changes:
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
    printf("wrote %zu seeds to %s\n", fixture_corruption_count + 1, argv[1]);
    return 0;
}
