/* Strategy `dmd2`: distribution matching distillation, DMD (Yin et al.
 * 2024, "One-step Diffusion with Distribution Matching Distillation",
 * section 3) with the DMD2 changes (Yin et al. 2024b, "Improved
 * Distribution Matching Distillation for Fast Image Synthesis"): no
 * regression loss, a two time-scale update rule, an optional GAN term on
 * the fake score's encoder, backward simulation for multi-step students.
 *
 * The student G maps noise to a sample x0 = G(z). Its gradient is the
 * difference between two scores of the noised sample x_t = a_t x0 + s_t eps
 * at a random t in [t_min, t_max] (one per sample): the real one (the
 * teacher, with classifier-free guidance target.guidance_scale) and the
 * fake one (a network trained on the student's own samples). In x0 terms
 * (DMD eq. 7, with s(x_t) = -(x_t - a_t mu(x_t)) / s_t^2, and eq. 8's
 * weight w_t = s_t^2 / a_t * CS / ||mu_real(x_t) - x0||_1):
 *
 *   grad = (x0_fake(x_t, t) - x0_real(x_t, t)) / mean(|x0 - x0_real(x_t, t)|)     per sample
 *
 * (the mean over the C*S elements of each sample; a zero denominator gets
 * 1e-8). The losses are handed target = stopgrad(x0 - grad): `reconstruction`
 * at weight 0.5 is DMD2's 0.5 ||x0 - stopgrad(x0 - grad)||^2, averaged over
 * elements, whose gradient with respect to x0 is grad / numel.
 *
 * The fake score mu_fake starts as the teacher (a trainable second
 * instance of the `teacher:` slot; with an analytic teacher, of the
 * `student:` slot with the student's weights: distill_trainable_denoiser)
 * and, after every student
 * update, takes `fake_updates` Adam steps (DMD2 section 4.2: 5) at
 * `fake_lr`, each on fresh student samples: the denoising loss of its own
 * prediction type on x_t = a_t stopgrad(x0) + s_t eps, t in [t_min, t_max]
 * (DMD eq. 6), so it tracks the score of the student's current
 * distribution. Its weights and Adam moments are in the run's checkpoints
 * (fake_score.safetensors).
 *
 * GAN (DMD2 section 4.3, `gan_weight` > 0): a linear head on the globally
 * pooled bottleneck of the fake score's encoder (the model's `encode`)
 * classifies noised real data (the `dataset:`) against noised student
 * samples; the fake score and the head take weight * (softplus(D(fake)) +
 * softplus(-D(real))) in their update, the student weight *
 * softplus(-D(G(z) noised)). Models without an encoder (the 2-D `mlp`)
 * are refused when the run starts.
 *
 * Student steps: a one-step student generates from pure noise at its
 * first timestep. A multi-step student is trained at a uniformly drawn
 * step tau_i of its sampler; its input there is its own stop-gradient
 * rollout from noise (`backward_simulation: true`, DMD2 section 4.5;
 * Imagine Flash section 4.1) or, without it, forward-noised real data
 * (DMD2's training/inference mismatch; needs a `dataset:`).
 *
 * Keys: fake_updates (5), fake_lr (1e-4), t_min (20), t_max (980),
 * gan_weight (0), backward_simulation (false), target: {guidance_scale}
 * (target.k is not used). Logged: dm_loss (0.5 mean(grad^2)), fake_loss
 * (the mean denoising loss of the iteration's fake-score updates), gan_gen
 * and gan_disc with a GAN term. */
#include "distill_common.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DMD2_MAX_FEATS 8

typedef struct dmd2 {
    distill d;
    long fake_updates, t_min, t_max;
    float fake_lr, gan_weight;
    bool backward_simulation;
    flash_adam opt;
    flash_instance *fake;
    flash_denoiser *fden; /* the fake score mu_fake, on fake */
    flash_params *fake_params;
    flash_ctx *fc;        /* the fake score's own iteration context */
    /* the GAN head: logit = w . avgpool(bottleneck) + b */
    flash_params *head;
    flash_tensor *head_w, *head_b;
    int feat_ch, feat_hw;
} dmd2;

