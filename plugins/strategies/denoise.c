/* Strategy `denoise`: teacher training by denoising score matching.
 *
 * For a batch of real x0, draw t uniformly from {0, ..., T-1} and eps ~ N(0, I)
 * and form the forward process of Imagine Flash eq. (1)
 *     x_t = alpha_t x0 + sigma_t eps
 * (DDPM, Ho et al. 2020, eq. 4 in alpha/sigma notation). The model's output
 * is compared with the target of the chosen parameterisation:
 *     epsilon: eps          (Ho et al. 2020, eq. 14)
 *     sample:  x0
 *     v:       alpha_t eps - sigma_t x0   (Salimans & Ho 2022, sec. 4)
 * `prediction: auto` (the default) regresses the model's own prediction
 * type; another one converts the output first (e.g. an epsilon model trained with an
 * x0 loss: x0_hat = (x_t - sigma_t eps_hat) / alpha_t).
 *
 * Classifier-free guidance training (Ho & Salimans 2022, Algorithm 1):
 * each label is replaced by the null class (index num_classes) with
 * probability label_dropout, so one network learns the conditional and the
 * unconditional model.
 *
 * Min-SNR-gamma weighting (Hang et al. 2023, eq. 9): with SNR = alpha^2 /
 * sigma^2, the per-sample loss weight relative to an x0 loss is
 * min(SNR, gamma); for an epsilon loss that is min(SNR, gamma) / SNR and for
 * a v loss min(SNR, gamma) / (SNR + 1). min_snr_gamma: 0 turns it off.
 */
#include "model_trainer.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

enum { TARGET_AUTO = -1 };

typedef struct denoise {
    model_trainer mt;
    float label_dropout;
    int target; /* what the loss regresses: TARGET_AUTO or a flash_prediction */
    float min_snr_gamma;
    int cap;
    float *t, *alpha, *sigma, *a, *b, *w;
    int *labels;
} denoise;

static void dn_destroy(void *self)
{
    denoise *d = self;
    if (!d) return;
    free(d->t);
    free(d->alpha);
    free(d->sigma);
    free(d->a);
    free(d->b);
    free(d->w);
    free(d->labels);
    model_trainer_close(&d->mt);
    free(d);
}

static const char *const dn_targets[] = {"auto", "epsilon", "v", "sample", NULL};

static flash_tensor *dn_step(void *self, flash_ctx *c, const train_batch *bt, int64_t iter);

static flash_status dn_create(const flash_cfg *cfg, flash_env *env, void **self, flash_error *err)
{
    denoise *d = calloc(1, sizeof *d);
    if (!d) return flash_error_set(err, FLASH_ERR_NOMEM, "denoise: out of memory");
    int tgt = 0;
    flash_status st;
    if (flash_cfg_get(cfg, "target")) {
        st = flash_cfg_error(flash_cfg_get(cfg, "target"), err,
                             "denoise.target is now denoise.prediction (what the loss regresses)");
        goto fail;
    }
    if ((st = flash_cfg_float(cfg, "label_dropout", 0.1f, &d->label_dropout, err)) ||
        (st = flash_cfg_enum(cfg, "prediction", dn_targets, 0, &tgt, err)) ||
        (st = flash_cfg_float(cfg, "min_snr_gamma", 0.0f, &d->min_snr_gamma, err)))
        goto fail;
    if (!(d->label_dropout >= 0 && d->label_dropout <= 1)) {
        st = flash_cfg_error(flash_cfg_get(cfg, "label_dropout"), err, "must be a probability in [0, 1]");
        goto fail;
    }
    if (!(d->min_snr_gamma >= 0)) {
        st = flash_cfg_error(flash_cfg_get(cfg, "min_snr_gamma"), err, "must be >= 0 (0: no weighting)");
        goto fail;
    }
    d->target = tgt == 0 ? TARGET_AUTO : tgt - 1;
    if ((st = model_trainer_open(&d->mt, env, dn_step, self, d, err))) goto fail;
    return FLASH_OK;
fail:
    dn_destroy(d);
    return st;
}

static int dn_reserve(denoise *d, int n)
{
    if (n <= d->cap) return 1;
    float **fs[] = {&d->t, &d->alpha, &d->sigma, &d->a, &d->b, &d->w};
    for (size_t i = 0; i < sizeof fs / sizeof fs[0]; i++) {
        float *p = realloc(*fs[i], (size_t)n * sizeof(float));
        if (!p) return 0;
        *fs[i] = p;
    }
    int *l = realloc(d->labels, (size_t)n * sizeof(int));
    if (!l) return 0;
    d->labels = l;
    d->cap = n;
    return 1;
}

/* Coefficients (a, b) with x0_hat = a x_t + b out and eps_hat = a x_t + b out
 * for an output of type p (variance preserving: alpha^2 + sigma^2 = 1). */
static void to_x0(flash_prediction p, double al, double sg, double *a, double *b)
{
    switch (p) {
    case FLASH_PRED_EPSILON: *a = 1 / al, *b = -sg / al; break;
    case FLASH_PRED_SAMPLE: *a = 0, *b = 1; break;
    case FLASH_PRED_V: *a = al, *b = -sg; break;
    }
}

static void to_eps(flash_prediction p, double al, double sg, double *a, double *b)
{
    switch (p) {
    case FLASH_PRED_EPSILON: *a = 0, *b = 1; break;
    case FLASH_PRED_SAMPLE: *a = 1 / sg, *b = -al / sg; break;
    case FLASH_PRED_V: *a = sg, *b = al; break;
    }
}

