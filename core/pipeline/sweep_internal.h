/* The sweep's internals, shared by its planning (sweep_plan.c: a sweep
 * file expanded into runs and each run's resolved config), scheduling
 * (sweep_schedule.c: run folders, child processes, stages, resume) and
 * Slurm emission (sweep_slurm.c). See pipeline.h for the calls.
 *
 * A sweep is a grid of `flash run` pipelines. Each run is one child process
 * `flash run DIR/runs/<id>/config.yaml --out DIR/runs/<id>` on a resolved
 * config (the base config or the variant's config file, the sweep's and the
 * variant's overrides, the seed, the guidance scale, the step count and the
 * list of `flash run` variants), so a sweep adds no second pipeline: what a
 * run computes is exactly what `flash run` computes. Stages are shared the
 * way `flash run` shares them: a teacher is analytic or one checkpoint every
 * run loads, and a student is distilled once per run and sampled at every
 * step count of a `share_steps` variant (`from:` variants). Every run uses
 * the same run.samples and run.noise_seed, so the noise bank and labels are
 * identical; the first finished run's bank is kept as DIR/noise_bank.npy and
 * every later one is checked against it byte for byte.
 *
 * A run is complete when DIR/runs/<id>/DONE exists (written atomically after
 * the child exited 0 and its bank matched), failed when FAILED holds its
 * error. Resuming skips complete runs and restarts the others, which
 * continue their distillations from their checkpoints (`flash run` resumes
 * by itself). Children die with the sweep (PR_SET_PDEATHSIG), so a killed
 * sweep leaves only complete runs and resumable checkpoints. */
#ifndef FLASH_PIPELINE_SWEEP_INTERNAL_H
#define FLASH_PIPELINE_SWEEP_INTERNAL_H

#include <sys/types.h>

#include "flash/pipeline.h"
#include "pipeline/report_internal.h"

#define MAX_LIST 32
#define MAX_VARIANTS 64
#define MAX_RUNS 4096
#define MAX_ENTRIES 64

typedef struct sw_variant {
    const flash_cfg *node;
    const char *name, *model;
    char *config; /* resolved path */
    const flash_cfg *set, *per_step, *resample;
    bool share_steps, seeded, is_teacher;
    long steps[MAX_LIST];
    int n_steps; /* -1: the sweep's axis */
    long snapshots[MAX_LIST];
    int n_snapshots; /* -1: the sweep's */
    long seeds[MAX_LIST];
    int n_seeds; /* -1: the sweep's */
} sw_variant;

typedef struct sw_run {
    char id[160];
    int variant;
    long steps[MAX_LIST];
    int n_steps; /* 0: the config's own run.variants */
    bool seeded, guided;
    long seed;
    double guidance;
    pid_t pid;
    int state; /* 0 planned, 1 running, 2 done, 3 failed, 4 skipped (complete) */
    /* the teacher checkpoint `flash run` trains first (teacher_train:), or "" */
    char stage[512];
} sw_run;

struct flash_sweep {
    const char *path, *out;
    flash_cfg *root;
    char *base;
    const flash_cfg *set;
    long seeds[MAX_LIST], steps[MAX_LIST];
    int n_seeds, n_steps;
    /* training budgets: each distilled student also sampled at these
     * steps of its run (train.snapshots; sweep_resolve) */
    long snapshots[MAX_LIST];
    int n_snapshots;
    double guidance[MAX_LIST];
    int n_guidance;
    const char *guidance_key, *baseline;
    sw_variant v[MAX_VARIANTS];
    int n_v;
    sw_run *runs;
    int n_runs;
    int threads_per_job;
    char self[4096]; /* the flash executable */
    int jobs;
    bool resume;
    int only; /* the index of the one run to run, or -1 */
    /* --emit slurm: tasks per run and GPUs per task */
    int ranks, gpus_per_rank;
    /* the tasks a launcher started this sweep as (1: none) and which one
     * this is; task 0 keeps the run's books (sweep_schedule.c) */
    int tasks, task;
    FILE *log;
    char outbuf[4200]; /* the default output directory */
};
typedef struct flash_sweep sweep;

typedef struct entry_meta {
    char name[128], method[128];
    int nc; /* -1 unknown, 0 off, 1 on */
    /* whether `flash run` distils a student for it (a student entry without
     * `from:`), and its train.batch_size after the entry's `set:` (0 unknown) */
    bool trains;
    long batch;
} entry_meta;

/* Each run's entries: its own per-step variants and resamples, or the
 * config's own run.variants. */
#define MAX_RUN_ENTRIES (MAX_ENTRIES + MAX_LIST * 8)

/* "flash sweep: " and the message on the sweep's log stream. */
void sweep_say(const sweep *S, const char *fmt, ...) FLASH_PRINTF(2, 3);

/* The run's resolved config and its entries' methods (sweep_plan.c). */
flash_status sweep_resolve(const sweep *S, const sw_run *r, flash_cfg **out, entry_meta *em, int *n_em,
                           flash_error *err);

/* Checks the run folders (existing ones only on resume; complete ones are
 * skipped then, counted in *skipped) and writes each run's config.yaml and
 * run.json (sweep_schedule.c). */
flash_status sweep_prepare_runs(sweep *S, bool for_emit, int *skipped, flash_error *err);

/* FLASH_ERR_USAGE naming `what` when a launcher started several tasks:
 * only a run (flash_sweep_execute) is shared out over them. */
flash_status sweep_not_launched(const sweep *S, const char *what, flash_error *err);

#endif
