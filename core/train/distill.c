/* The distillation context, the shared target operator (Imagine Flash
 * eq. 7 and 8) and the distillation loop (see include/flash/strategy.h and
 * include/flash/distill.h). */
#include "flash/distill.h"
#include "flash/trainer.h"
#include "tensor/tensor_internal.h" /* flash_host_alloc: labels are host memory on every device */

#include <errno.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* Streams of the run's seed: the distillation's draws (noise, labels,
 * step indices, real-data indices) and the student's initialisation. */
#define DISTILL_STREAM 0x6469737469ull /* "disti" */

/* ---- the target operator ------------------------------------------------ */

static const char *const target_keys[] = {"k", "guidance_scale", "gamma", NULL};

/* Imagine Flash section 5.1: gamma(t > 900) = 990, gamma(900 >= t > 500) =
 * 950, gamma(t <= 500) = 200. */
static void paper_gamma(flash_target_spec *s)
{
    s->n_gamma = 3;
    s->gamma_above[0] = 900, s->gamma_value[0] = 990;
    s->gamma_above[1] = 500, s->gamma_value[1] = 950;
    s->gamma_above[2] = -INFINITY, s->gamma_value[2] = 200;
}

flash_status flash_target_spec_read(const flash_cfg *map, flash_target_spec *s, flash_error *err)
{
    flash_status st;
    long k = 8;
    memset(s, 0, sizeof *s);
    s->k = 8;
    s->guidance_scale = 1.0f;
    paper_gamma(s);
    if (!map) return FLASH_OK;
    if (flash_cfg_kind(map) != FLASH_CFG_MAP) return flash_cfg_error(map, err, "target: expected a map");
    if ((st = flash_cfg_check_keys(map, "target", target_keys, err))) return st;
    if ((st = flash_cfg_int(map, "k", 8, &k, err))) return st;
    if (k < 1 || k > FLASH_MAX_STEPS) return flash_cfg_error(flash_cfg_get(map, "k"), err, "k must be in [1, %d]", FLASH_MAX_STEPS);
    s->k = (int)k;
    if ((st = flash_cfg_float(map, "guidance_scale", 1.0f, &s->guidance_scale, err))) return st;
    if (!(s->guidance_scale >= 0.0f))
        return flash_cfg_error(flash_cfg_get(map, "guidance_scale"), err, "guidance_scale must be >= 0");
    const flash_cfg *g = flash_cfg_get(map, "gamma");
    if (!g) return FLASH_OK;
    if (flash_cfg_kind(g) == FLASH_CFG_SCALAR) {
        if (strcmp(flash_cfg_scalar(g), "paper") != 0)
            return flash_cfg_error(g, err, "gamma: expected 'paper' or rows [above, value], got '%s'",
                                   flash_cfg_scalar(g));
        return FLASH_OK;
    }
    double m[2 * FLASH_GAMMA_MAX];
    size_t rows = 0, cols = 0;
    if ((st = flash_cfg_matrix(map, "gamma", m, 2 * FLASH_GAMMA_MAX, &rows, &cols, err))) return st;
    if (rows < 1 || cols != 2)
        return flash_cfg_error(g, err, "gamma: expected rows [above, value] (t > above -> value), e.g. [[900, 990], "
                                       "[500, 950], [-1, 200]]");
    s->n_gamma = (int)rows;
    for (size_t i = 0; i < rows; i++) {
        s->gamma_above[i] = m[2 * i];
        s->gamma_value[i] = m[2 * i + 1];
        if (!(m[2 * i + 1] >= 0 && m[2 * i + 1] <= FLASH_MAX_STEPS))
            return flash_cfg_error(g, err, "gamma: row %zu maps to %g, outside [0, %d]", i, m[2 * i + 1],
                                   FLASH_MAX_STEPS);
        if (i > 0 && !(m[2 * i] < m[2 * i - 2]))
            return flash_cfg_error(g, err, "gamma: the thresholds must decrease (row %zu: %g after %g)", i, m[2 * i],
                                   m[2 * i - 2]);
    }
    return FLASH_OK;
}

double flash_target_gamma(const flash_target_spec *s, double t)
{
    for (int i = 0; i < s->n_gamma; i++)
        if (t > s->gamma_above[i]) return s->gamma_value[i];
    return t;
}

int flash_target_timesteps(const flash_target_spec *s, double t, double *out)
{
    int n = 0;
    for (int j = 0; j < s->k; j++) {
        double tj = floor(t * (double)(s->k - j) / (double)s->k + 0.5);
        if (n > 0 && !(tj < out[n - 1])) continue;
        if (tj < 0) break;
        out[n++] = tj;
    }
    return n;
}

