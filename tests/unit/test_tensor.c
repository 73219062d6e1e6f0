/* Context, arena, tape and tensor creation: the no-malloc steady state,
 * sticky errors, NULL propagation, grad scopes, detach, repeated backward. */
#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "flash/flash.h"
#include "tensor/tensor_internal.h"

/* One "training iteration" of a small graph; returns the loss value. */
static float iteration(flash_ctx *c, flash_params *P, const float *xin) {
    flash_ctx_reset(c);
    flash_tensor *w = flash_params_find(P, "w");
    flash_tensor *x = flash_tensor_from(c, 2, (int[]){64, 16}, xin);
    flash_tensor *h = flash_tanh(c, flash_mul(c, x, w));
    flash_tensor *y = flash_concat(c, h, flash_square(c, x));
    flash_tensor *l = flash_mean(c, flash_square(c, y));
    flash_params_zero_grad(P);
    ck_assert_int_eq(flash_backward(c, l, NULL), FLASH_OK);
    return l->data[0];
}

START_TEST(test_arena_reuse) {
    /* a first chunk far too small: the warm-up iteration grows the arena */
    flash_ctx *c = flash_ctx_create(4096);
    ck_assert_ptr_nonnull(c);
    flash_params *P = flash_params_create();
    ck_assert_ptr_nonnull(flash_params_add(P, "w", 1, (int[]){16}));
    ck_assert_int_eq(flash_params_finalize(P, NULL), FLASH_OK);
    flash_init_const(flash_params_find(P, "w"), 0.5f);
    float *x = malloc(64 * 16 * sizeof(float));
    for (int i = 0; i < 64 * 16; i++) x[i] = sinf((float)i);
    float l0 = iteration(c, P, x);
    ck_assert_uint_gt(flash_ctx_arena_chunks(c), 1);
    float l1 = iteration(c, P, x); /* reset coalesced the chunks */
    const size_t chunks = flash_ctx_arena_chunks(c), cap = flash_ctx_arena_capacity(c);
    ck_assert_uint_eq(chunks, 1);
    for (int it = 0; it < 20; it++) {
        float l = iteration(c, P, x);
        ck_assert_float_eq(l, l1);
        ck_assert_uint_eq(flash_ctx_arena_chunks(c), chunks);
        ck_assert_uint_eq(flash_ctx_arena_capacity(c), cap);
    }
    ck_assert_float_eq(l0, l1);
    free(x);
    flash_params_destroy(P);
    flash_ctx_destroy(c);
}
END_TEST

START_TEST(test_alignment_and_shapes) {
    flash_ctx *c = flash_ctx_create(0);
    for (int n = 1; n < 40; n += 3) {
        flash_tensor *t = flash_tensor_1d(c, n);
        ck_assert_ptr_nonnull(t);
        ck_assert_uint_eq((uintptr_t)t->data % FLASH_ARENA_ALIGN, 0);
        ck_assert_uint_eq(t->numel, (size_t)n);
    }
    flash_tensor *t = flash_tensor_4d(c, 2, 3, 4, 5);
    char buf[64];
    ck_assert_str_eq(flash_tensor_shape_str(t, buf, sizeof buf), "(2, 3, 4, 5)");
    ck_assert_uint_eq(t->numel, 120);
    flash_tensor *z = flash_zeros(c, 2, (int[]){3, 7});
    for (int i = 0; i < 21; i++) ck_assert_float_eq(z->data[i], 0);
    flash_tensor *f = flash_full(c, 2, (int[]){3, 7}, 2.5f);
    for (int i = 0; i < 21; i++) ck_assert_float_eq(f->data[i], 2.5f);
    ck_assert(!flash_tensor_same_shape(z, t));
    ck_assert(flash_tensor_same_shape(z, f));
    float v[3] = {1, 2, 3};
    flash_tensor *ps = flash_tensor_per_sample(c, t, v);
    ck_assert_int_eq(ps->ndim, 4);
    ck_assert_int_eq(ps->shape[0], 2);
    ck_assert_int_eq(ps->shape[1], 1);
    flash_tensor *ps2 = flash_tensor_per_sample(c, z, v);
    ck_assert_int_eq(ps2->ndim, 2);
    ck_assert_float_eq(ps2->data[2], 3);
    /* a per-sample scalar broadcasts against its tensor */
    flash_tensor *m = flash_mul(c, f, ps2);
    ck_assert_float_eq(m->data[7 * 2 + 6], 7.5f);
    ck_assert(flash_ctx_ok(c));
    flash_tensor *h = flash_tensor_alloc(2, (int[]){3, 3});
    ck_assert_ptr_nonnull(h);
    ck_assert(h->flags & FLASH_TENSOR_OWNS_DATA);
    flash_tensor_free(h);
    flash_tensor_free(NULL);
    ck_assert_ptr_null(flash_tensor_alloc(5, (int[]){1, 1, 1, 1, 1}));
    ck_assert_ptr_null(flash_tensor_alloc(2, (int[]){3, 0}));
    flash_ctx_destroy(c);
    flash_ctx_destroy(NULL);
}
END_TEST

