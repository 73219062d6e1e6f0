/* The shift map gamma of the shifted reconstruction loss (Imagine Flash
 * section 4.2): the timestep t_phi = gamma(t) to which the student's x0-hat
 * is re-noised before the teacher denoises it. Rows [above, value]: t >
 * above maps to value, the first matching row wins; a t no row matches
 * keeps t. */
#ifndef FLASH_PLUGINS_SHIFT_MAP_H
#define FLASH_PLUGINS_SHIFT_MAP_H

#include "flash/flash.h"

#include <math.h>
#include <string.h>

#define SHIFT_MAP_MAX 16

typedef struct shift_map {
    int n;
    double above[SHIFT_MAP_MAX];
    double value[SHIFT_MAP_MAX];
} shift_map;

/* Imagine Flash section 5.1: gamma(t > 900) = 990, gamma(900 >= t > 500) =
 * 950, gamma(t <= 500) = 200. */
static inline void shift_map_paper(shift_map *s)
{
    s->n = 3;
    s->above[0] = 900, s->value[0] = 990;
    s->above[1] = 500, s->value[1] = 950;
    s->above[2] = -INFINITY, s->value[2] = 200;
}

/* Reads node: `paper` or rows [[above, value], ...] with decreasing
 * thresholds and values in [0, max_t]; NULL: the paper's map. */
static inline flash_status shift_map_read(const flash_cfg *parent, const char *key, int max_t, shift_map *s,
                                          flash_error *err)
{
    memset(s, 0, sizeof *s);
    shift_map_paper(s);
    const flash_cfg *g = flash_cfg_get(parent, key);
    if (!g) return FLASH_OK;
    if (flash_cfg_kind(g) == FLASH_CFG_SCALAR) {
        if (strcmp(flash_cfg_scalar(g), "paper") != 0)
            return flash_cfg_error(g, err, "%s: expected 'paper' or rows [above, value], got '%s'", key,
                                   flash_cfg_scalar(g));
        return FLASH_OK;
    }
    double m[2 * SHIFT_MAP_MAX];
    size_t rows = 0, cols = 0;
    flash_status st = flash_cfg_matrix(parent, key, m, 2 * SHIFT_MAP_MAX, &rows, &cols, err);
    if (st) return st;
    if (rows < 1 || cols != 2)
        return flash_cfg_error(g, err, "%s: expected rows [above, value] (t > above -> value), e.g. [[900, 990], "
                                       "[500, 950], [-1, 200]]", key);
    s->n = (int)rows;
    for (size_t i = 0; i < rows; i++) {
        s->above[i] = m[2 * i];
        s->value[i] = m[2 * i + 1];
        if (!(m[2 * i + 1] >= 0 && m[2 * i + 1] <= max_t))
            return flash_cfg_error(g, err, "%s: row %zu maps to %g, outside [0, %d]", key, i, m[2 * i + 1], max_t);
        if (i > 0 && !(m[2 * i] < m[2 * i - 2]))
            return flash_cfg_error(g, err, "%s: the thresholds must decrease (row %zu: %g after %g)", key, i, m[2 * i],
                                   m[2 * i - 2]);
    }
    return FLASH_OK;
}

static inline double shift_map_eval(const shift_map *s, double t)
{
    for (int i = 0; i < s->n; i++)
        if (t > s->above[i]) return s->value[i];
    return t;
}

#endif
