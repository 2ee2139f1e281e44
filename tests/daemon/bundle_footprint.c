/* bundle_footprint.c: see bundle_footprint.h. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>

#include "bundle.h"
#include "bundle_footprint.h"
#include "footprint.h"
#include "model.h"
#include "model_file.h"

uint64_t bf_served_footprint(const char *name, size_t batch, size_t chunk)
{
    const char *src = getenv("QSLM_SOURCE_DIR");
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/models/bundle", src ? src : ".");
    qr_bundle *b = NULL;
    qr_error err;
    size_t i;
    if (qr_bundle_load(dir, &b, &err))
        fail_msg("%s", err.msg);
    if (!qr_bundle_find_variant(b, name, &i))
        fail_msg("%s: no variant %s", dir, name);
    char *path = qr_bundle_path(dir, b->variants[i].file);
    qr_model_file *mf = NULL;
    qr_model *m = NULL;
    if (!path || qr_model_file_open(path, &mf, &err) || qr_model_bind(mf, &m, &err))
        fail_msg("%s", path ? err.msg : "out of memory");
    uint64_t fp = qr_footprint_serving(m, batch, chunk).total;
    qr_model_free(m);
    qr_model_file_close(mf);
    free(path);
    qr_bundle_free(b);
    return fp;
}
