/* Helpers shared by the subcommands (see cli.h). */
#include "cli.h"

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
