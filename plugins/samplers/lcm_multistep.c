/* `lcm`: multistep consistency sampling (Song et al. 2023, "Consistency
 * Models", Algorithm 1; Luo et al. 2023, "Latent Consistency Models", as
 * diffusers' LCMScheduler): at each timestep predict clean data with the
 * consistency function f(x_t, t) = c_skip(t) x_t + c_out(t) x0-hat (the
 * boundary condition, consistency_boundary; `boundary_condition: false` uses
 * x0-hat alone), then re-noise it to the next timestep with fresh noise:
 *   x_{t'} = alpha_{t'} f + sigma_{t'} z.
 * The last step returns f itself (or, with a stop, the re-noised x at the
 * stop timestep). The LCM baseline's sampler. */
#include <stdlib.h>

#include "consistency.h"
#include "samplers.h"

typedef struct lcm {
    flash_sampler_opts o;
    bool boundary;
    flash_rng rng;
} lcm;

static const char *const keys[] = {FLASH_SAMPLER_KEYS, "boundary_condition", NULL};

static flash_status lcm_create(const flash_cfg *cfg, flash_env *env, void **self, flash_error *err) {
    void *mem;
    flash_status st = flash_sampler_alloc(cfg, "lcm", sizeof(lcm), &mem, err);
    if (st) return st;
    lcm *s = mem;
    if ((st = flash_cfg_bool(cfg, "boundary_condition", true, &s->boundary, err))) {
        free(s);
        return st;
    }
    flash_sampler_seed(&s->rng, env, 0x1c3);
    *self = s;
    return FLASH_OK;
}

/* The sampler and the request its noise may come from. */
typedef struct lcm_walk {
    lcm *s;
    const flash_sample_request *req;
} lcm_walk;

static flash_tensor *lcm_step(void *state, flash_ctx *c, const flash_plan *p, int i, flash_tensor *x,
                              const flash_denoised *d) {
    const lcm_walk *w = state;
    flash_tensor *f = d->x0;
    if (w->s->boundary) {
        double cs, co;
        consistency_boundary(p->t[i], &cs, &co);
        f = flash_lincomb(c, cs, x, co, d->x0);
    }
    if (!(p->sigma[i + 1] > 0.0)) return f;
    flash_tensor *z = flash_randn(c, w->req->rng ? w->req->rng : &w->s->rng, x->ndim, x->shape);
    return flash_lincomb(c, p->alpha[i + 1], f, p->sigma[i + 1], z);
}

static flash_tensor *lcm_sample(void *self, flash_ctx *c, const flash_sample_request *req) {
    lcm_walk w = {self, req};
    return flash_sampler_walk(c, req, &w.s->o, FLASH_GRID_DDIM, 1.0, 0.0, lcm_step, &w);
}

FLASH_SAMPLER(flash_sampler_lcm, "lcm",
              "multistep consistency sampling (LCM): predict x0, re-noise to the next timestep",
              keys, lcm_create, lcm_sample, FLASH_GRID_DDIM)
