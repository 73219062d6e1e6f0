/* The diffusion core: schedule tables and timesteps against diffusers'
 * (reference NPYs made by tests/ref/make_sampler_refs.py), prediction-type
 * conversion round trips (eq. 5), the guided denoiser's single batched call
 * and NFE count, noise correction's first update (eq. 9), and zero terminal
 * SNR. */
#include "diffusion_fixture.h"

#include <stdio.h>

static const char *const acp_cfgs[4] = {
    "schedule: {plugin: discrete}\nmodel: " GMM3 "}\n",
    SCHED_SD "model: " GMM3 "}\n",
    "schedule: {plugin: discrete, beta_schedule: squaredcos_cap_v2}\nmodel: " GMM3 "}\n",
    "schedule: {plugin: discrete, beta_schedule: scaled_linear, beta_start: 0.00085, beta_end: 0.012, "
    "rescale_betas_zero_snr: true}\nmodel: " GMM3 "}\n",
};

START_TEST(test_schedule_matches_diffusers)
{
    int64_t rows, cols;
    double *ref = ref_load("acp.npy", &rows, &cols);
    ck_assert_int_eq(rows, 4);
    ck_assert_int_eq(cols, 1000);
    for (int k = 0; k < 4; k++) {
        dpipe p;
        pipe_open(&p, acp_cfgs[k]);
        ck_assert_int_eq(flash_schedule_T(&p.sched), 1000);
        double worst = 0;
        for (int t = 0; t < 1000; t++) {
            double a, s, r = ref[k * 1000 + t];
            flash_schedule_eval(&p.sched, t, &a, &s);
            ck_assert_double_eq_tol(a * a + s * s, 1.0, 1e-12);
            /* diffusers' table is float32: 5e-5 relative above 0.01, 5e-7 absolute below */
            double e = fabs(a * a - r) / fmax(r, 1e-2);
            if (e > worst) worst = e;
        }
        ck_assert_msg(worst < 5e-5, "table %d differs from diffusers' by %g", k, worst);
        pipe_close(&p);
    }
    /* rescaled: exactly zero terminal SNR */
    dpipe p;
    pipe_open(&p, acp_cfgs[3]);
    double a, s;
    flash_schedule_eval(&p.sched, 999, &a, &s);
    ck_assert(a == 0.0 && s == 1.0);
    ck_assert(isinf(flash_schedule_log_snr(&p.sched, 999)) && flash_schedule_log_snr(&p.sched, 999) < 0);
    pipe_close(&p);
    free(ref);
}
END_TEST

START_TEST(test_schedule_fractional)
{
    dpipe p;
    pipe_open(&p, SCHED_SD "model: " GMM3 "}\n");
    double prev = INFINITY;
    for (double t = 0; t <= 999; t += 0.37) {
        double a, s;
        flash_schedule_eval(&p.sched, t, &a, &s);
        ck_assert_double_eq_tol(a * a + s * s, 1.0, 1e-12);
        double l = flash_schedule_log_snr(&p.sched, t);
        ck_assert_msg(l < prev, "log-SNR not decreasing at t = %g", t);
        prev = l;
    }
    /* linear in the VE sigma between integer timesteps (diffusers' Euler) */
    double a0, s0, a1, s1, a, s;
    flash_schedule_eval(&p.sched, 400, &a0, &s0);
    flash_schedule_eval(&p.sched, 401, &a1, &s1);
    flash_schedule_eval(&p.sched, 400.25, &a, &s);
    ck_assert_double_eq_tol(s / a, 0.75 * s0 / a0 + 0.25 * s1 / a1, 1e-12);
    pipe_close(&p);
}
END_TEST

