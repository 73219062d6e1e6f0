/* The diffusion core shared by samplers, strategies and losses: prediction
 * types (Imagine Flash eq. 5), the guided denoiser, timestep selection and
 * noise correction (eq. 9). See include/flash/diffusion.h. */
#include "flash/diffusion.h"

#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

/* ---- schedules ----------------------------------------------------------- */

void flash_schedule_eval(const flash_instance *sched, double t, double *alpha, double *sigma) {
    FLASH_API(sched, flash_schedule_api)->alpha_sigma(sched->self, t, alpha, sigma);
}

int flash_schedule_T(const flash_instance *sched) {
    return FLASH_API(sched, flash_schedule_api)->num_train_timesteps(sched->self);
}

double flash_schedule_log_snr(const flash_instance *sched, double t) {
    double a, s;
    flash_schedule_eval(sched, t, &a, &s);
    if (a <= 0.0) return -INFINITY;
    if (s <= 0.0) return INFINITY;
    return log(a) - log(s);
}

/* ---- prediction types ---------------------------------------------------- */

const char *const flash_prediction_names[] = {"epsilon", "v_prediction", "sample", NULL};

const char *flash_prediction_name(flash_prediction p) {
    return (int)p >= 0 && p <= FLASH_PRED_SAMPLE ? flash_prediction_names[p] : "unknown";
}

int flash_prediction_parse(const char *name) {
    for (int i = 0; flash_prediction_names[i]; i++)
        if (name && strcmp(name, flash_prediction_names[i]) == 0) return i;
    return -1;
}

static int batch_of(const flash_tensor *x) { return x->shape[0]; }

flash_tensor *flash_pred_x0(flash_ctx *c, flash_prediction p, flash_tensor *x, flash_tensor *out,
                            const float *alpha, const float *sigma) {
    if (!x || !out) return NULL;
    switch (p) {
    case FLASH_PRED_EPSILON: {
        /* eq. (5): x0 = (x_t - sigma_t eps) / alpha_t */
        for (int i = 0; i < batch_of(x); i++)
            if (!(alpha[i] > 0.0f)) {
                flash_ctx_fail(c,
                               "x0-hat (eq. 5) is undefined for an epsilon-prediction model where alpha_t = 0 "
                               "(zero terminal SNR): use v_prediction or sample, or timesteps below the last one");
                return NULL;
            }
        flash_tensor *a = flash_tensor_per_sample(c, x, alpha), *s = flash_tensor_per_sample(c, x, sigma);
        return flash_div(c, flash_sub(c, x, flash_mul(c, out, s)), a);
    }
    case FLASH_PRED_V: {
        flash_tensor *a = flash_tensor_per_sample(c, x, alpha), *s = flash_tensor_per_sample(c, x, sigma);
        return flash_sub(c, flash_mul(c, x, a), flash_mul(c, out, s));
    }
    case FLASH_PRED_SAMPLE:
        return out;
    }
    flash_ctx_fail(c, "unknown prediction type %d", (int)p);
    return NULL;
}

flash_tensor *flash_pred_eps(flash_ctx *c, flash_prediction p, flash_tensor *x, flash_tensor *out,
                             const float *alpha, const float *sigma) {
    if (!x || !out) return NULL;
    switch (p) {
    case FLASH_PRED_EPSILON:
        return out;
    case FLASH_PRED_V: {
        flash_tensor *a = flash_tensor_per_sample(c, x, alpha), *s = flash_tensor_per_sample(c, x, sigma);
        return flash_add(c, flash_mul(c, x, s), flash_mul(c, out, a));
    }
    case FLASH_PRED_SAMPLE: {
        for (int i = 0; i < batch_of(x); i++)
            if (!(sigma[i] > 0.0f)) {
                flash_ctx_fail(c, "eps-hat is undefined for a sample-prediction model where sigma_t = 0");
                return NULL;
            }
        flash_tensor *a = flash_tensor_per_sample(c, x, alpha), *s = flash_tensor_per_sample(c, x, sigma);
        return flash_div(c, flash_sub(c, x, flash_mul(c, out, a)), s);
    }
    }
    flash_ctx_fail(c, "unknown prediction type %d", (int)p);
    return NULL;
}

