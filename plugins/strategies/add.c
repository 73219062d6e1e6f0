/* Strategy `add`: adversarial diffusion distillation (Sauer et al. 2023,
 * "Adversarial Diffusion Distillation", section 3), the paper's ADD
 * baseline (Imagine Flash Table 1, 4 steps).
 *
 * The student sees forward-noised real data x_s = a_s x0 + s_s eps at one
 * of its timesteps s (eq. 1) and predicts x0-hat_theta(x_s, s). Its
 * distillation target: x0-hat_theta (stop-gradient) re-noised with fresh
 * noise to a uniformly drawn teacher timestep t, x_t = a_t x0-hat + s_t eps',
 * and denoised by one teacher evaluation with CFG (target.guidance_scale):
 *   L_distill = c(t) || x0-hat_theta - x0-hat_psi(x_t, t) ||^2,  c(t) = a_t
 * (ADD's exponential weighting; the weights reach the `reconstruction`
 * loss as flash_loss_in.sample_weight). The `adversarial` loss in the
 * `losses:` list judges x0-hat_theta against real data with its own
 * discriminator (ADD: hinge loss). Needs a `dataset:`.
 *
 * Keys: t_min (teacher timesteps drawn from [t_min, T-1]; 20). */
#include "distill_common.h"

#include <stdlib.h>

typedef struct add {
    distill d;
    long t_min;
} add;

static const char *const keys[] = {"t_min", DISTILL_KEYS, NULL};

static flash_tensor *add_step(void *self, flash_ctx *c, distill *d, int64_t iter);

static flash_status add_create(const flash_cfg *cfg, flash_env *env, void **self, flash_error *err)
{
    long tmin;
    flash_status st = flash_cfg_int(cfg, "t_min", 20, &tmin, err);
    if (st) return st;
    if (tmin < 0 || tmin >= FLASH_MAX_STEPS)
        return flash_cfg_error(flash_cfg_get(cfg, "t_min"), err, "strategy 'add': t_min must be in [0, %d)",
                               FLASH_MAX_STEPS);
    add *a = calloc(1, sizeof *a);
    if (!a) return flash_error_set(err, FLASH_ERR_NOMEM, "strategy 'add': out of memory");
    a->t_min = tmin;
    if ((st = distill_open(&a->d, cfg, env, add_step, self, a, err))) distill_destroy(a);
    return st;
}

static flash_tensor *add_step(void *self, flash_ctx *c, distill *d, int64_t iter)
{
    (void)iter;
    const add *ad = self;
    const int n = d->batch_size;
    const int T = flash_schedule_T(d->student->schedule);
    if (ad->t_min >= T) {
        flash_ctx_fail(c, "strategy 'add': t_min %ld is not below T = %d", ad->t_min, T);
        return NULL;
    }
    flash_tensor *x0;
    const int *labels;
    if (distill_real_batch(d, c, n, &x0, &labels)) return NULL;
    const double s = d->timesteps[distill_pick_step(d)];
    flash_tensor *xs = distill_forward_noise(d, c, x0, s);
    flash_denoised st;
    if (flash_denoise(d->student, c, xs, NULL, s, labels, 1.0f, NULL, &st)) return NULL;

    /* the teacher's one-evaluation target from the re-noised student sample */
    const double t = (double)(ad->t_min + (long)flash_rng_below(distill_stream(d, DISTILL_DRAW_TIME), (uint64_t)(T - ad->t_min)));
    double at, sgt;
    flash_schedule_eval(d->teacher->schedule, t, &at, &sgt);
    bool was = flash_grad_set(c, false);
    flash_tensor *xt = flash_lincomb(c, at, flash_detach(c, st.x0), sgt, distill_noise(d, c, n));
    flash_denoised o;
    flash_tensor *target = NULL;
    if (!flash_denoise(d->teacher, c, xt, NULL, t, labels, labels ? d->target.guidance_scale : 1.0f, NULL, &o))
        target = o.x0;
    flash_grad_set(c, was);
    if (!target) return NULL;

    flash_cond cond = distill_cond(d, c, n, s, labels);
    flash_loss_in in = {.size = sizeof in, .pred = st.x0, .target = target, .x_t = xs, .cond = &cond, .distill = d,
                        .sample_weight = flash_full(c, 1, (int[]){n}, (float)at)};
    if (d->stats) {
        flash_metric_result_add(d->stats, "t", s);
        flash_metric_result_add(d->stats, "t_teacher", t);
    }
    return distill_losses(d, c, &in);
}

DISTILL_STRATEGY(add_api, "add",
                 "adversarial diffusion distillation (Sauer et al. 2023): forward-noised inputs, c(t) = alpha_t weighted "
                 "teacher target",
                 keys, add_create, distill_destroy)
