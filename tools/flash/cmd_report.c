/* flash report RUNDIR [--baseline NAME] [--out DIR]
 *
 * Collects a sweep directory (runs/<id>/ folders, see report.h) or a single
 * `flash run` directory, and writes tables (Markdown, CSV, JSON: mean and
 * spread over seeds, relative columns against a baseline, by default the
 * 25-step teacher = 100% as in the paper's Appendix A) and one
 * self-contained HTML page: the tables, every method's samples at every
 * step count on the shared noise bank (the PNGs `flash run` drew, embedded
 * as base64), noise correction on and off side by side, and inline-SVG plots
 * (each metric against steps and against sampling time, training curves
 * from each run's metrics.jsonl). */
#include "cli.h"
#include "report.h"

#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static const char help[] =
    "usage: flash report RUNDIR [--baseline NAME] [--out DIR]\n"
    "\n"
    "Builds tables (Markdown, CSV, JSON) and a self-contained HTML report\n"
    "with sample pictures and plots from a sweep directory (its runs/<id>/\n"
    "folders, wherever they were produced) or a `flash run` directory.\n"
    "Writes results.csv (one row per run and variant), results.json,\n"
    "table.md, table.csv (mean and spread over seeds) and report.html.\n"
    "\n"
    "  --baseline NAME  the variant or method that is 100% in the relative\n"
    "                   columns (default: the 25-step teacher)\n"
    "  --out DIR        where to write (default RUNDIR)\n"
    "  -h, --help       this text\n";

#define MAXM 16

typedef struct row {
    char run[160], method[128], variant[128], model[16], error[512], dir[4300];
    int index, order;
    int status; /* 0 ok, 1 failed, 2 not finished */
    bool seeded, guided;
    long seed;
    double guidance;
    int steps, nc;
    double nfe, seconds, distill_seconds, samples;
    double m[MAXM];
} row;

typedef struct group {
    const row *first;
    int n;
    double mean[MAXM], sd[MAXM], nfe, ms, ms_sd;
} group;

typedef struct report {
    row *rows;
    int n, cap;
    char names[MAXM][64];
    int n_names;
    group *groups;
    int n_groups;
    int base; /* group index or -1 */
    int n_ok, n_failed, n_pending;
} report;

static row *new_row(report *R, flash_error *err)
{
    if (R->n == R->cap) {
        int cap = R->cap ? 2 * R->cap : 64;
        row *r = realloc(R->rows, (size_t)cap * sizeof *r);
        if (!r) {
            flash_error_set(err, FLASH_ERR_NOMEM, "flash report: out of memory");
            return NULL;
        }
        R->rows = r;
        R->cap = cap;
    }
    row *r = &R->rows[R->n++];
    memset(r, 0, sizeof *r);
    for (int k = 0; k < MAXM; k++) r->m[k] = NAN;
    r->nc = -1;
    r->nfe = r->seconds = r->distill_seconds = r->samples = NAN;
    return r;
}

static double num(const flash_cfg *map, const char *key)
{
    const char *s = flash_cfg_scalar(flash_cfg_get(map, key));
    if (!s || !strcmp(s, "null") || !s[0]) return NAN;
    char *end;
    double v = strtod(s, &end);
    return *end ? NAN : v;
}

static const char *str(const flash_cfg *map, const char *key, const char *def)
{
    const char *s = flash_cfg_scalar(flash_cfg_get(map, key));
    return s && strcmp(s, "null") ? s : def;
}

static int metric_index(report *R, const char *name)
{
    for (int k = 0; k < R->n_names; k++)
        if (strcmp(R->names[k], name) == 0) return k;
    if (R->n_names == MAXM) return -1;
    snprintf(R->names[R->n_names], sizeof R->names[0], "%s", name);
    return R->n_names++;
}

static bool exists(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0;
}

/* Rows from a `flash run` results.json; meta (a sweep's run.json) names
 * each variant's method and noise-correction flag. */
