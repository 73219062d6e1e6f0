/* Report tables: the run folders of a sweep (or one `flash run` directory)
 * collected into rows, grouped over seeds (mean and sample standard
 * deviation, relative columns against a baseline, by default the 25-step
 * teacher = 100% as in the paper's Appendix A), written as results.csv,
 * results.json, table.md and table.csv; and flash_report_write, which
 * writes them and report.html (see report_internal.h). */
#include "pipeline/report_internal.h"

#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

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

/* an integer field; 0 when it is missing (a cast of NaN is undefined) */
static int inum(const flash_cfg *map, const char *key)
{
    double v = num(map, key);
    return isfinite(v) && fabs(v) < 1e9 ? (int)v : 0;
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

bool report_exists(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0;
}

/* More judges of a finished run, scored after it (tools/repro/judges.sh):
 * DIR/judges/<variant>.json, the `flash eval` output for that variant's
 * samples. Its metrics join the row's; a metric the run measured itself
 * keeps the run's value (the run's fd has its bootstrap interval). */
static flash_status read_judges(report *R, const char *dir, row *r, flash_error *err)
{
    char path[4600];
    snprintf(path, sizeof path, "%s/judges/%s.json", dir, r->variant);
    if (!report_exists(path)) return FLASH_OK;
    flash_cfg *j = NULL;
    flash_status st = flash_cfg_load(path, &j, err);
    if (st) return st;
    const flash_cfg *m = flash_cfg_get(j, "metrics");
    for (size_t k = 0; m && k < flash_cfg_len(m); k++) {
        const char *name = flash_cfg_key_at(m, k);
        const int i = metric_index(R, name);
        if (i >= 0 && isnan(r->m[i])) r->m[i] = num(m, name);
    }
    flash_cfg_free(j);
    return FLASH_OK;
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
    const int first = R->n;
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
        r->iterations = inum(v, "iterations");
        r->snapshot = !strcmp(str(v, "snapshot", "false"), "true");
        /* without a sweep's methods, a snapshot is its `from:` variant's
         * method at fewer iterations */
        const char *from = str(v, "from", NULL);
        for (int j = first; !meta && r->snapshot && from && j < R->n - 1; j++)
            if (!strcmp(R->rows[j].variant, from)) snprintf(r->method, sizeof r->method, "%s", R->rows[j].method);
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
        if ((st = read_judges(R, dir, r, err))) break;
    }
    flash_cfg_free(res);
    return st;
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
    if (report_exists(done)) {
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
        r->status = report_exists(failed) ? 1 : 2;
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

/* A report's own results.json (its "rows", as write_json writes them): the
 * rows come back as they were collected, in their order, without run
 * folders, so a published table (results/table1/) can be rebuilt with the
 * report's current tables and plots. */
static flash_status read_report_rows(report *R, const flash_cfg *res, flash_error *err)
{
    const flash_cfg *names = flash_cfg_get(res, "metrics"), *rows = flash_cfg_get(res, "rows");
    for (size_t k = 0; names && k < flash_cfg_len(names); k++) {
        const char *s = flash_cfg_scalar(flash_cfg_at(names, k));
        if (s) metric_index(R, s);
    }
    for (size_t i = 0; i < flash_cfg_len(rows); i++) {
        const flash_cfg *v = flash_cfg_at(rows, i);
        row *r = new_row(R, err);
        if (!r) return FLASH_ERR_NOMEM;
        r->index = (int)i;
        snprintf(r->run, sizeof r->run, "%s", str(v, "run", "?"));
        snprintf(r->method, sizeof r->method, "%s", str(v, "method", "?"));
        snprintf(r->variant, sizeof r->variant, "%s", str(v, "variant", "?"));
        snprintf(r->model, sizeof r->model, "%s", str(v, "model", "?"));
        snprintf(r->error, sizeof r->error, "%s", str(v, "error", ""));
        const char *status = str(v, "status", "ok");
        r->status = !strcmp(status, "ok") ? 0 : !strcmp(status, "failed") ? 1 : 2;
        double seed = num(v, "seed");
        r->seeded = !isnan(seed);
        r->seed = r->seeded ? (long)seed : 0;
        r->guidance = num(v, "guidance");
        r->guided = !isnan(r->guidance);
        r->steps = inum(v, "steps");
        r->iterations = inum(v, "iterations");
        r->snapshot = !strcmp(str(v, "snapshot", "false"), "true");
        r->nfe = num(v, "nfe");
        r->seconds = num(v, "sample_seconds");
        r->distill_seconds = num(v, "distill_seconds");
        /* the sample count is not stored; ms_per_sample = 1e3 seconds / samples gives it back */
        r->samples = 1e3 * r->seconds / num(v, "ms_per_sample");
        const flash_cfg *m = flash_cfg_get(v, "metrics");
        for (size_t k = 0; m && k < flash_cfg_len(m); k++) {
            int j = metric_index(R, flash_cfg_key_at(m, k));
            if (j >= 0) r->m[j] = num(m, flash_cfg_key_at(m, k));
        }
    }
    const flash_cfg *runs = flash_cfg_get(res, "runs");
    R->n_ok = inum(runs, "ok");
    R->n_failed = inum(runs, "failed");
    R->n_pending = inum(runs, "unfinished");
    snprintf(R->stored_base, sizeof R->stored_base, "%s", str(res, "baseline", ""));
    R->rebuilt = true;
    return FLASH_OK;
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
        if (!report_exists(path))
            return flash_error_set(err, FLASH_ERR_INPUT, "%s has neither runs/ (a sweep) nor results.json", dir);
        flash_cfg *res = NULL;
        flash_status st = flash_cfg_load(path, &res, err);
        if (st) return st;
        if (flash_cfg_get(res, "rows")) {
            st = read_report_rows(R, res, err);
            flash_cfg_free(res);
            return st;
        }
        flash_cfg_free(res);
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
        if (report_exists(meta)) st = collect_run(R, sub, names[i], err);
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

bool report_lower_better(const char *metric)
{
    /* metrics do not declare a direction: scores of agreement (accuracy,
     * precision, recall, coverage, density, inception score) are better
     * higher; distances and likelihood losses (fd, sliced_wasserstein,
     * gmm_nll) lower */
    static const char *const higher[] = {"acc", "precision", "recall", "coverage", "density", "inception"};
    for (size_t i = 0; i < sizeof higher / sizeof *higher; i++)
        if (strstr(metric, higher[i])) return false;
    return true;
}

bool report_ranked(const char *metric)
{
    /* a metric's own further values (kid_sd, diversity_min, and with an
     * evaluator's suffix kid_sd_b): a tail segment at the end or before
     * the suffix */
    static const char *const tails[] = {"_sd", "_min", "_max", "_mean", NULL};
    for (int i = 0; tails[i]; i++)
        for (const char *p = strstr(metric, tails[i]); p; p = strstr(p + 1, tails[i])) {
            const char c = p[strlen(tails[i])];
            if (c == 0 || c == '_') return false;
        }
    /* diversity is best at 1 (as diverse as real data), neither lower nor
     * higher */
    return strncmp(metric, "diversity", 9) != 0;
}

/* the teacher's rows train nothing: on the shared noise bank their values
 * do not move with a training seed */
static bool untrained(const group *G)
{
    return !strcmp(G->first->model, "teacher");
}

/* A group's spread over training seeds for metric k: 1 exact (untrained),
 * 0 none to judge by (1 seed, or a sweep without a seed axis), 2 a
 * standard error SD / sqrt(seeds) in *se. */
static int spread(const group *G, int k, double *se)
{
    *se = 0;
    if (untrained(G)) return 1;
    if (G->n < 2 || !isfinite(G->sd[k])) return 0;
    *se = G->sd[k] / sqrt((double)G->n);
    return 2;
}

/* Beyond the spread when the mean +- 2 SE intervals of the two groups do not
 * overlap: |mean_a - mean_b| > 2 (SE_a + SE_b), 4 SE for equal SEs. That
 * lies between a two-sided 5% z-test (2.8 SE) and Welch's t-test with 2
 * seeds a row (6.1 SE), and unlike either it can be checked by eye from
 * the table's mean +- SD cells. */
static signed char sig_compare(const group *a, const group *b, int k)
{
    if (!isfinite(a->mean[k]) || !isfinite(b->mean[k])) return SIG_NA;
    double sa, sb;
    int ka = spread(a, k, &sa), kb = spread(b, k, &sb);
    if (!ka || !kb || (ka == 1 && kb == 1)) return SIG_NO_SPREAD;
    return fabs(a->mean[k] - b->mean[k]) > 2 * (sa + sb) ? SIG_BEYOND : SIG_WITHIN;
}

/* Per metric: the groups ranked best first, each compared with the
 * baseline and with the next-ranked group. */
static void significance(report *R)
{
    int *order = malloc(((size_t)R->n_groups + 1) * sizeof *order);
    if (!order) return; /* the marks are left out, the tables are still right */
    for (int k = 0; k < R->n_names; k++) {
        bool lower = report_lower_better(R->names[k]);
        int n = 0;
        for (int g = 0; g < R->n_groups; g++) {
            group *G = &R->groups[g];
            G->rank[k] = 0;
            G->vs_base[k] = R->base >= 0 && g != R->base ? sig_compare(G, &R->groups[R->base], k) : SIG_NA;
            G->vs_next[k] = SIG_NA;
            if (!isfinite(G->mean[k]) || R->bound[k] || !report_ranked(R->names[k])) continue;
            int j = n++; /* insertion sort: stable, so ties keep the table's order */
            while (j > 0 && (lower ? R->groups[order[j - 1]].mean[k] > G->mean[k]
                                   : R->groups[order[j - 1]].mean[k] < G->mean[k])) {
                order[j] = order[j - 1];
                j--;
            }
            order[j] = g;
        }
        for (int i = 0; i < n; i++) {
            group *G = &R->groups[order[i]];
            G->rank[k] = i + 1;
            if (i + 1 < n) G->vs_next[k] = sig_compare(G, &R->groups[order[i + 1]], k);
        }
    }
    free(order);
}

/* NAME_lo and NAME_hi beside NAME: NAME's interval (fd's bootstrap) */
static void pair_bounds(report *R)
{
    for (int k = 0; k < R->n_names; k++) {
        R->lo[k] = R->hi[k] = -1;
        R->bound[k] = false;
    }
    for (int k = 0; k < R->n_names; k++) {
        char name[80];
        int lo = -1, hi = -1;
        for (int j = 0; j < R->n_names; j++) {
            snprintf(name, sizeof name, "%s_lo", R->names[k]);
            if (!strcmp(R->names[j], name)) lo = j;
            snprintf(name, sizeof name, "%s_hi", R->names[k]);
            if (!strcmp(R->names[j], name)) hi = j;
        }
        if (lo < 0 || hi < 0) continue;
        R->lo[k] = lo;
        R->hi[k] = hi;
        R->bound[lo] = R->bound[hi] = true;
    }
}

static flash_status aggregate(report *R, const char *baseline, flash_error *err)
{
    pair_bounds(R);
    for (int i = 0; i < R->n; i++) R->budget |= !R->rows[i].status && R->rows[i].snapshot;
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
    /* the first group of that name, as for a method or the default: guided
     * rows share their variant's name */
    R->base = -1;
    for (int g = 0; g < R->n_groups && baseline && R->base < 0; g++)
        if (!strcmp(R->groups[g].first->variant, baseline)) R->base = g;
    for (int g = 0; g < R->n_groups && baseline && R->base < 0; g++)
        if (!strcmp(R->groups[g].first->method, baseline)) R->base = g;
    if (baseline && R->base < 0) fprintf(stderr, "flash report: no variant or method '%s' for the baseline\n", baseline);
    for (int g = 0; g < R->n_groups && !baseline && R->base < 0; g++)
        if (!strcmp(R->groups[g].first->model, "teacher") && R->groups[g].first->steps == 25) R->base = g;
    significance(R);
    return FLASH_OK;
}

void report_fmt(char *b, size_t n, double v)
{
    if (isfinite(v))
        snprintf(b, n, "%.4g", v);
    else
        snprintf(b, n, "-");
}

double report_rel(const report *R, const group *G, int k)
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

const char *report_status_name(int s)
{
    return s == 0 ? "ok" : s == 1 ? "failed" : "unfinished";
}

/* results.csv: the measured columns first, timings last (they differ
 * between two runs of the same sweep; everything before them does not) */
static void write_rows_csv(const report *R, FILE *f)
{
    fputs(R->budget ? "run,method,variant,model,seed,guidance,steps,nfe,iterations,status"
                    : "run,method,variant,model,seed,guidance,steps,nfe,status",
          f);
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
        if (R->budget) {
            fputc(',', f);
            if (r->iterations > 0) fprintf(f, "%d", r->iterations);
        }
        fprintf(f, ",%s", report_status_name(r->status));
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
    fputs(R->budget ? "method,variant,guidance,steps,iterations,nfe,seeds,ms_per_sample,ms_per_sample_sd"
                    : "method,variant,guidance,steps,nfe,seeds,ms_per_sample,ms_per_sample_sd",
          f);
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
        if (R->budget) {
            if (G->first->iterations > 0) fprintf(f, "%d", G->first->iterations);
            fputc(',', f);
        }
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
            csv_num(f, report_rel(R, G, k));
        }
        fputc('\n', f);
    }
}

static const cell_fmt md_cells = {" %s ± %s |", " %s |", " %.1f%% |", " - |", "†", "‡"};
const cell_fmt report_html_cells = {"<td>%s &plusmn; %s</td>", "<td>%s</td>", "<td>%.1f%%</td>", "<td>-</td>",
                                    "&dagger;", "&Dagger;"};

void report_metric_cells(const report *R, const group *G, const cell_fmt *c, FILE *f)
{
    char a[128], b[128], marks[32], lo[32], hi[32];
    for (int k = 0; k < R->n_names; k++) {
        if (R->bound[k]) continue;
        snprintf(marks, sizeof marks, "%s%s%s", G->vs_base[k] == SIG_BEYOND || G->vs_next[k] == SIG_BEYOND ? " " : "",
                 G->vs_base[k] == SIG_BEYOND ? c->mark_base : "", G->vs_next[k] == SIG_BEYOND ? c->mark_next : "");
        report_fmt(a, sizeof a, G->mean[k]);
        report_fmt(b, sizeof b, G->sd[k]);
        char *last = G->n > 1 ? b : a; /* the interval, then the marks, follow the cell's last number */
        if (R->lo[k] >= 0 && isfinite(G->mean[R->lo[k]]) && isfinite(G->mean[R->hi[k]])) {
            report_fmt(lo, sizeof lo, G->mean[R->lo[k]]);
            report_fmt(hi, sizeof hi, G->mean[R->hi[k]]);
            size_t used = strlen(last);
            snprintf(last + used, sizeof a - used, " [%s, %s]", lo, hi);
        }
        strncat(last, marks, sizeof a - strlen(last) - 1);
        if (G->n > 1)
            fprintf(f, c->mean_sd, a, b);
        else
            fprintf(f, c->mean, a);
        if (R->base >= 0) {
            double p = report_rel(R, G, k);
            if (isfinite(p))
                fprintf(f, c->pct, p);
            else
                fputs(c->no_pct, f);
        }
    }
}

void report_sig_caption(const report *R, FILE *f, bool html)
{
    int spread_rows = 0, one_seed = 0;
    for (int g = 0; g < R->n_groups; g++) {
        const group *G = &R->groups[g];
        if (!untrained(G)) G->n > 1 ? spread_rows++ : one_seed++;
    }
    if (!R->n_groups || !R->n_names) return;
    fputs(html ? "<p class=\"caption\">" : "\n", f);
    fputs("Differences beyond the spread over seeds: ", f);
    if (R->base >= 0) {
        fputs(html ? "&dagger; from the baseline (" : "† from the baseline (", f);
        if (html)
            report_html_esc(f, R->groups[R->base].first->variant);
        else
            fputs(R->groups[R->base].first->variant, f);
        fputs("), ", f);
    }
    fputs(html ? "&Dagger;" : "‡", f);
    fputs(" from the next row in that metric's ranking (best first; lower is better for", f);
    int n_low = 0, n_high = 0;
    int n_none = 0;
    for (int k = 0; k < R->n_names; k++)
        if (!R->bound[k] && report_ranked(R->names[k]) && report_lower_better(R->names[k]))
            fprintf(f, "%s %s", n_low++ ? "," : "", R->names[k]);
    if (!n_low) fputs(" none", f);
    for (int k = 0; k < R->n_names; k++)
        if (!R->bound[k] && report_ranked(R->names[k]) && !report_lower_better(R->names[k]))
            fprintf(f, "%s %s", n_high++ ? "," : "; higher for", R->names[k]);
    for (int k = 0; k < R->n_names; k++)
        if (!R->bound[k] && !report_ranked(R->names[k]))
            fprintf(f, "%s %s", n_none++ ? "," : "; not ranked: a metric's spread and diversity (best at 1):",
                    R->names[k]);
    fputs("), each when the two rows' mean ", f);
    fputs(html ? "&plusmn;" : "±", f);
    fputs(" 2 SE intervals do not overlap (SE = SD / ", f);
    fputs(html ? "&radic;" : "√", f);
    fputs("seeds; the teacher's rows train nothing and count as exact, and two of them are not compared).", f);
    if (one_seed && !spread_rows)
        fputs(" 1 seed: no spread, so nothing is marked (every trained row has one seed).", f);
    else if (!one_seed && !spread_rows)
        fputs(" No row is trained: nothing is marked.", f);
    else if (one_seed) {
        fputs(" 1 seed: no spread, not marked:", f);
        int i = 0;
        for (int g = 0; g < R->n_groups; g++) {
            const group *G = &R->groups[g];
            if (untrained(G) || G->n > 1) continue;
            fputs(i++ ? ", " : " ", f);
            if (html)
                report_html_esc(f, G->first->variant);
            else
                fputs(G->first->variant, f);
        }
        fputc('.', f);
    }
    fputs(html ? "</p>\n" : "\n", f);
}

void report_interval_caption(const report *R, FILE *f, bool html)
{
    int n = 0;
    for (int k = 0; k < R->n_names; k++)
        if (R->lo[k] >= 0) n++;
    if (!n || !R->n_groups) return;
    fputs(html ? "<p class=\"caption\">[lo, hi] after" : "\n[lo, hi] after", f);
    for (int k = 0, i = 0; k < R->n_names; k++)
        if (R->lo[k] >= 0) fprintf(f, "%s %s", i++ ? "," : "", R->names[k]);
    fputs(": the 95% bootstrap interval over the noise bank (the metric's bootstrap key: the run's samples "
          "resampled, the reference fixed; 2.5% and 97.5% percentiles less the bootstrap's estimate of the "
          "metric's small-sample bias), where the value would fall on another bank of this size. The noise bank "
          "is shared by every row and seed, so the ",
          f);
    fputs(html ? "&plusmn;" : "±", f);
    fputs(" over seeds is training's spread alone and does not include it. With several seeds each bound is the "
          "mean over seeds of the per-seed bounds (the typical interval of one run; each seed's are in "
          "results.csv).",
          f);
    fputs(html ? "</p>\n" : "\n", f);
}

/* Metric k2 is metric k1 measured by a second judge (in another
 * evaluator's feature space): k2's name is k1's with a suffix (the
 * evaluator's `suffix:`: fd and fd_b), which is not one of a metric's own
 * further values, and neither is an interval's bound. */
static bool second_judge(const report *R, int k1, int k2)
{
    /* a metric's own further values end in these (kid_sd, diversity_min) */
    static const char *const tails[] = {"_sd", "_min", "_max", "_lo", "_hi", "_mean", NULL};
    const size_t n = strlen(R->names[k1]);
    if (k1 == k2 || R->bound[k1] || R->bound[k2]) return false;
    if (!report_ranked(R->names[k1]) || !report_ranked(R->names[k2])) return false;
    if (strncmp(R->names[k2], R->names[k1], n) || R->names[k2][n] != '_' || !R->names[k2][n + 1]) return false;
    for (int i = 0; tails[i]; i++)
        if (!strcmp(R->names[k2] + n, tails[i])) return false;
    return report_lower_better(R->names[k1]) == report_lower_better(R->names[k2]);
}

void report_judges_caption(const report *R, FILE *f, bool html)
{
    enum { SHOWN = 12 };
    int listed = 0, total = 0;
    for (int k1 = 0; k1 < R->n_names; k1++)
        for (int k2 = 0; k2 < R->n_names; k2++) {
            if (!second_judge(R, k1, k2)) continue;
            for (int a = 0; a < R->n_groups; a++)
                for (int b = a + 1; b < R->n_groups; b++) {
                    const group *A = &R->groups[a], *B = &R->groups[b];
                    const double d1 = A->mean[k1] - B->mean[k1], d2 = A->mean[k2] - B->mean[k2];
                    if (!isfinite(d1) || !isfinite(d2) || d1 == 0 || d2 == 0 || (d1 > 0) == (d2 > 0)) continue;
                    if (!total++) {
                        fputs(html ? "<p class=\"caption\">" : "\n", f);
                        fputs("Orderings that hold in one feature space only (the two judges rank the rows "
                              "oppositely):",
                              f);
                    }
                    if (listed++ >= SHOWN) continue;
                    char a1[32], a2[32], b1[32], b2[32];
                    report_fmt(a1, sizeof a1, A->mean[k1]);
                    report_fmt(b1, sizeof b1, B->mean[k1]);
                    report_fmt(a2, sizeof a2, A->mean[k2]);
                    report_fmt(b2, sizeof b2, B->mean[k2]);
                    fputs(listed > 1 ? "; " : " ", f);
                    if (html) {
                        report_html_esc(f, A->first->variant);
                        fputs(" vs ", f);
                        report_html_esc(f, B->first->variant);
                    } else {
                        fprintf(f, "%s vs %s", A->first->variant, B->first->variant);
                    }
                    const char *lt = html ? "&lt;" : "<", *gt = html ? "&gt;" : ">";
                    fprintf(f, " (%s %s %s %s, %s %s %s %s)", R->names[k1], a1, d1 < 0 ? lt : gt, b1, R->names[k2], a2,
                            d2 < 0 ? lt : gt, b2);
                }
        }
    if (!total) return;
    if (listed > SHOWN) fprintf(f, "; and %d more (results.json)", listed - SHOWN);
    fputs(".", f);
    fputs(html ? "</p>\n" : "\n", f);
}

static void write_table_md(const report *R, FILE *f)
{
    fputs(R->budget ? "| method | variant | steps | iterations | NFE | seeds | ms/sample |"
                    : "| method | variant | steps | NFE | seeds | ms/sample |",
          f);
    for (int k = 0; k < R->n_names; k++) {
        if (R->bound[k]) continue;
        fprintf(f, " %s |", R->names[k]);
        if (R->base >= 0) fprintf(f, " %s %% |", R->names[k]);
    }
    fputs(R->budget ? "\n|---|---|---:|---:|---:|---:|---:|" : "\n|---|---|---:|---:|---:|---:|", f);
    for (int k = 0; k < R->n_names; k++)
        if (!R->bound[k]) fputs(R->base >= 0 ? "---:|---:|" : "---:|", f);
    fputc('\n', f);
    char a[64];
    for (int g = 0; g < R->n_groups; g++) {
        const group *G = &R->groups[g];
        report_fmt(a, sizeof a, G->nfe);
        fprintf(f, "| %s | %s", G->first->method, G->first->variant);
        if (G->first->guided) fprintf(f, " (w %g)", G->first->guidance);
        fprintf(f, " | %d", G->first->steps);
        if (R->budget) {
            char it[32] = "-";
            if (G->first->iterations > 0) snprintf(it, sizeof it, "%d", G->first->iterations);
            fprintf(f, " | %s", it);
        }
        fprintf(f, " | %s | %d |", a, G->n);
        report_fmt(a, sizeof a, G->ms);
        fprintf(f, " %s |", a);
        report_metric_cells(R, G, &md_cells, f);
        fputc('\n', f);
    }
    if (R->base >= 0)
        fprintf(f, "\n%% columns: 100%% = %s (%d steps).\n", R->groups[R->base].first->variant,
                R->groups[R->base].first->steps);
    report_sig_caption(R, f, false);
    report_interval_caption(R, f, false);
    report_judges_caption(R, f, false);
    for (int i = 0; i < R->n; i++)
        if (R->rows[i].status)
            fprintf(f, "\n- %s: %s: %s", R->rows[i].run, report_status_name(R->rows[i].status), R->rows[i].error);
    fputc('\n', f);
}

static const char *sig_json(signed char s)
{
    return s == SIG_BEYOND      ? "\"beyond\""
           : s == SIG_WITHIN    ? "\"within\""
           : s == SIG_NO_SPREAD ? "\"no spread\""
                                : "null";
}

static void write_json(const report *R, FILE *f)
{
    fputs("{\n  \"metrics\": [", f);
    for (int k = 0; k < R->n_names; k++) {
        if (k) fputs(", ", f);
        flash_json_str(f, R->names[k]);
    }
    fputs("],\n  \"baseline\": ", f);
    if (R->base >= 0)
        flash_json_str(f, R->groups[R->base].first->variant);
    else
        fputs("null", f);
    fprintf(f, ",\n  \"runs\": {\"ok\": %d, \"failed\": %d, \"unfinished\": %d},\n  \"rows\": [", R->n_ok, R->n_failed,
            R->n_pending);
    for (int i = 0; i < R->n; i++) {
        const row *r = &R->rows[i];
        fputs(i ? ",\n    {\"run\": " : "\n    {\"run\": ", f);
        flash_json_str(f, r->run);
        flash_json_field_str(f, "method", r->method);
        flash_json_field_str(f, "variant", r->variant);
        flash_json_field_str(f, "model", r->model);
        fputs(", \"seed\": ", f);
        if (r->seeded)
            fprintf(f, "%ld", r->seed);
        else
            fputs("null", f);
        flash_json_field_num(f, "guidance", r->guided ? r->guidance : NAN);
        fprintf(f, ", \"status\": \"%s\", \"steps\": %d", report_status_name(r->status), r->steps);
        if (r->iterations > 0)
            fprintf(f, ", \"iterations\": %d, \"snapshot\": %s", r->iterations, r->snapshot ? "true" : "false");
        flash_json_field_num(f, "nfe", r->nfe);
        flash_json_field_num(f, "sample_seconds", r->seconds);
        flash_json_field_num(f, "ms_per_sample", 1e3 * r->seconds / r->samples);
        flash_json_field_num(f, "distill_seconds", r->distill_seconds);
        fputs(", \"metrics\": {", f);
        int first = 1;
        for (int k = 0; k < R->n_names; k++) {
            if (!isfinite(r->m[k])) continue;
            if (!first) fputs(", ", f);
            flash_json_str(f, R->names[k]);
            fputs(": ", f);
            flash_json_num(f, r->m[k]);
            first = 0;
        }
        fputs("}", f);
        if (r->status) {
            flash_json_field_str(f, "error", r->error);
        }
        fputc('}', f);
    }
    fputs("\n  ],\n  \"table\": [", f);
    for (int g = 0; g < R->n_groups; g++) {
        const group *G = &R->groups[g];
        fputs(g ? ",\n    {\"method\": " : "\n    {\"method\": ", f);
        flash_json_str(f, G->first->method);
        flash_json_field_str(f, "variant", G->first->variant);
        flash_json_field_num(f, "guidance", G->first->guided ? G->first->guidance : NAN);
        fprintf(f, ", \"steps\": %d", G->first->steps);
        if (G->first->iterations > 0) fprintf(f, ", \"iterations\": %d", G->first->iterations);
        flash_json_field_num(f, "nfe", G->nfe);
        fprintf(f, ", \"seeds\": %d", G->n);
        flash_json_field_num(f, "ms_per_sample", G->ms);
        fputs(", \"metrics\": {", f);
        for (int k = 0; k < R->n_names; k++) {
            if (k) fputs(", ", f);
            flash_json_str(f, R->names[k]);
            fputs(": {\"mean\": ", f);
            flash_json_num(f, G->mean[k]);
            flash_json_field_num(f, "sd", G->sd[k]);
            flash_json_field_num(f, "pct", report_rel(R, G, k));
            fprintf(f, ", \"rank\": %d, \"vs_baseline\": %s, \"vs_next\": %s}", G->rank[k], sig_json(G->vs_base[k]),
                    sig_json(G->vs_next[k]));
        }
        fputs("}}", f);
    }
    fputs("\n  ]\n}\n", f);
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
    return flash_atomic_finish(&af, err);
}

static const char *g_dir; /* the report's title, for report_write_html through the writer type */

static void html_writer(const report *R, FILE *f)
{
    report_write_html(R, g_dir, f);
}

flash_status flash_report_write(const char *dir, const char *baseline, const char *out, FILE *table, flash_error *err)
{
    report R;
    memset(&R, 0, sizeof R);
    if (!out) out = dir;
    flash_status st = collect(&R, dir, err);
    if (!baseline && R.stored_base[0]) baseline = R.stored_base; /* a rebuilt table keeps its baseline */
    if (!st) st = aggregate(&R, baseline, err);
    if (!st) st = flash_mkdirs(out, err);
    g_dir = dir;
    if (!st) st = write_one(&R, out, "results.csv", write_rows_csv, err);
    if (!st) st = write_one(&R, out, "results.json", write_json, err);
    if (!st) st = write_one(&R, out, "table.csv", write_table_csv, err);
    if (!st) st = write_one(&R, out, "table.md", write_table_md, err);
    if (!st) st = write_one(&R, out, "report.html", html_writer, err);
    if (!st && table) {
        write_table_md(&R, table);
        fflush(table);
        fprintf(stderr, "flash report: wrote %s/results.csv, results.json, table.md, table.csv, report.html\n", out);
    }
    free(R.rows);
    free(R.groups);
    return st;
}

