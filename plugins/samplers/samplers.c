/* The parts every sampler of this folder shares: state allocation, the
 * walk along a plan, timesteps and random streams. Registers no component. */
#include <stdlib.h>

#include "samplers.h"

flash_status flash_sampler_alloc(const flash_cfg *cfg, const char *name, size_t size, void **out, flash_error *err) {
    flash_sampler_opts *o = calloc(1, size);
    if (!o) return flash_error_set(err, FLASH_ERR_NOMEM, "sampler '%s': out of memory", name);
    flash_status st = flash_sampler_opts_parse(cfg, name, o, err);
    if (st) {
        free(o);
        return st;
    }
    *out = o;
    return FLASH_OK;
}

flash_tensor *flash_sampler_walk(flash_ctx *c, const flash_sample_request *req, const flash_sampler_opts *o,
                                 flash_grid grid, double end_alpha, double end_sigma, flash_sampler_step step,
                                 void *state) {
    flash_plan *p = malloc(sizeof *p); /* large: FLASH_MAX_STEPS entries */
    if (!p) {
        flash_ctx_fail(c, "sampler: out of memory");
        return NULL;
    }
    flash_tensor *x = NULL;
    if (flash_plan_make(p, req, o, grid, end_alpha, end_sigma, c)) goto done;
    x = req->x;
    for (int i = 0; i < p->n && x; i++) {
        flash_denoised d;
        x = flash_plan_denoise(p, c, i, x, &d) ? NULL : step(state, c, p, i, x, &d);
    }
done:
    free(p);
    return flash_ctx_ok(c) ? x : NULL;
}

void flash_sampler_seed(flash_rng *rng, const flash_env *env, uint64_t stream) {
    flash_rng_seed_stream(rng, env ? env->seed : 0, stream);
}

int flash_sampler_timesteps(const flash_sampler_opts *o, flash_grid grid, int T, double *out, int max) {
    double ts[FLASH_MAX_STEPS];
    int n = 0;
    flash_error e = {0};
    if (T > FLASH_MAX_STEPS || flash_timesteps_select(o, grid, T, ts, &n, &e) || n > max) return -1;
    for (int i = 0; i < n; i++) out[i] = ts[i];
    return n;
}
