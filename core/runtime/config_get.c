/* Typed getters: a setting's text resolved as an integer, number, boolean,
 * string, choice or sequence, with a type mismatch reported at the value's
 * file:line:col. */
#include "runtime/config_internal.h"

#include <ctype.h>
#include <errno.h>
#include <float.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- scalar resolution ------------------------------------------------- */

static flash_status need_scalar(const flash_cfg *n, const char *what, flash_error *err) {
    if (n->type != FLASH_CFG_SCALAR || n->quoted) return cfg_expected(n, what, err);
    return FLASH_OK;
}

static flash_status scalar_long(const flash_cfg *n, long *out, flash_error *err) {
    flash_status st = need_scalar(n, "an integer", err);
    if (st) return st;
    const char *s = n->scalar;
    const char *p = s + (*s == '+' || *s == '-');
    if (!isdigit((unsigned char)*p)) return cfg_expected(n, "an integer", err);
    for (const char *q = p; *q; q++)
        if (!isdigit((unsigned char)*q)) return cfg_expected(n, "an integer", err);
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
            return cfg_expected(n, "a number", err);
    }
    if (!digit) return cfg_expected(n, "a number", err);
    errno = 0;
    char *end;
    double v = strtod(s, &end);
    if (*end) return cfg_expected(n, "a number", err);
    if (errno == ERANGE && fabs(v) > 1.0) return flash_cfg_error(n, err, "number '%s' is out of range", s);
    *out = v;
    return FLASH_OK;
}

/* ---- recording reads (flash_cfg_record_begin) ---------------------------- */

typedef struct read_recorder {
    const flash_cfg *map;
    flash_cfg_read *reads;
    size_t max, n;
    char missing[96]; /* the last key of map looked up and not found */
} read_recorder;

static _Thread_local read_recorder *recorder;
static _Thread_local read_recorder recorder_state;

void flash_cfg_record_begin(const flash_cfg *map, flash_cfg_read *reads, size_t max) {
    recorder_state = (read_recorder){.map = map, .reads = reads, .max = max};
    recorder = map && reads ? &recorder_state : NULL;
}

size_t flash_cfg_record_end(void) {
    size_t n = recorder ? recorder->n : 0;
    recorder = NULL;
    return n;
}

void cfg_record_get(const flash_cfg *map, const char *key, bool found) {
    if (recorder && map == recorder->map && !found) snprintf(recorder->missing, sizeof recorder->missing, "%s", key);
}

/* Notes a getter's read of key on map: type and default (printf-style). */
static void note(const flash_cfg *map, const char *key, const char *type, const char *def_fmt, ...)
    FLASH_PRINTF(4, 5);
static void note(const flash_cfg *map, const char *key, const char *type, const char *def_fmt, ...) {
    read_recorder *r = recorder;
    if (!r || !key) return;
    char name[sizeof r->reads[0].key];
    int len;
    long child = -1; /* map as a key of the recorded map: its reads are "key.sub" */
    for (size_t i = 0; map && map != r->map && r->map->type == FLASH_CFG_MAP && i < r->map->n; i++)
        if (r->map->items[i] == map) child = (long)i;
    if (map == r->map)
        len = snprintf(name, sizeof name, "%s", key);
    else if (child >= 0)
        len = snprintf(name, sizeof name, "%.40s.%.40s", r->map->keys[child].name, key);
    else if (!map && r->missing[0])
        len = snprintf(name, sizeof name, "%.40s.%.40s", r->missing, key);
    else
        return;
    if (len < 0 || (size_t)len >= sizeof name) return; /* a key too long to show whole */
    for (size_t i = 0; i < r->n; i++)
        if (strcmp(r->reads[i].key, name) == 0) return;
    if (r->n == r->max) return;
    flash_cfg_read *out = &r->reads[r->n++];
    snprintf(out->key, sizeof out->key, "%s", name);
    snprintf(out->type, sizeof out->type, "%s", type);
    va_list ap;
    va_start(ap, def_fmt);
    vsnprintf(out->def, sizeof out->def, def_fmt, ap);
    va_end(ap);
}

/* ---- typed getters ------------------------------------------------------ */

/* Looks key up in map. *val is NULL when absent (use the default). */
static flash_status lookup(const flash_cfg *map, const char *key, const flash_cfg **val, flash_error *err) {
    *val = NULL;
    if (!map || map->type == FLASH_CFG_NULL) return FLASH_OK;
    if (map->type != FLASH_CFG_MAP) {
        char buf[96];
        return flash_cfg_error(map, err, "expected a map with key '%s', got %s", key,
                               cfg_describe(map, buf, sizeof buf));
    }
    *val = flash_cfg_get(map, key);
    /* a getter's own miss names no sub-map */
    if (recorder && map == recorder->map) recorder->missing[0] = '\0';
    return FLASH_OK;
}

