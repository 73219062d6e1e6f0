/* Paths inside a pipeline made absolute (flash_cfg_absolute_paths in
 * include/flash/pipeline.h), so that a resolved config written into a run
 * folder names the same files from any working directory. */
#include "flash/pipeline.h"
#include "runtime/config_internal.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Keys of a component slot (a map with `plugin:`) that name files: the npy
 * dataset's arrays, fashion_mnist's folder, the evaluator metrics'
 * checkpoint and config file, sliced_wasserstein's reference array. */
static const char *const slot_path_keys[] = {"path", "test_path", "labels", "test_labels",
                                             "checkpoint", "evaluator", "reference", NULL};

/* "a/b" + "c" into out, with "./" prefixes dropped from c. */
static bool join(char *out, size_t n, const char *dir, const char *rel)
{
    while (rel[0] == '.' && rel[1] == '/') rel += 2;
    return (size_t)snprintf(out, n, "%s/%s", dir, rel) < n;
}

/* The rule of flash_cfg_absolute_paths for one scalar. */
static flash_status absolute(flash_cfg *node, const char *cwd, flash_error *err)
{
    const char *p = node->scalar;
    if (node->type != FLASH_CFG_SCALAR || !p || !p[0] || p[0] == '/') return FLASH_OK;
    /* the one rule (flash_cfg_resolve_path), made absolute from the
     * current directory */
    char found[PATH_MAX], abs[PATH_MAX];
    if (!flash_cfg_resolve_path(node, p, found, sizeof found)) return flash_cfg_error(node, err, "path too long");
    if (found[0] != '/' && !join(abs, sizeof abs, cwd, found)) return flash_cfg_error(node, err, "path too long");
    char *copy = cfg_strdup(found[0] == '/' ? found : abs);
    if (!copy) return cfg_nomem(err);
    free(node->scalar);
    node->scalar = copy;
    return FLASH_OK;
}

static flash_status walk(flash_cfg *n, const char *cwd, int depth, flash_error *err)
{
    if (!n || depth > CFG_MAX_DEPTH) return FLASH_OK;
    flash_status st = FLASH_OK;
    if (n->type == FLASH_CFG_MAP && cfg_map_index(n, "plugin") >= 0) {
        for (size_t i = 0; i < n->n && !st; i++)
            for (size_t k = 0; slot_path_keys[k]; k++)
                if (strcmp(n->keys[i].name, slot_path_keys[k]) == 0) st = absolute(n->items[i], cwd, err);
    }
    for (size_t i = 0; i < n->n && !st; i++) st = walk(n->items[i], cwd, depth + 1, err);
    return st;
}

flash_status flash_cfg_absolute_paths(flash_cfg *root, flash_error *err)
{
    if (!root || root->type != FLASH_CFG_MAP) return FLASH_OK;
    char cwd[PATH_MAX];
    if (!getcwd(cwd, sizeof cwd)) return flash_error_set(err, FLASH_ERR_IO, "cannot read the current directory");
    flash_status st = FLASH_OK;
    for (size_t i = 0; i < root->n && !st; i++) {
        const char *k = root->keys[i].name;
        flash_cfg *v = root->items[i];
        const size_t len = strlen(k);
        if (len > 11 && strcmp(k + len - 11, "_checkpoint") == 0) {
            st = absolute(v, cwd, err);
        } else if (strcmp(k, "plugin_paths") == 0 && v->type == FLASH_CFG_SEQ) {
            for (size_t j = 0; j < v->n && !st; j++) st = absolute(v->items[j], cwd, err);
        }
    }
    return st ? st : walk(root, cwd, 0, err);
}
