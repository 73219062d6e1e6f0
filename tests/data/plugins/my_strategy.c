/* An out-of-tree distillation strategy, built against an installed flash
 * with the plugin kit (pkg-config flash-kit): direct distillation from
 * noise. The student, at its first timestep tau_0, predicts x0 from pure
 * noise x_T and the losses compare it with the teacher's k-step DDIM
 * solution from the same x_T (the kit's target operator). CONTRIBUTING.md
 * walks through it. */
#include <flash/flash.h>
#include <flash/diffusion.h>
#include <stdlib.h>

#include "distill.h" /* the kit: teacher, student, sampler, losses and the target operator */

typedef struct my_strategy {
    distill d; /* first: the kit's entries (distill_trained, ...) find it at self */
} my_strategy;

/* DISTILL_KEYS: the kit's own keys in the strategy's slot (target: {k, guidance_scale}) */
static const char *const my_keys[] = {DISTILL_KEYS, NULL};

static flash_tensor *my_step(void *self, flash_ctx *c, distill *d, int64_t iter)
{
    (void)self, (void)iter;
    const int n = d->batch_size;
    const double t = d->timesteps[0];
    flash_tensor *x_T = distill_noise(d, c, n);
    const int *labels = distill_labels(d, c, n);
    flash_denoised s;
    if (!x_T || flash_denoise(d->student, c, x_T, NULL, t, labels, 1.0f, NULL, &s)) return NULL;
    flash_cond cond = distill_cond(d, c, n, t, labels);
    flash_loss_in in = {.size = sizeof in, .pred = s.x0, .x_t = x_T, .cond = &cond, .distill = d,
                        .target = distill_target(d, c, x_T, t, labels)};
    if (!in.target) return NULL;
    return distill_losses(d, c, &in);
}

static void my_destroy(void *self)
{
    distill_close(self);
    free(self);
}

static flash_status my_create(const flash_cfg *cfg, flash_env *env, void **self, flash_error *err)
{
    my_strategy *m = calloc(1, sizeof *m);
    if (!m) return flash_error_set(err, FLASH_ERR_NOMEM, "strategy 'my_strategy': out of memory");
    flash_status st = distill_open(&m->d, cfg, env, my_step, self, m, err);
    if (st) my_destroy(m);
    return st;
}

static const flash_strategy_api my_strategy_api = {
    .head = {sizeof my_strategy_api, FLASH_KIND_STRATEGY, "my_strategy",
             "direct distillation from noise (an out-of-tree example)", my_keys, my_create, my_destroy},
    .trained = distill_trained,
    .step = distill_step,
    .after_step = distill_after_step,
};

static const flash_component *const components[] = {&my_strategy_api.head};
static const flash_plugin_desc desc = {FLASH_ABI_MAJOR, FLASH_ABI_MINOR, "my_strategy", "0.1", components, 1};
FLASH_PLUGIN(desc)
