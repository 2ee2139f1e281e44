/* cmd_sensitivity.c: `qslm-quant sensitivity MODEL` — the units × types damage table. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "cli.h"
#include "svg.h"
#include "tensor_types.h"

/* The units of the requested tier(s), in tree order. */
static size_t pick_units(const qq_session *s, const char *tier, size_t *units)
{
    size_t n = 0;
    bool all = strcmp(tier, "all") == 0;
    if (all || strcmp(tier, "global") == 0)
        units[n++] = 0;
    if (all || strcmp(tier, "block") == 0)
        for (size_t b = s->h.first_block; b < s->h.first_block + s->h.n_blocks; b++)
            if (s->h.nodes[b].matrix_params)
                units[n++] = b;
    if (all || strcmp(tier, "module") == 0)
        for (size_t m = s->h.first_module; m < s->h.first_module + s->h.n_modules; m++)
            if (s->h.nodes[m].matrix_params)
                units[n++] = m;
    return n;
}

int qq_cmd_sensitivity(const qq_options *o)
{
    if (o->check_local)
        return qq_cmd_check_local(o);
    if (strcmp(o->tier, "global") && strcmp(o->tier, "block") && strcmp(o->tier, "module") && strcmp(o->tier, "all")) {
        fprintf(stderr, "qslm-quant: --tier must be global, block, module or all, not '%s'\n", o->tier);
        return EXIT_USAGE;
    }
    qq_session s;
    int rc = qq_session_open(o, &s);
    if (rc)
        return rc;
    size_t *units = malloc((s.h.n_nodes + 1) * sizeof *units);
    size_t n_units = units ? pick_units(&s, o->tier, units) : 0;
    const size_t n_types = QQ_RUNGS - 1; /* f16 .. q2_0 (f32 is the reference) */
    double *table = malloc((n_units * n_types + 1) * sizeof *table);
    rc = EXIT_FAIL;
    if (!units || !table) {
        fprintf(stderr, "qslm-quant: out of memory\n");
        goto out;
    }
    for (size_t u = 0; u < n_units; u++)
        for (size_t t = 0; t < n_types; t++) {
            qq_sens v;
            qr_error err;
            if (qq_sensitivity_get(s.sens, units[u], qq_rung_type(t + 1), &v, &err)) {
                qq_progress_done(&s);
                fprintf(stderr, "qslm-quant: %s\n", err.msg);
                goto out;
            }
            table[u * n_types + t] = v.damage;
        }
    qq_progress_done(&s);
    if (o->json) {
        json_object *arr = json_object_new_array();
        for (size_t u = 0; u < n_units; u++) {
            json_object *row = json_object_new_object(), *d = json_object_new_object();
            json_object_object_add(row, "unit", json_object_new_string(s.h.nodes[units[u]].name));
            json_object_object_add(row, "params", json_object_new_int64((int64_t)s.h.nodes[units[u]].matrix_params));
            for (size_t t = 0; t < n_types; t++)
                json_object_object_add(d, qr_type_get(qq_rung_type(t + 1))->name,
                                       json_object_new_double(table[u * n_types + t]));
            json_object_object_add(row, "damage", d);
            json_object_array_add(arr, row);
        }
        printf("%s\n", json_object_to_json_string_ext(arr, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_SPACED));
        json_object_put(arr);
    } else {
        printf("damage: mean KL divergence (nats) from the f32 model on the calibration split (%zu tokens, %zu sentences),\n"
               "with only that unit at that type; %zu measured now, %zu from the cache\n\n",
               s.calib.n_tokens, s.calib.n_items, qq_sensitivity_measured(s.sens), qq_sensitivity_cached(s.sens));
        printf("%-34s", "unit");
        for (size_t t = 0; t < n_types; t++)
            printf(" %8s", qr_type_get(qq_rung_type(t + 1))->name);
        printf("\n");
        for (size_t u = 0; u < n_units; u++) {
            printf("%-34s", s.h.nodes[units[u]].name);
            for (size_t t = 0; t < n_types; t++)
                printf(" %8.2e", table[u * n_types + t]);
            printf("\n");
        }
    }
    if (o->svg) {
        const char **rows = malloc(n_units * sizeof *rows), *cols[QQ_RUNGS];
        for (size_t u = 0; rows && u < n_units; u++)
            rows[u] = s.h.nodes[units[u]].name;
        for (size_t t = 0; t < n_types; t++)
            cols[t] = qr_type_get(qq_rung_type(t + 1))->name;
        qr_error err;
        char title[512];
        snprintf(title, sizeof title, "QSLM sensitivity of %s (%s tier): KL from f32 on calibration", o->model_path, o->tier);
        if (!rows || qq_svg_heatmap(o->svg, title, "KL (nats), log scale", rows, n_units, cols, n_types, table, &err)) {
            fprintf(stderr, "qslm-quant: %s\n", rows ? err.msg : "out of memory");
            free(rows);
            goto out;
        }
        free(rows);
        if (!o->json)
            printf("\nheatmap written to %s\n", o->svg);
    }
    rc = 0;
out:
    free(units);
    free(table);
    qq_session_close(&s);
    return rc;
}
