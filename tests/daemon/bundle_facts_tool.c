/* bundle_facts_tool.c: bundle-facts, bundle_facts.h for the shell tests: one fact of the default
 * bundle ($QSLM_SOURCE_DIR/models/bundle) as qslmd serves it, on stdout.
 *   bundle-facts count               the number of variants
 *   bundle-facts names               their names, one a line, in manifest order
 *   bundle-facts top                 what qslmd serves with no budget
 *   bundle-facts best BYTES          what it serves under a memory budget of BYTES ("none")
 *   bundle-facts step-down NAME      what it steps down to from NAME ("none")
 *   bundle-facts smallest            the variant with the smallest footprint
 *   bundle-facts least-energy        the least energy per token
 *   bundle-facts footprint NAME      NAME's served footprint, in bytes
 *   bundle-facts file NAME           the path of NAME's model file
 * Exit 0; 1 when the bundle cannot be read or NAME is no variant; 2 on a usage error. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bundle_facts.h"

static int usage(void)
{
    fprintf(stderr, "usage: bundle-facts count|names|top|smallest|least-energy|best BYTES|step-down NAME|"
                    "footprint NAME|file NAME\n");
    return 2;
}

static int print_name(const bf_variant *v)
{
    printf("%s\n", v ? v->name : "none");
    return 0;
}

/* The facts that need no operand. */
static int fact(const bf_bundle *b, const char *what)
{
    if (strcmp(what, "count") == 0)
        return printf("%zu\n", b->n), 0;
    if (strcmp(what, "names") == 0) {
        for (size_t i = 0; i < b->n; i++)
            printf("%s\n", b->v[i].name);
        return 0;
    }
    if (strcmp(what, "top") == 0)
        return print_name(bf_top(b));
    if (strcmp(what, "smallest") == 0)
        return print_name(bf_smallest(b));
    if (strcmp(what, "least-energy") == 0)
        return print_name(bf_least_energy(b));
    return usage();
}

/* The facts of one variant, NAME. */
static int variant_fact(const bf_bundle *b, const char *what, const char *name)
{
    const bf_variant *v = bf_find(b, name);
    if (!v) {
        fprintf(stderr, "bundle-facts: %s has no variant '%s'\n", b->dir, name);
        return 1;
    }
    if (strcmp(what, "step-down") == 0)
        return print_name(bf_step_down(b, v));
    if (strcmp(what, "footprint") == 0)
        return printf("%" PRIu64 "\n", v->footprint), 0;
    printf("%s/%s\n", b->dir, v->file);
    return 0;
}

static int best(const bf_bundle *b, const char *bytes)
{
    char *end;
    errno = 0;
    unsigned long long n = strtoull(bytes, &end, 10);
    if (errno || end == bytes || *end || bytes[0] == '-')
        return usage();
    return print_name(bf_best(b, (uint64_t)n, NULL));
}

int main(int argc, char **argv)
{
    if (argc < 2 || argc > 3)
        return usage();
    static bf_bundle b;
    if (bf_load_served(&b) != 0) {
        fprintf(stderr, "bundle-facts: %s\n", b.err);
        return 1;
    }
    const char *what = argv[1];
    if (argc == 2)
        return fact(&b, what);
    if (strcmp(what, "best") == 0)
        return best(&b, argv[2]);
    if (strcmp(what, "step-down") == 0 || strcmp(what, "footprint") == 0 || strcmp(what, "file") == 0)
        return variant_fact(&b, what, argv[2]);
    return usage();
}