START_TEST(test_timesteps_match_diffusers)
{
    int64_t rows, cols;
    double *ref = ref_load("timesteps.npy", &rows, &cols);
    const int ns[9] = {1, 2, 3, 4, 5, 7, 10, 25, 50};
    ck_assert_int_eq(rows, 3 * 3 * 9);
    int row = 0;
    for (int g = 0; g < 3; g++) {
        for (int sp = 0; sp < 3; sp++) {
            for (int k = 0; k < 9; k++, row++) {
                flash_sampler_opts o = {.steps = ns[k], .spacing = (flash_spacing)sp,
                                        .steps_offset = sp == FLASH_SPACING_LEADING ? 1 : 0};
                double ts[FLASH_MAX_STEPS];
                int n = 0;
                flash_error e = {0};
                ck_assert_msg(flash_timesteps_select(&o, (flash_grid)g, 1000, ts, &n, &e) == FLASH_OK, "%s", e.msg);
                const double *r = ref + row * cols;
                ck_assert_int_eq((int)r[0], ns[k]);
                ck_assert_int_eq(n, ns[k]);
                for (int i = 0; i < n; i++)
                    ck_assert_msg(ts[i] == r[1 + i], "grid %d spacing %d N %d: t[%d] = %g, diffusers %g", g, sp,
                                  ns[k], i, ts[i], r[1 + i]);
            }
        }
    }
    free(ref);
}
END_TEST

static flash_status opts_from(const char *yaml, flash_sampler_opts *o, flash_error *e) {
    flash_cfg *root = NULL;
    ck_assert_msg(flash_cfg_parse_string(yaml, "s.yaml", &root, e) == FLASH_OK, "%s", e->msg);
    flash_status st = flash_sampler_opts_parse(flash_cfg_get(root, "sampler"), "ddim", o, e);
    flash_cfg_free(root);
    return st;
}

START_TEST(test_timestep_options)
{
    static flash_sampler_opts o;
    flash_error e = {0};
    ck_assert_int_eq(opts_from("sampler: {timesteps: [999, 750, 500]}\n", &o, &e), FLASH_OK);
    ck_assert_int_eq(o.spacing, FLASH_SPACING_LIST);
    double ts[FLASH_MAX_STEPS];
    int n;
    ck_assert_int_eq(flash_timesteps_select(&o, FLASH_GRID_DDIM, 1000, ts, &n, &e), FLASH_OK);
    ck_assert_int_eq(n, 3);
    ck_assert(ts[0] == 999 && ts[1] == 750 && ts[2] == 500);
    ck_assert_int_eq(opts_from("sampler: {timesteps: [999, 999]}\n", &o, &e), FLASH_ERR_CONFIG);
    ck_assert_ptr_nonnull(strstr(e.msg, "strictly decreasing"));
    ck_assert_ptr_nonnull(strstr(e.msg, "s.yaml:1:"));
    ck_assert_int_eq(opts_from("sampler: {timesteps: [999, 500], timestep_spacing: trailing}\n", &o, &e),
                     FLASH_ERR_CONFIG);
    ck_assert_ptr_nonnull(strstr(e.msg, "either"));
    ck_assert_int_eq(opts_from("sampler: {timesteps: [999, 500], steps: 3}\n", &o, &e), FLASH_ERR_CONFIG);
    ck_assert_int_eq(opts_from("sampler: {steps: 0}\n", &o, &e), FLASH_ERR_CONFIG);
    ck_assert_int_eq(opts_from("sampler: {timestep_spacing: sideways}\n", &o, &e), FLASH_ERR_CONFIG);
    ck_assert_int_eq(opts_from("sampler: {timesteps: [1500, 10]}\n", &o, &e), FLASH_OK);
    ck_assert_int_eq(flash_timesteps_select(&o, FLASH_GRID_DDIM, 1000, ts, &n, &e), FLASH_ERR_CONFIG);
    ck_assert_ptr_nonnull(strstr(e.msg, "1500"));
    /* leading with an offset that pushes past T-1 */
    ck_assert_int_eq(opts_from("sampler: {steps: 1, steps_offset: 1000}\n", &o, &e), FLASH_OK);
    ck_assert_int_eq(flash_timesteps_select(&o, FLASH_GRID_DDIM, 1000, ts, &n, &e), FLASH_ERR_CONFIG);
}
END_TEST

