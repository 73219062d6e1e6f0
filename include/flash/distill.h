/* The distillation loop behind `flash distill` and `flash run`.
 *
 * A distillation pipeline names, besides the `seed`:
 *
 *   schedule:  {plugin: discrete, ...}          the teacher's noise schedule
 *   teacher:   {plugin: gmm | unet, ...}        the model Phi
 *   teacher_checkpoint: runs/teacher/checkpoint.safetensors   (networks; EMA weights unless
 *                                                               teacher_weights: raw)
 *   student:   {plugin: mlp | unet, ...}        the model Theta, initialised from the teacher where
 *                                               names and shapes allow (Imagine Flash section 5.1)
 *   sampler:   {plugin: ddim, timesteps: [999, 750, 500], noise_correction: true}
 *   strategy:  {plugin: backward | forward | progressive | lcm | add, ...}
 *   target:    {k: 8, guidance_scale: 1.0, gamma: paper}   (strategy.h)
 *   losses:    [{plugin: reconstruction, weight: 1.0}, {plugin: adversarial, ...}]
 *   dataset:   {plugin: ...}                    real data (forward-noised inputs, discriminators)
 *   distill:   the keys of trainer.h's `train:` section (steps, batch_size, lr, ema_decay,
 *              grad_clip, ckpt_every, log_every, ..., device: cpu | cuda: where the context,
 *              the teacher, the student and the components' own contexts live;
 *              checkpoints are written from the host either way)
 *
 * The loop: each iteration resets the context, calls the strategy's step
 * (which builds the inputs, asks the shared target operator and sums the
 * losses), stops at a non-finite loss or gradient, clips, takes an Adam
 * step on the student, updates its EMA, then lets each loss update its own
 * parts (a discriminator, alternating with the student). Checkpoints go to
 * RUN_DIR/checkpoint.safetensors (the student: weights, EMA, Adam moments,
 * step, the run's RNG, the resolved config), RUN_DIR/loss<i>.safetensors
 * (a loss's own parameters) and RUN_DIR/clone<i>.safetensors (a strategy's
 * frozen or EMA copies of the student); resume restores all of them, and a
 * resumed run continues bit for bit. Real data is drawn at random indices
 * from the run's RNG, so a resume needs no batcher position.
 */
#ifndef FLASH_DISTILL_H
#define FLASH_DISTILL_H

#include "flash/diffusion.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct flash_distill_opts {
    uint32_t size;            /* sizeof(flash_distill_opts) of the caller */
    const flash_cfg *root;    /* the resolved pipeline */
    flash_registry *registry; /* plugins loaded */
    const char *run_dir;      /* created if missing (flash_distill_open: may be NULL) */
    bool resume;              /* continue from RUN_DIR's checkpoint */
    bool progress;            /* draw the progress line on stderr */
    int64_t stop_after;       /* > 0: stop after this iteration, with a checkpoint (a planned interruption) */
} flash_distill_opts;

/* Distils to distill.steps. An existing checkpoint without resume is an
 * error (FLASH_ERR_USAGE). */
FLASH_EXPORT flash_status flash_distill_run(const flash_distill_opts *o, flash_error *err);

/* The context alone, built from the pipeline as flash_distill_run builds
 * it, for tools and tests that drive iterations themselves (run_dir may be
 * NULL: nothing is read or written). o is borrowed until close. */
FLASH_EXPORT flash_status flash_distill_open(const flash_distill_opts *o, flash_distill **out, flash_error *err);
FLASH_EXPORT void flash_distill_close(flash_distill *d); /* NULL-safe */
/* The pipeline's strategy instance of an open context. */
FLASH_EXPORT flash_instance *flash_distill_strategy(flash_distill *d);

/* Loads a teacher's weights from the pipeline's `teacher_checkpoint` (a path
 * as given, else relative to the config file) into model, and puts its EMA
 * weights in place when the checkpoint has them (`teacher_weights: ema`, the
 * default; `raw` keeps the trained weights). No key: nothing to load (an
 * analytic teacher). A model with parameters and no key is an error. */
FLASH_EXPORT flash_status flash_teacher_load(const flash_cfg *root, flash_instance *model, flash_error *err);

#ifdef __cplusplus
}
#endif
#endif
