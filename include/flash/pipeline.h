/* Whole pipelines as library calls: what `flash run`, `flash sweep` and
 * `flash report` do, for a C program as for the command line (which is
 * argument handling around these calls).
 *
 * - flash_run_pipeline: the teacher (trained first when the config has
 *   `teacher_train:` and its checkpoint is missing, else loaded, or
 *   analytic), each of the config's `run.variants` (a teacher sampler, a
 *   student distilled with the config plus the variant's `set:`, or an
 *   earlier variant's student sampled differently with `from:`, or at a
 *   step of its train.snapshots with `snapshot:`), every
 *   variant sampled on one fixed noise bank, then the config's `metrics:`;
 *   results.json, samples/, plots/ and one run directory per distilled
 *   variant in out_dir.
 * - flash_sweep_plan / _execute: a sweep file (a base config and axes:
 *   variants, step counts, seeds, guidance scales) expanded into runs, each
 *   one `flash run` child process in DIR/runs/<id>/ on a shared noise bank,
 *   `jobs` at a time, resumable; or written as a Slurm job array.
 * - flash_report_write: tables and a self-contained HTML report from run
 *   directories, wherever they ran.
 *
 * The pipeline's device is its one top-level `device:` key (cpu or cuda,
 * default cpu): the teacher's training, each distillation, sampling and
 * the metrics' networks run there.
 *
 * Library code prints nothing by itself: progress lines go to the `log`
 * stream and tables to the `table` stream an options struct names (NULL:
 * none). */
#ifndef FLASH_PIPELINE_H
#define FLASH_PIPELINE_H

#include <stdio.h>

#include "flash/flash.h"
#include "flash/schema.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- flash run -------------------------------------------------------- */

typedef struct flash_run_opts {
    size_t size;              /* sizeof(flash_run_opts) */
    const flash_cfg *root;    /* the resolved pipeline (borrowed) */
    flash_registry *registry; /* plugins loaded for it */
    const char *config_path;  /* recorded in results.json */
    const char *out_dir;      /* the run's directory */
    FILE *log;                /* "flash run: ..." progress lines, or NULL */
    FILE *table;              /* the results table, or NULL */
} flash_run_opts;

/* Runs the whole comparison into o->out_dir: DIR/results.json (per variant:
 * name, model, sampler, steps, NFE, seconds, distill seconds (null for a
 * student reused from an earlier run), metrics; rewritten after each
 * variant, so a stopped run keeps what it measured), DIR/noise_bank.npy,
 * DIR/samples/<variant>.npy (and .labels.npy), DIR/plots/<variant>.png and
 * DIR/<variant>/ for each distilled variant. A variant whose checkpoint is
 * complete is not distilled again, an interrupted one continues, one
 * distilled with a different config is refused. Sets the threads from the
 * config's `threads:` (default 2).
 *
 *   run:
 *     samples: 10000   noise_seed: 1234   batch: 4096   plots: true
 *     variants: [{name, model: teacher|student, from, set: ["k=v", ...], snapshot}, ...]
 *
 * `snapshot: N` samples the student as its distillation left it at step N
 * (RUN_DIR/snapshot_N.safetensors, which train.snapshots must list; with
 * `from:`, the source's run). results.json gives each student's
 * "iterations" (N, else train.steps) and "snapshot" (true for N). */
FLASH_EXPORT flash_status flash_run_pipeline(const flash_run_opts *o, flash_error *err);

/* ---- flash sweep ------------------------------------------------------ */

typedef struct flash_sweep_opts {
    size_t size;           /* sizeof(flash_sweep_opts) */
    const char *path;      /* the sweep file */
    const char *out_dir;   /* NULL: the sweep's `out:`, else runs/sweep-<file name> */
    const char *flash_exe; /* the flash executable each run is a child process of */
    int jobs;              /* runs at once (>= 1); the CPUs are split between them */
    bool resume;           /* skip complete runs, continue the others */
    const char *only;      /* run only the run of this id (a job array's task), or NULL */
    FILE *log;             /* "flash sweep: ..." progress lines, or NULL */
    /* flash_sweep_emit_slurm only (appended: read when size covers them) */
    int ranks;             /* data-parallel tasks per run (0 or 1: one) */
    int gpus_per_rank;     /* GPUs Slurm gives each task (0: none) */
} flash_sweep_opts;

