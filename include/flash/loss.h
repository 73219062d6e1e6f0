/* Losses (kind FLASH_KIND_LOSS). A loss takes the student's prediction and
 * what it is compared against and returns a scalar on the autograd tape;
 * pipelines sum several losses with weights from YAML. */
#ifndef FLASH_LOSS_H
#define FLASH_LOSS_H

#ifdef __cplusplus
extern "C" {
#endif

typedef struct flash_loss_in {
    uint32_t size;           /* sizeof(flash_loss_in) of the caller */
    flash_tensor *pred;      /* the student's x0-hat (or the trained model's output) */
    flash_tensor *target;    /* the plain target, may be NULL */
    flash_tensor *x_t;       /* the student's input, may be NULL */
    const flash_cond *cond;  /* timesteps and labels of the batch, may be NULL */
    flash_tensor *real;      /* a batch of real data, may be NULL */
    void *distill;           /* the distillation context (strategy.h) for losses that ask the teacher */
    /* per-sample weights (N) of the regression against target (a
     * strategy's c(t) or SNR weighting), may be NULL; read it only when
     * size covers it */
    flash_tensor *sample_weight;
} flash_loss_in;

typedef struct flash_loss_api {
    flash_component head;
    flash_tensor *(*compute)(void *self, flash_ctx *c, const flash_loss_in *in);
    /* optional: a loss with its own trained parts (a discriminator) updates
     * them here, between student steps. */
    flash_status (*update)(void *self, flash_ctx *c, const flash_loss_in *in, int64_t step, flash_error *err);
    /* optional: its own parameters, for checkpoints */
    flash_params *(*params)(void *self);
} flash_loss_api;

#ifdef __cplusplus
}
#endif
#endif
