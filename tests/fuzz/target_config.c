/* target_config.c: fuzz qslmd.conf (daemon/config_file.h): the input is the file. A refused
 * file must leave the config alone and say FILE:LINE; an accepted one must pass
 * qd_config_check, and applying it again over its own result must change nothing. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "config_file.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static qd_config before, c, again; /* 8 KiB each: not on libFuzzer's stack */
    qd_config_init(&before);
    before.threads = 3; /* not a default, so a partial write would show */
    c = before;
    qr_error err;
    qr_status st = qd_config_load_buffer("fuzz.conf", (const char *)data, size, &c, &err);
    if (st != QR_OK) {
        if (st != QR_ERR_FORMAT || strncmp(err.msg, "fuzz.conf:", 10) != 0 || !qd_config_equal(&c, &before))
            abort();
        return 0;
    }
    if (qd_config_check(&c, &err) != QR_OK)
        abort();
    again = c;
    if (qd_config_load_buffer("fuzz.conf", (const char *)data, size, &again, &err) != QR_OK ||
        !qd_config_equal(&again, &c))
        abort();
    return 0;
}
