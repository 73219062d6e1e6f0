/* flash distill CONFIG [--set k=v]... [--out RUNDIR] [--resume] [--device D] */
#include "cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "flash/distill.h"
#include "flash/trainer.h"

static const char help[] =
    "usage: flash distill CONFIG [--set KEY=VALUE]... [--out RUNDIR] [--resume] [--until N]\n"
    "                    [--device cpu|cuda]\n"
    "\n"
    "Distills the config's teacher into a few-step student with its strategy\n"
    "(backward, forward, progressive, lcm, add), target operator and weighted\n"
    "losses. The student starts from the teacher's weights where names and\n"
    "shapes match. Checkpoints (student, discriminators, strategy copies),\n"
    "a progress line and JSONL metrics go to RUNDIR, as for train. The\n"
    "config's top-level `threads:` sets the threads (default 2).\n"
    "\n"
    "  --set KEY=VALUE  override a config key (repeatable)\n"
    "  --out RUNDIR     run directory (default runs/distill)\n"
    "  --resume         continue from RUNDIR's last checkpoint\n"
    "  --until N        stop after iteration N with a checkpoint (continue later\n"
    "                   with --resume, bit for bit)\n"
    "  --device D       distil on cpu or cuda (the same as --set distill.device=D):\n"
    "                   the teacher, the student, the losses' discriminators and\n"
    "                   their contexts live there; checkpoints are the same files\n"
    "  -h, --help       this text\n"
    "\n"
    "Exit codes: 0 success, 2 bad usage or config, 1 any other failure.\n";

#define MAX_SETS 256

int flash_cmd_distill(int argc, char **argv)
{
    if (flash_cli_wants_help(argc, argv)) {
        fputs(help, stdout);
        return FLASH_EXIT_OK;
    }
    const char *config = NULL, *out = "runs/distill";
    char *sets[MAX_SETS];
    int n_sets = 0;
    bool resume = false;
    long long until = 0;
    char device_set[64];
    for (int i = 1; i < argc; i++) {
        const char *o = argv[i];
        if (strcmp(o, "--resume") == 0) {
            resume = true;
        } else if (strcmp(o, "--until") == 0) {
            char *end = NULL;
            if (i + 1 >= argc || (until = strtoll(argv[i + 1], &end, 10)) < 1 || *end) {
                fprintf(stderr, "flash distill: --until needs a positive iteration count\n");
                return FLASH_EXIT_USAGE;
            }
            i++;
        } else if (strcmp(o, "--device") == 0) {
            if (i + 1 >= argc) {
                fprintf(stderr, "flash distill: --device needs cpu or cuda\n");
                return FLASH_EXIT_USAGE;
            }
            if (n_sets == MAX_SETS) {
                fprintf(stderr, "flash distill: too many --set\n");
                return FLASH_EXIT_USAGE;
            }
            snprintf(device_set, sizeof device_set, "distill.device=%.40s", argv[++i]);
            sets[n_sets++] = device_set;
        } else if (strcmp(o, "--set") == 0 || strcmp(o, "--out") == 0) {
            if (i + 1 >= argc) {
                fprintf(stderr, "flash distill: %s needs a value\n", o);
                return FLASH_EXIT_USAGE;
            }
            if (o[2] == 'o') {
                out = argv[++i];
            } else {
                if (n_sets == MAX_SETS) {
                    fprintf(stderr, "flash distill: too many --set\n");
                    return FLASH_EXIT_USAGE;
                }
                sets[n_sets++] = argv[++i];
            }
        } else if (o[0] == '-' && o[1]) {
            fprintf(stderr, "flash distill: unknown option '%s' (see 'flash distill --help')\n", o);
            return FLASH_EXIT_USAGE;
        } else if (config) {
            fprintf(stderr, "flash distill: unexpected argument '%s'\n", o);
            return FLASH_EXIT_USAGE;
        } else {
            config = o;
        }
    }
    if (!config) {
        fprintf(stderr, "flash distill: missing CONFIG (see 'flash distill --help')\n");
        return FLASH_EXIT_USAGE;
    }
    flash_error err = {0};
    flash_cli_pipeline p;
    if (flash_cli_pipeline_load(&p, config, sets, n_sets, &err)) return flash_cli_fail("distill", &err);
    if (flash_cli_threads(p.root, &err)) {
        flash_cli_pipeline_free(&p);
        return flash_cli_fail("distill", &err);
    }
    flash_distill_opts o = {.size = sizeof o, .root = p.root, .registry = p.registry, .run_dir = out,
                            .resume = resume, .progress = true, .stop_after = until};
    flash_status st = flash_distill_run(&o, &err);
    flash_cli_pipeline_free(&p);
    if (st) return flash_cli_fail("distill", &err);
    fprintf(stderr, "flash distill: %s; the student is in %s/%s\n", until ? "stopped" : "done", out,
            FLASH_RUN_CHECKPOINT);
    return FLASH_EXIT_OK;
}
