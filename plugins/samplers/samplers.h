/* Shared parts of the samplers in this plugin (not a public header). */
#ifndef FLASH_PLUGIN_SAMPLERS_H
#define FLASH_PLUGIN_SAMPLERS_H

#include <stddef.h>
#include <stdlib.h>

#include "flash/diffusion.h"
#include "folder.h"

/* One update of a sampler: from x at timestep p->t[i], with the denoiser's
 * prediction d there, to x at the next point (p->alpha[i + 1],
 * p->sigma[i + 1]). Returns NULL after a context error. */
typedef flash_tensor *(*flash_sampler_step)(void *state, flash_ctx *c, const flash_plan *p, int i, flash_tensor *x,
                                            const flash_denoised *d);

/* Builds the request's plan (flash_plan_make) and walks it, denoising at
 * every timestep and handing the prediction to `step`: the loop every
 * sampler shares, so the update rule is all a sampler writes. */
flash_tensor *flash_sampler_walk(flash_ctx *c, const flash_sample_request *req, const flash_sampler_opts *o,
                                 flash_grid grid, double end_alpha, double end_sigma, flash_sampler_step step,
                                 void *state);

/* Allocates a sampler's state of `size` bytes, zeroed, whose first member
 * is its flash_sampler_opts, and reads the shared keys into it; on failure
 * nothing stays allocated. */
flash_status flash_sampler_alloc(const flash_cfg *cfg, const char *name, size_t size, void **out, flash_error *err);

/* Defines and registers a sampler's table `var`: the state is freed by
 * destroy and starts with its flash_sampler_opts, so the `timesteps` entry
 * is the options' on `grid` for every sampler. */
#define FLASH_SAMPLER(var, name, summary, keys, create, sample_fn, grid)                                    \
    static int var##_timesteps(void *self, int T, double *out, int max)                                     \
    {                                                                                                        \
        return flash_sampler_timesteps(self, grid, T, out, max);                                            \
    }                                                                                                        \
    static const flash_sampler_api var = {                                                                   \
        .head = {sizeof var, FLASH_KIND_SAMPLER, name, summary, keys, create, free},                        \
        .sample = sample_fn,                                                                                 \
        .timesteps = var##_timesteps,                                                                        \
    };                                                                                                       \
    FLASH_COMPONENT(var)

/* The eq. (4) trajectory (DDIM; with eta > 0 the DDIM-eta noise of Song et
 * al. 2021 eq. 12), shared by ddim and euler. */
flash_tensor *flash_ddim_trajectory(flash_ctx *c, const flash_sample_request *req, const flash_sampler_opts *o,
                                    flash_grid grid, double end_alpha, double end_sigma, double eta,
                                    flash_rng *rng);

/* The sampler's timesteps for the sampler API's `timesteps` member. */
int flash_sampler_timesteps(const flash_sampler_opts *o, flash_grid grid, int T, double *out, int max);

/* The random stream of a stochastic sampler, from the run's seed. */
void flash_sampler_seed(flash_rng *rng, const flash_env *env, uint64_t stream);

#endif
