/* svg.c: heatmap and scatter plots. */
#include "svg.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

/* Text with the five XML specials escaped. */
static void put_text(FILE *f, const char *s)
{
    for (; *s; s++) {
        switch (*s) {
        case '<': fputs("&lt;", f); break;
        case '>': fputs("&gt;", f); break;
        case '&': fputs("&amp;", f); break;
        case '"': fputs("&quot;", f); break;
        case '\'': fputs("&apos;", f); break;
        default: fputc(*s, f);
        }
    }
}

/* Viridis-like ramp from dark blue (0) to yellow (1), five stops linearly interpolated. */
static void ramp(double t, int rgb[3])
{
    static const int stops[5][3] = {{68, 1, 84}, {59, 82, 139}, {33, 145, 140}, {94, 201, 98}, {253, 231, 37}};
    t = t < 0 ? 0 : t > 1 ? 1 : t;
    double p = t * 4;
    int i = p >= 4 ? 3 : (int)p;
    double u = p - i;
    for (int c = 0; c < 3; c++)
        rgb[c] = (int)lround(stops[i][c] + u * (stops[i + 1][c] - stops[i][c]));
}

static qr_status finish(FILE *f, const char *path, qr_error *err)
{
    int bad = ferror(f);
    if (fclose(f) != 0 || bad)
        return qr_fail(err, QR_ERR_IO, "%s: write error", path);
    return QR_OK;
}

qr_status qq_svg_heatmap(const char *path, const char *title, const char *value_label,
                         const char *const *row_labels, size_t rows, const char *const *col_labels,
                         size_t cols, const double *values, qr_error *err)
{
    FILE *f = fopen(path, "w");
    if (!f)
        return qr_fail(err, QR_ERR_IO, "%s: cannot create: %s", path, strerror(errno));
    double lo = INFINITY, hi = 0;
    for (size_t i = 0; i < rows * cols; i++)
        if (values[i] > 0 && isfinite(values[i])) {
            lo = values[i] < lo ? values[i] : lo;
            hi = values[i] > hi ? values[i] : hi;
        }
    if (!(lo < hi))
        lo = hi / 10, hi = hi > 0 ? hi : 1;
    const int cw = 56, ch = 20, left = 240, top = 60;
    int width = left + (int)cols * cw + 120, height = top + (int)rows * ch + 60;
    fprintf(f, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" font-family=\"sans-serif\" font-size=\"11\">\n",
            width, height);
    fprintf(f, "<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n<text x=\"10\" y=\"20\" font-size=\"14\">");
    put_text(f, title);
    fprintf(f, "</text>\n");
    for (size_t c = 0; c < cols; c++) {
        fprintf(f, "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\">", left + (int)c * cw + cw / 2, top - 8);
        put_text(f, col_labels[c]);
        fprintf(f, "</text>\n");
    }
    for (size_t r = 0; r < rows; r++) {
        fprintf(f, "<text x=\"%d\" y=\"%d\" text-anchor=\"end\">", left - 6, top + (int)r * ch + 14);
        put_text(f, row_labels[r]);
        fprintf(f, "</text>\n");
        for (size_t c = 0; c < cols; c++) {
            double v = values[r * cols + c];
            int rgb[3] = {200, 200, 200};
            if (isfinite(v))
                ramp(v > 0 ? (log(v) - log(lo)) / (log(hi) - log(lo)) : 0, rgb);
            fprintf(f, "<rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" fill=\"rgb(%d,%d,%d)\"><title>%.3g</title></rect>\n",
                    left + (int)c * cw, top + (int)r * ch, cw - 1, ch - 1, rgb[0], rgb[1], rgb[2], v);
        }
    }
    /* Legend: the ramp with its end values. */
    int lx = left + (int)cols * cw + 20;
    for (int i = 0; i < 10; i++) {
        int rgb[3];
        ramp(1.0 - i / 9.0, rgb);
        fprintf(f, "<rect x=\"%d\" y=\"%d\" width=\"16\" height=\"14\" fill=\"rgb(%d,%d,%d)\"/>\n", lx, top + i * 14,
                rgb[0], rgb[1], rgb[2]);
    }
    fprintf(f, "<text x=\"%d\" y=\"%d\">%.2g</text>\n<text x=\"%d\" y=\"%d\">%.2g</text>\n", lx + 20, top + 10, hi,
            lx + 20, top + 9 * 14 + 10, lo);
    fprintf(f, "<text x=\"%d\" y=\"%d\">", lx, top + 10 * 14 + 16);
    put_text(f, value_label);
    fprintf(f, "</text>\n<text x=\"%d\" y=\"%d\" fill=\"grey\">grey: not measured (pruned)</text>\n</svg>\n",
            left, top + (int)rows * ch + 30);
    return finish(f, path, err);
}

static double tx(double v, int lg)
{
    return lg ? log10(v) : v;
}

