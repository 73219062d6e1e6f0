/* Feature-space statistics shared by the `fd` and `precision_recall`
 * metrics (header-only: plugins/common builds no library; the unit tests
 * include it directly).
 *
 * Fréchet distance (Heusel et al., "GANs trained by a two time-scale update
 * rule converge to a local Nash equilibrium", 2017, eq. 6) between
 * N(mu1, S1) and N(mu2, S2):
 *
 *   d^2 = ||mu1 - mu2||^2 + tr(S1) + tr(S2) - 2 tr((S1 S2)^{1/2}).
 *
 * S1 S2 is not symmetric, but it is similar to the symmetric PSD matrix
 * M = S1^{1/2} S2 S1^{1/2} (S1 S2 = S1^{1/2} M S1^{-1/2} when S1 is
 * invertible, and by continuity otherwise), so tr((S1 S2)^{1/2}) is the sum
 * of the square roots of M's eigenvalues. Both S1^{1/2} and the eigenvalues
 * of M come from a cyclic Jacobi eigendecomposition of a symmetric matrix
 * (Golub & Van Loan, "Matrix Computations", section 8.5), in double;
 * eigenvalues that rounding makes slightly negative are clamped to 0.
 *
 * Its bootstrap interval (fd_bootstrap): the generated rows resampled with
 * replacement, each resample's moments from counts over the rows, the
 * reference fixed and its square root taken once, the percentiles taken
 * after the bootstrap's estimate of FD's small-sample bias is removed.
 *
 * Precision and recall (Kynkäänniemi et al., "Improved precision and recall
 * metric for assessing generative models", NeurIPS 2019, eqs. 1-3): the
 * manifold of a set is the union of balls around its points, each with
 * the radius of the point's k-th nearest neighbour in the set; precision is
 * the fraction of generated points inside the real manifold, recall the
 * fraction of real points inside the generated one. */
#ifndef FLASH_PLUGIN_FD_MATH_H
#define FLASH_PLUGIN_FD_MATH_H

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "flash/flash.h"

/* Mean mu (d) and unbiased covariance cov (d, d) of the rows of x (n, d),
 * row i counted w[i] >= 0 times (w NULL: each once), accumulated in double:
 * mu = sum_i w_i x_i / W, cov = sum_i w_i (x_i - mu)(x_i - mu)^T / (W - 1),
 * W = sum_i w_i >= 2. A bootstrap resample of the rows is its counts: its
 * moments without copying a row. With w NULL or all 1 the sums run in the
 * same order as with w NULL, so the result is the same bit for bit. Returns
 * 0, or -1 when out of memory or W < 2. */
static inline int fd_moments_weighted(const float *x, const int *w, long n, int d, double *mu, double *cov)
{
    double total = 0;
    for (long i = 0; i < n; i++) total += w ? w[i] : 1;
    if (total < 2) return -1;
    double *row = malloc((size_t)d * sizeof *row);
    if (!row) return -1;
    memset(mu, 0, (size_t)d * sizeof *mu);
    memset(cov, 0, (size_t)d * (size_t)d * sizeof *cov);
    for (long i = 0; i < n; i++) {
        if (w && !w[i]) continue;
        const double c = w ? w[i] : 1;
        for (int a = 0; a < d; a++) mu[a] += c * x[(size_t)i * d + a];
    }
    for (int a = 0; a < d; a++) mu[a] /= total;
    for (long i = 0; i < n; i++) {
        if (w && !w[i]) continue;
        const double c = w ? w[i] : 1;
        for (int a = 0; a < d; a++) row[a] = x[(size_t)i * d + a] - mu[a];
        for (int a = 0; a < d; a++) {
            double ra = c * row[a];
            double *cr = cov + (size_t)a * d;
            for (int b = a; b < d; b++) cr[b] += ra * row[b];
        }
    }
    for (int a = 0; a < d; a++)
        for (int b = a; b < d; b++) {
            double v = cov[(size_t)a * d + b] / (total - 1);
            cov[(size_t)a * d + b] = v;
            cov[(size_t)b * d + a] = v;
        }
    free(row);
    return 0;
}

/* Mean mu (d) and unbiased covariance cov (d, d) of the n >= 2 rows of
 * x (n, d), accumulated in double. Returns 0, or -1 when out of memory or
 * n < 2. */
static inline int fd_moments(const float *x, long n, int d, double *mu, double *cov)
{
    return fd_moments_weighted(x, NULL, n, d, mu, cov);
}

