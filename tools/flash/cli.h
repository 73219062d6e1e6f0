/* Shared plumbing of the flash subcommands: option parsing helpers, loading
 * a config with its --set overrides, the plugin registry, run directories
 * and the mapping from flash_status to exit codes (0 ok, 1 failure, 2 bad
 * usage or config). Each subcommand lives in its own cmd_<name>.c. */
#ifndef FLASH_TOOLS_CLI_H
#define FLASH_TOOLS_CLI_H

#include "flash/flash.h"

/* Exit codes */
enum { FLASH_EXIT_OK = 0, FLASH_EXIT_FAIL = 1, FLASH_EXIT_USAGE = 2 };

/* Subcommand entry points: argv[0] is the subcommand name. */
int flash_cmd_plugins(int argc, char **argv);
int flash_cmd_check(int argc, char **argv);
int flash_cmd_train(int argc, char **argv);
int flash_cmd_distill(int argc, char **argv);
int flash_cmd_sample(int argc, char **argv);
int flash_cmd_eval(int argc, char **argv);
int flash_cmd_run(int argc, char **argv);
int flash_cmd_sweep(int argc, char **argv);
int flash_cmd_bench(int argc, char **argv);
int flash_cmd_report(int argc, char **argv);

/* flash_status -> exit code */
int flash_cli_exit_code(flash_status st);
/* Prints "flash <cmd>: <message>" to stderr and returns the exit code. */
int flash_cli_fail(const char *cmd, const flash_error *err);

/* A loaded pipeline: the resolved config and a registry with the built-in
 * plugins, $FLASH_PLUGIN_PATH and the config's plugin_paths loaded. */
typedef struct flash_cli_pipeline {
    flash_cfg *root;
    flash_registry *registry;
    const char *config_path;
} flash_cli_pipeline;

/* Loads path, applies each "--set k=v" (sets[0..n_sets)), loads plugins. */
flash_status flash_cli_pipeline_load(flash_cli_pipeline *p, const char *path, char **sets, int n_sets,
                                     flash_error *err);
void flash_cli_pipeline_free(flash_cli_pipeline *p);

/* Prints "flash CMD: <message>" and the --help hint to stderr; returns
 * FLASH_EXIT_USAGE. */
int flash_cli_usage(const char *cmd, const char *fmt, ...) FLASH_PRINTF(2, 3);
/* A decimal integer in [lo, hi] into *out: 1, or 0 when v is not one. */
int flash_cli_parse_long(const char *v, long lo, long hi, long *out);

/* True when argv[i] is "--help" or "-h" anywhere. */
int flash_cli_wants_help(int argc, char **argv);

/* Sets the threads from the config's top-level `threads:` (default 2, as
 * flash train). */
flash_status flash_cli_threads(const flash_cfg *root, flash_error *err);

/* The device a command runs on: map's `key` (cpu or cuda, default cpu;
 * the values and messages of train.device) into *device (a static
 * string), and, when ctx is not NULL, a context there with an arena of
 * arena_bytes. An unusable device is reported against the key (a config
 * error, exit 2) when the key is set. map may be NULL (cpu). */
flash_status flash_cli_device(const flash_cfg *map, const char *key, size_t arena_bytes, const char **device,
                              flash_ctx **ctx, flash_error *err);

/* A 512x512 scatter plot of n 2-D points (red dots) over the density of
 * the model's data distribution when it has one (white to blue by
 * density^0.3, so wide components show); model may be NULL. */
flash_status flash_cli_scatter_png(const char *path, const float *x, long n, const flash_instance *model,
                                   flash_error *err);

#endif