static flash_status read_results(report *R, const char *dir, const flash_cfg *meta, const row *proto, flash_error *err)
{
    char path[4400];
    snprintf(path, sizeof path, "%s/results.json", dir);
    flash_cfg *res = NULL;
    flash_status st = flash_cfg_load(path, &res, err);
    if (st) return st;
    const flash_cfg *vars = flash_cfg_get(res, "variants");
    double samples = num(res, "samples");
    const flash_cfg *entries = meta ? flash_cfg_get(meta, "entries") : NULL;
    for (size_t i = 0; vars && i < flash_cfg_len(vars); i++) {
        const flash_cfg *v = flash_cfg_at(vars, i);
        row *r = new_row(R, err);
        if (!r) {
            flash_cfg_free(res);
            return FLASH_ERR_NOMEM;
        }
        *r = *proto;
        r->order = (int)i;
        snprintf(r->variant, sizeof r->variant, "%s", str(v, "name", "?"));
        if (!meta) snprintf(r->method, sizeof r->method, "%s", r->variant);
        for (size_t k = 0; entries && k < flash_cfg_len(entries); k++) {
            const flash_cfg *e = flash_cfg_at(entries, k);
            if (strcmp(str(e, "name", ""), r->variant) != 0) continue;
            snprintf(r->method, sizeof r->method, "%s", str(e, "method", r->method));
            const char *nc = str(e, "noise_correction", NULL);
            r->nc = nc ? strcmp(nc, "true") == 0 : -1;
        }
        snprintf(r->model, sizeof r->model, "%s", str(v, "model", "?"));
        r->steps = (int)num(v, "steps");
        r->nfe = num(v, "nfe");
        r->seconds = num(v, "seconds");
        r->distill_seconds = num(v, "distill_seconds");
        r->samples = samples;
        const flash_cfg *m = flash_cfg_get(v, "metrics");
        for (size_t k = 0; m && k < flash_cfg_len(m); k++) {
            int j = metric_index(R, flash_cfg_key_at(m, k));
            if (j >= 0) r->m[j] = num(m, flash_cfg_key_at(m, k));
        }
    }
    flash_cfg_free(res);
    return FLASH_OK;
}

