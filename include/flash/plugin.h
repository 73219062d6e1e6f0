/* The plugin ABI.
 *
 * A plugin is a shared object exporting one symbol, flash_plugin_entry,
 * returning a descriptor that lists any number of components. Every
 * component starts with flash_component (the head); each kind extends it
 * with its own function table (model.h, schedule.h, sampler.h, ...).
 *
 * Versioning: a plugin states the ABI it was built against in its
 * descriptor (FLASH_ABI_MAJOR.FLASH_ABI_MINOR of the headers it included).
 *   - Within a major, additions only: a minor bump appends fields to the
 *     end of a struct (head.size tells the host how much of it a plugin
 *     has) and adds functions or kinds; nothing is removed, reordered or
 *     changed in meaning. Anything else bumps the major.
 *   - So a plugin built against an older minor of the host's major loads:
 *     the host reads its structs up to head.size and treats fields it
 *     lacks as absent (NULL). A 1.0 plugin loads on a 1.1 host.
 *   - A plugin of a newer minor than the host's (it may rely on what the
 *     host lacks), or of another major, is refused with an error naming
 *     the file, the version the plugin needs and the host's (`flash
 *     --version` prints the host's).
 * 1.2 appended a model's guidance input (flash_model_api.takes_guidance,
 * .forward_guided) and per-sample scales of a sample request
 * (flash_sample_request.guidance, read up to its size field), and a
 * metric result holds 16 values (see the exceptions below).
 * Two exceptions, before 1.0 had users: ABI 1.1 replaced the strategy
 * table (strategy.h: one training loop for every method), and 1.2 the
 * layout of flash_metric_result, which strategies and metrics fill; so a
 * strategy or a metric built against an older minor is refused with a
 * message naming 1.2. The other kinds of a 1.0 plugin load.
 * The loader also requires head.size >= the size of the kind's struct in
 * ABI <major>.0 and refuses duplicate (kind, name) pairs. Libraries stay
 * loaded until the process exits.
 *
 * Writing one (see CONTRIBUTING.md):
 *
 *   static const char *const keys[] = {"weight", NULL};
 *   static const flash_loss_api my_loss = {
 *       .head = {sizeof my_loss, FLASH_KIND_LOSS, "my_loss", "one line", keys,
 *                my_create, my_destroy},
 *       .compute = my_compute,
 *   };
 *   static const flash_component *const comps[] = {&my_loss.head};
 *   static const flash_plugin_desc desc = {FLASH_ABI_MAJOR, FLASH_ABI_MINOR,
 *       "my_plugin", "0.1", comps, 1};
 *   FLASH_PLUGIN(desc)
 */
#ifndef FLASH_PLUGIN_H
#define FLASH_PLUGIN_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define FLASH_ABI_MAJOR 1
#define FLASH_ABI_MINOR 2
#define FLASH_PLUGIN_ENTRY_SYMBOL "flash_plugin_entry"

/* Component kinds. Values only grow at the end. */
typedef enum flash_kind {
    FLASH_KIND_MODEL = 0,
    FLASH_KIND_SCHEDULE,
    FLASH_KIND_SAMPLER,
    FLASH_KIND_LOSS,
    FLASH_KIND_STRATEGY,
    FLASH_KIND_DATASET,
    FLASH_KIND_METRIC,
    FLASH_KIND_COUNT
} flash_kind;

typedef struct flash_env flash_env;

typedef struct flash_component {
    uint32_t size;            /* sizeof the kind's concrete struct */
    flash_kind kind;
    const char *name;         /* unique per kind: "ddim", "mse", "backward" */
    const char *summary;      /* one line for `flash plugins` */
    const char *const *keys;  /* accepted config keys, NULL-terminated ("plugin" is implicit) */
    /* cfg is the component's slot map, borrowed for the call. On failure
     * nothing stays allocated and err names the key. */
    flash_status (*create)(const flash_cfg *cfg, flash_env *env, void **self, flash_error *err);
    void (*destroy)(void *self); /* destroy(NULL) is a no-op */
} flash_component;

typedef struct flash_plugin_desc {
    uint16_t abi_major, abi_minor;
    const char *name;    /* the plugin (shared object), e.g. "samplers" */
    const char *version;
    const flash_component *const *components;
    size_t n_components;
} flash_plugin_desc;

typedef const flash_plugin_desc *(*flash_plugin_entry_fn)(void);