/* k DDIM steps (eq. 4) of the teacher with CFG from x at t; returns the
 * x0-hat of the last evaluation, which is where a DDIM trajectory to clean
 * data ends (eq. 7: x0-hat(f^k(x_t), eps, t/k)). */
static flash_tensor *teacher_k_steps(flash_distill *d, flash_ctx *c, flash_tensor *x, double t, const int *labels)
{
    double ts[FLASH_MAX_STEPS];
    const int n = flash_target_timesteps(&d->target, t, ts);
    const float w = labels ? d->target.guidance_scale : 1.0f;
    bool was = flash_grad_set(c, false);
    flash_tensor *x0 = NULL;
    x = flash_detach(c, x);
    for (int j = 0; j < n && x; j++) {
        flash_denoised o;
        if (flash_denoise(d->teacher, c, x, NULL, ts[j], labels, w, NULL, &o)) {
            x0 = NULL;
            break;
        }
        x0 = o.x0;
        if (j + 1 < n) {
            double a, s;
            flash_schedule_eval(d->teacher->schedule, ts[j + 1], &a, &s);
            x = flash_lincomb(c, a, o.x0, s, o.eps);
        }
    }
    flash_grad_set(c, was);
    if (!x0 && flash_ctx_ok(c)) flash_ctx_fail(c, "target: the teacher took no step from t = %g", t);
    return x0;
}

flash_tensor *flash_distill_target(flash_distill *d, flash_ctx *c, flash_tensor *x_t, double t, const int *labels)
{
    if (!x_t) return NULL;
    return teacher_k_steps(d, c, x_t, t, labels);
}

flash_tensor *flash_distill_srl_target(flash_distill *d, flash_ctx *c, flash_tensor *x0_hat, double t,
                                       const int *labels, flash_rng *rng)
{
    if (!x0_hat) return NULL;
    const double tp = flash_target_gamma(&d->target, t);
    double a, s;
    flash_schedule_eval(d->teacher->schedule, tp, &a, &s);
    bool was = flash_grad_set(c, false);
    /* eq. (8): X_{t_phi} = q(stopgrad(x0-hat), eps, gamma(t)) with fresh eps */
    flash_tensor *eps = flash_randn(c, rng ? rng : d->rng, x0_hat->ndim, x0_hat->shape);
    flash_tensor *x = flash_lincomb(c, a, flash_detach(c, x0_hat), s, eps);
    flash_grad_set(c, was);
    return teacher_k_steps(d, c, x, tp, labels);
}

/* ---- the loop's private state -------------------------------------------- */

#define DISTILL_MAX_LOSSES 16
#define DISTILL_MAX_CLONES 4

typedef struct loop {
    const flash_distill_opts *o;
    flash_train_config tc;
    flash_env env;
    flash_distill d;
    flash_instance schedule, teacher, student, sampler, strategy, data;
    flash_instance losses[DISTILL_MAX_LOSSES];
    flash_instance *clones[DISTILL_MAX_CLONES];
    int n_clones;
    flash_denoiser tden, sden;
    const flash_strategy_api *sapi;
    flash_dataset_info dinfo;
    int have_data;
    flash_params *P;
    flash_ctx *ctx;
    flash_rng rng;
    float *xbuf;
    int *lbuf;
    int64_t *idx;
    int cap;
    char ckpt_path[4096], metrics_path[4096];
    flash_jsonl jl;
    int64_t last_ckpt;
    bool resuming;
    flash_cond last_cond; /* d->last.cond points here */
} loop;

flash_tensor *flash_distill_losses(flash_distill *d, flash_ctx *c, const flash_loss_in *in)
{
    flash_tensor *sum = NULL;
    d->last = *in;
    loop *L = d->priv;
    if (L && in->cond) {
        /* the caller's condition may live on its stack; its arrays are in
         * the arena, which outlives the losses' updates */
        L->last_cond = *in->cond;
        d->last.cond = &L->last_cond;
    }
    for (int i = 0; i < d->n_losses; i++) {
        const flash_loss_api *api = FLASH_API(&d->losses[i], flash_loss_api);
        flash_tensor *l = api->compute(d->losses[i].self, c, in);
        if (!l || !flash_ctx_ok(c)) {
            if (flash_ctx_ok(c)) flash_ctx_fail(c, "loss '%s' returned nothing", d->losses[i].comp->name);
            return NULL;
        }
        if (l->numel != 1) {
            flash_ctx_fail(c, "loss '%s' returned %zu values, not a scalar", d->losses[i].comp->name, l->numel);
            return NULL;
        }
        if (d->stats) {
            char name[32];
            float v = 0;
            flash_error e = {0};
            if (flash_tensor_to_host(c, l, &v, &e)) {
                flash_ctx_fail(c, "loss '%s': %s", d->losses[i].comp->name, e.msg);
                return NULL;
            }
            snprintf(name, sizeof name, "loss_%s", d->losses[i].comp->name);
            flash_metric_result_add(d->stats, name, v);
        }
        sum = sum ? flash_add(c, sum, l) : l;
    }
    if (!sum) flash_ctx_fail(c, "distill: no losses configured");
    return sum;
}

