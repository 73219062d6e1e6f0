/* The denoiser models and the exact metric: `gmm`'s closed form against
 * Tweedie's formula on an independently written diffused density
 * (eps* = -sigma grad log p_t, x0* = (x + sigma^2 grad log p_t) / alpha, by
 * finite differences), its class subsets; `mlp`'s shapes, parameter
 * gradients by finite differences, that it learns a denoiser and that its
 * weights round-trip through a checkpoint; `gmm_nll`
 * against the Gaussian log-density. */
#include "diffusion_fixture.h"

#include <stdio.h>
#include <unistd.h>

static const double W3[3] = {0.5, 0.3, 0.2}, MU3[3][2] = {{-2, 0}, {2, 1}, {0, -2.5}}, SD3[3] = {0.3, 0.5, 0.2};

/* log p_t(x) of the three-component mixture diffused to (a, s), restricted to
 * component `only` when >= 0. */
static double log_pt(const double *x, double a, double s, int only) {
    double p = 0, wsum = 0;
    for (int k = 0; k < 3; k++) {
        if (only >= 0 && k != only) continue;
        double v = a * a * SD3[k] * SD3[k] + s * s;
        double d2 = (x[0] - a * MU3[k][0]) * (x[0] - a * MU3[k][0]) + (x[1] - a * MU3[k][1]) * (x[1] - a * MU3[k][1]);
        p += W3[k] * exp(-0.5 * d2 / v) / (2 * M_PI * v);
        wsum += W3[k];
    }
    return log(p / wsum);
}

static void check_tweedie(const char *pred, int label) {
    char yaml[1024];
    snprintf(yaml, sizeof yaml, SCHED_SD "model: " GMM3 ", classes: [0, 1, 2], prediction_type: %s}\n", pred);
    dpipe p;
    pipe_open(&p, yaml);
    const int n = 8;
    flash_rng r;
    flash_rng_seed(&r, 21);
    const double ts[3] = {50, 400, 900};
    for (int k = 0; k < 3; k++) {
        double a, s;
        flash_schedule_eval(&p.sched, ts[k], &a, &s);
        float x[16], t[8], al[8], sg[8];
        int lab[8];
        for (int i = 0; i < n; i++) {
            x[2 * i] = (float)(2.5 * flash_rng_normal(&r));
            x[2 * i + 1] = (float)(2.5 * flash_rng_normal(&r));
            t[i] = (float)ts[k];
            al[i] = (float)a;
            sg[i] = (float)s;
            lab[i] = label;
        }
        flash_tensor *xt = flash_tensor_from(p.c, 2, (int[]){n, 2}, x);
        flash_cond cond = {.n = n, .t = t, .alpha = al, .sigma = sg, .labels = label >= 0 ? lab : NULL};
        flash_tensor *o = FLASH_API(&p.model, flash_model_api)->forward(p.model.self, p.c, xt, &cond);
        ck_assert_msg(o != NULL, "%s", flash_ctx_error(p.c));
        for (int i = 0; i < n; i++) {
            double xi[2] = {xt->data[2 * i], xt->data[2 * i + 1]}, g[2];
            const double h = 1e-4;
            for (int j = 0; j < 2; j++) {
                double xp[2] = {xi[0], xi[1]}, xm[2] = {xi[0], xi[1]};
                xp[j] += h;
                xm[j] -= h;
                g[j] = (log_pt(xp, al[i], sg[i], label) - log_pt(xm, al[i], sg[i], label)) / (2 * h);
            }
            for (int j = 0; j < 2; j++) {
                double eps = -sg[i] * g[j], x0 = (xi[j] + (double)sg[i] * sg[i] * g[j]) / al[i];
                double want = pred[0] == 'e' ? eps : pred[0] == 's' ? x0 : al[i] * eps - sg[i] * x0;
                ck_assert_msg(fabs(o->data[2 * i + j] - want) < 2e-4 * (1 + fabs(want)),
                              "%s label %d t %g: %g vs Tweedie %g", pred, label, ts[k], o->data[2 * i + j], want);
            }
        }
    }
    pipe_close(&p);
}

START_TEST(test_gmm_tweedie)
{
    check_tweedie("epsilon", -1);
    check_tweedie("sample", -1);
    check_tweedie("v_prediction", -1);
    check_tweedie("epsilon", 2); /* a class selects its components */
    check_tweedie("sample", 0);
}
END_TEST

