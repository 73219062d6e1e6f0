/* Configuration trees (see include/flash/config.h): the node shared by the
 * files that implement them.
 *
 *   config_tree.c   nodes: allocation, cloning, accessors, key paths, errors
 *   config_parse.c  YAML text -> nodes that keep file:line:col (libyaml events)
 *   config_load.c   files, merging and `extends:`
 *   config_get.c    typed getters (flash_cfg_int, _float, _enum, _matrix, ...)
 *   config_keys.c   unknown keys and did-you-mean
 *   config_set.c    --set overrides and flash_cfg_put
 *   config_emit.c   nodes -> YAML (flash_cfg_to_yaml, flash_cfg_write)
 *
 * Scalars keep their text and whether they were quoted: a quoted "3" is the
 * string 3, not the integer, so number getters refuse it and the emitter
 * quotes it again. Plain empty, ~ and null become FLASH_CFG_NULL nodes.
 *
 * Key paths are recomputed (cfg_relabel) after every structural change so
 * that a node moved from a base still names its path in the resolved tree.
 */
#ifndef FLASH_CONFIG_INTERNAL_H
#define FLASH_CONFIG_INTERNAL_H

#include "flash/flash.h"

#include <stdbool.h>
#include <stddef.h>

/* Nesting deeper than this is refused: libyaml has no limit of its own and
 * the parser recurses once per level. */
#define CFG_MAX_DEPTH 256
/* Nodes per file, aliases expanded: bounds the memory a hostile file can
 * ask for. */
#define CFG_MAX_NODES 100000
/* Keys in one map: a key's duplicate check is a scan of the map, so a
 * map of hundreds of thousands of keys would take minutes to refuse. */
#define CFG_MAX_MAP_KEYS 10000
/* Bytes per file once aliases and merge keys are expanded (node headers,
 * scalars, key paths, file names): a few kilobytes of nested aliases can
 * otherwise ask for gigabytes, well before the node count is reached. */
#define CFG_MAX_BYTES ((size_t)64 << 20)
/* Longest `extends` chain (cycles are caught separately, by name). */
#define CFG_MAX_EXTENDS 64

typedef struct cfg_key {
    char *name;
    int line, col; /* where the key itself is written (unknown-key errors point here) */
    bool merged;   /* copied in by a `<<` merge key: an explicit key may replace it */
} cfg_key;

/* What a node does to the base it is merged onto (`extends`): the tags
 * `!replace` and `!delete`. Load resolves them; a loaded tree has none. */
typedef enum cfg_op { CFG_OP_MERGE = 0, CFG_OP_REPLACE, CFG_OP_DELETE } cfg_op;

struct flash_cfg {
    flash_cfg_type type;
    unsigned char op; /* cfg_op, while loading */
    bool quoted;  /* scalar written quoted (or tagged !!str): always a string */
    char *scalar; /* FLASH_CFG_SCALAR only */
    char *file;
    int line, col; /* 1-based; 0 when the node has no position (--set, built in code) */
    char *path;    /* dotted key path from the root; "" for the root */
    size_t n, cap;
    flash_cfg **items; /* children of a seq or map */
    cfg_key *keys;     /* map only, parallel to items */
};

/* ---- config_get.c ------------------------------------------------------- */

/* flash_cfg_get notes a key it did not find while a read recorder is on
 * (flash_cfg_record_begin): reads of the missing sub-map are named after it. */
void cfg_record_get(const flash_cfg *map, const char *key, bool found);

/* ---- config_tree.c ------------------------------------------------------ */

/* malloc'd copies; NULL when out of memory */
char *cfg_strdup(const char *s);
char *cfg_strndup(const char *s, size_t n);
char *cfg_asprintf(const char *fmt, ...) FLASH_PRINTF(1, 2);
/* "config: out of memory" */
flash_status cfg_nomem(flash_error *err);

/* A node without children at file:line:col (file NULL: ""), path "". */
flash_cfg *cfg_node_new(flash_cfg_type type, const char *file, int line, int col);
/* Room for one more child. */
bool cfg_node_reserve(flash_cfg *n);
/* Appends child to a seq (key NULL) or map; takes ownership of child on
 * success only. */
bool cfg_node_append(flash_cfg *n, const char *key, int kline, int kcol, flash_cfg *child);
/* The index of key in map, or -1 (also when map is not a map). */
long cfg_map_index(const flash_cfg *map, const char *key);
/* Frees entry i of map, key and value. */
void cfg_map_remove(flash_cfg *map, size_t i);
/* Recomputes key paths below n, whose own path becomes `path`. */
bool cfg_relabel(flash_cfg *n, const char *path);

/* Parses one path segment "name[2][0]" of a dotted path: *name_len gets the
 * name's length and idx[] the indices. Returns the number of indices, or -1
 * on a malformed segment. */
int cfg_split_segment(const char *seg, size_t len, size_t *name_len, size_t *idx, int max_idx);

/* "file:line:col: path: message" (parts left out when unknown). */
flash_status cfg_error_at(flash_error *err, flash_status st, const char *file, int line, int col, const char *path,
                          const char *fmt, ...) FLASH_PRINTF(7, 8);
/* "'abc'", "a map", ... for "expected X, got Y" messages. */
const char *cfg_describe(const flash_cfg *n, char *buf, size_t size);
/* "expected <what>, got <n described>" at n. */
flash_status cfg_expected(const flash_cfg *n, const char *what, flash_error *err);

/* Removes the `!delete` nodes below n and clears every `!replace`: once a
 * file is merged onto its bases, its tags have done their work. */
void cfg_resolve_ops(flash_cfg *n);

/* ---- config_parse.c ----------------------------------------------------- */

/* Is this plain scalar text YAML's null (empty, ~, null)? */
bool cfg_is_null_text(const char *s);
/* One YAML document of text (len bytes, named `name` in positions) as a
 * tree; an empty document gives a NULL node. No `extends` resolution. */
flash_status cfg_parse_text(const char *text, size_t len, const char *name, flash_cfg **out, flash_error *err);

#endif