static int cmp_name(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static flash_status collect_run(report *R, const char *dir, const char *id, flash_error *err)
{
    char path[8800];
    snprintf(path, sizeof path, "%s/%s", dir, FLASH_SWEEP_META);
    flash_cfg *meta = NULL;
    flash_status st = flash_cfg_load(path, &meta, err);
    if (st) return st;
    row proto;
    memset(&proto, 0, sizeof proto);
    for (int k = 0; k < MAXM; k++) proto.m[k] = NAN;
    proto.nc = -1;
    proto.nfe = proto.seconds = proto.distill_seconds = proto.samples = NAN;
    snprintf(proto.run, sizeof proto.run, "%s", str(meta, "id", id));
    snprintf(proto.method, sizeof proto.method, "%s", str(meta, "method", id));
    snprintf(proto.model, sizeof proto.model, "%s", str(meta, "model", "?"));
    snprintf(proto.dir, sizeof proto.dir, "%.4200s", dir);
    proto.index = (int)num(meta, "index");
    double seed = num(meta, "seed"), g = num(meta, "guidance");
    proto.seeded = !isnan(seed);
    proto.seed = proto.seeded ? (long)seed : 0;
    proto.guided = !isnan(g);
    proto.guidance = g;
    char done[8800], failed[8800];
    snprintf(done, sizeof done, "%s/%s", dir, FLASH_SWEEP_DONE);
    snprintf(failed, sizeof failed, "%s/%s", dir, FLASH_SWEEP_FAILED);
    if (exists(done)) {
        st = read_results(R, dir, meta, &proto, err);
        R->n_ok++;
    } else {
        row *r = new_row(R, err);
        if (!r) {
            flash_cfg_free(meta);
            return FLASH_ERR_NOMEM;
        }
        *r = proto;
        snprintf(r->variant, sizeof r->variant, "-");
        r->status = exists(failed) ? 1 : 2;
        if (r->status == 1) {
            char *text = NULL;
            size_t n = 0;
            flash_error e2 = {0};
            if (flash_read_file(failed, &text, &n, &e2) == FLASH_OK) {
                text[strcspn(text, "\n")] = 0;
                snprintf(r->error, sizeof r->error, "%s", text);
            }
            free(text);
            R->n_failed++;
        } else {
            snprintf(r->error, sizeof r->error, "not finished");
            R->n_pending++;
        }
    }
    flash_cfg_free(meta);
    return st;
}

static int cmp_rows(const void *a, const void *b)
{
    const row *x = a, *y = b;
    if (x->index != y->index) return x->index < y->index ? -1 : 1;
    int c = strcmp(x->run, y->run);
    if (c) return c;
    return (x->order > y->order) - (x->order < y->order);
}

static flash_status collect(report *R, const char *dir, flash_error *err)
{
    char runs[4300];
    snprintf(runs, sizeof runs, "%s/runs", dir);
    DIR *d = opendir(runs);
    if (!d) {
        char path[4400];
        snprintf(path, sizeof path, "%s/results.json", dir);
        if (!exists(path))
            return flash_error_set(err, FLASH_ERR_IO, "flash report: %s has neither runs/ (a sweep) nor results.json", dir);
        row proto;
        memset(&proto, 0, sizeof proto);
        for (int k = 0; k < MAXM; k++) proto.m[k] = NAN;
        proto.nc = -1;
        snprintf(proto.run, sizeof proto.run, ".");
        snprintf(proto.dir, sizeof proto.dir, "%s", dir);
        R->n_ok = 1;
        return read_results(R, dir, NULL, &proto, err);
    }
    char **names = NULL;
    size_t n = 0, cap = 0;
    struct dirent *e;
    flash_status st = FLASH_OK;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        if (n == cap) {
            char **g = realloc(names, (cap = cap ? 2 * cap : 64) * sizeof *g);
            if (!g) {
                st = flash_error_set(err, FLASH_ERR_NOMEM, "flash report: out of memory");
                break;
            }
            names = g;
        }
        if (!(names[n] = strdup(e->d_name))) {
            st = flash_error_set(err, FLASH_ERR_NOMEM, "flash report: out of memory");
            break;
        }
        n++;
    }
    closedir(d);
    if (n) qsort(names, n, sizeof *names, cmp_name);
    for (size_t i = 0; i < n && !st; i++) {
        char sub[4400], meta[8800];
        snprintf(sub, sizeof sub, "%.4200s/%.150s", runs, names[i]);
        snprintf(meta, sizeof meta, "%s/%s", sub, FLASH_SWEEP_META);
        if (exists(meta)) st = collect_run(R, sub, names[i], err);
    }
    for (size_t i = 0; i < n; i++) free(names[i]);
    free(names);
    if (!st && R->n) qsort(R->rows, (size_t)R->n, sizeof *R->rows, cmp_rows);
    return st;
}

static bool same_group(const row *a, const row *b)
{
    return !strcmp(a->method, b->method) && !strcmp(a->variant, b->variant) && a->guided == b->guided &&
           (!a->guided || a->guidance == b->guidance);
}

/* mean and sample standard deviation of the finite values */
static void stats(const double *v, int n, double *mean, double *sd)
{
    double s = 0, q = 0;
    int k = 0;
    for (int i = 0; i < n; i++)
        if (isfinite(v[i])) s += v[i], k++;
    *mean = k ? s / k : NAN;
    for (int i = 0; i < n; i++)
        if (isfinite(v[i])) q += (v[i] - *mean) * (v[i] - *mean);
    *sd = k > 1 ? sqrt(q / (k - 1)) : (k ? 0 : NAN);
}

