/* Parameter block, Adam(W), EMA, clipping, swap and copy by name, against
 * double-precision references of the PyTorch update rules; lerp (an EMA of
 * another block) against its formula; copy and lerp with a block on the
 * stand-in device (tests/fake_device/: the CPU kernels named "cuda"). */
#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "flash/flash.h"

static flash_params *make(float w0, float b0) {
    flash_params *P = flash_params_create();
    ck_assert_ptr_nonnull(P);
    ck_assert_ptr_nonnull(flash_params_add(P, "layer.w", 2, (int[]){2, 3}));
    ck_assert_ptr_nonnull(flash_params_add(P, "layer.b", 1, (int[]){2}));
    ck_assert_int_eq(flash_params_finalize(P, NULL), FLASH_OK);
    flash_init_const(flash_params_find(P, "layer.w"), w0);
    flash_init_const(flash_params_find(P, "layer.b"), b0);
    return P;
}

START_TEST(test_layout) {
    flash_params *P = flash_params_create();
    flash_tensor *w = flash_params_add(P, "w", 2, (int[]){4, 5});
    flash_tensor *b = flash_params_add(P, "b", 1, (int[]){4});
    ck_assert_ptr_null(flash_params_add(P, "w", 1, (int[]){1})); /* duplicate */
    ck_assert_ptr_null(flash_params_add(P, "z", 1, (int[]){0}));
    ck_assert_int_eq(flash_params_finalize(P, NULL), FLASH_OK);
    flash_error err = {0};
    ck_assert_int_ne(flash_params_finalize(P, &err), FLASH_OK);
    ck_assert_ptr_null(flash_params_add(P, "late", 1, (int[]){1}));
    ck_assert_uint_eq(flash_params_count(P), 24);
    ck_assert_uint_eq(flash_params_n(P), 2);
    ck_assert_ptr_eq(flash_params_at(P, 1), b);
    ck_assert_str_eq(flash_params_name(P, 0), "w");
    ck_assert_ptr_null(flash_params_at(P, 2));
    ck_assert_ptr_eq(w->data, flash_params_data(P));
    ck_assert_ptr_eq(b->data, flash_params_data(P) + 20);
    ck_assert_ptr_eq(b->grad, flash_params_grad(P) + 20);
    ck_assert(w->flags & FLASH_TENSOR_PARAM);
    ck_assert(w->flags & FLASH_TENSOR_REQUIRES_GRAD);
    ck_assert_ptr_null(flash_params_adam_m(P));
    ck_assert_ptr_null(flash_params_ema(P));
    /* initialisers */
    flash_rng r;
    flash_rng_seed(&r, 3);
    flash_init_fan_in(w, &r, 5);
    float bound = 1 / sqrtf(5), mx = 0;
    for (int i = 0; i < 20; i++) {
        ck_assert(fabsf(w->data[i]) <= bound);
        mx = fmaxf(mx, fabsf(w->data[i]));
    }
    ck_assert(mx > 0.5f * bound);
    flash_init_normal(b, &r, 0.01f);
    for (int i = 0; i < 4; i++) ck_assert(fabsf(b->data[i]) < 0.06f && b->data[i] != 0);
    flash_params_destroy(P);
    flash_params_destroy(NULL);
}
END_TEST

/* torch.optim.AdamW's update in double */
static void adam_ref(double *w, double *m, double *v, const double *g, size_t n, int step, double lr, double b1,
                     double b2, double eps, double wd) {
    for (size_t i = 0; i < n; i++) {
        w[i] *= 1 - lr * wd;
        m[i] = b1 * m[i] + (1 - b1) * g[i];
        v[i] = b2 * v[i] + (1 - b2) * g[i] * g[i];
        double mh = m[i] / (1 - pow(b1, step)), vh = v[i] / (1 - pow(b2, step));
        w[i] -= lr * mh / (sqrt(vh) + eps);
    }
}

static void check_adam(float wd) {
    flash_params *P = make(0.5f, -0.25f);
    const size_t n = flash_params_count(P);
    double w[8], m[8] = {0}, v[8] = {0}, g[8] = {0};
    for (size_t i = 0; i < n; i++) w[i] = flash_params_data(P)[i];
    flash_adam opt = {.lr = 0.01f, .beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-8f, .weight_decay = wd};
    for (int step = 1; step <= 3; step++) {
        for (size_t i = 0; i < n; i++) {
            g[i] = sin(1.0 + (double)i * 0.7 + step) * (i % 3 == 0 ? 10.0 : 0.1);
            flash_params_grad(P)[i] = (float)g[i];
        }
        ck_assert_int_eq(flash_adam_step(P, &opt, step, NULL), FLASH_OK);
        adam_ref(w, m, v, g, n, step, opt.lr, opt.beta1, opt.beta2, opt.eps, wd);
        for (size_t i = 0; i < n; i++) ck_assert_double_eq_tol(flash_params_data(P)[i], w[i], 1e-6);
    }
    flash_params_destroy(P);
}

