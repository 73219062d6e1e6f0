/* Typed getters: a setting's text resolved as an integer, number, boolean,
 * string, choice or sequence, with a type mismatch reported at the value's
 * file:line:col. */
#include "runtime/config_internal.h"

#include <ctype.h>
#include <errno.h>
#include <float.h>
#include <limits.h>
#include <math.h>
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
    return FLASH_OK;
}

flash_status flash_cfg_int(const flash_cfg *map, const char *key, long def, long *out, flash_error *err) {
    *out = def; /* kept when the key is absent */
    const flash_cfg *v;
    flash_status st = lookup(map, key, &v, err);
    return st || !v ? st : scalar_long(v, out, err);
}

flash_status flash_cfg_double(const flash_cfg *map, const char *key, double def, double *out, flash_error *err) {
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
