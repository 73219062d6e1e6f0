/* Loading a model slot's weights from the checkpoint a pipeline names
 * (include/flash/trainer.h): `<slot>_checkpoint` and `<slot>_weights`. */
#include "flash/flash.h"
#include "flash/trainer.h"

#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

flash_status flash_slot_load(const flash_cfg *root, const char *slot, flash_instance *model, flash_error *err)
{
    char ckpt_key[96], weights_key[96];
    snprintf(ckpt_key, sizeof ckpt_key, "%s_checkpoint", slot);
    snprintf(weights_key, sizeof weights_key, "%s_weights", slot);
    const char *path = NULL;
    flash_status st = flash_cfg_str(root, ckpt_key, NULL, &path, err);
    if (st) return st;
    const flash_model_api *api = FLASH_API(model, flash_model_api);
    flash_params *p = api->params ? api->params(model->self) : NULL;
    if (p && flash_params_count(p) == 0) p = NULL;
    if (!path) {
        if (p)
            return flash_cfg_error(flash_cfg_get(root, slot), err,
                                   "%s '%s' has parameters: name its weights with `%s:`", slot, model->comp->name,
                                   ckpt_key);
        return FLASH_OK;
    }
    const flash_cfg *node = flash_cfg_get(root, ckpt_key);
    if (!p) return flash_cfg_error(node, err, "%s '%s' has no parameters to load", slot, model->comp->name);
    char full[4096];
    struct stat sb;
    if (!flash_cfg_resolve_path(node, path, full, sizeof full)) return flash_cfg_error(node, err, "path too long");
    if (stat(full, &sb) != 0) return flash_cfg_error(node, err, "no %s checkpoint at '%s'", slot, path);
    if ((st = flash_checkpoint_load(full, p, NULL, err))) return st;
    /* the EMA weights by default (what a trained model samples with); an
     * early checkpoint's EMA still carries much of the initialisation, so
     * `<slot>_weights: raw` takes the trained weights themselves */
    static const char *const which[] = {"ema", "raw", NULL};
    int w = 0;
    if ((st = flash_cfg_enum(root, weights_key, which, 0, &w, err))) return st;
    if (w == 0 && flash_params_ema(p) && (st = flash_params_swap_ema(p, err))) return st;
    return FLASH_OK;
}

flash_status flash_teacher_load(const flash_cfg *root, flash_instance *model, flash_error *err)
{
    return flash_slot_load(root, "teacher", model, err);
}
