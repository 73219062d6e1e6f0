/* The report's plots, inline SVG: the headline metric against NFE with its
 * Pareto front, each metric against steps and against sampling time, the
 * headline metric against training iterations (the budget curve, where
 * students were sampled at snapshots of their training), and training
 * curves from each run's metrics.jsonl (see report_internal.h). The first
 * three show each method's final students; snapshots are in the budget
 * curve alone.
 *
 * Axes follow one rule (axis_log): logarithmic when every value is positive
 * and the largest is more than 10 times the smallest, linear otherwise.
 * Ticks are round: 1-2-5 steps on a linear axis, decades and their 2 and 5
 * on a log axis; an axis whose data is non-negative never extends below 0.
 * A method keeps its colour in every plot. Each <svg> carries its id and
 * its axes' scales (data-x-scale, data-y-scale) and its tick labels the
 * classes xtick/ytick, which the tests read. */
#include "pipeline/report_internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const palette[] = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd",
                                      "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"};

enum {
    S_LINE = 1,  /* points joined in order */
    S_MARK = 2,  /* a dot at each point */
    S_FAINT = 4, /* drawn thin and light, behind: a raw curve under its smoothed one */
    S_DASH = 8,
    S_RING = 16, /* a ring around each point, with labels[] beside it */
};

typedef struct series {
    char name[128]; /* the legend's text; "" for no entry */
    const char *colour;
    int style, n;
    double *x, *y, *e;   /* e: a spread drawn as y +- e, or NULL */
    const char **labels; /* with S_RING */
    bool below;          /* labels below their points (else above) */
} series;

/* One axis in plotted units (log10 of the value on a log axis) with its
 * ticks; an empty label is a grid line without text. */
#define MAXT 64
typedef struct axis {
    bool log;
    double lo, hi;
    int n;
    double at[MAXT];
    char label[MAXT][24];
} axis;

/* The axis rule. On a linear axis a value more than 10 times the others
 * (LCM's 1-step FD of 74 beside FDs of 1 to 6, a loss that starts at 100
 * and ends at 0.5) squeezes them all into its bottom tenth; a log axis
 * shows each at its ratio to the others. Only positive values have a log. */
static bool axis_log(const double *v, int n)
{
    double lo = INFINITY, hi = -INFINITY;
    for (int i = 0; i < n; i++) {
        if (!isfinite(v[i])) continue;
        if (v[i] <= 0) return false;
        lo = fmin(lo, v[i]), hi = fmax(hi, v[i]);
    }
    return lo <= hi && hi > 10 * lo;
}

static double nice_step(double raw)
{
    double e = pow(10, floor(log10(raw))), f = raw / e;
    return (f <= 1 ? 1 : f <= 2 ? 2 : f <= 5 ? 5 : 10) * e;
}

/* the value as printed on a log axis: m 10^k with m in {1, 2, 5} */
static void log_label(char *b, size_t n, double v)
{
    int k = (int)floor(log10(v) + 1e-9);
    if (k >= 0 && k < 6)
        snprintf(b, n, "%.0f", v);
    else if (k < 0 && k > -6)
        snprintf(b, n, "%.*f", -k, v);
    else
        snprintf(b, n, "%.0e", v);
}

/* Fits the axis to values in [lo, hi] (the data with its error bars;
 * nonneg when the data is never negative) over px pixels: labels at least
 * gap pixels apart, a linear axis's about spacing apart. */