#define FLASH_PLUGIN(desc) \
    FLASH_EXPORT const flash_plugin_desc *flash_plugin_entry(void) { return &(desc); }

/* A created component. The typed table is (const flash_<kind>_api *)comp. */
typedef struct flash_instance {
    const flash_component *comp;
    void *self;
} flash_instance;

#define FLASH_API(inst, type) ((const type *)(inst)->comp)

/* ---- the registry (host side) ----------------------------------------- */
typedef struct flash_registry flash_registry;

FLASH_EXPORT flash_registry *flash_registry_create(void);
/* Destroys the table; shared objects stay loaded until exit. */
FLASH_EXPORT void flash_registry_destroy(flash_registry *r);
/* Validates and adds a descriptor; origin names it in messages (file path). */
FLASH_EXPORT flash_status flash_registry_add(flash_registry *r, const flash_plugin_desc *d, const char *origin,
                                             flash_error *err);
/* dlopen one shared object and add its descriptor. */
FLASH_EXPORT flash_status flash_registry_load_file(flash_registry *r, const char *path, flash_error *err);
/* Every *.so in dir (sorted by name). A missing dir is not an error. */
FLASH_EXPORT flash_status flash_registry_load_dir(flash_registry *r, const char *dir, flash_error *err);
/* The built-in plugin directory, then each entry of $FLASH_PLUGIN_PATH
 * (colon-separated dirs or files), then the config's `plugin_paths:` (a list,
 * relative to the config file). root may be NULL. */
FLASH_EXPORT flash_status flash_registry_load_default(flash_registry *r, const flash_cfg *root, flash_error *err);
FLASH_EXPORT const flash_component *flash_registry_find(const flash_registry *r, flash_kind kind,
                                                        const char *name);
FLASH_EXPORT size_t flash_registry_count(const flash_registry *r);
/* i-th component in load order; *origin gets its file (may be NULL). */
FLASH_EXPORT const flash_component *flash_registry_at(const flash_registry *r, size_t i, const char **origin);
/* The built-in plugin directory (set at build/install time, overridable by
 * $FLASH_PLUGIN_DIR). */
FLASH_EXPORT const char *flash_plugin_dir(void);

FLASH_EXPORT const char *flash_kind_name(flash_kind k); /* "model", "sampler", ... */
/* -1 when unknown */
FLASH_EXPORT int flash_kind_parse(const char *name);

/* ---- the environment a component is created in ------------------------- */
struct flash_env {
    uint32_t size;               /* sizeof(flash_env) of the host */
    flash_registry *registry;
    uint64_t seed;               /* the run's seed */
    const char *run_dir;         /* may be NULL */
    const flash_cfg *root;       /* the whole resolved config, for components that read shared keys */
    flash_instance *schedule;    /* the pipeline's schedule once built, else NULL */
    flash_instance *teacher;     /* the teacher model once built, else NULL */
    /* Appended (minor-compatible): a host built before it passes a
     * shorter env, so read it only through flash_env_device(), which
     * checks size. */
    const char *device;          /* "cpu" or "cuda": where the pipeline's contexts and parameters live; NULL: cpu */
};

/* The pipeline's device: "cpu" or "cuda" (NULL env, an env from a host
 * that predates the field, or a NULL field: "cpu"). A component that makes
 * its own flash_ctx creates it there (flash_ctx_create_on), and moves the
 * parameters of any instance it creates and keeps to itself (not reachable
 * through its params()) there with flash_params_to_device after loading
 * them; parameters reachable through params() are moved by the component's
 * owner (the loop, or the component that created it). */
static inline const char *flash_env_device(const flash_env *env)
{
    if (!env || env->size < offsetof(flash_env, device) + sizeof env->device || !env->device) return "cpu";
    return env->device;
}

/* Creates the component a slot names: slot is a map with `plugin: NAME` and
 * its settings. Checks the plugin exists for kind (did-you-mean over the
 * registered names) and that every key is one the component declares, then
 * calls create. Errors carry file:line:col and the key path. */
FLASH_EXPORT flash_status flash_instance_create(flash_env *env, flash_kind kind, const flash_cfg *slot,
                                                flash_instance *out, flash_error *err);
FLASH_EXPORT void flash_instance_destroy(flash_instance *inst);

#ifdef __cplusplus
}
#endif

#include "flash/model.h"
#include "flash/schedule.h"
#include "flash/sampler.h"
#include "flash/loss.h"
#include "flash/strategy.h"
#include "flash/dataset.h"
#include "flash/metric.h"

#endif