START_TEST(test_sticky_error) {
    flash_ctx *c = flash_ctx_create(0);
    flash_tensor *a = flash_zeros(c, 2, (int[]){4, 3});
    flash_tensor *b = flash_zeros(c, 2, (int[]){4, 5});
    ck_assert(flash_ctx_ok(c));
    flash_tensor *y = flash_add(c, a, b);
    ck_assert_ptr_null(y);
    ck_assert(!flash_ctx_ok(c));
    const char *msg = flash_ctx_error(c);
    ck_assert_ptr_nonnull(strstr(msg, "add"));
    ck_assert_ptr_nonnull(strstr(msg, "(4, 5)"));
    ck_assert_ptr_nonnull(strstr(msg, "(4, 3)"));
    /* NULL flows through a whole forward pass without crashing */
    flash_tensor *z = flash_mean(c, flash_silu(c, flash_concat(c, y, flash_mse(c, y, a))));
    ck_assert_ptr_null(z);
    /* the first error wins */
    flash_mse(c, a, b);
    ck_assert_str_eq(flash_ctx_error(c), msg);
    flash_error err = {0};
    ck_assert_int_eq(flash_ctx_status(c, &err), FLASH_ERR_RUNTIME);
    ck_assert_ptr_nonnull(strstr(err.msg, "add"));
    ck_assert_int_ne(flash_backward(c, z, &err), FLASH_OK);
    flash_ctx_fail(c, "ignored %d", 1);
    ck_assert_ptr_null(strstr(flash_ctx_error(c), "ignored"));
    /* reset clears it */
    flash_ctx_reset(c);
    ck_assert(flash_ctx_ok(c));
    ck_assert_int_eq(flash_ctx_status(c, &err), FLASH_OK);
    flash_ctx_fail(c, "model '%s' failed", "unet");
    ck_assert_str_eq(flash_ctx_error(c), "model 'unet' failed");
    /* bad shapes for new tensors */
    flash_ctx_reset(c);
    ck_assert_ptr_null(flash_tensor_new(c, 2, (int[]){3, -1}));
    ck_assert(!flash_ctx_ok(c));
    flash_ctx_destroy(c);
}
END_TEST

START_TEST(test_no_grad_and_detach) {
    flash_ctx *c = flash_ctx_create(0);
    flash_tensor *x = flash_full(c, 2, (int[]){2, 3}, 0.5f);
    flash_tensor_requires_grad(x, true);
    ck_assert(flash_grad_enabled(c));
    bool was = flash_grad_set(c, false);
    ck_assert(was);
    flash_tensor *y = flash_exp(c, flash_mul(c, x, x));
    ck_assert_ptr_null(y->op);
    ck_assert(!flash_needs_grad(y));
    ck_assert_uint_eq(c->tape_len, 0);
    /* nested scope restores the outer mode */
    bool inner = flash_grad_set(c, false);
    flash_grad_set(c, inner);
    ck_assert(!flash_grad_enabled(c));
    flash_grad_set(c, was);
    ck_assert(flash_grad_enabled(c));
    flash_error err = {0};
    ck_assert_int_ne(flash_backward(c, flash_sum(c, y), &err), FLASH_OK);
    ck_assert_ptr_nonnull(strstr(err.msg, "does not require grad"));
    /* detach cuts the tape: nothing flows back to x through it */
    flash_tensor *h = flash_square(c, x);
    const size_t before = c->tape_len;
    flash_tensor *d = flash_detach(c, h);
    ck_assert_uint_eq(c->tape_len, before);
    ck_assert(!flash_needs_grad(d));
    ck_assert_ptr_eq(d->data, h->data);
    flash_tensor *l = flash_sum(c, flash_add(c, flash_mul(c, d, x), x));
    ck_assert_int_eq(flash_backward(c, l, &err), FLASH_OK);
    /* dl/dx = d + 1 = x^2 + 1 (no term through d) */
    for (int i = 0; i < 6; i++) ck_assert_float_eq_tol(x->grad[i], 1.25f, 1e-6);
    flash_ctx_destroy(c);
}
END_TEST