static flash_status aggregate(report *R, const char *baseline, flash_error *err)
{
    if (!(R->groups = calloc((size_t)R->n + 1, sizeof *R->groups)))
        return flash_error_set(err, FLASH_ERR_NOMEM, "flash report: out of memory");
    double *buf = malloc(((size_t)R->n + 1) * sizeof *buf), *buf2 = malloc(((size_t)R->n + 1) * sizeof *buf2);
    if (!buf || !buf2) {
        free(buf);
        free(buf2);
        return flash_error_set(err, FLASH_ERR_NOMEM, "flash report: out of memory");
    }
    for (int i = 0; i < R->n; i++) {
        const row *r = &R->rows[i];
        if (r->status) continue;
        int g = 0;
        while (g < R->n_groups && !same_group(R->groups[g].first, r)) g++;
        if (g == R->n_groups) R->groups[R->n_groups++].first = r;
    }
    /* a method's variants together, each method where it first appeared */
    for (int a = 1; a < R->n_groups; a++) {
        int pa = 0;
        while (strcmp(R->groups[pa].first->method, R->groups[a].first->method)) pa++;
        for (int b = a; b > 0; b--) {
            int pb = 0;
            while (strcmp(R->groups[pb].first->method, R->groups[b - 1].first->method)) pb++;
            if (pb <= pa) break;
            group t = R->groups[b];
            R->groups[b] = R->groups[b - 1];
            R->groups[b - 1] = t;
        }
    }
    for (int g = 0; g < R->n_groups; g++) {
        group *G = &R->groups[g];
        for (int k = -2; k < R->n_names; k++) {
            int n = 0;
            for (int i = 0; i < R->n; i++) {
                const row *r = &R->rows[i];
                if (r->status || !same_group(G->first, r)) continue;
                buf[n++] = k == -2 ? r->nfe : k == -1 ? 1e3 * r->seconds / r->samples : r->m[k];
            }
            G->n = n;
            double sd;
            if (k == -2)
                stats(buf, n, &G->nfe, &sd);
            else if (k == -1)
                stats(buf, n, &G->ms, &G->ms_sd);
            else
                stats(buf, n, &G->mean[k], &G->sd[k]);
        }
    }
    free(buf);
    free(buf2);
    R->base = -1;
    for (int g = 0; g < R->n_groups && baseline; g++)
        if (!strcmp(R->groups[g].first->variant, baseline)) R->base = g;
    for (int g = 0; g < R->n_groups && baseline && R->base < 0; g++)
        if (!strcmp(R->groups[g].first->method, baseline)) R->base = g;
    if (baseline && R->base < 0) fprintf(stderr, "flash report: no variant or method '%s' for the baseline\n", baseline);
    for (int g = 0; g < R->n_groups && !baseline && R->base < 0; g++)
        if (!strcmp(R->groups[g].first->model, "teacher") && R->groups[g].first->steps == 25) R->base = g;
    return FLASH_OK;
}

static void fmt(char *b, size_t n, double v)
{
    if (isfinite(v))
        snprintf(b, n, "%.4g", v);
    else
        snprintf(b, n, "-");
}

static double rel(const report *R, const group *G, int k)
{
    if (R->base < 0) return NAN;
    double b = R->groups[R->base].mean[k];
    return b != 0 && isfinite(b) ? 100.0 * G->mean[k] / b : NAN;
}

static void csv_field(FILE *f, const char *s)
{
    if (!strpbrk(s, ",\"\n")) {
        fputs(s, f);
        return;
    }
    fputc('"', f);
    for (; *s; s++) {
        if (*s == '"') fputc('"', f);
        if (*s != '\n') fputc(*s, f);
    }
    fputc('"', f);
}

static void csv_num(FILE *f, double v)
{
    if (isfinite(v)) fprintf(f, "%.9g", v);
}

static const char *status_name(int s)
{
    return s == 0 ? "ok" : s == 1 ? "failed" : "unfinished";
}

/* results.csv: the measured columns first, timings last (they differ
 * between two runs of the same sweep; everything before them does not) */