flash_status flash_cfg_int(const flash_cfg *map, const char *key, long def, long *out, flash_error *err) {
    note(map, key, "int", "%ld", def);
    *out = def; /* kept when the key is absent */
    const flash_cfg *v;
    flash_status st = lookup(map, key, &v, err);
    return st || !v ? st : scalar_long(v, out, err);
}

flash_status flash_cfg_double(const flash_cfg *map, const char *key, double def, double *out, flash_error *err) {
    note(map, key, "number", "%g", def);
    *out = def; /* kept when the key is absent */
    const flash_cfg *v;
    flash_status st = lookup(map, key, &v, err);
    return st || !v ? st : scalar_double(v, out, err);
}

flash_status flash_cfg_float(const flash_cfg *map, const char *key, float def, float *out, flash_error *err) {
    double d;
    flash_status st = flash_cfg_double(map, key, def, &d, err);
    if (st) return st;
    if (fabs(d) > FLT_MAX) {
        const flash_cfg *v = flash_cfg_get(map, key);
        return flash_cfg_error(v, err, "number '%s' is out of range for a float", v->scalar);
    }
    *out = (float)d;
    return FLASH_OK;
}

flash_status flash_cfg_bool(const flash_cfg *map, const char *key, bool def, bool *out, flash_error *err) {
    static const char *const yes[] = {"true", "yes", "on", NULL}, *const no[] = {"false", "no", "off", NULL};
    note(map, key, "bool", "%s", def ? "true" : "false");
    *out = def; /* kept when the key is absent */
    const flash_cfg *v;
    flash_status st = lookup(map, key, &v, err);
    if (st || !v) return st;
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
    return cfg_expected(v, "a boolean (true/false)", err);
}

flash_status flash_cfg_str(const flash_cfg *map, const char *key, const char *def, const char **out,
                           flash_error *err) {
    note(map, key, "string", "%s", def ? def : "");
    *out = def; /* kept when the key is absent */
    const flash_cfg *v;
    flash_status st = lookup(map, key, &v, err);
    if (st || !v) return st;
    if (v->type != FLASH_CFG_SCALAR) return cfg_expected(v, "a string", err);
    *out = v->scalar;
    return FLASH_OK;
}

flash_status flash_cfg_enum(const flash_cfg *map, const char *key, const char *const *choices, int def, int *out,
                            flash_error *err) {
    if (recorder) {
        char type[160] = "one of:";
        size_t len = strlen(type);
        for (int i = 0; choices[i] && len < sizeof type; i++)
            len += (size_t)snprintf(type + len, sizeof type - len, "%s%s", i ? ", " : " ", choices[i]);
        note(map, key, type, "%s", def >= 0 && choices[0] ? choices[def] : "");
    }
    *out = def; /* kept when the key is absent */
    const flash_cfg *v;
    flash_status st = lookup(map, key, &v, err);
    if (st || !v) return st;
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
                               cfg_describe(v, buf, sizeof buf), guess);
    return flash_cfg_error(v, err, "expected one of %s, got %s", list, cfg_describe(v, buf, sizeof buf));
}

/* The sequence under key, or NULL when absent. */
static flash_status lookup_seq(const flash_cfg *map, const char *key, const char *what, const flash_cfg **seq,
                               flash_error *err) {
    flash_status st = lookup(map, key, seq, err);
    if (st || !*seq) return st;
    if ((*seq)->type != FLASH_CFG_SEQ) return cfg_expected(*seq, what, err);
    return FLASH_OK;
}

flash_status flash_cfg_doubles(const flash_cfg *map, const char *key, double *out, size_t max, size_t *n,
                               flash_error *err) {
    const flash_cfg *s;
    note(map, key, "list of numbers", "%s", "");
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
    note(map, key, "list of ints", "%s", "");
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
    note(map, key, "matrix (rows of numbers)", "%s", "");
    *rows = *cols = 0;
    const char *what = "a sequence of rows ([[1, 2], [3, 4]])";
    flash_status st = lookup_seq(map, key, what, &s, err);
    if (st || !s) return st;
    size_t c = 0;
    for (size_t r = 0; r < s->n; r++) {
        const flash_cfg *row = s->items[r];
        if (row->type != FLASH_CFG_SEQ) return cfg_expected(row, "a row (a sequence of numbers)", err);
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
