/* Distillation on the exact `gmm` teacher: the shared target operator
 * against the `ddim` sampler plugin run on the same timesteps (an
 * independent implementation of the DDIM steps), the shift map gamma,
 * backward distillation's stop-gradient rollout (a spy student records the
 * grad mode of every call; the parameter gradient matches the closed form
 * of the last step alone), the consistency function's boundary condition
 * and progressive distillation's two-step target; the top-level `device`: its
 * errors, and a context opened on the stand-in device (the CPU kernels
 * under the name "cuda", tests/fake_device/) with every part placed there. */
#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "flash/trainer.h"

#include "consistency.h"
#include "distill.h"
#include "shift_map.h"

/* ---- a spy student: eps-hat = w * x, recording every call ---------------- */

#define SPY_MAX 64
typedef struct spy_call {
    double t;
    bool grad;
    bool input_on_tape; /* the input carries a tape entry or requires grad */
    int n;
    float x[2 * 64];
} spy_call;

static spy_call spy_log[SPY_MAX];
static int spy_n;

typedef struct spy {
    flash_params *p;
    flash_tensor *w;
} spy;

static flash_status spy_create(const flash_cfg *cfg, flash_env *env, void **self, flash_error *err)
{
    (void)cfg, (void)env;
    spy *s = calloc(1, sizeof *s);
    if (!s || !(s->p = flash_params_create())) {
        free(s);
        return flash_error_set(err, FLASH_ERR_NOMEM, "spy: out of memory");
    }
    s->w = flash_params_add(s->p, "w", 1, (int[]){1});
    flash_status st = flash_params_finalize(s->p, err);
    if (st) {
        flash_params_destroy(s->p);
        free(s);
        return st;
    }
    s->w->data[0] = 0.9f;
    *self = s;
    return FLASH_OK;
}

static void spy_destroy(void *self)
{
    spy *s = self;
    if (!s) return;
    flash_params_destroy(s->p);
    free(s);
}

static void spy_info(void *self, flash_model_info *out)
{
    (void)self;
    *out = (flash_model_info){.ndim = 1, .shape = {2, 0, 0}, .prediction = FLASH_PRED_EPSILON};
}

static flash_params *spy_params(void *self) { return ((spy *)self)->p; }

static flash_tensor *spy_forward(void *self, flash_ctx *c, flash_tensor *x, const flash_cond *cond)
{
    spy *s = self;
    if (spy_n < SPY_MAX) {
        spy_call *k = &spy_log[spy_n++];
        k->t = cond->t[0];
        k->grad = flash_grad_enabled(c);
        k->input_on_tape = x->op != NULL || (x->flags & FLASH_TENSOR_REQUIRES_GRAD);
        k->n = x->shape[0] <= 64 ? x->shape[0] : 64;
        memcpy(k->x, x->data, (size_t)k->n * 2 * sizeof(float));
    }
    return flash_mul(c, x, s->w);
}

static const char *const spy_keys[] = {NULL};
static const flash_model_api spy_api = {
    .head = {sizeof spy_api, FLASH_KIND_MODEL, "spy", "test student eps = w x", spy_keys, spy_create, spy_destroy},
    .info = spy_info,
    .params = spy_params,
    .forward = spy_forward,
};
static const flash_loss_api sl_api, nan_api;
static const flash_component *const spy_comps[] = {&spy_api.head, &sl_api.head, &nan_api.head};
static const flash_plugin_desc spy_desc = {FLASH_ABI_MAJOR, FLASH_ABI_MINOR, "test_distill", "1", spy_comps, 3};

/* ---- a spy loss: records what it is handed -------------------------------- */

typedef struct loss_rec {
    int n;
    double t;
    float target[2 * 64], x_t[2 * 64];
} loss_rec;
static loss_rec loss_log;

static flash_status sl_create(const flash_cfg *cfg, flash_env *env, void **self, flash_error *err)
{
    (void)cfg, (void)env, (void)err;
    *self = NULL;
    return FLASH_OK;
}
static void sl_destroy(void *self) { (void)self; }
static flash_tensor *sl_compute(void *self, flash_ctx *c, const flash_loss_in *in)
{
    (void)self;
    loss_log.n = in->target->shape[0] <= 64 ? in->target->shape[0] : 64;
    loss_log.t = in->cond->t[0];
    memcpy(loss_log.target, in->target->data, (size_t)loss_log.n * 2 * sizeof(float));
    memcpy(loss_log.x_t, in->x_t->data, (size_t)loss_log.n * 2 * sizeof(float));
    return flash_mse(c, in->pred, in->target);
}
static const char *const sl_keys[] = {NULL};
static const flash_loss_api sl_api = {
    .head = {sizeof sl_api, FLASH_KIND_LOSS, "spy_loss", "test loss recording its inputs", sl_keys, sl_create,
             sl_destroy},
    .compute = sl_compute,
};

/* ---- a loss that goes NaN from iteration 3 on ----------------------------- */

static flash_tensor *nan_compute(void *self, flash_ctx *c, const flash_loss_in *in)
{
    (void)self;
    const distill *d = in->distill;
    flash_tensor *l = flash_mse(c, in->pred, flash_detach(c, in->pred));
    return d->iter >= 3 ? flash_scale(c, l, NAN) : l;
}
static const flash_loss_api nan_api = {
    .head = {sizeof nan_api, FLASH_KIND_LOSS, "nan_loss", "test loss that goes NaN at iteration 3", sl_keys,
             sl_create, sl_destroy},
    .compute = nan_compute,
};

/* ---- fixture -------------------------------------------------------------- */

#define SCHED "schedule: {plugin: discrete, beta_schedule: scaled_linear, beta_start: 0.00085, beta_end: 0.012}\n"
#define GMM "teacher: {plugin: gmm, weights: [0.5, 0.5], means: [[-1.5, 0.5], [1.0, -1.0]], stds: [0.3, 0.5]}\n"

typedef struct fx {
    flash_registry *r;
    flash_cfg *root;
    flash_train_opts o;
    flash_run *run;
    distill *d; /* the strategy's kit: a distillation strategy's state begins with it */
    flash_ctx *c;
    flash_error err;
} fx;

