/* Metric `class_acc`: the fraction of the first n labelled samples that the
 * evaluator classifies as their requested label (the class-conditioning
 * check that stands in for the paper's CLIP score on Fashion-MNIST).
 * Samples with the null class (unconditional) are not counted. */
#include "evaluator.h"
#include "folder.h"

#include <stdlib.h>

static const char *const ca_keys[] = {FLASH_EVALUATOR_KEYS, NULL};

static flash_status ca_create(const flash_cfg *cfg, flash_env *env, void **self, flash_error *err)
{
    return flash_evaluator_open(cfg, env, "class_acc", (flash_evaluator **)self, err);
}

static void ca_destroy(void *self) { flash_evaluator_close(self); }

static flash_status ca_compute(void *self, flash_ctx *c, const flash_tensor *samples, const int *labels,
                               flash_metric_result *out, flash_error *err)
{
    (void)c;
    flash_evaluator *e = self;
    long n;
    flash_status st;
    if (!labels) return flash_error_set(err, FLASH_ERR_USAGE, "metric 'class_acc': the samples have no labels");
    if ((st = flash_evaluator_check(e, samples, &n, err))) return st;
    int *pred = malloc((size_t)n * sizeof *pred);
    if (!pred) return flash_error_set(err, FLASH_ERR_NOMEM, "metric 'class_acc': out of memory");
    if ((st = flash_evaluator_run(e, samples->data, n, NULL, NULL, pred, err))) {
        free(pred);
        return st;
    }
    long hit = 0, cond = 0;
    int k = flash_evaluator_classes(e);
    for (long i = 0; i < n; i++) {
        if (labels[i] < 0 || labels[i] >= k) continue;
        cond++;
        hit += pred[i] == labels[i];
    }
    free(pred);
    if (cond == 0) return flash_error_set(err, FLASH_ERR_USAGE, "metric 'class_acc': no class-conditional samples");
    flash_evaluator_result(e, out, "class_acc", (double)hit / (double)cond);
    return FLASH_OK;
}

FLASH_COMPONENT_TABLE(flash_metric_api, class_acc_metric, FLASH_KIND_METRIC, "class_acc",
                      "fraction of samples the evaluator assigns to their label (checkpoint, evaluator, n)", ca_keys,
                      ca_create, ca_destroy, .compute = ca_compute)
