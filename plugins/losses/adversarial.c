/* Loss `adversarial`: a GAN loss on the student's x0-hat against real data,
 * as in ADD (Sauer et al. 2023) and Imagine Flash section 5.1, with its own
 * discriminator (a `model` slot with out_dim 1: mlp_discriminator for 2-D
 * data, conv_discriminator for images) and its own Adam. Discriminator updates alternate with the student's: the loop calls
 * update() after each student step with that step's x0-hat (detached).
 *
 *   hinge (Lim & Ye 2017):        L_G = -E D(G)              L_D = E relu(1 - D(x)) + E relu(1 + D(G))
 *   non_saturating (Goodfellow):  L_G = E softplus(-D(G))    L_D = E softplus(-D(x)) + E softplus(D(G))
 *
 * The student's term is weight * L_G, zero before iteration `start` (the
 * discriminator trains from the first step). `noise` > 0 adds Gaussian
 * instance noise of that std to both the real and the generated inputs of
 * the discriminator (Sonderby et al. 2017), which keeps it from separating
 * the two perfectly early on. Paper learning rates: 1e-4 for the
 * discriminator, 5e-6 for the student (the `train:` section).
 *
 * Device: the discriminator's context and parameters live on the
 * pipeline's device (flash_env_device); the update reads the student's
 * x0-hat in place (a detached view, no copy) and reads its statistics
 * through flash_tensor_to_host. */
#include "distill.h"

#include <stdlib.h>
#include <string.h>

#include "flash/diffusion.h"

enum { ADV_HINGE = 0, ADV_NS };
static const char *const kinds[] = {"hinge", "non_saturating", NULL};
static const char *const keys[] = {"weight", "kind", "discriminator", "lr", "beta1", "beta2", "start",
                                   "noise", "grad_clip", NULL};

typedef struct adv {
    float weight, noise;
    int kind;
    long start;
    double grad_clip;
    flash_adam opt;
    flash_instance disc;
    flash_params *P;
    flash_ctx *c; /* the discriminator's own iteration context */
    uint64_t seed;
} adv;

/* The discriminator's draws come from streams of its own, one per purpose
 * and step: its real batch and its instance noise never touch the run's
 * stream, so a run with the discriminator at weight 0 draws what a run
 * without it draws (bit for bit), and a stream derived from the step
 * resumes with no state to checkpoint. */
enum { ADV_REAL = 1, ADV_NOISE_STUDENT = 2, ADV_NOISE_DISC = 3 };

static flash_rng adv_stream(const adv *a, int purpose, int64_t step)
{
    flash_rng r;
    flash_rng_seed_stream(&r, a->seed, 0xad70000000000000ull ^ ((uint64_t)purpose << 48) ^ (uint64_t)step);
    return r;
}

static void adv_destroy(void *self)
{
    adv *a = self;
    if (!a) return;
    flash_ctx_destroy(a->c);
    flash_instance_destroy(&a->disc);
    free(a);
}