START_TEST(test_prediction_round_trip)
{
    flash_ctx *c = flash_ctx_create(1 << 16);
    flash_rng r;
    flash_rng_seed(&r, 3);
    const int n = 5, d = 3;
    float alpha[5], sigma[5];
    for (int i = 0; i < n; i++) {
        double a = 0.05 + 0.9 * i / (n - 1);
        alpha[i] = (float)a;
        sigma[i] = (float)sqrt(1 - a * a);
    }
    int shape[2] = {n, d};
    flash_tensor *x0 = flash_randn(c, &r, 2, shape), *eps = flash_randn(c, &r, 2, shape);
    flash_tensor *x = flash_add(c, flash_mul(c, x0, flash_tensor_per_sample(c, x0, alpha)),
                                flash_mul(c, eps, flash_tensor_per_sample(c, eps, sigma)));
    for (int p = 0; p < 3; p++) {
        flash_tensor *out = flash_pred_target(c, (flash_prediction)p, x0, eps, alpha, sigma);
        flash_tensor *x0h = flash_pred_x0(c, (flash_prediction)p, x, out, alpha, sigma);
        flash_tensor *eh = flash_pred_eps(c, (flash_prediction)p, x, out, alpha, sigma);
        ck_assert_msg(flash_ctx_ok(c), "%s", flash_ctx_error(c));
        for (size_t i = 0; i < x->numel; i++) {
            ck_assert_msg(fabsf(x0h->data[i] - x0->data[i]) < 1e-4f, "%s x0 %zu", flash_prediction_names[p], i);
            ck_assert_msg(fabsf(eh->data[i] - eps->data[i]) < 1e-4f, "%s eps %zu", flash_prediction_names[p], i);
        }
    }
    /* x0-hat of an epsilon model at alpha = 0 does not exist */
    alpha[0] = 0.0f;
    sigma[0] = 1.0f;
    ck_assert_ptr_null(flash_pred_x0(c, FLASH_PRED_EPSILON, x, eps, alpha, sigma));
    ck_assert_ptr_nonnull(strstr(flash_ctx_error(c), "alpha_t = 0"));
    ck_assert_int_eq(flash_prediction_parse("v_prediction"), FLASH_PRED_V);
    ck_assert_int_eq(flash_prediction_parse("x0"), -1);
    ck_assert_str_eq(flash_prediction_name(FLASH_PRED_SAMPLE), "sample");
    ck_assert_str_eq(flash_prediction_name((flash_prediction)7), "unknown");
    flash_ctx_destroy(c);
}
END_TEST

#define GMM3C GMM3 ", classes: [0, 1, 2]"