static void fx_open(fx *f, const char *yaml)
{
    memset(f, 0, sizeof *f);
    f->r = flash_registry_create();
    ck_assert_ptr_nonnull(f->r);
    ck_assert_msg(flash_registry_load_default(f->r, NULL, &f->err) == FLASH_OK, "%s", f->err.msg);
    ck_assert_msg(flash_registry_add(f->r, &spy_desc, "test_distill", &f->err) == FLASH_OK, "%s", f->err.msg);
    ck_assert_msg(flash_cfg_parse_string(yaml, "t.yaml", &f->root, &f->err) == FLASH_OK, "%s", f->err.msg);
    f->o = (flash_train_opts){.size = sizeof f->o, .root = f->root, .registry = f->r};
    ck_assert_msg(flash_train_open(&f->o, &f->run, &f->err) == FLASH_OK, "%s", f->err.msg);
    f->d = flash_run_strategy(f->run)->self;
    f->c = flash_ctx_create(1 << 20);
    ck_assert_ptr_nonnull(f->c);
}

static void fx_close(fx *f)
{
    flash_ctx_destroy(f->c);
    flash_train_close(f->run);
    flash_cfg_free(f->root);
    flash_registry_destroy(f->r);
}

static const char *yaml_with(const char *student, const char *strategy, const char *target, const char *losses)
{
    static char buf[4096];
    snprintf(buf, sizeof buf,
             "seed: 5\n" SCHED GMM "student: %s\n"
             "sampler: {plugin: ddim, timesteps: [999, 750, 500], noise_correction: true}\n"
             "strategy: {target: %s, %s\n"
             "losses: %s\n"
             "dataset: {plugin: toy2d, kind: gmm, weights: [0.5, 0.5], means: [[-1.5, 0.5], [1.0, -1.0]], "
             "stds: [0.3, 0.5], n_train: 256, n_test: 16}\n"
             "train: {steps: 10, batch_size: 16}\n",
             student, target, strategy + 1, losses);
    return buf;
}

static const char *base_yaml(const char *student, const char *strategy, const char *target)
{
    return yaml_with(student, strategy, target, "[{plugin: reconstruction}]");
}

/* The ddim sampler plugin from x at the given timesteps down to clean data. */
static flash_tensor *ddim_reference(fx *f, flash_tensor *x, const double *ts, int n)
{
    flash_cfg *sc = NULL;
    ck_assert(flash_cfg_parse_string("{plugin: ddim}", "ref.yaml", &sc, &f->err) == FLASH_OK);
    flash_instance s = {0};
    ck_assert_msg(flash_instance_create(f->d->env, FLASH_KIND_SAMPLER, sc, &s, &f->err) == FLASH_OK, "%s",
                  f->err.msg);
    flash_sample_request rq = {.size = sizeof rq, .den = f->d->teacher, .x = x, .stop_at = -1.0, .timesteps = ts,
                               .n_timesteps = n, .mid_trajectory = true};
    flash_tensor *y = FLASH_API(&s, flash_sampler_api)->sample(s.self, f->c, &rq);
    flash_instance_destroy(&s);
    flash_cfg_free(sc);
    ck_assert_msg(y && flash_ctx_ok(f->c), "%s", flash_ctx_error(f->c));
    return y;
}

static double max_abs_diff(const flash_tensor *a, const flash_tensor *b)
{
    ck_assert_uint_eq(a->numel, b->numel);
    double m = 0;
    for (size_t i = 0; i < a->numel; i++) m = fmax(m, fabs((double)a->data[i] - (double)b->data[i]));
    return m;
}

static flash_tensor *points(fx *f, int n, uint64_t seed, float scale)
{
    flash_rng r;
    flash_rng_seed(&r, seed);
    flash_tensor *x = flash_randn(f->c, &r, 2, (int[]){n, 2});
    return flash_scale(f->c, x, scale);
}

/* ---- tests ---------------------------------------------------------------- */

/* A registry with the built-in plugins; fails the test when they do not load. */
static flash_registry *builtin_registry(void)
{
    flash_registry *r = flash_registry_create();
    flash_error e = {0};
    ck_assert_ptr_nonnull(r);
    ck_assert_msg(flash_registry_load_default(r, NULL, &e) == FLASH_OK, "%s", e.msg);
    return r;
}

START_TEST(test_gamma_map)
{
    shift_map g;
    flash_error e = {0};
    flash_cfg *m = NULL;
    ck_assert(flash_cfg_parse_string("{weight: 1}", "g.yaml", &m, &e) == FLASH_OK);
    ck_assert(shift_map_read(m, "gamma", 1000, &g, &e) == FLASH_OK);
    flash_cfg_free(m);
    /* Imagine Flash section 5.1 */
    ck_assert_double_eq(shift_map_eval(&g, 999), 990);
    ck_assert_double_eq(shift_map_eval(&g, 901), 990);
    ck_assert_double_eq(shift_map_eval(&g, 900), 950);
    ck_assert_double_eq(shift_map_eval(&g, 501), 950);
    ck_assert_double_eq(shift_map_eval(&g, 500), 200);
    ck_assert_double_eq(shift_map_eval(&g, 0), 200);

    ck_assert(flash_cfg_parse_string("{gamma: [[600, 700], [-1, 100]]}", "g.yaml", &m, &e) == FLASH_OK);
    ck_assert_msg(shift_map_read(m, "gamma", 1000, &g, &e) == FLASH_OK, "%s", e.msg);
    ck_assert_double_eq(shift_map_eval(&g, 750), 700);
    ck_assert_double_eq(shift_map_eval(&g, 600), 100);
    ck_assert_double_eq(shift_map_eval(&g, 0), 100);
    flash_cfg_free(m);
    distill_target_spec s = {.k = 3, .guidance_scale = 1.0f};
    double ts[16];
    ck_assert_int_eq(distill_target_timesteps(&s, 750, ts), 3);
    ck_assert_double_eq(ts[0], 750);
    ck_assert_double_eq(ts[1], 500);
    ck_assert_double_eq(ts[2], 250);

    const char *bad[] = {"{gamma: papr}", "{gamma: [[500, 700], [600, 100]]}", "{gamma: [[500]]}",
                         "{gamma: [[500, 1200]]}"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ck_assert(flash_cfg_parse_string(bad[i], "b.yaml", &m, &e) == FLASH_OK);
        e = (flash_error){0};
        ck_assert_int_eq(shift_map_read(m, "gamma", 1000, &g, &e), FLASH_ERR_CONFIG);
        ck_assert_msg(strstr(e.msg, "b.yaml:") != NULL, "%s", e.msg);
        flash_cfg_free(m);
    }
}
END_TEST