static flash_status adv_create(const flash_cfg *cfg, flash_env *env, void **self, flash_error *err)
{
    adv *a = calloc(1, sizeof *a);
    if (!a) return flash_error_set(err, FLASH_ERR_NOMEM, "loss 'adversarial': out of memory");
    flash_status st;
    double lr, b1, b2;
    if ((st = flash_cfg_float(cfg, "weight", 0.1f, &a->weight, err)) ||
        (st = flash_cfg_enum(cfg, "kind", kinds, ADV_HINGE, &a->kind, err)) ||
        (st = flash_cfg_double(cfg, "lr", 1e-4, &lr, err)) || (st = flash_cfg_double(cfg, "beta1", 0.5, &b1, err)) ||
        (st = flash_cfg_double(cfg, "beta2", 0.999, &b2, err)) ||
        (st = flash_cfg_int(cfg, "start", 0, &a->start, err)) ||
        (st = flash_cfg_float(cfg, "noise", 0.0f, &a->noise, err)) ||
        (st = flash_cfg_double(cfg, "grad_clip", 0.0, &a->grad_clip, err)))
        goto fail;
    if (!(lr > 0 && lr < 10 && b1 >= 0 && b1 < 1 && b2 >= 0 && b2 < 1 && a->noise >= 0 && a->grad_clip >= 0)) {
        st = flash_cfg_error(cfg, err, "loss 'adversarial': need 0 < lr < 10, betas in [0, 1), noise >= 0, "
                                       "grad_clip >= 0");
        goto fail;
    }
    a->opt = (flash_adam){.lr = (float)lr, .beta1 = (float)b1, .beta2 = (float)b2, .eps = 1e-8f};
    const flash_cfg *ds = flash_cfg_get(cfg, "discriminator");
    if (!ds) {
        st = flash_cfg_error(cfg, err, "loss 'adversarial': needs a `discriminator: {plugin: ...}`");
        goto fail;
    }
    if ((st = flash_instance_create(env, FLASH_KIND_MODEL, ds, &a->disc, err))) goto fail;
    const flash_model_api *m = FLASH_API(&a->disc, flash_model_api);
    flash_model_info mi;
    m->info(a->disc.self, &mi);
    a->P = m->params ? m->params(a->disc.self) : NULL;
    if (mi.out_dim != 1 || !a->P) {
        st = flash_cfg_error(ds, err, "loss 'adversarial': model '%s' is not a discriminator (one logit, trainable)",
                             a->disc.comp->name);
        goto fail;
    }
    /* the discriminator beside the student: its own context and its
     * parameters (this loss owns the instance) on the pipeline's device */
    if (!(a->c = flash_ctx_create_on(flash_env_device(env), (size_t)8 << 20, err)) ||
        (st = flash_params_to_device(a->P, flash_env_device(env), err))) {
        if (!a->c) st = err->status ? err->status : FLASH_ERR_NOMEM;
        flash_error_prefix(err, "loss 'adversarial'");
        goto fail;
    }
    a->seed = env ? env->seed : 0;
    *self = a;
    return FLASH_OK;
fail:
    adv_destroy(a);
    return st;
}

static flash_tensor *disc(adv *a, flash_ctx *c, flash_run *run, flash_tensor *x, const flash_cond *cond,
                          flash_rng *noise)
{
    /* drawn for the global batch, this rank's rows kept: any rank count
     * draws the same noise */
    if (a->noise > 0 && x)
        x = flash_add(c, x, flash_scale(c, run ? flash_run_randn(run, c, noise, x->ndim, x->shape)
                                               : flash_randn(c, noise, x->ndim, x->shape),
                                        a->noise));
    flash_cond dc = {.n = x ? x->shape[0] : 0, .t = cond ? cond->t : NULL, .labels = cond ? cond->labels : NULL};
    return FLASH_API(&a->disc, flash_model_api)->forward(a->disc.self, c, x, &dc);
}

static flash_tensor *adv_compute(void *self, flash_ctx *c, const flash_loss_in *in)
{
    adv *a = self;
    const distill *d = in->distill;
    if (d && d->iter < a->start) return flash_zeros(c, 1, (int[]){1});
    flash_rng noise = adv_stream(a, ADV_NOISE_STUDENT, d ? d->iter : 0);
    const char *prev = flash_profile_phase("discriminator");
    flash_tensor *logits = disc(a, c, d ? d->run : NULL, in->pred, in->cond, &noise);
    flash_profile_phase(prev);
    flash_tensor *l = a->kind == ADV_HINGE ? flash_neg(c, flash_mean(c, logits))
                                           : flash_mean(c, flash_softplus(c, flash_neg(c, logits)));
    return flash_scale(c, l, a->weight);
}

static flash_status adv_step(adv *a, distill *d, flash_ctx *c, const flash_loss_in *in, int n, int64_t step,
                             flash_error *err);

