/* `ddim`: Song et al. 2021, "Denoising Diffusion Implicit Models", as
 * diffusers' DDIMScheduler. Imagine Flash eq. (4):
 *   x_{t'} = alpha_{t'} x0-hat + sqrt(sigma_{t'}^2 - s^2) eps-hat + s z,
 *   s = eta sigma_{t'}/sigma_t sqrt(1 - alpha_t^2 / alpha_{t'}^2)   (DDIM eq. 16)
 * with eta = 0 the deterministic first-order solver of the PF-ODE (eq. 2).
 * After the last timestep the trajectory ends at alphas_cumprod = 1
 * (set_alpha_to_one) or at alphas_cumprod[0], as diffusers' final_alpha_cumprod.
 *
 * Difference from diffusers: a step goes to the next timestep of the list;
 * diffusers steps to t - T // N, which is the same for leading and trailing
 * spacing when N divides T but not for linspace or explicit lists. */
#include <math.h>
#include <stdlib.h>

#include "samplers.h"

typedef struct ddim {
    flash_sampler_opts o;
    double eta;
    bool set_alpha_to_one;
    flash_rng rng;
} ddim;

static const char *const keys[] = {FLASH_SAMPLER_KEYS, "eta", "set_alpha_to_one", NULL};

/* What a DDIM step needs besides the plan. */
typedef struct ddim_walk {
    const flash_sample_request *req;
    double eta;
    flash_rng *rng;
} ddim_walk;

static flash_tensor *ddim_step(void *state, flash_ctx *c, const flash_plan *p, int i, flash_tensor *x,
                               const flash_denoised *d) {
    const ddim_walk *w = state;
    const double an = p->alpha[i + 1], sn = p->sigma[i + 1];
    if (w->eta > 0.0 && sn > 0.0) {
        const double at = p->alpha[i], st = p->sigma[i];
        double var = (sn * sn) / (st * st) * (1.0 - (at * at) / (an * an));
        double s = w->eta * sqrt(var > 0.0 ? var : 0.0);
        double dir = sn * sn - s * s;
        flash_tensor *z = flash_randn(c, w->req->rng ? w->req->rng : w->rng, x->ndim, x->shape);
        return flash_add(c, flash_lincomb(c, an, d->x0, sqrt(dir > 0.0 ? dir : 0.0), d->eps),
                         flash_scale(c, z, (float)s));
    }
    return flash_lincomb(c, an, d->x0, sn, d->eps); /* eq. (4) */
}

flash_tensor *flash_ddim_trajectory(flash_ctx *c, const flash_sample_request *req, const flash_sampler_opts *o,
                                    flash_grid grid, double end_alpha, double end_sigma, double eta,
                                    flash_rng *rng) {
    ddim_walk w = {req, eta, rng};
    return flash_sampler_walk(c, req, o, grid, end_alpha, end_sigma, ddim_step, &w);
}

static flash_status ddim_create(const flash_cfg *cfg, flash_env *env, void **self, flash_error *err) {
    void *mem;
    flash_status st = flash_sampler_alloc(cfg, "ddim", sizeof(ddim), &mem, err);
    if (st) return st;
    ddim *s = mem;
    if ((st = flash_cfg_double(cfg, "eta", 0.0, &s->eta, err)) ||
        (st = flash_cfg_bool(cfg, "set_alpha_to_one", true, &s->set_alpha_to_one, err))) {
        free(s);
        return st;
    }
    if (!(s->eta >= 0.0 && s->eta <= 1.0)) {
        free(s);
        return flash_cfg_error(flash_cfg_get(cfg, "eta"), err, "sampler 'ddim': eta must be in [0, 1]");
    }
    flash_sampler_seed(&s->rng, env, 0xdd1);
    *self = s;
    return FLASH_OK;
}

static flash_tensor *ddim_sample(void *self, flash_ctx *c, const flash_sample_request *req) {
    ddim *s = self;
    double ea = 1.0, es = 0.0;
    if (!s->set_alpha_to_one) {
        if (!req || !req->den) {
            flash_ctx_fail(c, "sampler 'ddim': incomplete sample request");
            return NULL;
        }
        flash_schedule_eval(req->den->schedule, 0.0, &ea, &es);
    }
    return flash_ddim_trajectory(c, req, &s->o, FLASH_GRID_DDIM, ea, es, s->eta, &s->rng);
}

FLASH_SAMPLER(flash_sampler_ddim, "ddim",
              "DDIM (Song et al. 2021; Imagine Flash eq. 4), eta and set_alpha_to_one as diffusers",
              keys, ddim_create, ddim_sample, FLASH_GRID_DDIM)
