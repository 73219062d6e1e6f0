/* KID and per-class diversity (plugins/common/kid_math.h), against
 * references of their own:
 *   - the sgemm MMD^2 the metric runs equals the plain double loops, and
 *     the loops equal the estimator written out term by term;
 *   - KID has no small-N bias: over many pairs of sets drawn from one
 *     distribution its mean is 0 within its standard error at N = 40 as at
 *     N = 400, where the Fréchet distance of the same pairs is positive and
 *     shrinks with N; between two distributions it is positive;
 *   - class_spread is the unbiased trace of the class's covariance. */
#include <check.h>
#include <math.h>
#include <stdlib.h>

#include "../../plugins/common/fd_math.h"
#include "flash/flash.h"
#include "../../plugins/common/kid_math.h"

static void normal_rows(flash_rng *r, float *x, long n, int d, double shift)
{
    for (long i = 0; i < n * d; i++) x[i] = (float)(flash_rng_normal(r) + (i % d == 0 ? shift : 0.0));
}

static inline double kid_kernel(const float *a, const float *b, int d)
{
    double s = 0;
    for (int k = 0; k < d; k++) s += (double)a[k] * b[k];
    const double u = s / d + 1.0;
    return u * u * u;
}

/* The same estimator in plain double loops over the subsets' rows, each
 * within-set pair once and counted twice: the sgemm version's reference. */
static inline double kid_mmd2(const float *x, const long *ix, const float *y, const long *iy, long m, int d)
{
    double kxx = 0, kyy = 0, kxy = 0;
    for (long i = 0; i < m; i++) {
        const float *xi = x + (size_t)ix[i] * d, *yi = y + (size_t)iy[i] * d;
        for (long j = 0; j < m; j++) {
            const float *xj = x + (size_t)ix[j] * d, *yj = y + (size_t)iy[j] * d;
            if (j > i) { /* the within-set sums are symmetric: each pair once, counted twice */
                kxx += 2 * kid_kernel(xi, xj, d);
                kyy += 2 * kid_kernel(yi, yj, d);
            }
            kxy += kid_kernel(xi, yj, d);
        }
    }
    const double mm = (double)m;
    return (kxx + kyy) / (mm * (mm - 1)) - 2.0 * kxy / (mm * mm);
}


/* The unbiased MMD^2 written out: every ordered pair, i != j within a set. */
static double mmd2_by_definition(const float *x, const float *y, long m, int d)
{
    double a = 0, b = 0, c = 0;
    for (long i = 0; i < m; i++)
        for (long j = 0; j < m; j++) {
            double xx = 0, yy = 0, xy = 0;
            for (int k = 0; k < d; k++) {
                xx += (double)x[i * d + k] * x[j * d + k];
                yy += (double)y[i * d + k] * y[j * d + k];
                xy += (double)x[i * d + k] * y[j * d + k];
            }
            if (i != j) {
                a += pow(xx / d + 1, 3);
                b += pow(yy / d + 1, 3);
            }
            c += pow(xy / d + 1, 3);
        }
    return a / (m * (m - 1.0)) + b / (m * (m - 1.0)) - 2 * c / ((double)m * m);
}

START_TEST(test_mmd2_three_ways)
{
    enum { M = 120, D = 24 };
    flash_rng r;
    flash_rng_seed(&r, 3);
    float *x = malloc(M * D * sizeof *x), *y = malloc(M * D * sizeof *y);
    normal_rows(&r, x, M, D, 0.0);
    normal_rows(&r, y, M, D, 0.7);
    long ix[M], iy[M];
    for (long i = 0; i < M; i++) ix[i] = iy[i] = i;
    const double def = mmd2_by_definition(x, y, M, D), loops = kid_mmd2(x, ix, y, iy, M, D);
    flash_ctx *c = flash_ctx_create(1 << 20);
    flash_grad_set(c, false);
    const double gemm = kid_mmd2_gemm(c, x, ix, y, iy, M, D);
    ck_assert_msg(fabs(loops - def) <= 1e-9 * fabs(def), "loops %.12g, definition %.12g", loops, def);
    ck_assert_msg(fabs(gemm - def) <= 1e-5 * fabs(def) + 1e-7, "sgemm %.12g, definition %.12g", gemm, def);
    ck_assert_msg(def > 0.01, "a shift of 0.7 gives MMD^2 %g", def);
    flash_ctx_destroy(c);
    free(x);
    free(y);
}
END_TEST

