/* YAML configuration trees that remember where every node came from.
 *
 * flash_cfg_load parses a file with libyaml, follows `extends: base.yaml`
 * (relative to the including file; the child overrides the base key by
 * key, maps merge recursively, sequences and scalars replace), and
 * flash_cfg_set applies command-line overrides (`sampler.steps=3`, the value
 * parsed as YAML) last. Every node keeps its file, line, column and dotted
 * key path, so every error can say
 *   configs/x.yaml:7:5: sampler.stesp: sampler 'ddim' has no key 'stesp' (did you mean 'steps'?)
 *
 * Typed getters read a key of a map with a default when absent; a present key
 * of the wrong type is FLASH_ERR_CONFIG with the location and key path.
 * Nodes are owned by the tree; plugins borrow them during create and copy
 * what they keep.
 */
#ifndef FLASH_CONFIG_H
#define FLASH_CONFIG_H

#include <stdbool.h>
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct flash_cfg flash_cfg;

typedef enum flash_cfg_type {
    FLASH_CFG_NULL = 0,
    FLASH_CFG_SCALAR,
    FLASH_CFG_SEQ,
    FLASH_CFG_MAP,
} flash_cfg_type;

FLASH_EXPORT flash_status flash_cfg_load(const char *path, flash_cfg **root, flash_error *err);
/* `name` stands in for the file name in locations. `extends` is resolved
 * relative to the current directory. */
FLASH_EXPORT flash_status flash_cfg_parse_string(const char *text, const char *name, flash_cfg **root,
                                                 flash_error *err);
/* "a.b.c=value": creates missing maps along the path; value is YAML
 * ("3", "[999, 750]", "{plugin: ddim}"); located as "--set a.b.c". */
FLASH_EXPORT flash_status flash_cfg_set(flash_cfg *root, const char *assignment, flash_error *err);
/* flash_cfg_set for an assignment written in a file (a sweep's `set:`
 * item, `origin`): the value is located where origin is, so its relative
 * paths name files beside that file (flash_cfg_resolve_path) and its errors
 * name that file and line. Without a location, as flash_cfg_set. */
FLASH_EXPORT flash_status flash_cfg_set_from(flash_cfg *root, const char *assignment, const flash_cfg *origin,
                                             flash_error *err);
FLASH_EXPORT void flash_cfg_free(flash_cfg *root);
FLASH_EXPORT flash_cfg *flash_cfg_clone(const flash_cfg *n);
/* New empty map (for building configs in code and tests). */
FLASH_EXPORT flash_cfg *flash_cfg_new_map(const char *name);

FLASH_EXPORT flash_cfg_type flash_cfg_kind(const flash_cfg *n);
/* A child of a map (NULL when absent or n is not a map). */
FLASH_EXPORT const flash_cfg *flash_cfg_get(const flash_cfg *map, const char *key);
/* Dotted path from n: "sampler.steps". */
FLASH_EXPORT const flash_cfg *flash_cfg_path(const flash_cfg *n, const char *dotted);
FLASH_EXPORT size_t flash_cfg_len(const flash_cfg *n); /* items of a seq or map */
FLASH_EXPORT const flash_cfg *flash_cfg_at(const flash_cfg *n, size_t i);
FLASH_EXPORT const char *flash_cfg_key_at(const flash_cfg *map, size_t i);
FLASH_EXPORT const char *flash_cfg_scalar(const flash_cfg *n); /* NULL unless scalar */

/* Where it came from. */
FLASH_EXPORT const char *flash_cfg_file(const flash_cfg *n);
/* A file a config names, the one rule for every path in a config: as
 * given when absolute; else beside the config file that holds node when
 * something exists there; else relative to the current directory (a file
 * named from where flash runs, or an output not written yet). A node from
 * --set or built in code has no file: the current directory. Writes at
 * most size bytes to out; false when it does not fit. */
FLASH_EXPORT bool flash_cfg_resolve_path(const flash_cfg *node, const char *path, char *out, size_t size);
FLASH_EXPORT int flash_cfg_line(const flash_cfg *n);
FLASH_EXPORT int flash_cfg_col(const flash_cfg *n);
FLASH_EXPORT const char *flash_cfg_keypath(const flash_cfg *n); /* "sampler.steps"; "" for the root */
/* "file:line:col" into buf; returns buf. */
FLASH_EXPORT const char *flash_cfg_where(const flash_cfg *n, char *buf, size_t size);
/* Error at node n: "file:line:col: keypath: message". */
FLASH_EXPORT flash_status flash_cfg_error(const flash_cfg *n, flash_error *err, const char *fmt, ...)
    FLASH_PRINTF(3, 4);

