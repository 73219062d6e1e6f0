/* flash plugins [NAME] [--kind K] [--config FILE]: what the loader found,
 * or one component's keys. */
#include "cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct plugins_args {
    const char *name, *kind, *config;
} plugins_args;

static const flash_opt plugins_opts[] = {
    FLASH_STRING("--kind", "KIND", plugins_args, kind,
        "only this kind: model, schedule, sampler, loss, strategy,\ndataset, metric"),
    FLASH_STRING("--config", "FILE", plugins_args, config, "also load the plugins named by FILE's plugin_paths"),
    {0},
};

static const flash_command plugins_cmd = {
    .name = "plugins",
    .positional = "NAME",
    .positional_optional = true,
    .positional_offset = offsetof(plugins_args, name),
    .opts = plugins_opts,
    .about = "Lists every loaded component: kind, name, the plugin file it came from and\n"
             "a one-line summary. Plugins are loaded from the built-in directory, then\n"
             "$FLASH_PLUGIN_PATH, then (with --config) the config's plugin_paths.\n"
             "\n"
             "With NAME: the keys of the component(s) of that name (of --kind K only),\n"
             "each with its type and default. They are learnt by creating the\n"
             "component once from {plugin: NAME} and noting what it reads; a key it\n"
             "declares but does not read then is read later, by the training loop or\n"
             "the plugin kit, and shows as such.\n",
    .epilogue = "Exit codes: 0 listed, 2 an unknown kind or NAME, 1 any other failure.\n",
};

#define MAX_READS 128

/* Creates c once from {plugin: NAME} (and `map_key: {}` when given),
 * noting what it reads; returns the count of reads in out. */
static size_t record_reads(const flash_registry *r, const flash_component *c, const char *map_key,
                           flash_cfg_read *out, size_t max)
{
    size_t n = 0;
    flash_error err = {0};
    char text[512];
    snprintf(text, sizeof text, "plugin: %s\n%s%s\n", c->name, map_key ? map_key : "", map_key ? ": {}" : "");
    flash_cfg *slot = NULL, *root = flash_cfg_new_map("<flash plugins>");
    if (root && flash_cfg_parse_string(text, "<flash plugins>", &slot, &err) == FLASH_OK) {
        flash_env env = {.size = sizeof env, .registry = (flash_registry *)r, .root = root};
        void *self = NULL;
        flash_cfg_record_begin(slot, out, max);
        /* a component that needs a key to be created stops there: the keys
         * it reads after it show as read later */
        if (c->create(slot, &env, &self, &err) == FLASH_OK && c->destroy) c->destroy(self);
        n = flash_cfg_record_end();
    }
    flash_cfg_free(slot);
    flash_cfg_free(root);
    return n;
}

/* One component's keys: the reads its create() makes on an empty slot,
 * in the order it declares them, nested reads (target.k) after their key. */
static void print_keys(const flash_registry *r, const flash_component *c, const char *origin)
{
    printf("%s %s (%s): %s\n", flash_kind_name(c->kind), c->name, origin ? origin : "-", c->summary ? c->summary : "");
    flash_cfg_read reads[MAX_READS];
    size_t n = record_reads(r, c, NULL, reads, MAX_READS);
    /* a declared key not read from an empty slot may be a map read only
     * when present (strategy.target): once more with it an empty map */
    for (size_t k = 0; c->keys && c->keys[k] && n < MAX_READS; k++) {
        bool seen = false;
        for (size_t i = 0; i < n; i++) seen |= strcmp(reads[i].key, c->keys[k]) == 0;
        if (seen) continue;
        flash_cfg_read more[MAX_READS];
        size_t m = record_reads(r, c, c->keys[k], more, MAX_READS);
        for (size_t i = 0; i < m && n < MAX_READS; i++) {
            bool dup = false;
            for (size_t j = 0; j < n; j++) dup |= strcmp(reads[j].key, more[i].key) == 0;
            if (!dup && strncmp(more[i].key, c->keys[k], strlen(c->keys[k])) == 0) reads[n++] = more[i];
        }
    }
    if (!c->keys || !c->keys[0]) {
        printf("  no keys besides plugin\n");
        return;
    }
    int w = 3;
    for (size_t i = 0; i < n; i++)
        if ((int)strlen(reads[i].key) > w) w = (int)strlen(reads[i].key);
    for (size_t k = 0; c->keys[k]; k++)
        if ((int)strlen(c->keys[k]) > w) w = (int)strlen(c->keys[k]);
    printf("  %-*s  %-24s  %s\n", w, "KEY", "TYPE", "DEFAULT");
    for (size_t k = 0; c->keys[k]; k++) {
        const char *key = c->keys[k];
        size_t kl = strlen(key);
        const flash_cfg_read *own = NULL;
        for (size_t i = 0; i < n; i++)
            if (strcmp(reads[i].key, key) == 0) own = &reads[i];
        bool nested = false;
        for (size_t i = 0; i < n; i++) nested |= strncmp(reads[i].key, key, kl) == 0 && reads[i].key[kl] == '.';
        if (own)
            printf("  %-*s  %-24s  %s\n", w, key, own->type, own->def[0] ? own->def : "(none)");
        else if (nested)
            printf("  %-*s  %-24s  %s\n", w, key, "map", "");
        else
            printf("  %-*s  %-24s  %s\n", w, key, "-", "(read by the loop or the kit)");
        for (size_t i = 0; i < n; i++)
            if (strncmp(reads[i].key, key, kl) == 0 && reads[i].key[kl] == '.')
                printf("  %-*s  %-24s  %s\n", w, reads[i].key, reads[i].type, reads[i].def[0] ? reads[i].def : "(none)");
    }
}

