/* Loading a pipeline for a command and reading its inputs (see cli.h). */
#include "cli.h"
#include "flash/trainer.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static bool g_machine_checks = true;

void flash_cli_pipeline_machine_checks(bool on) { g_machine_checks = on; }

/* The overrides, paths made absolute, then the plugins the config names. */
static flash_status finish_load(flash_cli_pipeline *p, const flash_options_sets *sets, flash_error *err)
{
    flash_status st = FLASH_OK;
    for (int i = 0; sets && i < sets->n && !st; i++) st = flash_cfg_set(p->root, sets->v[i], err);
    /* while the current directory is the one the command was typed in: a
     * config written into a run folder then names the same files from
     * anywhere (pipeline.h) */
    if (!st) st = flash_cfg_absolute_paths(p->root, err);
    /* `dtype:` reaches every context of the process, the plugins' included
     * (`flash check` checks its value alone: the machine is not the config's
     * business) */
    if (!st && g_machine_checks) st = flash_pipeline_precision(p->root, err);
    if (!st && !(p->registry = flash_registry_create())) st = flash_error_set(err, FLASH_ERR_NOMEM, "out of memory");
    if (!st) st = flash_registry_load_default(p->registry, p->root, err);
    if (st) {
        const char *path = p->config_path;
        flash_cli_pipeline_free(p);
        p->config_path = path;
    }
    return st;
}

flash_status flash_cli_pipeline_load(flash_cli_pipeline *p, const char *path, const flash_options_sets *sets,
                                     flash_error *err)
{
    memset(p, 0, sizeof *p);
    p->config_path = path;
    flash_status st = flash_cfg_load(path, &p->root, err);
    return st ? st : finish_load(p, sets, err);
}

flash_status flash_cli_pipeline_parse(flash_cli_pipeline *p, const char *text, const char *name,
                                      const flash_options_sets *sets, flash_error *err)
{
    memset(p, 0, sizeof *p);
    p->config_path = name;
    flash_status st = flash_cfg_parse_string(text, name, &p->root, err);
    return st ? st : finish_load(p, sets, err);
}

flash_status flash_cli_write_config_beside(const char *out, const flash_cli_pipeline *p, flash_error *err)
{
    char path[4200];
    const char *slash = strrchr(out, '/'), *base = slash ? slash + 1 : out, *dot = strrchr(base, '.');
    const int stem = (int)(dot && dot != base ? dot - out : (long)strlen(out));
    if (snprintf(path, sizeof path, "%.*s.config.yaml", stem, out) >= (int)sizeof path)
        return flash_error_set(err, FLASH_ERR_USAGE, "%s: path too long", out);
    return flash_pipeline_write_config(path, p->root, p->registry, err);
}

flash_status flash_cli_run_record_write(flash_cli_run_record *r, const char *dir, const flash_cli_pipeline *p,
                                        flash_error *err)
{
    memset(r, 0, sizeof *r);
    struct stat sb;
    r->made_dir = stat(dir, &sb) != 0;
    if (snprintf(r->dir, sizeof r->dir, "%s", dir) >= (int)sizeof r->dir ||
        snprintf(r->path, sizeof r->path, "%s/%s", dir, FLASH_RUN_CONFIG) >= (int)sizeof r->path)
        return flash_error_set(err, FLASH_ERR_USAGE, "%s: path too long", dir);
    if (!r->made_dir && access(r->path, F_OK) == 0) {
        flash_error e = {0};
        r->had_old = flash_read_file(r->path, &r->old, &r->old_n, &e) == FLASH_OK;
    }
    flash_status st = flash_mkdirs(dir, err);
    if (!st) st = flash_pipeline_write_config(r->path, p->root, p->registry, err);
    r->written = st == FLASH_OK;
    return st;
}

void flash_cli_run_record_end(flash_cli_run_record *r, flash_status st)
{
    if (r->written && (st == FLASH_ERR_CONFIG || st == FLASH_ERR_USAGE)) {
        flash_error e = {0};
        if (r->had_old) {
            flash_write_file_atomic(r->path, r->old, r->old_n, &e);
        } else {
            remove(r->path);
            /* a folder this run made holds nothing else yet; rmdir leaves
             * one that does */
            if (r->made_dir && rmdir(r->dir) != 0 && errno != ENOTEMPTY && errno != EEXIST)
                flash_warn("cannot remove %s: %s", r->dir, strerror(errno));
        }
    }
    free(r->old);
    r->old = NULL;
}

void flash_cli_pipeline_free(flash_cli_pipeline *p)
{
    if (!p) return;
    flash_registry_destroy(p->registry);
    flash_cfg_free(p->root);
    p->registry = NULL;
    p->root = NULL;
}

flash_status flash_cli_read_labels(const char *path, long n, bool exact, long max_label, const char *why, int **out,
                                   flash_error *err)
{
    flash_array a;
    flash_status st = flash_npy_read(path, &a, err);
    if (st) return st;
    if ((a.dtype != FLASH_I64 && a.dtype != FLASH_I32) || a.ndim != 1 || (exact ? a.shape[0] != n : a.shape[0] < n)) {
        flash_array_free(&a);
        if (exact) return flash_error_set(err, FLASH_ERR_USAGE, "%s: expected integer labels of shape (%ld)", path, n);
        return flash_error_set(err, FLASH_ERR_USAGE, "%s: expected integer labels of shape (N) with N >= %ld", path, n);
    }
    int *y = malloc((size_t)n * sizeof *y);
    if (!y) {
        flash_array_free(&a);
        return flash_error_set(err, FLASH_ERR_NOMEM, "out of memory for %ld labels", n);
    }
    for (long i = 0; i < n; i++) {
        long long v = a.dtype == FLASH_I64 ? ((const int64_t *)a.data)[i] : ((const int32_t *)a.data)[i];
        if (v < 0 || v > max_label) {
            free(y);
            flash_array_free(&a);
            return flash_error_set(err, FLASH_ERR_USAGE, "%s: label %lld of sample %ld %s", path, v, i, why);
        }
        y[i] = (int)v;
    }
    flash_array_free(&a);
    *out = y;
    return FLASH_OK;
}
