/* The report's self-contained HTML page: the tables, every method's
 * samples at every step count on the shared noise bank (the PNGs `flash
 * run` drew, embedded as base64), noise correction on and off side by
 * side, and the plots of report_plots.c (see report_internal.h). */
#include "pipeline/report_internal.h"

#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* ---- HTML ---- */

void report_html_esc(FILE *f, const char *s)
{
    for (; *s; s++) {
        if (*s == '<')
            fputs("&lt;", f);
        else if (*s == '>')
            fputs("&gt;", f);
        else if (*s == '&')
            fputs("&amp;", f);
        else if (*s == '"')
            fputs("&quot;", f);
        else
            fputc(*s, f);
    }
}

/* The PNG at path as a data: URI <img>; nothing when it is missing. */
static int embed_png(FILE *f, const char *path, int width, const char *alt)
{
    static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    char *buf = NULL;
    size_t n = 0;
    flash_error e = {0};
    if (!report_exists(path) || flash_read_file(path, &buf, &n, &e) != FLASH_OK) return 0;
    fprintf(f, "<img width=\"%d\" alt=\"", width);
    report_html_esc(f, alt);
    fputs("\" src=\"data:image/png;base64,", f);
    const unsigned char *p = (const unsigned char *)buf;
    for (size_t i = 0; i < n; i += 3) {
        unsigned v = (unsigned)p[i] << 16 | (i + 1 < n ? (unsigned)p[i + 1] << 8 : 0) | (i + 2 < n ? p[i + 2] : 0);
        fputc(b64[v >> 18 & 63], f);
        fputc(b64[v >> 12 & 63], f);
        fputc(i + 1 < n ? b64[v >> 6 & 63] : '=', f);
        fputc(i + 2 < n ? b64[v & 63] : '=', f);
    }
    fputs("\">", f);
    free(buf);
    return 1;
}


int report_method_list(const report *R, const char **out)
{
    int n = 0;
    for (int g = 0; g < R->n_groups; g++) {
        int k = 0;
        while (k < n && strcmp(out[k], R->groups[g].first->method)) k++;
        if (k == n) out[n++] = R->groups[g].first->method;
    }
    return n;
}

int report_step_list(const report *R, int *out)
{
    int n = 0;
    for (int g = 0; g < R->n_groups; g++) {
        int s = R->groups[g].first->steps, k = 0;
        while (k < n && out[k] != s) k++;
        if (k == n) out[n++] = s;
    }
    for (int i = 1; i < n; i++)
        for (int j = i; j > 0 && out[j - 1] > out[j]; j--) {
            int t = out[j];
            out[j] = out[j - 1];
            out[j - 1] = t;
        }
    return n;
}

static int sample_png(FILE *f, const row *r, int width)
{
    char path[4600], alt[300];
    snprintf(path, sizeof path, "%s/plots/%s.png", r->dir, r->variant);
    snprintf(alt, sizeof alt, "%s, %d steps", r->variant, r->steps);
    return embed_png(f, path, width, alt);
}

static void html_samples(const report *R, FILE *f, const char **methods, int nm, const int *steps, int ns)
{
    fputs("<h2>Samples on the shared noise bank</h2>\n<p>Each picture: one method at one step count (first seed), "
          "sampled from the same noise and labels.</p>\n<table class=\"grid\"><tr><th>method</th>",
          f);
    for (int j = 0; j < ns; j++) fprintf(f, "<th>%d steps</th>", steps[j]);
    fputs("</tr>\n", f);
    for (int i = 0; i < nm; i++) {
        fputs("<tr><th>", f);
        report_html_esc(f, methods[i]);
        fputs("</th>", f);
        for (int j = 0; j < ns; j++) {
            fputs("<td>", f);
            for (int g = 0; g < R->n_groups; g++) {
                const row *r = R->groups[g].first;
                if (!r->snapshot && !strcmp(r->method, methods[i]) && r->steps == steps[j]) {
                    sample_png(f, r, 200);
                    break;
                }
            }
            fputs("</td>", f);
        }
        fputs("</tr>\n", f);
    }
    fputs("</table>\n", f);
}

/* Noise correction off next to on at the same step count, preferring a
 * pair sampled from one run's student. */
