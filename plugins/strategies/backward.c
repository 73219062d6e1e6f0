/* Strategy `backward`: backward distillation (Imagine Flash section 4.1,
 * eq. 7). The training input is the student's own backward iterate
 * x_{T->tau_i} = stopgrad(f_Theta^{i}(x_T)): draw x_T ~ N(0, I) (and a
 * class), pick a student step i, roll the student out with its sampler
 * through tau_0 .. tau_{i-1} with gradients off (noise correction, eq. 9,
 * at the first step when the sampler has it), then predict x0-hat at tau_i
 * with gradients on. The losses compare it with the teacher's target from
 * the same x_{T->tau_i} (eq. 7) or, for SRL, from the re-noised x0-hat
 * (eq. 8). No forward-noised ground truth enters the input at any t.
 *
 * Keys: step (-1: a uniformly drawn step index per iteration; else that
 * index every time), timestep_draw (batch: one index per iteration; sample:
 * one per sample, see distill_common.h), plain_target (true: hand every loss the eq. 7 target
 * as flash_loss_in.target; false saves its k teacher evaluations when no
 * loss compares with it, e.g. SRL with an adversarial loss). */
#include "distill_common.h"

#include <stdlib.h>


static flash_tensor *bw_step(void *self, flash_ctx *c, distill *d, int64_t iter)
{
    (void)iter;
    const distill_step_opts *b = self;
    const int n = d->batch_size;
    if (b->per_sample) {
        /* each row at its own step: the rollout per step index on a slice */
        int cnt[DISTILL_MAX_STEPS];
        distill_pick_steps(d, n, cnt);
        flash_tensor *x_T = distill_noise(d, c, n), *x = NULL;
        const int *labels = distill_labels(d, c, n);
        for (int j = 0, row = 0; j < d->n_steps && x_T; row += cnt[j], j++) {
            if (!cnt[j]) continue;
            flash_tensor *xj = distill_rollout(d, c, flash_narrow(c, x_T, row, cnt[j]), labels ? labels + row : NULL, j);
            x = x ? distill_stack_rows(c, x, xj) : xj;
        }
        flash_cond cond;
        return distill_student_losses_each(d, c, x, distill_step_times(d, c, n, cnt), labels, b->plain_target, &cond);
    }
    int i = b->step >= 0 ? (int)b->step : distill_pick_step(d);
    if (i >= d->n_steps) {
        flash_ctx_fail(c, "strategy 'backward': step %d, but the student has %d timesteps", i, d->n_steps);
        return NULL;
    }
    flash_tensor *x_T = distill_noise(d, c, n);
    const int *labels = distill_labels(d, c, n);
    flash_tensor *x = distill_rollout(d, c, x_T, labels, i);
    flash_cond cond;
    return distill_student_losses(d, c, x, d->timesteps[i], labels, b->plain_target, &cond);
}

static flash_status bw_create(const flash_cfg *cfg, flash_env *env, void **self, flash_error *err)
{
    return distill_step_opts_create(cfg, env, "backward", bw_step, self, err);
}

DISTILL_STRATEGY(backward_api, "backward",
                 "backward distillation (Imagine Flash 4.1, eq. 7): inputs from the student's own stop-gradient rollout",
                 distill_step_keys, bw_create, distill_destroy)