const int *flash_distill_labels(flash_distill *d, flash_ctx *c, int n)
{
    if (d->num_classes <= 0) return NULL;
    /* host memory: the ops and the denoiser read labels on the host */
    int *y = flash_host_alloc(c, (size_t)n * sizeof *y);
    if (!y) return NULL;
    for (int i = 0; i < n; i++) y[i] = (int)flash_rng_below(d->rng, (uint64_t)d->num_classes);
    return y;
}

flash_tensor *flash_distill_noise(flash_distill *d, flash_ctx *c, int n)
{
    int shape[FLASH_MAX_DIMS] = {n};
    for (int i = 0; i < d->ndim; i++) shape[1 + i] = d->shape[i];
    return flash_randn(c, d->rng, 1 + d->ndim, shape);
}

flash_status flash_distill_real(flash_distill *d, flash_ctx *c, int n, flash_tensor **x, const int **labels)
{
    loop *L = d->priv;
    *x = NULL;
    if (labels) *labels = NULL;
    if (!L || !L->have_data) {
        flash_ctx_fail(c, "distill: this pipeline needs real data: add a `dataset:` slot");
        return FLASH_ERR_CONFIG;
    }
    size_t per = 1;
    for (int i = 0; i < d->ndim; i++) per *= (size_t)d->shape[i];
    if (n > L->cap) {
        float *xb = realloc(L->xbuf, (size_t)n * per * sizeof *xb);
        if (xb) L->xbuf = xb;
        int *lb = realloc(L->lbuf, (size_t)n * sizeof *lb);
        if (lb) L->lbuf = lb;
        int64_t *ib = realloc(L->idx, (size_t)n * sizeof *ib);
        if (ib) L->idx = ib;
        if (!xb || !lb || !ib) {
            flash_ctx_fail(c, "distill: out of memory for %d real examples", n);
            return FLASH_ERR_NOMEM;
        }
        L->cap = n;
    }
    for (int i = 0; i < n; i++) L->idx[i] = (int64_t)flash_rng_below(d->rng, (uint64_t)L->dinfo.n_train);
    flash_error e = {0};
    const flash_dataset_api *api = FLASH_API(&L->data, flash_dataset_api);
    const int labelled = L->dinfo.num_classes > 0;
    if (api->get(L->data.self, FLASH_SPLIT_TRAIN, L->idx, n, L->xbuf, labelled ? L->lbuf : NULL, &e)) {
        flash_ctx_fail(c, "dataset '%s': %s", L->data.comp->name, e.msg);
        return e.status ? e.status : FLASH_ERR_IO;
    }
    int shape[FLASH_MAX_DIMS] = {n};
    for (int i = 0; i < d->ndim; i++) shape[1 + i] = d->shape[i];
    *x = flash_tensor_from(c, 1 + d->ndim, shape, L->xbuf);
    if (labels && labelled) {
        int *y = flash_host_alloc(c, (size_t)n * sizeof *y);
        if (!y) return FLASH_ERR_NOMEM;
        memcpy(y, L->lbuf, (size_t)n * sizeof *y);
        *labels = y;
    }
    return *x ? FLASH_OK : FLASH_ERR_NOMEM;
}

static flash_params *model_params(const flash_instance *m)
{
    const flash_model_api *api = FLASH_API(m, flash_model_api);
    flash_params *p = api->params ? api->params(m->self) : NULL;
    return p && flash_params_count(p) > 0 ? p : NULL;
}

static void clone_path(const loop *L, int i, char *buf, size_t n)
{
    snprintf(buf, n, "%s/clone%d.safetensors", L->o->run_dir ? L->o->run_dir : ".", i);
}

static void loss_path(const loop *L, int i, char *buf, size_t n)
{
    snprintf(buf, n, "%s/loss%d.safetensors", L->o->run_dir, i);
}

