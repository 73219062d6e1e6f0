/* Strategy `forward`: forward distillation, the paper's "w/o backward
 * distillation" ablation (Imagine Flash section 4.1, eq. 6 and Table 3):
 * the input is the forward-noised real sample x_t = alpha_t x0 + sigma_t eps
 * (eq. 1) at a student timestep tau_i, so it carries ground-truth signal
 * alpha_t x0 at every t < T; everything else (targets, losses) is as in
 * `backward`. Needs a `dataset:`. With a class-conditional teacher and
 * unlabelled data the labels are drawn uniformly.
 *
 * Keys: step (-1: a uniformly drawn step index per iteration),
 * timestep_draw (batch | sample, as for `backward`),
 * plain_target (as for `backward`). */
#include "distill_common.h"

#include <stdlib.h>


static flash_tensor *fw_step(void *self, flash_ctx *c, distill *d, int64_t iter)
{
    (void)iter;
    const distill_step_opts *f = self;
    const int n = d->batch_size;
    if (f->per_sample) {
        int cnt[DISTILL_MAX_STEPS];
        distill_pick_steps(d, n, cnt);
        const double *t = distill_step_times(d, c, n, cnt);
        flash_tensor *x0;
        const int *labels;
        if (!t || distill_real_batch(d, c, n, &x0, &labels)) return NULL;
        flash_cond cond;
        return distill_student_losses_each(d, c, distill_forward_noise_each(d, c, x0, t), t, labels, f->plain_target,
                                           &cond);
    }
    int i = f->step >= 0 ? (int)f->step : distill_pick_step(d);
    if (i >= d->n_steps) {
        flash_ctx_fail(c, "strategy 'forward': step %d, but the student has %d timesteps", i, d->n_steps);
        return NULL;
    }
    flash_tensor *x0;
    const int *labels;
    if (distill_real_batch(d, c, n, &x0, &labels)) return NULL;
    const double t = d->timesteps[i];
    flash_cond cond;
    return distill_student_losses(d, c, distill_forward_noise(d, c, x0, t), t, labels, f->plain_target, &cond);
}

static flash_status fw_create(const flash_cfg *cfg, flash_env *env, void **self, flash_error *err)
{
    return distill_step_opts_create(cfg, env, "forward", fw_step, self, err);
}

DISTILL_STRATEGY(forward_api, "forward",
                 "forward distillation (the paper's w/o-backward ablation): inputs forward-noised from real data",
                 distill_step_keys, fw_create, distill_destroy)
