/* The distillation kit (distill.h): building teacher, student, sampler and
 * losses, the teacher's target operator (Imagine Flash eq. 7) and the
 * strategy entries every distillation strategy shares. */
#include "distill.h"

#include "flash/trainer.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The distillation's streams of the run's seed: DISTILL_STREAM ^ purpose
 * << 48 ^ base (distill_stream); a component's own: a hash of its tag ^
 * base (distill_own_stream). */
#define DISTILL_STREAM 0x6469737469ull /* "disti" */

static flash_params *model_params(const flash_instance *m)
{
    const flash_model_api *api = FLASH_API(m, flash_model_api);
    flash_params *p = api->params ? api->params(m->self) : NULL;
    return p && flash_params_count(p) > 0 ? p : NULL;
}

/* ---- the target operator ------------------------------------------------ */

static const char *const target_keys[] = {"k", "guidance_scale", "guidance_range", "solver", NULL};

static flash_status target_spec_read(const flash_cfg *map, distill_target_spec *s, flash_error *err)
{
    flash_status st;
    long k = 8;
    s->k = 8;
    s->guidance_scale = 1.0f;
    if (!map) return FLASH_OK;
    if (flash_cfg_kind(map) != FLASH_CFG_MAP) return flash_cfg_error(map, err, "target: expected a map {k, guidance_scale}");
    if (flash_cfg_get(map, "gamma"))
        return flash_cfg_error(flash_cfg_get(map, "gamma"), err,
                               "target.gamma moved to the loss that shifts its target: {plugin: srl, gamma: ...}");
    if ((st = flash_cfg_check_keys(map, "target", target_keys, err))) return st;
    if ((st = flash_cfg_int(map, "k", 8, &k, err))) return st;
    if (k < 1 || k > FLASH_MAX_STEPS)
        return flash_cfg_error(flash_cfg_get(map, "k"), err, "k must be in [1, %d]", FLASH_MAX_STEPS);
    s->k = (int)k;
    s->solver = flash_cfg_get(map, "solver");
    if (s->solver && flash_cfg_kind(s->solver) != FLASH_CFG_MAP)
        return flash_cfg_error(s->solver, err, "target.solver: expected a sampler slot, e.g. {plugin: dpmpp_2m}");
    if ((st = flash_cfg_float(map, "guidance_scale", 1.0f, &s->guidance_scale, err))) return st;
    if (!(s->guidance_scale >= 0.0f))
        return flash_cfg_error(flash_cfg_get(map, "guidance_scale"), err, "guidance_scale must be >= 0");
    const flash_cfg *range = flash_cfg_get(map, "guidance_range");
    if (range) {
        double v[2];
        size_t got = 0;
        if ((st = flash_cfg_doubles(map, "guidance_range", v, 2, &got, err))) return st;
        if (got != 2 || !(v[0] >= 0.0 && v[1] >= v[0] && v[1] <= 100.0))
            return flash_cfg_error(range, err, "guidance_range: expected [lo, hi] with 0 <= lo <= hi <= 100");
        if (flash_cfg_get(map, "guidance_scale"))
            return flash_cfg_error(flash_cfg_get(map, "guidance_scale"), err,
                                   "give guidance_scale (one scale) or guidance_range (a scale drawn per sample), "
                                   "not both");
        s->guidance_range = true;
        s->guidance_lo = (float)v[0];
        s->guidance_hi = (float)v[1];
    }
    return FLASH_OK;
}

int distill_target_timesteps(const distill_target_spec *s, double t, double *out)
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
/* ---- guidance ------------------------------------------------------------ */

/* Uniform scales from a label draw over many bins: flash_run_labels draws
 * for the global batch and keeps this rank's rows, so any rank count
 * draws the same scales. */
#define GUIDANCE_BINS (1 << 24)

