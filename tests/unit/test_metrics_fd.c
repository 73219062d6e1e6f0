/* The feature-space statistics behind the `fd` and `precision_recall`
 * metrics (plugins/common/fd_math.h), checked against closed forms:
 * matrix square roots of known matrices, the Fréchet distance between
 * Gaussians with diagonal covariances (tr((S1 S2)^{1/2}) = sum sqrt(a_i b_i))
 * and with non-commuting 2x2 covariances (the square root's trace from the
 * eigenvalues of S1 S2: (sqrt l1 + sqrt l2)^2 = tr + 2 sqrt(det)), both
 * from the exact moments and from samples, precision/recall of
 * identical and of far-apart sets, and FD's bootstrap interval: the
 * moments from counts are fd_moments bit for bit at unit counts and those
 * of the copied rows at other counts, the interval holds FD, narrows as
 * 1/sqrt(n) and is a function of its seed. */
#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../../plugins/common/fd_math.h"
#include "flash/flash.h"

/* x (n, d) = mu + L z with L the lower Cholesky factor of the 2x2 s */
static float *gauss2(long n, const double *mu, const double *s, uint64_t seed)
{
    double l00 = sqrt(s[0]), l10 = s[2] / l00, l11 = sqrt(s[3] - l10 * l10);
    float *x = malloc((size_t)n * 2 * sizeof *x);
    ck_assert_ptr_nonnull(x);
    flash_rng r;
    flash_rng_seed(&r, seed);
    for (long i = 0; i < n; i++) {
        double z0 = flash_rng_normal(&r), z1 = flash_rng_normal(&r);
        x[2 * i] = (float)(mu[0] + l00 * z0);
        x[2 * i + 1] = (float)(mu[1] + l10 * z0 + l11 * z1);
    }
    return x;
}

/* tr((s1 s2)^{1/2}) for 2x2 SPD s1, s2: the eigenvalues of s1 s2 are real
 * and >= 0, and (sqrt l1 + sqrt l2)^2 = l1 + l2 + 2 sqrt(l1 l2). */
static double fd2_closed(const double *mu1, const double *s1, const double *mu2, const double *s2)
{
    double p[4] = {s1[0] * s2[0] + s1[1] * s2[2], s1[0] * s2[1] + s1[1] * s2[3], s1[2] * s2[0] + s1[3] * s2[2],
                   s1[2] * s2[1] + s1[3] * s2[3]};
    double tr = p[0] + p[3], det = p[0] * p[3] - p[1] * p[2];
    double trs = sqrt(tr + 2 * sqrt(det > 0 ? det : 0));
    double dm0 = mu1[0] - mu2[0], dm1 = mu1[1] - mu2[1];
    return dm0 * dm0 + dm1 * dm1 + s1[0] + s1[3] + s2[0] + s2[3] - 2 * trs;
}

START_TEST(test_sqrtm_known)
{
    /* [[2,1],[1,2]]^2 = [[5,4],[4,5]] */
    const double s[4] = {5, 4, 4, 5};
    double r[4];
    ck_assert_int_eq(fd_sqrtm_psd(s, 2, r), 0);
    ck_assert_double_eq_tol(r[0], 2, 1e-12);
    ck_assert_double_eq_tol(r[1], 1, 1e-12);
    ck_assert_double_eq_tol(r[2], 1, 1e-12);
    ck_assert_double_eq_tol(r[3], 2, 1e-12);
    /* a PSD matrix with a zero eigenvalue: [[1,1],[1,1]] = 2 u u^T, u = (1,1)/sqrt2,
     * so its root is sqrt(2) u u^T = [[1,1],[1,1]] / sqrt(2) */
    const double z[4] = {1, 1, 1, 1};
    ck_assert_int_eq(fd_sqrtm_psd(z, 2, r), 0);
    for (int i = 0; i < 4; i++) ck_assert_double_eq_tol(r[i], 1 / sqrt(2.0), 1e-12);
}
END_TEST