static const char *const keys[] = {"fake_updates", "fake_lr", "t_min", "t_max", "gan_weight",
                                   "backward_simulation", DISTILL_KEYS, NULL};

/* the fake score's gradient clip (the loop's default for the student) */
#define DMD2_FAKE_CLIP 1.0

static flash_tensor *dmd2_step(void *self, flash_ctx *c, distill *d, int64_t iter);

static void dmd2_destroy(void *self)
{
    dmd2 *m = self;
    if (!m) return;
    flash_ctx_destroy(m->fc);
    flash_params_destroy(m->head);
    distill_close(&m->d);
    free(m);
}

static flash_status dmd2_create(const flash_cfg *cfg, flash_env *env, void **self, flash_error *err)
{
    long fu, tmin, tmax;
    float lr, gw;
    bool bs;
    flash_status st;
    if ((st = flash_cfg_int(cfg, "fake_updates", 5, &fu, err)) || (st = flash_cfg_float(cfg, "fake_lr", 1e-4f, &lr, err)) ||
        (st = flash_cfg_int(cfg, "t_min", 20, &tmin, err)) || (st = flash_cfg_int(cfg, "t_max", 980, &tmax, err)) ||
        (st = flash_cfg_float(cfg, "gan_weight", 0.0f, &gw, err)) ||
        (st = flash_cfg_bool(cfg, "backward_simulation", false, &bs, err)))
        return st;
    if (fu < 1 || fu > 100)
        return flash_cfg_error(flash_cfg_get(cfg, "fake_updates"), err, "strategy 'dmd2': fake_updates must be in [1, 100]");
    if (!(lr > 0 && lr < 10))
        return flash_cfg_error(flash_cfg_get(cfg, "fake_lr"), err, "strategy 'dmd2': fake_lr must be in (0, 10)");
    if (tmin < 0 || tmax < tmin || tmax >= FLASH_MAX_STEPS)
        return flash_cfg_error(cfg, err, "strategy 'dmd2': need 0 <= t_min <= t_max < %d", FLASH_MAX_STEPS);
    if (!(gw >= 0))
        return flash_cfg_error(flash_cfg_get(cfg, "gan_weight"), err, "strategy 'dmd2': gan_weight must be >= 0");
    dmd2 *m = calloc(1, sizeof *m);
    if (!m) return flash_error_set(err, FLASH_ERR_NOMEM, "strategy 'dmd2': out of memory");
    m->fake_updates = fu;
    m->fake_lr = lr;
    m->t_min = tmin;
    m->t_max = tmax;
    m->gan_weight = gw;
    m->backward_simulation = bs;
    m->opt = (flash_adam){.lr = lr, .beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-8f};
    if ((st = distill_open(&m->d, cfg, env, dmd2_step, self, m, err))) dmd2_destroy(m);
    else m->d.trains_guidance = true;
    return st;
}

static bool has_encode(const flash_instance *inst)
{
    const flash_model_api *a = FLASH_API(inst, flash_model_api);
    return inst->comp->size >= offsetof(flash_model_api, encode) + sizeof a->encode && a->encode;
}