qr_status qq_svg_plot(const char *path, const char *title, const char *x_label, const char *y_label,
                      int x_log, const qq_svg_series *series, size_t n_series, qr_error *err)
{
    double x0 = INFINITY, x1 = -INFINITY, y0 = INFINITY, y1 = -INFINITY;
    for (size_t s = 0; s < n_series; s++)
        for (size_t i = 0; i < series[s].n; i++) {
            double x = series[s].x[i], y = series[s].y[i];
            if (!isfinite(x) || !isfinite(y) || (x_log && x <= 0))
                continue;
            x0 = fmin(x0, tx(x, x_log)), x1 = fmax(x1, tx(x, x_log));
            y0 = fmin(y0, y), y1 = fmax(y1, y);
        }
    if (!(x0 <= x1) || !(y0 <= y1))
        return qr_fail(err, QR_ERR_INVALID, "%s: nothing to plot", path);
    double xp = (x1 - x0) * 0.05 + 1e-9, yp = (y1 - y0) * 0.08 + 1e-9;
    x0 -= xp, x1 += xp, y0 -= yp, y1 += yp;
    FILE *f = fopen(path, "w");
    if (!f)
        return qr_fail(err, QR_ERR_IO, "%s: cannot create: %s", path, strerror(errno));
    const int W = 760, H = 460, L = 70, R = 230, T = 40, B = 50;
    int pw = W - L - R, ph = H - T - B;
#define PX(v) (L + (int)lround(((v) - x0) / (x1 - x0) * pw))
#define PY(v) (T + ph - (int)lround(((v) - y0) / (y1 - y0) * ph))
    fprintf(f, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" font-family=\"sans-serif\" font-size=\"11\">\n", W, H);
    fprintf(f, "<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n<text x=\"%d\" y=\"22\" font-size=\"14\">", L);
    put_text(f, title);
    fprintf(f, "</text>\n<rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" fill=\"none\" stroke=\"#444\"/>\n", L, T, pw, ph);
    for (int i = 0; i <= 5; i++) {
        double xv = x0 + (x1 - x0) * i / 5, yv = y0 + (y1 - y0) * i / 5;
        fprintf(f, "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\">%.3g</text>\n", PX(xv), T + ph + 16,
                x_log ? pow(10, xv) : xv);
        fprintf(f, "<text x=\"%d\" y=\"%d\" text-anchor=\"end\">%.3g</text>\n", L - 4, PY(yv) + 4, yv);
        fprintf(f, "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"#eee\"/>\n", L, PY(yv), L + pw, PY(yv));
    }
    fprintf(f, "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\">", L + pw / 2, H - 12);
    put_text(f, x_label);
    fprintf(f, "</text>\n<text x=\"14\" y=\"%d\" transform=\"rotate(-90 14 %d)\" text-anchor=\"middle\">", T + ph / 2, T + ph / 2);
    put_text(f, y_label);
    fprintf(f, "</text>\n");
    for (size_t s = 0; s < n_series; s++) {
        const qq_svg_series *se = &series[s];
        if (se->line && se->n > 1) {
            fprintf(f, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"1.5\" points=\"", se->colour);
            for (size_t i = 0; i < se->n; i++)
                if (isfinite(se->x[i]) && isfinite(se->y[i]) && (!x_log || se->x[i] > 0))
                    fprintf(f, "%d,%d ", PX(tx(se->x[i], x_log)), PY(se->y[i]));
            fprintf(f, "\"/>\n");
        }
        for (size_t i = 0; i < se->n; i++) {
            if (!isfinite(se->x[i]) || !isfinite(se->y[i]) || (x_log && se->x[i] <= 0))
                continue;
            int px = PX(tx(se->x[i], x_log)), py = PY(se->y[i]);
            if (se->marker == 1)
                fprintf(f, "<rect x=\"%d\" y=\"%d\" width=\"8\" height=\"8\" fill=\"%s\"/>\n", px - 4, py - 4, se->colour);
            else if (se->marker == 2)
                fprintf(f, "<polygon points=\"%d,%d %d,%d %d,%d %d,%d\" fill=\"%s\"/>\n", px, py - 5, px + 5, py, px,
                        py + 5, px - 5, py, se->colour);
            else if (se->marker == 3)
                fprintf(f, "<path d=\"M%d %dL%d %dM%d %dL%d %d\" stroke=\"%s\" stroke-width=\"2\"/>\n", px - 4, py - 4,
                        px + 4, py + 4, px - 4, py + 4, px + 4, py - 4, se->colour);
            else
                fprintf(f, "<circle cx=\"%d\" cy=\"%d\" r=\"4\" fill=\"%s\"/>\n", px, py, se->colour);
            if (se->labels && se->labels[i]) {
                fprintf(f, "<text x=\"%d\" y=\"%d\" font-size=\"9\">", px + 6, py - 4);
                put_text(f, se->labels[i]);
                fprintf(f, "</text>\n");
            }
        }
        int ly = T + 10 + (int)s * 18;
        fprintf(f, "<circle cx=\"%d\" cy=\"%d\" r=\"4\" fill=\"%s\"/>\n<text x=\"%d\" y=\"%d\">", L + pw + 16, ly,
                se->colour, L + pw + 26, ly + 4);
        put_text(f, se->name);
        fprintf(f, "</text>\n");
    }
#undef PX
#undef PY
    fprintf(f, "</svg>\n");
    return finish(f, path, err);
}