static void write_rows_csv(const report *R, FILE *f)
{
    fputs("run,method,variant,model,seed,guidance,steps,nfe,status", f);
    for (int k = 0; k < R->n_names; k++) fprintf(f, ",%s", R->names[k]);
    fputs(",error,sample_seconds,ms_per_sample,distill_seconds\n", f);
    for (int i = 0; i < R->n; i++) {
        const row *r = &R->rows[i];
        csv_field(f, r->run);
        fputc(',', f);
        csv_field(f, r->method);
        fputc(',', f);
        csv_field(f, r->variant);
        fprintf(f, ",%s,", r->model);
        if (r->seeded) fprintf(f, "%ld", r->seed);
        fputc(',', f);
        if (r->guided) fprintf(f, "%g", r->guidance);
        fputc(',', f);
        if (!r->status) fprintf(f, "%d", r->steps);
        fputc(',', f);
        csv_num(f, r->nfe);
        fprintf(f, ",%s", status_name(r->status));
        for (int k = 0; k < R->n_names; k++) {
            fputc(',', f);
            csv_num(f, r->m[k]);
        }
        fputc(',', f);
        csv_field(f, r->error);
        fputc(',', f);
        csv_num(f, r->seconds);
        fputc(',', f);
        csv_num(f, 1e3 * r->seconds / r->samples);
        fputc(',', f);
        csv_num(f, r->distill_seconds);
        fputc('\n', f);
    }
}

static void write_table_csv(const report *R, FILE *f)
{
    fputs("method,variant,guidance,steps,nfe,seeds,ms_per_sample,ms_per_sample_sd", f);
    for (int k = 0; k < R->n_names; k++) fprintf(f, ",%s_mean,%s_sd,%s_pct", R->names[k], R->names[k], R->names[k]);
    fputc('\n', f);
    for (int g = 0; g < R->n_groups; g++) {
        const group *G = &R->groups[g];
        csv_field(f, G->first->method);
        fputc(',', f);
        csv_field(f, G->first->variant);
        fputc(',', f);
        if (G->first->guided) fprintf(f, "%g", G->first->guidance);
        fprintf(f, ",%d,", G->first->steps);
        csv_num(f, G->nfe);
        fprintf(f, ",%d,", G->n);
        csv_num(f, G->ms);
        fputc(',', f);
        csv_num(f, G->ms_sd);
        for (int k = 0; k < R->n_names; k++) {
            fputc(',', f);
            csv_num(f, G->mean[k]);
            fputc(',', f);
            csv_num(f, G->sd[k]);
            fputc(',', f);
            csv_num(f, rel(R, G, k));
        }
        fputc('\n', f);
    }
}

/* The metric cells of a group's row in the Markdown and HTML tables: the
 * mean (± sd over seeds) and, with a baseline, the relative value. */
typedef struct cell_fmt {
    const char *mean_sd, *mean, *pct, *no_pct;
} cell_fmt;

static const cell_fmt md_cells = {" %s ± %s |", " %s |", " %.1f%% |", " - |"};
static const cell_fmt html_cells = {"<td>%s &plusmn; %s</td>", "<td>%s</td>", "<td>%.1f%%</td>", "<td>-</td>"};

static void metric_cells(const report *R, const group *G, const cell_fmt *c, FILE *f)
{
    char a[64], b[64];
    for (int k = 0; k < R->n_names; k++) {
        fmt(a, sizeof a, G->mean[k]);
        fmt(b, sizeof b, G->sd[k]);
        if (G->n > 1)
            fprintf(f, c->mean_sd, a, b);
        else
            fprintf(f, c->mean, a);
        if (R->base >= 0) {
            double p = rel(R, G, k);
            if (isfinite(p))
                fprintf(f, c->pct, p);
            else
                fputs(c->no_pct, f);
        }
    }
}

static void write_table_md(const report *R, FILE *f)
{
    fputs("| method | variant | steps | NFE | seeds | ms/sample |", f);
    for (int k = 0; k < R->n_names; k++) {
        fprintf(f, " %s |", R->names[k]);
        if (R->base >= 0) fprintf(f, " %s %% |", R->names[k]);
    }
    fputs("\n|---|---|---:|---:|---:|---:|", f);
    for (int k = 0; k < R->n_names; k++) fputs(R->base >= 0 ? "---:|---:|" : "---:|", f);
    fputc('\n', f);
    char a[64];
    for (int g = 0; g < R->n_groups; g++) {
        const group *G = &R->groups[g];
        fmt(a, sizeof a, G->nfe);
        fprintf(f, "| %s | %s", G->first->method, G->first->variant);
        if (G->first->guided) fprintf(f, " (w %g)", G->first->guidance);
        fprintf(f, " | %d | %s | %d |", G->first->steps, a, G->n);
        fmt(a, sizeof a, G->ms);
        fprintf(f, " %s |", a);
        metric_cells(R, G, &md_cells, f);
        fputc('\n', f);
    }
    if (R->base >= 0)
        fprintf(f, "\n%% columns: 100%% = %s (%d steps).\n", R->groups[R->base].first->variant,
                R->groups[R->base].first->steps);
    for (int i = 0; i < R->n; i++)
        if (R->rows[i].status)
            fprintf(f, "\n- %s: %s: %s", R->rows[i].run, status_name(R->rows[i].status), R->rows[i].error);
    fputc('\n', f);
}

