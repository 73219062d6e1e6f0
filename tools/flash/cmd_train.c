/* flash train CONFIG [--set KEY=VALUE]... [--out RUNDIR] [--resume]: the
 * training loop of include/flash/trainer.h behind a command line. */
#include "cli.h"
#include "flash/trainer.h"

#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct train_args {
    const char *config, *out;
    bool resume, quiet;
    long threads;
    flash_options_sets sets;
} train_args;

static const flash_opt train_opts[] = {
    FLASH_OPT_SETS(train_args, sets),
    FLASH_STRING("--out", "RUNDIR", train_args, out, "run directory (default: runs/<config name>)"),
    FLASH_FLAG("--resume", train_args, resume, "continue from RUNDIR's checkpoint, bit for bit"),
    FLASH_INT("--threads", "N", train_args, threads, 1, 1024, "threads (default: the config's threads, else 2)"),
    FLASH_FLAG("--quiet", train_args, quiet, "no progress line"),
    FLASH_OPT_DTYPE_OF(train_args, sets),
    FLASH_OPT_DEVICE_OF(train_args, sets,
                        "The model,\n"
                        "its optimiser state and the training context live there"),
    FLASH_OPT_FORCE_ENTRY,
    {0},
};

static const flash_command train_cmd = {
    .name = "train",
    .positional = "CONFIG",
    .positional_offset = offsetof(train_args, config),
    .opts = train_opts,
    .about = "Trains the config's model on its dataset with its strategy (denoise: a\n"
             "diffusion teacher; classify: the evaluator): Adam/AdamW, warmup and\n"
             "cosine/constant learning rate, gradient clipping, EMA, checkpoints every\n"
             "train.ckpt_every steps and at the end, a progress line on stderr and JSONL\n"
             "metrics. RUNDIR receives config.yaml (the resolved config),\n"
             "checkpoint.safetensors and metrics.jsonl.\n",
    .epilogue = "Exit codes: 0 done, 2 a usage or config problem, 1 any other failure\n"
                "(including the non-finite loss guard, which keeps the last checkpoint).\n",
};

static void default_run_dir(const char *config, char *out, size_t n)
{
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s", config);
    char *base = basename(tmp);
    char *dot = strrchr(base, '.');
    if (dot && dot != base) *dot = '\0';
    snprintf(out, n, "runs/%s", base);
}

/* On --resume, a config that differs from the one the run started with is
 * allowed (more steps, say) but said out loud. */
static void compare_config(const char *run_dir, const char *yaml)
{
    char path[4200], *old = NULL;
    size_t n = 0;
    flash_error e = {0};
    snprintf(path, sizeof path, "%s/%s", run_dir, FLASH_RUN_CONFIG);
    if (access(path, R_OK) != 0 || flash_read_file(path, &old, &n, &e) != FLASH_OK) return;
    if (strcmp(flash_config_record_body(old), yaml) != 0)
        flash_warn("the resolved config differs from %s; continuing with the new one (bit-for-bit resume needs the "
                   "same config)",
                   path);
    free(old);
}

int flash_cmd_train(int argc, char **argv)
{
    train_args a = {0};
    int rc;
    if (!flash_options_parse(&train_cmd, argc, argv, &a, &rc)) return rc;
    const char *config = a.config, *out = a.out;
    long threads = a.threads;
    const bool resume = a.resume;

    flash_error err = {0};
    flash_cli_pipeline pl;
    char run_dir[4096], path[4200];
    char *yaml = NULL;
    flash_status st = flash_cli_pipeline_load(&pl, config, &a.sets, &err);
    if (st) return flash_cli_fail("train", &err);
    if ((st = flash_schema_check(pl.root, FLASH_FOR_TRAIN, pl.registry, &err))) goto done;
    if (threads == 0) {
        if ((st = flash_cfg_int(pl.root, "threads", 2, &threads, &err))) goto done;
        if (threads < 1 || threads > 1024) {
            st = flash_cfg_error(flash_cfg_get(pl.root, "threads"), &err, "must be in [1, 1024]");
            goto done;
        }
    }
    flash_set_threads((int)threads);
    if (out)
        snprintf(run_dir, sizeof run_dir, "%s", out);
    else
        default_run_dir(config, run_dir, sizeof run_dir);

    if (!(yaml = flash_cfg_to_yaml(pl.root))) {
        st = flash_error_set(&err, FLASH_ERR_NOMEM, "cannot serialise the config");
        goto done;
    }
    if (resume) compare_config(run_dir, yaml);
    snprintf(path, sizeof path, "%s/%s", run_dir, FLASH_RUN_CHECKPOINT);
    if (!resume && access(path, F_OK) == 0) {
        /* Checked here too so a refused run leaves config.yaml untouched. */
        st = flash_error_set(&err, FLASH_ERR_USAGE,
                             "%s already holds a checkpoint; continue it with --resume or choose another --out",
                             run_dir);
        goto done;
    }
    flash_cli_run_record rec;
    st = flash_cli_run_record_write(&rec, run_dir, &pl, &err);
    if (!st) {
        flash_train_opts o = {.size = sizeof o, .root = pl.root, .registry = pl.registry, .run_dir = run_dir,
                              .resume = resume, .progress = !a.quiet};
        st = flash_train_run(&o, &err);
    }
    flash_cli_run_record_end(&rec, st);
    if (st) goto done;
    if (st == FLASH_OK && flash_cli_speaks()) fprintf(stderr, "flash train: done; %s/%s\n", run_dir, FLASH_RUN_CHECKPOINT);
done:
    free(yaml);
    flash_cli_pipeline_free(&pl);
    return st ? flash_cli_fail("train", &err) : FLASH_EXIT_OK;
}