static void axis_fit(axis *a, bool log, double lo, double hi, bool nonneg, double px, double gap, double spacing)
{
    a->log = log;
    a->n = 0;
    if (log) {
        static const double m[3] = {1, 2, 5};
        double l = INFINITY, h = -INFINITY;
        int k0 = (int)floor(log10(lo)) - 1, k1 = (int)ceil(log10(hi)) + 1;
        /* the ends are the 1-2-5 ticks around the data */
        for (int k = k0; k <= k1; k++)
            for (int j = 0; j < 3; j++) {
                double t = m[j] * pow(10, k);
                if (t <= lo * (1 + 1e-9)) l = t;
                if (t >= hi * (1 - 1e-9) && !isfinite(h)) h = t;
            }
        a->lo = log10(l), a->hi = log10(h);
        double ppd = px / (a->hi - a->lo); /* pixels per decade */
        bool label25 = 0.301 * ppd >= gap;  /* room between 1 and 2 */
        int every = gap > ppd ? (int)ceil(gap / ppd) : 1;
        for (int k = k0; k <= k1; k++)
            for (int j = 0; j < 3; j++) {
                double t = m[j] * pow(10, k), u = log10(t);
                if (u < a->lo - 1e-9 || u > a->hi + 1e-9 || a->n == MAXT) continue;
                if (j && !label25 && a->hi - a->lo > 10) continue; /* over 10 decades, decades alone */
                a->at[a->n] = u;
                a->label[a->n][0] = 0;
                if (j ? label25 : (k % every + every) % every == 0) log_label(a->label[a->n], sizeof a->label[0], t);
                a->n++;
            }
        double pad = 0.03 * (a->hi - a->lo); /* so no point sits on the frame */
        a->lo -= pad, a->hi += pad;
        return;
    }
    if (nonneg && lo < 0) lo = 0;
    if (hi - lo < 1e-12 * fmax(1, fabs(hi))) { /* one value: a span around it */
        double d = hi ? 0.1 * fabs(hi) : 1;
        lo -= d, hi += d;
        if (nonneg && lo < 0) lo = 0;
    }
    double step = nice_step((hi - lo) / fmax(2, floor(px / spacing)));
    /* tick numbers in double: lo / step can pass INT_MAX (1e6 +- 1e-3) */
    double i0 = floor(lo / step + 1e-9), i1 = ceil(hi / step - 1e-9);
    if (nonneg && i0 < 0) i0 = 0;
    a->lo = i0 * step, a->hi = i1 * step;
    int dec = (int)fmax(0, -floor(log10(step) + 1e-9));
    for (double i = i0; i <= i1 && a->n < MAXT; i++, a->n++) {
        a->at[a->n] = i * step;
        if (fabs(i * step) >= 1e6)
            snprintf(a->label[a->n], sizeof a->label[0], "%g", i * step);
        else
            snprintf(a->label[a->n], sizeof a->label[0], "%.*f", dec, i ? i * step : 0.0);
    }
    double pad = 0.03 * (a->hi - a->lo);
    if (!(nonneg && a->lo == 0)) a->lo -= pad; /* a non-negative axis starts at 0 */
    a->hi += pad;
}

#define DOT "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3.5\" fill=\"%s\"/>\n"
#define RING "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"7\" fill=\"none\" stroke=\"%s\" stroke-width=\"1.5\"/>\n"

/* what a value is in an axis's units: NaN where it has none (0 on a log axis) */
static double ax_unit(const axis *a, double v)
{
    return a->log ? (v > 0 ? log10(v) : NAN) : v;
}

/* How an x axis is scaled: linear always (training steps, spent evenly),
 * by the axis rule, or logarithmic always (training budgets that double) */
enum { X_LINEAR, X_RULE, X_LOG };

/* every value positive: a log axis can hold them */
static bool xlo_positive(const double *v, int n)
{
    for (int i = 0; v && i < n; i++)
        if (!(v[i] > 0)) return false;
    return v != NULL;
}

/* Fits both axes to the series: every finite point and its error bar;
 * false when there is none. */