/* Eigendecomposition of the symmetric a (d, d) by cyclic Jacobi rotations:
 * eigenvalues into w (d), eigenvectors into the columns of v (d, d) (v may
 * be NULL). a is overwritten. */
static inline void fd_sym_eig(double *a, int d, double *w, double *v)
{
    if (v)
        for (int i = 0; i < d; i++)
            for (int j = 0; j < d; j++) v[(size_t)i * d + j] = i == j;
    double fro = 0;
    for (size_t i = 0; i < (size_t)d * d; i++) fro += a[i] * a[i];
    for (int sweep = 0; sweep < 100; sweep++) {
        double off = 0;
        for (int p = 0; p < d; p++)
            for (int q = p + 1; q < d; q++) off += a[(size_t)p * d + q] * a[(size_t)p * d + q];
        if (off <= 1e-30 * fro || off == 0) break;
        for (int p = 0; p < d; p++)
            for (int q = p + 1; q < d; q++) {
                double apq = a[(size_t)p * d + q];
                if (apq == 0) continue;
                double theta = (a[(size_t)q * d + q] - a[(size_t)p * d + p]) / (2 * apq);
                double t = fabs(theta) > 1e150 ? 0.5 / theta
                                               : (theta >= 0 ? 1 : -1) / (fabs(theta) + sqrt(theta * theta + 1));
                double c = 1 / sqrt(t * t + 1), s = t * c;
                /* A <- J^T A J with J the rotation in the (p, q) plane */
                for (int k = 0; k < d; k++) {
                    double akp = a[(size_t)k * d + p], akq = a[(size_t)k * d + q];
                    a[(size_t)k * d + p] = c * akp - s * akq;
                    a[(size_t)k * d + q] = s * akp + c * akq;
                }
                for (int k = 0; k < d; k++) {
                    double apk = a[(size_t)p * d + k], aqk = a[(size_t)q * d + k];
                    a[(size_t)p * d + k] = c * apk - s * aqk;
                    a[(size_t)q * d + k] = s * apk + c * aqk;
                }
                a[(size_t)p * d + q] = a[(size_t)q * d + p] = 0;
                if (v)
                    for (int k = 0; k < d; k++) {
                        double vkp = v[(size_t)k * d + p], vkq = v[(size_t)k * d + q];
                        v[(size_t)k * d + p] = c * vkp - s * vkq;
                        v[(size_t)k * d + q] = s * vkp + c * vkq;
                    }
            }
    }
    for (int i = 0; i < d; i++) w[i] = a[(size_t)i * d + i];
}

/* out (d, d) = s^{1/2} for the symmetric PSD s (d, d), negative
 * eigenvalues clamped to 0. Returns 0, or -1 when out of memory. */
static inline int fd_sqrtm_psd(const double *s, int d, double *out)
{
    size_t dd = (size_t)d * d;
    double *a = malloc(dd * sizeof *a), *v = malloc(dd * sizeof *v), *w = malloc((size_t)d * sizeof *w);
    if (!a || !v || !w) {
        free(a);
        free(v);
        free(w);
        return -1;
    }
    memcpy(a, s, dd * sizeof *a);
    fd_sym_eig(a, d, w, v);
    for (int k = 0; k < d; k++) w[k] = w[k] > 0 ? sqrt(w[k]) : 0;
    for (int i = 0; i < d; i++)
        for (int j = i; j < d; j++) {
            double acc = 0;
            for (int k = 0; k < d; k++) acc += v[(size_t)i * d + k] * w[k] * v[(size_t)j * d + k];
            out[(size_t)i * d + j] = out[(size_t)j * d + i] = acc;
        }
    free(a);
    free(v);
    free(w);
    return 0;
}

/* tr((s1 s2)^{1/2}) for symmetric PSD s1, s2 (d, d) given r = s1^{1/2}
 * (fd_sqrtm_psd), as the sum of the square roots of the eigenvalues of
 * r s2 r. Returns 0, or -1 when out of memory. */
