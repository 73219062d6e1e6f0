/* Strategy `kd`: knowledge distillation (Luhman & Luhman 2021, "Knowledge
 * Distillation in Iterative Generative Models for Improved Sampling
 * Speed", section 3), the oldest few-step baseline: the teacher's
 * deterministic sampler defines a map from noise to data, x0 = F(x_T);
 * a bank of pairs (x_T, F(x_T)) is made once and the student regresses F
 * from x_T in one (or a few) of its own steps:
 *
 *   L = E || G(x_T) - F(x_T) ||^2      (Luhman & Luhman eq. 6, the losses' target)
 *
 * G(x_T) is the student's x0-hat at its last timestep after its sampler's
 * steps from x_T at its first (one step: x0-hat(x_T, tau_0)), with
 * gradients through every step. F is the `teacher_sampler:` (default
 * {plugin: dpmpp_2m, steps: 25}) on the pipeline's teacher with
 * classifier-free guidance: the sampler's guidance_scale, or
 * target.guidance_scale when the sampler map has none. The labels of a
 * class-conditional teacher are drawn with the bank.
 *
 * The bank (bank_size pairs from noise of bank_seed) is computed when the
 * run starts and cached in the run folder as kd_bank_<key>.npy, one float32
 * array (N, 2D + 1) of rows [x_T | F(x_T) | label], written atomically; the
 * key is an FNV-1a hash of the teacher (its model config and its weights
 * as loaded), the schedule, the sampler's resolved config, the sample
 * shape, the bank size and seed, so a resumed run (or a rerun) reuses it
 * and anything that would change it makes a new one. Training draws
 * batches from the bank with the run's stream (checkpointed).
 *
 * Keys: teacher_sampler, bank_size (4096), bank_seed (0), target:
 * {guidance_scale} (target.k is not used). */
#include "distill_common.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

typedef struct kd {
    distill d;
    long bank_size, bank_seed;
    flash_cfg *sampler_cfg; /* teacher_sampler, resolved (with its guidance scale) */
    flash_instance sampler;
    size_t dim;             /* values per sample */
    float *bank;            /* bank_size rows of 2 dim + 1 */
} kd;

static const char *const keys[] = {"teacher_sampler", "bank_size", "bank_seed", DISTILL_KEYS, NULL};

#define KD_STREAM 0x6b6462616e6bull /* "kdbank" */
#define KD_BATCH 1024               /* bank rows per teacher sampler call */

static flash_tensor *kd_step(void *self, flash_ctx *c, distill *d, int64_t iter);

static void kd_destroy(void *self)
{
    kd *k = self;
    if (!k) return;
    flash_instance_destroy(&k->sampler);
    flash_cfg_free(k->sampler_cfg);
    free(k->bank);
    distill_close(&k->d);
    free(k);
}

