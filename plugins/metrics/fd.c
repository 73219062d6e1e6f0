/* Metric `fd`: the Fréchet distance (Heusel et al. 2017, eq. 6; FID with a
 * Fashion-MNIST classifier in place of Inception, the paper's FID column)
 * between Gaussians fitted to the evaluator's penultimate features of the
 * first n generated samples and of the reference split (by default the
 * evaluator config's dataset, test split: 10,000 images). Means and
 * covariances are accumulated in double; tr((S1 S2)^{1/2}) is computed as
 * the sum of the square roots of the eigenvalues of S1^{1/2} S2 S1^{1/2},
 * both from Jacobi eigendecompositions (plugins/common/fd_math.h). */
#include "evaluator.h"
#include "fd_math.h"
#include "folder.h"

#include <stdlib.h>

static const char *const fd_keys[] = {FLASH_EVALUATOR_KEYS, NULL};

static flash_status fd_create(const flash_cfg *cfg, flash_env *env, void **self, flash_error *err)
{
    return flash_evaluator_open(cfg, env, "fd", (flash_evaluator **)self, err);
}

static void fd_destroy(void *self) { flash_evaluator_close(self); }

static flash_status fd_compute(void *self, flash_ctx *c, const flash_tensor *samples, const int *labels,
                               flash_metric_result *out, flash_error *err)
{
    (void)c;
    (void)labels;
    flash_evaluator *e = self;
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
    double v = 0;
    if (d != dr)
        st = flash_error_set(err, FLASH_ERR_USAGE, "metric 'fd': feature dims differ (%d, reference %d)", d, dr);
    else if (!mu1 || !mu2 || !s1 || !s2 || fd_moments(gen, n, d, mu1, s1) || fd_moments(ref, m, d, mu2, s2) ||
             fd_frechet(mu1, s1, mu2, s2, d, &v))
        st = flash_error_set(err, FLASH_ERR_NOMEM, "metric 'fd': out of memory");
    free(gen);
    free(mu1);
    free(mu2);
    free(s1);
    free(s2);
    if (!st) flash_evaluator_result(e, out, "fd", v);
    return st;
}

FLASH_COMPONENT_TABLE(flash_metric_api, fd_metric, FLASH_KIND_METRIC, "fd",
                      "Fréchet distance of evaluator features to a reference split (checkpoint, evaluator, n)",
                      fd_keys, fd_create, fd_destroy, .compute = fd_compute)
