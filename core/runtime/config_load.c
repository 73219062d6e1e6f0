/* Config files and their composition.
 *
 * Composition happens once, at load time: `extends` bases are loaded
 * recursively (relative to the including file), merged in order, then the
 * child is merged on top; maps merge key by key, everything else replaces.
 * The child's `!replace` (on a map: take it whole, do not merge) and
 * `!delete` (`key: !delete`: remove the base's key) say otherwise.
 */
#include "runtime/config_internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Overlays src onto dst (both maps), consuming src: maps merge key by key,
 * anything else in src replaces what dst has; a map tagged `!replace`
 * replaces the base's whole, and `key: !delete` removes the base's key.
 * (A `!delete` of a key the base lacks stays as a marker until
 * cfg_resolve_ops drops it.) */
static bool merge_into(flash_cfg *dst, flash_cfg *src) {
    while (src->n > 0) {
        flash_cfg *sv = src->items[0];
        cfg_key sk = src->keys[0];
        long i = cfg_map_index(dst, sk.name);
        if (sv->op == CFG_OP_DELETE && i >= 0) {
            /* `key: !delete`: the base's key goes, and so does the marker */
            cfg_map_remove(dst, (size_t)i);
            cfg_map_remove(src, 0);
            continue;
        }
        if (i >= 0 && dst->items[i]->type == FLASH_CFG_MAP && sv->type == FLASH_CFG_MAP && sv->op != CFG_OP_REPLACE) {
            if (!merge_into(dst->items[i], sv)) return false;
            dst->keys[i].line = sk.line;
            dst->keys[i].col = sk.col;
            /* The map now mixes nodes from two files; the child's own
             * position is the better place to point at. */
            char *f = cfg_strdup(sv->file);
            if (!f) return false;
            free(dst->items[i]->file);
            dst->items[i]->file = f;
            dst->items[i]->line = sv->line;
            dst->items[i]->col = sv->col;
            cfg_map_remove(src, 0);
            continue;
        }
        if (i >= 0) {
            flash_cfg_free(dst->items[i]);
            dst->items[i] = sv;
            free(dst->keys[i].name);
            dst->keys[i] = sk;
        } else {
            if (!cfg_node_reserve(dst)) return false;
            dst->items[dst->n] = sv;
            dst->keys[dst->n] = sk;
            dst->n++;
        }
        /* Ownership of sv and sk.name moved to dst. */
        memmove(src->items, src->items + 1, (src->n - 1) * sizeof *src->items);
        memmove(src->keys, src->keys + 1, (src->n - 1) * sizeof *src->keys);
        src->n--;
    }
    return true;
}

typedef struct load_stack {
    const char *names[CFG_MAX_EXTENDS + 1]; /* canonical paths of the files being loaded */
    const char *shown[CFG_MAX_EXTENDS + 1]; /* as the user wrote them */
    int n;
} load_stack;

static flash_status load_file(const char *path, load_stack *stack, flash_cfg **out, flash_error *err);

/* "dir/of/including/file" + "/" + name, unless name is absolute or the
 * including file has no directory part (or base_dir is NULL: the current
 * directory). */
static char *resolve_relative(const char *including, const char *name) {
    if (name[0] == '/' || !including) return cfg_strdup(name);
    const char *slash = strrchr(including, '/');
    if (!slash) return cfg_strdup(name);
    return cfg_asprintf("%.*s/%s", (int)(slash - including), including, name);
}

static flash_status extends_error_cycle(const flash_cfg *at, load_stack *stack, const char *shown,
                                        int first, flash_error *err) {
    char chain[700] = "";
    size_t len = 0;
    for (int i = first; i < stack->n && len < sizeof chain; i++)
        len += (size_t)snprintf(chain + len, sizeof chain - len, "%s -> ", stack->shown[i]);
    if (len < sizeof chain) snprintf(chain + len, sizeof chain - len, "%s", shown);
    return flash_cfg_error(at, err, "circular extends: %s", chain);
}

/* Resolves the `extends` key of root (a map read from `file`; file may be
 * NULL for text parsed from a string: bases are then relative to the
 * current directory). On success root has been replaced by the merged
 * tree. */
