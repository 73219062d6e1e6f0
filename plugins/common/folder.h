/* The in-tree plugin convention: one shared object per folder of plugins/,
 * one component per file.
 *
 * A component file defines its kind's table and registers it:
 *
 *   static const flash_loss_api mse_loss = {.head = {sizeof mse_loss, ...}, ...};
 *   FLASH_COMPONENT(mse_loss)
 *
 * FLASH_COMPONENT puts a pointer to the table in the `flash_components`
 * section of the shared object; the build adds to each folder an entry file
 * (folder_entry.c.in) whose descriptor lists that section, so adding a file
 * to a folder needs no other edit. Out-of-tree plugins write their own
 * descriptor with FLASH_PLUGIN (see plugin.h). */
#ifndef FLASH_PLUGINS_FOLDER_H
#define FLASH_PLUGINS_FOLDER_H

#include "flash/flash.h"

#define FLASH_COMPONENT(var)                                                                  \
    __attribute__((used, section("flash_components"))) static const flash_component *const \
        flash_component_ptr_##var = &(var).head;

/* Defines a component's table `var` (of type `type`, the kind's API) and
 * registers it: the head's size is the table's own and its kind is `kind`;
 * the kind's entries follow as designated initializers. */
#define FLASH_COMPONENT_TABLE(type, var, kind, name, summary, keys, create, destroy, ...)                  \
    static const type var = {.head = {sizeof var, kind, name, summary, keys, create, destroy}, __VA_ARGS__}; \
    FLASH_COMPONENT(var)

/* The linker defines these around the section; hidden so each shared object
 * sees its own. */
extern const flash_component *const __start_flash_components[] __attribute__((visibility("hidden")));
extern const flash_component *const __stop_flash_components[] __attribute__((visibility("hidden")));

#endif
