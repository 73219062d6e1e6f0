/* The samplers: convergence order on the exactly solvable single-Gaussian
 * probability-flow ODE (ddim ~ 1/N, dpmpp_2m ~ 1/N^2, to an intermediate
 * stop timestep), agreement with diffusers' schedulers on the analytic
 * mixture (reference NPYs from tests/ref/make_sampler_refs.py, 1e-4
 * relative), NFE counts, classifier-free guidance moving samples to the
 * guided class, stochastic samplers' marginals, and speed. */
#include "diffusion_fixture.h"

#include <stdio.h>

static void load_bank(float *xT) {
    int64_t nr, nc;
    double *bank = ref_load("xT.npy", &nr, &nc);
    ck_assert(nr == 64 && nc == 2);
    for (int i = 0; i < 128; i++) xT[i] = (float)bank[i];
    free(bank);
}

/* Least-squares slope of log(err) against log(N). */
static double fit_slope(const int *ns, const double *err, int k) {
    double sx = 0, sy = 0, sxx = 0, sxy = 0;
    for (int i = 0; i < k; i++) {
        double x = log(ns[i]), y = log(err[i]);
        sx += x;
        sy += y;
        sxx += x * x;
        sxy += x * y;
    }
    return (k * sxy - sx * sy) / (k * sxx - sx * sx);
}

/* x_t = alpha_t mu + sqrt(alpha_t^2 s^2 + sigma_t^2) z is the exact PF-ODE
 * path of N(mu, s^2 I), z fixed by x_T. Integrate 999 -> 499 in N uniform
 * steps and fit the error's order. */
static double pf_ode_slope(const char *sampler, double *errs_out) {
    static const int ns[5] = {5, 10, 20, 25, 50};
    const double mu[2] = {1.5, -0.5}, s = 0.5;
    char yaml[1024];
    snprintf(yaml, sizeof yaml,
             SCHED_SD "model: {plugin: gmm, weights: [1.0], means: [[1.5, -0.5]], stds: [0.5]}\n"
                      "sampler: {plugin: %s}\n",
             sampler);
    float xT[128];
    load_bank(xT);
    double errs[5];
    for (int k = 0; k < 5; k++) {
        dpipe p;
        pipe_open(&p, yaml);
        double ts[50];
        for (int i = 0; i < ns[k]; i++) ts[i] = 999.0 - i * (500.0 / ns[k]);
        flash_tensor *x = pipe_sample_ex(&p, xT, 64, 2, NULL, 499.0, ts, ns[k]);
        ck_assert_msg(x != NULL, "%s", flash_ctx_error(p.c));
        ck_assert_int_eq(p.den.nfe, ns[k]);
        double aT, sT, a, sg;
        flash_schedule_eval(&p.sched, 999, &aT, &sT);
        flash_schedule_eval(&p.sched, 499, &a, &sg);
        double cT = sqrt(aT * aT * s * s + sT * sT), c = sqrt(a * a * s * s + sg * sg), se = 0;
        for (int i = 0; i < 128; i++) {
            double z = (xT[i] - aT * mu[i % 2]) / cT;
            double want = a * mu[i % 2] + c * z;
            se += (x->data[i] - want) * (x->data[i] - want);
        }
        errs[k] = sqrt(se / 128);
        if (errs_out) errs_out[k] = errs[k];
        pipe_close(&p);
    }
    double slope = fit_slope(ns, errs, 5);
    fprintf(stderr, "%s: PF-ODE 999->499 RMS error N=5..50: %.3g %.3g %.3g %.3g %.3g, slope %.3f\n", sampler, errs[0],
            errs[1], errs[2], errs[3], errs[4], slope);
    return slope;
}

START_TEST(test_pf_ode_order_ddim)
{
    double e[5];
    double slope = pf_ode_slope("ddim", e);
    ck_assert_msg(slope > -1.15 && slope < -0.85, "ddim slope %.3f, want -1 +- 0.15", slope);
    ck_assert(e[4] < e[0]);
    /* euler is the same first-order update on the same points */
    double se = pf_ode_slope("euler", NULL);
    ck_assert_double_eq_tol(se, slope, 1e-6);
}
END_TEST