/* The GAN head on the fake score's bottleneck: its width from one probe. */
static flash_status head_build(dmd2 *m, flash_error *err)
{
    distill *d = &m->d;
    if (!has_encode(m->fake))
        return flash_error_set(err, FLASH_ERR_CONFIG,
                               "strategy 'dmd2': gan_weight > 0 needs a fake score model with encoder features "
                               "(encode, e.g. unet); '%s' has none",
                               m->fake->comp->name);
    if (!d->run->data)
        return flash_cfg_error(d->env->root, err, "strategy 'dmd2': gan_weight > 0 needs real data (a `dataset:`)");
    flash_ctx *c = flash_ctx_create_on(flash_env_device(d->env), (size_t)8 << 20, err);
    if (!c) return err->status ? err->status : FLASH_ERR_NOMEM;
    flash_grad_set(c, false);
    int shape[FLASH_MAX_DIMS] = {1};
    for (int i = 0; i < d->ndim; i++) shape[1 + i] = d->shape[i];
    flash_tensor *x = flash_zeros(c, 1 + d->ndim, shape);
    const float t = 500.0f, a = 0.5f, s = 0.5f;
    flash_cond cond = {.n = 1, .t = &t, .alpha = &a, .sigma = &s};
    flash_tensor *f[DMD2_MAX_FEATS];
    const flash_model_api *api = FLASH_API(m->fake, flash_model_api);
    int nf = x ? api->encode(m->fake->self, c, x, &cond, f, DMD2_MAX_FEATS) : -1;
    flash_tensor *b = nf > 0 ? f[nf - 1] : NULL;
    if (!b || b->ndim != 4 || b->shape[2] != b->shape[3]) {
        flash_status st = flash_error_set(err, FLASH_ERR_CONFIG,
                                          "strategy 'dmd2': the fake score's encoder gave no square bottleneck (%s)",
                                          flash_ctx_ok(c) ? "none" : flash_ctx_error(c));
        flash_ctx_destroy(c);
        return st;
    }
    m->feat_ch = b->shape[1];
    m->feat_hw = b->shape[2];
    flash_ctx_destroy(c);
    if (!(m->head = flash_params_create()) ||
        !(m->head_w = flash_params_add(m->head, "gan_head.weight", 2, (int[]){1, m->feat_ch})) ||
        !(m->head_b = flash_params_add(m->head, "gan_head.bias", 1, (int[]){1})))
        return flash_error_set(err, FLASH_ERR_NOMEM, "strategy 'dmd2': out of memory");
    flash_status st = flash_params_finalize(m->head, err);
    if (st) return st;
    flash_rng r;
    flash_rng_seed_stream(&r, d->env->seed, 0x6a4eadull);
    flash_init_fan_in(m->head_w, &r, m->feat_ch);
    flash_init_fan_in(m->head_b, &r, m->feat_ch);
    if ((st = flash_run_track(d->run, "fake_score_head", m->head, NULL, err))) return st;
    return flash_params_to_device(m->head, flash_env_device(d->env), err);
}

static flash_params *dmd2_trained(void *self, flash_run *run, flash_error *err)
{
    dmd2 *m = self;
    distill *d = &m->d;
    flash_params *P = distill_trained(d, run, err);
    if (!P) return NULL;
    if (distill_trainable_denoiser(d, "fake_score", &m->fake, &m->fden, err)) {
        flash_error_prefix(err, "strategy 'dmd2': fake score");
        return NULL;
    }
    m->fake_params = FLASH_API(m->fake, flash_model_api)->params(m->fake->self);
    if (m->gan_weight > 0 && head_build(m, err)) return NULL;
    if (d->n_steps > 1 && !m->backward_simulation && !run->data) {
        flash_cfg_error(d->env->root, err,
                        "strategy 'dmd2': a %d-step student without backward_simulation trains on forward-noised "
                        "real data: the pipeline needs a `dataset:` (or set backward_simulation: true)",
                        d->n_steps);
        return NULL;
    }
    if (!(m->fc = flash_ctx_create_on(flash_env_device(d->env), (size_t)16 << 20, err))) {
        if (!err->status) flash_error_set(err, FLASH_ERR_NOMEM, "strategy 'dmd2': out of memory");
        return NULL;
    }
    return P;
}

/* ---- the student's samples ------------------------------------------------ */

typedef struct gen {
    flash_tensor *x0;      /* G(z): the student's x0-hat */
    flash_tensor *x;       /* what it saw at t */
    const int *labels;
    double t;
} gen;