START_TEST(test_guidance_one_batched_call)
{
    dpipe p;
    pipe_open(&p, SCHED_SD "model: " GMM3C "}\n");
    ck_assert_int_eq(p.den.info.num_classes, 3);
    const int n = 6;
    int labels[6] = {0, 1, 2, 0, 1, 2};
    flash_rng r;
    flash_rng_seed(&r, 11);
    int shape[2] = {n, 2};
    flash_tensor *x = flash_randn(p.c, &r, 2, shape);
    flash_denoised cond, uncond, g;
    ck_assert_int_eq(flash_denoise(&p.den, p.c, x, NULL, 600, labels, 1.0f, NULL, &cond), FLASH_OK);
    ck_assert_int_eq(p.den.calls, 1);
    ck_assert_int_eq(p.den.nfe, 1);
    ck_assert_int_eq(flash_denoise(&p.den, p.c, x, NULL, 600, NULL, 1.0f, NULL, &uncond), FLASH_OK);
    p.den.calls = p.den.nfe = 0;
    ck_assert_int_eq(flash_denoise(&p.den, p.c, x, NULL, 600, labels, 3.5f, NULL, &g), FLASH_OK);
    ck_assert_int_eq(p.den.calls, 1); /* conditional and null class in one call */
    ck_assert_int_eq(p.den.nfe, 2);
    for (size_t i = 0; i < x->numel; i++) {
        float want = uncond.out->data[i] + 3.5f * (cond.out->data[i] - uncond.out->data[i]);
        ck_assert_float_eq_tol(g.out->data[i], want, 1e-5f);
        ck_assert(g.eps->data[i] == g.out->data[i]); /* epsilon model: eps-hat is the output */
    }
    /* guidance without labels, labels on an unconditional model */
    ck_assert_int_eq(flash_denoise(&p.den, p.c, x, NULL, 600, NULL, 2.0f, NULL, &g), FLASH_ERR_RUNTIME);
    ck_assert_ptr_nonnull(strstr(flash_ctx_error(p.c), "needs class labels"));
    flash_ctx_reset(p.c);
    labels[0] = 4;
    x = flash_randn(p.c, &r, 2, shape);
    ck_assert_int_eq(flash_denoise(&p.den, p.c, x, NULL, 600, labels, 2.0f, NULL, &g), FLASH_ERR_RUNTIME);
    ck_assert_ptr_nonnull(strstr(flash_ctx_error(p.c), "label 4"));
    pipe_close(&p);
}
END_TEST

/* An image-shaped test model: out = x * (1 + label) (the null class is
 * num_classes = 3), recording the batch it was called with. */
static int img_calls, img_last_n, img_last_labels[16];
static void img_info(void *self, flash_model_info *out) {
    (void)self;
    *out = (flash_model_info){.ndim = 3, .shape = {2, 3, 3}, .num_classes = 3, .prediction = FLASH_PRED_EPSILON};
}
static flash_tensor *img_forward(void *self, flash_ctx *c, flash_tensor *x, const flash_cond *cond) {
    (void)self;
    img_calls++;
    img_last_n = cond->n;
    float f[16];
    for (int i = 0; i < cond->n && i < 16; i++) {
        img_last_labels[i] = cond->labels ? cond->labels[i] : -1;
        f[i] = 1.0f + (float)(cond->labels ? cond->labels[i] : 3);
    }
    return flash_mul(c, x, flash_tensor_per_sample(c, x, f));
}
static const flash_model_api img_model = {
    .head = {sizeof img_model, FLASH_KIND_MODEL, "t_img", "test", NULL, NULL, NULL},
    .info = img_info,
    .forward = img_forward,
};

START_TEST(test_guidance_images)
{
    dpipe p;
    pipe_open(&p, SCHED_SD "model: " GMM3 "}\n");
    flash_instance img = {.comp = &img_model.head, .self = NULL};
    flash_denoiser d;
    ck_assert_int_eq(flash_denoiser_init(&d, &img, &p.sched, &p.err), FLASH_OK);
    flash_rng r;
    flash_rng_seed(&r, 2);
    flash_tensor *x = flash_randn(p.c, &r, 4, (int[]){4, 2, 3, 3});
    int labels[4] = {0, 1, 2, 1};
    flash_denoised g;
    ck_assert_msg(flash_denoise(&d, p.c, x, NULL, 300, labels, 2.5f, NULL, &g) == FLASH_OK, "%s",
                  flash_ctx_error(p.c));
    ck_assert_int_eq(img_calls, 1);
    ck_assert_int_eq(img_last_n, 8);
    for (int i = 0; i < 4; i++) {
        ck_assert_int_eq(img_last_labels[i], labels[i]);
        ck_assert_int_eq(img_last_labels[4 + i], 3);
    }
    ck_assert_int_eq(g.out->ndim, 4);
    ck_assert_int_eq(g.out->shape[0], 4);
    for (int i = 0; i < 4; i++)
        for (int j = 0; j < 18; j++) {
            float xv = x->data[i * 18 + j], cond = xv * (1 + labels[i]), unc = xv * 4;
            ck_assert_float_eq_tol(g.out->data[i * 18 + j], unc + 2.5f * (cond - unc), 1e-5f);
        }
    flash_denoiser_release(&d);
    pipe_close(&p);
}
END_TEST