/* eq. (7): the plain target is k teacher DDIM steps from x_t itself */
START_TEST(test_plain_target_is_k_ddim_steps)
{
    fx f;
    fx_open(&f, base_yaml("{plugin: spy}", "{plugin: backward}", "{k: 4}"));
    flash_tensor *x = points(&f, 32, 11, 1.0f);
    flash_tensor *got = distill_target(f.d, f.c, x, 750, NULL);
    ck_assert_msg(got && flash_ctx_ok(f.c), "%s", flash_ctx_error(f.c));
    const double ts[] = {750, 563, 375, 188}; /* round(750 (4 - j) / 4) */
    flash_tensor *want = ddim_reference(&f, x, ts, 4);
    ck_assert_double_lt(max_abs_diff(got, want), 1e-5);
    fx_close(&f);
}
END_TEST

/* Per-sample timesteps: the target of a batch at mixed t is, row by row, the
 * target of that row alone at its t (the scalar path is the reference),
 * also below t = k where rounding repeats a timestep. */
START_TEST(test_per_sample_target_rows)
{
    fx f;
    fx_open(&f, base_yaml("{plugin: spy}", "{plugin: backward}", "{k: 4}"));
    enum { N = 6 };
    flash_tensor *x = points(&f, N, 13, 1.0f);
    const double t[N] = {999, 750, 500, 750, 3, 251};
    flash_tensor *got = distill_target_each(f.d, f.c, x, t, NULL);
    ck_assert_msg(got && flash_ctx_ok(f.c), "%s", flash_ctx_error(f.c));
    double worst = 0;
    for (int i = 0; i < N; i++) {
        flash_tensor *want = distill_target(f.d, f.c, flash_narrow(f.c, x, i, 1), t[i], NULL);
        ck_assert_ptr_nonnull(want);
        for (int k = 0; k < 2; k++) worst = fmax(worst, fabs(got->data[2 * i + k] - want->data[k]));
    }
    ck_assert_double_lt(worst, 1e-5);
    /* and the re-noised (SRL) target: one shared noise draw, rows apart */
    flash_rng r1, r2;
    flash_rng_seed(&r1, 5);
    flash_rng_seed(&r2, 5);
    const double tp[N] = {950, 950, 200, 990, 200, 950};
    flash_tensor *srl = distill_renoised_target_each(f.d, f.c, x, tp, NULL, &r1);
    flash_tensor *eps = flash_randn(f.c, &r2, 2, (int[]){N, 2});
    ck_assert_ptr_nonnull(srl);
    worst = 0;
    for (int i = 0; i < N; i++) {
        double a, s;
        flash_schedule_eval(f.d->teacher->schedule, tp[i], &a, &s);
        flash_tensor *xi = flash_tensor_2d(f.c, 1, 2);
        for (int k = 0; k < 2; k++) xi->data[k] = (float)(a * x->data[2 * i + k] + s * eps->data[2 * i + k]);
        flash_tensor *want = distill_target(f.d, f.c, xi, tp[i], NULL);
        for (int k = 0; k < 2; k++) worst = fmax(worst, fabs(srl->data[2 * i + k] - want->data[k]));
    }
    ck_assert_double_lt(worst, 1e-5);
    fx_close(&f);
}
END_TEST

/* target.solver: a sampler plugin on the kit's k timesteps. The `ddim`
 * plugin reproduces the kit's own eq. 7 operator; DPM++(2M) is another
 * solver (it differs), and per-sample timesteps give each row its own. */
START_TEST(test_target_solver)
{
    fx f, g, h;
    fx_open(&f, base_yaml("{plugin: spy}", "{plugin: backward}", "{k: 4}"));
    fx_open(&g, base_yaml("{plugin: spy}", "{plugin: backward}", "{k: 4, solver: {plugin: ddim}}"));
    fx_open(&h, base_yaml("{plugin: spy}", "{plugin: backward}", "{k: 4, solver: {plugin: dpmpp_2m}}"));
    enum { N = 16 };
    flash_tensor *x = points(&f, N, 14, 1.0f);
    flash_tensor *xg = points(&g, N, 14, 1.0f), *xh = points(&h, N, 14, 1.0f);
    flash_tensor *kit = distill_target(f.d, f.c, x, 750, NULL);
    flash_tensor *ddim = distill_target(g.d, g.c, xg, 750, NULL);
    flash_tensor *dpm = distill_target(h.d, h.c, xh, 750, NULL);
    ck_assert_msg(kit && ddim && dpm, "%s %s", flash_ctx_error(g.c), flash_ctx_error(h.c));
    ck_assert_double_lt(max_abs_diff(kit, ddim), 1e-5);
    ck_assert_double_gt(max_abs_diff(kit, dpm), 1e-4);
    const double t[N] = {999, 999, 999, 999, 999, 750, 750, 750, 750, 750, 500, 500, 500, 500, 500, 500};
    flash_tensor *each = distill_target_each(h.d, h.c, xh, t, NULL);
    ck_assert_ptr_nonnull(each);
    double worst = 0;
    for (int i = 0; i < N; i++) {
        flash_tensor *want = distill_target(h.d, h.c, flash_narrow(h.c, xh, i, 1), t[i], NULL);
        ck_assert_ptr_nonnull(want);
        for (int k = 0; k < 2; k++) worst = fmax(worst, fabs(each->data[2 * i + k] - want->data[k]));
    }
    ck_assert_double_lt(worst, 1e-5);
    fx_close(&h);
    fx_close(&g);
    fx_close(&f);
}
END_TEST

/* eq. (8): the SRL target is k teacher DDIM steps from stopgrad(x0-hat)
 * re-noised with fresh noise to gamma(t) */
