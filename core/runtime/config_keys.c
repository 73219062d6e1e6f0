/* Unknown keys: a component's config map checked against the keys it
 * accepts, with the nearest known key suggested. */
#include "runtime/config_internal.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>

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
    if (map->type != FLASH_CFG_MAP) return cfg_expected(map, "a map", err);
    for (size_t i = 0; i < map->n; i++) {
        const char *key = map->keys[i].name;
        if (is_allowed(key, allowed)) continue;
        const cfg_key *k = &map->keys[i];
        const char *path = map->items[i]->path;
        const char *guess = flash_did_you_mean(key, allowed);
        if (guess)
            return cfg_error_at(err, FLASH_ERR_CONFIG, map->items[i]->file, k->line, k->col, path,
                                "%s has no key '%s' (did you mean '%s'?)", what, key, guess);
        char list[512] = "";
        size_t len = 0;
        for (size_t j = 0; allowed && allowed[j] && len < sizeof list; j++)
            len += (size_t)snprintf(list + len, sizeof list - len, "%s%s", j ? ", " : "", allowed[j]);
        return cfg_error_at(err, FLASH_ERR_CONFIG, map->items[i]->file, k->line, k->col, path,
                            "%s has no key '%s' (known keys: %s)", what, key, len ? list : "none besides plugin");
    }
    return FLASH_OK;
}