/* Imagine Flash eq. (9): the first update of a trajectory from x_T is
 * alpha_next x0-hat + sigma_next x_T, for every sampler. */
START_TEST(test_noise_correction_first_update)
{
    static const char *const samplers[3] = {"ddim", "dpmpp_2m", "euler"};
    for (int k = 0; k < 3; k++) {
        char yaml[1024];
        snprintf(yaml, sizeof yaml,
                 SCHED_SD "model: " GMM3 "}\nsampler: {plugin: %s, steps: 4, timestep_spacing: trailing, "
                          "noise_correction: true}\n",
                 samplers[k]);
        dpipe p;
        pipe_open(&p, yaml);
        double ts[4];
        ck_assert_int_eq(FLASH_API(&p.sampler, flash_sampler_api)->timesteps(p.sampler.self, 1000, ts, 4), 4);
        ck_assert(ts[0] == 999 && ts[1] == 749);
        int64_t nr, nc;
        double *bank = ref_load("xT.npy", &nr, &nc);
        float xT[128];
        for (int i = 0; i < 128; i++) xT[i] = (float)bank[i];
        free(bank);
        flash_tensor *x1 = pipe_sample_ex(&p, xT, 64, 2, NULL, ts[1], NULL, 0);
        ck_assert_msg(x1 != NULL, "%s", flash_ctx_error(p.c));
        /* the same step by hand: x0-hat from the model, eps replaced by x_T */
        flash_tensor *x = flash_tensor_from(p.c, 2, (int[]){64, 2}, xT);
        flash_denoised d;
        ck_assert_int_eq(flash_denoise(&p.den, p.c, x, NULL, ts[0], NULL, 1.0f, NULL, &d), FLASH_OK);
        double an, sn;
        flash_schedule_eval(&p.sched, ts[1], &an, &sn);
        double diff_nc = 0, diff_plain = 0;
        for (int i = 0; i < 128; i++) {
            float want = (float)an * d.x0->data[i] + (float)sn * xT[i];
            float plain = (float)an * d.x0->data[i] + (float)sn * d.eps->data[i];
            if (k == 0)
                ck_assert_msg(x1->data[i] == want, "%s: %.9g != %.9g", samplers[k], x1->data[i], want);
            diff_nc = fmax(diff_nc, fabs(x1->data[i] - want));
            diff_plain = fmax(diff_plain, fabs(x1->data[i] - plain));
        }
        ck_assert_msg(diff_nc < 2e-6, "%s: first update off eq. 9 by %g", samplers[k], diff_nc);
        ck_assert_msg(diff_plain > 1e-3, "%s: noise correction changed nothing (%g)", samplers[k], diff_plain);
        pipe_close(&p);
    }
}
END_TEST

/* A trajectory that starts mid-way (an x_t, not the noise) gets no noise
 * correction: the same as running with the setting off. */
START_TEST(test_noise_correction_not_mid_trajectory)
{
    float x[128];
    flash_rng r;
    flash_rng_seed(&r, 8);
    flash_rng_fill_normal(&r, x, 128);
    const double ts[3] = {600, 400, 200};
    flash_tensor *out[2];
    dpipe p[2];
    for (int k = 0; k < 2; k++) {
        char yaml[1024];
        snprintf(yaml, sizeof yaml, SCHED_SD "model: " GMM3 "}\nsampler: {plugin: dpmpp_2m, noise_correction: %s}\n",
                 k ? "true" : "false");
        pipe_open(&p[k], yaml);
        flash_tensor *xt = flash_tensor_from(p[k].c, 2, (int[]){64, 2}, x);
        flash_sample_request rq = {.size = sizeof rq, .den = &p[k].den, .x = xt, .stop_at = -1, .timesteps = ts,
                                   .n_timesteps = 3, .mid_trajectory = true};
        out[k] = FLASH_API(&p[k].sampler, flash_sampler_api)->sample(p[k].sampler.self, p[k].c, &rq);
        ck_assert_msg(out[k] != NULL, "%s", flash_ctx_error(p[k].c));
        ck_assert_int_eq(p[k].den.nfe, 3);
    }
    for (int i = 0; i < 128; i++) ck_assert(out[0]->data[i] == out[1]->data[i]);
    pipe_close(&p[0]);
    pipe_close(&p[1]);
}
END_TEST

