/* flash run CONFIG [--set KEY=VALUE]... [--out RUNDIR] [--resume] [--device D]:
 * flash_run_pipeline (flash/pipeline.h) behind a command line. */
#include "cli.h"

#include <stdio.h>

typedef struct run_args {
    const char *config, *out;
    bool resume;
    flash_options_sets sets;
} run_args;

static const flash_opt run_opts[] = {
    FLASH_OPT_SETS(run_args, sets),
    FLASH_STRING("--out", "RUNDIR", run_args, out, "output directory (default runs/run)"),
    FLASH_FLAG("--resume", run_args, resume, "continue interrupted distillations (the default)"),
    FLASH_OPT_DTYPE_OF(run_args, sets),
    FLASH_OPT_DEVICE_OF(run_args, sets,
                        "The run's\n"
                        "device: the teacher's training, each variant's distillation, sampling\n"
                        "and the metrics' networks run there (a variant's `set:` may move it).\n"
                        "It is part of each variant's recorded config: a student distilled on\n"
                        "one device is not reused on another"),
    FLASH_OPT_FORCE_ENTRY,
    {0},
};

static const flash_command run_cmd = {
    .name = "run",
    .positional = "CONFIG",
    .positional_offset = offsetof(run_args, config),
    .opts = run_opts,
    .about =
        "Runs a whole pipeline: the teacher (trained first when the config has\n"
        "`teacher_train: {strategy, train}` and teacher_checkpoint does not exist\n"
        "yet, else loaded from teacher_checkpoint, or analytic), then each variant\n"
        "of the config's `run.variants` (a teacher sampler, or a student distilled\n"
        "with the config plus the variant's `set:` overrides, or an earlier\n"
        "variant's student sampled differently with `from:`, or the student at a\n"
        "step of its train.snapshots with `snapshot: N`), every variant\n"
        "sampled on one fixed noise bank, then the config's `metrics:`. Writes\n"
        "RUNDIR/results.json (per variant: name, steps, NFE, seconds, distill\n"
        "seconds (null for a student reused from an earlier run), the student's\n"
        "training iterations, metrics),\n"
        "RUNDIR/samples/<variant>.npy (and .labels.npy), RUNDIR/plots/<variant>.png\n"
        "(a scatter plot of 2-D data, a grid of the first 100 images), one run\n"
        "directory per distilled variant, and prints a table. A variant whose\n"
        "distillation checkpoint is complete is not distilled again; one that was\n"
        "interrupted continues (--resume is accepted for symmetry with distill);\n"
        "one distilled with a different config is refused.\n"
        "\n"
        "  run:\n"
        "    samples: 10000        # size of the noise bank\n"
        "    noise_seed: 1234      # its seed (and the labels')\n"
        "    batch: 4096           # samples per sampler call\n"
        "    plots: true\n"
        "    variants:\n"
        "      - {name: teacher_dpmpp_25, model: teacher,\n"
        "         set: [\"sampler={plugin: dpmpp_2m, steps: 25, timestep_spacing: trailing}\"]}\n"
        "      - {name: imagine_flash_3}                          # the config as it is\n"
        "      - {name: forward_3, set: [\"strategy.plugin=forward\"]}\n"
        "      - {name: no_nc_3, from: imagine_flash_3, set: [\"sampler.noise_correction=false\"]}\n"
        "      # the same student at step 500 (train: {snapshots: [500, ...]})\n"
        "      - {name: imagine_flash_3_it500, from: imagine_flash_3, snapshot: 500}\n",
    .epilogue =
        "The config's top-level `threads:` sets the threads (default 2; small\n"
        "models such as the 2-D quickstart's run fastest on 1).\n"
        "Exit codes: 0 success, 2 bad usage or config, 1 any other failure.\n",
};

int flash_cmd_run(int argc, char **argv)
{
    run_args a = {.out = "runs/run"};
    int rc;
    if (!flash_options_parse(&run_cmd, argc, argv, &a, &rc)) return rc;
    flash_error err = {0};
    flash_cli_pipeline p;
    if (flash_cli_pipeline_load(&p, a.config, &a.sets, &err)) return flash_cli_fail("run", &err);
    flash_run_opts o = {.size = sizeof o, .root = p.root, .registry = p.registry, .config_path = a.config,
                        .out_dir = a.out, .log = stderr, .table = stdout};
    flash_status st = flash_schema_check(p.root, FLASH_FOR_RUN, p.registry, &err);
    if (!st) st = flash_run_pipeline(&o, &err);
    flash_cli_pipeline_free(&p);
    return st ? flash_cli_fail("run", &err) : FLASH_EXIT_OK;
}
