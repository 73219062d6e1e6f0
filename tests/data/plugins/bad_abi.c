/* A plugin that claims ABI 99.0: the loader must refuse it, naming this
 * file and both versions (tests/integration/plugin_bad_abi.sh). */
#include <flash/flash.h>

static flash_status bad_create(const flash_cfg *cfg, flash_env *env, void **self, flash_error *err)
{
    (void)cfg;
    (void)env;
    (void)err;
    *self = NULL;
    return FLASH_OK;
}

static const flash_loss_api bad_loss = {
    .head = {sizeof bad_loss, FLASH_KIND_LOSS, "bad_abi_loss", "never loaded", NULL, bad_create, NULL},
};

static const flash_component *const components[] = {&bad_loss.head};
static const flash_plugin_desc desc = {99, 0, "bad_abi", "0.1", components, 1};
FLASH_PLUGIN(desc)