START_TEST(test_sqrtm_squares_back)
{
    /* a random 40x40 SPD matrix: (A^{1/2})^2 = A */
    enum { D = 40 };
    static double b[D * D], a[D * D], r[D * D];
    flash_rng g;
    flash_rng_seed(&g, 7);
    for (int i = 0; i < D * D; i++) b[i] = flash_rng_normal(&g);
    for (int i = 0; i < D; i++)
        for (int j = 0; j < D; j++) {
            double acc = i == j ? 0.1 : 0;
            for (int k = 0; k < D; k++) acc += b[i * D + k] * b[j * D + k];
            a[i * D + j] = acc;
        }
    ck_assert_int_eq(fd_sqrtm_psd(a, D, r), 0);
    double worst = 0, scale = 0;
    for (int i = 0; i < D; i++)
        for (int j = 0; j < D; j++) {
            double acc = 0;
            for (int k = 0; k < D; k++) acc += r[i * D + k] * r[k * D + j];
            worst = fmax(worst, fabs(acc - a[i * D + j]));
            scale = fmax(scale, fabs(a[i * D + j]));
        }
    ck_assert_double_le(worst, 1e-10 * scale);
    /* the distance of a Gaussian to itself is 0 (tr((A A)^{1/2}) = tr A) */
    double mu[D] = {0}, v;
    ck_assert_int_eq(fd_frechet(mu, a, mu, a, D, &v), 0);
    ck_assert_double_le(fabs(v), 1e-9 * scale * D);
}
END_TEST

START_TEST(test_frechet_diagonal)
{
    /* N(mu1, diag a) vs N(mu2, diag b): ||mu1 - mu2||^2 + sum (sqrt a - sqrt b)^2 */
    enum { D = 4 };
    const double mu1[D] = {0, 1, -1, 2}, mu2[D] = {0.5, 1, 0, 2}, a[D] = {1, 4, 0.25, 2}, b[D] = {2, 1, 0.25, 9};
    double s1[D * D] = {0}, s2[D * D] = {0}, want = 0, v;
    for (int i = 0; i < D; i++) {
        s1[i * D + i] = a[i];
        s2[i * D + i] = b[i];
        want += (mu1[i] - mu2[i]) * (mu1[i] - mu2[i]) + (sqrt(a[i]) - sqrt(b[i])) * (sqrt(a[i]) - sqrt(b[i]));
    }
    ck_assert_int_eq(fd_frechet(mu1, s1, mu2, s2, D, &v), 0);
    ck_assert_double_eq_tol(v, want, 1e-12);

    /* from samples: moments of 40,000 draws of each */
    const long n = 40000;
    float *x = malloc((size_t)n * D * sizeof *x), *y = malloc((size_t)n * D * sizeof *y);
    ck_assert(x && y);
    flash_rng g;
    flash_rng_seed(&g, 1);
    for (long i = 0; i < n; i++)
        for (int k = 0; k < D; k++) {
            x[i * D + k] = (float)(mu1[k] + sqrt(a[k]) * flash_rng_normal(&g));
            y[i * D + k] = (float)(mu2[k] + sqrt(b[k]) * flash_rng_normal(&g));
        }
    double m1[D], m2[D], c1[D * D], c2[D * D];
    ck_assert_int_eq(fd_moments(x, n, D, m1, c1), 0);
    ck_assert_int_eq(fd_moments(y, n, D, m2, c2), 0);
    ck_assert_int_eq(fd_frechet(m1, c1, m2, c2, D, &v), 0);
    ck_assert_double_eq_tol(v, want, 0.05 * want);
    free(x);
    free(y);
}
END_TEST

START_TEST(test_frechet_noncommuting)
{
    const double mu1[2] = {1, -1}, mu2[2] = {0, 0.5};
    const double s1[4] = {2, 0.9, 0.9, 1}, s2[4] = {0.5, -0.3, -0.3, 3};
    double v, want = fd2_closed(mu1, s1, mu2, s2);
    ck_assert_int_eq(fd_frechet(mu1, s1, mu2, s2, 2, &v), 0);
    ck_assert_double_eq_tol(v, want, 1e-12);
    /* not the commuting formula: the cross term matters here */
    double naive = 0;
    for (int i = 0; i < 2; i++) naive += s1[3 * i] + s2[3 * i] - 2 * sqrt(s1[3 * i] * s2[3 * i]);
    ck_assert_double_gt(fabs(want - 3.25 - naive), 0.05);

    /* rank-deficient s1: S1 S2 has eigenvalues {s2[0], 0} */
    const double z1[4] = {1, 0, 0, 0}, z2[4] = {2, 1, 1, 2};
    ck_assert_int_eq(fd_frechet(mu1, z1, mu1, z2, 2, &v), 0);
    ck_assert_double_eq_tol(v, 1 + 4 - 2 * sqrt(2.0), 1e-9);

    const long n = 50000;
    float *x = gauss2(n, mu1, s1, 11), *y = gauss2(n, mu2, s2, 12);
    double m1[2], m2[2], c1[4], c2[4];
    ck_assert_int_eq(fd_moments(x, n, 2, m1, c1), 0);
    ck_assert_int_eq(fd_moments(y, n, 2, m2, c2), 0);
    ck_assert_double_eq_tol(c1[1], s1[1], 0.05);
    ck_assert_int_eq(fd_frechet(m1, c1, m2, c2, 2, &v), 0);
    ck_assert_double_eq_tol(v, want, 0.03 * want);
    free(x);
    free(y);
}
END_TEST

