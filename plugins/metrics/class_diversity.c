/* Metric `class_diversity`: for each class, the spread of the labelled
 * samples' evaluator features (the trace of their covariance) over the
 * spread of the reference's examples of that class (kid_math.h). Reports
 * diversity (the mean ratio over classes: 1 is real data's) and
 * diversity_min (the least diverse class). A student that draws the same
 * few images per class scores well below 1 even where its Fréchet
 * distance and class accuracy look right. Needs the samples' labels and a
 * labelled reference; classes with fewer than 2 samples on either side
 * are skipped.
 *
 * Keys: the evaluator's (evaluator.h). */
#include "evaluator.h"
#include "folder.h"
#include "kid_math.h"

#include <math.h>

static const char *const cd_keys[] = {FLASH_EVALUATOR_KEYS, NULL};

static flash_status cd_create(const flash_cfg *cfg, flash_env *env, void **self, flash_error *err)
{
    return flash_evaluator_open(cfg, env, "class_diversity", (flash_evaluator **)self, err);
}

static void cd_destroy(void *self) { flash_evaluator_close(self); }

static flash_status cd_compute(void *self, flash_ctx *c, const flash_tensor *samples, const int *labels,
                               flash_metric_result *out, flash_error *err)
{
    (void)c;
    flash_evaluator *e = self;
    if (!labels)
        return flash_error_set(err, FLASH_ERR_USAGE, "metric 'class_diversity' needs the samples' class labels");
    long n, m;
    int d, dr;
    const float *ref;
    float *gen = NULL;
    flash_status st;
    if ((st = flash_evaluator_check(e, samples, &n, err))) return st;
    if ((st = flash_evaluator_reference(e, &ref, &m, &dr, err))) return st;
    const int *rl = flash_evaluator_reference_labels(e);
    if (!rl) return flash_error_set(err, FLASH_ERR_USAGE, "metric 'class_diversity': the reference has no labels");
    if ((st = flash_evaluator_run(e, samples->data, n, &gen, &d, NULL, err))) return st;
    if (d != dr) {
        free(gen);
        return flash_error_set(err, FLASH_ERR_USAGE, "metric 'class_diversity': feature dims differ (%d, %d)", d, dr);
    }
    const int k = flash_evaluator_classes(e);
    double sum = 0, least = INFINITY;
    int used = 0;
    for (int cl = 0; cl < k; cl++) {
        long ng = 0, nr = 0;
        const double sg = class_spread(gen, labels, n, d, cl, &ng), sr = class_spread(ref, rl, m, d, cl, &nr);
        if (ng < 2 || nr < 2 || !(sr > 0) || isnan(sg)) continue;
        const double ratio = sg / sr;
        sum += ratio;
        if (ratio < least) least = ratio;
        used++;
    }
    free(gen);
    if (!used)
        return flash_error_set(err, FLASH_ERR_USAGE,
                               "metric 'class_diversity': no class has 2 samples on both sides");
    flash_evaluator_result(e, out, "diversity", sum / used);
    flash_evaluator_result(e, out, "diversity_min", least);
    return FLASH_OK;
}

FLASH_COMPONENT_TABLE(flash_metric_api, class_diversity_metric, FLASH_KIND_METRIC, "class_diversity",
                      "per-class spread of evaluator features over real data's (1 = as diverse as real data)",
                      cd_keys, cd_create, cd_destroy, .compute = cd_compute)
