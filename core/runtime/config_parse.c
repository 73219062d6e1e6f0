/* YAML text to configuration nodes.
 *
 * The parser walks libyaml's event stream rather than its document API so
 * that every node keeps the exact start mark of its own event: the document
 * API would also lose the position of mapping keys, which is where an
 * unknown-key error has to point. Each map entry therefore stores the key's
 * line and column next to the value node.
 */
#include "runtime/config_internal.h"

#include <yaml.h>

#include <stdlib.h>
#include <string.h>

bool cfg_is_null_text(const char *s) {
    return !*s || !strcmp(s, "~") || !strcmp(s, "null") || !strcmp(s, "Null") || !strcmp(s, "NULL");
}

typedef struct anchor {
    char *name;
    flash_cfg *node; /* borrowed: lives in the tree being built */
} anchor;

typedef struct parse_ctx {
    yaml_parser_t parser;
    const char *text; /* the input, to place reader errors */
    size_t len;
    size_t nodes;     /* created so far, aliases expanded */
    size_t bytes;     /* what they hold (CFG_MAX_BYTES) */
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
    if (p->error == YAML_MEMORY_ERROR) return cfg_nomem(c->err);
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
        if (!a) return cfg_nomem(c->err);
        c->anchors = a;
        c->cap_anchors = cap;
    }
    char *s = cfg_strdup((const char *)name);
    if (!s) return cfg_nomem(c->err);
    c->anchors[c->n_anchors++] = (anchor){s, node};
    return FLASH_OK;
}

static flash_status parse_node(parse_ctx *c, yaml_event_t *ev, int depth, const char *path, flash_cfg **out);

static size_t node_count(const flash_cfg *n) {
    size_t k = 1;
    for (size_t i = 0; i < n->n; i++) k += node_count(n->items[i]);
    return k;
}

/* The bytes a copy of n holds once relabelled from a root path of old_len
 * characters to one of new_len: key paths grow with every level, so a deep
 * copy costs more than its text. */
static size_t copy_bytes(const flash_cfg *n, size_t old_len, size_t new_len) {
    const size_t path = strlen(n->path);
    size_t b = sizeof *n + (n->scalar ? strlen(n->scalar) + 1 : 0) + strlen(n->file) + 1 +
               (path >= old_len ? path - old_len : 0) + new_len + 1;
    for (size_t i = 0; i < n->n; i++) {
        b += sizeof *n->items + copy_bytes(n->items[i], old_len, new_len);
        if (n->keys) b += sizeof *n->keys + strlen(n->keys[i].name) + 1;
    }
    return b;
}

/* The op of a node's tag: none, a YAML core tag (!!str, ...), `!replace`
 * or `!delete`; any other local tag is refused rather than ignored. */
static flash_status tag_op(parse_ctx *c, const char *tag, int line, int col, const char *path, unsigned char *op) {
    *op = CFG_OP_MERGE;
    if (!tag || !strcmp(tag, "!") || !strncmp(tag, "tag:yaml.org,2002:", 18)) return FLASH_OK;
    if (!strcmp(tag, "!replace")) {
        *op = CFG_OP_REPLACE;
        return FLASH_OK;
    }
    if (!strcmp(tag, "!delete")) {
        *op = CFG_OP_DELETE;
        return FLASH_OK;
    }
    return cfg_error_at(c->err, FLASH_ERR_CONFIG, c->file, line, col, path,
                        "unknown tag '%s' (a config knows !replace and !delete, for extends)", tag);
}

