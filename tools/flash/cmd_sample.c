/* flash sample CONFIG [--set k=v]... [--ckpt FILE] [--noise xT.npy]
 *              [--labels y.npy] [--n N] [--seed S] [--device D] --out x0.npy [--grid grid.png]
 *
 * Builds the config's schedule, model and sampler, draws (or reads) the
 * starting noise and the labels, samples in batches with grad mode off and
 * writes the samples as NPY; --grid also draws them: 2-D points as a scatter
 * plot over the model's true density when it has one, images as a grid. */
#include "cli.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "flash/comm.h"
#include "flash/diffusion.h"

/* Samples per sampler call: as many as keep one activation of a batch near
 * SAMPLE_BUDGET values (4096 2-D points, 83 images of 28x28), so image
 * sampling stays in cache-friendly working sets instead of paging through
 * gigabytes of arena. --batch overrides. */
#define SAMPLE_MAX_BATCH 4096
#define SAMPLE_BUDGET 65536

typedef struct sample_args {
    const char *config, *ckpt, *noise, *labels, *out, *grid, *weights;
    long n, batch, seed; /* -1: not given */
    bool check_finite, no_check_finite, random_init;
    flash_options_sets sets;
} sample_args;

static const char *const weight_kinds[] = {"ema", "raw", NULL};

static const flash_opt sample_opts[] = {
    FLASH_OPT_SETS(sample_args, sets),
    FLASH_STRING("--ckpt", "FILE", sample_args, ckpt, "model weights (a flash checkpoint)"),
    FLASH_CHOICE("--weights", "W", sample_args, weights, weight_kinds,
        "ema (default: the checkpoint's EMA copy when it has one)\n"
        "or raw (the trained weights, for early checkpoints)"),
    FLASH_INT("--batch", "N", sample_args, batch, 1, 1000000,
        "samples per sampler call (default: from the sample size)"),
    FLASH_STRING("--noise", "FILE", sample_args, noise, "starting noise x_T (NPY, float32/64, (N, ...)) instead of\n"
                                                        "fresh noise: compare methods on identical noise"),
    FLASH_STRING("--labels", "FILE", sample_args, labels, "class labels (NPY, int64/int32, (N)); a class-conditional\n"
                                                          "model without them gets uniform random labels"),
    FLASH_INT("--n", "N", sample_args, n, 1, 100000000, "number of samples (default: the noise file's, else 64)"),
    FLASH_INT("--seed", "S", sample_args, seed, 0, LONG_MAX,
        "seed of the noise and labels (default: the config's seed, else 0)"),
    FLASH_OPT_DTYPE_OF(sample_args, sets),
    FLASH_OPT_DEVICE_OF(sample_args, sets,
                        "The\n"
                        "model's weights and the sampling context live there; noise and samples\n"
                        "are copied in and out per batch"),
    FLASH_REQUIRED("--out", "FILE", sample_args, out, "samples as NPY (required)"),
    FLASH_STRING("--grid", "FILE", sample_args, grid, "also a PNG: a scatter plot over the true density for 2-D\n"
                                                      "points, a grid for images"),
    FLASH_FLAG("--random-init", sample_args, random_init,
        "sample a model with parameters from its random initial\n"
        "weights on purpose (without it, such a model needs --ckpt)"),
    FLASH_FLAG("--check-finite", sample_args, check_finite,
        "refuse samples holding NaN or infinity (the default): one\n"
        "pass over them on the host, exit 1 naming the first"),
    FLASH_FLAG("--no-check-finite", sample_args, no_check_finite, "write the samples even when some are not finite"),
    FLASH_OPT_FORCE_ENTRY,
    {0},
};

static const flash_command sample_cmd = {
    .name = "sample",
    .positional = "CONFIG",
    .positional_offset = offsetof(sample_args, config),
    .opts = sample_opts,
    .about = "Draws samples from the config's model (the `model` slot, else `student`,\n"
             "else `teacher`) with its `sampler` and `schedule`, and writes them as a\n"
             "float32 NPY of shape (N, ...). The sampler's settings (steps,\n"
             "timestep_spacing, steps_offset or timesteps, guidance_scale,\n"
             "noise_correction) come from the config or --set. Reports the NFEs.\n"
             "A model with parameters needs its weights (--ckpt) unless --random-init;\n"
             "noise holding NaN or infinity is refused. The resolved config goes\n"
             "next to --out (x0.npy: x0.config.yaml).\n",
    .epilogue = "Exit codes: 0 success, 2 bad usage or config, 1 any other failure.\n",
};

