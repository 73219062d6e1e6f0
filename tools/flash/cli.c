/* Helpers shared by the subcommands (see cli.h). */
#include "cli.h"

#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int flash_cli_exit_code(flash_status st)
{
    switch (st) {
    case FLASH_OK: return FLASH_EXIT_OK;
    case FLASH_ERR_CONFIG:
    case FLASH_ERR_USAGE: return FLASH_EXIT_USAGE;
    default: return FLASH_EXIT_FAIL;
    }
}

int flash_cli_fail(const char *cmd, const flash_error *err)
{
    flash_status st = err && err->status ? err->status : FLASH_ERR_RUNTIME;
    const char *msg = err && err->msg[0] ? err->msg : flash_status_name(st);
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

int flash_cli_parse_long(const char *v, long lo, long hi, long *out)
{
    char *end;
    long long x = strtoll(v, &end, 10);
    if (*end || end == v || x < lo || x > hi) return 0;
    *out = (long)x;
    return 1;
}

int flash_cli_wants_help(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--") == 0) break;
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) return 1;
    }
    return 0;
}

static int parse_args(const flash_cli_spec *spec, int argc, char **argv, flash_cli_args *a, void *self)
{
    const char *cmd = spec->cmd;
    const int max_sets = spec->max_sets < FLASH_CLI_MAX_SETS ? spec->max_sets : FLASH_CLI_MAX_SETS;
    for (int i = 1; i < argc; i++) {
        const char *o = argv[i];
        if (o[0] != '-' || o[1] == 0) {
            if (a->config) return flash_cli_usage(cmd, "unexpected argument '%s'", o);
            a->config = o;
            continue;
        }
        if (i + 1 >= argc) return flash_cli_usage(cmd, "%s needs a value", o);
        const char *v = argv[++i];
        const int is_device = strcmp(o, "--device") == 0;
        if (is_device || strcmp(o, "--set") == 0) {
            if (a->n_sets == max_sets) return flash_cli_usage(cmd, "too many --set (%s)", v);
            if (is_device) snprintf(a->device_set, sizeof a->device_set, "device=%.40s", v);
            a->sets[a->n_sets++] = is_device ? a->device_set : (char *)v;
        } else if (strcmp(o, "--seed") == 0) {
            if (!flash_cli_parse_long(v, 0, LONG_MAX, &a->seed))
                return flash_cli_usage(cmd, "expected a non-negative integer, got '%s'", v);
            a->has_seed = 1;
        } else {
            int rc = spec->option(self, o, v);
            if (rc) return rc;
        }
    }
    if (!a->config) return flash_cli_usage(cmd, "%s", "missing CONFIG");
    return spec->option(self, NULL, NULL);
}

int flash_cli_start(const flash_cli_spec *spec, int argc, char **argv, flash_cli_args *a, void *self,
                    flash_cli_pipeline *p)
{
    memset(a, 0, sizeof *a);
    memset(p, 0, sizeof *p);
    if (flash_cli_wants_help(argc, argv)) {
        fputs(spec->help, stdout);
        return FLASH_EXIT_OK;
    }
    int rc = parse_args(spec, argc, argv, a, self);
    if (rc) return rc;
    flash_error err = {0};
    if (flash_cli_pipeline_load(p, a->config, a->sets, a->n_sets, &err)) return flash_cli_fail(spec->cmd, &err);
    return FLASH_EXIT_OK;
}

flash_status flash_cli_pipeline_load(flash_cli_pipeline *p, const char *path, char **sets, int n_sets,
                                     flash_error *err)
{
    memset(p, 0, sizeof *p);
    p->config_path = path;
    flash_status st = flash_cfg_load(path, &p->root, err);
    if (st) return st;
    for (int i = 0; i < n_sets; i++)
        if ((st = flash_cfg_set(p->root, sets[i], err))) goto fail;
    if (!(p->registry = flash_registry_create())) {
        st = flash_error_set(err, FLASH_ERR_NOMEM, "out of memory");
        goto fail;
    }
    if ((st = flash_registry_load_default(p->registry, p->root, err))) goto fail;
    return FLASH_OK;
fail:
    flash_cli_pipeline_free(p);
    p->config_path = path;
    return st;
}

void flash_cli_pipeline_free(flash_cli_pipeline *p)
{
    if (!p) return;
    flash_registry_destroy(p->registry);
    flash_cfg_free(p->root);
    p->registry = NULL;
    p->root = NULL;
}
