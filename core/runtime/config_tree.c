/* Configuration nodes: allocation, cloning, accessors, dotted key paths and
 * the errors that point at a node's file:line:col (config_internal.h lists
 * the other files of the configuration). */
#include "runtime/config_internal.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* ---- small helpers --------------------------------------------------- */

char *cfg_strdup(const char *s) {
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d) memcpy(d, s, n);
    return d;
}

char *cfg_strndup(const char *s, size_t n) {
    char *d = malloc(n + 1);
    if (d) {
        memcpy(d, s, n);
        d[n] = '\0';
    }
    return d;
}

char *cfg_asprintf(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0) return NULL;
    char *s = malloc((size_t)n + 1);
    if (!s) return NULL;
    va_start(ap, fmt);
    vsnprintf(s, (size_t)n + 1, fmt, ap);
    va_end(ap);
    return s;
}

flash_status cfg_nomem(flash_error *err) {
    return flash_error_set(err, FLASH_ERR_NOMEM, "config: out of memory");
}

flash_cfg *cfg_node_new(flash_cfg_type type, const char *file, int line, int col) {
    flash_cfg *n = calloc(1, sizeof *n);
    if (!n) return NULL;
    n->type = type;
    n->line = line;
    n->col = col;
    n->file = cfg_strdup(file ? file : "");
    n->path = cfg_strdup("");
    if (!n->file || !n->path) {
        free(n->file);
        free(n->path);
        free(n);
        return NULL;
    }
    return n;
}

void flash_cfg_free(flash_cfg *n) {
    if (!n) return;
    for (size_t i = 0; i < n->n; i++) {
        flash_cfg_free(n->items[i]);
        if (n->keys) free(n->keys[i].name);
    }
    free(n->items);
    free(n->keys);
    free(n->scalar);
    free(n->file);
    free(n->path);
    free(n);
}

bool cfg_node_reserve(flash_cfg *n) {
    if (n->n < n->cap) return true;
    size_t cap = n->cap ? 2 * n->cap : 4;
    flash_cfg **items = realloc(n->items, cap * sizeof *items);
    if (!items) return false;
    n->items = items;
    if (n->type == FLASH_CFG_MAP) {
        cfg_key *keys = realloc(n->keys, cap * sizeof *keys);
        if (!keys) return false;
        n->keys = keys;
    }
    n->cap = cap;
    return true;
}

/* Appends child to a seq (key NULL) or map; takes ownership of child on
 * success only. */
bool cfg_node_append(flash_cfg *n, const char *key, int kline, int kcol, flash_cfg *child) {
    if (!cfg_node_reserve(n)) return false;
    if (n->type == FLASH_CFG_MAP) {
        char *name = cfg_strdup(key);
        if (!name) return false;
        n->keys[n->n] = (cfg_key){name, kline, kcol, false};
    }
    n->items[n->n++] = child;
    return true;
}

long cfg_map_index(const flash_cfg *map, const char *key) {
    if (!map || map->type != FLASH_CFG_MAP || !key) return -1;
    for (size_t i = 0; i < map->n; i++)
        if (strcmp(map->keys[i].name, key) == 0) return (long)i;
    return -1;
}

void cfg_map_remove(flash_cfg *map, size_t i) {
    flash_cfg_free(map->items[i]);
    free(map->keys[i].name);
    memmove(map->items + i, map->items + i + 1, (map->n - i - 1) * sizeof *map->items);
    memmove(map->keys + i, map->keys + i + 1, (map->n - i - 1) * sizeof *map->keys);
    map->n--;
}

/* Recomputes key paths below n, whose own path becomes `path`. */
bool cfg_relabel(flash_cfg *n, const char *path) {
    char *p = cfg_strdup(path);
    if (!p) return false;
    free(n->path);
    n->path = p;
    for (size_t i = 0; i < n->n; i++) {
        char *cp = n->type == FLASH_CFG_MAP
                       ? (path[0] ? cfg_asprintf("%s.%s", path, n->keys[i].name) : cfg_strdup(n->keys[i].name))
                       : cfg_asprintf("%s[%zu]", path, i);
        if (!cp) return false;
        bool ok = cfg_relabel(n->items[i], cp);
        free(cp);
        if (!ok) return false;
    }
    return true;
}

