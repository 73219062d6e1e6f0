/* Changing a loaded tree: `--set key.path=VALUE` overrides (the value is
 * YAML) and flash_cfg_put for values built in code. */
#include "runtime/config_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SET_FILE "--set"

/* Sets the location of every node below n (values given with --set). */
static bool relocate(flash_cfg *n, const char *file, int line, int col) {
    char *f = cfg_strdup(file);
    if (!f) return false;
    free(n->file);
    n->file = f;
    n->line = line;
    n->col = col;
    for (size_t i = 0; i < n->n; i++) {
        if (n->keys) {
            n->keys[i].line = line;
            n->keys[i].col = col;
        }
        if (!relocate(n->items[i], file, line, col)) return false;
    }
    return true;
}

/* Walks a dotted path ("a.b[1].c") from root, creating missing maps, and
 * returns in *parent the map that holds the last segment and in *key its
 * name, or in *slot a sequence item to replace when the path ends in an
 * index. */
static flash_status set_walk(flash_cfg *root, const char *keypath, flash_cfg ***slot, flash_cfg **parent,
                             char **key, flash_error *err) {
    *slot = NULL;
    *parent = NULL;
    *key = NULL;
    flash_cfg *n = root;
    const char *s = keypath;
    for (;;) {
        const char *dot = strchr(s, '.');
        size_t len = dot ? (size_t)(dot - s) : strlen(s);
        size_t name_len, idx[16];
        int k = cfg_split_segment(s, len, &name_len, idx, 16);
        if (k < 0 || name_len == 0)
            return flash_error_set(err, FLASH_ERR_USAGE, "--set %s: malformed key path (expected a.b.c or a.b[2].c)",
                                   keypath);
        char *name = cfg_strndup(s, name_len);
        if (!name) return cfg_nomem(err);
        bool last = !dot && k == 0;
        if (n->type == FLASH_CFG_NULL) n->type = FLASH_CFG_MAP; /* `key:` left empty becomes a map */
        if (n->type != FLASH_CFG_MAP) {
            char buf[96];
            free(name);
            return flash_cfg_error(n, err, "--set %s needs a map here, got %s", keypath,
                                   cfg_describe(n, buf, sizeof buf));
        }
        if (last) {
            *parent = n;
            *key = name;
            return FLASH_OK;
        }
        long i = cfg_map_index(n, name);
        if (i < 0) {
            if (k > 0) {
                flash_status st = cfg_error_at(err, FLASH_ERR_CONFIG, SET_FILE, 0, 0, keypath,
                                               "no sequence '%s' to index", name);
                free(name);
                return st;
            }
            flash_cfg *m = cfg_node_new(FLASH_CFG_MAP, SET_FILE, 0, 0);
            if (!m || !cfg_node_append(n, name, 0, 0, m)) {
                flash_cfg_free(m);
                free(name);
                return cfg_nomem(err);
            }
            i = (long)n->n - 1;
        }
        free(name);
        flash_cfg **cur = &n->items[i];
        for (int j = 0; j < k; j++) {
            if ((*cur)->type != FLASH_CFG_SEQ || idx[j] >= (*cur)->n) {
                char buf[96];
                if ((*cur)->type != FLASH_CFG_SEQ)
                    return flash_cfg_error(*cur, err, "--set %s needs a sequence here, got %s", keypath,
                                           cfg_describe(*cur, buf, sizeof buf));
                return flash_cfg_error(*cur, err, "--set %s: index %zu is out of range (%zu items)", keypath, idx[j],
                                       (*cur)->n);
            }
            cur = &(*cur)->items[idx[j]];
        }
        if (!dot) {
            *slot = cur;
            return FLASH_OK;
        }
        n = *cur;
        s = dot + 1;
    }
}

/* Levels a dotted key path with indices adds: one per segment and index. */
static int path_depth(const char *path) {
    int d = 1;
    for (const char *p = path; *p; p++) d += *p == '.' || *p == '[';
    return d;
}