START_TEST(test_backward_twice) {
    /* two losses in one iteration (discriminator, then generator): the
     * second pass must not reuse the first pass's intermediate gradients */
    flash_ctx *c = flash_ctx_create(0);
    flash_params *P = flash_params_create();
    flash_tensor *w = flash_params_add(P, "w", 1, (int[]){3});
    ck_assert_int_eq(flash_params_finalize(P, NULL), FLASH_OK);
    flash_init_const(w, 2.0f);
    flash_tensor *h = flash_square(c, w); /* shared intermediate */
    flash_tensor *l1 = flash_sum(c, h);
    flash_tensor *l2 = flash_mean(c, h);
    ck_assert_int_eq(flash_backward(c, l1, NULL), FLASH_OK);
    for (int i = 0; i < 3; i++) ck_assert_float_eq_tol(w->grad[i], 4.0f, 1e-6); /* 2w */
    flash_params_zero_grad(P);
    ck_assert_int_eq(flash_backward(c, l2, NULL), FLASH_OK);
    for (int i = 0; i < 3; i++) ck_assert_float_eq_tol(w->grad[i], 4.0f / 3, 1e-6); /* 2w/3 */
    /* without zeroing, parameter gradients accumulate */
    ck_assert_int_eq(flash_backward(c, l2, NULL), FLASH_OK);
    for (int i = 0; i < 3; i++) ck_assert_float_eq_tol(w->grad[i], 8.0f / 3, 1e-6);
    flash_error err = {0};
    ck_assert_int_ne(flash_backward(c, h, &err), FLASH_OK);
    ck_assert_ptr_nonnull(strstr(err.msg, "one element"));
    flash_params_destroy(P);
    flash_ctx_destroy(c);
}
END_TEST

START_TEST(test_heap_leaf_grad_cleared) {
    /* a heap tensor's arena gradient must not survive a reset */
    flash_ctx *c = flash_ctx_create(0);
    flash_tensor *x = flash_tensor_alloc(1, (int[]){4});
    for (int i = 0; i < 4; i++) x->data[i] = (float)i;
    flash_tensor_requires_grad(x, true);
    ck_assert_int_eq(flash_backward(c, flash_sum(c, flash_square(c, x)), NULL), FLASH_OK);
    ck_assert_ptr_nonnull(x->grad);
    ck_assert_float_eq(x->grad[3], 6);
    flash_ctx_reset(c);
    ck_assert_ptr_null(x->grad);
    ck_assert_int_eq(flash_backward(c, flash_sum(c, x), NULL), FLASH_OK);
    ck_assert_float_eq(x->grad[3], 1);
    flash_ctx_destroy(c);
    ck_assert_ptr_null(x->grad);
    flash_tensor_free(x);
}
END_TEST

/* A no-grad loop that rewinds to a mark each step keeps one step's
 * temporaries: values survive, earlier tensors stay put, the arena stops
 * growing, and a rewind past tape entries is refused. */