START_TEST(test_gmm_config_errors)
{
    static const char *const bad[] = {
        "model: {plugin: gmm, weights: [1, 1], means: [[0, 0]], stds: [1]}\n",
        "model: {plugin: gmm, means: [[0, 0]], stds: [0]}\n",
        "model: {plugin: gmm, means: [[0, 0], [1, 1]], stds: [1, 1], classes: [1, 1]}\n",
        "model: {plugin: gmm, weights: [1]}\n",
        "model: {plugin: gmm, means: [[0, 0]], stds: [1], prediction_type: x0}\n",
        "model: {plugin: gmm, means: [[0, 0, 0]], stds: [1], shape: [1, 2, 2]}\n",
    };
    static const char *const want[] = {"1 means but 2 weights", "must be > 0", "class 0 has no component", "means",
                                       "prediction_type", "C*H*W = 3"};
    flash_registry *r = flash_registry_create();
    flash_error e = {0};
    ck_assert_int_eq(flash_registry_load_default(r, NULL, &e), FLASH_OK);
    for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
        flash_cfg *root = NULL;
        ck_assert_int_eq(flash_cfg_parse_string(bad[k], "m.yaml", &root, &e), FLASH_OK);
        flash_env env = {.size = sizeof env, .registry = r, .root = root};
        flash_instance inst;
        ck_assert_int_eq(flash_instance_create(&env, FLASH_KIND_MODEL, flash_cfg_get(root, "model"), &inst, &e),
                         FLASH_ERR_CONFIG);
        ck_assert_msg(strstr(e.msg, want[k]) && strstr(e.msg, "m.yaml:"), "case %zu: %s", k, e.msg);
        flash_cfg_free(root);
    }
    flash_registry_destroy(r);
}
END_TEST

/* mean((mlp(x_t, t) - eps)^2) on a fixed batch of the single Gaussian */
static flash_tensor *mlp_loss(dpipe *p, const float *x0, const float *eps, const float *t, int n, const int *labels) {
    float al[256], sg[256], xt[512];
    for (int i = 0; i < n; i++) {
        double a, s;
        flash_schedule_eval(&p->sched, t[i], &a, &s);
        al[i] = (float)a;
        sg[i] = (float)s;
        for (int j = 0; j < 2; j++) xt[2 * i + j] = (float)(a * x0[2 * i + j] + s * eps[2 * i + j]);
    }
    flash_tensor *x = flash_tensor_from(p->c, 2, (int[]){n, 2}, xt);
    flash_tensor *target = flash_tensor_from(p->c, 2, (int[]){n, 2}, eps);
    flash_cond cond = {.n = n, .t = t, .alpha = al, .sigma = sg, .labels = labels};
    flash_tensor *o = FLASH_API(&p->model, flash_model_api)->forward(p->model.self, p->c, x, &cond);
    return flash_mse(p->c, o, target);
}

/* A training batch of n points from N((1.5, -0.5), 0.25 I) with noise,
 * timesteps and (when labels is not NULL) classes 0..3, 3 the null class. */
static void draw_batch(flash_rng *r, int n, float *x0, float *eps, float *t, int *labels)
{
    for (int i = 0; i < n; i++) {
        x0[2 * i] = (float)(1.5 + 0.5 * flash_rng_normal(r));
        x0[2 * i + 1] = (float)(-0.5 + 0.5 * flash_rng_normal(r));
        eps[2 * i] = flash_rng_normal(r);
        eps[2 * i + 1] = flash_rng_normal(r);
        t[i] = (float)flash_rng_below(r, 1000);
        if (labels) labels[i] = (int)flash_rng_below(r, 4); /* the null class included */
    }
}

