/* Distillation strategies (kind FLASH_KIND_STRATEGY): how a training input
 * x_t is made and which target the student is compared with (backward,
 * forward, progressive, LCM, ADD). The distillation context is defined with
 * the strategies. */
#ifndef FLASH_STRATEGY_H
#define FLASH_STRATEGY_H

#ifdef __cplusplus
extern "C" {
#endif

struct flash_distill;

typedef struct flash_strategy_api {
    flash_component head;
    /* One training iteration: returns the scalar loss on the tape. */
    flash_tensor *(*step)(void *self, flash_ctx *c, struct flash_distill *d, int64_t iter);
} flash_strategy_api;

#ifdef __cplusplus
}
#endif
#endif