static void write_json(const report *R, FILE *f)
{
    fputs("{\n  \"metrics\": [", f);
    for (int k = 0; k < R->n_names; k++) {
        if (k) fputs(", ", f);
        flash_cli_json_str(f, R->names[k]);
    }
    fputs("],\n  \"baseline\": ", f);
    if (R->base >= 0)
        flash_cli_json_str(f, R->groups[R->base].first->variant);
    else
        fputs("null", f);
    fprintf(f, ",\n  \"runs\": {\"ok\": %d, \"failed\": %d, \"unfinished\": %d},\n  \"rows\": [", R->n_ok, R->n_failed,
            R->n_pending);
    for (int i = 0; i < R->n; i++) {
        const row *r = &R->rows[i];
        fputs(i ? ",\n    {\"run\": " : "\n    {\"run\": ", f);
        flash_cli_json_str(f, r->run);
        flash_cli_json_field_str(f, "method", r->method);
        flash_cli_json_field_str(f, "variant", r->variant);
        flash_cli_json_field_str(f, "model", r->model);
        fputs(", \"seed\": ", f);
        if (r->seeded)
            fprintf(f, "%ld", r->seed);
        else
            fputs("null", f);
        flash_cli_json_field_num(f, "guidance", r->guided ? r->guidance : NAN);
        fprintf(f, ", \"status\": \"%s\", \"steps\": %d", status_name(r->status), r->steps);
        flash_cli_json_field_num(f, "nfe", r->nfe);
        flash_cli_json_field_num(f, "sample_seconds", r->seconds);
        flash_cli_json_field_num(f, "ms_per_sample", 1e3 * r->seconds / r->samples);
        flash_cli_json_field_num(f, "distill_seconds", r->distill_seconds);
        fputs(", \"metrics\": {", f);
        int first = 1;
        for (int k = 0; k < R->n_names; k++) {
            if (!isfinite(r->m[k])) continue;
            if (!first) fputs(", ", f);
            flash_cli_json_str(f, R->names[k]);
            fputs(": ", f);
            flash_cli_json_num(f, r->m[k]);
            first = 0;
        }
        fputs("}", f);
        if (r->status) {
            flash_cli_json_field_str(f, "error", r->error);
        }
        fputc('}', f);
    }
    fputs("\n  ],\n  \"table\": [", f);
    for (int g = 0; g < R->n_groups; g++) {
        const group *G = &R->groups[g];
        fputs(g ? ",\n    {\"method\": " : "\n    {\"method\": ", f);
        flash_cli_json_str(f, G->first->method);
        flash_cli_json_field_str(f, "variant", G->first->variant);
        flash_cli_json_field_num(f, "guidance", G->first->guided ? G->first->guidance : NAN);
        fprintf(f, ", \"steps\": %d", G->first->steps);
        flash_cli_json_field_num(f, "nfe", G->nfe);
        fprintf(f, ", \"seeds\": %d", G->n);
        flash_cli_json_field_num(f, "ms_per_sample", G->ms);
        fputs(", \"metrics\": {", f);
        for (int k = 0; k < R->n_names; k++) {
            if (k) fputs(", ", f);
            flash_cli_json_str(f, R->names[k]);
            fputs(": {\"mean\": ", f);
            flash_cli_json_num(f, G->mean[k]);
            flash_cli_json_field_num(f, "sd", G->sd[k]);
            flash_cli_json_field_num(f, "pct", rel(R, G, k));
            fputc('}', f);
        }
        fputs("}}", f);
    }
    fputs("\n  ]\n}\n", f);
}

