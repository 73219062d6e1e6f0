/* Noise schedules (kind FLASH_KIND_SCHEDULE): the variance-preserving
 * process x_t = alpha_t x0 + sigma_t eps (Imagine Flash eq. 1). A schedule
 * produces alpha/sigma; samplers and strategies only consume them. */
#ifndef FLASH_SCHEDULE_H
#define FLASH_SCHEDULE_H

#ifdef __cplusplus
extern "C" {
#endif

typedef struct flash_schedule_api {
    flash_component head;
    int (*num_train_timesteps)(void *self);
    /* alpha_t = sqrt(alphas_cumprod[t]), sigma_t = sqrt(1 - alphas_cumprod[t])
     * at integer t in [0, T-1]; fractional t interpolates (documented by the
     * plugin). */
    void (*alpha_sigma)(void *self, double t, double *alpha, double *sigma);
} flash_schedule_api;

#ifdef __cplusplus
}
#endif
#endif
