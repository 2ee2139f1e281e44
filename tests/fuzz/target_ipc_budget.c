/* target_ipc_budget.c: fuzz the budget strings (ipc/budget.h). Byte 0 picks the parser (even:
 * memory, odd: power); the rest is the string. An accepted string must be in range, be made of
 * the grammar's characters only, and format back to a string that parses to the same value;
 * a refused one must leave the output alone and name the field. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "budget.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void only(const char *s, size_t n, const char *alphabet)
{
    for (size_t i = 0; i < n; i++)
        if (s[i] == '\0' || !strchr(alphabet, s[i]))
            abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    const char *s = (const char *)data + 1;
    size_t n = size - 1;
    const uint64_t sentinel = 0xdeadbeef;
    uint64_t v = sentinel, back = 0;
    qi_error err;
    char buf[QI_BUDGET_TEXT_MAX];
    if (data[0] % 2 == 0) {
        qi_code c = qi_parse_memory(s, n, "memory", &v, &err);
        if (c == QI_OK) {
            only(s, n, "0123456789.KMGTkmgtiB");
            if (v == 0 || n > QI_BUDGET_TEXT_MAX)
                abort();
            qi_format_memory(v, buf, sizeof buf);
            if (qi_parse_memory(buf, strlen(buf), "memory", &back, &err) != QI_OK || back != v)
                abort();
        } else if (c != QI_ERR_INVALID_ARGUMENT || v != sentinel ||
                   strcmp(err.field, "memory") != 0) {
            abort();
        }
    } else {
        qi_code c = qi_parse_power(s, n, "power", &v, &err);
        if (c == QI_OK) {
            only(s, n, "0123456789.mW");
            if (v == 0 || v > QI_POWER_MAX_UW || n > QI_BUDGET_TEXT_MAX)
                abort();
            qi_format_power(v, buf, sizeof buf);
            if (qi_parse_power(buf, strlen(buf), "power", &back, &err) != QI_OK || back != v)
                abort();
        } else if (c != QI_ERR_INVALID_ARGUMENT || v != sentinel ||
                   strcmp(err.field, "power") != 0) {
            abort();
        }
    }
    return 0;
}