flash_status flash_distill_clone_student(flash_distill *d, flash_instance **out, flash_error *err)
{
    loop *L = d->priv;
    *out = NULL;
    if (!L) return flash_error_set(err, FLASH_ERR_RUNTIME, "distill: no loop to own a copy of the student");
    if (L->n_clones == DISTILL_MAX_CLONES)
        return flash_error_set(err, FLASH_ERR_RUNTIME, "distill: at most %d copies of the student", DISTILL_MAX_CLONES);
    flash_instance *inst = calloc(1, sizeof *inst);
    if (!inst) return flash_error_set(err, FLASH_ERR_NOMEM, "distill: out of memory");
    flash_status st = flash_instance_create(&L->env, FLASH_KIND_MODEL, flash_cfg_get(L->o->root, "student"), inst, err);
    if (st) {
        free(inst);
        return st;
    }
    flash_params *p = model_params(inst);
    if (!p) {
        flash_instance_destroy(inst);
        free(inst);
        return flash_error_set(err, FLASH_ERR_CONFIG, "distill: the student '%s' has no parameters to copy",
                               L->student.comp->name);
    }
    char path[4200];
    clone_path(L, L->n_clones, path, sizeof path);
    struct stat sb;
    if (L->resuming && L->o->run_dir && stat(path, &sb) == 0)
        st = flash_checkpoint_load(path, p, NULL, err);
    else
        st = flash_params_copy(p, L->P, err);
    /* the copy works beside the student, on the pipeline's device */
    if (st == FLASH_OK) st = flash_params_to_device(p, L->tc.device, err);
    if (st) {
        flash_instance_destroy(inst);
        free(inst);
        return st;
    }
    L->clones[L->n_clones++] = inst;
    *out = inst;
    return FLASH_OK;
}

flash_tensor *flash_consistency_fn(flash_denoiser *den, flash_ctx *c, flash_tensor *x, double t, const int *labels,
                                   float guidance_scale)
{
    flash_denoised o;
    if (!x || flash_denoise(den, c, x, NULL, t, labels, labels ? guidance_scale : 1.0f, NULL, &o)) return NULL;
    double cs, co;
    flash_lcm_boundary(t, &cs, &co);
    return flash_lincomb(c, cs, x, co, o.x0);
}

flash_status flash_teacher_load(const flash_cfg *root, flash_instance *model, flash_error *err)
{
    const char *path = NULL;
    flash_status st = flash_cfg_str(root, "teacher_checkpoint", NULL, &path, err);
    if (st) return st;
    flash_params *p = model_params(model);
    if (!path) {
        if (p)
            return flash_cfg_error(flash_cfg_get(root, "teacher"), err,
                                   "teacher '%s' has parameters: name its weights with `teacher_checkpoint:`",
                                   model->comp->name);
        return FLASH_OK;
    }
    const flash_cfg *node = flash_cfg_get(root, "teacher_checkpoint");
    if (!p) return flash_cfg_error(node, err, "teacher '%s' has no parameters to load", model->comp->name);
    char full[4096];
    struct stat sb;
    const char *file = flash_cfg_file(node);
    const char *slash = file ? strrchr(file, '/') : NULL;
    if (stat(path, &sb) != 0 && path[0] != '/' && slash)
        snprintf(full, sizeof full, "%.*s/%s", (int)(slash - file), file, path);
    else
        snprintf(full, sizeof full, "%s", path);
    if (stat(full, &sb) != 0) return flash_cfg_error(node, err, "no teacher checkpoint at '%s'", path);
    if ((st = flash_checkpoint_load(full, p, NULL, err))) return st;
    /* the EMA weights by default (what a trained teacher samples with); an
     * early checkpoint's EMA still carries much of the initialisation, so
     * `teacher_weights: raw` takes the trained weights themselves */
    static const char *const which[] = {"ema", "raw", NULL};
    int w = 0;
    if ((st = flash_cfg_enum(root, "teacher_weights", which, 0, &w, err))) return st;
    if (w == 0 && flash_params_ema(p) && (st = flash_params_swap_ema(p, err))) return st;
    return FLASH_OK;
}

/* ---- the loop -------------------------------------------------------------- */

static void loop_free(loop *L)
{
    flash_jsonl_close(&L->jl);
    flash_ctx_destroy(L->ctx);
    free(L->xbuf);
    free(L->lbuf);
    free(L->idx);
    flash_instance_destroy(&L->strategy);
    for (int i = 0; i < L->n_clones; i++) {
        flash_instance_destroy(L->clones[i]);
        free(L->clones[i]);
    }
    for (int i = 0; i < L->d.n_losses; i++) flash_instance_destroy(&L->losses[i]);
    flash_denoiser_release(&L->sden);
    flash_denoiser_release(&L->tden);
    flash_instance_destroy(&L->sampler);
    flash_instance_destroy(&L->student);
    flash_instance_destroy(&L->teacher);
    flash_instance_destroy(&L->data);
    flash_instance_destroy(&L->schedule);
}

