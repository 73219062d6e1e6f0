/* RNG determinism, stream independence and moments; the batcher's epochs
 * and resume. */
#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "flash/flash.h"
#include "flash/dataset.h"

START_TEST(test_reference_values) {
    /* splitmix64 from 0 gives the published first output e220a8397b1dcdaf */
    flash_rng r;
    flash_rng_seed(&r, 0);
    ck_assert_uint_eq(r.s[0], 0xe220a8397b1dcdafull);
    /* xoshiro256** on state {1, 2, 3, 4}: the reference implementation's
     * first outputs */
    flash_rng x = {.s = {1, 2, 3, 4}};
    ck_assert_uint_eq(flash_rng_u64(&x), 11520ull);
    ck_assert_uint_eq(flash_rng_u64(&x), 0ull);
    ck_assert_uint_eq(flash_rng_u64(&x), 1509978240ull);
    ck_assert_uint_eq(flash_rng_u64(&x), 1215971899390074240ull);
}
END_TEST

START_TEST(test_determinism) {
    flash_rng a, b, c;
    flash_rng_seed(&a, 42);
    flash_rng_seed(&b, 42);
    flash_rng_seed(&c, 43);
    int same_c = 0;
    for (int i = 0; i < 1000; i++) {
        uint64_t va = flash_rng_u64(&a);
        ck_assert_uint_eq(va, flash_rng_u64(&b));
        same_c += va == flash_rng_u64(&c);
    }
    ck_assert_int_eq(same_c, 0);
    /* normals: the spare is part of the state, so a copied state continues identically */
    flash_rng_seed(&a, 7);
    (void)flash_rng_normal(&a);
    flash_rng saved = a;
    float x1[33], x2[33];
    flash_rng_fill_normal(&a, x1, 33);
    flash_rng_fill_normal(&saved, x2, 33);
    ck_assert(memcmp(x1, x2, sizeof x1) == 0);
    /* streams differ from each other and from the plain seed */
    flash_rng s0, s1, s0b;
    flash_rng_seed_stream(&s0, 42, 0);
    flash_rng_seed_stream(&s1, 42, 1);
    flash_rng_seed_stream(&s0b, 42, 0);
    flash_rng_seed(&a, 42);
    uint64_t u0 = flash_rng_u64(&s0);
    ck_assert_uint_eq(u0, flash_rng_u64(&s0b));
    ck_assert_uint_ne(u0, flash_rng_u64(&s1));
    ck_assert_uint_ne(u0, flash_rng_u64(&a));
}
END_TEST

START_TEST(test_moments) {
    flash_rng r;
    flash_rng_seed(&r, 2024);
    const int n = 200000;
    float *x = malloc(n * sizeof(float));
    flash_rng_fill_normal(&r, x, n);
    double m1 = 0, m2 = 0, m3 = 0, m4 = 0;
    for (int i = 0; i < n; i++) {
        double v = x[i];
        m1 += v, m2 += v * v, m3 += v * v * v, m4 += v * v * v * v;
    }
    m1 /= n, m2 /= n, m3 /= n, m4 /= n;
    /* standard errors: mean 1/sqrt(n) = 0.0022, var sqrt(2/n) = 0.0032 */
    ck_assert_double_eq_tol(m1, 0, 0.01);
    ck_assert_double_eq_tol(m2, 1, 0.015);
    ck_assert_double_eq_tol(m3, 0, 0.03);
    ck_assert_double_eq_tol(m4, 3, 0.06);
    flash_rng_fill_uniform(&r, x, n, -1, 3);
    m1 = m2 = 0;
    float lo = 10, hi = -10;
    for (int i = 0; i < n; i++) {
        m1 += x[i], m2 += (double)x[i] * x[i];
        lo = fminf(lo, x[i]), hi = fmaxf(hi, x[i]);
    }
    m1 /= n, m2 = m2 / n - m1 * m1;
    ck_assert(lo >= -1 && hi < 3);
    ck_assert_double_eq_tol(m1, 1, 0.01);
    ck_assert_double_eq_tol(m2, 16.0 / 12, 0.01);
    double u = 0;
    for (int i = 0; i < n; i++) {
        double v = flash_rng_uniform(&r);
        ck_assert(v >= 0 && v < 1);
        u += v;
    }
    ck_assert_double_eq_tol(u / n, 0.5, 0.005);
    /* below(n): every value hit, roughly uniformly */
    int counts[7] = {0};
    for (int i = 0; i < 70000; i++) counts[flash_rng_below(&r, 7)]++;
    for (int k = 0; k < 7; k++) ck_assert_int_gt(counts[k], 9500);
    ck_assert_uint_eq(flash_rng_below(&r, 1), 0);
    free(x);
}
END_TEST

START_TEST(test_shuffle) {
    flash_rng r;
    flash_rng_seed(&r, 1);
    int64_t idx[100];
    for (int i = 0; i < 100; i++) idx[i] = i;
    flash_rng_shuffle(&r, idx, 100);
    int seen[100] = {0}, fixed = 0;
    for (int i = 0; i < 100; i++) {
        seen[idx[i]]++;
        fixed += idx[i] == i;
    }
    for (int i = 0; i < 100; i++) ck_assert_int_eq(seen[i], 1);
    ck_assert_int_lt(fixed, 10);
}
END_TEST

START_TEST(test_batcher) {
    flash_batcher b;
    ck_assert_int_eq(flash_batcher_init(&b, 10, 5, NULL), FLASH_OK);
    int64_t ep[3][10];
    for (int e = 0; e < 3; e++) {
        int seen[10] = {0};
        /* batches of 5 over n = 10: each epoch is a permutation */
        flash_batcher_next(&b, ep[e], 5);
        flash_batcher_next(&b, ep[e] + 5, 5);
        for (int i = 0; i < 10; i++) seen[ep[e][i]]++;
        for (int i = 0; i < 10; i++) ck_assert_int_eq(seen[i], 1);
    }
    ck_assert(memcmp(ep[0], ep[1], sizeof ep[0]) != 0);
    ck_assert_int_eq(b.epoch, 2);
    /* resume: skip reproduces the state reached by drawing */
    flash_batcher a, s;
    ck_assert_int_eq(flash_batcher_init(&a, 7, 9, NULL), FLASH_OK);
    ck_assert_int_eq(flash_batcher_init(&s, 7, 9, NULL), FLASH_OK);
    int64_t tmp[3], x[3], y[3];
    for (int i = 0; i < 11; i++) flash_batcher_next(&a, tmp, 3);
    flash_batcher_skip(&s, 11, 3);
    ck_assert_int_eq(a.epoch, s.epoch);
    ck_assert_int_eq(a.cursor, s.cursor);
    for (int i = 0; i < 20; i++) {
        flash_batcher_next(&a, x, 3);
        flash_batcher_next(&s, y, 3);
        ck_assert(memcmp(x, y, sizeof x) == 0);
    }
    flash_error err = {0};
    flash_batcher z;
    ck_assert_int_ne(flash_batcher_init(&z, 0, 1, &err), FLASH_OK);
    flash_batcher_free(&z);
    flash_batcher_free(&a);
    flash_batcher_free(&s);
    flash_batcher_free(&b);
}
END_TEST

static Suite *rng_suite(void) {
    Suite *s = suite_create("rng");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_reference_values);
    tcase_add_test(tc, test_determinism);
    tcase_add_test(tc, test_moments);
    tcase_add_test(tc, test_shuffle);
    tcase_add_test(tc, test_batcher);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) {
    SRunner *sr = srunner_create(rng_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