flash_tensor *flash_pred_target(flash_ctx *c, flash_prediction p, flash_tensor *x0, flash_tensor *eps,
                                const float *alpha, const float *sigma) {
    if (!x0 || !eps) return NULL;
    switch (p) {
    case FLASH_PRED_EPSILON:
        return eps;
    case FLASH_PRED_V: {
        flash_tensor *a = flash_tensor_per_sample(c, x0, alpha), *s = flash_tensor_per_sample(c, x0, sigma);
        return flash_sub(c, flash_mul(c, eps, a), flash_mul(c, x0, s));
    }
    case FLASH_PRED_SAMPLE:
        return x0;
    }
    flash_ctx_fail(c, "unknown prediction type %d", (int)p);
    return NULL;
}

/* ---- the denoiser -------------------------------------------------------- */

flash_status flash_denoiser_init(flash_denoiser *d, const flash_instance *model, const flash_instance *schedule,
                                 flash_error *err) {
    memset(d, 0, sizeof *d);
    if (!model || !model->comp || model->comp->kind != FLASH_KIND_MODEL)
        return flash_error_set(err, FLASH_ERR_CONFIG, "denoiser: no model");
    if (!schedule || !schedule->comp || schedule->comp->kind != FLASH_KIND_SCHEDULE)
        return flash_error_set(err, FLASH_ERR_CONFIG, "denoiser: no schedule");
    d->model = model;
    d->schedule = schedule;
    FLASH_API(model, flash_model_api)->info(model->self, &d->info);
    if (d->info.out_dim != 0)
        return flash_error_set(err, FLASH_ERR_CONFIG, "denoiser: model '%s' is not a denoiser (it has %d outputs)",
                               model->comp->name, d->info.out_dim);
    if ((int)d->info.prediction < 0 || d->info.prediction > FLASH_PRED_SAMPLE)
        return flash_error_set(err, FLASH_ERR_CONFIG, "denoiser: model '%s' has an unknown prediction type",
                               model->comp->name);
    return FLASH_OK;
}

/* ---- roles, for profiles ----------------------------------------------------
 * A profile (flash bench --distill) splits an iteration's time by the
 * network a denoiser evaluates; the denoiser struct is the plugins' to
 * allocate, so its role lives here, keyed by its address. */
#define MAX_ROLES 32
static struct {
    const flash_denoiser *d;
    const char *role;
} g_roles[MAX_ROLES];

void flash_denoiser_set_role(const flash_denoiser *d, const char *role) {
    int free_slot = -1;
    for (int i = 0; i < MAX_ROLES; i++) {
        if (g_roles[i].d == d) {
            g_roles[i].role = role;
            if (!role) g_roles[i].d = NULL;
            return;
        }
        if (!g_roles[i].d && free_slot < 0) free_slot = i;
    }
    if (role && free_slot >= 0) g_roles[free_slot].d = d, g_roles[free_slot].role = role;
}

static const char *role_of(const flash_denoiser *d) {
    if (!flash_profile_active()) return NULL;
    for (int i = 0; i < MAX_ROLES; i++)
        if (g_roles[i].d == d) return g_roles[i].role;
    return NULL;
}

void flash_denoiser_release(flash_denoiser *d) {
    if (!d) return;
    flash_denoiser_set_role(d, NULL);
    free(d->scratch);
    free(d->scratch_labels);
    d->scratch = NULL;
    d->scratch_labels = NULL;
    d->scratch_cap = 0;
}

static bool scratch_reserve(flash_denoiser *d, size_t n) {
    if (n <= d->scratch_cap) return true;
    float *f = realloc(d->scratch, 4 * n * sizeof *f); /* t, alpha, sigma, w */
    if (!f) return false;
    d->scratch = f;
    int *l = realloc(d->scratch_labels, n * sizeof *l);
    if (!l) return false;
    d->scratch_labels = l;
    d->scratch_cap = n;
    return true;
}

/* Two copies of x stacked along the batch: (2N, ...). Built from views and
 * a feature concat so it stays on the tensor's device and on the tape. */
static flash_tensor *stack_twice(flash_ctx *c, flash_tensor *x) {
    int flat[2] = {1, (int)x->numel};
    flash_tensor *row = flash_reshape(c, x, 2, flat);
    flash_tensor *two = flash_concat(c, row, row);
    int shape[FLASH_MAX_DIMS];
    for (int i = 0; i < x->ndim; i++) shape[i] = x->shape[i];
    shape[0] *= 2;
    return flash_reshape(c, two, x->ndim, shape);
}