static bool fit_axes(const series *s, int ns, int xscale, axis *ax, axis *ay, double pw, double ph)
{
    int n = 0;
    for (int i = 0; i < ns; i++) n += s[i].n;
    double *vx = malloc(((size_t)n + 1) * sizeof *vx), *vy = malloc(((size_t)n + 1) * sizeof *vy);
    int m = 0;
    double xlo = INFINITY, xhi = -INFINITY, ylo = INFINITY, yhi = -INFINITY;
    bool xneg = false, yneg = false;
    for (int i = 0; i < ns; i++)
        for (int j = 0; j < s[i].n; j++) {
            double x = s[i].x[j], y = s[i].y[j];
            if (!isfinite(x) || !isfinite(y)) continue;
            if (vx && vy) vx[m] = x, vy[m] = y, m++;
            xneg |= x < 0, yneg |= y < 0;
        }
    /* without the memory to apply the rule, linear */
    bool xlog = xscale == X_LOG ? !xneg && m > 0 && xlo_positive(vx, m)
                                : xscale == X_RULE && vx && vy && axis_log(vx, m);
    bool ylog = vx && vy && axis_log(vy, m);
    for (int i = 0; i < ns; i++)
        for (int j = 0; j < s[i].n; j++) {
            double x = s[i].x[j], y = s[i].y[j], e = s[i].e && isfinite(s[i].e[j]) ? s[i].e[j] : 0;
            if (!isfinite(x) || !isfinite(y)) continue;
            xlo = fmin(xlo, x), xhi = fmax(xhi, x);
            double y0 = y - e, y1 = y + e;
            if (!yneg && y0 < 0) y0 = 0; /* a spread does not take a non-negative metric below 0 */
            if (ylog && y0 <= 0) y0 = y; /* a bar that reaches 0 runs off the bottom of a log axis */
            ylo = fmin(ylo, y0), yhi = fmax(yhi, y1);
        }
    free(vx);
    free(vy);
    if (!(xlo <= xhi) || !(ylo <= yhi)) return false;
    axis_fit(ax, xlog, xlo, xhi, !xneg, pw, 36, 80);
    axis_fit(ay, ylog, ylo, yhi, !yneg, ph, 18, 50);
    return true;
}

/* the legend's width for a name at 12 px sans-serif: 7.5 px a character is
 * wider than any common font's average, so no name is cut */
static double text_px(const char *s)
{
    return 7.5 * (double)strlen(s);
}

/* xscale: X_RULE, the axis rule on x too; X_LINEAR for training steps,
 * spent evenly; X_LOG for training budgets */