START_TEST(test_pf_ode_order_dpmpp_2m)
{
    double e[5];
    double slope = pf_ode_slope("dpmpp_2m", e);
    ck_assert_msg(slope > -2.3 && slope < -1.7, "dpmpp_2m slope %.3f, want -2 +- 0.3", slope);
}
END_TEST

typedef struct ref_case {
    const char *file;
    const char *model;
    const char *sampler;
    int guided;
} ref_case;

static const ref_case cases[] = {
    {"ddim_leading.npy", GMM3 "}",
     "{plugin: ddim, steps: 25, timestep_spacing: leading, steps_offset: 1, set_alpha_to_one: false}", 0},
    {"ddim_trailing.npy", GMM3 "}", "{plugin: ddim, steps: 25, timestep_spacing: trailing, set_alpha_to_one: false}",
     0},
    {"dpmpp_2m_leading.npy", GMM3 "}", "{plugin: dpmpp_2m, steps: 25, timestep_spacing: leading, steps_offset: 1}",
     0},
    {"dpmpp_2m_trailing.npy", GMM3 "}", "{plugin: dpmpp_2m, steps: 25, timestep_spacing: trailing}", 0},
    {"euler_leading.npy", GMM3 "}", "{plugin: euler, steps: 25, timestep_spacing: leading, steps_offset: 1}", 0},
    {"euler_trailing.npy", GMM3 "}", "{plugin: euler, steps: 25, timestep_spacing: trailing}", 0},
    {"ddim_leading_v.npy", GMM3 ", prediction_type: v_prediction}",
     "{plugin: ddim, steps: 25, timestep_spacing: leading, steps_offset: 1, set_alpha_to_one: false}", 0},
    {"dpmpp_2m_trailing_cfg3.npy", GMM3 ", classes: [0, 1, 2]}",
     "{plugin: dpmpp_2m, steps: 25, timestep_spacing: trailing, guidance_scale: 3.0}", 1},
};

START_TEST(test_diffusers_agreement)
{
    const ref_case *rc = &cases[_i];
    char yaml[2048];
    snprintf(yaml, sizeof yaml, SCHED_SD "model: %s\nsampler: %s\n", rc->model, rc->sampler);
    dpipe p;
    pipe_open(&p, yaml);
    float xT[128];
    load_bank(xT);
    int labels[64];
    if (rc->guided) {
        int64_t nr, nc;
        double *l = ref_load("labels.npy", &nr, &nc);
        ck_assert_int_eq(nr, 64);
        for (int i = 0; i < 64; i++) labels[i] = (int)l[i];
        free(l);
    }
    flash_tensor *x = pipe_sample(&p, xT, 64, 2, rc->guided ? labels : NULL);
    ck_assert_msg(x != NULL, "%s", flash_ctx_error(p.c));
    int64_t nr, nc;
    double *ref = ref_load(rc->file, &nr, &nc);
    ck_assert(nr == 64 && nc == 2);
    double dmax = 0, rmax = 0;
    for (int i = 0; i < 128; i++) {
        dmax = fmax(dmax, fabs(x->data[i] - ref[i]));
        rmax = fmax(rmax, fabs(ref[i]));
    }
    fprintf(stderr, "%s: max |flash - diffusers| / max |diffusers| = %.2e, NFE %lld in %lld calls\n", rc->file,
            dmax / rmax, (long long)p.den.nfe, (long long)p.den.calls);
    ck_assert_msg(dmax / rmax < 1e-4, "%s: relative difference %.3g", rc->file, dmax / rmax);
    ck_assert_int_eq(p.den.nfe, rc->guided ? 50 : 25);
    ck_assert_int_eq(p.den.calls, 25);
    free(ref);
    pipe_close(&p);
}
END_TEST

/* Share of samples nearest (Euclidean) to component 2's mean. */
static double share_near_class2(const flash_tensor *x) {
    const double mu[3][2] = {{-2, 0}, {2, 1}, {0, -2.5}};
    int hit = 0, n = x->shape[0];
    for (int i = 0; i < n; i++) {
        int best = 0;
        double bd = INFINITY;
        for (int k = 0; k < 3; k++) {
            double dx = x->data[2 * i] - mu[k][0], dy = x->data[2 * i + 1] - mu[k][1], d = dx * dx + dy * dy;
            if (d < bd) {
                bd = d;
                best = k;
            }
        }
        hit += best == 2;
    }
    return (double)hit / n;
}

