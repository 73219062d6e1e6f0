/* Helpers for metric results (metric.h). */
#include "flash/flash.h"

#include <stdio.h>

void flash_metric_result_add(flash_metric_result *r, const char *name, double value)
{
    /* A full result keeps its first values: metrics report at most
     * FLASH_METRIC_MAX_VALUES each. */
    if (!r || r->n < 0 || r->n >= FLASH_METRIC_MAX_VALUES) return;
    snprintf(r->name[r->n], sizeof r->name[r->n], "%s", name ? name : "");
    r->value[r->n] = value;
    r->n++;
}