static flash_status need(const flash_cfg *root, const char *key, const flash_cfg **out, flash_error *err)
{
    *out = flash_cfg_get(root, key);
    if (!*out) return flash_cfg_error(root, err, "flash distill: the pipeline needs a '%s:' section", key);
    return FLASH_OK;
}

static flash_status loop_build(loop *L, flash_error *err)
{
    const flash_cfg *root = L->o->root, *slot;
    flash_status st;
    long seed;
    if ((st = flash_cfg_int(root, "seed", 0, &seed, err))) return st;
    if ((st = flash_train_config_read(flash_cfg_get(root, "distill"), &L->tc, err))) {
        flash_error_prefix(err, "distill");
        return st;
    }
    if ((st = flash_target_spec_read(flash_cfg_get(root, "target"), &L->d.target, err))) return st;
    /* components that make their own contexts (a discriminator's, an
     * evaluator's) make them on the pipeline's device */
    L->env = (flash_env){.size = sizeof L->env, .registry = L->o->registry, .seed = (uint64_t)seed,
                         .run_dir = L->o->run_dir, .root = root, .device = L->tc.device};
    /* the context on distill.device (as train.device), first: an unusable
     * device is reported against the key before any component is built */
    if (!(L->ctx = flash_ctx_create_on(L->tc.device, (size_t)64 << 20, err))) {
        const flash_cfg *key = flash_cfg_get(flash_cfg_get(root, "distill"), "device");
        char why[sizeof err->msg];
        snprintf(why, sizeof why, "%s", err->msg);
        return key ? flash_cfg_error(key, err, "%s", why) : FLASH_ERR_RUNTIME;
    }
    if ((st = need(root, "schedule", &slot, err)) ||
        (st = flash_instance_create(&L->env, FLASH_KIND_SCHEDULE, slot, &L->schedule, err)))
        return st;
    L->env.schedule = &L->schedule;
    if ((st = need(root, "teacher", &slot, err)) ||
        (st = flash_instance_create(&L->env, FLASH_KIND_MODEL, slot, &L->teacher, err)) ||
        (st = flash_teacher_load(root, &L->teacher, err)))
        return st;
    L->env.teacher = &L->teacher;
    if ((st = need(root, "student", &slot, err)) ||
        (st = flash_instance_create(&L->env, FLASH_KIND_MODEL, slot, &L->student, err)))
        return st;
    if (!(L->P = model_params(&L->student)))
        return flash_cfg_error(slot, err, "student '%s' has no parameters to train", L->student.comp->name);
    if ((st = need(root, "sampler", &slot, err)) ||
        (st = flash_instance_create(&L->env, FLASH_KIND_SAMPLER, slot, &L->sampler, err)))
        return st;
    if ((st = flash_denoiser_init(&L->tden, &L->teacher, &L->schedule, err)) ||
        (st = flash_denoiser_init(&L->sden, &L->student, &L->schedule, err)))
        return st;
    const flash_model_info *ti = &L->tden.info, *si = &L->sden.info;
    int same = ti->ndim == si->ndim;
    for (int i = 0; same && i < ti->ndim; i++) same = ti->shape[i] == si->shape[i];
    if (!same)
        return flash_cfg_error(flash_cfg_get(root, "student"), err,
                               "student '%s' and teacher '%s' take samples of different shapes",
                               L->student.comp->name, L->teacher.comp->name);
    if (ti->num_classes > 0 && si->num_classes != ti->num_classes)
        return flash_cfg_error(flash_cfg_get(root, "student"), err,
                               "the teacher has %d classes, the student %d: set the student's num_classes",
                               ti->num_classes, si->num_classes);

    /* Imagine Flash section 5: the student starts as a copy of the teacher */
    flash_params *tp = model_params(&L->teacher);
    if (tp) {
        flash_error e = {0};
        if (flash_params_copy(L->P, tp, &e) == FLASH_OK)
            flash_info("student initialised from the teacher's weights");
        else
            flash_info("student not initialised from the teacher (%s)", e.msg);
    }

    const int T = flash_schedule_T(&L->schedule);
    const flash_sampler_api *sa = FLASH_API(&L->sampler, flash_sampler_api);
    L->d.n_steps = sa->timesteps(L->sampler.self, T, L->d.timesteps, FLASH_DISTILL_MAX_STEPS);
    if (L->d.n_steps < 1)
        return flash_cfg_error(flash_cfg_get(root, "sampler"), err,
                               "the student's sampler lays out no timesteps (at most %d) on %d training steps",
                               FLASH_DISTILL_MAX_STEPS, T);

    if ((slot = flash_cfg_get(root, "dataset"))) {
        if ((st = flash_instance_create(&L->env, FLASH_KIND_DATASET, slot, &L->data, err))) return st;
        FLASH_API(&L->data, flash_dataset_api)->info(L->data.self, &L->dinfo);
        int ok = L->dinfo.ndim == ti->ndim && L->dinfo.n_train > 0;
        for (int i = 0; ok && i < ti->ndim; i++) ok = L->dinfo.shape[i] == ti->shape[i];
        if (!ok)
            return flash_cfg_error(slot, err, "dataset '%s' is empty or its examples do not have the teacher's shape",
                                   L->data.comp->name);
        L->have_data = 1;
    }

    if ((st = need(root, "losses", &slot, err))) return st;
    if (flash_cfg_kind(slot) != FLASH_CFG_SEQ || flash_cfg_len(slot) < 1)
        return flash_cfg_error(slot, err, "losses: expected a list of loss slots ({plugin: NAME, weight: W})");
    if (flash_cfg_len(slot) > DISTILL_MAX_LOSSES)
        return flash_cfg_error(slot, err, "losses: at most %d", DISTILL_MAX_LOSSES);
    for (size_t i = 0; i < flash_cfg_len(slot); i++) {
        if ((st = flash_instance_create(&L->env, FLASH_KIND_LOSS, flash_cfg_at(slot, i), &L->losses[i], err)))
            return st;
        L->d.n_losses = (int)i + 1;
    }
    if ((st = need(root, "strategy", &slot, err)) ||
        (st = flash_instance_create(&L->env, FLASH_KIND_STRATEGY, slot, &L->strategy, err)))
        return st;
    L->sapi = FLASH_API(&L->strategy, flash_strategy_api);
    if (!L->sapi->step)
        return flash_cfg_error(slot, err, "strategy '%s' is not a distillation strategy (use flash train)",
                               L->strategy.comp->name);

    /* the models on distill.device too: parameters were initialised and
     * loaded on the CPU; the teacher and the student move once,
     * checkpoints visit the host (ckpt_io) */
    if ((tp && (st = flash_params_to_device(tp, L->tc.device, err))) ||
        (st = flash_params_to_device(L->P, L->tc.device, err))) {
        flash_error_prefix(err, "flash distill");
        return st;
    }
    flash_rng_seed_stream(&L->rng, L->env.seed, DISTILL_STREAM);

    flash_distill *d = &L->d;
    d->size = sizeof *d;
    d->env = &L->env;
    d->teacher = &L->tden;
    d->student = &L->sden;
    d->student_params = L->P;
    d->sampler = &L->sampler;
    d->losses = L->losses;
    d->batch_size = L->tc.batch_size;
    d->num_classes = ti->num_classes;
    d->ndim = ti->ndim;
    for (int i = 0; i < 3; i++) d->shape[i] = ti->shape[i];
    d->rng = &L->rng;
    d->steps = L->tc.steps;
    d->priv = L;
    return FLASH_OK;
}