START_TEST(test_srl_target_from_renoised_x0)
{
    fx f;
    fx_open(&f, base_yaml("{plugin: spy}", "{plugin: backward}", "{k: 4}"));
    flash_tensor *x0 = points(&f, 32, 12, 1.5f);
    flash_rng r1, r2;
    flash_rng_seed(&r1, 77);
    flash_rng_seed(&r2, 77);
    shift_map g;
    shift_map_paper(&g);
    flash_tensor *got = distill_renoised_target(f.d, f.c, x0, shift_map_eval(&g, 800), NULL, &r1);
    ck_assert_msg(got && flash_ctx_ok(f.c), "%s", flash_ctx_error(f.c));
    /* gamma(800) = 950 (900 >= t > 500) */
    double a, s;
    flash_schedule_eval(f.d->teacher->schedule, 950, &a, &s);
    flash_tensor *eps = flash_randn(f.c, &r2, 2, (int[]){32, 2});
    flash_tensor *xg = flash_tensor_2d(f.c, 32, 2);
    for (int i = 0; i < 64; i++) xg->data[i] = (float)(a * x0->data[i] + s * eps->data[i]);
    const double ts[] = {950, 713, 475, 238};
    flash_tensor *want = ddim_reference(&f, xg, ts, 4);
    ck_assert_double_lt(max_abs_diff(got, want), 1e-5);
    /* the target does not depend on the student's input, and a different
     * noise draw gives a different target */
    flash_tensor *other = distill_renoised_target(f.d, f.c, x0, shift_map_eval(&g, 800), NULL, &r1);
    ck_assert_double_gt(max_abs_diff(got, other), 1e-3);
    fx_close(&f);
}
END_TEST

/* Backward distillation: the rollout to tau_i runs with gradients off and
 * only the student's prediction at tau_i is on the tape (eq. 7). */
START_TEST(test_backward_rollout_stop_gradient)
{
    fx f;
    fx_open(&f, base_yaml("{plugin: spy}", "{plugin: backward, step: 2}", "{k: 2}"));
    flash_instance *strat = flash_run_strategy(f.run);
    spy_n = 0;
    flash_tensor *loss = FLASH_API(strat, flash_strategy_api)->step(strat->self, f.c, f.run, 1);
    ck_assert_msg(loss && flash_ctx_ok(f.c), "%s", flash_ctx_error(f.c));
    ck_assert_int_eq(spy_n, 3);
    ck_assert_double_eq(spy_log[0].t, 999);
    ck_assert_double_eq(spy_log[1].t, 750);
    ck_assert_double_eq(spy_log[2].t, 500);
    ck_assert(!spy_log[0].grad && !spy_log[1].grad);
    ck_assert(spy_log[2].grad);
    ck_assert(!spy_log[2].input_on_tape);

    flash_params *P = f.d->student_params;
    flash_params_zero_grad(P);
    ck_assert_msg(flash_backward(f.c, loss, &f.err) == FLASH_OK, "%s", f.err.msg);
    const double g = flash_params_grad(P)[0];

    /* closed form of the last step alone: x0 = (x - sigma w x) / alpha,
     * L = mean((x0 - y)^2), dL/dw = mean(2 (x0 - y) (-sigma x / alpha)) */
    const int n = spy_log[2].n;
    ck_assert_int_eq(n, 16);
    flash_tensor *x = flash_tensor_2d(f.c, n, 2);
    memcpy(x->data, spy_log[2].x, (size_t)n * 2 * sizeof(float));
    flash_tensor *y = distill_target(f.d, f.c, x, 500, NULL);
    ck_assert_ptr_nonnull(y);
    double a, s, acc = 0;
    flash_schedule_eval(f.d->teacher->schedule, 500, &a, &s);
    const double w = flash_params_data(P)[0];
    for (int i = 0; i < 2 * n; i++) {
        double xi = x->data[i], x0 = (xi - s * w * xi) / a;
        acc += 2 * (x0 - y->data[i]) * (-s * xi / a);
    }
    acc /= 2 * n;
    ck_assert_msg(fabs(g - acc) <= 1e-4 * fmax(1.0, fabs(acc)), "grad %g, last-step closed form %g", g, acc);

    /* the rollout itself is the student's DDIM path with noise correction
     * (eq. 9) at T: x_750 = alpha_750 x0-hat(x_T) + sigma_750 x_T */
    double a9, s9, a7, s7;
    flash_schedule_eval(f.d->teacher->schedule, 999, &a9, &s9);
    flash_schedule_eval(f.d->teacher->schedule, 750, &a7, &s7);
    for (int i = 0; i < 2 * n; i++) {
        double xT = spy_log[0].x[i], x0 = (xT - s9 * 0.9 * xT) / a9;
        ck_assert_double_eq_tol(spy_log[1].x[i], a7 * x0 + s7 * xT, 1e-4 * fmax(1.0, fabs(a7 * x0)));
    }
    fx_close(&f);
}
END_TEST

/* LCM's consistency function meets its boundary condition f(x, 0) = x and
 * tends to x0-hat away from it. */
START_TEST(test_consistency_boundary)
{
    fx f;
    fx_open(&f, base_yaml("{plugin: spy}", "{plugin: backward}", "{k: 2}"));
    flash_tensor *x = points(&f, 16, 13, 1.0f);
    flash_tensor *f0 = consistency_fn(f.d->student, f.c, x, 0, NULL, NULL);
    ck_assert_msg(f0 && flash_ctx_ok(f.c), "%s", flash_ctx_error(f.c));
    ck_assert_double_eq(max_abs_diff(f0, x), 0.0);
    flash_tensor *f9 = consistency_fn(f.d->student, f.c, x, 999, NULL, NULL);
    flash_denoised o;
    ck_assert(flash_denoise(f.d->student, f.c, x, NULL, 999, NULL, 1.0f, NULL, &o) == FLASH_OK);
    double cs, co;
    consistency_boundary(999, &cs, &co);
    ck_assert_double_lt(cs, 1e-6);
    ck_assert_double_lt(max_abs_diff(f9, o.x0), 1e-4);
    fx_close(&f);
}
END_TEST

/* Progressive distillation (Salimans & Ho 2022, Algorithm 2): the
 * student's target x~ makes its one DDIM step from z_t land where two
 * teacher DDIM steps land, t -> midpoint -> next grid point. */
