/* An out-of-tree loss plugin: the example of CONTRIBUTING.md, built by
 * tests/integration/plugin_out_of_tree.sh against an installed flash with
 *   cc -shared -fPIC my_loss.c $(pkg-config --cflags flash) -o my_loss.so
 *
 * my_loss = weight * mean(|pred - target|), the L1 distance (less sensitive
 * to outliers than the squared error). */
#include <flash/flash.h>
#include <stdlib.h>

typedef struct my_loss {
    float weight;
} my_loss;

/* Keys the loss accepts besides `plugin`; others are refused with a suggestion. */
static const char *const my_keys[] = {"weight", NULL};

static flash_status my_create(const flash_cfg *cfg, flash_env *env, void **self, flash_error *err)
{
    (void)env;
    float w;
    flash_status st = flash_cfg_float(cfg, "weight", 1.0f, &w, err);
    if (st) return st;
    if (!(w > 0)) return flash_cfg_error(flash_cfg_get(cfg, "weight"), err, "weight must be > 0, got %g", w);
    my_loss *m = malloc(sizeof *m);
    if (!m) return flash_error_set(err, FLASH_ERR_NOMEM, "loss 'my_loss': out of memory");
    m->weight = w;
    *self = m;
    return FLASH_OK;
}

static void my_destroy(void *self)
{
    free(self);
}

static flash_tensor *my_compute(void *self, flash_ctx *c, const flash_loss_in *in)
{
    const my_loss *m = self;
    if (!in->target) {
        flash_ctx_fail(c, "loss 'my_loss': needs a target");
        return NULL;
    }
    /* Every op passes NULL through, so one check at the end suffices. */
    return flash_scale(c, flash_mean(c, flash_abs(c, flash_sub(c, in->pred, in->target))), m->weight);
}

static const flash_loss_api my_loss_api = {
    .head = {sizeof my_loss_api, FLASH_KIND_LOSS, "my_loss", "mean absolute error (an out-of-tree example)", my_keys,
             my_create, my_destroy},
    .compute = my_compute,
};

static const flash_component *const components[] = {&my_loss_api.head};
static const flash_plugin_desc desc = {FLASH_ABI_MAJOR, FLASH_ABI_MINOR, "my_plugin", "0.1", components, 1};
FLASH_PLUGIN(desc)
