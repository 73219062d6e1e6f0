/* The unet and classifier models (plugins/models): parameter count and
 * names of unet-s, shapes, argument checks, agreement with the PyTorch
 * implementation in tools/bench/unet_torch.py, and a few training steps
 * that reduce the loss. */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "flash/flash.h"

static flash_registry *reg;

static void load_plugins(void)
{
    flash_error err = {0};
    reg = flash_registry_create();
    ck_assert_ptr_nonnull(reg);
    const char *path = FLASH_BINARY_DIR "/lib/flash/plugins/flash_models.so";
    ck_assert_msg(flash_registry_load_file(reg, path, &err) == FLASH_OK, "%s", err.msg);
}

static void unload_plugins(void)
{
    flash_registry_destroy(reg);
    reg = NULL;
}

/* Creates a model from a YAML slot; the instance owns what it needs. */
static flash_status make_model(const char *yaml, uint64_t seed, flash_instance *inst, flash_error *err)
{
    flash_cfg *slot = NULL;
    flash_status st = flash_cfg_parse_string(yaml, "test", &slot, err);
    if (st) return st;
    flash_env env = {.size = sizeof env, .registry = reg, .seed = seed};
    st = flash_instance_create(&env, FLASH_KIND_MODEL, slot, inst, err);
    flash_cfg_free(slot);
    return st;
}

/* make_model that must succeed; returns the model's API. */
static const flash_model_api *open_model(const char *yaml, uint64_t seed, flash_instance *m)
{
    flash_error err = {0};
    ck_assert_msg(make_model(yaml, seed, m, &err) == FLASH_OK, "%s", err.msg);
    return FLASH_API(m, flash_model_api);
}

static void check_shape(flash_params *P, const char *name, int ndim, int d0, int d1, int d2, int d3)
{
    flash_tensor *t = flash_params_find(P, name);
    ck_assert_msg(t != NULL, "no parameter %s", name);
    int want[4] = {d0, d1, d2, d3};
    ck_assert_int_eq(t->ndim, ndim);
    for (int i = 0; i < ndim; i++) ck_assert_int_eq(t->shape[i], want[i]);
}

START_TEST(test_unet_s_parameters)
{
    flash_instance m = {0};
    const flash_model_api *api = open_model("plugin: unet\n", 0, &m);
    flash_params *P = api->params(m.self);
    /* The unet-s, counted layer by layer in tools/bench/unet_torch.py. */
    ck_assert_uint_eq(flash_params_count(P), 572449);
    check_shape(P, "time.lin1.weight", 2, 128, 64, 0, 0);
    check_shape(P, "time.lin2.bias", 1, 128, 0, 0, 0);
    check_shape(P, "label.weight", 2, 11, 128, 0, 0);
    check_shape(P, "conv_in.weight", 4, 32, 1, 3, 3);
    check_shape(P, "down.0.res.0.conv1.weight", 4, 32, 32, 3, 3);
    check_shape(P, "down.0.downsample.weight", 4, 32, 32, 3, 3);
    check_shape(P, "down.1.res.0.skip.weight", 4, 64, 32, 1, 1);
    check_shape(P, "down.1.res.0.emb.weight", 2, 64, 128, 0, 0);
    check_shape(P, "mid.res.1.norm2.weight", 1, 64, 0, 0, 0);
    check_shape(P, "up.1.upsample.weight", 4, 64, 64, 3, 3);
    check_shape(P, "up.1.res.0.conv1.weight", 4, 64, 128, 3, 3);
    check_shape(P, "up.0.res.0.skip.weight", 4, 32, 96, 1, 1);
    check_shape(P, "out.conv.weight", 4, 1, 32, 3, 3);
    ck_assert_ptr_null(flash_params_find(P, "down.0.res.0.skip.weight")); /* 32 -> 32: identity skip */
    flash_model_info info;
    api->info(m.self, &info);
    ck_assert_int_eq(info.num_classes, 10);
    ck_assert_int_eq(info.prediction, FLASH_PRED_EPSILON);
    ck_assert_int_eq(info.ndim, 3);
    ck_assert_int_eq(info.shape[1], 28);
    /* PyTorch's default initialisation: GroupNorm ones, conv weights within
     * 1/sqrt(fan_in). */
    flash_tensor *g = flash_params_find(P, "out.norm.weight");
    ck_assert_float_eq(g->data[0], 1.0f);
    flash_tensor *w = flash_params_find(P, "up.1.res.0.conv1.weight");
    float bound = 1.0f / sqrtf(128 * 9), mx = 0;
    for (size_t i = 0; i < w->numel; i++) mx = fmaxf(mx, fabsf(w->data[i]));
    ck_assert(mx <= bound && mx > 0.9f * bound);
    flash_instance_destroy(&m);
}
END_TEST

