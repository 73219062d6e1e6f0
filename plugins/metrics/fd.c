/* Metric `fd`: the Fréchet distance (Heusel et al. 2017, eq. 6; FID with a
 * Fashion-MNIST classifier in place of Inception, the paper's FID column)
 * between Gaussians fitted to the evaluator's penultimate features of the
 * first n generated samples and of the reference split (by default the
 * evaluator config's dataset, test split: 10,000 images). Means and
 * covariances are accumulated in double; tr((S1 S2)^{1/2}) is computed as
 * the sum of the square roots of the eigenvalues of S1^{1/2} S2 S1^{1/2},
 * both from Jacobi eigendecompositions (plugins/common/fd_math.h).
 *
 * Keys: the evaluator's (evaluator.h) and
 *   bootstrap: B (default 0: off). With B > 0 the n samples' features are
 *              resampled with replacement B times, the reference kept
 *              fixed, and fd_lo and fd_hi (fd_b_lo, fd_b_hi with suffix
 *              _b) are the 2.5% and 97.5% percentiles of the B distances,
 *              less the bootstrap's estimate of FD's small-sample bias
 *              (their mean minus fd): the spread that a noise bank of n
 *              samples leaves in fd (fd_bootstrap in fd_math.h). The
 *              resamples are drawn from the fixed seed 0xfd (the metric's
 *              name as hex digits): the interval depends on the features
 *              and B alone, the same on every rank count, and fd and fd_b
 *              resample the same rows. fd itself is the same with the
 *              bootstrap on or off. */
#include "evaluator.h"
#include "fd_math.h"
#include "folder.h"

#include <stdlib.h>

#define FD_BOOTSTRAP_SEED 0xfdu

static const char *const fd_keys[] = {FLASH_EVALUATOR_KEYS, "bootstrap", NULL};

typedef struct fd {
    flash_evaluator *e;
    int bootstrap;
} fd;

static void fd_destroy(void *self)
{
    fd *f = self;
    if (!f) return;
    flash_evaluator_close(f->e);
    free(f);
}

static flash_status fd_create(const flash_cfg *cfg, flash_env *env, void **self, flash_error *err)
{
    long boot;
    flash_status st;
    if ((st = flash_cfg_int(cfg, "bootstrap", 0, &boot, err))) return st;
    if (boot < 0 || boot > 100000)
        return flash_cfg_error(flash_cfg_get(cfg, "bootstrap"), err,
                               "bootstrap must be in [0, 100000] (0: no interval)");
    fd *f = calloc(1, sizeof *f);
    if (!f) return flash_error_set(err, FLASH_ERR_NOMEM, "metric 'fd': out of memory");
    f->bootstrap = (int)boot;
    if ((st = flash_evaluator_open(cfg, env, "fd", &f->e, err))) {
        free(f);
        return st;
    }
    *self = f;
    return FLASH_OK;
}

static flash_status fd_compute(void *self, flash_ctx *c, const flash_tensor *samples, const int *labels,
                               flash_metric_result *out, flash_error *err)
{
    (void)c;
    (void)labels;
    fd *f = self;
    flash_evaluator *e = f->e;
    long n, m;
    int d, dr;
    const float *ref;
    float *gen = NULL;
    flash_status st;
    if ((st = flash_evaluator_check(e, samples, &n, err))) return st;
    if ((st = flash_evaluator_reference(e, &ref, &m, &dr, err))) return st;
    if ((st = flash_evaluator_run(e, samples->data, n, &gen, &d, NULL, err))) return st;
    size_t dd = (size_t)d * (size_t)d;
    double *mu1 = malloc((size_t)d * sizeof *mu1), *mu2 = malloc((size_t)d * sizeof *mu2);
    double *s1 = malloc(dd * sizeof *s1), *s2 = malloc(dd * sizeof *s2);
    double v = 0, lo = 0, hi = 0;
    if (d != dr)
        st = flash_error_set(err, FLASH_ERR_USAGE, "metric 'fd': feature dims differ (%d, reference %d)", d, dr);
    else if (!mu1 || !mu2 || !s1 || !s2 || fd_moments(gen, n, d, mu1, s1) || fd_moments(ref, m, d, mu2, s2) ||
             fd_frechet(mu1, s1, mu2, s2, d, &v) ||
             (f->bootstrap && fd_bootstrap(gen, n, d, mu2, s2, v, f->bootstrap, 0.95, FD_BOOTSTRAP_SEED, &lo, &hi)))
        st = flash_error_set(err, FLASH_ERR_NOMEM, "metric 'fd': out of memory (or fewer than 2 reference examples)");
    free(gen);
    free(mu1);
    free(mu2);
    free(s1);
    free(s2);
    if (!st) {
        flash_evaluator_result(e, out, "fd", v);
        if (f->bootstrap) {
            flash_evaluator_result_tail(e, out, "fd", "_lo", lo);
            flash_evaluator_result_tail(e, out, "fd", "_hi", hi);
        }
    }
    return st;
}

FLASH_COMPONENT_TABLE(flash_metric_api, fd_metric, FLASH_KIND_METRIC, "fd",
                      "Fréchet distance of evaluator features to a reference split (checkpoint, evaluator, n, "
                      "bootstrap)",
                      fd_keys, fd_create, fd_destroy, .compute = fd_compute)
