/* flash sweep SWEEP.yaml [--out DIR] [--jobs N] [--resume] [--dry-run]
 *                        [--emit slurm [--ranks N] [--gpus-per-rank G]] [--run ID]:
 * flash_sweep_plan and flash_sweep_execute (flash/pipeline.h) behind a
 * command line. */
#include "cli.h"

#include <stdio.h>
#include <unistd.h>

typedef struct sweep_args {
    const char *path, *out, *emit, *only;
    long jobs;
    long ranks, gpus_per_rank; /* 0 and -1: not given */
    bool resume, dry_run;
} sweep_args;

static const char *const emitters[] = {"slurm", NULL};

static const flash_opt sweep_opts[] = {
    FLASH_STRING("--out", "DIR", sweep_args, out,
        "output directory (default: the sweep's `out:`, else\nruns/sweep-<name>)"),
    FLASH_INT("--jobs", "N", sweep_args, jobs, 1, 256, "runs at once (default 1); the CPUs are split between\n"
                                                       "them, each run using at most its config's `threads:`"),
    FLASH_FLAG("--resume", sweep_args, resume, "skip completed runs, continue interrupted ones from\n"
                                               "their checkpoints, retry failed ones"),
    FLASH_FLAG("--dry-run", sweep_args, dry_run,
        "resolve every run's config, check it (`flash check`)\nand print the plan"),
    FLASH_CHOICE("--emit", "slurm", sweep_args, emit, emitters,
        "prepare the run folders and write DIR/slurm/sweep.sbatch\n"
        "(a job array) and DIR/slurm/commands.txt (one line per\n"
        "run); collect afterwards with `flash report DIR`"),
    FLASH_INT("--ranks", "N", sweep_args, ranks, 1, 1024,
        "with --emit slurm: data-parallel tasks per run (default 1),\n"
        "started with srun as one MPI world; every batch a run\n"
        "trains must split evenly over them"),
    FLASH_INT("--gpus-per-rank", "G", sweep_args, gpus_per_rank, 0, 64,
        "with --emit slurm: GPUs per task (default 0; each rank\n"
        "uses one); the runs' device must be cuda"),
    FLASH_STRING("--run", "ID", sweep_args, only, "run only this run (what each array task does)"),
    FLASH_OPT_FORCE_ENTRY,
    {0},
};

static const flash_command sweep_cmd = {
    .name = "sweep",
    .positional = "SWEEP.yaml",
    .positional_offset = offsetof(sweep_args, path),
    .opts = sweep_opts,
    .about =
        "Runs the grid of pipelines a sweep file describes (a base config and\n"
        "axes: variants, step counts, seeds, guidance scales) on a shared noise\n"
        "bank, one `flash run` child process per run in DIR/runs/<id>/ (resolved\n"
        "config.yaml, logs, checkpoints, samples, results.json), and writes\n"
        "DIR/results.csv, DIR/results.json, DIR/table.md and DIR/report.html.\n"
        "\n"
        "  base: ../quickstart.yaml        # relative to the sweep file\n"
        "  set: [\"run.samples=2000\"]       # overrides for every run\n"
        "  seeds: [0, 1]                   # training seeds (top-level `seed:`)\n"
        "  steps: [1, 2, 3]                # substituted into per_step as {steps}\n"
        "  timesteps: {1: [999], 2: [999, 666], 3: [999, 750, 500]}  # {timesteps}\n"
        "  guidance: [1.0, 3.0]            # sets guidance_key (default\n"
        "  guidance_key: target.guidance_scale  #   target.guidance_scale)\n"
        "  baseline: teacher_dpmpp_25      # 100% in the report's relative columns\n"
        "  snapshots: [500, 1000]          # each distilled student also sampled at\n"
        "                                  #   these steps of its training\n"
        "                                  #   (<entry>_it500; also per variant)\n"
        "  variants:\n"
        "    - name: teacher_dpmpp          # a method; runs are <name>_s<steps>_seed<seed>\n"
        "      model: teacher               # teacher variants are not seeded\n"
        "      share_steps: true            # one run samples every step count\n"
        "      per_step: [\"sampler={plugin: dpmpp_2m, steps: {steps}}\"]\n"
        "    - name: imagine_flash\n"
        "      set: [\"strategy.plugin=backward\"]\n"
        "      per_step: [\"sampler.timesteps={timesteps}\"]\n"
        "      resample: [{name: no_nc, set: [\"sampler.noise_correction=false\"]}]\n"
        "    - {name: lcm, config: ../distill/lcm.yaml}   # its own run.variants\n"
        "    - {name: dmd2, config: ../distill/dmd2_1step.yaml, seeds: [0, 1, 2]}\n"
        "                                  # a variant's own training seeds\n"
        "  runs: [{variant: imagine_flash, steps: 3, seed: 0}]  # instead of the grid\n",
    .epilogue = "Exit codes: 0 every run complete, 1 a run failed or the sweep was\n"
                "interrupted, 2 bad usage or sweep file.\n",
};

int flash_cmd_sweep(int argc, char **argv)
{
    sweep_args a = {.jobs = 1, .gpus_per_rank = -1};
    int rc;
    if (!flash_options_parse(&sweep_cmd, argc, argv, &a, &rc)) return rc;
    if (!a.emit && (a.ranks || a.gpus_per_rank >= 0))
        return flash_cli_usage("sweep", "%s needs --emit slurm (it shapes the Slurm job; a sweep run here runs each "
                                        "run as one process)",
                               a.ranks ? "--ranks" : "--gpus-per-rank");
    /* each run is a child process of this very executable */
    char self[4096];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n <= 0) {
        fprintf(stderr, "flash sweep: cannot find the flash executable (/proc/self/exe)\n");
        return FLASH_EXIT_FAIL;
    }
    self[n] = 0;
    flash_sweep_opts o = {.size = sizeof o, .path = a.path, .out_dir = a.out, .flash_exe = self, .jobs = (int)a.jobs,
                          .resume = a.resume, .only = a.only, .log = stderr, .ranks = (int)a.ranks,
                          .gpus_per_rank = a.gpus_per_rank > 0 ? (int)a.gpus_per_rank : 0};
    flash_error err = {0};
    flash_sweep *s = NULL;
    flash_status st = flash_sweep_plan(&o, &s, &err);
    if (!st) {
        if (a.dry_run)
            st = flash_sweep_dry_run(s, stdout, &err);
        else if (a.emit)
            st = flash_sweep_emit_slurm(s, &err);
        else
            st = flash_sweep_execute(s, stdout, &err);
    }
    flash_sweep_free(s);
    if (!st) return FLASH_EXIT_OK;
    /* not flash_cli_fail: it would load the launcher's world, which the
     * sweep never joins (main.c) */
    fprintf(stderr, "flash sweep: %s\n", err.msg[0] ? err.msg : flash_status_name(st));
    return flash_cli_exit_code(st);
}