bool flash_model_takes_guidance(const flash_instance *model) {
    if (!model || !model->comp || model->comp->kind != FLASH_KIND_MODEL) return false;
    const flash_model_api *m = FLASH_API(model, flash_model_api);
    return m->head.size >= offsetof(flash_model_api, forward_guided) + sizeof m->forward_guided &&
           m->takes_guidance && m->forward_guided && m->takes_guidance(model->self);
}

/* flash_denoise and flash_denoise_each: the scale is ws[i] when ws is
 * given, else w for every sample. */
static flash_status denoise(flash_denoiser *d, flash_ctx *c, flash_tensor *x, const double *t, double t_all,
                            const int *labels, float w, const float *ws, flash_tensor *x_T, flash_denoised *out) {
    memset(out, 0, sizeof *out);
    if (!x) {
        flash_ctx_fail(c, "denoiser: no input");
        return FLASH_ERR_RUNTIME;
    }
    const flash_model_api *m = FLASH_API(d->model, flash_model_api);
    const int n = x->shape[0];
    const int ncls = d->info.num_classes;
    bool unit = true; /* every scale is 1 */
    for (int i = 0; i < n && unit; i++) unit = (ws ? ws[i] : w) == 1.0f;
    /* a guidance-conditioned model is guided by its input, in one call */
    const bool w_input = flash_model_takes_guidance(d->model);
    const bool guided = labels != NULL && !unit && !w_input;
    if (labels && ncls <= 0) {
        flash_ctx_fail(c, "denoiser: class labels given to the unconditional model '%s'", d->model->comp->name);
        return FLASH_ERR_RUNTIME;
    }
    if (!unit && !labels) {
        flash_ctx_fail(c, "denoiser: guidance_scale %g needs class labels (model '%s')", (double)(ws ? ws[0] : w),
                       d->model->comp->name);
        return FLASH_ERR_RUNTIME;
    }
    const int nb = guided ? 2 * n : n;
    if (!scratch_reserve(d, (size_t)nb)) {
        flash_ctx_fail(c, "denoiser: out of memory for %d condition entries", nb);
        return FLASH_ERR_RUNTIME;
    }
    float *tt = d->scratch, *aa = d->scratch + nb, *ss = d->scratch + 2 * nb, *ww = d->scratch + 3 * nb;
    for (int i = 0; i < n; i++) ww[i] = ws ? ws[i] : w;
    int *ll = d->scratch_labels;
    for (int i = 0; i < n; i++) {
        double ti = t ? t[i] : t_all, a, s;
        flash_schedule_eval(d->schedule, ti, &a, &s);
        tt[i] = (float)ti;
        aa[i] = (float)a;
        ss[i] = (float)s;
        if (labels) {
            if (labels[i] < 0 || labels[i] > ncls) {
                flash_ctx_fail(c, "denoiser: label %d of sample %d is outside [0, %d] (%d is the null class)",
                               labels[i], i, ncls, ncls);
                return FLASH_ERR_RUNTIME;
            }
            ll[i] = labels[i];
        }
        if (guided) {
            tt[n + i] = tt[i];
            aa[n + i] = aa[i];
            ss[n + i] = ss[i];
            ll[n + i] = ncls; /* the null class */
        }
        if (d->info.prediction == FLASH_PRED_EPSILON && !(a > 0.0)) {
            /* x0-hat = (x - sigma eps) / alpha (eq. 5) has no value here, and
             * noise correction (eq. 9) still needs it for its first term */
            flash_ctx_fail(c,
                           "denoiser: t = %g has alpha_t = 0 (zero terminal SNR), where an epsilon-prediction "
                           "model defines no x0-hat (eq. 5)%s; use v_prediction, or start below the last "
                           "timestep (timestep_spacing: leading)",
                           ti, x_T ? ", which noise correction (eq. 9) needs too" : "");
            return FLASH_ERR_RUNTIME;
        }
    }
    flash_cond cond = {.n = nb, .t = tt, .alpha = aa, .sigma = ss, .labels = labels ? ll : NULL};
    /* Without a tape nothing after this call needs the network's
     * activations: dropping them here keeps a sampler's or a target
     * operator's memory at one evaluation's, not one per step. */
    const bool scoped = !flash_grad_enabled(c);
    const flash_arena_mark mark = flash_ctx_mark(c);
    flash_tensor *in = guided ? stack_twice(c, x) : x;
    flash_tensor *o = w_input ? m->forward_guided(d->model->self, c, in, &cond, ww) : m->forward(d->model->self, c, in, &cond);
    d->calls += 1;
    d->nfe += guided ? 2 : 1;
    if (!o || !flash_ctx_ok(c)) {
        if (flash_ctx_ok(c)) flash_ctx_fail(c, "denoiser: model '%s' returned no output", d->model->comp->name);
        return FLASH_ERR_RUNTIME;
    }
    if (o->numel != in->numel || o->shape[0] != nb) {
        char b1[64], b2[64];
        flash_ctx_fail(c, "denoiser: model '%s' maps %s to %s", d->model->comp->name,
                       flash_tensor_shape_str(in, b1, sizeof b1), flash_tensor_shape_str(o, b2, sizeof b2));
        return FLASH_ERR_RUNTIME;
    }
    if (guided) {
        /* classifier-free guidance (Ho & Salimans 2022): the output is linear
         * in (x0, eps) for a fixed x_t, so guiding the raw output guides both */
        flash_tensor *oc = flash_narrow(c, o, 0, n), *ou = flash_narrow(c, o, n, n);
        flash_tensor *diff = flash_sub(c, oc, ou);
        o = flash_add(c, ou, ws ? flash_mul(c, diff, flash_tensor_per_sample(c, diff, ww)) : flash_scale(c, diff, w));
    }
    if (o && o->ndim != x->ndim) o = flash_reshape(c, o, x->ndim, x->shape);
    out->out = o;
    out->x0 = flash_pred_x0(c, d->info.prediction, x, o, aa, ss);
    /* Imagine Flash eq. (9): at t = T the true starting noise replaces eps-hat */
    out->eps = x_T ? x_T : flash_pred_eps(c, d->info.prediction, x, o, aa, ss);
    if (!out->x0 || !out->eps || !flash_ctx_ok(c)) return FLASH_ERR_RUNTIME;
    if (scoped) {
        flash_tensor *keep[3] = {out->out, out->x0, out->eps};
        if (!flash_ctx_rewind(c, &mark, keep, 3)) return FLASH_ERR_RUNTIME;
        out->out = keep[0];
        out->x0 = keep[1];
        out->eps = keep[2];
    }
    return FLASH_OK;
}

