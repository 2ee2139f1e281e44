/* cmd_stubs.c: commands not built yet. */
#include <stdio.h>

#include "cli.h"

#define NOT_YET(fn, name)                                                              \
    int fn(const qq_options *o)                                                        \
    {                                                                                  \
        (void)o;                                                                       \
        fprintf(stderr, "qslm-quant: '%s' is not available in this build\n", name);  \
        return EXIT_FAIL;                                                              \
    }
NOT_YET(qq_cmd_build, "build")
NOT_YET(qq_cmd_report, "report")
NOT_YET(qq_cmd_keygen, "keygen")
NOT_YET(qq_cmd_sign, "sign")
NOT_YET(qq_cmd_verify, "verify")