START_TEST(test_guidance_moves_to_class)
{
    /* wide, overlapping components so the conditional (w = 1) is not yet
     * separated; guide every sample to class 2 */
    static const float ws[5] = {0.0f, 0.5f, 1.0f, 1.5f, 3.0f};
    double share[5];
    const int n = 2000;
    int *labels = malloc(n * sizeof *labels);
    float *xT = malloc(2 * n * sizeof *xT);
    ck_assert(labels && xT);
    flash_rng r;
    flash_rng_seed(&r, 5);
    flash_rng_fill_normal(&r, xT, 2 * n);
    for (int i = 0; i < n; i++) labels[i] = 2;
    for (int k = 0; k < 5; k++) {
        char yaml[1024];
        snprintf(yaml, sizeof yaml,
                 SCHED_SD "model: {plugin: gmm, weights: [0.5, 0.3, 0.2], means: [[-2.0, 0.0], [2.0, 1.0], "
                          "[0.0, -2.5]], stds: [1.2, 1.2, 1.2], classes: [0, 1, 2]}\n"
                          "sampler: {plugin: dpmpp_2m, steps: 25, guidance_scale: %g}\n",
                 (double)ws[k]);
        dpipe p;
        pipe_open(&p, yaml);
        flash_tensor *x = pipe_sample(&p, xT, n, 2, labels);
        ck_assert_msg(x != NULL, "%s", flash_ctx_error(p.c));
        share[k] = share_near_class2(x);
        ck_assert_int_eq(p.den.nfe, ws[k] == 1.0f ? 25 : 50);
        pipe_close(&p);
    }
    fprintf(stderr, "guidance to class 2: share nearest its mean for w = 0, 0.5, 1, 1.5, 3: %.3f %.3f %.3f %.3f %.3f\n",
            share[0], share[1], share[2], share[3], share[4]);
    for (int k = 1; k < 5; k++)
        ck_assert_msg(share[k] > share[k - 1], "share did not grow from w=%g to w=%g", ws[k - 1], ws[k]);
    ck_assert(share[0] < 0.35); /* unguided: near the class's prior weight 0.2 */
    ck_assert(share[4] > 0.95);
    free(labels);
    free(xT);
}
END_TEST

START_TEST(test_ddim_eta_marginals)
{
    /* eta = 1 (DDPM-like ancestral steps) on N(mu, s^2): the samples' mean
     * and std match the data's */
    dpipe p;
    pipe_open(&p, SCHED_SD "model: {plugin: gmm, weights: [1.0], means: [[1.5, -0.5]], stds: [0.5]}\n"
                           "sampler: {plugin: ddim, steps: 50, eta: 1.0}\n");
    const int n = 4000;
    float *xT = normal_noise(9, 2 * n);
    flash_tensor *x = pipe_sample(&p, xT, n, 2, NULL);
    ck_assert_msg(x != NULL, "%s", flash_ctx_error(p.c));
    for (int j = 0; j < 2; j++) {
        double m = 0, v = 0;
        for (int i = 0; i < n; i++) m += x->data[2 * i + j];
        m /= n;
        for (int i = 0; i < n; i++) v += (x->data[2 * i + j] - m) * (x->data[2 * i + j] - m);
        double sd = sqrt(v / (n - 1));
        ck_assert_msg(fabs(m - (j ? -0.5 : 1.5)) < 0.05, "dim %d mean %g", j, m);
        ck_assert_msg(fabs(sd - 0.5) < 0.05, "dim %d std %g", j, sd);
    }
    free(xT);
    pipe_close(&p);
}
END_TEST

