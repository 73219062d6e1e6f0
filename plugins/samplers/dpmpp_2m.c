/* `dpmpp_2m`: DPM-Solver++(2M), Lu et al. 2022, "DPM-Solver++: Fast Solver
 * for Guided Sampling of Diffusion Probabilistic Models", Algorithm 2
 * (multistep, order 2, data prediction, midpoint form), as diffusers'
 * DPMSolverMultistepScheduler with algorithm_type dpmsolver++, solver_order 2,
 * solver_type midpoint, final_sigmas_type zero. The paper's teacher baseline
 * ("DPM++, 25 steps").
 *
 * With lambda = log(alpha / sigma), h = lambda_{t'} - lambda_t, r = h_prev / h:
 *   x_{t'} = sigma_{t'}/sigma_t x_t - alpha_{t'} (e^{-h} - 1) (D0 + (D0 - D_prev) / (2 r))
 * Since x_t = alpha_t x0-hat + sigma_t eps-hat, the first two terms equal the
 * DDIM update alpha_{t'} x0-hat + sigma_{t'} eps-hat (Imagine Flash eq. 4),
 * so the step is written as that plus the multistep correction; this is what
 * lets noise correction (eq. 9) act on the first step through eps-hat alone.
 * The first step and the last step to sigma = 0 are first order (diffusers'
 * lower_order_final; a second-order step has h = inf there); a stop at an
 * intermediate timestep keeps second order up to the stop. */
#include <math.h>
#include <stdlib.h>

#include "samplers.h"

typedef struct dpmpp_2m {
    flash_sampler_opts o;
} dpmpp_2m;

static const char *const keys[] = {FLASH_SAMPLER_KEYS, "lower_order_final", NULL};

static flash_status dpmpp_create(const flash_cfg *cfg, flash_env *env, void **self, flash_error *err) {
    (void)env;
    void *mem;
    flash_status st = flash_sampler_alloc(cfg, "dpmpp_2m", sizeof(dpmpp_2m), &mem, err);
    if (st) return st;
    dpmpp_2m *s = mem;
    bool lof = true;
    if ((st = flash_cfg_bool(cfg, "lower_order_final", true, &lof, err))) {
        free(s);
        return st;
    }
    if (!lof) {
        free(s);
        return flash_cfg_error(flash_cfg_get(cfg, "lower_order_final"), err,
                               "sampler 'dpmpp_2m': lower_order_final: false is undefined here: the last step goes "
                               "to sigma = 0, where a second-order step has h = inf");
    }
    *self = s;
    return FLASH_OK;
}

static double log_snr(double a, double s) {
    if (a <= 0.0) return -INFINITY;
    if (s <= 0.0) return INFINITY;
    return log(a) - log(s);
}

/* The multistep memory: the previous step's x0-hat and h. */
typedef struct dpmpp_walk {
    flash_tensor *prev_x0;
    double h_prev;
} dpmpp_walk;

static flash_tensor *dpmpp_step(void *state, flash_ctx *c, const flash_plan *p, int i, flash_tensor *x,
                                const flash_denoised *d) {
    (void)x;
    dpmpp_walk *w = state;
    const double an = p->alpha[i + 1], sn = p->sigma[i + 1];
    const double h = log_snr(an, sn) - log_snr(p->alpha[i], p->sigma[i]);
    const bool first = !w->prev_x0 || (p->to_clean && i == p->n - 1) || !isfinite(h) || !isfinite(w->h_prev);
    flash_tensor *next = flash_lincomb(c, an, d->x0, sn, d->eps);
    if (!first) {
        /* -alpha_{t'} (e^{-h} - 1) (D0 - D_prev) / (2 r), r = h_prev / h */
        double c1 = 0.5 * an * -expm1(-h) * h / w->h_prev;
        next = flash_add(c, next, flash_scale(c, flash_sub(c, d->x0, w->prev_x0), (float)c1));
    }
    w->prev_x0 = d->x0;
    w->h_prev = h;
    return next;
}

static flash_tensor *dpmpp_sample(void *self, flash_ctx *c, const flash_sample_request *req) {
    dpmpp_walk w = {NULL, 0.0};
    return flash_sampler_walk(c, req, &((dpmpp_2m *)self)->o, FLASH_GRID_DPM, 1.0, 0.0, dpmpp_step, &w);
}

FLASH_SAMPLER(flash_sampler_dpmpp_2m, "dpmpp_2m",
              "DPM-Solver++(2M) (Lu et al. 2022), data prediction, as diffusers' DPMSolverMultistep",
              keys, dpmpp_create, dpmpp_sample, FLASH_GRID_DPM)
