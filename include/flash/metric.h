/* Metrics (kind FLASH_KIND_METRIC): Fréchet distance, class accuracy,
 * precision/recall, sliced Wasserstein, exact NLL. A metric is configured
 * with what it compares against (an evaluator checkpoint, a reference
 * dataset, an analytic distribution) and computes named values. */
#ifndef FLASH_METRIC_H
#define FLASH_METRIC_H

#ifdef __cplusplus
extern "C" {
#endif

#define FLASH_METRIC_MAX_VALUES 16

typedef struct flash_metric_result {
    int n;
    char name[FLASH_METRIC_MAX_VALUES][32];
    double value[FLASH_METRIC_MAX_VALUES];
} flash_metric_result;

typedef struct flash_metric_api {
    flash_component head;
    /* samples (N, shape...) on the host; labels (N) or NULL. Appends its
     * values to out. c is a context on the pipeline's device (the same as
     * flash_env_device at create): a metric that runs a network makes its
     * contexts and keeps its parameters there and reads results back with
     * flash_tensor_to_host. */
    flash_status (*compute)(void *self, flash_ctx *c, const flash_tensor *samples, const int *labels,
                            flash_metric_result *out, flash_error *err);
} flash_metric_api;

FLASH_EXPORT void flash_metric_result_add(flash_metric_result *r, const char *name, double value);

#ifdef __cplusplus
}
#endif
#endif
