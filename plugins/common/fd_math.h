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
 * Precision and recall (Kynkäänniemi et al., "Improved precision and recall
 * metric for assessing generative models", NeurIPS 2019, eqs. 1-3): the
 * manifold of a set is the union of balls around its points, each with
 * the radius of the point's k-th nearest neighbour in the set; precision is
 * the fraction of generated points inside the real manifold, recall the
 * fraction of real points inside the generated one. */
#ifndef FLASH_PLUGIN_FD_MATH_H
#define FLASH_PLUGIN_FD_MATH_H

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Mean mu (d) and unbiased covariance cov (d, d) of the n >= 2 rows of
 * x (n, d), accumulated in double. Returns 0, or -1 when out of memory. */
static inline int fd_moments(const float *x, long n, int d, double *mu, double *cov)
{
    double *row = malloc((size_t)d * sizeof *row);
    if (!row) return -1;
    memset(mu, 0, (size_t)d * sizeof *mu);
    memset(cov, 0, (size_t)d * (size_t)d * sizeof *cov);
    for (long i = 0; i < n; i++)
        for (int a = 0; a < d; a++) mu[a] += x[(size_t)i * d + a];
    for (int a = 0; a < d; a++) mu[a] /= (double)n;
    for (long i = 0; i < n; i++) {
        for (int a = 0; a < d; a++) row[a] = x[(size_t)i * d + a] - mu[a];
        for (int a = 0; a < d; a++) {
            double ra = row[a];
            double *c = cov + (size_t)a * d;
            for (int b = a; b < d; b++) c[b] += ra * row[b];
        }
    }
    for (int a = 0; a < d; a++)
        for (int b = a; b < d; b++) {
            double v = cov[(size_t)a * d + b] / (double)(n - 1);
            cov[(size_t)a * d + b] = v;
            cov[(size_t)b * d + a] = v;
        }
    free(row);
    return 0;
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

/* tr((s1 s2)^{1/2}) for symmetric PSD s1, s2 (d, d), as the sum of the
 * square roots of the eigenvalues of s1^{1/2} s2 s1^{1/2}. Returns 0, or -1
 * when out of memory. */
static inline int fd_trace_sqrt_product(const double *s1, const double *s2, int d, double *out)
{
    size_t dd = (size_t)d * d;
    double *r = malloc(dd * sizeof *r), *t = malloc(dd * sizeof *t), *m = malloc(dd * sizeof *m);
    double *w = malloc((size_t)d * sizeof *w);
    if (!r || !t || !m || !w || fd_sqrtm_psd(s1, d, r)) {
        free(r);
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
    free(r);
    free(t);
    free(m);
    free(w);
    return 0;
}

/* The Fréchet distance (squared, as FID reports it) between N(mu1, s1) and
 * N(mu2, s2) in d dimensions. Returns 0, or -1 when out of memory. */
static inline int fd_frechet(const double *mu1, const double *s1, const double *mu2, const double *s2, int d,
                             double *out)
{
    double trs;
    if (fd_trace_sqrt_product(s1, s2, d, &trs)) return -1;
    double acc = 0;
    for (int i = 0; i < d; i++) {
        double dm = mu1[i] - mu2[i];
        acc += dm * dm + s1[(size_t)i * d + i] + s2[(size_t)i * d + i];
    }
    *out = acc - 2 * trs;
    return 0;
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
