/* The evaluator shared by the metrics that work in a trained classifier's
 * space (`fd`, `class_acc`, `precision_recall`): its slot keys, loading it
 * from a checkpoint, running it in batches, and the features of the
 * reference split, computed once per process and kept for the metrics
 * created after (a `flash run` creates each metric once per variant).
 * The plugin is built with hidden visibility: nothing here is exported.
 *
 * Keys (all metrics of this family):
 *   checkpoint:  the evaluator's weights (a path as given, else relative to
 *                the config file); default: the pipeline's top-level
 *                `evaluator_checkpoint:`. Read at the first computation, so
 *                `flash check` accepts a pipeline before the evaluator exists
 *   evaluator:   the evaluator's own config file (its `model:` slot is the
 *                network, its `dataset:` slot the default reference), or
 *   model:       the evaluator's model slot inline; without either, the
 *                pipeline's top-level `evaluator:` model slot
 *   reference:   a dataset slot (default: the pipeline's `dataset:`, else
 *                the evaluator config's)
 *   split:       train | test (default test)
 *   reference_n: reference examples used (default 0: the whole split)
 *   n:           samples used (default 5000; fewer if fewer are given)
 *   batch_size:  evaluator batch (default 250)
 *   suffix:      appended to the metric's value names ("_b": fd_b), so a
 *                second evaluator (another architecture and seed: a second
 *                judge) reports beside the first
 * and metrics' own (fd: bootstrap; kid: subsets, subset_size, seed;
 * precision_recall: k).
 *
 * The network and its context live on the pipeline's device
 * (flash_env_device at open); samples come and features go in host memory. */
#ifndef FLASH_METRICS_EVALUATOR_H
#define FLASH_METRICS_EVALUATOR_H

#include "flash/flash.h"

#define FLASH_EVALUATOR_KEYS                                                                                   \
    "checkpoint", "evaluator", "model", "reference", "split", "reference_n", "n", "batch_size", "suffix"

typedef struct flash_evaluator flash_evaluator;

/* who names the metric in messages. */
flash_status flash_evaluator_open(const flash_cfg *cfg, flash_env *env,
                                                                        const char *who, flash_evaluator **out,
                                                                        flash_error *err);
void flash_evaluator_close(flash_evaluator *e);
/* The `n` key. */
long flash_evaluator_n(const flash_evaluator *e);
/* The evaluator's classes (out_dim). */
int flash_evaluator_classes(const flash_evaluator *e);
/* Checks samples against the evaluator's input shape; returns the count to
 * use: min(n key, samples). */
flash_status flash_evaluator_check(const flash_evaluator *e,
                                                                         const flash_tensor *samples, long *n,
                                                                         flash_error *err);
/* x (n, shape...) on the host -> features (n, *dim) (malloc'd into *feats)
 * and/or predicted classes pred (n) (either may be NULL). */
flash_status flash_evaluator_run(flash_evaluator *e, const float *x, long n,
                                                                       float **feats, int *dim, int *pred,
                                                                       flash_error *err);
/* Adds name + the suffix key's text to out. */
void flash_evaluator_result(const flash_evaluator *e, flash_metric_result *out, const char *name, double value);
/* Adds name + the suffix key's text + tail to out: an interval's bounds
 * beside the value they bound (fd_b_lo beside fd_b). */
void flash_evaluator_result_tail(const flash_evaluator *e, flash_metric_result *out, const char *name,
                                 const char *tail, double value);
/* The reference split's labels (m), after flash_evaluator_reference; NULL
 * when its dataset has none. Owned by the cache. */
const int *flash_evaluator_reference_labels(flash_evaluator *e);
/* Features (*m, *dim) of the reference split (owned by the process-wide
 * cache: do not free). */
flash_status flash_evaluator_reference(flash_evaluator *e, const float **feats,
                                                                             long *m, int *dim, flash_error *err);

#endif