static flash_status kd_create(const flash_cfg *cfg, flash_env *env, void **self, flash_error *err)
{
    long size, seed;
    flash_status st;
    if ((st = flash_cfg_int(cfg, "bank_size", 4096, &size, err)) || (st = flash_cfg_int(cfg, "bank_seed", 0, &seed, err)))
        return st;
    if (size < 1 || size > (1L << 24))
        return flash_cfg_error(flash_cfg_get(cfg, "bank_size"), err, "strategy 'kd': bank_size must be in [1, 2^24]");
    if (seed < 0) return flash_cfg_error(flash_cfg_get(cfg, "bank_seed"), err, "strategy 'kd': bank_seed must be >= 0");
    kd *k = calloc(1, sizeof *k);
    if (!k) return flash_error_set(err, FLASH_ERR_NOMEM, "strategy 'kd': out of memory");
    k->bank_size = size;
    k->bank_seed = seed;
    if ((st = distill_open(&k->d, cfg, env, kd_step, self, k, err))) goto fail;
    const flash_cfg *sc = flash_cfg_get(cfg, "teacher_sampler");
    if (sc && flash_cfg_kind(sc) != FLASH_CFG_MAP) {
        st = flash_cfg_error(sc, err, "strategy 'kd': teacher_sampler: expected a sampler slot {plugin: NAME, ...}");
        goto fail;
    }
    if (sc) k->sampler_cfg = flash_cfg_clone(sc);
    else if ((st = flash_cfg_parse_string("{plugin: dpmpp_2m, steps: 25}", "kd teacher_sampler", &k->sampler_cfg, err)))
        goto fail;
    if (!k->sampler_cfg) {
        st = flash_error_set(err, FLASH_ERR_NOMEM, "strategy 'kd': out of memory");
        goto fail;
    }
    /* the teacher's guidance: the sampler's own, else the strategy's target */
    if (!flash_cfg_get(k->sampler_cfg, "guidance_scale")) {
        char w[32];
        snprintf(w, sizeof w, "%.9g", (double)k->d.target.guidance_scale);
        if ((st = flash_cfg_put(k->sampler_cfg, "guidance_scale", w, err))) goto fail;
    }
    if ((st = flash_instance_create(env, FLASH_KIND_SAMPLER, k->sampler_cfg, &k->sampler, err))) goto fail;
    *self = k;
    return FLASH_OK;
fail:
    kd_destroy(k);
    return st;
}

/* ---- the bank's key --------------------------------------------------------- */

static uint64_t fnv1a(uint64_t h, const void *p, size_t n)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++) {
        h ^= b[i];
        h *= 0x100000001b3ull;
    }
    return h;
}

static uint64_t fnv_yaml(uint64_t h, const flash_cfg *n)
{
    char *y = n ? flash_cfg_to_yaml(n) : NULL;
    h = y ? fnv1a(h, y, strlen(y) + 1) : fnv1a(h, "-", 2);
    free(y);
    return h;
}

static flash_status bank_key(kd *k, uint64_t *out, flash_error *err)
{
    distill *d = &k->d;
    const flash_cfg *root = d->env->root;
    uint64_t h = 0xcbf29ce484222325ull;
    h = fnv1a(h, "flash kd bank 1", 16);
    h = fnv_yaml(h, flash_cfg_get(root, "teacher"));
    h = fnv_yaml(h, flash_cfg_get(root, "schedule"));
    h = fnv_yaml(h, k->sampler_cfg);
    const int64_t nums[] = {k->bank_size, k->bank_seed, d->ndim, d->shape[0], d->shape[1], d->shape[2], d->num_classes};
    h = fnv1a(h, nums, sizeof nums);
    /* the teacher's weights as loaded (checkpoint, EMA or raw) */
    const flash_model_api *api = FLASH_API(d->teacher->model, flash_model_api);
    flash_params *tp = api->params ? api->params(d->teacher->model->self) : NULL;
    const size_t n = tp ? flash_params_count(tp) : 0;
    if (n > 0) {
        float *w = malloc(n * sizeof *w);
        if (!w) return flash_error_set(err, FLASH_ERR_NOMEM, "strategy 'kd': out of memory");
        flash_status st = flash_params_to_host(tp, w, err);
        if (st == FLASH_OK) h = fnv1a(h, w, n * sizeof *w);
        free(w);
        if (st) return st;
    }
    *out = h;
    return FLASH_OK;
}

/* ---- making and reading the bank -------------------------------------------- */

