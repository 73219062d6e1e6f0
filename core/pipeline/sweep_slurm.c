/* Sweep emission for Slurm: a job array with one `flash sweep --run ID`
 * command per run, each writing only its run's folder (see
 * sweep_internal.h). */
#include "pipeline/sweep_internal.h"

#include <errno.h>
#include <stdio.h>
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

flash_status flash_sweep_emit_slurm(flash_sweep *S, flash_error *err)
{
    int skipped = 0;
    flash_status st = sweep_prepare_runs(S, true, &skipped, err);
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
    fprintf(af.f,
            "#!/bin/bash\n"
            "# One array task per run of %s; each runs `flash sweep --run ID`, which\n"
            "# writes that run's folder only. Collect with: flash report %s\n"
            "#SBATCH --job-name=flash-sweep\n"
            "#SBATCH --array=0-%d\n"
            "#SBATCH --cpus-per-task=%d\n"
            "#SBATCH --output=%s/slurm/%%A_%%a.log\n"
            "set -euo pipefail\n"
            "line=$(sed -n \"$((SLURM_ARRAY_TASK_ID + 1))p\" ",
            S->path, S->out, S->n_runs - 1, S->threads_per_job, S->out);
    snprintf(path, sizeof path, "%s/commands.txt", dir);
    sq(af.f, path);
    fputs(")\neval \"$line\"\n", af.f);
    if ((st = flash_atomic_commit(&af, err))) return st;
    sweep_say(S, "wrote %s/slurm/sweep.sbatch and commands.txt (%d runs); afterwards: flash report %s\n", S->out,
              S->n_runs, S->out);
    return FLASH_OK;
}
