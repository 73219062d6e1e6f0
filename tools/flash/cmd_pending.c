/* Subcommands whose implementation is not part of this build yet. Each is
 * one self-contained function (its --help text included): the file that
 * implements a command (cmd_<name>.c) replaces its function here. */
#include "cli.h"

#include <stdio.h>

static int pending(const char *cmd, const char *help, int argc, char **argv)
{
    if (flash_cli_wants_help(argc, argv)) {
        fputs(help, stdout);
        return FLASH_EXIT_OK;
    }
    fprintf(stderr, "flash %s: not available in this build yet\n", cmd);
    return FLASH_EXIT_FAIL;
}

int flash_cmd_train(int argc, char **argv)
{
    return pending("train",
                   "usage: flash train CONFIG [--set KEY=VALUE]... [--out RUNDIR] [--resume]\n"
                   "\n"
                   "Trains the config's model on its dataset (a diffusion teacher, or an\n"
                   "evaluator classifier): Adam/AdamW, warmup and cosine/constant learning\n"
                   "rate, gradient clipping, EMA, classifier-free-guidance label dropout,\n"
                   "checkpoints every N steps and at the end, a progress line and a JSONL\n"
                   "metrics log in RUNDIR.\n"
                   "\n"
                   "  --set KEY=VALUE  override a config key (repeatable)\n"
                   "  --out RUNDIR     run directory (resolved config, logs, checkpoints)\n"
                   "  --resume         continue from RUNDIR's last checkpoint, bit for bit\n"
                   "  -h, --help       this text\n",
                   argc, argv);
}

int flash_cmd_sample(int argc, char **argv)
{
    return pending("sample",
                   "usage: flash sample CONFIG [--set KEY=VALUE]... [--ckpt FILE] [--noise xT.npy]\n"
                   "                    [--labels y.npy] [--n N] [--seed S] --out x0.npy [--grid grid.png]\n"
                   "\n"
                   "Draws samples from the config's model with its sampler and schedule.\n"
                   "\n"
                   "  --set KEY=VALUE  override a config key (repeatable)\n"
                   "  --ckpt FILE      model weights (a flash checkpoint)\n"
                   "  --noise FILE     starting noise x_T (NPY) instead of fresh noise\n"
                   "  --labels FILE    class labels (NPY, int64)\n"
                   "  --n N            number of samples\n"
                   "  --seed S         seed of the noise and labels\n"
                   "  --out FILE       samples as NPY\n"
                   "  --grid FILE      also a PNG grid of image samples\n"
                   "  -h, --help       this text\n",
                   argc, argv);
}

int flash_cmd_eval(int argc, char **argv)
{
    return pending("eval",
                   "usage: flash eval CONFIG [--set KEY=VALUE]... [--samples x0.npy] [--ckpt FILE]\n"
                   "                  [--n N] [--out metrics.json]\n"
                   "\n"
                   "Computes the config's metrics (fd, accuracy, precision/recall,\n"
                   "sliced_wasserstein, ...) on given samples or on samples drawn from a\n"
                   "checkpoint.\n"
                   "\n"
                   "  --set KEY=VALUE  override a config key (repeatable)\n"
                   "  --samples FILE   samples to evaluate (NPY)\n"
                   "  --ckpt FILE      draw samples from this checkpoint instead\n"
                   "  --n N            number of samples to draw\n"
                   "  --out FILE       metrics as JSON\n"
                   "  -h, --help       this text\n",
                   argc, argv);
}

int flash_cmd_sweep(int argc, char **argv)
{
    return pending("sweep",
                   "usage: flash sweep SWEEP.yaml [--out DIR] [--jobs N] [--resume] [--dry-run]\n"
                   "\n"
                   "Runs the grid of pipelines a sweep file describes (a base config and\n"
                   "axes: variants, step counts, seeds, guidance scales) on a shared noise\n"
                   "bank, and writes DIR/results.csv, DIR/results.json and DIR/report.html.\n"
                   "\n"
                   "  --out DIR        output directory, one folder per run\n"
                   "  --jobs N         runs at once (threads are split between them)\n"
                   "  --resume         skip completed runs, continue interrupted ones\n"
                   "  --dry-run        print the runs without starting them\n"
                   "  -h, --help       this text\n",
                   argc, argv);
}

int flash_cmd_bench(int argc, char **argv)
{
    return pending("bench",
                   "usage: flash bench [--threads N] [--out FILE]\n"
                   "\n"
                   "Times the CPU kernels (sgemm, conv2d forward/backward) and a U-Net\n"
                   "training step (forward, backward, Adam) on the reference shapes.\n"
                   "\n"
                   "  --threads N      threads to use\n"
                   "  --out FILE       timings as JSON\n"
                   "  -h, --help       this text\n",
                   argc, argv);
}

int flash_cmd_report(int argc, char **argv)
{
    return pending("report",
                   "usage: flash report RUNDIR... [--baseline NAME] [--out DIR]\n"
                   "\n"
                   "Builds tables (Markdown, CSV, JSON) and a self-contained HTML report\n"
                   "with sample grids and plots from run or sweep directories.\n"
                   "\n"
                   "  --baseline NAME  the run that is 100% in the relative columns\n"
                   "  --out DIR        where to write the report\n"
                   "  -h, --help       this text\n",
                   argc, argv);
}