const float *distill_guidance(distill *d, flash_ctx *c, int n)
{
    d->w = NULL;
    if (!flash_model_takes_guidance(&d->student_inst)) return NULL;
    float *w = flash_host_alloc(c, (size_t)n * sizeof *w);
    if (!w) return NULL;
    const distill_target_spec *s = &d->target;
    const int *bins =
        s->guidance_range ? flash_run_labels_from(d->run, c, distill_stream(d, DISTILL_DRAW_GUIDANCE), n, GUIDANCE_BINS)
                          : NULL;
    if (s->guidance_range && !bins) return NULL;
    for (int i = 0; i < n; i++)
        w[i] = bins ? s->guidance_lo + (s->guidance_hi - s->guidance_lo) * ((float)bins[i] + 0.5f) / GUIDANCE_BINS
                    : s->guidance_scale;
    d->w = w;
    return w;
}

flash_status distill_denoise(distill *d, flash_denoiser *den, flash_ctx *c, flash_tensor *x, const double *t,
                             double t_all, const int *labels, flash_denoised *out)
{
    if (d->w && labels && flash_model_takes_guidance(den->model))
        return flash_denoise_each(den, c, x, t, t_all, labels, d->w, NULL, out);
    return flash_denoise(den, c, x, t, t_all, labels, 1.0f, NULL, out);
}

flash_status distill_denoise_teacher(distill *d, flash_ctx *c, flash_tensor *x, const double *t, double t_all,
                                     const int *labels, flash_denoised *out)
{
    if (d->w && labels) return flash_denoise_each(d->teacher, c, x, t, t_all, labels, d->w, NULL, out);
    return flash_denoise(d->teacher, c, x, t, t_all, labels, labels ? d->target.guidance_scale : 1.0f, NULL, out);
}

/* The target by a sampler plugin (target.solver) on the same k timesteps:
 * from x_t at t to clean data, its result in place of eq. 7's last x0-hat
 * (for `ddim` the two are the same). Guided per sample at d->w when set,
 * else at target.guidance_scale. */
static flash_tensor *solver_target(distill *d, flash_ctx *c, flash_tensor *x, double t, const int *labels)
{
    double ts[FLASH_MAX_STEPS];
    const int n = distill_target_timesteps(&d->target, t, ts), rows = (int)x->shape[0];
    const float *w = d->w;
    if (labels && !w) {
        float *g = flash_host_alloc(c, (size_t)rows * sizeof *g);
        if (!g) return NULL;
        for (int i = 0; i < rows; i++) g[i] = d->target.guidance_scale;
        w = g;
    }
    flash_sample_request rq = {.size = sizeof rq, .den = d->teacher, .x = flash_detach(c, x), .labels = labels,
                               .stop_at = -1.0, .timesteps = ts, .n_timesteps = n, .mid_trajectory = true,
                               .rng = distill_stream(d, DISTILL_DRAW_ROLLOUT), .guidance = labels ? w : NULL};
    bool was = flash_grad_set(c, false);
    flash_tensor *x0 = FLASH_API(d->target_solver, flash_sampler_api)->sample(d->target_solver->self, c, &rq);
    flash_grad_set(c, was);
    return x0 ? flash_detach(c, x0) : NULL;
}

