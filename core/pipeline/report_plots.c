/* The report's plots, inline SVG: each metric against steps and against
 * sampling time, and training curves from each run's metrics.jsonl (see
 * report_internal.h). */
#include "pipeline/report_internal.h"

#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static const char *const palette[] = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd",
                                      "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"};

typedef struct series {
    char name[128];
    int n;
    double *x, *y, *e;
} series;

static void svg_plot(FILE *f, const char *title, const char *xl, const char *yl, const series *s, int ns, int logx)
{
    const double W = 620, H = 360, L = 70, Rm = 170, T = 30, B = 50;
    double x0 = INFINITY, x1 = -INFINITY, y0 = INFINITY, y1 = -INFINITY;
    for (int i = 0; i < ns; i++)
        for (int j = 0; j < s[i].n; j++) {
            double x = logx ? log10(s[i].x[j]) : s[i].x[j], y = s[i].y[j], e = s[i].e ? s[i].e[j] : 0;
            if (!isfinite(x) || !isfinite(y)) continue;
            if (!isfinite(e)) e = 0;
            x0 = fmin(x0, x), x1 = fmax(x1, x), y0 = fmin(y0, y - e), y1 = fmax(y1, y + e);
        }
    if (!(x0 <= x1)) return;
    if (x1 - x0 < 1e-12) x0 -= 0.5, x1 += 0.5;
    if (y1 - y0 < 1e-12) y0 -= 0.5 * fabs(y0) + 1e-3, y1 += 0.5 * fabs(y1) + 1e-3;
    double py = 0.05 * (y1 - y0);
    y0 -= py, y1 += py;
#define SX(v) (L + ((v) - x0) / (x1 - x0) * (W - L - Rm))
#define SY(v) (H - B - ((v) - y0) / (y1 - y0) * (H - T - B))
    fprintf(f, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%g\" height=\"%g\" font-family=\"sans-serif\" "
               "font-size=\"12\">\n<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n",
            W, H);
    fprintf(f, "<text x=\"%g\" y=\"18\" font-weight=\"bold\">", L);
    report_html_esc(f, title);
    fputs("</text>\n", f);
    fprintf(f, "<rect x=\"%g\" y=\"%g\" width=\"%g\" height=\"%g\" fill=\"none\" stroke=\"#444\"/>\n", L, T, W - L - Rm,
            H - T - B);
    for (int t = 0; t <= 4; t++) {
        double xv = x0 + (x1 - x0) * t / 4, yv = y0 + (y1 - y0) * t / 4;
        fprintf(f, "<line x1=\"%g\" y1=\"%g\" x2=\"%g\" y2=\"%g\" stroke=\"#ddd\"/>\n", SX(xv), (double)T, SX(xv), H - B);
        fprintf(f, "<line x1=\"%g\" y1=\"%g\" x2=\"%g\" y2=\"%g\" stroke=\"#ddd\"/>\n", L, SY(yv), W - Rm, SY(yv));
        fprintf(f, "<text x=\"%g\" y=\"%g\" text-anchor=\"middle\">%.3g</text>\n", SX(xv), H - B + 16,
                logx ? pow(10, xv) : xv);
        fprintf(f, "<text x=\"%g\" y=\"%g\" text-anchor=\"end\">%.3g</text>\n", L - 4, SY(yv) + 4, yv);
    }
    fprintf(f, "<text x=\"%g\" y=\"%g\" text-anchor=\"middle\">", (L + W - Rm) / 2, H - 10);
    report_html_esc(f, xl);
    fprintf(f, "%s</text>\n<text x=\"14\" y=\"%g\" transform=\"rotate(-90 14 %g)\" text-anchor=\"middle\">",
            logx ? " (log scale)" : "", (T + H - B) / 2, (T + H - B) / 2);
    report_html_esc(f, yl);
    fputs("</text>\n", f);
    for (int i = 0; i < ns; i++) {
        const char *c = palette[i % 10];
        fprintf(f, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"2\" points=\"", c);
        for (int j = 0; j < s[i].n; j++) {
            double x = logx ? log10(s[i].x[j]) : s[i].x[j];
            if (isfinite(x) && isfinite(s[i].y[j])) fprintf(f, "%.1f,%.1f ", SX(x), SY(s[i].y[j]));
        }
        fputs("\"/>\n", f);
        for (int j = 0; j < s[i].n && s[i].n <= 64; j++) {
            double x = logx ? log10(s[i].x[j]) : s[i].x[j], y = s[i].y[j];
            if (!isfinite(x) || !isfinite(y)) continue;
            fprintf(f, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3\" fill=\"%s\"/>\n", SX(x), SY(y), c);
            if (s[i].e && isfinite(s[i].e[j]) && s[i].e[j] > 0)
                fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"%s\"/>\n", SX(x),
                        SY(y - s[i].e[j]), SX(x), SY(y + s[i].e[j]), c);
        }
        fprintf(f, "<rect x=\"%g\" y=\"%g\" width=\"12\" height=\"12\" fill=\"%s\"/><text x=\"%g\" y=\"%g\">", W - Rm + 10,
                T + 18.0 * i, c, W - Rm + 26, T + 18.0 * i + 10);
        report_html_esc(f, s[i].name);
        fputs("</text>\n", f);
    }
    fputs("</svg>\n", f);