START_TEST(test_adam) {
    check_adam(0);
    /* by hand: the first step moves each weight by lr * sign(g) (m-hat / sqrt(v-hat) = g / |g|) */
    flash_params *P = make(0.5f, 0.5f);
    for (size_t i = 0; i < flash_params_count(P); i++) flash_params_grad(P)[i] = i % 2 ? 3.0f : -0.2f;
    flash_adam opt = {.lr = 0.1f, .beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-8f};
    ck_assert_int_eq(flash_adam_step(P, &opt, 1, NULL), FLASH_OK);
    for (size_t i = 0; i < flash_params_count(P); i++)
        ck_assert_double_eq_tol(flash_params_data(P)[i], i % 2 ? 0.4 : 0.6, 1e-6);
    flash_error err = {0};
    ck_assert_int_ne(flash_adam_step(P, &opt, 0, &err), FLASH_OK);
    flash_params_destroy(P);
}
END_TEST

START_TEST(test_adamw) {
    check_adam(0.1f);
    /* with zero gradients AdamW only decays: w *= 1 - lr * wd */
    flash_params *P = make(2.0f, -1.0f);
    flash_adam opt = {.lr = 0.1f, .beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-8f, .weight_decay = 0.5f};
    ck_assert_int_eq(flash_adam_step(P, &opt, 1, NULL), FLASH_OK);
    ck_assert_float_eq_tol(flash_params_find(P, "layer.w")->data[0], 2.0f * 0.95f, 1e-6);
    ck_assert_float_eq_tol(flash_params_find(P, "layer.b")->data[1], -0.95f, 1e-6);
    flash_params_destroy(P);
}
END_TEST

/* a tensor with an lr_scale steps as AdamW at lr * scale (its decay too);
 * the others as before */
START_TEST(test_adam_lr_scale) {
    flash_params *P = make(0.5f, -0.25f);
    ck_assert_uint_eq(flash_params_set_lr_scale(P, "layer.b", 5.0f), 1);
    ck_assert_uint_eq(flash_params_set_lr_scale(P, "nothing.", 5.0f), 0);
    const size_t n = flash_params_count(P), nw = 6;
    double w[8], m[8] = {0}, v[8] = {0}, g[8] = {0};
    for (size_t i = 0; i < n; i++) w[i] = flash_params_data(P)[i];
    flash_adam opt = {.lr = 0.01f, .beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-8f, .weight_decay = 0.1f};
    for (int step = 1; step <= 3; step++) {
        for (size_t i = 0; i < n; i++) {
            g[i] = cos(0.3 + (double)i * 0.9 + step);
            flash_params_grad(P)[i] = (float)g[i];
        }
        ck_assert_int_eq(flash_adam_step(P, &opt, step, NULL), FLASH_OK);
        adam_ref(w, m, v, g, nw, step, opt.lr, opt.beta1, opt.beta2, opt.eps, 0.1);
        adam_ref(w + nw, m + nw, v + nw, g + nw, n - nw, step, 5.0 * opt.lr, opt.beta1, opt.beta2, opt.eps, 0.1);
        for (size_t i = 0; i < n; i++) ck_assert_double_eq_tol(flash_params_data(P)[i], w[i], 1e-6);
    }
    flash_params_destroy(P);
}
END_TEST

START_TEST(test_ema_and_swap) {
    flash_params *P = make(1.0f, 1.0f);
    flash_error err = {0};
    ck_assert_int_ne(flash_params_swap_ema(P, &err), FLASH_OK);
    ck_assert_int_eq(flash_params_ema_update(P, 0.9f, NULL), FLASH_OK); /* copies */
    ck_assert_float_eq(flash_params_ema(P)[0], 1.0f);
    flash_init_const(flash_params_find(P, "layer.w"), 3.0f);
    ck_assert_int_eq(flash_params_ema_update(P, 0.9f, NULL), FLASH_OK);
    ck_assert_float_eq_tol(flash_params_ema(P)[0], 0.9f * 1 + 0.1f * 3, 1e-6);
    ck_assert_float_eq_tol(flash_params_ema(P)[6], 1.0f, 1e-6);
    ck_assert_int_eq(flash_params_ema_update(P, 0.5f, NULL), FLASH_OK);
    const float e0 = 0.5f * 1.2f + 0.5f * 3;
    ck_assert_float_eq_tol(flash_params_ema(P)[0], e0, 1e-6);
    /* swap: the parameter views now see the EMA weights, and back */
    flash_tensor *w = flash_params_find(P, "layer.w");
    ck_assert_int_eq(flash_params_swap_ema(P, NULL), FLASH_OK);
    ck_assert_float_eq_tol(w->data[0], e0, 1e-6);
    ck_assert_ptr_eq(w->data, flash_params_data(P));
    ck_assert_float_eq(flash_params_ema(P)[0], 3.0f);
    ck_assert_int_eq(flash_params_swap_ema(P, NULL), FLASH_OK);
    ck_assert_float_eq(w->data[0], 3.0f);
    flash_params_destroy(P);
}
END_TEST