START_TEST(test_knn_radii)
{
    const float x[4] = {0, 1, 3, 6};
    float r2[4];
    ck_assert_int_eq(fd_knn_radii2(x, 4, 1, 1, r2), 0);
    ck_assert_float_eq(r2[0], 1);
    ck_assert_float_eq(r2[1], 1);
    ck_assert_float_eq(r2[2], 4);
    ck_assert_float_eq(r2[3], 9);
    ck_assert_int_eq(fd_knn_radii2(x, 4, 1, 2, r2), 0);
    ck_assert_float_eq(r2[0], 9);
    ck_assert_float_eq(r2[1], 4);
    ck_assert_float_eq(r2[2], 9);
    ck_assert_float_eq(r2[3], 25);
}
END_TEST

START_TEST(test_precision_recall)
{
    enum { N = 300, D = 8 };
    static float a[N * D], b[N * D];
    float ra[N], rb[N];
    flash_rng g;
    flash_rng_seed(&g, 3);
    for (int i = 0; i < N * D; i++) {
        a[i] = flash_rng_normal(&g);
        b[i] = a[i] + 1000;
    }
    ck_assert_int_eq(fd_knn_radii2(a, N, D, 3, ra), 0);
    ck_assert_int_eq(fd_knn_radii2(b, N, D, 3, rb), 0);
    /* identical sets: every point lies in its own ball */
    ck_assert_double_eq(fd_manifold_coverage(a, N, a, N, D, ra), 1.0);
    /* far apart: nothing is covered either way */
    ck_assert_double_eq(fd_manifold_coverage(b, N, a, N, D, ra), 0.0);
    ck_assert_double_eq(fd_manifold_coverage(a, N, b, N, D, rb), 0.0);
    /* half the points moved away: precision of the mixed set is about 1/2 */
    static float h[N * D];
    for (int i = 0; i < N * D; i++) h[i] = i < N * D / 2 ? a[i] : b[i];
    ck_assert_double_eq(fd_manifold_coverage(h, N, a, N, D, ra), 0.5);
}
END_TEST

/* x (n, d): row i is N(0, I) + shift in the first coordinate */
static float *shifted_normal(long n, int d, double shift, uint64_t seed)
{
    float *x = malloc((size_t)n * d * sizeof *x);
    ck_assert_ptr_nonnull(x);
    flash_rng g;
    flash_rng_seed(&g, seed);
    for (long i = 0; i < n * d; i++) x[i] = (float)(flash_rng_normal(&g) + (i % d == 0 ? shift : 0.0));
    return x;
}

START_TEST(test_moments_weighted)
{
    enum { N = 500, D = 16 };
    float *x = shifted_normal(N, D, 3.0, 21);
    static double m0[D], c0[D * D], m1[D], c1[D * D];
    static int w[N];
    /* unit counts: the same sums in the same order as fd_moments */
    for (int i = 0; i < N; i++) w[i] = 1;
    ck_assert_int_eq(fd_moments(x, N, D, m0, c0), 0);
    ck_assert_int_eq(fd_moments_weighted(x, w, N, D, m1, c1), 0);
    for (int a = 0; a < D; a++) ck_assert_double_eq_tol(m1[a], m0[a], 1e-12);
    for (int a = 0; a < D * D; a++) ck_assert_double_eq_tol(c1[a], c0[a], 1e-12);
    /* other counts: the moments of the rows copied that many times */
    flash_rng g;
    flash_rng_seed(&g, 5);
    long total = 0;
    for (int i = 0; i < N; i++) total += w[i] = (int)flash_rng_below(&g, 4);
    float *y = malloc((size_t)total * D * sizeof *y);
    ck_assert_ptr_nonnull(y);
    for (long i = 0, r = 0; i < N; i++)
        for (int k = 0; k < w[i]; k++, r++)
            for (int a = 0; a < D; a++) y[r * D + a] = x[i * D + a];
    ck_assert_int_eq(fd_moments(y, total, D, m0, c0), 0);
    ck_assert_int_eq(fd_moments_weighted(x, w, N, D, m1, c1), 0);
    for (int a = 0; a < D; a++) ck_assert_double_eq_tol(m1[a], m0[a], 1e-9);
    for (int a = 0; a < D * D; a++) ck_assert_double_eq_tol(c1[a], c0[a], 1e-9);
    /* fewer than 2 rows counted */
    memset(w, 0, sizeof w);
    w[3] = 1;
    ck_assert_int_eq(fd_moments_weighted(x, w, N, D, m1, c1), -1);
    /* the bootstrap's order (the reference's root given) is FD's */
    float *r = shifted_normal(2000, D, 0.0, 22);
    static double mr[D], cr[D * D], root[D * D];
    double v0, v1;
    ck_assert_int_eq(fd_moments(x, N, D, m0, c0), 0);
    ck_assert_int_eq(fd_moments(r, 2000, D, mr, cr), 0);
    ck_assert_int_eq(fd_frechet(m0, c0, mr, cr, D, &v0), 0);
    ck_assert_int_eq(fd_sqrtm_psd(cr, D, root), 0);
    ck_assert_int_eq(fd_frechet_root(mr, cr, root, m0, c0, D, &v1), 0);
    ck_assert_double_eq_tol(v1, v0, 1e-10 * v0);
    free(x);
    free(y);
    free(r);
}
END_TEST

