/* flash plugins [--kind K] [--config FILE]: what the loader found. */
#include "cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct plugins_args {
    const char *kind, *config;
} plugins_args;

static const flash_opt plugins_opts[] = {
    FLASH_STRING("--kind", "KIND", plugins_args, kind,
        "only this kind: model, schedule, sampler, loss, strategy,\ndataset, metric"),
    FLASH_STRING("--config", "FILE", plugins_args, config, "also load the plugins named by FILE's plugin_paths"),
    {0},
};

static const flash_command plugins_cmd = {
    .name = "plugins",
    .opts = plugins_opts,
    .about = "Lists every loaded component: kind, name, the plugin file it came from and\n"
             "a one-line summary. Plugins are loaded from the built-in directory, then\n"
             "$FLASH_PLUGIN_PATH, then (with --config) the config's plugin_paths.\n",
};

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