START_TEST(test_kid_unbiased_fd_biased)
{
    enum { D = 8, PAIRS = 150 };
    const long sizes[2] = {40, 400};
    double kid_mean[2], kid_se[2], fd_mean[2];
    flash_rng r;
    flash_rng_seed(&r, 11);
    float *x = malloc(400 * D * sizeof *x), *y = malloc(400 * D * sizeof *y);
    double mu1[D], mu2[D], s1[D * D], s2[D * D];
    for (int k = 0; k < 2; k++) {
        const long n = sizes[k];
        double sum = 0, sq = 0, fsum = 0;
        for (int p = 0; p < PAIRS; p++) {
            normal_rows(&r, x, n, D, 0.0);
            normal_rows(&r, y, n, D, 0.0);
            double kid = 0, sd = 0, fd = 0;
            ck_assert_int_eq(kid_compute(x, n, y, n, D, 1, n, (uint64_t)p, &kid, &sd), 0);
            ck_assert_int_eq(fd_moments(x, n, D, mu1, s1), 0);
            ck_assert_int_eq(fd_moments(y, n, D, mu2, s2), 0);
            ck_assert_int_eq(fd_frechet(mu1, s1, mu2, s2, D, &fd), 0);
            sum += kid;
            sq += kid * kid;
            fsum += fd;
        }
        kid_mean[k] = sum / PAIRS;
        kid_se[k] = sqrt((sq / PAIRS - kid_mean[k] * kid_mean[k]) / (PAIRS - 1));
        fd_mean[k] = fsum / PAIRS;
    }
    for (int k = 0; k < 2; k++)
        ck_assert_msg(fabs(kid_mean[k]) < 3.5 * kid_se[k], "N = %ld: KID %g, standard error %g", sizes[k], kid_mean[k],
                      kid_se[k]);
    ck_assert_msg(fd_mean[0] > 3 * fd_mean[1] && fd_mean[1] > 0, "FD at N = 40: %g, at 400: %g", fd_mean[0],
                  fd_mean[1]);
    /* another distribution: clearly positive, over subsets */
    normal_rows(&r, x, 400, D, 0.0);
    normal_rows(&r, y, 400, D, 1.0);
    double kid, sd;
    ck_assert_int_eq(kid_compute(x, 400, y, 400, D, 10, 100, 5, &kid, &sd), 0);
    ck_assert_msg(kid > 3 * sd && sd > 0, "shifted: KID %g, sd %g", kid, sd);
    free(x);
    free(y);
}
END_TEST

START_TEST(test_class_spread)
{
    /* class 1: (1, 0), (-1, 0), (0, 3), (0, -3): mean 0, squared norms
     * 1 + 1 + 9 + 9 = 20, over k - 1 = 3 */
    const float x[] = {1, 0, 5, 5, -1, 0, 0, 3, 7, 7, 0, -3};
    const int labels[] = {1, 0, 1, 1, 2, 1};
    long k = 0;
    ck_assert_double_eq_tol(class_spread(x, labels, 6, 2, 1, &k), 20.0 / 3.0, 1e-12);
    ck_assert_int_eq(k, 4);
    ck_assert(isnan(class_spread(x, labels, 6, 2, 0, &k))); /* one example */
    ck_assert_int_eq(k, 1);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("metrics_kid");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_mmd2_three_ways);
    tcase_add_test(tc, test_kid_unbiased_fd_biased);
    tcase_add_test(tc, test_class_spread);
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