START_TEST(test_clip_and_finite) {
    flash_params *P = make(0, 0);
    float *g = flash_params_grad(P);
    const size_t n = flash_params_count(P);
    double sq = 0;
    for (size_t i = 0; i < n; i++) {
        g[i] = (float)i - 3.5f;
        sq += (double)g[i] * g[i];
    }
    const double norm = sqrt(sq);
    ck_assert_double_eq_tol(flash_params_clip_grad(P, 0), norm, 1e-9);
    ck_assert_double_eq_tol(flash_params_clip_grad(P, 100), norm, 1e-9);
    ck_assert_float_eq(g[0], -3.5f);
    ck_assert_double_eq_tol(flash_params_clip_grad(P, 1.0), norm, 1e-9);
    double after = 0;
    for (size_t i = 0; i < n; i++) after += (double)g[i] * g[i];
    ck_assert_double_eq_tol(sqrt(after), 1.0, 1e-5);
    ck_assert(flash_params_grad_finite(P));
    g[3] = NAN;
    ck_assert(!flash_params_grad_finite(P));
    g[3] = INFINITY;
    ck_assert(!flash_params_grad_finite(P));
    flash_params_zero_grad(P);
    for (size_t i = 0; i < n; i++) ck_assert_float_eq(g[i], 0);
    flash_params_destroy(P);
}
END_TEST

START_TEST(test_copy_by_name) {
    flash_params *src = make(1.5f, -2.0f);
    /* same names in another order */
    flash_params *dst = flash_params_create();
    flash_params_add(dst, "layer.b", 1, (int[]){2});
    flash_params_add(dst, "layer.w", 2, (int[]){2, 3});
    ck_assert_int_eq(flash_params_finalize(dst, NULL), FLASH_OK);
    ck_assert_int_eq(flash_params_copy(dst, src, NULL), FLASH_OK);
    ck_assert_float_eq(flash_params_find(dst, "layer.w")->data[5], 1.5f);
    ck_assert_float_eq(flash_params_find(dst, "layer.b")->data[1], -2.0f);
    /* a shape mismatch or a missing name is refused, naming it, and copies nothing */
    flash_params *bad = flash_params_create();
    flash_params_add(bad, "layer.b", 1, (int[]){2});
    flash_params_add(bad, "layer.w", 2, (int[]){3, 2});
    ck_assert_int_eq(flash_params_finalize(bad, NULL), FLASH_OK);
    flash_error err = {0};
    ck_assert_int_ne(flash_params_copy(bad, src, &err), FLASH_OK);
    ck_assert_ptr_nonnull(strstr(err.msg, "layer.w"));
    ck_assert_float_eq(flash_params_find(bad, "layer.b")->data[0], 0.0f);
    flash_params *extra = flash_params_create();
    flash_params_add(extra, "head.w", 1, (int[]){2});
    ck_assert_int_eq(flash_params_finalize(extra, NULL), FLASH_OK);
    ck_assert_int_ne(flash_params_copy(extra, src, &err), FLASH_OK);
    ck_assert_ptr_nonnull(strstr(err.msg, "head.w"));
    flash_params_destroy(src);
    flash_params_destroy(dst);
    flash_params_destroy(bad);
    flash_params_destroy(extra);
}
END_TEST

START_TEST(test_grad_flows_to_block) {
    /* ops accumulate parameter gradients in place, in the grad block */
    flash_params *P = make(0.5f, 0.25f);
    flash_ctx *c = flash_ctx_create(0);
    flash_tensor *w = flash_params_find(P, "layer.w"), *b = flash_params_find(P, "layer.b");
    flash_tensor *l = flash_add(c, flash_sum(c, flash_square(c, w)), flash_sum(c, b));
    ck_assert_int_eq(flash_backward(c, l, NULL), FLASH_OK);
    for (int i = 0; i < 6; i++) ck_assert_float_eq(flash_params_grad(P)[i], 1.0f);
    ck_assert_float_eq(flash_params_grad(P)[7], 1.0f);
    flash_ctx_reset(c);
    ck_assert_ptr_eq(w->grad, flash_params_grad(P)); /* reset leaves parameters alone */
    flash_ctx_destroy(c);
    flash_params_destroy(P);
}
END_TEST

