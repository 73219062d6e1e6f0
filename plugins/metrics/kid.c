/* Metric `kid`: the kernel inception distance (Bińkowski et al. 2018) in
 * the evaluator's penultimate features, against the same reference as
 * `fd`: the unbiased MMD^2 with the cubic polynomial kernel, averaged over
 * random subsets (plugins/common/kid_math.h). Its estimate has no bias that
 * depends on the sample count, where the Fréchet distance's grows as the
 * count shrinks, so runs of different sizes compare. Reports kid (the
 * mean over subsets) and kid_sd (their spread).
 *
 * Keys: the evaluator's (evaluator.h), subsets (20), subset_size (1000),
 * seed (0: the subsets' draws). */
#include "evaluator.h"
#include "folder.h"
#include "kid_math.h"

#include <stdlib.h>

static const char *const kid_keys[] = {FLASH_EVALUATOR_KEYS, "subsets", "subset_size", "seed", NULL};

typedef struct kid {
    flash_evaluator *e;
    int subsets;
    long subset_size;
    uint64_t seed;
} kid;

static void kid_destroy(void *self)
{
    kid *k = self;
    if (!k) return;
    flash_evaluator_close(k->e);
    free(k);
}

static flash_status kid_create(const flash_cfg *cfg, flash_env *env, void **self, flash_error *err)
{
    long subsets, size, seed;
    flash_status st;
    if ((st = flash_cfg_int(cfg, "subsets", 20, &subsets, err)) ||
        (st = flash_cfg_int(cfg, "subset_size", 1000, &size, err)) || (st = flash_cfg_int(cfg, "seed", 0, &seed, err)))
        return st;
    if (subsets < 1 || subsets > 10000)
        return flash_cfg_error(flash_cfg_get(cfg, "subsets"), err, "subsets must be in [1, 10000]");
    if (size < 2 || size > 100000)
        return flash_cfg_error(flash_cfg_get(cfg, "subset_size"), err, "subset_size must be in [2, 100000]");
    kid *k = calloc(1, sizeof *k);
    if (!k) return flash_error_set(err, FLASH_ERR_NOMEM, "metric 'kid': out of memory");
    k->subsets = (int)subsets;
    k->subset_size = size;
    k->seed = (uint64_t)seed;
    if ((st = flash_evaluator_open(cfg, env, "kid", &k->e, err))) {
        free(k);
        return st;
    }
    *self = k;
    return FLASH_OK;
}

static flash_status kid_compute_metric(void *self, flash_ctx *c, const flash_tensor *samples, const int *labels,
                                       flash_metric_result *out, flash_error *err)
{
    (void)c;
    (void)labels;
    kid *k = self;
    long n, m;
    int d, dr;
    const float *ref;
    float *gen = NULL;
    flash_status st;
    if ((st = flash_evaluator_check(k->e, samples, &n, err))) return st;
    if ((st = flash_evaluator_reference(k->e, &ref, &m, &dr, err))) return st;
    if ((st = flash_evaluator_run(k->e, samples->data, n, &gen, &d, NULL, err))) return st;
    double mean = 0, sd = 0;
    if (d != dr)
        st = flash_error_set(err, FLASH_ERR_USAGE, "metric 'kid': feature dims differ (%d, reference %d)", d, dr);
    else if (kid_compute(gen, n, ref, m, d, k->subsets, k->subset_size, k->seed, &mean, &sd))
        st = flash_error_set(err, FLASH_ERR_NOMEM, "metric 'kid': out of memory (or fewer than 2 samples)");
    free(gen);
    if (!st) {
        flash_evaluator_result(k->e, out, "kid", mean);
        flash_evaluator_result(k->e, out, "kid_sd", sd);
    }
    return st;
}

FLASH_COMPONENT_TABLE(flash_metric_api, kid_metric, FLASH_KIND_METRIC, "kid",
                      "kernel inception distance (unbiased polynomial MMD^2) of evaluator features to a reference "
                      "split (checkpoint, evaluator, n, subsets)",
                      kid_keys, kid_create, kid_destroy, .compute = kid_compute_metric)