/* The model slot: model, else student, else teacher. */
static const flash_cfg *model_slot(const flash_cfg *root) {
    static const char *const keys[] = {"model", "student", "teacher"};
    for (int i = 0; i < 3; i++)
        if (flash_cfg_get(root, keys[i])) return flash_cfg_get(root, keys[i]);
    return NULL;
}

/* Noise from an NPY: float32 or float64, shape (rows, sample shape...). */
static flash_status read_noise(const char *path, const flash_model_info *mi, long *n, float **out, flash_error *err) {
    flash_array a;
    flash_status st = flash_npy_read(path, &a, err);
    if (st) return st;
    size_t per = 1;
    int ok = (a.dtype == FLASH_F32 || a.dtype == FLASH_F64) && a.ndim == 1 + mi->ndim && a.shape[0] >= 1;
    for (int j = 0; ok && j < mi->ndim; j++) {
        ok = a.shape[1 + j] == mi->shape[j];
        per *= (size_t)mi->shape[j];
    }
    if (!ok) {
        flash_array_free(&a);
        if (mi->ndim == 1)
            return flash_error_set(err, FLASH_ERR_USAGE, "%s: expected float noise of shape (N, %d)", path,
                                   mi->shape[0]);
        return flash_error_set(err, FLASH_ERR_USAGE, "%s: expected float noise of shape (N, %d, %d, %d)", path,
                               mi->shape[0], mi->shape[1], mi->shape[2]);
    }
    if (*n < 0) *n = (long)a.shape[0];
    if (*n > a.shape[0]) {
        flash_array_free(&a);
        return flash_error_set(err, FLASH_ERR_USAGE, "%s holds %lld samples, --n asks for %ld", path,
                               (long long)a.shape[0], *n);
    }
    const int64_t bad = flash_array_first_nonfinite(&a);
    if (bad >= 0) {
        const double v = a.dtype == FLASH_F32 ? ((const float *)a.data)[bad] : ((const double *)a.data)[bad];
        flash_array_free(&a);
        return flash_error_set(err, FLASH_ERR_INPUT, "%s: noise sample %lld holds %s (value %lld of it): refused",
                               path, (long long)((size_t)bad / per), flash_nonfinite_name(v),
                               (long long)((size_t)bad % per));
    }
    float *x = malloc((size_t)*n * per * sizeof *x);
    if (!x) {
        flash_array_free(&a);
        return flash_error_set(err, FLASH_ERR_NOMEM, "out of memory for %ld noise samples", *n);
    }
    for (size_t i = 0; i < (size_t)*n * per; i++)
        x[i] = a.dtype == FLASH_F32 ? ((const float *)a.data)[i] : (float)((const double *)a.data)[i];
    flash_array_free(&a);
    *out = x;
    return FLASH_OK;
}

