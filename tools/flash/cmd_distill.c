/* flash distill CONFIG [--set k=v]... [--out RUNDIR] [--resume] [--until N] [--device D] */
#include "cli.h"

#include <stdio.h>
#include <unistd.h>

#include "flash/trainer.h"

typedef struct distill_args {
    const char *config, *out;
    bool resume;
    long until;
    flash_options_sets sets;
} distill_args;

static const flash_opt distill_opts[] = {
    FLASH_OPT_SETS(distill_args, sets),
    FLASH_STRING("--out", "RUNDIR", distill_args, out,
                 "run directory (default runs/distill)"),
    FLASH_FLAG("--resume", distill_args, resume,
               "continue from RUNDIR's last checkpoint"),
    FLASH_INT("--until", "N", distill_args, until, 1, LONG_MAX,
              "stop after iteration N with a checkpoint (continue later\nwith --resume, bit for bit)"),
    FLASH_OPT_DTYPE_OF(distill_args, sets),
    FLASH_OPT_DEVICE_OF(distill_args, sets,
                        "The\n"
                        "teacher, the student, the losses' own networks and their contexts live\n"
                        "there; checkpoints are the same files"),
    FLASH_OPT_FORCE_ENTRY,
    {0},
};

static const flash_command distill_cmd = {
    .name = "distill",
    .positional = "CONFIG",
    .positional_offset = offsetof(distill_args, config),
    .opts = distill_opts,
    .about = "Distills the config's teacher into a few-step student with its strategy\n"
             "(backward, forward, progressive, lcm, add), target operator and weighted\n"
             "losses, with the training loop's `train:` settings. The student starts\n"
             "from the teacher's weights where names and shapes match. Checkpoints\n"
             "(student, the losses' networks, strategy copies), a progress line and\n"
             "JSONL metrics go to RUNDIR, as for train. The config's top-level\n"
             "`threads:` sets the threads (default 2).\n",
    .epilogue = "Exit codes: 0 success, 2 bad usage or config, 1 any other failure.\n",
};

int flash_cmd_distill(int argc, char **argv)
{
    distill_args a = {.out = "runs/distill"};
    int rc;
    if (!flash_options_parse(&distill_cmd, argc, argv, &a, &rc)) return rc;
    flash_error err = {0};
    flash_cli_pipeline p;
    if (flash_cli_pipeline_load(&p, a.config, &a.sets, &err)) return flash_cli_fail("distill", &err);
    if (flash_schema_check(p.root, FLASH_FOR_DISTILL, p.registry, &err) || flash_pipeline_threads(p.root, &err)) {
        flash_cli_pipeline_free(&p);
        return flash_cli_fail("distill", &err);
    }
    /* the run folder records what made it (pipeline.h); a refused run (a
     * checkpoint there without --resume, refused by the loop) keeps its own */
    char ckpt[4200];
    snprintf(ckpt, sizeof ckpt, "%s/%s", a.out, FLASH_RUN_CHECKPOINT);
    flash_cli_run_record rec = {0};
    if ((a.resume || access(ckpt, F_OK) != 0) && flash_cli_run_record_write(&rec, a.out, &p, &err)) {
        flash_cli_run_record_end(&rec, FLASH_OK);
        flash_cli_pipeline_free(&p);
        return flash_cli_fail("distill", &err);
    }
    flash_distill_opts o = {.size = sizeof o, .root = p.root, .registry = p.registry, .run_dir = a.out,
                            .resume = a.resume, .progress = true, .stop_after = a.until};
    flash_status st = flash_distill_run(&o, &err);
    flash_cli_run_record_end(&rec, st);
    flash_cli_pipeline_free(&p);
    if (st) return flash_cli_fail("distill", &err);
    if (flash_cli_speaks())
        fprintf(stderr, "flash distill: %s; the student is in %s/%s\n", a.until ? "stopped" : "done", a.out,
                FLASH_RUN_CHECKPOINT);
    return FLASH_EXIT_OK;
}
