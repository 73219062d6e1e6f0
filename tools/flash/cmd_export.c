/* flash export CHECKPOINT --out FILE [--slot S] [--weights ema|raw]
 *
 * A checkpoint's weights alone: its EMA copy (or its trained weights) as
 * the parameters of a new checkpoint without the EMA block and Adam's
 * moments, a quarter of a training checkpoint's size. That is the form of
 * a reference model (results/checkpoints/) that others load as a teacher
 * or an evaluator: any `<slot>_checkpoint:` reads it as it is. The model is
 * rebuilt from the config the checkpoint records, so every name and shape
 * is checked on the way, and the new file records the same config and
 * step. */
#include "cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct export_args {
    const char *ckpt, *out, *slot, *weights;
} export_args;

static const char *const weight_kinds[] = {"ema", "raw", NULL};

static const flash_opt export_opts[] = {
    FLASH_REQUIRED("--out", "FILE", export_args, out, "the new checkpoint (required)"),
    FLASH_STRING("--slot", "S", export_args, slot,
                 "the config's model slot the weights belong to (default:\n"
                 "model, else student: what flash train or flash distill trained)"),
    FLASH_CHOICE("--weights", "W", export_args, weights, weight_kinds,
                 "ema (default: the EMA copy, what samplers use) or raw\n"
                 "(the trained weights); a checkpoint without EMA has raw only"),
    FLASH_OPT_FORCE_ENTRY,
    {0},
};

static const flash_command export_cmd = {
    .name = "export",
    .positional = "CHECKPOINT",
    .positional_offset = offsetof(export_args, ckpt),
    .opts = export_opts,
    .about = "Writes a checkpoint's weights alone (the EMA copy by default) as a new\n"
             "checkpoint without optimiser state: the form of a reference teacher or\n"
             "evaluator that pipelines load with `<slot>_checkpoint:`. The model is\n"
             "rebuilt from the config recorded in the checkpoint; names and shapes are\n"
             "checked. The new file keeps that config and the step.\n",
    .epilogue = "Exit codes: 0 success, 2 bad usage or input, 1 any other failure.\n",
};

/* The config a checkpoint records (its __metadata__ "config"), malloc'd. */
static flash_status recorded_config(const char *path, char **yaml, flash_error *err)
{
    flash_safetensors *st = NULL;
    flash_status s = flash_safetensors_open(path, &st, err);
    if (s) return s;
    const char *cfg = flash_safetensors_meta(st, "config");
    if (!cfg) s = flash_error_set(err, FLASH_ERR_USAGE, "%s: records no config (not a flash training checkpoint)", path);
    else if (!(*yaml = strdup(cfg))) s = flash_error_set(err, FLASH_ERR_NOMEM, "out of memory");
    flash_safetensors_close(st);
    return s;
}

int flash_cmd_export(int argc, char **argv)
{
    export_args a = {0};
    int rc;
    if (!flash_options_parse(&export_cmd, argc, argv, &a, &rc)) return rc;
    flash_error err = {0};
    char *yaml = NULL;
    flash_cli_pipeline p = {0};
    flash_instance src = {0}, dst = {0};
    flash_ckpt_info info = {0};
    flash_status st = recorded_config(a.ckpt, &yaml, &err);
    if (!st) st = flash_cli_pipeline_parse(&p, yaml, a.ckpt, NULL, &err);
    if (st) goto done;
    const char *slot = a.slot ? a.slot : flash_cfg_get(p.root, "model") ? "model" : "student";
    const flash_cfg *node = flash_cfg_get(p.root, slot);
    if (!node) {
        st = flash_error_set(&err, FLASH_ERR_USAGE, "%s: its config has no `%s` slot", a.ckpt, slot);
        goto done;
    }
    long seed = 0;
    if ((st = flash_cfg_int(p.root, "seed", 0, &seed, &err))) goto done;
    flash_env env = {.size = sizeof env, .registry = p.registry, .seed = (uint64_t)seed, .root = p.root};
    /* two instances: the source takes the whole checkpoint (weights, EMA,
     * moments), the copy only weights, which is all it saves */
    if ((st = flash_instance_create(&env, FLASH_KIND_MODEL, node, &src, &err)) ||
        (st = flash_instance_create(&env, FLASH_KIND_MODEL, node, &dst, &err)))
        goto done;
    const flash_model_api *api = FLASH_API(&src, flash_model_api);
    flash_params *ps = api->params ? api->params(src.self) : NULL, *pd = api->params ? api->params(dst.self) : NULL;
    if (!ps || !pd || flash_params_count(ps) == 0) {
        st = flash_error_set(&err, FLASH_ERR_USAGE, "%s: model '%s' has no parameters to export", a.ckpt,
                             src.comp->name);
        goto done;
    }
    if ((st = flash_checkpoint_load(a.ckpt, ps, &info, &err))) goto done;
    const bool raw = a.weights && !strcmp(a.weights, "raw");
    if (!raw && !flash_params_ema(ps)) {
        st = flash_error_set(&err, FLASH_ERR_USAGE, "%s: holds no EMA copy; export its trained weights with --weights raw",
                             a.ckpt);
        goto done;
    }
    if (!raw && (st = flash_params_swap_ema(ps, &err))) goto done;
    if ((st = flash_params_copy(pd, ps, &err))) goto done;
    if ((st = flash_checkpoint_save(a.out, pd, &info, &err))) goto done;
    if (flash_cli_speaks())
        fprintf(stderr, "flash export: %s weights of '%s' (%zu parameters, step %lld) -> %s\n", raw ? "raw" : "EMA",
                slot, flash_params_count(pd), (long long)info.step, a.out);
done:
    flash_instance_destroy(&dst);
    flash_instance_destroy(&src);
    free(info.config_yaml);
    flash_cli_pipeline_free(&p);
    free(yaml);
    return st ? flash_cli_fail("export", &err) : FLASH_EXIT_OK;
}