/* A batch of student samples under the context's grad mode. */
static flash_status generate(dmd2 *m, flash_ctx *c, int n, gen *g)
{
    distill *d = &m->d;
    const int i = d->n_steps > 1 ? distill_pick_step(d) : 0;
    g->t = d->timesteps[i];
    g->x = distill_noise(d, c, n);
    g->labels = distill_labels(d, c, n);
    /* a guidance-conditioned student: its samples, and so the fake score
     * that models them, depend on the scale w, drawn per sample here and
     * used by every network of this batch (d->w) */
    if (g->labels && flash_model_takes_guidance(&d->student_inst) && !distill_guidance(d, c, n))
        return FLASH_ERR_RUNTIME;
    if (i > 0 && m->backward_simulation) {
        g->x = distill_rollout(d, c, g->x, g->labels, i);
    } else if (i > 0) {
        flash_tensor *real;
        if (distill_real_batch(d, c, n, &real, &g->labels)) return FLASH_ERR_RUNTIME;
        g->x = distill_forward_noise(d, c, real, g->t);
    }
    flash_denoised s;
    if (!g->x || distill_denoise(d, d->student, c, g->x, NULL, g->t, g->labels, &s)) return FLASH_ERR_RUNTIME;
    g->x0 = s.x0;
    return FLASH_OK;
}

/* Per-sample noise levels t in [t_min, t_max] with their alpha, sigma
 * (arena host memory), and x_t = alpha x0 + sigma eps (eq. 1). */
typedef struct noised {
    double *t;
    float *tf, *alpha, *sigma;
    flash_tensor *eps, *x_t;
} noised;

static bool noise_levels(dmd2 *m, flash_ctx *c, int n, noised *z)
{
    distill *d = &m->d;
    z->t = flash_host_alloc(c, (size_t)n * sizeof *z->t);
    z->tf = flash_host_alloc(c, 3 * (size_t)n * sizeof *z->tf);
    if (!z->t || !z->tf) return false;
    z->alpha = z->tf + n;
    z->sigma = z->alpha + n;
    const uint64_t span = (uint64_t)(m->t_max - m->t_min + 1);
    /* one draw per sample of the global batch, this rank's kept (strategy.h) */
    const int first = d->run->rank * n;
    for (int g = 0; g < n * d->run->ranks; g++) {
        const long t = m->t_min + (long)flash_rng_below(distill_stream(d, DISTILL_DRAW_TIME), span);
        if (g < first || g >= first + n) continue;
        const int i = g - first;
        double a, s;
        z->t[i] = (double)t;
        flash_schedule_eval(d->student->schedule, z->t[i], &a, &s);
        z->tf[i] = (float)z->t[i];
        z->alpha[i] = (float)a;
        z->sigma[i] = (float)s;
    }
    return true;
}

static flash_tensor *add_noise(dmd2 *m, flash_ctx *c, flash_tensor *x0, noised *z)
{
    if (!x0 || !noise_levels(m, c, x0->shape[0], z)) return NULL;
    z->eps = distill_noise(&m->d, c, x0->shape[0]);
    return z->x_t = flash_axpby(c, z->alpha, x0, z->sigma, z->eps);
}

/* The GAN head's logits (N, 1) on the fake score's bottleneck at (x, z).
 * The encoder (model.h: encode) takes no guidance scale: with a
 * guidance-conditioned fake score the head reads its features without w,
 * the same for every scale. */
static flash_tensor *gan_logits(dmd2 *m, flash_ctx *c, flash_tensor *x, const noised *z, const int *labels,
                                flash_tensor **bottleneck)
{
    if (!x) return NULL;
    const int n = x->shape[0];
    flash_cond cond = {.n = n, .t = z->tf, .alpha = z->alpha, .sigma = z->sigma, .labels = labels};
    flash_tensor *f[DMD2_MAX_FEATS];
    int nf = FLASH_API(m->fake, flash_model_api)->encode(m->fake->self, c, x, &cond, f, DMD2_MAX_FEATS);
    if (nf < 1) {
        if (flash_ctx_ok(c)) flash_ctx_fail(c, "strategy 'dmd2': the fake score's encoder gave no features");
        return NULL;
    }
    if (bottleneck) *bottleneck = f[nf - 1];
    flash_tensor *pooled = flash_reshape(c, flash_avg_pool2d(c, f[nf - 1], m->feat_hw), 2, (int[]){n, m->feat_ch});
    return flash_linear(c, pooled, m->head_w, m->head_b);
}

static flash_tensor *head_on(dmd2 *m, flash_ctx *c, flash_tensor *bottleneck)
{
    const int n = bottleneck->shape[0];
    flash_tensor *pooled = flash_reshape(c, flash_avg_pool2d(c, bottleneck, m->feat_hw), 2, (int[]){n, m->feat_ch});
    return flash_linear(c, pooled, m->head_w, m->head_b);
}