/* the call's time under the denoiser's role, when profiled */
static flash_status denoise_as(flash_denoiser *d, flash_ctx *c, flash_tensor *x, const double *t, double t_all,
                               const int *labels, float w, const float *ws, flash_tensor *x_T, flash_denoised *out) {
    const char *role = role_of(d), *prev = role ? flash_profile_phase(role) : NULL;
    flash_status st = denoise(d, c, x, t, t_all, labels, w, ws, x_T, out);
    if (role) flash_profile_phase(prev);
    return st;
}

flash_status flash_denoise(flash_denoiser *d, flash_ctx *c, flash_tensor *x, const double *t, double t_all,
                           const int *labels, float w, flash_tensor *x_T, flash_denoised *out) {
    return denoise_as(d, c, x, t, t_all, labels, w, NULL, x_T, out);
}

flash_status flash_denoise_each(flash_denoiser *d, flash_ctx *c, flash_tensor *x, const double *t, double t_all,
                                const int *labels, const float *w, flash_tensor *x_T, flash_denoised *out) {
    return denoise_as(d, c, x, t, t_all, labels, 1.0f, w, x_T, out);
}

/* ---- timesteps ----------------------------------------------------------- */

static const char *const spacing_names[] = {"leading", "trailing", "linspace", NULL};