flash_cfg *flash_cfg_clone(const flash_cfg *s) {
    if (!s) return NULL;
    flash_cfg *n = cfg_node_new(s->type, s->file, s->line, s->col);
    if (!n) return NULL;
    n->quoted = s->quoted;
    n->op = s->op;
    free(n->path);
    n->path = cfg_strdup(s->path);
    if (!n->path) goto fail;
    if (s->scalar && !(n->scalar = cfg_strdup(s->scalar))) goto fail;
    for (size_t i = 0; i < s->n; i++) {
        flash_cfg *c = flash_cfg_clone(s->items[i]);
        if (!c) goto fail;
        if (!cfg_node_append(n, s->keys ? s->keys[i].name : NULL, s->keys ? s->keys[i].line : 0,
                             s->keys ? s->keys[i].col : 0, c)) {
            flash_cfg_free(c);
            goto fail;
        }
    }
    return n;
fail:
    flash_cfg_free(n);
    return NULL;
}

flash_cfg *flash_cfg_new_map(const char *name) {
    return cfg_node_new(FLASH_CFG_MAP, name ? name : "", 0, 0);
}

/* ---- accessors --------------------------------------------------------- */

flash_cfg_type flash_cfg_kind(const flash_cfg *n) { return n ? n->type : FLASH_CFG_NULL; }

const flash_cfg *flash_cfg_get(const flash_cfg *map, const char *key) {
    long i = cfg_map_index(map, key);
    cfg_record_get(map, key, i >= 0);
    return i < 0 ? NULL : map->items[i];
}

size_t flash_cfg_len(const flash_cfg *n) {
    return n && (n->type == FLASH_CFG_SEQ || n->type == FLASH_CFG_MAP) ? n->n : 0;
}

const flash_cfg *flash_cfg_at(const flash_cfg *n, size_t i) { return n && i < flash_cfg_len(n) ? n->items[i] : NULL; }

const char *flash_cfg_key_at(const flash_cfg *map, size_t i) {
    return map && map->type == FLASH_CFG_MAP && i < map->n ? map->keys[i].name : NULL;
}

const char *flash_cfg_scalar(const flash_cfg *n) { return n && n->type == FLASH_CFG_SCALAR ? n->scalar : NULL; }

const char *flash_cfg_file(const flash_cfg *n) { return n ? n->file : ""; }
int flash_cfg_line(const flash_cfg *n) { return n ? n->line : 0; }
int flash_cfg_col(const flash_cfg *n) { return n ? n->col : 0; }
const char *flash_cfg_keypath(const flash_cfg *n) { return n ? n->path : ""; }

static const char *where_at(const char *file, int line, int col, char *buf, size_t size) {
    if (!buf || size == 0) return buf;
    if (line > 0)
        snprintf(buf, size, "%s:%d:%d", file, line, col);
    else
        snprintf(buf, size, "%s", file);
    return buf;
}

const char *flash_cfg_where(const flash_cfg *n, char *buf, size_t size) {
    return where_at(n ? n->file : "", n ? n->line : 0, n ? n->col : 0, buf, size);
}

/* Parses one path segment "name[2][0]" of a dotted path: *name_len gets the
 * name's length and idx[] the indices. Returns the number of indices, or -1
 * on a malformed segment. */
int cfg_split_segment(const char *seg, size_t len, size_t *name_len, size_t *idx, int max_idx) {
    size_t i = 0;
    while (i < len && seg[i] != '[') i++;
    *name_len = i;
    int k = 0;
    while (i < len) {
        if (seg[i] != '[' || k == max_idx) return -1;
        i++;
        if (i >= len || !isdigit((unsigned char)seg[i])) return -1;
        size_t v = 0;
        while (i < len && isdigit((unsigned char)seg[i])) {
            if (v > (SIZE_MAX - 9) / 10) return -1;
            v = v * 10 + (size_t)(seg[i++] - '0');
        }
        if (i >= len || seg[i] != ']') return -1;
        i++;
        idx[k++] = v;
    }
    return k;
}

