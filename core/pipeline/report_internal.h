/* The report's internals, shared by its tables (report_tables.c: run
 * folders collected into rows, groups over seeds, CSV, Markdown, JSON),
 * plots (report_plots.c: inline SVG of metrics and training curves) and
 * HTML page (report_html.c). See flash_report_write in pipeline.h.
 *
 * A sweep directory holds runs/<id>/ folders, each with run.json (what the
 * sweep planned: method, seed, guidance, the method of each `flash run`
 * variant and its noise-correction flag), config.yaml (the resolved config),
 * results.json (written by `flash run`), DONE when the run finished (written
 * atomically) or FAILED with the error. Collection reads only these files,
 * so run folders produced elsewhere (a cluster job array) are collected the
 * same way. A plain `flash run` directory (results.json and no runs/) is
 * collected as one run, and a folder holding a report's own results.json
 * (its "rows": results/table1/) is rebuilt from those rows alone: tables
 * and plots, without the sample pictures and training curves, which need
 * the run folders. */
#ifndef FLASH_PIPELINE_REPORT_INTERNAL_H
#define FLASH_PIPELINE_REPORT_INTERNAL_H

#include "flash/pipeline.h"

#define FLASH_SWEEP_DONE "DONE"
#define FLASH_SWEEP_FAILED "FAILED"
#define FLASH_SWEEP_META "run.json"

#define MAXM 16

typedef struct row {
    char run[160], method[128], variant[128], model[16], error[512], dir[4300];
    int index, order;
    int status; /* 0 ok, 1 failed, 2 not finished */
    bool seeded, guided;
    long seed;
    double guidance;
    int steps, nc;
    int iterations; /* the student's training iterations (results.json), 0 unknown or a teacher */
    bool snapshot;  /* sampled from a training snapshot, before the run's last iteration */
    double nfe, seconds, distill_seconds, samples;
    double m[MAXM];
} row;

/* A difference between two groups' means against their spread over seeds
 * (report_tables.c: sig_compare): not applicable (no such pair), no spread
 * to judge it by (a trained row with 1 seed, or two teacher rows), within
 * the spread, beyond it. */
enum { SIG_NA, SIG_NO_SPREAD, SIG_WITHIN, SIG_BEYOND };

typedef struct group {
    const row *first;
    int n;
    double mean[MAXM], sd[MAXM], nfe, ms, ms_sd;
    /* per metric: rank (1 = best, 0 = no value) and the significance of
     * the differences from the baseline and from the next-ranked group */
    int rank[MAXM];
    signed char vs_base[MAXM], vs_next[MAXM];
} group;

typedef struct report {
    row *rows;
    int n, cap;
    char names[MAXM][64];
    int n_names;
    /* per metric: the metrics that hold its interval's bounds (NAME_lo and
     * NAME_hi, as fd's `bootstrap:` reports them), else -1; bound[k]: k is
     * such a bound, shown in its metric's cells and not as a column */
    int lo[MAXM], hi[MAXM];
    bool bound[MAXM];
    group *groups;
    int n_groups;
    int base; /* group index or -1 */
    int n_ok, n_failed, n_pending;
    bool rebuilt;          /* rows read from a report's results.json, no run folders */
    bool budget;           /* some row is a snapshot: an iterations column and the budget curve */
    char stored_base[128]; /* that results.json's baseline */
} report;


/* The metric cells of a group's row in a table: the mean (± sd over seeds),
 * the interval [lo, hi] where the metric has one (the bounds' means over
 * seeds), the significance marks and, with a baseline, the relative value. */
typedef struct cell_fmt {
    const char *mean_sd, *mean, *pct, *no_pct;
    const char *mark_base, *mark_next; /* a difference beyond the spread (group.vs_base, vs_next) */
} cell_fmt;
extern const cell_fmt report_html_cells;

/* report_tables.c */
void report_fmt(char *b, size_t n, double v);
double report_rel(const report *R, const group *G, int k);
bool report_exists(const char *path);
const char *report_status_name(int s);
void report_metric_cells(const report *R, const group *G, const cell_fmt *c, FILE *f);
bool report_lower_better(const char *metric);
/* false for a metric that is not ranked: a metric's own further values
 * (kid_sd, diversity_min, kid_sd_b) and diversity (best at 1) */
bool report_ranked(const char *metric);
/* the sentence under a table that says how differences are marked; html
 * escapes names and uses entities */
void report_sig_caption(const report *R, FILE *f, bool html);
/* the sentence that says what a cell's [lo, hi] is; nothing without one */
void report_interval_caption(const report *R, FILE *f, bool html);
/* Pairs of rows that a metric and its second judge (the same metric in
 * another evaluator's features: fd and fd_b) order oppositely. */
void report_judges_caption(const report *R, FILE *f, bool html);
/* report_html.c */
void report_html_esc(FILE *f, const char *s);
int report_method_list(const report *R, const char **out);
int report_step_list(const report *R, int *out);
void report_write_html(const report *R, const char *dir, FILE *f);
/* report_plots.c: the headline metric against NFE with its Pareto front,
 * each metric against steps and sampling time; training curves from each
 * run's metrics.jsonl */
void report_plot_pareto(const report *R, FILE *f, const char **methods, int nm);
void report_plot_metrics(const report *R, FILE *f, const char **methods, int nm);
void report_plot_training(const report *R, FILE *f, const char **methods, int nm);
/* the headline metric against training iterations, a line per method (and
 * step count) whose student was sampled at several: its snapshots and the
 * end of its training (train.snapshots, `snapshot:` variants) */
void report_plot_budget(const report *R, FILE *f, const char **methods, int nm);

#endif
