/* flash: the command-line front end. Dispatches to one cmd_<name>.c per
 * subcommand; each declares its options in a table that options.c parses
 * and turns into its --help. */
#include "cli.h"

#include <stdio.h>
#include <string.h>

#include "flash/comm.h"

typedef struct flash_subcommand {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *summary;
} flash_subcommand;

static const flash_subcommand commands[] = {
    {"plugins", flash_cmd_plugins, "list the loaded components: kind, name, plugin file, summary"},
    {"check", flash_cmd_check, "validate a pipeline config and print it resolved"},
    {"train", flash_cmd_train, "train a model (teacher, evaluator) from a config"},
    {"distill", flash_cmd_distill, "distill a teacher into a few-step student"},
    {"sample", flash_cmd_sample, "draw samples from a model with a sampler"},
    {"eval", flash_cmd_eval, "compute metrics of samples or of a checkpoint"},
    {"run", flash_cmd_run, "run a whole pipeline: train, distill, sample, eval"},
    {"sweep", flash_cmd_sweep, "run a grid of pipelines and collect the results"},
    {"bench", flash_cmd_bench, "time the kernels and a training step"},
    {"report", flash_cmd_report, "tables and an HTML report from run directories"},
    {"export", flash_cmd_export, "a checkpoint's weights alone (EMA), for a reference model"},
};
#define N_COMMANDS (sizeof commands / sizeof commands[0])

static void usage(FILE *f)
{
    fprintf(f,
            "usage: flash [--version] [--help] COMMAND [ARGS]\n"
            "\n"
            "Few-step diffusion distillation, composed from plugins in YAML pipelines.\n"
            "\n"
            "commands:\n");
    for (size_t i = 0; i < N_COMMANDS; i++) fprintf(f, "  %-9s %s\n", commands[i].name, commands[i].summary);
    fprintf(f,
            "\n"
            "'flash help COMMAND' or 'flash COMMAND --help' describes a command.\n"
            "Exit codes: 0 success;\n"
            "            1 runtime failure (a non-finite loss, a failed write, out of memory);\n"
            "            2 bad input of any kind: options, a config (an unknown or misspelt key\n"
            "              anywhere, a wrong type or value: file:line:col and a did-you-mean),\n"
            "              an input file missing, unreadable, malformed, truncated or non-finite,\n"
            "              a plugin file that cannot be loaded (another ABI, no entry symbol).\n"
            "Environment: FLASH_PLUGIN_PATH (extra plugin files or directories, ':'-separated),\n"
            "             FLASH_PLUGIN_DIR (replaces the built-in plugin directory).\n");
}

static const flash_subcommand *find_command(const char *name)
{
    for (size_t i = 0; i < N_COMMANDS; i++)
        if (strcmp(commands[i].name, name) == 0) return &commands[i];
    return NULL;
}

static int unknown_command(const char *name)
{
    const char *names[N_COMMANDS + 1];
    for (size_t i = 0; i < N_COMMANDS; i++) names[i] = commands[i].name;
    names[N_COMMANDS] = NULL;
    const char *near = flash_did_you_mean(name, names);
    if (near)
        fprintf(stderr, "flash: unknown command '%s' (did you mean '%s'?)\n", name, near);
    else
        fprintf(stderr, "flash: unknown command '%s' (see 'flash --help')\n", name);
    return FLASH_EXIT_USAGE;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return FLASH_EXIT_USAGE;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0) {
        usage(stdout);
        return FLASH_EXIT_OK;
    }
    if (strcmp(cmd, "--version") == 0 || strcmp(cmd, "-V") == 0) {
        printf("flash %s (plugin ABI %d.%d)\n", FLASH_VERSION_STRING, FLASH_ABI_MAJOR, FLASH_ABI_MINOR);
        return FLASH_EXIT_OK;
    }
    if (strcmp(cmd, "help") == 0) {
        if (argc < 3) {
            usage(stdout);
            return FLASH_EXIT_OK;
        }
        const flash_subcommand *c = find_command(argv[2]);
        if (!c) return unknown_command(argv[2]);
        char *help_argv[] = {argv[2], "--help", NULL};
        return c->run(2, help_argv);
    }
    if (cmd[0] == '-') {
        fprintf(stderr, "flash: unknown option '%s' (see 'flash --help')\n", cmd);
        return FLASH_EXIT_USAGE;
    }
    const flash_subcommand *c = find_command(cmd);
    if (!c) return unknown_command(cmd);
    /* Under mpirun or srun every rank runs the same command (comm.h); with
     * no launcher this is one process and loads nothing. flash sweep never
     * loads it: a coordinator of child processes, whose `flash run`
     * children are the ranks under a launcher (flash_sweep_execute). */
    flash_comm *world = NULL;
    if (c->run != flash_cmd_sweep) {
        flash_error ce = {0};
        if (!(world = flash_comm_world(&ce))) {
            fprintf(stderr, "flash %s: %s\n", cmd, ce.msg);
            return FLASH_EXIT_FAIL;
        }
        /* rank 0 speaks for the run; the others say only what goes wrong */
        if (flash_comm_rank(world) > 0) {
            flash_log_set_level(FLASH_LOG_WARN);
            /* tables and paths on stdout are rank 0's */
            if (!freopen("/dev/null", "w", stdout)) flash_log_set_level(FLASH_LOG_ERROR);
        }
    }
    int rc = c->run(argc - 1, argv + 1);
    /* a rank that failed may leave the others waiting on it: stop them all */
    if (rc != FLASH_EXIT_OK && world && flash_comm_size(world) > 1) flash_comm_abort(world, rc);
    flash_comm_finalize();
    return rc;
}
