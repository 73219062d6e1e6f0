/* Configuration trees (see include/flash/config.h).
 *
 * The parser walks libyaml's event stream rather than its document API so
 * that every node keeps the exact start mark of its own event: the document
 * API would also lose the position of mapping keys, which is where an
 * unknown-key error has to point. Each map entry therefore stores the key's
 * line and column next to the value node.
 *
 * Scalars keep their text and whether they were quoted: a quoted "3" is the
 * string 3, not the integer, so number getters refuse it and the emitter
 * quotes it again. Plain empty, ~ and null become FLASH_CFG_NULL nodes.
 *
 * Composition happens once, at load time: `extends` bases are loaded
 * recursively (relative to the including file), merged in order, then the
 * child is merged on top; maps merge key by key, everything else replaces.
 * Key paths are recomputed after every structural change so that a node
 * moved from a base still names its path in the resolved tree.
 */
#include "flash/flash.h"

#include <yaml.h>

#include <ctype.h>
#include <errno.h>
#include <float.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Nesting deeper than this is refused: libyaml has no limit of its own and
 * the parser recurses once per level. */
#define CFG_MAX_DEPTH 256
/* Nodes per file, aliases expanded: bounds the memory a hostile file can
 * ask for. */
#define CFG_MAX_NODES 100000
/* Longest `extends` chain (cycles are caught separately, by name). */
#define CFG_MAX_EXTENDS 64

typedef struct cfg_key {
    char *name;
    int line, col; /* where the key itself is written (unknown-key errors point here) */
    bool merged;   /* copied in by a `<<` merge key: an explicit key may replace it */
} cfg_key;

struct flash_cfg {
    flash_cfg_type type;
    bool quoted;  /* scalar written quoted (or tagged !!str): always a string */
    char *scalar; /* FLASH_CFG_SCALAR only */
    char *file;
    int line, col; /* 1-based; 0 when the node has no position (--set, built in code) */
    char *path;    /* dotted key path from the root; "" for the root */
    size_t n, cap;
    flash_cfg **items; /* children of a seq or map */
    cfg_key *keys;     /* map only, parallel to items */
};

/* ---- small helpers --------------------------------------------------- */

static char *xstrdup(const char *s) {
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d) memcpy(d, s, n);
    return d;
}

static char *xstrndup(const char *s, size_t n) {
    char *d = malloc(n + 1);
    if (d) {
        memcpy(d, s, n);
        d[n] = '\0';
    }
    return d;
}

