/* What a run was made with, recorded beside its outputs (pipeline.h): the
 * resolved config and the content hashes of the plugin files its
 * components come from, so a rebuilt plugin is noticed before a student
 * distilled by the old one is reused. */
#include "flash/pipeline.h"
#include "pipeline/provenance.h"
#include "runtime/io_internal.h"

#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static bool listed(const flash_plugin_files *pf, const char *path)
{
    for (size_t i = 0; i < pf->n; i++)
        if (strcmp(pf->path[i], path) == 0) return true;
    return false;
}

static flash_status add_origin(flash_plugin_files *pf, const char *origin, flash_error *err)
{
    char real[PATH_MAX];
    const char *path = realpath(origin, real) ? real : origin;
    if (listed(pf, path)) return FLASH_OK;
    char *text = NULL;
    size_t n = 0;
    flash_status st = flash_read_file(path, &text, &n, err);
    if (st) {
        flash_error_prefix(err, "plugin file");
        return st;
    }
    const uint64_t h = flash_fnv1a64(FLASH_FNV1A64_INIT, text, n);
    free(text);
    char **np = realloc(pf->path, (pf->n + 1) * sizeof *np);
    if (np) pf->path = np;
    uint64_t *nh = np ? realloc(pf->hash, (pf->n + 1) * sizeof *nh) : NULL;
    if (nh) pf->hash = nh;
    if (!np || !nh || !(pf->path[pf->n] = strdup(path)))
        return flash_error_set(err, FLASH_ERR_NOMEM, "out of memory recording the plugin files");
    pf->hash[pf->n++] = h;
    return FLASH_OK;
}

/* Every component named by a `plugin:` key below n: the files of the
 * registered components of that name (of any kind: the slot decides the
 * kind, and a name shared by two kinds costs one more file at most). */
static flash_status walk(const flash_cfg *n, const flash_registry *r, flash_plugin_files *pf, int depth,
                         flash_error *err)
{
    if (!n || depth > 256) return FLASH_OK;
    flash_status st = FLASH_OK;
    const char *name = flash_cfg_kind(n) == FLASH_CFG_MAP ? flash_cfg_scalar(flash_cfg_get(n, "plugin")) : NULL;
    for (size_t i = 0; name && i < flash_registry_count(r) && !st; i++) {
        const char *origin = NULL;
        const flash_component *c = flash_registry_at(r, i, &origin);
        /* a component added in code has no file to hash */
        if (c && origin && origin[0] != '(' && strcmp(c->name, name) == 0) st = add_origin(pf, origin, err);
    }
    for (size_t i = 0; i < flash_cfg_len(n) && !st; i++) st = walk(flash_cfg_at(n, i), r, pf, depth + 1, err);
    return st;
}

static int by_path(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

flash_status flash_plugin_files_of(const flash_cfg *root, const flash_registry *r, flash_plugin_files *out,
                                   flash_error *err)
{
    memset(out, 0, sizeof *out);
    flash_status st = r ? walk(root, r, out, 0, err) : FLASH_OK;
    if (st) {
        flash_plugin_files_free(out);
        return st;
    }
    /* sorted by path, hashes following their paths */
    for (size_t i = 1; i < out->n; i++)
        for (size_t j = i; j > 0 && by_path(&out->path[j - 1], &out->path[j]) > 0; j--) {
            char *p = out->path[j];
            out->path[j] = out->path[j - 1];
            out->path[j - 1] = p;
            uint64_t h = out->hash[j];
            out->hash[j] = out->hash[j - 1];
            out->hash[j - 1] = h;
        }
    return FLASH_OK;
}

void flash_plugin_files_free(flash_plugin_files *pf)
{
    if (!pf) return;
    for (size_t i = 0; i < pf->n; i++) free(pf->path[i]);
    free(pf->path);
    free(pf->hash);
    memset(pf, 0, sizeof *pf);
}

char *flash_config_record(const flash_cfg *root, const flash_plugin_files *pf)
{
    char *yaml = flash_cfg_to_yaml(root);
    if (!yaml) return NULL;
    size_t n = strlen(yaml) + 256;
    for (size_t i = 0; pf && i < pf->n; i++) n += strlen(pf->path[i]) + 40;
    char *s = malloc(n);
    if (!s) {
        free(yaml);
        return NULL;
    }
    size_t k = (size_t)snprintf(s, n, "%s", FLASH_CONFIG_RECORD_HEADER);
    for (size_t i = 0; pf && i < pf->n; i++)
        k += (size_t)snprintf(s + k, n - k, "%s%016" PRIx64 " %s\n", FLASH_CONFIG_RECORD_PLUGIN, pf->hash[i],
                              pf->path[i]);
    snprintf(s + k, n - k, "%s", yaml);
    free(yaml);
    return s;
}

const char *flash_config_record_body(const char *text)
{
    while (text && text[0] == '#') {
        const char *nl = strchr(text, '\n');
        text = nl ? nl + 1 : text + strlen(text);
    }
    return text;
}

flash_status flash_pipeline_write_config(const char *path, const flash_cfg *root, const flash_registry *r,
                                         flash_error *err)
{
    flash_plugin_files pf;
    flash_status st = flash_plugin_files_of(root, r, &pf, err);
    if (st) return st;
    char *text = flash_config_record(root, &pf);
    flash_plugin_files_free(&pf);
    if (!text) return flash_error_set(err, FLASH_ERR_NOMEM, "%s: cannot serialise the config", path);
    st = flash_write_file_atomic(path, text, strlen(text), err);
    free(text);
    return st;
}