START_TEST(test_progressive_target_two_ddim_steps)
{
    fx f;
    fx_open(&f, yaml_with("{plugin: spy}", "{plugin: progressive, teacher_steps: 8, final_steps: 4, snr_weight: false}",
                          "{k: 2}", "[{plugin: spy_loss}]"));
    flash_instance *strat = flash_run_strategy(f.run);
    int seen_last = 0, seen_inner = 0;
    for (int it = 1; it <= 12 && !(seen_last && seen_inner); it++) {
        flash_ctx_reset(f.c);
        flash_tensor *loss = FLASH_API(strat, flash_strategy_api)->step(strat->self, f.c, f.run, it);
        ck_assert_msg(loss && flash_ctx_ok(f.c), "%s", flash_ctx_error(f.c));
        /* the student's 4-step trailing grid 999, 749, 499, 249; the
         * teacher's 8-step grid adds 874, 624, 374, 124 */
        const double t = loss_log.t;
        double tm, t2;
        if (t == 999) tm = 874, t2 = 749;
        else if (t == 749) tm = 624, t2 = 499;
        else if (t == 499) tm = 374, t2 = 249;
        else {
            ck_assert_double_eq(t, 249);
            tm = 124, t2 = -1;
        }
        const int n = loss_log.n;
        flash_tensor *z = flash_tensor_2d(f.c, n, 2);
        memcpy(z->data, loss_log.x_t, (size_t)n * 2 * sizeof(float));
        flash_cfg *sc = NULL;
        ck_assert(flash_cfg_parse_string("{plugin: ddim}", "ref.yaml", &sc, &f.err) == FLASH_OK);
        flash_instance smp = {0};
        ck_assert(flash_instance_create(f.d->env, FLASH_KIND_SAMPLER, sc, &smp, &f.err) == FLASH_OK);
        const double ts[2] = {t, tm};
        flash_sample_request rq = {.size = sizeof rq, .den = f.d->teacher, .x = z, .stop_at = t2, .timesteps = ts,
                                   .n_timesteps = 2, .mid_trajectory = true};
        flash_tensor *zz = FLASH_API(&smp, flash_sampler_api)->sample(smp.self, f.c, &rq);
        ck_assert_msg(zz && flash_ctx_ok(f.c), "%s", flash_ctx_error(f.c));
        flash_instance_destroy(&smp);
        flash_cfg_free(sc);
        double a, s, a2 = 1, s2 = 0;
        flash_schedule_eval(f.d->teacher->schedule, t, &a, &s);
        if (t2 >= 0) flash_schedule_eval(f.d->teacher->schedule, t2, &a2, &s2);
        double worst = 0;
        for (int i = 0; i < 2 * n; i++) {
            const double r = s2 / s, want = (zz->data[i] - r * z->data[i]) / (a2 - r * a);
            worst = fmax(worst, fabs(want - loss_log.target[i]) / fmax(1.0, fabs(want)));
        }
        ck_assert_msg(worst < 1e-4, "t = %g: relative error %g", t, worst);
        /* the student's DDIM step from z with x0-hat = target reaches zz */
        for (int i = 0; i < 2 * n && t2 >= 0; i++) {
            const double eps = (z->data[i] - a * loss_log.target[i]) / s;
            ck_assert_double_eq_tol(a2 * loss_log.target[i] + s2 * eps, zz->data[i], 1e-3);
        }
        if (t2 < 0) seen_last = 1;
        else seen_inner = 1;
    }
    ck_assert(seen_last && seen_inner);
    fx_close(&f);
}
END_TEST

/* The adversarial loss: its generator term is -weight * mean D(x0-hat)
 * (hinge), and its own updates teach the discriminator to tell real data
 * from samples placed away from it. */
START_TEST(test_adversarial_discriminator_learns)
{
    fx f;
    fx_open(&f, yaml_with("{plugin: spy}", "{plugin: backward}", "{k: 2}",
                          "[{plugin: adversarial, kind: hinge, weight: 0.5, lr: 1.0e-3, "
                          "discriminator: {plugin: mlp_discriminator, hidden: 32, layers: 2}}]"));
    const flash_instance *li = &f.d->losses[0];
    const flash_loss_api *api = FLASH_API(li, flash_loss_api);
    ck_assert_ptr_nonnull(api->update);
    flash_params *dp = api->params(li->self);
    ck_assert_ptr_nonnull(dp);
    ck_assert_uint_gt(flash_params_count(dp), 100);
    flash_ctx *c2 = flash_ctx_create(1 << 20);
    for (int it = 1; it <= 300; it++) {
        flash_ctx_reset(f.c);
        flash_tensor *fake = flash_add_scalar(f.c, points(&f, 32, (uint64_t)it, 0.3f), 4.0f);
        flash_loss_in in = {.size = sizeof in, .pred = fake, .distill = f.d};
        ck_assert_msg(api->update(li->self, c2, &in, it, &f.err) == FLASH_OK, "%s", f.err.msg);
    }
    flash_ctx_reset(f.c);
    flash_tensor *fake = flash_add_scalar(f.c, points(&f, 64, 999, 0.3f), 4.0f);
    flash_tensor *real;
    const int *rl;
    ck_assert(distill_real(f.d, f.c, 64, &real, &rl) == FLASH_OK);
    flash_loss_in in = {.size = sizeof in, .pred = fake, .distill = f.d};
    flash_tensor *g = api->compute(li->self, f.c, &in);
    ck_assert_msg(g && flash_ctx_ok(f.c), "%s", flash_ctx_error(f.c));
    /* D through the plugin's own model: the generator term is -0.5 mean D(fake) */
    flash_cfg *dc = NULL;
    ck_assert(flash_cfg_parse_string("{plugin: mlp_discriminator, hidden: 32, layers: 2}", "d.yaml", &dc, &f.err) ==
              FLASH_OK);
    flash_instance dm = {0};
    ck_assert(flash_instance_create(f.d->env, FLASH_KIND_MODEL, dc, &dm, &f.err) == FLASH_OK);
    flash_params *mp = FLASH_API(&dm, flash_model_api)->params(dm.self);
    ck_assert_msg(flash_params_copy(mp, dp, &f.err) == FLASH_OK, "%s", f.err.msg);
    flash_cond cf = {.n = 64}, cr = {.n = 64};
    flash_tensor *lf = FLASH_API(&dm, flash_model_api)->forward(dm.self, f.c, fake, &cf);
    flash_tensor *lr = FLASH_API(&dm, flash_model_api)->forward(dm.self, f.c, real, &cr);
    double mf = 0, mr = 0;
    for (int i = 0; i < 64; i++) mf += lf->data[i] / 64, mr += lr->data[i] / 64;
    ck_assert_double_eq_tol(g->data[0], -0.5 * mf, 1e-5);
    /* hinge margins: real near +1 or above, fake near -1 or below */
    ck_assert_msg(mr > 0.5 && mf < -0.5, "D(real) %g, D(fake) %g", mr, mf);
    flash_instance_destroy(&dm);
    flash_cfg_free(dc);
    flash_ctx_destroy(c2);
    fx_close(&f);
}
END_TEST

