/* Strategy `lcm`: latent consistency distillation (Luo et al. 2023,
 * "Latent Consistency Models", Algorithm 1; consistency distillation of
 * Song et al. 2023), the paper's LCM baseline (Imagine Flash Table 1).
 *
 *   f_theta(x, t) = c_skip(t) x + c_out(t) x0-hat_theta(x, t)   (consistency_fn; f(x, 0) = x)
 *
 * Each iteration draws real x0, a timestep t from the skip-k grid
 * {k-1, 2k-1, ..., T-1} and x_t = a_t x0 + s_t eps; the teacher takes one
 * DDIM step with CFG from t to t - k, at target.guidance_scale, or, for a
 * guidance-conditioned student (guidance_embed: true), at LCM's w drawn
 * per sample from target.guidance_range and given to the student too; the target is the consistency function of the EMA
 * target network theta^- there (no gradient), and the losses compare
 * f_theta(x_t, t) with it (flash_loss_in.target; `reconstruction` with
 * huber_c as LCM's Huber loss). theta^- <- mu theta^- + (1 - mu) theta
 * after every student step (LCM: mu = 0.95). Sample with the `lcm`
 * sampler (multistep consistency sampling) at 1, 2, 3 or 4 steps.
 *
 * Keys: skip (k, 20), ema (mu, 0.95). Needs a `dataset:`. */
#include "consistency.h"
#include "distill_common.h"

#include <stdlib.h>

typedef struct lcm {
    distill d;
    long skip;
    float mu;
    flash_instance *target_net;
    flash_denoiser *tden; /* on target_net */
} lcm;

static const char *const keys[] = {"skip", "ema", DISTILL_KEYS, NULL};

static flash_tensor *lcm_step(void *self, flash_ctx *c, distill *d, int64_t iter);

static flash_status lcm_create(const flash_cfg *cfg, flash_env *env, void **self, flash_error *err)
{
    long skip;
    float mu;
    flash_status st;
    if ((st = flash_cfg_int(cfg, "skip", 20, &skip, err)) || (st = flash_cfg_float(cfg, "ema", 0.95f, &mu, err)))
        return st;
    if (skip < 1 || skip > FLASH_MAX_STEPS || !(mu >= 0.0f && mu < 1.0f))
        return flash_cfg_error(cfg, err, "strategy 'lcm': skip must be in [1, %d] and ema in [0, 1)", FLASH_MAX_STEPS);
    lcm *l = calloc(1, sizeof *l);
    if (!l) return flash_error_set(err, FLASH_ERR_NOMEM, "strategy 'lcm': out of memory");
    l->skip = skip;
    l->mu = mu;
    if ((st = distill_open(&l->d, cfg, env, lcm_step, self, l, err))) distill_destroy(l);
    else l->d.trains_guidance = true;
    return st;
}

/* theta^- <- mu theta^- + (1 - mu) theta, over the whole parameter block,
 * where the blocks live (the pipeline's device) */
static flash_status ema_target(lcm *l, distill *d, flash_error *err)
{
    flash_params *tp = FLASH_API(l->target_net, flash_model_api)->params(l->target_net->self);
    return flash_params_lerp(tp, d->student_params, l->mu, err);
}

static flash_tensor *lcm_step(void *self, flash_ctx *c, distill *d, int64_t iter)
{
    lcm *l = self;
    if (!l->tden) {
        flash_error e = {0};
        if (distill_clone_denoiser(d, &l->target_net, &l->tden, &e)) {
            flash_ctx_fail(c, "strategy 'lcm': %s", e.msg);
            return NULL;
        }
    }
    /* follows the student's last update (on resume too: the saved target
     * network predates it) */
    if (iter > 1) {
        flash_error e = {0};
        if (ema_target(l, d, &e)) {
            flash_ctx_fail(c, "strategy 'lcm': %s", e.msg);
            return NULL;
        }
    }
    const int T = flash_schedule_T(d->student->schedule);
    const int n = d->batch_size;
    flash_tensor *x0;
    const int *labels;
    if (distill_real_batch(d, c, n, &x0, &labels)) return NULL;
    const long m = T / l->skip;
    if (m < 1) {
        flash_ctx_fail(c, "strategy 'lcm': skip %ld exceeds the %d training timesteps", l->skip, T);
        return NULL;
    }
    const double t = (double)((1 + (long)flash_rng_below(distill_stream(d, DISTILL_DRAW_TIME), (uint64_t)m)) * l->skip - 1);
    const double tp = t - l->skip > 0 ? t - l->skip : 0;
    double ap, sp;
    flash_schedule_eval(d->student->schedule, tp, &ap, &sp);
    flash_tensor *x = distill_forward_noise(d, c, x0, t);

    /* a guidance-conditioned student: this batch's scales w (LCM, Luo et
     * al. 2023, Algorithm 1: w ~ U[w_min, w_max], the teacher's solver
     * step guided at w, the student and its target network given w) */
    if (labels && flash_model_takes_guidance(&d->student_inst) && !distill_guidance(d, c, n)) return NULL;
    bool was = flash_grad_set(c, false);
    flash_denoised o;
    flash_tensor *target = NULL;
    if (!distill_denoise_teacher(d, c, x, NULL, t, labels, &o)) {
        flash_tensor *xp = flash_lincomb(c, ap, o.x0, sp, o.eps); /* one teacher DDIM step (eq. 4) */
        target = consistency_fn(l->tden, c, xp, tp, labels, d->w);
    }
    flash_grad_set(c, was);
    if (!target) return NULL;
    flash_tensor *pred = consistency_fn(d->student, c, x, t, labels, d->w);
    flash_cond cond = distill_cond(d, c, n, t, labels);
    flash_loss_in in = {.size = sizeof in, .pred = pred, .target = target, .x_t = x, .cond = &cond, .distill = d};
    if (d->stats) flash_metric_result_add(d->stats, "t", t);
    return distill_losses(d, c, &in);
}

DISTILL_STRATEGY(lcm_api, "lcm",
                 "latent consistency distillation (Luo et al. 2023): skip-k teacher DDIM step, EMA target network",
                 keys, lcm_create, distill_destroy)