static flash_status apply_extends(flash_cfg **rootp, const char *file, load_stack *stack, flash_error *err) {
    flash_cfg *root = *rootp;
    long ei = cfg_map_index(root, "extends");
    if (ei < 0) return FLASH_OK;
    flash_cfg *ext = root->items[ei];
    size_t n_bases = ext->type == FLASH_CFG_SEQ ? ext->n : 1;
    if (ext->type == FLASH_CFG_SEQ) {
        for (size_t i = 0; i < ext->n; i++)
            if (ext->items[i]->type != FLASH_CFG_SCALAR) return cfg_expected(ext->items[i], "a file name", err);
    } else if (ext->type != FLASH_CFG_SCALAR) {
        return cfg_expected(ext, "a file name or a list of file names", err);
    }
    flash_cfg *merged = NULL;
    flash_status st = FLASH_OK;
    for (size_t b = 0; b < n_bases && !st; b++) {
        const flash_cfg *item = ext->type == FLASH_CFG_SEQ ? ext->items[b] : ext;
        char *bpath = resolve_relative(file, item->scalar);
        if (!bpath) {
            st = cfg_nomem(err);
            break;
        }
        char *canon = realpath(bpath, NULL);
        if (!canon) {
            int e = errno;
            if (e == ENOMEM)
                st = cfg_nomem(err);
            else
                st = flash_cfg_error(item, err, "cannot read base config '%s': %s", bpath, strerror(e));
            free(bpath);
            break;
        }
        for (int i = 0; i < stack->n; i++)
            if (!strcmp(stack->names[i], canon)) {
                st = extends_error_cycle(item, stack, bpath, i, err);
                break;
            }
        if (!st && stack->n >= CFG_MAX_EXTENDS)
            st = flash_cfg_error(item, err, "extends chain longer than %d files", CFG_MAX_EXTENDS);
        flash_cfg *base = NULL;
        if (!st) {
            stack->names[stack->n] = canon;
            stack->shown[stack->n] = bpath;
            stack->n++;
            st = load_file(bpath, stack, &base, err);
            stack->n--;
            /* a base that cannot be read at all (missing, a directory) is
             * named where the child asked for it */
            if (st && err && strstr(err->msg, "not a file flash reads"))
                flash_error_prefix(err, "%s:%d:%d: extends", flash_cfg_file(item), flash_cfg_line(item),
                                   flash_cfg_col(item));
        }
        free(canon);
        free(bpath);
        if (st) break;
        if (base->type == FLASH_CFG_NULL) {
            flash_cfg_free(base);
            continue;
        }
        if (!merged) {
            merged = base;
        } else {
            bool ok = merge_into(merged, base);
            flash_cfg_free(base);
            if (!ok) st = cfg_nomem(err);
        }
    }
    if (st) {
        flash_cfg_free(merged);
        return st;
    }
    cfg_map_remove(root, (size_t)ei);
    if (!merged) return FLASH_OK;
    /* The resolved root is the child's: its location and its keys win. */
    if (!merge_into(merged, root)) {
        flash_cfg_free(merged);
        return cfg_nomem(err);
    }
    char *f = cfg_strdup(root->file);
    if (!f) {
        flash_cfg_free(merged);
        return cfg_nomem(err);
    }
    free(merged->file);
    merged->file = f;
    merged->line = root->line;
    merged->col = root->col;
    flash_cfg_free(root);
    *rootp = merged;
    return FLASH_OK;
}

/* A config's top level must be a map; an empty file is an empty map. */
static flash_status finish_root(flash_cfg **rootp, const char *file, load_stack *stack, flash_error *err) {
    flash_cfg *root = *rootp;
    if (root->type == FLASH_CFG_NULL) {
        root->type = FLASH_CFG_MAP;
        return FLASH_OK;
    }
    if (root->type != FLASH_CFG_MAP) {
        char buf[96];
        return flash_cfg_error(root, err, "the top level of a config must be a map, got %s",
                               cfg_describe(root, buf, sizeof buf));
    }
    flash_status st = apply_extends(rootp, file, stack, err);
    if (st) return st;
    /* this file's tags applied to its bases; a file that extends it sees
     * plain nodes */
    cfg_resolve_ops(*rootp);
    if (!cfg_relabel(*rootp, "")) return cfg_nomem(err);
    return FLASH_OK;
}

static flash_status load_file(const char *path, load_stack *stack, flash_cfg **out, flash_error *err) {
    *out = NULL;
    char *text;
    size_t len;
    flash_status st = flash_read_file(path, &text, &len, err);
    /* A config that cannot be read is a bad configuration (exit code 2),
     * not a runtime failure. */
    if (st == FLASH_ERR_IO || st == FLASH_ERR_INPUT) {
        st = FLASH_ERR_CONFIG;
        if (err) err->status = st;
    }
    if (st) return st;
    flash_cfg *root;
    st = cfg_parse_text(text, len, path, &root, err);
    free(text);
    if (st) return st;
    if ((st = finish_root(&root, path, stack, err))) {
        flash_cfg_free(root);
        return st;
    }
    *out = root;
    return FLASH_OK;
}

flash_status flash_cfg_load(const char *path, flash_cfg **root, flash_error *err) {
    *root = NULL;
    if (!path) return flash_error_set(err, FLASH_ERR_USAGE, "flash_cfg_load: no config path");
    load_stack stack = {.n = 0};
    char *canon = realpath(path, NULL);
    if (canon) {
        stack.names[0] = canon;
        stack.shown[0] = path;
        stack.n = 1;
    }
    flash_status st = load_file(path, &stack, root, err);
    free(canon);
    return st;
}

flash_status flash_cfg_parse_string(const char *text, const char *name, flash_cfg **root, flash_error *err) {
    *root = NULL;
    if (!text) return flash_error_set(err, FLASH_ERR_USAGE, "flash_cfg_parse_string: no text");
    if (!name) name = "<string>";
    flash_cfg *r;
    flash_status st = cfg_parse_text(text, strlen(text), name, &r, err);
    if (st) return st;
    load_stack stack = {.n = 0};
    if ((st = finish_root(&r, NULL, &stack, err))) {
        flash_cfg_free(r);
        return st;
    }
    *root = r;
    return FLASH_OK;
}
