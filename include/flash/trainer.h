/* The training loop behind `flash train` and `flash distill`, the same
 * for every method: the strategy (strategy.h) is the only difference.
 *
 * A pipeline names a `strategy:` and, as the strategy needs them, a
 * `dataset:`, a `schedule:` and the models the strategy builds. The loop
 * owns the rest:
 *
 *   - data: flash_run_batch hands out batches of the training split in an
 *     epoch order of its own RNG stream of the run's seed, so a resumed run
 *     draws the same batches; flash_run_draw draws examples at random from
 *     the strategy's stream;
 *   - Adam or AdamW with bias correction, linear warmup then a constant or
 *     cosine learning rate, global gradient-norm clipping, an EMA of the
 *     weights (the EMA is what samplers use), all in one update step: the
 *     one place where a step's gradients are complete before the optimiser
 *     uses them;
 *   - checkpoints (flash_checkpoint_save: weights, EMA, Adam moments, step,
 *     the strategy's RNG, the resolved config) every ckpt_every steps and at
 *     the end, to RUN_DIR/checkpoint.safetensors, written atomically, with
 *     the strategy's own parameter blocks (flash_run_track) beside it;
 *   - snapshots: at each step of train.snapshots, the trained parameters
 *     and their EMA (what a sampler uses, as from the final checkpoint;
 *     no optimiser state) to RUN_DIR/snapshot_<step>.safetensors, written
 *     atomically and kept, so one run gives the student at several
 *     training budgets (`snapshot:` of a `flash run` variant). A resumed
 *     run writes the same bytes as an uninterrupted one; the snapshots at
 *     or before the step it resumes from are the ones already written;
 *   - resume: load that checkpoint, restore the RNG and the data order and
 *     continue; with the same thread count the continued run is bit for bit
 *     the uninterrupted one (RUN_DIR/metrics.jsonl is cut back to the
 *     checkpoint's step first, so the curve has no duplicate steps);
 *   - a guard that stops at the first non-finite loss or gradient with a
 *     message naming the step, leaving the last good checkpoint in place;
 *   - a progress line on stderr and JSONL metrics in RUN_DIR/metrics.jsonl:
 *     {"step", "loss", "loss_avg", "lr", "grad_norm", "step_s", ...strategy stats};
 *   - for strategies that evaluate (FLASH_STRATEGY_EVALUATES), evaluation
 *     on the test split every eval_every steps and at the end ("test_loss"
 *     and "test_<stat>" lines), without gradients and from its own RNG
 *     stream, so it never changes the training run.
 *
 * YAML: where the contexts and parameters live is the pipeline's top-level
 * `device: cpu | cuda` (default cpu); the loop's settings are the `train:`
 * section (defaults shown):
 *
 *   train:
 *     steps: 1000          batch_size: 64
 *     optimizer: adam      # or adamw (decoupled weight decay)
 *     lr: 2.0e-4           beta1: 0.9   beta2: 0.999   eps: 1.0e-8
 *     weight_decay: 0.0
 *     warmup_steps: 0      lr_schedule: constant   # or cosine
 *     min_lr: 0.0          # the cosine schedule's floor
 *     grad_clip: 1.0       # 0: measure only
 *     ema_decay: 0.999     # 0: no EMA
 *     ckpt_every: 1000     log_every: 50
 *     eval_every: 0        eval_batches: 0   # 0 batches: the whole test split
 *     snapshots: []        # steps, increasing, each <= steps: [500, 1000, 2000]
 */
#ifndef FLASH_TRAINER_H
#define FLASH_TRAINER_H

#include "flash/flash.h"

