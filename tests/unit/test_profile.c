/* Kernel profiling (core/tensor/profile.c, flash bench --profile): the
 * operations it counts equal the closed forms of the layer shapes (a
 * convolution's 2 n cout ho wo cin k^2, a linear layer's 2 n out in; the
 * backward pass twice the forward's for the input and weight gradients),
 * every kernel call is counted, results are those of the plain backend,
 * and stopping restores it. */
#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "flash/flash.h"

static const flash_profile_row *row(const flash_profile_row *rows, int n, const char *kernel)
{
    for (int i = 0; i < n; i++)
        if (strcmp(rows[i].kernel, kernel) == 0) return &rows[i];
    return NULL;
}

static float run(flash_ctx *c, bool backward)
{
    flash_ctx_reset(c);
    flash_rng r;
    flash_rng_seed(&r, 1);
    flash_tensor *x = flash_randn(c, &r, 4, (int[]){2, 3, 8, 8});
    flash_tensor *w = flash_randn(c, &r, 4, (int[]){4, 3, 3, 3});
    flash_tensor *lw = flash_randn(c, &r, 2, (int[]){6, 7});
    flash_tensor *lx = flash_randn(c, &r, 2, (int[]){5, 7});
    if (backward) {
        flash_tensor_requires_grad(w, true);
        flash_tensor_requires_grad(lw, true);
    }
    flash_tensor *y = flash_conv2d(c, x, w, NULL, 1, 1); /* (2, 4, 8, 8) */
    flash_tensor *z = flash_linear(c, lx, lw, NULL);      /* (5, 6) */
    flash_tensor *loss = flash_add(c, flash_sum(c, flash_mul(c, y, y)), flash_sum(c, z));
    ck_assert_msg(loss && flash_ctx_ok(c), "%s", flash_ctx_error(c));
    if (backward) {
        flash_error e = {0};
        ck_assert_msg(flash_backward(c, loss, &e) == FLASH_OK, "%s", e.msg);
    }
    float v = 0;
    flash_error e = {0};
    ck_assert(flash_tensor_to_host(c, loss, &v, &e) == FLASH_OK);
    return v;
}

START_TEST(test_profile_counts_closed_forms)
{
    flash_ctx *c = flash_ctx_create(1 << 22);
    const float plain = run(c, true);
    flash_error e = {0};
    ck_assert(flash_ctx_profile_start(c, &e) == FLASH_OK);
    ck_assert_float_eq(run(c, true), plain); /* the same kernels underneath */
    flash_profile_row rows[64];
    int n = flash_ctx_profile_read(rows, 64);
    const double conv = 2.0 * 2 * 4 * 8 * 8 * 3 * 3 * 3, lin = 2.0 * 5 * 6 * 7;
    const flash_profile_row *cf = row(rows, n, "conv2d_forward"), *cb = row(rows, n, "conv2d_backward"),
                            *sg = row(rows, n, "sgemm");
    ck_assert_ptr_nonnull(cf);
    ck_assert_ptr_nonnull(cb);
    ck_assert_ptr_nonnull(sg);
    ck_assert_int_eq(cf->calls, 1);
    ck_assert_double_eq(cf->flops, conv);
    ck_assert_double_eq(cb->flops, conv); /* the weights' gradient only: x needs none */
    /* forward, then the weights' gradient: the input needs none */
    ck_assert_double_eq(sg->flops, 2 * lin);
    for (int i = 0; i < n; i++) ck_assert(rows[i].seconds >= 0 && rows[i].calls > 0);
    /* zeroed: a no-grad forward counts the forward alone */
    flash_ctx_profile_zero();
    bool was = flash_grad_set(c, false);
    run(c, false);
    flash_grad_set(c, was);
    n = flash_ctx_profile_read(rows, 64);
    ck_assert_double_eq(row(rows, n, "conv2d_forward")->flops, conv);
    ck_assert_ptr_null(row(rows, n, "conv2d_backward"));
    ck_assert_double_eq(row(rows, n, "sgemm")->flops, lin);
    /* another context cannot be profiled at the same time */
    flash_ctx *c2 = flash_ctx_create(1 << 20);
    ck_assert(flash_ctx_profile_start(c2, &e) != FLASH_OK);
    flash_ctx_profile_stop(c);
    flash_ctx_profile_zero();
    run(c, true);
    ck_assert_int_eq(flash_ctx_profile_read(rows, 64), 0); /* stopped: nothing counted */
    flash_ctx_destroy(c2);
    flash_ctx_destroy(c);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("profile");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_profile_counts_closed_forms);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    flash_set_threads(1);
    SRunner *sr = srunner_create(suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