static char *xasprintf(const char *fmt, ...) FLASH_PRINTF(1, 2);
static char *xasprintf(const char *fmt, ...) {
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

static flash_status nomem(flash_error *err) {
    return flash_error_set(err, FLASH_ERR_NOMEM, "config: out of memory");
}

static flash_cfg *node_new(flash_cfg_type type, const char *file, int line, int col) {
    flash_cfg *n = calloc(1, sizeof *n);
    if (!n) return NULL;
    n->type = type;
    n->line = line;
    n->col = col;
    n->file = xstrdup(file ? file : "");
    n->path = xstrdup("");
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

static bool node_reserve(flash_cfg *n) {
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
static bool node_append(flash_cfg *n, const char *key, int kline, int kcol, flash_cfg *child) {
    if (!node_reserve(n)) return false;
    if (n->type == FLASH_CFG_MAP) {
        char *name = xstrdup(key);
        if (!name) return false;
        n->keys[n->n] = (cfg_key){name, kline, kcol, false};
    }
    n->items[n->n++] = child;
    return true;
}

static long map_index(const flash_cfg *map, const char *key) {
    if (!map || map->type != FLASH_CFG_MAP || !key) return -1;
    for (size_t i = 0; i < map->n; i++)
        if (strcmp(map->keys[i].name, key) == 0) return (long)i;
    return -1;
}

static void map_remove(flash_cfg *map, size_t i) {
    flash_cfg_free(map->items[i]);
    free(map->keys[i].name);
    memmove(map->items + i, map->items + i + 1, (map->n - i - 1) * sizeof *map->items);
    memmove(map->keys + i, map->keys + i + 1, (map->n - i - 1) * sizeof *map->keys);
    map->n--;
}

/* Recomputes key paths below n, whose own path becomes `path`. */
static bool relabel(flash_cfg *n, const char *path) {
    char *p = xstrdup(path);
    if (!p) return false;
    free(n->path);
    n->path = p;
    for (size_t i = 0; i < n->n; i++) {
        char *cp = n->type == FLASH_CFG_MAP
                       ? (path[0] ? xasprintf("%s.%s", path, n->keys[i].name) : xstrdup(n->keys[i].name))
                       : xasprintf("%s[%zu]", path, i);
        if (!cp) return false;
        bool ok = relabel(n->items[i], cp);
        free(cp);
        if (!ok) return false;
    }
    return true;
}

/* Sets the location of every node below n (values given with --set). */
static bool relocate(flash_cfg *n, const char *file, int line, int col) {
    char *f = xstrdup(file);
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

flash_cfg *flash_cfg_clone(const flash_cfg *s) {
    if (!s) return NULL;
    flash_cfg *n = node_new(s->type, s->file, s->line, s->col);
    if (!n) return NULL;
    n->quoted = s->quoted;
    free(n->path);
    n->path = xstrdup(s->path);
    if (!n->path) goto fail;
    if (s->scalar && !(n->scalar = xstrdup(s->scalar))) goto fail;
    for (size_t i = 0; i < s->n; i++) {
        flash_cfg *c = flash_cfg_clone(s->items[i]);
        if (!c) goto fail;
        if (!node_append(n, s->keys ? s->keys[i].name : NULL, s->keys ? s->keys[i].line : 0,
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
    return node_new(FLASH_CFG_MAP, name ? name : "", 0, 0);
}

/* ---- accessors --------------------------------------------------------- */

flash_cfg_type flash_cfg_kind(const flash_cfg *n) { return n ? n->type : FLASH_CFG_NULL; }

const flash_cfg *flash_cfg_get(const flash_cfg *map, const char *key) {
    long i = map_index(map, key);
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
static int split_segment(const char *seg, size_t len, size_t *name_len, size_t *idx, int max_idx) {
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
        int k = split_segment(s, len, &name_len, idx, 16);
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

static flash_status error_at(flash_error *err, flash_status st, const char *file, int line, int col,
                             const char *path, const char *fmt, ...) FLASH_PRINTF(7, 8);
static flash_status error_at(flash_error *err, flash_status st, const char *file, int line, int col,
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
static const char *describe(const flash_cfg *n, char *buf, size_t size) {
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

static flash_status expected(const flash_cfg *n, const char *what, flash_error *err) {
    char buf[96];
    return flash_cfg_error(n, err, "expected %s, got %s", what, describe(n, buf, sizeof buf));
}

/* ---- scalar resolution ------------------------------------------------- */

static bool is_null_text(const char *s) {
    return !*s || !strcmp(s, "~") || !strcmp(s, "null") || !strcmp(s, "Null") || !strcmp(s, "NULL");
}

/* Would this text, written plain, read as something other than a string
 * (null, bool, number) in YAML 1.1? Errs on the side of yes: quoting too
 * often is harmless, quoting too rarely changes the value's type. */
static bool looks_typed(const char *s) {
    static const char *const words[] = {"y", "yes", "n", "no", "true", "false", "on", "off", NULL};
    if (is_null_text(s)) return true;
    for (int i = 0; words[i]; i++)
        if (strcasecmp(s, words[i]) == 0) return true;
    const char *p = s;
    if (*p == '+' || *p == '-') p++;
    if (*p == '.') {
        const char *q = p + 1;
        if (!strcasecmp(q, "inf") || !strcasecmp(q, "nan")) return true;
    }
    if (!isdigit((unsigned char)*p) && !(*p == '.' && isdigit((unsigned char)p[1]))) return false;
    for (; *p; p++)
        if (!strchr("0123456789abcdefABCDEFxXoO_:.+-", *p)) return false;
    return true;
}

static flash_status need_scalar(const flash_cfg *n, const char *what, flash_error *err) {
    if (n->type != FLASH_CFG_SCALAR || n->quoted) return expected(n, what, err);
    return FLASH_OK;
}

static flash_status scalar_long(const flash_cfg *n, long *out, flash_error *err) {
    flash_status st = need_scalar(n, "an integer", err);
    if (st) return st;
    const char *s = n->scalar;
    const char *p = s + (*s == '+' || *s == '-');
    if (!isdigit((unsigned char)*p)) return expected(n, "an integer", err);
    for (const char *q = p; *q; q++)
        if (!isdigit((unsigned char)*q)) return expected(n, "an integer", err);
    errno = 0;
    char *end;
    long v = strtol(s, &end, 10);
    if (errno == ERANGE)
        return flash_cfg_error(n, err, "integer '%s' is out of range [%ld, %ld]", s, LONG_MIN, LONG_MAX);
    *out = v;
    return FLASH_OK;
}

static flash_status scalar_double(const flash_cfg *n, double *out, flash_error *err) {
    flash_status st = need_scalar(n, "a number", err);
    if (st) return st;
    const char *s = n->scalar;
    /* Plain decimal notation only: strtod would also take "inf", "nan" and
     * hex floats, none of which belongs in a config. */
    bool digit = false;
    for (const char *q = s; *q; q++) {
        if (isdigit((unsigned char)*q))
            digit = true;
        else if (!strchr("+-.eE", *q))
            return expected(n, "a number", err);
    }
    if (!digit) return expected(n, "a number", err);
    errno = 0;
    char *end;
    double v = strtod(s, &end);
    if (*end) return expected(n, "a number", err);
    if (errno == ERANGE && fabs(v) > 1.0) return flash_cfg_error(n, err, "number '%s' is out of range", s);
    *out = v;
    return FLASH_OK;
}

/* ---- typed getters ------------------------------------------------------ */

/* Looks key up in map. *val is NULL when absent (use the default). */
static flash_status lookup(const flash_cfg *map, const char *key, const flash_cfg **val, flash_error *err) {
    *val = NULL;
    if (!map || map->type == FLASH_CFG_NULL) return FLASH_OK;
    if (map->type != FLASH_CFG_MAP) {
        char buf[96];
        return flash_cfg_error(map, err, "expected a map with key '%s', got %s", key, describe(map, buf, sizeof buf));
    }
    *val = flash_cfg_get(map, key);
    return FLASH_OK;
}

flash_status flash_cfg_int(const flash_cfg *map, const char *key, long def, long *out, flash_error *err) {
    const flash_cfg *v;
    flash_status st = lookup(map, key, &v, err);
    if (st) return st;
    if (!v) {
        *out = def;
        return FLASH_OK;
    }
    return scalar_long(v, out, err);
}

flash_status flash_cfg_double(const flash_cfg *map, const char *key, double def, double *out, flash_error *err) {
    const flash_cfg *v;
    flash_status st = lookup(map, key, &v, err);
    if (st) return st;
    if (!v) {
        *out = def;
        return FLASH_OK;
    }
    return scalar_double(v, out, err);
}

flash_status flash_cfg_float(const flash_cfg *map, const char *key, float def, float *out, flash_error *err) {
    const flash_cfg *v;
    flash_status st = lookup(map, key, &v, err);
    if (st) return st;
    if (!v) {
        *out = def;
        return FLASH_OK;
    }
    double d;
    if ((st = scalar_double(v, &d, err))) return st;
    if (fabs(d) > FLT_MAX) return flash_cfg_error(v, err, "number '%s' is out of range for a float", v->scalar);
    *out = (float)d;
    return FLASH_OK;
}

flash_status flash_cfg_bool(const flash_cfg *map, const char *key, bool def, bool *out, flash_error *err) {
    static const char *const yes[] = {"true", "yes", "on", NULL}, *const no[] = {"false", "no", "off", NULL};
    const flash_cfg *v;
    flash_status st = lookup(map, key, &v, err);
    if (st) return st;
    if (!v) {
        *out = def;
        return FLASH_OK;
    }
    if ((st = need_scalar(v, "a boolean (true/false)", err))) return st;
    for (int i = 0; yes[i]; i++) {
        if (!strcasecmp(v->scalar, yes[i])) {
            *out = true;
            return FLASH_OK;
        }
        if (!strcasecmp(v->scalar, no[i])) {
            *out = false;
            return FLASH_OK;
        }
    }
    return expected(v, "a boolean (true/false)", err);
}

flash_status flash_cfg_str(const flash_cfg *map, const char *key, const char *def, const char **out,
                           flash_error *err) {
    const flash_cfg *v;
    flash_status st = lookup(map, key, &v, err);
    if (st) return st;
    if (!v) {
        *out = def;
        return FLASH_OK;
    }
    if (v->type != FLASH_CFG_SCALAR) return expected(v, "a string", err);
    *out = v->scalar;
    return FLASH_OK;
}

flash_status flash_cfg_enum(const flash_cfg *map, const char *key, const char *const *choices, int def, int *out,
                            flash_error *err) {
    const flash_cfg *v;
    flash_status st = lookup(map, key, &v, err);
    if (st) return st;
    if (!v) {
        *out = def;
        return FLASH_OK;
    }
    if (v->type == FLASH_CFG_SCALAR)
        for (int i = 0; choices[i]; i++)
            if (strcmp(v->scalar, choices[i]) == 0) {
                *out = i;
                return FLASH_OK;
            }
    char list[512] = "", buf[96];
    size_t len = 0;
    for (int i = 0; choices[i] && len < sizeof list; i++)
        len += (size_t)snprintf(list + len, sizeof list - len, "%s'%s'", i ? ", " : "", choices[i]);
    const char *guess = v->type == FLASH_CFG_SCALAR ? flash_did_you_mean(v->scalar, choices) : NULL;
    if (guess)
        return flash_cfg_error(v, err, "expected one of %s, got %s (did you mean '%s'?)", list,
                               describe(v, buf, sizeof buf), guess);
    return flash_cfg_error(v, err, "expected one of %s, got %s", list, describe(v, buf, sizeof buf));
}

/* The sequence under key, or NULL when absent. */
static flash_status lookup_seq(const flash_cfg *map, const char *key, const char *what, const flash_cfg **seq,
                               flash_error *err) {
    flash_status st = lookup(map, key, seq, err);
    if (st || !*seq) return st;
    if ((*seq)->type != FLASH_CFG_SEQ) return expected(*seq, what, err);
    return FLASH_OK;
}

flash_status flash_cfg_doubles(const flash_cfg *map, const char *key, double *out, size_t max, size_t *n,
                               flash_error *err) {
    const flash_cfg *s;
    *n = 0;
    flash_status st = lookup_seq(map, key, "a sequence of numbers", &s, err);
    if (st || !s) return st;
    if (s->n > max) return flash_cfg_error(s, err, "has %zu items, at most %zu allowed", s->n, max);
    for (size_t i = 0; i < s->n; i++)
        if ((st = scalar_double(s->items[i], &out[i], err))) return st;
    *n = s->n;
    return FLASH_OK;
}

flash_status flash_cfg_ints(const flash_cfg *map, const char *key, long *out, size_t max, size_t *n,
                            flash_error *err) {
    const flash_cfg *s;
    *n = 0;
    flash_status st = lookup_seq(map, key, "a sequence of integers", &s, err);
    if (st || !s) return st;
    if (s->n > max) return flash_cfg_error(s, err, "has %zu items, at most %zu allowed", s->n, max);
    for (size_t i = 0; i < s->n; i++)
        if ((st = scalar_long(s->items[i], &out[i], err))) return st;
    *n = s->n;
    return FLASH_OK;
}

flash_status flash_cfg_matrix(const flash_cfg *map, const char *key, double *out, size_t max, size_t *rows,
                              size_t *cols, flash_error *err) {
    const flash_cfg *s;
    *rows = *cols = 0;
    const char *what = "a sequence of rows ([[1, 2], [3, 4]])";
    flash_status st = lookup_seq(map, key, what, &s, err);
    if (st || !s) return st;
    size_t c = 0;
    for (size_t r = 0; r < s->n; r++) {
        const flash_cfg *row = s->items[r];
        if (row->type != FLASH_CFG_SEQ) return expected(row, "a row (a sequence of numbers)", err);
        if (r == 0) c = row->n;
        if (row->n != c) return flash_cfg_error(row, err, "row has %zu items, row 0 has %zu", row->n, c);
        if (r * c + c > max)
            return flash_cfg_error(s, err, "has more than %zu numbers (%zu rows of %zu)", max, s->n, c);
        for (size_t j = 0; j < c; j++)
            if ((st = scalar_double(row->items[j], &out[r * c + j], err))) return st;
    }
    *rows = s->n;
    *cols = c;
    return FLASH_OK;
}

/* ---- unknown keys -------------------------------------------------------- */

static size_t levenshtein(const char *a, const char *b) {
    size_t la = strlen(a), lb = strlen(b);
    size_t row[257];
    if (la > 256 || lb > 256) return SIZE_MAX;
    for (size_t j = 0; j <= lb; j++) row[j] = j;
    for (size_t i = 1; i <= la; i++) {
        size_t diag = row[0];
        row[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t up = row[j];
            size_t best = diag + (a[i - 1] != b[j - 1]);
            if (up + 1 < best) best = up + 1;
            if (row[j - 1] + 1 < best) best = row[j - 1] + 1;
            row[j] = best;
            diag = up;
        }
    }
    return row[lb];
}

const char *flash_did_you_mean(const char *word, const char *const *candidates) {
    if (!word || !candidates) return NULL;
    size_t limit = strlen(word) / 3;
    if (limit < 2) limit = 2;
    const char *best = NULL;
    size_t best_d = SIZE_MAX;
    for (size_t i = 0; candidates[i]; i++) {
        size_t d = levenshtein(word, candidates[i]);
        if (d <= limit && d < best_d) {
            best = candidates[i];
            best_d = d;
        }
    }
    return best;
}

static bool is_allowed(const char *key, const char *const *allowed) {
    if (!strcmp(key, "plugin")) return true;
    for (size_t i = 0; allowed && allowed[i]; i++)
        if (!strcmp(key, allowed[i])) return true;
    return false;
}

flash_status flash_cfg_check_keys(const flash_cfg *map, const char *what, const char *const *allowed,
                                  flash_error *err) {
    if (!map || map->type == FLASH_CFG_NULL) return FLASH_OK;
    if (map->type != FLASH_CFG_MAP) return expected(map, "a map", err);
    for (size_t i = 0; i < map->n; i++) {
        const char *key = map->keys[i].name;
        if (is_allowed(key, allowed)) continue;
        const cfg_key *k = &map->keys[i];
        const char *path = map->items[i]->path;
        const char *guess = flash_did_you_mean(key, allowed);
        if (guess)
            return error_at(err, FLASH_ERR_CONFIG, map->items[i]->file, k->line, k->col, path,
                            "%s has no key '%s' (did you mean '%s'?)", what, key, guess);
        char list[512] = "";
        size_t len = 0;
        for (size_t j = 0; allowed && allowed[j] && len < sizeof list; j++)
            len += (size_t)snprintf(list + len, sizeof list - len, "%s%s", j ? ", " : "", allowed[j]);
        return error_at(err, FLASH_ERR_CONFIG, map->items[i]->file, k->line, k->col, path,
                        "%s has no key '%s' (known keys: %s)", what, key, len ? list : "none besides plugin");
    }
    return FLASH_OK;
}

/* ---- parsing ------------------------------------------------------------- */

typedef struct anchor {
    char *name;
    flash_cfg *node; /* borrowed: lives in the tree being built */
} anchor;

typedef struct parse_ctx {
    yaml_parser_t parser;
    const char *text; /* the input, to place reader errors */
    size_t len;
    size_t nodes;     /* created so far, aliases expanded */
    const char *file;
    flash_error *err;
    anchor *anchors;
    size_t n_anchors, cap_anchors;
    /* Values of `<<` keys, copied into their maps but kept until the end:
     * anchors defined inside them may still be referenced. */
    flash_cfg **spent;
    size_t n_spent, cap_spent;
} parse_ctx;

static flash_status syntax_error(parse_ctx *c) {
    yaml_parser_t *p = &c->parser;
    const char *problem = p->problem ? p->problem : "malformed YAML";
    if (p->error == YAML_MEMORY_ERROR) return nomem(c->err);
    if (p->error == YAML_READER_ERROR) {
        /* libyaml gives only a byte offset here: count lines and UTF-8
         * lead bytes up to it. */
        int line = 1, col = 1;
        for (size_t i = 0; i < p->problem_offset && i < c->len; i++) {
            unsigned char ch = (unsigned char)c->text[i];
            if (ch == '\n') {
                line++;
                col = 1;
            } else if ((ch & 0xC0) != 0x80) {
                col++;
            }
        }
        return flash_error_set(c->err, FLASH_ERR_CONFIG, "%s:%d:%d: %s", c->file, line, col, problem);
    }
    int line = (int)p->problem_mark.line + 1, col = (int)p->problem_mark.column + 1;
    if (p->context)
        return flash_error_set(c->err, FLASH_ERR_CONFIG, "%s:%d:%d: %s (%s at line %d, column %d)", c->file, line,
                               col, problem, p->context, (int)p->context_mark.line + 1,
                               (int)p->context_mark.column + 1);
    return flash_error_set(c->err, FLASH_ERR_CONFIG, "%s:%d:%d: %s", c->file, line, col, problem);
}

static flash_status next_event(parse_ctx *c, yaml_event_t *ev) {
    if (!yaml_parser_parse(&c->parser, ev)) return syntax_error(c);
    return FLASH_OK;
}

static flash_status add_anchor(parse_ctx *c, const yaml_char_t *name, flash_cfg *node) {
    if (!name) return FLASH_OK;
    if (c->n_anchors == c->cap_anchors) {
        size_t cap = c->cap_anchors ? 2 * c->cap_anchors : 8;
        anchor *a = realloc(c->anchors, cap * sizeof *a);
        if (!a) return nomem(c->err);
        c->anchors = a;
        c->cap_anchors = cap;
    }
    char *s = xstrdup((const char *)name);
    if (!s) return nomem(c->err);
    c->anchors[c->n_anchors++] = (anchor){s, node};
    return FLASH_OK;
}

static flash_status parse_node(parse_ctx *c, yaml_event_t *ev, int depth, const char *path, flash_cfg **out);

static size_t node_count(const flash_cfg *n) {
    size_t k = 1;
    for (size_t i = 0; i < n->n; i++) k += node_count(n->items[i]);
    return k;
}

static const char *describe(const flash_cfg *n, char *buf, size_t size);

/* YAML's merge key: `<<: *defaults` (or a list of them) copies in the keys
 * of those maps that n does not have yet; later explicit keys override
 * them. Sweeps and ablations use it to share blocks within one file. */
static flash_status merge_key(parse_ctx *c, flash_cfg *n, int kline, int kcol, int depth) {
    yaml_event_t ev;
    flash_cfg *val = NULL;
    flash_status st = next_event(c, &ev);
    if (st) return st;
    st = parse_node(c, &ev, depth + 1, n->path, &val);
    yaml_event_delete(&ev);
    if (st) return st;
    size_t n_src = val->type == FLASH_CFG_SEQ ? val->n : 1;
    for (size_t s = 0; s < n_src && !st; s++) {
        const flash_cfg *src = val->type == FLASH_CFG_SEQ ? val->items[s] : val;
        if (src->type != FLASH_CFG_MAP) {
            char buf[96];
            st = error_at(c->err, FLASH_ERR_CONFIG, c->file, kline, kcol, n->path,
                          "'<<' merges maps (<<: *name or <<: [*a, *b]), got %s", describe(src, buf, sizeof buf));
            break;
        }
        for (size_t i = 0; i < src->n && !st; i++) {
            if (map_index(n, src->keys[i].name) >= 0) continue; /* earlier keys win */
            c->nodes += node_count(src->items[i]);
            if (c->nodes > CFG_MAX_NODES) {
                st = error_at(c->err, FLASH_ERR_CONFIG, c->file, kline, kcol, n->path,
                              "more than %d nodes once aliases are expanded", CFG_MAX_NODES);
                break;
            }
            flash_cfg *copy = flash_cfg_clone(src->items[i]);
            char *path = n->path[0] ? xasprintf("%s.%s", n->path, src->keys[i].name) : xstrdup(src->keys[i].name);
            if (!copy || !path || !relabel(copy, path) ||
                !node_append(n, src->keys[i].name, src->keys[i].line, src->keys[i].col, copy)) {
                flash_cfg_free(copy);
                st = nomem(c->err);
            } else {
                n->keys[n->n - 1].merged = true;
            }
            free(path);
        }
    }
    if (c->n_spent == c->cap_spent) {
        size_t cap = c->cap_spent ? 2 * c->cap_spent : 4;
        flash_cfg **sp = realloc(c->spent, cap * sizeof *sp);
        if (!sp) {
            flash_cfg_free(val);
            return nomem(c->err);
        }
        c->spent = sp;
        c->cap_spent = cap;
    }
    c->spent[c->n_spent++] = val;
    return st;
}

/* Consumes events up to the end of the collection opened by `start`. */
static flash_status parse_collection(parse_ctx *c, flash_cfg *n, yaml_event_type_t end, int depth) {
    for (;;) {
        yaml_event_t ev;
        flash_status st = next_event(c, &ev);
        if (st) return st;
        if (ev.type == end) {
            yaml_event_delete(&ev);
            return FLASH_OK;
        }
        if (n->type == FLASH_CFG_SEQ) {
            flash_cfg *item = NULL;
            char *ipath = xasprintf("%s[%zu]", n->path, n->n);
            st = ipath ? parse_node(c, &ev, depth + 1, ipath, &item) : nomem(c->err);
            free(ipath);
            yaml_event_delete(&ev);
            if (st) return st;
            if (!node_append(n, NULL, 0, 0, item)) {
                flash_cfg_free(item);
                return nomem(c->err);
            }
            continue;
        }
        /* A map: key event, then the value. */
        int kline = (int)ev.start_mark.line + 1, kcol = (int)ev.start_mark.column + 1;
        if (ev.type != YAML_SCALAR_EVENT) {
            yaml_event_delete(&ev);
            return error_at(c->err, FLASH_ERR_CONFIG, c->file, kline, kcol, n->path,
                            "map keys must be plain strings, not %s",
                            ev.type == YAML_ALIAS_EVENT ? "aliases" : "maps or sequences");
        }
        char *key = xstrndup((const char *)ev.data.scalar.value, ev.data.scalar.length);
        bool merge = ev.data.scalar.style == YAML_PLAIN_SCALAR_STYLE && !strcmp(key ? key : "", "<<");
        yaml_event_delete(&ev);
        if (!key) return nomem(c->err);
        if (merge) {
            free(key);
            if ((st = merge_key(c, n, kline, kcol, depth))) return st;
            continue;
        }
        long dup = map_index(n, key);
        char *path = n->path[0] ? xasprintf("%s.%s", n->path, key) : xstrdup(key);
        if (!path) {
            free(key);
            return nomem(c->err);
        }
        if (dup >= 0 && n->keys[dup].merged) {
            /* An explicit key overrides one brought in by `<<`. */
            flash_cfg *val = NULL;
            if (!(st = next_event(c, &ev))) {
                st = parse_node(c, &ev, depth + 1, path, &val);
                yaml_event_delete(&ev);
            }
            free(key);
            free(path);
            if (st) return st;
            flash_cfg_free(n->items[dup]);
            n->items[dup] = val;
            n->keys[dup].line = kline;
            n->keys[dup].col = kcol;
            n->keys[dup].merged = false;
            continue;
        }
        if (dup >= 0) {
            st = error_at(c->err, FLASH_ERR_CONFIG, c->file, kline, kcol, path,
                          "duplicate key '%s' (first defined at line %d, column %d)", key, n->keys[dup].line,
                          n->keys[dup].col);
            free(key);
            free(path);
            return st;
        }
        flash_cfg *val = NULL;
        if (!(st = next_event(c, &ev))) {
            st = parse_node(c, &ev, depth + 1, path, &val);
            yaml_event_delete(&ev);
        }
        if (!st && !node_append(n, key, kline, kcol, val)) st = nomem(c->err);
        if (st) flash_cfg_free(val);
        free(key);
        free(path);
        if (st) return st;
    }
}

/* Builds the node that starts with event ev; path is its key path (known
 * before its children are parsed, so errors inside it can name it). */
static flash_status parse_node(parse_ctx *c, yaml_event_t *ev, int depth, const char *path, flash_cfg **out) {
    *out = NULL;
    int line = (int)ev->start_mark.line + 1, col = (int)ev->start_mark.column + 1;
    if (depth > CFG_MAX_DEPTH)
        return error_at(c->err, FLASH_ERR_CONFIG, c->file, line, col, path, "nesting deeper than %d levels",
                        CFG_MAX_DEPTH);
    flash_cfg *n = NULL;
    const yaml_char_t *anchor_name = NULL;
    flash_status st = FLASH_OK;
    if (++c->nodes > CFG_MAX_NODES)
        return error_at(c->err, FLASH_ERR_CONFIG, c->file, line, col, path, "more than %d nodes", CFG_MAX_NODES);
    switch (ev->type) {
    case YAML_ALIAS_EVENT: {
        const char *name = (const char *)ev->data.alias.anchor;
        for (size_t i = c->n_anchors; i-- > 0;)
            if (!strcmp(c->anchors[i].name, name)) {
                /* Aliases of aliases grow exponentially ("billion laughs"):
                 * count the copy before making it. */
                c->nodes += node_count(c->anchors[i].node);
                if (c->nodes > CFG_MAX_NODES)
                    return error_at(c->err, FLASH_ERR_CONFIG, c->file, line, col, path,
                                    "more than %d nodes once aliases are expanded", CFG_MAX_NODES);
                if (!(n = flash_cfg_clone(c->anchors[i].node))) return nomem(c->err);
                if (!relabel(n, path)) {
                    flash_cfg_free(n);
                    return nomem(c->err);
                }
                *out = n;
                return FLASH_OK;
            }
        return error_at(c->err, FLASH_ERR_CONFIG, c->file, line, col, path, "unknown alias '*%s'", name);
    }
    case YAML_SCALAR_EVENT: {
        const char *text = (const char *)ev->data.scalar.value;
        const char *tag = (const char *)ev->data.scalar.tag;
        bool plain = ev->data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
        bool str_tag = tag && (!strcmp(tag, YAML_STR_TAG) || !strcmp(tag, "!"));
        if (plain && !str_tag && is_null_text(text)) {
            n = node_new(FLASH_CFG_NULL, c->file, line, col);
        } else {
            n = node_new(FLASH_CFG_SCALAR, c->file, line, col);
            if (n) {
                n->quoted = !plain || str_tag;
                if (!(n->scalar = xstrndup(text, ev->data.scalar.length))) {
                    flash_cfg_free(n);
                    n = NULL;
                }
            }
        }
        if (!n || !relabel(n, path)) {
            flash_cfg_free(n);
            return nomem(c->err);
        }
        anchor_name = ev->data.scalar.anchor;
        break;
    }
    case YAML_SEQUENCE_START_EVENT:
    case YAML_MAPPING_START_EVENT: {
        bool seq = ev->type == YAML_SEQUENCE_START_EVENT;
        if (!(n = node_new(seq ? FLASH_CFG_SEQ : FLASH_CFG_MAP, c->file, line, col))) return nomem(c->err);
        if (!relabel(n, path)) {
            flash_cfg_free(n);
            return nomem(c->err);
        }
        anchor_name = seq ? ev->data.sequence_start.anchor : ev->data.mapping_start.anchor;
        st = parse_collection(c, n, seq ? YAML_SEQUENCE_END_EVENT : YAML_MAPPING_END_EVENT, depth);
        break;
    }
    default:
        return error_at(c->err, FLASH_ERR_CONFIG, c->file, line, col, path, "unexpected YAML event %d", ev->type);
    }
    /* Anchors are registered once the node is complete, so a node cannot
     * alias itself (which would need a graph, not a tree). */
    if (!st) st = add_anchor(c, anchor_name, n);
    if (st) {
        flash_cfg_free(n);
        return st;
    }
    *out = n;
    return FLASH_OK;
}

/* Parses one YAML document. An empty document gives a NULL node. */
static flash_status parse_stream(parse_ctx *c, flash_cfg **out) {
    *out = NULL;
    flash_cfg *root = NULL;
    yaml_event_t ev;
    flash_status st;
    bool seen_doc = false;
    for (;;) {
        if ((st = next_event(c, &ev))) goto fail;
        yaml_event_type_t t = ev.type;
        int line = (int)ev.start_mark.line + 1, col = (int)ev.start_mark.column + 1;
        if (t == YAML_STREAM_END_EVENT) {
            yaml_event_delete(&ev);
            break;
        }
        if (t == YAML_DOCUMENT_START_EVENT) {
            yaml_event_delete(&ev);
            if (seen_doc) {
                st = error_at(c->err, FLASH_ERR_CONFIG, c->file, line, col, NULL,
                              "a config file holds one YAML document, found a second one");
                goto fail;
            }
            seen_doc = true;
            continue;
        }
        if (t == YAML_DOCUMENT_END_EVENT || t == YAML_STREAM_START_EVENT) {
            yaml_event_delete(&ev);
            continue;
        }
        st = parse_node(c, &ev, 0, "", &root);
        yaml_event_delete(&ev);
        if (st) goto fail;
    }
    if (!root && !(root = node_new(FLASH_CFG_NULL, c->file, 1, 1))) {
        st = nomem(c->err);
        goto fail;
    }
    *out = root;
    return FLASH_OK;
fail:
    flash_cfg_free(root);
    return st;
}

static void ctx_free(parse_ctx *c) {
    for (size_t i = 0; i < c->n_anchors; i++) free(c->anchors[i].name);
    free(c->anchors);
    for (size_t i = 0; i < c->n_spent; i++) flash_cfg_free(c->spent[i]);
    free(c->spent);
    yaml_parser_delete(&c->parser);
}

static flash_status parse_text(const char *text, size_t len, const char *name, flash_cfg **out, flash_error *err) {
    parse_ctx c = {.file = name, .err = err, .text = text, .len = len};
    if (!yaml_parser_initialize(&c.parser)) return nomem(err);
    yaml_parser_set_input_string(&c.parser, (const unsigned char *)text, len);
    flash_status st = parse_stream(&c, out);
    ctx_free(&c);
    return st;
}

/* ---- merging and extends ----------------------------------------------- */

/* Overlays src onto dst (both maps), consuming src: maps merge key by key,
 * anything else in src replaces what dst has. */
static bool merge_into(flash_cfg *dst, flash_cfg *src) {
    while (src->n > 0) {
        flash_cfg *sv = src->items[0];
        cfg_key sk = src->keys[0];
        long i = map_index(dst, sk.name);
        if (i >= 0 && dst->items[i]->type == FLASH_CFG_MAP && sv->type == FLASH_CFG_MAP) {
            if (!merge_into(dst->items[i], sv)) return false;
            dst->keys[i].line = sk.line;
            dst->keys[i].col = sk.col;
            /* The map now mixes nodes from two files; the child's own
             * position is the better place to point at. */
            char *f = xstrdup(sv->file);
            if (!f) return false;
            free(dst->items[i]->file);
            dst->items[i]->file = f;
            dst->items[i]->line = sv->line;
            dst->items[i]->col = sv->col;
            map_remove(src, 0);
            continue;
        }
        if (i >= 0) {
            flash_cfg_free(dst->items[i]);
            dst->items[i] = sv;
            free(dst->keys[i].name);
            dst->keys[i] = sk;
        } else {
            if (!node_reserve(dst)) return false;
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
    if (name[0] == '/' || !including) return xstrdup(name);
    const char *slash = strrchr(including, '/');
    if (!slash) return xstrdup(name);
    return xasprintf("%.*s/%s", (int)(slash - including), including, name);
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
    long ei = map_index(root, "extends");
    if (ei < 0) return FLASH_OK;
    flash_cfg *ext = root->items[ei];
    size_t n_bases = ext->type == FLASH_CFG_SEQ ? ext->n : 1;
    if (ext->type == FLASH_CFG_SEQ) {
        for (size_t i = 0; i < ext->n; i++)
            if (ext->items[i]->type != FLASH_CFG_SCALAR) return expected(ext->items[i], "a file name", err);
    } else if (ext->type != FLASH_CFG_SCALAR) {
        return expected(ext, "a file name or a list of file names", err);
    }
    flash_cfg *merged = NULL;
    flash_status st = FLASH_OK;
    for (size_t b = 0; b < n_bases && !st; b++) {
        const flash_cfg *item = ext->type == FLASH_CFG_SEQ ? ext->items[b] : ext;
        char *bpath = resolve_relative(file, item->scalar);
        if (!bpath) {
            st = nomem(err);
            break;
        }
        char *canon = realpath(bpath, NULL);
        if (!canon) {
            int e = errno;
            if (e == ENOMEM)
                st = nomem(err);
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
            if (!ok) st = nomem(err);
        }
    }
    if (st) {
        flash_cfg_free(merged);
        return st;
    }
    map_remove(root, (size_t)ei);
    if (!merged) return FLASH_OK;
    /* The resolved root is the child's: its location and its keys win. */
    if (!merge_into(merged, root)) {
        flash_cfg_free(merged);
        return nomem(err);
    }
    char *f = xstrdup(root->file);
    if (!f) {
        flash_cfg_free(merged);
        return nomem(err);
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
                               describe(root, buf, sizeof buf));
    }
    flash_status st = apply_extends(rootp, file, stack, err);
    if (st) return st;
    if (!relabel(*rootp, "")) return nomem(err);
    return FLASH_OK;
}

static flash_status load_file(const char *path, load_stack *stack, flash_cfg **out, flash_error *err) {
    *out = NULL;
    char *text;
    size_t len;
    flash_status st = flash_read_file(path, &text, &len, err);
    /* A config that cannot be read is a bad configuration (exit code 2),
     * not a runtime failure. */
    if (st == FLASH_ERR_IO) {
        st = FLASH_ERR_CONFIG;
        if (err) err->status = st;
    }
    if (st) return st;
    flash_cfg *root;
    st = parse_text(text, len, path, &root, err);
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
    flash_status st = parse_text(text, strlen(text), name, &r, err);
    if (st) return st;
    load_stack stack = {.n = 0};
    if ((st = finish_root(&r, NULL, &stack, err))) {
        flash_cfg_free(r);
        return st;
    }
    *root = r;
    return FLASH_OK;
}

/* ---- --set and builders ---------------------------------------------- */

#define SET_FILE "--set"

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
        int k = split_segment(s, len, &name_len, idx, 16);
        if (k < 0 || name_len == 0)
            return flash_error_set(err, FLASH_ERR_USAGE, "--set %s: malformed key path (expected a.b.c or a.b[2].c)",
                                   keypath);
        char *name = xstrndup(s, name_len);
        if (!name) return nomem(err);
        bool last = !dot && k == 0;
        if (n->type == FLASH_CFG_NULL) n->type = FLASH_CFG_MAP; /* `key:` left empty becomes a map */
        if (n->type != FLASH_CFG_MAP) {
            char buf[96];
            free(name);
            return flash_cfg_error(n, err, "--set %s needs a map here, got %s", keypath,
                                   describe(n, buf, sizeof buf));
        }
        if (last) {
            *parent = n;
            *key = name;
            return FLASH_OK;
        }
        long i = map_index(n, name);
        if (i < 0) {
            if (k > 0) {
                flash_status st = error_at(err, FLASH_ERR_CONFIG, SET_FILE, 0, 0, keypath,
                                           "no sequence '%s' to index", name);
                free(name);
                return st;
            }
            flash_cfg *m = node_new(FLASH_CFG_MAP, SET_FILE, 0, 0);
            if (!m || !node_append(n, name, 0, 0, m)) {
                flash_cfg_free(m);
                free(name);
                return nomem(err);
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
                                           describe(*cur, buf, sizeof buf));
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

flash_status flash_cfg_set(flash_cfg *root, const char *assignment, flash_error *err) {
    if (!assignment) return flash_error_set(err, FLASH_ERR_USAGE, "--set: no assignment given");
    const char *eq = strchr(assignment, '=');
    if (!eq || eq == assignment)
        return flash_error_set(err, FLASH_ERR_USAGE, "--set '%s': expected KEY=VALUE (e.g. sampler.steps=3)",
                               assignment);
    if (!root || root->type != FLASH_CFG_MAP)
        return flash_error_set(err, FLASH_ERR_USAGE, "--set %s: the config is not a map", assignment);
    char *keypath = xstrndup(assignment, (size_t)(eq - assignment));
    if (!keypath) return nomem(err);
    const char *value = eq + 1;

    flash_cfg *val = NULL;
    flash_error perr = {0};
    flash_status st = parse_text(value, strlen(value), SET_FILE, &val, &perr);
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
    if (!relocate(val, SET_FILE, 0, 0)) {
        st = nomem(err);
        goto done;
    }
    flash_cfg **slot, *parent;
    char *key;
    if ((st = set_walk(root, keypath, &slot, &parent, &key, err))) goto done;
    if (slot) {
        flash_cfg_free(*slot);
        *slot = val;
    } else {
        long i = map_index(parent, key);
        if (i >= 0) {
            flash_cfg_free(parent->items[i]);
            parent->items[i] = val;
            parent->keys[i].line = parent->keys[i].col = 0;
        } else if (!node_append(parent, key, 0, 0, val)) {
            free(key);
            st = nomem(err);
            goto done;
        }
        free(key);
    }
    val = NULL;
    if (!relabel(root, "")) st = nomem(err);
done:
    flash_cfg_free(val);
    free(keypath);
    return st;
}

flash_status flash_cfg_put(flash_cfg *map, const char *key, const char *scalar, flash_error *err) {
    if (!key) return flash_error_set(err, FLASH_ERR_USAGE, "flash_cfg_put: no key");
    if (!map || map->type != FLASH_CFG_MAP)
        return flash_error_set(err, FLASH_ERR_USAGE, "flash_cfg_put: '%s' needs a map", key ? key : "(null)");
    flash_cfg *v = node_new(FLASH_CFG_SCALAR, map->file, map->line, map->col);
    if (!v || !(v->scalar = xstrdup(scalar ? scalar : ""))) {
        flash_cfg_free(v);
        return nomem(err);
    }
    char *path = map->path[0] ? xasprintf("%s.%s", map->path, key) : xstrdup(key);
    if (!path || !relabel(v, path)) {
        free(path);
        flash_cfg_free(v);
        return nomem(err);
    }
    free(path);
    long i = map_index(map, key);
    if (i >= 0) {
        flash_cfg_free(map->items[i]);
        map->items[i] = v;
    } else if (!node_append(map, key, map->line, map->col, v)) {
        flash_cfg_free(v);
        return nomem(err);
    }
    return FLASH_OK;
}

/* ---- emitting ------------------------------------------------------------ */

typedef struct outbuf {
    char *data;
    size_t len, cap;
    bool failed;
} outbuf;

static int out_write(void *data, unsigned char *buffer, size_t size) {
    outbuf *o = data;
    if (o->len + size + 1 > o->cap) {
        size_t cap = o->cap ? o->cap : 256;
        while (cap < o->len + size + 1) cap *= 2;
        char *d = realloc(o->data, cap);
        if (!d) {
            o->failed = true;
            return 0;
        }
        o->data = d;
        o->cap = cap;
    }
    memcpy(o->data + o->len, buffer, size);
    o->len += size;
    o->data[o->len] = '\0';
    return 1;
}

static bool emit_scalar(yaml_emitter_t *e, const char *text, yaml_scalar_style_t style) {
    yaml_event_t ev;
    if (!yaml_scalar_event_initialize(&ev, NULL, NULL, (yaml_char_t *)text, (int)strlen(text), 1, 1, style))
        return false;
    return yaml_emitter_emit(e, &ev);
}

/* A string that would read back as a number, bool or null keeps its
 * quotes (keys too, for other YAML readers' sake); multi-line text is
 * double-quoted with \n escapes rather than folded; everything else is
 * left to the emitter, which quotes only what plain style cannot hold. */
static yaml_scalar_style_t scalar_style(const char *text, bool quoted) {
    if ((quoted && looks_typed(text)) || strchr(text, '\n')) return YAML_DOUBLE_QUOTED_SCALAR_STYLE;
    return YAML_ANY_SCALAR_STYLE;
}

static bool emit_node(yaml_emitter_t *e, const flash_cfg *n) {
    yaml_event_t ev;
    switch (n->type) {
    case FLASH_CFG_NULL: return emit_scalar(e, "null", YAML_PLAIN_SCALAR_STYLE);
    case FLASH_CFG_SCALAR: return emit_scalar(e, n->scalar, scalar_style(n->scalar, n->quoted));
    case FLASH_CFG_SEQ: {
        /* Lists of plain values (timesteps, channel multipliers, matrix
         * rows) read best on one line; anything holding a map or a list
         * stays in block style. */
        bool flat = n->n > 0;
        for (size_t i = 0; i < n->n && flat; i++)
            flat = n->items[i]->type == FLASH_CFG_NULL ||
                   (n->items[i]->type == FLASH_CFG_SCALAR && !strchr(n->items[i]->scalar, '\n'));
        if (!yaml_sequence_start_event_initialize(&ev, NULL, NULL, 1,
                                                  flat ? YAML_FLOW_SEQUENCE_STYLE : YAML_BLOCK_SEQUENCE_STYLE) ||
            !yaml_emitter_emit(e, &ev))
            return false;
        for (size_t i = 0; i < n->n; i++)
            if (!emit_node(e, n->items[i])) return false;
        return yaml_sequence_end_event_initialize(&ev) && yaml_emitter_emit(e, &ev);
    }
    case FLASH_CFG_MAP:
        if (!yaml_mapping_start_event_initialize(&ev, NULL, NULL, 1, YAML_BLOCK_MAPPING_STYLE) ||
            !yaml_emitter_emit(e, &ev))
            return false;
        for (size_t i = 0; i < n->n; i++)
            /* A key named "<<" written plain would read back as a merge key. */
            if (!emit_scalar(e, n->keys[i].name,
                             strcmp(n->keys[i].name, "<<") ? scalar_style(n->keys[i].name, true)
                                                           : YAML_DOUBLE_QUOTED_SCALAR_STYLE) ||
                !emit_node(e, n->items[i]))
                return false;
        return yaml_mapping_end_event_initialize(&ev) && yaml_emitter_emit(e, &ev);
    }
    return false;
}

char *flash_cfg_to_yaml(const flash_cfg *n) {
    if (!n) return NULL;
    yaml_emitter_t e;
    outbuf o = {0};
    if (!yaml_emitter_initialize(&e)) return NULL;
    yaml_emitter_set_output(&e, out_write, &o);
    yaml_emitter_set_unicode(&e, 1);
    yaml_emitter_set_width(&e, -1);
    yaml_emitter_set_indent(&e, 2);
    yaml_event_t ev;
    bool ok = yaml_stream_start_event_initialize(&ev, YAML_UTF8_ENCODING) && yaml_emitter_emit(&e, &ev) &&
              yaml_document_start_event_initialize(&ev, NULL, NULL, NULL, 1) && yaml_emitter_emit(&e, &ev) &&
              emit_node(&e, n) && yaml_document_end_event_initialize(&ev, 1) && yaml_emitter_emit(&e, &ev) &&
              yaml_stream_end_event_initialize(&ev) && yaml_emitter_emit(&e, &ev) && yaml_emitter_flush(&e);
    yaml_emitter_delete(&e);
    if (!ok || o.failed) {
        free(o.data);
        return NULL;
    }
    return o.data;
}

flash_status flash_cfg_write(const flash_cfg *n, const char *path, flash_error *err) {
    char *text = flash_cfg_to_yaml(n);
    if (!text)
        return flash_error_set(err, n ? FLASH_ERR_RUNTIME : FLASH_ERR_USAGE,
                               "%s: cannot serialise the config (out of memory, or text that is not UTF-8)", path);
    flash_status st = flash_write_file_atomic(path, text, strlen(text), err);
    free(text);
    return st;
}