int flash_cmd_sample(int argc, char **argv) {
    sample_args a = {.n = -1, .batch = -1, .seed = -1};
    int rc;
    if (!flash_options_parse(&sample_cmd, argc, argv, &a, &rc)) return rc;
    flash_error err = {0};
    flash_cli_pipeline p;
    if (flash_cli_pipeline_load(&p, a.config, &a.sets, &err)) return flash_cli_fail("sample", &err);
    flash_instance sched = {0}, model = {0}, sampler = {0};
    flash_denoiser den = {0};
    flash_ctx *c = NULL;
    float *xT = NULL, *xs = NULL;
    int *labels = NULL;
    flash_status st = FLASH_OK;

    long seed = 0;
    if ((st = flash_schema_check(p.root, FLASH_FOR_SAMPLE, p.registry, &err))) goto done;
    if (a.seed >= 0) {
        seed = a.seed;
    } else if ((st = flash_cfg_int(p.root, "seed", 0, &seed, &err))) {
        goto done;
    }
    const char *device = NULL;
    if ((st = flash_pipeline_device(p.root, (size_t)64 << 20, &device, &c, &err))) goto done;
    flash_env env = {.size = sizeof env, .registry = p.registry, .seed = (uint64_t)seed, .root = p.root,
                     .device = device};
    const flash_cfg *ms = model_slot(p.root);
    if (!flash_cfg_get(p.root, "schedule") || !ms || !flash_cfg_get(p.root, "sampler")) {
        st = flash_error_set(&err, FLASH_ERR_CONFIG, "%s: sampling needs `schedule`, `model` and `sampler` slots",
                             a.config);
        goto done;
    }
    if ((st = flash_instance_create(&env, FLASH_KIND_SCHEDULE, flash_cfg_get(p.root, "schedule"), &sched, &err)))
        goto done;
    env.schedule = &sched;
    if ((st = flash_instance_create(&env, FLASH_KIND_MODEL, ms, &model, &err))) goto done;
    if ((st = flash_instance_create(&env, FLASH_KIND_SAMPLER, flash_cfg_get(p.root, "sampler"), &sampler, &err)))
        goto done;
    {
        /* timesteps the schedule cannot hold are a config error, found
         * before anything is sampled */
        double ts[FLASH_MAX_STEPS];
        const int T = flash_schedule_T(&sched);
        if (FLASH_API(&sampler, flash_sampler_api)->timesteps(sampler.self, T, ts, FLASH_MAX_STEPS) < 1) {
            st = flash_cfg_error(flash_cfg_get(p.root, "sampler"), &err,
                                 "sampler '%s' lays out no valid timesteps on the schedule's %d training steps "
                                 "(steps, timestep_spacing, steps_offset or timesteps)",
                                 sampler.comp->name, T);
            goto done;
        }
    }
    const flash_model_api *api0 = FLASH_API(&model, flash_model_api);
    flash_params *trained = api0->params ? api0->params(model.self) : NULL;
    if (!a.ckpt && !a.random_init && trained && flash_params_count(trained) > 0) {
        /* random weights give plausible-looking noise, not samples */
        st = flash_error_set(&err, FLASH_ERR_USAGE,
                             "model '%s' has parameters and no weights were given: name them with --ckpt FILE (or "
                             "sample its random initial weights on purpose with --random-init)",
                             model.comp->name);
        goto done;
    }
    if (a.ckpt) {
        const flash_model_api *mapi = FLASH_API(&model, flash_model_api);
        flash_params *prm = mapi->params ? mapi->params(model.self) : NULL;
        if (!prm) {
            st = flash_error_set(&err, FLASH_ERR_USAGE, "--ckpt: model '%s' has no parameters to load",
                                 model.comp->name);
            goto done;
        }
        if ((st = flash_checkpoint_load(a.ckpt, prm, NULL, &err))) goto done;
        /* Sample with the EMA weights, as flash run and flash distill do. */
        int raw = a.weights && strcmp(a.weights, "raw") == 0;
        if (!raw && flash_params_ema(prm) && (st = flash_params_swap_ema(prm, &err))) goto done;
    }
    /* the weights (loaded on the host) beside the context */
    const flash_model_api *mapi = FLASH_API(&model, flash_model_api);
    flash_params *mp = mapi->params ? mapi->params(model.self) : NULL;
    if (mp && (st = flash_params_to_device(mp, device, &err))) goto done;
    if ((st = flash_denoiser_init(&den, &model, &sched, &err))) goto done;

    const flash_model_info *mi = &den.info;
    size_t per = 1;
    for (int j = 0; j < mi->ndim; j++) per *= (size_t)mi->shape[j];
    long n = a.n;
    flash_rng rng;
    if (a.noise) {
        if ((st = read_noise(a.noise, mi, &n, &xT, &err))) goto done;
    } else {
        if (n < 0) n = 64;
        if (!(xT = malloc((size_t)n * per * sizeof *xT))) {
            st = flash_error_set(&err, FLASH_ERR_NOMEM, "out of memory for %ld samples", n);
            goto done;
        }
        flash_rng_seed_stream(&rng, (uint64_t)seed, 1);
        flash_rng_fill_normal(&rng, xT, (size_t)n * per);
    }
    if (a.labels) {
        if (mi->num_classes <= 0) {
            st = flash_error_set(&err, FLASH_ERR_USAGE, "--labels: model '%s' is unconditional", model.comp->name);
            goto done;
        }
        char why[96];
        snprintf(why, sizeof why, "is outside [0, %d] (%d is the null class)", mi->num_classes, mi->num_classes);
        if ((st = flash_cli_read_labels(a.labels, n, false, mi->num_classes, why, &labels, &err))) goto done;
    } else if (mi->num_classes > 0) {
        if (!(labels = malloc((size_t)n * sizeof *labels))) {
            st = flash_error_set(&err, FLASH_ERR_NOMEM, "out of memory for %ld labels", n);
            goto done;
        }
        flash_rng_seed_stream(&rng, (uint64_t)seed, 2);
        for (long i = 0; i < n; i++) labels[i] = (int)flash_rng_below(&rng, (uint64_t)mi->num_classes);
    }
    if (!(xs = malloc((size_t)n * per * sizeof *xs))) {
        st = flash_error_set(&err, FLASH_ERR_NOMEM, "out of memory for %ld samples", n);
        goto done;
    }
    double t0 = flash_now();
    long batch = a.batch;
    if (batch < 1) {
        batch = SAMPLE_BUDGET / (long)per;
        if (batch < 1) batch = 1;
        if (batch > SAMPLE_MAX_BATCH) batch = SAMPLE_MAX_BATCH;
    }
    long batches = 0;
    if ((st = flash_sample_bank(&den, &sampler, c, xT, labels, n, batch, (uint64_t)seed, xs, &batches, &err)))
        goto done;
    double secs = flash_now() - t0;
    if (!a.no_check_finite) {
        const int64_t bad = flash_first_nonfinite(xs, (size_t)n * per);
        if (bad >= 0) {
            st = flash_error_set(&err, FLASH_ERR_RUNTIME,
                                 "sample %lld came out non-finite (%s at value %lld); the model or the sampler '%s' "
                                 "diverged (--no-check-finite writes the samples anyway)",
                                 (long long)((size_t)bad / per), flash_nonfinite_name(xs[bad]),
                                 (long long)((size_t)bad % per), sampler.comp->name);
            goto done;
        }
    }
    /* rank 0 alone writes */
    if (flash_comm_rank(flash_comm_world(NULL)) > 0) goto done;
    /* every output refused before any is written (the config beside it too) */
    bool through;
    if ((st = flash_output_check(a.out, &through, &err)) || (a.grid && (st = flash_output_check(a.grid, &through, &err))))
        goto done;
    if ((st = flash_cli_write_config_beside(a.out, &p, &err))) goto done;
    int64_t oshape[1 + 3] = {n, mi->shape[0], mi->shape[1], mi->shape[2]};
    if ((st = flash_npy_write(a.out, FLASH_F32, 1 + mi->ndim, oshape, xs, &err))) goto done;
    if (a.grid) {
        if (mi->ndim == 1 && mi->shape[0] == 2) {
            st = flash_png_scatter(a.grid, xs, n, &model, &err);
        } else if (mi->ndim == 3) {
            int cols = (int)ceil(sqrt((double)n));
            st = flash_png_grid(a.grid, xs, (int)n, mi->shape[0], mi->shape[1], mi->shape[2], cols, &err);
        } else {
            st = flash_error_set(&err, FLASH_ERR_USAGE, "--grid draws 2-D points or images, not samples of %zu values",
                                 per);
        }
        if (st) goto done;
    }
    if (batches < 1) batches = 1;
    fprintf(stderr, "flash sample: %ld samples with '%s' in %.3f s, %.4g NFE per sample (%lld model calls)\n", n,
            sampler.comp->name, secs, (double)den.nfe / (double)batches, (long long)den.calls);

done:
    free(xT);
    free(xs);
    free(labels);
    flash_ctx_destroy(c);
    flash_denoiser_release(&den);
    flash_instance_destroy(&sampler);
    flash_instance_destroy(&model);
    flash_instance_destroy(&sched);
    flash_cli_pipeline_free(&p);
    return st ? flash_cli_fail("sample", &err) : FLASH_EXIT_OK;
}