static void svg_plot(FILE *f, const char *id, const char *title, const char *xl, const char *yl, const series *s,
                     int ns, int xscale)
{
    const double L = 70, T = 30, B = 48, PW = 420;
    double legend_w = 0;
    int n_legend = 0;
    for (int i = 0; i < ns; i++)
        if (s[i].name[0]) legend_w = fmax(legend_w, text_px(s[i].name)), n_legend++;
    char ylab[300];
    snprintf(ylab, sizeof ylab, "%s (log scale)", yl); /* the longest it can be: the height fits it */
    double PH = fmax(fmax(260, 18.0 * n_legend), text_px(ylab) + 10);
    double Rm = 24 + 28 + legend_w, W = fmax(L + PW + Rm, L + 1.1 * text_px(title) + 10), H = T + PH + B;
    axis ax, ay;
    if (!fit_axes(s, ns, xscale, &ax, &ay, PW, PH) || !(ax.hi > ax.lo) || !(ay.hi > ay.lo)) return;
#define SX(v) (L + (ax_unit(&ax, v) - ax.lo) / (ax.hi - ax.lo) * PW)
#define SY(v) (T + PH - (ax_unit(&ay, v) - ay.lo) / (ay.hi - ay.lo) * PH)
#define UY(u) (T + PH - ((u) - ay.lo) / (ay.hi - ay.lo) * PH)
    fprintf(f,
            "<svg xmlns=\"http://www.w3.org/2000/svg\" id=\"%s\" data-x-scale=\"%s\" data-y-scale=\"%s\" width=\"%g\" "
            "height=\"%g\" font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"100%%\" height=\"100%%\" "
            "fill=\"white\"/>\n<text x=\"%g\" y=\"18\" font-weight=\"bold\">",
            id, ax.log ? "log" : "linear", ay.log ? "log" : "linear", W, H, L);
    report_html_esc(f, title);
    fputs("</text>\n", f);
    for (int t = 0; t < ax.n; t++) {
        double x = L + (ax.at[t] - ax.lo) / (ax.hi - ax.lo) * PW;
        fprintf(f, "<line x1=\"%.1f\" y1=\"%g\" x2=\"%.1f\" y2=\"%g\" stroke=\"%s\"/>\n", x, T, x, T + PH,
                ax.label[t][0] ? "#ddd" : "#f0f0f0");
        if (ax.label[t][0])
            fprintf(f, "<text class=\"xtick\" x=\"%.1f\" y=\"%g\" text-anchor=\"middle\">%s</text>\n", x, T + PH + 16,
                    ax.label[t]);
    }
    for (int t = 0; t < ay.n; t++) {
        double y = UY(ay.at[t]);
        fprintf(f, "<line x1=\"%g\" y1=\"%.1f\" x2=\"%g\" y2=\"%.1f\" stroke=\"%s\"/>\n", L, y, L + PW, y,
                ay.label[t][0] ? "#ddd" : "#f0f0f0");
        if (ay.label[t][0])
            fprintf(f, "<text class=\"ytick\" x=\"%g\" y=\"%.1f\" text-anchor=\"end\">%s</text>\n", L - 5, y + 4,
                    ay.label[t]);
    }
    fprintf(f, "<rect x=\"%g\" y=\"%g\" width=\"%g\" height=\"%g\" fill=\"none\" stroke=\"#444\"/>\n", L, T, PW, PH);
    fprintf(f, "<text x=\"%g\" y=\"%g\" text-anchor=\"middle\">", L + PW / 2, H - 10);
    report_html_esc(f, xl);
    fprintf(f, "%s</text>\n<text x=\"14\" y=\"%g\" transform=\"rotate(-90 14 %g)\" text-anchor=\"middle\">",
            ax.log ? " (log scale)" : "", T + PH / 2, T + PH / 2);
    report_html_esc(f, yl);
    fprintf(f, "%s</text>\n", ay.log ? " (log scale)" : "");
    /* faint curves first, so the others are drawn over them */
    for (int pass = 0; pass < 2; pass++)
        for (int i = 0; i < ns; i++) {
            const series *S = &s[i];
            if ((S->style & S_FAINT) ? pass : !pass) continue;
            const char *c = S->colour;
            if (S->style & S_LINE) {
                fprintf(f, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"%s\"%s%s points=\"", c,
                        S->style & S_FAINT ? "1" : "2", S->style & S_FAINT ? " stroke-opacity=\"0.35\"" : "",
                        S->style & S_DASH ? " stroke-dasharray=\"6 4\"" : "");
                for (int j = 0; j < S->n; j++) {
                    double x = SX(S->x[j]), y = SY(S->y[j]);
                    if (isfinite(x) && isfinite(y)) fprintf(f, "%.1f,%.1f ", x, y);
                }
                fputs("\"/>\n", f);
            }
            for (int j = 0; j < S->n; j++) {
                double x = SX(S->x[j]), y = SY(S->y[j]);
                if (!isfinite(x) || !isfinite(y)) continue;
                if (S->style & S_MARK) fprintf(f, DOT, x, y, c);
                if (S->style & S_RING) {
                    fprintf(f, RING, x, y, c);
                    if (S->labels && S->labels[j]) {
                        /* left of a front point, on its better side, no other
                         * point can be (it would dominate it) and the staircase
                         * does not run: the label goes there where it fits,
                         * else to the right on the worse side, away from the
                         * next front point */
                        bool left = x - L > 6.2 * (double)strlen(S->labels[j]) + 12;
                        bool below = left == S->below;
                        double ly = below ? y + 17 : y - 10;
                        if (ly > T + PH - 2 || ly < T + 12) ly = below ? y - 10 : y + 17;
                        fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" font-size=\"10\" text-anchor=\"%s\">",
                                left ? x - 6 : x + 6, ly, left ? "end" : "start");
                        report_html_esc(f, S->labels[j]);
                        fputs("</text>\n", f);
                    }
                }
                double e = S->e ? S->e[j] : 0;
                if (!(e > 0)) continue;
                /* mean +- SD; a bar below a non-negative axis's 0 or a log
                 * axis's bottom stops at the frame */
                double y0 = SY(S->y[j] - e), y1 = SY(S->y[j] + e);
                if (!isfinite(y0) || y0 > T + PH) y0 = T + PH;
                if (y1 < T) y1 = T;
                fprintf(f,
                        "<path class=\"errorbar\" d=\"M%.1f %.1fV%.1fM%.1f %.1fh8M%.1f %.1fh8\" stroke=\"%s\" "
                        "fill=\"none\"/>\n",
                        x, y0, y1, x - 4, y0, x - 4, y1, c);
            }
        }
    int li = 0;
    for (int i = 0; i < ns; i++) {
        const series *S = &s[i];
        if (!S->name[0]) continue;
        double lx = L + PW + 24, ly = T + 6 + 18.0 * li++;
        if (S->style & S_LINE)
            fprintf(f, "<line x1=\"%g\" y1=\"%g\" x2=\"%g\" y2=\"%g\" stroke=\"%s\" stroke-width=\"2\"%s/>\n", lx, ly,
                    lx + 20, ly, S->colour, S->style & S_DASH ? " stroke-dasharray=\"6 4\"" : "");
        if (S->style & S_MARK) fprintf(f, DOT, lx + 10, ly, S->colour);
        if (S->style & S_RING) fprintf(f, RING, lx + 10, ly, S->colour);
        fprintf(f, "<text class=\"legend\" x=\"%g\" y=\"%g\">", lx + 28, ly + 4);
        report_html_esc(f, S->name);
        fputs("</text>\n", f);
    }
    fputs("</svg>\n", f);