START_TEST(test_mlp_gradients_and_training)
{
    dpipe p;
    pipe_open(&p, SCHED_SD "model: {plugin: mlp, hidden: 32, layers: 2, time_dim: 16, num_classes: 3}\n");
    ck_assert_int_eq(p.den.info.num_classes, 3);
    flash_params *prm = FLASH_API(&p.model, flash_model_api)->params(p.model.self);
    ck_assert_ptr_nonnull(prm);
    /* 32*16+32 + 32*2+32 + 4*32 + 2*(32*32+32) + 2*32+2 */
    ck_assert_uint_eq(flash_params_count(prm), 544 + 96 + 128 + 2112 + 66);
    const int n = 128;
    float x0[256], eps[256], t[128];
    int labels[128];
    flash_rng r;
    flash_rng_seed(&r, 4);
    draw_batch(&r, n, x0, eps, t, labels);
    /* gradients by central differences on a few parameters */
    flash_ctx_reset(p.c);
    flash_params_zero_grad(prm);
    flash_tensor *loss = mlp_loss(&p, x0, eps, t, n, labels);
    ck_assert_msg(flash_backward(p.c, loss, &p.err) == FLASH_OK, "%s", p.err.msg);
    float *data = flash_params_data(prm), *grad = flash_params_grad(prm);
    size_t total = flash_params_count(prm);
    for (size_t k = 0; k < 12; k++) {
        size_t i = (k * 977) % total;
        float keep = data[i];
        const float h = 1e-2f;
        data[i] = keep + h;
        flash_ctx_reset(p.c);
        double lp = mlp_loss(&p, x0, eps, t, n, labels)->data[0];
        data[i] = keep - h;
        flash_ctx_reset(p.c);
        double lm = mlp_loss(&p, x0, eps, t, n, labels)->data[0];
        data[i] = keep;
        double fd = (lp - lm) / (2 * h);
        ck_assert_msg(fabs(fd - grad[i]) < 2e-3 + 2e-2 * fabs(fd), "param %zu: grad %g, finite difference %g", i,
                      (double)grad[i], fd);
    }
    /* Adam on the denoising loss: the loss falls well below its start */
    flash_adam opt = {.lr = 3e-3f, .beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-8f};
    double first = 0, last = 0;
    for (int step = 1; step <= 300; step++) {
        draw_batch(&r, n, x0, eps, t, NULL);
        flash_ctx_reset(p.c);
        flash_params_zero_grad(prm);
        loss = mlp_loss(&p, x0, eps, t, n, labels);
        ck_assert_int_eq(flash_backward(p.c, loss, &p.err), FLASH_OK);
        ck_assert_int_eq(flash_adam_step(prm, &opt, step, &p.err), FLASH_OK);
        if (step <= 20) first += loss->data[0] / 20;
        if (step > 280) last += loss->data[0] / 20;
    }
    fprintf(stderr, "mlp denoising loss: first 20 steps %.4f, last 20 steps %.4f\n", first, last);
    ck_assert_msg(last < 0.6 * first, "loss %g -> %g", first, last);
    pipe_close(&p);
}
END_TEST

START_TEST(test_mlp_unconditional_rejects_labels)
{
    dpipe p;
    pipe_open(&p, SCHED_SD "model: {plugin: mlp, hidden: 8, layers: 1, time_dim: 4}\n");
    float x[4] = {0}, t[2] = {10, 20};
    int lab[2] = {0, 0};
    flash_tensor *xt = flash_tensor_from(p.c, 2, (int[]){2, 2}, x);
    flash_cond cond = {.n = 2, .t = t, .labels = lab};
    ck_assert_ptr_null(FLASH_API(&p.model, flash_model_api)->forward(p.model.self, p.c, xt, &cond));
    ck_assert_ptr_nonnull(strstr(flash_ctx_error(p.c), "unconditional"));
    pipe_close(&p);
}
END_TEST

