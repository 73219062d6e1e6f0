/* A plugin built against ABI 1.0 (its descriptor says so): a host of a
 * later 1.x minor loads it (tests/integration/plugin_bad_abi.sh). */
#include <flash/flash.h>

static flash_status old_create(const flash_cfg *cfg, flash_env *env, void **self, flash_error *err)
{
    (void)cfg;
    (void)env;
    (void)err;
    *self = NULL;
    return FLASH_OK;
}

static const flash_loss_api old_loss = {
    .head = {sizeof old_loss, FLASH_KIND_LOSS, "abi_1_0_loss", "built against ABI 1.0", NULL, old_create, NULL},
};

static const flash_component *const components[] = {&old_loss.head};
static const flash_plugin_desc desc = {1, 0, "abi_1_0", "0.1", components, 1};
FLASH_PLUGIN(desc)