#undef SX
#undef SY
#undef UY
}

/* the palette colour of method m of the list: the same in every plot */
static const char *method_colour(int m)
{
    return palette[m % 10];
}

/* sorts a series's points by x, so its line runs left to right */
static void sort_by_x(series *S)
{
    for (int a = 1; a < S->n; a++)
        for (int b = a; b > 0 && S->x[b - 1] > S->x[b]; b--)
            for (double *v = S->x; v; v = v == S->x ? S->y : v == S->y ? S->e : NULL) {
                double t = v[b];
                v[b] = v[b - 1];
                v[b - 1] = t;
            }
}

static void slice(series *S, double *mem, int m, int n)
{
    S->x = mem + (size_t)m * 3 * n;
    S->y = S->x + n;
    S->e = S->y + n;
    S->n = 0;
}

static const char caption_axes[] =
    "An axis is logarithmic when all its values are positive and the largest is more than 10 times the smallest, "
    "linear otherwise; error bars are the mean &plusmn; SD over seeds, on rows with 2 or more seeds.";

/* The headline metric (the first the runs report: fd, sliced_wasserstein)
 * against NFE: every row a point, the Pareto front (no other row is as
 * good or better at as few or fewer NFE) as a staircase through the rows
 * it keeps, each named. */
void report_plot_pareto(const report *R, FILE *f, const char **methods, int nm)
{
    if (!R->n_names || !R->n_groups) return;
    int h = 0, n = R->n_groups;
    bool lower = report_lower_better(R->names[h]);
    series *s = calloc((size_t)nm + 2, sizeof *s);
    /* 2 n points a series: the staircase has 2 nf - 1 corners */
    double *mem = malloc(((size_t)nm + 2) * 3 * 2 * (size_t)n * sizeof *mem);
    int *front = malloc((size_t)n * sizeof *front);
    const char **labels = calloc((size_t)n, sizeof *labels);
    if (!s || !mem || !front || !labels) goto done;
    int nf = 0;
    for (int g = 0; g < n; g++) {
        const group *G = &R->groups[g];
        double y = G->mean[h];
        if (!isfinite(y) || !(G->nfe > 0) || G->first->snapshot) continue;
        bool dominated = false;
        for (int o = 0; o < n && !dominated; o++) {
            const group *O = &R->groups[o];
            double z = O->mean[h];
            if (o == g || !isfinite(z) || !(O->nfe > 0) || O->first->snapshot) continue;
            bool as_good = lower ? z <= y : z >= y, better = lower ? z < y : z > y;
            dominated = O->nfe <= G->nfe && as_good && (O->nfe < G->nfe || better);
        }
        if (!dominated) front[nf++] = g;
    }
    for (int a = 1; a < nf; a++) /* by NFE */
        for (int b = a; b > 0 && R->groups[front[b - 1]].nfe > R->groups[front[b]].nfe; b--) {
            int t = front[b];
            front[b] = front[b - 1];
            front[b - 1] = t;
        }
    for (int i = 0; i < nm; i++) {
        series *S = &s[i];
        snprintf(S->name, sizeof S->name, "%s", methods[i]);
        S->colour = method_colour(i);
        S->style = S_MARK;
        slice(S, mem, i, 2 * n);
        for (int g = 0; g < n; g++) {
            const group *G = &R->groups[g];
            if (strcmp(G->first->method, methods[i]) || G->first->snapshot) continue;
            S->x[S->n] = G->nfe;
            S->y[S->n] = G->mean[h];
            S->e[S->n++] = G->n > 1 ? G->sd[h] : 0;
        }
    }
    series *st = &s[nm], *ring = &s[nm + 1];
    slice(st, mem, nm, 2 * n);
    slice(ring, mem, nm + 1, 2 * n);
    st->e = ring->e = NULL;
    snprintf(st->name, sizeof st->name, "Pareto front");
    st->colour = ring->colour = "#000";
    st->style = S_LINE | S_DASH;
    ring->style = S_RING;
    ring->labels = labels;
    ring->below = lower;
    /* the staircase: the best value reachable with at most x NFE */
    int nc = 0;
    for (int i = 0; i < nf; i++) {
        const group *G = &R->groups[front[i]];
        if (i) st->x[nc] = G->nfe, st->y[nc] = R->groups[front[i - 1]].mean[h], nc++;
        st->x[nc] = G->nfe, st->y[nc] = G->mean[h], nc++;
        ring->x[i] = G->nfe;
        ring->y[i] = G->mean[h];
        labels[i] = G->first->variant;
    }
    st->n = nc;
    ring->n = nf;
    char title[200];
    snprintf(title, sizeof title, "%s (%s is better) vs NFE: the Pareto front", R->names[h],
             lower ? "lower" : "higher");
    svg_plot(f, "plot-pareto", title, "NFE (network evaluations per sample)", R->names[h], s, nm + 2, X_RULE);
    fprintf(f,
            "<p class=\"caption\">Every row of the table at its NFE; ringed and named: the Pareto front, the rows that "
            "no other row matches or beats on %s with as few or fewer NFE, joined by the best %s reachable at each "
            "NFE. %s</p>\n",
            R->names[h], R->names[h], caption_axes);
done:
    free(s);
    free(mem);
    free(front);
    free(labels);
}

