/* Shared parts of the distillation strategies in this folder (not a public
 * header): the student's prediction at a timestep and the loss inputs. */
#ifndef FLASH_PLUGIN_DISTILL_COMMON_H
#define FLASH_PLUGIN_DISTILL_COMMON_H

#include "distill.h"

#include <stdlib.h>

/* A uniformly drawn student step index in [0, n_steps). */
static inline int distill_pick_step(distill *d)
{
    return (int)flash_rng_below(distill_stream(d, DISTILL_DRAW_TIME), (uint64_t)d->n_steps);
}

/* Student step indices drawn per sample, for this rank's n rows: the
 * global batch's indices are drawn from the TIME stream and sorted, and
 * this rank keeps its rows of the sorted sequence, so the rows of one index
 * are contiguous (the rollout runs per index on a slice) and any rank count
 * trains on the same (x_T, label, index) triples. The rows' other draws
 * are independent of the index, so sorting changes no distribution.
 * cnt[j] receives this rank's rows at index j. */
static inline void distill_pick_steps(distill *d, int n, int *cnt)
{
    const flash_run *run = d->run;
    const int ranks = run->ranks > 0 ? run->ranks : 1, rank = run->rank;
    int global[DISTILL_MAX_STEPS] = {0};
    for (int i = 0; i < n * ranks; i++) global[distill_pick_step(d)]++;
    int lo = rank * n, hi = lo + n, start = 0;
    for (int j = 0; j < d->n_steps; j++) {
        const int a = start > lo ? start : lo, b = start + global[j] < hi ? start + global[j] : hi;
        cnt[j] = b > a ? b - a : 0;
        start += global[j];
    }
}

/* The timesteps of rows grouped by index (cnt from distill_pick_steps),
 * host arena memory. */
static inline double *distill_step_times(distill *d, flash_ctx *c, int n, const int *cnt)
{
    double *t = flash_host_alloc(c, (size_t)n * sizeof *t);
    if (!t) return NULL;
    for (int j = 0, r = 0; j < d->n_steps; j++)
        for (int k = 0; k < cnt[j]; k++) t[r++] = d->timesteps[j];
    return t;
}

/* A batch of n real examples from the pipeline's `dataset:` with their
 * labels when the teacher is class-conditional (drawn uniformly where the
 * data have none) and NULL labels when it is not: the start of every
 * strategy that trains on forward-noised data. */
static inline flash_status distill_real_batch(distill *d, flash_ctx *c, int n, flash_tensor **x0, const int **labels)
{
    *labels = NULL;
    flash_status st = distill_real(d, c, n, x0, labels);
    if (st) return st;
    if (d->num_classes <= 0) *labels = NULL;
    else if (!*labels) *labels = distill_labels(d, c, n);
    return FLASH_OK;
}

/* Imagine Flash eq. (1) on the student's schedule: x_t = alpha_t x0 +
 * sigma_t eps with fresh noise. */
static inline flash_tensor *distill_forward_noise(distill *d, flash_ctx *c, flash_tensor *x0, double t)
{
    double a, s;
    flash_schedule_eval(d->student->schedule, t, &a, &s);
    return flash_lincomb(c, a, x0, s, distill_noise(d, c, (int)x0->shape[0]));
}

/* eq. (1) with a timestep per sample and fresh noise. */
static inline flash_tensor *distill_forward_noise_each(distill *d, flash_ctx *c, flash_tensor *x0, const double *t)
{
    return distill_q_each(c, d->student->schedule, t, x0, distill_noise(d, c, (int)x0->shape[0]));
}

/* The student's x0-hat at (x_t, t) with gradients (eq. 5), then the
 * configured losses on it, handed the plain target of eq. (7) (k teacher
 * DDIM steps from x_t) when plain_target is set; the SRL target (eq. 8)
 * is made by the `srl` loss from the prediction. cond_out receives the
 * batch's condition (arena memory). */
