/* Samplers (kind FLASH_KIND_SAMPLER). The diffusion core owns this header:
 * see include/flash/diffusion.h for the denoiser (model + schedule + CFG +
 * prediction-type conversion) that samplers call. */
#ifndef FLASH_SAMPLER_H
#define FLASH_SAMPLER_H

#ifdef __cplusplus
extern "C" {
#endif

struct flash_denoiser;

typedef struct flash_sample_request {
    uint32_t size;                  /* sizeof(flash_sample_request) of the caller */
    struct flash_denoiser *den;     /* model + schedule + guidance */
    flash_tensor *x;                /* the starting point x at the first timestep */
    const int *labels;              /* (N) or NULL */
    int stop_at;                    /* -1: run to x0; else stop at this timestep (returns x_t) */
} flash_sample_request;

typedef struct flash_sampler_api {
    flash_component head;
    /* Returns the final sample (arena tensor) or NULL with the context's error set. */
    flash_tensor *(*sample)(void *self, flash_ctx *c, const flash_sample_request *req);
} flash_sampler_api;

#ifdef __cplusplus
}
#endif
#endif