#ifdef __cplusplus
extern "C" {
#endif

#define FLASH_TRAIN_MAX_SNAPSHOTS 32

typedef enum flash_lr_schedule { FLASH_LR_CONSTANT = 0, FLASH_LR_COSINE } flash_lr_schedule;

typedef struct flash_train_config {
    int64_t steps;
    int batch_size;
    flash_adam adam;         /* lr is the peak rate; weight_decay > 0 with optimizer adamw only */
    flash_lr_schedule lr_schedule;
    int64_t warmup_steps;
    float min_lr;
    double grad_clip;
    float ema_decay;
    int64_t ckpt_every, log_every, eval_every, eval_batches;
    int64_t snapshots[FLASH_TRAIN_MAX_SNAPSHOTS]; /* increasing, in [1, steps] */
    int n_snapshots;
} flash_train_config;

/* Reads the `train:` map (NULL: all defaults); unknown keys are errors. */
FLASH_EXPORT flash_status flash_train_config_read(const flash_cfg *train, flash_train_config *out, flash_error *err);
/* The learning rate at step (1-based): linear warmup from lr/warmup to lr,
 * then constant, or cosine from lr down to min_lr at the last step. */
FLASH_EXPORT float flash_train_lr_at(const flash_train_config *tc, int64_t step);
typedef struct flash_train_opts {
    uint32_t size;             /* sizeof(flash_train_opts) of the caller */
    const flash_cfg *root;     /* the resolved pipeline */
    flash_registry *registry;  /* plugins loaded */
    const char *run_dir;       /* created if missing (flash_train_open: may be NULL, nothing is written) */
    bool resume;               /* continue from RUN_DIR/checkpoint.safetensors */
    bool progress;             /* draw the progress line on stderr */
    int64_t stop_after;        /* > 0: stop after this iteration, with a checkpoint (a planned interruption) */
    const char *command;       /* names the run in messages ("flash distill"); NULL: "flash train" */
} flash_train_opts;

/* Trains to train.steps. An existing checkpoint without resume is an error
 * (FLASH_ERR_USAGE); the guard stopping the run is FLASH_ERR_RUNTIME with
 * a message naming the step. */
FLASH_EXPORT flash_status flash_train_run(const flash_train_opts *opts, flash_error *err);
/* flash distill's entry: the same loop, named "flash distill" in messages. */
typedef flash_train_opts flash_distill_opts;
FLASH_EXPORT flash_status flash_distill_run(const flash_distill_opts *opts, flash_error *err);

/* The run alone, built from the pipeline as flash_train_run builds it
 * (strategy created, trained parameters on the device), for tools and
 * tests that drive iterations themselves: nothing is read or written
 * unless opts->run_dir is set. opts is borrowed until close. */
FLASH_EXPORT flash_status flash_train_open(const flash_train_opts *opts, flash_run **out, flash_error *err);
FLASH_EXPORT void flash_train_close(flash_run *run); /* NULL-safe */
/* The pipeline's strategy instance. */
FLASH_EXPORT flash_instance *flash_run_strategy(flash_run *run);

/* Loads a model slot's weights from the pipeline's `<slot>_checkpoint` key
 * (a path as given, else relative to the config file) into model, and puts
 * its EMA weights in place when the checkpoint has them (`<slot>_weights:
 * ema`, the default; `raw` keeps the trained weights). No key: nothing to
 * load (an analytic model); a model with parameters and no key is an error. */
FLASH_EXPORT flash_status flash_slot_load(const flash_cfg *root, const char *slot, flash_instance *model,
                                          flash_error *err);
/* flash_slot_load(root, "teacher", model, err). */
FLASH_EXPORT flash_status flash_teacher_load(const flash_cfg *root, flash_instance *model, flash_error *err);

/* File names inside a run directory. */
#define FLASH_RUN_CHECKPOINT "checkpoint.safetensors"
#define FLASH_RUN_METRICS "metrics.jsonl"
#define FLASH_RUN_CONFIG "config.yaml"
/* RUN_DIR/snapshot_<step>.safetensors: printf with the step as long long */
#define FLASH_RUN_SNAPSHOT "snapshot_%lld.safetensors"

#ifdef __cplusplus
}
#endif
#endif
