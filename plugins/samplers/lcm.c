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

static void lcm_destroy(void *self) { free(self); }

static flash_status lcm_create(const flash_cfg *cfg, flash_env *env, void **self, flash_error *err) {
    lcm *s = calloc(1, sizeof *s);
    if (!s) return flash_error_set(err, FLASH_ERR_NOMEM, "sampler 'lcm': out of memory");
    flash_status st;
    if ((st = flash_sampler_opts_parse(cfg, "lcm", &s->o, err)) ||
        (st = flash_cfg_bool(cfg, "boundary_condition", true, &s->boundary, err))) {
        free(s);
        return st;
    }
    flash_sampler_seed(&s->rng, env, 0x1c3);
    *self = s;
    return FLASH_OK;
}

static flash_tensor *lcm_sample(void *self, flash_ctx *c, const flash_sample_request *req) {
    lcm *s = self;
    flash_plan *p = malloc(sizeof *p);
    if (!p) {
        flash_ctx_fail(c, "sampler 'lcm': out of memory");
        return NULL;
    }
    flash_tensor *x = NULL;
    if (flash_plan_make(p, req, &s->o, FLASH_GRID_DDIM, 1.0, 0.0, c)) goto done;
    x = req->x;
    for (int i = 0; i < p->n; i++) {
        flash_denoised d;
        if (flash_plan_denoise(p, c, i, x, &d)) {
            x = NULL;
            goto done;
        }
        flash_tensor *f = d.x0;
        if (s->boundary) {
            double cs, co;
            consistency_boundary(p->t[i], &cs, &co);
            f = flash_lincomb(c, cs, x, co, d.x0);
        }
        if (p->sigma[i + 1] > 0.0) {
            flash_tensor *z = flash_randn(c, req->rng ? req->rng : &s->rng, x->ndim, x->shape);
            x = flash_lincomb(c, p->alpha[i + 1], f, p->sigma[i + 1], z);
        } else {
            x = f;
        }
        if (!x) goto done;
    }
done:
    free(p);
    return flash_ctx_ok(c) ? x : NULL;
}

static int lcm_timesteps(void *self, int T, double *out, int max) {
    return flash_sampler_timesteps(&((lcm *)self)->o, FLASH_GRID_DDIM, T, out, max);
}

static const flash_sampler_api flash_sampler_lcm = {
    .head = {sizeof flash_sampler_lcm, FLASH_KIND_SAMPLER, "lcm",
             "multistep consistency sampling (LCM): predict x0, re-noise to the next timestep", keys, lcm_create,
             lcm_destroy},
    .sample = lcm_sample,
    .timesteps = lcm_timesteps,
};

FLASH_COMPONENT(flash_sampler_lcm)