START_TEST(test_quantile)
{
    const double v[5] = {1, 2, 3, 4, 5};
    ck_assert_double_eq_tol(fd_quantile_sorted(v, 5, 0.0), 1, 1e-15);
    ck_assert_double_eq_tol(fd_quantile_sorted(v, 5, 0.25), 2, 1e-15);
    ck_assert_double_eq_tol(fd_quantile_sorted(v, 5, 0.975), 4.9, 1e-12);
    ck_assert_double_eq_tol(fd_quantile_sorted(v, 5, 1.0), 5, 1e-15);
    ck_assert_double_eq_tol(fd_quantile_sorted(v, 1, 0.5), 1, 1e-15);
}
END_TEST

START_TEST(test_bootstrap_interval)
{
    /* N(s e1, I) against the exact N(0, I): FD = s^2 = 1; its error is
     * mostly 2 s (mean error), of SD 2 / sqrt(n) */
    enum { D = 8, B = 200 };
    const long sizes[2] = {500, 2000};
    double mu[D] = {0}, s[D * D] = {0}, width[2];
    for (int a = 0; a < D; a++) s[a * D + a] = 1;
    for (int k = 0; k < 2; k++) {
        const long n = sizes[k];
        float *x = shifted_normal(n, D, 1.0, 40 + (uint64_t)k);
        double m[D], c[D * D], v, lo, hi, lo2, hi2;
        ck_assert_int_eq(fd_moments(x, n, D, m, c), 0);
        ck_assert_int_eq(fd_frechet(m, c, mu, s, D, &v), 0);
        ck_assert_int_eq(fd_bootstrap(x, n, D, mu, s, v, B, 0.95, 0xfd, &lo, &hi), 0);
        ck_assert_msg(lo < v && v < hi, "n = %ld: FD %g outside [%g, %g]", n, v, lo, hi);
        /* the nominal 95% width of a normal with SD 2 / sqrt(n): 3.92 * 2 / sqrt(n) */
        width[k] = hi - lo;
        ck_assert_msg(width[k] > 0.6 * 7.84 / sqrt((double)n) && width[k] < 1.6 * 7.84 / sqrt((double)n),
                      "n = %ld: width %g", n, width[k]);
        /* the same seed: the same interval; another: another */
        ck_assert_int_eq(fd_bootstrap(x, n, D, mu, s, v, B, 0.95, 0xfd, &lo2, &hi2), 0);
        ck_assert(lo2 == lo && hi2 == hi);
        ck_assert_int_eq(fd_bootstrap(x, n, D, mu, s, v, B, 0.95, 0xfe, &lo2, &hi2), 0);
        ck_assert(lo2 != lo || hi2 != hi);
        free(x);
    }
    double ratio = width[1] / width[0]; /* 1/2 for 1/sqrt(n) */
    ck_assert_msg(ratio > 0.35 && ratio < 0.65, "widths %g at n = 500, %g at 2000: ratio %g", width[0], width[1],
                  ratio);
}
END_TEST

static Suite *metrics_fd_suite(void)
{
    Suite *s = suite_create("metrics_fd");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_sqrtm_known);
    tcase_add_test(tc, test_sqrtm_squares_back);
    tcase_add_test(tc, test_frechet_diagonal);
    tcase_add_test(tc, test_frechet_noncommuting);
    tcase_add_test(tc, test_knn_radii);
    tcase_add_test(tc, test_precision_recall);
    tcase_add_test(tc, test_moments_weighted);
    tcase_add_test(tc, test_quantile);
    tcase_add_test(tc, test_bootstrap_interval);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    flash_set_threads(1);
    SRunner *sr = srunner_create(metrics_fd_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