void report_plot_metrics(const report *R, FILE *f, const char **methods, int nm)
{
    series *s = calloc((size_t)nm + 1, sizeof *s);
    double *mem = malloc((size_t)R->n_groups * 3 * sizeof *mem * (size_t)(nm ? nm : 1));
    if (!s || !mem) {
        free(s);
        free(mem);
        return;
    }
    for (int k = 0; k < R->n_names; k++) {
        if (R->bound[k]) continue; /* an interval's bounds are drawn in the table, not plotted alone */
        double lo = INFINITY, hi = -INFINITY;
        for (int g = 0; g < R->n_groups; g++)
            if (isfinite(R->groups[g].mean[k]) && !R->groups[g].first->snapshot)
                lo = fmin(lo, R->groups[g].mean[k]), hi = fmax(hi, R->groups[g].mean[k]);
        if (!(hi > lo)) continue; /* a constant (a reference value) says nothing against steps */
        for (int pass = 0; pass < 2; pass++) {
            for (int i = 0; i < nm; i++) {
                series *S = &s[i];
                snprintf(S->name, sizeof S->name, "%s", methods[i]);
                S->colour = method_colour(i);
                S->style = S_LINE | S_MARK;
                slice(S, mem, i, R->n_groups);
                for (int g = 0; g < R->n_groups; g++) {
                    const group *G = &R->groups[g];
                    if (strcmp(G->first->method, methods[i]) || G->first->snapshot) continue;
                    int j = S->n++;
                    S->x[j] = pass ? G->ms : G->first->steps;
                    S->y[j] = G->mean[k];
                    S->e[j] = G->n > 1 ? G->sd[k] : 0;
                }
                sort_by_x(S);
            }
            char title[256], id[128];
            snprintf(title, sizeof title, "%s vs %s", R->names[k], pass ? "sampling time" : "steps");
            snprintf(id, sizeof id, "plot-%s-%s", R->names[k], pass ? "time" : "steps");
            svg_plot(f, id, title, pass ? "ms per sample" : "steps", R->names[k], s, nm, X_RULE);
        }
    }
    fprintf(f, "<p class=\"caption\">%s%s</p>\n", caption_axes,
            R->budget ? " These plots and the Pareto front show each method's students at the end of their training; "
                        "the students at training snapshots are in the budget curve."
                      : "");
    free(s);
    free(mem);
}