START_TEST(test_lcm)
{
    /* a near-point mass: every consistency step predicts mu; the stop
     * returns the re-noised x_t ~ N(alpha_t mu, sigma_t^2) */
    dpipe p;
    pipe_open(&p, SCHED_SD "model: {plugin: gmm, weights: [1.0], means: [[1.0, 2.0]], stds: [0.001], "
                           "prediction_type: sample}\nsampler: {plugin: lcm, timesteps: [999, 759, 519, 279]}\n");
    const int n = 4000;
    float *xT = normal_noise(13, 2 * n);
    flash_tensor *x = pipe_sample(&p, xT, n, 2, NULL);
    ck_assert_msg(x != NULL, "%s", flash_ctx_error(p.c));
    ck_assert_int_eq(p.den.nfe, 4);
    for (int i = 0; i < n; i++) {
        ck_assert_msg(fabs(x->data[2 * i] - 1.0) < 1e-2 && fabs(x->data[2 * i + 1] - 2.0) < 1e-2, "sample %d off", i);
    }
    x = pipe_sample_ex(&p, xT, n, 2, NULL, 500, NULL, 0);
    ck_assert_msg(x != NULL, "%s", flash_ctx_error(p.c));
    double a, s, m = 0, v = 0;
    flash_schedule_eval(&p.sched, 500, &a, &s);
    for (int i = 0; i < n; i++) m += x->data[2 * i];
    m /= n;
    for (int i = 0; i < n; i++) v += (x->data[2 * i] - m) * (x->data[2 * i] - m);
    ck_assert_msg(fabs(m - a) < 0.05, "mean %g, want alpha_500 = %g", m, a);
    ck_assert_msg(fabs(sqrt(v / (n - 1)) - s) < 0.05, "std %g, want sigma_500 = %g", sqrt(v / (n - 1)), s);
    free(xT);
    pipe_close(&p);
}
END_TEST

START_TEST(test_sampler_errors)
{
    dpipe p;
    pipe_open(&p, SCHED_SD "model: " GMM3 "}\nsampler: {plugin: ddim, steps: 5}\n");
    float xT[4] = {0, 0, 1, 1};
    double bad[2] = {500, 700};
    ck_assert_ptr_null(pipe_sample_ex(&p, xT, 2, 2, NULL, -1, bad, 2));
    ck_assert_ptr_nonnull(strstr(flash_ctx_error(p.c), "strictly decreasing"));
    flash_ctx_reset(p.c);
    ck_assert_ptr_null(pipe_sample_ex(&p, xT, 2, 2, NULL, 1500, NULL, 0));
    ck_assert_ptr_nonnull(strstr(flash_ctx_error(p.c), "stop_at"));
    flash_ctx_reset(p.c);
    /* a stop above every timestep takes no step */
    flash_tensor *x = pipe_sample_ex(&p, xT, 2, 2, NULL, 999, NULL, 0);
    ck_assert_ptr_nonnull(x);
    ck_assert_int_eq(p.den.nfe, 0);
    ck_assert(x->data[2] == 1.0f);
    pipe_close(&p);
    flash_registry *r = flash_registry_create();
    flash_error e = {0};
    ck_assert_int_eq(flash_registry_load_default(r, NULL, &e), FLASH_OK);
    flash_cfg *root = NULL;
    ck_assert_int_eq(flash_cfg_parse_string("sampler: {plugin: dpmpp_2m, lower_order_final: false}\n", "s.yaml",
                                            &root, &e),
                     FLASH_OK);
    flash_env env = {.size = sizeof env, .registry = r, .root = root};
    flash_instance inst;
    ck_assert_int_eq(flash_instance_create(&env, FLASH_KIND_SAMPLER, flash_cfg_get(root, "sampler"), &inst, &e),
                     FLASH_ERR_CONFIG);
    ck_assert_ptr_nonnull(strstr(e.msg, "lower_order_final"));
    flash_cfg_free(root);
    ck_assert_int_eq(flash_cfg_parse_string("sampler: {plugin: ddim, eta: 2}\n", "s.yaml", &root, &e), FLASH_OK);
    env.root = root;
    ck_assert_int_eq(flash_instance_create(&env, FLASH_KIND_SAMPLER, flash_cfg_get(root, "sampler"), &inst, &e),
                     FLASH_ERR_CONFIG);
    ck_assert_ptr_nonnull(strstr(e.msg, "eta"));
    flash_cfg_free(root);
    flash_registry_destroy(r);
}
END_TEST