/* reconstruction's timestep weightings against the formula written out:
 * mean_i w_i mean_j (pred - target)^2 with w_i = alpha_i^2, or
 * min(alpha_i^2 / sigma_i^2, gamma), on given targets. */
START_TEST(test_reconstruction_weighting)
{
    const char *const kinds[] = {"none", "alpha2", "min_snr"};
    for (int k = 0; k < 3; k++) {
        char losses[160];
        snprintf(losses, sizeof losses, "[{plugin: reconstruction, weighting: %s, min_snr_gamma: 2.0}]", kinds[k]);
        fx f;
        fx_open(&f, yaml_with("{plugin: spy}", "{plugin: backward}", "{k: 2}", losses));
        const flash_instance *li = &f.d->losses[0];
        flash_ctx_reset(f.c);
        enum { N = 4 };
        flash_tensor *pred = points(&f, N, 1, 1.0f), *target = points(&f, N, 2, 1.0f);
        float t[N] = {999, 700, 300, 20}, al[N], sg[N];
        for (int i = 0; i < N; i++) {
            double a, s;
            flash_schedule_eval(f.d->student->schedule, t[i], &a, &s);
            al[i] = (float)a;
            sg[i] = (float)s;
        }
        flash_cond cond = {.n = N, .t = t, .alpha = al, .sigma = sg};
        flash_loss_in in = {.size = sizeof in, .pred = pred, .target = target, .cond = &cond, .distill = f.d};
        flash_tensor *l = FLASH_API(li, flash_loss_api)->compute(li->self, f.c, &in);
        ck_assert_msg(l && flash_ctx_ok(f.c), "%s", flash_ctx_error(f.c));
        double want = 0;
        for (int i = 0; i < N; i++) {
            const double snr = (double)al[i] * al[i] / ((double)sg[i] * sg[i]);
            const double w = k == 0 ? 1.0 : k == 1 ? (double)al[i] * al[i] : fmin(snr, 2.0);
            double m = 0;
            for (int j = 0; j < 2; j++) {
                const double d = pred->data[2 * i + j] - target->data[2 * i + j];
                m += d * d / 2;
            }
            want += w * m / N;
        }
        ck_assert_msg(fabs(l->data[0] - want) <= 1e-5 * fabs(want), "%s: %g, want %g", kinds[k], (double)l->data[0],
                      want);
        fx_close(&f);
    }
}
END_TEST

/* conv_discriminator: one logit per image, class projection matters, and
 * its input gradient agrees with central differences of its own forward. */
START_TEST(test_conv_discriminator)
{
    flash_registry *r = builtin_registry();
    flash_error e = {0};
    flash_cfg *cfg = NULL;
    ck_assert(flash_cfg_parse_string("{plugin: conv_discriminator, size: 8, width: 4, num_classes: 3}", "c.yaml", &cfg,
                                     &e) == FLASH_OK);
    flash_env env = {.size = sizeof env, .registry = r, .seed = 3};
    flash_instance m = {0};
    ck_assert_msg(flash_instance_create(&env, FLASH_KIND_MODEL, cfg, &m, &e) == FLASH_OK, "%s", e.msg);
    const flash_model_api *api = FLASH_API(&m, flash_model_api);
    flash_ctx *c = flash_ctx_create(1 << 20);
    flash_rng rng;
    flash_rng_seed(&rng, 5);
    flash_tensor *x = flash_randn(c, &rng, 4, (int[]){2, 1, 8, 8});
    flash_tensor_requires_grad(x, true);
    const int y[2] = {0, 2}, y2[2] = {1, 1};
    flash_cond cond = {.n = 2, .labels = y};
    flash_tensor *o = api->forward(m.self, c, x, &cond);
    ck_assert_msg(o && flash_ctx_ok(c), "%s", flash_ctx_error(c));
    ck_assert_int_eq(o->ndim, 2);
    ck_assert_int_eq(o->shape[0], 2);
    ck_assert_int_eq(o->shape[1], 1);
    const double o0 = o->data[0], o1 = o->data[1];
    ck_assert(flash_backward(c, flash_sum(c, o), &e) == FLASH_OK);
    float gx[128];
    memcpy(gx, x->grad, sizeof gx);
    bool was = flash_grad_set(c, false);
    flash_cond c2 = {.n = 2, .labels = y2};
    flash_tensor *o2 = api->forward(m.self, c, x, &c2);
    ck_assert(o2->data[0] != o0 || o2->data[1] != o1);
    /* LeakyReLU kinks within +-h spoil a few differences; the rest agree */
    int close = 0, total = 0;
    for (int k = 0; k < 128; k += 3) {
        const float v = x->data[k], h = 2e-3f;
        x->data[k] = v + h;
        flash_tensor *p = api->forward(m.self, c, x, &cond);
        x->data[k] = v - h;
        flash_tensor *q = api->forward(m.self, c, x, &cond);
        x->data[k] = v;
        const double fd = ((double)p->data[0] + p->data[1] - q->data[0] - q->data[1]) / (2.0 * h);
        close += fabs(fd - gx[k]) <= 0.02 * fmax(fabs(fd), 1e-4);
        total++;
    }
    flash_grad_set(c, was);
    ck_assert_msg(close >= total * 8 / 10, "%d of %d input gradients within 2%% of central differences", close, total);
    flash_ctx_destroy(c);
    flash_instance_destroy(&m);
    flash_cfg_free(cfg);
    flash_registry_destroy(r);
}
END_TEST

/* teacher_discriminator: heads on the frozen teacher's encoder; the image
 * gets a gradient, the teacher's weights get none and stay as loaded. */
