/* Metric `precision_recall`: improved precision and recall (Kynkäänniemi
 * et al., NeurIPS 2019, eqs. 1-3) in the evaluator's feature space, on the
 * first n generated samples against the first n reference examples: each
 * set's manifold is the union of balls around its points with the radius
 * of the point's k-th nearest neighbour (k = 3 as in the paper); precision
 * is the fraction of generated points in the real manifold, recall the
 * fraction of real points in the generated one (plugins/common/fd_math.h). */
#include "evaluator.h"
#include "fd_math.h"
#include "folder.h"

#include <stdlib.h>

static const char *const pr_keys[] = {FLASH_EVALUATOR_KEYS, "k", NULL};

typedef struct pr {
    flash_evaluator *e;
    int k;
} pr;

static void pr_destroy(void *self)
{
    pr *p = self;
    if (!p) return;
    flash_evaluator_close(p->e);
    free(p);
}

static flash_status pr_create(const flash_cfg *cfg, flash_env *env, void **self, flash_error *err)
{
    long k;
    flash_status st = flash_cfg_int(cfg, "k", 3, &k, err);
    if (st) return st;
    if (k < 1 || k > 1000) return flash_cfg_error(flash_cfg_get(cfg, "k"), err, "k must be in [1, 1000]");
    pr *p = calloc(1, sizeof *p);
    if (!p) return flash_error_set(err, FLASH_ERR_NOMEM, "metric 'precision_recall': out of memory");
    p->k = (int)k;
    if ((st = flash_evaluator_open(cfg, env, "precision_recall", &p->e, err))) {
        free(p);
        return st;
    }
    *self = p;
    return FLASH_OK;
}

static flash_status pr_compute(void *self, flash_ctx *c, const flash_tensor *samples, const int *labels,
                               flash_metric_result *out, flash_error *err)
{
    (void)c;
    (void)labels;
    pr *p = self;
    long n, m;
    int d, dr;
    const float *ref;
    float *gen = NULL;
    flash_status st;
    if ((st = flash_evaluator_check(p->e, samples, &n, err))) return st;
    if ((st = flash_evaluator_reference(p->e, &ref, &m, &dr, err))) return st;
    if (m > n) m = n; /* N generated against N real */
    if (n <= p->k || m <= p->k)
        return flash_error_set(err, FLASH_ERR_USAGE, "metric 'precision_recall': needs more than k = %d samples",
                               p->k);
    if ((st = flash_evaluator_run(p->e, samples->data, n, &gen, &d, NULL, err))) return st;
    float *rr = malloc((size_t)m * sizeof *rr), *rg = malloc((size_t)n * sizeof *rg);
    if (d != dr)
        st = flash_error_set(err, FLASH_ERR_USAGE, "metric 'precision_recall': feature dims differ (%d, %d)", d, dr);
    else if (!rr || !rg || fd_knn_radii2(ref, m, d, p->k, rr) || fd_knn_radii2(gen, n, d, p->k, rg))
        st = flash_error_set(err, FLASH_ERR_NOMEM, "metric 'precision_recall': out of memory");
    if (!st) {
        flash_evaluator_result(p->e, out, "precision", fd_manifold_coverage(gen, n, ref, m, d, rr));
        flash_evaluator_result(p->e, out, "recall", fd_manifold_coverage(ref, m, gen, n, d, rg));
    }
    free(gen);
    free(rr);
    free(rg);
    return st;
}

FLASH_COMPONENT_TABLE(flash_metric_api, precision_recall_metric, FLASH_KIND_METRIC, "precision_recall",
                      "k-NN manifold precision and recall in evaluator features (checkpoint, evaluator, n, k)",
                      pr_keys, pr_create, pr_destroy, .compute = pr_compute)