/* Checkpoints are read and written in host memory: parameters on a device
 * visit the CPU for the file and go back (as flash train's do). */
static flash_status ckpt_io(bool save, const char *path, flash_params *p, flash_ckpt_info *info, flash_error *err)
{
    const char *dev = flash_params_device(p);
    const bool away = strcmp(dev, "cpu") != 0;
    flash_status st = away ? flash_params_to_device(p, "cpu", err) : FLASH_OK;
    if (st == FLASH_OK)
        st = save ? flash_checkpoint_save(path, p, info, err) : flash_checkpoint_load(path, p, info, err);
    if (away) {
        flash_error e2 = {0};
        flash_status s2 = flash_params_to_device(p, dev, &e2);
        if (st == FLASH_OK && s2) {
            *err = e2;
            st = s2;
        }
    }
    return st;
}

static flash_status save_all(loop *L, int64_t step, flash_error *err)
{
    char path[4200];
    flash_status st;
    flash_ckpt_info aux = {.step = step, .rng = L->rng};
    for (int i = 0; i < L->d.n_losses; i++) {
        const flash_loss_api *api = FLASH_API(&L->losses[i], flash_loss_api);
        flash_params *p = api->params ? api->params(L->losses[i].self) : NULL;
        if (!p) continue;
        loss_path(L, i, path, sizeof path);
        if ((st = ckpt_io(true, path, p, &aux, err))) return st;
    }
    for (int i = 0; i < L->n_clones; i++) {
        clone_path(L, i, path, sizeof path);
        if ((st = ckpt_io(true, path, model_params(L->clones[i]), &aux, err))) return st;
    }
    /* the student last: its step marks a complete checkpoint */
    flash_ckpt_info info = {.step = step, .rng = L->rng, .config_yaml = flash_cfg_to_yaml(L->o->root)};
    if (!info.config_yaml) return flash_error_set(err, FLASH_ERR_NOMEM, "flash distill: cannot serialise the config");
    st = ckpt_io(true, L->ckpt_path, L->P, &info, err);
    free(info.config_yaml);
    if (st == FLASH_OK) L->last_ckpt = step;
    return st;
}