/* The teacher's sampler from bank noise of bank_seed, KD_BATCH rows at a time. */
static flash_status bank_make(kd *k, flash_error *err)
{
    distill *d = &k->d;
    const size_t row = 2 * k->dim + 1;
    flash_ctx *c = flash_ctx_create_on(flash_env_device(d->env), (size_t)16 << 20, err);
    if (!c) return err->status ? err->status : FLASH_ERR_NOMEM;
    flash_grad_set(c, false);
    flash_rng r;
    flash_rng_seed_stream(&r, (uint64_t)k->bank_seed, KD_STREAM);
    float *noise = malloc((size_t)KD_BATCH * k->dim * sizeof *noise), *x0 = malloc((size_t)KD_BATCH * k->dim * sizeof *x0);
    int *labels = malloc((size_t)KD_BATCH * sizeof *labels);
    flash_status st = noise && x0 && labels ? FLASH_OK : flash_error_set(err, FLASH_ERR_NOMEM, "strategy 'kd': out of memory");
    const flash_sampler_api *sa = FLASH_API(&k->sampler, flash_sampler_api);
    for (long at = 0; st == FLASH_OK && at < k->bank_size; at += KD_BATCH) {
        const int n = (int)(k->bank_size - at < KD_BATCH ? k->bank_size - at : KD_BATCH);
        flash_ctx_reset(c);
        int shape[FLASH_MAX_DIMS] = {n};
        for (int i = 0; i < d->ndim; i++) shape[1 + i] = d->shape[i];
        flash_tensor *z = flash_randn(c, &r, 1 + d->ndim, shape);
        for (int i = 0; i < n; i++) labels[i] = d->num_classes > 0 ? (int)flash_rng_below(&r, (uint64_t)d->num_classes) : -1;
        flash_sample_request rq = {.size = sizeof rq, .den = d->teacher, .x = z,
                                   .labels = d->num_classes > 0 ? labels : NULL, .stop_at = -1.0, .rng = &r};
        flash_tensor *y = z ? sa->sample(k->sampler.self, c, &rq) : NULL;
        if ((st = flash_ctx_status(c, err))) break;
        if (!y) {
            st = flash_error_set(err, FLASH_ERR_RUNTIME, "strategy 'kd': the teacher's sampler returned nothing");
            break;
        }
        if ((st = flash_tensor_to_host(c, z, noise, err)) || (st = flash_tensor_to_host(c, y, x0, err))) break;
        for (int i = 0; i < n; i++) {
            float *dst = k->bank + (size_t)(at + i) * row;
            memcpy(dst, noise + (size_t)i * k->dim, k->dim * sizeof *dst);
            memcpy(dst + k->dim, x0 + (size_t)i * k->dim, k->dim * sizeof *dst);
            dst[2 * k->dim] = (float)labels[i];
        }
    }
    free(noise);
    free(x0);
    free(labels);
    flash_ctx_destroy(c);
    if (st) flash_error_prefix(err, "strategy 'kd': the teacher's bank");
    return st;
}

/* A cached bank of this key, when the run folder has one of the right shape. */
static bool bank_read(kd *k, const char *path)
{
    struct stat sb;
    if (stat(path, &sb) != 0) return false;
    flash_array a = {0};
    flash_error e = {0};
    bool ok = flash_npy_read(path, &a, &e) == FLASH_OK && a.dtype == FLASH_F32 && a.ndim == 2 &&
              a.shape[0] == k->bank_size && a.shape[1] == (int64_t)(2 * k->dim + 1);
    if (ok) memcpy(k->bank, a.data, flash_array_numel(&a) * sizeof(float));
    else flash_warn("strategy 'kd': %s is not this run's bank (%s); making it again", path, e.msg[0] ? e.msg : "shape");
    flash_array_free(&a);
    return ok;
}

static flash_status bank_open(kd *k, flash_error *err)
{
    distill *d = &k->d;
    k->dim = 1;
    for (int i = 0; i < d->ndim; i++) k->dim *= (size_t)d->shape[i];
    const size_t row = 2 * k->dim + 1;
    if (!(k->bank = malloc((size_t)k->bank_size * row * sizeof *k->bank)))
        return flash_error_set(err, FLASH_ERR_NOMEM, "strategy 'kd': out of memory for a bank of %ld", k->bank_size);
    uint64_t key = 0;
    flash_status st = bank_key(k, &key, err);
    if (st) return st;
    const char *dir = d->env->run_dir;
    char path[4200];
    if (dir) {
        snprintf(path, sizeof path, "%s/kd_bank_%016" PRIx64 ".npy", dir, key);
        if (bank_read(k, path)) {
            flash_info("strategy 'kd': the teacher's bank from %s", path);
            return FLASH_OK;
        }
    }
    if ((st = bank_make(k, err))) return st;
    if (!dir) return FLASH_OK;
    const int64_t shape[2] = {k->bank_size, (int64_t)row};
    if ((st = flash_npy_write(path, FLASH_F32, 2, shape, k->bank, err))) return st;
    flash_info("strategy 'kd': %ld teacher samples in %s", k->bank_size, path);
    return FLASH_OK;
}