/* ---- HTML ---- */

static void html_esc(FILE *f, const char *s)
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
    if (!exists(path) || flash_read_file(path, &buf, &n, &e) != FLASH_OK) return 0;
    fprintf(f, "<img width=\"%d\" alt=\"", width);
    html_esc(f, alt);
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
    html_esc(f, title);
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
    html_esc(f, xl);
    fprintf(f, "%s</text>\n<text x=\"14\" y=\"%g\" transform=\"rotate(-90 14 %g)\" text-anchor=\"middle\">",
            logx ? " (log scale)" : "", (T + H - B) / 2, (T + H - B) / 2);
    html_esc(f, yl);
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
        html_esc(f, s[i].name);
        fputs("</text>\n", f);
    }
    fputs("</svg>\n", f);
#undef SX
#undef SY
}

static int method_list(const report *R, const char **out)
{
    int n = 0;
    for (int g = 0; g < R->n_groups; g++) {
        int k = 0;
        while (k < n && strcmp(out[k], R->groups[g].first->method)) k++;
        if (k == n) out[n++] = R->groups[g].first->method;
    }
    return n;
}

static int step_list(const report *R, int *out)
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
        html_esc(f, methods[i]);
        fputs("</th>", f);
        for (int j = 0; j < ns; j++) {
            fputs("<td>", f);
            for (int g = 0; g < R->n_groups; g++) {
                const row *r = R->groups[g].first;
                if (!strcmp(r->method, methods[i]) && r->steps == steps[j]) {
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
        html_esc(f, on->variant);
        fputs("</td><td>", f);
        sample_png(f, off, 280);
        fputs("<br>off: ", f);
        html_esc(f, off->variant);
        fputs("</td></tr>\n", f);
    }
    if (shown) fputs("</table>\n", f);
}

static void html_metric_plots(const report *R, FILE *f, const char **methods, int nm)
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
static void html_training(const report *R, FILE *f, const char **methods, int nm)
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

static void write_html(const report *R, const char *dir, FILE *f)
{
    fputs("<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>flash report</title>\n<style>"
          "body{font-family:sans-serif;margin:24px;color:#222}table{border-collapse:collapse;margin:8px 0}"
          "td,th{border:1px solid #bbb;padding:3px 8px;text-align:right}th{background:#eef}"
          "table.grid td{text-align:center}.failed{color:#b00}svg{margin:6px}</style></head><body>\n<h1>flash report: ",
          f);
    html_esc(f, dir);
    fprintf(f, "</h1>\n<p>%d runs complete, %d failed, %d unfinished.", R->n_ok, R->n_failed, R->n_pending);
    if (R->base >= 0) {
        fputs(" Relative columns: 100% = ", f);
        html_esc(f, R->groups[R->base].first->variant);
        fputc('.', f);
    }
    fputs("</p>\n<h2>Results (mean &plusmn; sd over seeds)</h2>\n<table><tr><th>method</th><th>variant</th><th>steps</th>"
          "<th>NFE</th><th>seeds</th><th>ms/sample</th>",
          f);
    for (int k = 0; k < R->n_names; k++) {
        fputs("<th>", f);
        html_esc(f, R->names[k]);
        fputs("</th>", f);
        if (R->base >= 0) fputs("<th>%</th>", f);
    }
    fputs("</tr>\n", f);
    char a[64], b[64];
    for (int g = 0; g < R->n_groups; g++) {
        const group *G = &R->groups[g];
        fputs("<tr><td>", f);
        html_esc(f, G->first->method);
        fputs("</td><td>", f);
        html_esc(f, G->first->variant);
        fmt(a, sizeof a, G->nfe);
        fmt(b, sizeof b, G->ms);
        fprintf(f, "</td><td>%d</td><td>%s</td><td>%d</td><td>%s</td>", G->first->steps, a, G->n, b);
        metric_cells(R, G, &html_cells, f);
        fputs("</tr>\n", f);
    }
    fputs("</table>\n", f);
    if (R->n_failed + R->n_pending) {
        fputs("<h3>Runs without results</h3>\n<ul>", f);
        for (int i = 0; i < R->n; i++)
            if (R->rows[i].status) {
                fputs("<li class=\"failed\">", f);
                html_esc(f, R->rows[i].run);
                fprintf(f, " (%s): ", status_name(R->rows[i].status));
                html_esc(f, R->rows[i].error);
                fputs("</li>", f);
            }
        fputs("</ul>\n", f);
    }
    const char **methods = calloc((size_t)R->n_groups + 1, sizeof *methods);
    int *steps = calloc((size_t)R->n_groups + 1, sizeof *steps);
    if (methods && steps) {
        int nm = method_list(R, methods), ns = step_list(R, steps);
        html_samples(R, f, methods, nm, steps, ns);
        html_nc(R, f);
        html_metric_plots(R, f, methods, nm);
        html_training(R, f, methods, nm);
    }
    free(methods);
    free(steps);
    fputs("</body></html>\n", f);
}

typedef void (*writer)(const report *R, FILE *f);

static flash_status write_one(const report *R, const char *out, const char *name, writer w, flash_error *err)
{
    char path[4400];
    snprintf(path, sizeof path, "%s/%s", out, name);
    flash_atomic_file af;
    flash_status st = flash_atomic_open(&af, path, err);
    if (st) return st;
    w(R, af.f);
    return flash_cli_atomic_close(&af, err);
}

static const char *g_dir; /* the report's title, for write_html through the writer type */

static void html_writer(const report *R, FILE *f)
{
    write_html(R, g_dir, f);
}

flash_status flash_report_write(const char *dir, const char *baseline, const char *out, int print, flash_error *err)
{
    report R;
    memset(&R, 0, sizeof R);
    if (!out) out = dir;
    flash_status st = collect(&R, dir, err);
    if (!st) st = aggregate(&R, baseline, err);
    if (!st) st = flash_mkdirs(out, err);
    g_dir = dir;
    if (!st) st = write_one(&R, out, "results.csv", write_rows_csv, err);
    if (!st) st = write_one(&R, out, "results.json", write_json, err);
    if (!st) st = write_one(&R, out, "table.csv", write_table_csv, err);
    if (!st) st = write_one(&R, out, "table.md", write_table_md, err);
    if (!st) st = write_one(&R, out, "report.html", html_writer, err);
    if (!st && print) {
        write_table_md(&R, stdout);
        fflush(stdout);
        fprintf(stderr, "flash report: wrote %s/results.csv, results.json, table.md, table.csv, report.html\n", out);
    }
    free(R.rows);
    free(R.groups);
    return st;
}

int flash_cmd_report(int argc, char **argv)
{
    if (flash_cli_wants_help(argc, argv)) {
        fputs(help, stdout);
        return FLASH_EXIT_OK;
    }
    const char *dir = NULL, *baseline = NULL, *out = NULL;
    for (int i = 1; i < argc; i++) {
        const char *o = argv[i];
        if (!strcmp(o, "--baseline") || !strcmp(o, "--out")) {
            if (i + 1 >= argc) {
                fprintf(stderr, "flash report: %s needs a value (see 'flash report --help')\n", o);
                return FLASH_EXIT_USAGE;
            }
            if (o[2] == 'b')
                baseline = argv[++i];
            else
                out = argv[++i];
        } else if (o[0] == '-' && o[1]) {
            fprintf(stderr, "flash report: unknown option '%s' (see 'flash report --help')\n", o);
            return FLASH_EXIT_USAGE;
        } else if (dir) {
            fprintf(stderr, "flash report: unexpected argument '%s' (see 'flash report --help')\n", o);
            return FLASH_EXIT_USAGE;
        } else {
            dir = o;
        }
    }
    if (!dir) {
        fprintf(stderr, "flash report: missing RUNDIR (see 'flash report --help')\n");
        return FLASH_EXIT_USAGE;
    }
    flash_error err = {0};
    flash_status st = flash_report_write(dir, baseline, out, 1, &err);
    return st ? flash_cli_fail("report", &err) : FLASH_EXIT_OK;
}
