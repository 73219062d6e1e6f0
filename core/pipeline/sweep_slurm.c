/* Sweep emission for Slurm: a job array with one `flash sweep --run ID`
 * command per run, each writing only its run's folder (see
 * sweep_internal.h), started with srun as the run's data-parallel tasks. */
#include "pipeline/sweep_internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* shell single quotes */
static void sq(FILE *f, const char *s)
{
    fputc('\'', f);
    for (; *s; s++)
        if (*s == '\'')
            fputs("'\\''", f);
        else
            fputc(*s, f);
    fputc('\'', f);
}

/* What the job will ask of each run, checked here rather than on the
 * cluster: every batch the run trains (each distilled student's
 * train.batch_size after its entry's `set:`, and the teacher stage's)
 * splits evenly over the ranks, as the training loop requires (loop.c),
 * and GPUs go only to runs on cuda. */
static flash_status check_runs(sweep *S, flash_error *err)
{
    entry_meta *em = calloc(MAX_RUN_ENTRIES, sizeof *em);
    if (!em) return flash_error_set(err, FLASH_ERR_NOMEM, "out of memory");
    flash_status st = FLASH_OK;
    int on_cuda = 0;
    for (int i = 0; i < S->n_runs && !st; i++) {
        const sw_run *r = &S->runs[i];
        flash_cfg *cfg = NULL;
        int n_em = 0;
        if ((st = sweep_resolve(S, r, &cfg, em, &n_em, err))) break;
        for (int k = 0; k < n_em && !st; k++)
            if (em[k].trains && em[k].batch % S->ranks)
                st = flash_error_set(err, FLASH_ERR_USAGE,
                                     "run '%s': train.batch_size %ld (variant '%s') does not split evenly over "
                                     "--ranks %d",
                                     r->id, em[k].batch, em[k].name, S->ranks);
        /* the teacher stage trains with teacher_train.train, else the run's train */
        const flash_cfg *tt = flash_cfg_get(cfg, "teacher_train");
        if (!st && tt) {
            const flash_cfg *train = flash_cfg_get(tt, "train");
            long batch = 0;
            if (!train) train = flash_cfg_get(cfg, "train");
            if (!(st = flash_cfg_int(train, "batch_size", 64, &batch, err)) && batch % S->ranks)
                st = flash_error_set(err, FLASH_ERR_USAGE,
                                     "run '%s': the teacher stage's train.batch_size %ld does not split evenly over "
                                     "--ranks %d",
                                     r->id, batch, S->ranks);
        }
        const char *device = flash_cfg_scalar(flash_cfg_get(cfg, "device"));
        const bool cuda = device && strcmp(device, "cuda") == 0;
        on_cuda += cuda;
        if (!st && S->gpus_per_rank > 0 && !cuda)
            st = flash_error_set(err, FLASH_ERR_USAGE,
                                 "run '%s': --gpus-per-rank %d gives it GPUs, but its device is %s: set `device: "
                                 "cuda` (in the sweep, set: [\"device=cuda\"])",
                                 r->id, S->gpus_per_rank, device ? device : "cpu (the default)");
        flash_cfg_free(cfg);
    }
    free(em);
    if (!st && on_cuda && S->gpus_per_rank == 0)
        sweep_say(S, "%d run(s) on device cuda, but the job asks for no GPU (--gpus-per-rank)\n", on_cuda);
    return st;
}

flash_status flash_sweep_emit_slurm(flash_sweep *S, flash_error *err)
{
    int skipped = 0;
    /* refused before any run folder is written */
    flash_status st = sweep_not_launched(S, "--emit", err);
    if (!st) st = check_runs(S, err);
    if (!st) st = sweep_prepare_runs(S, true, &skipped, err);
    if (st) return st;
    char dir[4300], path[4400], cwd[4096];
    if (!getcwd(cwd, sizeof cwd)) return flash_error_set(err, FLASH_ERR_IO, "getcwd: %s", strerror(errno));
    snprintf(dir, sizeof dir, "%s/slurm", S->out);
    if ((st = flash_mkdirs(dir, err))) return st;
    snprintf(path, sizeof path, "%s/commands.txt", dir);
    flash_atomic_file af;
    if ((st = flash_atomic_open(&af, path, err))) return st;
    for (int i = 0; i < S->n_runs; i++) {
        fputs("cd ", af.f);
        sq(af.f, cwd);
        fputs(" && ", af.f);
        sq(af.f, S->self);
        fputs(" sweep ", af.f);
        sq(af.f, S->path);
        fputs(" --out ", af.f);
        sq(af.f, S->out);
        fprintf(af.f, " --resume --run %s\n", S->runs[i].id);
    }
    if ((st = flash_atomic_commit(&af, err))) return st;
    snprintf(path, sizeof path, "%s/sweep.sbatch", dir);
    if ((st = flash_atomic_open(&af, path, err))) return st;
    /* the resources of one task, for #SBATCH and again for srun, which no
     * longer inherits --cpus-per-task from sbatch (Slurm 22.05 on) */
    char res[128];
    int n = snprintf(res, sizeof res, "--ntasks=%d --cpus-per-task=%d", S->ranks, S->threads_per_job);
    if (S->gpus_per_rank > 0) snprintf(res + n, sizeof res - (size_t)n, " --gpus-per-task=%d", S->gpus_per_rank);
    fprintf(af.f,
            "#!/bin/bash\n"
            "# One array task per run of %s; each runs `flash sweep --run ID`, which\n"
            "# writes that run's folder only. Collect with: flash report %s\n"
            "#SBATCH --job-name=flash-sweep\n"
            "#SBATCH --array=0-%d\n"
            "#SBATCH --ntasks=%d\n"
            "#SBATCH --cpus-per-task=%d\n",
            S->path, S->out, S->n_runs - 1, S->ranks, S->threads_per_job);
    if (S->gpus_per_rank > 0) fprintf(af.f, "#SBATCH --gpus-per-task=%d\n", S->gpus_per_rank);
    fprintf(af.f,
            "#SBATCH --output=%s/slurm/%%A_%%a.log\n"
            "set -euo pipefail\n"
            "line=$(sed -n \"$((SLURM_ARRAY_TASK_ID + 1))p\" ",
            S->out);
    snprintf(path, sizeof path, "%s/commands.txt", dir);
    sq(af.f, path);
    /* srun even for one task: one script for any --ranks, and the step gets
     * exactly the CPUs (and GPUs) asked for; one task loads no MPI (comm.c).
     * Each task's `flash run` child is one rank of the run (see
     * flash_sweep_execute). The MPI plugin is the cluster's default. */
    fprintf(af.f,
            ")\n"
            "# %d task(s), one job step: each task's `flash run` is one rank of the run.\n"
            "# MPI plugin: the cluster's default (export SLURM_MPI_TYPE=pmix to choose).\n"
            "srun %s bash -c \"$line\"\n",
            S->ranks, res);
    if ((st = flash_atomic_commit(&af, err))) return st;
    sweep_say(S, "wrote %s/slurm/sweep.sbatch and commands.txt (%d runs); afterwards: flash report %s\n", S->out,
              S->n_runs, S->out);
    return FLASH_OK;
}
