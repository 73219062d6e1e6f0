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

/* The start of the commands whose options all take a value (flash sample,
 * flash eval): help, the arguments they share (CONFIG, --set KEY=VALUE
 * repeatable, --device D as --set device=D, --seed S) and the pipeline. */
#define FLASH_CLI_MAX_SETS 256
typedef struct flash_cli_args {
    const char *config;
    char *sets[FLASH_CLI_MAX_SETS]; /* --set values and device_set, in order */
    int n_sets;
    char device_set[64];
    long seed;
    int has_seed; /* --seed given */
} flash_cli_args;

/* A command's own option o with its value v: 0, or the exit code of a
 * usage error (flash_cli_usage). Called once more with o and v NULL after
 * the last argument, to check their combination. */
typedef int (*flash_cli_option_fn)(void *self, const char *o, const char *v);

typedef struct flash_cli_spec {
    const char *cmd;  /* "eval": messages say "flash eval: ..." */
    const char *help; /* printed on --help */
    int max_sets;     /* --set and --device together, <= FLASH_CLI_MAX_SETS */
    flash_cli_option_fn option;
} flash_cli_spec;

/* Prints the help on --help; else parses argv[1..argc) into *a (cleared
 * first), passing every other option to spec->option(self, ...), and loads
 * a->config with its --set and --device values into *p. Returns 0 with
 * p->root set to go on, 0 with p->root NULL after the help, else the exit
 * code of the usage or load error (printed). */
int flash_cli_start(const flash_cli_spec *spec, int argc, char **argv, flash_cli_args *a, void *self,
                    flash_cli_pipeline *p);

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

/* Class labels from an NPY of int64 or int32 of shape (N): the first n
 * (N == n when exact, else N >= n) into a malloc'd array. A label outside
 * [0, max_label] is refused with "PATH: label V of sample I <why>". */
flash_status flash_cli_read_labels(const char *path, long n, bool exact, long max_label, const char *why, int **out,
                                   flash_error *err);

/* JSON of the results files the commands write (flash run's and flash
 * report's results.json, flash eval's metrics, a sweep's run.json): a
 * string in quotes, its quotes and backslashes escaped and control
 * characters dropped (names are plain; metric names come from plugins); a
 * number as %.9g, or null when it is not finite. */
void flash_cli_json_str(FILE *f, const char *s);
void flash_cli_json_num(FILE *f, double v);
/* A field after an object's first: `, "key": ` and the value as above
 * (key is plain). */
void flash_cli_json_field_str(FILE *f, const char *key, const char *s);
void flash_cli_json_field_num(FILE *f, const char *key, double v);
/* Metric values as one object: {"name": value, ...} in their order. */
void flash_cli_json_metrics(FILE *f, const flash_metric_result *m);
/* Ends an atomic file written through af->f: aborts it on a stream error
 * ("PATH: write failed"), else commits it. */
flash_status flash_cli_atomic_close(flash_atomic_file *af, flash_error *err);

/* A 512x512 scatter plot of n 2-D points (red dots) over the density of
 * the model's data distribution when it has one (white to blue by
 * density^0.3, so wide components show); model may be NULL. */
flash_status flash_cli_scatter_png(const char *path, const float *x, long n, const flash_instance *model,
                                   flash_error *err);

#endif
