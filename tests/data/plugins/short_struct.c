/* A plugin whose loss table is only the common head (as if built against
 * a header that lacked the loss's functions): refused as a short struct. */
#include <flash/flash.h>

static flash_status short_create(const flash_cfg *cfg, flash_env *env, void **self, flash_error *err)
{
    (void)cfg;
    (void)env;
    (void)err;
    *self = NULL;
    return FLASH_OK;
}

static const flash_component short_loss = {sizeof short_loss, FLASH_KIND_LOSS, "short_loss", "never loaded", NULL,
                                           short_create, NULL};

static const flash_component *const components[] = {&short_loss};
static const flash_plugin_desc desc = {FLASH_ABI_MAJOR, FLASH_ABI_MINOR, "short_struct", "0.1", components, 1};
FLASH_PLUGIN(desc)
