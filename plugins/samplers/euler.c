/* `euler`: Euler's method on the probability-flow ODE in the VE variable
 * x~ = x_t / alpha_t with sigma~ = sigma_t / alpha_t (Karras et al. 2022,
 * Algorithm 1 without churn), as diffusers' EulerDiscreteScheduler:
 *   x~_{t'} = x~_t + (sigma~_{t'} - sigma~_t) eps-hat.
 * Substituting x~_t = x0-hat + sigma~_t eps-hat gives x~_{t'} = x0-hat +
 * sigma~_{t'} eps-hat, i.e. in the VP variable exactly Imagine Flash eq. (4):
 * the update is DDIM's on EulerDiscrete's timesteps (linspace not rounded,
 * fractional timesteps interpolated in sigma~ by the schedule) ending at
 * sigma = 0. The start is x_T = x~_T alpha_T, the noise itself. */
#include <stdlib.h>

#include "samplers.h"

typedef struct euler {
    flash_sampler_opts o;
} euler;

static const char *const keys[] = {FLASH_SAMPLER_KEYS, NULL};

static flash_status euler_create(const flash_cfg *cfg, flash_env *env, void **self, flash_error *err) {
    (void)env;
    return flash_sampler_alloc(cfg, "euler", sizeof(euler), self, err);
}

static flash_tensor *euler_sample(void *self, flash_ctx *c, const flash_sample_request *req) {
    return flash_ddim_trajectory(c, req, &((euler *)self)->o, FLASH_GRID_EULER, 1.0, 0.0, 0.0, NULL);
}

FLASH_SAMPLER(flash_sampler_euler, "euler",
              "Euler on the PF-ODE in sigma space, as diffusers' EulerDiscrete",
              keys, euler_create, euler_sample, FLASH_GRID_EULER)