/* Counts bytes against the budget; an error at (line, col) past it. */
static flash_status spend(parse_ctx *c, size_t bytes, int line, int col, const char *path) {
    c->bytes += bytes;
    if (c->bytes <= CFG_MAX_BYTES) return FLASH_OK;
    return cfg_error_at(c->err, FLASH_ERR_CONFIG, c->file, line, col, path,
                        "the config expands to more than %zu MiB (aliases and merge keys count as copies)",
                        CFG_MAX_BYTES >> 20);
}

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
            st = cfg_error_at(c->err, FLASH_ERR_CONFIG, c->file, kline, kcol, n->path,
                              "'<<' merges maps (<<: *name or <<: [*a, *b]), got %s",
                              cfg_describe(src, buf, sizeof buf));
            break;
        }
        for (size_t i = 0; i < src->n && !st; i++) {
            if (cfg_map_index(n, src->keys[i].name) >= 0) continue; /* earlier keys win */
            c->nodes += node_count(src->items[i]);
            if (c->nodes > CFG_MAX_NODES) {
                st = cfg_error_at(c->err, FLASH_ERR_CONFIG, c->file, kline, kcol, n->path,
                                  "more than %d nodes once aliases are expanded", CFG_MAX_NODES);
                break;
            }
            if ((st = spend(c, copy_bytes(src->items[i], strlen(src->items[i]->path),
                                          strlen(n->path) + 1 + strlen(src->keys[i].name)),
                            kline, kcol, n->path)))
                break;
            flash_cfg *copy = flash_cfg_clone(src->items[i]);
            char *path = n->path[0] ? cfg_asprintf("%s.%s", n->path, src->keys[i].name)
                                    : cfg_strdup(src->keys[i].name);
            if (!copy || !path || !cfg_relabel(copy, path) ||
                !cfg_node_append(n, src->keys[i].name, src->keys[i].line, src->keys[i].col, copy)) {
                flash_cfg_free(copy);
                st = cfg_nomem(c->err);
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
            return cfg_nomem(c->err);
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
            char *ipath = cfg_asprintf("%s[%zu]", n->path, n->n);
            st = ipath ? parse_node(c, &ev, depth + 1, ipath, &item) : cfg_nomem(c->err);
            free(ipath);
            yaml_event_delete(&ev);
            if (st) return st;
            if (!cfg_node_append(n, NULL, 0, 0, item)) {
                flash_cfg_free(item);
                return cfg_nomem(c->err);
            }
            continue;
        }
        /* A map: key event, then the value. */
        int kline = (int)ev.start_mark.line + 1, kcol = (int)ev.start_mark.column + 1;
        if (ev.type != YAML_SCALAR_EVENT) {
            yaml_event_delete(&ev);
            return cfg_error_at(c->err, FLASH_ERR_CONFIG, c->file, kline, kcol, n->path,
                                "map keys must be plain strings, not %s",
                                ev.type == YAML_ALIAS_EVENT ? "aliases" : "maps or sequences");
        }
        char *key = cfg_strndup((const char *)ev.data.scalar.value, ev.data.scalar.length);
        bool merge = ev.data.scalar.style == YAML_PLAIN_SCALAR_STYLE && !strcmp(key ? key : "", "<<");
        yaml_event_delete(&ev);
        if (!key) return cfg_nomem(c->err);
        if (merge) {
            free(key);
            if ((st = merge_key(c, n, kline, kcol, depth))) return st;
            continue;
        }
        if (n->n >= CFG_MAX_MAP_KEYS) {
            free(key);
            return cfg_error_at(c->err, FLASH_ERR_CONFIG, c->file, kline, kcol, n->path,
                                "more than %d keys in one map", CFG_MAX_MAP_KEYS);
        }
        long dup = cfg_map_index(n, key);
        char *path = n->path[0] ? cfg_asprintf("%s.%s", n->path, key) : cfg_strdup(key);
        if (!path) {
            free(key);
            return cfg_nomem(c->err);
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
            st = cfg_error_at(c->err, FLASH_ERR_CONFIG, c->file, kline, kcol, path,
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
        if (!st && !cfg_node_append(n, key, kline, kcol, val)) st = cfg_nomem(c->err);
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
        return cfg_error_at(c->err, FLASH_ERR_CONFIG, c->file, line, col, path, "nesting deeper than %d levels",
                            CFG_MAX_DEPTH);
    flash_cfg *n = NULL;
    const yaml_char_t *anchor_name = NULL;
    flash_status st = FLASH_OK;
    if (++c->nodes > CFG_MAX_NODES)
        return cfg_error_at(c->err, FLASH_ERR_CONFIG, c->file, line, col, path, "more than %d nodes", CFG_MAX_NODES);
    switch (ev->type) {
    case YAML_ALIAS_EVENT: {
        const char *name = (const char *)ev->data.alias.anchor;
        for (size_t i = c->n_anchors; i-- > 0;)
            if (!strcmp(c->anchors[i].name, name)) {
                /* Aliases of aliases grow exponentially ("billion laughs"):
                 * count the copy before making it. */
                c->nodes += node_count(c->anchors[i].node);
                if (c->nodes > CFG_MAX_NODES)
                    return cfg_error_at(c->err, FLASH_ERR_CONFIG, c->file, line, col, path,
                                        "more than %d nodes once aliases are expanded", CFG_MAX_NODES);
                if ((st = spend(c, copy_bytes(c->anchors[i].node, strlen(c->anchors[i].node->path), strlen(path)),
                                line, col, path)))
                    return st;
                if (!(n = flash_cfg_clone(c->anchors[i].node))) return cfg_nomem(c->err);
                if (!cfg_relabel(n, path)) {
                    flash_cfg_free(n);
                    return cfg_nomem(c->err);
                }
                *out = n;
                return FLASH_OK;
            }
        return cfg_error_at(c->err, FLASH_ERR_CONFIG, c->file, line, col, path, "unknown alias '*%s'", name);
    }
    case YAML_SCALAR_EVENT: {
        const char *text = (const char *)ev->data.scalar.value;
        const char *tag = (const char *)ev->data.scalar.tag;
        unsigned char op;
        if ((st = tag_op(c, tag, line, col, path, &op))) return st;
        /* `key: !delete` is a null whose text is empty */
        if (op != CFG_OP_MERGE) tag = NULL;
        bool plain = ev->data.scalar.style == YAML_PLAIN_SCALAR_STYLE || op != CFG_OP_MERGE;
        bool str_tag = tag && (!strcmp(tag, YAML_STR_TAG) || !strcmp(tag, "!"));
        if (plain && !str_tag && cfg_is_null_text(text)) {
            n = cfg_node_new(FLASH_CFG_NULL, c->file, line, col);
        } else {
            n = cfg_node_new(FLASH_CFG_SCALAR, c->file, line, col);
            if (n) {
                n->quoted = !plain || str_tag;
                if (!(n->scalar = cfg_strndup(text, ev->data.scalar.length))) {
                    flash_cfg_free(n);
                    n = NULL;
                }
            }
        }
        if (!n || !cfg_relabel(n, path)) {
            flash_cfg_free(n);
            return cfg_nomem(c->err);
        }
        n->op = op;
        anchor_name = ev->data.scalar.anchor;
        break;
    }
    case YAML_SEQUENCE_START_EVENT:
    case YAML_MAPPING_START_EVENT: {
        bool seq = ev->type == YAML_SEQUENCE_START_EVENT;
        unsigned char op;
        const char *tag = (const char *)(seq ? ev->data.sequence_start.tag : ev->data.mapping_start.tag);
        if ((st = tag_op(c, tag, line, col, path, &op))) return st;
        if (op == CFG_OP_DELETE)
            return cfg_error_at(c->err, FLASH_ERR_CONFIG, c->file, line, col, path,
                                "!delete takes no value: write `key: !delete`");
        if (!(n = cfg_node_new(seq ? FLASH_CFG_SEQ : FLASH_CFG_MAP, c->file, line, col))) return cfg_nomem(c->err);
        n->op = op;
        if (!cfg_relabel(n, path)) {
            flash_cfg_free(n);
            return cfg_nomem(c->err);
        }
        anchor_name = seq ? ev->data.sequence_start.anchor : ev->data.mapping_start.anchor;
        st = parse_collection(c, n, seq ? YAML_SEQUENCE_END_EVENT : YAML_MAPPING_END_EVENT, depth);
        break;
    }
    default:
        return cfg_error_at(c->err, FLASH_ERR_CONFIG, c->file, line, col, path, "unexpected YAML event %d", ev->type);
    }
    /* the node's own bytes (its children counted themselves) */
    if (!st)
        st = spend(c, sizeof *n + (n->scalar ? strlen(n->scalar) + 1 : 0) + strlen(n->file) + strlen(n->path) + 2, line,
                   col, path);
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
                st = cfg_error_at(c->err, FLASH_ERR_CONFIG, c->file, line, col, NULL,
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
    if (!root && !(root = cfg_node_new(FLASH_CFG_NULL, c->file, 1, 1))) {
        st = cfg_nomem(c->err);
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

flash_status cfg_parse_text(const char *text, size_t len, const char *name, flash_cfg **out, flash_error *err) {
    parse_ctx c = {.file = name, .err = err, .text = text, .len = len};
    if (!yaml_parser_initialize(&c.parser)) return cfg_nomem(err);
    yaml_parser_set_input_string(&c.parser, (const unsigned char *)text, len);
    flash_status st = parse_stream(&c, out);
    ctx_free(&c);
    return st;
}

/* ---- merging and extends ----------------------------------------------- */
