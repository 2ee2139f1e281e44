/* target_bundle_manifest.c: fuzz the bundle manifest reader (runtime/bundle.c). Any input must
 * be refused with a message that names the manifest, leaving nothing, or be accepted as a
 * manifest that the writer serialises, that reads back equal, and whose text is then a fixed
 * point (writing what was read gives the same bytes). It does not touch the file system. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "bundle.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    qr_bundle *b = NULL;
    qr_error err;
    qr_status st = qr_bundle_parse((const char *)data, size, "fuzz", &b, &err);
    if (st != QR_OK) {
        if (b || err.status != st || strncmp(err.msg, "fuzz: ", 6) != 0)
            abort(); /* a refusal must leave nothing and say which manifest */
        return 0;
    }
    char *json, *again;
    size_t len, again_len;
    qr_bundle *back = NULL;
    if (qr_bundle_to_json(b, &json, &len, &err) != QR_OK)
        abort(); /* what the reader accepts, the writer writes */
    if (qr_bundle_parse(json, len, "fuzz-rt", &back, &err) != QR_OK || !qr_bundle_equal(b, back))
        abort();
    if (qr_bundle_to_json(back, &again, &again_len, &err) != QR_OK || again_len != len ||
        memcmp(again, json, len) != 0)
        abort();
    for (size_t i = 0; i < b->n_variants; i++) {
        size_t index;
        if (!qr_bundle_find_variant(b, b->variants[i].name, &index) || index != i)
            abort();
    }
    free(again);
    free(json);
    qr_bundle_free(back);
    qr_bundle_free(b);
    return 0;
}