static flash_params *kd_trained(void *self, flash_run *run, flash_error *err)
{
    kd *k = self;
    flash_params *P = distill_trained(&k->d, run, err);
    if (P && bank_open(k, err)) return NULL;
    return P;
}

/* ---- the student's regression ------------------------------------------------ */

static flash_tensor *kd_step(void *self, flash_ctx *c, distill *d, int64_t iter)
{
    (void)iter;
    kd *k = self;
    const int n = d->batch_size;
    const size_t row = 2 * k->dim + 1;
    float *z = flash_host_alloc(c, 2 * (size_t)n * k->dim * sizeof *z);
    int *labels = flash_host_alloc(c, (size_t)n * sizeof *labels);
    if (!z || !labels) return NULL;
    float *y = z + (size_t)n * k->dim;
    /* one draw per sample of the global batch, this rank's kept (strategy.h) */
    const int first = d->run->rank * n;
    for (int g = 0; g < n * d->run->ranks; g++) {
        const uint64_t pick = flash_rng_below(distill_stream(d, DISTILL_DRAW_REAL), (uint64_t)k->bank_size);
        if (g < first || g >= first + n) continue;
        const int i = g - first;
        const float *src = k->bank + (size_t)pick * row;
        memcpy(z + (size_t)i * k->dim, src, k->dim * sizeof *z);
        memcpy(y + (size_t)i * k->dim, src + k->dim, k->dim * sizeof *y);
        labels[i] = (int)src[2 * k->dim];
    }
    const int *lab = d->num_classes > 0 ? labels : NULL;
    int shape[FLASH_MAX_DIMS] = {n};
    for (int i = 0; i < d->ndim; i++) shape[1 + i] = d->shape[i];
    flash_tensor *x_T = flash_tensor_from(c, 1 + d->ndim, shape, z);
    flash_tensor *target = flash_tensor_from(c, 1 + d->ndim, shape, y);
    /* the student's own steps down to its last timestep, with gradients */
    const double t = d->timesteps[d->n_steps - 1];
    flash_tensor *x = x_T;
    if (d->n_steps > 1) {
        flash_sample_request rq = {.size = sizeof rq, .den = d->student, .x = x_T, .labels = lab, .stop_at = t,
                                   .timesteps = d->timesteps, .n_timesteps = d->n_steps,
                                   .rng = distill_stream(d, DISTILL_DRAW_ROLLOUT)};
        x = FLASH_API(d->sampler, flash_sampler_api)->sample(d->sampler->self, c, &rq);
    }
    flash_denoised s;
    if (!x || !target || flash_denoise(d->student, c, x, NULL, t, lab, 1.0f, NULL, &s)) return NULL;
    flash_cond cond = distill_cond(d, c, n, t, lab);
    flash_loss_in in = {.size = sizeof in, .pred = s.x0, .target = target, .x_t = x, .cond = &cond, .distill = d};
    return distill_losses(d, c, &in);
}

static const flash_strategy_api kd_api = {
    .head = {sizeof kd_api, FLASH_KIND_STRATEGY, "kd",
             "knowledge distillation (Luhman & Luhman 2021): regress the teacher's ODE output from its noise, a cached "
             "bank",
             keys, kd_create, kd_destroy},
    .trained = kd_trained,
    .step = distill_step,
    .after_step = distill_after_step,
};
FLASH_COMPONENT(kd_api)