START_TEST(test_image_shaped_gmm)
{
    /* the same mixture as (N, 4) vectors and as (N, 1, 2, 2) images, guided:
     * identical samples */
    const char *m = "{plugin: gmm, weights: [0.6, 0.4], means: [[1, 0, -1, 0.5], [-1, 1, 0, -0.5]], "
                    "stds: [0.4, 0.3], classes: [0, 1]";
    float xT[64];
    int labels[16];
    flash_rng r;
    flash_rng_seed(&r, 17);
    flash_rng_fill_normal(&r, xT, 64);
    for (int i = 0; i < 16; i++) labels[i] = i % 3; /* 2 = the null class */
    flash_tensor *out[2];
    dpipe p[2];
    for (int k = 0; k < 2; k++) {
        char yaml[1024];
        snprintf(yaml, sizeof yaml, SCHED_SD "model: %s%s}\nsampler: {plugin: dpmpp_2m, steps: 8, guidance_scale: 2}\n",
                 m, k ? ", shape: [1, 2, 2]" : "");
        pipe_open(&p[k], yaml);
        ck_assert_int_eq(p[k].den.info.ndim, k ? 3 : 1);
        int shape[4] = {16, 4, 0, 0};
        if (k) shape[1] = 1, shape[2] = 2, shape[3] = 2;
        flash_tensor *x = flash_tensor_from(p[k].c, k ? 4 : 2, shape, xT);
        flash_sample_request rq = {.size = sizeof rq, .den = &p[k].den, .x = x, .labels = labels, .stop_at = -1};
        out[k] = FLASH_API(&p[k].sampler, flash_sampler_api)->sample(p[k].sampler.self, p[k].c, &rq);
        ck_assert_msg(out[k] != NULL, "%s", flash_ctx_error(p[k].c));
        ck_assert_int_eq(out[k]->ndim, k ? 4 : 2);
        ck_assert_int_eq(p[k].den.nfe, 16);
    }
    for (int i = 0; i < 64; i++) ck_assert(out[0]->data[i] == out[1]->data[i]);
    pipe_close(&p[0]);
    pipe_close(&p[1]);
}
END_TEST

START_TEST(test_speed_10k_points)
{
    dpipe p;
    pipe_open(&p, SCHED_SD "model: " GMM3 "}\nsampler: {plugin: dpmpp_2m, steps: 25}\n");
    const int n = 10000;
    float *xT = normal_noise(1, 2 * n);
    double t0 = flash_now();
    flash_tensor *x = pipe_sample(&p, xT, n, 2, NULL);
    double dt = flash_now() - t0;
    ck_assert_msg(x != NULL, "%s", flash_ctx_error(p.c));
    /* the 1 s budget is for optimised builds; sanitised or -O0 builds run
     * several times slower and only get a loose bound */
#if defined(__SANITIZE_ADDRESS__) || !defined(__OPTIMIZE__)
    const double budget = 10.0;
#else
    const double budget = 1.0;
#endif
    fprintf(stderr, "dpmpp_2m, 25 steps, 10000 2-D points: %.3f s (budget %.0f s)\n", dt, budget);
    ck_assert_msg(dt < budget, "took %.3f s", dt);
    free(xT);
    pipe_close(&p);
}
END_TEST

static Suite *samplers_suite(void) {
    Suite *s = suite_create("samplers");
    TCase *tc = tcase_create("numerics");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_pf_ode_order_ddim);
    tcase_add_test(tc, test_pf_ode_order_dpmpp_2m);
    tcase_add_loop_test(tc, test_diffusers_agreement, 0, (int)(sizeof cases / sizeof cases[0]));
    tcase_add_test(tc, test_guidance_moves_to_class);
    tcase_add_test(tc, test_ddim_eta_marginals);
    tcase_add_test(tc, test_lcm);
    tcase_add_test(tc, test_sampler_errors);
    tcase_add_test(tc, test_image_shaped_gmm);
    tcase_add_test(tc, test_speed_10k_points);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) {
    SRunner *sr = srunner_create(samplers_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
