/* The plugin files a pipeline's components come from, and the config
 * record written into run folders (provenance.c; the public part is in
 * include/flash/pipeline.h). */
#ifndef FLASH_PIPELINE_PROVENANCE_H
#define FLASH_PIPELINE_PROVENANCE_H

#include "flash/flash.h"

/* The record's first lines: comments, so the file loads as the config. */
#define FLASH_CONFIG_RECORD_HEADER                                                                                    \
    "# The resolved config (flash writes it; paths are absolute). The plugin files its\n"                           \
    "# components come from, with the FNV-1a 64 hash of their contents:\n"
#define FLASH_CONFIG_RECORD_PLUGIN "# plugin "

/* Canonical paths, sorted, with FNV-1a 64 of each file's bytes. */
typedef struct flash_plugin_files {
    size_t n;
    char **path;
    uint64_t *hash;
} flash_plugin_files;

/* The files of the registered components that root's `plugin:` keys name
 * (anywhere in the tree). */
flash_status flash_plugin_files_of(const flash_cfg *root, const flash_registry *r, flash_plugin_files *out,
                                   flash_error *err);
void flash_plugin_files_free(flash_plugin_files *pf);
/* The header, one FLASH_CONFIG_RECORD_PLUGIN line per file ("HASH PATH"),
 * then root as YAML; malloc'd, NULL when out of memory. */
char *flash_config_record(const flash_cfg *root, const flash_plugin_files *pf);

#endif