START_TEST(test_unet_forward_shapes)
{
    flash_instance m = {0};
    const flash_model_api *api = open_model("plugin: unet\n", 1, &m);
    flash_ctx *c = flash_ctx_create(1 << 24);
    flash_rng r;
    flash_rng_seed(&r, 3);
    int shape[4] = {2, 1, 28, 28};
    flash_tensor *x = flash_randn(c, &r, 4, shape);
    float t[2] = {0, 999};
    int labels[2] = {3, 10};
    flash_cond cond = {.n = 2, .t = t, .labels = labels};
    flash_grad_set(c, false);
    flash_tensor *y = api->forward(m.self, c, x, &cond);
    ck_assert_msg(flash_ctx_ok(c), "%s", flash_ctx_error(c));
    ck_assert(flash_tensor_same_shape(x, y));
    for (size_t i = 0; i < y->numel; i++) ck_assert(isfinite(y->data[i]));
    /* No labels means the null class: the same output as label 10. */
    float t1[1] = {999};
    flash_cond uncond = {.n = 1, .t = t1, .labels = NULL};
    flash_tensor *y1 = api->forward(m.self, c, flash_narrow(c, x, 1, 1), &uncond);
    ck_assert_msg(flash_ctx_ok(c), "%s", flash_ctx_error(c));
    for (int i = 0; i < 28 * 28; i++) ck_assert_float_eq_tol(y1->data[i], y->data[28 * 28 + i], 1e-5f);

    /* A label beyond the null class, a missing timestep array and a wrong
     * channel count are refused with a message. */
    int bad[2] = {3, 11};
    flash_cond badc = {.n = 2, .t = t, .labels = bad};
    flash_ctx_reset(c);
    x = flash_randn(c, &r, 4, shape);
    ck_assert_ptr_null(api->forward(m.self, c, x, &badc));
    ck_assert(strstr(flash_ctx_error(c), "label 11") != NULL);
    flash_ctx_reset(c);
    x = flash_randn(c, &r, 4, shape);
    flash_cond not = {.n = 2, .t = NULL};
    ck_assert_ptr_null(api->forward(m.self, c, x, &not));
    ck_assert(!flash_ctx_ok(c));
    flash_ctx_reset(c);
    int shape3[4] = {2, 3, 28, 28};
    ck_assert_ptr_null(api->forward(m.self, c, flash_randn(c, &r, 4, shape3), &cond));
    ck_assert(strstr(flash_ctx_error(c), "unet") != NULL);
    flash_ctx_destroy(c);
    flash_instance_destroy(&m);
}
END_TEST

START_TEST(test_unet_config_errors)
{
    flash_error err = {0};
    flash_instance m = {0};
    /* 28 is not divisible by 2^3: three levels cannot downsample 28. */
    ck_assert_int_eq(make_model("plugin: unet\nchannel_mult: [1, 2, 2]\n", 0, &m, &err), FLASH_ERR_CONFIG);
    ck_assert(strstr(err.msg, "image_size") != NULL);
    ck_assert_int_eq(make_model("plugin: unet\nbase_channels: 12\n", 0, &m, &err), FLASH_ERR_CONFIG);
    ck_assert(strstr(err.msg, "groups") != NULL);
    ck_assert_int_eq(make_model("plugin: unet\nprediction: velocity\n", 0, &m, &err), FLASH_ERR_CONFIG);
    ck_assert_int_eq(make_model("plugin: unet\nbase_chanels: 8\n", 0, &m, &err), FLASH_ERR_CONFIG);
    ck_assert(strstr(err.msg, "base_channels") != NULL); /* did you mean */
    /* Bigger configurations build: 2 blocks per level, v prediction. */
    ck_assert_msg(make_model("plugin: unet\nbase_channels: 16\nnum_res_blocks: 2\nprediction: v\n", 0, &m, &err) ==
                      FLASH_OK,
                  "%s", err.msg);
    const flash_model_api *api = FLASH_API(&m, flash_model_api);
    flash_model_info info;
    api->info(m.self, &info);
    ck_assert_int_eq(info.prediction, FLASH_PRED_V);
    ck_assert_ptr_nonnull(flash_params_find(api->params(m.self), "up.0.res.1.conv2.weight"));
    flash_instance_destroy(&m);
}
END_TEST

