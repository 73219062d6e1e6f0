/* Configuration nodes back to YAML (a run's resolved config.yaml, `flash
 * check`): the text reads back as the same tree. */
#include "runtime/config_internal.h"

#include <yaml.h>

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

/* Would this text, written plain, read as something other than a string
 * (null, bool, number) in YAML 1.1? Errs on the side of yes: quoting too
 * often is harmless, quoting too rarely changes the value's type. */
static bool looks_typed(const char *s) {
    static const char *const words[] = {"y", "yes", "n", "no", "true", "false", "on", "off", NULL};
    if (cfg_is_null_text(s)) return true;
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

/* Multi-line text is double-quoted with \n escapes rather than folded. A
 * string that would read back as a number, bool or null keeps its quotes
 * (keys too, for other YAML readers' sake), single ones: the style the
 * emitter itself picks for plain text that plain style cannot hold (`2:0`
 * in a flow list), so printing what was printed gives the same bytes.
 * Everything else is left to the emitter, which quotes only what plain
 * style cannot hold (and falls back to double quotes for what single
 * quotes cannot). */
static yaml_scalar_style_t scalar_style(const char *text, bool quoted) {
    if (strchr(text, '\n')) return YAML_DOUBLE_QUOTED_SCALAR_STYLE;
    if (quoted && looks_typed(text)) return YAML_SINGLE_QUOTED_SCALAR_STYLE;
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