static inline int fd_trace_sqrt_root(const double *r, const double *s2, int d, double *out)
{
    size_t dd = (size_t)d * d;
    double *t = malloc(dd * sizeof *t), *m = malloc(dd * sizeof *m);
    double *w = malloc((size_t)d * sizeof *w);
    if (!t || !m || !w) {
        free(t);
        free(m);
        free(w);
        return -1;
    }
    /* t = s2 r, m = r t (symmetrised against rounding) */
    for (int i = 0; i < d; i++)
        for (int j = 0; j < d; j++) {
            double acc = 0;
            for (int k = 0; k < d; k++) acc += s2[(size_t)i * d + k] * r[(size_t)k * d + j];
            t[(size_t)i * d + j] = acc;
        }
    for (int i = 0; i < d; i++)
        for (int j = 0; j < d; j++) {
            double acc = 0;
            for (int k = 0; k < d; k++) acc += r[(size_t)i * d + k] * t[(size_t)k * d + j];
            m[(size_t)i * d + j] = acc;
        }
    for (int i = 0; i < d; i++)
        for (int j = i + 1; j < d; j++) {
            double avg = 0.5 * (m[(size_t)i * d + j] + m[(size_t)j * d + i]);
            m[(size_t)i * d + j] = m[(size_t)j * d + i] = avg;
        }
    fd_sym_eig(m, d, w, NULL);
    double tr = 0;
    for (int k = 0; k < d; k++) tr += w[k] > 0 ? sqrt(w[k]) : 0;
    *out = tr;
    free(t);
    free(m);
    free(w);
    return 0;
}

/* tr((s1 s2)^{1/2}) for symmetric PSD s1, s2 (d, d), as the sum of the
 * square roots of the eigenvalues of s1^{1/2} s2 s1^{1/2}. Returns 0, or -1
 * when out of memory. */
static inline int fd_trace_sqrt_product(const double *s1, const double *s2, int d, double *out)
{
    double *r = malloc((size_t)d * d * sizeof *r);
    int bad = !r || fd_sqrtm_psd(s1, d, r) || fd_trace_sqrt_root(r, s2, d, out);
    free(r);
    return bad ? -1 : 0;
}

/* fd_frechet with r1 = s1^{1/2} given: the bootstrap takes the fixed
 * reference's root once, not once per resample. */
static inline int fd_frechet_root(const double *mu1, const double *s1, const double *r1, const double *mu2,
                                  const double *s2, int d, double *out)
{
    double trs;
    if (fd_trace_sqrt_root(r1, s2, d, &trs)) return -1;
    double acc = 0;
    for (int i = 0; i < d; i++) {
        double dm = mu1[i] - mu2[i];
        acc += dm * dm + s1[(size_t)i * d + i] + s2[(size_t)i * d + i];
    }
    *out = acc - 2 * trs;
    return 0;
}

/* The Fréchet distance (squared, as FID reports it) between N(mu1, s1) and
 * N(mu2, s2) in d dimensions. Returns 0, or -1 when out of memory. */
static inline int fd_frechet(const double *mu1, const double *s1, const double *mu2, const double *s2, int d,
                             double *out)
{
    double *r = malloc((size_t)d * d * sizeof *r);
    int bad = !r || fd_sqrtm_psd(s1, d, r) || fd_frechet_root(mu1, s1, r, mu2, s2, d, out);
    free(r);
    return bad ? -1 : 0;
}