static int node_depth(const flash_cfg *n) {
    int d = 0;
    for (size_t i = 0; i < n->n; i++) {
        const int c = node_depth(n->items[i]);
        if (c > d) d = c;
    }
    return n->n ? d + 1 : 0;
}

/* Is s valid UTF-8 with no control characters? */
static bool key_text_ok(const char *s) {
    const unsigned char *p = (const unsigned char *)s;
    while (*p) {
        unsigned c = *p;
        int more = c < 0x80 ? 0 : (c & 0xE0) == 0xC0 ? 1 : (c & 0xF0) == 0xE0 ? 2 : (c & 0xF8) == 0xF0 ? 3 : -1;
        if (more < 0 || (c < 0x80 && (c < 0x20 || c == 0x7f))) return false;
        if (c == 0xC0 || c == 0xC1 || c > 0xF4) return false; /* overlong or past U+10FFFF */
        unsigned cp = more == 0 ? c : more == 1 ? (c & 0x1F) : more == 2 ? (c & 0x0F) : (c & 0x07);
        p++;
        for (int i = 0; i < more; i++, p++) {
            if ((*p & 0xC0) != 0x80) return false;
            cp = (cp << 6) | (*p & 0x3F);
        }
        if ((more == 2 && cp < 0x800) || (more == 3 && (cp < 0x10000 || cp > 0x10FFFF)) ||
            (cp >= 0xD800 && cp <= 0xDFFF) || (cp >= 0x80 && cp < 0xA0) || cp == 0xFFFE || cp == 0xFFFF)
            return false;
    }
    return true;
}

/* flash_cfg_set and flash_cfg_set_from: the value's nodes are located at
 * file:line:col (SET_FILE, 0, 0 for the command line). */
static flash_status cfg_set_located(flash_cfg *root, const char *assignment, const char *file, int line, int col,
                                    flash_error *err) {
    if (!assignment) return flash_error_set(err, FLASH_ERR_USAGE, "--set: no assignment given");
    const char *eq = strchr(assignment, '=');
    if (!eq || eq == assignment)
        return flash_error_set(err, FLASH_ERR_USAGE, "--set '%s': expected KEY=VALUE (e.g. sampler.steps=3)",
                               assignment);
    if (!root || root->type != FLASH_CFG_MAP)
        return flash_error_set(err, FLASH_ERR_USAGE, "--set %s: the config is not a map", assignment);
    char *keypath = cfg_strndup(assignment, (size_t)(eq - assignment));
    if (!keypath) return cfg_nomem(err);
    const char *value = eq + 1;
    /* A key read from YAML is UTF-8 without control characters (libyaml's
     * reader checks); a key from the command line must be too, or the
     * config would print as YAML that no reader accepts. */
    /* `extends` is composition, done when a file loads; in a loaded tree it
     * would name a base that printing and reading back would load */
    if (!strcmp(keypath, "extends") || !strncmp(keypath, "extends.", 8) || !strncmp(keypath, "extends[", 8)) {
        free(keypath);
        return flash_error_set(err, FLASH_ERR_USAGE,
                               "--set extends: bases are merged when a file loads; name them in the file's extends:");
    }
    if (!key_text_ok(keypath)) {
        free(keypath);
        return flash_error_set(err, FLASH_ERR_USAGE,
                               "--set: the key must be UTF-8 text without control characters (a dotted path such "
                               "as sampler.steps)");
    }

    flash_cfg *val = NULL;
    flash_error perr = {0};
    flash_status st = cfg_parse_text(value, strlen(value), SET_FILE, &val, &perr);
    if (st) {
        /* perr reads "--set:1:7: problem": keep libyaml's text and the
         * column within the value, name the key. */
        const char *msg = perr.msg;
        int line, col, used = 0;
        if (sscanf(msg, SET_FILE ":%d:%d: %n", &line, &col, &used) == 2 && used > 0) {
            /* libyaml places a missing ']' or quote on the line after the
             * last one. */
            char at[64];
            if (line == 1)
                snprintf(at, sizeof at, "at column %d", col);
            else if (!strchr(value, '\n'))
                snprintf(at, sizeof at, "at the end");
            else
                snprintf(at, sizeof at, "at line %d, column %d", line, col);
            st = flash_error_set(err, st == FLASH_ERR_NOMEM ? st : FLASH_ERR_CONFIG,
                                 "--set %s: bad YAML value '%s' %s: %s", keypath, value, at, msg + used);
        } else {
            if (!strncmp(msg, SET_FILE ": ", strlen(SET_FILE ": "))) msg += strlen(SET_FILE ": ");
            st = flash_error_set(err, st == FLASH_ERR_NOMEM ? st : FLASH_ERR_CONFIG,
                                 "--set %s: bad YAML value '%s': %s", keypath, value, msg);
        }
        free(keypath);
        return st;
    }
    if (!relocate(val, file, line, col)) {
        st = cfg_nomem(err);
        goto done;
    }
    /* no deeper than a file may nest (CFG_MAX_DEPTH), so the config still
     * prints as YAML that reads back */
    if (path_depth(keypath) + node_depth(val) > CFG_MAX_DEPTH) {
        st = flash_error_set(err, FLASH_ERR_USAGE, "--set %.80s...: nests deeper than %d levels", keypath,
                             CFG_MAX_DEPTH);
        goto done;
    }
    flash_cfg **slot, *parent;
    char *key;
    if ((st = set_walk(root, keypath, &slot, &parent, &key, err))) goto done;
    if (slot) {
        flash_cfg_free(*slot);
        *slot = val;
    } else {
        long i = cfg_map_index(parent, key);
        if (i >= 0) {
            flash_cfg_free(parent->items[i]);
            parent->items[i] = val;
            parent->keys[i].line = parent->keys[i].col = 0;
        } else if (!cfg_node_append(parent, key, 0, 0, val)) {
            free(key);
            st = cfg_nomem(err);
            goto done;
        }
        free(key);
    }
    val = NULL;
    if (!cfg_relabel(root, "")) st = cfg_nomem(err);
done:
    flash_cfg_free(val);
    free(keypath);
    return st;
}