static void html_nc(const report *R, FILE *f)
{
    int shown = 0;
    for (int a = 0; a < R->n_groups; a++) {
        const row *off = R->groups[a].first;
        if (off->nc != 0) continue;
        const row *on = NULL;
        for (int b = 0; b < R->n_groups; b++) {
            const row *c = R->groups[b].first;
            if (c->nc != 1 || c->steps != off->steps) continue;
            if (!on || (!strcmp(c->run, off->run) && strcmp(on->run, off->run))) on = c;
        }
        if (!on) continue;
        if (!shown++) fputs("<h2>Noise correction on / off</h2>\n<table class=\"grid\">", f);
        fputs("<tr><td>", f);
        sample_png(f, on, 280);
        fputs("<br>on: ", f);
        report_html_esc(f, on->variant);
        fputs("</td><td>", f);
        sample_png(f, off, 280);
        fputs("<br>off: ", f);
        report_html_esc(f, off->variant);
        fputs("</td></tr>\n", f);
    }
    if (shown) fputs("</table>\n", f);
}


void report_write_html(const report *R, const char *dir, FILE *f)
{
    fputs("<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>flash report</title>\n<style>"
          "body{font-family:sans-serif;margin:24px;color:#222}table{border-collapse:collapse;margin:8px 0}"
          "td,th{border:1px solid #bbb;padding:3px 8px;text-align:right}th{background:#eef}"
          "table.grid td{text-align:center}.failed{color:#b00}svg{margin:6px}"
          ".caption{max-width:60em;color:#444;font-size:90%}</style></head><body>\n<h1>flash report: ",
          f);
    report_html_esc(f, dir);
    fprintf(f, "</h1>\n<p>%d runs complete, %d failed, %d unfinished.", R->n_ok, R->n_failed, R->n_pending);
    if (R->base >= 0) {
        fputs(" Relative columns: 100% = ", f);
        report_html_esc(f, R->groups[R->base].first->variant);
        fputc('.', f);
    }
    fputs("</p>\n<h2>Results (mean &plusmn; sd over seeds)</h2>\n<table><tr><th>method</th><th>variant</th><th>steps</th>",
          f);
    if (R->budget) fputs("<th>iterations</th>", f);
    fputs("<th>NFE</th><th>seeds</th><th>ms/sample</th>", f);
    for (int k = 0; k < R->n_names; k++) {
        if (R->bound[k]) continue;
        fputs("<th>", f);
        report_html_esc(f, R->names[k]);
        fputs("</th>", f);
        if (R->base >= 0) fputs("<th>%</th>", f);
    }
    fputs("</tr>\n", f);
    char a[64], b[64];
    for (int g = 0; g < R->n_groups; g++) {
        const group *G = &R->groups[g];
        fputs("<tr><td>", f);
        report_html_esc(f, G->first->method);
        fputs("</td><td>", f);
        report_html_esc(f, G->first->variant);
        report_fmt(a, sizeof a, G->nfe);
        report_fmt(b, sizeof b, G->ms);
        fprintf(f, "</td><td>%d</td>", G->first->steps);
        if (R->budget && G->first->iterations > 0) fprintf(f, "<td>%d</td>", G->first->iterations);
        if (R->budget && G->first->iterations <= 0) fputs("<td>-</td>", f);
        fprintf(f, "<td>%s</td><td>%d</td><td>%s</td>", a, G->n, b);
        report_metric_cells(R, G, &report_html_cells, f);
        fputs("</tr>\n", f);
    }
    fputs("</table>\n", f);
    report_sig_caption(R, f, true);
    report_interval_caption(R, f, true);
    report_judges_caption(R, f, true);
    if (R->n_failed + R->n_pending) {
        fputs("<h3>Runs without results</h3>\n<ul>", f);
        for (int i = 0; i < R->n; i++)
            if (R->rows[i].status) {
                fputs("<li class=\"failed\">", f);
                report_html_esc(f, R->rows[i].run);
                fprintf(f, " (%s): ", report_status_name(R->rows[i].status));
                report_html_esc(f, R->rows[i].error);
                fputs("</li>", f);
            }
        fputs("</ul>\n", f);
    }
    const char **methods = calloc((size_t)R->n_groups + 1, sizeof *methods);
    int *steps = calloc((size_t)R->n_groups + 1, sizeof *steps);
    if (methods && steps) {
        int nm = report_method_list(R, methods), ns = report_step_list(R, steps);
        if (R->rebuilt) {
            fputs("<p>Rebuilt from a report's results.json: the sample pictures and the training curves are in the "
                  "run folders, which this report was made without.</p>\n",
                  f);
        } else {
            html_samples(R, f, methods, nm, steps, ns);
            html_nc(R, f);
        }
        fputs("<h2>Plots</h2>\n", f);
        report_plot_pareto(R, f, methods, nm);
        report_plot_metrics(R, f, methods, nm);
        report_plot_budget(R, f, methods, nm);
        report_plot_training(R, f, methods, nm);
    }
    free(methods);
    free(steps);
    fputs("</body></html>\n", f);
}