static flash_tensor *dn_step(void *self, flash_ctx *c, const train_batch *bt, int64_t iter)
{
    denoise *d = self;
    (void)iter;
    if (!bt->schedule) {
        flash_ctx_fail(c, "denoise: the pipeline needs a schedule (schedule: {plugin: ...})");
        return NULL;
    }
    flash_tensor *x0 = bt->x;
    if (!x0) return NULL;
    const int n = x0->shape[0];
    if (!dn_reserve(d, n)) {
        flash_ctx_fail(c, "denoise: out of memory for a batch of %d", n);
        return NULL;
    }
    const flash_schedule_api *sch = FLASH_API(bt->schedule, flash_schedule_api);
    const flash_model_api *m = FLASH_API(bt->model, flash_model_api);
    flash_model_info mi;
    m->info(bt->model->self, &mi);
    const int T = sch->num_train_timesteps(bt->schedule->self);
    if (T < 1) {
        flash_ctx_fail(c, "denoise: schedule '%s' has no timesteps", bt->schedule->comp->name);
        return NULL;
    }

    /* per-sample draws for the whole global batch, this shard's kept */
    const int first = train_batch_first(bt, n), global = train_batch_global(bt, n);
    for (int g = 0; g < global; g++) {
        int t = (int)flash_rng_below(bt->rng, (uint64_t)T);
        if (g < first || g >= first + n) continue;
        const int i = g - first;
        double al, sg;
        sch->alpha_sigma(bt->schedule->self, (double)t, &al, &sg);
        d->t[i] = (float)t;
        d->alpha[i] = (float)al;
        d->sigma[i] = (float)sg;
    }
    flash_tensor *eps = train_batch_randn(bt, c, x0);
    flash_tensor *xt = flash_axpby(c, d->alpha, x0, d->sigma, eps);

    const int *labels = NULL;
    if (mi.num_classes > 0 && bt->labels) {
        for (int g = 0; g < global; g++) {
            int drop = !bt->eval && d->label_dropout > 0 && flash_rng_uniform(bt->rng) < d->label_dropout;
            if (g >= first && g < first + n) d->labels[g - first] = drop ? mi.num_classes : bt->labels[g - first];
        }
        labels = d->labels;
    }
    flash_cond cond = {.n = n, .t = d->t, .alpha = d->alpha, .sigma = d->sigma, .labels = labels};
    flash_tensor *out = m->forward(bt->model->self, c, xt, &cond);

    const flash_prediction tgt = d->target == TARGET_AUTO ? mi.prediction : (flash_prediction)d->target;
    flash_tensor *pred = out;
    if (tgt != mi.prediction) {
        for (int i = 0; i < n; i++) {
            double al = d->alpha[i], sg = d->sigma[i], ax = 0, bx = 1, ae = 0, be = 1;
            to_x0(mi.prediction, al, sg, &ax, &bx);
            to_eps(mi.prediction, al, sg, &ae, &be);
            double a = tgt == FLASH_PRED_SAMPLE ? ax : tgt == FLASH_PRED_EPSILON ? ae : al * ae - sg * ax;
            double b = tgt == FLASH_PRED_SAMPLE ? bx : tgt == FLASH_PRED_EPSILON ? be : al * be - sg * bx;
            d->a[i] = (float)a;
            d->b[i] = (float)b;
        }
        pred = flash_axpby(c, d->a, xt, d->b, out);
    }
    flash_tensor *target;
    if (tgt == FLASH_PRED_EPSILON)
        target = eps;
    else if (tgt == FLASH_PRED_SAMPLE)
        target = x0;
    else {
        for (int i = 0; i < n; i++) d->a[i] = -d->sigma[i];
        target = flash_axpby(c, d->alpha, eps, d->a, x0);
    }
    if (d->min_snr_gamma <= 0) return flash_mse(c, pred, target);

    for (int i = 0; i < n; i++) {
        double al = d->alpha[i], sg = d->sigma[i];
        const double g = d->min_snr_gamma;
        double snr = sg > 0 ? al * al / (sg * sg) : INFINITY;
        double clipped = snr < g ? snr : g;
        /* min(SNR, g) / SNR written as min(1, g / SNR): finite at SNR = 0
         * (a zero-terminal-SNR schedule's t = T) and at SNR = inf. */
        double w_eps = snr <= g ? 1.0 : g / snr;
        d->w[i] = (float)(tgt == FLASH_PRED_SAMPLE ? clipped : tgt == FLASH_PRED_EPSILON ? w_eps : clipped / (snr + 1));
    }
    int wn[1] = {n};
    flash_tensor *per = flash_mean_per_sample(c, flash_square(c, flash_sub(c, pred, target)));
    return flash_mean(c, flash_mul(c, per, flash_tensor_from(c, 1, wn, d->w)));
}

/* "target": the old name of "prediction", kept to say so */
static const char *const dn_keys[] = {"label_dropout", "prediction", "min_snr_gamma", "target", NULL};

MODEL_TRAINER_STRATEGY(denoise_strategy, "denoise",
                       "teacher training: x_t = alpha x0 + sigma eps, epsilon/v/x0 loss, CFG label dropout, min-SNR",
                       dn_keys, dn_create, dn_destroy)