static flash_status load_all(loop *L, int64_t *start, flash_error *err)
{
    flash_ckpt_info info = {0};
    flash_status st = ckpt_io(false, L->ckpt_path, L->P, &info, err);
    if (st) return st;
    free(info.config_yaml);
    *start = info.step;
    L->rng = info.rng;
    L->last_ckpt = info.step;
    char path[4200];
    for (int i = 0; i < L->d.n_losses; i++) {
        const flash_loss_api *api = FLASH_API(&L->losses[i], flash_loss_api);
        flash_params *p = api->params ? api->params(L->losses[i].self) : NULL;
        if (!p) continue;
        loss_path(L, i, path, sizeof path);
        if ((st = ckpt_io(false, path, p, NULL, err))) return st;
    }
    L->resuming = true; /* clones load their files when the strategy makes them */
    return FLASH_OK;
}


static flash_status guard_fail(loop *L, int64_t step, const char *what, double v, flash_error *err)
{
    if (L->last_ckpt > 0)
        return flash_error_set(err, FLASH_ERR_RUNTIME,
                               "flash distill: step %lld: %s is %g; stopped before updating. The last good checkpoint "
                               "is %s (step %lld); lower distill.lr and resume",
                               (long long)step, what, v, L->ckpt_path, (long long)L->last_ckpt);
    return flash_error_set(err, FLASH_ERR_RUNTIME,
                           "flash distill: step %lld: %s is %g; stopped before updating (no checkpoint yet)",
                           (long long)step, what, v);
}

static flash_status loop_run(loop *L, int64_t start, flash_error *err)
{
    const flash_train_config *tc = &L->tc;
    flash_distill *d = &L->d;
    flash_progress prog;
    if (L->o->progress) flash_progress_begin(&prog, "distill", start, tc->steps);
    double t_log = flash_now(), loss_acc = 0;
    int64_t n_acc = 0, tnfe0 = L->tden.nfe;
    flash_status st = FLASH_OK;
    int64_t last = tc->steps;
    if (L->o->stop_after > 0 && L->o->stop_after < last) last = L->o->stop_after;
    for (int64_t step = start + 1; step <= last; step++) {
        flash_ctx_reset(L->ctx);
        flash_metric_result stats = {0};
        d->stats = &stats;
        d->iter = step;
        memset(&d->last, 0, sizeof d->last);
        flash_tensor *loss = L->sapi->step(L->strategy.self, L->ctx, d, step);
        if (!loss || !flash_ctx_ok(L->ctx)) {
            st = flash_ctx_status(L->ctx, err);
            if (st == FLASH_OK)
                st = flash_error_set(err, FLASH_ERR_RUNTIME, "strategy '%s' returned no loss", L->strategy.comp->name);
            flash_error_prefix(err, "flash distill: step %lld", (long long)step);
            break;
        }
        double lv = 0, gnorm = 0, lr = 0;
        const char *bad = NULL;
        if ((st = flash_train_update(L->ctx, L->P, loss, tc, step, "flash distill", &lv, &gnorm, &lr, &bad, err)))
            break;
        if (bad) {
            st = guard_fail(L, step, bad, isfinite(lv) ? gnorm : lv, err);
            break;
        }
        /* the losses' own parts (a discriminator) alternate with the student */
        for (int i = 0; i < d->n_losses; i++) {
            const flash_loss_api *api = FLASH_API(&L->losses[i], flash_loss_api);
            if (!api->update || !d->last.pred) continue;
            if ((st = api->update(L->losses[i].self, L->ctx, &d->last, step, err))) {
                flash_error_prefix(err, "flash distill: step %lld: loss '%s' update", (long long)step,
                                   L->losses[i].comp->name);
                break;
            }
        }
        if (st) break;
        loss_acc += lv;
        n_acc++;
        if (step % tc->log_every == 0 || step == last) {
            double now = flash_now();
            char line[2048];
            int len = snprintf(line, sizeof line,
                               "\"step\": %lld, \"loss\": %.9g, \"loss_avg\": %.9g, \"lr\": %.9g, \"grad_norm\": %.9g, "
                               "\"step_s\": %.5f, \"teacher_nfe\": %.9g",
                               (long long)step, lv, loss_acc / (double)n_acc, lr, gnorm,
                               (now - t_log) / (double)n_acc, (double)(L->tden.nfe - tnfe0) / (double)n_acc);
            for (int k = 0; k < stats.n && len > 0 && len < (int)sizeof line; k++)
                len += snprintf(line + len, sizeof line - (size_t)len, ", \"%s\": %.9g", stats.name[k],
                                stats.value[k]);
            flash_jsonl_write(&L->jl, "%s", line);
            t_log = now;
            tnfe0 = L->tden.nfe;
            loss_acc = 0;
            n_acc = 0;
        }
        if (L->o->progress) flash_progress_update(&prog, step, "loss %.4f | lr %.2e", lv, lr);
        if ((tc->ckpt_every > 0 && step % tc->ckpt_every == 0) || step == last) {
            if ((st = save_all(L, step, err))) break;
        }
    }
    if (L->o->progress) flash_progress_end(&prog);
    return st;
}

