/* The training loop behind `flash train`, independent of what is trained.
 *
 * A pipeline names a dataset, a model, optionally a schedule, and a
 * strategy whose train_step (strategy.h) computes one iteration's loss from
 * a batch of real data. The loop owns the rest:
 *
 *   - data order: flash_batcher over the training split (its own RNG
 *     stream of the run's seed), so a resumed run draws the same batches;
 *   - Adam or AdamW with bias correction, linear warmup then a constant or
 *     cosine learning rate, global gradient-norm clipping, an EMA of the
 *     weights (the EMA is what samplers use);
 *   - checkpoints (flash_checkpoint_save: weights, EMA, Adam moments, step,
 *     the strategy's RNG, the resolved config) every ckpt_every steps and at
 *     the end, to RUN_DIR/checkpoint.safetensors, written atomically;
 *   - resume: load that checkpoint, restore the RNG and the batcher position
 *     and continue; with the same thread count the continued run is bit for
 *     bit the uninterrupted one (RUN_DIR/metrics.jsonl is cut back to the
 *     checkpoint's step first, so the curve has no duplicate steps);
 *   - a guard that stops at the first non-finite loss or gradient with a
 *     message naming the step, leaving the last good checkpoint in place;
 *   - a progress line on stderr and JSONL metrics in RUN_DIR/metrics.jsonl:
 *     {"step", "loss", "lr", "grad_norm", "step_s", ...strategy stats};
 *   - optional evaluation on the test split every eval_every steps and at
 *     the end ("test_loss" and "test_<stat>" lines), run without gradients
 *     and from its own RNG stream, so it never changes the training run.
 *
 * YAML (the `train:` section; defaults shown):
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
 */
#ifndef FLASH_TRAINER_H
#define FLASH_TRAINER_H

#include "flash/flash.h"

#ifdef __cplusplus
extern "C" {
#endif

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
    char device[8];          /* "cpu" (default) or "cuda": where the context and the parameters live */
} flash_train_config;

/* Reads the `train:` map (NULL: all defaults); unknown keys are errors. */
FLASH_EXPORT flash_status flash_train_config_read(const flash_cfg *train, flash_train_config *out, flash_error *err);
/* The learning rate at step (1-based): linear warmup from lr/warmup to lr,
 * then constant, or cosine from lr down to min_lr at the last step. */
FLASH_EXPORT float flash_train_lr_at(const flash_train_config *tc, int64_t step);
/* One optimiser update from the scalar loss of a step, shared by flash train
 * and flash distill so both apply the same guard, clip, scheduled Adam step
 * and EMA: reads the loss (through flash_tensor_to_host, so it works on any
 * device), zeroes the gradients, backpropagates, clips to tc->grad_clip,
 * steps Adam at flash_train_lr_at(tc, step) and updates the EMA when
 * tc->ema_decay > 0. A non-finite loss or gradient stops before any
 * parameter changes: the call returns FLASH_OK with *bad naming what ("the
 * loss" or "the gradient norm") and *loss_value or *grad_norm holding the
 * offending value, so the caller reports it its own way; otherwise *bad is
 * NULL. A backward failure is prefixed "<who>: step N: backward". On success
 * *loss_value, *grad_norm (before clipping) and *lr hold the step's values. */
FLASH_EXPORT flash_status flash_train_update(flash_ctx *c, flash_params *P, flash_tensor *loss,
                                             const flash_train_config *tc, int64_t step, const char *who,
                                             double *loss_value, double *grad_norm, double *lr, const char **bad,
                                             flash_error *err);

typedef struct flash_train_opts {
    uint32_t size;             /* sizeof(flash_train_opts) of the caller */
    const flash_cfg *root;     /* the resolved pipeline (dataset, model, schedule, strategy, train, seed) */
    flash_registry *registry;  /* plugins loaded */
    const char *run_dir;       /* created if missing */
    bool resume;               /* continue from RUN_DIR/checkpoint.safetensors */
    bool progress;             /* draw the progress line on stderr */
} flash_train_opts;

/* Trains to train.steps. Returns FLASH_ERR_RUNTIME with a message naming
 * the step when the guard stops the run. */
FLASH_EXPORT flash_status flash_train_run(const flash_train_opts *opts, flash_error *err);

/* File names inside a run directory. */
#define FLASH_RUN_CHECKPOINT "checkpoint.safetensors"
#define FLASH_RUN_METRICS "metrics.jsonl"
#define FLASH_RUN_CONFIG "config.yaml"

#ifdef __cplusplus
}
#endif
#endif
