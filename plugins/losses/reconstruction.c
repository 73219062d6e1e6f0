/* Loss `reconstruction`: the distillation loss of Imagine Flash eq. (7),
 *   weight * mean( rho(x0_Phi - x0-hat_Theta(x_t, t)) ),
 * between the student's x0-hat and the shared target operator's plain
 * target: k teacher DDIM steps with CFG from the student's own input x_t
 * (distill_target). A strategy that brings its own target
 * (progressive, LCM, ADD) passes it in, and that is used instead. rho is
 * the square, or with `huber_c` > 0 the pseudo-Huber function
 * sqrt(d^2 + c^2) - c (Song & Dhariwal 2023), robust to outliers. A
 * strategy's per-sample weights (flash_loss_in.sample_weight: ADD's c(t),
 * progressive distillation's truncated SNR) weight each sample's mean.
 *
 * weighting: none (default), alpha2 or min_snr weighs each sample by its
 * timestep. The loss compares x0, and an epsilon-prediction student's x0
 * error is its noise error times sigma_t / alpha_t: unweighted, the
 * samples at t = 999 (1 / alpha = 157 on the linear schedule) dominate
 * the batch. min_snr (w = min(alpha_t^2 / sigma_t^2, min_snr_gamma), Hang
 * et al. 2023, as the teacher's training) makes it the noise-scale loss
 * (|d eps|^2 = SNR |d x0|^2) where the SNR is below gamma and caps the
 * near-clean end; alpha2 (w = alpha_t^2) is the same at large t, where
 * sigma is near 1, and weighs small t less. */
#include "distill.h"

#include <math.h>
#include <stddef.h>
#include <stdlib.h>

#include "flash/diffusion.h"

enum { WEIGHT_NONE, WEIGHT_ALPHA2, WEIGHT_MIN_SNR };
static const char *const weightings[] = {"none", "alpha2", "min_snr", NULL};

typedef struct recon {
    float weight, huber_c, min_snr_gamma;
    int weighting;
} recon;

static const char *const keys[] = {"weight", "huber_c", "weighting", "min_snr_gamma", NULL};

static flash_status rc_create(const flash_cfg *cfg, flash_env *env, void **self, flash_error *err)
{
    (void)env;
    recon r;
    flash_status st;
    if ((st = flash_cfg_float(cfg, "weight", 1.0f, &r.weight, err)) ||
        (st = flash_cfg_float(cfg, "huber_c", 0.0f, &r.huber_c, err)) ||
        (st = flash_cfg_enum(cfg, "weighting", weightings, WEIGHT_NONE, &r.weighting, err)) ||
        (st = flash_cfg_float(cfg, "min_snr_gamma", 5.0f, &r.min_snr_gamma, err)))
        return st;
    if (!(r.min_snr_gamma > 0.0f))
        return flash_cfg_error(flash_cfg_get(cfg, "min_snr_gamma"), err,
                               "loss 'reconstruction': min_snr_gamma must be > 0");
    if (!(r.huber_c >= 0.0f))
        return flash_cfg_error(flash_cfg_get(cfg, "huber_c"), err, "loss 'reconstruction': huber_c must be >= 0");
    recon *m = malloc(sizeof *m);
    if (!m) return flash_error_set(err, FLASH_ERR_NOMEM, "loss 'reconstruction': out of memory");
    *m = r;
    *self = m;
    return FLASH_OK;
}

static void rc_destroy(void *self) { free(self); }

/* mean(rho(a - b)), rho the square or the pseudo-Huber function */
static flash_tensor *distance(flash_ctx *c, flash_tensor *a, flash_tensor *b, float huber_c)
{
    if (huber_c <= 0.0f) return flash_mse(c, a, b);
    flash_tensor *d2 = flash_square(c, flash_sub(c, a, b));
    return flash_add_scalar(c, flash_mean(c, flash_sqrt(c, flash_add_scalar(c, d2, huber_c * huber_c))), -huber_c);
}

/* mean_i w_i mean_j rho(a_ij - b_ij): per-sample weights (N) */
static flash_tensor *weighted_distance(flash_ctx *c, flash_tensor *a, flash_tensor *b, float huber_c, flash_tensor *w)
{
    flash_tensor *d2 = flash_square(c, flash_sub(c, a, b));
    flash_tensor *r = huber_c <= 0.0f ? d2 : flash_add_scalar(c, flash_sqrt(c, flash_add_scalar(c, d2, huber_c * huber_c)), -huber_c);
    return flash_mean(c, flash_mul(c, flash_mean_per_sample(c, r), w));
}

static flash_tensor *rc_compute(void *self, flash_ctx *c, const flash_loss_in *in)
{
    const recon *m = self;
    flash_tensor *target = in->target;
    if (!target) {
        distill *d = in->distill;
        if (!d || !in->x_t || !in->cond || !in->cond->t) {
            flash_ctx_fail(c, "loss 'reconstruction': no target, and no distillation context to ask the teacher");
            return NULL;
        }
        const int n = in->cond->n;
        double *t = flash_host_alloc(c, (size_t)n * sizeof *t);
        if (!t) return NULL;
        for (int i = 0; i < n; i++) t[i] = in->cond->t[i];
        target = distill_target_each(d, c, in->x_t, t, in->cond->labels);
    }
    flash_tensor *w = in->size >= offsetof(flash_loss_in, sample_weight) + sizeof in->sample_weight
                          ? in->sample_weight
                          : NULL;
    if (m->weighting != WEIGHT_NONE) {
        const flash_cond *cd = in->cond;
        const int n = in->pred ? in->pred->shape[0] : 0;
        if (!cd || !cd->alpha || !cd->sigma || cd->n != n) {
            flash_ctx_fail(c, "loss 'reconstruction': weighting %s needs each sample's alpha_t and sigma_t",
                           weightings[m->weighting]);
            return NULL;
        }
        float *tw = flash_host_alloc(c, (size_t)n * sizeof *tw);
        if (!tw) return NULL;
        for (int i = 0; i < n; i++) {
            const double a2 = (double)cd->alpha[i] * cd->alpha[i], s2 = (double)cd->sigma[i] * cd->sigma[i];
            tw[i] = (float)(m->weighting == WEIGHT_ALPHA2 ? a2 : fmin(s2 > 0 ? a2 / s2 : m->min_snr_gamma, m->min_snr_gamma));
        }
        flash_tensor *tt = flash_tensor_from(c, 1, (int[]){n}, tw);
        w = w ? flash_mul(c, w, tt) : tt;
    }
    flash_tensor *l = w ? weighted_distance(c, in->pred, target, m->huber_c, w) : distance(c, in->pred, target, m->huber_c);
    return m->weight == 1.0f ? l : flash_scale(c, l, m->weight);
}

FLASH_COMPONENT_TABLE(flash_loss_api, recon_api, FLASH_KIND_LOSS, "reconstruction",
                      "eq. 7: student x0-hat vs the teacher's k-step target from x_t (squared or pseudo-Huber; weight)",
                      keys, rc_create, rc_destroy, .compute = rc_compute)