/* A planned sweep: its runs and their ids, nothing written yet. */
typedef struct flash_sweep flash_sweep;

/* Reads and checks the sweep file and expands it into runs (the grid of its
 * axes or its explicit `runs:`). Refuses an `only` that names no run. */
FLASH_EXPORT flash_status flash_sweep_plan(const flash_sweep_opts *o, flash_sweep **out, flash_error *err);
/* The directory the sweep writes. */
FLASH_EXPORT const char *flash_sweep_out_dir(const flash_sweep *s);
/* Resolves every run's config, checks it with `flash check` (a child
 * process) and prints the plan on `plan`: one line per run, then the
 * totals. A run whose config does not check is a config error. */
FLASH_EXPORT flash_status flash_sweep_dry_run(flash_sweep *s, FILE *plan, flash_error *err);
/* Prepares every run folder and writes DIR/slurm/sweep.sbatch (a job
 * array) and DIR/slurm/commands.txt (one `flash sweep --run ID` line per
 * run); collect afterwards with flash_report_write. Each array task starts
 * its line as `ranks` tasks with srun, each with `gpus_per_rank` GPUs; a
 * run whose trained batches do not split evenly over the ranks, or that
 * would be given GPUs while its device is not cuda, is refused first
 * (FLASH_ERR_USAGE), before anything is written. */
FLASH_EXPORT flash_status flash_sweep_emit_slurm(flash_sweep *s, flash_error *err);
/* Runs the sweep: each run's folder (resolved config.yaml, run.json), its
 * `flash run` child (log in run.log), DONE or FAILED when it ends; then,
 * unless `only` was given, the report of flash_report_write (its Markdown
 * table on `table`). SIGINT and SIGTERM stop the children (their handlers
 * are restored afterwards). A failed run or an interruption is a runtime
 * error after everything else was done.
 *
 * Started as several tasks by a launcher (srun, mpirun), the sweep runs one
 * run prepared by flash_sweep_emit_slurm (`only`, `resume`) and each task's
 * `flash run` child is one rank of that run: the sweep itself never joins
 * the launcher's world (comm.h), and task 0 alone writes DONE or FAILED. */
FLASH_EXPORT flash_status flash_sweep_execute(flash_sweep *s, FILE *table, flash_error *err);
FLASH_EXPORT void flash_sweep_free(flash_sweep *s);

/* ---- flash report ----------------------------------------------------- */

/* Collects dir (a sweep directory, one `flash run` directory, or a folder
 * holding a report's own results.json, rebuilt from its rows) and
 * writes, into out (dir when NULL): results.csv (one row per run and
 * variant), results.json (rows and the aggregated table), table.md and
 * table.csv (mean and spread over seeds, relative columns against
 * baseline: a variant or method name; NULL picks a rebuilt results.json's
 * baseline, else the 25-step teacher) and
 * report.html (self-contained). Prints the Markdown table on `table` when
 * it is not NULL. */
FLASH_EXPORT flash_status flash_report_write(const char *dir, const char *baseline, const char *out, FILE *table,
                                             flash_error *err);

/* ---- sampling a bank of noise -------------------------------------------- */

struct flash_denoiser;
/* Samples n rows of noise xT (n, shape...; labels (n) or NULL) with sampler
 * on den, batch rows at a time in c (gradients off), into xs (host, n
 * rows). Each batch draws from its own stream of seed (a stochastic
 * sampler), so a batch gives the same samples wherever it runs: under
 * mpirun the batches are shared out over the ranks and gathered on every
 * rank, and xs is one process's. *batches gets the batches this rank ran
 * (NFE per sample = den->nfe / *batches). */