static void log_scalar(distill *d, flash_ctx *c, const char *name, flash_tensor *v)
{
    if (!d->stats || !v) return;
    float h = 0;
    flash_error e = {0};
    if (flash_tensor_to_host(c, v, &h, &e)) {
        flash_ctx_fail(c, "strategy 'dmd2': %s: %s", name, e.msg);
        return;
    }
    flash_metric_result_add(d->stats, name, h);
}

/* ---- the student's step: distribution matching (DMD eq. 7-8) --------------- */

static flash_tensor *dmd2_step(void *self, flash_ctx *c, distill *d, int64_t iter)
{
    (void)iter;
    dmd2 *m = self;
    const int n = d->batch_size;
    gen g;
    if (generate(m, c, n, &g)) return NULL;

    bool was = flash_grad_set(c, false);
    flash_tensor *x0 = flash_detach(c, g.x0);
    noised z;
    flash_tensor *x_t = add_noise(m, c, x0, &z);
    flash_denoised real, fake;
    flash_tensor *target = NULL, *grad = NULL;
    if (x_t && !distill_denoise_teacher(d, c, x_t, z.t, 0, g.labels, &real) &&
        !distill_denoise(d, m->fden, c, x_t, z.t, 0, g.labels, &fake)) {
        /* eq. 8: the per-sample normaliser mean(|x0 - x0_real|) */
        int shape[FLASH_MAX_DIMS] = {n};
        for (int i = 1; i < x0->ndim; i++) shape[i] = 1;
        flash_tensor *norm = flash_add_scalar(c, flash_mean_per_sample(c, flash_abs(c, flash_sub(c, x0, real.x0))), 1e-8f);
        grad = flash_div(c, flash_sub(c, fake.x0, real.x0), flash_reshape(c, norm, x0->ndim, shape));
        target = flash_sub(c, x0, grad);
    }
    if (grad) log_scalar(d, c, "dm_loss", flash_scale(c, flash_mean(c, flash_square(c, grad)), 0.5f));
    flash_grad_set(c, was);
    if (!target || !flash_ctx_ok(c)) return NULL;

    flash_cond cond = distill_cond(d, c, n, g.t, g.labels);
    flash_loss_in in = {.size = sizeof in, .pred = g.x0, .target = target, .x_t = g.x, .cond = &cond, .distill = d};
    flash_tensor *loss = distill_losses(d, c, &in);
    if (loss && m->gan_weight > 0) {
        /* DMD2 section 4.3: the student's non-saturating GAN term through
         * the fake score's encoder, on its sample noised with gradients */
        noised zg;
        flash_tensor *logits = gan_logits(m, c, add_noise(m, c, g.x0, &zg), &zg, g.labels, NULL);
        flash_tensor *lg = flash_mean(c, flash_softplus(c, flash_neg(c, logits)));
        log_scalar(d, c, "gan_gen", lg);
        loss = flash_add(c, loss, flash_scale(c, lg, m->gan_weight));
    }
    if (d->stats) flash_metric_result_add(d->stats, "t", g.t);
    return loss;
}

/* ---- the fake score's updates (DMD eq. 6; DMD2's two time-scale rule) -------- */

/* One update's loss in the fake score's context: the denoising loss on
 * fresh student samples, plus the GAN classification term. */
