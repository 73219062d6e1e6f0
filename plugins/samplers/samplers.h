/* Shared parts of the samplers in this plugin (not a public header). */
#ifndef FLASH_PLUGIN_SAMPLERS_H
#define FLASH_PLUGIN_SAMPLERS_H

#include "flash/diffusion.h"
#include "folder.h"

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