/* Typed getters on a map's key (absent -> default, FLASH_OK). */
FLASH_EXPORT flash_status flash_cfg_int(const flash_cfg *map, const char *key, long def, long *out,
                                        flash_error *err);
FLASH_EXPORT flash_status flash_cfg_double(const flash_cfg *map, const char *key, double def, double *out,
                                           flash_error *err);
FLASH_EXPORT flash_status flash_cfg_float(const flash_cfg *map, const char *key, float def, float *out,
                                          flash_error *err);
FLASH_EXPORT flash_status flash_cfg_bool(const flash_cfg *map, const char *key, bool def, bool *out,
                                         flash_error *err);
/* Borrowed string, valid while the tree lives. */
FLASH_EXPORT flash_status flash_cfg_str(const flash_cfg *map, const char *key, const char *def,
                                        const char **out, flash_error *err);
/* One of choices (NULL-terminated); *out is its index; a bad value lists them. */
FLASH_EXPORT flash_status flash_cfg_enum(const flash_cfg *map, const char *key, const char *const *choices,
                                         int def, int *out, flash_error *err);
/* Sequences of numbers: *n gets the length; more than max items is an error.
 * Absent key: *n = 0, FLASH_OK. flash_cfg_matrix reads a sequence of equally
 * long sequences ([[1,2],[3,4]]) row by row into out. */
FLASH_EXPORT flash_status flash_cfg_doubles(const flash_cfg *map, const char *key, double *out, size_t max,
                                            size_t *n, flash_error *err);
FLASH_EXPORT flash_status flash_cfg_ints(const flash_cfg *map, const char *key, long *out, size_t max,
                                         size_t *n, flash_error *err);
FLASH_EXPORT flash_status flash_cfg_matrix(const flash_cfg *map, const char *key, double *out, size_t max,
                                           size_t *rows, size_t *cols, flash_error *err);
/* Every key of map must be in allowed (NULL-terminated) or "plugin"; the
 * first unknown key is an error naming `what` and suggesting the closest
 * allowed key by edit distance. */
FLASH_EXPORT flash_status flash_cfg_check_keys(const flash_cfg *map, const char *what,
                                               const char *const *allowed, flash_error *err);
/* Levenshtein-closest candidate within a reasonable distance, or NULL. */
FLASH_EXPORT const char *flash_did_you_mean(const char *word, const char *const *candidates);

/* What a component reads from its slot, for `flash plugins NAME`: between
 * flash_cfg_record_begin and flash_cfg_record_end, on the calling thread,
 * every typed getter called on `map` notes its key, type and default (the
 * first read of a key wins). A getter called on a map that is a key of
 * `map`, or on the missing sub-map a key of `map` names
 * (flash_cfg_get(map, "target") absent, then flash_cfg_int(NULL, "k", 8,
 * ...)), notes "target.k". */
typedef struct flash_cfg_read {
    char key[96];
    char type[160]; /* "int", "number", "bool", "string", "one of: a, b", "list of numbers", ... */
    char def[96];   /* the default as text; "" when there is none */
} flash_cfg_read;
FLASH_EXPORT void flash_cfg_record_begin(const flash_cfg *map, flash_cfg_read *reads, size_t max);
/* Stops recording; returns how many reads were noted. */
FLASH_EXPORT size_t flash_cfg_record_end(void);

/* Serialises the (resolved) tree as YAML; caller frees. */
FLASH_EXPORT char *flash_cfg_to_yaml(const flash_cfg *n);
/* Writes the YAML atomically (temp file, fsync, rename). */
FLASH_EXPORT flash_status flash_cfg_write(const flash_cfg *n, const char *path, flash_error *err);

/* Builders for code and tests: set a scalar child of a map (replacing). */
FLASH_EXPORT flash_status flash_cfg_put(flash_cfg *map, const char *key, const char *scalar, flash_error *err);

#ifdef __cplusplus
}
#endif
#endif
