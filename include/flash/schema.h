/* What a config may hold, per command: the one table of the keys the core
 * reads from a pipeline (its top level, `train:`, `run:` and its variants,
 * `teacher_train:`) and from a sweep file, so that a misspelt key anywhere
 * is an error (file:line:col, the key, a did-you-mean) instead of a setting
 * silently left at its default.
 *
 * One pipeline file usually serves several commands (a distillation config
 * is also sampled and evaluated), so the top level has one vocabulary, the
 * union of what the commands read; each command adds the keys it cannot
 * go without. Plugin slots are checked against the keys their component
 * declares (flash_component.keys) when a registry is given. Keys that
 * moved (`distill:` is now `train:`, top-level `target:` is now
 * `strategy.target`) are refused with where they went.
 *
 * Free-form blocks: a top-level key starting with `x-` (as in docker
 * compose) is never read and never checked; it holds YAML anchors that
 * other keys merge in (`x-mixture: &mixture {...}`, `<<: *mixture`).
 *
 * The commands (flash train, distill, run, sample, eval, sweep) check
 * their config with flash_schema_check before they run, and `flash check
 * --for COMMAND` runs the same check. */
#ifndef FLASH_SCHEMA_H
#define FLASH_SCHEMA_H

#include "flash/flash.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The command a config is checked for. Values only grow at the end. */
typedef enum flash_schema_for {
    FLASH_FOR_ANY = 0, /* no command in particular: the vocabulary only, nothing required */
    FLASH_FOR_TRAIN,
    FLASH_FOR_DISTILL,
    FLASH_FOR_RUN,
    FLASH_FOR_SAMPLE,
    FLASH_FOR_EVAL,
    FLASH_FOR_SWEEP, /* a sweep file, not a pipeline */
    FLASH_FOR_COUNT
} flash_schema_for;

/* "any", "train", "distill", "run", "sample", "eval", "sweep". */
FLASH_EXPORT const char *flash_schema_name(flash_schema_for what);
/* The command of a name, or -1. */
FLASH_EXPORT int flash_schema_parse(const char *name);
/* The command a file is for, from what it holds: top-level `variants:`,
 * `runs:` or `base:` -> sweep; `run:` -> run; `strategy:` with `student:`
 * -> distill; `strategy:` -> train; `sampler:` -> sample; `metrics:` ->
 * eval; else FLASH_FOR_ANY. */
FLASH_EXPORT flash_schema_for flash_schema_infer(const flash_cfg *root);
/* Whether the command reads the top-level key (x- keys: never). */
FLASH_EXPORT bool flash_schema_reads(flash_schema_for what, const char *key);
/* Checks root for the command: every key known (a did-you-mean otherwise),
 * the core's blocks and their types, the keys the command needs present,
 * and, when registry is not NULL, every plugin slot's plugin name and keys
 * (values are checked by creating the component). For run, also each
 * variant's config (the pipeline with its `set:` applied). */
FLASH_EXPORT flash_status flash_schema_check(const flash_cfg *root, flash_schema_for what,
                                             const flash_registry *registry, flash_error *err);
/* The keys of one of the core's blocks, NULL-terminated, or NULL for an
 * unknown block: "train", "run", "run.variants", "teacher_train", "sweep",
 * "sweep.variants", "sweep.resample", "sweep.runs". */
FLASH_EXPORT const char *const *flash_schema_keys(const char *block);

#ifdef __cplusplus
}
#endif
#endif
