/* The option layer (see options.h): parsing argv against a command's table,
 * the help generated from it, and the exit codes. */
#include "options.h"

#include "flash/comm.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#define MAX_OPTS 64
/* Help column: options and their values fit in this width, or their help
 * starts on the next line. */
#define HELP_COLUMN_MAX 24
#define USAGE_WIDTH 100

int flash_cli_exit_code(flash_status st)
{
    switch (st) {
    case FLASH_OK: return FLASH_EXIT_OK;
    case FLASH_ERR_CONFIG:
    case FLASH_ERR_USAGE:
    case FLASH_ERR_INPUT:
    case FLASH_ERR_PLUGIN: /* a plugin file that cannot be loaded (another ABI, no entry) is bad input */
        return FLASH_EXIT_USAGE;
    default: return FLASH_EXIT_FAIL;
    }
}

bool flash_cli_speaks(void)
{
    return flash_comm_rank(flash_comm_world(NULL)) == 0;
}

int flash_cli_fail(const char *cmd, const flash_error *err)
{
    flash_status st = err && err->status ? err->status : FLASH_ERR_RUNTIME;
    const char *msg = err && err->msg[0] ? err->msg : flash_status_name(st);
    /* on several ranks the message says whose it is */
    const flash_comm *world = flash_comm_world(NULL);
    if (flash_comm_size(world) > 1)
        fprintf(stderr, "flash %s: rank %d of %d: %s\n", cmd, flash_comm_rank(world), flash_comm_size(world), msg);
    else
        fprintf(stderr, "flash %s: %s\n", cmd, msg);
    return flash_cli_exit_code(st);
}

int flash_cli_usage(const char *cmd, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "flash %s: ", cmd);
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n(see 'flash %s --help')\n", cmd);
    va_end(ap);
    return FLASH_EXIT_USAGE;
}

static const char *value_name(const flash_opt *o)
{
    if (o->kind == FLASH_OPT_FLAG || o->kind == FLASH_OPT_FORCE) return NULL;
    if (o->kind == FLASH_OPT_DEVICE) return o->value ? o->value : "cpu|cuda";
    if (o->kind == FLASH_OPT_DTYPE) return o->value ? o->value : "fp32|bf16";
    return o->value ? o->value : "VALUE";
}

/* "--out RUNDIR", "[--out RUNDIR]", "[--set KEY=VALUE]..." */
static int usage_item(const flash_opt *o, char *buf, size_t n)
{
    const char *v = value_name(o);
    const bool repeat = o->kind == FLASH_OPT_SET;
    return snprintf(buf, n, "%s%s%s%s%s%s", o->required ? "" : "[", o->name, v ? " " : "", v ? v : "",
                    o->required ? "" : "]", repeat ? "..." : "");
}

void flash_options_help(const flash_command *cmd, FILE *f)
{
    char head[64], item[128];
    int indent = snprintf(head, sizeof head, "usage: flash %s", cmd->name);
    fputs(head, f);
    int col = indent;
    if (cmd->positional) {
        int n = snprintf(item, sizeof item, cmd->positional_optional ? "[%s]" : "%s", cmd->positional);
        fprintf(f, " %s", item);
        col += 1 + n;
    }
    for (const flash_opt *o = cmd->opts; o && o->name; o++) {
        int n = usage_item(o, item, sizeof item);
        if (col + 1 + n > USAGE_WIDTH) {
            fprintf(f, "\n%*s", indent, "");
            col = indent;
        }
        fprintf(f, " %s", item);
        col += 1 + n;
    }
    fputs("\n\n", f);
    if (cmd->about) fprintf(f, "%s\n", cmd->about);

    int width = (int)strlen("-h, --help");
    for (const flash_opt *o = cmd->opts; o && o->name; o++) {
        const char *v = value_name(o);
        int n = (int)strlen(o->name) + (v ? 1 + (int)strlen(v) : 0);
        if (n > width && n <= HELP_COLUMN_MAX) width = n;
    }
    width += 2;
    for (const flash_opt *o = cmd->opts; o && o->name; o++) {
        const char *v = value_name(o);
        int n = snprintf(item, sizeof item, "%s%s%s", o->name, v ? " " : "", v ? v : "");
        fprintf(f, "  %s", item);
        const char *h = o->help ? o->help : "";
        bool first = true;
        if (n + 2 > width) {
            fputc('\n', f);
            first = false;
        }
        /* the help's lines, each in the column */
        while (*h || first) {
            size_t len = strcspn(h, "\n");
            fprintf(f, "%*s%.*s\n", first ? width - n : width + 2, "", (int)len, h);
            first = false;
            h += len;
            if (*h == '\n') h++;
        }
    }
    fprintf(f, "  %-*s%s\n", width, "-h, --help", "this text");
    if (cmd->epilogue) fprintf(f, "\n%s", cmd->epilogue);
}

static bool wants_help(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--") == 0) break;
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) return true;
    }
    return false;
}

static int unknown_option(const flash_command *cmd, const char *name)
{
    const char *names[MAX_OPTS + 2];
    int n = 0;
    for (const flash_opt *o = cmd->opts; o && o->name && n < MAX_OPTS; o++) names[n++] = o->name;
    names[n++] = "--help";
    names[n] = NULL;
    const char *near = flash_did_you_mean(name, names);
    if (near) return flash_cli_usage(cmd->name, "unknown option '%s' (did you mean '%s'?)", name, near);
    return flash_cli_usage(cmd->name, "unknown option '%s'", name);
}