/* A line of the budget curve: one method at one step count (and guidance
 * scale), its groups at each number of training iterations. */
static bool same_line(const row *a, const row *b)
{
    return !strcmp(a->method, b->method) && a->steps == b->steps && a->guided == b->guided &&
           (!a->guided || a->guidance == b->guidance);
}

void report_plot_budget(const report *R, FILE *f, const char **methods, int nm)
{
    if (!R->budget || !R->n_names || !R->n_groups) return;
    const int h = 0, n = R->n_groups;
    series *s = calloc((size_t)n, sizeof *s);
    double *mem = malloc((size_t)n * 3 * (size_t)n * sizeof *mem);
    int *line_of = malloc((size_t)n * sizeof *line_of);
    if (!s || !mem || !line_of) goto done;
    /* the lines, in the table's order: a group joins the first line it fits */
    int nl = 0;
    for (int g = 0; g < n; g++) {
        const row *r = R->groups[g].first;
        line_of[g] = -1;
        if (r->iterations <= 0) continue;
        int l = 0;
        while (l < g && !(line_of[l] >= 0 && same_line(R->groups[l].first, r))) l++;
        line_of[g] = l < g ? line_of[l] : nl++;
    }
    int drawn = 0;
    for (int l = 0; l < nl; l++) {
        series *S = &s[drawn];
        slice(S, mem, drawn, n);
        const row *first = NULL;
        int distinct = 0;
        for (int g = 0; g < n; g++) {
            if (line_of[g] != l) continue;
            const group *G = &R->groups[g];
            if (!first) first = G->first;
            bool seen = false;
            for (int j = 0; j < S->n; j++) seen |= S->x[j] == G->first->iterations;
            distinct += !seen;
            S->x[S->n] = G->first->iterations;
            S->y[S->n] = G->mean[h];
            S->e[S->n++] = G->n > 1 ? G->sd[h] : 0;
        }
        if (distinct < 2) continue; /* one budget: no curve */
        sort_by_x(S);
        int m = 0;
        while (m < nm && strcmp(methods[m], first->method)) m++;
        /* a method's second and later lines dashed, in its colour */
        bool later = false;
        for (int k = 0; k < drawn; k++) later |= s[k].colour == method_colour(m);
        /* a method with several lines names each by its step count */
        bool several = false;
        for (int g = 0; g < n && !several; g++)
            several = line_of[g] >= 0 && line_of[g] != l && !strcmp(R->groups[g].first->method, first->method);
        int len = snprintf(S->name, sizeof S->name, "%s", first->method);
        if (several && len > 0 && (size_t)len < sizeof S->name)
            len += snprintf(S->name + len, sizeof S->name - (size_t)len, ", %d steps", first->steps);
        if (several && first->guided && len > 0 && (size_t)len < sizeof S->name)
            snprintf(S->name + len, sizeof S->name - (size_t)len, ", w %g", first->guidance);
        S->colour = method_colour(m);
        S->style = S_LINE | S_MARK | (later ? S_DASH : 0);
        drawn++;
    }
    if (drawn) {
        char title[200];
        snprintf(title, sizeof title, "%s (%s is better) vs training iterations: the budget curve", R->names[h],
                 report_lower_better(R->names[h]) ? "lower" : "higher");
        fputs("<h3>Training budget</h3>\n", f);
        svg_plot(f, "plot-budget", title, "training iterations", R->names[h], s, drawn, X_LOG);
        fprintf(f,
                "<p class=\"caption\">Each method's student sampled on the same noise bank at the snapshots its "
                "training run kept (train.snapshots) and at the end of its training: one run per seed, not one run "
                "per budget, so a point before the end has the learning-rate schedule of the whole run. The "
                "iterations axis is logarithmic; error bars are the mean &plusmn; SD over seeds, on rows with 2 or "
                "more seeds.</p>\n");
    }
done:
    free(s);
    free(mem);
    free(line_of);
}