#define SCHED_ZSNR \
    "schedule: {plugin: discrete, beta_schedule: scaled_linear, beta_start: 0.00085, beta_end: 0.012, " \
    "rescale_betas_zero_snr: true}\n"

static int all_finite(const flash_tensor *t) {
    for (size_t i = 0; i < t->numel; i++)
        if (!isfinite(t->data[i])) return 0;
    return 1;
}

/* the first 64 2-D rows of the reference noise bank */
static void load_xT128(float xT[128]) {
    int64_t nr, nc;
    double *bank = ref_load("xT.npy", &nr, &nc);
    for (int i = 0; i < 128; i++) xT[i] = (float)bank[i];
    free(bank);
}

/* how many of the n 2-D samples lie within 4 std of a GMM3 component */
static int near_components(const flash_tensor *x0, int n) {
    const double mu[3][2] = {{-2, 0}, {2, 1}, {0, -2.5}}, sd[3] = {0.3, 0.5, 0.2};
    int near = 0;
    for (int i = 0; i < n; i++) {
        for (int j = 0; j < 3; j++) {
            double dx = x0->data[2 * i] - mu[j][0], dy = x0->data[2 * i + 1] - mu[j][1];
            if (sqrt(dx * dx + dy * dy) < 4 * sd[j]) {
                near++;
                break;
            }
        }
    }
    return near;
}

START_TEST(test_zero_terminal_snr)
{
    float xT[128];
    load_xT128(xT);
    /* epsilon model from t = 999 where alpha_t = 0: undefined, said clearly */
    for (int corr = 0; corr < 2; corr++) {
        for (int k = 0; k < 2; k++) {
            char yaml[1024];
            snprintf(yaml, sizeof yaml,
                     SCHED_ZSNR "model: " GMM3 "}\nsampler: {plugin: %s, steps: 5, timestep_spacing: trailing, "
                                "noise_correction: %s}\n",
                     k ? "dpmpp_2m" : "ddim", corr ? "true" : "false");
            dpipe p;
            pipe_open(&p, yaml);
            ck_assert_ptr_null(pipe_sample(&p, xT, 64, 2, NULL));
            const char *m = flash_ctx_error(p.c);
            ck_assert_msg(strstr(m, "t = 999") && strstr(m, "alpha_t = 0") && strstr(m, "v_prediction"), "%s", m);
            if (corr) ck_assert_msg(strstr(m, "noise correction"), "%s", m);
            pipe_close(&p);
        }
    }
    /* defined configurations stay finite: an epsilon model from below T with
     * noise correction, and a v-prediction model from T with and without */
    static const char *const ok[3] = {
        "model: " GMM3 "}\nsampler: {plugin: ddim, steps: 5, timestep_spacing: leading, steps_offset: 1, "
        "noise_correction: true}\n",
        "model: " GMM3 ", prediction_type: v_prediction}\nsampler: {plugin: dpmpp_2m, steps: 5, "
        "timestep_spacing: trailing, noise_correction: true}\n",
        "model: " GMM3 ", prediction_type: v_prediction}\nsampler: {plugin: ddim, steps: 10, "
        "timestep_spacing: trailing}\n",
    };
    for (int k = 0; k < 3; k++) {
        char yaml[1024];
        snprintf(yaml, sizeof yaml, SCHED_ZSNR "%s", ok[k]);
        dpipe p;
        pipe_open(&p, yaml);
        flash_tensor *x0 = pipe_sample(&p, xT, 64, 2, NULL);
        ck_assert_msg(x0 != NULL, "case %d: %s", k, flash_ctx_error(p.c));
        ck_assert_msg(all_finite(x0), "case %d not finite", k);
        /* and lands on the data: every sample within 4 std of a component */
        const int near = near_components(x0, 64);
        ck_assert_msg(near >= 60, "case %d: only %d of 64 samples near a component", k, near);
        pipe_close(&p);
    }
}
END_TEST

