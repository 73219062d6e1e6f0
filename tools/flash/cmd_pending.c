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