flash_status flash_sampler_opts_parse(const flash_cfg *cfg, const char *sampler, flash_sampler_opts *o,
                                      flash_error *err) {
    memset(o, 0, sizeof *o);
    long steps = 25, offset = 0;
    int spacing = FLASH_SPACING_LEADING;
    flash_status st;
    if ((st = flash_cfg_int(cfg, "steps", 25, &steps, err)) ||
        (st = flash_cfg_enum(cfg, "timestep_spacing", spacing_names, FLASH_SPACING_LEADING, &spacing, err)) ||
        (st = flash_cfg_int(cfg, "steps_offset", 0, &offset, err)) ||
        (st = flash_cfg_float(cfg, "guidance_scale", 1.0f, &o->guidance_scale, err)) ||
        (st = flash_cfg_bool(cfg, "noise_correction", false, &o->noise_correction, err)))
        return st;
    size_t nl = 0;
    if ((st = flash_cfg_doubles(cfg, "timesteps", o->list, FLASH_MAX_STEPS, &nl, err))) return st;
    o->steps = (int)steps;
    o->steps_offset = (int)offset;
    o->spacing = (flash_spacing)spacing;
    const flash_cfg *tl = flash_cfg_get(cfg, "timesteps");
    if (tl) {
        if (nl == 0) return flash_cfg_error(tl, err, "sampler '%s': timesteps is an empty list", sampler);
        if (flash_cfg_get(cfg, "timestep_spacing"))
            return flash_cfg_error(tl, err, "sampler '%s': give either timesteps or timestep_spacing", sampler);
        if (flash_cfg_get(cfg, "steps") && steps != (long)nl)
            return flash_cfg_error(tl, err, "sampler '%s': steps is %ld but timesteps lists %zu", sampler, steps,
                                   nl);
        for (size_t i = 0; i < nl; i++)
            if (o->list[i] < 0 || (i > 0 && !(o->list[i] < o->list[i - 1])))
                return flash_cfg_error(tl, err, "sampler '%s': timesteps must be >= 0 and strictly decreasing",
                                       sampler);
        o->spacing = FLASH_SPACING_LIST;
        o->n_list = (int)nl;
        o->steps = (int)nl;
    } else if (steps < 1 || steps > FLASH_MAX_STEPS) {
        const flash_cfg *n = flash_cfg_get(cfg, "steps");
        if (n) return flash_cfg_error(n, err, "sampler '%s': steps must be in [1, %d]", sampler, FLASH_MAX_STEPS);
        return flash_error_set(err, FLASH_ERR_CONFIG, "sampler '%s': steps must be in [1, %d]", sampler,
                               FLASH_MAX_STEPS);
    }
    if (offset < 0) {
        return flash_cfg_error(flash_cfg_get(cfg, "steps_offset"), err, "sampler '%s': steps_offset must be >= 0",
                               sampler);
    }
    return FLASH_OK;
}

/* numpy.linspace(start, stop, num)[i] */
static double np_linspace(double start, double stop, int num, int i) {
    if (num == 1) return start;
    if (i == num - 1) return stop;
    double step = (stop - start) / (num - 1);
    return start + i * step;
}

flash_status flash_timesteps_select(const flash_sampler_opts *o, flash_grid grid, int T, double *out, int *n,
                                    flash_error *err) {
    *n = 0;
    const int N = o->steps;
    if (o->spacing == FLASH_SPACING_LIST) {
        for (int i = 0; i < o->n_list; i++) {
            if (o->list[i] > T - 1)
                return flash_error_set(err, FLASH_ERR_CONFIG, "timesteps: %g is above the last training timestep %d",
                                       o->list[i], T - 1);
            out[i] = o->list[i];
        }
        *n = o->n_list;
        return FLASH_OK;
    }
    if (N < 1 || N > T)
        return flash_error_set(err, FLASH_ERR_CONFIG, "steps: %d is not in [1, %d] (num_train_timesteps)", N, T);
    switch (o->spacing) {
    case FLASH_SPACING_LEADING:
        if (grid == FLASH_GRID_DPM) {
            /* np.arange(0, N + 1) * (T // (N + 1)), reversed, the 0 dropped */
            int ratio = T / (N + 1);
            for (int i = 0; i < N; i++) out[i] = (double)(N - i) * ratio + o->steps_offset;
        } else {
            int ratio = T / N;
            for (int i = 0; i < N; i++) out[i] = (double)(N - 1 - i) * ratio + o->steps_offset;
        }
        break;
    case FLASH_SPACING_TRAILING: {
        /* np.round(np.arange(T, 0, -T / N)) - 1 */
        double step = (double)T / N;
        int len = (int)ceil((0.0 - T) / -step);
        if (len != N)
            return flash_error_set(err, FLASH_ERR_CONFIG, "trailing spacing: %d steps do not divide %d timesteps", N,
                                   T);
        for (int i = 0; i < N; i++) out[i] = nearbyint(T - i * step) - 1.0;
        break;
    }
    case FLASH_SPACING_LINSPACE:
        if (grid == FLASH_GRID_DPM) {
            for (int i = 0; i < N; i++) out[i] = nearbyint(np_linspace(0.0, T - 1, N + 1, N - i));
        } else if (grid == FLASH_GRID_EULER) {
            /* EulerDiscrete keeps fractional timesteps, as float32 */
            for (int i = 0; i < N; i++) out[i] = (float)np_linspace(0.0, T - 1, N, N - 1 - i);
        } else {
            for (int i = 0; i < N; i++) out[i] = nearbyint(np_linspace(0.0, T - 1, N, N - 1 - i));
        }
        break;
    case FLASH_SPACING_LIST:
        break;
    }
    for (int i = 0; i < N; i++) {
        if (out[i] < 0 || out[i] > T - 1 || (i > 0 && !(out[i] < out[i - 1])))
            return flash_error_set(err, FLASH_ERR_CONFIG,
                                   "timesteps: %d steps with spacing '%s' and steps_offset %d leave [0, %d] or "
                                   "repeat a timestep (%g)",
                                   N, spacing_names[o->spacing], o->steps_offset, T - 1, out[i]);
    }
    *n = N;
    return FLASH_OK;
}