/* zero_snr_floor: alphas_cumprod[T-1] lifted from 0 to 2^-24 (alpha_T =
 * 2^-12), every other timestep as without it; an epsilon model then samples
 * from t = T, with and without noise correction, and lands on the data. */
START_TEST(test_zero_snr_floor)
{
    dpipe p0, p1;
    pipe_open(&p0, SCHED_ZSNR "model: " GMM3 "}\n");
    pipe_open(&p1, "schedule: {plugin: discrete, beta_schedule: scaled_linear, beta_start: 0.00085, "
                   "beta_end: 0.012, rescale_betas_zero_snr: true, zero_snr_floor: 5.9604644775390625e-08}\n"
                   "model: " GMM3 "}\n");
    for (int t = 0; t < 999; t++) {
        double a0, s0, a1, s1;
        flash_schedule_eval(&p0.sched, t, &a0, &s0);
        flash_schedule_eval(&p1.sched, t, &a1, &s1);
        ck_assert_msg(a0 == a1 && s0 == s1, "t = %d changed by the floor", t);
    }
    double a, s;
    flash_schedule_eval(&p0.sched, 999, &a, &s);
    ck_assert(a == 0.0 && s == 1.0);
    flash_schedule_eval(&p1.sched, 999, &a, &s);
    ck_assert_double_eq_tol(a, 1.0 / 4096.0, 1e-15);
    ck_assert_double_eq_tol(a * a + s * s, 1.0, 1e-15);
    pipe_close(&p0);
    pipe_close(&p1);

    float xT[128];
    load_xT128(xT);
    for (int corr = 0; corr < 2; corr++) {
        char yaml[1024];
        snprintf(yaml, sizeof yaml,
                 "schedule: {plugin: discrete, beta_schedule: scaled_linear, beta_start: 0.00085, beta_end: 0.012, "
                 "rescale_betas_zero_snr: true, zero_snr_floor: 5.9604644775390625e-08}\nmodel: " GMM3
                 "}\nsampler: {plugin: ddim, steps: 10, timestep_spacing: trailing, noise_correction: %s}\n",
                 corr ? "true" : "false");
        dpipe p;
        pipe_open(&p, yaml);
        flash_tensor *x0 = pipe_sample(&p, xT, 64, 2, NULL);
        ck_assert_msg(x0 != NULL, "%s", flash_ctx_error(p.c));
        ck_assert(all_finite(x0));
        const int near = near_components(x0, 64);
        ck_assert_msg(near >= 60, "noise_correction %d: only %d of 64 samples near a component", corr, near);
        pipe_close(&p);
    }
}
END_TEST

static Suite *diffusion_suite(void) {
    Suite *s = suite_create("diffusion");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, test_schedule_matches_diffusers);
    tcase_add_test(tc, test_schedule_fractional);
    tcase_add_test(tc, test_timesteps_match_diffusers);
    tcase_add_test(tc, test_timestep_options);
    tcase_add_test(tc, test_prediction_round_trip);
    tcase_add_test(tc, test_guidance_one_batched_call);
    tcase_add_test(tc, test_guidance_images);
    tcase_add_test(tc, test_noise_correction_first_update);
    tcase_add_test(tc, test_noise_correction_not_mid_trajectory);
    tcase_add_test(tc, test_zero_terminal_snr);
    tcase_add_test(tc, test_zero_snr_floor);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) {
    SRunner *sr = srunner_create(diffusion_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