START_TEST(test_teacher_discriminator)
{
    flash_registry *r = builtin_registry();
    flash_error e = {0};
    char dir[] = "/tmp/flash_td_XXXXXX", path[128], yaml[512];
    ck_assert_ptr_nonnull(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/checkpoint.safetensors", dir);
    const char *unet = "{plugin: unet, base_channels: 8, groups: 4, mid_blocks: 1, num_classes: 3, image_size: 8}";
    snprintf(yaml, sizeof yaml, "teacher: %s\nteacher_checkpoint: %s\n", unet, path);
    flash_cfg *root = NULL;
    ck_assert(flash_cfg_parse_string(yaml, "t.yaml", &root, &e) == FLASH_OK);
    flash_env env = {.size = sizeof env, .registry = r, .seed = 3, .root = root};
    flash_instance t = {0};
    ck_assert_msg(flash_instance_create(&env, FLASH_KIND_MODEL, flash_cfg_get(root, "teacher"), &t, &e) == FLASH_OK, "%s",
                  e.msg);
    flash_params *tp = FLASH_API(&t, flash_model_api)->params(t.self);
    flash_ckpt_info info = {.step = 1};
    ck_assert_msg(flash_checkpoint_save(path, tp, &info, &e) == FLASH_OK, "%s", e.msg);

    flash_cfg *dc = NULL;
    ck_assert(flash_cfg_parse_string("{plugin: teacher_discriminator, width: 8, t: 10}", "d.yaml", &dc, &e) == FLASH_OK);
    flash_instance d = {0};
    ck_assert_msg(flash_instance_create(&env, FLASH_KIND_MODEL, dc, &d, &e) == FLASH_OK, "%s", e.msg);
    const flash_model_api *api = FLASH_API(&d, flash_model_api);
    flash_model_info mi;
    api->info(d.self, &mi);
    ck_assert_int_eq(mi.out_dim, 1);
    ck_assert_int_eq(mi.shape[1], 8);
    flash_params *hp = api->params(d.self);
    ck_assert_uint_lt(flash_params_count(hp), flash_params_count(tp) / 4);

    flash_ctx *c = flash_ctx_create(1 << 22);
    flash_rng rng;
    flash_rng_seed(&rng, 9);
    flash_tensor *x = flash_randn(c, &rng, 4, (int[]){2, 1, 8, 8});
    flash_tensor_requires_grad(x, true);
    const int y[2] = {0, 2};
    flash_cond cond = {.n = 2, .labels = y};
    flash_tensor *o = api->forward(d.self, c, x, &cond);
    ck_assert_msg(o && flash_ctx_ok(c), "%s", flash_ctx_error(c));
    ck_assert_int_eq(o->shape[0], 2);
    ck_assert_int_eq(o->shape[1], 1);
    flash_params_zero_grad(hp);
    ck_assert(flash_backward(c, flash_sum(c, o), &e) == FLASH_OK);
    double gx = 0, gh = 0;
    for (size_t i = 0; i < x->numel; i++) gx += fabs(x->grad[i]);
    for (size_t i = 0; i < flash_params_count(hp); i++) gh += fabs(flash_params_grad(hp)[i]);
    ck_assert_double_gt(gx, 0);
    ck_assert_double_gt(gh, 0);
    flash_adam opt = {.lr = 1e-2f, .beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-8f};
    ck_assert(flash_adam_step(hp, &opt, 1, &e) == FLASH_OK);
    /* the teacher the discriminator loads is the checkpoint's */
    flash_instance t2 = {0};
    ck_assert(flash_instance_create(&env, FLASH_KIND_MODEL, flash_cfg_get(root, "teacher"), &t2, &e) == FLASH_OK);
    ck_assert(flash_teacher_load(root, &t2, &e) == FLASH_OK);
    flash_params *p2 = FLASH_API(&t2, flash_model_api)->params(t2.self);
    ck_assert_int_eq(memcmp(flash_params_data(p2), flash_params_data(tp), flash_params_count(tp) * sizeof(float)), 0);
    flash_ctx_destroy(c);
    flash_instance_destroy(&t2);
    flash_instance_destroy(&d);
    flash_instance_destroy(&t);
    flash_cfg_free(dc);
    flash_cfg_free(root);
    flash_registry_destroy(r);
    remove(path);
    rmdir(dir);
}
END_TEST

/* device takes cpu or cuda. */
START_TEST(test_device_key)
{
    flash_registry *r = builtin_registry();
    flash_error e = {0};
    flash_cfg *root = NULL;
    ck_assert(flash_cfg_parse_string(base_yaml("{plugin: mlp, hidden: 16, layers: 1}", "{plugin: backward}", "{k: 2}"),
                                     "t.yaml", &root, &e) == FLASH_OK);
    ck_assert(flash_cfg_set(root, "device=gpu", &e) == FLASH_OK);
    flash_train_opts o = {.size = sizeof o, .root = root, .registry = r};
    flash_run *dd = NULL;
    ck_assert_int_eq(flash_train_open(&o, &dd, &e), FLASH_ERR_CONFIG);
    ck_assert_ptr_null(dd);
    ck_assert_msg(strstr(e.msg, "device:") && strstr(e.msg, "gpu") &&
                      strstr(e.msg, "cuda"),
                  "%s", e.msg);
    flash_cfg_free(root);
    flash_registry_destroy(r);
}
END_TEST

/* device: cuda without a loadable backend: a config error at the
 * key, before any component is built. */
START_TEST(test_device_unavailable)
{
    setenv("FLASH_CUDA_LIB", "/nonexistent/libflash_cuda.so", 1);
    flash_registry *r = builtin_registry();
    flash_error e = {0};
    flash_cfg *root = NULL;
    ck_assert(flash_cfg_parse_string(base_yaml("{plugin: mlp, hidden: 16, layers: 1}", "{plugin: backward}", "{k: 2}"),
                                     "t.yaml", &root, &e) == FLASH_OK);
    ck_assert(flash_cfg_set(root, "device=cuda", &e) == FLASH_OK);
    flash_train_opts o = {.size = sizeof o, .root = root, .registry = r};
    flash_run *d = NULL;
    ck_assert_int_eq(flash_train_open(&o, &d, &e), FLASH_ERR_CONFIG);
    ck_assert_msg(strstr(e.msg, "device:") && strstr(e.msg, "device 'cuda'") &&
                      strstr(e.msg, "cannot load FLASH_CUDA_LIB=/nonexistent"),
                  "%s", e.msg);
    flash_cfg_free(root);
    flash_registry_destroy(r);
}
END_TEST

/* On a device: the student, the discriminator (its own context, made by
 * the loss from the env's device) and the env all say "cuda"; labels are
 * host memory; an iteration runs and its loss reads back. */
START_TEST(test_device_parts)
{
    char lib[4096];
    snprintf(lib, sizeof lib, "%s/tests/tools/libflash_fake_device.so", FLASH_BINARY_DIR);
    ck_assert_msg(access(lib, R_OK) == 0, "no stand-in device at %s", lib);
    setenv("FLASH_CUDA_LIB", lib, 1);
    flash_registry *r = builtin_registry();
    flash_error e = {0};
    flash_cfg *root = NULL;
    ck_assert(flash_cfg_parse_string(
                  yaml_with("{plugin: mlp, hidden: 16, layers: 1}", "{plugin: backward}", "{k: 2}",
                            "[{plugin: reconstruction}, {plugin: adversarial, "
                            "discriminator: {plugin: mlp_discriminator, hidden: 16, layers: 1}}]"),
                  "t.yaml", &root, &e) == FLASH_OK);
    ck_assert(flash_cfg_set(root, "device=cuda", &e) == FLASH_OK);
    flash_train_opts o = {.size = sizeof o, .root = root, .registry = r};
    flash_run *run = NULL;
    ck_assert_msg(flash_train_open(&o, &run, &e) == FLASH_OK, "%s", e.msg);
    distill *d = flash_run_strategy(run)->self;
    ck_assert_str_eq(flash_env_device(d->env), "cuda");
    ck_assert_str_eq(flash_params_device(d->student_params), "cuda");
    const flash_loss_api *la = FLASH_API(&d->losses[1], flash_loss_api);
    ck_assert_str_eq(flash_params_device(la->params(d->losses[1].self)), "cuda");
    /* an env from a host that predates the field reads as cpu */
    flash_env old = *d->env;
    old.size = (uint32_t)offsetof(flash_env, device);
    ck_assert_str_eq(flash_env_device(&old), "cpu");
    ck_assert_str_eq(flash_env_device(NULL), "cpu");

    flash_ctx *c = flash_ctx_create_on("cuda", 1 << 20, &e);
    ck_assert_msg(c != NULL, "%s", e.msg);
    flash_metric_result stats = {0};
    run->stats = &stats;
    flash_tensor *loss = FLASH_API(flash_run_strategy(run), flash_strategy_api)
                             ->step(flash_run_strategy(run)->self, c, run, 1);
    ck_assert_msg(loss && flash_ctx_ok(c), "%s", flash_ctx_error(c));
    float lv = 0;
    ck_assert(flash_tensor_to_host(c, loss, &lv, &e) == FLASH_OK);
    ck_assert(isfinite(lv) && lv > 0);
    /* the logged per-loss values sum to the loss (read back from the device) */
    double sum = 0;
    for (int i = 0; i < stats.n; i++)
        if (!strncmp(stats.name[i], "loss_", 5)) sum += stats.value[i];
    ck_assert_double_eq_tol(sum, lv, 1e-5 * fabs(lv) + 1e-6);
    run->stats = NULL;
    flash_ctx_destroy(c);
    flash_train_close(run);
    flash_cfg_free(root);
    flash_registry_destroy(r);
}
END_TEST

/* A loss term that goes NaN stops the run before the update, keeps the last
 * good checkpoint, and the message names the step and the term. */
START_TEST(test_nan_loss_term_named)
{
    char dir[] = "/tmp/flash_test_nan_XXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(dir));
    char run[128], ckpt[200];
    snprintf(run, sizeof run, "%s/run", dir);
    snprintf(ckpt, sizeof ckpt, "%s/%s", run, FLASH_RUN_CHECKPOINT);
    fx f;
    fx_open(&f, yaml_with("{plugin: mlp, hidden: 16, layers: 1}", "{plugin: backward}", "{k: 2}",
                          "[{plugin: reconstruction}, {plugin: nan_loss}]"));
    ck_assert(flash_cfg_set(f.root, "train.ckpt_every=1", &f.err) == FLASH_OK);
    flash_train_opts o = {.size = sizeof o, .root = f.root, .registry = f.r, .run_dir = run, .command = "flash distill"};
    flash_error e = {0};
    ck_assert_int_eq(flash_train_run(&o, &e), FLASH_ERR_RUNTIME);
    ck_assert_msg(strstr(e.msg, "flash distill: step 3: the loss is NaN (") && strstr(e.msg, "loss_nan_loss = NaN") &&
                      strstr(e.msg, "(step 2)") && !strstr(e.msg, "loss_reconstruction ="),
                  "%s", e.msg);
    flash_safetensors *st = NULL;
    ck_assert_msg(flash_safetensors_open(ckpt, &st, &e) == FLASH_OK, "%s", e.msg);
    flash_safetensors_close(st);
    fx_close(&f);
    char cmd[200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    ck_assert_int_eq(system(cmd), 0);
}
END_TEST

static Suite *distill_suite(void)
{
    Suite *s = suite_create("distill");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_gamma_map);
    tcase_add_test(tc, test_plain_target_is_k_ddim_steps);
    tcase_add_test(tc, test_srl_target_from_renoised_x0);
    tcase_add_test(tc, test_per_sample_target_rows);
    tcase_add_test(tc, test_target_solver);
    tcase_add_test(tc, test_backward_rollout_stop_gradient);
    tcase_add_test(tc, test_consistency_boundary);
    tcase_add_test(tc, test_progressive_target_two_ddim_steps);
    tcase_add_test(tc, test_adversarial_discriminator_learns);
    tcase_add_test(tc, test_reconstruction_weighting);
    tcase_add_test(tc, test_conv_discriminator);
    tcase_add_test(tc, test_teacher_discriminator);
    tcase_add_test(tc, test_device_key);
    tcase_add_test(tc, test_device_unavailable);
    tcase_add_test(tc, test_device_parts);
    tcase_add_test(tc, test_nan_loss_term_named);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(distill_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
