/* Helpers for metric results (metric.h). */
#include "flash/flash.h"
#include "flash/log.h"

#include <stdio.h>

void flash_metric_result_add(flash_metric_result *r, const char *name, double value)
{
    /* A full result keeps its first values: metrics report at most
     * FLASH_METRIC_MAX_VALUES each. A value past them is said, not lost
     * in silence. */
    if (!r || r->n < 0) return;
    if (r->n >= FLASH_METRIC_MAX_VALUES) {
        flash_warn("a metric result holds at most %d values: '%s' = %g is dropped", FLASH_METRIC_MAX_VALUES,
                   name ? name : "", value);
        return;
    }
    snprintf(r->name[r->n], sizeof r->name[r->n], "%s", name ? name : "");
    r->value[r->n] = value;
    r->n++;
}