/* The smoothing of the training curves: an exponential moving average
 * whose time constant is a twentieth of the curve's logged points, at
 * least 2 (weight beta = 1 - 1 / max(2, n / 20) on the running value: 0.5
 * for the 20 points of a 1,000-step run logged every 50, 0.95 for 400),
 * divided by 1 - beta^t so its first points are not pulled towards 0; over
 * log(loss) when the axis is logarithmic, where a loss falling from 100 to
 * 0.5 would otherwise keep the average near its first values. Returns
 * beta. */
static double smooth(const double *y, double *out, int n, bool log_space)
{
    double beta = 1 - 1 / fmax(2, n / 20.0), m = 0, w = 1;
    for (int i = 0; i < n; i++) {
        double v = log_space ? log(y[i]) : y[i];
        if (!isfinite(v)) {
            out[i] = NAN;
            continue;
        }
        m = beta * m + (1 - beta) * v;
        w *= beta;
        out[i] = log_space ? exp(m / (1 - w)) : m / (1 - w);
    }
    return beta;
}

/* Training curves: loss_avg (the mean since the previous log line; else
 * loss) against step from the metrics.jsonl of each method's first
 * distilled student, the logged values faint behind their smoothed curve. */
void report_plot_training(const report *R, FILE *f, const char **methods, int nm)
{
    series *s = calloc(2 * (size_t)nm + 1, sizeof *s);
    if (!s) return;
    int ns = 0;
    for (int i = 0; i < nm; i++) {
        const row *r = NULL;
        for (int j = 0; j < R->n && !r; j++)
            if (!R->rows[j].status && !strcmp(R->rows[j].method, methods[i]) && !strcmp(R->rows[j].model, "student"))
                r = &R->rows[j];
        if (!r || !r->dir[0]) continue;
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
            S->colour = method_colour(i);
            S->style = S_LINE | S_FAINT;
            ns++;
            snprintf(s[ns].name, sizeof s[ns].name, "%s", methods[i]); /* its smoothed curve, filled in below */
            s[ns].colour = method_colour(i);
            s[ns].style = S_LINE;
            ns++;
        }
    }
    /* one axis rule for all the curves, so the smoothing follows the axis */
    int total = 0;
    for (int i = 0; i < ns; i += 2) total += s[i].n;
    double *all = malloc(((size_t)total + 1) * sizeof *all);
    bool log_space = false;
    if (all) {
        int m = 0;
        for (int i = 0; i < ns; i += 2)
            for (int j = 0; j < s[i].n; j++) all[m++] = s[i].y[j];
        log_space = axis_log(all, m);
    }
    free(all);
    bool ok = ns > 0;
    double beta_lo = 1, beta_hi = 0;
    for (int i = 0; i + 1 < ns; i += 2) {
        series *raw = &s[i], *sm = &s[i + 1];
        sm->x = malloc((size_t)raw->n * sizeof *sm->x);
        sm->y = malloc((size_t)raw->n * sizeof *sm->y);
        if (!sm->x || !sm->y) {
            ok = false;
            continue;
        }
        memcpy(sm->x, raw->x, (size_t)raw->n * sizeof *sm->x);
        double beta = smooth(raw->y, sm->y, raw->n, log_space);
        beta_lo = fmin(beta_lo, beta), beta_hi = fmax(beta_hi, beta);
        sm->n = raw->n;
    }
    if (ok) {
        fputs("<h3>Training curves</h3>\n", f);
        svg_plot(f, "plot-training", "training loss vs step", "step", "loss", s, ns, X_LINEAR);
        fprintf(f,
                "<p class=\"caption\">Faint: the logged loss (loss_avg, the mean over each logging interval). "
                "Bold: its exponential moving average with a time constant of a twentieth of the curve's logged "
                "points, at least 2 (weight %.2g",
                beta_lo);
        if (beta_hi > beta_lo) fprintf(f, " to %.2g", beta_hi);
        fprintf(f,
                " on the running value per logged point), bias-corrected at the start%s. The loss axis is logarithmic "
                "when all its values are positive and the largest is more than 10 times the smallest.</p>\n",
                log_space ? " and taken over log(loss), the axis being logarithmic" : "");
    }
    for (int i = 0; i < ns; i++) {
        free(s[i].x);
        free(s[i].y);
    }
    free(s);
}
