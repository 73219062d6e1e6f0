/* Test helpers for the diffusion suites: a pipeline (schedule, model,
 * sampler, denoiser, context) built from a YAML text with the built-in
 * plugins, and NPY reference loading. */
#ifndef FLASH_TESTS_DIFFUSION_FIXTURE_H
#define FLASH_TESTS_DIFFUSION_FIXTURE_H

#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "flash/diffusion.h"

typedef struct dpipe {
    flash_registry *r;
    flash_cfg *root;
    flash_env env;
    flash_instance sched, model, sampler;
    flash_denoiser den;
    flash_ctx *c;
    flash_error err;
} dpipe;

/* n values of N(0, 1) from seed, malloc'd: starting noise for a sampler. */
static inline float *normal_noise(uint64_t seed, int n) {
    float *x = malloc((size_t)n * sizeof *x);
    ck_assert_ptr_nonnull(x);
    flash_rng r;
    flash_rng_seed(&r, seed);
    flash_rng_fill_normal(&r, x, (size_t)n);
    return x;
}

/* Creates `schedule`, `model` and (when present) `sampler` of yaml; fails
 * the test on any error. */
static inline void pipe_open(dpipe *p, const char *yaml) {
    memset(p, 0, sizeof *p);
    p->r = flash_registry_create();
    ck_assert_ptr_nonnull(p->r);
    ck_assert_msg(flash_registry_load_default(p->r, NULL, &p->err) == FLASH_OK, "%s", p->err.msg);
    ck_assert_msg(flash_cfg_parse_string(yaml, "t.yaml", &p->root, &p->err) == FLASH_OK, "%s", p->err.msg);
    p->env = (flash_env){.size = sizeof p->env, .registry = p->r, .seed = 7, .root = p->root};
    ck_assert_msg(flash_instance_create(&p->env, FLASH_KIND_SCHEDULE, flash_cfg_get(p->root, "schedule"), &p->sched,
                                        &p->err) == FLASH_OK,
                  "%s", p->err.msg);
    p->env.schedule = &p->sched;
    ck_assert_msg(flash_instance_create(&p->env, FLASH_KIND_MODEL, flash_cfg_get(p->root, "model"), &p->model,
                                        &p->err) == FLASH_OK,
                  "%s", p->err.msg);
    if (flash_cfg_get(p->root, "sampler"))
        ck_assert_msg(flash_instance_create(&p->env, FLASH_KIND_SAMPLER, flash_cfg_get(p->root, "sampler"),
                                            &p->sampler, &p->err) == FLASH_OK,
                      "%s", p->err.msg);
    ck_assert_msg(flash_denoiser_init(&p->den, &p->model, &p->sched, &p->err) == FLASH_OK, "%s", p->err.msg);
    p->c = flash_ctx_create(1 << 20);
    ck_assert_ptr_nonnull(p->c);
}

static inline void pipe_close(dpipe *p) {
    flash_ctx_destroy(p->c);
    flash_denoiser_release(&p->den);
    flash_instance_destroy(&p->sampler);
    flash_instance_destroy(&p->model);
    flash_instance_destroy(&p->sched);
    flash_cfg_free(p->root);
    flash_registry_destroy(p->r);
}

/* Runs the sampler from the (n, d) noise xT; returns the arena result or
 * NULL (the context's error says why). */
static inline flash_tensor *pipe_sample_ex(dpipe *p, const float *xT, int n, int d, const int *labels, double stop_at,
                                    const double *ts, int nts) {
    flash_tensor *x = flash_tensor_2d(p->c, n, d);
    ck_assert_ptr_nonnull(x);
    memcpy(x->data, xT, (size_t)n * d * sizeof(float));
    flash_sample_request rq = {.size = sizeof rq, .den = &p->den, .x = x, .labels = labels, .stop_at = stop_at,
                               .timesteps = ts, .n_timesteps = nts};
    return FLASH_API(&p->sampler, flash_sampler_api)->sample(p->sampler.self, p->c, &rq);
}

static inline flash_tensor *pipe_sample(dpipe *p, const float *xT, int n, int d, const int *labels) {
    return pipe_sample_ex(p, xT, n, d, labels, -1.0, NULL, 0);
}

/* An NPY file under tests/data/ref as float64 (any float dtype) or int. */
static inline double *ref_load(const char *name, int64_t *rows, int64_t *cols) {
    char path[4096];
    snprintf(path, sizeof path, "%s/tests/data/ref/%s", FLASH_SOURCE_DIR, name);
    flash_array a;
    flash_error e = {0};
    ck_assert_msg(flash_npy_read(path, &a, &e) == FLASH_OK, "%s", e.msg);
    size_t n = flash_array_numel(&a);
    double *out = malloc(n * sizeof *out);
    ck_assert_ptr_nonnull(out);
    for (size_t i = 0; i < n; i++) {
        switch (a.dtype) {
        case FLASH_F32: out[i] = ((const float *)a.data)[i]; break;
        case FLASH_F64: out[i] = ((const double *)a.data)[i]; break;
        case FLASH_I64: out[i] = (double)((const int64_t *)a.data)[i]; break;
        case FLASH_I32: out[i] = ((const int32_t *)a.data)[i]; break;
        case FLASH_U8: out[i] = ((const uint8_t *)a.data)[i]; break;
        }
    }
    *rows = a.ndim > 0 ? a.shape[0] : 1;
    *cols = a.ndim > 1 ? a.shape[1] : 1;
    flash_array_free(&a);
    return out;
}

/* The teacher: a three-component mixture in 2-D. */
#define GMM3 "{plugin: gmm, weights: [0.5, 0.3, 0.2], means: [[-2.0, 0.0], [2.0, 1.0], [0.0, -2.5]], stds: [0.3, 0.5, 0.2]"
#define SCHED_SD \
    "schedule: {plugin: discrete, beta_schedule: scaled_linear, beta_start: 0.00085, beta_end: 0.012, " \
    "num_train_timesteps: 1000}\n"

#endif