static void list_choices(const char *const *c, char *buf, size_t n)
{
    size_t k = 0;
    buf[0] = 0;
    for (int i = 0; c[i] && k < n; i++)
        k += (size_t)snprintf(buf + k, n - k, "%s%s", i == 0 ? "" : c[i + 1] ? ", " : " or ", c[i]);
}

static int append(const flash_command *cmd, flash_options_sets *s, const char *v)
{
    if (s->n == FLASH_OPTIONS_MAX_SETS)
        return flash_cli_usage(cmd->name, "more than %d --set and --device", FLASH_OPTIONS_MAX_SETS);
    s->v[s->n++] = v;
    return FLASH_EXIT_OK;
}

static int store(const flash_command *cmd, const flash_opt *o, const char *v, char *args)
{
    static const char *const devices[] = {"cpu", "cuda", NULL};
    /* what --device D appends: the top-level key, as --set device=D would */
    static const char *const device_sets[] = {"device=cpu", "device=cuda"};
    static const char *const dtypes[] = {"fp32", "bf16", NULL};
    static const char *const dtype_sets[] = {"dtype=fp32", "dtype=bf16"};
    void *dst = args + o->offset;
    switch (o->kind) {
    case FLASH_OPT_FLAG: *(bool *)dst = true; return FLASH_EXIT_OK;
    case FLASH_OPT_STRING: *(const char **)dst = v; return FLASH_EXIT_OK;
    case FLASH_OPT_INT: {
        char *end;
        errno = 0;
        long long x = strtoll(v, &end, 10);
        if (*end || end == v || errno || x < o->lo || x > o->hi) {
            if (o->hi == LONG_MAX)
                return flash_cli_usage(cmd->name, "%s: expected an integer >= %ld, got '%s'", o->name, o->lo, v);
            return flash_cli_usage(cmd->name, "%s: expected an integer in [%ld, %ld], got '%s'", o->name, o->lo, o->hi,
                                   v);
        }
        *(long *)dst = (long)x;
        return FLASH_EXIT_OK;
    }
    case FLASH_OPT_CHOICE:
    case FLASH_OPT_DEVICE:
    case FLASH_OPT_DTYPE: {
        const char *const *c = o->kind == FLASH_OPT_DEVICE ? devices : o->kind == FLASH_OPT_DTYPE ? dtypes : o->choices;
        int i = 0;
        while (c[i] && strcmp(v, c[i]) != 0) i++;
        if (!c[i]) {
            char list[256];
            list_choices(c, list, sizeof list);
            return flash_cli_usage(cmd->name, "%s: expected %s, got '%s'", o->name, list, v);
        }
        if (o->kind == FLASH_OPT_DEVICE) return append(cmd, dst, device_sets[i]);
        if (o->kind == FLASH_OPT_DTYPE) return append(cmd, dst, dtype_sets[i]);
        *(const char **)dst = c[i];
        return FLASH_EXIT_OK;
    }
    case FLASH_OPT_SET: return append(cmd, dst, v);
    case FLASH_OPT_FORCE: flash_io_set_force(true); return FLASH_EXIT_OK;
    }
    return FLASH_EXIT_USAGE;
}

bool flash_options_parse(const flash_command *cmd, int argc, char **argv, void *args, int *exit_code)
{
    *exit_code = FLASH_EXIT_OK;
    if (wants_help(argc, argv)) {
        flash_options_help(cmd, stdout);
        return false;
    }
    bool given[MAX_OPTS] = {false}, positional = false, only_positional = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!only_positional && strcmp(a, "--") == 0) {
            only_positional = true;
            continue;
        }
        if (only_positional || a[0] != '-' || a[1] == 0) {
            if (!cmd->positional || positional) {
                *exit_code = flash_cli_usage(cmd->name, "unexpected argument '%s'", a);
                return false;
            }
            *(const char **)((char *)args + cmd->positional_offset) = a;
            positional = true;
            continue;
        }
        /* --name=value or --name value */
        char name[64];
        const char *eq = strchr(a, '='), *v = NULL;
        size_t len = eq ? (size_t)(eq - a) : strlen(a);
        snprintf(name, sizeof name, "%.*s", (int)(len < sizeof name ? len : sizeof name - 1), a);
        const flash_opt *o = NULL;
        int k = 0;
        for (const flash_opt *p = cmd->opts; p && p->name; p++, k++)
            if (strcmp(p->name, name) == 0) {
                o = p;
                break;
            }
        if (!o) {
            *exit_code = unknown_option(cmd, name);
            return false;
        }
        if (o->kind == FLASH_OPT_FLAG || o->kind == FLASH_OPT_FORCE) {
            if (eq) {
                *exit_code = flash_cli_usage(cmd->name, "%s takes no value", o->name);
                return false;
            }
        } else if (eq) {
            v = eq + 1;
        } else if (i + 1 < argc) {
            v = argv[++i];
        } else {
            *exit_code = flash_cli_usage(cmd->name, "%s needs a value (%s)", o->name, value_name(o));
            return false;
        }
        if (k < MAX_OPTS) given[k] = true;
        if ((*exit_code = store(cmd, o, v, args))) return false;
    }
    if (cmd->positional && !cmd->positional_optional && !positional) {
        *exit_code = flash_cli_usage(cmd->name, "missing %s", cmd->positional);
        return false;
    }
    int k = 0;
    for (const flash_opt *o = cmd->opts; o && o->name; o++, k++)
        if (o->required && k < MAX_OPTS && !given[k]) {
            *exit_code = flash_cli_usage(cmd->name, "missing %s %s", o->name, value_name(o));
            return false;
        }
    return true;
}