/* Weights by formula, the same in tools/bench/unet_torch.py --reference:
 * w[j] = 0.2 sin(0.7 j + h(name)), h = sum((i+1) * name[i]) mod 1000 / 100. */
static void formula_weights(flash_params *P)
{
    for (size_t k = 0; k < flash_params_n(P); k++) {
        const char *name = flash_params_name(P, k);
        long h = 0;
        for (size_t i = 0; name[i]; i++) h += (long)(i + 1) * (unsigned char)name[i];
        double hh = (double)(h % 1000) / 100.0;
        flash_tensor *t = flash_params_at(P, k);
        for (size_t j = 0; j < t->numel; j++) t->data[j] = (float)(0.2 * sin(0.7 * (double)j + hh));
    }
}

START_TEST(test_unet_matches_pytorch)
{
    flash_error err = {0};
    flash_instance m = {0};
    ck_assert_msg(make_model("plugin: unet\nbase_channels: 8\nchannel_mult: [1, 2]\nmid_blocks: 1\ngroups: 4\n"
                             "num_classes: 3\nimage_size: 8\n",
                             0, &m, &err) == FLASH_OK,
                  "%s", err.msg);
    const flash_model_api *api = FLASH_API(&m, flash_model_api);
    flash_params *P = api->params(m.self);
    ck_assert_uint_eq(flash_params_count(P), 31289);
    formula_weights(P);
    flash_ctx *c = flash_ctx_create(1 << 22);
    int shape[4] = {2, 1, 8, 8};
    flash_tensor *x = flash_tensor_new(c, 4, shape);
    for (size_t j = 0; j < x->numel; j++) x->data[j] = (float)sin(0.3 * (double)j);
    float t[2] = {17, 503};
    int labels[2] = {1, 3};
    flash_cond cond = {.n = 2, .t = t, .labels = labels};
    flash_grad_set(c, false);
    flash_tensor *y = api->forward(m.self, c, x, &cond);
    ck_assert_msg(flash_ctx_ok(c), "%s", flash_ctx_error(c));
    /* python3 tools/bench/unet_torch.py --reference (float64 PyTorch 1.13) */
    const double want_sum = -4.129015764092809, want_sumsq = 0.6038667628139354;
    const int at[6] = {0, 5, 31, 64, 100, 127};
    const double want_at[6] = {-0.034574442000109014, -0.005820921655108495, -0.010233107279259308,
                               -0.02288736640190338,  -0.09514417911129486,  -0.060366384974506346};
    double sum = 0, sumsq = 0;
    for (size_t j = 0; j < y->numel; j++) {
        sum += y->data[j];
        sumsq += (double)y->data[j] * y->data[j];
    }
    ck_assert_msg(fabs(sum - want_sum) < 1e-4, "sum %.9g vs %.9g", sum, want_sum);
    ck_assert_msg(fabs(sumsq - want_sumsq) < 1e-4, "sumsq %.9g vs %.9g", sumsq, want_sumsq);
    for (int i = 0; i < 6; i++)
        ck_assert_msg(fabs(y->data[at[i]] - want_at[i]) < 2e-5, "out[%d] %.9g vs %.9g", at[i], y->data[at[i]],
                      want_at[i]);
    flash_ctx_destroy(c);
    flash_instance_destroy(&m);
}
END_TEST

