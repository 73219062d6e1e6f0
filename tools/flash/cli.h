/* Shared plumbing of the flash subcommands: their entry points, loading a
 * pipeline with its --set and --device overrides and the plugin registry,
 * and reading class labels. Options are parsed by the option layer
 * (options.h); whole pipelines are library calls (flash/pipeline.h). Each
 * subcommand lives in its own cmd_<name>.c. */
#ifndef FLASH_TOOLS_CLI_H
#define FLASH_TOOLS_CLI_H

#include "flash/flash.h"
#include "flash/pipeline.h"
#include "options.h"

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
int flash_cmd_export(int argc, char **argv);

/* A loaded pipeline: the resolved config and a registry with the built-in
 * plugins, $FLASH_PLUGIN_PATH and the config's plugin_paths loaded. */
typedef struct flash_cli_pipeline {
    flash_cfg *root;
    flash_registry *registry;
    const char *config_path;
} flash_cli_pipeline;

/* Loads path, applies the --set and --device values in order, makes its
 * paths absolute (flash_cfg_absolute_paths), loads the plugins. */
/* Off for `flash check`: loading a pipeline then does not ask this machine
 * for what the config wants of it (bf16 kernels); on by default. */
void flash_cli_pipeline_machine_checks(bool on);
flash_status flash_cli_pipeline_load(flash_cli_pipeline *p, const char *path, const flash_options_sets *sets,
                                     flash_error *err);
/* The same from a config given as text (name says where it came from). */
flash_status flash_cli_pipeline_parse(flash_cli_pipeline *p, const char *text, const char *name,
                                      const flash_options_sets *sets, flash_error *err);
void flash_cli_pipeline_free(flash_cli_pipeline *p);
/* The resolved config with its plugin files (flash_pipeline_write_config)
 * next to an output file: x0.npy -> x0.config.yaml. */
flash_status flash_cli_write_config_beside(const char *out, const flash_cli_pipeline *p, flash_error *err);

/* A run folder's record of what made it (RUN_DIR/config.yaml), written
 * before the run builds its components. When they refuse the run (bad
 * input, exit 2: FLASH_ERR_CONFIG or FLASH_ERR_USAGE), _end leaves the
 * folder as it was found: a folder the run made is removed again, a
 * record it replaced is put back. */
typedef struct flash_cli_run_record {
    char dir[4096], path[4200];
    bool made_dir, had_old, written;
    char *old;
    size_t old_n;
} flash_cli_run_record;
flash_status flash_cli_run_record_write(flash_cli_run_record *r, const char *dir, const flash_cli_pipeline *p,
                                        flash_error *err);
void flash_cli_run_record_end(flash_cli_run_record *r, flash_status st); /* st: the run's */

/* Class labels from an NPY of int64 or int32 of shape (N): the first n
 * (N == n when exact, else N >= n) into a malloc'd array. A label outside
 * [0, max_label] is refused with "PATH: label V of sample I <why>". */
flash_status flash_cli_read_labels(const char *path, long n, bool exact, long max_label, const char *why, int **out,
                                   flash_error *err);

#endif