flash_tensor *distill_target(distill *d, flash_ctx *c, flash_tensor *x, double t, const int *labels)
{
    if (!x) return NULL;
    if (d->target_solver) return solver_target(d, c, x, t, labels);
    double ts[FLASH_MAX_STEPS];
    const int n = distill_target_timesteps(&d->target, t, ts);
    bool was = flash_grad_set(c, false);
    flash_tensor *x0 = NULL;
    x = flash_detach(c, x);
    for (int j = 0; j < n && x; j++) {
        flash_denoised o;
        if (distill_denoise_teacher(d, c, x, NULL, ts[j], labels, &o)) {
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

flash_tensor *distill_q_each(flash_ctx *c, const flash_instance *schedule, const double *t, flash_tensor *x0,
                             flash_tensor *eps)
{
    if (!x0 || !eps) return NULL;
    const int n = (int)x0->shape[0];
    float *as = flash_host_alloc(c, 2 * (size_t)n * sizeof *as);
    if (!as) return NULL;
    for (int i = 0; i < n; i++) {
        double a, s;
        flash_schedule_eval(schedule, t[i], &a, &s);
        as[i] = (float)a;
        as[n + i] = (float)s;
    }
    return flash_add(c, flash_mul(c, x0, flash_tensor_per_sample(c, x0, as)),
                     flash_mul(c, eps, flash_tensor_per_sample(c, eps, as + n)));
}

static bool all_equal(const double *t, int n)
{
    for (int i = 1; i < n; i++)
        if (t[i] != t[0]) return false;
    return true;
}

flash_tensor *distill_target_each(distill *d, flash_ctx *c, flash_tensor *x, const double *t, const int *labels)
{
    if (!x) return NULL;
    const int n = (int)x->shape[0], k = d->target.k;
    if (all_equal(t, n)) return distill_target(d, c, x, t[0], labels);
    if (d->target_solver) {
        /* a sampler takes one set of timesteps per call: the target per run
         * of rows at one t (the strategies group rows by timestep), the
         * guidance scales of the rows with them */
        const float *w_all = d->w;
        flash_tensor *out = NULL;
        for (int a = 0, b; a < n && (a == 0 || out); a = b) {
            for (b = a + 1; b < n && t[b] == t[a];) b++;
            d->w = w_all ? w_all + a : NULL;
            flash_tensor *part = solver_target(d, c, flash_narrow(c, x, a, b - a), t[a], labels ? labels + a : NULL);
            out = out ? distill_stack_rows(c, out, part) : part;
        }
        d->w = w_all;
        return out;
    }
    /* each sample's k time-uniform steps t (k - j) / k, rounded; where
     * rounding repeats a timestep (t < k) the step from it to itself is
     * DDIM's identity, so the result is distill_target's per sample */
    double *tj = flash_host_alloc(c, (size_t)n * sizeof *tj);
    if (!tj) return NULL;
    bool was = flash_grad_set(c, false);
    flash_tensor *x0 = NULL;
    x = flash_detach(c, x);
    for (int j = 0; j < k && x; j++) {
        for (int i = 0; i < n; i++) tj[i] = floor(t[i] * (double)(k - j) / (double)k + 0.5);
        flash_denoised o;
        if (distill_denoise_teacher(d, c, x, tj, 0.0, labels, &o)) {
            x0 = NULL;
            break;
        }
        x0 = o.x0;
        if (j + 1 < k) {
            for (int i = 0; i < n; i++) tj[i] = floor(t[i] * (double)(k - j - 1) / (double)k + 0.5);
            x = distill_q_each(c, d->teacher->schedule, tj, o.x0, o.eps);
        }
    }
    flash_grad_set(c, was);
    if (!x0 && flash_ctx_ok(c)) flash_ctx_fail(c, "target: the teacher took no step");
    return x0;
}

flash_tensor *distill_renoised_target_each(distill *d, flash_ctx *c, flash_tensor *x0_hat, const double *t_phi,
                                           const int *labels, flash_rng *rng)
{
    if (!x0_hat) return NULL;
    const int n = (int)x0_hat->shape[0];
    if (all_equal(t_phi, n)) return distill_renoised_target(d, c, x0_hat, t_phi[0], labels, rng);
    bool was = flash_grad_set(c, false);
    flash_tensor *eps = flash_run_randn(d->run, c, rng, x0_hat->ndim, x0_hat->shape);
    flash_tensor *x = distill_q_each(c, d->teacher->schedule, t_phi, flash_detach(c, x0_hat), eps);
    flash_grad_set(c, was);
    return distill_target_each(d, c, x, t_phi, labels);
}

flash_tensor *distill_renoised_target(distill *d, flash_ctx *c, flash_tensor *x0_hat, double t_phi,
                                      const int *labels, flash_rng *rng)
{
    if (!x0_hat) return NULL;
    double a, s;
    flash_schedule_eval(d->teacher->schedule, t_phi, &a, &s);
    bool was = flash_grad_set(c, false);
    flash_tensor *eps = flash_run_randn(d->run, c, rng, x0_hat->ndim, x0_hat->shape);
    flash_tensor *x = flash_lincomb(c, a, flash_detach(c, x0_hat), s, eps);
    flash_grad_set(c, was);
    return distill_target(d, c, x, t_phi, labels);
}

/* Rows are contiguous, so the stack is the concatenation of the two flattened as (1, rows * row size),
 * which flash_concat (along dim 1) does on every device. */
flash_tensor *distill_stack_rows(flash_ctx *c, flash_tensor *a, flash_tensor *b)
{
    if (!a || !b) return NULL;
    const size_t ra = a->numel / (size_t)a->shape[0], rb = b->numel / (size_t)b->shape[0];
    if (ra != rb) {
        flash_ctx_fail(c, "stack_rows: rows of %zu and %zu values", ra, rb);
        return NULL;
    }
    int shape[FLASH_MAX_DIMS];
    for (int i = 0; i < a->ndim; i++) shape[i] = a->shape[i];
    shape[0] = a->shape[0] + b->shape[0];
    flash_tensor *flat = flash_concat(c, flash_reshape(c, a, 2, (int[]){1, (int)a->numel}),
                                      flash_reshape(c, b, 2, (int[]){1, (int)b->numel}));
    return flash_reshape(c, flat, a->ndim, shape);
}

/* ---- draws --------------------------------------------------------------- */

/* The streams of an iteration: seeded before the method's step from base
 * (the iteration in training; a draw of the loop's evaluation stream in
 * evaluation, which differs per test batch). */
static void distill_seed_streams(distill *d, uint64_t base)
{
    d->draw_base = base;
    for (int p = 0; p < DISTILL_DRAW_COUNT; p++)
        flash_rng_seed_stream(&d->streams[p], d->env->seed, DISTILL_STREAM ^ ((uint64_t)(p + 1) << 48) ^ base);
}

flash_rng *distill_stream(distill *d, distill_draw purpose)
{
    return &d->streams[purpose];
}

flash_rng distill_own_stream(const distill *d, const char *tag)
{
    uint64_t h = 0xcbf29ce484222325ull; /* FNV-1a */
    for (const unsigned char *p = (const unsigned char *)tag; *p; p++) h = (h ^ *p) * 0x100000001b3ull;
    flash_rng r;
    flash_rng_seed_stream(&r, d->env->seed, h ^ d->draw_base);
    return r;
}

const int *distill_labels(distill *d, flash_ctx *c, int n)
{
    return flash_run_labels_from(d->run, c, distill_stream(d, DISTILL_DRAW_LABELS), n, d->num_classes);
}

flash_tensor *distill_noise(distill *d, flash_ctx *c, int n)
{
    int shape[FLASH_MAX_DIMS] = {n};
    for (int i = 0; i < d->ndim; i++) shape[1 + i] = d->shape[i];
    /* drawn for the global batch on several ranks, this rank's rows kept */
    return flash_run_randn(d->run, c, distill_stream(d, DISTILL_DRAW_NOISE), 1 + d->ndim, shape);
}

flash_status distill_real(distill *d, flash_ctx *c, int n, flash_tensor **x, const int **labels)
{
    return flash_run_draw_from(d->run, c, distill_stream(d, DISTILL_DRAW_REAL), n, x, labels);
}

flash_status distill_real_from(distill *d, flash_ctx *c, flash_rng *rng, int n, flash_tensor **x, const int **labels)
{
    return flash_run_draw_from(d->run, c, rng, n, x, labels);
}

const int *distill_labels_from(distill *d, flash_ctx *c, flash_rng *rng, int n)
{
    return flash_run_labels_from(d->run, c, rng, n, d->num_classes);
}

flash_cond distill_cond(distill *d, flash_ctx *c, int n, double t, const int *labels)
{
    return distill_cond_each(d, c, n, NULL, t, labels);
}

flash_cond distill_cond_each(distill *d, flash_ctx *c, int n, const double *t, double t_all, const int *labels)
{
    flash_cond cond = {.n = n, .labels = labels};
    /* host memory: a condition's arrays are read on the host on every device */
    float *tt = flash_host_alloc(c, 3 * (size_t)n * sizeof *tt);
    if (!tt) return cond;
    float *aa = tt + n, *ss = aa + n;
    for (int i = 0; i < n; i++) {
        const double ti = t ? t[i] : t_all;
        double a, s;
        flash_schedule_eval(d->student->schedule, ti, &a, &s);
        tt[i] = (float)ti;
        aa[i] = (float)a;
        ss[i] = (float)s;
    }
    cond.t = tt;
    cond.alpha = aa;
    cond.sigma = ss;
    return cond;
}

/* ---- losses -------------------------------------------------------------- */

flash_tensor *distill_losses(distill *d, flash_ctx *c, const flash_loss_in *in)
{
    flash_tensor *sum = NULL;
    d->last = *in;
    if (in->cond) {
        /* the caller's condition may live on its stack; its arrays are in
         * the arena, which outlives the losses' updates */
        d->last_cond = *in->cond;
        d->last.cond = &d->last_cond;
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

/* ---- copies of the student ------------------------------------------------- */

flash_status distill_clone_student(distill *d, flash_instance **out, flash_error *err)
{
    *out = NULL;
    if (!d->run) return flash_error_set(err, FLASH_ERR_RUNTIME, "distill: no run to keep a copy of the student");
    if (d->n_clones == DISTILL_MAX_CLONES)
        return flash_error_set(err, FLASH_ERR_RUNTIME, "distill: at most %d copies of the student", DISTILL_MAX_CLONES);
    flash_instance *inst = calloc(1, sizeof *inst);
    if (!inst) return flash_error_set(err, FLASH_ERR_NOMEM, "distill: out of memory");
    flash_status st = flash_instance_create(d->env, FLASH_KIND_MODEL, flash_cfg_get(d->env->root, "student"), inst, err);
    if (st) {
        free(inst);
        return st;
    }
    flash_params *p = model_params(inst);
    char name[32];
    snprintf(name, sizeof name, "clone%d", d->n_clones);
    bool restored = false;
    if (!p)
        st = flash_error_set(err, FLASH_ERR_CONFIG, "distill: the student '%s' has no parameters to copy",
                             d->student_inst.comp->name);
    /* a resumed run restores the copy from its checkpoint */
    else if ((st = flash_run_track(d->run, name, p, &restored, err)) == FLASH_OK && !restored)
        st = flash_params_copy(p, d->student_params, err);
    /* the copy works beside the student, on the pipeline's device */
    if (st == FLASH_OK) st = flash_params_to_device(p, flash_env_device(d->env), err);
    if (st) {
        flash_instance_destroy(inst);
        free(inst);
        return st;
    }
    d->clones[d->n_clones++] = inst;
    *out = inst;
    return FLASH_OK;
}

flash_status distill_clone_denoiser(distill *d, flash_instance **inst, flash_denoiser **out, flash_error *err)
{
    *out = NULL;
    flash_status st = distill_clone_student(d, inst, err);
    if (st) return st;
    flash_denoiser *den = &d->clone_dens[d->n_clones - 1];
    if ((st = flash_denoiser_init(den, *inst, d->student->schedule, err))) return st;
    flash_denoiser_set_role(den, "student copy");
    *out = den;
    return FLASH_OK;
}

flash_status distill_trainable_denoiser(distill *d, const char *name, flash_instance **inst, flash_denoiser **out,
                                        flash_error *err)
{
    *inst = NULL;
    *out = NULL;
    if (!d->run) return flash_error_set(err, FLASH_ERR_RUNTIME, "distill: no run to keep a trained copy in");
    if (d->n_clones == DISTILL_MAX_CLONES)
        return flash_error_set(err, FLASH_ERR_RUNTIME, "distill: at most %d copies of the student", DISTILL_MAX_CLONES);
    /* the teacher's architecture and weights when it has weights (DMD: the
     * fake score starts as the real one), else the student's */
    flash_params *tp = model_params(&d->teacher_inst);
    const char *slot = tp ? "teacher" : "student";
    flash_instance *m = calloc(1, sizeof *m);
    if (!m) return flash_error_set(err, FLASH_ERR_NOMEM, "distill: out of memory");
    /* a copy that models the student's samples takes the guidance scale
     * too when the student does: they differ with w */
    const flash_cfg *node = flash_cfg_get(d->env->root, slot);
    flash_cfg *guided = NULL;
    flash_status st = FLASH_OK;
    if (tp && flash_model_takes_guidance(&d->student_inst)) {
        if (!(guided = flash_cfg_clone(node))) st = flash_error_set(err, FLASH_ERR_NOMEM, "distill: out of memory");
        else st = flash_cfg_set(guided, "guidance_embed=true", err);
        node = guided;
    }
    if (st == FLASH_OK) st = flash_instance_create(d->env, FLASH_KIND_MODEL, node, m, err);
    if (st) {
        flash_cfg_free(guided);
        free(m);
        return st;
    }
    d->clone_cfgs[d->n_clones] = guided; /* the instance may keep pointers into it */
    flash_params *p = model_params(m);
    bool restored = false;
    if (!p)
        st = flash_error_set(err, FLASH_ERR_CONFIG, "distill: the %s '%s' has no parameters to train a copy of", slot,
                             m->comp->name);
    else if ((st = flash_run_track(d->run, name, p, &restored, err)) == FLASH_OK && !restored)
        st = flash_params_copy_keeping(p, tp ? tp : d->student_params, "guidance.", err);
    if (st == FLASH_OK) st = flash_params_to_device(p, flash_env_device(d->env), err);
    const int i = d->n_clones;
    if (st == FLASH_OK) st = flash_denoiser_init(&d->clone_dens[i], m, d->student->schedule, err);
    if (st) {
        flash_instance_destroy(m);
        free(m);
        flash_cfg_free(d->clone_cfgs[i]);
        d->clone_cfgs[i] = NULL;
        return st;
    }
    d->clones[d->n_clones++] = m;
    flash_denoiser_set_role(&d->clone_dens[i], name); /* "fake_score" */
    *inst = m;
    *out = &d->clone_dens[i];
    return FLASH_OK;
}

/* ---- building ------------------------------------------------------------ */

static flash_status need(const flash_cfg *root, const char *key, const flash_cfg **out, flash_error *err)
{
    *out = flash_cfg_get(root, key);
    if (!*out) return flash_cfg_error(root, err, "distillation: the pipeline needs a '%s:' section", key);
    return FLASH_OK;
}

void distill_close(distill *d)
{
    if (!d) return;
    for (int i = 0; i < d->n_clones; i++) {
        flash_denoiser_release(&d->clone_dens[i]);
        flash_instance_destroy(d->clones[i]);
        free(d->clones[i]);
        flash_cfg_free(d->clone_cfgs[i]);
        d->clone_cfgs[i] = NULL;
    }
    d->n_clones = 0;
    for (int i = 0; i < d->n_losses; i++) flash_instance_destroy(&d->loss_inst[i]);
    d->n_losses = 0;
    flash_denoiser_release(&d->sden);
    flash_denoiser_release(&d->tden);
    flash_instance_destroy(&d->sampler_inst);
    flash_instance_destroy(&d->solver_inst);
    flash_instance_destroy(&d->student_inst);
    flash_instance_destroy(&d->teacher_inst);
}

void distill_destroy(void *self)
{
    distill_close(self);
    free(self);
}

flash_status distill_open(distill *d, const flash_cfg *cfg, flash_env *env, distill_step_fn step, void **self,
                          void *method, flash_error *err)
{
    d->env = env;
    d->method_step = step;
    d->method = method;
    const flash_cfg *pn = flash_cfg_get(cfg, "plugin");
    d->strategy_name = pn ? flash_cfg_scalar(pn) : NULL;
    flash_status st = target_spec_read(flash_cfg_get(cfg, "target"), &d->target, err);
    if (st == FLASH_OK) *self = method;
    return st;
}

/* The models, the sampler and the losses, built when the run asks for
 * the trained parameters (creating the strategy alone, as `flash check`
 * does, reads only its own keys). */
static flash_status distill_build(distill *d, flash_error *err)
{
    flash_env *env = d->env;
    const flash_cfg *root = env->root, *slot;
    flash_status st;
    if (!env->schedule) return flash_cfg_error(root, err, "distillation: the pipeline needs a 'schedule:' section");
    if ((st = need(root, "teacher", &slot, err)) ||
        (st = flash_instance_create(env, FLASH_KIND_MODEL, slot, &d->teacher_inst, err)) ||
        (st = flash_teacher_load(root, &d->teacher_inst, err)))
        return st;
    env->teacher = &d->teacher_inst;
    if ((st = need(root, "student", &slot, err)) ||
        (st = flash_instance_create(env, FLASH_KIND_MODEL, slot, &d->student_inst, err)))
        return st;
    if (!(d->student_params = model_params(&d->student_inst)))
        return flash_cfg_error(slot, err, "student '%s' has no parameters to train", d->student_inst.comp->name);
    if ((st = need(root, "sampler", &slot, err)) ||
        (st = flash_instance_create(env, FLASH_KIND_SAMPLER, slot, &d->sampler_inst, err)))
        return st;
    if ((st = flash_denoiser_init(&d->tden, &d->teacher_inst, env->schedule, err)) ||
        (st = flash_denoiser_init(&d->sden, &d->student_inst, env->schedule, err)))
        return st;
    flash_denoiser_set_role(&d->tden, "teacher");
    flash_denoiser_set_role(&d->sden, "student");
    const flash_model_info *ti = &d->tden.info, *si = &d->sden.info;
    int same = ti->ndim == si->ndim;
    for (int i = 0; same && i < ti->ndim; i++) same = ti->shape[i] == si->shape[i];
    if (!same)
        return flash_cfg_error(flash_cfg_get(root, "student"), err,
                               "student '%s' and teacher '%s' take samples of different shapes",
                               d->student_inst.comp->name, d->teacher_inst.comp->name);
    if (ti->num_classes > 0 && si->num_classes != ti->num_classes)
        return flash_cfg_error(flash_cfg_get(root, "student"), err,
                               "the teacher has %d classes, the student %d: set the student's num_classes",
                               ti->num_classes, si->num_classes);

    const bool takes_w = flash_model_takes_guidance(&d->student_inst);
    if ((takes_w || d->target.guidance_range) && !d->trains_guidance)
        return flash_cfg_error(takes_w ? flash_cfg_get(root, "student") : flash_cfg_get(flash_cfg_get(root, "strategy"), "target"), err,
                               "strategy '%s' does not train guidance-conditioned students (its student would only "
                               "ever see w = 1): lcm and dmd2 do; or drop guidance_embed and guidance_range",
                               d->strategy_name ? d->strategy_name : "?");
    if (d->target.guidance_range && !takes_w)
        return flash_cfg_error(flash_cfg_get(root, "student"), err,
                               "target.guidance_range trains a guidance-conditioned student, and the student '%s' "
                               "takes no guidance scale: set its guidance_embed: true",
                               d->student_inst.comp->name);
    if (takes_w && ti->num_classes <= 0)
        return flash_cfg_error(flash_cfg_get(root, "student"), err,
                               "a guidance-conditioned student needs a class-conditional teacher (guidance mixes "
                               "the conditional and unconditional models)");

    /* Imagine Flash section 5: the student starts as a copy of the teacher */
    flash_params *tp = model_params(&d->teacher_inst);
    if (tp) {
        flash_error e = {0};
        /* a guidance-conditioned student's guidance input is its own */
        if (flash_params_copy_keeping(d->student_params, tp, "guidance.", &e) == FLASH_OK)
            flash_info("student initialised from the teacher's weights");
        else
            flash_info("student not initialised from the teacher (%s)", e.msg);
    }

    const int T = flash_schedule_T(env->schedule);
    const flash_sampler_api *sa = FLASH_API(&d->sampler_inst, flash_sampler_api);
    d->n_steps = sa->timesteps(d->sampler_inst.self, T, d->timesteps, DISTILL_MAX_STEPS);
    if (d->n_steps < 1)
        return flash_cfg_error(flash_cfg_get(root, "sampler"), err,
                               "the student's sampler lays out no timesteps (at most %d) on %d training steps",
                               DISTILL_MAX_STEPS, T);

    if ((st = need(root, "losses", &slot, err))) return st;
    if (flash_cfg_kind(slot) != FLASH_CFG_SEQ || flash_cfg_len(slot) < 1)
        return flash_cfg_error(slot, err, "losses: expected a list of loss slots ({plugin: NAME, weight: W})");
    if (flash_cfg_len(slot) > DISTILL_MAX_LOSSES)
        return flash_cfg_error(slot, err, "losses: at most %d", DISTILL_MAX_LOSSES);
    for (size_t i = 0; i < flash_cfg_len(slot); i++) {
        if ((st = flash_instance_create(env, FLASH_KIND_LOSS, flash_cfg_at(slot, i), &d->loss_inst[i], err)))
            return st;
        d->n_losses = (int)i + 1;
    }
    if (d->target.solver) {
        if ((st = flash_instance_create(env, FLASH_KIND_SAMPLER, d->target.solver, &d->solver_inst, err))) return st;
        d->target_solver = &d->solver_inst;
    }
    d->teacher = &d->tden;
    d->student = &d->sden;
    d->sampler = &d->sampler_inst;
    d->losses = d->loss_inst;
    d->num_classes = ti->num_classes;
    d->ndim = ti->ndim;
    for (int i = 0; i < 3; i++) d->shape[i] = ti->shape[i];
    return FLASH_OK;
}

/* ---- the strategy entries ----------------------------------------------- */

flash_params *distill_trained(void *self, flash_run *run, flash_error *err)
{
    distill *d = self;
    if (distill_build(d, err)) return NULL;
    d->run = run;
    distill_seed_streams(d, 0);
    d->batch_size = run->batch_size;
    d->steps = run->steps;
    if (run->data) {
        int ok = run->data->ndim == d->ndim;
        for (int i = 0; ok && i < d->ndim; i++) ok = run->data->shape[i] == d->shape[i];
        if (!ok) {
            flash_cfg_error(flash_cfg_get(d->env->root, "dataset"), err,
                            "the dataset's examples do not have the teacher's shape");
            return NULL;
        }
    }
    /* the teacher works beside the student, on the pipeline's device; the
     * loop moves the student */
    flash_params *tp = model_params(&d->teacher_inst);
    if (tp && flash_params_to_device(tp, flash_env_device(d->env), err)) return NULL;
    /* the losses' own parameters (a discriminator) in the run's checkpoints */
    for (int i = 0; i < d->n_losses; i++) {
        const flash_loss_api *api = FLASH_API(&d->losses[i], flash_loss_api);
        flash_params *p = api->params ? api->params(d->losses[i].self) : NULL;
        if (!p) continue;
        char name[32];
        snprintf(name, sizeof name, "loss%d", i);
        if (flash_run_track(run, name, p, NULL, err)) return NULL;
    }
    return d->student_params;
}

flash_tensor *distill_step(void *self, flash_ctx *c, flash_run *run, int64_t iter)
{
    distill *d = self;
    d->iter = iter;
    d->stats = run->stats;
    distill_seed_streams(d, run->eval ? flash_rng_u64(run->rng) : (uint64_t)iter);
    memset(&d->last, 0, sizeof d->last);
    const int64_t nfe0 = d->tden.nfe;
    flash_tensor *loss = d->method_step(d->method, c, d, iter);
    if (d->stats) flash_metric_result_add(d->stats, "teacher_nfe", (double)(d->tden.nfe - nfe0));
    return loss;
}

flash_status distill_after_step(void *self, flash_ctx *c, flash_run *run, int64_t iter, flash_error *err)
{
    (void)run;
    distill *d = self;
    /* the losses' own parts (a discriminator) alternate with the student */
    for (int i = 0; i < d->n_losses; i++) {
        const flash_loss_api *api = FLASH_API(&d->losses[i], flash_loss_api);
        if (!api->update || !d->last.pred) continue;
        flash_status st = api->update(d->losses[i].self, c, &d->last, iter, err);
        if (st) {
            flash_error_prefix(err, "loss '%s' update", d->losses[i].comp->name);
            return st;
        }
    }
    return FLASH_OK;
}

flash_tensor *distill_rollout(distill *d, flash_ctx *c, flash_tensor *x_T, const int *labels, int i)
{
    if (i == 0 || !x_T) return x_T;
    bool was = flash_grad_set(c, false);
    flash_sample_request rq = {.size = sizeof rq, .den = d->student, .x = x_T, .labels = labels,
                               .stop_at = d->timesteps[i], .timesteps = d->timesteps, .n_timesteps = d->n_steps,
                               .rng = distill_stream(d, DISTILL_DRAW_ROLLOUT), .guidance = labels ? d->w : NULL};
    flash_tensor *x = FLASH_API(d->sampler, flash_sampler_api)->sample(d->sampler->self, c, &rq);
    flash_grad_set(c, was);
    return flash_detach(c, x);
}