const flash_cfg *flash_cfg_path(const flash_cfg *n, const char *dotted) {
    if (!n || !dotted) return NULL;
    const char *s = dotted;
    while (*s && n) {
        const char *dot = strchr(s, '.');
        size_t len = dot ? (size_t)(dot - s) : strlen(s);
        size_t name_len, idx[16];
        int k = cfg_split_segment(s, len, &name_len, idx, 16);
        if (k < 0 || (name_len == 0 && k == 0)) return NULL; /* "a..b" */
        if (name_len > 0) {
            const flash_cfg *next = NULL;
            if (n->type == FLASH_CFG_MAP)
                for (size_t i = 0; i < n->n && !next; i++)
                    if (strlen(n->keys[i].name) == name_len && memcmp(n->keys[i].name, s, name_len) == 0)
                        next = n->items[i];
            n = next;
        }
        for (int j = 0; j < k && n; j++)
            n = n->type == FLASH_CFG_SEQ && idx[j] < n->n ? n->items[idx[j]] : NULL;
        if (!dot) break;
        s = dot + 1;
    }
    return n;
}

/* ---- errors ------------------------------------------------------------ */

static flash_status error_atv(flash_error *err, flash_status st, const char *file, int line, int col,
                              const char *path, const char *fmt, va_list ap) {
    char where[512], msg[900];
    where_at(file, line, col, where, sizeof where);
    vsnprintf(msg, sizeof msg, fmt, ap);
    if (!where[0]) { /* a tree built in code without a name */
        if (path && path[0]) return flash_error_set(err, st, "%s: %s", path, msg);
        return flash_error_set(err, st, "%s", msg);
    }
    if (path && path[0]) return flash_error_set(err, st, "%s: %s: %s", where, path, msg);
    return flash_error_set(err, st, "%s: %s", where, msg);
}

flash_status cfg_error_at(flash_error *err, flash_status st, const char *file, int line, int col,
                             const char *path, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    flash_status s = error_atv(err, st, file, line, col, path, fmt, ap);
    va_end(ap);
    return s;
}

flash_status flash_cfg_error(const flash_cfg *n, flash_error *err, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    flash_status s;
    if (n)
        s = error_atv(err, FLASH_ERR_CONFIG, n->file, n->line, n->col, n->path, fmt, ap);
    else
        s = flash_error_setv(err, FLASH_ERR_CONFIG, fmt, ap);
    va_end(ap);
    return s;
}

/* "'abc'", "a map", ... for "expected X, got Y" messages. */
const char *cfg_describe(const flash_cfg *n, char *buf, size_t size) {
    switch (n->type) {
    case FLASH_CFG_NULL: return "null";
    case FLASH_CFG_SEQ: return "a sequence";
    case FLASH_CFG_MAP: return "a map";
    case FLASH_CFG_SCALAR: break;
    }
    if (strlen(n->scalar) > 60)
        snprintf(buf, size, "%s'%.57s...'", n->quoted ? "the string " : "", n->scalar);
    else
        snprintf(buf, size, "%s'%s'", n->quoted ? "the string " : "", n->scalar);
    return buf;
}

flash_status cfg_expected(const flash_cfg *n, const char *what, flash_error *err) {
    char buf[96];
    return flash_cfg_error(n, err, "expected %s, got %s", what, cfg_describe(n, buf, sizeof buf));
}

/* ---- scalar resolution ------------------------------------------------- */

void cfg_resolve_ops(flash_cfg *n) {
    if (!n) return;
    n->op = CFG_OP_MERGE;
    for (size_t i = 0; i < n->n;) {
        if (n->items[i]->op == CFG_OP_DELETE) {
            if (n->keys) {
                cfg_map_remove(n, i);
            } else {
                flash_cfg_free(n->items[i]);
                memmove(n->items + i, n->items + i + 1, (n->n - i - 1) * sizeof *n->items);
                n->n--;
            }
            continue;
        }
        cfg_resolve_ops(n->items[i]);
        i++;
    }
}

bool flash_cfg_resolve_path(const flash_cfg *node, const char *path, char *out, size_t size) {
    if (!path || !out || size == 0) return false;
    if (path[0] == '/') return (size_t)snprintf(out, size, "%s", path) < size;
    const bool from_file = node && node->file && node->line > 0 && strcmp(node->file, "--set") != 0;
    const char *slash = from_file ? strrchr(node->file, '/') : NULL;
    if (slash) {
        if ((size_t)snprintf(out, size, "%.*s/%s", (int)(slash - node->file), node->file, path) >= size) return false;
        struct stat sb;
        if (stat(out, &sb) == 0) return true;
    }
    return (size_t)snprintf(out, size, "%s", path) < size;
}
