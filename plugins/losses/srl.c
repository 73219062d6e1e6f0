/* Loss `srl`: the shifted reconstruction loss of Imagine Flash eq. (8),
 *   weight * mean( rho(x0_Phi(q(stopgrad(x0-hat), eps, gamma(t))) - x0-hat) ),
 * the same comparison as `reconstruction` but against the target the
 * shared target operator makes from the student's own x0-hat, re-noised
 * with fresh noise to t_phi = gamma(t) and denoised by k teacher DDIM steps
 * with CFG (distill_target from t_phi). For large t the teacher restores
 * structure and semantics around the student's sample, for small t it
 * adds detail (section 4.2). Keys: weight, huber_c (pseudo-Huber, 0:
 * square), gamma (the shift map: `paper` (the default: 990 / 950 / 200,
 * section 5.1) or rows [[above, value], ...], t > above -> value). */
#include "distill.h"
#include "shift_map.h"

#include <stdlib.h>

typedef struct srl {
    float weight, huber_c;
    shift_map gamma;
} srl;

static const char *const keys[] = {"weight", "huber_c", "gamma", NULL};

static flash_status srl_create(const flash_cfg *cfg, flash_env *env, void **self, flash_error *err)
{
    (void)env;
    srl r;
    flash_status st;
    if ((st = flash_cfg_float(cfg, "weight", 1.0f, &r.weight, err)) ||
        (st = flash_cfg_float(cfg, "huber_c", 0.0f, &r.huber_c, err)) ||
        (st = shift_map_read(cfg, "gamma", FLASH_MAX_STEPS, &r.gamma, err)))
        return st;
    if (!(r.huber_c >= 0.0f))
        return flash_cfg_error(flash_cfg_get(cfg, "huber_c"), err, "loss 'srl': huber_c must be >= 0");
    srl *m = malloc(sizeof *m);
    if (!m) return flash_error_set(err, FLASH_ERR_NOMEM, "loss 'srl': out of memory");
    *m = r;
    *self = m;
    return FLASH_OK;
}

static void srl_destroy(void *self) { free(self); }

static flash_tensor *srl_compute(void *self, flash_ctx *c, const flash_loss_in *in)
{
    const srl *m = self;
    distill *d = in->distill;
    if (!d || !in->cond || !in->cond->t) {
        flash_ctx_fail(c, "loss 'srl': needs the distillation context (use it in flash distill)");
        return NULL;
    }
    /* eq. (8): X_{t_phi} = q(stopgrad(x0-hat), eps, gamma(t)) with fresh eps,
     * from a stream of the loss's own: adding SRL changes no other draw */
    const int n = in->cond->n;
    double *tp = flash_host_alloc(c, (size_t)n * sizeof *tp);
    if (!tp) return NULL;
    for (int i = 0; i < n; i++) tp[i] = shift_map_eval(&m->gamma, in->cond->t[i]);
    flash_rng fresh = distill_own_stream(d, "srl");
    flash_tensor *target = distill_renoised_target_each(d, c, in->pred, tp, in->cond->labels, &fresh);
    if (!target) return NULL;
    flash_tensor *l;
    if (m->huber_c <= 0.0f) {
        l = flash_mse(c, in->pred, target);
    } else {
        flash_tensor *d2 = flash_square(c, flash_sub(c, in->pred, target));
        l = flash_add_scalar(c, flash_mean(c, flash_sqrt(c, flash_add_scalar(c, d2, m->huber_c * m->huber_c))),
                             -m->huber_c);
    }
    return m->weight == 1.0f ? l : flash_scale(c, l, m->weight);
}

FLASH_COMPONENT_TABLE(flash_loss_api, srl_api, FLASH_KIND_LOSS, "srl",
                      "eq. 8: shifted reconstruction loss, teacher target from the student's x0-hat re-noised to "
                      "gamma(t)",
                      keys, srl_create, srl_destroy, .compute = srl_compute)