FLASH_EXPORT flash_status flash_sample_bank(struct flash_denoiser *den, const flash_instance *sampler, flash_ctx *c,
                                            const float *xT, const int *labels, long n, long batch, uint64_t seed,
                                            float *xs, long *batches, flash_error *err);

/* ---- pieces the commands share ---------------------------------------- */

/* Paths in a config made absolute, so a config written into a run folder
 * names the same files from any directory. A relative path is taken
 * relative to the config file that gave it when something exists there,
 * else relative to the current directory (a file named from where flash
 * runs, as configs/distill/ names runs/teacher/, or an output that does not
 * exist yet); a value from --set is relative to the current directory.
 * Paths are: plugin_paths, every top-level `*_checkpoint`, and in any
 * component slot (a map with `plugin:`) the keys path, test_path, labels,
 * test_labels, checkpoint, evaluator and reference (when a string). The
 * commands apply it right after loading a config. */
FLASH_EXPORT flash_status flash_cfg_absolute_paths(flash_cfg *root, flash_error *err);

/* Writes path (atomically): the resolved config as YAML after comment lines
 * naming each plugin file its components come from (the files of the
 * components its `plugin:` keys name, canonical paths) with the FNV-1a 64
 * hash of its contents, "# plugin HASH PATH". The file loads as the config:
 * `flash distill RUN/config.yaml` reruns the run from any directory. */
FLASH_EXPORT flash_status flash_pipeline_write_config(const char *path, const flash_cfg *root,
                                                      const flash_registry *r, flash_error *err);
/* The YAML of a config record: text after its leading comment lines. */
FLASH_EXPORT const char *flash_config_record_body(const char *text);

/* Sets the threads from the config's top-level `threads:` (default 2). */
FLASH_EXPORT flash_status flash_pipeline_threads(const flash_cfg *root, flash_error *err);

/* The pipeline's device: the top-level `device:` of root (cpu or cuda,
 * default cpu; root may be NULL) into *device (a static string) and, when
 * ctx is not NULL, a context there with an arena of arena_bytes. A device
 * that cannot be used is a config error at the key when it is set. */
FLASH_EXPORT flash_status flash_pipeline_device(const flash_cfg *root, size_t arena_bytes, const char **device,
                                                flash_ctx **ctx, flash_error *err);

/* The pipeline's `dtype:` (fp32 or bf16, default fp32) made the precision
 * of every context the process creates from now on
 * (flash_set_default_precision) on the pipeline's device; a precision the
 * device cannot compute in is a config error at the key. */
FLASH_EXPORT flash_status flash_pipeline_precision(const flash_cfg *root, flash_error *err);

/* JSON of the results files (results.json, metrics, run.json): a string in
 * quotes, its quotes and backslashes escaped and control characters dropped;
 * a number as %.9g, or null when it is not finite; `, "key": value` after
 * an object's first field; metric values as one {"name": value, ...}. */
FLASH_EXPORT void flash_json_str(FILE *f, const char *s);
FLASH_EXPORT void flash_json_num(FILE *f, double v);
FLASH_EXPORT void flash_json_field_str(FILE *f, const char *key, const char *s);
FLASH_EXPORT void flash_json_field_num(FILE *f, const char *key, double v);
FLASH_EXPORT void flash_json_metrics(FILE *f, const flash_metric_result *m);
/* Ends an atomic file written through af->f: aborts it on a stream error
 * ("PATH: write failed"), else commits it. */
FLASH_EXPORT flash_status flash_atomic_finish(flash_atomic_file *af, flash_error *err);

/* A 512x512 scatter plot of n 2-D points (red dots) over the density of
 * the model's data distribution when it has one (white to blue by
 * density^0.3); model may be NULL. */
FLASH_EXPORT flash_status flash_png_scatter(const char *path, const float *x, long n, const flash_instance *model,
                                            flash_error *err);

#ifdef __cplusplus
}
#endif

#endif
