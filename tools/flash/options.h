/* The option layer of the flash subcommands. Each command declares its
 * options once, in a static table (name, value kind, help line, where the
 * value goes); flash_options_parse reads argv against it and the help text
 * is generated from it, so every command parses, refuses and documents its
 * options the same way:
 *
 *   - `--help`/`-h` anywhere prints the help (exit 0);
 *   - `--name VALUE` and `--name=VALUE`; `--` ends the options;
 *   - an unknown option, a missing value, a value that is not an integer in
 *     range or not one of the choices, a missing or extra positional
 *     argument: "flash CMD: <what>" and the --help hint on stderr, exit 2;
 *     an unknown option names its nearest neighbour ("did you mean");
 *   - `--set KEY=VALUE` (repeatable) and `--device cpu|cuda` (exactly
 *     `--set device=D`: the pipeline's one top-level `device:` key) append,
 *     in order, to the command's flash_options_sets. */
#ifndef FLASH_TOOLS_OPTIONS_H
#define FLASH_TOOLS_OPTIONS_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "flash/flash.h"

/* Exit codes */
enum { FLASH_EXIT_OK = 0, FLASH_EXIT_FAIL = 1, FLASH_EXIT_USAGE = 2 };

typedef enum flash_opt_kind {
    FLASH_OPT_FLAG,   /* no value: the bool at offset becomes true */
    FLASH_OPT_STRING, /* const char * at offset */
    FLASH_OPT_INT,    /* long at offset, in [lo, hi] */
    FLASH_OPT_CHOICE, /* const char * at offset, one of choices */
    FLASH_OPT_SET,    /* KEY=VALUE appended to the flash_options_sets at offset */
    FLASH_OPT_DEVICE, /* cpu|cuda appended as device=D to the flash_options_sets at offset */
    FLASH_OPT_DTYPE,  /* fp32|bf16 appended as dtype=T to the flash_options_sets at offset */
    FLASH_OPT_FORCE,  /* no value: write through outputs flash does not own (flash_io_set_force) */
} flash_opt_kind;

typedef struct flash_opt {
    const char *name;  /* "--out" */
    flash_opt_kind kind;
    const char *value; /* the value's name in the help ("RUNDIR"); NULL for flags */
    const char *help;  /* lines separated by '\n' */
    size_t offset;     /* of the destination in the command's argument struct */
    long lo, hi;       /* FLASH_OPT_INT: the accepted range */
    const char *const *choices; /* FLASH_OPT_CHOICE: NULL-terminated */
    bool required;
} flash_opt;

#define FLASH_OPTIONS_MAX_SETS 256
/* --set and --device values, in the order given. */
typedef struct flash_options_sets {
    const char *v[FLASH_OPTIONS_MAX_SETS];
    int n;
} flash_options_sets;

/* Table entries: an option's name, its value's name in the help, the
 * command's argument struct and the field the value goes to, the help. */
#define FLASH_FLAG(opt, type, field, help_text) \
    {.name = opt, .kind = FLASH_OPT_FLAG, .help = help_text, .offset = offsetof(type, field)}
#define FLASH_STRING(opt, value_name, type, field, help_text) \
    {.name = opt, .kind = FLASH_OPT_STRING, .value = value_name, .help = help_text, .offset = offsetof(type, field)}
/* a string the command cannot go without */
#define FLASH_REQUIRED(opt, value_name, type, field, help_text)                                                     \
    {.name = opt, .kind = FLASH_OPT_STRING, .value = value_name, .help = help_text, .offset = offsetof(type, field), \
     .required = true}
/* a long in [low, high] */
#define FLASH_INT(opt, value_name, type, field, low, high, help_text)                                              \
    {.name = opt, .kind = FLASH_OPT_INT, .value = value_name, .help = help_text, .offset = offsetof(type, field), \
     .lo = low, .hi = high}
/* one of a NULL-terminated list of strings */
#define FLASH_CHOICE(opt, value_name, type, field, list, help_text)                                                   \
    {.name = opt, .kind = FLASH_OPT_CHOICE, .value = value_name, .help = help_text, .offset = offsetof(type, field), \
     .choices = list}

/* The two pipeline options every command that loads a config declares. */
#define FLASH_OPT_SETS(type, field)                                                                   \
    {.name = "--set", .kind = FLASH_OPT_SET, .value = "KEY=VALUE",                                             \
     .help = "override a config key by dotted path, VALUE parsed as YAML\n(repeatable, applied in order)", \
     .offset = offsetof(type, field)}
/* what: the device's part in the command, lines after a fixed first sentence */
#define FLASH_OPT_DEVICE_OF(type, field, what)                                                      \
    {.name = "--device", .kind = FLASH_OPT_DEVICE, .value = "D",                                 \
     .help = "cpu or cuda, the same as --set device=D: the pipeline's one\ntop-level `device:` key (default cpu). " what, \
     .offset = offsetof(type, field)}

/* --dtype T: the same as --set dtype=T */
#define FLASH_OPT_DTYPE_OF(type, field)                                                                        \
    {.name = "--dtype", .kind = FLASH_OPT_DTYPE, .value = "T",                                                  \
     .help = "fp32 or bf16, the same as --set dtype=T: the precision of the\n"                                   \
             "convolutions (default fp32); bf16 rounds their operands to\n"                                     \
             "bfloat16 and accumulates in float32, all else stays float32",                                  \
     .offset = offsetof(type, field)}

/* Every command that writes outputs: a symlink, FIFO or device at an output
 * path is refused (exit 2) unless --force, and then written through, never
 * replaced (include/flash/io.h). */
#define FLASH_OPT_FORCE_ENTRY                                                                              \
    {.name = "--force", .kind = FLASH_OPT_FORCE,                                                           \
     .help = "write through an output path flash does not own (a symlink,\nFIFO or device) instead of "   \
             "refusing it; it is never replaced"}

typedef struct flash_command {
    const char *name;       /* "run": messages say "flash run: ..." */
    const char *positional; /* "CONFIG", or NULL when the command takes none */
    bool positional_optional;
    size_t positional_offset; /* const char * in the argument struct */
    const char *about;      /* the help's description, after the usage line */
    const flash_opt *opts;  /* ends with an entry whose name is NULL */
    const char *epilogue;   /* after the options (exit codes, notes), or NULL */
} flash_command;

/* Parses argv[1..argc) into args (left as the caller initialised it where
 * not given). Returns true to go on; false with *exit_code set when the
 * help was printed (0) or a usage error was reported (2). */
bool flash_options_parse(const flash_command *cmd, int argc, char **argv, void *args, int *exit_code);

/* The command's help, generated from its table, on f. */
void flash_options_help(const flash_command *cmd, FILE *f);

/* Prints "flash CMD: <message>" and the --help hint to stderr; returns
 * FLASH_EXIT_USAGE. For combinations of options the table cannot state. */
int flash_cli_usage(const char *cmd, const char *fmt, ...) FLASH_PRINTF(2, 3);
/* Whether this process reports for the run: true unless it is a rank other
 * than 0 of a data-parallel run (comm.h), whose messages would repeat rank
 * 0's. */
bool flash_cli_speaks(void);
/* flash_status -> exit code: 0 ok, 2 bad input (usage, config, an input file), 1 anything else. */
int flash_cli_exit_code(flash_status st);
/* Prints "flash <cmd>: <message>" to stderr and returns the exit code. */
int flash_cli_fail(const char *cmd, const flash_error *err);

#endif