int flash_cmd_plugins(int argc, char **argv)
{
    plugins_args a = {0};
    int rc;
    if (!flash_options_parse(&plugins_cmd, argc, argv, &a, &rc)) return rc;
    int kind = -1;
    const char *config = a.config;
    if (a.kind) {
        const char *k = a.kind;
        kind = flash_kind_parse(k);
        if (kind < 0) {
            const char *kinds[FLASH_KIND_COUNT + 1];
            for (int j = 0; j < FLASH_KIND_COUNT; j++) kinds[j] = flash_kind_name((flash_kind)j);
            kinds[FLASH_KIND_COUNT] = NULL;
            const char *near = flash_did_you_mean(k, kinds);
            fprintf(stderr, "flash plugins: unknown kind '%s'%s%s%s (kinds: model, schedule, sampler, loss, "
                    "strategy, dataset, metric)\n",
                    k, near ? " (did you mean '" : "", near ? near : "", near ? "'?)" : "");
            return FLASH_EXIT_USAGE;
        }
    }

    flash_error err = {0};
    flash_cli_pipeline p = {0};
    flash_status st;
    if (config) {
        st = flash_cli_pipeline_load(&p, config, NULL, &err);
    } else {
        p.registry = flash_registry_create();
        st = p.registry ? flash_registry_load_default(p.registry, NULL, &err)
                        : flash_error_set(&err, FLASH_ERR_NOMEM, "out of memory");
    }
    if (st) {
        flash_cli_pipeline_free(&p);
        return flash_cli_fail("plugins", &err);
    }

    if (a.name) {
        int found = 0;
        const char **names = calloc(flash_registry_count(p.registry) + 1, sizeof *names);
        for (size_t i = 0; i < flash_registry_count(p.registry); i++) {
            const char *origin;
            const flash_component *c = flash_registry_at(p.registry, i, &origin);
            if (names && (kind < 0 || (int)c->kind == kind)) names[i] = c->name;
            if (strcmp(c->name, a.name) != 0 || (kind >= 0 && (int)c->kind != kind)) continue;
            if (found++) putchar('\n');
            print_keys(p.registry, c, origin);
        }
        if (!found) {
            /* names[] has holes where the kind differs: compact it */
            size_t m = 0;
            for (size_t i = 0; names && i < flash_registry_count(p.registry); i++)
                if (names[i]) names[m++] = names[i];
            if (names) names[m] = NULL;
            const char *near = names ? flash_did_you_mean(a.name, names) : NULL;
            fprintf(stderr, "flash plugins: no %s%scomponent named '%s'%s%s%s\n",
                    kind >= 0 ? flash_kind_name((flash_kind)kind) : "", kind >= 0 ? " " : "", a.name,
                    near ? " (did you mean '" : "", near ? near : "", near ? "'?)" : "");
        }
        free(names);
        flash_cli_pipeline_free(&p);
        return found ? FLASH_EXIT_OK : FLASH_EXIT_USAGE;
    }

    /* Aligned columns: widths from the rows shown. */
    size_t n = flash_registry_count(p.registry);
    int wk = 4, wn = 4, wf = 4, shown = 0;
    for (size_t i = 0; i < n; i++) {
        const char *origin;
        const flash_component *c = flash_registry_at(p.registry, i, &origin);
        if (kind >= 0 && (int)c->kind != kind) continue;
        int l;
        if ((l = (int)strlen(flash_kind_name(c->kind))) > wk) wk = l;
        if ((l = (int)strlen(c->name)) > wn) wn = l;
        if ((l = (int)strlen(origin ? origin : "-")) > wf) wf = l;
        shown++;
    }
    if (shown) {
        printf("%-*s  %-*s  %-*s  %s\n", wk, "KIND", wn, "NAME", wf, "FILE", "SUMMARY");
        /* grouped by kind, in load order within a kind */
        for (int k = 0; k < FLASH_KIND_COUNT; k++) {
            for (size_t i = 0; i < n; i++) {
                const char *origin;
                const flash_component *c = flash_registry_at(p.registry, i, &origin);
                if ((int)c->kind != k || (kind >= 0 && k != kind)) continue;
                printf("%-*s  %-*s  %-*s  %s\n", wk, flash_kind_name(c->kind), wn, c->name, wf,
                       origin ? origin : "-", c->summary ? c->summary : "");
            }
        }
    } else {
        fprintf(stderr, "flash plugins: no %s%scomponents found (plugin directory: %s)\n",
                kind >= 0 ? flash_kind_name((flash_kind)kind) : "", kind >= 0 ? " " : "", flash_plugin_dir());
    }
    flash_cli_pipeline_free(&p);
    return FLASH_EXIT_OK;
}