START_TEST(test_mark_rewind) {
    flash_ctx *c = flash_ctx_create(4096);
    ck_assert_ptr_nonnull(c);
    float xin[256];
    for (int i = 0; i < 256; i++) xin[i] = (float)i / 256.0f - 0.5f;
    size_t cap_after_3 = 0;
    for (int pass = 0; pass < 2; pass++) {
        flash_ctx_reset(c);
        flash_grad_set(c, false);
        flash_tensor *before = flash_tensor_from(c, 2, (int[]){16, 16}, xin);
        flash_tensor *x = before;
        double ref[256];
        for (int i = 0; i < 256; i++) ref[i] = xin[i];
        for (int step = 0; step < 40; step++) {
            flash_arena_mark m = flash_ctx_mark(c);
            /* temporaries far larger than the result */
            flash_tensor *big = flash_tensor_new(c, 2, (int[]){64, 1024});
            ck_assert_ptr_nonnull(big);
            flash_tensor *y = flash_add_scalar(c, flash_scale(c, flash_tanh(c, x), 0.5f), 0.25f);
            flash_tensor *keep[3] = {y, before, y};
            ck_assert(flash_ctx_rewind(c, &m, keep, 3));
            ck_assert_ptr_eq(keep[1], before); /* made before the mark: untouched */
            ck_assert_ptr_eq(keep[0], keep[2]);
            x = keep[0];
            for (int i = 0; i < 256; i++) ref[i] = 0.5 * tanh(ref[i]) + 0.25;
            if (step == 3) cap_after_3 = flash_ctx_arena_capacity(c);
        }
        for (int i = 0; i < 256; i++) {
            ck_assert_float_eq_tol(x->data[i], (float)ref[i], 1e-5f);
            ck_assert_float_eq(before->data[i], xin[i]);
        }
        /* 40 steps of 256 KiB temporaries live in what 3 steps needed */
        ck_assert_uint_eq(flash_ctx_arena_capacity(c), cap_after_3);
        /* after a reset the one chunk sized by the peak holds the loop */
        if (pass == 1) ck_assert_uint_eq(flash_ctx_arena_chunks(c), 1);
        flash_grad_set(c, true);
    }
    /* the peak before a rewind sizes the arena at the next reset */
    flash_ctx_reset(c);
    ck_assert_uint_eq(flash_ctx_arena_chunks(c), 1);
    ck_assert_uint_ge(flash_ctx_arena_capacity(c), 64u * 1024u * sizeof(float));

    flash_params *P = flash_params_create();
    ck_assert_ptr_nonnull(flash_params_add(P, "w", 1, (int[]){16}));
    ck_assert_int_eq(flash_params_finalize(P, NULL), FLASH_OK);
    flash_ctx_reset(c);
    flash_arena_mark m = flash_ctx_mark(c);
    flash_tensor *l = flash_mean(c, flash_square(c, flash_params_find(P, "w")));
    ck_assert_ptr_nonnull(l);
    flash_tensor *keep[1] = {l};
    ck_assert(!flash_ctx_rewind(c, &m, keep, 1));
    ck_assert_ptr_nonnull(strstr(flash_ctx_error(c), "tape"));
    flash_params_destroy(P);
    flash_ctx_destroy(c);
}
END_TEST

START_TEST(test_errors_and_threads) {
    flash_error e = {0};
    ck_assert_int_eq(flash_error_set(&e, FLASH_ERR_CONFIG, "x.yaml:%d:%d: bad", 3, 4), FLASH_ERR_CONFIG);
    ck_assert_int_eq(e.status, FLASH_ERR_CONFIG);
    flash_error_prefix(&e, "loading %s", "cfg");
    ck_assert_str_eq(e.msg, "loading cfg: x.yaml:3:4: bad");
    ck_assert_int_eq(flash_error_set(NULL, FLASH_ERR_IO, "ignored"), FLASH_ERR_IO);
    flash_error_prefix(NULL, "x");
    /* a long prefix truncates rather than overflows */
    char big[2000];
    memset(big, 'a', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    flash_error_prefix(&e, "%s", big);
    ck_assert_uint_lt(strlen(e.msg), sizeof e.msg);
    ck_assert_str_eq(flash_status_name(FLASH_OK), "ok");
    ck_assert_str_eq(flash_status_name(FLASH_ERR_IO), "I/O error");
    int was = flash_get_threads();
    flash_set_threads(1);
    ck_assert_int_eq(flash_get_threads(), 1);
    flash_set_threads(was);
    ck_assert_int_eq(flash_get_threads(), was);
}
END_TEST

static Suite *tensor_suite(void) {
    Suite *s = suite_create("tensor");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_arena_reuse);
    tcase_add_test(tc, test_alignment_and_shapes);
    tcase_add_test(tc, test_sticky_error);
    tcase_add_test(tc, test_no_grad_and_detach);
    tcase_add_test(tc, test_backward_twice);
    tcase_add_test(tc, test_heap_leaf_grad_cleared);
    tcase_add_test(tc, test_errors_and_threads);
    tcase_add_test(tc, test_mark_rewind);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) {
    SRunner *sr = srunner_create(tensor_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