flash_status flash_cfg_set(flash_cfg *root, const char *assignment, flash_error *err) {
    return cfg_set_located(root, assignment, SET_FILE, 0, 0, err);
}

flash_status flash_cfg_set_from(flash_cfg *root, const char *assignment, const flash_cfg *origin, flash_error *err) {
    if (!origin || !origin->file || origin->line <= 0) return flash_cfg_set(root, assignment, err);
    return cfg_set_located(root, assignment, origin->file, origin->line, origin->col, err);
}

flash_status flash_cfg_put(flash_cfg *map, const char *key, const char *scalar, flash_error *err) {
    if (!key) return flash_error_set(err, FLASH_ERR_USAGE, "flash_cfg_put: no key");
    if (!map || map->type != FLASH_CFG_MAP)
        return flash_error_set(err, FLASH_ERR_USAGE, "flash_cfg_put: '%s' needs a map", key ? key : "(null)");
    flash_cfg *v = cfg_node_new(FLASH_CFG_SCALAR, map->file, map->line, map->col);
    if (!v || !(v->scalar = cfg_strdup(scalar ? scalar : ""))) {
        flash_cfg_free(v);
        return cfg_nomem(err);
    }
    char *path = map->path[0] ? cfg_asprintf("%s.%s", map->path, key) : cfg_strdup(key);
    if (!path || !cfg_relabel(v, path)) {
        free(path);
        flash_cfg_free(v);
        return cfg_nomem(err);
    }
    free(path);
    long i = cfg_map_index(map, key);
    if (i >= 0) {
        flash_cfg_free(map->items[i]);
        map->items[i] = v;
    } else if (!cfg_node_append(map, key, map->line, map->col, v)) {
        flash_cfg_free(v);
        return cfg_nomem(err);
    }
    return FLASH_OK;
}