START_TEST(test_lerp) {
    flash_params *dst = make(1.0f, -2.0f), *src = make(3.0f, 4.0f);
    ck_assert_int_eq(flash_params_lerp(dst, src, 0.75f, NULL), FLASH_OK);
    for (int i = 0; i < 6; i++) ck_assert_float_eq_tol(flash_params_data(dst)[i], 0.75 * 1.0 + 0.25 * 3.0, 1e-7);
    for (int i = 6; i < 8; i++) ck_assert_float_eq_tol(flash_params_data(dst)[i], 0.75 * -2.0 + 0.25 * 4.0, 1e-7);
    ck_assert_float_eq(flash_params_data(src)[0], 3.0f); /* the source is only read */
    flash_params *other = flash_params_create();
    flash_params_add(other, "layer.w", 2, (int[]){2, 3});
    ck_assert_int_eq(flash_params_finalize(other, NULL), FLASH_OK);
    flash_error err = {0};
    ck_assert_int_ne(flash_params_lerp(other, src, 0.5f, &err), FLASH_OK);
    ck_assert_ptr_nonnull(strstr(err.msg, "lerp"));
    flash_params_destroy(dst);
    flash_params_destroy(src);
    flash_params_destroy(other);
}
END_TEST

/* A teacher on the CPU initialises a student on the device and back; lerp
 * runs where both blocks live and refuses blocks on two devices. */
START_TEST(test_across_devices) {
    char lib[4096];
    snprintf(lib, sizeof lib, "%s/tests/tools/libflash_fake_device.so", FLASH_BINARY_DIR);
    ck_assert_msg(access(lib, R_OK) == 0, "no stand-in device at %s", lib);
    setenv("FLASH_CUDA_LIB", lib, 1);
    flash_error err = {0};
    flash_params *host = make(1.5f, -2.0f), *dev = make(0.0f, 0.0f);
    ck_assert_msg(flash_params_to_device(dev, "cuda", &err) == FLASH_OK, "%s", err.msg);
    ck_assert_str_eq(flash_params_device(dev), "cuda");
    ck_assert_int_eq(flash_params_copy(dev, host, &err), FLASH_OK);
    float h[8];
    ck_assert_int_eq(flash_params_to_host(dev, h, &err), FLASH_OK);
    ck_assert_float_eq(h[5], 1.5f);
    ck_assert_float_eq(h[7], -2.0f);
    flash_params *back = make(0.0f, 0.0f);
    ck_assert_int_eq(flash_params_lerp(back, dev, 0.5f, &err), FLASH_ERR_RUNTIME);
    ck_assert_msg(strstr(err.msg, "cpu") && strstr(err.msg, "cuda"), "%s", err.msg);
    ck_assert_int_eq(flash_params_copy(back, dev, &err), FLASH_OK);
    ck_assert_float_eq(flash_params_data(back)[0], 1.5f);
    flash_params *dev2 = make(3.5f, 0.0f);
    ck_assert_int_eq(flash_params_to_device(dev2, "cuda", &err), FLASH_OK);
    ck_assert_int_eq(flash_params_lerp(dev2, dev, 0.5f, &err), FLASH_OK);
    ck_assert_int_eq(flash_params_to_host(dev2, h, &err), FLASH_OK);
    ck_assert_float_eq_tol(h[0], 0.5 * 3.5 + 0.5 * 1.5, 1e-7);
    ck_assert_float_eq_tol(h[6], 0.5 * 0.0 + 0.5 * -2.0, 1e-7);
    flash_params_destroy(host);
    flash_params_destroy(dev);
    flash_params_destroy(dev2);
    flash_params_destroy(back);
}
END_TEST

static Suite *params_suite(void) {
    Suite *s = suite_create("params");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_layout);
    tcase_add_test(tc, test_adam);
    tcase_add_test(tc, test_adamw);
    tcase_add_test(tc, test_adam_lr_scale);
    tcase_add_test(tc, test_ema_and_swap);
    tcase_add_test(tc, test_clip_and_finite);
    tcase_add_test(tc, test_copy_by_name);
    tcase_add_test(tc, test_grad_flows_to_block);
    tcase_add_test(tc, test_lerp);
    tcase_add_test(tc, test_across_devices);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) {
    SRunner *sr = srunner_create(params_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