static flash_tensor *fake_loss(dmd2 *m, flash_ctx *c, flash_tensor **disc_loss, flash_tensor **bott_fake,
                               flash_tensor **bott_real)
{
    distill *d = &m->d;
    const int n = d->batch_size;
    bool was = flash_grad_set(c, false);
    gen g;
    noised z;
    flash_tensor *x_t = NULL;
    if (!generate(m, c, n, &g)) x_t = add_noise(m, c, flash_detach(c, g.x0), &z);
    flash_grad_set(c, was);
    if (!x_t) return NULL;
    flash_denoised o;
    if (distill_denoise(d, m->fden, c, x_t, z.t, 0, g.labels, &o)) return NULL;
    flash_tensor *target = flash_pred_target(c, m->fden->info.prediction, flash_detach(c, g.x0), z.eps, z.alpha, z.sigma);
    flash_tensor *loss = flash_mse(c, o.out, target);
    if (!loss || m->gan_weight <= 0) return loss;

    flash_tensor *real;
    const int *rl;
    if (distill_real_batch(d, c, n, &real, &rl)) return NULL;
    if (!g.labels) rl = NULL;
    noised zr;
    flash_tensor *lf = gan_logits(m, c, x_t, &z, g.labels, bott_fake);
    flash_tensor *lr = gan_logits(m, c, add_noise(m, c, real, &zr), &zr, rl, bott_real);
    *disc_loss = flash_add(c, flash_mean(c, flash_softplus(c, lf)), flash_mean(c, flash_softplus(c, flash_neg(c, lr))));
    return flash_add(c, loss, flash_scale(c, *disc_loss, m->gan_weight));
}

static flash_status dmd2_after_step(void *self, flash_ctx *c0, flash_run *run, int64_t iter, flash_error *err)
{
    dmd2 *m = self;
    distill *d = &m->d;
    flash_status st = distill_after_step(d, c0, run, iter, err);
    if (st) return st;
    flash_ctx *c = m->fc;
    double fake_sum = 0, disc_sum = 0;
    for (long j = 0; j < m->fake_updates; j++) {
        flash_ctx_reset(c);
        flash_tensor *disc = NULL, *bf = NULL, *br = NULL;
        flash_tensor *loss = fake_loss(m, c, &disc, &bf, &br);
        if ((st = flash_ctx_status(c, err))) return st;
        if (!loss) return flash_error_set(err, FLASH_ERR_RUNTIME, "strategy 'dmd2': the fake score's loss is missing");
        float lv = 0, dv = 0;
        if (d->stats && ((st = flash_tensor_to_host(c, loss, &lv, err)) ||
                         (disc && (st = flash_tensor_to_host(c, disc, &dv, err)))))
            return st;
        /* Adam's step counts the fake score's updates, so a resumed run
         * continues its bias correction where it stopped */
        const int64_t step = (iter - 1) * m->fake_updates + j + 1;
        if ((st = flash_run_update(run, c, m->fake_params, loss, &m->opt, DMD2_FAKE_CLIP, step, err))) {
            flash_error_prefix(err, "strategy 'dmd2': fake score");
            return st;
        }
        if (m->head) {
            /* the head's own step on the same features, detached: its
             * gradient alone, through the loop's gradient step */
            flash_tensor *lf = head_on(m, c, flash_detach(c, bf)), *lr = head_on(m, c, flash_detach(c, br));
            flash_tensor *hl = flash_scale(c, flash_add(c, flash_mean(c, flash_softplus(c, lf)),
                                                        flash_mean(c, flash_softplus(c, flash_neg(c, lr)))),
                                           m->gan_weight);
            if ((st = flash_ctx_status(c, err)) ||
                (st = flash_run_update(run, c, m->head, hl, &m->opt, DMD2_FAKE_CLIP, step, err))) {
                flash_error_prefix(err, "strategy 'dmd2': GAN head");
                return st;
            }
        }
        fake_sum += disc ? lv - m->gan_weight * dv : lv;
        disc_sum += dv;
    }
    if (d->stats) {
        flash_metric_result_add(d->stats, "fake_loss", fake_sum / (double)m->fake_updates);
        if (m->head) flash_metric_result_add(d->stats, "gan_disc", disc_sum / (double)m->fake_updates);
    }
    return FLASH_OK;
}

static const flash_strategy_api dmd2_api = {
    .head = {sizeof dmd2_api, FLASH_KIND_STRATEGY, "dmd2",
             "distribution matching distillation (DMD/DMD2, Yin et al. 2024): real minus fake score, fake score on "
             "the student's samples",
             keys, dmd2_create, dmd2_destroy},
    .trained = dmd2_trained,
    .step = distill_step,
    .after_step = dmd2_after_step,
};
FLASH_COMPONENT(dmd2_api)