START_TEST(test_mlp_checkpoint_round_trip)
{
    /* weights saved from one seed and loaded into another reproduce its outputs */
    dpipe a, b;
    pipe_open(&a, SCHED_SD "model: {plugin: mlp, hidden: 16, layers: 2, time_dim: 8, num_classes: 2, seed: 1}\n");
    pipe_open(&b, SCHED_SD "model: {plugin: mlp, hidden: 16, layers: 2, time_dim: 8, num_classes: 2, seed: 2}\n");
    char path[] = "/tmp/flash_mlp_XXXXXX";
    int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    close(fd);
    flash_ckpt_info info = {.step = 3};
    ck_assert_msg(flash_checkpoint_save(path, FLASH_API(&a.model, flash_model_api)->params(a.model.self), &info,
                                        &a.err) == FLASH_OK,
                  "%s", a.err.msg);
    ck_assert_msg(flash_checkpoint_load(path, FLASH_API(&b.model, flash_model_api)->params(b.model.self), NULL,
                                        &b.err) == FLASH_OK,
                  "%s", b.err.msg);
    unlink(path);
    float x[6] = {0.1f, -0.2f, 1.0f, 0.5f, -1.5f, 2.0f}, t[3] = {10, 500, 990};
    int lab[3] = {0, 1, 2};
    flash_cond cond = {.n = 3, .t = t, .labels = lab};
    flash_tensor *oa = FLASH_API(&a.model, flash_model_api)->forward(a.model.self, a.c,
                                                                     flash_tensor_from(a.c, 2, (int[]){3, 2}, x), &cond);
    flash_tensor *ob = FLASH_API(&b.model, flash_model_api)->forward(b.model.self, b.c,
                                                                     flash_tensor_from(b.c, 2, (int[]){3, 2}, x), &cond);
    ck_assert(oa && ob);
    for (int i = 0; i < 6; i++) ck_assert(oa->data[i] == ob->data[i]);
    pipe_close(&a);
    pipe_close(&b);
}
END_TEST

START_TEST(test_gmm_nll)
{
    flash_registry *r = flash_registry_create();
    flash_error e = {0};
    ck_assert_int_eq(flash_registry_load_default(r, NULL, &e), FLASH_OK);
    flash_cfg *root = NULL;
    ck_assert_int_eq(flash_cfg_parse_string("metric: {plugin: gmm_nll, means: [[1.0, -1.0], [9.0, 9.0]], "
                                            "stds: [0.5, 0.5], weights: [1.0, 1.0e-300], classes: [0, 1]}\n",
                                            "n.yaml", &root, &e),
                     FLASH_OK);
    flash_env env = {.size = sizeof env, .registry = r, .root = root};
    flash_instance inst;
    ck_assert_msg(flash_instance_create(&env, FLASH_KIND_METRIC, flash_cfg_get(root, "metric"), &inst, &e) == FLASH_OK,
                  "%s", e.msg);
    flash_ctx *c = flash_ctx_create(1 << 16);
    float pts[6] = {1.0f, -1.0f, 1.5f, -0.5f, 0.0f, 0.0f};
    flash_tensor *x = flash_tensor_from(c, 2, (int[]){3, 2}, pts);
    flash_metric_result res = {0};
    ck_assert_int_eq(FLASH_API(&inst, flash_metric_api)->compute(inst.self, c, x, NULL, &res, &e), FLASH_OK);
    double want = 0;
    for (int i = 0; i < 3; i++) {
        double d2 = (pts[2 * i] - 1) * (pts[2 * i] - 1) + (pts[2 * i + 1] + 1) * (pts[2 * i + 1] + 1);
        want += (log(2 * M_PI * 0.25) + d2 / (2 * 0.25)) / 3;
    }
    ck_assert_str_eq(res.name[0], "gmm_nll");
    ck_assert_double_eq_tol(res.value[0], want, 1e-9);
    /* entropy of N(mu, 0.25 I) in 2-D: log(2 pi e 0.25), Monte Carlo */
    ck_assert_str_eq(res.name[1], "gmm_entropy");
    ck_assert_double_eq_tol(res.value[1], log(2 * M_PI * M_E * 0.25), 0.03);
    /* labelled: class 1 is the far component, by itself */
    int lab[3] = {1, 1, 1};
    flash_metric_result res2 = {0};
    ck_assert_int_eq(FLASH_API(&inst, flash_metric_api)->compute(inst.self, c, x, lab, &res2, &e), FLASH_OK);
    ck_assert(res2.value[0] > want + 100);
    flash_ctx_destroy(c);
    flash_instance_destroy(&inst);
    flash_cfg_free(root);
    flash_registry_destroy(r);
}
END_TEST

static Suite *denoisers_suite(void) {
    Suite *s = suite_create("denoisers");
    TCase *tc = tcase_create("models");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_gmm_tweedie);
    tcase_add_test(tc, test_gmm_config_errors);
    tcase_add_test(tc, test_mlp_gradients_and_training);
    tcase_add_test(tc, test_mlp_unconditional_rejects_labels);
    tcase_add_test(tc, test_mlp_checkpoint_round_trip);
    tcase_add_test(tc, test_gmm_nll);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) {
    SRunner *sr = srunner_create(denoisers_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