static inline flash_tensor *distill_student_losses(distill *d, flash_ctx *c, flash_tensor *x_t, double t,
                                                   const int *labels, bool plain_target, flash_cond *cond_out)
{
    flash_denoised s;
    if (!x_t || flash_denoise(d->student, c, x_t, NULL, t, labels, 1.0f, NULL, &s)) return NULL;
    flash_tensor *target = plain_target ? distill_target(d, c, x_t, t, labels) : NULL;
    if (plain_target && !target) return NULL;
    *cond_out = distill_cond(d, c, x_t->shape[0], t, labels);
    flash_loss_in in = {.size = sizeof in, .pred = s.x0, .target = target, .x_t = x_t, .cond = cond_out,
                        .distill = d};
    if (d->stats) flash_metric_result_add(d->stats, "t", t);
    return distill_losses(d, c, &in);
}

/* The same with a timestep per sample (t[n]); the logged t is their mean. */
static inline flash_tensor *distill_student_losses_each(distill *d, flash_ctx *c, flash_tensor *x_t, const double *t,
                                                        const int *labels, bool plain_target, flash_cond *cond_out)
{
    flash_denoised s;
    if (!x_t || !t || flash_denoise(d->student, c, x_t, t, 0.0, labels, 1.0f, NULL, &s)) return NULL;
    flash_tensor *target = plain_target ? distill_target_each(d, c, x_t, t, labels) : NULL;
    if (plain_target && !target) return NULL;
    const int n = (int)x_t->shape[0];
    *cond_out = distill_cond_each(d, c, n, t, 0.0, labels);
    flash_loss_in in = {.size = sizeof in, .pred = s.x0, .target = target, .x_t = x_t, .cond = cond_out,
                        .distill = d};
    if (d->stats) {
        double m = 0;
        for (int i = 0; i < n; i++) m += t[i] / n;
        flash_metric_result_add(d->stats, "t", m);
    }
    return distill_losses(d, c, &in);
}

/* The settings `backward` and `forward` share: which student step index to
 * train (-1: drawn uniformly), whether the draw is one per batch (the
 * paper's reading: the batch at one t) or one per sample
 * (timestep_draw: sample: every batch mixes the student's steps, so no
 * single t dominates an Adam step), and whether to hand the losses the eq.
 * 7 target. `what` names the strategy in messages. */
typedef struct distill_step_opts {
    distill d;
    long step;
    bool plain_target;
    bool per_sample;
} distill_step_opts;

static const char *const distill_step_keys[] = {"step", "plain_target", "timestep_draw", DISTILL_KEYS, NULL};
static const char *const distill_draw_names[] = {"batch", "sample", NULL};

static inline flash_status distill_step_opts_create(const flash_cfg *cfg, flash_env *env, const char *what,
                                                    distill_step_fn fn, void **self, flash_error *err)
{
    long step;
    bool plain;
    int draw = 0;
    flash_status st = flash_cfg_int(cfg, "step", -1, &step, err);
    if (!st) st = flash_cfg_bool(cfg, "plain_target", true, &plain, err);
    if (!st) st = flash_cfg_enum(cfg, "timestep_draw", distill_draw_names, 0, &draw, err);
    if (st) return st;
    if (step < -1 || step >= DISTILL_MAX_STEPS)
        return flash_cfg_error(flash_cfg_get(cfg, "step"), err, "strategy '%s': step must be -1 or an index", what);
    if (draw == 1 && step >= 0)
        return flash_cfg_error(flash_cfg_get(cfg, "timestep_draw"), err,
                               "strategy '%s': timestep_draw: sample draws the step; it needs step: -1", what);
    distill_step_opts *o = calloc(1, sizeof *o);
    if (!o) return flash_error_set(err, FLASH_ERR_NOMEM, "strategy '%s': out of memory", what);
    o->step = step;
    o->plain_target = plain;
    o->per_sample = draw == 1;
    if ((st = distill_open(&o->d, cfg, env, fn, self, o, err))) distill_destroy(o);
    return st;
}

#endif