static inline int fd_cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* The p-quantile (0 <= p <= 1) of the sorted v (n >= 1), linear between
 * order statistics at position p (n - 1) (numpy's default). */
static inline double fd_quantile_sorted(const double *v, long n, double p)
{
    double pos = p * (double)(n - 1);
    long i = (long)floor(pos);
    if (i >= n - 1) return v[n - 1];
    double f = pos - (double)i;
    return v[i] + f * (v[i + 1] - v[i]);
}

/* A bootstrap interval for the Fréchet distance fd of the rows of gen
 * (n, d) to the fixed N(mu_ref, s_ref): B resamples of the n rows drawn
 * with replacement, each as counts (fd_moments_weighted), and the distance
 * FD*_b of each. Only the generated side is resampled: the interval is the
 * spread that a finite noise bank of n samples leaves, not the
 * reference's.
 *
 * FD's estimate from n samples is biased upwards (the square root's trace
 * of an estimated covariance is biased down; at d = 128, n = 2,000 the
 * bias is of the order of FD itself), and a resample, a sample of the
 * sample, carries that bias once more: the plain percentile interval of
 * the FD*_b lies above fd and often excludes it. So the percentiles are
 * taken after removing the bootstrap estimate of the bias, bias =
 * mean(FD*) - fd (Efron & Tibshirani, "An Introduction to the Bootstrap",
 * 1993, section 10.2, and the percentile interval of section 13.3):
 *
 *   lo, hi = the (1 -+ level) / 2 quantiles of FD*_b - bias
 *
 * (level 0.95: 2.5% and 97.5%; a bound below 0 is 0): where fd would
 * fall on another noise bank of the same size. Resample b draws from flash_rng_seed_stream(seed, b),
 * so the interval is a function of gen, the reference, B and seed alone.
 * fd is the caller's (fd_frechet of gen's moments and the reference's).
 * Returns 0, or -1 when out of memory or n < 2. */
static inline int fd_bootstrap(const float *gen, long n, int d, const double *mu_ref, const double *s_ref, double fd,
                               int B, double level, uint64_t seed, double *lo, double *hi)
{
    size_t dd = (size_t)d * d;
    if (n < 2 || B < 1) return -1;
    int *w = malloc((size_t)n * sizeof *w);
    double *r = malloc(dd * sizeof *r), *mu = malloc((size_t)d * sizeof *mu), *s = malloc(dd * sizeof *s);
    double *v = malloc((size_t)B * sizeof *v);
    int bad = !w || !r || !mu || !s || !v || fd_sqrtm_psd(s_ref, d, r);
    for (int b = 0; b < B && !bad; b++) {
        flash_rng rng;
        flash_rng_seed_stream(&rng, seed, (uint64_t)b);
        memset(w, 0, (size_t)n * sizeof *w);
        for (long i = 0; i < n; i++) w[flash_rng_below(&rng, (uint64_t)n)]++;
        /* the reference first: its root r is computed once */
        bad = fd_moments_weighted(gen, w, n, d, mu, s) || fd_frechet_root(mu_ref, s_ref, r, mu, s, d, &v[b]);
    }
    if (!bad) {
        double mean = 0;
        for (int b = 0; b < B; b++) mean += v[b];
        const double bias = mean / B - fd;
        qsort(v, (size_t)B, sizeof *v, fd_cmp_double);
        /* a distance is never negative, whatever the shift does to the bounds */
        *lo = fmax(0, fd_quantile_sorted(v, B, 0.5 * (1 - level)) - bias);
        *hi = fmax(0, fd_quantile_sorted(v, B, 0.5 * (1 + level)) - bias);
    }
    free(w);
    free(r);
    free(mu);
    free(s);
    free(v);
    return bad ? -1 : 0;
}

static inline float fd_dist2(const float *a, const float *b, int d)
{
    /* four partial sums so the compiler can keep the loop in vector lanes */
    float s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    int i = 0;
    for (; i + 4 <= d; i += 4) {
        float e0 = a[i] - b[i], e1 = a[i + 1] - b[i + 1], e2 = a[i + 2] - b[i + 2], e3 = a[i + 3] - b[i + 3];
        s0 += e0 * e0;
        s1 += e1 * e1;
        s2 += e2 * e2;
        s3 += e3 * e3;
    }
    for (; i < d; i++) s0 += (a[i] - b[i]) * (a[i] - b[i]);
    return (s0 + s1) + (s2 + s3);
}

/* r2 (n): the squared distance from each row of x (n, d) to its k-th nearest
 * other row (1 <= k < n). Returns 0, or -1 when out of memory. */
static inline int fd_knn_radii2(const float *x, long n, int d, int k, float *r2)
{
    float *best = malloc((size_t)k * sizeof *best);
    if (!best) return -1;
    for (long i = 0; i < n; i++) {
        int m = 0; /* best[0..m) ascending */
        for (long j = 0; j < n; j++) {
            if (j == i) continue;
            float e = fd_dist2(x + (size_t)i * d, x + (size_t)j * d, d);
            if (m == k && e >= best[k - 1]) continue;
            int p = m < k ? m++ : k - 1;
            while (p > 0 && best[p - 1] > e) {
                best[p] = best[p - 1];
                p--;
            }
            best[p] = e;
        }
        r2[i] = best[k - 1];
    }
    free(best);
    return 0;
}

/* The fraction of the rows of q (nq, d) inside the manifold of ref (nr, d)
 * whose balls have squared radii r2 (nr): Kynkäänniemi et al. eq. 1-2. */
static inline double fd_manifold_coverage(const float *q, long nq, const float *ref, long nr, int d,
                                          const float *r2)
{
    long inside = 0;
    for (long i = 0; i < nq; i++)
        for (long j = 0; j < nr; j++)
            if (fd_dist2(q + (size_t)i * d, ref + (size_t)j * d, d) <= r2[j]) {
                inside++;
                break;
            }
    return nq > 0 ? (double)inside / (double)nq : 0;
}

#endif