flash_status flash_distill_run(const flash_distill_opts *o, flash_error *err)
{
    if (!o || o->size < sizeof *o || !o->root || !o->registry || !o->run_dir)
        return flash_error_set(err, FLASH_ERR_USAGE, "flash_distill_run: incomplete options");
    loop *L = calloc(1, sizeof *L);
    if (!L) return flash_error_set(err, FLASH_ERR_NOMEM, "flash distill: out of memory");
    L->o = o;
    flash_status st = flash_mkdirs(o->run_dir, err);
    if (st) goto out;
    snprintf(L->ckpt_path, sizeof L->ckpt_path, "%s/%s", o->run_dir, FLASH_RUN_CHECKPOINT);
    snprintf(L->metrics_path, sizeof L->metrics_path, "%s/%s", o->run_dir, FLASH_RUN_METRICS);
    if ((st = loop_build(L, err))) goto out;
    int64_t start = 0;
    struct stat sb;
    const int have = stat(L->ckpt_path, &sb) == 0;
    if (o->resume) {
        if (!have) {
            st = flash_error_set(err, FLASH_ERR_USAGE, "flash distill --resume: no checkpoint at %s", L->ckpt_path);
            goto out;
        }
        if ((st = load_all(L, &start, err)) || (st = flash_jsonl_truncate(L->metrics_path, start, err))) goto out;
        flash_info("resuming %s at step %lld of %lld", o->run_dir, (long long)start, (long long)L->tc.steps);
    } else {
        if (have) {
            st = flash_error_set(err, FLASH_ERR_USAGE,
                                 "flash distill: %s already holds a checkpoint; continue it with --resume or choose "
                                 "another --out",
                                 o->run_dir);
            goto out;
        }
        if (remove(L->metrics_path) != 0 && errno != ENOENT) {
            st = flash_error_set(err, FLASH_ERR_IO, "flash distill: cannot remove the old %s", L->metrics_path);
            goto out;
        }
    }
    if ((st = flash_jsonl_open(&L->jl, L->metrics_path, err))) goto out;
    char tsl[256];
    int tl = 0;
    for (int i = 0; i < L->d.n_steps && tl >= 0 && tl < (int)sizeof tsl; i++)
        tl += snprintf(tsl + tl, sizeof tsl - (size_t)tl, "%s%g", i ? ", " : "", L->d.timesteps[i]);
    flash_info("distilling %s into %s (%zu parameters; student timesteps [%s]) with %s: %lld iterations of %d, "
               "device %s",
               L->teacher.comp->name, L->student.comp->name, flash_params_count(L->P), tsl, L->strategy.comp->name,
               (long long)L->tc.steps, L->tc.batch_size, L->tc.device);
    if (start >= L->tc.steps) {
        flash_info("the checkpoint is at step %lld: nothing left to distill", (long long)start);
        goto out;
    }
    st = loop_run(L, start, err);
out:
    loop_free(L);
    free(L);
    return st;
}

flash_status flash_distill_open(const flash_distill_opts *o, flash_distill **out, flash_error *err)
{
    *out = NULL;
    if (!o || o->size < sizeof *o || !o->root || !o->registry)
        return flash_error_set(err, FLASH_ERR_USAGE, "flash_distill_open: incomplete options");
    loop *L = calloc(1, sizeof *L);
    if (!L) return flash_error_set(err, FLASH_ERR_NOMEM, "flash distill: out of memory");
    L->o = o;
    flash_status st = loop_build(L, err);
    if (st) {
        loop_free(L);
        free(L);
        return st;
    }
    *out = &L->d;
    return FLASH_OK;
}

void flash_distill_close(flash_distill *d)
{
    if (!d) return;
    loop *L = d->priv;
    loop_free(L);
    free(L);
}

flash_instance *flash_distill_strategy(flash_distill *d)
{
    return d && d->priv ? &((loop *)d->priv)->strategy : NULL;
}