#undef SX
#undef SY
}


void report_plot_metrics(const report *R, FILE *f, const char **methods, int nm)
{
    series *s = calloc((size_t)nm, sizeof *s);
    double *mem = malloc((size_t)R->n_groups * 3 * sizeof *mem * (size_t)(nm ? nm : 1));
    if (!s || !mem) {
        free(s);
        free(mem);
        return;
    }
    fputs("<h2>Plots</h2>\n", f);
    for (int k = 0; k < R->n_names; k++) {
        double lo = INFINITY, hi = -INFINITY;
        for (int g = 0; g < R->n_groups; g++)
            if (isfinite(R->groups[g].mean[k])) lo = fmin(lo, R->groups[g].mean[k]), hi = fmax(hi, R->groups[g].mean[k]);
        if (!(hi > lo)) continue; /* a constant (a reference value) says nothing against steps */
        for (int pass = 0; pass < 2; pass++) {
            for (int i = 0; i < nm; i++) {
                snprintf(s[i].name, sizeof s[i].name, "%s", methods[i]);
                s[i].x = mem + (size_t)i * 3 * R->n_groups;
                s[i].y = s[i].x + R->n_groups;
                s[i].e = s[i].y + R->n_groups;
                s[i].n = 0;
                for (int g = 0; g < R->n_groups; g++) {
                    const group *G = &R->groups[g];
                    if (strcmp(G->first->method, methods[i])) continue;
                    int j = s[i].n++;
                    s[i].x[j] = pass ? G->ms : G->first->steps;
                    s[i].y[j] = G->mean[k];
                    s[i].e[j] = G->sd[k];
                }
                for (int a = 1; a < s[i].n; a++) /* by x, so the lines run left to right */
                    for (int b = a; b > 0 && s[i].x[b - 1] > s[i].x[b]; b--)
                        for (double *v = s[i].x; v; v = v == s[i].x ? s[i].y : v == s[i].y ? s[i].e : NULL) {
                            double t = v[b];
                            v[b] = v[b - 1];
                            v[b - 1] = t;
                        }
            }
            char title[256];
            snprintf(title, sizeof title, "%s vs %s", R->names[k], pass ? "sampling time" : "steps");
            svg_plot(f, title, pass ? "ms per sample" : "steps", R->names[k], s, nm, pass);
        }
    }
    free(s);
    free(mem);
}

/* Training curves: loss_avg (else loss) against step from the metrics.jsonl
 * of each method's first distilled student. */
void report_plot_training(const report *R, FILE *f, const char **methods, int nm)
{
    series *s = calloc((size_t)nm, sizeof *s);
    if (!s) return;
    int ns = 0;
    for (int i = 0; i < nm; i++) {
        const row *r = NULL;
        for (int j = 0; j < R->n && !r; j++)
            if (!R->rows[j].status && !strcmp(R->rows[j].method, methods[i]) && !strcmp(R->rows[j].model, "student"))
                r = &R->rows[j];
        if (!r) continue;
        char path[4600];
        snprintf(path, sizeof path, "%s/%s/metrics.jsonl", r->dir, r->variant);
        FILE *in = fopen(path, "r");
        if (!in) continue;
        series *S = &s[ns];
        int cap = 0;
        char line[4096];
        while (fgets(line, sizeof line, in)) {
            const char *p = strstr(line, "\"step\": "), *q = strstr(line, "\"loss_avg\": ");
            if (!q) q = strstr(line, "\"loss\": ");
            if (!p || !q) continue;
            if (S->n == cap) {
                cap = cap ? 2 * cap : 256;
                double *x = realloc(S->x, (size_t)cap * sizeof *x), *y = x ? realloc(S->y, (size_t)cap * sizeof *y) : NULL;
                if (x) S->x = x;
                if (!x || !y) break;
                S->y = y;
            }
            S->x[S->n] = strtod(p + 8, NULL);
            S->y[S->n] = strtod(strchr(q, ':') + 1, NULL);
            S->n++;
        }
        fclose(in);
        if (S->n > 0) {
            snprintf(S->name, sizeof S->name, "%s", methods[i]);
            ns++;
        }
    }
    if (ns) {
        fputs("<h3>Training curves</h3>\n", f);
        svg_plot(f, "training loss (running mean) vs step", "step", "loss", s, ns, 0);
    }
    for (int i = 0; i < nm; i++) {
        free(s[i].x);
        free(s[i].y);
    }
    free(s);
}