/* ---- a sampler's trajectory ---------------------------------------------- */

flash_status flash_plan_make(flash_plan *p, const flash_sample_request *req, const flash_sampler_opts *o,
                             flash_grid grid, double end_alpha, double end_sigma, flash_ctx *c) {
    if (!req || req->size < sizeof(flash_sample_request) || !req->den || !req->x) {
        flash_ctx_fail(c, "sampler: incomplete sample request");
        return FLASH_ERR_RUNTIME;
    }
    p->req = req;
    p->opts = o;
    p->n = 0;
    const flash_instance *sched = req->den->schedule;
    const int T = flash_schedule_T(sched);
    int n = 0;
    if (req->timesteps) {
        if (req->n_timesteps < 1 || req->n_timesteps > FLASH_MAX_STEPS) {
            flash_ctx_fail(c, "sampler: %d request timesteps (need 1..%d)", req->n_timesteps, FLASH_MAX_STEPS);
            return FLASH_ERR_RUNTIME;
        }
        for (int i = 0; i < req->n_timesteps; i++) {
            double ti = req->timesteps[i];
            if (!(ti >= 0 && ti <= T - 1) || (i > 0 && !(ti < p->t[i - 1]))) {
                flash_ctx_fail(c, "sampler: request timesteps must be strictly decreasing in [0, %d] (got %g)", T - 1,
                               ti);
                return FLASH_ERR_RUNTIME;
            }
            p->t[i] = ti;
        }
        n = req->n_timesteps;
    } else {
        flash_error e = {0};
        if (flash_timesteps_select(o, grid, T, p->t, &n, &e)) {
            flash_ctx_fail(c, "sampler: %s", e.msg);
            return FLASH_ERR_RUNTIME;
        }
    }
    if (req->stop_at >= 0) {
        if (req->stop_at > T - 1) {
            flash_ctx_fail(c, "sampler: stop_at %g is above the last training timestep %d", req->stop_at, T - 1);
            return FLASH_ERR_RUNTIME;
        }
        int k = 0;
        while (k < n && p->t[k] > req->stop_at) k++;
        p->n = k;
        p->t[k] = req->stop_at;
        flash_schedule_eval(sched, req->stop_at, &p->alpha[k], &p->sigma[k]);
        p->to_clean = false;
    } else {
        p->n = n;
        p->t[n] = -1.0;
        p->alpha[n] = end_alpha;
        p->sigma[n] = end_sigma;
        p->to_clean = true;
    }
    for (int i = 0; i < p->n; i++) flash_schedule_eval(sched, p->t[i], &p->alpha[i], &p->sigma[i]);
    return FLASH_OK;
}

flash_status flash_plan_denoise(const flash_plan *p, flash_ctx *c, int i, flash_tensor *x, flash_denoised *out) {
    /* Imagine Flash eq. (9): only the very first update of a trajectory that
     * starts from the noise x_T is corrected */
    flash_tensor *x_T = (i == 0 && p->opts->noise_correction && !p->req->mid_trajectory) ? p->req->x : NULL;
    const flash_sample_request *rq = p->req;
    if (rq->size >= offsetof(flash_sample_request, guidance) + sizeof rq->guidance && rq->guidance)
        return flash_denoise_each(rq->den, c, x, NULL, p->t[i], rq->labels, rq->guidance, x_T, out);
    return flash_denoise(rq->den, c, x, NULL, p->t[i], rq->labels, p->opts->guidance_scale, x_T, out);
}

flash_tensor *flash_lincomb(flash_ctx *c, double a, flash_tensor *x, double b, flash_tensor *y) {
    if (!x || !y) return NULL;
    if (b == 0.0) return flash_scale(c, x, (float)a);
    if (a == 0.0) return flash_scale(c, y, (float)b);
    return flash_add(c, flash_scale(c, x, (float)a), flash_scale(c, y, (float)b));
}
