/* svg.h: the few plots QSLM writes, as plain SVG text (no library: an SVG is a text file). */
#ifndef QQ_SVG_H
#define QQ_SVG_H

#include <stddef.h>

#include "error.h"

/* A heatmap of rows × cols values (row-major; NaN: not measured, drawn grey), colour on a log
 * scale between the smallest positive value and the largest. */
qr_status qq_svg_heatmap(const char *path, const char *title, const char *value_label,
                         const char *const *row_labels, size_t rows, const char *const *col_labels,
                         size_t cols, const double *values, qr_error *err);

typedef struct {
    const char *name;          /* legend text */
    const double *x, *y;       /* n points */
    size_t n;
    const char *const *labels; /* per point, or NULL */
    int line;                  /* join the points in order */
    const char *colour;        /* CSS colour */
    int marker;                /* 0 circle, 1 square, 2 diamond, 3 cross */
} qq_svg_series;

/* An x-y scatter/line plot with a legend; x_log draws x on a log scale. */
qr_status qq_svg_plot(const char *path, const char *title, const char *x_label, const char *y_label,
                      int x_log, const qq_svg_series *series, size_t n_series, qr_error *err);

#endif
