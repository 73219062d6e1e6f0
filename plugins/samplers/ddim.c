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

void flash_sampler_seed(flash_rng *rng, const flash_env *env, uint64_t stream) {
    flash_rng_seed_stream(rng, env ? env->seed : 0, stream);
}

int flash_sampler_timesteps(const flash_sampler_opts *o, flash_grid grid, int T, double *out, int max) {
    double ts[FLASH_MAX_STEPS];
    int n = 0;
    flash_error e = {0};
    if (T > FLASH_MAX_STEPS || flash_timesteps_select(o, grid, T, ts, &n, &e) || n > max) return -1;
    for (int i = 0; i < n; i++) out[i] = ts[i];
    return n;
}

flash_tensor *flash_ddim_trajectory(flash_ctx *c, const flash_sample_request *req, const flash_sampler_opts *o,
                                    flash_grid grid, double end_alpha, double end_sigma, double eta,
                                    flash_rng *rng) {
    flash_plan *p = malloc(sizeof *p);
    if (!p) {
        flash_ctx_fail(c, "sampler: out of memory");
        return NULL;
    }
    flash_tensor *x = NULL;
    if (flash_plan_make(p, req, o, grid, end_alpha, end_sigma, c)) goto done;
    x = req->x;
    for (int i = 0; i < p->n; i++) {
        flash_denoised d;
        if (flash_plan_denoise(p, c, i, x, &d)) {
            x = NULL;
            goto done;
        }
        const double an = p->alpha[i + 1], sn = p->sigma[i + 1];
        if (eta > 0.0 && sn > 0.0) {
            const double at = p->alpha[i], st = p->sigma[i];
            double var = (sn * sn) / (st * st) * (1.0 - (at * at) / (an * an));
            double s = eta * sqrt(var > 0.0 ? var : 0.0);
            double dir = sn * sn - s * s;
            flash_tensor *z = flash_randn(c, req->rng ? req->rng : rng, x->ndim, x->shape);
            x = flash_add(c, flash_lincomb(c, an, d.x0, sqrt(dir > 0.0 ? dir : 0.0), d.eps), flash_scale(c, z, (float)s));
        } else {
            x = flash_lincomb(c, an, d.x0, sn, d.eps); /* eq. (4) */
        }
        if (!x) goto done;
    }
done:
    free(p);
    return flash_ctx_ok(c) ? x : NULL;
}

static void ddim_destroy(void *self) { free(self); }

static flash_status ddim_create(const flash_cfg *cfg, flash_env *env, void **self, flash_error *err) {
    ddim *s = calloc(1, sizeof *s);
    if (!s) return flash_error_set(err, FLASH_ERR_NOMEM, "sampler 'ddim': out of memory");
    flash_status st;
    if ((st = flash_sampler_opts_parse(cfg, "ddim", &s->o, err)) ||
        (st = flash_cfg_double(cfg, "eta", 0.0, &s->eta, err)) ||
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

static int ddim_timesteps(void *self, int T, double *out, int max) {
    return flash_sampler_timesteps(&((ddim *)self)->o, FLASH_GRID_DDIM, T, out, max);
}

static const flash_sampler_api flash_sampler_ddim = {
    .head = {sizeof flash_sampler_ddim, FLASH_KIND_SAMPLER, "ddim",
             "DDIM (Song et al. 2021; Imagine Flash eq. 4), eta and set_alpha_to_one as diffusers", keys,
             ddim_create, ddim_destroy},
    .sample = ddim_sample,
    .timesteps = ddim_timesteps,
};

FLASH_COMPONENT(flash_sampler_ddim)
