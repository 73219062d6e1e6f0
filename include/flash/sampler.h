/* Samplers (kind FLASH_KIND_SAMPLER): solvers of the probability-flow ODE
 * (Imagine Flash eq. 2-4) and multistep consistency sampling.
 *
 * A sampler is configured with its timesteps, guidance scale and noise
 * correction (the keys of FLASH_SAMPLER_KEYS in diffusion.h plus its own) and
 * runs a trajectory for a request: from x at its first timestep down to clean
 * data, or to a stop timestep. Model, schedule and guidance live in the
 * denoiser (diffusion.h); the sampler only combines (x0-hat, eps-hat).
 *
 *   flash_sample_request rq = {.size = sizeof rq, .den = &den, .x = xT, .labels = y, .stop_at = -1};
 *   flash_tensor *x0 = FLASH_API(&sampler, flash_sampler_api)->sample(sampler.self, ctx, &rq);
 *
 * Samplers run under whatever grad mode the caller set: a rollout under
 * stop-gradient (backward distillation) turns grad mode off first.
 */
#ifndef FLASH_SAMPLER_H
#define FLASH_SAMPLER_H

#include <stdbool.h>

#ifdef __cplusplus
extern "C" {
#endif

struct flash_denoiser;

typedef struct flash_sample_request {
    uint32_t size;              /* sizeof(flash_sample_request) of the caller */
    struct flash_denoiser *den; /* model + schedule; counts NFEs */
    flash_tensor *x;            /* (N, ...) the start: the noise x_T unless mid_trajectory */
    const int *labels;          /* (N) class labels, or NULL: unconditional */
    double stop_at;             /* < 0: run to clean data; else stop at this timestep and return x_t */
    /* optional: evaluation timesteps (strictly decreasing) replacing the
     * sampler's own; NULL to use the configured ones */
    const double *timesteps;
    int n_timesteps;
    /* x is an intermediate x_t at the first timestep, not the starting noise:
     * no noise correction (eq. 9) at the first step */
    bool mid_trajectory;
    flash_rng *rng;             /* stochastic samplers (ddim eta > 0, those that re-noise); NULL: the sampler's own stream */
    /* appended in ABI 1.2 (read up to size): (N) guidance scales, one per
     * sample, replacing the sampler's guidance_scale (a guidance-conditioned
     * student rolled out at the scales it trains at); NULL: the sampler's */
    const float *guidance;
} flash_sample_request;

typedef struct flash_sampler_api {
    flash_component head;
    /* Returns the final sample (arena tensor) or NULL with the context's
     * error set. */
    flash_tensor *(*sample)(void *self, flash_ctx *c, const flash_sample_request *req);
    /* The evaluation timesteps for a schedule of T training steps (descending,
     * at most max); returns their count, or -1 when they cannot be laid out. */
    int (*timesteps)(void *self, int T, double *out, int max);
} flash_sampler_api;

#ifdef __cplusplus
}
#endif
#endif
