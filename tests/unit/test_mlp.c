/* End to end: a 2 -> 32 -> 32 -> 1 MLP regresses a smooth 2-D function,
 * trained with Adam through the autograd; the loss must drop 100x. */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "flash/flash.h"

#define N 256

static double target(double x1, double x2) { return sin(2.0 * x1) * cos(1.5 * x2) + 0.5 * x1 * x2; }

typedef struct {
    flash_tensor *w1, *b1, *w2, *b2, *w3, *b3;
} mlp;

static flash_tensor *forward(flash_ctx *c, const mlp *m, flash_tensor *x) {
    flash_tensor *h = flash_tanh(c, flash_linear(c, x, m->w1, m->b1));
    h = flash_silu(c, flash_linear(c, h, m->w2, m->b2));
    return flash_linear(c, h, m->w3, m->b3);
}

typedef struct {
    double first, last, test;
    float *params; /* final parameter block (caller frees) */
    size_t count;
} run_result;

static run_result train(int steps, int threads) {
    flash_set_threads(threads);
    flash_rng r;
    flash_rng_seed(&r, 11);
    float *xs = malloc(N * 2 * sizeof(float)), *ys = malloc(N * sizeof(float));
    flash_rng_fill_uniform(&r, xs, N * 2, -1, 1);
    for (int i = 0; i < N; i++) ys[i] = (float)target(xs[2 * i], xs[2 * i + 1]);

    flash_params *P = flash_params_create();
    mlp m = {
        flash_params_add(P, "l1.w", 2, (int[]){32, 2}),  flash_params_add(P, "l1.b", 1, (int[]){32}),
        flash_params_add(P, "l2.w", 2, (int[]){32, 32}), flash_params_add(P, "l2.b", 1, (int[]){32}),
        flash_params_add(P, "l3.w", 2, (int[]){1, 32}),  flash_params_add(P, "l3.b", 1, (int[]){1}),
    };
    ck_assert_int_eq(flash_params_finalize(P, NULL), FLASH_OK);
    flash_init_fan_in(m.w1, &r, 2);
    flash_init_fan_in(m.b1, &r, 2);
    flash_init_fan_in(m.w2, &r, 32);
    flash_init_fan_in(m.b2, &r, 32);
    flash_init_fan_in(m.w3, &r, 32);
    flash_init_fan_in(m.b3, &r, 32);

    flash_ctx *c = flash_ctx_create(1 << 16);
    flash_adam opt = {.lr = 0.01f, .beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-8f};
    flash_error err = {0};
    run_result res = {0};
    size_t chunks = 0;
    for (int step = 1; step <= steps; step++) {
        flash_ctx_reset(c);
        flash_tensor *x = flash_tensor_from(c, 2, (int[]){N, 2}, xs);
        flash_tensor *y = flash_tensor_from(c, 2, (int[]){N, 1}, ys);
        flash_tensor *loss = flash_mse(c, forward(c, &m, x), y);
        ck_assert_msg(flash_ctx_ok(c), "%s", flash_ctx_error(c));
        flash_params_zero_grad(P);
        ck_assert_msg(flash_backward(c, loss, &err) == FLASH_OK, "%s", err.msg);
        ck_assert_int_eq(flash_adam_step(P, &opt, step, &err), FLASH_OK);
        if (step == 1) res.first = loss->data[0];
        res.last = loss->data[0];
        /* steady state: the arena stops growing after the first iterations */
        if (step == 3) chunks = flash_ctx_arena_chunks(c);
        if (step > 3) ck_assert_uint_eq(flash_ctx_arena_chunks(c), chunks);
    }

    /* the fit generalises to fresh points of the same function */
    flash_ctx_reset(c);
    flash_grad_set(c, false);
    float xt[64 * 2], yt[64];
    flash_rng_fill_uniform(&r, xt, 64 * 2, -0.9f, 0.9f);
    for (int i = 0; i < 64; i++) yt[i] = (float)target(xt[2 * i], xt[2 * i + 1]);
    flash_tensor *pred = forward(c, &m, flash_tensor_from(c, 2, (int[]){64, 2}, xt));
    flash_tensor *test_loss = flash_mse(c, pred, flash_tensor_from(c, 2, (int[]){64, 1}, yt));
    ck_assert_ptr_nonnull(test_loss);
    res.test = test_loss->data[0];
    res.count = flash_params_count(P);
    res.params = malloc(res.count * sizeof(float));
    memcpy(res.params, flash_params_data(P), res.count * sizeof(float));
    flash_ctx_destroy(c);
    flash_params_destroy(P);
    free(xs);
    free(ys);
    return res;
}

START_TEST(test_mlp_regression) {
    run_result r = train(1500, 1);
    ck_assert_msg(r.first / r.last >= 100.0, "loss %g -> %g: only %.1fx lower", r.first, r.last, r.first / r.last);
    ck_assert_msg(r.test < 10 * r.last + 1e-4, "test loss %g vs train %g", r.test, r.last);
    free(r.params);
}
END_TEST

/* same seed, same thread count: bit-identical parameters after training */
START_TEST(test_mlp_reproducible) {
    run_result a = train(20, 2), b = train(20, 2);
    ck_assert_uint_eq(a.count, b.count);
    ck_assert(memcmp(a.params, b.params, a.count * sizeof(float)) == 0);
    ck_assert(memcmp(&a.last, &b.last, sizeof a.last) == 0);
    free(a.params);
    free(b.params);
}
END_TEST

/* a frozen model (the teacher in distillation) records nothing and gets no
 * gradient, while gradients still flow through it to its input */
START_TEST(test_frozen_params) {
    flash_params *P = flash_params_create();
    flash_tensor *w = flash_params_add(P, "w", 2, (int[]){3, 2});
    ck_assert_int_eq(flash_params_finalize(P, NULL), FLASH_OK);
    flash_init_const(w, 0.5f);
    flash_tensor_requires_grad(w, false);
    flash_ctx *c = flash_ctx_create(0);
    flash_tensor *x = flash_full(c, 2, (int[]){4, 2}, 1.0f);
    flash_tensor *y = flash_linear(c, x, w, NULL);
    ck_assert(!(y->flags & FLASH_TENSOR_REQUIRES_GRAD));
    flash_tensor_requires_grad(x, true);
    flash_tensor *l = flash_sum(c, flash_linear(c, x, w, NULL));
    ck_assert_int_eq(flash_backward(c, l, NULL), FLASH_OK);
    for (int i = 0; i < 6; i++) ck_assert_float_eq(flash_params_grad(P)[i], 0.0f);
    for (int i = 0; i < 8; i++) ck_assert_float_eq_tol(x->grad[i], 1.5f, 1e-6);
    flash_ctx_destroy(c);
    flash_params_destroy(P);
}
END_TEST

static Suite *mlp_suite(void) {
    Suite *s = suite_create("mlp");
    TCase *tc = tcase_create("train");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_mlp_regression);
    tcase_add_test(tc, test_mlp_reproducible);
    tcase_add_test(tc, test_frozen_params);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) {
    SRunner *sr = srunner_create(mlp_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