static flash_status adv_update(void *self, flash_ctx *c0, const flash_loss_in *in, int64_t step, flash_error *err)
{
    (void)c0;
    adv *a = self;
    distill *d = in->distill;
    if (!d || !in->pred)
        return flash_error_set(err, FLASH_ERR_RUNTIME, "loss 'adversarial': the update needs the distillation context");
    flash_ctx *c = a->c;
    flash_ctx_reset(c);
    const int n = in->pred->shape[0];
    /* the discriminator's own step, update included; the caller's phase
     * (after_step) resumes when it returns */
    const char *prev = flash_profile_phase("discriminator");
    flash_status st = adv_step(a, d, c, in, n, step, err);
    flash_profile_phase(prev);
    return st;
}

static flash_status adv_step(adv *a, distill *d, flash_ctx *c, const flash_loss_in *in, int n, int64_t step,
                             flash_error *err)
{
    /* the step's x0-hat stays in the pipeline's arena until its next
     * iteration: a detached view of it, on the same device */
    flash_tensor *fake = flash_detach(c, in->pred);
    flash_tensor *real = NULL;
    const int *rlabels = NULL;
    flash_rng draws = adv_stream(a, ADV_REAL, step), noise = adv_stream(a, ADV_NOISE_DISC, step);
    if (distill_real_from(d, c, &draws, n, &real, &rlabels)) return flash_ctx_status(c, err);
    const int *flabels = in->cond ? in->cond->labels : NULL;
    if (!flabels) rlabels = NULL;
    else if (!rlabels) rlabels = distill_labels_from(d, c, &draws, n);
    flash_cond cf = {.n = n, .labels = flabels}, cr = {.n = n, .labels = rlabels};
    flash_tensor *lr = disc(a, c, d->run, real, &cr, &noise), *lf = disc(a, c, d->run, fake, &cf, &noise);
    flash_tensor *loss;
    if (a->kind == ADV_HINGE)
        loss = flash_add(c, flash_mean(c, flash_relu(c, flash_affine(c, lr, -1.0f, 1.0f))),
                         flash_mean(c, flash_relu(c, flash_add_scalar(c, lf, 1.0f))));
    else
        loss = flash_add(c, flash_mean(c, flash_softplus(c, flash_neg(c, lr))), flash_mean(c, flash_softplus(c, lf)));
    flash_status st = flash_ctx_status(c, err);
    if (st) return st;
    /* the loop's gradient step, where every network's gradients are complete */
    if ((st = flash_run_update(d->run, c, a->P, loss, &a->opt, a->grad_clip, step, err))) {
        flash_error_prefix(err, "loss 'adversarial': discriminator");
        return st;
    }
    if (d->stats) {
        /* logged statistics: the loss and both logit vectors to the host */
        float lv = 0, *h = malloc(2 * (size_t)n * sizeof *h);
        if (!h) return flash_error_set(err, FLASH_ERR_NOMEM, "loss 'adversarial': out of memory");
        if ((st = flash_tensor_to_host(c, loss, &lv, err)) || (st = flash_tensor_to_host(c, lr, h, err)) ||
            (st = flash_tensor_to_host(c, lf, h + n, err))) {
            free(h);
            return st;
        }
        double mr = 0, mf = 0;
        for (int i = 0; i < n; i++) {
            mr += h[i];
            mf += h[n + i];
        }
        free(h);
        flash_metric_result_add(d->stats, "disc_loss", lv);
        flash_metric_result_add(d->stats, "disc_real", mr / n);
        flash_metric_result_add(d->stats, "disc_fake", mf / n);
    }
    return FLASH_OK;
}

static flash_params *adv_params(void *self) { return ((adv *)self)->P; }

FLASH_COMPONENT_TABLE(flash_loss_api, adv_api, FLASH_KIND_LOSS, "adversarial",
                      "GAN loss (hinge or non-saturating) on x0-hat vs real data, own discriminator and Adam "
                      "(ADD; Imagine Flash 5.1)",
                      keys, adv_create, adv_destroy, .compute = adv_compute, .update = adv_update,
                      .params = adv_params)
