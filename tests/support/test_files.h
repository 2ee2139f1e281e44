/* test_files.h: reading whole files in tests. */
#ifndef QSLM_TEST_FILES_H
#define QSLM_TEST_FILES_H

#include <stddef.h>

/* The file's bytes plus a NUL (malloc'ed; *len excludes the NUL), or NULL if it cannot be read. */
char *test_read_whole(const char *path, size_t *len);

#endif
