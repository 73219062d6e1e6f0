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

static void euler_destroy(void *self) { free(self); }

static flash_status euler_create(const flash_cfg *cfg, flash_env *env, void **self, flash_error *err) {
    (void)env;
    euler *s = calloc(1, sizeof *s);
    if (!s) return flash_error_set(err, FLASH_ERR_NOMEM, "sampler 'euler': out of memory");
    flash_status st = flash_sampler_opts_parse(cfg, "euler", &s->o, err);
    if (st) {
        free(s);
        return st;
    }
    *self = s;
    return FLASH_OK;
}

static flash_tensor *euler_sample(void *self, flash_ctx *c, const flash_sample_request *req) {
    return flash_ddim_trajectory(c, req, &((euler *)self)->o, FLASH_GRID_EULER, 1.0, 0.0, 0.0, NULL);
}

static int euler_timesteps(void *self, int T, double *out, int max) {
    return flash_sampler_timesteps(&((euler *)self)->o, FLASH_GRID_EULER, T, out, max);
}

static const flash_sampler_api flash_sampler_euler = {
    .head = {sizeof flash_sampler_euler, FLASH_KIND_SAMPLER, "euler",
             "Euler on the PF-ODE in sigma space, as diffusers' EulerDiscrete", keys, euler_create, euler_destroy},
    .sample = euler_sample,
    .timesteps = euler_timesteps,
};

FLASH_COMPONENT(flash_sampler_euler)
