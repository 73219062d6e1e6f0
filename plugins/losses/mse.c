/* Loss `mse`: weight * mean((pred - target)^2).
 *
 * The plain squared-error distillation loss of Imagine Flash eq. (6),
 * || x^Phi_{t->0} - x0hat(x_t, eps_Theta, t) ||^2, averaged over elements
 * so that its scale does not depend on the image size; also the usual
 * regression loss for training a model on a given target. */
#include "folder.h"

#include <stdlib.h>

typedef struct mse {
    float weight;
} mse;

static const char *const mse_keys[] = {"weight", NULL};

static flash_status mse_create(const flash_cfg *cfg, flash_env *env, void **self, flash_error *err)
{
    (void)env;
    float w;
    flash_status st = flash_cfg_float(cfg, "weight", 1.0f, &w, err);
    if (st) return st;
    mse *m = malloc(sizeof *m);
    if (!m) return flash_error_set(err, FLASH_ERR_NOMEM, "loss 'mse': out of memory");
    m->weight = w;
    *self = m;
    return FLASH_OK;
}

static void mse_destroy(void *self)
{
    free(self);
}

static flash_tensor *mse_compute(void *self, flash_ctx *c, const flash_loss_in *in)
{
    const mse *m = self;
    if (!in->target) {
        flash_ctx_fail(c, "loss 'mse': no target to compare the prediction with");
        return NULL;
    }
    flash_tensor *l = flash_mse(c, in->pred, in->target);
    return m->weight == 1.0f ? l : flash_scale(c, l, m->weight);
}

FLASH_COMPONENT_TABLE(flash_loss_api, mse_loss, FLASH_KIND_LOSS, "mse",
                      "mean squared error between prediction and target (weight)", mse_keys, mse_create, mse_destroy,
                      .compute = mse_compute)