START_TEST(test_unet_training_reduces_loss)
{
    flash_error err = {0};
    flash_instance m = {0};
    ck_assert_msg(make_model("plugin: unet\nbase_channels: 8\ngroups: 4\nnum_classes: 2\nimage_size: 8\n", 5, &m,
                             &err) == FLASH_OK,
                  "%s", err.msg);
    const flash_model_api *api = FLASH_API(&m, flash_model_api);
    flash_params *P = api->params(m.self);
    flash_ctx *c = flash_ctx_create(1 << 22);
    flash_rng r;
    flash_rng_seed(&r, 11);
    int shape[4] = {4, 1, 8, 8};
    float *xs = malloc(4 * 64 * sizeof *xs), *ts = malloc(4 * 64 * sizeof *ts);
    flash_rng_fill_normal(&r, xs, 4 * 64);
    flash_rng_fill_normal(&r, ts, 4 * 64);
    float t[4] = {10, 200, 500, 900};
    int labels[4] = {0, 1, 2, 0};
    flash_cond cond = {.n = 4, .t = t, .labels = labels};
    flash_adam opt = {.lr = 3e-3f, .beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-8f};
    double first = 0, last = 0;
    for (int step = 1; step <= 25; step++) {
        flash_ctx_reset(c);
        flash_tensor *x = flash_tensor_from(c, 4, shape, xs);
        flash_tensor *loss = flash_mse(c, api->forward(m.self, c, x, &cond), flash_tensor_from(c, 4, shape, ts));
        ck_assert_msg(loss && flash_ctx_ok(c), "%s", flash_ctx_error(c));
        if (step == 1) first = loss->data[0];
        last = loss->data[0];
        flash_params_zero_grad(P);
        ck_assert_msg(flash_backward(c, loss, &err) == FLASH_OK, "%s", err.msg);
        ck_assert(flash_params_grad_finite(P));
        ck_assert_msg(flash_adam_step(P, &opt, step, &err) == FLASH_OK, "%s", err.msg);
    }
    ck_assert_msg(last < 0.7 * first, "loss %g -> %g", first, last);
    free(xs);
    free(ts);
    flash_ctx_destroy(c);
    flash_instance_destroy(&m);
}
END_TEST

START_TEST(test_classifier)
{
    flash_instance m = {0};
    const flash_model_api *api = open_model("plugin: classifier\n", 2, &m);
    flash_model_info info;
    api->info(m.self, &info);
    ck_assert_int_eq(info.out_dim, 10);
    ck_assert_ptr_nonnull(api->features);
    /* 3 stages of two 3x3 convs (32, 64, 128) with GroupNorm, fc 128->128, out 128->10 */
    size_t want = (32 * 1 * 9 + 32 + 64 + 32 * 32 * 9 + 32 + 64) + (64 * 32 * 9 + 64 + 128 + 64 * 64 * 9 + 64 + 128) +
                  (128 * 64 * 9 + 128 + 256 + 128 * 128 * 9 + 128 + 256) + (128 * 128 + 128) + (10 * 128 + 10);
    ck_assert_uint_eq(flash_params_count(api->params(m.self)), want);
    flash_ctx *c = flash_ctx_create(1 << 22);
    flash_rng r;
    flash_rng_seed(&r, 1);
    int shape[4] = {3, 1, 28, 28};
    flash_tensor *x = flash_randn(c, &r, 4, shape);
    flash_grad_set(c, false);
    flash_tensor *f = api->features(m.self, c, x);
    flash_tensor *y = api->forward(m.self, c, x, NULL);
    ck_assert_msg(flash_ctx_ok(c), "%s", flash_ctx_error(c));
    ck_assert_int_eq(f->ndim, 2);
    ck_assert_int_eq(f->shape[0], 3);
    ck_assert_int_eq(f->shape[1], 128);
    ck_assert_int_eq(y->shape[1], 10);
    /* Features of a sample do not depend on its batch (GroupNorm, no
     * batch statistics). */
    flash_tensor *f1 = api->features(m.self, c, flash_narrow(c, x, 2, 1));
    for (int i = 0; i < 128; i++) ck_assert_float_eq_tol(f1->data[i], f->data[2 * 128 + i], 1e-5f);
    flash_ctx_destroy(c);
    flash_instance_destroy(&m);
}
END_TEST

static Suite *unet_suite(void)
{
    Suite *s = suite_create("unet");
    TCase *tc = tcase_create("models");
    tcase_add_checked_fixture(tc, load_plugins, unload_plugins);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_unet_s_parameters);
    tcase_add_test(tc, test_unet_forward_shapes);
    tcase_add_test(tc, test_unet_config_errors);
    tcase_add_test(tc, test_unet_matches_pytorch);
    tcase_add_test(tc, test_unet_training_reduces_loss);
    tcase_add_test(tc, test_classifier);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(unet_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
